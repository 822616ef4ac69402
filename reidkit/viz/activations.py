"""Gradient-free activation maps: where a backbone's feature map is strong, drawn over the image.

Activation-based spatial attention (Zagoruyko & Komodakis, "Paying More Attention to Attention: Improving the
Performance of Convolutional Neural Networks via Attention Transfer", ICLR 2017, arXiv 1612.03928): for a
feature map A ∈ ℝ^{C×H×W} the map

    F(A)_{h,w} = Σ_c |A_{c,h,w}|^p          (p = 2 here, as in torchreid's ``tools/visualize_actmap.py``)

measures how strongly position (h, w) is activated over all channels; it needs no class, no target and no
gradient, so it works for an embedding model and even for an untrained one. Each image's map is min-max scaled
to [0, 1]; the scaling removes the absolute magnitude (maps of different images or layers show *where*, not
*how much*).

With random weights the map is not "what the model attends to": it mostly follows local contrast (edges, the
silhouette against the background) at the resolution and receptive field of the chosen stage, which is what the
notebooks use it for (output stride, last stride, receptive fields).

Functions: :func:`activation_map` (B, C, H, W) → (B, H, W); :func:`upsample_to` a map to image size;
:func:`overlay` a map on a uint8 image; :func:`mean_activation_maps` a backbone's maps for a batch of images.
"""
from __future__ import annotations

from typing import Literal

import matplotlib
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["activation_map", "mean_activation_maps", "overlay", "upsample_to"]


def activation_map(fmap: torch.Tensor, power: float = 2.0, eps: float = 1e-12) -> torch.Tensor:
    """Channel-wise sum of ``|fmap|^power``, min-max normalised per image to [0, 1].

    ``M_{b,h,w} = Σ_c |A_{b,c,h,w}|^p``, then ``(M − min_b M) / (max_b M − min_b M)`` per image b. The result does
    not depend on the scale of ``fmap`` (each image is divided by its largest |activation| first, and the sum is
    taken in float64, so the tiny activations deep in a randomly initialised network neither underflow nor vanish).
    An image whose map is constant (e.g. an all-zero feature map) gets an all-zero map, not a division by zero.

    Args:
        fmap: feature map (B, C, H, W).
        power: the exponent p (> 0; 2 in the paper and in torchreid).
        eps: a map whose range is at most ``eps`` times its maximum counts as constant.

    Returns:
        (B, H, W) tensor in [0, 1] (exactly 0 and 1 at each image's minimum and maximum), float32 (float64 for
        float64 input).
    """
    if not isinstance(fmap, torch.Tensor) or fmap.dim() != 4:
        shape = tuple(fmap.shape) if isinstance(fmap, torch.Tensor) else type(fmap).__name__
        raise ValueError(f"activation_map expects a (B, C, H, W) feature map, got {shape}")
    if not power > 0:
        raise ValueError(f"activation_map: power must be > 0, got {power!r}")
    out_dtype = torch.float64 if fmap.dtype == torch.float64 else torch.float32
    x = fmap.detach().to(torch.float64).abs()
    peak = x.flatten(1).amax(dim=1).view(-1, 1, 1, 1)
    x = x / torch.where(peak > 0, peak, torch.ones_like(peak))
    amap = x.pow(power).sum(dim=1)  # (B, H, W)
    flat = amap.flatten(1)
    high = flat.amax(dim=1).view(-1, 1, 1)
    low = flat.amin(dim=1).view(-1, 1, 1)
    span = high - low
    constant = span <= eps * high
    scaled = (amap - low) / torch.where(constant, torch.ones_like(span), span)
    return torch.where(constant, torch.zeros_like(amap), scaled).clamp(0.0, 1.0).to(out_dtype)


def upsample_to(
    amap: torch.Tensor, height: int, width: int, mode: Literal["bilinear", "nearest"] = "bilinear"
) -> torch.Tensor:
    """Resize a map (H, W) or a batch of maps (B, H, W) to ``height × width``.

    ``bilinear`` (``align_corners=False``) gives the smooth picture usually overlaid on an image; each output is a
    convex combination of inputs, so a map in [0, 1] stays in [0, 1]. ``nearest`` keeps the cells visible, which
    shows the true resolution of a stage (16×8 vs 8×4). Returns float32 (float64 for float64 input) with the
    input's number of dimensions.
    """
    if not isinstance(amap, torch.Tensor) or amap.dim() not in (2, 3):
        shape = tuple(amap.shape) if isinstance(amap, torch.Tensor) else type(amap).__name__
        raise ValueError(f"upsample_to expects a map (H, W) or maps (B, H, W), got {shape}")
    for label, value in (("height", height), ("width", width)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"upsample_to: {label} must be a positive int, got {value!r}")
    if mode not in ("bilinear", "nearest"):
        raise ValueError(f"upsample_to: mode must be 'bilinear' or 'nearest', got {mode!r}")
    dtype = torch.float64 if amap.dtype == torch.float64 else torch.float32
    x = amap.detach().to(dtype)
    batch = x if x.dim() == 3 else x.unsqueeze(0)
    kwargs = {"align_corners": False} if mode == "bilinear" else {}
    out = F.interpolate(batch.unsqueeze(1), size=(height, width), mode=mode, **kwargs).squeeze(1)
    return out if amap.dim() == 3 else out.squeeze(0)


def overlay(
    image_uint8: np.ndarray, heat: np.ndarray | torch.Tensor, alpha: float = 0.5, cmap: str = "jet"
) -> np.ndarray:
    """Blend a heat map over an image: ``round((1 − α)·image + α·255·cmap(heat))`` as uint8 (H, W, 3).

    Args:
        image_uint8: (H, W, 3) uint8 RGB image.
        heat: (H, W) values in [0, 1] (clipped), the image's size: resize first with :func:`upsample_to`.
        alpha: weight of the colour map, in [0, 1] (torchreid uses 0.7 for the map, 0.3 for the image).
        cmap: a matplotlib colour-map name (``jet``: blue = low, red = high).
    """
    image = np.asarray(image_uint8)
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"overlay expects an (H, W, 3) uint8 image, got {image.dtype} {image.shape}")
    if isinstance(heat, torch.Tensor):
        heat = heat.detach().cpu().double().numpy()
    heat = np.asarray(heat, dtype=np.float64)
    if heat.shape != image.shape[:2]:
        raise ValueError(f"overlay: heat map {heat.shape} must match the image's (H, W) = {image.shape[:2]}; "
                         "resize it with upsample_to(heat, H, W)")
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"overlay: alpha must be in [0, 1], got {alpha!r}")
    try:
        colormap = matplotlib.colormaps[cmap]
    except KeyError as err:
        raise ValueError(f"overlay: unknown matplotlib colour map {cmap!r}") from err
    colour = colormap(np.clip(heat, 0.0, 1.0))[..., :3] * 255.0
    blended = (1.0 - alpha) * image.astype(np.float64) + alpha * colour
    return np.clip(np.rint(blended), 0, 255).astype(np.uint8)


def mean_activation_maps(
    backbone: nn.Module, images: torch.Tensor, stage: str | None = None, power: float = 2.0
) -> torch.Tensor:
    """Activation maps (:func:`activation_map`) of one stage of a reidkit backbone for a batch of images.

    The channel-wise mean and the channel-wise sum of squared activations give the same map once min-max
    normalised, hence the name; torchreid's ``visualize_actmap`` draws the same picture.

    The backbone runs in eval mode under :func:`torch.inference_mode` (its training flags are restored after),
    so BatchNorm uses its running statistics and the result does not depend on the other images in the batch.

    Args:
        backbone: a reidkit backbone (``featuremaps(x)`` and ``stage_names``).
        images: (B, 3, H, W) normalised image batch, e.g. from ``rk.build_transforms(None, train=False)``.
        stage: a name from ``backbone.stage_names``; default the last stage (the map the model pools).
        power: the exponent p of :func:`activation_map`.

    Returns:
        (B, h, w) maps in [0, 1] at the stage's resolution; :func:`upsample_to` brings them to (H, W).
    """
    stage_names = tuple(getattr(backbone, "stage_names", ()))
    if not callable(getattr(backbone, "featuremaps", None)) or not stage_names:
        raise TypeError(f"mean_activation_maps needs a reidkit backbone (featuremaps, stage_names); got "
                        f"{type(backbone).__name__}")
    if not isinstance(images, torch.Tensor) or images.dim() != 4:
        shape = tuple(images.shape) if isinstance(images, torch.Tensor) else type(images).__name__
        raise ValueError(f"mean_activation_maps expects an image batch (B, 3, H, W), got {shape}")
    stage = stage_names[-1] if stage is None else stage
    if stage not in stage_names:
        raise ValueError(f"unknown stage {stage!r}; this backbone's stages are {list(stage_names)}")
    flags = [(m, m.training) for m in backbone.modules()]
    backbone.eval()
    try:
        with torch.inference_mode():
            fmap = _run_to(backbone, images, stage)
    finally:
        for m, flag in flags:
            m.training = flag
    return activation_map(fmap, power=power)


def _run_to(backbone: nn.Module, images: torch.Tensor, stage: str) -> torch.Tensor:
    """The output of ``stage``, stopping there when the backbone runs stage by stage (reidkit's ``Backbone``)."""
    forward_stage = getattr(backbone, "forward_stage", None)
    if callable(forward_stage):
        x = images
        for name in backbone.stage_names:
            x = forward_stage(name, x)
            if name == stage:
                return x
    return backbone.featuremaps(images)[stage]
