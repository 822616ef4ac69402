"""Retrieval features from a trained model in one call (issue 5 §5): :class:`FeatureExtractor`.

::

    extractor = rk.FeatureExtractor("runs/synth_quick")             # a run folder, or ".../best.pt", or a config
    feats = extractor(["a.jpg", "b.jpg"])                           # (2, D) float32, as the run evaluated them
    dist = rk.pairwise_distance(feats, feats, extractor.metric)     # the run's own distance

What is loaded, from the first argument ``source``:

* a **training checkpoint** (``last.pt`` / ``best.pt`` written by :class:`~reidkit.engine.trainer.Trainer`): the
  config is the checkpoint's own ``config`` entry when it has one, else the ``config.yaml`` that
  :func:`~reidkit.engine.run.train_from_config` writes next to it;
* a **run folder**: the checkpoint named in its ``metrics.json`` (the weights the test numbers belong to), else
  ``best.pt``, else ``last.pt``, with the folder's ``config.yaml``;
* a **config** (a shipped recipe name such as ``"synth_quick"``, a ``.yaml`` path or a config mapping) plus optional
  ``weights`` (a checkpoint path or a state dict). Without weights the model keeps the config's own initialisation
  (``model.pretrained``), which is useful only to inspect the pipeline.

Every file is read with ``torch.load(weights_only=True)``. When a checkpoint holds an EMA of the weights
(``train.ema``), the **EMA weights** are used: they are what the trainer validates, selects and tests
(:meth:`Trainer.evaluate <reidkit.engine.trainer.Trainer.evaluate>`); :attr:`FeatureExtractor.uses_ema` says which.
The classifier's size is read from the weights (it does not affect the features). The model is rebuilt with
``pretrained`` off (the checkpoint holds every weight) and loaded strictly.

Preprocessing is exactly the config's **test transform** (``build_transforms(data.transforms, train=False)``:
resize to ``data.height × data.width``, ``ToTensor``, normalise), with the normalisation left to the model when it
has its own ``input_norm`` (as :func:`~reidkit.engine.run.build_run` does). The feature is the model's eval output;
with ``flip=True`` it is ``(f(x) + f(mirror(x))) / 2`` averaged before normalisation (as
:func:`~reidkit.evaluation.extract_features`). Each row is then L2-normalised when the config's evaluation does it:
``normalize=None`` (the default) follows ``resolve_normalize(eval.normalize, eval.metric)``
(:func:`~reidkit.engine.evaluator.resolve_normalize`, the rule :meth:`Trainer.evaluate
<reidkit.engine.trainer.Trainer.evaluate>` applies), so the features are the ones the run's test numbers were
computed from; ``normalize=True`` / ``False`` overrides it. Normalised rows give ``a @ b.T`` = cosine similarity and
``‖a − b‖² = 2 − 2 cos``; :attr:`FeatureExtractor.metric` is the config's ``eval.metric``.
"""
from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import nn

__all__ = ["FeatureExtractor", "ImageInput"]

ImageInput = str | os.PathLike | Image.Image | np.ndarray | torch.Tensor
"""One image or a batch: a file path, a PIL image, an H×W×3 (or N×H×W×3) uint8 array, or a (3, H, W) /
(N, 3, H, W) float tensor with values in [0, 1]."""

CONFIG_NAME = "config.yaml"
RUN_CHECKPOINTS = ("best.pt", "last.pt")
_PATH_SUFFIXES = (".pt", ".pth", ".tar", ".ckpt", ".yaml", ".yml")


# --------------------------------------------------------------------------------------------------------------
# what to load
# --------------------------------------------------------------------------------------------------------------
def _looks_like_path(source: str | os.PathLike[str]) -> bool:
    """A ``PathLike``, or a string with a folder separator or a checkpoint/YAML suffix (else: a recipe name)."""
    if not isinstance(source, str):
        return True
    return "/" in source or os.sep in source or source.endswith(_PATH_SUFFIXES)


def _run_checkpoint(folder: Path) -> Path:
    """The checkpoint of a run folder: ``metrics.json``'s ``checkpoint`` (by name, in this folder), else
    ``best.pt``, else ``last.pt``."""
    metrics = folder / "metrics.json"
    if metrics.is_file():
        named = json.loads(metrics.read_text(encoding="utf-8")).get("checkpoint")
        if isinstance(named, str) and (folder / Path(named).name).is_file():
            return folder / Path(named).name
    for name in RUN_CHECKPOINTS:
        if (folder / name).is_file():
            return folder / name
    raise FileNotFoundError(f"run folder {folder} has no checkpoint: expected {' or '.join(RUN_CHECKPOINTS)} in it")


def _read_payload(path: Path) -> dict[str, Any]:
    from reidkit.engine.checkpoint import load_checkpoint

    return load_checkpoint(path, map_location="cpu")  # weights_only=True; names a missing path


def _config_of_checkpoint(payload: Mapping[str, Any], path: Path) -> dict[str, Any]:
    """The checkpoint's own ``config`` entry if it has one, else ``config.yaml`` next to it (validated)."""
    from reidkit.config import load_config, validate_config

    inside = payload.get("config")
    if isinstance(inside, Mapping):
        return validate_config(inside)
    beside = path.parent / CONFIG_NAME
    if not beside.is_file():
        raise FileNotFoundError(
            f"{path} holds no config and there is no {beside}: the preprocessing (input size, normalisation) and "
            f"the model come from the run's config; pass the config instead, FeatureExtractor(config, weights={str(path)!r})")
    return load_config(beside)


def _state_dict(payload: Mapping[str, Any], source: str) -> tuple[dict[str, torch.Tensor], bool]:
    """``(state dict, uses_ema)`` of a checkpoint payload: the EMA weights when present, else ``model``, else
    ``state_dict``, else the payload itself when it is a bare state dict. A leading ``module.`` is stripped."""
    ema = payload.get("ema")
    if isinstance(ema, Mapping) and isinstance(ema.get("module"), Mapping):
        state, uses_ema = ema["module"], True
    elif isinstance(payload.get("model"), Mapping):
        state, uses_ema = payload["model"], False
    elif isinstance(payload.get("state_dict"), Mapping):
        state, uses_ema = payload["state_dict"], False
    else:
        state, uses_ema = payload, False
    bad = [str(k) for k, v in state.items() if not isinstance(k, str) or not isinstance(v, torch.Tensor)]
    if not state or bad:
        raise ValueError(f"{source} holds no state dict: expected a mapping of parameter names to tensors (bare, or "
                         f"under 'model', 'state_dict' or 'ema.module'), got keys {sorted(map(str, payload))[:8]}")
    return {k.removeprefix("module."): v for k, v in state.items()}, uses_ema


def _num_classes(arch: str, kwargs: Mapping[str, Any], state: Mapping[str, torch.Tensor], source: str) -> int:
    """Training identities of the classifier stored in ``state`` (``head.weight`` rows over sub-centres for a
    ``ReIDModel``, a ``heads.*.classifier.weight`` for LightMBN)."""
    if arch == "lightmbn":
        keys = sorted(k for k in state if k.startswith("heads.") and k.endswith(".classifier.weight"))
        if keys:
            return int(state[keys[0]].shape[0])
        raise ValueError(f"{source}: no 'heads.*.classifier.weight' to read LightMBN's class count from; "
                         "is it a LightMBN checkpoint?")
    from reidkit.models.reid_model import resolve_model_config

    weight = state.get("head.weight")
    subcenters = int(resolve_model_config(kwargs)["num_subcenters"])
    if weight is None or weight.ndim != 2 or weight.shape[0] % subcenters:
        raise ValueError(f"{source}: expected 'head.weight' of shape (classes × {subcenters} sub-centres, D) to read "
                         f"the class count from, got {None if weight is None else tuple(weight.shape)}")
    return int(weight.shape[0]) // subcenters


def _build(cfg: Mapping[str, Any], num_classes: int, pretrained_off: bool) -> nn.Module:
    """The config's model (``ReIDModel`` or ``LightMBN``) for ``num_classes`` identities."""
    from reidkit.config import model_arch_kwargs

    arch, kwargs = model_arch_kwargs(cfg)
    if pretrained_off:
        kwargs["pretrained"] = False
    if arch == "lightmbn":
        from reidkit.models.lightmbn import LightMBN

        return LightMBN(num_classes, **kwargs)
    from reidkit.models.reid_model import build_model

    return build_model(kwargs, num_classes)


def _resolve_source(source: str | os.PathLike[str] | Mapping[str, Any],
                    weights: str | os.PathLike[str] | Mapping[str, torch.Tensor] | None,
                    ) -> tuple[dict[str, Any], Mapping[str, Any] | None, Path | None]:
    """``(validated config, checkpoint payload or None, checkpoint file or None)`` of the extractor's arguments."""
    from reidkit.config import load_config, validate_config

    if isinstance(source, Mapping):
        cfg = validate_config(source)
    elif not isinstance(source, (str, os.PathLike)):
        raise TypeError(f"source: expected a checkpoint path, a run folder, a config name or path, or a config "
                        f"mapping, got {type(source).__name__}")
    else:
        path = Path(source).expanduser()
        if path.is_dir() or (path.is_file() and path.suffix not in (".yaml", ".yml")):
            if weights is not None:
                raise ValueError(f"weights= is for a config source only; {path} already names the weights")
            checkpoint = _run_checkpoint(path) if path.is_dir() else path
            payload = _read_payload(checkpoint)
            return _config_of_checkpoint(payload, checkpoint), payload, checkpoint
        if path.is_file():
            cfg = load_config(path)
        elif _looks_like_path(source):
            raise FileNotFoundError(f"no checkpoint, run folder or config file at {path}")
        else:
            cfg = load_config(str(source))  # a shipped recipe; an unknown name lists the available ones
    if weights is None:
        return cfg, None, None
    if isinstance(weights, Mapping):
        return cfg, weights, None
    checkpoint = Path(weights).expanduser()
    return cfg, _read_payload(checkpoint), checkpoint


def _load_model(cfg: Mapping[str, Any], payload: Mapping[str, Any] | None, source: str) -> tuple[nn.Module, bool]:
    """``(model with the payload's weights loaded strictly, uses_ema)``; without a payload the config's own
    initialisation (``model.pretrained``) and a one-class classifier."""
    from reidkit.config import model_arch_kwargs

    if payload is None:
        return _build(cfg, 1, pretrained_off=False), False
    arch, kwargs = model_arch_kwargs(cfg)
    state, uses_ema = _state_dict(payload, source)
    model = _build(cfg, _num_classes(arch, kwargs, state, source), pretrained_off=True)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as err:
        raise ValueError(f"{source} does not fit the model of the config (model.arch {arch!r}, "
                         f"backbone {kwargs.get('backbone', kwargs.get('variant'))!r}): {err}") from err
    return model, uses_ema


# --------------------------------------------------------------------------------------------------------------
# images
# --------------------------------------------------------------------------------------------------------------
def _describe(value: Any) -> str:
    if isinstance(value, (np.ndarray, torch.Tensor)):
        return f"{type(value).__name__} of shape {tuple(value.shape)} and dtype {value.dtype}"
    return type(value).__name__


def _check_unit_range(x: torch.Tensor, what: str) -> torch.Tensor:
    if not x.is_floating_point():
        raise TypeError(f"{what}: expected a float tensor with values in [0, 1], got {_describe(x)} "
                        "(for uint8 pixels use x.float() / 255)")
    x = x.detach().to("cpu", torch.float32)
    if x.numel() and not (bool(torch.isfinite(x).all()) and float(x.min()) >= 0.0 and float(x.max()) <= 1.0):
        raise ValueError(f"{what}: expected RGB values in [0, 1] (not normalised), got range "
                         f"[{float(x.min()):.4g}, {float(x.max()):.4g}]")
    return x


def _as_items(images: ImageInput | Sequence[ImageInput]) -> list[Any]:
    """One entry per image: a path, a PIL image, an H×W×3 array or a (3, H, W) tensor."""
    if isinstance(images, torch.Tensor):
        if images.ndim == 4:
            return list(images.unbind(0))
        return [images]
    if isinstance(images, np.ndarray):
        if images.ndim == 4:
            return list(images)
        return [images]
    if isinstance(images, (str, os.PathLike, Image.Image)):
        return [images]
    if isinstance(images, Sequence):
        items: list[Any] = []
        for image in images:
            if isinstance(image, (list, tuple)):
                raise TypeError("images: expected one image or a flat list of images, got a nested list")
            items.extend(_as_items(image))
        return items
    raise TypeError(f"images: expected a path, a PIL image, an H×W×3 uint8 array, a (3, H, W) / (N, 3, H, W) float "
                    f"tensor, or a list of those, got {_describe(images)}")


# --------------------------------------------------------------------------------------------------------------
# the extractor
# --------------------------------------------------------------------------------------------------------------
class FeatureExtractor:
    """Retrieval features of images, from a checkpoint, a run folder or a config (module docstring).

    Args:
        source: a training checkpoint path, a run folder, a shipped recipe name, a ``.yaml`` path or a config
            mapping.
        weights: with a config ``source`` only: a checkpoint path (its EMA weights if it has them) or a state dict.
        device: where the model runs; default CUDA when available, else CPU.
        flip: average the features of each image and its mirror image (test-time augmentation).
        batch_size: images per forward pass; default the config's ``data.test_batch_size``.
        normalize: L2-normalise each feature row; ``None`` (default): as the config's evaluation,
            ``resolve_normalize(eval.normalize, eval.metric)`` (:func:`~reidkit.engine.evaluator.resolve_normalize`).

    Call it with one image or a list (:data:`ImageInput`); it returns an ``(N, D)`` float32 CPU tensor, in input
    order, whose rows have L2 norm 1 when :attr:`normalize` is true.

    Attributes:
        model: the model, in eval mode, on ``device``.
        config: the validated config the model and preprocessing come from.
        transform: the config's test transform (PIL image → normalised ``(3, H, W)`` tensor).
        checkpoint: the file the weights came from (``None`` for a state dict or no weights).
        uses_ema: whether the weights are the checkpoint's EMA weights.
        normalize: whether the rows are L2-normalised (resolved from the argument and the config).
        metric: the config's ``eval.metric`` (``"cosine"`` or ``"euclidean"``), the distance the run evaluated with.

    Raises:
        FileNotFoundError: the checkpoint, run folder, config or an image file does not exist (names the path).
        ValueError / TypeError: a checkpoint that does not fit the config, or an image of the wrong kind, shape,
            dtype or range (names what was expected).
    """

    def __init__(self, source: str | os.PathLike[str] | Mapping[str, Any],
                 weights: str | os.PathLike[str] | Mapping[str, torch.Tensor] | None = None,
                 device: torch.device | str | None = None, flip: bool = False,
                 batch_size: int | None = None, normalize: bool | None = None) -> None:
        from reidkit.engine.evaluator import resolve_normalize
        from reidkit.runtime import default_device

        if batch_size is not None and (isinstance(batch_size, bool) or not isinstance(batch_size, int)
                                       or batch_size < 1):
            raise ValueError(f"batch_size must be a positive int or None, got {batch_size!r}")
        if normalize is not None and not isinstance(normalize, bool):
            raise TypeError(f"normalize must be True, False or None (follow the config's eval.normalize), "
                            f"got {normalize!r}")
        cfg, payload, self.checkpoint = _resolve_source(source, weights)
        self.model, self.uses_ema = _load_model(cfg, payload, str(self.checkpoint or "<state dict>"))
        self.config = cfg
        self.device = torch.device(device) if device is not None else default_device()
        self.model = self.model.to(self.device).eval()
        self.flip = bool(flip)
        self.batch_size = int(batch_size) if batch_size is not None else int(cfg["data"]["test_batch_size"])
        self.transform = self._test_transform(cfg, self.model)
        self.height, self.width = int(cfg["data"]["height"]), int(cfg["data"]["width"])
        self.metric = str(cfg["eval"]["metric"])
        self.normalize = resolve_normalize(cfg["eval"]["normalize"] if normalize is None else normalize, self.metric)

    @staticmethod
    def _test_transform(cfg: Mapping[str, Any], model: nn.Module) -> Any:
        """The run's test pipeline: ``build_transforms(data.transforms, train=False)``, with mean 0 / std 1 when
        the model normalises its [0, 1] input itself (exactly as :func:`~reidkit.engine.run.build_run`)."""
        from reidkit.data.transforms import build_transforms
        from reidkit.engine.run import transform_options

        return build_transforms(transform_options(cfg["data"]["transforms"], model), train=False)

    # ------------------------------------------------------------------------------------------ input

    def _prepare_one(self, item: Any, index: int) -> torch.Tensor:
        """One image → the normalised ``(3, H, W)`` tensor the model sees."""
        from reidkit.data.datasets_torch import read_image
        from reidkit.data.transforms import ToTensor

        what = f"image {index}"
        if isinstance(item, (str, os.PathLike)):
            path = Path(item).expanduser()
            if not path.is_file():
                raise FileNotFoundError(f"{what}: image file not found: {path}")
            return self.transform(read_image(str(path)))
        if isinstance(item, Image.Image):
            return self.transform(item if item.mode == "RGB" else item.convert("RGB"))
        if isinstance(item, np.ndarray):
            if item.dtype != np.uint8 or item.ndim != 3 or item.shape[2] != 3:
                raise TypeError(f"{what}: expected an H×W×3 uint8 RGB array, got {_describe(item)} "
                                "(for float pixels in [0, 1] pass torch.from_numpy(a).permute(2, 0, 1))")
            return self.transform(Image.fromarray(np.ascontiguousarray(item), mode="RGB"))
        if isinstance(item, torch.Tensor):
            if item.ndim != 3 or item.shape[0] != 3:
                raise TypeError(f"{what}: expected a (3, H, W) or (N, 3, H, W) RGB tensor with values in [0, 1], "
                                f"got {_describe(item)}")
            x = _check_unit_range(item, what)
            for step in self.transform:  # the same pipeline, the tensor already past ToTensor
                if not isinstance(step, ToTensor):
                    x = step(x)
            return x
        raise TypeError(f"{what}: expected a path, a PIL image, an H×W×3 uint8 array or a (3, H, W) float tensor, "
                        f"got {_describe(item)}")

    def preprocess(self, images: ImageInput | Sequence[ImageInput]) -> torch.Tensor:
        """The ``(N, 3, H, W)`` float32 CPU batch the model sees (the config's test transform of each image).

        Paths, PIL images and arrays go through the PIL pipeline (resize, ``ToTensor``, normalise); tensors skip
        ``ToTensor`` and are resized with the tensor path of the same ``Resize`` (antialiased; identical to the PIL
        path when the tensor already has the model's size, within interpolation rounding otherwise).
        """
        items = _as_items(images)
        if not items:
            raise ValueError("images: expected at least one image, got an empty list")
        return torch.stack([self._prepare_one(item, i) for i, item in enumerate(items)])

    # ------------------------------------------------------------------------------------------ features

    def _embed(self, batch: torch.Tensor) -> torch.Tensor:
        out = self.model(batch)
        if not isinstance(out, torch.Tensor) or out.ndim != 2 or out.shape[0] != batch.shape[0]:
            got = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
            raise TypeError(f"the model's eval output must be a ({batch.shape[0]}, D) tensor, got {got}")
        return out.float()

    def __call__(self, images: ImageInput | Sequence[ImageInput]) -> torch.Tensor:
        """``(N, D)`` float32 CPU features of ``images`` (one image or a list), rows of L2 norm 1 if
        :attr:`normalize`."""
        pixels = self.preprocess(images)
        no_autocast = (torch.autocast(device_type=self.device.type, enabled=False)
                       if self.device.type in ("cpu", "cuda") else contextlib.nullcontext())
        features = []
        with torch.no_grad(), no_autocast:
            for start in range(0, pixels.shape[0], self.batch_size):
                batch = pixels[start:start + self.batch_size].to(self.device, non_blocking=True)
                f = self._embed(batch)
                if self.flip:
                    f = (f + self._embed(torch.flip(batch, dims=[3]))) / 2
                features.append((nn.functional.normalize(f, dim=1) if self.normalize else f).cpu())
        return torch.cat(features)

    def __repr__(self) -> str:
        weights = "EMA of " if self.uses_ema else ""
        origin = f"{weights}{self.checkpoint}" if self.checkpoint is not None else "no checkpoint"
        return (f"FeatureExtractor({type(self.model).__name__} from {origin}, input {self.height}×{self.width}, "
                f"flip={self.flip}, normalize={self.normalize}, batch_size={self.batch_size}, device={self.device})")
