"""Where training records go (issue 5 §3 "Logging"): the JSON-lines run log, a per-epoch table, and wandb.

The trainer writes every record (``kind`` ``"step"``, ``"epoch"``, ``"eval"``, ``"test"``, ``"resume"``; the keys
are described in :mod:`reidkit.engine.run_log`) to one :class:`LogSinks`, which hands it to each sink:

- :class:`~reidkit.engine.run_log.RunLog`: ``out_dir/log.jsonl``, the full history (notebooks read it back);
- :class:`MetricsTable`: one fixed-width console row per epoch, with that epoch's validation mAP and rank-1;
- :class:`WandbLogger`: the same numbers under ``train/…``, ``epoch/…``, ``val/…``, ``test/…`` keys at the
  record's optimiser step. wandb is imported only when a wandb run is asked for (it is an optional extra).

Only rank 0 of a distributed run logs: :func:`build_loggers` gives every other rank a :class:`LogSinks` that
drops every record.
"""
from __future__ import annotations

import io
import sys
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, Protocol, TextIO

from reidkit.engine.run_log import RunLog, _plain

__all__ = ["WANDB_MODES", "LogSink", "LogSinks", "MetricsTable", "WandbLogger", "build_loggers",
           "format_metrics_table", "wandb_metrics"]

WANDB_MODES: tuple[str, ...] = ("disabled", "offline", "online")


class LogSink(Protocol):
    """Anything that takes training records: ``write(record)`` for each, ``close()`` once at the end."""

    def write(self, record: Mapping[str, Any]) -> None: ...

    def close(self) -> None: ...


class LogSinks:
    """Fan-out: ``write`` hands each record to every sink in order; ``close`` closes every sink.

    Args:
        sinks: the sinks, written in this order (put the run log first: it is the record that must survive).
        enabled: ``False`` drops every record (ranks other than 0); ``close`` still closes the sinks.

    ``close`` closes every sink even when some raise, then re-raises the error (several errors: one
    ``RuntimeError`` naming them all, chained to the first).
    """

    def __init__(self, sinks: Sequence[LogSink] = (), enabled: bool = True) -> None:
        self.sinks: list[LogSink] = list(sinks)
        self.enabled = bool(enabled)

    def write(self, record: Mapping[str, Any]) -> None:
        """Give ``record`` to every sink (nothing when disabled)."""
        if not self.enabled:
            return
        for sink in self.sinks:
            sink.write(record)

    def close(self) -> None:
        """Close every sink; raise afterwards if any close raised."""
        errors: list[tuple[LogSink, Exception]] = []
        for sink in self.sinks:
            try:
                sink.close()
            except Exception as err:  # noqa: BLE001 - collected and re-raised below, after the other sinks
                errors.append((sink, err))
        if len(errors) == 1:
            raise errors[0][1]
        if errors:
            names = "; ".join(f"{type(sink).__name__}: {err!r}" for sink, err in errors)
            raise RuntimeError(f"{len(errors)} log sinks failed to close: {names}") from errors[0][1]

    def __enter__(self) -> LogSinks:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()


# ---------------------------------------------------------------------------------------------- metrics table

_MISSING = object()


def _cell(value: Any, spec: str) -> str:
    """A number formatted with ``spec``; ``-`` when absent; ``nan`` for ``None`` (a non-finite value in the log)."""
    if value is _MISSING:
        return "-"
    if value is None:
        return "nan"
    return format(float(value), spec)


def _loss_columns(loss: Mapping[str, Any]) -> tuple[str, ...]:
    """The table's loss columns: the unweighted terms in record order, then ``total`` (``*_weighted`` left out)."""
    terms = [key for key in loss if key != "total" and not key.endswith("_weighted")]
    return (*terms, "total") if "total" in loss else tuple(terms)


class MetricsTable:
    """A console table with one fixed-width row per epoch, for a person watching a run.

    Columns: ``epoch``, ``lr`` (the first parameter group's), each unweighted loss term and ``total`` (the epoch
    means; ``*_weighted`` terms are in ``log.jsonl``), the validation ``mAP`` and ``rank-1`` (``-`` for an epoch
    without evaluation) and, with ``show_time``, the epoch's seconds. The header is printed before the first
    row, and again if the loss terms change (a resumed run with another loss). A ``"test"`` record prints a
    final ``test`` line with every metric; a ``"resume"`` record a ``resumed at step s`` line.

    The trainer writes an epoch's ``"eval"`` record after its ``"epoch"`` record, so the row of an epoch is held
    back until the next record that is not its evaluation (the next epoch's first step or epoch record, a test
    record, or :meth:`close`). ``"step"`` records only release the held row.

    Args:
        stream: where rows go; ``None``: ``sys.stdout`` at the time of each print (notebook cells, ``capsys``).
        show_time: add the epoch's ``seconds`` column (off for output that must be reproducible).
    """

    def __init__(self, stream: TextIO | None = None, show_time: bool = False) -> None:
        self.stream = stream
        self.show_time = bool(show_time)
        self._pending: dict[str, Any] | None = None
        self._terms: tuple[str, ...] | None = None

    def write(self, record: Mapping[str, Any]) -> None:
        """Take one record; print the rows it completes."""
        kind = record.get("kind")
        pending = self._pending
        if kind == "eval" and pending is not None and pending["epoch"] == record.get("epoch"):
            pending["eval"] = dict(record)
            self._flush()
            return
        self._flush()
        if kind == "epoch":
            self._pending = {"epoch": record.get("epoch"), "lr": list(record.get("lr") or []),
                             "loss": dict(record.get("loss") or {}), "seconds": record.get("seconds", _MISSING)}
        elif kind == "eval":  # an evaluation without its epoch row (e.g. the epoch was not logged here)
            self._print_row({"epoch": record.get("epoch"), "lr": [], "loss": None, "seconds": _MISSING,
                             "eval": dict(record)})
        elif kind == "test":
            self._print(_test_line(record))
        elif kind == "resume":
            self._print(f"resumed at step {record.get('step')}")

    def close(self) -> None:
        """Print the held row, if any (idempotent; the stream is left open)."""
        self._flush()

    def _flush(self) -> None:
        if self._pending is not None:
            row, self._pending = self._pending, None
            self._print_row(row)

    def _print_row(self, row: Mapping[str, Any]) -> None:
        terms = _loss_columns(row["loss"]) if row["loss"] is not None else (self._terms or ())
        if terms != self._terms:
            self._terms = terms
            self._print(self._line(["epoch", "lr", *terms, "mAP", "rank-1", "time"]))
        loss = row["loss"] or {}
        metrics = row.get("eval") or {}
        seconds = row["seconds"]
        cells = [str(row["epoch"]), _cell(row["lr"][0] if row["lr"] else _MISSING, ".2e"),
                 *(_cell(loss.get(term, _MISSING), ".4f") for term in terms),
                 _cell(metrics.get("mAP", _MISSING), ".3f"), _cell(metrics.get("rank1", _MISSING), ".3f"),
                 _cell(seconds, ".1f") + ("" if seconds is _MISSING or seconds is None else "s")]
        self._print(self._line(cells))

    def _line(self, cells: list[str]) -> str:
        """Cells right-aligned to the column widths, two spaces apart (the time column only with show_time)."""
        widths = [5, 8, *(max(len(term), 8) for term in self._terms or ()), 5, 6, 7]
        if not self.show_time:
            cells, widths = cells[:-1], widths[:-1]
        return "  ".join(cell.rjust(width) for cell, width in zip(cells, widths, strict=True))

    def _print(self, line: str) -> None:
        print(line, file=self.stream if self.stream is not None else sys.stdout, flush=True)


def _test_line(record: Mapping[str, Any]) -> str:
    """``test  mAP 0.712  mINP 0.301  rank-1 0.850 ...``: mAP, mINP and each rank-k of a test record, 3 decimals."""
    ranks = sorted((int(key[4:]), key) for key in record if key.startswith("rank") and key[4:].isdigit())
    names = [(key, key) for key in ("mAP", "mINP") if key in record] + [(key, f"rank-{k}") for k, key in ranks]
    return "  ".join(["test", *(f"{name} {_cell(record[key], '.3f')}" for key, name in names)])


def format_metrics_table(records: Iterable[Mapping[str, Any]], show_time: bool = False) -> str:
    """The :class:`MetricsTable` text of a list of records (e.g. ``read_run_log(path)``), without a final newline.

    Pure and deterministic (numbers rounded: lr ``.2e``, losses 4 decimals, metrics 3), so a notebook can print
    it under nbval. ``show_time`` adds the epoch seconds, which are not reproducible.
    """
    buffer = io.StringIO()
    table = MetricsTable(buffer, show_time=show_time)
    for record in records:
        table.write(record)
    table.close()
    return buffer.getvalue().rstrip("\n")


# ---------------------------------------------------------------------------------------------------- wandb


def _number(value: Any) -> float | None:
    value = _plain(value)
    return None if value is None or isinstance(value, bool) else float(value)


def wandb_metrics(record: Mapping[str, Any]) -> dict[str, float]:
    """The wandb values of one record (logged at the record's ``step``); ``{}`` for kinds without metrics.

    - ``"step"``: ``train/loss/<term>`` (every term, weighted ones too), ``train/lr`` (group 0),
      ``train/lr_group<i>`` (groups ``i >= 1``), ``train/grad_norm``, ``epoch``;
    - ``"epoch"``: ``epoch/loss/<term>`` (the epoch means), ``epoch/seconds``, ``epoch/frozen`` (0/1), ``epoch``;
    - ``"eval"`` / ``"test"``: ``val/<metric>`` / ``test/<metric>`` for mAP, mINP, rank1, ... and ``epoch``;
    - ``"resume"`` and other kinds: nothing.

    Values logged as ``None`` (non-finite numbers in the JSON log) are left out.
    """
    kind = record.get("kind")
    values: dict[str, float | None] = {}
    if kind == "step":
        values.update({f"train/loss/{term}": _number(v) for term, v in (record.get("loss") or {}).items()})
        for group, lr in enumerate(record.get("lr") or []):
            values["train/lr" if group == 0 else f"train/lr_group{group}"] = _number(lr)
        values["train/grad_norm"] = _number(record.get("grad_norm"))
    elif kind == "epoch":
        values.update({f"epoch/loss/{term}": _number(v) for term, v in (record.get("loss") or {}).items()})
        values["epoch/seconds"] = _number(record.get("seconds"))
        if "frozen" in record:
            values["epoch/frozen"] = float(bool(record["frozen"]))
    elif kind in ("eval", "test"):
        prefix = "val" if kind == "eval" else "test"
        values.update({f"{prefix}/{key}": _number(v) for key, v in record.items()
                       if key not in ("kind", "epoch", "step", "split")})
    else:
        return {}
    if record.get("epoch") is not None:
        values["epoch"] = int(record["epoch"])
    return {key: value for key, value in values.items() if value is not None}


def _import_wandb(mode: str) -> Any | None:
    """The ``wandb`` module; ``None`` in ``disabled`` mode when it is not installed; else a clear error."""
    try:
        import wandb
    except ImportError as err:
        if mode == "disabled":
            return None
        raise ImportError(f"log.wandb_mode={mode!r} needs the wandb package, which is not installed: "
                          "pip install wandb (or the notebooks extra: pip install -e \".[notebooks]\"), "
                          "or set log.wandb_mode=disabled") from err
    return wandb


class WandbLogger:
    """A wandb run fed with training records (see :func:`wandb_metrics` for the keys).

    Args:
        project: the wandb project (``log.wandb_project``).
        mode: ``"disabled"`` (no network, no files: every call a no-op), ``"offline"`` (run files under
            ``run_dir/wandb/``, upload later with ``wandb sync``) or ``"online"``; passed to ``wandb.init`` as is
            (``log.wandb_mode``), so the ``WANDB_MODE`` environment variable does not override it.
        config: the resolved run config, stored with the run.
        run_dir: the run's output folder; wandb writes its files under ``run_dir/wandb/``.
        name: the run's display name (``log.wandb_name``); ``None``: wandb picks one.

    A run still open in this process (a crashed earlier run) is finished first (``reinit="finish_previous"``).
    In ``disabled`` mode a missing wandb package is fine; in the other modes it is an ``ImportError`` saying how to
    install it.
    """

    def __init__(self, project: str, mode: str, config: Mapping[str, Any], run_dir: str | Path,
                 name: str | None = None) -> None:
        if mode not in WANDB_MODES:
            raise ValueError(f"log.wandb_mode must be one of {', '.join(WANDB_MODES)}; got {mode!r}")
        self.mode = mode
        wandb = _import_wandb(mode)
        self.run: Any | None = None
        if wandb is not None:
            run_dir = Path(run_dir)
            run_dir.mkdir(parents=True, exist_ok=True)
            self.run = wandb.init(project=project, mode=mode, config=_plain(dict(config)), dir=str(run_dir),
                                  name=name, reinit="finish_previous")

    def write(self, record: Mapping[str, Any]) -> None:
        """Log the record's metrics at its optimiser ``step`` (records without metrics are skipped)."""
        values = wandb_metrics(record)
        if not values or self.run is None:
            return
        if record.get("step") is None:
            raise ValueError(f"a {record.get('kind')!r} record needs a 'step' to be logged to wandb: {dict(record)!r}")
        self.run.log(values, step=int(record["step"]))

    def close(self) -> None:
        """Finish the wandb run (idempotent)."""
        if self.run is not None:
            run, self.run = self.run, None
            run.finish()


# -------------------------------------------------------------------------------------------------- builder


def build_loggers(cfg: Mapping[str, Any], out_dir: str | Path, run_log: RunLog | None,
                  rank: int = 0) -> LogSinks:
    """The sinks of a run from the config's ``log`` section.

    Rank 0: ``run_log`` (if given: the caller decides it from ``log.jsonl``), a :class:`MetricsTable` on stdout
    when ``log.table`` (default ``True``, no time column) and a :class:`WandbLogger` in ``out_dir`` unless
    ``log.wandb_mode`` is ``"disabled"`` (named ``log.wandb_name``, default ``None``). Other ranks: a
    :class:`LogSinks` that writes nothing and, on ``close``, closes ``run_log`` (pass ``None`` there rather than
    opening a log file on every rank).

    The returned :class:`LogSinks` owns ``run_log``: its ``close`` closes it.
    """
    if isinstance(rank, bool) or not isinstance(rank, int) or rank < 0:
        raise ValueError(f"rank must be an int >= 0, got {rank!r}")
    sinks: list[LogSink] = [run_log] if run_log is not None else []
    if rank != 0:
        return LogSinks(sinks, enabled=False)
    log = cfg["log"]
    mode = log["wandb_mode"]
    if mode not in WANDB_MODES:
        raise ValueError(f"log.wandb_mode must be one of {', '.join(WANDB_MODES)}; got {mode!r}")
    if mode != "disabled":
        sinks.append(WandbLogger(project=log["wandb_project"], mode=mode, config=cfg, run_dir=out_dir,
                                 name=log.get("wandb_name")))
    if log.get("table", True):
        sinks.append(MetricsTable())
    return LogSinks(sinks)
