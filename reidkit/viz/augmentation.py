"""Augmentation preview: the train pipeline rendered for display, as pure functions plus a thin ipywidgets UI.

* :func:`render_augmentation` — one image, one seed → the de-normalised uint8 ``H × W × 3`` output of the train
  pipeline built from :class:`AugmentationParams` (pure: same inputs, same array).
* :func:`augmentation_grid` — several images × several seeds (+ the resized original) tiled into one array.
* :func:`augmentation_preview` — sliders / checkboxes / a resample button; observers only read the widget values,
  call the pure functions and store the result in a :class:`PreviewState`, so it is testable without a kernel.
  Every element carries a CSS class from :func:`css_class` (``rk-augment-<param>``, ``rk-augment-image``, ...)
  so a browser test can find it.
"""
from __future__ import annotations

import dataclasses
import io
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from PIL import Image

from reidkit.data.transforms import (
    CIFAR_MEAN,
    CROPS,
    TransformConfig,
    apply_with_seed,
    build_transforms,
    denormalize,
    to_uint8_image,
)
from reidkit.data.transforms.geometric import resize_pil

ImageLike = Image.Image | np.ndarray


#: Each previewable transform alone, at probability 1: the fields :meth:`AugmentationParams.only` switches on.
SINGLE_TRANSFORMS: dict[str, dict[str, Any]] = {
    "hflip": {"hflip": True, "hflip_p": 1.0},
    "translate": {"crop": "translate", "translate_p": 1.0},
    "pad_crop": {"crop": "pad_crop"},
    "autoaugment": {"autoaugment": True, "autoaugment_p": 1.0},
    "lgt": {"lgt": True, "lgt_p": 1.0},
    "erasing": {"erasing": True, "erasing_p": 1.0},
    "cutout": {"cutout": True, "cutout_p": 1.0},
}


@dataclass(frozen=True)
class AugmentationParams:
    """The previewable knobs of the train pipeline: which transforms are on, their probabilities and strengths.

    Defaults mirror :class:`~reidkit.data.transforms.TransformConfig` (AutoAugment off; its p 0.1 as in
    recipe B when switched on). ``seed_parity`` switches to the seed's fills (CIFAR means written into the
    normalised tensor) and runs LGT last on the normalised tensor.
    """

    height: int = 256
    width: int = 128
    autoaugment: bool = False
    autoaugment_p: float = 0.1
    hflip: bool = True
    hflip_p: float = 0.5
    crop: str = "translate"
    translate_p: float = 0.5
    translate_factor: float = 1.125
    pad: int = 10
    lgt: bool = True
    lgt_p: float = 0.2
    erasing: bool = True
    erasing_p: float = 0.5
    erasing_scale_max: float = 0.4
    cutout: bool = True
    cutout_p: float = 0.5
    cutout_size: int = 64
    seed_parity: bool = False

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            if f.type in ("bool", bool) and not isinstance(getattr(self, f.name), bool):
                raise ValueError(f"{f.name} must be True or False, got {getattr(self, f.name)!r}")
        self.to_config()  # validates every value with TransformConfig's messages

    @classmethod
    def keys(cls) -> tuple[str, ...]:
        return tuple(f.name for f in dataclasses.fields(cls))

    @classmethod
    def from_mapping(cls, mapping: Mapping[str, Any]) -> AugmentationParams:
        unknown = sorted(str(k) for k in mapping if k not in cls.keys())
        if unknown:
            raise ValueError(
                f"unknown augmentation parameter(s) {', '.join(repr(k) for k in unknown)}; "
                f"valid: {', '.join(cls.keys())}"
            )
        return cls(**dict(mapping))

    @classmethod
    def all_off(cls, height: int = 256, width: int = 128) -> AugmentationParams:
        """Every random transform off: the pipeline is Resize → ToTensor → Normalize."""
        return cls(height=height, width=width, autoaugment=False, hflip=False, crop="none", lgt=False,
                   erasing=False, cutout=False)

    @classmethod
    def only(cls, transform: str, height: int = 256, width: int = 128, **overrides: Any) -> AugmentationParams:
        """Exactly one random transform switched on, with probability 1 (strength knobs via ``overrides``).

        ``transform`` is one of :data:`SINGLE_TRANSFORMS`; ``only("erasing", erasing_scale_max=0.2)`` shows
        what random erasing alone does at that strength on every sample.
        """
        if transform not in SINGLE_TRANSFORMS:
            raise ValueError(f"unknown transform {transform!r}; valid: {', '.join(SINGLE_TRANSFORMS)}")
        switch = dict(SINGLE_TRANSFORMS[transform])
        return dataclasses.replace(cls.all_off(height, width), **switch, **overrides)

    def to_config(self) -> TransformConfig:
        """The :class:`TransformConfig` these knobs describe (a disabled transform gets probability 0)."""
        seed_fill: dict[str, Any] = (
            {"fill": CIFAR_MEAN, "fill_space": "normalized", "lgt_space": "normalized"} if self.seed_parity else {}
        )
        return TransformConfig(
            height=self.height,
            width=self.width,
            autoaugment_p=self.autoaugment_p if self.autoaugment else 0.0,
            hflip_p=self.hflip_p if self.hflip else 0.0,
            crop=self.crop,
            translate_p=self.translate_p,
            translate_factor=self.translate_factor,
            pad=self.pad,
            lgt_p=self.lgt_p if self.lgt else 0.0,
            erasing_p=self.erasing_p if self.erasing else 0.0,
            erasing_scale=(0.02, self.erasing_scale_max),
            cutout_p=self.cutout_p if self.cutout else 0.0,
            cutout_size=self.cutout_size,
            **seed_fill,
        )


def as_params(params: AugmentationParams | Mapping[str, Any] | None) -> AugmentationParams:
    if params is None:
        return AugmentationParams()
    if isinstance(params, AugmentationParams):
        return params
    return AugmentationParams.from_mapping(params)


def _as_rgb(image: ImageLike) -> Image.Image:
    if isinstance(image, Image.Image):
        return image if image.mode == "RGB" else image.convert("RGB")
    if isinstance(image, np.ndarray) and image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3:
        return Image.fromarray(image)
    what = f"array {image.shape} {image.dtype}" if isinstance(image, np.ndarray) else type(image).__name__
    raise TypeError(f"expected a PIL image or a uint8 H×W×3 array, got {what}")


# ---------------------------------------------------------------------------------------------------------
# Pure functions
# ---------------------------------------------------------------------------------------------------------
def render_augmentation(
    image: ImageLike, params: AugmentationParams | Mapping[str, Any] | None, seed: int
) -> np.ndarray:
    """One augmented sample for display: the train pipeline from ``params`` applied with ``seed``, de-normalised.

    Returns a uint8 ``height × width × 3`` array; the same (image, params, seed) always gives the same array.
    """
    p = as_params(params)
    config = p.to_config()
    pipeline = build_transforms(config, train=True)
    tensor = apply_with_seed(pipeline, _as_rgb(image), seed)
    return to_uint8_image(denormalize(tensor, config.mean, config.std))


def resized_original(image: ImageLike, params: AugmentationParams | Mapping[str, Any] | None = None) -> np.ndarray:
    """The image resized to the pipeline's ``height × width`` (the reference panel of the grid)."""
    p = as_params(params)
    config = p.to_config()
    return np.asarray(resize_pil(_as_rgb(image), config.height, config.width, config.interpolation))


def tile(rows: Sequence[Sequence[np.ndarray]], gap: int = 4, background: int = 255) -> np.ndarray:
    """Tile equally sized ``H × W × 3`` uint8 panels row by row with ``gap`` pixels of ``background`` between."""
    if not rows or not all(rows):
        raise ValueError("tile needs at least one row with at least one panel")
    height, width = rows[0][0].shape[:2]
    for row in rows:
        for panel in row:
            if panel.shape != (height, width, 3):
                raise ValueError(f"all panels must be {height}×{width}×3, got {panel.shape}")
    ncols = max(len(r) for r in rows)
    out = np.full((len(rows) * (height + gap) - gap, ncols * (width + gap) - gap, 3), background, dtype=np.uint8)
    for i, row in enumerate(rows):
        for j, panel in enumerate(row):
            y, x = i * (height + gap), j * (width + gap)
            out[y : y + height, x : x + width] = panel
    return out


def render_samples(
    images: Sequence[ImageLike], params: AugmentationParams | Mapping[str, Any] | None, seeds: Sequence[int]
) -> list[list[np.ndarray]]:
    """``out[i][j] = render_augmentation(images[i], params, seeds[j])``."""
    p = as_params(params)
    return [[render_augmentation(image, p, seed) for seed in seeds] for image in images]


def augmentation_grid(
    images: Sequence[ImageLike] | ImageLike,
    params: AugmentationParams | Mapping[str, Any] | None,
    seeds: Sequence[int],
    include_original: bool = True,
    gap: int = 4,
) -> np.ndarray:
    """One row per image: the resized original (optional), then one augmented sample per seed.

    Cell ``(i, j)`` of the samples is exactly ``render_augmentation(images[i], params, seeds[j])``; with the
    same seed, every row shares the same random draws, so the columns compare like with like.
    """
    imgs = [images] if isinstance(images, (Image.Image, np.ndarray)) else list(images)
    if not imgs or not seeds:
        raise ValueError("augmentation_grid needs at least one image and one seed")
    p = as_params(params)
    samples = render_samples(imgs, p, seeds)
    rows = [([resized_original(img, p)] if include_original else []) + row for img, row in zip(imgs, samples)]
    return tile(rows, gap=gap)


def to_png(array: np.ndarray) -> bytes:
    """PNG bytes of a uint8 ``H × W × 3`` array."""
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


# ---------------------------------------------------------------------------------------------------------
# Interactive preview (thin wiring around the pure functions)
# ---------------------------------------------------------------------------------------------------------
@dataclass
class PreviewState:
    """What the preview last rendered; observers write here and nowhere else.

    ``controls`` maps a parameter name to its widget (set ``.value`` to drive the preview from code);
    ``resample_button.click()`` moves to the next seeds. ``images`` are the samples row by row
    (image-major), ``grid`` / ``png`` the displayed picture, ``renders`` counts refreshes.
    """

    params: AugmentationParams
    seed: int
    num_samples: int
    images: list[np.ndarray] = field(default_factory=list)
    grid: np.ndarray | None = None
    png: bytes = b""
    renders: int = 0
    error: str | None = None
    controls: dict[str, Any] = field(default_factory=dict)
    resample_button: Any = None

    @property
    def seeds(self) -> list[int]:
        """The seeds of the shown samples: ``seed, seed + 1, …, seed + num_samples − 1``."""
        return list(range(self.seed, self.seed + self.num_samples))


_CONTROL_LABELS: dict[str, str] = {
    "autoaugment": "AutoAugment (ImageNet policy)",
    "autoaugment_p": "AutoAugment p",
    "hflip": "horizontal flip",
    "hflip_p": "flip p",
    "crop": "crop",
    "translate_p": "translate p",
    "translate_factor": "translate factor",
    "pad": "pad (px)",
    "lgt": "LGT (grayscale patch)",
    "lgt_p": "LGT p",
    "erasing": "random erasing",
    "erasing_p": "erasing p",
    "erasing_scale_max": "erasing max area",
    "cutout": "cutout",
    "cutout_p": "cutout p",
    "cutout_size": "cutout size (px)",
    "seed_parity": "seed-parity fills (CIFAR mean, LGT last)",
}


def _build_controls(params: AugmentationParams) -> dict[str, Any]:
    import ipywidgets as w

    style = {"description_width": "initial"}

    def prob(name: str) -> Any:
        return w.FloatSlider(value=getattr(params, name), min=0.0, max=1.0, step=0.05,
                             description=_CONTROL_LABELS[name], style=style, continuous_update=False)

    def check(name: str) -> Any:
        return w.Checkbox(value=getattr(params, name), description=_CONTROL_LABELS[name], style=style, indent=False)

    crop_labels = {"translate": "Random2DTranslation", "pad_crop": "Pad + RandomCrop", "none": "none"}
    return {
        "autoaugment": check("autoaugment"),
        "autoaugment_p": prob("autoaugment_p"),
        "hflip": check("hflip"),
        "hflip_p": prob("hflip_p"),
        "crop": w.Dropdown(options=[(crop_labels[c], c) for c in CROPS], value=params.crop,
                           description=_CONTROL_LABELS["crop"], style=style),
        "translate_p": prob("translate_p"),
        "translate_factor": w.FloatSlider(value=params.translate_factor, min=1.0, max=1.5, step=0.025,
                                          description=_CONTROL_LABELS["translate_factor"], style=style,
                                          continuous_update=False),
        "pad": w.IntSlider(value=params.pad, min=0, max=32, description=_CONTROL_LABELS["pad"], style=style,
                           continuous_update=False),
        "lgt": check("lgt"),
        "lgt_p": prob("lgt_p"),
        "erasing": check("erasing"),
        "erasing_p": prob("erasing_p"),
        "erasing_scale_max": w.FloatSlider(value=params.erasing_scale_max, min=0.02, max=1.0, step=0.02,
                                           description=_CONTROL_LABELS["erasing_scale_max"], style=style,
                                           continuous_update=False),
        "cutout": check("cutout"),
        "cutout_p": prob("cutout_p"),
        "cutout_size": w.IntSlider(value=params.cutout_size, min=1, max=min(params.height, params.width),
                                   description=_CONTROL_LABELS["cutout_size"], style=style,
                                   continuous_update=False),
        "seed_parity": check("seed_parity"),
    }


def css_class(part: str) -> str:
    """The CSS class of one preview element (``rk-augment-erasing-p``, ``rk-augment-image``, ...).

    Browser tests and custom stylesheets find the preview's widgets by these classes: one per control
    (the parameter name with ``_`` → ``-``), plus ``image``, ``seeds``, ``status`` and ``resample``.
    """
    return "rk-augment-" + part.replace("_", "-")


def params_from_controls(controls: Mapping[str, Any], base: AugmentationParams) -> AugmentationParams:
    """Read the widget values into a new :class:`AugmentationParams` (fields without a control come from ``base``)."""
    return dataclasses.replace(base, **{name: widget.value for name, widget in controls.items()})


def augmentation_preview(
    images: Sequence[ImageLike] | ImageLike,
    seed: int = 0,
    num_samples: int = 4,
    params: AugmentationParams | Mapping[str, Any] | None = None,
) -> tuple[Any, PreviewState]:
    """An interactive preview: controls per transform, a resample button and the grid (original + samples).

    Returns ``(widget, state)``. Setting ``state.controls[name].value`` (or moving the slider) re-renders
    through :func:`augmentation_grid`; the "resample" button moves to the next ``num_samples`` seeds.
    """
    import ipywidgets as w

    imgs = [images] if isinstance(images, (Image.Image, np.ndarray)) else list(images)
    if not imgs:
        raise ValueError("augmentation_preview needs at least one image")
    if isinstance(num_samples, bool) or not isinstance(num_samples, int) or num_samples < 1:
        raise ValueError(f"num_samples must be a positive integer, got {num_samples!r}")
    base = as_params(params)
    state = PreviewState(params=base, seed=int(seed), num_samples=num_samples)
    state.controls = _build_controls(base)
    output = w.Image(format="png", layout=w.Layout(align_self="flex-start"))  # natural size, not stretched
    seed_label = w.Label()
    status = w.HTML()
    button = w.Button(description="resample", tooltip="draw new samples (next seeds)", icon="refresh")

    def refresh() -> None:
        try:
            new_params = params_from_controls(state.controls, base)
        except ValueError as err:  # an invalid combination of knobs: keep the last picture, say why
            state.error = str(err)
            status.value = f"<span style='color:#b00'>{state.error}</span>"
            return
        state.params = new_params
        state.error = None
        status.value = ""
        samples = render_samples(imgs, new_params, state.seeds)
        originals = [resized_original(img, new_params) for img in imgs]
        state.images = [panel for row in samples for panel in row]
        state.grid = tile([[orig, *row] for orig, row in zip(originals, samples)])
        state.png = to_png(state.grid)
        state.renders += 1
        output.value = state.png
        seed_label.value = f"seeds {state.seeds[0]}–{state.seeds[-1]} (first column: resized original)"

    def on_change(_change: Mapping[str, Any]) -> None:
        refresh()

    def on_resample(_button: Any) -> None:
        state.seed += state.num_samples
        refresh()

    for name, control in state.controls.items():
        control.add_class(css_class(name))
        control.observe(on_change, names="value")
    output.add_class(css_class("image"))
    seed_label.add_class(css_class("seeds"))
    status.add_class(css_class("status"))
    button.add_class(css_class("resample"))
    button.on_click(on_resample)
    state.resample_button = button
    refresh()

    c = state.controls
    geometry = w.VBox([c["hflip"], c["hflip_p"], c["crop"], c["translate_p"], c["translate_factor"], c["pad"],
                       c["autoaugment"], c["autoaugment_p"]])
    occlusion = w.VBox([c["lgt"], c["lgt_p"], c["erasing"], c["erasing_p"], c["erasing_scale_max"], c["cutout"],
                        c["cutout_p"], c["cutout_size"], c["seed_parity"]])
    widget = w.VBox([w.HBox([geometry, occlusion]), w.HBox([button, seed_label]), output, status])
    widget.add_class("rk-augment")
    return widget, state
