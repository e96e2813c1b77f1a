"""Dataset-level segmentation metrics: mIoU (semantic) and PQ / SQ / RQ (panoptic).

These two classes are the only place numbers such as "mIoU 71.3" come from: ``bisenetformer evaluate``, the trainer's
validation, ``bag evaluate`` and the demo all accumulate through them, so a model scores the same wherever it is
scored. Both accumulate sufficient statistics per image (a confusion matrix; per-class TP/FP/FN and IoU sums) and
only divide in :meth:`compute`, so results over many images are exact dataset-level figures (not means of per-image
scores), and two partial accumulators (e.g. of DDP ranks) combine exactly with ``merge``.

Semantic (cityscapesScripts ``evalPixelLevelSemanticLabeling``):

* pixels whose ground truth is ``ignore_label`` (or any value outside ``0..K-1``) are not counted at all;
* a prediction outside ``0..K-1`` on a counted pixel is wrong for that pixel's class (a false negative) and is a
  false positive of no class;
* ``IoU_c = TP_c / (TP_c + FP_c + FN_c)``; a class with ``TP + FP + FN == 0`` (no ground-truth pixel and no predicted
  pixel on a counted pixel) has no IoU (``None`` in ``per_class_iou``) and is left out of the mean;
  ``mIoU`` is the mean over the remaining classes. This equals cityscapesScripts' "NaN then nanmean" rule;
* ``pixel_accuracy = sum_c TP_c / counted pixels``; ``mean_accuracy`` = mean over classes with ground truth of
  ``TP_c / GT_c``.

Panoptic (panopticapi ``pq_compute_single_core`` / ``pq_average``):

* a ground-truth segment and a predicted segment of the same category match when
  ``IoU = |P n G| / (|P| + |G| - |P n G| - |P n void|) > 0.5``; void = ground-truth pixels with id 0 (or an id
  without a segment, or a segment whose category is not in the class table, e.g. the ignore label). Matches are
  unique because IoU > 0.5;
* crowd ground-truth segments are never matched and never false negatives; an unmatched prediction whose area lies
  more than 50 % in void plus the crowd regions of its own category is not a false positive. (panopticapi keeps only
  one crowd segment per category -- whichever its dict yields last; here all crowd segments of the category count,
  which is the documented intent and identical whenever there is at most one, as in COCO / Cityscapes);
* predicted pixels with id 0 or an id without a segment are void predictions: in nobody's area;
* ``SQ_c = IoU sum / TP``, ``RQ_c = TP / (TP + FP/2 + FN/2)``, ``PQ_c = SQ_c RQ_c``; averages (all, things,
  stuff) are over the classes with ``TP + FP + FN > 0`` only; a group with no such class reports 0.0 like
  panopticapi, and ``n`` says how many classes were averaged.

Segment areas are always measured on the maps given (panopticapi does the same for predictions).
All figures are in percent.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from bisenetformer_ros.data.classes import IGNORE_LABEL, ClassTable


# --------------------------------------------------------------------------------------------------------- semantic
class SemanticMetric:
    """Confusion-matrix accumulator for mIoU / pixel accuracy over any number of images.

    ``confusion[g, p]`` (int64, ``K x (K+1)``) counts counted pixels with ground truth ``g`` predicted as ``p``; the
    last column collects predictions outside the class table (always wrong).
    """

    def __init__(self, num_classes: int, ignore_label: int = IGNORE_LABEL) -> None:
        if num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes}")
        self.num_classes = int(num_classes)
        self.ignore_label = int(ignore_label)
        self._cm = np.zeros((self.num_classes, self.num_classes + 1), dtype=np.int64)
        self.num_images = 0

    @property
    def confusion(self) -> np.ndarray:
        """``K x K`` confusion matrix (rows ground truth, columns prediction) over in-table predictions."""
        return self._cm[:, : self.num_classes].copy()

    def reset(self) -> None:
        self._cm[:] = 0
        self.num_images = 0

    def update(self, pred: np.ndarray, gt: np.ndarray) -> None:
        """Add one image: ``pred`` and ``gt`` are HxW integer class-id maps of the same size."""
        pred = np.asarray(pred)
        gt = np.asarray(gt)
        if pred.shape != gt.shape:
            raise ValueError(f"prediction {pred.shape} and ground truth {gt.shape} differ in shape")
        k = self.num_classes
        g = gt.reshape(-1).astype(np.int64)
        valid = (g >= 0) & (g < k)  # the ignore label and anything else outside the table is not counted
        g = g[valid]
        p = pred.reshape(-1)[valid].astype(np.int64)
        p = np.where((p >= 0) & (p < k), p, k)
        self._cm += np.bincount(g * (k + 1) + p, minlength=k * (k + 1)).reshape(k, k + 1)
        self.num_images += 1

    def merge(self, other: SemanticMetric) -> SemanticMetric:
        """Add another accumulator's counts into this one (same label space) and return ``self``."""
        if other.num_classes != self.num_classes or other.ignore_label != self.ignore_label:
            raise ValueError(
                f"cannot merge a {other.num_classes}-class metric (ignore {other.ignore_label}) into a "
                f"{self.num_classes}-class one (ignore {self.ignore_label})"
            )
        self._cm += other._cm
        self.num_images += other.num_images
        return self

    def iou(self) -> np.ndarray:
        """Per-class IoU in [0, 1]; NaN for classes with neither ground truth nor prediction."""
        k = self.num_classes
        tp = np.diag(self._cm[:, :k]).astype(np.float64)
        gt_count = self._cm.sum(1).astype(np.float64)  # TP + FN (FN includes out-of-table predictions)
        pred_count = self._cm[:, :k].sum(0).astype(np.float64)  # TP + FP
        denom = gt_count + pred_count - tp
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(denom > 0, tp / np.where(denom > 0, denom, 1.0), np.nan)

    def compute(self) -> dict[str, Any]:
        """JSON-ready results (percent); ``None`` where a figure is undefined (no counted pixel / absent class)."""
        k = self.num_classes
        iou = self.iou()
        present = ~np.isnan(iou)
        tp = np.diag(self._cm[:, :k]).astype(np.float64)
        gt_count = self._cm.sum(1).astype(np.float64)
        total = float(gt_count.sum())
        has_gt = gt_count > 0
        return {
            "mIoU": float(iou[present].mean() * 100.0) if present.any() else None,
            "per_class_iou": [float(v * 100.0) if ok else None for v, ok in zip(iou, present, strict=True)],
            "pixel_accuracy": float(tp.sum() / total * 100.0) if total > 0 else None,
            "mean_accuracy": float((tp[has_gt] / gt_count[has_gt]).mean() * 100.0) if has_gt.any() else None,
            "num_classes_present": int(present.sum()),
            "num_pixels": int(total),
            "num_images": int(self.num_images),
        }


def image_miou(pred: np.ndarray, gt: np.ndarray, num_classes: int, ignore_label: int = IGNORE_LABEL) -> float | None:
    """mIoU (percent) of one image under exactly the rules of :class:`SemanticMetric`, or ``None`` when it has no
    counted pixel. For ranking and labelling single frames (the bag report's worst frames); headline figures are
    dataset-level and come from accumulating all images in one :class:`SemanticMetric`."""
    metric = SemanticMetric(num_classes, ignore_label)
    metric.update(pred, gt)
    return metric.compute()["mIoU"]


# --------------------------------------------------------------------------------------------------------- panoptic
def _field(seg: Any, *names: str, default: Any = None) -> Any:
    """First of ``names`` found on a segment given as a mapping or an object (SegmentInfo, Segment, records)."""
    for n in names:
        if isinstance(seg, Mapping):
            if n in seg:
                return seg[n]
        elif hasattr(seg, n):
            return getattr(seg, n)
    return default


def _segment_table(segments: Iterable[Any], num_classes: int) -> dict[int, tuple[int, bool]]:
    """``{segment id: (category, iscrowd)}`` for segments whose category is in the table (others count as void)."""
    table: dict[int, tuple[int, bool]] = {}
    for s in segments:
        sid = _field(s, "id")
        cat = _field(s, "category_id", "class_id")
        if sid is None or cat is None:
            raise ValueError(f"panoptic segment {s!r} needs an 'id' and a 'category_id' (or 'class_id')")
        sid, cat = int(sid), int(cat)
        if sid == 0 or not 0 <= cat < num_classes:
            continue
        table[sid] = (cat, bool(_field(s, "iscrowd", default=False)))
    return table


class PanopticMetric:
    """Per-class TP / FP / FN / IoU-sum accumulator for PQ, SQ, RQ (panopticapi definitions, see module docstring)."""

    def __init__(self, class_table: ClassTable) -> None:
        self.class_table = class_table
        k = class_table.num_classes
        self.iou_sum = np.zeros(k, dtype=np.float64)
        self.tp = np.zeros(k, dtype=np.int64)
        self.fp = np.zeros(k, dtype=np.int64)
        self.fn = np.zeros(k, dtype=np.int64)
        self.num_images = 0

    def reset(self) -> None:
        for a in (self.iou_sum, self.tp, self.fp, self.fn):
            a[:] = 0
        self.num_images = 0

    def update(
        self,
        pred_ids: np.ndarray,
        pred_segments: Sequence[Any],
        gt_ids: np.ndarray,
        gt_segments: Sequence[Any],
    ) -> None:
        """Add one image: HxW segment-id maps (0 = void) and their segment tables.

        Segments are mappings or objects with ``id`` and ``category_id`` (or ``class_id``) and optionally ``iscrowd``;
        thing/stuff flags and areas given with them are not needed (the class table and the maps are authoritative).
        """
        pred_ids = np.asarray(pred_ids)
        gt_ids = np.asarray(gt_ids)
        if pred_ids.shape != gt_ids.shape:
            raise ValueError(f"panoptic prediction {pred_ids.shape} and ground truth {gt_ids.shape} differ in shape")
        k = self.class_table.num_classes
        gt_table = _segment_table(gt_segments, k)
        pred_table = _segment_table(pred_segments, k)

        # Compact both id spaces: row/column 0 is void, then one per segment present in the map.
        g_u, g_inv = np.unique(gt_ids.reshape(-1).astype(np.int64), return_inverse=True)
        p_u, p_inv = np.unique(pred_ids.reshape(-1).astype(np.int64), return_inverse=True)
        g_idx = np.array([i + 1 if int(v) in gt_table else 0 for i, v in enumerate(g_u)], dtype=np.int64)
        p_idx = np.array([i + 1 if int(v) in pred_table else 0 for i, v in enumerate(p_u)], dtype=np.int64)
        ng, npr = len(g_u) + 1, len(p_u) + 1
        joint = np.bincount(g_idx[g_inv.reshape(-1)] * npr + p_idx[p_inv.reshape(-1)], minlength=ng * npr).reshape(
            ng, npr
        )
        g_area = joint.sum(1)
        p_area = joint.sum(0)
        g_cat = np.array([-1] + [gt_table.get(int(v), (-1, False))[0] for v in g_u], dtype=np.int64)
        g_crowd = np.array([False] + [gt_table.get(int(v), (-1, False))[1] for v in g_u], dtype=bool)
        p_cat = np.array([-1] + [pred_table.get(int(v), (-1, False))[0] for v in p_u], dtype=np.int64)
        g_real = (g_area > 0) & (g_cat >= 0)
        p_real = (p_area > 0) & (p_cat >= 0)
        g_real[0] = p_real[0] = False

        # Matching: same category, not crowd, IoU > 0.5 (the void row is subtracted from the union).
        g_matched = np.zeros(ng, dtype=bool)
        p_matched = np.zeros(npr, dtype=bool)
        gi, pi = np.nonzero(joint)
        for g, p in zip(gi.tolist(), pi.tolist(), strict=True):
            if not (g_real[g] and p_real[p]) or g_crowd[g] or g_cat[g] != p_cat[p]:
                continue
            inter = float(joint[g, p])
            union = float(p_area[p] + g_area[g] - joint[g, p] - joint[0, p])
            iou = inter / union
            if iou > 0.5:
                c = int(g_cat[g])
                self.tp[c] += 1
                self.iou_sum[c] += iou
                g_matched[g] = p_matched[p] = True

        # False negatives: unmatched non-crowd ground truth; remember crowd rows per category for the FP rule.
        crowd_rows: dict[int, list[int]] = {}
        for g in np.nonzero(g_real)[0].tolist():
            if g_crowd[g]:
                crowd_rows.setdefault(int(g_cat[g]), []).append(g)
            elif not g_matched[g]:
                self.fn[int(g_cat[g])] += 1

        # False positives: unmatched predictions not mostly (> 50 %) in void or same-class crowd.
        for p in np.nonzero(p_real)[0].tolist():
            if p_matched[p]:
                continue
            c = int(p_cat[p])
            ignored = int(joint[0, p]) + sum(int(joint[g, p]) for g in crowd_rows.get(c, []))
            if ignored / float(p_area[p]) > 0.5:
                continue
            self.fp[c] += 1
        self.num_images += 1

    def merge(self, other: PanopticMetric) -> PanopticMetric:
        """Add another accumulator's statistics into this one (same class table) and return ``self``."""
        diffs = self.class_table.differences(other.class_table)
        if diffs:
            raise ValueError(f"cannot merge panoptic metrics of different class tables: {'; '.join(diffs[:5])}")
        self.iou_sum += other.iou_sum
        self.tp += other.tp
        self.fp += other.fp
        self.fn += other.fn
        self.num_images += other.num_images
        return self

    def per_class(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(PQ, SQ, RQ) per class in [0, 1] and the mask of classes with ``TP + FP + FN > 0``."""
        tp = self.tp.astype(np.float64)
        denom = tp + 0.5 * self.fp + 0.5 * self.fn
        counted = (self.tp + self.fp + self.fn) > 0
        sq = np.where(tp > 0, self.iou_sum / np.where(tp > 0, tp, 1.0), 0.0)
        rq = np.where(denom > 0, tp / np.where(denom > 0, denom, 1.0), 0.0)
        return sq * rq, sq, rq, counted

    def compute(self) -> dict[str, Any]:
        """JSON-ready results (percent): PQ/SQ/RQ over all classes, things (``_th``) and stuff (``_st``)."""
        pq, sq, rq, counted = self.per_class()
        thing = np.asarray(self.class_table.is_thing, dtype=bool)
        out: dict[str, Any] = {}
        for suffix, group in (("", np.ones_like(thing)), ("_th", thing), ("_st", ~thing)):
            sel = group & counted
            n = int(sel.sum())
            for name, values in (("PQ", pq), ("SQ", sq), ("RQ", rq)):
                out[f"{name}{suffix}"] = float(values[sel].mean() * 100.0) if n else 0.0
            out[f"n{suffix}"] = n
        out["per_class"] = {
            name: {
                "PQ": float(pq[c] * 100.0) if counted[c] else None,
                "SQ": float(sq[c] * 100.0) if counted[c] else None,
                "RQ": float(rq[c] * 100.0) if counted[c] else None,
                "TP": int(self.tp[c]),
                "FP": int(self.fp[c]),
                "FN": int(self.fn[c]),
            }
            for c, name in enumerate(self.class_table.names)
        }
        out["TP"] = int(self.tp.sum())
        out["FP"] = int(self.fp.sum())
        out["FN"] = int(self.fn.sum())
        out["num_images"] = int(self.num_images)
        return out
