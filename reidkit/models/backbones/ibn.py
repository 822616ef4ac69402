"""IBN-a: instance and batch normalisation in one layer (Pan, Luo, Shi, Tang, "Two at Once: Enhancing Learning
and Generalization Capacities via IBN-Net", ECCV 2018, arXiv 1807.09441).

For a feature map x with C channels and h = ⌊ratio·C⌋ (ratio 0.5):

    IBN(x) = concat( IN(x[:, :h]), BN(x[:, h:]) )

IN is ``InstanceNorm2d(h, affine=True)`` (per-sample statistics: removes appearance such as colour and
contrast), BN is ``BatchNorm2d(C - h)`` (keeps content discrimination). IBN-a replaces ``bn1`` of every block
in layers 1-3 of a ResNet; layer 4 and the stem keep BatchNorm. The sub-modules are named ``IN`` and ``BN``
as in ``XingangPan/IBN-Net`` (``ibnnet/modules.py``), so the released ``resnet50_ibn_a-d9d0bb7b.pth`` /
``resnet101_ibn_a-59ea0ac6.pth`` load by name (``layer1.0.bn1.IN.weight``, ``layer1.0.bn1.BN.running_mean``).
"""
from __future__ import annotations

import torch
from torch import Tensor, nn


class IBN(nn.Module):
    """InstanceNorm (affine) on the first ⌊ratio·C⌋ channels ∥ BatchNorm on the remaining ones."""

    def __init__(self, channels: int, ratio: float = 0.5) -> None:
        super().__init__()
        self.half = int(channels * ratio)
        if not 0 < self.half < channels:
            raise ValueError(f"IBN needs 0 < ⌊{ratio}·{channels}⌋ < {channels}, got {self.half}")
        self.IN = nn.InstanceNorm2d(self.half, affine=True)
        self.BN = nn.BatchNorm2d(channels - self.half)

    @property
    def num_features(self) -> int:
        return self.half + self.BN.num_features

    def forward(self, x: Tensor) -> Tensor:
        a, b = torch.split(x, [self.half, x.shape[1] - self.half], dim=1)
        return torch.cat((self.IN(a.contiguous()), self.BN(b.contiguous())), dim=1)


def apply_ibn_a(layers: list[nn.Sequential], ratio: float = 0.5) -> None:
    """Replace ``bn1`` of every block in ``layers`` (a ResNet's layer1..layer3) by :class:`IBN`, in place."""
    for layer in layers:
        for block in layer:
            bn1 = getattr(block, "bn1", None)
            if not isinstance(bn1, nn.BatchNorm2d):
                raise TypeError(f"IBN-a expects a block with a BatchNorm2d bn1, got {type(block).__name__}")
            block.bn1 = IBN(bn1.num_features, ratio)
