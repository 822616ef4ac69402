r"""The re-ID model: backbone → global pooling → neck → classifier head, and :func:`build_model` from a config.

Luo, Gu, Liao, Lai, Jiang, "Bag of Tricks and A Strong Baseline for Deep Person Re-identification", CVPRW 2019
(arXiv 1903.07071) — "BoT"; the BNNeck in "A Strong Baseline and Batch Normalization Neck for Deep Person
Re-identification", TMM 2019 (arXiv 1906.08332). Data flow for an image batch ``x`` (B, 3, H, W)::

    x ─[(x − μ)/σ if input_norm]→ backbone → map (B, C, h, w) ─pooling→ f_t (B, C)
      ─neck→ (f_t, f_i) = (E(f), BN(E(f)))   [E: optional C → D embedding; no neck: f_i = f_t]
      ─head(f_i, targets)→ logits (B, K)

* **training** (``model.train()``): returns :class:`ReIDOutput` ``(logits, features)``; ``features`` is the
  metric-loss feature, ``f_t`` ("before" the BN, BoT/AGW) or ``f_i`` ("after", SBS) per ``feature_pos``. The head
  applies its margin only when ``targets`` are given.
* **eval** (``model.eval()``): returns the retrieval feature (B, D) alone, ``f_i`` by default (``eval_feature``);
  the head is not run.

Typical use::

    model = build_model({"backbone": "resnet50", "pooling": "gem", "head": "circle"}, num_classes=751)
    out = model(images, targets)                # training: out.logits, out.features
    optimizer = torch.optim.Adam(model.param_groups(lr=3.5e-4, weight_decay=5e-4))
    feats = model.eval()(images)                # (B, 2048)
"""
from __future__ import annotations

import difflib
import numbers
import os
from collections.abc import Mapping, Sequence
from typing import Any, Literal, NamedTuple

import torch
from torch import Tensor, nn

from reidkit.models.backbones import BACKBONES, build_backbone
from reidkit.models.heads import HEADS, build_head
from reidkit.models.neck import BNNeck
from reidkit.models.pooling import POOLING, build_pooling

__all__ = [
    "FEATURE_POSITIONS",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "MODEL_DEFAULTS",
    "NECKS",
    "ReIDModel",
    "ReIDOutput",
    "build_model",
    "resolve_model_config",
]

IMAGENET_MEAN: tuple[float, float, float] = (0.485, 0.456, 0.406)
IMAGENET_STD: tuple[float, float, float] = (0.229, 0.224, 0.225)
FEATURE_POSITIONS = ("before", "after")
NECKS = ("bnneck", "none")

FeaturePos = Literal["before", "after"]


class ReIDOutput(NamedTuple):
    """What a :class:`ReIDModel` returns in training.

    ``logits``: (B, K) classifier logits (margin-transformed when targets were given), for the ID loss.
    ``features``: (B, D) metric-loss feature (triplet, centre, circle...), before or after the neck.
    """

    logits: Tensor
    features: Tensor


def _check_choice(value: object, choices: Sequence[str], what: str) -> str:
    if value not in choices:
        raise ValueError(f"{what} must be one of {', '.join(map(repr, choices))}, got {value!r}")
    return str(value)


def _as_norm(input_norm: tuple[Sequence[float], Sequence[float]]) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """(mean, std) as two tuples of 1 or 3 floats (one per RGB channel), std > 0."""
    if not isinstance(input_norm, Sequence) or isinstance(input_norm, str) or len(input_norm) != 2:
        raise ValueError(f"input_norm must be a pair (mean, std), got {input_norm!r}")
    out = []
    for label, given in zip(("mean", "std"), input_norm, strict=True):
        values = (given,) if isinstance(given, numbers.Real) and not isinstance(given, bool) else given
        if (not isinstance(values, Sequence) or isinstance(values, str) or len(values) not in (1, 3)
                or not all(isinstance(v, numbers.Real) and not isinstance(v, bool) for v in values)):
            raise ValueError(f"input_norm {label} must be 1 or 3 numbers (one per RGB channel), got {values!r}")
        out.append(tuple(float(v) for v in values))
    if not all(v > 0 for v in out[1]):
        raise ValueError(f"input_norm std must be > 0, got {input_norm[1]!r}")
    return out[0], out[1]


class ReIDModel(nn.Module):
    r"""Backbone → pooling → neck → head, the BoT layout (Luo et al., CVPRW 2019, arXiv 1903.07071); see the
    module docstring for the data flow.

    Args:
        backbone: maps (B, 3, H, W) to a feature map (B, C, h, w); must have ``out_channels`` (C) and, for
            :meth:`featuremaps`, a ``featuremaps(x)`` method (every reidkit backbone has both).
        pooling: maps (B, C, h, w) to (B, C) (:func:`reidkit.models.pooling.build_pooling`).
        neck: maps (B, C) to ``(before, after)`` pairs of (B, D) (:class:`~reidkit.models.neck.BNNeck`), or
            ``None``: no neck, ``before = after = `` the pooled feature.
        head: ``head(features, targets=None) -> logits`` on the "after" feature
            (:func:`reidkit.models.heads.build_head`).
        feature_pos: the training metric feature: ``"before"`` the neck's BN (``f_t``; BoT, AGW, the default) or
            ``"after"`` it (``f_i``; FastReID SBS ``NECK_FEAT: after``).
        eval_feature: the retrieval feature returned in eval mode: ``"after"`` (``f_i``, default) or ``"before"``.
        input_norm: ``None`` (default): the model takes tensors already normalised by the data pipeline.
            ``(mean, std)`` (1 or 3 numbers each, e.g. :data:`IMAGENET_MEAN`, :data:`IMAGENET_STD`): the model
            takes RGB in [0, 1] and computes ``(x − mean) / std`` itself, out of place (the caller's tensor is
            never modified). The two constants are non-persistent buffers: they follow ``.to(device)`` but are not
            in the state dict (the config records them).

    Attributes:
        feature_dim: D, the size of the retrieval feature.
        num_classes: K, read from the head (``None`` if it has no ``num_classes``).
        config: the validated model config when built by :func:`build_model`, else ``None``; a checkpoint stores
            it as ``model_cfg`` so the model can be rebuilt (e.g. by ``reidkit export``).
    """

    input_mean: Tensor | None
    input_std: Tensor | None

    def __init__(self, backbone: nn.Module, pooling: nn.Module, neck: nn.Module | None, head: nn.Module,
                 feature_pos: FeaturePos = "before", eval_feature: FeaturePos = "after",
                 input_norm: tuple[Sequence[float], Sequence[float]] | None = None) -> None:
        super().__init__()
        self.feature_pos = _check_choice(feature_pos, FEATURE_POSITIONS, "feature_pos")
        self.eval_feature = _check_choice(eval_feature, FEATURE_POSITIONS, "eval_feature")
        self.backbone = backbone
        self.pooling = pooling
        self.neck = neck
        self.head = head
        channels = getattr(backbone, "out_channels", None)
        self.feature_dim: int | None = getattr(neck, "out_channels", channels) if neck is not None else channels
        self.num_classes: int | None = getattr(head, "num_classes", None)
        self.config: dict[str, Any] | None = None
        self._input_norm = None if input_norm is None else _as_norm(input_norm)
        for name, values in zip(("input_mean", "input_std"), self._input_norm or (None, None), strict=True):
            tensor = None if values is None else torch.tensor(values, dtype=torch.float32).view(1, -1, 1, 1)
            self.register_buffer(name, tensor, persistent=False)

    @property
    def input_norm(self) -> tuple[tuple[float, ...], tuple[float, ...]] | None:
        """``(mean, std)`` as given when the model normalises its input itself, else ``None``."""
        return self._input_norm

    def extra_repr(self) -> str:
        text = f"feature_pos={self.feature_pos!r}, eval_feature={self.eval_feature!r}"
        return text + (f", input_norm={self.input_norm}" if self.input_norm is not None else "")

    def normalize_input(self, images: Tensor) -> Tensor:
        """``(images − mean) / std`` out of place with ``input_norm``; the images themselves otherwise."""
        if self.input_mean is None or self.input_std is None:
            return images
        if not images.is_floating_point():
            raise TypeError(f"with input_norm the model takes float RGB images in [0, 1], got dtype {images.dtype}")
        return (images - self.input_mean.to(images.dtype)) / self.input_std.to(images.dtype)

    def featuremaps(self, images: Tensor) -> Any:
        """The backbone's ``featuremaps`` of the (normalised) images: every stage's map by name, for CAMs."""
        featuremaps = getattr(self.backbone, "featuremaps", None)
        if featuremaps is None:
            raise AttributeError(f"the backbone {type(self.backbone).__name__} has no featuremaps(x) method")
        return featuremaps(self.normalize_input(images))

    def pooled_features(self, images: Tensor) -> tuple[Tensor, Tensor]:
        """``(before, after)`` neck features, both (B, D), without the head (mode-dependent BN statistics)."""
        pooled = self.pooling(self.backbone(self.normalize_input(images)))
        if self.neck is None:
            return pooled, pooled
        return self.neck(pooled)

    def forward(self, images: Tensor, targets: Tensor | None = None) -> ReIDOutput | Tensor:
        """Training: :class:`ReIDOutput` ``(logits, features)`` (margins applied only with ``targets``).
        Eval: the (B, D) retrieval feature (``targets`` are ignored)."""
        before, after = self.pooled_features(images)
        if not self.training:
            return after if self.eval_feature == "after" else before
        logits = self.head(after, targets)
        return ReIDOutput(logits, before if self.feature_pos == "before" else after)

    def param_groups(self, lr: float, weight_decay: float, bias_lr_factor: float = 1.0,
                     bias_weight_decay: float | None = None,
                     norm_weight_decay: float | None = None) -> list[dict[str, Any]]:
        """Optimiser parameter groups (components reference §7; FastReID's ``get_default_optimizer_params``).

        At most four groups, each a dict with ``params``, ``lr``, ``weight_decay`` and a ``name``:

        * ``"decay"``: every other trainable parameter (conv/linear weights, head weight): ``lr``, ``weight_decay``;
        * ``"norm"``: weights of normalisation layers (BatchNorm, InstanceNorm, GroupNorm, LayerNorm, and modules
          whose class name contains "Norm"):
          ``lr``, ``norm_weight_decay`` (``None``: ``weight_decay``; FastReID's ``WEIGHT_DECAY_NORM``);
        * ``"bias"``: every parameter named ``bias`` (norm biases included, as in FastReID):
          ``lr · bias_lr_factor``, ``bias_weight_decay`` (``None``: ``weight_decay``);
        * ``"no_decay"``: parameters a module lists in its ``no_weight_decay()`` (GeM's learnable ``p``):
          ``lr``, weight decay 0.

        Frozen parameters (``requires_grad=False``, e.g. the BNNeck's bias fixed at 0) are left out; empty groups
        are dropped. The defaults (every factor 1, every decay = ``weight_decay``) give the recipes' single
        setting for all parameters except GeM's ``p``.
        """
        if not lr > 0:
            raise ValueError(f"lr must be > 0, got {lr!r}")
        for label, value in (("weight_decay", weight_decay), ("bias_weight_decay", bias_weight_decay),
                             ("norm_weight_decay", norm_weight_decay)):
            if value is not None and not value >= 0:
                raise ValueError(f"{label} must be >= 0, got {value!r}")
        if not bias_lr_factor > 0:
            raise ValueError(f"bias_lr_factor must be > 0, got {bias_lr_factor!r}")
        settings = {
            "decay": (lr, weight_decay),
            "norm": (lr, weight_decay if norm_weight_decay is None else norm_weight_decay),
            "bias": (lr * bias_lr_factor, weight_decay if bias_weight_decay is None else bias_weight_decay),
            "no_decay": (lr, 0.0),
        }
        members: dict[str, list[nn.Parameter]] = {name: [] for name in settings}
        no_decay = self.no_weight_decay()
        seen: set[int] = set()
        for module_name, module in self.named_modules():
            for param_name, param in module.named_parameters(recurse=False):
                if not param.requires_grad or id(param) in seen:
                    continue
                seen.add(id(param))
                full = f"{module_name}.{param_name}" if module_name else param_name
                if full in no_decay:
                    group = "no_decay"
                elif param_name == "bias":
                    group = "bias"
                elif _is_norm(module):
                    group = "norm"
                else:
                    group = "decay"
                members[group].append(param)
        return [{"params": params, "lr": settings[name][0], "weight_decay": settings[name][1], "name": name}
                for name, params in members.items() if params]

    def no_weight_decay(self) -> set[str]:
        """Full names of the parameters to keep out of weight decay: those any submodule lists in its own
        ``no_weight_decay()`` (timm's convention, names relative to that module; GeM lists ``p``)."""
        names: set[str] = set()
        for module_name, module in self.named_modules():
            listed = getattr(module, "no_weight_decay", None)
            if module is self or not callable(listed):
                continue
            names.update(f"{module_name}.{name}" if module_name else name for name in listed())
        return names


def _is_norm(module: nn.Module) -> bool:
    """A normalisation layer: torch's BatchNorm / InstanceNorm / GroupNorm / LayerNorm, or any module whose class
    name contains "Norm" (custom ones such as the GlobalContext channel LayerNorm)."""
    norm_types = (nn.modules.batchnorm._NormBase, nn.GroupNorm, nn.LayerNorm)
    return isinstance(module, norm_types) or "norm" in type(module).__name__.lower()


# --------------------------------------------------------------------------------------------------------------
# build_model
# --------------------------------------------------------------------------------------------------------------
MODEL_DEFAULTS: dict[str, Any] = {
    "backbone": "resnet50",
    "pretrained": False,
    "last_stride": 1,
    "attention": None,
    "attention_layout": None,
    "backbone_kwargs": {},
    "pooling": "avg",
    "gem_p": 3.0,
    "gem_learnable": False,
    "neck": "bnneck",
    "embedding_dim": None,
    "neck_embedding": "linear",
    "neck_norm": "1d",
    "bn_weight_init": "ones",
    "head": "linear",
    "scale": None,
    "margin": None,
    "num_subcenters": 1,
    "head_kwargs": {},
    "feature_pos": "before",
    "eval_feature": "after",
    "input_norm": None,
}
"""Every key of the ``model`` config and its default: BoT R50 (ResNet-50, last stride 1, average pooling, BNNeck,
linear head, metric feature before the BN, retrieval feature after it). ``pretrained`` is ``False`` so that a bare
``build_model`` never touches the network; the recipes set it.

``feature_dim`` is accepted as another name for ``embedding_dim`` (the design sketch's name)."""

_ALIASES = {"feature_dim": "embedding_dim"}


def _fail(key: str, message: str) -> ValueError:
    return ValueError(f"model.{key}: {message}")


def _is_int(value: object) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _is_number(value: object) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _choice(cfg: Mapping[str, Any], key: str, choices: Sequence[str]) -> str:
    value = cfg[key]
    if not isinstance(value, str) or value.lower() not in choices:
        raise _fail(key, f"unknown value {value!r}; valid values: {', '.join(sorted(choices))}")
    return value.lower()


def _resolve_input_norm(value: object) -> tuple[tuple[float, ...], tuple[float, ...]] | None:
    """``None`` | ``"imagenet"`` | ``{"mean": [...], "std": [...]}`` | ``[mean, std]`` → ``(mean, std)`` or None."""
    if value is None or value is False:
        return None
    if isinstance(value, str):
        if value.lower() != "imagenet":
            raise _fail("input_norm", f"unknown value {value!r}; valid values: null, 'imagenet', "
                                      "{mean: [r, g, b], std: [r, g, b]} or [mean, std]")
        return IMAGENET_MEAN, IMAGENET_STD
    if isinstance(value, Mapping):
        if set(value) != {"mean", "std"}:
            raise _fail("input_norm", f"a mapping needs exactly the keys 'mean' and 'std', got {sorted(value)}")
        value = (value["mean"], value["std"])
    try:
        return _as_norm(value)  # type: ignore[arg-type]
    except ValueError as err:
        raise _fail("input_norm", str(err)) from err


def resolve_model_config(cfg: Mapping[str, Any] | None) -> dict[str, Any]:
    """The ``model`` config with every key present and every value checked: :data:`MODEL_DEFAULTS` updated by
    ``cfg``. Raises ``ValueError`` for an unknown key (listing the valid ones) or a bad value (naming the key)."""
    cfg = dict(cfg or {})
    for alias, key in _ALIASES.items():
        if alias in cfg:
            value = cfg.pop(alias)
            if key in cfg and cfg[key] != value:
                raise _fail(alias, f"is another name for {key!r}; got both ({value!r} and {cfg[key]!r})")
            cfg[key] = value
    unknown = sorted(str(k) for k in cfg if k not in MODEL_DEFAULTS)
    if unknown:
        hints = [f"{k!r} → {m[0]!r}?" for k in unknown
                 if (m := difflib.get_close_matches(k, list(MODEL_DEFAULTS), n=1))]
        raise ValueError(f"unknown model config key(s) {unknown}"
                         + (f" (did you mean {', '.join(hints)})" if hints else "")
                         + f"; valid keys: {', '.join(sorted([*MODEL_DEFAULTS, *_ALIASES]))}")
    merged = {**MODEL_DEFAULTS, **cfg}

    if merged["backbone"] not in BACKBONES:
        raise _fail("backbone", f"unknown backbone {merged['backbone']!r}; valid names: {', '.join(sorted(BACKBONES))}")
    if not isinstance(merged["pretrained"], (bool, str, os.PathLike)):
        raise _fail("pretrained", f"must be true, false or a path to a state dict, got {merged['pretrained']!r}")
    if isinstance(merged["pretrained"], os.PathLike):
        merged["pretrained"] = os.fspath(merged["pretrained"])  # the config stays plain data
    if merged["last_stride"] not in (1, 2) or isinstance(merged["last_stride"], bool):
        raise _fail("last_stride", f"must be 1 or 2, got {merged['last_stride']!r}")
    if merged["attention"] is not None and not isinstance(merged["attention"], str):
        raise _fail("attention", f"must be null or an attention name, got {merged['attention']!r}")
    layout = merged["attention_layout"]
    if layout is not None:
        if (not isinstance(layout, Sequence) or isinstance(layout, str)
                or not all(_is_int(n) and n >= 0 for n in layout)):
            raise _fail("attention_layout", f"must be null or a list of non-negative ints per stage, got {layout!r}")
        merged["attention_layout"] = [int(n) for n in layout]
    for key in ("backbone_kwargs", "head_kwargs"):
        if not isinstance(merged[key], Mapping) or not all(isinstance(k, str) for k in merged[key]):
            raise _fail(key, f"must be a mapping of option names to values, got {merged[key]!r}")
        merged[key] = dict(merged[key])

    merged["pooling"] = _choice(merged, "pooling", list(POOLING))
    if not _is_number(merged["gem_p"]) or not merged["gem_p"] >= 1:
        raise _fail("gem_p", f"must be a number >= 1 (1 is average pooling), got {merged['gem_p']!r}")
    if not isinstance(merged["gem_learnable"], bool):
        raise _fail("gem_learnable", f"must be true or false, got {merged['gem_learnable']!r}")

    if merged["neck"] is None:
        merged["neck"] = "none"
    merged["neck"] = _choice(merged, "neck", NECKS)
    dim = merged["embedding_dim"]
    if dim is not None and (not _is_int(dim) or dim < 1):
        raise _fail("embedding_dim", f"must be null or a positive int, got {dim!r}")
    if dim is not None and merged["neck"] == "none":
        raise _fail("embedding_dim", "an embedding needs the BNNeck (neck: bnneck); with neck: none the feature is "
                                     "the pooled backbone feature")
    merged["neck_embedding"] = _choice(merged, "neck_embedding", ("linear", "conv"))
    merged["neck_norm"] = _choice(merged, "neck_norm", ("1d", "2d"))
    merged["bn_weight_init"] = _choice(merged, "bn_weight_init", ("ones", "normal"))

    head = merged["head"]
    if not isinstance(head, str):
        raise _fail("head", f"must be a head name; valid names: {', '.join(sorted(HEADS))}, got {head!r}")
    for key in ("scale", "margin"):
        if merged[key] is not None and not _is_number(merged[key]):
            raise _fail(key, f"must be null (the head's default) or a number, got {merged[key]!r}")
    if not _is_int(merged["num_subcenters"]) or merged["num_subcenters"] < 1:
        raise _fail("num_subcenters", f"must be a positive int, got {merged['num_subcenters']!r}")

    merged["feature_pos"] = _choice(merged, "feature_pos", FEATURE_POSITIONS)
    merged["eval_feature"] = _choice(merged, "eval_feature", FEATURE_POSITIONS)
    norm = _resolve_input_norm(merged["input_norm"])
    merged["input_norm"] = None if norm is None else {"mean": list(norm[0]), "std": list(norm[1])}
    return merged


def build_model(cfg: Mapping[str, Any] | None, num_classes: int) -> ReIDModel:
    """A :class:`ReIDModel` from the ``model`` config subtree (a plain mapping; keys and defaults in
    :data:`MODEL_DEFAULTS`) for ``num_classes`` training identities.

    Keys: ``backbone`` (a name of :data:`~reidkit.models.backbones.BACKBONES`), ``pretrained`` (bool or path),
    ``last_stride`` (1 | 2), ``attention`` / ``attention_layout`` / ``backbone_kwargs`` (to
    :func:`~reidkit.models.backbones.build_backbone`); ``pooling`` (avg | max | gem) with ``gem_p``,
    ``gem_learnable``; ``neck`` (bnneck | none) with ``embedding_dim`` (alias ``feature_dim``),
    ``neck_embedding`` (linear | conv), ``neck_norm`` (1d | 2d) and ``bn_weight_init`` (ones | normal);
    ``head`` (linear | cos | circle | arcface, or an alias) with ``scale``, ``margin``, ``num_subcenters`` and
    ``head_kwargs`` (e.g. ``easy_margin``, ``margin_unit``); ``feature_pos``, ``eval_feature`` (before | after);
    ``input_norm`` (null | imagenet | {mean, std}).

    The validated config is stored on ``model.config``.

    Raises:
        ValueError: an unknown key (the message lists the valid keys), an unknown or invalid value (the message
            names ``model.<key>`` and, for names, the valid ones), or an option the component rejects.
    """
    if not _is_int(num_classes) or num_classes < 1:
        raise ValueError(f"num_classes must be a positive int, got {num_classes!r}")
    c = resolve_model_config(cfg)
    try:
        backbone = build_backbone(c["backbone"], pretrained=c["pretrained"], last_stride=c["last_stride"],
                                  attention=c["attention"], attention_layout=c["attention_layout"],
                                  **c["backbone_kwargs"])
    except (TypeError, ValueError) as err:
        raise ValueError(f"model: cannot build backbone {c['backbone']!r}: {err}") from err
    channels = int(getattr(backbone, "out_channels"))  # noqa: B009 (every reidkit backbone has it)
    pooling_kwargs = {"p": float(c["gem_p"]), "learnable": c["gem_learnable"]} if c["pooling"] == "gem" else {}
    pooling = build_pooling(c["pooling"], **pooling_kwargs)
    neck: BNNeck | None = None
    if c["neck"] == "bnneck":
        neck = BNNeck(channels, c["embedding_dim"], embedding=c["neck_embedding"], norm=c["neck_norm"],
                      bn_weight_init=c["bn_weight_init"])
    in_features = neck.out_channels if neck is not None else channels
    try:
        head = build_head(c["head"], in_features, num_classes, scale=c["scale"], margin=c["margin"],
                          num_subcenters=c["num_subcenters"], **c["head_kwargs"])
    except (TypeError, ValueError) as err:
        raise _fail("head", str(err)) from err
    norm = c["input_norm"]
    model = ReIDModel(backbone, pooling, neck, head, feature_pos=c["feature_pos"], eval_feature=c["eval_feature"],
                      input_norm=None if norm is None else (norm["mean"], norm["std"]))
    model.config = c
    return model
