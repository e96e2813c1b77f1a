"""Several cameras on one model: per-namespace outputs with each camera's own header, batched inference."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest

from bisenetformer_ros.data.classes import CITYSCAPES
from tests.ros_node_harness import (
    NodeProcess,
    RosClient,
    check_panoptic,
    image_msg,
    label_array,
    reliable_qos,
    running_node,
    save_tiny_model,
    stamp_key,
)

NODE_NS = "/robot"
# Relative namespaces resolve inside the node's namespace; an absolute one stays as given.
CAMERAS = {"front": "/robot/front", "left": "/robot/left", "/rear_cam": "/rear_cam"}
SIZES = {"front": (40, 64), "left": (33, 50), "/rear_cam": (48, 48)}  # different sizes share one batch (padding)


@pytest.fixture(scope="module")
def setup(ros_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[NodeProcess, RosClient]]:
    tmp = tmp_path_factory.mktemp("mcnode")
    model = save_tiny_model(tmp / "tiny.pt")
    params = {
        "model": str(model),
        "device": "cpu",
        "num_threads": 1,
        "cameras": list(CAMERAS),
        "max_batch_size": 3,
        "input_qos": "reliable",
        "input_qos_depth": 10,
        "output_qos": "reliable",
        "object_mask_threshold": 0.0,
        "diagnostics.period": 0.25,
        "max_age": 5.0,
    }
    with running_node(
        ros_env,
        tmp,
        params,
        namespace=NODE_NS,
        client_name="multicamera_test_client",
        wait_topics=[f"{ns}/class_info" for ns in CAMERAS.values()],
    ) as running:
        yield running


def test_three_cameras_outputs_per_namespace_with_own_stamps(setup) -> None:
    from sensor_msgs.msg import Image

    from bisenetformer_ros.msg import PanopticSegmentation

    node, client = setup
    pubs, outs = {}, {}
    for cam, ns in CAMERAS.items():
        pubs[cam] = client.publisher(Image, f"{ns}/image", reliable_qos())
        outs[cam] = {
            "semantic": client.subscribe(Image, f"{ns}/semantic", reliable_qos()),
            "overlay": client.subscribe(Image, f"{ns}/overlay", reliable_qos()),
            "panoptic": client.subscribe(PanopticSegmentation, f"{ns}/panoptic", reliable_qos()),
        }
    assert client.wait(lambda: all(p.get_subscription_count() > 0 for p in pubs.values()), 20)
    rng = np.random.default_rng(0)
    sent: dict[str, dict[tuple[int, int], str]] = {cam: {} for cam in CAMERAS}
    rounds = 6
    for r in range(rounds):
        for i, cam in enumerate(CAMERAS):
            h, w = SIZES[cam]
            stamp = client.now_stamp()
            stamp.nanosec = (stamp.nanosec // 1000) * 1000 + i  # distinct stamps even within one clock tick
            frame_id = f"{cam.strip('/')}_optical"
            pubs[cam].publish(image_msg(rng.integers(0, 256, (h, w, 3), dtype=np.uint8), "rgb8", stamp, frame_id))
            sent[cam][(int(stamp.sec), int(stamp.nanosec))] = frame_id
        client.wait(lambda r=r: all(len(outs[c]["semantic"].snapshot()) > r for c in CAMERAS), 10)

    def complete() -> bool:
        return all(len(outs[cam][t].snapshot()) >= 1 for cam in CAMERAS for t in ("semantic", "overlay", "panoptic"))

    assert client.wait(complete, 30), node.log()[-2000:]
    for cam in CAMERAS:
        h, w = SIZES[cam]
        for t in ("semantic", "overlay", "panoptic"):
            msgs = outs[cam][t].snapshot()
            assert msgs, (cam, t)
            for m in msgs:
                key = stamp_key(m.header)
                assert key in sent[cam], f"{cam}/{t} carries a stamp that was not sent to this camera"
                assert m.header.frame_id == sent[cam][key]
                if t == "panoptic":
                    check_panoptic(m, CITYSCAPES, (h, w))
                else:
                    assert (m.height, m.width) == (h, w)
                if t == "semantic":
                    assert label_array(m).max() < CITYSCAPES.num_classes

    # The cameras shared network calls: fewer calls than processed frames.
    def counts() -> tuple[float, float]:
        processed = sum(client.diag_value(f"camera {ns}/image", "processed", 0) for ns in CAMERAS.values())
        return client.diag_value("pipeline", "network_calls", 0), processed

    # /diagnostics is periodic: wait for a report that covers the frames above before judging the counters.
    client.wait(lambda: counts()[1] >= 3 * rounds, 15)
    calls, processed = counts()
    assert processed >= 3 and 0 < calls < processed, (calls, processed)
    for ns in CAMERAS.values():
        assert client.diagnostics(f"camera {ns}/image") is not None  # one diagnostics entry per camera
