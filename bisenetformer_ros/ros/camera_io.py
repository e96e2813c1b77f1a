"""One camera namespace of the node: its subscriptions, its publishers (every output of the catalogue, their
``<topic>/compressed`` twins, the scaled camera infos, the latched class tables) and how a frame's outputs go out.

Topic names come from :mod:`bisenetformer_ros.topics` and stay relative to the camera namespace, so ``__ns`` and
remappings apply; every endpoint is created through :class:`~bisenetformer_ros.ros.qos_watch.QosWatch`, which
records incompatible-QoS peers in this camera's ``qos_issues`` for ``/diagnostics``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from sensor_msgs.msg import CameraInfo, CompressedImage, Image

from bisenetformer_ros.image import check_compressed, check_layout
from bisenetformer_ros.msg import ClassTable as ClassTableMsg
from bisenetformer_ros.msg import PanopticSegmentation
from bisenetformer_ros.ros import messages as M
from bisenetformer_ros.ros.qos_watch import QosIssue, QosWatch, forget_input_issues
from bisenetformer_ros.ros.stats import CameraStats
from bisenetformer_ros.topics import (
    CLASS_INFO_TOPIC,
    DETECTION_ARRAY,
    IMAGE,
    LABEL_INFO_TOPIC,
    OUTPUT_CAMERA_INFO_TOPICS,
    OUTPUTS,
    PANOPTIC_SEGMENTATION,
    in_namespace,
)


def check_frame(msg: Image | CompressedImage, max_pixels: int) -> None:
    """Check a received frame's header in O(1), without decoding (raises ImageFormatError with a cause): a corrupt
    or bomb-sized frame must not displace a good waiting one."""
    if isinstance(msg, CompressedImage):
        check_compressed(msg.format, msg.data, max_pixels=max_pixels)
    else:
        check_layout(msg.encoding, msg.height, msg.width, msg.step, len(msg.data), max_pixels=max_pixels)


def input_topic(params: Mapping[str, Any]) -> str:
    """The image topic a camera subscribes to (relative to its namespace) for ``input_transport``."""
    return "image/compressed" if params["input_transport"] == "compressed" else "image"


@dataclass
class Camera:
    """One camera namespace: its topics, publishers, last camera_info and statistics."""

    index: int
    ns: str
    label: str
    stats: CameraStats
    subscriptions: list[Any] = field(default_factory=list)
    publishers: dict[str, Any] = field(default_factory=dict)  # output name -> publisher
    compressed: dict[str, Any] = field(default_factory=dict)  # image outputs' <topic>/compressed publishers
    info_publishers: dict[str, Any] = field(default_factory=dict)  # semantic/camera_info, panoptic/camera_info
    latched: list[Any] = field(default_factory=list)  # class_info (+ label_info)
    camera_info: Any = None
    qos_issues: dict[str, QosIssue] = field(default_factory=dict)  # topic -> issue

    def all_publishers(self) -> list[Any]:
        """Every publisher this camera owns (for cleanup and counting)."""
        return [*self.publishers.values(), *self.compressed.values(), *self.info_publishers.values(), *self.latched]

    def subscribed(self, name: str) -> bool:
        """Whether output ``name`` has a subscriber, raw or ``<topic>/compressed``."""
        return self.publishers[name].get_subscription_count() > 0 or self.compressed_subscribed(name)

    def compressed_subscribed(self, name: str) -> bool:
        pub = self.compressed.get(name)
        return pub is not None and pub.get_subscription_count() > 0

    # ------------------------------------------------------------------------------------------- endpoints
    def create_publishers(self, qos: QosWatch, params: Mapping[str, Any], out_qos: Any, latched: Any, vm: Any) -> None:
        """Every output publisher (configure); ``vm`` is vision_msgs.msg or None (no detections, no label_info)."""
        msg_types = {IMAGE: Image, PANOPTIC_SEGMENTATION: PanopticSegmentation}
        if vm is not None:
            msg_types[DETECTION_ARRAY] = vm.Detection2DArray

        def publish_to(msg_type: Any, topic: str, profile: Any = out_qos) -> Any:
            return qos.publisher(self.qos_issues, msg_type, in_namespace(self.ns, topic), profile)

        for out in OUTPUTS:
            msg_type = msg_types.get(out.msgtype)
            if msg_type is None:  # detections without vision_msgs
                continue
            self.publishers[out.name] = publish_to(msg_type, out.topic)
            if out.is_image:
                self.compressed[out.name] = publish_to(CompressedImage, f"{out.topic}/compressed")
        if params["camera_info_passthrough"]:
            for info_topic in OUTPUT_CAMERA_INFO_TOPICS:
                self.info_publishers[info_topic] = publish_to(CameraInfo, info_topic)
        self.latched.append(publish_to(ClassTableMsg, CLASS_INFO_TOPIC, latched))
        if vm is not None and hasattr(vm, "LabelInfo"):
            self.latched.append(publish_to(vm.LabelInfo, LABEL_INFO_TOPIC, latched))

    def subscribe(self, qos: QosWatch, params: Mapping[str, Any], in_qos: Any, on_frame: Callable[[Any], None]) -> None:
        """The image subscription (raw or compressed) and, with ``camera_info_passthrough``, the camera info."""
        msg_type = CompressedImage if params["input_transport"] == "compressed" else Image
        topics: list[tuple[Any, str, Callable[[Any], None]]] = [(msg_type, input_topic(params), on_frame)]
        if params["camera_info_passthrough"]:
            topics.append((CameraInfo, "camera_info", self._on_camera_info))
        for msg_type, topic, callback in topics:
            sub = qos.subscription(self.qos_issues, msg_type, in_namespace(self.ns, topic), callback, in_qos)
            self.subscriptions.append(sub)

    def _on_camera_info(self, msg: CameraInfo) -> None:
        self.camera_info = msg

    def unsubscribe(self, node: Any) -> None:
        for sub in self.subscriptions:
            node.destroy_subscription(sub)
        self.subscriptions.clear()
        forget_input_issues(self.qos_issues)  # our subscription is gone, so is its mismatch

    def destroy_publishers(self, node: Any) -> None:
        for pub in self.all_publishers():
            node.destroy_publisher(pub)
        self.publishers.clear()
        self.compressed.clear()
        self.info_publishers.clear()
        self.latched.clear()
        self.qos_issues.clear()

    # ------------------------------------------------------------------------------------------- publishing
    def publish_class_table(self, header: Any, table: Any, vm: Any, threshold: float) -> None:
        """The latched class table (and vision_msgs/LabelInfo where offered), once per activation."""
        self.latched[0].publish(M.class_table_msg(header, table))
        if len(self.latched) > 1:
            msg = M.label_info_msg(vm, header, table, threshold)
            if msg is not None:
                self.latched[1].publish(msg)

    def publish(self, header: Any, outs: Any, wanted: set[str], params: Mapping[str, Any], table: Any, vm: Any) -> bool:
        """Publish one frame's rendered ``outs`` with the input's ``header``; True if anything was sent."""
        lazy = params["lazy"]
        # Raw topics as configured (lazy or not); <topic>/compressed only to subscribers, as image_transport does.
        raw = {n for n in wanted if not lazy or self.publishers[n].get_subscription_count() > 0}
        sent = M.publish_outputs(self.publishers, header, outs, raw, table, float(params["detection_min_score"]), vm)
        compressed = {n for n in wanted if self.compressed_subscribed(n)}
        if compressed:
            fmt, quality = params["compressed_format"], int(params["compressed_jpeg_quality"])
            sent = M.publish_compressed(self.compressed, header, outs, compressed, fmt, quality) or sent
        info = self.camera_info
        if sent and info is not None and outs.size is not None:
            scaled = None
            for pub in self.info_publishers.values():
                if not lazy or pub.get_subscription_count() > 0:
                    if scaled is None:
                        scaled = M.scaled_camera_info(info, header, outs.size[1], outs.size[0])
                    pub.publish(scaled)
        return sent
