"""Pictures of training: learning-rate schedules, loss curves and validation metrics from the run log.

* :func:`lr_schedule` steps a real scheduler on a dummy optimiser and records the learning rate of every step, so a
  plot shows what training will use, not a re-implementation of the formula (``components.md`` §8).
* :func:`lr_schedule_figure` draws several such curves in panels, each as a staircase: ``lr(t)`` holds from step
  ``t`` to step ``t + 1``.
* :func:`loss_curves_figure` and :func:`validation_figure` read the records of the JSON-lines run log
  (:func:`reidkit.engine.run_log.read_run_log`): ``"step"`` records (``step``, ``lr`` per parameter group, ``loss``
  per term), ``"epoch"`` records (the epoch's mean of each term), ``"eval"`` records (validation metrics, used for
  model selection) and the ``"test"`` record (the test split, evaluated once after training).
"""
from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Union

import numpy as np
import torch
from matplotlib.axes import Axes
from matplotlib.figure import Figure

__all__ = ["loss_curves_figure", "lr_schedule", "lr_schedule_figure", "validation_figure"]

Curve = Union[Sequence[float], np.ndarray, tuple[Sequence[float], Sequence[float]]]
"""A curve to draw: its y values (x = 0, 1, 2, ...) or an ``(x, y)`` pair of equal lengths."""

WEIGHTED_SUFFIX = "_weighted"
"""Loss terms logged after weighting end with this (``LossOutput.terms``); plotted only on request."""

METRIC_LABELS = {"mAP": "mAP", "mINP": "mINP", "rank1": "rank-1", "rank5": "rank-5", "rank10": "rank-10"}


def lr_schedule(scheduler_factory: Callable[[torch.optim.Optimizer], Any], steps: int,
                base_lr: float = 1.0) -> np.ndarray:
    """The learning rate a training loop sees at ``t = 0 .. steps - 1`` under a scheduler.

    A one-parameter SGD optimiser with learning rate ``base_lr`` is handed to ``scheduler_factory`` (e.g.
    ``lambda opt: WarmupMultiStepLR(opt, [40, 70])``); then, ``steps`` times, the current rate is read, the optimiser
    steps (a no-op: no gradient) and the scheduler steps. ``t`` counts completed ``scheduler.step()`` calls, in the
    unit the scheduler was built for (iterations or epochs).

    Raises:
        ValueError: ``steps`` not a positive int, ``base_lr`` not a positive finite number, or a factory that does not
            return a scheduler of the given optimiser.
    """
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps must be an int >= 1, got {steps!r}")
    if isinstance(base_lr, bool) or not isinstance(base_lr, (int, float)) or not (math.isfinite(base_lr)
                                                                                    and base_lr > 0):
        raise ValueError(f"base_lr must be a finite number > 0, got {base_lr!r}")
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=float(base_lr))
    scheduler = scheduler_factory(optimizer)
    if not callable(getattr(scheduler, "step", None)) or getattr(scheduler, "optimizer", optimizer) is not optimizer:
        raise ValueError(f"scheduler_factory must return a scheduler built on the optimiser it is given, "
                         f"got {scheduler!r}")
    rates = np.empty(steps, dtype=np.float64)
    for t in range(steps):
        rates[t] = optimizer.param_groups[0]["lr"]
        optimizer.step()
        scheduler.step()
    return rates


def _curve_xy(curve: Curve, where: str) -> tuple[np.ndarray, np.ndarray]:
    if isinstance(curve, tuple) and len(curve) == 2:
        x, y = np.asarray(curve[0], dtype=np.float64), np.asarray(curve[1], dtype=np.float64)
    else:
        y = np.asarray(curve, dtype=np.float64)
        x = np.arange(len(y), dtype=np.float64)
    if y.ndim != 1 or x.shape != y.shape or len(y) == 0:
        raise ValueError(f"{where}: expected 1-D y values (or an (x, y) pair of one length), got x {x.shape}, "
                         f"y {y.shape}")
    return x, y


def lr_schedule_figure(panels: Mapping[str, Mapping[str, Curve]], xlabel: str | Sequence[str] = "step",
                       log_y: bool | Sequence[bool] = False, ylabel: str = "learning rate",
                       ncols: int | None = None) -> Figure:
    """One panel per entry of ``panels`` (title → {curve label → curve}), ``ncols`` per row, each curve a staircase.

    Args:
        panels: e.g. ``{"warm-up": {"linear": rates_a, "constant": rates_b}}``; a curve is its y values
            (x = 0, 1, ...) or an ``(x, y)`` pair (e.g. x in epochs for a per-iteration curve: ``t / iters``).
        xlabel: one label for every panel, or one per panel.
        log_y: a logarithmic y axis for every panel, or one flag per panel.
        ylabel: the y label of the first panel of each row.
        ncols: panels per row (default: all in one row).

    Raises:
        ValueError: no panels, an empty panel, a malformed curve, per-panel lists of the wrong length, or ``ncols``
            not a positive int.
    """
    if not panels:
        raise ValueError("panels is empty: give {title: {label: curve}}")
    n = len(panels)
    xlabels = [xlabel] * n if isinstance(xlabel, str) else list(xlabel)
    logs = [log_y] * n if isinstance(log_y, bool) else list(log_y)
    if len(xlabels) != n or len(logs) != n:
        raise ValueError(f"xlabel and log_y must be single values or one per panel ({n}), got {len(xlabels)} "
                         f"and {len(logs)}")
    cols = n if ncols is None else ncols
    if isinstance(cols, bool) or not isinstance(cols, int) or cols < 1:
        raise ValueError(f"ncols must be an int >= 1, got {ncols!r}")
    cols = min(cols, n)
    rows = math.ceil(n / cols)
    fig = Figure(figsize=(4.4 * cols + 0.6, 3.4 * rows + 0.2))
    grid = fig.subplots(rows, cols, squeeze=False)
    for ax in grid.flat[n:]:
        ax.set_visible(False)
    axes = grid.flat[:n]
    for ax, (title, curves), label_x, log in zip(axes, panels.items(), xlabels, logs):
        if not curves:
            raise ValueError(f"panel {title!r} has no curves")
        for label, curve in curves.items():
            x, y = _curve_xy(curve, f"panel {title!r}, curve {label!r}")
            ax.plot(x, y, drawstyle="steps-post", label=label, linewidth=1.6)
        if log:
            ax.set_yscale("log")
        ax.set_title(title, fontsize=10)
        ax.set_xlabel(label_x)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    for row in grid:
        row[0].set_ylabel(ylabel)
    fig.tight_layout()
    return fig


def _by_kind(records: Sequence[Mapping[str, Any]], kind: str) -> list[Mapping[str, Any]]:
    return [r for r in records if r.get("kind") == kind]


def _number(value: Any) -> float:
    """A logged number; ``None`` (a non-finite value written as null) becomes NaN."""
    return float("nan") if value is None else float(value)


def _epoch_ends(ax: Axes, epochs: Sequence[Mapping[str, Any]]) -> None:
    for record in epochs:
        ax.axvline(record["step"], color="0.6", linestyle=":", linewidth=0.8, zorder=0)


def loss_curves_figure(records: Sequence[Mapping[str, Any]], terms: Sequence[str] | None = None,
                       weighted: bool = False) -> Figure:
    """Loss per term (left) and learning rate (right) against the optimiser step, from run-log records.

    Lines are the ``"step"`` records; a dot in the middle of each epoch is that epoch's mean (``"epoch"``
    records); dotted vertical lines mark the epoch ends. The learning rate of a step record is the one after that
    step (the rate of the next step), as the trainer logs it. The learning rate is drawn once when every parameter group
    has the same rate, else one line per group.

    Args:
        records: the run log (:func:`~reidkit.engine.run_log.read_run_log`), all kinds or only step/epoch ones.
        terms: loss keys to draw (e.g. ``["ce", "triplet", "total"]``); default every unweighted term, total last.
        weighted: with ``terms=None``, also draw the ``*_weighted`` terms.

    Raises:
        ValueError: no ``"step"`` records, or a requested term that the log does not have.
    """
    steps, epochs = _by_kind(records, "step"), _by_kind(records, "epoch")
    if not steps:
        raise ValueError("no 'step' records: write some with log.every_n (records of kinds "
                         f"{sorted({str(r.get('kind')) for r in records})} were given)")
    available = list(dict.fromkeys(k for r in steps for k in r["loss"]))
    if terms is None:
        terms = [k for k in available if k != "total" and (weighted or not k.endswith(WEIGHTED_SUFFIX))]
        terms += ["total"] if "total" in available else []
    if not terms:
        raise ValueError(f"no loss terms to draw; available: {', '.join(available)}")
    missing = [t for t in terms if t not in available]
    if missing:
        raise ValueError(f"loss term(s) {missing} not in the log; available: {', '.join(available)}")
    fig = Figure(figsize=(11, 3.8))
    ax_loss, ax_lr = fig.subplots(1, 2)
    x = np.array([r["step"] for r in steps], dtype=np.float64)
    ends = [0] + [int(r["step"]) for r in epochs]  # an epoch's mean is drawn at the middle of its steps
    for term in terms:
        y = np.array([_number(r["loss"].get(term)) for r in steps])
        label, width = ("total (weighted sum)", 2.2) if term == "total" else (term, 1.4)
        (line,) = ax_loss.plot(x, y, label=label, linewidth=width)
        means = [((ends[i] + 1 + ends[i + 1]) / 2, _number(r["loss"][term]))
                 for i, r in enumerate(epochs) if term in r["loss"]]
        if means:
            ex, ey = zip(*means)
            ax_loss.plot(ex, ey, "o", color=line.get_color(), markersize=5)
    ax_loss.set(xlabel="optimiser step", ylabel="loss", title="loss per term (dots: epoch means)")
    ax_loss.legend(fontsize=8)
    lrs = np.array([[_number(v) for v in r["lr"]] for r in steps])
    if np.allclose(lrs, lrs[:, :1], equal_nan=True):
        ax_lr.plot(x, lrs[:, 0], label="lr (all groups)", color="black")
    else:
        for g in range(lrs.shape[1]):
            ax_lr.plot(x, lrs[:, g], label=f"lr group {g}")
    ax_lr.set(xlabel="optimiser step", ylabel="learning rate", title="learning rate after each step")
    ax_lr.legend(fontsize=8)
    for ax in (ax_loss, ax_lr):
        _epoch_ends(ax, epochs)
        ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def validation_figure(records: Sequence[Mapping[str, Any]], metrics: Sequence[str] = ("mAP", "rank1")) -> Figure:
    """Validation metrics per epoch (lines, in %), the epoch of the best validation mAP (circled; the one
    ``best.pt`` holds) and the test evaluation.

    ``"eval"`` records are drawn as lines labelled with their split (``validation``: identities carved from the
    training set, used to choose the checkpoint). A ``"test"`` record (the test split, evaluated once after training
    with the selected weights) is drawn as a star at its epoch, labelled ``test`` with its value, never joined to the
    validation line.

    Raises:
        ValueError: no ``"eval"`` records, or a metric missing from them.
    """
    evals, tests = _by_kind(records, "eval"), _by_kind(records, "test")
    if not evals:
        raise ValueError("no 'eval' records: train with a validation split (train.val_ids > 0) and eval_every")
    for metric in metrics:
        absent = [r["epoch"] for r in evals if metric not in r]
        if absent:
            raise ValueError(f"metric {metric!r} missing from the eval records of epochs {absent}; "
                             f"have: {', '.join(k for k in evals[0] if k in METRIC_LABELS)}")
    fig = Figure(figsize=(6.4, 3.8))
    ax = fig.subplots()
    epochs = np.array([r["epoch"] for r in evals])
    splits = "/".join(sorted({str(r.get("split", "validation")) for r in evals}))
    for index, metric in enumerate(metrics):
        colour = f"C{index}"
        values = 100 * np.array([_number(r[metric]) for r in evals])
        name = METRIC_LABELS.get(metric, metric)
        ax.plot(epochs, values, marker=".", color=colour, label=f"{splits} {name}")
        if metric == "mAP":
            best = int(np.nanargmax(values))
            ax.plot(epochs[best], values[best], "o", markersize=12, markerfacecolor="none", markeredgecolor=colour,
                    label=f"best {splits} mAP: epoch {epochs[best]}")
        for test in tests:
            if metric in test:
                value = 100 * _number(test[metric])
                ax.plot(test["epoch"], value, "*", markersize=13, color=colour, markeredgecolor="black",
                        label=f"test {name} {value:.1f}% (once, at the end)")
    ax.set(xlabel="epoch", ylabel="%", ylim=(0, 100), title="model selection on validation; test evaluated once")
    ax.set_xticks(epochs)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower left")
    fig.tight_layout()
    return fig
