"""Common types of every dataset parser: :class:`ReIDItem` and :class:`ReIDDataset`."""
from __future__ import annotations

from typing import NamedTuple


class ReIDItem(NamedTuple):
    """One image of a re-ID split.

    ``path`` is the image file (a string), ``pid`` the identity (train: relabelled ``0..N-1``;
    query/gallery: the dataset's own ids, ``0`` for distractors) and ``camid`` the 0-based camera.
    """

    path: str
    pid: int
    camid: int
