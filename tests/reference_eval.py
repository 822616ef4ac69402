"""Plain, argsort-based rank evaluation: the reference the Numba kernels must equal (evaluation.md §2).

Written for obviousness, not speed: one stable argsort per query row, the kept list built explicitly,
every metric straight from its definition. Used by the tests and by ``benchmarks/bench_eval.py``.
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np

REPEATS = 10


class Reference(NamedTuple):
    cmc: np.ndarray  # float32 (max_rank,)
    mAP: float
    mINP: float
    ap: np.ndarray  # float64, NaN for invalid queries
    inp: np.ndarray
    first_hit: np.ndarray  # int64, 0 for invalid queries
    valid: np.ndarray  # bool


def kept_list(row: np.ndarray, qp: int, qc: int, g_pids: np.ndarray, g_camids: np.ndarray) -> np.ndarray:
    """Gallery indices in ranked order (ties by index) without same-pid-same-camera items."""
    order = np.argsort(row, kind="stable")
    removed = (g_pids[order] == qp) & (g_camids[order] == qc)
    return order[~removed]


def single_shot_hits(kept: np.ndarray, qp: int, g_pids: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """CUHK03 single-gallery-shot hit rank of each of the 10 repeats (one ``rng.integers`` call)."""
    positions: dict[int, list[int]] = {}  # pid -> kept ranks of its members; dicts keep insertion order
    for rank, j in enumerate(kept):
        positions.setdefault(int(g_pids[j]), []).append(rank)
    groups = list(positions.values())
    own = list(positions).index(qp)
    sizes = np.array([len(members) for members in groups])
    choices = rng.integers(0, sizes, size=(REPEATS, len(groups)))
    hits = np.zeros(REPEATS, dtype=np.int64)
    for r in range(REPEATS):
        chosen = np.array([groups[g][choices[r, g]] for g in range(len(groups))])
        hits[r] = 1 + np.sum(chosen < chosen[own])
    return hits


def reference_evaluate(
    dist: np.ndarray,
    q_pids: np.ndarray,
    g_pids: np.ndarray,
    q_camids: np.ndarray,
    g_camids: np.ndarray,
    max_rank: int = 50,
    protocol: str = "market",
    ap: str = "standard",
    rng: np.random.Generator | None = None,
) -> Reference:
    """The metrics of ``reidkit.evaluation.evaluate_rank``, computed plainly (raises the same errors)."""
    dist = np.asarray(dist)
    if np.isnan(dist).any():
        raise ValueError("NaN")
    num_q = dist.shape[0]
    counts = np.zeros(max_rank, dtype=np.int64)
    ap_values = np.full(num_q, np.nan)
    inp_values = np.full(num_q, np.nan)
    first_hit = np.zeros(num_q, dtype=np.int64)
    valid = np.zeros(num_q, dtype=bool)
    for q in range(num_q):
        kept = kept_list(dist[q], q_pids[q], q_camids[q], g_pids, g_camids)
        k = np.flatnonzero(g_pids[kept] == q_pids[q]) + 1  # 1-based kept ranks of the positives
        if len(k) == 0:
            continue
        valid[q] = True
        first_hit[q] = k[0]
        i = np.arange(1, len(k) + 1, dtype=np.float64)
        if ap == "standard":
            ap_values[q] = np.sum(i / k) / len(k)
        else:
            previous = np.where(k > 1, (i - 1) / np.maximum(k - 1, 1), 1.0)
            ap_values[q] = np.sum(0.5 * (previous + i / k)) / len(k)
        inp_values[q] = len(k) / k[-1]
        hits = [k[0]] if protocol == "market" else single_shot_hits(kept, q_pids[q], g_pids, rng)
        for hit in hits:
            counts[hit - 1 :] += 1  # a no-op when hit > max_rank
    num_valid = int(valid.sum())
    if num_valid == 0:
        raise ValueError("no valid query")
    repeats = 1 if protocol == "market" else REPEATS
    cmc = counts.astype(np.float32) / np.float32(repeats * num_valid)
    return Reference(
        cmc, float(np.mean(ap_values[valid])), float(np.mean(inp_values[valid])),
        ap_values, inp_values, first_hit, valid,
    )
