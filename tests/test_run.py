"""``reidkit train`` end to end on SynthReID tiny: config → run → validation selection → test once → files."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import yaml

from reidkit.cli import main
from reidkit.config import load_config
from reidkit.engine.run import _loss_spec, resolve_data_root

SMALL = ["model.backbone=osnet_x0_25", "data.height=64", "data.width=32", "data.workers=0",
         "data.test_batch_size=64", "log.progress=false"]


@pytest.fixture(scope="module")
def first_run(synthreid_tiny: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One epoch of ``synth_quick`` (small backbone, 64×32) through the command line."""
    out = tmp_path_factory.mktemp("train") / "run"
    args = ["train", "--config", "synth_quick", f"data.root={synthreid_tiny}", *SMALL, "train.epochs=1",
            "--out", str(out)]
    assert main(args) == 0
    return out


def test_train_writes_config_metrics_and_checkpoints(first_run: Path, capsys: pytest.CaptureFixture[str]) -> None:
    for name in ("config.yaml", "metrics.json", "last.pt", "best.pt", "log.jsonl"):
        assert (first_run / name).stat().st_size > 0, name
    # the resolved config reads back to the same tree, overrides included
    cfg = load_config(first_run / "config.yaml")
    assert cfg["model"]["backbone"] == "osnet_x0_25" and cfg["data"]["height"] == 64
    assert yaml.safe_load((first_run / "config.yaml").read_text())["train"]["epochs"] == 1

    metrics = json.loads((first_run / "metrics.json").read_text())
    val, test = metrics["validation"], metrics["test"]
    assert val["split"] == "validation" and val["ids"] == 10 and val["best_epoch"] == 1
    assert [r["split"] for r in val["epochs"]] == ["validation"]
    assert test["split"] == "test" and metrics["test_selected"] is False and metrics["selection"] == "val"
    assert 0.0 < test["mINP"] <= test["mAP"] <= 1.0
    assert 0.0 <= test["rank1"] <= test["rank5"] <= test["rank10"] <= 1.0
    assert metrics["epochs"] == 1 and metrics["steps"] > 0
    assert Path(metrics["checkpoint"]).name == "best.pt"
    # the test split is evaluated once, at the end, and logged as such
    records = [json.loads(line) for line in (first_run / "log.jsonl").read_text().splitlines()]
    assert [r["split"] for r in records if r["kind"] == "test"] == ["test"]
    assert all(r["split"] == "validation" for r in records if r["kind"] == "eval")


def test_resume_continues_from_the_checkpoint(first_run: Path, synthreid_tiny: Path, tmp_path: Path) -> None:
    first = json.loads((first_run / "metrics.json").read_text())
    out = tmp_path / "resumed"
    args = ["train", "--config", "synth_quick", f"data.root={synthreid_tiny}", *SMALL, "train.epochs=2",
            "--resume", str(first_run / "last.pt"), "--out", str(out)]
    assert main(args) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["epochs"] == 2 and metrics["steps"] == 2 * first["steps"]
    assert metrics["resumed_from"] == str(first_run / "last.pt")
    records = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert records[0]["kind"] == "resume" and records[0]["epoch"] == 2
    assert [r["epoch"] for r in records if r["kind"] == "epoch"] == [2]  # epoch 1 is not trained again
    state = torch.load(out / "last.pt", map_location="cpu", weights_only=True)
    assert state["epoch"] == 3 and state["step"] == metrics["steps"]


def test_bad_override_is_one_line(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert main(["train", "--config", "synth_quick", "optim.name=lion", "--out", str(tmp_path / "x")]) == 1
    err = capsys.readouterr().err
    assert err.startswith("reidkit train: error: optim.name: invalid value 'lion'") and "adamw" in err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert not (tmp_path / "x").exists()

    assert main(["train", "--config", "synth_quick", "train.nope=1"]) == 1
    err = capsys.readouterr().err
    assert "train.nope" in err and "val_ids" in err and err.count("\n") == 1


def test_missing_root_and_bad_synthreid_root_are_one_line(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    missing = tmp_path / "nowhere"
    assert main(["train", "--config", "synth_quick", f"data.root={missing}", "--out", str(tmp_path / "o")]) == 1
    err = capsys.readouterr().err
    assert str(missing) in err and "synthreid:tiny" in err and err.count("\n") == 1
    with pytest.raises(ValueError, match="synthreid:PRESET"):
        resolve_data_root({"name": "synthreid", "root": "synthreid:huge"})
    with pytest.raises(ValueError, match="data.name=synthreid"):
        resolve_data_root({"name": "market1501", "root": "synthreid:tiny"})


def test_loss_params_reach_their_terms() -> None:
    cfg = load_config("bot_r50")
    spec = {t["key"]: t for t in _loss_spec(cfg["loss"])}
    assert spec["ce"]["epsilon"] == 0.1 and spec["triplet"]["margin"] == 0.3
    assert spec["center"]["weight"] == pytest.approx(5e-4)
    with pytest.raises(ValueError, match="loss.params"):
        _loss_spec({"spec": "ce", "params": {"triplet": {"margin": 0.3}}})


def test_resumed_run_ends_with_the_weights_of_an_uninterrupted_one(first_run: Path, synthreid_tiny: Path,
                                                                    tmp_path: Path) -> None:
    from reidkit.engine.run import train_from_config

    cfg = load_config("synth_quick", [f"data.root={synthreid_tiny}", *SMALL, "train.epochs=2"])
    train_from_config(cfg, out_dir=tmp_path / "straight")
    train_from_config(cfg, resume=first_run / "last.pt", out_dir=tmp_path / "resumed")
    straight = torch.load(tmp_path / "straight" / "last.pt", map_location="cpu", weights_only=True)["model"]
    resumed = torch.load(tmp_path / "resumed" / "last.pt", map_location="cpu", weights_only=True)["model"]
    assert straight.keys() == resumed.keys()
    for key, value in straight.items():
        assert torch.equal(value, resumed[key]), key


def test_config_reaches_eval_settings_center_optimizer_freeze_compile_and_loggers(
        synthreid_tiny: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import warnings

    from reidkit.engine import trainer as trainer_module
    from reidkit.engine.distributed import DistContext
    from reidkit.engine.loggers import LogSinks, MetricsTable
    from reidkit.engine.run import _build_log, build_run
    from reidkit.engine.run_log import RunLog
    from reidkit.engine.trainer import EvalSettings

    cfg = load_config("synth_quick", [f"data.root={synthreid_tiny}", *SMALL, "eval.flip=true", "eval.rerank=true",
                                      "loss.spec=ce + triplet + 0.0005*center", "train.freeze_iters=3",
                                      "train.compile=true", "train.compile_backend=eager",
                                      "train.cudnn_benchmark=false"])
    cudnn_calls: list[tuple[str, bool]] = []
    monkeypatch.setattr(trainer_module, "_configure_cudnn", lambda device, benchmark: cudnn_calls.append(
        (device.type, benchmark)))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # compile / freeze_iters are applied now: no "not applied" warning
        run = build_run(cfg, tmp_path / "run")
    assert cudnn_calls == [("cpu", False)]  # train.cudnn_benchmark with the run's device (the flag: test_trainer)
    trainer = run.trainer
    assert trainer.eval_settings == EvalSettings(metric="cosine", normalize=True, flip=True, rerank=True,
                                                 rerank_params={"k1": 20, "k2": 6, "lambda_value": 0.3})
    assert run.center_optimizer is trainer.center_optimizer is not None
    (group,) = run.center_optimizer.param_groups
    assert group["lr"] == 0.5 and group["loss_weight"] == pytest.approx(5e-4) and group["momentum"] == 0.0
    assert trainer.freeze_iters == 3 and trainer.compiled
    assert load_config("synth_quick")["train"]["cudnn_benchmark"] is True  # on by default (CUDA only)
    assert trainer.cudnn_benchmark is False  # the key reached the trainer
    assert isinstance(trainer.log, LogSinks)
    assert [type(s) for s in trainer.log.sinks] == [RunLog, MetricsTable]
    trainer.close()

    quiet = load_config("synth_quick", [f"data.root={synthreid_tiny}", *SMALL, "log.table=false"])
    sinks = _build_log(quiet, tmp_path / "quiet", DistContext())
    assert [type(s) for s in sinks.sinks] == [RunLog]
    sinks.close()
    assert _build_log(quiet, tmp_path / "rank1", DistContext(rank=1, world_size=2)) is None
    assert not (tmp_path / "rank1").exists()  # other ranks open no log file


def test_sync_bn_on_cpu_is_a_one_line_error(synthreid_tiny: Path, capsys: pytest.CaptureFixture[str],
                                             tmp_path: Path) -> None:
    args = ["train", "--config", "synth_quick", f"data.root={synthreid_tiny}", *SMALL, "train.device=cpu",
            "train.sync_bn=true", "--out", str(tmp_path / "o")]
    assert main(args) == 1
    err = capsys.readouterr().err
    assert "train.sync_bn=true needs CUDA with the NCCL backend" in err and err.count("\n") == 1
    assert not (tmp_path / "o").exists()
