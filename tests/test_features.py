"""Feature extraction (extract_features) and chunked evaluation from features (evaluate_features)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from reidkit.evaluation import (
    Features,
    distance_chunks,
    evaluate_features,
    evaluate_rank,
    extract_features,
    pairwise_distance,
)


def fake_loader(num: int = 10, batch: int = 4, seed: int = 0) -> list[dict]:
    """Batches shaped like those of build_test_loaders: img (B, 3, 4, 6), pid, camid, path, index."""
    g = torch.Generator().manual_seed(seed)
    imgs = torch.randn(num, 3, 4, 6, generator=g)
    out = []
    for s in range(0, num, batch):
        idx = torch.arange(s, min(s + batch, num))
        out.append({
            "img": imgs[idx], "pid": idx // 2, "camid": idx % 3,
            "path": [f"img_{i:03d}.jpg" for i in idx.tolist()], "index": idx,
        })
    return out


class RowModel(nn.Module):
    """Not mirror-invariant: the first pixel row of channel 0 (D = width), scaled by a parameter."""

    def __init__(self) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.tensor(2.0))
        self.drop = nn.Dropout(0.5)
        self.seen: list[tuple[bool, bool, bool]] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.seen.append((self.training, torch.is_inference_mode_enabled(), torch.is_autocast_enabled("cpu")))
        return self.drop(x[:, 0, 0, :] * self.scale)


def test_extract_features_order_labels_and_types() -> None:
    model = RowModel()
    loader = fake_loader()
    out = extract_features(model, loader, progress=False)
    assert isinstance(out, Features)
    imgs = torch.cat([b["img"] for b in loader])
    torch.testing.assert_close(out.features, imgs[:, 0, 0, :] * 2)
    assert out.features.dtype == torch.float32 and out.features.device.type == "cpu"
    assert not out.features.requires_grad and not out.features.is_inference()  # usable outside inference mode
    assert out.pids.dtype == np.int64 and out.pids.tolist() == [i // 2 for i in range(10)]
    assert out.camids.dtype == np.int64 and out.camids.tolist() == [i % 3 for i in range(10)]
    assert out.paths == [f"img_{i:03d}.jpg" for i in range(10)]
    # eval mode (dropout off), inference mode, no autocast, for every batch
    assert set(model.seen) == {(False, True, False)}


def test_extract_features_restores_each_module_mode() -> None:
    model = RowModel()
    model.train()
    model.drop.eval()  # a submodule deliberately in eval mode stays so
    with torch.autocast("cpu", dtype=torch.bfloat16):
        extract_features(model, fake_loader(), progress=False)
    assert model.training and not model.drop.training
    assert set(model.seen) == {(False, True, False)}  # autocast disabled inside


def test_flip_averages_before_normalising() -> None:
    model = RowModel()
    loader = fake_loader()
    row = torch.cat([b["img"] for b in loader])[:, 0, 0, :] * 2
    flipped = (row + row.flip(1)) / 2
    torch.testing.assert_close(extract_features(model, loader, flip=True, progress=False).features, flipped)
    normed = extract_features(model, loader, flip=True, normalize=True, progress=False).features
    torch.testing.assert_close(normed, flipped / flipped.norm(dim=1, keepdim=True))
    torch.testing.assert_close(normed.norm(dim=1), torch.ones(10))


@pytest.mark.parametrize(
    "forward, expected",
    [
        (lambda x: (x.flatten(1), x.flatten(1)), "got tuple"),
        (lambda x: {"feat": x.flatten(1)}, "got dict"),
        (lambda x: x, r"\(B, D\) tensor for B=4 images, got shape \(4, 3, 4, 6\)"),
    ],
)
def test_model_output_must_be_one_feature_matrix(forward, expected) -> None:
    class Wrapped(nn.Module):
        def forward(self, x):
            return forward(x)

    with pytest.raises(TypeError, match=expected):
        extract_features(Wrapped(), fake_loader(), progress=False)


def test_bad_batches_device_and_empty_loader() -> None:
    with pytest.raises(TypeError, match="dicts with keys"):
        extract_features(RowModel(), [(torch.zeros(2, 3, 4, 6), torch.zeros(2))], progress=False)
    with pytest.raises(ValueError, match="model's parameters are on 'cpu'"):
        extract_features(RowModel(), fake_loader(), device="meta", progress=False)
    with pytest.raises(ValueError, match="no batch"):
        extract_features(RowModel(), [], progress=False)


def test_progress_bar_is_optional(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TQDM_DISABLE", raising=False)
    extract_features(RowModel(), fake_loader(), progress=False)
    assert "features" not in capsys.readouterr().err
    extract_features(RowModel(), fake_loader(), progress=True)
    assert "features: 100%" in capsys.readouterr().err
    monkeypatch.setenv("TQDM_DISABLE", "1")
    extract_features(RowModel(), fake_loader(), progress=True)
    assert "features" not in capsys.readouterr().err


def test_extract_features_on_synthreid_test_loaders(synthreid_tiny: Path) -> None:
    from reidkit.data import build_test_loaders
    from reidkit.data.datasets import build_dataset
    from reidkit.data.transforms import build_transforms

    ds = build_dataset("synthreid", synthreid_tiny)
    transform = build_transforms({"height": 32, "width": 16, "cutout_size": 8}, train=False)
    query, gallery = build_test_loaders(ds.query, ds.gallery, transform, batch_size=64)
    model = nn.Sequential(nn.AdaptiveAvgPool2d((4, 2)), nn.Flatten())
    qf = extract_features(model, query, flip=True, progress=False)
    gf = extract_features(model, gallery, flip=True, progress=False)
    assert qf.features.shape == (len(ds.query), 24) and qf.paths == [i.path for i in ds.query]
    assert gf.pids.tolist() == [i.pid for i in ds.gallery]
    res = evaluate_features(qf.features, gf.features, qf.pids, gf.pids, qf.camids, gf.camids, chunk_size=50)
    dist = pairwise_distance(qf.features, gf.features, chunk_size=50)
    dense = evaluate_rank(dist, qf.pids, gf.pids, qf.camids, gf.camids)
    assert res.mAP == dense.mAP and 0 < res.mAP < 1


def random_features(seed: int, num_q: int = 23, num_g: int = 61, integer: bool = True):
    rng = np.random.default_rng(seed)
    make = (lambda n: rng.integers(-2, 3, (n, 6)).astype(np.float32)) if integer else (
        lambda n: rng.standard_normal((n, 6)).astype(np.float32))
    return (
        make(num_q), make(num_g), rng.integers(1, 6, num_q), rng.integers(0, 6, num_g),
        rng.integers(0, 3, num_q), rng.integers(0, 3, num_g),
    )


def assert_results_equal(a, b) -> None:
    np.testing.assert_array_equal(a.cmc, b.cmc)
    np.testing.assert_array_equal(a.first_hit, b.first_hit)
    np.testing.assert_array_equal(a.valid, b.valid)
    np.testing.assert_array_equal(a.ap, b.ap)
    np.testing.assert_array_equal(a.inp, b.inp)
    assert (a.mAP, a.mINP, a.protocol, a.ap_kind) == (b.mAP, b.mINP, b.protocol, b.ap_kind)


@pytest.mark.parametrize("metric", ["euclidean", "cosine"])
@pytest.mark.parametrize("chunk_size", [1, 4, 22, 23, 100, None])
def test_evaluate_features_equals_the_dense_path(metric: str, chunk_size: int | None) -> None:
    # Integer features: squared Euclidean distances are exact in float32 whatever the GEMM blocking (and
    # tie often); cosine ones are not, so the dense side uses the same blocks there.
    qf, gf, qp, gp, qc, gc = random_features(0)
    dense_chunk = 1024 if metric == "euclidean" or chunk_size is None else chunk_size
    dist = pairwise_distance(qf, gf, metric, chunk_size=dense_chunk)
    dense = evaluate_rank(dist, qp, gp, qc, gc, max_rank=80, ap="official")
    chunked = evaluate_features(qf, gf, qp, gp, qc, gc, metric, chunk_size, max_rank=80, ap="official")
    assert_results_equal(chunked, dense)


@pytest.mark.parametrize("chunk_size", [1, 5, 1000])
def test_evaluate_features_equals_dense_with_real_valued_features_and_cuhk03(chunk_size: int) -> None:
    # Same chunking on both sides gives bit-identical distances; CUHK03 draws run in query order.
    qf, gf, qp, gp, qc, gc = random_features(1, integer=False)
    dist = pairwise_distance(qf, gf, "euclidean", chunk_size=chunk_size)
    for protocol in ("market", "cuhk03"):
        rng = (lambda: np.random.default_rng(3)) if protocol == "cuhk03" else (lambda: None)
        dense = evaluate_rank(dist, qp, gp, qc, gc, protocol=protocol, rng=rng())
        chunked = evaluate_features(
            torch.from_numpy(qf), torch.from_numpy(gf), qp, gp, qc, gc, chunk_size=chunk_size,
            protocol=protocol, rng=rng(),
        )
        assert_results_equal(chunked, dense)


def test_cmc_is_merged_as_counts_not_averaged() -> None:
    # Chunks with 1 and 2 valid queries: averaging per-chunk CMC would give (1 + 0.5)/2 = 0.75 at rank 1.
    qf = np.array([[0.0], [0.0], [10.0]], np.float32)
    gf = np.array([[0.0], [5.0], [9.0]], np.float32)
    qp, gp = np.array([1, 2, 3]), np.array([1, 2, 3])
    res = evaluate_features(qf, gf, qp, gp, np.zeros(3, np.int64), np.ones(3, np.int64), chunk_size=1)
    assert res.first_hit.tolist() == [1, 2, 1]
    np.testing.assert_array_equal(res.cmc[:2], np.array([2, 3], np.float32) / np.float32(3))


def test_distance_chunks_blocks_and_reuse() -> None:
    qf, gf, *_ = random_features(2, integer=False)
    dense = pairwise_distance(qf, gf, "cosine", chunk_size=7)
    starts = []
    for start, block in distance_chunks(qf, gf, "cosine", chunk_size=7):
        starts.append(start)
        assert block.dtype == np.float32 and block.shape[1] == 61 and block.shape[0] <= 7
        np.testing.assert_array_equal(block, dense[start : start + block.shape[0]])
    assert starts == [0, 7, 14, 21]


def test_evaluate_features_errors() -> None:
    qf, gf, qp, gp, qc, gc = random_features(0)
    with pytest.raises(ValueError, match="same D"):
        evaluate_features(qf, gf[:, :3], qp, gp, qc, gc)
    with pytest.raises(ValueError, match="q_pids must be 1-D of length 23"):
        evaluate_features(qf, gf, qp[:3], gp, qc, gc)
    with pytest.raises(ValueError, match="metric='l1'"):
        evaluate_features(qf, gf, qp, gp, qc, gc, metric="l1")
    with pytest.raises(ValueError, match="needs rng"):
        evaluate_features(qf, gf, qp, gp, qc, gc, protocol="cuhk03")
    with pytest.raises(ValueError, match="NaN distances \\(first in query row 5\\)"):
        bad = qf.copy()
        bad[5, 0] = np.nan
        evaluate_features(bad, gf, qp, gp, qc, gc, chunk_size=4)
