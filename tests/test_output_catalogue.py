"""The one output catalogue (bisenetformer_ros.topics) and the views every user of it derives; no ROS needed."""

from __future__ import annotations

from bisenetformer_ros.bags.evaluate import OUTPUT_TOPICS as BAG_TOPICS
from bisenetformer_ros.inference.outputs import OUTPUT_NAMES, FrameOutputs
from bisenetformer_ros.ros.parameters import OUTPUT_PARAMS, SPECS, help_text
from bisenetformer_ros.topics import (
    CLASS_INFO_TOPIC,
    FIXED_ENCODINGS,
    IMAGE_OUTPUTS,
    OUTPUT_CAMERA_INFO_TOPICS,
    OUTPUT_SPECS,
    OUTPUTS,
    RECORDED_OUTPUTS,
    absolute_topic,
    in_namespace,
)


def test_namespace_joins_keep_their_two_meanings_apart() -> None:
    # The node: relative names stay relative, so __ns and remapping apply.
    assert in_namespace("", "semantic") == "semantic"
    assert in_namespace("front", "semantic/color") == "front/semantic/color"
    assert in_namespace("/front/", "semantic") == "/front/semantic"
    # Bags: fully qualified names, nothing resolves them later.
    assert absolute_topic("", "semantic") == "/semantic"
    assert absolute_topic("bisenetformer", "panoptic/color") == "/bisenetformer/panoptic/color"
    assert absolute_topic("/bisenetformer/", "class_info") == "/bisenetformer/class_info"


def test_every_view_comes_from_the_catalogue() -> None:
    names = [o.name for o in OUTPUTS]
    assert len(set(names)) == len(names) and len({o.topic for o in OUTPUTS}) == len(names)
    assert tuple(f"outputs.{n}" for n in names) == OUTPUT_PARAMS
    for o in OUTPUTS:
        assert o.description in SPECS[f"outputs.{o.name}"].description
        assert o.source in OUTPUT_NAMES  # render_outputs produces what every output is made of
    assert set(OUTPUT_NAMES) <= set(names)
    fields = set(FrameOutputs.__dataclass_fields__)
    assert set(FIXED_ENCODINGS) <= fields and set(FIXED_ENCODINGS) < IMAGE_OUTPUTS
    assert OUTPUT_CAMERA_INFO_TOPICS == ("semantic/camera_info", "panoptic/camera_info")
    assert set(BAG_TOPICS) == {OUTPUT_SPECS[n].topic for n in RECORDED_OUTPUTS} | {CLASS_INFO_TOPIC}
    text = help_text()
    for o in OUTPUTS:
        assert o.topic in text


def test_recorded_outputs_are_what_a_user_looks_at() -> None:
    assert RECORDED_OUTPUTS == ("semantic", "semantic_color", "overlay", "panoptic", "panoptic_color")
