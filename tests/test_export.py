"""ONNX export: eval-mode graph with a dynamic batch axis, explicit input normalisation recorded in the metadata,
equal to the PyTorch model within 1e-4 under onnxruntime; rebuilding a model from a checkpoint; the CLI end to end."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from reidkit.cli import main
from reidkit.export import check_onnx, checkpoint_metadata, export_onnx, model_from_checkpoint
from reidkit.models import IMAGENET_MEAN, IMAGENET_STD, ReIDModel, build_model

onnx = pytest.importorskip("onnx", reason="onnx is not installed (pip install onnx onnxscript onnxruntime)")
ort = pytest.importorskip("onnxruntime", reason="onnxruntime is not installed (pip install onnxruntime)")
pytest.importorskip("onnxscript", reason="onnxscript (torch's ONNX exporter) is not installed")

NUM_CLASSES = 5
CFG = {"backbone": "resnet18", "pooling": "gem", "gem_learnable": True, "embedding_dim": 64, "head": "circle"}


def trained_like(cfg: dict, seed: int = 0) -> ReIDModel:
    """A model with non-trivial BN running statistics and GeM p, left in training mode."""
    torch.manual_seed(seed)
    model = build_model(cfg, NUM_CLASSES)
    with torch.no_grad():
        model.train()
        model(torch.randn(8, 3, 64, 32))
        if cfg.get("gem_learnable"):
            model.pooling.p.fill_(3.5)
    return model


def metadata(path: Path) -> dict[str, str]:
    return {p.key: p.value for p in onnx.load(str(path)).metadata_props}


def run(path: Path, x: torch.Tensor) -> torch.Tensor:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return torch.from_numpy(session.run(["features"], {"images": x.numpy()})[0])


def test_export_outside_normalisation_matches_onnxruntime_with_dynamic_batch(tmp_path: Path) -> None:
    model = trained_like(CFG)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    path = export_onnx(model, tmp_path / "sub" / "model.onnx", height=64, width=32)
    assert path == tmp_path / "sub" / "model.onnx" and [p.name for p in path.parent.iterdir()] == ["model.onnx"]
    assert model.training and model.backbone.training  # modes restored, weights untouched
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())

    graph = onnx.load(str(path)).graph
    batch_dim = graph.input[0].type.tensor_type.shape.dim[0]
    assert graph.input[0].name == "images" and graph.output[0].name == "features"
    assert batch_dim.dim_param and not batch_dim.HasField("dim_value")  # symbolic batch axis
    meta = metadata(path)
    assert meta["reidkit.input_normalization"] == "outside" and "done by the caller" in meta["reidkit.input"]
    assert json.loads(meta["reidkit.mean"]) == list(IMAGENET_MEAN)
    assert json.loads(meta["reidkit.std"]) == list(IMAGENET_STD)
    assert (meta["reidkit.height"], meta["reidkit.width"], meta["reidkit.feature_dim"]) == ("64", "32", "64")
    assert json.loads(meta["reidkit.model_cfg"]) == model.config

    model.eval()
    for batch in (1, 3):  # the exported input is the normalised tensor
        x = torch.randn(batch, 3, 64, 32, generator=torch.Generator().manual_seed(batch))
        with torch.no_grad():
            expected = model(x)
        got = run(path, x)
        assert got.shape == (batch, 64)
        torch.testing.assert_close(got, expected, rtol=0, atol=1e-4)
    assert check_onnx(model, path, batch_sizes=(1, 3)) <= 1e-4


def test_model_with_own_input_norm_exports_normalisation_inside(tmp_path: Path) -> None:
    """Opset 17 (the TorchScript exporter): the graph takes RGB in [0, 1] and normalises with the model's own
    constants."""
    model = trained_like({**CFG, "input_norm": {"mean": [0.5, 0.4, 0.3], "std": [0.2, 0.25, 0.3]}}).eval()
    with pytest.raises(ValueError, match="normalize_inside=False"):
        export_onnx(model, tmp_path / "no.onnx", height=64, width=32, normalize_inside=False)
    with pytest.raises(ValueError, match="differs from the model's own input_norm"):
        export_onnx(model, tmp_path / "no.onnx", height=64, width=32, mean=IMAGENET_MEAN)
    assert not (tmp_path / "no.onnx").exists()
    path = export_onnx(model, tmp_path / "own.onnx", height=64, width=32, opset=17)
    meta = metadata(path)
    assert meta["reidkit.input_normalization"] == "inside" and meta["reidkit.input_range"] == "0..1"
    assert json.loads(meta["reidkit.mean"]) == pytest.approx([0.5, 0.4, 0.3])
    assert onnx.load(str(path)).opset_import[0].version == 17
    rgb = torch.rand(3, 3, 64, 32)
    with torch.no_grad():
        torch.testing.assert_close(run(path, rgb), model(rgb), rtol=0, atol=1e-4)
    assert check_onnx(model, path, batch_sizes=(1, 3)) <= 1e-4


def write_checkpoint(path: Path, model: ReIDModel, with_cfg: bool) -> Path:
    payload = {"model": model.state_dict(), "model_cfg": model.config, "num_classes": NUM_CLASSES, "epoch": 3}
    torch.save(payload if with_cfg else model.state_dict(), path)
    return path


def test_model_from_checkpoint_with_config_and_bare_state_dict(tmp_path: Path) -> None:
    model = trained_like(CFG).eval()
    x = torch.randn(2, 3, 64, 32)
    with torch.no_grad():
        expected = model(x)
    full = write_checkpoint(tmp_path / "full.pth", model, with_cfg=True)
    assert checkpoint_metadata(full) == {"model_cfg": model.config, "num_classes": NUM_CLASSES, "epoch": 3}
    bare = write_checkpoint(tmp_path / "bare.pth", model, with_cfg=False)
    assert checkpoint_metadata(bare) == {}
    for rebuilt in (model_from_checkpoint(full), model_from_checkpoint(bare, CFG)):  # classes read from head.weight
        assert not rebuilt.training and rebuilt.num_classes == NUM_CLASSES
        with torch.no_grad():
            torch.testing.assert_close(rebuilt(x), expected, rtol=0, atol=0)
    with pytest.raises(ValueError, match=r"bare\.pth does not fit .*embedding_dim None.*shape mismatch.*neck\.bn"):
        model_from_checkpoint(bare, {"backbone": "resnet18"})  # wrong architecture: the keys are named
    with pytest.raises(ValueError, match="disagrees"):
        model_from_checkpoint(full, num_classes=7)


def test_cli_export_end_to_end(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    model = trained_like(CFG).eval()
    checkpoint = write_checkpoint(tmp_path / "ckpt.pth", model, with_cfg=True)
    out = tmp_path / "model.onnx"
    # opset 17 takes the faster TorchScript exporter; the default opset-18 exporter is tested above
    code = main(["export", "--checkpoint", str(checkpoint), "--onnx", str(out), "--normalize-inside",
                 "--height", "64", "--width", "32", "--opset", "17"])
    printed = capsys.readouterr().out
    assert code == 0, printed
    assert onnx.load(str(out)).opset_import[0].version == 17
    assert "RGB in [0, 1]" in printed and "onnxruntime check" in printed and "features (batch, 64)" in printed
    meta = metadata(out)
    assert meta["reidkit.input_normalization"] == "inside" and json.loads(meta["reidkit.model_cfg"]) == model.config
    rgb = torch.rand(3, 3, 64, 32)
    mean, std = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    with torch.no_grad():
        torch.testing.assert_close(run(out, rgb), model((rgb - mean) / std), rtol=0, atol=1e-4)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt.pth", "model.onnx"]  # no temporary file left


def test_cli_export_errors_are_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    model = trained_like({"backbone": "resnet18"})
    bare = write_checkpoint(tmp_path / "bare.pth", model, with_cfg=False)
    config = tmp_path / "cfg.yaml"
    config.write_text("model:\n  backbone: resnet9\n")
    for args, expected in (
        (["--config", str(config)], "unknown backbone 'resnet9'"),
        (["--backbone", "resnet18", "--set", "poolin=gem"], "unknown model config key(s) ['poolin']"),
        (["--backbone", "resnet34"], "backbone 'resnet34'"),
        ([], "backbone 'resnet50'"),  # a bare state dict and no options: BoT R50 defaults, keys reported
    ):
        assert main(["export", "--checkpoint", str(bare), "--onnx", str(tmp_path / "x.onnx"), *args]) == 1
        err = capsys.readouterr().err
        assert err.startswith("reidkit export: error: ") and expected in err and "Traceback" not in err, err
    assert main(["export", "--checkpoint", str(tmp_path / "none.pth"), "--onnx", str(tmp_path / "x.onnx")]) == 1
    assert "checkpoint file not found" in capsys.readouterr().err
    assert not (tmp_path / "x.onnx").exists()
