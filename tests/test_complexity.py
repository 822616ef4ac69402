"""Parameter and FLOP counting: hand-computed small models, published backbone numbers, the shape walk, the table.

FLOPs are FlopCounterMode's: 2 per multiply-accumulate, convolutions and matrix products only.
"""
from __future__ import annotations

import pytest
import torch
import torchvision
from torch import nn

from reidkit.models.backbones import build_backbone
from reidkit.models.complexity import (
    ComplexityRow,
    complexity_rows,
    complexity_table,
    count_flops,
    count_parameters,
    feature_map_shapes,
)


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


def conv_macs(model: nn.Module, input_shape: tuple[int, ...]) -> int:
    """Σ over Conv2d layers of C_out · (C_in / groups) · k_h · k_w · H_out · W_out, from forward hooks: an
    independent count of what FlopCounterMode should report for a conv-only network (divided by 2)."""
    total = 0

    def hook(module: nn.Conv2d, _inputs: tuple[torch.Tensor, ...], out: torch.Tensor) -> None:
        nonlocal total
        kh, kw = module.kernel_size
        total += out.shape[0] * module.out_channels * (module.in_channels // module.groups) * kh * kw * out.shape[2] * out.shape[3]

    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, nn.Conv2d)]
    try:
        with torch.inference_mode():
            model.eval()(torch.zeros(input_shape))
    finally:
        for handle in handles:
            handle.remove()
    return total


# ---------------------------------------------------------------------------------------------------------------
# hand-computed counts
# ---------------------------------------------------------------------------------------------------------------
def test_conv3x3_parameters_and_flops_by_hand() -> None:
    conv = nn.Conv2d(3, 8, kernel_size=3, padding=1)
    assert count_parameters(conv) == 3 * 8 * 9 + 8 == 224
    # 8 outputs × 3 inputs × 9 taps at each of the 64 positions, 2 FLOPs per multiply-accumulate; bias not counted
    assert count_flops(conv, (1, 3, 8, 8)) == 2 * 3 * 8 * 9 * 64 == 27_648
    assert count_flops(conv, (2, 3, 8, 8)) == 2 * 27_648  # linear in the batch


def test_strided_grouped_conv_and_linear_by_hand() -> None:
    grouped = nn.Conv2d(8, 8, kernel_size=3, stride=2, padding=1, groups=4, bias=False)
    assert count_parameters(grouped) == 8 * (8 // 4) * 9 == 144
    assert count_flops(grouped, (1, 8, 8, 8)) == 2 * 8 * 2 * 9 * (4 * 4) == 4_608  # 4×4 output

    linear = nn.Linear(16, 4)
    assert count_parameters(linear) == 16 * 4 + 4 == 68
    assert count_flops(linear, (3, 16)) == 2 * 3 * 16 * 4 == 384  # addmm's multiply part only


def test_tiny_network_sums_its_layers_and_skips_bn_relu_pool() -> None:
    net = nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 4),
    )
    assert count_parameters(net) == 224 + 2 * 8 + (8 * 4 + 4) == 276  # BN: weight + bias; running stats are buffers
    assert count_flops(net, (1, 3, 8, 8)) == 27_648 + 2 * 8 * 4 == 27_712


def test_trainable_only_shared_parameters_and_frozen_ones() -> None:
    shared = nn.Linear(4, 4, bias=False)
    net = nn.Sequential(shared, nn.ReLU(), shared, nn.BatchNorm1d(4))
    assert count_parameters(net) == 16 + 8  # the shared weight once
    net[3].bias.requires_grad_(False)  # a BNNeck-style frozen bias
    assert count_parameters(net, trainable_only=True) == 16 + 4
    assert count_parameters(net, trainable_only=False) == 24


def test_count_flops_restores_training_mode_and_leaves_no_graph() -> None:
    net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.Dropout(0.5))
    net.train()
    net[2].eval()  # mixed flags are restored one by one
    before = net[1].running_mean.clone()
    count_flops(net, (1, 3, 8, 8))
    assert net.training and net[1].training and not net[2].training
    assert torch.equal(net[1].running_mean, before)  # eval mode: BN statistics untouched


def test_errors_are_clear() -> None:
    with pytest.raises(TypeError, match="nn.Module"):
        count_parameters("resnet50")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="positive ints"):
        count_flops(nn.Conv2d(3, 8, 3), (1, 3, 0, 8))
    with pytest.raises(TypeError, match="featuremaps"):
        feature_map_shapes(nn.Conv2d(3, 8, 3), (1, 3, 8, 8))
    with pytest.raises(TypeError, match="wrap a single one in a list"):
        complexity_table("resnet18")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="backbone name or a"):
        complexity_rows([3])  # type: ignore[list-item]
    with pytest.raises(TypeError, match="wrap a single one in a list"):
        complexity_rows(("conv", nn.Conv2d(3, 8, 3)))  # type: ignore[arg-type]
    mixed = complexity_rows([("a", nn.Conv2d(3, 8, 3))], (1, 3, 8, 8)) + complexity_rows([("b", nn.Conv2d(3, 8, 3))])
    with pytest.raises(ValueError, match="one table per input shape"):
        complexity_table(mixed)


# ---------------------------------------------------------------------------------------------------------------
# published numbers
# ---------------------------------------------------------------------------------------------------------------
def test_resnet50_backbone_parameter_count() -> None:
    # torchvision's ResNet-50 has 25,557,032 parameters; without the 2048→1000 classifier (2,049,000): 23,508,032
    net = build_backbone("resnet50")
    assert count_parameters(net) == 23_508_032
    assert count_parameters(torchvision.models.resnet50()) - (2048 * 1000 + 1000) == 23_508_032


def test_resnet18_flops_at_224_match_the_published_1_82_gmacs() -> None:
    """ImageNet ResNet-18 at 224×224 is quoted as 1.8 G multiply-adds (torchvision: "GFLOPS 1.81", which are MACs).

    Exact numbers: the convolutions of ResNet-18 at 224×224 (ImageNet stride, last_stride=2) are
    1,813,561,344 MACs = 3,627,122,688 FLOPs; torchvision's full model adds the fc layer, 512 · 1000 MACs, for
    1,814,073,344 MACs = 3,628,146,688 FLOPs, i.e. the 1.814 G in torchvision's weight metadata. BN, ReLU, the
    pools and the residual adds are not counted.
    """
    backbone = build_backbone("resnet18", last_stride=2)
    flops = count_flops(backbone, (1, 3, 224, 224))
    assert flops == 3_627_122_688
    assert flops == 2 * conv_macs(backbone, (1, 3, 224, 224))  # every conv counted, nothing else

    full = torchvision.models.resnet18()
    full_flops = count_flops(full, (1, 3, 224, 224))
    assert full_flops == 3_628_146_688 == flops + 2 * 512 * 1000
    published = torchvision.models.ResNet18_Weights.IMAGENET1K_V1.meta["_ops"]  # 1.814 (G multiply-adds)
    assert round(full_flops / 2 / 1e9, 3) == pytest.approx(published)


def test_last_stride_one_quadruples_the_last_stage_cost() -> None:
    s1 = build_backbone("resnet18", last_stride=1)
    s2 = build_backbone("resnet18", last_stride=2)
    s2.load_state_dict(s1.state_dict())
    layer4_s1 = conv_macs(s1.layer4, (1, 256, 16, 8))
    layer4_s2 = conv_macs(s2.layer4, (1, 256, 16, 8))
    assert layer4_s1 == 4 * layer4_s2
    assert count_flops(s1) - count_flops(s2) == 2 * (layer4_s1 - layer4_s2)


# ---------------------------------------------------------------------------------------------------------------
# shape walk and table
# ---------------------------------------------------------------------------------------------------------------
def test_feature_map_shapes_walk_the_stages() -> None:
    net = build_backbone("resnet18")
    assert feature_map_shapes(net, (2, 3, 256, 128)) == {
        "stem": (2, 64, 64, 32),
        "layer1": (2, 64, 64, 32),
        "layer2": (2, 128, 32, 16),
        "layer3": (2, 256, 16, 8),
        "layer4": (2, 512, 16, 8),
    }
    assert feature_map_shapes(build_backbone("resnet18", last_stride=2))["layer4"] == (1, 512, 8, 4)
    assert net.training  # restored


def test_complexity_rows_and_table_are_exact_and_deterministic() -> None:
    conv = nn.Conv2d(3, 8, 3, padding=1)
    rows = complexity_rows(["resnet18", ("tiny conv", conv)], input_shape=(1, 3, 256, 128))
    shape = (1, 3, 256, 128)
    assert rows[0] == ComplexityRow("resnet18", 11_176_512, 3_979_345_920, (1, 512, 16, 8), shape)
    assert rows[1] == ComplexityRow("tiny conv", 224, 2 * 3 * 8 * 9 * 256 * 128, (1, 8, 256, 128), shape)
    table = complexity_table(["resnet18", ("tiny conv", conv)])
    assert table == complexity_table(["resnet18", ("tiny conv", conv)])
    assert table == complexity_table(rows)  # counted rows are printed as they are
    lines = table.splitlines()
    assert lines[0] == "input 1×3×256×128"
    assert lines[1].split() == ["model", "params", "M", "GFLOPs", "output", "C×H×W"]
    assert lines[2].split() == ["resnet18", "11.18", "3.98", "512×16×8"]
    assert lines[3].split() == ["tiny", "conv", "0.00", "0.01", "8×256×128"]  # 14,155,776 FLOPs


def test_complexity_rows_pass_build_options() -> None:
    (row,) = complexity_rows(["resnet18"], last_stride=2)
    assert row.out_shape == (1, 512, 8, 4)
    assert row.params == 11_176_512  # last_stride changes strides, never parameters
