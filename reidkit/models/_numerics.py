"""Precision helpers shared by the numerically delicate model components.

Rule (components reference §0): GeM's ``pow``, softmax over large affinities, cosine/margin heads and ``acos``
run in float32 even under autocast. These helpers give one way to do that: leave the autocast region for the
tensor's device and compute in ``float32`` (or ``float64`` when the inputs already are, e.g. for gradcheck).
"""
from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch


def compute_dtype(*tensors: torch.Tensor) -> torch.dtype:
    """The dtype for a delicate computation: float32, or float64 when any input is float64."""
    dtype = torch.float32
    for t in tensors:
        dtype = torch.promote_types(dtype, t.dtype)
    return dtype


@contextlib.contextmanager
def autocast_disabled(device_type: str) -> Iterator[None]:
    """A region where autocast is off for ``device_type`` (a no-op for devices without autocast, e.g. ``meta``)."""
    is_available = getattr(torch.amp, "is_autocast_available", None)  # torch >= 2.4
    if is_available(device_type) if is_available is not None else device_type in ("cpu", "cuda"):
        with torch.autocast(device_type=device_type, enabled=False):
            yield
    else:
        yield
