"""Evaluation: rank metrics (and, later, distances, features and re-ranking)."""
from reidkit.evaluation.distances import pairwise_distance
from reidkit.evaluation.rank import RankResult, evaluate_rank

__all__ = ["RankResult", "evaluate_rank", "pairwise_distance"]
