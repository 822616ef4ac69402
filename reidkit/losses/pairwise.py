"""Pair-based losses on cosine similarities: pairwise circle, pairwise CosFace and multi-similarity.

As for the triplet losses, the sync-free path (``sync_free``, by default on every device but the CPU) masks the
anchors instead of indexing them and reads nothing back to the host; it gives the CPU path's values up to float
summation order, and 0 with a zero gradient where the CPU path raises for a batch without a valid anchor.
"""
from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from reidkit.losses._common import (
    autocast_disabled,
    check_features,
    check_sync_free,
    cosine_similarity_matrix,
    masked_logsumexp,
    pair_masks,
    resolve_sync_free,
    sync_free_anchor_masks,
    valid_anchor_mean,
)
from reidkit.losses.triplet import _valid_anchors

__all__ = [
    "MS_LIGHTMBN",
    "MS_OFFICIAL",
    "MultiSimilarityLoss",
    "PairwiseCircleLoss",
    "PairwiseCosFaceLoss",
    "circle_loss_from_similarity",
    "cosface_loss_from_similarity",
    "multi_similarity_pairs",
]


def circle_loss_from_similarity(
    sim: Tensor, pos: Tensor, neg: Tensor, margin: float, gamma: float, detach_alpha: bool = True
) -> Tensor:
    """Per-anchor pairwise circle loss from a (B, B) similarity matrix and masks (rows must be valid anchors).

    L_i = softplus( LSE_{p∈P_i}(−γ α_p (s_p − Δ_p)) + LSE_{n∈N_i}(γ α_n (s_n − Δ_n)) ),
    α_p = [1 + m − s_p]₊, α_n = [s_n + m]₊ (detached by default), Δ_p = 1 − m, Δ_n = m.
    With detached α the gradient is ∂L_i/∂s_p = −γ α_p σ(Z_i) softmax_p, ∂L_i/∂s_n = γ α_n σ(Z_i) softmax_n, where
    Z_i is the softplus argument and the softmaxes are over the two logit sets.
    """
    alpha_p = F.relu(1.0 + margin - sim)
    alpha_n = F.relu(sim + margin)
    if detach_alpha:
        alpha_p, alpha_n = alpha_p.detach(), alpha_n.detach()
    logit_p = -gamma * alpha_p * (sim - (1.0 - margin))
    logit_n = gamma * alpha_n * (sim - margin)
    return F.softplus(masked_logsumexp(logit_p, pos) + masked_logsumexp(logit_n, neg))


def cosface_loss_from_similarity(sim: Tensor, pos: Tensor, neg: Tensor, margin: float, gamma: float) -> Tensor:
    """Per-anchor pairwise CosFace loss: L_i = softplus( LSE_{p∈P_i}(−γ s_p) + LSE_{n∈N_i}(γ (s_n + m)) )."""
    return F.softplus(masked_logsumexp(-gamma * sim, pos) + masked_logsumexp(gamma * (sim + margin), neg))


def _anchor_similarities(features: Tensor, labels: Tensor, what: str) -> tuple[Tensor, Tensor, Tensor]:
    """Cosine similarities with positive (j ≠ i) and negative masks, restricted to the anchors that have both."""
    x, y = check_features(features, labels, what)
    sim = cosine_similarity_matrix(x)
    pos, neg = pair_masks(y)
    valid = _valid_anchors(pos, neg, what)
    return sim[valid], pos[valid], neg[valid]


def _pairwise_loss(features: Tensor, labels: Tensor, what: str, sync_free: bool,
                   per_anchor: Callable[[Tensor, Tensor, Tensor], Tensor]) -> Tensor:
    """Mean of ``per_anchor(sim, pos, neg)`` over the anchors with a positive and a negative: selected by indexing
    (none → ``ValueError``), or with ``sync_free`` masked over every row (none → 0 with a zero gradient)."""
    if not sync_free:
        return per_anchor(*_anchor_similarities(features, labels, what)).mean()
    x, y = check_features(features, labels, what)
    valid, pos, neg = sync_free_anchor_masks(*pair_masks(y))
    return valid_anchor_mean(per_anchor(cosine_similarity_matrix(x), pos, neg), valid)


class PairwiseCircleLoss(nn.Module):
    """Pairwise circle loss (Sun et al., "Circle Loss: A Unified Perspective of Pair Similarity Optimization",
    CVPR 2020, arXiv 2002.10857), in its pair-wise (metric) form.

    s = cosine similarity of the L2-normalised features; for anchor i, positives j ≠ i with y_j = y_i and
    negatives y_j ≠ y_i: α_p = [1 + m − s_p]₊, α_n = [s_n + m]₊ (detached), Δ_p = 1 − m, Δ_n = m;
    L_i = softplus( LSE_p(−γ α_p (s_p − Δ_p)) + LSE_n(γ α_n (s_n − Δ_n)) ); L = mean over the anchors with at
    least one positive and one negative (none → ``ValueError``; 0 with a zero gradient on the sync-free path).

    The masked log-sum-exps use −∞ masking (FastReID's −99999999 becomes −∞ in fp16 and NaN follows) and the loss
    runs in float32, so fp16/bf16 features give finite values.

    Args:
        margin: relaxation m; default 0.25 (FastReID; the seed used 0.3).
        gamma: scale γ; default 128.
        detach_alpha: detach the self-paced weights α (the paper's and FastReID's gradient); default True.
        sync_free: select the anchors with masks, reading nothing back to the host; ``None`` (default): on every
            device but the CPU.
    """

    input_kind = "features"

    def __init__(self, margin: float = 0.25, gamma: float = 128.0, detach_alpha: bool = True,
                 sync_free: bool | None = None) -> None:
        super().__init__()
        if float(gamma) <= 0:
            raise ValueError(f"gamma must be > 0, got {gamma!r}")
        self.margin = float(margin)
        self.gamma = float(gamma)
        self.detach_alpha = bool(detach_alpha)
        self.sync_free = check_sync_free(sync_free)

    def extra_repr(self) -> str:
        return f"margin={self.margin}, gamma={self.gamma}, detach_alpha={self.detach_alpha}"

    def forward(self, features: Tensor, labels: Tensor) -> Tensor:
        with autocast_disabled(features.device.type):
            return _pairwise_loss(features, labels, type(self).__name__, resolve_sync_free(self.sync_free, features),
                                  self._per_anchor)

    def _per_anchor(self, sim: Tensor, pos: Tensor, neg: Tensor) -> Tensor:
        return circle_loss_from_similarity(sim, pos, neg, self.margin, self.gamma, self.detach_alpha)


class PairwiseCosFaceLoss(nn.Module):
    """Pairwise CosFace loss (Wang et al., "CosFace: Large Margin Cosine Loss", CVPR 2018, arXiv 1801.09414, in the
    pair-wise form of FastReID's ``pairwise_cosface``).

    L_i = softplus( LSE_{p}(−γ s_p) + LSE_{n}(γ (s_n + m)) ) on cosine similarities, positives j ≠ i; mean over the
    anchors with at least one positive and one negative (none → ``ValueError``; 0 with a zero gradient on the
    sync-free path). −∞-masked, float32.

    Args:
        margin: m; default 0.25 (FastReID; the seed used 0.3).
        gamma: scale γ; default 128.
        sync_free: select the anchors with masks, reading nothing back to the host; ``None`` (default): on every
            device but the CPU.
    """

    input_kind = "features"

    def __init__(self, margin: float = 0.25, gamma: float = 128.0, sync_free: bool | None = None) -> None:
        super().__init__()
        if float(gamma) <= 0:
            raise ValueError(f"gamma must be > 0, got {gamma!r}")
        self.margin = float(margin)
        self.gamma = float(gamma)
        self.sync_free = check_sync_free(sync_free)

    def extra_repr(self) -> str:
        return f"margin={self.margin}, gamma={self.gamma}"

    def forward(self, features: Tensor, labels: Tensor) -> Tensor:
        with autocast_disabled(features.device.type):
            return _pairwise_loss(features, labels, type(self).__name__, resolve_sync_free(self.sync_free, features),
                                  self._per_anchor)

    def _per_anchor(self, sim: Tensor, pos: Tensor, neg: Tensor) -> Tensor:
        return cosface_loss_from_similarity(sim, pos, neg, self.margin, self.gamma)


#: Multi-similarity parameters of the official code (MalongTech/research-ms-loss).
MS_OFFICIAL: dict[str, float] = {"alpha": 2.0, "beta": 40.0, "thresh": 0.5, "margin": 0.1}
#: Multi-similarity parameters of LightMBN (jixunbo/LightMBN).
MS_LIGHTMBN: dict[str, float] = {"alpha": 2.0, "beta": 40.0, "thresh": 0.5, "margin": 0.7}


def multi_similarity_pairs(features: Tensor, labels: Tensor, margin: float, mining: bool = True,
                           what: str = "MultiSimilarityLoss") -> tuple[Tensor, Tensor, Tensor]:
    """``(sim, pos, neg)``: the cosine similarities (B, B) of multi-similarity and the pairs it keeps, as masks.

    Wang et al., arXiv 1904.06627. In the compute dtype of the features (float32, or float64 for float64 input);
    ``sim`` keeps the features' autograd graph, the masks come from its detached values.
    P_i = {j ≠ i : y_j = y_i, s_ij < 1 − 1e-5}, N_i = {j : y_j ≠ y_i}; with ``mining`` (ε = ``margin``) keep
    n ∈ N_i with s_in + ε > min_{p∈P_i} s_ip and p ∈ P_i with s_ip − ε < max_{n∈N_i} s_in (over the unmined sets).
    Anchors whose kept P or N is empty contribute nothing to the loss; their other masks are left as they are.
    """
    x, y = check_features(features, labels, what)
    sim = cosine_similarity_matrix(x)
    pos, neg = pair_masks(y)
    s = sim.detach()
    pos = pos & (s < 1.0 - 1e-5)
    if mining:
        inf = torch.tensor(float("inf"), dtype=s.dtype, device=s.device)
        min_pos = torch.where(pos, s, inf).amin(dim=1, keepdim=True)
        max_neg = torch.where(neg, s, -inf).amax(dim=1, keepdim=True)
        # an empty unmined set gives ±inf, so nothing is kept on the other side: the anchor contributes 0
        neg = neg & (s + margin > min_pos)
        pos = pos & (s - margin < max_neg)
    return sim, pos, neg


class MultiSimilarityLoss(nn.Module):
    """Multi-similarity loss with the paper's pair mining (Wang et al., "Multi-Similarity Loss with General Pair
    Weighting for Deep Metric Learning", CVPR 2019, arXiv 1904.06627).

    s = cosine similarity. For anchor i: P_i = {j ≠ i : y_j = y_i, s_ij < 1 − 1e-5} (the diagonal is excluded
    explicitly; the threshold, kept for parity, also drops exact duplicates), N_i = {j : y_j ≠ y_i}.
    Mining (ε = ``margin``): keep n ∈ N_i with s_in + ε > min_{p∈P_i} s_ip and p ∈ P_i with
    s_ip − ε < max_{n∈N_i} s_in (min/max over the unmined sets; :func:`multi_similarity_pairs`). An anchor whose
    (mined) P or N is empty contributes 0.
    L_i = (1/α) log(1 + Σ_p e^{−α(s_p − λ)}) + (1/β) log(1 + Σ_n e^{β(s_n − λ)});  L = (1/B) Σ_i L_i (divided by
    B, not by the number of contributing anchors). A batch where no anchor contributes gives 0 (with a zero
    gradient), never NaN, on both paths (the sync-free one masks the anchors instead of indexing them).

    Defaults are the paper's (α = 2, β = 50, λ = 1, ε = 0.1); :data:`MS_OFFICIAL` and :data:`MS_LIGHTMBN` hold the
    official code's and LightMBN's values (pass them as keyword arguments). ``mining=False, thresh=0.7`` with
    β = 40 reproduces the seed (no mining, λ = 0.7).

    Args:
        alpha: positive scale α; default 2.
        beta: negative scale β; default 50.
        thresh: similarity offset λ; default 1.
        margin: mining margin ε; default 0.1.
        mining: apply the paper's pair mining; default True.
        sync_free: select the anchors with masks, reading nothing back to the host; ``None`` (default): on every
            device but the CPU.
    """

    input_kind = "features"

    def __init__(
        self,
        alpha: float = 2.0,
        beta: float = 50.0,
        thresh: float = 1.0,
        margin: float = 0.1,
        mining: bool = True,
        sync_free: bool | None = None,
    ) -> None:
        super().__init__()
        if float(alpha) <= 0 or float(beta) <= 0:
            raise ValueError(f"alpha and beta must be > 0, got {alpha!r}, {beta!r}")
        self.alpha = float(alpha)
        self.beta = float(beta)
        self.thresh = float(thresh)
        self.margin = float(margin)
        self.mining = bool(mining)
        self.sync_free = check_sync_free(sync_free)

    def extra_repr(self) -> str:
        return (f"alpha={self.alpha}, beta={self.beta}, thresh={self.thresh}, margin={self.margin}, "
                f"mining={self.mining}")

    def forward(self, features: Tensor, labels: Tensor) -> Tensor:
        with autocast_disabled(features.device.type):
            sim, pos, neg = multi_similarity_pairs(features, labels, self.margin, self.mining, type(self).__name__)
            batch = sim.shape[0]
            if resolve_sync_free(self.sync_free, features):
                valid, pos, neg = sync_free_anchor_masks(pos, neg)
                per_anchor = self._per_anchor(sim, pos, neg)
                return torch.where(valid, per_anchor, torch.zeros_like(per_anchor)).sum() / batch
            valid = pos.any(dim=1) & neg.any(dim=1)
            if not bool(valid.any()):
                return sim.sum() * 0.0
            return self._per_anchor(sim[valid], pos[valid], neg[valid]).sum() / batch

    def _per_anchor(self, sim: Tensor, pos: Tensor, neg: Tensor) -> Tensor:
        """L_i of each row (every row has at least one mined positive and one mined negative)."""
        pos_term = F.softplus(masked_logsumexp(-self.alpha * (sim - self.thresh), pos)) / self.alpha
        neg_term = F.softplus(masked_logsumexp(self.beta * (sim - self.thresh), neg)) / self.beta
        return pos_term + neg_term
