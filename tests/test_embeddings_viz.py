"""Embedding plots: PCA equals the SVD reference up to sign, t-SNE is seeded, the figure colours what it says."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from matplotlib.colors import to_rgba

from reidkit.viz.embeddings import (
    IDENTITY_MARKERS,
    camera_colours,
    embedding_figure,
    embedding_projection,
    identity_palette,
    identity_styles,
)


def clustered_features(seed: int = 0, ids: int = 4, per_id: int = 6, dim: int = 16) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    centres = rng.normal(0, 5, (ids, dim))
    pids = np.repeat(np.arange(ids), per_id)
    return centres[pids] + rng.normal(0, 0.3, (len(pids), dim)), pids


def test_pca_equals_numpy_svd_up_to_sign() -> None:
    x, _ = clustered_features()
    centred = x - x.mean(axis=0)
    u, s, _ = np.linalg.svd(centred, full_matrices=False)
    reference = u[:, :2] * s[:2]
    points = embedding_projection(x, "pca")
    assert points.shape == (len(x), 2) and points.dtype == np.float64
    for c in range(2):
        sign = np.sign(points[:, c] @ reference[:, c])
        np.testing.assert_allclose(points[:, c], sign * reference[:, c], atol=1e-9)
    # variance is largest on the first axis, and the two axes are uncorrelated
    assert points[:, 0].var() >= points[:, 1].var()
    assert abs(points[:, 0] @ points[:, 1]) < 1e-6 * np.abs(points).sum()
    # torch input, float32 input: the same projection
    np.testing.assert_allclose(embedding_projection(torch.from_numpy(x), "pca"), points, atol=1e-12)


def test_pca_sign_is_fixed_by_the_largest_loading() -> None:
    x = np.array([[0.0, 0.0], [3.0, 0.1], [6.0, -0.1], [-3.0, 0.2]])
    points = embedding_projection(x, "pca")
    # the first component is the x axis, oriented so that +x is positive: x - mean(x) up to the tiny y tilt
    np.testing.assert_allclose(points[:, 0], x[:, 0] - x[:, 0].mean(), atol=0.01)
    # -x has the same principal directions; the sign rule picks the same orientation, so the points negate
    np.testing.assert_allclose(embedding_projection(-x, "pca"), -points, atol=1e-12)


def test_tsne_is_deterministic_for_a_seed() -> None:
    x, pids = clustered_features(ids=3, per_id=8)
    first = embedding_projection(x, "tsne", seed=3)
    assert first.shape == (len(x), 2) and np.isfinite(first).all()
    np.testing.assert_array_equal(first, embedding_projection(x, "tsne", seed=3))
    # well-separated identities stay separated: every point's nearest neighbour has its identity
    d = ((first[:, None] - first[None]) ** 2).sum(-1) + np.eye(len(x)) * 1e12
    assert (pids[d.argmin(axis=1)] == pids).all()


def test_projection_errors() -> None:
    with pytest.raises(ValueError, match=r"method='umap': valid choices are \('pca', 'tsne'\)"):
        embedding_projection(np.zeros((5, 3)), "umap")
    with pytest.raises(ValueError, match=r"at least 2 points with at least 2 dimensions, got shape \(5, 1\)"):
        embedding_projection(np.zeros((5, 1)), "pca")
    with pytest.raises(ValueError, match=r"features must be 2-D \(N, D\), got shape \(5,\)"):
        embedding_projection(np.zeros(5), "pca")
    with pytest.raises(ValueError, match="NaN or infinite"):
        embedding_projection(np.array([[0.0, 1.0], [np.nan, 2.0]]), "pca")
    with pytest.raises(ValueError, match="t-SNE needs at least 4 points, got 3"):
        embedding_projection(np.zeros((3, 4)), "tsne")


def test_identity_styles_cycle_colours_then_markers() -> None:
    pids = np.array([105, 3, 3, 42] + list(range(200, 240)))  # 43 identities
    colours, markers = identity_styles(pids)
    palette = identity_palette()
    assert len(palette) == 20
    # identities in ascending pid order: 3 -> colour 0, 42 -> colour 1, 105 -> colour 2, 200 -> colour 3, ...
    np.testing.assert_allclose(colours[1, :3], palette[0])
    np.testing.assert_allclose(colours[2], colours[1])
    np.testing.assert_allclose(colours[3, :3], palette[1])
    np.testing.assert_allclose(colours[0, :3], palette[2])
    assert markers[1] == markers[0] == IDENTITY_MARKERS[0]
    # pid 217 is the 21st identity: colour 0 again, with the second marker, so it differs from pid 3
    i217 = 4 + 17
    np.testing.assert_allclose(colours[i217, :3], palette[0])
    assert markers[i217] == IDENTITY_MARKERS[1]
    # pids 236 and 237 are the 40th and 41st identities: the second and the third marker
    assert markers[4 + 36] == IDENTITY_MARKERS[1] and markers[4 + 37] == IDENTITY_MARKERS[2]


def test_figure_panels_show_the_points_by_identity_and_camera() -> None:
    x, pids = clustered_features(ids=25, per_id=2)
    camids = np.arange(len(x)) % 3
    points = embedding_projection(x, "pca")
    fig = embedding_figure(points, pids, camids, title="PCA")
    by_id, by_cam = fig.axes[:2]
    assert fig.get_suptitle() == "PCA"
    assert by_id.get_title() == "coloured by identity (25 identities; 20 colours, new marker every 20)"
    assert by_cam.get_title() == "coloured by camera (3 cameras)"
    # identity panel: one scatter per marker shape in use, together every point once
    shown = np.concatenate([c.get_offsets() for c in by_id.collections])
    assert len(by_id.collections) == 2 and len(shown) == len(points)
    assert sorted(map(tuple, shown)) == sorted(map(tuple, points))
    colours, _ = identity_styles(pids)
    first = by_id.collections[0]
    np.testing.assert_allclose(first.get_facecolors(), colours[:len(first.get_offsets())])  # ids 0..19 first
    # camera panel: all points in input order, each in its camera's colour; legend c1..c3
    (cams,) = by_cam.collections
    np.testing.assert_allclose(cams.get_offsets(), points)
    expected = [to_rgba(camera_colours(camids)[c]) for c in camids]
    np.testing.assert_allclose(cams.get_facecolors(), expected)
    legend = by_cam.get_legend()
    assert [t.get_text() for t in legend.get_texts()] == ["c1", "c2", "c3"]
    assert legend.get_title().get_text() == "camera"
    with pytest.raises(ValueError, match=r"one entry per point \(50\)"):
        embedding_figure(points, pids[:-1], camids)
    with pytest.raises(ValueError, match=r"points must be \(N, 2\)"):
        embedding_figure(x, pids, camids)
