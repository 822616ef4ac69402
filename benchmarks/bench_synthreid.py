"""SynthReID generation time per preset, and the colour-histogram baseline on ``small``.

    python benchmarks/bench_synthreid.py                 # tiny and small, baseline on small
    python benchmarks/bench_synthreid.py --market        # also the Market-sized preset
    python benchmarks/bench_synthreid.py --seeds 0 1 2   # baseline on several seeds of small

Every dataset is written into a fresh temporary folder (removed at the end), so timings include
planning, rendering, JPEG encoding, the manifest and the atomic rename.
"""
from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np

from reidkit.data.datasets import SynthReID
from reidkit.data.synthetic import generate_synthreid
from reidkit.evaluation import evaluate_rank, pairwise_distance
from reidkit.models.handcrafted import color_histogram_features


def time_generation(root: Path, preset: str, seed: int, workers: int) -> tuple[float, Path, int]:
    """Seconds to generate ``preset`` into a new folder below ``root``, the folder and its file count."""
    out = root / f"synthreid_{preset}_s{seed}_w{workers}"
    start = time.perf_counter()
    summary = generate_synthreid(out, preset=preset, seed=seed, workers=workers)
    return time.perf_counter() - start, out, summary.num_files


def baseline(root: Path) -> tuple[dict[str, float], float]:
    """Colour-histogram baseline on a SynthReID folder: metrics and feature-extraction seconds."""
    ds = SynthReID(root)
    start = time.perf_counter()
    qf = color_histogram_features([item.path for item in ds.query])
    gf = color_histogram_features([item.path for item in ds.gallery])
    seconds = time.perf_counter() - start
    result = evaluate_rank(
        pairwise_distance(qf, gf, "euclidean"),
        np.array([i.pid for i in ds.query]), np.array([i.pid for i in ds.gallery]),
        np.array([i.camid for i in ds.query]), np.array([i.camid for i in ds.gallery]),
    )
    metrics = {"mAP": result.mAP, "rank1": result.rank(1), "rank5": result.rank(5), "mINP": result.mINP}
    return metrics, seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--market", action="store_true", help="also time the market preset")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="workers for market")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0], help="seeds of small for the baseline")
    args = parser.parse_args()

    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPU cores, "
          f"Python {platform.python_version()}")
    with tempfile.TemporaryDirectory(prefix="bench_synthreid_") as tmp:
        root = Path(tmp)
        runs = [("tiny", 1), ("tiny", 2), ("small", 1), ("small", 2)]
        if args.market:
            runs.append(("market", args.workers))
        print("\nSynthReID generation (seed 0)")
        print(f"  {'preset':<8}{'workers':>8}{'files':>9}{'seconds':>10}{'ms/file':>9}")
        folders = {}
        for preset, workers in runs:
            seconds, out, files = time_generation(root, preset, 0, workers)
            folders.setdefault(preset, out)
            print(f"  {preset:<8}{workers:>8}{files:>9,}{seconds:>10.1f}{1000 * seconds / files:>9.2f}")

        print("\nColour-histogram baseline on small (HSV 8x4x4, 6 stripes, squared Euclidean)")
        print(f"  {'seed':<6}{'mAP':>7}{'rank-1':>8}{'rank-5':>8}{'mINP':>7}{'features s':>12}")
        for seed in args.seeds:
            folder = folders["small"] if seed == 0 else time_generation(root, "small", seed, 2)[1]
            metrics, seconds = baseline(folder)
            print(f"  {seed:<6}{metrics['mAP']:>7.3f}{metrics['rank1']:>8.3f}{metrics['rank5']:>8.3f}"
                  f"{metrics['mINP']:>7.3f}{seconds:>12.1f}")


if __name__ == "__main__":
    main()
