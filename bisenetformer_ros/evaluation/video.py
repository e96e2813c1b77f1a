"""Video panoptic metrics: STQ (with AQ and SQ), VPQ over k-frame windows, ID switches and mostly-tracked tracks.

The per-frame metrics (mIoU, PQ) cannot see identities: a tracker that gives an object a new id in every frame
scores the same PQ as one that follows it for ever. These metrics score the identities too. Implemented from the
papers' definitions (and the conventions of their reference evaluation code, noted where a choice is made):

**Input.** Frames in time order, grouped into sequences (:meth:`VideoPanopticMetric.new_sequence` ends one). Each
frame: a segment-id map and segment table for prediction and ground truth, as for :class:`PanopticMetric`; a
segment's identity over time is its ``track_id`` (0 = none). A *tube* is the set of pixels of one identity over the
frames of a sequence: a stuff class is one tube (its class is its identity); a thing segment with ``track_id`` t of
class c belongs to tube (c, t) (the class is part of the identity, as in the benchmarks' ``class * divisor + id``
encoding); a thing segment with track id 0 is a tube of its own frame only (the "per-frame ids" baseline).
Ground-truth pixels with id 0, an unknown id or a crowd segment are void and count nowhere, as in PQ.

**STQ** (Weber et al., "STEP: Segmenting and Tracking Every Pixel", NeurIPS 2021 datasets track):
``STQ = sqrt(AQ * SQ)``.

* ``SQ``: the mIoU of the class labels over all frames (the dataset-level mIoU of :class:`SemanticMetric`).
* ``AQ = 1/|G| * sum_g 1/|g| * sum_{p, |p n g| > 0} TPA(p, g) * IoU_id(p, g)`` over the ground-truth thing tubes g
  with an identity, summed over sequences and divided by the total number of such tubes; ``TPA = |p n g|``,
  ``IoU_id = TPA / (TPA + FPA + FNA) = |p n g| / |p u g|``, pixel counts over the whole sequence, p the predicted
  thing tubes. Predicted thing pixels on void ground truth are not counted (as deeplab2's STQ drops void pixels).
  A ground-truth thing segment without a track id has no identity to score: it is left out of AQ (deeplab2 treats
  thing pixels without an instance id as crowd the same way); its pixels still count for SQ.

**VPQ** (Kim et al., "Video Panoptic Segmentation", CVPR 2020): for a window size k, every run of k consecutive
frames of a sequence (stride 1) is one spatio-temporal image: tubes are matched by class with IoU > 0.5 over the
k frames' pixels (void ground truth out of the union, as in PQ), TP/FP/FN/IoU sums are accumulated per class over
all windows, ``VPQ^k`` is the mean of the classes' PQ (classes with TP + FP + FN > 0), and ``VPQ`` is the mean of
``VPQ^k`` over the window sizes (the paper uses k in {1, 5, 10, 15} frames; a sequence shorter than k gives no
window of that size, and a size with no window at all is reported as None and left out of the mean). ``VPQ^1``
equals PQ.

**ID switches and mostly tracked** (CLEAR MOT, Bernardin & Stiefelhagen 2008; MT as in Li et al. 2009): in every
frame each ground-truth track is matched to the predicted segment of its class with mask IoU > 0.5 (unique, as in
PQ); an ID switch is a match to another predicted identity than the track's previous match; a track is mostly
tracked when it is matched in at least 80 % of the frames it is visible in, mostly lost below 20 %.

Memory: per sequence the tube tables and intersections (sparse, pairs that touch), plus the per-frame tables of the
last ``max(k)`` frames; nothing grows with the image size or with frames beyond the sequence's tubes.
All figures in percent except the counts.
"""

from __future__ import annotations

from collections import Counter, deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from bisenetformer_ros.data.classes import ClassTable
from bisenetformer_ros.evaluation.metrics import SemanticMetric

#: Window sizes of VPQ (the paper's).
DEFAULT_WINDOWS: tuple[int, ...] = (1, 5, 10, 15)
#: A ground-truth track is mostly tracked when matched in at least this share of its visible frames.
MOSTLY_TRACKED = 0.8
MOSTLY_LOST = 0.2


def _field(seg: Any, name: str, default: Any = None) -> Any:
    if isinstance(seg, Mapping):
        return seg.get(name, default)
    return getattr(seg, name, default)


@dataclass
class _FrameStats:
    """Sparse pixel counts of one frame, keyed by tube: what VPQ windows sum up."""

    gt_area: Counter = field(default_factory=Counter)  # gt tube -> pixels
    pred_area: Counter = field(default_factory=Counter)  # pred tube -> pixels (void ground truth included)
    pred_void: Counter = field(default_factory=Counter)  # pred tube -> pixels on void ground truth
    inter: Counter = field(default_factory=Counter)  # (gt tube, pred tube) -> pixels


@dataclass
class _TrackRecord:
    """One ground-truth track's CLEAR-MOT bookkeeping."""

    visible: int = 0
    matched: int = 0
    last_pred: Any = None


class VideoPanopticMetric:
    """Accumulates STQ, VPQ^k, ID switches and mostly-tracked over frames and sequences (see the module docstring).

    Tubes are keys with the class second: ``('stuff', class)``, ``('thing', class, track id)`` or
    ``('frame', class, frame number, segment id)`` (a thing without a track id: a tube of one frame).
    """

    def __init__(
        self,
        class_table: ClassTable,
        window_sizes: Sequence[int] = DEFAULT_WINDOWS,
        *,
        mostly_tracked: float = MOSTLY_TRACKED,
        mostly_lost: float = MOSTLY_LOST,
    ) -> None:
        ws = sorted({int(k) for k in window_sizes})
        if not ws or ws[0] < 1:
            raise ValueError(f"VPQ window sizes must be >= 1, got {list(window_sizes)}")
        self.table = class_table
        self.windows = tuple(ws)
        self.mostly_tracked = float(mostly_tracked)
        self.mostly_lost = float(mostly_lost)
        k = class_table.num_classes
        self.semantic = SemanticMetric(k, class_table.ignore_label)
        self._is_thing = np.asarray(class_table.is_thing, dtype=bool)
        self._vpq = {w: {n: np.zeros(k, dtype=np.float64) for n in ("tp", "fp", "fn", "iou")} for w in ws}
        self._vpq_windows = dict.fromkeys(ws, 0)
        self.aq_sum = 0.0
        self.aq_tubes = 0
        self.id_switches = 0
        self.frames = 0
        self.sequences = 0
        self._tracks_done: list[_TrackRecord] = []
        self._pred_tracks: set[Any] = set()
        self._start_sequence()

    # -- sequences -----------------------------------------------------------------------------------------------
    def _start_sequence(self) -> None:
        self._frame_in_seq = 0
        self._recent: deque[_FrameStats] = deque(maxlen=max(self.windows))
        self._seq_gt_area: Counter = Counter()  # gt thing tube -> pixels (AQ)
        self._seq_pred_area: Counter = Counter()  # pred thing tube -> pixels on non-void gt (AQ)
        self._seq_inter: Counter = Counter()  # (gt thing tube, pred thing tube) -> pixels (AQ)
        self._tracks: dict[Any, _TrackRecord] = {}

    def new_sequence(self) -> None:
        """End the current sequence (its AQ and track records are final; VPQ windows never span two sequences)."""
        if self._frame_in_seq == 0:
            return
        by_gt: dict[Any, list[tuple[Any, int]]] = {}
        for (g, p), tpa in self._seq_inter.items():
            by_gt.setdefault(g, []).append((p, tpa))
        for g, g_area in self._seq_gt_area.items():
            inner = sum(tpa * tpa / (self._seq_pred_area[p] + g_area - tpa) for p, tpa in by_gt.get(g, []))
            self.aq_sum += inner / g_area
        self.aq_tubes += len(self._seq_gt_area)
        self._tracks_done.extend(self._tracks.values())
        self.sequences += 1
        self._start_sequence()

    # -- frames --------------------------------------------------------------------------------------------------
    def _tubes(self, segments: Iterable[Any], frame_key: int, gt: bool) -> dict[int, tuple[Any, int]]:
        """``{segment id: (tube key, class)}`` for the segments whose class is in the table (crowd ground truth is
        left out: void)."""
        k = self.table.num_classes
        out: dict[int, tuple[Any, int]] = {}
        for s in segments:
            sid = int(_field(s, "id", 0))
            cls = _field(s, "category_id")
            cls = _field(s, "class_id") if cls is None else cls
            if sid == 0 or cls is None or not 0 <= int(cls) < k:
                continue
            cls = int(cls)
            if gt and bool(_field(s, "iscrowd", False)):
                continue
            if not self._is_thing[cls]:
                key: Any = ("stuff", cls)
            else:
                tid = int(_field(s, "track_id", 0) or 0)
                key = ("thing", cls, tid) if tid > 0 else ("frame", cls, frame_key, sid)
            out[sid] = (key, cls)
        return out

    def update(
        self,
        pred_ids: np.ndarray,
        pred_segments: Sequence[Any],
        gt_ids: np.ndarray,
        gt_segments: Sequence[Any],
    ) -> None:
        """Add the next frame of the current sequence (maps HxW, 0 = void; segments with id, class, track_id)."""
        pred_ids = np.asarray(pred_ids)
        gt_ids = np.asarray(gt_ids)
        if pred_ids.shape != gt_ids.shape:
            raise ValueError(f"panoptic prediction {pred_ids.shape} and ground truth {gt_ids.shape} differ in shape")
        frame_key = self.frames
        g_tab = self._tubes(gt_segments, frame_key, gt=True)
        p_tab = self._tubes(pred_segments, frame_key, gt=False)
        # Compact both id spaces (index 0 = void), one joint count of (gt segment, pred segment) pixels.
        g_u, g_inv = np.unique(gt_ids.reshape(-1).astype(np.int64), return_inverse=True)
        p_u, p_inv = np.unique(pred_ids.reshape(-1).astype(np.int64), return_inverse=True)
        g_keys = [None] + [g_tab.get(int(v)) for v in g_u]
        p_keys = [None] + [p_tab.get(int(v)) for v in p_u]
        g_idx = np.array([i + 1 if g_keys[i + 1] else 0 for i in range(len(g_u))], dtype=np.int64)
        p_idx = np.array([i + 1 if p_keys[i + 1] else 0 for i in range(len(p_u))], dtype=np.int64)
        ng, npr = len(g_u) + 1, len(p_u) + 1
        g_pix = g_idx[g_inv.reshape(-1)]
        p_pix = p_idx[p_inv.reshape(-1)]
        joint = np.bincount(g_pix * npr + p_pix, minlength=ng * npr).reshape(ng, npr)

        # SQ: class labels of every non-void ground-truth pixel (void predictions are wrong for every class).
        ign = self.table.ignore_label
        k = self.table.num_classes
        g_cls = np.array([ign] + [key[1] if key else ign for key in g_keys[1:]], dtype=np.int64)
        p_cls = np.array([k] + [key[1] if key else k for key in p_keys[1:]], dtype=np.int64)
        self.semantic.update(p_cls[p_pix].reshape(pred_ids.shape), g_cls[g_pix].reshape(gt_ids.shape))

        stats = _FrameStats()
        for g, p in zip(*np.nonzero(joint), strict=True):
            n = int(joint[g, p])
            gk = g_keys[g][0] if g else None
            pk = p_keys[p][0] if p else None
            if gk is not None:
                stats.gt_area[gk] += n
            if pk is not None:
                stats.pred_area[pk] += n
                if gk is None:
                    stats.pred_void[pk] += n
            if gk is not None and pk is not None:
                stats.inter[(gk, pk)] += n
        self._recent.append(stats)
        self.frames += 1
        self._frame_in_seq += 1
        self._accumulate_aq(stats)
        self._clear_mot(stats)
        for w in self.windows:
            if self._frame_in_seq >= w:
                self._score_window(w)
        for key in stats.pred_area:
            if key[0] == "thing":
                self._pred_tracks.add(key)

    def _accumulate_aq(self, stats: _FrameStats) -> None:
        """Sequence-level tube areas and intersections of thing tubes (ground truth with an identity only)."""
        for g, n in stats.gt_area.items():
            if g[0] == "thing":
                self._seq_gt_area[g] += n
        for p, n in stats.pred_area.items():
            if p[0] != "stuff":
                self._seq_pred_area[p] += n - stats.pred_void.get(p, 0)
        for (g, p), n in stats.inter.items():
            if p[0] == "stuff":
                continue
            if g[0] == "thing":
                self._seq_inter[(g, p)] += n
            elif g[0] == "frame":  # ground-truth thing without identity: like crowd, out of the prediction's area
                self._seq_pred_area[p] -= n

    @staticmethod
    def _tube_class(key: Any) -> int:
        return int(key[1])

    def _frame_matches(self, stats: _FrameStats) -> dict[Any, tuple[Any, float]]:
        """gt tube -> (pred tube, IoU) for pairs of one class with IoU > 0.5 (unique), in ``stats``'s pixels."""
        out = {}
        for (g, p), n in stats.inter.items():
            if g[1] != p[1]:
                continue
            union = stats.pred_area[p] + stats.gt_area[g] - n - stats.pred_void.get(p, 0)
            iou = n / union if union > 0 else 0.0
            if iou > 0.5:
                out[g] = (p, iou)
        return out

    def _clear_mot(self, stats: _FrameStats) -> None:
        matches = self._frame_matches(stats)
        for g in stats.gt_area:
            if g[0] != "thing":
                continue
            rec = self._tracks.setdefault(g, _TrackRecord())
            rec.visible += 1
            m = matches.get(g)
            if m is None:
                continue
            rec.matched += 1
            if rec.last_pred is not None and rec.last_pred != m[0]:
                self.id_switches += 1
            rec.last_pred = m[0]

    def _score_window(self, w: int) -> None:
        frames = list(self._recent)[-w:]
        total = _FrameStats()
        for f in frames:
            total.gt_area.update(f.gt_area)
            total.pred_area.update(f.pred_area)
            total.pred_void.update(f.pred_void)
            total.inter.update(f.inter)
        acc = self._vpq[w]
        matches = self._frame_matches(total)
        matched_pred = set()
        for g, (p, iou) in matches.items():
            c = self._tube_class(g)
            acc["tp"][c] += 1
            acc["iou"][c] += iou
            matched_pred.add(p)
        for g in total.gt_area:
            if g not in matches:
                acc["fn"][self._tube_class(g)] += 1
        for p, area in total.pred_area.items():
            if p in matched_pred:
                continue
            if total.pred_void.get(p, 0) / area > 0.5:  # mostly on void ground truth: not a false positive
                continue
            acc["fp"][self._tube_class(p)] += 1
        self._vpq_windows[w] += 1

    # -- results -------------------------------------------------------------------------------------------------
    def compute(self) -> dict[str, Any]:
        """JSON-ready results (ends the current sequence first)."""
        self.new_sequence()
        sem = self.semantic.compute()
        sq = sem["mIoU"] / 100.0 if sem["mIoU"] is not None else None
        aq = self.aq_sum / self.aq_tubes if self.aq_tubes else None
        stq = float(np.sqrt(aq * sq)) if aq is not None and sq is not None else None
        vpq_k: dict[str, float | None] = {}
        for w in self.windows:
            a = self._vpq[w]
            counted = (a["tp"] + a["fp"] + a["fn"]) > 0
            if not self._vpq_windows[w] or not counted.any():
                vpq_k[str(w)] = None
                continue
            tp = a["tp"]
            sq_c = np.where(tp > 0, a["iou"] / np.where(tp > 0, tp, 1.0), 0.0)
            rq_c = tp / np.where(counted, tp + 0.5 * a["fp"] + 0.5 * a["fn"], 1.0)
            vpq_k[str(w)] = float((sq_c * rq_c)[counted].mean() * 100.0)
        defined = [v for v in vpq_k.values() if v is not None]
        tracks = self._tracks_done
        n_tracks = len(tracks)
        mt = sum(1 for t in tracks if t.visible and t.matched / t.visible >= self.mostly_tracked)
        ml = sum(1 for t in tracks if t.visible and t.matched / t.visible < self.mostly_lost)
        return {
            "STQ": stq * 100.0 if stq is not None else None,
            "AQ": aq * 100.0 if aq is not None else None,
            "SQ": sq * 100.0 if sq is not None else None,
            "VPQ": float(np.mean(defined)) if defined else None,
            "VPQ_k": vpq_k,
            "windows": {str(w): n for w, n in self._vpq_windows.items()},
            "id_switches": int(self.id_switches),
            "gt_tracks": n_tracks,
            "mostly_tracked": (mt / n_tracks * 100.0) if n_tracks else None,
            "mostly_lost": (ml / n_tracks * 100.0) if n_tracks else None,
            "pred_tracks": len(self._pred_tracks),
            "frames": int(self.frames),
            "sequences": int(self.sequences),
        }
