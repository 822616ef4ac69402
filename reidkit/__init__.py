"""reidkit: a notebook-first person re-identification toolkit.

The names most notebooks need are re-exported here (``import reidkit as rk``); every component also lives
in its own module under ``reidkit.data``, ``reidkit.models``, ``reidkit.evaluation`` and ``reidkit.viz``.
"""
from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

from reidkit.data.datasets import DATASETS, ReIDItem, build_dataset, carve_validation
from reidkit.data.samplers import DistributedRandomIdentitySampler, RandomIdentitySampler
from reidkit.data.synthetic import PRESETS as SYNTH_PRESETS
from reidkit.data.synthetic import ensure_synthreid, generate_synthreid
from reidkit.data.transforms import build_transforms
from reidkit.diagnostics import environment_report
from reidkit.evaluation import (
    RankResult,
    evaluate_features,
    evaluate_rank,
    extract_features,
    pairwise_distance,
    re_ranking,
    re_ranking_features,
)
from reidkit.inference import FeatureExtractor
from reidkit.models import LightMBN, ReIDModel, build_backbone, build_model
from reidkit.runtime import default_device, fast_mode, seed_everything

try:
    __version__ = version("reidkit")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0+unknown"

__all__ = [
    "DATASETS",
    "SYNTH_PRESETS",
    "DistributedRandomIdentitySampler",
    "FeatureExtractor",
    "LightMBN",
    "RandomIdentitySampler",
    "RankResult",
    "ReIDItem",
    "ReIDModel",
    "__version__",
    "build_backbone",
    "build_dataset",
    "build_model",
    "build_transforms",
    "carve_validation",
    "default_device",
    "ensure_synthreid",
    "environment_report",
    "evaluate_features",
    "evaluate_rank",
    "extract_features",
    "fast_mode",
    "generate_synthreid",
    "pairwise_distance",
    "re_ranking",
    "re_ranking_features",
    "seed_everything",
]
