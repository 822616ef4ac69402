"""Ranked lists follow the evaluation protocol: same skips, same order, frames coloured by the same matches;
per-query AP/INP equal the plain reference; the worst queries are the lowest APs; the failure figure shows them."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from matplotlib.colors import to_hex
from PIL import Image
from reference_eval import reference_evaluate

from reidkit.data.datasets import ReIDItem, SynthReID
from reidkit.evaluation import evaluate_rank, pairwise_distance
from reidkit.models.handcrafted import color_histogram_features
from reidkit.viz.retrieval import (
    MATCH_COLOUR,
    MISMATCH_COLOUR,
    failure_figure,
    per_query_metrics,
    ranked_list,
    ranked_list_figure,
    ranked_rows_figure,
    worst_queries,
)

# evaluation.md §2.5: query pid 7, camera 0; gallery already in ascending distance
WORKED_PIDS = np.array([7, 3, 7, 0, 7, 5, 7, 9, 7])
WORKED_CAMS = np.array([0, 1, 2, 4, 1, 3, 0, 2, 5])
WORKED_DIST = np.arange(1, 10, dtype=np.float32) / 10


def items_with_images(folder: Path, pids: np.ndarray, cams: np.ndarray, prefix: str) -> list[ReIDItem]:
    """Tiny solid-colour PNGs, one per (pid, camera), so figures can be drawn from hand-made labels."""
    folder.mkdir(parents=True, exist_ok=True)
    items = []
    for i, (pid, cam) in enumerate(zip(pids, cams)):
        path = folder / f"{prefix}{i:03d}.png"
        Image.new("RGB", (8, 16), (10 * i % 256, 80, 160)).save(path)
        items.append(ReIDItem(str(path), int(pid), int(cam)))
    return items


def random_problem(rng: np.random.Generator, ties: bool) -> tuple[np.ndarray, ...]:
    num_q, num_g = int(rng.integers(1, 8)), int(rng.integers(2, 40))
    dist = (rng.integers(0, 5, (num_q, num_g)) if ties else rng.random((num_q, num_g))).astype(np.float32)
    q_pids, g_pids = rng.integers(0, 4, num_q), rng.integers(0, 4, num_g)
    q_cams, g_cams = rng.integers(0, 2, num_q), rng.integers(0, 2, num_g)
    return dist, q_pids, g_pids, q_cams, g_cams


def has_valid_query(q_pids: np.ndarray, g_pids: np.ndarray, q_cams: np.ndarray, g_cams: np.ndarray) -> bool:
    return any(((g_pids == p) & (g_cams != c)).any() for p, c in zip(q_pids, q_cams))


def test_ranked_list_on_the_worked_example() -> None:
    ranked = ranked_list(WORKED_DIST, 7, 0, WORKED_PIDS, WORKED_CAMS, k=10)
    assert ranked.indices.tolist() == [1, 2, 3, 4, 5, 7, 8]  # positions 0 and 6: same pid, same camera
    assert ranked.matches.tolist() == [False, True, False, True, False, False, True]
    assert ranked.first_match == 2
    assert ranked_list(WORKED_DIST, 7, 0, WORKED_PIDS, WORKED_CAMS, k=1).first_match == 0  # none within k = 1
    with pytest.raises(ValueError, match="k must be >= 1"):
        ranked_list(WORKED_DIST, 7, 0, WORKED_PIDS, WORKED_CAMS, k=0)


def test_first_match_equals_the_evaluation_on_random_problems() -> None:
    rng = np.random.default_rng(0)
    for _ in range(50):
        dist, q_pids, g_pids, q_cams, g_cams = random_problem(rng, ties=True)  # ties: order by gallery index
        if not has_valid_query(q_pids, g_pids, q_cams, g_cams):
            continue
        result = evaluate_rank(dist, q_pids, g_pids, q_cams, g_cams, max_rank=5)
        for q in range(len(q_pids)):
            ranked = ranked_list(dist[q], q_pids[q], q_cams[q], g_pids, g_cams, k=dist.shape[1])
            assert ranked.first_match == result.first_hit[q]


def test_per_query_metrics_on_the_worked_example() -> None:
    ap, inp = per_query_metrics(WORKED_DIST[None], [7], WORKED_PIDS, [0], WORKED_CAMS)
    assert ap[0] == pytest.approx(10 / 21, abs=1e-12)  # (1/2 + 2/4 + 3/7) / 3
    assert inp[0] == pytest.approx(3 / 7, abs=1e-12)


def test_per_query_metrics_equal_the_reference() -> None:
    rng = np.random.default_rng(1)
    checked_invalid = 0
    for _ in range(60):
        dist, q_pids, g_pids, q_cams, g_cams = random_problem(rng, ties=bool(rng.integers(0, 2)))
        if not has_valid_query(q_pids, g_pids, q_cams, g_cams):
            with pytest.raises(ValueError, match="no valid query"):
                per_query_metrics(dist, q_pids, g_pids, q_cams, g_cams)
            continue
        ap, inp = per_query_metrics(dist, q_pids, g_pids, q_cams, g_cams)
        ref = reference_evaluate(dist, q_pids, g_pids, q_cams, g_cams)
        np.testing.assert_allclose(ap, ref.ap, rtol=0, atol=1e-12)  # NaN where the reference has NaN
        np.testing.assert_allclose(inp, ref.inp, rtol=0, atol=1e-12)
        checked_invalid += int((~ref.valid).sum())
    assert checked_invalid > 0  # invalid queries (NaN) were part of the comparison


def test_worst_queries_sort_by_ap_then_index_and_skip_invalid() -> None:
    # five queries of pid 1, camera 0 over the gallery [pid 2, pid 1, pid 2, pid 1] (cameras 1):
    # the match ranks set the AP; queries 1 and 3 rank identically (a tie), query 4 has no match (pid 9)
    g_pids, g_cams = np.array([2, 1, 2, 1]), np.array([1, 1, 1, 1])
    dist = np.array([
        [0.1, 0.2, 0.3, 0.4],  # matches at ranks 2, 4: AP (1/2 + 2/4)/2 = 0.5
        [0.1, 0.4, 0.2, 0.3],  # ranks 3, 4: AP (1/3 + 2/4)/2 = 5/12
        [0.3, 0.1, 0.4, 0.2],  # ranks 1, 2: AP 1
        [0.2, 0.3, 0.1, 0.4],  # ranks 3, 4: AP 5/12 (tie with query 1)
        [0.1, 0.2, 0.3, 0.4],  # pid 9: invalid
    ], dtype=np.float32)
    q_pids, q_cams = np.array([1, 1, 1, 1, 9]), np.zeros(5, dtype=int)
    ap, _ = per_query_metrics(dist, q_pids, g_pids, q_cams, g_cams)
    np.testing.assert_allclose(ap[:4], [0.5, 5 / 12, 1.0, 5 / 12])
    assert worst_queries(dist, q_pids, g_pids, q_cams, g_cams, n=10).tolist() == [1, 3, 0, 2]
    assert worst_queries(dist, q_pids, g_pids, q_cams, g_cams, n=2).tolist() == [1, 3]
    with pytest.raises(ValueError, match="n must be a positive integer, got 0"):
        worst_queries(dist, q_pids, g_pids, q_cams, g_cams, n=0)


def test_worst_queries_equal_a_plain_sort_of_the_reference() -> None:
    rng = np.random.default_rng(2)
    for _ in range(30):
        dist, q_pids, g_pids, q_cams, g_cams = random_problem(rng, ties=True)
        if not has_valid_query(q_pids, g_pids, q_cams, g_cams):
            continue
        ref = reference_evaluate(dist, q_pids, g_pids, q_cams, g_cams)
        expected = sorted((ref.ap[q], q) for q in range(len(q_pids)) if ref.valid[q])
        assert worst_queries(dist, q_pids, g_pids, q_cams, g_cams, n=3).tolist() == [q for _, q in expected[:3]]


def test_figure_frames_follow_the_matches(synthreid_tiny: Path) -> None:
    data = SynthReID(synthreid_tiny)
    query, gallery = data.query[:3], data.gallery
    distmat = pairwise_distance(color_histogram_features([i.path for i in query]),
                                color_histogram_features([i.path for i in gallery]))
    fig = ranked_list_figure(distmat, query, gallery, [0, 2], k=5)
    ncols = len(fig.axes) // 2
    assert ncols in (6, 7)  # query + 5, and a first-match column when a first match ranks beyond 5
    axes = np.array(fig.axes).reshape(2, ncols)
    g_pids, g_cams = np.array([i.pid for i in gallery]), np.array([i.camid for i in gallery])
    for row, q in enumerate([0, 2]):
        ranked = ranked_list(distmat[q], query[q].pid, query[q].camid, g_pids, g_cams, k=5)
        assert not axes[row, 0].patches  # the query has no frame
        for col in range(5):
            (frame,) = axes[row, col + 1].patches
            expected = MATCH_COLOUR if ranked.matches[col] else MISMATCH_COLOUR
            assert to_hex(frame.get_edgecolor()) == expected
            assert axes[row, col + 1].get_title() == f"{col + 1}: id {gallery[ranked.indices[col]].pid} " \
                                                     f"c{gallery[ranked.indices[col]].camid + 1}"
            assert axes[row, col + 1].get_xlabel() == f"d={ranked.distances[col]:.3f}"


def test_first_match_beyond_k_gets_its_own_column(tmp_path: Path) -> None:
    gallery = items_with_images(tmp_path, WORKED_PIDS, WORKED_CAMS, "g")
    query = items_with_images(tmp_path, np.array([7, 4]), np.array([0, 0]), "q")  # pid 4: no match at all
    dist = np.stack([WORKED_DIST, WORKED_DIST])
    fig = ranked_rows_figure(dist, query, gallery, [0, 1], k=1, captions=["first", "second"])
    axes = np.array(fig.axes).reshape(2, 3)  # query, rank 1, first-match column
    assert axes[0, 0].get_xlabel() == "first" and axes[1, 0].get_xlabel() == "second"
    # query 0: kept rank 1 is gallery 1 (pid 3, red); the first match is gallery 2 at kept rank 2
    (frame,) = axes[0, 1].patches
    assert to_hex(frame.get_edgecolor()) == MISMATCH_COLOUR and axes[0, 1].get_title() == "1: id 3 c2"
    (frame,) = axes[0, 2].patches
    assert to_hex(frame.get_edgecolor()) == MATCH_COLOUR
    assert axes[0, 2].get_title() == "first match at\nrank 2: id 7 c3"
    assert axes[0, 2].get_xlabel() == "d=0.300"
    # query 1 (pid 4) has no match in the gallery: the column says so
    assert [t.get_text() for t in axes[1, 2].texts] == ["no match in\nanother camera"]
    # with k = 2 the first match of query 0 is in the list, and the extra column disappears
    fig = ranked_rows_figure(dist[:1], query[:1], gallery, [0], k=2)
    assert len(fig.axes) == 3
    with pytest.raises(ValueError, match=r"distmat must be \(len\(query\), len\(gallery\)\) = \(2, 9\)"):
        ranked_rows_figure(dist[:1], query, gallery, [0])
    with pytest.raises(ValueError, match="query index 5 outside 0..1"):
        ranked_rows_figure(dist, query, gallery, [5])


def test_failure_figure_shows_the_worst_queries(synthreid_tiny: Path) -> None:
    data = SynthReID(synthreid_tiny)
    query, gallery = data.query, data.gallery
    distmat = pairwise_distance(color_histogram_features([i.path for i in query]),
                                color_histogram_features([i.path for i in gallery]))
    q_pids, q_cams = np.array([i.pid for i in query]), np.array([i.camid for i in query])
    g_pids, g_cams = np.array([i.pid for i in gallery]), np.array([i.camid for i in gallery])
    ref = reference_evaluate(distmat, q_pids, g_pids, q_cams, g_cams)
    worst = worst_queries(distmat, q_pids, g_pids, q_cams, g_cams, n=3)
    k = 4
    fig = failure_figure(distmat, query, gallery, n=3, k=k)
    ncols = len(fig.axes) // 3
    axes = np.array(fig.axes).reshape(3, ncols)
    assert "lowest AP" in fig.get_suptitle()
    for row, q in enumerate(worst):
        assert ref.ap[q] == min(ref.ap[j] for j in range(len(query)) if ref.valid[j] and j not in worst[:row])
        assert axes[row, 0].get_title() == f"query id {query[q].pid} c{query[q].camid + 1}"
        assert axes[row, 0].get_xlabel() == f"AP {ref.ap[q]:.3f}\nfirst match at\nrank {ref.first_hit[q]}"
        ranked = ranked_list(distmat[q], query[q].pid, query[q].camid, g_pids, g_cams, k=k)
        for col in range(k):
            (frame,) = axes[row, col + 1].patches
            assert to_hex(frame.get_edgecolor()) == (MATCH_COLOUR if ranked.matches[col] else MISMATCH_COLOUR)
        if ref.first_hit[q] > k:
            assert ncols == k + 2
            assert axes[row, -1].get_title().startswith(f"first match at\nrank {ref.first_hit[q]}: id {query[q].pid} ")
            (frame,) = axes[row, -1].patches
            assert to_hex(frame.get_edgecolor()) == MATCH_COLOUR
    assert ref.first_hit[worst[0]] > k  # colour histograms: the worst query's first match is far down
