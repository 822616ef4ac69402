"""Re-ID transforms (components.md §9): defining properties on hand-made images, exact where possible."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torchvision.transforms as T
from PIL import Image

from reidkit.data.transforms import (
    CIFAR_MEAN,
    IMAGENET_MEAN,
    IMAGENET_ORIGINAL_POLICY,
    IMAGENET_STD,
    LGT,
    AugmentOp,
    AutoAugment,
    Compose,
    Cutout,
    Normalize,
    Pad,
    Random2DTranslation,
    RandomCrop,
    RandomErasing,
    RandomHorizontalFlip,
    Resize,
    ToTensor,
    TransformConfig,
    apply_op,
    apply_with_seed,
    build_transforms,
    level_to_arg,
    normalize,
)

H, W = 64, 32  # small pipeline size keeps the many-seed loops fast
NO_CUTOUT = {"height": H, "width": W, "cutout_p": 0.0}


def noise_image(height: int = 128, width: int = 64, seed: int = 0) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8))


def noise_tensor(height: int = H, width: int = W, seed: int = 0) -> torch.Tensor:
    """A normalised-looking tensor with no exact zeros (so an erased region is recognisable)."""
    g = torch.Generator().manual_seed(seed)
    return torch.rand(3, height, width, generator=g) + 0.5


def arr(img: Image.Image) -> np.ndarray:
    return np.asarray(img)


def bbox(mask: torch.Tensor) -> tuple[int, int, int, int]:
    rows = torch.nonzero(mask.any(1)).flatten()
    cols = torch.nonzero(mask.any(0)).flatten()
    return int(rows[0]), int(cols[0]), int(rows[-1] - rows[0] + 1), int(cols[-1] - cols[0] + 1)


# ----------------------------------------------------------------------------------------------------------
# p = 0 → identity, p = 1 → changed, argument validation, repr
# ----------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "make, kind",
    [
        (lambda p: RandomHorizontalFlip(p), "pil"),
        (lambda p: RandomHorizontalFlip(p), "tensor"),
        (lambda p: AutoAugment(p), "pil"),
        (lambda p: LGT(p), "pil"),
        (lambda p: LGT(p), "tensor"),
        (lambda p: RandomErasing(p), "tensor"),
        (lambda p: Cutout(p, size=16), "tensor"),
    ],
)
def test_p0_is_identity_and_p1_changes(make, kind) -> None:
    img = noise_image(H, W) if kind == "pil" else noise_tensor()
    same = [apply_with_seed(make(0.0), img, s) for s in range(10)]
    changed = [apply_with_seed(make(1.0), img, s) for s in range(10)]
    if kind == "pil":
        assert all(np.array_equal(arr(o), arr(img)) for o in same)
        assert sum(not np.array_equal(arr(o), arr(img)) for o in changed) >= 5
    else:
        assert all(torch.equal(o, img) for o in same)
        assert all(not torch.equal(o, img) for o in changed)


def test_flip_pil_and_tensor_agree() -> None:
    img = noise_image(H, W)
    flipped = RandomHorizontalFlip(1.0)(img)
    assert np.array_equal(arr(flipped), arr(img)[:, ::-1])
    assert torch.equal(RandomHorizontalFlip(1.0)(ToTensor()(img)), ToTensor()(flipped))


@pytest.mark.parametrize(
    "make, words",
    [
        (lambda: RandomErasing(p=1.5), ["p", "[0, 1]", "1.5"]),
        (lambda: RandomHorizontalFlip(p=-0.1), ["p", "[0, 1]"]),
        (lambda: RandomErasing(scale=(0.5, 0.2)), ["scale", "s_l <= s_h"]),
        (lambda: RandomErasing(ratio=2.0), ["ratio", "(0, 1]"]),
        (lambda: RandomErasing(fill_space="raw"), ["fill_space", "'pixel'", "'normalized'", "'raw'"]),
        (lambda: Cutout(size=0), ["size", "positive"]),
        (lambda: Random2DTranslation(H, W, factor=0.9), ["factor", ">= 1"]),
        (lambda: Resize(H, W, interpolation="nearest"), ["interpolation", "'bilinear'", "'bicubic'"]),
        (lambda: Resize(0, W), ["height", "positive"]),
        (lambda: AugmentOp("Rotate", 0.5, 11), ["level", "[0, 10]"]),
        (lambda: AugmentOp("Shear", 0.5, 3), ["Shear", "ShearX"]),
        (lambda: Normalize(std=(1.0, 0.0, 1.0)), ["std", "positive"]),
    ],
)
def test_invalid_arguments_name_value_and_expectation(make, words) -> None:
    with pytest.raises(ValueError) as err:
        make()
    for word in words:
        assert word in str(err.value)


def test_input_types_are_checked() -> None:
    with pytest.raises(TypeError, match="float \\(C, H, W\\) tensor"):
        RandomErasing(1.0)(noise_image())
    with pytest.raises(TypeError, match="PIL image"):
        AutoAugment(1.0)(noise_tensor())
    with pytest.raises(TypeError, match="PIL image"):
        Random2DTranslation(H, W)(noise_tensor())
    with pytest.raises(ValueError, match="RGB"):
        AutoAugment(1.0)(noise_image().convert("L"))
    with pytest.raises(ValueError, match="does not fit"):
        Cutout(1.0, size=40)(noise_tensor())
    with pytest.raises(ValueError, match="at least that large"):
        RandomCrop(H + 1, W)(noise_image(H, W))


def test_repr_shows_parameters() -> None:
    assert repr(RandomErasing(0.3, scale=(0.02, 0.2))).startswith("RandomErasing(p=0.3, scale=(0.02, 0.2), ratio=0.3")
    assert repr(Cutout(1.0, 32)).startswith("Cutout(p=1.0, size=32, fill=(0.485, 0.456, 0.406), fill_space='pixel'")
    assert repr(Random2DTranslation(256, 128)) == (
        "Random2DTranslation(height=256, width=128, p=0.5, factor=1.125, interpolation='bilinear')"
    )
    assert "policy='imagenet_original'" in repr(AutoAugment())
    assert "LGT(p=0.2" in repr(build_transforms(None, train=True))


# ----------------------------------------------------------------------------------------------------------
# RandomErasing / Cutout: fills and rectangle geometry
# ----------------------------------------------------------------------------------------------------------
def test_erasing_default_fill_is_exactly_zero_after_normalize() -> None:
    x = noise_tensor()
    for seed in range(20):
        for t in (RandomErasing(1.0), Cutout(1.0, size=16)):
            out = apply_with_seed(t, x, seed)
            erased = (out != x).any(0)
            assert erased.any()
            assert torch.equal(out[:, erased], torch.zeros(3, int(erased.sum())))
            # de-normalised, the patch is the ImageNet mean colour
            pixel = out[:, erased][:, 0] * torch.tensor(IMAGENET_STD) + torch.tensor(IMAGENET_MEAN)
            assert torch.allclose(pixel, torch.tensor(IMAGENET_MEAN), atol=1e-7)


def test_pixel_space_fill_commutes_with_normalize() -> None:
    """Erasing a [0, 1] image with colour c, then Normalize == Normalize, then erasing with pixel-space c."""
    raw = noise_tensor() - 0.5
    c = (0.9, 0.1, 0.3)
    for seed in range(10):
        before = normalize(apply_with_seed(RandomErasing(1.0, fill=c, fill_space="normalized"), raw, seed),
                           IMAGENET_MEAN, IMAGENET_STD)
        after = apply_with_seed(RandomErasing(1.0, fill=c), normalize(raw, IMAGENET_MEAN, IMAGENET_STD), seed)
        assert torch.allclose(before, after, atol=1e-6)


def test_normalized_space_fill_writes_the_raw_values() -> None:
    x = noise_tensor()
    for t in (RandomErasing(1.0, fill=CIFAR_MEAN, fill_space="normalized"),
              Cutout(1.0, size=16, fill=CIFAR_MEAN, fill_space="normalized")):
        out = apply_with_seed(t, x, 3)
        erased = (out != x).any(0)
        expected = torch.tensor(CIFAR_MEAN).view(3, 1).expand(3, int(erased.sum()))
        assert torch.equal(out[:, erased], expected)


def test_erased_rectangle_area_and_aspect_within_bounds() -> None:
    height, width = 128, 64
    x = noise_tensor(height, width)
    s_l, s_h, r1 = 0.02, 0.3, 0.4
    t = RandomErasing(1.0, scale=(s_l, s_h), ratio=r1)
    areas, aspects = [], []
    for seed in range(300):
        mask = (apply_with_seed(t, x, seed) == 0).all(0)
        top, left, h, w = bbox(mask)
        assert int(mask.sum()) == h * w, "the erased region is a full rectangle"
        assert 0 < h < height and 0 < w < width
        areas.append(h * w / (height * width))
        aspects.append(h / w)
    # h = round(√(a r)), w = round(√(a/r)): allow the rounding of ±0.5 px on sides of at least ~8 px
    assert s_l * 0.85 <= min(areas) and max(areas) <= s_h * 1.15
    assert r1 * 0.85 <= min(aspects) and max(aspects) <= (1 / r1) * 1.15
    # the draws cover the range
    assert min(areas) < s_l + 0.03 and max(areas) > s_h - 0.05
    assert min(aspects) < 0.6 and max(aspects) > 1.7


def test_cutout_square_is_fully_inside_with_given_size() -> None:
    x = noise_tensor(H, W)
    tops, lefts = set(), set()
    for seed in range(200):
        mask = (apply_with_seed(Cutout(1.0, size=20), x, seed) == 0).all(0)
        top, left, h, w = bbox(mask)
        assert (h, w) == (20, 20) and int(mask.sum()) == 400
        assert 0 <= top <= H - 20 and 0 <= left <= W - 20
        tops.add(top)
        lefts.add(left)
    assert {0, H - 20} <= tops and {0, W - 20} <= lefts  # both extremes reachable
    assert torch.equal(Cutout(1.0, size=W)(x[:, :W, :]), torch.zeros(3, W, W))  # size == image: all of it


# ----------------------------------------------------------------------------------------------------------
# LGT
# ----------------------------------------------------------------------------------------------------------
def test_lgt_tensor_patch_is_luma_and_rest_unchanged() -> None:
    x = noise_tensor() - 0.5  # [0, 1) image
    y = 0.299 * x[0] + 0.587 * x[1] + 0.114 * x[2]
    for seed in range(30):
        out = apply_with_seed(LGT(1.0), x, seed)
        gray = (out != x).any(0)
        top, left, h, w = bbox(gray)
        assert int(gray.sum()) == h * w
        rows, cols = slice(top, top + h), slice(left, left + w)
        for c in range(3):
            assert torch.equal(out[c, rows, cols], y[rows, cols])
        outside = torch.ones_like(gray)
        outside[rows, cols] = False
        assert torch.equal(out[:, outside], x[:, outside])


def test_lgt_pil_patch_is_pil_luma() -> None:
    img = noise_image(H, W)
    y = arr(img.convert("L"))
    for seed in range(10):
        out = arr(apply_with_seed(LGT(1.0), img, seed))
        gray = torch.from_numpy((out != arr(img)).any(2))
        top, left, h, w = bbox(gray)
        patch = out[top : top + h, left : left + w]
        assert np.array_equal(patch, np.repeat(y[top : top + h, left : left + w, None], 3, axis=2))
        rest = np.ones(gray.shape, bool)
        rest[top : top + h, left : left + w] = False
        assert np.array_equal(out[rest], arr(img)[rest])


# ----------------------------------------------------------------------------------------------------------
# Random2DTranslation, Pad + RandomCrop
# ----------------------------------------------------------------------------------------------------------
def find_window(big: np.ndarray, window: np.ndarray) -> tuple[int, int] | None:
    h, w = window.shape[:2]
    for y in range(big.shape[0] - h + 1):
        for x in range(big.shape[1] - w + 1):
            if np.array_equal(big[y : y + h, x : x + w], window):
                return y, x
    return None


def test_random2d_translation_is_a_crop_of_the_enlarged_image() -> None:
    img = noise_image(128, 64)
    t = Random2DTranslation(H, W, p=1.0, factor=1.125)
    assert t.enlarged_size == (72, 36)
    big = arr(img.resize((36, 72), Image.Resampling.BILINEAR))
    offsets = set()
    for seed in range(150):
        out = apply_with_seed(t, img, seed)
        assert out.size == (W, H)
        found = find_window(big, arr(out))
        assert found is not None, f"seed {seed}: not a window of the enlarged image"
        offsets.add(found)
    # y0 = round(U(0, 8)), x0 = round(U(0, 4)): every offset in the range occurs, none outside
    assert {y for y, _ in offsets} == set(range(72 - H + 1)) and {x for _, x in offsets} == set(range(36 - W + 1))
    plain = arr(img.resize((W, H), Image.Resampling.BILINEAR))
    assert all(np.array_equal(arr(apply_with_seed(Random2DTranslation(H, W, p=0.0), img, s)), plain) for s in range(5))
    assert Random2DTranslation(256, 128).enlarged_size == (288, 144)


def test_pad_then_random_crop_is_a_window_of_the_padded_image() -> None:
    img = noise_image(H, W)
    padded = Pad(10)(img)
    assert padded.size == (W + 20, H + 20)
    p = arr(padded)
    assert not p[:10].any() and not p[:, :10].any() and np.array_equal(p[10:-10, 10:-10], arr(img))
    assert torch.equal(Pad(10)(ToTensor()(img)), ToTensor()(padded))
    offsets = set()
    for seed in range(30):
        out = arr(apply_with_seed(Compose([Pad(10), RandomCrop(H, W)]), img, seed))
        assert out.shape == (H, W, 3)
        found = find_window(p, out)
        assert found is not None
        offsets.add(found)
    assert len(offsets) > 5 and all(0 <= y <= 20 and 0 <= x <= 20 for y, x in offsets)


# ----------------------------------------------------------------------------------------------------------
# AutoAugment
# ----------------------------------------------------------------------------------------------------------
SPEC_POLICY = """
P .4 8, Rotate .6 9 | Solarize .6 5, AutoContrast .6 5 | Equalize .8 8, Equalize .6 3 | P .6 7, P .6 6 |
Equalize .4 7, Solarize .2 4 | Equalize .4 4, Rotate .8 8 | Solarize .6 3, Equalize .6 7 | P .8 5, Equalize 1.0 2 |
Rotate .2 3, Solarize .6 8 | Equalize .6 8, P .4 6 | Rotate .8 8, Color .4 0 | Rotate .4 9, Equalize .6 2 |
Equalize .0 7, Equalize .8 8 | Invert .6 4, Equalize 1.0 8 | Color .6 4, Contrast 1.0 8 | Rotate .8 8, Color 1.0 2 |
Color .8 8, Solarize .8 7 | Sharpness .4 7, Invert .6 8 | ShearX .6 5, Equalize 1.0 9 | Color .4 0, Equalize .6 3 |
Equalize .4 7, Solarize .2 4 | Solarize .6 5, AutoContrast .6 5 | Invert .6 4, Equalize 1.0 8 |
Color .6 4, Contrast 1.0 8 | Equalize .8 8, Equalize .6 3
"""  # transcribed from components.md §9.2 (P = PosterizeOriginal)


def test_policy_table_is_the_spec() -> None:
    expected = []
    for pair in SPEC_POLICY.replace("\n", " ").split("|"):
        ops = []
        for op in pair.split(","):
            name, prob, level = op.split()
            ops.append(("PosterizeOriginal" if name == "P" else name, float(prob), int(level)))
        expected.append(tuple(ops))
    actual = [tuple((op.name, op.prob, op.level) for op in sub) for sub in IMAGENET_ORIGINAL_POLICY]
    assert len(actual) == 25 and actual == expected


def test_level_to_argument_mapping() -> None:
    assert level_to_arg("PosterizeOriginal", 10) == 8
    assert [level_to_arg("PosterizeOriginal", lv) for lv in (0, 3, 5, 7, 8)] == [4, 5, 6, 6, 7]
    assert [level_to_arg("Solarize", lv) for lv in (0, 3, 5, 10)] == [0, 76, 128, 256]
    assert level_to_arg("Rotate", 9) == pytest.approx(27.0) and level_to_arg("Rotate", 10) == pytest.approx(30.0)
    assert level_to_arg("ShearX", 5) == pytest.approx(0.15)
    for name in ("Color", "Contrast", "Sharpness"):
        assert level_to_arg(name, 0) == pytest.approx(0.1) and level_to_arg(name, 10) == pytest.approx(1.9)
        assert level_to_arg(name, 5) == pytest.approx(1.0)
    assert {level_to_arg(n, 7) for n in ("AutoContrast", "Equalize", "Invert")} == {None}
    with pytest.raises(ValueError, match="valid"):
        level_to_arg("Posterize", 3)


def test_no_op_levels_leave_the_image_unchanged() -> None:
    img = noise_image(H, W)
    for op in (AugmentOp("PosterizeOriginal", 1.0, 10), AugmentOp("Solarize", 1.0, 10), AugmentOp("Color", 1.0, 5)):
        assert np.array_equal(arr(apply_op(img, op)), arr(img)), op
    assert np.array_equal(arr(apply_op(img, AugmentOp("Equalize", 0.0, 7))), arr(img))  # probability 0
    posterized = arr(apply_op(img, AugmentOp("PosterizeOriginal", 1.0, 0)))  # 4 bits
    assert np.array_equal(posterized, arr(img) & 0xF0)
    assert np.array_equal(arr(apply_op(img, AugmentOp("Invert", 1.0, 0))), 255 - arr(img))


def test_rotate_and_shear_use_fill_128_and_bilinear_or_bicubic() -> None:
    img = noise_image(H, W)
    bil, bic = Image.Resampling.BILINEAR, Image.Resampling.BICUBIC
    seen_rot, seen_shear = set(), set()
    for seed in range(16):
        g = torch.Generator().manual_seed(seed)
        out = arr(apply_op(img, AugmentOp("Rotate", 1.0, 10), g))
        candidates = {(d, r): arr(img.rotate(d, resample=r, fillcolor=(128, 128, 128))) for d in (30.0, -30.0)
                      for r in (bil, bic)}
        match = [k for k, v in candidates.items() if np.array_equal(v, out)]
        assert len(match) == 1
        seen_rot.add(match[0])
        assert tuple(out[0, 0]) == (128, 128, 128)  # a corner rotated out of the frame is the fill
        out = arr(apply_op(img, AugmentOp("ShearX", 1.0, 10), g))
        candidates = {
            (s, r): arr(img.transform(img.size, Image.Transform.AFFINE, (1, s, 0, 0, 1, 0), resample=r,
                                      fillcolor=(128, 128, 128)))
            for s in (0.3, -0.3) for r in (bil, bic)
        }
        match = [k for k, v in candidates.items() if np.array_equal(v, out)]
        assert len(match) == 1
        seen_shear.add(match[0])
    assert len(seen_rot) == 4 and len(seen_shear) == 4  # both signs and both filters occur


def test_autoaugment_deterministic_under_seed_and_mostly_changes_at_p1() -> None:
    img = noise_image(H, W)
    t = AutoAugment(p=1.0)
    outs = [arr(apply_with_seed(t, img, s)) for s in range(30)]
    assert all(np.array_equal(o, arr(apply_with_seed(t, img, s))) for s, o in enumerate(outs))
    assert sum(not np.array_equal(o, arr(img)) for o in outs) >= 15
    assert all(o.shape == (H, W, 3) for o in outs)
    assert all(np.array_equal(arr(apply_with_seed(AutoAugment(p=0.0), img, s)), arr(img)) for s in range(10))


# ----------------------------------------------------------------------------------------------------------
# build_transforms and TransformConfig
# ----------------------------------------------------------------------------------------------------------
def test_default_train_order_is_section_9_1() -> None:
    assert build_transforms(None, train=True).names == [
        "Resize", "RandomHorizontalFlip", "Random2DTranslation", "ToTensor", "LGT", "Normalize", "RandomErasing",
        "Cutout",
    ]
    c = TransformConfig()
    assert (c.height, c.width, c.interpolation, c.hflip_p, c.translate_p, c.translate_factor) == (
        256, 128, "bilinear", 0.5, 0.5, 1.125)
    assert (c.autoaugment_p, c.lgt_p, c.erasing_p, c.cutout_p, c.cutout_size) == (0.0, 0.2, 0.5, 0.5, 64)
    assert (c.erasing_scale, c.erasing_ratio, c.fill, c.fill_space) == ((0.02, 0.4), 0.3, IMAGENET_MEAN, "pixel")
    assert (c.mean, c.std) == (IMAGENET_MEAN, IMAGENET_STD)


def test_config_options_change_the_order() -> None:
    seed_b = {"autoaugment_p": 0.1, "fill": list(CIFAR_MEAN), "fill_space": "normalized", "lgt_space": "normalized"}
    assert build_transforms(seed_b, train=True).names == [
        "AutoAugment", "Resize", "RandomHorizontalFlip", "Random2DTranslation", "ToTensor", "Normalize",
        "RandomErasing", "Cutout", "LGT",
    ]
    assert build_transforms({"translate_from_original": True}, train=True).names[:2] == [
        "RandomHorizontalFlip", "Random2DTranslation"]
    bot = {"crop": "pad_crop", "lgt_p": 0, "cutout_p": 0}
    assert build_transforms(bot, train=True).names == [
        "Resize", "RandomHorizontalFlip", "Pad", "RandomCrop", "ToTensor", "Normalize", "RandomErasing"]
    off = {"crop": "none", "hflip_p": 0, "lgt_p": 0, "erasing_p": 0, "cutout_p": 0}
    assert build_transforms(off, train=True).names == ["Resize", "ToTensor", "Normalize"]


def test_translate_from_original_resizes_once() -> None:
    img = noise_image(128, 64)
    cfg = {**NO_CUTOUT, "translate_from_original": True, "translate_p": 1.0, "hflip_p": 0, "lgt_p": 0, "erasing_p": 0}
    out = apply_with_seed(build_transforms(cfg, train=True), img, 0)
    big = ToTensor()(img.resize((36, 72), Image.Resampling.BILINEAR))
    window = out * torch.tensor(IMAGENET_STD).view(3, 1, 1) + torch.tensor(IMAGENET_MEAN).view(3, 1, 1)
    hits = [
        (y, x) for y in range(9) for x in range(5) if torch.allclose(big[:, y : y + H, x : x + W], window, atol=1e-6)
    ]
    assert len(hits) == 1


def test_test_pipeline_on_a_hand_made_image() -> None:
    pixels = np.array([[[255, 0, 51]], [[0, 128, 255]]], dtype=np.uint8)  # 2×1 image
    pipeline = build_transforms({"height": 2, "width": 1, "cutout_p": 0}, train=False)
    assert pipeline.names == ["Resize", "ToTensor", "Normalize"]
    out = pipeline(Image.fromarray(pixels))
    rgb01 = torch.tensor(pixels, dtype=torch.float32).permute(2, 0, 1) / 255
    expected = (rgb01 - torch.tensor(IMAGENET_MEAN).view(3, 1, 1)) / torch.tensor(IMAGENET_STD).view(3, 1, 1)
    assert out.shape == (3, 2, 1) and out.dtype == torch.float32
    assert torch.allclose(out, expected, atol=1e-6)
    assert out[0, 0, 0].item() == pytest.approx((1 - 0.485) / 0.229, abs=1e-6)


def test_train_and_test_output_shapes() -> None:
    img = noise_image(128, 64)
    for train in (True, False):
        out = apply_with_seed(build_transforms({"autoaugment_p": 0.5}, train=train), img, 1)
        assert out.shape == (3, 256, 128) and out.dtype == torch.float32


@pytest.mark.parametrize(
    "cfg, words",
    [
        ({"heigth": 256}, ["'heigth'", "valid keys", "height", "width", "erasing_p", "lgt_space"]),
        ({"crop": "random"}, ["crop", "'translate'", "'pad_crop'", "'none'", "'random'"]),
        ({"interpolation": "nearest"}, ["interpolation", "'bilinear'", "'bicubic'"]),
        ({"lgt_space": "raw"}, ["lgt_space", "'pixel'", "'normalized'"]),
        ({"erasing_p": 1.5}, ["erasing_p", "[0, 1]", "1.5"]),
        ({"height": 32, "width": 16}, ["cutout_size 64", "32×16"]),
        ({"translate_factor": 0.5}, ["translate_factor", ">= 1"]),
        ({"fill": [0.5, 0.5]}, ["fill", "3 values"]),
    ],
)
def test_invalid_config_lists_valid_keys_and_values(cfg, words) -> None:
    with pytest.raises(ValueError) as err:
        build_transforms(cfg, train=True)
    for word in words:
        assert word in str(err.value)


def test_config_from_yaml_like_mapping_and_replace() -> None:
    c = TransformConfig.from_mapping({"erasing_scale": [0.02, 0.3], "mean": [0.5, 0.5, 0.5], "cutout_p": 0})
    assert c.erasing_scale == (0.02, 0.3) and c.mean == (0.5, 0.5, 0.5) and isinstance(c.cutout_p, float)
    assert hash(c) == hash(TransformConfig.from_mapping(c.to_dict()))
    assert c.replace(height=384).height == 384
    with pytest.raises(ValueError, match="valid keys"):
        c.replace(hieght=384)
    with pytest.raises(TypeError, match="mapping"):
        build_transforms(["height"], train=True)  # type: ignore[arg-type]


def test_same_seed_same_output() -> None:
    img = noise_image(128, 64)
    pipeline = build_transforms({"autoaugment_p": 0.5}, train=True)
    outs = [apply_with_seed(pipeline, img, s) for s in range(8)]
    assert all(torch.equal(o, apply_with_seed(pipeline, img, s)) for s, o in enumerate(outs))
    assert len({o.sum().item() for o in outs}) > 4
    g1, g2 = torch.Generator().manual_seed(5), torch.Generator().manual_seed(5)
    assert torch.equal(pipeline(img, generator=g1), pipeline(img, generator=g2))


def test_global_rng_path_and_foreign_steps() -> None:
    """generator=None draws from torch's global RNG (what DataLoader workers seed); apply_with_seed forks it."""
    img = noise_image(128, 64)
    pipeline = build_transforms(None, train=True)
    torch.manual_seed(11)
    a = pipeline(img)
    torch.manual_seed(11)
    state = torch.random.get_rng_state()
    b = pipeline(img)
    assert torch.equal(a, b)
    torch.random.set_rng_state(state)
    apply_with_seed(pipeline, img, 3)
    assert torch.equal(torch.random.get_rng_state(), state)  # apply_with_seed leaves the global RNG alone
    mixed = Compose([Resize(H, W), T.RandomHorizontalFlip(0.5), ToTensor()])
    outs = [apply_with_seed(mixed, img, s) for s in range(6)]
    assert all(torch.equal(o, apply_with_seed(mixed, img, s)) for s, o in enumerate(outs))
