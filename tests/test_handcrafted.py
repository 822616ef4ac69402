"""The stripe HSV colour histogram baseline, checked against vectors computed by hand."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from reidkit.models.handcrafted import color_histogram, color_histogram_features

RED, BLUE = (255, 0, 0), (0, 0, 255)


def two_colour(height: int = 8, width: int = 4) -> np.ndarray:
    """Top half pure red, bottom half pure blue."""
    image = np.zeros((height, width, 3), dtype=np.uint8)
    image[: height // 2] = RED
    image[height // 2 :] = BLUE
    return image


def test_two_colour_image_gives_the_hand_computed_vector():
    # PIL HSV: red = (0, 255, 255), blue = (170, 255, 255). With bins (4, 2, 2) the joint index is
    # h * 4 + s * 2 + v: red -> 0*4 + 1*2 + 1 = 3, blue -> (170*4//256 = 2)*4 + 3 = 11. Two stripes of
    # 16 bins: stripe 0 is one-hot at 3, stripe 1 one-hot at 16 + 11 = 27, then L2-normalised.
    expected = np.zeros(32, dtype=np.float32)
    expected[3] = expected[27] = 1 / np.sqrt(2)
    feature = color_histogram(two_colour(), bins=(4, 2, 2), stripes=2)
    np.testing.assert_allclose(feature, expected, rtol=0, atol=1e-7)


def test_mixed_stripe_with_and_without_square_root():
    # One stripe: 6 red pixels and 2 blue pixels -> h = [3/4 at bin 3, 1/4 at bin 11].
    image = np.zeros((2, 4, 3), dtype=np.uint8)
    image[:] = RED
    image[1, 2:] = BLUE
    with_sqrt = color_histogram(image, bins=(4, 2, 2), stripes=1)
    expected = np.zeros(16)
    expected[3], expected[11] = np.sqrt(0.75), np.sqrt(0.25)  # already unit length
    np.testing.assert_allclose(with_sqrt, expected, atol=1e-7)
    plain = color_histogram(image, bins=(4, 2, 2), stripes=1, sqrt=False)
    expected = np.zeros(16)
    expected[3], expected[11] = 0.75, 0.25
    np.testing.assert_allclose(plain, expected / np.linalg.norm(expected), atol=1e-7)


def test_paths_and_arrays_agree_and_identical_images_give_identical_features(tmp_path):
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, size=(128, 64, 3), dtype=np.uint8)
    paths = []
    for name in ("a.png", "b.png"):
        Image.fromarray(image).save(tmp_path / name)  # lossless
        paths.append(tmp_path / name)
    features = color_histogram_features([*paths, image, str(paths[0])])
    assert features.shape == (4, 6 * 8 * 4 * 4) and features.dtype == np.float32
    for row in features[1:]:
        np.testing.assert_array_equal(row, features[0])


def test_features_of_synthreid_images_are_unit_rows(synthreid_tiny):
    paths = sorted((synthreid_tiny / "query").iterdir())[:20]
    features = color_histogram_features(paths, bins=(6, 3, 3), stripes=4)
    assert features.shape == (20, 4 * 54) and features.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(features, axis=1), 1.0, rtol=1e-5)
    assert (features >= 0).all()
    assert len({row.tobytes() for row in features}) == 20


def test_empty_list_and_bad_arguments():
    assert color_histogram_features([]).shape == (0, 768)
    with pytest.raises(TypeError, match="sequence of images"):
        color_histogram_features("image.jpg")
    with pytest.raises(ValueError, match="bins"):
        color_histogram(two_colour(), bins=(4, 0, 2))
    with pytest.raises(ValueError, match="stripes"):
        color_histogram(two_colour(), stripes=0)
    with pytest.raises(ValueError, match="cannot be cut"):
        color_histogram(two_colour(height=2), stripes=3)
    with pytest.raises(ValueError, match="uint8 RGB"):
        color_histogram(np.zeros((4, 4), dtype=np.uint8))
