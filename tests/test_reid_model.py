"""ReIDModel and build_model: the BoT data flow, train/eval outputs, input normalisation, optimiser groups and
config validation. Small backbones (resnet18, osnet_x0_25) on 64×32 inputs, one 256×128 shape check."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from reidkit.models import (
    BACKBONES,
    IMAGENET_MEAN,
    IMAGENET_STD,
    MODEL_DEFAULTS,
    BNNeck,
    ReIDModel,
    ReIDOutput,
    build_backbone,
    build_head,
    build_model,
    build_pooling,
)

NUM_CLASSES = 6


def images(batch: int = 4, height: int = 64, width: int = 32, seed: int = 0) -> torch.Tensor:
    return torch.randn(batch, 3, height, width, generator=torch.Generator().manual_seed(seed))


def targets(batch: int = 4) -> torch.Tensor:
    return torch.arange(batch) % NUM_CLASSES


@pytest.fixture(scope="module")
def r18() -> ReIDModel:
    torch.manual_seed(0)
    return build_model({"backbone": "resnet18"}, NUM_CLASSES)


def manual_pipeline(model: ReIDModel, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(before, after) computed by calling the components one by one: BoT's data flow."""
    assert isinstance(model.neck, BNNeck)
    before = model.pooling(model.backbone(x))
    if model.neck.embedding is not None:
        before = model.neck.embedding(before)
    return before, model.neck.bn(before)


def test_defaults_are_bot_r50() -> None:
    assert MODEL_DEFAULTS["backbone"] == "resnet50" and MODEL_DEFAULTS["last_stride"] == 1
    assert (MODEL_DEFAULTS["pooling"], MODEL_DEFAULTS["neck"], MODEL_DEFAULTS["head"]) == ("avg", "bnneck", "linear")
    assert (MODEL_DEFAULTS["feature_pos"], MODEL_DEFAULTS["eval_feature"]) == ("before", "after")
    assert MODEL_DEFAULTS["pretrained"] is False  # a bare build never touches the network


def test_train_returns_logits_and_metric_feature_eval_returns_retrieval_feature(r18: ReIDModel) -> None:
    r18.train()
    out = r18(images(), targets())
    assert isinstance(out, ReIDOutput) and out.logits.shape == (4, NUM_CLASSES) and out.features.shape == (4, 512)
    assert out.logits.requires_grad and out.features.requires_grad
    r18.eval()
    with torch.no_grad():
        feats = r18(images(), targets())  # targets are ignored in eval
    assert isinstance(feats, torch.Tensor) and feats.shape == (4, 512) and r18.feature_dim == 512
    assert r18.num_classes == NUM_CLASSES


def test_full_size_input_256x128_with_embedding() -> None:
    model = build_model({"backbone": "resnet18", "embedding_dim": 64, "head": "cos"}, NUM_CLASSES).eval()
    with torch.no_grad():
        assert model(images(2, 256, 128)).shape == (2, 64)
        maps = model.featuremaps(images(2, 256, 128))
    assert list(maps)[-1] == "layer4" and maps["layer4"].shape == (2, 512, 16, 8)  # last stride 1: output stride 16


@pytest.mark.parametrize("feature_pos", ["before", "after"])
def test_feature_pos_selects_the_tensor_before_or_after_the_bn(feature_pos: str) -> None:
    torch.manual_seed(0)
    model = build_model({"backbone": "resnet18", "feature_pos": feature_pos, "embedding_dim": 32}, NUM_CLASSES)
    model.train()
    x = images()
    torch.manual_seed(1)
    out = model(x, targets())
    before, after = manual_pipeline(model, x)
    expected = before if feature_pos == "before" else after
    other = after if feature_pos == "before" else before
    torch.testing.assert_close(out.features, expected)
    assert not torch.allclose(out.features, other, atol=1e-3)  # the switch really changes the tensor
    # the classifier always sees the after-BN feature
    torch.testing.assert_close(out.logits, model.head(after, targets()))


@pytest.mark.parametrize("eval_feature", ["before", "after"])
def test_eval_feature(eval_feature: str) -> None:
    torch.manual_seed(0)
    model = build_model({"backbone": "resnet18", "eval_feature": eval_feature}, NUM_CLASSES)
    with torch.no_grad():
        model.train()
        model(images(8, seed=3))  # move the BN running statistics away from (0, 1)
        model.eval()
        x = images()
        feats = model(x)
        before, after = manual_pipeline(model, x)
    torch.testing.assert_close(feats, before if eval_feature == "before" else after)
    assert not torch.allclose(before, after, atol=1e-3)


def test_no_neck_uses_the_pooled_feature() -> None:
    model = build_model({"backbone": "osnet_x0_25", "neck": "none", "pooling": "max"}, NUM_CLASSES)
    x = images()
    model.train()
    out = model(x, targets())
    torch.testing.assert_close(out.features, model.pooling(model.backbone(x)))
    assert model.feature_dim == model.backbone.out_channels == 128 and out.logits.shape == (4, NUM_CLASSES)
    with torch.no_grad():
        model.eval()
        torch.testing.assert_close(model(x), model.pooling(model.backbone(x)))


def test_input_norm_inside_equals_outside_and_does_not_mutate_the_input() -> None:
    torch.manual_seed(0)
    outside = build_model({"backbone": "resnet18"}, NUM_CLASSES).eval()
    inside = build_model({"backbone": "resnet18", "input_norm": "imagenet"}, NUM_CLASSES).eval()
    inside.load_state_dict(outside.state_dict())  # the constants are not in the state dict
    assert set(inside.state_dict()) == set(outside.state_dict())
    rgb = torch.rand(3, 3, 64, 32)
    keep = rgb.clone()
    mean, std = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    with torch.no_grad():
        torch.testing.assert_close(inside(rgb), outside((rgb - mean) / std), rtol=1e-5, atol=1e-5)
        inside.featuremaps(rgb)
    assert torch.equal(rgb, keep)
    assert inside.input_norm is not None and outside.input_norm is None
    with pytest.raises(TypeError, match=r"\[0, 1\]"):
        inside(torch.zeros(1, 3, 64, 32, dtype=torch.uint8))
    custom = build_model({"backbone": "resnet18", "input_norm": {"mean": [0.5] * 3, "std": [0.25] * 3}}, 2)
    assert custom.input_norm == ((0.5,) * 3, (0.25,) * 3)


def test_margin_only_in_training_with_targets() -> None:
    torch.manual_seed(0)
    model = build_model({"backbone": "resnet18", "head": "arcface", "scale": 16.0, "margin": 0.3}, NUM_CLASSES)
    model.train()
    x, y = images(), targets()
    plain = model(x).logits                    # training without targets: s·cos, no margin
    with_margin = model(x, y).logits
    _, after = manual_pipeline(model, x)
    cos = model.head.similarity(after)
    torch.testing.assert_close(plain, 16.0 * cos)
    rows = torch.arange(4)
    torch.testing.assert_close(with_margin[rows, y], 16.0 * torch.cos(torch.acos(cos[rows, y]) + 0.3))
    other = torch.ones_like(with_margin, dtype=torch.bool)
    other[rows, y] = False
    torch.testing.assert_close(with_margin[other], plain[other])


def test_components_assembled_by_hand() -> None:
    backbone = build_backbone("resnet18")
    model = ReIDModel(backbone, build_pooling("avg"), BNNeck(512, 16), build_head("circle", 16, 3),
                      feature_pos="after")
    model.train()
    out = model(images(), torch.tensor([0, 1, 2, 0]))
    assert out.features.shape == (4, 16) and model.config is None
    with pytest.raises(ValueError, match="feature_pos"):
        ReIDModel(backbone, build_pooling("avg"), None, build_head("linear", 512, 3),
                  feature_pos="middle")  # type: ignore[arg-type]


def test_param_groups_follow_the_optimiser_rules() -> None:
    model = build_model({"backbone": "resnet18", "pooling": "gem", "gem_learnable": True, "embedding_dim": 32},
                        NUM_CLASSES)
    groups = model.param_groups(lr=1e-3, weight_decay=5e-4, bias_lr_factor=2.0, bias_weight_decay=0.0,
                                norm_weight_decay=1e-5)
    by_name = {g["name"]: g for g in groups}
    assert set(by_name) == {"decay", "norm", "bias", "no_decay"}
    members = {name: {id(p) for p in g["params"]} for name, g in by_name.items()}
    names = {id(p): n for n, p in model.named_parameters()}
    assert {names[i] for i in members["no_decay"]} == {"pooling.p"}
    assert by_name["no_decay"]["weight_decay"] == 0.0 and by_name["no_decay"]["lr"] == 1e-3
    assert (by_name["bias"]["lr"], by_name["bias"]["weight_decay"]) == (2e-3, 0.0)
    assert (by_name["norm"]["lr"], by_name["norm"]["weight_decay"]) == (1e-3, 1e-5)
    assert (by_name["decay"]["lr"], by_name["decay"]["weight_decay"]) == (1e-3, 5e-4)
    assert id(model.neck.bn.weight) in members["norm"] and id(model.backbone.bn1.weight) in members["norm"]
    assert id(model.backbone.bn1.bias) in members["bias"]
    assert id(model.head.weight) in members["decay"] and id(model.neck.embedding.weight) in members["decay"]
    # the frozen BNNeck bias is in no group; every trainable parameter is in exactly one
    assert all(id(model.neck.bn.bias) not in m for m in members.values())
    listed = [i for m in members.values() for i in m]
    assert len(listed) == len(set(listed)) == sum(p.requires_grad for p in model.parameters())
    optimizer = torch.optim.Adam(groups)  # torch accepts the groups as they are
    assert len(optimizer.param_groups) == 4
    # defaults: one decay for everything but GeM's p
    defaults = {g["name"]: g["weight_decay"] for g in model.param_groups(lr=1e-3, weight_decay=5e-4)}
    assert defaults == {"decay": 5e-4, "norm": 5e-4, "bias": 5e-4, "no_decay": 0.0}
    with pytest.raises(ValueError, match="lr"):
        model.param_groups(lr=0.0, weight_decay=5e-4)


def test_state_dict_round_trip() -> None:
    cfg = {"backbone": "osnet_x0_25", "pooling": "gem", "gem_learnable": True, "head": "cos", "num_subcenters": 2}
    torch.manual_seed(0)
    source = build_model(cfg, NUM_CLASSES)
    with torch.no_grad():
        source.pooling.p.fill_(4.0)
        source.train()(images())  # non-trivial BN statistics
    torch.manual_seed(1)
    copy = build_model(source.config, NUM_CLASSES)
    copy.load_state_dict(source.state_dict(), strict=True)
    assert copy.config == source.config
    source.eval()
    copy.eval()
    with torch.no_grad():
        torch.testing.assert_close(copy(images()), source(images()), rtol=0, atol=0)
    assert "neck.bn.bias" in source.state_dict() and "input_mean" not in source.state_dict()


# --------------------------------------------------------------------------------------------------------------
# build_model validation
# --------------------------------------------------------------------------------------------------------------
def test_unknown_key_lists_the_valid_keys_and_suggests_a_fix() -> None:
    with pytest.raises(ValueError, match="unknown model config key") as info:
        build_model({"backbon": "resnet18"}, NUM_CLASSES)
    message = str(info.value)
    assert "'backbon' → 'backbone'" in message and "valid keys:" in message
    assert all(key in message for key in MODEL_DEFAULTS)


def test_unknown_backbone_lists_the_valid_names() -> None:
    with pytest.raises(ValueError, match=r"model\.backbone") as info:
        build_model({"backbone": "resnet9"}, NUM_CLASSES)
    assert "resnet9" in str(info.value) and all(name in str(info.value) for name in BACKBONES)


@pytest.mark.parametrize("cfg, pattern", [
    ({"head": "arc"}, r"model\.head: unknown head 'arc'; valid names: arcface, circle, cos, linear"),
    ({"head": "linear", "margin": 0.3}, r"model\.head: the linear head has no scale or margin"),
    ({"head": "arcface", "margin": 28.6}, r"model\.head: .*radians"),
    ({"neck": "bn"}, r"model\.neck: unknown value 'bn'; valid values: bnneck, none"),
    ({"pooling": "mean"}, r"model\.pooling: unknown value 'mean'; valid values: avg, gem, max"),
    ({"feature_pos": "middle"}, r"model\.feature_pos: .*valid values: after, before"),
    ({"last_stride": 3}, r"model\.last_stride: must be 1 or 2"),
    ({"gem_p": 0.5, "pooling": "gem"}, r"model\.gem_p"),
    ({"neck": "none", "embedding_dim": 64}, r"model\.embedding_dim: an embedding needs the BNNeck"),
    ({"embedding_dim": True}, r"model\.embedding_dim"),
    ({"input_norm": "imagenett"}, r"model\.input_norm: unknown value"),
    ({"input_norm": {"mean": [0.5] * 3, "std": [0.0] * 3}}, r"model\.input_norm: .*std must be > 0"),
    ({"feature_dim": 64, "embedding_dim": 32}, r"model\.feature_dim: is another name for 'embedding_dim'"),
    ({"attention": "nonlocall"}, r"model: cannot build backbone 'resnet50': unknown attention 'nonlocall'"),
])
def test_bad_values_name_the_key(cfg: dict, pattern: str) -> None:
    with pytest.raises(ValueError, match=pattern):
        build_model({"backbone": "resnet18", **cfg} if "attention" not in cfg else {"backbone": "resnet50", **cfg},
                    NUM_CLASSES)


def test_bad_num_classes() -> None:
    with pytest.raises(ValueError, match="num_classes"):
        build_model({"backbone": "resnet18"}, 0)


def test_config_options_reach_the_components() -> None:
    model = build_model({"backbone": "resnet18", "last_stride": 2, "pooling": "GeM", "gem_p": 4.0,
                         "feature_dim": 48, "neck_norm": "2d", "head": "arcface", "margin": 0.4,
                         "num_subcenters": 3, "head_kwargs": {"easy_margin": True}}, NUM_CLASSES)
    assert isinstance(model.neck, BNNeck) and isinstance(model.neck.bn, nn.BatchNorm2d)
    assert model.config["embedding_dim"] == 48 and model.config["pooling"] == "gem" and model.pooling.p == 4.0
    assert model.head.margin == 0.4 and model.head.num_subcenters == 3 and model.head.easy_margin
    with torch.no_grad():
        assert model.eval()(images(1)).shape == (1, 48)
        assert model.backbone(images(1)).shape[-2:] == (2, 1)  # last stride 2: output stride 32
