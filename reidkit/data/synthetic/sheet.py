"""Pictures of identities for notebooks: one identity under every viewpoint, on a plain background."""
from __future__ import annotations

import numpy as np
from PIL import Image

from .compose import CANVAS, OUT_SIZE
from .identity import Identity
from .plan import plan_dataset
from .presets import PRESETS, SynthPreset
from .render import VIEWS, Placement, Pose, draw_person


def dataset_identities(preset: str | SynthPreset = "tiny", seed: int = 0) -> dict[int, Identity]:
    """The identities of SynthReID ``(preset, seed)`` by pid, without rendering anything."""
    if isinstance(preset, str):
        if preset not in PRESETS:
            raise ValueError(f"unknown SynthReID preset {preset!r}; valid presets: {', '.join(PRESETS)}")
        preset = PRESETS[preset]
    return plan_dataset(preset, seed).identities


def render_identity_sheet(
    identity: Identity,
    views: tuple[str, ...] = VIEWS,
    background: tuple[int, int, int] = (200, 200, 196),
    phase: float = 0.9,
) -> dict[str, np.ndarray]:
    """``{view: (128, 64, 3) uint8 image}`` of ``identity`` in each of ``views``, walking at ``phase``,
    without camera effects (so that what differs between the images is the viewpoint only)."""
    sheet = {}
    width, height = CANVAS
    for view in views:
        canvas = Image.new("RGB", CANVAS, background)
        draw_person(canvas, identity, Placement(width / 2, height * 0.05, height * 0.92), Pose(view, phase, 1.0))
        sheet[view] = np.asarray(canvas.resize(OUT_SIZE, Image.BOX))
    return sheet
