"""Lifecycle over the standard lifecycle_msgs services: a failed configure (missing model) is recoverable, and
configure / activate / deactivate / cleanup works twice, with outputs only while active."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from bisenetformer_ros.data.classes import ClassTable
from tests.ros_node_harness import (
    NodeProcess,
    RosClient,
    image_msg,
    latched_qos,
    reliable_qos,
    running_node,
    save_tiny_model,
)

NS = "/lc"


@pytest.fixture(scope="module")
def setup(
    ros_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[NodeProcess, RosClient, Path]]:
    tmp = tmp_path_factory.mktemp("lifecycle")
    model = save_tiny_model(tmp / "tiny.pt")
    other = ClassTable("three_things", ("a", "b", "c"), ((255, 0, 0), (0, 255, 0), (0, 0, 255)), (True, True, False))
    save_tiny_model(tmp / "other_labels.pt", table=other)
    params = {
        "model": str(tmp / "missing.pt"),  # first configure must fail cleanly
        "expected_classes": "cityscapes",
        "autostart": False,
        "device": "cpu",
        "num_threads": 1,
        "input_qos": "reliable",
        "output_qos": "reliable",
        "diagnostics.period": 0.25,
        "max_age": 5.0,
        "warmup": False,
    }
    with running_node(
        ros_env,
        tmp,
        params,
        namespace=NS,
        client_name="lifecycle_test_client",
        ready=lambda client, node: _state_or_none(client, node) == "unconfigured",
        timeout=60,
    ) as (node, client):
        yield node, client, model


def _state_or_none(client: RosClient, node: NodeProcess) -> str | None:
    try:
        return client.lifecycle_state(node.fqn)
    except TimeoutError:
        return None


def test_failed_configure_then_two_full_cycles(setup) -> None:
    from lifecycle_msgs.msg import Transition
    from sensor_msgs.msg import Image

    from bisenetformer_ros.msg import ClassTable

    node, client, model = setup
    fqn = node.fqn
    assert client.lifecycle_state(fqn) == "unconfigured"
    # Nothing is subscribed while unconfigured.
    pub = client.publisher(Image, f"{NS}/image", reliable_qos())
    sem = client.subscribe(Image, f"{NS}/semantic", reliable_qos())

    # 1) Missing model: configure fails with a clear message, the node stays usable.
    assert not client.change_state(fqn, Transition.TRANSITION_CONFIGURE)
    assert client.lifecycle_state(fqn) == "unconfigured"
    assert client.wait(lambda: (client.diagnostics("pipeline") or (0, "", {}))[0] == 2, 5)
    _, message, _ = client.diagnostics("pipeline")
    assert "missing.pt" in message and "does not exist" in message
    assert "configure failed" in node.log()
    # 2) A model for another label space: refused at configure, naming both tables.
    [res] = client.set_parameters(fqn, {"model": str(model.parent / "other_labels.pt")})  # allowed: nothing loaded
    assert res.successful, res.reason
    assert not client.change_state(fqn, Transition.TRANSITION_CONFIGURE)
    assert client.lifecycle_state(fqn) == "unconfigured"
    assert client.wait(lambda: "three_things" in (client.diagnostics("pipeline") or (0, "", {}))[1], 5)
    assert "cityscapes" in client.diagnostics("pipeline")[1]
    [res] = client.set_parameters(fqn, {"model": str(model)})
    assert res.successful, res.reason
    # 3) mask_classes naming a class the model does not have: checked once the class table is known.
    [res] = client.set_parameters(fqn, {"mask_classes": ["road", "sidewalkk"]})  # allowed: no table yet
    assert res.successful, res.reason
    assert not client.change_state(fqn, Transition.TRANSITION_CONFIGURE)
    assert client.lifecycle_state(fqn) == "unconfigured"
    assert client.wait(lambda: "sidewalkk" in (client.diagnostics("pipeline") or (0, "", {}))[1], 5)
    assert "did you mean 'sidewalk'" in client.diagnostics("pipeline")[1]
    [res] = client.set_parameters(fqn, {"mask_classes": ["road", "sidewalk"]})
    assert res.successful, res.reason
    [res] = client.set_parameters(fqn, {"autostart": True})
    assert not res.successful  # read at start-up only

    rgb = np.random.default_rng(0).integers(0, 256, (40, 56, 3), dtype=np.uint8)
    for cycle in range(2):
        assert client.change_state(fqn, Transition.TRANSITION_CONFIGURE), node.log()[-2000:]
        assert client.lifecycle_state(fqn) == "inactive"
        assert client.diagnostics("pipeline") is not None
        # Reload-requiring parameters are refused while a model is loaded, with the fix in the reason.
        [res] = client.set_parameters(fqn, {"backend": "onnxruntime"})
        assert not res.successful and "configure" in res.reason
        assert client.change_state(fqn, Transition.TRANSITION_ACTIVATE)
        assert client.lifecycle_state(fqn) == "active"
        info = client.subscribe(ClassTable, f"{NS}/class_info", latched_qos())
        assert client.wait(lambda info=info: bool(info.snapshot()), 10)
        assert client.wait(lambda: pub.get_subscription_count() > 0, 10)
        n_before = len(sem.snapshot())

        def produced(n_before: int = n_before, cycle: int = cycle) -> bool:
            pub.publish(image_msg(rgb, "rgb8", client.now_stamp(), f"cycle{cycle}"))
            return len(sem.snapshot()) > n_before

        assert client.wait(produced, 20, interval=0.3), f"cycle {cycle}: no output while active"
        assert client.change_state(fqn, Transition.TRANSITION_DEACTIVATE)
        assert client.lifecycle_state(fqn) == "inactive"
        assert client.wait(lambda: pub.get_subscription_count() == 0, 10)  # unsubscribed while inactive
        time.sleep(0.3)
        n_inactive = len(sem.snapshot())
        pub.publish(image_msg(rgb, "rgb8", client.now_stamp(), "inactive"))
        time.sleep(0.8)
        assert len(sem.snapshot()) == n_inactive, "published while inactive"
        [res] = client.set_parameters(fqn, {"overlay_alpha": 0.3})  # tunables are fine in any state
        assert res.successful
        assert client.change_state(fqn, Transition.TRANSITION_CLEANUP)
        assert client.lifecycle_state(fqn) == "unconfigured"
    # Configure + activate once more, then the shutdown transition: the process ends by itself (exit 0 checked by
    # the fixture).
    assert client.change_state(fqn, Transition.TRANSITION_CONFIGURE)
    assert client.change_state(fqn, Transition.TRANSITION_ACTIVATE)
    assert client.lifecycle_state(fqn) == "active"
    assert client.change_state(fqn, Transition.TRANSITION_ACTIVE_SHUTDOWN)
    assert client.wait(lambda: not node.alive(), 30), "a finalized node should exit"
