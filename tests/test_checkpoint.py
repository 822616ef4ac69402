"""Checkpoint files: atomic writes, weights_only loads, RNG state capture/restore; the JSON-lines run log."""
from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import pytest
import torch

from reidkit.engine.checkpoint import capture_rng_state, load_checkpoint, restore_rng_state, save_checkpoint
from reidkit.engine.run_log import RunLog, read_run_log


def draws() -> tuple[float, float, torch.Tensor]:
    return random.random(), float(np.random.rand()), torch.rand(3)


def test_rng_state_roundtrip_through_weights_only_file(tmp_path: Path) -> None:
    random.seed(1)
    np.random.seed(2)
    torch.manual_seed(3)
    random.gauss(0, 1)  # a cached Gaussian in Python's state
    np.random.randn()
    path = save_checkpoint({"rng": capture_rng_state(), "w": torch.arange(4.0)}, tmp_path / "c.pt")
    expected = draws()
    state = load_checkpoint(path)  # torch.load(weights_only=True)
    restore_rng_state(state["rng"])
    got = draws()
    assert got[0] == expected[0] and got[1] == expected[1] and torch.equal(got[2], expected[2])
    assert torch.equal(state["w"], torch.arange(4.0))


def test_crash_mid_write_leaves_previous_checkpoint(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "last.pt"
    save_checkpoint({"step": 1, "w": torch.ones(3)}, path)
    real_save = torch.save

    def crash(obj: object, handle: object, *args: object, **kwargs: object) -> None:
        handle.write(b"PK\x03\x04 torn")  # type: ignore[attr-defined]  # some bytes, then the "crash"
        raise OSError("disk full (simulated)")

    monkeypatch.setattr(torch, "save", crash)
    with pytest.raises(OSError, match="simulated"):
        save_checkpoint({"step": 2, "w": torch.zeros(3)}, path)
    monkeypatch.setattr(torch, "save", real_save)
    state = load_checkpoint(path)
    assert state["step"] == 1 and torch.equal(state["w"], torch.ones(3))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.pt"]  # no temporary file left behind
    save_checkpoint({"step": 3}, path)  # a later write replaces it
    assert load_checkpoint(path)["step"] == 3


def test_load_errors(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="nope.pt"):
        load_checkpoint(tmp_path / "nope.pt")
    torch.save([1, 2], tmp_path / "list.pt")
    with pytest.raises(ValueError, match="not a reidkit checkpoint"):
        load_checkpoint(tmp_path / "list.pt")


def test_run_log_writes_flushed_json_lines_and_reader_drops_superseded(tmp_path: Path) -> None:
    path = tmp_path / "log.jsonl"
    log = RunLog(path)
    log.write({"kind": "step", "step": 1, "loss": {"total": torch.tensor(2.5)}, "lr": [0.1, np.float32(0.5)]})
    # flushed: readable before close
    assert json.loads(path.read_text().splitlines()[0]) == {"kind": "step", "step": 1, "loss": {"total": 2.5},
                                                            "lr": [0.1, 0.5]}
    log.write({"kind": "step", "step": 2, "loss": {"total": float("nan")}})
    log.write({"kind": "step", "step": 3})
    log.write({"kind": "resume", "step": 1})
    log.write({"kind": "step", "step": 2, "loss": {"total": 1.0}})
    log.close()
    with open(path, "a", encoding="utf-8") as handle:
        handle.write('{"kind": "step", "st')  # a crash mid-line
    assert read_run_log(path, "step", drop_superseded=False)[1]["loss"] == {"total": None}  # NaN -> null
    steps = read_run_log(path, "step")
    assert [r["step"] for r in steps] == [1, 2] and steps[1]["loss"] == {"total": 1.0}
    assert len(read_run_log(path, drop_superseded=False)) == 5
    with pytest.raises(ValueError, match="closed"):
        log.write({"step": 4})
    with RunLog(tmp_path / "other.jsonl") as other, pytest.raises(TypeError, match="cannot log"):
        other.write({"x": object()})
