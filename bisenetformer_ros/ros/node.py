"""``bisenetformer_node``: cameras in; semantic labels, overlays and panoptic segments out (ROS 2 lifecycle node).

A thin adapter over the ROS-free core. Threads and data flow:

* executor thread: subscription callbacks check a message's header in O(1) (malformed ones are counted and skipped
  so they never displace a good frame), then put it into its camera's newest-frame slot and return; parameter,
  lifecycle and diagnostics callbacks also run here, so none of them ever waits for inference.
* worker thread: takes the newest frame of every camera, drops those older than ``max_age``, decodes, runs one
  batched inference for all cameras, renders (:func:`~bisenetformer_ros.inference.outputs.render_outputs`) and
  publishes with each input's own header.

Tracking: each camera has its own :class:`~bisenetformer_ros.tracking.PanopticTracker`, run by the worker on the
camera's panoptic result in stamp order; the track ids go into ``panoptic`` (``PanopticSegment.track_id``),
``detections`` (the detection id) and ``panoptic/color``. The tracks are forgotten when the camera's stamps jump back
in time (a bag played in a loop), on ``tracking.reset``, when tracking is switched off and on lifecycle cleanup;
the id counter of a camera continues across all of these, so ids are never reused while the process runs.

Lifecycle: ``configure`` loads the model and creates publishers (a failure is logged with its cause and leaves the
node unconfigured, ready to be configured again), ``activate`` subscribes and starts the worker, ``deactivate``
stops both, ``cleanup`` releases the model and destroys every publisher it created (nothing accumulates over
cycles). With ``autostart`` (default) the node configures and activates itself like a plain node; then a failed
configure ends the process with exit code 2 and one error line (``exit_on_autostart_failure``), because a plain node
that sits unconfigured for ever cannot be respawned or stopped on by a launch file.

QoS: outputs are reliable by default (REP 2003), which serves reliable and best-effort subscribers alike. A
subscriber (or, on the input side, a publisher) whose QoS does not match is reported twice: a WARN log line naming
the topic and the policy (rclpy's QoS event callbacks), and a WARN in ``/diagnostics`` for as long as such an
endpoint exists (checked against the graph every diagnostics period), since a lazy node would otherwise sit idle
with an "OK" status while the user's display shows nothing.
"""

from __future__ import annotations

import contextlib
import gc
import sys
import threading
import time
import traceback
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import cv2
import numpy as np

from bisenetformer_ros.ros.parameters import (
    BUILTIN_PARAMETERS,
    PARAMETERS,
    SPECS,
    ParamsFileError,
    check_combination,
    check_params_file_syntax,
    help_text,
    mask_class_entries,
    suggest,
)
from bisenetformer_ros.topics import (
    CLASS_INFO_TOPIC,
    LABEL_INFO_TOPIC,
    OUTPUT_CAMERA_INFO_TOPICS,
    OUTPUT_TOPICS,
)

#: Exit code of the process for bad input: invalid parameters, unreadable parameter files, failed autostart.
EXIT_BAD_INPUT = 2
SEMANTIC_OUTPUTS = frozenset({"semantic", "semantic_color", "semantic_confidence", "overlay", "class_mask"})
PANOPTIC_OUTPUTS = frozenset({"panoptic", "panoptic_color", "detections"})


def _ns_join(ns: str, topic: str) -> str:
    """Topic ``topic`` inside camera namespace ``ns`` ('' = the node's namespace; relative names stay relative)."""
    ns = ns.rstrip("/")
    return f"{ns}/{topic}" if ns else topic


@dataclass
class PendingFrame:
    """A received camera message waiting for the worker."""

    msg: Any
    receipt: float  # time.monotonic() at arrival
    receipt_ros_ns: int  # node clock at arrival (ns)


@dataclass
class QosIssue:
    """An endpoint on one of our topics whose QoS does not match ours (seen through a QoS event)."""

    topic: str
    side: str  # 'subscriber' (of our output) or 'publisher' (of our input)
    policy: str  # e.g. RELIABILITY, DURABILITY
    ours: Any  # our QoSProfile on that topic
    count: int = 0  # incompatible endpoints found in the graph at the last check


@dataclass
class Camera:
    """One camera namespace: its topics, publishers, last camera_info and statistics."""

    index: int
    ns: str
    label: str
    stats: Any
    subscriptions: list[Any] = field(default_factory=list)
    publishers: dict[str, Any] = field(default_factory=dict)
    compressed: dict[str, Any] = field(default_factory=dict)  # image outputs' <topic>/compressed publishers
    info_publishers: dict[str, Any] = field(default_factory=dict)  # semantic/camera_info, panoptic/camera_info
    latched: list[Any] = field(default_factory=list)  # class_info (+ label_info)
    camera_info: Any = None
    qos_issues: dict[str, QosIssue] = field(default_factory=dict)  # topic -> issue
    tracker: Any = None  # PanopticTracker while tracking.enable (one per camera: ids are per camera)
    last_stamp_ns: int | None = None  # header stamp of the last tracked frame: a jump back resets the tracks

    def all_publishers(self) -> list[Any]:
        """Every publisher this camera owns (for cleanup and counting)."""
        return [*self.publishers.values(), *self.compressed.values(), *self.info_publishers.values(), *self.latched]


def _tasks_for(wanted: set[str], task: str, edges: bool) -> set[str]:
    """Post-processing tasks needed for the ``wanted`` outputs under the ``task`` parameter."""
    tasks: set[str] = set()
    if task in ("all", "semantic") and wanted & SEMANTIC_OUTPUTS:
        tasks.add("semantic")
    if task in ("all", "panoptic") and (wanted & PANOPTIC_OUTPUTS or ("overlay" in wanted and task == "panoptic")):
        tasks.add("panoptic")
    if task == "all" and "overlay" in wanted and edges:
        tasks.add("panoptic")  # instance outlines in the overlay come from the panoptic result
    return tasks


def _allowed_by_task(name: str, task: str) -> bool:
    if task == "semantic":
        return name in SEMANTIC_OUTPUTS
    if task == "panoptic":
        return name in PANOPTIC_OUTPUTS or name == "overlay"
    return True


def _node_class() -> type:
    """Define the node class on first use so that importing this module (``--help``) does not import rclpy."""
    from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
    from rcl_interfaces.msg import (
        FloatingPointRange,
        IntegerRange,
        ParameterDescriptor,
        ParameterType,
        SetParametersResult,
    )
    from rclpy.lifecycle import LifecycleNode, LifecycleState, TransitionCallbackReturn
    from rclpy.parameter import Parameter
    from rclpy.qos import DurabilityPolicy, ReliabilityPolicy, qos_policy_name_from_kind
    from sensor_msgs.msg import CameraInfo, CompressedImage, Image
    from std_msgs.msg import Header

    from bisenetformer_ros.image import ImageFormatError, check_compressed, check_layout
    from bisenetformer_ros.inference.outputs import OUTPUT_NAMES, render_outputs
    from bisenetformer_ros.msg import ClassTable as ClassTableMsg
    from bisenetformer_ros.msg import PanopticSegmentation
    from bisenetformer_ros.ros import messages as M
    from bisenetformer_ros.ros.qos import diagnostics_qos, latched_qos, stream_qos
    from bisenetformer_ros.ros.stats import STAGES, CameraStats, CauseThrottle

    try:
        from rclpy.event_handler import PublisherEventCallbacks, SubscriptionEventCallbacks
    except ImportError:  # pragma: no cover - Humble's name of the same module
        from rclpy.qos_event import PublisherEventCallbacks, SubscriptionEventCallbacks

    ptypes = {
        "bool": ParameterType.PARAMETER_BOOL,
        "integer": ParameterType.PARAMETER_INTEGER,
        "double": ParameterType.PARAMETER_DOUBLE,
        "string": ParameterType.PARAMETER_STRING,
        "string_array": ParameterType.PARAMETER_STRING_ARRAY,
    }

    class BiSeNetFormerNode(LifecycleNode):
        """See the module docstring."""

        def __init__(self, node_name: str = "bisenetformer", **kwargs: Any) -> None:
            super().__init__(node_name, **kwargs)
            self._params: dict[str, Any] = {p.name: p.default for p in PARAMETERS}
            self._declaring = True
            self._configured = False
            self._active = False
            self._segmenter: Any = None
            self._mask_ids: list[int] = []  # mask_classes resolved against the loaded model's class table
            self._vm = M.vision_msgs_module()
            self._cameras: list[Camera] = []
            self._pending: dict[int, PendingFrame] = {}
            self._cond = threading.Condition()
            self._stop = threading.Event()
            self._worker: threading.Thread | None = None
            self._throttle = CauseThrottle(10.0)
            self._network_calls = 0
            self._errors = 0
            self._last_error = ""
            self._configure_error = ""
            self._state_label = "unconfigured"
            self._exit_on_failure = False  # set by autostart(): a failed configure then ends the process
            self._next_track_ids: dict[str, int] = {}  # camera namespace -> next track id (survives cleanup)
            self._reset_tracks = threading.Event()  # tracking.reset: the worker forgets the tracks at the next frame
            self._reset_timer: Any = None
            self.finalized = False
            self.add_on_set_parameters_callback(self._on_set_parameters)
            self._declare_all()
            self._declaring = False
            self._warn_unknown_overrides()
            self._diag_pub = self.create_publisher(DiagnosticArray, "/diagnostics", diagnostics_qos())
            self._diag_timer = self.create_timer(float(self._params["diagnostics.period"]), self._publish_diagnostics)
            if self._vm is None:
                self.get_logger().info("vision_msgs is not installed: 'detections' and 'label_info' are not offered")

        # ------------------------------------------------------------------------------------------- parameters
        def _declare_all(self) -> None:
            for spec in PARAMETERS:
                desc = ParameterDescriptor(
                    name=spec.name,
                    type=ptypes[spec.type],
                    description=spec.description.replace("`", ""),
                    additional_constraints=(
                        f"one of: {', '.join(spec.choices)}" if spec.choices else f"applies: {spec.when}"
                    ),
                    read_only=spec.startup,
                )
                if spec.type == "integer" and spec.minimum is not None and spec.maximum is not None:
                    desc.integer_range = [
                        IntegerRange(from_value=int(spec.minimum), to_value=int(spec.maximum), step=1)
                    ]
                elif spec.type == "double" and spec.minimum is not None and spec.maximum is not None:
                    desc.floating_point_range = [
                        FloatingPointRange(from_value=float(spec.minimum), to_value=float(spec.maximum), step=0.0)
                    ]
                self.declare_parameter(spec.name, spec.default, desc)
                self._params[spec.name] = self.get_parameter(spec.name).value
            problems = check_combination(self._params)
            if problems:
                raise ValueError("; ".join(problems))

        def _warn_unknown_overrides(self) -> None:
            overrides = getattr(self, "_parameter_overrides", {}) or {}
            for name in overrides:
                if name not in SPECS and name not in BUILTIN_PARAMETERS:
                    self.get_logger().warning(f"ignoring unknown parameter '{name}'{suggest(name)}")

        def _on_set_parameters(self, params: Sequence[Parameter]) -> SetParametersResult:
            new = dict(self._params)
            for p in params:
                spec = SPECS.get(p.name)
                if spec is None:
                    continue
                if p.type_ == Parameter.Type.NOT_SET:
                    return SetParametersResult(successful=False, reason=f"parameter '{p.name}' cannot be unset")
                value = list(p.value) if spec.type == "string_array" else p.value
                reason = spec.check(value)
                if reason:
                    return SetParametersResult(successful=False, reason=reason)
                if not self._declaring and value != self._params.get(p.name):
                    if spec.startup:
                        return SetParametersResult(
                            successful=False, reason=f"parameter '{p.name}' is read only at start-up"
                        )
                    if not spec.tunable and self._configured:
                        return SetParametersResult(
                            successful=False,
                            reason=(
                                f"parameter '{p.name}' needs a reload and cannot change while the node is "
                                f"{self._state_label}: deactivate and clean up the node, set it, then configure "
                                "(and activate) again"
                            ),
                        )
                new[p.name] = value
            mask_ids = self._mask_ids
            if not self._declaring:
                problems = check_combination(new)
                if problems:
                    return SetParametersResult(successful=False, reason="; ".join(problems))
                if self._segmenter is not None and new["mask_classes"] != self._params["mask_classes"]:
                    try:  # names are checked against the loaded model; before configure, configure checks them
                        mask_ids = self._segmenter.class_table.resolve(mask_class_entries(new["mask_classes"]))
                    except ValueError as exc:
                        return SetParametersResult(successful=False, reason=f"parameter 'mask_classes': {exc}")
            if not self._declaring and new.get("tracking.reset"):
                self._reset_tracks.set()
                new["tracking.reset"] = False
                self._schedule_reset_clear()
            self._params = new
            self._mask_ids = mask_ids
            return SetParametersResult(successful=True)

        def _schedule_reset_clear(self) -> None:
            """Set ``tracking.reset`` back to false once the current set-parameters call is over (a parameter
            cannot be changed from inside its own callback)."""
            if self._reset_timer is not None:
                return

            def clear() -> None:
                if self._reset_timer is not None:
                    self._reset_timer.cancel()
                    self.destroy_timer(self._reset_timer)
                    self._reset_timer = None
                if self.get_parameter("tracking.reset").value:
                    self.set_parameters([Parameter("tracking.reset", Parameter.Type.BOOL, False)])

            self._reset_timer = self.create_timer(0.01, clear)

        # ------------------------------------------------------------------------------------------- lifecycle
        def on_configure(self, state: LifecycleState) -> TransitionCallbackReturn:
            from bisenetformer_ros.ros.pipeline import build_segmenter, network_size_from

            p = dict(self._params)
            log = self.get_logger()
            log.info(
                f"configuring: model '{p['model'] or '(embedded default)'}', backend {p['backend']}, "
                f"device {p['device']}, precision {p['precision']}"
            )
            t0 = time.perf_counter()
            seg = None
            try:
                size = network_size_from(p)  # the model file's recorded size unless overridden
                seg = build_segmenter(p, size)
                try:
                    mask_ids = seg.class_table.resolve(mask_class_entries(p["mask_classes"]))
                except ValueError as exc:
                    raise ValueError(f"parameter 'mask_classes': {exc}") from None
                if p["warmup"]:
                    h = int(p["input_height"]) or 480
                    w = int(p["input_width"]) or 640
                    seg.warmup(h, w, batch=1, iterations=1)
            except Exception as exc:  # any load problem: report, stay unconfigured, allow another configure
                if seg is not None:
                    seg.close()
                self._configure_error = f"{type(exc).__name__}: {exc}"
                if self._exit_on_failure:
                    log.error(f"configure failed: {self._configure_error}; exiting (code {EXIT_BAD_INPUT})")
                else:
                    log.error(
                        f"configure failed: {self._configure_error}. Fix the parameter(s) and trigger 'configure' again"
                    )
                return TransitionCallbackReturn.FAILURE
            self._segmenter = seg
            self._mask_ids = mask_ids
            self._configure_error = ""
            try:
                self._create_cameras(p)
            except Exception as exc:
                self._configure_error = f"{type(exc).__name__}: {exc}"
                log.error(f"configure failed while creating topics: {self._configure_error}")
                self._release()
                self._configure_error = f"{type(exc).__name__}: {exc}"  # _release() resets the state
                return TransitionCallbackReturn.FAILURE
            self._configured = True
            self._state_label = "inactive"
            info = seg.backend.info
            log.info(
                f"model loaded in {time.perf_counter() - t0:.1f} s: {info.describe()}, classes "
                f"'{seg.class_table.dataset}' ({seg.class_table.num_classes}); network input "
                f"{size.describe()}; cameras: " + ", ".join(c.label for c in self._cameras)
            )
            return TransitionCallbackReturn.SUCCESS

        def on_activate(self, state: LifecycleState) -> TransitionCallbackReturn:
            p = self._params
            qos = stream_qos(p["input_qos"], p["input_qos_depth"])
            compressed = p["input_transport"] == "compressed"
            for cam in self._cameras:
                cam.stats = CameraStats(cam.label)  # fresh counters for this activation
                if compressed:
                    topic = _ns_join(cam.ns, "image/compressed")
                    cb = self._make_compressed_callback(cam)
                    cam.subscriptions.append(self._subscribe(cam, CompressedImage, topic, cb, qos))
                else:
                    topic = _ns_join(cam.ns, "image")
                    cam.subscriptions.append(self._subscribe(cam, Image, topic, self._make_image_callback(cam), qos))
                if p["camera_info_passthrough"]:
                    cam.subscriptions.append(
                        self._subscribe(
                            cam, CameraInfo, _ns_join(cam.ns, "camera_info"), self._make_info_callback(cam), qos
                        )
                    )
            self._publish_class_tables()
            self._stop.clear()
            self._worker = threading.Thread(target=self._worker_loop, name="bisenetformer_worker", daemon=True)
            self._worker.start()
            self._active = True
            self._state_label = "active"
            self.get_logger().info("active: processing camera frames")
            return super().on_activate(state)

        def on_deactivate(self, state: LifecycleState) -> TransitionCallbackReturn:
            self._stop_processing()
            self._state_label = "inactive"
            self.get_logger().info("inactive: camera subscriptions closed")
            return super().on_deactivate(state)

        def on_cleanup(self, state: LifecycleState) -> TransitionCallbackReturn:
            self._release()
            self.get_logger().info("cleaned up: model released")
            return TransitionCallbackReturn.SUCCESS

        def on_shutdown(self, state: LifecycleState) -> TransitionCallbackReturn:
            self.teardown()
            self.finalized = True  # main() leaves its spin loop: a finalized lifecycle node has nothing left to do
            self.get_logger().info("shut down (finalized)")
            return TransitionCallbackReturn.SUCCESS

        def on_error(self, state: LifecycleState) -> TransitionCallbackReturn:
            self.get_logger().error("error during a transition: releasing everything, back to unconfigured")
            self.teardown()
            return TransitionCallbackReturn.SUCCESS

        def autostart(self, exit_on_failure: bool = False) -> bool:
            """Configure + activate (the ``autostart`` parameter); False if configuring failed.

            ``exit_on_failure``: the caller ends the process on failure, so the configure error is logged as the
            one final line instead of an invitation to configure again.
            """
            self._exit_on_failure = exit_on_failure
            if self.trigger_configure() != TransitionCallbackReturn.SUCCESS:
                return False
            return self.trigger_activate() == TransitionCallbackReturn.SUCCESS

        def teardown(self) -> None:
            """Stop the worker and release the model whatever the state (shutdown, errors, process exit)."""
            self._stop_processing()
            self._release()

        def _stop_processing(self) -> None:
            self._active = False
            self._stop.set()
            with self._cond:
                self._cond.notify_all()
            if self._worker is not None:
                self._worker.join(timeout=60.0)
                self._worker = None
            with self._cond:
                for idx in list(self._pending):
                    self._cameras[idx].stats.count("dropped_inactive")
                self._pending.clear()
            for cam in self._cameras:
                for sub in cam.subscriptions:
                    self.destroy_subscription(sub)
                cam.subscriptions.clear()
                for topic in [t for t, issue in cam.qos_issues.items() if issue.side == "publisher"]:
                    del cam.qos_issues[topic]  # our subscription is gone, so is its mismatch

        def _release(self) -> None:
            for cam in self._cameras:
                self._drop_tracker(cam)
                for pub in cam.all_publishers():
                    self.destroy_publisher(pub)
                cam.publishers.clear()
                cam.compressed.clear()
                cam.info_publishers.clear()
                cam.latched.clear()
                cam.qos_issues.clear()
            self._cameras = []
            if self._segmenter is not None:
                try:
                    self._segmenter.close()
                except Exception as exc:  # pragma: no cover - closing must not prevent cleanup
                    self.get_logger().warning(f"closing the backend failed: {exc}")
                self._segmenter = None
                gc.collect()
            self._configured = False
            self._state_label = "unconfigured"

        # ------------------------------------------------------------------------------------------- QoS events
        def _publish_to(self, cam: Camera, msg_type: Any, topic: str, qos: Any) -> Any:
            """A publisher whose incompatible-QoS events are logged and tracked for /diagnostics."""
            resolved = self.resolve_topic_name(topic)

            def on_incompatible(event: Any) -> None:
                self._qos_event(cam, resolved, "subscriber", event, qos)

            return self.create_publisher(
                msg_type, topic, qos, event_callbacks=PublisherEventCallbacks(incompatible_qos=on_incompatible)
            )

        def _subscribe(self, cam: Camera, msg_type: Any, topic: str, callback: Any, qos: Any) -> Any:
            """A subscription whose incompatible-QoS events are logged and tracked for /diagnostics."""
            resolved = self.resolve_topic_name(topic)

            def on_incompatible(event: Any) -> None:
                self._qos_event(cam, resolved, "publisher", event, qos)

            return self.create_subscription(
                msg_type,
                topic,
                callback,
                qos,
                event_callbacks=SubscriptionEventCallbacks(incompatible_qos=on_incompatible),
            )

        def _qos_event(self, cam: Camera, topic: str, side: str, event: Any, ours: Any) -> None:
            policy = qos_policy_name_from_kind(event.last_policy_kind)
            cam.qos_issues[topic] = QosIssue(topic, side, policy, ours, max(1, int(event.total_count_change)))
            if side == "subscriber":
                fix = "it receives nothing; give it a matching QoS" + (
                    " or set output_qos: reliable" if self._params["output_qos"] != "reliable" else ""
                )
            else:
                fix = "its messages are not received; give it a matching QoS or change input_qos"
            self.get_logger().warning(
                f"a {side} on {topic} requests an incompatible QoS ({policy}, ours: {_describe_qos(ours)}): {fix}"
            )

        def _refresh_qos_issues(self, cam: Camera) -> None:
            """Recount the incompatible endpoints of every topic that reported one; forget topics that have none."""
            for topic, issue in list(cam.qos_issues.items()):
                try:
                    if issue.side == "subscriber":
                        infos = self.get_subscriptions_info_by_topic(topic)
                        bad = [i for i in infos if _incompatible(issue.ours, i.qos_profile)]
                    else:
                        infos = self.get_publishers_info_by_topic(topic)
                        bad = [i for i in infos if _incompatible(i.qos_profile, issue.ours)]
                except Exception:  # pragma: no cover - graph queries fail only while shutting down
                    continue
                if bad:
                    issue.count = len(bad)
                else:
                    del cam.qos_issues[topic]

        def _create_cameras(self, p: dict[str, Any]) -> None:
            out_qos = stream_qos(p["output_qos"], p["output_qos_depth"])
            image_topic = "image/compressed" if p["input_transport"] == "compressed" else "image"
            for i, ns in enumerate(p["cameras"]):
                # Named by the resolved input topic (remappings applied), which is what a user recognises.
                label = self.resolve_topic_name(_ns_join(ns, image_topic))
                cam = Camera(index=i, ns=ns, label=label, stats=CameraStats(label))
                self._cameras.append(cam)  # at once: a failure below still releases what was created
                for name, topic in OUTPUT_TOPICS.items():
                    if name == "detections":
                        if self._vm is None:
                            continue
                        msg_type = self._vm.Detection2DArray
                    elif name == "panoptic":
                        msg_type = PanopticSegmentation
                    else:
                        msg_type = Image
                    cam.publishers[name] = self._publish_to(cam, msg_type, _ns_join(ns, topic), out_qos)
                    if msg_type is Image:
                        cam.compressed[name] = self._publish_to(
                            cam, CompressedImage, _ns_join(ns, f"{topic}/compressed"), out_qos
                        )
                if p["camera_info_passthrough"]:
                    for info_topic in OUTPUT_CAMERA_INFO_TOPICS:
                        cam.info_publishers[info_topic] = self._publish_to(
                            cam, CameraInfo, _ns_join(ns, info_topic), out_qos
                        )
                latched = latched_qos()
                cam.latched.append(self._publish_to(cam, ClassTableMsg, _ns_join(ns, CLASS_INFO_TOPIC), latched))
                if self._vm is not None and hasattr(self._vm, "LabelInfo"):
                    cam.latched.append(
                        self._publish_to(cam, self._vm.LabelInfo, _ns_join(ns, LABEL_INFO_TOPIC), latched)
                    )

        def _publish_class_tables(self) -> None:
            table = self._segmenter.class_table
            header = Header()
            header.stamp = self.get_clock().now().to_msg()
            for cam in self._cameras:
                cam.latched[0].publish(M.class_table_msg(header, table))
                if len(cam.latched) > 1:
                    msg = M.label_info_msg(self._vm, header, table, float(self._params["object_mask_threshold"]))
                    if msg is not None:
                        cam.latched[1].publish(msg)

        # ------------------------------------------------------------------------------------------- callbacks
        def _wanted_outputs(self, cam: Camera, p: dict[str, Any]) -> set[str]:
            """Outputs to produce for ``cam`` now: enabled, allowed by ``task``, and subscribed when lazy."""
            wanted = set()
            lazy = p["lazy"]
            for name, pub in cam.publishers.items():
                if not p[f"outputs.{name}"] or not _allowed_by_task(name, p["task"]):
                    continue
                if name == "class_mask" and not self._mask_ids:
                    continue
                if lazy and pub.get_subscription_count() == 0 and not self._compressed_subscribed(cam, name):
                    continue
                wanted.add(name)
            return wanted

        @staticmethod
        def _compressed_subscribed(cam: Camera, name: str) -> bool:
            pub = cam.compressed.get(name)
            return pub is not None and pub.get_subscription_count() > 0

        def _enqueue(self, cam: Camera, msg: Any) -> None:
            p = self._params
            if not self._wanted_outputs(cam, p):
                cam.stats.count("idle")
                return
            frame = PendingFrame(msg, time.monotonic(), self.get_clock().now().nanoseconds)
            with self._cond:
                replaced = cam.index in self._pending
                self._pending[cam.index] = frame
                self._cond.notify()
            cam.stats.count("accepted")
            if replaced:
                cam.stats.count("dropped_superseded")

        def _make_image_callback(self, cam: Camera) -> Any:
            def on_image(msg: Image) -> None:
                cam.stats.count("received")
                if not self._active:
                    cam.stats.count("dropped_inactive")
                    return
                try:
                    check_layout(
                        msg.encoding,
                        msg.height,
                        msg.width,
                        msg.step,
                        len(msg.data),
                        max_pixels=int(self._params["max_image_pixels"]),
                    )
                except ImageFormatError as exc:
                    self._bad_input(cam, exc.cause, str(exc))
                    return
                self._enqueue(cam, msg)

            return on_image

        def _make_compressed_callback(self, cam: Camera) -> Any:
            def on_compressed(msg: CompressedImage) -> None:
                cam.stats.count("received")
                if not self._active:
                    cam.stats.count("dropped_inactive")
                    return
                try:
                    # Header only (no decoding): a corrupt or bomb-sized frame must not displace a good waiting one.
                    check_compressed(msg.format, msg.data, max_pixels=int(self._params["max_image_pixels"]))
                except ImageFormatError as exc:
                    self._bad_input(cam, exc.cause, str(exc))
                    return
                self._enqueue(cam, msg)

            return on_compressed

        def _make_info_callback(self, cam: Camera) -> Any:
            def on_info(msg: CameraInfo) -> None:
                cam.camera_info = msg

            return on_info

        def _bad_input(self, cam: Camera, cause: str, text: str) -> None:
            cam.stats.bad(cause)
            log_now, suppressed = self._throttle.should_log(f"{cam.label}:{cause}")
            if log_now:
                more = f" ({suppressed} more since the last report)" if suppressed else ""
                self.get_logger().warning(f"[{cam.label}] skipped a malformed frame ({cause}): {text}{more}")

        # ------------------------------------------------------------------------------------------- worker
        def _worker_loop(self) -> None:
            while not self._stop.is_set():
                with self._cond:
                    while not self._pending and not self._stop.is_set():
                        self._cond.wait(0.5)
                    if self._stop.is_set():
                        return
                    frames = [(self._cameras[i], f) for i, f in sorted(self._pending.items())]
                    self._pending.clear()
                try:
                    self._process(frames)
                except Exception as exc:  # never let the worker die: report and continue with the next frames
                    self._errors += 1
                    self._last_error = f"{type(exc).__name__}: {exc}"
                    for cam, _ in frames:
                        cam.stats.count("errors")
                    self.get_logger().error(f"processing failed: {self._last_error}\n{traceback.format_exc()}")

        def _age(self, f: PendingFrame, p: dict[str, Any]) -> float:
            if p["max_age_reference"] == "stamp":
                st = f.msg.header.stamp
                stamp_ns = int(st.sec) * 1_000_000_000 + int(st.nanosec)
                if stamp_ns > 0:
                    return (self.get_clock().now().nanoseconds - stamp_ns) / 1e9
            return time.monotonic() - f.receipt

        def _process(self, frames: list[tuple[Camera, PendingFrame]]) -> None:
            from bisenetformer_ros.ros.pipeline import postprocess_config_from, resize_to_network

            p = self._params
            seg = self._segmenter
            if seg is None:
                return
            max_age = float(p["max_age"])
            items: list[tuple[Camera, PendingFrame, np.ndarray, set[str]]] = []
            for cam, f in frames:
                if max_age > 0 and self._age(f, p) > max_age:
                    cam.stats.count("dropped_stale")
                    continue
                wanted = self._wanted_outputs(cam, p)
                if not wanted:
                    cam.stats.count("idle")
                    continue
                t0 = time.perf_counter()
                try:
                    rgb = M.message_to_rgb(f.msg, int(p["max_image_pixels"]), p["image_16bit_scaling"])
                except ImageFormatError as exc:
                    self._bad_input(cam, exc.cause, str(exc))
                    continue
                except Exception as exc:  # a decoder bug must not stop the node: count it as bad input
                    self._bad_input(cam, "decode_error", f"{type(exc).__name__}: {exc}")
                    continue
                if p["output_resolution"] == "network":
                    rgb = resize_to_network(seg, rgb)
                cam.stats.latency("decode", time.perf_counter() - t0)
                items.append((cam, f, rgb, wanted))
            if not items:
                return
            edges = bool(p["overlay_instance_edges"])
            tasks: set[str] = set()
            for _, _, _, wanted in items:
                tasks |= _tasks_for(wanted, p["task"], edges)
            order = tuple(t for t in ("semantic", "panoptic") if t in tasks)
            if not order:
                for cam, _, _, _ in items:
                    cam.stats.count("idle")
                return
            seg.postprocess_config = replace(
                postprocess_config_from(p),
                semantic_confidence=any("semantic_confidence" in wanted for _, _, _, wanted in items),
            )
            self._network_calls += 1
            try:
                results = seg.run([rgb for _, _, rgb, _ in items], tasks=order)
            except Exception as exc:  # one failing batch is reported; the next frames are processed normally
                self._errors += 1
                self._last_error = f"{type(exc).__name__}: {exc}"
                log_now, suppressed = self._throttle.should_log(f"inference:{type(exc).__name__}")
                if log_now:
                    more = f" ({suppressed} more since the last report)" if suppressed else ""
                    self.get_logger().error(f"inference failed on {len(items)} frame(s): {self._last_error}{more}")
                for cam, _, _, _ in items:
                    cam.stats.count("errors")
                return
            table = seg.class_table
            for (cam, f, rgb, wanted), r in zip(items, results, strict=True):
                for stage in ("preprocess", "inference", "postprocess"):
                    if stage in r.timings:
                        cam.stats.latency(stage, r.timings[stage])
                cam.stats.count("processed")
                t0 = time.perf_counter()
                render = {n for n in wanted if n in OUTPUT_NAMES}
                if "detections" in wanted:
                    render.add("panoptic")
                tracks = self._track(cam, f, r.output.panoptic, p)
                outs = render_outputs(
                    r,
                    rgb,
                    table,
                    float(p["overlay_alpha"]),
                    outputs=render,
                    draw_instance_edges=edges,
                    mask_classes=self._mask_ids,
                    tracks=tracks,
                    color_by_track=bool(p["tracking.color_by_track"]),
                )
                t1 = time.perf_counter()
                cam.stats.latency("render", t1 - t0)
                if self._publish(cam, f, outs, wanted, p):
                    cam.stats.count("published")
                t2 = time.perf_counter()
                cam.stats.latency("publish", t2 - t1)
                cam.stats.latency("age", time.monotonic() - f.receipt)

        # ------------------------------------------------------------------------------------------- tracking
        def _drop_tracker(self, cam: Camera) -> None:
            """Forget ``cam``'s tracks, keeping its id counter for the next tracker (ids are never reused)."""
            if cam.tracker is not None:
                self._next_track_ids[cam.ns] = cam.tracker.next_id
            cam.tracker = None
            cam.last_stamp_ns = None

        def _track(self, cam: Camera, f: PendingFrame, panoptic: Any, p: dict[str, Any]) -> dict[int, Any] | None:
            """Track ids of this frame's segments (None when tracking is off or there is no panoptic result)."""
            from bisenetformer_ros.ros.pipeline import tracker_config_from
            from bisenetformer_ros.tracking import PanopticTracker

            if self._reset_tracks.is_set():
                self._reset_tracks.clear()
                for c in self._cameras:
                    self._drop_tracker(c)
                self.get_logger().info("tracking.reset: every camera's tracks forgotten")
            if not p["tracking.enable"]:
                if cam.tracker is not None:
                    self._drop_tracker(cam)
                return None
            if panoptic is None:
                return None
            st = f.msg.header.stamp
            stamp = int(st.sec) * 1_000_000_000 + int(st.nanosec)
            if cam.last_stamp_ns is not None and stamp < cam.last_stamp_ns:
                self.get_logger().info(
                    f"[{cam.label}] time jumped back ({(cam.last_stamp_ns - stamp) / 1e9:.3f} s, e.g. a bag loop): "
                    "tracks reset"
                )
                self._drop_tracker(cam)
            cam.last_stamp_ns = stamp
            config = tracker_config_from(p)
            if cam.tracker is None:
                cam.tracker = PanopticTracker(config, first_id=self._next_track_ids.get(cam.ns, 1))
            elif cam.tracker.config != config:
                cam.tracker.set_config(config)
            return cam.tracker.update(panoptic)

        def _publish(self, cam: Camera, f: PendingFrame, outs: Any, wanted: set[str], p: dict[str, Any]) -> bool:
            if not self._active:
                return False
            header = f.msg.header
            # Raw topics as configured (lazy or not); <topic>/compressed only to subscribers, as image_transport does.
            raw = {n for n in wanted if not p["lazy"] or cam.publishers[n].get_subscription_count() > 0}
            sent = M.publish_outputs(
                cam.publishers,
                header,
                outs,
                raw,
                self._segmenter.class_table,
                float(p["detection_min_score"]),
                self._vm,
            )
            compressed = {n for n in wanted if self._compressed_subscribed(cam, n)}
            if compressed:
                fmt, quality = p["compressed_format"], int(p["compressed_jpeg_quality"])
                sent = M.publish_compressed(cam.compressed, header, outs, compressed, fmt, quality) or sent
            info = cam.camera_info
            if sent and info is not None and outs.size is not None:
                scaled = None
                for pub in cam.info_publishers.values():
                    if not p["lazy"] or pub.get_subscription_count() > 0:
                        if scaled is None:
                            scaled = M.scaled_camera_info(info, header, outs.size[1], outs.size[0])
                        pub.publish(scaled)
            return sent

        # ------------------------------------------------------------------------------------------- diagnostics
        def _publish_diagnostics(self) -> None:
            try:
                msg = self._diagnostics()
            except Exception as exc:  # pragma: no cover - diagnostics must never take the node down
                self.get_logger().error(f"diagnostics failed: {exc}")
                return
            self._diag_pub.publish(msg)

        def _diagnostics(self) -> DiagnosticArray:
            p = self._params
            window = float(p["diagnostics.window"])
            name = self.get_fully_qualified_name()
            arr = DiagnosticArray()
            arr.header.stamp = self.get_clock().now().to_msg()

            def kv(k: str, v: Any) -> KeyValue:
                return KeyValue(key=k, value=f"{v:.3f}" if isinstance(v, float) else str(v))

            top = DiagnosticStatus(name=f"{name}: pipeline", hardware_id=name)
            values = [
                kv("state", self._state_label),
                kv("network_calls", self._network_calls),
                kv("errors", self._errors),
            ]
            seg = self._segmenter
            if seg is not None:
                info = seg.backend.info
                values += [
                    kv("backend", info.name),
                    kv("device", info.device),
                    kv("precision", info.precision),
                    kv("model", p["model"] or "(embedded default)"),
                    kv("classes", seg.class_table.dataset),
                    kv("num_classes", seg.class_table.num_classes),
                ]
            if self._last_error:
                values.append(kv("last_error", self._last_error))
            if self._configure_error:
                top.level = DiagnosticStatus.ERROR
                top.message = f"configure failed: {self._configure_error}"
                values.append(kv("configure_error", self._configure_error))
            else:
                top.level = DiagnosticStatus.OK
                top.message = self._state_label
            top.values = values
            arr.status.append(top)
            warn_fps, error_fps = float(p["diagnostics.warn_fps"]), float(p["diagnostics.error_fps"])
            for cam in list(self._cameras):
                self._refresh_qos_issues(cam)
                s = cam.stats.snapshot(window)
                st = DiagnosticStatus(name=f"{name}: camera {cam.label}", hardware_id=name)
                vals = [kv("state", self._state_label), kv("input_fps", s.input_fps), kv("output_fps", s.output_fps)]
                vals += [kv(k, v) for k, v in s.counters.items()]
                vals += [kv(f"bad_input.{k}", v) for k, v in sorted(s.bad_input.items())]
                for stage in STAGES:
                    if stage in s.latency_ms:
                        p50, p99, mx = s.latency_ms[stage]
                        vals += [
                            kv(f"latency.{stage}.p50_ms", p50),
                            kv(f"latency.{stage}.p99_ms", p99),
                            kv(f"latency.{stage}.max_ms", mx),
                        ]
                st.values = vals
                level, problems = DiagnosticStatus.OK, []
                busy = s.input_fps > 0 and s.counters["idle"] < s.counters["received"]
                if s.window_errors:
                    level = DiagnosticStatus.ERROR
                    problems.append(f"{s.window_errors} inference error(s)")
                if busy and error_fps > 0 and s.output_fps < error_fps:
                    level = DiagnosticStatus.ERROR
                    problems.append(f"output {s.output_fps:.1f} fps < {error_fps:g}")
                elif busy and warn_fps > 0 and s.output_fps < warn_fps:
                    level = max(level, DiagnosticStatus.WARN)
                    problems.append(f"output {s.output_fps:.1f} fps < {warn_fps:g}")
                if s.window_bad_input:
                    level = max(level, DiagnosticStatus.WARN)
                    problems.append(f"{s.window_bad_input} malformed frame(s)")
                for issue in cam.qos_issues.values():
                    level = max(level, DiagnosticStatus.WARN)
                    problems.append(
                        f"incompatible QoS: {issue.count} {issue.side}(s) on {issue.topic} ({issue.policy}; ours: "
                        f"{_describe_qos(issue.ours)})"
                    )
                    st.values.append(
                        kv(f"incompatible_qos.{issue.topic}", f"{issue.count} {issue.side}(s), {issue.policy}")
                    )
                st.level = level
                if problems:
                    st.message = "; ".join(problems)
                elif not self._active:
                    st.message = self._state_label
                elif s.input_fps == 0:
                    st.message = "no frames"
                elif not busy:
                    st.message = "idle: no subscribers"
                else:
                    st.message = f"{s.output_fps:.1f} fps"
                arr.status.append(st)
            return arr

    def _incompatible(pub_qos: Any, sub_qos: Any) -> bool:
        """True when a publisher with ``pub_qos`` cannot deliver to a subscription with ``sub_qos``.

        Reliability and durability only: these are the mismatches cameras, RViz and recorders run into. (rclpy's
        ``qos_check_compatible`` also flags the infinite deadline/lease that the graph reports for every endpoint
        against a profile's "default", which would keep every topic in WARN.)
        """
        reliability = (
            pub_qos.reliability == ReliabilityPolicy.BEST_EFFORT and sub_qos.reliability == ReliabilityPolicy.RELIABLE
        )
        durability = (
            pub_qos.durability == DurabilityPolicy.VOLATILE and sub_qos.durability == DurabilityPolicy.TRANSIENT_LOCAL
        )
        return reliability or durability

    return BiSeNetFormerNode


def _describe_qos(qos: Any) -> str:
    """``reliable, volatile`` for log lines and diagnostics."""
    rel = getattr(qos.reliability, "name", str(qos.reliability)).lower().replace("_", " ")
    dur = getattr(qos.durability, "name", str(qos.durability)).lower().replace("_", " ")
    return f"{rel}, {dur}"


def __getattr__(name: str) -> Any:
    """``BiSeNetFormerNode`` on first access (imports rclpy only then)."""
    if name == "BiSeNetFormerNode":
        cls = _node_class()
        globals()[name] = cls
        return cls
    raise AttributeError(name)


def _wants_help(argv: Sequence[str]) -> bool:
    head = list(argv)
    if "--ros-args" in head:
        head = head[: head.index("--ros-args")]
    return any(a in ("-h", "--help") for a in head)


def _params_files(args: Sequence[str]) -> list[str]:
    """The ``--params-file`` arguments among the ROS arguments (after ``--ros-args``)."""
    files: list[str] = []
    in_ros = False
    it = iter(args)
    for a in it:
        if a == "--ros-args":
            in_ros = True
        elif a == "--":
            in_ros = False
        elif in_ros and a == "--params-file":
            files.append(next(it, ""))
    return files


def main(argv: Sequence[str] | None = None) -> int:
    """Console script ``bisenetformer_node``: ``--help``, or run the node until SIGINT/SIGTERM.

    Exit codes: 0 after a normal shutdown, 2 for bad input (a parameter file that is missing or not a ROS parameter
    file, an invalid parameter value, a failed autostart with ``exit_on_autostart_failure``), each with one line.
    """
    args = list(sys.argv[1:] if argv is None else argv)
    if _wants_help(args):
        print(help_text())
        return 0
    # rcl parses --params-file itself and answers a missing file or bad YAML with a traceback: check them first.
    for path in _params_files(args):
        try:
            check_params_file_syntax(path)
        except ParamsFileError as exc:
            print(f"bisenetformer_node: error: {exc}", file=sys.stderr)
            return EXIT_BAD_INPUT
    import rclpy
    from rclpy.exceptions import (
        InvalidParameterTypeException,
        InvalidParameterValueException,
        ParameterException,
    )
    from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor

    with contextlib.suppress(AttributeError):  # older OpenCV builds lack the logging API
        cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)  # corrupt-JPEG warnings: we count those
    try:
        rclpy.init(args=["bisenetformer_node", *args])
    except Exception as exc:  # rcl's argument parser (RCLError): bad --ros-args
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        print(f"bisenetformer_node: error: invalid ROS arguments: {first}", file=sys.stderr)
        return EXIT_BAD_INPUT
    node_cls = _node_class()
    try:
        node = node_cls()
    except (InvalidParameterTypeException, InvalidParameterValueException, ParameterException, ValueError) as exc:
        print(f"bisenetformer_node: invalid parameter: {exc}", file=sys.stderr)
        rclpy.try_shutdown()
        return EXIT_BAD_INPUT
    executor = SingleThreadedExecutor()
    executor.add_node(node)
    code = 0
    try:
        if node.get_parameter("autostart").value:
            exit_on_failure = bool(node.get_parameter("exit_on_autostart_failure").value)
            if not node.autostart(exit_on_failure=exit_on_failure):
                if exit_on_failure:
                    code = EXIT_BAD_INPUT  # the configure error was logged as the one error line
                else:
                    node.get_logger().error(
                        "autostart failed; the node stays unconfigured (configure it again via lifecycle)"
                    )
        while code == 0 and rclpy.ok() and not node.finalized:
            executor.spin_once(timeout_sec=0.25)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        node.teardown()
        executor.shutdown(timeout_sec=1.0)
        node.destroy_node()
        rclpy.try_shutdown()
    return code


if __name__ == "__main__":
    sys.exit(main())
