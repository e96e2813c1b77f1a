"""``bisenetformer_node``'s node class: cameras in; semantic labels, overlays and panoptic segments out (ROS 2
lifecycle node).

A thin adapter: it wires ROS to plain modules that make the decisions, the frame scheduling
(:mod:`~bisenetformer_ros.ros.scheduler`), the health rules (:mod:`~bisenetformer_ros.ros.health`), tracking
(:mod:`~bisenetformer_ros.ros.tracks`), the parameter table (:mod:`~bisenetformer_ros.ros.parameters`), the output
catalogue (:mod:`bisenetformer_ros.topics`) and the ROS-free core. Threads and data flow:

* executor thread: subscription callbacks check a message's header in O(1) (malformed ones are counted and skipped
  so they never displace a good frame), then put it into its camera's newest-frame slot and return; parameter,
  lifecycle and diagnostics callbacks also run here, so none of them ever waits for inference.
* worker thread: takes the newest frame of every camera, drops those older than ``max_age``, decodes, runs one
  batched inference for all cameras, renders (:func:`~bisenetformer_ros.inference.outputs.render_outputs`) and
  publishes with each input's own header.

Tracking: each camera has its own tracker; the track ids go into ``panoptic`` (``PanopticSegment.track_id``),
``detections`` (the detection id) and ``panoptic/color`` (see :mod:`~bisenetformer_ros.ros.tracks` for when the
tracks are forgotten; ids are never reused while the process runs).

Lifecycle: ``configure`` loads the model and creates publishers (a failure is logged with its cause and leaves the
node unconfigured, ready to be configured again), ``activate`` subscribes and starts the worker, ``deactivate``
stops both, ``cleanup`` releases the model and destroys every publisher it created (nothing accumulates over
cycles). With ``autostart`` (default) the node configures and activates itself like a plain node; then a failed
configure ends the process with exit code 2 and one error line (``exit_on_autostart_failure``), because a plain node
that sits unconfigured for ever cannot be respawned or stopped on by a launch file.

QoS: outputs are reliable by default (REP 2003), which serves reliable and best-effort subscribers alike. A
subscriber (or, on the input side, a publisher) whose QoS does not match is reported in the log and in
``/diagnostics`` (:mod:`~bisenetformer_ros.ros.qos_watch`).
"""

from __future__ import annotations

import gc
import threading
import time
import traceback
from dataclasses import replace
from typing import Any

from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from rclpy.lifecycle import LifecycleNode, LifecycleState, TransitionCallbackReturn
from sensor_msgs.msg import CompressedImage, Image
from std_msgs.msg import Header

from bisenetformer_ros.cli.options import EXIT_BAD_INPUT
from bisenetformer_ros.image import ImageFormatError
from bisenetformer_ros.inference.outputs import render_outputs
from bisenetformer_ros.ros import health
from bisenetformer_ros.ros import messages as M
from bisenetformer_ros.ros.camera_io import Camera, check_frame, input_topic
from bisenetformer_ros.ros.node_parameters import NodeParameters
from bisenetformer_ros.ros.parameters import mask_class_entries
from bisenetformer_ros.ros.qos import diagnostics_qos, latched_qos, stream_qos
from bisenetformer_ros.ros.qos_watch import QosWatch
from bisenetformer_ros.ros.scheduler import (
    FrameSlots,
    PendingFrame,
    StageClock,
    is_stale,
    plan_batch,
    render_names,
    stamp_to_ns,
    wanted_outputs,
)
from bisenetformer_ros.ros.stats import CameraStats, CauseThrottle
from bisenetformer_ros.ros.tracks import CameraTracks
from bisenetformer_ros.topics import in_namespace

_LEVELS = {health.OK: DiagnosticStatus.OK, health.WARN: DiagnosticStatus.WARN, health.ERROR: DiagnosticStatus.ERROR}


class SegmentationNode(LifecycleNode):
    """See the module docstring."""

    def __init__(self, node_name: str = "bisenetformer", **kwargs: Any) -> None:
        super().__init__(node_name, **kwargs)
        self._configured = False
        self._active = False
        self._segmenter: Any = None
        self._mask_ids: list[int] = []  # mask_classes resolved against the loaded model's class table
        self._vm = M.vision_msgs_module()
        self._cameras: list[Camera] = []
        self._slots: FrameSlots[int] = FrameSlots()
        self._stop = threading.Event()
        self._worker: threading.Thread | None = None
        self._throttle = CauseThrottle(10.0)
        self._qos = QosWatch(self, lambda: self._params["output_qos"])
        self._tracks = CameraTracks(lambda line: self.get_logger().info(line))
        self._network_calls = 0
        self._errors = 0
        self._last_error = ""
        self._configure_error = ""
        self._state_label = "unconfigured"
        self._exit_on_failure = False  # set by autostart(): a failed configure then ends the process
        self.finalized = False
        self._node_params = NodeParameters(
            self, lambda: (self._configured, self._state_label), self._accept_parameters, self._tracks.request_reset
        )
        self._diag_pub = self.create_publisher(DiagnosticArray, "/diagnostics", diagnostics_qos())
        self._diag_timer = self.create_timer(float(self._params["diagnostics.period"]), self._publish_diagnostics)
        if self._vm is None:
            self.get_logger().info("vision_msgs is not installed: 'detections' and 'label_info' are not offered")

    # ----------------------------------------------------------------------------------------------- parameters
    @property
    def _params(self) -> dict[str, Any]:
        """The current parameter values (a new dict after each change: take it once per frame or transition)."""
        return self._node_params.values

    def _accept_parameters(self, new: dict[str, Any]) -> str | None:
        """Check ``mask_classes`` names against the loaded model (before configure, configure checks them)."""
        if self._segmenter is not None and new["mask_classes"] != self._params["mask_classes"]:
            try:
                self._mask_ids = self._segmenter.class_table.resolve(mask_class_entries(new["mask_classes"]))
            except ValueError as exc:
                return f"parameter 'mask_classes': {exc}"
        return None

    # ----------------------------------------------------------------------------------------------- lifecycle
    def _build_segmenter(self, p: dict[str, Any]) -> tuple[Any, Any]:
        """The model on its backend for parameters ``p``, and the network input size it runs at (the model file's
        recorded size unless overridden)."""
        from bisenetformer_ros.inference.spec import network_size_from
        from bisenetformer_ros.ros.pipeline import build_segmenter

        size = network_size_from(p)
        return build_segmenter(p, size), size

    def on_configure(self, state: LifecycleState) -> TransitionCallbackReturn:
        p = dict(self._params)
        log = self.get_logger()
        log.info(
            f"configuring: model '{p['model'] or '(embedded default)'}', backend {p['backend']}, "
            f"device {p['device']}, precision {p['precision']}"
        )
        t0 = time.perf_counter()
        seg = None
        try:
            seg, size = self._build_segmenter(p)
            try:
                mask_ids = seg.class_table.resolve(mask_class_entries(p["mask_classes"]))
            except ValueError as exc:
                raise ValueError(f"parameter 'mask_classes': {exc}") from None
            if p["warmup"]:
                seg.warmup(int(p["input_height"]) or 480, int(p["input_width"]) or 640, batch=1, iterations=1)
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
        self._segmenter, self._mask_ids, self._configure_error = seg, mask_ids, ""
        try:
            self._create_cameras(p)
        except Exception as exc:
            error = f"{type(exc).__name__}: {exc}"
            log.error(f"configure failed while creating topics: {error}")
            self._release()
            self._configure_error = error  # after _release(), which resets the state
            return TransitionCallbackReturn.FAILURE
        self._configured = True
        self._state_label = "inactive"
        log.info(
            f"model loaded in {time.perf_counter() - t0:.1f} s: {seg.backend.info.describe()}, classes "
            f"'{seg.class_table.dataset}' ({seg.class_table.num_classes}); network input "
            f"{size.describe()}; cameras: " + ", ".join(c.label for c in self._cameras)
        )
        return TransitionCallbackReturn.SUCCESS

    def on_activate(self, state: LifecycleState) -> TransitionCallbackReturn:
        p = self._params
        qos = stream_qos(p["input_qos"], p["input_qos_depth"])
        for cam in self._cameras:
            cam.stats = CameraStats(cam.label)  # fresh counters for this activation
            cam.subscribe(self._qos, p, qos, self._frame_callback(cam))
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

        ``exit_on_failure``: the caller ends the process on failure, so the configure error is logged as the one
        final line instead of an invitation to configure again.
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
        self._slots.wake()
        if self._worker is not None:
            self._worker.join(timeout=60.0)
            self._worker = None
        for idx in self._slots.clear():
            self._cameras[idx].stats.count("dropped_inactive")
        for cam in self._cameras:
            cam.unsubscribe(self)

    def _release(self) -> None:
        self._tracks.forget_all()
        for cam in self._cameras:
            cam.destroy_publishers(self)
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

    def _create_cameras(self, p: dict[str, Any]) -> None:
        out_qos, latched = stream_qos(p["output_qos"], p["output_qos_depth"]), latched_qos()
        for i, ns in enumerate(p["cameras"]):
            # Named by the resolved input topic (remappings applied), which is what a user recognises.
            label = self.resolve_topic_name(in_namespace(ns, input_topic(p)))
            cam = Camera(index=i, ns=ns, label=label, stats=CameraStats(label))
            self._cameras.append(cam)  # at once: a failure below still releases what was created
            cam.create_publishers(self._qos, p, out_qos, latched, self._vm)

    def _publish_class_tables(self) -> None:
        header = Header()
        header.stamp = self.get_clock().now().to_msg()
        threshold = float(self._params["object_mask_threshold"])
        for cam in self._cameras:
            cam.publish_class_table(header, self._segmenter.class_table, self._vm, threshold)

    # ----------------------------------------------------------------------------------------------- callbacks
    def _wanted(self, cam: Camera, p: dict[str, Any]) -> set[str]:
        """Outputs to produce for ``cam`` now (the scheduler's rules over this camera's publishers)."""
        return wanted_outputs(cam.publishers, p, bool(self._mask_ids), cam.subscribed)

    def _frame_callback(self, cam: Camera) -> Any:
        """The subscription callback of ``cam``'s images: header checks only (no decoding), so a corrupt or
        bomb-sized frame never displaces a good waiting one; then the newest-frame slot."""

        def on_frame(msg: Image | CompressedImage) -> None:
            cam.stats.count("received")
            if not self._active:
                cam.stats.count("dropped_inactive")
                return
            try:
                check_frame(msg, int(self._params["max_image_pixels"]))
            except ImageFormatError as exc:
                self._bad_input(cam, exc.cause, str(exc))
                return
            if not self._wanted(cam, self._params):
                cam.stats.count("idle")
                return
            frame = PendingFrame(msg, time.monotonic(), self._ros_now_ns(), stamp_to_ns(msg.header.stamp))
            replaced = self._slots.put(cam.index, frame)
            cam.stats.count("accepted")
            if replaced:
                cam.stats.count("dropped_superseded")

        return on_frame

    def _bad_input(self, cam: Camera, cause: str, text: str) -> None:
        cam.stats.bad(cause)
        log_now, suppressed = self._throttle.should_log(f"{cam.label}:{cause}")
        if log_now:
            more = f" ({suppressed} more since the last report)" if suppressed else ""
            self.get_logger().warning(f"[{cam.label}] skipped a malformed frame ({cause}): {text}{more}")

    # ----------------------------------------------------------------------------------------------- worker
    def _worker_loop(self) -> None:
        while not self._stop.is_set():
            taken = self._slots.take(self._stop)
            if not taken:
                continue
            frames = [(self._cameras[i], f) for i, f in taken]
            try:
                self._process(frames)
            except Exception as exc:  # never let the worker die: report and continue with the next frames
                self._record_error(exc)
                for cam, _ in frames:
                    cam.stats.count("errors")
                self.get_logger().error(f"processing failed: {self._last_error}\n{traceback.format_exc()}")

    def _ros_now_ns(self) -> int:
        return self.get_clock().now().nanoseconds

    def _record_error(self, exc: Exception) -> None:
        self._errors += 1
        self._last_error = f"{type(exc).__name__}: {exc}"

    def _decode(self, cam: Camera, f: PendingFrame, p: dict[str, Any]) -> Any:
        """The frame as RGB (at the network size with ``output_resolution: network``); None if it is malformed."""
        from bisenetformer_ros.ros.pipeline import resize_to_network

        try:
            rgb = M.message_to_rgb(f.msg, int(p["max_image_pixels"]), p["image_16bit_scaling"])
        except ImageFormatError as exc:
            self._bad_input(cam, exc.cause, str(exc))
            return None
        except Exception as exc:  # a decoder bug must not stop the node: count it as bad input
            self._bad_input(cam, "decode_error", f"{type(exc).__name__}: {exc}")
            return None
        return resize_to_network(self._segmenter, rgb) if p["output_resolution"] == "network" else rgb

    def _process(self, frames: list[tuple[Camera, PendingFrame]]) -> None:
        from bisenetformer_ros.inference.spec import postprocess_config_from

        p, seg = self._params, self._segmenter
        if seg is None:
            return
        max_age, reference = float(p["max_age"]), p["max_age_reference"]
        items: list[tuple[Camera, PendingFrame, Any, set[str]]] = []
        for cam, f in frames:
            if is_stale(f, max_age, reference, time.monotonic(), self._ros_now_ns):
                cam.stats.count("dropped_stale")
                continue
            wanted = self._wanted(cam, p)
            if not wanted:
                cam.stats.count("idle")
                continue
            lap = StageClock()
            rgb = self._decode(cam, f, p)
            if rgb is not None:
                cam.stats.latency("decode", lap.lap())
                items.append((cam, f, rgb, wanted))
        if not items:
            return
        edges = bool(p["overlay_instance_edges"])
        plan = plan_batch((wanted for *_, wanted in items), p["task"], edges)
        if not plan.tasks:
            for cam, *_ in items:
                cam.stats.count("idle")
            return
        seg.postprocess_config = replace(postprocess_config_from(p), semantic_confidence=plan.semantic_confidence)
        self._network_calls += 1
        try:
            results = seg.run([rgb for _, _, rgb, _ in items], tasks=plan.tasks)
        except Exception as exc:  # one failing batch is reported; the next frames are processed normally
            self._record_error(exc)
            log_now, suppressed = self._throttle.should_log(f"inference:{type(exc).__name__}")
            if log_now:
                more = f" ({suppressed} more since the last report)" if suppressed else ""
                self.get_logger().error(f"inference failed on {len(items)} frame(s): {self._last_error}{more}")
            for cam, *_ in items:
                cam.stats.count("errors")
            return
        for (cam, f, rgb, wanted), r in zip(items, results, strict=True):
            for stage in ("preprocess", "inference", "postprocess"):
                if stage in r.timings:
                    cam.stats.latency(stage, r.timings[stage])
            cam.stats.count("processed")
            lap = StageClock()
            tracks = self._tracks.update(cam.ns, cam.label, f.stamp_ns, r.output.panoptic, p)
            outs = render_outputs(
                r,
                rgb,
                seg.class_table,
                float(p["overlay_alpha"]),
                outputs=render_names(wanted),
                draw_instance_edges=edges,
                mask_classes=self._mask_ids,
                tracks=tracks,
                color_by_track=bool(p["tracking.color_by_track"]),
            )
            cam.stats.latency("render", lap.lap())
            if self._active and cam.publish(f.msg.header, outs, wanted, p, seg.class_table, self._vm):
                cam.stats.count("published")
            cam.stats.latency("publish", lap.lap())
            cam.stats.latency("age", time.monotonic() - f.receipt)

    # ----------------------------------------------------------------------------------------------- diagnostics
    def _publish_diagnostics(self) -> None:
        try:
            msg = self._diagnostics()
        except Exception as exc:  # pragma: no cover - diagnostics must never take the node down
            self.get_logger().error(f"diagnostics failed: {exc}")
            return
        self._diag_pub.publish(msg)

    def _diagnostics(self) -> DiagnosticArray:
        p, name, seg = self._params, self.get_fully_qualified_name(), self._segmenter
        arr = DiagnosticArray()
        arr.header.stamp = self.get_clock().now().to_msg()
        model = health.model_values(seg, p["model"]) if seg is not None else []
        state = self._state_label
        top = health.pipeline_health(
            state, self._network_calls, self._errors, self._last_error, self._configure_error, model
        )
        arr.status.append(self._status(f"{name}: pipeline", name, top))
        for cam in list(self._cameras):
            problems = self._qos.refresh(cam.qos_issues)
            snapshot = cam.stats.snapshot(float(p["diagnostics.window"]))
            h = health.camera_health(
                snapshot,
                state,
                self._active,
                float(p["diagnostics.warn_fps"]),
                float(p["diagnostics.error_fps"]),
                problems,
            )
            arr.status.append(self._status(f"{name}: camera {cam.label}", name, h))
        return arr

    @staticmethod
    def _status(title: str, hardware_id: str, h: health.Health) -> DiagnosticStatus:
        st = DiagnosticStatus(name=title, hardware_id=hardware_id, level=_LEVELS[h.level], message=h.message)
        st.values = [KeyValue(key=k, value=v) for k, v in h.values]
        return st
