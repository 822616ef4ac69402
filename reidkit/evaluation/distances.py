"""Query x gallery distances computed in torch, in chunks of query rows."""
from __future__ import annotations

import numpy as np
import torch

METRICS = ("euclidean", "cosine")


def pairwise_distance(
    qf: torch.Tensor | np.ndarray,
    gf: torch.Tensor | np.ndarray,
    metric: str = "euclidean",
    chunk_size: int = 1024,
) -> np.ndarray:
    """(Q, G) float32 distance matrix.

    ``"euclidean"`` is the **squared** Euclidean distance ||q||^2 + ||g||^2 - 2 q.g clamped at 0 (the
    convention of torchreid and FastReID; it ranks exactly like the plain Euclidean distance).
    ``"cosine"`` is 1 - cos(q, g) on L2-normalised features.
    """
    if metric not in METRICS:
        raise ValueError(f"metric={metric!r}: valid choices are {METRICS}")
    q = torch.as_tensor(qf, dtype=torch.float32)
    g = torch.as_tensor(gf, dtype=torch.float32)
    if q.ndim != 2 or g.ndim != 2 or q.shape[1] != g.shape[1]:
        raise ValueError(
            f"features must be (Q, D) and (G, D) with the same D, got {tuple(q.shape)} and {tuple(g.shape)}"
        )
    if metric == "cosine":
        q = torch.nn.functional.normalize(q, dim=1)
        g = torch.nn.functional.normalize(g, dim=1)
    g_sq = (g * g).sum(dim=1)
    out = torch.empty(q.shape[0], g.shape[0], dtype=torch.float32)
    for start in range(0, q.shape[0], chunk_size):
        block = q[start : start + chunk_size]
        sim = block @ g.T
        if metric == "cosine":
            out[start : start + chunk_size] = 1.0 - sim
        else:
            sq = (block * block).sum(dim=1, keepdim=True) + g_sq[None, :] - 2.0 * sim
            out[start : start + chunk_size] = sq.clamp_min_(0.0)
    return out.numpy()
