"""Heatmap explorer: the pure render function and the widget wiring, headless (no kernel, no browser)."""
from __future__ import annotations

import html

from pathlib import Path

import numpy as np
import pytest
import torch

from reidkit.data.datasets import build_dataset
from reidkit.data.datasets.base import ReIDItem
from reidkit.models import build_model
from reidkit.viz.heatmap_explorer import (
    CSS_CLASSES,
    DISPLAY_SCALE,
    HeatmapExplorerState,
    HeatmapSource,
    heatmap_explorer,
    render_heatmap_pair,
)
from reidkit.viz.heatmaps import SimilarityToEmbedding, compute_heatmaps, embed, heat_overlay

H, W = 64, 32


@pytest.fixture(scope="module")
def model() -> torch.nn.Module:
    torch.manual_seed(0)
    return build_model({"backbone": "resnet18"}, num_classes=3).eval()


@pytest.fixture(scope="module")
def split(synthreid_tiny: Path) -> tuple[list[ReIDItem], list[ReIDItem]]:
    data = build_dataset("synthreid", synthreid_tiny)
    query = list(data.query[:4])
    pids = {item.pid for item in query}
    same = [item for item in data.gallery if item.pid in pids][:4]
    other = [item for item in data.gallery if item.pid not in pids][:4]
    return query, same + other


def test_render_is_the_pure_heatmaps_of_the_selection(model: torch.nn.Module, split: tuple) -> None:
    query, gallery = split
    source = HeatmapSource(model, query, gallery, height=H, width=W)
    state = HeatmapExplorerState(query_index=1, gallery_index=2, method="gradcam", layer="backbone.layer4.1")
    out = render_heatmap_pair(state, source)
    assert out.image.shape == (H, 4 * W + 3 * 4, 3) and out.image.dtype == np.uint8
    assert out.png.startswith(b"\x89PNG")
    q, q_rgb = source.image("query", 1)
    g, g_rgb = source.image("gallery", 2)
    assert np.array_equal(out.image[:, :W], q_rgb) and np.array_equal(out.image[:, -W:], g_rgb)
    e_q = embed(model, q)[0]
    expected = compute_heatmaps(model, g, [SimilarityToEmbedding(e_q)], "gradcam", "backbone.layer4.1")[0]
    np.testing.assert_allclose(out.pair.gallery_map, expected, atol=1e-6)
    assert np.array_equal(out.image[:, 2 * (W + 4): 2 * (W + 4) + W], heat_overlay(g_rgb, expected))
    q_item, g_item = query[1], gallery[2]
    relation = "same identity" if q_item.pid == g_item.pid else "different identities"
    assert out.label.startswith(f"query 1 (id {q_item.pid}, c{q_item.camid + 1}) · gallery 2 (id {g_item.pid}, "
                                f"c{g_item.camid + 1}) — {relation} · cosine similarity {out.pair.similarity:.3f}")
    assert "gradcam on backbone.layer4.1 · target: similarity" in out.label
    again = render_heatmap_pair(state, source)
    assert again.png == out.png


def test_triplet_uses_the_hardest_negative(model: torch.nn.Module, split: tuple) -> None:
    query, gallery = split
    source = HeatmapSource(model, query, gallery, height=H, width=W)
    out = render_heatmap_pair(HeatmapExplorerState(0, 0, "layercam", "", "triplet"), source)
    negatives = [i for i, item in enumerate(gallery) if item.pid != query[0].pid]
    e_q = embed(model, source.image("query", 0)[0])
    sims = torch.nn.functional.cosine_similarity(source.gallery_embeddings()[negatives], e_q)
    assert out.negative_index == negatives[int(sims.argmax())]
    assert f"vs hardest negative gallery {out.negative_index} (id {gallery[out.negative_index].pid}" in out.label
    plain = HeatmapSource(model, [source.image("query", 0)[1]], [source.image("gallery", 0)[1]], height=H, width=W)
    with pytest.raises(ValueError, match="the triplet target needs identities"):
        render_heatmap_pair(HeatmapExplorerState(0, 0, "gradcam", "", "triplet"), plain)
    with pytest.raises(ValueError, match=r"gallery index must be an int in \[0, 0\], got 3"):
        render_heatmap_pair(HeatmapExplorerState(0, 3), plain)


def test_explorer_builds_with_css_classes_and_renders_once(model: torch.nn.Module, split: tuple) -> None:
    query, gallery = split
    widget, state = heatmap_explorer(model, query, gallery, height=H, width=W)
    assert state.renders == 1 and state.error is None and state.png.startswith(b"\x89PNG")
    assert (state.query_index, state.gallery_index, state.method, state.layer, state.target) == (
        0, 0, "gradcam", "backbone.layer4.1", "similarity")
    for name, control in state.controls.items():
        assert CSS_CLASSES[name] in control._dom_classes
    found = set()
    stack = [widget]
    while stack:
        node = stack.pop()
        found.update(getattr(node, "_dom_classes", ()))
        stack.extend(getattr(node, "children", ()))
    assert found == set(CSS_CLASSES.values())
    assert state.controls["layer"].options[-1] == ("layer4", "backbone.layer4.1")
    assert len(state.controls["gallery"].options) == len(gallery)
    assert "scorecam" not in state.controls["method"].options


def test_setting_widget_values_updates_state_picture_and_label(model: torch.nn.Module, split: tuple) -> None:
    query, gallery = split
    widget, state = heatmap_explorer(model, query, gallery, height=H, width=W)
    label = widget.children[-1]
    pngs = {state.png}
    state.controls["gallery"].value = 5
    assert state.gallery_index == 5 and state.renders == 2 and "gallery 5 (id" in state.label
    pngs.add(state.png)
    state.controls["method"].value = "activation"
    assert state.method == "activation" and "no target (gradient-free)" in state.label
    pngs.add(state.png)
    state.controls["layer"].value = "backbone.layer3.1"
    assert state.layer == "backbone.layer3.1" and "activation on backbone.layer3.1" in state.label
    pngs.add(state.png)
    state.controls["method"].value = "gradcam++"
    state.controls["target"].value = "distance"
    assert state.target == "distance" and "target: distance" in label.value and state.renders == 6
    pngs.add(state.png)
    state.controls["query"].value = 2
    assert state.query_index == 2 and label.value == html.escape(state.label) and label.value.startswith("query 2 (id")
    pngs.add(state.png)
    assert len(pngs) == 6  # every change drew another picture
    fresh = render_heatmap_pair(HeatmapExplorerState(2, 5, "gradcam++", "backbone.layer3.1", "distance"),
                                HeatmapSource(model, query, gallery, height=H, width=W), scale=DISPLAY_SCALE)
    assert fresh.png == state.png and widget.children[3].value == state.png
    assert fresh.image.shape == (DISPLAY_SCALE * H, DISPLAY_SCALE * 4 * W + 3 * DISPLAY_SCALE * 4, 3)


def test_a_selection_that_cannot_be_drawn_keeps_the_picture_and_says_why(model: torch.nn.Module) -> None:
    images = [np.full((H, W, 3), v, dtype=np.uint8) for v in (40, 200)]
    widget, state = heatmap_explorer(model, images, height=H, width=W)
    png, renders = state.png, state.renders
    state.controls["target"].value = "triplet"
    assert state.error is not None and "needs identities" in state.error
    assert state.png == png and state.renders == renders
    assert widget.children[-1].value.startswith("cannot draw: the triplet target needs identities")
    state.controls["target"].value = "similarity"
    assert state.error is None and state.renders == renders + 1


def test_explorer_argument_errors(model: torch.nn.Module) -> None:
    images = [np.zeros((H, W, 3), dtype=np.uint8)]
    with pytest.raises(ValueError, match=r"unknown heatmap method\(s\) \['gradcam3'\]"):
        heatmap_explorer(model, images, methods=("gradcam3",))
    with pytest.raises(ValueError, match="at least one query and one gallery image"):
        heatmap_explorer(model, [])
    with pytest.raises(TypeError, match="a ReIDItem, a path, a PIL image or a uint8"):
        HeatmapSource(model, [np.zeros((H, W), dtype=np.float32)], images).image("query", 0)


def test_match_heatmaps_figure_pairs_each_query_with_its_best_true_and_wrong_match(
    model: torch.nn.Module, split: tuple
) -> None:
    from reidkit.evaluation import pairwise_distance
    from reidkit.viz.heatmap_explorer import match_heatmaps_figure

    query, gallery = split
    source = HeatmapSource(model, query, gallery, height=H, width=W)
    qf = embed(model, torch.stack([source.image("query", i)[0] for i in range(len(query))]))
    distmat = pairwise_distance(qf, source.gallery_embeddings(), "cosine")
    fig = match_heatmaps_figure(source, distmat, [0])
    # protocol: same identity and same camera skipped, then the first true and the first wrong match by distance
    kept = [g for g in np.argsort(distmat[0], kind="stable")
            if not (gallery[g].pid == query[0].pid and gallery[g].camid == query[0].camid)]
    true_rank = next(r for r, g in enumerate(kept) if gallery[g].pid == query[0].pid) + 1
    wrong_rank = next(r for r, g in enumerate(kept) if gallery[g].pid != query[0].pid) + 1
    titles = [sub.get_suptitle().split("\n")[0] for sub in fig.subfigs]
    assert titles[0].startswith(f"query 0 (id {query[0].pid}), best true match at rank {true_rank} · cosine")
    assert titles[1].startswith(f"query 0 (id {query[0].pid}), best wrong match at rank {wrong_rank} · cosine")
    with pytest.raises(ValueError, match=r"distmat must be \(Q, G\) = \(4, 8\), got \(4, 7\)"):
        match_heatmaps_figure(source, distmat[:, :7], [0])


def test_a_given_transform_is_the_pipeline_and_its_statistics_de_normalise(model: torch.nn.Module,
                                                                         split: tuple) -> None:
    from PIL import Image
    from torchvision import transforms as tv

    from reidkit.data.transforms import build_transforms, denormalize, to_uint8_image

    query, gallery = split
    mean, std = (0.3, 0.5, 0.7), (0.1, 0.2, 0.4)  # far from ImageNet's
    transform = build_transforms({"height": H, "width": W, "mean": list(mean), "std": list(std), "cutout_p": 0.0},
                                 train=False)
    source = HeatmapSource(model, query, gallery, transform=transform)
    assert source.mean == mean and source.std == std
    with Image.open(query[1].path) as img:
        expected = transform(img.convert("RGB"))
    tensor, shown = source.image("query", 1)
    assert tensor.shape == (3, H, W)
    torch.testing.assert_close(tensor, expected, atol=0, rtol=0)
    assert np.array_equal(shown, to_uint8_image(denormalize(expected, mean, std)))
    # the displayed picture is the resized photo whatever the statistics: the default pipeline shows the same
    _, shown_default = HeatmapSource(model, query, gallery, height=H, width=W).image("query", 1)
    assert np.abs(shown.astype(int) - shown_default.astype(int)).max() <= 1
    # and the default (ImageNet) pipeline would have fed the model another tensor
    assert not torch.allclose(HeatmapSource(model, query, gallery, height=H, width=W).image("query", 1)[0], tensor)
    # the explorer passes it through
    _, state = heatmap_explorer(model, query, gallery, transform=transform)
    assert state.png == render_heatmap_pair(state, source, scale=DISPLAY_SCALE).png

    # torchvision pipelines are read too; a Compose without Normalize gives [0, 1] tensors
    tv_source = HeatmapSource(model, query, gallery,
                              transform=tv.Compose([tv.Resize((H, W)), tv.ToTensor(), tv.Normalize(mean, std)]))
    assert tv_source.mean == mean and tv_source.std == std
    unit = HeatmapSource(model, query, gallery, transform=tv.Compose([tv.Resize((H, W)), tv.ToTensor()]))
    assert unit.mean == (0.0, 0.0, 0.0) and unit.std == (1.0, 1.0, 1.0)


def test_transform_argument_errors(model: torch.nn.Module, split: tuple) -> None:
    from reidkit.data.transforms import build_transforms

    query, gallery = split
    transform = build_transforms({"height": H, "width": W, "mean": [0.3, 0.5, 0.7], "std": [0.1, 0.2, 0.4],
                                  "cutout_p": 0.0}, train=False)

    def opaque(img: object) -> torch.Tensor:
        return transform(img)

    with pytest.raises(ValueError, match="cannot tell how function normalises.*pass mean= and std="):
        HeatmapSource(model, query, gallery, transform=opaque)
    explicit = HeatmapSource(model, query, gallery, transform=opaque, mean=(0.3, 0.5, 0.7), std=(0.1, 0.2, 0.4))
    torch.testing.assert_close(explicit.image("gallery", 0)[0],
                               HeatmapSource(model, query, gallery, transform=transform).image("gallery", 0)[0])
    with pytest.raises(ValueError, match=r"contradict the transform's Normalize step \(mean=\(0.3, 0.5, 0.7\)"):
        HeatmapSource(model, query, gallery, transform=transform, mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225))
    with pytest.raises(ValueError, match="both mean and std or neither"):
        HeatmapSource(model, query, gallery, transform=transform, mean=(0.3, 0.5, 0.7))
    with pytest.raises(TypeError, match="transform must be a callable.*got str"):
        HeatmapSource(model, query, gallery, transform="imagenet")  # type: ignore[arg-type]
