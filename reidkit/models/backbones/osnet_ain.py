"""OSNet-AIN x1.0 / x0.75 / x0.5 / x0.25 (Zhou et al., "Learning Generalisable Omni-Scale Representations for
Person Re-Identification", TPAMI 2021, arXiv 1910.06827): OSNet with affine instance normalisation in the stem
and inside the residual branch of the searched blocks, key-compatible with torchreid's ``osnet_ain.py``.

The implementation shares its layers with OSNet and lives in :mod:`reidkit.models.backbones.osnet`; this module
re-exports the AIN names.
"""
from __future__ import annotations

from reidkit.models.backbones.osnet import (
    LightConvStream,
    OSBlockAIN,
    OSBlockINin,
    OSNetAIN,
    osnet_ain_x0_5,
    osnet_ain_x0_25,
    osnet_ain_x0_75,
    osnet_ain_x1_0,
)

__all__ = [
    "LightConvStream",
    "OSBlockAIN",
    "OSBlockINin",
    "OSNetAIN",
    "osnet_ain_x0_25",
    "osnet_ain_x0_5",
    "osnet_ain_x0_75",
    "osnet_ain_x1_0",
]
