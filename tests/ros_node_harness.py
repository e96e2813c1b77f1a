"""Helpers for the node tests: a tiny random-weight model, the node in its own process, and a test-side ROS client.

The node under test is always the real ``bisenetformer_node`` executable started with ``--ros-args`` in a separate
process; the test talks to it over real DDS (private ROS_DOMAIN_ID per module, see conftest.ros_env) with rclpy in
its own context, spinning in a background thread so that the test body can publish and wait.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pytest

VENV_BIN = Path(sys.executable).parent


def save_tiny_model(path: Path, table: Any = None, seed: int = 0) -> Path:
    """A random-weight BiSeNetFormer small enough to run in a few milliseconds per frame on one CPU thread."""
    from bisenetformer_ros.data.classes import CITYSCAPES
    from tests.inference_models import make_model_file

    return make_model_file(path, class_table=table or CITYSCAPES, sharpen=False, seed=seed)


def _fmt(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(f"'{v}'" for v in value) + "]"
    if isinstance(value, float):
        return repr(value)
    return str(value)


class NodeProcess:
    """``bisenetformer_node`` in its own process (own session, so only it receives our signals)."""

    def __init__(
        self,
        env: dict[str, str],
        log_path: Path,
        params: dict[str, Any],
        name: str = "bisenetformer",
        namespace: str = "/",
        remaps: Iterable[tuple[str, str]] = (),
    ) -> None:
        self.name = name
        self.namespace = namespace
        self.log_path = log_path
        cmd = [str(VENV_BIN / "bisenetformer_node"), "--ros-args", "-r", f"__node:={name}", "-r", f"__ns:={namespace}"]
        for k, v in params.items():
            cmd += ["-p", f"{k}:={_fmt(v)}"]
        for a, b in remaps:
            cmd += ["-r", f"{a}:={b}"]
        env = dict(env, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
        self._log = open(log_path, "w")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(cmd, env=env, stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True)

    @property
    def fqn(self) -> str:
        return f"{self.namespace.rstrip('/')}/{self.name}"

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def log(self) -> str:
        if not self._log.closed:
            self._log.flush()
        return self.log_path.read_text(errors="replace")

    def stop(self, timeout: float = 30.0) -> int:
        """SIGINT (the node shuts down cleanly), escalating only if it hangs; returns the exit code."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.terminate()
                try:
                    self.proc.wait(10)
                except subprocess.TimeoutExpired:
                    self.proc.kill()
                    self.proc.wait(10)
        self._log.close()
        return int(self.proc.returncode)


class Inbox:
    """Messages received on one topic (thread-safe)."""

    def __init__(self) -> None:
        self.messages: list[Any] = []
        self._lock = threading.Lock()

    def add(self, msg: Any) -> None:
        with self._lock:
            self.messages.append(msg)

    def snapshot(self) -> list[Any]:
        with self._lock:
            return list(self.messages)

    def by_stamp(self) -> dict[tuple[int, int], Any]:
        return {(m.header.stamp.sec, m.header.stamp.nanosec): m for m in self.snapshot()}

    def clear(self) -> None:
        with self._lock:
            self.messages.clear()


def stamp_key(header: Any) -> tuple[int, int]:
    return (int(header.stamp.sec), int(header.stamp.nanosec))


class RosClient:
    """The test's side of the conversation: publishers, subscriptions, service calls, parsed /diagnostics."""

    def __init__(self, name: str = "test_client") -> None:
        import rclpy
        from diagnostic_msgs.msg import DiagnosticArray
        from rclpy.executors import SingleThreadedExecutor

        self.context = rclpy.Context()
        rclpy.init(context=self.context)
        self.node = rclpy.create_node(name, context=self.context)
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)
        self._diag: dict[str, Any] = {}
        self._diag_lock = threading.Lock()
        self.node.create_subscription(DiagnosticArray, "/diagnostics", self._on_diag, 50)
        self._running = True
        self._thread = threading.Thread(target=self._spin, daemon=True)
        self._thread.start()

    def _spin(self) -> None:
        while self._running and self.context.ok():
            try:
                self.executor.spin_once(timeout_sec=0.05)
            except Exception:  # shutting down
                if not self._running:
                    return
                raise

    def _on_diag(self, msg: Any) -> None:
        with self._diag_lock:
            for st in msg.status:
                self._diag[st.name] = (
                    ord(st.level) if isinstance(st.level, bytes) else int(st.level),
                    st.message,
                    {kv.key: kv.value for kv in st.values},
                )

    def close(self) -> None:
        self._running = False
        self._thread.join(timeout=5)
        self.executor.shutdown(timeout_sec=1)
        self.node.destroy_node()
        self.context.try_shutdown()

    # ----------------------------------------------------------------------------------------------- topics
    def publisher(self, msg_type: Any, topic: str, qos: Any = None) -> Any:
        return self.node.create_publisher(msg_type, topic, qos if qos is not None else reliable_qos())

    def subscribe(self, msg_type: Any, topic: str, qos: Any = None) -> Inbox:
        inbox = Inbox()
        self.node.create_subscription(msg_type, topic, inbox.add, qos if qos is not None else reliable_qos())
        return inbox

    @staticmethod
    def wait(predicate: Callable[[], bool], timeout: float, interval: float = 0.02) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate():
                return True
            time.sleep(interval)
        return predicate()

    def now_stamp(self) -> Any:
        return self.node.get_clock().now().to_msg()

    # ----------------------------------------------------------------------------------------------- diagnostics
    def diagnostics(self, contains: str) -> tuple[int, str, dict[str, str]] | None:
        """Latest (level, message, values) of the status whose name contains ``contains``."""
        with self._diag_lock:
            for name, v in self._diag.items():
                if contains in name:
                    return v
        return None

    def diag_value(self, contains: str, key: str, default: float = -1.0) -> float:
        d = self.diagnostics(contains)
        if d is None or key not in d[2]:
            return default
        return float(d[2][key])

    def clear_diagnostics(self) -> None:
        with self._diag_lock:
            self._diag.clear()

    # ----------------------------------------------------------------------------------------------- services
    def call(
        self, srv_type: Any, name: str, request: Any, timeout: float = 30.0, resend_after: float | None = None
    ) -> Any:
        """Call service ``name`` and wait for the answer.

        ``resend_after`` (idempotent requests only): send the request again when no answer came within this many
        seconds. ``wait_for_service`` only sees the request topic matched; a response sent before the server's
        response writer has matched this client's reader is lost by DDS (seen once on a loaded CI machine), and
        only a new request recovers from that.
        """
        client = self.node.create_client(srv_type, name)
        try:
            if not client.wait_for_service(timeout_sec=timeout):
                raise TimeoutError(f"service {name} not available")
            deadline = time.monotonic() + timeout
            fut = client.call_async(request)
            sent = time.monotonic()
            while not fut.done() and time.monotonic() < deadline:
                if resend_after is not None and time.monotonic() - sent > resend_after:
                    fut = client.call_async(request)
                    sent = time.monotonic()
                time.sleep(0.01)
            if not fut.done():
                raise TimeoutError(f"service {name} did not answer within {timeout} s")
            return fut.result()
        finally:
            self.node.destroy_client(client)

    def lifecycle_state(self, node_fqn: str) -> str:
        from lifecycle_msgs.srv import GetState

        request = GetState.Request()
        return self.call(GetState, f"{node_fqn}/get_state", request, resend_after=3.0).current_state.label

    def change_state(self, node_fqn: str, transition_id: int, timeout: float = 60.0) -> bool:
        from lifecycle_msgs.srv import ChangeState

        req = ChangeState.Request()
        req.transition.id = transition_id
        return bool(self.call(ChangeState, f"{node_fqn}/change_state", req, timeout).success)

    def set_parameters(self, node_fqn: str, values: dict[str, Any]) -> list[Any]:
        from rcl_interfaces.srv import SetParameters
        from rclpy.parameter import Parameter

        req = SetParameters.Request()
        req.parameters = [Parameter(k, value=v).to_parameter_msg() for k, v in values.items()]
        return list(self.call(SetParameters, f"{node_fqn}/set_parameters", req).results)

    def get_parameter(self, node_fqn: str, name: str) -> Any:
        from rcl_interfaces.srv import GetParameters
        from rclpy.parameter import parameter_value_to_python

        req = GetParameters.Request()
        req.names = [name]
        return parameter_value_to_python(
            self.call(GetParameters, f"{node_fqn}/get_parameters", req, resend_after=3.0).values[0]
        )


def reliable_qos(depth: int = 50) -> Any:
    from rclpy.qos import QoSProfile, ReliabilityPolicy

    return QoSProfile(depth=depth, reliability=ReliabilityPolicy.RELIABLE)


def latched_qos() -> Any:
    from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy

    return QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL)


@contextmanager
def running_node(
    ros_env: dict[str, str],
    tmp: Path,
    params: dict[str, Any],
    *,
    namespace: str = "/",
    client_name: str = "test_client",
    wait_topics: Iterable[str] | None = None,
    ready: Callable[[RosClient, NodeProcess], bool] | None = None,
    timeout: float = 90.0,
    forbid_traceback: bool = False,
) -> Iterator[tuple[NodeProcess, RosClient]]:
    """The node started with ``params`` (log in ``tmp/node.log``) and a test client, once the node is up.

    Up means: every latched ``class_info`` in ``wait_topics`` (default ``<namespace>/class_info``) has arrived, or
    ``ready(client, node)`` holds when given. A node that dies or is not up within ``timeout`` fails the test with
    the tail of its log. On exit the client closes, the node is stopped with SIGINT and must exit with code 0 (and,
    with ``forbid_traceback``, without a Traceback in its log).
    """
    node = NodeProcess(ros_env, tmp / "node.log", params, namespace=namespace)
    client = RosClient(client_name)
    if ready is None:
        from bisenetformer_ros.msg import ClassTable

        topics = [f"{namespace.rstrip('/')}/class_info"] if wait_topics is None else list(wait_topics)
        inboxes = [client.subscribe(ClassTable, t, latched_qos()) for t in topics]

        def ready(_client: RosClient, _node: NodeProcess) -> bool:
            return all(inbox.snapshot() for inbox in inboxes)

    up = client.wait(lambda: not node.alive() or ready(client, node), timeout)
    if not up or not node.alive():
        client.close()
        node.stop()
        pytest.fail(f"node did not come up:\n{node.log()[-3000:]}")
    try:
        yield node, client
    finally:
        client.close()
        code = node.stop()
        log = node.log()
        assert code == 0, f"node exited with {code}:\n{log[-3000:]}"
        if forbid_traceback:
            assert "Traceback" not in log, log[-3000:]


# --------------------------------------------------------------------------------------------------- messages


def image_msg(rgb: np.ndarray, encoding: str, stamp: Any, frame_id: str, pad: int = 0) -> Any:
    """sensor_msgs/Image of ``rgb`` in ``encoding`` (labels/mono encodings take the green channel)."""
    from sensor_msgs.msg import Image

    from bisenetformer_ros.image import encode_image, encoding_info

    info = encoding_info(encoding)
    h, w = rgb.shape[:2]
    if info.layout == "mono":
        arr: np.ndarray = rgb[..., 1].astype(np.uint16) * 257 if info.depth == 2 else rgb[..., 1]
    else:
        arr = rgb
    step, data = encode_image(arr, encoding, step=w * info.bytes_per_pixel + pad)
    m = Image()
    m.header.stamp = stamp
    m.header.frame_id = frame_id
    m.height, m.width, m.encoding, m.is_bigendian, m.step = h, w, encoding, 0, step
    m.data = data
    return m


def label_array(img: Any) -> np.ndarray:
    """mono8/mono16 sensor_msgs/Image -> HxW array (honours step)."""
    dtype = np.dtype(">u2" if img.is_bigendian else "<u2") if img.encoding == "mono16" else np.dtype(np.uint8)
    raw = np.frombuffer(img.data, np.uint8).reshape(img.height, img.step)[:, : img.width * dtype.itemsize]
    return np.ascontiguousarray(raw).view(dtype).reshape(img.height, img.width)


def rgb_array(img: Any) -> np.ndarray:
    raw = np.frombuffer(img.data, np.uint8).reshape(img.height, img.step)[:, : img.width * 3]
    return raw.reshape(img.height, img.width, 3)


def check_panoptic(msg: Any, table: Any, expect_hw: tuple[int, int]) -> None:
    """A PanopticSegmentation message is self-consistent: ids image vs segment table (area, box, centroid, class)."""
    assert msg.segment_ids.header == msg.header, "segment_ids must carry the frame's header"
    assert msg.segment_ids.encoding == "mono16"
    ids = label_array(msg.segment_ids)
    assert ids.shape == expect_hw
    seg_ids = [int(s.id) for s in msg.segments]
    assert len(seg_ids) == len(set(seg_ids)), "segment ids must be unique"
    assert 0 not in seg_ids
    present = {int(v) for v in np.unique(ids)} - {0}
    assert present == set(seg_ids), f"id image has {sorted(present)}, table has {sorted(seg_ids)}"
    for s in msg.segments:
        ys, xs = np.nonzero(ids == s.id)
        assert int(s.area) == xs.size
        assert (s.bbox.x_offset, s.bbox.y_offset) == (int(xs.min()), int(ys.min()))
        assert (s.bbox.width, s.bbox.height) == (int(xs.max() - xs.min() + 1), int(ys.max() - ys.min() + 1))
        assert abs(s.centroid_x - xs.mean()) < 1e-3 * max(1.0, xs.mean()) + 1e-3
        assert abs(s.centroid_y - ys.mean()) < 1e-3 * max(1.0, ys.mean()) + 1e-3
        assert 0 <= s.class_id < table.num_classes
        assert bool(s.is_thing) == bool(table.is_thing[s.class_id])
        assert 0.0 <= s.score <= 1.0


def rss_bytes(pid: int) -> int:
    import psutil

    return int(psutil.Process(pid).memory_info().rss)
