"""Ranked lists: what the evaluation sees for one query, as indices and as a picture.

A ranked list follows the Market-1501 protocol exactly as :func:`reidkit.evaluation.evaluate_rank` does: the
gallery is sorted by ascending distance (ties by gallery index), gallery images of the query's identity taken
by the query's own camera are skipped, and every other image is kept, distractors included. A kept image is a
*match* when its pid equals the query's.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import numpy as np
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle
from PIL import Image

from reidkit.data.datasets.base import ReIDItem

MATCH_COLOUR = "#1a9850"
MISMATCH_COLOUR = "#d73027"


class RankedList(NamedTuple):
    """The top ``k`` kept gallery positions of one query: ``indices`` into the gallery, their ``distances`` and
    ``matches`` (bool), in rank order."""

    indices: np.ndarray
    distances: np.ndarray
    matches: np.ndarray


def ranked_list(
    distances: np.ndarray, q_pid: int, q_camid: int, g_pids: np.ndarray, g_camids: np.ndarray, k: int = 10
) -> RankedList:
    """The first ``k`` gallery items the protocol keeps for a query (same pid and camera skipped)."""
    row = np.asarray(distances)
    g_pids, g_camids = np.asarray(g_pids), np.asarray(g_camids)
    if row.ndim != 1 or row.shape != g_pids.shape or row.shape != g_camids.shape:
        raise ValueError(f"distances, g_pids and g_camids must be 1-D of one length, got "
                         f"{row.shape}, {g_pids.shape}, {g_camids.shape}")
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    order = np.argsort(row, kind="stable")
    kept = order[~((g_pids[order] == q_pid) & (g_camids[order] == q_camid))][:k]
    return RankedList(kept, row[kept], g_pids[kept] == q_pid)


def _show(ax, path: str, title: str, colour: str | None) -> None:  # type: ignore[no-untyped-def]
    with Image.open(path) as img:
        ax.imshow(np.asarray(img.convert("RGB")))
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_title(title, fontsize=7)
    if colour is not None:
        height, width = ax.images[0].get_array().shape[:2]
        ax.add_patch(Rectangle((0, 0), width - 1, height - 1, fill=False, edgecolor=colour, linewidth=4))
    for spine in ax.spines.values():
        spine.set_visible(False)


def ranked_list_figure(
    distmat: np.ndarray,
    query: Sequence[ReIDItem],
    gallery: Sequence[ReIDItem],
    query_indices: Sequence[int],
    k: int = 10,
    ap: np.ndarray | None = None,
) -> Figure:
    """One row per chosen query: the query image, then its top ``k`` kept gallery images framed green (same
    identity) or red (another identity or a distractor), each titled with its distance; ``ap`` (per-query AP,
    e.g. ``RankResult.ap``) is printed under the query when given."""
    g_pids = np.array([item.pid for item in gallery])
    g_camids = np.array([item.camid for item in gallery])
    fig = Figure(figsize=(1.0 * (k + 1) + 0.4, 2.1 * len(query_indices)))
    axes = fig.subplots(len(query_indices), k + 1, squeeze=False)
    for row, q in enumerate(query_indices):
        item = query[q]
        title = f"query id {item.pid} c{item.camid + 1}" + (f"\nAP {ap[q]:.2f}" if ap is not None else "")
        _show(axes[row, 0], item.path, title, None)
        ranked = ranked_list(distmat[q], item.pid, item.camid, g_pids, g_camids, k)
        for col in range(k):
            ax = axes[row, col + 1]
            if col >= len(ranked.indices):
                ax.axis("off")
                continue
            g = gallery[ranked.indices[col]]
            colour = MATCH_COLOUR if ranked.matches[col] else MISMATCH_COLOUR
            _show(ax, g.path, f"{col + 1}: id {g.pid} c{g.camid + 1}\nd={ranked.distances[col]:.3f}", colour)
    fig.tight_layout()
    return fig
