"""A training run built from a validated config (issue 5 §3–§4): what ``reidkit train`` does.

:func:`build_run` turns a config (:func:`reidkit.config.load_config`) into a :class:`Run`: the dataset, a validation
split carved from the training identities (``train.val_ids``), the train pipeline (``data.transforms``), the P×K
train loader, the model (``ReIDModel`` or ``LightMBN`` from ``model.arch``), the loss (``loss.spec`` +
``loss.params``), the optimiser (``optim``, on the model's ``param_groups``), the scheduler (``schedule``) and the
:class:`~reidkit.engine.trainer.Trainer` (``train`` options). :func:`train_from_config` then fits, evaluates the
**test split once at the end** and writes ``out_dir/config.yaml`` (the resolved config) and ``out_dir/metrics.json``.

Model selection (``train.select_on``):

* ``val`` (default): ``best.pt`` is chosen on the carved validation split; the test split is only evaluated at the
  end, with the selected weights. With ``train.val_ids: 0`` there is no validation split and the last weights are
  used (``metrics.json`` says so).
* ``last``: no selection, the last weights are tested (validation is still reported when ``val_ids > 0``).
* ``test``: only for reproducing the seed's recipes: checkpoints are chosen on the test split and the final
  numbers are labelled ``test_selected: true`` (they are optimistic).

Data-parallel runs: ``torchrun --nproc_per_node N -m reidkit train --config C`` runs :func:`train_from_config` in N
processes (:mod:`reidkit.engine.distributed`): ``data.batch_size`` is the **global** P×K batch, each rank draws
``batch_size / N`` images per step (a multiple of ``data.num_instances``) from its share of the common epoch plan;
only rank 0 writes ``config.yaml``, checkpoints, the log and ``metrics.json``; validation and test features are
extracted by every rank on its share and gathered on rank 0, which computes the metrics. When such rank-0-only
work fails, every rank raises at once (:func:`~reidkit.engine.distributed.run_on_rank0`: rank 0 its own error, the
others a ``RuntimeError`` naming it) rather than waiting for rank 0 at the next collective.

SynthReID roots: ``data.name: synthreid`` with ``data.root: "synthreid:PRESET"`` or ``"synthreid:PRESET:SEED"``
(e.g. ``synthreid:small``) generates the dataset on first use with
:func:`reidkit.data.synthetic.ensure_synthreid` under :func:`~reidkit.data.synthetic.generate.default_data_root`
(``$REIDKIT_DATA``, the checkout's ``data/`` or ``~/.cache/reidkit/data``). A plain folder is read as it is; a
missing plain folder is an error that suggests this form (nothing is generated in an unexpected place).
"""
from __future__ import annotations

import copy
import json
import os
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from reidkit.atomic_io import write_text_atomic
from reidkit.engine.distributed import DistContext, distributed_session, run_on_rank0, shard
from reidkit.engine.loggers import LogSinks
from reidkit.engine.run_log import RunLog
from reidkit.engine.trainer import EvalSettings, Trainer, build_center_optimizer, center_parameters

__all__ = ["Run", "SYNTHREID_ROOT_PREFIX", "build_run", "evaluate_test", "per_rank_batch_size", "resolve_data_root",
           "train_from_config", "train_run"]

SYNTHREID_ROOT_PREFIX = "synthreid:"
"""``data.root`` prefix that names a generated SynthReID dataset: ``synthreid:PRESET[:SEED]``."""


@dataclass
class Run:
    """Everything a training run is made of (see :func:`build_run`)."""

    cfg: dict[str, Any]
    out_dir: Path
    dataset: Any
    train_items: list[Any]
    val_query: list[Any]
    val_gallery: list[Any]
    num_classes: int
    train_transform: Any
    test_transform: Any
    train_loader: Any
    model: nn.Module
    loss: nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: Any
    trainer: Trainer
    selection: str
    center_optimizer: torch.optim.Optimizer | None = None
    dist: DistContext = field(default_factory=DistContext)
    notes: list[str] = field(default_factory=list)

    def loaders(self, query: Any, gallery: Any) -> tuple[Any, Any]:
        """Test loaders of this rank's share of ``query`` and ``gallery`` (all of them in a single process)."""
        from reidkit.data.loaders import build_test_loaders

        data = self.cfg["data"]
        return build_test_loaders(shard(query, self.dist), shard(gallery, self.dist), self.test_transform,
                                  batch_size=data["test_batch_size"], workers=data["workers"])

    def validation_loaders(self) -> tuple[Any, Any] | None:
        """``(query_loader, gallery_loader)`` the trainer selects on (this rank's share), or ``None`` without
        selection."""
        if self.selection == "test":
            return self.loaders(self.dataset.query, self.dataset.gallery)
        if self.val_query:
            return self.loaders(self.val_query, self.val_gallery)
        return None


def resolve_data_root(data: Mapping[str, Any]) -> Path:
    """The dataset folder of a config's ``data`` section; ``synthreid:PRESET[:SEED]`` is generated when missing.

    Raises:
        ValueError: a malformed ``synthreid:`` root, or that form with another ``data.name``.
        FileNotFoundError: a plain root that does not exist.
    """
    root = str(data["root"])
    if root.startswith(SYNTHREID_ROOT_PREFIX):
        if data["name"] != "synthreid":
            raise ValueError(f"data.root {root!r} names a generated SynthReID dataset but data.name is "
                             f"{data['name']!r}; set data.name=synthreid")
        from reidkit.data.synthetic import PRESETS, ensure_synthreid

        parts = root[len(SYNTHREID_ROOT_PREFIX):].split(":")
        preset = parts[0]
        if len(parts) > 2 or preset not in PRESETS:
            raise ValueError(f"data.root {root!r}: expected synthreid:PRESET or synthreid:PRESET:SEED with PRESET "
                             f"one of {', '.join(sorted(PRESETS))}")
        try:
            seed = int(parts[1]) if len(parts) == 2 else 0
        except ValueError:
            raise ValueError(f"data.root {root!r}: the seed must be an int") from None
        return ensure_synthreid(preset, seed)
    path = Path(root).expanduser()
    if not path.exists():
        hint = (" (or data.root=synthreid:tiny / synthreid:small to generate SynthReID)"
                if data["name"] == "synthreid" else "")
        raise FileNotFoundError(f"data.root {root!r} does not exist{hint}")
    return path


def _loss_spec(loss_cfg: Mapping[str, Any]) -> list[dict[str, Any]]:
    """``loss.spec`` + ``loss.params`` as :func:`reidkit.losses.build_loss`'s list-of-dicts form.

    ``loss.params`` is keyed by a term's logging key (``ce``, ``triplet_2``) or its loss name.
    """
    from reidkit.losses.combined import parse_loss_spec

    terms = parse_loss_spec(loss_cfg["spec"])
    params = dict(loss_cfg["params"])
    known = {t.key for t in terms} | {t.name for t in terms}
    unknown = sorted(str(k) for k in params if k not in known)
    if unknown:
        raise ValueError(f"loss.params: {unknown} name no term of loss.spec {loss_cfg['spec']!r}; "
                         f"valid: {', '.join(sorted(known))}")
    out = []
    for term in terms:
        extra = dict(params.get(term.key, params.get(term.name, {})))
        out.append({**term.params, **extra, "name": term.name, "weight": term.weight, "key": term.key})
    return out


def _build_model(cfg: Mapping[str, Any], num_classes: int) -> tuple[nn.Module, int]:
    """The model and the width of its training feature (for the center loss)."""
    from reidkit.config import model_arch_kwargs

    arch, kwargs = model_arch_kwargs(cfg)
    if arch == "lightmbn":
        from reidkit.models.lightmbn import LightMBN

        model = LightMBN(num_classes, **kwargs)
        model.config = {"arch": "lightmbn", **copy.deepcopy(kwargs)}  # type: ignore[assignment]
        return model, int(model.options.feat_dim)
    from reidkit.models.reid_model import build_model

    model = build_model(kwargs, num_classes)
    return model, int(model.feature_dim or 0)


def transform_options(data_transforms: Mapping[str, Any], model: nn.Module) -> dict[str, Any]:
    """The ``data.transforms`` options the run's train and test pipelines are built from for ``model``: as
    configured, but with mean 0 / std 1 when the model normalises its [0, 1] input itself (``input_norm``)."""
    transforms = dict(data_transforms)
    if getattr(model, "input_norm", None) is not None:
        transforms["mean"], transforms["std"] = [0.0, 0.0, 0.0], [1.0, 1.0, 1.0]
    return transforms


def per_rank_batch_size(batch_size: int, num_instances: int, world_size: int) -> int:
    """The P×K batch of one rank when the global ``data.batch_size`` is split over ``world_size`` processes.

    Raises:
        ValueError: ``batch_size`` is not a multiple of ``world_size × num_instances`` (each rank needs whole
            identities of K images).
    """
    if batch_size % (world_size * num_instances):
        raise ValueError(f"data.batch_size {batch_size} is the global P×K batch and must split over {world_size} "
                         f"processes into whole identities of data.num_instances = {num_instances} images: use a "
                         f"multiple of {world_size * num_instances}")
    return batch_size // world_size


def _build_optimizer(cfg: Mapping[str, Any], model: nn.Module, loss: nn.Module) -> torch.optim.Optimizer:
    """Adam / AdamW / SGD over the model's parameter groups, plus a group for the loss's own parameters other than
    centre-loss centres (which have their own SGD, :func:`~reidkit.engine.trainer.build_center_optimizer`): the
    model's learning rate, no weight decay."""
    o = cfg["optim"]
    if hasattr(model, "param_groups"):
        groups = model.param_groups(o["lr"], o["weight_decay"], bias_lr_factor=o["bias_lr_factor"],
                                    bias_weight_decay=o["bias_weight_decay"],
                                    norm_weight_decay=o["norm_weight_decay"])
    else:
        groups = [{"params": [p for p in model.parameters() if p.requires_grad], "lr": o["lr"],
                   "weight_decay": o["weight_decay"], "name": "all"}]
    centers = {id(p) for p in center_parameters(loss)}
    loss_params = [p for p in loss.parameters() if p.requires_grad and id(p) not in centers]
    if loss_params:
        groups.append({"params": loss_params, "lr": o["lr"], "weight_decay": 0.0, "name": "loss"})
    if o["name"] == "sgd":
        return torch.optim.SGD(groups, lr=o["lr"], momentum=o["momentum"], nesterov=o["nesterov"],
                               weight_decay=o["weight_decay"])
    cls = torch.optim.Adam if o["name"] == "adam" else torch.optim.AdamW
    return cls(groups, lr=o["lr"], betas=tuple(o["betas"]), eps=o["eps"], weight_decay=o["weight_decay"],
               amsgrad=o["amsgrad"])


def build_run(cfg: Mapping[str, Any], out_dir: str | os.PathLike[str] | None = None,
              dist: DistContext | None = None) -> Run:
    """Build every component of a training run from a validated config (:func:`reidkit.config.load_config`).

    ``out_dir`` defaults to ``train.output_dir``. ``dist``: this process's place in a data-parallel run (from
    :func:`reidkit.engine.distributed.distributed_session`; default single process). Nothing is trained here.

    Raises:
        ValueError: a component rejects its options (e.g. more ``val_ids`` than eligible identities).
        FileNotFoundError: ``data.root`` does not exist.
    """
    from reidkit.data.datasets import build_dataset
    from reidkit.data.datasets.validation import carve_validation
    from reidkit.data.loaders import build_train_loader
    from reidkit.data.transforms import build_transforms
    from reidkit.engine.schedulers import build_scheduler
    from reidkit.losses import build_loss

    cfg = copy.deepcopy(dict(cfg))
    data, train = cfg["data"], cfg["train"]
    ctx = dist if dist is not None else DistContext()
    use_cuda = train["device"] == "cuda" or (train["device"] == "auto" and torch.cuda.is_available())
    device = ctx.device if ctx.device is not None else torch.device("cuda" if use_cuda else "cpu")
    if train["sync_bn"] and device.type != "cuda":  # before anything is read or written
        raise ValueError(f"train.sync_bn=true needs CUDA with the NCCL backend (torchrun on GPUs); this run is on "
                         f"{device}: set train.sync_bn=false")
    notes: list[str] = []
    seed = train["seed"]
    if seed is not None:
        torch.manual_seed(seed)
    data_seed = 0 if seed is None else seed

    root = resolve_data_root(data)
    dataset = build_dataset(data["name"], root, **data["dataset_kwargs"])
    if train["val_ids"] > 0:
        split = carve_validation(dataset, train["val_ids"], data_seed)
        train_items, val_query, val_gallery = list(split.train), list(split.query), list(split.gallery)
    else:
        train_items, val_query, val_gallery = list(dataset.train), [], []
    num_classes = len({item.pid for item in train_items})

    selection = train["select_on"]
    if selection == "val" and not val_query:
        selection = "last"
        notes.append("train.val_ids is 0: no validation split, the last weights are tested")
    if selection == "test":
        notes.append("train.select_on is test: checkpoints are chosen on the test split (test-selected numbers)")

    model, feat_dim = _build_model(cfg, num_classes)
    transforms = transform_options(data["transforms"], model)
    train_transform = build_transforms(transforms, train=True)
    test_transform = build_transforms(transforms, train=False)
    batch_size = per_rank_batch_size(data["batch_size"], data["num_instances"], ctx.world_size)
    replicas = {"num_replicas": ctx.world_size, "rank": ctx.rank} if ctx.distributed else {}
    loader = build_train_loader(train_items, train_transform, batch_size=batch_size,
                                num_instances=data["num_instances"], workers=data["workers"], seed=data_seed,
                                distributed=ctx.distributed, **replicas)
    if data["sampler"] != "pk":
        notes.append("data.sampler: only the P×K sampler is implemented; 'pk' was used")

    loss = build_loss(_loss_spec(cfg["loss"]), num_classes=num_classes, feat_dim=feat_dim)
    optimizer = _build_optimizer(cfg, model, loss)
    center_optimizer = build_center_optimizer(loss, cfg["optim"]["center_lr"])
    scheduler = build_scheduler(cfg, optimizer, iters_per_epoch=len(loader))

    for note in notes:
        if "only the" in note:
            warnings.warn(note, stacklevel=2)

    out = Path(out_dir) if out_dir is not None else Path(train["output_dir"])
    log = _build_log(cfg, out, ctx)
    try:
        trainer = Trainer(
            model, loss, optimizer, scheduler, loader, out_dir=out, device=device,
            amp=train["amp_dtype"] if train["amp"] else "off", channels_last=train["channels_last"],
            accumulate=train["accumulate"], clip_grad_norm=train["clip"], ema_decay=train["ema"],
            freeze_epochs=train["freeze_epochs"], freeze_iters=train["freeze_iters"],
            freeze_modules=train["freeze_modules"], freeze_bn_stats=train["freeze_bn_stats"],
            scheduler_per_iter=cfg["schedule"]["per_iter"], center_optimizer=center_optimizer,
            eval_settings=EvalSettings.from_config(cfg["eval"]), compile=train["compile"],
            compile_backend=train["compile_backend"], sync_bn=train["sync_bn"],
            cudnn_benchmark=train["cudnn_benchmark"], dist=ctx, log=log,
            log_every=max(cfg["log"]["every_n"], 1), checkpoint_every=max(train["checkpoint_every"], 1),
            progress=cfg["log"]["progress"],
        )
    except BaseException:
        if log is not None:
            log.close()
        raise
    return Run(cfg=cfg, out_dir=out, dataset=dataset, train_items=train_items, val_query=val_query,
               val_gallery=val_gallery, num_classes=num_classes, train_transform=train_transform,
               test_transform=test_transform, train_loader=loader, model=model, loss=loss, optimizer=optimizer,
               scheduler=scheduler, trainer=trainer, selection=selection, center_optimizer=center_optimizer,
               dist=ctx, notes=notes)


def _build_log(cfg: Mapping[str, Any], out: Path, ctx: DistContext) -> LogSinks | None:
    """Rank 0: the JSON-lines log (``log.jsonl``) fanned out to the metrics table (``log.table``) and wandb
    (``log.wandb_mode``) by :func:`reidkit.engine.loggers.build_loggers`; other ranks: ``None`` (the trainer drops
    their records)."""
    if not ctx.is_main:
        return None
    from reidkit.engine.loggers import build_loggers

    run_log = RunLog(out / "log.jsonl") if cfg["log"]["jsonl"] else None
    try:
        return build_loggers(cfg, out, run_log, rank=ctx.rank)
    except BaseException:
        if run_log is not None:
            run_log.close()
        raise


def _load_selected_weights(run: Run, path: Path) -> None:
    """Put the weights of checkpoint ``path`` (model, and EMA when the run keeps one) into the run's model."""
    from reidkit.engine.checkpoint import load_checkpoint

    state = load_checkpoint(path, map_location="cpu")
    run.trainer.model.load_state_dict(state["model"])
    if run.trainer.ema is not None and state.get("ema") is not None:
        run.trainer.ema.load_state_dict(state["ema"])


def evaluate_test(run: Run) -> dict[str, Any]:
    """mAP, mINP and rank-1/5/10 of the run's model (its EMA if any) on the test query/gallery, with the config's
    ``eval`` settings (metric, normalisation, flip, re-ranking) -- the same path as validation
    (:meth:`Trainer.evaluate <reidkit.engine.trainer.Trainer.evaluate>`; under DDP every rank extracts its share).
    Every rank must call it."""
    return run.trainer.evaluate(*run.loaders(run.dataset.query, run.dataset.gallery), split="test")


def train_from_config(cfg: Mapping[str, Any], resume: str | os.PathLike[str] | None = None,
                      out_dir: str | os.PathLike[str] | None = None) -> dict[str, Any]:
    """Train the run of ``cfg`` (optionally continuing from the checkpoint ``resume``), evaluate the test split once
    at the end and write ``out_dir/config.yaml`` and ``out_dir/metrics.json``; returns the metrics written.

    ``metrics.json``: ``validation`` (``best_mAP``, ``best_epoch`` and the per-epoch validation records, model
    selection only), ``test`` (mAP, mINP, rank1/5/10 of the selected weights, evaluated once, after training),
    ``selection`` and ``test_selected`` (true only with ``train.select_on: test``), ``checkpoint`` (the weights
    tested), ``epochs``, ``steps``, ``world_size`` and ``notes``.

    Launched by ``torchrun`` (``RANK``/``WORLD_SIZE``/``LOCAL_RANK`` set), every process calls this: the process group
    is created here and destroyed at the end, also on an error; only rank 0 writes files, every rank returns the same
    metrics. ``out_dir`` must be on a file system every rank reads (they load ``best.pt`` and ``resume``).
    """
    with distributed_session(cfg["train"]["device"]) as ctx:
        return train_run(build_run(cfg, out_dir, ctx), resume)


def train_run(run: Run, resume: str | os.PathLike[str] | None = None) -> dict[str, Any]:
    """The body of :func:`train_from_config` on a run already built by :func:`build_run` (e.g. to look at or hook
    its components first): resume, fit with validation, load the selected weights, test once, write
    ``config.yaml`` and ``metrics.json`` (rank 0); returns the metrics. Closes the run's log."""
    from reidkit.config import dump_config

    trainer, ctx = run.trainer, run.dist
    try:
        # rank-0-only work goes through run_on_rank0: a failure there raises on every rank at once, instead of
        # leaving the others waiting at the next collective until the process group times out
        run_on_rank0(lambda: write_text_atomic(run.out_dir / "config.yaml", dump_config(run.cfg)), ctx)
        if resume is not None:
            path = Path(resume).expanduser()
            if not path.is_file():
                raise FileNotFoundError(f"checkpoint to resume not found: {path}")
            trainer.resume(path)
        validation = run.validation_loaders()
        evaluate_every = max(run.cfg["train"]["eval_every"], 1) if validation is not None else None
        records = trainer.fit(run.cfg["train"]["epochs"], evaluate_every=evaluate_every, validation=validation)
        best = run.out_dir / "best.pt"
        tested = run.out_dir / "last.pt"
        has_best = run_on_rank0(best.is_file, ctx)  # rank 0 answers once fit has written best.pt / last.pt
        if run.selection in ("val", "test") and has_best:
            _load_selected_weights(run, best)
            tested = best
        test = evaluate_test(run)
        run_on_rank0(lambda: trainer.log.write({"kind": "test", "epoch": trainer.epoch - 1, "step": trainer.step,
                                                **test}), ctx)
    finally:
        trainer.close()

    val_records = [{"epoch": r["epoch"], **r["eval"]} for r in records if "eval" in r]
    metrics = {
        "validation": {
            "split": "test" if run.selection == "test" else "validation",
            "ids": None if run.selection == "test" else len({item.pid for item in run.val_query}),
            "best_mAP": trainer.best_metric,
            "best_epoch": trainer.best_epoch,
            "epochs": val_records,
        },
        "test": test,
        "selection": run.selection,
        "test_selected": run.selection == "test",
        "checkpoint": str(tested),
        "epochs": trainer.epoch - 1,
        "steps": trainer.step,
        "world_size": ctx.world_size,
        "resumed_from": None if resume is None else str(resume),
        "notes": run.notes,
    }
    run_on_rank0(lambda: write_text_atomic(run.out_dir / "metrics.json", json.dumps(metrics, indent=2) + "\n"), ctx)
    return metrics
