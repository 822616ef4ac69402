"""Shared pieces of the re-ID transforms: the random source, argument checks, the composed pipeline.

Randomness design
-----------------
Every random transform is called as ``transform(img, generator=None)`` and draws **only** from
``generator`` (a CPU :class:`torch.Generator`). When ``generator`` is ``None`` it draws from torch's global
RNG, which a ``DataLoader`` seeds per worker (``base_seed + worker_id``), so training needs nothing else.
:class:`Compose` hands the same generator to every step, and :func:`apply_with_seed` seeds a fresh
generator, so ``apply_with_seed(pipeline, img, seed)`` gives the same output for the same seed, every time
and on every machine (the draws are made on the CPU; no Python ``random`` and no NumPy RNG are involved).
"""
from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import torch

Generator = torch.Generator | None

IMAGENET_MEAN: tuple[float, float, float] = (0.485, 0.456, 0.406)
IMAGENET_STD: tuple[float, float, float] = (0.229, 0.224, 0.225)
CIFAR_MEAN: tuple[float, float, float] = (0.4914, 0.4822, 0.4465)


# ---------------------------------------------------------------------------------------------------------
# Draws (all from the explicit generator, or torch's global RNG when it is None)
# ---------------------------------------------------------------------------------------------------------
def rand_uniform(low: float, high: float, generator: Generator = None) -> float:
    """One draw of U(low, high) in float64."""
    u = torch.rand((), generator=generator, dtype=torch.float64).item()
    return low + (high - low) * u


def rand_bool(p: float, generator: Generator = None) -> bool:
    """True with probability ``p`` (``p = 0`` never, ``p = 1`` always: the draw is in [0, 1))."""
    return torch.rand((), generator=generator, dtype=torch.float64).item() < p


def rand_int(low: int, high: int, generator: Generator = None) -> int:
    """A uniform integer in ``[low, high]``, both ends included."""
    if high < low:
        raise ValueError(f"empty integer range [{low}, {high}]")
    return int(torch.randint(low, high + 1, (), generator=generator).item())


# ---------------------------------------------------------------------------------------------------------
# Argument checks with errors that name the value and what was expected
# ---------------------------------------------------------------------------------------------------------
def check_probability(name: str, p: float) -> float:
    if isinstance(p, bool) or not isinstance(p, (int, float)) or math.isnan(p) or not 0.0 <= p <= 1.0:
        raise ValueError(f"{name} must be a probability in [0, 1], got {p!r}")
    return float(p)


def check_positive_int(name: str, value: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return value


def check_non_negative_int(name: str, value: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"{name} must be a non-negative integer, got {value!r}")
    return value


def check_choice(name: str, value: str, choices: Sequence[str]) -> str:
    if value not in choices:
        valid = ", ".join(repr(c) for c in choices)
        raise ValueError(f"{name} must be one of {valid}; got {value!r}")
    return value


def check_scale(name: str, scale: Sequence[float]) -> tuple[float, float]:
    """An area fraction range ``(s_l, s_h)`` with ``0 < s_l <= s_h <= 1``."""
    try:
        low, high = (float(s) for s in scale)
    except (TypeError, ValueError) as err:
        raise ValueError(f"{name} must be a pair (s_l, s_h) of area fractions, got {scale!r}") from err
    if not 0.0 < low <= high <= 1.0:
        raise ValueError(f"{name} must satisfy 0 < s_l <= s_h <= 1, got {scale!r}")
    return low, high


def check_ratio(name: str, ratio: float) -> float:
    """The aspect bound ``r1`` of U(r1, 1/r1): ``0 < r1 <= 1``."""
    if isinstance(ratio, bool) or not isinstance(ratio, (int, float)) or not 0.0 < ratio <= 1.0:
        raise ValueError(f"{name} must be a number in (0, 1] (aspect drawn from U(r1, 1/r1)), got {ratio!r}")
    return float(ratio)


def check_triple(name: str, values: Sequence[float], positive: bool = False) -> tuple[float, ...]:
    """A per-channel triple of floats (e.g. mean, std, fill)."""
    try:
        out = tuple(float(v) for v in values)
    except (TypeError, ValueError) as err:
        raise ValueError(f"{name} must be a sequence of 3 numbers (R, G, B), got {values!r}") from err
    if len(out) != 3:
        raise ValueError(f"{name} must have 3 values (R, G, B), got {len(out)}: {values!r}")
    if positive and any(v <= 0 for v in out):
        raise ValueError(f"{name} must be positive, got {values!r}")
    return out


def fmt_float(x: float) -> str:
    return repr(float(x))


# ---------------------------------------------------------------------------------------------------------
# Base class and pipeline
# ---------------------------------------------------------------------------------------------------------
class Transform:
    """Base of reidkit transforms: ``__call__(img, generator=None)``; deterministic ones ignore the generator."""

    random: bool = False

    def __call__(self, img: Any, generator: Generator = None) -> Any:  # pragma: no cover - abstract
        raise NotImplementedError

    def _params(self) -> dict[str, Any]:
        """Constructor parameters shown by ``__repr__``."""
        return {}

    def __repr__(self) -> str:
        def show(v: Any) -> str:
            if isinstance(v, float):
                return fmt_float(v)
            if isinstance(v, tuple):
                return "(" + ", ".join(show(x) for x in v) + ("," if len(v) == 1 else "") + ")"
            return repr(v)

        args = ", ".join(f"{k}={show(v)}" for k, v in self._params().items())
        return f"{type(self).__name__}({args})"


class Compose(Transform):
    """Apply transforms in order, handing one generator to every reidkit transform.

    Callables that are not :class:`Transform` (e.g. a torchvision transform) are called as ``t(img)``
    and draw from torch's global RNG; :func:`apply_with_seed` still reproduces them by forking and
    seeding the global RNG.
    """

    def __init__(self, transforms: Sequence[Callable[..., Any]]) -> None:
        for t in transforms:
            if not callable(t):
                raise TypeError(f"Compose expects callables, got {t!r}")
        self.transforms: list[Callable[..., Any]] = list(transforms)

    @property
    def random(self) -> bool:  # type: ignore[override]
        return any(getattr(t, "random", True) for t in self.transforms)

    def __call__(self, img: Any, generator: Generator = None) -> Any:
        for t in self.transforms:
            img = t(img, generator=generator) if isinstance(t, Transform) else t(img)
        return img

    def __len__(self) -> int:
        return len(self.transforms)

    def __getitem__(self, index: int) -> Callable[..., Any]:
        return self.transforms[index]

    def __iter__(self) -> Iterator[Callable[..., Any]]:
        return iter(self.transforms)

    @property
    def names(self) -> list[str]:
        """Class names of the steps, in order."""
        return [type(t).__name__ for t in self.transforms]

    def __repr__(self) -> str:
        inner = "".join(f"\n    {t!r}," for t in self.transforms)
        return f"Compose([{inner}\n])"


def apply_with_seed(transform: Callable[..., Any], img: Any, seed: int) -> Any:
    """Apply ``transform`` to ``img`` with all randomness derived from ``seed``: same seed, same output.

    A reidkit :class:`Transform` (or :class:`Compose`) gets a fresh ``torch.Generator`` seeded with ``seed``.
    The call also runs under ``torch.random.fork_rng`` with torch's global CPU generator seeded with ``seed``, so
    foreign steps that use it (e.g. torchvision transforms) are reproduced too, and it is left as it was. CUDA
    generators are neither seeded nor touched (``torch.manual_seed`` would reseed them for good).
    """
    with torch.random.fork_rng(devices=[]):
        torch.default_generator.manual_seed(int(seed))
        if isinstance(transform, Transform):
            return transform(img, generator=torch.Generator().manual_seed(int(seed)))
        return transform(img)
