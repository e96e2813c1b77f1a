"""Scoring a stream of frames (prediction, ground truth, timings) into the numbers and images of a report.

Both ways of producing predictions end here: ``bag evaluate`` (the model run offline over a bag) and the demo (the
node's outputs recorded from DDS). The dataset-level numbers come from the same metric classes that
``bisenetformer evaluate`` uses, so a bag and the same frames exported as images score identically. Every frame is
accounted for: scored, or skipped with a counted reason — never silently dropped.
"""

from __future__ import annotations

import heapq
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from bisenetformer_ros.bags.msgconv import SegmentRecord
from bisenetformer_ros.bags.report import FrameThumb, headline, thumbnail, write_report
from bisenetformer_ros.data.classes import ClassTable
from bisenetformer_ros.data.sample import semantic_from_ids
from bisenetformer_ros.evaluation.latency import latency_summary

# Skip reasons (keys of report["frames"]["skipped"]).
SKIP_IMAGE = "image could not be decoded"
SKIP_NO_GT = "no ground truth with this stamp"
SKIP_GT_BAD = "ground truth could not be decoded"
SKIP_GT_SIZE = "ground truth size differs from image"
SKIP_NO_PRED = "no prediction for this frame"
SKIP_PRED_SIZE = "prediction size differs from image"
SKIP_INFER = "inference failed"


@dataclass
class FrameEval:
    """Everything known about one input frame. ``skip`` names why it cannot be scored (None = score it)."""

    index: int
    stamp: int
    image: np.ndarray | None = None  # HxWx3 RGB, for thumbnails
    pred_semantic: np.ndarray | None = None
    pred_panoptic: tuple[np.ndarray, list[SegmentRecord]] | None = None
    gt_semantic: np.ndarray | None = None
    gt_panoptic: tuple[np.ndarray, list[SegmentRecord]] | None = None
    timings_ms: dict[str, float] = field(default_factory=dict)
    overlay: np.ndarray | None = None
    track_color: np.ndarray | None = None  # panoptic colours by track id (tracking on), for the report's strip
    skip: str | None = None
    detail: str = ""


def semantic_from_panoptic(ids: np.ndarray, segments: Sequence[SegmentRecord], ignore_label: int) -> np.ndarray:
    """Class-id image of a panoptic ground truth (void -> ignore), the semantic GT used with a panoptic GT."""
    return semantic_from_ids(ids, {s.id: s.class_id for s in segments}, ignore_label)


def _segments_for_metric(segments: Sequence[SegmentRecord]) -> list[dict[str, Any]]:
    """Segment tables in the form the panoptic metric takes (dicts with id / class_id / is_thing / area)."""
    return [
        {
            "id": s.id,
            "category_id": s.class_id,
            "class_id": s.class_id,
            "is_thing": s.is_thing,
            "area": s.area,
            "iscrowd": 0,
            "track_id": s.track_id,
        }
        for s in segments
    ]


class Scorer:
    """Accumulates metrics, latency series and report thumbnails over frames, in a bounded amount of memory.

    ``total_hint`` (frame count, when known up front) spreads the overlay grid over the whole bag; the worst frames
    are kept in a small heap.
    """

    def __init__(
        self,
        class_table: ClassTable,
        *,
        semantic_gt: bool,
        panoptic_gt: bool,
        total_hint: int | None = None,
        grid_frames: int = 8,
        worst_frames: int = 4,
        thumb_width: int = 240,
    ) -> None:
        from bisenetformer_ros.evaluation.metrics import PanopticMetric, SemanticMetric
        from bisenetformer_ros.evaluation.video import VideoPanopticMetric

        self.table = class_table
        self.semantic_gt = semantic_gt or panoptic_gt
        self.panoptic_gt = panoptic_gt
        self.sem_metric = (
            SemanticMetric(class_table.num_classes, class_table.ignore_label) if self.semantic_gt else None
        )
        self.pan_metric = PanopticMetric(class_table) if panoptic_gt else None
        # Video metrics of the predicted track ids and, as the baseline, of per-frame ids (track ids dropped).
        self.video: dict[str, VideoPanopticMetric] = (
            {"tracking": VideoPanopticMetric(class_table), "per_frame_ids": VideoPanopticMetric(class_table)}
            if panoptic_gt
            else {}
        )
        self.tracker_settings: dict[str, Any] | None = None  # the tracker's config (None = tracking off)
        self.total = 0
        self.scored = 0
        self.skipped: Counter[str] = Counter()
        self.skip_examples: dict[str, str] = {}
        self.stages: dict[str, list[float]] = {}
        self.total_ms: list[float] = []
        self.frames: list[dict[str, Any]] = []
        self.thumb_width = thumb_width
        n = max(1, total_hint or grid_frames)
        self.grid_at = set(np.linspace(0, n - 1, min(grid_frames, n)).round().astype(int).tolist())
        self.grid: list[FrameThumb] = []
        self.track_strip: list[FrameThumb] = []
        self.worst_n = worst_frames
        self._worst: list[tuple[float, int, FrameThumb]] = []

    # -- per frame -----------------------------------------------------------------------------------------------
    def add(self, f: FrameEval) -> None:
        self.total += 1
        if f.timings_ms:
            for k in f.timings_ms:
                self.stages.setdefault(k, [])
            for k in self.stages:
                self.stages[k].append(float(f.timings_ms.get(k, 0.0)))
            self.total_ms.append(float(sum(f.timings_ms.values())))
        skip = f.skip or self._check(f)
        score = None
        if skip is None and self.semantic_gt:
            gt_sem = f.gt_semantic
            if gt_sem is None and f.gt_panoptic is not None:
                gt_sem = semantic_from_panoptic(f.gt_panoptic[0], f.gt_panoptic[1], self.table.ignore_label)
            if self.sem_metric is not None and f.pred_semantic is not None and gt_sem is not None:
                from bisenetformer_ros.evaluation.metrics import image_miou

                self.sem_metric.update(f.pred_semantic, gt_sem)
                score = image_miou(f.pred_semantic, gt_sem, self.table.num_classes, self.table.ignore_label)
            if self.pan_metric is not None and f.pred_panoptic is not None and f.gt_panoptic is not None:
                pred_segs = _segments_for_metric(f.pred_panoptic[1])
                gt_segs = _segments_for_metric(f.gt_panoptic[1])
                self.pan_metric.update(f.pred_panoptic[0], pred_segs, f.gt_panoptic[0], gt_segs)
                self.video["tracking"].update(f.pred_panoptic[0], pred_segs, f.gt_panoptic[0], gt_segs)
                per_frame = [{**s, "track_id": 0} for s in pred_segs]
                self.video["per_frame_ids"].update(f.pred_panoptic[0], per_frame, f.gt_panoptic[0], gt_segs)
            self.scored += 1
            f.gt_semantic = gt_sem
        elif skip is not None:
            self.skipped[skip] += 1
            self.skip_examples.setdefault(
                skip, f"frame {f.index} (stamp {f.stamp}){': ' + f.detail if f.detail else ''}"
            )
        self.frames.append(
            {
                "index": f.index,
                "stamp": f.stamp,
                "status": "scored" if skip is None and self.semantic_gt else ("skipped" if skip else "unscored"),
                "skip_reason": skip,
                "miou": score,
                "latency_ms": self.total_ms[-1] if f.timings_ms else None,
            }
        )
        self._keep_thumbs(f, score, skip)

    def _check(self, f: FrameEval) -> str | None:
        """Why a frame with a prediction cannot be scored (size mismatches), or None."""
        if not self.semantic_gt:
            return None
        if f.pred_semantic is None and f.pred_panoptic is None:
            return SKIP_NO_PRED
        gt = f.gt_semantic if f.gt_semantic is not None else (f.gt_panoptic[0] if f.gt_panoptic else None)
        if gt is None:
            return SKIP_NO_GT
        if self.panoptic_gt and f.gt_panoptic is None:
            return SKIP_NO_GT
        if f.image is not None and gt.shape[:2] != f.image.shape[:2]:
            f.detail = f"ground truth {gt.shape[1]}x{gt.shape[0]}, image {f.image.shape[1]}x{f.image.shape[0]}"
            return SKIP_GT_SIZE
        pred = f.pred_semantic if f.pred_semantic is not None else f.pred_panoptic[0]  # type: ignore[index]
        if pred.shape[:2] != gt.shape[:2]:
            f.detail = f"prediction {pred.shape[1]}x{pred.shape[0]}, ground truth {gt.shape[1]}x{gt.shape[0]}"
            return SKIP_PRED_SIZE
        if self.panoptic_gt and f.pred_panoptic is None:
            return SKIP_NO_PRED
        return None

    def _panels(self, f: FrameEval) -> list[tuple[str, np.ndarray]]:
        w = self.thumb_width
        panels: list[tuple[str, np.ndarray]] = []
        if f.image is not None:
            panels.append(("input", thumbnail(f.image, w)))
        if f.overlay is not None:
            panels.append(("overlay", thumbnail(f.overlay, w)))
        elif f.pred_semantic is not None and f.image is not None and f.pred_semantic.shape == f.image.shape[:2]:
            blend = (0.5 * f.image + 0.5 * self.table.colorize(f.pred_semantic)).astype(np.uint8)
            panels.append(("overlay", thumbnail(blend, w)))
        if f.pred_semantic is not None:
            panels.append(("prediction", thumbnail(self.table.colorize(f.pred_semantic), w)))
        if f.gt_semantic is not None:
            panels.append(("ground truth", thumbnail(self.table.colorize(f.gt_semantic), w)))
        return panels

    def _keep_thumbs(self, f: FrameEval, score: float | None, skip: str | None) -> None:
        position = self.total - 1
        if position in self.grid_at and f.track_color is not None:
            panels = [("input", thumbnail(f.image, self.thumb_width))] if f.image is not None else []
            panels.append(("coloured by track", thumbnail(f.track_color, self.thumb_width)))
            self.track_strip.append(FrameThumb(f.index, f.stamp, score, panels))
        if position in self.grid_at:
            panels = self._panels(f)
            if panels:
                self.grid.append(FrameThumb(f.index, f.stamp, score, panels, note=f"(skipped: {skip})" if skip else ""))
        if score is not None and self.worst_n > 0 and (len(self._worst) < self.worst_n or -score > self._worst[0][0]):
            panels = self._panels(f)
            if f.pred_semantic is not None and f.gt_semantic is not None:
                wrong = (f.pred_semantic != f.gt_semantic) & (f.gt_semantic != self.table.ignore_label)
                err = np.zeros((*wrong.shape, 3), np.uint8)
                err[wrong] = (230, 40, 40)
                err[f.gt_semantic == self.table.ignore_label] = (90, 90, 90)
                panels.append(("errors (red)", thumbnail(err, self.thumb_width)))
            item = (-score, f.index, FrameThumb(f.index, f.stamp, score, panels))
            if len(self._worst) < self.worst_n:
                heapq.heappush(self._worst, item)
            else:
                heapq.heapreplace(self._worst, item)

    # -- results -------------------------------------------------------------------------------------------------
    @property
    def worst(self) -> list[FrameThumb]:
        return [t for _, _, t in sorted(self._worst, key=lambda x: -x[0])]

    def frames_summary(self) -> dict[str, Any]:
        return {
            "total": self.total,
            "scored": self.scored,
            "skipped": dict(self.skipped),
            "skip_examples": dict(self.skip_examples),
            "without_gt": 0 if self.semantic_gt else self.total,
        }

    def metrics(self) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
        sem = self.sem_metric.compute() if self.sem_metric is not None and self.scored else None
        pan = self.pan_metric.compute() if self.pan_metric is not None and self.scored else None
        return sem, pan

    def video_metrics(self) -> dict[str, Any] | None:
        """STQ / VPQ / ID switches of the tracker and of per-frame ids (None without panoptic ground truth).

        ``tracking`` is None when tracking was off (its figures would equal the baseline's)."""
        if not self.video or not self.scored:
            return None
        return {
            "tracking": self.video["tracking"].compute() if self.tracker_settings is not None else None,
            "per_frame_ids": self.video["per_frame_ids"].compute(),
            "tracker": self.tracker_settings,
        }

    def latency(self, wall_time: float | None = None, frames_processed: int | None = None) -> dict[str, Any]:
        out: dict[str, Any] = {
            "stages": {k: latency_summary(v) for k, v in self.stages.items()},
            "total": latency_summary(self.total_ms),
        }
        n = frames_processed if frames_processed is not None else len(self.total_ms)
        if wall_time and wall_time > 0 and n:
            out["fps"] = n / wall_time
            out["wall_time_s"] = wall_time
        return out

    def build_report(
        self,
        *,
        title: str,
        kind: str,
        source: dict[str, Any],
        warnings: list[str],
        latency: dict[str, Any],
        latency_note: str | None = None,
        out_dir: str | Path | None = None,
    ) -> dict[str, Any]:
        """The report dict of both scoring paths (offline ``bag evaluate`` and recorded node outputs): skipped-frame
        warnings, metrics, per-frame rows and the headline; written as JSON + HTML to ``out_dir`` when given."""
        from bisenetformer_ros import __version__

        warnings = list(warnings)
        for reason, n in self.skipped.items():
            warnings.append(f"{n} frame(s) skipped: {reason} (first: {self.skip_examples.get(reason, '')})")
        sem, pan = self.metrics()
        report: dict[str, Any] = {
            "title": title,
            "kind": kind,
            "version": __version__,
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "source": source,
            "class_names": list(self.table.names),
            "frames": self.frames_summary(),
            "warnings": warnings,
            "semantic": sem,
            "panoptic": pan,
            "video": self.video_metrics(),
            "latency": latency,
            "per_frame": self.frames,
        }
        if latency_note:
            report["latency"]["note"] = latency_note
        if out_dir:
            Path(out_dir).mkdir(parents=True, exist_ok=True)
            write_report(
                report,
                out_dir,
                class_table=self.table,
                latency_series=self.stages,
                total_latency_ms=self.total_ms,
                grid=self.grid,
                worst=self.worst,
                track_strip=self.track_strip,
            )
        report["headline"] = headline(report)
        return report
