"""Evaluation: rank metrics (Numba kernels), distances, feature extraction, chunked evaluation.

* :func:`evaluate_rank` -- CMC / mAP / mINP of a distance matrix (Market-1501 or CUHK03 protocol);
* :func:`evaluate_features` -- the same from features, in blocks of query rows (galleries of any size);
* :class:`RankAccumulator` -- the same from any distance computed block by block;
* :func:`pairwise_distance` / :func:`distance_chunks` -- squared Euclidean or cosine distances in torch;
* :func:`extract_features` -- a model's features over a test loader (flip TTA, L2 normalisation);
* :func:`re_ranking` / :func:`re_ranking_features` / :func:`re_ranking_torch` -- sparse k-reciprocal
  re-ranking (Zhong et al., CVPR 2017) from distance matrices, from features, or in torch on any device.

The Numba kernels compile on first use (cached on disk, see :mod:`reidkit.evaluation.kernels`).
"""
from reidkit.evaluation.chunked import evaluate_features
from reidkit.evaluation.distances import distance_chunks, pairwise_distance
from reidkit.evaluation.features import Features, extract_features
from reidkit.evaluation.rank import RankAccumulator, RankResult, evaluate_rank
from reidkit.evaluation.rerank import re_ranking, re_ranking_features, re_ranking_torch

__all__ = [
    "Features",
    "RankAccumulator",
    "RankResult",
    "distance_chunks",
    "evaluate_features",
    "evaluate_rank",
    "extract_features",
    "pairwise_distance",
    "re_ranking",
    "re_ranking_features",
    "re_ranking_torch",
]
