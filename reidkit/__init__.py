"""reidkit: a notebook-first person re-identification toolkit.

The names most notebooks need are re-exported here (``import reidkit as rk``); every component also lives
in its own module under ``reidkit.data``, ``reidkit.models``, ``reidkit.losses``, ``reidkit.engine``,
``reidkit.evaluation``, ``reidkit.config`` and ``reidkit.viz``. Those subpackages are imported here too, so
``rk.losses.build_loss``, ``rk.engine.Trainer`` or ``rk.config.load_config`` work after ``import reidkit as rk``
alone. Importing reidkit stays light: the optional extras (wandb, grad-cam, scikit-learn, OpenCV, Jupyter widgets)
are imported only by the functions that use them (``reidkit.viz``'s modules are imported on their own, e.g.
``import reidkit.viz.heatmaps``).
"""
from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

from reidkit import config, data, engine, evaluation, losses, models, viz  # subpackages reached as rk.<name>
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
    "config",
    "data",
    "default_device",
    "engine",
    "ensure_synthreid",
    "environment_report",
    "evaluate_features",
    "evaluate_rank",
    "evaluation",
    "extract_features",
    "fast_mode",
    "generate_synthreid",
    "losses",
    "models",
    "pairwise_distance",
    "re_ranking",
    "re_ranking_features",
    "seed_everything",
    "viz",
]
