"""``reidkit.FeatureExtractor``: every input kind, the extract_features reference, flip, checkpoints, errors."""
from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import torchvision.transforms.functional as tvf
from PIL import Image

import reidkit as rk
from reidkit.config import ConfigError, load_config
from reidkit.data.datasets_torch import read_image
from reidkit.data.loaders import build_test_loaders
from reidkit.data.transforms import build_transforms
from reidkit.engine.checkpoint import save_checkpoint
from reidkit.engine.run import train_from_config
from reidkit.evaluation import extract_features
from reidkit.models import build_model

# resnet18 at 64×32 from scratch; one epoch; EMA on so that the EMA weights differ from the trained ones
SMALL = ["model.backbone=resnet18", "model.pretrained=false", "data.height=64", "data.width=32", "data.workers=0",
         "data.test_batch_size=64", "log.progress=false", "train.epochs=1", "train.val_ids=0", "train.ema=0.9"]
NUM_IMAGES = 6


def small_config(root: Path, *extra: str) -> dict[str, Any]:
    return load_config("synth_quick", [f"data.root={root}", *SMALL, *extra])


@pytest.fixture(scope="module")
def run_dir(synthreid_tiny: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real one-epoch ``train_from_config`` run (``config.yaml``, ``metrics.json``, ``last.pt`` with EMA)."""
    out = tmp_path_factory.mktemp("inference") / "run"
    train_from_config(small_config(synthreid_tiny), out_dir=out)
    return out


@pytest.fixture(scope="module")
def paths(synthreid_tiny: Path) -> list[str]:
    """A few query images (128×64 on disk: the 64×32 test transform resizes them)."""
    return [str(p) for p in sorted((synthreid_tiny / "query").glob("*.jpg"))[:NUM_IMAGES]]


@pytest.fixture(scope="module")
def extractor(run_dir: Path) -> rk.FeatureExtractor:
    return rk.FeatureExtractor(run_dir / "last.pt", device="cpu")


def reference_model(run_dir: Path, weights: str = "ema") -> torch.nn.Module:
    """The run's model rebuilt by hand from config.yaml, with the checkpoint's EMA (or trained) weights."""
    cfg = load_config(run_dir / "config.yaml")
    model_cfg = {k: v for k, v in cfg["model"].items() if k != "arch"}
    state = torch.load(run_dir / "last.pt", map_location="cpu", weights_only=True)
    weights_state = state["ema"]["module"] if weights == "ema" else state["model"]
    model = build_model(model_cfg, num_classes=weights_state["head.weight"].shape[0])
    model.load_state_dict(weights_state)
    return model.eval()


def reference_features(run_dir: Path, paths: list[str], flip: bool, weights: str = "ema",
                       normalize: bool = True) -> torch.Tensor:
    """``extract_features`` on a test loader of ``paths`` with the run's own test transform."""
    cfg = load_config(run_dir / "config.yaml")
    transform = build_transforms(cfg["data"]["transforms"], train=False)
    items = [rk.ReIDItem(p, 0, 0) for p in paths]
    loader, _ = build_test_loaders(items, items, transform, batch_size=4)
    return extract_features(reference_model(run_dir, weights), loader, flip=flip, normalize=normalize,
                            progress=False).features


def test_equals_extract_features_on_a_loader_with_the_ema_weights(extractor: rk.FeatureExtractor, run_dir: Path,
                                                                  paths: list[str]) -> None:
    feats = extractor(paths)
    assert feats.dtype == torch.float32 and feats.shape == (NUM_IMAGES, 512) and feats.device.type == "cpu"
    torch.testing.assert_close(torch.linalg.vector_norm(feats, dim=1), torch.ones(NUM_IMAGES))
    assert extractor.uses_ema and not extractor.model.training
    torch.testing.assert_close(feats, reference_features(run_dir, paths, flip=False), atol=1e-5, rtol=1e-5)
    # the trained (non-EMA) weights give other features: the EMA choice is visible
    assert not torch.allclose(feats, reference_features(run_dir, paths, flip=False, weights="model"), atol=1e-3)


def test_flip_is_the_mean_of_both_mirrors_then_normalised(run_dir: Path, paths: list[str],
                                                          extractor: rk.FeatureExtractor) -> None:
    flipped = rk.FeatureExtractor(run_dir, device="cpu", flip=True)
    feats = flipped(paths)
    torch.testing.assert_close(feats, reference_features(run_dir, paths, flip=True), atol=1e-5, rtol=1e-5)
    # by hand: f = normalize(f(x) + f(mirror x)) on the preprocessed batch
    x = extractor.preprocess(paths)
    with torch.no_grad():
        by_hand = extractor.model(x) + extractor.model(torch.flip(x, dims=[3]))
    torch.testing.assert_close(feats, torch.nn.functional.normalize(by_hand, dim=1), atol=1e-5, rtol=1e-5)
    assert not torch.allclose(feats, extractor(paths), atol=1e-3)


def test_normalisation_follows_the_config_eval_settings(extractor: rk.FeatureExtractor, run_dir: Path,
                                                        paths: list[str], synthreid_tiny: Path) -> None:
    # synth_quick: eval.metric cosine, eval.normalize true (the default) -> normalised
    assert extractor.metric == "cosine" and extractor.normalize
    # eval.normalize false with the Euclidean metric (torchreid's OSNet recipe) -> the raw features
    raw_cfg = small_config(synthreid_tiny, "eval.normalize=false", "eval.metric=euclidean")
    raw = rk.FeatureExtractor(raw_cfg, weights=run_dir / "last.pt", device="cpu")
    assert raw.metric == "euclidean" and not raw.normalize and "normalize=False" in repr(raw)
    feats = raw(paths)
    torch.testing.assert_close(feats, reference_features(run_dir, paths, flip=False, normalize=False), atol=1e-5,
                               rtol=1e-5)
    norms = torch.linalg.vector_norm(feats, dim=1)
    assert float((norms - 1).abs().min()) > 1e-2  # really not normalised
    torch.testing.assert_close(torch.nn.functional.normalize(feats, dim=1), extractor(paths), atol=1e-5, rtol=1e-5)
    # flip without normalisation: the plain mean of both mirrors
    raw_flip = rk.FeatureExtractor(raw_cfg, weights=run_dir / "last.pt", device="cpu", flip=True)
    torch.testing.assert_close(raw_flip(paths), reference_features(run_dir, paths, flip=True, normalize=False),
                               atol=1e-5, rtol=1e-5)
    # an explicit argument overrides the config, both ways
    forced = rk.FeatureExtractor(raw_cfg, weights=run_dir / "last.pt", device="cpu", normalize=True)
    assert forced.normalize
    torch.testing.assert_close(forced(paths), extractor(paths), atol=1e-5, rtol=1e-5)
    unforced = rk.FeatureExtractor(run_dir, device="cpu", normalize=False)
    assert not unforced.normalize
    torch.testing.assert_close(unforced(paths), feats, atol=1e-5, rtol=1e-5)
    with pytest.raises(TypeError, match="normalize must be True, False or None.*'yes'"):
        rk.FeatureExtractor(run_dir, device="cpu", normalize="yes")  # type: ignore[arg-type]


def test_paths_pil_arrays_and_tensors_give_the_same_features(extractor: rk.FeatureExtractor,
                                                             paths: list[str]) -> None:
    from_paths = extractor(paths)
    pils = [read_image(p) for p in paths]
    torch.testing.assert_close(extractor([Path(p) for p in paths]), from_paths, atol=0, rtol=0)
    torch.testing.assert_close(extractor(pils), from_paths, atol=0, rtol=0)
    torch.testing.assert_close(extractor([np.asarray(im) for im in pils]), from_paths, atol=0, rtol=0)
    torch.testing.assert_close(extractor(np.stack([np.asarray(im) for im in pils])), from_paths, atol=0, rtol=0)
    torch.testing.assert_close(extractor(pils[2]), from_paths[2:3], atol=1e-6, rtol=1e-6)  # one image → (1, D)
    # a non-RGB PIL image is converted as the dataset reader does
    torch.testing.assert_close(extractor(pils[0].convert("RGBA")), from_paths[:1], atol=1e-6, rtol=1e-6)

    # tensors already at the model's size skip the resize: the same pixels as the PIL path
    resized = [im.resize((32, 64), Image.Resampling.BILINEAR) for im in pils]
    from_resized = extractor(resized)
    chw = [tvf.to_tensor(im) for im in resized]
    torch.testing.assert_close(extractor(chw), from_resized, atol=1e-6, rtol=1e-6)
    torch.testing.assert_close(extractor(torch.stack(chw)), from_resized, atol=1e-6, rtol=1e-6)
    # full-size tensors are resized by the tensor path of the same Resize: the same up to interpolation rounding
    full = extractor(torch.stack([tvf.to_tensor(im) for im in pils]))
    assert float((full * from_paths).sum(dim=1).min()) > 0.99
    assert extractor.preprocess(paths).shape == (NUM_IMAGES, 3, 64, 32)


def test_batch_size_does_not_change_the_features(run_dir: Path, paths: list[str],
                                                 extractor: rk.FeatureExtractor) -> None:
    small_batches = rk.FeatureExtractor(run_dir, device="cpu", batch_size=4)
    assert small_batches.batch_size == 4 and extractor.batch_size == 64  # data.test_batch_size by default
    torch.testing.assert_close(small_batches(paths), extractor(paths), atol=1e-5, rtol=1e-5)


def test_every_source_form_loads_the_same_weights(run_dir: Path, paths: list[str], tmp_path: Path,
                                                  extractor: rk.FeatureExtractor) -> None:
    expected = extractor(paths)
    metrics = json.loads((run_dir / "metrics.json").read_text())
    from_folder = rk.FeatureExtractor(run_dir, device="cpu")
    assert from_folder.checkpoint == run_dir / Path(metrics["checkpoint"]).name
    torch.testing.assert_close(from_folder(paths), expected, atol=0, rtol=0)

    cfg_path = run_dir / "config.yaml"
    from_config = rk.FeatureExtractor(str(cfg_path), weights=run_dir / "last.pt", device="cpu")
    torch.testing.assert_close(from_config(paths), expected, atol=0, rtol=0)
    ema_state = torch.load(run_dir / "last.pt", map_location="cpu", weights_only=True)["ema"]["module"]
    from_dict = rk.FeatureExtractor(load_config(cfg_path), weights=ema_state, device="cpu")
    assert from_dict.checkpoint is None and not from_dict.uses_ema  # a bare state dict: taken as it is
    torch.testing.assert_close(from_dict(paths), expected, atol=0, rtol=0)

    # a checkpoint that carries its config needs no config.yaml beside it
    lonely = tmp_path / "elsewhere" / "model.pt"
    state = torch.load(run_dir / "last.pt", map_location="cpu", weights_only=True)
    save_checkpoint({**state, "config": load_config(cfg_path)}, lonely)
    torch.testing.assert_close(rk.FeatureExtractor(lonely, device="cpu")(paths), expected, atol=0, rtol=0)
    # without either it says which file it looked for
    shutil.copy(run_dir / "last.pt", tmp_path / "bare.pt")
    with pytest.raises(FileNotFoundError, match=str(tmp_path / "config.yaml")):
        rk.FeatureExtractor(tmp_path / "bare.pt")


def test_a_built_model_saved_as_a_checkpoint_round_trips(synthreid_tiny: Path, paths: list[str],
                                                         tmp_path: Path) -> None:
    """A model with its own input_norm takes [0, 1] input (transform mean 0, std 1) and gives the features of
    the same weights without it (the data pipeline normalising instead)."""
    cfg = small_config(synthreid_tiny, "train.ema=null")
    own_norm_cfg = small_config(synthreid_tiny, "train.ema=null", "model.input_norm=imagenet")
    torch.manual_seed(3)
    model = build_model({k: v for k, v in cfg["model"].items() if k != "arch"}, num_classes=7)
    model.eval()
    for folder, config in (("plain", cfg), ("own_norm", own_norm_cfg)):
        save_checkpoint({"model": model.state_dict(), "model_cfg": model.config}, tmp_path / folder / "last.pt")
        (tmp_path / folder / "config.yaml").write_text(rk.config.dump_config(config))
    plain = rk.FeatureExtractor(tmp_path / "plain", device="cpu")
    own_norm = rk.FeatureExtractor(tmp_path / "own_norm", device="cpu")
    assert not plain.uses_ema and own_norm.model.input_norm is not None
    assert own_norm.transform[-1].mean == (0.0, 0.0, 0.0) and own_norm.transform[-1].std == (1.0, 1.0, 1.0)
    torch.testing.assert_close(plain.model.state_dict(), model.state_dict(), atol=0, rtol=0)
    torch.testing.assert_close(own_norm(paths), plain(paths), atol=1e-5, rtol=1e-5)
    x = plain.preprocess(paths)
    with torch.no_grad():
        torch.testing.assert_close(plain(paths), torch.nn.functional.normalize(model(x), dim=1), atol=1e-6,
                                   rtol=1e-6)


def test_a_config_alone_builds_the_recipe_with_its_own_initialisation() -> None:
    extractor = rk.FeatureExtractor("synth_quick", device="cpu")  # resnet18, pretrained: false, 128×64
    assert extractor.checkpoint is None and not extractor.uses_ema
    assert (extractor.height, extractor.width) == (128, 64)
    feats = extractor(Image.new("RGB", (40, 90), (200, 30, 30)))
    assert feats.shape == (1, 512)
    torch.testing.assert_close(torch.linalg.vector_norm(feats, dim=1), torch.ones(1))


def test_missing_files_name_the_path(tmp_path: Path, extractor: rk.FeatureExtractor, run_dir: Path) -> None:
    with pytest.raises(FileNotFoundError, match=str(tmp_path / "nope" / "best.pt")):
        rk.FeatureExtractor(tmp_path / "nope" / "best.pt")
    with pytest.raises(FileNotFoundError, match="no_such.yaml"):
        rk.FeatureExtractor("no_such.yaml")
    with pytest.raises(FileNotFoundError, match="best.pt or last.pt"):
        rk.FeatureExtractor(tmp_path)
    with pytest.raises(FileNotFoundError, match=str(tmp_path / "weights.pt")):
        rk.FeatureExtractor("synth_quick", weights=tmp_path / "weights.pt")
    with pytest.raises(ConfigError, match="synth_quick"):  # an unknown recipe lists the shipped ones
        rk.FeatureExtractor("no_such_recipe")
    with pytest.raises(FileNotFoundError, match=str(tmp_path / "gone.jpg")):
        extractor([str(tmp_path / "gone.jpg")])
    with pytest.raises(ValueError, match="config source only"):
        rk.FeatureExtractor(run_dir, weights=run_dir / "last.pt")


def test_a_checkpoint_of_another_model_is_refused(run_dir: Path, synthreid_tiny: Path) -> None:
    other = small_config(synthreid_tiny, "model.backbone=osnet_x0_25")
    with pytest.raises(ValueError, match=r"does not fit the model.*osnet_x0_25"):
        rk.FeatureExtractor(other, weights=run_dir / "last.pt")


@pytest.mark.parametrize(("image", "error", "message"), [
    (np.zeros((64, 32, 3), dtype=np.float32), TypeError, "H×W×3 uint8"),
    (np.zeros((64, 32), dtype=np.uint8), TypeError, r"shape \(64, 32\)"),
    (np.zeros((64, 32, 4), dtype=np.uint8), TypeError, "H×W×3 uint8"),
    (torch.zeros(4, 64, 32), TypeError, r"\(3, H, W\).*shape \(4, 64, 32\)"),
    (torch.zeros(64, 32), TypeError, r"\(3, H, W\)"),
    (torch.zeros(3, 64, 32, dtype=torch.uint8), TypeError, r"float.*/ 255"),
    (torch.full((3, 64, 32), -0.5), ValueError, r"\[0, 1\].*-0.5"),
    (torch.full((3, 64, 32), float("nan")), ValueError, r"\[0, 1\]"),
    (123, TypeError, "got int"),
    ([], ValueError, "at least one image"),
    ([[Image.new("RGB", (8, 8))]], TypeError, "nested"),
])
def test_bad_images_say_what_was_expected(extractor: rk.FeatureExtractor, image: Any, error: type,
                                          message: str) -> None:
    with pytest.raises(error, match=message):
        extractor(image)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_features_match_cpu(run_dir: Path, paths: list[str], extractor: rk.FeatureExtractor) -> None:
    on_gpu = rk.FeatureExtractor(run_dir, device="cuda", flip=True)
    assert next(on_gpu.model.parameters()).is_cuda
    feats = on_gpu(paths)
    assert feats.device.type == "cpu"
    cpu = rk.FeatureExtractor(run_dir, device="cpu", flip=True)(paths)
    torch.testing.assert_close(feats, cpu, atol=1e-3, rtol=1e-3)
