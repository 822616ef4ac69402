"""BNNeck and the classifier heads: each against its formula on hand-made inputs, the edges of ArcFace, the
detached Circle weights, sub-centres, float32 under autocast and gradchecks."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn as nn

from reidkit.models.heads import (
    HEADS,
    ArcFace,
    BNNeck,
    CircleSoftmax,
    CosSoftmax,
    LinearHead,
    arcface_logits,
    build_head,
    circle_logits,
    cosface_logits,
)
from reidkit.models.neck import BNNeck as NeckBNNeck

COSINE_HEADS = ["cos", "arcface", "circle"]


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


# ======================================================================================================= BNNeck
def test_bnneck_is_reexported() -> None:
    assert BNNeck is NeckBNNeck


def test_bnneck_bias_is_zero_and_frozen() -> None:
    neck = BNNeck(16)
    assert isinstance(neck.bn, nn.BatchNorm1d)
    assert torch.count_nonzero(neck.bn.bias) == 0 and not neck.bn.bias.requires_grad
    assert torch.equal(neck.bn.weight.detach(), torch.ones(16)) and neck.bn.weight.requires_grad
    assert all(p is not neck.bn.bias for p in neck.parameters() if p.requires_grad)


@pytest.mark.parametrize("make_opt", [
    lambda ps: torch.optim.SGD(ps, lr=0.5, momentum=0.9, weight_decay=5e-4),
    lambda ps: torch.optim.Adam(ps, lr=0.1, weight_decay=5e-4),
    lambda ps: torch.optim.AdamW(ps, lr=0.1, weight_decay=0.05),
])
def test_bnneck_bias_stays_zero_after_optimiser_steps(make_opt) -> None:
    neck = BNNeck(16, embedding_dim=8)
    opt = make_opt(neck.parameters())  # all parameters handed over, as a careless optimiser builder would
    weight_before = neck.bn.weight.detach().clone()
    for _ in range(3):
        opt.zero_grad()
        before, after = neck(torch.randn(6, 16) + 3.0)
        (after.sum(dim=0) * torch.arange(8.0)).sum().backward()
        opt.step()
    assert neck.bn.bias.grad is None
    assert torch.count_nonzero(neck.bn.bias) == 0
    assert not torch.equal(neck.bn.weight.detach(), weight_before)


def test_bnneck_refuses_a_reenabled_bias_gradient() -> None:
    neck = BNNeck(8)
    neck.requires_grad_(True)
    with pytest.raises(RuntimeError, match="frozen"):
        neck(torch.randn(4, 8))
    neck.eval()(torch.randn(4, 8))  # inference is unaffected
    trainable = BNNeck(8, freeze_bias=False)
    assert trainable.bn.bias.requires_grad
    trainable(torch.randn(4, 8)).__getitem__(1).sum().backward()
    assert trainable.bn.bias.grad is not None


def test_bnneck_train_uses_batch_stats_and_eval_running_stats() -> None:
    neck = BNNeck(4)
    with torch.no_grad():
        neck.bn.weight.copy_(torch.tensor([1.0, 2.0, 0.5, 1.0]))
    x = torch.randn(8, 4) * 3 + 1
    before, after = neck.train()(x)
    assert torch.equal(before, x)
    mean, var = x.mean(0), x.var(0, unbiased=False)
    torch.testing.assert_close(after, (x - mean) / torch.sqrt(var + 1e-5) * neck.bn.weight)
    # running stats moved towards the batch stats (momentum 0.1, unbiased variance)
    torch.testing.assert_close(neck.bn.running_mean, 0.1 * mean)
    torch.testing.assert_close(neck.bn.running_var, 0.9 + 0.1 * x.var(0, unbiased=True))
    _, after_eval = neck.eval()(x)
    expected = (x - neck.bn.running_mean) / torch.sqrt(neck.bn.running_var + 1e-5) * neck.bn.weight
    torch.testing.assert_close(after_eval, expected)
    assert not torch.allclose(after_eval, after)


@pytest.mark.parametrize("embedding", ["linear", "conv"])
def test_bnneck_embedding_reduction(embedding: str) -> None:
    neck = BNNeck(32, embedding_dim=12, embedding=embedding)
    assert neck.out_channels == 12
    x = torch.randn(5, 32)
    before, after = neck(x)
    assert before.shape == (5, 12) and after.shape == (5, 12)
    torch.testing.assert_close(before, x @ neck.embedding.weight.reshape(12, 32).t())
    assert neck.embedding.bias is None
    b4, a4 = neck(x[:, :, None, None])  # (B, C, 1, 1) pooled maps are accepted
    torch.testing.assert_close(b4, before)
    torch.testing.assert_close(a4, after)


def test_bnneck_seed_options() -> None:
    neck1, neck2 = BNNeck(2048), BNNeck(2048, norm="2d")
    assert isinstance(neck2.bn, nn.BatchNorm2d) and not neck2.bn.bias.requires_grad
    x = torch.randn(6, 2048)
    torch.testing.assert_close(neck1(x)[1], neck2(x)[1])  # same numbers, different module type
    normal = BNNeck(2048, bn_weight_init="normal")
    w = normal.bn.weight.detach()
    assert abs(w.mean().item() - 1.0) < 0.005 and abs(w.std().item() - 0.02) < 0.005


def test_bnneck_errors() -> None:
    with pytest.raises(ValueError, match=r"\(B, 16\)"):
        BNNeck(16)(torch.randn(4, 8))
    with pytest.raises(ValueError, match="embedding_dim"):
        BNNeck(16, embedding_dim=0)
    with pytest.raises(ValueError, match="norm"):
        BNNeck(16, norm="3d")  # type: ignore[arg-type]


# ============================================================================== logit transforms, by hand
# Two samples, two classes. Sample 0 belongs to class 0, sample 1 to class 1.
COS = torch.tensor([[0.6, -0.2],
                    [0.1, 0.8]])
TARGETS = torch.tensor([0, 1])


def test_cosface_by_hand() -> None:
    # s = 2, m = 0.25: target s(cos - m), others s cos
    expected = torch.tensor([[2 * (0.6 - 0.25), 2 * -0.2],
                             [2 * 0.1, 2 * (0.8 - 0.25)]])
    torch.testing.assert_close(cosface_logits(COS, TARGETS, scale=2.0, margin=0.25), expected)


def test_arcface_by_hand() -> None:
    # s = 2, m = 0.5: cos(θ + m) = cos θ cos m − sin θ sin m, with sin θ = 0.8 for cos θ = 0.6 and 0.6 for 0.8
    cm, sm = math.cos(0.5), math.sin(0.5)
    expected = torch.tensor([[2 * (0.6 * cm - 0.8 * sm), 2 * -0.2],
                             [2 * 0.1, 2 * (0.8 * cm - 0.6 * sm)]])
    torch.testing.assert_close(arcface_logits(COS, TARGETS, scale=2.0, margin=0.5), expected)


def test_arcface_fallback_and_easy_margin_by_hand() -> None:
    m = 0.5
    cos = torch.tensor([[-0.95, 0.3],     # θ + m > π (cos < cos(π − m) ≈ −0.8776): fallback cos − m sin m
                        [0.2, -0.3]])     # easy margin: no margin where cos ≤ 0
    targets = torch.tensor([0, 1])
    hard = arcface_logits(cos, targets, scale=1.0, margin=m)
    torch.testing.assert_close(hard[0, 0], torch.tensor(-0.95 - m * math.sin(m)))
    sin_theta = math.sqrt(1 - 0.09)
    torch.testing.assert_close(hard[1, 1], torch.tensor(-0.3 * math.cos(m) - sin_theta * math.sin(m)))
    easy = arcface_logits(cos, targets, scale=1.0, margin=m, easy_margin=True)
    torch.testing.assert_close(easy[0, 0], torch.tensor(-0.95))
    torch.testing.assert_close(easy[1, 1], torch.tensor(-0.3))
    torch.testing.assert_close(easy[:, :][~torch.eye(2, dtype=torch.bool)], cos[~torch.eye(2, dtype=torch.bool)])


def test_circle_by_hand() -> None:
    # s = 2, m = 0.25: target α_p = 1.25 − cos, Δ_p = 0.75; others α_n = cos + 0.25, Δ_n = 0.25
    expected = torch.tensor([[2 * 0.65 * (0.6 - 0.75), 2 * 0.05 * (-0.2 - 0.25)],
                             [2 * 0.35 * (0.1 - 0.25), 2 * 0.45 * (0.8 - 0.75)]])
    torch.testing.assert_close(circle_logits(COS, TARGETS, scale=2.0, margin=0.25), expected)


def test_circle_alpha_clamping_and_detached_weights() -> None:
    m, s = 0.25, 3.0
    cos = torch.tensor([[0.9, -0.5, -0.25, 0.4]], requires_grad=True)
    logits = circle_logits(cos, torch.tensor([0]), scale=s, margin=m)
    # non-targets with cos ≤ −m have α_n = [cos + m]₊ = 0: logit exactly 0, no gradient
    assert logits[0, 1] == 0 and logits[0, 2] == 0
    torch.testing.assert_close(logits[0, 3], torch.tensor(s * 0.65 * 0.15))
    logits.sum().backward()
    # α is detached: d logit / d cos = s·α exactly (not s·α + s·(cos − Δ)·dα/dcos)
    alpha = torch.tensor([1 + m - 0.9, 0.0, 0.0, 0.4 + m])
    torch.testing.assert_close(cos.grad[0], s * alpha)


def test_linear_head_by_hand() -> None:
    head = LinearHead(2, 2)
    with torch.no_grad():
        head.weight.copy_(torch.tensor([[1.0, 0.0], [0.5, 1.0]]))
    f = torch.tensor([[1.0, 2.0], [3.0, -1.0]])
    expected = torch.tensor([[1.0, 2.5], [3.0, 0.5]])
    torch.testing.assert_close(head(f), expected)
    torch.testing.assert_close(head.train()(f, TARGETS), expected)  # no margin, no scale


# ==================================================================================================== heads
def _unit_head(name: str, **kw) -> nn.Module:
    """A 2-class head whose class weights are the coordinate axes (scaled, to check they get normalised)."""
    head = build_head(name, 2, 2, scale=2.0, margin=0.25 if name != "arcface" else 0.5, **kw)
    with torch.no_grad():
        head.weight.copy_(torch.tensor([[3.0, 0.0], [0.0, 0.5]]))
    return head


# f0 = (3, 4) → (0.6, 0.8); f1 = (0, −2) → (0, −1): cosines are the normalised coordinates
FEATURES = torch.tensor([[3.0, 4.0], [0.0, -2.0]])
FEATURE_COS = torch.tensor([[0.6, 0.8], [0.0, -1.0]])


@pytest.mark.parametrize("name,fn", [("cos", cosface_logits), ("arcface", arcface_logits),
                                     ("circle", circle_logits)])
def test_heads_are_their_transform_of_the_cosine(name: str, fn) -> None:
    head = _unit_head(name).train()
    torch.testing.assert_close(head.similarity(FEATURES), FEATURE_COS)
    torch.testing.assert_close(head(FEATURES, TARGETS), fn(FEATURE_COS, TARGETS, head.scale, head.margin))
    # eval mode, or no targets: plain scaled cosine
    torch.testing.assert_close(head(FEATURES), 2.0 * FEATURE_COS)
    torch.testing.assert_close(head.eval()(FEATURES, TARGETS), 2.0 * FEATURE_COS)


def test_arcface_at_cos_plus_minus_one() -> None:
    m = 0.5
    cos = torch.tensor([[1.0, -1.0], [-1.0, 1.0]], requires_grad=True)
    targets = torch.tensor([0, 0])  # sample 0: cos_y = +1 (margin branch); sample 1: cos_y = −1 (fallback)
    logits = arcface_logits(cos, targets, scale=64.0, margin=m)
    assert torch.isfinite(logits).all()
    # cos_y = 1 is clamped to 1 − 1e-7 (0.99999988 in float32, θ ≈ 4.9e-4): about cos(m), not exactly
    theta = math.acos(torch.tensor(1 - 1e-7).item())
    torch.testing.assert_close(logits[0, 0], torch.tensor(64 * math.cos(theta + m)))
    torch.testing.assert_close(logits[0, 0], torch.tensor(64 * math.cos(m)), rtol=0.0, atol=0.02)
    torch.testing.assert_close(logits[1, 0], torch.tensor(64 * (-1 - m * math.sin(m))))
    logits.sum().backward()
    assert torch.isfinite(cos.grad).all()
    # full head with a feature exactly on its class weight (cos = 1) and exactly opposite (cos = −1)
    head = _unit_head("arcface").train()
    out = head(torch.tensor([[5.0, 0.0], [-5.0, 0.0]]), torch.tensor([0, 0]))
    assert torch.isfinite(out).all()


def test_arcface_exactly_at_the_threshold() -> None:
    m = 0.5
    th = torch.tensor(math.cos(math.pi - m))  # float32 value of cos(π − m): θ + m = π
    below = torch.nextafter(th, torch.tensor(-2.0))
    cos = torch.stack([torch.stack([th, torch.tensor(0.0)]), torch.stack([below, torch.tensor(0.0)])])
    logits = arcface_logits(cos, torch.tensor([0, 0]), scale=1.0, margin=m)
    assert torch.isfinite(logits).all()
    # at the threshold the margin branch applies: cos(θ + m) = cos(π) = −1
    torch.testing.assert_close(logits[0, 0], torch.tensor(-1.0), rtol=0.0, atol=1e-3)
    # just beyond it the fallback: cos θ − m sin m = −cos m − m sin m ≈ −1.117
    torch.testing.assert_close(logits[1, 0], below - m * math.sin(m))


def test_arcface_margin_units() -> None:
    assert ArcFace(4, 3).margin == 0.5
    with pytest.raises(ValueError, match="radians.*degree"):
        ArcFace(4, 3, margin=28.6)
    with pytest.raises(ValueError, match="radians"):
        arcface_logits(COS, TARGETS, margin=28.6)
    seed = ArcFace(4, 3, margin=28.6479, margin_unit="degree")
    assert seed.margin == pytest.approx(0.5, abs=1e-5)
    with pytest.raises(ValueError, match="margin_unit"):
        ArcFace(4, 3, margin_unit="grad")  # type: ignore[arg-type]


@pytest.mark.parametrize("name", sorted(HEADS))
def test_subcentre_max(name: str) -> None:
    k, classes, dim = 3, 4, 8
    head = build_head(name, dim, classes, num_subcenters=k)
    assert head.weight.shape == (classes * k, dim)
    f = torch.randn(5, dim)
    # class-major rows: class j owns rows j*k .. j*k + k − 1; one plain head per sub-centre index t
    per_t = []
    for t in range(k):
        plain = build_head(name, dim, classes)
        with torch.no_grad():
            plain.weight.copy_(head.weight[t::k])
        per_t.append(plain.similarity(f))
    torch.testing.assert_close(head.similarity(f), torch.stack(per_t).amax(0))
    targets = torch.randint(0, classes, (5,))
    if name != "linear":
        fn = {"cos": cosface_logits, "arcface": arcface_logits, "circle": circle_logits}[name]
        expected = fn(torch.stack(per_t).amax(0), targets, head.scale, head.margin)
        torch.testing.assert_close(head.train()(f, targets), expected)


@pytest.mark.parametrize("name", sorted(HEADS))
def test_subcentre_k1_equals_plain_head(name: str) -> None:
    a = build_head(name, 8, 5)
    b = build_head(name, 8, 5, num_subcenters=1)
    b.load_state_dict(a.state_dict())
    f, t = torch.randn(4, 8), torch.tensor([0, 1, 4, 2])
    assert torch.equal(a(f, t), b(f, t))


def test_defaults_and_init() -> None:
    assert isinstance(build_head("cosface", 4, 3), CosSoftmax)
    for name, cls, margin in [("cos", CosSoftmax, 0.35), ("arcface", ArcFace, 0.5), ("circle", CircleSoftmax, 0.35)]:
        head = build_head(name, 512, 400)
        assert isinstance(head, cls) and head.scale == 64.0 and head.margin == margin
        assert abs(head.weight.std().item() - 0.01) < 1e-3
    linear = build_head("linear", 512, 400)
    assert isinstance(linear, LinearHead) and abs(linear.weight.std().item() - 0.001) < 1e-4
    with pytest.raises(ValueError, match="no scale or margin"):
        build_head("linear", 4, 3, scale=64.0)
    with pytest.raises(ValueError, match="arcface, circle, cos, linear"):
        build_head("sphereface", 4, 3)
    with pytest.raises(ValueError, match="scale"):
        build_head("cos", 4, 3, scale=0.0)
    with pytest.raises(ValueError, match=r"\[0, 1\)"):
        build_head("circle", 4, 3, margin=1.5)


@pytest.mark.parametrize("name", sorted(HEADS))
def test_bad_targets_are_clear_errors(name: str) -> None:
    head = build_head(name, 4, 3).train()
    f = torch.randn(2, 4)
    with pytest.raises(ValueError, match=r"\[0, 3\).*-1"):
        head(f, torch.tensor([0, -1]))
    with pytest.raises(ValueError, match=r"\[0, 3\)"):
        head(f, torch.tensor([0, 3]))
    with pytest.raises(TypeError, match="integer"):
        head(f, torch.tensor([0.0, 1.0]))
    with pytest.raises(ValueError, match=r"shape \(2,\)"):
        head(f, torch.tensor([0, 1, 2]))
    with pytest.raises(ValueError, match=r"\(B, 4\)"):
        head(torch.randn(2, 5), torch.tensor([0, 1]))


# ================================================================================================ precision
def _extreme_features(dim: int = 16) -> torch.Tensor:
    f = torch.randn(6, dim)
    f[0] = 60000.0               # near fp16's max, huge norm
    f[1] = -60000.0
    f[2] = 0.0                   # zero vector: normalised with eps → cos = 0
    f[3, 0] = 1e-7               # tiny vector
    f[3, 1:] = 0.0
    return f


@pytest.mark.parametrize("name", sorted(HEADS))
@pytest.mark.parametrize("autocast_dtype", [torch.bfloat16, torch.float16])
def test_no_nan_under_autocast_on_extreme_features(name: str, autocast_dtype: torch.dtype) -> None:
    head = build_head(name, 16, 5).train()
    with torch.no_grad():
        head.weight[0] = head.weight[1]  # duplicate classes: cos ties
    f = _extreme_features().requires_grad_(True)
    targets = torch.tensor([0, 1, 2, 3, 4, 0])
    with torch.autocast("cpu", dtype=autocast_dtype):
        logits = head(f, targets)
        eval_logits = head.eval()(f)
    head.train()
    assert logits.dtype == torch.float32 and eval_logits.dtype == torch.float32
    assert torch.isfinite(logits).all() and torch.isfinite(eval_logits).all()
    if name != "linear":
        torch.testing.assert_close(eval_logits[2], torch.zeros(5))  # zero vector
        assert eval_logits.abs().max() <= head.scale * (1 + 1e-6)
    logits.sum().backward()
    assert torch.isfinite(f.grad).all() and torch.isfinite(head.weight.grad).all()


@pytest.mark.parametrize("name", COSINE_HEADS)
def test_fp16_and_bf16_inputs_without_autocast(name: str) -> None:
    head = build_head(name, 16, 5).train()
    targets = torch.tensor([0, 1, 2, 3, 4, 0])
    for dtype in (torch.float16, torch.bfloat16):
        logits = head(_extreme_features().to(dtype), targets)
        assert logits.dtype == torch.float32 and torch.isfinite(logits).all()
    huge = torch.full((2, 16), 1e30, dtype=torch.bfloat16)  # squares overflow float32; the head pre-scales
    cos = head.similarity(huge)
    torch.testing.assert_close(cos, head.similarity(torch.ones(2, 16)))


# ================================================================================================= gradcheck
@pytest.mark.parametrize("name,kw", [("cos", {}), ("arcface", {}), ("arcface", {"easy_margin": True}),
                                     ("cos", {"num_subcenters": 2}), ("arcface", {"num_subcenters": 2})])
def test_gradcheck_float64(name: str, kw: dict) -> None:
    head = build_head(name, 6, 4, scale=4.0, **kw).double().train()
    with torch.no_grad():
        head.weight.normal_()
    f = torch.randn(5, 6, dtype=torch.float64, requires_grad=True)
    targets = torch.tensor([0, 1, 2, 3, 0])
    cos_y = head.similarity(f).gather(1, targets[:, None])
    assert (cos_y.abs() < 0.95).all() and (cos_y > math.cos(math.pi - 0.5) + 0.05).all()  # away from the kinks
    w = head.weight

    def fn(features: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        return torch.func.functional_call(head, {"weight": weight}, (features, targets))

    assert torch.autograd.gradcheck(fn, (f, w))


def test_gradcheck_float64_circle() -> None:
    """Circle's α is detached by definition, so the full map is not what autograd differentiates; check the
    similarity by gradcheck and the transform's gradient (s·α, see above) against a gradcheck of the transform
    with α frozen at the current value."""
    head = build_head("circle", 6, 4, scale=4.0).double().train()
    f = torch.randn(5, 6, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(head.similarity, (f,))
    targets = torch.tensor([0, 1, 2, 3, 0])
    cos0 = head.similarity(f).detach()
    m, s = head.margin, head.scale
    is_t = torch.zeros_like(cos0, dtype=torch.bool).scatter(1, targets[:, None], True)
    alpha = torch.where(is_t, (1 + m - cos0).clamp(min=0), (cos0 + m).clamp(min=0))
    delta = torch.where(is_t, torch.full_like(cos0, 1 - m), torch.full_like(cos0, m))
    cos = cos0.clone().requires_grad_(True)
    circle_logits(cos, targets, s, m).sum().backward()
    frozen = cos0.clone().requires_grad_(True)
    (s * alpha * (frozen - delta)).sum().backward()
    torch.testing.assert_close(cos.grad, frozen.grad)
    torch.testing.assert_close(circle_logits(cos0, targets, s, m), s * alpha * (cos0 - delta))


# ============================================================================================ torch.compile
@pytest.mark.parametrize("name", sorted(HEADS))
def test_training_forward_compiles_to_one_graph_and_eager_still_checks_the_range(name: str) -> None:
    """The targets' range check (a Python read-back) is skipped while torch.compile traces: one graph, no break."""
    graphs: list[torch.fx.GraphModule] = []

    def counting_backend(gm: torch.fx.GraphModule, example_inputs: list[torch.Tensor]):  # noqa: ANN202
        graphs.append(gm)
        return gm.forward

    head = build_head(name, 8, 5).train()
    f, targets = torch.randn(4, 8), torch.tensor([0, 1, 4, 2])
    torch._dynamo.reset()
    try:
        compiled = torch.compile(head, backend=counting_backend, fullgraph=True)
        torch.testing.assert_close(compiled(f, targets), head(f, targets), rtol=0, atol=0)
    finally:
        torch._dynamo.reset()
    assert len(graphs) == 1
    with pytest.raises(ValueError, match=r"class indices in \[0, 5\), got values in \[0, 5\]"):
        head(f, torch.tensor([0, 1, 5, 2]))  # eager: the clear error
