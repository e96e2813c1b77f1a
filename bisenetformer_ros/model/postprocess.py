"""Turn the network's query predictions into semantic, panoptic and instance outputs (Mask2Former semantics).

Every output is produced at each image's ORIGINAL resolution: mask logits are up-sampled to the padded batch size,
the padding is cropped away using :class:`~bisenetformer_ros.model.preprocess.PreprocessMeta`, then the content is
resized to the original size — the order used by the reference implementation, so padding can never leak in. Work
stays in torch on the logits' device; queries are processed in chunks so that peak memory is ``chunk x H x W``
rather than ``Q x H x W`` (100 full-resolution Cityscapes masks would be 800 MB); semantic and panoptic merging
consume the same chunks, so asking for both costs one up-sampling pass. Only the final maps (at the merge grid, in
their output dtype) and small tables are copied to the host.

* semantic: ``argmax_k sum_q softmax(class_q)[k] * sigmoid(mask_q)`` over the K real classes (no-object dropped).
* panoptic: keep queries whose best class is not no-object and whose score exceeds ``object_mask_threshold``; each
  pixel goes to the kept query with the highest ``score * mask_prob`` if that query's mask_prob >= ``mask_threshold``;
  a query whose won area is below ``overlap_threshold`` x its own (mask_prob >= threshold) area is dropped (it is
  mostly hidden behind others); stuff queries of one class are merged into one segment. Ids are 1..n in query order,
  0 = void. For merged stuff segments the score is the best of the merged queries.
* instance: top-k over (query, thing class) pairs of the class probabilities; masks = mask_prob >= ``mask_threshold``;
  score = class probability x mean mask probability inside the mask; empty masks are dropped; sorted by score.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F

from bisenetformer_ros.data.classes import ClassTable
from bisenetformer_ros.model.preprocess import PreprocessMeta

TASKS: tuple[str, ...] = ("semantic", "panoptic", "instance")


@dataclass(frozen=True)
class PostprocessConfig:
    """Thresholds of the merging rules (defaults of Mask2Former / the paper)."""

    object_mask_threshold: float = 0.8
    overlap_threshold: float = 0.8
    mask_threshold: float = 0.5
    instance_topk: int = 100
    # Queries handled at once at full resolution; bounds peak memory (chunk x H x W floats).
    chunk_size: int = 16
    # Merge masks on a grid ``label_stride`` times coarser than the output, then nearest-upsample the label maps.
    # 1 = exact (Mask2Former's rule, used for evaluation). The masks come from 1/8-resolution features, so up to 8 on
    # an output at network size changes only boundary pixels while cutting the dominant cost (and the K x H x W
    # score memory) by about stride^2; measured in README ("Node overhead", tools/label_stride_quality.py).
    label_stride: int = 1
    # Also return the per-pixel confidence of the semantic label (see SegmentationOutput.semantic_confidence).
    semantic_confidence: bool = False
    # Where the sigmoid sits relative to the bilinear resize: "upsample_logits" (Mask2Former) or "sigmoid_first" (the
    # reference implementation). A property of the model file (model.inference_defaults), not a tuning knob.
    mask_order: str = "upsample_logits"

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
        if self.mask_order not in ("upsample_logits", "sigmoid_first"):
            raise ValueError(
                f"PostprocessConfig.mask_order must be 'upsample_logits' or 'sigmoid_first', got {self.mask_order!r}"
            )


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


def masks_to_original(mask_logits: torch.Tensor, meta: PreprocessMeta) -> torch.Tensor:
    """``[N,h,w]`` mask logits (batch grid, 1/8) -> ``[N,orig_h,orig_w]``: up to padded size, crop pad, resize."""
    x = F.interpolate(mask_logits[None].float(), size=meta.padded_size, mode="bilinear", align_corners=False)
    x = x[:, :, : meta.resized_size[0], : meta.resized_size[1]]
    if tuple(meta.resized_size) != tuple(meta.orig_size):
        x = F.interpolate(x, size=meta.orig_size, mode="bilinear", align_corners=False)
    return x[0]


def _mask_prob_chunks(
    pred_masks: torch.Tensor,
    queries: torch.Tensor,
    meta: PreprocessMeta,
    chunk_size: int,
    mask_order: str = "upsample_logits",
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """``(query ids, mask probabilities [n, H*W])`` for ``queries`` in chunks of ``chunk_size``, at ``meta.orig_size``.

    The one place where masks are up-sampled: semantic and panoptic merging consume the same chunks, so a frame that
    asks for both pays for the (dominant) up-sampling and sigmoid once."""
    for s in range(0, int(queries.numel()), chunk_size):
        idx = queries[s : s + chunk_size]
        if mask_order == "sigmoid_first":
            yield idx, masks_to_original(pred_masks[idx].float().sigmoid(), meta).flatten(1)
        else:
            yield idx, masks_to_original(pred_masks[idx], meta).sigmoid_().flatten(1)


class _SemanticMerge:
    """Accumulates ``sum_q softmax(class_q)[k] * mask_prob_q`` per pixel over query chunks; ``labels()`` = arg-max."""

    def __init__(self, pred_logits: torch.Tensor, num_pixels: int) -> None:
        self.probs = pred_logits.float().softmax(-1)[:, :-1]
        self.acc = torch.zeros((self.probs.shape[1], num_pixels), dtype=torch.float32, device=pred_logits.device)

    def add(self, queries: torch.Tensor, mask_probs: torch.Tensor) -> None:
        self.acc.addmm_(self.probs[queries].t(), mask_probs)

    def labels(self) -> torch.Tensor:
        # max(0) instead of argmax(0): same first-maximum index, 3-4x faster on CPU for this [K, H*W] layout.
        return self.acc.max(0).indices

    def labels_and_confidence(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Labels and the winning class's share of the pixel's class scores (see SegmentationOutput)."""
        best, labels = self.acc.max(0)
        return labels, best / self.acc.sum(0).clamp_min(torch.finfo(torch.float32).tiny)


class _PanopticMerge:
    """Running per-pixel arg-max of ``score * mask_prob`` over the kept queries (fed in ascending query order), plus
    the areas the overlap rule needs."""

    def __init__(self, pred_logits: torch.Tensor, num_pixels: int, cfg: PostprocessConfig) -> None:
        dev = pred_logits.device
        probs = pred_logits.float().softmax(-1)
        scores, self.labels = probs.max(-1)
        no_object = probs.shape[-1] - 1
        keep = (self.labels != no_object) & (scores > cfg.object_mask_threshold)
        self.kept = torch.nonzero(keep).flatten()
        self.n = int(self.kept.numel())
        if self.n > 65535:
            raise ValueError(f"{self.n} kept queries exceed the uint16 id range of the panoptic map")
        self.keep = keep
        self.scores = scores[self.kept]
        self.cfg = cfg
        self.seen = 0
        # Strict '>' in the running update keeps the first maximum, like one global arg-max over all kept queries.
        self.best_val = torch.full((num_pixels,), -1.0, device=dev)
        self.best_idx = torch.zeros((num_pixels,), dtype=torch.long, device=dev)
        self.best_prob = torch.zeros((num_pixels,), device=dev)
        self.original_area = torch.zeros((self.n,), dtype=torch.long, device=dev)

    def add(self, queries: torch.Tensor, mask_probs: torch.Tensor) -> None:
        """Take the kept queries out of a chunk (any chunk of ascending query ids)."""
        sel = self.keep[queries]
        m = mask_probs if bool(sel.all()) else mask_probs[sel]
        k = int(m.shape[0])
        if k == 0:
            return
        s = self.seen
        self.seen += k
        self.original_area[s : s + k] = (m >= self.cfg.mask_threshold).sum(1)
        val, idx = (self.scores[s : s + k, None] * m).max(0)
        better = val > self.best_val
        self.best_val = torch.where(better, val, self.best_val)
        self.best_idx = torch.where(better, idx + s, self.best_idx)
        self.best_prob = torch.where(better, m.gather(0, idx[None])[0], self.best_prob)

    def result(self, work_size: tuple[int, int], out_size: tuple[int, int], is_thing: Sequence[bool]) -> PanopticResult:
        """Apply the overlap rule, merge stuff per class and build the id map (at ``out_size``) and segment table."""
        if self.n == 0:
            return PanopticResult(id_map=np.zeros(tuple(out_size), dtype=np.uint16), segments=[])
        n, cfg = self.n, self.cfg
        owned = self.best_prob >= cfg.mask_threshold  # pixel inside its winner's own binary mask
        won = torch.bincount(self.best_idx, minlength=n).tolist()
        fin = torch.bincount(self.best_idx[owned], minlength=n).tolist()
        orig = self.original_area.tolist()
        classes = self.labels[self.kept].tolist()
        score_list = self.scores.tolist()
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
        lut_t = torch.tensor(lut, dtype=torch.int32, device=owned.device)
        id_map = torch.where(owned, lut_t[self.best_idx], 0).reshape(work_size)
        ys, xs = _nearest_index(work_size[0], out_size[0]), _nearest_index(work_size[1], out_size[1])
        segments: list[Segment] = []
        if seg_class:
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

    Nearest resizing is separable: coarse row ``i`` becomes the output rows ``{y : ys[y] == i}``. So a coarse pixel
    ``(i, j)`` stands for ``rows[i] x cols[j]`` output pixels, whose count, coordinate sums and extremes follow from
    per-row / per-column tables; the statistics are exact and cost one pass over the small map."""
    h, w = id_map.shape
    dev = id_map.device

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
    flat = id_map.reshape(-1).long()
    present = (r_cnt[:, None] > 0) & (c_cnt[None, :] > 0)  # coarse pixels that appear in the output
    flat = torch.where(present.reshape(-1), flat, 0)  # absent ones count as void (never measured)
    area = torch.bincount(flat, weights=(r_cnt[:, None] * c_cnt[None, :]).reshape(-1).double(), minlength=n + 1)
    sx = torch.bincount(flat, weights=(r_cnt[:, None] * c_sum[None, :]).reshape(-1).double(), minlength=n + 1)
    sy = torch.bincount(flat, weights=(r_sum[:, None] * c_cnt[None, :]).reshape(-1).double(), minlength=n + 1)

    def reduce(values: torch.Tensor, init: int, how: str) -> list:
        start = torch.full((n + 1,), init, device=dev, dtype=torch.long)
        return start.scatter_reduce(0, flat, values.reshape(-1), how).tolist()

    big = max(len(ys), len(xs))
    denom = area.clamp(min=1)
    return {
        "area": area.round().long().tolist(),
        "cx": (sx / denom).tolist(),
        "cy": (sy / denom).tolist(),
        "x0": reduce(c_lo[None, :].expand(h, w), big, "amin"),
        "y0": reduce(r_lo[:, None].expand(h, w), big, "amin"),
        "x1": reduce(c_hi[None, :].expand(h, w), -1, "amax"),
        "y1": reduce(r_hi[:, None].expand(h, w), -1, "amax"),
    }


def instance_inference(
    pred_logits: torch.Tensor,
    pred_masks: torch.Tensor,
    meta: PreprocessMeta,
    is_thing: Sequence[bool],
    config: PostprocessConfig | None = None,
) -> InstanceResult:
    """Top-k thing instances for one image (see the module docstring)."""
    cfg = config or PostprocessConfig()
    h, w = meta.orig_size
    dev = pred_logits.device
    thing_ids = [i for i, t in enumerate(is_thing) if t]
    if not thing_ids:
        return _empty_instances(h, w)
    probs = pred_logits.float().softmax(-1)[:, :-1]
    cols = torch.tensor(thing_ids, dtype=torch.long, device=dev)
    cand = probs[:, cols]  # [Q, T]
    k = min(int(cfg.instance_topk), cand.numel())
    top_scores, flat_idx = cand.flatten().topk(k)
    query_idx = torch.div(flat_idx, len(thing_ids), rounding_mode="floor")
    class_idx = cols[flat_idx % len(thing_ids)]

    masks, mask_scores, boxes = [], [], []
    for s in range(0, k, cfg.chunk_size):
        chunk = pred_masks[query_idx[s : s + cfg.chunk_size]]
        if cfg.mask_order == "sigmoid_first":
            m = masks_to_original(chunk.float().sigmoid(), meta)
        else:
            m = masks_to_original(chunk, meta).sigmoid()
        binary = m >= cfg.mask_threshold
        area = binary.flatten(1).sum(1)
        mask_scores.append((m * binary).flatten(1).sum(1) / (area.float() + 1e-6))
        boxes.append(_mask_boxes(binary))
        masks.append(binary)
    mask_t = torch.cat(masks)
    box_t = torch.cat(boxes)
    final = top_scores * torch.cat(mask_scores)
    nonempty = mask_t.flatten(1).any(1)
    order = torch.argsort(torch.where(nonempty, final, torch.full_like(final, -1.0)), descending=True)
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
    needs_table = any(t in tasks for t in ("panoptic", "instance"))
    is_thing: Sequence[bool] = ()
    if needs_table:
        if class_table is None:
            raise ValueError("panoptic/instance post-processing needs a class_table (thing/stuff split)")
        if class_table.num_classes != num_classes:
            raise ValueError(
                f"class table '{class_table.dataset}' has {class_table.num_classes} classes but the model predicts "
                f"{num_classes}; use the class table stored with the model"
            )
        is_thing = class_table.is_thing
    sem_dtype = np.uint8 if num_classes <= 255 else np.uint16
    stride = int(cfg.label_stride)
    outputs = []
    with torch.no_grad():
        for i, meta in enumerate(metas):
            work_meta = _coarse_meta(meta, stride) if stride > 1 else meta
            wh, ww = work_meta.orig_size
            sem_merge = _SemanticMerge(pred_logits[i], wh * ww) if "semantic" in tasks else None
            pan_merge = _PanopticMerge(pred_logits[i], wh * ww, cfg) if "panoptic" in tasks else None
            # Semantic needs every query, panoptic only the kept ones: one pass over the larger set feeds both.
            if sem_merge is not None:
                queries = torch.arange(q, device=pred_logits.device)
            else:
                queries = pan_merge.kept if pan_merge is not None else pred_logits.new_zeros((0,), dtype=torch.long)
            for idx, probs in _mask_prob_chunks(pred_masks[i], queries, work_meta, int(cfg.chunk_size), cfg.mask_order):
                if sem_merge is not None:
                    sem_merge.add(idx, probs)
                if pan_merge is not None:
                    pan_merge.add(idx, probs)
            ys, xs = _nearest_index(wh, meta.orig_size[0]), _nearest_index(ww, meta.orig_size[1])
            sem = pan = ins = conf = None
            if sem_merge is not None:
                # To the host at the merge grid in the output dtype; the nearest up-sampling then moves bytes only.
                if cfg.semantic_confidence:
                    labels, share = sem_merge.labels_and_confidence()
                    conf = _nearest_resize(share.reshape(wh, ww).cpu().numpy(), ys, xs)
                else:
                    labels = sem_merge.labels()
                small = labels.reshape(wh, ww).to(torch.int32).cpu().numpy().astype(sem_dtype)
                sem = _nearest_resize(small, ys, xs)
            if pan_merge is not None:
                pan = pan_merge.result((wh, ww), meta.orig_size, is_thing)
            if "instance" in tasks:
                ins = instance_inference(pred_logits[i], pred_masks[i], meta, is_thing, cfg)
            outputs.append(SegmentationOutput(semantic=sem, panoptic=pan, instances=ins, semantic_confidence=conf))
    return outputs
