"""``bisenetformer evaluate``: mIoU, PQ/SQ/RQ and per-image timing of a model on a dataset split.

With no arguments it scores the shipped default model on the synthetic held-out split (64 scenes rendered on the fly,
seeds disjoint from training), so a fresh checkout can check its model in one command. The model runs through the
same :class:`~bisenetformer_ros.inference.segmenter.Segmenter` as the node, with any backend.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

DEFAULT_MODEL_HINT = "bash tools/train_default_model.sh"


def parse_input_size(text: str) -> int | tuple[int, int]:
    """``'512'`` (short side) -> 512; ``'512x1024'`` -> (512, 1024)."""
    try:
        if "x" in text.lower():
            h, w = (int(v) for v in text.lower().split("x"))
            if h < 1 or w < 1:
                raise ValueError
            return h, w
        v = int(text)
        if v < 1:
            raise ValueError
        return v
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"input size '{text}' must be a positive short side (e.g. 512) or HEIGHTxWIDTH (e.g. 512x1024)"
        ) from None


def add_model_arguments(p: argparse.ArgumentParser) -> None:
    """Options shared by ``evaluate`` and ``predict``: which model, on which backend and device, at which size."""
    p.add_argument("--model", default=None, help="model file (.pt, .onnx or TensorRT engine); default: shipped model")
    p.add_argument("--backend", default="torch", choices=["torch", "onnxruntime", "tensorrt"])
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    p.add_argument("--precision", default="fp32", choices=["fp32", "fp16", "bf16", "int8"])
    p.add_argument(
        "--input-size",
        type=parse_input_size,
        default=None,
        metavar="S|HxW",
        help="network input size: short side or HEIGHTxWIDTH (default: each image's own size)",
    )


def resolve_model(model: str | None) -> Path:
    """The model file to use; the shipped default when none is given, with the way to make it if it is missing."""
    if model:
        from bisenetformer_ros.inference.factory import resolve_model_path

        return resolve_model_path(model)
    from bisenetformer_ros.resources import DEFAULT_MODEL_NAME, default_model_path

    try:
        return default_model_path()
    except FileNotFoundError:
        raise FileNotFoundError(
            f"no --model given and the shipped default model ({DEFAULT_MODEL_NAME}) is missing; produce it with "
            f"'{DEFAULT_MODEL_HINT}' or pass --model PATH"
        ) from None


def build_segmenter(args: argparse.Namespace, max_batch: int | None = None) -> Any:
    """A :class:`Segmenter` for the model options of :func:`add_model_arguments` (the model's own class table)."""
    from bisenetformer_ros.inference.segmenter import Segmenter

    return Segmenter.from_model(
        resolve_model(args.model),
        backend=args.backend,
        device=args.device,
        precision=args.precision,
        input_size=args.input_size,
        max_batch=max_batch,
    )


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "evaluate",
        help="mIoU, PQ/SQ/RQ and timing of a model on a dataset split",
        description="Run a model over a dataset split through the inference pipeline the node uses and report "
        "mIoU (cityscapesScripts rule: classes absent from ground truth and prediction are left out), PQ/SQ/RQ "
        "(panopticapi definitions; when the dataset has panoptic annotations) and per-image time. Without --model "
        "the shipped default model is used; --dataset synthetic without --root renders the held-out synthetic "
        "split on the fly.",
    )
    add_model_arguments(p)
    p.add_argument("--dataset", default="synthetic", help="dataset name (synthetic, cityscapes, ade20k, ...)")
    p.add_argument("--root", default=None, help="dataset folder (not needed for the rendered synthetic split)")
    p.add_argument("--split", default="val", help="split to evaluate (default val)")
    p.add_argument("--limit", type=int, default=None, help="evaluate only the first N images")
    p.add_argument("--batch-size", type=int, default=1, help="images per network call (timing is then per image)")
    p.add_argument("--json", action="store_true", help="print exactly one JSON object on stdout instead of a table")
    p.add_argument("--out", default=None, metavar="FILE", help="also write the JSON result to FILE")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from bisenetformer_ros.data.datasets import build_dataset
    from bisenetformer_ros.evaluation.evaluator import evaluate, format_table

    if args.limit is not None and args.limit < 1:
        raise ValueError(f"--limit must be >= 1, got {args.limit}")
    if args.batch_size < 1:
        raise ValueError(f"--batch-size must be >= 1, got {args.batch_size}")
    dataset = build_dataset(args.dataset, args.split, root=args.root)
    ds_name = f"{args.dataset}/{args.split}" + (f" ({args.root})" if args.root else "")
    segmenter = build_segmenter(args, max_batch=args.batch_size)
    try:
        result = evaluate(
            segmenter,
            dataset,
            limit=args.limit,
            progress=not args.quiet,
            batch_size=args.batch_size,
            dataset_name=ds_name,
        )
    finally:
        segmenter.close()
    text = json.dumps(result, indent=2)
    if args.out:
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text + "\n")
    if args.json:
        sys.stdout.write(text + "\n")
    else:
        print(format_table(result, segmenter.class_table))
        if args.out:
            print(f"\nwrote {args.out}")
    return 0
