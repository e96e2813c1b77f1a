"""The one field mapping (bisenetformer_ros.message_fields) and its two bindings: rclpy and rosbags messages built
from the same values are the same message (node/offline parity by construction)."""

from __future__ import annotations

from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

from bisenetformer_ros import message_fields as mf
from bisenetformer_ros.bags import msgconv as mc
from bisenetformer_ros.bags.typestore import default_typestore
from bisenetformer_ros.data.classes import CITYSCAPES
from bisenetformer_ros.image import ImageFormatError, encode_image
from bisenetformer_ros.model.postprocess import Segment

STAMP = 1_700_000_001_250_000_007


def _segments() -> list[Segment]:
    return [
        Segment(3, 11, False, 0.9, 40, (0, 0, 8, 5), (3.5, 2.0)),
        Segment(7, 13, True, 0.8123456789, 12, (2, 1, 3, 4), (3.25, 2.75)),
        Segment(9, 14, True, 0.2, 6, (5, 4, 2, 3), (5.5, 5.0)),
    ]


@pytest.mark.parametrize(
    ("encoding", "array"),
    [
        ("rgb8", np.arange(4 * 5 * 3, dtype=np.uint8).reshape(4, 5, 3)),
        ("mono8", np.arange(20, dtype=np.uint8).reshape(4, 5)),
        ("mono16", (np.arange(20, dtype=np.uint16) * 3001).reshape(4, 5)),
    ],
)
def test_image_fields_pack_like_the_encoder_and_read_back(encoding: str, array: np.ndarray) -> None:
    f = mf.image_fields("hdr", array, encoding)
    step, data = encode_image(array, encoding)
    v = f.values
    assert f.type == mf.IMAGE and v["header"] == "hdr" and v["is_bigendian"] == 0
    assert (v["height"], v["width"], v["step"], v["encoding"]) == (4, 5, step, encoding)
    assert v["data"].dtype == np.uint8 and v["data"].tobytes() == data
    msg = SimpleNamespace(**v)
    if encoding == "rgb8":
        np.testing.assert_array_equal(mf.camera_image_to_rgb(msg), array)
    else:
        np.testing.assert_array_equal(mf.label_image_to_array(msg), array)


def test_image_fields_refuse_what_the_encoder_refuses() -> None:
    with pytest.raises(ImageFormatError):
        mf.image_fields(None, np.zeros((2, 2, 3), np.float32), "rgb8")
    with pytest.raises(ImageFormatError):
        mf.image_fields(None, np.full((2, 2), 300, np.int32), "mono8")


def test_segment_fields_round_to_float32_and_carry_tracks() -> None:
    seg = _segments()[1]
    f = mf.segment_fields(seg, SimpleNamespace(track_id=42, frames_seen=5)).values
    assert f["score"] == float(np.float32(seg.score)) and f["track_id"] == 42 and f["frames_seen"] == 5
    assert f["bbox"].values == {"x_offset": 2, "y_offset": 1, "height": 4, "width": 3, "do_rectify": False}
    untracked = mf.segment_fields(seg).values
    assert untracked["track_id"] == 0 and untracked["frames_seen"] == 0
    record = mf.segment_record(seg, SimpleNamespace(track_id=42, frames_seen=5))
    assert mf.segment_fields(record).values == f


def test_detection_rows_choose_things_and_ids() -> None:
    segs = _segments()
    rows = mf.detection_rows(segs, min_score=0.5)
    assert [r.id for r in rows] == ["7"]  # stuff and low scores are left out
    r = rows[0]
    assert (r.center_x, r.center_y, r.size_x, r.size_y, r.class_id) == (3.5, 3.0, 3.0, 4.0, "13")
    tracks = {9: SimpleNamespace(track_id=4)}
    assert [r.id for r in mf.detection_rows(segs, 0.0, tracks)] == ["", "4"]  # untracked yet -> ""
    assert mf.label_rows(CITYSCAPES)[:2] == [(0, "road"), (1, "sidewalk")]


def test_scaled_camera_info_fields_scale_k_p_roi() -> None:
    ts = default_typestore()
    info = mc.camera_info_msg(ts, mc.make_header(ts, STAMP, "cam"), 640, 480, fx=500.0)
    f = mf.scaled_camera_info_fields(info, "out", 320, 240).values
    assert (f["width"], f["height"], f["header"]) == (320, 240, "out")
    assert f["k"][0] == 250.0 and f["k"][4] == 250.0 and f["k"][2] == pytest.approx((319.5 + 0.5) * 0.5 - 0.5)
    assert f["p"][0] == 250.0 and f["distortion_model"] == "plumb_bob"


def _both(build_fields: Callable[[Any], mf.Fields]) -> tuple[bytes, bytes, Any]:
    """(rosbags CDR bytes, rclpy message) of the same field values."""
    serialization = pytest.importorskip("rclpy.serialization")
    from bisenetformer_ros.ros import messages as rm

    ts = default_typestore()
    bag_msg = mc.to_rosbags(ts, build_fields(mc.make_header(ts, STAMP, "camera_optical")))
    ros_header = rm.to_rclpy(mf.header_fields(STAMP, "camera_optical"))
    ros_msg = rm.to_rclpy(build_fields(ros_header))
    raw = bytes(ts.serialize_cdr(bag_msg, bag_msg.__msgtype__))
    rclpy_raw = serialization.serialize_message(ros_msg)
    # rclpy leaves alignment padding uninitialised: compare the canonical form of its bytes.
    canonical = bytes(ts.serialize_cdr(ts.deserialize_cdr(rclpy_raw, bag_msg.__msgtype__), bag_msg.__msgtype__))
    return raw, canonical, ros_msg


@pytest.mark.parametrize(
    "make",
    [
        lambda h: mf.image_fields(h, np.arange(6 * 4 * 3, dtype=np.uint8).reshape(6, 4, 3), "rgb8"),
        lambda h: mf.image_fields(h, np.arange(24, dtype=np.uint16).reshape(6, 4) * 2000, "mono16"),
        lambda h: mf.panoptic_fields(
            h, np.arange(24, dtype=np.uint16).reshape(6, 4) % 3, _segments(), {7: SimpleNamespace(track_id=2)}
        ),
        lambda h: mf.class_table_fields(h, CITYSCAPES),
        lambda h: mf.camera_info_fields(h, 64, 48, 50.0, 55.0),
    ],
    ids=["rgb8", "mono16", "panoptic", "class_table", "camera_info"],
)
def test_rclpy_and_rosbags_bindings_build_the_same_message(make: Callable[[Any], mf.Fields]) -> None:
    raw, canonical, _ = _both(make)
    assert canonical == raw


def test_rclpy_binding_reads_back_with_the_shared_readers() -> None:
    ids = np.arange(24, dtype=np.uint16).reshape(6, 4) % 3
    _, _, ros_msg = _both(lambda h: mf.panoptic_fields(h, ids, _segments(), {7: SimpleNamespace(track_id=2)}))
    got_ids, rows = mf.panoptic_from_msg(ros_msg)
    np.testing.assert_array_equal(got_ids, ids)
    assert [(r.id, r.track_id) for r in rows] == [(3, 0), (7, 2), (9, 0)]
    assert mf.stamp_ns(ros_msg.header) == STAMP
