"""Train and test ``DataLoader`` builders.

* :func:`build_train_loader` -- P×K identity batches (Hermans et al., 2017; :mod:`reidkit.data.samplers`),
  so ``len(loader)`` is the number of optimiser steps of the epoch; call ``loader.set_epoch(e)`` at the start
  of every epoch to get that epoch's plan and augmentations.
* :func:`build_test_loaders` -- query and gallery in order, last partial batch kept.

Reproducibility: augmentation randomness is per sample (see :mod:`reidkit.data.datasets_torch`), so a fixed
``seed`` gives identical batches for any number of workers; ``worker_init_fn`` additionally seeds Python's
``random`` and NumPy in each worker (for foreign transforms that use them) from the worker's torch seed, which
the DataLoader derives from a generator seeded with ``seed``.
"""
from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader

from reidkit.data.datasets.base import ReIDItem
from reidkit.data.datasets_torch import ImageDataset, KeyedBatchSampler
from reidkit.data.samplers import DistributedRandomIdentitySampler, RandomIdentitySampler


def seed_worker(worker_id: int) -> None:
    """``worker_init_fn``: seed Python's ``random`` and NumPy from this worker's torch seed.

    The DataLoader seeds torch in worker ``i`` with ``base_seed + i`` (``base_seed`` drawn once from the
    loader's generator); the same number seeds the other two RNGs.
    """
    seed = torch.initial_seed()
    random.seed(seed)
    np.random.seed(seed % 2**32)


def _check_workers(workers: int) -> int:
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 0:
        raise ValueError(f"workers must be a non-negative integer (0 = load in the main process), got {workers!r}")
    return workers


def _pin_default(pin_memory: bool | None) -> bool:
    return torch.cuda.is_available() if pin_memory is None else bool(pin_memory)


class IdentityBatchLoader(DataLoader):
    """A ``DataLoader`` over P×K batches with :meth:`set_epoch` (forwards to its batch sampler)."""

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch: its P×K plan (and hence ``len``) and the seeds of its augmentations."""
        self.batch_sampler.set_epoch(epoch)  # type: ignore[union-attr]

    @property
    def identity_sampler(self) -> RandomIdentitySampler:
        """The underlying (possibly distributed) :class:`RandomIdentitySampler`."""
        return self.batch_sampler.batch_sampler  # type: ignore[union-attr]


def build_train_loader(
    items: Sequence[ReIDItem],
    transform: Callable[..., Any],
    batch_size: int = 64,
    num_instances: int = 4,
    workers: int = 0,
    seed: int = 0,
    pin_memory: bool | None = None,
    distributed: bool = False,
    *,
    num_replicas: int | None = None,
    rank: int | None = None,
) -> IdentityBatchLoader:
    """Training loader: P×K batches of ``ImageDataset(items, transform, seed)`` dicts.

    Args:
        items: the training split (pids relabelled or not; only equality of pids matters).
        transform: the train pipeline (``build_transforms(cfg, train=True)``).
        batch_size: P·K images per step (per process when ``distributed``).
        num_instances: K images per identity.
        workers: loader processes (0 = main process); persistent when > 0.
        seed: seeds the sampler plan, the per-sample augmentations and the workers.
        pin_memory: default: whether CUDA is available.
        distributed: use :class:`DistributedRandomIdentitySampler`; ``num_replicas``/``rank`` default to the
            initialised ``torch.distributed`` group.

    ``len(loader)`` is the number of optimiser steps this epoch; call ``loader.set_epoch(e)`` every epoch.
    """
    workers = _check_workers(workers)
    dataset = ImageDataset(items, transform, seed=seed)
    pids = [item.pid for item in dataset.items]
    sampler: RandomIdentitySampler
    if distributed:
        sampler = DistributedRandomIdentitySampler(
            pids, batch_size, num_instances, seed=seed, num_replicas=num_replicas, rank=rank
        )
    else:
        if num_replicas is not None or rank is not None:
            raise ValueError("num_replicas and rank are only used with distributed=True")
        sampler = RandomIdentitySampler(pids, batch_size, num_instances, seed=seed)
    return IdentityBatchLoader(
        dataset,
        batch_sampler=KeyedBatchSampler(sampler),
        num_workers=workers,
        pin_memory=_pin_default(pin_memory),
        worker_init_fn=seed_worker,
        persistent_workers=workers > 0,
        generator=torch.Generator().manual_seed(seed),
    )


def build_test_loaders(
    query: Sequence[ReIDItem],
    gallery: Sequence[ReIDItem],
    transform: Callable[..., Any],
    batch_size: int = 128,
    workers: int = 0,
    *,
    pin_memory: bool | None = None,
) -> tuple[DataLoader, DataLoader]:
    """``(query_loader, gallery_loader)``: every image once, in split order, last partial batch kept.

    ``transform`` is the test pipeline (``build_transforms(cfg, train=False)``). Batches are dicts as in
    :class:`~reidkit.data.datasets_torch.ImageDataset`; ``index`` is the position in ``query``/``gallery``.
    """
    workers = _check_workers(workers)
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")

    def make(split: Sequence[ReIDItem]) -> DataLoader:
        return DataLoader(
            ImageDataset(split, transform),
            batch_size=batch_size,
            shuffle=False,
            drop_last=False,
            num_workers=workers,
            pin_memory=_pin_default(pin_memory),
            worker_init_fn=seed_worker,
        )

    return make(query), make(gallery)
