"""Training engine: learning-rate schedulers and model evaluation (the trainer, checkpoints and logging follow)."""

from reidkit.engine.evaluator import EvalReport, evaluate_model
from reidkit.engine.schedulers import (
    SCHEDULERS,
    LightMBNCosineLR,
    WarmupCosineAnnealingLR,
    WarmupMultiStepLR,
    build_scheduler,
)

__all__ = [
    "SCHEDULERS",
    "EvalReport",
    "LightMBNCosineLR",
    "WarmupCosineAnnealingLR",
    "WarmupMultiStepLR",
    "build_scheduler",
    "evaluate_model",
]
