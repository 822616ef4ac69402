"""Trainer: exact resume, accumulation, clipping, EMA, freezing, NaN stop, JSON-lines log (CPU, tiny inputs)."""
from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn

from reidkit.data.datasets.base import ReIDItem
from reidkit.data.loaders import build_train_loader
from reidkit.data.transforms import build_transforms
from reidkit.engine.checkpoint import load_checkpoint
from reidkit.engine.ema import ModelEMA
from reidkit.engine.run_log import read_run_log
from reidkit.engine.schedulers import WarmupMultiStepLR
from reidkit.engine.trainer import (
    EvalSettings,
    NonFiniteLossError,
    Trainer,
    _configure_cudnn,
    _PendingStep,
    build_center_optimizer,
)
from reidkit.losses import build_loss
from reidkit.losses.combined import LossOutput
from reidkit.models.reid_model import ReIDOutput, build_model
from reidkit.runtime import seed_everything

NUM_IDS = 8


@pytest.fixture(scope="module")
def items(flat_colour_items: list[ReIDItem]) -> list[ReIDItem]:
    """The shared 8-identity image set of ``tests/conftest.py`` (``NUM_IDS`` identities)."""
    return flat_colour_items


def make_trainer(items: list[ReIDItem], out_dir: Path, center: bool = False, **kwargs: Any) -> Trainer:
    """Everything built afresh from seed 0: ResNet-18 (random init) at 64×32, CE + triplet (+ centre loss with its
    own SGD), Adam, warm-up."""
    seed_everything(0)
    model = build_model({"backbone": "resnet18", "pretrained": False}, NUM_IDS)
    loss = build_loss("ce + triplet" + (" + 0.0005*center" if center else ""), num_classes=NUM_IDS,
                      feat_dim=model.feature_dim)
    optimizer = torch.optim.Adam(model.param_groups(3.5e-4, 5e-4))
    if center:
        kwargs["center_optimizer"] = build_center_optimizer(loss, 0.5)
    scheduler = WarmupMultiStepLR(optimizer, [2], warmup_steps=2)
    transform = build_transforms({"height": 64, "width": 32, "cutout_size": 16}, train=True)
    loader = build_train_loader(items, transform, batch_size=8, num_instances=2, seed=0)
    kwargs.setdefault("progress", False)
    kwargs.setdefault("log_every", 1)
    return Trainer(model, loss, optimizer, scheduler, loader, out_dir=out_dir, device="cpu", **kwargs)


def assert_same_state(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


def assert_same_optimizer(a: torch.optim.Optimizer, b: torch.optim.Optimizer) -> None:
    sa, sb = a.state_dict()["state"], b.state_dict()["state"]
    assert sa.keys() == sb.keys()
    for index in sa:
        for name, value in sa[index].items():
            assert torch.equal(torch.as_tensor(value), torch.as_tensor(sb[index][name])), (index, name)


@pytest.mark.parametrize("options, stop_at", [
    ({"scheduler_per_iter": True}, 5),  # epochs of 3, 3, 4 batches: stops inside epoch 2 (after batch 2)
    ({}, 3),  # at the end of epoch 1
    ({"accumulate": 2, "ema_decay": 0.9, "freeze_epochs": 1, "clip_grad_norm": 5.0}, 3),  # inside epoch 2
    ({"center": True, "freeze_iters": 4}, 2),  # centre-loss SGD; stops while the backbone is still frozen
])
def test_resume_is_bit_identical(items: list[ReIDItem], tmp_path: Path, options: dict[str, Any],
                                 stop_at: int) -> None:
    epochs = 3
    full = make_trainer(items, tmp_path / "full", **options)
    full.fit(epochs)

    first = make_trainer(items, tmp_path / "cut", **options)
    first.fit(epochs, max_steps=stop_at)
    assert first.step == stop_at
    checkpoint = load_checkpoint(tmp_path / "cut" / "last.pt")
    assert checkpoint["step"] == stop_at and checkpoint["sampler_epoch"] == checkpoint["epoch"] - 1
    first.close()
    del first

    resumed = make_trainer(items, tmp_path / "cut", **options)  # a fresh process would build exactly this
    resumed.resume(tmp_path / "cut" / "last.pt")
    resumed.fit(epochs)
    assert (resumed.epoch, resumed.step) == (full.epoch, full.step)
    assert_same_state(full.model.state_dict(), resumed.model.state_dict())
    assert_same_state(full.loss.state_dict(), resumed.loss.state_dict())  # centre-loss centres
    assert_same_optimizer(full.optimizer, resumed.optimizer)
    if full.center_optimizer is not None:
        assert checkpoint["center_optimizer"]["param_groups"][0]["loss_weight"] == 0.0005
        assert full.center_optimizer.state_dict() == resumed.center_optimizer.state_dict()
    assert full.scheduler.state_dict() == resumed.scheduler.state_dict()
    if full.ema is not None:
        assert_same_state(full.ema.module.state_dict(), resumed.ema.module.state_dict())
    # the log of the interrupted + resumed run reads as one history equal to the uninterrupted one
    for kind in ("step", "epoch"):
        a = read_run_log(tmp_path / "full" / "log.jsonl", kind)
        b = read_run_log(tmp_path / "cut" / "log.jsonl", kind)
        assert [(r["step"], r["lr"], r["loss"]) for r in a] == [(r["step"], r["lr"], r["loss"]) for r in b]
    full.close()
    resumed.close()


def test_resume_mid_epoch_checkpoint_is_mid_epoch(items: list[ReIDItem], tmp_path: Path) -> None:
    trainer = make_trainer(items, tmp_path)
    trainer.fit(3, max_steps=2)
    state = load_checkpoint(tmp_path / "last.pt")
    assert (state["epoch"], state["batch_in_epoch"], state["step"]) == (1, 2, 2)
    assert state["loader_generator"] is not None and state["rng"]["torch"].dtype == torch.uint8
    trainer.close()


def test_log_contents(items: list[ReIDItem], tmp_path: Path) -> None:
    trainer = make_trainer(items, tmp_path, log_every=2)
    trainer.fit(2)
    trainer.close()
    records = read_run_log(tmp_path / "log.jsonl")
    steps = [r for r in records if r["kind"] == "step"]
    epochs = [r for r in records if r["kind"] == "epoch"]
    assert [r["step"] for r in steps] == list(range(2, trainer.step + 1, 2))
    assert [r["epoch"] for r in epochs] == [1, 2] and epochs[-1]["step"] == trainer.step
    for record in steps + epochs:
        assert set(record["loss"]) == {"ce", "ce_weighted", "triplet", "triplet_weighted", "total"}
        assert len(record["lr"]) == len(trainer.optimizer.param_groups)
        assert all(isinstance(v, float) for v in record["loss"].values())
    # per-epoch scheduler (BoT convention): epoch 1 trains at base * 0.01, epoch 2 at base * (0.01 + 0.99 / 2)
    assert epochs[0]["lr"][0] == pytest.approx(3.5e-4 * 0.01)
    assert epochs[1]["lr"][0] == pytest.approx(3.5e-4 * (0.01 + 0.99 / 2))


def bn_modes(module: nn.Module) -> list[bool]:
    return [m.training for m in module.modules() if isinstance(m, nn.BatchNorm2d)]


def test_freezing_keeps_bn_eval_and_unfreezes_after_n_epochs_also_on_resume(items: list[ReIDItem],
                                                                          tmp_path: Path) -> None:
    trainer = make_trainer(items, tmp_path, freeze_epochs=2, freeze_modules=("backbone", "neck"))
    neck_bias = trainer.model.neck.bn.bias  # type: ignore[union-attr]
    assert not neck_bias.requires_grad  # frozen by design (BNNeck)
    initial = {k: v.clone() for k, v in trainer.model.backbone.state_dict().items()}
    seen: list[bool] = []
    first_bn = next(m for m in trainer.model.backbone.modules() if isinstance(m, nn.BatchNorm2d))
    first_bn.register_forward_pre_hook(lambda module, args: seen.append(module.training))
    trainer.fit(3, max_steps=2)  # stops inside epoch 1
    assert seen and not any(seen)
    trainer.close()

    resumed = make_trainer(items, tmp_path, freeze_epochs=2, freeze_modules=("backbone", "neck"))
    assert all(p.requires_grad for p in resumed.model.backbone.parameters())
    resumed.resume(tmp_path / "last.pt")
    assert not any(p.requires_grad for p in resumed.model.backbone.parameters())  # derived from the epoch
    seen.clear()
    first_bn = next(m for m in resumed.model.backbone.modules() if isinstance(m, nn.BatchNorm2d))
    first_bn.register_forward_pre_hook(lambda module, args: seen.append(module.training))
    head_before = resumed.model.head.weight.detach().clone()  # type: ignore[union-attr]
    resumed.fit(2)  # finishes epochs 1 and 2, both frozen
    assert seen and not any(seen)
    assert_same_state(initial, resumed.model.backbone.state_dict())  # weights and BN statistics untouched
    assert not torch.equal(head_before, resumed.model.head.weight)  # the head trained
    assert resumed.frozen

    seen.clear()
    resumed.fit(3)  # epoch 3: unfrozen, BN in train mode, backbone moves
    assert seen and all(seen) and all(bn_modes(resumed.model.backbone))
    assert all(p.requires_grad for p in resumed.model.backbone.parameters())
    assert not neck_bias.requires_grad and not resumed.model.neck.bn.bias.requires_grad  # type: ignore
    assert not torch.equal(initial["conv1.weight"], resumed.model.backbone.state_dict()["conv1.weight"])
    resumed.close()


# ------------------------------------------------------------------------------- tiny BN-free model


class ToyModel(nn.Module):
    """Linear classifier on flattened 3×4×2 images; ``nan_after``: the logits become NaN from that call on."""

    def __init__(self, nan_after: int | None = None) -> None:
        super().__init__()
        self.fc = nn.Linear(24, 4)
        self.calls = 0
        self.nan_after = nan_after

    def forward(self, images: torch.Tensor, targets: torch.Tensor | None = None) -> ReIDOutput:
        self.calls += 1
        features = images.flatten(1)
        logits = self.fc(features)
        if self.nan_after is not None and self.calls > self.nan_after:
            logits = logits * float("nan")
        return ReIDOutput(logits, features)


class ListLoader:
    """Fixed batches (the same every epoch) with the ``set_epoch`` / ``len`` interface of the train loader."""

    def __init__(self, batches: Sequence[dict[str, torch.Tensor]]) -> None:
        self.batches = list(batches)
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.batches)

    def __iter__(self) -> Iterator[dict[str, torch.Tensor]]:
        return iter(self.batches)


def toy_batches(sizes: Sequence[int], seed: int = 0) -> list[dict[str, torch.Tensor]]:
    g = torch.Generator().manual_seed(seed)
    return [{"img": torch.randn(n, 3, 4, 2, generator=g), "pid": torch.randint(0, 4, (n,), generator=g)}
            for n in sizes]


def split(batches: list[dict[str, torch.Tensor]], parts: int) -> list[dict[str, torch.Tensor]]:
    return [{k: v.chunk(parts)[i] for k, v in b.items()} for b in batches for i in range(parts)]


def toy_trainer(batches: list[dict[str, torch.Tensor]], out_dir: Path, lr: float = 0.5,
                **kwargs: Any) -> Trainer:
    torch.manual_seed(0)
    model = ToyModel(kwargs.pop("nan_after", None))
    optimizer = torch.optim.SGD(model.parameters(), lr=lr)
    return Trainer(model, build_loss("ce"), optimizer, None, ListLoader(batches), out_dir=out_dir,
                   device=kwargs.pop("device", "cpu"), progress=False, **kwargs)


def test_accumulation_equals_one_big_batch(tmp_path: Path) -> None:
    big = toy_batches([8, 8, 4])  # the last step of the epoch sees a partial group (one micro-batch)
    micro = split(big[:2], 2) + [big[2]]
    one = toy_trainer(big, tmp_path / "big")
    one.fit(2)
    acc = toy_trainer(micro, tmp_path / "acc", accumulate=2)
    acc.fit(2)
    assert one.step == acc.step == 6
    for a, b in zip(one.model.parameters(), acc.model.parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-6)
    without = toy_trainer(micro, tmp_path / "plain")
    without.fit(2)
    assert not torch.allclose(without.model.fc.weight, one.model.fc.weight, atol=1e-4)  # the test can fail
    for t in (one, acc, without):
        t.close()


def test_clipping_bounds_the_gradient_norm(tmp_path: Path) -> None:
    batches = toy_batches([8])
    trainer = toy_trainer(batches, tmp_path, lr=1.0, clip_grad_norm=1e-3)
    before = [p.detach().clone() for p in trainer.model.parameters()]
    trainer.fit(1)
    # plain SGD with lr 1: the update is minus the (clipped) gradient
    update = torch.cat([(p.detach() - b).flatten() for p, b in zip(trainer.model.parameters(), before)])
    assert trainer.last_grad_norm is not None and trainer.last_grad_norm > 1e-2  # clipping was active
    assert float(update.norm()) == pytest.approx(1e-3, rel=1e-4)
    trainer.close()


def test_ema_formula_on_hand_made_example() -> None:
    model = nn.Sequential(nn.Linear(1, 1, bias=False), nn.BatchNorm1d(1))
    with torch.no_grad():
        model[0].weight.fill_(1.0)
    ema = ModelEMA(model, decay=0.9)
    with torch.no_grad():
        model[0].weight.fill_(3.0)
        model[1].running_mean.fill_(10.0)
        model[1].num_batches_tracked.fill_(7)
    ema.update(model)
    assert ema.module[0].weight.item() == pytest.approx(0.9 * 1 + 0.1 * 3)  # 1.2
    assert ema.module[1].running_mean.item() == pytest.approx(0.1 * 10)
    assert ema.module[1].num_batches_tracked.item() == 7  # integer buffers are copied
    ema.update(model)
    assert ema.module[0].weight.item() == pytest.approx(0.9 * 1.2 + 0.1 * 3)  # 1.38
    assert not any(p.requires_grad for p in ema.module.parameters()) and not ema.module.training
    other = ModelEMA(model, decay=0.5)
    other.load_state_dict(ema.state_dict())
    assert other.decay == 0.9 and other.updates == 2 and other.module[0].weight.item() == pytest.approx(1.38)
    with pytest.raises(ValueError, match="ema_decay"):
        ModelEMA(model, 1.0)


def test_nan_loss_stops_with_epoch_step_pids_and_last_checkpoint(tmp_path: Path) -> None:
    batches = toy_batches([4, 4, 4, 4])
    trainer = toy_trainer(batches, tmp_path, nan_after=2, checkpoint_every_steps=1)
    with pytest.raises(NonFiniteLossError) as info:
        trainer.fit(3)
    message = str(info.value)
    assert "epoch 1, step 3" in message and "batch 3/4" in message
    assert str(batches[2]["pid"].tolist()) in message
    assert str(tmp_path / "last.pt") in message
    assert load_checkpoint(tmp_path / "last.pt")["step"] == 2  # the last good state was not overwritten
    trainer.close()
    fresh = toy_trainer(batches, tmp_path / "fresh", nan_after=0)
    with pytest.raises(NonFiniteLossError, match="no checkpoint was written yet"):
        fresh.fit(1)
    fresh.close()


def test_bf16_autocast_on_cpu_runs(tmp_path: Path) -> None:
    trainer = toy_trainer(toy_batches([8, 8]), tmp_path, amp="bf16")
    trainer.fit(1)
    assert all(torch.isfinite(p).all() for p in trainer.model.parameters()) and trainer.step == 2
    trainer.close()


def test_argument_errors(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="amp"):
        toy_trainer(toy_batches([4]), tmp_path, amp="fp8")
    with pytest.raises(ValueError, match="accumulate"):
        toy_trainer(toy_batches([4]), tmp_path, accumulate=0)
    with pytest.raises(ValueError, match="no submodule 'backbone'.*fc"):
        toy_trainer(toy_batches([4]), tmp_path, freeze_epochs=1)
    trainer = toy_trainer(toy_batches([4]), tmp_path / "a", accumulate=1)
    trainer.fit(1)
    other = toy_trainer(toy_batches([4]), tmp_path / "b", accumulate=2)
    with pytest.raises(ValueError, match="accumulate=1"):
        other.resume(tmp_path / "a" / "last.pt")
    trainer.close()
    other.close()


def test_fit_evaluates_validation_and_keeps_best(items: list[ReIDItem], tmp_path: Path) -> None:
    from reidkit.data.loaders import build_test_loaders

    query = [it for it in items if it.camid == 0]
    gallery = [it for it in items if it.camid == 1]
    loaders = build_test_loaders(query, gallery, build_transforms({"height": 64, "width": 32, "cutout_size": 16}, train=False),
                                 batch_size=16)
    trainer = make_trainer(items, tmp_path, ema_decay=0.5)
    records = trainer.fit(2, evaluate_every=1, validation=loaders)
    trainer.close()
    evals = read_run_log(tmp_path / "log.jsonl", "eval")
    assert [r["epoch"] for r in evals] == [1, 2] and all(r["split"] == "validation" for r in evals)
    assert all(0.0 <= r["mAP"] <= 1.0 and 0.0 <= r["rank1"] <= 1.0 for r in evals)
    assert records[0]["eval"] == {k: v for k, v in evals[0].items() if k not in ("kind", "epoch", "step")}
    best = load_checkpoint(tmp_path / "best.pt")
    assert best["best_metric"] == max(r["mAP"] for r in evals)
    assert trainer.model.training  # back in training mode after evaluation
    with pytest.raises(ValueError, match="validation"):
        trainer.fit(3, evaluate_every=1)


# ------------------------------------------------------------------------------------ centre-loss optimiser


@pytest.mark.parametrize("weight", [0.5, 1e-3])
def test_center_step_is_bot_sgd_independent_of_the_loss_weight(tmp_path: Path, weight: float) -> None:
    batches = toy_batches([8])
    torch.manual_seed(0)
    model = ToyModel()  # features are the flattened images: the centres' gradient has a closed form
    loss = build_loss([{"name": "ce"}, {"name": "center", "weight": weight}], num_classes=4, feat_dim=24)
    centers = loss.losses["center"].centers
    before = centers.detach().clone()
    center_optimizer = build_center_optimizer(loss, 0.5)
    assert center_optimizer is not None and center_optimizer.param_groups[0]["params"] == [centers]
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    trainer = Trainer(model, loss, optimizer, None, ListLoader(batches), out_dir=tmp_path, device="cpu",
                      progress=False, center_optimizer=center_optimizer)
    trainer.fit(1)
    trainer.close()
    # L = w/B Σ_i ‖x_i − c_{y_i}‖²: ∂L/∂c_k = (2w/B) Σ_{i: y_i = k} (c_k − x_i); divided by w, times lr 0.5
    x, y = batches[0]["img"].flatten(1), batches[0]["pid"]
    expected = before.clone()
    for k in range(4):
        rows = x[y == k]
        expected[k] = before[k] - 0.5 * (2 / 8) * (before[k] - rows).sum(0)
    assert (y == 0).any() and not torch.equal(expected, before)
    torch.testing.assert_close(centers.detach(), expected, rtol=0, atol=1e-6)
    assert centers.grad is None  # zeroed with the main optimiser


def test_center_optimizer_needs_weights_and_is_left_out_of_the_main_optimizer() -> None:
    from reidkit.config import load_config
    from reidkit.engine.run import _build_optimizer

    loss = build_loss("ce + 0.0005*center", num_classes=4, feat_dim=24)
    cfg = load_config("synth_quick")
    optimizer = _build_optimizer(cfg, ToyModel(), loss)
    in_main = {id(p) for g in optimizer.param_groups for p in g["params"]}
    assert id(loss.losses["center"].centers) not in in_main
    assert build_center_optimizer(build_loss("ce"), 0.5) is None
    assert build_center_optimizer(build_loss("ce + 0*center", num_classes=4, feat_dim=24), 0.5) is None
    bad = torch.optim.SGD([loss.losses["center"].centers], lr=0.5)  # no loss_weight in its group
    with pytest.raises(ValueError, match="loss_weight"):
        Trainer(ToyModel(), loss, torch.optim.SGD(ToyModel().parameters(), lr=0.1), None, ListLoader([]),
                out_dir=Path("unused"), device="cpu", center_optimizer=bad)


# ------------------------------------------------------------------------------- validation eval settings


def test_validation_uses_the_eval_settings_of_the_final_evaluation(items: list[ReIDItem], tmp_path: Path) -> None:
    from reidkit.data.loaders import build_test_loaders
    from reidkit.engine.evaluator import evaluate_model

    query = [it for it in items if it.camid == 0]
    # gallery identities shuffled against the images: the ranking is far from perfect and depends on the distance
    gallery = [ReIDItem(it.path, (it.pid * 3) % NUM_IDS, it.camid) for it in items if it.camid == 1]
    transform = build_transforms({"height": 64, "width": 32, "cutout_size": 16}, train=False)
    loaders = build_test_loaders(query, gallery, transform, batch_size=16)
    trainer = make_trainer(items, tmp_path, eval_settings=EvalSettings(metric="cosine", flip=True))
    records = trainer.fit(1, evaluate_every=1, validation=loaders)
    trainer.close()

    def final(metric: str, flip: bool, normalize: bool | None) -> dict[str, Any]:
        return evaluate_model(trainer.model, query, gallery, transform=transform, metric=metric, flip=flip,
                              normalize=normalize, progress=False).to_dict()

    same, other = final("cosine", True, None), final("euclidean", False, False)
    keys = ("mAP", "mINP", "rank1", "rank5")
    assert {k: records[0]["eval"][k] for k in keys} == pytest.approx({k: same[k] for k in keys}, abs=1e-9)
    assert {k: other[k] for k in keys} != pytest.approx({k: same[k] for k in keys}, abs=1e-9)  # settings matter
    # re-ranking goes through the same path as the final evaluation too
    params = {"k1": 4, "k2": 2, "lambda_value": 0.3}
    trainer.eval_settings = EvalSettings(metric="euclidean", rerank=True, rerank_params=params)
    reranked = trainer.evaluate(*loaders, split="validation")
    expected = evaluate_model(trainer.model, query, gallery, transform=transform, rerank=True, rerank_params=params,
                              progress=False).to_dict()
    assert {k: reranked[k] for k in keys} == pytest.approx({k: expected[k] for k in keys}, abs=1e-9)
    with pytest.raises(ValueError, match="unknown metric"):
        EvalSettings(metric="manhattan")


# -------------------------------------------------------------------------------------------- torch.compile


class TinyConvNet(nn.Module):
    """conv → BN → ReLU → global pool → linear: a re-id model small enough to compile in a second."""

    def __init__(self) -> None:
        super().__init__()
        self.backbone = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU())
        self.fc = nn.Linear(4, 4)

    def forward(self, images: torch.Tensor, targets: torch.Tensor | None = None) -> Any:
        features = self.backbone(images).mean(dim=(2, 3))
        return ReIDOutput(self.fc(features), features) if self.training else features


def test_compile_gives_the_same_losses_and_clean_checkpoint_keys(tmp_path: Path) -> None:
    calls: list[int] = []

    def counting_backend(graph: torch.fx.GraphModule, example_inputs: list[torch.Tensor]) -> Any:
        calls.append(len(example_inputs))
        return graph.forward  # run the captured graph as it is ("eager")

    batches = toy_batches([8, 8, 8])
    losses = {}
    for name, options in (("plain", {}), ("compiled", {"compile": True, "compile_backend": counting_backend})):
        torch.manual_seed(0)
        model = TinyConvNet()
        trainer = Trainer(model, build_loss("ce"), torch.optim.SGD(model.parameters(), lr=0.1), None,
                          ListLoader(batches), out_dir=tmp_path / name, device="cpu", progress=False, log_every=1,
                          **options)
        trainer.fit(2)
        trainer.close()
        losses[name] = [r["loss"]["total"] for r in read_run_log(tmp_path / name / "log.jsonl", "step")]
    torch._dynamo.reset()
    assert calls  # the forward really went through torch.compile
    assert losses["compiled"] == pytest.approx(losses["plain"], rel=1e-6) and len(losses["plain"]) == 6
    keys = {name: set(load_checkpoint(tmp_path / name / "last.pt")["model"]) for name in losses}
    assert keys["compiled"] == keys["plain"] and not any("_orig_mod" in k for k in keys["compiled"])


# ---------------------------------------------------------------------------------------------- freeze_iters


def test_freeze_iters_freezes_the_backbone_for_the_first_steps_then_trains_it(items: list[ReIDItem],
                                                                            tmp_path: Path) -> None:
    trainer = make_trainer(items, tmp_path, freeze_iters=2)
    initial = {k: v.clone() for k, v in trainer.model.backbone.state_dict().items()}
    seen: list[bool] = []
    first_bn = next(m for m in trainer.model.backbone.modules() if isinstance(m, nn.BatchNorm2d))
    first_bn.register_forward_pre_hook(lambda module, args: seen.append(module.training))
    trainer.fit(3, max_steps=1)
    trainer.close()

    resumed = make_trainer(items, tmp_path, freeze_iters=2)  # the state survives a resume (derived from step)
    resumed.resume(tmp_path / "last.pt")
    assert resumed.frozen and not any(p.requires_grad for p in resumed.model.backbone.parameters())
    first_bn = next(m for m in resumed.model.backbone.modules() if isinstance(m, nn.BatchNorm2d))
    first_bn.register_forward_pre_hook(lambda module, args: seen.append(module.training))
    resumed.fit(3, max_steps=2)
    assert_same_state(initial, resumed.model.backbone.state_dict())  # weights and BN statistics untouched
    assert seen == [False, False]
    resumed.fit(3, max_steps=3)  # step 3 (still epoch 1): unfrozen, BN in train mode, the backbone moves
    assert seen == [False, False, True] and not resumed.frozen
    assert not torch.equal(initial["conv1.weight"], resumed.model.backbone.state_dict()["conv1.weight"])
    resumed.close()


def test_mid_epoch_resume_needs_the_same_number_of_processes(tmp_path: Path) -> None:
    from reidkit.engine.checkpoint import save_checkpoint

    batches = toy_batches([4, 4, 4])
    trainer = toy_trainer(batches, tmp_path / "a")
    trainer.fit(2, max_steps=1)  # inside epoch 1
    trainer.close()
    state = load_checkpoint(tmp_path / "a" / "last.pt")
    assert state["world_size"] == 1 and state["batch_in_epoch"] == 1
    save_checkpoint({**state, "world_size": 2}, tmp_path / "two.pt")
    other = toy_trainer(batches, tmp_path / "b")
    with pytest.raises(ValueError, match="run on 2 process.*this run has 1"):
        other.resume(tmp_path / "two.pt")
    save_checkpoint({**state, "world_size": 2, "batch_in_epoch": 0}, tmp_path / "epoch_end.pt")
    other.resume(tmp_path / "epoch_end.pt")  # an epoch boundary resumes on any number of processes
    other.close()


# ------------------------------------------------------------------------------ host reads of the step loop


class PlainCrossEntropy(nn.Module):
    """Cross-entropy without the label range check of reidkit's losses (whose CPU path reads the labels' range
    back), so that every host read left in a step is the trainer's."""

    def forward(self, output: ReIDOutput, targets: torch.Tensor) -> LossOutput:
        total = nn.functional.cross_entropy(output.logits, targets)
        return LossOutput(total, {"ce": total.detach(), "total": total.detach()})


HOST_READS = ("item", "tolist", "__float__", "__int__", "__bool__")
"""The tensor methods that copy a value to Python (a device synchronisation on CUDA)."""


def step_loss(kind: str) -> nn.Module:
    """``"plain"``: :class:`PlainCrossEntropy`; ``"ce + triplet"``: reidkit's own losses on their sync-free path
    (forced on the CPU too; the default on CUDA)."""
    if kind == "plain":
        return PlainCrossEntropy()
    return build_loss([{"name": "ce", "sync_free": True}, {"name": "triplet", "sync_free": True}])


@pytest.mark.parametrize("loss_kind", ["plain", "ce + triplet"])
@pytest.mark.parametrize("device", ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(
    not torch.cuda.is_available(), reason="needs a CUDA device"))])
@pytest.mark.parametrize("options, expected", [
    # step N is read once, after step N + 1 was taken; the last step of an epoch at the epoch's end
    ({"log_every": 1000}, [(1, 2), (2, 3), (3, 4), (4, 5), (5, 5), (6, 7), (7, 8), (8, 9), (9, 10), (10, 10)]),
    # logging reads nothing earlier; a checkpoint reads every pending step before it is written
    ({"log_every": 1, "checkpoint_every_steps": 2},
     [(1, 2), (2, 2), (3, 4), (4, 4), (5, 5), (6, 6), (7, 8), (8, 8), (9, 10), (10, 10)]),
])
def test_steps_are_read_back_one_step_late_and_only_through_pending_results(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, device: str, options: dict[str, Any],
        expected: list[tuple[int, int]], loss_kind: str) -> None:
    torch.manual_seed(0)
    model = ToyModel()
    trainer = Trainer(model, step_loss(loss_kind), torch.optim.SGD(model.parameters(), lr=0.1), None,
                      ListLoader(toy_batches([4] * 5)), out_dir=tmp_path, device=device, progress=False,
                      clip_grad_norm=10.0, ema_decay=0.9, **options)
    reads: list[str] = []  # host reads of tensors outside _PendingStep.result
    results: list[tuple[int, int]] = []  # (the step read back, the steps taken when it was read)
    buffers: list[tuple[bool, bool]] = []  # (values pinned, an event to wait on)
    in_result = False
    original_result = _PendingStep.result

    def counted_result(pending: _PendingStep) -> Any:
        nonlocal in_result
        results.append((pending.step, trainer.step))
        buffers.append((pending.values.is_pinned(), pending.event is not None))
        in_result = True
        try:
            return original_result(pending)
        finally:
            in_result = False

    def counting(name: str) -> Any:
        original = getattr(torch.Tensor, name)

        def read(self: torch.Tensor, *args: Any, **kwargs: Any) -> Any:
            if not in_result:
                reads.append(name)
            return original(self, *args, **kwargs)
        return read

    monkeypatch.setattr(_PendingStep, "result", counted_result)
    for name in HOST_READS:
        monkeypatch.setattr(torch.Tensor, name, counting(name))
    if device == "cuda":
        monkeypatch.setattr(torch.cuda, "synchronize", lambda *a, **k: reads.append("torch.cuda.synchronize"))
    assert float(torch.ones(())) == 1.0 and torch.ones(()) and reads == ["__float__", "__bool__"]  # seen
    reads.clear()
    trainer.fit(2)
    monkeypatch.undo()
    trainer.close()
    assert reads == [] and results == expected
    assert buffers == [(device == "cuda", device == "cuda")] * len(expected)  # pinned copies and events on CUDA
    assert trainer.last_grad_norm is not None and trainer.last_grad_norm > 0
    epochs = read_run_log(tmp_path / "log.jsonl", "epoch")
    assert [r["step"] for r in epochs] == [5, 10] and all(np.isfinite(r["loss"]["ce"]) for r in epochs)
    if loss_kind == "ce + triplet":  # the triplet term was computed (some batches hold valid anchors)
        assert all(r["loss"]["triplet"] > 0 for r in epochs)


def test_nan_found_a_step_late_names_the_bad_micro_batch_and_nothing_is_written_after_it(tmp_path: Path) -> None:
    batches = toy_batches([4] * 6)
    # accumulate 2: micro-batches (1, 2) make step 1, (3, 4) step 2, ...; the 4th forward gives NaN logits
    trainer = toy_trainer(batches, tmp_path, nan_after=3, accumulate=2, log_every=1)
    with pytest.raises(NonFiniteLossError) as info:
        trainer.fit(2)
    message = str(info.value)
    assert "non-finite loss nan at epoch 1, step 2 (batch 4/6 of the epoch)" in message
    assert f"batch pids: {batches[3]['pid'].tolist()}; loss terms: {{" in message and "'total': nan" in message
    assert "no checkpoint was written yet" in message and "Read back when 3 steps were done" in message
    assert trainer.step == 3  # found while step 3 was queued
    trainer.close()
    assert [r["step"] for r in read_run_log(tmp_path / "log.jsonl")] == [1]  # step 1 only: nothing after the bad one
    assert not (tmp_path / "last.pt").exists()


@pytest.mark.parametrize("spec, given, expected", [
    ("ce + triplet", None, False),  # both outputs read: DDP's default (no graph walk per step)
    ("triplet", None, True),  # no logits read: the classifier gets no gradient
    ("ce", None, True),  # no features read
    ("triplet", False, False),  # an explicit choice wins
])
def test_find_unused_parameters_follows_the_loss_unless_given(tmp_path: Path, spec: str, given: bool | None,
                                                              expected: bool) -> None:
    model = ToyModel()
    trainer = Trainer(model, build_loss(spec), torch.optim.SGD(model.parameters(), lr=0.1), None,
                      ListLoader(toy_batches([4])), out_dir=tmp_path, device="cpu", progress=False,
                      find_unused_parameters=given)
    trainer.close()
    assert trainer.find_unused_parameters is expected
    assert trainer.train_module is model  # a single process: no DDP wrapper, the flag has no effect


# ------------------------------------------------------------------------------------------- cudnn.benchmark


def test_cudnn_benchmark_is_set_only_for_cuda_devices(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.backends.cudnn, "benchmark", False)
    _configure_cudnn(torch.device("cpu"), True)
    assert torch.backends.cudnn.benchmark is False
    _configure_cudnn(torch.device("cuda"), True)  # the flag itself needs no GPU
    assert torch.backends.cudnn.benchmark is True
    _configure_cudnn(torch.device("cuda", 0), False)
    assert torch.backends.cudnn.benchmark is False
    monkeypatch.setattr(torch, "are_deterministic_algorithms_enabled", lambda: True)
    with pytest.raises(ValueError, match="deterministic algorithms are enabled.*train.cudnn_benchmark=false"):
        _configure_cudnn(torch.device("cuda"), True)
    _configure_cudnn(torch.device("cuda"), False)
    trainer = toy_trainer(toy_batches([4]), tmp_path)  # on the CPU: the keyword is kept, the flag left alone
    assert trainer.cudnn_benchmark is True and torch.backends.cudnn.benchmark is False
    trainer.close()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("wanted", [True, False])  # not "benchmark": pytest-benchmark owns that fixture name
def test_cuda_trainer_sets_cudnn_benchmark(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, wanted: bool) -> None:
    monkeypatch.setattr(torch.backends.cudnn, "benchmark", not wanted)
    trainer = toy_trainer(toy_batches([4]), tmp_path, device="cuda", cudnn_benchmark=wanted)
    assert torch.backends.cudnn.benchmark is wanted
    trainer.close()
