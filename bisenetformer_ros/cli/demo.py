"""`bisenetformer demo`: the whole system in one command - synthetic camera bag -> the real node over DDS -> recorded
outputs -> scores, latency and an HTML report."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from bisenetformer_ros.cli.options import (
    add_quiet_option,
    check_output_dir,
    float_above,
    int_at_least,
    ros_domain_id,
)


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "demo",
        help="end-to-end demo: play a (synthetic) camera bag into the real node over DDS, record and score its "
        "outputs, write a report",
        description="With no arguments: makes (or reuses) a synthetic camera bag with ground truth, starts "
        "bisenetformer_node with the shipped model on the CPU in a private ROS domain, plays the bag into it over "
        "DDS, records the node's outputs, scores them and writes an HTML report. Pass --bag/--model for your own.",
    )
    p.add_argument("--bag", help="your camera bag (default: a synthetic bag, cached after the first run)")
    p.add_argument("--model", help="checkpoint for the node (default: the shipped model)")
    p.add_argument("--out", default="bisenetformer_demo", help="output folder (default ./bisenetformer_demo)")
    p.add_argument("--frames", type=int_at_least(1), help="number of frames (synthetic bag size / limit on --bag)")
    p.add_argument("--quick", action="store_true", help="short variant (8 small frames) for CI and a first look")
    p.add_argument("--image-topic", help="image topic of --bag (default: /camera/image or the first image topic)")
    gt = p.add_mutually_exclusive_group()
    gt.add_argument("--gt-semantic-topic", help="ground-truth label topic of --bag (mono8/mono16)")
    gt.add_argument("--gt-panoptic-topic", help="ground-truth PanopticSegmentation topic of --bag")
    p.add_argument("--width", type=int_at_least(32), help="synthetic frame width")
    p.add_argument("--height", type=int_at_least(32), help="synthetic frame height")
    p.add_argument("--domain-id", type=ros_domain_id, help="ROS_DOMAIN_ID, 0..232 (default: a random private one)")
    p.add_argument("--cache-dir", help="where the synthetic bag is cached (default ~/.cache/bisenetformer/demo)")
    p.add_argument(
        "--frame-timeout", type=float_above(0.0), default=30.0, help="seconds to wait for the node per frame"
    )
    p.add_argument(
        "--node-arg",
        action="append",
        default=[],
        metavar="ARG",
        help="extra argument for the node's --ros-args (repeatable), e.g. --node-arg=-p --node-arg=overlay_alpha:=0.6",
    )
    add_quiet_option(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from bisenetformer_ros.ros.demo_runner import DemoConfig, run_demo

    check_output_dir(args.out, "--out")
    if args.model and not Path(args.model).is_file():
        raise FileNotFoundError(f"model file '{args.model}' does not exist")
    cfg = DemoConfig(
        bag=args.bag,
        model=args.model,
        out=args.out,
        frames=args.frames,
        quick=args.quick,
        image_topic=args.image_topic,
        gt_semantic_topic=args.gt_semantic_topic,
        gt_panoptic_topic=args.gt_panoptic_topic,
        width=args.width,
        height=args.height,
        domain_id=args.domain_id,
        cache_dir=args.cache_dir,
        frame_timeout=args.frame_timeout,
        node_args=list(args.node_arg),
        progress=not args.quiet,
    )
    report = run_demo(cfg)
    paths = report["paths"]
    sem, pan, lat = report.get("semantic") or {}, report.get("panoptic") or {}, report.get("latency") or {}
    total = lat.get("total") or {}
    print()
    print("BiSeNetFormer demo finished in {:.1f} s".format(report["demo_wall_time_s"]))
    print("  " + report["headline"])
    if sem.get("mIoU") is not None:
        print(f"  mIoU          {sem['mIoU']:.2f} %")
    if pan.get("PQ") is not None:
        print(
            f"  PQ            {pan['PQ']:.2f} %  (things {pan.get('PQ_th', float('nan')):.2f}, "
            f"stuff {pan.get('PQ_st', float('nan')):.2f})"
        )
    if lat.get("fps"):
        print(f"  throughput    {lat['fps']:.2f} FPS (lock-step, one frame in flight)")
    if total.get("count"):
        print(f"  latency       p50 {total['p50_ms']:.1f} ms, p99 {total['p99_ms']:.1f} ms (end to end over DDS)")
    print(f"  report        {paths['report_html']}")
    print(f"  overview PNG  {paths['overview_png']}")
    print(f"  report JSON   {paths['report_json']}")
    print(f"  input bag     {paths['input_bag']}")
    print(f"  output bag    {paths['output_bag']}  (bisenetformer bag info / ros2 bag info)")
    print(f"  node log      {paths['node_log']}")
    return 0
