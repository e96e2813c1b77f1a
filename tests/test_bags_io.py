"""Bag reading/writing on rosbags: both storages, our message types, CDR compatibility with rclpy, bad input."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import yaml

from bisenetformer_ros.bags import msgconv as mc
from bisenetformer_ros.bags.bagio import LATCHED_QOS, SENSOR_QOS, BagError, BagReader, BagWriter, QosSpec
from bisenetformer_ros.bags.typestore import (
    CLASS_TABLE,
    IMAGE,
    PANOPTIC_SEGMENTATION,
    default_typestore,
    installed_definitions,
    share_prefixes,
)
from bisenetformer_ros.data.classes import CITYSCAPES

STAMP0 = 1_700_000_000_123_456_789


def _frames(n: int = 4, h: int = 6, w: int = 8) -> list[tuple[int, np.ndarray, np.ndarray]]:
    rng = np.random.default_rng(3)
    out = []
    for i in range(n):
        rgb = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        ids = np.zeros((h, w), np.uint16)
        ids[1 : 3 + i % 2, 2:5] = 7
        ids[4:, :3] = 300 + i  # an id above 255 checks the mono16 path
        out.append((STAMP0 + i * 50_000_000, rgb, ids))
    return out


def _write_bag(path: Path, storage: str) -> list[tuple[int, np.ndarray, np.ndarray]]:
    frames = _frames()
    with BagWriter(path, storage=storage) as w:
        ts = w.typestore
        w.add_topic("/cam/image", IMAGE, [SENSOR_QOS])
        w.add_topic("/cam/panoptic", PANOPTIC_SEGMENTATION)
        w.add_topic("/class_info", CLASS_TABLE, [LATCHED_QOS])
        w.write("/class_info", STAMP0, mc.class_table_msg(ts, mc.make_header(ts, STAMP0, "cam"), CITYSCAPES))
        for stamp, rgb, ids in frames:
            header = mc.make_header(ts, stamp, "cam")
            w.write("/cam/image", stamp, mc.image_msg(ts, header, rgb, "rgb8"))
            segs = mc.segments_from_ids(ids, {7: 13, 300: 0, 301: 0, 302: 0, 303: 0}, CITYSCAPES)
            w.write("/cam/panoptic", stamp, mc.panoptic_msg(ts, header, ids, segs))
    return frames


@pytest.mark.parametrize("storage", ["sqlite3", "mcap"])
def test_round_trip_both_storages(tmp_path: Path, storage: str) -> None:
    bag = tmp_path / "bag"
    frames = _write_bag(bag, storage)
    with BagReader(bag) as r:
        assert r.storage == storage
        topics = r.topics
        assert {t: s.count for t, s in topics.items()} == {"/cam/image": 4, "/cam/panoptic": 4, "/class_info": 1}
        assert topics["/class_info"].qos == (LATCHED_QOS,)
        assert topics["/cam/image"].type_hash.startswith("RIHS01_")
        images = [m for m in r.messages(["/cam/image"])]
        pans = [m for m in r.messages(["/cam/panoptic"])]
        table = [m for m in r.messages(["/class_info"])]
    assert [m.timestamp for m in images] == [f[0] for f in frames]
    for m, (stamp, rgb, _) in zip(images, frames, strict=True):
        assert mc.stamp_ns(m.msg.header) == stamp and m.msg.header.frame_id == "cam"
        arr = np.frombuffer(m.msg.data, np.uint8).reshape(rgb.shape)
        np.testing.assert_array_equal(arr, rgb)
    for m, (_, _, ids) in zip(pans, frames, strict=True):
        got_ids, segs = mc.panoptic_from_msg(m.msg)
        np.testing.assert_array_equal(got_ids, ids)
        by_id = {s.id: s for s in segs}
        assert set(by_id) == set(np.unique(ids)) - {0}
        for sid, s in by_id.items():
            ys, xs = np.nonzero(ids == sid)
            assert s.area == xs.size
            assert s.bbox == (xs.min(), ys.min(), xs.max() - xs.min() + 1, ys.max() - ys.min() + 1)
    assert mc.class_table_from_msg(table[0].msg) == CITYSCAPES
    meta = yaml.safe_load((bag / "metadata.yaml").read_text())["rosbag2_bagfile_information"]
    assert meta["version"] == 9 and meta["storage_identifier"] == storage and meta["message_count"] == 9
    by_name = {t["topic_metadata"]["name"]: t["topic_metadata"] for t in meta["topics_with_message_count"]}
    assert by_name["/class_info"]["offered_qos_profiles"][0]["durability"] == "transient_local"
    assert by_name["/cam/panoptic"]["type_description_hash"] == default_typestore().hash_rihs01(PANOPTIC_SEGMENTATION)


def test_version_8_metadata_is_readable(tmp_path: Path) -> None:
    with BagWriter(tmp_path / "b", version=8) as w:
        w.add_topic("/x", IMAGE, [QosSpec(reliability="best_effort", depth=1)])
        ts = w.typestore
        w.write("/x", STAMP0, mc.image_msg(ts, mc.make_header(ts, STAMP0, "f"), np.zeros((2, 2), np.uint8), "mono8"))
    meta = yaml.safe_load((tmp_path / "b" / "metadata.yaml").read_text())["rosbag2_bagfile_information"]
    assert meta["version"] == 8
    with BagReader(tmp_path / "b") as r:
        assert r.topics["/x"].qos[0].reliability == "best_effort"
        assert len(list(r.messages())) == 1


def test_cdr_matches_rclpy_serialization() -> None:
    """rosbags bytes deserialise in rclpy to the same message, and rclpy bytes equal rosbags bytes up to padding
    (rclpy/Fast CDR leaves alignment padding uninitialised, so the canonical form is compared)."""
    serialization = pytest.importorskip("rclpy.serialization")
    from bisenetformer_ros.msg import ClassTable, PanopticSegmentation

    ts = default_typestore()
    stamp, _, ids = _frames(1)[0]
    header = mc.make_header(ts, stamp, "camera_optical_frame")
    segs = mc.segments_from_ids(ids, {7: 13, 300: 0}, CITYSCAPES)
    for ours, cls, typename in (
        (mc.panoptic_msg(ts, header, ids, segs), PanopticSegmentation, PANOPTIC_SEGMENTATION),
        (mc.class_table_msg(ts, header, CITYSCAPES), ClassTable, CLASS_TABLE),
    ):
        raw = bytes(ts.serialize_cdr(ours, typename))
        theirs = serialization.deserialize_message(raw, cls)
        assert theirs.header.frame_id == "camera_optical_frame"
        assert theirs.header.stamp.sec * 10**9 + theirs.header.stamp.nanosec == stamp
        rclpy_raw = serialization.serialize_message(theirs)
        assert len(rclpy_raw) == len(raw)
        canonical = bytes(ts.serialize_cdr(ts.deserialize_cdr(rclpy_raw, typename), typename))
        assert canonical == raw
        assert serialization.deserialize_message(rclpy_raw, cls) == theirs
    pan = serialization.deserialize_message(
        bytes(ts.serialize_cdr(mc.panoptic_msg(ts, header, ids, segs), PANOPTIC_SEGMENTATION)), PanopticSegmentation
    )
    assert [s.id for s in pan.segments] == [s.id for s in segs]
    assert pan.segment_ids.encoding == "mono16" and bytes(pan.segment_ids.data) == ids.astype("<u2").tobytes()


def test_label_image_decoding_honours_step_and_endianness() -> None:
    ts = default_typestore()
    labels = np.arange(12, dtype=np.uint16).reshape(3, 4) * 1000
    padded = np.zeros((3, 10), np.uint8)
    padded[:, :8] = labels.astype(">u2").view(np.uint8).reshape(3, 8)
    msg = ts.types[IMAGE](
        header=mc.make_header(ts, 0, ""),
        height=3,
        width=4,
        encoding="16UC1",
        is_bigendian=1,
        step=10,
        data=padded.reshape(-1),
    )
    np.testing.assert_array_equal(mc.label_image_to_array(msg), labels)
    bad = ts.types[IMAGE](
        header=mc.make_header(ts, 0, ""),
        height=3,
        width=4,
        encoding="mono8",
        is_bigendian=0,
        step=4,
        data=np.zeros(5, np.uint8),
    )
    with pytest.raises(ValueError, match="malformed"):
        mc.label_image_to_array(bad)
    rgb = ts.types[IMAGE](
        header=mc.make_header(ts, 0, ""),
        height=1,
        width=1,
        encoding="rgb8",
        is_bigendian=0,
        step=3,
        data=np.zeros(3, np.uint8),
    )
    with pytest.raises(ValueError, match="encoding 'rgb8'"):
        mc.label_image_to_array(rgb)


def test_missing_and_non_bag_paths(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="does not exist"):
        BagReader(tmp_path / "nope")
    (tmp_path / "folder").mkdir()
    (tmp_path / "folder" / "x.txt").write_text("hi")
    with pytest.raises(BagError, match=r"without metadata\.yaml"):
        BagReader(tmp_path / "folder")


@pytest.mark.parametrize("storage", ["sqlite3", "mcap"])
def test_truncated_and_corrupt_bags_give_clear_errors(tmp_path: Path, storage: str) -> None:
    src = tmp_path / "good"
    _write_bag(src, storage)
    for frac in (0.3, 0.95):
        dst = tmp_path / f"trunc{frac}"
        shutil.copytree(src, dst)
        f = next(p for p in dst.iterdir() if p.suffix in (".db3", ".mcap"))
        data = f.read_bytes()
        f.write_bytes(data[: int(len(data) * frac)])
        try:
            with BagReader(dst) as r:
                n = sum(1 for _ in r.messages())
                # Storage that opens but breaks part-way must say so instead of looking like a short bag.
                assert r.issues.stopped_early is not None and "truncated or corrupt" in r.issues.stopped_early
                assert n < 9
        except BagError as exc:
            assert "truncated or corrupt" in str(exc)
    garbage = tmp_path / "garbage"
    shutil.copytree(src, garbage)
    f = next(p for p in garbage.iterdir() if p.suffix in (".db3", ".mcap"))
    f.write_bytes(b"not a bag at all " * 64)
    with pytest.raises(BagError, match="truncated or corrupt"):
        BagReader(garbage).open()


def test_missing_topic_wrong_type_and_unknown_type(tmp_path: Path) -> None:
    bag = tmp_path / "bag"
    _write_bag(bag, "sqlite3")
    with BagReader(bag) as r:
        with pytest.raises(ValueError, match=r"has no image topic '/nope'.*/cam/image"):
            r.require_topic("/nope", what="image topic")
        with pytest.raises(ValueError, match="expected sensor_msgs/msg/Image"):
            r.require_topic("/cam/panoptic", [IMAGE])
    # A bag with a foreign type and no stored definition: readable metadata, clear error when the topic is used.
    foreign = tmp_path / "foreign"
    with BagWriter(foreign) as w:
        w.add_topic("/odd", "acme_msgs/msg/Odd", msgdef="", rihs01="RIHS01_" + "0" * 64)
        w.write_raw("/odd", STAMP0, b"\x00\x01\x00\x00\x01\x02\x03\x04")
    with BagReader(foreign) as r:
        assert r.topics["/odd"].known_type is False
        with pytest.raises(ValueError, match="neither a standard ROS 2 type nor defined in the bag"):
            r.require_topic("/odd")
        assert list(r.messages(["/odd"])) == []
        assert r.issues.undecodable == {"/odd": 1}


def test_foreign_type_with_definition_is_decoded(tmp_path: Path) -> None:
    """A bag that carries the .msg definition of a type we do not know is decoded from that definition."""
    bag = tmp_path / "b"
    text = "int32 a\nstring b\n"
    from rosbags.typesys import get_types_from_msg

    from bisenetformer_ros.bags.typestore import build_typestore

    store = build_typestore([("acme_msgs/msg/Pair", text)])
    assert "acme_msgs/msg/Pair" in get_types_from_msg(text, "acme_msgs/msg/Pair")
    msg = store.types["acme_msgs/msg/Pair"](a=5, b="hello")
    with BagWriter(bag) as w:
        w.add_topic("/pair", "acme_msgs/msg/Pair", msgdef=text, rihs01=store.hash_rihs01("acme_msgs/msg/Pair"))
        w.write_raw("/pair", STAMP0, store.serialize_cdr(msg, "acme_msgs/msg/Pair"))
    with BagReader(bag) as r:
        (m,) = list(r.messages())
    assert (m.msg.a, m.msg.b) == (5, "hello")
    assert "acme_msgs/msg/Pair" not in default_typestore().fielddefs  # the shared store stays untouched


def test_installed_definitions_follow_nested_types(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Runs everywhere: an install prefix made here (found through AMENT_PREFIX_PATH, as on a robot) defines a type
    that uses a type of another package, which uses a third; all three are found, nothing else."""
    files = {
        "acme_msgs/msg/Detection": "std_msgs/Header header\nacme_msgs/Box[] boxes\n",
        "acme_msgs/msg/Box": "acme_geometry_msgs/Point2D corner\nfloat32 width\n",
        "acme_geometry_msgs/msg/Point2D": "float64 x\nfloat64 y\n",
        "std_msgs/msg/Header": "builtin_interfaces/Time stamp\nstring frame_id\n",
    }
    for name, text in files.items():
        path = tmp_path / "share" / f"{name}.msg"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    monkeypatch.setenv("AMENT_PREFIX_PATH", str(tmp_path))
    defs = dict(installed_definitions(["acme_msgs/msg/Detection"], known=["std_msgs/msg/Header"]))
    assert set(defs) == {"acme_msgs/msg/Detection", "acme_msgs/msg/Box", "acme_geometry_msgs/msg/Point2D"}
    assert defs["acme_geometry_msgs/msg/Point2D"] == files["acme_geometry_msgs/msg/Point2D"]


def test_installed_ros_definitions_follow_nested_types() -> None:
    """The same on the real install: sensor_msgs/CameraInfo uses RegionOfInterest and std_msgs/Header."""
    searched = [p / "share" / "sensor_msgs" / "msg" / "CameraInfo.msg" for p in share_prefixes()]
    if not any(p.is_file() for p in searched):
        pytest.skip(f"sensor_msgs is not installed as .msg files here (looked for {', '.join(map(str, searched))})")
    defs = dict(installed_definitions(["sensor_msgs/msg/CameraInfo"]))
    assert {"sensor_msgs/msg/CameraInfo", "sensor_msgs/msg/RegionOfInterest", "std_msgs/msg/Header"} <= set(defs)


def test_writer_refuses_to_clobber(tmp_path: Path) -> None:
    bag = tmp_path / "bag"
    _write_bag(bag, "sqlite3")
    with pytest.raises(ValueError, match="already exists"):
        BagWriter(bag)
    w = BagWriter(bag, overwrite=True)  # a recognisable bag may be replaced
    assert not bag.exists()
    del w
    other = tmp_path / "notes"
    other.mkdir()
    (other / "important.txt").write_text("keep me")
    with pytest.raises(ValueError, match="not a rosbag2 bag"):
        BagWriter(other, overwrite=True)
    assert (other / "important.txt").exists()
    with pytest.raises(ValueError, match="unknown bag storage"):
        BagWriter(tmp_path / "x", storage="bag1")


def test_failed_write_leaves_no_partial_bag(tmp_path: Path) -> None:
    bag = tmp_path / "partial"
    with pytest.raises(RuntimeError, match="boom"), BagWriter(bag) as w:
        w.add_topic("/x", IMAGE)
        raise RuntimeError("boom")
    assert not bag.exists()
