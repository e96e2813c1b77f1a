"""Run a :class:`~bisenetformer_ros.inference.segmenter.Segmenter` over a dataset and score it (mIoU, PQ, timing).

This is what ``bisenetformer evaluate`` and the trainer's final evaluation call. It goes through the same
``Segmenter`` the node uses (pre-processing, backend, post-processing at each image's original size), so a reported
mIoU is the mIoU of what the node would publish, whatever the backend. Metrics come from
:mod:`bisenetformer_ros.evaluation.metrics` (dataset-level, exact).

Timing: every image's pipeline time (pre-process + network + post-process) in ms; with ``batch_size > 1`` each image
of a batch is charged the batch time divided by the batch size (throughput per image, not the latency of one frame).
One untimed warm-up call runs first so that one-time costs (allocator, cuDNN autotuning, lazy engine build) do not
land in the first image's figure. Loading / rendering dataset samples is not timed.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Sequence
from dataclasses import asdict
from typing import Any

import numpy as np

from bisenetformer_ros.data.classes import ClassTable
from bisenetformer_ros.data.datasets import SampleDataset
from bisenetformer_ros.data.sample import Sample
from bisenetformer_ros.evaluation.latency import LatencySummary
from bisenetformer_ros.evaluation.metrics import PanopticMetric, SemanticMetric
from bisenetformer_ros.evaluation.video import VideoPanopticMetric
from bisenetformer_ros.inference.segmenter import STAGES, Segmenter
from bisenetformer_ros.tracking import PanopticTracker, TrackerConfig

PANOPTIC_KEYS: tuple[str, ...] = ("PQ", "SQ", "RQ", "PQ_th", "SQ_th", "RQ_th", "PQ_st", "SQ_st", "RQ_st")


def check_dataset_classes(model_table: ClassTable, dataset_table: ClassTable, model: str, dataset: str) -> None:
    """Refuse to score a model against a dataset of another label space (the numbers would be meaningless)."""
    diffs = model_table.differences(dataset_table)
    if diffs:
        shown = "; ".join(diffs[:8]) + (f"; ... ({len(diffs) - 8} more)" if len(diffs) > 8 else "")
        raise ValueError(
            f"model {model} predicts class table '{model_table.dataset}' ({model_table.num_classes} classes) but "
            f"dataset '{dataset}' is labelled with '{dataset_table.dataset}' ({dataset_table.num_classes} classes); "
            f"differences (model != dataset): {shown}. Evaluate a model trained on this dataset's classes"
        )


def timing_summary(per_image_ms: Sequence[float], total_s: float, stages_ms: dict[str, list[float]]) -> dict[str, Any]:
    """p50/p90/p99/mean of per-image times (ms), FPS = images / summed pipeline time, mean ms per stage."""
    if len(per_image_ms) == 0:
        return {"mean_ms": None, "p50_ms": None, "p90_ms": None, "p99_ms": None, "fps": None, "stages_ms": {}}
    s = LatencySummary.of(per_image_ms)
    return {
        "mean_ms": s.mean,
        "p50_ms": s.p50,
        "p90_ms": s.p90,
        "p99_ms": s.p99,
        "fps": float(s.count / total_s) if total_s > 0 else None,
        "stages_ms": {k: float(np.mean(v)) for k, v in stages_ms.items() if v},
    }


def evaluate(
    segmenter: Segmenter,
    dataset: SampleDataset,
    limit: int | None = None,
    progress: bool = True,
    batch_size: int = 1,
    warmup: bool = True,
    dataset_name: str | None = None,
    tracking: Any = "default",
) -> dict[str, Any]:
    """Score ``segmenter`` on the first ``limit`` (default all) samples of ``dataset``; one JSON-ready dict.

    Panoptic metrics are computed when the samples carry a panoptic annotation (otherwise the PQ keys are ``None``).
    Samples of video sequences (``Sample.sequence``) are also tracked, per sequence and in order, with
    ``tracking`` (a TrackerConfig; "default" = the node's defaults; None = per-frame ids only) and scored with the
    video metrics (STQ, AQ, VPQ, ID switches) in ``result['video']``: the tracker's and per-frame ids' (baseline).
    The progress bar goes to stderr so that stdout can carry the JSON result.
    """
    from tqdm import tqdm

    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if limit is not None and limit < 1:
        raise ValueError(f"limit must be >= 1, got {limit}")
    table = segmenter.class_table
    ds_table: ClassTable = dataset.class_table
    model_name = str(segmenter.backend.model_path)
    ds_name = dataset_name or ds_table.dataset
    check_dataset_classes(table, ds_table, model_name, ds_name)
    n = len(dataset) if limit is None else min(int(limit), len(dataset))
    if n == 0:
        raise ValueError(f"dataset '{ds_name}' has no images to evaluate")

    sem_metric = SemanticMetric(table.num_classes, ds_table.ignore_label)
    pan_metric = PanopticMetric(table)
    with_panoptic = 0
    tracker_cfg = TrackerConfig() if tracking == "default" else tracking
    video = {"tracking": VideoPanopticMetric(table), "per_frame_ids": VideoPanopticMetric(table)}
    tracker: PanopticTracker | None = None
    current_sequence: str | None = None
    video_frames = 0
    per_image_ms: list[float] = []
    stages_ms: dict[str, list[float]] = {s: [] for s in STAGES}
    total_s = 0.0

    bar = tqdm(total=n, desc=f"evaluate {ds_name}", unit="img", disable=not progress, file=sys.stderr)
    try:
        for start in range(0, n, batch_size):
            samples: list[Sample] = [dataset[i] for i in range(start, min(start + batch_size, n))]
            panoptic = all(s.panoptic is not None for s in samples)
            tasks = ("semantic", "panoptic") if panoptic else ("semantic",)
            images = [s.image for s in samples]
            if warmup and start == 0:
                segmenter.run(images[:1], tasks)
            results = segmenter.run(images, tasks)
            for sample, res in zip(samples, results, strict=True):
                share = 1.0 / max(1, res.batch_size)
                for stage in STAGES:
                    stages_ms[stage].append(res.timings.get(stage, 0.0) * 1000.0 * share)
                seconds = sum(res.timings.values()) * share
                per_image_ms.append(seconds * 1000.0)
                total_s += seconds
                out = res.output
                if out.semantic is None:  # pragma: no cover - the Segmenter always returns it when asked
                    raise RuntimeError("the segmenter returned no semantic map")
                sem_metric.update(out.semantic, sample.semantic)
                if panoptic and out.panoptic is not None and sample.panoptic is not None:
                    pan_metric.update(out.panoptic.id_map, out.panoptic.segments, sample.panoptic, sample.segments)
                    with_panoptic += 1
                    if sample.sequence is not None:
                        if sample.sequence != current_sequence:  # a new video: new tracks, new tubes
                            current_sequence = sample.sequence
                            tracker = PanopticTracker(tracker_cfg) if tracker_cfg is not None else None
                            for m in video.values():
                                m.new_sequence()
                        tracks = tracker.update(out.panoptic) if tracker is not None else {}
                        gt = [
                            {"id": g.id, "class_id": g.category_id, "track_id": g.track_id, "iscrowd": g.iscrowd}
                            for g in sample.segments
                        ]
                        pred = [
                            {"id": s.id, "class_id": s.class_id, "track_id": getattr(tracks.get(s.id), "track_id", 0)}
                            for s in out.panoptic.segments
                        ]
                        video["tracking"].update(out.panoptic.id_map, pred, sample.panoptic, gt)
                        per_frame = [{**d, "track_id": 0} for d in pred]
                        video["per_frame_ids"].update(out.panoptic.id_map, per_frame, sample.panoptic, gt)
                        video_frames += 1
            bar.update(len(samples))
    finally:
        bar.close()

    sem = sem_metric.compute()
    result: dict[str, Any] = {
        "model": model_name,
        "backend": segmenter.backend.info.to_dict(),
        "dataset": ds_name,
        "class_table": table.dataset,
        "num_images": n,
        "num_images_panoptic": with_panoptic,
        "batch_size": int(batch_size),
        "mIoU": sem["mIoU"],
        "pixel_accuracy": sem["pixel_accuracy"],
        "mean_accuracy": sem["mean_accuracy"],
        "per_class_iou": dict(zip(table.names, sem["per_class_iou"], strict=True)),
    }
    if with_panoptic:
        pan = pan_metric.compute()
        result.update({k: pan[k] for k in PANOPTIC_KEYS})
        result["panoptic_per_class"] = pan["per_class"]
        result["panoptic_counts"] = {k: pan[k] for k in ("TP", "FP", "FN")}
    else:
        result.update(dict.fromkeys(PANOPTIC_KEYS))
        result["panoptic_per_class"] = None
        result["panoptic_counts"] = None
    result["video"] = (
        {
            "tracking": video["tracking"].compute() if tracker_cfg is not None else None,
            "per_frame_ids": video["per_frame_ids"].compute(),
            "tracker": asdict(tracker_cfg) if tracker_cfg is not None else None,
        }
        if video_frames
        else None
    )
    result["timing"] = timing_summary(per_image_ms, total_s, stages_ms)
    return result


def _fmt(value: Any, width: int = 7) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-".rjust(width)
    return f"{float(value):{width}.2f}"


def format_table(result: dict[str, Any], class_table: ClassTable) -> str:
    """Readable text report of an :func:`evaluate` result: headline figures, per-class table, timing."""
    lines = [
        f"model    {result.get('model')}",
        f"dataset  {result.get('dataset')} ({result.get('num_images')} images)",
        "",
        f"mIoU {_fmt(result.get('mIoU')).strip()} %   pixel accuracy {_fmt(result.get('pixel_accuracy')).strip()} %",
    ]
    if result.get("PQ") is not None:
        lines.append(
            "PQ {} %  SQ {} %  RQ {} %   things PQ {}  stuff PQ {}".format(
                *(_fmt(result.get(k)).strip() for k in ("PQ", "SQ", "RQ", "PQ_th", "PQ_st"))
            )
        )
    else:
        lines.append("PQ -  (the dataset has no panoptic annotation)")
    lines.append("")
    iou = result.get("per_class_iou") or {}
    pan = result.get("panoptic_per_class") or {}
    width = max(len("class"), *(len(n) for n in class_table.names))
    header = f"{'class':<{width}}  kind   {'IoU':>7}"
    if pan:
        header += f"  {'PQ':>7}  {'SQ':>7}  {'RQ':>7}  {'TP':>5}  {'FP':>5}  {'FN':>5}"
    lines += [header, "-" * len(header)]
    for name, thing in zip(class_table.names, class_table.is_thing, strict=True):
        row = f"{name:<{width}}  {'thing' if thing else 'stuff'}  {_fmt(iou.get(name))}"
        if pan:
            p = pan.get(name) or {}
            row += f"  {_fmt(p.get('PQ'))}  {_fmt(p.get('SQ'))}  {_fmt(p.get('RQ'))}"
            row += f"  {p.get('TP', 0):5d}  {p.get('FP', 0):5d}  {p.get('FN', 0):5d}"
        lines.append(row)
    lines.append("(- = class absent from both ground truth and prediction, left out of the mean)")
    video = result.get("video") or {}
    if video:
        lines += ["", "video metrics (sequences)        tracker   per-frame ids"]
        on, off = video.get("tracking") or {}, video.get("per_frame_ids") or {}
        for label, key in (("STQ", "STQ"), ("AQ", "AQ"), ("SQ", "SQ"), ("VPQ", "VPQ")):
            lines.append(f"  {label:<30} {_fmt(on.get(key))}   {_fmt(off.get(key))}")
        lines.append(f"  {'ID switches':<30} {on.get('id_switches', '-')!s:>7}   {off.get('id_switches', '-')!s:>7}")
        lines.append(f"  {'mostly tracked %':<30} {_fmt(on.get('mostly_tracked'))}   {_fmt(off.get('mostly_tracked'))}")
    t = result.get("timing") or {}
    if t.get("mean_ms") is not None:
        lines += [
            "",
            "time per image (pre-process + network + post-process): mean {} ms, p50 {} ms, p90 {} ms, p99 {} ms, "
            "{} FPS".format(*(_fmt(t.get(k)).strip() for k in ("mean_ms", "p50_ms", "p90_ms", "p99_ms", "fps"))),
        ]
        stages = t.get("stages_ms") or {}
        if stages:
            lines.append("  by stage: " + ", ".join(f"{k} {v:.2f} ms" for k, v in stages.items()))
    return "\n".join(lines)
