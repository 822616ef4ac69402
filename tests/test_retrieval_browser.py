"""Retrieval browser, headless: widget values drive the state; AP/INP, frames and re-ranked distances equal the
evaluation's; each setting's distances are computed once."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from matplotlib.colors import to_hex
from PIL import Image
from reference_eval import reference_evaluate

from reidkit.data.datasets import ReIDItem, SynthReID
from reidkit.evaluation import pairwise_distance, re_ranking, re_ranking_features
from reidkit.models.handcrafted import color_histogram_features
from reidkit.viz.retrieval import MATCH_COLOUR, MISMATCH_COLOUR, ranked_list
from reidkit.viz.retrieval_browser import (
    CSS_CLASSES,
    RetrievalBrowserState,
    RetrievalCache,
    render_retrieval,
    retrieval_browser,
    retrieval_figure,
)

NUM_QUERIES = 24


@pytest.fixture(scope="module")
def split(synthreid_tiny: Path) -> tuple[np.ndarray, np.ndarray, list, list]:
    data = SynthReID(synthreid_tiny)
    query, gallery = data.query[:NUM_QUERIES], data.gallery
    qf = color_histogram_features([i.path for i in query])
    gf = color_histogram_features([i.path for i in gallery])
    return qf, gf, query, gallery


def labels(items: list) -> tuple[np.ndarray, np.ndarray]:
    return np.array([i.pid for i in items]), np.array([i.camid for i in items])


def test_state_validation() -> None:
    assert RetrievalBrowserState() == RetrievalBrowserState(0, 10, "euclidean", False)
    with pytest.raises(ValueError, match="metric='manhattan': valid choices are"):
        RetrievalBrowserState(metric="manhattan")
    with pytest.raises(ValueError, match="k must be a positive integer, got 0"):
        RetrievalBrowserState(k=0)
    with pytest.raises(ValueError, match="query must be a non-negative query index, got -1"):
        RetrievalBrowserState(query=-1)
    with pytest.raises(ValueError, match="rerank must be True or False, got 1"):
        RetrievalBrowserState(rerank=1)  # type: ignore[arg-type]


def test_cache_checks_its_inputs(split) -> None:  # type: ignore[no-untyped-def]
    qf, gf, query, gallery = split
    with pytest.raises(ValueError, match="23 query features for 24 query items"):
        RetrievalCache(qf[:-1], gf, query, gallery)
    with pytest.raises(ValueError, match="unknown re-ranking parameter"):
        RetrievalCache(qf, gf, query, gallery, rerank_params={"k3": 4})
    cache = RetrievalCache(qf, gf, query, gallery)
    with pytest.raises(ValueError, match=f"query index {NUM_QUERIES} outside 0..{NUM_QUERIES - 1}"):
        render_retrieval(RetrievalBrowserState(query=NUM_QUERIES), cache)


def test_render_is_pure_and_labels_the_reference_ap(split) -> None:  # type: ignore[no-untyped-def]
    qf, gf, query, gallery = split
    cache = RetrievalCache(qf, gf, query, gallery)
    dist = pairwise_distance(qf, gf, metric="cosine")
    (q_pids, q_cams), (g_pids, g_cams) = labels(query), labels(gallery)
    ref = reference_evaluate(dist, q_pids, g_pids, q_cams, g_cams)
    state = RetrievalBrowserState(query=5, k=4, metric="cosine")
    png, text = render_retrieval(state, cache)
    assert png.startswith(b"\x89PNG") and render_retrieval(state, cache) == (png, text)
    assert f"AP {ref.ap[5]:.3f} | INP {ref.inp[5]:.3f} | first match at rank {ref.first_hit[5]}" in text
    assert text.startswith(f"query 5: id {query[5].pid}, camera c{query[5].camid + 1} | cosine |")


def test_widget_values_drive_the_state_and_the_label(split) -> None:  # type: ignore[no-untyped-def]
    qf, gf, query, gallery = split
    widget, browser = retrieval_browser(qf, gf, query, gallery, query=0, k=5)
    assert CSS_CLASSES["browser"] in widget._dom_classes and widget.children and browser.renders == 1 and browser.image.value == browser.png
    for name in ("query", "k", "metric", "rerank"):
        assert CSS_CLASSES[name] in browser.controls[name]._dom_classes
    assert CSS_CLASSES["image"] in browser.image._dom_classes and CSS_CLASSES["label"] in browser.label._dom_classes
    q_pids, q_cams = labels(query)
    g_pids, g_cams = labels(gallery)
    ref = reference_evaluate(pairwise_distance(qf, gf), q_pids, g_pids, q_cams, g_cams)
    for q in (3, 17):
        browser.controls["query"].value = q
        assert browser.state == RetrievalBrowserState(q, 5, "euclidean", False)
        assert browser.label.value == browser.text
        assert f"| AP {ref.ap[q]:.3f} | INP {ref.inp[q]:.3f} | first match at rank {ref.first_hit[q]}" in browser.text
        ap, inp = browser.cache.metrics("euclidean", False)
        assert ap[q] == pytest.approx(ref.ap[q], abs=1e-12) and inp[q] == pytest.approx(ref.inp[q], abs=1e-12)
    browser.controls["k"].value = 7
    assert browser.state.k == 7 and browser.renders == 4
    browser.controls["metric"].value = "cosine"
    assert browser.state.metric == "cosine" and "| cosine |" in browser.text


def test_frames_match_the_evaluation(split) -> None:  # type: ignore[no-untyped-def]
    qf, gf, query, gallery = split
    cache = RetrievalCache(qf, gf, query, gallery)
    g_pids, g_cams = labels(gallery)
    dist = pairwise_distance(qf, gf)
    for q in (0, 9):
        k = 6
        fig = retrieval_figure(RetrievalBrowserState(q, k), cache)
        ranked = ranked_list(dist[q], query[q].pid, query[q].camid, g_pids, g_cams, k=k)
        for col in range(k):
            ax = fig.axes[col + 1]
            (frame,) = ax.patches
            assert to_hex(frame.get_edgecolor()) == (MATCH_COLOUR if ranked.matches[col] else MISMATCH_COLOUR)
            assert ax.get_title() == f"{col + 1}: id {gallery[ranked.indices[col]].pid} " \
                                     f"c{gallery[ranked.indices[col]].camid + 1}"
            assert ax.get_xlabel() == f"d={dist[q, ranked.indices[col]]:.3f}"


def test_rerank_toggle_uses_the_re_ranked_distances_computed_once(split) -> None:  # type: ignore[no-untyped-def]
    qf, gf, query, gallery = split
    _, browser = retrieval_browser(qf, gf, query, gallery, query=2, k=5)
    assert browser.cache.computed == [("euclidean", False)]
    plain_text = browser.text
    browser.controls["rerank"].value = True
    assert browser.state.rerank and "euclidean + re-ranking" in browser.text
    reranked = browser.cache.distances("euclidean", True)
    np.testing.assert_array_equal(reranked, re_ranking_features(qf, gf, metric="euclidean"))
    # the features path equals the classic matrix interface fed Euclidean distances (float32 rounding apart)
    classic = re_ranking(np.sqrt(pairwise_distance(qf, gf)), np.sqrt(pairwise_distance(qf, qf)),
                         np.sqrt(pairwise_distance(gf, gf)))
    np.testing.assert_allclose(reranked, classic, atol=1e-5)
    assert not np.allclose(reranked, pairwise_distance(qf, gf))
    fig = retrieval_figure(browser.state, browser.cache)
    g_pids, g_cams = labels(gallery)
    ranked = ranked_list(reranked[2], query[2].pid, query[2].camid, g_pids, g_cams, k=5)
    assert [ax.get_xlabel() for ax in fig.axes[1:6]] == [f"d={d:.3f}" for d in ranked.distances]
    q_pids, q_cams = labels(query)
    ref = reference_evaluate(reranked, q_pids, g_pids, q_cams, g_cams)
    assert f"| AP {ref.ap[2]:.3f} | INP {ref.inp[2]:.3f} |" in browser.text
    # toggling back and forth reuses both matrices
    browser.controls["rerank"].value = False
    assert browser.text == plain_text
    browser.controls["rerank"].value = True
    assert browser.cache.computed == [("euclidean", False), ("euclidean", True)]
    assert browser.cache.distances("euclidean", True) is reranked


def test_a_query_without_match_says_so(tmp_path: Path) -> None:
    def item(name: str, pid: int, camid: int) -> ReIDItem:
        path = tmp_path / f"{name}.png"
        Image.new("RGB", (8, 16), (40 * pid % 256, 90, 140)).save(path)
        return ReIDItem(str(path), pid, camid)

    query = [item("q0", 1, 0), item("q1", 4, 0)]  # pid 4 has no gallery image: AP undefined
    gallery = [item("g0", 1, 1), item("g1", 2, 1), item("g2", 1, 0)]
    feats = np.array([[0.0, 0.0], [1.0, 1.0]]), np.array([[0.0, 1.0], [0.5, 0.5], [0.0, 0.1]])
    cache = RetrievalCache(*feats, query, gallery)
    _, text = render_retrieval(RetrievalBrowserState(query=1, k=2), cache)
    assert text == ("query 1: id 4, camera c1 | euclidean | no match in another camera: AP and INP undefined "
                    "(left out of mAP)")
    # query 0 (pid 1, camera 0): g2 is skipped (same pid and camera); kept order g0 (d=1), g1 (d=0.5) -> g1, g0
    _, text = render_retrieval(RetrievalBrowserState(query=0, k=2), cache)
    assert text.endswith("| AP 0.500 | INP 0.500 | first match at rank 2")
    fig = retrieval_figure(RetrievalBrowserState(query=1, k=2), cache)
    assert fig.axes[0].get_xlabel() == "no match in\nanother camera"
