"""Ranked lists follow the evaluation protocol: same skips, same order, frames coloured by the same matches."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from matplotlib.colors import to_hex

from reidkit.data.datasets import SynthReID
from reidkit.evaluation import evaluate_rank, pairwise_distance
from reidkit.models.handcrafted import color_histogram_features
from reidkit.viz.retrieval import MATCH_COLOUR, MISMATCH_COLOUR, ranked_list, ranked_list_figure


def test_ranked_list_on_the_worked_example() -> None:
    g_pids = np.array([7, 3, 7, 0, 7, 5, 7, 9, 7])
    g_cams = np.array([0, 1, 2, 4, 1, 3, 0, 2, 5])
    dist = np.arange(1, 10, dtype=np.float32) / 10
    ranked = ranked_list(dist, 7, 0, g_pids, g_cams, k=10)
    assert ranked.indices.tolist() == [1, 2, 3, 4, 5, 7, 8]  # positions 0 and 6: same pid, same camera
    assert ranked.matches.tolist() == [False, True, False, True, False, False, True]
    with pytest.raises(ValueError, match="k must be >= 1"):
        ranked_list(dist, 7, 0, g_pids, g_cams, k=0)


def test_first_match_equals_the_evaluation_on_random_problems() -> None:
    rng = np.random.default_rng(0)
    for _ in range(50):
        num_q, num_g = int(rng.integers(1, 6)), int(rng.integers(2, 40))
        dist = rng.integers(0, 5, (num_q, num_g)).astype(np.float32)  # many ties: order by gallery index
        q_pids, g_pids = rng.integers(0, 4, num_q), rng.integers(0, 4, num_g)
        q_cams, g_cams = rng.integers(0, 2, num_q), rng.integers(0, 2, num_g)
        if not any(((g_pids == p) & (g_cams != c)).any() for p, c in zip(q_pids, q_cams)):
            continue
        result = evaluate_rank(dist, q_pids, g_pids, q_cams, g_cams, max_rank=5)
        for q in range(num_q):
            ranked = ranked_list(dist[q], q_pids[q], q_cams[q], g_pids, g_cams, k=num_g)
            hits = np.flatnonzero(ranked.matches)
            assert (hits[0] + 1 if len(hits) else 0) == result.first_hit[q]


def test_figure_frames_follow_the_matches(synthreid_tiny: Path) -> None:
    data = SynthReID(synthreid_tiny)
    query, gallery = data.query[:3], data.gallery
    distmat = pairwise_distance(color_histogram_features([i.path for i in query]),
                                color_histogram_features([i.path for i in gallery]))
    fig = ranked_list_figure(distmat, query, gallery, [0, 2], k=5)
    axes = np.array(fig.axes).reshape(2, 6)
    g_pids, g_cams = np.array([i.pid for i in gallery]), np.array([i.camid for i in gallery])
    for row, q in enumerate([0, 2]):
        ranked = ranked_list(distmat[q], query[q].pid, query[q].camid, g_pids, g_cams, k=5)
        assert not axes[row, 0].patches  # the query has no frame
        for col in range(5):
            (frame,) = axes[row, col + 1].patches
            expected = MATCH_COLOUR if ranked.matches[col] else MISMATCH_COLOUR
            assert to_hex(frame.get_edgecolor()) == expected
            assert axes[row, col + 1].get_title().startswith(f"{col + 1}: id {gallery[ranked.indices[col]].pid} ")
