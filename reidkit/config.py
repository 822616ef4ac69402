"""YAML configs: shipped recipes, inheritance, ``key=value`` overrides, validation of every key.

One tree with the sections ``data``, ``model``, ``loss``, ``optim``, ``schedule``, ``train``, ``eval``, ``log``
(``DESIGN.md``). :func:`load_config` returns it as plain data with every key present (defaults filled in):

* ``load_config("bot_r50")`` reads ``reidkit/configs/bot_r50.yaml``; a path (``"my.yaml"``, ``"runs/x/config.yaml"``)
  reads that file.
* A file may say ``base: other`` (a shipped name, or a path relative to the file); it is deep-merged over its base
  (mappings merge key by key, anything else replaces), recursively; a cycle is an error naming the chain.
* Overrides ``"optim.lr=1e-3"``, ``"schedule.milestones=[30, 60]"``, ``"train.amp=true"`` are applied last; the value
  is parsed with ``yaml.safe_load``.
* Every key is validated: an unknown key or an invalid value is a :class:`ConfigError` that lists the valid keys or
  values and names the file or override it came from. The ``model`` subtree is validated by
  :func:`reidkit.models.reid_model.resolve_model_config` (``arch: reid``) or by
  :class:`reidkit.models.lightmbn.LightMBNOptions` (``arch: lightmbn``); ``data.transforms`` by
  :class:`reidkit.data.transforms.build.TransformConfig`; ``schedule`` keys are
  :data:`reidkit.engine.schedulers.SCHEDULE_DEFAULTS`. The loss spec stays a string (parsed by ``reidkit.losses``)
  plus a ``loss.params`` mapping ``{term name: {constructor argument: value}}``.

YAML is only ever read with ``yaml.safe_load`` (no Python object tags).
"""

from __future__ import annotations

import copy
import math
import numbers
import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from reidkit.data.datasets import DATASETS
from reidkit.data.transforms.build import TransformConfig
from reidkit.engine.schedulers import SCHEDULE_DEFAULTS, SCHEDULERS, WARMUP_METHODS
from reidkit.models.lightmbn import VARIANTS as LIGHTMBN_VARIANTS
from reidkit.models.lightmbn import LightMBNOptions
from reidkit.models.reid_model import _ALIASES as MODEL_ALIASES
from reidkit.models.reid_model import MODEL_DEFAULTS, resolve_model_config

__all__ = [
    "CONFIG_DIR",
    "ConfigError",
    "SCHEMA",
    "SECTIONS",
    "available_configs",
    "dump_config",
    "load_config",
    "model_arch_kwargs",
    "validate_config",
]

CONFIG_DIR = Path(__file__).resolve().parent / "configs"
"""Folder of the shipped recipes (``reidkit/configs/<name>.yaml``)."""

SECTIONS: tuple[str, ...] = ("data", "model", "loss", "optim", "schedule", "train", "eval", "log")
MODEL_ARCHS: tuple[str, ...] = ("reid", "lightmbn")


class ConfigError(ValueError):
    """An invalid config: the message names the key, its source (file or override) and the valid keys/values."""


class _Key:
    """Schema entry: default, kind (int | float | bool | str | list | map | any), choices, whether null is allowed."""

    __slots__ = ("choices", "default", "kind", "nullable")

    def __init__(self, default: Any, kind: str, choices: Sequence[Any] | None = None, nullable: bool = False) -> None:
        self.default = default
        self.kind = kind
        self.choices = tuple(choices) if choices is not None else None
        self.nullable = nullable or default is None


def _schedule_schema() -> dict[str, _Key]:
    kinds = {"name": ("str", tuple(SCHEDULERS)), "per_iter": ("bool", None), "warmup": ("str", WARMUP_METHODS),
             "warmup_factor": ("float", None), "warmup_epochs": ("int", None), "warmup_iters": ("int", None),
             "delay_epochs": ("int", None), "max_epochs": ("int", None), "milestones": ("list", None),
             "gamma": ("float", None), "eta_min": ("float", None), "eta_min_factor": ("float", None)}
    missing = set(SCHEDULE_DEFAULTS) ^ set(kinds)
    if missing:  # pragma: no cover - keeps the two tables in step
        raise RuntimeError(f"schedule schema out of step with SCHEDULE_DEFAULTS: {sorted(missing)}")
    return {k: _Key(SCHEDULE_DEFAULTS[k], kind, choices) for k, (kind, choices) in kinds.items()}


SCHEMA: dict[str, dict[str, _Key]] = {
    "data": {
        "name": _Key("synthreid", "str", sorted(DATASETS)),
        "root": _Key("data/synthreid", "str"),
        "dataset_kwargs": _Key({}, "map"),       # extra arguments of the dataset class (e.g. a SynthReID size)
        "height": _Key(256, "int"),
        "width": _Key(128, "int"),
        "batch_size": _Key(64, "int"),           # P × K, global: split over torchrun processes
        "num_instances": _Key(4, "int"),         # K (images per identity) for the P×K sampler
        "sampler": _Key("pk", "str", ("pk", "random")),
        "test_batch_size": _Key(128, "int"),
        "workers": _Key(2, "int"),
        "transforms": _Key({}, "map"),           # TransformConfig fields; height/width come from data
    },
    "loss": {
        "spec": _Key("1.0*ce + 1.0*triplet", "str"),   # parsed by reidkit.losses
        "params": _Key({}, "map"),                     # {term name: {constructor argument: value}}
    },
    "optim": {
        "name": _Key("adam", "str", ("adam", "adamw", "sgd")),
        "lr": _Key(3.5e-4, "float"),
        "weight_decay": _Key(5e-4, "float"),
        "betas": _Key([0.9, 0.999], "list"),
        "eps": _Key(1e-8, "float"),
        "momentum": _Key(0.9, "float"),                # SGD only
        "nesterov": _Key(False, "bool"),               # SGD only
        "amsgrad": _Key(False, "bool"),                # Adam / AdamW
        "bias_lr_factor": _Key(1.0, "float"),
        "bias_weight_decay": _Key(None, "float"),      # null: weight_decay
        "norm_weight_decay": _Key(None, "float"),      # null: weight_decay
        "center_lr": _Key(0.5, "float"),               # the center-loss centres' own SGD (BoT, components.md §6)
    },
    "schedule": _schedule_schema(),
    "train": {
        "epochs": _Key(120, "int"),
        "amp": _Key(False, "bool"),
        "amp_dtype": _Key("bf16", "str", ("bf16", "fp16")),
        "channels_last": _Key(False, "bool"),
        "compile": _Key(False, "bool"),               # torch.compile the model's forward
        "compile_backend": _Key("inductor", "str"),    # torch.compile backend (inductor, aot_eager, eager, ...)
        "accumulate": _Key(1, "int"),
        "clip": _Key(None, "float"),                   # max gradient norm; null: no clipping
        "ema": _Key(None, "float"),                    # EMA decay of the weights; null: off
        "freeze_epochs": _Key(0, "int"),
        "freeze_iters": _Key(0, "int"),               # FastReID: also frozen for the first N optimiser steps
        "freeze_modules": _Key(["backbone"], "list"),
        "freeze_bn_stats": _Key(True, "bool"),         # seed: false (BN statistics keep updating)
        "sync_bn": _Key(False, "bool"),                # SyncBatchNorm across torchrun processes (CUDA/NCCL only)
        "cudnn_benchmark": _Key(True, "bool"),         # CUDA only: cuDNN times its conv algorithms per input shape
        "seed": _Key(0, "int", nullable=True),         # null: no seeding (the seed's recipes)
        "val_ids": _Key(0, "int"),                     # identities carved from train for model selection
        "select_on": _Key("val", "str", ("val", "test", "last")),
        "eval_every": _Key(10, "int"),
        "checkpoint_every": _Key(10, "int"),
        "output_dir": _Key("runs", "str"),
        "device": _Key("auto", "str", ("auto", "cpu", "cuda")),
    },
    "eval": {
        "metric": _Key("euclidean", "str", ("euclidean", "cosine")),
        "normalize": _Key(True, "bool"),               # L2-normalise features before the distance
        "flip": _Key(False, "bool"),
        "rerank": _Key(False, "bool"),
        "rerank_k1": _Key(20, "int"),
        "rerank_k2": _Key(6, "int"),
        "rerank_lambda": _Key(0.3, "float"),
        "max_rank": _Key(50, "int"),
    },
    "log": {
        "wandb_mode": _Key("disabled", "str", ("disabled", "offline", "online")),
        "wandb_project": _Key("reidkit", "str"),
        "wandb_name": _Key(None, "str", nullable=True),  # the wandb run name; null: wandb chooses
        "table": _Key(True, "bool"),                   # print a per-epoch metrics table to stdout (rank 0)
        "every_n": _Key(50, "int"),
        "jsonl": _Key(True, "bool"),
        "progress": _Key(True, "bool"),
    },
}
"""Keys, kinds and defaults of every section except ``model`` (whose keys come from the model package)."""

_LIGHTMBN_BASE = {"arch": "lightmbn", "variant": "lmbn", "pretrained": False}


# --------------------------------------------------------------------------------------------------------------
# loading
# --------------------------------------------------------------------------------------------------------------
Source = dict[tuple[str, ...], str]


def available_configs() -> list[str]:
    """Names of the shipped recipes."""
    return sorted(p.stem for p in CONFIG_DIR.glob("*.yaml"))


def _resolve(name_or_path: str | os.PathLike[str], relative_to: Path | None = None) -> Path:
    text = os.fspath(name_or_path)
    looks_like_path = text.endswith((".yaml", ".yml")) or "/" in text or os.sep in text
    if looks_like_path:
        path = Path(text)
        if not path.is_absolute() and relative_to is not None:
            path = relative_to / path
        if not path.is_file():
            raise ConfigError(f"config file {str(path)!r} not found")
        return path.resolve()
    path = CONFIG_DIR / f"{text}.yaml"
    if not path.is_file():
        raise ConfigError(f"no shipped config named {text!r}; available: {', '.join(available_configs())} "
                          "(or give a path to a .yaml file)")
    return path.resolve()


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as err:  # includes ConstructorError for !!python/... tags
        raise ConfigError(f"{path}: cannot parse YAML (only plain YAML is read, with yaml.safe_load): {err}") from err
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: a config must be a mapping at the top level, got {type(data).__name__}")
    return data


def _record(tree: Mapping[str, Any], source: str, sources: Source, prefix: tuple[str, ...] = ()) -> None:
    for key, value in tree.items():
        path = (*prefix, str(key))
        sources[path] = source
        if isinstance(value, Mapping):
            _record(value, source, sources, path)


def _deep_merge(base: dict[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in over.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = _deep_merge(dict(out[key]), value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def _load_tree(path: Path, sources: Source, chain: tuple[Path, ...]) -> dict[str, Any]:
    if path in chain:
        names = " -> ".join(str(p) for p in (*chain, path))
        raise ConfigError(f"config inheritance cycle: {names}")
    data = _read_yaml(path)
    base = data.pop("base", None)
    tree: dict[str, Any] = {}
    if base is not None:
        if not isinstance(base, str) or not base:
            raise ConfigError(f"{path}: 'base' must be a config name or a path, got {base!r}")
        try:
            base_path = _resolve(base, relative_to=path.parent)
        except ConfigError as err:
            raise ConfigError(f"{path}: base {base!r}: {err}") from err
        tree = _load_tree(base_path, sources, (*chain, path))
    _record(data, str(path), sources)
    return _deep_merge(tree, data)


def _apply_override(tree: dict[str, Any], override: str, sources: Source) -> None:
    if not isinstance(override, str) or "=" not in override:
        raise ConfigError(f"override {override!r} must look like key.sub=value")
    key, _, text = override.partition("=")
    parts = tuple(p.strip() for p in key.strip().split("."))
    if not all(parts):
        raise ConfigError(f"override {override!r}: empty key part in {key!r}")
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise ConfigError(f"override {override!r}: cannot parse the value {text!r}: {err}") from err
    node = tree
    for i, part in enumerate(parts[:-1]):
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise ConfigError(f"override {override!r}: {'.'.join(parts[:i + 1])} is {child!r}, not a mapping")
        node = child
    node[parts[-1]] = value
    label = f"override {override!r}"
    sources[parts] = label
    if isinstance(value, Mapping):
        _record(value, label, sources, parts)


def load_config(name_or_path: str | os.PathLike[str], overrides: Sequence[str] = ()) -> dict[str, Any]:
    """Load a shipped recipe (by name) or a YAML file, resolve ``base:`` inheritance, apply ``key.sub=value``
    overrides, validate every key and fill in the defaults.

    Raises:
        ConfigError: a missing file, a cycle, YAML that is not plain data, an unknown key or an invalid value (the
            message names the file or override and lists the valid keys or values).
    """
    if isinstance(overrides, str):
        overrides = [overrides]
    sources: Source = {}
    tree = _load_tree(_resolve(name_or_path), sources, ())
    for override in overrides:
        _apply_override(tree, override, sources)
    return validate_config(tree, sources)


# --------------------------------------------------------------------------------------------------------------
# validation
# --------------------------------------------------------------------------------------------------------------
def _source_of(sources: Source | None, path: tuple[str, ...]) -> str:
    if not sources:
        return "the given mapping"
    for n in range(len(path), 0, -1):
        if path[:n] in sources:
            return sources[path[:n]]
    return "the defaults"


def _fail(sources: Source | None, path: tuple[str, ...], message: str) -> ConfigError:
    return ConfigError(f"{'.'.join(path)}: {message} (from {_source_of(sources, path)})")


def _is_int(v: object) -> bool:
    return isinstance(v, numbers.Integral) and not isinstance(v, bool)


def _is_float(v: object) -> bool:
    return isinstance(v, numbers.Real) and not isinstance(v, bool) and math.isfinite(float(v))


def _check_value(spec: _Key, value: Any, path: tuple[str, ...], sources: Source | None) -> Any:
    if value is None:
        if spec.nullable:
            return None
        raise _fail(sources, path, "must not be null")
    kind = spec.kind
    if spec.choices is not None and value not in spec.choices:
        hint = " (YAML reads unquoted on/off/yes/no as booleans: quote the value)" if isinstance(value, bool) else ""
        raise _fail(sources, path, f"invalid value {value!r}; valid values: {', '.join(map(str, spec.choices))}{hint}")
    if kind == "float" and isinstance(value, str):
        # YAML 1.1 (PyYAML) reads "1e-3" (no dot) as a string: accept a numeric literal for a number key
        try:
            value = float(value)
        except ValueError:
            raise _fail(sources, path, f"must be a number, got {value!r}") from None
    if kind == "int" and not _is_int(value):
        raise _fail(sources, path, f"must be an int, got {value!r}")
    if kind == "float":
        if not _is_float(value):
            raise _fail(sources, path, f"must be a number, got {value!r}")
        value = float(value)
    if kind == "bool" and not isinstance(value, bool):
        raise _fail(sources, path, f"must be true or false, got {value!r}")
    if kind == "str" and not isinstance(value, str):
        raise _fail(sources, path, f"must be a string, got {value!r}")
    if kind == "list":
        if isinstance(value, (str, bytes)) or not isinstance(value, Sequence):
            raise _fail(sources, path, f"must be a list, got {value!r}")
        value = list(value)
    if kind == "map" and not isinstance(value, Mapping):
        raise _fail(sources, path, f"must be a mapping, got {value!r}")
    if kind in ("int", "float") and value < 0:
        raise _fail(sources, path, f"must be >= 0, got {value!r}")
    return copy.deepcopy(value)


def _unknown_keys(given: Mapping[str, Any], valid: Sequence[str], prefix: tuple[str, ...],
                  sources: Source | None, what: str) -> None:
    unknown = [str(k) for k in given if k not in valid]
    if unknown:
        first = (*prefix, unknown[0])
        raise _fail(sources, first, f"unknown {what} key(s) {sorted(unknown)}; valid keys: {', '.join(valid)}")


def _blame(err: Exception, raw: Mapping[str, Any], prefix: tuple[str, ...], sources: Source | None,
           aliases: Mapping[str, tuple[str, ...]] | None = None) -> ConfigError:
    """Wrap a delegated validator's error, naming the source (file or override) of the config keys it mentions.

    The keys looked for are ``raw``'s (the section under ``prefix``) and, through ``aliases``, the validator's own
    argument names for config keys (the scheduler's ``delay_steps`` is ``("schedule", "delay_epochs")``): each alias
    in the message is first replaced by the key's name (the last part inside ``prefix``, else the dotted path). The
    message ends ``(from SOURCE)`` when the mentioned keys share one source (the section's source when none is
    mentioned), else ``(KEY from SOURCE; KEY2 from SOURCE2)`` in the order the message names them.
    """
    message = str(err)
    names: dict[str, tuple[str, ...]] = {str(key): (*prefix, str(key)) for key in raw}
    for alias, path in (aliases or {}).items():
        name = path[-1] if path[:-1] == prefix else ".".join(path)
        message = re.sub(rf"\b{re.escape(alias)}\b", name, message)
        names[name] = path
    mentioned: dict[tuple[str, ...], tuple[int, str]] = {}
    for name, path in names.items():
        found = re.search(rf"\b{re.escape(name)}\b", message)
        if found and (path not in mentioned or found.start() < mentioned[path][0]):
            mentioned[path] = (found.start(), name)
    ordered = sorted(mentioned.items(), key=lambda item: item[1][0])
    blamed = {name: _source_of(sources, path) for path, (_, name) in ordered}
    if len(set(blamed.values())) > 1:
        where = "; ".join(f"{name} from {source}" for name, source in blamed.items())
    else:
        where = "from " + next(iter(blamed.values()), _source_of(sources, prefix))
    return ConfigError(f"{'.'.join(prefix)}: {message} ({where})")


def _validate_section(name: str, raw: Mapping[str, Any], sources: Source | None) -> dict[str, Any]:
    schema = SCHEMA[name]
    _unknown_keys(raw, list(schema), (name,), sources, name)
    out = {}
    for key, spec in schema.items():
        value = raw[key] if key in raw else copy.deepcopy(spec.default)
        out[key] = _check_value(spec, value, (name, key), sources)
    return out


def _validate_model(raw: Mapping[str, Any], sources: Source | None) -> dict[str, Any]:
    raw = dict(raw)
    arch = raw.pop("arch", "reid")
    if arch not in MODEL_ARCHS:
        raise _fail(sources, ("model", "arch"), f"invalid value {arch!r}; valid values: {', '.join(MODEL_ARCHS)}")
    if arch == "reid":
        _unknown_keys(raw, ["arch", *MODEL_DEFAULTS, *MODEL_ALIASES], ("model",), sources, "model")
        try:
            resolved = resolve_model_config(raw)
        except (TypeError, ValueError) as err:
            raise _blame(err, raw, ("model",), sources) from err
        return {"arch": "reid", **resolved}
    options = list(LightMBNOptions.names())
    _unknown_keys(raw, [*_LIGHTMBN_BASE, *options], ("model",), sources, "model (arch: lightmbn)")
    out = {**_LIGHTMBN_BASE, **copy.deepcopy(raw)}
    if out["variant"] not in LIGHTMBN_VARIANTS:
        raise _fail(sources, ("model", "variant"),
                    f"invalid value {out['variant']!r}; valid values: {', '.join(LIGHTMBN_VARIANTS)}")
    if not isinstance(out["pretrained"], (bool, str)):
        raise _fail(sources, ("model", "pretrained"), f"must be true, false or a path, got {out['pretrained']!r}")
    try:
        LightMBNOptions.for_variant(out["variant"], **{k: v for k, v in out.items() if k in options})
    except (TypeError, ValueError) as err:
        raise _blame(err, raw, ("model",), sources) from err
    return out


def _validate_transforms(data: dict[str, Any], sources: Source | None) -> dict[str, Any]:
    raw = dict(data["transforms"])
    prefix = ("data", "transforms")
    _unknown_keys(raw, list(TransformConfig.keys()), prefix, sources, "data.transforms")
    for key in ("height", "width"):
        if key in raw and raw[key] != data[key]:
            raise _fail(sources, (*prefix, key),
                        f"{raw[key]!r} differs from data.{key} = {data[key]!r}; set data.{key}")
        raw[key] = data[key]
    try:
        resolved = TransformConfig.from_mapping(raw).to_dict()
    except (TypeError, ValueError) as err:
        raise _blame(err, {k: v for k, v in raw.items() if k not in ("height", "width")}, prefix, sources) from err
    return _plain(resolved)


def _plain(value: Any) -> Any:
    """Tuples → lists, recursively, so the tree is plain YAML data."""
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def validate_config(tree: Mapping[str, Any], sources: Source | None = None) -> dict[str, Any]:
    """Validate a config tree and return it with every key present (defaults filled in).

    ``sources`` (path tuple → "file or override") is used only to name the origin of an error.
    """
    if not isinstance(tree, Mapping):
        raise ConfigError(f"a config must be a mapping, got {type(tree).__name__}")
    unknown = [str(k) for k in tree if k not in SECTIONS]
    if unknown:
        raise _fail(sources, (unknown[0],), f"unknown section(s) {sorted(unknown)}; valid sections: "
                                            f"{', '.join(SECTIONS)} (and 'base' in a file)")
    for section in SECTIONS:
        if section in tree and tree[section] is not None and not isinstance(tree[section], Mapping):
            raise _fail(sources, (section,), f"must be a mapping, got {tree[section]!r}")
    raw = {s: dict(tree.get(s) or {}) for s in SECTIONS}
    cfg: dict[str, Any] = {}
    for section in SECTIONS:
        if section == "model":
            cfg["model"] = _validate_model(raw["model"], sources)
        else:
            cfg[section] = _validate_section(section, raw[section], sources)

    data = cfg["data"]
    for key in ("height", "width", "batch_size", "num_instances", "test_batch_size"):
        if data[key] < 1:
            raise _fail(sources, ("data", key), f"must be >= 1, got {data[key]!r}")
    if data["sampler"] == "pk" and data["batch_size"] % data["num_instances"]:
        raise _fail(sources, ("data", "batch_size"), f"{data['batch_size']} is not a multiple of "
                                                      f"data.num_instances = {data['num_instances']} (P × K)")
    data["transforms"] = _validate_transforms(data, sources)

    loss = cfg["loss"]
    if not loss["spec"].strip():
        raise _fail(sources, ("loss", "spec"), "must be a non-empty loss spec such as '0.5*ce + 0.5*ms'")
    for term, params in loss["params"].items():
        if not isinstance(params, Mapping):
            raise _fail(sources, ("loss", "params", str(term)),
                        f"must be a mapping of the term's constructor arguments, got {params!r}")

    optim = cfg["optim"]
    for key in ("lr", "center_lr"):
        if optim[key] <= 0:
            raise _fail(sources, ("optim", key), f"must be > 0, got {optim[key]!r}")
    if len(optim["betas"]) != 2 or not all(_is_float(b) and 0 <= b < 1 for b in optim["betas"]):
        raise _fail(sources, ("optim", "betas"), f"must be two numbers in [0, 1), got {optim['betas']!r}")

    train = cfg["train"]
    for key in ("epochs", "accumulate"):
        if train[key] < 1:
            raise _fail(sources, ("train", key), f"must be >= 1, got {train[key]!r}")
    if not train["compile_backend"].strip():
        raise _fail(sources, ("train", "compile_backend"), "must name a torch.compile backend, e.g. 'inductor'")
    if not all(isinstance(m, str) for m in train["freeze_modules"]):
        raise _fail(sources, ("train", "freeze_modules"), f"must be a list of module names, got "
                                                          f"{train['freeze_modules']!r}")

    schedule = cfg["schedule"]
    if not all(_is_int(m) and m >= 1 for m in schedule["milestones"]):
        raise _fail(sources, ("schedule", "milestones"), f"must be a list of positive epochs, got "
                                                         f"{schedule['milestones']!r}")
    _check_schedule(cfg, sources)
    return cfg


def _check_schedule(cfg: dict[str, Any], sources: Source | None) -> None:
    """Build the scheduler on a dummy optimiser so that its own checks (D ≥ W, increasing milestones, ...) run now."""
    import torch

    from reidkit.engine.schedulers import build_scheduler

    # Checked in epochs: iterations per epoch are unknown until the dataset is built, so ``warmup_iters`` (and the
    # D ≥ W check in iterations) is left to build_scheduler at training time.
    schedule = {**cfg["schedule"], "per_iter": False, "warmup_iters": None}
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=cfg["optim"]["lr"])
    try:
        build_scheduler({"schedule": schedule, "train": cfg["train"]}, opt, iters_per_epoch=1)
    except ValueError as err:
        # The schedulers' messages use their own argument names; here (per epoch, one step per epoch) each is
        # exactly the config key it comes from, so the message names that key and blames its source.
        max_epochs = ("schedule", "max_epochs") if schedule["max_epochs"] is not None else ("train", "epochs")
        aliases = {"warmup_steps": ("schedule", "warmup_epochs"), "delay_steps": ("schedule", "delay_epochs"),
                   "max_steps": max_epochs}
        raise _blame(err, cfg["schedule"], ("schedule",), sources, aliases) from err


def model_arch_kwargs(cfg: Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
    """``(arch, kwargs)`` from a validated config's ``model`` subtree: ``("reid", <build_model config>)`` or
    ``("lightmbn", <LightMBN keyword arguments>)``."""
    model = dict(cfg["model"] if "model" in cfg else cfg)
    arch = model.pop("arch", "reid")
    return arch, model


def dump_config(cfg: Mapping[str, Any]) -> str:
    """The config as YAML text (section order kept) that :func:`load_config` reads back to the same tree."""
    return yaml.safe_dump(_plain(dict(cfg)), sort_keys=False, default_flow_style=None)
