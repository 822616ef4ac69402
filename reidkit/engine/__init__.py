"""Training engine: the trainer, atomic checkpoints with exact resume, EMA, data-parallel training (torchrun, DDP),
the run log and its sinks, learning-rate schedulers and model evaluation."""

from reidkit.engine.checkpoint import load_checkpoint, save_checkpoint
from reidkit.engine.distributed import DistContext, distributed_session
from reidkit.engine.ema import ModelEMA
from reidkit.engine.evaluator import EvalReport, evaluate_model, rank_features
from reidkit.engine.loggers import LogSinks, MetricsTable, build_loggers
from reidkit.engine.run import Run, build_run, train_from_config, train_run
from reidkit.engine.run_log import RunLog, read_run_log
from reidkit.engine.schedulers import (
    SCHEDULERS,
    LightMBNCosineLR,
    WarmupCosineAnnealingLR,
    WarmupMultiStepLR,
    build_scheduler,
)
from reidkit.engine.trainer import EvalSettings, NonFiniteLossError, Trainer, build_center_optimizer

__all__ = [
    "SCHEDULERS",
    "DistContext",
    "EvalReport",
    "EvalSettings",
    "LightMBNCosineLR",
    "LogSinks",
    "MetricsTable",
    "ModelEMA",
    "NonFiniteLossError",
    "Run",
    "RunLog",
    "Trainer",
    "rank_features",
    "WarmupCosineAnnealingLR",
    "WarmupMultiStepLR",
    "build_center_optimizer",
    "build_loggers",
    "build_run",
    "distributed_session",
    "build_scheduler",
    "evaluate_model",
    "load_checkpoint",
    "read_run_log",
    "save_checkpoint",
    "train_from_config",
    "train_run",
]
