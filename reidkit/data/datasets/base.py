"""Common types and shared logic of every dataset parser.

:class:`ReIDItem` is one image; :class:`ReIDDataset` is the base class that every parser extends. The
base class owns everything the parsers have in common (``evaluation.md`` §1.1):

* **root discovery** -- the dataset folder itself, or a root holding it one level down; two candidates
  are an error listing both;
* **strict file-name parsing** -- a regular expression matched against the *basename* only (a
  directory called ``0001_c1/`` never leaks into a pid), with the pid and the camera range-checked;
  a name that does not parse is a :class:`DatasetError` naming the file and the expected pattern;
* **junk and distractors** -- pid ``-1`` is dropped from every split, pid ``0`` (where the dataset uses
  it for distractors) stays in the gallery and is an error anywhere else;
* **ordering and labels** -- every split sorted by path; training pids relabelled ``0..N-1`` in
  ascending order of the *integer* pid (not of its string); query and gallery keep the dataset's pids;
* **size check** -- when the real dataset is detected, split sizes are compared with the published
  ones (§1.7) and a :class:`DatasetSizeWarning` names dataset, split, expected and found.

Parsers never open an image: they read directory listings and list files only, so that Market1501-500k
(~516k files) loads in seconds. A corrupt image therefore surfaces in the data loader, not here.
"""
from __future__ import annotations

import abc
import logging
import os
import re
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar, Iterable, Mapping, NamedTuple, Sequence

import numpy as np

logger = logging.getLogger(__name__)

SPLITS: tuple[str, ...] = ("train", "query", "gallery")
JUNK_PID = -1
IMAGE_EXTENSIONS: frozenset[str] = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".webp"})
#: The manifest reidkit writes next to a dataset it generated (SynthReID); such a folder is never a release.
GENERATED_MANIFEST = "synthreid.json"


class ReIDItem(NamedTuple):
    """One image of a re-ID split.

    ``path`` is the image file (a string), ``pid`` the identity (train: relabelled ``0..N-1``;
    query/gallery: the dataset's own ids, ``0`` for distractors) and ``camid`` the 0-based camera.
    """

    path: str
    pid: int
    camid: int


class SplitStats(NamedTuple):
    """Size of one split: number of images, of distinct identities and of distinct cameras."""

    images: int
    ids: int
    cameras: int


class ExpectedSize(NamedTuple):
    """Published size of one split (``evaluation.md`` §1.7); ``None`` means "not checked"."""

    images: int | None
    ids: int | None


class DatasetError(ValueError):
    """A dataset folder does not have the expected layout or contents.

    The message always names the offending path (folder, list file or image) and what was expected
    there (the folder anatomy or the file-name pattern).
    """


class DatasetSizeWarning(UserWarning):
    """The real dataset was detected but one of its splits does not have the published size."""


class NoCameraWarning(UserWarning):
    """Custom data without camera ids: query and gallery get different cameras (see ``ImageFolderReID``)."""


@dataclass(frozen=True)
class NamePattern:
    """A strict file-name rule: a regex with named groups ``pid`` and ``cam`` plus their valid ranges.

    ``cam`` is the camera number as written in the file name (1-based); ``camid = cam - 1``. A pid of
    ``-1`` (junk) passes when the regex admits it; every other pid must lie in ``pid_range``.
    """

    regex: re.Pattern[str]
    example: str
    pid_range: tuple[int, int]
    cam_range: tuple[int, int]

    def parse(self, path: str) -> tuple[int, int]:
        """Return ``(pid, camid)`` parsed from the basename of ``path``; :class:`DatasetError` otherwise."""
        name = os.path.basename(path)
        match = self.regex.fullmatch(name)
        if match is None:
            raise DatasetError(
                f"{path}: file name {name!r} does not match the expected pattern "
                f"{self.regex.pattern} (e.g. {self.example})"
            )
        pid, cam = int(match.group("pid")), int(match.group("cam"))
        lo, hi = self.pid_range
        if pid != JUNK_PID and not lo <= pid <= hi:
            raise DatasetError(f"{path}: pid {pid} out of range {lo}..{hi} (pattern {self.regex.pattern})")
        lo, hi = self.cam_range
        if not lo <= cam <= hi:
            raise DatasetError(f"{path}: camera {cam} out of range {lo}..{hi} (pattern {self.regex.pattern})")
        return pid, cam - 1


class RawSplit(NamedTuple):
    """A split as a parser read it (original pids, junk included) and where it came from (for errors)."""

    items: list[ReIDItem]
    source: str


# ---------------------------------------------------------------------------------------------- helpers


def list_images(directory: Path, extensions: Iterable[str], *, dataset: str) -> list[str]:
    """Paths of the files in ``directory`` (not recursive) whose extension is one of ``extensions``.

    The comparison is case-insensitive, so that ``X.JPG`` reaches the strict parser and fails there
    loudly instead of vanishing. Every other entry (``Thumbs.db``, sub-folders) is ignored and counted
    in a debug message. A missing folder is a :class:`DatasetError`.
    """
    if not directory.is_dir():
        raise DatasetError(f"{dataset}: folder {directory} does not exist")
    wanted = {e.lower() for e in extensions}
    images: list[str] = []
    ignored: list[str] = []
    with os.scandir(directory) as entries:
        for entry in entries:
            if entry.is_file() and os.path.splitext(entry.name)[1].lower() in wanted:
                images.append(entry.path)
            else:
                ignored.append(entry.name)
    if ignored:
        logger.debug(
            "%s: ignored %d entries that are not %s images in %s (e.g. %s)",
            dataset, len(ignored), "/".join(sorted(wanted)), directory, sorted(ignored)[0],
        )
    return images


def parse_images(paths: Iterable[str], pattern: NamePattern) -> list[ReIDItem]:
    """Parse every path's basename with ``pattern``; any failure is a :class:`DatasetError`."""
    items = []
    for path in paths:
        pid, camid = pattern.parse(path)
        items.append(ReIDItem(path, pid, camid))
    return items


def relabel(items: Sequence[ReIDItem]) -> tuple[list[ReIDItem], dict[int, int]]:
    """Map pids to ``0..N-1`` in ascending order of the original *integer* pid.

    Returns the relabelled items (same order) and the map ``original pid -> label``. Sorting integers
    matters: pids 2, 10, 100 become 0, 1, 2, whereas sorting their strings would give 10, 100, 2.
    """
    pid_map = {pid: label for label, pid in enumerate(sorted({item.pid for item in items}))}
    return [item._replace(pid=pid_map[item.pid]) for item in items], pid_map


def item_labels(items: Sequence[ReIDItem]) -> tuple[np.ndarray, np.ndarray]:
    """The ``(pids, camids)`` of ``items`` as int64 arrays, in item order (what the rank evaluation takes)."""
    return (np.array([item.pid for item in items], dtype=np.int64),
            np.array([item.camid for item in items], dtype=np.int64))


def split_stats(items: Sequence[ReIDItem]) -> SplitStats:
    """Images, distinct pids and distinct cameras of one split."""
    return SplitStats(len(items), len({i.pid for i in items}), len({i.camid for i in items}))


def _normalise_name(name: str) -> str:
    """``'Market-1501-v15.09.15'`` -> ``'market1501v150915'``: compare folder names loosely."""
    return re.sub(r"[^a-z0-9]", "", name.lower())


def _format_table(rows: Sequence[Sequence[str]]) -> list[str]:
    """Left-align the first column and right-align the others, two spaces apart."""
    widths = [max(len(row[c]) for row in rows) for c in range(len(rows[0]))]
    return [
        "  ".join(cell.ljust(widths[c]) if c == 0 else cell.rjust(widths[c]) for c, cell in enumerate(row))
        for row in rows
    ]


# ------------------------------------------------------------------------------------------ base class


class ReIDDataset(abc.ABC):
    """Base class of the parsers: ``.train``, ``.query``, ``.gallery`` lists of :class:`ReIDItem`.

    A subclass declares:

    * ``name`` -- the registry name (``"market1501"``) and ``title`` a human name (``"Market-1501"``);
    * ``anatomy`` -- the expected folder tree, quoted in every layout error;
    * ``markers`` -- relative paths whose presence marks a folder as a candidate dataset root, and
      ``required`` -- relative paths that must all exist there (both may be overridden per instance);
    * ``release_names`` -- normalised folder names of the official release (for the size check);
    * ``distractor_pid`` -- the pid used for gallery distractors (``0`` on Market), or ``None``;
    * :meth:`_load_splits` -- read the three splits with their original pids.

    The constructor then discovers the root, checks the layout, loads, drops junk, checks
    distractors and emptiness, sorts, relabels the training pids and runs the size check.

    Attributes after construction: ``root`` (the discovered dataset folder), ``train``, ``query``,
    ``gallery``, ``train_pid_map`` (original training pid -> label) and ``junk_dropped`` (per split).
    """

    name: ClassVar[str] = ""
    title: ClassVar[str] = ""
    anatomy: ClassVar[str] = ""
    markers: tuple[str, ...] = ()
    required: tuple[str, ...] = ()
    release_names: ClassVar[tuple[str, ...]] = ()
    distractor_pid: ClassVar[int | None] = None

    root: Path
    train: list[ReIDItem]
    query: list[ReIDItem]
    gallery: list[ReIDItem]
    train_pid_map: dict[int, int]
    junk_dropped: dict[str, int]

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = self._discover_root(Path(root).expanduser().absolute())
        self._check_layout()
        raw = self._load_splits()
        self._finalise(raw)

    # ------------------------------------------------------------------ to implement in subclasses

    @abc.abstractmethod
    def _load_splits(self) -> Mapping[str, RawSplit]:
        """Read ``train``, ``query`` and ``gallery`` from ``self.root`` with the dataset's own pids."""

    def expected_sizes(self) -> Mapping[str, ExpectedSize] | None:
        """Published split sizes (``evaluation.md`` §1.7), or ``None`` when there is nothing to check."""
        return None

    def notes(self) -> list[str]:
        """Extra deterministic lines for :meth:`summary` (no paths, no timings)."""
        return []

    # ------------------------------------------------------------------------------ root and layout

    def _layout_error(self, message: str) -> DatasetError:
        return DatasetError(f"{self.name}: {message}\nExpected layout:\n{self.anatomy.strip(chr(10))}")

    def _looks_like_root(self, folder: Path) -> bool:
        return any((folder / marker).exists() for marker in self.markers)

    def _discover_root(self, root: Path) -> Path:
        """``root`` itself if it looks like the dataset, else its only sub-folder that does."""
        if not root.exists():
            raise self._layout_error(f"root {root} does not exist")
        if not root.is_dir():
            raise self._layout_error(f"root {root} is not a folder")
        if self._looks_like_root(root):
            return root
        candidates = sorted(p for p in root.iterdir() if p.is_dir() and self._looks_like_root(p))
        if len(candidates) == 1:
            logger.debug("%s: found the dataset one level down in %s", self.name, candidates[0])
            return candidates[0]
        if len(candidates) > 1:
            listed = ", ".join(str(p) for p in candidates)
            raise self._layout_error(
                f"root {root} holds {len(candidates)} candidate dataset folders ({listed}); "
                "pass the one you mean as root"
            )
        raise self._layout_error(f"no {self.title} dataset found in {root} or in its sub-folders")

    def _check_layout(self) -> None:
        missing = [str(self.root / entry) for entry in self.required if not (self.root / entry).exists()]
        if missing:
            raise self._layout_error(f"missing {', '.join(missing)}")

    # ------------------------------------------------------------------------------------- loading

    def _finalise(self, raw: Mapping[str, RawSplit]) -> None:
        splits: dict[str, list[ReIDItem]] = {}
        self.junk_dropped = {}
        for split in SPLITS:
            items, source = raw[split]
            kept = [item for item in items if item.pid != JUNK_PID]
            self.junk_dropped[split] = len(items) - len(kept)
            if self.junk_dropped[split]:
                logger.debug("%s: dropped %d junk images (pid -1) from %s", self.name,
                             self.junk_dropped[split], split)
            if not kept:
                raise self._layout_error(f"split {split!r} is empty: no usable images in {source}")
            if split != "gallery" and self.distractor_pid is not None:
                for item in kept:
                    if item.pid == self.distractor_pid:
                        raise DatasetError(
                            f"{item.path}: distractor pid {self.distractor_pid} in split {split!r}; "
                            "distractors belong to the gallery only"
                        )
            splits[split] = sorted(kept, key=lambda item: item.path)
        self.train, self.train_pid_map = relabel(splits["train"])
        self.query, self.gallery = splits["query"], splits["gallery"]
        self._check_sizes()

    # ------------------------------------------------------------------------------------ size check

    def is_release(self) -> bool:
        """Whether the loaded folder is taken to be the official dataset, whose sizes are then checked.

        Rule: the dataset folder has one of the release names (compared without case and punctuation,
        e.g. ``Market-1501-v15.09.15`` or ``market1501``), or its total image count is within 10% of the
        published total. A subset in a folder of another name (``data/market_mini/``) is not checked, and
        neither is a dataset reidkit generated itself (a folder holding :data:`GENERATED_MANIFEST`, such as
        SynthReID's ``market`` preset, which has Market-1501's size but is not Market-1501).
        """
        expected = self.expected_sizes()
        if expected is None or (self.root / GENERATED_MANIFEST).is_file():
            return False
        if _normalise_name(self.root.name) in self.release_names:
            return True
        published = [e.images for e in expected.values()]
        if any(n is None for n in published):
            return False
        total = sum(len(items) for items in self.splits.values())
        return abs(total - sum(published)) <= 0.1 * sum(published)  # type: ignore[arg-type]

    def _check_sizes(self) -> None:
        if not self.is_release():
            return
        expected = self.expected_sizes() or {}
        stats = self.statistics()
        for split, want in expected.items():
            found = stats[split]
            wrong = [
                (what, want_n, found_n)
                for what, want_n, found_n in (("images", want.images, found.images), ("ids", want.ids, found.ids))
                if want_n is not None and want_n != found_n
            ]
            if wrong:
                found_text = ", ".join(f"{found_n:,} {what}" for what, _, found_n in wrong)
                want_text = ", ".join(f"{want_n:,} {what}" for what, want_n, _ in wrong)
                warnings.warn(
                    f"{self.title} ({self.name}): split {split!r} has {found_text}, expected {want_text}; "
                    "the folder may be incomplete or modified",
                    DatasetSizeWarning,
                    stacklevel=2,
                )

    # ------------------------------------------------------------------------------------ statistics

    @property
    def splits(self) -> dict[str, list[ReIDItem]]:
        """``{"train": ..., "query": ..., "gallery": ...}``."""
        return {"train": self.train, "query": self.query, "gallery": self.gallery}

    @property
    def num_train_pids(self) -> int:
        """Number of training identities (= classifier outputs)."""
        return len(self.train_pid_map)

    @property
    def num_train_cams(self) -> int:
        """Number of distinct cameras in the training split."""
        return len({item.camid for item in self.train})

    @property
    def num_train_imgs(self) -> int:
        """Number of training images."""
        return len(self.train)

    def statistics(self) -> dict[str, SplitStats]:
        """Per split: ``SplitStats(images, ids, cameras)``."""
        return {split: split_stats(items) for split, items in self.splits.items()}

    def summary(self) -> str:
        """A deterministic text table of the splits (no paths, no timings: safe under nbval)."""
        rows = [("split", "images", "ids", "cameras")]
        for split, s in self.statistics().items():
            rows.append((split, f"{s.images:,}", f"{s.ids:,}", f"{s.cameras:,}"))
        lines = [f"{self.title} ({self.name})"]
        lines += ["  " + line for line in _format_table(rows)]
        if self.distractor_pid is not None:
            n = sum(1 for item in self.gallery if item.pid == self.distractor_pid)
            lines.append(f"  distractors (pid {self.distractor_pid}) in gallery: {n:,}")
        dropped = [f"{split} {n:,}" for split, n in self.junk_dropped.items() if n]
        if dropped:
            lines.append(f"  junk (pid -1) dropped: {', '.join(dropped)}")
        lines += ["  " + note for note in self.notes()]
        return "\n".join(lines)

    def __repr__(self) -> str:
        return self.summary()
