"""AutoAugment with the ImageNet "original" policy (Cubuk, Zoph, Mané, Vasudevan, Le, CVPR 2019, arXiv 1805.09501).

The policy and level mapping are those of timm / FastReID (``fastreid/data/transforms/autoaugment.py``,
policy "original"), implemented here on PIL operations:

* pick one of the 25 sub-policies uniformly; apply its 2 operations in order, each with its own probability;
* level ``L`` ∈ [0, 10] → argument: Rotate ±(L/10·30)° and ShearX ±L/10·0.3 (random sign);
  Color / Contrast / Sharpness enhancement factor L/10·1.8 + 0.1; Solarize threshold ⌊L/10·256⌋;
  PosterizeOriginal bits ⌊L/10·4⌋ + 4 (8 bits is a no-op); AutoContrast / Equalize / Invert ignore L;
* geometric operations fill with (128, 128, 128) and resample with bilinear or bicubic, chosen at random
  per operation.

torchvision's ``AutoAugment(AutoAugmentPolicy.IMAGENET)`` has the same 25 pairs but maps magnitudes
differently (e.g. its posterize gets *stronger* with the level), so it is not equivalent to this transform.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from PIL import Image, ImageEnhance, ImageOps

from reidkit.data.transforms.base import Generator, Transform, check_probability, rand_bool, rand_int

MAX_LEVEL = 10
GEOMETRIC_OPS: frozenset[str] = frozenset({"Rotate", "ShearX"})
OP_NAMES: tuple[str, ...] = (
    "AutoContrast",
    "Equalize",
    "Invert",
    "Rotate",
    "PosterizeOriginal",
    "Solarize",
    "Color",
    "Contrast",
    "Sharpness",
    "ShearX",
)
_RESAMPLES = (Image.Resampling.BILINEAR, Image.Resampling.BICUBIC)


@dataclass(frozen=True)
class AugmentOp:
    """One operation of a sub-policy: ``name`` applied with probability ``prob`` at ``level`` (0–10)."""

    name: str
    prob: float
    level: int

    def __post_init__(self) -> None:
        if self.name not in OP_NAMES:
            raise ValueError(f"unknown AutoAugment operation {self.name!r}; valid: {', '.join(OP_NAMES)}")
        check_probability(f"{self.name} probability", self.prob)
        if isinstance(self.level, bool) or not isinstance(self.level, int) or not 0 <= self.level <= MAX_LEVEL:
            raise ValueError(f"{self.name} level must be an integer in [0, {MAX_LEVEL}], got {self.level!r}")

    @property
    def argument(self) -> float | int | None:
        """The magnitude this level maps to (unsigned for Rotate/ShearX); see :func:`level_to_arg`."""
        return level_to_arg(self.name, self.level)


SubPolicy = tuple[AugmentOp, AugmentOp]


def _policy(rows: Sequence[tuple[tuple[str, float, int], tuple[str, float, int]]]) -> tuple[SubPolicy, ...]:
    return tuple((AugmentOp(*a), AugmentOp(*b)) for a, b in rows)


#: The ImageNet "original" policy of AutoAugment (§9.2), 25 sub-policies of (name, probability, level).
IMAGENET_ORIGINAL_POLICY: tuple[SubPolicy, ...] = _policy(
    [
        (("PosterizeOriginal", 0.4, 8), ("Rotate", 0.6, 9)),
        (("Solarize", 0.6, 5), ("AutoContrast", 0.6, 5)),
        (("Equalize", 0.8, 8), ("Equalize", 0.6, 3)),
        (("PosterizeOriginal", 0.6, 7), ("PosterizeOriginal", 0.6, 6)),
        (("Equalize", 0.4, 7), ("Solarize", 0.2, 4)),
        (("Equalize", 0.4, 4), ("Rotate", 0.8, 8)),
        (("Solarize", 0.6, 3), ("Equalize", 0.6, 7)),
        (("PosterizeOriginal", 0.8, 5), ("Equalize", 1.0, 2)),
        (("Rotate", 0.2, 3), ("Solarize", 0.6, 8)),
        (("Equalize", 0.6, 8), ("PosterizeOriginal", 0.4, 6)),
        (("Rotate", 0.8, 8), ("Color", 0.4, 0)),
        (("Rotate", 0.4, 9), ("Equalize", 0.6, 2)),
        (("Equalize", 0.0, 7), ("Equalize", 0.8, 8)),
        (("Invert", 0.6, 4), ("Equalize", 1.0, 8)),
        (("Color", 0.6, 4), ("Contrast", 1.0, 8)),
        (("Rotate", 0.8, 8), ("Color", 1.0, 2)),
        (("Color", 0.8, 8), ("Solarize", 0.8, 7)),
        (("Sharpness", 0.4, 7), ("Invert", 0.6, 8)),
        (("ShearX", 0.6, 5), ("Equalize", 1.0, 9)),
        (("Color", 0.4, 0), ("Equalize", 0.6, 3)),
        (("Equalize", 0.4, 7), ("Solarize", 0.2, 4)),
        (("Solarize", 0.6, 5), ("AutoContrast", 0.6, 5)),
        (("Invert", 0.6, 4), ("Equalize", 1.0, 8)),
        (("Color", 0.6, 4), ("Contrast", 1.0, 8)),
        (("Equalize", 0.8, 8), ("Equalize", 0.6, 3)),
    ]
)


def level_to_arg(name: str, level: int) -> float | int | None:
    """Map a level in [0, 10] to the operation's argument (timm "original" mapping).

    Rotate: degrees L/10·30; ShearX: shear L/10·0.3 (both get a random sign when applied);
    Color/Contrast/Sharpness: factor L/10·1.8 + 0.1 (1.0 = unchanged); Solarize: threshold ⌊L/10·256⌋
    (256 = no-op); PosterizeOriginal: bits ⌊L/10·4⌋ + 4 (8 = no-op); AutoContrast/Equalize/Invert: ``None``.
    """
    frac = level / MAX_LEVEL
    if name == "Rotate":
        return frac * 30.0
    if name == "ShearX":
        return frac * 0.3
    if name in ("Color", "Contrast", "Sharpness"):
        return frac * 1.8 + 0.1
    if name == "Solarize":
        return int(frac * 256)
    if name == "PosterizeOriginal":
        return int(frac * 4) + 4
    if name in ("AutoContrast", "Equalize", "Invert"):
        return None
    raise ValueError(f"unknown AutoAugment operation {name!r}; valid: {', '.join(OP_NAMES)}")


def _rotate(img: Image.Image, degrees: float, resample: Image.Resampling, fill: tuple[int, ...]) -> Image.Image:
    return img.rotate(degrees, resample=resample, fillcolor=fill)


def _shear_x(img: Image.Image, shear: float, resample: Image.Resampling, fill: tuple[int, ...]) -> Image.Image:
    # output (x, y) samples input (x + shear·y, y)
    return img.transform(img.size, Image.Transform.AFFINE, (1, shear, 0, 0, 1, 0), resample=resample, fillcolor=fill)


_PHOTOMETRIC: dict[str, Callable[[Image.Image, Any], Image.Image]] = {
    "AutoContrast": lambda img, _: ImageOps.autocontrast(img),
    "Equalize": lambda img, _: ImageOps.equalize(img),
    "Invert": lambda img, _: ImageOps.invert(img),
    "Solarize": lambda img, threshold: ImageOps.solarize(img, threshold),
    "PosterizeOriginal": lambda img, bits: ImageOps.posterize(img, bits),
    "Color": lambda img, factor: ImageEnhance.Color(img).enhance(factor),
    "Contrast": lambda img, factor: ImageEnhance.Contrast(img).enhance(factor),
    "Sharpness": lambda img, factor: ImageEnhance.Sharpness(img).enhance(factor),
}


def apply_op(
    img: Image.Image, op: AugmentOp, generator: Generator = None, fill: tuple[int, int, int] = (128, 128, 128)
) -> Image.Image:
    """Apply one operation with its probability: draw ``U < prob``; for Rotate/ShearX also a sign and a filter."""
    if not rand_bool(op.prob, generator):
        return img
    arg = op.argument
    if op.name in GEOMETRIC_OPS:
        magnitude = float(arg)  # type: ignore[arg-type]
        signed = -magnitude if rand_bool(0.5, generator) else magnitude
        resample = _RESAMPLES[rand_int(0, len(_RESAMPLES) - 1, generator)]
        geometric = _rotate if op.name == "Rotate" else _shear_x
        return geometric(img, signed, resample, fill)
    return _PHOTOMETRIC[op.name](img, arg)


class AutoAugment(Transform):
    """AutoAugment, ImageNet "original" policy, applied as a whole with probability ``p``.

    Cubuk et al., "AutoAugment: Learning Augmentation Strategies from Data", CVPR 2019, arXiv 1805.09501;
    policy and level mapping as timm / FastReID (see the module docstring and :func:`level_to_arg`).
    With probability ``p`` pick one of the 25 sub-policies uniformly and apply its two operations in order,
    each with its own probability. ``p`` defaults to 0.1 (FastReID SBS and the seed's recipe B).

    Input: an RGB PIL image at native resolution (first step of the §9.1 train order); output: PIL, same size.
    """

    random = True

    def __init__(
        self,
        p: float = 0.1,
        policy: Sequence[SubPolicy] = IMAGENET_ORIGINAL_POLICY,
        fill: tuple[int, int, int] = (128, 128, 128),
    ) -> None:
        self.p = check_probability("p", p)
        self.policy: tuple[SubPolicy, ...] = tuple(policy)
        if not self.policy:
            raise ValueError("policy must contain at least one sub-policy")
        if len(fill) != 3 or not all(isinstance(v, int) and 0 <= v <= 255 for v in fill):
            raise ValueError(f"fill must be an (R, G, B) triple of integers in [0, 255], got {fill!r}")
        self.fill = tuple(fill)

    def _params(self) -> dict[str, Any]:
        name = "imagenet_original" if self.policy == IMAGENET_ORIGINAL_POLICY else f"<{len(self.policy)} sub-policies>"
        return {"p": self.p, "policy": name, "fill": self.fill}

    def __call__(self, img: Image.Image, generator: Generator = None) -> Image.Image:
        if not isinstance(img, Image.Image):
            raise TypeError(f"AutoAugment expects a PIL image (before ToTensor), got {type(img).__name__}")
        if img.mode != "RGB":
            raise ValueError(f"AutoAugment expects an RGB PIL image, got mode {img.mode!r} (use img.convert('RGB'))")
        if not rand_bool(self.p, generator):
            return img
        sub_policy = self.policy[rand_int(0, len(self.policy) - 1, generator)]
        for op in sub_policy:
            img = apply_op(img, op, generator, self.fill)
        return img
