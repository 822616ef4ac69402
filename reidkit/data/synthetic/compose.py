"""One SynthReID image from its random stream: a person crop, a distractor or a junk crop, as JPEG bytes.

Everything is drawn at twice the output size (``CANVAS``, 128 x 256) and downsampled to Market-1501's
64 x 128 by :func:`~reidkit.data.synthetic.scene.apply_camera`. A person crop varies in viewpoint
(drawn from the camera's mix), walking phase, bounding-box shift and scale, partial crops (cut at the
knees or at the head), occlusion by an object or by a passer-by, and JPEG quality (70-95).
"""
from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np
from PIL import Image

from .identity import Identity
from .render import VIEWS, Placement, Pose, draw_person
from .scene import BACKGROUND_OBJECTS, OBJECTS, CameraStyle, apply_camera, draw_background, draw_clutter, \
    draw_object, draw_passer_by

OUT_SIZE: tuple[int, int] = (64, 128)  # (width, height), Market-1501's crop size
CANVAS: tuple[int, int] = (2 * OUT_SIZE[0], 2 * OUT_SIZE[1])
JPEG_QUALITY: tuple[int, int] = (70, 95)
STRETCH: tuple[float, float] = (1.2, 1.5)  # horizontal stretch of people by the box resize
FRONT_OBJECTS: tuple[str, ...] = tuple(OBJECTS)


@dataclass(frozen=True)
class Difficulty:
    """Probabilities of the nuisances of a person crop."""

    partial: float = 0.08  # cut at the knees (or, rarely, at the head)
    occluder_object: float = 0.14  # an object in front of the person
    occluder_person: float = 0.10  # a passer-by in front of the person


DEFAULT_DIFFICULTY = Difficulty()


def _placement(rng: np.random.Generator, partial: bool) -> Placement:
    """Bounding-box jitter: the person's centre, top and height inside the canvas."""
    width, height = CANVAS
    cx = width / 2 + float(np.clip(rng.normal(0, 0.06), -0.14, 0.14)) * width
    stretch = float(rng.uniform(*STRETCH))
    if partial and rng.random() < 0.8:  # cut at the knees / thighs
        h = height * float(rng.uniform(1.22, 1.45))
        return Placement(cx, height * float(rng.uniform(0.01, 0.06)), h, stretch)
    if partial:  # head cut off by the top of the box
        h = height * float(rng.uniform(1.0, 1.1))
        return Placement(cx, -height * float(rng.uniform(0.05, 0.1)), h, stretch)
    h = height * float(rng.uniform(0.84, 0.97))
    foot = height * (1 - float(rng.uniform(0.0, 0.05)))
    return Placement(cx, foot - h, h, stretch)


def _pose(rng: np.random.Generator, style: CameraStyle) -> Pose:
    view = VIEWS[int(rng.choice(len(VIEWS), p=np.array(style.views)))]
    return Pose(view, phase=float(rng.uniform(0, 2 * np.pi)), stride=float(rng.uniform(0.4, 1.0)))


def _occlude(image: Image.Image, rng: np.random.Generator, difficulty: Difficulty, placement: Placement) -> None:
    """Maybe put an object and/or a passer-by in front of the person."""
    if rng.random() < difficulty.occluder_object:
        draw_object(image, rng, FRONT_OBJECTS[int(rng.integers(len(FRONT_OBJECTS)))], front=True)
    if rng.random() < difficulty.occluder_person:
        side = 1 if rng.random() < 0.5 else -1
        cx = placement.cx + side * image.width * float(rng.uniform(0.42, 0.7))
        height = placement.height * float(rng.uniform(0.95, 1.12))
        draw_passer_by(image, rng, height, cx, placement.top + placement.height + float(rng.uniform(0, 12)))


def render_person(ident: Identity, style: CameraStyle, rng: np.random.Generator,
                  difficulty: Difficulty = DEFAULT_DIFFICULTY) -> Image.Image:
    """A 64 x 128 crop of ``ident`` seen by camera ``style``."""
    image = draw_background(rng, style, CANVAS)
    draw_clutter(image, rng, style)
    placement = _placement(rng, partial=rng.random() < difficulty.partial)
    draw_person(image, ident, placement, _pose(rng, style))
    _occlude(image, rng, difficulty, placement)
    return apply_camera(image, rng, style, OUT_SIZE)


def render_distractor(style: CameraStyle, rng: np.random.Generator) -> Image.Image:
    """A pid-0 distractor: a background-only crop, or a partial body of a person not in the dataset."""
    width, height = CANVAS
    image = draw_background(rng, style, CANVAS)
    draw_clutter(image, rng, style)
    mode = rng.random()
    if mode < 0.3:  # background with a few more objects, as a false detection would give
        for _ in range(int(rng.integers(1, 3))):
            draw_object(image, rng, BACKGROUND_OBJECTS[int(rng.integers(len(BACKGROUND_OBJECTS)))], front=True)
    elif mode < 0.7:  # legs and hips of a stranger
        h = height * float(rng.uniform(1.8, 2.4))
        draw_passer_by(image, rng, h, width * float(rng.uniform(0.35, 0.65)), height * float(rng.uniform(0.95, 1.05)))
    else:  # half a stranger at the side of the box
        side = float(rng.choice([-0.05, 1.05]))
        h = height * float(rng.uniform(0.85, 1.0))
        draw_passer_by(image, rng, h, width * side, height * float(rng.uniform(0.95, 1.0)))
    return apply_camera(image, rng, style, OUT_SIZE)


def render_junk(style: CameraStyle, rng: np.random.Generator) -> Image.Image:
    """A pid -1 junk crop: a fragment of a body seen far too close, or a box that mostly misses the person."""
    width, height = CANVAS
    image = draw_background(rng, style, CANVAS)
    if rng.random() < 0.5:  # fragment: a zoomed-in piece of a body
        h = height * float(rng.uniform(3.0, 5.0))
        top = -h * float(rng.uniform(0.15, 0.6))
        draw_passer_by(image, rng, h, width * float(rng.uniform(0.2, 0.8)), top + h)
    else:  # sliver: a small person at the edge of a mostly-background box
        h = height * float(rng.uniform(0.4, 0.8))
        draw_passer_by(image, rng, h, width * float(rng.choice([-0.12, 1.12])), height * float(rng.uniform(0.7, 1.0)))
    return apply_camera(image, rng, style, OUT_SIZE)


def jpeg_bytes(image: Image.Image, rng: np.random.Generator) -> bytes:
    """Encode ``image`` as a baseline JPEG of quality drawn in :data:`JPEG_QUALITY` (no metadata)."""
    buffer = io.BytesIO()
    quality = int(rng.integers(JPEG_QUALITY[0], JPEG_QUALITY[1] + 1))
    image.save(buffer, format="JPEG", quality=quality, optimize=False, progressive=False, subsampling=2)
    return buffer.getvalue()
