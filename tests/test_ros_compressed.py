"""The node with compressed input (jpeg/png), network-resolution outputs, injected backend failures and fuzzed
compressed data, in its own process over real DDS."""

from __future__ import annotations

import time
from collections.abc import Iterator

import numpy as np
import pytest

from bisenetformer_ros.data.classes import CITYSCAPES
from bisenetformer_ros.image import encode_compressed
from tests.ros_node_harness import (
    NodeProcess,
    RosClient,
    check_panoptic,
    label_array,
    reliable_qos,
    running_node,
    save_tiny_model,
    stamp_key,
)

NS = "/ccam"
H, W = 45, 61
NET_H, NET_W = 32, 48
FAIL_EVERY = 4


@pytest.fixture(scope="module")
def setup(ros_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[NodeProcess, RosClient]]:
    tmp = tmp_path_factory.mktemp("cnode")
    model = save_tiny_model(tmp / "tiny.pt")
    params = {
        "model": str(model),
        "device": "cpu",
        "num_threads": 1,
        "input_transport": "compressed",
        "input_qos": "reliable",
        "input_qos_depth": 1000,
        "output_qos": "reliable",
        "input_height": NET_H,
        "input_width": NET_W,
        "output_resolution": "network",
        "object_mask_threshold": 0.0,
        "diagnostics.period": 0.25,
        "max_age": 5.0,
        "debug.fail_every_n": FAIL_EVERY,
    }
    with running_node(ros_env, tmp, params, namespace=NS, client_name="compressed_test_client") as running:
        yield running


@pytest.fixture(scope="module")
def io(setup):
    from sensor_msgs.msg import CameraInfo, CompressedImage, Image

    from bisenetformer_ros.msg import PanopticSegmentation

    _, client = setup
    subs = {
        "semantic": client.subscribe(Image, f"{NS}/semantic", reliable_qos()),
        "overlay": client.subscribe(Image, f"{NS}/overlay", reliable_qos()),
        "panoptic": client.subscribe(PanopticSegmentation, f"{NS}/panoptic", reliable_qos()),
        "info": client.subscribe(CameraInfo, f"{NS}/semantic/camera_info", reliable_qos()),
    }
    pub = client.publisher(CompressedImage, f"{NS}/image/compressed", reliable_qos(1000))
    info_pub = client.publisher(CameraInfo, f"{NS}/camera_info", reliable_qos())
    assert client.wait(lambda: pub.get_subscription_count() > 0 and info_pub.get_subscription_count() > 0, 20)
    info = CameraInfo(width=W, height=H, distortion_model="plumb_bob")
    info.k = [60.0, 0.0, 30.0, 0.0, 60.0, 22.0, 0.0, 0.0, 1.0]
    info.p = [60.0, 0.0, 30.0, 0.0, 0.0, 60.0, 22.0, 0.0, 0.0, 0.0, 1.0, 0.0]
    info_pub.publish(info)
    time.sleep(0.2)
    return pub, subs, info


def _send_until_output(client: RosClient, pub, subs, data: bytes, fmt: str, frame_id: str, tries: int = 8):
    """Publish until all outputs of one frame arrive (every FAIL_EVERY-th network call fails on purpose)."""
    from sensor_msgs.msg import CompressedImage

    sent = []
    for _ in range(tries):
        m = CompressedImage()
        m.header.stamp = client.now_stamp()
        m.header.frame_id = frame_id
        m.format = fmt
        m.data = data
        sent.append(stamp_key(m.header))
        pub.publish(m)

        def done():
            return next(
                (k for k in sent if all(k in subs[t].by_stamp() for t in ("semantic", "overlay", "panoptic", "info"))),
                None,
            )

        if client.wait(lambda: done() is not None, 3):
            return done()
    return None


@pytest.mark.parametrize("fmt", ["jpeg", "png", "rgb8; jpeg compressed bgr8"])
def test_compressed_input_network_resolution(setup, io, fmt: str) -> None:
    node, client = setup
    pub, subs, info = io
    rgb = np.random.default_rng(4).integers(0, 256, (H, W, 3), dtype=np.uint8)
    data = encode_compressed(rgb, "png" if "png" in fmt else "jpeg")
    key = _send_until_output(client, pub, subs, data, fmt, f"frame_{fmt[:4]}")
    assert key is not None, node.log()[-2000:]
    sem = subs["semantic"].by_stamp()[key]
    assert (sem.height, sem.width) == (NET_H, NET_W)  # output_resolution = network
    assert label_array(sem).max() < CITYSCAPES.num_classes
    check_panoptic(subs["panoptic"].by_stamp()[key], CITYSCAPES, (NET_H, NET_W))
    cam_info = subs["info"].by_stamp()[key]
    assert (cam_info.width, cam_info.height) == (NET_W, NET_H)
    sx, sy = NET_W / W, NET_H / H
    assert cam_info.k[0] == pytest.approx(info.k[0] * sx) and cam_info.k[4] == pytest.approx(info.k[4] * sy)
    assert cam_info.k[2] == pytest.approx((info.k[2] + 0.5) * sx - 0.5)
    assert cam_info.header.frame_id == sem.header.frame_id


def test_output_resolution_back_to_camera_at_runtime(setup, io) -> None:
    node, client = setup
    pub, subs, info = io
    [res] = client.set_parameters(node.fqn, {"output_resolution": "camera"})
    assert res.successful, res.reason
    rgb = np.random.default_rng(5).integers(0, 256, (H, W, 3), dtype=np.uint8)
    key = _send_until_output(client, pub, subs, encode_compressed(rgb, "png"), "png", "camera_res")
    assert key is not None
    sem = subs["semantic"].by_stamp()[key]
    assert (sem.height, sem.width) == (H, W)
    check_panoptic(subs["panoptic"].by_stamp()[key], CITYSCAPES, (H, W))
    assert list(subs["info"].by_stamp()[key].k) == list(info.k)


def test_backend_failures_are_reported_and_next_frames_processed(setup, io) -> None:
    node, client = setup
    pub, subs, _ = io
    cam = f"camera {NS}/image/compressed"
    rgb = np.random.default_rng(6).integers(0, 256, (H, W, 3), dtype=np.uint8)
    data = encode_compressed(rgb, "jpeg")
    produced = 0
    for i in range(2 * FAIL_EVERY):
        produced += _send_until_output(client, pub, subs, data, "jpeg", f"f{i}", tries=FAIL_EVERY + 1) is not None
    assert produced == 2 * FAIL_EVERY  # every frame eventually got through despite the failures
    assert client.wait(lambda: client.diag_value(cam, "errors", 0) >= 1, 5)
    level, message, _ = client.diagnostics(cam)
    assert level == 2 and "inference error" in message  # ERROR while failures happen
    assert client.diag_value("pipeline", "errors") >= 1
    assert "InjectedFailure" in client.diagnostics("pipeline")[2].get("last_error", "")
    assert "inference failed" in node.log()
    assert node.alive()


def _corrupt(rng: np.random.Generator, kind: str, good: bytes) -> tuple[str, bytes]:
    import struct
    import zlib

    if kind == "empty":
        return "jpeg", b""
    if kind == "garbage":
        return "jpeg", rng.integers(0, 256, int(rng.integers(1, 300)), dtype=np.uint8).tobytes()
    if kind == "truncated_header":
        return "jpeg", good[: int(rng.integers(2, 20))]
    if kind == "png_bomb":
        ihdr = b"IHDR" + struct.pack(">IIBBBBB", 50_000 + int(rng.integers(0, 9999)), 50_000, 8, 2, 0, 0, 0)
        return "png", b"\x89PNG\r\n\x1a\n" + struct.pack(">I", 13) + ihdr + struct.pack(">I", zlib.crc32(ihdr))
    if kind == "depth":
        return "16UC1; compressedDepth png", good
    raise AssertionError(kind)


def test_fuzz_corrupt_compressed_then_valid(setup, io) -> None:
    from sensor_msgs.msg import CompressedImage

    node, client = setup
    pub, subs, _ = io
    cam = f"camera {NS}/image/compressed"
    rgb = np.random.default_rng(8).integers(0, 256, (H, W, 3), dtype=np.uint8)
    good = encode_compressed(rgb, "jpeg")
    rng = np.random.default_rng(9)
    kinds = {
        "empty": "empty_data",
        "garbage": "corrupt_compressed",
        "truncated_header": "corrupt_compressed",
        "png_bomb": "too_large",
        "depth": "unsupported_format",
    }
    received_before = client.diag_value(cam, "received", 0)
    before = (client.diagnostics(cam) or (0, "", {}))[2]
    causes_before = {c: int(before.get(f"bad_input.{c}", 0)) for c in set(kinds.values())}
    per_kind = 2000  # 5 kinds x 2000 = 10,000 corrupt messages (the fuzz bar, compressed transport alone)
    sent = 0
    for kind in kinds:
        for _ in range(per_kind):
            fmt, data = _corrupt(rng, kind, good)
            m = CompressedImage(format=fmt, data=data)
            m.header.stamp = client.now_stamp()
            pub.publish(m)
            sent += 1
            client.wait(lambda n=sent: n - (client.diag_value(cam, "received", 0) - received_before) < 600, 30, 0.005)
    assert sent >= 10_000
    assert client.wait(lambda: client.diag_value(cam, "received", 0) - received_before >= sent, 30)
    time.sleep(0.6)
    values = client.diagnostics(cam)[2]
    # Each corrupt message is rejected from its header in the subscription callback, so every one is counted under
    # its cause (none is merely superseded in the queue, and none displaces a good frame waiting for the worker).
    expected: dict[str, int] = {}
    for cause in kinds.values():
        expected[cause] = expected.get(cause, 0) + per_kind
    for cause, n in expected.items():
        got = int(values.get(f"bad_input.{cause}", 0)) - causes_before[cause]
        assert got == n, (cause, got, n, values)
    key = _send_until_output(client, pub, subs, good, "jpeg", "after_fuzz")
    assert key is not None and node.alive()
