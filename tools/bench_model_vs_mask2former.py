#!/usr/bin/env python3
"""CPU throughput of BiSeNetFormer (STDC1/STDC2) against Mask2Former-R50, measured side by side in one run.

Both networks get the same pre-processed input (a random RGB frame through our ``Preprocessor``), run batch 1 with
the same number of threads, and are timed on the network forward pass only (pre-/post-processing excluded, identical
for both mask-classification models). Each network runs on its default path: BiSeNetFormer through the backend the
node and the CLI pick by default (``auto``: ONNX Runtime on the CPU, its export built once and cached), also shown on
eager PyTorch (``--backends``) and, with ``--int8``, on ONNX Runtime int8; the peer as a user would run it, eager
PyTorch. The peer is Hugging Face
``Mask2FormerForUniversalSegmentation`` with its default configuration (100 queries, 6 pixel-decoder encoder layers,
10 decoder layers) on a ResNet-50 built locally from ``ResNetConfig`` — randomly initialised, nothing downloaded;
speed does not depend on the weights. The paper reports 47.8 / 4.1 = 11.7x for STDC2 vs Mask2Former-R50 on a V100 at
1024x2048 (Table 3); this script gives the CPU figure at the size you choose.

Example::

    .venv/bin/python tools/bench_model_vs_mask2former.py --threads 2 --iters 5 --peer-iters 3 --json
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import bisenetformer_ros  # noqa: F401  first: sets OMP_WAIT_POLICY before torch loads OpenMP (see its docstring)

# isort: split
import numpy as np
import torch

PAPER_RATIO = 47.8 / 4.1


def build_peer(num_classes: int) -> torch.nn.Module:
    """Mask2Former-R50 from ``transformers`` with a locally built (random) ResNet-50 backbone."""
    try:
        from transformers import Mask2FormerConfig, Mask2FormerForUniversalSegmentation, ResNetConfig
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise RuntimeError("the peer needs the 'transformers' package (pip install transformers)") from exc
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()  # it warns that only Swin is "supported"; ResNet works and is the paper's peer
    backbone = ResNetConfig(
        depths=[3, 4, 6, 3],
        hidden_sizes=[256, 512, 1024, 2048],
        layer_type="bottleneck",
        out_features=["stage1", "stage2", "stage3", "stage4"],
    )
    config = Mask2FormerConfig(
        backbone_config=backbone, use_timm_backbone=False, use_pretrained_backbone=False, num_labels=num_classes
    )
    return Mask2FormerForUniversalSegmentation(config).eval()


def time_forward(fn: Any, warmup: int, iters: int, label: str) -> list[float]:
    """Seconds per call after ``warmup`` untimed calls."""
    from tqdm import tqdm

    for _ in range(warmup):
        fn()
    times = []
    for _ in tqdm(range(iters), desc=label, unit="it", leave=False, file=sys.stderr):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return times


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backbones", default="stdc1,stdc2", help="comma-separated BiSeNetFormer backbones")
    parser.add_argument("--height", type=int, default=512)
    parser.add_argument("--width", type=int, default=1024)
    parser.add_argument("--num-classes", type=int, default=19)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads(), help="torch intra-op threads")
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--iters", type=int, default=5, help="timed iterations for BiSeNetFormer")
    parser.add_argument("--peer-iters", type=int, default=3, help="timed iterations for Mask2Former (slow)")
    parser.add_argument("--no-peer", action="store_true", help="only time BiSeNetFormer")
    parser.add_argument(
        "--backends",
        default="auto,torch",
        help="comma-separated BiSeNetFormer backends to time (auto = the default path; torch = eager PyTorch)",
    )
    parser.add_argument("--int8", action="store_true", help="also time ONNX Runtime int8 (synthetic calibration)")
    parser.add_argument("--cache-dir", default=None, help="where ONNX exports are cached (default: the user cache)")
    parser.add_argument("--json", action="store_true", help="print one JSON object at the end")
    args = parser.parse_args(argv)

    from bisenetformer_ros.data.classes import CITYSCAPES
    from bisenetformer_ros.evaluation.latency import percentile
    from bisenetformer_ros.inference import create_backend
    from bisenetformer_ros.model import ModelConfig, Preprocessor, build_model, save_model
    from bisenetformer_ros.model.flops import model_cost

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    frame = rng.integers(0, 256, (args.height, args.width, 3), dtype=np.uint8)
    images, _ = Preprocessor()([frame])

    results: list[dict[str, Any]] = []
    runs = [(b.strip(), "fp32") for b in args.backends.split(",") if b.strip()]
    if args.int8:
        runs.append(("onnxruntime", "int8"))
    with tempfile.TemporaryDirectory(prefix="bench-m2f-") as tmp:
        for name in [b.strip() for b in args.backbones.split(",") if b.strip()]:
            cfg = ModelConfig(backbone=name, num_classes=args.num_classes)
            model_file = Path(tmp) / f"{name}.pt"
            save_model(model_file, build_model(cfg).eval(), cfg, CITYSCAPES)
            cost = model_cost(cfg, images.shape[-2], images.shape[-1])
            for backend_name, precision in runs:
                extra = {"calibration_images": "synthetic"} if precision == "int8" else {}
                if backend_name in ("auto", "onnxruntime"):
                    extra["cache_dir"] = args.cache_dir
                backend = create_backend(backend_name, model_file, device="cpu", precision=precision, **extra)
                default = ", default" if backend_name == "auto" else ""
                label = f"BiSeNetFormer-{name.upper()} [{backend.NAME} {precision}{default}]"
                with torch.inference_mode():
                    times = time_forward(lambda b=backend: b.infer(images), args.warmup, args.iters, label)
                backend.close()
                med = percentile(times, 50)
                results.append(
                    {
                        "model": label,
                        "backbone": name,
                        "backend": backend.NAME,
                        "precision": precision,
                        "default_path": backend_name == "auto",
                        "params_M": round(cost.params_total / 1e6, 2),
                        "GMACs": round(cost.macs_total / 1e9, 2),
                        "latency_ms_median": round(1000 * med, 1),
                        "latency_ms_min": round(1000 * min(times), 1),
                        "fps": round(1.0 / med, 3),
                        "iters": args.iters,
                    }
                )

    peer: dict[str, Any] | None = None
    if not args.no_peer:
        m2f = build_peer(args.num_classes)
        with torch.inference_mode():
            times = time_forward(lambda: m2f(pixel_values=images), args.warmup, args.peer_iters, "Mask2Former-R50")
        med = percentile(times, 50)
        peer = {
            "model": "Mask2Former-R50 (transformers, random init)",
            "params_M": round(sum(p.numel() for p in m2f.parameters()) / 1e6, 2),
            "GMACs": None,
            "latency_ms_median": round(1000 * med, 1),
            "latency_ms_min": round(1000 * min(times), 1),
            "fps": round(1.0 / med, 3),
            "iters": args.peer_iters,
        }
        for r in results:
            r["speedup_vs_peer"] = round(r["fps"] / peer["fps"], 2)

    summary = {
        "input": [args.height, args.width],
        "padded_input": list(images.shape[-2:]),
        "threads": args.threads,
        "device": "cpu",
        "cpu": platform.processor() or platform.machine(),
        "torch": torch.__version__,
        "measured": "network forward only, batch 1; BiSeNetFormer per backend (auto = default path), peer eager fp32",
        "bisenetformer": results,
        "peer": peer,
        "paper_gpu_ratio_stdc2": round(PAPER_RATIO, 1),
    }
    rows = [*results, *([peer] if peer else [])]
    print(f"input {args.height}x{args.width}, {args.threads} thread(s), batch 1, forward pass only")
    print(f"{'model':<58} {'params M':>9} {'GMACs':>7} {'ms (median)':>12} {'FPS':>8} {'x peer':>7}")
    for r in rows:
        gmacs = f"{r['GMACs']:.1f}" if r["GMACs"] is not None else "-"
        ratio = f"{r['speedup_vs_peer']:.2f}" if "speedup_vs_peer" in r else "-"
        print(
            f"{r['model']:<58} {r['params_M']:>9.2f} {gmacs:>7} {r['latency_ms_median']:>12.1f} {r['fps']:>8.3f} "
            f"{ratio:>7}"
        )
    print(f"paper (V100, 1024x2048): BiSeNetFormer-STDC2 / Mask2Former-R50 = 47.8 / 4.1 = {PAPER_RATIO:.1f}x")
    if args.json:
        print(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
