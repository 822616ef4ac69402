"""Global pooling of a feature map into one vector per image: average, max and GeM.

Every pooling module maps a feature map ``(B, C, H, W)`` to a **flat** ``(B, C)`` vector (no trailing
``1 × 1``), which is what :class:`reidkit.models.neck.BNNeck` and the heads take. The result has the input's
dtype.

Build one by name with :func:`build_pooling`::

    pool = build_pooling("gem", p=3.0, learnable=True)
    f = pool(feature_map)          # (B, C)
"""
from __future__ import annotations

import torch
import torch.nn as nn

from ._numerics import autocast_disabled, compute_dtype

__all__ = ["POOLING", "GeM", "GlobalAvgPool", "GlobalMaxPool", "build_pooling"]


def _check_map(x: torch.Tensor, who: str) -> None:
    if x.dim() != 4:
        raise ValueError(f"{who} expects a (B, C, H, W) feature map, got shape {tuple(x.shape)}")


class GlobalAvgPool(nn.Module):
    """Global average pooling: ``f_c = (1/N) Σ_{h,w} x_{c,h,w}``, N = H·W → ``(B, C)``.

    The re-ID default since BoT (Luo et al., CVPRW 2019); same values as ``F.adaptive_avg_pool2d(x, 1)``.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _check_map(x, "GlobalAvgPool")
        return x.mean(dim=(2, 3))


class GlobalMaxPool(nn.Module):
    """Global max pooling: ``f_c = max_{h,w} x_{c,h,w}`` → ``(B, C)``; same values as
    ``F.adaptive_max_pool2d(x, 1)``."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _check_map(x, "GlobalMaxPool")
        return x.amax(dim=(2, 3))


class GeM(nn.Module):
    r"""Generalised-mean pooling (Radenović, Tolias, Chum, "Fine-tuning CNN Image Retrieval with No Human
    Annotation", TPAMI 2018, arXiv 1711.02512).

    ``f_c = ( (1/N) Σ_{h,w} clamp(x_{c,h,w}, ε)^p )^{1/p}``, N = H·W. ``p = 1`` is average pooling and
    ``p → ∞`` tends to max pooling. Returns ``(B, C)`` in the input's dtype.

    Args:
        p: initial / fixed exponent (default 3). Must be ≥ 1.
        eps: lower clamp of the activations (default 1e-6); it also keeps ``x^p`` and its gradient finite.
        learnable: make ``p`` a learnable scalar shared by all channels (FastReID's ``GeM-P``). The parameter is
            listed by :meth:`no_weight_decay` so an optimiser builder can keep it out of weight decay.
        seed_gem_exponent: reproduce the seed toolbox's outer exponent ``1/(p + ε)`` instead of ``1/p``
            (numerically negligible; for reproducing its configs only).

    Precision: the whole computation runs in float32 (float64 for float64 inputs) with autocast disabled,
    because ``x^p`` overflows fp16 (300³ = 2.7e7 > 65504). It is also scaled by the per-channel maximum ``m``
    (``f = m · (mean (x/m)^p)^{1/p}``, exact since GeM is positively homogeneous), so large ``p`` or large
    activations cannot overflow float32 either. The result is cast back to the input dtype, which is safe
    because ``ε ≤ f ≤ max x``.

    The effective exponent is ``max(p, 1)`` (GeM with p < 1 is below the mean and not a pooling we want). For a
    learnable ``p`` the clamp is straight-through: the forward uses ``max(p, 1)`` but the gradient still reaches
    ``p``, so it cannot get stuck below 1.
    """

    def __init__(self, p: float = 3.0, eps: float = 1e-6, learnable: bool = False,
                 seed_gem_exponent: bool = False) -> None:
        super().__init__()
        if not p >= 1.0:
            raise ValueError(f"GeM exponent p must be >= 1 (p = 1 is average pooling), got {p!r}")
        if not eps > 0.0:
            raise ValueError(f"GeM eps must be > 0, got {eps!r}")
        self.eps = float(eps)
        self.learnable = bool(learnable)
        self.seed_gem_exponent = bool(seed_gem_exponent)
        if self.learnable:
            self.p: nn.Parameter | float = nn.Parameter(torch.full((1,), float(p)))
        else:
            self.p = float(p)

    def no_weight_decay(self) -> set[str]:
        """Names of parameters to exclude from weight decay (timm's convention): ``{"p"}`` when learnable."""
        return {"p"} if self.learnable else set()

    def extra_repr(self) -> str:
        p = float(self.p.detach()) if isinstance(self.p, torch.Tensor) else self.p
        return f"p={p:.4g}, eps={self.eps:g}, learnable={self.learnable}" + (
            ", seed_gem_exponent=True" if self.seed_gem_exponent else "")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _check_map(x, "GeM")
        out_dtype = x.dtype
        dtype = compute_dtype(x)
        with autocast_disabled(x.device.type):
            x = x.to(dtype).clamp(min=self.eps)
            p: torch.Tensor | float = self.p
            if isinstance(p, torch.Tensor):
                p = p.to(dtype)
                p = p + (p.clamp(min=1.0) - p).detach()  # straight-through clamp p >= 1
            if self.seed_gem_exponent:
                f = x.pow(p).mean(dim=(2, 3)).pow(1.0 / (p + self.eps))
            else:
                m = x.detach().amax(dim=(2, 3), keepdim=True)  # >= eps > 0
                f = (x / m).pow(p).mean(dim=(2, 3)).pow(1.0 / p) * m.flatten(1)
        return f.to(out_dtype)


POOLING: dict[str, type[nn.Module]] = {"avg": GlobalAvgPool, "max": GlobalMaxPool, "gem": GeM}


def build_pooling(name: str, **kwargs: object) -> nn.Module:
    """Pooling module by name: ``"avg"``, ``"max"`` or ``"gem"`` (kwargs go to :class:`GeM`: ``p``, ``eps``,
    ``learnable``, ``seed_gem_exponent``). Every one maps ``(B, C, H, W)`` → ``(B, C)``."""
    key = name.lower() if isinstance(name, str) else name
    if key not in POOLING:
        raise ValueError(f"unknown pooling {name!r}; valid names: {', '.join(sorted(POOLING))}")
    if key != "gem" and kwargs:
        raise ValueError(f"pooling {key!r} takes no options, got {sorted(kwargs)}")
    return POOLING[key](**kwargs)
