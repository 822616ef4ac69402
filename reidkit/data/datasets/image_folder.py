"""Custom data: one folder per identity, or CSV files of ``path,pid,camid``."""
from __future__ import annotations

import csv
import logging
import os
import re
import warnings
from pathlib import Path

from .base import (
    IMAGE_EXTENSIONS,
    SPLITS,
    DatasetError,
    NoCameraWarning,
    RawSplit,
    ReIDDataset,
    ReIDItem,
)

logger = logging.getLogger(__name__)

DEFAULT_CAMERA_PATTERN = r"_c(\d+)"
PID_REGEX = re.compile(r"-1|\d+")

NO_CAMERA_NOTE = (
    "no camera ids: query camid 0, gallery camid 1, so the same-camera filter removes nothing and "
    "same-camera matches count (an easier task than the benchmarks; not comparable to published numbers)"
)


class ImageFolderReID(ReIDDataset):
    """Your own re-ID data, in one of two layouts (the root may also be the folder that holds it).

    **Folders** -- one sub-folder per identity in each split::

        my_data/
          train/<pid>/<image>      e.g. train/0007/0007_c2_000123.jpg
          query/<pid>/<image>
          gallery/<pid>/<image>

    The folder name is the pid, an integer (``-1`` marks junk, dropped everywhere). Images are files with
    one of the extensions ``.jpg .jpeg .png .bmp .webp`` (any case); other files are ignored and counted
    in a debug message; an image directly in a split folder or a folder inside an identity folder is
    an error. The camera is read from the image's basename with ``camera_pattern`` (default
    ``_c(\\d+)``, searched anywhere in the name, first group): a 1-based camera number, so ``_c1`` is
    camid 0. A name without a match is an error naming the file.

    **CSV** -- ``train.csv``, ``query.csv`` and ``gallery.csv`` in the root, with the header
    ``path,pid,camid`` (``camid`` may be omitted). ``path`` is absolute or relative to the root and must
    exist; ``pid`` an integer (``-1`` junk); ``camid`` the 0-based camera, given on every row of every
    file or on none.

    **Data without cameras** (``camera_pattern=None`` for folders, an omitted or empty ``camid`` column
    for CSV): the Market protocol drops gallery items with the query's pid *and* camera, so with one
    shared camera every query would lose all its matches and the evaluation would have no valid
    query. reidkit therefore gives train and query items camid 0 and gallery items camid 1: nothing is
    removed and same-camera matches count, which is easier than the benchmarks; a
    :class:`NoCameraWarning` and a line of :meth:`summary` say so.

    There is no pid-0 distractor class here: pid 0 is an ordinary identity. Pids are any integers; the
    training pids are relabelled 0..N-1 in ascending integer order (folders ``2, 10, 100`` -> 0, 1, 2).
    """

    name = "imagefolder"
    title = "ImageFolderReID"
    anatomy = """
my_data/                    (or the folder given as root), either folders per identity:
  train/<pid>/<image>       e.g. train/0007/0007_c2_000123.jpg  (camera: camera_pattern on the name)
  query/<pid>/<image>
  gallery/<pid>/<image>
or CSV files with header path,pid,camid (camid optional; 0-based; paths relative to the root):
  train.csv  query.csv  gallery.csv
"""
    markers = (*SPLITS, *(f"{s}.csv" for s in SPLITS))

    def __init__(self, root: str | os.PathLike[str], camera_pattern: str | None = DEFAULT_CAMERA_PATTERN) -> None:
        self.camera_regex = None if camera_pattern is None else re.compile(camera_pattern)
        if self.camera_regex is not None and self.camera_regex.groups < 1:
            raise ValueError(f"camera_pattern {camera_pattern!r} needs one group capturing the camera number")
        self.mode = ""
        self.has_cameras = True
        super().__init__(root)

    def _check_layout(self) -> None:
        has_dirs = any((self.root / s).is_dir() for s in SPLITS)
        has_csv = any((self.root / f"{s}.csv").is_file() for s in SPLITS)
        if has_dirs and has_csv:
            raise self._layout_error(f"{self.root} holds both split folders and split CSV files; keep one")
        self.mode = "csv" if has_csv else "folders"
        self.required = tuple(f"{s}.csv" for s in SPLITS) if has_csv else SPLITS
        super()._check_layout()

    # ------------------------------------------------------------------------------------ folders

    @staticmethod
    def _camera(path: str, regex: re.Pattern[str]) -> int:
        """0-based camid from the first group of ``regex`` searched in the basename (without extension)."""
        name = os.path.basename(path)
        match = regex.search(os.path.splitext(name)[0])
        if match is None:
            raise DatasetError(f"{path}: no camera in file name {name!r}; expected camera_pattern "
                               f"{regex.pattern} (e.g. 0007_c2_000123.jpg), or camera_pattern=None")
        cam = int(match.group(1))
        if cam < 1:
            raise DatasetError(f"{path}: camera {cam} out of range: cameras in file names are numbered from 1")
        return cam - 1

    def _read_folder_split(self, split: str) -> list[tuple[str, int, int | None]]:
        split_dir = self.root / split
        rows: list[tuple[str, int, int | None]] = []
        ignored = 0
        for id_dir in sorted(split_dir.iterdir()):
            if not id_dir.is_dir():
                if id_dir.suffix.lower() in IMAGE_EXTENSIONS:
                    raise DatasetError(f"{id_dir}: image directly in {split_dir}; expected {split}/<pid>/<image>")
                ignored += 1
                continue
            if PID_REGEX.fullmatch(id_dir.name) is None:
                raise DatasetError(f"{id_dir}: identity folder name must be an integer pid (pattern -1|\\d+)")
            pid = int(id_dir.name)
            for entry in sorted(id_dir.iterdir()):
                if entry.is_dir():
                    raise DatasetError(f"{entry}: unexpected folder; expected {split}/<pid>/<image>")
                if entry.suffix.lower() not in IMAGE_EXTENSIONS:
                    ignored += 1
                    continue
                path = str(entry)
                camid = None if self.camera_regex is None else self._camera(path, self.camera_regex)
                rows.append((path, pid, camid))
        if ignored:
            logger.debug("%s: ignored %d non-image entries in %s", self.name, ignored, split_dir)
        return rows

    # ---------------------------------------------------------------------------------------- CSV

    def _read_csv_split(self, split: str) -> list[tuple[str, int, int | None]]:
        csv_path = self.root / f"{split}.csv"
        rows: list[tuple[str, int, int | None]] = []
        with open(csv_path, newline="", encoding="utf-8") as handle:
            reader = csv.DictReader(handle)
            header = [h.strip() for h in reader.fieldnames or []]
            if header not in (["path", "pid", "camid"], ["path", "pid"]):
                raise DatasetError(f"{csv_path}: header must be 'path,pid,camid' (or 'path,pid'), got {header}")
            reader.fieldnames = header
            seen: set[str] = set()
            for line_no, row in enumerate(reader, start=2):
                where = f"{csv_path}:{line_no}"
                if None in row:
                    raise DatasetError(f"{where}: more fields than the header {','.join(header)}")
                path_text, pid_text = (row.get("path") or "").strip(), (row.get("pid") or "").strip()
                cam_text = (row.get("camid") or "").strip()
                if PID_REGEX.fullmatch(pid_text) is None:
                    raise DatasetError(f"{where}: pid must be an integer >= 0 or -1 (junk), got {pid_text!r}")
                if cam_text and not cam_text.isdigit():
                    raise DatasetError(f"{where}: camid must be a non-negative integer (0-based), got {cam_text!r}")
                path = Path(path_text) if os.path.isabs(path_text) else self.root / path_text
                if not path_text or not path.is_file():
                    raise DatasetError(f"{where}: image {path} does not exist")
                if path.suffix.lower() not in IMAGE_EXTENSIONS:
                    raise DatasetError(f"{where}: {path} is not an image ({' '.join(sorted(IMAGE_EXTENSIONS))})")
                if str(path) in seen:
                    raise DatasetError(f"{where}: {path} is listed twice")
                seen.add(str(path))
                rows.append((str(path), int(pid_text), int(cam_text) if cam_text else None))
        return rows

    # ------------------------------------------------------------------------------------ loading

    def _load_splits(self) -> dict[str, RawSplit]:
        read = self._read_csv_split if self.mode == "csv" else self._read_folder_split
        raw = {split: read(split) for split in SPLITS}
        without = [(split, path) for split, rows in raw.items() for path, _, cam in rows if cam is None]
        total = sum(len(rows) for rows in raw.values())
        if without and len(without) < total:
            split, path = without[0]
            raise DatasetError(f"{self.root / f'{split}.csv'}: no camid for {path} while other rows have one; "
                               "give camid on every row of every file or on none")
        self.has_cameras = not without
        if not self.has_cameras:
            warnings.warn(f"{self.name}: {NO_CAMERA_NOTE}", NoCameraWarning, stacklevel=2)
        source_suffix = ".csv" if self.mode == "csv" else "/"
        splits = {}
        for split, rows in raw.items():
            default_cam = 1 if split == "gallery" else 0
            items = [ReIDItem(path, pid, default_cam if cam is None else cam) for path, pid, cam in rows]
            splits[split] = RawSplit(items, str(self.root / split) + source_suffix)
        return splits

    def notes(self) -> list[str]:
        return [] if self.has_cameras else [NO_CAMERA_NOTE]
