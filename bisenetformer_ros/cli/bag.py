"""`bisenetformer bag`: rosbag2 tools that work without a ROS install (play, record, info, evaluate, make-synthetic,
export).

play/record talk to a live ROS graph through rclpy; info/evaluate/make-synthetic/export are offline (no DDS) and run
on any machine with the Python package. Heavy imports happen inside the handlers so `--help` stays instant.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from bisenetformer_ros.cli.options import (
    add_model_arguments,
    add_quiet_option,
    add_tracking_options,
    calibration_options,
    check_output_dir,
    float_above,
    fraction,
    int_at_least,
    ros_domain_id,
    tracker_config_from,
)


def _remaps(values: list[str] | None) -> dict[str, str]:
    out: dict[str, str] = {}
    for v in values or []:
        if ":=" not in v:
            raise ValueError(f"--remap expects FROM:=TO, got '{v}'")
        a, b = v.split(":=", 1)
        out[a] = b
    return out


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "bag",
        help="rosbag2 tools: play, record, info, evaluate a model on a bag, make a synthetic camera bag",
        description="rosbag2 tools on the pure-Python rosbags library (sqlite3 and mcap storage); "
        "play/record use rclpy, the rest runs offline.",
    )
    sub = p.add_subparsers(dest="bag_command", metavar="<bag command>")
    sub.required = True

    # play
    sp = sub.add_parser("play", help="publish a bag's topics with rclpy (for machines without ros2 bag)")
    sp.add_argument("bag", help="rosbag2 directory or .db3/.mcap file")
    sp.add_argument(
        "--rate",
        type=float_above(0.0, inclusive=True),
        default=1.0,
        help="playback speed factor honouring recorded timing; 0 = as fast as possible (default 1)",
    )
    sp.add_argument("--loop", action="store_true", help="repeat until Ctrl-C")
    sp.add_argument("--topics", nargs="+", help="play only these topics (default: all)")
    sp.add_argument("--remap", nargs="+", metavar="FROM:=TO", help="publish a bag topic under another name")
    sp.add_argument(
        "--qos-reliability",
        choices=("reliable", "best_effort"),
        help="override the recorded reliability of all publishers",
    )
    sp.add_argument("--clock", action="store_true", help="publish bag time on /clock (for use_sim_time consumers)")
    sp.add_argument(
        "--wait-for-subscribers",
        type=int_at_least(0),
        default=0,
        metavar="N",
        help="before playing, wait until the topics have N subscribers",
    )
    sp.add_argument(
        "--wait-timeout", type=float_above(0.0), default=30.0, help="seconds to wait for subscribers (default 30)"
    )
    sp.add_argument(
        "--sync-topic",
        help="lock-step: after each image, wait for this topic's message with the same "
        "header stamp (e.g. /bisenetformer/semantic) - every frame reaches a slow consumer",
    )
    sp.add_argument("--sync-source", help="topic that lock-step paces (default: the first image topic)")
    sp.add_argument(
        "--sync-timeout", type=float_above(0.0), default=10.0, help="seconds to wait per frame in lock-step"
    )
    sp.add_argument("--domain-id", type=ros_domain_id, help="ROS_DOMAIN_ID to use, 0..232 (default: the environment's)")
    add_quiet_option(sp)
    sp.set_defaults(func=run_play)

    # record
    sr = sub.add_parser("record", help="record live topics (incl. this package's messages) to a rosbag2 bag")
    sr.add_argument("out", help="output bag directory (must not exist unless --overwrite)")
    g = sr.add_mutually_exclusive_group(required=True)
    g.add_argument("--topics", nargs="+", help="topics to record (types and QoS are resolved from the graph)")
    g.add_argument("--all", action="store_true", help="record every topic (except /rosout and /parameter_events)")
    sr.add_argument(
        "--storage", choices=("sqlite3", "mcap"), default="sqlite3", help="storage plugin (default sqlite3)"
    )
    sr.add_argument(
        "--format-version",
        type=int,
        choices=(8, 9),
        default=9,
        help="metadata.yaml version: 9 = Jazzy/Kilted, 8 = Iron (default 9)",
    )
    sr.add_argument("--overwrite", action="store_true", help="replace an existing output bag")
    sr.add_argument("--duration", type=float_above(0.0), help="stop after this many seconds")
    sr.add_argument("--max-messages", type=int_at_least(1), help="stop after this many messages in total")
    sr.add_argument(
        "--idle-timeout",
        type=float_above(0.0),
        help="stop when no message arrived for this many seconds (after the first one)",
    )
    sr.add_argument("--domain-id", type=ros_domain_id, help="ROS_DOMAIN_ID to use, 0..232 (default: the environment's)")
    sr.set_defaults(func=run_record)

    # info
    si = sub.add_parser("info", help="summarise a bag (topics, types, counts) without ROS")
    si.add_argument("bag")
    si.set_defaults(func=run_info)

    # make-synthetic
    sm = sub.add_parser("make-synthetic", help="camera bag with ground truth from the synthetic scene generator")
    sm.add_argument("out", help="output bag directory")
    sm.add_argument("--width", type=int_at_least(16), default=320)
    sm.add_argument("--height", type=int_at_least(16), default=240)
    sm.add_argument("--rate", type=float_above(0.0), default=10.0, help="frame rate in Hz (default 10)")
    sm.add_argument("--frames", type=int_at_least(1), default=50, help="number of frames (default 50)")
    sm.add_argument("--seed", type=int, default=0, help="scene seed (same seed = same bag)")
    sm.add_argument("--storage", choices=("sqlite3", "mcap"), default="sqlite3")
    sm.add_argument("--namespace", default="/camera", help="topic namespace (default /camera)")
    sm.add_argument("--frame-id", default="camera_optical_frame")
    sm.add_argument(
        "--start-time", type=float, default=1_700_000_000.0, help="stamp of the first frame, seconds since the epoch"
    )
    sm.add_argument(
        "--sequence",
        action="store_true",
        help="tracking sequence: faster objects that cross, hide each other, leave the frame and return (ground-truth "
        "identities in every bag's gt/panoptic track_id)",
    )
    sm.add_argument("--overwrite", action="store_true")
    add_quiet_option(sm)
    sm.set_defaults(func=run_make_synthetic)

    # evaluate
    se = sub.add_parser(
        "evaluate",
        help="run the model over a bag offline (no DDS): metrics, latency, report, "
        "optional output bag with the node's topics",
    )
    se.add_argument("bag")
    se.add_argument("--image-topic", required=True, help="sensor_msgs/Image or CompressedImage topic")
    se.add_argument("--gt-semantic-topic", help="ground-truth class ids (mono8/mono16 Image, same stamps): mIoU")
    se.add_argument(
        "--gt-panoptic-topic",
        help="ground truth as bisenetformer_ros/PanopticSegmentation: PQ (and mIoU when no semantic topic is given)",
    )
    se.add_argument("--gt-dir", help="folder with ground-truth label PNGs named by stamp (ns) or frame index")
    add_model_arguments(se)  # --model, --backend, --device, --precision, --calibration-images, --input-size
    se.add_argument("--batch", type=int_at_least(1), default=4, help="frames per inference batch (default 4)")
    se.add_argument("--max-frames", type=int_at_least(1), help="evaluate only the first N frames")
    se.add_argument("--out", help="report directory (JSON + HTML); default <bag>_eval next to the bag")
    se.add_argument("--write-bag", help="write the node's output topics for every frame to this bag")
    se.add_argument("--write-storage", choices=("sqlite3", "mcap"), default="sqlite3")
    se.add_argument("--output-namespace", default="/bisenetformer", help="namespace of the written output topics")
    se.add_argument("--overlay-alpha", type=fraction, default=0.5)
    se.add_argument("--overwrite", action="store_true", help="replace an existing --write-bag")
    add_tracking_options(se)
    add_quiet_option(se)
    se.set_defaults(func=run_evaluate)

    # export
    sx = sub.add_parser(
        "export",
        help="write a bag's frames (and ground truth) as a 'folder' dataset (for evaluate/predict/train)",
        description="Frames and ground truth paired by header stamp, as bag evaluate pairs them, written in the "
        "layout of the 'folder' dataset loader: bisenetformer evaluate --dataset folder --root OUT then scores "
        "the same frames that bag evaluate scores.",
    )
    sx.add_argument("bag")
    sx.add_argument("--image-topic", required=True)
    sx.add_argument("--gt-semantic-topic", help="class-id label topic (mono8/mono16) -> semantic/<split>/")
    sx.add_argument("--gt-panoptic-topic", help="PanopticSegmentation topic -> panoptic_<split>.json + PNGs")
    sx.add_argument("--out", required=True, help="output folder")
    sx.add_argument("--split", default="val", help="split name of the written dataset (default val)")
    sx.add_argument("--class-table", help="built-in class table of the labels (default: the bag's class_info topic)")
    sx.add_argument("--max-frames", type=int_at_least(1), help="export only the first N frames")
    sx.add_argument("--overwrite", action="store_true", help="replace an earlier export in --out")
    sx.set_defaults(func=run_export)


def run_play(args: argparse.Namespace) -> int:
    from bisenetformer_ros.ros.bag_transport import play

    stats = play(
        args.bag,
        topics=args.topics,
        rate=args.rate,
        loop=args.loop,
        remap=_remaps(args.remap),
        reliability=args.qos_reliability,
        clock=args.clock,
        wait_for_subscribers=args.wait_for_subscribers,
        wait_timeout=args.wait_timeout,
        sync_topic=args.sync_topic,
        sync_source=args.sync_source,
        sync_timeout=args.sync_timeout,
        domain_id=args.domain_id,
        show_progress=not args.quiet,
        log=lambda s: print(s, file=sys.stderr),
    )
    rate = stats.total / stats.wall_time if stats.wall_time > 0 else 0.0
    print(f"played {stats.total} messages in {stats.wall_time:.2f} s ({rate:.1f} msg/s)")
    for topic, n in sorted(stats.published.items()):
        print(f"  {topic}: {n}")
    if args.sync_topic:
        print(f"lock-step: {len(stats.response_wall)} responses, {stats.sync_timeouts} timeouts")
    return 0


def run_record(args: argparse.Namespace) -> int:
    from bisenetformer_ros.ros.bag_transport import record

    summary = record(
        args.out,
        None if args.all else args.topics,
        storage=args.storage,
        overwrite=args.overwrite,
        version=args.format_version,
        duration=args.duration,
        max_messages=args.max_messages,
        idle_timeout=args.idle_timeout,
        domain_id=args.domain_id,
        log=lambda s: print(s, file=sys.stderr),
    )
    total = sum(t["count"] for t in summary["topics"].values())
    print(f"wrote {total} messages to {summary['bag']}")
    for topic, t in sorted(summary["topics"].items()):
        print(f"  {topic} [{t['type']}]: {t['count']}")
    for topic in summary["never_seen"]:
        print(f"  {topic}: never published (no publisher appeared)", file=sys.stderr)
    for topic, why in summary["problems"].items():
        print(f"  {topic}: not recorded: {why}", file=sys.stderr)
    return 0


def run_info(args: argparse.Namespace) -> int:
    from bisenetformer_ros.bags.bagio import BagReader, format_bag_info

    with BagReader(args.bag) as reader:
        print(format_bag_info(reader))
    return 0


def run_make_synthetic(args: argparse.Namespace) -> int:
    from bisenetformer_ros.bags.synthetic_bag import SyntheticBagConfig, make_synthetic_bag

    cfg = SyntheticBagConfig(
        width=args.width,
        height=args.height,
        rate=args.rate,
        frames=args.frames,
        seed=args.seed,
        storage=args.storage,
        namespace=args.namespace,
        frame_id=args.frame_id,
        start_time=args.start_time,
        sequence=args.sequence,
    )
    check_output_dir(args.out, "OUT")
    info = make_synthetic_bag(args.out, cfg, overwrite=args.overwrite, progress=not args.quiet)
    print(f"wrote {info['frames']} frames ({cfg.width}x{cfg.height} @ {cfg.rate:g} Hz, {cfg.storage}) to {args.out}")
    for topic in info["topics"]:
        print(f"  {topic}")
    return 0


def run_evaluate(args: argparse.Namespace) -> int:
    from bisenetformer_ros.bags.evaluate import BagEvalConfig, evaluate_bag
    from bisenetformer_ros.cli.options import resolve_network_size

    out = args.out or str(Path(args.bag).resolve().with_name(Path(args.bag).resolve().name + "_eval"))
    check_output_dir(out, "--out")
    size = resolve_network_size(args)  # printed, and recorded in report.json
    cfg = BagEvalConfig(
        bag=args.bag,
        image_topic=args.image_topic,
        gt_semantic_topic=args.gt_semantic_topic,
        gt_panoptic_topic=args.gt_panoptic_topic,
        gt_dir=args.gt_dir,
        model=args.model,
        backend=args.backend,
        device=args.device,
        precision=args.precision,
        backend_options=calibration_options(args),
        input_size=args.input_size,
        network_size=size,
        batch=args.batch,
        max_frames=args.max_frames,
        out_dir=out,
        write_bag=args.write_bag,
        write_storage=args.write_storage,
        output_namespace=args.output_namespace,
        overlay_alpha=args.overlay_alpha,
        overwrite=args.overwrite,
        progress=not args.quiet,
        tracking=tracker_config_from(args),
    )
    report = evaluate_bag(cfg)
    print(report["headline"])
    print(f"report: {Path(out) / 'report.html'}  (JSON: {Path(out) / 'report.json'})")
    if args.write_bag:
        print(f"output bag: {args.write_bag}")
    return 0


def run_export(args: argparse.Namespace) -> int:
    from bisenetformer_ros.bags.export import export_bag

    info = export_bag(
        args.bag,
        args.out,
        image_topic=args.image_topic,
        gt_semantic_topic=args.gt_semantic_topic,
        gt_panoptic_topic=args.gt_panoptic_topic,
        max_frames=args.max_frames,
        split=args.split,
        class_table=args.class_table,
        overwrite=args.overwrite,
    )
    print(json.dumps(info, indent=2))
    return 0
