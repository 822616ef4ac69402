"""``evaluate_model`` and ``reidkit eval``: the same numbers as the hand-written pipeline (features -> distances ->
rank metrics), flip TTA as defined, re-ranking, train/eval flags restored, the CLI end to end and its errors."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from reidkit.cli import main
from reidkit.data.datasets import SynthReID
from reidkit.data.loaders import build_test_loaders
from reidkit.data.transforms import build_transforms
from reidkit.engine.evaluator import EvalReport, evaluate_model, rank_features
from reidkit.evaluation import Features, evaluate_rank, extract_features, pairwise_distance, re_ranking_features
from reidkit.models import ReIDModel, build_model

HEIGHT, WIDTH = 64, 32
CFG = {"backbone": "resnet18", "embedding_dim": 64}


@pytest.fixture(scope="module")
def dataset(synthreid_tiny: Path) -> SynthReID:
    return SynthReID(synthreid_tiny)


@pytest.fixture(scope="module")
def transform():  # noqa: ANN201
    return build_transforms({"height": HEIGHT, "width": WIDTH, "cutout_p": 0.0}, train=False)


@pytest.fixture(scope="module")
def model(dataset: SynthReID) -> ReIDModel:
    """A resnet18 model with non-trivial BN statistics, in eval mode."""
    torch.manual_seed(0)
    net = build_model(CFG, len({item.pid for item in dataset.train}))
    with torch.no_grad():
        net.train()
        net(torch.randn(8, 3, HEIGHT, WIDTH))
    return net.eval()


@pytest.fixture(scope="module")
def manual(model: ReIDModel, dataset: SynthReID, transform) -> tuple:  # noqa: ANN001
    """Query and gallery features (L2-normalised, no flip) extracted by hand."""
    q_loader, g_loader = build_test_loaders(dataset.query, dataset.gallery, transform, batch_size=128)
    qf = extract_features(model, q_loader, normalize=True, progress=False)
    gf = extract_features(model, g_loader, normalize=True, progress=False)
    return qf, gf


@pytest.fixture(scope="module")
def report(model: ReIDModel, dataset: SynthReID, transform) -> EvalReport:  # noqa: ANN001
    return evaluate_model(model, dataset.query, dataset.gallery, transform=transform, progress=False)


def assert_same_result(a, b) -> None:  # noqa: ANN001
    assert a.mAP == b.mAP and a.mINP == b.mINP
    np.testing.assert_array_equal(a.cmc, b.cmc)
    np.testing.assert_array_equal(a.ap, b.ap)
    np.testing.assert_array_equal(a.first_hit, b.first_hit)


def test_evaluate_model_equals_the_manual_pipeline(report: EvalReport, manual: tuple) -> None:
    qf, gf = manual
    expected = evaluate_rank(pairwise_distance(qf.features, gf.features, "euclidean"), qf.pids, gf.pids,
                             qf.camids, gf.camids)
    assert_same_result(report.result, expected)
    assert report.metric == "euclidean" and report.normalize and not report.flip and not report.rerank
    assert (report.num_query, report.num_gallery, report.feature_dim) == (len(qf.pids), len(gf.pids), 64)
    assert 0.0 < report.mAP <= 1.0

    d = report.to_dict()
    assert json.loads(json.dumps(d)) == d
    assert d["mAP"] == report.mAP and d["rank1"] == float(expected.cmc[0]) and d["rank10"] == float(expected.cmc[9])
    assert d["ap"] == "standard" and d["rerank_params"] is None and d["num_query"] == len(qf.pids)
    line = report.summary()
    assert "\n" not in line and line == report.summary()
    assert line.startswith(f"mAP {100 * report.mAP:.1f}% | mINP {100 * report.mINP:.1f}% | R1 ")
    assert "AP=standard" in line and "metric=euclidean" in line and "no-rerank" in line


def test_cosine_metric_equals_the_manual_pipeline(model: ReIDModel, dataset: SynthReID, transform,  # noqa: ANN001
                                                  manual: tuple) -> None:
    qf, gf = manual
    got = evaluate_model(model, dataset.query, dataset.gallery, transform=transform, metric="cosine",
                         normalize=True, progress=False, chunk_size=50)  # several blocks
    expected = evaluate_rank(pairwise_distance(qf.features, gf.features, "cosine", chunk_size=50), qf.pids,
                             gf.pids, qf.camids, gf.camids)
    assert_same_result(got.result, expected)
    assert got.metric == "cosine" and "metric=cosine" in got.summary()


def test_flip_is_the_mean_of_image_and_mirror(model: ReIDModel, dataset: SynthReID, transform) -> None:  # noqa: ANN001
    q_loader, g_loader = build_test_loaders(dataset.query, dataset.gallery, transform, batch_size=128)
    batch = next(iter(q_loader))
    with torch.no_grad():
        plain = model(batch["img"])
        by_hand = torch.nn.functional.normalize((plain + model(torch.flip(batch["img"], dims=[3]))) / 2, dim=1)
    assert not torch.allclose(torch.nn.functional.normalize(plain, dim=1), by_hand, atol=1e-4)  # flip does something
    qf = extract_features(model, q_loader, flip=True, normalize=True, progress=False)
    torch.testing.assert_close(qf.features[: len(by_hand)], by_hand, rtol=1e-5, atol=1e-6)

    gf = extract_features(model, g_loader, flip=True, normalize=True, progress=False)
    expected = evaluate_rank(pairwise_distance(qf.features, gf.features), qf.pids, gf.pids, qf.camids, gf.camids)
    got = evaluate_model(model, dataset.query, dataset.gallery, transform=transform, flip=True, progress=False)
    assert_same_result(got.result, expected)
    assert got.flip and got.to_dict()["flip"] is True and " flip " in got.summary()


def test_rerank_equals_manual_re_ranking(model: ReIDModel, dataset: SynthReID, transform,  # noqa: ANN001
                                         manual: tuple) -> None:
    qf, gf = manual
    params = {"k1": 10, "k2": 3, "lambda_value": 0.5}
    got = evaluate_model(model, dataset.query, dataset.gallery, transform=transform, rerank=True,
                         rerank_params=params, progress=False)
    dist = re_ranking_features(qf.features, gf.features, k1=10, k2=3, lambda_value=0.5)
    assert_same_result(got.result, evaluate_rank(dist, qf.pids, gf.pids, qf.camids, gf.camids))
    assert got.rerank and got.rerank_params == params
    assert got.to_dict()["rerank_params"] == params and "rerank(k1=10,k2=3,lambda=0.5)" in got.summary()


def test_train_eval_flags_are_restored(model: ReIDModel, dataset: SynthReID, transform) -> None:  # noqa: ANN001
    model.train()
    model.backbone.eval()  # a mixed state must come back exactly
    before = [m.training for m in model.modules()]
    try:
        evaluate_model(model, dataset.query[:8], dataset.gallery[:40], transform=transform, progress=False)
        assert [m.training for m in model.modules()] == before
    finally:
        model.eval()


def test_bad_arguments_are_clear_errors(model: ReIDModel, dataset: SynthReID, transform) -> None:  # noqa: ANN001
    with pytest.raises(ValueError, match="unknown metric 'l1'; valid: euclidean, cosine"):
        evaluate_model(model, dataset.query, dataset.gallery, transform=transform, metric="l1")
    with pytest.raises(ValueError, match="unknown re-ranking parameter 'k3'"):
        evaluate_model(model, dataset.query, dataset.gallery, transform=transform, rerank=True,
                       rerank_params={"k3": 1})
    with pytest.raises(ValueError, match="rerank=False"):
        evaluate_model(model, dataset.query, dataset.gallery, transform=transform, rerank_params={"k1": 5})
    with pytest.raises(ValueError, match="non-empty"):
        evaluate_model(model, [], dataset.gallery, transform=transform)


def random_features(num: int, centres: torch.Tensor, seed: int) -> Features:
    """Features near their identity's centre (noisy enough that the ranking is imperfect); identity ``i % 6``,
    camera ``(i // 6) % 3`` for item ``i``."""
    gen = torch.Generator().manual_seed(seed)
    pids = np.arange(num) % 6
    feats = centres[torch.from_numpy(pids)] + 0.9 * torch.randn(num, centres.shape[1], generator=gen)
    return Features(feats, pids.astype(np.int64), ((np.arange(num) // 6) % 3).astype(np.int64),
                    [f"{seed}_{i}.jpg" for i in range(num)])


@pytest.fixture(scope="module")
def small_problem() -> tuple[Features, Features]:
    """12 query and 30 gallery random features of 6 identities, D = 8."""
    centres = torch.randn(6, 8, generator=torch.Generator().manual_seed(0))
    query = random_features(12, centres, seed=1)
    gallery = random_features(30, centres, seed=2)
    return query, gallery


@pytest.mark.parametrize("metric", ["euclidean", "cosine"])
def test_rank_features_equals_distances_then_evaluate_rank(small_problem: tuple[Features, Features],
                                                           metric: str) -> None:
    qf, gf = small_problem
    expected = evaluate_rank(pairwise_distance(qf.features, gf.features, metric), qf.pids, gf.pids, qf.camids,
                             gf.camids, max_rank=10)
    assert 0.1 < expected.mAP < 0.95  # a ranking with hits and misses, so equality means something
    assert_same_result(rank_features(qf, gf, metric=metric, max_rank=10), expected)
    assert_same_result(rank_features(qf, gf, metric=metric, max_rank=10, chunk_size=5), expected)  # 3 blocks
    assert len(rank_features(qf, gf, metric=metric, max_rank=7).cmc) == 7


@pytest.mark.parametrize("metric", ["euclidean", "cosine"])
def test_rank_features_with_rerank_equals_re_ranking_features(small_problem: tuple[Features, Features],
                                                              metric: str) -> None:
    qf, gf = small_problem
    dist = re_ranking_features(qf.features, gf.features, k1=4, k2=2, lambda_value=0.2, metric=metric)
    expected = evaluate_rank(dist, qf.pids, gf.pids, qf.camids, gf.camids, max_rank=10)
    plain = evaluate_rank(pairwise_distance(qf.features, gf.features, metric), qf.pids, gf.pids, qf.camids,
                          gf.camids, max_rank=10)
    assert not np.array_equal(expected.ap, plain.ap)  # re-ranking changes this problem's ranking
    got = rank_features(qf, gf, metric=metric, rerank=True, rerank_params={"k1": 4, "k2": 2, "lambda_value": 0.2},
                        max_rank=10)
    assert_same_result(got, expected)
    config_names = {"rerank_k1": 4, "rerank_k2": 2, "rerank_lambda": 0.2}  # the config's eval keys
    assert_same_result(rank_features(qf, gf, metric=metric, rerank=True, rerank_params=config_names, max_rank=10),
                       expected)
    defaults = re_ranking_features(qf.features, gf.features, k1=20, k2=6, lambda_value=0.3, metric=metric)
    assert_same_result(rank_features(qf, gf, metric=metric, rerank=True),
                       evaluate_rank(defaults, qf.pids, gf.pids, qf.camids, gf.camids))


def test_rank_features_bad_arguments_are_clear_errors(small_problem: tuple[Features, Features]) -> None:
    qf, gf = small_problem
    with pytest.raises(ValueError, match="unknown metric 'l1'; valid: euclidean, cosine"):
        rank_features(qf, gf, metric="l1")
    with pytest.raises(ValueError, match="rerank_params given but rerank=False"):
        rank_features(qf, gf, rerank_params={"k1": 5})
    with pytest.raises(ValueError, match="k1 must be a positive integer, got 0"):
        rank_features(qf, gf, rerank=True, rerank_params={"k1": 0})
    with pytest.raises(ValueError, match="lambda_value must be a number in \\[0, 1\\], got 1.5"):
        rank_features(qf, gf, rerank=True, rerank_params={"lambda_value": 1.5})


def write_checkpoint(path: Path, model: ReIDModel) -> Path:
    torch.save({"model": model.state_dict(), "model_cfg": model.config, "num_classes": model.num_classes}, path)
    return path


def test_cli_eval_end_to_end(tmp_path: Path, capsys: pytest.CaptureFixture[str], model: ReIDModel,
                             report: EvalReport, synthreid_tiny: Path) -> None:
    checkpoint = write_checkpoint(tmp_path / "ckpt.pth", model)
    out = tmp_path / "metrics" / "eval.json"
    code = main(["eval", "--checkpoint", str(checkpoint), "--dataset", "synthreid", "--root", str(synthreid_tiny),
                 "--height", str(HEIGHT), "--width", str(WIDTH), "--out", str(out)])
    printed = capsys.readouterr().out
    assert code == 0, printed
    assert report.summary() in printed
    metrics = json.loads(out.read_text())
    for key in ("mAP", "mINP", "rank1", "rank5", "rank10", "num_query", "num_gallery"):
        assert metrics[key] == report.to_dict()[key], key
    assert metrics["dataset"] == "synthreid" and metrics["checkpoint"] == str(checkpoint)
    assert sorted(p.name for p in out.parent.iterdir()) == ["eval.json"]  # no temporary file left


def test_cli_eval_errors_are_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str], model: ReIDModel,
                                      synthreid_tiny: Path) -> None:
    checkpoint = write_checkpoint(tmp_path / "ckpt.pth", model)
    empty = tmp_path / "empty"
    empty.mkdir()
    for args, expected in (
        (["--checkpoint", str(tmp_path / "none.pth"), "--dataset", "synthreid", "--root", str(synthreid_tiny)],
         "checkpoint file not found"),
        (["--checkpoint", str(checkpoint), "--dataset", "market", "--root", str(synthreid_tiny)],
         "unknown dataset 'market'; valid names: cuhk03np, dukemtmcreid, imagefolder, market1501"),
        (["--checkpoint", str(checkpoint), "--dataset", "synthreid", "--root", str(empty)], str(empty)),
        (["--checkpoint", str(checkpoint), "--dataset", "synthreid", "--root", str(synthreid_tiny),
          "--dataset-option", "size=3"], "unknown option(s) size for dataset 'synthreid'"),
        (["--checkpoint", str(checkpoint)], "--dataset NAME --root DIR"),
    ):
        assert main(["eval", *args, "--out", str(tmp_path / "m.json")]) == 1
        captured = capsys.readouterr()
        err = captured.err
        assert err.startswith("reidkit eval: error: ") and expected in err, err
        assert err.count("\n") == 1 and "Traceback" not in err, err
    assert not (tmp_path / "m.json").exists()


def test_cli_eval_lightmbn_checkpoint_defaults_to_cosine(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                         synthreid_tiny: Path, dataset: SynthReID,
                                                         transform) -> None:  # noqa: ANN001
    from reidkit.models.lightmbn import LightMBN

    torch.manual_seed(0)
    net = LightMBN(40, feat_dim=16).eval()  # eval output: 7 separately normalised 16-d branch features
    checkpoint = tmp_path / "lmbn.pth"
    torch.save({"model": net.state_dict(), "model_cfg": {"arch": "lightmbn", "variant": "lmbn", "feat_dim": 16},
                "num_classes": 40}, checkpoint)
    out = tmp_path / "m.json"
    code = main(["eval", "--checkpoint", str(checkpoint), "--dataset", "synthreid", "--root", str(synthreid_tiny),
                 "--height", str(HEIGHT), "--width", str(WIDTH), "--out", str(out)])
    assert code == 0, capsys.readouterr().err
    expected = evaluate_model(net, dataset.query, dataset.gallery, transform=transform, metric="cosine",
                              progress=False)
    assert expected.summary() in capsys.readouterr().out
    metrics = json.loads(out.read_text())
    assert metrics["metric"] == "cosine" and metrics["feature_dim"] == 7 * 16 and metrics["mAP"] == expected.mAP


def test_cli_eval_takes_settings_from_a_config(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                               model: ReIDModel, dataset: SynthReID, transform,  # noqa: ANN001
                                               synthreid_tiny: Path) -> None:
    checkpoint = write_checkpoint(tmp_path / "ckpt.pth", model)
    code = main(["eval", "--checkpoint", str(checkpoint), "--config", "synth_quick", "--set", "eval.rerank=true",
                 "--set", "eval.rerank_k1=10", "--set", "eval.metric=euclidean", "--root", str(synthreid_tiny),
                 "--height", str(HEIGHT), "--width", str(WIDTH), "--workers", "0", "--out", str(tmp_path / "m.json")])
    assert code == 0, capsys.readouterr().err
    expected = evaluate_model(model, dataset.query, dataset.gallery, transform=transform, rerank=True,
                              rerank_params={"k1": 10}, progress=False)
    assert expected.summary() in capsys.readouterr().out
    assert json.loads((tmp_path / "m.json").read_text())["rerank_params"] == {"k1": 10, "k2": 6, "lambda_value": 0.3}
    assert main(["eval", "--checkpoint", str(checkpoint), "--config", "synth_quick", "--set", "eval.bogus=1"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("reidkit eval: error: ") and "unknown eval key(s) ['bogus']" in err and err.count("\n") == 1
