"""EfficientNet b0-b4 as re-ID backbones (Tan & Le, "EfficientNet: Rethinking Model Scaling for Convolutional
Neural Networks", ICML 2019, arXiv 1905.11946), torchvision's architecture and weights.

MBConv(e, k, s): 1×1 expand to e·C_in (skipped when e = 1) → BN → SiLU → depthwise k×k stride s → BN → SiLU →
SE (squeeze to max(1, ⌊C_in/4⌋), SiLU, expand, sigmoid) → 1×1 project → BN; residual plus stochastic depth
when s = 1 and C_in = C_out. Compound scaling of b0 by width w and depth d: channels make_divisible(c·w, 8),
layers ⌈d·L⌉ (b0 1.0/1.0, b1 1.0/1.1, b2 1.1/1.2, b3 1.2/1.4, b4 1.4/1.8). Head 1×1 conv to 4 × the last
stage's channels = ``out_channels``: 1280, 1280, 1408, 1536, 1792.

Stages (``stage_names``): ``stem`` (3×3 s2), ``stage1``..``stage7`` (strides 1, 2, 2, 2, 1, 2, 1) and ``head``;
the ImageNet classifier is dropped. Output stride 32; ``last_stride=1`` sets stage 6 (the last stride-2
stage) to stride 1 → output stride 16 (16×8 at 256×128).

Stochastic depth (Huang et al., ECCV 2016): drop probability of block i of N is p·i/N, p = 0.2 (0 for the
first block). Seed deviations (``components.md`` §1.4, opt-in): ``stem_stride=1`` (the seed's stride-1 stem:
output stride 16 with last_stride 2, 8 with 1) and ``drop_path_schedule="constant"`` (p on every block).
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

VARIANTS = ("b0", "b1", "b2", "b3", "b4")
DROP_PATH_SCHEDULES = ("linear", "constant")


class EfficientNetBackbone(Backbone):
    """torchvision ``EfficientNet.features`` (names unchanged: ``features.<i>...``) as stages ``stem``,
    ``stage1``..``stage7``, ``head``."""

    def __init__(
        self,
        features: nn.Sequential,
        *,
        last_stride: int = 1,
        stem_stride: int = 2,
        drop_path_rate: float = 0.2,
        drop_path_schedule: str = "linear",
    ) -> None:
        super().__init__()
        check_last_stride(last_stride)
        if stem_stride not in (1, 2):
            raise ValueError(f"stem_stride must be 1 or 2, got {stem_stride!r}")
        if drop_path_schedule not in DROP_PATH_SCHEDULES:
            raise ValueError(f"drop_path_schedule must be one of {DROP_PATH_SCHEDULES}, got {drop_path_schedule!r}")
        self.features = features
        n_stages = len(features) - 2
        self.stage_names = ("stem", *(f"stage{i}" for i in range(1, n_stages + 1)), "head")
        if stem_stride == 1:
            remove_stride(features[0])
        if last_stride == 1:
            last_strided = max(i for i in range(1, n_stages + 1) if max_stride(features[i]) == 2)
            remove_stride(features[last_strided][0])
        if drop_path_schedule == "constant":
            for stage in features[1:-1]:
                for block in stage:
                    block.stochastic_depth.p = drop_path_rate
        self.out_channels = _last_conv(features[-1]).out_channels

    def forward_stage(self, name: str, x: Tensor) -> Tensor:
        return self.features[self.stage_names.index(name)](x)


def _last_conv(module: nn.Module) -> nn.Conv2d:
    convs = [m for m in module.modules() if isinstance(m, nn.Conv2d)]
    if not convs:
        raise TypeError(f"{type(module).__name__} has no Conv2d")
    return convs[-1]


def build_efficientnet(
    name: str,
    pretrained: Pretrained = False,
    last_stride: int = 1,
    attention: str | None = None,
    attention_layout: Sequence[int] | None = None,
    *,
    stem_stride: int = 2,
    drop_path_rate: float = 0.2,
    drop_path_schedule: str = "linear",
) -> EfficientNetBackbone:
    """Build ``efficientnet_b0`` .. ``efficientnet_b4``; ``pretrained=True`` loads torchvision's
    ``IMAGENET1K_V1`` file through reidkit's weights folder (``classifier.*`` dropped)."""
    variant = name.removeprefix("efficientnet_")
    if not name.startswith("efficientnet_") or variant not in VARIANTS:
        raise ValueError(f"unknown EfficientNet {name!r}; valid: {', '.join(EFFICIENTNET_BUILDERS)}")
    if attention is not None or attention_layout is not None:
        raise ValueError(
            f"attention insertion is defined for the ResNet family and OSNet, not {name!r}; use attention=None"
        )
    net = getattr(torchvision.models, name)(weights=None, stochastic_depth_prob=drop_path_rate)
    model = EfficientNetBackbone(
        net.features,
        last_stride=last_stride,
        stem_stride=stem_stride,
        drop_path_rate=drop_path_rate,
        drop_path_schedule=drop_path_schedule,
    )
    default = None
    if pretrained is True:
        url = getattr(torchvision.models, f"EfficientNet_{variant.upper()}_Weights").IMAGENET1K_V1.url
        default = WeightFile(url.rsplit("/", 1)[-1], url)
    load_backbone_weights(model, pretrained, default, name)
    return model


EFFICIENTNET_BUILDERS: dict[str, Callable[..., EfficientNetBackbone]] = {
    f"efficientnet_{v}": functools.partial(build_efficientnet, f"efficientnet_{v}") for v in VARIANTS
}
