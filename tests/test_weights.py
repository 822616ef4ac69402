"""reidkit.models.weights: safe checkpoint reading, checked loading with a report, finding files offline.

No test touches the network: the downloader is monkeypatched wherever a URL is given.
"""
from __future__ import annotations

import logging
import urllib.error
from pathlib import Path

import pytest
import torch
from torch import nn

from reidkit.models import weights
from reidkit.models.weights import LoadReport, load_pretrained, read_checkpoint, resolve_weights, weights_dir


class Payload:
    """A pickled object: ``torch.load(weights_only=True)`` must refuse a file containing one."""

    def __init__(self) -> None:
        self.value = 3


class Toy(nn.Module):
    """A small "backbone" (conv + BN) with an optional added module, plus nothing else."""

    def __init__(self, extra: bool = False) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, bias=False)
        self.bn = nn.BatchNorm2d(4)
        if extra:
            self.attention = nn.Conv2d(4, 4, 1)


def _checkpoint(model: nn.Module, seed: int = 0) -> dict[str, torch.Tensor]:
    """The model's state dict with every float tensor replaced by seeded random values."""
    gen = torch.Generator().manual_seed(seed)
    return {
        k: torch.randn(v.shape, generator=gen) if v.is_floating_point() else v.clone()
        for k, v in model.state_dict().items()
    }


def _with_head(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """As a torchreid re-ID checkpoint: a 512-d ``fc`` embedding and a 751-class ``classifier``."""
    return {**state, "fc.0.weight": torch.zeros(512, 4), "fc.0.bias": torch.zeros(512),
            "classifier.weight": torch.zeros(751, 512), "classifier.bias": torch.zeros(751)}


# ---------------------------------------------------------------------------------------------- read_checkpoint
def test_read_checkpoint_plain_and_wrapped_and_dataparallel(tmp_path: Path) -> None:
    state = _checkpoint(Toy())
    plain, wrapped, model_key = tmp_path / "a.pth", tmp_path / "b.pth.tar", tmp_path / "c.pt"
    torch.save(state, plain)
    # torchreid's save_checkpoint: {"state_dict": <DataParallel keys>, "epoch": .., "rank1": ..}
    torch.save({"state_dict": {"module." + k: v for k, v in state.items()}, "epoch": 60, "rank1": 0.9}, wrapped)
    torch.save({"model": state, "optimizer": {"state": {}, "param_groups": []}}, model_key)
    for path in (plain, wrapped, model_key):
        got = read_checkpoint(path)
        assert list(got) == list(state)
        assert all(torch.equal(got[k], state[k]) for k in state)


def test_read_checkpoint_missing_file_names_it(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="nowhere.pth"):
        read_checkpoint(tmp_path / "nowhere.pth")


def test_read_checkpoint_refuses_pickled_objects(tmp_path: Path) -> None:
    path = tmp_path / "stranger.pth"
    torch.save({"conv.weight": torch.zeros(1), "payload": Payload()}, path)
    with pytest.raises(ValueError, match=r"stranger\.pth.*weights_only") as info:
        read_checkpoint(path)
    assert "load_pretrained" in str(info.value)  # says what to do if the file is trusted


@pytest.mark.parametrize(
    ("payload", "match"),
    [([torch.zeros(1)], "does not hold a state dict"),
     ({}, "does not hold a state dict"),
     ({"conv.weight": torch.zeros(1), "epoch": 3}, "epoch")],
)
def test_read_checkpoint_rejects_non_tensor_payload(tmp_path: Path, payload: object, match: str) -> None:
    path = tmp_path / "odd.pth"
    torch.save(payload, path)
    with pytest.raises(ValueError, match=match) as info:
        read_checkpoint(path)
    assert "odd.pth" in str(info.value)


# ---------------------------------------------------------------------------------------------- load_pretrained
def test_round_trip_reports_dropped_head(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    source, target = Toy(), Toy()
    state = _checkpoint(source)
    path = tmp_path / "reid.pth"
    torch.save({"state_dict": _with_head(state)}, path)
    with caplog.at_level(logging.INFO, logger="reidkit.models.weights"):
        report = load_pretrained(target, path)
    assert isinstance(report, LoadReport)
    assert report.source == str(path)
    assert report.loaded == list(state)
    assert report.unexpected == ["fc.0.weight", "fc.0.bias", "classifier.weight", "classifier.bias"]
    assert report.missing == [] and report.new == []
    assert all(torch.equal(target.state_dict()[k], v) for k, v in state.items())
    line = [r.getMessage() for r in caplog.records if r.name == "reidkit.models.weights"]
    assert len(line) == 1 and "\n" not in line[0]
    assert "loaded 6 tensors" in line[0] and "fc.0" in line[0] and "classifier" in line[0]


def test_missing_key_is_an_error_naming_file_and_key(tmp_path: Path) -> None:
    model = Toy()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    state = _checkpoint(model)
    del state["bn.running_var"]
    path = tmp_path / "partial.pth"
    torch.save(state, path)
    with pytest.raises(ValueError, match=r"partial\.pth lacks 1 .*bn\.running_var"):
        load_pretrained(model, path)
    # nothing was copied: a failed load never leaves a half-loaded model behind
    assert all(torch.equal(model.state_dict()[k], v) for k, v in before.items())


def test_shape_mismatch_names_key_and_both_shapes() -> None:
    state = _checkpoint(Toy())
    state["conv.weight"] = torch.zeros(8, 3, 3, 3)
    with pytest.raises(ValueError, match=r"conv\.weight: checkpoint \(8, 3, 3, 3\) vs model \(4, 3, 3, 3\)"):
        load_pretrained(Toy(), state)


def test_unexpected_key_outside_ignored_heads_is_an_error() -> None:
    state = {**_checkpoint(Toy()), "layer5.weight": torch.zeros(1)}
    with pytest.raises(ValueError, match=r"layer5\.weight"):
        load_pretrained(Toy(), state)
    # declared heads are dropped; "fc" does not cover "fcx"
    ok = load_pretrained(Toy(), {**_checkpoint(Toy()), "head.w": torch.zeros(1)}, ignore_unexpected=("head",))
    assert ok.unexpected == ["head.w"]
    with pytest.raises(ValueError, match="fcx.weight"):
        load_pretrained(Toy(), {**_checkpoint(Toy()), "fcx.weight": torch.zeros(1)})


def test_new_modules_keep_their_init_and_are_reported() -> None:
    model = Toy(extra=True)
    init = {k: v.clone() for k, v in model.attention.state_dict().items()}
    state = _checkpoint(Toy())
    with pytest.raises(ValueError, match=r"attention\.weight"):  # undeclared: an error
        load_pretrained(model, state)
    report = load_pretrained(model, {"module." + k: v for k, v in state.items()}, new_modules=("attention.",))
    assert report.source == "<state dict>"
    assert report.new == ["attention.weight", "attention.bias"]
    assert report.loaded == list(state) and report.missing == []
    assert all(torch.equal(model.attention.state_dict()[k], v) for k, v in init.items())
    assert torch.equal(model.conv.weight, state["conv.weight"])


def test_missing_batchnorm_counter_is_tolerated_and_reported() -> None:
    """Checkpoints from torch < 0.4.1 have no ``num_batches_tracked``: a counter, not a weight."""
    state = _checkpoint(Toy())
    del state["bn.num_batches_tracked"]
    report = load_pretrained(Toy(), state)
    assert report.missing == ["bn.num_batches_tracked"]
    assert "bn.running_var" in report.loaded


# --------------------------------------------------------------------------------- weights_dir / resolve_weights
def test_weights_dir_env_and_default(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("REIDKIT_WEIGHTS", str(tmp_path))
    assert weights_dir() == tmp_path
    monkeypatch.delenv("REIDKIT_WEIGHTS")
    assert weights_dir() == Path.home() / ".cache" / "reidkit" / "weights"


def test_resolve_weights_prefers_the_local_file(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("REIDKIT_WEIGHTS", str(tmp_path))
    (tmp_path / "net.pth").write_bytes(b"x")

    def no_network(*args: object, **kwargs: object) -> None:
        raise AssertionError("must not download a file that is present")

    monkeypatch.setattr(weights, "download_url_to_file", no_network)
    assert resolve_weights("net.pth", "https://example.invalid/net.pth") == tmp_path / "net.pth"


def test_resolve_weights_without_url_says_where_to_put_the_file(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    folder = tmp_path / "w"
    monkeypatch.setenv("REIDKIT_WEIGHTS", str(folder))
    with pytest.raises(FileNotFoundError) as info:
        resolve_weights("osnet_x1_0_imagenet.pth")
    assert "osnet_x1_0_imagenet.pth" in str(info.value) and str(folder) in str(info.value)


def test_resolve_weights_offline_names_file_folder_and_url(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("REIDKIT_WEIGHTS", str(tmp_path))
    calls = []

    def offline(url: str, dst: str, **kwargs: object) -> None:
        calls.append((url, dst))
        Path(dst).write_bytes(b"half a fi")  # an interrupted download
        raise urllib.error.URLError("Temporary failure in name resolution")

    monkeypatch.setattr(weights, "download_url_to_file", offline)
    url = "https://example.invalid/osnet_x1_0_imagenet.pth"
    with pytest.raises(FileNotFoundError) as info:
        resolve_weights("osnet_x1_0_imagenet.pth", url)
    message = str(info.value)
    assert "osnet_x1_0_imagenet.pth" in message and str(tmp_path) in message and url in message
    assert "by hand" in message
    assert len(calls) == 1 and list(tmp_path.iterdir()) == []  # no partial file left behind


def test_resolve_weights_downloads_atomically(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    folder = tmp_path / "new"
    monkeypatch.setenv("REIDKIT_WEIGHTS", str(folder))
    state = _checkpoint(Toy())

    def fake_download(url: str, dst: str, **kwargs: object) -> None:
        assert Path(dst).parent == folder and Path(dst).name != "toy.pth"  # written under a temporary name
        torch.save(state, dst)

    monkeypatch.setattr(weights, "download_url_to_file", fake_download)
    path = resolve_weights("toy.pth", "https://example.invalid/toy.pth")
    assert path == folder / "toy.pth" and [p.name for p in folder.iterdir()] == ["toy.pth"]
    assert load_pretrained(Toy(), path).loaded == list(state)


def test_resolve_weights_rejects_a_web_page(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Google Drive answers some requests with an HTML page: never keep that as a checkpoint."""
    monkeypatch.setenv("REIDKIT_WEIGHTS", str(tmp_path))
    monkeypatch.setattr(weights, "download_url_to_file",
                        lambda url, dst, **kw: Path(dst).write_text("<!DOCTYPE html><html>virus scan</html>"))
    with pytest.raises(FileNotFoundError, match="web page"):
        resolve_weights("net.pth", "https://example.invalid/net")
    assert list(tmp_path.iterdir()) == []
