r"""Classifier heads as transforms of logits: Linear, CosSoftmax (CosFace / AM-softmax), ArcFace, CircleSoftmax,
each with an optional sub-centre weight.

A head holds a weight W ∈ ℝ^{(K·k)×D} (K classes, k sub-centres, class-major rows ``j·k + t``) and maps the
neck feature ``f`` (B, D) to logits (B, K) in two steps:

1. similarity ``cos_j = max_{t<k} ⟨f/‖f‖, W_{j,t}/‖W_{j,t}‖⟩`` clamped to [−1, 1] (the Linear head uses the raw
   inner products ``⟨f, W_j⟩``);
2. a transform of those similarities into logits. In training **with** ``targets`` the margin transform of the
   head is applied (:func:`cosface_logits`, :func:`arcface_logits`, :func:`circle_logits`); in eval mode, or
   when ``targets`` is None, the head returns the plain scaled logits ``s · cos`` (no margin), which is what
   accuracy and validation losses should use.

Both steps run in float32 (float64 if the inputs are) with autocast disabled, whatever the caller's autocast
state: ``acos`` and s = 64 logits are not for fp16 (components reference §0; fast-reid #111). Features are
L2-normalised with eps = 1e-12 after dividing rows with max-abs > 1 by it (detached), so zero vectors give
cos = 0 and huge norms cannot overflow (a zero vector has no direction: its gradient is that of ``x / eps``,
finite in float32 but huge). The logits are returned in that compute dtype.

``BNNeck`` lives in :mod:`reidkit.models.neck` and is re-exported here.
"""
from __future__ import annotations

import math
from typing import Literal

import torch
import torch.nn as nn

from ._numerics import autocast_disabled, compute_dtype
from .neck import BNNeck

__all__ = [
    "HEADS",
    "ArcFace",
    "BNNeck",
    "CircleSoftmax",
    "ClassifierHead",
    "CosSoftmax",
    "LinearHead",
    "arcface_logits",
    "build_head",
    "circle_logits",
    "cosface_logits",
]

ACOS_EPS = 1e-7
"""acos input is clamped to [−1 + ACOS_EPS, 1 − ACOS_EPS] (the derivative of acos is infinite at ±1)."""


# --------------------------------------------------------------------------------------------------------------
# logit transforms (pure functions of the similarity matrix)
# --------------------------------------------------------------------------------------------------------------
def _check_targets(targets: torch.Tensor, logits: torch.Tensor, check_range: bool = True) -> torch.Tensor:
    """Targets as a (B, 1) int64 index tensor; a clear error for wrong shape, dtype or range.

    The range check reads the targets' min and max back to Python (a device sync, and a graph break under
    ``torch.compile``), so it runs for CPU tensors in eager mode only: it is skipped while ``torch.compile`` traces
    (``torch.compiler.is_compiling()``, so the compiled forward stays one graph) and on GPUs, where it would stall
    every training step (an out-of-range target then fails in ``scatter``/``gather`` with a device-side error).
    The shape and dtype checks are static and always run.
    """
    if not isinstance(targets, torch.Tensor):
        raise TypeError(f"targets must be a tensor of class indices, got {type(targets).__name__}")
    if targets.dtype.is_floating_point or targets.dtype.is_complex or targets.dtype == torch.bool:
        raise TypeError(f"targets must be integer class indices, got dtype {targets.dtype}")
    if targets.dim() != 1 or targets.shape[0] != logits.shape[0]:
        raise ValueError(f"targets must have shape ({logits.shape[0]},) to match the logits "
                         f"{tuple(logits.shape)}, got {tuple(targets.shape)}")
    num_classes = logits.shape[1]
    if check_range and targets.numel() > 0 and targets.device.type == "cpu" and not torch.compiler.is_compiling():
        lo, hi = (int(v) for v in torch.aminmax(targets))
        if lo < 0 or hi >= num_classes:
            raise ValueError(f"targets must be class indices in [0, {num_classes}), got values in [{lo}, {hi}]"
                             " (label -1 / model-parallel ignore labels are not supported)")
    return targets.to(device=logits.device, dtype=torch.long).unsqueeze(1)


def _check_scale_margin(scale: float, margin: float) -> None:
    if not scale > 0:
        raise ValueError(f"scale must be > 0, got {scale!r}")
    if not margin >= 0:
        raise ValueError(f"margin must be >= 0, got {margin!r}")


def cosface_logits(cos: torch.Tensor, targets: torch.Tensor, scale: float = 64.0, margin: float = 0.35,
                   check_targets: bool = True) -> torch.Tensor:
    """CosFace / AM-softmax logits (Wang et al., "CosFace", CVPR 2018, arXiv 1801.09414; Wang et al.,
    "Additive Margin Softmax", arXiv 1801.05599): ``s·(cos_y − m)`` for the target class, ``s·cos_j`` elsewhere.

    ``cos`` is (B, K) with values in [−1, 1]; ``targets`` (B,) class indices."""
    _check_scale_margin(scale, margin)
    idx = _check_targets(targets, cos, check_targets)
    return scale * cos.scatter(1, idx, cos.gather(1, idx) - margin)


def arcface_logits(cos: torch.Tensor, targets: torch.Tensor, scale: float = 64.0, margin: float = 0.5,
                   easy_margin: bool = False, check_targets: bool = True) -> torch.Tensor:
    r"""ArcFace logits (Deng, Guo, Xue, Zafeiriou, "ArcFace: Additive Angular Margin Loss for Deep Face
    Recognition", CVPR 2019, arXiv 1801.07698): ``s·φ(θ_y)`` for the target class and ``s·cos_j`` elsewhere, with
    ``θ_y = acos(clamp(cos_y, −1 + 1e-7, 1 − 1e-7))`` and the margin ``m`` in **radians**:

    * ``φ = cos(θ_y + m)`` where ``θ_y + m ≤ π``, i.e. ``cos_y ≥ cos(π − m)`` (the threshold is inclusive);
    * ``φ = cos_y − m·sin m`` beyond it (``θ_y + m > π``), where ``cos(θ + m)`` would stop decreasing in θ —
      the standard fallback that keeps the target logit monotonic.
    * ``easy_margin=True``: ``φ = cos(θ_y + m)`` only where ``cos_y > 0``, else ``φ = cos_y`` (no fallback).

    The clamp makes the result and its gradient finite at cos = ±1 (the gradient is 0 for cos_y beyond the clamp).
    """
    _check_scale_margin(scale, margin)
    if margin >= math.pi / 2:
        raise ValueError(f"ArcFace margin is in radians and must be < pi/2, got {margin!r}"
                         " (0.5 rad ≈ 28.6°; a value in degrees needs margin_unit='degree')")
    idx = _check_targets(targets, cos, check_targets)
    cos_y = cos.gather(1, idx)
    theta = torch.acos(cos_y.clamp(-1.0 + ACOS_EPS, 1.0 - ACOS_EPS))
    phi = torch.cos(theta + margin)
    if easy_margin:
        phi = torch.where(cos_y > 0, phi, cos_y)
    else:
        threshold = torch.tensor(math.cos(math.pi - margin), dtype=cos.dtype, device=cos.device)
        phi = torch.where(cos_y >= threshold, phi, cos_y - margin * math.sin(margin))
    return scale * cos.scatter(1, idx, phi)


def circle_logits(cos: torch.Tensor, targets: torch.Tensor, scale: float = 64.0, margin: float = 0.35,
                  check_targets: bool = True) -> torch.Tensor:
    r"""CircleSoftmax logits (Sun et al., "Circle Loss: A Unified Perspective of Pair Similarity Optimization",
    CVPR 2020, arXiv 2002.10857, in its classification form as used by FastReID):

    * target:     ``s·α_p·(cos_y − Δ_p)``, ``α_p = [1 + m − cos_y]₊``, ``Δ_p = 1 − m``;
    * non-target: ``s·α_n·(cos_j − Δ_n)``, ``α_n = [cos_j + m]₊``, ``Δ_n = m``.

    The weights α are detached (treated as constants in the gradient), as in the paper.
    """
    _check_scale_margin(scale, margin)
    if margin >= 1:
        raise ValueError(f"CircleSoftmax margin must be in [0, 1), got {margin!r}")
    idx = _check_targets(targets, cos, check_targets)
    is_target = torch.zeros_like(cos, dtype=torch.bool).scatter(1, idx, True)
    alpha_p = (1.0 + margin - cos.detach()).clamp(min=0.0)
    alpha_n = (cos.detach() + margin).clamp(min=0.0)
    positive = alpha_p * (cos - (1.0 - margin))
    negative = alpha_n * (cos - margin)
    return scale * torch.where(is_target, positive, negative)


# --------------------------------------------------------------------------------------------------------------
# heads
# --------------------------------------------------------------------------------------------------------------
def _l2_normalize(x: torch.Tensor, eps: float = 1e-12) -> torch.Tensor:
    """Rows of x divided by max(‖x‖, eps), like ``F.normalize`` (zero rows → 0), but rows whose max-abs exceeds 1
    are first divided by it (detached; the result is unchanged) so that ‖x‖² cannot overflow."""
    scale = x.detach().abs().amax(dim=1, keepdim=True).clamp(min=1.0)
    x = x / scale
    return x / torch.linalg.vector_norm(x, dim=1, keepdim=True).clamp(min=eps)


class ClassifierHead(nn.Module):
    """Base of the heads: the weight, the similarity step and the train/eval dispatch (see the module docstring).

    ``forward(features, targets=None) -> logits``: (B, D) features (a (B, D, 1, 1) map is flattened) to (B, K)
    logits. Margin logits only when ``self.training`` and ``targets`` is given; otherwise ``scale · similarity``.
    ``check_targets``: a clear error for targets outside [0, K) in eager mode (skipped inside ``torch.compile``,
    where reading them back would break the graph).
    """

    #: the logit multiplier of the plain (eval) logits
    scale: float = 1.0

    def __init__(self, in_features: int, num_classes: int, num_subcenters: int = 1, init_std: float = 0.01,
                 check_targets: bool = True) -> None:
        super().__init__()
        for label, value in (("in_features", in_features), ("num_classes", num_classes),
                             ("num_subcenters", num_subcenters)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{type(self).__name__}: {label} must be a positive int, got {value!r}")
        if not init_std > 0:
            raise ValueError(f"{type(self).__name__}: init_std must be > 0, got {init_std!r}")
        self.in_features = in_features
        self.num_classes = num_classes
        self.num_subcenters = num_subcenters
        self.check_targets = bool(check_targets)
        self.weight = nn.Parameter(torch.empty(num_classes * num_subcenters, in_features))
        nn.init.normal_(self.weight, mean=0.0, std=init_std)

    def extra_repr(self) -> str:
        text = f"in_features={self.in_features}, num_classes={self.num_classes}"
        if self.num_subcenters > 1:
            text += f", num_subcenters={self.num_subcenters}"
        return text

    def _raw_similarity(self, features: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def transform(self, similarity: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Training logits from the (B, K) similarity and the targets (the head's margin transform)."""
        raise NotImplementedError

    def _flat_features(self, features: torch.Tensor) -> torch.Tensor:
        if features.dim() == 4 and features.shape[2:] == (1, 1):
            features = features.flatten(1)
        if features.dim() != 2 or features.shape[1] != self.in_features:
            raise ValueError(f"{type(self).__name__} expects (B, {self.in_features}) features, "
                             f"got {tuple(features.shape)}")
        return features

    def _similarity(self, features: torch.Tensor) -> torch.Tensor:
        # call inside an autocast-disabled region
        dtype = compute_dtype(features, self.weight)
        sim = self._raw_similarity(features.to(dtype), self.weight.to(dtype))
        if self.num_subcenters > 1:
            sim = sim.reshape(sim.shape[0], self.num_classes, self.num_subcenters).amax(dim=2)
        return sim

    def similarity(self, features: torch.Tensor) -> torch.Tensor:
        """The (B, K) similarity (cosine for the cosine heads, inner product for Linear), float32 or float64."""
        features = self._flat_features(features)
        with autocast_disabled(features.device.type):
            return self._similarity(features)

    def forward(self, features: torch.Tensor, targets: torch.Tensor | None = None) -> torch.Tensor:
        features = self._flat_features(features)
        with autocast_disabled(features.device.type):
            sim = self._similarity(features)
            if self.training and targets is not None:
                return self.transform(sim, targets)
            return sim * self.scale if self.scale != 1.0 else sim


class LinearHead(ClassifierHead):
    """The plain classifier: logits ``⟨f, W_j⟩`` (bias-free ``Linear(D, K)``, no normalisation, no scale, no
    margin), weight init N(0, 0.001) as in BoT (rsb ``modeling/baseline.py``). With sub-centres, the max inner
    product over a class's k weights."""

    def __init__(self, in_features: int, num_classes: int, num_subcenters: int = 1, init_std: float = 0.001,
                 check_targets: bool = True) -> None:
        super().__init__(in_features, num_classes, num_subcenters, init_std, check_targets)

    def _raw_similarity(self, features: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        return features @ weight.t()

    def transform(self, similarity: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        _check_targets(targets, similarity, self.check_targets)
        return similarity


class _CosineHead(ClassifierHead):
    default_scale = 64.0
    default_margin = 0.35

    def __init__(self, in_features: int, num_classes: int, scale: float | None = None, margin: float | None = None,
                 num_subcenters: int = 1, init_std: float = 0.01, check_targets: bool = True) -> None:
        super().__init__(in_features, num_classes, num_subcenters, init_std, check_targets)
        self.scale = float(self.default_scale if scale is None else scale)
        self.margin = float(self.default_margin if margin is None else margin)
        _check_scale_margin(self.scale, self.margin)

    def extra_repr(self) -> str:
        return super().extra_repr() + f", scale={self.scale:g}, margin={self.margin:g}"

    def _raw_similarity(self, features: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        return (_l2_normalize(features) @ _l2_normalize(weight).t()).clamp(-1.0, 1.0)


class CosSoftmax(_CosineHead):
    """CosFace / AM-softmax head (Wang et al., CVPR 2018, arXiv 1801.09414; arXiv 1801.05599): training logits
    ``s·(cos_y − m)`` on the target, ``s·cos_j`` elsewhere (:func:`cosface_logits`). Defaults s = 64, m = 0.35;
    weight init N(0, 0.01)."""

    def transform(self, similarity: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return cosface_logits(similarity, targets, self.scale, self.margin, self.check_targets)


class ArcFace(_CosineHead):
    """ArcFace head (Deng et al., CVPR 2019, arXiv 1801.07698): training logits ``s·cos(θ_y + m)`` on the target
    with the fallback ``s·(cos_y − m·sin m)`` where ``θ_y + m > π`` (or, with ``easy_margin``, plain ``s·cos_y``
    where ``cos_y ≤ 0``); ``s·cos_j`` elsewhere (:func:`arcface_logits`). Defaults s = 64, **m = 0.5 rad**.

    ``margin_unit="degree"`` accepts the seed toolbox's configs (margin in degrees, converted to radians here; the
    acos clamp stays). A radian margin ≥ π/2 is rejected as a likely degree value.

    Sub-centre ArcFace (Deng et al., ECCV 2020): ``num_subcenters=k`` (3 in the paper) takes the max cosine over
    each class's k centres before the margin.
    """

    default_margin = 0.5

    def __init__(self, in_features: int, num_classes: int, scale: float | None = None, margin: float | None = None,
                 num_subcenters: int = 1, init_std: float = 0.01, check_targets: bool = True,
                 easy_margin: bool = False, margin_unit: Literal["radian", "degree"] = "radian") -> None:
        if margin_unit not in ("radian", "degree"):
            raise ValueError(f"ArcFace: margin_unit must be 'radian' or 'degree', got {margin_unit!r}")
        if margin is not None and margin_unit == "degree":
            margin = math.radians(margin)
        super().__init__(in_features, num_classes, scale, margin, num_subcenters, init_std, check_targets)
        if self.margin >= math.pi / 2:
            raise ValueError(f"ArcFace margin is in radians and must be < pi/2, got {self.margin!r}"
                             " (0.5 rad ≈ 28.6°; for a value in degrees pass margin_unit='degree')")
        self.easy_margin = bool(easy_margin)

    def extra_repr(self) -> str:
        return super().extra_repr() + (", easy_margin=True" if self.easy_margin else "")

    def transform(self, similarity: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return arcface_logits(similarity, targets, self.scale, self.margin, self.easy_margin, self.check_targets)


class CircleSoftmax(_CosineHead):
    """CircleSoftmax head (Sun et al., "Circle Loss", CVPR 2020, arXiv 2002.10857): training logits
    ``s·α_p·(cos_y − (1 − m))`` on the target and ``s·α_n·(cos_j − m)`` elsewhere, ``α_p = [1 + m − cos_y]₊``,
    ``α_n = [cos_j + m]₊`` detached (:func:`circle_logits`). Defaults s = 64, m = 0.35 (FastReID SBS)."""

    def __init__(self, in_features: int, num_classes: int, scale: float | None = None, margin: float | None = None,
                 num_subcenters: int = 1, init_std: float = 0.01, check_targets: bool = True) -> None:
        super().__init__(in_features, num_classes, scale, margin, num_subcenters, init_std, check_targets)
        if self.margin >= 1:
            raise ValueError(f"CircleSoftmax margin must be in [0, 1), got {self.margin!r}")

    def transform(self, similarity: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return circle_logits(similarity, targets, self.scale, self.margin, self.check_targets)


HEADS: dict[str, type[ClassifierHead]] = {
    "arcface": ArcFace,
    "circle": CircleSoftmax,
    "cos": CosSoftmax,
    "linear": LinearHead,
}

_ALIASES = {"cosface": "cos", "am_softmax": "cos", "circle_softmax": "circle"}


def build_head(name: str, in_features: int, num_classes: int, scale: float | None = None,
               margin: float | None = None, **kwargs: object) -> ClassifierHead:
    """Classifier head by name: ``"linear"``, ``"cos"``, ``"circle"`` or ``"arcface"`` (aliases ``cosface``,
    ``am_softmax``, ``circle_softmax``). ``scale``/``margin`` default to the head's own (s = 64; m = 0.35, ArcFace
    0.5 rad); the Linear head has neither and rejects them. Other kwargs: ``num_subcenters``, ``init_std``,
    ``check_targets``, and for ArcFace ``easy_margin``, ``margin_unit``."""
    key = name.lower() if isinstance(name, str) else name
    key = _ALIASES.get(key, key)
    if key not in HEADS:
        raise ValueError(f"unknown head {name!r}; valid names: {', '.join(sorted(HEADS))}"
                         f" (aliases: {', '.join(sorted(_ALIASES))})")
    if key == "linear":
        if (scale is not None and scale != 1.0) or (margin is not None and margin != 0.0):
            raise ValueError(f"the linear head has no scale or margin (got scale={scale!r}, margin={margin!r}); "
                             "use 'cos', 'arcface' or 'circle' for a scaled margin head")
        return LinearHead(in_features, num_classes, **kwargs)  # type: ignore[arg-type]
    return HEADS[key](in_features, num_classes, scale=scale, margin=margin, **kwargs)  # type: ignore[call-arg]
