"""`bisenetformer bag record` / `bag play` against real rclpy publishers and subscribers over DDS (separate
processes), and the bags they produce read back with rosbags."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

rclpy = pytest.importorskip("rclpy")

from rclpy.context import Context  # noqa: E402
from rclpy.executors import SingleThreadedExecutor  # noqa: E402
from rclpy.node import Node  # noqa: E402
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy  # noqa: E402
from rclpy.serialization import deserialize_message  # noqa: E402
from sensor_msgs.msg import Image  # noqa: E402

from bisenetformer_ros.bags import msgconv as mc  # noqa: E402
from bisenetformer_ros.bags.bagio import LATCHED_QOS, BagReader, BagWriter  # noqa: E402
from bisenetformer_ros.bags.typestore import CLASS_TABLE, IMAGE  # noqa: E402
from bisenetformer_ros.data.classes import CITYSCAPES  # noqa: E402
from bisenetformer_ros.msg import ClassTable, PanopticSegment, PanopticSegmentation  # noqa: E402

CLI = [sys.executable, "-m", "bisenetformer_ros.cli.main"]

RELIABLE = QoSProfile(depth=50, reliability=ReliabilityPolicy.RELIABLE)
BEST_EFFORT = QoSProfile(depth=50, reliability=ReliabilityPolicy.BEST_EFFORT)
LATCHED = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL)


class Ros:
    """A private rclpy context + node spun in a background thread."""

    def __init__(self, name: str) -> None:
        self.context = Context()
        rclpy.init(context=self.context, domain_id=int(os.environ["ROS_DOMAIN_ID"]))
        self.node = Node(name, context=self.context)
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)
        self.thread = threading.Thread(target=self.executor.spin, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.executor.shutdown(timeout_sec=1.0)
        self.node.destroy_node()
        self.context.try_shutdown()


@pytest.fixture
def ros(ros_env: dict[str, str]):
    """A node in this module's private ROS domain (conftest.ros_env)."""
    r = Ros("bag_test")
    yield r
    r.close()


def _wait(cond, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def _image(i: int) -> Image:
    m = Image()
    m.header.stamp.sec = 1_700_000_000 + i
    m.header.stamp.nanosec = 1000 * i
    m.header.frame_id = "cam"
    m.height, m.width, m.encoding, m.step = 4, 5, "rgb8", 15
    m.data = ((np.arange(60) * (i + 1)) % 256).astype(np.uint8).tobytes()
    return m


def _panoptic(i: int) -> PanopticSegmentation:
    m = PanopticSegmentation()
    m.header.stamp.sec = 1_700_000_000 + i
    m.header.frame_id = "cam"
    ids = np.zeros((4, 5), np.uint16)
    ids[1:3, 1:4] = i + 1
    m.segment_ids.header = m.header
    m.segment_ids.height, m.segment_ids.width, m.segment_ids.encoding, m.segment_ids.step = 4, 5, "mono16", 10
    m.segment_ids.data = ids.astype("<u2").tobytes()
    s = PanopticSegment()
    s.id, s.class_id, s.is_thing, s.score, s.area = i + 1, 13, True, 0.75, 6
    s.bbox.x_offset, s.bbox.y_offset, s.bbox.width, s.bbox.height = 1, 1, 3, 2
    s.centroid_x, s.centroid_y = 2.0, 1.5
    m.segments = [s]
    return m


def _class_table() -> ClassTable:
    m = ClassTable()
    m.dataset = "cityscapes"
    m.names = list(CITYSCAPES.names)
    m.is_thing = list(CITYSCAPES.is_thing)
    m.ignore_label = 255
    return m


def test_record_live_topics_round_trip(ros: Ros, ros_env: dict[str, str], tmp_path: Path) -> None:
    """mcap here; sqlite3 recording is exercised by the demo test."""
    storage = "mcap"
    node = ros.node
    pubs = {
        "/t/image": node.create_publisher(Image, "/t/image", BEST_EFFORT),
        "/t/panoptic": node.create_publisher(PanopticSegmentation, "/t/panoptic", RELIABLE),
        "/t/class_info": node.create_publisher(ClassTable, "/t/class_info", LATCHED),
    }
    # What actually went over the wire, captured by an independent raw subscriber in this process.
    wire: dict[str, list[bytes]] = {t: [] for t in pubs}
    for topic, cls, qos in (
        ("/t/image", Image, BEST_EFFORT),
        ("/t/panoptic", PanopticSegmentation, RELIABLE),
        ("/t/class_info", ClassTable, LATCHED),
    ):
        node.create_subscription(cls, topic, lambda d, t=topic: wire[t].append(d), qos, raw=True)
    table = _class_table()
    pubs["/t/class_info"].publish(table)  # published before the recorder exists: must arrive as latched

    out = tmp_path / "rec"
    rec = subprocess.Popen(
        [*CLI, "bag", "record", str(out), "--topics", *pubs, "--storage", storage, "--idle-timeout", "2.5"],
        env=ros_env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        _wait(lambda: all(p.get_subscription_count() >= 2 for p in pubs.values()), 30, "the recorder to subscribe")
        sent_images, sent_pans = [_image(i) for i in range(6)], [_panoptic(i) for i in range(6)]
        for im, pan in zip(sent_images, sent_pans, strict=True):
            pubs["/t/image"].publish(im)
            pubs["/t/panoptic"].publish(pan)
            time.sleep(0.05)
        output, _ = rec.communicate(timeout=60)
    finally:
        if rec.poll() is None:
            rec.kill()
    assert rec.returncode == 0, output
    assert "wrote 13 messages" in output, output

    with BagReader(out) as bag:
        topics = bag.topics
        recorded = {t: [m.data for m in bag.messages([t], deserialize=False)] for t in pubs}
        decoded_pans = [m.msg for m in bag.messages(["/t/panoptic"])]
    # Byte-for-byte what was published, in order.
    for t in pubs:
        assert recorded[t] == wire[t], t
    # rclpy deserialises the recorded bytes to exactly the published messages.
    assert [deserialize_message(d, Image) for d in recorded["/t/image"]] == sent_images
    assert [deserialize_message(d, PanopticSegmentation) for d in recorded["/t/panoptic"]] == sent_pans
    assert deserialize_message(recorded["/t/class_info"][0], ClassTable) == table
    # rosbags reads our own types from the recorded bag.
    assert [s.id for p in decoded_pans for s in p.segments] == [1, 2, 3, 4, 5, 6]
    # Type hashes as the graph reports them; offered QoS recorded.
    for t in pubs:
        info = node.get_publishers_info_by_topic(t)[0]
        assert topics[t].type_hash == str(info.topic_type_hash)
    assert topics["/t/image"].qos[0].reliability == "best_effort"
    assert topics["/t/class_info"].qos[0].durability == "transient_local"
    assert topics["/t/panoptic"].qos[0].reliability == "reliable"


def _bag_for_play(path: Path, n: int = 6, period_ns: int = 100_000_000) -> list[bytes]:
    with BagWriter(path) as w:
        ts = w.typestore
        w.add_topic("/cam/image", IMAGE)
        w.add_topic("/cam/class_info", CLASS_TABLE, [LATCHED_QOS])
        t0 = 1_700_000_000_000_000_000
        w.write("/cam/class_info", t0, mc.class_table_msg(ts, mc.make_header(ts, t0, "cam"), CITYSCAPES))
        for i in range(n):
            st = t0 + i * period_ns
            img = np.full((4, 6, 3), i * 20, np.uint8)
            w.write("/cam/image", st, mc.image_msg(ts, mc.make_header(ts, st, "cam"), img, "rgb8"))
    with BagReader(path) as r:
        return [m.data for m in r.messages(["/cam/image"], deserialize=False)]


def test_play_honours_timing_and_preserves_bytes(ros: Ros, ros_env: dict[str, str], tmp_path: Path) -> None:
    bag = tmp_path / "bag"
    stored = _bag_for_play(bag)
    got: list[tuple[float, bytes]] = []
    tables: list[ClassTable] = []
    ros.node.create_subscription(Image, "/cam/image", lambda d: got.append((time.monotonic(), d)), RELIABLE, raw=True)
    ros.node.create_subscription(ClassTable, "/cam/class_info", tables.append, LATCHED)
    res = subprocess.run(
        [*CLI, "bag", "play", str(bag), "--wait-for-subscribers", "1", "--no-progress"],
        env=ros_env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert res.returncode == 0, res.stdout + res.stderr
    _wait(lambda: len(got) == len(stored), 10, "all images")
    assert [d for _, d in got] == stored
    # Recorded spacing is 0.1 s: 6 frames span 0.5 s at rate 1 (lower bound only: a loaded machine is slower).
    assert got[-1][0] - got[0][0] >= 0.4
    _wait(lambda: len(tables) == 1, 5, "the latched class table")
    assert mc.class_table_from_msg(tables[0]) == CITYSCAPES


def test_play_as_fast_as_possible_with_topic_filter_and_remap(
    ros: Ros, ros_env: dict[str, str], tmp_path: Path
) -> None:
    bag = tmp_path / "bag"
    stored = _bag_for_play(bag, n=8, period_ns=2_000_000_000)  # 14 s of recorded time
    got: list[bytes] = []
    others: list[bytes] = []
    ros.node.create_subscription(Image, "/renamed", got.append, RELIABLE, raw=True)
    ros.node.create_subscription(ClassTable, "/cam/class_info", others.append, LATCHED, raw=True)
    t0 = time.monotonic()
    res = subprocess.run(
        [
            *CLI,
            "bag",
            "play",
            str(bag),
            "--rate",
            "0",
            "--topics",
            "/cam/image",
            "--remap",
            "/cam/image:=/renamed",
            "--wait-for-subscribers",
            "1",
            "--no-progress",
        ],
        env=ros_env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert res.returncode == 0, res.stdout + res.stderr
    _wait(lambda: len(got) == len(stored), 10, "all images")
    assert got == stored
    assert time.monotonic() - t0 < 14  # not paced by the 14 s of recorded time
    assert others == []  # filtered out
    assert "played 8 messages" in res.stdout


def test_play_and_record_bad_input(ros_env: dict[str, str], tmp_path: Path) -> None:
    res = subprocess.run(
        [*CLI, "bag", "play", str(tmp_path / "missing")], env=ros_env, capture_output=True, text=True, timeout=60
    )
    assert res.returncode == 2 and "does not exist" in res.stderr
    bag = tmp_path / "bag"
    _bag_for_play(bag, n=1)
    res = subprocess.run(
        [*CLI, "bag", "play", str(bag), "--topics", "/nope"], env=ros_env, capture_output=True, text=True, timeout=60
    )
    assert res.returncode == 2 and "no topic '/nope'" in res.stderr and "/cam/image" in res.stderr
    res = subprocess.run(
        [*CLI, "bag", "record", str(bag), "--topics", "/x"], env=ros_env, capture_output=True, text=True, timeout=60
    )
    assert res.returncode == 2 and "already exists" in res.stderr
