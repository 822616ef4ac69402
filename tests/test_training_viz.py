"""Training plots: schedules recorded from real schedulers equal hand-computed rates; figures draw exactly the
records they are given (lines, labels, epoch means, the test point kept apart from validation)."""
from __future__ import annotations

import math
from functools import partial
from pathlib import Path

import numpy as np
import pytest
import torch
from matplotlib.colors import to_hex

from reidkit.engine.run_log import RunLog, read_run_log
from reidkit.engine.schedulers import WarmupCosineAnnealingLR, WarmupMultiStepLR, build_scheduler
from reidkit.viz.training import loss_curves_figure, lr_schedule, lr_schedule_figure, validation_figure


# ------------------------------------------------------------------------------------------------ lr_schedule
def test_multistep_rates_equal_the_hand_computed_ones() -> None:
    # base 2, f 0.1, W 2 (linear): t=0 -> 2*0.1, t=1 -> 2*(0.1 + 0.9/2); milestones 3 and 6 divide by ten
    rates = lr_schedule(partial(WarmupMultiStepLR, milestones=[3, 6], gamma=0.1, warmup_factor=0.1,
                                warmup_steps=2), 8, base_lr=2.0)
    assert rates == pytest.approx([0.2, 1.1, 2.0, 0.2, 0.2, 0.2, 0.02, 0.02], rel=1e-12)
    constant = lr_schedule(partial(WarmupMultiStepLR, milestones=[3], warmup_factor=0.1, warmup_steps=2,
                                   warmup="constant"), 4, base_lr=2.0)
    assert constant == pytest.approx([0.2, 0.2, 2.0, 0.2], rel=1e-12)


def test_cosine_rates_with_delay_and_floor_equal_the_hand_computed_ones() -> None:
    # W 1 (f 0.5), flat until D 2, cosine to eta 0.1 at M 6, held after
    rates = lr_schedule(partial(WarmupCosineAnnealingLR, max_steps=6, warmup_steps=1, warmup_factor=0.5,
                                delay_steps=2, eta_min=0.1), 8)
    cos_part = [0.1 + 0.9 * (1 + math.cos(math.pi * k / 4)) / 2 for k in (1, 2, 3)]
    assert rates == pytest.approx([0.5, 1.0, 1.0, *cos_part, 0.1, 0.1], rel=1e-12)
    assert cos_part == pytest.approx([0.8681980515, 0.55, 0.2318019485], rel=1e-9)


def test_any_torch_scheduler_and_per_iteration_steps() -> None:
    halving = lr_schedule(partial(torch.optim.lr_scheduler.StepLR, step_size=2, gamma=0.5), 5)
    assert halving.tolist() == [1.0, 1.0, 0.5, 0.5, 0.25]
    cfg = {"name": "warmup_cosine", "warmup_epochs": 2, "delay_epochs": 3, "max_epochs": 6}
    per_epoch = lr_schedule(partial(build_scheduler, {**cfg, "per_iter": False}), 6)
    per_iter = lr_schedule(partial(build_scheduler, {**cfg, "per_iter": True}, iters_per_epoch=5), 30)
    assert per_iter[::5] == pytest.approx(per_epoch, rel=1e-12)  # same rate at each epoch's first iteration
    assert per_iter[1] == pytest.approx(0.01 + 0.99 * 1 / 10)  # but a ramp inside the first epoch
    assert per_iter[0] == per_epoch[0] == pytest.approx(0.01)


def test_lr_schedule_rejects_bad_arguments() -> None:
    factory = partial(torch.optim.lr_scheduler.StepLR, step_size=1)
    for steps in (0, -3, 2.5, True):
        with pytest.raises(ValueError, match=r"steps must be an int >= 1, got"):
            lr_schedule(factory, steps)  # type: ignore[arg-type]
    for base in (0.0, -1.0, float("nan"), float("inf"), True):
        with pytest.raises(ValueError, match=r"base_lr must be a finite number > 0"):
            lr_schedule(factory, 3, base_lr=base)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="scheduler_factory must return a scheduler"):
        lr_schedule(lambda opt: object(), 3)
    other = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    with pytest.raises(ValueError, match="scheduler_factory must return a scheduler"):
        lr_schedule(lambda opt: torch.optim.lr_scheduler.StepLR(other, 1), 3)


# ------------------------------------------------------------------------------------------ lr_schedule_figure
def test_schedule_figure_draws_each_curve_as_given() -> None:
    a, b = np.array([0.1, 0.5, 1.0]), np.array([1.0, 1.0, 0.1])
    x_iter, y_iter = np.arange(6) / 2, np.linspace(0.1, 1.0, 6)
    fig = lr_schedule_figure({"warm-up": {"linear": a, "step": b}, "per iteration": {"ramp": (x_iter, y_iter)},
                              "log": {"floor": b}},
                             xlabel=["step", "epoch", "step"], log_y=[False, False, True], ncols=2)
    axes = fig.axes
    assert len(axes) == 4 and not axes[3].get_visible()  # 2 x 2 grid, the fourth cell hidden
    assert [ax.get_title() for ax in axes[:3]] == ["warm-up", "per iteration", "log"]
    assert [ax.get_xlabel() for ax in axes[:3]] == ["step", "epoch", "step"]
    assert [ax.get_yscale() for ax in axes[:3]] == ["linear", "linear", "log"]
    assert axes[0].get_ylabel() == "learning rate" and axes[2].get_ylabel() == "learning rate"
    assert [line.get_label() for line in axes[0].get_lines()] == ["linear", "step"]
    linear, step = axes[0].get_lines()
    assert linear.get_drawstyle() == "steps-post"
    assert np.array_equal(linear.get_xdata(), [0, 1, 2]) and np.array_equal(linear.get_ydata(), a)
    assert np.array_equal(step.get_ydata(), b)
    (ramp,) = axes[1].get_lines()
    assert np.array_equal(ramp.get_xdata(), x_iter) and np.array_equal(ramp.get_ydata(), y_iter)
    one_row = lr_schedule_figure({"p": {"c": a}, "q": {"c": b}})
    assert len(one_row.axes) == 2 and all(ax.get_visible() for ax in one_row.axes)


def test_schedule_figure_rejects_malformed_panels() -> None:
    with pytest.raises(ValueError, match="panels is empty"):
        lr_schedule_figure({})
    with pytest.raises(ValueError, match="panel 'p' has no curves"):
        lr_schedule_figure({"p": {}})
    with pytest.raises(ValueError, match=r"panel 'p', curve 'c': expected 1-D y values.*x \(3,\), y \(2,\)"):
        lr_schedule_figure({"p": {"c": ([0, 1, 2], [1.0, 2.0])}})
    with pytest.raises(ValueError, match="one per panel"):
        lr_schedule_figure({"p": {"c": [1.0]}, "q": {"c": [1.0]}}, log_y=[True])
    with pytest.raises(ValueError, match="ncols must be an int >= 1, got 0"):
        lr_schedule_figure({"p": {"c": [1.0]}}, ncols=0)


# ------------------------------------------------------------------------------------------- run-log figures
def step_record(step: int, epoch: int, ce: float, triplet: float | None, lrs: list[float]) -> dict:
    total = None if triplet is None else ce + triplet
    return {"kind": "step", "epoch": epoch, "step": step, "lr": lrs,
            "loss": {"ce": ce, "ce_weighted": ce, "triplet": triplet, "triplet_weighted": triplet, "total": total}}


RECORDS = [
    step_record(1, 1, 3.0, 1.0, [0.1, 0.1]),
    step_record(2, 1, 2.5, 0.8, [0.2, 0.2]),
    step_record(3, 1, 2.0, 0.6, [0.3, 0.3]),
    {"kind": "epoch", "epoch": 1, "step": 3, "lr": [0.1, 0.1], "seconds": 1.0,
     "loss": {"ce": 2.5, "triplet": 0.8, "total": 3.3}},
    {"kind": "eval", "epoch": 1, "step": 3, "split": "validation", "mAP": 0.40, "rank1": 0.50},
    step_record(4, 2, 1.5, 0.4, [0.3, 0.3]),
    step_record(5, 2, 1.0, None, [0.3, 0.3]),  # a non-finite value is logged as null
    {"kind": "epoch", "epoch": 2, "step": 5, "lr": [0.3, 0.3], "seconds": 1.0,
     "loss": {"ce": 1.25, "triplet": 0.4, "total": 1.65}},
    {"kind": "eval", "epoch": 2, "step": 5, "split": "validation", "mAP": 0.60, "rank1": 0.70},
    {"kind": "eval", "epoch": 3, "step": 7, "split": "validation", "mAP": 0.55, "rank1": 0.75},
    {"kind": "test", "epoch": 3, "step": 7, "split": "test", "mAP": 0.333, "rank1": 0.44},
]


def test_loss_curves_draw_the_step_records_and_epoch_means() -> None:
    fig = loss_curves_figure(RECORDS)
    ax_loss, ax_lr = fig.axes
    curves = [line for line in ax_loss.get_lines() if line.get_linestyle() == "-"]
    assert [line.get_label() for line in curves] == ["ce", "triplet", "total (weighted sum)"]
    ce, triplet, total = curves
    assert np.array_equal(ce.get_xdata(), [1, 2, 3, 4, 5])
    assert np.array_equal(ce.get_ydata(), [3.0, 2.5, 2.0, 1.5, 1.0])
    assert np.allclose(triplet.get_ydata(), [1.0, 0.8, 0.6, 0.4, np.nan], equal_nan=True)
    dots = [line for line in ax_loss.get_lines() if line.get_marker() == "o"]
    assert len(dots) == 3  # one set of epoch means per term, in the term's colour
    for dot, curve, means in zip(dots, curves, ([2.5, 1.25], [0.8, 0.4], [3.3, 1.65])):
        assert np.array_equal(dot.get_xdata(), [2.0, 4.5])  # middles of steps 1..3 and 4..5
        assert np.array_equal(dot.get_ydata(), means)
        assert to_hex(dot.get_color()) == to_hex(curve.get_color())
    epoch_ends = [line for line in ax_lr.get_lines() if line.get_linestyle() == ":"]
    assert [line.get_xdata()[0] for line in epoch_ends] == [3, 5]
    (lr,) = [line for line in ax_lr.get_lines() if line.get_linestyle() == "-"]
    assert lr.get_label() == "lr (all groups)"
    assert np.array_equal(lr.get_ydata(), [0.1, 0.2, 0.3, 0.3, 0.3])


def test_loss_curves_options_and_errors() -> None:
    fig = loss_curves_figure(RECORDS, terms=["ce_weighted"])
    assert [line.get_label() for line in fig.axes[0].get_lines() if line.get_linestyle() == "-"] == ["ce_weighted"]
    fig = loss_curves_figure(RECORDS, weighted=True)
    labels = [line.get_label() for line in fig.axes[0].get_lines() if line.get_linestyle() == "-"]
    assert labels == ["ce", "ce_weighted", "triplet", "triplet_weighted", "total (weighted sum)"]
    groups = [dict(r, lr=[r["lr"][0], r["lr"][0] * 2]) if r["kind"] == "step" else r for r in RECORDS]
    lr_lines = [line for line in loss_curves_figure(groups).axes[1].get_lines() if line.get_linestyle() == "-"]
    assert [line.get_label() for line in lr_lines] == ["lr group 0", "lr group 1"]
    assert np.array_equal(lr_lines[1].get_ydata(), [0.2, 0.4, 0.6, 0.6, 0.6])
    with pytest.raises(ValueError, match=r"loss term\(s\) \['center'\] not in the log; available: ce, "):
        loss_curves_figure(RECORDS, terms=["ce", "center"])
    with pytest.raises(ValueError, match="no loss terms to draw"):
        loss_curves_figure(RECORDS, terms=[])
    with pytest.raises(ValueError, match=r"no 'step' records.*\['epoch', 'eval', 'test'\]"):
        loss_curves_figure([r for r in RECORDS if r["kind"] != "step"])


def test_validation_figure_keeps_the_test_point_apart() -> None:
    fig = validation_figure(RECORDS)
    (ax,) = fig.axes
    assert ax.get_ylim() == (0.0, 100.0)
    lines = {line.get_label(): line for line in ax.get_lines()}
    assert list(lines) == ["validation mAP", "best validation mAP: epoch 2", "test mAP 33.3% (once, at the end)",
                           "validation rank-1", "test rank-1 44.0% (once, at the end)"]
    val = lines["validation mAP"]
    assert np.array_equal(val.get_xdata(), [1, 2, 3]) and np.allclose(val.get_ydata(), [40.0, 60.0, 55.0])
    best = lines["best validation mAP: epoch 2"]
    assert best.get_xdata()[0] == 2 and best.get_ydata()[0] == pytest.approx(60.0)
    star = lines["test mAP 33.3% (once, at the end)"]
    assert star.get_marker() == "*" and star.get_linestyle() == "None"  # a point, never joined to validation
    assert star.get_xdata()[0] == 3 and star.get_ydata()[0] == pytest.approx(33.3)
    assert to_hex(star.get_color()) == to_hex(val.get_color())
    assert np.allclose(lines["validation rank-1"].get_ydata(), [50.0, 70.0, 75.0])
    only_map = validation_figure([r for r in RECORDS if r["kind"] == "eval"], metrics=["mAP"])
    assert [line.get_label() for line in only_map.axes[0].get_lines()] == ["validation mAP",
                                                                           "best validation mAP: epoch 2"]


def test_validation_figure_errors() -> None:
    with pytest.raises(ValueError, match="no 'eval' records"):
        validation_figure([r for r in RECORDS if r["kind"] != "eval"])
    with pytest.raises(ValueError, match=r"metric 'mINP' missing from the eval records of epochs \[1, 2, 3\]"):
        validation_figure(RECORDS, metrics=["mAP", "mINP"])


def test_figures_read_a_real_resumed_log(tmp_path: Path) -> None:
    """Round trip through RunLog and read_run_log: records of an interrupted run past the resume point are dropped."""
    path = tmp_path / "log.jsonl"
    with RunLog(path) as log:
        for record in RECORDS[:3]:
            log.write(record)
        log.write(step_record(4, 1, 9.0, 9.0, [0.3, 0.3]))  # done again after the resume
        log.write({"kind": "resume", "epoch": 1, "step": 3, "checkpoint": "last.pt"})
        for record in RECORDS[3:]:
            log.write(record)
    records = read_run_log(path)
    (ce,) = [line for line in loss_curves_figure(records, terms=["ce"]).axes[0].get_lines()
             if line.get_linestyle() == "-"]
    assert np.array_equal(ce.get_xdata(), [1, 2, 3, 4, 5]) and ce.get_ydata()[3] == 1.5
    assert len(validation_figure(records).axes[0].get_lines()) == 5
