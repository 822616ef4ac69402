"""Process-wide switches: seeding reproduces every RNG, fast mode parses its variable strictly."""
from __future__ import annotations

import random

import numpy as np
import pytest
import torch

from reidkit.runtime import FAST_ENV, fast_mode, seed_everything


def draws() -> tuple[float, float, list[float]]:
    return random.random(), float(np.random.rand()), torch.rand(3).tolist()


def test_seed_everything_reproduces_python_numpy_and_torch() -> None:
    threads = torch.get_num_threads()
    try:
        seed_everything(3)
        first = draws()
        seed_everything(3)
        assert draws() == first
        seed_everything(4)
        assert draws() != first
    finally:
        torch.set_num_threads(threads)


def test_deterministic_mode_pins_the_numerics() -> None:
    threads = torch.get_num_threads()
    try:
        seed_everything(0, deterministic=True)
        assert torch.are_deterministic_algorithms_enabled()
        assert torch.get_num_threads() == 1
        assert torch.backends.cudnn.deterministic and not torch.backends.cudnn.benchmark
    finally:
        torch.use_deterministic_algorithms(False)
        torch.set_num_threads(threads)


@pytest.mark.parametrize("seed", [-1, 1.5, True, "0"])
def test_bad_seed_is_an_error(seed: object) -> None:
    with pytest.raises(ValueError, match="non-negative int"):
        seed_everything(seed)  # type: ignore[arg-type]


@pytest.mark.parametrize(("raw", "expected"), [("", False), ("0", False), ("no", False), ("1", True), ("TRUE", True)])
def test_fast_mode_values(monkeypatch: pytest.MonkeyPatch, raw: str, expected: bool) -> None:
    monkeypatch.setenv(FAST_ENV, raw)
    assert fast_mode() is expected


def test_fast_mode_rejects_other_values(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(FAST_ENV, "maybe")
    with pytest.raises(ValueError, match="REIDKIT_FAST='maybe'"):
        fast_mode()
