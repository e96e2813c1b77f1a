"""Score outputs that a live node published (recorded into a bag) against the ground truth of the input bag.

This is the offline half of the demo: the node ran over DDS, its ``semantic`` / ``panoptic`` messages were recorded,
and here they are paired with the input frames and ground truth by header stamp (the node stamps every output with
its input's header) and scored with the same :class:`~bisenetformer_ros.bags.scoring.Scorer` as ``bag evaluate``.
Frames the node never answered are counted as skipped, not dropped.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from bisenetformer_ros.bags import msgconv as mc
from bisenetformer_ros.bags.bagio import BagReader
from bisenetformer_ros.bags.scoring import SKIP_GT_BAD, SKIP_IMAGE, SKIP_NO_GT, SKIP_NO_PRED, FrameEval, Scorer
from bisenetformer_ros.bags.typestore import CLASS_TABLE, IMAGE, PANOPTIC_SEGMENTATION
from bisenetformer_ros.data.classes import ClassTable


@dataclass
class OutputScoreConfig:
    input_bag: str
    output_bag: str
    image_topic: str
    semantic_topic: str
    panoptic_topic: str | None = None
    overlay_topic: str | None = None
    panoptic_color_topic: str | None = None  # the node's panoptic/color (by track when tracking): the report's strip
    class_info_topic: str | None = None
    gt_semantic_topic: str | None = None
    gt_panoptic_topic: str | None = None
    out_dir: str | None = None
    title: str = "BiSeNetFormer node on a bag"
    class_table: ClassTable | None = None  # default: the one the node published on class_info
    # Per-frame latency measured by whoever drove the node: stamp -> {stage: ms}; and the wall time of the run.
    latency_ms: Mapping[int, Mapping[str, float]] = field(default_factory=dict)
    wall_time_s: float | None = None
    source: dict[str, Any] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    latency_note: str = ""


def _index_by_stamp(reader: BagReader, topic: str | None, decode: Any) -> tuple[dict[int, Any], int]:
    """{header stamp: decoded message} of one topic, and the number of messages that failed to decode."""
    out: dict[int, Any] = {}
    bad = 0
    if not topic:
        return out, 0
    for m in reader.messages([topic]):
        try:
            out[mc.stamp_ns(m.msg.header)] = decode(m.msg)
        except ValueError:
            bad += 1
    return out, bad


def score_output_bag(cfg: OutputScoreConfig) -> dict[str, Any]:
    """Pair node outputs with input frames and ground truth; write the report; return the report dict."""
    warnings = list(cfg.warnings)
    with BagReader(cfg.output_bag) as out_reader:
        out_reader.require_topic(cfg.semantic_topic, [IMAGE], what="node output topic")
        if cfg.panoptic_topic:
            out_reader.require_topic(cfg.panoptic_topic, [PANOPTIC_SEGMENTATION], what="node output topic")
        table = cfg.class_table
        if table is None:
            topics = (
                [cfg.class_info_topic]
                if cfg.class_info_topic
                else [t for t, s in out_reader.topics.items() if s.msgtype == CLASS_TABLE]
            )
            tables = [mc.class_table_from_msg(m.msg) for m in out_reader.messages([t for t in topics if t])]
            if not tables:
                raise ValueError(f"{cfg.output_bag} holds no class table (class_info); pass the class table")
            table = tables[0]
        preds, bad_sem = _index_by_stamp(out_reader, cfg.semantic_topic, mc.label_image_to_array)
        pans, bad_pan = _index_by_stamp(out_reader, cfg.panoptic_topic, mc.panoptic_from_msg)
        overlays, _ = _index_by_stamp(out_reader, cfg.overlay_topic, mc.camera_image_to_rgb)
        pan_colors, _ = _index_by_stamp(out_reader, cfg.panoptic_color_topic, mc.camera_image_to_rgb)
    if bad_sem or bad_pan:
        warnings.append(f"{bad_sem + bad_pan} node output message(s) could not be decoded")

    gt_topic = cfg.gt_semantic_topic or cfg.gt_panoptic_topic
    with BagReader(cfg.input_bag) as in_reader:
        in_reader.require_topic(cfg.image_topic, what="image topic")
        if gt_topic:
            in_reader.require_topic(gt_topic, what="ground-truth topic")
        gts, bad_gt = _index_by_stamp(
            in_reader, gt_topic, mc.panoptic_from_msg if cfg.gt_panoptic_topic else mc.label_image_to_array
        )
        if bad_gt:
            warnings.append(f"{bad_gt} ground-truth message(s) could not be decoded ({SKIP_GT_BAD})")
        n_frames = in_reader.topics[cfg.image_topic].count
        scorer = Scorer(
            table, semantic_gt=bool(cfg.gt_semantic_topic), panoptic_gt=bool(cfg.gt_panoptic_topic), total_hint=n_frames
        )
        tracked = any(s.track_id for _, segs in pans.values() for s in segs)
        # The node's track ids as recorded (its tracking.* parameters); none recorded = tracking was off.
        scorer.tracker_settings = {"source": "track ids recorded from the node"} if tracked else None
        for index, m in enumerate(in_reader.messages([cfg.image_topic])):
            stamp = mc.stamp_ns(m.msg.header)
            f = FrameEval(index=index, stamp=stamp, timings_ms=dict(cfg.latency_ms.get(stamp, {})))
            try:
                f.image = mc.camera_image_to_rgb(m.msg)
            except (ValueError, RuntimeError) as exc:
                f.skip, f.detail = SKIP_IMAGE, str(exc)
            f.pred_semantic = preds.get(stamp)
            f.pred_panoptic = pans.get(stamp)
            f.overlay = overlays.get(stamp)
            f.track_color = pan_colors.get(stamp) if tracked else None
            if f.pred_semantic is None and f.pred_panoptic is None:
                f.skip = f.skip or SKIP_NO_PRED
            if gt_topic:
                gt = gts.get(stamp)
                if gt is None:
                    f.skip = f.skip or SKIP_NO_GT
                elif cfg.gt_panoptic_topic:
                    f.gt_panoptic = gt
                else:
                    f.gt_semantic = gt
            scorer.add(f)
        if in_reader.issues.stopped_early:
            warnings.append(in_reader.issues.stopped_early)
    answered = sum(1 for fr in scorer.frames if fr["skip_reason"] != SKIP_NO_PRED)
    return scorer.build_report(
        title=cfg.title,
        kind="node_outputs",
        source={
            "input_bag": cfg.input_bag,
            "output_bag": cfg.output_bag,
            "image_topic": cfg.image_topic,
            "ground_truth": gt_topic or "none",
            "class_table": table.dataset,
            **cfg.source,
        },
        warnings=warnings,
        latency=scorer.latency(cfg.wall_time_s, answered),
        latency_note=cfg.latency_note,
        out_dir=cfg.out_dir,
    )
