"""Market-1501 and Market1501-500k (Zheng et al., "Scalable Person Re-identification: A Benchmark", ICCV 2015)."""
from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Mapping

from .base import ExpectedSize, NamePattern, RawSplit, ReIDDataset, list_images, parse_images

#: Strict Market-1501 name ``PPPP_cCsS_FFFFFF_BB.jpg`` (pid 4 digits or -1), matched on the basename.
MARKET_REGEX = re.compile(r"(?P<pid>-1|\d{4})_c(?P<cam>\d)s(?P<seq>\d)_(?P<frame>\d{6})_(?P<box>\d{2})\.jpg")
MARKET_EXAMPLE = "0002_c1s1_000451_03.jpg"

#: Relaxed rule for the 500k ``images/`` folder only: a ``<pid>_c<camera>`` prefix, then anything, ``.jpg``.
MARKET_500K_REGEX = re.compile(r"(?P<pid>-1|\d+)_c(?P<cam>\d)(?!\d).*\.jpg")

MARKET_PATTERN = NamePattern(MARKET_REGEX, MARKET_EXAMPLE, pid_range=(0, 1501), cam_range=(1, 6))
MARKET_500K_PATTERN = NamePattern(MARKET_500K_REGEX, "0000_c1s1_000000_00.jpg", pid_range=(0, 1501),
                                  cam_range=(1, 6))

MARKET_SPLIT_DIRS = {"train": "bounding_box_train", "query": "query", "gallery": "bounding_box_test"}


class MarketLayout(ReIDDataset):
    """Shared loader of the Market-1501 folder layout (``bounding_box_train``, ``query``,
    ``bounding_box_test``), used by :class:`Market1501`, ``SynthReID`` and, per variant, ``CUHK03NP``."""

    split_dirs: Mapping[str, str] = MARKET_SPLIT_DIRS
    markers = tuple(MARKET_SPLIT_DIRS.values())
    required = tuple(MARKET_SPLIT_DIRS.values())
    extension: str = ".jpg"
    pattern: NamePattern = MARKET_PATTERN

    def _load_split(self, folder: Path) -> RawSplit:
        paths = list_images(folder, [self.extension], dataset=self.name)
        return RawSplit(parse_images(paths, self.pattern), f"{folder} (pattern {self.pattern.regex.pattern})")

    def _load_splits(self) -> dict[str, RawSplit]:
        return {split: self._load_split(self.root / sub) for split, sub in self.split_dirs.items()}


class Market1501(MarketLayout):
    """Market-1501 (Zheng et al., "Scalable Person Re-identification: A Benchmark", ICCV 2015).

    Folder anatomy (the root may also be the folder that holds it)::

        Market-1501-v15.09.15/
          bounding_box_train/   12,936 jpg, 751 ids, cameras 1-6
          query/                 3,368 jpg, 750 ids
          bounding_box_test/    19,732 jpg = 15,913 kept + 3,819 junk ("-1_..."), incl. 2,798 distractors ("0000_...")
          images/               Market1501-500k only: ~500,000 extra distractors appended to the gallery

    Naming rule (basename only): ``PPPP_cCsS_FFFFFF_BB.jpg`` -- pid (4 digits, or ``-1`` for junk), camera
    C in 1..6, sequence S, frame F, box index B, e.g. ``0002_c1s1_000451_03.jpg``; pid in 0..1501.
    Junk (``-1``) is dropped everywhere; distractors (``0000``) stay in the gallery. ``gt_bbox/`` and
    ``gt_query/`` are not used; ``Thumbs.db`` files shipped in the archive are ignored.

    ``market500k=True`` appends ``images/`` to the gallery. The strict pattern could not be checked
    against the 500k files here, so that folder alone is parsed with the relaxed prefix rule the
    reference toolkits use, ``<pid>_c<camera>`` at the start of the basename (still an error when it
    fails, still range-checked). Its ~516k gallery needs chunked evaluation (``evaluation.md`` §2.12).
    """

    name = "market1501"
    title = "Market-1501"
    anatomy = """
Market-1501-v15.09.15/      (or the folder given as root)
  bounding_box_train/       PPPP_cCsS_FFFFFF_BB.jpg, e.g. 0002_c1s1_000451_03.jpg
  query/                    same naming
  bounding_box_test/        same naming; -1_... junk, 0000_... distractors
  images/                   Market1501-500k distractors (market500k=True only)
"""
    release_names = ("market1501v150915", "market1501")
    distractor_pid = 0

    def __init__(self, root: str | os.PathLike[str], market500k: bool = False) -> None:
        self.market500k = bool(market500k)
        self.num_extra_gallery = 0
        if self.market500k:
            self.required = (*self.required, "images")
        super().__init__(root)

    def _load_splits(self) -> dict[str, RawSplit]:
        splits = super()._load_splits()
        if self.market500k:
            folder = self.root / "images"
            paths = list_images(folder, [self.extension], dataset=self.name)
            extra = parse_images(paths, MARKET_500K_PATTERN)
            self.num_extra_gallery = sum(1 for item in extra if item.pid != -1)
            gallery = splits["gallery"]
            splits["gallery"] = RawSplit(gallery.items + extra, f"{gallery.source} and {folder}")
        return splits

    def expected_sizes(self) -> dict[str, ExpectedSize]:
        # With 500k the extra images are counted as found: only the bounding_box_test part is checked.
        gallery_ids = None if self.market500k else 751
        return {
            "train": ExpectedSize(12_936, 751),
            "query": ExpectedSize(3_368, 750),
            "gallery": ExpectedSize(15_913 + self.num_extra_gallery, gallery_ids),
        }

    def notes(self) -> list[str]:
        if self.market500k:
            return [f"Market1501-500k: {self.num_extra_gallery:,} extra gallery distractors from images/"]
        return []
