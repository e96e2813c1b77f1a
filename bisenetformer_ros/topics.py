"""The node's output catalogue: every output's name, topic, message type, encoding, task and description, in one
table for the node, its parameters and ``--help``, the renderer, ``bag evaluate``'s output bags and the demo (no ROS
imports, so the core and ``--help`` can use it).

An output's *name* is its parameter suffix (``outputs.<name>``), its :class:`~bisenetformer_ros.inference.outputs.
FrameOutputs` entry and the key of the node's publishers; its *topic* is relative to the camera namespace.

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

from dataclasses import dataclass

from bisenetformer_ros.message_fields import IMAGE, PANOPTIC_SEGMENTATION

#: Full type name of the one output from an optional package (vision_msgs).
DETECTION_ARRAY = "vision_msgs/msg/Detection2DArray"

#: The post-processing tasks (parameter ``task`` adds ``all``).
SEMANTIC = "semantic"
PANOPTIC = "panoptic"


@dataclass(frozen=True)
class OutputSpec:
    """One per-frame output of the node.

    ``tasks``: the post-processing tasks that can produce it, preferred first (``overlay`` is drawn from the semantic
    result, or from the panoptic segments under ``task: panoptic``). ``source``: the
    :func:`~bisenetformer_ros.inference.outputs.render_outputs` entry its data comes from (``detections`` are built
    from the panoptic segments). ``encoding``: of an image output; None where it depends on the frame (``semantic``:
    mono8, mono16 above 255 classes). ``recorded``: part of ``bag evaluate``'s output bag and of the demo's
    recording (what a user looks at in RViz).
    """

    name: str
    topic: str
    msgtype: str
    encoding: str | None
    tasks: tuple[str, ...]
    description: str
    source: str
    recorded: bool = False
    #: README-only remarks beyond ``description`` (the topic table of :func:`markdown_topic_table`).
    notes: str = ""

    @property
    def is_image(self) -> bool:
        """A sensor_msgs/Image output (also offered as ``<topic>/compressed``)."""
        return self.msgtype == IMAGE

    @property
    def short_type(self) -> str:
        """``sensor_msgs/Image`` as ROS documentation writes a type."""
        return self.msgtype.replace("/msg/", "/")


#: Every per-frame output, in the order of parameters, docs and publishers.
OUTPUTS: tuple[OutputSpec, ...] = (
    OutputSpec(
        "semantic",
        "semantic",
        IMAGE,
        None,
        (SEMANTIC,),
        "class-id image (mono8, mono16 above 255 classes)",
        "semantic",
        recorded=True,
    ),
    OutputSpec(
        "semantic_color",
        "semantic/color",
        IMAGE,
        "rgb8",
        (SEMANTIC,),
        "class colours (rgb8) on `semantic/color`",
        "semantic_color",
        recorded=True,
    ),
    OutputSpec(
        "semantic_confidence",
        "semantic/confidence",
        IMAGE,
        "mono8",
        (SEMANTIC,),
        "per-pixel confidence of the class label, mono8 = share of the winning class in the pixel's class scores "
        "x 255, on `semantic/confidence`",
        "semantic_confidence",
        notes="1/K = undecided, 255 = one class only; for uncertainty-aware mapping",
    ),
    OutputSpec(
        "overlay",
        "overlay",
        IMAGE,
        "rgb8",
        (SEMANTIC, PANOPTIC),
        "camera image blended with class colours and instance outlines (rgb8)",
        "overlay",
        recorded=True,
    ),
    OutputSpec(
        "class_mask",
        "class_mask",
        IMAGE,
        "mono8",
        (SEMANTIC,),
        "mono8 mask, 255 on the classes listed in `mask_classes` (e.g. drivable area for a costmap), else 0; "
        "published only while `mask_classes` names a class",
        "class_mask",
    ),
    OutputSpec(
        "panoptic",
        "panoptic",
        PANOPTIC_SEGMENTATION,
        None,
        (PANOPTIC,),
        "segment-id image + segment table (bisenetformer_ros/PanopticSegmentation)",
        "panoptic",
        recorded=True,
        notes="mono16 ids; per segment class, score, area, box, centroid, track id and frames seen "
        "([Tracking](#tracking-instance-identities-across-frames))",
    ),
    OutputSpec(
        "panoptic_color",
        "panoptic/color",
        IMAGE,
        "rgb8",
        (PANOPTIC,),
        "a colour per segment (rgb8) on `panoptic/color`",
        "panoptic_color",
        recorded=True,
    ),
    OutputSpec(
        "detections",
        "detections",
        DETECTION_ARRAY,
        None,
        (PANOPTIC,),
        "thing segments as vision_msgs/Detection2DArray (only where vision_msgs is installed)",
        "panoptic",
        notes="detection id = track id",
    ),
)

#: Output name -> its entry.
OUTPUT_SPECS: dict[str, OutputSpec] = {o.name: o for o in OUTPUTS}

#: Output name -> topic (relative to the camera namespace).
OUTPUT_TOPICS: dict[str, str] = {o.name: o.topic for o in OUTPUTS}

#: Outputs that are sensor_msgs/Image (also offered as ``<topic>/compressed``).
IMAGE_OUTPUTS: frozenset[str] = frozenset(o.name for o in OUTPUTS if o.is_image)

#: Image outputs of one fixed encoding (a FrameOutputs array of the same name) -> that encoding.
FIXED_ENCODINGS: dict[str, str] = {o.name: o.encoding for o in OUTPUTS if o.is_image and o.encoding is not None}

#: The entries :func:`~bisenetformer_ros.inference.outputs.render_outputs` produces (everything but derived outputs).
RENDERED_OUTPUTS: tuple[str, ...] = tuple(o.name for o in OUTPUTS if o.source == o.name)

#: Outputs written by ``bag evaluate`` and recorded by the demo.
RECORDED_OUTPUTS: tuple[str, ...] = tuple(o.name for o in OUTPUTS if o.recorded)

#: Latched per-camera topics: the class table (own message) and vision_msgs/LabelInfo.
CLASS_INFO_TOPIC = "class_info"
LABEL_INFO_TOPIC = "label_info"


def in_namespace(ns: str, topic: str) -> str:
    """``topic`` inside camera namespace ``ns`` as the node names it: '' = the node's own namespace, and relative
    names stay relative (remapping and ``__ns`` apply), e.g. ``('front', 'semantic')`` -> ``front/semantic``."""
    ns = ns.rstrip("/")
    return f"{ns}/{topic}" if ns else topic


def absolute_topic(ns: str, topic: str) -> str:
    """``topic`` under namespace ``ns`` as a fully qualified name, as bags store topics (no node resolves them):
    ``('bisenetformer', 'semantic')`` and ``('/bisenetformer/', 'semantic')`` -> ``/bisenetformer/semantic``."""
    ns = "/" + ns.strip("/") if ns.strip("/") else ""
    return f"{ns}/{topic}"


def camera_info_topic_for(topic: str) -> str:
    """The camera-info topic image_transport pairs with image ``topic`` (relative names stay relative)."""
    head, sep, _ = topic.rpartition("/")
    return f"{head}/camera_info" if sep else "camera_info"


def output_camera_info_topics() -> dict[str, tuple[str, ...]]:
    """Camera-info topics the node publishes -> the image outputs they describe (the input's own excluded)."""
    out: dict[str, list[str]] = {}
    for o in OUTPUTS:
        if not o.is_image:
            continue
        info = camera_info_topic_for(o.topic)
        if info != "camera_info":
            out.setdefault(info, []).append(o.name)
    return {k: tuple(v) for k, v in out.items()}


#: ``semantic/camera_info`` and ``panoptic/camera_info``.
OUTPUT_CAMERA_INFO_TOPICS: tuple[str, ...] = tuple(output_camera_info_topics())


#: Input topics per camera namespace, for the documentation: (topic, type, notes).
INPUT_TOPICS: tuple[tuple[str, str, str], ...] = (
    (
        "image",
        "sensor_msgs/Image",
        "rgb8, bgr8, rgba8, bgra8, rgb16..bgra16, mono8, mono16, 8UC1/3/4, 16UC1/3, yuv422 (uyvy, yuyv), bayer_* 8/16",
    ),
    ("image/compressed", "sensor_msgs/CompressedImage", "jpeg/png, with `input_transport: compressed`"),
    ("camera_info", "sensor_msgs/CameraInfo", "optional; scaled and re-stamped onto the outputs"),
)


def markdown_topic_table() -> str:
    """The README's topic table (``tools/param_table.py --topics``): the inputs, every catalogue output, and the
    topics that accompany them (compressed variants, camera info, class tables, diagnostics)."""

    def row(direction: str, topic: str, msgtype: str, notes: str) -> str:
        return f"| {direction} | `{topic}` | {msgtype} | {notes} |"

    lines = ["| Direction | Topic | Type | Notes |", "|---|---|---|---|"]
    lines += [row("in", topic, msgtype, notes) for topic, msgtype, notes in INPUT_TOPICS]
    for o in OUTPUTS:
        notes = f"{o.description}; {o.notes}" if o.notes else o.description
        lines.append(row("out", o.topic, o.short_type, notes + f" (parameter `outputs.{o.name}`)"))
    images = [o.topic for o in OUTPUTS if o.is_image]
    lines.append(
        row(
            "out",
            "<image output>/compressed",
            "sensor_msgs/CompressedImage",
            f"every image output ({', '.join(images)}) also compressed, published only to its subscribers (like "
            "image_transport's compressed plugin): colour images in `compressed_format`, labels, masks and "
            "confidence always lossless png",
        )
    )
    for info, described in output_camera_info_topics().items():
        lines.append(
            row(
                "out",
                info,
                "sensor_msgs/CameraInfo",
                f"the input camera_info with the output's header, scaled to the output size, for "
                f"{', '.join(OUTPUT_SPECS[n].topic for n in described)} (image_transport's pairing)",
            )
        )
    lines.append(
        row(
            "out",
            CLASS_INFO_TOPIC,
            "bisenetformer_ros/ClassTable",
            "class names, colours, thing/stuff; transient local",
        )
    )
    lines.append(
        row("out", LABEL_INFO_TOPIC, "vision_msgs/LabelInfo", "transient local; where vision_msgs is installed")
    )
    lines.append(row("out", "/diagnostics", "diagnostic_msgs/DiagnosticArray", "one status per camera"))
    return "\n".join(lines)
