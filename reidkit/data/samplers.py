"""P×K identity batch samplers (components.md §10).

Hermans, Beyer and Leibe, "In Defense of the Triplet Loss for Person Re-Identification", arXiv 1703.07737,
2017, train the batch-hard triplet loss on batches of **P identities × K images each**, so every anchor has
K − 1 positives and (P − 1)·K negatives in the batch. One epoch of :class:`RandomIdentitySampler` is built
as follows (the torchreid recipe, with an exact length):

1. for every pid, its dataset indices in random order; a pid with fewer than K images instead gets K indices
   drawn uniformly **with replacement** from its images (the only place an index can repeat);
2. cut each pid's list into chunks of K indices; the remainder (fewer than K) is dropped for this epoch;
3. while at least P pids still have chunks left: choose P distinct such pids uniformly at random and append
   one chunk of each (in the chosen order) as a batch of P·K indices.

The number of batches depends on the draws of step 3 (pids with many chunks outlive the others), so the
closed form Σ (max(n, K) − max(n, K) mod K) / (P·K) that torchreid returns from ``__len__`` over-counts.
Here the whole epoch is planned up front from a generator seeded by ``(seed, epoch)``: ``len()`` is the
length of that plan, and iterating yields exactly that plan. The plan is cached per epoch and rebuilt when
:meth:`~RandomIdentitySampler.set_epoch` changes the epoch (call it once per epoch, like
``DistributedSampler``; without it every epoch repeats epoch 0's plan).

These are *batch* samplers: they yield lists of indices, so ``len(DataLoader(ds, batch_sampler=s))`` is the
number of optimiser steps per epoch.
"""
from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from typing import NamedTuple

import numpy as np
import torch.distributed as dist
from torch.utils.data import Sampler

logger = logging.getLogger(__name__)


class PlanStats(NamedTuple):
    """What one epoch's plan used and left out (``RandomIdentitySampler.stats``).

    * ``epoch`` -- the epoch the plan was built for; ``batches`` -- its number of P×K batches;
    * ``images`` / ``pids`` -- dataset size (indices) and number of distinct pids;
    * ``images_unused`` -- dataset indices that appear in no batch this epoch (chunk remainders of step 2
      plus the chunks still left when fewer than P pids had chunks in step 3);
    * ``pids_unused`` -- pids that appear in no batch this epoch;
    * ``pids_with_replacement`` -- pids with fewer than K images, whose chunk was drawn with replacement.
    """

    epoch: int
    batches: int
    images: int
    pids: int
    images_unused: int
    pids_unused: int
    pids_with_replacement: int


def _check_int(name: str, value: object, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or int(value) < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def _group_by_pid(pids: Sequence[int]) -> tuple[list[int], list[np.ndarray]]:
    """Distinct pids in ascending order and, for each, its dataset indices in ascending order."""
    array = np.asarray(pids)
    if array.ndim != 1:
        raise ValueError(f"pids must be a flat sequence of integers (one per dataset index), got shape {array.shape}")
    if array.size and not np.issubdtype(array.dtype, np.integer):
        raise ValueError(f"pids must be integers (one per dataset index), got dtype {array.dtype}")
    array = array.astype(np.int64, copy=False)
    order = np.argsort(array, kind="stable")
    unique, starts = np.unique(array[order], return_index=True)
    groups = np.split(order, starts[1:]) if unique.size else []
    # every group is non-empty by construction: a pid exists here only because some index carries it
    return [int(p) for p in unique], [g.astype(np.int64) for g in groups]


def _epoch_generator(seed: int, epoch: int) -> np.random.Generator:
    """A NumPy generator that depends only on ``(seed, epoch)`` (SeedSequence mixing, PCG64)."""
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence([seed, epoch])))


class RandomIdentitySampler(Sampler[list[int]]):
    """Batch sampler of P identities × K images (Hermans et al., 2017, arXiv 1703.07737; components.md §10).

    Algorithm for one epoch (see the module docstring): per pid shuffle its indices (draw K with replacement
    when it has fewer than K), cut into chunks of K dropping the remainder, then repeatedly pick P distinct
    pids that still have chunks, uniformly, and emit one chunk of each as a batch, until fewer than P pids
    have chunks left. All draws come from a generator seeded by ``(seed, epoch)``.

    Args:
        pids: the pid of every dataset index (``[item.pid for item in items]``).
        batch_size: P·K, the number of indices per batch.
        num_instances: K, images per identity in a batch (at least 2, so every anchor has a positive).
        seed: base seed (a non-negative integer); with the epoch it fixes the plan completely.

    Attributes:
        P, K: identities per batch and images per identity.
        epoch: the current epoch (set with :meth:`set_epoch`, 0 initially).
        stats: :class:`PlanStats` of the most recently built plan (``None`` before the first).
        pids_with_replacement: how many pids have fewer than K images (sampled with replacement).
    """

    def __init__(self, pids: Sequence[int], batch_size: int, num_instances: int, seed: int = 0) -> None:
        super().__init__()
        self.K = _check_int("num_instances (K)", num_instances, 2)
        batch_size = _check_int("batch_size", batch_size, 1)
        if batch_size % self.K:
            raise ValueError(
                f"batch_size {batch_size} is not divisible by num_instances (K) {self.K}: "
                f"a P×K batch needs batch_size = P·K (e.g. {max(1, batch_size // self.K) * self.K})"
            )
        self.batch_size = batch_size
        self.P = batch_size // self.K
        self.seed = _check_int("seed", seed, 0)
        self.num_images = len(pids)
        self._pids, self._groups = _group_by_pid(pids)
        if len(self._pids) < self.P:
            raise ValueError(
                f"P×K sampling needs at least P = batch_size / K = {batch_size} / {self.K} = {self.P} identities, "
                f"but the {self.num_images} images have {len(self._pids)}; lower batch_size or raise num_instances"
            )
        self.pids_with_replacement = sum(1 for g in self._groups if len(g) < self.K)
        if self.pids_with_replacement:
            logger.debug(
                "RandomIdentitySampler: %d of %d pids have fewer than K=%d images and are drawn with replacement",
                self.pids_with_replacement, len(self._pids), self.K,
            )
        self.epoch = 0
        self.stats: PlanStats | None = None
        self._plan: np.ndarray | None = None
        self._plan_epoch: int | None = None

    @property
    def num_pids(self) -> int:
        """Number of distinct identities."""
        return len(self._pids)

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch whose plan :meth:`__iter__` and :meth:`__len__` use (built lazily, then cached)."""
        self.epoch = _check_int("epoch", epoch, 0)

    # ------------------------------------------------------------------------------------------ plan

    def _build_plan(self, epoch: int) -> np.ndarray:
        """The epoch's batches as a ``(num_batches, P·K)`` int64 array (steps 1–3 of the algorithm)."""
        rng = _epoch_generator(self.seed, epoch)
        K, P = self.K, self.P
        chunks: list[list[np.ndarray]] = []
        for group in self._groups:  # pids in ascending order: the draws do not depend on dataset order
            drawn = rng.choice(group, size=K, replace=True) if len(group) < K else rng.permutation(group)
            n_chunks = len(drawn) // K
            chunks.append([drawn[c * K:(c + 1) * K] for c in range(n_chunks)])
        remaining = [len(c) for c in chunks]
        next_chunk = [0] * len(chunks)
        available = [i for i, n in enumerate(remaining) if n > 0]
        batches: list[np.ndarray] = []
        while len(available) >= P:
            picked = rng.choice(len(available), size=P, replace=False)
            chosen = [available[j] for j in picked]
            batches.append(np.concatenate([chunks[i][next_chunk[i]] for i in chosen]))
            for i in chosen:
                next_chunk[i] += 1
                remaining[i] -= 1
            if any(remaining[i] == 0 for i in chosen):
                available = [i for i in available if remaining[i] > 0]
        plan = np.stack(batches) if batches else np.empty((0, P * K), dtype=np.int64)
        used = np.unique(plan)
        used_pids = sum(1 for i in range(len(chunks)) if next_chunk[i] > 0)
        self.stats = PlanStats(
            epoch=epoch,
            batches=len(batches),
            images=self.num_images,
            pids=len(self._pids),
            images_unused=self.num_images - int(used.size),
            pids_unused=len(self._pids) - used_pids,
            pids_with_replacement=self.pids_with_replacement,
        )
        logger.debug("RandomIdentitySampler plan: %s", self.stats)
        return plan

    def epoch_plan(self, epoch: int | None = None) -> np.ndarray:
        """The full plan of ``epoch`` (default: the current one) as a ``(batches, P·K)`` int64 array (a copy).

        The current epoch's plan is cached; asking for another epoch builds it without touching the cache.
        """
        if epoch is None or epoch == self.epoch:
            return self._current_plan().copy()
        return self._build_plan(_check_int("epoch", epoch, 0))

    def _current_plan(self) -> np.ndarray:
        if self._plan is None or self._plan_epoch != self.epoch:
            self._plan = self._build_plan(self.epoch)
            self._plan_epoch = self.epoch
        return self._plan

    def _local_plan(self) -> np.ndarray:
        """The batches this sampler yields (all of them; the distributed subclass takes its share)."""
        return self._current_plan()

    # -------------------------------------------------------------------------------- Sampler API

    def __iter__(self) -> Iterator[list[int]]:
        plan = self._local_plan()  # captured: a set_epoch during iteration does not change this epoch
        for row in plan:
            yield row.tolist()

    def __len__(self) -> int:
        return len(self._local_plan())

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(P={self.P}, K={self.K}, pids={self.num_pids}, images={self.num_images}, "
            f"seed={self.seed}, epoch={self.epoch})"
        )


class DistributedRandomIdentitySampler(RandomIdentitySampler):
    """P×K batch sampler for data-parallel training (Hermans et al., 2017; components.md §10).

    Every rank builds the *same* epoch plan as :class:`RandomIdentitySampler` (same ``seed`` on every rank
    is the caller's responsibility), truncates it to a multiple of ``num_replicas`` batches and takes batches
    ``rank, rank + num_replicas, ...``. Each rank therefore sees whole P×K batches, the ranks' batches are
    disjoint, and every rank runs the same number of steps (no rank waits in an all-reduce for a peer that
    has finished). ``batch_size`` is the per-rank batch (P·K per GPU).

    ``num_replicas`` and ``rank`` default to the initialised ``torch.distributed`` process group; without
    one they must be passed.
    """

    def __init__(
        self,
        pids: Sequence[int],
        batch_size: int,
        num_instances: int,
        seed: int = 0,
        num_replicas: int | None = None,
        rank: int | None = None,
    ) -> None:
        if num_replicas is None or rank is None:
            if not (dist.is_available() and dist.is_initialized()):
                raise RuntimeError(
                    "DistributedRandomIdentitySampler: torch.distributed is not initialised, so num_replicas and "
                    "rank cannot be inferred; pass num_replicas=<world size> and rank=<this process's rank>"
                )
            num_replicas = dist.get_world_size() if num_replicas is None else num_replicas
            rank = dist.get_rank() if rank is None else rank
        self.num_replicas = _check_int("num_replicas", num_replicas, 1)
        self.rank = _check_int("rank", rank, 0)
        if self.rank >= self.num_replicas:
            raise ValueError(f"rank must be in [0, {self.num_replicas - 1}] for num_replicas={self.num_replicas}, "
                             f"got {self.rank}")
        super().__init__(pids, batch_size, num_instances, seed)

    def truncated_plan(self, epoch: int | None = None) -> np.ndarray:
        """The shared plan cut to a multiple of ``num_replicas`` batches (what all ranks together yield)."""
        plan = self.epoch_plan(epoch)
        usable = (len(plan) // self.num_replicas) * self.num_replicas
        if usable == 0:
            raise ValueError(
                f"epoch {self.epoch if epoch is None else epoch}: the P×K plan has {len(plan)} batches, fewer than "
                f"num_replicas={self.num_replicas}, so some rank would get no batch; use a smaller batch_size "
                "or fewer processes"
            )
        return plan[:usable]

    def _local_plan(self) -> np.ndarray:
        plan = self._current_plan()
        usable = (len(plan) // self.num_replicas) * self.num_replicas
        if usable == 0:
            self.truncated_plan()  # raises the explanatory error
        return plan[self.rank:usable:self.num_replicas]

    def __repr__(self) -> str:
        return super().__repr__()[:-1] + f", rank={self.rank}, num_replicas={self.num_replicas})"
