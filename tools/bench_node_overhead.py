#!/usr/bin/env python3
"""The node's own overhead per camera frame against the pure backend time, measured side by side in one run.

For each camera resolution (default 1280x720 and 1920x1080) the script runs exactly the code the node's worker runs
for a frame - :func:`bisenetformer_ros.ros.messages.message_to_rgb` (conversion of a real sensor_msgs/Image),
the Segmenter (pre-process, network, post-process), :func:`~bisenetformer_ros.inference.outputs.render_outputs`
and :func:`bisenetformer_ros.ros.messages.publish_outputs` (message building + rclpy publish over DDS, with a
subscriber attached so the data really leaves the process) - and, in the same run, the pure backend call
``backend.infer(batch)`` on the same pre-processed input. It prints the median of each stage and the ratios

* adapter overhead = conversion + rendering + publishing (what the ROS node adds around the pipeline),
* node overhead = adapter + pre-process + post-process (everything that is not the network),

as a percentage of the pure backend time; the project's goal is <= 5 %. A second table gives the conversion cost of
every input encoding.

A random-weight network gives masks without spatial structure, which is the worst case of the exact merge (every
cell is undecided). ``--predictions rendered`` still runs and times the real network on every frame but hands the
post-processing *realistic predictions* instead (``tools/bench_postprocess.py``: a rendered synthetic scene's
segments as 1/8-grid mask logits the way a trained model's look, one confident query per segment), so the node's
share is measured for a typical frame. Example::

    .venv/bin/python tools/bench_node_overhead.py --iters 5 --threads 2
    .venv/bin/python tools/bench_node_overhead.py --device cuda --precision fp16 --input-size 512x1024 --json
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

from bisenetformer_ros.topics import OUTPUT_TOPICS, RECORDED_OUTPUTS

GOAL = 0.05
#: The node end to end within 1.15x of the network's own time: node overhead <= 15 % of the backend.
NODE_GOAL = 0.15
#: The outputs a user looks at in RViz (the catalogue's recorded ones), with their topics.
OUTPUTS = RECORDED_OUTPUTS
TOPICS = {name: OUTPUT_TOPICS[name] for name in OUTPUTS}


def _size(text: str) -> tuple[int, int]:
    """'1280x720' -> (height, width)."""
    w, h = (int(v) for v in text.lower().split("x"))
    return h, w


def _model_path(arg: str | None, tmp: Path, paper: bool = False) -> tuple[str, str]:
    """The model to time and how it was chosen (given, embedded default, or the paper's STDC1 with random weights)."""
    if arg:
        return arg, arg
    if not paper:
        from bisenetformer_ros.resources import default_model_path

        try:
            return str(default_model_path()), "embedded default model"
        except FileNotFoundError:
            pass  # not built in this checkout: time the paper-size network instead
    from bisenetformer_ros.data.classes import CITYSCAPES
    from bisenetformer_ros.model import ModelConfig, build_model, save_model

    cfg = ModelConfig(backbone="stdc1", num_classes=19)  # paper configuration: 100 queries, 256-d, 6 layers
    path = tmp / "stdc1_random.pt"
    save_model(path, build_model(cfg), cfg, CITYSCAPES)
    return str(path), "STDC1, paper configuration, random weights (speed does not depend on weights)"


def _scene(h: int, w: int) -> np.ndarray:
    """A smooth synthetic camera frame (random noise would make JPEG and the model unrealistically busy)."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    img = np.stack([(xx / w) * 255, (yy / h) * 255, ((xx + yy) % 97) / 97 * 255], -1)
    return img.astype(np.uint8)


def _camera_msg(rgb: np.ndarray, encoding: str) -> Any:
    from sensor_msgs.msg import CompressedImage, Image

    from bisenetformer_ros.image import encode_compressed, encode_image, encoding_info

    h, w = rgb.shape[:2]
    if encoding == "jpeg":
        m = CompressedImage(format="jpeg")
        m.data = encode_compressed(rgb, "jpeg", 90)
        return m
    info = encoding_info(encoding)
    arr = rgb
    if info.layout == "mono":
        arr = rgb[..., 1].astype(np.uint16) * np.uint16(257) if info.depth == 2 else rgb[..., 1]
    step, data = encode_image(arr, encoding)
    m = Image(height=h, width=w, encoding=encoding, step=step)
    m.data = data
    return m


def _median(values: list[float]) -> float:
    """p50 with the package's one percentile definition (bisenetformer_ros.evaluation.latency)."""
    from bisenetformer_ros.evaluation.latency import percentile

    return percentile(values, 50)


def _median_ms(values: list[float]) -> float:
    return _median(values) * 1000.0


def _rendered_predictions(seg: Any, meta: Any) -> Any:
    """Make ``seg``'s backend return realistic predictions for ``meta``'s frame after running the real network
    (timed as usual); returns the unwrapped ``infer`` for the pure-backend timing."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from bench_postprocess import realistic_predictions

    real_infer = seg.backend.infer
    rendered: list[tuple[torch.Tensor, torch.Tensor]] = []  # made once, on the first call (shapes from the network)

    def infer(batch: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        logits, masks = real_infer(batch)
        if not rendered:
            fake_logits, fake_masks = realistic_predictions(meta, logits.shape[2] - 1, queries=logits.shape[1])
            if fake_masks.shape[-2:] != masks.shape[-2:]:
                grid = tuple(masks.shape[-2:])
                raise RuntimeError(f"mask grid {grid} is not the 1/8 grid of the rendered predictions")
            rendered.append((fake_logits.to(logits), fake_masks.to(masks)))
        fake_logits, fake_masks = rendered[0]
        return fake_logits.clone(), fake_masks.clone()  # as fresh as a real network output

    seg.backend.infer = infer
    return real_infer


def bench_size(seg: Any, node: Any, pubs: dict[str, Any], h: int, w: int, args: argparse.Namespace) -> dict:
    from bisenetformer_ros.inference.outputs import render_outputs
    from bisenetformer_ros.ros import messages as M
    from bisenetformer_ros.ros.pipeline import resize_to_network

    rgb = _scene(h, w)
    msg = _camera_msg(rgb, args.encoding)
    stages: dict[str, list[float]] = {
        k: [] for k in ("decode", "preprocess", "inference", "postprocess", "render", "publish", "backend")
    }
    # The pure backend on the very input the pipeline builds (same device, dtype and padded size).
    batch, metas = seg.preprocessor([rgb])
    batch = batch.to(device=seg.backend.input_device, dtype=seg.backend.input_dtype)
    pure_infer = seg.backend.infer
    if args.predictions == "rendered":
        if args.output_resolution != "camera":
            raise SystemExit("--predictions rendered needs --output-resolution camera")
        pure_infer = _rendered_predictions(seg, metas[0])
    for i in range(args.warmup + args.iters):
        timed = i >= args.warmup
        t0 = time.perf_counter()
        image = M.message_to_rgb(msg, 1 << 30, "shift")
        if args.output_resolution == "network":
            image = resize_to_network(seg, image)
        t1 = time.perf_counter()
        [res] = seg.run([image], tasks=("semantic", "panoptic"))
        t2 = time.perf_counter()
        outs = render_outputs(res, image, seg.class_table, 0.5, outputs=set(OUTPUTS))
        t3 = time.perf_counter()
        header = msg.header
        header.stamp = node.get_clock().now().to_msg()
        M.publish_outputs(pubs, header, outs, set(OUTPUTS), seg.class_table)
        t4 = time.perf_counter()
        seg.backend.synchronize()
        t5 = time.perf_counter()
        pure_infer(batch)
        seg.backend.synchronize()
        t6 = time.perf_counter()
        if timed:
            stages["decode"].append(t1 - t0)
            for k in ("preprocess", "inference", "postprocess"):
                stages[k].append(res.timings[k])
            stages["render"].append(t3 - t2)
            stages["publish"].append(t4 - t3)
            stages["backend"].append(t6 - t5)
        print(
            f"  {w}x{h} iteration {i + 1}/{args.warmup + args.iters}{'' if timed else ' (warm-up)'}: "
            f"backend {(t6 - t5) * 1000:.1f} ms, frame {(t4 - t0) * 1000:.1f} ms",
            file=sys.stderr,
            flush=True,
        )
    med = {k: _median_ms(v) for k, v in stages.items()}
    # Ratios are taken per iteration (overhead and backend measured back to back) and then the median: on a shared
    # machine the load changes between iterations, and pairing keeps it out of the ratio.
    adapter_i = [stages["decode"][i] + stages["render"][i] + stages["publish"][i] for i in range(args.iters)]
    node_i = [adapter_i[i] + stages["preprocess"][i] + stages["postprocess"][i] for i in range(args.iters)]
    backend_i = stages["backend"]
    return {
        "camera": f"{w}x{h}",
        "network_input": "x".join(str(v) for v in reversed(seg.preprocessor.target_size(h, w))),
        "stages_ms": {k: round(v, 2) for k, v in med.items()},
        "adapter_ms": round(_median_ms(adapter_i), 2),
        "node_overhead_ms": round(_median_ms(node_i), 2),
        "adapter_pct_of_backend": round(100 * _median([a / b for a, b in zip(adapter_i, backend_i, strict=True)]), 2),
        "node_pct_of_backend": round(100 * _median([n / b for n, b in zip(node_i, backend_i, strict=True)]), 2),
    }


def bench_decode(sizes: list[tuple[int, int]], iters: int) -> list[dict]:
    """Conversion cost of every encoding (median of ``iters``), the part of the adapter that depends on the camera."""
    from bisenetformer_ros.image import SUPPORTED_ENCODINGS
    from bisenetformer_ros.ros.messages import message_to_rgb

    rows = []
    for h, w in sizes:
        rgb = _scene(h, w)
        for enc in (
            "rgb8",
            "bgr8",
            "bgra8",
            "mono8",
            "mono16",
            "yuv422",
            "yuv422_yuy2",
            "bayer_rggb8",
            "bayer_rggb16",
            "jpeg",
        ):
            if enc != "jpeg" and enc not in SUPPORTED_ENCODINGS:
                continue
            msg = _camera_msg(rgb, enc)
            times = []
            for _ in range(iters):
                t0 = time.perf_counter()
                out = message_to_rgb(msg, 1 << 30, "shift")
                np.ascontiguousarray(out)  # what the pre-processor needs anyway
                times.append(time.perf_counter() - t0)
            rows.append({"camera": f"{w}x{h}", "encoding": enc, "decode_ms": round(_median_ms(times), 2)})
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", help="model file (default: embedded model, else paper-size STDC1, random weights)")
    parser.add_argument(
        "--paper-model", action="store_true", help="time the paper-size STDC1 (100 queries, 19 classes, random weights)"
    )
    parser.add_argument("--backend", default="auto", help="auto (the node's default), torch, onnxruntime, tensorrt")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--precision", default="fp32")
    parser.add_argument("--sizes", default="1280x720,1920x1080", help="camera resolutions WxH, comma-separated")
    parser.add_argument("--input-size", help="network input HxW (default: the camera resolution)")
    parser.add_argument("--output-resolution", choices=("camera", "network"), default="camera")
    parser.add_argument("--encoding", default="rgb8", help="camera encoding of the timed frames (or 'jpeg')")
    parser.add_argument("--iters", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = default)")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of tables")
    parser.add_argument("--label-stride", type=int, default=1, help="node parameter label_stride (1 = exact merge)")
    parser.add_argument("--compile", action="store_true", help="node parameter torch_compile (torch backend)")
    parser.add_argument(
        "--predictions",
        choices=("network", "rendered"),
        default="network",
        help="post-process the network's own outputs, or realistic rendered ones (see above; the network still runs)",
    )
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    import rclpy
    from rclpy.qos import qos_profile_sensor_data
    from sensor_msgs.msg import Image

    from bisenetformer_ros.inference import Segmenter
    from bisenetformer_ros.msg import PanopticSegmentation

    sizes = [_size(s) for s in args.sizes.split(",") if s]
    input_size = None
    if args.input_size:
        ih, iw = (int(v) for v in args.input_size.lower().split("x"))
        input_size = (ih, iw)
    with tempfile.TemporaryDirectory() as tmp:
        model, model_note = _model_path(args.model, Path(tmp), args.paper_model)
        from bisenetformer_ros.model import PostprocessConfig

        seg = Segmenter.from_model(
            model,
            backend=args.backend,
            device=args.device,
            precision=args.precision,
            input_size=input_size,
            postprocess_config=PostprocessConfig(label_stride=args.label_stride),
            **({"compile": True} if args.compile else {}),
        )
        ctx = rclpy.Context()
        rclpy.init(context=ctx)
        node = rclpy.create_node("bench_node_overhead", context=ctx)
        sink = rclpy.create_node("bench_sink", context=ctx)
        pubs = {}
        for name, topic in TOPICS.items():
            typ = PanopticSegmentation if name == "panoptic" else Image
            pubs[name] = node.create_publisher(typ, f"/bench/{topic}", qos_profile_sensor_data)
            sink.create_subscription(typ, f"/bench/{topic}", lambda _m: None, qos_profile_sensor_data)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and any(p.get_subscription_count() == 0 for p in pubs.values()):
            time.sleep(0.05)
        backend_text = seg.backend.info.describe()
        try:
            rows = [bench_size(seg, node, pubs, h, w, args) for h, w in sizes]
            decode_rows = bench_decode(sizes, max(5, args.iters))
        finally:
            node.destroy_node()
            sink.destroy_node()
            ctx.try_shutdown()
            seg.close()
    report = {
        "model": model_note,
        "backend": backend_text,
        "threads": torch.get_num_threads(),
        "cpu": platform.processor() or platform.machine(),
        "encoding": args.encoding,
        "output_resolution": args.output_resolution,
        "label_stride": args.label_stride,
        "compile": args.compile,
        "predictions": args.predictions,
        "goal_pct": GOAL * 100,
        "node_goal_pct": NODE_GOAL * 100,
        "results": rows,
        "decode": decode_rows,
    }
    if args.json:
        print(json.dumps(report))
        return 0
    print(
        f"model: {model_note}\nbackend: {report['backend']}, torch threads {report['threads']}, "
        f"input encoding {args.encoding}, outputs at {args.output_resolution} resolution, all 5 image outputs, "
        f"post-processing on the {args.predictions} predictions"
    )
    head = ("camera", "net in", "backend", "decode", "preproc", "postproc", "render", "publish", "adapter %", "node %")
    print(" | ".join(f"{h:>9}" for h in head))
    for r in rows:
        s = r["stages_ms"]
        cells = (
            r["camera"],
            r["network_input"],
            s["backend"],
            s["decode"],
            s["preprocess"],
            s["postprocess"],
            s["render"],
            s["publish"],
            r["adapter_pct_of_backend"],
            r["node_pct_of_backend"],
        )
        print(" | ".join(f"{c:>9}" if isinstance(c, str) else f"{c:>9.1f}" for c in cells))
    print(
        f"(milliseconds, medians; % = median per-iteration share of the pure backend time; goals: adapter <= "
        f"{GOAL * 100:.0f} %, node <= {NODE_GOAL * 100:.0f} %)"
    )
    print(
        "\nconversion per encoding (ms): "
        + ", ".join(f"{d['camera']} {d['encoding']} {d['decode_ms']}" for d in decode_rows)
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
