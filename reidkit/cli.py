"""The ``reidkit`` command line: the only module that reads ``sys.argv``.

    reidkit demo                         SynthReID small -> statistics, baseline, train synth_quick, figures
    reidkit synth --preset tiny --out D  write a SynthReID dataset in Market-1501 layout
    reidkit info                         versions, extras and device
    reidkit notebooks                    re-execute the notebooks in place (stored outputs)
    reidkit export --checkpoint C --onnx out.onnx   ONNX export of a trained model's retrieval feature
    reidkit eval --checkpoint C --dataset NAME --root DIR [--flip] [--rerank] [--out metrics.json]
                                         CMC / mAP / mINP of a checkpoint on any dataset's query / gallery
    reidkit train --config NAME_OR_PATH [key=value ...] [--resume CKPT] [--out DIR]
                                         train a config's run, then evaluate the test split once
    torchrun --nproc_per_node N -m reidkit train --config ...   the same on N processes (DDP)
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from reidkit.data.datasets import DatasetError


def _cmd_synth(args: argparse.Namespace) -> int:
    from reidkit.data.synthetic import generate_synthreid

    summary = generate_synthreid(
        args.out, preset=args.preset, seed=args.seed, overwrite=args.overwrite, workers=args.workers
    )
    print(f"SynthReID preset={args.preset} seed={args.seed} written to {args.out}")
    print(summary)
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    from reidkit.demo import run_demo

    run_demo(
        out_dir=Path(args.out),
        preset=args.preset,
        seed=args.seed,
        data_root=args.data_root,
        workers=args.workers,
        epochs=args.epochs,
    )
    return 0


def _cmd_info(args: argparse.Namespace) -> int:
    from reidkit.diagnostics import environment_report

    print(environment_report())
    return 0


def _cmd_notebooks(args: argparse.Namespace) -> int:
    from reidkit.devtools.notebooks import execute_notebooks

    return execute_notebooks(args.names, notebooks_dir=Path(args.dir), timeout=args.timeout)


def _read_yaml_config(path: str) -> tuple[dict, dict]:
    """(model section, data section) of a YAML config: a full config with a ``model:`` section, or a bare model
    section."""
    import yaml

    with open(path, encoding="utf-8") as handle:
        tree = yaml.safe_load(handle) or {}
    if not isinstance(tree, dict):
        raise ValueError(f"{path}: a config must be a YAML mapping, got {type(tree).__name__}")
    if "model" in tree:
        model, data = tree["model"] or {}, tree.get("data") or {}
        if not isinstance(model, dict) or not isinstance(data, dict):
            raise ValueError(f"{path}: 'model' and 'data' must be mappings")
        return model, data
    return tree, {}


def _export_model_options(args: argparse.Namespace) -> tuple[dict, dict]:
    """Model options from --config, then the explicit flags and --set KEY=VALUE (later wins)."""
    import yaml

    model_cfg, data_cfg = _read_yaml_config(args.config) if args.config else ({}, {})
    flags = {"backbone": args.backbone, "pooling": args.pooling, "neck": args.neck, "head": args.head,
             "embedding_dim": args.embedding_dim, "eval_feature": args.eval_feature}
    model_cfg.update({k: v for k, v in flags.items() if v is not None})
    for item in args.set:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ValueError(f"--set expects KEY=VALUE (value in YAML), got {item!r}")
        model_cfg[key.strip()] = yaml.safe_load(value)
    return model_cfg, data_cfg


def _cmd_export(args: argparse.Namespace) -> int:
    import yaml

    from reidkit.export import ExportCheckError, ExportError, check_onnx, export_onnx, model_from_checkpoint

    try:
        model_cfg, data_cfg = _export_model_options(args)
        height = args.height if args.height is not None else int(data_cfg.get("height", 256))
        width = args.width if args.width is not None else int(data_cfg.get("width", 128))
        model = model_from_checkpoint(args.checkpoint, model_cfg, args.num_classes)
        path = export_onnx(model, args.onnx, height=height, width=width,
                           normalize_inside=True if args.normalize_inside else None, opset=args.opset)
        inside = model.input_norm is not None or args.normalize_inside
        print(f"exported {path}: images (batch, 3, {height}, {width}) "
              + ("RGB in [0, 1], normalised inside the graph" if inside else "already normalised RGB")
              + f" -> features (batch, {model.feature_dim}), opset {args.opset}")
        if args.verify:
            try:
                worst = check_onnx(model, path, batch_sizes=(1, 3))
            except ExportCheckError:
                path.unlink(missing_ok=True)  # never leave a wrong graph under the requested name
                raise
            print(f"onnxruntime check: max |onnx - torch| = {worst:.2e} on batches of 1 and 3")
    except (ValueError, ImportError, yaml.YAMLError, ExportError) as err:
        print(f"reidkit export: error: {err}", file=sys.stderr)
        return 1
    return 0


def _parse_key_values(items: list[str], flag: str) -> dict:
    """``KEY=VALUE`` strings (VALUE in YAML) as a dict; a malformed item is a ``ValueError`` naming ``flag``."""
    import yaml

    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"{flag} expects KEY=VALUE (value in YAML), got {item!r}")
        out[key.strip()] = yaml.safe_load(value)
    return out


def _load_eval_model(path: str):
    """The model stored in the checkpoint ``path`` (``torch.load(weights_only=True)``), in eval mode: a
    :class:`~reidkit.models.lightmbn.LightMBN` when the checkpoint's ``model_cfg`` says ``arch: lightmbn``, else a
    :class:`~reidkit.models.ReIDModel` through :func:`reidkit.export.model_from_checkpoint`."""
    from reidkit.export import checkpoint_metadata, model_from_checkpoint

    file = Path(path).expanduser()
    if not file.is_file():
        raise FileNotFoundError(f"checkpoint file not found: {file}")
    meta = checkpoint_metadata(file)
    cfg = meta.get("model_cfg")
    if isinstance(cfg, dict) and cfg.get("arch", "reid") == "lightmbn":
        from reidkit.models.lightmbn import LightMBN
        from reidkit.models.weights import load_pretrained, read_checkpoint

        if meta.get("num_classes") is None:
            raise ValueError(f"{file}: a LightMBN checkpoint must store 'num_classes'")
        kwargs = {k: v for k, v in cfg.items() if k != "arch"}
        kwargs["pretrained"] = False
        model = LightMBN(int(meta["num_classes"]), **kwargs)
        try:
            load_pretrained(model, read_checkpoint(file), ignore_unexpected=())
        except ValueError as err:
            raise ValueError(f"{file} does not fit the LightMBN built from its model_cfg: {err}") from err
        return model.eval()
    if isinstance(cfg, dict) and "arch" in cfg:
        cfg = {k: v for k, v in cfg.items() if k != "arch"}
        return model_from_checkpoint(file, cfg)
    return model_from_checkpoint(file)


def _cmd_eval(args: argparse.Namespace) -> int:
    import dataclasses
    import json

    import yaml

    from reidkit.atomic_io import write_text_atomic
    from reidkit.config import load_config
    from reidkit.data.datasets import build_dataset
    from reidkit.data.transforms import build_transforms
    from reidkit.engine.evaluator import evaluate_model
    from reidkit.models.lightmbn import LightMBN

    try:
        if args.set and not args.config:
            raise ValueError("--set needs --config (it overrides keys of that config)")
        cfg = load_config(args.config, args.set) if args.config else None
        data = cfg["data"] if cfg else {}
        ev = cfg["eval"] if cfg else {}
        name = args.dataset if args.dataset is not None else data.get("name")
        root = args.root if args.root is not None else data.get("root")
        if name is None or root is None:
            raise ValueError("give the dataset with --dataset NAME --root DIR "
                             "(or a --config with data.name / data.root)")
        options = dict(data.get("dataset_kwargs") or {}) if cfg and name == data.get("name") else {}
        options.update(_parse_key_values(args.dataset_option, "--dataset-option"))

        model = _load_eval_model(args.checkpoint)
        dataset = build_dataset(name, root, **options)

        # only what the test pipeline uses (resize, interpolation, normalisation); training augmentations such as a
        # cutout larger than a small --height/--width would otherwise be validated against the new size
        configured = data.get("transforms") or {}
        transforms = {k: configured[k] for k in ("interpolation", "mean", "std") if k in configured}
        transforms["cutout_p"] = 0.0
        transforms["height"] = args.height if args.height is not None else int(data.get("height", 256))
        transforms["width"] = args.width if args.width is not None else int(data.get("width", 128))
        if getattr(model, "input_norm", None) is not None:  # the model normalises its [0, 1] input itself
            transforms["mean"], transforms["std"] = (0.0, 0.0, 0.0), (1.0, 1.0, 1.0)
        transform = build_transforms(transforms, train=False)

        default_metric = "cosine" if isinstance(model, LightMBN) else "euclidean"
        metric = args.metric or ev.get("metric", default_metric)
        rerank = bool(args.rerank or ev.get("rerank", False))
        params = ({"k1": ev.get("rerank_k1", 20), "k2": ev.get("rerank_k2", 6),
                   "lambda_value": ev.get("rerank_lambda", 0.3)} if rerank else None)
        report = evaluate_model(
            model, dataset.query, dataset.gallery, transform=transform, metric=metric,
            flip=bool(args.flip or ev.get("flip", False)), normalize=ev.get("normalize") if cfg else None,
            rerank=rerank, rerank_params=params, max_rank=int(ev.get("max_rank", 50)),
            batch_size=args.batch_size if args.batch_size is not None else int(data.get("test_batch_size", 128)),
            workers=args.workers if args.workers is not None else int(data.get("workers", 0)),
            progress=sys.stderr.isatty(),
        )
        report = dataclasses.replace(report, extra={
            "checkpoint": str(args.checkpoint), "dataset": name, "root": str(root),
            "height": transforms["height"], "width": transforms["width"],
        })
    except (ValueError, yaml.YAMLError) as err:
        message = " ".join(str(err).split())  # one line, whatever the library's message looked like
        print(f"reidkit eval: error: {message}", file=sys.stderr)
        return 1
    print(f"{name} {root}: {report.summary()}")
    if args.out:
        out = Path(args.out)
        write_text_atomic(out, json.dumps(report.to_dict(), indent=2) + "\n")
        print(f"metrics written to {out}")
    return 0


def _cmd_train(args: argparse.Namespace) -> int:
    """``reidkit train``: load and validate the config with its overrides, train, test once, write metrics."""
    from reidkit.config import ConfigError, load_config
    from reidkit.engine.run import train_from_config

    try:
        cfg = load_config(args.config, args.overrides)
        metrics = train_from_config(cfg, resume=args.resume, out_dir=args.out)
    except (ConfigError, ValueError) as err:
        message = " ".join(str(err).split())  # one line, whatever the library's message looked like
        print(f"reidkit train: error: {message}", file=sys.stderr)
        return 1
    if os.environ.get("RANK", "0") != "0":  # torchrun: only rank 0 prints
        return 0
    test = metrics["test"]
    label = "test (test-selected)" if metrics["test_selected"] else "test"
    best = metrics["validation"]["best_mAP"]
    if best is not None and not metrics["test_selected"]:
        print(f"validation: best mAP {best:.4f} at epoch {metrics['validation']['best_epoch']}")
    print(f"{label}: mAP {test['mAP']:.4f} mINP {test['mINP']:.4f} "
          + " ".join(f"R{k} {test[f'rank{k}']:.4f}" for k in (1, 5, 10) if f"rank{k}" in test))
    out = Path(args.out) if args.out is not None else Path(cfg["train"]["output_dir"])
    print(f"config, checkpoints and metrics written to {out}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    from reidkit.data.synthetic import PRESETS

    parser = argparse.ArgumentParser(prog="reidkit", description="Person re-identification toolkit.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    demo = sub.add_parser(
        "demo", help="SynthReID: statistics, a hand-crafted baseline, train synth_quick, evaluate, draw figures"
    )
    demo.add_argument("--preset", default="small", choices=sorted(PRESETS), help="SynthReID size")
    demo.add_argument("--seed", type=int, default=0, help="SynthReID seed")
    demo.add_argument("--out", default="outputs/demo", help="folder for figures and metrics")
    demo.add_argument("--data-root", default=None, help="where SynthReID is cached (default: data/)")
    demo.add_argument("--workers", type=int, default=2, help="processes rendering SynthReID (same bytes for any)")
    demo.add_argument("--epochs", type=int, default=None, help="override the synth_quick recipe's epochs")
    demo.set_defaults(func=_cmd_demo)

    synth = sub.add_parser("synth", help="write a SynthReID dataset in Market-1501 layout")
    synth.add_argument("--preset", default="tiny", choices=sorted(PRESETS))
    synth.add_argument("--out", required=True, help="output folder (created)")
    synth.add_argument("--seed", type=int, default=0)
    synth.add_argument("--overwrite", action="store_true", help="replace an existing SynthReID folder")
    synth.add_argument("--workers", type=int, default=1, help="rendering processes (same bytes for any number)")
    synth.set_defaults(func=_cmd_synth)

    info = sub.add_parser("info", help="installed versions, extras and device")
    info.set_defaults(func=_cmd_info)

    nbs = sub.add_parser(
        "notebooks", help="re-execute notebooks in place in CI mode (regenerates the stored outputs)"
    )
    nbs.add_argument("names", nargs="*", help="notebook files or name prefixes (default: all)")
    nbs.add_argument("--dir", default="notebooks", help="notebook folder")
    nbs.add_argument("--timeout", type=int, default=600, help="per-cell timeout in seconds")
    nbs.set_defaults(func=_cmd_notebooks)

    export = sub.add_parser(
        "export", help="ONNX export of a checkpoint's retrieval feature (eval mode, dynamic batch axis)",
        description="Checkpoint: a dict {'model': state_dict, 'model_cfg': {...}, 'num_classes': N} as the trainer "
                    "writes it, or a bare state dict plus the model options (--config / --backbone ... / --set); "
                    "read with torch.load(weights_only=True). Model options given here override the "
                    "checkpoint's model_cfg. The file is written atomically and checked with onnxruntime.")
    export.add_argument("--checkpoint", required=True, help="checkpoint file (.pth)")
    export.add_argument("--onnx", required=True, help="output .onnx file")
    export.add_argument("--config", default=None,
                        help="YAML config: its 'model' section (or the whole file as the model section); its "
                             "data.height / data.width set the default input size")
    export.add_argument("--backbone", default=None, help="model.backbone (e.g. resnet50, osnet_x1_0)")
    export.add_argument("--pooling", default=None, help="model.pooling (avg, max, gem)")
    export.add_argument("--neck", default=None, help="model.neck (bnneck, none)")
    export.add_argument("--head", default=None, help="model.head (linear, cos, circle, arcface)")
    export.add_argument("--embedding-dim", type=int, default=None, help="model.embedding_dim")
    export.add_argument("--eval-feature", default=None, choices=("before", "after"),
                        help="the exported feature: before or after the BNNeck's BN (default after)")
    export.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="any other model option, VALUE in YAML (e.g. --set gem_learnable=true); repeatable")
    export.add_argument("--num-classes", type=int, default=None,
                        help="training identities (default: the checkpoint's num_classes, else head.weight rows)")
    export.add_argument("--normalize-inside", action="store_true",
                        help="the graph takes RGB in [0, 1] and normalises with the ImageNet mean/std itself "
                             "(default: the input is already normalised, unless the model has input_norm)")
    export.add_argument("--height", type=int, default=None, help="input height (default: config or 256)")
    export.add_argument("--width", type=int, default=None, help="input width (default: config or 128)")
    export.add_argument("--opset", type=int, default=18,
                        help="ONNX opset (18: torch.export-based exporter; 14-17: TorchScript exporter)")
    export.add_argument("--no-verify", dest="verify", action="store_false",
                        help="skip the onnxruntime comparison (batches of 1 and 3, atol 1e-4)")
    export.set_defaults(func=_cmd_export)

    ev = sub.add_parser(
        "eval", help="CMC / mAP / mINP of a checkpoint on a dataset's query / gallery (flip, re-ranking)",
        description="Checkpoint: {'model': state_dict, 'model_cfg': {...}, 'num_classes': N} as the trainer writes "
                    "it (read with torch.load(weights_only=True); model_cfg 'arch: lightmbn' gives a LightMBN). "
                    "Settings come from --config (its data and eval sections; the model always comes from the "
                    "checkpoint) and the flags below (which win). Market-1501 protocol, standard AP. Prints one "
                    "summary line; --out writes the metrics as JSON (fractions), atomically.")
    ev.add_argument("--checkpoint", required=True, help="checkpoint file (.pth)")
    ev.add_argument("--dataset", default=None,
                    help="dataset name (market1501, dukemtmcreid, msmt17, cuhk03np, imagefolder, synthreid); "
                         "default: the config's data.name")
    ev.add_argument("--root", default=None, help="dataset folder (default: the config's data.root)")
    ev.add_argument("--dataset-option", action="append", default=[], metavar="KEY=VALUE",
                    help="an option of the dataset class, VALUE in YAML (e.g. variant=labeled for cuhk03np); "
                         "repeatable")
    ev.add_argument("--config", default=None, help="a shipped recipe name or a YAML config (data / eval sections)")
    ev.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="config override, e.g. eval.rerank_k1=30 (needs --config); repeatable")
    ev.add_argument("--flip", action="store_true", help="flip test-time augmentation (mean of image and mirror)")
    ev.add_argument("--rerank", action="store_true", help="k-reciprocal re-ranking (k1=20, k2=6, lambda=0.3 "
                                                          "unless the config's eval section says otherwise)")
    ev.add_argument("--metric", default=None, choices=("euclidean", "cosine"),
                    help="distance (default: the config's eval.metric; without a config euclidean, cosine for "
                         "LightMBN, whose branch features are normalised separately)")
    ev.add_argument("--height", type=int, default=None, help="input height (default: config or 256)")
    ev.add_argument("--width", type=int, default=None, help="input width (default: config or 128)")
    ev.add_argument("--batch-size", type=int, default=None, help="test batch size (default: config or 128)")
    ev.add_argument("--workers", type=int, default=None, help="loader processes (default: config or 0)")
    ev.add_argument("--out", default=None, help="write the metrics and settings as JSON here")
    ev.set_defaults(func=_cmd_eval)

    train = sub.add_parser(
        "train", help="train a config's run (validation split for model selection), then test once",
        description="Loads a shipped recipe or a YAML file, applies the key=value overrides (values in YAML), "
                    "validates it, trains, evaluates the test split once at the end and writes config.yaml, "
                    "metrics.json, log.jsonl and checkpoints (last.pt, best.pt) to --out (default "
                    "train.output_dir). For SynthReID, data.root=synthreid:PRESET[:SEED] generates the dataset "
                    "on first use. Several processes (DistributedDataParallel): torchrun --nproc_per_node N -m "
                    "reidkit train --config C ... (NCCL on GPUs, one per process; Gloo on CPU); data.batch_size is "
                    "then the global P×K batch, split over the N processes, and only rank 0 writes files and "
                    "prints.")
    train.add_argument("--config", required=True, help="a shipped recipe name (e.g. bot_r50) or a YAML file")
    train.add_argument("overrides", nargs="*", metavar="key=value",
                       help="config overrides, e.g. data.root=data/market1501 optim.lr=1e-3")
    train.add_argument("--resume", default=None, help="continue from this checkpoint (e.g. OUT/last.pt)")
    train.add_argument("--out", default=None, help="output folder (default: the config's train.output_dir)")
    train.set_defaults(func=_cmd_train)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run one sub-command. A problem with the user's files (a dataset folder with the wrong layout, an
    output folder that already exists) is reported as one line on stderr with exit status 1; anything
    else is a bug and keeps its traceback."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except (DatasetError, FileExistsError, FileNotFoundError, NotADirectoryError) as err:
        print(f"reidkit {args.command}: error: {err}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
