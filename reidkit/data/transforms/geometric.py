"""Geometric transforms: Resize, RandomHorizontalFlip, Pad, RandomCrop and Random2DTranslation.

All take a PIL image (the §9.1 train order applies them before ``ToTensor``); Resize, the flip, Pad and
RandomCrop also accept a ``(C, H, W)`` tensor. Sizes are (height, width), as everywhere in reidkit.
"""
from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as nnf
import torchvision.transforms.functional as tvf
from PIL import Image, ImageOps
from torchvision.transforms import InterpolationMode

from reidkit.data.transforms.base import (
    Generator,
    Transform,
    check_choice,
    check_non_negative_int,
    check_positive_int,
    check_probability,
    rand_bool,
    rand_int,
    rand_uniform,
)

INTERPOLATIONS: tuple[str, ...] = ("bilinear", "bicubic")
_PIL_RESAMPLE = {"bilinear": Image.Resampling.BILINEAR, "bicubic": Image.Resampling.BICUBIC}
_TV_MODE = {"bilinear": InterpolationMode.BILINEAR, "bicubic": InterpolationMode.BICUBIC}

Img = Image.Image | torch.Tensor


def image_size(img: Any) -> tuple[int, int]:
    """(height, width) of a PIL image or a ``(..., H, W)`` tensor."""
    if isinstance(img, Image.Image):
        return img.height, img.width
    if isinstance(img, torch.Tensor) and img.ndim >= 2:
        return int(img.shape[-2]), int(img.shape[-1])
    raise TypeError(f"expected a PIL image or a (C, H, W) tensor, got {type(img).__name__}")


def _require_pil(name: str, img: Any) -> Image.Image:
    if not isinstance(img, Image.Image):
        raise TypeError(f"{name} expects a PIL image (it runs before ToTensor), got {type(img).__name__}")
    return img


def resize_pil(img: Image.Image, height: int, width: int, interpolation: str) -> Image.Image:
    """``img.resize((width, height))`` with the named PIL filter (PIL always antialiases when shrinking)."""
    return img.resize((width, height), _PIL_RESAMPLE[interpolation])


class Resize(Transform):
    """Resize to exactly ``height × width`` (aspect not kept), as re-ID pipelines do.

    PIL input uses ``PIL.Image.resize`` (what torchvision's ``Resize`` does on PIL images); tensor input uses
    ``torchvision.transforms.functional.resize(antialias=True)``. ``interpolation``: "bilinear"
    (torchreid, the seed) or "bicubic" (FastReID).
    """

    def __init__(self, height: int, width: int, interpolation: str = "bilinear") -> None:
        self.height = check_positive_int("height", height)
        self.width = check_positive_int("width", width)
        self.interpolation = check_choice("interpolation", interpolation, INTERPOLATIONS)

    def _params(self) -> dict[str, Any]:
        return {"height": self.height, "width": self.width, "interpolation": self.interpolation}

    def __call__(self, img: Img, generator: Generator = None) -> Img:
        if isinstance(img, Image.Image):
            return resize_pil(img, self.height, self.width, self.interpolation)
        image_size(img)  # type check
        return tvf.resize(img, [self.height, self.width], interpolation=_TV_MODE[self.interpolation], antialias=True)


class RandomHorizontalFlip(Transform):
    """Mirror left↔right with probability ``p`` (default 0.5). PIL image or ``(C, H, W)`` tensor."""

    random = True

    def __init__(self, p: float = 0.5) -> None:
        self.p = check_probability("p", p)

    def _params(self) -> dict[str, Any]:
        return {"p": self.p}

    def __call__(self, img: Img, generator: Generator = None) -> Img:
        image_size(img)
        if not rand_bool(self.p, generator):
            return img
        if isinstance(img, Image.Image):
            return ImageOps.mirror(img)
        return img.flip(-1)


class Pad(Transform):
    """Pad every side by ``padding`` pixels with the constant ``fill`` (BoT: 10 px of 0 before RandomCrop).

    PIL image (fill is a 0–255 intensity) or ``(C, H, W)`` tensor (fill in the tensor's units).
    """

    def __init__(self, padding: int = 10, fill: int = 0) -> None:
        self.padding = check_non_negative_int("padding", padding)
        if isinstance(fill, bool) or not isinstance(fill, (int, float)):
            raise ValueError(f"fill must be a number, got {fill!r}")
        self.fill = fill

    def _params(self) -> dict[str, Any]:
        return {"padding": self.padding, "fill": self.fill}

    def __call__(self, img: Img, generator: Generator = None) -> Img:
        if isinstance(img, Image.Image):
            bands = len(img.getbands())
            fill: Any = (int(self.fill),) * bands if bands > 1 else self.fill
            return ImageOps.expand(img, border=self.padding, fill=fill)
        image_size(img)
        p = self.padding
        return nnf.pad(img, (p, p, p, p), mode="constant", value=float(self.fill))


class RandomCrop(Transform):
    """Crop a ``height × width`` window whose top-left corner is uniform over all windows inside the image.

    top ~ U{0, …, H − height}, left ~ U{0, …, W − width} (integers, ends included). PIL or tensor.
    """

    random = True

    def __init__(self, height: int, width: int) -> None:
        self.height = check_positive_int("height", height)
        self.width = check_positive_int("width", width)

    def _params(self) -> dict[str, Any]:
        return {"height": self.height, "width": self.width}

    def __call__(self, img: Img, generator: Generator = None) -> Img:
        h, w = image_size(img)
        if h < self.height or w < self.width:
            raise ValueError(
                f"RandomCrop({self.height}×{self.width}) needs an image at least that large, got {h}×{w}"
            )
        top = rand_int(0, h - self.height, generator)
        left = rand_int(0, w - self.width, generator)
        if isinstance(img, Image.Image):
            return img.crop((left, top, left + self.width, top + self.height))
        return img[..., top : top + self.height, left : left + self.width]


class Random2DTranslation(Transform):
    """Random translation by enlarge-then-crop (torchreid ``Random2DTranslation``).

    Rule: with probability ``p`` resize to ``(round(factor·H), round(factor·W))`` and crop ``H × W`` at
    ``x0 = round(U(0, ΔW))``, ``y0 = round(U(0, ΔH))`` with ``ΔW = round(factor·W) − W``,
    ``ΔH = round(factor·H) − H`` (Python's ``round``: half to even, as torchreid); otherwise resize to ``H × W``.
    ``factor`` is 1.125 in torchreid / the seed, 1.05 in LightMBN.

    Input: a PIL image of any size. The references resize to ``H × W`` first and then let this transform
    resize again (double interpolation); ``build_transforms`` keeps that order by default and drops the
    first resize with ``translate_from_original=True`` (one resize of the original image).
    """

    random = True

    def __init__(
        self, height: int, width: int, p: float = 0.5, factor: float = 1.125, interpolation: str = "bilinear"
    ) -> None:
        self.height = check_positive_int("height", height)
        self.width = check_positive_int("width", width)
        self.p = check_probability("p", p)
        if isinstance(factor, bool) or not isinstance(factor, (int, float)) or factor < 1.0:
            raise ValueError(f"factor must be a number >= 1 (the enlargement before cropping), got {factor!r}")
        self.factor = float(factor)
        self.interpolation = check_choice("interpolation", interpolation, INTERPOLATIONS)

    def _params(self) -> dict[str, Any]:
        return {
            "height": self.height,
            "width": self.width,
            "p": self.p,
            "factor": self.factor,
            "interpolation": self.interpolation,
        }

    @property
    def enlarged_size(self) -> tuple[int, int]:
        """(height, width) of the enlarged image that is cropped."""
        return int(round(self.factor * self.height)), int(round(self.factor * self.width))

    def __call__(self, img: Image.Image, generator: Generator = None) -> Image.Image:
        img = _require_pil("Random2DTranslation", img)
        if not rand_bool(self.p, generator):
            return resize_pil(img, self.height, self.width, self.interpolation)
        big_h, big_w = self.enlarged_size
        enlarged = resize_pil(img, big_h, big_w, self.interpolation)
        x0 = int(round(rand_uniform(0, big_w - self.width, generator)))
        y0 = int(round(rand_uniform(0, big_h - self.height, generator)))
        return enlarged.crop((x0, y0, x0 + self.width, y0 + self.height))
