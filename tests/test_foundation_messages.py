"""The package's own messages (msg/): generated, importable, serialisable, and carried across processes over DDS."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.msg_samples import sample_messages

rclpy = pytest.importorskip("rclpy")
from rclpy.serialization import deserialize_message, serialize_message  # noqa: E402

TESTS_DIR = Path(__file__).resolve().parent


def test_every_msg_file_is_generated() -> None:
    import bisenetformer_ros.msg as generated

    msg_files = sorted(p.stem for p in (TESTS_DIR.parent / "msg").glob("*.msg"))
    assert msg_files == sorted(sample_messages())
    for name in msg_files:
        assert hasattr(generated, name), f"msg/{name}.msg was not generated into bisenetformer_ros.msg"


@pytest.mark.parametrize("name", sorted(sample_messages()))
def test_serialization_round_trip(name: str) -> None:
    msg = sample_messages()[name]
    data = serialize_message(msg)
    back = deserialize_message(data, type(msg))
    assert back == msg
    # CDR alignment padding is uninitialised memory in rclpy's serialiser, so the bytes of two serialisations of
    # equal messages may differ there; compare what the bytes decode to and their layout (length), not the padding.
    again = serialize_message(back)
    assert len(again) == len(data)
    assert deserialize_message(again, type(msg)) == msg


def test_panoptic_sample_is_self_consistent() -> None:
    """The sample's id image and segment table agree, as the node guarantees for real output."""
    import numpy as np

    msg = sample_messages()["PanopticSegmentation"]
    ids = np.frombuffer(bytes(msg.segment_ids.data), dtype="<u2").reshape(msg.segment_ids.height, msg.segment_ids.width)
    for seg in msg.segments:
        ys, xs = np.nonzero(ids == seg.id)
        assert seg.area == len(xs)
        assert (seg.bbox.x_offset, seg.bbox.y_offset) == (xs.min(), ys.min())
        assert (seg.bbox.width, seg.bbox.height) == (xs.max() - xs.min() + 1, ys.max() - ys.min() + 1)
        assert seg.centroid_x == pytest.approx(xs.mean(), abs=1e-6)
        assert seg.centroid_y == pytest.approx(ys.mean(), abs=1e-6)


def test_pub_sub_across_processes(ros_env: dict[str, str]) -> None:
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.qos import QoSProfile, ReliabilityPolicy

    samples = sample_messages()
    peer = subprocess.Popen(
        [sys.executable, "-m", "tests.ros_peer_publisher"],
        cwd=TESTS_DIR.parent,
        env=ros_env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    context = rclpy.Context()
    rclpy.init(context=context)
    received: dict[str, object] = {}
    try:
        node = rclpy.create_node("foundation_checker", context=context)
        qos = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
        for name, msg in samples.items():
            node.create_subscription(type(msg), f"/foundation/{name}", lambda m, n=name: received.setdefault(n, m), qos)
        executor = SingleThreadedExecutor(context=context)
        executor.add_node(node)
        deadline = time.monotonic() + 60
        while len(received) < len(samples) and time.monotonic() < deadline and peer.poll() is None:
            executor.spin_once(timeout_sec=0.1)
        executor.shutdown()
        node.destroy_node()
    finally:
        rclpy.shutdown(context=context)
        peer.terminate()
        out, _ = peer.communicate(timeout=20)
    assert set(received) == set(samples), f"received only {sorted(received)}; peer output:\n{out}"
    for name, msg in samples.items():
        assert received[name] == msg
        assert len(serialize_message(received[name])) == len(serialize_message(msg))
