"""PIL → tensor conversion, per-channel normalisation and its inverse (for display)."""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
import torchvision.transforms.functional as tvf
from PIL import Image

from reidkit.data.transforms.base import IMAGENET_MEAN, IMAGENET_STD, Generator, Transform, check_triple


def _channel_view(values: Sequence[float], like: torch.Tensor) -> torch.Tensor:
    return torch.as_tensor(values, dtype=like.dtype, device=like.device).view(-1, 1, 1)


def _require_chw(name: str, x: Any) -> torch.Tensor:
    if not isinstance(x, torch.Tensor) or x.ndim != 3 or not x.is_floating_point():
        what = f"{type(x).__name__} {tuple(x.shape)} {x.dtype}" if isinstance(x, torch.Tensor) else type(x).__name__
        raise TypeError(f"{name} expects a float (C, H, W) tensor, got {what}")
    return x


class ToTensor(Transform):
    """PIL image (or uint8 H×W×C array) → float32 ``(C, H, W)`` tensor in [0, 1] (value / 255)."""

    def __call__(self, img: Image.Image | np.ndarray, generator: Generator = None) -> torch.Tensor:
        if not isinstance(img, (Image.Image, np.ndarray)):
            raise TypeError(f"ToTensor expects a PIL image or a NumPy array, got {type(img).__name__}")
        return tvf.to_tensor(img)


def normalize(x: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """``(x − mean) / std`` per channel (a new tensor)."""
    return (x - _channel_view(mean, x)) / _channel_view(std, x)


def denormalize(
    x: torch.Tensor, mean: Sequence[float] = IMAGENET_MEAN, std: Sequence[float] = IMAGENET_STD
) -> torch.Tensor:
    """Inverse of :func:`normalize`: ``x · std + mean`` per channel."""
    return x * _channel_view(std, x) + _channel_view(mean, x)


def to_uint8_image(x: torch.Tensor) -> np.ndarray:
    """A ``(3, H, W)`` tensor in [0, 1] → uint8 ``H × W × 3`` array (clamped, rounded to the nearest level)."""
    x = _require_chw("to_uint8_image", x)
    return (x.detach().clamp(0.0, 1.0) * 255.0).round().to(torch.uint8).permute(1, 2, 0).cpu().numpy()


class Normalize(Transform):
    """``(x − mean) / std`` per channel on a float ``(C, H, W)`` tensor in [0, 1]. Default: ImageNet statistics."""

    def __init__(self, mean: Sequence[float] = IMAGENET_MEAN, std: Sequence[float] = IMAGENET_STD) -> None:
        self.mean = check_triple("mean", mean)
        self.std = check_triple("std", std, positive=True)

    def _params(self) -> dict[str, Any]:
        return {"mean": self.mean, "std": self.std}

    def __call__(self, x: torch.Tensor, generator: Generator = None) -> torch.Tensor:
        x = _require_chw("Normalize", x)
        if x.shape[0] != len(self.mean):
            raise ValueError(
                f"Normalize has {len(self.mean)} channel statistics but the tensor has {x.shape[0]} channels"
            )
        return normalize(x, self.mean, self.std)
