"""Schedulers against their closed forms (components.md §8), resume, validation, build_scheduler."""

from __future__ import annotations

import math

import pytest
import torch

from reidkit.engine.schedulers import (
    LightMBNCosineLR,
    WarmupCosineAnnealingLR,
    WarmupMultiStepLR,
    build_scheduler,
)

BASES = (3.5e-4, 1e-2)


def make_optimizer(bases: tuple[float, ...] = BASES) -> torch.optim.Optimizer:
    groups = [{"params": [torch.nn.Parameter(torch.zeros(2))], "lr": b} for b in bases]
    return torch.optim.SGD(groups, lr=bases[0])


def run(sched_factory, steps: int, bases: tuple[float, ...] = BASES) -> list[list[float]]:
    """The lr of every group used at t = 0 .. steps-1 (read before each step, as a training loop sees it)."""
    opt = make_optimizer(bases)
    sched = sched_factory(opt)
    seen = []
    for _ in range(steps):
        seen.append([g["lr"] for g in opt.param_groups])
        opt.step()
        sched.step()
    return seen


# -- plain closed forms, written independently of the implementation ------------------------------------------
def warm(t, f, W, method):
    if t >= W:
        return 1.0
    return f if method == "constant" else f + (1 - f) * t / W


def multistep_ref(base, t, milestones, gamma, f, W, method):
    n = sum(1 for m in milestones if m <= t)
    return base * warm(t, f, W, method) * gamma ** n


def cosine_ref(base, t, M, W, f, D, eta, method):
    if t <= W:
        return base * warm(t, f, W, method)
    if t <= D:
        return base
    if t <= M:
        return eta + (base - eta) * (1 + math.cos(math.pi * (t - D) / (M - D))) / 2
    return eta


def lmbn_ref(base, e, E, W=10, factor=1e-3):
    eta = base * factor
    if e < W:
        return base * (e + 1) / W
    if e > E - 1:
        return eta
    return eta + (base - eta) * (1 + math.cos(math.pi * (e - W) / (E - W - 1))) / 2


@pytest.mark.parametrize("milestones,gamma,f,W,method", [
    ([40, 70], 0.1, 0.01, 10, "linear"),      # BoT
    ([40, 90], 0.1, 0.1, 20, "linear"),       # FastReID BoT steps, f 0.1
    ([5, 6, 30], 0.5, 0.3, 7, "constant"),
    ([3], 0.1, 0.01, 0, "linear"),            # no warm-up
])
def test_multistep_closed_form(milestones, gamma, f, W, method):
    seen = run(lambda o: WarmupMultiStepLR(o, milestones, gamma, f, W, method), 120)
    for t, lrs in enumerate(seen):
        for base, lr in zip(BASES, lrs):
            assert lr == pytest.approx(multistep_ref(base, t, milestones, gamma, f, W, method), rel=1e-12, abs=0)


@pytest.mark.parametrize("M,W,f,D,eta,method", [
    (150, 10, 0.01, 30, 6e-7, "linear"),      # recipe A
    (150, 10, 0.01, 30, 7e-7, "linear"),      # recipe B
    (50, 5, 0.2, 5, 0.0, "constant"),         # D = W: no flat phase
    (40, 0, 0.01, 10, 1e-5, "linear"),        # no warm-up, delay only
])
def test_cosine_closed_form(M, W, f, D, eta, method):
    seen = run(lambda o: WarmupCosineAnnealingLR(o, M, W, f, D, eta, method), M + 10)
    for t, lrs in enumerate(seen):
        for base, lr in zip(BASES, lrs):
            assert lr == pytest.approx(cosine_ref(base, t, M, W, f, D, eta, method), rel=1e-12, abs=1e-18)
    # landmarks: warm-up start, plateau, floor
    assert seen[0][0] == pytest.approx(BASES[0] * (f if W else 1.0))
    assert seen[D][0] == pytest.approx(BASES[0])
    assert seen[M][0] == pytest.approx(eta, abs=1e-18)


@pytest.mark.parametrize("E,W,factor", [(130, 10, 1e-3), (20, 3, 0.01)])
def test_lightmbn_closed_form(E, W, factor):
    seen = run(lambda o: LightMBNCosineLR(o, E, W, factor), E + 3)
    for e, lrs in enumerate(seen):
        for base, lr in zip(BASES, lrs):
            assert lr == pytest.approx(lmbn_ref(base, e, E, W, factor), rel=1e-12)
    assert seen[W - 1][0] == pytest.approx(BASES[0])
    assert seen[E - 1][0] == pytest.approx(BASES[0] * factor)


@pytest.mark.parametrize("factory", [
    lambda o: WarmupMultiStepLR(o, [7, 13], 0.1, 0.01, 5),
    lambda o: WarmupCosineAnnealingLR(o, 30, 5, 0.01, 10, 1e-6),
    lambda o: LightMBNCosineLR(o, 25, 4),
])
def test_resume_from_state_dict_equals_uninterrupted(factory):
    total, cut = 35, 12
    reference = run(factory, total)

    opt = make_optimizer()
    sched = factory(opt)
    first = []
    for _ in range(cut):
        first.append([g["lr"] for g in opt.param_groups])
        opt.step()
        sched.step()
    opt_state, sched_state = opt.state_dict(), sched.state_dict()

    # a fresh process: new optimiser with the original lrs, then load both states
    opt2 = make_optimizer()
    sched2 = factory(opt2)
    opt2.load_state_dict(opt_state)
    sched2.load_state_dict(sched_state)
    rest = []
    for _ in range(total - cut):
        rest.append([g["lr"] for g in opt2.param_groups])
        opt2.step()
        sched2.step()
    assert first + rest == reference


@pytest.mark.parametrize("kwargs,match", [
    ({"milestones": [70, 40]}, "strictly increasing"),
    ({"milestones": [40, 40]}, "strictly increasing"),
    ({"milestones": [0, 4]}, "milestone"),
    ({"milestones": "40"}, "list"),
    ({"milestones": [40], "gamma": 0}, "gamma"),
    ({"milestones": [40], "warmup": "cosine"}, "linear, constant"),
    ({"milestones": [40], "warmup_factor": 1.5}, "warmup_factor"),
    ({"milestones": [40], "warmup_steps": -1}, "warmup_steps"),
    ({"milestones": [40], "warmup_steps": 2.5}, "warmup_steps"),
])
def test_multistep_validation(kwargs, match):
    with pytest.raises(ValueError, match=match):
        WarmupMultiStepLR(make_optimizer(), **kwargs)


@pytest.mark.parametrize("kwargs,match", [
    ({"max_steps": 150, "warmup_steps": 10, "delay_steps": 5}, "must be >= warmup_steps"),
    ({"max_steps": 30, "warmup_steps": 10, "delay_steps": 30}, "must be > delay_steps"),
    ({"max_steps": 150, "eta_min": -1.0}, "eta_min"),
    ({"max_steps": 0}, "max_steps"),
    ({"max_steps": 150, "warmup": "exp"}, "linear, constant"),
])
def test_cosine_validation(kwargs, match):
    with pytest.raises(ValueError, match=match):
        WarmupCosineAnnealingLR(make_optimizer(), **kwargs)


def test_lightmbn_validation():
    with pytest.raises(ValueError, match="warmup_steps"):
        LightMBNCosineLR(make_optimizer(), 130, warmup_steps=0)
    with pytest.raises(ValueError, match=r"max_steps"):
        LightMBNCosineLR(make_optimizer(), 11, warmup_steps=10)


def test_build_scheduler_per_epoch_and_per_iter():
    cfg = {"name": "warmup_cosine", "warmup_epochs": 2, "delay_epochs": 3, "max_epochs": 6, "eta_min": 1e-7}
    s = build_scheduler(cfg, make_optimizer(), iters_per_epoch=100)
    assert isinstance(s, WarmupCosineAnnealingLR)
    assert (s.warmup_steps, s.delay_steps, s.max_steps) == (2, 3, 6)
    s = build_scheduler({**cfg, "per_iter": True}, make_optimizer(), iters_per_epoch=100)
    assert (s.warmup_steps, s.delay_steps, s.max_steps) == (200, 300, 600)
    s = build_scheduler({**cfg, "per_iter": True, "warmup_iters": 50}, make_optimizer(), iters_per_epoch=100)
    assert (s.warmup_steps, s.delay_steps) == (50, 300)

    s = build_scheduler({"name": "warmup_multistep", "milestones": [4, 7], "per_iter": True}, make_optimizer(), 10)
    assert s.milestones == [40, 70] and s.warmup_steps == 100

    whole = {"schedule": {"name": "lightmbn_cosine"}, "train": {"epochs": 130}}
    s = build_scheduler(whole, make_optimizer())
    assert isinstance(s, LightMBNCosineLR) and s.max_steps == 130


def test_build_scheduler_errors():
    with pytest.raises(ValueError, match="valid names: warmup_multistep, warmup_cosine, lightmbn_cosine"):
        build_scheduler({"name": "step"}, make_optimizer())
    with pytest.raises(ValueError, match="valid keys"):
        build_scheduler({"nmae": "warmup_cosine"}, make_optimizer())
    with pytest.raises(ValueError, match="max_epochs"):
        build_scheduler({"name": "warmup_cosine"}, make_optimizer())
    with pytest.raises(ValueError, match="per_iter"):
        build_scheduler({"warmup_iters": 2000}, make_optimizer())
