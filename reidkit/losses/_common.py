"""Shared helpers for :mod:`reidkit.losses`: float32 compute, input checks, masks and distances.

Every loss runs in float32 (float64 when an input already is, e.g. for ``gradcheck``) with autocast disabled
(components reference §0): fp16/bf16 inputs are cast up first, so masked log-sum-exps and large scales (γ = 128)
cannot overflow.

Host synchronisations (``sync_free``): every loss takes a ``sync_free`` option, ``None`` (default) meaning "on every
device but the CPU". The sync-free path reads nothing back to the host, so the trainer never waits for the GPU
inside a step: the label range checks (a read of the labels' min/max) are skipped, and anchors are selected with
masks instead of boolean indexing (whose output shape depends on the data). On the CPU the checks stay and the
original code runs unchanged, so CPU results are bit-identical to what they were; the sync-free path gives the
same values up to float summation order (1e-6) and the same gradients. What the sync-free path defines instead of
raising is documented by each loss; out-of-range labels there fail in the indexing kernel (on CUDA a device-side
assert, reported at a later synchronisation, that ends the process's CUDA context): pass ``sync_free=False`` to
get the clear error back while debugging, at the cost of one host read per step.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from reidkit.models._numerics import autocast_disabled, compute_dtype

__all__ = [
    "autocast_disabled",
    "check_features",
    "check_labels_in_range",
    "check_logits",
    "check_sync_free",
    "compute_dtype",
    "cosine_similarity_matrix",
    "euclidean_distance_matrix",
    "masked_logsumexp",
    "pair_masks",
    "resolve_sync_free",
    "sync_free_anchor_masks",
    "valid_anchor_mean",
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


def check_sync_free(value: object) -> bool | None:
    """Validate a loss's ``sync_free`` option: ``True``, ``False`` or ``None`` (sync-free on every device but the CPU)."""
    if value is not None and not isinstance(value, bool):
        raise TypeError(f"sync_free must be True, False or None (None: sync-free on every device but the CPU), "
                        f"got {value!r}")
    return value


def resolve_sync_free(setting: bool | None, tensor: Tensor) -> bool:
    """Whether a loss takes its sync-free path for ``tensor``: ``setting`` when given, else ``device.type != "cpu"``."""
    return tensor.device.type != "cpu" if setting is None else setting


def check_labels_in_range(labels: Tensor, num_classes: int, what: str) -> None:
    """A clear ``ValueError`` for labels outside [0, num_classes): one host read of the labels' min and max."""
    lo, hi = torch.stack(torch.aminmax(labels)).tolist()  # one host sync
    if lo < 0 or hi >= num_classes:
        raise ValueError(f"{what}: labels must lie in [0, {num_classes}) for {num_classes} classes, "
                         f"got range [{lo}, {hi}]")


def _check_batch(batch: Tensor, name: str, shape_text: str, labels: Tensor, what: str) -> None:
    """A non-empty 2-D ``batch`` (``name``, described as ``shape_text``) with one integer label per row."""
    if not isinstance(batch, Tensor) or batch.dim() != 2:
        shape = tuple(batch.shape) if isinstance(batch, Tensor) else type(batch).__name__
        raise ValueError(f"{what}: {name} must be a {shape_text} tensor, got {shape}")
    if batch.shape[0] == 0:
        raise ValueError(f"{what}: empty batch")
    _check_labels(labels, batch.shape[0], what)


def check_logits(logits: Tensor, labels: Tensor, what: str, sync_free: bool = False) -> tuple[Tensor, Tensor]:
    """Validate (B, K) logits and (B,) integer labels in [0, K); return them, logits in the compute dtype.

    ``sync_free``: skip the label range check (the only check that reads data back); shapes and dtypes are checked
    either way."""
    _check_batch(logits, "logits", "(B, K)", labels, what)
    if not sync_free:
        check_labels_in_range(labels, logits.shape[1], what)
    return logits.to(compute_dtype(logits)), labels.long()


def check_features(features: Tensor, labels: Tensor, what: str) -> tuple[Tensor, Tensor]:
    """Validate (B, D) features and (B,) integer labels; return features in the compute dtype."""
    _check_batch(features, "features", "(B, D)", labels, what)
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


def sync_free_anchor_masks(pos: Tensor, neg: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """``(valid, pos', neg')`` for a loss's sync-free path: ``valid`` (B,) marks the anchors with at least one
    positive and one negative; ``pos'``/``neg'`` are the masks with the rows of the other anchors filled with
    ``True``, so that every per-anchor reduction (max, softmax, log-sum-exp) stays finite on them: a softmax over no
    entry is NaN, and a NaN row left out of the mean by :func:`valid_anchor_mean` would still make the gradient NaN."""
    valid = pos.any(dim=1) & neg.any(dim=1)
    fill = ~valid[:, None]
    return valid, pos | fill, neg | fill


def valid_anchor_mean(per_anchor: Tensor, valid: Tensor) -> Tensor:
    """Σ_{i valid} L_i / max(#valid, 1), without a host read: the mean over the valid anchors, and 0 with a zero
    gradient when there is none."""
    kept = torch.where(valid, per_anchor, torch.zeros_like(per_anchor))
    return kept.sum() / valid.sum().clamp_min(1).to(per_anchor.dtype)
