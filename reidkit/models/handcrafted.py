"""Hand-crafted re-ID features: stripe colour histograms, the classic learning-free baseline.

Inspired by the colour parts of ELF (Gray & Tao, "Viewpoint Invariant Pedestrian Recognition with an
Ensemble of Localized Features", ECCV 2008) and LOMO (Liao et al., "Person Re-identification by Local
Maximal Occurrence Representation and Metric Learning", CVPR 2015): the image is cut into horizontal
stripes (head, shoulders, torso, ..., feet) and each stripe is described by a joint HSV histogram.
Stripes keep the vertical layout ("red top over blue trousers") that one global histogram would lose,
while staying invariant to horizontal shifts and viewpoint.
"""
from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np
from PIL import Image

ImageLike = str | os.PathLike | np.ndarray


def _as_hsv(image: ImageLike) -> np.ndarray:
    """``(H, W, 3)`` uint8 HSV (PIL convention: every channel in 0..255) of a path or an RGB array."""
    if isinstance(image, np.ndarray):
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise ValueError(f"an image array must be (H, W, 3) uint8 RGB, got {image.shape} {image.dtype}")
        return np.asarray(Image.fromarray(image, "RGB").convert("HSV"))
    with Image.open(image) as img:
        return np.asarray(img.convert("RGB").convert("HSV"))


def _check_bins(bins: int | tuple[int, int, int]) -> tuple[int, int, int]:
    triple = (bins,) * 3 if isinstance(bins, int) else tuple(bins)
    if len(triple) != 3 or any(not isinstance(b, int) or isinstance(b, bool) or not 1 <= b <= 256 for b in triple):
        raise ValueError(f"bins must be an int or three ints in 1..256 (H, S, V), got {bins!r}")
    return triple  # type: ignore[return-value]


def color_histogram(
    image: ImageLike,
    bins: int | tuple[int, int, int] = (8, 4, 4),
    stripes: int = 6,
    sqrt: bool = True,
) -> np.ndarray:
    """The descriptor of one image (see :func:`color_histogram_features`), float32 of length
    ``stripes * bH * bS * bV``."""
    bh, bs, bv = _check_bins(bins)
    if isinstance(stripes, bool) or not isinstance(stripes, int) or stripes < 1:
        raise ValueError(f"stripes must be a positive int, got {stripes!r}")
    hsv = _as_hsv(image).astype(np.int64)
    if hsv.shape[0] < stripes:
        raise ValueError(f"image of height {hsv.shape[0]} cannot be cut into {stripes} stripes")
    # bin index of each channel: floor(value * bins / 256), joint index h * (bS * bV) + s * bV + v
    codes = (hsv[..., 0] * bh // 256) * (bs * bv) + (hsv[..., 1] * bs // 256) * bv + hsv[..., 2] * bv // 256
    size = bh * bs * bv
    parts = []
    for band in np.array_split(codes, stripes, axis=0):
        hist = np.bincount(band.ravel(), minlength=size).astype(np.float64)
        hist /= hist.sum()
        parts.append(np.sqrt(hist) if sqrt else hist)
    feature = np.concatenate(parts)
    return (feature / np.linalg.norm(feature)).astype(np.float32)


def color_histogram_features(
    paths: Sequence[ImageLike],
    bins: int | tuple[int, int, int] = (8, 4, 4),
    stripes: int = 6,
    sqrt: bool = True,
) -> np.ndarray:
    """Stripe HSV colour histograms of ``paths`` (image files, or ``(H, W, 3)`` uint8 RGB arrays):
    an ``(N, stripes * bH * bS * bV)`` float32 matrix, one L2-normalised row per image.

    For stripe ``s`` (rows split as evenly as possible, top to bottom) with pixel set ``P_s`` and the
    joint HSV bin ``b(p) = (floor(H bH / 256), floor(S bS / 256), floor(V bV / 256))`` of pixel ``p``
    (channels in 0..255)::

        h_s[k] = |{p in P_s : b(p) = k}| / |P_s|            (L1-normalised stripe histogram)
        f      = concat_s( sqrt(h_s) ) / || concat_s( sqrt(h_s) ) ||_2

    The square root (Hellinger kernel, ``sqrt=True``) damps dominant bins such as a large background;
    with ``sqrt=False`` the stripe histograms are concatenated as they are. The final L2 normalisation
    makes the squared Euclidean distance ``2 - 2 cos`` (the ranking of the cosine distance). Default
    ``bins=(8, 4, 4)`` and ``stripes=6`` give 768 dimensions.
    """
    if isinstance(paths, (str, os.PathLike)):
        raise TypeError("paths must be a sequence of images, not a single path")
    size = int(np.prod(_check_bins(bins))) * stripes
    out = np.empty((len(paths), size), dtype=np.float32)
    for row, image in enumerate(paths):
        out[row] = color_histogram(image, bins=bins, stripes=stripes, sqrt=sqrt)
    return out
