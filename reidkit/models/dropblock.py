"""Top-DropBlock: drop the most activated horizontal stripes of a feature map during training.

Quispe, Pedrini, "Top-DB-Net: Top DropBlock for Activation Enhancement in Person Re-Identification", ICPR 2020
(arXiv 2010.05435); used in the global branch of LightMBN (Herzog et al., ICIP 2021, arXiv 2101.10774).

For a map b ∈ ℝ^{B×C×H×W} and each image separately:

* activation ``a(h, w) = Σ_c b(c, h, w)²``, L2-normalised over the H·W positions: ``â = a / max(‖a‖₂, 1e-12)``;
* row score ``s(h) = max_w â(h, w)``;
* the ``k = round(ratio · H)`` rows with the highest scores are set to zero (every channel, every column):
  ``b_drop(c, h, w) = b(c, h, w) · m(h)``, ``m(h) = 0`` for the top-k rows, 1 elsewhere.

With ``ratio = 0.33``: 8 of 24 rows at 384×128 input, 5 of 16 at 256×128, 3 of 8 at 128×64, 1 of 4 at 64×32.
``round`` is Python's (the reference's). The mask is built without gradient (a selection, not a function of
the weights); the gradient reaches ``b`` through the rows that are kept. In eval mode the block is the identity.

Unlike the reference (a Python loop over the batch), the mask is built in one ``topk`` + ``scatter`` for the
whole batch. Ties between equal scores are broken by ``topk`` (not specified by the method). Scores are
computed in float32 with autocast off (``Σ_c b²`` over 512 channels can exceed fp16's range).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ._numerics import autocast_disabled, compute_dtype

__all__ = ["TopDropBlock", "dropped_rows"]


def dropped_rows(height: int, ratio: float) -> int:
    """Number of rows Top-DropBlock zeroes in a map of ``height`` rows: ``round(ratio · height)`` (Python's
    ``round``), at least 0 and at most ``height``."""
    if isinstance(height, bool) or not isinstance(height, int) or height < 1:
        raise ValueError(f"height must be a positive int, got {height!r}")
    return min(height, max(0, round(ratio * height)))


class TopDropBlock(nn.Module):
    """Zero the ``round(ratio · H)`` most activated rows of each image's map in training; identity in eval.

    Args:
        ratio: fraction of the rows to drop, in [0, 1] (LightMBN / Top-DB-Net: 0.33).

    :meth:`row_scores` gives s(h) as (B, H), :meth:`mask` the (B, 1, H, 1) keep-mask (1 = kept, 0 = dropped)
    in any mode, for visualisation; ``forward`` applies the mask only when ``self.training``.
    """

    def __init__(self, ratio: float = 0.33) -> None:
        super().__init__()
        if isinstance(ratio, bool) or not isinstance(ratio, (int, float)) or not 0.0 <= ratio <= 1.0:
            raise ValueError(f"TopDropBlock: ratio must be a number in [0, 1], got {ratio!r}")
        self.ratio = float(ratio)

    def extra_repr(self) -> str:
        return f"ratio={self.ratio:g}"

    @staticmethod
    def _check(x: Tensor) -> None:
        if x.dim() != 4:
            raise ValueError(f"TopDropBlock expects a (B, C, H, W) feature map, got shape {tuple(x.shape)}")

    def row_scores(self, x: Tensor) -> Tensor:
        """``s(h) = max_w â(h, w)`` with ``â`` the per-image L2-normalised ``Σ_c x²``; (B, H), float32, no grad."""
        self._check(x)
        with torch.no_grad(), autocast_disabled(x.device.type):
            x = x.detach().to(compute_dtype(x))
            act = x.pow(2).sum(dim=1)  # (B, H, W)
            act = F.normalize(act.flatten(1), p=2.0, dim=1).view_as(act)
            return act.amax(dim=2)

    def mask(self, x: Tensor) -> Tensor:
        """Keep-mask of shape (B, 1, H, 1) in ``x``'s dtype: 0 on the top-scoring ``round(ratio·H)`` rows."""
        scores = self.row_scores(x)
        k = dropped_rows(x.shape[2], self.ratio)
        keep = torch.ones_like(scores)
        if k:
            keep.scatter_(1, scores.topk(k, dim=1).indices, 0.0)
        return keep[:, None, :, None].to(x.dtype)

    def forward(self, x: Tensor) -> Tensor:
        if not self.training:
            return x
        return x * self.mask(x)
