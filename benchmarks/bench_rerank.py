"""k-reciprocal re-ranking: time and peak memory of reidkit's sparse paths beside the classic dense one.

    python benchmarks/bench_rerank.py                  # Market-1501 scale (3,368 + 15,913 = 19,281 items)
    python benchmarks/bench_rerank.py --msmt           # also MSMT17 scale (11,659 + 82,161 = 93,820), features only
    python benchmarks/bench_rerank.py --classic-scale 0.5   # run the classic on a smaller problem (N x 0.5)
    python benchmarks/bench_rerank.py --cuda           # also the torch path on the GPU (time, GPU peak memory)

Every measurement runs in a fresh Python subprocess that generates the data (clustered random 512-d
float32 features, one cluster per identity), warms the Numba kernels up on a tiny problem, and then
times one call. Peak memory is that subprocess's ``ru_maxrss`` (resident set high-water mark of the
whole process: interpreter, torch, data and the call), printed with the high-water mark just before the
call, so "call" = peak - before is what the call added.

* ``features``: ``re_ranking_features(qf, gf)`` (NumPy/Numba path) from the features: the time covers
  all of it (tiled distances, lists, sets, weights, Jaccard).
* ``matrix``: ``re_ranking(q_g, q_q, g_g)`` on precomputed Euclidean distance matrices (not timed;
  they are in memory before the call: 1.3 GB at Market scale).
* ``classic``: a straightforward dense NumPy implementation of the classic algorithm (evaluation.md
  §3.1: N x N float32 arrays D~, V, V_qe, a full argsort, Python loops over items), on the same
  matrices. With ``--classic-scale s < 1`` it runs on round(s * P) + round(s * G) items and its time and
  memory are scaled to the full size (time and memory of the classic grow like N^2), clearly labelled.

* ``cuda``: ``re_ranking_torch(qf, gf)`` with the features on the GPU (``--cuda``); the time includes the
  synchronisation at the end, and ``torch.cuda.max_memory_allocated`` during the call is printed as the GPU
  peak. The result is copied back and compared with the Numba features path.

The outputs of ``features`` and ``matrix`` are compared with the classic's when it ran at full size.
MSMT17 scale is only run for ``features`` (one dense N x N float32 array would be 35 GB).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

MARKET = (3368, 15913)
MSMT17 = (11659, 82161)
DIM = 512


# --------------------------------------------------------------------------------------------------
# Data and the classic dense implementation
# --------------------------------------------------------------------------------------------------


def clustered_features(num_q: int, num_g: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Identity centres (about 13 images each) plus noise, float32, queries then gallery."""
    rng = np.random.default_rng(seed)
    n = num_q + num_g
    centres = rng.standard_normal((max(1, n // 13), DIM), dtype=np.float32)
    feats = centres[rng.integers(0, len(centres), n)]
    feats += 0.7 * rng.standard_normal((n, DIM), dtype=np.float32)
    return feats[:num_q], feats[num_q:]


def euclidean_matrices(qf: np.ndarray, gf: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Plain Euclidean q_g, q_q, g_g float32 (the classic squares them)."""
    from reidkit.evaluation import pairwise_distance

    out = []
    for a, b in ((qf, gf), (qf, qf), (gf, gf)):
        d = pairwise_distance(a, b, "euclidean")
        np.sqrt(d, out=d)
        out.append(d)
    return out[0], out[1], out[2]


def classic_dense(q_g: np.ndarray, q_q: np.ndarray, g_g: np.ndarray, k1: int = 20, k2: int = 6,
                  lambda_value: float = 0.3) -> np.ndarray:
    """The classic algorithm on dense N x N arrays, as widely distributed (evaluation.md §3.1, §3.4)."""
    num_q = q_g.shape[0]
    dist = np.concatenate([np.concatenate([q_q, q_g], axis=1), np.concatenate([q_g.T, g_g], axis=1)], axis=0)
    dist = np.power(dist, 2).astype(np.float32)
    dist = np.transpose(dist / np.max(dist, axis=0))
    n = dist.shape[0]
    weights = np.zeros_like(dist, dtype=np.float32)
    rank = np.argsort(dist).astype(np.int32)
    half = int(np.around(k1 / 2.0))

    def reciprocal(i: int, k: int) -> np.ndarray:
        forward = rank[i, : k + 1]
        backward = rank[forward, : k + 1]
        return forward[np.where(backward == i)[0]]

    for i in range(n):
        members = reciprocal(i, k1)
        expanded = members
        for cand in members:
            cand_members = reciprocal(cand, half)
            if len(np.intersect1d(cand_members, members)) > 2.0 / 3 * len(cand_members):
                expanded = np.append(expanded, cand_members)
        expanded = np.unique(expanded)
        w = np.exp(-dist[i, expanded])
        weights[i, expanded] = w / np.sum(w)
    dist = dist[:num_q]
    if k2 != 1:
        expanded_weights = np.zeros_like(weights, dtype=np.float32)
        for i in range(n):
            expanded_weights[i] = np.mean(weights[rank[i, :k2]], axis=0)
        weights = expanded_weights
        del expanded_weights
    del rank
    inverted = [np.where(weights[:, k] != 0)[0] for k in range(n)]
    jaccard = np.zeros_like(dist, dtype=np.float32)
    for p in range(num_q):
        min_sum = np.zeros((1, n), dtype=np.float32)
        support = np.where(weights[p] != 0)[0]
        for k in support:
            rows = inverted[k]
            min_sum[0, rows] += np.minimum(weights[p, k], weights[rows, k])
        jaccard[p] = 1 - min_sum / (2.0 - min_sum)
    final = jaccard * (1 - lambda_value) + dist * lambda_value
    return final[:, num_q:]


# --------------------------------------------------------------------------------------------------
# One measurement (runs in its own subprocess)
# --------------------------------------------------------------------------------------------------


def max_rss_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / 1e9  # Linux: KiB


def worker(impl: str, num_q: int, num_g: int, save: str | None) -> dict[str, float]:
    from reidkit.evaluation.rerank import re_ranking, re_ranking_features

    qf, gf = clustered_features(num_q, num_g)
    small = clustered_features(30, 300, seed=1)
    if impl == "cuda":
        import torch

        from reidkit.evaluation.rerank import re_ranking_torch

        re_ranking_torch(*(torch.as_tensor(a, device="cuda") for a in small))  # CUDA context, allocator
        q_t, g_t = torch.as_tensor(qf, device="cuda"), torch.as_tensor(gf, device="cuda")
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        before = max_rss_gb()
        start = time.perf_counter()
        result = re_ranking_torch(q_t, g_t)
        torch.cuda.synchronize()
        seconds = time.perf_counter() - start
        gpu_peak = (torch.cuda.max_memory_allocated() - base) / 1e9
        if save:
            np.save(save, result.cpu().numpy())
        return {"seconds": seconds, "peak_gb": max_rss_gb(), "before_gb": before, "gpu_call_gb": gpu_peak}
    if impl == "features":
        re_ranking_features(*small)  # compile or load the kernels
        before = max_rss_gb()
        start = time.perf_counter()
        out = re_ranking_features(qf, gf)
    else:
        mats = euclidean_matrices(qf, gf)
        del qf, gf
        if impl == "matrix":
            re_ranking(*euclidean_matrices(*small))
            fn = re_ranking
        else:
            fn = classic_dense
        before = max_rss_gb()
        start = time.perf_counter()
        out = fn(*mats)
    seconds = time.perf_counter() - start
    peak = max_rss_gb()
    if save:
        np.save(save, out)
    return {"seconds": seconds, "peak_gb": peak, "before_gb": before}


def measure(impl: str, num_q: int, num_g: int, save: Path | None = None, repeat: int = 1) -> dict[str, float]:
    """Best time of ``repeat`` fresh subprocesses (the largest peak), with the 1-minute load average."""
    runs = []
    for r in range(repeat):
        cmd = [sys.executable, __file__, "--worker", impl, "--num-q", str(num_q), "--num-g", str(num_g)]
        if save is not None and r == 0:
            cmd += ["--save", str(save)]
        load = os.getloadavg()[0]
        done = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"{impl} at {num_q} + {num_g} failed:\n{done.stderr[-3000:]}")
        runs.append(json.loads(done.stdout.strip().splitlines()[-1]) | {"load": load})
    best = min(runs, key=lambda res: res["seconds"])
    return best | {"peak_gb": max(res["peak_gb"] for res in runs), "runs": len(runs),
                   "all_seconds": [round(res["seconds"], 2) for res in runs]}


# --------------------------------------------------------------------------------------------------
# Report
# --------------------------------------------------------------------------------------------------


def row(label: str, n: int, res: dict, note: str = "") -> str:
    call = res["peak_gb"] - res["before_gb"]
    runs = f"best of {res['all_seconds']}, " if res.get("runs", 1) > 1 else ""
    load = f"load {res['load']:.1f}" if "load" in res else ""
    return (f"  {label:<26} {n:>7,} {res['seconds']:>9.2f} {res['peak_gb']:>9.2f} {res['before_gb']:>9.2f} "
            f"{call:>8.2f}  {runs}{load}{'; ' + note if note else ''}")


def compare(a: np.ndarray, b: np.ndarray) -> str:
    diff = float(np.abs(a - b).max())
    top1 = float(np.mean(a.argmin(axis=1) == b.argmin(axis=1)))
    return f"max |diff| {diff:.2e}, top-1 agreement {100 * top1:.2f} %"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--msmt", action="store_true", help="also run the features path at MSMT17 scale")
    parser.add_argument("--classic-scale", type=float, default=1.0,
                        help="run the classic at this fraction of P and G and scale by 1/s^2 (default 1: full size)")
    parser.add_argument("--skip-classic", action="store_true", help="do not run the classic at all")
    parser.add_argument("--repeat", type=int, default=3, help="runs of each reidkit path; the best time is shown")
    parser.add_argument("--cuda", action="store_true", help="also time re_ranking_torch on the GPU")
    parser.add_argument("--worker", choices=("features", "matrix", "classic", "cuda"), help=argparse.SUPPRESS)
    parser.add_argument("--num-q", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--num-g", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--save", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(args.worker, args.num_q, args.num_g, args.save)))
        return

    import numba
    import torch

    print(f"machine: {platform.machine()}, {os.cpu_count()} CPU cores, Python {platform.python_version()}, "
          f"NumPy {np.__version__}, torch {torch.__version__.split('+')[0]} ({torch.get_num_threads()} threads), "
          f"Numba {numba.__version__}")
    print(f"data: clustered random {DIM}-d float32 features; k1=20, k2=6, lambda=0.3; squared-Euclidean base")
    print("peak = ru_maxrss of a fresh subprocess (whole process); before = the same just before the call; "
          "call = peak - before;\nload = 1-minute load average when the run started (2 cores: above ~0.5 "
          "means other work shared the CPU)\n")
    num_q, num_g = MARKET
    n = num_q + num_g
    header = f"  {'implementation':<26} {'N':>7} {'seconds':>9} {'peak GB':>9} {'before GB':>9} {'call GB':>8}"
    print(f"Market-1501 scale: P = {num_q:,}, G = {num_g:,}")
    print(header)
    with tempfile.TemporaryDirectory(prefix="bench_rerank_") as tmp:
        out_f, out_m, out_c = (Path(tmp) / f"{name}.npy" for name in ("features", "matrix", "classic"))
        classic_full = not args.skip_classic and args.classic_scale >= 1.0
        feat = measure("features", num_q, num_g, out_f, args.repeat)
        print(row("reidkit features (Numba)", n, feat))
        mat = measure("matrix", num_q, num_g, out_m, args.repeat)
        print(row("reidkit matrix (Numba)", n, mat, "inputs 1.3 GB in 'before'"))
        classic = None
        if classic_full:
            classic = measure("classic", num_q, num_g, out_c)
            print(row("classic dense NumPy", n, classic))
        elif not args.skip_classic:
            s = args.classic_scale
            sq, sg = round(s * num_q), round(s * num_g)
            small = measure("classic", sq, sg)
            factor = (n / (sq + sg)) ** 2
            print(row(f"classic dense (N={sq + sg:,})", sq + sg, small))
            classic = {"seconds": small["seconds"] * factor, "peak_gb": small["peak_gb"] * factor,
                       "before_gb": small["before_gb"]}
            print(f"  classic scaled x{factor:.1f} (N^2) to N={n:,}: ~{classic['seconds']:.1f} s, "
                  f"~{classic['peak_gb']:.1f} GB (estimate, not measured)")
        if classic is not None:
            print(f"\n  ratios (classic / reidkit): features path {classic['seconds'] / feat['seconds']:.1f}x faster, "
                  f"{classic['peak_gb'] / feat['peak_gb']:.1f}x less peak memory; "
                  f"matrix path {classic['seconds'] / mat['seconds']:.1f}x faster, "
                  f"{classic['peak_gb'] / mat['peak_gb']:.1f}x less peak memory")
        f_out, m_out = np.load(out_f), np.load(out_m)
        print(f"  features vs matrix path: {compare(f_out, m_out)}")
        if args.cuda:
            out_g = Path(tmp) / "cuda.npy"
            gpu = measure("cuda", num_q, num_g, out_g, args.repeat)
            print(row("reidkit torch (CUDA)", n, gpu, f"GPU peak during the call {gpu['gpu_call_gb']:.2f} GB"))
            print(f"  CUDA torch path vs features path: {compare(np.load(out_g), f_out)}; "
                  f"{feat['seconds'] / gpu['seconds']:.1f}x faster than the Numba features path")
        if classic_full:
            c_out = np.load(out_c)
            print(f"  matrix path vs classic:   {compare(m_out, c_out)}")
            print(f"  features path vs classic: {compare(f_out, c_out)}")

    if args.msmt:
        num_q, num_g = MSMT17
        paths = "features path and CUDA torch path" if args.cuda else "features path only"
        print(f"\nMSMT17 scale: P = {num_q:,}, G = {num_g:,} ({paths}; output alone "
              f"{num_q * num_g * 4 / 1e9:.1f} GB)")
        print(header)
        print(row("reidkit features (Numba)", num_q + num_g, measure("features", num_q, num_g, repeat=1)))
        if args.cuda:
            gpu = measure("cuda", num_q, num_g, repeat=1)
            print(row("reidkit torch (CUDA)", num_q + num_g, gpu,
                      f"GPU peak during the call {gpu['gpu_call_gb']:.2f} GB"))


if __name__ == "__main__":
    main()
