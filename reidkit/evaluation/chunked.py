"""Rank evaluation straight from features, one block of query rows at a time (``evaluation.md`` §2.12).

A dense Q x G distance matrix does not fit for large galleries (Market1501-500k: 3,368 x 515,913 float32
is 7 GB, its argsort 14 GB). :func:`evaluate_features` computes ``chunk_size`` rows of distances in torch,
runs the rank kernel on them and keeps only the per-query results, so the largest array is one block.
"""
from __future__ import annotations

from typing import Any

import numpy as np
import torch

from reidkit.evaluation.distances import as_feature_tensor, distance_chunks
from reidkit.evaluation.rank import RankAccumulator, RankResult, _as_1d_int, check_rank_options

#: Default size of one block of distances: 256 MiB of float32.
DEFAULT_BLOCK_BYTES = 256 * 2**20


def auto_chunk_size(num_gallery: int, block_bytes: int = DEFAULT_BLOCK_BYTES) -> int:
    """Query rows per block so that a float32 block of ``num_gallery`` columns takes ``block_bytes``.

    E.g. 4,217 rows for Market-1501 (15,913 gallery images: every query at once), 130 for
    Market1501-500k (515,913).
    """
    return max(1, block_bytes // (4 * max(1, num_gallery)))


def evaluate_features(
    qf: Any,
    gf: Any,
    q_pids: Any,
    g_pids: Any,
    q_camids: Any,
    g_camids: Any,
    metric: str = "euclidean",
    chunk_size: int | None = None,
    max_rank: int = 50,
    ap: str = "standard",
    protocol: str = "market",
    rng: np.random.Generator | None = None,
    device: torch.device | str | None = None,
) -> RankResult:
    """CMC, mAP and mINP of query features ``qf`` (Q, D) against gallery features ``gf`` (G, D).

    Equal to ``evaluate_rank(pairwise_distance(qf, gf, metric, chunk_size), ...)`` -- same protocol
    (Zheng et al., ICCV 2015: same pid and same camera removed; AP = (1/P) sum_i i/k_i; INP = P/k_P,
    Ye et al., TPAMI 2021), same tie rule, same ``RankResult`` -- but the distances are computed in
    blocks of ``chunk_size`` query rows and each block is evaluated and dropped at once, so no array
    larger than ``chunk_size x G`` float32 ever exists. Per-query results are concatenated and the CMC
    merged as integer counts, so the result does not depend on the chunking (the distances themselves
    are bit-identical to ``pairwise_distance`` with the same ``chunk_size``; float32 GEMMs of other block
    shapes may differ in the last bit).

    Args:
        qf, gf: float32 features, torch tensors (any device) or NumPy arrays.
        q_pids, g_pids, q_camids, g_camids: integer labels.
        metric: ``"euclidean"`` (squared) or ``"cosine"`` (1 - cos), as in ``pairwise_distance``.
        chunk_size: query rows per block; default :func:`auto_chunk_size` (256 MiB blocks).
        max_rank, ap, protocol, rng: as in :func:`~reidkit.evaluation.rank.evaluate_rank` (for
            ``protocol="cuhk03"`` the draws happen in ascending query order across blocks, exactly as
            in one dense call).
        device: where the distances are computed (default: the device of ``qf``); blocks are brought to
            the CPU for the kernel.
    """
    check_rank_options(max_rank, protocol, ap, rng)
    q = as_feature_tensor("qf", qf)
    g = as_feature_tensor("gf", gf)
    num_q, num_g = q.shape[0], g.shape[0]
    q_pids = _as_1d_int("q_pids", q_pids, num_q)
    q_camids = _as_1d_int("q_camids", q_camids, num_q)
    acc = RankAccumulator(
        _as_1d_int("g_pids", g_pids, num_g), _as_1d_int("g_camids", g_camids, num_g),
        max_rank=max_rank, protocol=protocol, ap=ap, rng=rng,
    )
    rows = auto_chunk_size(num_g) if chunk_size is None else chunk_size
    for start, block in distance_chunks(q, g, metric, rows, device=device):
        stop = start + block.shape[0]
        acc.add(block, q_pids[start:stop], q_camids[start:stop])
    return acc.result()
