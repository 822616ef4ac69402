"""Numba kernels of the rank metrics: kept ranks of the positives without sorting gallery rows.

Used through :mod:`reidkit.evaluation.rank`, which imports this module (and with it Numba, ~0.2 s) on
first use only, so ``import reidkit`` stays fast.

Compilation and its cache
-------------------------
Every kernel is ``njit(cache=True)``: the first call in a fresh environment compiles it (a few seconds;
float32 and float64 distances are compiled separately, on first use of each) and stores the machine
code in ``__pycache__`` next to this file; later processes and notebook kernels load it in milliseconds.
When that folder is not writable (a read-only install) the cache goes to ``~/.cache/reidkit/numba``
(or the temporary directory); ``NUMBA_CACHE_DIR=/some/writable/dir`` chooses the place explicitly.
``NUMBA_NUM_THREADS`` bounds the threads of :func:`market_kernel`'s parallel loop over queries.

Algorithm (``evaluation.md`` §2.12)
-----------------------------------
For query ``q`` with pid ``p`` and camera ``c`` the kept gallery is everything except the items with
pid ``p`` **and** camera ``c``; the positives are the kept items with pid ``p``. Items are ordered by
the key ``(distance, gallery index)``: **equal distances rank by ascending gallery index**, which is the
order of ``np.argsort(row, kind="stable")``. Per query:

1. gather the positives from the gallery's pid group (indices ascending) and sort them by key;
2. one pass over the gallery: for every kept non-match ``j`` find its insertion point ``t`` among the
   sorted positives (the number of positives with a smaller key) and add one to ``before[t]``;
3. the 1-based kept rank of the ``i``-th positive is ``k_i = i + before[0] + ... + before[i-1]``.

All metrics depend only on the ``k_i``, so the O(G log G) row sort is never done. Finding ``t``:

* up to 256 positives (every public benchmark: Market-1501 averages ~17 per query, MSMT17 ~27) it is a
  count of the positives with a smaller distance over the sorted list padded to whole blocks of
  :data:`BLOCK` with +inf. That is O(P) per item, but LLVM vectorises it and it has no data-dependent
  branch, whereas a binary search mispredicts about one branch per step: at Market scale with random
  labels (~17 positives per query) a binary-search pass took 0.39 s and this count 0.07 s (2-core
  AMD EPYC);
* beyond, the block of 16 is found first -- by a vectorised count over the block heads up to 1,024
  blocks, by a binary search over them beyond (O(log P) per item) -- and then counted inside.

Equal distances are then resolved by gallery index (a short walk over positives at exactly that
distance). Items whose key is beyond the last positive change no ``k_i`` and are skipped first.

Every distance of every row is read, and NaN is reported per row (``nan_rows``) for the caller to raise.
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numba
import numpy as np
from numba import njit, prange


def _writable(folder: Path) -> bool:
    try:
        folder.mkdir(parents=True, exist_ok=True)
        tempfile.TemporaryFile(dir=folder).close()
    except OSError:
        return False
    return True


def _choose_cache_dir() -> None:
    """Keep the on-disk cache usable when this package's folder is read-only.

    ``NUMBA_CACHE_DIR`` wins when set. Otherwise, when ``__pycache__`` next to this file is not writable,
    cache under ``~/.cache/reidkit/numba`` (or the temporary directory when that is not writable either),
    instead of letting Numba fail at import when it finds no writable place.
    """
    if numba.config.CACHE_DIR or _writable(Path(__file__).parent / "__pycache__"):
        return
    home = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "reidkit" / "numba"
    fallback = home if _writable(home) else Path(tempfile.gettempdir()) / "reidkit-numba-cache"
    numba.config.CACHE_DIR = str(fallback)


_choose_cache_dir()

#: Positives per block of the insertion-point search.
BLOCK = 16
#: Up to this many blocks (256 positives) the insertion point is a vectorised count over all positives.
LINEAR_BLOCKS = 16
#: Up to this many blocks the block is found by a vectorised count over the block heads; beyond, by a
#: binary search over them.
HEAD_COUNT_BLOCKS = 1024
#: Groups up to this size are sorted by insertion sort, larger ones by a stable merge sort.
_INSERTION_SORT_MAX = 32


@njit(cache=True, nogil=True, inline="always")
def _key_less(d_a: float, i_a: int, d_b: float, i_b: int) -> bool:
    """Whether ``(d_a, i_a) < (d_b, i_b)``: distance first, then gallery index."""
    return d_a < d_b or (d_a == d_b and i_a < i_b)


@njit(cache=True, nogil=True)
def _sort_by_key(dists: np.ndarray, idx: np.ndarray, n: int) -> None:
    """Sort ``dists[:n]`` and ``idx[:n]`` in place by ``(distance, index)``.

    ``idx[:n]`` must be ascending on input, so a stable sort by distance gives the key order.
    """
    if n <= _INSERTION_SORT_MAX:
        for a in range(1, n):
            d = dists[a]
            i = idx[a]
            b = a - 1
            while b >= 0 and dists[b] > d:  # strict: equal distances keep their (ascending) index order
                dists[b + 1] = dists[b]
                idx[b + 1] = idx[b]
                b -= 1
            dists[b + 1] = d
            idx[b + 1] = i
        return
    order = np.argsort(dists[:n], kind="mergesort")  # stable
    sorted_d = dists[:n][order]
    sorted_i = idx[:n][order]
    dists[:n] = sorted_d
    idx[:n] = sorted_i


@njit(cache=True, nogil=True)
def _group_of(pid: int, uniq_pids: np.ndarray) -> int:
    """Position of ``pid`` in the sorted ``uniq_pids``, or -1 when the gallery has no such pid."""
    pos = np.searchsorted(uniq_pids, pid)
    if pos < uniq_pids.shape[0] and uniq_pids[pos] == pid:
        return pos
    return -1


@njit(cache=True, nogil=True)
def _largest_group(group_starts: np.ndarray) -> int:
    largest = 1
    for u in range(group_starts.shape[0] - 1):
        largest = max(largest, group_starts[u + 1] - group_starts[u])
    return largest


@njit(cache=True, nogil=True)
def _gather_positives(
    row: np.ndarray, qc: int, g_camids: np.ndarray, members: np.ndarray, pos_d: np.ndarray, pos_i: np.ndarray
) -> tuple[int, bool]:
    """Copy the positives among ``members`` (gallery indices of the query's pid) into ``pos_d``/``pos_i``
    sorted by key; return ``(P, whether a member's distance is NaN)``."""
    nan_seen = False
    n_pos = 0
    for m in members:
        d = row[m]
        if d != d:
            nan_seen = True
        elif g_camids[m] != qc:
            pos_d[n_pos] = d
            pos_i[n_pos] = m
            n_pos += 1
    _sort_by_key(pos_d, pos_i, n_pos)
    return n_pos, nan_seen


@njit(cache=True, nogil=True)
def _row_has_nan(row: np.ndarray) -> bool:
    count = 0
    for j in range(row.shape[0]):
        count += row[j] != row[j]
    return count > 0


@njit(cache=True, nogil=True)
def _kept_ranks(
    row: np.ndarray,
    qp: int,
    g_pids: np.ndarray,
    pos_d: np.ndarray,
    pos_i: np.ndarray,
    n_pos: int,
    ranks: np.ndarray,
) -> bool:
    """Fill ``ranks[:n_pos]`` with the 1-based kept ranks of the sorted positives; return NaN seen.

    One pass over the gallery (module docstring, steps 2-3). Gallery items with pid ``qp`` are positives
    or removed and are skipped (their distances were checked for NaN when the positives were gathered).
    """
    num_g = row.shape[0]
    n_blocks = (n_pos + BLOCK - 1) // BLOCK
    # Sorted positive distances padded with +inf to whole blocks (+ one spare), and the block heads.
    padded = np.full(n_blocks * BLOCK + 1, np.inf, dtype=row.dtype)
    padded[:n_pos] = pos_d[:n_pos]
    n_linear = n_blocks * BLOCK
    heads = np.empty(n_blocks, dtype=row.dtype)
    for b in range(n_blocks):
        heads[b] = padded[b * BLOCK]
    before = np.zeros(n_pos + 1, dtype=np.int64)
    last_d = pos_d[n_pos - 1]
    last_i = pos_i[n_pos - 1]
    nan_seen = False
    for j in range(num_g):
        if g_pids[j] == qp:
            continue
        d = row[j]
        if not _key_less(d, j, last_d, last_i):
            if d != d:
                nan_seen = True
            continue  # beyond the last positive (or NaN): changes no k_i
        # t = #{positives with distance < d}
        if n_blocks <= LINEAR_BLOCKS:  # count over all positives (vectorised; no branch to mispredict)
            t = 0
            for s in range(n_linear):
                t += padded[s] < d
        else:  # find the block (count over the heads, or binary search), then count inside it
            if n_blocks <= HEAD_COUNT_BLOCKS:
                nb = 0
                for s in range(n_blocks):
                    nb += heads[s] < d
            else:
                lo = 0
                hi = n_blocks
                while lo < hi:
                    mid = (lo + hi) >> 1
                    if heads[mid] < d:
                        lo = mid + 1
                    else:
                        hi = mid
                nb = lo
            base = (nb - 1) * BLOCK if nb > 0 else 0
            t = base
            for s in range(BLOCK):
                t += padded[base + s] < d
        # Positives at exactly distance d and a smaller gallery index also come first (tie rule).
        while padded[t] == d and pos_i[t] < j:
            t += 1
        before[t] += 1
    acc = 0
    for i in range(n_pos):
        acc += before[i]
        ranks[i] = i + 1 + acc
    return nan_seen


@njit(cache=True, nogil=True)
def _ap_inp(ranks: np.ndarray, n_pos: int, official: bool) -> tuple[float, float]:
    """(AP, INP) of one query from the kept ranks of its positives, accumulated in float64.

    Standard AP = (1/P) sum_i i/k_i; official (trapezoid) AP = (1/P) sum_i ((i-1)/(k_i-1) + i/k_i)/2 with
    the first term 1 when k_i = 1; INP = P / k_P.
    """
    total = 0.0
    for i in range(n_pos):
        k = float(ranks[i])
        precision = (i + 1) / k
        if official:
            previous = 1.0 if ranks[i] == 1 else i / (k - 1.0)
            total += 0.5 * (previous + precision)
        else:
            total += precision
    return total / n_pos, n_pos / float(ranks[n_pos - 1])


@njit(parallel=True, cache=True)
def market_kernel(
    dist: np.ndarray,
    q_pids: np.ndarray,
    q_camids: np.ndarray,
    g_pids: np.ndarray,
    g_camids: np.ndarray,
    uniq_pids: np.ndarray,
    group_starts: np.ndarray,
    group_members: np.ndarray,
    official: bool,
    first_hit: np.ndarray,
    ap: np.ndarray,
    inp: np.ndarray,
    nan_rows: np.ndarray,
) -> None:
    """Per-query first hit, AP and INP of a (Q, G) block of distances (Market-1501 protocol).

    The gallery's pid groups: ``uniq_pids`` ascending; group ``u`` is
    ``group_members[group_starts[u]:group_starts[u + 1]]`` (gallery indices, ascending). Writes, per
    query: ``first_hit`` (1-based kept rank of the first positive, 0 when there is none), ``ap`` and
    ``inp`` (NaN when there is no positive) and ``nan_rows`` (whether the row holds a NaN).
    """
    largest = _largest_group(group_starts)
    for q in prange(dist.shape[0]):
        row = dist[q]
        pos_d = np.empty(largest, dtype=dist.dtype)
        pos_i = np.empty(largest, dtype=np.int64)
        ranks = np.empty(largest, dtype=np.int64)
        u = _group_of(q_pids[q], uniq_pids)
        members = group_members[group_starts[u] : group_starts[u + 1]] if u >= 0 else group_members[:0]
        n_pos, nan_seen = _gather_positives(row, q_camids[q], g_camids, members, pos_d, pos_i)
        if n_pos == 0:
            nan_rows[q] = nan_seen or _row_has_nan(row)
            first_hit[q] = 0
            ap[q] = np.nan
            inp[q] = np.nan
            continue
        nan_rows[q] = _kept_ranks(row, q_pids[q], g_pids, pos_d, pos_i, n_pos, ranks) or nan_seen
        first_hit[q] = ranks[0]
        ap[q], inp[q] = _ap_inp(ranks, n_pos, official)


# ----------------------------------------------------------------------------------------------------
# CUHK03 single-gallery-shot CMC (evaluation.md §2.6). CUHK03 is small (1,400 x 5,328), so these run
# sequentially: compiling a parallel kernel costs seconds more than it would ever save.
# ----------------------------------------------------------------------------------------------------


@njit(cache=True, nogil=True)
def _sorted_group(
    row: np.ndarray,
    qp: int,
    qc: int,
    g_pids: np.ndarray,
    g_camids: np.ndarray,
    members: np.ndarray,
    out_d: np.ndarray,
    out_i: np.ndarray,
) -> int:
    """Kept members of one gallery pid group sorted by key; returns their number.

    For the query's own pid the same-camera members are removed; other groups keep every member.
    """
    n = 0
    for m in members:
        if g_pids[m] == qp and g_camids[m] == qc:
            continue
        out_d[n] = row[m]
        out_i[n] = m
        n += 1
    _sort_by_key(out_d, out_i, n)
    return n


@njit(cache=True, nogil=True)
def cuhk03_group_order(
    dist: np.ndarray,
    q_pids: np.ndarray,
    q_camids: np.ndarray,
    g_pids: np.ndarray,
    g_camids: np.ndarray,
    uniq_pids: np.ndarray,
    group_starts: np.ndarray,
    group_members: np.ndarray,
    valid: np.ndarray,
    order: np.ndarray,
    sizes: np.ndarray,
    match_pos: np.ndarray,
) -> None:
    """For each valid query: the gallery pid groups in order of first appearance in the kept ranking.

    Writes ``order[q]`` (group numbers ``u`` sorted by the key of their best-ranked kept member),
    ``sizes[q]`` (kept members of each group, in that order) and ``match_pos[q]`` (position of the
    query's own pid group in that order). For a valid query every group keeps at least one member.
    """
    n_groups = uniq_pids.shape[0]
    largest = _largest_group(group_starts)
    for q in range(dist.shape[0]):
        if not valid[q]:
            continue
        row = dist[q]
        buf_d = np.empty(largest, dtype=dist.dtype)
        buf_i = np.empty(largest, dtype=np.int64)
        head_d = np.empty(n_groups, dtype=dist.dtype)
        head_i = np.empty(n_groups, dtype=np.int64)
        own = _group_of(q_pids[q], uniq_pids)
        for u in range(n_groups):
            members = group_members[group_starts[u] : group_starts[u + 1]]
            n = _sorted_group(row, q_pids[q], q_camids[q], g_pids, g_camids, members, buf_d, buf_i)
            head_d[u] = buf_d[0]
            head_i[u] = buf_i[0]
            sizes[q, u] = n
        # Groups by the key of their head: heads are distinct gallery items, so sort by index first,
        # then stably by distance.
        by_index = np.argsort(head_i)
        by_key = by_index[np.argsort(head_d[by_index], kind="mergesort")]
        unordered_sizes = sizes[q].copy()
        for r in range(n_groups):
            u = by_key[r]
            order[q, r] = u
            sizes[q, r] = unordered_sizes[u]
            if u == own:
                match_pos[q] = r


@njit(cache=True, nogil=True)
def cuhk03_hits(
    dist: np.ndarray,
    q_pids: np.ndarray,
    q_camids: np.ndarray,
    g_pids: np.ndarray,
    g_camids: np.ndarray,
    group_starts: np.ndarray,
    group_members: np.ndarray,
    valid: np.ndarray,
    order: np.ndarray,
    match_pos: np.ndarray,
    choices: np.ndarray,
    hits: np.ndarray,
) -> None:
    """Single-gallery-shot hit ranks of each valid query for each repeat.

    ``choices[q, r, g]`` picks, in repeat ``r``, the ``choices``-th kept member (in key order) of the
    ``g``-th group in first-appearance order. The hit rank is 1 + the number of groups whose chosen
    member ranks before the chosen member of the query's own group; written to ``hits[q, r]``.
    """
    n_groups = order.shape[1]
    n_repeats = choices.shape[1]
    largest = _largest_group(group_starts)
    for q in range(dist.shape[0]):
        if not valid[q]:
            continue
        row = dist[q]
        buf_d = np.empty(largest, dtype=dist.dtype)
        buf_i = np.empty(largest, dtype=np.int64)
        chosen_d = np.empty((n_repeats, n_groups), dtype=dist.dtype)
        chosen_i = np.empty((n_repeats, n_groups), dtype=np.int64)
        for g in range(n_groups):
            u = order[q, g]
            members = group_members[group_starts[u] : group_starts[u + 1]]
            _sorted_group(row, q_pids[q], q_camids[q], g_pids, g_camids, members, buf_d, buf_i)
            for r in range(n_repeats):
                c = choices[q, r, g]
                chosen_d[r, g] = buf_d[c]
                chosen_i[r, g] = buf_i[c]
        m = match_pos[q]
        for r in range(n_repeats):
            d = chosen_d[r, m]
            j = chosen_i[r, m]
            rank = 1
            for g in range(n_groups):
                if g != m and _key_less(chosen_d[r, g], chosen_i[r, g], d, j):
                    rank += 1
            hits[q, r] = rank
