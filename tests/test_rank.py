"""The plain rank evaluation against the worked example and hand-made cases of evaluation.md §2."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from reidkit.evaluation import evaluate_rank, pairwise_distance


def worked_example() -> tuple[np.ndarray, ...]:
    # Gallery already in ascending distance order: pid, cam per evaluation.md §2.5.
    g_pids = np.array([7, 3, 7, 0, 7, 5, 7, 9, 7])
    g_cams = np.array([0, 1, 2, 4, 1, 3, 0, 2, 5])
    dist = np.arange(1, 10, dtype=np.float32)[None, :]
    return dist, np.array([7]), g_pids, np.array([0]), g_cams


def test_worked_example_standard_ap_inp_and_cmc() -> None:
    res = evaluate_rank(*worked_example(), max_rank=10)
    assert res.ap[0] == pytest.approx(10 / 21, abs=1e-12)
    assert res.inp[0] == pytest.approx(3 / 7, abs=1e-12)
    # CMC stays 1 after the first hit, also beyond the 7 kept items.
    np.testing.assert_array_equal(res.cmc, np.array([0] + [1] * 9, dtype=np.float32))
    assert res.cmc.dtype == np.float32
    assert res.first_hit[0] == 2 and res.valid[0]


def test_worked_example_official_ap() -> None:
    res = evaluate_rank(*worked_example(), ap="official")
    assert res.mAP == pytest.approx(22 / 63, abs=1e-12)


def test_ties_are_broken_by_gallery_index() -> None:
    # Both gallery items at the same distance: the negative (index 0) ranks first.
    res = evaluate_rank(
        np.zeros((1, 2), np.float32), np.array([1]), np.array([2, 1]), np.array([0]), np.array([1, 1])
    )
    assert res.first_hit[0] == 2 and res.ap[0] == pytest.approx(0.5)


def test_invalid_queries_are_excluded_and_all_invalid_is_an_error() -> None:
    dist = np.array([[0.1, 0.2], [0.3, 0.1]], np.float32)
    # Query 1 (pid 2) only matches a gallery item in its own camera: invalid.
    res = evaluate_rank(dist, np.array([1, 2]), np.array([1, 2]), np.array([0, 1]), np.array([1, 1]))
    assert res.valid.tolist() == [True, False] and res.mAP == 1.0 and np.isnan(res.ap[1])
    with pytest.raises(ValueError, match="no valid query"):
        evaluate_rank(dist[1:], np.array([2]), np.array([1, 2]), np.array([1]), np.array([1, 1]))


def test_bad_input_errors_name_the_value() -> None:
    dist, qp, gp, qc, gc = worked_example()
    with pytest.raises(ValueError, match="ap='trapezoid'"):
        evaluate_rank(dist, qp, gp, qc, gc, ap="trapezoid")
    with pytest.raises(ValueError, match="NaN"):
        evaluate_rank(np.full_like(dist, np.nan), qp, gp, qc, gc)
    with pytest.raises(ValueError, match="g_pids must be 1-D of length 9"):
        evaluate_rank(dist, qp, gp[:3], qc, gc)


def test_squared_euclidean_and_cosine_distances() -> None:
    q = torch.tensor([[1.0, 0.0], [0.0, 2.0]])
    g = torch.tensor([[1.0, 1.0], [3.0, 0.0], [0.0, -1.0]])
    expected_sq = np.array([[1, 4, 2], [2, 13, 9]], np.float32)
    np.testing.assert_allclose(pairwise_distance(q, g, "euclidean", chunk_size=1), expected_sq, atol=1e-6)
    s = 1 / np.sqrt(2)
    expected_cos = np.array([[1 - s, 0, 1], [1 - s, 1, 2]], np.float32)
    np.testing.assert_allclose(pairwise_distance(q, g, "cosine"), expected_cos, atol=1e-6)
    with pytest.raises(ValueError, match="valid choices"):
        pairwise_distance(q, g, "manhattan")
