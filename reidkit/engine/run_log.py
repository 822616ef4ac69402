"""JSON-lines training log: one JSON object per line, flushed after every record, read back by notebooks.

Records written by :class:`~reidkit.engine.trainer.Trainer` carry ``kind`` (``"step"``, ``"epoch"``, ``"eval"``,
``"resume"``), ``epoch`` (1-based) and ``step`` (optimiser steps done), plus ``lr`` (one value per parameter group)
and the loss terms of :class:`~reidkit.losses.LossOutput` under ``loss``.

A resumed run appends to the same file after a ``{"kind": "resume", "step": s}`` record; :func:`read_run_log`
then drops the records of the interrupted run with ``step > s`` (they were redone), so a plot shows one history.
"""
from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType
from typing import IO, Any

import numpy as np
import torch

__all__ = ["RunLog", "read_run_log"]


def _plain(value: Any) -> Any:
    """Tensors, NumPy values and containers as JSON types; non-finite floats as ``None`` (strict JSON)."""
    if isinstance(value, torch.Tensor):
        value = value.detach().cpu()
        value = value.item() if value.numel() == 1 else value.tolist()
    elif isinstance(value, np.ndarray):
        value = value.tolist()
    elif isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    raise TypeError(f"cannot log a value of type {type(value).__name__}: {value!r}")


class RunLog:
    """Append JSON records to ``path`` (created with its folder), one line each, flushed at once."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._handle: IO[str] | None = open(self.path, "a", encoding="utf-8")  # noqa: SIM115 (closed in close())

    def write(self, record: Mapping[str, Any]) -> None:
        """Write one record (tensors become numbers/lists; NaN/Inf become ``null``) and flush it."""
        if self._handle is None:
            raise ValueError(f"RunLog {self.path} is closed")
        self._handle.write(json.dumps(_plain(record), allow_nan=False) + "\n")
        self._handle.flush()

    def close(self) -> None:
        """Close the file (idempotent)."""
        if self._handle is not None:
            self._handle.close()
            self._handle = None

    def __enter__(self) -> RunLog:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()


def read_run_log(path: str | os.PathLike[str], kind: str | None = None,
                 drop_superseded: bool = True) -> list[dict[str, Any]]:
    """The records of a JSON-lines log, in file order.

    Args:
        path: the ``log.jsonl`` of a run.
        kind: keep only records of this ``kind`` (e.g. ``"step"`` or ``"epoch"``); ``None``: all.
        drop_superseded: at each ``"resume"`` record with step ``s``, drop the earlier records with ``step > s``.

    A truncated last line (a crash mid-write) is ignored; any other malformed line is a ``ValueError`` naming it.
    For a table: ``pandas.DataFrame(read_run_log(path, "epoch"))``.
    """
    lines = Path(path).read_text(encoding="utf-8").splitlines()
    records: list[dict[str, Any]] = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as err:
            if number == len(lines):
                break
            raise ValueError(f"{path}:{number}: not a JSON record: {err}") from err
        if drop_superseded and record.get("kind") == "resume":
            resumed = int(record["step"])
            records = [r for r in records if r.get("step") is None or int(r["step"]) <= resumed]
        records.append(record)
    if kind is not None:
        records = [r for r in records if r.get("kind") == kind]
    return records
