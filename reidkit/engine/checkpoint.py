"""Training checkpoints: atomic writes, ``weights_only`` loads and RNG state capture.

A checkpoint is a plain dict of tensors and Python primitives (dicts, lists, tuples, numbers, strings, ``None``), so
it loads with ``torch.load(weights_only=True)`` -- no pickled code runs when a checkpoint is opened.

Atomicity: :func:`save_checkpoint` writes to a temporary file in the destination's folder, flushes and ``fsync`` s
it, then ``os.replace`` s it over the destination (atomic on POSIX and Windows within one file system) and
``fsync`` s the folder. A crash at any point leaves either the previous checkpoint or the new one, never a torn
file; the temporary file is removed when the write fails with an exception.
"""
from __future__ import annotations

import os
import random
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from reidkit.atomic_io import write_atomic

__all__ = ["capture_rng_state", "load_checkpoint", "restore_rng_state", "save_checkpoint"]


def capture_rng_state() -> dict[str, Any]:
    """The states of Python's ``random``, NumPy's global generator, torch's CPU generator and every CUDA device's
    generator (when CUDA is initialised), as tensors and plain types (loadable with ``weights_only=True``)."""
    version, internal, gauss_next = random.getstate()
    name, keys, pos, has_gauss, cached = np.random.get_state()
    state: dict[str, Any] = {
        "python": {"version": int(version), "internal": [int(v) for v in internal], "gauss_next": gauss_next},
        "numpy": {
            "name": str(name),
            "keys": torch.from_numpy(np.asarray(keys, dtype=np.int64)),
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "cached_gaussian": float(cached),
        },
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() and torch.cuda.is_initialized() else [],
    }
    return state


def restore_rng_state(state: Mapping[str, Any]) -> None:
    """Restore the generators captured by :func:`capture_rng_state` (CUDA states only if CUDA is available and the
    device count matches; a mismatch is an error rather than a silent partial restore)."""
    py = state["python"]
    random.setstate((py["version"], tuple(int(v) for v in py["internal"]), py["gauss_next"]))
    nps = state["numpy"]
    np.random.set_state((nps["name"], nps["keys"].numpy().astype(np.uint32), nps["pos"], nps["has_gauss"],
                         nps["cached_gaussian"]))
    torch.set_rng_state(state["torch"].cpu())
    cuda_states = list(state.get("cuda", []))
    if cuda_states and torch.cuda.is_available():
        if len(cuda_states) != torch.cuda.device_count():
            raise ValueError(f"checkpoint has CUDA RNG states for {len(cuda_states)} devices, "
                             f"this machine has {torch.cuda.device_count()}")
        torch.cuda.set_rng_state_all([s.cpu() for s in cuda_states])


def save_checkpoint(state: Mapping[str, Any], path: str | os.PathLike[str]) -> Path:
    """Write ``state`` to ``path`` atomically (temp file in the same folder, ``fsync``, ``os.replace``).

    Returns the path. The folder is created if needed. On any exception the temporary file is deleted and the
    previous file at ``path`` (if any) is left untouched.
    """
    return write_atomic(path, lambda handle: torch.save(dict(state), handle), binary=True)


def load_checkpoint(path: str | os.PathLike[str], map_location: str | torch.device | None = "cpu") -> dict[str, Any]:
    """Load a checkpoint written by :func:`save_checkpoint` with ``torch.load(weights_only=True)``.

    Raises ``FileNotFoundError`` naming the path when it does not exist.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    state = torch.load(path, map_location=map_location, weights_only=True)
    if not isinstance(state, dict):
        raise ValueError(f"{path} is not a reidkit checkpoint (a dict), got {type(state).__name__}")
    return state
