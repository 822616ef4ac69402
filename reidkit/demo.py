"""``reidkit demo``: the main job on SynthReID, end to end on a laptop CPU.

1. generate (or reuse) SynthReID and print its split statistics;
2. evaluate the hand-crafted colour-histogram baseline;
3. train the ``synth_quick`` recipe (model selection on identities carved from the training split, the test
   split evaluated once at the end);
4. draw the identities, the split statistics, the trained model's ranked lists and its LayerCAM heatmaps (the
   best and the worst query, each beside its best true and its best wrong match), and write ``metrics.json``
   with the baseline and the trained model side by side.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from reidkit.atomic_io import write_text_atomic
from reidkit.data.datasets import build_dataset
from reidkit.data.datasets.base import item_labels
from reidkit.data.synthetic import ensure_synthreid
from reidkit.evaluation import evaluate_rank, pairwise_distance
from reidkit.models.handcrafted import color_histogram_features
from reidkit.viz.dataset import identity_grid, split_statistics_figure

DEMO_CONFIG = "synth_quick"


class _TrainedRanking(NamedTuple):
    model: Any
    transform: Any  # the run's test transform (PIL image -> model-ready tensor), FeatureExtractor.transform
    distmat: np.ndarray
    chosen: list[int]
    mAP: float


def _trained_ranked_lists(checkpoint: str, dataset: Any, eval_cfg: dict, out_path: Path) -> _TrainedRanking:
    """The selected weights' ranked lists for the three best and three worst queries.

    Features come from :class:`reidkit.FeatureExtractor` on the checkpoint the run tested, so the figure follows
    the run's own protocol (its config's test transform, flip and ``eval.normalize``, the ``eval.metric``
    distance): the mAP of these distances is the test mAP the run reported. Returns the model, its test transform,
    the distances, the chosen queries (best three, then worst three) for the heatmaps, and that mAP.
    """
    from reidkit.inference import FeatureExtractor
    from reidkit.viz.retrieval import ranked_list_figure

    extractor = FeatureExtractor(checkpoint, flip=eval_cfg["flip"])
    qf = extractor([item.path for item in dataset.query])
    gf = extractor([item.path for item in dataset.gallery])
    distmat = pairwise_distance(qf, gf, eval_cfg["metric"])
    q_pids, q_camids = item_labels(dataset.query)
    g_pids, g_camids = item_labels(dataset.gallery)
    result = evaluate_rank(distmat, q_pids, g_pids, q_camids, g_camids)
    ap = np.where(result.valid, result.ap, np.inf)
    order = np.argsort(ap, kind="stable")[: result.num_valid]
    chosen = [*order[-3:][::-1].tolist(), *order[:3].tolist()]  # best three, then worst three
    ranked_list_figure(distmat, dataset.query, dataset.gallery, chosen, k=10, ap=result.ap).savefig(out_path, dpi=110)
    return _TrainedRanking(extractor.model, extractor.transform, distmat, chosen, float(result.mAP))


def _trained_heatmaps(model: Any, transform: Any, dataset: Any, distmat: np.ndarray, query_indices: list[int],
                      out_path: Path) -> None:
    """LayerCAM (similarity target, last stage) of the trained model: each query beside its best-ranked true
    match and its best-ranked wrong match, both overlays side by side. The images go through ``transform``, the
    run's own test pipeline (what the ranked lists were computed from). LayerCAM rather than Grad-CAM: at the high
    cosine similarities of re-ID pairs, Grad-CAM's channel-averaged weights are often negative everywhere and its
    map comes out empty; LayerCAM weighs each cell by its own positive gradient."""
    from reidkit.viz.heatmap_explorer import HeatmapSource, match_heatmaps_figure

    source = HeatmapSource(model, dataset.query, dataset.gallery, transform=transform)
    match_heatmaps_figure(source, distmat, query_indices, method="layercam").savefig(out_path, dpi=110)


def run_demo(
    out_dir: Path,
    preset: str = "small",
    seed: int = 0,
    data_root: str | None = None,
    workers: int = 1,
    epochs: int | None = None,
) -> dict:
    """Run the demo and return its metrics summary (also written to ``out_dir/metrics.json``).

    SynthReID is generated with ``workers`` processes on first use (the bytes do not depend on it) and
    reused from ``data_root`` afterwards. ``epochs`` overrides the recipe's number of epochs (tests use 1).
    """
    from reidkit.config import load_config
    from reidkit.engine.run import train_from_config

    out_dir.mkdir(parents=True, exist_ok=True)
    root = ensure_synthreid(preset=preset, seed=seed, root=data_root, workers=workers)
    print(f"[1/4] SynthReID '{preset}' (seed {seed}) at {root}")
    dataset = build_dataset("synthreid", root)
    print(dataset.summary())

    print("[2/4] hand-crafted baseline: colour histograms + squared Euclidean distance")
    q_pids, q_camids = item_labels(dataset.query)
    g_pids, g_camids = item_labels(dataset.gallery)
    qf = color_histogram_features([item.path for item in dataset.query])
    gf = color_histogram_features([item.path for item in dataset.gallery])
    result = evaluate_rank(pairwise_distance(qf, gf, "euclidean"), q_pids, g_pids, q_camids, g_camids)
    print(f"      colour histogram: {result.summary()}")

    overrides = [f"data.root={root}", f"train.output_dir={out_dir / 'train'}", "log.progress=false"]
    if epochs is not None:
        overrides.append(f"train.epochs={epochs}")
    cfg = load_config(DEMO_CONFIG, overrides)
    print(f"[3/4] training '{DEMO_CONFIG}' ({cfg['model']['backbone']}, {cfg['train']['epochs']} epochs, "
          f"{cfg['data']['height']}x{cfg['data']['width']}) on the training identities")
    trained = train_from_config(cfg, out_dir=out_dir / "train")
    test = trained["test"]

    print(f"[4/4] figures in {out_dir}")
    identity_grid(dataset.train, num_ids=6, per_id=8, seed=seed, title="SynthReID identities across cameras").savefig(
        out_dir / "identities.png", dpi=120
    )
    splits = {"train": dataset.train, "query": dataset.query, "gallery": dataset.gallery}
    split_statistics_figure(splits, num_cameras=6).savefig(out_dir / "split_statistics.png", dpi=120)
    ranking = _trained_ranked_lists(trained["checkpoint"], dataset, cfg["eval"], out_dir / "ranked_lists.png")
    best, worst = ranking.chosen[0], ranking.chosen[len(ranking.chosen) // 2]
    _trained_heatmaps(ranking.model, ranking.transform, dataset, ranking.distmat, [best, worst],
                      out_dir / "heatmaps.png")
    summary = {
        "dataset": {
            "name": "synthreid",
            "preset": preset,
            "seed": seed,
            **{split: stats._asdict() for split, stats in dataset.statistics().items()},
        },
        "baselines": {
            "color_histogram": {"mAP": result.mAP, "mINP": result.mINP, "rank1": result.rank(1), "rank5": result.rank(5)}
        },
        "trained": {
            "config": DEMO_CONFIG,
            "epochs": cfg["train"]["epochs"],
            "split": "test",
            **{key: test[key] for key in ("mAP", "mINP", "rank1", "rank5", "rank10")},
            "figures_mAP": ranking.mAP,  # the ranked lists' own distances: equal to mAP up to float rounding
        },
    }
    write_text_atomic(out_dir / "metrics.json", json.dumps(summary, indent=2) + "\n")
    print(f"      test split: colour histogram mAP {100 * result.mAP:.1f}% | "
          f"trained {DEMO_CONFIG} mAP {100 * test['mAP']:.1f}%, rank-1 {100 * test['rank1']:.1f}%")
    print("      wrote identities.png, split_statistics.png, ranked_lists.png, heatmaps.png, metrics.json, train/")
    return summary
