"""Score a training run's fp16 snapshots on the held-out synthetic split and plot the learning curve.

Usage: .venv/bin/python tools/score_snapshots.py RUN_DIR [--out docs/training_curve.png] [--limit 64]
Writes RUN_DIR/snapshot_scores.json and the PNG (training losses + held-out mIoU/PQ over iterations).
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

from bisenetformer_ros.data.datasets import build_dataset
from bisenetformer_ros.evaluation.evaluator import evaluate
from bisenetformer_ros.inference.segmenter import Segmenter
from bisenetformer_ros.train.curves import plot_training_curve


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run_dir", type=Path)
    ap.add_argument("--out", type=Path, default=Path("docs/training_curve.png"))
    ap.add_argument("--limit", type=int, default=64, help="held-out images per snapshot")
    args = ap.parse_args()
    dataset = build_dataset("synthetic", "val")
    points = []
    snaps = sorted((args.run_dir / "snapshots").glob("model_*.pt"))
    for snap in snaps:
        it = int(re.findall(r"\d+", snap.stem)[-1])
        seg = Segmenter.from_model(snap, backend="torch", device="cpu")
        try:
            res = evaluate(seg, dataset, limit=args.limit, progress=False)
        finally:
            seg.close()
        points.append({"iter": it, "mIoU": res["mIoU"], "PQ": res["PQ"]})
        print(json.dumps(points[-1]), flush=True)
    (args.run_dir / "snapshot_scores.json").write_text(json.dumps(points, indent=1))
    title = "BiSeNetFormer-STDC1, synthetic, 2 CPU cores"
    plot_training_curve(args.run_dir / "log.jsonl", args.out, points, title=title)
    print(f"curve: {args.out}")


if __name__ == "__main__":
    main()
