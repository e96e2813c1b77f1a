"""The package's one mapping between its results and ROS message fields, without any ROS library.

The node publishes rclpy messages (:mod:`bisenetformer_ros.ros.messages`) and the offline bag tools write rosbags
messages (:mod:`bisenetformer_ros.bags.msgconv`). Both used to fill the same fields by hand, builder for builder, and
had to be kept equal so a recorded node output and an offline evaluation carry identical content. Here every builder
returns :class:`Fields` -- a ROS type name and the field values -- and each binding only turns that tree into its
library's objects (:func:`build` walks it). Node/offline parity therefore holds by construction.

Readers work on either library's objects: they only use field names, which rclpy and rosbags share.

Values follow the rosbags convention for primitive arrays (numpy arrays: ``data`` as flat uint8, ``k``/``p``/``d``/
``r`` as float64, ``is_thing`` as bool); the rclpy binding converts them to what rclpy's setters take quickly.
Headers are passed through untouched, so a node output keeps the camera message's own header object.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from bisenetformer_ros.data.classes import ClassTable
from bisenetformer_ros.image import decode_compressed, decode_image, pack_image
from bisenetformer_ros.image.camera import scale_camera
from bisenetformer_ros.image.convert import DEFAULT_MAX_PIXELS
from bisenetformer_ros.resources import PACKAGE_NAME

# ROS type names (the rosbags spelling; rclpy's module is the same with dots).
TIME = "builtin_interfaces/msg/Time"
HEADER = "std_msgs/msg/Header"
COLOR_RGBA = "std_msgs/msg/ColorRGBA"
IMAGE = "sensor_msgs/msg/Image"
COMPRESSED_IMAGE = "sensor_msgs/msg/CompressedImage"
CAMERA_INFO = "sensor_msgs/msg/CameraInfo"
REGION_OF_INTEREST = "sensor_msgs/msg/RegionOfInterest"
PANOPTIC_SEGMENT = f"{PACKAGE_NAME}/msg/PanopticSegment"
PANOPTIC_SEGMENTATION = f"{PACKAGE_NAME}/msg/PanopticSegmentation"
CLASS_TABLE = f"{PACKAGE_NAME}/msg/ClassTable"

#: Encodings of class-id / segment-id images and their pixel type.
LABEL_ENCODINGS = {"mono8": np.uint8, "8UC1": np.uint8, "mono16": np.uint16, "16UC1": np.uint16}


@dataclass(frozen=True)
class Fields:
    """One message to build: its ROS type name and field values (nested messages are Fields too)."""

    type: str
    values: dict[str, Any]


def build(fields: Any, construct: Callable[[str, dict[str, Any]], Any], convert: Callable[[Any], Any]) -> Any:
    """Turn a :class:`Fields` tree into library objects: ``construct(type, kwargs)`` makes one message,
    ``convert`` adapts a leaf value (numpy arrays) to the library. Non-Fields leaves (e.g. a received header object)
    pass through ``convert`` unchanged otherwise."""
    if isinstance(fields, Fields):
        return construct(fields.type, {k: build(v, construct, convert) for k, v in fields.values.items()})
    if isinstance(fields, list):
        return [build(v, construct, convert) for v in fields]
    return convert(fields)


# --- header -----------------------------------------------------------------------------------------------------


def header_fields(stamp: int, frame_id: str) -> Fields:
    """std_msgs/Header for a stamp in integer nanoseconds."""
    time = Fields(TIME, {"sec": int(stamp // 1_000_000_000), "nanosec": int(stamp % 1_000_000_000)})
    return Fields(HEADER, {"stamp": time, "frame_id": str(frame_id)})


def stamp_ns(header: Any) -> int:
    """Header stamp as integer nanoseconds (the key that pairs images, ground truth and outputs)."""
    return int(header.stamp.sec) * 1_000_000_000 + int(header.stamp.nanosec)


# --- images -----------------------------------------------------------------------------------------------------


def image_fields(header: Any, array: np.ndarray, encoding: str) -> Fields:
    """sensor_msgs/Image of an array, packed by the package's encoder (:func:`~bisenetformer_ros.image.pack_image`):
    little-endian, rows packed (step = width * pixel size). Label encodings take an HxW integer array, colour
    encodings an HxWx3 RGB uint8 array."""
    step, rows = pack_image(array, encoding)
    height, width = np.asarray(array).shape[:2]
    return Fields(
        IMAGE,
        {
            "header": header,
            "height": int(height),
            "width": int(width),
            "encoding": encoding,
            "is_bigendian": 0,
            "step": int(step),
            "data": rows.reshape(-1),
        },
    )


def image_outputs(outs: Any) -> dict[str, tuple[np.ndarray, str]]:
    """Output name -> (array, encoding) for every plain image output present in ``outs`` (FrameOutputs); the
    outputs and encodings are the catalogue's (``topics.FIXED_ENCODINGS``, imported here: ``topics`` reads this
    module's type names)."""
    from bisenetformer_ros.topics import FIXED_ENCODINGS

    found = {name: (getattr(outs, name), enc) for name, enc in FIXED_ENCODINGS.items()}
    if outs.semantic is not None:
        found["semantic"] = outs.semantic
    return {name: v for name, v in found.items() if v[0] is not None}


def camera_image_to_rgb(msg: Any, max_pixels: int = DEFAULT_MAX_PIXELS, scaling: str = "shift") -> np.ndarray:
    """Decode a sensor_msgs/Image or CompressedImage to HxWx3 uint8 RGB with the package's converter.

    Raises :class:`~bisenetformer_ros.image.ImageFormatError` (a ValueError, with the cause) for malformed or
    unsupported images, which callers count as skipped frames.
    """
    if hasattr(msg, "format") and not hasattr(msg, "encoding"):
        return decode_compressed(msg.format, msg.data, max_pixels=max_pixels, scaling=scaling)
    return decode_image(
        msg.encoding,
        int(msg.height),
        int(msg.width),
        int(msg.step),
        msg.data,
        bool(msg.is_bigendian),
        max_pixels=max_pixels,
        scaling=scaling,
    )


def label_image_to_array(msg: Any) -> np.ndarray:
    """Decode a class-id / segment-id image (mono8, 8UC1, mono16, 16UC1) honouring step and endianness."""
    enc = str(msg.encoding)
    if enc not in LABEL_ENCODINGS:
        raise ValueError(f"label image has encoding '{enc}'; expected one of {', '.join(LABEL_ENCODINGS)}")
    dtype = np.dtype(LABEL_ENCODINGS[enc])
    if dtype.itemsize > 1:
        dtype = dtype.newbyteorder(">" if msg.is_bigendian else "<")
    h, w, step = int(msg.height), int(msg.width), int(msg.step)
    data = np.frombuffer(memoryview(msg.data), dtype=np.uint8)
    row = w * dtype.itemsize
    if h <= 0 or w <= 0 or step < row or data.size < step * (h - 1) + row:
        raise ValueError(
            f"label image is malformed: {w}x{h} {enc}, step {step}, {data.size} bytes of data "
            f"(need step >= {row} and at least {step * (h - 1) + row if h > 0 else 0} bytes)"
        )
    rows = np.lib.stride_tricks.as_strided(data, shape=(h, row), strides=(step, 1))
    return np.ascontiguousarray(rows).view(dtype).reshape(h, w).astype(dtype.newbyteorder("="), copy=False)


# --- panoptic segments ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SegmentRecord:
    """One row of a panoptic segment table, independent of where it came from (model, GT message, node output)."""

    id: int
    class_id: int
    is_thing: bool
    score: float
    area: int
    bbox: tuple[int, int, int, int]  # x, y, w, h
    centroid: tuple[float, float]  # x, y
    track_id: int = 0  # identity over time (PanopticSegment.track_id); 0 = not tracked
    frames_seen: int = 0


def segment_record(seg: Any, track: Any = None) -> SegmentRecord:
    """From the model's ``Segment`` (postprocess) or anything with the same attributes; ``track`` (a
    :class:`~bisenetformer_ros.tracking.TrackInfo`) adds the segment's identity over time."""
    x, y, w, h = (int(v) for v in seg.bbox)
    cx, cy = (float(v) for v in seg.centroid)
    track_id = int(getattr(track, "track_id", getattr(seg, "track_id", 0)) or 0)
    frames_seen = int(getattr(track, "frames_seen", getattr(seg, "frames_seen", 0)) or 0)
    return SegmentRecord(
        int(seg.id),
        int(seg.class_id),
        bool(seg.is_thing),
        float(seg.score),
        int(seg.area),
        (x, y, w, h),
        (cx, cy),
        track_id,
        frames_seen,
    )


def segments_from_ids(
    ids: np.ndarray, classes: dict[int, int], class_table: ClassTable, track_ids: dict[int, int] | None = None
) -> list[SegmentRecord]:
    """Segment table (area, tight box, centroid) computed from an id image, for ground truth we generate;
    ``track_ids`` (segment id -> identity over time) fills ``track_id`` of ground-truth sequences."""
    track_ids = track_ids or {}
    out: list[SegmentRecord] = []
    for sid in sorted(int(s) for s in np.unique(ids) if s != 0):
        ys, xs = np.nonzero(ids == sid)
        cls = int(classes[sid])
        x0, x1, y0, y1 = int(xs.min()), int(xs.max()), int(ys.min()), int(ys.max())
        out.append(
            SegmentRecord(
                sid,
                cls,
                bool(class_table.is_thing[cls]),
                1.0,
                int(xs.size),
                (x0, y0, x1 - x0 + 1, y1 - y0 + 1),
                (float(xs.mean()), float(ys.mean())),
                int(track_ids.get(sid, 0)),
            )
        )
    return out


def roi_fields(x: int, y: int, width: int, height: int, do_rectify: bool = False) -> Fields:
    return Fields(
        REGION_OF_INTEREST,
        {"x_offset": int(x), "y_offset": int(y), "height": int(height), "width": int(width), "do_rectify": do_rectify},
    )


def segment_fields(seg: Any, track: Any = None) -> Fields:
    """bisenetformer_ros/PanopticSegment of a segment (a ``Segment`` or :class:`SegmentRecord`); ``track``
    (TrackInfo) fills ``track_id``/``frames_seen`` (0 = not tracked). Floats are rounded to float32 as the message
    stores them, so a message read back compares equal to the record it came from."""
    r = seg if isinstance(seg, SegmentRecord) and track is None else segment_record(seg, track)
    x, y, w, h = r.bbox
    return Fields(
        PANOPTIC_SEGMENT,
        {
            "id": r.id,
            "class_id": r.class_id,
            "is_thing": r.is_thing,
            "score": float(np.float32(r.score)),
            "area": r.area,
            "bbox": roi_fields(x, y, w, h),
            "centroid_x": float(np.float32(r.centroid[0])),
            "centroid_y": float(np.float32(r.centroid[1])),
            "track_id": r.track_id,
            "frames_seen": r.frames_seen,
        },
    )


def panoptic_fields(
    header: Any, ids: np.ndarray, segments: Sequence[Any], tracks: dict[int, Any] | None = None
) -> Fields:
    """bisenetformer_ros/PanopticSegmentation: mono16 id image with the same header plus the segment table (with
    track ids when ``tracks`` -- segment id -> TrackInfo -- is given)."""
    tracks = tracks or {}
    return Fields(
        PANOPTIC_SEGMENTATION,
        {
            "header": header,
            "segment_ids": image_fields(header, np.asarray(ids, dtype=np.uint16), "mono16"),
            "segments": [segment_fields(s, tracks.get(s.id)) for s in segments],
        },
    )


def panoptic_from_msg(msg: Any) -> tuple[np.ndarray, list[SegmentRecord]]:
    """(uint16 id image, segment table) of a PanopticSegmentation message."""
    ids = label_image_to_array(msg.segment_ids).astype(np.uint16, copy=False)
    segs = [
        SegmentRecord(
            int(s.id),
            int(s.class_id),
            bool(s.is_thing),
            float(s.score),
            int(s.area),
            (int(s.bbox.x_offset), int(s.bbox.y_offset), int(s.bbox.width), int(s.bbox.height)),
            (float(s.centroid_x), float(s.centroid_y)),
            int(getattr(s, "track_id", 0)),
            int(getattr(s, "frames_seen", 0)),
        )
        for s in msg.segments
    ]
    return ids, segs


# --- class table ------------------------------------------------------------------------------------------------


def class_table_fields(header: Any, table: ClassTable) -> Fields:
    """bisenetformer_ros/ClassTable (colours as ColorRGBA in 0..1)."""
    return Fields(
        CLASS_TABLE,
        {
            "header": header,
            "dataset": table.dataset,
            "names": list(table.names),
            "colors": [Fields(COLOR_RGBA, {"r": r, "g": g, "b": b, "a": a}) for r, g, b, a in table.colors_rgba()],
            "is_thing": np.asarray(table.is_thing, dtype=bool),
            "ignore_label": int(table.ignore_label),
        },
    )


class_table_from_msg = ClassTable.from_message  # inverse of class_table_fields (for consumers and tests)


# --- detections and label info (vision_msgs) --------------------------------------------------------------------


@dataclass(frozen=True)
class DetectionRow:
    """One vision_msgs/Detection2D: box centre and size in pixels, class id as string, and the detection id."""

    center_x: float
    center_y: float
    size_x: float
    size_y: float
    class_id: str
    score: float
    id: str


def detection_rows(
    segments: Sequence[Any], min_score: float, tracks: dict[int, Any] | None = None
) -> list[DetectionRow]:
    """The detections of a frame: its thing segments scoring at least ``min_score``.

    Detection id: with tracking (``tracks``), the track id, which vision_msgs defines as the id that stays the same
    for the same object across messages ("" while a track is younger than ``tracking.min_age``); without tracking the
    frame's segment id (valid within this message only). The vision_msgs layout differs between releases, so the
    binding that knows the installed release builds the messages from these rows."""
    rows = []
    for s in segments:
        if not s.is_thing or s.score < min_score:
            continue
        x, y, w, h = (float(v) for v in s.bbox)
        if tracks is None:
            det_id = str(s.id)
        else:
            track_id = int(getattr(tracks.get(s.id), "track_id", 0))
            det_id = str(track_id) if track_id else ""
        rows.append(DetectionRow(x + w / 2.0, y + h / 2.0, w, h, str(s.class_id), float(s.score), det_id))
    return rows


def label_rows(table: ClassTable) -> list[tuple[int, str]]:
    """(class id, class name) of every class: the class map of vision_msgs/LabelInfo."""
    return list(enumerate(table.names))


# --- camera info ------------------------------------------------------------------------------------------------


def camera_info_fields(header: Any, width: int, height: int, fx: float, fy: float | None = None) -> Fields:
    """A pinhole sensor_msgs/CameraInfo without distortion (principal point at the image centre)."""
    fy = fx if fy is None else fy
    cx, cy = (width - 1) / 2.0, (height - 1) / 2.0
    return Fields(
        CAMERA_INFO,
        {
            "header": header,
            "height": int(height),
            "width": int(width),
            "distortion_model": "plumb_bob",
            "d": np.zeros(5, dtype=np.float64),
            "k": np.array([fx, 0, cx, 0, fy, cy, 0, 0, 1], dtype=np.float64),
            "r": np.eye(3, dtype=np.float64).reshape(-1),
            "p": np.array([fx, 0, cx, 0, 0, fy, cy, 0, 0, 0, 1, 0], dtype=np.float64),
            "binning_x": 0,
            "binning_y": 0,
            "roi": roi_fields(0, 0, 0, 0),
        },
    )


def scaled_camera_info_fields(info: Any, header: Any, width: int, height: int) -> Fields:
    """``info`` re-stamped with an output frame's header and scaled to ``width`` x ``height`` (K, P, ROI): the
    camera_info the node publishes next to its outputs, so overlays line up in RViz."""
    roi = info.roi
    cam = scale_camera(
        info.k, info.p, (roi.x_offset, roi.y_offset, roi.width, roi.height), (info.width, info.height), (width, height)
    )
    return Fields(
        CAMERA_INFO,
        {
            "header": header,
            "height": int(height),
            "width": int(width),
            "distortion_model": info.distortion_model,
            "d": np.array(info.d, dtype=np.float64),
            "k": np.array(cam.k, dtype=np.float64),
            "r": np.array(info.r, dtype=np.float64),
            "p": np.array(cam.p, dtype=np.float64),
            "binning_x": int(info.binning_x),
            "binning_y": int(info.binning_y),
            "roi": roi_fields(*cam.roi, do_rectify=bool(roi.do_rectify)),
        },
    )
