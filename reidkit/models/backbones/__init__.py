"""Backbone registry: ``build_backbone(name, pretrained, last_stride, attention, attention_layout, **kw)``.

Every backbone returns its final feature map from ``forward`` (output stride 16 with ``last_stride=1``,
32 with 2), has ``out_channels`` read from its built layers and ``featuremaps(x)`` giving each stage's map by
name, for CAMs. Families: the ResNet family (:mod:`.resnet`, with IBN-a and attention insertion),
EfficientNet b0-b4 (:mod:`.efficientnet`), MobileNetV3 (:mod:`.mobilenet`) and OSNet / OSNet-AIN
(:mod:`.osnet`, imported only when an OSNet is built).

    >>> net = build_backbone("resnet50", last_stride=1, attention="nonlocal")   # doctest: +SKIP
    >>> net(torch.zeros(2, 3, 256, 128)).shape                                    # doctest: +SKIP
    torch.Size([2, 2048, 16, 8])
"""
from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import Any

from torch import nn

from reidkit.models.backbones.base import Backbone
from reidkit.models.backbones.efficientnet import EFFICIENTNET_BUILDERS
from reidkit.models.backbones.mobilenet import MOBILENET_BUILDERS
from reidkit.models.backbones.resnet import RESNET_BUILDERS

OSNET_NAMES = (
    "osnet_x1_0",
    "osnet_x0_75",
    "osnet_x0_5",
    "osnet_x0_25",
    "osnet_ibn_x1_0",
    "osnet_ain_x1_0",
    "osnet_ain_x0_75",
    "osnet_ain_x0_5",
    "osnet_ain_x0_25",
)


def _osnet_builders() -> dict[str, Callable[..., nn.Module]]:
    # Lazy: osnet.py is imported only when an OSNet is asked for.
    from reidkit.models.backbones.osnet import OSNET_BUILDERS

    return OSNET_BUILDERS


def _lazy_osnet(name: str) -> Callable[..., nn.Module]:
    def build(*args: Any, **kwargs: Any) -> nn.Module:
        return _osnet_builders()[name](*args, **kwargs)

    build.__name__ = name
    build.__doc__ = f"Build {name} (reidkit.models.backbones.osnet, imported on first use)."
    return build


BACKBONES: dict[str, Callable[..., nn.Module]] = {
    **RESNET_BUILDERS,
    **EFFICIENTNET_BUILDERS,
    **MOBILENET_BUILDERS,
    **{name: _lazy_osnet(name) for name in OSNET_NAMES},
}


def build_backbone(
    name: str,
    pretrained: bool | str | os.PathLike = False,
    last_stride: int = 1,
    attention: str | None = None,
    attention_layout: Sequence[int] | None = None,
    **kw: Any,
) -> nn.Module:
    """Build the backbone ``name``.

    Args:
        name: a key of :data:`BACKBONES`.
        pretrained: ``False`` (random init); ``True``: the library's ImageNet weights, looked up in
            ``reidkit.models.weights.weights_dir()`` and downloaded there if absent (offline: an error naming
            the file and the folder to put it in); or a path to a state dict in the backbone's key layout.
            Missing keys and shape mismatches are errors; the report is on ``.load_report``.
        last_stride: 1 (re-ID default, output stride 16) or 2 (ImageNet, 32).
        attention: an attention name for ``reidkit.models.attention.build_attention`` (ResNet family, OSNet).
        attention_layout: attention modules per stage (ResNet: after the last n blocks of each of the 4 stages).
        **kw: family options, e.g. ``attention_kwargs``, ``seed_prefix_resnet`` (ResNet), ``stem_stride``,
            ``drop_path_schedule`` (EfficientNet).

    Raises:
        ValueError: unknown name (the message lists the valid ones) or an invalid option.
    """
    if name not in BACKBONES:
        raise ValueError(f"unknown backbone {name!r}; valid names: {', '.join(sorted(BACKBONES))}")
    return BACKBONES[name](
        pretrained=pretrained,
        last_stride=last_stride,
        attention=attention,
        attention_layout=attention_layout,
        **kw,
    )


__all__ = ["BACKBONES", "Backbone", "OSNET_NAMES", "build_backbone"]
