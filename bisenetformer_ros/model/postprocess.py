"""Turn the network's query predictions into semantic, panoptic and instance outputs (Mask2Former semantics).

Every output is produced at each image's ORIGINAL resolution from the per-pixel mask probabilities, defined by the
model's ``mask_order`` (:class:`PostprocessConfig`): ``upsample_logits`` (Mask2Former) resizes the mask logits
bilinearly to the padded batch size, crops the padding using
:class:`~bisenetformer_ros.model.preprocess.PreprocessMeta`, resizes the content to the original size and then applies
the sigmoid; ``sigmoid_first`` (the reference BiSeNetFormer implementation) applies the sigmoid on the 1/8 mask grid and
then resizes the probabilities through the same chain. Padding can never leak in.

* semantic: ``argmax_k sum_q softmax(class_q)[k] * mask_prob_q`` over the K real classes (no-object dropped).
* panoptic: keep queries whose best class is not no-object and whose score exceeds ``object_mask_threshold``; each
  pixel goes to the kept query with the highest ``score * mask_prob`` if that query's mask_prob >= ``mask_threshold``;
  a query whose won area is below ``overlap_threshold`` x its own (mask_prob >= threshold) area is dropped (it is
  mostly hidden behind others); stuff queries of one class are merged into one segment. Ids are 1..n in query order,
  0 = void. For merged stuff segments the score is the best of the merged queries.
* instance: top-k over (query, thing class) pairs of the class probabilities; masks = mask_prob >= ``mask_threshold``;
  score = class probability x mean mask probability inside the mask; empty masks are dropped; sorted by score.

Two implementations compute these rules. The default (``merge="cells"``, :mod:`bisenetformer_ros.model.cellmerge`)
does per-pixel work only along boundaries and equals the dense float64 computation pixel for pixel. The dense one
(``merge="dense"``, and :func:`dense_reference` in float64 for tests) is the brute force: every query's mask is
up-sampled in chunks (peak ``chunk x H x W``), semantic and panoptic merging consume the same chunks, and the semantic
merge holds ``K x H x W`` class scores. Work stays in torch on the logits' device; only the final maps (at the merge
grid, in their output dtype) and small tables are copied to the host.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import partial

import numpy as np
import torch
import torch.nn.functional as F

from bisenetformer_ros.data.classes import ClassTable
from bisenetformer_ros.model import cellmerge
from bisenetformer_ros.model.cellmerge import CellGrid
from bisenetformer_ros.model.inference_defaults import MASK_ORDERS
from bisenetformer_ros.model.preprocess import PreprocessMeta

TASKS: tuple[str, ...] = ("semantic", "panoptic", "instance")
MERGES: tuple[str, ...] = ("auto", "cells", "dense")
# "auto" takes the dense merge while its K x H x W float32 score table stays below this: few classes at modest
# resolution, where the dense pass is a few tens of ms and measured faster than the cell merge on the shipped model
# (2 threads, idle: 384x288 26 vs 29-33 ms; 640x480 at camera size 58 vs 66 ms); above it the cell merge wins (the
# shipped model at 1280x720, a 28 MiB table: 193-198 vs 211-221 ms) and bounds memory (ADE20K at 1920x1080: 1.2 GB
# dense vs < 100 MB; bench_postprocess.py).
AUTO_DENSE_MAX_BYTES = 16 << 20


@dataclass(frozen=True)
class PostprocessConfig:
    """Thresholds of the merging rules (defaults of Mask2Former / the paper)."""

    object_mask_threshold: float = 0.8
    overlap_threshold: float = 0.8
    mask_threshold: float = 0.5
    instance_topk: int = 100
    # Queries handled at once at full resolution by the dense merge (and the semantic confidence); bounds its peak
    # memory (chunk x H x W floats).
    chunk_size: int = 16
    # Merge masks on a grid ``label_stride`` times coarser than the output, then nearest-upsample the label maps.
    # 1 = exact. Since the cell merge made exact labels cheap this only saves the last few ms (README, "Node
    # overhead"); it changes boundary pixels (tools/label_stride_quality.py).
    label_stride: int = 1
    # Also return the per-pixel confidence of the semantic label (see SegmentationOutput.semantic_confidence).
    semantic_confidence: bool = False
    # Where the sigmoid goes, a property of the model (see the module docstring): "upsample_logits" (Mask2Former:
    # resize logits, then sigmoid) or "sigmoid_first" (reference BiSeNetFormer: sigmoid at 1/8, resize probabilities).
    mask_order: str = "upsample_logits"
    # "cells": exact at camera resolution, per-pixel work only along boundaries (model.cellmerge); "dense": the brute
    # force (every mask up-sampled, K x H x W float32 class scores); "auto": dense while that table is small
    # (AUTO_DENSE_MAX_BYTES), cells above.
    merge: str = "auto"
    # With "cells": when the bounds leave more than this share of the pixels undecided (masks without spatial
    # structure, e.g. an untrained network or one far outside its training scale) the frame goes through the dense
    # merge instead, which is then faster; 1.0 = never.
    dense_fallback: float = 0.25

    def __post_init__(self) -> None:
        for name in ("object_mask_threshold", "overlap_threshold", "mask_threshold"):
            v = getattr(self, name)
            if not 0.0 <= float(v) <= 1.0:
                raise ValueError(f"PostprocessConfig.{name} must be in [0, 1], got {v!r}")
        if int(self.instance_topk) < 1:
            raise ValueError(f"PostprocessConfig.instance_topk must be >= 1, got {self.instance_topk!r}")
        if int(self.chunk_size) < 1:
            raise ValueError(f"PostprocessConfig.chunk_size must be >= 1, got {self.chunk_size!r}")
        if not 1 <= int(self.label_stride) <= 16:
            raise ValueError(f"PostprocessConfig.label_stride must be in 1..16, got {self.label_stride!r}")
        if self.mask_order not in MASK_ORDERS:
            raise ValueError(
                f"PostprocessConfig.mask_order must be one of {list(MASK_ORDERS)} (where the model applies the mask "
                f"sigmoid), got {self.mask_order!r}"
            )
        if not 0.0 <= float(self.dense_fallback) <= 1.0:
            raise ValueError(f"PostprocessConfig.dense_fallback must be in [0, 1], got {self.dense_fallback!r}")
        if self.merge not in MERGES:
            raise ValueError(f"PostprocessConfig.merge must be one of {list(MERGES)}, got {self.merge!r}")


@dataclass(frozen=True)
class Segment:
    """One panoptic segment: ``bbox = (x, y, w, h)`` in pixels, ``centroid = (x, y)`` mean pixel position."""

    id: int
    class_id: int
    is_thing: bool
    score: float
    area: int
    bbox: tuple[int, int, int, int]
    centroid: tuple[float, float]


@dataclass
class PanopticResult:
    """``id_map`` uint16 HxW (0 = void, otherwise a ``Segment.id``) and the segment table."""

    id_map: np.ndarray
    segments: list[Segment] = field(default_factory=list)


@dataclass
class InstanceResult:
    """N thing instances sorted by score: ``masks`` bool [N,H,W], ``classes`` int64 [N], ``scores`` float32 [N],
    ``boxes`` int64 [N,4] as (x, y, w, h) like ``Segment.bbox``."""

    masks: np.ndarray
    classes: np.ndarray
    scores: np.ndarray
    boxes: np.ndarray

    def __len__(self) -> int:
        return int(self.classes.shape[0])


@dataclass
class SegmentationOutput:
    """Per-image result; a field is ``None`` when its task was not requested.

    ``semantic_confidence`` (float32 HxW in (0, 1], with ``PostprocessConfig.semantic_confidence``): the winning
    class's share of the per-pixel class scores, ``max_k s_k / sum_k s_k`` with ``s_k = sum_q softmax(class_q)[k] *
    mask_prob_q``; 1/K means the queries are undecided between all classes, 1 that only one class has any support.
    """

    semantic: np.ndarray | None
    panoptic: PanopticResult | None = None
    instances: InstanceResult | None = None
    semantic_confidence: np.ndarray | None = None


def masks_to_original(
    mask_logits: torch.Tensor, meta: PreprocessMeta, order: str = "upsample_logits", dtype: torch.dtype = torch.float32
) -> torch.Tensor:
    """``[N,h,w]`` mask logits (batch grid, 1/8) -> ``[N,orig_h,orig_w]`` mask probabilities in ``order``: up to the
    padded size, crop the pad, resize to the original size (the sigmoid before or after, see the module docstring)."""
    x = mask_logits[None].to(dtype)
    if order == "sigmoid_first":
        x = x.sigmoid()
    x = F.interpolate(x, size=meta.padded_size, mode="bilinear", align_corners=False)
    x = x[:, :, : meta.resized_size[0], : meta.resized_size[1]]
    if tuple(meta.resized_size) != tuple(meta.orig_size):
        x = F.interpolate(x, size=meta.orig_size, mode="bilinear", align_corners=False)
    return x[0] if order == "sigmoid_first" else x[0].sigmoid_()


def _mask_prob_chunks(
    pred_masks: torch.Tensor,
    queries: torch.Tensor,
    meta: PreprocessMeta,
    cfg: PostprocessConfig,
    dtype: torch.dtype,
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """``(query ids, mask probabilities [n, H*W])`` for ``queries`` in chunks of ``cfg.chunk_size``, at
    ``meta.orig_size``: the dense merge's one up-sampling pass, shared by its semantic and panoptic merging."""
    for s in range(0, int(queries.numel()), int(cfg.chunk_size)):
        idx = queries[s : s + int(cfg.chunk_size)]
        yield idx, masks_to_original(pred_masks[idx], meta, cfg.mask_order, dtype).flatten(1)


def _class_probs(pred_logits: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """``[Q, K+1]`` softmax of the class logits (the last column is no-object)."""
    return pred_logits.to(dtype).softmax(-1)


class _SemanticMerge:
    """Dense: accumulates ``sum_q softmax(class_q)[k] * mask_prob_q`` per pixel over query chunks (K x H x W)."""

    def __init__(self, pred_logits: torch.Tensor, num_pixels: int, dtype: torch.dtype) -> None:
        self.probs = _class_probs(pred_logits, dtype)[:, :-1]
        self.acc = torch.zeros((self.probs.shape[1], num_pixels), dtype=dtype, device=pred_logits.device)

    def add(self, queries: torch.Tensor, mask_probs: torch.Tensor) -> None:
        self.acc.addmm_(self.probs[queries].t(), mask_probs)

    def labels(self) -> torch.Tensor:
        # max(0) instead of argmax(0): same first-maximum index, 3-4x faster on CPU for this [K, H*W] layout.
        return self.acc.max(0).indices


@dataclass(frozen=True)
class _Kept:
    """The queries the panoptic rules consider: ids, best-class scores and classes (one place for the rule)."""

    ids: torch.Tensor
    scores: torch.Tensor
    classes: torch.Tensor
    mask: torch.Tensor  # [Q] bool

    @classmethod
    def of(cls, pred_logits: torch.Tensor, cfg: PostprocessConfig, dtype: torch.dtype) -> _Kept:
        probs = _class_probs(pred_logits, dtype)
        scores, labels = probs.max(-1)
        keep = (labels != probs.shape[-1] - 1) & (scores > cfg.object_mask_threshold)
        ids = torch.nonzero(keep).flatten()
        if int(ids.numel()) > 65535:
            raise ValueError(f"{int(ids.numel())} kept queries exceed the uint16 id range of the panoptic map")
        return cls(ids=ids, scores=scores[ids], classes=labels[ids], mask=keep)


class _PanopticMerge:
    """Dense: running per-pixel arg-max of ``score * mask_prob`` over the kept queries (fed in ascending query order),
    plus the areas the overlap rule needs."""

    def __init__(self, kept: _Kept, num_pixels: int, cfg: PostprocessConfig) -> None:
        dev = kept.scores.device
        self.kept = kept
        self.n = int(kept.ids.numel())
        self.cfg = cfg
        self.seen = 0
        # Strict '>' in the running update keeps the first maximum, like one global arg-max over all kept queries.
        self.best_val = torch.full((num_pixels,), -1.0, dtype=kept.scores.dtype, device=dev)
        self.best_idx = torch.zeros((num_pixels,), dtype=torch.long, device=dev)
        self.best_prob = torch.zeros((num_pixels,), dtype=kept.scores.dtype, device=dev)
        self.original_area = torch.zeros((self.n,), dtype=torch.long, device=dev)

    def add(self, queries: torch.Tensor, mask_probs: torch.Tensor) -> None:
        """Take the kept queries out of a chunk (any chunk of ascending query ids)."""
        sel = self.kept.mask[queries]
        m = mask_probs if bool(sel.all()) else mask_probs[sel]
        k = int(m.shape[0])
        if k == 0:
            return
        s = self.seen
        self.seen += k
        self.original_area[s : s + k] = (m >= self.cfg.mask_threshold).sum(1)
        val, idx = (self.kept.scores[s : s + k, None] * m).max(0)
        better = val > self.best_val
        self.best_val = torch.where(better, val, self.best_val)
        self.best_idx = torch.where(better, idx + s, self.best_idx)
        self.best_prob = torch.where(better, m.gather(0, idx[None])[0], self.best_prob)

    def areas(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Won, won-and-owned and own-mask areas per kept query."""
        owned = self.best_prob >= self.cfg.mask_threshold
        won = torch.bincount(self.best_idx, minlength=self.n)
        return won, torch.bincount(self.best_idx[owned], minlength=self.n), self.original_area

    def id_map(self, lut: torch.Tensor, work_size: tuple[int, int]) -> torch.Tensor:
        owned = self.best_prob >= self.cfg.mask_threshold
        return torch.where(owned, lut[self.best_idx], 0).reshape(work_size).to(torch.int32)


def _panoptic_result(
    kept: _Kept,
    areas: tuple[torch.Tensor, torch.Tensor, torch.Tensor],
    id_map_of: Callable[[torch.Tensor], torch.Tensor],
    out_size: tuple[int, int],
    is_thing: Sequence[bool],
    cfg: PostprocessConfig,
    stats_of: Callable[[torch.Tensor, int], dict[str, list]] | None = None,
) -> PanopticResult:
    """Apply the overlap rule, merge stuff per class, build the id map (``id_map_of(lut)`` at the merge grid,
    nearest-resized to ``out_size``) and the segment table (``stats_of(lut, n)``, when given and the map is at the
    output size, measures the segments without reading the map: see ``PanopticCells.segment_stats``)."""
    n = int(kept.ids.numel())
    if n == 0:
        return PanopticResult(id_map=np.zeros(tuple(out_size), dtype=np.uint16), segments=[])
    won, fin, orig = (a.tolist() for a in areas)
    classes = kept.classes.tolist()
    score_list = kept.scores.tolist()
    lut = [0] * n  # query (kept order) -> segment id
    seg_class: list[int] = []
    seg_score: list[float] = []
    stuff_segment: dict[int, int] = {}
    for k in range(n):
        if won[k] == 0 or orig[k] == 0 or fin[k] == 0:
            continue
        if won[k] / orig[k] < cfg.overlap_threshold:
            continue
        cls = int(classes[k])
        thing = bool(is_thing[cls])
        if not thing and cls in stuff_segment:
            sid = stuff_segment[cls]
            seg_score[sid - 1] = max(seg_score[sid - 1], float(score_list[k]))
            lut[k] = sid
            continue
        seg_class.append(cls)
        seg_score.append(float(score_list[k]))
        sid = len(seg_class)
        lut[k] = sid
        if not thing:
            stuff_segment[cls] = sid
    lut_t = torch.tensor(lut, dtype=torch.int32, device=kept.scores.device)
    id_map = id_map_of(lut_t)
    work_size = tuple(id_map.shape)
    ys, xs = _nearest_index(work_size[0], out_size[0]), _nearest_index(work_size[1], out_size[1])
    segments: list[Segment] = []
    if seg_class:
        if stats_of is not None and work_size == tuple(out_size):
            st = stats_of(lut_t, len(seg_class))
        else:
            st = _segment_stats(id_map, len(seg_class), ys, xs)
        for sid in range(1, len(seg_class) + 1):
            x0, y0, x1, y1 = st["x0"][sid], st["y0"][sid], st["x1"][sid], st["y1"][sid]
            segments.append(
                Segment(
                    id=sid,
                    class_id=seg_class[sid - 1],
                    is_thing=bool(is_thing[seg_class[sid - 1]]),
                    score=seg_score[sid - 1],
                    area=int(st["area"][sid]),
                    bbox=(int(x0), int(y0), int(x1 - x0 + 1), int(y1 - y0 + 1)),
                    centroid=(float(st["cx"][sid]), float(st["cy"][sid])),
                )
            )
    return PanopticResult(id_map=_nearest_resize(id_map.cpu().numpy().astype(np.uint16), ys, xs), segments=segments)


def _nearest_index(n_in: int, n_out: int) -> np.ndarray:
    """Source index of each of ``n_out`` output pixels for a pixel-centre-aligned nearest resize from ``n_in``."""
    return np.minimum(((np.arange(n_out) + 0.5) * n_in / n_out).astype(np.int64), n_in - 1)


def _nearest_resize(labels: np.ndarray, ys: np.ndarray, xs: np.ndarray) -> np.ndarray:
    """Nearest-neighbour resize of an integer map by index arithmetic (exact for any dtype); a no-op at same size."""
    if len(ys) == labels.shape[0] and len(xs) == labels.shape[1]:
        return labels
    return labels.take(ys, 0).take(xs, 1)


def _segment_stats(id_map: torch.Tensor, n: int, ys: np.ndarray, xs: np.ndarray) -> dict[str, list]:
    """Area, bbox and centroid of ids 1..n in ``id_map`` nearest-resized by ``ys``/``xs`` (see
    :func:`_nearest_index`), measured without building the resized map.

    Nearest resizing is separable: coarse row ``i`` becomes the output rows ``{y : ys[y] == i}``. So everything
    follows from two small histograms - per coarse row, how many output columns each id covers, and per coarse column
    how many output rows - and per-row / per-column tables of the output indices; exact, one pass over the map per
    histogram, and no per-pixel float tables (a full-resolution map stays cheap in memory)."""
    h, w = id_map.shape
    dev = id_map.device
    nb = n + 1

    def axis_tables(idx: np.ndarray, size: int) -> tuple[torch.Tensor, ...]:
        pos = np.arange(len(idx), dtype=np.float64)
        count = np.bincount(idx, minlength=size)
        total = np.bincount(idx, weights=pos, minlength=size)
        lo = np.full(size, len(idx), dtype=np.int64)
        np.minimum.at(lo, idx, np.arange(len(idx)))
        hi = np.full(size, -1, dtype=np.int64)
        np.maximum.at(hi, idx, np.arange(len(idx)))
        return tuple(torch.from_numpy(a).to(dev) for a in (count, total, lo, hi))

    r_cnt, r_sum, r_lo, r_hi = axis_tables(ys, h)
    c_cnt, c_sum, c_lo, c_hi = axis_tables(xs, w)

    def histogram(key_offset: torch.Tensor, bins: int, weights: torch.Tensor) -> torch.Tensor:
        """``[bins, nb]``: ``sum weights`` over pixels by (line, id); uniform weights need no per-pixel table."""
        key = id_map.to(torch.int32) + (key_offset * nb).to(torch.int32)  # int32: half the memory of int64
        if bool((weights == 1).all()):
            hist = torch.bincount(key.flatten(), minlength=bins * nb).double()
        else:
            hist = torch.bincount(key.flatten(), weights=weights.expand(h, w).flatten().double(), minlength=bins * nb)
        return hist.reshape(bins, nb)

    rows = histogram(torch.arange(h, device=dev)[:, None], h, c_cnt[None, :])  # rows[i, s]: output columns of s
    cols = histogram(torch.arange(w, device=dev)[None, :], w, r_cnt[:, None])  # cols[j, s]: output rows of s
    area = (r_cnt.double()[:, None] * rows).sum(0)
    sy = (r_sum[:, None] * rows).sum(0)
    sx = (c_sum[:, None] * cols).sum(0)
    big = max(len(ys), len(xs))

    def extreme(hist: torch.Tensor, count: torch.Tensor, table: torch.Tensor, lowest: bool) -> list:
        present = (hist > 0) & (count[:, None] > 0)
        fill = big if lowest else -1
        vals = torch.where(present, table[:, None], fill)
        return (vals.amin(0) if lowest else vals.amax(0)).tolist()

    denom = area.clamp(min=1)
    return {
        "area": area.round().long().tolist(),
        "cx": (sx / denom).tolist(),
        "cy": (sy / denom).tolist(),
        "x0": extreme(cols, c_cnt, c_lo, True),
        "y0": extreme(rows, r_cnt, r_lo, True),
        "x1": extreme(cols, c_cnt, c_hi, False),
        "y1": extreme(rows, r_cnt, r_hi, False),
    }


def instance_inference(
    pred_logits: torch.Tensor,
    pred_masks: torch.Tensor,
    meta: PreprocessMeta,
    is_thing: Sequence[bool],
    config: PostprocessConfig | None = None,
    dense_dtype: torch.dtype | None = None,
) -> InstanceResult:
    """Top-k thing instances for one image (see the module docstring); ``dense_dtype`` selects the dense merge."""
    cfg = config or PostprocessConfig()
    h, w = meta.orig_size
    dev = pred_logits.device
    thing_ids = [i for i, t in enumerate(is_thing) if t]
    if not thing_ids:
        return _empty_instances(h, w)
    dtype = dense_dtype or cellmerge.EXACT
    probs = _class_probs(pred_logits, dtype)[:, :-1]
    cols = torch.tensor(thing_ids, dtype=torch.long, device=dev)
    cand = probs[:, cols]  # [Q, T]
    k = min(int(cfg.instance_topk), cand.numel())
    top_scores, flat_idx = cand.flatten().topk(k)
    query_idx = torch.div(flat_idx, len(thing_ids), rounding_mode="floor")
    class_idx = cols[flat_idx % len(thing_ids)]

    if dense_dtype is None:
        # Each distinct query once (top-k pairs often share queries), then one mask per pair.
        uniq, inverse = torch.unique(query_idx, return_inverse=True)
        cells = CellGrid(meta, tuple(pred_masks.shape[-2:]), dev)
        binary, prob_sum, area = cellmerge.instance_masks(pred_masks[uniq], cells, cfg.mask_order, cfg.mask_threshold)
        mask_t = binary[inverse]
        mask_scores = prob_sum[inverse] / (area[inverse].to(dtype) + 1e-6)
        box_t = _mask_boxes(binary)[inverse]
    else:
        masks, score_list, boxes = [], [], []
        for s in range(0, k, cfg.chunk_size):
            m = masks_to_original(pred_masks[query_idx[s : s + cfg.chunk_size]], meta, cfg.mask_order, dense_dtype)
            binary = m >= cfg.mask_threshold
            area = binary.flatten(1).sum(1)
            score_list.append((m * binary).flatten(1).sum(1) / (area.to(dtype) + 1e-6))
            boxes.append(_mask_boxes(binary))
            masks.append(binary)
        mask_t, mask_scores, box_t = torch.cat(masks), torch.cat(score_list), torch.cat(boxes)
    final = top_scores * mask_scores
    nonempty = mask_t.flatten(1).any(1)
    order = torch.argsort(torch.where(nonempty, final, torch.full_like(final, -1.0)), descending=True, stable=True)
    order = order[: int(nonempty.sum())]
    return InstanceResult(
        masks=mask_t[order].cpu().numpy(),
        classes=class_idx[order].cpu().numpy().astype(np.int64),
        scores=final[order].cpu().numpy().astype(np.float32),
        boxes=box_t[order].cpu().numpy().astype(np.int64),
    )


def _coarse_meta(meta: PreprocessMeta, stride: int) -> PreprocessMeta:
    """``meta`` scaled ``stride`` times down (padded grid, content and output), for merging on a coarse grid: the
    masks are then never upsampled to the full padded size. Content edges move by less than one coarse pixel."""
    (h, w), (rh, rw), (ph, pw) = meta.orig_size, meta.resized_size, meta.padded_size
    ph2, pw2 = -(-ph // stride), -(-pw // stride)
    return PreprocessMeta(
        orig_size=(-(-h // stride), -(-w // stride)),
        resized_size=(max(1, min(ph2, round(rh * ph2 / ph))), max(1, min(pw2, round(rw * pw2 / pw)))),
        padded_size=(ph2, pw2),
    )


def _mask_boxes(binary: torch.Tensor) -> torch.Tensor:
    """``[N,H,W]`` bool -> ``[N,4]`` (x, y, w, h); zeros for empty masks."""
    _n, h, w = binary.shape
    rows = binary.any(2)
    cols = binary.any(1)
    ar_h = torch.arange(h, device=binary.device)
    ar_w = torch.arange(w, device=binary.device)
    y0 = torch.where(rows, ar_h, h).amin(1)
    y1 = torch.where(rows, ar_h, -1).amax(1)
    x0 = torch.where(cols, ar_w, w).amin(1)
    x1 = torch.where(cols, ar_w, -1).amax(1)
    empty = ~rows.any(1)
    box = torch.stack([x0, y0, x1 - x0 + 1, y1 - y0 + 1], dim=1)
    return torch.where(empty[:, None], torch.zeros_like(box), box)


def _empty_instances(h: int, w: int) -> InstanceResult:
    return InstanceResult(
        masks=np.zeros((0, h, w), dtype=bool),
        classes=np.zeros((0,), dtype=np.int64),
        scores=np.zeros((0,), dtype=np.float32),
        boxes=np.zeros((0, 4), dtype=np.int64),
    )


def _semantic_confidence(
    pred_logits: torch.Tensor,
    pred_masks: torch.Tensor,
    labels: torch.Tensor,
    meta: PreprocessMeta,
    cfg: PostprocessConfig,
) -> torch.Tensor:
    """The winning class's share of the class scores (SegmentationOutput) at ``labels [H*W]``: one chunked pass over
    the queries' full-resolution probabilities (what the option costs), but only two accumulators, not K x H x W."""
    probs = _class_probs(pred_logits, torch.float32)[:, :-1]
    labels = labels.long()  # an index (a uint8 tensor would index as a mask)
    best = torch.zeros(labels.shape, dtype=torch.float32, device=labels.device)
    total = torch.zeros_like(best)
    queries = torch.arange(probs.shape[0], device=labels.device)
    for idx, m in _mask_prob_chunks(pred_masks, queries, meta, cfg, torch.float32):
        best += (probs[idx][:, labels] * m).sum(0)
        total += probs[idx].sum(1) @ m
    return best / total.clamp_min(torch.finfo(torch.float32).tiny)


def _check_inputs(
    pred_logits: torch.Tensor,
    pred_masks: torch.Tensor,
    metas: Sequence[PreprocessMeta],
    tasks: Sequence[str],
    class_table: ClassTable | None,
) -> Sequence[bool]:
    """Validate a batch; returns the thing flags of the class table (empty when no task needs it)."""
    unknown = [t for t in tasks if t not in TASKS]
    if unknown:
        raise ValueError(f"unknown task(s) {unknown}; choose from {list(TASKS)}")
    if pred_logits.dim() != 3 or pred_masks.dim() != 4:
        raise ValueError(
            f"expected pred_logits [B,Q,K+1] and pred_masks [B,Q,h,w], got {tuple(pred_logits.shape)} and "
            f"{tuple(pred_masks.shape)}"
        )
    b, q = pred_logits.shape[:2]
    if pred_masks.shape[:2] != (b, q):
        raise ValueError(f"pred_logits {tuple(pred_logits.shape)} and pred_masks {tuple(pred_masks.shape)} disagree")
    if len(metas) != b:
        raise ValueError(f"{len(metas)} metas for a batch of {b} predictions")
    num_classes = pred_logits.shape[-1] - 1
    if not any(t in tasks for t in ("panoptic", "instance")):
        return ()
    if class_table is None:
        raise ValueError("panoptic/instance post-processing needs a class_table (thing/stuff split)")
    if class_table.num_classes != num_classes:
        raise ValueError(
            f"class table '{class_table.dataset}' has {class_table.num_classes} classes but the model predicts "
            f"{num_classes}; use the class table stored with the model"
        )
    return class_table.is_thing


def postprocess_batch(
    pred_logits: torch.Tensor,
    pred_masks: torch.Tensor,
    metas: Sequence[PreprocessMeta],
    tasks: Sequence[str] = ("semantic", "panoptic"),
    config: PostprocessConfig | None = None,
    class_table: ClassTable | None = None,
) -> list[SegmentationOutput]:
    """Post-process a batch: ``pred_logits [B,Q,K+1]``, ``pred_masks [B,Q,h,w]``, one meta per image.

    ``class_table`` supplies the thing/stuff split and is required for 'panoptic' and 'instance'.
    """
    cfg = config or PostprocessConfig()
    merge = cfg.merge
    if merge == "auto":
        stride = int(cfg.label_stride)
        pixels = max((-(-m.orig_size[0] // stride)) * (-(-m.orig_size[1] // stride)) for m in metas) if metas else 0
        merge = "dense" if (pred_logits.shape[-1] - 1) * pixels * 4 <= AUTO_DENSE_MAX_BYTES else "cells"
    dense = torch.float32 if merge == "dense" else None
    return _postprocess(pred_logits, pred_masks, metas, tasks, cfg, class_table, dense)


_SIDE_POOL: tuple[int, ThreadPoolExecutor] | None = None  # (pid, pool): a forked child makes its own


def _side_pool() -> ThreadPoolExecutor:
    global _SIDE_POOL
    if _SIDE_POOL is None or _SIDE_POOL[0] != os.getpid():
        _SIDE_POOL = (os.getpid(), ThreadPoolExecutor(max_workers=1, thread_name_prefix="postprocess"))
    return _SIDE_POOL[1]


def _side_thread_pays(pred_masks: torch.Tensor) -> bool:
    """Whether the semantic merge runs beside the panoptic one: on the CPU when torch may use more than one thread.
    As tensor ops the merges are chains of mostly small ops that keep one core busy (intra-op threading splits only
    the large ones): side by side they cut the merge's wall time by 0-30 % at two torch threads (README, "Third
    round"). The native kernels then take half the threads each: one after the other on every thread they were
    10-15 % slower (their calls start threads, which wait for an idle core to wake, and split a few milliseconds of
    work). On a GPU both only queue kernels on one stream."""
    return pred_masks.device.type == "cpu" and torch.get_num_threads() > 1


class _Job:
    """``fn()`` on the side thread when ``beside`` (its result waited for by :meth:`result`), else in the caller's.
    Same computation either way: where it runs never changes the result."""

    def __init__(self, fn: Callable[[], object], beside: bool) -> None:
        self._fn = fn
        self._future = _side_pool().submit(self._run) if beside else None

    def _run(self) -> object:
        with torch.no_grad():  # grad mode is per thread
            return self._fn()

    def result(self) -> object:
        return self._run() if self._future is None else self._future.result()


def dense_reference(
    pred_logits: torch.Tensor,
    pred_masks: torch.Tensor,
    metas: Sequence[PreprocessMeta],
    tasks: Sequence[str] = ("semantic", "panoptic"),
    config: PostprocessConfig | None = None,
    class_table: ClassTable | None = None,
    dtype: torch.dtype = torch.float64,
) -> list[SegmentationOutput]:
    """The brute force in ``dtype``: full-resolution scores for every query (and K x H x W class scores). In float64
    it is the definition the default cell merge reproduces pixel for pixel (tests); slow and memory-hungry."""
    return _postprocess(pred_logits, pred_masks, metas, tasks, config or PostprocessConfig(), class_table, dtype)


def _postprocess(
    pred_logits: torch.Tensor,
    pred_masks: torch.Tensor,
    metas: Sequence[PreprocessMeta],
    tasks: Sequence[str],
    cfg: PostprocessConfig,
    class_table: ClassTable | None,
    dense_dtype: torch.dtype | None,
) -> list[SegmentationOutput]:
    is_thing = _check_inputs(pred_logits, pred_masks, metas, tasks, class_table)
    q = pred_logits.shape[1]
    num_classes = pred_logits.shape[-1] - 1
    sem_dtype = np.uint8 if num_classes <= 255 else np.uint16
    stride = int(cfg.label_stride)
    outputs = []
    with torch.no_grad():
        for i, meta in enumerate(metas):
            work_meta = _coarse_meta(meta, stride) if stride > 1 else meta
            wh, ww = work_meta.orig_size
            labels = None
            pan = ins = conf = None
            kept = _Kept.of(pred_logits[i], cfg, dense_dtype or cellmerge.EXACT) if "panoptic" in tasks else None
            # Which tasks the dense merge computes: all of them when asked for, else the semantic labels of a frame
            # whose bounds decide too little (cfg.dense_fallback). Each task's result never depends on the others.
            dense_tasks: tuple[str, ...] = tuple(tasks) if dense_dtype is not None else ()
            if dense_dtype is None:
                cells = CellGrid(work_meta, tuple(pred_masks.shape[-2:]), pred_masks.device)
                semantic = None
                if "semantic" in tasks:
                    class_probs = _class_probs(pred_logits[i], cellmerge.EXACT)[:, :-1]
                    beside = kept is not None and bool(kept.ids.numel()) and _side_thread_pays(pred_masks)
                    cells = cells.sharing(2) if beside else cells
                    semantic = _Job(
                        partial(
                            cellmerge.semantic_labels,
                            class_probs,
                            pred_masks[i],
                            cells,
                            cfg.mask_order,
                            float(cfg.dense_fallback),
                        ),
                        beside=beside,
                    )
                if kept is not None:
                    if kept.ids.numel():
                        pc = cellmerge.panoptic_cells(
                            kept.scores,
                            pred_masks[i],
                            cells,
                            cfg.mask_order,
                            cfg.mask_threshold,
                            cfg.overlap_threshold,
                            ids=kept.ids,
                        )
                        areas, id_map_of, stats_of = (pc.won, pc.fin, pc.orig), pc.id_map, pc.segment_stats
                    else:
                        areas, id_map_of, stats_of = (pred_logits.new_zeros(0),) * 3, None, None
                    pan = _panoptic_result(kept, areas, id_map_of, meta.orig_size, is_thing, cfg, stats_of)
                if semantic is not None:
                    labels = semantic.result()
                    if labels is None:
                        dense_tasks = ("semantic",)
                    else:
                        labels = labels.flatten()
            if dense_tasks:
                dtype = dense_dtype or torch.float32
                sem_merge = _SemanticMerge(pred_logits[i], wh * ww, dtype) if "semantic" in dense_tasks else None
                pan_merge = (
                    _PanopticMerge(kept, wh * ww, cfg) if kept is not None and "panoptic" in dense_tasks else None
                )
                # Semantic needs every query, panoptic only the kept ones: one pass over the larger set feeds both.
                if sem_merge is not None:
                    queries = torch.arange(q, device=pred_logits.device)
                else:
                    queries = kept.ids if pan_merge is not None else pred_logits.new_zeros((0,), dtype=torch.long)
                for idx, probs in _mask_prob_chunks(pred_masks[i], queries, work_meta, cfg, dtype):
                    if sem_merge is not None:
                        sem_merge.add(idx, probs)
                    if pan_merge is not None:
                        pan_merge.add(idx, probs)
                if sem_merge is not None:
                    labels = sem_merge.labels()
                if pan_merge is not None:
                    id_map_of = partial(pan_merge.id_map, work_size=(wh, ww))
                    pan = _panoptic_result(kept, pan_merge.areas(), id_map_of, meta.orig_size, is_thing, cfg)
            ys, xs = _nearest_index(wh, meta.orig_size[0]), _nearest_index(ww, meta.orig_size[1])
            sem = None
            if labels is not None:
                if cfg.semantic_confidence:
                    share = _semantic_confidence(pred_logits[i], pred_masks[i], labels, work_meta, cfg)
                    conf = _nearest_resize(share.reshape(wh, ww).cpu().numpy(), ys, xs)
                # To the host at the merge grid in the output dtype; the nearest up-sampling then moves bytes only.
                small = labels.reshape(wh, ww).cpu().numpy().astype(sem_dtype, copy=False)
                sem = _nearest_resize(small, ys, xs)
            if "instance" in tasks:
                ins = instance_inference(pred_logits[i], pred_masks[i], meta, is_thing, cfg, dense_dtype)
            outputs.append(SegmentationOutput(semantic=sem, panoptic=pan, instances=ins, semantic_confidence=conf))
    return outputs
