"""The torch path of the re-ranking: :func:`re_ranking_torch`, the same algorithm on any torch device.

Everything is tensor code (no NumPy, no Numba, no host loops over items), so it runs on CUDA as on the
CPU; the CPU run is what the tests compare with the NumPy/Numba path. Ragged data are padded:

* neighbour lists: (N, k1 + 1) indices kept as int64 keys ``(bits(s) << 32) | j`` (float32 bit
  patterns of non-negative numbers sort like the numbers, so the keys order by (s, index) exactly,
  ties included, on every device), merged tile by tile with ``topk``;
* R*(i), V and V_qe: (N, width) index/value tensors, unused slots hold the index N and the value 0;
* Jaccard distance: per block of queries, every (query, support column k, gallery row with
  V[g, k] != 0) triple is gathered through a CSC index of the gallery rows of V_qe and summed with
  ``index_put_(accumulate=True)``.
"""
from __future__ import annotations

from typing import Any

import torch

from reidkit.evaluation.rerank._common import (
    DEFAULT_CHUNK_SIZE,
    Features,
    Params,
    check_chunk_size,
    check_column_maxima,
    check_num_items,
    feature_tiles,
    full_float32_matmul,
    lambda_weights,
    prepare_features,
    tile_values,
    validate_params,
)

_KEY_MAX = torch.iinfo(torch.int64).max
_LOW32 = 0xFFFFFFFF
#: Bound on the elements of the temporaries of one row block (keeps memory near 0.5 GB at most).
_MAX_ELEMS = 1 << 25


def _row_blocks(num_rows: int, per_row: int) -> list[tuple[int, int]]:
    """Consecutive row ranges with about ``_MAX_ELEMS`` temporary elements each."""
    step = max(1, _MAX_ELEMS // max(1, per_row))
    return [(a, min(num_rows, a + step)) for a in range(0, num_rows, step)]


# --------------------------------------------------------------------------------------------------
# Neighbour lists
# --------------------------------------------------------------------------------------------------


def _keys(s: torch.Tensor, first_index: int) -> torch.Tensor:
    """int64 keys (bits(s) << 32) | (first_index + column) of a non-negative float32 block."""
    idx = torch.arange(first_index, first_index + s.shape[1], device=s.device, dtype=torch.int64)
    return (s.contiguous().view(torch.int32).to(torch.int64) << 32) | idx[None, :]


def _best_keys(s: torch.Tensor, first_index: int, size: int) -> torch.Tensor:
    """Keys of the ``size`` smallest (s, index) per row of a block (exact, ties included).

    A float ``topk`` of size + 1 finds them; only rows whose size-th and (size + 1)-th values tie, where
    ``topk`` may pick any of the tied columns, are redone on the int64 keys of the whole row.
    """
    k = min(size, s.shape[1])
    if k == s.shape[1]:
        return _keys(s, first_index)
    vals, idx = s.topk(k + 1, dim=1, largest=False, sorted=True)
    keys = (vals[:, :k].contiguous().view(torch.int32).to(torch.int64) << 32) | (idx[:, :k] + first_index)
    tied = torch.nonzero(vals[:, k] == vals[:, k - 1])[:, 0]
    if len(tied):
        keys[tied] = _keys(s[tied], first_index).topk(k, dim=1, largest=False, sorted=False).values
    return keys


def _merge(state: torch.Tensor, s: torch.Tensor, first_index: int) -> torch.Tensor:
    """The ``state.shape[1]`` smallest keys of ``state`` and of the block ``s`` per row, ascending."""
    size = state.shape[1]
    best = _best_keys(s, first_index, size)
    return torch.cat([state, best], dim=1).topk(size, dim=1, largest=False, sorted=True).values


def _neighbour_lists(feats: Features, size: int, tile: int, out: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """N(i, size) ordered by (s, index) for all items, and the per-item maxima of s; fills ``out`` with s(p, g)."""
    num_items, num_q = feats.num_items, feats.num_query
    device = feats.x.device
    state = torch.full((num_items, size), _KEY_MAX, dtype=torch.int64, device=device)
    colmax = torch.zeros(num_items, dtype=torch.float32, device=device)
    for r0, c0, block in feature_tiles(feats, tile):
        r1, c1 = r0 + block.shape[0], c0 + block.shape[1]
        s = tile_values(block, feats.norms[r0:r1], feats.norms[c0:c1], feats.mode, feats.square)
        state[r0:r1] = _merge(state[r0:r1], s, c0)
        colmax[r0:r1] = torch.maximum(colmax[r0:r1], s.max(dim=1).values)
        if c0 != r0:
            state[c0:c1] = _merge(state[c0:c1], s.T, r0)
            colmax[c0:c1] = torch.maximum(colmax[c0:c1], s.max(dim=0).values)
        if r0 < num_q and c1 > num_q:
            q_hi, g_lo = min(r1, num_q), max(c0, num_q)
            out[r0:q_hi, g_lo - num_q : c1 - num_q] = s[: q_hi - r0, g_lo - c0 :]
    if not bool(torch.isfinite(colmax).all()):
        raise ValueError("feature distances overflow float32 (features too large)")
    check_column_maxima(colmax)
    return state & _LOW32, colmax


# --------------------------------------------------------------------------------------------------
# k-reciprocal sets
# --------------------------------------------------------------------------------------------------


def _reciprocal_mask(nbr: torch.Tensor, k: int) -> torch.Tensor:
    """mask[i, a] = (i in N(nbr[i, a], k)) for a < k: R(i, k) = nbr[i, :k][mask[i]]."""
    n = nbr.shape[0]
    mask = torch.empty((n, k), dtype=torch.bool, device=nbr.device)
    for a, b in _row_blocks(n, k * k):
        rows = torch.arange(a, b, device=nbr.device)
        back = nbr[nbr[a:b, :k]][:, :, :k]  # (rows, k, k)
        mask[a:b] = (back == rows[:, None, None]).any(dim=2)
    return mask


def _sorted_unique(cand: torch.Tensor, sentinel: int) -> torch.Tensor:
    """Each row sorted ascending with duplicates replaced by ``sentinel`` (moved to the end)."""
    srt = cand.sort(dim=1).values
    dup = torch.zeros_like(srt, dtype=torch.bool)
    dup[:, 1:] = srt[:, 1:] == srt[:, :-1]
    return srt.masked_fill(dup, sentinel).sort(dim=1).values


def _trim(idx: torch.Tensor, sentinel: int, *others: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """Drop the trailing columns that hold only ``sentinel`` (valid entries come first in every row)."""
    width = max(1, int((idx < sentinel).sum(dim=1).max()))
    return (idx[:, :width].contiguous(), *(o[:, :width].contiguous() for o in others))


def expanded_neighbourhoods(nbr: torch.Tensor, params: Params) -> torch.Tensor:
    """R*(i) as an (N, width) index tensor, sorted per row, padded with N."""
    n = nbr.shape[0]
    size, half = params.list_len, params.half + 1
    rec = _reciprocal_mask(nbr, size)
    rec_half = _reciprocal_mask(nbr, half)
    width = size * (half + 1)
    out = torch.empty((n, width), dtype=torch.int64, device=nbr.device)
    for a, b in _row_blocks(n, size * half * size):
        lists = nbr[a:b, :size]  # candidates c = N(i, k1 + 1)[a]
        members = torch.where(rec[a:b], lists, -1)  # R(i), -1 where not reciprocal
        cand_half = nbr[lists][:, :, :half]  # N(c, h + 1): (rows, size, half)
        cand_mask = rec_half[lists]  # which of them are in R(c, h + 1)
        shared = ((cand_half[..., None] == members[:, None, None, :]).any(dim=3) & cand_mask).sum(dim=2)
        # classic: len(intersect) > 2/3 * len(R(c, h + 1)) in float64, the same as 3 * shared > 2 * len
        accept = rec[a:b] & (3 * shared > 2 * cand_mask.sum(dim=2))
        extra = torch.where(accept[:, :, None] & cand_mask, cand_half, n).flatten(1)
        out[a:b] = _sorted_unique(torch.cat([torch.where(rec[a:b], lists, n), extra], dim=1), n)
    return _trim(out, n)[0]


# --------------------------------------------------------------------------------------------------
# Weights, query expansion, Jaccard distance
# --------------------------------------------------------------------------------------------------


def _weights(feats: Features, sets: torch.Tensor, colmax: torch.Tensor) -> torch.Tensor:
    """V[i, sets[i]] = exp(-D~[i, j]) / sum over R*(i), D~[i, j] = s(i, j) / colmax[i]; 0 in unused slots."""
    n, width = sets.shape
    valid = sets < n
    vals = torch.zeros(sets.shape, dtype=torch.float32, device=sets.device)
    for a, b in _row_blocks(n, width * feats.x.shape[1]):
        j = sets[a:b].clamp(max=n - 1)
        dot = torch.bmm(feats.x[j], feats.x[a:b, :, None])[:, :, 0]
        if feats.mode == 1:
            base = ((feats.norms[a:b, None] + feats.norms[j]) - 2.0 * dot).clamp_min_(0.0)
        else:
            base = 1.0 - dot
            if not feats.square:
                base = base.clamp_min_(0.0)
        s = base * base if feats.square else base
        w = torch.exp(-(s / colmax[a:b, None])) * valid[a:b]
        vals[a:b] = w / w.sum(dim=1, keepdim=True).clamp_min(torch.finfo(torch.float32).tiny)
    return vals


def _query_expansion(
    sets: torch.Tensor, vals: torch.Tensor, nbr: torch.Tensor, k2: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """V_qe[i] = mean of V[j] over j in N(i, k2), as padded (index, value); V itself when k2 == 1."""
    if k2 == 1:
        return sets, vals
    n, width = sets.shape
    out_idx = torch.full((n, k2 * width), n, dtype=torch.int64, device=sets.device)
    out_val = torch.zeros((n, k2 * width), dtype=torch.float32, device=sets.device)
    for a, b in _row_blocks(n, 4 * k2 * width):
        rows = nbr[a:b, :k2]
        idx = sets[rows].flatten(1)  # neighbour-major, as np.mean(V[rows], axis=0) adds them
        val = vals[rows].flatten(1)
        sidx, order = idx.sort(dim=1, stable=True)
        sval = val.gather(1, order)
        new = torch.ones_like(sidx, dtype=torch.bool)
        new[:, 1:] = sidx[:, 1:] != sidx[:, :-1]
        group = new.cumsum(dim=1) - 1
        out_val[a:b].scatter_add_(1, group, sval)
        out_idx[a:b].scatter_(1, group, sidx)
    out_val /= torch.tensor(float(k2), dtype=torch.float32, device=sets.device)
    out_val.masked_fill_(out_idx >= n, 0.0)
    idx, val = _trim(out_idx, n, out_val)
    return idx, val


def _gallery_columns(idx: torch.Tensor, val: torch.Tensor, num_q: int) -> tuple[torch.Tensor, ...]:
    """CSC of the gallery rows of V_qe: col_ptr (N + 1), gallery row (0-based) and value per entry."""
    n = idx.shape[0]
    g_idx, g_val = idx[num_q:], val[num_q:]
    valid = g_idx < n
    rows = torch.arange(n - num_q, device=idx.device)[:, None].expand_as(g_idx)[valid]
    cols = g_idx[valid]
    vals = g_val[valid]
    order = torch.argsort(cols * (n - num_q) + rows)
    col_ptr = torch.zeros(n + 1, dtype=torch.int64, device=idx.device)
    col_ptr[1:] = torch.bincount(cols, minlength=n).cumsum(dim=0)
    return col_ptr, rows[order], vals[order]


def _min_sums(
    q_idx: torch.Tensor, q_val: torch.Tensor, csc: tuple[torch.Tensor, ...], num_g: int
) -> torch.Tensor:
    """s[p, g] = sum_k min(V[p, k], V[g, k]) for a block of query rows (padded index/value)."""
    col_ptr, rows, vals = csc
    num_rows, width = q_idx.shape
    n = col_ptr.shape[0] - 1
    safe = q_idx.clamp(max=n - 1)
    starts = col_ptr[safe]
    lens = torch.where(q_idx < n, col_ptr[safe + 1] - starts, 0).flatten()
    if num_rows > 1 and int(lens.sum()) > _MAX_ELEMS:  # too many triples for one block: split it
        half = num_rows // 2
        return torch.cat(
            [
                _min_sums(q_idx[:half], q_val[:half], csc, num_g),
                _min_sums(q_idx[half:], q_val[half:], csc, num_g),
            ]
        )
    entry = torch.repeat_interleave(torch.arange(lens.shape[0], device=q_idx.device), lens)
    offset = torch.arange(entry.shape[0], device=q_idx.device) - (lens.cumsum(dim=0) - lens)[entry]
    pos = starts.flatten()[entry] + offset
    mins = torch.minimum(q_val.flatten()[entry], vals[pos])
    acc = torch.zeros(num_rows * num_g, dtype=torch.float32, device=q_idx.device)
    acc.index_put_((torch.div(entry, width, rounding_mode="floor") * num_g + rows[pos],), mins, accumulate=True)
    return acc.view(num_rows, num_g)


def re_ranking_torch(
    qf: Any,
    gf: Any,
    k1: int = 20,
    k2: int = 6,
    lambda_value: float = 0.3,
    metric: str = "euclidean",
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    torchreid_compat: bool = False,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """k-reciprocal re-ranking from features in torch, on ``device`` (default: the device of ``qf``).

    The algorithm, parameters and result of :func:`reidkit.evaluation.rerank.re_ranking_features`
    (see it and :func:`reidkit.evaluation.rerank.re_ranking` for the formulas: k-reciprocal sets
    R(i, k1 + 1), expansion to R*(i) with the 2/3 rule over R(c, round(k1 / 2) + 1), Gaussian-kernel
    weights V over R*(i), local query expansion over N(i, k2), Jaccard distance over V and
    d* = (1 - lambda) d_J + lambda D~), written with padded tensors so that it runs on CUDA as on the CPU.
    Tiles of ``chunk_size`` x ``chunk_size`` of the upper block triangle give the same float32
    distances, neighbour lists and maxima as the Numba path; the weights recompute their distances
    with float32 dot products (the Numba path accumulates them in float64), so results agree to ~1e-6 on the
    CPU. On CUDA the distance GEMMs round differently (TF32 is off here), which can swap near-tied neighbours at the
    edge of a k-reciprocal set: measured on an H100 at Market-1501 scale, max |diff| 4.9e-3 against the Numba path
    with identical top-1 (benchmarks/RESULTS.md).

    On a CPU prefer :func:`re_ranking_features` (Numba): this path's per-tile ``topk`` merges make it
    several times slower there (~15 s at Market-1501 scale on 2 busy cores against ~1.6 s).

    Returns:
        (P, G) float32 tensor on ``device`` (an inference-mode tensor: no autograd history).

    Memory on the device: the features, the (P, G) result, one tile (chunk_size^2 float32 and int64
    keys), O(N k1^2) padded set tensors and row blocks of at most ~2^25 elements per temporary.
    """
    params = validate_params(k1, k2, lambda_value)
    tile = check_chunk_size(chunk_size)
    with full_float32_matmul():
        feats = prepare_features(qf, gf, metric, torchreid_compat, device)
        check_num_items(feats.num_items, params.k1)
        num_q = feats.num_query
        num_g = feats.num_items - num_q
        out = torch.empty((num_q, num_g), dtype=torch.float32, device=feats.x.device)
        nbr, colmax = _neighbour_lists(feats, params.list_len, tile, out)
        sets = expanded_neighbourhoods(nbr, params)
        vals = _weights(feats, sets, colmax)
        idx, val = _query_expansion(sets, vals, nbr, params.k2)
        csc = _gallery_columns(idx, val, num_q)
        w_jaccard, w_dist = (
            torch.tensor(float(w), dtype=torch.float32, device=out.device)
            for w in lambda_weights(params.lambda_value)
        )
        for a, b in _row_blocks(num_q, num_g):
            acc = _min_sums(idx[a:b], val[a:b], csc, num_g)
            jaccard = 1.0 - acc / (2.0 - acc)
            out[a:b] = jaccard * w_jaccard + (out[a:b] / colmax[a:b, None]) * w_dist
    return out
