"""Classification (ID) losses on logits: label-smoothing cross entropy and focal loss.

Both take ``(logits (B, K), labels (B,))`` and return a scalar; they run in float32 with autocast disabled.
Their only host read is the label range check, skipped on the sync-free path (``sync_free``, by default on every
device but the CPU; see :mod:`reidkit.losses._common`): there out-of-range labels fail in ``gather`` (on CUDA a
device-side assert) instead of raising the ``ValueError``.
"""
from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from reidkit.losses._common import autocast_disabled, check_logits, check_sync_free, resolve_sync_free

__all__ = ["CrossEntropyLabelSmooth", "FocalLoss"]

SmoothingStyle = Literal["standard", "fastreid"]


class CrossEntropyLabelSmooth(nn.Module):
    """Cross entropy with label smoothing (Szegedy et al., "Rethinking the Inception Architecture", CVPR 2016,
    arXiv 1512.00567).

    ``smoothing_style="standard"`` (default): q = (1 − ε)·onehot(y) + ε/K and
    L = −(1/B) Σ_i Σ_j q_ij log softmax(z_i)_j, identical to ``F.cross_entropy(z, y, label_smoothing=ε)``;
    ε = 0 is plain cross entropy.

    ``smoothing_style="fastreid"`` (parity with FastReID runs): the target is 1 − ε on the true class and
    ε/(K − 1) on the others, and the per-sample losses are summed and divided by the number of non-zero ones.

    Args:
        epsilon: smoothing ε in [0, 1); default 0.1.
        smoothing_style: ``"standard"`` or ``"fastreid"``.
        sync_free: skip the label range check (a host read); ``None`` (default): on every device but the CPU.
    """

    input_kind = "logits"

    def __init__(self, epsilon: float = 0.1, smoothing_style: SmoothingStyle = "standard",
                 sync_free: bool | None = None) -> None:
        super().__init__()
        if not 0.0 <= float(epsilon) < 1.0:
            raise ValueError(f"epsilon must be in [0, 1), got {epsilon!r}")
        if smoothing_style not in ("standard", "fastreid"):
            raise ValueError(f"smoothing_style must be 'standard' or 'fastreid', got {smoothing_style!r}")
        self.epsilon = float(epsilon)
        self.smoothing_style = smoothing_style
        self.sync_free = check_sync_free(sync_free)

    def extra_repr(self) -> str:
        return f"epsilon={self.epsilon}, smoothing_style={self.smoothing_style!r}"

    def forward(self, logits: Tensor, labels: Tensor) -> Tensor:
        with autocast_disabled(logits.device.type):
            z, y = check_logits(logits, labels, type(self).__name__, resolve_sync_free(self.sync_free, logits))
            log_p = F.log_softmax(z, dim=1)
            k = z.shape[1]
            nll = -log_p.gather(1, y[:, None]).squeeze(1)
            if self.smoothing_style == "standard":
                # Σ_j q_ij (−log p_ij) = (1 − ε)·nll_i + (ε/K)·Σ_j (−log p_ij)
                per_sample = (1.0 - self.epsilon) * nll - (self.epsilon / k) * log_p.sum(dim=1)
                return per_sample.mean()
            if k < 2:
                raise ValueError("smoothing_style='fastreid' needs at least 2 classes (ε/(K − 1))")
            off = self.epsilon / (k - 1)
            # Σ_j q_ij (−log p_ij) with q = 1 − ε on y, ε/(K−1) elsewhere
            per_sample = (1.0 - self.epsilon - off) * nll - off * log_p.sum(dim=1)
            # divided by the number of non-zero per-sample losses (at least 1), without a host sync
            non_zero = (per_sample.detach() != 0).sum().clamp_min(1).to(per_sample.dtype)
            return per_sample.sum() / non_zero


class FocalLoss(nn.Module):
    """Focal loss (Lin et al., "Focal Loss for Dense Object Detection", ICCV 2017, arXiv 1708.02002), multi-class.

    p_t = softmax(z)_y;  L = (1/B) Σ_i −α (1 − p_t)^γ log p_t, with log p_t from ``log_softmax`` (never the log
    of a softmax, which underflows to −∞). The loss is reduced to a scalar (the seed returned a vector).

    Args:
        gamma: focusing parameter γ ≥ 0; default 2 (paper; the seed used 1.5). γ = 0, α = 1 is cross entropy.
        alpha: balance factor α > 0; default 0.25.
        sync_free: skip the label range check (a host read); ``None`` (default): on every device but the CPU.
    """

    input_kind = "logits"

    def __init__(self, gamma: float = 2.0, alpha: float = 0.25, sync_free: bool | None = None) -> None:
        super().__init__()
        if float(gamma) < 0:
            raise ValueError(f"gamma must be >= 0, got {gamma!r}")
        if float(alpha) <= 0:
            raise ValueError(f"alpha must be > 0, got {alpha!r}")
        self.gamma = float(gamma)
        self.alpha = float(alpha)
        self.sync_free = check_sync_free(sync_free)

    def extra_repr(self) -> str:
        return f"gamma={self.gamma}, alpha={self.alpha}"

    def forward(self, logits: Tensor, labels: Tensor) -> Tensor:
        with autocast_disabled(logits.device.type):
            z, y = check_logits(logits, labels, type(self).__name__, resolve_sync_free(self.sync_free, logits))
            log_pt = F.log_softmax(z, dim=1).gather(1, y[:, None]).squeeze(1)
            # 1 − p_t computed as −expm1(log p_t): accurate when p_t is close to 1
            one_minus_pt = -torch.expm1(log_pt)
            if self.gamma == 0.0:
                return (-self.alpha * log_pt).mean()
            # γ < 1: (1 − p_t)^γ has an infinite slope at p_t = 1; a tiny floor keeps the gradient finite
            floor = torch.finfo(z.dtype).tiny if self.gamma < 1.0 else 0.0
            modulator = one_minus_pt.clamp_min(floor).pow(self.gamma)
            return (-self.alpha * modulator * log_pt).mean()
