"""The plan of a SynthReID dataset: which identity goes to which split and camera, and every file name.

Planning draws no pixels: it decides, from keyed streams, the train/test pids (shuffled over 1..N),
the cameras of each identity and its number of images per camera, the query of each
(test identity, camera), the cameras of distractors and junk, and Market-1501 file names
``PPPP_cCsS_FFFFFF_BB.jpg`` (frames distinct per (pid, camera), so names are unique).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from .identity import Identity, split_identities
from .keys import Kind, Stream, rng_for
from .presets import SynthPreset
from .scene import CameraStyle, camera_styles

SPLIT_DIRS: dict[str, str] = {"train": "bounding_box_train", "query": "query", "gallery": "bounding_box_test"}
MAX_FRAME = 999_999


class ImageSpec(NamedTuple):
    """One file to write: its folder and name, what it shows, and the keys of its random stream."""

    folder: str
    name: str
    kind: Kind
    pid: int  # dataset pid; 0 for distractors, -1 for junk
    cam: int  # 1-based camera
    index: int  # image index within (kind, pid, camera): the last key of its random stream


@dataclass(frozen=True)
class IdentityPlan:
    """Where one identity appears: its split, its cameras and its number of images in each."""

    pid: int
    split: str  # "train" or "test"
    images_per_camera: dict[int, int]

    @property
    def cameras(self) -> list[int]:
        """The 1-based cameras, ascending."""
        return sorted(self.images_per_camera)


@dataclass(frozen=True)
class DatasetPlan:
    """Everything decided before rendering."""

    preset: SynthPreset
    seed: int
    identities: dict[int, Identity]
    layout: dict[int, IdentityPlan]
    cameras: tuple[CameraStyle, ...]
    images: list[ImageSpec]

    def split_pids(self, split: str) -> list[int]:
        """The pids of ``"train"`` or ``"test"``, ascending."""
        return sorted(pid for pid, p in self.layout.items() if p.split == split)


def split_pids(preset: SynthPreset, seed: int) -> tuple[list[int], list[int]]:
    """Train and test pids: a seeded permutation of ``1..N`` cut in two, each part sorted."""
    total = preset.num_train_ids + preset.num_test_ids
    order = rng_for(seed, Stream.PIDS).permutation(total) + 1
    return sorted(int(p) for p in order[: preset.num_train_ids]), sorted(int(p) for p in order[preset.num_train_ids:])


def _identity_layout(preset: SynthPreset, seed: int, pid: int, split: str, single: bool) -> IdentityPlan:
    """Cameras of one identity and its image count in each."""
    rng = rng_for(seed, Stream.CAMERAS_OF_ID, pid)
    lo, hi = preset.train_images_per_camera if split == "train" else preset.test_images_per_camera
    if single:
        cams = [int(rng.integers(1, preset.num_cameras + 1))]
        counts = [int(rng.integers(1, hi + 1))]
    else:
        weights = np.array(preset.camera_weights, dtype=np.float64)
        num = 2 + int(rng.choice(len(weights), p=weights / weights.sum()))
        cams = sorted(int(c) + 1 for c in rng.choice(preset.num_cameras, size=num, replace=False))
        counts = [int(c) for c in rng.integers(lo, hi + 1, size=num)]
    return IdentityPlan(pid, split, dict(zip(cams, counts)))


def _names(seed: int, kind: Kind, pid: int, cam: int, count: int) -> list[str]:
    """``count`` Market-1501 file names for (pid, camera): distinct frames, random sequence and box."""
    rng = rng_for(seed, Stream.NAMES, kind, max(pid, 0), cam)
    frames = np.sort(rng.choice(MAX_FRAME, size=count, replace=False) + 1)
    seqs = rng.integers(1, 7, size=count)
    boxes = rng.integers(1, 9, size=count)
    prefix = "-1" if pid < 0 else f"{pid:04d}"
    return [f"{prefix}_c{cam}s{int(s)}_{int(f):06d}_{int(b):02d}.jpg" for f, s, b in zip(frames, seqs, boxes)]


def _person_specs(seed: int, plan: IdentityPlan) -> list[ImageSpec]:
    """The files of one identity; for a test identity seen by >= 2 cameras, one query per camera."""
    specs = []
    multi = len(plan.images_per_camera) >= 2
    for cam, count in sorted(plan.images_per_camera.items()):
        names = _names(seed, Kind.PERSON, plan.pid, cam, count)
        query = int(rng_for(seed, Stream.QUERY, plan.pid, cam).integers(count)) if plan.split == "test" and multi else -1
        for index, name in enumerate(names):
            if plan.split == "train":
                folder = SPLIT_DIRS["train"]
            else:
                folder = SPLIT_DIRS["query"] if index == query else SPLIT_DIRS["gallery"]
            specs.append(ImageSpec(folder, name, Kind.PERSON, plan.pid, cam, index))
    return specs


def _extra_specs(preset: SynthPreset, seed: int, kind: Kind, count: int) -> list[ImageSpec]:
    """Distractors (pid 0) or junk (pid -1), spread uniformly over the cameras, in the gallery folder."""
    cams = rng_for(seed, Stream.EXTRAS, kind).integers(1, preset.num_cameras + 1, size=count)
    pid = 0 if kind == Kind.DISTRACTOR else -1
    specs = []
    for cam in range(1, preset.num_cameras + 1):
        n = int((cams == cam).sum())
        for index, name in enumerate(_names(seed, kind, pid, cam, n)):
            specs.append(ImageSpec(SPLIT_DIRS["gallery"], name, kind, pid, cam, index))
    return specs


def plan_dataset(preset: SynthPreset, seed: int) -> DatasetPlan:
    """Decide identities, cameras, splits and file names of the dataset ``(preset, seed)``."""
    train, test = split_pids(preset, seed)
    single = set(int(p) for p in rng_for(seed, Stream.SINGLE_CAMERA).permutation(test)[: preset.num_single_camera])
    identities = {**split_identities(seed, train, preset.confusable_fraction),
                  **split_identities(seed, test, preset.confusable_fraction)}
    layout = {pid: _identity_layout(preset, seed, pid, "train", False) for pid in train}
    layout.update({pid: _identity_layout(preset, seed, pid, "test", pid in single) for pid in test})
    images = [spec for pid in sorted(layout) for spec in _person_specs(seed, layout[pid])]
    images += _extra_specs(preset, seed, Kind.DISTRACTOR, preset.num_distractors)
    images += _extra_specs(preset, seed, Kind.JUNK, preset.num_junk)
    images.sort(key=lambda s: (s.folder, s.name))
    return DatasetPlan(preset, seed, identities, layout, camera_styles(seed, preset.num_cameras), images)
