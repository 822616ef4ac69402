"""Rank metrics of the re-ID protocol: CMC, mAP and mINP.

Protocol (Zheng et al., "Scalable Person Re-identification: A Benchmark", ICCV 2015): for a query with
pid ``p`` and camera ``c`` the gallery is ranked by ascending distance and every gallery item with the
same pid **and** the same camera is removed; everything else stays (other-camera positives, negatives,
distractors with pid 0). A query with no remaining positive is invalid and excluded from every mean.

With ``k_1 < ... < k_G`` the 1-based kept ranks of the G positives:

* CMC_q(r) = 1 if k_1 <= r else 0 (it stays 1 up to ``max_rank`` even when fewer than ``max_rank``
  gallery items remain); CMC = float32(count) / float32(#valid).
* standard (non-interpolated) AP = (1/G) * sum_i i / k_i, accumulated in float64;
* ``ap="official"``: the trapezoid AP of the original Market-1501 code,
  (1/G) * sum_i (((i-1)/(k_i-1) if k_i > 1 else 1) + i/k_i) / 2;
* INP = G / k_G (Ye et al., "Deep Learning for Person Re-identification: A Survey and Outlook",
  TPAMI 2021).

Ties in distance are ordered by ascending gallery index (a stable sort). This module is the plain,
argsort-based implementation; it is the reference that faster kernels must equal.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

AP_KINDS = ("standard", "official")
PROTOCOLS = ("market",)


@dataclass(frozen=True)
class RankResult:
    """Result of :func:`evaluate_rank`. All metrics are fractions in [0, 1], not percent.

    ``cmc`` (float32, length ``max_rank``), ``mAP`` and ``mINP`` are means over valid queries; the
    per-query arrays ``ap``, ``inp`` (float64, NaN for invalid queries), ``first_hit`` (1-based kept
    rank of the first positive, 0 for invalid queries) and ``valid`` (bool) cover every query.
    """

    cmc: np.ndarray
    mAP: float
    mINP: float
    ap: np.ndarray
    inp: np.ndarray
    first_hit: np.ndarray
    valid: np.ndarray

    @property
    def num_valid(self) -> int:
        return int(self.valid.sum())

    def rank(self, r: int) -> float:
        """CMC at 1-based rank ``r`` as a float fraction."""
        if not 1 <= r <= len(self.cmc):
            raise ValueError(f"rank {r} outside 1..{len(self.cmc)} (max_rank)")
        return float(self.cmc[r - 1])

    def summary(self, ranks: tuple[int, ...] = (1, 5, 10)) -> str:
        """One line in percent, e.g. ``mAP 45.1% | mINP 12.0% | R1 60.2% | R5 ...``."""
        parts = [f"mAP {100 * self.mAP:.1f}%", f"mINP {100 * self.mINP:.1f}%"]
        parts += [f"R{r} {100 * self.rank(r):.1f}%" for r in ranks if r <= len(self.cmc)]
        return " | ".join(parts)


def _as_1d_int(name: str, values: np.ndarray, expected_len: int) -> np.ndarray:
    arr = np.asarray(values)
    if arr.ndim != 1 or len(arr) != expected_len:
        raise ValueError(f"{name} must be 1-D of length {expected_len}, got shape {arr.shape}")
    if not np.issubdtype(arr.dtype, np.integer):
        raise ValueError(f"{name} must hold integers, got dtype {arr.dtype}")
    return arr.astype(np.int64, copy=False)


def evaluate_rank(
    distmat: np.ndarray,
    q_pids: np.ndarray,
    g_pids: np.ndarray,
    q_camids: np.ndarray,
    g_camids: np.ndarray,
    max_rank: int = 50,
    protocol: str = "market",
    ap: str = "standard",
) -> RankResult:
    """CMC, mAP and mINP of a query x gallery distance matrix under the Market-1501 protocol.

    See the module docstring for the exact definitions. ``distmat`` is (Q, G), smaller is closer;
    NaN distances are an error, as is a set of queries none of which has a valid match.
    """
    if protocol not in PROTOCOLS:
        raise ValueError(f"protocol={protocol!r}: valid choices are {PROTOCOLS}")
    if ap not in AP_KINDS:
        raise ValueError(f"ap={ap!r}: valid choices are {AP_KINDS}")
    if max_rank < 1:
        raise ValueError(f"max_rank must be >= 1, got {max_rank}")
    dist = np.asarray(distmat)
    if dist.ndim != 2:
        raise ValueError(f"distmat must be 2-D (queries x gallery), got shape {dist.shape}")
    num_q, num_g = dist.shape
    q_pids = _as_1d_int("q_pids", q_pids, num_q)
    q_camids = _as_1d_int("q_camids", q_camids, num_q)
    g_pids = _as_1d_int("g_pids", g_pids, num_g)
    g_camids = _as_1d_int("g_camids", g_camids, num_g)
    if np.isnan(dist).any():
        raise ValueError("distmat contains NaN distances")

    counts = np.zeros(max_rank, dtype=np.int64)
    ap_values = np.full(num_q, np.nan)
    inp_values = np.full(num_q, np.nan)
    first_hit = np.zeros(num_q, dtype=np.int64)
    valid = np.zeros(num_q, dtype=bool)
    for q in range(num_q):
        order = np.argsort(dist[q], kind="stable")
        removed = (g_pids[order] == q_pids[q]) & (g_camids[order] == q_camids[q])
        kept = order[~removed]
        matches = g_pids[kept] == q_pids[q]
        k = np.flatnonzero(matches) + 1  # 1-based kept ranks of the positives
        if len(k) == 0:
            continue
        valid[q] = True
        first_hit[q] = k[0]
        if k[0] <= max_rank:
            counts[k[0] - 1 :] += 1
        i = np.arange(1, len(k) + 1, dtype=np.float64)
        if ap == "standard":
            ap_values[q] = float(np.sum(i / k) / len(k))
        else:
            prev = np.where(k > 1, (i - 1) / np.maximum(k - 1, 1), 1.0)
            ap_values[q] = float(np.sum(0.5 * (prev + i / k)) / len(k))
        inp_values[q] = len(k) / float(k[-1])

    num_valid = int(valid.sum())
    if num_valid == 0:
        raise ValueError(
            "no valid query: no query identity appears in the gallery under another camera"
        )
    cmc = counts.astype(np.float32) / np.float32(num_valid)
    return RankResult(
        cmc=cmc,
        mAP=float(np.mean(ap_values[valid])),
        mINP=float(np.mean(inp_values[valid])),
        ap=ap_values,
        inp=inp_values,
        first_hit=first_hit,
        valid=valid,
    )
