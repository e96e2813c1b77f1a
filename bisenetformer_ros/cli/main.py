"""`bisenetformer`: one command-line tool with sub-commands.

Each sub-command lives in its own module ``bisenetformer_ros.cli.<name>`` exposing ``register(subparsers)``, which
adds an ``argparse`` sub-parser whose ``func`` default runs the command and returns an exit code. Modules import
heavy dependencies (torch, onnxruntime, rclpy) inside ``run`` so that ``--help`` stays instant. Options used by
several commands (``--input-size``, ``--quiet``, value checks, output folders) come from
:mod:`bisenetformer_ros.cli.options`, so one idea has one spelling.

Errors: a usage error or bad input (missing or unreadable file, impossible value, a model the command cannot load)
is one line ``bisenetformer <command>: error: ...`` with exit code 2; ``BISENETFORMER_DEBUG=1`` shows tracebacks.
A sub-command whose defaults set ``accepts_overrides=True`` (``train``) receives ``key=value`` words that follow
its flags in ``args.overrides`` (argparse alone stops collecting positionals at the first flag).
"""

from __future__ import annotations

import argparse
import importlib
import sys

import yaml

from bisenetformer_ros import __version__
from bisenetformer_ros.cli.options import EXIT_BAD_INPUT, OneLineErrorParser, one_line

# Order = order in `bisenetformer --help`.
SUBCOMMAND_MODULES: tuple[str, ...] = (
    "info",
    "evaluate",
    "predict",
    "train",
    "bag",
    "export",
    "convert",
    "pretrained",
    "benchmark",
    "demo",
    "make_synthetic",
)


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineErrorParser(
        prog="bisenetformer",
        description="BiSeNetFormer: real-time semantic / instance / panoptic segmentation (model, training, "
        "evaluation, export, benchmarks, rosbag tools, demo).",
    )
    parser.add_argument("--version", action="version", version=f"bisenetformer {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="<command>")
    sub.required = True
    for name in SUBCOMMAND_MODULES:
        importlib.import_module(f"bisenetformer_ros.cli.{name}").register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    try:
        args, extra = parser.parse_known_args(argv)
        if extra:
            if getattr(args, "accepts_overrides", False) and all("=" in e and not e.startswith("-") for e in extra):
                args.overrides = [*getattr(args, "overrides", []), *extra]
            else:
                parser.error(f"unrecognized arguments: {' '.join(extra)}")
    except SystemExit as exc:  # usage errors (exit 2) and --help (0): a status, also for callers of main()
        return exc.code if isinstance(exc.code, int) else 2
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except (OSError, ValueError, RuntimeError, yaml.YAMLError) as exc:
        # Bad input reaches the user as one clear line, not a traceback; tracebacks via BISENETFORMER_DEBUG=1.
        import os

        if os.environ.get("BISENETFORMER_DEBUG"):
            raise
        print(f"bisenetformer {args.command}: error: {one_line(exc)}", file=sys.stderr)
        return EXIT_BAD_INPUT


if __name__ == "__main__":
    sys.exit(main())
