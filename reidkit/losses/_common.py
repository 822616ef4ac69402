"""Shared helpers for :mod:`reidkit.losses`: float32 compute, input checks, masks and distances.

Every loss runs in float32 (float64 when an input already is, e.g. for ``gradcheck``) with autocast disabled
(components reference §0): fp16/bf16 inputs are cast up first, so masked log-sum-exps and large scales (γ = 128)
cannot overflow.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from reidkit.models._numerics import autocast_disabled, compute_dtype

__all__ = [
    "autocast_disabled",
    "check_features",
    "check_logits",
    "compute_dtype",
    "cosine_similarity_matrix",
    "euclidean_distance_matrix",
    "masked_logsumexp",
    "pair_masks",
]

#: Clamp of squared distances before the square root (the gradient of √ at 0 is infinite).
DIST_EPS = 1e-12


def _check_labels(labels: Tensor, batch: int, what: str) -> Tensor:
    if not isinstance(labels, Tensor):
        raise TypeError(f"{what}: labels must be a tensor, got {type(labels).__name__}")
    if labels.dim() != 1 or labels.shape[0] != batch:
        raise ValueError(f"{what}: labels must have shape ({batch},), got {tuple(labels.shape)}")
    if labels.dtype.is_floating_point or labels.dtype == torch.bool:
        raise TypeError(f"{what}: labels must be an integer tensor, got {labels.dtype}")
    return labels


def check_logits(logits: Tensor, labels: Tensor, what: str) -> tuple[Tensor, Tensor]:
    """Validate (B, K) logits and (B,) integer labels in [0, K); return them, logits in the compute dtype."""
    if not isinstance(logits, Tensor) or logits.dim() != 2:
        shape = tuple(logits.shape) if isinstance(logits, Tensor) else type(logits).__name__
        raise ValueError(f"{what}: logits must be a (B, K) tensor, got {shape}")
    if logits.shape[0] == 0:
        raise ValueError(f"{what}: empty batch")
    _check_labels(labels, logits.shape[0], what)
    k = logits.shape[1]
    lo, hi = torch.stack(torch.aminmax(labels)).tolist()  # one host sync
    if lo < 0 or hi >= k:
        raise ValueError(f"{what}: labels must lie in [0, {k}) for {k} classes, got range [{lo}, {hi}]")
    return logits.to(compute_dtype(logits)), labels.long()


def check_features(features: Tensor, labels: Tensor, what: str) -> tuple[Tensor, Tensor]:
    """Validate (B, D) features and (B,) integer labels; return features in the compute dtype."""
    if not isinstance(features, Tensor) or features.dim() != 2:
        shape = tuple(features.shape) if isinstance(features, Tensor) else type(features).__name__
        raise ValueError(f"{what}: features must be a (B, D) tensor, got {shape}")
    if features.shape[0] == 0:
        raise ValueError(f"{what}: empty batch")
    _check_labels(labels, features.shape[0], what)
    return features.to(compute_dtype(features)), labels


def pair_masks(labels: Tensor, include_self_positive: bool = False) -> tuple[Tensor, Tensor]:
    """(B, B) boolean masks: positives (same label, diagonal excluded unless asked) and negatives."""
    same = labels[:, None] == labels[None, :]
    pos = same if include_self_positive else same & ~torch.eye(len(labels), dtype=torch.bool, device=labels.device)
    return pos, ~same


def euclidean_distance_matrix(x: Tensor, norm_feature: bool = False) -> Tensor:
    """Pairwise distances: √max(‖a‖² + ‖b‖² − 2a·b, 1e-12), or 2 − 2cos(a, b) with ``norm_feature``."""
    if norm_feature:
        xn = F.normalize(x, dim=1)
        return 2.0 - 2.0 * (xn @ xn.t())
    sq = (x * x).sum(dim=1)
    d2 = sq[:, None] + sq[None, :] - 2.0 * (x @ x.t())
    return d2.clamp_min(DIST_EPS).sqrt()


def cosine_similarity_matrix(x: Tensor) -> Tensor:
    """(B, B) cosine similarities of the L2-normalised rows of x."""
    xn = F.normalize(x, dim=1)
    return xn @ xn.t()


def masked_logsumexp(values: Tensor, mask: Tensor, dim: int = 1) -> Tensor:
    """log Σ_{mask} exp(values) along ``dim`` with −∞ masking (an empty set gives −∞, never NaN).

    Masked entries are replaced by −∞ (not by a large negative constant, which is −∞ in fp16 anyway and
    shifts the value in float32). The max-subtraction uses 0 for empty rows so that no ∞ − ∞ appears, and the
    gradient w.r.t. masked entries is exactly 0.
    """
    neg_inf = torch.tensor(float("-inf"), dtype=values.dtype, device=values.device)
    masked = torch.where(mask, values, neg_inf)
    vmax = masked.amax(dim=dim, keepdim=True).detach()
    vmax = torch.where(torch.isfinite(vmax), vmax, torch.zeros_like(vmax))
    summed = torch.where(mask, (masked - vmax).exp(), torch.zeros_like(values)).sum(dim=dim, keepdim=True)
    return (summed.log() + vmax).squeeze(dim)
