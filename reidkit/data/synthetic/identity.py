"""What one SynthReID identity looks like: attributes fixed for life, sampled from a keyed stream.

An identity is everything that does not change between its images: body proportions, skin, hair,
upper garment (colour, pattern, sleeves), lower garment (colour and kind), shoes and bag. About 30% of
the identities of a split are *confusable*: they copy another identity of the same split and change
only one or two attributes ("same outfit, other backpack"), so that re-ID is not solved by a colour
lookup.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import Any, Sequence

import numpy as np

from .keys import Stream, rng_for
from .palette import BAG, HAIR, LOWER, SHOES, SKIN, UPPER, Colour, choose

PATTERNS: dict[str, float] = {"solid": 0.50, "stripes": 0.18, "checks": 0.14, "logo": 0.18}
SLEEVES: dict[str, float] = {"short": 0.45, "long": 0.55}
LOWER_KINDS: dict[str, float] = {"trousers": 0.70, "shorts": 0.17, "skirt": 0.13}
HAIR_LENGTHS: dict[str, float] = {"short": 0.50, "medium": 0.25, "long": 0.25}
BAGS: dict[str, float] = {"none": 0.42, "backpack": 0.26, "shoulder bag": 0.16, "handbag": 0.16}
LOGO_SHAPES: tuple[str, ...] = ("circle", "square", "triangle", "bar")

#: Attributes a confusable identity may change (one or two of them), with their weights.
DERIVABLE: dict[str, float] = {
    "upper colour": 0.22, "upper pattern": 0.12, "sleeves": 0.06, "lower colour": 0.16, "lower kind": 0.08,
    "shoes": 0.08, "bag": 0.14, "bag colour": 0.08, "hair": 0.06,
}

COLOUR_JITTER = 10


@dataclass(frozen=True)
class Identity:
    """The fixed appearance of one person.

    Proportions are relative to an average body (1.0): ``build`` scales widths, ``head`` the head,
    ``stature`` how much of the bounding box height the person fills. ``derived_from`` is the pid this
    identity copies (confusable) and ``changed`` the attributes it changed; both empty otherwise.
    """

    pid: int
    stature: float
    build: float
    head: float
    skin: Colour
    hair: Colour
    hair_length: str
    upper: Colour
    pattern: str
    pattern_colour: Colour
    logo_shape: str
    sleeves: str
    lower: Colour
    lower_kind: str
    shoes: Colour
    bag: str
    bag_colour: Colour
    derived_from: int | None = None
    changed: tuple[str, ...] = ()

    def describe(self) -> str:
        """A one-line description, e.g. ``"red striped long-sleeved top, denim trousers, ..."``."""
        pattern = {"solid": "", "stripes": f" {self.pattern_colour.name}-striped", "checks":
                   f" {self.pattern_colour.name}-checked", "logo": ""}[self.pattern]
        top = f"{self.upper.name}{pattern} {self.sleeves}-sleeved top"
        if self.pattern == "logo":
            top += f" with a {self.pattern_colour.name} {self.logo_shape} logo"
        parts = [top, f"{self.lower.name} {self.lower_kind}", f"{self.shoes.name} shoes",
                 f"{self.hair_length} {self.hair.name} hair"]
        if self.bag != "none":
            parts.append(f"{self.bag_colour.name} {self.bag}")
        return ", ".join(parts)

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict (colours as ``{"name", "rgb"}``, floats rounded) for the manifest."""
        out: dict[str, Any] = {}
        for key, value in asdict(self).items():
            if isinstance(getattr(self, key), Colour):
                out[key] = {"name": value[0], "rgb": list(value[1])}
            elif isinstance(value, float):
                out[key] = round(value, 4)
            elif isinstance(value, tuple):
                out[key] = list(value)
            else:
                out[key] = value
        out["description"] = self.describe()
        return out


def sample_identity(rng: np.random.Generator, pid: int = 0) -> Identity:
    """An identity with every attribute drawn independently from ``rng`` (used for dataset ids and
    for the anonymous passers-by that occlude or distract)."""
    upper = UPPER.sample(rng, COLOUR_JITTER)
    pattern = choose(rng, PATTERNS)
    return Identity(
        pid=pid,
        stature=float(rng.uniform(0.9, 1.04)),
        build=float(rng.uniform(0.95, 1.3)),
        head=float(rng.uniform(0.92, 1.1)),
        skin=SKIN.sample(rng, 6),
        hair=HAIR.sample(rng, 8),
        hair_length=choose(rng, HAIR_LENGTHS),
        upper=upper,
        pattern=pattern,
        pattern_colour=_pattern_colour(rng, upper),
        logo_shape=LOGO_SHAPES[int(rng.integers(len(LOGO_SHAPES)))],
        sleeves=choose(rng, SLEEVES),
        lower=LOWER.sample(rng, COLOUR_JITTER),
        lower_kind=choose(rng, LOWER_KINDS),
        shoes=SHOES.sample(rng, 8),
        bag=choose(rng, BAGS),
        bag_colour=BAG.sample(rng, COLOUR_JITTER),
    )


def _pattern_colour(rng: np.random.Generator, upper: Colour) -> Colour:
    """A secondary colour that differs from the garment's (stripes, checks, logo)."""
    return UPPER.sample(rng, COLOUR_JITTER, exclude=(upper.name,))


def derive_identity(parent: Identity, rng: np.random.Generator, pid: int) -> Identity:
    """A confusable copy of ``parent`` that changes one or two named attributes (and nothing else but
    slightly re-drawn body proportions). The new value always differs from the parent's."""
    num = 1 if rng.random() < 0.6 else 2
    options = dict(DERIVABLE)
    if parent.bag == "none":
        options.pop("bag colour")
    changed: list[str] = []
    for _ in range(num):
        changed.append(choose(rng, options, exclude=tuple(changed)))
    child = replace(
        parent, pid=pid, derived_from=parent.pid, changed=tuple(sorted(changed)),
        stature=float(np.clip(parent.stature + rng.normal(0, 0.02), 0.9, 1.04)),
        build=float(np.clip(parent.build + rng.normal(0, 0.05), 0.95, 1.3)),
    )
    for attribute in changed:
        child = _change(child, attribute, rng)
    return child


def _change(ident: Identity, attribute: str, rng: np.random.Generator) -> Identity:
    """``ident`` with ``attribute`` re-drawn to a value other than its current one."""
    if attribute == "upper colour":
        upper = UPPER.sample(rng, COLOUR_JITTER, exclude=(ident.upper.name, ident.pattern_colour.name))
        return replace(ident, upper=upper)
    if attribute == "upper pattern":
        pattern = choose(rng, PATTERNS, exclude=(ident.pattern,))
        return replace(ident, pattern=pattern, pattern_colour=_pattern_colour(rng, ident.upper))
    if attribute == "sleeves":
        return replace(ident, sleeves=choose(rng, SLEEVES, exclude=(ident.sleeves,)))
    if attribute == "lower colour":
        return replace(ident, lower=LOWER.sample(rng, COLOUR_JITTER, exclude=(ident.lower.name,)))
    if attribute == "lower kind":
        return replace(ident, lower_kind=choose(rng, LOWER_KINDS, exclude=(ident.lower_kind,)))
    if attribute == "shoes":
        return replace(ident, shoes=SHOES.sample(rng, 8, exclude=(ident.shoes.name,)))
    if attribute == "bag":
        return replace(ident, bag=choose(rng, BAGS, exclude=(ident.bag,)))
    if attribute == "bag colour":
        return replace(ident, bag_colour=BAG.sample(rng, COLOUR_JITTER, exclude=(ident.bag_colour.name,)))
    if attribute == "hair":
        hair = HAIR.sample(rng, 8, exclude=(ident.hair.name,))
        return replace(ident, hair=hair, hair_length=choose(rng, HAIR_LENGTHS, exclude=(ident.hair_length,)))
    raise ValueError(f"unknown attribute {attribute!r}; valid: {', '.join(DERIVABLE)}")


def split_identities(seed: int, pids: Sequence[int], confusable_fraction: float) -> dict[int, Identity]:
    """The identities of one split (train or test), keyed by pid.

    Each pid decides on its own stream whether it is confusable (probability ``confusable_fraction``);
    a confusable pid copies a non-confusable pid *of the same split* (so confusable pairs meet in the
    gallery) chosen on the same stream. Base attributes come from ``Stream.IDENTITY`` keyed by pid,
    so an identity does not depend on the order of ``pids``.
    """
    ordered = sorted(int(p) for p in pids)
    decisions = {pid: rng_for(seed, Stream.CONFUSABLE, pid) for pid in ordered}
    derived = {pid for pid, rng in decisions.items() if rng.random() < confusable_fraction}
    parents = [pid for pid in ordered if pid not in derived]
    if not parents:  # only possible for a split of one or two ids: keep them all independent
        derived, parents = set(), ordered
    out: dict[int, Identity] = {}
    for pid in ordered:
        if pid in derived:
            parent_pid = parents[int(decisions[pid].integers(len(parents)))]
            parent = sample_identity(rng_for(seed, Stream.IDENTITY, parent_pid), parent_pid)
            out[pid] = derive_identity(parent, rng_for(seed, Stream.DERIVE, pid), pid)
        else:
            out[pid] = sample_identity(rng_for(seed, Stream.IDENTITY, pid), pid)
    return out
