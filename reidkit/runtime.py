"""Process-wide switches: seeding for reproducible runs and the CI "fast mode".

Notebooks and tests call :func:`seed_everything` once at the top; code that must shrink itself for
continuous integration asks :func:`fast_mode` (the ``REIDKIT_FAST`` environment variable).
"""
from __future__ import annotations

import os
import random

import numpy as np
import torch

FAST_ENV = "REIDKIT_FAST"


def fast_mode() -> bool:
    """True when ``REIDKIT_FAST`` is set to a true value (``1``, ``true``, ``yes``).

    Notebooks and the demo use it to shrink epochs and image counts so each runs in well under two
    minutes on a 2-core CPU. Any other non-empty value is an error rather than silently false.
    """
    raw = os.environ.get(FAST_ENV, "").strip().lower()
    if raw in ("", "0", "false", "no"):
        return False
    if raw in ("1", "true", "yes"):
        return True
    raise ValueError(f"{FAST_ENV}={raw!r}: expected one of 1/true/yes or 0/false/no (or unset)")


def seed_everything(seed: int, deterministic: bool = False) -> None:
    """Seed Python, NumPy and torch; in deterministic mode also pin the numerics.

    Deterministic mode calls ``torch.use_deterministic_algorithms(True)``, turns cuDNN benchmarking
    off and uses one CPU thread, so that reductions split the same way on a 2-core CI runner and a
    16-core laptop (PyTorch promises reproducibility only per platform, device and release). It also
    sets ``CUBLAS_WORKSPACE_CONFIG`` if it is unset, which cuBLAS needs for deterministic GEMMs.

    Returns nothing, so that a notebook cell ending with this call shows no output; code that wants an
    explicit generator makes one (``torch.Generator().manual_seed(seed)``) and passes it on.
    """
    if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
        raise ValueError(f"seed must be a non-negative int, got {seed!r}")
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True)
        torch.backends.cudnn.benchmark = False
        torch.backends.cudnn.deterministic = True
        torch.set_num_threads(1)


def default_device() -> torch.device:
    """CUDA when available, else CPU."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")
