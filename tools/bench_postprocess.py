#!/usr/bin/env python3
"""Exact post-processing at camera resolution against the network forward, measured side by side in one run.

For each camera size and class count the script builds BiSeNetFormer-STDC1 at the paper's size (100 queries, K
classes, random weights: the forward's speed does not depend on them) and times its forward on the node's default
path (``--backend auto``: ONNX Runtime on the CPU) at the node's network size (``--input-size``; default: the camera
size, as in ``config/node/cpu.yaml``). Random weights give masks without spatial structure, though, and the cell
merge's cost depends on how much boundary there is, so the merge is timed on *realistic predictions*: a rendered
synthetic scene's ground-truth segments made into mask logits on the 1/8 grid the way a trained model's look (about
+-10 inside/outside, a 1-2 cell transition, noise), with either

* ``few`` kept queries: one confident query per segment, the rest no-object (typical frame), or
* ``many``: all 100 queries confident and kept - several overlapping, jittered queries per segment (worst case for
  the panoptic merge and for the semantic sums).

Each iteration times the network, then semantic + panoptic post-processing (``postprocess_batch``, the node's call)
back to back; the table gives medians and the median per-iteration ratio post / network. ``--dense`` adds the dense
brute force for comparison. Peak memory of one merge is measured in a fresh subprocess as the growth of the
resident set's high-water mark (``/proc/self/clear_refs``, Linux; glibc's mmap threshold fixed so that freed blocks
leave the resident set). Example::

    .venv/bin/python tools/bench_postprocess.py --threads 2 --iters 5 --dense
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable

import bisenetformer_ros  # noqa: F401  first: sets OMP_WAIT_POLICY before torch loads OpenMP (see its docstring)

# isort: split
import numpy as np
import torch
import torch.nn.functional as F

from bisenetformer_ros.data.classes import ClassTable
from bisenetformer_ros.data.synthetic import render_scene
from bisenetformer_ros.evaluation.latency import percentile
from bisenetformer_ros.model import PostprocessConfig, PreprocessMeta, Preprocessor, postprocess_batch


def _size(text: str) -> tuple[int, int]:
    """'1280x720' -> (height, width)."""
    w, h = (int(v) for v in text.lower().split("x"))
    return h, w


def class_table(k: int) -> ClassTable:
    """K classes, every other one a thing (the merge's cost does not depend on names)."""
    return ClassTable(
        dataset=f"bench{k}",
        names=tuple(f"c{i}" for i in range(k)),
        colors=tuple((i % 256, (7 * i) % 256, (13 * i) % 256) for i in range(k)),
        is_thing=tuple(i % 2 == 1 for i in range(k)),
        ignore_label=65535,
    )


def realistic_predictions(
    meta: PreprocessMeta, k: int, queries: int = 100, many: bool = False, seed: int = 10_001
) -> tuple[torch.Tensor, torch.Tensor]:
    """``pred_logits [1,Q,K+1]``, ``pred_masks [1,Q,H/8,W/8]`` shaped like a trained model's on a synthetic scene
    rendered at the network's input size (see the module docstring)."""
    (rh, rw), (ph, pw) = meta.resized_size, meta.padded_size
    scene = render_scene(seed, rh, rw)
    pan = torch.from_numpy(scene.panoptic.astype(np.int64))
    gen = torch.Generator().manual_seed(seed)
    mh, mw = ph // 8, pw // 8
    logits = torch.randn(queries, k + 1, generator=gen) - 4.0
    logits[:, k] = 4.0  # no-object
    masks = torch.randn(queries, mh, mw, generator=gen) * 2.0 - 12.0
    segments = scene.segments
    owners = range(queries) if many else range(min(queries, len(segments)))
    for qi in owners:
        seg = segments[qi % len(segments)]
        occupancy = torch.zeros(ph, pw)
        occupancy[:rh, :rw] = (pan == seg.id).float()
        frac = F.avg_pool2d(occupancy[None, None], 8)[0, 0]
        if qi >= len(segments):  # a duplicate query: shifted by up to a cell, weaker
            frac = torch.roll(
                frac, shifts=tuple(int(v) for v in torch.randint(-1, 2, (2,), generator=gen)), dims=(0, 1)
            )
        masks[qi] = 10.0 * (2.0 * frac - 1.0) + torch.randn(mh, mw, generator=gen) * 0.5
        logits[qi, (seg.category_id * 7 + qi % len(segments)) % k] = 8.0 - 0.5 * (qi // len(segments))
        logits[qi, k] = 0.0
    return logits[None], masks[None]


def _network(k: int, backend: str, tmp: str) -> Callable[[torch.Tensor], object]:
    """The forward of the paper-size STDC1 with K classes on ``backend`` (``auto`` = the node's default path: ONNX
    Runtime on the CPU, its export cached in ``tmp``)."""
    from bisenetformer_ros.inference import create_backend
    from bisenetformer_ros.model import ModelConfig, build_model, save_model

    torch.manual_seed(0)
    cfg = ModelConfig(backbone="stdc1", num_classes=k)
    path = os.path.join(tmp, f"stdc1_k{k}.pt")
    save_model(path, build_model(cfg).eval(), cfg, class_table(k))
    extra = {"cache_dir": tmp} if backend in ("auto", "onnxruntime") else {}
    be = create_backend(backend, path, device="cpu", **extra)
    return be.infer


def _memory_probe(args: argparse.Namespace) -> None:
    """(subprocess) Peak RSS growth of one merge, printed as JSON."""
    h, w = _size(args.camera[0])
    meta = _meta(h, w, args.input_size)
    logits, masks = realistic_predictions(meta, args.classes[0], many=args.many)
    cfg = PostprocessConfig(mask_order=args.orders[0], merge=args.merge)
    table = class_table(args.classes[0])
    postprocess_batch(logits, masks, [meta], ("semantic", "panoptic"), cfg, table)  # allocator warm, caches built

    def rss(field: str) -> int:
        with open("/proc/self/status") as f:
            return next(int(line.split()[1]) for line in f if line.startswith(field)) * 1024

    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # reset VmHWM to the current RSS
    base = rss("VmRSS:")
    postprocess_batch(logits, masks, [meta], ("semantic", "panoptic"), cfg, table)
    print(json.dumps({"peak_bytes": rss("VmHWM:") - base}))


def _meta(h: int, w: int, input_size: int | None) -> PreprocessMeta:
    pre = Preprocessor(input_size=input_size)
    rh, rw = pre.target_size(h, w)
    return PreprocessMeta(orig_size=(h, w), resized_size=(rh, rw), padded_size=(pre._pad_to(rh), pre._pad_to(rw)))


def _peak_mb(camera: str, k: int, order: str, many: bool, merge: str, args: argparse.Namespace) -> float:
    cmd = [sys.executable, __file__, "--_memory", "--camera", camera, "--classes", str(k), "--orders", order]
    cmd += ["--merge", merge, "--threads", str(args.threads)]
    cmd += ["--many"] if many else []
    cmd += ["--input-size", str(args.input_size)] if args.input_size else []
    # Fixed mmap threshold: every large block is mapped and unmapped, so RSS follows live memory (glibc's dynamic
    # threshold would otherwise serve the measured run from memory the warm-up freed, and the peak would read 0).
    env = dict(os.environ, MALLOC_MMAP_THRESHOLD_="65536")
    out = subprocess.run(cmd, check=True, capture_output=True, text=True, env=env).stdout
    return json.loads(out.strip().splitlines()[-1])["peak_bytes"] / 2**20


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--camera", nargs="+", default=["1280x720", "1920x1080"], help="camera sizes WxH")
    parser.add_argument("--classes", type=int, nargs="+", default=[19, 150])
    parser.add_argument("--orders", nargs="+", default=["upsample_logits", "sigmoid_first"])
    parser.add_argument("--input-size", type=int, default=None, help="network short side (default: camera size)")
    parser.add_argument("--iters", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--backend", default="auto", help="backend of the timed network (auto = the node's default)")
    parser.add_argument("--dense", action="store_true", help="also time the dense brute force (slow)")
    parser.add_argument(
        "--clock",
        choices=("wall", "cpu"),
        default="wall",
        help="wall: elapsed time (what a frame waits); cpu: this process's CPU time, which a contended machine (a "
        "busy host stealing cycles) does not inflate - with --threads 1 it equals the wall time of an idle machine",
    )
    parser.add_argument("--no-memory", action="store_true", help="skip the peak-memory subprocesses")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--merge", default="cells", help=argparse.SUPPRESS)
    parser.add_argument("--many", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--_memory", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    if args._memory:
        _memory_probe(args)
        return 0
    merges = ["cells", "dense"] if args.dense else ["cells"]
    with tempfile.TemporaryDirectory(prefix="bench-post-") as tmp:
        _run(args, merges, tmp)
    return 0


def _run(args: argparse.Namespace, merges: list[str], tmp: str) -> None:
    rows = []
    clock = time.process_time if args.clock == "cpu" else time.perf_counter
    for camera in args.camera:
        h, w = _size(camera)
        meta = _meta(h, w, args.input_size)
        for k in args.classes:
            net = _network(k, args.backend, tmp)
            image = torch.zeros(1, 3, *meta.padded_size)
            table = class_table(k)
            with torch.no_grad():
                net(image)  # warm-up
            for many in (False, True):
                logits, masks = realistic_predictions(meta, k, many=many)
                for order in args.orders:
                    for merge in merges:
                        cfg = PostprocessConfig(mask_order=order, merge=merge)
                        postprocess_batch(logits, masks, [meta], ("semantic", "panoptic"), cfg, table)
                        t_net, t_post = [], []
                        for _ in range(args.iters):
                            t0 = clock()
                            with torch.no_grad():
                                net(image)
                            t1 = clock()
                            postprocess_batch(logits, masks, [meta], ("semantic", "panoptic"), cfg, table)
                            t2 = clock()
                            t_net.append(t1 - t0)
                            t_post.append(t2 - t1)
                        best = logits[0].softmax(-1).max(-1)
                        kept = int(((best.values > cfg.object_mask_threshold) & (best.indices < k)).sum())
                        row = {
                            "camera": camera,
                            "network_input": f"{meta.padded_size[1]}x{meta.padded_size[0]}",
                            "classes": k,
                            "kept": kept,
                            "order": order,
                            "merge": merge,
                            "network_ms": round(1000 * percentile(t_net, 50), 1),
                            "post_ms": round(1000 * percentile(t_post, 50), 1),
                            "post_pct_of_network": round(
                                100 * percentile([p / n for p, n in zip(t_post, t_net, strict=True)], 50), 1
                            ),
                        }
                        if not args.no_memory and (merge == "cells" or camera == args.camera[-1]):
                            row["peak_mb"] = round(_peak_mb(camera, k, order, many, merge, args), 1)
                        rows.append(row)
                        print(json.dumps(row) if args.json else _line(row), flush=True)


def _line(r: dict) -> str:
    mem = f"{r['peak_mb']:.0f} MB" if "peak_mb" in r else "-"
    return (
        f"| {r['camera']} | {r['network_input']} | {r['classes']} | {r['kept']} | {r['order']} | {r['merge']} | "
        f"{r['network_ms']:.1f} | {r['post_ms']:.1f} | {r['post_pct_of_network']:.1f} % | {mem} |"
    )


if __name__ == "__main__":
    raise SystemExit(main())
