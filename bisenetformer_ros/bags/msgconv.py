"""numpy arrays <-> rosbags message objects, for the ROS-free bag tools.

The field values come from :mod:`bisenetformer_ros.message_fields`, the same mapping the node's rclpy messages are
built from (:mod:`bisenetformer_ros.ros.messages`), so an output bag written by ``bag evaluate --write-bag`` carries
the content the node would have published for those frames (a test compares both). This module only turns those
values into rosbags objects of a type store; readers (camera and label images, panoptic tables, class tables) work
on either library's messages and are re-exported from the mapping.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from bisenetformer_ros import message_fields as mf
from bisenetformer_ros.data.classes import ClassTable
from bisenetformer_ros.message_fields import LABEL_ENCODINGS as LABEL_ENCODINGS
from bisenetformer_ros.message_fields import SegmentRecord as SegmentRecord
from bisenetformer_ros.message_fields import camera_image_to_rgb as camera_image_to_rgb
from bisenetformer_ros.message_fields import class_table_from_msg as class_table_from_msg
from bisenetformer_ros.message_fields import label_image_to_array as label_image_to_array
from bisenetformer_ros.message_fields import panoptic_from_msg as panoptic_from_msg
from bisenetformer_ros.message_fields import segment_record as segment_record
from bisenetformer_ros.message_fields import segments_from_ids as segments_from_ids
from bisenetformer_ros.message_fields import stamp_ns as stamp_ns


def to_rosbags(ts: Any, fields: Any) -> Any:
    """A :class:`~bisenetformer_ros.message_fields.Fields` tree as objects of the type store ``ts`` (rosbags takes
    the mapping's numpy arrays as they are)."""
    return mf.build(fields, lambda type_name, values: ts.types[type_name](**values), lambda value: value)


def make_header(ts: Any, stamp: int, frame_id: str) -> Any:
    return to_rosbags(ts, mf.header_fields(stamp, frame_id))


def image_msg(ts: Any, header: Any, array: np.ndarray, encoding: str) -> Any:
    """sensor_msgs/Image from an array (little-endian, rows packed: step = width * pixel size)."""
    return to_rosbags(ts, mf.image_fields(header, array, encoding))


def panoptic_msg(ts: Any, header: Any, ids: np.ndarray, segments: Sequence[Any]) -> Any:
    """bisenetformer_ros/PanopticSegmentation: mono16 id image with the same header plus the segment table."""
    return to_rosbags(ts, mf.panoptic_fields(header, ids, segments))


def class_table_msg(ts: Any, header: Any, table: ClassTable) -> Any:
    """bisenetformer_ros/ClassTable (colours as ColorRGBA in 0..1)."""
    return to_rosbags(ts, mf.class_table_fields(header, table))


def camera_info_msg(ts: Any, header: Any, width: int, height: int, fx: float, fy: float | None = None) -> Any:
    """A pinhole sensor_msgs/CameraInfo without distortion (principal point at the image centre)."""
    return to_rosbags(ts, mf.camera_info_fields(header, width, height, fx, fy))


def scaled_camera_info(ts: Any, info: Any, header: Any, width: int, height: int) -> Any:
    """``info`` re-stamped with an output frame's header and scaled to ``width`` x ``height`` (K, P, ROI)."""
    return to_rosbags(ts, mf.scaled_camera_info_fields(info, header, width, height))
