"""ROS messages from the ROS-free results: :class:`~bisenetformer_ros.inference.outputs.FrameOutputs` -> rclpy
messages, class tables, detections, camera info; and received camera messages -> RGB arrays.

Field mapping is the same as the bag writer's (``bisenetformer_ros.bags.msgconv``), so a recorded node output and an
offline evaluation output carry identical content. Image data is handed to rclpy as an ``array.array`` (one copy);
assigning a numpy array directly makes rclpy iterate element by element, ~100x slower at 1080p.
"""

from __future__ import annotations

import array
import importlib
from collections.abc import Sequence
from typing import Any

import numpy as np
from sensor_msgs.msg import CameraInfo, CompressedImage, Image, RegionOfInterest
from std_msgs.msg import ColorRGBA, Header

from bisenetformer_ros.data.classes import ClassTable
from bisenetformer_ros.image import compress_output, decode_compressed, decode_image
from bisenetformer_ros.image.camera import scale_camera
from bisenetformer_ros.model.postprocess import Segment
from bisenetformer_ros.msg import ClassTable as ClassTableMsg
from bisenetformer_ros.msg import PanopticSegment, PanopticSegmentation
from bisenetformer_ros.topics import FIXED_ENCODINGS


def vision_msgs_module() -> Any | None:
    """``vision_msgs.msg`` when installed (ROS machines), else None: detections/label_info are then not offered."""
    try:
        return importlib.import_module("vision_msgs.msg")
    except ImportError:
        return None


def _bytes_of(arr: np.ndarray) -> array.array:
    a = array.array("B")
    a.frombytes(memoryview(arr).cast("B"))
    return a


def image_msg(header: Header, arr: np.ndarray, encoding: str) -> Image:
    """Image message for an HxW (mono8/mono16) or HxWx3 (rgb8) array; little-endian, rows packed."""
    if encoding == "mono16":
        arr = np.ascontiguousarray(arr, dtype="<u2")
    elif arr.dtype != np.uint8:
        raise ValueError(f"{encoding} needs uint8 data, got {arr.dtype}")
    else:
        arr = np.ascontiguousarray(arr)
    h, w = arr.shape[:2]
    msg = Image()
    msg.header = header
    msg.height = int(h)
    msg.width = int(w)
    msg.encoding = encoding
    msg.is_bigendian = 0
    msg.step = int(arr.strides[0])
    msg.data = _bytes_of(arr)
    return msg


def segment_msg(seg: Segment, track: Any = None) -> PanopticSegment:
    """One segment; ``track`` (TrackInfo) fills ``track_id``/``frames_seen`` (0 = not tracked)."""
    x, y, w, h = (int(v) for v in seg.bbox)
    m = PanopticSegment()
    m.id = int(seg.id)
    m.class_id = int(seg.class_id)
    m.is_thing = bool(seg.is_thing)
    m.score = float(np.float32(seg.score))
    m.area = int(seg.area)
    m.bbox = RegionOfInterest(x_offset=x, y_offset=y, height=h, width=w, do_rectify=False)
    m.centroid_x = float(np.float32(seg.centroid[0]))
    m.centroid_y = float(np.float32(seg.centroid[1]))
    if track is not None:
        m.track_id = int(track.track_id)
        m.frames_seen = int(track.frames_seen)
    return m


def panoptic_msg(
    header: Header, ids: np.ndarray, segments: Sequence[Segment], tracks: dict[int, Any] | None = None
) -> PanopticSegmentation:
    """Segment-id image (mono16, same header) + segment table (with track ids when ``tracks`` is given)."""
    msg = PanopticSegmentation()
    msg.header = header
    msg.segment_ids = image_msg(header, np.asarray(ids, dtype=np.uint16), "mono16")
    tracks = tracks or {}
    msg.segments = [segment_msg(s, tracks.get(s.id)) for s in segments]
    return msg


def class_table_msg(header: Header, table: ClassTable) -> ClassTableMsg:
    msg = ClassTableMsg()
    msg.header = header
    msg.dataset = table.dataset
    msg.names = list(table.names)
    msg.colors = [ColorRGBA(r=r, g=g, b=b, a=a) for r, g, b, a in table.colors_rgba()]
    msg.is_thing = [bool(t) for t in table.is_thing]
    msg.ignore_label = int(table.ignore_label)
    return msg


class_table_from_msg = ClassTable.from_message  # inverse of class_table_msg (for consumers and tests)


def detections_msg(
    vm: Any,
    header: Header,
    segments: Sequence[Segment],
    table: ClassTable,
    min_score: float,
    tracks: dict[int, Any] | None = None,
) -> Any:
    """vision_msgs/Detection2DArray of the thing segments (class id as string).

    Detection id: with tracking (``tracks``), the track id, which vision_msgs defines as the id that stays the same
    for the same object across messages ("" while a track is younger than ``tracking.min_age``); without tracking the
    frame's segment id (valid within this message only)."""
    out = vm.Detection2DArray()
    out.header = header
    for s in segments:
        if not s.is_thing or s.score < min_score:
            continue
        det = vm.Detection2D()
        det.header = header
        x, y, w, h = (float(v) for v in s.bbox)
        center = det.bbox.center
        if hasattr(center, "position"):  # vision_msgs >= 4 (Humble and later): vision_msgs/Pose2D
            center.position.x = x + w / 2.0
            center.position.y = y + h / 2.0
        else:  # vision_msgs 3 (geometry_msgs/Pose2D)
            center.x = x + w / 2.0
            center.y = y + h / 2.0
        det.bbox.size_x = w
        det.bbox.size_y = h
        hyp = vm.ObjectHypothesisWithPose()
        if hasattr(hyp, "hypothesis"):
            hyp.hypothesis.class_id = str(s.class_id)
            hyp.hypothesis.score = float(s.score)
        else:  # pragma: no cover - vision_msgs 2.x
            hyp.id = str(s.class_id)
            hyp.score = float(s.score)
        det.results = [hyp]
        if hasattr(det, "id"):
            if tracks is None:
                det.id = str(s.id)
            else:
                track_id = int(getattr(tracks.get(s.id), "track_id", 0))
                det.id = str(track_id) if track_id else ""
        out.detections.append(det)
    return out


def label_info_msg(vm: Any, header: Header, table: ClassTable, threshold: float) -> Any | None:
    """vision_msgs/LabelInfo (vision_msgs >= 4.1), or None on older releases that lack it."""
    if not hasattr(vm, "LabelInfo"):
        return None
    msg = vm.LabelInfo()
    msg.header = header
    classes = []
    for i, name in enumerate(table.names):
        vc = vm.VisionClass()
        vc.class_id = i
        vc.class_name = name
        classes.append(vc)
    msg.class_map = classes
    msg.threshold = float(threshold)
    return msg


def scaled_camera_info(info: CameraInfo, header: Header, width: int, height: int) -> CameraInfo:
    """``info`` re-stamped with an output frame's header and scaled to ``width`` x ``height`` (K, P, ROI)."""
    roi = info.roi
    cam = scale_camera(
        info.k, info.p, (roi.x_offset, roi.y_offset, roi.width, roi.height), (info.width, info.height), (width, height)
    )
    out = CameraInfo()
    out.header = header
    out.distortion_model = info.distortion_model
    out.d = list(info.d)
    out.r = list(info.r)
    out.binning_x = info.binning_x
    out.binning_y = info.binning_y
    out.k = cam.k
    out.p = cam.p
    out.width = int(width)
    out.height = int(height)
    out.roi = RegionOfInterest(
        x_offset=cam.roi[0], y_offset=cam.roi[1], width=cam.roi[2], height=cam.roi[3], do_rectify=roi.do_rectify
    )
    return out


#: Outputs that are one plain image (FrameOutputs attribute of the same name) and their encoding.
IMAGE_OUTPUT_ENCODINGS: dict[str, str] = dict(FIXED_ENCODINGS)


def publish_outputs(
    publishers: dict[str, Any],
    header: Header,
    outs: Any,
    wanted: set[str] | frozenset[str],
    table: ClassTable,
    detection_min_score: float = 0.0,
    vm: Any | None = None,
) -> bool:
    """Build and publish the ``wanted`` outputs of one frame (``outs``: FrameOutputs); True if anything was sent.

    ``publishers`` maps output names (semantic, panoptic, detections and :data:`IMAGE_OUTPUT_ENCODINGS`) to rclpy
    publishers. Every message carries ``header``, the camera frame's own header.
    """
    sent = False
    for name, (arr, encoding) in image_outputs(outs).items():
        if name in wanted:
            publishers[name].publish(image_msg(header, arr, encoding))
            sent = True
    if "panoptic" in wanted and outs.panoptic_ids is not None:
        publishers["panoptic"].publish(panoptic_msg(header, outs.panoptic_ids, outs.segments, outs.tracks))
        sent = True
    if "detections" in wanted and outs.panoptic_ids is not None and vm is not None and "detections" in publishers:
        publishers["detections"].publish(
            detections_msg(vm, header, outs.segments, table, detection_min_score, outs.tracks)
        )
        sent = True
    return sent


def image_outputs(outs: Any) -> dict[str, tuple[np.ndarray, str]]:
    """Output name -> (array, encoding) for every plain image output present in ``outs`` (FrameOutputs)."""
    found = {name: (getattr(outs, name), enc) for name, enc in IMAGE_OUTPUT_ENCODINGS.items()}
    if outs.semantic is not None:
        found["semantic"] = outs.semantic
    return {name: v for name, v in found.items() if v[0] is not None}


def publish_compressed(
    publishers: dict[str, Any], header: Header, outs: Any, wanted: set[str], fmt: str = "jpeg", quality: int = 80
) -> bool:
    """Publish ``wanted`` image outputs as sensor_msgs/CompressedImage (``<topic>/compressed``, like image_transport's
    compressed plugin): colour images as ``fmt``, label/mask/confidence images as lossless PNG."""
    sent = False
    for name, (arr, encoding) in image_outputs(outs).items():
        if name in wanted and name in publishers:
            msg = CompressedImage()
            msg.header = header
            msg.format, data = compress_output(arr, encoding, fmt, quality)
            msg.data = data
            publishers[name].publish(msg)
            sent = True
    return sent


def message_to_rgb(msg: Image | CompressedImage, max_pixels: int, scaling: str) -> np.ndarray:
    """Decode a camera message with the package's converter (raises ImageFormatError with a cause)."""
    if isinstance(msg, CompressedImage):
        return decode_compressed(msg.format, msg.data, max_pixels=max_pixels, scaling=scaling)
    return decode_image(
        msg.encoding,
        msg.height,
        msg.width,
        msg.step,
        msg.data,
        bool(msg.is_bigendian),
        max_pixels=max_pixels,
        scaling=scaling,
    )
