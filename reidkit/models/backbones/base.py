"""What every reidkit backbone shares: the stage interface, the last-stride surgery and pretrained loading.

A backbone is an ``nn.Module`` whose ``forward`` maps an image batch (B, 3, H, W) to its final feature map
(B, C, H/s, W/s), s the output stride, with

* ``out_channels``: C, read from the built layers (never a hard-coded table, ``components.md`` §0);
* ``stage_names``: the stages in order (e.g. ``("stem", "layer1", ..., "layer4")``);
* ``featuremaps(x)``: every stage's output by name, for CAMs and shape walks;
* ``load_report``: the :class:`~reidkit.models.weights.LoadReport` of the pretrained load, or ``None``;
* ``new_module_prefixes``: state-dict prefixes of modules added on top of a pretrained architecture
  (attention), which a checkpoint of that architecture is allowed to lack.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

from torch import Tensor, nn

from reidkit.models.weights import LoadReport, load_pretrained, resolve_weights

Pretrained = bool | str | os.PathLike


class Backbone(nn.Module):
    """Base class: ``forward`` runs :meth:`forward_stage` over ``stage_names``; subclasses define both."""

    stage_names: tuple[str, ...] = ()
    out_channels: int
    new_module_prefixes: tuple[str, ...] = ()
    load_report: LoadReport | None = None

    def forward_stage(self, name: str, x: Tensor) -> Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def forward(self, x: Tensor) -> Tensor:
        for name in self.stage_names:
            x = self.forward_stage(name, x)
        return x

    def featuremaps(self, x: Tensor) -> dict[str, Tensor]:
        """The output of every stage, in order, keyed by stage name (the last one is ``forward(x)``)."""
        maps: dict[str, Tensor] = {}
        for name in self.stage_names:
            x = self.forward_stage(name, x)
            maps[name] = x
        return maps


def check_last_stride(last_stride: int) -> None:
    if last_stride not in (1, 2):
        raise ValueError(f"last_stride must be 1 (output stride 16) or 2 (output stride 32), got {last_stride!r}")


def max_stride(module: nn.Module) -> int:
    """The largest convolution stride inside ``module`` (1 if it has no strided convolution)."""
    strides = [max(m.stride) for m in module.modules() if isinstance(m, nn.Conv2d)]
    return max(strides, default=1)


def remove_stride(block: nn.Module) -> None:
    """Make ``block`` stride 1 in place: every stride-2 convolution becomes stride 1 (3×3 / depthwise conv and
    1×1 shortcut alike; their padding keeps the size) and every strided average pool (ResNet-D shortcut
    ``AvgPool2d(2, 2)``, ResNeSt ``avd`` pool) becomes ``nn.Identity`` -- exactly what the libraries build
    for a stride-1 block. Parameter names and shapes are unchanged, so pretrained weights still load.

    Raises:
        ValueError: ``block`` has no stride-2 layer (the caller picked the wrong block).
    """
    changed = 0
    for module in list(block.modules()):
        if isinstance(module, nn.Conv2d) and max(module.stride) == 2:
            module.stride = (1, 1)
            changed += 1
        for child_name, child in list(module.named_children()):
            if isinstance(child, nn.AvgPool2d) and _pool_stride(child) == 2:
                setattr(module, child_name, nn.Identity())
                changed += 1
    if changed == 0:
        raise ValueError(f"no stride-2 layer in {type(block).__name__}: cannot set its stride to 1")


def _pool_stride(pool: nn.AvgPool2d) -> int:
    stride = pool.stride
    return max(stride) if isinstance(stride, tuple) else int(stride)


@dataclass(frozen=True)
class WeightFile:
    """A library's pretrained file: the name it is stored under in ``weights_dir()`` and where to get it."""

    filename: str
    url: str | None = None


def load_backbone_weights(model: Backbone, pretrained: Pretrained, default: WeightFile | None, name: str) -> None:
    """Fill ``model`` from ``pretrained`` and store the report on ``model.load_report``.

    ``False``: nothing. ``True``: the library's file ``default`` via
    :func:`~reidkit.models.weights.resolve_weights` (local first, else downloaded; offline, a
    ``FileNotFoundError`` naming the file and the folder). A path: that file. Either way the load goes
    through :func:`~reidkit.models.weights.load_pretrained`, which raises on missing keys and shape
    mismatches and reports ``model.new_module_prefixes`` as new.
    """
    if pretrained is False:
        return
    if pretrained is True:
        if default is None:
            raise ValueError(
                f"no standard ImageNet weights for {name!r} in this layout; pass pretrained=<path to a "
                "state dict> with this model's key names, or pretrained=False"
            )
        source: str | os.PathLike = resolve_weights(default.filename, default.url)
    elif isinstance(pretrained, (str, os.PathLike)):
        source = pretrained
    else:
        raise TypeError(f"pretrained must be a bool or a path, got {type(pretrained).__name__}")
    model.load_report = load_pretrained(model, source, new_modules=model.new_module_prefixes)
