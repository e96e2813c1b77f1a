"""``bisenetformer evaluate``: mIoU, PQ/SQ/RQ and per-image timing of a model on a dataset split.

With no arguments it scores the shipped default model on the synthetic held-out split (64 scenes rendered on the fly,
seeds disjoint from training), so a fresh checkout can check its model in one command. The model runs through the
same :class:`~bisenetformer_ros.inference.segmenter.Segmenter` as the node, with any backend.
"""

from __future__ import annotations

import argparse
import json
import sys

from bisenetformer_ros.cli.options import (
    DEFAULT_MODEL_HINT,
    add_model_arguments,
    add_quiet_option,
    build_segmenter,
    check_output_file,
    int_at_least,
    resolve_model,
)

__all__ = ["DEFAULT_MODEL_HINT", "add_model_arguments", "build_segmenter", "register", "resolve_model", "run"]


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
    p.add_argument("--limit", type=int_at_least(1), default=None, help="evaluate only the first N images")
    p.add_argument(
        "--batch-size", type=int_at_least(1), default=1, help="images per network call (timing is then per image)"
    )
    p.add_argument("--json", action="store_true", help="print exactly one JSON object on stdout instead of a table")
    p.add_argument("--out", default=None, metavar="FILE", help="also write the JSON result to FILE")
    add_quiet_option(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from bisenetformer_ros.data.datasets import build_dataset
    from bisenetformer_ros.evaluation.evaluator import evaluate, format_table

    out = check_output_file(args.out, "--out") if args.out else None
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
    result["network_input"] = args.network_size.to_json()
    text = json.dumps(result, indent=2)
    if out is not None:  # written only after a successful run: a failed one leaves no file and no folder
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.with_name(out.name + ".tmp")
        tmp.write_text(text + "\n")
        tmp.replace(out)
    if args.json:
        sys.stdout.write(text + "\n")
    else:
        print(format_table(result, segmenter.class_table))
        if args.out:
            print(f"\nwrote {args.out}")
    return 0
