"""Validation and the pieces shared by the NumPy/Numba and the torch paths of the re-ranking."""
from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from numbers import Integral, Real
from typing import Any

import numpy as np
import torch

METRICS = ("euclidean", "cosine")

#: How a block of numbers becomes the squared base distance ``s`` (see ``_kernels._value``).
MODE_SQUARE = 0  # the block holds distances fed to the classic: s = float32(x * x)
MODE_EUCLIDEAN = 1  # the block holds dot products x_i . x_j: base = (|x_i|^2 + |x_j|^2) - 2 x_i . x_j
MODE_COSINE = 2  # the block holds cosine similarities of normalised features: base = 1 - cos
MODE_SQUARED = 3  # the block holds s itself (float64 distances squared in float64, rounded to float32)

#: Extra neighbour candidates kept per row by the matrix path, beyond the k1 + 1 it needs (see
#: ``_finalize_exact``): they let most ties at the list boundary be resolved without a rescan.
MATRIX_MARGIN = 8

#: Default tile edge of the features paths (rows and columns of one block of the N x N distances).
DEFAULT_CHUNK_SIZE = 2048


@dataclass(frozen=True)
class Params:
    """Validated re-ranking parameters and what follows from them."""

    k1: int
    k2: int
    lambda_value: float

    @property
    def list_len(self) -> int:
        """K = k1 + 1: length of the neighbour lists N(i, k1 + 1)."""
        return self.k1 + 1

    @property
    def half(self) -> int:
        """h = int(np.around(k1 / 2)): NumPy rounds half to even (k1 = 21 -> 10, 23 -> 12)."""
        return int(np.around(self.k1 / 2.0))


def _is_int(value: Any) -> bool:
    return isinstance(value, Integral) and not isinstance(value, bool)


def validate_params(k1: Any, k2: Any, lambda_value: Any) -> Params:
    """Check ``k1 >= 1``, ``1 <= k2 <= k1 + 1`` (integers) and ``0 <= lambda_value <= 1``."""
    if not _is_int(k1) or k1 < 1:
        raise ValueError(f"k1 must be an integer >= 1, got {k1!r}")
    if not _is_int(k2) or k2 < 1:
        raise ValueError(f"k2 must be an integer >= 1, got {k2!r}")
    if k2 > k1 + 1:
        raise ValueError(
            f"k2={k2} > k1 + 1 = {k1 + 1}: the query expansion averages over the first k2 neighbours, "
            "which must be a prefix of the k1 + 1 neighbour lists"
        )
    if isinstance(lambda_value, bool) or not isinstance(lambda_value, Real) or not 0.0 <= lambda_value <= 1.0:
        raise ValueError(f"lambda_value must be a number in [0, 1], got {lambda_value!r}")
    return Params(int(k1), int(k2), float(lambda_value))


def check_num_items(num_items: int, k1: int) -> None:
    """The classic needs N > k1 (every list N(i, k1 + 1) has k1 + 1 distinct items)."""
    if num_items <= k1:
        raise ValueError(
            f"re-ranking needs more items than k1: N = queries + gallery = {num_items} <= k1 = {k1}; "
            "lower k1 or add items"
        )


def as_distance_array(value: Any, name: str) -> np.ndarray:
    """``value`` as a 2-D NumPy array (torch tensors on any device accepted), float32 or float64.

    float64 stays float64 (the classic squares float64 input before rounding to float32); every other
    real dtype becomes float32.
    """
    if isinstance(value, torch.Tensor):
        value = value.detach().cpu().numpy()
    arr = np.asarray(value)
    if arr.ndim != 2:
        raise ValueError(f"{name} must be a 2-D distance matrix, got shape {arr.shape}")
    if arr.dtype == np.float64:
        return arr
    if not (np.issubdtype(arr.dtype, np.floating) or np.issubdtype(arr.dtype, np.integer)):
        raise ValueError(f"{name} must hold real distances, got dtype {arr.dtype}")
    return arr.astype(np.float32, copy=False)


def check_matrix_shapes(q_g: np.ndarray, q_q: np.ndarray, g_g: np.ndarray) -> tuple[int, int]:
    """(P, G) after checking q_g (P, G), q_q (P, P), g_g (G, G)."""
    num_q, num_g = q_g.shape
    if q_q.shape != (num_q, num_q):
        raise ValueError(f"q_q_dist must be ({num_q}, {num_q}) to match q_g_dist {q_g.shape}, got {q_q.shape}")
    if g_g.shape != (num_g, num_g):
        raise ValueError(f"g_g_dist must be ({num_g}, {num_g}) to match q_g_dist {q_g.shape}, got {g_g.shape}")
    if num_q == 0 or num_g == 0:
        raise ValueError(f"re-ranking needs at least one query and one gallery item, got q_g_dist {q_g.shape}")
    return num_q, num_g


def check_column_maxima(m: np.ndarray | torch.Tensor) -> None:
    """Every column maximum must be positive and finite (the classic divides by it)."""
    if isinstance(m, torch.Tensor):
        m = m.detach().cpu().numpy()
    bad = np.flatnonzero(~(m > 0) | ~np.isfinite(m))
    if len(bad):
        i = int(bad[0])
        raise ValueError(
            f"{len(bad)} item(s) have no positive finite distance (first: item {i} of the concatenated "
            f"queries + gallery, column maximum {m[i]!r}); the classic normalisation divides by it"
        )


@dataclass(frozen=True)
class Features:
    """Stacked features ``x`` = [queries; gallery] (float32 on one device) and how tiles become distances."""

    x: torch.Tensor
    norms: torch.Tensor  # |x_i|^2 (float32); zeros for cosine
    num_query: int
    mode: int
    square: bool

    @property
    def num_items(self) -> int:
        return int(self.x.shape[0])


def prepare_features(
    qf: Any, gf: Any, metric: str, torchreid_compat: bool, device: torch.device | str | None
) -> Features:
    """Validate and stack the features; L2-normalise them for ``metric="cosine"``."""
    if metric not in METRICS:
        raise ValueError(f"metric={metric!r}: valid choices are {METRICS}")
    q = torch.as_tensor(qf)
    g = torch.as_tensor(gf)
    if q.ndim != 2 or g.ndim != 2 or q.shape[1] != g.shape[1]:
        raise ValueError(
            f"features must be (Q, D) and (G, D) with the same D, got {tuple(q.shape)} and {tuple(g.shape)}"
        )
    if q.shape[0] == 0 or g.shape[0] == 0 or q.shape[1] == 0:
        raise ValueError(f"features must be non-empty, got {tuple(q.shape)} and {tuple(g.shape)}")
    if device is None:
        device = q.device
    x = torch.cat([q.to(device=device, dtype=torch.float32), g.to(device=device, dtype=torch.float32)])
    if not bool(torch.isfinite(x).all()):
        raise ValueError("features contain NaN or infinite values")
    if metric == "cosine":
        x = torch.nn.functional.normalize(x, dim=1)
        norms = torch.zeros(x.shape[0], dtype=torch.float32, device=x.device)
        mode = MODE_COSINE
    else:
        norms = (x * x).sum(dim=1)
        mode = MODE_EUCLIDEAN
    return Features(x.contiguous(), norms.contiguous(), int(q.shape[0]), mode, bool(torchreid_compat))


@contextmanager
def full_float32_matmul() -> Iterator[None]:
    """Inference mode with float32 matmuls at full precision (no TF32 / bf16 even if enabled globally).

    ``torch.set_float32_matmul_precision("high")`` lets CUDA use TF32 (and oneDNN bf16 on some CPUs),
    whose ~1e-3 relative error would reorder neighbours; the setting is restored on exit.
    """
    previous = torch.get_float32_matmul_precision()
    torch.set_float32_matmul_precision("highest")
    try:
        with torch.inference_mode():
            yield
    finally:
        torch.set_float32_matmul_precision(previous)


def check_chunk_size(chunk_size: Any) -> int:
    if not _is_int(chunk_size) or chunk_size < 1:
        raise ValueError(f"chunk_size must be a positive integer, got {chunk_size!r}")
    return int(chunk_size)


def tile_starts(num_items: int, tile: int) -> list[int]:
    """Start indices of the tiles along one axis of the N x N matrix."""
    return list(range(0, num_items, tile))


def feature_tiles(feats: Features, tile: int) -> Iterator[tuple[int, int, torch.Tensor]]:
    """Tiles (r0, c0, block) of the upper block triangle: ``block = x[r0:r0+t] @ x[c0:c0+t].T``, r0 <= c0.

    Each unordered pair of items lies in exactly one tile: off-diagonal tiles serve their rows (item r0 + a,
    neighbour c0 + b) and, transposed, their columns (item c0 + b, neighbour r0 + a); a diagonal tile
    serves its rows only. So the N x N distance matrix is never held, the matmul work is halved, and the
    distances used for a pair (i, j) and for (j, i) are the same float32 number outside diagonal tiles.
    The block is one buffer overwritten by the next tile: consume it before advancing the iterator.
    """
    starts = tile_starts(feats.num_items, tile)
    size = min(tile, feats.num_items)
    buffer = torch.empty(size * size, dtype=torch.float32, device=feats.x.device)  # reused: no page faults
    for r0 in starts:
        rows = feats.x[r0 : r0 + tile]
        for c0 in starts:
            if c0 < r0:
                continue
            cols = feats.x[c0 : c0 + tile]
            block = buffer[: len(rows) * len(cols)].view(len(rows), len(cols))
            yield r0, c0, torch.mm(rows, cols.T, out=block)


def tile_values(block: torch.Tensor, nr: torch.Tensor, nc: torch.Tensor, mode: int, square: bool) -> torch.Tensor:
    """Squared base distances ``s`` of a tile, the same float32 operations as ``_kernels._value``."""
    if mode == MODE_EUCLIDEAN:
        base = (nr[:, None] + nc[None, :]) - 2.0 * block
        base = base.clamp_min_(0.0)
    else:
        base = 1.0 - block
        if not square:
            base = base.clamp_min_(0.0)
    if square:
        return base * base
    return base + 0.0  # turns -0.0 into +0.0


def lambda_weights(lambda_value: float) -> tuple[np.float32, np.float32]:
    """float32(1 - lambda) and float32(lambda), as NumPy rounds the Python floats of the classic blend."""
    return np.float32(1.0 - lambda_value), np.float32(lambda_value)
