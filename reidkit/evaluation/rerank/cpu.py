"""The NumPy/Numba path: :func:`re_ranking` (distance matrices) and :func:`re_ranking_features`."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from reidkit.evaluation.rerank._common import (
    DEFAULT_CHUNK_SIZE,
    MATRIX_MARGIN,
    MODE_SQUARE,
    MODE_SQUARED,
    Features,
    Params,
    as_distance_array,
    check_chunk_size,
    check_column_maxima,
    check_matrix_shapes,
    check_num_items,
    feature_tiles,
    full_float32_matmul,
    lambda_weights,
    prepare_features,
    validate_params,
)

#: Rows of an input distance matrix handed to one streaming kernel call.
_BLOCK_ROWS = 1024


def _kernels():  # type: ignore[no-untyped-def]
    """The Numba kernels, imported (and compiled or loaded from the cache) on first use."""
    from reidkit.evaluation.rerank import _kernels as kernels

    return kernels


def _column_groups() -> int:
    import numba

    return 4 * numba.get_num_threads()


@dataclass
class _TopKeys:
    """Per item: the ``size`` smallest keys (s, j) seen so far, their count, and the running maximum of s."""

    keys_s: np.ndarray
    keys_i: np.ndarray
    thr_s: np.ndarray
    thr_i: np.ndarray
    cnt: np.ndarray
    colmax: np.ndarray

    @classmethod
    def empty(cls, num_items: int, size: int) -> _TopKeys:
        big = np.iinfo(np.int32).max
        return cls(
            keys_s=np.full((num_items, size), np.inf, dtype=np.float32),
            keys_i=np.full((num_items, size), big, dtype=np.int32),
            thr_s=np.full(num_items, np.inf, dtype=np.float32),
            thr_i=np.full(num_items, big, dtype=np.int32),
            cnt=np.zeros(num_items, dtype=np.int32),
            colmax=np.zeros(num_items, dtype=np.float32),
        )

    def state(self) -> tuple[np.ndarray, ...]:
        return self.keys_s, self.keys_i, self.thr_s, self.thr_i, self.cnt, self.colmax


# --------------------------------------------------------------------------------------------------
# Neighbour lists
# --------------------------------------------------------------------------------------------------


def _stream_matrix(
    name: str, arr: np.ndarray, r0: int, c0: int, as_rows: bool, top: _TopKeys, out: np.ndarray, num_q: int
) -> None:
    """Stream one input matrix (rows = items ``r0 + a`` of D, columns ``c0 + b``) into ``top``.

    Row i of D~ is column i of D: every block serves its columns (item c0 + b, neighbour r0 + a); q_g
    also serves its rows, because D[P + g, p] = q_g[p, g] lies in column p.
    """
    k = _kernels()
    groups = _column_groups()
    zeros_c = np.zeros(arr.shape[1], dtype=np.float32)
    bad = 0
    for start in range(0, arr.shape[0], _BLOCK_ROWS):
        block = arr[start : start + _BLOCK_ROWS]
        if block.dtype == np.float64:  # the classic squares float64 in float64, then rounds to float32
            block, mode = np.square(block).astype(np.float32), MODE_SQUARED
        else:
            block, mode = np.ascontiguousarray(block), MODE_SQUARE
        zeros_r = np.zeros(block.shape[0], dtype=np.float32)
        bad += k.stream_cols(block, zeros_r, zeros_c, r0 + start, c0, mode, True, *top.state(), groups)
        if as_rows:  # the same values as the columns: non-finite ones are already counted
            k.stream_rows(block, zeros_r, zeros_c, r0 + start, c0, mode, True, *top.state(), out, num_q)
    if bad:
        raise ValueError(
            f"{name} contains {bad} NaN or infinite distance(s) (or values whose square overflows float32)"
        )


def _rescan_row(t: int, q_g: np.ndarray, q_q: np.ndarray, g_g: np.ndarray, colmax: float, k: int) -> np.ndarray:
    """First ``k`` of ``np.argsort(D~[t], kind="stable")`` from the full column t of D (exact, O(N log N))."""
    num_q = q_q.shape[0]
    if t < num_q:
        col = np.concatenate([q_q[:, t], q_g[t, :]])
    else:
        col = np.concatenate([q_g[:, t - num_q], g_g[:, t - num_q]])
    s = (col * col).astype(np.float32)
    return np.argsort(s / np.float32(colmax), kind="stable")[:k].astype(np.int32)


def _neighbours_from_matrices(
    q_g: np.ndarray, q_q: np.ndarray, g_g: np.ndarray, size: int, out: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """N(i, size) for all items, ordered like the classic's sort of D~ rows (ties by index), and colmax."""
    num_q, num_g = q_g.shape
    num_items = num_q + num_g
    top = _TopKeys.empty(num_items, min(size + MATRIX_MARGIN, num_items))
    _stream_matrix("q_q_dist", q_q, 0, 0, False, top, out, num_q)
    _stream_matrix("q_g_dist", q_g, 0, num_q, True, top, out, num_q)
    _stream_matrix("g_g_dist", g_g, num_q, num_q, False, top, out, num_q)
    check_column_maxima(top.colmax)
    nbr = np.empty((num_items, size), dtype=np.int32)
    unsafe = np.zeros(num_items, dtype=np.bool_)
    _kernels().finalize_exact(top.keys_s, top.keys_i, top.cnt, top.colmax, size, num_items, nbr, unsafe)
    for t in np.flatnonzero(unsafe):
        nbr[t] = _rescan_row(int(t), q_g, q_q, g_g, top.colmax[t], size)
    return nbr, top.colmax


def _neighbours_from_features(feats: Features, size: int, tile: int, out: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """N(i, size) ordered by (s, index) from symmetric feature tiles, and the maxima of s per item."""
    k = _kernels()
    groups = _column_groups()
    top = _TopKeys.empty(feats.num_items, size)
    norms = feats.norms.numpy()
    for r0, c0, block in feature_tiles(feats, tile):
        arr = block.numpy()
        nr = norms[r0 : r0 + arr.shape[0]]
        nc = norms[c0 : c0 + arr.shape[1]]
        args = (arr, nr, nc, r0, c0, feats.mode, feats.square, *top.state())
        bad = k.stream_rows(*args, out, feats.num_query)
        if c0 != r0:
            bad += k.stream_cols(*args, groups)
        if bad:
            raise ValueError("feature distances overflow float32 (features too large)")
    check_column_maxima(top.colmax)
    return np.ascontiguousarray(top.keys_i[:, :size]), top.colmax


# --------------------------------------------------------------------------------------------------
# Sets, weights, query expansion and Jaccard distance
# --------------------------------------------------------------------------------------------------


def expanded_neighbourhoods(nbr: np.ndarray, params: Params) -> tuple[np.ndarray, np.ndarray]:
    """R*(i) for every item as CSR (indptr int64, indices int32 sorted per row) from the lists N(i, k1 + 1)."""
    k = _kernels()
    size = params.list_len
    half = params.half + 1
    rec, rec_len = k.reciprocal_lists(nbr, size)
    rec_half, rec_half_len = k.reciprocal_lists(nbr, half)
    padded, count = k.expanded_sets(rec, rec_len, rec_half, rec_half_len, size * (half + 1))
    indptr = np.zeros(len(nbr) + 1, dtype=np.int64)
    np.cumsum(count, out=indptr[1:])
    indices = padded[np.arange(padded.shape[1])[None, :] < count[:, None]]
    return indptr, np.ascontiguousarray(indices, dtype=np.int32)


def _query_expansion(
    indptr: np.ndarray, indices: np.ndarray, data: np.ndarray, nbr: np.ndarray, k2: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """V_qe[i] = mean of V[j] over j in N(i, k2), as CSR; V itself when k2 == 1 (the classic skips it)."""
    if k2 == 1:
        return indptr, indices, data
    k = _kernels()
    sizes = k.expansion_sizes(indptr, indices, data, nbr, k2)
    out_ptr = np.zeros(len(nbr) + 1, dtype=np.int64)
    np.cumsum(sizes, out=out_ptr[1:])
    out_idx, out_val = k.expansion_fill(indptr, indices, data, nbr, k2, out_ptr)
    return out_ptr, out_idx, out_val


def _jaccard_and_blend(
    v: tuple[np.ndarray, np.ndarray, np.ndarray], nbr: np.ndarray, params: Params, colmax: np.ndarray, out: np.ndarray
) -> np.ndarray:
    """Query expansion, inverted index over gallery rows, Jaccard distance and the blend, into ``out``."""
    k = _kernels()
    num_q = out.shape[0]
    indptr, indices, data = _query_expansion(*v, nbr, params.k2)
    col_ptr, rows, vals = k.gallery_inverted_index(indptr, indices, data, num_q, len(nbr))
    w_jaccard, w_dist = lambda_weights(params.lambda_value)
    k.jaccard_blend(indptr, indices, data, col_ptr, rows, vals, colmax, out, w_jaccard, w_dist)
    return out


# --------------------------------------------------------------------------------------------------
# Public functions
# --------------------------------------------------------------------------------------------------


def re_ranking(
    q_g_dist: Any,
    q_q_dist: Any,
    g_g_dist: Any,
    k1: int = 20,
    k2: int = 6,
    lambda_value: float = 0.3,
) -> np.ndarray:
    """k-reciprocal re-ranking of a query x gallery distance matrix (Zhong et al., CVPR 2017).

    The classic interface and numerics (``torchreid/utils/rerank.py``), computed sparsely: the result
    equals the classic dense NumPy formulation to float32 rounding (about 1e-6; ``exp`` and sums may
    differ in the last bit) whenever the classic's sort is stable on the ties that matter.

    With D = [[q_q, q_g], [q_g^T, g_g]] (N x N, N = P + G):

    * D~[i, j] = float32(D[j, i]^2) / max_k float32(D[k, i]^2): the input is **squared**, then
      normalised by each **column's** maximum and transposed (row i of D~ is column i of D).
    * N(i, k): the first k items of row i of D~ in ascending order, equal values by ascending index.
    * R(i) = {f in N(i, k1 + 1) : i in N(f, k1 + 1)} (k-reciprocal set); h = int(np.around(k1 / 2))
      (half to even); for c in R(i), R_h(c) = {f in N(c, h + 1) : c in N(f, h + 1)} is added when
      |R_h(c) & R(i)| > 2/3 |R_h(c)| (strict); R*(i) = the union.
    * V[i, j] = exp(-D~[i, j]) / sum_{j' in R*(i)} exp(-D~[i, j']) for j in R*(i), else 0.
    * Local query expansion (skipped when k2 == 1): V[i] <- mean of V[j] over j in N(i, k2).
    * Jaccard distance d_J(p, g) = 1 - s / (2 - s), s = sum_k min(V[p, k], V[g, k]) (float32, columns
      ascending); rows of V sum to 1, so sum_k max = 2 - s.
    * Result: d*(p, g) = (1 - lambda) d_J(p, g) + lambda D~[p, P + g], the **normalised squared** distance.

    Args:
        q_g_dist: (P, G) query x gallery distances; NumPy arrays or torch tensors. float64 input is
            squared in float64 and then rounded to float32 (as the classic); other dtypes become float32.
        q_q_dist: (P, P) query x query distances.
        g_g_dist: (G, G) gallery x gallery distances.
        k1: size of the k-reciprocal neighbourhood (>= 1; N must exceed it).
        k2: size of the local query expansion (1 <= k2 <= k1 + 1).
        lambda_value: weight of the original distance, in [0, 1].

    Returns:
        (P, G) float32 re-ranked distances.

    Raises:
        ValueError: mismatched shapes, invalid k1/k2/lambda_value, NaN or infinite distances, N <= k1,
            or an item whose distances are all zero (the classic would divide 0 by 0).

    Memory: the inputs, the output and O(N (k1 + margin)) lists; time is one pass over the inputs plus
    O(N k1^2) set work. Differences from the classic: equal distances are ordered by index (the classic's
    ``np.argsort`` is an unstable introsort), and the work is sparse: the dense N x N arrays D~, V, V_qe
    and ``initial_rank`` are never built.
    """
    params = validate_params(k1, k2, lambda_value)
    q_g = as_distance_array(q_g_dist, "q_g_dist")
    q_q = as_distance_array(q_q_dist, "q_q_dist")
    g_g = as_distance_array(g_g_dist, "g_g_dist")
    num_q, num_g = check_matrix_shapes(q_g, q_q, g_g)
    check_num_items(num_q + num_g, params.k1)
    # Each matrix keeps its dtype: the classic's concatenation would turn float32 parts of a mixed input
    # into float64, but a float32 number squared in float64 and rounded to float32 is the float32 square.
    q_g, q_q, g_g = (np.ascontiguousarray(a) for a in (q_g, q_q, g_g))

    out = np.empty((num_q, num_g), dtype=np.float32)
    nbr, colmax = _neighbours_from_matrices(q_g, q_q, g_g, params.list_len, out)
    indptr, indices = expanded_neighbourhoods(nbr, params)
    data = _kernels().weights_from_matrix(indptr, indices, q_g, q_q, g_g, colmax)
    return _jaccard_and_blend((indptr, indices, data), nbr, params, colmax, out)


def re_ranking_features(
    qf: Any,
    gf: Any,
    k1: int = 20,
    k2: int = 6,
    lambda_value: float = 0.3,
    metric: str = "euclidean",
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    torchreid_compat: bool = False,
    device: torch.device | str | None = None,
) -> np.ndarray:
    """k-reciprocal re-ranking from features, never holding the N x N distance matrix.

    Same algorithm and output as :func:`re_ranking` (see there for the formulas) applied to the dense
    distances of the features, computed tile by tile: the N x N matrix is covered by tiles of
    ``chunk_size`` x ``chunk_size`` of its upper block triangle (each float32 matmul serves both (i, j)
    and (j, i)), streamed into per-item top-(k1 + 1) lists and per-item maxima (the classic's column
    maxima); the weights V recompute the few distances they need from the features; the query x gallery
    distances of the final blend are kept from the tiles in the (P, G) output buffer.

    The base distance s (what the classic calls the squared input) is:

    * ``metric="euclidean"``: s = |q - g|^2, the squared Euclidean distance of ``pairwise_distance``.
      This is the classic fed plain Euclidean distances, as in the paper's code.
    * ``metric="cosine"``: s = 1 - cos on L2-normalised features (= |q^ - g^|^2 / 2, so it re-ranks
      exactly like "euclidean" on normalised features; the factor cancels in the normalisation).
    * ``torchreid_compat=True``: s = d^2 with d the ``pairwise_distance`` value itself, i.e. the classic
      fed squared Euclidean (|q - g|^4), as torchreid's engine does, or fed 1 - cos.

    Result equals ``re_ranking(sqrt(d_qg), sqrt(d_qq), sqrt(d_gg))`` (``d`` from ``pairwise_distance``;
    with ``torchreid_compat`` ``re_ranking(d_qg, d_qq, d_gg)``) to float32 rounding: the float32
    matmuls of tiles and of ``pairwise_distance`` may round differently, which can swap neighbours whose
    distances agree to ~1e-7. Neighbour lists are ordered by the exact s, equal values by index (the
    classic orders by the rounded quotient s / max, which can merge values one float32 step apart).

    Args:
        qf, gf: (P, D) and (G, D) features (NumPy or torch; any float dtype, used as float32).
        k1, k2, lambda_value: as in :func:`re_ranking`.
        metric: "euclidean" or "cosine".
        chunk_size: tile edge (rows and columns of one float32 block, chunk_size^2 * 4 bytes).
        torchreid_compat: square the ``pairwise_distance`` values (see above).
        device: None or "cpu" for this NumPy/Numba path; any other torch device runs
            :func:`reidkit.evaluation.rerank.re_ranking_torch` there and returns its result as NumPy.

    Returns:
        (P, G) float32 re-ranked distances.

    Peak memory: the features, the (P, G) output, one tile and O(N k1) lists; at Market-1501 scale
    (N = 19,281) well under 1 GB beyond the interpreter.
    """
    if device is not None and torch.device(device).type != "cpu":
        from reidkit.evaluation.rerank.torch_path import re_ranking_torch

        return (
            re_ranking_torch(qf, gf, k1, k2, lambda_value, metric, chunk_size, torchreid_compat, device)
            .cpu()
            .numpy()
        )
    params = validate_params(k1, k2, lambda_value)
    tile = check_chunk_size(chunk_size)
    with full_float32_matmul():
        feats = prepare_features(qf, gf, metric, torchreid_compat, "cpu")
        check_num_items(feats.num_items, params.k1)
        num_q = feats.num_query
        out = np.empty((num_q, feats.num_items - num_q), dtype=np.float32)
        nbr, colmax = _neighbours_from_features(feats, params.list_len, tile, out)
    indptr, indices = expanded_neighbourhoods(nbr, params)
    x = feats.x.numpy()
    data = _kernels().weights_from_features(indptr, indices, x, feats.norms.numpy(), colmax, feats.mode, feats.square)
    return _jaccard_and_blend((indptr, indices, data), nbr, params, colmax, out)
