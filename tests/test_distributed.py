"""Data-parallel training: a real 2-process Gloo run on CPU, and the sharding / gathering helpers without processes."""
from __future__ import annotations

import json
import os
import socket
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import torch.multiprocessing as mp

from reidkit.config import load_config
from reidkit.engine.distributed import (
    DistContext,
    broadcast_object,
    concat_features,
    context_from_env,
    gather_features,
    rank_flags,
    run_on_rank0,
    shard,
    shard_bounds,
)
from reidkit.engine.run import per_rank_batch_size
from reidkit.engine.trainer import loss_leaves_outputs_unused
from reidkit.evaluation.features import Features

WORLD = 2
OVERRIDES = ["data.height=32", "data.width=16", "data.workers=0", "data.batch_size=16", "data.num_instances=4",
             "data.test_batch_size=64", "log.progress=false", "log.table=false", "train.epochs=2",
             "train.eval_every=1", "train.val_ids=6", "train.select_on=last", "train.device=cpu", "eval.metric=cosine",
             "eval.flip=true"]


# ------------------------------------------------------------------------------------- helpers, no processes


def test_shard_bounds_cover_the_items_once_in_order() -> None:
    assert [shard_bounds(7, r, 3) for r in range(3)] == [(0, 3), (3, 5), (5, 7)]  # the first 7 % 3 ranks get one more
    for n, world in ((2, 2), (10, 4), (129, 2)):
        pieces = [list(range(*shard_bounds(n, r, world))) for r in range(world)]
        assert sum(pieces, []) == list(range(n))
        assert max(map(len, pieces)) - min(map(len, pieces)) <= 1
    with pytest.raises(ValueError, match="cannot share 1 items over 2"):
        shard_bounds(1, 0, 2)
    with pytest.raises(ValueError, match="rank must be in"):
        shard_bounds(5, 2, 2)
    assert shard(list("abcde"), DistContext(rank=1, world_size=2)) == ["d", "e"]
    assert shard(list("abc"), DistContext()) == ["a", "b", "c"]


def _features(rows: range) -> Features:
    return Features(torch.tensor([[float(r), -float(r)] for r in rows]), np.array([r // 2 for r in rows]),
                    np.array([r % 3 for r in rows]), [f"img{r}.jpg" for r in rows])


def test_concat_features_restores_the_split_order_and_single_process_gather_is_identity() -> None:
    whole = _features(range(5))
    parts = [_features(range(*shard_bounds(5, r, 2))) for r in range(2)]
    joined = concat_features(parts)
    assert torch.equal(joined.features, whole.features)
    assert joined.pids.tolist() == whole.pids.tolist() and joined.camids.tolist() == whole.camids.tolist()
    assert joined.paths == whole.paths
    assert gather_features(whole, DistContext()) is whole
    assert broadcast_object({"mAP": 0.5}, DistContext()) == {"mAP": 0.5}
    with pytest.raises(ValueError, match="at least one"):
        concat_features([])


def test_context_from_env() -> None:
    assert context_from_env("cpu", {}) == DistContext(device=torch.device("cpu"))
    assert context_from_env("cpu", {"WORLD_SIZE": "1"}).world_size == 1
    ctx = context_from_env("cpu", {"WORLD_SIZE": "4", "RANK": "3", "LOCAL_RANK": "1"})
    assert (ctx.rank, ctx.world_size, ctx.local_rank, ctx.backend, ctx.device) == (3, 4, 1, "gloo",
                                                                                 torch.device("cpu"))
    assert ctx.distributed and not ctx.is_main
    with pytest.raises(ValueError, match="RANK=4 must be < WORLD_SIZE=4"):
        context_from_env("cpu", {"WORLD_SIZE": "4", "RANK": "4", "LOCAL_RANK": "0"})
    with pytest.raises(ValueError, match="RANK and LOCAL_RANK"):
        context_from_env("cpu", {"WORLD_SIZE": "2"})
    with pytest.raises(ValueError, match="WORLD_SIZE='two'"):
        context_from_env("cpu", {"WORLD_SIZE": "two"})


def test_rank0_helpers_in_a_single_process_are_plain_calls() -> None:
    assert run_on_rank0(lambda: {"mAP": 0.25}, DistContext()) == {"mAP": 0.25}

    def failing() -> None:
        raise KeyError("no such split")

    with pytest.raises(KeyError, match="no such split"):  # the original exception, unchanged
        run_on_rank0(failing, DistContext())
    flags = rank_flags(torch.tensor(1.0, dtype=torch.float64), DistContext())
    assert flags.tolist() == [1.0] and flags.dtype == torch.float64
    with pytest.raises(ValueError, match=r"0-d tensor, got shape \(2,\)"):
        rank_flags(torch.zeros(2), DistContext())


@pytest.mark.parametrize("spec, unused", [
    ("1.0*ce + 1.0*triplet", False),  # both outputs read: DDP's default
    ("1.0*triplet", True),  # no logits read: the classifier gets no gradient
    ("1.0*ce", True),  # no features read
    ("0.0*ce + 1.0*triplet", False),  # a zero weight still reads (a zero gradient, not a missing one)
    ("1.0*focal + 5e-4*center", False),
])
def test_loss_leaves_outputs_unused_follows_the_inputs_the_terms_read(spec: str, unused: bool) -> None:
    from reidkit.losses import build_loss

    assert loss_leaves_outputs_unused(build_loss(spec, num_classes=4, feat_dim=8)) is unused
    assert loss_leaves_outputs_unused(torch.nn.CrossEntropyLoss()) is False  # terms unknown: DDP's default


def test_global_batch_is_split_over_ranks() -> None:
    assert per_rank_batch_size(64, 4, 1) == 64 and per_rank_batch_size(64, 4, 2) == 32
    with pytest.raises(ValueError, match="multiple of 16"):
        per_rank_batch_size(24, 4, 4)


def test_sync_bn_on_cpu_is_a_clear_error(tmp_path: Path) -> None:
    from reidkit.engine.trainer import Trainer

    model = torch.nn.Sequential(torch.nn.BatchNorm1d(3))

    class Loader(list):
        def set_epoch(self, epoch: int) -> None:
            del epoch

    with pytest.raises(ValueError, match="sync_bn=True needs CUDA with the NCCL backend"):
        Trainer(model, torch.nn.Identity(), torch.optim.SGD(model.parameters(), lr=0.1), None, Loader(),
                out_dir=tmp_path, device="cpu", sync_bn=True)
    with pytest.raises(ValueError, match="backend gloo"):
        Trainer(model, torch.nn.Identity(), torch.optim.SGD(model.parameters(), lr=0.1), None, Loader(),
                out_dir=tmp_path, device="cpu", sync_bn=True,
                dist=DistContext(0, 2, 0, torch.device("cpu"), "gloo"))
    assert not list(tmp_path.iterdir())


# --------------------------------------------------------------------------------------- a real 2-process run


def _free_ports(count: int) -> list[int]:
    """``count`` distinct free TCP ports (the sockets are held open together while the ports are chosen)."""
    sockets = [socket.socket() for _ in range(count)]
    try:
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [int(sock.getsockname()[1]) for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def _worker(rank: int, root: str, out: str, side: str, port: int, second_port: int) -> None:
    """One torchrun-like process: the environment torchrun would set, then reidkit's own training entry point."""
    os.environ.update({"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port), "RANK": str(rank),
                       "WORLD_SIZE": str(WORLD), "LOCAL_RANK": str(rank)})
    torch.set_num_threads(1)
    import torch.distributed as dist

    from reidkit.engine.distributed import distributed_session
    from reidkit.engine.run import build_run, train_run

    cfg = load_config("synth_quick", [f"data.root={root}", *OVERRIDES])
    with distributed_session("cpu") as ctx:
        run = build_run(cfg, out, ctx)
        seen: list[list[int]] = []
        run.model.register_forward_pre_hook(
            lambda module, args: seen.append(args[1].tolist()) if len(args) > 1 else None)
        metrics = train_run(run)
        sampler = run.train_loader.identity_sampler
        planned = []
        for epoch in range(cfg["train"]["epochs"]):
            sampler.set_epoch(epoch)
            planned.append([[int(i) for i in batch] for batch in sampler])
        items = run.train_loader.dataset.items
        # interrupted after epoch 1, resumed by a fresh run: it must end exactly where the straight run ended
        for name, epochs in (("first", 1), ("resumed", 2)):
            part = build_run(cfg, Path(side) / name, ctx)
            if name == "resumed":
                part.trainer.resume(Path(side) / "first" / "last.pt")
            part.trainer.fit(epochs, evaluate_every=1, validation=part.validation_loaders())
            part.trainer.close()
        torch.save({"model": run.model.state_dict(), "seen": seen, "planned": planned,
                    "planned_pids": [[[items[i].pid for i in b] for b in epoch] for epoch in planned],
                    "full_plan": [sampler.truncated_plan(e).tolist() for e in range(cfg["train"]["epochs"])],
                    "metrics": metrics, "local_batch": sampler.batch_size,
                    "resumed_model": part.model.state_dict(), "group_left_after_run": dist.is_initialized()},
                   Path(side) / f"rank{rank}.pt")
    closed = {"after_run": dist.is_initialized()}
    os.environ["MASTER_PORT"] = str(second_port)
    try:
        with distributed_session("cpu"):
            raise RuntimeError("a failing run")
    except RuntimeError:
        closed["after_error"] = dist.is_initialized()
    torch.save(closed, Path(side) / f"closed{rank}.pt")


@pytest.fixture(scope="module")
def ddp_run(synthreid_tiny: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    base = tmp_path_factory.mktemp("ddp")
    out, side = base / "run", base / "side"
    side.mkdir()
    mp.spawn(_worker, args=(str(synthreid_tiny), str(out), str(side), *_free_ports(2)), nprocs=WORLD,
             join=True)
    ranks = [{**torch.load(side / f"rank{r}.pt", weights_only=True), **torch.load(side / f"closed{r}.pt", weights_only=True)}
             for r in range(WORLD)]
    return {"out": out, "side": side, "ranks": ranks, "root": synthreid_tiny}


def test_ranks_end_with_identical_weights(ddp_run: dict[str, Any]) -> None:
    a, b = (r["model"] for r in ddp_run["ranks"])
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key
    saved = torch.load(ddp_run["out"] / "last.pt", weights_only=True)["model"]
    assert saved.keys() == a.keys() and not any(k.startswith("module.") for k in saved)  # the unwrapped module
    for key in a:
        assert torch.equal(saved[key], a[key]), key


def test_resume_under_ddp_ends_with_the_weights_of_the_uninterrupted_run(ddp_run: dict[str, Any]) -> None:
    straight = torch.load(ddp_run["out"] / "last.pt", weights_only=True)
    resumed = torch.load(ddp_run["side"] / "resumed" / "last.pt", weights_only=True)
    assert (straight["epoch"], straight["step"]) == (resumed["epoch"], resumed["step"]) == (3, straight["step"])
    for state in [resumed["model"]] + [rank["resumed_model"] for rank in ddp_run["ranks"]]:
        assert state.keys() == straight["model"].keys()
        for key in state:
            assert torch.equal(state[key], straight["model"][key]), key


def test_process_group_is_destroyed_after_the_run_and_after_an_error(ddp_run: dict[str, Any]) -> None:
    for rank in ddp_run["ranks"]:
        assert rank["group_left_after_run"] is True  # inside the session
        assert rank["after_run"] is False and rank["after_error"] is False


def test_only_rank_0_wrote_files(ddp_run: dict[str, Any]) -> None:
    assert sorted(p.name for p in ddp_run["out"].iterdir()) == ["best.pt", "config.yaml", "last.pt", "log.jsonl",
                                                                "metrics.json"]
    records = [json.loads(line) for line in (ddp_run["out"] / "log.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in records if r["kind"] == "epoch"] == [1, 2]  # one writer: no duplicated records
    assert [r["kind"] for r in records].count("test") == 1
    assert ddp_run["ranks"][0]["metrics"] == ddp_run["ranks"][1]["metrics"]  # rank 0's numbers, broadcast
    assert json.loads((ddp_run["out"] / "metrics.json").read_text())["world_size"] == WORLD


def test_ranks_trained_on_disjoint_shares_of_one_plan(ddp_run: dict[str, Any]) -> None:
    r0, r1 = ddp_run["ranks"]
    assert r0["local_batch"] == r1["local_batch"] == 16 // WORLD  # data.batch_size is the global batch
    for epoch, full in enumerate(r0["full_plan"]):
        assert full == r1["full_plan"][epoch]  # every rank built the same epoch plan
        mine, yours = r0["planned"][epoch], r1["planned"][epoch]
        assert len(mine) == len(yours) == len(full) // WORLD  # the same number of steps on every rank
        assert mine == full[0::2] and yours == full[1::2]
        assert not {tuple(b) for b in mine} & {tuple(b) for b in yours}
    for rank in (r0, r1):  # what the model actually saw is the rank's share, batch by batch
        assert rank["seen"] == [pids for epoch in rank["planned_pids"] for pids in epoch]


def test_gathered_evaluation_equals_a_single_process_evaluation(ddp_run: dict[str, Any], tmp_path: Path) -> None:
    from reidkit.engine.evaluator import evaluate_model
    from reidkit.engine.run import _load_selected_weights, build_run

    cfg = load_config("synth_quick", [f"data.root={ddp_run['root']}", *OVERRIDES])
    metrics = ddp_run["ranks"][0]["metrics"]
    run = build_run(cfg, tmp_path)  # one process
    _load_selected_weights(run, Path(metrics["checkpoint"]))
    ev = cfg["eval"]
    report = evaluate_model(run.model, run.dataset.query, run.dataset.gallery, transform=run.test_transform,
                            metric=ev["metric"], flip=ev["flip"], normalize=ev["normalize"], progress=False)
    run.trainer.close()
    assert Path(metrics["checkpoint"]).name == "last.pt"  # train.select_on=last
    expected = report.to_dict()
    for key in ("mAP", "mINP", "rank1", "rank5", "rank10"):
        assert metrics["test"][key] == pytest.approx(expected[key], abs=1e-6), key
    assert 0.0 < metrics["test"]["mAP"] < 1.0


# ------------------------------------------------------------- failures under DDP: every rank stops, none waits

FAULT_OVERRIDES = [*OVERRIDES, "train.epochs=1", "log.every_n=1"]
GROUP_TIMEOUT_S = 120  # a collective left waiting fails after this (gloo), instead of the default 30 minutes
JOIN_TIMEOUT_S = 300  # the spawned run normally ends in well under a minute; past this it hangs: fail


def _fingerprint(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """(sum, sum of squares) of every parameter in float64: equal weights give bit-equal fingerprints."""
    return {name: torch.stack([p.double().sum(), p.double().square().sum()]) for name, p in model.named_parameters()}


def _fault_worker(rank: int, root: str, base: str, port: int) -> None:
    """One process of a 2-process run that exercises, in one process group: a triplet-only loss (no logits read)
    with DDP rebuilt by unfreezing; a NaN batch on rank 1; a failure of rank 0's metric computation; a failure of
    rank 0's first file write in ``train_run``. Each outcome is saved to ``base/faults{rank}.pt``."""
    os.environ.update({"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port), "RANK": str(rank),
                       "WORLD_SIZE": str(WORLD), "LOCAL_RANK": str(rank)})
    torch.set_num_threads(1)
    import torch.distributed as dist

    import reidkit.engine.evaluator as evaluator
    import reidkit.engine.run as run_module
    from reidkit.engine.distributed import distributed_session
    from reidkit.engine.run import build_run, train_run
    from reidkit.engine.trainer import NonFiniteLossError

    def outcome(fn: Any) -> str:
        try:
            fn()
        except Exception as err:  # noqa: BLE001 (the test asserts the type and message)
            return f"{type(err).__name__}: {err}"
        return "returned"

    dist.init_process_group("gloo", rank=rank, world_size=WORLD, timeout=timedelta(seconds=GROUP_TIMEOUT_S))
    results: dict[str, Any] = {}
    with distributed_session("cpu") as ctx:
        # (1) loss.spec=1.0*triplet; the neck frozen for the first step, so DDP is rebuilt for steps 2-3
        cfg = load_config("synth_quick", [f"data.root={root}", *FAULT_OVERRIDES, "loss.spec=1.0*triplet",
                                          "loss.params={}", "train.freeze_iters=1",
                                          "train.freeze_modules=[neck]"])
        run = build_run(cfg, Path(base) / "triplet", ctx)
        head, conv = run.model.head.weight.detach().clone(), run.model.backbone.conv1.weight.detach().clone()
        results["triplet_fit"] = outcome(lambda: run.trainer.fit(1, max_steps=3))
        results["triplet"] = {
            "step": run.trainer.step, "frozen": run.trainer.frozen,
            "ddp_find_unused": bool(run.trainer.train_module.find_unused_parameters),
            "head_unchanged": torch.equal(head, run.model.head.weight),
            "backbone_trained": not torch.equal(conv, run.model.backbone.conv1.weight),
            "fingerprint": _fingerprint(run.model)}
        run.trainer.close()

        # (2) NaN images on rank 1 at the second step; last.pt is written after every step
        run = build_run(load_config("synth_quick", [f"data.root={root}", *FAULT_OVERRIDES]), Path(base) / "nan", ctx)
        trainer = run.trainer
        trainer.checkpoint_every_steps = 1
        forward_backward = trainer._forward_backward

        def poisoned(batch: Any, group_size: int, last_of_group: bool) -> Any:
            if rank == 1 and trainer.step == 1:
                batch = {**batch, "img": torch.full_like(torch.as_tensor(batch["img"]), float("nan"))}
            return forward_backward(batch, group_size, last_of_group)

        trainer._forward_backward = poisoned  # type: ignore[method-assign]
        results["nan"] = outcome(lambda: trainer.fit(1))
        results["nan_is_non_finite_error"] = results["nan"].startswith(NonFiniteLossError.__name__)

        # (3) rank 0's metric computation fails after the features were gathered
        def broken_rank_features(*args: Any, **kwargs: Any) -> Any:
            raise ValueError("injected metric failure")

        if rank == 0:
            evaluator.rank_features = broken_rank_features
        results["evaluate"] = outcome(lambda: trainer.evaluate(*run.validation_loaders()))

        # (4) rank 0 cannot write config.yaml, the first thing train_run does
        def full_disk(*args: Any, **kwargs: Any) -> None:
            raise OSError("injected: no space left on device")

        if rank == 0:
            run_module.write_text_atomic = full_disk
        results["train_run"] = outcome(lambda: train_run(run))
    dist.destroy_process_group()
    torch.save(results, Path(base) / f"faults{rank}.pt")


@pytest.fixture(scope="module")
def ddp_faults(synthreid_tiny: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    base = tmp_path_factory.mktemp("ddp_faults")
    processes = mp.spawn(_fault_worker, args=(str(synthreid_tiny), str(base), _free_ports(1)[0]), nprocs=WORLD,
                         join=False)
    deadline = time.monotonic() + JOIN_TIMEOUT_S
    while not processes.join(timeout=max(deadline - time.monotonic(), 0.1)):
        if time.monotonic() > deadline:
            for process in processes.processes:
                process.kill()
            pytest.fail(f"the 2-process run did not end within {JOIN_TIMEOUT_S} s: a rank is waiting for another")
    return {"base": base, "ranks": [torch.load(base / f"faults{r}.pt", weights_only=True) for r in range(WORLD)]}


def test_triplet_only_loss_trains_under_ddp_also_after_unfreezing(ddp_faults: dict[str, Any]) -> None:
    r0, r1 = ddp_faults["ranks"]
    assert r0["triplet_fit"] == r1["triplet_fit"] == "returned"
    for rank in (r0, r1):
        assert rank["triplet"]["step"] == 3 and rank["triplet"]["frozen"] is False  # unfrozen: DDP was rebuilt
        assert rank["triplet"]["ddp_find_unused"] is True  # the rebuilt wrapper follows the same rule
        assert rank["triplet"]["head_unchanged"] is True  # the classifier got no gradient: left as it was
        assert rank["triplet"]["backbone_trained"] is True
    a, b = r0["triplet"]["fingerprint"], r1["triplet"]["fingerprint"]
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)  # the ranks stayed in step
    saved = torch.load(ddp_faults["base"] / "triplet" / "last.pt", weights_only=True)
    assert saved["step"] == 3


def test_nan_on_rank_1_stops_every_rank_and_nothing_is_written_after_the_bad_step(ddp_faults: dict[str, Any]) -> None:
    last = ddp_faults["base"] / "nan" / "last.pt"
    for rank, result in enumerate(ddp_faults["ranks"]):
        message = result["nan"]
        assert result["nan_is_non_finite_error"] is True, message
        assert "non-finite loss on rank 1 (of 2) at epoch 1, step 2 (batch 2/" in message
        assert f"the last good checkpoint is {last}" in message and "Read back when 2 steps were done" in message
        here = "batch 2 had loss nan" if rank == 1 else "every loss of the step was finite"
        assert f"here, on rank {rank}, {here}" in message
    state = torch.load(last, weights_only=True)
    assert state["step"] == 1  # written after step 1; step 2 (the bad one) was never saved
    tensors = [*state["model"].values(), *state["ema"].values()] if state["ema"] else list(state["model"].values())
    tensors += [v for s in state["optimizer"]["state"].values() for v in s.values() if torch.is_tensor(v)]
    assert tensors and all(torch.isfinite(t).all() for t in tensors if t.is_floating_point())
    records = [json.loads(line) for line in (ddp_faults["base"] / "nan" / "log.jsonl").read_text().splitlines()]
    assert [(r["kind"], r["step"]) for r in records] == [("step", 1)]  # nothing logged after the bad step


def test_a_failure_of_rank_0_s_metric_computation_reaches_rank_1(ddp_faults: dict[str, Any]) -> None:
    r0, r1 = ddp_faults["ranks"]
    assert r0["evaluate"] == "ValueError: injected metric failure"  # rank 0 re-raises its own error
    assert r1["evaluate"].startswith("RuntimeError: rank 0 failed and rank 1 stops with it")
    assert r1["evaluate"].endswith("ValueError: injected metric failure")


def test_a_failed_write_on_rank_0_in_train_run_reaches_rank_1(ddp_faults: dict[str, Any]) -> None:
    r0, r1 = ddp_faults["ranks"]
    assert r0["train_run"] == "OSError: injected: no space left on device"
    assert r1["train_run"].startswith("RuntimeError: rank 0 failed and rank 1 stops with it")
    assert r1["train_run"].endswith("OSError: injected: no space left on device")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_sync_bn_on_cuda_converts_batchnorm_and_keeps_checkpoint_keys(tmp_path: Path) -> None:
    from reidkit.engine.checkpoint import load_checkpoint
    from reidkit.engine.trainer import Trainer
    from reidkit.losses import build_loss
    from reidkit.models.reid_model import ReIDOutput

    class Net(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.backbone = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3, padding=1), torch.nn.BatchNorm2d(4))
            self.fc = torch.nn.Linear(4, 4)

        def forward(self, images: torch.Tensor, targets: torch.Tensor | None = None) -> Any:
            features = self.backbone(images).mean(dim=(2, 3))
            return ReIDOutput(self.fc(features), features)

    class Loader(list):
        def set_epoch(self, epoch: int) -> None:
            del epoch

    torch.manual_seed(0)
    model = Net()
    plain_keys = set(model.state_dict())
    batches = Loader([{"img": torch.randn(8, 3, 8, 4), "pid": torch.arange(8) % 4} for _ in range(2)])
    trainer = Trainer(model, build_loss("ce"), torch.optim.SGD(model.parameters(), lr=0.1), None, batches,
                      out_dir=tmp_path, device="cuda", sync_bn=True, progress=False)
    assert isinstance(trainer.model.backbone[1], torch.nn.SyncBatchNorm)
    before = trainer.model.backbone[1].running_mean.clone()
    trainer.fit(1)  # one process: SyncBatchNorm normalises like BatchNorm
    trainer.close()
    assert not torch.equal(before, trainer.model.backbone[1].running_mean)
    assert set(load_checkpoint(tmp_path / "last.pt")["model"]) == plain_keys
