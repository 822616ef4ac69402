"""Re-identification losses (components reference §6): vectorised, float32, each citing its paper and formula.

``LOSSES`` maps a config name to the loss class (its builder); :func:`build_loss` turns a spec such as
``"0.5*ce + 0.5*ms"`` or ``[{"name": "triplet", "weight": 1, "margin": 0}]`` into a :class:`CombinedLoss`.

Every loss takes ``sync_free`` (default ``None``: on every device but the CPU): a path that reads nothing back to the
host, so that a training step never waits for the GPU (no label range checks, anchors masked instead of indexed;
see :mod:`reidkit.losses._common`). The CPU keeps the checked path, whose results are unchanged.
"""
from __future__ import annotations

from collections.abc import Callable

from torch import nn

from reidkit.losses.center import CenterLoss
from reidkit.losses.classification import CrossEntropyLabelSmooth, FocalLoss
from reidkit.losses.combined import CombinedLoss, LossOutput, LossTerm, build_loss, parse_loss_spec
from reidkit.losses.pairwise import (
    MS_LIGHTMBN,
    MS_OFFICIAL,
    MultiSimilarityLoss,
    PairwiseCircleLoss,
    PairwiseCosFaceLoss,
)
from reidkit.losses.triplet import TripletLoss, WeightedRegularizedTripletLoss

#: Config name → loss builder (the class; keyword arguments are its options).
LOSSES: dict[str, Callable[..., nn.Module]] = {
    "ce": CrossEntropyLabelSmooth,
    "focal": FocalLoss,
    "center": CenterLoss,
    "triplet": TripletLoss,
    "wrt": WeightedRegularizedTripletLoss,
    "circle": PairwiseCircleLoss,
    "cosface": PairwiseCosFaceLoss,
    "ms": MultiSimilarityLoss,
}

__all__ = [
    "LOSSES",
    "MS_LIGHTMBN",
    "MS_OFFICIAL",
    "CenterLoss",
    "CombinedLoss",
    "CrossEntropyLabelSmooth",
    "FocalLoss",
    "LossOutput",
    "LossTerm",
    "MultiSimilarityLoss",
    "PairwiseCircleLoss",
    "PairwiseCosFaceLoss",
    "TripletLoss",
    "WeightedRegularizedTripletLoss",
    "build_loss",
    "parse_loss_spec",
]
