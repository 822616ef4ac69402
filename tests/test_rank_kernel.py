"""The Numba rank kernels equal the plain argsort reference (tests/reference_eval.py) on random cases.

Exact equality of CMC arrays, first hits and validity; AP and INP within 1e-12. Cases cover invalid
queries, tiny galleries (G < max_rank), tied distances, distractors (pid 0), a single camera, one query,
infinite distances, float64 input, both AP forms and both protocols, and positives sets large enough
to take every branch of the insertion-point search (<= 256, <= 16,384 and more positives).
"""
from __future__ import annotations

import numpy as np
import pytest
from reference_eval import reference_evaluate

from reidkit.evaluation import evaluate_rank


def assert_same(dist, q_pids, g_pids, q_camids, g_camids, max_rank=50, protocol="market", ap="standard", seed=0):
    """Kernel and reference agree, including on raising ValueError."""
    rng = (lambda: np.random.default_rng(seed)) if protocol == "cuhk03" else (lambda: None)
    args = (dist, q_pids, g_pids, q_camids, g_camids, max_rank, protocol, ap)
    try:
        ref = reference_evaluate(*args, rng())
    except ValueError as err:
        with pytest.raises(ValueError, match=str(err)):
            evaluate_rank(*args, rng())
        return "error"
    res = evaluate_rank(*args, rng())
    np.testing.assert_array_equal(res.cmc, ref.cmc)
    assert res.cmc.dtype == np.float32
    np.testing.assert_array_equal(res.first_hit, ref.first_hit)
    np.testing.assert_array_equal(res.valid, ref.valid)
    np.testing.assert_allclose(res.ap, ref.ap, rtol=0, atol=1e-12)  # NaN where invalid in both
    np.testing.assert_allclose(res.inp, ref.inp, rtol=0, atol=1e-12)
    assert abs(res.mAP - ref.mAP) <= 1e-12 and abs(res.mINP - ref.mINP) <= 1e-12
    return "ok"


def random_case(rng: np.random.Generator) -> dict:
    num_q = 1 if rng.random() < 0.15 else int(rng.integers(1, 8))
    num_g = int(rng.integers(1, 12)) if rng.random() < 0.4 else int(rng.integers(12, 90))  # often G < max_rank
    num_ids = int(rng.integers(1, 9))
    num_cams = 1 if rng.random() < 0.1 else int(rng.integers(2, 5))
    g_pids = rng.integers(0, num_ids + 1, num_g)  # pid 0: distractors
    q_pids = rng.integers(1, num_ids + 1, num_q)
    kind = rng.random()
    if kind < 0.4:  # many ties
        dist = rng.integers(0, 4, (num_q, num_g)).astype(np.float32)
    elif kind < 0.5:  # ties and infinities
        dist = rng.choice(np.array([0.0, 1.0, np.inf, -np.inf], np.float32), (num_q, num_g))
    else:
        dist = rng.random((num_q, num_g), dtype=np.float32)
    protocol = "cuhk03" if rng.random() < 0.3 else "market"
    if protocol == "market" and rng.random() < 0.1:  # (float64 CUHK03 would only cost a compile)
        dist = dist.astype(np.float64)
    return dict(
        dist=dist, q_pids=q_pids, g_pids=g_pids,
        q_camids=rng.integers(0, num_cams, num_q), g_camids=rng.integers(0, num_cams, num_g),
        max_rank=int(rng.integers(1, 60)),
        protocol=protocol,
        ap="official" if rng.random() < 0.4 else "standard",
        seed=int(rng.integers(2**31)),
    )


def test_kernel_equals_reference_on_random_cases() -> None:
    rng = np.random.default_rng(2024)
    outcomes = [assert_same(**random_case(rng)) for _ in range(3000)]
    assert outcomes.count("ok") > 2000 and outcomes.count("error") > 50  # both paths exercised


def test_single_camera_everywhere_is_all_invalid() -> None:
    rng = np.random.default_rng(3)
    dist = rng.random((4, 20), dtype=np.float32)
    pids = rng.integers(1, 3, 20)
    with pytest.raises(ValueError, match="no valid query among 4"):
        evaluate_rank(dist, pids[:4], pids, np.zeros(4, np.int64), np.zeros(20, np.int64))
    # Gallery from one camera, queries from another: every query with its pid in the gallery is valid.
    assert assert_same(dist, pids[:4], pids, np.ones(4, np.int64), np.zeros(20, np.int64)) == "ok"


@pytest.mark.parametrize("num_ids", [40, 3, 1])
def test_kernel_equals_reference_with_many_positives(num_ids: int) -> None:
    # 4,000 gallery items over `num_ids` identities: ~80, ~1,050 and ~3,200 positives per query (the
    # vectorised count over all positives, then the count over block heads; merge-sorted positives).
    rng = np.random.default_rng(num_ids)
    num_q, num_g = 12, 4000
    g_pids = rng.integers(1, num_ids + 1, num_g)
    g_pids[:200] = 0
    dist = rng.integers(0, 300, (num_q, num_g)).astype(np.float32)  # plenty of ties
    for protocol in ("market", "cuhk03"):
        assert assert_same(
            dist, rng.integers(1, num_ids + 1, num_q), g_pids, rng.integers(0, 6, num_q),
            rng.integers(0, 6, num_g), max_rank=30, protocol=protocol, ap="official",
        ) == "ok"


def test_kernel_equals_reference_beyond_16384_positives() -> None:
    # One identity with ~27,000 positives (> 1,024 blocks of 16): the binary search over block heads.
    rng = np.random.default_rng(7)
    num_g = 40000
    g_pids = np.where(rng.random(num_g) < 0.9, 5, rng.integers(0, 9, num_g))
    dist = rng.integers(0, 5000, (2, num_g)).astype(np.float32)
    assert assert_same(
        dist, np.array([5, 5]), g_pids, np.array([0, 1]), rng.integers(0, 4, num_g), max_rank=10
    ) == "ok"


def test_market_scale_random_labels_against_reference_on_a_subset() -> None:
    # Random labels as evaluation.md §2.11, 40 query rows of a Market-sized gallery.
    rng = np.random.default_rng(11)
    num_g = 15913
    assert assert_same(
        rng.random((40, num_g), dtype=np.float32), rng.integers(1, 752, 40), rng.integers(0, 752, num_g),
        rng.integers(0, 6, 40), rng.integers(0, 6, num_g),
    ) == "ok"


def test_numba_cache_falls_back_when_the_package_folder_is_read_only(
    monkeypatch: pytest.MonkeyPatch, tmp_path
) -> None:
    from reidkit.evaluation import kernels

    monkeypatch.setattr(kernels.numba.config, "CACHE_DIR", "")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.setattr(kernels, "_writable", lambda folder: str(folder).startswith(str(tmp_path)))
    kernels._choose_cache_dir()
    assert kernels.numba.config.CACHE_DIR == str(tmp_path / "reidkit" / "numba")
    monkeypatch.setattr(kernels.numba.config, "CACHE_DIR", "/chosen/by/user")  # NUMBA_CACHE_DIR wins
    kernels._choose_cache_dir()
    assert kernels.numba.config.CACHE_DIR == "/chosen/by/user"
