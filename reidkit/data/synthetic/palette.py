"""Named colour tables of SynthReID with the frequencies they are sampled with.

Names matter: the manifest says "red backpack", and confusable identities are defined by changing a
*named* colour. Frequencies loosely follow street clothing (many dark tops and trousers, jeans-blue
lower garments, black and white shoes); each identity then jitters its RGB slightly so that two "navy"
tops are not pixel-identical.
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np

RGB = tuple[int, int, int]


class Colour(NamedTuple):
    """A named colour and the RGB it is drawn with."""

    name: str
    rgb: RGB


class Palette(NamedTuple):
    """Names, base RGB values and sampling weights of one attribute's colours."""

    names: tuple[str, ...]
    rgbs: tuple[RGB, ...]
    weights: tuple[float, ...]

    def sample(self, rng: np.random.Generator, jitter: int = 0, exclude: tuple[str, ...] = ()) -> Colour:
        """A colour drawn by weight (never one of ``exclude``), its RGB moved by up to ``jitter`` per channel."""
        weights = np.array([0.0 if n in exclude else w for n, w in zip(self.names, self.weights)])
        if weights.sum() <= 0:
            raise ValueError(f"no colour left to sample after excluding {exclude}")
        k = int(rng.choice(len(self.names), p=weights / weights.sum()))
        rgb = np.array(self.rgbs[k]) + (rng.integers(-jitter, jitter + 1, size=3) if jitter else 0)
        return Colour(self.names[k], tuple(int(c) for c in np.clip(rgb, 0, 255)))  # type: ignore[arg-type]


def _palette(table: list[tuple[str, RGB, float]]) -> Palette:
    names, rgbs, weights = zip(*table)
    return Palette(tuple(names), tuple(rgbs), tuple(weights))


BLACK: RGB = (24, 24, 27)

UPPER = _palette([
    ("black", BLACK, 0.13), ("charcoal", (62, 62, 68), 0.06), ("grey", (128, 128, 132), 0.06),
    ("white", (234, 234, 230), 0.10), ("navy", (30, 40, 92), 0.07), ("blue", (40, 92, 190), 0.07),
    ("light blue", (132, 182, 226), 0.05), ("red", (192, 32, 38), 0.07), ("maroon", (112, 22, 34), 0.03),
    ("green", (40, 132, 62), 0.05), ("olive", (102, 112, 52), 0.03), ("beige", (212, 192, 150), 0.05),
    ("brown", (112, 72, 42), 0.04), ("yellow", (232, 202, 42), 0.04), ("orange", (236, 122, 32), 0.03),
    ("pink", (236, 142, 182), 0.04), ("purple", (112, 52, 142), 0.03), ("teal", (22, 132, 132), 0.02),
])

LOWER = _palette([
    ("black", BLACK, 0.24), ("charcoal", (62, 62, 68), 0.10), ("grey", (128, 128, 132), 0.09),
    ("navy", (30, 40, 92), 0.10), ("denim", (58, 88, 138), 0.17), ("light denim", (122, 152, 192), 0.06),
    ("khaki", (190, 170, 120), 0.08), ("brown", (112, 72, 42), 0.05), ("white", (234, 234, 230), 0.04),
    ("olive", (102, 112, 52), 0.03), ("red", (192, 32, 38), 0.01), ("pink", (236, 142, 182), 0.01),
    ("green", (40, 132, 62), 0.02),
])

SHOES = _palette([
    ("black", BLACK, 0.36), ("white", (238, 238, 236), 0.30), ("grey", (128, 128, 132), 0.10),
    ("brown", (102, 62, 36), 0.14), ("red", (192, 32, 38), 0.04), ("blue", (40, 92, 190), 0.06),
])

BAG = _palette([
    ("black", BLACK, 0.30), ("grey", (128, 128, 132), 0.08), ("navy", (30, 40, 92), 0.08),
    ("red", (192, 32, 38), 0.09), ("brown", (112, 72, 42), 0.10), ("beige", (212, 192, 150), 0.07),
    ("green", (40, 132, 62), 0.06), ("pink", (236, 142, 182), 0.06), ("blue", (40, 92, 190), 0.07),
    ("yellow", (232, 202, 42), 0.05), ("orange", (236, 122, 32), 0.04),
])

SKIN = _palette([
    ("very light", (250, 222, 196), 0.18), ("light", (238, 194, 162), 0.24), ("medium", (220, 170, 128), 0.22),
    ("tan", (192, 134, 96), 0.16), ("brown", (146, 98, 68), 0.12), ("dark", (96, 64, 46), 0.08),
])

HAIR = _palette([
    ("black", (22, 20, 20), 0.36), ("dark brown", (56, 36, 26), 0.24), ("brown", (102, 66, 40), 0.14),
    ("blonde", (204, 168, 104), 0.10), ("auburn", (150, 72, 38), 0.05), ("grey", (164, 162, 158), 0.11),
])


def choose(rng: np.random.Generator, options: dict[str, float], exclude: tuple[str, ...] = ()) -> str:
    """One key of ``options`` drawn by its weight, never one of ``exclude``."""
    keys = [k for k in options if k not in exclude]
    weights = np.array([options[k] for k in keys])
    return keys[int(rng.choice(len(keys), p=weights / weights.sum()))]


def scale(rgb: RGB, factor: float) -> RGB:
    """``rgb`` darkened (factor < 1) or lightened (> 1), clipped to 0..255."""
    return tuple(int(min(255, max(0, round(c * factor)))) for c in rgb)  # type: ignore[return-value]


def mix(a: RGB, b: RGB, t: float) -> RGB:
    """Linear mix ``(1 - t) * a + t * b``."""
    return tuple(int(round((1 - t) * x + t * y)) for x, y in zip(a, b))  # type: ignore[return-value]
