"""The training loop (issue 5 §3): AMP, accumulation, clipping, EMA, layer freezing, exact resume, data-parallel
training (DDP, SyncBN), ``torch.compile``, the centre-loss optimiser and validation with the ``eval`` settings.

Counting: epochs are 1-based (epoch ``e`` uses the loader's sampler epoch ``e - 1``); ``step`` counts optimiser
steps; with ``accumulate = A`` one step sums the gradients of A consecutive batches, each loss divided by the size
of its group (the last group of an epoch may be smaller), so a step equals one step on the concatenated batch for
a model without batch-dependent layers.

Checkpoints (``out_dir/last.pt`` at the end of every ``checkpoint_every`` epochs, every ``checkpoint_every_steps``
steps, and when ``fit(max_steps=...)`` stops; ``out_dir/best.pt`` at the best validation mAP) hold everything a
resumed run needs to continue **bit-identically**: model, loss (e.g. centre-loss centres), optimiser, scheduler,
grad scaler, EMA, epoch / batch-in-epoch / step, the sampler epoch, the loader generator and the Python, NumPy,
torch and CUDA RNG states. Resume with :meth:`Trainer.resume` on a freshly built trainer, then call :meth:`fit`
with the same ``epochs``; the remaining batches of an interrupted epoch are re-drawn from the same epoch plan
(the data pipeline seeds every sample from ``(seed, epoch, index)``) and the first ones skipped.

Layer freezing (components.md §12): the modules named in ``freeze_modules`` are frozen for epochs
``1..freeze_epochs`` and, FastReID's ``FREEZE_ITERS``, for the first ``freeze_iters`` optimiser steps
(``requires_grad=False`` and kept in ``eval()`` mode so BatchNorm statistics do not move); they are unfrozen at the
first step where neither holds. The state is derived from the epoch and the step, so a resumed run is right.
Parameters that were already frozen when the trainer was built (the BNNeck bias) are never unfrozen.

Centre loss (BoT, components.md §6): the centres of every ``center`` term get their own plain SGD
(:func:`build_center_optimizer`, ``lr = optim.center_lr``, not scheduled). Before its step their gradient is
unscaled (fp16) and divided by the term's weight, so that the weight scales the centre loss's pull on the features
but not the centres' own update: ``c_k ← c_k − lr · (2/B) Σ_{i: y_i = k} (c_k − x_i)``. It steps with the main
optimiser (same accumulation) and is saved in checkpoints.

Data parallel (:mod:`reidkit.engine.distributed`): pass a :class:`~reidkit.engine.distributed.DistContext` with
``world_size > 1`` and the model is wrapped in :class:`~torch.nn.parallel.DistributedDataParallel` for the training
forward (rebuilt when freezing changes which parameters train); the loss's own parameters (centres) have their
gradients averaged over the ranks by hand. ``self.model`` stays the plain module, so checkpoints hold its keys (no
``module.`` prefix) and resume works the same with or without DDP. Only rank 0 writes checkpoints and logs; a
failure of those writes (checkpoints, epoch and validation records) or of the validation metrics, which only rank 0
computes, is broadcast so that every rank raises (:func:`~reidkit.engine.distributed.run_on_rank0`) instead of
waiting at the next collective. DDP's ``find_unused_parameters`` is on when the loss reads only the logits or only
the features (:func:`loss_leaves_outputs_unused`, e.g. ``loss.spec: 1.0*triplet``), also when freezing rebuilds it.
A non-finite loss on any rank stops every rank at the same step: each step all-reduces one flag per rank (a device
collective, see below), so no rank writes weights that DDP has averaged with another rank's NaN gradients.
``torch.compile`` compiles the module's forward in place (``nn.Module.compile``: keys stay free of ``_orig_mod.``).

No per-step host synchronisation: a step's loss terms (and, when clipping, the gradient norm) stay on the device;
one ``non_blocking`` copy per step puts them, with the batch's pids, into pinned host memory, followed by a CUDA
event. The host reads them (:meth:`_PendingStep.result`, which waits on that step's event only, never on the whole
device) once the next step is queued, or earlier when something needs them: a checkpoint, the epoch end, the end of
:meth:`fit`. The GPU thus always has a step queued while the host prepares the next; step records are written when
their step is read, with the values (learning rates included) of that step. A NaN/Inf loss is therefore found one
step late: the optimiser step of the bad batch, and the next one, may already be applied to the weights in memory,
but every pending step is checked before any record or checkpoint is written, so nothing is ever written after the
bad step. Under DDP the copy also holds every rank's "non-finite" flag of the step, all-reduced on the device
(:func:`~reidkit.engine.distributed.rank_flags`), so every rank finds a bad step of any rank at the same read and
raises :class:`NonFiniteLossError` naming the rank(s). On the CPU the same path runs with plain tensors (no
events). ``cudnn_benchmark`` (default on) sets ``torch.backends.cudnn.benchmark`` when the trainer is on CUDA (cuDNN
times its algorithms per input shape).
"""
from __future__ import annotations

import contextlib
import math
import os
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from reidkit.engine.checkpoint import capture_rng_state, load_checkpoint, restore_rng_state, save_checkpoint
from reidkit.engine.distributed import (
    DistContext,
    all_reduce_mean_,
    broadcast_buffers_,
    gather_features,
    rank_flags,
    run_on_rank0,
)
from reidkit.engine.ema import ModelEMA
from reidkit.engine.loggers import LogSink, LogSinks
from reidkit.engine.run_log import RunLog, _plain

if TYPE_CHECKING:
    from reidkit.evaluation import RankResult
    from reidkit.evaluation.features import Features

__all__ = ["AMP_MODES", "CHECKPOINT_FORMAT", "EvalSettings", "NonFiniteLossError", "Trainer",
           "build_center_optimizer", "center_parameters", "loss_leaves_outputs_unused"]

AMP_MODES: tuple[str, ...] = ("off", "bf16", "fp16")
CHECKPOINT_FORMAT = "reidkit-trainer-1"


class NonFiniteLossError(FloatingPointError):
    """The loss became NaN or Inf; the message names the epoch, step, the batch's pids and the last checkpoint."""


def _progress_disabled_by_env() -> bool:
    return os.environ.get("TQDM_DISABLE", "").strip().lower() in ("1", "true", "yes")


def _loader_generator(loader: Any) -> torch.Generator | None:
    gen = getattr(loader, "generator", None)
    return gen if isinstance(gen, torch.Generator) else None


def _configure_cudnn(device: torch.device, benchmark: bool) -> None:
    """Set ``torch.backends.cudnn.benchmark`` to ``benchmark`` when ``device`` is CUDA; leave it alone otherwise.

    Raises:
        ValueError: ``benchmark`` with deterministic algorithms enabled (``seed_everything(deterministic=True)``):
            the timed choice of algorithm can differ from run to run.
    """
    if device.type != "cuda":
        return
    if benchmark and torch.are_deterministic_algorithms_enabled():
        raise ValueError("cudnn_benchmark=True lets cuDNN pick convolution algorithms by timing them, which can differ "
                         "between runs, but deterministic algorithms are enabled (seed_everything(deterministic=True)):"
                         " set train.cudnn_benchmark=false")
    torch.backends.cudnn.benchmark = bool(benchmark)


def _to_host(tensor: torch.Tensor) -> torch.Tensor:
    """A host copy of ``tensor`` that does not wait for the device: from CUDA a ``non_blocking`` copy into pinned
    memory (valid once an event recorded after it has completed); a CPU tensor is returned as it is."""
    if tensor.device.type == "cpu":
        return tensor
    if tensor.device.type != "cuda":
        return tensor.to("cpu")  # other accelerators: a plain (synchronous) copy
    host = torch.empty(tensor.shape, dtype=tensor.dtype, pin_memory=True)
    host.copy_(tensor, non_blocking=True)
    return host


@dataclass(frozen=True)
class _StepNumbers:
    """What :meth:`_PendingStep.result` reads: per micro-batch the total loss, the loss terms and the pids; the
    step's gradient norm before clipping (``None`` without clipping); under DDP the ranks whose step had a non-finite
    total (``bad_ranks``, from the step's all-reduced flags; always empty in a single process, where a non-finite
    total is found from the copied totals themselves)."""

    totals: list[float]
    terms: list[dict[str, float]]
    pids: list[list[int]]
    grad_norm: float | None
    bad_ranks: list[int]


@dataclass
class _PendingStep:
    """One optimiser step's numbers on their way to the host (see the module docstring).

    ``values``: host copy of ``[total, *terms]`` (float64, in ``keys[i]`` order) of each micro-batch ``i`` of the
    step, then the gradient norm (before clipping) when ``has_grad_norm``, then ``num_rank_flags`` (the world size
    under DDP, else 0) flags, one per rank, non-zero where that rank's step had a non-finite total (all-reduced,
    the same on every rank); ``pids``: host copy of the micro-batches' pids,
    concatenated (``sizes[i]`` each). On CUDA both are pinned buffers filled by ``non_blocking`` copies that
    ``event`` follows (``None`` on the CPU). ``lrs``: the learning rates after the step when it is a log step.
    """

    epoch: int
    step: int
    first_index: int
    num_batches: int
    keys: tuple[tuple[str, ...], ...]
    sizes: tuple[int, ...]
    values: torch.Tensor
    pids: torch.Tensor
    has_grad_norm: bool
    lrs: list[float] | None
    event: torch.cuda.Event | None
    num_rank_flags: int = 0

    def result(self) -> _StepNumbers:
        """The step's numbers as Python values, after waiting for this step's event only: the one place where the
        trainer reads results of the device."""
        if self.event is not None:
            self.event.synchronize()
        flat = self.values.tolist()
        all_pids = self.pids.tolist()
        totals, terms, pids = [], [], []
        offset = start = 0
        for keys, size in zip(self.keys, self.sizes, strict=True):
            totals.append(flat[offset])
            terms.append(dict(zip(keys, flat[offset + 1:offset + 1 + len(keys)], strict=True)))
            pids.append(all_pids[start:start + size])
            offset += 1 + len(keys)
            start += size
        grad_norm = None
        if self.has_grad_norm:
            grad_norm, offset = flat[offset], offset + 1
        flags = flat[offset:offset + self.num_rank_flags]
        return _StepNumbers(totals, terms, pids, grad_norm, [rank for rank, flag in enumerate(flags) if flag != 0])


@dataclass(frozen=True)
class EvalSettings:
    """How features become rank metrics, shared by validation and the final test (the config's ``eval`` section;
    the same steps as :func:`reidkit.engine.evaluator.evaluate_model`).

    ``metric``: ``"euclidean"`` (squared) or ``"cosine"``; ``normalize``: L2-normalise each feature (``None``:
    :func:`~reidkit.engine.evaluator.resolve_normalize`); ``flip``: flip test-time augmentation (mean of the image's
    and its mirror's feature, before normalisation); ``rerank``: k-reciprocal re-ranking (Zhong et al., CVPR 2017)
    with ``rerank_params``; ``max_rank``: length of the CMC curve.
    """

    metric: str = "euclidean"
    normalize: bool | None = None
    flip: bool = False
    rerank: bool = False
    rerank_params: Mapping[str, Any] | None = None
    max_rank: int = 50

    def __post_init__(self) -> None:
        from reidkit.engine.evaluator import METRICS

        if self.metric not in METRICS:
            raise ValueError(f"unknown metric {self.metric!r}; valid: {', '.join(METRICS)}")
        if self.rerank_params is not None and not self.rerank:
            raise ValueError("rerank_params given but rerank=False")
        if isinstance(self.max_rank, bool) or not isinstance(self.max_rank, int) or self.max_rank < 1:
            raise ValueError(f"max_rank must be a positive int, got {self.max_rank!r}")

    @classmethod
    def from_config(cls, ev: Mapping[str, Any]) -> EvalSettings:
        """The settings of a validated config's ``eval`` section."""
        params = ({"k1": ev["rerank_k1"], "k2": ev["rerank_k2"], "lambda_value": ev["rerank_lambda"]}
                  if ev["rerank"] else None)
        return cls(metric=ev["metric"], normalize=ev["normalize"], flip=ev["flip"], rerank=ev["rerank"],
                   rerank_params=params, max_rank=ev["max_rank"])

    @property
    def l2_normalize(self) -> bool:
        """Whether features are L2-normalised (``normalize`` resolved for the metric)."""
        from reidkit.engine.evaluator import resolve_normalize

        return resolve_normalize(self.normalize, self.metric)

    def rank(self, query: Features, gallery: Features, device: torch.device | str | None = None) -> RankResult:
        """CMC / mAP / mINP of ``query`` against ``gallery`` features (distances or re-ranked distances), by
        :func:`~reidkit.engine.evaluator.rank_features` with these settings."""
        from reidkit.engine.evaluator import rank_features

        return rank_features(query, gallery, metric=self.metric, rerank=self.rerank,
                             rerank_params=self.rerank_params, max_rank=self.max_rank, device=device)


def build_center_optimizer(loss: nn.Module, lr: float) -> torch.optim.SGD | None:
    """BoT's optimiser of the centre-loss centres: plain SGD (no momentum, no weight decay) at ``lr`` (0.5), one
    group per ``center`` term of a :class:`~reidkit.losses.CombinedLoss` carrying that term's ``loss_weight`` (the
    trainer divides the centres' gradient by it before the step). ``None`` when the loss has no centre term with a
    positive weight (a zero-weight term gives its centres no gradient: they are left out).
    """
    from reidkit.losses.center import CenterLoss

    if not lr > 0:
        raise ValueError(f"center_lr must be > 0, got {lr!r}")
    groups = []
    for term in getattr(loss, "terms", ()):
        module = loss.losses[term.key]  # type: ignore[union-attr,index]
        if isinstance(module, CenterLoss) and term.weight > 0:
            groups.append({"params": [module.centers], "lr": float(lr), "loss_weight": float(term.weight),
                           "name": f"center:{term.key}"})
    if not groups:
        return None
    return torch.optim.SGD(groups, lr=float(lr), momentum=0.0, weight_decay=0.0)


def loss_leaves_outputs_unused(loss: nn.Module) -> bool:
    """Whether ``loss`` (a :class:`~reidkit.losses.CombinedLoss`) reads only one of the model's two training outputs,
    the logits (``ce``, ``focal``) or the features (``triplet``, ``center``, ...), each term by its ``input_kind``.

    Then the parameters that only the other output depends on (the classifier when no term reads logits; the
    BNNeck or a branch that feeds only the logits when no term reads features) get no gradient, and
    :class:`~torch.nn.parallel.DistributedDataParallel` needs ``find_unused_parameters=True``. A zero-weight term
    still reads its input (its gradient is zero, not missing). ``False`` for a loss that does not declare its terms
    (no ``terms``/``losses``), which keeps DDP's default.

    With the flag, DDP passes the outputs through its ``_DDPSink``, which gives an output the loss leaves unused an
    undefined gradient that the reducer skips. DDP may still warn that it "did not find any unused parameters in the
    forward pass": its search starts from every returned output, and the classifier is reachable from the logits;
    the warning is a false positive here.
    """
    terms, modules = getattr(loss, "terms", None), getattr(loss, "losses", None)
    if terms is None or modules is None:
        return False
    kinds = {getattr(modules[term.key], "input_kind", "features") for term in terms}
    return kinds != {"logits", "features"}


def center_parameters(loss: nn.Module) -> list[nn.Parameter]:
    """The centres :func:`build_center_optimizer` would update (to keep them out of the main optimiser)."""
    from reidkit.losses.center import CenterLoss

    return [module.centers for module in loss.modules() if isinstance(module, CenterLoss)]


class Trainer:
    """Train a re-id model with a :class:`~reidkit.losses.CombinedLoss` on a P×K loader.

    Args:
        model: e.g. :func:`reidkit.models.build_model`; in training mode it maps ``(images, pids)`` to a
            :class:`~reidkit.models.reid_model.ReIDOutput`.
        loss: ``loss(output, labels) -> LossOutput(total, terms)`` (:func:`reidkit.losses.build_loss`).
        optimizer: built on ``model.param_groups(...)`` (components.md §7) before the trainer (without the centres
            of a centre loss when ``center_optimizer`` is given).
        scheduler: any scheduler with ``step()``, ``state_dict()`` and ``load_state_dict()`` (or ``None``).
        train_loader: :func:`reidkit.data.build_train_loader` (needs ``set_epoch``); batches are dicts with
            ``img`` and ``pid``. Under DDP, the distributed loader of this rank.
        device: default ``dist.device``, else CUDA if available, else CPU; the model and loss are moved there.
        amp: ``"off"``, ``"bf16"`` (autocast, no scaler) or ``"fp16"`` (autocast with a ``GradScaler``).
        channels_last: model and images in ``torch.channels_last`` memory format.
        accumulate: batches per optimiser step (gradient accumulation).
        clip_grad_norm: clip the total L2 norm of the main optimiser's gradients to this value (after unscaling), or
            ``None``.
        ema_decay: keep a :class:`~reidkit.engine.ema.ModelEMA` with this decay (evaluated instead of the model).
        freeze_epochs: freeze ``freeze_modules`` for epochs ``1..freeze_epochs``.
        freeze_iters: also freeze them while fewer than this many optimiser steps are done (FastReID).
        freeze_modules: names of submodules of the model (``model.get_submodule`` paths).
        freeze_bn_stats: keep frozen modules in eval mode (default); ``False`` reproduces the seed (BN statistics of
            frozen layers keep moving).
        scheduler_per_iter: step the scheduler after every optimiser step instead of after every epoch.
        center_optimizer: the centres' own SGD (:func:`build_center_optimizer`), or ``None``.
        eval_settings: metric, normalisation, flip and re-ranking of :meth:`evaluate` (default
            :class:`EvalSettings`\\ ()).
        compile: ``torch.compile`` the model's forward (in place) with ``compile_backend`` (a backend name such as
            ``"inductor"``, ``"aot_eager"``, ``"eager"``, or a backend callable).
        sync_bn: convert BatchNorm layers to :class:`~torch.nn.SyncBatchNorm` (CUDA only; statistics over all ranks).
        cudnn_benchmark: on CUDA, set ``torch.backends.cudnn.benchmark`` to this (cuDNN times its convolution
            algorithms for each new input shape and keeps the fastest; a process-wide setting). No effect elsewhere.
        dist: this process's place in a data-parallel run (default: single process).
        find_unused_parameters: passed to :class:`~torch.nn.parallel.DistributedDataParallel` (every time it is
            built, also when freezing rebuilds it). ``None`` (default): :func:`loss_leaves_outputs_unused`, i.e.
            ``True`` when the loss reads only the logits or only the features (e.g. ``loss.spec: 1.0*triplet``
            leaves the classifier without a gradient, and DDP without it fails on the second step: "Expected to have
            finished reduction in the prior iteration"); ``False`` otherwise, which saves DDP a walk of the autograd
            graph every step. Pass ``True`` for a model with parameters that a loss reading both leaves unused.
            No effect in a single process.
        log: the sink of the records, e.g. :func:`reidkit.engine.loggers.build_loggers` (default: a
            :class:`~reidkit.engine.run_log.RunLog` on ``out_dir/log.jsonl``); ranks other than 0 never log.
        out_dir: checkpoints and ``log.jsonl`` go here (written by rank 0 only).
        log_every: write a ``"step"`` record every this many optimiser steps.
        checkpoint_every: write ``last.pt`` every this many epochs (and after the last one).
        checkpoint_every_steps: also write ``last.pt`` every this many optimiser steps, or ``None``.
        progress: show a tqdm bar (rank 0 only; ``TQDM_DISABLE=1`` also hides it).
    """

    def __init__(
        self,
        model: nn.Module,
        loss: nn.Module,
        optimizer: torch.optim.Optimizer,
        scheduler: Any,
        train_loader: Iterable[Mapping[str, Any]],
        *,
        out_dir: str | os.PathLike[str],
        device: torch.device | str | None = None,
        amp: str = "off",
        channels_last: bool = False,
        accumulate: int = 1,
        clip_grad_norm: float | None = None,
        ema_decay: float | None = None,
        freeze_epochs: int = 0,
        freeze_iters: int = 0,
        freeze_modules: Sequence[str] = ("backbone",),
        freeze_bn_stats: bool = True,
        scheduler_per_iter: bool = False,
        center_optimizer: torch.optim.Optimizer | None = None,
        eval_settings: EvalSettings | None = None,
        compile: bool = False,  # noqa: A002 (the config key's name)
        compile_backend: str | Callable[..., Any] = "inductor",
        sync_bn: bool = False,
        cudnn_benchmark: bool = True,
        dist: DistContext | None = None,
        find_unused_parameters: bool | None = None,
        log: LogSink | None = None,
        log_every: int = 20,
        checkpoint_every: int = 1,
        checkpoint_every_steps: int | None = None,
        progress: bool = True,
    ) -> None:
        if amp not in AMP_MODES:
            raise ValueError(f"amp must be one of {', '.join(AMP_MODES)}, got {amp!r}")
        for label, value, minimum in (("accumulate", accumulate, 1), ("freeze_epochs", freeze_epochs, 0),
                                      ("freeze_iters", freeze_iters, 0), ("log_every", log_every, 1),
                                      ("checkpoint_every", checkpoint_every, 1)):
            if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
                raise ValueError(f"{label} must be an int >= {minimum}, got {value!r}")
        if checkpoint_every_steps is not None and (not isinstance(checkpoint_every_steps, int)
                                                   or checkpoint_every_steps < 1):
            raise ValueError(f"checkpoint_every_steps must be a positive int or None, got {checkpoint_every_steps!r}")
        if clip_grad_norm is not None and not clip_grad_norm > 0:
            raise ValueError(f"clip_grad_norm must be > 0 or None, got {clip_grad_norm!r}")
        if not hasattr(train_loader, "set_epoch"):
            raise TypeError("train_loader needs set_epoch(epoch) (use reidkit.data.build_train_loader)")
        if center_optimizer is not None:
            for group in center_optimizer.param_groups:
                weight = group.get("loss_weight")
                if not isinstance(weight, float) or not weight > 0:
                    raise ValueError("center_optimizer: every param group needs a positive 'loss_weight' (the centre "
                                     f"term's weight; use build_center_optimizer), got {weight!r}")
        self.dist = dist if dist is not None else DistContext()
        if device is None:
            device = self.dist.device if self.dist.device is not None else (
                "cuda" if torch.cuda.is_available() else "cpu")
        self.device = torch.device(device)
        if amp == "bf16" and self.device.type == "cuda" and not torch.cuda.is_bf16_supported():
            raise ValueError("amp='bf16' needs a GPU with bfloat16 support; use amp='fp16' here")
        if sync_bn and (self.device.type != "cuda" or (self.dist.distributed and self.dist.backend != "nccl")):
            raise ValueError(f"sync_bn=True needs CUDA with the NCCL backend (torchrun on GPUs); this run is on "
                             f"{self.device} with backend {self.dist.backend or 'none'}: set train.sync_bn=false")
        self.cudnn_benchmark = bool(cudnn_benchmark)
        _configure_cudnn(self.device, self.cudnn_benchmark)
        self.amp = amp
        self.channels_last = bool(channels_last)
        if sync_bn:  # SyncBatchNorm re-uses the BatchNorm parameters, so the optimiser still holds the right ones
            model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
        self.model = model.to(self.device)
        if self.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        self.loss = loss.to(self.device)
        self.optimizer = optimizer
        self.center_optimizer = center_optimizer
        self.scheduler = scheduler
        self.train_loader = train_loader
        self.accumulate = accumulate
        self.clip_grad_norm = None if clip_grad_norm is None else float(clip_grad_norm)
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=amp == "fp16")
        self.ema = ModelEMA(self.model, ema_decay) if ema_decay is not None else None
        self.eval_settings = eval_settings if eval_settings is not None else EvalSettings()
        self.compiled = bool(compile)
        if self.compiled:  # in place: state_dict keys stay those of the module (no "_orig_mod." prefix)
            self.model.compile(backend=compile_backend)
        self.freeze_epochs = freeze_epochs
        self.freeze_iters = freeze_iters
        self.freeze_bn_stats = bool(freeze_bn_stats)
        self._freeze_targets: list[nn.Module] = []
        for name in freeze_modules if freeze_epochs > 0 or freeze_iters > 0 else ():
            try:
                self._freeze_targets.append(self.model.get_submodule(name))
            except AttributeError as err:
                children = ", ".join(n for n, _ in self.model.named_children())
                raise ValueError(f"freeze_modules: the model has no submodule {name!r} "
                                 f"(its children: {children})") from err
        # Parameters frozen by design (e.g. the BNNeck bias): never re-enabled by unfreezing.
        self._fixed = {id(p) for p in self.model.parameters() if not p.requires_grad}
        self._loss_params = [p for p in self.loss.parameters() if p.requires_grad]
        self.scheduler_per_iter = bool(scheduler_per_iter)
        self.out_dir = Path(out_dir)
        if self.dist.is_main:
            self.out_dir.mkdir(parents=True, exist_ok=True)
        self.log_every = log_every
        self.checkpoint_every = checkpoint_every
        self.checkpoint_every_steps = checkpoint_every_steps
        self.progress = bool(progress) and self.dist.is_main
        if not self.dist.is_main:
            if log is not None:
                log.close()
            self.log: LogSink = LogSinks(enabled=False)
        else:
            self.log = log if log is not None else RunLog(self.out_dir / "log.jsonl")
        # Position: the next epoch to run (1-based), the batches of it already done, optimiser steps done.
        self.epoch = 1
        self.batch_in_epoch = 0
        self.step = 0
        self.last_checkpoint: Path | None = None
        self.best_metric: float | None = None
        self.best_epoch: int | None = None
        self.last_grad_norm: float | None = None  # of the last step read back (see _PendingStep)
        self.frozen = False
        self._gen_state_epoch_start: torch.Tensor | None = None
        self._epoch_sums: dict[str, float] = {}
        self._epoch_batches = 0
        self._pending: deque[_PendingStep] = deque()  # steps whose numbers are still on their way to the host
        self._bar: Any = None  # the progress bar of the running fit (its postfix shows the last logged loss)
        self.find_unused_parameters = (loss_leaves_outputs_unused(self.loss) if find_unused_parameters is None
                                       else bool(find_unused_parameters))
        self.train_module: nn.Module = self.model
        self._wrap_for_training()

    # ------------------------------------------------------------------------------------------ state

    @property
    def params(self) -> list[torch.Tensor]:
        """Every parameter the main optimiser updates."""
        return [p for group in self.optimizer.param_groups for p in group["params"]]

    def lrs(self) -> list[float]:
        """The current learning rate of each main optimiser group."""
        return [float(group["lr"]) for group in self.optimizer.param_groups]

    def _wrap_for_training(self) -> None:
        """``train_module``: the model, or a :class:`DistributedDataParallel` over it (rebuilt whenever freezing
        changes which parameters train, so that DDP's reducer holds exactly the trainable ones), with
        ``find_unused_parameters`` = :attr:`find_unused_parameters` every time it is built."""
        if not self.dist.distributed:
            self.train_module = self.model
            return
        from torch.nn.parallel import DistributedDataParallel

        device_ids = [self.device.index] if self.device.type == "cuda" else None
        self.train_module = DistributedDataParallel(self.model, device_ids=device_ids,
                                                    find_unused_parameters=self.find_unused_parameters)

    def state_dict(self) -> dict[str, Any]:
        """The checkpoint content (tensors and plain types only, loadable with ``weights_only=True``)."""
        gen = _loader_generator(self.train_loader)
        gen_state = None
        if gen is not None:
            gen_state = self._gen_state_epoch_start if self.batch_in_epoch > 0 else gen.get_state()
        config = getattr(self.model, "config", None)
        try:
            model_cfg = _plain(config) if config is not None else None
        except TypeError:
            model_cfg = None
        return {
            "format": CHECKPOINT_FORMAT,
            "model": self.model.state_dict(),
            "model_cfg": model_cfg,
            "loss": self.loss.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "center_optimizer": (self.center_optimizer.state_dict() if self.center_optimizer is not None
                                 else None),
            "scheduler": self.scheduler.state_dict() if self.scheduler is not None else None,
            "scaler": self.scaler.state_dict(),
            "ema": self.ema.state_dict() if self.ema is not None else None,
            "epoch": self.epoch,
            "batch_in_epoch": self.batch_in_epoch,
            "step": self.step,
            "sampler_epoch": self.epoch - 1,
            "accumulate": self.accumulate,
            "amp": self.amp,
            "world_size": self.dist.world_size,
            "loader_generator": gen_state,
            "rng": capture_rng_state(),
            "epoch_sums": dict(self._epoch_sums),
            "epoch_batches": self._epoch_batches,
            "best_metric": self.best_metric,
            "best_epoch": self.best_epoch,
        }

    def save(self, name: str = "last.pt") -> Path:
        """Write :meth:`state_dict` atomically to ``out_dir/name`` (rank 0 only); returns the path.

        The steps still pending are read back first (a non-finite loss among them raises
        :class:`NonFiniteLossError` and nothing is written). Under DDP every rank must call it: rank 0 writes
        through :func:`~reidkit.engine.distributed.run_on_rank0`, so a failed write raises on every rank."""
        self._read_pending()
        path = self.out_dir / name
        run_on_rank0(lambda: save_checkpoint(self.state_dict(), path), self.dist)
        self.last_checkpoint = path
        return path

    def resume(self, path: str | os.PathLike[str]) -> None:
        """Restore everything from a checkpoint of :meth:`save` (built afresh with the same components), so that
        :meth:`fit` continues exactly where the checkpointed run was. Under DDP every rank reads the same file."""
        state = load_checkpoint(path, map_location="cpu")
        if state.get("format") != CHECKPOINT_FORMAT:
            raise ValueError(f"{path}: not a reidkit trainer checkpoint (format {state.get('format')!r})")
        if int(state["accumulate"]) != self.accumulate:
            raise ValueError(f"{path} was trained with accumulate={state['accumulate']}, "
                             f"this trainer has accumulate={self.accumulate}")
        saved_world = int(state.get("world_size", 1))
        if saved_world != self.dist.world_size and int(state["batch_in_epoch"]) > 0:
            raise ValueError(f"{path} stopped inside epoch {state['epoch']} of a run on {saved_world} process(es); "
                             f"this run has {self.dist.world_size}, whose share of that epoch's batches differs: "
                             "resume it with the same number of processes (checkpoints at an epoch end resume on "
                             "any number)")
        self.model.load_state_dict(state["model"])
        self.loss.load_state_dict(state["loss"])
        self.optimizer.load_state_dict(state["optimizer"])
        saved_center = state.get("center_optimizer")
        if (saved_center is None) != (self.center_optimizer is None):
            raise ValueError(f"{path}: centre-loss optimiser presence differs between the checkpoint and this trainer")
        if self.center_optimizer is not None:
            self.center_optimizer.load_state_dict(saved_center)
        if (state["scheduler"] is None) != (self.scheduler is None):
            raise ValueError(f"{path}: scheduler presence differs between the checkpoint and this trainer")
        if self.scheduler is not None:
            self.scheduler.load_state_dict(state["scheduler"])
        self.scaler.load_state_dict(state["scaler"])
        if (state["ema"] is None) != (self.ema is None):
            raise ValueError(f"{path}: EMA presence differs between the checkpoint and this trainer")
        if self.ema is not None:
            self.ema.load_state_dict(state["ema"])
        self.epoch = int(state["epoch"])
        self.batch_in_epoch = int(state["batch_in_epoch"])
        self.step = int(state["step"])
        self._epoch_sums = {k: float(v) for k, v in state["epoch_sums"].items()}
        self._epoch_batches = int(state["epoch_batches"])
        self.best_metric = state["best_metric"]
        self.best_epoch = state["best_epoch"]
        gen = _loader_generator(self.train_loader)
        if gen is not None and state["loader_generator"] is not None:
            gen.set_state(state["loader_generator"])
            self._gen_state_epoch_start = state["loader_generator"].clone()
        restore_rng_state(state["rng"])
        self.last_checkpoint = Path(path)
        self._apply_freeze(self.epoch)
        self.log.write({"kind": "resume", "epoch": self.epoch, "step": self.step, "checkpoint": str(path)})

    # ----------------------------------------------------------------------------------- freezing

    def _apply_freeze(self, epoch: int) -> bool:
        """Freeze the target modules while ``epoch <= freeze_epochs`` or ``step < freeze_iters``, unfreeze them
        after (never the fixed ones). Returns whether the frozen state changed (then DDP is rebuilt)."""
        frozen = bool(self._freeze_targets) and (epoch <= self.freeze_epochs or self.step < self.freeze_iters)
        for module in self._freeze_targets:
            for param in module.parameters():
                if id(param) not in self._fixed:
                    param.requires_grad_(not frozen)
        changed = frozen != self.frozen
        self.frozen = frozen
        if changed:
            self._wrap_for_training()
        return changed

    def train_mode(self) -> None:
        """``model.train()``, with frozen modules kept in eval mode (their BN statistics do not move)."""
        self.model.train()
        self.loss.train()
        if self.frozen and self.freeze_bn_stats:
            for module in self._freeze_targets:
                module.eval()

    # ------------------------------------------------------------------------------------ one step

    def _autocast(self) -> contextlib.AbstractContextManager[Any]:
        if self.amp == "off":
            return contextlib.nullcontext()
        dtype = torch.bfloat16 if self.amp == "bf16" else torch.float16
        return torch.autocast(device_type=self.device.type, dtype=dtype)

    def _forward_backward(self, batch: Mapping[str, Any], group_size: int,
                          last_of_group: bool) -> tuple[tuple[str, ...], torch.Tensor, torch.Tensor]:
        """Forward, loss and backward of one micro-batch. Returns the loss terms' keys, ``[total, *terms]`` as a
        float64 vector and the pids, all still on the device: nothing is read back here."""
        images = torch.as_tensor(batch["img"]).to(self.device, non_blocking=True)
        if self.channels_last and images.ndim == 4:
            images = images.contiguous(memory_format=torch.channels_last)
        pids = torch.as_tensor(batch["pid"]).to(self.device, non_blocking=True).long()
        # DDP: all-reduce the gradients only on the last micro-batch of an accumulation group
        no_sync = getattr(self.train_module, "no_sync", None)
        sync = contextlib.nullcontext() if last_of_group or no_sync is None else no_sync()
        with sync:
            with self._autocast():
                output = self.train_module(images, pids)
            result = self.loss(output, pids)
            self.scaler.scale(result.total / group_size).backward()
        numbers = torch.cat([t.detach().reshape(1) for t in (result.total, *result.terms.values())])
        return tuple(result.terms), numbers.to(torch.float64), pids

    def _center_step(self) -> None:
        """BoT: unscale the centres' gradient, divide it by the centre term's weight, step their SGD."""
        assert self.center_optimizer is not None
        self.scaler.unscale_(self.center_optimizer)
        for group in self.center_optimizer.param_groups:
            for param in group["params"]:
                if param.grad is not None:
                    param.grad.div_(group["loss_weight"])
        self.scaler.step(self.center_optimizer)

    def _optimizer_step(self) -> torch.Tensor | None:
        """One optimiser step on the accumulated gradients; returns the total gradient norm before clipping (a
        device tensor) when clipping, else ``None``."""
        all_reduce_mean_(self._loss_params, self.dist)  # outside DDP: average the loss's own gradients by hand
        norm = None
        if self.clip_grad_norm is not None:
            self.scaler.unscale_(self.optimizer)
            norm = torch.nn.utils.clip_grad_norm_([p for p in self.params if p.grad is not None],
                                                  self.clip_grad_norm)
        if self.center_optimizer is not None:
            self._center_step()
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.optimizer.zero_grad(set_to_none=True)
        if self.center_optimizer is not None:
            self.center_optimizer.zero_grad(set_to_none=True)
        if self.ema is not None:
            self.ema.update(self.model)
        if self.scheduler is not None and self.scheduler_per_iter:
            self.scheduler.step()
        self.step += 1
        return norm

    # -------------------------------------------------------------------------------- reading back

    def _queue_step(self, epoch: int, first_index: int, num_batches: int,
                    micro: Sequence[tuple[tuple[str, ...], torch.Tensor, torch.Tensor]],
                    grad_norm: torch.Tensor | None) -> None:
        """Start the host copy of the step just taken (one ``non_blocking`` copy of its numbers, one of its pids,
        then a CUDA event) and append it to the pending steps. ``micro``: :meth:`_forward_backward`'s results."""
        parts = [numbers for _, numbers, _ in micro]
        if grad_norm is not None:
            parts.append(grad_norm.detach().reshape(1).to(torch.float64))
        num_rank_flags = 0
        if self.dist.distributed:  # DDP averaged any rank's NaN into every rank's weights: every rank must stop
            totals = torch.stack([numbers[0] for _, numbers, _ in micro])
            bad = (~torch.isfinite(totals).all()).to(torch.float64)
            parts.append(rank_flags(bad, self.dist))  # a device all-reduce that every rank runs at this step
            num_rank_flags = self.dist.world_size
        values = _to_host(torch.cat(parts))
        pids = _to_host(torch.cat([p for _, _, p in micro]))
        event = None
        if self.device.type == "cuda":
            event = torch.cuda.Event()
            event.record(torch.cuda.current_stream(self.device))
        self._pending.append(_PendingStep(
            epoch=epoch, step=self.step, first_index=first_index, num_batches=num_batches,
            keys=tuple(keys for keys, _, _ in micro), sizes=tuple(p.numel() for _, _, p in micro), values=values,
            pids=pids, has_grad_norm=grad_norm is not None,
            lrs=self.lrs() if self.step % self.log_every == 0 else None, event=event, num_rank_flags=num_rank_flags))

    def _read_pending(self, keep: int = 0) -> None:
        """Read back the pending steps but the newest ``keep``, oldest first: check every micro-batch's loss, add
        its terms to the epoch's sums, keep the gradient norm and write the step record of a log step.

        Raises:
            NonFiniteLossError: a NaN/Inf loss; under DDP on every rank when any rank's loss was (the step's
                all-reduced flags say which). Neither that step nor a later one is logged or checkpointed.
        """
        while len(self._pending) > keep:
            pending = self._pending.popleft()
            numbers = pending.result()
            if numbers.bad_ranks:
                self._pending.clear()
                raise self._non_finite_ddp_error(pending, numbers)
            for row, total in enumerate(numbers.totals):
                if not math.isfinite(total):
                    self._pending.clear()  # the later steps trained on the bad update
                    raise self._non_finite_error(pending, numbers, row)
            step_terms: dict[str, float] = {}
            for terms in numbers.terms:
                for key, value in terms.items():
                    step_terms[key] = step_terms.get(key, 0.0) + value
                    self._epoch_sums[key] = self._epoch_sums.get(key, 0.0) + value
            if numbers.grad_norm is not None:
                self.last_grad_norm = numbers.grad_norm
            if pending.lrs is not None:  # a log step
                mean = {k: v / len(numbers.terms) for k, v in step_terms.items()}
                self.log.write({"kind": "step", "epoch": pending.epoch, "step": pending.step, "lr": pending.lrs,
                                "loss": mean, "grad_norm": self.last_grad_norm})
                if self._bar is not None:
                    self._bar.set_postfix(loss=f"{mean.get('total', float('nan')):.4f}")

    def _checkpoint_and_late_read(self) -> tuple[str, str]:
        """The two parts every non-finite-loss message ends with: the last good checkpoint, and why the weights in
        memory may already hold the bad update (losses are read one step late)."""
        where = (f"the last good checkpoint is {self.last_checkpoint}" if self.last_checkpoint is not None
                 else "no checkpoint was written yet")
        late = (f"Read back when {self.step} steps were done (losses are read one step late so that the device never "
                "waits): the weights in memory may hold the update of this step, but no record or checkpoint was "
                "written after it")
        return where, late

    def _non_finite_error(self, pending: _PendingStep, numbers: _StepNumbers, row: int) -> NonFiniteLossError:
        where, late = self._checkpoint_and_late_read()
        return NonFiniteLossError(
            f"non-finite loss {numbers.totals[row]} at epoch {pending.epoch}, step {pending.step} "
            f"(batch {pending.first_index + row + 1}/{pending.num_batches} of the epoch); batch pids: "
            f"{numbers.pids[row]}; loss terms: {numbers.terms[row]}; {where}. {late}")

    def _non_finite_ddp_error(self, pending: _PendingStep, numbers: _StepNumbers) -> NonFiniteLossError:
        """The error every rank raises when some rank's step had a non-finite loss (see :meth:`_read_pending`)."""
        where, late = self._checkpoint_and_late_read()
        ranks = numbers.bad_ranks
        who = f"rank{'s' if len(ranks) > 1 else ''} {', '.join(map(str, ranks))}"
        first, last = pending.first_index + 1, pending.first_index + len(numbers.totals)
        batches = f"batch {first}" if first == last else f"batches {first}-{last}"
        bad_rows = [row for row, total in enumerate(numbers.totals) if not math.isfinite(total)]
        if bad_rows:
            row = bad_rows[0]
            here = (f"here, on rank {self.dist.rank}, batch {pending.first_index + row + 1} had loss "
                    f"{numbers.totals[row]}, batch pids: {numbers.pids[row]}; loss terms: {numbers.terms[row]}")
        else:
            here = f"here, on rank {self.dist.rank}, every loss of the step was finite"
        return NonFiniteLossError(
            f"non-finite loss on {who} (of {self.dist.world_size}) at epoch {pending.epoch}, step {pending.step} "
            f"({batches}/{pending.num_batches} of the epoch); {here}; every rank stops, since DDP averaged the bad "
            f"gradients into every rank's weights; {where}. {late} on any rank")

    # ------------------------------------------------------------------------------------------ fit

    def _batches(self, skip: int) -> Iterator[Mapping[str, Any]]:
        from reidkit.data.prefetch import CUDAPrefetcher

        source: Iterable[Any] = (CUDAPrefetcher(self.train_loader, self.device) if self.device.type == "cuda"
                                 else self.train_loader)
        iterator = iter(source)
        for _ in range(skip):  # resumed mid-epoch: the same plan, its first batches already trained on
            next(iterator)
        return iterator

    def fit(self, epochs: int, evaluate_every: int | None = None,
            validation: tuple[Iterable[Any], Iterable[Any]] | None = None,
            max_steps: int | None = None) -> list[dict[str, Any]]:
        """Train until epoch ``epochs`` is done (continuing from the current position after :meth:`resume`).

        Args:
            epochs: the last epoch (1-based, inclusive) of the whole run.
            evaluate_every: evaluate ``validation`` every this many epochs (and after the last); ``best.pt`` keeps
                the best mAP. Model selection uses this validation split, never the test split.
            validation: ``(query_loader, gallery_loader)`` from the training identities
                (:func:`reidkit.data.datasets.validation.carve_validation` + ``build_test_loaders``); under DDP,
                loaders of this rank's share (:func:`reidkit.engine.distributed.shard`).
            max_steps: stop (after writing ``last.pt``) once this many optimiser steps are done in total.

        Returns the epoch records of this call (as written to the log).

        Raises:
            NonFiniteLossError: a NaN/Inf loss, found when its step is read back (one step late, see the module
                docstring); nothing is written for that step or after it. Under DDP a bad loss on any rank raises on
                every rank, at the same step.
        """
        from tqdm.auto import tqdm

        if evaluate_every is not None and validation is None:
            raise ValueError("evaluate_every needs validation=(query_loader, gallery_loader)")
        records: list[dict[str, Any]] = []
        while self.epoch <= epochs:
            if max_steps is not None and self.step >= max_steps:
                break
            epoch = self.epoch
            self._apply_freeze(epoch)
            self.train_mode()
            self.train_loader.set_epoch(epoch - 1)  # type: ignore[attr-defined]
            num_batches = len(self.train_loader)  # type: ignore[arg-type]
            gen = _loader_generator(self.train_loader)
            if gen is not None and self.batch_in_epoch == 0:
                self._gen_state_epoch_start = gen.get_state()
            elif gen is not None and self._gen_state_epoch_start is not None:
                gen.set_state(self._gen_state_epoch_start)
            start_time = time.perf_counter()
            bar = tqdm(total=num_batches, initial=self.batch_in_epoch, desc=f"epoch {epoch}", unit="batch",
                       disable=not self.progress or _progress_disabled_by_env(), leave=False)
            self._bar = bar
            micro: list[tuple[tuple[str, ...], torch.Tensor, torch.Tensor]] = []  # this step's micro-batches
            try:
                batches = self._batches(self.batch_in_epoch)
                for index in range(self.batch_in_epoch, num_batches):
                    batch = next(batches)
                    group_start = index - index % self.accumulate
                    group_size = min(self.accumulate, num_batches - group_start)
                    if index == group_start and self._apply_freeze(epoch):  # freeze_iters ends mid-epoch
                        self.train_mode()
                    last_of_group = index + 1 - group_start == group_size
                    micro.append(self._forward_backward(batch, group_size, last_of_group))
                    self._epoch_batches += 1
                    bar.update(1)
                    if not last_of_group:
                        continue
                    grad_norm = self._optimizer_step()
                    self.batch_in_epoch = index + 1
                    self._queue_step(epoch, group_start, num_batches, micro, grad_norm)
                    micro = []
                    self._read_pending(keep=1)  # the previous step, long done while this one is queued
                    stop = max_steps is not None and self.step >= max_steps
                    if stop or (self.checkpoint_every_steps and self.step % self.checkpoint_every_steps == 0):
                        if self.batch_in_epoch < num_batches:  # the epoch end writes its own checkpoint
                            self.save()  # reads every pending step first
                    if stop and self.batch_in_epoch < num_batches:
                        return records
            finally:
                bar.close()
                self._bar = None
            stopping = max_steps is not None and self.step >= max_steps
            records.append(self._end_epoch(epoch, epochs, time.perf_counter() - start_time,
                                           evaluate_every, validation, force_save=stopping))
            if max_steps is not None and self.step >= max_steps:
                break
        self._read_pending()  # nothing is left pending after fit (the epoch end has read everything)
        return records

    def _end_epoch(self, epoch: int, epochs: int, seconds: float, evaluate_every: int | None,
                   validation: tuple[Iterable[Any], Iterable[Any]] | None,
                   force_save: bool = False) -> dict[str, Any]:
        self._read_pending()  # the epoch's last step: its numbers go into the epoch record
        lrs = self.lrs()  # the rates this epoch trained with (before a per-epoch scheduler step)
        if self.scheduler is not None and not self.scheduler_per_iter:
            self.scheduler.step()
        record: dict[str, Any] = {
            "kind": "epoch", "epoch": epoch, "step": self.step, "lr": lrs,
            "loss": {k: v / max(self._epoch_batches, 1) for k, v in self._epoch_sums.items()},
            "frozen": self.frozen, "seconds": seconds,
        }
        self.epoch, self.batch_in_epoch = epoch + 1, 0
        self._epoch_sums, self._epoch_batches = {}, 0
        run_on_rank0(lambda: self.log.write(record), self.dist)  # a failed write stops every rank
        if validation is not None and evaluate_every is not None and (epoch % evaluate_every == 0
                                                                      or epoch == epochs):
            metrics = self.evaluate(*validation, split="validation")
            run_on_rank0(lambda: self.log.write({"kind": "eval", "epoch": epoch, "step": self.step, **metrics}),
                         self.dist)
            record["eval"] = metrics
            if self.best_metric is None or metrics["mAP"] > self.best_metric:
                self.best_metric, self.best_epoch = float(metrics["mAP"]), epoch
                self.save("best.pt")
        if force_save or epoch % self.checkpoint_every == 0 or epoch == epochs:
            self.save()
        return record

    def evaluate(self, query_loader: Iterable[Any], gallery_loader: Iterable[Any],
                 split: str = "validation") -> dict[str, Any]:
        """mAP, mINP and rank-1/5/10 (fractions) of the EMA model if any, else the model, on a query/gallery pair,
        with :attr:`eval_settings` (the config's ``eval``: metric, normalisation, flip, re-ranking).

        Under DDP each rank passes loaders of its share of the query and gallery; the evaluated model's buffers are
        first set to rank 0's, rank 0 gathers the features in rank order, computes the metrics and broadcasts them,
        so every rank returns the same dict (or, when the computation fails on rank 0, every rank raises:
        :func:`~reidkit.engine.distributed.run_on_rank0`).
        ``split`` is recorded with the numbers (``"validation"`` for model selection, ``"test"`` at the end).
        """
        from reidkit.evaluation import extract_features

        settings = self.eval_settings
        model = self.ema.module if self.ema is not None else self.model
        broadcast_buffers_(model, self.dist)  # every rank evaluates rank 0's BN statistics (those it saves)
        local = [extract_features(model, loader, flip=settings.flip, normalize=settings.l2_normalize,
                                  device=self.device, progress=False) for loader in (query_loader, gallery_loader)]
        query, gallery = (gather_features(part, self.dist) for part in local)

        def rank_metrics() -> dict[str, Any]:  # rank 0 (or a single process), which holds the gathered features
            assert query is not None and gallery is not None
            result = settings.rank(query, gallery, device=self.device)
            cmc = result.cmc
            return {"split": split, "mAP": float(result.mAP), "mINP": float(result.mINP),
                    **{f"rank{k}": float(cmc[k - 1]) for k in (1, 5, 10) if len(cmc) >= k}}

        metrics = run_on_rank0(rank_metrics, self.dist)  # an error on rank 0 reaches every rank
        self.train_mode()
        return metrics

    def close(self) -> None:
        """Close the log sink(s)."""
        self.log.close()

    def __repr__(self) -> str:
        return (f"Trainer(device={self.device}, amp={self.amp!r}, accumulate={self.accumulate}, "
                f"epoch={self.epoch}, step={self.step}, world_size={self.dist.world_size}, "
                f"out_dir={str(self.out_dir)!r})")
