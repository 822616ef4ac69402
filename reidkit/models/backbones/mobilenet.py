"""MobileNetV3 large / small as re-ID backbones (Howard et al., "Searching for MobileNetV3", ICCV 2019,
arXiv 1905.02244), torchvision's architecture and weights.

Bneck(k, exp, out, SE, act, s): 1×1 expand to exp (skipped if exp = C_in) → depthwise k×k stride s →
optional SE (squeeze to make_divisible(exp/4, 8), ReLU, hard-sigmoid) → 1×1 project; residual when s = 1
and C_in = out. Activations ReLU or hard-swish h(x) = x·ReLU6(x + 3)/6. Stem 3×3 s2, 16 channels, hard-swish;
the last layer is a 1×1 conv to 960 (large) / 576 (small) channels, hard-swish = ``out_channels``. The ImageNet
classifier (Linear 1280 / 1024) is dropped.

Stages (``stage_names``): ``stem``, then ``stage1``.. split before every stride-2 bneck (large: 15 bnecks in
5 stages at strides 2, 4, 8, 16, 32; small: 11 bnecks in 4 stages at 4, 8, 16, 32), then ``head`` (the 1×1
conv). Output stride 32; ``last_stride=1`` sets the last stride-2 bneck (large 13, small 9) to stride 1 →
output stride 16.
"""
from __future__ import annotations

import functools
from collections.abc import Callable, Sequence

import torchvision
from torch import Tensor, nn

from reidkit.models.backbones.base import (
    Backbone,
    Pretrained,
    WeightFile,
    check_last_stride,
    load_backbone_weights,
    max_stride,
    remove_stride,
)

TORCHVISION_NAMES = {
    "mobilenetv3_large": ("mobilenet_v3_large", "MobileNet_V3_Large_Weights"),
    "mobilenetv3_small": ("mobilenet_v3_small", "MobileNet_V3_Small_Weights"),
}


class MobileNetV3Backbone(Backbone):
    """torchvision ``MobileNetV3.features`` (names unchanged: ``features.<i>...``) split into stages at the
    stride-2 bnecks."""

    def __init__(self, features: nn.Sequential, *, last_stride: int = 1) -> None:
        super().__init__()
        check_last_stride(last_stride)
        self.features = features
        bnecks = range(1, len(features) - 1)
        strided = [i for i in bnecks if max_stride(features[i]) == 2]
        starts = sorted({1, *strided})
        ends = [*starts[1:], len(features) - 1]
        self._slices = {"stem": slice(0, 1)}
        for k, (start, end) in enumerate(zip(starts, ends), start=1):
            self._slices[f"stage{k}"] = slice(start, end)
        self._slices["head"] = slice(len(features) - 1, len(features))
        self.stage_names = tuple(self._slices)
        if last_stride == 1:
            remove_stride(features[strided[-1]])
        self.out_channels = [m for m in features[-1].modules() if isinstance(m, nn.Conv2d)][-1].out_channels

    def forward_stage(self, name: str, x: Tensor) -> Tensor:
        for module in self.features[self._slices[name]]:
            x = module(x)
        return x


def build_mobilenetv3(
    name: str,
    pretrained: Pretrained = False,
    last_stride: int = 1,
    attention: str | None = None,
    attention_layout: Sequence[int] | None = None,
) -> MobileNetV3Backbone:
    """Build ``mobilenetv3_large`` / ``mobilenetv3_small``; ``pretrained=True`` loads torchvision's
    ``IMAGENET1K_V1`` file through reidkit's weights folder (``classifier.*`` dropped)."""
    if name not in TORCHVISION_NAMES:
        raise ValueError(f"unknown MobileNetV3 {name!r}; valid: {', '.join(TORCHVISION_NAMES)}")
    if attention is not None or attention_layout is not None:
        raise ValueError(
            f"attention insertion is defined for the ResNet family and OSNet, not {name!r}; use attention=None"
        )
    tv_name, weights_enum = TORCHVISION_NAMES[name]
    model = MobileNetV3Backbone(getattr(torchvision.models, tv_name)(weights=None).features, last_stride=last_stride)
    default = None
    if pretrained is True:
        url = getattr(torchvision.models, weights_enum).IMAGENET1K_V1.url
        default = WeightFile(url.rsplit("/", 1)[-1], url)
    load_backbone_weights(model, pretrained, default, name)
    return model


MOBILENET_BUILDERS: dict[str, Callable[..., MobileNetV3Backbone]] = {
    name: functools.partial(build_mobilenetv3, name) for name in TORCHVISION_NAMES
}
