"""Augmentation preview: the pure render functions and the widget wiring, headless (no kernel, no browser)."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from PIL import Image

from reidkit.data.transforms import CIFAR_MEAN
from reidkit.viz.augmentation import (
    AugmentationParams,
    augmentation_grid,
    augmentation_preview,
    render_augmentation,
)

H, W = 64, 32
SMALL = AugmentationParams(height=H, width=W, cutout_size=16)


def noise_image(seed: int = 0, height: int = 128, width: int = 64) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8))


def test_render_is_deterministic_for_a_seed() -> None:
    img = noise_image()
    out = render_augmentation(img, SMALL, seed=7)
    assert out.shape == (H, W, 3) and out.dtype == np.uint8
    assert np.array_equal(out, render_augmentation(img, SMALL, seed=7))
    assert np.array_equal(out, render_augmentation(np.asarray(img), dataclasses.asdict(SMALL), seed=7))
    assert len({render_augmentation(img, SMALL, s).tobytes() for s in range(8)}) > 4


def test_all_off_is_only_resize_within_one_level() -> None:
    img = noise_image()
    expected = np.asarray(img.resize((W, H), Image.Resampling.BILINEAR)).astype(int)
    for seed in range(3):
        out = render_augmentation(img, AugmentationParams.all_off(H, W), seed).astype(int)
        assert np.abs(out - expected).max() <= 1


def test_params_to_config() -> None:
    c = AugmentationParams(erasing=False, lgt_p=0.4, erasing_scale_max=0.25).to_config()
    assert (c.erasing_p, c.lgt_p, c.erasing_scale, c.autoaugment_p) == (0.0, 0.4, (0.02, 0.25), 0.0)
    seed = AugmentationParams(seed_parity=True, autoaugment=True).to_config()
    assert (seed.fill, seed.fill_space, seed.lgt_space) == (CIFAR_MEAN, "normalized", "normalized")
    assert seed.autoaugment_p == 0.1
    with pytest.raises(ValueError, match="valid: height, width"):
        AugmentationParams.from_mapping({"erase_p": 0.3})
    with pytest.raises(ValueError, match="'translate', 'pad_crop', 'none'"):
        AugmentationParams(crop="zoom")
    with pytest.raises(ValueError, match="erasing must be True or False"):
        AugmentationParams(erasing=1)  # type: ignore[arg-type]


def test_grid_cells_are_the_pure_renders() -> None:
    imgs = [noise_image(0), noise_image(1)]
    seeds = [3, 4, 5]
    grid = augmentation_grid(imgs, SMALL, seeds, gap=2)
    assert grid.shape == (2 * H + 2, 4 * W + 3 * 2, 3) and grid.dtype == np.uint8
    for i, img in enumerate(imgs):
        y = i * (H + 2)
        assert np.array_equal(grid[y : y + H, :W], np.asarray(img.resize((W, H), Image.Resampling.BILINEAR)))
        for j, seed in enumerate(seeds):
            x = (j + 1) * (W + 2)
            assert np.array_equal(grid[y : y + H, x : x + W], render_augmentation(img, SMALL, seed))


def test_preview_builds_and_renders_once() -> None:
    widget, state = augmentation_preview([noise_image()], seed=0, num_samples=3, params=SMALL)
    assert state.renders == 1 and state.seeds == [0, 1, 2] and state.error is None
    assert len(state.images) == 3 and state.png.startswith(b"\x89PNG")
    assert state.grid is not None and state.grid.shape == (H, 4 * W + 3 * 4, 3)
    for name, control in state.controls.items():
        assert control.description, name
        assert control.style.description_width == "initial"
    assert widget.children  # a real widget tree


def test_setting_a_widget_updates_params_and_rerenders() -> None:
    img = noise_image()
    _, state = augmentation_preview([img], seed=0, num_samples=3, params=AugmentationParams.all_off(H, W))
    before = [a.copy() for a in state.images]
    state.controls["erasing"].value = True
    assert state.renders == 2 and state.params.erasing
    state.controls["erasing_p"].value = 1.0
    assert state.renders == 3 and state.params.erasing_p == 1.0
    assert all(not np.array_equal(a, b) for a, b in zip(state.images, before))
    assert np.array_equal(state.images[0], render_augmentation(img, state.params, state.seed))
    state.controls["crop"].value = "pad_crop"
    assert state.params.crop == "pad_crop" and state.renders == 4


def test_resample_button_changes_seed_and_images() -> None:
    params = dataclasses.replace(SMALL, erasing_p=1.0)
    _, state = augmentation_preview([noise_image()], seed=5, num_samples=2, params=params)
    before, png = [a.copy() for a in state.images], state.png
    assert state.resample_button.description == "resample"
    state.resample_button.click()
    assert state.seed == 7 and state.seeds == [7, 8] and state.renders == 2
    assert any(not np.array_equal(a, b) for a, b in zip(state.images, before)) and state.png != png


def test_only_switches_on_exactly_one_transform_at_probability_one() -> None:
    from reidkit.viz.augmentation import SINGLE_TRANSFORMS

    steps = {
        "hflip": ["Resize", "RandomHorizontalFlip", "ToTensor", "Normalize"],
        "translate": ["Resize", "Random2DTranslation", "ToTensor", "Normalize"],
        "pad_crop": ["Resize", "Pad", "RandomCrop", "ToTensor", "Normalize"],
        "autoaugment": ["AutoAugment", "Resize", "ToTensor", "Normalize"],
        "lgt": ["Resize", "ToTensor", "LGT", "Normalize"],
        "erasing": ["Resize", "ToTensor", "Normalize", "RandomErasing"],
        "cutout": ["Resize", "ToTensor", "Normalize", "Cutout"],
    }
    assert set(steps) == set(SINGLE_TRANSFORMS)
    from reidkit.data.transforms import build_transforms

    for name, expected in steps.items():
        config = AugmentationParams.only(name, H, W, cutout_size=16).to_config()
        assert build_transforms(config, train=True).names == expected, name
    # probability 1: a flip-only pipeline mirrors every sample exactly
    img = noise_image(height=H, width=W)
    for seed in range(4):
        flipped = render_augmentation(img, AugmentationParams.only("hflip", H, W), seed)
        plain = render_augmentation(img, AugmentationParams.all_off(H, W), seed)
        assert np.array_equal(flipped, plain[:, ::-1])
    assert AugmentationParams.only("erasing", H, W, erasing_scale_max=0.2, cutout_size=16).erasing_scale_max == 0.2
    with pytest.raises(ValueError, match="valid: hflip, translate"):
        AugmentationParams.only("blur")
