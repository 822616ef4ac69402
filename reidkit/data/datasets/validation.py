"""A validation split carved from the training identities, for model selection (``evaluation.md`` §1.8).

Selecting checkpoints on query/gallery reports a test-selected number. Instead, :func:`carve_validation`
holds out ``num_ids`` training identities and splits their images like the test protocol: one query per
camera, the rest gallery. Training continues on the remaining identities, relabelled ``0..M-1``.
"""
from __future__ import annotations

from collections import defaultdict
from typing import NamedTuple, Sequence

import numpy as np

from .base import ReIDDataset, ReIDItem, relabel


class ValidationSplit(NamedTuple):
    """``train`` (relabelled 0..M-1), ``query`` and ``gallery`` (pids of the input, i.e. its train labels)."""

    train: list[ReIDItem]
    query: list[ReIDItem]
    gallery: list[ReIDItem]


def _by_path(items: list[ReIDItem]) -> list[ReIDItem]:
    return sorted(items, key=lambda item: item.path)


def carve_validation(data: ReIDDataset | Sequence[ReIDItem], num_ids: int, seed: int) -> ValidationSplit:
    """Hold out ``num_ids`` training identities as a validation query/gallery; deterministic for ``seed``.

    ``data`` is a dataset (its ``.train`` is used) or a list of training :class:`ReIDItem`. Only
    identities seen by at least two cameras and with more images than cameras are eligible, so that
    every carved identity keeps at least one valid query (a gallery match from another camera) under
    the Market protocol. The carved identities are drawn with ``numpy.random.default_rng(seed)``; then,
    for each of them in ascending pid order and each of its cameras in ascending order, one image
    (drawn by the same generator) becomes a query and the others go to the gallery.

    Returns :class:`ValidationSplit` ``(train, query, gallery)``, each sorted by path: ``train`` holds
    the other identities relabelled ``0..M-1`` in ascending order of their input pid; ``query`` and
    ``gallery`` keep the input pids and camids. The three are disjoint and together are the input.

    Raises ``ValueError`` when ``num_ids`` is not a positive integer, when fewer than ``num_ids``
    identities are eligible, or when no training identity would remain.
    """
    items = list(data.train if isinstance(data, ReIDDataset) else data)
    if not isinstance(num_ids, int) or isinstance(num_ids, bool) or num_ids < 1:
        raise ValueError(f"num_ids must be a positive int, got {num_ids!r}")
    if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
        raise ValueError(f"seed must be a non-negative int, got {seed!r}")

    by_pid: dict[int, list[ReIDItem]] = defaultdict(list)
    for item in items:
        by_pid[item.pid].append(item)
    eligible = sorted(
        pid for pid, group in by_pid.items() if 2 <= len({i.camid for i in group}) < len(group)
    )
    if num_ids >= len(by_pid):
        raise ValueError(f"num_ids={num_ids} would leave no training identity (the input has {len(by_pid)})")
    if num_ids > len(eligible):
        raise ValueError(
            f"num_ids={num_ids} but only {len(eligible)} of {len(by_pid)} identities are eligible "
            "(seen by at least 2 cameras, with more images than cameras)"
        )

    rng = np.random.default_rng(seed)
    carved = sorted(eligible[i] for i in rng.permutation(len(eligible))[:num_ids])
    query: list[ReIDItem] = []
    gallery: list[ReIDItem] = []
    for pid in carved:
        by_cam: dict[int, list[ReIDItem]] = defaultdict(list)
        for item in _by_path(by_pid[pid]):
            by_cam[item.camid].append(item)
        for camid in sorted(by_cam):
            group = by_cam[camid]
            pick = int(rng.integers(len(group)))
            query.append(group[pick])
            gallery.extend(group[:pick] + group[pick + 1:])

    carved_set = set(carved)
    train, _ = relabel(_by_path([item for item in items if item.pid not in carved_set]))
    return ValidationSplit(train, _by_path(query), _by_path(gallery))
