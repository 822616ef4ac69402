"""BNNeck: the BatchNorm neck between the pooled feature and the classifier.

Luo, Gu, Liao, Lai, Jiang, "Bag of Tricks and A Strong Baseline for Deep Person Re-identification", CVPRW 2019
(arXiv 1903.07071); "A Strong Baseline and Batch Normalization Neck for Deep Person Re-identification", TMM 2019
(arXiv 1906.08332).
"""
from __future__ import annotations

from typing import Literal

import torch
import torch.nn as nn

__all__ = ["BNNeck"]


class BNNeck(nn.Module):
    """``f_t = E(f)`` (optional embedding), ``f_i = BN(f_t)``; returns ``(f_t, f_i)``.

    * ``f`` is the pooled feature, (B, C) — (B, C, 1, 1) is accepted and flattened.
    * ``E`` is the optional reduction C → D without bias (``embedding_dim=D``): a ``Linear`` (default) or a 1×1
      ``Conv2d`` (``embedding="conv"``, the LightMBN ``BNNeck3`` layout); PyTorch's default init. Without
      ``embedding_dim``, ``f_t = f``.
    * ``BN`` is ``BatchNorm1d(D)`` with weight initialised to 1 and **bias fixed at 0** (``requires_grad=False``,
      so optimisers never update it; BoT's trick that keeps the classifier hyperplanes through the origin).
      It normalises with batch statistics in training and with running statistics in eval, as any BN.

    ``f_t`` ("before") is what BoT/AGW feed to the metric loss, ``f_i`` ("after") what the classifier sees and
    the default retrieval feature; choosing between them is the model's job (``feature_pos`` / ``eval_feature``).

    Seed-reproduction options: ``norm="2d"`` uses ``BatchNorm2d`` on (B, D, 1, 1) (same numbers, the seed's
    layout) and ``bn_weight_init="normal"`` draws the BN weight from N(1, 0.02). ``freeze_bias=False`` makes the
    bias an ordinary trainable parameter.

    If something re-enables the gradient of a frozen bias (e.g. a blanket ``model.requires_grad_(True)``), the
    next training forward raises ``RuntimeError`` instead of silently training it.
    """

    def __init__(self, in_channels: int, embedding_dim: int | None = None,
                 embedding: Literal["linear", "conv"] = "linear", norm: Literal["1d", "2d"] = "1d",
                 bn_weight_init: Literal["ones", "normal"] = "ones", freeze_bias: bool = True) -> None:
        super().__init__()
        for label, value in (("in_channels", in_channels), ("embedding_dim", embedding_dim)):
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
                raise ValueError(f"BNNeck: {label} must be a positive int, got {value!r}")
        if embedding not in ("linear", "conv"):
            raise ValueError(f"BNNeck: embedding must be 'linear' or 'conv', got {embedding!r}")
        if norm not in ("1d", "2d"):
            raise ValueError(f"BNNeck: norm must be '1d' or '2d', got {norm!r}")
        if bn_weight_init not in ("ones", "normal"):
            raise ValueError(f"BNNeck: bn_weight_init must be 'ones' or 'normal', got {bn_weight_init!r}")
        self.in_channels = in_channels
        self.out_channels = embedding_dim or in_channels
        self.norm = norm
        self.freeze_bias = bool(freeze_bias)
        self.embedding: nn.Module | None = None
        if embedding_dim is not None:
            if embedding == "linear":
                self.embedding = nn.Linear(in_channels, embedding_dim, bias=False)
            else:
                self.embedding = nn.Conv2d(in_channels, embedding_dim, kernel_size=1, bias=False)
        self.bn: nn.BatchNorm1d | nn.BatchNorm2d = (
            nn.BatchNorm1d(self.out_channels) if norm == "1d" else nn.BatchNorm2d(self.out_channels))
        if bn_weight_init == "normal":
            nn.init.normal_(self.bn.weight, mean=1.0, std=0.02)
        else:
            nn.init.ones_(self.bn.weight)
        nn.init.zeros_(self.bn.bias)
        if self.freeze_bias:
            self.bn.bias.requires_grad_(False)

    def extra_repr(self) -> str:
        return (f"in_channels={self.in_channels}, out_channels={self.out_channels}, norm={self.norm!r}, "
                f"freeze_bias={self.freeze_bias}")

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(f_t, f_i)``: the feature before the BN (after the embedding, if any) and after it, both (B, D)."""
        if x.dim() == 4 and x.shape[2:] == (1, 1):
            x = x.flatten(1)
        if x.dim() != 2 or x.shape[1] != self.in_channels:
            raise ValueError(f"BNNeck expects (B, {self.in_channels}) pooled features, got {tuple(x.shape)}")
        if self.freeze_bias and self.training and self.bn.bias.requires_grad:
            raise RuntimeError("BNNeck: the BN bias must stay frozen at 0 but its requires_grad was set to True "
                               "(e.g. by model.requires_grad_(True)); re-freeze it with "
                               "neck.bn.bias.requires_grad_(False), or build BNNeck(freeze_bias=False)")
        if isinstance(self.embedding, nn.Conv2d):
            before = self.embedding(x[:, :, None, None]).flatten(1)
        elif self.embedding is not None:
            before = self.embedding(x)
        else:
            before = x
        if self.norm == "2d":
            after = self.bn(before[:, :, None, None]).flatten(1)
        else:
            after = self.bn(before)
        return before, after
