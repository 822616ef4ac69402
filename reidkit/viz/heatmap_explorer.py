"""Heatmap explorer: pick a query and a gallery image, a method, a layer and a target; see both heatmaps.

The pattern of :mod:`reidkit.viz.augmentation`: a pure function does the work and a thin ipywidgets layer calls it.

* :class:`HeatmapSource` — the model and the two image lists (re-ID items, paths, PIL images or uint8 arrays),
  loaded lazily at the model's input size and cached, plus the query's hardest negative for the triplet target;
* :class:`HeatmapExplorerState` — what is selected (query index, gallery index, method, layer, target) and what
  was last drawn;
* :func:`render_heatmap_pair` — pure: (selection, source) → the picture ``query | query heat | gallery heat |
  gallery`` as an array and PNG bytes, and a one-line label;
* :func:`heatmap_explorer` — dropdowns wired to the state; returns ``(widget, state)``. Setting
  ``state.controls[name].value`` from code re-renders exactly as the mouse does, so it is testable headlessly.

Each control carries a CSS class for browser tests: ``rk-heatmap-query``, ``rk-heatmap-gallery``,
``rk-heatmap-method``, ``rk-heatmap-layer``, ``rk-heatmap-target``; the picture ``rk-heatmap-image`` and the label
``rk-heatmap-label``. One render computes one pair (two heatmaps); the triplet target embeds the gallery once
(cached) to find the hardest negative.
"""
from __future__ import annotations

import html

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from matplotlib.figure import Figure
from torch import Tensor, nn

from reidkit.data.datasets.base import ReIDItem, item_labels
from reidkit.data.transforms import Compose, Normalize, Resize, ToTensor, denormalize, to_uint8_image
from reidkit.models.reid_model import ReIDModel
from reidkit.viz.augmentation import tile, to_png
from reidkit.viz.retrieval import ranked_list
from reidkit.viz.heatmaps import (
    GRADIENT_FREE_METHODS,
    heatmap_pair_figure,
    METHODS,
    TARGETS,
    HeatmapPair,
    default_target_layers,
    embed,
    heat_overlay,
    heatmap_pair,
    stage_layers,
)

__all__ = [
    "CSS_CLASSES",
    "DISPLAY_SCALE",
    "DEFAULT_METHODS",
    "HeatmapExplorerState",
    "HeatmapSource",
    "RenderedPair",
    "heatmap_explorer",
    "match_heatmaps_figure",
    "render_heatmap_pair",
]

ImageInput = ReIDItem | str | Image.Image | np.ndarray

#: The explorer's methods by default: every method but Score-CAM (C forward passes per image: not snappy on a CPU).
DEFAULT_METHODS: tuple[str, ...] = tuple(m for m in METHODS if m != "scorecam")

#: CSS class of each widget, for browser tests.
CSS_CLASSES: dict[str, str] = {
    "root": "rk-heatmap",
    "query": "rk-heatmap-query",
    "gallery": "rk-heatmap-gallery",
    "method": "rk-heatmap-method",
    "layer": "rk-heatmap-layer",
    "target": "rk-heatmap-target",
    "image": "rk-heatmap-image",
    "label": "rk-heatmap-label",
}


_Stats = tuple[tuple[float, float, float], tuple[float, float, float]]


def _normalize_statistics(transform: Callable[..., Any]) -> _Stats | None:
    """``(mean, std)`` of the ``Normalize`` step of a pipeline; ``(0, 1)`` for a ``Compose`` without one; ``None``
    for an opaque callable. reidkit's and torchvision's ``Compose`` / ``Normalize`` are recognised."""
    from torchvision import transforms as tv

    normalizers = (Normalize, tv.Normalize)
    if isinstance(transform, normalizers):
        steps: list[Any] = [transform]
    elif isinstance(transform, (Compose, tv.Compose)):
        steps = list(transform.transforms)
    else:
        return None
    found = [step for step in steps if isinstance(step, normalizers)]
    if len(found) > 1:
        raise ValueError(f"the transform has {len(found)} Normalize steps; expected at most one")
    if not found:
        return (0.0, 0.0, 0.0), (1.0, 1.0, 1.0)
    mean, std = (tuple(float(v) for v in values) for values in (found[0].mean, found[0].std))
    if len(mean) != 3 or len(std) != 3:
        raise ValueError(f"the transform's Normalize step has mean {mean} and std {std}; expected 3 channels each")
    return mean, std  # type: ignore[return-value]


def _load_rgb(item: ImageInput) -> Image.Image:
    if isinstance(item, ReIDItem):
        item = item.path
    if isinstance(item, str):
        with Image.open(item) as img:
            return img.convert("RGB")
    if isinstance(item, Image.Image):
        return item.convert("RGB")
    if isinstance(item, np.ndarray) and item.dtype == np.uint8 and item.ndim == 3 and item.shape[2] == 3:
        return Image.fromarray(item)
    what = f"array {item.shape} {item.dtype}" if isinstance(item, np.ndarray) else type(item).__name__
    raise TypeError(f"an explorer image must be a ReIDItem, a path, a PIL image or a uint8 H×W×3 array, got {what}")


@dataclass
class HeatmapSource:
    """The model and the images the explorer draws from.

    Images are read and transformed on first use and cached; the displayed picture is that tensor de-normalised
    with ``mean`` / ``std``, i.e. exactly what the model saw. The transform is

    * ``transform`` when given: the model's own test pipeline, a callable RGB PIL image → ``(3, H, W)`` tensor,
      e.g. :attr:`FeatureExtractor.transform <reidkit.inference.FeatureExtractor.transform>` or
      ``build_transforms(cfg["data"]["transforms"], train=False)`` (a model with ``input_norm`` needs mean 0 /
      std 1 there, as ``FeatureExtractor`` does). ``height`` / ``width`` are then not used. ``mean`` / ``std``
      default to the statistics of its ``Normalize`` step (reidkit's or torchvision's, in a ``Compose``); a
      ``Compose`` without one gives [0, 1] tensors (mean 0, std 1). Any other callable needs ``mean`` and ``std``
      given; given values that contradict the ``Normalize`` step are an error.
    * otherwise the default test pipeline: resize to ``height × width``, to tensor, normalise with ``mean`` /
      ``std`` (default ImageNet statistics). A :class:`~reidkit.models.ReIDModel` with ``input_norm`` normalises
      itself: its images are passed in [0, 1] (mean 0, std 1) unless ``mean`` / ``std`` are given.
    """

    model: nn.Module
    query: Sequence[ImageInput]
    gallery: Sequence[ImageInput]
    height: int = 256
    width: int = 128
    mean: tuple[float, float, float] | None = None
    std: tuple[float, float, float] | None = None
    transform: Callable[[Image.Image], Tensor] | None = None
    _cache: dict[tuple[str, int], tuple[Tensor, np.ndarray]] = field(default_factory=dict, repr=False)
    _gallery_embeddings: Tensor | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if not self.query or not self.gallery:
            raise ValueError("the heatmap explorer needs at least one query and one gallery image")
        if self.transform is not None:
            self._use_transform(self.transform)
            return
        self_norm = isinstance(self.model, ReIDModel) and self.model.input_norm is not None
        if self.mean is None:
            self.mean = (0.0, 0.0, 0.0) if self_norm else (0.485, 0.456, 0.406)
        if self.std is None:
            self.std = (1.0, 1.0, 1.0) if self_norm else (0.229, 0.224, 0.225)
        # the test pipeline of build_transforms(train=False), built directly: a small input size must not trip
        # the validation of train-only options (e.g. the default cutout size)
        self._transform = Compose([Resize(self.height, self.width), ToTensor(), Normalize(self.mean, self.std)])

    def _use_transform(self, transform: Callable[[Image.Image], Tensor]) -> None:
        """Take ``transform`` as the pipeline; ``mean`` / ``std`` for display from its ``Normalize`` step."""
        if not callable(transform):
            raise TypeError("transform must be a callable PIL image -> (3, H, W) tensor, "
                            f"got {type(transform).__name__}")
        if (self.mean is None) != (self.std is None):
            raise ValueError(f"give both mean and std or neither, got mean={self.mean!r}, std={self.std!r}")
        found = _normalize_statistics(transform)
        if found is None and self.mean is None:
            raise ValueError(f"cannot tell how {type(transform).__name__} normalises its tensors (not a Compose, no "
                             "Normalize step): pass mean= and std= to de-normalise the displayed images")
        if found is not None and self.mean is not None:
            given = (tuple(float(v) for v in self.mean), tuple(float(v) for v in self.std))
            if not (np.allclose(given[0], found[0]) and np.allclose(given[1], found[1])):
                raise ValueError(f"mean={given[0]}, std={given[1]} contradict the transform's Normalize step "
                                 f"(mean={found[0]}, std={found[1]}); leave them out to use the transform's")
        if self.mean is None:
            self.mean, self.std = found
        self._transform = transform

    def _items(self, side: str) -> Sequence[ImageInput]:
        if side not in ("query", "gallery"):
            raise ValueError(f"side must be 'query' or 'gallery', got {side!r}")
        return self.query if side == "query" else self.gallery

    def image(self, side: str, index: int) -> tuple[Tensor, np.ndarray]:
        """``(model-ready (3, H, W) tensor, displayed uint8 (H, W, 3) image)`` of one query or gallery image."""
        items = self._items(side)
        if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index < len(items):
            raise ValueError(f"{side} index must be an int in [0, {len(items) - 1}], got {index!r}")
        key = (side, index)
        if key not in self._cache:
            tensor = self._transform(_load_rgb(items[index]))
            self._cache[key] = (tensor, to_uint8_image(denormalize(tensor, self.mean, self.std)))
        return self._cache[key]

    def pid(self, side: str, index: int) -> int | None:
        item = self._items(side)[index]
        return item.pid if isinstance(item, ReIDItem) else None

    def describe(self, side: str, index: int) -> str:
        """``"query 3 (id 12, c2)"``: the index, and the identity and 1-based camera of a re-ID item."""
        item = self._items(side)[index]
        return f"{side} {index} (id {item.pid}, c{item.camid + 1})" if isinstance(item, ReIDItem) else f"{side} {index}"

    def gallery_embeddings(self, batch_size: int = 32) -> Tensor:
        """Eval embeddings (G, D) of the whole gallery, computed once."""
        if self._gallery_embeddings is None:
            chunks = []
            for start in range(0, len(self.gallery), batch_size):
                stop = min(start + batch_size, len(self.gallery))
                chunks.append(embed(self.model, torch.stack([self.image("gallery", i)[0]
                                                             for i in range(start, stop)])))
            self._gallery_embeddings = torch.cat(chunks).cpu()
        return self._gallery_embeddings

    def hardest_negative(self, query_index: int) -> int:
        """The gallery index most similar (cosine) to the query among images of another identity."""
        q_pid = self.pid("query", query_index)
        if q_pid is None:
            raise ValueError("the triplet target needs identities: pass re-ID items (ReIDItem) as query and gallery")
        candidates = [i for i in range(len(self.gallery)) if self.pid("gallery", i) != q_pid]
        if not candidates:
            raise ValueError(f"no gallery image of another identity than the query's ({q_pid}): no negative")
        e_q = embed(self.model, self.image("query", query_index)[0]).cpu()
        sims = F.cosine_similarity(self.gallery_embeddings()[candidates], e_q, dim=1)
        return candidates[int(sims.argmax())]


@dataclass
class HeatmapExplorerState:
    """The explorer's selection (query index, gallery index, method, layer, target) and what it last drew.

    ``layer`` is a dotted module name (``""``: the model's default, :func:`default_target_layers`). Observers
    write the selection from the widgets, call :func:`render_heatmap_pair` and store ``image`` / ``png`` /
    ``label`` / ``pair`` here; ``renders`` counts the pictures, ``error`` holds the message of a selection that
    cannot be drawn (the last picture stays). ``controls`` maps query, gallery, method, layer, target to their
    widgets.
    """

    query_index: int = 0
    gallery_index: int = 0
    method: str = "gradcam"
    layer: str = ""
    target: str = "similarity"
    image: np.ndarray | None = None
    png: bytes = b""
    label: str = ""
    pair: HeatmapPair | None = None
    negative_index: int | None = None
    renders: int = 0
    error: str | None = None
    controls: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class RenderedPair:
    """One render: the picture (uint8, query | query heat | gallery heat | gallery), its PNG bytes, the label,
    the heatmaps and the negative used by the triplet target (``None`` otherwise)."""

    image: np.ndarray
    png: bytes
    label: str
    pair: HeatmapPair
    negative_index: int | None


# The explorer shows its strip this many times the crop size (64×128 crops become 128×256 on screen).
DISPLAY_SCALE = 2


def render_heatmap_pair(state: HeatmapExplorerState, source: HeatmapSource, alpha: float = 0.5,
                        scale: int = 1) -> RenderedPair:
    """Draw the selection of ``state`` (only its selection fields are read) from ``source``: pure apart from the
    source's image cache, so the same selection always gives the same picture.

    The picture is one strip (query, query heat, gallery heat, gallery), enlarged ``scale`` times (bicubic).

    Raises:
        ValueError: an unknown method or target, an index out of range, a layer the model does not have, or a
            triplet target without identities.
    """
    if state.method not in METHODS:
        raise ValueError(f"unknown heatmap method {state.method!r}; valid methods: {', '.join(METHODS)}")
    if state.target not in TARGETS:
        raise ValueError(f"unknown target {state.target!r}; valid targets: {', '.join(TARGETS)}")
    q_tensor, q_rgb = source.image("query", state.query_index)
    g_tensor, g_rgb = source.image("gallery", state.gallery_index)
    layers = [state.layer] if state.layer else default_target_layers(source.model)
    uses_target = state.method not in GRADIENT_FREE_METHODS
    negative_index = None
    negative = None
    if uses_target and state.target == "triplet":
        negative_index = source.hardest_negative(state.query_index)
        negative = source.image("gallery", negative_index)[0]
    pair = heatmap_pair(source.model, q_tensor, g_tensor, state.method, layers, state.target, negative)
    picture = tile([[q_rgb, heat_overlay(q_rgb, pair.query_map, alpha), heat_overlay(g_rgb, pair.gallery_map, alpha),
                     g_rgb]])
    if scale != 1:  # re-ID crops are small: enlarge the strip so a screen shows it at a readable size
        height, width = picture.shape[:2]
        picture = np.asarray(Image.fromarray(picture).resize((width * scale, height * scale), Image.BICUBIC))
    q_pid, g_pid = source.pid("query", state.query_index), source.pid("gallery", state.gallery_index)
    relation = "" if q_pid is None or g_pid is None else (" — same identity" if q_pid == g_pid
                                                         else " — different identities")
    target_text = "no target (gradient-free)" if not uses_target else f"target: {state.target}"
    if negative_index is not None:
        target_text += f" vs hardest negative {source.describe('gallery', negative_index)}"
    label = (f"{source.describe('query', state.query_index)} · {source.describe('gallery', state.gallery_index)}"
             f"{relation} · cosine similarity {pair.similarity:.3f} · {state.method} on {', '.join(layers)} · "
             f"{target_text}")
    if pair.empty_sides:
        label += f" · no positive evidence in the {' and '.join(pair.empty_sides)} map (try layercam)"
    return RenderedPair(picture, to_png(picture), label, pair, negative_index)


def _options(source: HeatmapSource, side: str) -> list[tuple[str, int]]:
    items = source._items(side)
    return [(source.describe(side, i).split(" ", 1)[1], i) for i in range(len(items))]


def _layer_options(model: nn.Module, layers: Mapping[str, str] | None) -> list[tuple[str, str]]:
    if layers is not None:
        return list(layers.items())
    try:
        return list(stage_layers(model).items())
    except TypeError:
        return [(name, name) for name in default_target_layers(model)]


def heatmap_explorer(
    model: nn.Module,
    items: Sequence[ImageInput],
    gallery_items: Sequence[ImageInput] | None = None,
    *,
    height: int = 256,
    width: int = 128,
    transform: Callable[[Image.Image], Tensor] | None = None,
    methods: Sequence[str] = DEFAULT_METHODS,
    layers: Mapping[str, str] | None = None,
    query_index: int = 0,
    gallery_index: int = 0,
    method: str = "gradcam",
    target: str = "similarity",
    alpha: float = 0.5,
) -> tuple[Any, HeatmapExplorerState]:
    """An interactive heatmap explorer; returns ``(widget, state)``.

    Args:
        model: a :class:`~reidkit.models.ReIDModel` or :class:`~reidkit.models.LightMBN` (any model returning
            (B, D) embeddings in eval mode, with ``layers`` given).
        items: the query images (re-ID items, paths, PIL images or uint8 arrays); also the gallery unless
            ``gallery_items`` is given.
        height, width: the model's input size (they build the default test pipeline).
        transform: the model's test pipeline instead (PIL image → tensor, e.g. ``FeatureExtractor.transform``);
            see :class:`HeatmapSource`.
        methods: the methods offered (default every method but Score-CAM).
        layers: ``{label: dotted module name}`` offered as layers (default :func:`stage_layers`); the first
            selection is the model's default layer.
        query_index, gallery_index, method, target: the first selection.
        alpha: weight of the colour map in the overlays.
    """
    import ipywidgets as w

    source = HeatmapSource(model, list(items), list(items if gallery_items is None else gallery_items),
                           height=height, width=width, transform=transform)
    unknown = [m for m in methods if m not in METHODS]
    if unknown or not methods:
        raise ValueError(f"unknown heatmap method(s) {unknown}; valid methods: {', '.join(METHODS)}")
    if method not in methods:
        raise ValueError(f"method {method!r} is not among the offered methods {list(methods)}")
    layer_options = _layer_options(model, layers)
    default_layer = default_target_layers(model)[0] if layers is None else layer_options[-1][1]
    if default_layer not in [value for _, value in layer_options]:
        layer_options.append((default_layer, default_layer))
    state = HeatmapExplorerState(query_index=query_index, gallery_index=gallery_index, method=method,
                                 layer=default_layer, target=target)
    style = {"description_width": "initial"}
    state.controls = {
        "query": w.Dropdown(options=_options(source, "query"), value=query_index, description="query", style=style),
        "gallery": w.Dropdown(options=_options(source, "gallery"), value=gallery_index, description="gallery",
                              style=style),
        "method": w.Dropdown(options=list(methods), value=method, description="method", style=style),
        "layer": w.Dropdown(options=layer_options, value=default_layer, description="layer", style=style),
        "target": w.Dropdown(options=list(TARGETS), value=target, description="target", style=style),
    }
    picture = w.Image(format="png", layout=w.Layout(align_self="flex-start"))  # natural size, not stretched
    label = w.HTML()  # wraps at the notebook's width (a Label cuts long text off)
    for name, widget in (*state.controls.items(), ("image", picture), ("label", label)):
        widget.add_class(CSS_CLASSES[name])

    def refresh() -> None:
        c = state.controls
        selection = dict(query_index=c["query"].value, gallery_index=c["gallery"].value, method=c["method"].value,
                         layer=c["layer"].value, target=c["target"].value)
        for key, value in selection.items():
            setattr(state, key, value)
        try:
            rendered = render_heatmap_pair(state, source, alpha=alpha, scale=DISPLAY_SCALE)
        except (ValueError, RuntimeError) as err:  # a selection that cannot be drawn: keep the picture, say why
            state.error = str(err)
            label.value = html.escape(f"cannot draw: {state.error}")
            return
        state.error = None
        state.image, state.png, state.label = rendered.image, rendered.png, rendered.label
        state.pair, state.negative_index = rendered.pair, rendered.negative_index
        state.renders += 1
        picture.value = rendered.png
        label.value = html.escape(rendered.label)

    for control in state.controls.values():
        control.observe(lambda _change: refresh(), names="value")
    refresh()
    c = state.controls
    columns = w.HTML("<b>query</b> &nbsp;·&nbsp; query heat &nbsp;·&nbsp; gallery heat &nbsp;·&nbsp; <b>gallery</b> "
                     "&nbsp; (heat: red = strongest evidence in that image)")
    widget = w.VBox([w.HBox([c["query"], c["gallery"]]), w.HBox([c["method"], c["layer"], c["target"]]), columns,
                     picture, label])
    widget.add_class(CSS_CLASSES["root"])
    return widget, state


def match_heatmaps_figure(
    source: HeatmapSource,
    distmat: np.ndarray,
    query_indices: Sequence[int],
    method: str = "gradcam",
    layers: Sequence[str] | None = None,
    target: str = "similarity",
) -> Figure:
    """For each chosen query, two rows of :func:`~reidkit.viz.heatmaps.heatmap_pair_figure`: the query with its
    best-ranked true match, then with its best-ranked wrong match (the hardest negative of the ranking).

    The ranking follows the evaluation protocol (:func:`reidkit.viz.retrieval.ranked_list`: same identity and
    same camera skipped); ``distmat`` is (Q, G) over ``source.query`` × ``source.gallery``, which must be re-ID
    items. A query without a kept true match (or wrong match) gets only the row it has.
    """
    if not all(isinstance(item, ReIDItem) for item in (*source.query, *source.gallery)):
        raise ValueError("match_heatmaps_figure needs re-ID items (ReIDItem) as query and gallery")
    distmat = np.asarray(distmat)
    if distmat.shape != (len(source.query), len(source.gallery)):
        raise ValueError(f"distmat must be (Q, G) = {(len(source.query), len(source.gallery))}, got {distmat.shape}")
    g_pids, g_camids = item_labels(source.gallery)
    rows, labels = [], []
    for q in query_indices:
        item = source.query[q]
        ranking = ranked_list(distmat[q], item.pid, item.camid, g_pids, g_camids, k=len(source.gallery))
        q_tensor, q_rgb = source.image("query", q)
        for wanted, what in ((True, "best true match"), (False, "best wrong match")):
            found = np.flatnonzero(ranking.matches == wanted)
            if found.size == 0:
                continue
            g = int(ranking.indices[found[0]])
            g_tensor, g_rgb = source.image("gallery", g)
            negative = None
            if target == "triplet":
                negative = source.image("gallery", source.hardest_negative(q))[0]
            rows.append((q_rgb, g_rgb, heatmap_pair(source.model, q_tensor, g_tensor, method, layers, target,
                                                    negative)))
            labels.append(f"query {q} (id {item.pid}), {what} at rank {int(found[0]) + 1}")
    if not rows:
        raise ValueError(f"none of the queries {list(query_indices)} has a gallery image kept by the protocol")
    return heatmap_pair_figure(rows, labels)
