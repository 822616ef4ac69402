"""MSMT17 V1 and V2 (Wei et al., "Person Transfer GAN to Bridge Domain Gap for Person Re-Identification", CVPR 2018)."""
from __future__ import annotations

import os
import re
from pathlib import Path

from .base import DatasetError, ExpectedSize, NamePattern, RawSplit, ReIDDataset, ReIDItem

MSMT17_PATTERN = NamePattern(
    re.compile(r"(?P<pid>\d{4})_(?P<index>\d+)_(?P<cam>\d{2})_(?P<time>\d{4}[a-z]+)_(?P<frame>\d+)_(?P<n>\d+)\.jpg"),
    "0000_000_01_0303morning_0015_0.jpg",
    pid_range=(0, 9999),
    cam_range=(1, 15),
)

#: image folders of each version: (train/val images, query/gallery images)
MSMT17_DIRS = {"V1": ("train", "test"), "V2": ("mask_train_v2", "mask_test_v2")}
LIST_FILES = ("list_train.txt", "list_val.txt", "list_query.txt", "list_gallery.txt")


def _walk_files(folder: Path) -> set[str]:
    """Every file below ``folder`` as a ``/``-separated path relative to it."""
    found: set[str] = set()
    for dirpath, _dirnames, filenames in os.walk(folder):
        rel = os.path.relpath(dirpath, folder)
        prefix = "" if rel == "." else rel.replace(os.sep, "/") + "/"
        found.update(prefix + name for name in filenames)
    return found


class MSMT17(ReIDDataset):
    """MSMT17, versions V1 and V2 (detected from the folder names).

    Paper: Wei et al., "Person Transfer GAN to Bridge Domain Gap for Person Re-Identification", CVPR 2018.
    V2 is V1 with the faces blurred. Folder anatomy (the root may also be the folder that holds it)::

        MSMT17_V1/                               MSMT17_V2/
          train/<pid>/<file>.jpg                   mask_train_v2/<pid>/<file>.jpg
          test/<pid>/<file>.jpg                    mask_test_v2/<pid>/<file>.jpg
          list_train.txt  list_val.txt  list_query.txt  list_gallery.txt   (both versions)

    The splits come from the list files, one ``<relative path> <pid>`` per line, e.g.
    ``0000/0000_000_01_0303morning_0015_0.jpg 0``; train/val paths are relative to the training image
    folder, query/gallery paths to the test image folder. Every listed file must exist.

    Naming rule (basename only): ``PPPP_III_CC_<date><time>_FFFF_N.jpg`` -- the third underscore field is
    the camera (01..15, camid 0..14). The pid is the one in the list file. Training pids are 0..1040;
    query/gallery pids are numbered independently (pid 0 is a real identity on both sides, so there
    is no distractor class), and the two numberings never share a label space.

    Train is ``list_train.txt`` only (30,248 images, 1,041 ids), as in published results;
    ``combine_val=True`` appends ``list_val.txt`` (2,373 more images of the same ids; 32,621 in all).
    """

    name = "msmt17"
    title = "MSMT17"
    anatomy = """
MSMT17_V1/                  (or MSMT17_V2/, or the folder given as root)
  train/<pid>/<file>.jpg    V2: mask_train_v2/   e.g. 0000/0000_000_01_0303morning_0015_0.jpg
  test/<pid>/<file>.jpg     V2: mask_test_v2/
  list_train.txt  list_val.txt  list_query.txt  list_gallery.txt   ("<relative path> <pid>" per line)
"""
    markers = LIST_FILES
    release_names = ("msmt17v1", "msmt17v2", "msmt17")

    def __init__(self, root: str | os.PathLike[str], combine_val: bool = False) -> None:
        self.combine_val = bool(combine_val)
        self.version = ""
        super().__init__(root)

    def _check_layout(self) -> None:
        versions = [v for v, dirs in MSMT17_DIRS.items() if any((self.root / d).is_dir() for d in dirs)]
        if len(versions) != 1:
            found = "both the V1 and the V2 image folders" if versions else "no image folders"
            raise self._layout_error(f"{self.root} holds {found}; expected exactly one version")
        self.version = versions[0]
        self.required = (*MSMT17_DIRS[self.version], *LIST_FILES)
        super()._check_layout()

    def _read_list(self, list_name: str, image_dir: Path, existing: set[str]) -> list[ReIDItem]:
        list_path = self.root / list_name
        items: list[ReIDItem] = []
        seen: set[str] = set()
        with open(list_path, encoding="utf-8") as handle:
            for line_no, line in enumerate(handle, start=1):
                if not line.strip():
                    continue
                where = f"{list_path}:{line_no}"
                fields = line.split()
                if len(fields) != 2 or not fields[1].isdigit():
                    raise DatasetError(f"{where}: expected '<relative path> <pid>', got {line.strip()!r}")
                rel, pid = fields[0], int(fields[1])
                if rel in seen:
                    raise DatasetError(f"{where}: {rel} is listed twice")
                seen.add(rel)
                if rel not in existing:
                    raise DatasetError(f"{where}: listed image {image_dir / rel} does not exist")
                path = str(image_dir / rel)
                try:
                    _, camid = MSMT17_PATTERN.parse(path)
                except DatasetError as err:
                    raise DatasetError(f"{where}: {err}") from None
                items.append(ReIDItem(path, pid, camid))
        return items

    def _load_splits(self) -> dict[str, RawSplit]:
        train_dir, test_dir = (self.root / d for d in MSMT17_DIRS[self.version])
        train_files, test_files = _walk_files(train_dir), _walk_files(test_dir)
        train = self._read_list("list_train.txt", train_dir, train_files)
        train_source = str(self.root / "list_train.txt")
        if self.combine_val:
            train += self._read_list("list_val.txt", train_dir, train_files)
            train_source += " and list_val.txt"
        return {
            "train": RawSplit(train, train_source),
            "query": RawSplit(self._read_list("list_query.txt", test_dir, test_files),
                              str(self.root / "list_query.txt")),
            "gallery": RawSplit(self._read_list("list_gallery.txt", test_dir, test_files),
                                str(self.root / "list_gallery.txt")),
        }

    def expected_sizes(self) -> dict[str, ExpectedSize]:
        train_images = 32_621 if self.combine_val else 30_248
        return {
            "train": ExpectedSize(train_images, 1_041),
            "query": ExpectedSize(11_659, 3_060),
            "gallery": ExpectedSize(82_161, 3_060),
        }

    def notes(self) -> list[str]:
        val = "train + val lists" if self.combine_val else "train list only"
        return [f"version: {self.version}; training split: {val}"]
