"""Embedding plots: features projected to 2-D, coloured by identity and by camera.

* :func:`embedding_projection` -- PCA (exact, by SVD) or t-SNE (scikit-learn, seeded) of an ``(N, D)`` matrix;
* :func:`embedding_figure` -- two scatter panels of the same points: one coloured by identity, one by camera.

A good re-ID embedding groups images by identity whatever the camera: in the identity panel each colour forms a
tight cluster, while in the camera panel the colours are mixed. Clusters by camera mean the features encode the
camera (background, light, viewpoint) more than the person.

PCA (Pearson 1901): with X centred (rows minus the column mean) and X = U S V^T its thin SVD, the projection is
X V[:, :2] = U[:, :2] S[:2] (the directions of largest variance). Each component's sign is fixed so that its
largest-magnitude loading in V is positive, so the result is deterministic.

t-SNE (van der Maaten & Hinton, "Visualizing Data using t-SNE", JMLR 2008) keeps neighbourhoods, not distances:
cluster sizes and the gaps between clusters mean little. scikit-learn's ``TSNE`` with PCA initialisation and a
fixed ``random_state`` gives the same points on every run on one machine.
"""
from __future__ import annotations

from typing import Any

import numpy as np
from matplotlib import colormaps
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

PROJECTIONS = ("pca", "tsne")
#: Marker shapes cycled, together with the 20 colours of ``tab20``, to tell up to 100 identities apart.
IDENTITY_MARKERS = ("o", "s", "^", "D", "v")


def _as_matrix(features: Any) -> np.ndarray:
    if hasattr(features, "detach"):  # a torch tensor, on any device
        features = features.detach().cpu().numpy()
    x = np.asarray(features)
    if x.ndim != 2:
        raise ValueError(f"features must be 2-D (N, D), got shape {x.shape}")
    if not (np.issubdtype(x.dtype, np.floating) or np.issubdtype(x.dtype, np.integer)):
        raise ValueError(f"features must hold real numbers, got dtype {x.dtype}")
    if not np.isfinite(x).all():
        raise ValueError("features contain NaN or infinite values; expected finite numbers")
    return x.astype(np.float64)


def pca_2d(features: Any) -> np.ndarray:
    """The first two principal components of ``features`` (N, D): ``(X - mean) V[:, :2]`` as float64 (N, 2),
    each component's sign chosen so its largest-magnitude loading is positive."""
    x = _as_matrix(features)
    if x.shape[0] < 2 or x.shape[1] < 2:
        raise ValueError(f"PCA to 2-D needs at least 2 points with at least 2 dimensions, got shape {x.shape}")
    centred = x - x.mean(axis=0)
    _, _, vt = np.linalg.svd(centred, full_matrices=False)
    components = vt[:2]
    signs = np.sign(components[np.arange(2), np.abs(components).argmax(axis=1)])
    return centred @ (components * signs[:, None]).T


def tsne_2d(features: Any, seed: int = 0, perplexity: float | None = None) -> np.ndarray:
    """t-SNE of ``features`` (N, D) to (N, 2) with scikit-learn (PCA initialisation, ``random_state=seed``).

    ``perplexity`` defaults to ``min(30, (N - 1) / 3)`` (it must stay below N); needs the ``notebooks`` extra.
    """
    from sklearn.manifold import TSNE

    x = _as_matrix(features)
    n = x.shape[0]
    if n < 4:
        raise ValueError(f"t-SNE needs at least 4 points, got {n}")
    if perplexity is None:
        perplexity = min(30.0, (n - 1) / 3)
    if not 0 < perplexity < n:
        raise ValueError(f"perplexity must be in (0, {n}) for {n} points, got {perplexity}")
    tsne = TSNE(n_components=2, perplexity=perplexity, init="pca", random_state=seed, n_jobs=1)
    return tsne.fit_transform(x.astype(np.float32)).astype(np.float64)


def embedding_projection(features: Any, method: str = "pca", seed: int = 0) -> np.ndarray:
    """``features`` (N, D; NumPy or torch) projected to (N, 2) float64 by ``method`` "pca" (exact; ``seed``
    unused) or "tsne" (seeded: the same ``seed`` gives the same points)."""
    if method == "pca":
        return pca_2d(features)
    if method == "tsne":
        return tsne_2d(features, seed=seed)
    raise ValueError(f"method={method!r}: valid choices are {PROJECTIONS}")


def identity_palette() -> tuple[tuple[float, float, float], ...]:
    """The identity colours (``tab20``)."""
    return tuple(colormaps["tab20"].colors)


def identity_styles(pids: np.ndarray) -> tuple[np.ndarray, list[str]]:
    """A colour (RGBA rows) and a marker per point: identities in ascending pid order take the ``tab20`` colours
    in turn, and each further round of 20 identities the next marker of :data:`IDENTITY_MARKERS`."""
    uniq, index = np.unique(np.asarray(pids), return_inverse=True)
    palette = identity_palette()
    colours = np.array([palette[i % len(palette)] for i in range(len(uniq))])[index]
    markers = [IDENTITY_MARKERS[(i // len(palette)) % len(IDENTITY_MARKERS)] for i in index]
    rgba = np.concatenate([colours, np.ones((len(index), 1))], axis=1)
    return rgba, markers


def camera_colours(camids: np.ndarray) -> dict[int, tuple[float, float, float]]:
    """Camera id -> ``tab10`` colour, cameras in ascending order (cycling after 10)."""
    palette = colormaps["tab10"].colors
    return {int(c): palette[i % len(palette)] for i, c in enumerate(np.unique(camids))}


def embedding_figure(
    points: Any, pids: Any, camids: Any, title: str | None = None, marker_size: float = 16.0
) -> Figure:
    """Two panels of the same 2-D ``points``: left coloured by identity (``tab20`` colours cycling, with a new
    marker shape every 20 identities), right coloured by camera with a legend (cameras shown 1-based, "c1")."""
    xy = _as_matrix(points)
    pids, camids = np.asarray(pids), np.asarray(camids)
    if xy.shape[1] != 2:
        raise ValueError(f"points must be (N, 2), got shape {xy.shape}")
    if pids.shape != (len(xy),) or camids.shape != (len(xy),):
        raise ValueError(f"pids and camids must have one entry per point ({len(xy)}), got shapes {pids.shape} "
                         f"and {camids.shape}")
    fig = Figure(figsize=(10.0, 4.6))
    by_id, by_cam = fig.subplots(1, 2)
    colours, markers = identity_styles(pids)
    for marker in IDENTITY_MARKERS:
        chosen = np.array([m == marker for m in markers], dtype=bool)
        if chosen.any():
            by_id.scatter(xy[chosen, 0], xy[chosen, 1], c=colours[chosen], marker=marker, s=marker_size,
                          linewidths=0)
    n_ids = len(np.unique(pids))
    n_colours = len(identity_palette())
    cycled = f"; {n_colours} colours, new marker every {n_colours}" if n_ids > n_colours else ""
    by_id.set_title(f"coloured by identity ({n_ids} identities{cycled})", fontsize=9)
    cams = camera_colours(camids)
    # one scatter in input order, so no camera is drawn entirely on top of another
    by_cam.scatter(xy[:, 0], xy[:, 1], c=[cams[int(c)] for c in camids], s=marker_size, linewidths=0)
    by_cam.set_title(f"coloured by camera ({len(cams)} cameras)", fontsize=9)
    by_cam.legend(title="camera", fontsize=7, title_fontsize=7, loc="center left", bbox_to_anchor=(1.0, 0.5),
                  handles=[Line2D([], [], marker="o", linestyle="", color=c, label=f"c{cam + 1}")
                           for cam, c in cams.items()])
    for ax in (by_id, by_cam):
        ax.set_xticks([])
        ax.set_yticks([])
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig
