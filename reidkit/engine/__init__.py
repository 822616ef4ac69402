"""Training engine: the trainer, atomic checkpoints with exact resume, EMA, the JSON-lines run log, learning-rate
schedulers and model evaluation."""

from reidkit.engine.checkpoint import load_checkpoint, save_checkpoint
from reidkit.engine.ema import ModelEMA
from reidkit.engine.evaluator import EvalReport, evaluate_model
from reidkit.engine.run import Run, build_run, train_from_config
from reidkit.engine.run_log import RunLog, read_run_log
from reidkit.engine.schedulers import (
    SCHEDULERS,
    LightMBNCosineLR,
    WarmupCosineAnnealingLR,
    WarmupMultiStepLR,
    build_scheduler,
)
from reidkit.engine.trainer import NonFiniteLossError, Trainer

__all__ = [
    "SCHEDULERS",
    "EvalReport",
    "LightMBNCosineLR",
    "ModelEMA",
    "NonFiniteLossError",
    "Run",
    "RunLog",
    "Trainer",
    "WarmupCosineAnnealingLR",
    "WarmupMultiStepLR",
    "build_run",
    "build_scheduler",
    "evaluate_model",
    "load_checkpoint",
    "read_run_log",
    "save_checkpoint",
    "train_from_config",
]
