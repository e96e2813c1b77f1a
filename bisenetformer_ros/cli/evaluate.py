"""``bisenetformer evaluate``: mIoU, PQ/SQ/RQ and per-image timing of a model on a dataset split.

With no arguments it scores the shipped default model on the synthetic held-out split (64 scenes rendered on the fly,
seeds disjoint from training), so a fresh checkout can check its model in one command. The model runs through the
same :class:`~bisenetformer_ros.inference.segmenter.Segmenter` as the node, with any backend.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from bisenetformer_ros.atomic_io import atomic_write_bytes
from bisenetformer_ros.cli.options import (
    DEFAULT_MODEL_HINT,
    add_model_arguments,
    add_quiet_option,
    build_segmenter,
    check_output_file,
    int_at_least,
    resolve_model,
)
from bisenetformer_ros.model.inference_defaults import MASK_ORDERS

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
    p.add_argument(
        "--dataset",
        default="synthetic",
        help="dataset name (synthetic, synthetic_sequence, cityscapes, ade20k, ...); synthetic_sequence renders "
        "tracking sequences and adds the video metrics (STQ, AQ, VPQ, ID switches) of the tracker and of per-frame ids",
    )
    p.add_argument("--root", default=None, help="dataset folder (not needed for the rendered synthetic split)")
    p.add_argument("--split", default="val", help="split to evaluate (default val)")
    p.add_argument("--limit", type=int_at_least(1), default=None, help="evaluate only the first N images")
    p.add_argument(
        "--batch-size", type=int_at_least(1), default=1, help="images per network call (timing is then per image)"
    )
    p.add_argument("--json", action="store_true", help="print exactly one JSON object on stdout instead of a table")
    p.add_argument("--out", default=None, metavar="FILE", help="also write the JSON result to FILE")
    order = p.add_mutually_exclusive_group()
    order.add_argument(
        "--mask-order",
        choices=MASK_ORDERS,
        default=None,
        help="post-processing order to evaluate with (default: the one recorded in the model file)",
    )
    order.add_argument(
        "--record-mask-order",
        action="store_true",
        help="evaluate both post-processing orders and record the better one (mean of mIoU and PQ) with both "
        "scores in the .pt model file, which is rewritten in place; for models trained here, on their "
        "validation split",
    )
    add_quiet_option(p)
    p.set_defaults(func=run)


def _evaluate(args: argparse.Namespace, dataset: Any, ds_name: str, mask_order: str | None) -> tuple[dict, Any]:
    from bisenetformer_ros.evaluation.evaluator import evaluate

    segmenter = build_segmenter(args, max_batch=args.batch_size, mask_order=mask_order)
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
    result["mask_order"] = segmenter.postprocess_config.mask_order
    return result, segmenter


def _record_mask_order(args: argparse.Namespace, dataset: Any, ds_name: str) -> tuple[dict, Any]:
    """Score both orders, keep the better (mean of mIoU and PQ, or mIoU alone without panoptic ground truth) in the
    model file with the scores it was chosen on; returns the winner's result."""
    from bisenetformer_ros.model.checkpoint import atomic_torch_save, inference_defaults, read_checkpoint

    path = resolve_model(args.model)
    if path.suffix != ".pt":
        raise ValueError(f"--record-mask-order rewrites a .pt model file, not '{path.name}'")
    results = {order: _evaluate(args, dataset, ds_name, order) for order in MASK_ORDERS}

    def score(result: dict) -> float:
        values = [result.get("mIoU"), result.get("PQ")]
        values = [v for v in values if isinstance(v, (int, float))]
        return sum(values) / len(values) if values else float("-inf")

    best = max(MASK_ORDERS, key=lambda o: score(results[o][0]))
    scores = {
        o: {k: results[o][0].get(k) for k in ("mIoU", "PQ", "pixel_accuracy") if k in results[o][0]}
        for o in MASK_ORDERS
    }
    scores["dataset"] = ds_name  # type: ignore[assignment]
    data = read_checkpoint(path)
    recorded = inference_defaults(data, f"'{path}'").with_changes(mask_order=best, mask_order_scores=scores)
    data["inference"] = recorded.to_dict()
    atomic_torch_save(data, path)
    print(
        f"mask order: {best} recorded in {path} ("
        + "; ".join(
            f"{o}: mIoU {s.get('mIoU', float('nan')):.2f}, PQ {s.get('PQ', float('nan')):.2f}"
            for o, s in scores.items()
            if o != "dataset"
        )
        + ")",
        file=sys.stderr,
    )
    return results[best]


def run(args: argparse.Namespace) -> int:
    from bisenetformer_ros.data.datasets import build_dataset
    from bisenetformer_ros.evaluation.evaluator import format_table

    out = check_output_file(args.out, "--out") if args.out else None
    dataset = build_dataset(args.dataset, args.split, root=args.root)
    ds_name = f"{args.dataset}/{args.split}" + (f" ({args.root})" if args.root else "")
    if args.record_mask_order:
        result, segmenter = _record_mask_order(args, dataset, ds_name)
    else:
        result, segmenter = _evaluate(args, dataset, ds_name, args.mask_order)
    text = json.dumps(result, indent=2)
    if out is not None:  # written only after a successful run: a failed one leaves no file and no folder
        atomic_write_bytes(out, (text + "\n").encode())
    if args.json:
        sys.stdout.write(text + "\n")
    else:
        print(format_table(result, segmenter.class_table))
        if args.out:
            print(f"\nwrote {args.out}")
    return 0
