"""Warm-up learning-rate schedulers with closed forms (``components.md`` §8).

Every scheduler here computes the learning rate of each parameter group **directly** from its closed form
``lr(t)``, where ``t`` is the number of completed :meth:`step` calls (``t = 0`` right after construction). Nothing is
accumulated multiplicatively, so a run resumed from :meth:`state_dict` continues exactly, and the value at any ``t``
equals the formula to floating-point precision.

Unit of ``t``: the caller's choice. Call ``step()`` once per iteration (``per_iter: true`` in the ``schedule``
config; warm-up per iteration avoids coarse first epochs) or once per epoch after the epoch (``per_iter: false``;
the seed's and BoT's convention: epoch ``e`` (1-based) trains with ``t = e - 1``). :func:`build_scheduler` converts
the config's epoch counts to iterations when ``per_iter`` is set.

Warm-up factor (``f`` = ``warmup_factor``, ``W`` = ``warmup_steps``)::

    linear:   w(t) = f + (1 - f) * t / W   for t < W
    constant: w(t) = f                     for t < W
              w(t) = 1                     for t >= W

* :class:`WarmupMultiStepLR` (BoT, Luo et al. 2019, arXiv 1903.07071):
  ``lr(t) = base * w(t) * gamma ** (number of milestones <= t)``.
* :class:`WarmupCosineAnnealingLR` (FastReID-style, with a flat delay ``D`` and cosine to the floor ``eta`` at ``M``):
  ``t <= W: base * w(t)``; ``W < t <= D: base``;
  ``D < t <= M: eta + (base - eta) * (1 + cos(pi * (t - D) / (M - D))) / 2``; ``t > M: eta``.
* :class:`LightMBNCosineLR` (Herzog et al., ICIP 2021, ``jixunbo/LightMBN``):
  ``t < W: base * (t + 1) / W``; ``t >= W: eta + (base - eta) * (1 + cos(pi * (t - W) / (E - W - 1))) / 2`` with
  ``eta = base * eta_min_factor`` (LMBN: 1/1000); held at ``eta`` for ``t > E - 1`` (LMBN never steps that far).
"""

from __future__ import annotations

import bisect
import math
import numbers
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch.optim.lr_scheduler import LRScheduler

__all__ = [
    "LightMBNCosineLR",
    "SCHEDULERS",
    "WARMUP_METHODS",
    "WarmupCosineAnnealingLR",
    "WarmupMultiStepLR",
    "build_scheduler",
    "warmup_factor_at",
]

WARMUP_METHODS: tuple[str, ...] = ("linear", "constant")


def _is_int(value: object) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _is_number(value: object) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(float(value))


def _check_int(name: str, value: object, minimum: int) -> int:
    if not _is_int(value) or int(value) < minimum:  # type: ignore[call-overload]
        raise ValueError(f"{name} must be an int >= {minimum}, got {value!r}")
    return int(value)  # type: ignore[call-overload]


def _check_warmup(method: object, factor: object, steps: object) -> tuple[str, float, int]:
    if method not in WARMUP_METHODS:
        raise ValueError(f"warmup must be one of {', '.join(WARMUP_METHODS)}, got {method!r}")
    if not _is_number(factor) or not 0.0 <= float(factor) <= 1.0:  # type: ignore[arg-type]
        raise ValueError(f"warmup_factor must be a number in [0, 1], got {factor!r}")
    return str(method), float(factor), _check_int("warmup_steps", steps, 0)  # type: ignore[arg-type]


def warmup_factor_at(t: int, method: str, factor: float, steps: int) -> float:
    """The warm-up multiplier w(t) of §8: ``f + (1 - f) t / W`` (linear) or ``f`` (constant) for ``t < W``, else 1."""
    if t >= steps:
        return 1.0
    if method == "constant":
        return factor
    if method == "linear":
        return factor + (1.0 - factor) * t / steps
    raise ValueError(f"warmup must be one of {', '.join(WARMUP_METHODS)}, got {method!r}")


class _ClosedFormLR(LRScheduler):
    """Base: ``get_lr`` evaluates :meth:`lr_at` at ``t = last_epoch`` for each group's base lr (no chaining)."""

    def lr_at(self, base_lr: float, t: int) -> float:  # pragma: no cover - abstract
        raise NotImplementedError

    def get_lr(self) -> list[float]:  # type: ignore[override]
        t = self.last_epoch
        return [self.lr_at(float(base), t) for base in self.base_lrs]

    def _get_closed_form_lr(self) -> list[float]:
        return self.get_lr()


class WarmupMultiStepLR(_ClosedFormLR):
    """BoT's warm-up multi-step schedule: ``lr(t) = base * w(t) * gamma ** bisect_right(milestones, t)``.

    Args:
        optimizer: the wrapped optimiser; each group's ``lr`` at construction is its base lr.
        milestones: strictly increasing positive step counts (BoT [40, 70] epochs; FastReID BoT [40, 90]).
        gamma: decay per milestone (0.1), > 0.
        warmup_factor: f in [0, 1] (0.01).
        warmup_steps: W >= 0 (10 epochs; 0 disables warm-up).
        warmup: ``"linear"`` or ``"constant"``.
        last_epoch: ``-1`` for a fresh run (use :meth:`load_state_dict` to resume).

    ``t`` counts completed ``step()`` calls, in the caller's unit (iterations or epochs; see the module docstring).
    """

    def __init__(self, optimizer: torch.optim.Optimizer, milestones: Sequence[int], gamma: float = 0.1,
                 warmup_factor: float = 0.01, warmup_steps: int = 10, warmup: str = "linear",
                 last_epoch: int = -1) -> None:
        if isinstance(milestones, (str, bytes)) or not isinstance(milestones, Sequence):
            raise ValueError(f"milestones must be a list of ints, got {milestones!r}")
        ms = [_check_int("each milestone", m, 1) for m in milestones]
        if any(b <= a for a, b in zip(ms, ms[1:])):
            raise ValueError(f"milestones must be strictly increasing, got {list(milestones)}")
        if not _is_number(gamma) or float(gamma) <= 0:
            raise ValueError(f"gamma must be a number > 0, got {gamma!r}")
        self.milestones = ms
        self.gamma = float(gamma)
        self.warmup, self.warmup_factor, self.warmup_steps = _check_warmup(warmup, warmup_factor, warmup_steps)
        super().__init__(optimizer, last_epoch)

    def lr_at(self, base_lr: float, t: int) -> float:
        """The closed form at step ``t`` for a group whose base lr is ``base_lr``."""
        w = warmup_factor_at(t, self.warmup, self.warmup_factor, self.warmup_steps)
        return base_lr * w * self.gamma ** bisect.bisect_right(self.milestones, t)


class WarmupCosineAnnealingLR(_ClosedFormLR):
    """Warm-up, a flat delay, then cosine annealing to a floor (FastReID-style; the seed's recipes A and B).

    ``t <= W: base * w(t)``; ``W < t <= D: base``; ``D < t <= M: eta + (base - eta)(1 + cos(pi (t - D)/(M - D)))/2``;
    ``t > M: eta``.

    Args:
        optimizer: the wrapped optimiser.
        max_steps: M, the step at which the floor is reached (> ``delay_steps``).
        warmup_steps: W >= 0 (seed: 10 epochs).
        warmup_factor: f in [0, 1] (seed: 0.01).
        delay_steps: D >= W, end of the flat phase (seed: 30 epochs). ``None`` means D = W (no delay).
        eta_min: the floor eta >= 0 (seed: 6e-7 recipe A, 7e-7 recipe B).
        warmup: ``"linear"`` or ``"constant"``.
        last_epoch: ``-1`` for a fresh run.
    """

    def __init__(self, optimizer: torch.optim.Optimizer, max_steps: int, warmup_steps: int = 10,
                 warmup_factor: float = 0.01, delay_steps: int | None = None, eta_min: float = 0.0,
                 warmup: str = "linear", last_epoch: int = -1) -> None:
        self.warmup, self.warmup_factor, self.warmup_steps = _check_warmup(warmup, warmup_factor, warmup_steps)
        delay = self.warmup_steps if delay_steps is None else _check_int("delay_steps", delay_steps, 0)
        if delay < self.warmup_steps:
            raise ValueError(f"delay_steps (D = {delay}) must be >= warmup_steps (W = {self.warmup_steps})")
        max_steps = _check_int("max_steps", max_steps, 1)
        if max_steps <= delay:
            raise ValueError(f"max_steps (M = {max_steps}) must be > delay_steps (D = {delay})")
        if not _is_number(eta_min) or float(eta_min) < 0:
            raise ValueError(f"eta_min must be a number >= 0, got {eta_min!r}")
        self.delay_steps = delay
        self.max_steps = max_steps
        self.eta_min = float(eta_min)
        super().__init__(optimizer, last_epoch)

    def lr_at(self, base_lr: float, t: int) -> float:
        """The closed form at step ``t`` for a group whose base lr is ``base_lr``."""
        if t <= self.warmup_steps:
            return base_lr * warmup_factor_at(t, self.warmup, self.warmup_factor, self.warmup_steps)
        if t <= self.delay_steps:
            return base_lr
        if t <= self.max_steps:
            progress = (t - self.delay_steps) / (self.max_steps - self.delay_steps)
            return self.eta_min + (base_lr - self.eta_min) * (1.0 + math.cos(math.pi * progress)) / 2.0
        return self.eta_min


class LightMBNCosineLR(_ClosedFormLR):
    """LightMBN's own warm-up cosine (``jixunbo/LightMBN``; ``components.md`` §8), stepped per epoch there.

    ``t < W: base * (t + 1) / W``; ``W <= t <= E - 1: eta + (base - eta)(1 + cos(pi (t - W)/(E - W - 1)))/2`` with
    ``eta = base * eta_min_factor``; ``t > E - 1``: eta (an extension: LMBN never steps beyond its last epoch).

    Args:
        optimizer: the wrapped optimiser.
        max_steps: E, the number of epochs (LMBN 130); needs E - W - 1 >= 1.
        warmup_steps: W >= 1 (LMBN 10).
        eta_min_factor: eta / base (LMBN 1e-3).
        last_epoch: ``-1`` for a fresh run.
    """

    def __init__(self, optimizer: torch.optim.Optimizer, max_steps: int, warmup_steps: int = 10,
                 eta_min_factor: float = 1e-3, last_epoch: int = -1) -> None:
        self.warmup_steps = _check_int("warmup_steps", warmup_steps, 1)
        self.max_steps = _check_int("max_steps", max_steps, 1)
        if self.max_steps - self.warmup_steps - 1 < 1:
            raise ValueError(f"max_steps (E = {max_steps}) must be >= warmup_steps + 2 (W = {warmup_steps})")
        if not _is_number(eta_min_factor) or not 0.0 <= float(eta_min_factor) <= 1.0:
            raise ValueError(f"eta_min_factor must be a number in [0, 1], got {eta_min_factor!r}")
        self.eta_min_factor = float(eta_min_factor)
        super().__init__(optimizer, last_epoch)

    def lr_at(self, base_lr: float, t: int) -> float:
        """The closed form at step ``t`` for a group whose base lr is ``base_lr``."""
        if t < self.warmup_steps:
            return base_lr * (t + 1) / self.warmup_steps
        eta = base_lr * self.eta_min_factor
        span = self.max_steps - self.warmup_steps - 1
        if t - self.warmup_steps > span:
            return eta
        return eta + (base_lr - eta) * (1.0 + math.cos(math.pi * (t - self.warmup_steps) / span)) / 2.0


SCHEDULERS: dict[str, type[_ClosedFormLR]] = {
    "warmup_multistep": WarmupMultiStepLR,
    "warmup_cosine": WarmupCosineAnnealingLR,
    "lightmbn_cosine": LightMBNCosineLR,
}
"""Scheduler names accepted by ``schedule.name``."""

SCHEDULE_DEFAULTS: dict[str, Any] = {
    "name": "warmup_multistep",
    "per_iter": False,
    "warmup": "linear",
    "warmup_factor": 0.01,
    "warmup_epochs": 10,
    "warmup_iters": None,
    "delay_epochs": None,
    "max_epochs": None,
    "milestones": [40, 70],
    "gamma": 0.1,
    "eta_min": 0.0,
    "eta_min_factor": 1e-3,
}
"""Keys of the ``schedule`` config subtree and their defaults (BoT's WarmupMultiStep, per epoch). Lengths are in
epochs; ``delay_epochs: null`` means no flat phase (D = W); ``warmup_iters`` (only with ``per_iter: true``) overrides
the warm-up length in iterations (FastReID: 2000); ``max_epochs: null`` means ``train.epochs``."""


def build_scheduler(cfg: Mapping[str, Any], optimizer: torch.optim.Optimizer,
                    iters_per_epoch: int = 1) -> _ClosedFormLR:
    """The scheduler of the ``schedule`` config subtree (or of a whole config holding one).

    Epoch counts in the config (``warmup_epochs``, ``delay_epochs``, ``max_epochs``, ``milestones``) are multiplied by
    ``iters_per_epoch`` when ``per_iter`` is true, so the caller steps once per iteration; otherwise the caller steps
    once per epoch after it. ``max_epochs: null`` falls back to ``train.epochs`` when a whole config is given.
    """
    train_epochs = None
    if "schedule" in cfg:
        train_epochs = (cfg.get("train") or {}).get("epochs")
        cfg = cfg["schedule"]
    unknown = sorted(set(cfg) - set(SCHEDULE_DEFAULTS))
    if unknown:
        raise ValueError(f"unknown schedule key(s) {unknown}; valid keys: {', '.join(SCHEDULE_DEFAULTS)}")
    c = {**SCHEDULE_DEFAULTS, **cfg}
    if c["name"] not in SCHEDULERS:
        raise ValueError(f"schedule.name: unknown scheduler {c['name']!r}; valid names: {', '.join(SCHEDULERS)}")
    if not isinstance(c["per_iter"], bool):
        raise ValueError(f"schedule.per_iter must be true or false, got {c['per_iter']!r}")
    ipe = _check_int("iters_per_epoch", iters_per_epoch, 1) if c["per_iter"] else 1
    max_epochs = c["max_epochs"] if c["max_epochs"] is not None else train_epochs

    def steps(name: str, epochs: object) -> int:
        return _check_int(f"schedule.{name}", epochs, 0) * ipe

    warmup_steps = steps("warmup_epochs", c["warmup_epochs"])
    if c["warmup_iters"] is not None:
        if not c["per_iter"]:
            raise ValueError("schedule.warmup_iters needs per_iter: true (with per-epoch steps use warmup_epochs)")
        warmup_steps = _check_int("schedule.warmup_iters", c["warmup_iters"], 0)
    name = c["name"]
    if name == "warmup_multistep":
        ms = c["milestones"]
        if isinstance(ms, (str, bytes)) or not isinstance(ms, Sequence):
            raise ValueError(f"schedule.milestones must be a list of epochs, got {ms!r}")
        return WarmupMultiStepLR(optimizer, [steps("milestones", m) for m in ms], gamma=c["gamma"],
                                 warmup_factor=c["warmup_factor"], warmup_steps=warmup_steps, warmup=c["warmup"])
    if max_epochs is None:
        raise ValueError(f"schedule {name!r} needs schedule.max_epochs (or train.epochs in a whole config)")
    if name == "warmup_cosine":
        delay = None if c["delay_epochs"] is None else steps("delay_epochs", c["delay_epochs"])  # None: D = W
        return WarmupCosineAnnealingLR(optimizer, steps("max_epochs", max_epochs), warmup_steps=warmup_steps,
                                       warmup_factor=c["warmup_factor"], delay_steps=delay, eta_min=c["eta_min"],
                                       warmup=c["warmup"])
    return LightMBNCosineLR(optimizer, steps("max_epochs", max_epochs), warmup_steps=warmup_steps,
                            eta_min_factor=c["eta_min_factor"])
