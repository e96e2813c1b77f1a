"""numpy arrays <-> rosbags message objects, for the ROS-free bag tools.

The node turns the arrays of :func:`bisenetformer_ros.inference.outputs.render_outputs` into rclpy messages; the
offline tools turn the very same arrays into rosbags messages here, field by field in the same way, so an output bag
written by ``bag evaluate --write-bag`` carries the content the node would have published for those frames (a test
compares both). Camera images are decoded with the node's own converter (every encoding it supports); label images
(mono8/mono16) are decoded here because they are class ids, never colour.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from bisenetformer_ros.bags.typestore import CAMERA_INFO, CLASS_TABLE, IMAGE, PANOPTIC_SEGMENT, PANOPTIC_SEGMENTATION
from bisenetformer_ros.data.classes import ClassTable
from bisenetformer_ros.image.camera import scale_camera

LABEL_ENCODINGS = {"mono8": np.uint8, "8UC1": np.uint8, "mono16": np.uint16, "16UC1": np.uint16}


def stamp_ns(header: Any) -> int:
    """Header stamp as integer nanoseconds (the key that pairs images, ground truth and outputs)."""
    return int(header.stamp.sec) * 1_000_000_000 + int(header.stamp.nanosec)


def make_header(ts: Any, stamp: int, frame_id: str) -> Any:
    time = ts.types["builtin_interfaces/msg/Time"](sec=int(stamp // 1_000_000_000), nanosec=int(stamp % 1_000_000_000))
    return ts.types["std_msgs/msg/Header"](stamp=time, frame_id=str(frame_id))


def _pack(array: np.ndarray, encoding: str) -> tuple[int, int, int, np.ndarray]:
    """(height, width, step, flat uint8 data) of a C-contiguous little-endian image in ``encoding``."""
    if encoding in ("rgb8", "bgr8"):
        if array.ndim != 3 or array.shape[2] != 3:
            raise ValueError(f"{encoding} needs an HxWx3 array, got shape {array.shape}")
        arr = np.ascontiguousarray(array, dtype=np.uint8)
        h, w = arr.shape[:2]
        return h, w, w * 3, arr.reshape(-1)
    if encoding in ("mono8", "8UC1"):
        arr = np.ascontiguousarray(array, dtype=np.uint8)
        h, w = arr.shape[:2]
        return h, w, w, arr.reshape(-1)
    if encoding in ("mono16", "16UC1"):
        arr = np.ascontiguousarray(array, dtype="<u2")
        h, w = arr.shape[:2]
        return h, w, w * 2, arr.view(np.uint8).reshape(-1)
    raise ValueError(f"cannot write images with encoding '{encoding}' (supported: rgb8, bgr8, mono8, mono16)")


def image_msg(ts: Any, header: Any, array: np.ndarray, encoding: str) -> Any:
    """sensor_msgs/Image from an array (little-endian, rows packed: step = width * pixel size)."""
    h, w, step, data = _pack(array, encoding)
    return ts.types[IMAGE](header=header, height=h, width=w, encoding=encoding, is_bigendian=0, step=step, data=data)


def camera_image_to_rgb(msg: Any) -> np.ndarray:
    """Decode a sensor_msgs/Image or CompressedImage (rosbags object) to HxWx3 uint8 RGB with the node's converter.

    Raises ValueError (with the cause) for malformed or unsupported images, which callers count as skipped frames.
    """
    from bisenetformer_ros.image import decode_compressed, decode_image

    if hasattr(msg, "format") and not hasattr(msg, "encoding"):
        return decode_compressed(msg.format, bytes(msg.data))
    return decode_image(msg.encoding, int(msg.height), int(msg.width), int(msg.step), msg.data, bool(msg.is_bigendian))


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


def panoptic_msg(ts: Any, header: Any, ids: np.ndarray, segments: Sequence[Any]) -> Any:
    """bisenetformer_ros/PanopticSegmentation: mono16 id image with the same header plus the segment table."""
    roi_t = ts.types["sensor_msgs/msg/RegionOfInterest"]
    seg_t = ts.types[PANOPTIC_SEGMENT]
    rows = []
    for s in segments:
        r = s if isinstance(s, SegmentRecord) else segment_record(s)
        x, y, w, h = r.bbox
        rows.append(
            seg_t(
                id=r.id,
                class_id=r.class_id,
                is_thing=r.is_thing,
                score=float(np.float32(r.score)),
                area=r.area,
                bbox=roi_t(x_offset=x, y_offset=y, height=h, width=w, do_rectify=False),
                centroid_x=float(np.float32(r.centroid[0])),
                centroid_y=float(np.float32(r.centroid[1])),
                track_id=int(r.track_id),
                frames_seen=int(r.frames_seen),
            )
        )
    return ts.types[PANOPTIC_SEGMENTATION](
        header=header, segment_ids=image_msg(ts, header, np.asarray(ids, dtype=np.uint16), "mono16"), segments=rows
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


def class_table_msg(ts: Any, header: Any, table: ClassTable) -> Any:
    """bisenetformer_ros/ClassTable (colours as ColorRGBA in 0..1)."""
    rgba = ts.types["std_msgs/msg/ColorRGBA"]
    return ts.types[CLASS_TABLE](
        header=header,
        dataset=table.dataset,
        names=list(table.names),
        colors=[rgba(r=r, g=g, b=b, a=a) for r, g, b, a in table.colors_rgba()],
        is_thing=np.asarray(table.is_thing, dtype=bool),
        ignore_label=int(table.ignore_label),
    )


class_table_from_msg = ClassTable.from_message


def camera_info_msg(ts: Any, header: Any, width: int, height: int, fx: float, fy: float | None = None) -> Any:
    """A pinhole sensor_msgs/CameraInfo without distortion (principal point at the image centre)."""
    fy = fx if fy is None else fy
    cx, cy = (width - 1) / 2.0, (height - 1) / 2.0
    k = np.array([fx, 0, cx, 0, fy, cy, 0, 0, 1], dtype=np.float64)
    p = np.array([fx, 0, cx, 0, 0, fy, cy, 0, 0, 0, 1, 0], dtype=np.float64)
    roi = ts.types["sensor_msgs/msg/RegionOfInterest"](x_offset=0, y_offset=0, height=0, width=0, do_rectify=False)
    return ts.types[CAMERA_INFO](
        header=header,
        height=int(height),
        width=int(width),
        distortion_model="plumb_bob",
        d=np.zeros(5, dtype=np.float64),
        k=k,
        r=np.eye(3, dtype=np.float64).reshape(-1),
        p=p,
        binning_x=0,
        binning_y=0,
        roi=roi,
    )


def scaled_camera_info(ts: Any, info: Any, header: Any, width: int, height: int) -> Any:
    """``info`` re-stamped with an output frame's header and scaled to ``width`` x ``height`` (K, P, ROI): the
    camera_info the node publishes next to its outputs, so overlays line up in RViz."""
    roi = info.roi
    cam = scale_camera(
        info.k, info.p, (roi.x_offset, roi.y_offset, roi.width, roi.height), (info.width, info.height), (width, height)
    )
    roi_t = ts.types["sensor_msgs/msg/RegionOfInterest"]
    return ts.types[CAMERA_INFO](
        header=header,
        height=int(height),
        width=int(width),
        distortion_model=info.distortion_model,
        d=np.array(info.d, dtype=np.float64),
        k=np.array(cam.k, dtype=np.float64),
        r=np.array(info.r, dtype=np.float64),
        p=np.array(cam.p, dtype=np.float64),
        binning_x=info.binning_x,
        binning_y=info.binning_y,
        roi=roi_t(
            x_offset=cam.roi[0], y_offset=cam.roi[1], height=cam.roi[3], width=cam.roi[2], do_rectify=roi.do_rectify
        ),
    )
