"""Test-time feature extraction from a model and a test loader (``evaluation.md`` §2.9)."""
from __future__ import annotations

import contextlib
import os
from collections.abc import Iterable, Mapping
from typing import Any, NamedTuple

import numpy as np
import torch
from torch import nn

BATCH_KEYS = ("img", "pid", "camid", "path")


class Features(NamedTuple):
    """Features of one split, in loader order.

    ``features``: float32 CPU tensor (N, D); ``pids``/``camids``: int64 NumPy arrays (N,);
    ``paths``: the image files (N,).
    """

    features: torch.Tensor
    pids: np.ndarray
    camids: np.ndarray
    paths: list[str]


def _model_device(model: nn.Module, device: torch.device | str | None) -> torch.device:
    """The device of the model's parameters (and buffers); ``device`` must agree when both exist."""
    tensors = list(model.parameters()) + list(model.buffers())
    devices = {t.device for t in tensors}
    if len(devices) > 1:
        raise ValueError(f"model has parameters on several devices {sorted(map(str, devices))}; expected one")
    if device is None:
        return devices.pop() if devices else torch.device("cpu")
    wanted = torch.device(device)
    if devices:
        actual = devices.pop()
        same = actual.type == wanted.type and (wanted.index is None or actual.index == wanted.index)
        if not same:
            raise ValueError(
                f"device={str(wanted)!r} but the model's parameters are on {str(actual)!r}; move the model "
                f"(model.to({str(wanted)!r})) or leave device=None"
            )
        return actual
    return wanted


def _embed(model: nn.Module, images: torch.Tensor) -> torch.Tensor:
    """The model's (B, D) output as float32, or a clear error for any other output."""
    out = model(images)
    if not isinstance(out, torch.Tensor):
        raise TypeError(
            f"extract_features expects the model (in eval mode) to return one (B, D) feature tensor, got "
            f"{type(out).__name__}; wrap the model so that it returns the embedding (e.g. lambda x: model(x)[0])"
        )
    if out.ndim != 2 or out.shape[0] != images.shape[0]:
        raise TypeError(
            f"extract_features expects the model to return a (B, D) tensor for B={images.shape[0]} images, "
            f"got shape {tuple(out.shape)}"
        )
    return out.float()


def _progress_disabled_by_env() -> bool:
    """Whether ``TQDM_DISABLE`` asks for no progress bars (read now, not when tqdm was imported)."""
    return os.environ.get("TQDM_DISABLE", "").strip().lower() not in ("", "0", "false", "no")


def _check_batch(batch: Any) -> Mapping[str, Any]:
    if not isinstance(batch, Mapping) or any(key not in batch for key in BATCH_KEYS):
        got = sorted(batch) if isinstance(batch, Mapping) else type(batch).__name__
        raise TypeError(
            f"extract_features expects batches as dicts with keys {BATCH_KEYS} (the loaders of "
            f"reidkit.data.build_test_loaders), got {got}"
        )
    return batch


def extract_features(
    model: nn.Module,
    loader: Iterable[Mapping[str, Any]],
    flip: bool = False,
    normalize: bool = False,
    device: torch.device | str | None = None,
    progress: bool = True,
) -> Features:
    """Features of every image of ``loader``, in loader order.

    The model runs in eval mode (each submodule's previous train/eval mode is restored afterwards), under
    ``torch.inference_mode()``, in float32 (autocast disabled), on the device of its parameters. Batches
    are the dicts of :func:`reidkit.data.build_test_loaders` (``img``, ``pid``, ``camid``, ``path``);
    the model must map ``img`` (B, 3, H, W) to a (B, D) tensor.

    * ``flip=True``: test-time augmentation, f = (f(x) + f(mirror(x))) / 2 with the image mirrored
      horizontally, averaged **before** any normalisation (as FastReID and the seed do).
    * ``normalize=True``: f / ||f||_2 per image (then squared Euclidean distance = 2 - 2 cos).
    * ``progress``: a tqdm bar (``tqdm.auto``: a widget in Jupyter); the environment variable
      ``TQDM_DISABLE=1`` also hides it.

    Returns :class:`Features` with features on the CPU (``Features.features`` float32 (N, D)).
    """
    from tqdm.auto import tqdm

    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    target = _model_device(model, device)
    modes = [(module, module.training) for module in model.modules()]
    feats: list[torch.Tensor] = []
    pids: list[np.ndarray] = []
    camids: list[np.ndarray] = []
    paths: list[str] = []
    bar = {"desc": "features", "unit": "batch", "disable": not progress or _progress_disabled_by_env()}
    model.eval()
    try:
        no_autocast = (
            torch.autocast(device_type=target.type, enabled=False)
            if target.type in ("cpu", "cuda", "xpu", "mps")
            else contextlib.nullcontext()
        )
        with torch.inference_mode(), no_autocast:
            for batch in tqdm(loader, **bar):
                batch = _check_batch(batch)
                images = torch.as_tensor(batch["img"]).to(target, dtype=torch.float32, non_blocking=True)
                if flip and images.ndim != 4:
                    raise ValueError(f"flip=True needs (B, C, H, W) images, got shape {tuple(images.shape)}")
                f = _embed(model, images)
                if flip:
                    f = (f + _embed(model, torch.flip(images, dims=[3]))) / 2
                if normalize:
                    f = torch.nn.functional.normalize(f, dim=1)
                feats.append(f.cpu())
                pids.append(np.asarray(torch.as_tensor(batch["pid"]).cpu(), dtype=np.int64).reshape(-1))
                camids.append(np.asarray(torch.as_tensor(batch["camid"]).cpu(), dtype=np.int64).reshape(-1))
                paths.extend(str(p) for p in batch["path"])
    finally:
        for module, training in modes:
            module.training = training  # exactly the previous flags (model.train(x) would recurse)
    if not feats:
        raise ValueError("extract_features: the loader yielded no batch (expected at least one image)")
    return Features(torch.cat(feats), np.concatenate(pids), np.concatenate(camids), paths)
