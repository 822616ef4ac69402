"""Drawing one pedestrian with PIL primitives: head, hair, torso, arms, legs, garments, shoes and bag.

A person is drawn into an existing RGB image (the scene) at a :class:`Placement` (centre x, head-top y
and height in pixels) in a :class:`Pose` (viewpoint and walking phase). Body coordinates are in units
of the person's height: ``u`` across (positive = image right), ``v`` down from the top of the head.
The caller draws at twice the output resolution and downsamples, which anti-aliases every edge.

What a viewpoint shows:

* ``front`` -- face (skin, eyes; hair on top, long hair framing it), the logo, backpack *straps*;
* ``back`` -- the back of the head (hair only, long hair over the shoulders), the whole backpack;
* ``left`` / ``right`` -- a profile walking to that side: scissoring legs, one arm in front of the
  torso and the other behind, the backpack as a bump behind the back, face at the front of the head.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw

from .identity import Identity
from .palette import RGB, scale

VIEWS: tuple[str, ...] = ("front", "back", "left", "right")

Point = tuple[float, float]

# Body proportions in units of the height (an average person; ``build`` scales widths).
HEAD_V, HEAD_RX, HEAD_RY = 0.068, 0.05, 0.068
SHOULDER_V, SHOULDER_U = 0.18, 0.112
WAIST_V, WAIST_U = 0.38, 0.086
SHIRT_HEM_V, SHIRT_HEM_U = 0.535, 0.098
HIP_V, HIP_U = 0.52, 0.048
KNEE_V, ANKLE_V = 0.735, 0.955
THIGH_LEN, SHIN_LEN = KNEE_V - HIP_V, ANKLE_V - KNEE_V
UPPER_ARM_LEN, FOREARM_LEN = 0.165, 0.15
FAR_SHADE = 0.78


@dataclass(frozen=True)
class Placement:
    """Where the person stands in the image: centre ``cx``, head-top ``top`` and ``height``, in pixels.

    ``stretch`` widens the person horizontally: detector boxes are narrower than Market-1501's 1:2
    crops, so resizing them to 64 x 128 stretches people by about 1.2-1.5x.
    """

    cx: float
    top: float
    height: float
    stretch: float = 1.0


@dataclass(frozen=True)
class Pose:
    """Viewpoint (one of :data:`VIEWS`), walking ``phase`` in radians and ``stride`` amplitude (0..1)."""

    view: str
    phase: float = 0.0
    stride: float = 1.0

    def __post_init__(self) -> None:
        if self.view not in VIEWS:
            raise ValueError(f"view {self.view!r}: valid views are {', '.join(VIEWS)}")


class _Body:
    """Maps body coordinates to pixels and draws primitives for one person."""

    def __init__(self, image: Image.Image, ident: Identity, placement: Placement, pose: Pose) -> None:
        self.image = image
        self.draw = ImageDraw.Draw(image)
        self.ident = ident
        self.pose = pose
        self.h = placement.height * ident.stature
        self.cx = placement.cx
        self.top = placement.top + placement.height - self.h  # feet stay where the placement puts them
        self.mirror = -1.0 if pose.view == "left" else 1.0
        self.stretch = placement.stretch
        self.b = ident.build
        self.dy = 0.0  # vertical bob of the walk (in body units)

    def p(self, u: float, v: float) -> Point:
        """Pixel position of body point ``(u, v)``."""
        return (self.cx + self.mirror * u * self.h * self.stretch, self.top + (v + self.dy) * self.h)

    def px(self, length: float) -> float:
        """A body length in pixels."""
        return length * self.h

    def ellipse(self, u: float, v: float, ru: float, rv: float, fill: RGB, edge: RGB | None = None) -> None:
        """An ellipse centred on ``(u, v)`` with radii ``ru``, ``rv`` (body units)."""
        x, y = self.p(u, v)
        rx, ry = self.px(ru) * self.stretch, self.px(rv)
        self.draw.ellipse((x - rx, y - ry, x + rx, y + ry), fill=fill, outline=edge)

    def polygon(self, points: list[Point], fill: RGB, edge: RGB | None = None) -> None:
        """A polygon through body points."""
        self.draw.polygon([self.p(u, v) for u, v in points], fill=fill, outline=edge)

    def limb(self, a: Point, b: Point, w0: float, w1: float, fill: RGB | int,
             draw: ImageDraw.ImageDraw | None = None) -> None:
        """A tapered capsule from body point ``a`` (width ``w0``) to ``b`` (width ``w1``)."""
        _capsule(draw or self.draw, self.p(*a), self.p(*b), self.px(w0) * self.stretch, self.px(w1) * self.stretch, fill)

    def stroked_limb(self, a: Point, b: Point, w0: float, w1: float, fill: RGB) -> None:
        """A limb with a one-pixel darker rim, so that an arm stays visible over a same-coloured torso."""
        rim = 2.0 / self.h
        self.limb(a, b, w0 + rim, w1 + rim, scale(fill, 0.62))
        self.limb(a, b, w0, w1, fill)


def _capsule(draw: ImageDraw.ImageDraw, a: Point, b: Point, w0: float, w1: float, fill: RGB | int) -> None:
    """Quadrilateral between two discs of diameters ``w0`` and ``w1`` centred on ``a`` and ``b``."""
    dx, dy = b[0] - a[0], b[1] - a[1]
    n = math.hypot(dx, dy) or 1.0
    nx, ny = -dy / n, dx / n
    r0, r1 = w0 / 2, w1 / 2
    quad = [(a[0] + nx * r0, a[1] + ny * r0), (b[0] + nx * r1, b[1] + ny * r1),
            (b[0] - nx * r1, b[1] - ny * r1), (a[0] - nx * r0, a[1] - ny * r0)]
    draw.polygon(quad, fill=fill)
    draw.ellipse((a[0] - r0, a[1] - r0, a[0] + r0, a[1] + r0), fill=fill)
    draw.ellipse((b[0] - r1, b[1] - r1, b[0] + r1, b[1] + r1), fill=fill)


def _along(a: Point, b: Point, t: float) -> Point:
    return (a[0] + t * (b[0] - a[0]), a[1] + t * (b[1] - a[1]))


def _swing(origin: Point, angle: float, length: float) -> Point:
    """End of a segment of ``length`` hanging from ``origin``, rotated ``angle`` rad forward (+u)."""
    return (origin[0] + math.sin(angle) * length, origin[1] + math.cos(angle) * length)


# ------------------------------------------------------------------------------------------ garments


def _upper_texture(ident: Identity, size: tuple[int, int], top: float, cx: float, h: float) -> Image.Image:
    """The upper garment's cloth over the whole canvas: solid, horizontal stripes or checks."""
    width, height = size
    base = np.array(ident.upper.rgb, dtype=np.float32)
    second = np.array(ident.pattern_colour.rgb, dtype=np.float32)
    if ident.pattern not in ("stripes", "checks"):
        return Image.new("RGB", size, ident.upper.rgb)
    period = 0.042 * h if ident.pattern == "stripes" else 0.05 * h
    rows = ((np.arange(height, dtype=np.float32) - top) / period) % 1.0 < 0.45
    if ident.pattern == "stripes":
        mask = np.broadcast_to(rows[:, None], (height, width))
        weight = mask.astype(np.float32)[..., None]
    else:
        cols = ((np.arange(width, dtype=np.float32) - cx) / period) % 1.0 < 0.5
        weight = (0.45 * rows[:, None] + 0.45 * cols[None, :]).astype(np.float32)[..., None]
    cloth = base * (1 - weight) + second * weight
    return Image.fromarray(np.round(cloth).astype(np.uint8), "RGB")


class _Cloth:
    """Paints shapes with the upper garment's texture through a mask (patterns follow the body)."""

    def __init__(self, body: _Body) -> None:
        self.body = body
        self.texture = _upper_texture(body.ident, body.image.size, body.top, body.cx, body.h)

    def paint(self, shapes: list[tuple[str, tuple]]) -> None:
        """``shapes``: ``("poly", points)`` or ``("limb", (a, b, w0, w1))`` in body units."""
        mask = Image.new("L", self.body.image.size, 0)
        mdraw = ImageDraw.Draw(mask)
        for kind, args in shapes:
            if kind == "poly":
                mdraw.polygon([self.body.p(u, v) for u, v in args], fill=255)
            else:
                self.body.limb(*args, fill=255, draw=mdraw)
        self.body.image.paste(self.texture, (0, 0), mask)


# -------------------------------------------------------------------------------------- body parts


def _leg(body: _Body, hip: Point, knee: Point, ankle: Point, shade: float, forward: float) -> None:
    """Skin leg, the lower garment over it, then the shoe (``forward``: toe direction, 0 = to camera)."""
    ident, b = body.ident, body.b
    skin, lower = scale(ident.skin.rgb, shade), scale(ident.lower.rgb, shade)
    body.limb(hip, knee, 0.078 * b, 0.062 * b, skin)
    body.limb(knee, ankle, 0.062 * b, 0.046 * b, skin)
    if ident.lower_kind == "trousers":
        body.limb(hip, knee, 0.082 * b, 0.066 * b, lower)
        body.limb(knee, _along(knee, ankle, 0.96), 0.066 * b, 0.054 * b, lower)
    elif ident.lower_kind == "shorts":
        body.limb(hip, _along(hip, knee, 0.55), 0.086 * b, 0.078 * b, lower)
    shoe = scale(ident.shoes.rgb, shade)
    if forward:
        body.ellipse(ankle[0] + 0.022 * forward, ankle[1] + 0.02, 0.042, 0.021, shoe, scale(shoe, 0.6))
    else:
        body.ellipse(ankle[0], ankle[1] + 0.02, 0.03, 0.024, shoe, scale(shoe, 0.6))


def _pelvis(body: _Body, side: bool) -> None:
    """Hips of the lower garment (a skirt flares to the knees)."""
    ident, b = body.ident, body.b
    colour = ident.lower.rgb
    if ident.lower_kind == "skirt":
        hem = 0.105 if side else 0.14
        waist = 0.062 if side else 0.094
        body.polygon([(-waist * b, 0.45), (waist * b, 0.45), (hem * b, 0.70), (-hem * b, 0.70)],
                     colour, scale(colour, 0.7))
    else:
        half = 0.064 if side else 0.096
        body.polygon([(-half * b, 0.45), (half * b, 0.45), (half * b, 0.57), (-half * b, 0.57)], colour)


def _arm(body: _Body, cloth: _Cloth, shoulder: Point, elbow: Point, wrist: Point, shade: float) -> None:
    """Skin arm and hand, then the sleeve (short: half the upper arm; long: to the wrist)."""
    ident, b = body.ident, body.b
    skin = scale(ident.skin.rgb, shade)
    body.stroked_limb(shoulder, elbow, 0.05 * b, 0.042 * b, skin)
    body.stroked_limb(elbow, wrist, 0.042 * b, 0.036 * b, skin)
    hand = _along(elbow, wrist, 1.12)
    body.ellipse(hand[0], hand[1], 0.022, 0.026, skin)
    edge = scale(ident.upper.rgb, 0.55 * shade)
    if ident.sleeves == "short":
        end = _along(shoulder, elbow, 0.62)
        segments = [(shoulder, end, 0.056 * b, 0.05 * b)]
    else:
        segments = [(shoulder, elbow, 0.058 * b, 0.05 * b), (elbow, _along(elbow, wrist, 0.93), 0.05 * b, 0.046 * b)]
    rim = 2.0 / body.h
    for a, e, w0, w1 in segments:
        body.limb(a, e, w0 + rim, w1 + rim, edge)
    cloth.paint([("limb", seg) for seg in segments])
    if shade < 1:
        _shade_region(body, segments, shade)


def _shade_region(body: _Body, segments: list, shade: float) -> None:
    """Darken the far sleeve (it is in the shadow of the torso)."""
    mask = Image.new("L", body.image.size, 0)
    mdraw = ImageDraw.Draw(mask)
    for seg in segments:
        body.limb(*seg, fill=int(255 * (1 - shade)), draw=mdraw)
    body.image.paste((0, 0, 0), (0, 0), mask)


def _torso_front(body: _Body, cloth: _Cloth) -> None:
    """Shoulders to shirt hem, seen from the front or the back."""
    b = body.b
    su, wu, hu = SHOULDER_U * b, WAIST_U * b, SHIRT_HEM_U * b
    outline = [(-su + 0.015, SHOULDER_V - 0.012), (su - 0.015, SHOULDER_V - 0.012), (su, SHOULDER_V + 0.02),
               (wu + 0.004, WAIST_V - 0.08), (wu, WAIST_V), (hu, SHIRT_HEM_V), (-hu, SHIRT_HEM_V),
               (-wu, WAIST_V), (-wu - 0.004, WAIST_V - 0.08), (-su, SHOULDER_V + 0.02)]
    body.polygon(outline, scale(body.ident.upper.rgb, 0.55))
    inner = [(u * 0.97, v + 0.003) for u, v in outline]
    cloth.paint([("poly", inner)])


def _torso_side(body: _Body, cloth: _Cloth) -> list[Point]:
    """The torso in profile (facing +u); returns its outline."""
    b = body.b
    outline = [(-0.064 * b, SHOULDER_V - 0.01), (0.046 * b, SHOULDER_V - 0.012), (0.074 * b, 0.27),
               (0.064 * b, WAIST_V), (0.076 * b, SHIRT_HEM_V), (-0.074 * b, SHIRT_HEM_V),
               (-0.066 * b, WAIST_V), (-0.08 * b, 0.27)]
    body.polygon(outline, scale(body.ident.upper.rgb, 0.55))
    cloth.paint([("poly", [(u * 0.96, v + 0.003) for u, v in outline])])
    return outline


def _head(body: _Body, view: str) -> None:
    """Neck, head, hair and face for the viewpoint."""
    ident = body.ident
    hd, skin, hair = ident.head, ident.skin.rgb, ident.hair.rgb
    rx, ry = HEAD_RX * hd, HEAD_RY * hd
    body.limb((0.0, 0.11), (0.0, SHOULDER_V), 0.042, 0.046, scale(skin, 0.88))
    long_drop = {"short": 0.0, "medium": 0.05, "long": 0.15}[ident.hair_length]
    hair_edge = scale(hair, 0.7)
    if view == "front":
        if long_drop:  # two strands framing the face, the neck visible between them
            for side in (-1, 1):
                body.polygon([(side * rx * 0.5, HEAD_V), (side * rx * 1.08, HEAD_V),
                              (side * rx * 1.2, HEAD_V + ry + long_drop),
                              (side * rx * 0.62, HEAD_V + ry + long_drop)], hair, hair_edge)
        body.ellipse(0, HEAD_V, rx, ry, skin, scale(skin, 0.75))
        body.ellipse(0, HEAD_V - ry * 0.52, rx * 1.04, ry * 0.55, hair, hair_edge)
        body.polygon([(-rx * 1.02, HEAD_V - ry * 0.5), (rx * 1.02, HEAD_V - ry * 0.5),
                      (rx * 0.8, HEAD_V - ry * 0.28), (-rx * 0.8, HEAD_V - ry * 0.28)], hair)
        eye = scale(skin, 0.3)
        for side in (-1, 1):
            body.ellipse(side * rx * 0.4, HEAD_V + ry * 0.1, 0.007, 0.006, eye)
        body.ellipse(0, HEAD_V + ry * 0.55, rx * 0.28, 0.004, scale(skin, 0.6))
    elif view == "back":
        body.ellipse(0, HEAD_V, rx, ry, hair, hair_edge)
        if long_drop:
            body.polygon([(-rx * 1.0, HEAD_V), (rx * 1.0, HEAD_V), (rx * 1.1, HEAD_V + ry + long_drop),
                          (-rx * 1.1, HEAD_V + ry + long_drop)], hair, hair_edge)
    else:
        if long_drop:
            body.polygon([(-rx * 0.9, HEAD_V), (0.0, HEAD_V), (-rx * 0.2, HEAD_V + ry + long_drop),
                          (-rx * 1.15, HEAD_V + ry + long_drop)], hair, hair_edge)
        body.ellipse(rx * 0.12, HEAD_V, rx * 0.95, ry, skin, scale(skin, 0.75))
        body.ellipse(rx * 0.95, HEAD_V + ry * 0.12, rx * 0.22, ry * 0.16, skin)  # nose
        body.ellipse(-rx * 0.2, HEAD_V - ry * 0.28, rx * 0.86, ry * 0.78, hair, hair_edge)
        body.ellipse(rx * 0.58, HEAD_V + ry * 0.15, 0.006, 0.006, scale(skin, 0.3))


def _logo(body: _Body) -> None:
    """The chest logo, visible from the front only."""
    ident = body.ident
    colour, edge = ident.pattern_colour.rgb, scale(ident.pattern_colour.rgb, 0.7)
    u, v, r = 0.0, 0.285, 0.034 * body.b
    shape = ident.logo_shape
    if shape == "circle":
        body.ellipse(u, v, r, r, colour, edge)
    elif shape == "square":
        body.polygon([(u - r, v - r), (u + r, v - r), (u + r, v + r), (u - r, v + r)], colour, edge)
    elif shape == "triangle":
        body.polygon([(u, v - r * 1.2), (u + r * 1.2, v + r), (u - r * 1.2, v + r)], colour, edge)
    else:
        body.polygon([(u - 2 * r, v - r * 0.45), (u + 2 * r, v - r * 0.45), (u + 2 * r, v + r * 0.45),
                      (u - 2 * r, v + r * 0.45)], colour, edge)


# --------------------------------------------------------------------------------------------- bags


def _backpack_back(body: _Body) -> None:
    b, colour = body.b, body.ident.bag_colour.rgb
    body.polygon([(-0.084 * b, 0.205), (0.084 * b, 0.205), (0.09 * b, 0.445), (-0.09 * b, 0.445)],
                 colour, scale(colour, 0.55))
    body.polygon([(-0.06 * b, 0.33), (0.06 * b, 0.33), (0.062 * b, 0.43), (-0.062 * b, 0.43)],
                 scale(colour, 0.8), scale(colour, 0.5))
    body.limb((-0.03 * b, 0.2), (0.03 * b, 0.2), 0.012, 0.012, scale(colour, 0.7))


def _backpack_straps(body: _Body) -> None:
    b, colour = body.b, scale(body.ident.bag_colour.rgb, 0.9)
    for side in (-1, 1):
        body.limb((side * 0.072 * b, 0.178), (side * 0.068 * b, 0.37), 0.024, 0.022, colour)


def _backpack_bump(body: _Body) -> None:
    b, colour = body.b, body.ident.bag_colour.rgb
    body.polygon([(-0.05 * b, 0.2), (-0.115 * b - 0.03, 0.215), (-0.125 * b - 0.03, 0.44), (-0.05 * b, 0.45)],
                 colour, scale(colour, 0.55))


def _shoulder_bag(body: _Body, strap_from: Point, bag_at: Point) -> None:
    colour = body.ident.bag_colour.rgb
    body.limb(strap_from, bag_at, 0.016, 0.016, scale(colour, 0.8))
    u, v = bag_at
    body.polygon([(u - 0.045, v), (u + 0.045, v), (u + 0.048, v + 0.075), (u - 0.048, v + 0.075)],
                 colour, scale(colour, 0.55))


def _handbag(body: _Body, hand: Point, shade: float = 1.0) -> None:
    colour = scale(body.ident.bag_colour.rgb, shade)
    u, v = hand
    body.limb((u - 0.02, v + 0.035), (u, v), 0.008, 0.008, scale(colour, 0.7))
    body.limb((u + 0.02, v + 0.035), (u, v), 0.008, 0.008, scale(colour, 0.7))
    body.polygon([(u - 0.038, v + 0.03), (u + 0.038, v + 0.03), (u + 0.048, v + 0.1), (u - 0.048, v + 0.1)],
                 colour, scale(colour, 0.55))


# ------------------------------------------------------------------------------------------ views


def _draw_front_or_back(body: _Body, view: str) -> None:
    ident, b, pose = body.ident, body.b, body.pose
    s = math.sin(pose.phase) * pose.stride
    lift = (0.03 * max(0.0, s), 0.03 * max(0.0, -s))
    body.dy = -0.008 * abs(s)
    for side, up in zip((-1, 1), lift):
        hip = (side * HIP_U * b, HIP_V)
        ankle = (side * (HIP_U * b + 0.004), ANKLE_V - up)
        knee = (side * (HIP_U * b + 0.002), KNEE_V - up * 0.4)
        _leg(body, hip, knee, ankle, 1.0, 0.0)
    _pelvis(body, side=False)
    cloth = _Cloth(body)
    hair_long = ident.hair_length != "short"
    _torso_front(body, cloth)
    if view == "front" and ident.pattern == "logo":
        _logo(body)
    # person's right hand: image left from the front, image right from the back
    right = -1 if view == "front" else 1
    hands: dict[int, Point] = {}
    swing = 0.025 * abs(s)  # an arm swinging towards or away from the camera looks shorter
    for side in (-1, 1):
        shoulder = (side * (SHOULDER_U * b - 0.024), SHOULDER_V + 0.022)
        elbow = (side * (SHOULDER_U * b + 0.006), 0.36 - swing)
        wrist = (side * (SHOULDER_U * b + 0.008), 0.5 - 2 * swing)
        _arm(body, cloth, shoulder, elbow, wrist, 1.0)
        hands[side] = _along(elbow, wrist, 1.12)
    if ident.bag == "backpack":
        (_backpack_straps if view == "front" else _backpack_back)(body)
    _head(body, view)
    if view == "back" and hair_long and ident.bag == "backpack":
        rx, ry = HEAD_RX * ident.head, HEAD_RY * ident.head
        drop = {"medium": 0.05, "long": 0.15}[ident.hair_length]
        body.polygon([(-rx, HEAD_V + ry * 0.5), (rx, HEAD_V + ry * 0.5), (rx * 1.1, HEAD_V + ry + drop),
                      (-rx * 1.1, HEAD_V + ry + drop)], ident.hair.rgb, scale(ident.hair.rgb, 0.7))
    if ident.bag == "shoulder bag":
        _shoulder_bag(body, (right * 0.07 * b, SHOULDER_V), (-right * 0.115 * b, 0.47))
    elif ident.bag == "handbag":
        _handbag(body, hands[right])


def _draw_side(body: _Body) -> None:
    """Profile walking towards +u (the ``left`` view is mirrored by the body frame)."""
    ident, b, pose = body.ident, body.b, body.pose
    s = math.sin(pose.phase) * pose.stride
    legs = []
    for sign in (1, -1):  # near leg, far leg
        t = 0.42 * s * sign
        knee_bend = 0.6 * -t if t < 0 else 0.05 * t
        hip = (0.0, HIP_V)
        knee = _swing(hip, t, THIGH_LEN)
        ankle = _swing(knee, t - knee_bend, SHIN_LEN)
        legs.append((hip, knee, ankle))
    lowest = max(leg[2][1] for leg in legs)
    body.dy = ANKLE_V - lowest
    arms = []
    for sign in (1, -1):  # near arm, far arm
        a = -0.42 * s * sign
        shoulder = (-0.005, SHOULDER_V + 0.015)
        elbow = _swing(shoulder, a, UPPER_ARM_LEN)
        wrist = _swing(elbow, a + 0.22 + 0.2 * max(0.0, a), FOREARM_LEN)
        arms.append((shoulder, elbow, wrist))
    # the right-facing view shows the person's right side: the near hand is the right one
    near_is_right = pose.view == "right"
    cloth = _Cloth(body)
    _arm(body, cloth, *arms[1], FAR_SHADE)
    if ident.bag == "handbag" and not near_is_right:
        _handbag(body, _along(arms[1][1], arms[1][2], 1.12), FAR_SHADE)
    _leg(body, *legs[1], FAR_SHADE, 1.0)
    if ident.bag == "shoulder bag" and near_is_right:  # bag on the left hip, behind the body
        _shoulder_bag(body, (0.0, SHOULDER_V), (-0.025, 0.46))
    if ident.bag == "backpack":
        _backpack_bump(body)
    _leg(body, *legs[0], 1.0, 1.0)
    _pelvis(body, side=True)
    _torso_side(body, cloth)
    if ident.bag == "backpack":
        body.limb((-0.01 * b, SHOULDER_V - 0.005), (0.05 * b, 0.34), 0.02, 0.018, scale(ident.bag_colour.rgb, 0.85))
    if ident.bag == "shoulder bag" and not near_is_right:
        _shoulder_bag(body, (-0.03 * b, SHOULDER_V), (0.015, 0.47))
    elif ident.bag == "shoulder bag":
        body.limb((-0.03 * b, SHOULDER_V), (0.05 * b, 0.46), 0.016, 0.016, scale(ident.bag_colour.rgb, 0.8))
    _head(body, "side")
    _arm(body, cloth, *arms[0], 1.0)
    if ident.bag == "handbag" and near_is_right:
        _handbag(body, _along(arms[0][1], arms[0][2], 1.12))


def draw_person(image: Image.Image, ident: Identity, placement: Placement, pose: Pose) -> None:
    """Draw ``ident`` into ``image`` (RGB, modified in place) at ``placement`` in ``pose``."""
    if image.mode != "RGB":
        raise ValueError(f"draw_person needs an RGB image, got mode {image.mode!r}")
    body = _Body(image, ident, placement, pose)
    if pose.view in ("front", "back"):
        _draw_front_or_back(body, pose.view)
    else:
        _draw_side(body)

