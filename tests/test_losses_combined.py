"""reidkit.losses.build_loss / CombinedLoss: spec parsing, validation, list outputs (LightMBN), logging terms."""
from __future__ import annotations

import pytest
import torch

from reidkit.losses import (
    LOSSES,
    CenterLoss,
    CombinedLoss,
    CrossEntropyLabelSmooth,
    MultiSimilarityLoss,
    TripletLoss,
    build_loss,
    parse_loss_spec,
)
from reidkit.models.lightmbn import BranchTensors, LightMBNTrainOutput, MetricFeatures
from reidkit.models.reid_model import ReIDOutput

B, K, D = 8, 4, 12


@pytest.fixture()
def batch():
    g = torch.Generator().manual_seed(0)
    labels = torch.arange(K).repeat_interleave(2)
    logits = torch.randn(B, K, generator=g, requires_grad=True)
    feats = torch.randn(B, D, generator=g, requires_grad=True)
    return logits, feats, labels


def test_string_spec_parsing():
    terms = parse_loss_spec("0.5*ce + 0.5 * ms+triplet + 5e-4*center")
    assert [(t.name, t.weight, t.key) for t in terms] == [
        ("ce", 0.5, "ce"), ("ms", 0.5, "ms"), ("triplet", 1.0, "triplet"), ("center", 5e-4, "center")
    ]
    terms = parse_loss_spec([{"name": "triplet", "weight": 1, "margin": 0.0}, {"name": "triplet", "weight": 2}])
    assert [(t.key, t.weight, t.params) for t in terms] == [("triplet", 1.0, {"margin": 0.0}), ("triplet_2", 2.0, {})]


@pytest.mark.parametrize(
    "spec,match",
    [
        (
            "0.5*ce + 0.5*arcface",
            r"unknown loss 'arcface'; valid losses: ce, center, circle, cosface, focal, ms, triplet, wrt",
        ),
        ("abc*ce", "weight must be a number"),
        ("-1*ce", "cannot parse|weight"),
        ("nan*ce", "finite"),
        ("inf*ce", "finite"),
        ("0.5*", "cannot parse"),
        ("0.5*ce +", "cannot parse"),
        ("", "empty"),
        ([], "empty"),
        ([{"weight": 1.0}], "no 'name'"),
        ([{"name": "ce", "weight": True}], "must be a number"),
        ([{"name": "ce", "weight": -0.5}], ">= 0"),
        ([{"name": "ce", "weight": "x"}], "must be a number"),
        ([{"name": "ce", "eps": 0.1}], r"unknown parameter\(s\) eps; valid: epsilon, smoothing_style"),
        ([{"name": "ce", "key": "a"}, {"name": "ms", "key": "a"}], "duplicate loss key"),
        (["ce"], "must be a mapping"),
        ("1*center", "needs num_classes, feat_dim"),
    ],
)
def test_spec_errors(spec, match):
    with pytest.raises(ValueError, match=match):
        build_loss(spec)


def test_spec_type_error():
    with pytest.raises(TypeError, match="string or a list of dicts"):
        build_loss(3)  # type: ignore[arg-type]


def test_params_and_context_reach_the_losses():
    spec = [{"name": "ms", "beta": 40.0, "thresh": 0.5, "margin": 0.7}, {"name": "center", "squared": False}]
    loss = build_loss(spec, num_classes=K, feat_dim=D)
    ms, center = loss.losses["ms"], loss.losses["center"]
    assert isinstance(ms, MultiSimilarityLoss) and (ms.beta, ms.thresh, ms.margin) == (40.0, 0.5, 0.7)
    assert isinstance(center, CenterLoss) and center.centers.shape == (K, D) and not center.squared
    # centre parameters are registered on the combined module (for the optimiser's own group)
    assert any(name.endswith("centers") for name, _ in loss.named_parameters())


def test_plain_reid_output(batch):
    logits, feats, labels = batch
    loss = build_loss("0.5*ce + 0.5*ms + 1.0*triplet")
    out = loss(ReIDOutput(logits, feats), labels)
    ce = CrossEntropyLabelSmooth()(logits, labels)
    ms = MultiSimilarityLoss()(feats, labels)
    tri = TripletLoss()(feats, labels)
    torch.testing.assert_close(out.total, 0.5 * ce + 0.5 * ms + tri)
    assert set(out.terms) == {"ce", "ce_weighted", "ms", "ms_weighted", "triplet", "triplet_weighted", "total"}
    torch.testing.assert_close(out.terms["ms"], ms.detach())
    torch.testing.assert_close(out.terms["ms_weighted"], 0.5 * ms.detach())
    assert all(not v.requires_grad for v in out.terms.values())
    out.total.backward()
    assert logits.grad is not None and feats.grad is not None


def test_lightmbn_shaped_output_sums_over_the_lists(batch):
    _, _, labels = batch
    g = torch.Generator().manual_seed(1)
    logits = BranchTensors(*(torch.randn(B, K, generator=g) for _ in range(7)))
    feats = MetricFeatures(*(torch.randn(B, D, generator=g) for _ in range(3)))
    output = LightMBNTrainOutput(logits=logits, features=feats)
    loss = build_loss("1.0*ce + 1.0*ms", num_classes=K, feat_dim=D)
    ce, ms = CrossEntropyLabelSmooth(), MultiSimilarityLoss()
    out = loss(output, labels)
    ce_sum = sum(ce(z, labels) for z in logits)
    ms_sum = sum(ms(f, labels) for f in feats)
    torch.testing.assert_close(out.terms["ce"], ce_sum)
    torch.testing.assert_close(out.total, ce_sum + ms_sum)
    # the CE branches chosen by the model (model.ce_logits(out), e.g. 6 without the drop head) override .logits
    ce_branches = [logits.glo, logits.pg, logits.p1, logits.p2, logits.c1, logits.c2]
    out6 = loss(output, labels, logits=ce_branches)
    torch.testing.assert_close(out6.terms["ce"], sum(ce(z, labels) for z in ce_branches))
    # weighting applies after the list sum
    half = build_loss("0.5*ms")(output, labels)
    torch.testing.assert_close(half.terms["ms_weighted"], 0.5 * ms_sum)


def test_explicit_inputs_without_output_and_missing_input(batch):
    logits, feats, labels = batch
    loss = build_loss("ce + triplet")
    out = loss(logits=logits, features=[feats, feats], labels=labels)
    torch.testing.assert_close(out.terms["triplet"], 2 * TripletLoss()(feats, labels).detach())
    with pytest.raises(ValueError, match="needs logits"):
        build_loss("focal")(None, labels, features=feats)
    with pytest.raises(ValueError, match="needs the labels"):
        loss(ReIDOutput(logits, feats))
    with pytest.raises(ValueError, match="non-empty list"):
        loss(None, labels, logits=[], features=feats)


def test_every_registered_loss_builds_from_a_spec(batch):
    logits, feats, labels = batch
    spec = " + ".join(f"0.1*{name}" for name in LOSSES)
    loss = build_loss(spec, num_classes=K, feat_dim=D)
    assert isinstance(loss, CombinedLoss)
    out = loss(ReIDOutput(logits, feats), labels)
    assert torch.isfinite(out.total)
    assert set(out.terms) == {*LOSSES, *(f"{n}_weighted" for n in LOSSES), "total"}
