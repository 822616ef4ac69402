"""Cameras and what they see around a person: scene backgrounds, clutter, occluders and sensor effects.

Each of the six cameras films one scene (street, park, plaza, campus, mall, car park) with its own
colour cast (per-channel gains), brightness, contrast, blur and noise, and its own mix of viewpoints
(a corridor camera sees people from the front and the back, a side-walk camera sees profiles). These
per-camera differences are what makes cross-camera matching hard, as on Market-1501.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw, ImageEnhance, ImageFilter

from .identity import sample_identity
from .keys import Stream, rng_for
from .palette import RGB, mix, scale
from .render import VIEWS, Placement, Pose, draw_person

#: Per image, scene colours move this far (a mixing weight) towards a random tone.
BACKGROUND_DRIFT: tuple[float, float] = (0.5, 0.95)

SCENES: tuple[str, ...] = ("street", "park", "plaza", "campus", "mall", "carpark")

#: Wall (upper background) and ground colours of each scene.
SCENE_COLOURS: dict[str, tuple[RGB, RGB]] = {
    "street": ((150, 142, 130), (118, 118, 120)),
    "park": ((62, 98, 52), (92, 132, 64)),
    "plaza": ((196, 188, 170), (182, 168, 140)),
    "campus": ((138, 72, 56), (150, 150, 146)),
    "mall": ((214, 210, 200), (196, 192, 186)),
    "carpark": ((96, 100, 104), (70, 72, 76)),
}

#: Viewpoint mixes (front, back, left, right) a camera may have.
VIEW_MIXES: tuple[tuple[float, float, float, float], ...] = (
    (0.35, 0.35, 0.15, 0.15),  # corridor: people walk towards and away from the camera
    (0.15, 0.15, 0.35, 0.35),  # side-walk: mostly profiles
    (0.25, 0.25, 0.25, 0.25),  # open square
    (0.40, 0.20, 0.20, 0.20),  # entrance: mostly arriving people
    (0.20, 0.40, 0.20, 0.20),  # exit
)


@dataclass(frozen=True)
class CameraStyle:
    """Everything fixed per camera. ``gains`` multiply R, G, B; ``blur`` and ``noise`` are the Gaussian
    sigma and noise std at the output resolution; ``views`` the probabilities of :data:`VIEWS`."""

    cam: int
    scene: str
    gains: tuple[float, float, float]
    brightness: float
    contrast: float
    blur: float
    noise: float
    horizon: float
    wall: RGB
    ground: RGB
    views: tuple[float, float, float, float]
    light: float  # horizontal illumination gradient, -1 (lit from the left) .. 1
    saturation: float  # colour saturation of the scene (people keep theirs)

    def to_json(self) -> dict:
        """JSON-ready description for the manifest."""
        return {
            "cam": self.cam, "scene": self.scene, "gains": [round(g, 3) for g in self.gains],
            "brightness": round(self.brightness, 3), "contrast": round(self.contrast, 3),
            "blur": round(self.blur, 3), "noise": round(self.noise, 3),
            "views": dict(zip(VIEWS, self.views)),
        }


def camera_styles(seed: int, num_cameras: int) -> tuple[CameraStyle, ...]:
    """The styles of cameras ``1..num_cameras``: scenes are a seeded permutation, the rest per camera."""
    order = rng_for(seed, Stream.SCENES).permutation(len(SCENES))
    styles = []
    for cam in range(1, num_cameras + 1):
        rng = rng_for(seed, Stream.CAMERA, cam)
        scene = SCENES[int(order[(cam - 1) % len(SCENES)])]
        gains = rng.uniform(0.95, 1.05, size=3)
        gains = gains / gains.mean()
        wall, ground = SCENE_COLOURS[scene]
        styles.append(CameraStyle(
            cam=cam, scene=scene, gains=tuple(float(g) for g in gains),  # type: ignore[arg-type]
            brightness=float(rng.uniform(0.88, 1.1)), contrast=float(rng.uniform(0.9, 1.05)),
            blur=float(rng.uniform(0.0, 1.0)), noise=float(rng.uniform(2.0, 7.0)),
            horizon=float(rng.uniform(0.5, 0.72)),
            wall=_jitter(rng, wall, 18), ground=_jitter(rng, ground, 14),
            views=VIEW_MIXES[int(rng.integers(len(VIEW_MIXES)))], light=float(rng.uniform(-1, 1)),
            saturation=float(rng.uniform(0.25, 0.55)),
        ))
    return tuple(styles)


def _jitter(rng: np.random.Generator, rgb: RGB, amount: int) -> RGB:
    return tuple(int(np.clip(c + rng.integers(-amount, amount + 1), 0, 255)) for c in rgb)  # type: ignore[return-value]


# ------------------------------------------------------------------------------------- backgrounds


def draw_background(rng: np.random.Generator, style: CameraStyle, size: tuple[int, int]) -> Image.Image:
    """A fresh background of the camera's scene: wall or scenery above the horizon, ground below.

    The scene's layout is the camera's, but its colours move towards a random tone each image (a
    camera films different shop fronts, cars, light), so that the background is not a constant that
    a colour histogram could match on.
    """
    width, height = size
    horizon = int(height * (style.horizon + rng.uniform(-0.06, 0.06)))
    wall = mix(style.wall, _random_tone(rng), float(rng.uniform(*BACKGROUND_DRIFT)))
    ground = mix(style.ground, _random_tone(rng), float(rng.uniform(*BACKGROUND_DRIFT)) * 0.7)
    image = Image.new("RGB", size, wall)
    draw = ImageDraw.Draw(image)
    draw.rectangle((0, horizon, width, height), fill=ground)
    _SCENERY[style.scene](draw, rng, wall, width, horizon)
    _ground_marks(draw, rng, style.scene, ground, width, height, horizon)
    return ImageEnhance.Color(image).enhance(style.saturation)


def _random_tone(rng: np.random.Generator) -> RGB:
    grey = float(rng.uniform(40, 220))
    return tuple(int(np.clip(grey + rng.normal(0, 30), 0, 255)) for _ in range(3))  # type: ignore[return-value]


def _street(draw: ImageDraw.ImageDraw, rng: np.random.Generator, wall: RGB, width: int, horizon: int) -> None:
    """Facade with a grid of windows and a shop sign."""
    cell_w, cell_h = int(rng.integers(30, 46)), int(rng.integers(38, 56))
    x0, y0 = -int(rng.integers(0, cell_w)), -int(rng.integers(0, cell_h))
    glass = mix(wall, (40, 56, 76), 0.7)
    for y in range(y0, horizon - 10, cell_h):
        for x in range(x0, width, cell_w):
            draw.rectangle((x + 6, y + 8, x + cell_w - 6, y + cell_h - 10), fill=glass, outline=scale(wall, 0.7))
    if rng.random() < 0.6:
        y = int(horizon - rng.integers(40, 70))
        draw.rectangle((0, y, width, y + 14), fill=tuple(int(c) for c in rng.integers(40, 230, 3)))


def _park(draw: ImageDraw.ImageDraw, rng: np.random.Generator, wall: RGB, width: int, horizon: int) -> None:
    """Sky strip, tree trunks and foliage blobs."""
    sky = int(horizon * rng.uniform(0.1, 0.35))
    draw.rectangle((0, 0, width, sky), fill=(176, 196, 214))
    for _ in range(int(rng.integers(2, 5))):
        x = float(rng.uniform(-10, width + 10))
        draw.rectangle((x - 5, sky + 20, x + 5, horizon + 6), fill=(78, 58, 40))
    for _ in range(int(rng.integers(10, 18))):
        x, y = float(rng.uniform(-20, width + 20)), float(rng.uniform(0, horizon * 0.8))
        r = float(rng.uniform(14, 34))
        leaf = _jitter(rng, scale(wall, float(rng.uniform(0.8, 1.3))), 10)
        draw.ellipse((x - r, y - r * 0.8, x + r, y + r * 0.8), fill=leaf)


def _plaza(draw: ImageDraw.ImageDraw, rng: np.random.Generator, wall: RGB, width: int, horizon: int) -> None:
    """Distant buildings in pale tones."""
    x = -int(rng.integers(0, 40))
    while x < width:
        w = int(rng.integers(28, 60))
        top = int(rng.integers(0, max(1, horizon // 2)))
        tone = _jitter(rng, wall, 22)
        draw.rectangle((x, top, x + w, horizon), fill=tone, outline=scale(tone, 0.8))
        for wy in range(top + 8, horizon - 8, 16):
            draw.line((x + 4, wy, x + w - 4, wy), fill=scale(tone, 0.75), width=2)
        x += w


def _campus(draw: ImageDraw.ImageDraw, rng: np.random.Generator, wall: RGB, width: int, horizon: int) -> None:
    """Brick wall: mortar lines in a running bond, and an occasional door."""
    brick_h = int(rng.integers(7, 11))
    mortar = scale(wall, 1.35)
    for row, y in enumerate(range(0, horizon, brick_h)):
        draw.line((0, y, width, y), fill=mortar, width=1)
        shift = (row % 2) * 14 + int(rng.integers(0, 3))
        for x in range(-shift, width, 28):
            draw.line((x, y, x, y + brick_h), fill=mortar, width=1)
    if rng.random() < 0.5:
        x = float(rng.uniform(0, width - 40))
        draw.rectangle((x, horizon * 0.35, x + 40, horizon), fill=scale(wall, 0.45))


def _mall(draw: ImageDraw.ImageDraw, rng: np.random.Generator, wall: RGB, width: int, horizon: int) -> None:
    """Bright shop windows with coloured displays and a light band."""
    x = -int(rng.integers(0, 50))
    while x < width:
        w = int(rng.integers(40, 70))
        draw.rectangle((x + 3, int(horizon * 0.25), x + w - 3, horizon - 4), fill=(226, 232, 236),
                       outline=(120, 120, 124), width=3)
        for _ in range(int(rng.integers(1, 4))):
            cx, cy = float(rng.uniform(x + 8, x + w - 8)), float(rng.uniform(horizon * 0.4, horizon * 0.85))
            draw.rectangle((cx - 7, cy - 10, cx + 7, cy + 10), fill=tuple(int(c) for c in rng.integers(30, 240, 3)))
        x += w
    draw.rectangle((0, 0, width, int(horizon * 0.12)), fill=(248, 246, 236))


def _carpark(draw: ImageDraw.ImageDraw, rng: np.random.Generator, wall: RGB, width: int, horizon: int) -> None:
    """A row of parked cars in front of a concrete wall."""
    x = -int(rng.integers(0, 60))
    while x < width:
        w = int(rng.integers(60, 90))
        body = tuple(int(c) for c in rng.integers(20, 230, 3))
        top = horizon - int(rng.integers(36, 50))
        draw.rounded_rectangle((x, top + 14, x + w - 6, horizon + 4), radius=8, fill=body)
        draw.rounded_rectangle((x + 12, top, x + w - 20, top + 18), radius=6, fill=scale(body, 0.8))
        draw.rectangle((x + 16, top + 3, x + w - 24, top + 14), fill=(60, 74, 90))
        x += w


_SCENERY = {"street": _street, "park": _park, "plaza": _plaza, "campus": _campus, "mall": _mall,
            "carpark": _carpark}


def _ground_marks(draw: ImageDraw.ImageDraw, rng: np.random.Generator, scene: str, ground: RGB, width: int,
                  height: int, horizon: int) -> None:
    """Tiles, kerbs or lane lines on the ground, spaced wider towards the camera."""
    line = scale(ground, 0.82 if scene != "carpark" else 2.6)
    y, gap = float(horizon), float(rng.uniform(6, 12))
    while y < height:
        draw.line((0, y, width, y), fill=line, width=1 if scene != "carpark" else 2)
        y += gap
        gap *= 1.35
    if scene in ("plaza", "mall", "street"):
        off = float(rng.uniform(0, 30))
        for k in range(-4, 8):
            x_top = off + k * 30
            draw.line((x_top, horizon, width / 2 + (x_top - width / 2) * 2.2, height), fill=line, width=1)


# ---------------------------------------------------------------------------------- clutter / objects


def _pole(draw: ImageDraw.ImageDraw, rng: np.random.Generator, width: int, height: int, front: bool) -> None:
    x = float(rng.uniform(0, width))
    w = float(rng.uniform(6, 12) if front else rng.uniform(3, 6))
    colour = tuple(int(c) for c in rng.integers(40, 200, 3))
    draw.rectangle((x - w / 2, -2, x + w / 2, height + 2), fill=colour, outline=scale(colour, 0.6))  # type: ignore[arg-type]


def _bin(draw: ImageDraw.ImageDraw, rng: np.random.Generator, width: int, height: int, front: bool) -> None:
    x = float(rng.uniform(0, width))
    w, h = float(rng.uniform(24, 40)), float(rng.uniform(40, 80))
    bottom = height + (float(rng.uniform(0, 20)) if front else -float(rng.uniform(10, 50)))
    colour = ((60, 90, 60), (90, 90, 96), (40, 60, 110), (150, 120, 40))[int(rng.integers(4))]
    draw.rounded_rectangle((x - w / 2, bottom - h, x + w / 2, bottom), radius=4, fill=colour,
                           outline=scale(colour, 0.6), width=2)


def _bush(draw: ImageDraw.ImageDraw, rng: np.random.Generator, width: int, height: int, front: bool) -> None:
    base = (54, 104, 44)
    top = height * (float(rng.uniform(0.62, 0.8)) if front else float(rng.uniform(0.55, 0.7)))
    for _ in range(int(rng.integers(4, 8))):
        x = float(rng.uniform(-10, width + 10))
        r = float(rng.uniform(16, 30))
        draw.ellipse((x - r, top - r * 0.6, x + r, height + r), fill=_jitter(rng, base, 22))


def _car(draw: ImageDraw.ImageDraw, rng: np.random.Generator, width: int, height: int, front: bool) -> None:
    colour = tuple(int(c) for c in rng.integers(20, 230, 3))
    top = height * float(rng.uniform(0.62, 0.78))
    left = float(rng.uniform(-40, 20)) if rng.random() < 0.5 else float(rng.uniform(40, 90))
    draw.rounded_rectangle((left, top, left + 160, height + 20), radius=14, fill=colour,  # type: ignore[arg-type]
                           outline=scale(colour, 0.55), width=2)  # type: ignore[arg-type]
    draw.rectangle((left + 10, top + 8, left + 150, top + 20), fill=(70, 84, 100))


def _sign(draw: ImageDraw.ImageDraw, rng: np.random.Generator, width: int, height: int, front: bool) -> None:
    x = float(rng.uniform(10, width - 10))
    y = height * float(rng.uniform(0.3, 0.6))
    colour = tuple(int(c) for c in rng.integers(60, 250, 3))
    draw.rectangle((x - 2, y, x + 2, height + 2), fill=(90, 90, 94))
    draw.rectangle((x - 22, y - 26, x + 22, y + 4), fill=colour, outline=(30, 30, 30), width=2)  # type: ignore[arg-type]


def _bicycle(draw: ImageDraw.ImageDraw, rng: np.random.Generator, width: int, height: int, front: bool) -> None:
    x = float(rng.uniform(0, width))
    y = height * float(rng.uniform(0.82, 0.95) if front else rng.uniform(0.65, 0.8))
    r = float(rng.uniform(16, 22))
    frame = tuple(int(c) for c in rng.integers(20, 230, 3))
    for dx in (-r * 1.3, r * 1.3):
        draw.ellipse((x + dx - r, y - r, x + dx + r, y + r), outline=(30, 30, 30), width=3)
    draw.line((x - r * 1.3, y, x, y - r, x + r * 1.3, y, x - r * 0.2, y - r * 1.4), fill=frame, width=3)  # type: ignore[arg-type]


OBJECTS = {"pole": _pole, "bin": _bin, "bush": _bush, "car": _car, "sign": _sign, "bicycle": _bicycle}
BACKGROUND_OBJECTS: tuple[str, ...] = ("pole", "bin", "sign", "bicycle", "bush")


def draw_object(image: Image.Image, rng: np.random.Generator, kind: str, front: bool) -> None:
    """Draw one object of ``kind`` (:data:`OBJECTS`); ``front`` objects are bigger and sit lower."""
    if kind not in OBJECTS:
        raise ValueError(f"unknown object {kind!r}; valid: {', '.join(OBJECTS)}")
    OBJECTS[kind](ImageDraw.Draw(image), rng, image.width, image.height, front)


def draw_passer_by(image: Image.Image, rng: np.random.Generator, height: float, cx: float, foot: float) -> None:
    """A random pedestrian that is not in the dataset (background figure, occluder or distractor)."""
    ident = sample_identity(rng, pid=0)
    view = VIEWS[int(rng.integers(len(VIEWS)))]
    pose = Pose(view, phase=float(rng.uniform(0, 2 * np.pi)), stride=float(rng.uniform(0.3, 1.0)))
    draw_person(image, ident, Placement(cx, foot - height, height), pose)


def draw_clutter(image: Image.Image, rng: np.random.Generator, style: CameraStyle) -> None:
    """0-2 background objects and, sometimes, a smaller pedestrian further away."""
    for _ in range(int(rng.integers(0, 3))):
        draw_object(image, rng, BACKGROUND_OBJECTS[int(rng.integers(len(BACKGROUND_OBJECTS)))], front=False)
    if rng.random() < 0.25:
        height = image.height * float(rng.uniform(0.35, 0.6))
        foot = image.height * (style.horizon + float(rng.uniform(0.02, 0.12)))
        draw_passer_by(image, rng, height, float(rng.uniform(0, image.width)), foot)


# -------------------------------------------------------------------------------------- the sensor


def _lighting(style: CameraStyle, rng: np.random.Generator, size: tuple[int, int]) -> np.ndarray:
    """Per-pixel multiplicative light: the camera's left-right gradient and a smooth random blotch."""
    width, height = size
    xs = np.linspace(-1, 1, width, dtype=np.float32)
    ramp = 1 + 0.08 * style.light * xs
    coarse = rng.normal(0, 0.05, size=(4, 2)).astype(np.float32)
    blotch = np.asarray(Image.fromarray(coarse, "F").resize((width, height), Image.BILINEAR))
    return (ramp[None, :] + blotch)[..., None]


def apply_camera(image: Image.Image, rng: np.random.Generator, style: CameraStyle, out_size: tuple[int, int]) -> Image.Image:
    """The camera's look: colour cast, brightness and contrast (with per-image jitter), lighting, then
    downsampling to ``out_size``, lens blur and sensor noise."""
    pixels = np.asarray(image, dtype=np.float32)
    gains = np.array(style.gains, dtype=np.float32) * rng.uniform(0.95, 1.05, size=3).astype(np.float32)
    brightness = style.brightness * float(rng.uniform(0.94, 1.06))
    pixels = pixels * gains * brightness * _lighting(style, rng, image.size)
    mean = pixels.mean()
    pixels = (pixels - mean) * style.contrast + mean
    small = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8), "RGB").resize(out_size, Image.BOX)
    sigma = style.blur + float(rng.uniform(0.0, 0.5))
    if sigma > 0.15:
        small = small.filter(ImageFilter.GaussianBlur(sigma))
    noisy = np.asarray(small, dtype=np.float32) + rng.normal(0, style.noise, size=(out_size[1], out_size[0], 3))
    return Image.fromarray(np.clip(np.round(noisy), 0, 255).astype(np.uint8), "RGB")
