"""Retrieval browser: pick a query, k, the distance metric and re-ranking; see its ranked list, AP and INP.

Three layers, so the logic is testable without a kernel or a browser:

* :class:`RetrievalBrowserState` -- what is asked for: ``(query, k, metric, rerank)``, validated;
* :class:`RetrievalCache` -- the features, the items and one (Q, G) distance matrix per ``(metric, rerank)``,
  computed on first use and kept (with the per-query AP and INP of that matrix), so toggling back and forth
  between settings is instant after the first time;
* :func:`render_retrieval` -- pure: ``(state, cache) -> (PNG bytes, label text)``; the picture is the query's
  ranked list (:func:`reidkit.viz.retrieval.ranked_rows_figure`: green/red frames, distances, first match even
  beyond ``k``) and the label gives the query's AP and INP (``evaluation.md`` §2.3-2.4, standard AP);
* :func:`retrieval_browser` -- the ipywidgets wiring: observers read the controls into a new state, call
  :func:`render_retrieval` and store the result in a :class:`RetrievalBrowser`.

Distances are those of the evaluation: :func:`~reidkit.evaluation.pairwise_distance` ("euclidean" is squared
Euclidean, "cosine" is 1 - cos) and, with re-ranking, :func:`~reidkit.evaluation.re_ranking_features`
(k-reciprocal re-ranking, Zhong et al., CVPR 2017; k1 = 20, k2 = 6, lambda = 0.3 unless given), exactly as
``evaluate_model(rerank=True)`` computes them.
"""
from __future__ import annotations

import dataclasses
import io
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from reidkit.data.datasets.base import ReIDItem, item_labels
from reidkit.engine.evaluator import query_gallery_distances, rerank_parameters
from reidkit.evaluation.distances import METRICS, as_feature_tensor
from reidkit.viz.retrieval import per_query_metrics, ranked_list, ranked_rows_figure

#: k-reciprocal re-ranking parameters used when none are given (those of the paper and of ``evaluate_model``).
#: CSS class of each control, the image and the label (for browser tests of a live notebook).
CSS_CLASSES: dict[str, str] = {
    "browser": "rk-retrieval",
    "query": "rk-retrieval-query",
    "k": "rk-retrieval-k",
    "metric": "rk-retrieval-metric",
    "rerank": "rk-retrieval-rerank",
    "image": "rk-retrieval-image",
    "label": "rk-retrieval-label",
}


def _is_int(value: Any) -> bool:
    return not isinstance(value, bool) and isinstance(value, (int, np.integer))


@dataclass(frozen=True)
class RetrievalBrowserState:
    """One view of the browser: query index, number of gallery images ``k``, ``metric`` ("euclidean" or
    "cosine") and whether the distances are k-reciprocal re-ranked."""

    query: int = 0
    k: int = 10
    metric: str = "euclidean"
    rerank: bool = False

    def __post_init__(self) -> None:
        if not _is_int(self.query) or self.query < 0:
            raise ValueError(f"query must be a non-negative query index, got {self.query!r}")
        if not _is_int(self.k) or self.k < 1:
            raise ValueError(f"k must be a positive integer, got {self.k!r}")
        if self.metric not in METRICS:
            raise ValueError(f"metric={self.metric!r}: valid choices are {METRICS}")
        if not isinstance(self.rerank, bool):
            raise ValueError(f"rerank must be True or False, got {self.rerank!r}")


class RetrievalCache:
    """Features and items of one query/gallery split, and the distances of each ``(metric, rerank)`` setting.

    :meth:`distances` computes a setting's (Q, G) float32 matrix the first time it is asked for and returns the
    same array afterwards; :meth:`metrics` does the same for the per-query AP and INP of that matrix.
    ``computed`` lists the settings in the order their distances were computed.
    """

    def __init__(
        self,
        query_feats: Any,
        gallery_feats: Any,
        query_items: Sequence[ReIDItem],
        gallery_items: Sequence[ReIDItem],
        rerank_params: Mapping[str, Any] | None = None,
    ) -> None:
        self.query_feats = as_feature_tensor("query_feats", query_feats)
        self.gallery_feats = as_feature_tensor("gallery_feats", gallery_feats)
        if len(self.query_feats) != len(query_items) or len(self.gallery_feats) != len(gallery_items):
            raise ValueError(
                f"one feature row per item expected: {len(self.query_feats)} query features for "
                f"{len(query_items)} query items, {len(self.gallery_feats)} gallery features for "
                f"{len(gallery_items)} gallery items")
        if len(query_items) == 0 or len(gallery_items) == 0:
            raise ValueError(f"the browser needs queries and gallery images, got {len(query_items)} and "
                             f"{len(gallery_items)}")
        if self.query_feats.shape[1] != self.gallery_feats.shape[1]:
            raise ValueError(f"query and gallery features must have the same dimension, got "
                             f"{self.query_feats.shape[1]} and {self.gallery_feats.shape[1]}")
        self.query_items = list(query_items)
        self.gallery_items = list(gallery_items)
        self.q_pids, self.q_camids = item_labels(self.query_items)
        self.g_pids, self.g_camids = item_labels(self.gallery_items)
        self.rerank_params = rerank_parameters(rerank_params)
        self.computed: list[tuple[str, bool]] = []
        self._distances: dict[tuple[str, bool], np.ndarray] = {}
        self._metrics: dict[tuple[str, bool], tuple[np.ndarray, np.ndarray]] = {}

    @property
    def num_queries(self) -> int:
        return len(self.query_items)

    def distances(self, metric: str, rerank: bool) -> np.ndarray:
        """The (Q, G) distances of ``metric``, k-reciprocal re-ranked when ``rerank`` (computed once)."""
        key = (metric, bool(rerank))
        if key not in self._distances:
            if metric not in METRICS:
                raise ValueError(f"metric={metric!r}: valid choices are {METRICS}")
            self._distances[key] = query_gallery_distances(self.query_feats, self.gallery_feats, metric,
                                                           self.rerank_params if rerank else None)
            self.computed.append(key)
        return self._distances[key]

    def metrics(self, metric: str, rerank: bool) -> tuple[np.ndarray, np.ndarray]:
        """Per-query (AP, INP) of :meth:`distances` (NaN for queries without a match in another camera)."""
        key = (metric, bool(rerank))
        if key not in self._metrics:
            self._metrics[key] = per_query_metrics(self.distances(metric, rerank), self.q_pids, self.g_pids,
                                                   self.q_camids, self.g_camids)
        return self._metrics[key]


def _check_query(state: RetrievalBrowserState, cache: RetrievalCache) -> None:
    if state.query >= cache.num_queries:
        raise ValueError(f"query index {state.query} outside 0..{cache.num_queries - 1}")


def retrieval_label(state: RetrievalBrowserState, cache: RetrievalCache) -> str:
    """One line: the query, the setting, its AP and INP (3 decimals, fractions) and its first match's rank."""
    _check_query(state, cache)
    item = cache.query_items[state.query]
    ap, inp = cache.metrics(state.metric, state.rerank)
    setting = state.metric + (" + re-ranking" if state.rerank else "")
    head = f"query {state.query}: id {item.pid}, camera c{item.camid + 1} | {setting}"
    if np.isnan(ap[state.query]):
        return f"{head} | no match in another camera: AP and INP undefined (left out of mAP)"
    full = ranked_list(cache.distances(state.metric, state.rerank)[state.query], item.pid, item.camid,
                       cache.g_pids, cache.g_camids, k=len(cache.gallery_items))
    return (f"{head} | AP {ap[state.query]:.3f} | INP {inp[state.query]:.3f} | "
            f"first match at rank {full.first_match}")


def retrieval_figure(state: RetrievalBrowserState, cache: RetrievalCache) -> Figure:
    """The query and its top ``k`` kept gallery images under ``state``'s setting (frames: green = same identity)."""
    _check_query(state, cache)
    ap, inp = cache.metrics(state.metric, state.rerank)
    q = state.query
    caption = "no match in\nanother camera" if np.isnan(ap[q]) else f"AP {ap[q]:.3f}\nINP {inp[q]:.3f}"
    return ranked_rows_figure(cache.distances(state.metric, state.rerank), cache.query_items,
                              cache.gallery_items, [q], k=state.k, captions=[caption])


def render_retrieval(state: RetrievalBrowserState, cache: RetrievalCache, dpi: int = 80) -> tuple[bytes, str]:
    """``(PNG bytes of retrieval_figure, retrieval_label)``: everything the browser shows for ``state``."""
    buffer = io.BytesIO()
    retrieval_figure(state, cache).savefig(buffer, format="png", dpi=dpi)
    return buffer.getvalue(), retrieval_label(state, cache)


@dataclass
class RetrievalBrowser:
    """What the browser last showed; observers write here and nowhere else.

    ``controls`` maps "query", "k", "metric" and "rerank" to their widgets (set ``.value`` to drive the browser
    from code); ``state`` is the view they describe, ``png`` and ``text`` what :func:`render_retrieval` returned
    for it, ``renders`` counts refreshes.
    """

    state: RetrievalBrowserState
    cache: RetrievalCache
    controls: dict[str, Any] = field(default_factory=dict)
    image: Any = None
    label: Any = None
    png: bytes = b""
    text: str = ""
    renders: int = 0

    def refresh(self) -> None:
        """Read the controls into :attr:`state`, render it and show the result."""
        self.state = dataclasses.replace(self.state, **{name: c.value for name, c in self.controls.items()})
        self.png, self.text = render_retrieval(self.state, self.cache)
        self.renders += 1
        if self.image is not None:
            self.image.value = self.png
        if self.label is not None:
            self.label.value = self.text


def retrieval_browser(
    query_feats: Any,
    gallery_feats: Any,
    query_items: Sequence[ReIDItem],
    gallery_items: Sequence[ReIDItem],
    query: int = 0,
    k: int = 10,
    metric: str = "euclidean",
    rerank: bool = False,
    rerank_params: Mapping[str, Any] | None = None,
    max_k: int = 20,
) -> tuple[Any, RetrievalBrowser]:
    """An interactive retrieval browser over one query/gallery split.

    Controls: a query slider (indices into ``query_items``), a ``k`` slider (1..``max_k``), a metric dropdown and
    a re-ranking checkbox; below them the ranked-list picture and a label with the query's AP and INP. Returns
    ``(widget, browser)``: display ``widget``; ``browser`` (:class:`RetrievalBrowser`) holds the state, the
    controls and the distance cache. Each widget carries a CSS class from :data:`CSS_CLASSES`.
    """
    import ipywidgets as w

    cache = RetrievalCache(query_feats, gallery_feats, query_items, gallery_items, rerank_params)
    state = RetrievalBrowserState(query=query, k=k, metric=metric, rerank=rerank)
    _check_query(state, cache)
    if not _is_int(max_k) or max_k < state.k:
        raise ValueError(f"max_k must be an integer >= k ({state.k}), got {max_k!r}")
    style = {"description_width": "initial"}
    controls: dict[str, Any] = {
        "query": w.IntSlider(value=state.query, min=0, max=cache.num_queries - 1, description="query",
                             style=style, continuous_update=False),
        "k": w.IntSlider(value=state.k, min=1, max=int(max_k), description="k (images shown)", style=style,
                         continuous_update=False),
        "metric": w.Dropdown(options=list(METRICS), value=state.metric, description="distance", style=style),
        "rerank": w.Checkbox(value=state.rerank, description="k-reciprocal re-ranking", style=style,
                             indent=False),
    }
    browser = RetrievalBrowser(state=state, cache=cache, controls=controls,
                               image=w.Image(format="png", layout=w.Layout(align_self="flex-start")), label=w.Label())
    for name, widget in [*controls.items(), ("image", browser.image), ("label", browser.label)]:
        widget.add_class(CSS_CLASSES[name])

    def on_change(_change: Mapping[str, Any]) -> None:
        browser.refresh()

    for control in controls.values():
        control.observe(on_change, names="value")
    browser.refresh()
    box = w.VBox([w.HBox([controls["query"], controls["k"]]), w.HBox([controls["metric"], controls["rerank"]]),
                  browser.label, browser.image])
    box.add_class(CSS_CLASSES["browser"])
    return box, browser
