"""Rank evaluation against the worked example and hand-made cases of evaluation.md §2 (values by hand)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from reidkit.evaluation import RankAccumulator, evaluate_rank, pairwise_distance


def worked_example() -> tuple[np.ndarray, ...]:
    # Gallery already in ascending distance order: pid, cam per evaluation.md §2.5.
    g_pids = np.array([7, 3, 7, 0, 7, 5, 7, 9, 7])
    g_cams = np.array([0, 1, 2, 4, 1, 3, 0, 2, 5])
    dist = np.arange(1, 10, dtype=np.float32)[None, :]
    return dist, np.array([7]), g_pids, np.array([0]), g_cams


def test_worked_example_standard_ap_inp_and_cmc() -> None:
    # kept ranks of the matches k = (2, 4, 7): AP = (1/2 + 2/4 + 3/7)/3 = 10/21, INP = 3/7.
    res = evaluate_rank(*worked_example(), max_rank=10)
    assert res.ap[0] == pytest.approx(10 / 21, abs=1e-12)
    assert res.inp[0] == pytest.approx(3 / 7, abs=1e-12)
    assert res.mAP == pytest.approx(10 / 21, abs=1e-12) and res.mINP == pytest.approx(3 / 7, abs=1e-12)
    # CMC stays 1 after the first hit, also beyond the 7 kept items.
    np.testing.assert_array_equal(res.cmc, np.array([0] + [1] * 9, dtype=np.float32))
    assert res.cmc.dtype == np.float32 and res.ap.dtype == np.float64 and res.first_hit.dtype == np.int64
    assert res.first_hit[0] == 2 and res.valid[0]
    assert (res.protocol, res.ap_kind) == ("market", "standard")


def test_worked_example_official_ap() -> None:
    # [(0 + 1/2)/2 + (1/3 + 2/4)/2 + (2/6 + 3/7)/2] / 3 = 22/63
    res = evaluate_rank(*worked_example(), ap="official")
    assert res.mAP == pytest.approx(22 / 63, abs=1e-12) and res.ap_kind == "official"
    assert len(res.cmc) == 50 and res.cmc[0] == 0 and (res.cmc[1:] == 1).all()


def test_worked_example_in_shuffled_gallery_order() -> None:
    # The same ranking with the gallery stored in another order gives the same metrics.
    dist, qp, gp, qc, gc = worked_example()
    perm = np.random.default_rng(0).permutation(9)
    res = evaluate_rank(dist[:, perm], qp, gp[perm], qc, gc[perm], max_rank=8)
    assert res.ap[0] == pytest.approx(10 / 21, abs=1e-12) and res.first_hit[0] == 2


def test_worked_example_cuhk03_single_gallery_shot() -> None:
    # Groups in first-appearance order: pid 3, 7, 0, 5, 9 with sizes 1, 3, 1, 1, 1 (the two pid-7 images
    # of camera 0 are removed). Choosing the pid-7 image at kept rank 2, 4 or 7 gives hit rank 2, 3 or 5.
    dist, qp, gp, qc, gc = worked_example()
    res = evaluate_rank(dist, qp, gp, qc, gc, max_rank=6, protocol="cuhk03", rng=np.random.default_rng(5))
    choice = np.random.default_rng(5).integers(0, [1, 3, 1, 1, 1], size=(10, 5))[:, 1]  # the documented draw
    hits = np.array([2, 3, 5])[choice]
    expected = np.array([(hits <= r).sum() for r in range(1, 7)], np.float32) / np.float32(10)
    np.testing.assert_array_equal(res.cmc, expected)
    # AP, INP and first hit are those of the full multi-shot list.
    assert res.ap[0] == pytest.approx(10 / 21, abs=1e-12) and res.inp[0] == pytest.approx(3 / 7, abs=1e-12)
    assert res.first_hit[0] == 2 and res.protocol == "cuhk03"


def test_worked_example_cuhk03_expected_cmc() -> None:
    # 2,000 copies of the query: CMC@1 = 0, @2 ~ 1/3, @3 ~ 2/3, @5 = 1 (each of the 3 images is chosen
    # uniformly); std of the mean of 20,000 draws < 0.004.
    dist, qp, gp, qc, gc = worked_example()
    n = 2000
    res = evaluate_rank(
        np.repeat(dist, n, 0), np.repeat(qp, n), gp, np.repeat(qc, n), gc, max_rank=5,
        protocol="cuhk03", rng=np.random.default_rng(0),
    )
    assert res.cmc[0] == 0 and res.cmc[4] == 1 and res.cmc[3] == res.cmc[2]
    assert res.cmc[1] == pytest.approx(1 / 3, abs=0.02) and res.cmc[2] == pytest.approx(2 / 3, abs=0.02)


def test_cuhk03_needs_a_generator_and_market_refuses_one() -> None:
    args = worked_example()
    with pytest.raises(ValueError, match="needs rng=numpy.random.Generator"):
        evaluate_rank(*args, protocol="cuhk03")
    with pytest.raises(ValueError, match="needs rng=numpy.random.Generator"):
        evaluate_rank(*args, protocol="cuhk03", rng=np.random.RandomState(0))
    with pytest.raises(ValueError, match="only used with protocol='cuhk03'"):
        evaluate_rank(*args, rng=np.random.default_rng(0))
    with pytest.raises(ValueError, match="protocol='viper'"):
        evaluate_rank(*args, protocol="viper")


def test_ties_are_broken_by_gallery_index() -> None:
    # Both gallery items at the same distance: the negative (index 0) ranks first.
    res = evaluate_rank(
        np.zeros((1, 2), np.float32), np.array([1]), np.array([2, 1]), np.array([0]), np.array([1, 1])
    )
    assert res.first_hit[0] == 2 and res.ap[0] == pytest.approx(0.5)
    # Positive first when it has the smaller index.
    res = evaluate_rank(
        np.zeros((1, 2), np.float32), np.array([1]), np.array([1, 2]), np.array([0]), np.array([1, 1])
    )
    assert res.first_hit[0] == 1 and res.ap[0] == 1.0


def test_ties_between_positives_and_negatives_by_hand() -> None:
    # distances: idx0 neg 1.0, idx1 pos 1.0, idx2 neg 1.0, idx3 pos 0.5, idx4 neg 0.5, idx5 pos 1.0
    # key order: (0.5,3)+ (0.5,4)- (1,0)- (1,1)+ (1,2)- (1,5)+  ->  k = 1, 4, 6
    dist = np.array([[1.0, 1.0, 1.0, 0.5, 0.5, 1.0]], np.float32)
    gp = np.array([2, 1, 3, 1, 4, 1])
    res = evaluate_rank(dist, np.array([1]), gp, np.array([0]), np.ones(6, np.int64), max_rank=3)
    assert res.first_hit[0] == 1
    assert res.ap[0] == pytest.approx((1 / 1 + 2 / 4 + 3 / 6) / 3, abs=1e-12)
    assert res.inp[0] == pytest.approx(3 / 6, abs=1e-12)


def test_invalid_queries_are_excluded_and_all_invalid_is_an_error() -> None:
    dist = np.array([[0.1, 0.2], [0.3, 0.1]], np.float32)
    # Query 1 (pid 2) only matches a gallery item in its own camera: invalid.
    res = evaluate_rank(dist, np.array([1, 2]), np.array([1, 2]), np.array([0, 1]), np.array([1, 1]))
    assert res.valid.tolist() == [True, False] and res.mAP == 1.0 and np.isnan(res.ap[1])
    assert res.first_hit.tolist() == [1, 0] and res.num_valid == 1
    with pytest.raises(ValueError, match="no valid query"):
        evaluate_rank(dist[1:], np.array([2]), np.array([1, 2]), np.array([1]), np.array([1, 1]))


def test_cmc_divides_counts_by_valid_queries_in_float32() -> None:
    # 3 valid queries, first hits 1, 2, 3 (+ one invalid): CMC = float32(count) / float32(3).
    g_pids = np.array([1, 2, 3, 9, 9, 9])
    dist = np.array(
        [[0, 5, 5, 1, 1, 1], [5, 1, 5, 0, 1, 1], [5, 5, 2, 0, 1, 5], [0, 0, 0, 0, 0, 0]], np.float32
    )
    res = evaluate_rank(dist, np.array([1, 2, 3, 4]), g_pids, np.zeros(4, np.int64), np.ones(6, np.int64), max_rank=4)
    expected = np.array([1, 2, 3, 3], np.float32) / np.float32(3)
    np.testing.assert_array_equal(res.cmc, expected)
    assert res.first_hit.tolist() == [1, 2, 3, 0]


def test_max_rank_beyond_gallery_and_summary() -> None:
    res = evaluate_rank(*worked_example(), max_rank=100)
    assert len(res.cmc) == 100 and res.rank(100) == 1.0
    assert res.summary() == "mAP 47.6% | mINP 42.9% | R1 0.0% | R5 100.0% | R10 100.0%"
    with pytest.raises(ValueError, match="rank 101 outside"):
        res.rank(101)


def test_float64_and_torch_inputs_give_the_same_result() -> None:
    dist, qp, gp, qc, gc = worked_example()
    a = evaluate_rank(dist, qp, gp, qc, gc)
    b = evaluate_rank(dist.astype(np.float64), qp, gp, qc, gc)
    c = evaluate_rank(torch.from_numpy(dist), torch.from_numpy(qp), gp, qc, gc)
    for other in (b, c):
        np.testing.assert_array_equal(a.cmc, other.cmc)
        assert a.ap[0] == other.ap[0] and a.inp[0] == other.inp[0]


def test_bad_input_errors_name_the_value() -> None:
    dist, qp, gp, qc, gc = worked_example()
    with pytest.raises(ValueError, match="ap='trapezoid'"):
        evaluate_rank(dist, qp, gp, qc, gc, ap="trapezoid")
    with pytest.raises(ValueError, match="NaN distances"):
        evaluate_rank(np.full_like(dist, np.nan), qp, gp, qc, gc)
    with pytest.raises(ValueError, match="g_pids must be 1-D of length 9"):
        evaluate_rank(dist, qp, gp[:3], qc, gc)
    with pytest.raises(ValueError, match="q_pids must hold integers"):
        evaluate_rank(dist, qp.astype(float), gp, qc, gc)
    with pytest.raises(ValueError, match="max_rank must be a positive integer, got 0"):
        evaluate_rank(dist, qp, gp, qc, gc, max_rank=0)
    with pytest.raises(ValueError, match="distmat must be 2-D"):
        evaluate_rank(dist[0], qp, gp, qc, gc)
    with pytest.raises(ValueError, match="dtype complex64"):
        evaluate_rank(dist.astype(np.complex64), qp, gp, qc, gc)


def test_nan_is_an_error_in_any_row_and_named() -> None:
    # NaN in a row of an invalid query, at a removed item and at a negative after the last positive.
    dist, qp, gp, qc, gc = worked_example()
    for col in (0, 3, 8):
        d = np.repeat(dist, 3, 0)
        d[2, col] = np.nan
        with pytest.raises(ValueError, match="first in query row 2"):
            evaluate_rank(d, np.array([7, 7, 7]), gp, np.array([0, 0, 0]), gc)
    d = np.vstack([dist, dist])
    d[1, 4] = np.nan
    with pytest.raises(ValueError, match="NaN"):  # query 1 (pid 1) has no positive at all
        evaluate_rank(d, np.array([7, 1]), gp, np.array([0, 0]), gc)


def test_accumulator_merges_blocks_like_one_call() -> None:
    rng = np.random.default_rng(1)
    dist = rng.random((9, 30)).astype(np.float32)
    qp, gp = rng.integers(0, 4, 9), rng.integers(0, 4, 30)
    qc, gc = rng.integers(0, 2, 9), rng.integers(0, 2, 30)
    whole = evaluate_rank(dist, qp, gp, qc, gc, max_rank=10)
    acc = RankAccumulator(gp, gc, max_rank=10)
    for rows in (slice(0, 2), slice(2, 2), slice(2, 7), slice(7, 9)):
        acc.add(dist[rows], qp[rows], qc[rows])
    merged = acc.result()
    np.testing.assert_array_equal(merged.cmc, whole.cmc)
    np.testing.assert_array_equal(merged.ap, whole.ap)
    assert merged.mAP == whole.mAP and merged.mINP == whole.mINP
    with pytest.raises(ValueError, match="29 gallery columns, expected 30"):
        acc.add(dist[:2, :29], qp[:2], qc[:2])


def test_squared_euclidean_and_cosine_distances() -> None:
    q = torch.tensor([[1.0, 0.0], [0.0, 2.0]])
    g = torch.tensor([[1.0, 1.0], [3.0, 0.0], [0.0, -1.0]])
    expected_sq = np.array([[1, 4, 2], [2, 13, 9]], np.float32)
    np.testing.assert_allclose(pairwise_distance(q, g, "euclidean", chunk_size=1), expected_sq, atol=1e-6)
    np.testing.assert_allclose(pairwise_distance(q.numpy(), g.numpy().astype(np.float64)), expected_sq, atol=1e-6)
    s = 1 / np.sqrt(2)
    expected_cos = np.array([[1 - s, 0, 1], [1 - s, 1, 2]], np.float32)
    out = pairwise_distance(q, g, "cosine")
    np.testing.assert_allclose(out, expected_cos, atol=1e-6)
    assert out.dtype == np.float32 and isinstance(out, np.ndarray)
    with pytest.raises(ValueError, match="valid choices"):
        pairwise_distance(q, g, "manhattan")
    with pytest.raises(ValueError, match="same D"):
        pairwise_distance(q, g[:, :1])
    with pytest.raises(ValueError, match="chunk_size must be a positive integer"):
        pairwise_distance(q, g, chunk_size=0)


def test_pairwise_distance_ignores_autograd() -> None:
    q = torch.randn(3, 4, requires_grad=True)
    out = pairwise_distance(q, torch.randn(5, 4))
    assert out.shape == (3, 5) and out.dtype == np.float32
