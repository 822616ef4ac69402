"""Triplet losses on features: batch-hard triplet (margin or soft margin) and weighted-regularisation triplet.

Two paths give the same values (up to float summation order) and gradients: on the CPU the anchors with a positive
and a negative are selected by boolean indexing and a batch without any raises a ``ValueError``; the sync-free path
(``sync_free``, by default on every device but the CPU) keeps every row, masks the others out of the mean
(:func:`~reidkit.losses._common.valid_anchor_mean`) and gives 0 with a zero gradient for a batch without a valid
anchor, reading nothing back to the host.
"""
from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from reidkit.losses._common import (
    autocast_disabled,
    check_features,
    check_sync_free,
    euclidean_distance_matrix,
    pair_masks,
    resolve_sync_free,
    sync_free_anchor_masks,
    valid_anchor_mean,
)

__all__ = ["BatchHard", "TripletLoss", "WeightedRegularizedTripletLoss", "batch_hard"]


def _valid_anchors(pos: Tensor, neg: Tensor, what: str) -> Tensor:
    """Anchors with at least one positive and one negative; an error naming the cause when there is none."""
    valid = pos.any(dim=1) & neg.any(dim=1)
    if not bool(valid.any()):
        if not bool(neg.any()):
            cause = "the batch holds a single identity (no negatives)"
        else:
            cause = "no identity appears twice in the batch (no positives; sample K >= 2 images per identity)"
        raise ValueError(f"{what}: no anchor has both a positive and a negative: {cause}")
    return valid


class BatchHard(NamedTuple):
    """Batch-hard mining of each anchor row: the distances d_ap, d_an and the columns they come from."""

    positive_distance: Tensor  # (A,) d_ap(i) = max_{j ∈ P_i} d_ij
    negative_distance: Tensor  # (A,) d_an(i) = min_{j ∈ N_i} d_ij
    positive_index: Tensor  # (A,) int64: the column of the hardest positive (the first one on ties)
    negative_index: Tensor  # (A,) int64: the column of the hardest negative (the first one on ties)


def batch_hard(dist: Tensor, pos: Tensor, neg: Tensor) -> BatchHard:
    """Batch-hard mining (Hermans et al., arXiv 1703.07737) of (A, B) distance rows with positive and negative masks:
    the hardest positive argmax_{j ∈ P_i} d_ij and hardest negative argmin_{j ∈ N_i} d_ij of every row.

    The distances are ``amax`` / ``amin`` of the ±∞-masked rows (on ties the gradient is shared, as ``amax``
    does); the indices are for pictures (:func:`reidkit.viz.loss_fields.mined_pairs`). A row without a positive
    (negative) gets −∞ (+∞) and an arbitrary index: select rows with both first.
    """
    inf = torch.tensor(float("inf"), dtype=dist.dtype, device=dist.device)
    to_pos = torch.where(pos, dist, -inf)
    to_neg = torch.where(neg, dist, inf)
    return BatchHard(to_pos.amax(dim=1), to_neg.amin(dim=1), to_pos.argmax(dim=1), to_neg.argmin(dim=1))


def _margin_or_soft(gap: Tensor, margin: float) -> Tensor:
    """[gap + m]₊ for m > 0, softplus(gap) (soft margin, computed stably) for m = 0; per anchor."""
    return F.relu(gap + margin) if margin > 0 else F.softplus(gap)


class _TripletBase(nn.Module):
    """What both triplet losses share: the margin (0 = soft), the distance options, the sync-free switch and the
    anchors' distance rows with their positive and negative masks."""

    input_kind = "features"

    def __init__(self, margin: float, norm_feature: bool, include_self_positive: bool,
                 sync_free: bool | None) -> None:
        super().__init__()
        if float(margin) < 0:
            raise ValueError(f"margin must be >= 0 (0 = soft margin), got {margin!r}")
        self.margin = float(margin)
        self.norm_feature = bool(norm_feature)
        self.include_self_positive = bool(include_self_positive)
        self.sync_free = check_sync_free(sync_free)

    def extra_repr(self) -> str:
        return (f"margin={self.margin}, norm_feature={self.norm_feature}, "
                f"include_self_positive={self.include_self_positive}")

    def distances(self, features: Tensor, labels: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """``(dist, pos, neg)``: the (B, B) distances this loss uses (in its compute dtype: float32, or float64 for
        float64 features) and its positive / negative masks, over every anchor."""
        x, y = check_features(features, labels, type(self).__name__)
        dist = euclidean_distance_matrix(x, self.norm_feature)
        pos, neg = pair_masks(y, self.include_self_positive)
        return dist, pos, neg

    def _anchor_rows(self, features: Tensor, labels: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """``(dist, pos, neg)`` restricted to the anchors with at least one positive and one negative."""
        dist, pos, neg = self.distances(features, labels)
        valid = _valid_anchors(pos, neg, type(self).__name__)
        return dist[valid], pos[valid], neg[valid]

    def _all_rows(self, features: Tensor, labels: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """The sync-free path's ``(dist, pos, neg, valid)`` over every anchor, the masks of the anchors that are not
        valid filled (:func:`~reidkit.losses._common.sync_free_anchor_masks`)."""
        dist, pos, neg = self.distances(features, labels)
        valid, pos, neg = sync_free_anchor_masks(pos, neg)
        return dist, pos, neg, valid

    def forward(self, features: Tensor, labels: Tensor) -> Tensor:
        with autocast_disabled(features.device.type):
            if resolve_sync_free(self.sync_free, features):
                dist, pos, neg, valid = self._all_rows(features, labels)
                return valid_anchor_mean(self._per_anchor(dist, pos, neg), valid)
            dist, pos, neg = self._anchor_rows(features, labels)
            return self._per_anchor(dist, pos, neg).mean()

    def _per_anchor(self, dist: Tensor, pos: Tensor, neg: Tensor) -> Tensor:
        """The loss of each row of ``dist`` (every row has at least one positive and one negative)."""
        raise NotImplementedError


class TripletLoss(_TripletBase):
    """Batch-hard triplet loss (Hermans, Beyer & Leibe, "In Defense of the Triplet Loss for Person
    Re-Identification", arXiv 1703.07737).

    d_ij = √max(‖x_i − x_j‖², 1e-12) on the raw features (or 2 − 2cos(x_i, x_j) with ``norm_feature``);
    d_ap(i) = max_{j≠i, y_j=y_i} d_ij (hardest positive), d_an(i) = min_{y_j≠y_i} d_ij (hardest negative);
    margin m > 0: L = mean_i [d_ap(i) − d_an(i) + m]₊;  m = 0: soft margin L = mean_i softplus(d_ap − d_an).

    Anchors without another positive or without a negative are excluded from the mean; if none is left the loss
    raises a ``ValueError`` (the batch cannot train a triplet loss), except on the sync-free path, where it is 0
    with a zero gradient (see the module docstring). ``include_self_positive=True`` reproduces the seed, which
    counted the anchor itself (d ≈ 1e-6) as a positive (only matters when K = 1).

    Args:
        margin: m ≥ 0; default 0.3; 0 selects the soft margin.
        norm_feature: distances on L2-normalised features (2 − 2cos).
        include_self_positive: the seed's behaviour (see above).
        sync_free: select the anchors with masks, reading nothing back to the host; ``None`` (default): on every
            device but the CPU.
    """

    def __init__(self, margin: float = 0.3, norm_feature: bool = False, include_self_positive: bool = False,
                 sync_free: bool | None = None) -> None:
        super().__init__(margin, norm_feature, include_self_positive, sync_free)

    def _per_anchor(self, dist: Tensor, pos: Tensor, neg: Tensor) -> Tensor:
        hard = batch_hard(dist, pos, neg)
        return _margin_or_soft(hard.positive_distance - hard.negative_distance, self.margin)


def _masked_softmax(values: Tensor, mask: Tensor) -> Tensor:
    """Softmax of ``values`` over the entries of ``mask`` per row (max-subtracted; 0 outside the mask).
    Every row must have at least one entry in the mask."""
    neg_inf = torch.tensor(float("-inf"), dtype=values.dtype, device=values.device)
    return torch.softmax(torch.where(mask, values, neg_inf), dim=1)


class WeightedRegularizedTripletLoss(_TripletBase):
    """Weighted-regularisation triplet loss of AGW (Ye et al., "Deep Learning for Person Re-identification: A
    Survey and Outlook", TPAMI 2021, arXiv 2001.04193).

    With d_ij as in :class:`TripletLoss`: w_ij = softmax_{j ∈ P_i}(d_ij), v_ij = softmax_{j ∈ N_i}(−d_ij),
    d̄_ap(i) = Σ_{j∈P_i} w_ij d_ij, d̄_an(i) = Σ_{j∈N_i} v_ij d_ij;
    L = mean_i softplus(d̄_ap − d̄_an) (soft margin, default) or mean_i [d̄_ap − d̄_an + m]₊ with ``margin > 0``.
    P_i excludes the anchor itself (``include_self_positive=True``: AGW's code, which keeps it). The weights
    are not detached (as in AGW) and the softmaxes are max-subtracted with −∞ masking. Anchors without a
    positive or a negative are excluded; none left → ``ValueError``, or 0 with a zero gradient on the sync-free
    path (see the module docstring).

    Args:
        margin: 0 (default, soft margin) or m > 0.
        norm_feature: distances on L2-normalised features (2 − 2cos).
        include_self_positive: count the anchor among its positives (AGW's code).
        sync_free: select the anchors with masks, reading nothing back to the host; ``None`` (default): on every
            device but the CPU.
    """

    def __init__(self, margin: float = 0.0, norm_feature: bool = False, include_self_positive: bool = False,
                 sync_free: bool | None = None) -> None:
        super().__init__(margin, norm_feature, include_self_positive, sync_free)

    def _per_anchor(self, dist: Tensor, pos: Tensor, neg: Tensor) -> Tensor:
        w = _masked_softmax(dist, pos)
        v = _masked_softmax(-dist, neg)
        d_ap = (w * dist).sum(dim=1)
        d_an = (v * dist).sum(dim=1)
        return _margin_or_soft(d_ap - d_an, self.margin)
