"""reidkit.viz.loss_fields: toy batches, pushes equal finite differences, mined pairs equal plain loops, descent."""
from __future__ import annotations

import math

import matplotlib.quiver
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from reidkit.losses import (
    MS_LIGHTMBN,
    CenterLoss,
    MultiSimilarityLoss,
    PairwiseCircleLoss,
    PairwiseCosFaceLoss,
    TripletLoss,
    WeightedRegularizedTripletLoss,
)
from reidkit.viz.loss_fields import (
    descent_figure,
    descent_snapshots,
    embedding_gradients,
    loss_field_figure,
    mined_pairs,
    probe_field,
    probe_field_figure,
    ring,
    toy_embeddings,
)


def random_batch(p: int = 3, k: int = 3, seed: int = 0, singleton: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """Random 2-D float64 P×K batch in shuffled order; ``singleton`` appends an identity with one embedding."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.arange(p).repeat_interleave(k)
    if singleton:
        labels = torch.cat([labels, torch.tensor([p])])
    labels = labels[torch.randperm(len(labels), generator=g)]
    return torch.randn(len(labels), 2, generator=g, dtype=torch.float64), labels


def finite_difference_push(loss, x: torch.Tensor, labels: torch.Tensor, h: float = 1e-6) -> torch.Tensor:
    """−∂L/∂x by central differences, one coordinate at a time."""
    push = torch.zeros_like(x)
    for i in range(x.shape[0]):
        for d in range(x.shape[1]):
            up, down = x.clone(), x.clone()
            up[i, d] += h
            down[i, d] -= h
            push[i, d] = -(float(loss(up, labels)) - float(loss(down, labels))) / (2 * h)
    return push


# ---------------------------------------------------------------- toy_embeddings


def test_toy_embeddings_lie_on_the_circle_at_their_identity_angles() -> None:
    emb, labels = toy_embeddings(num_identities=4, per_identity=3, spread=0.0)
    assert emb.shape == (12, 2) and emb.dtype == torch.float32
    assert labels.tolist() == [0, 0, 0, 1, 1, 1, 2, 2, 2, 3, 3, 3]
    expected = torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0], [0.0, -1.0]]).repeat_interleave(3, dim=0)
    torch.testing.assert_close(emb, expected, atol=1e-6, rtol=0)


def test_toy_embeddings_are_seeded_and_spread() -> None:
    a, _ = toy_embeddings(3, 4, spread=0.5, seed=1)
    b, _ = toy_embeddings(3, 4, spread=0.5, seed=1)
    c, _ = toy_embeddings(3, 4, spread=0.5, seed=2)
    assert torch.equal(a, b) and not torch.equal(a, c)
    torch.testing.assert_close(a.norm(dim=1), torch.ones(12))
    plane, _ = toy_embeddings(3, 4, spread=0.5, on_circle=False, seed=1)
    radii = plane.norm(dim=1)
    assert (radii > 0).all() and (radii - 1).abs().max() > 0.05
    # the direction is the circle's: only the radius changes
    torch.testing.assert_close(F.normalize(plane, dim=1), a, atol=1e-6, rtol=0)


@pytest.mark.parametrize("kwargs, message", [
    ({"num_identities": 0}, "num_identities"),
    ({"per_identity": 1.5}, "per_identity"),
    ({"spread": -0.1}, "spread"),
])
def test_toy_embeddings_reject_bad_arguments(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        toy_embeddings(**kwargs)


# ---------------------------------------------------------------- embedding_gradients


def test_center_loss_push_is_towards_the_centre_by_hand() -> None:
    # L = (1/B) Σ ‖x_i − c_{y_i}‖²  →  −∂L/∂x_i = −(2/B)(x_i − c_{y_i})
    loss = CenterLoss(num_classes=2, feat_dim=2)
    with torch.no_grad():
        loss.centers.copy_(torch.tensor([[1.0, 0.0], [0.0, 2.0]]))
    x = torch.tensor([[3.0, 0.0], [0.0, 0.0], [1.0, 1.0]])
    labels = torch.tensor([0, 1, 0])
    push = embedding_gradients(loss, x, labels)
    torch.testing.assert_close(push, torch.tensor([[-4 / 3, 0.0], [0.0, 4 / 3], [0.0, -2 / 3]]))
    assert loss.centers.grad is None  # only the embeddings are differentiated


@pytest.mark.parametrize("make_loss", [
    lambda: TripletLoss(margin=0.3),
    lambda: TripletLoss(margin=0.0),
    lambda: TripletLoss(margin=0.0, norm_feature=True),
    lambda: WeightedRegularizedTripletLoss(),
    lambda: PairwiseCircleLoss(gamma=8.0, detach_alpha=False),
    lambda: PairwiseCosFaceLoss(gamma=8.0),
    lambda: MultiSimilarityLoss(),
    lambda: MultiSimilarityLoss(**MS_LIGHTMBN),
], ids=["triplet", "soft", "soft-cos", "wrt", "circle", "cosface", "ms", "ms-lmbn"])
def test_push_equals_finite_differences(make_loss) -> None:
    loss = make_loss()
    for seed in range(3):
        x, labels = random_batch(seed=seed, singleton=seed == 2)
        push = embedding_gradients(loss, x, labels)
        assert push.dtype == torch.float64
        torch.testing.assert_close(push, finite_difference_push(loss, x, labels), rtol=1e-5, atol=1e-7)


def test_push_leaves_the_input_alone_and_needs_a_scalar() -> None:
    x, labels = random_batch()
    before = x.clone()
    embedding_gradients(TripletLoss(), x, labels)
    assert torch.equal(x, before) and not x.requires_grad
    with pytest.raises(ValueError, match="scalar"):
        embedding_gradients(lambda f, y: f.sum(dim=1), x, labels)
    with pytest.raises(ValueError, match=r"\(B, D\)"):
        embedding_gradients(TripletLoss(), x[0], labels)


def test_detached_circle_weights_give_the_training_gradient_not_the_value_derivative() -> None:
    x, labels = random_batch(seed=4)
    detached = embedding_gradients(PairwiseCircleLoss(gamma=8.0), x, labels)
    full = embedding_gradients(PairwiseCircleLoss(gamma=8.0, detach_alpha=False), x, labels)
    assert (detached - full).abs().max() > 1e-3


@pytest.mark.parametrize("loss", [PairwiseCircleLoss(), PairwiseCosFaceLoss(), MultiSimilarityLoss(),
                                  TripletLoss(norm_feature=True)], ids=["circle", "cosface", "ms", "triplet-cos"])
def test_cosine_losses_push_along_the_circle_only(loss) -> None:
    # L depends on x only through x/‖x‖, so ∂L/∂x ⊥ x: no radial component
    x, labels = random_batch(seed=5)
    push = embedding_gradients(loss, x, labels)
    radial = (push * x).sum(dim=1) / x.norm(dim=1)
    assert push.abs().max() > 1e-3
    assert radial.abs().max() <= 1e-9 * max(1.0, float(push.abs().max()))


# ---------------------------------------------------------------- mined_pairs


def loop_batch_hard(x: torch.Tensor, labels: torch.Tensor, norm_feature: bool) -> tuple[list, list]:
    b = len(labels)
    rows = x.tolist()

    def dist(i: int, j: int) -> float:
        if norm_feature:
            ni, nj = math.hypot(*rows[i]), math.hypot(*rows[j])
            return 2 - 2 * (rows[i][0] * rows[j][0] + rows[i][1] * rows[j][1]) / (ni * nj)
        return math.dist(rows[i], rows[j])

    positives, negatives = [], []
    for i in range(b):
        best_p, best_n = None, None
        for j in range(b):
            if j != i and labels[j] == labels[i] and (best_p is None or dist(i, j) > dist(i, best_p)):
                best_p = j
            if labels[j] != labels[i] and (best_n is None or dist(i, j) < dist(i, best_n)):
                best_n = j
        if best_p is not None and best_n is not None:
            positives.append([i, best_p])
            negatives.append([i, best_n])
    return positives, negatives


def loop_ms_pairs(x: torch.Tensor, labels: torch.Tensor, margin: float, mining: bool) -> tuple[list, list]:
    b = len(labels)
    rows = x.tolist()

    def sim(i: int, j: int) -> float:
        return (rows[i][0] * rows[j][0] + rows[i][1] * rows[j][1]) / (math.hypot(*rows[i]) * math.hypot(*rows[j]))

    positives, negatives = [], []
    for i in range(b):
        pos = [j for j in range(b) if j != i and labels[j] == labels[i] and sim(i, j) < 1 - 1e-5]
        neg = [j for j in range(b) if labels[j] != labels[i]]
        if mining and pos and neg:
            hardest_pos = min(sim(i, j) for j in pos)
            hardest_neg = max(sim(i, j) for j in neg)
            neg, pos = ([j for j in neg if sim(i, j) + margin > hardest_pos],
                        [j for j in pos if sim(i, j) - margin < hardest_neg])
        if pos and neg:
            positives += [[i, j] for j in pos]
            negatives += [[i, j] for j in neg]
    return positives, negatives


@pytest.mark.parametrize("norm_feature", [False, True])
def test_batch_hard_pairs_equal_a_plain_loop(norm_feature: bool) -> None:
    loss = TripletLoss(norm_feature=norm_feature)
    for seed in range(6):
        x, labels = random_batch(p=3, k=3, seed=seed, singleton=seed % 2 == 1)
        pairs = mined_pairs(loss, x, labels)
        positives, negatives = loop_batch_hard(x, labels, norm_feature)
        assert pairs.positive.tolist() == positives
        assert pairs.negative.tolist() == negatives
        assert len(positives) == len(labels) - (seed % 2)  # the singleton is no anchor


@pytest.mark.parametrize("params", [{}, MS_LIGHTMBN, {"mining": False}], ids=["paper", "lmbn", "no-mining"])
def test_multi_similarity_pairs_equal_a_plain_loop(params: dict) -> None:
    loss = MultiSimilarityLoss(**params)
    for seed in range(6):
        x, labels = random_batch(p=3, k=3, seed=seed, singleton=seed % 2 == 1)
        pairs = mined_pairs(loss, x, labels)
        positives, negatives = loop_ms_pairs(x, labels, loss.margin, loss.mining)
        assert pairs.positive.tolist() == positives
        assert pairs.negative.tolist() == negatives


@pytest.mark.parametrize("loss", [TripletLoss(margin=0.0), MultiSimilarityLoss()], ids=["triplet", "ms"])
def test_embeddings_outside_the_mined_pairs_are_not_pushed(loss) -> None:
    # e.g. a singleton identity (no anchor for batch-hard) that is nobody's hardest negative, or an embedding
    # whose pairs multi-similarity mining drops on a clustered toy batch
    batches = [random_batch(p=3, k=3, seed=seed, singleton=True) for seed in range(10)]
    batches += [toy_embeddings(4, 3, spread=0.4, seed=seed) for seed in range(10)]
    checked = 0
    for x, labels in batches:
        pairs = mined_pairs(loss, x, labels)
        used = set(torch.cat([pairs.positive, pairs.negative]).flatten().tolist())
        push = embedding_gradients(loss, x, labels)
        for i in range(len(labels)):
            if i not in used:
                assert push[i].abs().max() == 0
                checked += 1
            else:
                assert push[i].abs().max() > 0
    assert checked > 0  # some embedding took part in no mined pair


def test_batch_hard_by_hand() -> None:
    from reidkit.losses.triplet import batch_hard

    dist = torch.tensor([[0.0, 1.0, 3.0, 2.0], [1.0, 0.0, 4.0, 5.0], [3.0, 4.0, 0.0, 1.0], [2.0, 5.0, 1.0, 0.0]])
    same = torch.tensor([0, 0, 1, 1])[:, None] == torch.tensor([0, 0, 1, 1])[None, :]
    hard = batch_hard(dist, same & ~torch.eye(4, dtype=torch.bool), ~same)
    assert hard.positive_distance.tolist() == [1.0, 1.0, 1.0, 1.0] and hard.positive_index.tolist() == [1, 0, 3, 2]
    assert hard.negative_distance.tolist() == [2.0, 4.0, 3.0, 2.0] and hard.negative_index.tolist() == [3, 2, 0, 0]
    # ties: the first column is named, and the distance's gradient is shared between the tied columns (amax)
    tied = torch.tensor([[0.0, 2.0, 2.0, 5.0]], requires_grad=True)
    hard = batch_hard(tied, torch.tensor([[False, True, True, False]]), torch.tensor([[False, False, False, True]]))
    assert hard.positive_index.tolist() == [1] and hard.negative_index.tolist() == [3]
    hard.positive_distance.sum().backward()
    assert tied.grad.tolist() == [[0.0, 0.5, 0.5, 0.0]]


def test_multi_similarity_pairs_by_hand() -> None:
    from reidkit.losses.pairwise import multi_similarity_pairs

    # angles 0°, 60° (identity 0) and 90°, 180° (identity 1): s01 = 0.5, s02 = 0, s03 = −1, s12 = cos 30°,
    # s13 = −0.5, s23 = 0. With ε = 0.1: anchor 0 keeps no negative (s + ε ≤ min_p = 0.5) and anchor 3 none
    # either (−0.9, −0.4 ≤ 0); anchor 1 keeps positive 0 and negative 2; anchor 2 positive 3, negatives 0 and 1.
    x = torch.tensor([[1.0, 0.0], [0.5, math.sqrt(3) / 2], [0.0, 1.0], [-1.0, 0.0]], requires_grad=True)
    labels = torch.tensor([0, 0, 1, 1])
    sim, pos, neg = multi_similarity_pairs(x, labels, margin=0.1)
    assert sim.dtype == torch.float32 and sim.requires_grad
    torch.testing.assert_close(sim[1, 2], torch.tensor(math.sqrt(3) / 2))
    assert pos.nonzero().tolist() == [[1, 0], [2, 3]]
    assert neg.nonzero().tolist() == [[1, 2], [2, 0], [2, 1]]
    _, pos, neg = multi_similarity_pairs(x.detach().double(), labels, margin=0.1, mining=False)
    assert pos.sum() == 4 and neg.sum() == 8  # every pair but the diagonal
    pairs = mined_pairs(MultiSimilarityLoss(margin=0.1), x, labels)
    assert pairs.positive.tolist() == [[1, 0], [2, 3]] and pairs.negative.tolist() == [[1, 2], [2, 0], [2, 1]]


def test_mined_pairs_refuses_losses_that_mine_nothing() -> None:
    x, labels = random_batch()
    for loss in (PairwiseCircleLoss(), PairwiseCosFaceLoss(), WeightedRegularizedTripletLoss()):
        with pytest.raises(TypeError, match=type(loss).__name__):
            mined_pairs(loss, x, labels)
    with pytest.raises(ValueError, match="labels"):
        mined_pairs(TripletLoss(), x, labels[:-1])


# ---------------------------------------------------------------- probe_field


def test_ring_is_evenly_spaced_on_its_circle() -> None:
    points = ring(4, radius=2.0)
    torch.testing.assert_close(points, torch.tensor([[2.0, 0.0], [0.0, 2.0], [-2.0, 0.0], [0.0, -2.0]]),
                               atol=1e-6, rtol=0)
    with pytest.raises(ValueError, match="radius"):
        ring(4, radius=0.0)


def test_probe_field_is_the_push_on_an_extra_embedding() -> None:
    x, labels = random_batch(seed=1)
    loss = TripletLoss(margin=0.0)
    positions = torch.tensor([[0.5, -1.0], [2.0, 2.0], [-1.0, 0.25]], dtype=torch.float64)
    field = probe_field(loss, x, labels, probe_label=1, positions=positions)
    assert field.shape == (3, 2)
    for position, push in zip(positions, field):
        batch = torch.cat([x, position[None]])
        expected = embedding_gradients(loss, batch, torch.cat([labels, torch.tensor([1])]))[-1]
        torch.testing.assert_close(push, expected)
    with pytest.raises(ValueError, match="positions"):
        probe_field(loss, x, labels, 0, positions=positions[:, :1])


# ---------------------------------------------------------------- descent_snapshots


@pytest.mark.parametrize("loss, lr", [(TripletLoss(margin=0.0), 0.2), (PairwiseCircleLoss(), 0.002),
                                      (MultiSimilarityLoss(), 0.5), (TripletLoss(margin=0.3), 0.2)],
                         ids=["soft", "circle", "ms", "triplet"])
def test_descent_lowers_the_loss(loss, lr: float) -> None:
    emb, labels = toy_embeddings(4, 4, spread=1.0, seed=3)
    snaps = descent_snapshots(loss, emb, labels, steps=[0, 10, 40], lr=lr)
    assert [s.step for s in snaps] == [0, 10, 40]
    assert torch.equal(snaps[0].embeddings, emb)
    assert snaps[0].loss == pytest.approx(float(loss(emb, labels).detach()))
    assert snaps[-1].loss < 0.5 * snaps[0].loss
    for snap in snaps:
        torch.testing.assert_close(snap.embeddings.norm(dim=1), torch.ones(16))


def test_descent_steps_are_projected_gradient_steps() -> None:
    emb, labels = toy_embeddings(3, 3, spread=0.8, seed=0)
    before = emb.clone()
    loss = TripletLoss(margin=0.0)
    snaps = descent_snapshots(loss, emb, labels, steps=[2], lr=0.1)
    x = emb
    for _ in range(2):
        x = F.normalize(x + 0.1 * embedding_gradients(loss, x, labels), dim=1)
    assert len(snaps) == 1 and snaps[0].step == 2
    torch.testing.assert_close(snaps[0].embeddings, x)
    assert torch.equal(emb, before)
    free = descent_snapshots(loss, emb, labels, steps=[1], lr=0.1, unit_norm=False)[0].embeddings
    torch.testing.assert_close(free, emb + 0.1 * embedding_gradients(loss, emb, labels))


@pytest.mark.parametrize("steps, lr, message", [([], 0.1, "steps"), ([3, 3], 0.1, "steps"), ([2, 1], 0.1, "steps"),
                                                ([-1], 0.1, "steps"), ([1], 0.0, "lr")])
def test_descent_rejects_bad_arguments(steps: list, lr: float, message: str) -> None:
    emb, labels = toy_embeddings(2, 2)
    with pytest.raises(ValueError, match=message):
        descent_snapshots(TripletLoss(), emb, labels, steps=steps, lr=lr)


# ---------------------------------------------------------------- figures


def test_loss_field_figure_draws_each_loss_with_its_value_pairs_and_scaled_arrows() -> None:
    emb, labels = toy_embeddings(3, 3, spread=0.6, seed=0)
    losses = {"hard": TripletLoss(margin=0.3), "circle": PairwiseCircleLoss(), "ms": MultiSimilarityLoss()}
    fig = loss_field_figure(emb, labels, losses, columns=2, arrow_length=0.4)
    visible = [ax for ax in fig.axes if ax.get_visible()]
    assert len(visible) == 3
    for ax, (name, loss) in zip(visible, losses.items()):
        assert ax.get_title().startswith(f"{name}\nL = {float(loss(emb, labels).detach()):.4f}")
        (quiver,) = [c for c in ax.collections if isinstance(c, matplotlib.quiver.Quiver)]
        lengths = np.hypot(quiver.U, quiver.V)
        assert lengths.max() == pytest.approx(0.4)
    pairs = mined_pairs(losses["hard"], emb, labels)
    unique = {tuple(sorted(p)) for p in pairs.positive.tolist()} | {tuple(sorted(p)) for p in pairs.negative.tolist()}
    drawn_pair_lines = [line for line in visible[0].lines if len(line.get_xdata()) == 2]
    assert len(drawn_pair_lines) == len(unique)
    assert not [line for line in visible[1].lines if len(line.get_xdata()) == 2]  # circle mines nothing


def test_descent_figure_has_one_panel_per_snapshot() -> None:
    emb, labels = toy_embeddings(2, 2, spread=0.5)
    runs = {"soft": descent_snapshots(TripletLoss(margin=0.0), emb, labels, [0, 1, 2], lr=0.1),
            "ms": descent_snapshots(MultiSimilarityLoss(), emb, labels, [0, 5], lr=0.1)}
    fig = descent_figure(runs, labels)
    visible = [ax for ax in fig.axes if ax.get_visible()]
    assert len(visible) == 5
    assert visible[0].get_ylabel() == "soft" and visible[3].get_ylabel() == "ms"
    assert visible[4].get_title() == f"step 5   L = {runs['ms'][1].loss:.4f}"


def test_probe_field_figure_scales_arrows_by_the_root_of_the_push() -> None:
    emb, labels = toy_embeddings(3, 3, spread=0.6, seed=0)
    positions = ring(12, 1.25)
    losses = {"soft": TripletLoss(margin=0.0), "ms": MultiSimilarityLoss()}
    fig = probe_field_figure(emb, labels, losses, probe_label=0, positions=positions, arrow_length=0.3)
    for ax, loss in zip(fig.axes, losses.values()):
        (quiver,) = [c for c in ax.collections if isinstance(c, matplotlib.quiver.Quiver)]
        magnitude = probe_field(loss, emb, labels, 0, positions).norm(dim=1).double().numpy()
        lengths = np.hypot(quiver.U, quiver.V)
        np.testing.assert_allclose(lengths, 0.3 * np.sqrt(magnitude / magnitude.max()), rtol=1e-5, atol=1e-9)
