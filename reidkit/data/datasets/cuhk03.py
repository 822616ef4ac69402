"""CUHK03 under the new protocol (CUHK03-NP, 767/700 identities)."""
from __future__ import annotations

import os
import re

from .base import ExpectedSize, NamePattern
from .market1501 import MARKET_SPLIT_DIRS, MarketLayout

CUHK03_VARIANTS = ("labeled", "detected")

CUHK03_PATTERN = NamePattern(
    re.compile(r"(?P<pid>\d{4})_c(?P<cam>\d)_(?P<index>\d+)\.png"),
    "0001_c1_1.png",
    pid_range=(0, 1467),
    cam_range=(1, 2),
)

_SIZES = {
    "labeled": {"train": ExpectedSize(7_368, 767), "query": ExpectedSize(1_400, 700),
                "gallery": ExpectedSize(5_328, 700)},
    "detected": {"train": ExpectedSize(7_365, 767), "query": ExpectedSize(1_400, 700),
                 "gallery": ExpectedSize(5_332, 700)},
}


class CUHK03NP(MarketLayout):
    """CUHK03-NP: CUHK03 with the new 767/700 split, in the widely distributed folder layout.

    Papers: Li et al., "DeepReID: Deep Filter Pairing Neural Network for Person Re-identification",
    CVPR 2014 (the images); Zhong et al., "Re-ranking Person Re-identification with k-reciprocal
    Encoding", CVPR 2017 (the new protocol and the CUHK03-NP folders, zhunzhong07/person-re-ranking).

    Folder anatomy (the root may also be the folder that holds it)::

        cuhk03-np/
          labeled/    bounding_box_train/ (7,368)  query/ (1,400)  bounding_box_test/ (5,328)   *.png
          detected/   bounding_box_train/ (7,365)  query/ (1,400)  bounding_box_test/ (5,332)   *.png

    Naming rule (basename only): ``PPPP_cV_N.png`` -- pid of 4 digits (0..1467), view V in {1, 2}, image
    index N, e.g. ``0001_c1_1.png``. The view becomes camid 0 or 1: the two views of one camera pair, not
    a global camera. Evaluate with the Market protocol.

    ``variant`` (``"labeled"`` hand-drawn boxes or ``"detected"`` DPM boxes) is required: the reference
    toolkits disagree on the default (torchreid detected, FastReID labeled), so the choice is explicit.
    """

    name = "cuhk03np"
    title = "CUHK03-NP"
    anatomy = """
cuhk03-np/                  (or the folder given as root)
  labeled/
    bounding_box_train/     PPPP_cV_N.png, e.g. 0001_c1_1.png, views 1-2
    query/                  same naming
    bounding_box_test/      same naming
  detected/
    bounding_box_train/  query/  bounding_box_test/   (same naming)
"""
    release_names = ("cuhk03np",)
    extension = ".png"
    pattern = CUHK03_PATTERN

    def __init__(self, root: str | os.PathLike[str], *, variant: str) -> None:
        if variant not in CUHK03_VARIANTS:
            raise ValueError(f"CUHK03NP: variant must be one of {', '.join(map(repr, CUHK03_VARIANTS))}, "
                             f"got {variant!r}")
        self.variant = variant
        self.split_dirs = {split: f"{variant}/{sub}" for split, sub in MARKET_SPLIT_DIRS.items()}
        self.required = tuple(self.split_dirs.values())
        self.markers = (*CUHK03_VARIANTS, *self.required)
        super().__init__(root)

    def expected_sizes(self) -> dict[str, ExpectedSize]:
        return _SIZES[self.variant]

    def notes(self) -> list[str]:
        return [f"variant: {self.variant}; cameras are the 2 views of a camera pair"]
