"""ONNX export of a re-ID model's retrieval feature, and rebuilding a model from a training checkpoint.

The exported graph is the model in **eval mode**: one input ``images`` (B, 3, H, W) float32 with a dynamic batch
axis ``batch``, one output ``features`` (B, D), the retrieval feature (``eval_feature``, after the BNNeck by
default; not L2-normalised). Input normalisation is explicit, never guessed:

* ``normalize_inside=False``: the input is **already normalised** RGB, ``(x/255 − mean) / std``, as the
  training pipeline feeds the model;
* ``normalize_inside=True``: the input is **RGB float in [0, 1]** (``ToTensor`` scaling: pixel / 255, not
  0..255) and the graph computes ``(x − mean) / std`` with ``mean``/``std`` baked in as constants;
* ``normalize_inside=None`` (default): inside if the model was built with ``input_norm`` (it then normalises
  itself, with its own constants), outside otherwise.

The choice, mean, std, input size and feature size are written to the ONNX ``metadata_props`` (keys
``reidkit.*``, see :func:`onnx_metadata`), so a consumer can read how to feed the graph.

Checkpoint format read by :func:`model_from_checkpoint` (what the trainer writes)::

    {"model": model.state_dict(), "model_cfg": model.config, "num_classes": 751, ...}   # other keys ignored

A bare state dict (or ``{"state_dict": ...}``) is accepted too; then the model options come from the caller
(``reidkit export --config`` / ``--backbone`` ...) and the class count from ``num_classes`` or, failing that,
from the shape of ``head.weight``. Files are read with ``torch.load(weights_only=True)`` only.

Exporters: opset ≥ 18 uses torch's ``torch.export``-based exporter (needs ``onnx`` and ``onnxscript``); an
older opset (down to 14, e.g. 17 for TensorRT 8.x) uses torch's TorchScript exporter, which torch deprecates
(its DeprecationWarning and the tracer's warnings about shape checks traced as constants are silenced here: the
choice is deliberate, and :func:`check_onnx` tests the dynamic batch axis).
"""
from __future__ import annotations

import contextlib
import json
import logging
import os
import warnings
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from reidkit.models.reid_model import IMAGENET_MEAN, IMAGENET_STD, ReIDModel, build_model, resolve_model_config
from reidkit.models.weights import load_pretrained, read_checkpoint

__all__ = [
    "DEFAULT_OPSET",
    "ExportCheckError",
    "ExportError",
    "ExportedFeatures",
    "check_onnx",
    "checkpoint_metadata",
    "export_onnx",
    "model_from_checkpoint",
    "onnx_metadata",
]

logger = logging.getLogger(__name__)

DEFAULT_OPSET = 18
"""The opset torch's ``torch.export``-based exporter emits natively (it cannot reliably convert down to 17)."""
MIN_OPSET = 14
INPUT_NAME = "images"
OUTPUT_NAME = "features"


class ExportError(RuntimeError):
    """torch could not convert the model to ONNX (the message says which exporter and opset)."""


class ExportCheckError(ExportError):
    """The ONNX graph's output differs from the PyTorch model's (raised by :func:`check_onnx`)."""


def _require(module: str) -> Any:
    """Import an optional export dependency or say how to install it."""
    try:
        return __import__(module)
    except ImportError as err:
        raise ImportError(f"ONNX export needs the {module!r} package: pip install onnx onnxscript onnxruntime "
                          "(all three are in reidkit's dev extra)") from err


class ExportedFeatures(nn.Module):
    """What is traced: optional ``(x − mean) / std`` with constant buffers, then the model's eval forward."""

    mean: Tensor
    std: Tensor

    def __init__(self, model: nn.Module, mean: Sequence[float] | None = None,
                 std: Sequence[float] | None = None) -> None:
        super().__init__()
        self.model = model
        self.normalize = mean is not None
        if mean is not None and std is not None:
            self.register_buffer("mean", torch.tensor([float(v) for v in mean]).view(1, -1, 1, 1))
            self.register_buffer("std", torch.tensor([float(v) for v in std]).view(1, -1, 1, 1))

    def forward(self, images: Tensor) -> Tensor:
        if self.normalize:
            images = (images - self.mean) / self.std
        features = self.model(images)
        if not isinstance(features, Tensor):
            raise TypeError(f"the model's eval forward must return one (B, D) tensor, got {type(features).__name__}")
        return features


def _resolve_norm(model: nn.Module, normalize_inside: bool | None, mean: Sequence[float] | None,
                  std: Sequence[float] | None) -> tuple[bool, tuple[float, ...], tuple[float, ...], bool]:
    """(inside, mean, std, add_wrapper_norm). A model with its own ``input_norm`` always normalises inside."""
    own = model.input_norm if isinstance(model, ReIDModel) else None
    if own is not None:
        if normalize_inside is False:
            raise ValueError("the model normalises its input itself (input_norm="
                             f"{own}); it cannot be exported with normalize_inside=False. Rebuild it with "
                             "input_norm: null to take normalised input")
        for label, given, have in (("mean", mean, own[0]), ("std", std, own[1])):
            if given is not None and not torch.allclose(torch.tensor(given, dtype=torch.float32),
                                                        torch.tensor(have, dtype=torch.float32)):
                raise ValueError(f"{label}={tuple(given)} differs from the model's own input_norm {label} {have}")
        return True, own[0], own[1], False
    inside = bool(normalize_inside)
    mean = tuple(float(v) for v in (IMAGENET_MEAN if mean is None else mean))
    std = tuple(float(v) for v in (IMAGENET_STD if std is None else std))
    if len(mean) not in (1, 3) or len(std) not in (1, 3) or not all(s > 0 for s in std):
        raise ValueError(f"mean and std need 1 or 3 values each and std > 0, got mean={mean}, std={std}")
    return inside, mean, std, inside


def onnx_metadata(model: nn.Module, normalize_inside: bool, mean: Sequence[float], std: Sequence[float],
                  height: int, width: int, feature_dim: int) -> dict[str, str]:
    """The ``metadata_props`` written into the ONNX file (all values are strings; lists and dicts as JSON)."""
    from reidkit import __version__

    if normalize_inside:
        description = ("RGB float32 in [0, 1] (pixel / 255), NCHW; the graph normalises with "
                       f"(x - mean) / std, mean={list(mean)}, std={list(std)}")
    else:
        description = (f"normalised RGB float32, NCHW: (pixel / 255 - mean) / std with mean={list(mean)}, "
                       f"std={list(std)}, done by the caller (not in the graph)")
    meta = {
        "reidkit.version": __version__,
        "reidkit.input_normalization": "inside" if normalize_inside else "outside",
        "reidkit.input": description,
        "reidkit.input_range": "0..1" if normalize_inside else "normalized",
        "reidkit.mean": json.dumps(list(mean)),
        "reidkit.std": json.dumps(list(std)),
        "reidkit.height": str(height),
        "reidkit.width": str(width),
        "reidkit.output": f"features (batch, {feature_dim}) float32, not L2-normalised",
        "reidkit.feature_dim": str(feature_dim),
    }
    if isinstance(model, ReIDModel):
        meta["reidkit.eval_feature"] = model.eval_feature
        if model.config is not None:
            meta["reidkit.model_cfg"] = json.dumps(model.config, sort_keys=True, default=str)
    return meta


@contextlib.contextmanager
def _eval_mode(model: nn.Module) -> Iterator[None]:
    """Put ``model`` in eval mode and restore each submodule's own ``training`` flag afterwards."""
    modes = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        yield
    finally:
        for module, training in modes:
            module.training = training


def _torch_export(module: nn.Module, example: Tensor, path: Path, opset: int) -> None:
    _require("onnxscript")
    batch = torch.export.Dim("batch", min=1, max=65536)
    program = torch.onnx.export(module, (example,), dynamo=True, input_names=[INPUT_NAME],
                                output_names=[OUTPUT_NAME], dynamic_shapes=({0: batch},), opset_version=opset,
                                external_data=False, verbose=False)
    if program is None:  # pragma: no cover - torch returns the program for dynamo=True
        raise RuntimeError("torch.onnx.export returned no ONNX program")
    program.save(str(path), external_data=False)


def _torchscript_export(module: nn.Module, example: Tensor, path: Path, opset: int) -> None:
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=DeprecationWarning, module=r"torch\.onnx.*|reidkit\.export")
        warnings.filterwarnings("ignore", message=".*legacy TorchScript-based ONNX export.*",
                                category=DeprecationWarning)
        # shape checks (BNNeck, heads) are traced as constants; the batch axis stays dynamic (check_onnx tests it)
        warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
        torch.onnx.export(module, (example,), str(path), dynamo=False, input_names=[INPUT_NAME],
                          output_names=[OUTPUT_NAME], opset_version=opset, do_constant_folding=True,
                          dynamic_axes={INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}})


def export_onnx(model: nn.Module, path: str | os.PathLike, height: int = 256, width: int = 128,
                normalize_inside: bool | None = None, mean: Sequence[float] | None = None,
                std: Sequence[float] | None = None, opset: int = DEFAULT_OPSET) -> Path:
    """Write ``model``'s eval-mode retrieval feature as an ONNX graph ``images (batch, 3, H, W) → features
    (batch, D)`` and return the path.

    Args:
        model: a :class:`~reidkit.models.ReIDModel` (or any module whose eval forward returns (B, D)); its
            training flags are restored afterwards and its weights are not touched.
        path: the ``.onnx`` file; written atomically (a temporary file in the same folder, renamed when
            complete), parent folders created.
        height, width: the example input size; only the batch axis is dynamic.
        normalize_inside: ``True``: the graph takes RGB in [0, 1] and normalises with ``mean``/``std``;
            ``False``: the input is already normalised. ``None`` (default): inside if the model has its own
            ``input_norm`` (then ``False`` is an error), else outside.
        mean, std: the normalisation constants (default ImageNet's); with a model's own ``input_norm`` those
            are used and a different value is an error. Recorded in the metadata either way.
        opset: ONNX opset; ≥ 18 uses the ``torch.export``-based exporter, 14–17 the TorchScript one.

    The file is checked with ``onnx.checker`` before it replaces ``path``.

    Raises:
        ExportError: torch's exporter failed (its first message line, and a hint for older opsets).
        ValueError: a bad size or opset, or a normalisation that contradicts the model's own ``input_norm``.
        ImportError: ``onnx`` / ``onnxscript`` missing (says what to install).
    """
    onnx = _require("onnx")
    for label, value in (("height", height), ("width", width), ("opset", opset)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{label} must be a positive int, got {value!r}")
    if opset < MIN_OPSET:
        raise ValueError(f"opset must be >= {MIN_OPSET}, got {opset}")
    inside, mean, std, add_norm = _resolve_norm(model, normalize_inside, mean, std)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    device = next((p.device for p in model.parameters()), torch.device("cpu"))
    wrapper = ExportedFeatures(model, mean if add_norm else None, std if add_norm else None).to(device)
    example = torch.rand(2, 3, height, width, device=device)
    if not inside:
        example = (example - torch.tensor(mean, device=device).view(1, -1, 1, 1)) / torch.tensor(
            std, device=device).view(1, -1, 1, 1)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with _eval_mode(wrapper), torch.no_grad():
            feature_dim = int(wrapper(example).shape[1])
            try:
                if opset >= DEFAULT_OPSET:
                    _torch_export(wrapper, example, tmp, opset)
                else:
                    _torchscript_export(wrapper, example, tmp, opset)
            except torch.onnx.errors.OnnxExporterError as err:
                exporter = "torch.export-based" if opset >= DEFAULT_OPSET else "TorchScript"
                hint = "" if opset >= DEFAULT_OPSET else f"; opset {DEFAULT_OPSET} uses the torch.export-based exporter"
                raise ExportError(f"torch's {exporter} ONNX exporter (opset {opset}) failed on "
                                  f"{type(model).__name__}: {str(err).strip().splitlines()[0]}{hint}") from err
        proto = onnx.load(str(tmp))
        for meta_key, meta_value in onnx_metadata(model, inside, mean, std, height, width, feature_dim).items():
            entry = proto.metadata_props.add()
            entry.key, entry.value = meta_key, meta_value
        onnx.checker.check_model(proto)
        onnx.save(proto, str(tmp))
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    logger.info("exported %s (opset %d, normalisation %s)", path, opset, "inside" if inside else "outside")
    return path


def check_onnx(model: nn.Module, path: str | os.PathLike, batch_sizes: Sequence[int] = (1, 3),
               atol: float = 1e-4, rtol: float = 1e-4, seed: int = 0) -> float:
    """Run the ONNX file with onnxruntime (CPU) and ``model`` in eval mode on the same random inputs (one batch per
    size in ``batch_sizes``) and return the largest absolute difference. Raise :class:`ExportCheckError` on a wrong
    output shape or where ``|onnx − torch| > atol + rtol·|torch|`` (``torch.allclose``'s rule; the relative
    part matters only for large feature values).

    The inputs follow the file's metadata: RGB in [0, 1] when it normalises inside, normalised RGB otherwise;
    the PyTorch side gets the normalised tensor unless the model has its own ``input_norm``.
    """
    ort = _require("onnxruntime")
    onnx = _require("onnx")
    meta = {p.key: p.value for p in onnx.load(str(path), load_external_data=False).metadata_props}
    height, width = int(meta["reidkit.height"]), int(meta["reidkit.width"])
    inside = meta["reidkit.input_normalization"] == "inside"
    mean = torch.tensor(json.loads(meta["reidkit.mean"])).view(1, -1, 1, 1)
    std = torch.tensor(json.loads(meta["reidkit.std"])).view(1, -1, 1, 1)
    own_norm = isinstance(model, ReIDModel) and model.input_norm is not None
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    generator = torch.Generator().manual_seed(seed)
    device = next((p.device for p in model.parameters()), torch.device("cpu"))
    worst = 0.0
    with _eval_mode(model), torch.no_grad():
        for batch in batch_sizes:
            rgb = torch.rand(batch, 3, height, width, generator=generator)
            normalized = (rgb - mean) / std
            onnx_in = rgb if inside else normalized
            torch_in = rgb if own_norm else normalized
            expected = model(torch_in.to(device)).float().cpu()
            got = torch.from_numpy(session.run([OUTPUT_NAME], {INPUT_NAME: onnx_in.numpy()})[0])
            if got.shape != expected.shape:
                raise ExportCheckError(f"batch {batch}: ONNX output {tuple(got.shape)} vs PyTorch "
                                       f"{tuple(expected.shape)}")
            diff = (got - expected).abs()
            worst = max(worst, float(diff.max()))
            if bool((diff > atol + rtol * expected.abs()).any()):
                raise ExportCheckError(f"batch {batch}: ONNX and PyTorch features differ by up to "
                                       f"{float(diff.max()):.3g} (atol {atol:g}, rtol {rtol:g}) ({path})")
    return worst


# --------------------------------------------------------------------------------------------------------------
# checkpoints
# --------------------------------------------------------------------------------------------------------------
def checkpoint_metadata(path: str | os.PathLike) -> dict[str, Any]:
    """The entries of a checkpoint dict that hold no tensors (``model_cfg``, ``num_classes``, ``epoch`` ...), read
    with ``weights_only=True``; ``{}`` for a bare state dict."""
    payload = torch.load(Path(path).expanduser(), map_location="cpu", weights_only=True)
    if not isinstance(payload, Mapping):
        return {}
    return {k: v for k, v in payload.items() if isinstance(k, str) and not _has_tensor(v)}


def _has_tensor(value: object) -> bool:
    if isinstance(value, Tensor):
        return True
    if isinstance(value, Mapping):
        return any(_has_tensor(v) for v in value.values())
    if isinstance(value, (list, tuple)):
        return any(_has_tensor(v) for v in value)
    return False


def _infer_num_classes(state: Mapping[str, Tensor], cfg: Mapping[str, Any]) -> int:
    weight = state.get("head.weight")
    if weight is None or weight.dim() != 2:
        raise ValueError("the checkpoint has no 'head.weight' to read the class count from; pass num_classes "
                         "(reidkit export --num-classes N)")
    subcenters = int(cfg["num_subcenters"])
    if weight.shape[0] % subcenters:
        raise ValueError(f"head.weight has {weight.shape[0]} rows, not a multiple of num_subcenters={subcenters}")
    return weight.shape[0] // subcenters


def model_from_checkpoint(path: str | os.PathLike, model_cfg: Mapping[str, Any] | None = None,
                          num_classes: int | None = None) -> ReIDModel:
    """Rebuild the :class:`ReIDModel` stored in the checkpoint ``path`` and load its weights (strictly).

    The model config is the checkpoint's ``model_cfg`` updated by ``model_cfg`` (for a bare state dict, ``model_cfg``
    alone, defaults for the rest); ``pretrained`` is forced to ``False`` (the checkpoint holds every weight). The
    class count is the checkpoint's ``num_classes``, else ``num_classes``, else read from ``head.weight``; a
    disagreement is an error. Every key must match (:func:`~reidkit.models.weights.load_pretrained` with nothing
    ignored), so a wrong architecture fails with the offending keys named.
    """
    state = read_checkpoint(path)
    meta = checkpoint_metadata(path)
    stored_cfg = meta.get("model_cfg")
    if stored_cfg is not None and not isinstance(stored_cfg, Mapping):
        raise ValueError(f"{path}: 'model_cfg' must be a mapping, got {type(stored_cfg).__name__}")
    cfg = {**(stored_cfg or {}), **(model_cfg or {}), "pretrained": False}
    stored_classes = meta.get("num_classes")
    if stored_classes is not None and num_classes is not None and int(stored_classes) != int(num_classes):
        raise ValueError(f"num_classes={num_classes} disagrees with the checkpoint's num_classes={stored_classes}")
    classes = stored_classes if stored_classes is not None else num_classes
    if classes is None:
        classes = _infer_num_classes(state, resolve_model_config(cfg))
    model = build_model(cfg, int(classes))
    try:
        load_pretrained(model, state, ignore_unexpected=())
    except ValueError as err:
        c = model.config or {}
        raise ValueError(f"{path} does not fit the model built from its options (backbone {c.get('backbone')!r}, "
                         f"embedding_dim {c.get('embedding_dim')!r}, head {c.get('head')!r}, neck "
                         f"{c.get('neck')!r}; give the right ones with --config / --backbone / --set): {err}") from err
    return model.eval()
