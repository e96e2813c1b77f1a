"""Topic names of the node's outputs, in one place for the node, its ``--help``, ``bag evaluate``'s output bags and
the demo (no ROS imports).

Camera info of the outputs: image_transport (and so RViz's Camera display, image_geometry, message_filters based
consumers) pairs an image topic ``<a>/<b>/name`` with ``<a>/<b>/camera_info``. The outputs nested one level down
(``semantic/color``, ``semantic/confidence``, ``panoptic/color``) therefore get their camera info, scaled to the
output size and stamped with the output's header, on ``semantic/camera_info`` and ``panoptic/camera_info``. The
outputs directly in the camera namespace (``semantic``, ``overlay``, ``class_mask``) share that namespace with the
node's input, so their camera info *is* the input ``camera_info``; it matches them exactly at
``output_resolution: camera`` (same size, same headers). Publishing a second message on the input topic would loop
back into the node.
"""

from __future__ import annotations

#: Output name -> topic (relative to the camera namespace).
OUTPUT_TOPICS: dict[str, str] = {
    "semantic": "semantic",
    "semantic_color": "semantic/color",
    "semantic_confidence": "semantic/confidence",
    "overlay": "overlay",
    "class_mask": "class_mask",
    "panoptic": "panoptic",
    "panoptic_color": "panoptic/color",
    "detections": "detections",
}

#: Outputs that are sensor_msgs/Image (also offered as ``<topic>/compressed``).
IMAGE_OUTPUTS: frozenset[str] = frozenset(
    {"semantic", "semantic_color", "semantic_confidence", "overlay", "class_mask", "panoptic_color"}
)

#: Latched per-camera topics: the class table (own message) and vision_msgs/LabelInfo.
CLASS_INFO_TOPIC = "class_info"
LABEL_INFO_TOPIC = "label_info"


def camera_info_topic_for(topic: str) -> str:
    """The camera-info topic image_transport pairs with image ``topic`` (relative names stay relative)."""
    head, sep, _ = topic.rpartition("/")
    return f"{head}/camera_info" if sep else "camera_info"


def output_camera_info_topics() -> dict[str, tuple[str, ...]]:
    """Camera-info topics the node publishes -> the image outputs they describe (the input's own excluded)."""
    out: dict[str, list[str]] = {}
    for name, topic in OUTPUT_TOPICS.items():
        if name not in IMAGE_OUTPUTS:
            continue
        info = camera_info_topic_for(topic)
        if info != "camera_info":
            out.setdefault(info, []).append(name)
    return {k: tuple(v) for k, v in out.items()}


#: ``semantic/camera_info`` and ``panoptic/camera_info``.
OUTPUT_CAMERA_INFO_TOPICS: tuple[str, ...] = tuple(output_camera_info_topics())
