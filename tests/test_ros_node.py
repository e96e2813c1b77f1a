"""The node in its own process over real DDS, single camera, raw images: lazy start, every encoding, fuzzing,
runtime parameters, camera_info passthrough.

One node process serves the whole module (start-up loads torch and the model once). Tests run in file order; the
lazy test comes first because it needs a node that nobody has subscribed to yet.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

from bisenetformer_ros.data.classes import CITYSCAPES
from bisenetformer_ros.image import SUPPORTED_ENCODINGS
from tests.ros_node_harness import (
    NodeProcess,
    RosClient,
    check_panoptic,
    image_msg,
    label_array,
    latched_qos,
    reliable_qos,
    rgb_array,
    running_node,
    save_tiny_model,
    stamp_key,
)

NS = "/cam0"
H, W = 47, 62  # odd height; even width so 4:2:2 encodings apply


@pytest.fixture(scope="module")
def setup(ros_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[NodeProcess, RosClient]]:
    tmp = tmp_path_factory.mktemp("node")
    model = save_tiny_model(tmp / "tiny.pt")
    params = {
        "model": str(model),
        "device": "cpu",
        "num_threads": 1,
        "input_qos": "reliable",
        "input_qos_depth": 1000,
        "output_qos": "reliable",
        "object_mask_threshold": 0.0,  # random weights: keep every query so panoptic tables are not empty
        "diagnostics.period": 0.25,
        "max_age": 5.0,
    }
    with running_node(
        ros_env, tmp, params, namespace=NS, client_name="node_test_client", forbid_traceback=True
    ) as running:
        yield running


def _camera(client: RosClient) -> str:
    return "camera /cam0/image"


def test_lazy_no_inference_without_subscribers(setup: tuple[NodeProcess, RosClient]) -> None:
    from sensor_msgs.msg import Image

    node, client = setup
    pub = client.publisher(Image, f"{NS}/image", reliable_qos())
    assert client.wait(lambda: pub.get_subscription_count() > 0, 30)
    rgb = np.random.default_rng(0).integers(0, 256, (H, W, 3), dtype=np.uint8)
    for _ in range(8):
        pub.publish(image_msg(rgb, "rgb8", client.now_stamp(), "cam0_optical"))
        time.sleep(0.05)
    cam = _camera(client)
    assert client.wait(lambda: client.diag_value(cam, "received") >= 8, 20), client.diagnostics(cam)
    time.sleep(0.6)  # a few more diagnostics periods: nothing may start late either
    assert client.diag_value(cam, "processed") == 0
    assert client.diag_value(cam, "idle") >= 8
    assert client.diag_value("pipeline", "network_calls") == 0
    _, message, _ = client.diagnostics(cam)
    assert "idle" in message or "no frames" in message
    # One subscriber on one output is enough to start inference.
    sem = client.subscribe(Image, f"{NS}/semantic", reliable_qos())

    def produced() -> bool:
        pub.publish(image_msg(rgb, "rgb8", client.now_stamp(), "cam0_optical"))
        return bool(sem.snapshot())

    assert client.wait(produced, 30, interval=0.2), node.log()[-2000:]
    assert client.wait(lambda: client.diag_value(cam, "processed") >= 1, 10)
    assert client.diag_value("pipeline", "network_calls") >= 1


@pytest.fixture(scope="module")
def outputs(setup: tuple[NodeProcess, RosClient]) -> dict[str, object]:
    from sensor_msgs.msg import CameraInfo, Image

    from bisenetformer_ros.msg import PanopticSegmentation

    _, client = setup
    topics = {
        "semantic": Image,
        "semantic/color": Image,
        "overlay": Image,
        "panoptic": PanopticSegmentation,
        "panoptic/color": Image,
        "semantic/camera_info": CameraInfo,  # where image_transport looks for semantic/color's camera info
        "panoptic/camera_info": CameraInfo,
    }
    return {t: client.subscribe(typ, f"{NS}/{t}", reliable_qos()) for t, typ in topics.items()}


def _class_table(client: RosClient):
    from bisenetformer_ros.msg import ClassTable
    from bisenetformer_ros.ros.messages import class_table_from_msg

    inbox = client.subscribe(ClassTable, f"{NS}/class_info", latched_qos())
    assert client.wait(lambda: bool(inbox.snapshot()), 10), "class_info is latched: a late subscriber must get it"
    return class_table_from_msg(inbox.snapshot()[-1])


def test_every_encoding_yields_consistent_outputs(setup, outputs) -> None:
    from sensor_msgs.msg import CameraInfo, Image

    node, client = setup
    table = _class_table(client)
    assert table == CITYSCAPES  # the model's table, published once
    pub = client.publisher(Image, f"{NS}/image", reliable_qos())
    info_pub = client.publisher(CameraInfo, f"{NS}/camera_info", reliable_qos())
    info = CameraInfo(width=W, height=H, distortion_model="plumb_bob")
    info.k = [50.0, 0.0, 30.5, 0.0, 50.0, 23.0, 0.0, 0.0, 1.0]
    info.p = [50.0, 0.0, 30.5, 0.0, 0.0, 50.0, 23.0, 0.0, 0.0, 0.0, 1.0, 0.0]
    assert client.wait(lambda: info_pub.get_subscription_count() > 0 and pub.get_subscription_count() > 0, 20)
    info_pub.publish(info)
    time.sleep(0.2)
    rng = np.random.default_rng(1)
    needed = (
        "semantic",
        "semantic/color",
        "overlay",
        "panoptic",
        "panoptic/color",
        "semantic/camera_info",
        "panoptic/camera_info",
    )
    for i, encoding in enumerate(SUPPORTED_ENCODINGS):
        rgb = rng.integers(0, 256, (H, W, 3), dtype=np.uint8)
        frame_id = f"optical_{i}"
        sent: list[tuple[int, int]] = []

        def arrived(sent: list[tuple[int, int]] = sent) -> tuple[int, int] | None:
            for key in sent:
                if all(key in outputs[t].by_stamp() for t in needed):
                    return key
            return None

        for _attempt in range(5):
            stamp = client.now_stamp()
            sent.append(stamp_key_of(stamp))
            pub.publish(image_msg(rgb, encoding, stamp, frame_id, pad=3 if i % 2 else 0))
            if client.wait(lambda: arrived() is not None, 5):
                break
        key = arrived()
        assert key is not None, f"{encoding}: no outputs\n{node.log()[-2000:]}"
        sem = outputs["semantic"].by_stamp()[key]
        for t in needed:
            msg = outputs[t].by_stamp()[key]
            assert msg.header.frame_id == frame_id, (encoding, t)
            assert stamp_key(msg.header) == key
            if t == "panoptic":
                check_panoptic(msg, table, (H, W))
            elif t.endswith("camera_info"):
                assert (msg.width, msg.height) == (W, H)
                assert list(msg.k) == list(info.k)  # camera resolution: passed through unscaled
            else:
                assert (msg.height, msg.width) == (H, W), (encoding, t)
                assert msg.encoding == ("mono8" if t == "semantic" else "rgb8")
        labels = label_array(sem)
        assert labels.max() < table.num_classes
        color = rgb_array(outputs["semantic/color"].by_stamp()[key])
        np.testing.assert_array_equal(color, np.asarray(table.colors, np.uint8)[labels])


def stamp_key_of(stamp) -> tuple[int, int]:
    return (int(stamp.sec), int(stamp.nanosec))


def _malformed(rng: np.random.Generator, kind: str, stamp) -> object:
    from sensor_msgs.msg import Image

    m = Image()
    m.header.stamp = stamp
    m.header.frame_id = "fuzz"
    h, w = int(rng.integers(1, 40)), int(rng.integers(1, 40))
    m.encoding = "rgb8"
    m.height, m.width, m.step = h, w, w * 3
    n = h * w * 3
    if kind == "short":
        n = int(rng.integers(0, n))
    elif kind == "long":
        n = n + int(rng.integers(1, 50))
    elif kind == "zero":
        if rng.random() < 0.5:
            m.height = 0
        else:
            m.width = 0
        m.step = m.width * 3
        n = 0
    elif kind == "absurd":
        m.height, m.width = int(rng.integers(20_000, 2**31 - 1)), int(rng.integers(20_000, 2**31 - 1))
        m.step = m.width * 3
        n = int(rng.integers(0, 64))
    elif kind == "encoding":
        m.encoding = rng.choice(["", "rgb9", "jpeg", "32FC1", "RGB8", "x" * 300, "nv12\x00"])
    elif kind == "step":
        m.step = int(rng.integers(0, w * 3))
        n = m.step * h
    elif kind == "odd_yuv":
        m.encoding = "yuv422"
        m.width = w | 1
        m.step = m.width * 2
        n = m.step * h
    elif kind == "tiny_bayer":
        m.encoding = "bayer_rggb8"
        m.height, m.width = 2, 2
        m.step, n = 2, 4
    elif kind == "random":
        m.encoding = str(rng.choice(list(SUPPORTED_ENCODINGS)))
        m.step = int(rng.integers(0, 200))
        n = int(rng.integers(0, 400))
        if n == m.step * m.height:
            n += 1
    m.data = rng.integers(0, 256, n, dtype=np.uint8).tobytes()
    return m


FUZZ_KINDS = {
    "short": "data_size",
    "long": "data_size",
    "zero": "zero_size",
    "absurd": "too_large",
    "encoding": "unknown_encoding",
    "step": "bad_step",
    "odd_yuv": "odd_width",
    "tiny_bayer": "too_small",
    "random": None,
}


def test_fuzz_malformed_images_then_valid_ones(setup, outputs) -> None:
    from sensor_msgs.msg import Image

    node, client = setup
    cam = _camera(client)
    pub = client.publisher(Image, f"{NS}/image", reliable_qos(1000))
    assert client.wait(lambda: pub.get_subscription_count() > 0, 20)
    assert client.wait(lambda: client.diag_value(cam, "bad_input") >= 0, 5)
    bad_before = client.diag_value(cam, "bad_input", 0)
    rng = np.random.default_rng(7)
    per_kind = 1150
    sent = 0
    received_before = client.diag_value(cam, "received", 0)
    t0 = time.monotonic()
    for kind in FUZZ_KINDS:
        for _ in range(per_kind):
            pub.publish(_malformed(rng, kind, client.now_stamp()))
            sent += 1
            # Keep fewer messages in flight than the node's reader queue holds (input_qos_depth): the test is about
            # how the node treats each message, not about DDS dropping what a queue cannot hold.
            client.wait(lambda n=sent: n - (client.diag_value(cam, "received", 0) - received_before) < 600, 30, 0.005)
    assert sent >= 10_000
    # Every malformed message is counted (allow a little loss in transport on a busy machine).
    assert client.wait(lambda: client.diag_value(cam, "bad_input") - bad_before >= 0.97 * sent, 60), (
        client.diagnostics(cam),
        sent,
    )
    elapsed = time.monotonic() - t0
    level, message, values = client.diagnostics(cam)
    for cause in {c for c in FUZZ_KINDS.values() if c}:
        assert int(values.get(f"bad_input.{cause}", 0)) > 0, (cause, values)
    assert level == 1 and "malformed" in message  # WARN while bad frames arrive
    assert node.alive()
    # Valid frames are processed normally afterwards.
    rgb = np.random.default_rng(2).integers(0, 256, (H, W, 3), dtype=np.uint8)
    stamp = client.now_stamp()
    pub.publish(image_msg(rgb, "bgr8", stamp, "after_fuzz"))
    key = stamp_key_of(stamp)
    assert client.wait(lambda: key in outputs["semantic"].by_stamp() and key in outputs["panoptic"].by_stamp(), 20)
    log = node.log()
    # Logged once per cause and throttled: far fewer lines than messages.
    assert 0 < log.count("skipped a malformed frame") < 100, log.count("skipped a malformed frame")
    print(f"fuzz: {sent} malformed messages in {elapsed:.1f} s")


def test_runtime_parameters(setup, outputs) -> None:
    from sensor_msgs.msg import Image

    node, client = setup
    fqn = node.fqn
    # Tunable: accepted and used for the next frame.
    [res] = client.set_parameters(fqn, {"overlay_alpha": 1.0})
    assert res.successful, res.reason
    [res] = client.set_parameters(fqn, {"overlay_instance_edges": False})
    assert res.successful, res.reason
    pub = client.publisher(Image, f"{NS}/image", reliable_qos())
    rgb = np.random.default_rng(3).integers(0, 256, (H, W, 3), dtype=np.uint8)
    stamp = client.now_stamp()
    key = stamp_key_of(stamp)
    pub.publish(image_msg(rgb, "rgb8", stamp, "params"))
    assert client.wait(lambda: key in outputs["overlay"].by_stamp() and key in outputs["semantic/color"].by_stamp(), 20)
    # alpha = 1 and no outlines: the overlay is exactly the class colour image.
    np.testing.assert_array_equal(
        rgb_array(outputs["overlay"].by_stamp()[key]), rgb_array(outputs["semantic/color"].by_stamp()[key])
    )
    # Needs a reload: refused while active, with the fix in the reason.
    [res] = client.set_parameters(fqn, {"model": "/tmp/other.pt"})
    assert not res.successful and "cleanup" in res.reason.replace("clean up", "cleanup")
    assert client.get_parameter(fqn, "model") != "/tmp/other.pt"
    # Invalid values: refused with the range or the choices.
    [res] = client.set_parameters(fqn, {"overlay_alpha": 1.5})
    assert not res.successful and ("maximum" in res.reason or "range" in res.reason), res.reason
    [res] = client.set_parameters(fqn, {"task": "depth"})
    assert not res.successful and "semantic" in res.reason
    [res] = client.set_parameters(fqn, {"max_age": 3})  # an integer for a double parameter
    assert not res.successful
    [res] = client.set_parameters(fqn, {"autostart": False})
    assert not res.successful
    # task=semantic: panoptic is no longer produced, semantic still is.
    results = client.set_parameters(fqn, {"task": "semantic", "overlay_alpha": 0.5})
    assert all(r.successful for r in results), [r.reason for r in results]
    before = len(outputs["panoptic"].snapshot())
    stamp = client.now_stamp()
    key = stamp_key_of(stamp)
    pub.publish(image_msg(rgb, "rgb8", stamp, "semantic_only"))
    assert client.wait(lambda: key in outputs["semantic"].by_stamp(), 20)
    time.sleep(0.3)
    assert len(outputs["panoptic"].snapshot()) == before
    results = client.set_parameters(fqn, {"task": "all", "overlay_instance_edges": True})
    assert all(r.successful for r in results)


def test_class_mask_follows_mask_classes(setup, outputs) -> None:
    """class_mask marks exactly the pixels whose semantic label is in mask_classes (names checked against the
    loaded model, typos refused with a suggestion), and is not published while mask_classes is empty."""
    from sensor_msgs.msg import Image

    node, client = setup
    fqn = node.fqn
    table = _class_table(client)
    masks = client.subscribe(Image, f"{NS}/class_mask", reliable_qos())
    pub = client.publisher(Image, f"{NS}/image", reliable_qos())
    rgb = np.random.default_rng(9).integers(0, 256, (H, W, 3), dtype=np.uint8)

    def frame(tag: str) -> tuple[Any, bool]:
        stamp = client.now_stamp()
        key = stamp_key_of(stamp)
        pub.publish(image_msg(rgb, "rgb8", stamp, tag))
        assert client.wait(lambda: key in outputs["semantic"].by_stamp(), 20)
        got_mask = client.wait(lambda: key in masks.by_stamp(), 2)
        return key, got_mask

    key, got = frame("no_classes")
    assert not got, "class_mask must not be published while mask_classes is empty"
    labels = label_array(outputs["semantic"].by_stamp()[key])
    present = [int(c) for c in np.unique(labels)]
    absent = next(c for c in range(table.num_classes) if c not in present)
    chosen = [table.names[present[0]].upper(), str(absent)]  # a name in another case and an id
    [res] = client.set_parameters(fqn, {"mask_classes": chosen})
    assert res.successful, res.reason
    key, got = frame("mask")
    assert got
    mask = label_array(masks.by_stamp()[key])
    labels = label_array(outputs["semantic"].by_stamp()[key])
    np.testing.assert_array_equal(mask, np.where(np.isin(labels, [present[0], absent]), 255, 0))
    assert masks.by_stamp()[key].encoding == "mono8"
    # Refused with the reason; the previous selection stays in force.
    [res] = client.set_parameters(fqn, {"mask_classes": ["raod"]})
    assert not res.successful and "did you mean 'road'" in res.reason, res.reason
    [res] = client.set_parameters(fqn, {"mask_classes": ["road", ""]})
    assert not res.successful and "mask_classes" in res.reason
    assert client.get_parameter(fqn, "mask_classes") == chosen
    [res] = client.set_parameters(fqn, {"mask_classes": [""]})
    assert res.successful, res.reason
    _, got = frame("cleared")
    assert not got


def test_semantic_confidence_output(setup, outputs) -> None:
    """semantic/confidence: mono8, the frame's header and size, never below the uniform share 1/K."""
    from sensor_msgs.msg import Image

    _, client = setup
    table = _class_table(client)
    conf = client.subscribe(Image, f"{NS}/semantic/confidence", reliable_qos())
    pub = client.publisher(Image, f"{NS}/image", reliable_qos())
    rgb = np.random.default_rng(11).integers(0, 256, (H, W, 3), dtype=np.uint8)
    for _ in range(10):  # the lazy node publishes only once it has discovered this new subscription
        stamp = client.now_stamp()
        key = stamp_key_of(stamp)
        pub.publish(image_msg(rgb, "rgb8", stamp, "confidence"))
        if client.wait(lambda key=key: key in conf.by_stamp(), 2):
            break
    assert key in conf.by_stamp(), "no semantic/confidence message"
    msg = conf.by_stamp()[key]
    assert msg.encoding == "mono8" and (msg.height, msg.width) == (H, W) and msg.header.frame_id == "confidence"
    values = label_array(msg)
    assert int(values.min()) >= 255 // table.num_classes and int(values.max()) <= 255


def test_compressed_outputs_like_image_transport(setup, outputs) -> None:
    """<output>/compressed: published only to its subscribers, in compressed_image_transport's format convention;
    labels lossless (png) whatever compressed_format says, colour images in the configured codec."""
    import cv2
    from sensor_msgs.msg import CompressedImage, Image

    node, client = setup
    sem_c = client.subscribe(CompressedImage, f"{NS}/semantic/compressed", reliable_qos())
    ovl_c = client.subscribe(CompressedImage, f"{NS}/overlay/compressed", reliable_qos())
    pub = client.publisher(Image, f"{NS}/image", reliable_qos())
    rgb = np.random.default_rng(12).integers(0, 256, (H, W, 3), dtype=np.uint8)

    def frame(tag: str) -> tuple[int, int]:
        for _ in range(10):  # the lazy node publishes only once it has discovered the new subscriptions
            stamp = client.now_stamp()
            key = stamp_key_of(stamp)
            pub.publish(image_msg(rgb, "rgb8", stamp, tag))
            if client.wait(lambda key=key: key in sem_c.by_stamp() and key in ovl_c.by_stamp(), 2):
                break
        assert client.wait(lambda: key in outputs["semantic"].by_stamp() and key in outputs["overlay"].by_stamp(), 20)
        assert key in sem_c.by_stamp() and key in ovl_c.by_stamp(), "no compressed output"
        return key

    def decode(msg: CompressedImage) -> np.ndarray:
        return cv2.imdecode(np.frombuffer(bytes(msg.data), np.uint8), cv2.IMREAD_UNCHANGED)

    key = frame("jpeg")
    sem_msg, ovl_msg = sem_c.by_stamp()[key], ovl_c.by_stamp()[key]
    assert sem_msg.format == "mono8; png compressed mono8" and sem_msg.header.frame_id == "jpeg"
    np.testing.assert_array_equal(decode(sem_msg), label_array(outputs["semantic"].by_stamp()[key]))
    assert ovl_msg.format == "rgb8; jpeg compressed bgr8"
    # Exactly the raw overlay through JPEG at the configured quality (default 80).
    raw_bgr = cv2.cvtColor(rgb_array(outputs["overlay"].by_stamp()[key]), cv2.COLOR_RGB2BGR)
    ok, expected = cv2.imencode(".jpg", raw_bgr, [int(cv2.IMWRITE_JPEG_QUALITY), 80])
    assert ok
    np.testing.assert_array_equal(decode(ovl_msg), cv2.imdecode(expected, cv2.IMREAD_UNCHANGED))

    [res] = client.set_parameters(node.fqn, {"compressed_format": "png"})
    assert res.successful, res.reason
    key = frame("png")
    ovl_msg = ovl_c.by_stamp()[key]
    assert ovl_msg.format == "rgb8; png compressed bgr8"
    np.testing.assert_array_equal(
        cv2.cvtColor(decode(ovl_msg), cv2.COLOR_BGR2RGB), rgb_array(outputs["overlay"].by_stamp()[key])
    )
    [res] = client.set_parameters(node.fqn, {"compressed_format": "webp"})
    assert not res.successful and "jpeg" in res.reason
    [res] = client.set_parameters(node.fqn, {"compressed_format": "jpeg"})
    assert res.successful


def test_detections_and_label_info(setup, outputs) -> None:
    """Thing segments as vision_msgs/Detection2DArray and the class table as LabelInfo (ROS machines only)."""
    vm = pytest.importorskip(
        "vision_msgs.msg", reason="vision_msgs is not installed here (on ROS: apt install ros-$ROS_DISTRO-vision-msgs)"
    )
    from sensor_msgs.msg import Image

    _, client = setup
    dets = client.subscribe(vm.Detection2DArray, f"{NS}/detections", reliable_qos())
    pub = client.publisher(Image, f"{NS}/image", reliable_qos())
    rgb = np.random.default_rng(11).integers(0, 256, (H, W, 3), dtype=np.uint8)
    stamp = client.now_stamp()
    key = stamp_key_of(stamp)
    pub.publish(image_msg(rgb, "rgb8", stamp, "detections"))
    assert client.wait(lambda: key in dets.by_stamp() and key in outputs["panoptic"].by_stamp(), 20)
    pan = outputs["panoptic"].by_stamp()[key]
    things = {str(s.track_id): s for s in pan.segments if s.is_thing}  # tracking on: detection id = track id
    msg = dets.by_stamp()[key]
    assert {d.id for d in msg.detections} == set(things)
    for d in msg.detections:
        s = things[d.id]
        assert d.results[0].hypothesis.class_id == str(s.class_id)
        assert d.bbox.size_x == s.bbox.width and d.bbox.size_y == s.bbox.height
        assert d.bbox.center.position.x == pytest.approx(s.bbox.x_offset + s.bbox.width / 2)
    if hasattr(vm, "LabelInfo"):
        labels = client.subscribe(vm.LabelInfo, f"{NS}/label_info", latched_qos())
        assert client.wait(lambda: bool(labels.snapshot()), 10)
        names = [c.class_name for c in labels.snapshot()[-1].class_map]
        assert names == list(CITYSCAPES.names)
