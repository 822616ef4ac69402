"""Pictures of a dataset: identities across cameras, split statistics, sampler batches."""
from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Sequence

import numpy as np
from matplotlib.figure import Figure
from PIL import Image

from reidkit.data.datasets.base import ReIDItem


def _load(path: str) -> np.ndarray:
    with Image.open(path) as img:
        return np.asarray(img.convert("RGB"))


def identity_grid(
    items: Sequence[ReIDItem],
    num_ids: int = 6,
    per_id: int = 6,
    seed: int = 0,
    title: str | None = None,
) -> Figure:
    """One row per identity, ``per_id`` images spread over as many cameras as it has.

    Identities are drawn with a seeded generator among those seen by at least two cameras, and each
    image is labelled with its 1-based camera ("c3") as in Market-1501 file names.
    """
    by_pid: dict[int, list[ReIDItem]] = defaultdict(list)
    for item in items:
        by_pid[item.pid].append(item)
    multi_cam = sorted(pid for pid, its in by_pid.items() if len({i.camid for i in its}) >= 2 and pid > 0)
    if not multi_cam:
        raise ValueError("no identity appears in two or more cameras: nothing to show")
    rng = np.random.default_rng(seed)
    pids = sorted(rng.choice(multi_cam, size=min(num_ids, len(multi_cam)), replace=False).tolist())
    fig = Figure(figsize=(1.1 * per_id, 2.0 * len(pids)))
    axes = fig.subplots(len(pids), per_id, squeeze=False)
    for row, pid in enumerate(pids):
        # round-robin over cameras so that every camera of the identity shows up first
        per_cam: dict[int, list[ReIDItem]] = defaultdict(list)
        for item in by_pid[pid]:
            per_cam[item.camid].append(item)
        chosen: list[ReIDItem] = []
        while len(chosen) < per_id and any(per_cam.values()):
            for cam in sorted(per_cam):
                if per_cam[cam] and len(chosen) < per_id:
                    chosen.append(per_cam[cam].pop(0))
        for col in range(per_id):
            ax = axes[row, col]
            ax.set_xticks([])
            ax.set_yticks([])
            for spine in ax.spines.values():
                spine.set_visible(False)
            if col < len(chosen):
                ax.imshow(_load(chosen[col].path))
                ax.set_title(f"c{chosen[col].camid + 1}", fontsize=8)
        axes[row, 0].set_ylabel(f"id {pid}", fontsize=9)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def split_statistics_figure(splits: dict[str, Sequence[ReIDItem]], num_cameras: int) -> Figure:
    """Images per camera for each split (left) and images per identity (right)."""
    fig = Figure(figsize=(11, 3.6))
    ax_cam, ax_id = fig.subplots(1, 2)
    width = 0.8 / max(len(splits), 1)
    cams = np.arange(num_cameras)
    for k, (name, items) in enumerate(splits.items()):
        counts = Counter(item.camid for item in items)
        ax_cam.bar(cams + k * width, [counts.get(c, 0) for c in cams], width=width, label=name)
        per_id = Counter(item.pid for item in items if item.pid > 0 or name == "train")
        ax_id.hist(list(per_id.values()), bins=20, alpha=0.6, label=name)
    ax_cam.set_xticks(cams + width * (len(splits) - 1) / 2, [f"c{c + 1}" for c in cams])
    ax_cam.set_ylabel("images")
    ax_cam.set_title("images per camera")
    ax_cam.legend()
    ax_id.set_xlabel("images per identity")
    ax_id.set_ylabel("identities")
    ax_id.set_title("identity sizes (distractors excluded)")
    ax_id.legend()
    fig.tight_layout()
    return fig


def batch_figure(items: Sequence[ReIDItem], batch: Sequence[int], num_instances: int) -> Figure:
    """A P x K sampler batch drawn as P rows of K images, one identity per row."""
    if len(batch) % num_instances:
        raise ValueError(f"batch of {len(batch)} indices is not a multiple of K={num_instances}")
    rows = len(batch) // num_instances
    fig = Figure(figsize=(1.1 * num_instances, 1.9 * rows))
    axes = fig.subplots(rows, num_instances, squeeze=False)
    for n, index in enumerate(batch):
        ax = axes[n // num_instances, n % num_instances]
        item = items[index]
        ax.imshow(_load(item.path))
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_title(f"id {item.pid} c{item.camid + 1}", fontsize=7)
    fig.tight_layout()
    return fig
