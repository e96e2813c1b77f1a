"""ROS messages from the ROS-free results: :class:`~bisenetformer_ros.inference.outputs.FrameOutputs` -> rclpy
messages, class tables, detections, camera info; and received camera messages -> RGB arrays.

The field values come from :mod:`bisenetformer_ros.message_fields`, the mapping the bag writer
(``bisenetformer_ros.bags.msgconv``) builds its rosbags messages from too, so a recorded node output and an offline
evaluation output carry identical content by construction. This module only makes rclpy objects of those values.
Image data is handed to rclpy as an ``array.array`` (one copy); assigning a numpy array directly makes rclpy iterate
element by element, ~100x slower at 1080p.
"""

from __future__ import annotations

import array
import functools
import importlib
from collections.abc import Sequence
from typing import Any

import numpy as np
from sensor_msgs.msg import CameraInfo, CompressedImage, Image
from std_msgs.msg import Header

from bisenetformer_ros import message_fields as mf
from bisenetformer_ros.data.classes import ClassTable
from bisenetformer_ros.image import compress_output
from bisenetformer_ros.message_fields import class_table_from_msg as class_table_from_msg
from bisenetformer_ros.message_fields import image_outputs as image_outputs
from bisenetformer_ros.model.postprocess import Segment
from bisenetformer_ros.msg import ClassTable as ClassTableMsg
from bisenetformer_ros.msg import PanopticSegment, PanopticSegmentation


def vision_msgs_module() -> Any | None:
    """``vision_msgs.msg`` when installed (ROS machines), else None: detections/label_info are then not offered."""
    try:
        return importlib.import_module("vision_msgs.msg")
    except ImportError:
        return None


@functools.cache
def _message_class(type_name: str) -> type:
    """rclpy class of a ROS type name (``sensor_msgs/msg/Image`` -> ``sensor_msgs.msg.Image``)."""
    package, kind, name = type_name.split("/")
    return getattr(importlib.import_module(f"{package}.{kind}"), name)


def _rclpy_value(value: Any) -> Any:
    """The mapping's numpy arrays in the form rclpy's setters take without a per-element loop."""
    if isinstance(value, np.ndarray):
        if value.dtype == np.uint8:
            data = array.array("B")
            data.frombytes(memoryview(np.ascontiguousarray(value)).cast("B"))
            return data
        return value.tolist()
    return value


def _construct(type_name: str, values: dict[str, Any]) -> Any:
    # Field by field rather than ``cls(**values)``: rclpy's keyword constructor copies uint8[] data once more.
    msg = _message_class(type_name)()
    for name, value in values.items():
        setattr(msg, name, value)
    return msg


def to_rclpy(fields: Any) -> Any:
    """A :class:`~bisenetformer_ros.message_fields.Fields` tree as rclpy message objects."""
    return mf.build(fields, _construct, _rclpy_value)


def image_msg(header: Header, arr: np.ndarray, encoding: str) -> Image:
    """Image message for an HxW (mono8/mono16) or HxWx3 (rgb8) array; little-endian, rows packed."""
    return to_rclpy(mf.image_fields(header, arr, encoding))


def segment_msg(seg: Segment, track: Any = None) -> PanopticSegment:
    """One segment; ``track`` (TrackInfo) fills ``track_id``/``frames_seen`` (0 = not tracked)."""
    return to_rclpy(mf.segment_fields(seg, track))


def panoptic_msg(
    header: Header, ids: np.ndarray, segments: Sequence[Segment], tracks: dict[int, Any] | None = None
) -> PanopticSegmentation:
    """Segment-id image (mono16, same header) + segment table (with track ids when ``tracks`` is given)."""
    return to_rclpy(mf.panoptic_fields(header, ids, segments, tracks))


def class_table_msg(header: Header, table: ClassTable) -> ClassTableMsg:
    return to_rclpy(mf.class_table_fields(header, table))


def detections_msg(
    vm: Any,
    header: Header,
    segments: Sequence[Segment],
    table: ClassTable,
    min_score: float,
    tracks: dict[int, Any] | None = None,
) -> Any:
    """vision_msgs/Detection2DArray of the thing segments (which ones and their ids:
    :func:`~bisenetformer_ros.message_fields.detection_rows`); the layout follows the installed vision_msgs release."""
    out = vm.Detection2DArray()
    out.header = header
    for row in mf.detection_rows(segments, min_score, tracks):
        det = vm.Detection2D()
        det.header = header
        center = det.bbox.center
        if hasattr(center, "position"):  # vision_msgs >= 4 (Humble and later): vision_msgs/Pose2D
            center.position.x = row.center_x
            center.position.y = row.center_y
        else:  # vision_msgs 3 (geometry_msgs/Pose2D)
            center.x = row.center_x
            center.y = row.center_y
        det.bbox.size_x = row.size_x
        det.bbox.size_y = row.size_y
        hyp = vm.ObjectHypothesisWithPose()
        if hasattr(hyp, "hypothesis"):
            hyp.hypothesis.class_id = row.class_id
            hyp.hypothesis.score = row.score
        else:  # pragma: no cover - vision_msgs 2.x
            hyp.id = row.class_id
            hyp.score = row.score
        det.results = [hyp]
        if hasattr(det, "id"):
            det.id = row.id
        out.detections.append(det)
    return out


def label_info_msg(vm: Any, header: Header, table: ClassTable, threshold: float) -> Any | None:
    """vision_msgs/LabelInfo (vision_msgs >= 4.1), or None on older releases that lack it."""
    if not hasattr(vm, "LabelInfo"):
        return None
    msg = vm.LabelInfo()
    msg.header = header
    msg.class_map = [vm.VisionClass(class_id=i, class_name=name) for i, name in mf.label_rows(table)]
    msg.threshold = float(threshold)
    return msg


def scaled_camera_info(info: CameraInfo, header: Header, width: int, height: int) -> CameraInfo:
    """``info`` re-stamped with an output frame's header and scaled to ``width`` x ``height`` (K, P, ROI)."""
    return to_rclpy(mf.scaled_camera_info_fields(info, header, width, height))


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

    ``publishers`` maps output names (semantic, panoptic, detections and the catalogue's
    :data:`~bisenetformer_ros.topics.FIXED_ENCODINGS`) to rclpy
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
    return mf.camera_image_to_rgb(msg, max_pixels=max_pixels, scaling=scaling)
