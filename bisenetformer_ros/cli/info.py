"""``bisenetformer info``: parameters and MACs of a BiSeNetFormer configuration, with a per-module breakdown; with
``--model FILE`` what a model file is: classes, network size (the one rule the node and the tools use), backbone,
training recipe and cost at that size."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from bisenetformer_ros.cli.options import int_at_least
from bisenetformer_ros.registry import BACKBONES

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
    p.add_argument(
        "--model",
        default=None,
        metavar="FILE",
        help="describe a model file (.pt or .onnx): classes, network size, backbone, training recipe, cost at the "
        "network size (--backbone/--num-classes/--num-queries/--dec-layers then come from the file)",
    )
    p.add_argument("--backbone", choices=list(BACKBONES.entries), default="stdc1")
    p.add_argument(
        "--num-classes", type=int_at_least(1), default=19, help="number of classes K (19 Cityscapes, 150 ADE20K)"
    )
    p.add_argument(
        "--height", type=int_at_least(1), default=None, help="input height in pixels (default 1024; --model: its size)"
    )
    p.add_argument(
        "--width", type=int_at_least(1), default=None, help="input width in pixels (default 2048; --model: its size)"
    )
    p.add_argument(
        "--variant",
        default=None,
        help="a published reference model (bisenetformer-s-ade, -m-ade, -l-ade): its architecture and 640x640",
    )
    p.add_argument("--num-queries", type=int_at_least(1), default=100)
    p.add_argument("--dec-layers", type=int_at_least(1), default=6, help="transformer blocks (paper 6)")
    p.add_argument("--dim-feedforward", type=int_at_least(1), default=1024, help="decoder FFN width (paper 1024)")
    p.add_argument(
        "--width-dim",
        type=int_at_least(4),
        default=128,
        help="pixel-decoder width: context path and mask features (paper 128; the reference's M model 96)",
    )
    p.add_argument("--depth", type=int_at_least(1), default=2, help="module nesting depth of the breakdown")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from bisenetformer_ros.model.config import ModelConfig
    from bisenetformer_ros.model.flops import model_cost

    if args.model:
        return run_model_file(args)
    if args.variant:
        from bisenetformer_ros.model.reference import published_model

        config = published_model(args.variant).config
        args.backbone, args.num_classes = config.backbone, config.num_classes
        args.height = args.height or 640
        args.width = args.width or 640
    else:
        config = ModelConfig(
            backbone=args.backbone,
            num_classes=args.num_classes,
            num_queries=args.num_queries,
            dec_layers=args.dec_layers,
            dim_feedforward=args.dim_feedforward,
            context_dim=args.width_dim,
            mask_dim=args.width_dim,
        )
    args.height = args.height or 1024
    args.width = args.width or 2048
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
    line = f"parameters: {report.params_total / 1e6:.2f} M ({report.params_total:,})"
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
    """Paper figures only apply to the paper's widths (100 queries, 6 blocks, FFN 1024, 128-wide pixel decoder)."""
    return (
        getattr(config, "num_queries", None) == 100
        and getattr(config, "dec_layers", None) == 6
        and getattr(config, "dim_feedforward", None) == 1024
        and getattr(config, "context_dim", None) == 128
        and getattr(config, "mask_dim", None) == 128
    )


#: Recipe entries shown by ``info --model`` (dotted keys of the training recipe stored in the model file).
RECIPE_KEYS = (
    "data.dataset",
    "data.task",
    "max_iters",
    "batch_size",
    "augment.base_size",
    "augment.crop_size",
    "augment.scale_range",
    "optim.lr",
    "optim.schedule",
    "optim.weight_decay",
    "amp",
    "pretrained",
)


def _dotted(tree: Any, key: str) -> Any:
    for part in key.split("."):
        if not isinstance(tree, dict) or part not in tree:
            return None
        tree = tree[part]
    return tree


def describe_model_file(path: Path) -> dict[str, Any]:
    """What ``info --model`` reports, as plain data (the JSON output)."""
    import yaml

    from bisenetformer_ros.data.classes import ClassTable
    from bisenetformer_ros.model.network_size import model_file_network_size

    suffix = path.suffix.lower()
    extra: dict[str, Any] = {}
    if suffix == ".onnx":
        from bisenetformer_ros.inference.export import read_onnx_metadata

        meta = read_onnx_metadata(path)
        model_config, table, fmt = dict(meta.model_config), meta.class_table, "onnx export"
        inference = meta.inference
    elif suffix in (".pt", ".pth"):
        from bisenetformer_ros.model.checkpoint import inference_defaults, read_checkpoint

        ckpt = read_checkpoint(path)
        model_config, fmt = dict(ckpt["model_config"]), str(ckpt["format"])
        inference = inference_defaults(ckpt, f"'{path}'")
        table = ClassTable.from_dict(ckpt["class_table"])
        extra = ckpt.get("extra") if isinstance(ckpt.get("extra"), dict) else {}
    else:
        raise ValueError(
            f"'{path}': info --model reads .pt model files and .onnx exports (TensorRT engines carry no recipe)"
        )
    size = model_file_network_size(path)
    recipe_text = extra.get("train_config") or ""
    try:
        recipe = yaml.safe_load(recipe_text) if isinstance(recipe_text, str) and recipe_text else {}
    except yaml.YAMLError:
        recipe = {}
    return {
        "file": str(path),
        "format": fmt,
        "size_MB": round(path.stat().st_size / 1e6, 2),
        "classes": {
            "dataset": table.dataset,
            "num_classes": table.num_classes,
            "names": list(table.names),
            "things": [n for n, t in zip(table.names, table.is_thing, strict=True) if t],
        },
        "network_input": size.to_json(),
        "preprocessing": {"pixel_mean": list(inference.pixel_mean), "pixel_std": list(inference.pixel_std)},
        "postprocessing": {"mask_order": inference.mask_order, "chosen_on": inference.mask_order_scores},
        "source": {k: extra[k] for k in ("source", "reference_model", "weights_uri", "reported_mIoU") if k in extra},
        "model_config": model_config,
        "training": {
            "iteration": extra.get("iteration"),
            "task": extra.get("task"),
            "recipe": {k: _dotted(recipe, k) for k in RECIPE_KEYS if _dotted(recipe, k) is not None}
            if isinstance(recipe, dict)
            else {},
        },
    }


def _cost_size(size: Any, height: int | None, width: int | None) -> tuple[int, int, str]:
    """(h, w) to count the cost at: --height/--width, else the network size (a short side S counts S x 4S/3, a
    4:3 camera frame), else the 1024x2048 default."""
    if height and width:
        return height, width, "as requested"
    if isinstance(size, (list, tuple)):
        return int(size[0]), int(size[1]), "the network size"
    if isinstance(size, int):
        return size, (size * 4 + 2) // 3, f"short side {size} on a 4:3 frame"
    return 1024, 2048, "no size recorded: 1024x2048"


def run_model_file(args: argparse.Namespace) -> int:
    from bisenetformer_ros.inference.factory import resolve_model_path
    from bisenetformer_ros.model.config import ModelConfig
    from bisenetformer_ros.model.flops import model_cost

    path = resolve_model_path(args.model)  # a path, or the name of a fetched pretrained model
    info = describe_model_file(path)
    config = ModelConfig.from_dict(info["model_config"])
    h, w, why = _cost_size(info["network_input"]["input_size"], args.height, args.width)
    report = model_cost(config, h, w, depth=args.depth)
    info["cost"] = {
        "height": report.height,
        "width": report.width,
        "basis": why,
        "params_M": round(report.params_total / 1e6, 3),
        "GMACs": round(report.macs_total / 1e9, 3),
    }
    if args.json:
        print(json.dumps(info, indent=2))
        return 0
    cls = info["classes"]
    print(f"model file     {info['file']} ({info['size_MB']} MB, {info['format']})")
    print(
        f"classes        {cls['dataset']}: {cls['num_classes']} ({', '.join(cls['names'][:12])}"
        + (", ..." if cls["num_classes"] > 12 else "")
        + ")"
    )
    print(f"things         {', '.join(cls['things'][:12]) or 'none'}" + (", ..." if len(cls["things"]) > 12 else ""))
    print(f"network input  {info['network_input']['text']}")
    pre, post = info["preprocessing"], info["postprocessing"]
    print(f"normalisation  mean {pre['pixel_mean']}, std {pre['pixel_std']} (0-255 RGB)")
    chosen = post["chosen_on"]
    why = ""
    if isinstance(chosen, dict):
        parts = [f"{o}: mIoU {s.get('mIoU', 0):.2f}" for o, s in chosen.items() if isinstance(s, dict)]
        why = f" (measured on {chosen.get('dataset', 'validation')}: {'; '.join(parts)})"
    print(f"mask order     {post['mask_order']}{why}")
    if info["source"]:
        print(f"source         {info['source'].get('source', '')} {info['source'].get('reference_model', '')}")
    mc = info["model_config"]
    print(
        f"architecture   BiSeNetFormer-{str(mc.get('backbone', '?')).upper()}, {mc.get('num_queries')} queries, "
        f"{mc.get('dec_layers')} decoder layers, hidden {mc.get('hidden_dim')}"
    )
    tr = info["training"]
    if tr["recipe"] or tr["iteration"] is not None:
        recipe = ", ".join(f"{k}={v}" for k, v in tr["recipe"].items())
        print(f"training       iteration {tr['iteration']}, task {tr['task']}; {recipe}")
    else:
        print("training       no recipe recorded in the file")
    c = info["cost"]
    print(
        f"cost           {c['params_M']:.2f} M parameters, {c['GMACs']:.2f} GMACs at {c['height']}x{c['width']} "
        f"({c['basis']})"
    )
    return 0
