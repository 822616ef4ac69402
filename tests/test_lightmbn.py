"""LightMBN (Herzog et al., ICIP 2021) and Top-DropBlock (Quispe & Pedrini, ICPR 2020).

Parameter counts (faithful and seed variant) with their decomposition, output structures in training and eval,
Top-DropBlock on hand-made maps, independence of the three branch copies, pretrained loading of an OSNet x1.0
state dict into the trunk and all three branches, frozen BN biases, eval determinism, the seed's options.
Inputs are 64×32 or 128×64, except one 384×128 shape walk.
"""
from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from reidkit.models.attention import GlobalContext
from reidkit.models.backbones.osnet import osnet_x1_0
from reidkit.models.dropblock import TopDropBlock, dropped_rows
from reidkit.models.lightmbn import (
    BRANCH_NAMES,
    SEED_FEATURE_ORDER,
    VARIANTS,
    BranchTensors,
    LightMBN,
    LightMBNOptions,
    LightMBNTrainOutput,
    MetricFeatures,
)
from reidkit.models.pooling import GeM

K = 751
LMBN_PARAMS = 9_152_280
SEED_PARAMS = 9_218_859


@pytest.fixture(scope="module")
def lmbn() -> LightMBN:
    torch.manual_seed(0)
    return LightMBN(K)


@pytest.fixture(scope="module")
def seed_model() -> LightMBN:
    torch.manual_seed(0)
    return LightMBN(K, variant="seed")


def _images(b: int = 2, h: int = 64, w: int = 32, seed: int = 0) -> Tensor:
    return torch.randn(b, 3, h, w, generator=torch.Generator().manual_seed(seed))


def _count(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


# ------------------------------------------------------------------------------------------ parameter counts
def test_faithful_parameter_count_and_its_decomposition(lmbn: LightMBN) -> None:
    """9,152,280 for 751 classes (the paper's 9.15 M): OSNet x1.0 without head = trunk + one branch; two more
    branch copies; OSBlock(512, 512); five 512→512 reductions; shared conv 256→512 + BN; 7 BNNecks; 7 classifiers
    512·K (≈ 2.7 M)."""
    assert _count(lmbn) == LMBN_PARAMS
    parts = lmbn.parameter_breakdown()
    assert sum(parts.values()) == LMBN_PARAMS
    backbone = _count(osnet_x1_0())
    assert backbone == 1_905_828
    assert parts["trunk"] + parts["global_branch"] == backbone
    assert parts["trunk"] == 509_614
    assert parts["global_branch"] == parts["part_branch"] == parts["channel_branch"] == 1_396_214
    assert parts["drop_bottleneck"] == 312_456
    assert parts["reductions"] == 5 * 512 * 512
    assert parts["channel_conv"] == 256 * 512 + 2 * 512
    assert parts["necks"] == 7 * 2 * 512
    assert parts["classifiers"] == 7 * 512 * K == 2_691_584
    assert parts["attention"] == parts["gem"] == 0
    # BN biases of the seven necks are frozen: not trainable
    assert sum(p.numel() for p in lmbn.parameters() if p.requires_grad) == LMBN_PARAMS - 7 * 512


def test_seed_parameter_count(seed_model: LightMBN) -> None:
    """9,218,859 (≈ 9.22 M) = LMBN + GlobalContext (scale fusion, 1/16) in the trunk (256 ch, hidden 16) and in
    each branch (384 ch, hidden 24) + one GeM exponent per head."""
    parts = seed_model.parameter_breakdown()
    assert _count(seed_model) == sum(parts.values()) == SEED_PARAMS
    gc_trunk = (256 + 1) + (256 * 16 + 16) + 2 * 16 + (16 * 256 + 256)
    gc_branch = (384 + 1) + (384 * 24 + 24) + 2 * 24 + (24 * 384 + 384)
    assert parts["attention"] == gc_trunk + 3 * gc_branch == 66_572
    assert parts["gem"] == 7
    assert SEED_PARAMS == LMBN_PARAMS + 66_572 + 7


def test_classifier_count_scales_with_classes() -> None:
    assert _count(LightMBN(10)) == LMBN_PARAMS - 7 * 512 * (K - 10)


# ------------------------------------------------------------------------------------------ outputs
def test_training_output_structure(lmbn: LightMBN) -> None:
    lmbn.train()
    out = lmbn(_images(3))
    assert isinstance(out, LightMBNTrainOutput)
    assert isinstance(out.logits, BranchTensors) and isinstance(out.features, MetricFeatures)
    assert out.logits._fields == BRANCH_NAMES
    assert out.features._fields == ("glo", "drop", "pg")
    assert [tuple(t.shape) for t in out.logits] == [(3, K)] * 7
    assert [tuple(t.shape) for t in out.features] == [(3, 512)] * 3
    assert lmbn.ce_branches == BRANCH_NAMES and len(lmbn.ce_logits(out)) == 7
    loss = sum(F.cross_entropy(z, torch.tensor([0, 1, 2])) for z in lmbn.ce_logits(out))
    loss = loss + sum(f.pow(2).mean() for f in out.features)
    loss.backward()
    assert all(p.grad is not None for p in lmbn.drop_bottleneck.parameters())
    lmbn.zero_grad(set_to_none=True)


def test_eval_output_is_per_branch_unit_norm(lmbn: LightMBN) -> None:
    lmbn.eval()
    with torch.no_grad():
        feats = lmbn(_images(3, 128, 64))
        stacked = lmbn.branch_features(_images(3, 128, 64))
    assert feats.shape == (3, 7 * 512) == (3, lmbn.feature_dim)
    norms = feats.view(3, 7, 512).norm(dim=2)
    torch.testing.assert_close(norms, torch.ones(3, 7))
    torch.testing.assert_close(feats, F.normalize(stacked, dim=2).flatten(1))
    # 1 − q·g: q·g is the sum of the 7 per-branch cosines
    q, g = feats[0].view(7, 512), feats[1].view(7, 512)
    torch.testing.assert_close(feats[0] @ feats[1], F.cosine_similarity(q, g, dim=1).sum())


def test_shapes_at_384x128(lmbn: LightMBN) -> None:
    lmbn.eval()
    with torch.no_grad():
        maps = lmbn.branch_maps(_images(1, 384, 128))
        feats = lmbn(_images(1, 384, 128))
    shapes = {name: tuple(t.shape) for name, t in maps.items()}
    assert shapes == {"trunk": (1, 384, 48, 16), "global": (1, 512, 24, 8), "part": (1, 512, 24, 8),
                      "channel": (1, 512, 24, 8), "drop_bottleneck": (1, 512, 24, 8)}
    assert dropped_rows(24, lmbn.top_drop.ratio) == 8
    assert feats.shape == (1, 3584)


def test_flip_sums_before_normalisation(lmbn: LightMBN) -> None:
    lmbn.eval()
    x = _images(2, 128, 64)
    with torch.no_grad():
        expected = F.normalize(lmbn.branch_features(x) + lmbn.branch_features(x.flip(3)), dim=2).flatten(1)
    torch.testing.assert_close(lmbn.extract_features(x, flip=True), expected)
    torch.testing.assert_close(lmbn.extract_features(x), lmbn(x).detach())


def test_eval_drop_feature_is_max_pool_of_the_bottleneck(lmbn: LightMBN) -> None:
    """In eval Top-DropBlock is the identity: the drop head sees max-pool(b), the global head avg-pool(b)."""
    lmbn.eval()
    x = _images(2)
    seen: dict[str, Tensor] = {}
    hooks = [lmbn.heads[n].register_forward_hook(lambda m, a, o, n=n: seen.__setitem__(n, a[0]))
             for n in ("glo", "drop")]
    try:
        with torch.no_grad():
            lmbn(x)
            b = lmbn.branch_maps(x)["drop_bottleneck"]
    finally:
        for h in hooks:
            h.remove()
    torch.testing.assert_close(seen["drop"], b.amax(dim=(2, 3)))
    torch.testing.assert_close(seen["glo"], b.mean(dim=(2, 3)))


def test_eval_is_deterministic() -> None:
    x = _images(2, 128, 64)
    outs = []
    for _ in range(2):
        torch.manual_seed(3)
        model = LightMBN(K).eval()
        with torch.no_grad():
            outs.append((model(x), model(x)))
    assert torch.equal(outs[0][0], outs[0][1])
    assert torch.equal(outs[0][0], outs[1][0])


# ------------------------------------------------------------------------------------------ Top-DropBlock
def test_dropped_rows_rounding() -> None:
    assert [dropped_rows(h, 0.33) for h in (24, 16, 8, 4, 2, 1)] == [8, 5, 3, 1, 1, 0]
    with pytest.raises(ValueError, match="height"):
        dropped_rows(0, 0.33)
    with pytest.raises(ValueError, match="ratio"):
        TopDropBlock(1.5)


def test_top_dropblock_zeroes_the_highest_scoring_rows() -> None:
    """Hand-made map: row h of image i has one hot position of known strength; the top-5 rows of 16 are zeroed
    (whole rows, every channel), the others are untouched."""
    b, c, h, w = 2, 4, 16, 3
    x = torch.full((b, c, h, w), 0.1)
    strength = torch.stack([torch.arange(h, dtype=torch.float32), torch.arange(h, 0, -1, dtype=torch.float32)])
    x[:, 0, :, 1] = strength  # row score grows with h in image 0, shrinks in image 1
    block = TopDropBlock(0.33).train()
    out = block(x)
    k = round(0.33 * h)
    assert k == 5
    expected_dropped = [set(range(h - k, h)), set(range(k))]
    for i in range(b):
        zero_rows = {r for r in range(h) if torch.all(out[i, :, r] == 0)}
        assert zero_rows == expected_dropped[i]
        kept = sorted(set(range(h)) - zero_rows)
        assert torch.equal(out[i, :, kept], x[i, :, kept])
    scores = block.row_scores(x)
    assert scores.shape == (b, h)
    assert torch.equal(block.mask(x)[:, 0, :, 0] == 0, torch.stack(
        [torch.tensor([r in expected_dropped[i] for r in range(h)]) for i in range(b)]))


def test_top_dropblock_row_score_formula() -> None:
    x = torch.rand(2, 5, 6, 3, generator=torch.Generator().manual_seed(1))
    act = x.pow(2).sum(1)
    act = act / act.flatten(1).norm(dim=1)[:, None, None]
    torch.testing.assert_close(TopDropBlock().row_scores(x), act.amax(dim=2))


def test_top_dropblock_is_identity_in_eval_and_gradient_skips_dropped_rows() -> None:
    x = torch.rand(3, 8, 24, 8, generator=torch.Generator().manual_seed(2), requires_grad=True)
    block = TopDropBlock(0.33)
    assert block.eval()(x) is x
    out = block.train()(x)
    out.sum().backward()
    keep = block.mask(x)
    assert int((keep == 0).sum()) == 3 * 8  # 8 rows per image
    assert torch.equal(x.grad, keep.expand_as(x))


# ------------------------------------------------------------------------------------------ structure
def test_branches_are_independent_copies(lmbn: LightMBN) -> None:
    """No parameter is shared between the trunk, the three branches and the heads; the branches start identical
    (deep copies, as LMBN); only the channel conv is used twice (c1 and c2)."""
    owners: dict[int, str] = {}
    for name, p in lmbn.named_parameters(remove_duplicate=False):
        assert id(p) not in owners, f"{name} shares a tensor with {owners[id(p)]}"
        owners[id(p)] = name
    g, p, c = (dict(b.named_parameters()) for b in (lmbn.global_branch, lmbn.part_branch, lmbn.channel_branch))
    assert g.keys() == p.keys() == c.keys()
    fresh = LightMBN(K)
    fg, fp = dict(fresh.global_branch.named_parameters()), dict(fresh.part_branch.named_parameters())
    assert all(torch.equal(fg[k], fp[k]) for k in fg)
    with torch.no_grad():
        fg["conv5.conv.weight"].add_(1.0)
    assert not torch.equal(fg["conv5.conv.weight"], fp["conv5.conv.weight"])
    # the shared channel conv: c1 and c2 heads have no reduction of their own, the conv runs twice per forward
    assert lmbn.heads["c1"].reduction is None and lmbn.heads["c2"].reduction is None
    calls: list[int] = []
    hook = lmbn.channel_conv.register_forward_hook(lambda m, a, o: calls.append(a[0].shape[1]))
    try:
        with torch.no_grad():
            lmbn.eval()(_images(1))
    finally:
        hook.remove()
    assert calls == [256, 256]


def test_initialisation(lmbn: LightMBN) -> None:
    for name, head in lmbn.named_heads():
        assert torch.equal(head.neck.bn.weight, torch.ones(512))
        assert torch.equal(head.neck.bn.bias, torch.zeros(512))
        assert head.classifier.bias is None
        assert 0.0008 < float(head.classifier.weight.detach().std()) < 0.0012, name
        assert (head.reduction is None) == (name in ("c1", "c2"))
    assert isinstance(lmbn.drop_pool, nn.AdaptiveMaxPool2d) and isinstance(lmbn.part_global_pool, nn.AdaptiveMaxPool2d)


def test_bn_biases_stay_frozen_at_zero() -> None:
    torch.manual_seed(0)
    model = LightMBN(5).train()
    frozen = [head.neck.bn.bias for _, head in model.named_heads()]
    assert all(not b.requires_grad for b in frozen)
    optimiser = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.5)
    out = model(_images(4))
    loss = sum(F.cross_entropy(z, torch.tensor([0, 1, 2, 3])) for z in model.ce_logits(out))
    loss.backward()
    optimiser.step()
    assert all(torch.equal(b, torch.zeros(512)) for b in frozen)
    model.requires_grad_(True)
    with pytest.raises(RuntimeError, match="frozen"):
        model(_images(2))


# ------------------------------------------------------------------------------------------ pretrained
@pytest.fixture(scope="module")
def osnet_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Tensor]]:
    """An OSNet x1.0 state dict written by the test, with random values (so that loaded ≠ init) and torchreid's
    head keys, which the loader must drop."""
    gen = torch.Generator().manual_seed(7)
    state = {}
    for key, value in osnet_x1_0().state_dict().items():
        if key.endswith("num_batches_tracked"):
            state[key] = torch.tensor(100)
        elif key.endswith("running_var"):
            state[key] = torch.rand(value.shape, generator=gen) + 0.5
        else:
            state[key] = torch.randn(value.shape, generator=gen) * 0.1
    state["fc.0.weight"] = torch.zeros(512, 512)
    state["classifier.weight"] = torch.zeros(1000, 512)
    path = tmp_path_factory.mktemp("weights") / "osnet_x1_0_imagenet.pth"
    torch.save(state, path)
    return path, state


def test_pretrained_fills_trunk_and_all_branches(osnet_checkpoint: tuple[Path, dict[str, Tensor]]) -> None:
    path, state = osnet_checkpoint
    model = LightMBN(K, pretrained=path)
    own = model.state_dict()
    trunk_keys = [k for k in state if k.startswith(("conv1.", "conv2.", "conv3.0."))]
    branch_keys = [k for k in state if k.startswith(("conv3.1.", "conv3.2.", "conv4.", "conv5."))]
    assert len(trunk_keys) + len(branch_keys) == len(state) - 2
    for k in trunk_keys:
        assert torch.equal(own[f"trunk.{k}"], state[k]), k
    for k in branch_keys:
        for branch in ("global_branch", "part_branch", "channel_branch"):
            assert torch.equal(own[f"{branch}.{k}"], state[k]), (branch, k)
    report = model.load_report
    assert report is not None and report.source == str(path)
    assert len(report.loaded) == len(trunk_keys) + 3 * len(branch_keys)
    assert report.unexpected == ["fc.0.weight", "classifier.weight"]
    assert report.missing == []
    new_parts = {k.split(".")[0] for k in report.new}
    assert new_parts == {"drop_bottleneck", "channel_conv", "heads"}
    assert {k.split(".")[1] for k in report.new if k.startswith("heads.")} == set(BRANCH_NAMES)
    assert "new, own init" in report.summary()


def test_pretrained_seed_variant_reports_attention_as_new(osnet_checkpoint: tuple[Path, dict[str, Tensor]]) -> None:
    path, state = osnet_checkpoint
    model = LightMBN(K, variant="seed", pretrained=path)
    assert model.load_report is not None
    new = {".".join(k.split(".")[:2]) for k in model.load_report.new if "attention" in k}
    assert new == {"trunk.attention_conv2", "global_branch.attention_conv3", "part_branch.attention_conv3",
                   "channel_branch.attention_conv3"}
    key = "conv4.1.conv3.conv.weight"
    assert torch.equal(model.state_dict()[f"channel_branch.{key}"], state[key])


def test_pretrained_errors_name_the_file(tmp_path: Path, osnet_checkpoint: tuple[Path, dict[str, Tensor]]) -> None:
    _, state = osnet_checkpoint
    broken = {k: v for k, v in state.items() if not k.startswith("conv4.1.")}
    path = tmp_path / "broken.pth"
    torch.save(broken, path)
    with pytest.raises(ValueError, match=r"broken\.pth.*lacks"):
        LightMBN(K, pretrained=path)
    with pytest.raises(ValueError, match="keys the model does not"):
        LightMBN(K, pretrained={**state, "conv6.weight": torch.zeros(1)})
    with pytest.raises(FileNotFoundError):
        LightMBN(K, pretrained=tmp_path / "absent.pth")


def test_pretrained_true_offline_says_where_to_put_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REIDKIT_WEIGHTS", str(tmp_path))
    monkeypatch.setattr("reidkit.models.weights.download_url_to_file",
                        lambda *a, **k: (_ for _ in ()).throw(OSError("offline")))
    with pytest.raises(FileNotFoundError, match="osnet_x1_0_imagenet.pth"):
        LightMBN(K, pretrained=True)


# ------------------------------------------------------------------------------------------ seed variant, options
def test_seed_variant_options(seed_model: LightMBN) -> None:
    assert seed_model.options == VARIANTS["seed"]
    assert not seed_model.ce_on_drop and "drop" not in seed_model.ce_branches and len(seed_model.ce_branches) == 6
    assert isinstance(seed_model.trunk.attention_conv2, GlobalContext)
    assert seed_model.trunk.attention_conv2.fusion == "scale" and seed_model.trunk.attention_conv2.hidden == 16
    assert seed_model.global_branch.attention_conv3.hidden == 24
    assert isinstance(seed_model.drop_pool, nn.AdaptiveAvgPool2d)
    assert isinstance(seed_model.part_global_pool, nn.AdaptiveAvgPool2d)
    for _, head in seed_model.named_heads():
        assert isinstance(head.gem, GeM) and head.gem.learnable
        assert isinstance(head.neck.bn, nn.BatchNorm2d) and not head.neck.bn.bias.requires_grad
        assert not torch.equal(head.neck.bn.weight, torch.ones(512))  # N(1, 0.02)
    # the three branch copies of the attention start identical, as the seed's deep copies did
    torch.testing.assert_close(seed_model.global_branch.attention_conv3.conv_attn.weight,
                               seed_model.part_branch.attention_conv3.conv_attn.weight)


def test_seed_variant_outputs(seed_model: LightMBN) -> None:
    seed_model.train()
    out = seed_model(_images(2))
    assert [tuple(t.shape) for t in out.logits] == [(2, K)] * 7
    assert len(seed_model.ce_logits(out)) == 6
    assert all(float(f.detach().min()) >= 1e-6 for f in out.features)  # GeM on a 1×1 map = clamp: the hidden ReLU
    seed_model.eval()
    x = _images(2)
    with torch.no_grad():
        feats = seed_model(x)
        stacked = seed_model.branch_features(x)
    order = [BRANCH_NAMES.index(n) for n in SEED_FEATURE_ORDER]
    torch.testing.assert_close(feats, stacked[:, order].flatten(1))  # raw, seed order
    torch.testing.assert_close(seed_model.extract_features(x, flip=True),
                               ((stacked + seed_model.branch_features(x.flip(3))) / 2)[:, order].flatten(1))


def test_individual_options_override_the_variant() -> None:
    model = LightMBN(K, variant="seed", branch_norm=True, feature_order="lmbn", attention=None)
    assert _count(model) == SEED_PARAMS - 66_572
    model = LightMBN(K, attention="gc", attention_layout=["conv5"])
    assert model.options.attention_layout == ("conv5",)
    assert len([m for m in model.modules() if isinstance(m, GlobalContext)]) == 3
    assert LightMBNOptions.for_variant("lmbn", drop_pool="avg").drop_pool == "avg"


@pytest.mark.parametrize(("kwargs", "error", "match"), [
    ({"variant": "mgn"}, ValueError, "variant"),
    ({"drop_pooling": "avg"}, TypeError, "valid options"),
    ({"drop_pool": "gem"}, ValueError, "drop_pool"),
    ({"head": "arcface"}, ValueError, "head"),
    ({"attention": "gc", "attention_layout": ("conv1",)}, ValueError, "attention_layout"),
    ({"attention_kwargs": {"fusion": "scale"}}, ValueError, "without attention"),
    ({"feat_dim": 0}, ValueError, "feat_dim"),
])
def test_invalid_options_are_clear_errors(kwargs: dict, error: type[Exception], match: str) -> None:
    with pytest.raises(error, match=match):
        LightMBN(K, **kwargs)


def test_invalid_inputs() -> None:
    with pytest.raises(ValueError, match="num_classes"):
        LightMBN(0)
    model = LightMBN(3).eval()
    with pytest.raises(ValueError, match="images"):
        model(torch.zeros(1, 1, 64, 32))
