"""``bisenetformer info``: parameters and MACs of a BiSeNetFormer configuration, with a per-module breakdown."""

from __future__ import annotations

import argparse
import json

# Figures published in the paper (Tables 1-4), shown next to ours when the configuration matches one of them.
PAPER_PARAMS_M = {("stdc1", 19): 13.1, ("stdc2", 19): 17.1, ("stdc2", 150): 17.2, ("r50", 19): 31.7, ("r50", 150): 31.6}
PAPER_GMACS = {
    ("stdc1", 1024, 2048): 56.0,
    ("stdc2", 1024, 2048): 82.0,
    ("r50", 1024, 2048): 199.0,
    ("stdc1", 512, 512): 8.0,
    ("stdc2", 512, 512): 11.0,
    ("stdc2", 640, 640): 17.0,
    ("r50", 640, 640): 39.0,
}


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "info",
        help="parameters and MACs (the paper's 'FLOPs') of a model configuration, per module",
        description="Count parameters and multiply-accumulates of BiSeNetFormer. MACs are counted with torch's "
        "FlopCounterMode on a shape-only (meta) forward pass: convolutions, linear layers, attention and mask "
        "matrix products; element-wise ops, norms and resizing are not counted (the paper's convention). "
        "Input sizes are rounded up to a multiple of 32, as the pre-processor pads them.",
    )
    p.add_argument("--backbone", choices=["stdc1", "stdc2", "r50"], default="stdc1")
    p.add_argument("--num-classes", type=int, default=19, help="number of classes K (19 Cityscapes, 150 ADE20K)")
    p.add_argument("--height", type=int, default=1024, help="input height in pixels")
    p.add_argument("--width", type=int, default=2048, help="input width in pixels")
    p.add_argument("--num-queries", type=int, default=100)
    p.add_argument("--dec-layers", type=int, default=6, help="transformer blocks (multiple of 2)")
    p.add_argument("--depth", type=int, default=2, help="module nesting depth of the breakdown")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from bisenetformer_ros.model.config import ModelConfig
    from bisenetformer_ros.model.flops import model_cost

    if args.height < 1 or args.width < 1:
        raise ValueError(f"--height/--width must be positive, got {args.height}x{args.width}")
    if args.depth < 1:
        raise ValueError(f"--depth must be >= 1, got {args.depth}")
    config = ModelConfig(
        backbone=args.backbone,
        num_classes=args.num_classes,
        num_queries=args.num_queries,
        dec_layers=args.dec_layers,
    )
    report = model_cost(config, args.height, args.width, depth=args.depth)
    paper_params = PAPER_PARAMS_M.get((args.backbone, args.num_classes)) if _paper_default(config) else None
    paper_macs = PAPER_GMACS.get((args.backbone, report.height, report.width)) if _paper_default(config) else None
    if args.json:
        out = report.to_dict()
        out["paper"] = {"params_M": paper_params, "GMACs": paper_macs}
        print(json.dumps(out, indent=2))
        return 0
    print(report.format_table())
    print()
    line = f"parameters: {report.params_total / 1e6:.2f} M"
    if paper_params is not None:
        line += f"   (paper {paper_params} M, {100 * (report.params_total / 1e6 / paper_params - 1):+.1f} %)"
    print(line)
    line = f"MACs:       {report.macs_total / 1e9:.2f} G at {report.height}x{report.width}"
    if paper_macs is not None:
        line += f"   (paper {paper_macs} G, {100 * (report.macs_total / 1e9 / paper_macs - 1):+.1f} %)"
    print(line)
    ops = ", ".join(f"{k} {v / 1e9:.2f} G" for k, v in sorted(report.macs_by_op.items(), key=lambda kv: -kv[1]))
    print(f"by operator: {ops}")
    print("counted: convolutions, linear layers, attention and mask matrix products (FlopCounterMode FLOPs / 2)")
    return 0


def _paper_default(config: object) -> bool:
    """Paper figures only apply to the paper's decoder (100 queries, 6 blocks)."""
    return getattr(config, "num_queries", None) == 100 and getattr(config, "dec_layers", None) == 6
