"""Writing a SynthReID dataset: rendering the plan (optionally in worker processes), the manifest,
the atomic move into place, the summary, and :func:`ensure_synthreid`'s cache.

The output is a function of ``(preset, seed, GENERATOR_VERSION)`` only: every image comes from its own
keyed random stream and the manifest holds no path, date or timing, so two runs -- with any number of
workers -- write byte-identical folders.
"""
from __future__ import annotations

import json
import logging
import multiprocessing
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Iterator

from reidkit.data.datasets.base import GENERATED_MANIFEST, SplitStats

from .compose import jpeg_bytes, render_distractor, render_junk, render_person
from .identity import Identity
from .keys import Kind, Stream, rng_for
from .plan import SPLIT_DIRS, DatasetPlan, ImageSpec, plan_dataset
from .presets import PRESETS, SynthPreset
from .scene import CameraStyle

logger = logging.getLogger(__name__)

#: Bump whenever a change alters any written byte: cached datasets of another version are regenerated.
GENERATOR_VERSION = "2"
MANIFEST = GENERATED_MANIFEST
FORMAT = "synthreid"
DATA_ENV = "REIDKIT_DATA"


# ------------------------------------------------------------------------------------ validation


def _check_preset(preset: str | SynthPreset) -> SynthPreset:
    if isinstance(preset, SynthPreset):
        return preset
    if not isinstance(preset, str) or preset not in PRESETS:
        raise ValueError(f"unknown SynthReID preset {preset!r}; valid presets: {', '.join(PRESETS)}")
    return PRESETS[preset]


def _check_int(name: str, value: Any, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, got {type(value).__name__} {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return value


# ------------------------------------------------------------------------------------- rendering


@dataclass(frozen=True)
class RenderContext:
    """What a worker needs to render any image of the plan."""

    seed: int
    identities: dict[int, Identity]
    cameras: tuple[CameraStyle, ...]


def render_spec(spec: ImageSpec, ctx: RenderContext) -> bytes:
    """The JPEG bytes of one planned image, from its keyed stream ``[seed, IMAGE, kind, pid, cam, index]``."""
    rng = rng_for(ctx.seed, Stream.IMAGE, spec.kind, max(spec.pid, 0), spec.cam, spec.index)
    style = ctx.cameras[spec.cam - 1]
    if spec.kind == Kind.PERSON:
        image = render_person(ctx.identities[spec.pid], style, rng)
    elif spec.kind == Kind.DISTRACTOR:
        image = render_distractor(style, rng)
    else:
        image = render_junk(style, rng)
    return jpeg_bytes(image, rng)


def _write(root: Path, spec: ImageSpec, ctx: RenderContext) -> None:
    (root / spec.folder / spec.name).write_bytes(render_spec(spec, ctx))


_WORKER: dict[str, Any] = {}


def _worker_init(root: str, ctx: RenderContext) -> None:
    _WORKER["root"], _WORKER["ctx"] = Path(root), ctx


def _worker_write(specs: list[ImageSpec]) -> int:
    for spec in specs:
        _write(_WORKER["root"], spec, _WORKER["ctx"])
    return len(specs)


def _chunks(items: list[ImageSpec], size: int) -> Iterator[list[ImageSpec]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _render_all(root: Path, plan: DatasetPlan, workers: int) -> None:
    """Render and write every planned image into ``root`` (serially, or in ``workers`` processes)."""
    ctx = RenderContext(plan.seed, plan.identities, plan.cameras)
    if workers == 1:
        for spec in plan.images:
            _write(root, spec, ctx)
        return
    # "spawn": a fork of a process that already runs torch / OpenMP threads may deadlock
    mp = multiprocessing.get_context("spawn")
    with mp.Pool(workers, initializer=_worker_init, initargs=(str(root), ctx)) as pool:
        done = sum(pool.imap_unordered(_worker_write, _chunks(plan.images, 64)))
    if done != len(plan.images):
        raise RuntimeError(f"workers wrote {done} of {len(plan.images)} images")


# -------------------------------------------------------------------------------- manifest/summary


def _table(rows: list[tuple[str, ...]]) -> list[str]:
    """First column left-aligned, the others right-aligned, two spaces apart."""
    widths = [max(len(row[c]) for row in rows) for c in range(len(rows[0]))]
    return ["  ".join(cell.ljust(widths[c]) if c == 0 else cell.rjust(widths[c]) for c, cell in enumerate(row))
            for row in rows]


def _stats(specs: Iterable[ImageSpec]) -> SplitStats:
    items = list(specs)
    return SplitStats(len(items), len({s.pid for s in items}), len({s.cam for s in items}))


@dataclass(frozen=True)
class SynthReIDSummary:
    """What :func:`generate_synthreid` wrote. ``splits`` equals what ``SynthReID(root).statistics()``
    reports (junk excluded, distractors counted in the gallery with their pid 0); ``str()`` is a small
    deterministic table (no path, no timing)."""

    root: Path
    preset: str
    seed: int
    splits: dict[str, SplitStats]
    distractors: int
    junk: int
    confusable_ids: int
    total_ids: int

    @property
    def num_files(self) -> int:
        """Image files written (train + query + gallery including junk)."""
        return sum(s.images for s in self.splits.values()) + self.junk

    def to_json(self) -> dict[str, Any]:
        """The counts as a JSON-ready dict (stored in the manifest)."""
        return {
            **{split: s._asdict() for split, s in self.splits.items()},
            "distractors": self.distractors, "junk": self.junk, "files": self.num_files,
            "confusable_ids": self.confusable_ids, "ids": self.total_ids,
        }

    def __str__(self) -> str:
        rows = [("split", "images", "ids", "cameras")]
        rows += [(split, f"{s.images:,}", f"{s.ids:,}", f"{s.cameras:,}") for split, s in self.splits.items()]
        lines = [f"SynthReID preset {self.preset!r}, seed {self.seed} (generator v{GENERATOR_VERSION})"]
        lines += ["  " + line for line in _table(rows)]
        lines.append(f"  distractors (pid 0) in gallery: {self.distractors:,}")
        lines.append(f"  junk (pid -1) in bounding_box_test: {self.junk:,}")
        lines.append(f"  confusable identities: {self.confusable_ids:,} of {self.total_ids:,}")
        return "\n".join(lines)


def summarise(plan: DatasetPlan, root: Path) -> SynthReIDSummary:
    """The summary of ``plan`` written at ``root``."""
    by_folder = {split: [s for s in plan.images if s.folder == folder and s.kind != Kind.JUNK]
                 for split, folder in SPLIT_DIRS.items()}
    return SynthReIDSummary(
        root=root, preset=plan.preset.name, seed=plan.seed,
        splits={split: _stats(specs) for split, specs in by_folder.items()},
        distractors=sum(1 for s in plan.images if s.kind == Kind.DISTRACTOR),
        junk=sum(1 for s in plan.images if s.kind == Kind.JUNK),
        confusable_ids=sum(1 for i in plan.identities.values() if i.derived_from is not None),
        total_ids=len(plan.identities),
    )


def manifest(plan: DatasetPlan, summary: SynthReIDSummary) -> dict[str, Any]:
    """The content of ``synthreid.json``: preset, seed, version, counts, cameras and identities."""
    identities = {}
    for pid in sorted(plan.identities):
        layout = plan.layout[pid]
        identities[f"{pid:04d}"] = {
            "split": layout.split,
            "cameras": layout.cameras,
            "images_per_camera": {str(c): n for c, n in sorted(layout.images_per_camera.items())},
            **plan.identities[pid].to_json(),
        }
    return {
        "format": FORMAT,
        "generator_version": GENERATOR_VERSION,
        "preset": plan.preset.name,
        "preset_config": plan.preset.to_json(),
        "seed": plan.seed,
        "counts": summary.to_json(),
        "cameras": [style.to_json() for style in plan.cameras],
        "identities": identities,
    }


def read_manifest(folder: str | os.PathLike[str]) -> dict[str, Any] | None:
    """The parsed ``synthreid.json`` of ``folder``, or ``None`` when it is missing or not a SynthReID manifest."""
    path = Path(folder) / MANIFEST
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        logger.debug("unreadable manifest %s: %s", path, exc)
        return None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        return None
    if not all(key in data for key in ("generator_version", "preset", "seed", "counts")):
        return None
    return data


# ---------------------------------------------------------------------------------------- writing


def _prepare_target(out: Path, overwrite: bool) -> None:
    """Refuse a target that exists and is not empty, unless ``overwrite`` and it is a SynthReID folder."""
    if out.exists() and not out.is_dir():
        raise FileExistsError(f"SynthReID output {out} exists and is not a folder")
    if out.is_dir() and any(out.iterdir()):
        if not overwrite:
            raise FileExistsError(
                f"SynthReID output folder {out} is not empty; choose another folder or pass "
                "overwrite=True (reidkit synth --overwrite) to replace it"
            )
        if read_manifest(out) is None:
            raise FileExistsError(
                f"refusing to overwrite {out}: it is not a SynthReID dataset (no valid {MANIFEST}); "
                "delete it yourself or choose another folder"
            )


def _move_into_place(tmp: Path, out: Path) -> None:
    """Replace ``out`` (absent, empty, or an old SynthReID) by the finished ``tmp`` folder."""
    if out.is_dir() and not any(out.iterdir()):
        out.rmdir()
    if out.exists():
        old = out.parent / f".{out.name}.old-{os.getpid()}"
        out.rename(old)
        tmp.rename(out)
        shutil.rmtree(old)
    else:
        tmp.rename(out)


def generate_synthreid(
    out: str | os.PathLike[str],
    preset: str | SynthPreset = "tiny",
    seed: int = 0,
    overwrite: bool = False,
    workers: int = 1,
) -> SynthReIDSummary:
    """Render SynthReID ``preset`` with ``seed`` into the folder ``out`` (Market-1501 layout).

    Writes ``bounding_box_train/``, ``query/``, ``bounding_box_test/`` (with ``0000_`` distractors and
    ``-1_`` junk) and ``synthreid.json`` (preset, seed, generator version, counts, camera styles and
    every identity's attributes). Work happens in a hidden sibling folder renamed into place at the
    end, so an interrupted run never leaves a folder that looks complete. The bytes depend on
    ``(preset, seed)`` only, never on ``workers``.

    Errors: an unknown preset (``ValueError`` listing the valid ones), a negative or non-int ``seed``
    or ``workers < 1``, and a non-empty ``out`` without ``overwrite`` (``FileExistsError`` naming it;
    with ``overwrite`` only a folder holding a SynthReID manifest is replaced).
    """
    spec = _check_preset(preset)
    seed = _check_int("seed", seed, 0)
    workers = _check_int("workers", workers, 1)
    out = Path(out).expanduser().absolute()
    _prepare_target(out, overwrite)
    plan = plan_dataset(spec, seed)
    summary = summarise(plan, out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.parent / f".{out.name}.partial-{os.getpid()}"
    if tmp.exists():
        shutil.rmtree(tmp)
    try:
        for folder in SPLIT_DIRS.values():
            (tmp / folder).mkdir(parents=True)
        _render_all(tmp, plan, workers)
        text = json.dumps(manifest(plan, summary), indent=1, sort_keys=True, ensure_ascii=True)
        (tmp / MANIFEST).write_text(text + "\n", encoding="utf-8")
        _move_into_place(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    logger.info("SynthReID %s (seed %d): %d files written to %s", spec.name, seed, summary.num_files, out)
    return summary


# ------------------------------------------------------------------------------------------ cache


def default_data_root() -> Path:
    """Where :func:`ensure_synthreid` keeps datasets: ``$REIDKIT_DATA`` if set, else the ``data/``
    folder of a source checkout (recognised by its ``README.md``), else ``~/.cache/reidkit/data``."""
    env = os.environ.get(DATA_ENV, "").strip()
    if env:
        return Path(env).expanduser()
    import reidkit

    checkout = Path(reidkit.__file__).resolve().parents[1] / "data"
    if (checkout / "README.md").is_file():
        return checkout
    return Path.home() / ".cache" / "reidkit" / "data"


def ensure_synthreid(
    preset: str = "tiny",
    seed: int = 0,
    root: str | os.PathLike[str] | None = None,
    workers: int = 1,
) -> Path:
    """The folder ``root/synthreid_{preset}_s{seed}``, generated only when missing.

    An existing folder is reused when its ``synthreid.json`` names the same preset, seed and generator
    version; one written by another generator version is regenerated in place. A folder without a valid
    manifest (not SynthReID, or foreign files) is never overwritten: ``FileExistsError`` asks the user to
    delete it. ``root`` defaults to :func:`default_data_root`.
    """
    spec = _check_preset(preset)
    seed = _check_int("seed", seed, 0)
    base = Path(root).expanduser() if root is not None else default_data_root()
    folder = (base / f"synthreid_{spec.name}_s{seed}").absolute()
    if not folder.exists() or (folder.is_dir() and not any(folder.iterdir())):
        generate_synthreid(folder, spec, seed, workers=workers)
        return folder
    found = read_manifest(folder)
    if found is None:
        raise FileExistsError(
            f"{folder} exists but holds no valid {MANIFEST}, so it is not a complete SynthReID dataset; "
            "delete the folder and run again to regenerate it"
        )
    if found["preset"] != spec.name or found["seed"] != seed:
        raise FileExistsError(
            f"{folder} holds SynthReID preset {found['preset']!r} seed {found['seed']}, not {spec.name!r} "
            f"seed {seed}; delete or rename it"
        )
    if found["generator_version"] != GENERATOR_VERSION:
        logger.warning("%s was written by SynthReID generator v%s; regenerating with v%s",
                       folder, found["generator_version"], GENERATOR_VERSION)
        generate_synthreid(folder, spec, seed, overwrite=True, workers=workers)
    return folder
