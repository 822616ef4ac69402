"""Rank metrics of the re-ID protocol: CMC, mAP and mINP, from a distance matrix or blocks of its rows.

Protocol (Zheng et al., "Scalable Person Re-identification: A Benchmark", ICCV 2015; ``evaluation.md``
§2): for a query with pid ``p`` and camera ``c`` the gallery is ranked by ascending distance and every
gallery item with the same pid **and** the same camera is removed; everything else stays (other-camera
positives, negatives, distractors with pid 0). A query with no remaining positive is invalid and is
excluded from every numerator and denominator.

With ``k_1 < ... < k_P`` the 1-based kept ranks of the query's ``P`` positives:

* CMC_q(r) = 1 if k_1 <= r else 0, for r = 1..max_rank; it stays 1 after the first hit even when fewer
  than ``max_rank`` items are kept (``max_rank`` may exceed the gallery size).
  CMC = float32(count) / float32(#valid), where count(r) = #{valid q : k_1 <= r}.
* standard (non-interpolated) AP = (1/P) sum_i i / k_i, accumulated in float64; mAP = mean over valid.
* ``ap="official"``: the trapezoid AP of the original Market-1501 / Oxford code,
  (1/P) sum_i ((i-1)/(k_i-1) + i/k_i) / 2, with (i-1)/(k_i-1) read as 1 when k_i = 1.
* INP = P / k_P (Ye et al., "Deep Learning for Person Re-identification: A Survey and Outlook",
  TPAMI 2021); mINP = mean over valid queries.

**Ties**: equal distances are ordered by ascending gallery index (the order of a stable argsort).
NaN distances are an error. The work is done by the Numba kernels of
:mod:`reidkit.evaluation.kernels`, which never sort a gallery row: they sort the query's P positives and
place every other kept item among them in one pass.

:class:`RankAccumulator` takes the distance matrix in consecutive blocks of query rows and merges the
per-query results (CMC as integer counts), so a Q x G matrix never has to exist at once;
:func:`evaluate_rank` is the one-block case.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

AP_KINDS = ("standard", "official")
PROTOCOLS = ("market", "cuhk03")
#: Repeats of the CUHK03 single-gallery-shot draw (evaluation.md §2.6).
CUHK03_REPEATS = 10
# Bytes of CUHK03 draws held at once (queries x repeats x groups, int64).
_CUHK03_DRAW_BYTES = 64 * 2**20


@dataclass(frozen=True)
class RankResult:
    """Result of :func:`evaluate_rank` / :func:`~reidkit.evaluation.chunked.evaluate_features`.

    All metrics are fractions in [0, 1], not percent. ``cmc`` (float32, length ``max_rank``), ``mAP``
    and ``mINP`` are over valid queries; the per-query arrays cover every query: ``ap`` and ``inp``
    (float64, NaN for invalid queries), ``first_hit`` (int64, 1-based kept rank of the first positive in
    the full ranking, 0 for invalid queries) and ``valid`` (bool). ``protocol`` and ``ap_kind`` record
    how the numbers were computed (``"market"``/``"cuhk03"``, ``"standard"``/``"official"``).
    """

    cmc: np.ndarray
    mAP: float
    mINP: float
    ap: np.ndarray
    inp: np.ndarray
    first_hit: np.ndarray
    valid: np.ndarray
    protocol: str = "market"
    ap_kind: str = "standard"

    @property
    def num_valid(self) -> int:
        """Number of valid queries (queries with a positive in another camera)."""
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


def _as_1d_int(name: str, values: Any, expected_len: int | None = None) -> np.ndarray:
    """``values`` as a contiguous 1-D int64 array (torch tensors accepted), checking dtype and length."""
    if hasattr(values, "detach"):  # a torch tensor
        values = values.detach().cpu().numpy()
    arr = np.asarray(values)
    if arr.ndim != 1 or (expected_len is not None and len(arr) != expected_len):
        want = "1-D" if expected_len is None else f"1-D of length {expected_len}"
        raise ValueError(f"{name} must be {want}, got shape {arr.shape}")
    if not np.issubdtype(arr.dtype, np.integer):
        raise ValueError(f"{name} must hold integers, got dtype {arr.dtype}")
    return np.ascontiguousarray(arr, dtype=np.int64)


def as_distance_matrix(distmat: Any, name: str = "distmat") -> np.ndarray:
    """``distmat`` as a C-contiguous 2-D float32 or float64 NumPy array (torch tensors accepted).

    float32 and float64 are used as they are (no rounding, so no new ties); other real dtypes are
    converted: float16 to float32, integers to float64.
    """
    if hasattr(distmat, "detach"):  # a torch tensor, on any device
        distmat = distmat.detach().cpu().numpy()
    dist = np.asarray(distmat)
    if dist.ndim != 2:
        raise ValueError(f"{name} must be 2-D (queries x gallery), got shape {dist.shape}")
    if dist.dtype == np.float16:
        dist = dist.astype(np.float32)
    elif np.issubdtype(dist.dtype, np.integer):
        dist = dist.astype(np.float64)
    elif dist.dtype not in (np.float32, np.float64):
        raise ValueError(f"{name} must hold real distances (float32 or float64), got dtype {dist.dtype}")
    return np.ascontiguousarray(dist)


def _check_choice(name: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ValueError(f"{name}={value!r}: valid choices are {choices}")


def check_rank_options(max_rank: int, protocol: str, ap: str, rng: Any) -> None:
    """Validate the options shared by :func:`evaluate_rank` and ``evaluate_features``."""
    _check_choice("protocol", protocol, PROTOCOLS)
    _check_choice("ap", ap, AP_KINDS)
    if isinstance(max_rank, bool) or not isinstance(max_rank, (int, np.integer)) or max_rank < 1:
        raise ValueError(f"max_rank must be a positive integer, got {max_rank!r}")
    if protocol == "cuhk03":
        if not isinstance(rng, np.random.Generator):
            raise ValueError(
                "protocol='cuhk03' draws single-gallery-shot samples and needs rng=numpy.random.Generator "
                f"(e.g. np.random.default_rng(0)), got rng={rng!r}"
            )
    elif rng is not None:
        raise ValueError(f"rng is only used with protocol='cuhk03', got rng={rng!r} with protocol={protocol!r}")


@dataclass
class _Gallery:
    """Gallery labels and their pid groups (what every kernel call needs)."""

    pids: np.ndarray
    camids: np.ndarray
    uniq_pids: np.ndarray = field(init=False)
    group_starts: np.ndarray = field(init=False)
    group_members: np.ndarray = field(init=False)

    def __post_init__(self) -> None:
        self.group_members = np.argsort(self.pids, kind="stable").astype(np.int64)  # ascending within pid
        self.uniq_pids, starts = np.unique(self.pids[self.group_members], return_index=True)
        self.group_starts = np.append(starts, len(self.pids)).astype(np.int64)


class RankAccumulator:
    """Rank metrics of a (Q, G) distance matrix handed over in consecutive blocks of query rows.

    ``add`` runs the kernels on one block and keeps only per-query results (first hit, AP, INP; for
    CUHK03 the hit rank of each repeat); ``result`` merges them into one :class:`RankResult` identical
    to evaluating the whole matrix at once (CMC is merged as integer counts). Blocks must come in query
    order; each may have any number of rows. Used by ``evaluate_features`` and usable for any distance
    produced chunk by chunk (e.g. re-ranked distances)::

        acc = RankAccumulator(g_pids, g_camids)
        for rows in chunks:
            acc.add(distance_rows(rows), q_pids[rows], q_camids[rows])
        result = acc.result()

    Args are those of :func:`evaluate_rank`.
    """

    def __init__(
        self,
        g_pids: Any,
        g_camids: Any,
        max_rank: int = 50,
        protocol: str = "market",
        ap: str = "standard",
        rng: np.random.Generator | None = None,
    ) -> None:
        check_rank_options(max_rank, protocol, ap, rng)
        g_pids = _as_1d_int("g_pids", g_pids)
        g_camids = _as_1d_int("g_camids", g_camids, len(g_pids))
        self.gallery = _Gallery(g_pids, g_camids)
        self.max_rank = int(max_rank)
        self.protocol = protocol
        self.ap_kind = ap
        self.rng = rng
        self.num_queries = 0
        self._hist = np.zeros(self.max_rank, dtype=np.int64)  # hits at exactly rank r (1..max_rank)
        self._parts: list[tuple[np.ndarray, ...]] = []

    def add(self, dist: Any, q_pids: Any, q_camids: Any) -> None:
        """Evaluate the next block of query rows: ``dist`` (n, G), ``q_pids``/``q_camids`` (n,)."""
        from reidkit.evaluation import kernels  # imports Numba on first use only

        dist = as_distance_matrix(dist)
        num_g = len(self.gallery.pids)
        if dist.shape[1] != num_g:
            raise ValueError(f"distance block has {dist.shape[1]} gallery columns, expected {num_g} (len(g_pids))")
        n = dist.shape[0]
        q_pids = _as_1d_int("q_pids", q_pids, n)
        q_camids = _as_1d_int("q_camids", q_camids, n)
        g = self.gallery
        first_hit = np.zeros(n, dtype=np.int64)
        ap = np.empty(n, dtype=np.float64)
        inp = np.empty(n, dtype=np.float64)
        nan_rows = np.zeros(n, dtype=np.bool_)
        if n > 0 and num_g > 0:
            kernels.market_kernel(
                dist, q_pids, q_camids, g.pids, g.camids, g.uniq_pids, g.group_starts, g.group_members,
                self.ap_kind == "official", first_hit, ap, inp, nan_rows,
            )
        else:
            ap[:] = np.nan
            inp[:] = np.nan
        if nan_rows.any():
            row = self.num_queries + int(np.flatnonzero(nan_rows)[0])
            raise ValueError(f"distmat contains NaN distances (first in query row {row}); expected real numbers")
        valid = first_hit > 0
        if self.protocol == "cuhk03":
            hits = self._cuhk03_hits(kernels, dist, q_pids, q_camids, valid)
        else:
            hits = first_hit[valid]
        hits = hits[hits <= self.max_rank]
        self._hist += np.bincount(hits - 1, minlength=self.max_rank)
        self._parts.append((ap, inp, first_hit, valid))
        self.num_queries += n

    def _cuhk03_hits(
        self, kernels: Any, dist: np.ndarray, q_pids: np.ndarray, q_camids: np.ndarray, valid: np.ndarray
    ) -> np.ndarray:
        """Single-gallery-shot hit ranks (all repeats of all valid queries of the block, flattened)."""
        g = self.gallery
        n_groups = len(g.uniq_pids)
        out = []
        step = max(1, _CUHK03_DRAW_BYTES // (8 * CUHK03_REPEATS * n_groups))
        for start in range(0, dist.shape[0], step):
            rows = slice(start, start + step)
            block, bq, bc, bv = dist[rows], q_pids[rows], q_camids[rows], valid[rows]
            n = block.shape[0]
            order = np.zeros((n, n_groups), dtype=np.int64)
            sizes = np.zeros((n, n_groups), dtype=np.int64)
            match_pos = np.zeros(n, dtype=np.int64)
            kernels.cuhk03_group_order(
                block, bq, bc, g.pids, g.camids, g.uniq_pids, g.group_starts, g.group_members,
                bv, order, sizes, match_pos,
            )
            choices = np.zeros((n, CUHK03_REPEATS, n_groups), dtype=np.int64)
            for q in np.flatnonzero(bv):  # ascending query index; one draw per valid query
                choices[q] = self.rng.integers(0, sizes[q], size=(CUHK03_REPEATS, n_groups))
            hits = np.zeros((n, CUHK03_REPEATS), dtype=np.int64)
            kernels.cuhk03_hits(
                block, bq, bc, g.pids, g.camids, g.group_starts, g.group_members,
                bv, order, match_pos, choices, hits,
            )
            out.append(hits[bv].ravel())
        return np.concatenate(out) if out else np.zeros(0, dtype=np.int64)

    def result(self) -> RankResult:
        """Merge every block added so far into one :class:`RankResult`."""
        if self._parts:
            ap, inp, first_hit, valid = (np.concatenate(arrays) for arrays in zip(*self._parts))
        else:
            ap = inp = np.zeros(0)
            first_hit, valid = np.zeros(0, dtype=np.int64), np.zeros(0, dtype=bool)
        num_valid = int(valid.sum())
        if num_valid == 0:
            raise ValueError(
                f"no valid query among {len(valid)}: no query identity appears in the gallery under another "
                "camera (expected at least one query whose pid has a gallery image from a different camera)"
            )
        repeats = CUHK03_REPEATS if self.protocol == "cuhk03" else 1
        counts = np.cumsum(self._hist)
        cmc = counts.astype(np.float32) / np.float32(repeats * num_valid)
        return RankResult(
            cmc=cmc,
            mAP=float(np.mean(ap[valid])),
            mINP=float(np.mean(inp[valid])),
            ap=ap,
            inp=inp,
            first_hit=first_hit,
            valid=valid,
            protocol=self.protocol,
            ap_kind=self.ap_kind,
        )


def evaluate_rank(
    distmat: Any,
    q_pids: Any,
    g_pids: Any,
    q_camids: Any,
    g_camids: Any,
    max_rank: int = 50,
    protocol: str = "market",
    ap: str = "standard",
    rng: np.random.Generator | None = None,
) -> RankResult:
    """CMC, mAP and mINP of a (Q, G) query x gallery distance matrix (smaller is closer).

    Market-1501 protocol of Zheng et al., ICCV 2015 (module docstring): same pid and same camera removed,
    CMC_q(r) = [k_1 <= r] averaged as float32(count)/float32(#valid); AP = (1/P) sum_i i/k_i in float64
    (``ap="official"``: (1/P) sum_i ((i-1)/(k_i-1) + i/k_i)/2); INP = P/k_P (Ye et al., TPAMI 2021).
    Ties rank by ascending gallery index. Invalid queries (no positive left) are excluded from the means;
    none valid is a ``ValueError``, as is a NaN distance.

    ``protocol="cuhk03"``: single-gallery-shot CMC (``evaluation.md`` §2.6). The kept gallery of each
    valid query is grouped by pid (groups in order of first appearance in the kept ranking; pid-0
    distractors form one group); in each of 10 repeats one member per group is chosen uniformly, and the
    hit rank is 1 + the number of groups whose chosen member ranks before the chosen positive. CMC(r) =
    #(query, repeat) pairs with hit rank <= r / (10 #valid), as float32. AP, INP and ``first_hit`` are
    those of the full multi-shot kept list, as in the Market protocol. ``rng`` (a
    ``numpy.random.Generator``) is required; the draw pattern is fixed so a plain implementation can
    reproduce it: queries in ascending index, for each **valid** query exactly one call
    ``rng.integers(0, sizes, size=(10, n_groups))`` where ``sizes`` are the group sizes in
    first-appearance order; entry ``[r, g]`` picks the member of group ``g`` at that position in rank
    order (0 = best ranked) for repeat ``r``.

    Args:
        distmat: (Q, G) float32/float64 distances (NumPy or torch); float32 is not rounded further.
        q_pids, g_pids, q_camids, g_camids: integer labels (int64 internally).
        max_rank: CMC length; may exceed G.
        protocol: ``"market"`` or ``"cuhk03"``.
        ap: ``"standard"`` or ``"official"``.
        rng: the generator of the CUHK03 draws; must be ``None`` for ``"market"``.

    Returns:
        A :class:`RankResult` (fractions, not percent).
    """
    dist = as_distance_matrix(distmat)
    num_q, num_g = dist.shape
    acc = RankAccumulator(
        _as_1d_int("g_pids", g_pids, num_g), _as_1d_int("g_camids", g_camids, num_g),
        max_rank=max_rank, protocol=protocol, ap=ap, rng=rng,
    )
    acc.add(dist, _as_1d_int("q_pids", q_pids, num_q), _as_1d_int("q_camids", q_camids, num_q))
    return acc.result()
