"""Log sinks: the per-epoch metrics table, the fan-out, rank-0-only logging and the wandb logger."""
from __future__ import annotations

import io
import sys
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from reidkit.engine.loggers import (
    LogSinks,
    MetricsTable,
    WandbLogger,
    build_loggers,
    format_metrics_table,
    wandb_metrics,
)
from reidkit.engine.run_log import RunLog, read_run_log

LOSS_1 = {"ce": 6.12346, "ce_weighted": 6.12346, "triplet": 0.3, "triplet_weighted": 0.15, "total": 6.27346}
LOSS_2 = {"ce": 5.0, "ce_weighted": 5.0, "triplet": 0.25, "triplet_weighted": 0.125, "total": 5.125}
LOSS_3 = {"ce": 4.5, "ce_weighted": 4.5, "triplet": 0.2, "triplet_weighted": 0.1, "total": 4.6}


def run_records() -> list[dict[str, Any]]:
    """A 3-epoch run as the trainer and run.py write it: validation after epochs 2 and 3, then the test split."""
    return [
        {"kind": "step", "epoch": 1, "step": 2, "lr": [3.5e-4, 3.5e-5], "loss": LOSS_1, "grad_norm": 1.5},
        {"kind": "epoch", "epoch": 1, "step": 4, "lr": [3.5e-4, 3.5e-5], "loss": LOSS_1, "frozen": True,
         "seconds": 12.34},
        {"kind": "step", "epoch": 2, "step": 6, "lr": [3.5e-4, 3.5e-5], "loss": LOSS_2, "grad_norm": 1.25},
        {"kind": "epoch", "epoch": 2, "step": 8, "lr": [3.5e-4, 3.5e-5], "loss": LOSS_2, "frozen": False,
         "seconds": 11.0},
        {"kind": "eval", "epoch": 2, "step": 8, "split": "validation", "mAP": 0.51234, "mINP": 0.2, "rank1": 0.6,
         "rank5": 0.8, "rank10": 0.9},
        {"kind": "epoch", "epoch": 3, "step": 12, "lr": [3.5e-5, 3.5e-6], "loss": LOSS_3, "frozen": False,
         "seconds": 10.96},
        {"kind": "eval", "epoch": 3, "step": 12, "split": "validation", "mAP": 0.6, "mINP": 0.25, "rank1": 0.7,
         "rank5": 0.85, "rank10": 0.95},
        {"kind": "test", "epoch": 3, "step": 12, "split": "test", "mAP": 0.7004, "mINP": 0.3, "rank1": 0.8,
         "rank5": 0.9, "rank10": 0.95},
    ]


GOLDEN = """\
epoch        lr        ce   triplet     total    mAP  rank-1
    1  3.50e-04    6.1235    0.3000    6.2735      -       -
    2  3.50e-04    5.0000    0.2500    5.1250  0.512   0.600
    3  3.50e-05    4.5000    0.2000    4.6000  0.600   0.700
test  mAP 0.700  mINP 0.300  rank-1 0.800  rank-5 0.900  rank-10 0.950"""

GOLDEN_TIMED = """\
epoch        lr        ce   triplet     total    mAP  rank-1     time
    1  3.50e-04    6.1235    0.3000    6.2735      -       -    12.3s
    2  3.50e-04    5.0000    0.2500    5.1250  0.512   0.600    11.0s
    3  3.50e-05    4.5000    0.2000    4.6000  0.600   0.700    11.0s
test  mAP 0.700  mINP 0.300  rank-1 0.800  rank-5 0.900  rank-10 0.950"""


# ----------------------------------------------------------------------------------------------- the table


def test_format_metrics_table_is_the_golden_text() -> None:
    assert format_metrics_table(run_records()) == GOLDEN


def test_format_metrics_table_time_column() -> None:
    assert format_metrics_table(run_records(), show_time=True) == GOLDEN_TIMED


def test_format_metrics_table_reads_a_run_log_round_trip(tmp_path: Path) -> None:
    with RunLog(tmp_path / "log.jsonl") as log:
        for record in run_records():
            log.write(record)
    assert format_metrics_table(read_run_log(tmp_path / "log.jsonl")) == GOLDEN


def test_table_holds_an_epoch_row_until_its_evaluation_or_the_next_record() -> None:
    stream = io.StringIO()
    table = MetricsTable(stream)
    records = run_records()
    table.write(records[0])  # step: nothing to print
    assert stream.getvalue() == ""
    table.write(records[1])  # epoch 1 is held: an evaluation may follow
    assert stream.getvalue() == ""
    table.write(records[2])  # epoch 2's first step: epoch 1 had no evaluation
    assert stream.getvalue().splitlines() == GOLDEN.splitlines()[:2]
    table.write(records[3])
    assert len(stream.getvalue().splitlines()) == 2
    table.write(records[4])  # epoch 2's evaluation completes its row at once
    assert stream.getvalue().splitlines() == GOLDEN.splitlines()[:3]
    table.write(records[5])
    table.close()  # no evaluation came: close prints the held row with dashes
    assert stream.getvalue().splitlines()[3] == "    3  3.50e-05    4.5000    0.2000    4.6000      -       -"
    table.close()  # idempotent
    assert len(stream.getvalue().splitlines()) == 4


def test_evaluation_of_another_epoch_gets_its_own_row() -> None:
    epoch = {"kind": "epoch", "epoch": 4, "step": 16, "lr": [0.01], "loss": {"ce": 1.0, "total": 1.0},
             "seconds": 1.0}
    other = {"kind": "eval", "epoch": 3, "step": 16, "split": "validation", "mAP": 0.25, "rank1": 0.5}
    assert format_metrics_table([epoch, other]) == (
        "epoch        lr        ce     total    mAP  rank-1\n"
        "    4  1.00e-02    1.0000    1.0000      -       -\n"
        "    3         -         -         -  0.250   0.500")


def test_header_repeats_when_the_loss_terms_change_and_odd_values_are_marked() -> None:
    records = [
        {"kind": "epoch", "epoch": 1, "step": 1, "lr": [0.1], "loss": {"ce": 2.0, "total": 2.0}},
        {"kind": "resume", "epoch": 2, "step": 1},
        {"kind": "epoch", "epoch": 2, "step": 2, "lr": [], "loss": {"center": None, "total": 3.0}},
        {"kind": "test", "epoch": 2, "step": 2, "split": "test", "mAP": 0.5, "rank1": 0.75},
    ]
    assert format_metrics_table(records) == (
        "epoch        lr        ce     total    mAP  rank-1\n"
        "    1  1.00e-01    2.0000    2.0000      -       -\n"
        "resumed at step 1\n"
        "epoch        lr    center     total    mAP  rank-1\n"
        "    2         -       nan    3.0000      -       -\n"
        "test  mAP 0.500  rank-1 0.750")


def test_table_prints_to_the_current_stdout_by_default(capsys: pytest.CaptureFixture[str]) -> None:
    table = MetricsTable()
    for record in run_records():
        table.write(record)
    table.close()
    assert capsys.readouterr().out == GOLDEN + "\n"


# ---------------------------------------------------------------------------------------------- the fan-out


class ListSink:
    """Records what it is given; optionally fails on close."""

    def __init__(self, fail_on_close: Exception | None = None) -> None:
        self.records: list[dict[str, Any]] = []
        self.closed = 0
        self.fail_on_close = fail_on_close

    def write(self, record: dict[str, Any]) -> None:
        self.records.append(record)

    def close(self) -> None:
        self.closed += 1
        if self.fail_on_close is not None:
            raise self.fail_on_close


def test_sinks_write_every_record_to_every_sink() -> None:
    first, second = ListSink(), ListSink()
    sinks = LogSinks([first, second])
    for record in run_records():
        sinks.write(record)
    assert first.records == run_records() and second.records == run_records()


def test_close_closes_every_sink_even_when_one_raises() -> None:
    error = OSError("disk full")
    first, failing, last = ListSink(), ListSink(fail_on_close=error), ListSink()
    with pytest.raises(OSError) as caught:
        LogSinks([first, failing, last]).close()
    assert caught.value is error
    assert (first.closed, failing.closed, last.closed) == (1, 1, 1)


def test_close_names_every_failing_sink() -> None:
    first, second = ListSink(fail_on_close=OSError("a")), ListSink(fail_on_close=ValueError("b"))
    with pytest.raises(RuntimeError, match=r"2 log sinks failed to close: ListSink: OSError\('a'\); "
                                           r"ListSink: ValueError\('b'\)") as caught:
        LogSinks([first, second]).close()
    assert isinstance(caught.value.__cause__, OSError)
    assert (first.closed, second.closed) == (1, 1)


def test_disabled_sinks_drop_records_but_close() -> None:
    sink = ListSink()
    with LogSinks([sink], enabled=False) as sinks:
        sinks.write(run_records()[0])
    assert sink.records == [] and sink.closed == 1


# ---------------------------------------------------------------------------------------------- the builder


def log_config(**log: Any) -> dict[str, Any]:
    """A config with the ``log`` section of the schema's defaults (no ``table``/``wandb_name`` keys) plus ``log``."""
    base = {"wandb_mode": "disabled", "wandb_project": "reidkit", "every_n": 50, "jsonl": True, "progress": True}
    return {"train": {"epochs": 3}, "log": {**base, **log}}


def test_rank_zero_writes_the_run_log_and_prints_the_table(tmp_path: Path,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    run_log = RunLog(tmp_path / "log.jsonl")
    sinks = build_loggers(log_config(), tmp_path, run_log)
    assert [type(s) for s in sinks.sinks] == [RunLog, MetricsTable]
    for record in run_records():
        sinks.write(record)
    sinks.close()
    assert read_run_log(tmp_path / "log.jsonl") == run_records()
    assert capsys.readouterr().out == GOLDEN + "\n"
    with pytest.raises(ValueError, match="closed"):
        run_log.write({"kind": "step"})
    assert not (tmp_path / "wandb").exists()


def test_table_can_be_turned_off(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    sinks = build_loggers(log_config(table=False, wandb_name=None), tmp_path, None)
    assert sinks.sinks == []
    for record in run_records():
        sinks.write(record)
    sinks.close()
    assert capsys.readouterr().out == ""


def test_other_ranks_write_nothing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run_log = RunLog(tmp_path / "log.jsonl")
    sinks = build_loggers(log_config(wandb_mode="offline"), tmp_path / "out", run_log, rank=1)
    for record in run_records():
        sinks.write(record)
    sinks.close()
    assert (tmp_path / "log.jsonl").read_text() == ""
    assert capsys.readouterr().out == ""
    assert not (tmp_path / "out").exists()  # no wandb run either
    with pytest.raises(ValueError, match="closed"):
        run_log.write({"kind": "step"})


@pytest.mark.parametrize("rank", [-1, 1.0, True])
def test_bad_rank_is_an_error(tmp_path: Path, rank: Any) -> None:
    with pytest.raises(ValueError, match=f"rank must be an int >= 0, got {rank!r}"):
        build_loggers(log_config(), tmp_path, None, rank=rank)


def test_unknown_wandb_mode_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="log.wandb_mode must be one of disabled, offline, online; got 'dryrun'"):
        build_loggers(log_config(wandb_mode="dryrun"), tmp_path, None)


# ---------------------------------------------------------------------------------------------------- wandb


def test_wandb_metrics_of_each_kind() -> None:
    step, epoch, _, _, val, _, _, test = run_records()
    assert wandb_metrics(step) == {
        "train/loss/ce": 6.12346, "train/loss/ce_weighted": 6.12346, "train/loss/triplet": 0.3,
        "train/loss/triplet_weighted": 0.15, "train/loss/total": 6.27346, "train/lr": 3.5e-4,
        "train/lr_group1": 3.5e-5, "train/grad_norm": 1.5, "epoch": 1}
    assert wandb_metrics(epoch) == {
        "epoch/loss/ce": 6.12346, "epoch/loss/ce_weighted": 6.12346, "epoch/loss/triplet": 0.3,
        "epoch/loss/triplet_weighted": 0.15, "epoch/loss/total": 6.27346, "epoch/seconds": 12.34,
        "epoch/frozen": 1.0, "epoch": 1}
    assert wandb_metrics(val) == {"val/mAP": 0.51234, "val/mINP": 0.2, "val/rank1": 0.6, "val/rank5": 0.8,
                                  "val/rank10": 0.9, "epoch": 2}
    assert wandb_metrics(test) == {"test/mAP": 0.7004, "test/mINP": 0.3, "test/rank1": 0.8, "test/rank5": 0.9,
                                   "test/rank10": 0.95, "epoch": 3}
    assert wandb_metrics({"kind": "resume", "epoch": 2, "step": 8, "checkpoint": "last.pt"}) == {}


def test_wandb_metrics_leave_out_non_finite_values() -> None:
    record = {"kind": "step", "epoch": 1, "step": 1, "lr": [0.1], "loss": {"ce": None, "total": 2.0},
              "grad_norm": None}
    assert wandb_metrics(record) == {"train/loss/total": 2.0, "train/lr": 0.1, "epoch": 1}


class FakeRun:
    def __init__(self) -> None:
        self.logged: list[tuple[dict[str, Any], int]] = []
        self.finished = 0

    def log(self, values: dict[str, Any], step: int) -> None:
        self.logged.append((values, step))

    def finish(self) -> None:
        self.finished += 1


@pytest.fixture
def fake_wandb(monkeypatch: pytest.MonkeyPatch) -> types.SimpleNamespace:
    """A stand-in ``wandb`` module recording ``init`` arguments and the run's calls."""
    state = types.SimpleNamespace(init_kwargs=None, run=FakeRun())

    def init(**kwargs: Any) -> FakeRun:
        state.init_kwargs = kwargs
        return state.run

    monkeypatch.setitem(sys.modules, "wandb", types.SimpleNamespace(init=init))
    return state


def test_wandb_logger_passes_the_mode_and_logs_each_record_at_its_step(
        tmp_path: Path, fake_wandb: types.SimpleNamespace) -> None:
    cfg = log_config(wandb_mode="online", wandb_name="r50-bot")
    cfg["data"] = {"root": tmp_path / "data"}  # a Path in the config is stored as text
    sinks = build_loggers(cfg, tmp_path / "out", None)
    assert [type(s) for s in sinks.sinks] == [WandbLogger, MetricsTable]
    sinks.sinks.pop()  # keep the table out of this test's output
    assert fake_wandb.init_kwargs == {
        "project": "reidkit", "mode": "online", "dir": str(tmp_path / "out"), "name": "r50-bot",
        "reinit": "finish_previous",
        "config": {**log_config(wandb_mode="online", wandb_name="r50-bot"), "data": {"root": str(tmp_path / "data")}}}
    assert (tmp_path / "out").is_dir()
    records = [*run_records(), {"kind": "resume", "epoch": 3, "step": 12}]
    for record in records:
        sinks.write(record)
    sinks.close()
    sinks.close()
    assert fake_wandb.run.logged == [(wandb_metrics(r), r["step"]) for r in records[:-1]]
    assert [step for _, step in fake_wandb.run.logged] == [2, 4, 6, 8, 8, 12, 12, 12]
    assert fake_wandb.run.finished == 1


def test_wandb_logger_needs_a_step(tmp_path: Path, fake_wandb: types.SimpleNamespace) -> None:
    logger = WandbLogger("p", "offline", {}, tmp_path)
    with pytest.raises(ValueError, match="a 'eval' record needs a 'step'"):
        logger.write({"kind": "eval", "epoch": 1, "mAP": 0.5})


def test_missing_wandb_is_an_error_unless_disabled(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "wandb", None)  # import wandb raises ImportError
    with pytest.raises(ImportError, match=r"log.wandb_mode='offline' needs the wandb package.*pip install wandb"):
        WandbLogger("p", "offline", {}, tmp_path / "out")
    with pytest.raises(ImportError, match="log.wandb_mode='online'"):
        build_loggers(log_config(wandb_mode="online"), tmp_path / "out", None)
    logger = WandbLogger("p", "disabled", {}, tmp_path / "out")
    logger.write(run_records()[0])
    logger.close()
    assert logger.run is None and not (tmp_path / "out").exists()


def test_wandb_logger_rejects_an_unknown_mode(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="log.wandb_mode must be one of disabled, offline, online; got 'Offline'"):
        WandbLogger("p", "Offline", {}, tmp_path)


@pytest.fixture
def isolated_wandb(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """Real wandb with its caches and home under ``tmp_path`` and no banners; the wandb service process is
    restarted before and after so it runs with (and does not keep) these variables."""
    wandb = pytest.importorskip("wandb")
    wandb.teardown()
    home = tmp_path / "home"
    for name, value in {"HOME": home, "XDG_CACHE_HOME": home / ".cache", "XDG_CONFIG_HOME": home / ".config",
                        "WANDB_CACHE_DIR": home / "wandb_cache", "WANDB_CONFIG_DIR": home / "wandb_config",
                        "WANDB_DATA_DIR": home / "wandb_data"}.items():
        monkeypatch.setenv(name, str(value))
    monkeypatch.setenv("WANDB_SILENT", "true")
    yield tmp_path
    wandb.teardown()


def test_real_wandb_disabled_accepts_records_and_writes_nothing(isolated_wandb: Path) -> None:
    out = isolated_wandb / "out"
    logger = WandbLogger("reidkit-tests", "disabled", log_config(), out)
    assert logger.run is not None  # wandb's no-op run
    for record in run_records():
        logger.write(record)
    logger.close()
    assert logger.run is None
    assert list(out.iterdir()) == []


def test_real_wandb_offline_writes_its_run_under_out_dir(isolated_wandb: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WANDB_MODE", "disabled")  # the config's mode wins over the environment
    out = isolated_wandb / "out"
    sinks = build_loggers(log_config(wandb_mode="offline", table=False, wandb_name="offline-test"), out, None)
    for record in run_records():
        sinks.write(record)
    sinks.close()
    sys.modules["wandb"].teardown()  # finish() returns before wandb's service has written the whole run file
    runs = list((out / "wandb").glob("offline-run-*"))
    assert len(runs) == 1
    run_files = list(runs[0].glob("run-*.wandb"))
    assert len(run_files) == 1
    data = run_files[0].read_bytes()
    for key in (b"train/loss/total", b"epoch/loss/ce", b"val/mAP", b"test/rank1", b"offline-test"):
        assert key in data
