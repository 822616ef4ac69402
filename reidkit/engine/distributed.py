"""Data-parallel training through PyTorch's own engine: ``torchrun`` environment, process group, sharding, gathering.

``torchrun --nproc_per_node N -m reidkit train --config C`` starts N processes with ``RANK``, ``WORLD_SIZE`` and
``LOCAL_RANK`` (plus ``MASTER_ADDR``/``MASTER_PORT``) in their environment. :func:`distributed_session` reads them,
calls :func:`torch.distributed.init_process_group` (NCCL on CUDA, Gloo on CPU), selects ``cuda:LOCAL_RANK`` and
destroys the group when the run ends, also on an error. Without those variables (or with ``WORLD_SIZE=1``) it yields
a single-process :class:`DistContext` and touches nothing.

Conventions of reidkit's data-parallel runs:

* ``data.batch_size`` is the **global** P×K batch: every rank draws ``batch_size / WORLD_SIZE`` images per step
  (a multiple of K) from :class:`~reidkit.data.samplers.DistributedRandomIdentitySampler`, and
  :class:`~torch.nn.parallel.DistributedDataParallel` averages the gradients, so one step sees ``batch_size`` images.
* Only rank 0 writes files (checkpoints, logs, ``metrics.json``) and prints.
* Evaluation: each rank extracts the features of its contiguous share of the query and gallery lists
  (:func:`shard_bounds`); rank 0 gathers them in rank order (so the original order is restored,
  :func:`concat_features`), computes the metrics and broadcasts them to every rank.
"""
from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

from reidkit.evaluation.features import Features

__all__ = [
    "DistContext",
    "all_reduce_mean_",
    "barrier",
    "broadcast_buffers_",
    "broadcast_object",
    "concat_features",
    "context_from_env",
    "distributed_session",
    "gather_features",
    "rank_flags",
    "run_on_rank0",
    "shard",
    "shard_bounds",
]

T = TypeVar("T")


@dataclass(frozen=True)
class DistContext:
    """Where this process stands in a (possibly single-process) run.

    ``rank`` / ``world_size`` / ``local_rank``: from ``torchrun``'s environment (0 / 1 / 0 without it);
    ``device``: ``cuda:LOCAL_RANK`` for a CUDA run, else the CPU; ``backend``: ``"nccl"``, ``"gloo"`` or ``None``
    (no process group).
    """

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device | None = None
    backend: str | None = None

    @property
    def distributed(self) -> bool:
        """Whether gradients, features and metrics travel between processes (``world_size > 1``)."""
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """Rank 0: the only process that writes files and prints."""
        return self.rank == 0


def _env_int(name: str, environ: dict[str, str] | os._Environ[str]) -> int | None:
    text = environ.get(name)
    if text is None or text.strip() == "":
        return None
    try:
        value = int(text)
    except ValueError:
        raise ValueError(f"environment variable {name}={text!r}: expected an integer (as torchrun sets it)") from None
    if value < 0:
        raise ValueError(f"environment variable {name}={value}: expected an integer >= 0")
    return value


def context_from_env(device: str = "auto", environ: dict[str, str] | None = None) -> DistContext:
    """The :class:`DistContext` described by ``RANK`` / ``WORLD_SIZE`` / ``LOCAL_RANK`` (no process group yet).

    ``device`` is the config's ``train.device`` (``auto``: CUDA when available). A multi-process CUDA run uses the
    NCCL backend and ``cuda:LOCAL_RANK``; a CPU run uses Gloo.

    Raises:
        ValueError: malformed variables, ``RANK >= WORLD_SIZE``, a missing ``RANK``/``LOCAL_RANK`` with
            ``WORLD_SIZE > 1``, or ``LOCAL_RANK`` beyond the visible GPUs.
    """
    env = os.environ if environ is None else environ
    world = _env_int("WORLD_SIZE", env)
    if device not in ("auto", "cpu", "cuda"):
        raise ValueError(f"device must be 'auto', 'cpu' or 'cuda', got {device!r}")
    use_cuda = device == "cuda" or (device == "auto" and torch.cuda.is_available())
    if device == "cuda" and not torch.cuda.is_available():
        raise ValueError("train.device is 'cuda' but torch.cuda.is_available() is False")
    if world is None or world == 1:
        return DistContext(device=torch.device("cuda" if use_cuda else "cpu"))
    if world == 0:
        raise ValueError("environment variable WORLD_SIZE=0: expected >= 1")
    rank, local_rank = _env_int("RANK", env), _env_int("LOCAL_RANK", env)
    if rank is None or local_rank is None:
        raise ValueError(f"WORLD_SIZE={world} but RANK and LOCAL_RANK are not both set; launch with "
                         "torchrun --nproc_per_node N -m reidkit train ...")
    if rank >= world:
        raise ValueError(f"RANK={rank} must be < WORLD_SIZE={world}")
    if use_cuda:
        if local_rank >= torch.cuda.device_count():
            raise ValueError(f"LOCAL_RANK={local_rank} but only {torch.cuda.device_count()} GPU(s) are visible; "
                             "use --nproc_per_node <= the number of GPUs")
        return DistContext(rank, world, local_rank, torch.device("cuda", local_rank), "nccl")
    return DistContext(rank, world, local_rank, torch.device("cpu"), "gloo")


@contextlib.contextmanager
def distributed_session(device: str = "auto") -> Iterator[DistContext]:
    """Initialise the process group that ``torchrun``'s environment describes, yield the :class:`DistContext`,
    and destroy the group at the end (also when the body raises). Single-process: yields without a group.

    A group initialised by the caller (e.g. a notebook or a test that spawned the processes itself) is used as it
    is and left for the caller to destroy.
    """
    ctx = context_from_env(device)
    if not ctx.distributed:
        yield ctx
        return
    owned = not dist.is_initialized()
    if ctx.device is not None and ctx.device.type == "cuda":
        torch.cuda.set_device(ctx.device)
    if owned:
        dist.init_process_group(backend=ctx.backend, rank=ctx.rank, world_size=ctx.world_size)
    elif dist.get_world_size() != ctx.world_size or dist.get_rank() != ctx.rank:
        raise RuntimeError(f"the initialised process group (rank {dist.get_rank()} of {dist.get_world_size()}) "
                           f"disagrees with RANK={ctx.rank}, WORLD_SIZE={ctx.world_size}")
    try:
        yield ctx
    finally:
        if owned and dist.is_initialized():
            dist.destroy_process_group()


# ------------------------------------------------------------------------------------------- sharding


def shard_bounds(n: int, rank: int, world_size: int) -> tuple[int, int]:
    """``[start, stop)`` of rank ``rank``'s contiguous share of ``n`` items: the first ``n % world_size`` ranks get
    one item more (as ``numpy.array_split``). Concatenating the shares in rank order gives ``range(n)`` back."""
    if world_size < 1 or not 0 <= rank < world_size:
        raise ValueError(f"rank must be in [0, world_size), got rank={rank}, world_size={world_size}")
    if n < world_size:
        raise ValueError(f"cannot share {n} items over {world_size} processes (each needs at least one); "
                         "use fewer processes")
    base, extra = divmod(n, world_size)
    start = rank * base + min(rank, extra)
    return start, start + base + (1 if rank < extra else 0)


def shard(items: Sequence[T], ctx: DistContext) -> list[T]:
    """This rank's contiguous share of ``items`` (all of them in a single-process run)."""
    start, stop = shard_bounds(len(items), ctx.rank, ctx.world_size)
    return list(items[start:stop])


def concat_features(parts: Sequence[Features]) -> Features:
    """The features of several shares, concatenated in the given (rank) order."""
    if not parts:
        raise ValueError("concat_features needs at least one part")
    return Features(torch.cat([p.features for p in parts]), np.concatenate([p.pids for p in parts]),
                    np.concatenate([p.camids for p in parts]), [path for p in parts for path in p.paths])


# ----------------------------------------------------------------------------------------- collectives


def gather_features(local: Features, ctx: DistContext) -> Features | None:
    """Every rank's :class:`Features` gathered on rank 0 in rank order (rank 0 gets them all, the others ``None``).

    Single-process: returns ``local``.
    """
    if not ctx.distributed:
        return local
    parts: list[Any] | None = [None] * ctx.world_size if ctx.is_main else None
    dist.gather_object(local, parts, dst=0)
    return concat_features(parts) if parts is not None else None


def broadcast_object(value: T, ctx: DistContext) -> T:
    """Rank 0's ``value`` on every rank (picklable objects; single-process: ``value``)."""
    if not ctx.distributed:
        return value
    box = [value if ctx.is_main else None]
    dist.broadcast_object_list(box, src=0)
    return box[0]  # type: ignore[return-value]


def barrier(ctx: DistContext) -> None:
    """Wait until every rank gets here (no-op single-process)."""
    if ctx.distributed:
        if ctx.backend == "nccl" and ctx.device is not None:
            dist.barrier(device_ids=[ctx.device.index or 0])
        else:
            dist.barrier()


def all_reduce_mean_(params: Sequence[nn.Parameter], ctx: DistContext) -> None:
    """Average the gradients of ``params`` over the ranks, in place (for parameters outside the DDP-wrapped model,
    e.g. the centre-loss centres). Every rank must call it with the same parameters; a missing gradient counts as
    zero."""
    if not ctx.distributed:
        return
    for param in params:
        if param.grad is None:
            param.grad = torch.zeros_like(param)
        dist.all_reduce(param.grad, op=dist.ReduceOp.SUM)
        param.grad.div_(ctx.world_size)


def broadcast_buffers_(module: nn.Module, ctx: DistContext) -> None:
    """Copy rank 0's buffers (BatchNorm running statistics) into every rank's ``module``, in place.

    DDP broadcasts them at the start of every training forward, so after the last one each rank holds its own
    update; evaluation and checkpoints must all see rank 0's (the ones it saves). No-op single-process.
    """
    if not ctx.distributed:
        return
    for buffer in module.buffers():
        dist.broadcast(buffer, src=0)


def run_on_rank0(fn: Callable[[], T], ctx: DistContext) -> T:
    """Call ``fn`` on rank 0 only and return its result on every rank (broadcast, so it must be picklable).

    For the rank-0-only work that the other ranks then wait for at a collective (metrics computed from gathered
    features, a checkpoint or a file of the run): when ``fn`` raises an :class:`Exception` on rank 0, rank 0
    broadcasts ``{"error": "<type>: <message>"}`` in place of ``{"result": ...}`` and re-raises its original
    exception, and every other rank raises a :class:`RuntimeError` naming it, at once, instead of waiting at the
    next collective until the process group times out. Every rank must call it at the same point.
    Single-process: ``fn()``, its exceptions unchanged.

    Raises:
        RuntimeError: on a rank other than 0, when ``fn`` failed on rank 0.
    """
    if not ctx.distributed:
        return fn()
    if ctx.is_main:
        try:
            value = fn()
        except Exception as err:
            broadcast_object({"error": f"{type(err).__name__}: {err}"}, ctx)
            raise
        broadcast_object({"result": value}, ctx)
        return value
    answer: dict[str, Any] = broadcast_object(None, ctx)  # type: ignore[arg-type]
    if "error" in answer:
        raise RuntimeError(f"rank 0 failed and rank {ctx.rank} stops with it (instead of waiting for rank 0 at "
                           f"the next collective): {answer['error']}")
    return answer["result"]  # type: ignore[no-any-return]


def rank_flags(flag: torch.Tensor, ctx: DistContext) -> torch.Tensor:
    """Every rank's ``flag`` (a 0-d tensor) as one vector of ``world_size`` entries in rank order, on every rank.

    A device collective (an ``all_reduce`` sum of one-hot vectors, in ``flag``'s dtype and on its device) that does
    not wait for the host: on CUDA the result stays on the device until read. Every rank must call it at the same
    point. Single-process: ``flag`` as a 1-entry vector.
    """
    if flag.ndim != 0:
        raise ValueError(f"rank_flags takes a 0-d tensor, got shape {tuple(flag.shape)}")
    if not ctx.distributed:
        return flag.reshape(1)
    flags = torch.zeros(ctx.world_size, dtype=flag.dtype, device=flag.device)
    flags[ctx.rank] = flag
    dist.all_reduce(flags, op=dist.ReduceOp.SUM)
    return flags
