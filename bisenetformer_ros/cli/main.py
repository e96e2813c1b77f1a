"""`bisenetformer`: one command-line tool with sub-commands.

Each sub-command lives in its own module ``bisenetformer_ros.cli.<name>`` exposing ``register(subparsers)``, which
adds an ``argparse`` sub-parser whose ``func`` default runs the command and returns an exit code. Modules import
heavy dependencies (torch, onnxruntime, rclpy) inside ``run`` so that ``--help`` stays instant.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from bisenetformer_ros import __version__

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
    parser = argparse.ArgumentParser(
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
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except (FileNotFoundError, ValueError, RuntimeError) as exc:
        # Bad input reaches the user as one clear line, not a traceback; --debug style tracebacks via env var.
        import os

        if os.environ.get("BISENETFORMER_DEBUG"):
            raise
        print(f"bisenetformer {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
