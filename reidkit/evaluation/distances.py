"""Query x gallery distances computed in torch, in chunks of query rows (``evaluation.md`` §2.9).

* ``"euclidean"``: the **squared** Euclidean distance ||q||^2 + ||g||^2 - 2 q.g, clamped at 0 (the
  convention of torchreid and FastReID; it ranks exactly like the plain Euclidean distance);
* ``"cosine"``: 1 - cos(q, g), i.e. 1 - q.g on L2-normalised features.

:func:`distance_chunks` yields one block of rows at a time, so a caller that only needs per-query
results (``evaluate_features``) never holds the whole Q x G matrix; :func:`pairwise_distance` fills
the dense matrix from the same blocks, so both give bit-identical distances for the same chunk size.
Float32 matmul results vary in the last bits with the BLAS, the thread count and the block shape, so
near-ties can flip between machines (and between chunk sizes).
"""
from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import torch

METRICS = ("euclidean", "cosine")


def as_feature_tensor(name: str, features: Any) -> torch.Tensor:
    """``features`` (torch or NumPy, (N, D)) as a detached float32 tensor on its own device."""
    if isinstance(features, torch.Tensor):
        tensor = features.detach()
    else:
        arr = np.asarray(features)
        if not (np.issubdtype(arr.dtype, np.floating) or np.issubdtype(arr.dtype, np.integer)):
            raise ValueError(f"{name} must hold real numbers, got dtype {arr.dtype}")
        tensor = torch.from_numpy(np.ascontiguousarray(arr))
    if tensor.ndim != 2:
        raise ValueError(f"{name} must be 2-D (N, D) features, got shape {tuple(tensor.shape)}")
    return tensor.to(torch.float32)


def _prepare(
    qf: Any, gf: Any, metric: str, device: torch.device | str | None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """Validated (q, g) on the compute device (normalised for cosine) and ||g||^2 for euclidean."""
    if metric not in METRICS:
        raise ValueError(f"metric={metric!r}: valid choices are {METRICS}")
    q = as_feature_tensor("qf", qf)
    g = as_feature_tensor("gf", gf)
    if q.shape[1] != g.shape[1]:
        raise ValueError(
            f"features must be (Q, D) and (G, D) with the same D, got {tuple(q.shape)} and {tuple(g.shape)}"
        )
    target = torch.device(device) if device is not None else q.device
    q, g = q.to(target), g.to(target)
    if metric == "cosine":
        return torch.nn.functional.normalize(q, dim=1), torch.nn.functional.normalize(g, dim=1), None
    return q, g, (g * g).sum(dim=1)


def _check_chunk_size(chunk_size: int) -> int:
    if isinstance(chunk_size, bool) or not isinstance(chunk_size, (int, np.integer)) or chunk_size < 1:
        raise ValueError(f"chunk_size must be a positive integer (query rows per block), got {chunk_size!r}")
    return int(chunk_size)


def distance_chunks(
    qf: Any,
    gf: Any,
    metric: str = "euclidean",
    chunk_size: int = 1024,
    device: torch.device | str | None = None,
) -> Iterator[tuple[int, np.ndarray]]:
    """Yield ``(start, block)``: float32 NumPy distances of query rows ``start:start + len(block)``.

    Computed in torch on ``device`` (default: the device of ``qf``); each block is ``chunk_size x G``
    float32 (a 256 x 515,913 block is 0.5 GB). The block's memory is reused for the next block, so
    consume (or copy) it before advancing the iterator.
    """
    chunk_size = _check_chunk_size(chunk_size)
    with torch.no_grad():
        q, g, g_sq = _prepare(qf, gf, metric, device)
        buffer: torch.Tensor | None = None
        for start in range(0, q.shape[0], chunk_size):
            block = q[start : start + chunk_size]
            if g_sq is None:
                sim = torch.matmul(block, g.T, out=_rows(buffer, block, g))
                out = sim.neg_().add_(1.0)  # 1 - cos
            else:
                # ||q||^2 + ||g||^2 first, then -2 q.g accumulated onto it by the GEMM (alpha=-2 is exact).
                base = torch.add((block * block).sum(dim=1, keepdim=True), g_sq[None, :], out=_rows(buffer, block, g))
                out = base.addmm_(block, g.T, alpha=-2.0).clamp_min_(0.0)
            buffer = out if buffer is None else buffer
            yield start, out.cpu().numpy()


def _rows(buffer: torch.Tensor | None, block: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    """The first ``len(block)`` rows of the reusable output buffer (allocated on first use)."""
    if buffer is None:
        return torch.empty(block.shape[0], g.shape[0], dtype=torch.float32, device=g.device)
    return buffer[: block.shape[0]]


def pairwise_distance(
    qf: Any,
    gf: Any,
    metric: str = "euclidean",
    chunk_size: int = 1024,
) -> np.ndarray:
    """(Q, G) float32 NumPy distance matrix of query features ``qf`` (Q, D) and gallery ``gf`` (G, D).

    ``"euclidean"`` is the **squared** Euclidean distance ||q||^2 + ||g||^2 - 2 q.g clamped at 0 (the
    convention of torchreid and FastReID; it ranks exactly like the plain Euclidean distance).
    ``"cosine"`` is 1 - cos(q, g) on L2-normalised features. Inputs may be torch tensors (any device;
    computed there, gradients not tracked) or NumPy arrays; computed in blocks of ``chunk_size`` rows.
    """
    q = as_feature_tensor("qf", qf)
    g = as_feature_tensor("gf", gf)
    out = np.empty((q.shape[0], g.shape[0]), dtype=np.float32)
    for start, block in distance_chunks(q, g, metric, chunk_size):
        out[start : start + block.shape[0]] = block
    return out
