"""How big and how costly a model is: parameter counts, FLOPs and the feature-map shapes of a backbone.

Conventions (used by every function here and by the notebooks that print them):

* **Parameters** are the elements of ``module.parameters()`` (each shared tensor once); buffers such as BN
  running statistics are not parameters. ``trainable_only=True`` keeps those with ``requires_grad`` (a frozen
  BNNeck bias is then left out).
* **FLOPs** are those of :class:`torch.utils.flop_counter.FlopCounterMode`, which counts **2 FLOPs per
  multiply-accumulate** (MAC): a k×k convolution with C_in/g inputs per group and C_out outputs on an
  H_out×W_out map costs ``2 · C_out · (C_in/g) · k² · H_out · W_out``; a (n×k)·(k×m) matrix product costs
  ``2·n·k·m``. Divide by 2 for MACs, the unit in which most papers and torchvision quote "FLOPs" (ResNet-50's
  "4.1 GFLOPs" at 224×224 are 4.1 G multiply-adds, He et al., CVPR 2016).
* Counted operations: convolutions (``aten.convolution``), matrix products (``mm``, ``addmm`` — the multiply part
  of ``nn.Linear`` — ``bmm``, ``baddbmm``) and fused scaled-dot-product attention. **Not counted**: bias
  additions, normalisation layers (BatchNorm, InstanceNorm, LayerNorm), activations (ReLU, SiLU, hard-swish,
  sigmoid, softmax), pooling (max, average, GeM), element-wise adds and products (residual sums, SE / CBAM
  gating), interpolation. Next to full convolutions (hundreds of multiply-adds per output value) these
  element-wise operations are a few percent of the work; next to depthwise 3×3 convolutions (9 per value:
  EfficientNet, MobileNetV3, OSNet's lite 3×3) a larger share; and in gating modules (SE, CBAM) they are most of
  the work, so the count understates those.
* Cost depends on the input: re-ID's 256×128 has 0.65× the pixels of ImageNet's 224×224, and a backbone with
  ``last_stride=1`` runs its last stage at 4× the resolution of ``last_stride=2``.

Every count is taken with the model in eval mode under :func:`torch.inference_mode` on a zero input (the count
depends only on shapes), and the model's training flag is restored afterwards.
"""
from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

__all__ = [
    "ComplexityRow",
    "complexity_rows",
    "complexity_table",
    "count_flops",
    "count_parameters",
    "feature_map_shapes",
]

DEFAULT_INPUT: tuple[int, int, int, int] = (1, 3, 256, 128)

ModelSpec = str | tuple[str, nn.Module]


def _check_module(module: object, who: str) -> nn.Module:
    if not isinstance(module, nn.Module):
        raise TypeError(f"{who} expects a torch.nn.Module, got {type(module).__name__}")
    return module


def _check_shape(input_shape: Sequence[int], who: str) -> tuple[int, ...]:
    shape = tuple(input_shape)
    if not shape or any(isinstance(d, bool) or not isinstance(d, int) or d < 1 for d in shape):
        raise ValueError(f"{who}: input_shape must be positive ints such as (1, 3, 256, 128), got {input_shape!r}")
    return shape


def _device_of(module: nn.Module) -> torch.device:
    for tensor in module.parameters():
        return tensor.device
    for tensor in module.buffers():
        return tensor.device
    return torch.device("cpu")


@contextmanager
def _evaluating(module: nn.Module) -> Iterator[nn.Module]:
    """``module.eval()`` inside the block, the previous training flags of every submodule restored after it."""
    flags = [(m, m.training) for m in module.modules()]
    module.eval()
    try:
        with torch.inference_mode():
            yield module
    finally:
        for m, flag in flags:
            m.training = flag


def count_parameters(module: nn.Module, trainable_only: bool = False) -> int:
    """Number of parameter elements of ``module`` (shared tensors once, buffers excluded).

    Args:
        module: any ``nn.Module``.
        trainable_only: count only parameters with ``requires_grad=True``.

    A 3×3 convolution 3→8 with bias has ``3·8·9 + 8 = 224`` parameters; ResNet-50 without its classifier
    23,508,032.
    """
    _check_module(module, "count_parameters")
    return sum(p.numel() for p in module.parameters() if p.requires_grad or not trainable_only)


def count_flops(model: nn.Module, input_shape: Sequence[int] = DEFAULT_INPUT) -> int:
    """FLOPs of one forward pass of ``model`` on a zero tensor of ``input_shape``, **2 per multiply-accumulate**.

    Counted with :class:`torch.utils.flop_counter.FlopCounterMode` in eval mode under
    :func:`torch.inference_mode`: convolutions and matrix products only (see the module docstring for what is
    not counted). MACs = FLOPs / 2. The count scales with the batch size in ``input_shape``.

    Example: a 3×3 convolution 3→8 with padding 1 on an 8×8 image: ``2 · 8 · 3 · 9 · 64 = 27,648`` FLOPs
    (the bias additions are not counted).

    Raises:
        TypeError: ``model`` is not a module.
        ValueError: ``input_shape`` is not a tuple of positive ints.
    """
    _check_module(model, "count_flops")
    flops, _ = _count(model, _check_shape(input_shape, "count_flops"))
    return flops


def _count(model: nn.Module, shape: tuple[int, ...]) -> tuple[int, Any]:
    """(FLOPs, output) of one eval-mode forward pass on zeros of ``shape``."""
    x = torch.zeros(shape, device=_device_of(model))
    counter = FlopCounterMode(display=False)
    with _evaluating(model), counter:
        out = model(x)
    return int(counter.get_total_flops()), out


def feature_map_shapes(backbone: nn.Module, input_shape: Sequence[int] = DEFAULT_INPUT) -> dict[str, tuple[int, ...]]:
    """The shape of every stage's output, in stage order, from ``backbone.featuremaps`` (a reidkit backbone).

    Shapes include the batch dimension of ``input_shape``: ``{"stem": (1, 64, 64, 32), ..., "layer4":
    (1, 2048, 16, 8)}`` for ResNet-50 with ``last_stride=1`` at 256×128.

    Raises:
        TypeError: ``backbone`` has no ``featuremaps`` method.
    """
    _check_module(backbone, "feature_map_shapes")
    featuremaps = getattr(backbone, "featuremaps", None)
    if not callable(featuremaps):
        raise TypeError(
            f"feature_map_shapes needs a reidkit backbone with featuremaps(x) -> dict of stage maps; "
            f"{type(backbone).__name__} has none (build one with reidkit.models.backbones.build_backbone)"
        )
    shape = _check_shape(input_shape, "feature_map_shapes")
    with _evaluating(backbone):
        maps = featuremaps(torch.zeros(shape, device=_device_of(backbone)))
    return {name: tuple(fmap.shape) for name, fmap in maps.items()}


@dataclass(frozen=True)
class ComplexityRow:
    """One model's size and cost: exact parameter and FLOP counts (2 FLOPs per MAC) for ``input_shape``, and the
    shape of its output."""

    name: str
    params: int
    flops: int
    out_shape: tuple[int, ...]
    input_shape: tuple[int, ...] = DEFAULT_INPUT

    @property
    def params_m(self) -> float:
        """Parameters in millions."""
        return self.params / 1e6

    @property
    def gflops(self) -> float:
        """GFLOPs (10⁹ FLOPs, 2 per multiply-accumulate); GMACs are half of it."""
        return self.flops / 1e9

    def format(self, name_width: int = 24) -> str:
        """``name  params-M  GFLOPs  C×H×W`` with 2 decimals, the line :func:`complexity_table` prints."""
        shape = "×".join(str(d) for d in self.out_shape[1:])
        return f"{self.name:<{name_width}} {self.params_m:>9.2f} {self.gflops:>8.2f}  {shape}"


def _resolve(spec: ModelSpec, build_kwargs: dict[str, Any]) -> tuple[str, nn.Module]:
    if isinstance(spec, str):
        from reidkit.models.backbones import build_backbone

        return spec, build_backbone(spec, pretrained=False, **build_kwargs)
    if isinstance(spec, tuple) and len(spec) == 2 and isinstance(spec[0], str) and isinstance(spec[1], nn.Module):
        return spec
    raise TypeError(f"each model must be a backbone name or a (label, nn.Module) pair, got {spec!r}")


def _check_models(models: object) -> None:
    if isinstance(models, str) or (
        isinstance(models, tuple) and len(models) == 2 and isinstance(models[1], nn.Module)
    ):
        raise TypeError(f"models must be a list of backbone names or (label, module) pairs; wrap a single one "
                        f"in a list, got {models!r}")


def complexity_rows(
    models: Sequence[ModelSpec], input_shape: Sequence[int] = DEFAULT_INPUT, **build_kwargs: Any
) -> list[ComplexityRow]:
    """Count parameters, FLOPs and the output shape of each model.

    Args:
        models: backbone names (built with ``build_backbone(name, pretrained=False, **build_kwargs)``, one at a
            time, and released after counting) or ``(label, module)`` pairs for models built by the caller.
        input_shape: the input, default one 256×128 image.
        **build_kwargs: options for ``build_backbone`` (e.g. ``last_stride=2``).
    """
    _check_models(models)
    shape = _check_shape(input_shape, "complexity_rows")
    rows = []
    for spec in models:
        name, model = _resolve(spec, build_kwargs)
        flops, out = _count(model, shape)
        if not isinstance(out, torch.Tensor):
            raise TypeError(f"{name}: the model must return a tensor to report its output shape, got "
                            f"{type(out).__name__}")
        rows.append(ComplexityRow(name, count_parameters(model), flops, tuple(out.shape), shape))
        del model, out
    return rows


def complexity_table(
    models: Sequence[ModelSpec | ComplexityRow], input_shape: Sequence[int] = DEFAULT_INPUT, **build_kwargs: Any
) -> str:
    """A plain-text table, one row per model: name, parameters in millions and GFLOPs (2 decimals; 2 FLOPs per
    multiply-accumulate, convolutions and matrix products only) and the output map C×H×W.

    The text depends only on the architectures and ``input_shape`` (counts are exact integers, rounded for
    display), so it is stable across machines and runs. Arguments as :func:`complexity_rows`; rows already
    counted by :func:`complexity_rows` (for a plot, say) may be passed instead of models and are printed as they
    are, so nothing is counted twice.

    >>> print(complexity_table(["resnet50"]))          # doctest: +SKIP
    input 1×3×256×128
    model                     params M   GFLOPs  output C×H×W
    resnet50                     23.51     8.11  2048×16×8
    """
    _check_models(models)
    rows = [m if isinstance(m, ComplexityRow) else complexity_rows([m], input_shape, **build_kwargs)[0]
            for m in models]
    shapes = {row.input_shape for row in rows}
    if len(shapes) > 1:
        raise ValueError(f"complexity_table: rows counted for different inputs {sorted(shapes)}; "
                         "print one table per input shape")
    shape = shapes.pop() if shapes else _check_shape(input_shape, "complexity_table")
    width = max([len("model"), *(len(r.name) for r in rows)]) + 1
    header = f"{'model':<{width}} {'params M':>9} {'GFLOPs':>8}  output C×H×W"
    lines = [f"input {'×'.join(str(d) for d in shape)}", header]
    lines += [row.format(width) for row in rows]
    return "\n".join(lines)
