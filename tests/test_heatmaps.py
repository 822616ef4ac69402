"""Heatmaps for embedding models: targets, the Grad-CAM runner, default layers, the exact similarity split, figures."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from matplotlib.figure import Figure
from torch import nn

from reidkit.models import BNNeck, GeM, GlobalAvgPool, GlobalMaxPool, LightMBN, ReIDModel, build_model
from reidkit.models.backbones import build_backbone
from reidkit.models.heads import LinearHead
from reidkit.viz.heatmaps import (
    METHODS,
    DistanceToEmbedding,
    HeatmapPair,
    MissingGradientError,
    SimilarityToEmbedding,
    TripletTarget,
    compute_heatmaps,
    decomposition_figure,
    default_target_layers,
    embed,
    heat_overlay,
    heatmap_pair,
    heatmap_pair_figure,
    make_targets,
    resolve_layers,
    similarity_decomposition,
    stage_layers,
)

H, W = 32, 16


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


class RegionMask(nn.Module):
    """Zeroes a feature map everywhere except one quadrant (rows/cols given as slices of the map)."""

    def __init__(self, rows: slice, cols: slice) -> None:
        super().__init__()
        self.rows, self.cols = rows, cols

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mask = torch.zeros_like(x[:1, :1])
        mask[..., self.rows, self.cols] = 1.0
        return x * mask


class RegionBackbone(nn.Module):
    """Two convolutions (stride ``stride``) then a mask: the features depend only on one image quadrant."""

    def __init__(self, quadrant: str = "top_left", stride: int = 1, channels: int = 8) -> None:
        super().__init__()
        self.out_channels = channels
        self.convs = nn.Sequential(nn.Conv2d(3, channels, 3, stride=stride, padding=1), nn.ReLU(),
                                   nn.Conv2d(channels, channels, 3, padding=1), nn.ReLU())
        h, w = H // stride, W // stride
        rows = slice(0, h // 2) if quadrant.startswith("top") else slice(h // 2, h)
        cols = slice(0, w // 2) if quadrant.endswith("left") else slice(w // 2, w)
        self.mask = RegionMask(rows, cols)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.mask(self.convs(x))


def region_model(quadrant: str = "top_left", stride: int = 1, pooling: nn.Module | None = None,
                 neck: nn.Module | None = None) -> ReIDModel:
    backbone = RegionBackbone(quadrant, stride)
    channels = getattr(neck, "out_channels", backbone.out_channels)
    return ReIDModel(backbone, pooling or GlobalAvgPool(), neck, LinearHead(channels, 3)).eval()


def image_quadrant(quadrant: str) -> tuple[slice, slice]:
    rows = slice(0, H // 2) if quadrant.startswith("top") else slice(H // 2, H)
    cols = slice(0, W // 2) if quadrant.endswith("left") else slice(W // 2, W)
    return rows, cols


def mass_inside(maps: np.ndarray, quadrant: str) -> np.ndarray:
    rows, cols = image_quadrant(quadrant)
    return maps[:, rows, cols].sum(axis=(1, 2)) / maps.sum(axis=(1, 2))


# ------------------------------------------------------------------------------------------------- targets
def test_targets_equal_the_directly_computed_cosine_and_distance() -> None:
    e, q, n = torch.randn(3, 16).unbind(0)
    cos_q = torch.dot(e, q) / (e.norm() * q.norm())
    cos_n = torch.dot(e, n) / (e.norm() * n.norm())
    torch.testing.assert_close(SimilarityToEmbedding(q)(e), cos_q)
    torch.testing.assert_close(DistanceToEmbedding(q)(e), 1 - cos_q)
    torch.testing.assert_close(DistanceToEmbedding(q, metric="euclidean")(e), ((e - q) ** 2).sum())
    torch.testing.assert_close(TripletTarget(q, n)(e), cos_q - cos_n)
    torch.testing.assert_close(SimilarityToEmbedding(q.unsqueeze(0))(e.unsqueeze(0)), cos_q)  # (1, D) accepted


def test_targets_hold_a_detached_copy_and_pass_gradients_to_the_output_only() -> None:
    q = torch.randn(8, requires_grad=True)
    target = SimilarityToEmbedding(q)
    assert not target.reference.requires_grad
    with torch.no_grad():
        q.mul_(-1)  # changing the caller's tensor later does not change the target
    e = torch.randn(8, requires_grad=True)
    value = target(e)
    value.backward()
    ref = -q.detach()
    expected = ref / (e.norm() * ref.norm()) - torch.dot(e, ref) * e / (e.norm() ** 3 * ref.norm())
    torch.testing.assert_close(e.grad, expected.detach())  # d cos / d e by hand
    assert q.grad is None


def test_target_errors() -> None:
    with pytest.raises(ValueError, match=r"one image's embedding \(8,\), got \(2, 8\)"):
        SimilarityToEmbedding(torch.randn(8))(torch.randn(2, 8))
    with pytest.raises(ValueError, match="non-zero"):
        SimilarityToEmbedding(torch.zeros(8))
    with pytest.raises(ValueError, match="metric must be 'cosine' or 'euclidean', got 'l1'"):
        DistanceToEmbedding(torch.randn(8), metric="l1")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="same size"):
        TripletTarget(torch.randn(8), torch.randn(4))
    with pytest.raises(ValueError, match="valid targets: similarity, distance, triplet"):
        make_targets("cosine", torch.randn(2, 8))
    with pytest.raises(ValueError, match="one negative embedding per reference"):
        make_targets("triplet", torch.randn(2, 8))


# ------------------------------------------------------------------------------------------------- layers
FAMILIES = [
    ("resnet18", {}, "backbone.layer4.1"),
    ("resnet18", {"attention": "se", "attention_layout": [0, 0, 0, 1]}, "backbone.attention.layer4.1"),
    ("osnet_x0_25", {}, "backbone.conv5"),
    ("osnet_x0_25", {"attention": "se", "attention_layout": ["conv5"]}, "backbone.attention.conv5"),
    ("efficientnet_b0", {}, "backbone.features.8"),
    ("mobilenetv3_small", {}, "backbone.features.12"),
]


@pytest.mark.parametrize(("name", "kwargs", "default"), FAMILIES)
def test_stage_layers_output_each_stage_and_the_default_is_the_pooled_map(
    name: str, kwargs: dict, default: str
) -> None:
    backbone = build_backbone(name, **kwargs)
    channels = backbone.out_channels
    model = ReIDModel(backbone, GlobalAvgPool(), BNNeck(channels), LinearHead(channels, 3)).eval()
    assert default_target_layers(model) == [default]
    layers = stage_layers(model)
    assert list(layers) == list(model.backbone.stage_names)
    seen: dict[str, torch.Tensor] = {}
    handles = [model.get_submodule(module).register_forward_hook(
        lambda _m, _i, out, stage=stage: seen.__setitem__(stage, out)) for stage, module in layers.items()]
    x = torch.randn(1, 3, 64, 32)
    with torch.no_grad():
        maps = model.backbone.featuremaps(x)
        seen.clear()
        final = model.backbone(x)
    for handle in handles:
        handle.remove()
    for stage in layers:
        torch.testing.assert_close(seen[stage], maps[stage], msg=f"{name}: {stage}")
    torch.testing.assert_close(seen[list(layers)[-1]], final)


def test_lightmbn_default_is_the_global_branch_last_stage() -> None:
    model = LightMBN(num_classes=3)
    assert default_target_layers(model) == ["global_branch.conv5"]
    assert stage_layers(model)["trunk.conv2"] == "trunk.conv2"
    maps = compute_heatmaps(model, torch.randn(1, 3, 64, 32), None, "activation")
    assert maps.shape == (1, 64, 32)


def test_layer_override_and_errors() -> None:
    model = build_model({"backbone": "resnet18"}, 3)
    assert [n for n, _ in resolve_layers(model, "backbone.layer3.1")] == ["backbone.layer3.1"]
    assert [n for n, _ in resolve_layers(model, ["backbone.layer3.1", "backbone.layer4.1"])] == [
        "backbone.layer3.1", "backbone.layer4.1"]
    with pytest.raises(ValueError, match=r"unknown target layer 'backbone\.layer5'.*'layer4': 'backbone\.layer4\.1'"):
        resolve_layers(model, "backbone.layer5")
    x = torch.randn(1, 3, 64, 32)
    target = make_targets("similarity", torch.randn(1, model.feature_dim))
    with pytest.raises(ValueError, match=r"'backbone\.layer4' did not run in the forward pass"):
        compute_heatmaps(model, x, target, "gradcam", "backbone.layer4")  # its blocks are called one by one
    with pytest.raises(TypeError, match="stage_layers knows ReIDModel and LightMBN"):
        stage_layers(nn.Linear(2, 2))


# ------------------------------------------------------------------------------------------------- runner
@pytest.mark.parametrize("quadrant", ["top_left", "bottom_right"])
@pytest.mark.parametrize("method", ["gradcam", "gradcam++", "xgradcam", "layercam", "hirescam", "activation"])
def test_heat_lies_in_the_only_region_the_features_depend_on(quadrant: str, method: str) -> None:
    model = region_model(quadrant)
    x = torch.randn(2, 3, H, W)
    targets = None if method == "activation" else make_targets("similarity", embed(model, x.flip(0)))
    maps = compute_heatmaps(model, x, targets, method, "backbone.mask")
    assert maps.shape == (2, H, W) and maps.max() == pytest.approx(1.0, abs=1e-5)
    np.testing.assert_allclose(mass_inside(maps, quadrant), 1.0, atol=1e-6)


def test_region_heat_survives_a_strided_map_and_elementwise_gradients_before_the_mask() -> None:
    model = region_model("top_left", stride=2)  # 16×8 map resized to 32×16
    x = torch.randn(2, 3, H, W)
    targets = make_targets("similarity", embed(model, x.flip(0)))
    assert (mass_inside(compute_heatmaps(model, x, targets, "gradcam"), "top_left") > 0.9).all()
    # before the mask the activations are everywhere, but the gradient is zero outside the region
    layercam = compute_heatmaps(model, x, targets, "layercam", "backbone.convs")
    assert (mass_inside(layercam, "top_left") > 0.9).all()


def test_gradcam_matches_a_hand_computation() -> None:
    model = region_model("top_left")
    x = torch.randn(1, 3, H, W)
    ref = torch.randn(model.feature_dim)
    maps = compute_heatmaps(model, x, [SimilarityToEmbedding(ref)], "gradcam", "backbone.convs")
    captured: list[torch.Tensor] = []
    handle = model.backbone.convs.register_forward_hook(lambda _m, _i, out: captured.append(out))
    e = model(x)[0]
    handle.remove()
    value = torch.dot(e, ref) / (e.norm() * ref.norm())
    (grad,) = torch.autograd.grad(value, captured[0])
    cam = torch.relu((grad.mean(dim=(2, 3), keepdim=True) * captured[0]).sum(dim=1))[0].detach().numpy()
    cam = (cam - cam.min()) / (cam.max() - cam.min())
    np.testing.assert_allclose(maps[0], cam, atol=1e-5)


def test_model_state_is_restored_and_frozen_parameters_still_get_heat() -> None:
    model = region_model().train()
    for p in model.parameters():
        p.requires_grad_(False)  # a frozen model: the input is made to require grad instead
    x = torch.randn(1, 3, H, W)
    maps = compute_heatmaps(model, x, make_targets("similarity", torch.randn(1, 8)), "gradcam", "backbone.mask")
    assert maps.max() > 0.99
    assert model.training and all(m.training for m in model.modules())
    assert all(p.grad is None for p in model.parameters())
    assert not x.requires_grad


def test_one_target_per_image_and_clear_errors() -> None:
    model = region_model()
    x = torch.randn(2, 3, H, W)
    one = make_targets("similarity", torch.randn(1, 8))
    with pytest.raises(ValueError, match="exactly one target per image: 2 images, 1 targets"):
        compute_heatmaps(model, x, one, "gradcam")
    with pytest.raises(ValueError, match="gradcam needs one target per image"):
        compute_heatmaps(model, x, None, "gradcam")
    with pytest.raises(ValueError, match=r"unknown heatmap method 'gradcam\+\+\+'; valid methods: gradcam, "):
        compute_heatmaps(model, x, None, "gradcam+++")
    with pytest.raises(ValueError, match=r"model-ready image \(3, H, W\)"):
        compute_heatmaps(model, torch.randn(1, 4, H, W), None, "activation")


def test_no_grad_and_inference_mode_are_detected_gradient_free_methods_still_run() -> None:
    model = region_model()
    x = torch.randn(1, 3, H, W)
    targets = make_targets("similarity", torch.randn(1, 8))
    with torch.no_grad():
        with pytest.raises(RuntimeError, match=r"called under torch\.no_grad\(\)"):
            compute_heatmaps(model, x, targets, "layercam")
        assert compute_heatmaps(model, x, None, "eigencam").shape == (1, H, W)
    with torch.inference_mode():
        with pytest.raises(RuntimeError, match=r"inside torch\.inference_mode\(\)"):
            compute_heatmaps(model, x, targets, "gradcam")
        maps = compute_heatmaps(model, x, None, "activation", "backbone.mask")
    np.testing.assert_allclose(mass_inside(maps, "top_left"), 1.0, atol=1e-6)


class DetachedBackbone(RegionBackbone):
    """The map the model pools is computed from a detached copy of ``convs``' output: no gradient reaches it."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.mask(self.convs(x).detach() + 0 * x.mean())


class NoGradLayer(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return self.conv(x)


def test_a_layer_without_gradient_is_a_clear_error() -> None:
    model = ReIDModel(DetachedBackbone(), GlobalAvgPool(), None, LinearHead(8, 3)).eval()
    x = torch.randn(1, 3, H, W)
    targets = make_targets("similarity", torch.randn(1, 8))
    with pytest.raises(MissingGradientError, match=r"no gradient reached target layer\(s\) \['backbone\.convs'\]"):
        compute_heatmaps(model, x, targets, "gradcam", "backbone.convs")
    backbone = nn.Sequential(NoGradLayer(), nn.ReLU())
    backbone.out_channels = 8  # type: ignore[assignment]
    model = ReIDModel(backbone, GlobalAvgPool(), None, LinearHead(8, 3)).eval()
    with pytest.raises(MissingGradientError, match=r"'backbone\.0': its output does not require grad"):
        compute_heatmaps(model, x, targets, "gradcam", "backbone.0")


def test_every_method_runs_on_a_resnet_and_scorecam_is_optional_but_works() -> None:
    model = build_model({"backbone": "resnet18"}, 3)
    x = torch.randn(2, 3, 64, 32)
    targets = make_targets("similarity", embed(model, x.flip(0)))
    for method in METHODS:
        layers = "backbone.layer4.1"
        if method == "scorecam":  # 512 masked forward passes per image: use a small layer and one image
            maps = compute_heatmaps(region_model(), torch.randn(1, 3, H, W), make_targets(
                "similarity", torch.randn(1, 8)), "scorecam", "backbone.mask")
            np.testing.assert_allclose(mass_inside(maps, "top_left"), 1.0, atol=1e-6)
            continue
        maps = compute_heatmaps(model, x, targets, method, layers)
        assert maps.shape == (2, 64, 32) and maps.dtype == np.float32, method
        assert maps.min() >= 0 and maps.max() <= 1 + 1e-6, method


def test_heatmap_pair_explains_each_side_against_the_other() -> None:
    model = region_model()
    q, g, n = torch.randn(3, 3, H, W).unbind(0)
    pair = heatmap_pair(model, q, g, "gradcam", "backbone.mask", "similarity")
    e_q, e_g = embed(model, q), embed(model, g)
    assert pair.similarity == pytest.approx(float(F.cosine_similarity(e_q, e_g)[0]), abs=1e-6)
    alone = compute_heatmaps(model, g, [SimilarityToEmbedding(e_q[0])], "gradcam", "backbone.mask")[0]
    np.testing.assert_allclose(pair.gallery_map, alone, atol=1e-6)
    assert pair.caption == f"gradcam · backbone.mask · similarity · cos {pair.similarity:.3f}"
    triplet = heatmap_pair(model, q, g, "layercam", "backbone.mask", "triplet", negative=n)
    e_n = embed(model, n)
    alone = compute_heatmaps(model, q, [TripletTarget(e_g[0], e_n[0])], "layercam", "backbone.mask")[0]
    np.testing.assert_allclose(triplet.query_map, alone, atol=1e-6)
    assert heatmap_pair(model, q, g, "activation").caption.startswith("activation · backbone · cos")
    with pytest.raises(ValueError, match="the triplet target needs a negative image"):
        heatmap_pair(model, q, g, "gradcam", target="triplet")


# ------------------------------------------------------------------------------------------------- decomposition
def test_decomposition_sums_to_the_cosine_of_the_pooled_embedding() -> None:
    model = region_model("top_left", stride=2)  # the embedding is the average-pooled map
    q, g = torch.randn(2, 3, H, W).unbind(0)
    d = similarity_decomposition(model, q, g)
    cos = float(F.cosine_similarity(embed(model, q), embed(model, g))[0])
    assert (d.feature, d.rule) == ("embedding", "linear") and d.gallery.shape == (16, 8)
    assert abs(d.gallery.sum() - cos) < 1e-5 and abs(d.query.sum() - cos) < 1e-5 and abs(d.similarity - cos) < 1e-5
    outside = d.gallery.copy()
    outside[:8, :4] = 0
    assert np.abs(outside).max() == 0  # masked cells contribute nothing


def test_decomposition_cells_by_brute_force() -> None:
    model = region_model("top_left", stride=2)
    q, g = torch.randn(2, 3, H, W).unbind(0)
    d = similarity_decomposition(model, q, g)
    with torch.no_grad():
        a, b = model.backbone(q[None])[0].double(), model.backbone(g[None])[0].double()
    f_q, f_g = a.mean(dim=(1, 2)), b.mean(dim=(1, 2))
    n_cells = b.shape[1] * b.shape[2]
    for i in range(b.shape[1]):
        for j in range(b.shape[2]):
            expected = float(torch.dot(f_q, b[:, i, j]) / (n_cells * f_q.norm() * f_g.norm()))
            assert d.gallery[i, j] == pytest.approx(expected, abs=1e-9)


@pytest.mark.parametrize("eval_feature", ["after", "before"])
@pytest.mark.parametrize("embedding_dim", [None, 6])
def test_decomposition_folds_an_eval_bnneck_exactly(eval_feature: str, embedding_dim: int | None) -> None:
    neck = BNNeck(8, embedding_dim)
    with torch.no_grad():  # non-trivial running statistics and affine weights
        neck.bn.running_mean.uniform_(-0.5, 0.5)
        neck.bn.running_var.uniform_(0.5, 2.0)
        neck.bn.weight.uniform_(0.5, 1.5)
        neck.bn.bias.uniform_(-0.2, 0.2)
    model = region_model("top_left", stride=2, neck=neck)
    model.eval_feature = eval_feature
    q, g = torch.randn(2, 3, H, W).unbind(0)
    cos = float(F.cosine_similarity(embed(model, q), embed(model, g))[0])
    d = similarity_decomposition(model, q, g)
    assert d.feature == "embedding"
    assert abs(d.gallery.sum() - cos) < 1e-5 and abs(d.query.sum() - cos) < 1e-5
    pooled = similarity_decomposition(model, q, g, feature="pooled")  # before the neck: another number
    assert abs(pooled.gallery.sum() - pooled.similarity) < 1e-9


@pytest.mark.parametrize("pooling", [GeM(p=3.0), GlobalMaxPool()])
def test_gem_and_max_use_the_share_rule_on_pooled_features(pooling: nn.Module) -> None:
    model = region_model("top_left", stride=2, pooling=pooling)
    q, g = torch.randn(2, 3, H, W).unbind(0)
    d = similarity_decomposition(model, q, g)
    with torch.no_grad():
        f_q = pooling(model.backbone(q[None]))
        f_g = pooling(model.backbone(g[None]))
    cos = float(F.cosine_similarity(f_q, f_g)[0])
    assert (d.feature, d.rule) == ("pooled", "share")
    assert abs(d.gallery.sum() - cos) < 1e-5 and abs(d.query.sum() - cos) < 1e-5
    with pytest.raises(ValueError, match="exact only for average pooling"):
        similarity_decomposition(model, q, g, feature="embedding")


def test_gem_with_p_one_equals_the_linear_split() -> None:
    q, g = torch.randn(2, 3, H, W).unbind(0)
    linear = region_model("top_left", stride=2)
    gem = region_model("top_left", stride=2, pooling=GeM(p=1.0, eps=1e-12))
    gem.backbone.load_state_dict(linear.backbone.state_dict())
    a = similarity_decomposition(linear, q, g, feature="pooled")
    b = similarity_decomposition(gem, q, g)
    np.testing.assert_allclose(b.gallery, a.gallery, atol=1e-7)


def test_decomposition_errors() -> None:
    with pytest.raises(TypeError, match="needs a ReIDModel"):
        similarity_decomposition(LightMBN(3), torch.randn(3, 64, 32), torch.randn(3, 64, 32))
    model = region_model()
    with pytest.raises(ValueError, match="feature must be 'auto', 'embedding' or 'pooled', got 'neck'"):
        similarity_decomposition(model, torch.randn(3, H, W), torch.randn(3, H, W), feature="neck")  # type: ignore


# ------------------------------------------------------------------------------------------------- pictures
def test_overlays_and_figures() -> None:
    rgb = np.full((H, W, 3), 128, dtype=np.uint8)
    heat = np.zeros((4, 2))
    heat[0, 0] = 1.0
    out = heat_overlay(rgb, heat, alpha=1.0, mode="nearest")
    assert out.shape == (H, W, 3) and out.dtype == np.uint8
    assert tuple(out[0, 0]) == (128, 0, 0) and tuple(out[-1, -1]) == (0, 0, 128)  # jet: red high, dark blue low
    rng = np.random.default_rng(0)
    pair = HeatmapPair(rng.random((H, W)), rng.random((H, W)), 0.5, "gradcam", ("backbone",), "similarity")
    empty = HeatmapPair(pair.query_map, np.zeros((H, W)), 0.5, "gradcam", ("backbone",), "similarity")
    assert pair.empty_sides == () and empty.empty_sides == ("gallery",)
    assert empty.caption == "gradcam · backbone · similarity · cos 0.500 · no positive evidence: gallery"
    fig = heatmap_pair_figure([(rgb, rgb, pair), (rgb, rgb, pair)], row_labels=["same id", "other id"])
    assert isinstance(fig, Figure) and len(fig.subfigs) == 2
    assert [ax.get_title() for ax in fig.subfigs[1].axes] == ["query", "query heat", "gallery heat", "gallery"]
    assert fig.subfigs[1].get_suptitle() == "other id · cosine similarity 0.500\ngradcam · backbone · similarity"
    model = region_model("top_left", stride=2)
    d = similarity_decomposition(model, torch.randn(3, H, W), torch.randn(3, H, W))
    fig = decomposition_figure(rgb, rgb, d)
    assert f"cosine similarity {d.similarity:.3f}" in fig.get_suptitle()
    with pytest.raises(ValueError, match="row_labels: 1 labels for 2 rows"):
        heatmap_pair_figure([(rgb, rgb, pair), (rgb, rgb, pair)], row_labels=["x"])


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_matches_cpu() -> None:
    model = region_model("top_left", stride=2)
    x = torch.randn(2, 3, H, W)
    ref = embed(model, x.flip(0))
    cpu = compute_heatmaps(model, x, make_targets("similarity", ref), "gradcam")
    d_cpu = similarity_decomposition(model, x[0], x[1])
    model.cuda()
    gpu = compute_heatmaps(model, x, make_targets("similarity", ref.cuda()), "gradcam")
    d_gpu = similarity_decomposition(model, x[0], x[1])
    np.testing.assert_allclose(gpu, cpu, atol=1e-4)
    np.testing.assert_allclose(d_gpu.gallery, d_cpu.gallery, atol=1e-5)
    assert next(model.parameters()).is_cuda
