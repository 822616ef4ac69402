"""Data pipeline: datasets (ReIDItem lists), transforms, the P×K sampler, loaders and prefetchers."""
from reidkit.data.datasets_torch import (
    ImageDataset,
    ImageReadError,
    KeyedBatchSampler,
    SampleKey,
    read_image,
    sample_seed,
)
from reidkit.data.loaders import IdentityBatchLoader, build_test_loaders, build_train_loader, seed_worker
from reidkit.data.prefetch import CUDAPrefetcher, PrefetchGenerator
from reidkit.data.samplers import DistributedRandomIdentitySampler, PlanStats, RandomIdentitySampler

__all__ = [
    "CUDAPrefetcher",
    "DistributedRandomIdentitySampler",
    "IdentityBatchLoader",
    "ImageDataset",
    "ImageReadError",
    "KeyedBatchSampler",
    "PlanStats",
    "PrefetchGenerator",
    "RandomIdentitySampler",
    "SampleKey",
    "build_test_loaders",
    "build_train_loader",
    "read_image",
    "sample_seed",
    "seed_worker",
]
