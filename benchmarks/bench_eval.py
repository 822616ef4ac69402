"""Rank evaluation at benchmark scale: the Numba kernel against argsort references, and chunked evaluation.

    python benchmarks/bench_eval.py                  # --part all
    python benchmarks/bench_eval.py --part market    # 3,368 x 15,913: kernel vs argsort references, compile
    python benchmarks/bench_eval.py --part msmt      # 11,659 x 82,161 via evaluate_features, peak RSS
    python benchmarks/bench_eval.py --part 500k      # 3,368 x 500,000 (Market1501-500k size), peak RSS

Features are synthetic and clustered (one random centre per identity plus noise and a per-camera shift;
distractors with pid 0 are random points), with the split sizes of evaluation.md §1.7 and random cameras.
Every part runs in its own child process, so its peak resident memory (``resource.getrusage``
``ru_maxrss``: the whole process, Python and torch included) is its own; the memory held before the
evaluation starts (features and labels) is printed next to it. Compile time is measured in a child with
an empty ``NUMBA_CACHE_DIR``; the other timings use compiled (cached) kernels and are the best of a few
runs where stated.
"""
from __future__ import annotations

import argparse
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))  # the plain argsort reference lives with the tests

from reference_eval import reference_evaluate  # noqa: E402

from reidkit.evaluation import (  # noqa: E402
    RankAccumulator,
    RankResult,
    distance_chunks,
    evaluate_features,
    evaluate_rank,
    pairwise_distance,
)
from reidkit.evaluation.chunked import auto_chunk_size  # noqa: E402

DIM = 512


def rss_gb() -> float:
    """Peak resident set size of this process so far, in GB (ru_maxrss is in KiB on Linux)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def market_like_labels(
    num_q: int, num_g_real: int, num_distractors: int, num_ids: int, num_cams: int, rng: np.random.Generator
) -> tuple[np.ndarray, ...]:
    """Query/gallery pids and cameras: every query id has gallery images; pid 0 = distractor."""
    q_pids = rng.permutation(np.arange(num_q) % num_ids + 1)
    g_pids = np.concatenate([rng.permutation(np.arange(num_g_real) % num_ids + 1), np.zeros(num_distractors, np.int64)])
    return q_pids, g_pids, rng.integers(0, num_cams, num_q), rng.integers(0, num_cams, len(g_pids))


def clustered_features(
    pids: np.ndarray, cams: np.ndarray, num_ids: int, num_cams: int, seed: int, noise: float = 1.3,
    rows: int = 65536,
) -> torch.Tensor:
    """float32 (N, DIM): centre of the pid + camera shift + noise (``seed``); pid 0 rows are random points.

    Written block by block into one tensor, so generating 500,000 x 512 never holds more than one copy.
    """
    shared = torch.Generator().manual_seed(12345)  # the same centres and camera shifts for query and gallery
    centres = torch.randn(num_ids + 1, DIM, generator=shared)
    shifts = 0.5 * torch.randn(num_cams, DIM, generator=shared)
    gen = torch.Generator().manual_seed(seed)
    out = torch.empty(len(pids), DIM)
    for start in range(0, len(pids), rows):
        p = torch.from_numpy(pids[start : start + rows])
        c = torch.from_numpy(cams[start : start + rows])
        block = centres[p] + shifts[c] + noise * torch.randn(len(p), DIM, generator=gen)
        distractor = p == 0
        block[distractor] = 1.2 * torch.randn(int(distractor.sum()), DIM, generator=gen)
        out[start : start + rows] = block
    return out


def vectorised_reference(dist, q_pids, g_pids, q_camids, g_camids, max_rank=50) -> tuple[np.ndarray, float, float]:
    """Argsort reference in the style of torchreid's Python path, but vectorised over all queries.

    One stable ``np.argsort(dist, axis=1)`` (Q x G int64), boolean matrices of matches and removed items,
    cumulative sums along rows for kept ranks; returns (CMC float32, mAP, mINP) with the same conventions.
    """
    order = np.argsort(dist, axis=1, kind="stable")
    match = g_pids[order] == q_pids[:, None]
    removed = match & (g_camids[order] == q_camids[:, None])
    del order
    match &= ~removed
    kept_rank = np.cumsum(~removed, axis=1, dtype=np.int32)  # 1-based kept rank at every position
    hits_so_far = np.cumsum(match, axis=1, dtype=np.int32)  # i at the i-th positive
    num_pos = hits_so_far[:, -1]
    valid = num_pos > 0
    precision_sum = np.where(match, hits_so_far / np.maximum(kept_rank, 1), 0.0).sum(axis=1)
    first = np.where(valid, kept_rank[np.arange(len(q_pids)), match.argmax(axis=1)], 0)
    last_pos = dist.shape[1] - 1 - match[:, ::-1].argmax(axis=1)
    last = kept_rank[np.arange(len(q_pids)), last_pos]
    ap = precision_sum[valid] / num_pos[valid]
    inp = num_pos[valid] / last[valid]
    counts = np.array([(first[valid] <= r).sum() for r in range(1, max_rank + 1)])
    return counts.astype(np.float32) / np.float32(valid.sum()), float(ap.mean()), float(inp.mean())


def best_of(fn, repeats: int) -> tuple[float, object]:
    best, out = float("inf"), None
    for _ in range(repeats):
        start = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - start)
    return best, out


def one_thread(fn):
    """``fn()`` with the Numba kernels on one thread."""
    import numba

    threads = numba.get_num_threads()
    numba.set_num_threads(1)
    try:
        return fn()
    finally:
        numba.set_num_threads(threads)


def compile_seconds() -> tuple[float, float]:
    """(first call with an empty Numba cache, first call in a new process with that cache filled)."""
    code = (
        "import time, numpy as np; from reidkit.evaluation import evaluate_rank; t = time.perf_counter(); "
        "evaluate_rank(np.array([[0.5, 1.0]], np.float32), np.array([1]), np.array([1, 2]), np.array([0]), "
        "np.array([1, 1])); print(time.perf_counter() - t)"
    )
    with tempfile.TemporaryDirectory(prefix="numba_cache_") as cache:
        env = {**os.environ, "NUMBA_CACHE_DIR": cache}
        times = [float(subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                                      check=True).stdout) for _ in range(2)]
    return times[0], times[1]


def part_market() -> None:
    rng = np.random.default_rng(0)
    q_pids, g_pids, q_cams, g_cams = market_like_labels(3368, 13115, 2798, 750, 6, rng)
    qf = clustered_features(q_pids, q_cams, 750, 6, seed=1)
    gf = clustered_features(g_pids, g_cams, 750, 6, seed=2)
    seconds, dist = best_of(lambda: pairwise_distance(qf, gf), 2)
    print(f"Market scale: {len(q_pids):,} x {len(g_pids):,} float32, 751 gallery ids (pid 0: 2,798 distractors), "
          f"6 cameras, {DIM}-d clustered features")
    print(f"  squared Euclidean distances (torch, 1,024-row blocks)   {seconds:8.3f} s")
    cold, warm = compile_seconds()
    print(f"  Numba compile, first call with an empty cache           {cold:8.2f} s")
    print(f"  first call in a new process, kernel cached on disk      {warm:8.2f} s")

    args = (dist, q_pids, g_pids, q_cams, g_cams)
    evaluate_rank(*args)  # warm up (loads the cached kernel)
    t_kernel, res = best_of(lambda: evaluate_rank(*args), 10)
    t_kernel_1 = one_thread(lambda: best_of(lambda: evaluate_rank(*args), 10)[0])
    t_argsort, _ = best_of(lambda: np.argsort(dist, axis=1), 2)
    t_stable, _ = best_of(lambda: np.argsort(dist, axis=1, kind="stable"), 2)
    t_vec, (cmc_v, map_v, minp_v) = best_of(lambda: vectorised_reference(*args), 1)
    t_plain, ref = best_of(lambda: reference_evaluate(*args), 1)
    assert isinstance(res, RankResult)
    same = (np.array_equal(res.cmc, ref.cmc) and np.array_equal(res.first_hit, ref.first_hit)
            and np.nanmax(np.abs(res.ap - ref.ap)) <= 1e-12 and np.array_equal(res.cmc, cmc_v))
    print(f"  {res.summary()}  (standard AP; kernel == both references: {same})")
    print(f"  {'method':<64}{'seconds':>9}{'kernel faster by':>18}")
    rows = [
        ("Numba kernel (evaluate_rank, 2 threads, best of 10)", t_kernel),
        ("Numba kernel (evaluate_rank, 1 thread, best of 10)", t_kernel_1),
        ("np.argsort(dist, axis=1) alone (the floor of argsort methods)", t_argsort),
        ("np.argsort(dist, axis=1, kind='stable') alone", t_stable),
        ("vectorised NumPy argsort reference (torchreid-style)", t_vec),
        ("plain reference, one stable argsort per row (tests/)", t_plain),
    ]
    for name, t in rows:
        print(f"  {name:<64}{t:>9.3f}{t / t_kernel:>17.1f}x")

    # Random labels and uniform random distances, as measured in evaluation.md §2.11 (the worst case
    # for the kernel: positives spread over the whole ranking).
    rnd = np.random.default_rng(1)
    dist_r = rnd.random((3368, 15913), dtype=np.float32)
    args_r = (dist_r, rnd.integers(1, 752, 3368), rnd.integers(0, 752, 15913), rnd.integers(0, 6, 3368),
              rnd.integers(0, 6, 15913))
    evaluate_rank(*args_r)
    t_kernel_r, _ = best_of(lambda: evaluate_rank(*args_r), 10)
    t_kernel_r1 = one_thread(lambda: best_of(lambda: evaluate_rank(*args_r), 10)[0])
    t_argsort_r, _ = best_of(lambda: np.argsort(dist_r, axis=1), 2)
    print(f"  random labels and distances (§2.11): kernel {t_kernel_r:.3f} s (1 thread {t_kernel_r1:.3f} s), "
          f"np.argsort alone {t_argsort_r:.3f} s ({t_argsort_r / t_kernel_r:.1f}x)")


def part_chunked(
    name: str, num_q: int, num_g_real: int, num_distractors: int, num_ids: int, num_cams: int, noise: float
) -> None:
    rng = np.random.default_rng(0)
    q_pids, g_pids, q_cams, g_cams = market_like_labels(num_q, num_g_real, num_distractors, num_ids, num_cams, rng)
    start = time.perf_counter()
    qf = clustered_features(q_pids, q_cams, num_ids, num_cams, seed=1, noise=noise)
    gf = clustered_features(g_pids, g_cams, num_ids, num_cams, seed=2, noise=noise)
    gen_seconds = time.perf_counter() - start
    before = rss_gb()
    num_g = len(g_pids)
    chunk = auto_chunk_size(num_g)
    print(f"{name}: {num_q:,} x {num_g:,} ({num_ids:,} ids, {num_distractors:,} distractors, {num_cams} cameras), "
          f"{DIM}-d float32 features (noise {noise}; {gf.numel() * 4 / 1e9:.2f} GB gallery), "
          f"generated in {gen_seconds:.1f} s")
    evaluate_rank(np.array([[0.5, 1.0]], np.float32), np.array([1]), np.array([1, 2]), np.array([0]), np.array([1, 1]))
    start = time.perf_counter()
    res = evaluate_features(qf, gf, q_pids, g_pids, q_cams, g_cams, chunk_size=chunk)
    seconds = time.perf_counter() - start
    peak = rss_gb()
    # The same work again with a stopwatch on each step (what evaluate_features does inside).
    acc = RankAccumulator(g_pids, g_cams)
    dist_seconds = kernel_seconds = 0.0
    start = time.perf_counter()
    for row, block in distance_chunks(qf, gf, "euclidean", chunk):
        mid = time.perf_counter()
        acc.add(block, q_pids[row : row + len(block)], q_cams[row : row + len(block)])
        end = time.perf_counter()
        dist_seconds += mid - start
        kernel_seconds += end - mid
        start = end
    assert acc.result().mAP == res.mAP
    dense_gb = num_q * num_g * 4 / 1e9
    print(f"  evaluate_features, squared Euclidean, {chunk} query rows per block "
          f"({chunk * num_g * 4 / 2**20:.0f} MiB; the dense matrix would be {dense_gb:.1f} GB)")
    print(f"  time {seconds:.1f} s; a second, instrumented pass: distances {dist_seconds:.1f} s + kernel "
          f"{kernel_seconds:.2f} s")
    print(f"  {res.summary()}")
    print(f"  peak RSS (ru_maxrss, whole process) {peak:.2f} GB; {before:.2f} GB before evaluating "
          f"(features, labels, Python, torch)")


PARTS = {
    "market": part_market,
    "msmt": lambda: part_chunked("MSMT17 scale", 11659, 82161, 0, 3060, 15, noise=2.0),
    "500k": lambda: part_chunked("Market1501-500k scale", 3368, 13115, 500000 - 13115, 750, 6, noise=1.3),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--part", choices=[*PARTS, "all"], default="all")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        PARTS[args.part]()
        return
    print(f"machine: {platform.machine()}, {os.cpu_count()} CPU cores, Python {platform.python_version()}, "
          f"torch {torch.__version__} ({torch.get_num_threads()} threads), NumPy {np.__version__}")
    for part in PARTS if args.part == "all" else [args.part]:
        print(flush=True)
        subprocess.run([sys.executable, __file__, "--part", part, "--child"], check=True)


if __name__ == "__main__":
    main()
