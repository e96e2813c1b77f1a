"""``bisenetformer export``: ONNX file with embedded class table, or a TensorRT engine built ahead of time."""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def parse_size(text: str) -> tuple[int, int]:
    """``'512x1024'`` -> (512, 1024)."""
    try:
        h, w = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"size '{text}' must be HEIGHTxWIDTH, e.g. 512x1024") from None
    if h < 1 or w < 1:
        raise argparse.ArgumentTypeError(f"size '{text}' must be positive")
    return h, w


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "export",
        help="export a model to ONNX, or build a TensorRT engine ahead of time",
        description="ONNX: opset >= 17, dynamic batch/height/width, simplified with onnxslim, class table and model "
        "config stored as metadata, checked against PyTorch with ONNX Runtime. TensorRT: builds (or finds in the "
        "engine cache) an engine for this GPU, TensorRT version, precision and input profile - run it once on the "
        "robot so the node's first start does not spend minutes building.",
    )
    p.add_argument(
        "--format", choices=["onnx", "tensorrt"], default=None, help="what to produce (required unless --list)"
    )
    p.add_argument(
        "--list", action="store_true", help="list the TensorRT engines in the cache (key, size, sidecar state) and exit"
    )
    p.add_argument("--model", default=None, help="model file (.pt; .onnx also for tensorrt); default: embedded model")
    p.add_argument(
        "--output",
        "--out",
        "-o",
        dest="output",
        default=None,
        help="output file (onnx default: ./<model>.onnx; tensorrt: cache)",
    )
    p.add_argument("--opset", type=int, default=17, help="ONNX opset (>= 17)")
    p.add_argument("--no-simplify", action="store_true", help="skip the onnxslim graph simplification")
    p.add_argument("--no-verify", action="store_true", help="skip the ONNX Runtime vs PyTorch check")
    trt = p.add_argument_group("TensorRT")
    trt.add_argument("--precision", default="fp16", choices=["fp32", "fp16", "bf16", "int8"])
    trt.add_argument("--device", default="auto")
    trt.add_argument("--height", type=int, default=512, help="tuned (opt) input height")
    trt.add_argument("--width", type=int, default=1024, help="tuned (opt) input width")
    trt.add_argument(
        "--sizes",
        type=parse_size,
        nargs="+",
        default=None,
        metavar="HxW",
        help="further input sizes the engine accepts",
    )
    trt.add_argument("--min-height", type=int, default=128)
    trt.add_argument("--min-width", type=int, default=128)
    trt.add_argument("--max-batch", type=int, default=1)
    trt.add_argument("--opt-batch", type=int, default=None, help="batch size kernels are tuned for (default 1)")
    trt.add_argument("--calibration-images", default=None, help="int8: folder of representative camera frames")
    trt.add_argument("--calibration-cache", default=None, help="int8: existing calibration cache file")
    trt.add_argument("--calibration-limit", type=int, default=500, help="int8: at most this many images")
    trt.add_argument("--dla-core", type=int, default=None, help="Jetson: run on this DLA core (fp16/int8)")
    trt.add_argument("--workspace-gb", type=float, default=4.0)
    trt.add_argument("--cache-dir", default=None, help="engine/ONNX cache (default ~/.cache/bisenetformer_ros)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import logging

    from bisenetformer_ros.inference.factory import resolve_model_path

    # Engine builds take minutes: show their progress; an ONNX export reports in one line anyway.
    logging.basicConfig(level=logging.INFO if args.format == "tensorrt" else logging.WARNING, format="%(message)s")
    if args.list:
        return _list_cache(args)
    if args.format is None:
        raise ValueError("give --format onnx or --format tensorrt (or --list to show cached engines)")
    model = resolve_model_path(args.model)
    if args.format == "onnx":
        from bisenetformer_ros.inference.export import export_onnx

        if model.suffix.lower() == ".onnx":
            raise ValueError(f"'{model}' is already an ONNX file; give the .pt model to export")
        output = Path(args.output) if args.output else Path.cwd() / f"{model.stem}.onnx"
        report = export_onnx(model, output, opset=args.opset, simplify=not args.no_simplify, verify=not args.no_verify)
        if report.max_abs_diff is not None and report.max_abs_diff > 1e-3:
            raise RuntimeError(
                f"exported graph disagrees with PyTorch (max |diff| {report.max_abs_diff:.2e} > 1e-3); please report"
            )
        if args.json:
            print(json.dumps(report.to_dict()))
        else:
            check = (
                f", max |ONNX Runtime - PyTorch| {report.max_abs_diff:.1e}" if report.max_abs_diff is not None else ""
            )
            print(
                f"wrote {report.path} (opset {report.opset}, {report.nodes_exported} -> {report.nodes_final} nodes"
                f"{check}, {report.seconds:.1f} s)"
            )
        return 0

    try:
        from bisenetformer_ros.inference.tensorrt_backend import build_engine_file
    except ModuleNotFoundError:
        raise RuntimeError(
            "building TensorRT engines needs the 'tensorrt' Python package and a CUDA GPU (JetPack on Jetson, "
            "'pip install tensorrt' on x86); export ONNX with --format onnx on this machine instead"
        ) from None
    sizes = [(args.height, args.width), *(args.sizes or [])]
    path, result = build_engine_file(
        model,
        output=args.output,
        device=args.device,
        precision=args.precision,
        cache_dir=args.cache_dir,
        profile_hw=sizes,
        max_batch_size=args.max_batch,
        opt_batch=args.opt_batch,
        min_hw=(args.min_height, args.min_width),
        workspace_gb=args.workspace_gb,
        calibration_images=args.calibration_images,
        calibration_cache=args.calibration_cache,
        calibration_limit=args.calibration_limit,
        dla_core=args.dla_core,
        opset=args.opset,
    )
    key = result.header.key
    if args.json:
        print(json.dumps({"path": str(path), "built": result.built, "reason": result.reason, "key": key.to_dict()}))
    else:
        state = f"built ({result.reason})" if result.built else "already cached"
        print(
            f"TensorRT engine {state}: {path} (+ sidecar {path.name}.json: keep the two together)\n"
            f"  {key.precision}, profile {key.profile.to_dict()}, "
            f"TensorRT {key.tensorrt_version}, GPU {key.gpu_name} (sm {key.compute_capability})"
        )
    return 0


def _list_cache(args: argparse.Namespace) -> int:
    """Print every cached engine with what it was built for (or why it is unusable)."""
    from bisenetformer_ros.inference.engine_cache import EngineCache

    cache = EngineCache(args.cache_dir)
    entries = cache.entries()
    if args.json:
        out = []
        for path, header in entries:
            item: dict = {"path": str(path)}
            if isinstance(header, str):
                item["error"] = header
            else:
                item.update(key=header.key.to_dict(), size=header.payload_size, created=header.created)
            out.append(item)
        print(json.dumps({"cache": str(cache.engine_dir), "engines": out}))
        return 0
    print(f"engine cache {cache.engine_dir}: {len(entries)} engine(s)")
    for path, header in entries:
        if isinstance(header, str):
            print(f"  {path.name}: unusable ({header})")
            continue
        k = header.key
        print(
            f"  {path.name}: {k.precision}, input {k.profile.min_hw}..{k.profile.max_hw} "
            f"batch <= {k.profile.max_batch}, "
            f"TensorRT {k.tensorrt_version}, {k.gpu_name} (sm {k.compute_capability}), "
            f"{header.payload_size / 2**20:.1f} MiB"
        )
    return 0
