"""``TransformConfig`` (validated, frozen) and ``build_transforms(cfg, train)`` in the §9.1 order.

Train order (a step whose probability is 0 is left out)::

    AutoAugment(p) → Resize(H, W) → RandomHorizontalFlip → Random2DTranslation | Pad + RandomCrop | nothing
    → ToTensor → LGT (pixel space) → Normalize → RandomErasing → Cutout [→ LGT if lgt_space="normalized"]

``translate_from_original=True`` drops the first Resize so Random2DTranslation resizes the original image
once (the references resize twice). Test order: Resize → ToTensor → Normalize.
"""
from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from reidkit.data.transforms.autoaugment import AutoAugment
from reidkit.data.transforms.base import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    Compose,
    check_choice,
    check_non_negative_int,
    check_positive_int,
    check_probability,
    check_ratio,
    check_scale,
    check_triple,
)
from reidkit.data.transforms.erasing import FILL_SPACES, LGT, Cutout, RandomErasing
from reidkit.data.transforms.geometric import (
    INTERPOLATIONS,
    Pad,
    Random2DTranslation,
    RandomCrop,
    RandomHorizontalFlip,
    Resize,
)
from reidkit.data.transforms.tensor import Normalize, ToTensor

CROPS: tuple[str, ...] = ("translate", "pad_crop", "none")
LGT_SPACES: tuple[str, ...] = ("pixel", "normalized")


@dataclass(frozen=True)
class TransformConfig:
    """Every knob of the re-ID transforms; defaults follow components.md §9.1 (AutoAugment off).

    Seed parity (recipes A/B): ``fill=(0.4914, 0.4822, 0.4465), fill_space="normalized", lgt_space="normalized"``.
    BoT: ``crop="pad_crop", lgt_p=0, cutout_p=0``.
    """

    height: int = 256
    width: int = 128
    interpolation: str = "bilinear"
    autoaugment_p: float = 0.0
    hflip_p: float = 0.5
    crop: str = "translate"
    translate_p: float = 0.5
    translate_factor: float = 1.125
    translate_from_original: bool = False
    pad: int = 10
    lgt_p: float = 0.2
    lgt_scale: tuple[float, float] = (0.02, 0.4)
    lgt_ratio: float = 0.3
    lgt_space: str = "pixel"
    erasing_p: float = 0.5
    erasing_scale: tuple[float, float] = (0.02, 0.4)
    erasing_ratio: float = 0.3
    cutout_p: float = 0.5
    cutout_size: int = 64
    fill: tuple[float, float, float] = IMAGENET_MEAN
    fill_space: str = "pixel"
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD

    def __post_init__(self) -> None:
        check_positive_int("height", self.height)
        check_positive_int("width", self.width)
        check_choice("interpolation", self.interpolation, INTERPOLATIONS)
        check_choice("crop", self.crop, CROPS)
        check_choice("lgt_space", self.lgt_space, LGT_SPACES)
        check_choice("fill_space", self.fill_space, FILL_SPACES)
        for name in ("autoaugment_p", "hflip_p", "translate_p", "lgt_p", "erasing_p", "cutout_p"):
            object.__setattr__(self, name, check_probability(name, getattr(self, name)))
        factor = self.translate_factor
        if isinstance(factor, bool) or not isinstance(factor, (int, float)) or not math.isfinite(factor) or factor < 1:
            raise ValueError(f"translate_factor must be a number >= 1, got {factor!r}")
        object.__setattr__(self, "translate_factor", float(factor))
        if not isinstance(self.translate_from_original, bool):
            raise ValueError(f"translate_from_original must be true or false, got {self.translate_from_original!r}")
        check_non_negative_int("pad", self.pad)
        check_positive_int("cutout_size", self.cutout_size)
        if self.cutout_p > 0 and self.cutout_size > min(self.height, self.width):
            raise ValueError(
                f"cutout_size {self.cutout_size} does not fit inside a {self.height}×{self.width} image "
                f"(must be <= {min(self.height, self.width)}, or set cutout_p to 0)"
            )
        check_ratio("lgt_ratio", self.lgt_ratio)
        check_ratio("erasing_ratio", self.erasing_ratio)
        # sequences from YAML arrive as lists: store tuples so the config stays hashable and comparable
        object.__setattr__(self, "lgt_scale", check_scale("lgt_scale", self.lgt_scale))
        object.__setattr__(self, "erasing_scale", check_scale("erasing_scale", self.erasing_scale))
        object.__setattr__(self, "fill", check_triple("fill", self.fill))
        object.__setattr__(self, "mean", check_triple("mean", self.mean))
        object.__setattr__(self, "std", check_triple("std", self.std, positive=True))

    @classmethod
    def keys(cls) -> tuple[str, ...]:
        """The valid field names, in declaration order."""
        return tuple(f.name for f in dataclasses.fields(cls))

    @classmethod
    def from_mapping(cls, mapping: Mapping[str, Any]) -> TransformConfig:
        """Build from a dict (e.g. the parsed ``data.transforms`` YAML subtree); unknown keys are an error."""
        if not isinstance(mapping, Mapping):
            raise TypeError(f"transform config must be a mapping or a TransformConfig, got {type(mapping).__name__}")
        valid = cls.keys()
        unknown = sorted(str(k) for k in mapping if k not in valid)
        if unknown:
            raise ValueError(
                f"unknown transform config key(s) {', '.join(repr(k) for k in unknown)}; valid keys: {', '.join(valid)}"
            )
        return cls(**dict(mapping))

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def replace(self, **changes: Any) -> TransformConfig:
        """A copy with some fields changed (validated; unknown names are an error listing the valid ones)."""
        return TransformConfig.from_mapping({**self.to_dict(), **changes})


def as_transform_config(cfg: TransformConfig | Mapping[str, Any] | None) -> TransformConfig:
    """Accept a TransformConfig, a mapping of its fields, or ``None`` (all defaults)."""
    if cfg is None:
        return TransformConfig()
    if isinstance(cfg, TransformConfig):
        return cfg
    return TransformConfig.from_mapping(cfg)


def build_transforms(cfg: TransformConfig | Mapping[str, Any] | None, train: bool) -> Compose:
    """The train (augmenting) or test pipeline for ``cfg``; call it as ``pipeline(img, generator=g)``.

    Input: an RGB PIL image of any size. Output: a normalised float32 ``(3, height, width)`` tensor.
    """
    c = as_transform_config(cfg)
    normalize = Normalize(c.mean, c.std)
    if not train:
        return Compose([Resize(c.height, c.width, c.interpolation), ToTensor(), normalize])

    steps: list[Callable[..., Any]] = []
    if c.autoaugment_p > 0:
        steps.append(AutoAugment(p=c.autoaugment_p))
    if not (c.crop == "translate" and c.translate_from_original):
        steps.append(Resize(c.height, c.width, c.interpolation))
    if c.hflip_p > 0:
        steps.append(RandomHorizontalFlip(c.hflip_p))
    if c.crop == "translate":
        # with translate_p = 0 this is a plain resize, needed when translate_from_original dropped the first one
        if c.translate_p > 0 or c.translate_from_original:
            steps.append(
                Random2DTranslation(c.height, c.width, c.translate_p, c.translate_factor, c.interpolation)
            )
    elif c.crop == "pad_crop":
        steps += [Pad(c.pad, fill=0), RandomCrop(c.height, c.width)]
    steps.append(ToTensor())
    lgt = LGT(c.lgt_p, c.lgt_scale, c.lgt_ratio) if c.lgt_p > 0 else None
    if lgt is not None and c.lgt_space == "pixel":
        steps.append(lgt)
    steps.append(normalize)
    fill_kwargs = {"fill": c.fill, "fill_space": c.fill_space, "mean": c.mean, "std": c.std}
    if c.erasing_p > 0:
        steps.append(RandomErasing(c.erasing_p, c.erasing_scale, c.erasing_ratio, **fill_kwargs))
    if c.cutout_p > 0:
        steps.append(Cutout(c.cutout_p, c.cutout_size, **fill_kwargs))
    if lgt is not None and c.lgt_space == "normalized":
        steps.append(lgt)
    return Compose(steps)
