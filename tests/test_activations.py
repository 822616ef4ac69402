"""Gradient-free activation maps: the formula, its normalisation, upsampling, the overlay and a backbone's maps."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from reidkit.models.backbones import build_backbone
from reidkit.viz.activations import activation_map, mean_activation_maps, overlay, upsample_to


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


def test_map_is_maximal_where_the_feature_map_is_non_zero() -> None:
    fmap = torch.zeros(2, 16, 16, 8)
    fmap[0, :, 3:5, 1:3] = torch.randn(16, 2, 2)  # image 0: a patch near the top left
    fmap[1, 5, 12, 6] = -3.0  # image 1: one negative activation (squared: still the strongest)
    amap = activation_map(fmap)
    assert amap.shape == (2, 16, 8)
    flat_argmax = amap[0].flatten().argmax().item()
    assert (flat_argmax // 8, flat_argmax % 8) in {(h, w) for h in (3, 4) for w in (1, 2)}
    outside = amap[0].clone()
    outside[3:5, 1:3] = 0
    assert outside.abs().max() == 0
    assert amap[1, 12, 6] == 1 and amap[1].sum() == 1


def test_formula_channel_sum_of_squares_min_max_normalised() -> None:
    fmap = torch.randn(3, 5, 4, 6)
    raw = (fmap**2).sum(dim=1)
    lo = raw.flatten(1).min(dim=1).values.view(-1, 1, 1)
    hi = raw.flatten(1).max(dim=1).values.view(-1, 1, 1)
    torch.testing.assert_close(activation_map(fmap), (raw - lo) / (hi - lo))
    cubic = activation_map(fmap, power=3.0)
    raw3 = fmap.abs().pow(3).sum(dim=1)
    torch.testing.assert_close(cubic[0], (raw3[0] - raw3[0].min()) / (raw3[0].max() - raw3[0].min()))


def test_normalised_per_image_to_the_unit_interval() -> None:
    fmap = torch.rand(4, 8, 16, 8) * torch.tensor([1e-3, 1.0, 1e3, 1e6]).view(4, 1, 1, 1)
    amap = activation_map(fmap)
    for b in range(4):  # every image spans [0, 1] whatever its scale
        assert amap[b].min() == 0 and amap[b].max() == 1
    torch.testing.assert_close(amap[0], amap[0].clone())
    scaled = activation_map(fmap * 10)  # scale invariant
    torch.testing.assert_close(scaled, amap)


def test_constant_map_gives_zeros_not_nan() -> None:
    amap = activation_map(torch.zeros(2, 3, 4, 4))
    assert torch.equal(amap, torch.zeros(2, 4, 4))
    amap = activation_map(torch.ones(1, 3, 4, 4))
    assert torch.equal(amap, torch.zeros(1, 4, 4))


def test_input_errors() -> None:
    with pytest.raises(ValueError, match=r"\(B, C, H, W\)"):
        activation_map(torch.zeros(3, 4, 4))
    with pytest.raises(ValueError, match="power"):
        activation_map(torch.zeros(1, 3, 4, 4), power=0)
    with pytest.raises(ValueError, match="mode"):
        upsample_to(torch.zeros(4, 4), 8, 8, mode="bicubic")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="height"):
        upsample_to(torch.zeros(4, 4), 0, 8)


def test_upsample_keeps_range_and_dimensions() -> None:
    amap = activation_map(torch.randn(2, 8, 16, 8))
    up = upsample_to(amap, 256, 128)
    assert up.shape == (2, 256, 128) and up.dtype == torch.float32
    assert up.min() >= 0 and up.max() <= 1
    single = upsample_to(amap[1], 256, 128)
    assert single.shape == (256, 128)
    torch.testing.assert_close(single, up[1])
    nearest = upsample_to(amap, 32, 16, mode="nearest")
    assert torch.equal(nearest[:, ::2, ::2], amap)  # every cell becomes a 2×2 block


def test_overlay_shape_dtype_formula_and_errors() -> None:
    image = np.random.default_rng(0).integers(0, 256, size=(256, 128, 3), dtype=np.uint8)
    heat = upsample_to(activation_map(torch.randn(1, 4, 16, 8)), 256, 128)[0]
    out = overlay(image, heat, alpha=0.5)
    assert out.shape == (256, 128, 3) and out.dtype == np.uint8
    assert np.array_equal(overlay(image, heat, alpha=0.0), image)
    # α = 1: the colour map alone; jet maps 0 to dark blue and 1 to dark red
    pure = overlay(image, np.array([[0.0, 1.0]]).repeat(256, 0)[:, :1].repeat(128, 1), alpha=1.0)
    assert pure[0, 0, 2] > 100 and pure[0, 0, 0] == 0
    with pytest.raises(ValueError, match="upsample_to"):
        overlay(image, np.zeros((16, 8)))
    with pytest.raises(ValueError, match="uint8"):
        overlay(image.astype(np.float32), heat)
    with pytest.raises(ValueError, match="alpha"):
        overlay(image, heat, alpha=1.5)
    with pytest.raises(ValueError, match="colour map"):
        overlay(image, heat, cmap="no-such-map")


def test_backbone_maps_are_deterministic_and_at_the_stage_resolution() -> None:
    net = build_backbone("osnet_x0_25")
    images = torch.randn(2, 3, 256, 128)
    maps = mean_activation_maps(net, images)
    assert maps.shape == (2, 16, 8)
    assert torch.equal(maps, mean_activation_maps(net, images))  # no randomness, no state change
    torch.testing.assert_close(maps[:1], mean_activation_maps(net, images[:1]))  # eval mode: batch-independent
    assert mean_activation_maps(net, images, stage="conv2").shape == (2, 32, 16)
    assert net.training  # restored
    with pytest.raises(ValueError, match="stages are"):
        mean_activation_maps(net, images, stage="layer4")
    with pytest.raises(TypeError, match="reidkit backbone"):
        mean_activation_maps(torch.nn.Conv2d(3, 3, 1), images)


def test_maps_follow_the_image_content() -> None:
    """A bright square on a flat image: the first stage of a random ResNet responds at its edges, not in the flat
    background (the map is about contrast, not semantics, without training)."""
    net = build_backbone("resnet18")
    image = torch.zeros(1, 3, 256, 128)
    image[:, :, 96:160, 32:96] = 2.0
    amap = mean_activation_maps(net, image, stage="stem")  # 64×32, stride 4
    inside_or_edge = amap[0, 22:42, 6:26]
    assert inside_or_edge.max() == 1
    assert amap[0, :16].max() < 0.5  # far from the square


def test_tiny_activations_do_not_vanish() -> None:
    """Deep stages of a random EfficientNet have activations around 1e-12: the map must still show them."""
    fmap = torch.zeros(1, 4, 8, 4)
    fmap[0, :, 2, 1] = 3e-13
    fmap[0, :, 5, 2] = 1e-13
    amap = activation_map(fmap)
    assert amap[0, 2, 1] == 1 and 0 < amap[0, 5, 2] < 1
    assert amap.dtype == torch.float32
    assert activation_map(fmap.double()).dtype == torch.float64
