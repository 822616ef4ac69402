"""Random streams of the SynthReID generator, keyed so that no result depends on order or workers.

Every random decision draws from ``numpy.random.default_rng([seed, stream, *keys])``: the seed of the
dataset, a stream id naming *what* is decided (an identity, a camera, one image, ...) and the keys naming
*which* one (a pid, a camera, an image index). Rendering image 7 of pid 12 therefore gives the same
pixels whether it runs first or last, in the main process or in a worker.
"""
from __future__ import annotations

from enum import IntEnum

import numpy as np


class Stream(IntEnum):
    """Stream ids (never renumber one: that would change every dataset of a seed)."""

    PIDS = 1  # shuffling pids over 1..N and splitting them into train / test
    IDENTITY = 2  # the base attributes of one identity
    CONFUSABLE = 3  # whether an identity is derived from another one, and from which
    DERIVE = 4  # the one or two attributes a derived identity changes
    CAMERA = 5  # the style of one camera (scene, colour cast, blur, ...)
    SCENES = 6  # which scene each camera films
    CAMERAS_OF_ID = 7  # the cameras one identity is seen by and its image counts
    QUERY = 8  # which image of an (identity, camera) is the query
    NAMES = 9  # frame, sequence and box numbers of the file names
    IMAGE = 10  # everything that varies in one image (viewpoint, pose, crop, occlusion, ...)
    EXTRAS = 11  # cameras of distractor and junk images
    SINGLE_CAMERA = 12  # which test identities are seen by one camera only
    SHEET = 13  # identity sheets for notebooks


class Kind(IntEnum):
    """What an image shows; part of the image key so that distractor 3 and junk 3 differ."""

    PERSON = 0
    DISTRACTOR = 1
    JUNK = 2


def rng_for(seed: int, stream: Stream, *keys: int) -> np.random.Generator:
    """The generator of one decision: ``default_rng([seed, stream, *keys])`` (all keys non-negative)."""
    return np.random.default_rng([int(seed), int(stream), *(int(k) for k in keys)])
