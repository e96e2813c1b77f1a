"""The node as a new robotics user meets it, over real DDS (issue 12): visible by default, loud when it fails.

* A subscriber with the default QoS (reliable, depth 10, what RViz's Image display uses) receives every output,
  vision_msgs ``detections`` and ``label_info`` included (built for the test venv from the upstream definitions); a
  best-effort subscriber receives them too.
* The outputs' camera info is where image_transport looks for it (``semantic/camera_info``,
  ``panoptic/camera_info``), scaled to the outputs and stamped with their headers.
* A subscriber with an incompatible QoS is named in a WARN log line (topic and policy) and keeps ``/diagnostics`` at
  WARN for as long as it exists.
* cleanup releases every publisher and subscription: after several configure/cleanup cycles each topic has exactly
  one publisher of the node (counted through the graph API), and no thread is left behind.
* With autostart a configure failure ends the process with exit code 2 and one error line; the lifecycle behaviour
  (stay unconfigured) is one parameter away. Bad parameter files are one line and exit code 2 too, for the node and
  for ``python -m bisenetformer_ros.ros.parameters --check``.
* ``bisenetformer demo`` with a model the node cannot configure stops as soon as the node exits.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from bisenetformer_ros.data.classes import CITYSCAPES
from tests.ros_node_harness import (
    NodeProcess,
    RosClient,
    image_msg,
    label_array,
    latched_qos,
    running_node,
    save_tiny_model,
    stamp_key,
)

BIN = Path(sys.executable).parent
NS = "/citizen"
H, W = 40, 60  # camera
NH, NW = 32, 48  # network (output_resolution: network)


def default_qos() -> Any:
    """What a plain ``create_subscription(..., 10)`` gets: reliable, volatile, keep last 10."""
    from rclpy.qos import QoSProfile

    return QoSProfile(depth=10)


@pytest.fixture(scope="module")
def setup(ros_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[NodeProcess, RosClient]]:
    tmp = tmp_path_factory.mktemp("citizen")
    model = save_tiny_model(tmp / "tiny.pt")
    params = {  # no QoS parameter: the defaults are under test
        "model": str(model),
        "device": "cpu",
        "num_threads": 1,
        "input_height": NH,
        "input_width": NW,
        "output_resolution": "network",
        "object_mask_threshold": 0.0,  # random weights: keep every query so there are segments and detections
        "mask_classes": ["road", "car"],
        "diagnostics.period": 0.25,
        "max_age": 5.0,
    }
    with running_node(
        ros_env,
        tmp,
        params,
        namespace=NS,
        client_name="citizen_client",
        forbid_traceback=True,
    ) as running:
        yield running


def test_default_qos_subscribers_receive_every_output(setup: tuple[NodeProcess, RosClient]) -> None:
    from rclpy.qos import qos_profile_sensor_data
    from sensor_msgs.msg import CameraInfo, CompressedImage, Image
    from vision_msgs.msg import Detection2DArray, LabelInfo

    from bisenetformer_ros.msg import PanopticSegmentation

    node, client = setup
    types = {
        "semantic": Image,
        "semantic/color": Image,
        "semantic/confidence": Image,
        "overlay": Image,
        "class_mask": Image,
        "panoptic": PanopticSegmentation,
        "panoptic/color": Image,
        "detections": Detection2DArray,
        "semantic/camera_info": CameraInfo,
        "panoptic/camera_info": CameraInfo,
        "semantic/compressed": CompressedImage,
    }
    inboxes = {t: client.subscribe(typ, f"{NS}/{t}", default_qos()) for t, typ in types.items()}
    best_effort = client.subscribe(Image, f"{NS}/semantic", qos_profile_sensor_data)
    labels = client.subscribe(LabelInfo, f"{NS}/label_info", latched_qos())
    pub = client.publisher(Image, f"{NS}/image", default_qos())  # a camera driver's usual reliable publisher
    info_pub = client.publisher(CameraInfo, f"{NS}/camera_info", default_qos())
    assert client.wait(lambda: pub.get_subscription_count() > 0 and info_pub.get_subscription_count() > 0, 30)
    info = CameraInfo(width=W, height=H, distortion_model="plumb_bob")
    info.k = [50.0, 0.0, 30.0, 0.0, 50.0, 20.0, 0.0, 0.0, 1.0]
    info.p = [50.0, 0.0, 30.0, 0.0, 0.0, 50.0, 20.0, 0.0, 0.0, 0.0, 1.0, 0.0]
    rgb = np.random.default_rng(0).integers(0, 256, (H, W, 3), dtype=np.uint8)
    sent: list[tuple[int, int]] = []

    def complete() -> tuple[int, int] | None:
        for key in sent:
            if all(key in inbox.by_stamp() for inbox in inboxes.values()) and key in best_effort.by_stamp():
                return key
        return None

    for _ in range(40):  # lazy: outputs start once the node has discovered each new subscription
        stamp = client.now_stamp()
        info.header.stamp = stamp
        info_pub.publish(info)
        sent.append((int(stamp.sec), int(stamp.nanosec)))
        pub.publish(image_msg(rgb, "rgb8", stamp, "citizen_optical"))
        if client.wait(lambda: complete() is not None, 1.0):
            break
    key = complete()
    missing = [t for t, inbox in inboxes.items() if not inbox.snapshot()]
    assert key is not None, f"no output for default-QoS subscribers on {missing}\n{node.log()[-2000:]}"
    sem = inboxes["semantic"].by_stamp()[key]
    assert (sem.height, sem.width) == (NH, NW)
    for topic in ("semantic/camera_info", "panoptic/camera_info"):
        cam = inboxes[topic].by_stamp()[key]
        assert cam.header == sem.header, topic
        assert (cam.width, cam.height) == (NW, NH), topic  # scaled to the outputs it describes
        assert cam.k[0] == pytest.approx(50.0 * NW / W) and cam.k[4] == pytest.approx(50.0 * NH / H), topic
    mask = label_array(inboxes["class_mask"].by_stamp()[key])
    wanted = [CITYSCAPES.names.index("road"), CITYSCAPES.names.index("car")]
    np.testing.assert_array_equal(mask, np.where(np.isin(label_array(sem), wanted), 255, 0))
    pan = inboxes["panoptic"].by_stamp()[key]
    things = {str(s.track_id) for s in pan.segments if s.is_thing}  # tracking on: the detection id is the track id
    assert {d.id for d in inboxes["detections"].by_stamp()[key].detections} == things
    assert client.wait(lambda: bool(labels.snapshot()), 10), "label_info is latched"
    assert [c.class_name for c in labels.snapshot()[-1].class_map] == list(CITYSCAPES.names)
    assert stamp_key(best_effort.by_stamp()[key].header) == key


def test_incompatible_subscriber_is_loud_while_it_exists(setup: tuple[NodeProcess, RosClient]) -> None:
    from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
    from sensor_msgs.msg import Image

    node, client = setup
    cam = f"camera {NS}/image"
    # Transient local cannot be served by the (volatile) output publisher: a QoS mismatch on DURABILITY.
    wrong = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL)
    sub = client.node.create_subscription(Image, f"{NS}/overlay", lambda _m: None, wrong)

    def warned() -> bool:
        d = client.diagnostics(cam)
        return d is not None and d[0] == 1 and "incompatible QoS" in d[1] and f"{NS}/overlay" in d[1]

    assert client.wait(warned, 30), client.diagnostics(cam)
    assert "DURABILITY" in client.diagnostics(cam)[1]
    log = node.log()
    line = next((ln for ln in log.splitlines() if "incompatible QoS" in ln and f"{NS}/overlay" in ln), None)
    assert line is not None and "WARN" in line and "DURABILITY" in line, log[-2000:]
    # Gone: the WARN goes with it.
    client.node.destroy_subscription(sub)

    def cleared() -> bool:
        d = client.diagnostics(cam)
        return d is not None and "incompatible QoS" not in d[1]

    assert client.wait(cleared, 30), client.diagnostics(cam)
    assert node.alive()


# ------------------------------------------------------------------------------------------- cleanup cycles

LC_NS = "/cycles"


@pytest.fixture(scope="module")
def lifecycle_node(
    ros_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[NodeProcess, RosClient]]:
    tmp = tmp_path_factory.mktemp("cycles")
    model = save_tiny_model(tmp / "tiny.pt")
    params = {"model": str(model), "autostart": False, "device": "cpu", "num_threads": 1, "warmup": False}

    def ready(client: RosClient, node: NodeProcess) -> bool:
        try:
            return client.lifecycle_state(node.fqn) == "unconfigured"
        except TimeoutError:
            return False

    with running_node(
        ros_env, tmp, params, namespace=LC_NS, client_name="cycles_client", ready=ready, forbid_traceback=True
    ) as running:
        yield running


def _endpoints(client: RosClient, node: NodeProcess) -> tuple[dict[str, int], dict[str, int]]:
    """Publishers and subscriptions per topic of ``node``, counted through the ROS graph."""
    name, ns = node.name, node.namespace
    pubs: dict[str, int] = {}
    subs: dict[str, int] = {}
    topics = [t for t, _ in client.node.get_topic_names_and_types()]
    for topic in topics:
        for info in client.node.get_publishers_info_by_topic(topic):
            if info.node_name == name and info.node_namespace == ns:
                pubs[topic] = pubs.get(topic, 0) + 1
        for info in client.node.get_subscriptions_info_by_topic(topic):
            if info.node_name == name and info.node_namespace == ns:
                subs[topic] = subs.get(topic, 0) + 1
    return pubs, subs


def test_cleanup_releases_every_publisher_subscription_and_thread(lifecycle_node) -> None:
    import psutil
    from lifecycle_msgs.msg import Transition

    node, client = lifecycle_node
    fqn = node.fqn
    assert client.wait(lambda: bool(_endpoints(client, node)[0]), 20)
    time.sleep(1.0)  # let discovery settle
    baseline = _endpoints(client, node)  # unconfigured: rosout, parameter events, diagnostics, lifecycle
    assert not any(t.startswith(f"{LC_NS}/semantic") for t in baseline[0])
    threads = []
    configured: dict[str, int] = {}
    for cycle in range(3):
        assert client.change_state(fqn, Transition.TRANSITION_CONFIGURE), node.log()[-2000:]
        assert client.change_state(fqn, Transition.TRANSITION_ACTIVATE)
        assert client.wait(lambda: f"{LC_NS}/image" in _endpoints(client, node)[1], 20)
        counts = _endpoints(client, node)[0]
        if cycle == 0:
            configured = counts
        else:
            assert client.wait(lambda c=configured: _endpoints(client, node)[0] == c, 20), (
                cycle,
                _endpoints(client, node)[0],
                configured,
            )
        assert client.change_state(fqn, Transition.TRANSITION_DEACTIVATE)
        assert client.change_state(fqn, Transition.TRANSITION_CLEANUP)
        assert client.wait(lambda: _endpoints(client, node) == baseline, 20), (cycle, _endpoints(client, node))
        threads.append(psutil.Process(node.pid).num_threads())
    # One publisher of this node per topic, the image outputs' /compressed twins included.
    for topic in (f"{LC_NS}/semantic", f"{LC_NS}/overlay/compressed", f"{LC_NS}/semantic/camera_info"):
        assert configured.get(topic) == 1, (topic, configured)
    assert all(n == 1 for n in configured.values()), configured
    assert threads[-1] <= threads[1], f"threads after each cleanup: {threads}"  # nothing accumulates
    print(f"threads after cleanup cycles: {threads}; publishers while configured: {len(configured)} topics")


# ------------------------------------------------------------------------------------------- loud failures


def _node_run(env: dict[str, str], *ros_args: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BIN / "bisenetformer_node"), "--ros-args", *ros_args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=dict(env, OMP_NUM_THREADS="1"),
    )


def _error_lines(proc: subprocess.CompletedProcess[str]) -> list[str]:
    text = proc.stdout + proc.stderr
    return [ln for ln in text.splitlines() if "ERROR" in ln or "error:" in ln.lower()]


@pytest.fixture(scope="module")
def bad_models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    tmp = tmp_path_factory.mktemp("bad_models")
    corrupt = tmp / "corrupt.pt"
    corrupt.write_bytes(b"this is not a model" * 100)
    return {"missing": tmp / "missing.pt", "corrupt": corrupt, "good": save_tiny_model(tmp / "tiny.pt")}


@pytest.mark.parametrize(
    "case",
    ["missing", "corrupt", "expected_classes", "cuda", "pretrained_not_fetched"],
)
def test_autostart_failure_exits_2_with_one_error_line(
    case: str, bad_models: dict[str, Path], ros_env: dict[str, str], tmp_path: Path
) -> None:
    import torch

    params = ["-p", "device:=cpu", "-p", f"model:={bad_models['good']}"]
    expect = ""
    env = ros_env
    if case == "pretrained_not_fetched":
        # A published model's name resolves from the user cache; an empty cache says how to fetch it (never a
        # download at start-up).
        env = dict(ros_env, BISENETFORMER_CACHE=str(tmp_path / "empty_cache"))
        params = ["-p", "device:=cpu", "-p", "model:=bisenetformer-s-ade"]
        expect = "bisenetformer pretrained get bisenetformer-s-ade"
    elif case in ("missing", "corrupt"):
        params = ["-p", "device:=cpu", "-p", f"model:={bad_models[case]}"]
        expect = bad_models[case].name
    elif case == "expected_classes":
        params += ["-p", "expected_classes:=ade20k"]
        expect = "ade20k"
    else:
        if torch.cuda.is_available():
            pytest.skip("this machine has a GPU: device cuda does not fail here")
        params = ["-p", "device:=cuda", "-p", f"model:={bad_models['good']}"]
        expect = "cuda"
    t0 = time.monotonic()
    proc = _node_run(env, *params)
    print(f"{case}: exited with {proc.returncode} after {time.monotonic() - t0:.1f} s")
    assert proc.returncode == 2, proc.stdout + proc.stderr
    errors = _error_lines(proc)
    assert len(errors) == 1, errors
    assert "configure failed" in errors[0] and expect in errors[0], errors[0]
    assert "Traceback" not in proc.stdout + proc.stderr


def test_lifecycle_behaviour_is_one_parameter_away(
    bad_models: dict[str, Path], ros_env: dict[str, str], tmp_path: Path
) -> None:
    """exit_on_autostart_failure: false keeps the node up and unconfigured for a lifecycle manager."""
    node = NodeProcess(
        dict(ros_env, OMP_NUM_THREADS="1"),
        tmp_path / "node.log",
        {"model": str(bad_models["missing"]), "device": "cpu", "exit_on_autostart_failure": False},
        namespace="/stays",
    )
    client = RosClient("stays_client")
    try:
        assert client.wait(lambda: "stays unconfigured" in node.log() or not node.alive(), 120), node.log()
        assert node.alive(), node.log()
        assert client.lifecycle_state(node.fqn) == "unconfigured"
    finally:
        client.close()
        assert node.stop() == 0


def test_bad_parameter_files_are_one_line_and_exit_2(tmp_path: Path, ros_env: dict[str, str]) -> None:
    files = {
        "missing": tmp_path / "missing.yaml",
        "bad_yaml": tmp_path / "bad.yaml",
        "no_ros_parameters": tmp_path / "flat.yaml",
        "list": tmp_path / "list.yaml",
    }
    files["bad_yaml"].write_text("/**:\n  ros__parameters: [\n")
    files["no_ros_parameters"].write_text("/**:\n  model: x.pt\n")
    files["list"].write_text("- a\n- b\n")
    for case, path in files.items():
        proc = _node_run(ros_env, "--params-file", str(path), timeout=60)
        lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
        assert proc.returncode == 2 and len(lines) == 1, (case, proc.stdout, proc.stderr)
        assert path.name in lines[0] and "Traceback" not in proc.stderr, (case, lines)
        check = subprocess.run(
            [sys.executable, "-m", "bisenetformer_ros.ros.parameters", "--check", str(path)],
            capture_output=True,
            text=True,
            timeout=60,
        )
        lines = [ln for ln in check.stderr.splitlines() if ln.strip()]
        assert check.returncode == 2 and len(lines) == 1 and path.name in lines[0], (case, check.stderr)


def test_demo_stops_as_soon_as_the_node_cannot_configure(bad_models: dict[str, Path], tmp_path: Path) -> None:
    t0 = time.monotonic()
    proc = subprocess.run(
        [
            str(BIN / "bisenetformer"),
            "demo",
            "--quick",
            "--quiet",
            "--model",
            str(bad_models["good"]),
            "--cache-dir",
            str(tmp_path / "cache"),
            "--out",
            str(tmp_path / "demo"),
            "--node-arg=-p",
            "--node-arg=expected_classes:=ade20k",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    elapsed = time.monotonic() - t0
    print(f"demo with a model the node refuses: exit {proc.returncode} after {elapsed:.1f} s")
    assert proc.returncode == 2, proc.stdout[-2000:] + proc.stderr[-2000:]
    last = proc.stderr.strip().splitlines()[-1]
    assert "the node exited (code 2)" in last and "configure failed" in last and "ade20k" in last, last
    assert "Traceback" not in proc.stderr
