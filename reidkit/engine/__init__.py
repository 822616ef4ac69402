"""Training engine: schedulers (and, later, the trainer, checkpoints and logging)."""

from reidkit.engine.schedulers import (
    SCHEDULERS,
    LightMBNCosineLR,
    WarmupCosineAnnealingLR,
    WarmupMultiStepLR,
    build_scheduler,
)

__all__ = [
    "SCHEDULERS",
    "LightMBNCosineLR",
    "WarmupCosineAnnealingLR",
    "WarmupMultiStepLR",
    "build_scheduler",
]
