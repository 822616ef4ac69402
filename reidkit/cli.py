"""The ``reidkit`` command line: the only module that reads ``sys.argv``.

    reidkit demo                         SynthReID small -> statistics, baseline, figures
    reidkit synth --preset tiny --out D  write a SynthReID dataset in Market-1501 layout
    reidkit info                         versions, extras and device
    reidkit notebooks                    re-execute the notebooks in place (stored outputs)
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
