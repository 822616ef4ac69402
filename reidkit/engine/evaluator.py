"""Evaluate a model on a query / gallery split: features, distances (or re-ranking), CMC / mAP / mINP.

:func:`evaluate_model` is the one call behind ``reidkit eval`` (and the trainer's periodic evaluation):

1. features of every query and gallery image (:func:`~reidkit.evaluation.extract_features`: eval mode, restored
   afterwards; optional flip test-time augmentation, the mean of the image's and its mirror's feature taken
   before any normalisation; optional L2 normalisation);
2. :func:`rank_features` (also behind the trainer's validation): without re-ranking,
   :func:`~reidkit.evaluation.evaluate_features` (distances in blocks of query rows, so galleries of any size fit);
   with ``rerank=True``, :func:`~reidkit.evaluation.re_ranking_features` (k-reciprocal re-ranking, Zhong et al.,
   CVPR 2017) then :func:`~reidkit.evaluation.evaluate_rank`;
3. an :class:`EvalReport`: the :class:`~reidkit.evaluation.RankResult`, the settings used and the split sizes, with
   :meth:`EvalReport.to_dict` (JSON-ready fractions) and :meth:`EvalReport.summary` (one line in percent).

Metric: ``"euclidean"`` is the squared Euclidean distance, ``"cosine"`` is ``1 - cos``. For
:class:`~reidkit.models.lightmbn.LightMBN`, whose eval output concatenates seven **separately** L2-normalised
branch features, use ``metric="cosine"`` (the LightMBN paper's and the seed's choice); Euclidean distances of the
concatenation rank the same way only when ``normalize`` is on, and never with ``flip`` averaging in between.
The AP convention is always the standard one (``ap="standard"``: AP = (1/P) sum_i i/k_i over every positive).
"""
from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from reidkit.data.datasets.base import ReIDItem
from reidkit.evaluation import (
    Features,
    RankResult,
    evaluate_features,
    evaluate_rank,
    extract_features,
    pairwise_distance,
    re_ranking_features,
)

__all__ = ["METRICS", "RERANK_DEFAULTS", "EvalReport", "evaluate_model", "query_gallery_distances", "rank_features",
           "rerank_parameters", "resolve_normalize"]

METRICS: tuple[str, ...] = ("euclidean", "cosine")
"""Distances :func:`evaluate_model` accepts."""

RERANK_DEFAULTS: dict[str, float] = {"k1": 20, "k2": 6, "lambda_value": 0.3}
"""k-reciprocal re-ranking parameters of the paper (and of the config's ``eval`` section)."""

#: Ranks reported by :meth:`EvalReport.to_dict` and :meth:`EvalReport.summary`.
REPORT_RANKS: tuple[int, ...] = (1, 5, 10)


@dataclass(frozen=True)
class EvalReport:
    """Result of :func:`evaluate_model`: the rank metrics plus everything needed to say how they were obtained.

    ``result``: the :class:`~reidkit.evaluation.RankResult` (fractions); ``metric`` / ``flip`` / ``normalize`` /
    ``rerank``: the settings used; ``rerank_params``: ``{"k1", "k2", "lambda_value"}`` when ``rerank`` else
    ``None``; ``num_query`` / ``num_gallery``: split sizes; ``feature_dim``: D of the features; ``extra``: further
    JSON-ready entries appended by :meth:`to_dict` (the CLI records the checkpoint, dataset and input size there).
    """

    result: RankResult
    metric: str
    flip: bool
    normalize: bool
    rerank: bool
    rerank_params: dict[str, float] | None
    num_query: int
    num_gallery: int
    feature_dim: int
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def mAP(self) -> float:  # noqa: N802 (the field name every ReID paper uses)
        """Mean average precision (fraction)."""
        return self.result.mAP

    @property
    def mINP(self) -> float:  # noqa: N802
        """Mean inverse negative penalty (fraction)."""
        return self.result.mINP

    def rank(self, r: int) -> float:
        """CMC at 1-based rank ``r`` (fraction)."""
        return self.result.rank(r)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready plain data: ``mAP``, ``mINP``, ``rank1``/``rank5``/``rank10`` as fractions in [0, 1], the
        settings, the AP convention and protocol, and the split sizes (plus ``extra``, e.g. the CLI's checkpoint
        and dataset)."""
        out: dict[str, Any] = {"mAP": float(self.result.mAP), "mINP": float(self.result.mINP)}
        for r in REPORT_RANKS:
            if r <= len(self.result.cmc):
                out[f"rank{r}"] = self.result.rank(r)
        out.update({
            "metric": self.metric,
            "flip": bool(self.flip),
            "normalize": bool(self.normalize),
            "rerank": bool(self.rerank),
            "rerank_params": dict(self.rerank_params) if self.rerank_params is not None else None,
            "ap": self.result.ap_kind,
            "protocol": self.result.protocol,
            "max_rank": len(self.result.cmc),
            "num_query": self.num_query,
            "num_valid_query": self.result.num_valid,
            "num_gallery": self.num_gallery,
            "feature_dim": self.feature_dim,
        })
        out.update(self.extra)
        return out

    def settings(self) -> str:
        """The settings as a short deterministic string, e.g. ``metric=cosine flip rerank(k1=20,k2=6,lambda=0.3)``."""
        parts = [f"metric={self.metric}", "flip" if self.flip else "no-flip",
                 "l2norm" if self.normalize else "no-l2norm"]
        if self.rerank and self.rerank_params is not None:
            p = self.rerank_params
            parts.append(f"rerank(k1={p['k1']},k2={p['k2']},lambda={p['lambda_value']:g})")
        else:
            parts.append("no-rerank")
        parts.append(f"AP={self.result.ap_kind}")
        return " ".join(parts)

    def summary(self) -> str:
        """One deterministic line in percent, e.g.
        ``mAP 45.1% | mINP 12.0% | R1 60.2% | R5 ... | R10 ... | 100 query / 500 gallery | metric=euclidean no-flip
        l2norm no-rerank AP=standard``."""
        return (f"{self.result.summary(REPORT_RANKS)} | {self.num_query} query / {self.num_gallery} gallery | "
                f"{self.settings()}")


def resolve_normalize(normalize: bool | None, metric: str) -> bool:
    """``normalize=None`` means L2-normalise for ``"euclidean"`` (then squared Euclidean = 2 - 2 cos, the config's
    ``eval.normalize: true``) and not for ``"cosine"`` (1 - cos normalises by itself)."""
    if normalize is None:
        return metric == "euclidean"
    return bool(normalize)


def rerank_parameters(params: Mapping[str, Any] | None) -> dict[str, float]:
    """The re-ranking parameters: defaults updated by ``params`` (keys ``k1``, ``k2``, ``lambda_value``; ``lambda``
    and ``rerank_lambda`` / ``rerank_k1`` / ``rerank_k2`` accepted as aliases, as in the config's ``eval``)."""
    aliases = {"k1": "k1", "k2": "k2", "lambda_value": "lambda_value", "lambda": "lambda_value",
               "rerank_k1": "k1", "rerank_k2": "k2", "rerank_lambda": "lambda_value"}
    out: dict[str, float] = dict(RERANK_DEFAULTS)
    for key, value in (params or {}).items():
        if key not in aliases:
            raise ValueError(f"unknown re-ranking parameter {key!r}; valid: k1, k2, lambda_value")
        out[aliases[key]] = value
    for key in ("k1", "k2"):
        value = out[key]
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"re-ranking {key} must be a positive integer, got {value!r}")
    lam = out["lambda_value"]
    if isinstance(lam, bool) or not isinstance(lam, (int, float)) or not 0.0 <= float(lam) <= 1.0:
        raise ValueError(f"re-ranking lambda_value must be a number in [0, 1], got {lam!r}")
    out["lambda_value"] = float(lam)
    return out


def _check_metric_and_rerank(metric: str, rerank: bool, rerank_params: Mapping[str, Any] | None
                             ) -> dict[str, float] | None:
    """The checked re-ranking parameters (``None`` without re-ranking); a clear error for a bad combination."""
    if metric not in METRICS:
        raise ValueError(f"unknown metric {metric!r}; valid: {', '.join(METRICS)}")
    if rerank_params is not None and not rerank:
        raise ValueError("rerank_params given but rerank=False; pass rerank=True to re-rank")
    return rerank_parameters(rerank_params) if rerank else None


def query_gallery_distances(
    qf: Any,
    gf: Any,
    metric: str = "euclidean",
    rerank_params: Mapping[str, Any] | None = None,
    device: torch.device | str | None = None,
) -> np.ndarray:
    """The (Q, G) distances the evaluation ranks by: ``pairwise_distance(qf, gf, metric)``, or with
    ``rerank_params`` (checked by :func:`rerank_parameters`) ``re_ranking_features(qf, gf, k1, k2, lambda_value,
    metric)`` (k-reciprocal re-ranking, Zhong et al., CVPR 2017; ``device``: where it runs, see there)."""
    if rerank_params is None:
        return pairwise_distance(qf, gf, metric=metric)
    params = rerank_parameters(rerank_params)
    return re_ranking_features(qf, gf, k1=int(params["k1"]), k2=int(params["k2"]),
                               lambda_value=float(params["lambda_value"]), metric=metric, device=device)


def rank_features(
    query: Features,
    gallery: Features,
    *,
    metric: str = "euclidean",
    rerank: bool = False,
    rerank_params: Mapping[str, Any] | None = None,
    max_rank: int = 50,
    device: torch.device | str | None = None,
    chunk_size: int | None = None,
) -> RankResult:
    """CMC / mAP / mINP of ``query`` against ``gallery`` features (Market-1501 protocol, standard AP): the step of
    :func:`evaluate_model` and of the trainer's validation after feature extraction.

    The features are used as given (flip averaging and L2 normalisation belong to the extraction,
    :func:`~reidkit.evaluation.extract_features`). Without re-ranking this is
    ``evaluate_rank(pairwise_distance(qf, gf, metric), ...)`` computed in blocks of ``chunk_size`` query rows
    (:func:`~reidkit.evaluation.evaluate_features`); with ``rerank=True`` it is
    ``evaluate_rank(re_ranking_features(qf, gf, k1, k2, lambda_value, metric), ...)`` (k-reciprocal re-ranking,
    Zhong et al., CVPR 2017; ``chunk_size`` unused there).

    Args:
        query, gallery: :class:`~reidkit.evaluation.Features` of the two splits.
        metric: ``"euclidean"`` (squared) or ``"cosine"`` (1 - cos).
        rerank: re-rank the distances (CPU NumPy/Numba path unless ``device`` is a GPU).
        rerank_params: ``{"k1": 20, "k2": 6, "lambda_value": 0.3}`` by default (only with ``rerank``; the config's
            names ``rerank_k1`` / ``rerank_k2`` / ``rerank_lambda`` are accepted too).
        max_rank: length of the CMC curve.
        device: where the distances are computed (default: the features' device).
        chunk_size: query rows per block of distances without re-ranking (default: 256 MiB blocks).

    Raises:
        ValueError: an unknown metric, ``rerank_params`` without ``rerank``, bad re-ranking parameters.
    """
    params = _check_metric_and_rerank(metric, rerank, rerank_params)
    if params is None:
        return evaluate_features(query.features, gallery.features, query.pids, gallery.pids, query.camids,
                                 gallery.camids, metric=metric, chunk_size=chunk_size, max_rank=max_rank,
                                 device=device)
    distmat = query_gallery_distances(query.features, gallery.features, metric, params, device)
    return evaluate_rank(distmat, query.pids, gallery.pids, query.camids, gallery.camids, max_rank=max_rank)


def evaluate_model(
    model: nn.Module,
    query: Sequence[ReIDItem],
    gallery: Sequence[ReIDItem],
    *,
    transform: Callable[..., Any],
    metric: str = "euclidean",
    flip: bool = False,
    normalize: bool | None = None,
    rerank: bool = False,
    rerank_params: Mapping[str, Any] | None = None,
    max_rank: int = 50,
    batch_size: int = 128,
    workers: int = 0,
    device: torch.device | str | None = None,
    progress: bool = True,
    chunk_size: int | None = None,
) -> EvalReport:
    """Rank metrics of ``model`` on ``query`` against ``gallery`` (Market-1501 protocol, standard AP).

    Args:
        model: a module mapping (B, 3, H, W) images to (B, D) features in eval mode (:class:`ReIDModel`,
            :class:`LightMBN` -- use ``metric="cosine"`` there, see the module docstring). Its train/eval flags
            are restored afterwards; it stays on its device.
        query, gallery: the splits (``dataset.query`` / ``dataset.gallery``).
        transform: the test pipeline, ``build_transforms(cfg, train=False)``.
        metric: ``"euclidean"`` (squared) or ``"cosine"`` (1 - cos).
        flip: flip TTA, f = (f(x) + f(mirror(x))) / 2 before any normalisation.
        normalize: L2-normalise each feature; ``None``: see :func:`resolve_normalize`.
        rerank: k-reciprocal re-ranking of the distances (CPU NumPy/Numba path unless ``device`` is a GPU).
        rerank_params: ``{"k1": 20, "k2": 6, "lambda_value": 0.3}`` by default (only with ``rerank``).
        max_rank: length of the CMC curve.
        batch_size, workers: of the test loaders (:func:`reidkit.data.build_test_loaders`).
        device: where the model runs (default: its parameters' device); distances are computed there too.
        progress: tqdm bars while extracting features.
        chunk_size: query rows per block of distances without re-ranking (default: 256 MiB blocks).

    Raises:
        ValueError: an unknown metric, bad re-ranking parameters, an empty split.
    """
    from reidkit.data.loaders import build_test_loaders

    params = _check_metric_and_rerank(metric, rerank, rerank_params)  # before the (slow) feature extraction
    if len(query) == 0 or len(gallery) == 0:
        raise ValueError(f"evaluate_model needs a non-empty query and gallery, got {len(query)} query and "
                         f"{len(gallery)} gallery images")
    norm = resolve_normalize(normalize, metric)
    q_loader, g_loader = build_test_loaders(query, gallery, transform, batch_size=batch_size, workers=workers)
    qf: Features = extract_features(model, q_loader, flip=flip, normalize=norm, device=device, progress=progress)
    gf: Features = extract_features(model, g_loader, flip=flip, normalize=norm, device=device, progress=progress)
    result = rank_features(qf, gf, metric=metric, rerank=rerank, rerank_params=params, max_rank=max_rank,
                           device=device, chunk_size=chunk_size)
    return EvalReport(result=result, metric=metric, flip=bool(flip), normalize=norm, rerank=bool(rerank),
                      rerank_params=params, num_query=len(qf.pids), num_gallery=len(gf.pids),
                      feature_dim=int(qf.features.shape[1]))
