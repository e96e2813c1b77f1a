#!/usr/bin/env python3
"""What ``label_stride`` costs in quality: labels and mIoU of coarse merging against the exact merge, one run.

``label_stride`` (node parameter, :class:`bisenetformer_ros.model.PostprocessConfig`) trades boundary accuracy for
post-processing time; ``tools/bench_node_overhead.py`` measures the time, this script the accuracy. It renders
synthetic scenes with ground truth at a camera-like size, segments them with the same model at each stride and prints
the fraction of pixels whose label equals the exact merge's, mIoU and pixel accuracy. Example::

    .venv/bin/python tools/label_stride_quality.py --frames 16 --size 640x480 --input-size 128 --strides 1 2 4 8
"""

from __future__ import annotations

import argparse
import json

import numpy as np
import torch

from bisenetformer_ros.data.synthetic import render_scene
from bisenetformer_ros.evaluation.metrics import SemanticMetric
from bisenetformer_ros.inference import Segmenter
from bisenetformer_ros.model import PostprocessConfig


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", help="model file (default: the embedded model)")
    parser.add_argument("--frames", type=int, default=16)
    parser.add_argument("--size", default="640x480", help="camera size WxH of the rendered scenes")
    parser.add_argument("--input-size", type=int, default=128, help="network input short side (model's scale)")
    parser.add_argument("--strides", type=int, nargs="+", default=[1, 2, 4, 8])
    parser.add_argument("--seed", type=int, default=10_000, help="first scene seed (training used lower seeds)")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = default)")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    w, h = (int(v) for v in args.size.lower().split("x"))
    scenes = [render_scene(args.seed + i, h, w) for i in range(args.frames)]
    strides = sorted(set(args.strides) | {1})
    exact: list[np.ndarray] = []
    rows = []
    for stride in strides:
        seg = Segmenter.from_model(
            args.model, input_size=args.input_size, postprocess_config=PostprocessConfig(label_stride=stride)
        )
        metric = SemanticMetric(seg.class_table.num_classes)
        labels = []
        for scene in scenes:
            [res] = seg.run([scene.image], tasks=("semantic",))
            labels.append(res.output.semantic)
            metric.update(res.output.semantic, scene.semantic)
        seg.close()
        if stride == 1:
            exact = labels
        scores = metric.compute()
        agree = float(np.mean([(a == b).mean() for a, b in zip(labels, exact, strict=True)]))
        rows.append(
            {
                "label_stride": stride,
                "agreement_with_exact_pct": round(100 * agree, 2),
                "mIoU": round(scores["mIoU"], 2),
                "pixel_accuracy": round(scores["pixel_accuracy"], 2),
            }
        )
    if args.json:
        print(json.dumps({"frames": args.frames, "camera": args.size, "input_size": args.input_size, "rows": rows}))
        return 0
    print(f"{args.frames} synthetic frames at {args.size}, network input short side {args.input_size}")
    print("| label_stride | labels equal to exact | mIoU | pixel accuracy |\n|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['label_stride']} | {r['agreement_with_exact_pct']:.1f} % | {r['mIoU']:.1f} % | "
            f"{r['pixel_accuracy']:.1f} % |"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
