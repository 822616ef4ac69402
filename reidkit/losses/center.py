"""Center loss (Wen et al., "A Discriminative Feature Learning Approach for Deep Face Recognition", ECCV 2016)."""
from __future__ import annotations

import torch
from torch import Tensor, nn

from reidkit.losses._common import (
    autocast_disabled,
    check_features,
    check_sync_free,
    compute_dtype,
    resolve_sync_free,
)

__all__ = ["CenterLoss"]


class CenterLoss(nn.Module):
    """Center loss: L = (1/B) Σ_i ‖x_i − c_{y_i}‖², with learnable centres c ∈ ℝ^{K×D} initialised N(0, 1).

    The paper has a factor ½; BoT/AGW (and reidkit) omit it. ``squared=False`` reproduces the seed's
    L = (1/B) Σ_i ‖x_i − c_{y_i}‖ (√ clamped at 1e-12 so that the gradient stays finite at x_i = c_{y_i}).

    The loss weight (0.0005 in BoT) is applied by :class:`~reidkit.losses.CombinedLoss`, not here. The trainer
    puts :attr:`centers` in their own SGD group (lr 0.5) and divides their gradient by the loss weight before
    the step, as BoT does.

    The label range check reads the labels' min and max back to the host; the sync-free path (``sync_free``, by
    default on every device but the CPU) skips it, and out-of-range labels then fail when the centres are indexed
    (on CUDA a device-side assert) instead of raising the ``ValueError``.

    Args:
        num_classes: number of identities K.
        feat_dim: feature dimension D.
        squared: squared Euclidean distance (default) or the distance itself (seed).
        sync_free: skip the label range check (a host read); ``None`` (default): on every device but the CPU.
    """

    input_kind = "features"

    def __init__(self, num_classes: int, feat_dim: int, squared: bool = True, sync_free: bool | None = None) -> None:
        super().__init__()
        if int(num_classes) < 1 or int(feat_dim) < 1:
            raise ValueError(f"num_classes and feat_dim must be >= 1, got {num_classes!r}, {feat_dim!r}")
        self.num_classes = int(num_classes)
        self.feat_dim = int(feat_dim)
        self.squared = bool(squared)
        self.sync_free = check_sync_free(sync_free)
        self.centers = nn.Parameter(torch.randn(self.num_classes, self.feat_dim))

    def extra_repr(self) -> str:
        return f"num_classes={self.num_classes}, feat_dim={self.feat_dim}, squared={self.squared}"

    def forward(self, features: Tensor, labels: Tensor) -> Tensor:
        with autocast_disabled(features.device.type):
            x, y = check_features(features, labels, type(self).__name__)
            if x.shape[1] != self.feat_dim:
                raise ValueError(f"CenterLoss: features have dimension {x.shape[1]}, centres {self.feat_dim}")
            if not resolve_sync_free(self.sync_free, x):
                lo, hi = int(y.min()), int(y.max())
                if lo < 0 or hi >= self.num_classes:
                    raise ValueError(
                        f"CenterLoss: labels must lie in [0, {self.num_classes}), got range [{lo}, {hi}]"
                    )
            dtype = compute_dtype(x, self.centers)
            diff = x.to(dtype) - self.centers.to(dtype)[y.long()]
            d2 = (diff * diff).sum(dim=1)
            dist = d2 if self.squared else d2.clamp_min(1e-12).sqrt()
            return dist.mean()
