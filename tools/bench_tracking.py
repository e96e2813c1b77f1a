#!/usr/bin/env python3
"""Cost of one :meth:`PanopticTracker.update` per frame: prints ms per frame (p50 / p90 / max) and the tracker's
memory, for a panoptic result of a given size and segment count (default 1280x720, 30 segments: 4 stuff regions
and 26 moving thing instances of 4 classes, overlapping each other as they move).

    .venv/bin/python tools/bench_tracking.py [--height 720 --width 1280 --segments 30 --frames 300]

A benchmark, not a test: figures depend on the machine; the README records them. Runs on one core (the tracker is
plain numpy/scipy; BLAS threads are irrelevant to it, OMP/MKL threads are pinned to 1 anyway).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
    os.environ.setdefault(var, "1")

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

from bisenetformer_ros.evaluation.latency import LatencySummary  # noqa: E402
from bisenetformer_ros.model.postprocess import PanopticResult, Segment  # noqa: E402
from bisenetformer_ros.tracking import PanopticTracker, TrackerConfig  # noqa: E402


def make_frames(h: int, w: int, segments: int, frames: int, seed: int = 0) -> list[PanopticResult]:
    """Moving rectangles and discs over 4 stuff bands, as the post-processing would give them (ids 1..n per frame,
    tight boxes, areas, centroids). Built before timing: only the tracker is measured."""
    rng = np.random.default_rng(seed)
    n_stuff = min(4, segments)
    n_things = segments - n_stuff
    size = rng.uniform(0.04, 0.15, n_things) * min(h, w)
    pos = np.stack([rng.uniform(0, h, n_things), rng.uniform(0, w, n_things)], axis=1)
    vel = rng.uniform(-0.01, 0.01, (n_things, 2)) * np.array([h, w])
    classes = rng.integers(4, 8, n_things)
    yy, xx = np.mgrid[0:h, 0:w]
    out = []
    for t in range(frames):
        ids = np.zeros((h, w), dtype=np.uint16)
        cls_of: dict[int, int] = {}
        bands = np.linspace(0, h, n_stuff + 1).astype(int)
        for k in range(n_stuff):
            ids[bands[k] : bands[k + 1]] = k + 1
            cls_of[k + 1] = k
        p = pos + vel * t
        p[:, 0] %= h
        p[:, 1] %= w
        for k in range(n_things):
            cy, cx, r = p[k, 0], p[k, 1], size[k]
            y0, y1 = int(max(0, cy - r)), int(min(h, cy + r))
            x0, x1 = int(max(0, cx - r)), int(min(w, cx + r))
            if y1 <= y0 or x1 <= x0:
                continue
            sub = ids[y0:y1, x0:x1]
            if k % 2:
                disc = (yy[y0:y1, x0:x1] - cy) ** 2 + (xx[y0:y1, x0:x1] - cx) ** 2 <= r * r
                sub[disc] = n_stuff + 1 + k
            else:
                sub[:] = n_stuff + 1 + k
            cls_of[n_stuff + 1 + k] = int(classes[k])
        segs = []
        counts = np.bincount(ids.ravel(), minlength=segments + 1)
        for sid, cls in cls_of.items():
            if counts[sid] == 0:
                continue
            ys, xs = np.nonzero(ids == sid)
            bbox = (int(xs.min()), int(ys.min()), int(xs.max() - xs.min() + 1), int(ys.max() - ys.min() + 1))
            segs.append(Segment(sid, cls, cls >= 4, 0.9, int(counts[sid]), bbox, (float(xs.mean()), float(ys.mean()))))
        out.append(PanopticResult(ids, segs))
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--height", type=int, default=720)
    ap.add_argument("--width", type=int, default=1280)
    ap.add_argument("--segments", type=int, default=30)
    ap.add_argument("--frames", type=int, default=200)
    ap.add_argument("--repeat", type=int, default=3, help="passes over the frames (a fresh tracker each)")
    args = ap.parse_args()
    if args.height < 8 or args.width < 8 or args.segments < 1 or args.frames < 2 or args.repeat < 1:
        print("bench_tracking.py: error: need --height/--width >= 8, --segments >= 1, --frames >= 2", file=sys.stderr)
        return 2
    frames = make_frames(args.height, args.width, args.segments, args.frames)
    times = []
    tracker = PanopticTracker(TrackerConfig())
    for _ in range(args.repeat):
        tracker = PanopticTracker(TrackerConfig())
        for f in frames:
            t0 = time.perf_counter()
            tracker.update(f)
            times.append((time.perf_counter() - t0) * 1000.0)
    summary = LatencySummary.of(times[len(frames) // 10 :])  # the first frames of the first pass only allocate
    mean_segs = np.mean([len(f.segments) for f in frames])
    print(
        f"tracker update at {args.width}x{args.height}, {mean_segs:.1f} segments/frame ({args.frames} frames x "
        f"{args.repeat}): p50 {summary.p50:.2f} ms, p90 {summary.p90:.2f} ms, "
        f"max {summary.max:.2f} ms; tracks held {tracker.num_tracks}, memory {tracker.memory_bytes() / 1e6:.2f} MB"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
