"""Numba kernels of the sparse k-reciprocal re-ranking.

Imported by :mod:`reidkit.evaluation.rerank.cpu` on first use only (Numba costs ~0.2 s to import), so
``import reidkit`` stays fast. Every kernel is ``njit(cache=True)``: the first call in a fresh environment
compiles it (a few seconds in all) and stores the machine code in ``__pycache__`` next to this file
(``NUMBA_CACHE_DIR`` chooses another place); later processes load it in milliseconds.

Notation (see the package docstring): N items, row ``t`` of the normalised distance D~ is built from the
squared base distances ``s[t, j]``; neighbour lists are kept as the smallest ``L`` keys ``(s, j)``
(distance first, then index), found in one streaming pass over blocks of the N x N matrix.
"""
from __future__ import annotations

import numpy as np
from numba import njit, prange

_INF32 = np.float32(np.inf)
_TWO32 = np.float32(2.0)
_ONE32 = np.float32(1.0)


# --------------------------------------------------------------------------------------------------
# Streaming top-L selection and column maxima
# --------------------------------------------------------------------------------------------------


@njit(cache=True, nogil=True, inline="always")
def _value(x, nr, nc, mode, square):  # type: ignore[no-untyped-def]
    """Squared base distance ``s`` of one block entry ``x`` (float32).

    * mode 0: ``x`` is a float32 distance fed to the classic: s = x * x in float32 (``np.power(d, 2)``);
    * mode 3: ``x`` is s already (float64 input, squared in float64 and rounded by the caller);
    * mode 1: ``x`` is a dot product: base = (nr + nc) - 2 x, clamped at 0;
    * mode 2: ``x`` is a cosine similarity: base = 1 - x, clamped at 0 unless ``square``.

    Modes 1 and 2 return base * base when ``square`` (torchreid feeds squared distances), else base
    (+0.0, so that -0.0 never appears).
    """
    if mode == 0:
        return np.float32(x * x)
    if mode == 3:
        return np.float32(x)
    if mode == 1:
        base = np.float32((nr + nc) - _TWO32 * x)
        if base < 0:
            base = np.float32(0.0)
    else:
        base = np.float32(_ONE32 - x)
        if not square and base < 0:
            base = np.float32(0.0)
    if square:
        return base * base
    return base + np.float32(0.0)


@njit(cache=True, nogil=True, inline="always")
def _push(keys_s, keys_i, thr_s, thr_i, cnt, t, s, j):  # type: ignore[no-untyped-def]
    """Insert the key (s, j) into row ``t``'s sorted list of the smallest keys (caller checked it fits)."""
    size = keys_s.shape[1]
    c = cnt[t]
    if c < size:
        pos = c
        cnt[t] = c + 1
    else:
        pos = size - 1  # the current largest key drops out
    while pos > 0 and (keys_s[t, pos - 1] > s or (keys_s[t, pos - 1] == s and keys_i[t, pos - 1] > j)):
        keys_s[t, pos] = keys_s[t, pos - 1]
        keys_i[t, pos] = keys_i[t, pos - 1]
        pos -= 1
    keys_s[t, pos] = s
    keys_i[t, pos] = j
    if cnt[t] == size:
        thr_s[t] = keys_s[t, size - 1]
        thr_i[t] = keys_i[t, size - 1]


@njit(cache=True, nogil=True, inline="always")
def _row_values(block, a, nra, nc, mode, square, buf):  # type: ignore[no-untyped-def]
    """buf[b] = s of block[a, b] (a branch-free, vectorisable loop); returns the count of non-finite s."""
    nbad = 0
    for b in range(block.shape[1]):
        s = _value(block[a, b], nra, nc[b], mode, square)
        buf[b] = s
        nbad += 0 if s < _INF32 else 1
    return nbad


@njit(cache=True, nogil=True, inline="always")
def _max_of(buf, n, init):  # type: ignore[no-untyped-def]
    """max(init, buf[:n]) with eight independent running maxima (no loop-carried compare chain)."""
    m0 = m1 = m2 = m3 = m4 = m5 = m6 = m7 = init
    b = 0
    while b + 8 <= n:
        m0 = max(m0, buf[b])
        m1 = max(m1, buf[b + 1])
        m2 = max(m2, buf[b + 2])
        m3 = max(m3, buf[b + 3])
        m4 = max(m4, buf[b + 4])
        m5 = max(m5, buf[b + 5])
        m6 = max(m6, buf[b + 6])
        m7 = max(m7, buf[b + 7])
        b += 8
    while b < n:
        m0 = max(m0, buf[b])
        b += 1
    return max(max(max(m0, m1), max(m2, m3)), max(max(m4, m5), max(m6, m7)))


@njit(cache=True, parallel=True)
def stream_rows(  # type: ignore[no-untyped-def]
    block, nr, nc, r0, c0, mode, square, keys_s, keys_i, thr_s, thr_i, cnt, colmax, out, num_q
):
    """Rows of ``block`` serve items ``r0 + a`` with neighbours ``c0 + b``.

    Updates the running maxima and top-L keys of those items; a query item's values towards gallery
    items (``c0 + b >= num_q``) are also written to ``out[item, c0 + b - num_q]``. Returns the number of
    non-finite values met.
    """
    rows, cols = block.shape
    bad = 0
    for a in prange(rows):
        t = r0 + a
        buf = np.empty(cols, dtype=np.float32)
        nbad = _row_values(block, a, nr[a], nc, mode, square, buf)
        colmax[t] = _max_of(buf, cols, colmax[t])
        ts = thr_s[t]
        ti = thr_i[t]
        for b in range(cols):
            s = buf[b]
            if s <= ts:
                j = c0 + b
                if s < ts or j < ti:
                    _push(keys_s, keys_i, thr_s, thr_i, cnt, t, s, j)
                    ts = thr_s[t]
                    ti = thr_i[t]
        if t < num_q and c0 + cols > num_q:
            for b in range(max(num_q - c0, 0), cols):
                out[t, c0 + b - num_q] = buf[b]
        bad += nbad
    return bad


@njit(cache=True, parallel=True)
def stream_cols(  # type: ignore[no-untyped-def]
    block, nr, nc, r0, c0, mode, square, keys_s, keys_i, thr_s, thr_i, cnt, colmax, groups
):
    """Columns of ``block`` serve items ``c0 + b`` with neighbours ``r0 + a`` (the transposed use).

    The columns are split into ``groups`` contiguous ranges, one per parallel task, each streaming all
    rows of the block over its own columns. Returns the number of non-finite values met.
    """
    rows, cols = block.shape
    width = (cols + groups - 1) // groups
    bad = 0
    for g in prange(groups):
        b_lo = min(cols, g * width)
        n = min(cols, b_lo + width) - b_lo
        t0 = c0 + b_lo
        buf = np.empty(n, dtype=np.float32)
        nbad = 0
        for a in range(rows):
            j = r0 + a
            nra = nr[a]
            for b in range(n):
                s = _value(block[a, b_lo + b], nra, nc[b_lo + b], mode, square)
                buf[b] = s
                nbad += 0 if s < _INF32 else 1
                cm = colmax[t0 + b]
                colmax[t0 + b] = s if s > cm else cm
            for b in range(n):
                s = buf[b]
                t = t0 + b
                if s <= thr_s[t]:
                    if s < thr_s[t] or j < thr_i[t]:
                        _push(keys_s, keys_i, thr_s, thr_i, cnt, t, s, j)
        bad += nbad
    return bad


@njit(cache=True, parallel=True)
def finalize_exact(keys_s, keys_i, cnt, colmax, k, num_items, nbr, unsafe):  # type: ignore[no-untyped-def]
    """Neighbour lists ordered as the classic's sort of D~[t] = float32(s / colmax[t]), ties by index.

    The candidates (the smallest L keys (s, j)) are re-sorted by (float32(s / m), j): division can merge
    distinct ``s`` into one float32 value, and then the lower index comes first. The first ``k`` form
    ``nbr[t]``. When the largest candidate's D~ equals the k-th smallest, an item outside the candidates
    could tie with it and have a lower index: such rows are flagged in ``unsafe`` for an exact rescan.
    """
    size = keys_s.shape[1]
    for t in prange(keys_s.shape[0]):
        c = cnt[t]
        m = colmax[t]
        q = np.empty(c, dtype=np.float32)
        idx = np.empty(c, dtype=np.int32)
        for u in range(c):
            v = keys_s[t, u] / m
            j = keys_i[t, u]
            pos = u
            while pos > 0 and (q[pos - 1] > v or (q[pos - 1] == v and idx[pos - 1] > j)):
                q[pos] = q[pos - 1]
                idx[pos] = idx[pos - 1]
                pos -= 1
            q[pos] = v
            idx[pos] = j
        for u in range(k):
            nbr[t, u] = idx[u]
        if c == size and num_items > size:
            last = keys_s[t, c - 1] / m
            unsafe[t] = not last > q[k - 1]


# --------------------------------------------------------------------------------------------------
# k-reciprocal sets and their expansion
# --------------------------------------------------------------------------------------------------


@njit(cache=True, parallel=True)
def reciprocal_lists(nbr, k):  # type: ignore[no-untyped-def]
    """R(i, k) = [f in N(i, k) : i in N(f, k)] in list order, padded, with its length per row."""
    n = nbr.shape[0]
    out = np.empty((n, k), dtype=np.int32)
    length = np.zeros(n, dtype=np.int32)
    for i in prange(n):
        c = 0
        for a in range(k):
            f = nbr[i, a]
            for b in range(k):
                if nbr[f, b] == i:
                    out[i, c] = f
                    c += 1
                    break
        length[i] = c
    return out, length


@njit(cache=True, nogil=True, inline="always")
def _insert_unique(buf, n, x):  # type: ignore[no-untyped-def]
    """Insert ``x`` into the sorted distinct values ``buf[:n]``; returns the new length."""
    pos = n
    while pos > 0 and buf[pos - 1] > x:
        pos -= 1
    if pos > 0 and buf[pos - 1] == x:
        return n
    for e in range(n, pos, -1):
        buf[e] = buf[e - 1]
    buf[pos] = x
    return n + 1


@njit(cache=True, parallel=True)
def expanded_sets(rec, rec_len, half, half_len, width):  # type: ignore[no-untyped-def]
    """R*(i): R(i) plus every R(c, h + 1) of c in R(i) that shares more than 2/3 of its items with R(i).

    The test is the classic's float64 ``len(intersection) > 2. / 3 * len(R(c, h + 1))`` (strict). Returns
    the sorted, de-duplicated sets padded to ``width`` and their sizes.
    """
    n = rec.shape[0]
    out = np.empty((n, width), dtype=np.int32)
    size = np.zeros(n, dtype=np.int32)
    for i in prange(n):
        nr = rec_len[i]
        u = 0
        for a in range(nr):
            u = _insert_unique(out[i], u, rec[i, a])
        for a in range(nr):
            cand = rec[i, a]
            nh = half_len[cand]
            shared = 0
            for b in range(nh):
                x = half[cand, b]
                for e in range(nr):
                    if rec[i, e] == x:
                        shared += 1
                        break
            if shared > (2.0 / 3.0) * nh:
                for b in range(nh):
                    u = _insert_unique(out[i], u, half[cand, b])
        size[i] = u
    return out, size


# --------------------------------------------------------------------------------------------------
# Gaussian-kernel weights V over R*(i)
# --------------------------------------------------------------------------------------------------


@njit(cache=True, nogil=True, inline="always")
def _normalise_row(data, lo, hi, total):  # type: ignore[no-untyped-def]
    tot = np.float32(total)
    for u in range(lo, hi):
        data[u] = data[u] / tot


@njit(cache=True, parallel=True)
def weights_from_matrix(indptr, indices, q_g, q_q, g_g, colmax):  # type: ignore[no-untyped-def]
    """V[i, j] = exp(-D~[i, j]) / sum over R*(i), with D~[i, j] = float32(D[j, i]^2) / colmax[i].

    D = [[q_q, q_g], [q_g.T, g_g]] is read in place (its column i is row i of D~).
    """
    num_q = q_q.shape[0]
    n = indptr.shape[0] - 1
    data = np.empty(indices.shape[0], dtype=np.float32)
    for i in prange(n):
        lo = indptr[i]
        hi = indptr[i + 1]
        m = colmax[i]
        total = 0.0
        for u in range(lo, hi):
            j = indices[u]
            if j < num_q:
                x = q_q[j, i] if i < num_q else q_g[j, i - num_q]
            else:
                x = q_g[i, j - num_q] if i < num_q else g_g[j - num_q, i - num_q]
            w = np.exp(-(np.float32(x * x) / m))
            data[u] = w
            total += w
        _normalise_row(data, lo, hi, total)
    return data


@njit(cache=True, parallel=True)
def weights_from_features(indptr, indices, x, norms, colmax, mode, square):  # type: ignore[no-untyped-def]
    """V[i, j] as above with the base distance of items i and j recomputed from their features.

    The dot product is accumulated in float64 and rounded once, so it agrees with the float32 matmul
    of the tiles to within float32 rounding.
    """
    n = indptr.shape[0] - 1
    dim = x.shape[1]
    data = np.empty(indices.shape[0], dtype=np.float32)
    for i in prange(n):
        lo = indptr[i]
        hi = indptr[i + 1]
        m = colmax[i]
        total = 0.0
        for u in range(lo, hi):
            j = indices[u]
            dot = 0.0
            for d in range(dim):
                dot += np.float64(x[i, d]) * np.float64(x[j, d])
            if mode == 1:
                base = np.float32(np.float64(norms[i]) + np.float64(norms[j]) - 2.0 * dot)
                if base < 0:
                    base = np.float32(0.0)
            else:
                base = np.float32(1.0 - dot)
                if not square and base < 0:
                    base = np.float32(0.0)
            s = base * base if square else base
            w = np.exp(-(s / m))
            data[u] = w
            total += w
        _normalise_row(data, lo, hi, total)
    return data


# --------------------------------------------------------------------------------------------------
# Local query expansion, inverted index, Jaccard distance and blend
# --------------------------------------------------------------------------------------------------


@njit(cache=True, nogil=True)
def _merge_rows(indptr, indices, data, rows, out_idx, out_val, start, write):  # type: ignore[no-untyped-def]
    """Merge the CSR rows ``rows`` (each sorted by column) into distinct columns, ascending.

    Equal columns are summed in float32 in the order of ``rows`` (as ``np.mean(V[rows], axis=0)``
    accumulates) and divided by ``len(rows)``; written from ``out_*[start]`` when ``write``. Returns the
    number of distinct columns.
    """
    k = rows.shape[0]
    head = np.empty(k, dtype=np.int64)
    for t in range(k):
        head[t] = indptr[rows[t]]
    count = np.float32(k)
    n = 0
    while True:
        col = -1
        for t in range(k):  # smallest column among the row heads
            if head[t] < indptr[rows[t] + 1] and (col < 0 or indices[head[t]] < col):
                col = indices[head[t]]
        if col < 0:
            return n
        acc = np.float32(0.0)
        for t in range(k):
            if head[t] < indptr[rows[t] + 1] and indices[head[t]] == col:
                acc += data[head[t]]
                head[t] += 1
        if write:
            out_idx[start + n] = col
            out_val[start + n] = acc / count
        n += 1


@njit(cache=True, parallel=True)
def expansion_sizes(indptr, indices, data, nbr, k2):  # type: ignore[no-untyped-def]
    """Number of distinct columns of V_qe[i] = mean of V[j] over j in N(i, k2)."""
    n = nbr.shape[0]
    size = np.zeros(n, dtype=np.int64)
    no_idx = np.empty(0, dtype=np.int32)
    no_val = np.empty(0, dtype=np.float32)
    for i in prange(n):
        size[i] = _merge_rows(indptr, indices, data, nbr[i, :k2], no_idx, no_val, 0, False)
    return size


@njit(cache=True, parallel=True)
def expansion_fill(indptr, indices, data, nbr, k2, out_ptr):  # type: ignore[no-untyped-def]
    """CSR of V_qe (rows sized by :func:`expansion_sizes`)."""
    n = nbr.shape[0]
    out_idx = np.empty(out_ptr[n], dtype=np.int32)
    out_val = np.empty(out_ptr[n], dtype=np.float32)
    for i in prange(n):
        _merge_rows(indptr, indices, data, nbr[i, :k2], out_idx, out_val, out_ptr[i], True)
    return out_idx, out_val


@njit(cache=True)
def gallery_inverted_index(indptr, indices, data, num_q, num_items):  # type: ignore[no-untyped-def]
    """For every column k, the gallery rows g (0-based within the gallery) with V[num_q + g, k] != 0."""
    col_ptr = np.zeros(num_items + 1, dtype=np.int64)
    for r in range(num_q, num_items):
        for u in range(indptr[r], indptr[r + 1]):
            col_ptr[indices[u] + 1] += 1
    for k in range(num_items):
        col_ptr[k + 1] += col_ptr[k]
    rows = np.empty(col_ptr[num_items], dtype=np.int32)
    vals = np.empty(col_ptr[num_items], dtype=np.float32)
    fill = col_ptr[:-1].copy()
    for r in range(num_q, num_items):
        for u in range(indptr[r], indptr[r + 1]):
            k = indices[u]
            rows[fill[k]] = r - num_q
            vals[fill[k]] = data[u]
            fill[k] += 1
    return col_ptr, rows, vals


@njit(cache=True, parallel=True)
def jaccard_blend(  # type: ignore[no-untyped-def]
    indptr, indices, data, col_ptr, rows, vals, colmax, out, w_jaccard, w_dist
):
    """out[p, g] <- w_jaccard * d_J(p, g) + w_dist * out[p, g] / colmax[p], for every query p.

    ``out`` holds the squared base distances s(p, g) on entry. For query p, the sum of minima
    s_min[g] = sum over columns k of V[p] (ascending) of min(V[p, k], V[g, k]) is accumulated in float32
    through the inverted index; d_J = 1 - s_min / (2 - s_min).
    """
    num_q, num_g = out.shape
    for p in prange(num_q):
        acc = np.zeros(num_g, dtype=np.float32)
        for u in range(indptr[p], indptr[p + 1]):
            k = indices[u]
            v = data[u]
            for e in range(col_ptr[k], col_ptr[k + 1]):
                w = vals[e]
                acc[rows[e]] += v if v < w else w
        m = colmax[p]
        for g in range(num_g):
            a = acc[g]
            jac = _ONE32 - a / (_TWO32 - a)
            out[p, g] = jac * w_jaccard + (out[p, g] / m) * w_dist
