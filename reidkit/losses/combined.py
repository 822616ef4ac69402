"""A weighted sum of losses from a config spec, over one or many logit/feature outputs.

Spec forms:

* a string ``"0.5*ce + 0.5*ms"`` (a term without a weight, ``"triplet"``, has weight 1; ``1e-3*center`` works);
* a list of dicts ``[{"name": "ce", "weight": 1.0, "epsilon": 0.1}, {"name": "triplet", "weight": 1.0,
  "margin": 0.0}]``: ``name`` and optional ``weight`` (default 1) and ``key`` (the logging name; default the loss
  name, ``name_2``, ... for repeats), every other entry is a constructor argument of the loss.

Classification terms (``ce``, ``focal``) read logits, metric terms read features (with the labels). A list or
tuple of logits/features (LightMBN) is summed over the list before weighting, as LMBN does.
"""
from __future__ import annotations

import inspect
import math
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple, Union

import torch
from torch import Tensor, nn

__all__ = ["CombinedLoss", "LossOutput", "LossTerm", "build_loss", "parse_loss_spec"]

LossSpec = Union[str, Sequence[Mapping[str, Any]]]

_TERM_RE = re.compile(r"^\s*(?:(?P<weight>[^*]+?)\s*\*\s*)?(?P<name>[A-Za-z_][A-Za-z0-9_]*)\s*$")


class LossTerm(NamedTuple):
    """One parsed term of a spec: loss name, weight, constructor parameters and logging key."""

    name: str
    weight: float
    params: dict[str, Any]
    key: str


class LossOutput(NamedTuple):
    """``total``: the weighted sum (a scalar with gradient). ``terms``: detached scalars for logging, for each
    term ``key`` (unweighted) and ``key + "_weighted"``, plus ``"total"``."""

    total: Tensor
    terms: dict[str, Tensor]


def _registry() -> dict[str, Callable[..., nn.Module]]:
    from reidkit.losses import LOSSES

    return LOSSES


def _check_weight(value: object, where: str) -> float:
    if isinstance(value, bool):
        raise ValueError(f"{where}: the weight must be a number, got {value!r}")
    try:
        weight = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise ValueError(f"{where}: the weight must be a number, got {value!r}") from None
    if not math.isfinite(weight) or weight < 0:
        raise ValueError(f"{where}: the weight must be finite and >= 0, got {value!r}")
    return weight


def _check_name(name: object, where: str) -> str:
    valid = _registry()
    if not isinstance(name, str) or name not in valid:
        raise ValueError(f"{where}: unknown loss {name!r}; valid losses: {', '.join(sorted(valid))}")
    return name


def parse_loss_spec(spec: LossSpec) -> list[LossTerm]:
    """Parse and validate a spec (string or list of dicts) into :class:`LossTerm` s, without building them."""
    raw: list[tuple[str, float, dict[str, Any], str | None]] = []
    if isinstance(spec, str):
        if not spec.strip():
            raise ValueError("empty loss spec; expected e.g. '1.0*ce + 1.0*triplet'")
        for part in spec.split("+"):
            match = _TERM_RE.match(part)
            if match is None:
                raise ValueError(f"cannot parse loss term {part.strip()!r} in {spec!r}; expected 'weight*name'")
            name = _check_name(match["name"], f"loss spec {spec!r}")
            weight_text = match["weight"]
            weight = 1.0 if weight_text is None else _check_weight(weight_text.strip(), f"term {part.strip()!r}")
            raw.append((name, weight, {}, None))
    elif isinstance(spec, Sequence):
        if len(spec) == 0:
            raise ValueError("empty loss spec list")
        for i, entry in enumerate(spec):
            if not isinstance(entry, Mapping):
                raise ValueError(f"loss spec entry {i} must be a mapping with 'name', got {entry!r}")
            params = dict(entry)
            if "name" not in params:
                raise ValueError(f"loss spec entry {i} has no 'name': {entry!r}")
            name = _check_name(params.pop("name"), f"loss spec entry {i}")
            weight = _check_weight(params.pop("weight", 1.0), f"loss spec entry {i} ({name})")
            key = params.pop("key", None)
            if key is not None and not isinstance(key, str):
                raise ValueError(f"loss spec entry {i}: 'key' must be a string, got {key!r}")
            raw.append((name, weight, params, key))
    else:
        raise TypeError(f"loss spec must be a string or a list of dicts, got {type(spec).__name__}")

    terms: list[LossTerm] = []
    used: set[str] = set()
    for name, weight, params, key in raw:
        if key is None:
            key, n = name, 1
            while key in used:
                n += 1
                key = f"{name}_{n}"
        elif key in used:
            raise ValueError(f"duplicate loss key {key!r}")
        used.add(key)
        terms.append(LossTerm(name, weight, params, key))
    return terms


def _build_one(term: LossTerm, context: Mapping[str, Any]) -> nn.Module:
    builder = _registry()[term.name]
    signature = inspect.signature(builder)
    accepted = set(signature.parameters)
    unknown = sorted(set(term.params) - accepted)
    if unknown:
        raise ValueError(
            f"loss {term.name!r}: unknown parameter(s) {', '.join(unknown)}; valid: {', '.join(sorted(accepted))}"
        )
    kwargs = {k: v for k, v in context.items() if k in accepted and v is not None}
    kwargs.update(term.params)
    missing = [
        p.name for p in signature.parameters.values()
        if p.default is inspect.Parameter.empty and p.name not in kwargs
        and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
    ]
    if missing:
        raise ValueError(f"loss {term.name!r} needs {', '.join(missing)} (pass them to build_loss or in the spec)")
    return builder(**kwargs)


def _as_list(value: Any, what: str) -> list[Tensor]:
    if isinstance(value, Tensor):
        return [value]
    if isinstance(value, (list, tuple)) and len(value) > 0 and all(isinstance(v, Tensor) for v in value):
        return list(value)
    raise ValueError(f"{what} must be a tensor or a non-empty list/tuple of tensors, got {type(value).__name__}")


class CombinedLoss(nn.Module):
    """Weighted sum L = Σ_t w_t Σ_k L_t(input_k) of losses, each over every tensor of its input list.

    ``forward(output, labels, *, logits=None, features=None)``: ``output`` is anything with ``.logits`` and
    ``.features`` (a :class:`~reidkit.models.reid_model.ReIDOutput` or a LightMBN train output) or ``None``;
    ``logits``/``features`` override it (e.g. ``logits=model.ce_logits(out)`` for LightMBN's CE branches).
    Each term reads the input its loss declares (``input_kind``: ``"logits"`` or ``"features"``).
    Returns a :class:`LossOutput`.
    """

    def __init__(self, terms: Sequence[tuple[LossTerm, nn.Module]]) -> None:
        super().__init__()
        if len(terms) == 0:
            raise ValueError("CombinedLoss needs at least one term")
        self.terms: list[LossTerm] = [t for t, _ in terms]
        self.losses = nn.ModuleDict({t.key: m for t, m in terms})

    def extra_repr(self) -> str:
        return " + ".join(f"{t.weight:g}*{t.key}" for t in self.terms)

    def forward(
        self,
        output: Any = None,
        labels: Tensor | None = None,
        *,
        logits: Tensor | Sequence[Tensor] | None = None,
        features: Tensor | Sequence[Tensor] | None = None,
    ) -> LossOutput:
        if labels is None:
            raise ValueError("CombinedLoss needs the labels")
        inputs = {
            "logits": logits if logits is not None else getattr(output, "logits", None),
            "features": features if features is not None else getattr(output, "features", None),
        }
        total: Tensor | None = None
        logs: dict[str, Tensor] = {}
        for term in self.terms:
            module = self.losses[term.key]
            kind = getattr(module, "input_kind", "features")
            if inputs[kind] is None:
                raise ValueError(f"loss term {term.key!r} needs {kind}, which the output does not provide")
            values = [module(t, labels) for t in _as_list(inputs[kind], f"{kind} for term {term.key!r}")]
            value = torch.stack(values).sum()
            weighted = term.weight * value
            logs[term.key] = value.detach()
            logs[f"{term.key}_weighted"] = weighted.detach()
            total = weighted if total is None else total + weighted
        assert total is not None
        logs["total"] = total.detach()
        return LossOutput(total, logs)


def build_loss(spec: LossSpec, *, num_classes: int | None = None, feat_dim: int | None = None) -> CombinedLoss:
    """Build a :class:`CombinedLoss` from a spec (see the module docstring).

    ``num_classes``/``feat_dim`` are passed to the losses that need them (center loss) unless the spec sets them.
    Unknown loss names, bad weights and unknown parameters are ``ValueError`` s listing the valid choices.
    """
    context = {"num_classes": num_classes, "feat_dim": feat_dim}
    terms = parse_loss_spec(spec)
    return CombinedLoss([(t, _build_one(t, context)) for t in terms])
