"""The images a segmentation result is published as: label image, colour images, overlay, panoptic ids + table.

One function, :func:`render_outputs`, turns a model result into the arrays that the ROS node publishes and that the
offline bag tools write, so both always carry identical content (colours included). No ROS here: the node's
``ros/messages.py`` and the bag writer convert :class:`FrameOutputs` into their message types.

Colours: semantic classes use the class table's palette; panoptic "stuff" segments use their class colour and "thing"
instances a deterministic per-instance variation of it (same id and class -> same colour in every frame and tool).
With tracks (:mod:`bisenetformer_ros.tracking`) and ``color_by_track``, a thing's colour comes from its *track* id
instead, so an object keeps its colour while it is tracked and a person sees identities hold in RViz; things not
(yet) tracked get their plain class colour.
The overlay blends the semantic colours over the camera image with ``alpha`` and, when a panoptic result exists,
draws the outline of every thing instance so touching instances of one class stay distinguishable.
"""

from __future__ import annotations

import functools
from collections.abc import Collection
from dataclasses import dataclass, field
from typing import Any

import cv2
import numpy as np

from bisenetformer_ros.data.classes import ClassTable
from bisenetformer_ros.model.postprocess import PanopticResult, Segment, SegmentationOutput
from bisenetformer_ros.topics import RENDERED_OUTPUTS

#: Names of the renderable outputs, as used by the node's parameters and topics (see :mod:`bisenetformer_ros.topics`).
OUTPUT_NAMES: tuple[str, ...] = RENDERED_OUTPUTS

#: Colour of instance outlines in the overlay.
EDGE_COLOR = (255, 255, 255)


@dataclass
class FrameOutputs:
    """Arrays for one camera frame, all of the same height and width; ``None`` where not requested/computed.

    ``semantic`` is ``(class-id array, encoding)`` with encoding ``mono8`` (<= 255 classes) or ``mono16``.
    ``panoptic_ids`` is uint16 (0 = void) and ``segments`` its table; the colour images are HxWx3 uint8 RGB;
    ``class_mask`` is uint8, 255 where the semantic class is one of the selected classes, else 0;
    ``semantic_confidence`` is uint8, the label's confidence x 255 (see ``SegmentationOutput.semantic_confidence``).
    """

    semantic: tuple[np.ndarray, str] | None = None
    semantic_color: np.ndarray | None = None
    overlay: np.ndarray | None = None
    class_mask: np.ndarray | None = None
    semantic_confidence: np.ndarray | None = None
    panoptic_ids: np.ndarray | None = None
    panoptic_color: np.ndarray | None = None
    segments: list[Segment] = field(default_factory=list)
    #: Segment id -> TrackInfo (identity over time) when a tracker ran on this frame; None = not tracked.
    tracks: dict[int, Any] | None = None

    @property
    def size(self) -> tuple[int, int] | None:
        """(height, width) of the arrays, or None when nothing was rendered."""
        for arr in (
            self.semantic[0] if self.semantic else None,
            self.panoptic_ids,
            self.overlay,
            self.semantic_color,
            self.panoptic_color,
            self.class_mask,
            self.semantic_confidence,
        ):
            if arr is not None:
                return int(arr.shape[0]), int(arr.shape[1])
        return None


@functools.lru_cache(maxsize=16)
def _semantic_palette(table: ClassTable, entries: int) -> np.ndarray:
    """``entries`` x 3 lookup table: class colours, black for every id outside the table (void/ignore)."""
    pal = np.zeros((entries, 3), dtype=np.uint8)
    k = min(table.num_classes, entries)
    pal[:k] = np.asarray(table.colors, dtype=np.uint8)[:k]
    return pal


@functools.lru_cache(maxsize=4)
def _solid_image(shape: tuple[int, ...], color: tuple[int, int, int]) -> np.ndarray:
    """A read-only image of one colour (filling one costs more than the masked copy it feeds: cached per size)."""
    img = cv2.merge([np.full(shape[:2], c, dtype=np.uint8) for c in color])
    img.flags.writeable = False
    return img


def _lookup8(ids: np.ndarray, table: np.ndarray) -> np.ndarray:
    """``table[ids]`` for uint8 ``ids`` and a uint8 ``table`` (entries beyond it 0) by OpenCV's 8-bit LUT, ~5x faster
    than numpy indexing at camera size."""
    lut = np.zeros(256, dtype=np.uint8)
    n = min(256, len(table))
    lut[:n] = table[:n]
    return cv2.LUT(ids, lut)


def _lookup_rgb(ids: np.ndarray, palette: np.ndarray) -> np.ndarray:
    """Colour image ``palette[ids]`` as contiguous HxWx3 uint8. Ids below 256 (any semantic map of up to 255
    classes, a panoptic map of up to 255 segments) go through OpenCV's 8-bit LUT, one per channel, then a merge:
    ~2x faster than one LUT on a merged 3-channel id image and ~5x faster than numpy indexing."""
    top = int(ids.max()) + 1 if ids.size else 0
    if ids.dtype != np.uint8 and top <= 256 and ids.dtype.kind == "u":
        ids = ids.astype(np.uint8)
    if ids.dtype == np.uint8:  # ids beyond the palette stay black
        return cv2.merge([_lookup8(ids, palette[:, c]) for c in range(3)])
    packed = np.zeros(max(palette.shape[0], top), dtype=np.uint32)  # ids beyond the palette stay black
    p32 = palette.astype(np.uint32)
    packed[: palette.shape[0]] = p32[:, 0] | (p32[:, 1] << 8) | (p32[:, 2] << 16)
    rgba = np.take(packed, ids).view(np.uint8).reshape((*ids.shape, 4))
    return cv2.cvtColor(rgba, cv2.COLOR_RGBA2RGB)


def colorize_semantic(labels: np.ndarray, table: ClassTable) -> np.ndarray:
    """HxW class ids -> HxWx3 RGB with the table's colours (ids outside the table black)."""
    entries = 256 if labels.dtype == np.uint8 else max(65536, table.num_classes + 1)
    if labels.dtype not in (np.uint8, np.uint16):
        labels = np.clip(labels, 0, entries - 1).astype(np.uint16)
    return _lookup_rgb(labels, _semantic_palette(table, entries))


def instance_color(segment_id: int, class_id: int, table: ClassTable) -> tuple[int, int, int]:
    """Colour of a thing instance: its class colour shifted by an offset seeded by (id, class), so it is stable."""
    base = np.asarray(table.colors[class_id], dtype=np.int32)
    rng = np.random.default_rng((int(segment_id) * 1_000_003 + int(class_id)) & 0xFFFFFFFF)
    offset = rng.integers(-70, 71, size=3)
    return tuple(int(v) for v in np.clip(base + offset, 0, 255))  # type: ignore[return-value]


def segment_palette(
    segments: list[Segment], table: ClassTable, max_id: int, tracks: dict[int, Any] | None = None
) -> np.ndarray:
    """(max_id + 1) x 3 colours indexed by segment id; id 0 (void) and unknown ids black. With ``tracks``
    (segment id -> TrackInfo) things are coloured by track id (class colour while untracked)."""
    pal = np.zeros((max_id + 1, 3), dtype=np.uint8)
    for s in segments:
        if 0 < s.id <= max_id and 0 <= s.class_id < table.num_classes:
            if not s.is_thing:
                pal[s.id] = table.colors[s.class_id]
            elif tracks is None:
                pal[s.id] = instance_color(s.id, s.class_id, table)
            else:
                track_id = int(getattr(tracks.get(s.id), "track_id", 0))
                pal[s.id] = instance_color(track_id, s.class_id, table) if track_id else table.colors[s.class_id]
    return pal


def colorize_panoptic(panoptic: PanopticResult, table: ClassTable, tracks: dict[int, Any] | None = None) -> np.ndarray:
    """Panoptic id image -> HxWx3 RGB, a colour per segment (see :func:`instance_color`), or per track."""
    ids = panoptic.id_map
    max_id = max([int(ids.max()) if ids.size else 0] + [s.id for s in panoptic.segments])
    return _lookup_rgb(ids, segment_palette(panoptic.segments, table, max_id, tracks))


def instance_edges(panoptic: PanopticResult) -> np.ndarray:
    """Boolean HxW mask of pixels on the border of a thing segment (4-neighbourhood, both sides of the border)."""
    ids = panoptic.id_map
    thing_ids = [s.id for s in panoptic.segments if s.is_thing]
    edges = np.zeros(ids.shape, dtype=bool)
    if not thing_ids or ids.size == 0:
        return edges
    thing = np.zeros(max(max(thing_ids), int(ids.max())) + 1, dtype=np.uint8)
    thing[thing_ids] = 1
    # A thing pixel is on a border when a 4-neighbour has another id, i.e. when the largest and the smallest id of its
    # cross-shaped neighbourhood differ: two OpenCV morphology passes (pixels outside the image do not count) instead
    # of eight boolean passes over shifted copies.
    if thing.size <= 256:  # every id fits 8 bits
        small = ids.astype(np.uint8)
        is_thing = _lookup8(small, thing)
    else:
        small = np.ascontiguousarray(ids, dtype=np.uint16)
        is_thing = thing[small]
    cross = cv2.getStructuringElement(cv2.MORPH_CROSS, (3, 3))
    differs = cv2.compare(cv2.dilate(small, cross), cv2.erode(small, cross), cv2.CMP_NE)
    return cv2.bitwise_and(differs, is_thing).view(bool)


def blend(image_rgb: np.ndarray, color: np.ndarray, alpha: float, mask: np.ndarray | None = None) -> np.ndarray:
    """``(1 - alpha) * image + alpha * color``; pixels where ``mask`` is False keep the image."""
    img = np.ascontiguousarray(image_rgb)
    out = cv2.addWeighted(img, 1.0 - float(alpha), np.ascontiguousarray(color), float(alpha), 0.0)
    if mask is not None:
        out[~mask] = img[~mask]
    return out


def class_mask(labels: np.ndarray, class_ids: Collection[int]) -> np.ndarray:
    """uint8 mask, 255 where ``labels`` is one of ``class_ids``: one table lookup per pixel (cv2.LUT for mono8)."""
    entries = 256 if labels.dtype == np.uint8 else int(max(int(labels.max(initial=0)), *class_ids, 0)) + 1
    lut = np.zeros(entries, dtype=np.uint8)
    lut[[int(c) for c in class_ids if 0 <= int(c) < entries]] = 255
    if labels.dtype == np.uint8:
        return cv2.LUT(labels, lut)
    return lut[labels]


def render_outputs(
    frame_result: Any,
    image_rgb: np.ndarray,
    class_table: ClassTable,
    alpha: float = 0.5,
    outputs: Collection[str] | None = None,
    draw_instance_edges: bool = True,
    mask_classes: Collection[int] = (),
    tracks: dict[int, Any] | None = None,
    color_by_track: bool = True,
) -> FrameOutputs:
    """Arrays to publish for one frame.

    ``frame_result`` is a ``FrameResult`` of the Segmenter (its ``.output`` is used) or a
    :class:`~bisenetformer_ros.model.postprocess.SegmentationOutput`; ``image_rgb`` the HxWx3 RGB image the result
    was computed on (same size). ``outputs`` limits the work to the named entries of :data:`OUTPUT_NAMES` (the node
    passes only those with subscribers); ``None`` renders everything the result supports. ``class_mask`` marks the
    pixels of ``mask_classes`` (ids, see :meth:`ClassTable.resolve`), e.g. the drivable classes for a costmap.
    ``tracks`` (segment id -> TrackInfo of :class:`~bisenetformer_ros.tracking.PanopticTracker`) travels with the
    segments and, with ``color_by_track``, colours ``panoptic_color`` by track.
    """
    out: SegmentationOutput = getattr(frame_result, "output", frame_result)
    wanted = set(OUTPUT_NAMES if outputs is None else outputs)
    unknown = wanted - set(OUTPUT_NAMES)
    if unknown:
        raise ValueError(f"unknown output(s) {sorted(unknown)}; choose from {list(OUTPUT_NAMES)}")
    if not 0.0 <= float(alpha) <= 1.0:
        raise ValueError(f"overlay alpha must be in [0, 1], got {alpha}")
    h, w = image_rgb.shape[:2]
    for name, arr in (("semantic", out.semantic), ("panoptic", out.panoptic.id_map if out.panoptic else None)):
        if arr is not None and arr.shape[:2] != (h, w):
            raise ValueError(f"{name} result is {arr.shape[1]}x{arr.shape[0]} but the image is {w}x{h}")
    result = FrameOutputs()
    sem = out.semantic
    pan = out.panoptic
    if sem is not None:
        if "semantic" in wanted:
            result.semantic = (sem, "mono8" if sem.dtype == np.uint8 else "mono16")
        if "semantic_color" in wanted or "overlay" in wanted:
            sem_color = colorize_semantic(sem, class_table)
            if "semantic_color" in wanted:
                result.semantic_color = sem_color
            if "overlay" in wanted:
                result.overlay = blend(image_rgb, sem_color, alpha)
        if "class_mask" in wanted:
            result.class_mask = class_mask(sem, mask_classes)
    if "semantic_confidence" in wanted and out.semantic_confidence is not None:
        # x255, rounded and saturated in one OpenCV pass: mono8 is what RViz and thresholding nodes read directly.
        result.semantic_confidence = cv2.convertScaleAbs(out.semantic_confidence, alpha=255.0)
    if pan is not None:
        if "panoptic" in wanted:
            result.panoptic_ids = pan.id_map
            result.segments = list(pan.segments)
            result.tracks = tracks
        need_pan_color = "panoptic_color" in wanted or ("overlay" in wanted and result.overlay is None)
        if need_pan_color:
            pan_color = colorize_panoptic(pan, class_table, tracks if color_by_track else None)
            if "panoptic_color" in wanted:
                result.panoptic_color = pan_color
            if "overlay" in wanted and result.overlay is None:  # panoptic-only task: blend segment colours, not void
                result.overlay = blend(image_rgb, pan_color, alpha, mask=pan.id_map > 0)
        if "overlay" in wanted and result.overlay is not None and draw_instance_edges:
            edges = instance_edges(pan)
            if edges.any():  # a masked copy (OpenCV) instead of boolean indexing: ~10x faster at camera size
                solid = _solid_image(result.overlay.shape, EDGE_COLOR)
                result.overlay = cv2.copyTo(solid, edges.view(np.uint8), result.overlay)
    return result
