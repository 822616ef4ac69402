"""The ``reidkit`` command line: the only module that reads ``sys.argv``.

    reidkit demo                         SynthReID small -> statistics, baseline, figures
    reidkit synth --preset tiny --out D  write a SynthReID dataset in Market-1501 layout
    reidkit info                         versions, extras and device
    reidkit notebooks                    re-execute the notebooks in place (stored outputs)
    reidkit export --checkpoint C --onnx out.onnx   ONNX export of a trained model's retrieval feature
"""
from __future__ import annotations

import argparse
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
        out_dir=Path(args.out), preset=args.preset, seed=args.seed, data_root=args.data_root, workers=args.workers
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


def build_parser() -> argparse.ArgumentParser:
    from reidkit.data.synthetic import PRESETS

    parser = argparse.ArgumentParser(prog="reidkit", description="Person re-identification toolkit.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    demo = sub.add_parser("demo", help="generate SynthReID, report statistics and a baseline, draw figures")
    demo.add_argument("--preset", default="small", choices=sorted(PRESETS), help="SynthReID size")
    demo.add_argument("--seed", type=int, default=0, help="SynthReID seed")
    demo.add_argument("--out", default="outputs/demo", help="folder for figures and metrics")
    demo.add_argument("--data-root", default=None, help="where SynthReID is cached (default: data/)")
    demo.add_argument("--workers", type=int, default=2, help="processes rendering SynthReID (same bytes for any)")
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
