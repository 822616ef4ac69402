"""Finding and loading pretrained weights: the one place every reidkit backbone loads a checkpoint through.

Rules (``components.md`` §0), each a bug some earlier toolkit shipped:

* A load reports exactly which keys were loaded, dropped (``unexpected``), left at their own initialisation
  (``new``: modules such as attention or IBN added to a pretrained backbone) and ``missing``. A missing
  backbone key, an unexpected key that is not a declared head, or a shape mismatch is an error that names the
  file and the keys: never ``strict=False`` wholesale, never a ``try``/``except`` that trains on from random
  init after a failed load.
* Files are read with ``torch.load(..., weights_only=True)``: a checkpoint from a stranger can never run code.
* Weights are found on disk first (a path, or the library folder :func:`weights_dir`); a download that fails
  raises an error that says which file to put where by hand, and where to get it.

Typical use::

    report = load_pretrained(backbone, "osnet_x1_0_imagenet.pth")   # drops fc.* and classifier.*
    report.unexpected   # ['fc.0.weight', ..., 'classifier.weight', 'classifier.bias']
"""
from __future__ import annotations

import logging
import os
import pickle
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import NamedTuple

import torch
from torch import nn
from torch.hub import download_url_to_file

logger = logging.getLogger(__name__)

WEIGHTS_ENV = "REIDKIT_WEIGHTS"
DEFAULT_WEIGHTS_DIR = Path("~/.cache/reidkit/weights")

# Counters, not weights: torch < 0.4.1 checkpoints (and some converted ones) lack them; a BatchNorm missing
# one keeps its own value, which only matters with ``momentum=None``.
_TOLERATED_MISSING_SUFFIXES = (".num_batches_tracked",)


class LoadReport(NamedTuple):
    """What :func:`load_pretrained` did, key by key (state-dict names of the *model*).

    ``source``: the file (or ``"<state dict>"``); ``loaded``: keys copied from the source; ``missing``: model
    keys the source lacks that are tolerated (only BatchNorm ``num_batches_tracked`` counters: any other
    missing key is an error); ``unexpected``: source keys the model does not have, all under
    ``ignore_unexpected`` (dropped heads such as ``classifier.*``); ``new``: model keys under ``new_modules``
    that the source lacks and that keep their own initialisation.
    """

    source: str
    loaded: list[str]
    missing: list[str]
    unexpected: list[str]
    new: list[str]

    def summary(self) -> str:
        """One line: counts, dropped and new modules (grouped by module prefix)."""
        parts = [f"loaded {len(self.loaded)} tensors from {self.source}"]
        if self.unexpected:
            parts.append(f"dropped {len(self.unexpected)} ({', '.join(_group(self.unexpected))})")
        if self.new:
            parts.append(f"new, own init {len(self.new)} ({', '.join(_group(self.new))})")
        if self.missing:
            parts.append(f"missing counters kept {len(self.missing)}")
        return "; ".join(parts)


def _group(keys: Iterable[str]) -> list[str]:
    """Module prefixes of ``keys`` in first-seen order: ``classifier.weight`` -> ``classifier``."""
    groups: dict[str, None] = {}
    for key in keys:
        groups[key.rpartition(".")[0] or key] = None
    return list(groups)


def _under(key: str, prefixes: Iterable[str]) -> bool:
    """True if ``key`` names a tensor of one of the modules ``prefixes`` (``"fc"`` or ``"fc."`` both match
    ``fc.0.weight``; ``"fc"`` does not match ``fcx.weight``); a prefix may also be a full key."""
    for prefix in prefixes:
        stem = prefix.rstrip(".")
        if key == stem or key.startswith(stem + "."):
            return True
    return False


def _first(keys: list[str], n: int = 8) -> str:
    shown = ", ".join(keys[:n])
    return shown + (f", ... ({len(keys) - n} more)" if len(keys) > n else "")


def read_checkpoint(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """The state dict stored in ``path``, on CPU, read with ``weights_only=True`` (no code from the file runs).

    Accepts a bare state dict or one wrapped as ``{"state_dict": ...}`` (torchreid's ``save_checkpoint``) or
    ``{"model": ...}``; strips a leading ``module.`` (``DataParallel`` / DDP) from every key.

    Raises:
        FileNotFoundError: no such file.
        ValueError: the file holds pickled objects other than tensors and plain containers, or its payload is
            not a mapping of names to tensors.
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint file not found: {path}")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        raise ValueError(
            f"{path} is not a plain checkpoint of tensors: torch.load(weights_only=True) refused it "
            f"({str(err).splitlines()[0]}). reidkit never unpickles arbitrary objects. If you trust the file, "
            "load it yourself with torch.load(path, weights_only=False), take its state dict and pass that "
            "mapping to load_pretrained (or re-save it with torch.save(state_dict, new_path))."
        ) from err
    state = payload
    if isinstance(state, Mapping) and not _all_tensors(state):
        for wrapper in ("state_dict", "model"):
            if isinstance(state.get(wrapper), Mapping):
                state = state[wrapper]
                break
    if not isinstance(state, Mapping) or not state:
        raise ValueError(
            f"{path} does not hold a state dict: got {type(payload).__name__}"
            + (f" with keys {_first([str(k) for k in payload])}" if isinstance(payload, Mapping) else "")
            + '; expected a mapping of parameter names to tensors, optionally under "state_dict" or "model"'
        )
    bad = [str(k) for k, v in state.items() if not isinstance(k, str) or not isinstance(v, torch.Tensor)]
    if bad:
        raise ValueError(
            f"{path} is not a state dict of tensors: the entries {_first(bad)} are not name -> tensor"
        )
    return {k.removeprefix("module."): v for k, v in state.items()}


def _all_tensors(mapping: Mapping) -> bool:
    return all(isinstance(v, torch.Tensor) for v in mapping.values())


def load_pretrained(
    model: nn.Module,
    source: str | os.PathLike | Mapping[str, torch.Tensor],
    *,
    ignore_unexpected: tuple[str, ...] = ("classifier.", "fc."),
    new_modules: tuple[str, ...] = (),
) -> LoadReport:
    """Load ``source`` (a checkpoint path or a state dict) into ``model`` by parameter name, checking everything.

    Args:
        model: the module to fill; its keys are the reference.
        source: a file read by :func:`read_checkpoint`, or a state dict (a leading ``module.`` is stripped).
        ignore_unexpected: module prefixes of source keys the model is allowed to lack (heads the backbone
            drops, e.g. torchreid's ``fc`` embedding and ``classifier``); they are reported as ``unexpected``.
        new_modules: module prefixes of model keys the source is allowed to lack (modules added to a
            pretrained backbone: attention, IBN); they keep their own initialisation and are reported as ``new``.

    Returns:
        A :class:`LoadReport`; its one-line summary is logged at INFO level.

    Raises:
        ValueError: a shape mismatch (names the key and both shapes), a missing model key outside
            ``new_modules`` or an unexpected source key outside ``ignore_unexpected`` (names the source and the
            first keys). Nothing is copied into the model when any check fails.
    """
    if isinstance(source, Mapping):
        name = "<state dict>"
        state = {str(k).removeprefix("module."): v for k, v in source.items()}
    else:
        name = str(Path(source).expanduser())
        state = read_checkpoint(source)
    target = model.state_dict()

    mismatched = [
        f"{k}: checkpoint {tuple(v.shape)} vs model {tuple(target[k].shape)}"
        for k, v in state.items()
        if k in target and tuple(v.shape) != tuple(target[k].shape)
    ]
    if mismatched:
        raise ValueError(f"shape mismatch loading {name}: {_first(mismatched, 5)}")

    absent = [k for k in target if k not in state]
    new = [k for k in absent if _under(k, new_modules)]
    missing = [k for k in absent if k not in new and k.endswith(_TOLERATED_MISSING_SUFFIXES)]
    fatal_missing = [k for k in absent if k not in new and k not in missing]
    if fatal_missing:
        raise ValueError(
            f"{name} lacks {len(fatal_missing)} of the model's {len(target)} keys: {_first(fatal_missing)}. "
            "Wrong architecture or width for this file? (modules deliberately added to a pretrained "
            "backbone must be declared with new_modules=...)"
        )
    unexpected = [k for k in state if k not in target]
    fatal_unexpected = [k for k in unexpected if not _under(k, ignore_unexpected)]
    if fatal_unexpected:
        raise ValueError(
            f"{name} has {len(fatal_unexpected)} keys the model does not: {_first(fatal_unexpected)}. "
            f"Wrong architecture for this file? (only keys under {list(ignore_unexpected)} are dropped)"
        )

    loaded = [k for k in target if k in state]
    # A complete state dict (checkpoint values where present, the model's own otherwise) loaded strictly:
    # every key is accounted for above, so strict=True cannot fail on names.
    merged = dict(target)
    merged.update({k: state[k] for k in loaded})
    model.load_state_dict(merged, strict=True)

    report = LoadReport(source=name, loaded=loaded, missing=missing, unexpected=unexpected, new=new)
    logger.info(report.summary())
    return report


def weights_dir() -> Path:
    """The folder pretrained files are looked up in and downloaded to: ``$REIDKIT_WEIGHTS`` if set, else
    ``~/.cache/reidkit/weights`` (not created here)."""
    env = os.environ.get(WEIGHTS_ENV)
    return Path(env).expanduser() if env else DEFAULT_WEIGHTS_DIR.expanduser()


def resolve_weights(filename: str, url: str | None = None) -> Path:
    """The local path of the pretrained file ``filename``, downloading it from ``url`` if it is not there yet.

    Looks for ``weights_dir() / filename``. If absent and ``url`` is given, downloads to a temporary name in the
    same folder and renames it when complete (an interrupted download never leaves a half file under the
    final name). Any failure, or a web page instead of a checkpoint (Google Drive's "can't scan this file"
    page), raises :class:`FileNotFoundError` saying which file to put in which folder and where to get it.
    """
    folder = weights_dir()
    path = folder / filename
    if path.is_file():
        return path
    by_hand = (
        f"put the file {filename!r} in {folder} by hand (or point ${WEIGHTS_ENV} at the folder that holds it)"
        + (f"; get it from {url}" if url else "")
    )
    if url is None:
        raise FileNotFoundError(f"pretrained weights {filename!r} not found in {folder}: {by_hand}")
    folder.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".part")
    logger.info("downloading %s to %s", url, path)
    try:
        download_url_to_file(url, str(partial), progress=False)
        _check_not_html(partial)
    except (OSError, RuntimeError, ValueError) as err:  # URLError/HTTPError/timeouts are OSError
        partial.unlink(missing_ok=True)
        raise FileNotFoundError(f"could not download {filename!r} from {url} ({err}): {by_hand}") from err
    partial.replace(path)
    return path


def _check_not_html(path: Path) -> None:
    head = path.read_bytes()[:512].lstrip().lower()
    if head.startswith((b"<!doctype", b"<html")):
        raise ValueError("the server sent a web page, not a checkpoint")
