"""``bisenetformer benchmark``: latency per stage, FPS and memory of one or more backends, with ratios to PyTorch.

Several ``--backend``/``--precision``/``--backbone``/``--sizes`` values form a grid of runs. Each run of a grid goes
to its own child process (``--no-isolate`` to disable) so that peak memory, thread pools and allocator state of one
backend do not colour the next; the comparison table then shows every backend's throughput relative to PyTorch fp32
at the same backbone, size and batch, all measured in this one invocation.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from bisenetformer_ros.cli.export import parse_size
from bisenetformer_ros.registry import BACKBONES, BACKENDS


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "benchmark",
        help="latency (p50/p90/p99 per stage), FPS and memory of inference backends",
        description="Times the full pipeline (pre-process, network, post-process) on synthetic camera frames. "
        "Without --model, --backbone benchmarks a random-weight network of the paper's size for that backbone "
        "(network speed does not depend on the weights; post-processing slightly, through the number of kept "
        "queries); with neither, the embedded default model is used.",
    )
    p.add_argument("--backend", nargs="+", default=["torch"], choices=BACKENDS.names())
    p.add_argument("--precision", nargs="+", default=["fp32"], choices=["fp32", "fp16", "bf16", "int8"])
    p.add_argument("--backbone", nargs="+", default=None, choices=list(BACKBONES.entries))
    p.add_argument("--model", default=None, help="model file (.pt/.onnx/engine); default: embedded model")
    p.add_argument("--num-classes", type=int, default=19, help="classes of the random-weight model (--backbone)")
    p.add_argument("--height", type=int, default=512)
    p.add_argument("--width", type=int, default=1024)
    p.add_argument("--sizes", type=parse_size, nargs="+", default=None, metavar="HxW", help="several sizes instead")
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--iters", type=int, default=20, help="timed calls")
    p.add_argument("--warmup", type=int, default=3, help="untimed calls first")
    p.add_argument("--tasks", nargs="+", default=["semantic", "panoptic"], choices=["semantic", "panoptic", "instance"])
    p.add_argument("--device", default="auto")
    p.add_argument("--threads", type=int, default=None, help="CPU threads (torch and ONNX Runtime alike)")
    p.add_argument("--channels-last", choices=["auto", "on", "off"], default="auto", help="torch memory format")
    p.add_argument("--compile", action="store_true", help="torch: torch.compile the model")
    p.add_argument("--cache-dir", default=None, help="ONNX/engine cache (default ~/.cache/bisenetformer_ros)")
    p.add_argument("--calibration-images", default=None, help="tensorrt int8: folder of camera frames")
    p.add_argument("--no-isolate", action="store_true", help="run a grid in this process (memory figures mix)")
    p.add_argument(
        "--json",
        action="store_true",
        help="print one JSON object: a single run's figures (with 'fps'); for a grid {'machine', 'runs': [one object "
        "per run, with 'fps_vs_torch'], 'fps': fps of the first successful run}",
    )
    p.add_argument("--plot", default=None, metavar="PNG", help="grid: also save a bar chart of stage latencies")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def _backend_options(args: argparse.Namespace, backend: str) -> dict[str, Any]:
    """Backend-specific options; a TensorRT engine's profile and largest batch come from the spec's input size and
    batch (:meth:`~bisenetformer_ros.inference.spec.SegmenterSpec.backend_kwargs`), its usual batch is the same."""
    if backend == "torch":
        cl = {"auto": None, "on": True, "off": False}[args.channels_last]
        return {"channels_last": cl, "compile": bool(args.compile)}
    if backend == "onnxruntime":
        return {"cache_dir": args.cache_dir}
    return {"cache_dir": args.cache_dir, "opt_batch": args.batch, "calibration_images": args.calibration_images}


def _random_model(backbone: str, num_classes: int, cache_dir: str | None) -> Path:
    """A random-weight model of the paper's size, saved once per (backbone, classes) so caches can be reused."""
    import torch

    from bisenetformer_ros.inference.benchmark import random_class_table
    from bisenetformer_ros.inference.engine_cache import default_cache_dir
    from bisenetformer_ros.model import ModelConfig, build_model, save_model

    root = Path(cache_dir) if cache_dir else default_cache_dir()
    path = root / "benchmark_models" / f"random-{backbone}-k{num_classes}.pt"
    if not path.is_file():
        torch.manual_seed(0)
        config = ModelConfig(backbone=backbone, num_classes=num_classes)
        save_model(path, build_model(config), config, random_class_table(num_classes), extra={"random_weights": True})
    return path


def _single(args: argparse.Namespace, backend: str, precision: str, model: str | None, size: tuple[int, int]) -> Any:
    import time

    import torch

    from bisenetformer_ros.inference import Segmenter, SegmenterSpec
    from bisenetformer_ros.inference.benchmark import run_benchmark

    if args.threads:
        torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    spec = SegmenterSpec(
        model=model,
        backend=backend,
        device=args.device,
        precision=precision,
        input_size=size,
        max_batch=args.batch,
        backend_options=_backend_options(args, backend),
    )
    seg = Segmenter.from_spec(spec)
    load = time.perf_counter() - t0
    bar = None
    if not args.quiet and sys.stderr.isatty():
        from tqdm import tqdm

        bar = tqdm(total=args.iters, desc=f"{backend} {precision} {size[0]}x{size[1]}", unit="it", leave=False)
    try:
        result = run_benchmark(
            seg,
            size[0],
            size[1],
            batch=args.batch,
            iters=args.iters,
            warmup=args.warmup,
            tasks=args.tasks,
            load_seconds=load,
            model_name=str(model) if model else "embedded default",
            progress=(lambda i: bar.update(1)) if bar is not None else None,
        )
    finally:
        if bar is not None:
            bar.close()
        seg.close()
    return result


def _validate(args: argparse.Namespace) -> None:
    for name in ("batch", "iters"):
        if getattr(args, name) < 1:
            raise ValueError(f"--{name} must be >= 1, got {getattr(args, name)}")
    if args.warmup < 0:
        raise ValueError(f"--warmup must be >= 0, got {args.warmup}")
    if args.height < 32 or args.width < 32:
        raise ValueError(f"--height/--width must be >= 32, got {args.height}x{args.width}")
    if args.model and args.backbone:
        raise ValueError("give --model or --backbone (random weights), not both")
    if args.threads is not None and args.threads < 1:
        raise ValueError(f"--threads must be >= 1, got {args.threads}")


def run(args: argparse.Namespace) -> int:
    from bisenetformer_ros.inference.benchmark import machine_summary

    _validate(args)
    sizes = args.sizes or [(args.height, args.width)]
    models: list[tuple[str | None, str | None]] = []  # (backbone label, model path)
    if args.backbone:
        models = [(b, str(_random_model(b, args.num_classes, args.cache_dir))) for b in args.backbone]
    else:
        models = [(None, args.model)]
    grid = list(itertools.product(models, sizes, args.backend, args.precision))
    if len(grid) == 1:
        (_, model), size, backend, precision = grid[0]
        result = _single(args, backend, precision, model, size)
        if args.json:
            out = result.to_dict()
            out["machine"] = machine_summary()
            print(json.dumps(out))
        else:
            print(_describe(result))
        return 0

    records: list[dict[str, Any]] = []
    for (label, model), size, backend, precision in grid:
        if args.no_isolate:
            try:
                rec = _single(args, backend, precision, model, size).to_dict()
            except (ValueError, RuntimeError, FileNotFoundError) as exc:
                rec = {"error": str(exc)}
        else:
            rec = _child(args, backend, precision, model, size)
        rec.update(_request=dict(backend=backend, precision=precision, backbone=label, height=size[0], width=size[1]))
        records.append(rec)
        if not args.json and not args.quiet:
            print(f"  done: {backend} {precision} {label or ''} {size[0]}x{size[1]}", file=sys.stderr)
    _add_ratios(records)
    if args.plot:
        from bisenetformer_ros.inference.benchmark import plot_runs

        plot_runs(records, args.plot, title=f"{machine_summary()['cpu']}, batch {args.batch}")
    if args.json:
        first = next((r["fps"] for r in records if "fps" in r), None)
        print(json.dumps({"machine": machine_summary(), "runs": records, "fps": first}))
    else:
        print(_table(records, machine_summary(), args))
    return 0


def _child(args: argparse.Namespace, backend: str, precision: str, model: str | None, size: tuple[int, int]) -> Any:
    """One grid point in a fresh interpreter; returns its JSON record or ``{'error': ...}``."""
    cmd = [
        sys.executable,
        "-m",
        "bisenetformer_ros.cli.main",
        "benchmark",
        "--backend",
        backend,
        "--precision",
        precision,
        "--height",
        str(size[0]),
        "--width",
        str(size[1]),
        "--batch",
        str(args.batch),
        "--iters",
        str(args.iters),
        "--warmup",
        str(args.warmup),
        "--device",
        args.device,
        "--channels-last",
        args.channels_last,
        "--tasks",
        *args.tasks,
        "--json",
        "--quiet",
    ]
    for flag, value in (
        ("--model", model),
        ("--threads", args.threads),
        ("--cache-dir", args.cache_dir),
        ("--calibration-images", args.calibration_images),
    ):
        if value:
            cmd += [flag, str(value)]
    if args.compile:
        cmd.append("--compile")
    with tempfile.TemporaryFile(mode="w+") as err:
        proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=err, text=True, env=dict(os.environ))
        err.seek(0)
        stderr = err.read()
    if proc.returncode != 0:
        last = [line for line in stderr.strip().splitlines() if line.strip()]
        message = last[-1] if last else f"exit code {proc.returncode}"
        return {"error": message.split(": error: ", 1)[-1]}
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    if not lines:
        return {"error": "benchmark child printed no result"}
    return json.loads(lines[-1])


def _add_ratios(records: list[dict[str, Any]]) -> None:
    """``fps_vs_torch``: FPS / FPS of torch fp32 at the same backbone, size (and batch) from this invocation."""
    ref: dict[tuple[Any, ...], float] = {}
    for r in records:
        q = r["_request"]
        if "fps" in r and q["backend"] == "torch" and q["precision"] == "fp32":
            ref[(q["backbone"], q["height"], q["width"])] = r["fps"]
    for r in records:
        q = r["_request"]
        base = ref.get((q["backbone"], q["height"], q["width"]))
        r["fps_vs_torch"] = (r["fps"] / base) if ("fps" in r and base) else None


def _fmt(value: float | None, spec: str = ".1f") -> str:
    return "-" if value is None else format(value, spec)


def _describe(r: Any) -> str:
    lines = [
        f"{r.backend} on {r.device} ({r.precision}), {r.backbone or 'model'} {r.height}x{r.width} batch {r.batch}, "
        f"{r.iters} iterations after {r.warmup} warm-up, {r.threads} CPU thread(s)",
        f"  {'stage':<12} {'p50 ms':>9} {'p90 ms':>9} {'p99 ms':>9} {'mean ms':>9}",
    ]
    for name, s in r.stages.items():
        lines.append(f"  {name:<12} {s.p50:>9.2f} {s.p90:>9.2f} {s.p99:>9.2f} {s.mean:>9.2f}")
    dev = f", device peak {r.device_peak_mb:.0f} MiB" if r.device_peak_mb is not None else ""
    lines.append(f"  {r.fps:.2f} FPS, peak host RSS {r.peak_rss_mb:.0f} MiB{dev}, load {r.load_seconds:.1f} s")
    return "\n".join(lines)


def _table(records: list[dict[str, Any]], machine: dict[str, Any], args: argparse.Namespace) -> str:
    head = (
        f"{'backend':<12} {'prec':<5} {'backbone':<8} {'size':>9} {'pre p50':>8} {'inf p50':>8} {'inf p90':>8} "
        f"{'post p50':>8} {'tot p99':>8} {'FPS':>7} {'vs torch':>8} {'RSS MiB':>8} {'dev MiB':>8}"
    )
    lines = [
        f"machine: {machine.get('cpu')} ({machine.get('cpu_count')} cores), torch {machine.get('torch')}, "
        f"onnxruntime {machine.get('onnxruntime', '-')}" + (f", GPU {machine['gpu']}" if "gpu" in machine else ""),
        f"batch {args.batch}, {args.iters} iterations after {args.warmup} warm-up, tasks {' '.join(args.tasks)}; "
        "latencies in ms; 'vs torch' = FPS / FPS of torch fp32 in this run",
        head,
        "-" * len(head),
    ]
    for r in records:
        q = r["_request"]
        size = f"{q['height']}x{q['width']}"
        bb = q["backbone"] or r.get("backbone") or "-"
        if "error" in r:
            lines.append(f"{q['backend']:<12} {q['precision']:<5} {bb:<8} {size:>9}  not run: {r['error']}")
            continue
        st = r["stages"]
        ratio = r.get("fps_vs_torch")
        lines.append(
            f"{q['backend']:<12} {q['precision']:<5} {bb:<8} {size:>9} {st['preprocess']['p50']:>8.1f} "
            f"{st['inference']['p50']:>8.1f} {st['inference']['p90']:>8.1f} {st['postprocess']['p50']:>8.1f} "
            f"{st['total']['p99']:>8.1f} {r['fps']:>7.2f} {_fmt(ratio, '.2f'):>8} {r['peak_rss_mb']:>8.0f} "
            f"{_fmt(r.get('device_peak_mb'), '.0f'):>8}"
        )
    return "\n".join(lines)
