"""The command line and the demo: what a user types first, checked end to end on SynthReID tiny."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from reidkit.cli import main
from reidkit.data.datasets import SynthReID


def test_synth_writes_a_dataset_that_parses(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                            synthreid_tiny: Path) -> None:
    out = tmp_path / "tiny"
    assert main(["synth", "--preset", "tiny", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "SynthReID preset=tiny seed=0" in printed
    dataset = SynthReID(out)
    assert printed.count(f"{len(dataset.train):,}") >= 1
    # the command line writes exactly what the library writes for the same preset and seed
    assert sorted(p.name for p in (out / "query").iterdir()) == sorted(p.name for p in (synthreid_tiny / "query").iterdir())


def test_synth_refuses_a_non_empty_folder_in_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "keep.txt").write_text("mine")
    for extra in ([], ["--overwrite"]):  # --overwrite only replaces a SynthReID folder, never foreign files
        assert main(["synth", "--preset", "tiny", "--out", str(tmp_path), *extra]) == 1
        err = capsys.readouterr().err
        assert err.startswith("reidkit synth: error: ") and str(tmp_path) in err and "Traceback" not in err
    assert (tmp_path / "keep.txt").read_text() == "mine"


def test_unknown_preset_lists_the_valid_ones(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["synth", "--preset", "huge", "--out", "x"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "huge" in err and "market" in err and "small" in err and "tiny" in err


def test_info_reports_every_package_and_the_device(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["info"]) == 0
    out = capsys.readouterr().out
    for name in ("torch", "numba", "ipywidgets", "nbval", "opencv-python-headless"):
        assert name in out
    assert out.strip().splitlines()[-1].split() in (["device", "cpu"], ["device", "cuda"])


def test_demo_on_tiny_writes_figures_and_metrics(tmp_path: Path, synthreid_tiny: Path) -> None:
    data_root = tmp_path / "data"
    data_root.mkdir()
    shutil.copytree(synthreid_tiny, data_root / synthreid_tiny.name)
    out = tmp_path / "demo"
    assert main(["demo", "--preset", "tiny", "--out", str(out), "--data-root", str(data_root), "--epochs", "1"]) == 0
    for name in ("identities.png", "split_statistics.png", "ranked_lists.png", "heatmaps.png", "metrics.json", "train/best.pt"):
        assert (out / name).stat().st_size > 0, name
    metrics = json.loads((out / "metrics.json").read_text())
    baseline = metrics["baselines"]["color_histogram"]
    assert 0.0 < baseline["mAP"] < 1.0 and 0.0 < baseline["mINP"] <= baseline["mAP"] + 1e-9
    assert 0.0 <= baseline["rank1"] <= baseline["rank5"] <= 1.0
    stats = SynthReID(data_root / synthreid_tiny.name).statistics()
    assert metrics["dataset"]["query"] == {"images": stats["query"].images, "ids": stats["query"].ids,
                                         "cameras": stats["query"].cameras}
    trained = metrics["trained"]
    assert trained["config"] == "synth_quick" and trained["epochs"] == 1 and trained["split"] == "test"
    assert 0.0 < trained["mAP"] <= 1.0 and 0.0 <= trained["rank1"] <= trained["rank5"] <= trained["rank10"] <= 1.0
    written = json.loads((out / "train" / "metrics.json").read_text())["test"]
    assert trained["mAP"] == written["mAP"]  # the demo reports the training run's own test evaluation
    # and its figures rank with the same protocol: their distances give the same mAP
    assert trained["figures_mAP"] == pytest.approx(trained["mAP"], abs=1e-4)
