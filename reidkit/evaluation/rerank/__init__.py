"""k-reciprocal re-ranking (Zhong, Zheng, Cao, Li, "Re-ranking Person Re-identification with k-reciprocal
Encoding", CVPR 2017, arXiv 1701.08398), exact and sparse.

Three entry points with one algorithm and one result:

* :func:`re_ranking` ``(q_g_dist, q_q_dist, g_g_dist, k1=20, k2=6, lambda_value=0.3)``: the classic
  distance-matrix interface and numerics (``torchreid/utils/rerank.py``), NumPy + Numba;
* :func:`re_ranking_features` ``(qf, gf, ..., metric, chunk_size, torchreid_compat, device)``: the same from
  features without ever holding the N x N matrix (Market-1501 scale: ~1.6 s, ~0.3 GB above the
  interpreter on 2 CPU cores, against 26-37 s and ~9.5 GB for the dense classic);
* :func:`re_ranking_torch`: the features path in torch on any device (CUDA included).

The algorithm (N = P + G items, queries first)
----------------------------------------------
1. D = [[q_q, q_g], [q_g^T, g_g]]; D~[i, j] = float32(D[j, i]^2) / max_k float32(D[k, i]^2).
2. N(i, k): the k items with the smallest D~[i, .], in ascending order (normally i itself first).
3. k-reciprocal set R(i) = {f in N(i, k1 + 1) : i in N(f, k1 + 1)}.
4. Expansion: with h = int(np.around(k1 / 2)), for each c in R(i) let R_h(c) = {f in N(c, h + 1) :
   c in N(f, h + 1)}; if |R_h(c) & R(i)| > 2/3 |R_h(c)|, add R_h(c). R*(i) = the union.
5. Gaussian-kernel weights: V[i, j] = exp(-D~[i, j]) / sum_{j' in R*(i)} exp(-D~[i, j']) on R*(i), else 0.
6. Local query expansion (only when k2 > 1): V[i] <- (1 / k2) sum_{j in N(i, k2)} V[j].
7. Jaccard distance of query p and gallery item g: s = sum_k min(V[p, k], V[g, k]),
   d_J = 1 - s / (2 - s) (rows of V sum to 1, so sum_k max(...) = 2 - s).
8. d*(p, g) = (1 - lambda) d_J(p, g) + lambda D~[p, P + g].

Quirks of the classic kept on purpose
-------------------------------------
* The input is **squared** before anything else (torchreid feeds squared Euclidean distances, so its
  base is |x - y|^4; :func:`re_ranking_features` feeds Euclidean, base |x - y|^2, unless
  ``torchreid_compat=True``).
* Normalisation by each **column's** maximum over all N rows, then a transpose: row i of D~ is column i
  of D. For symmetric inputs this is a per-row maximum; for asymmetric ones it is not.
* The lambda term is the normalised squared distance D~, not the input distance.
* h rounds half to even (k1 = 20 -> 10, 21 -> 10, 23 -> 12, 25 -> 12); the 2/3 test is strict and computed
  in float64 as ``len(intersection) > 2. / 3 * len(R_h(c))``.
* R_h(c) may contain items outside N(i, k1 + 1): their D~[i, j] is read (or recomputed) on demand.
* Query expansion averages the rows of N(i, k2), which normally include i itself; duplicates (distance
  0 to i, lower index) can push i out of its own list. k2 = 1 skips the expansion altogether.
* Everything is float32 (no float16 as in some forks): float32 sums in the classic's order for the
  query expansion and the Jaccard sums; ``exp`` and the weight normalisation may differ by one float32
  step from NumPy's, so results match the classic to ~1e-6, not bit for bit.

Ties
----
Equal values of D~ are ordered by ascending item index, as ``np.argsort(kind="stable")``; the classic uses
NumPy's default introsort, whose order of ties depends on the NumPy version and CPU. The two agree
whenever no tie straddles the boundary of N(i, k1 + 1), N(i, h + 1) or N(i, k2). The matrix path
sorts by the classic's rounded D~ exactly; the features paths order by the exact squared distance s
(equal values by index), since there the distances themselves are defined only to float32 rounding.

Design (evaluation.md §3.5)
---------------------------
One streaming pass over blocks of D (the input matrices in place, or float32 feature tiles of the upper
block triangle) keeps, per item, the smallest keys (s, j) and the running column maximum. Sets are built
from the lists only (N(., h + 1) and N(., k2) are prefixes; hence k2 <= k1 + 1), V and its query
expansion are CSR rows, a CSC index over the gallery rows of V serves the Jaccard sums of the query rows
only, and the blend is written into the (P, G) output that already holds the query x gallery s.
"""
from reidkit.evaluation.rerank.cpu import re_ranking, re_ranking_features
from reidkit.evaluation.rerank.torch_path import re_ranking_torch

__all__ = ["re_ranking", "re_ranking_features", "re_ranking_torch"]
