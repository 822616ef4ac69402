"""Occlusion-style transforms on tensors: RandomErasing, Cutout and LGT (local grayscale patch replacement).

Fill values (§9.2): the references write mean *pixel* values into the *normalised* tensor, which is not the
mean colour. Here ``fill`` is given in pixel space ([0, 1] RGB) by default and converted with the pipeline's
``mean``/``std`` before it is written, so the default ImageNet-mean fill becomes exactly 0 after Normalize.
Seed parity: ``fill=CIFAR_MEAN, fill_space="normalized"`` writes the numbers as they are.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, NamedTuple

import numpy as np
import torch
from PIL import Image

from reidkit.data.transforms.base import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    Generator,
    Transform,
    check_choice,
    check_positive_int,
    check_probability,
    check_ratio,
    check_scale,
    check_triple,
    rand_bool,
    rand_int,
    rand_uniform,
)
from reidkit.data.transforms.tensor import normalize

FILL_SPACES: tuple[str, ...] = ("pixel", "normalized")
LUMA_WEIGHTS: tuple[float, float, float] = (0.299, 0.587, 0.114)


class Rect(NamedTuple):
    """A rectangle in pixels: rows ``top : top + height``, columns ``left : left + width``."""

    top: int
    left: int
    height: int
    width: int


def sample_rectangle(
    height: int,
    width: int,
    scale: tuple[float, float],
    ratio: float,
    generator: Generator = None,
    attempts: int = 100,
) -> Rect | None:
    """Random-erasing rectangle sampling (Zhong et al., arXiv 1708.04896, Alg. 1), shared by RandomErasing and LGT.

    Up to ``attempts`` tries: area ``a = U(s_l, s_h)·H·W``, aspect ``r = U(r1, 1/r1)``, ``h = round(√(a·r))``,
    ``w = round(√(a/r))``; accept if ``0 < h < H`` and ``0 < w < W`` (the ``0 <`` part only matters for
    tiny images); the top-left corner is uniform over the positions that keep the rectangle inside.
    Returns ``None`` when no try was accepted.
    """
    s_l, s_h = scale
    for _ in range(attempts):
        area = rand_uniform(s_l, s_h, generator) * height * width
        aspect = rand_uniform(ratio, 1.0 / ratio, generator)
        h = int(round(math.sqrt(area * aspect)))
        w = int(round(math.sqrt(area / aspect)))
        if 0 < h < height and 0 < w < width:
            top = rand_int(0, height - h, generator)
            left = rand_int(0, width - w, generator)
            return Rect(top, left, h, w)
    return None


def _require_image_tensor(name: str, x: Any, channels: int) -> torch.Tensor:
    if not isinstance(x, torch.Tensor) or x.ndim != 3 or not x.is_floating_point():
        what = f"{tuple(x.shape)} {x.dtype}" if isinstance(x, torch.Tensor) else type(x).__name__
        raise TypeError(f"{name} expects a float (C, H, W) tensor, got {what}")
    if x.shape[0] != channels:
        raise ValueError(f"{name} has {channels} fill values but the tensor has {x.shape[0]} channels")
    return x


class _FillMixin:
    """Resolves a pixel-space or normalised-space fill into the value written into the tensor."""

    fill: tuple[float, ...]
    fill_space: str
    mean: tuple[float, ...]
    std: tuple[float, ...]

    def _init_fill(
        self, fill: Sequence[float], fill_space: str, mean: Sequence[float], std: Sequence[float]
    ) -> None:
        self.fill = check_triple("fill", fill)
        self.fill_space = check_choice("fill_space", fill_space, FILL_SPACES)
        self.mean = check_triple("mean", mean)
        self.std = check_triple("std", std, positive=True)

    def written_value(self, like: torch.Tensor) -> torch.Tensor:
        """The ``(C, 1, 1)`` value written into the tensor: ``(fill − mean)/std`` for pixel space, else ``fill``."""
        fill = torch.tensor(self.fill, dtype=like.dtype, device=like.device).view(-1, 1, 1)
        if self.fill_space == "normalized":
            return fill
        return normalize(fill, self.mean, self.std)

    def _fill_params(self) -> dict[str, Any]:
        return {"fill": self.fill, "fill_space": self.fill_space, "mean": self.mean, "std": self.std}


class RandomErasing(_FillMixin, Transform):
    """Random Erasing (Zhong, Zheng, Kang, Li, Yang, AAAI 2020, arXiv 1708.04896).

    With probability ``p`` (default 0.5) pick a rectangle with :func:`sample_rectangle` (area fraction
    ``U(s_l, s_h)`` = ``scale`` (0.02, 0.4), aspect ``U(r1, 1/r1)`` with ``r1 = ratio`` = 0.3, up to 100 tries)
    and set it to the fill. Input: a **normalised** float ``(3, H, W)`` tensor (after Normalize); ``fill`` is
    in pixel space (default the ImageNet mean → exactly 0) unless ``fill_space="normalized"``. Returns a new
    tensor; the input is not modified.
    """

    random = True

    def __init__(
        self,
        p: float = 0.5,
        scale: Sequence[float] = (0.02, 0.4),
        ratio: float = 0.3,
        fill: Sequence[float] = IMAGENET_MEAN,
        fill_space: str = "pixel",
        mean: Sequence[float] = IMAGENET_MEAN,
        std: Sequence[float] = IMAGENET_STD,
        attempts: int = 100,
    ) -> None:
        self.p = check_probability("p", p)
        self.scale = check_scale("scale", scale)
        self.ratio = check_ratio("ratio", ratio)
        self.attempts = check_positive_int("attempts", attempts)
        self._init_fill(fill, fill_space, mean, std)

    def _params(self) -> dict[str, Any]:
        return {"p": self.p, "scale": self.scale, "ratio": self.ratio, **self._fill_params(), "attempts": self.attempts}

    def __call__(self, x: torch.Tensor, generator: Generator = None) -> torch.Tensor:
        x = _require_image_tensor("RandomErasing", x, len(self.fill))
        if not rand_bool(self.p, generator):
            return x
        rect = sample_rectangle(x.shape[1], x.shape[2], self.scale, self.ratio, generator, self.attempts)
        if rect is None:
            return x
        out = x.clone()
        out[:, rect.top : rect.top + rect.height, rect.left : rect.left + rect.width] = self.written_value(x)
        return out


class Cutout(_FillMixin, Transform):
    """Cutout (DeVries & Taylor, arXiv 1708.04552), as the seed / LightMBN apply it.

    With probability ``p`` (default 0.5) set a ``size × size`` square (default 64) to the fill; the square lies
    **fully inside** the image, top-left uniform: ``top ~ U{0, …, H − size}``, ``left ~ U{0, …, W − size}``.
    (The paper centres the square anywhere and clips it at the border.) Input and fill as :class:`RandomErasing`:
    a normalised float ``(3, H, W)`` tensor, pixel-space fill by default. A square larger than the image is an error.
    """

    random = True

    def __init__(
        self,
        p: float = 0.5,
        size: int = 64,
        fill: Sequence[float] = IMAGENET_MEAN,
        fill_space: str = "pixel",
        mean: Sequence[float] = IMAGENET_MEAN,
        std: Sequence[float] = IMAGENET_STD,
    ) -> None:
        self.p = check_probability("p", p)
        self.size = check_positive_int("size", size)
        self._init_fill(fill, fill_space, mean, std)

    def _params(self) -> dict[str, Any]:
        return {"p": self.p, "size": self.size, **self._fill_params()}

    def __call__(self, x: torch.Tensor, generator: Generator = None) -> torch.Tensor:
        x = _require_image_tensor("Cutout", x, len(self.fill))
        height, width = x.shape[1], x.shape[2]
        if self.size > height or self.size > width:
            raise ValueError(f"Cutout size {self.size} does not fit inside a {height}×{width} image")
        if not rand_bool(self.p, generator):
            return x
        top = rand_int(0, height - self.size, generator)
        left = rand_int(0, width - self.size, generator)
        out = x.clone()
        out[:, top : top + self.size, left : left + self.size] = self.written_value(x)
        return out


def luma(x: torch.Tensor) -> torch.Tensor:
    """ITU-R 601 luma ``Y = 0.299 R + 0.587 G + 0.114 B`` of a ``(3, ...)`` tensor → ``(...)``."""
    return LUMA_WEIGHTS[0] * x[0] + LUMA_WEIGHTS[1] * x[1] + LUMA_WEIGHTS[2] * x[2]


class LGT(Transform):
    """Local grayscale transformation / random grayscale patch replacement (Gong et al., arXiv 2101.08533).

    With probability ``p`` (default 0.2) pick a rectangle exactly as RandomErasing does (``scale`` (0.02, 0.4),
    ``ratio`` 0.3; sampled with the correct H/W bounds, which the reference ``trans_gray.py`` swaps) and replace
    it by the same region of the image's luma ``Y = 0.299 R + 0.587 G + 0.114 B`` copied to the 3 channels.

    Input: a float ``(3, H, W)`` tensor in [0, 1] — §9.1 places it after ToTensor and **before** Normalize —
    or an RGB PIL image (then Y is PIL's ``convert("L")``, the same weights in fixed point, as the reference).
    ``build_transforms(lgt_space="normalized")`` applies it to the normalised tensor at the end of the
    pipeline instead, as the seed did (that mixes channels with different means and stds).
    """

    random = True

    def __init__(
        self, p: float = 0.2, scale: Sequence[float] = (0.02, 0.4), ratio: float = 0.3, attempts: int = 100
    ) -> None:
        self.p = check_probability("p", p)
        self.scale = check_scale("scale", scale)
        self.ratio = check_ratio("ratio", ratio)
        self.attempts = check_positive_int("attempts", attempts)

    def _params(self) -> dict[str, Any]:
        return {"p": self.p, "scale": self.scale, "ratio": self.ratio, "attempts": self.attempts}

    def __call__(self, img: torch.Tensor | Image.Image, generator: Generator = None) -> torch.Tensor | Image.Image:
        if isinstance(img, Image.Image):
            if img.mode != "RGB":
                raise ValueError(f"LGT expects an RGB PIL image, got mode {img.mode!r} (use img.convert('RGB'))")
            height, width = img.height, img.width
        else:
            img = _require_image_tensor("LGT", img, 3)
            height, width = img.shape[1], img.shape[2]
        if not rand_bool(self.p, generator):
            return img
        rect = sample_rectangle(height, width, self.scale, self.ratio, generator, self.attempts)
        if rect is None:
            return img
        rows = slice(rect.top, rect.top + rect.height)
        cols = slice(rect.left, rect.left + rect.width)
        if isinstance(img, Image.Image):
            array = np.array(img)
            gray = np.asarray(img.convert("L"))
            array[rows, cols, :] = gray[rows, cols, None]
            return Image.fromarray(array)
        out = img.clone()
        out[:, rows, cols] = luma(img[:, rows, cols]).unsqueeze(0)
        return out
