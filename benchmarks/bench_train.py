"""Training throughput: the reidkit ``Trainer`` beside a bare forward/backward/step loop on the same model.

    python benchmarks/bench_train.py                              # CPU defaults: resnet18, 128x64, batch 32
    python benchmarks/bench_train.py --device cuda --matrix       # CUDA defaults: resnet50, 256x128, batch 64;
                                                                  # fp32 against bf16 + channels_last
    python benchmarks/bench_train.py --device cuda --amp fp16 --channels-last --arch resnet50_ibn_a --steps 100
    python benchmarks/bench_train.py --device cuda --matrix --no-cudnn-benchmark  # cuDNN's default algorithms

Three measurements per setting, each in images per second (batch size × timed steps / seconds):

* **trainer**: :class:`reidkit.engine.trainer.Trainer` built by :func:`reidkit.engine.run.build_run` from the
  ``synth_quick`` recipe (``--config``) with the options below: the real P×K loader on SynthReID (``--preset``,
  generated on first use), the train augmentations, the config's loss (CE + triplet), Adam, the per-iteration
  warm-up schedule, the JSON-lines log and the non-finite check. The window runs from the forward of batch
  ``warmup`` to the forward of batch ``warmup + steps`` (a forward pre-hook on the model), so it holds exactly
  ``steps`` iterations, loading included; no checkpoint and no evaluation fall inside it.
* **bare**: the same model, loss and optimiser (a second, identically seeded ``build_run``) stepped on one pre-made
  batch already on the device: ``autocast → model(x, pids) → loss → backward → step → zero_grad``.
* **loader**: the trainer's loader alone (P×K sampling, JPEG decoding, augmentation, collation), no model.

``trainer / bare`` shows what the data pipeline and the bookkeeping cost. When the loader alone is faster than the
bare loop and the trainer is still slower than the bare loop, the loss is not the loader's speed but what runs
beside it: the trainer's per-step work (synchronisation, logging), host-to-device copies, or loader workers taking
cores from the main process. CUDA is synchronised at both ends of every timed window. cuDNN's per-shape algorithm
search follows the recipe's ``train.cudnn_benchmark`` (on by default; the trainer sets it on CUDA, for the bare loop
too, which is built by the same ``build_run``); ``--cudnn-benchmark`` / ``--no-cudnn-benchmark`` override it.
"""
from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from reidkit.config import SCHEMA, load_config  # noqa: E402
from reidkit.engine.run import Run, build_run  # noqa: E402

CPU_DEFAULTS = {"arch": "resnet18", "size": "128x64", "batch_size": 32, "steps": 30, "warmup": 3, "workers": 2}
CUDA_DEFAULTS = {"arch": "resnet50", "size": "256x128", "batch_size": 64, "steps": 50, "warmup": 10, "workers": 8}


@dataclass(frozen=True)
class Setting:
    """One row of the table: mixed precision and memory format."""

    amp: str  # "off" | "bf16" | "fp16"
    channels_last: bool

    @property
    def label(self) -> str:
        name = "fp32" if self.amp == "off" else self.amp
        return name + (" + channels_last" if self.channels_last else "")


@dataclass(frozen=True)
class Result:
    setting: Setting
    trainer: float
    bare: float
    loader: float


def parse_size(text: str) -> tuple[int, int]:
    """``"256x128"`` → ``(256, 128)`` (height × width)."""
    parts = text.lower().split("x")
    if len(parts) != 2 or not all(p.isdigit() and int(p) > 0 for p in parts):
        raise argparse.ArgumentTypeError(f"--size must look like HEIGHTxWIDTH (e.g. 256x128), got {text!r}")
    return int(parts[0]), int(parts[1])


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def run_config(args: argparse.Namespace, setting: Setting) -> dict[str, Any]:
    height, width = args.size
    overrides = [
        f"data.root=synthreid:{args.preset}", f"model.backbone={args.arch}", "model.pretrained=false",
        f"data.height={height}", f"data.width={width}", f"data.batch_size={args.batch_size}",
        f"data.workers={args.workers}", f"train.device={args.device}", f"train.amp={setting.amp != 'off'}",
        f"train.channels_last={setting.channels_last}", "train.epochs=100000", "train.checkpoint_every=100000",
        "train.val_ids=0", "train.seed=0", "log.progress=false", "log.wandb_mode=disabled",
    ]
    if args.cudnn_benchmark is not None:
        overrides.append(f"train.cudnn_benchmark={args.cudnn_benchmark}")
    if setting.amp != "off":
        overrides.append(f"train.amp_dtype={setting.amp}")
    if "table" in SCHEMA["log"]:  # the per-epoch metrics table would interleave with this script's own table
        overrides.append("log.table=false")
    return load_config(args.config, overrides)


def time_trainer(run: Run, warmup: int, steps: int) -> float:
    """Seconds for ``steps`` trainer iterations after ``warmup`` (forward pre-hook on the model marks them)."""
    device = run.trainer.device
    marks: dict[int, float] = {}
    calls = 0

    def mark(module: torch.nn.Module, inputs: Any) -> None:
        nonlocal calls
        if calls in (warmup, warmup + steps):
            synchronize(device)
            marks[calls] = time.perf_counter()
        calls += 1

    handle = run.trainer.model.register_forward_pre_hook(mark)
    try:
        run.trainer.fit(run.cfg["train"]["epochs"], max_steps=warmup + steps + 1)
    finally:
        handle.remove()
        run.trainer.close()
    if set(marks) != {warmup, warmup + steps}:
        raise RuntimeError(f"the trainer ran {calls} forwards, expected {warmup + steps + 1}")
    return marks[warmup + steps] - marks[warmup]


def time_bare(run: Run, warmup: int, steps: int) -> float:
    """Seconds for ``steps`` bare iterations on one pre-made P×K batch (same model, loss, optimiser, precision)."""
    trainer = run.trainer
    device, model, loss, optimizer = trainer.device, trainer.model, trainer.loss, run.optimizer
    batch = run.cfg["data"]["batch_size"]
    instances = run.cfg["data"]["num_instances"]
    height, width = run.cfg["data"]["height"], run.cfg["data"]["width"]
    generator = torch.Generator().manual_seed(0)
    images = torch.randn(batch, 3, height, width, generator=generator).to(device)
    if trainer.channels_last:
        images = images.contiguous(memory_format=torch.channels_last)
    pids = torch.arange(batch // instances).repeat_interleave(instances).to(device)
    scaler = torch.amp.GradScaler(device.type, enabled=trainer.amp == "fp16")
    dtype = torch.bfloat16 if trainer.amp == "bf16" else torch.float16
    model.train()
    loss.train()

    def step() -> None:
        with torch.autocast(device_type=device.type, dtype=dtype, enabled=trainer.amp != "off"):
            output = model(images, pids)
        total = loss(output, pids).total
        scaler.scale(total).backward()
        scaler.step(optimizer)
        scaler.update()
        optimizer.zero_grad(set_to_none=True)

    for _ in range(warmup):
        step()
    synchronize(device)
    start = time.perf_counter()
    for _ in range(steps):
        step()
    synchronize(device)
    trainer.close()
    return time.perf_counter() - start


def endless(run: Run) -> Iterator[Any]:
    epoch = 0
    while True:
        run.train_loader.set_epoch(epoch)
        yield from run.train_loader
        epoch += 1


def time_loader(run: Run, warmup: int, steps: int) -> float:
    """Seconds for the loader alone to yield ``steps`` batches after ``warmup``."""
    batches = endless(run)
    for _ in range(warmup):
        next(batches)
    start = time.perf_counter()
    for _ in range(steps):
        next(batches)
    return time.perf_counter() - start


def measure(args: argparse.Namespace, setting: Setting, out: Path) -> Result:
    images = args.batch_size * args.steps
    cfg = run_config(args, setting)
    torch.manual_seed(0)
    bare_run = build_run(cfg, out / f"{setting.label}-bare")
    bare = images / time_bare(bare_run, args.warmup, args.steps)
    loader = images / time_loader(bare_run, args.warmup, args.steps)
    del bare_run
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    torch.manual_seed(0)
    trainer_run = build_run(cfg, out / f"{setting.label}-trainer")
    trainer = images / time_trainer(trainer_run, args.warmup, args.steps)
    del trainer_run
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    return Result(setting, trainer, bare, loader)


def describe_machine(device: torch.device) -> str:
    text = (f"machine: {platform.machine()}, {os.cpu_count()} CPU cores, Python {platform.python_version()}, "
            f"torch {torch.__version__} ({torch.get_num_threads()} threads), "
            f"load average {os.getloadavg()[0]:.1f}")
    if device.type == "cuda":
        text += f", GPU {torch.cuda.get_device_name(device)}"
    return text


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--amp", choices=("off", "bf16", "fp16"), default="off")
    parser.add_argument("--channels-last", action="store_true")
    parser.add_argument("--matrix", action="store_true",
                        help="fp32 against bf16 + channels_last side by side (meant for CUDA)")
    parser.add_argument("--arch", help="backbone (default resnet18 on CPU, resnet50 on CUDA)")
    parser.add_argument("--size", type=parse_size, help="HEIGHTxWIDTH (default 128x64 on CPU, 256x128 on CUDA)")
    parser.add_argument("--batch-size", type=int, help="P×K images per step (default 32 on CPU, 64 on CUDA)")
    parser.add_argument("--steps", type=int, help="timed steps (default 30 on CPU, 50 on CUDA)")
    parser.add_argument("--warmup", type=int, help="untimed steps first (default 3 on CPU, 10 on CUDA)")
    parser.add_argument("--workers", type=int, help="loader processes (default 2 on CPU, 8 on CUDA)")
    parser.add_argument("--cudnn-benchmark", action=argparse.BooleanOptionalAction, default=None,
                        help="train.cudnn_benchmark: cuDNN times its algorithms per input shape "
                             "(default: the recipe's value, on)")
    parser.add_argument("--preset", default="small", help="SynthReID preset trained on (default small)")
    parser.add_argument("--config", default="synth_quick", help="recipe the trainer is built from")
    args = parser.parse_args(argv)

    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: CUDA is not available on this machine")
    defaults = CUDA_DEFAULTS if args.device == "cuda" else CPU_DEFAULTS
    for key, value in defaults.items():
        if getattr(args, key) is None:
            setattr(args, key, parse_size(value) if key == "size" else value)
    for key in ("batch_size", "steps"):
        if getattr(args, key) < 1:
            parser.error(f"--{key.replace('_', '-')} must be >= 1, got {getattr(args, key)}")
    if args.warmup < 1 or args.workers < 0:
        parser.error("--warmup must be >= 1 and --workers >= 0")
    if args.batch_size % 4:
        parser.error(f"--batch-size must be a multiple of 4 (P×K with K = 4), got {args.batch_size}")
    settings = ([Setting("off", False), Setting("bf16", True)] if args.matrix
                else [Setting(args.amp, args.channels_last)])

    device = torch.device(args.device)
    print(describe_machine(device))
    height, width = args.size
    cudnn_benchmark = run_config(args, settings[0])["train"]["cudnn_benchmark"]
    print(f"{args.arch} at {height}x{width}, batch {args.batch_size} (P×K {args.batch_size // 4}×4), "
          f"recipe {args.config} on SynthReID {args.preset}, {args.workers} loader workers, device {args.device}"
          + (f", cudnn.benchmark {'on' if cudnn_benchmark else 'off'}" if device.type == "cuda" else ""))
    print(f"timed: {args.steps} steps after {args.warmup} warm-up steps; images/s = batch × steps / seconds\n")

    results = []
    with tempfile.TemporaryDirectory(prefix="bench_train_") as tmp:
        for setting in settings:
            results.append(measure(args, setting, Path(tmp)))

    print(f"  {'setting':<24}{'trainer img/s':>15}{'bare img/s':>12}{'trainer/bare':>14}{'loader img/s':>14}")
    for r in results:
        print(f"  {r.setting.label:<24}{r.trainer:>15.1f}{r.bare:>12.1f}{r.trainer / r.bare:>13.2f}x"
              f"{r.loader:>14.1f}")
    if len(results) == 2:
        base, fast = results
        print(f"\n  {fast.setting.label} / {base.setting.label}: trainer {fast.trainer / base.trainer:.2f}x, "
              f"bare loop {fast.bare / base.bare:.2f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
