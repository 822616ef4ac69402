"""Ranked lists: what the evaluation sees for one query, as indices and as a picture, and the worst queries.

A ranked list follows the Market-1501 protocol exactly as :func:`reidkit.evaluation.evaluate_rank` does: the
gallery is sorted by ascending distance (ties by gallery index), gallery images of the query's identity taken
by the query's own camera are skipped, and every other image is kept, distractors included. A kept image is a
*match* when its pid equals the query's.

* :func:`ranked_list` -- the first ``k`` kept gallery items of one query;
* :func:`per_query_metrics` -- each query's standard AP and INP (``RankResult.ap`` / ``.inp``);
* :func:`worst_queries` -- the valid queries with the lowest AP (failure analysis);
* :func:`ranked_list_figure` / :func:`failure_figure` -- rows of query + top-``k`` images framed green (same
  identity) or red, with the distance under each image and the first correct match shown even beyond ``k``.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle
from PIL import Image

from reidkit.data.datasets.base import ReIDItem, item_labels
from reidkit.evaluation import evaluate_rank

MATCH_COLOUR = "#1a9850"
MISMATCH_COLOUR = "#d73027"
#: Column width and image height of one cell in a ranked-list figure, and the height of one line of text, in inches.
CELL_WIDTH, IMAGE_HEIGHT, LINE_HEIGHT = 1.0, 1.9, 0.15


class RankedList(NamedTuple):
    """The top ``k`` kept gallery positions of one query: ``indices`` into the gallery, their ``distances`` and
    ``matches`` (bool), in rank order."""

    indices: np.ndarray
    distances: np.ndarray
    matches: np.ndarray

    @property
    def first_match(self) -> int:
        """1-based rank of the first match in this list, 0 when the list holds none."""
        hits = np.flatnonzero(self.matches)
        return int(hits[0]) + 1 if len(hits) else 0


def ranked_list(
    distances: np.ndarray, q_pid: int, q_camid: int, g_pids: np.ndarray, g_camids: np.ndarray, k: int = 10
) -> RankedList:
    """The first ``k`` gallery items the protocol keeps for a query (same pid and camera skipped).

    ``k`` larger than the kept gallery returns the whole kept gallery (``k=len(distances)`` gives the full ranking).
    """
    row = np.asarray(distances)
    g_pids, g_camids = np.asarray(g_pids), np.asarray(g_camids)
    if row.ndim != 1 or row.shape != g_pids.shape or row.shape != g_camids.shape:
        raise ValueError(f"distances, g_pids and g_camids must be 1-D of one length, got "
                         f"{row.shape}, {g_pids.shape}, {g_camids.shape}")
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise ValueError(f"k must be >= 1, got {k!r}")
    order = np.argsort(row, kind="stable")
    kept = order[~((g_pids[order] == q_pid) & (g_camids[order] == q_camid))][:k]
    return RankedList(kept, row[kept], g_pids[kept] == q_pid)


def per_query_metrics(
    distmat: Any, q_pids: Any, g_pids: Any, q_camids: Any, g_camids: Any
) -> tuple[np.ndarray, np.ndarray]:
    """Each query's standard AP and INP under the Market-1501 protocol (float64, NaN for invalid queries).

    AP_q = (1/G_q) sum_i i / k_i and INP_q = G_q / k_{G_q} (Ye et al., TPAMI 2021), where k_1 < ... < k_{G_q} are
    the kept ranks of the query's matches; a query with no match in another camera is invalid. These are
    ``RankResult.ap`` and ``RankResult.inp`` of :func:`~reidkit.evaluation.evaluate_rank` (same kernels, so the
    numbers equal the evaluation's); raises its ``ValueError`` when no query is valid.
    """
    result = evaluate_rank(distmat, q_pids, g_pids, q_camids, g_camids, max_rank=1)
    return result.ap, result.inp


def _check_count(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


def worst_queries(
    distmat: Any, q_pids: Any, g_pids: Any, q_camids: Any, g_camids: Any, n: int = 5
) -> np.ndarray:
    """Indices of the ``n`` valid queries with the lowest AP, lowest first; equal APs in ascending query index.

    Invalid queries (AP undefined) are never returned; fewer than ``n`` indices come back when fewer are valid.
    """
    n = _check_count("n", n)
    ap, _ = per_query_metrics(distmat, q_pids, g_pids, q_camids, g_camids)
    valid = np.flatnonzero(~np.isnan(ap))
    return valid[np.argsort(ap[valid], kind="stable")][:n]


def _show(ax: Axes, path: str, title: str, colour: str | None, below: str = "") -> None:
    with Image.open(path) as img:
        ax.imshow(np.asarray(img.convert("RGB")))
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_title(title, fontsize=7)
    ax.set_xlabel(below, fontsize=7)
    if colour is not None:
        height, width = ax.images[0].get_array().shape[:2]
        ax.add_patch(Rectangle((0, 0), width - 1, height - 1, fill=False, edgecolor=colour, linewidth=4))
    for spine in ax.spines.values():
        spine.set_visible(False)


def _check_shapes(distmat: np.ndarray, query: Sequence[ReIDItem], gallery: Sequence[ReIDItem]) -> None:
    if distmat.shape != (len(query), len(gallery)):
        raise ValueError(f"distmat must be (len(query), len(gallery)) = ({len(query)}, {len(gallery)}), "
                         f"got {distmat.shape}")


def ranked_rows_figure(
    distmat: np.ndarray,
    query: Sequence[ReIDItem],
    gallery: Sequence[ReIDItem],
    query_indices: Sequence[int],
    k: int = 10,
    captions: Sequence[str] | None = None,
    show_first_match: bool = True,
    title: str | None = None,
) -> Figure:
    """One row per query: the query image (``captions[row]`` under it), its top ``k`` kept gallery images
    framed green (same identity) or red (another identity or a distractor), titled ``rank: id pid camera`` with
    the distance under each image; with ``show_first_match`` a last column shows the first correct match when it
    ranks beyond ``k`` ("first match at rank 37"), or says that the query has none.

    Rows follow :func:`ranked_list`, i.e. exactly the evaluation's kept list.
    """
    distmat = np.asarray(distmat)
    _check_shapes(distmat, query, gallery)
    k = _check_count("k", k)
    if len(query_indices) == 0:
        raise ValueError("query_indices is empty: choose at least one query to draw")
    if captions is not None and len(captions) != len(query_indices):
        raise ValueError(f"captions must have one entry per query row ({len(query_indices)}), got {len(captions)}")
    g_pids, g_camids = item_labels(gallery)
    rows = []
    for q in query_indices:
        if not 0 <= q < len(query):
            raise ValueError(f"query index {q} outside 0..{len(query) - 1}")
        item = query[q]
        rows.append(ranked_list(distmat[q], item.pid, item.camid, g_pids, g_camids, k=len(gallery)))
    extra = show_first_match and any(full.first_match == 0 or full.first_match > k for full in rows)
    ncols = k + 1 + int(extra)
    text_lines = (2 if extra else 1) + max((c.count("\n") + 1 for c in captions or [""]), default=1)
    row_height = IMAGE_HEIGHT + LINE_HEIGHT * text_lines
    fig = Figure(figsize=(CELL_WIDTH * ncols + 0.4, row_height * len(rows) + (0.4 if title else 0.0)))
    axes = fig.subplots(len(rows), ncols, squeeze=False)
    for row, (q, full) in enumerate(zip(query_indices, rows)):
        item = query[q]
        _show(axes[row, 0], item.path, f"query id {item.pid} c{item.camid + 1}", None,
              captions[row] if captions is not None else "")
        for col in range(k):
            ax = axes[row, col + 1]
            if col >= len(full.indices):
                ax.axis("off")
                continue
            g = gallery[full.indices[col]]
            colour = MATCH_COLOUR if full.matches[col] else MISMATCH_COLOUR
            _show(ax, g.path, f"{col + 1}: id {g.pid} c{g.camid + 1}", colour, f"d={full.distances[col]:.3f}")
        if not extra:
            continue
        ax = axes[row, -1]
        first = full.first_match
        if first == 0:
            ax.axis("off")
            ax.text(0.5, 0.5, "no match in\nanother camera", ha="center", va="center", fontsize=7,
                    transform=ax.transAxes)
        elif first > k:
            g = gallery[full.indices[first - 1]]
            _show(ax, g.path, f"first match at\nrank {first}: id {g.pid} c{g.camid + 1}", MATCH_COLOUR,
                  f"d={full.distances[first - 1]:.3f}")
        else:
            ax.axis("off")
    if title:
        fig.suptitle(title, fontsize=8)
    fig.tight_layout()
    return fig


def ranked_list_figure(
    distmat: np.ndarray,
    query: Sequence[ReIDItem],
    gallery: Sequence[ReIDItem],
    query_indices: Sequence[int],
    k: int = 10,
    ap: np.ndarray | None = None,
) -> Figure:
    """One row per chosen query: the query image, then its top ``k`` kept gallery images framed green (same
    identity) or red (another identity or a distractor), each titled with its rank and identity and with its
    distance under it; ``ap`` (per-query AP, e.g. ``RankResult.ap``) is printed under the query when given.
    A first correct match beyond ``k`` gets an extra column (see :func:`ranked_rows_figure`)."""
    captions = [f"AP {ap[q]:.2f}" for q in query_indices] if ap is not None else None
    return ranked_rows_figure(distmat, query, gallery, query_indices, k=k, captions=captions)


def failure_figure(
    distmat: np.ndarray, query: Sequence[ReIDItem], gallery: Sequence[ReIDItem], n: int = 4, k: int = 8
) -> Figure:
    """Failure analysis: the ``n`` valid queries with the lowest AP (:func:`worst_queries`), worst first.

    Each row shows the query with its AP and the rank of its first correct match, its top ``k`` kept gallery
    images (green = same identity, red = other identity; distance under each) and, when the first correct match
    ranks beyond ``k``, that match in a last column ("first match at rank 37").
    """
    distmat = np.asarray(distmat)
    _check_shapes(distmat, query, gallery)
    q_pids, q_camids = item_labels(query)
    g_pids, g_camids = item_labels(gallery)
    result = evaluate_rank(distmat, q_pids, g_pids, q_camids, g_camids, max_rank=1)
    worst = worst_queries(distmat, q_pids, g_pids, q_camids, g_camids, n=n)
    captions = [f"AP {result.ap[q]:.3f}\nfirst match at\nrank {result.first_hit[q]}" for q in worst]
    title = (f"The {len(worst)} queries with the lowest AP (of {result.num_valid} valid): green = same identity, "
             "red = another identity; same-identity images from the query's camera are skipped")
    return ranked_rows_figure(distmat, query, gallery, list(worst), k=k, captions=captions, title=title)
