"""Metric losses on toy 2-D embeddings: their value, the pairs they mine and where they push each embedding.

In two dimensions a loss's effect can be drawn: one gradient-descent step moves embedding x_i along −∂L/∂x_i, so
the arrows of the negative gradient are exactly where the loss pushes each point.

* :func:`toy_embeddings` — a seeded toy batch of P identities × K embeddings on the unit circle (or in the plane).
* :func:`embedding_gradients` — −∂L/∂x for every embedding, by autograd.
* :func:`mined_pairs` — the pairs a loss uses: the batch-hard positive and negative of every anchor
  (:class:`~reidkit.losses.TripletLoss`) or the pairs kept by multi-similarity mining
  (:class:`~reidkit.losses.MultiSimilarityLoss`).
* :func:`probe_field` — the push a new embedding of one identity would get at chosen positions (e.g. a :func:`ring`).
* :func:`descent_snapshots` — plain gradient descent on the embeddings themselves, with snapshots after chosen steps.
* :func:`loss_field_figure`, :func:`probe_field_figure`, :func:`descent_figure` — the pictures (matplotlib
  ``Figure`` objects, no pyplot state; a notebook shows them with ``%matplotlib inline`` as the cell's value).
"""
from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from torch import Tensor, nn

from reidkit.losses import MultiSimilarityLoss, TripletLoss
from reidkit.losses.pairwise import multi_similarity_pairs
from reidkit.losses.triplet import batch_hard

__all__ = [
    "IDENTITY_COLOURS",
    "NEGATIVE_COLOUR",
    "POSITIVE_COLOUR",
    "DescentSnapshot",
    "MinedPairs",
    "descent_figure",
    "descent_snapshots",
    "embedding_gradients",
    "loss_field_figure",
    "mined_pairs",
    "probe_field",
    "probe_field_figure",
    "ring",
    "toy_embeddings",
]

#: A loss on (features (B, D), labels (B,)) returning a scalar: any metric loss of :mod:`reidkit.losses`.
LossFn = Callable[[Tensor, Tensor], Tensor]

#: Identity colours (no green or red: those mark positive and negative pairs).
IDENTITY_COLOURS = ("tab:blue", "tab:orange", "tab:purple", "tab:brown", "tab:pink", "tab:cyan", "tab:olive",
                    "tab:gray")
POSITIVE_COLOUR = "tab:green"
NEGATIVE_COLOUR = "tab:red"


def toy_embeddings(
    num_identities: int = 3,
    per_identity: int = 4,
    spread: float = 0.5,
    on_circle: bool = True,
    seed: int = 0,
) -> tuple[Tensor, Tensor]:
    """A toy P×K batch of 2-D embeddings: ``(embeddings (P·K, 2) float32, labels (P·K,) int64)``.

    Identity k has its centre at angle 2πk/P; each of its K embeddings sits at the centre's angle plus
    ``spread``·N(0, 1) radians, so a large spread lets identities overlap. ``on_circle`` puts every embedding on the
    unit circle (the geometry of L2-normalised features); otherwise its radius is exp(0.3·N(0, 1)). Labels are
    0…P−1, each repeated K times, in order. The same arguments give the same tensors (a private generator).
    """
    if not isinstance(num_identities, int) or num_identities < 1:
        raise ValueError(f"num_identities must be an int >= 1, got {num_identities!r}")
    if not isinstance(per_identity, int) or per_identity < 1:
        raise ValueError(f"per_identity must be an int >= 1, got {per_identity!r}")
    if not math.isfinite(float(spread)) or float(spread) < 0:
        raise ValueError(f"spread must be finite and >= 0 (radians), got {spread!r}")
    generator = torch.Generator().manual_seed(int(seed))
    labels = torch.arange(num_identities).repeat_interleave(per_identity)
    centres = 2 * math.pi * labels.double() / num_identities
    angles = centres + float(spread) * torch.randn(len(labels), generator=generator, dtype=torch.float64)
    radii = torch.ones_like(angles)
    if not on_circle:
        radii = (0.3 * torch.randn(len(labels), generator=generator, dtype=torch.float64)).exp()
    points = torch.stack([radii * angles.cos(), radii * angles.sin()], dim=1)
    return points.float(), labels


def _loss_value(loss: LossFn, embeddings: Tensor, labels: Tensor) -> Tensor:
    value = loss(embeddings, labels)
    if not isinstance(value, Tensor) or value.dim() != 0:
        shape = tuple(value.shape) if isinstance(value, Tensor) else type(value).__name__
        raise ValueError(f"the loss must return a scalar tensor, got {shape}")
    return value


def embedding_gradients(loss: LossFn, embeddings: Tensor, labels: Tensor) -> Tensor:
    """−∂L/∂x_i for every embedding (B, D), by autograd: the direction one gradient step moves each embedding.

    The input is not modified and its dtype is kept (float64 in, float64 out). Only the embeddings are
    differentiated: a loss's own parameters (e.g. center-loss centres) get no gradient here. An embedding the loss
    does not depend on gets a zero row. This is the gradient training applies: for a loss that detaches weights
    inside (the pairwise circle loss's α, by default) it is not the derivative of the loss value.
    """
    if not isinstance(embeddings, Tensor) or embeddings.dim() != 2:
        raise ValueError(f"embeddings must be a (B, D) tensor, got {getattr(embeddings, 'shape', embeddings)!r}")
    x = embeddings.detach().clone().requires_grad_(True)
    with torch.enable_grad():
        value = _loss_value(loss, x, labels)
        (grad,) = torch.autograd.grad(value, x, allow_unused=True)
    return torch.zeros_like(x) if grad is None else -grad.detach()


class MinedPairs(NamedTuple):
    """Pairs a loss uses, as (N, 2) int64 index tensors of rows ``(anchor, other)``: ``positive`` (same identity)
    and ``negative`` (another identity)."""

    positive: Tensor
    negative: Tensor


def _pairs(mask: Tensor) -> Tensor:
    return mask.nonzero().to(torch.int64).reshape(-1, 2)


def _batch_hard_pairs(loss: TripletLoss, x: Tensor, labels: Tensor) -> MinedPairs:
    """The loss's own distances and masks, mined by the loss's own :func:`~reidkit.losses.triplet.batch_hard`."""
    dist, pos, neg = loss.distances(x, labels)
    anchors = torch.nonzero(pos.any(dim=1) & neg.any(dim=1)).flatten()
    hard = batch_hard(dist[anchors], pos[anchors], neg[anchors])
    return MinedPairs(torch.stack([anchors, hard.positive_index], dim=1),
                      torch.stack([anchors, hard.negative_index], dim=1))


def _multi_similarity_pairs(loss: MultiSimilarityLoss, x: Tensor, labels: Tensor) -> MinedPairs:
    """The masks of :func:`~reidkit.losses.pairwise.multi_similarity_pairs`, as the loss computes them."""
    _, pos, neg = multi_similarity_pairs(x, labels, loss.margin, loss.mining)
    contributing = (pos.any(dim=1) & neg.any(dim=1))[:, None]
    return MinedPairs(_pairs(pos & contributing), _pairs(neg & contributing))


def mined_pairs(loss: nn.Module, embeddings: Tensor, labels: Tensor) -> MinedPairs:
    """The pairs ``loss`` mines on this batch.

    * :class:`~reidkit.losses.TripletLoss` (Hermans et al., arXiv 1703.07737): for every anchor with a positive and
      a negative, its hardest positive argmax_{j≠i, y_j=y_i} d_ij and hardest negative argmin_{y_j≠y_i} d_ij, with
      the loss's own distance (Euclidean, or 2 − 2cos with ``norm_feature``); one row per anchor, in anchor order.
      With a margin, a mined triplet whose hinge is already satisfied contributes no gradient.
    * :class:`~reidkit.losses.MultiSimilarityLoss` (Wang et al., arXiv 1904.06627): the positives and negatives
      kept by its mining (s_in + ε > min_p s_ip, s_ip − ε < max_n s_in), only for anchors that keep at least one
      of each (the others contribute 0); row-major order.

    The mining is the loss's own code (:func:`~reidkit.losses.triplet.batch_hard`,
    :func:`~reidkit.losses.pairwise.multi_similarity_pairs`) in the loss's compute dtype (float32, float64 for
    float64 embeddings), so the pictured pairs are the ones the loss uses. Other losses weight every pair (softmax /
    log-sum-exp weights) and mine none: a ``TypeError`` says so.
    """
    if not isinstance(embeddings, Tensor) or embeddings.dim() != 2:
        raise ValueError(f"embeddings must be a (B, D) tensor, got {getattr(embeddings, 'shape', embeddings)!r}")
    if not isinstance(labels, Tensor) or labels.shape != embeddings.shape[:1]:
        raise ValueError(f"labels must be a ({embeddings.shape[0]},) tensor, got {getattr(labels, 'shape', labels)!r}")
    x = embeddings.detach()  # mined in the loss's own compute dtype, by the loss's own functions
    if type(loss) is TripletLoss:
        return _batch_hard_pairs(loss, x, labels)
    if isinstance(loss, MultiSimilarityLoss):
        return _multi_similarity_pairs(loss, x, labels)
    raise TypeError(
        f"mined_pairs: {type(loss).__name__} mines no pairs (it weights every pair); "
        "supported: TripletLoss (batch-hard), MultiSimilarityLoss (pair mining)"
    )


def ring(count: int = 48, radius: float = 1.25) -> Tensor:
    """``count`` points (count, 2) evenly spaced on the circle of ``radius``, starting at angle 0."""
    if not isinstance(count, int) or count < 1:
        raise ValueError(f"count must be an int >= 1, got {count!r}")
    if not math.isfinite(float(radius)) or float(radius) <= 0:
        raise ValueError(f"radius must be finite and > 0, got {radius!r}")
    angles = 2 * math.pi * torch.arange(count, dtype=torch.float64) / count
    return (float(radius) * torch.stack([angles.cos(), angles.sin()], dim=1)).float()


def probe_field(loss: LossFn, embeddings: Tensor, labels: Tensor, probe_label: int, positions: Tensor) -> Tensor:
    """Where the loss would push one extra embedding p of identity ``probe_label`` placed at each of ``positions``
    (G, 2): returns −∂L/∂p (G, 2).

    For each position the batch is (embeddings ∪ {p}) with labels (labels ∪ {probe_label}); the batch's own
    embeddings stay fixed. The probe acts as an anchor and as everyone else's positive or negative, as a new image
    of that identity in the batch would. Cosine losses are undefined at the origin: keep positions away from it.
    """
    if not isinstance(positions, Tensor) or positions.dim() != 2 or positions.shape[1] != embeddings.shape[1]:
        raise ValueError(f"positions must be a (G, {embeddings.shape[1]}) tensor, "
                         f"got {getattr(positions, 'shape', positions)!r}")
    batch_labels = torch.cat([labels, torch.tensor([int(probe_label)], dtype=labels.dtype)])
    rows = []
    for position in positions.to(embeddings.dtype):
        batch = torch.cat([embeddings.detach(), position[None]])
        rows.append(embedding_gradients(loss, batch, batch_labels)[-1])
    return torch.stack(rows)


class DescentSnapshot(NamedTuple):
    """The embeddings (B, D) and the loss value after ``step`` gradient-descent steps."""

    step: int
    embeddings: Tensor
    loss: float


def descent_snapshots(
    loss: LossFn,
    embeddings: Tensor,
    labels: Tensor,
    steps: Sequence[int],
    lr: float,
    unit_norm: bool = True,
) -> list[DescentSnapshot]:
    """Plain gradient descent on the embeddings themselves, x ← x − lr·∂L/∂x, with a snapshot after each of
    ``steps`` (strictly increasing, ≥ 0; 0 is the input).

    ``unit_norm`` rescales every embedding to unit length after each step (projected gradient descent on the
    circle: the geometry of L2-normalised features, and it keeps Euclidean losses from winning by spreading points
    to infinity). The input is not modified.
    """
    wanted = [int(s) for s in steps]
    if not wanted or any(s < 0 for s in wanted) or any(b <= a for a, b in zip(wanted, wanted[1:])):
        raise ValueError(f"steps must be a non-empty, strictly increasing list of ints >= 0, got {list(steps)!r}")
    if not math.isfinite(float(lr)) or float(lr) <= 0:
        raise ValueError(f"lr must be finite and > 0, got {lr!r}")
    x = embeddings.detach().clone()
    snapshots: list[DescentSnapshot] = []
    for step in range(wanted[-1] + 1):
        if step in wanted:
            with torch.no_grad():
                value = float(_loss_value(loss, x, labels))
            snapshots.append(DescentSnapshot(step, x.clone(), value))
        if step == wanted[-1]:
            break
        x = x + float(lr) * embedding_gradients(loss, x, labels)
        if unit_norm:
            x = F.normalize(x, dim=1)
    return snapshots


def _identity_colour(label: int) -> str:
    return IDENTITY_COLOURS[label % len(IDENTITY_COLOURS)]


def _draw_points(ax: Axes, points: np.ndarray, labels: np.ndarray, extent: float, numbered: bool = False) -> None:
    circle = np.linspace(0, 2 * np.pi, 200)
    ax.plot(np.cos(circle), np.sin(circle), color="0.85", linewidth=1, zorder=0)
    ax.scatter(points[:, 0], points[:, 1], c=[_identity_colour(int(y)) for y in labels], s=45,
               edgecolors="black", linewidths=0.6, zorder=3)
    if numbered:  # index labels just outside each point, away from the origin
        radii = np.maximum(np.linalg.norm(points, axis=1, keepdims=True), 1e-9)
        for index, (tx, ty) in enumerate(points * (1 + 0.16 / radii)):
            ax.text(tx, ty, str(index), ha="center", va="center", fontsize=7.5, color="0.25", zorder=5)
    ax.set_xlim(-extent, extent)
    ax.set_ylim(-extent, extent)
    ax.set_aspect("equal")
    ax.set_xticks([])
    ax.set_yticks([])


def _draw_pairs(ax: Axes, points: np.ndarray, pairs: MinedPairs) -> None:
    for rows, colour, style in ((pairs.positive, POSITIVE_COLOUR, "-"), (pairs.negative, NEGATIVE_COLOUR, "--")):
        drawn: set[tuple[int, int]] = set()
        alpha = 0.75 if len(rows) <= 30 else 0.35
        for i, j in rows.tolist():
            key = (min(i, j), max(i, j))
            if key in drawn:
                continue
            drawn.add(key)
            ax.plot(points[[i, j], 0], points[[i, j], 1], color=colour, linestyle=style, linewidth=1.2, alpha=alpha,
                    zorder=1)


def _identity_handles(labels: np.ndarray) -> list[Line2D]:
    return [Line2D([], [], marker="o", linestyle="", markerfacecolor=_identity_colour(int(k)),
                   markeredgecolor="black", markersize=7, label=f"identity {int(k)}") for k in np.unique(labels)]


def loss_field_figure(
    embeddings: Tensor,
    labels: Tensor,
    losses: Mapping[str, LossFn],
    columns: int = 4,
    arrow_length: float = 0.4,
    extent: float = 1.45,
    show_pairs: bool = True,
    numbered: bool = True,
) -> Figure:
    """One panel per loss: the embeddings coloured by identity, the arrows −∂L/∂x_i (where one gradient step moves
    each embedding) and, for losses that mine pairs (:func:`mined_pairs`), the mined positive (green, solid) and
    negative (red, dashed) pairs.

    Gradient magnitudes differ by orders of magnitude between losses, so the arrows are scaled per panel: the
    longest arrow has length ``arrow_length`` (in embedding units) and the panel title gives the true largest
    |−∂L/∂x| next to the loss value. ``numbered`` writes each embedding's batch index next to it.
    """
    if not losses:
        raise ValueError("losses must name at least one loss")
    if not isinstance(columns, int) or columns < 1:
        raise ValueError(f"columns must be an int >= 1, got {columns!r}")
    points = embeddings.detach().double().numpy()
    label_array = labels.numpy()
    rows = math.ceil(len(losses) / columns)
    fig = Figure(figsize=(3.6 * min(columns, len(losses)), 3.7 * rows + 0.6), layout="constrained")
    axes = fig.subplots(rows, min(columns, len(losses)), squeeze=False).flatten()
    has_pairs = False
    for ax, (name, loss) in zip(axes, losses.items()):
        with torch.no_grad():
            value = float(_loss_value(loss, embeddings, labels))
        push = embedding_gradients(loss, embeddings, labels).double().numpy()
        largest = float(np.linalg.norm(push, axis=1).max())
        if show_pairs and isinstance(loss, nn.Module) and (type(loss) is TripletLoss
                                                           or isinstance(loss, MultiSimilarityLoss)):
            _draw_pairs(ax, points, mined_pairs(loss, embeddings, labels))
            has_pairs = True
        _draw_points(ax, points, label_array, extent, numbered)
        if largest > 0:
            arrows = push * (arrow_length / largest)
            ax.quiver(points[:, 0], points[:, 1], arrows[:, 0], arrows[:, 1], angles="xy", scale_units="xy", scale=1,
                      width=0.012, color="black", zorder=4)
        ax.set_title(f"{name}\nL = {value:.4f}   max |−∂L/∂x| = {largest:.3g}", fontsize=9.5)
    for ax in axes[len(losses):]:
        ax.set_visible(False)
    handles = _identity_handles(label_array)
    if has_pairs:
        handles += [Line2D([], [], color=POSITIVE_COLOUR, linestyle="-", label="mined positive pair"),
                    Line2D([], [], color=NEGATIVE_COLOUR, linestyle="--", label="mined negative pair")]
    handles.append(Line2D([], [], color="black", marker=r"$\rightarrow$", markersize=14, linestyle="",
                          label="push −∂L/∂x (longest arrow scaled to the same length in every panel)"))
    fig.legend(handles=handles, loc="outside lower center", ncol=min(len(handles), 6), fontsize=9, frameon=False)
    return fig


def probe_field_figure(
    embeddings: Tensor,
    labels: Tensor,
    losses: Mapping[str, LossFn],
    probe_label: int,
    positions: Tensor,
    arrow_length: float = 0.35,
) -> Figure:
    """One panel per loss: the batch and, at each of ``positions``, the push a new embedding of identity
    ``probe_label`` would get there (:func:`probe_field`). Arrow length ∝ √|push|, scaled per panel so the longest
    is ``arrow_length``: weak but non-zero pushes stay visible; no arrow means no push."""
    if not losses:
        raise ValueError("losses must name at least one loss")
    points = embeddings.detach().double().numpy()
    label_array = labels.numpy()
    where = positions.double().numpy()
    extent = float(np.abs(where).max()) + arrow_length + 0.05
    fig = Figure(figsize=(3.6 * len(losses), 4.4), layout="constrained")
    axes = fig.subplots(1, len(losses), squeeze=False)[0]
    for ax, (name, loss) in zip(axes, losses.items()):
        push = probe_field(loss, embeddings, labels, probe_label, positions).double().numpy()
        magnitude = np.linalg.norm(push, axis=1)
        largest = float(magnitude.max())
        if largest > 0:
            direction = push / np.where(magnitude > 0, magnitude, 1.0)[:, None]
            arrows = direction * (np.sqrt(magnitude / largest) * arrow_length)[:, None]
            ax.quiver(where[:, 0], where[:, 1], arrows[:, 0], arrows[:, 1], angles="xy", scale_units="xy", scale=1,
                      width=0.008, color=_identity_colour(int(probe_label)), zorder=2)
        _draw_points(ax, points, label_array, extent)
        ax.set_title(f"{name}\nmax |−∂L/∂p| = {largest:.3g}", fontsize=9.5)
    handles = _identity_handles(label_array)
    handles.append(Line2D([], [], color=_identity_colour(int(probe_label)), marker=r"$\rightarrow$", markersize=14,
                          linestyle="", label=f"push on a new embedding of identity {int(probe_label)} placed there "
                                              "(length ∝ √|push|)"))
    fig.legend(handles=handles, loc="outside lower center", ncol=len(handles), fontsize=9, frameon=False)
    return fig


def descent_figure(
    runs: Mapping[str, Sequence[DescentSnapshot]],
    labels: Tensor,
    extent: float = 1.3,
) -> Figure:
    """Small multiples of gradient descent: one row per loss (``runs``: name → snapshots from
    :func:`descent_snapshots`), one column per snapshot, titled with the step and the loss value."""
    if not runs:
        raise ValueError("runs must hold at least one loss's snapshots")
    columns = max(len(s) for s in runs.values())
    fig = Figure(figsize=(2.5 * columns + 0.4, 2.6 * len(runs) + 0.5), layout="constrained")
    axes = fig.subplots(len(runs), columns, squeeze=False)
    label_array = labels.numpy()
    for row, (name, snapshots) in enumerate(runs.items()):
        for col in range(columns):
            ax = axes[row, col]
            if col >= len(snapshots):
                ax.set_visible(False)
                continue
            snap = snapshots[col]
            _draw_points(ax, snap.embeddings.detach().double().numpy(), label_array, extent)
            ax.set_title(f"step {snap.step}   L = {snap.loss:.4f}", fontsize=9)
        axes[row, 0].set_ylabel(name, fontsize=10)
    fig.legend(handles=_identity_handles(label_array), loc="outside lower center", ncol=len(np.unique(label_array)),
               fontsize=9, frameon=False)
    return fig
