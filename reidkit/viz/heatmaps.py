r"""Heatmaps for embedding models: Grad-CAM with re-ID targets, activation maps and an exact similarity split.

A re-ID model has no class at test time: it maps an image to an embedding ``e`` and ranks a gallery by the
similarity of embeddings. What to explain is therefore a scalar function of one image's embedding, a *target*:

* :class:`SimilarityToEmbedding` ``cos(e, e_ref)``: which regions make the image match a reference (the query's
  embedding for a gallery image, and the other way round);
* :class:`DistanceToEmbedding` ``1 − cos(e, e_ref)`` (or the squared Euclidean distance): which regions push the
  image away from the reference (Grad-CAM keeps only positive evidence, so this is the opposite picture of the
  similarity map, not its complement);
* :class:`TripletTarget` ``cos(e, e_pos) − cos(e, e_neg)``: a ranking decision, closer to a positive than to a
  negative.

:func:`compute_heatmaps` runs a Grad-CAM family method from the ``grad-cam`` package (``pytorch_grad_cam``,
Selvaraju et al., ICCV 2017, arXiv 1610.02391; Grad-CAM++ Chattopadhyay et al., WACV 2018; XGrad-CAM Fu et al.,
BMVC 2020; LayerCAM Jiang et al., TIP 2021; HiResCAM Draelos & Carin, arXiv 2011.08891; Eigen-CAM Muhammad &
Yeasin, IJCNN 2020; Score-CAM Wang et al., CVPRW 2020) on any :class:`~reidkit.models.ReIDModel` or
:class:`~reidkit.models.LightMBN` with exactly one target per image, or the gradient-free activation map of
:mod:`reidkit.viz.activations` (``method="activation"``). The model runs in eval mode (BatchNorm on running
statistics) with gradients on; its training flags and parameter gradients are restored afterwards.

:func:`similarity_decomposition` splits the cosine similarity of a query-gallery pair exactly over the spatial
cells of the last feature maps (Stylianou et al., "Visualizing Deep Similarity Networks", WACV 2019,
arXiv 1901.00536; Zhu et al., "Visual Explanation for Deep Metric Learning", arXiv 1909.12977): no gradient, no
approximation, every cell's number is what that cell adds to the score.

:func:`default_target_layers` picks the map the model pools (ResNet family ``layer4[-1]``, OSNet ``conv5``,
EfficientNet / MobileNetV3 the last conv block, LightMBN ``global_branch.conv5``); :func:`stage_layers` lists one
hookable module per backbone stage for other choices. Pictures: :func:`heat_overlay` (uint8 arrays) and
:func:`heatmap_pair_figure` / :func:`decomposition_figure` (matplotlib figures).
"""
from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from matplotlib.figure import Figure
from torch import Tensor, nn

from reidkit.models.lightmbn import LightMBN
from reidkit.models.neck import BNNeck
from reidkit.models.pooling import GeM, GlobalAvgPool, GlobalMaxPool
from reidkit.models.reid_model import ReIDModel
from reidkit.viz.activations import activation_map, overlay, upsample_to

__all__ = [
    "GRADIENT_FREE_METHODS",
    "GRADIENT_METHODS",
    "METHODS",
    "TARGETS",
    "DistanceToEmbedding",
    "EmbeddingModel",
    "HeatmapPair",
    "MissingGradientError",
    "SimilarityDecomposition",
    "SimilarityToEmbedding",
    "TripletTarget",
    "compute_heatmaps",
    "decomposition_figure",
    "default_target_layers",
    "embed",
    "heat_overlay",
    "heatmap_pair",
    "heatmap_pair_figure",
    "make_targets",
    "resolve_layers",
    "similarity_decomposition",
    "stage_layers",
]

#: Method name → ``pytorch_grad_cam`` class name (``"activation"``: :func:`reidkit.viz.activations.activation_map`).
METHODS: dict[str, str] = {
    "gradcam": "GradCAM",
    "gradcam++": "GradCAMPlusPlus",
    "xgradcam": "XGradCAM",
    "layercam": "LayerCAM",
    "hirescam": "HiResCAM",
    "eigencam": "EigenCAM",
    "scorecam": "ScoreCAM",
    "activation": "activation_map",
}
#: Methods that need no target and no gradient (they also run under ``torch.no_grad()``).
GRADIENT_FREE_METHODS: frozenset[str] = frozenset({"eigencam", "activation"})
#: Methods that back-propagate the target to the layer (Score-CAM needs a target but only forward passes).
GRADIENT_METHODS: frozenset[str] = frozenset(METHODS) - GRADIENT_FREE_METHODS - {"scorecam"}
#: Target names understood by :func:`make_targets` / :func:`heatmap_pair`.
TARGETS: tuple[str, ...] = ("similarity", "distance", "triplet")

Target = Callable[[Tensor], Tensor]


class MissingGradientError(RuntimeError):
    """A gradient-based heatmap could not get the gradient of the target with respect to a target layer."""


# ------------------------------------------------------------------------------------------------------------
# Targets: one scalar per image's embedding, as grad-cam expects (``target(output_of_one_image)``)
# ------------------------------------------------------------------------------------------------------------
def _as_reference(embedding: Tensor | np.ndarray, who: str) -> Tensor:
    ref = torch.as_tensor(embedding).detach()
    if ref.dim() == 2 and ref.shape[0] == 1:
        ref = ref[0]
    if ref.dim() != 1 or ref.numel() == 0 or not ref.is_floating_point():
        raise ValueError(f"{who}: the reference embedding must be a float vector (D,) or (1, D), got "
                         f"{tuple(ref.shape)} {ref.dtype}")
    if not torch.isfinite(ref).all() or float(ref.norm()) == 0.0:
        raise ValueError(f"{who}: the reference embedding must be finite and non-zero")
    return ref.float().clone()


def _one_output(output: Tensor, reference: Tensor, who: str) -> Tensor:
    e = output[0] if output.dim() == 2 and output.shape[0] == 1 else output
    if e.dim() != 1 or e.shape[0] != reference.shape[0]:
        raise ValueError(f"{who} scores one image's embedding ({reference.shape[0]},), got {tuple(output.shape)}; "
                         "grad-cam calls a target once per image, so pass exactly one target per image")
    return e


def _cosine(e: Tensor, ref: Tensor) -> Tensor:
    return F.cosine_similarity(e, ref.to(device=e.device, dtype=e.dtype), dim=0, eps=1e-12)


class SimilarityToEmbedding:
    """``cos(e, e_ref)``: the cosine similarity of an image's embedding ``e`` to a fixed reference embedding.

    Used as a Grad-CAM target on a gallery image with the query's embedding as reference, it highlights the
    regions that make the gallery image match the query (and the other way round for the query-side map).
    ``reference`` is detached and copied: no gradient flows into it.
    """

    def __init__(self, reference: Tensor | np.ndarray) -> None:
        self.reference = _as_reference(reference, "SimilarityToEmbedding")

    def __call__(self, output: Tensor) -> Tensor:
        return _cosine(_one_output(output, self.reference, "SimilarityToEmbedding"), self.reference)

    def __repr__(self) -> str:
        return f"SimilarityToEmbedding(dim={self.reference.shape[0]})"


class DistanceToEmbedding:
    """The distance of an image's embedding ``e`` to a fixed reference: ``1 − cos(e, e_ref)`` (``"cosine"``) or
    ``‖e − e_ref‖²`` (``"euclidean"``, squared as in :func:`reidkit.evaluation.pairwise_distance`).

    Sign: the target *increases* with the distance, so a Grad-CAM map of it shows the regions whose activation
    pushes the image away from the reference (what makes a hard negative look different). Grad-CAM keeps only
    positive evidence (a ReLU on the weighted map), so for the cosine this is the map of the *negative* evidence
    for similarity, not ``1 −`` the similarity map.
    """

    def __init__(self, reference: Tensor | np.ndarray, metric: Literal["cosine", "euclidean"] = "cosine") -> None:
        if metric not in ("cosine", "euclidean"):
            raise ValueError(f"DistanceToEmbedding: metric must be 'cosine' or 'euclidean', got {metric!r}")
        self.reference = _as_reference(reference, "DistanceToEmbedding")
        self.metric = metric

    def __call__(self, output: Tensor) -> Tensor:
        e = _one_output(output, self.reference, "DistanceToEmbedding")
        if self.metric == "cosine":
            return 1.0 - _cosine(e, self.reference)
        return (e - self.reference.to(device=e.device, dtype=e.dtype)).pow(2).sum()

    def __repr__(self) -> str:
        return f"DistanceToEmbedding(dim={self.reference.shape[0]}, metric={self.metric!r})"


class TripletTarget:
    """``cos(e, e_pos) − cos(e, e_neg)``: how much closer the image is to a positive than to a negative.

    Positive when the ranking is right; its Grad-CAM map shows the regions that support the decision (they
    pull towards the positive more than towards the negative).
    """

    def __init__(self, positive: Tensor | np.ndarray, negative: Tensor | np.ndarray) -> None:
        self.positive = _as_reference(positive, "TripletTarget positive")
        self.negative = _as_reference(negative, "TripletTarget negative")
        if self.positive.shape != self.negative.shape:
            raise ValueError(f"TripletTarget: positive {tuple(self.positive.shape)} and negative "
                             f"{tuple(self.negative.shape)} embeddings must have the same size")

    def __call__(self, output: Tensor) -> Tensor:
        e = _one_output(output, self.positive, "TripletTarget")
        return _cosine(e, self.positive) - _cosine(e, self.negative)

    def __repr__(self) -> str:
        return f"TripletTarget(dim={self.positive.shape[0]})"


def make_targets(name: str, references: Tensor, negatives: Tensor | None = None) -> list[Target]:
    """One target per row of ``references`` (N, D): ``"similarity"``, ``"distance"`` (cosine) or ``"triplet"``
    (positive = the reference row, negative = the matching row of ``negatives``)."""
    if name not in TARGETS:
        raise ValueError(f"unknown target {name!r}; valid targets: {', '.join(TARGETS)}")
    if references.dim() != 2:
        raise ValueError(f"make_targets: references must be (N, D) embeddings, got {tuple(references.shape)}")
    if name == "similarity":
        return [SimilarityToEmbedding(r) for r in references]
    if name == "distance":
        return [DistanceToEmbedding(r) for r in references]
    if negatives is None or negatives.shape != references.shape:
        got = None if negatives is None else tuple(negatives.shape)
        raise ValueError(f"the triplet target needs one negative embedding per reference, shape "
                         f"{tuple(references.shape)}; got {got}")
    return [TripletTarget(p, n) for p, n in zip(references, negatives)]


# ------------------------------------------------------------------------------------------------------------
# The model as grad-cam sees it, and its layers
# ------------------------------------------------------------------------------------------------------------
class EmbeddingModel(nn.Module):
    """A re-ID model seen as ``images (N, 3, H, W) → embeddings (N, D)``, the output grad-cam needs.

    The wrapped model must return its retrieval feature as a tensor in eval mode (every
    :class:`~reidkit.models.ReIDModel` and :class:`~reidkit.models.LightMBN` does); anything else (a training
    output tuple, a dict) is a clear error rather than grad-cam's argmax fallback.
    """

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, images: Tensor) -> Tensor:
        out = self.model(images)
        if not isinstance(out, Tensor) or out.dim() != 2 or out.shape[0] != images.shape[0]:
            what = tuple(out.shape) if isinstance(out, Tensor) else type(out).__name__
            raise TypeError(f"{type(self.model).__name__} must return (N, D) embeddings for N = {images.shape[0]} "
                            f"images in eval mode, got {what}")
        return out


def _stage_module_names(backbone: nn.Module, prefix: str) -> dict[str, str]:
    """For a reidkit backbone: stage name → dotted name of the module whose output is that stage's output."""
    from reidkit.models.backbones.efficientnet import EfficientNetBackbone
    from reidkit.models.backbones.mobilenet import MobileNetV3Backbone
    from reidkit.models.backbones.osnet import _OSNetBackbone
    from reidkit.models.backbones.resnet import ResNetBackbone

    out: dict[str, str] = {}
    if isinstance(backbone, ResNetBackbone):
        out["stem"] = f"{prefix}{backbone._stem[-1]}"
        for stage in backbone.stage_names[1:]:
            last = len(getattr(backbone, stage)) - 1
            inserted = backbone.attention[stage] if stage in backbone.attention else {}
            # forward_stage calls the blocks one by one, so the stage Sequential itself never runs: hook its last
            # block, or the attention module right after it
            out[stage] = (f"{prefix}attention.{stage}.{last}" if str(last) in inserted
                          else f"{prefix}{stage}.{last}")
    elif isinstance(backbone, _OSNetBackbone):
        for stage in backbone.stage_names:
            out[stage] = f"{prefix}attention.{stage}" if stage in backbone.attention else f"{prefix}{stage}"
    elif isinstance(backbone, EfficientNetBackbone):
        for i, stage in enumerate(backbone.stage_names):
            out[stage] = f"{prefix}features.{i}"
    elif isinstance(backbone, MobileNetV3Backbone):
        for stage, part in backbone._slices.items():
            out[stage] = f"{prefix}features.{part.stop - 1}"
    return out


def stage_layers(model: nn.Module) -> dict[str, str]:
    """One hookable layer per stage, in order: ``{stage name: dotted module name}``.

    Each module's output *is* that stage's output (``backbone.featuremaps(x)[stage]``, after any inserted
    attention), so these are the valid Grad-CAM target layers for a stage. For a
    :class:`~reidkit.models.ReIDModel` whose backbone is not a reidkit family the only entry is ``backbone``
    (the map the model pools). LightMBN: its trunk's stages and the global branch's stages.
    """
    if isinstance(model, LightMBN):
        layers = {f"trunk.{name}": f"trunk.{name}" for name, _ in model.trunk.named_children()
                  if not name.startswith("attention_")}
        children = [name for name, _ in model.global_branch.named_children()]
        for i, name in enumerate(children):
            if name.startswith("attention_"):
                continue
            after = f"attention_{name}"
            hooked = after if after in children[i + 1:i + 2] else name
            layers[f"global.{name}"] = f"global_branch.{hooked}"
        return layers
    if isinstance(model, ReIDModel):
        found = _stage_module_names(model.backbone, "backbone.")
        return found if found else {"backbone": "backbone"}
    raise TypeError(f"stage_layers knows ReIDModel and LightMBN, got {type(model).__name__}; pass target layers by "
                    "their dotted names (model.get_submodule(name))")


def default_target_layers(model: nn.Module) -> list[str]:
    """The default Grad-CAM layer of a model, as dotted names: the last stage, i.e. the feature map the model
    pools (ResNet family ``backbone.layer4.<last block>``, OSNet / OSNet-AIN ``backbone.conv5``, EfficientNet /
    MobileNetV3 the last conv block ``backbone.features.<last>``, LightMBN ``global_branch.conv5``; an attention
    module inserted after that stage is hooked instead). Override with ``layers=[...]`` anywhere."""
    if isinstance(model, LightMBN):
        return [next(v for k, v in reversed(stage_layers(model).items()) if k.startswith("global."))]
    return [list(stage_layers(model).values())[-1]]


def resolve_layers(model: nn.Module, layers: str | Sequence[str] | None) -> list[tuple[str, nn.Module]]:
    """``(dotted name, module)`` for each requested layer (``None``: :func:`default_target_layers`)."""
    names = default_target_layers(model) if layers is None else [layers] if isinstance(layers, str) else list(layers)
    if not names:
        raise ValueError("at least one target layer is needed")
    resolved = []
    for name in names:
        if not isinstance(name, str):
            raise TypeError(f"target layers are given by dotted module names, got {type(name).__name__}")
        try:
            resolved.append((name, model.get_submodule(name)))
        except AttributeError as err:
            try:
                hint = f"; this model's stages: {stage_layers(model)}"
            except TypeError:
                hint = ""
            raise ValueError(f"unknown target layer {name!r}{hint}") from err
    return resolved


class _TrainingFlags:
    """Put a model in eval mode and restore every module's flag (and parameter gradients) afterwards."""

    def __init__(self, model: nn.Module) -> None:
        self.model = model

    def __enter__(self) -> nn.Module:
        self.flags = [(m, m.training) for m in self.model.modules()]
        self.grads = [(p, p.grad) for p in self.model.parameters()]
        self.model.eval()
        return self.model

    def __exit__(self, *exc: object) -> None:
        for m, flag in self.flags:
            m.training = flag
        for p, grad in self.grads:
            p.grad = grad


def _as_batch(images: Tensor, who: str) -> Tensor:
    if not isinstance(images, Tensor) or images.dim() not in (3, 4) or images.shape[-3] != 3:
        what = tuple(images.shape) if isinstance(images, Tensor) else type(images).__name__
        raise ValueError(f"{who} expects a model-ready image (3, H, W) or batch (B, 3, H, W), got {what}")
    if not images.is_floating_point():
        raise ValueError(f"{who} expects float images (normalised as the model expects), got {images.dtype}")
    return images if images.dim() == 4 else images.unsqueeze(0)


def _device(model: nn.Module) -> torch.device:
    param = next(model.parameters(), None)
    return param.device if param is not None else torch.device("cpu")


def embed(model: nn.Module, images: Tensor) -> Tensor:
    """The eval-mode embeddings (B, D) of model-ready images (3, H, W) or (B, 3, H, W), without gradient
    (the model's training flags are restored)."""
    batch = _as_batch(images, "embed")
    with _TrainingFlags(model), torch.no_grad():
        return EmbeddingModel(model)(batch.to(_device(model))).detach()


# ------------------------------------------------------------------------------------------------------------
# The runner
# ------------------------------------------------------------------------------------------------------------
def _check_method(method: str) -> None:
    if method not in METHODS:
        raise ValueError(f"unknown heatmap method {method!r}; valid methods: {', '.join(METHODS)}")


def _check_gradients_available(method: str) -> None:
    if torch.is_inference_mode_enabled():
        raise RuntimeError(f"{method} needs gradients but was called inside torch.inference_mode(); call it outside "
                           f"(the gradient-free methods {sorted(GRADIENT_FREE_METHODS)} work anywhere)")
    if not torch.is_grad_enabled():
        raise RuntimeError(f"{method} needs gradients but was called under torch.no_grad() (gradients are off); "
                           f"call it outside no_grad (the gradient-free methods {sorted(GRADIENT_FREE_METHODS)} "
                           "work anywhere)")


class _LayerProbe:
    """Forward hooks that check each target layer: it runs once per gradient-enabled forward, its output is a
    (B, C, h, w) tensor that requires grad, and a gradient reaches it in the backward pass."""

    def __init__(self, layers: Sequence[tuple[str, nn.Module]], needs_grad: bool, first_forward_only: bool) -> None:
        self.needs_grad = needs_grad
        self.first_forward_only = first_forward_only
        self.calls = {name: 0 for name, _ in layers}
        self.grad_seen = {name: False for name, _ in layers}
        self.maps: dict[str, Tensor] = {}
        self.raised = False
        self.handles = [module.register_forward_hook(self._hook(name)) for name, module in layers]

    def _hook(self, name: str) -> Callable[..., None]:
        def hook(_module: nn.Module, _inputs: Any, output: Any) -> None:
            if self.first_forward_only and self.maps.get(name) is not None:  # Score-CAM's scoring passes
                return
            if not isinstance(output, Tensor) or output.dim() != 4:
                what = tuple(output.shape) if isinstance(output, Tensor) else type(output).__name__
                self.raised = True
                raise TypeError(f"target layer {name!r} must output a (B, C, h, w) feature map, got {what}")
            self.calls[name] += 1
            self.maps[name] = output.detach()
            if not self.needs_grad:
                return
            if not output.requires_grad:
                self.raised = True
                raise MissingGradientError(
                    f"target layer {name!r}: its output does not require grad even though the input images do "
                    "(the layer runs under no_grad or detaches its input); pick another layer")

            def seen(grad: Tensor) -> None:
                self.grad_seen[name] = True

            output.register_hook(seen)

        return hook

    def check_after_forward(self) -> None:
        for name, calls in self.calls.items():
            if calls == 0:
                raise ValueError(f"target layer {name!r} did not run in the forward pass (a container whose children "
                                 "are called one by one never runs itself); pick a module from stage_layers(model)")
            if calls > 1:
                raise ValueError(f"target layer {name!r} ran {calls} times in one forward pass (a shared module); "
                                 "pick a module that runs once")

    def missing_gradients(self) -> list[str]:
        return [name for name, seen in self.grad_seen.items() if not seen] if self.needs_grad else []

    def release(self) -> None:
        for handle in self.handles:
            handle.remove()


def _activation_heatmaps(probe: _LayerProbe, height: int, width: int) -> np.ndarray:
    maps = [upsample_to(activation_map(fmap), height, width) for fmap in probe.maps.values()]
    mean = torch.stack(maps).mean(dim=0)
    return activation_map(mean.unsqueeze(1)).cpu().numpy().astype(np.float32)  # re-scaled to [0, 1] per image


def compute_heatmaps(
    model: nn.Module,
    images: Tensor,
    targets: Sequence[Target] | None = None,
    method: str = "gradcam",
    layers: str | Sequence[str] | None = None,
) -> np.ndarray:
    """Heatmaps (B, H, W) in [0, 1] of ``method`` on ``images`` for one target per image.

    Args:
        model: a :class:`~reidkit.models.ReIDModel`, a :class:`~reidkit.models.LightMBN` or any module returning
            (B, D) embeddings in eval mode.
        images: model-ready images (3, H, W) or (B, 3, H, W) (normalised as the model expects).
        targets: exactly one target per image (:class:`SimilarityToEmbedding`, :class:`DistanceToEmbedding`,
            :class:`TripletTarget` or any ``callable(embedding (D,)) -> scalar``); may be ``None`` for the
            gradient-free methods (:data:`GRADIENT_FREE_METHODS`).
        method: a key of :data:`METHODS`. ``"activation"`` is the channel-wise sum of squared activations,
            min-max normalised (:func:`reidkit.viz.activations.activation_map`); ``"scorecam"`` runs C forward
            passes per image (slow).
        layers: dotted module names (default :func:`default_target_layers`); several layers are averaged.

    The model runs in eval mode with gradients enabled and the input images requiring grad, so a model with
    frozen parameters still gets gradients at its layers; its training flags and ``.grad`` fields are restored.
    Each map is min-max scaled per image (grad-cam's convention): maps show *where*, not *how much*.

    An all-zero map is a result, not a failure: Grad-CAM / HiResCAM keep ``ReLU(Σ_c w_c A_c)``, and for a cosine
    target at the high similarities of re-ID pairs the weights are often negative everywhere (the gradient of
    ``cos`` is orthogonal to the embedding). LayerCAM (``ReLU(∂t/∂A) ⊙ A`` cell by cell) and Grad-CAM++ rarely
    come out empty; :attr:`HeatmapPair.empty_sides` says when it happens.

    Raises:
        ValueError: unknown method (the message lists the valid ones), wrong number of targets, a layer that
            does not run exactly once per forward.
        RuntimeError: a gradient method called under ``torch.no_grad()`` or ``torch.inference_mode()``.
        MissingGradientError: a target layer that gets no gradient from the target (detached, or not on the
            path to the embedding).
    """
    _check_method(method)
    batch = _as_batch(images, "compute_heatmaps")
    gradient_free = method in GRADIENT_FREE_METHODS
    if targets is None:
        if not gradient_free:
            raise ValueError(f"{method} needs one target per image (e.g. SimilarityToEmbedding(query_embedding)); "
                             f"only {sorted(GRADIENT_FREE_METHODS)} run without targets")
    elif len(targets) != batch.shape[0]:
        raise ValueError(f"pass exactly one target per image: {batch.shape[0]} images, {len(targets)} targets "
                         "(grad-cam zips them and would silently drop the rest)")
    needs_grad = method in GRADIENT_METHODS
    if needs_grad:
        _check_gradients_available(method)
    named = resolve_layers(model, layers)
    height, width = batch.shape[-2:]
    wrapper = EmbeddingModel(model)
    with _TrainingFlags(model):
        x = batch.detach().to(_device(model)).clone().requires_grad_(needs_grad)
        probe = _LayerProbe(named, needs_grad=needs_grad, first_forward_only=method == "scorecam")
        try:
            if method == "activation":
                wrapper(x)
                probe.check_after_forward()
                return _activation_heatmaps(probe, int(height), int(width))
            return _grad_cam(wrapper, x, targets, method, named, probe)
        finally:
            probe.release()


def _grad_cam(wrapper: EmbeddingModel, x: Tensor, targets: Sequence[Target] | None, method: str,
              named: Sequence[tuple[str, nn.Module]], probe: _LayerProbe) -> np.ndarray:
    import pytorch_grad_cam

    cam_class = getattr(pytorch_grad_cam, METHODS[method])
    cam = cam_class(model=wrapper, target_layers=[module for _, module in named])
    try:
        maps = cam(input_tensor=x, targets=list(targets) if targets is not None else None)
    except Exception as err:
        if probe.raised:  # the probe's own, precise error
            raise
        probe.check_after_forward()
        missing = probe.missing_gradients()
        if missing:
            raise MissingGradientError(_missing_message(missing)) from err
        raise
    finally:
        cam.activations_and_grads.release()
    probe.check_after_forward()
    missing = probe.missing_gradients()
    if missing:
        raise MissingGradientError(_missing_message(missing))
    maps = np.asarray(maps, dtype=np.float32)
    if maps.shape != (x.shape[0], *x.shape[-2:]) or not np.isfinite(maps).all():
        raise RuntimeError(f"{method} returned maps of shape {maps.shape} (finite: {np.isfinite(maps).all()}), "
                           f"expected {(x.shape[0], *x.shape[-2:])}")
    return maps


def _missing_message(names: Sequence[str]) -> str:
    return (f"no gradient reached target layer(s) {list(names)}: the target does not depend on them through "
            "differentiable operations (a detached path, or a layer the embedding does not use); pick a layer on "
            "the path to the embedding, e.g. default_target_layers(model)")


# ------------------------------------------------------------------------------------------------------------
# A query-gallery pair
# ------------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class HeatmapPair:
    """Heatmaps of a query-gallery pair: ``query_map`` explains the query's embedding with respect to the
    gallery's (and ``gallery_map`` the other way round), both (H, W) in [0, 1] at the input size.
    ``similarity`` is the cosine of the two eval embeddings."""

    query_map: np.ndarray
    gallery_map: np.ndarray
    similarity: float
    method: str
    layers: tuple[str, ...]
    target: str

    @property
    def empty_sides(self) -> tuple[str, ...]:
        """The sides whose map is zero everywhere: Grad-CAM found no positive evidence for the target at this
        layer (its ReLU removed a weighted map that was negative everywhere), not an error."""
        return tuple(side for side, m in (("query", self.query_map), ("gallery", self.gallery_map))
                     if not np.any(m > 0))

    @property
    def how(self) -> str:
        """``"gradcam · backbone.layer4.1 · similarity"`` (no target for gradient-free methods: they use none)."""
        parts = [self.method, ", ".join(self.layers)]
        if self.method not in GRADIENT_FREE_METHODS:
            parts.append(self.target)
        return " · ".join(parts)

    @property
    def caption(self) -> str:
        """:attr:`how` and ``"cos 0.731"``, plus ``"no positive evidence: gallery"`` for an empty map."""
        parts = [self.how, f"cos {self.similarity:.3f}"]
        if self.empty_sides:
            parts.append(f"no positive evidence: {', '.join(self.empty_sides)}")
        return " · ".join(parts)


def heatmap_pair(
    model: nn.Module,
    query: Tensor,
    gallery: Tensor,
    method: str = "gradcam",
    layers: str | Sequence[str] | None = None,
    target: str = "similarity",
    negative: Tensor | None = None,
) -> HeatmapPair:
    """Heatmaps of one query and one gallery image (model-ready (3, H, W) tensors), each explained against the
    other's embedding: ``"similarity"`` (what makes them match), ``"distance"`` (what sets them apart) or
    ``"triplet"`` (closer to the other image than to ``negative``, a third image such as the query's hardest
    negative; the same negative for both sides)."""
    _check_method(method)
    if target not in TARGETS:
        raise ValueError(f"unknown target {target!r}; valid targets: {', '.join(TARGETS)}")
    q, g = _as_batch(query, "heatmap_pair query"), _as_batch(gallery, "heatmap_pair gallery")
    if q.shape[0] != 1 or g.shape[0] != 1:
        raise ValueError(f"heatmap_pair takes one query and one gallery image, got batches {q.shape[0]}, {g.shape[0]}")
    e_q, e_g = embed(model, q), embed(model, g)
    similarity = float(F.cosine_similarity(e_q, e_g, dim=1, eps=1e-12)[0])
    negatives = None
    if target == "triplet" and method not in GRADIENT_FREE_METHODS:
        if negative is None:
            raise ValueError("the triplet target needs a negative image (e.g. the query's hardest negative)")
        e_n = embed(model, _as_batch(negative, "heatmap_pair negative"))
        negatives = e_n.expand(1, -1)
    names = tuple(name for name, _ in resolve_layers(model, layers))
    maps = []
    for image, other in ((q, e_g), (g, e_q)):
        targets = None if method in GRADIENT_FREE_METHODS else make_targets(target, other, negatives)
        maps.append(compute_heatmaps(model, image, targets, method, list(names))[0])
    return HeatmapPair(maps[0], maps[1], similarity, method, names, target)


# ------------------------------------------------------------------------------------------------------------
# Exact decomposition of the cosine similarity over spatial cells
# ------------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class SimilarityDecomposition:
    """Per-cell contributions to the cosine similarity of a query-gallery pair.

    ``query`` (h_q, w_q) and ``gallery`` (h_g, w_g) each sum to ``similarity`` (up to float rounding).
    ``feature``: ``"embedding"`` (the model's eval feature, through the neck) or ``"pooled"`` (the pooling
    output, before the neck). ``rule``: ``"linear"`` (average pooling: each cell's term is exactly what that
    cell's features add to the pooled feature's similarity) or ``"share"`` (GeM / max pooling: each channel's
    pooled value split by the cells' share of it; see :func:`similarity_decomposition`).
    """

    query: np.ndarray
    gallery: np.ndarray
    similarity: float
    feature: str
    rule: str


def _cell_parts(pooling: nn.Module, fmap: Tensor) -> tuple[Tensor, str]:
    """(C, N) per-cell parts ``P`` of the pooled feature, ``Σ_j P_cj = pooled_c`` for every channel c, and the
    rule: average ``x_cj / N`` (linear); GeM ``pooled_c · x_cj^p / Σ_j' x_cj'^p`` and max ``pooled_c`` at the
    maximum (ties split) (share)."""
    x = fmap.flatten(2)[0]  # (C, N)
    if isinstance(pooling, GlobalAvgPool):
        return x / x.shape[1], "linear"
    pooled = pooling(fmap)[0].to(x.dtype).unsqueeze(1)  # (C, 1)
    if isinstance(pooling, GeM):
        p = float(pooling.p.detach().clamp(min=1.0)) if isinstance(pooling.p, Tensor) else max(float(pooling.p), 1.0)
        z = x.clamp(min=pooling.eps)
        powered = (z / z.amax(dim=1, keepdim=True)).pow(p)
        return pooled * powered / powered.sum(dim=1, keepdim=True), "share"
    if isinstance(pooling, GlobalMaxPool):
        top = (x == x.amax(dim=1, keepdim=True)).to(x.dtype)
        return pooled * top / top.sum(dim=1, keepdim=True), "share"
    raise TypeError(f"similarity_decomposition knows avg, GeM and max pooling, got {type(pooling).__name__}")


def _check_affine_neck(neck: nn.Module | None) -> None:
    if neck is None:
        return
    if not isinstance(neck, BNNeck):
        raise TypeError(f"feature='embedding' folds a BNNeck into the cells; {type(neck).__name__} is unknown, use "
                        "feature='pooled'")
    if not neck.bn.track_running_stats or neck.bn.running_mean is None:
        raise TypeError("feature='embedding' needs the BNNeck's BN to use running statistics in eval mode (an affine "
                        "map); this one normalises with batch statistics, use feature='pooled'")


def similarity_decomposition(
    model: ReIDModel,
    query: Tensor,
    gallery: Tensor,
    feature: Literal["auto", "embedding", "pooled"] = "auto",
) -> SimilarityDecomposition:
    r"""Split the cosine similarity of a query and a gallery image exactly over the cells of their last maps.

    **Average pooling** (``rule="linear"``). With cell features ``a_i`` (query, ``N_q`` cells) and ``b_j``
    (gallery, ``N_g`` cells), ``f_q = (1/N_q) Σ_i φ(a_i)``, ``f_g = (1/N_g) Σ_j φ(b_j)`` and

        cos(f_q, f_g) = Σ_j ⟨f_q, φ(b_j)⟩ / (N_g ‖f_q‖ ‖f_g‖) = Σ_i ⟨φ(a_i), f_g⟩ / (N_q ‖f_q‖ ‖f_g‖),

    so gallery cell j contributes ``⟨f_q, φ(b_j)⟩ / (N_g ‖f_q‖ ‖f_g‖)`` and query cell i the symmetric term;
    each map sums to the similarity exactly and a cell's sign says whether it pulls the pair together.
    ``φ`` is the identity for ``feature="pooled"``. For ``feature="embedding"`` (the model's eval feature) ``φ``
    is the neck applied to each cell: in eval mode a BNNeck is affine, ``BN(E(f)) = γ ⊙ (E f − μ)/σ + β`` with
    the optional bias-free embedding ``E``, and an affine map commutes with the average, so
    ``neck(mean_j b_j) = mean_j neck(b_j)`` and the decomposition of the post-BN (or pre-BN) retrieval feature is
    still exact. ``"auto"`` picks ``"embedding"`` for average pooling.

    **GeM / max pooling** (``rule="share"``). The pooled value is not a mean of per-cell values, so no exact
    *linear* split exists and the neck cannot be folded in (``"auto"`` picks ``"pooled"``; ``"embedding"`` is an
    error). The split used is a convention, exact in its sum: channel ``c`` of the gallery's pooled feature is
    divided among the cells by their share ``s_jc = x_jc^p / Σ_j' x_j'c^p`` of its p-th power mass (GeM; one-hot
    at the maximum for max pooling, ties split), and cell j gets ``Σ_c f̂_q,c · s_jc · f_g,c / ‖f_g‖``. It sums to
    the cosine of the pooled features and equals the linear split at ``p = 1``; it is an attribution rule, not a
    first-order linearisation.

    Args:
        model: a :class:`~reidkit.models.ReIDModel` (run in eval mode; its flags are restored).
        query, gallery: model-ready images (3, H, W) or (1, 3, H, W).
        feature: ``"embedding"``, ``"pooled"`` or ``"auto"``.
    """
    if not isinstance(model, ReIDModel):
        raise TypeError(f"similarity_decomposition needs a ReIDModel (backbone → pooling → neck), got "
                        f"{type(model).__name__}")
    if feature not in ("auto", "embedding", "pooled"):
        raise ValueError(f"feature must be 'auto', 'embedding' or 'pooled', got {feature!r}")
    average = isinstance(model.pooling, GlobalAvgPool)
    chosen = ("embedding" if average else "pooled") if feature == "auto" else feature
    if chosen == "embedding":
        if not average:
            raise ValueError(f"feature='embedding' is exact only for average pooling; {type(model.pooling).__name__} "
                             "is not a mean of per-cell values: use feature='pooled' (share rule)")
        _check_affine_neck(model.neck)
    q, g = _as_batch(query, "similarity_decomposition query"), _as_batch(gallery, "similarity_decomposition gallery")
    if q.shape[0] != 1 or g.shape[0] != 1:
        raise ValueError("similarity_decomposition takes one query and one gallery image")
    device = _device(model)
    with _TrainingFlags(model), torch.no_grad():
        maps = [model.backbone(model.normalize_input(x.to(device))).double() for x in (q, g)]
        if chosen == "embedding":
            return _linear_embedding_split(model, maps[0], maps[1])
        return _pooled_split(model.pooling, maps[0], maps[1])


def _cells_through_neck(model: ReIDModel, fmap: Tensor) -> Tensor:
    """(N, D): every cell's feature vector through the eval-mode neck (the eval feature of that cell alone)."""
    cells = fmap[0].flatten(1).t()  # (N, C)
    if model.neck is None:
        return cells
    neck = copy.deepcopy(model.neck).double().eval()  # a float64 copy: the model itself is left untouched
    before, after = neck(cells)
    return after if model.eval_feature == "after" else before


def _linear_embedding_split(model: ReIDModel, fmap_q: Tensor, fmap_g: Tensor) -> SimilarityDecomposition:
    phi_q, phi_g = _cells_through_neck(model, fmap_q), _cells_through_neck(model, fmap_g)
    f_q, f_g = phi_q.mean(dim=0), phi_g.mean(dim=0)
    scale = f_q.norm() * f_g.norm()
    query = (phi_q @ f_g) / (phi_q.shape[0] * scale)
    gallery = (phi_g @ f_q) / (phi_g.shape[0] * scale)
    similarity = float(f_q @ f_g / scale)
    return SimilarityDecomposition(_cell_map(query, fmap_q), _cell_map(gallery, fmap_g), similarity, "embedding",
                                   "linear")


def _pooled_split(pooling: nn.Module, fmap_q: Tensor, fmap_g: Tensor) -> SimilarityDecomposition:
    f_q, f_g = pooling(fmap_q)[0], pooling(fmap_g)[0]
    unit_q, unit_g = f_q / f_q.norm(), f_g / f_g.norm()
    parts_q, rule = _cell_parts(pooling, fmap_q)
    parts_g, _ = _cell_parts(pooling, fmap_g)
    query = unit_g @ parts_q / f_q.norm()  # cell i: Σ_c ĝ_c · P_ci / ‖f_q‖
    gallery = unit_q @ parts_g / f_g.norm()
    return SimilarityDecomposition(_cell_map(query, fmap_q), _cell_map(gallery, fmap_g), float(unit_q @ unit_g),
                                   "pooled", rule)


def _cell_map(values: Tensor, fmap: Tensor) -> np.ndarray:
    """(N,) per-cell values as the (h, w) grid of ``fmap``, a float64 NumPy array."""
    return values.view(fmap.shape[2:]).cpu().numpy()


# ------------------------------------------------------------------------------------------------------------
# Pictures
# ------------------------------------------------------------------------------------------------------------
def heat_overlay(image_uint8: np.ndarray, heat: np.ndarray | Tensor, alpha: float = 0.5, cmap: str = "jet",
                 mode: Literal["bilinear", "nearest"] = "bilinear") -> np.ndarray:
    """A heatmap in [0, 1] of any size drawn over an (H, W, 3) uint8 image: resized with
    :func:`~reidkit.viz.activations.upsample_to`, blended with :func:`~reidkit.viz.activations.overlay`."""
    image = np.asarray(image_uint8)
    if image.ndim != 3:
        raise ValueError(f"heat_overlay expects an (H, W, 3) uint8 image, got {image.shape}")
    h = torch.as_tensor(np.asarray(heat, dtype=np.float64))
    if h.dim() != 2:
        raise ValueError(f"heat_overlay expects a 2-D heatmap, got {tuple(h.shape)}")
    if tuple(h.shape) != image.shape[:2]:
        h = upsample_to(h, image.shape[0], image.shape[1], mode=mode)
    return overlay(image, h, alpha=alpha, cmap=cmap)


def _signed_unit(values: np.ndarray) -> tuple[np.ndarray, float]:
    """Map signed values to [0, 1] with 0 at 0.5 (symmetric scale ±max|v|), for a diverging colour map."""
    bound = float(np.abs(values).max())
    bound = bound if bound > 0 else 1.0
    return 0.5 + 0.5 * values / bound, bound


def _hide_ticks(ax: Any) -> None:
    ax.set_xticks([])
    ax.set_yticks([])


def heatmap_pair_figure(
    rows: Sequence[tuple[np.ndarray, np.ndarray, HeatmapPair]],
    row_labels: Sequence[str] | None = None,
    alpha: float = 0.5,
) -> Figure:
    """One row per pair: the query image, its heatmap overlay, the gallery overlay and the gallery image.

    ``rows``: ``(query_rgb, gallery_rgb, pair)`` with uint8 (H, W, 3) images as the model saw them. Each row is
    titled with the method, layer, target and cosine similarity (:attr:`HeatmapPair.caption`), prefixed by its
    ``row_labels`` entry (e.g. "same identity"). Colours: jet, red = the strongest evidence in that image, dark
    blue = none (each map is scaled to its own maximum).
    """
    if not rows:
        raise ValueError("heatmap_pair_figure needs at least one (query_rgb, gallery_rgb, pair) row")
    if row_labels is not None and len(row_labels) != len(rows):
        raise ValueError(f"row_labels: {len(row_labels)} labels for {len(rows)} rows")
    fig = Figure(figsize=(5.6, 2.9 * len(rows) + 0.4), layout="constrained")
    subfigs = np.atleast_1d(fig.subfigures(len(rows), 1))
    for r, (sub, (q_rgb, g_rgb, pair)) in enumerate(zip(subfigs, rows)):
        panels = [(q_rgb, "query"), (heat_overlay(q_rgb, pair.query_map, alpha), "query heat"),
                  (heat_overlay(g_rgb, pair.gallery_map, alpha), "gallery heat"), (g_rgb, "gallery")]
        for ax, (img, title) in zip(sub.subplots(1, 4), panels):
            ax.imshow(img)
            ax.set_title(title, fontsize=8)
            _hide_ticks(ax)
        label = f"{row_labels[r]} · " if row_labels is not None else ""
        empty = f"\n(no positive evidence in the {' and '.join(pair.empty_sides)} map)" if pair.empty_sides else ""
        sub.suptitle(f"{label}cosine similarity {pair.similarity:.3f}\n{pair.how}{empty}", fontsize=8.5)
    fig.suptitle("heat: red = strongest evidence in that image, dark blue = none", fontsize=8, color="0.3")
    return fig


def decomposition_figure(query_rgb: np.ndarray, gallery_rgb: np.ndarray, decomposition: SimilarityDecomposition,
                         alpha: float = 0.6) -> Figure:
    """The per-cell contributions of a :class:`SimilarityDecomposition` over both images, red = the cell raises
    the similarity, blue = it lowers it (one symmetric scale for both images; cells drawn as blocks)."""
    values = np.concatenate([decomposition.query.ravel(), decomposition.gallery.ravel()])
    _, bound = _signed_unit(values)
    fig = Figure(figsize=(5.2, 3.4), layout="constrained")
    axes = fig.subplots(1, 2)
    for ax, rgb, contrib, who in ((axes[0], query_rgb, decomposition.query, "query"),
                                  (axes[1], gallery_rgb, decomposition.gallery, "gallery")):
        unit = 0.5 + 0.5 * contrib / bound
        ax.imshow(heat_overlay(rgb, unit, alpha=alpha, cmap="bwr", mode="nearest"))
        ax.set_title(f"{who}: cells sum to {float(contrib.sum()):.3f}", fontsize=8)
        _hide_ticks(ax)
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import Normalize

    bar = fig.colorbar(ScalarMappable(norm=Normalize(-bound, bound), cmap="bwr"), ax=list(axes), fraction=0.08)
    bar.set_label("contribution to cos (red raises it, blue lowers it)", fontsize=8)
    fig.suptitle(f"cosine similarity {decomposition.similarity:.3f} split over cells "
                 f"({decomposition.feature}, {decomposition.rule} rule)", fontsize=9)
    return fig
