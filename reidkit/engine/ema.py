"""Exponential moving average of model weights (Polyak & Juditsky 1992; as in timm's ``ModelEmaV2``).

After every optimiser step, each floating-point entry of the state dict (parameters **and** buffers such as BN
running statistics) becomes ``ema = decay * ema + (1 - decay) * model``; integer buffers (``num_batches_tracked``)
are copied. The averaged copy lives in :attr:`ModelEMA.module` (eval mode, no gradients).
"""
from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

__all__ = ["ModelEMA"]


class ModelEMA:
    """EMA of ``model``'s state: ``ema ← decay · ema + (1 − decay) · model`` per :meth:`update`.

    Args:
        model: the trained model; a deep copy is taken at construction (so ``ema`` starts equal to it).
        decay: in [0, 1); typical 0.999–0.9999.
    """

    def __init__(self, model: nn.Module, decay: float) -> None:
        if not 0.0 <= float(decay) < 1.0:
            raise ValueError(f"ema_decay must be in [0, 1), got {decay!r}")
        self.decay = float(decay)
        self.module = copy.deepcopy(model).eval()
        for param in self.module.parameters():
            param.requires_grad_(False)
        self.updates = 0

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        """One EMA step towards ``model``'s current state."""
        model_state = model.state_dict()
        for name, ema_value in self.module.state_dict().items():
            value = model_state[name].detach()
            if ema_value.is_floating_point():
                ema_value.mul_(self.decay).add_(value.to(ema_value.dtype), alpha=1.0 - self.decay)
            else:
                ema_value.copy_(value)
        self.updates += 1

    def state_dict(self) -> dict[str, Any]:
        """``{"module": state dict, "decay": float, "updates": int}``."""
        return {"module": self.module.state_dict(), "decay": self.decay, "updates": self.updates}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore :meth:`state_dict` output (strict key match)."""
        self.module.load_state_dict(state["module"])
        self.decay = float(state["decay"])
        self.updates = int(state["updates"])
