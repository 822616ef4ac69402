"""reidkit.losses: each loss against a plain loop reference, gradcheck in float64, edge cases, low precision."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from reidkit.losses import (
    LOSSES,
    MS_LIGHTMBN,
    CenterLoss,
    CrossEntropyLabelSmooth,
    FocalLoss,
    MultiSimilarityLoss,
    PairwiseCircleLoss,
    PairwiseCosFaceLoss,
    TripletLoss,
    WeightedRegularizedTripletLoss,
)
from reidkit.losses.pairwise import circle_loss_from_similarity

TOL = {"rtol": 1e-5, "atol": 1e-5}


def pk_batch(p: int = 4, k: int = 4, d: int = 16, seed: int = 0, dtype: torch.dtype = torch.float64):
    """Random P×K batch: features (P·K, D) and labels with identities in a shuffled order."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.arange(p).repeat_interleave(k)
    labels = labels[torch.randperm(p * k, generator=g)]
    feats = torch.randn(p * k, d, generator=g, dtype=dtype)
    return feats, labels


# ---------------------------------------------------------------- loop references (deliberately plain)


def ref_ce(z, y, eps, style="standard"):
    b, k = z.shape
    rows = []
    for i in range(b):
        logp = [z[i, j] - torch.logsumexp(z[i], 0) for j in range(k)]
        total = 0.0
        for j in range(k):
            if style == "standard":
                q = (1 - eps) * (j == y[i]) + eps / k
            else:
                q = (1 - eps) if j == y[i] else eps / (k - 1)
            total = total - q * logp[j]
        rows.append(total)
    if style == "standard":
        return sum(rows) / b
    nz = sum(1 for r in rows if float(r) != 0.0)
    return sum(rows) / max(nz, 1)


def ref_focal(z, y, gamma, alpha):
    total = 0.0
    for i in range(z.shape[0]):
        logpt = z[i, y[i]] - torch.logsumexp(z[i], 0)
        pt = torch.exp(logpt)
        total = total - alpha * (1 - pt) ** gamma * logpt
    return total / z.shape[0]


def ref_center(x, y, centers, squared=True):
    total = 0.0
    for i in range(x.shape[0]):
        d2 = sum((x[i, j] - centers[y[i], j]) ** 2 for j in range(x.shape[1]))
        total = total + (d2 if squared else torch.sqrt(d2))
    return total / x.shape[0]


def ref_dist(a, b, norm_feature=False):
    if norm_feature:
        return 2 - 2 * torch.dot(a, b) / (a.norm() * b.norm())
    return torch.sqrt(torch.clamp(((a - b) ** 2).sum(), min=1e-12))


def ref_triplet(x, y, margin, norm_feature=False, self_pos=False):
    b = x.shape[0]
    losses = []
    for i in range(b):
        dp = [ref_dist(x[i], x[j], norm_feature) for j in range(b) if y[j] == y[i] and (j != i or self_pos)]
        dn = [ref_dist(x[i], x[j], norm_feature) for j in range(b) if y[j] != y[i]]
        if not dp or not dn:
            continue
        gap = max(dp) - min(dn)
        losses.append(torch.clamp(gap + margin, min=0) if margin > 0 else softplus(gap))
    return sum(losses) / len(losses)


def ref_wrt(x, y, margin=0.0, self_pos=False):
    b = x.shape[0]
    losses = []
    for i in range(b):
        dp = [ref_dist(x[i], x[j]) for j in range(b) if y[j] == y[i] and (j != i or self_pos)]
        dn = [ref_dist(x[i], x[j]) for j in range(b) if y[j] != y[i]]
        if not dp or not dn:
            continue
        zp = sum(torch.exp(d) for d in dp)
        zn = sum(torch.exp(-d) for d in dn)
        ap = sum(torch.exp(d) / zp * d for d in dp)
        an = sum(torch.exp(-d) / zn * d for d in dn)
        gap = ap - an
        losses.append(torch.clamp(gap + margin, min=0) if margin > 0 else softplus(gap))
    return sum(losses) / len(losses)


def ref_cos(a, b):
    return torch.dot(a, b) / (a.norm() * b.norm())


def lse(values):
    m = max(float(v.detach()) for v in values)
    return m + torch.log(sum(torch.exp(v - m) for v in values))


def softplus(v):
    return torch.log1p(torch.exp(-abs(v))) + torch.clamp(v, min=0)


def ref_circle(x, y, m, gamma, detach=True):
    b = x.shape[0]
    losses = []
    for i in range(b):
        lp, ln = [], []
        for j in range(b):
            s = ref_cos(x[i], x[j])
            if y[j] == y[i] and j != i:
                a = torch.clamp(1 + m - s, min=0)
                lp.append(-gamma * (a.detach() if detach else a) * (s - (1 - m)))
            elif y[j] != y[i]:
                a = torch.clamp(s + m, min=0)
                ln.append(gamma * (a.detach() if detach else a) * (s - m))
        if lp and ln:
            losses.append(softplus(lse(lp) + lse(ln)))
    return sum(losses) / len(losses)


def ref_cosface(x, y, m, gamma):
    b = x.shape[0]
    losses = []
    for i in range(b):
        lp = [-gamma * ref_cos(x[i], x[j]) for j in range(b) if y[j] == y[i] and j != i]
        ln = [gamma * (ref_cos(x[i], x[j]) + m) for j in range(b) if y[j] != y[i]]
        if lp and ln:
            losses.append(softplus(lse(lp) + lse(ln)))
    return sum(losses) / len(losses)


def ref_ms(x, y, alpha=2.0, beta=50.0, lam=1.0, eps=0.1, mining=True):
    b = x.shape[0]
    total = 0.0
    for i in range(b):
        sp = [ref_cos(x[i], x[j]) for j in range(b) if j != i and y[j] == y[i]]
        sp = [s for s in sp if float(s.detach()) < 1 - 1e-5]
        sn = [ref_cos(x[i], x[j]) for j in range(b) if y[j] != y[i]]
        if not sp or not sn:
            continue
        if mining:
            min_p, max_n = min(float(s) for s in sp), max(float(s) for s in sn)
            sn, sp = [s for s in sn if float(s) + eps > min_p], [s for s in sp if float(s) - eps < max_n]
            if not sp or not sn:
                continue
        pos = torch.log(1 + sum(torch.exp(-alpha * (s - lam)) for s in sp)) / alpha
        neg = torch.log(1 + sum(torch.exp(beta * (s - lam)) for s in sn)) / beta
        total = total + pos + neg
    return total / b


# ---------------------------------------------------------------- classification


@pytest.mark.parametrize("eps", [0.0, 0.1, 0.3])
@pytest.mark.parametrize("style", ["standard", "fastreid"])
def test_ce_matches_loop_reference(eps, style):
    g = torch.Generator().manual_seed(1)
    z = torch.randn(8, 5, generator=g, dtype=torch.float64) * 3
    y = torch.randint(0, 5, (8,), generator=g)
    got = CrossEntropyLabelSmooth(eps, smoothing_style=style)(z, y)
    torch.testing.assert_close(got, ref_ce(z, y, eps, style), **TOL)


def test_ce_equals_torch_cross_entropy():
    g = torch.Generator().manual_seed(2)
    z = torch.randn(16, 11, generator=g) * 4
    y = torch.randint(0, 11, (16,), generator=g)
    torch.testing.assert_close(CrossEntropyLabelSmooth(0.0)(z, y), F.cross_entropy(z, y), **TOL)
    for eps in (0.1, 0.25):
        torch.testing.assert_close(
            CrossEntropyLabelSmooth(eps)(z, y), F.cross_entropy(z, y, label_smoothing=eps), **TOL
        )


@pytest.mark.parametrize("gamma,alpha", [(2.0, 0.25), (0.0, 1.0), (1.5, 0.5), (0.5, 0.25)])
def test_focal_matches_loop_reference(gamma, alpha):
    g = torch.Generator().manual_seed(3)
    z = torch.randn(8, 6, generator=g, dtype=torch.float64) * 2
    y = torch.randint(0, 6, (8,), generator=g)
    got = FocalLoss(gamma, alpha)(z, y)
    assert got.dim() == 0
    torch.testing.assert_close(got, ref_focal(z, y, gamma, alpha), **TOL)


def test_focal_gamma0_alpha1_is_cross_entropy_and_confident_logits_are_finite():
    z = torch.randn(6, 4)
    y = torch.randint(0, 4, (6,))
    torch.testing.assert_close(FocalLoss(0.0, 1.0)(z, y), F.cross_entropy(z, y), **TOL)
    # p_t rounds to 1 in float32: log-softmax keeps the value and gradient finite
    big = torch.zeros(3, 4)
    big[torch.arange(3), torch.tensor([0, 1, 2])] = 200.0
    big[2, 3] = -200.0
    for gamma in (2.0, 0.5):
        zz = big.clone().requires_grad_()
        loss = FocalLoss(gamma)(zz, torch.tensor([0, 1, 3]))
        loss.backward()
        assert torch.isfinite(loss) and torch.isfinite(zz.grad).all()


def test_classification_errors():
    z = torch.randn(4, 3)
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 3\)"):
        CrossEntropyLabelSmooth()(z, torch.tensor([0, 1, 2, 3]))
    with pytest.raises(ValueError, match="epsilon"):
        CrossEntropyLabelSmooth(1.0)
    with pytest.raises(ValueError, match="smoothing_style"):
        CrossEntropyLabelSmooth(smoothing_style="torch")
    with pytest.raises(ValueError, match=r"\(B, K\)"):
        FocalLoss()(torch.randn(4), torch.tensor([0, 1, 2, 0]))
    with pytest.raises(TypeError, match="integer"):
        FocalLoss()(z, torch.zeros(4))


# ---------------------------------------------------------------- center


@pytest.mark.parametrize("squared", [True, False])
def test_center_matches_loop_reference(squared):
    x, y = pk_batch(3, 3, 6)
    loss = CenterLoss(3, 6, squared=squared).double()
    torch.testing.assert_close(loss(x, y), ref_center(x, y, loss.centers, squared), **TOL)


def test_center_defaults_and_errors():
    torch.manual_seed(0)
    loss = CenterLoss(50, 64)
    assert loss.squared and loss.centers.shape == (50, 64)
    c = loss.centers.detach()
    assert abs(float(c.mean())) < 0.05 and abs(float(c.std()) - 1) < 0.05  # N(0, 1)
    with pytest.raises(ValueError, match="dimension"):
        loss(torch.randn(4, 32), torch.tensor([0, 1, 2, 3]))
    with pytest.raises(ValueError, match=r"\[0, 50\)"):
        loss(torch.randn(2, 64), torch.tensor([0, 50]))


# ---------------------------------------------------------------- triplet family


@pytest.mark.parametrize("margin", [0.3, 0.0, 1.0])
@pytest.mark.parametrize("norm_feature", [False, True])
def test_triplet_matches_loop_reference(margin, norm_feature):
    x, y = pk_batch(seed=4)
    got = TripletLoss(margin, norm_feature=norm_feature)(x, y)
    torch.testing.assert_close(got, ref_triplet(x, y, margin, norm_feature), **TOL)


@pytest.mark.parametrize("margin", [0.0, 0.3])
def test_wrt_matches_loop_reference(margin):
    x, y = pk_batch(seed=5)
    got = WeightedRegularizedTripletLoss(margin)(x, y)
    torch.testing.assert_close(got, ref_wrt(x, y, margin), **TOL)
    got = WeightedRegularizedTripletLoss(margin, include_self_positive=True)(x, y)
    torch.testing.assert_close(got, ref_wrt(x, y, margin, self_pos=True), **TOL)


def test_triplet_anchor_without_positive_or_negative_is_excluded():
    x, y = pk_batch(seed=6)
    y = y.clone()
    lonely = int(torch.nonzero(y == 0)[0])
    y[lonely] = 9  # identity 9 appears once: that anchor has no positive
    for loss, ref in ((TripletLoss(0.3), ref_triplet(x, y, 0.3)), (WeightedRegularizedTripletLoss(), ref_wrt(x, y))):
        torch.testing.assert_close(loss(x, y), ref, **TOL)


def test_triplet_seed_self_positive_with_k1():
    x, y = pk_batch(6, 1, 8, seed=7)  # K = 1: no other positive anywhere
    with pytest.raises(ValueError, match="no identity appears twice"):
        TripletLoss()(x, y)
    got = TripletLoss(0.3, include_self_positive=True)(x, y)  # the seed: self pair (d ≈ 1e-6) is the positive
    torch.testing.assert_close(got, ref_triplet(x, y, 0.3, self_pos=True), **TOL)


@pytest.mark.parametrize("cls", [TripletLoss, WeightedRegularizedTripletLoss, PairwiseCircleLoss, PairwiseCosFaceLoss])
def test_single_identity_batch_is_a_clear_error(cls):
    x = torch.randn(4, 8)
    with pytest.raises(ValueError, match="single identity"):
        cls()(x, torch.zeros(4, dtype=torch.long))


def test_soft_margin_is_stable_for_large_gaps():
    # far-apart positives: FastReID falls back to margin 0.3 when softplus overflows; reidkit stays exact
    x = torch.tensor([[0.0, 0.0], [1000.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    y = torch.tensor([0, 0, 1, 1])
    loss = TripletLoss(0.0)(x, y)
    assert torch.isfinite(loss) and float(loss) > 200  # anchor 0 alone contributes ≈ 999 / 4
    torch.testing.assert_close(loss.double(), ref_triplet(x.double(), y, 0.0), **TOL)


# ---------------------------------------------------------------- pairwise


@pytest.mark.parametrize("m,gamma", [(0.25, 128.0), (0.3, 64.0), (0.25, 1.0)])
def test_circle_matches_loop_reference(m, gamma):
    x, y = pk_batch(seed=8)
    torch.testing.assert_close(PairwiseCircleLoss(m, gamma)(x, y), ref_circle(x, y, m, gamma), **TOL)


@pytest.mark.parametrize("m,gamma", [(0.25, 128.0), (0.3, 1.0)])
def test_cosface_matches_loop_reference(m, gamma):
    x, y = pk_batch(seed=9)
    torch.testing.assert_close(PairwiseCosFaceLoss(m, gamma)(x, y), ref_cosface(x, y, m, gamma), **TOL)


def test_circle_and_cosface_exclude_anchor_without_positive():
    x, y = pk_batch(seed=10)
    y = y.clone()
    y[int(torch.nonzero(y == 1)[0])] = 7
    torch.testing.assert_close(PairwiseCircleLoss()(x, y), ref_circle(x, y, 0.25, 128.0), **TOL)
    torch.testing.assert_close(PairwiseCosFaceLoss()(x, y), ref_cosface(x, y, 0.25, 128.0), **TOL)


def test_circle_documented_gradient_with_detached_alpha():
    """∂L_i/∂s_p = −γ α_p σ(Z_i) softmax_p, ∂L_i/∂s_n = γ α_n σ(Z_i) softmax_n (α detached)."""
    g = torch.Generator().manual_seed(11)
    sim = (torch.rand(6, 6, generator=g, dtype=torch.float64) * 2 - 1).requires_grad_()
    y = torch.tensor([0, 0, 1, 1, 2, 2])
    pos = (y[:, None] == y[None]) & ~torch.eye(6, dtype=torch.bool)
    neg = y[:, None] != y[None]
    m, gamma = 0.25, 4.0
    circle_loss_from_similarity(sim, pos, neg, m, gamma).sum().backward()
    s = sim.detach()
    expected = torch.zeros_like(s)
    for i in range(6):
        ap = {j: max(1 + m - float(s[i, j]), 0.0) for j in range(6) if pos[i, j]}
        an = {j: max(float(s[i, j]) + m, 0.0) for j in range(6) if neg[i, j]}
        lp = {j: -gamma * ap[j] * (float(s[i, j]) - (1 - m)) for j in ap}
        ln = {j: gamma * an[j] * (float(s[i, j]) - m) for j in an}
        zp = sum(math.exp(v) for v in lp.values())
        zn = sum(math.exp(v) for v in ln.values())
        sig = 1 / (1 + math.exp(-(math.log(zp) + math.log(zn))))
        for j in ap:
            expected[i, j] = -gamma * ap[j] * sig * math.exp(lp[j]) / zp
        for j in an:
            expected[i, j] = gamma * an[j] * sig * math.exp(ln[j]) / zn
    torch.testing.assert_close(sim.grad, expected, **TOL)


@pytest.mark.parametrize("params", [{}, MS_LIGHTMBN, {"mining": False, "thresh": 0.7, "beta": 40.0}])
def test_ms_matches_loop_reference(params):
    x, y = pk_batch(seed=12)
    ref_kw = {"alpha": params.get("alpha", 2.0), "beta": params.get("beta", 50.0),
              "lam": params.get("thresh", 1.0), "eps": params.get("margin", 0.1), "mining": params.get("mining", True)}
    torch.testing.assert_close(MultiSimilarityLoss(**params)(x, y), ref_ms(x, y, **ref_kw), **TOL)


def test_ms_mining_changes_the_value_and_divides_by_b():
    x, y = pk_batch(seed=13)
    mined, unmined = MultiSimilarityLoss()(x, y), MultiSimilarityLoss(mining=False)(x, y)
    assert float(mined) < float(unmined)
    # an anchor without positives contributes 0 but still counts in the 1/B
    y2 = y.clone()
    y2[int(torch.nonzero(y == 2)[0])] = 8
    torch.testing.assert_close(MultiSimilarityLoss()(x, y2), ref_ms(x, y2), **TOL)


def test_ms_duplicates_and_single_identity_give_zero_not_nan():
    x = torch.randn(4, 8, requires_grad=True)
    loss = MultiSimilarityLoss()(x, torch.zeros(4, dtype=torch.long))
    loss.backward()
    assert float(loss.detach()) == 0.0 and torch.equal(x.grad, torch.zeros_like(x))
    # exact duplicates of one identity are dropped by the 1 − 1e-5 threshold (parity with the official code)
    dup = torch.randn(1, 8).repeat(2, 1)
    other = torch.randn(2, 8)
    feats = torch.cat([dup, other])
    labels = torch.tensor([0, 0, 1, 2])
    assert float(MultiSimilarityLoss()(feats, labels)) == 0.0


# ---------------------------------------------------------------- gradcheck (float64)

METRIC_LOSSES = [
    ("triplet", lambda: TripletLoss(0.3)),
    ("triplet_soft", lambda: TripletLoss(0.0)),
    ("triplet_norm", lambda: TripletLoss(0.3, norm_feature=True)),
    ("wrt", lambda: WeightedRegularizedTripletLoss()),
    ("wrt_margin", lambda: WeightedRegularizedTripletLoss(0.3)),
    ("circle_undetached", lambda: PairwiseCircleLoss(gamma=8.0, detach_alpha=False)),
    ("cosface", lambda: PairwiseCosFaceLoss(gamma=8.0)),
    ("ms", lambda: MultiSimilarityLoss()),
    ("ms_lightmbn", lambda: MultiSimilarityLoss(**MS_LIGHTMBN)),
    ("ms_unmined", lambda: MultiSimilarityLoss(mining=False)),
]


@pytest.mark.parametrize("name,make", METRIC_LOSSES, ids=[n for n, _ in METRIC_LOSSES])
def test_metric_losses_gradcheck(name, make):
    x, y = pk_batch(3, 2, 5, seed=14)
    x.requires_grad_()
    loss = make()
    assert float(loss(x.detach(), y)) > 0.1  # a non-trivial point (every term active, mining keeps pairs)
    assert torch.autograd.gradcheck(lambda f: loss(f, y), (x,), eps=1e-6, atol=1e-5)


def test_circle_detached_gradient_matches_loop_reference_autograd():
    x, y = pk_batch(3, 2, 5, seed=15)
    a = x.clone().requires_grad_()
    b = x.clone().requires_grad_()
    PairwiseCircleLoss(gamma=8.0)(a, y).backward()
    ref_circle(b, y, 0.25, 8.0, detach=True).backward()
    torch.testing.assert_close(a.grad, b.grad, **TOL)


@pytest.mark.parametrize("make", [lambda: CrossEntropyLabelSmooth(0.1), lambda: FocalLoss(2.0, 0.25),
                                  lambda: CrossEntropyLabelSmooth(0.1, smoothing_style="fastreid")])
def test_classification_gradcheck(make):
    g = torch.Generator().manual_seed(16)
    z = torch.randn(5, 4, generator=g, dtype=torch.float64, requires_grad=True)
    y = torch.randint(0, 4, (5,), generator=g)
    loss = make()
    assert torch.autograd.gradcheck(lambda t: loss(t, y), (z,), eps=1e-6, atol=1e-5)


@pytest.mark.parametrize("squared", [True, False])
def test_center_gradcheck(squared):
    x, y = pk_batch(3, 2, 5, seed=17)
    loss = CenterLoss(3, 5, squared=squared).double()
    x.requires_grad_()
    centers = loss.centers.detach().clone().requires_grad_()

    assert torch.autograd.gradcheck(lambda feats: loss(feats, y), (x,), eps=1e-6, atol=1e-5)
    # gradient w.r.t. the centres: (2/B) Σ_{i: y_i = k} (c_k − x_i) when squared
    loss.zero_grad()
    loss(x.detach(), y).backward()
    if squared:
        expected = torch.zeros_like(centers)
        for i in range(len(y)):
            expected[y[i]] += 2 * (centers[y[i]].detach() - x[i].detach()) / len(y)
        torch.testing.assert_close(loss.centers.grad, expected, **TOL)


# ---------------------------------------------------------------- low precision


def _all_losses(num_classes: int, dim: int):
    return {
        "ce": CrossEntropyLabelSmooth(), "focal": FocalLoss(), "center": CenterLoss(num_classes, dim),
        "triplet": TripletLoss(), "triplet_soft": TripletLoss(0.0), "wrt": WeightedRegularizedTripletLoss(),
        "circle": PairwiseCircleLoss(), "cosface": PairwiseCosFaceLoss(), "ms": MultiSimilarityLoss(),
        "ms_lightmbn": MultiSimilarityLoss(**MS_LIGHTMBN),
    }


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_low_precision_inputs_give_finite_float32_values(dtype):
    x, y = pk_batch(4, 4, 32, seed=18, dtype=torch.float32)
    x = (x * 300).to(dtype)  # ‖x‖² overflows fp16 if not cast up
    z = (torch.randn(16, 4) * 30).to(dtype)
    for name, loss in _all_losses(4, 32).items():
        inp = z if getattr(loss, "input_kind") == "logits" else x
        leaf = inp.detach().clone().requires_grad_()
        value = loss(leaf, y)
        value.backward()
        assert value.dtype == torch.float32, name
        assert torch.isfinite(value), name
        assert torch.isfinite(leaf.grad.float()).all(), name


def test_low_precision_circle_equals_float32_and_autocast_is_disabled():
    x, y = pk_batch(4, 4, 32, seed=19, dtype=torch.float32)
    xh = x.half()
    ref = PairwiseCircleLoss()(xh.float(), y)
    torch.testing.assert_close(PairwiseCircleLoss()(xh, y), ref, **TOL)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        for name, loss in _all_losses(4, 32).items():
            inp = torch.randn(16, 4) if getattr(loss, "input_kind") == "logits" else x
            value = loss(inp, y)
            assert value.dtype == torch.float32 and torch.isfinite(value), name


def test_registry_names_and_input_kinds():
    assert set(LOSSES) == {"ce", "focal", "center", "triplet", "wrt", "circle", "cosface", "ms"}
    kinds = {name: LOSSES[name](**({"num_classes": 3, "feat_dim": 4} if name == "center" else {})).input_kind
             for name in LOSSES}
    assert kinds == {"ce": "logits", "focal": "logits", "center": "features", "triplet": "features",
                     "wrt": "features", "circle": "features", "cosface": "features", "ms": "features"}


def test_float32_agrees_with_float64():
    x, y = pk_batch(seed=20)
    for name, loss in _all_losses(4, 16).items():
        if loss.input_kind != "features":
            continue
        loss64 = loss.double() if name == "center" else loss
        v64 = loss64(x, y)
        v32 = loss(x.float(), y)
        torch.testing.assert_close(v32.double(), v64, rtol=1e-4, atol=1e-4, msg=name)
