"""Per-camera panoptic tracker: thing segments keep a track id across frames; ids are never reused within a run.

Why this design:

* **Association by mask overlap on the label grid.** Boxes of touching or crossing objects overlap heavily while
  their masks do not, so boxes would mix them; masks are what the node already has. Each track keeps the mask of its
  last sighting as a crop around its box (bounded: one crop per track), shifted by its constant-velocity prediction.
  The intersections of every track with every current segment come from one gather of the current id map under each
  track's crop and one ``np.bincount`` per track: the cost is proportional to the tracks' area (about one image), not
  to tracks x segments full-size masks.
* **Optimal assignment per class.** The Hungarian algorithm (``scipy.optimize.linear_sum_assignment``) maximises the
  total IoU within each class; a greedy "best IoU first" steals the partner of a crossing object. Pairs of different
  classes are never considered (a crate never continues a ball's track) and pairs below ``min_iou`` are not matches.
* **A second look at what masks leave.** A partly hidden object leaves a partial mask, and when it reappears on the
  other side of its occluder the two partial masks hardly overlap. Tracks and segments of the same class that the
  masks did not pair are matched (again optimally) by the distance of the segment's centroid from the track's
  predicted centroid, relative to the object's size (``centroid_gate``; 0 turns this stage off).
* **Memory and confirmation.** A track that is not matched is kept ``max_lost_frames`` frames (an object hidden for a
  frame or two keeps its id), then forgotten: an object that returns later gets a new id. A new track's id is
  published once it was seen ``min_age`` frames in a row, so one-frame false segments do not consume ids; until
  then its segments carry track id 0 (a tentative track that is missed once is dropped, as in SORT).
* **Bounded memory.** Live tracks <= segments of the last frame; lost tracks <= ``max_lost_frames`` x segments, and
  never more than ``max_tracks`` in all (the longest-lost go first). The id counter is the only thing that grows.
* **Ids are never reused within a run**: :meth:`PanopticTracker.reset` (bag loop, lifecycle cleanup, a change of the
  output size) forgets the tracks but not the counter.

Stuff segments are not tracked: their class is their identity (track id 0 in messages; the video metrics treat a
stuff class as one tube).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.optimize import linear_sum_assignment

#: Crops up to this many pixels are compared pixel by pixel; larger ones on a regular subgrid of about this size.
EXACT_PIXELS = 4096

#: Track id of segments that are not tracked (stuff, tentative tracks, tracking off).
UNTRACKED_ID = 0


@dataclass(frozen=True)
class TrackInfo:
    """Identity of one segment in one frame.

    ``track_id``: stable id of the object (1, 2, ...; 0 = not tracked: stuff, a track younger than ``min_age``,
    tracking off). ``frames_seen``: frames in which this object has been seen, this one included (0 when untracked
    because tracking is off or the segment is stuff; 1..min_age-1 for a tentative track).
    """

    track_id: int
    frames_seen: int


#: The identity of stuff segments and of every segment while tracking is off.
UNTRACKED = TrackInfo(UNTRACKED_ID, 0)


@dataclass(frozen=True)
class TrackerConfig:
    """Tracker settings (the node's ``tracking.*`` parameters)."""

    #: Least mask IoU (predicted track mask vs. current segment, same class) for a match.
    min_iou: float = 0.25
    #: Frames a track that is not seen is remembered (0 = forget at once).
    max_lost_frames: int = 10
    #: Frames in a row a new track must be seen before its id is published (1 = at once).
    min_age: int = 1
    #: Shift remembered masks by each track's constant-velocity estimate before comparing.
    motion: bool = True
    #: Second stage for pairs the masks left: centroid distance from the prediction below this many object sizes
    #: (sqrt of the object's recent largest area); 0 = masks only.
    centroid_gate: float = 0.75
    #: Most tracks kept (live + lost); the longest-lost are forgotten first. Bounds memory for any run length.
    max_tracks: int = 1024

    def __post_init__(self) -> None:
        if not 0.0 < float(self.min_iou) <= 1.0:
            raise ValueError(f"tracking min_iou must be in (0, 1], got {self.min_iou!r}")
        if int(self.max_lost_frames) < 0:
            raise ValueError(f"tracking max_lost_frames must be >= 0, got {self.max_lost_frames!r}")
        if int(self.min_age) < 1:
            raise ValueError(f"tracking min_age must be >= 1, got {self.min_age!r}")
        if not 0.0 <= float(self.centroid_gate) <= 10.0:
            raise ValueError(f"tracking centroid_gate must be in [0, 10], got {self.centroid_gate!r}")
        if int(self.max_tracks) < 1:
            raise ValueError(f"tracking max_tracks must be >= 1, got {self.max_tracks!r}")


class _Track:
    """State of one object: last mask (crop at ``(y0, x0)``), centroid, velocity (pixels per frame), counts."""

    __slots__ = (
        "area",
        "class_id",
        "cx",
        "cy",
        "hits",
        "id",
        "last_frame",
        "mask",
        "ref_area",
        "vx",
        "vy",
        "x0",
        "y0",
    )

    def __init__(self, class_id: int, frame: int) -> None:
        self.id = UNTRACKED_ID  # published id, given at confirmation
        self.class_id = class_id
        self.y0 = self.x0 = 0
        self.mask = np.zeros((0, 0), dtype=bool)
        self.area = 0
        self.ref_area = 0.0  # recent largest area: the object's size while it is partly hidden
        self.cx = self.cy = 0.0
        self.vx = self.vy = 0.0
        self.hits = 0
        self.last_frame = frame

    def observe(self, ids: np.ndarray, seg: Any, frame: int) -> None:
        """Take segment ``seg`` (with id map ``ids``) as this track's latest sighting in ``frame``."""
        h_img, w_img = ids.shape
        x, y, w, h = (int(v) for v in seg.bbox)
        x0, y0 = max(0, x), max(0, y)
        x1, y1 = min(w_img, x + max(w, 0)), min(h_img, y + max(h, 0))
        crop = ids[y0:y1, x0:x1] == seg.id if x1 > x0 and y1 > y0 else np.zeros((0, 0), dtype=bool)
        area = int(np.count_nonzero(crop))
        if area == 0:  # a box that does not hold the segment: find it the slow way rather than lose the mask
            ys, xs = np.nonzero(ids == seg.id)
            if ys.size == 0:
                return
            y0, x0, y1, x1 = int(ys.min()), int(xs.min()), int(ys.max()) + 1, int(xs.max()) + 1
            crop = ids[y0:y1, x0:x1] == seg.id
            area = int(np.count_nonzero(crop))
        centroid = getattr(seg, "centroid", None)
        if centroid is not None and int(seg.area) == area:  # the post-processing measured it on the same map
            cx, cy = float(centroid[0]), float(centroid[1])
        else:
            ys, xs = np.nonzero(crop)
            cy, cx = float(ys.mean()) + y0, float(xs.mean()) + x0
        if self.hits > 0:
            gap = max(1, frame - self.last_frame)
            vy, vx = (cy - self.cy) / gap, (cx - self.cx) / gap
            # First displacement taken as is, later ones smoothed: occlusion moves the visible centroid by jumps.
            self.vy, self.vx = (vy, vx) if self.hits == 1 else (0.5 * self.vy + 0.5 * vy, 0.5 * self.vx + 0.5 * vx)
        self.y0, self.x0, self.mask, self.area = y0, x0, crop, area
        self.ref_area = max(float(area), 0.8 * self.ref_area)
        self.cy, self.cx = cy, cx
        self.hits += 1
        self.last_frame = frame

    def predicted_window(self, frame: int, shape: tuple[int, int], motion: bool) -> tuple[slice, slice, np.ndarray]:
        """Image slices and the part of the (shifted) mask that lies inside the image at ``frame``."""
        gap = frame - self.last_frame
        dy, dx = (round(self.vy * gap), round(self.vx * gap)) if motion else (0, 0)
        h, w = self.mask.shape
        y0, x0 = self.y0 + dy, self.x0 + dx
        cy0, cx0 = max(0, -y0), max(0, -x0)
        cy1, cx1 = min(h, shape[0] - y0), min(w, shape[1] - x0)
        if cy1 <= cy0 or cx1 <= cx0:
            return slice(0, 0), slice(0, 0), np.zeros((0, 0), dtype=bool)
        return (
            slice(y0 + cy0, y0 + cy1),
            slice(x0 + cx0, x0 + cx1),
            self.mask[cy0:cy1, cx0:cx1],
        )

    def predicted_centroid(self, frame: int, motion: bool) -> tuple[float, float]:
        """(y, x) where the object should be at ``frame``."""
        gap = frame - self.last_frame
        return (self.cy + self.vy * gap, self.cx + self.vx * gap) if motion else (self.cy, self.cx)

    def nbytes(self) -> int:
        return int(self.mask.nbytes) + 128


class PanopticTracker:
    """Tracks the thing segments of one camera's panoptic results (see the module docstring).

    Call :meth:`update` once per frame, in time order, with the frame's
    :class:`~bisenetformer_ros.model.postprocess.PanopticResult` (or anything with ``id_map`` and ``segments`` whose
    items have ``id``, ``class_id``, ``is_thing``, ``area`` and ``bbox = (x, y, w, h)``).
    """

    def __init__(self, config: TrackerConfig | None = None, first_id: int = 1) -> None:
        """``first_id``: where the id counter starts (the node continues a camera's counter across lifecycle
        cleanup, so ids stay unique for the whole process)."""
        if int(first_id) < 1:
            raise ValueError(f"first track id must be >= 1, got {first_id!r}")
        self.config = config or TrackerConfig()
        self._tracks: list[_Track] = []
        self._next_id = int(first_id)
        self._frame = 0
        self._shape: tuple[int, int] | None = None

    # -- state --------------------------------------------------------------------------------------------------
    @property
    def num_tracks(self) -> int:
        """Tracks held now (confirmed and tentative, seen in the last frame or remembered)."""
        return len(self._tracks)

    @property
    def next_id(self) -> int:
        """The id the next confirmed track will get (ids are never reused within a run)."""
        return self._next_id

    def memory_bytes(self) -> int:
        """Approximate memory held by the tracks (masks dominate); bounded by ``max_tracks`` crops."""
        return sum(t.nbytes() for t in self._tracks)

    def reset(self) -> None:
        """Forget every track (bag loop, lifecycle cleanup, new output size); the id counter continues."""
        self._tracks = []
        self._shape = None

    def set_config(self, config: TrackerConfig) -> None:
        """New settings from the next frame on; the tracks are kept (tuning at runtime must not break ids)."""
        self.config = config

    # -- per frame ----------------------------------------------------------------------------------------------
    def update(self, panoptic: Any) -> dict[int, TrackInfo]:
        """Associate this frame's segments with the tracks; returns ``{segment id: TrackInfo}`` for every segment."""
        ids = np.asarray(panoptic.id_map)
        if ids.ndim != 2:
            raise ValueError(f"panoptic id map must be HxW, got shape {ids.shape}")
        shape = (int(ids.shape[0]), int(ids.shape[1]))
        if self._shape is not None and shape != self._shape:
            self.reset()  # masks of another resolution cannot be compared
        self._shape = shape
        self._frame += 1
        frame, cfg = self._frame, self.config
        segments: Sequence[Any] = panoptic.segments
        out: dict[int, TrackInfo] = {int(s.id): UNTRACKED for s in segments}
        things = [s for s in segments if s.is_thing and int(s.area) > 0 and int(s.id) > 0]
        matched_track: dict[int, _Track] = {}  # index into things -> track
        if things and self._tracks:
            iou = self._iou(ids, things, frame)
            t_cls = np.array([t.class_id for t in self._tracks])
            s_cls = np.array([int(s.class_id) for s in things])
            for c in np.intersect1d(t_cls, s_cls).tolist():
                rows = np.flatnonzero(t_cls == c)
                cols = np.flatnonzero(s_cls == c)
                sub = iou[np.ix_(rows, cols)]
                r, k = linear_sum_assignment(sub, maximize=True)
                for i, j in zip(r.tolist(), k.tolist(), strict=True):
                    if sub[i, j] >= cfg.min_iou:
                        matched_track[int(cols[j])] = self._tracks[int(rows[i])]
            if cfg.centroid_gate > 0:
                self._match_centroids(things, matched_track, frame)
        live = set()
        for j, s in enumerate(things):
            track = matched_track.get(j)
            if track is None:
                track = _Track(int(s.class_id), frame)
                self._tracks.append(track)
            track.observe(ids, s, frame)
            live.add(id(track))
            if track.id == UNTRACKED_ID and track.hits >= cfg.min_age:
                track.id = self._next_id
                self._next_id += 1
            out[int(s.id)] = TrackInfo(track.id, track.hits)
        self._forget(live, frame)
        return out

    def _iou(self, ids: np.ndarray, things: Sequence[Any], frame: int) -> np.ndarray:
        """``tracks x things`` mask IoU of each track's predicted mask with each current thing segment.

        Per track: the current id map under the track's (shifted) crop, zeroed outside its mask, counted with one
        ``np.bincount`` of the raw segment ids; the things' columns are then picked out of the counts. Crops larger
        than :data:`EXACT_PIXELS` are read on every ``step``-th row and column (intersection and the track's area
        alike, scaled back by ``step**2``): objects that large change their IoU by well under a percent, and the
        cost per track stays bounded, so a frame costs a few milliseconds whatever the resolution.
        """
        n = len(things)
        seg_ids = np.array([int(s.id) for s in things], dtype=np.intp)
        cur_area = np.array([int(s.area) for s in things], dtype=np.float64)
        inter = np.zeros((len(self._tracks), n), dtype=np.float64)
        pred_area = np.zeros(len(self._tracks), dtype=np.float64)
        for k, t in enumerate(self._tracks):
            ys, xs, m = t.predicted_window(frame, self._shape, self.config.motion)  # type: ignore[arg-type]
            if m.size == 0:
                continue
            step = max(1, int(math.sqrt(m.size / EXACT_PIXELS)))
            if step > 1:
                ys, xs, m = slice(ys.start, ys.stop, step), slice(xs.start, xs.stop, step), m[::step, ::step]
            under = ids[ys, xs].astype(np.intp)
            under *= m
            counts = np.bincount(under.ravel())
            inside = seg_ids < counts.shape[0]
            inter[k, inside] = counts[seg_ids[inside]] * (step * step)
            pred_area[k] = np.count_nonzero(m) * (step * step)
        union = pred_area[:, None] + cur_area[None, :] - inter
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(union > 0, inter / np.where(union > 0, union, 1.0), 0.0)

    def _match_centroids(self, things: Sequence[Any], matched: dict[int, _Track], frame: int) -> None:
        """Second stage: pair the leftovers of each class by centroid distance / object size (optimal, gated)."""
        taken = {id(t) for t in matched.values()}
        tracks = [t for t in self._tracks if id(t) not in taken]
        free = [j for j in range(len(things)) if j not in matched]
        if not tracks or not free:
            return
        motion = self.config.motion
        gate = float(self.config.centroid_gate)
        for c in {t.class_id for t in tracks} & {int(things[j].class_id) for j in free}:
            rows = [t for t in tracks if t.class_id == c]
            cols = [j for j in free if int(things[j].class_id) == c]
            pred = np.array([t.predicted_centroid(frame, motion) for t in rows])  # (y, x)
            cur = np.array([(float(things[j].centroid[1]), float(things[j].centroid[0])) for j in cols])
            size = np.sqrt(
                np.maximum(np.array([t.ref_area for t in rows])[:, None], [float(things[j].area) for j in cols])
            )
            dist = np.linalg.norm(pred[:, None, :] - cur[None, :, :], axis=2) / np.maximum(size, 1.0)
            cost = np.where(dist < gate, dist, 1e6)
            r, k = linear_sum_assignment(cost)
            for i, j in zip(r.tolist(), k.tolist(), strict=True):
                if dist[i, j] < gate:
                    matched[cols[j]] = rows[i]

    def _forget(self, live: set[int], frame: int) -> None:
        cfg = self.config
        kept = []
        for t in self._tracks:
            if id(t) in live:
                kept.append(t)
            elif t.id == UNTRACKED_ID:
                continue  # a tentative track missed once is dropped
            elif frame - t.last_frame <= cfg.max_lost_frames:
                kept.append(t)
        if len(kept) > cfg.max_tracks:
            kept.sort(key=lambda t: t.last_frame, reverse=True)  # stable: most recently seen first
            kept = kept[: cfg.max_tracks]
        self._tracks = kept
