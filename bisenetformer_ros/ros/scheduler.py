"""The node's frame scheduling decisions, in plain Python: what waits, what is dropped, what is computed.

The subscription callbacks (executor thread) put each camera's newest frame into that camera's one pending slot;
a newer frame replaces a waiting one (a late frame is worth nothing to a robot, so the queue never grows). The
worker takes every waiting frame at once, drops those older than ``max_age`` and runs one batch for all cameras.
Which outputs a camera needs (enabled, allowed by ``task``, subscribed when ``lazy``) and which post-processing
tasks that takes are decided here from plain data, so the rules are tested without DDS; the node only feeds in its
parameters and the subscriber counts of its publishers.

No ROS imports: clocks are injected (``time.monotonic`` and the node's ROS clock in the node, fakes in tests).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from bisenetformer_ros.topics import OUTPUT_SPECS, PANOPTIC, SEMANTIC

#: Outputs of each task, as the ``task`` parameter selects them (``overlay`` belongs to both).
SEMANTIC_OUTPUTS = frozenset(o.name for o in OUTPUT_SPECS.values() if SEMANTIC in o.tasks)
PANOPTIC_OUTPUTS = frozenset(o.name for o in OUTPUT_SPECS.values() if PANOPTIC in o.tasks)

#: Order in which the segmenter runs the tasks.
TASK_ORDER: tuple[str, ...] = (SEMANTIC, PANOPTIC)

NS_PER_S = 1_000_000_000


@dataclass
class PendingFrame:
    """A received camera message waiting for the worker.

    ``receipt`` is the monotonic clock at arrival, ``receipt_ros_ns`` the node's clock then, ``stamp_ns`` the
    message's header stamp (0 = unset).
    """

    msg: Any
    receipt: float
    receipt_ros_ns: int
    stamp_ns: int = 0


def stamp_to_ns(stamp: Any) -> int:
    """A builtin_interfaces/Time (anything with ``sec`` and ``nanosec``) in nanoseconds."""
    return int(stamp.sec) * NS_PER_S + int(stamp.nanosec)


def frame_age(frame: PendingFrame, reference: str, now: float, now_ros_ns: Callable[[], int]) -> float:
    """Seconds since the frame was taken (``reference`` ``stamp``, when it has a stamp; needs synchronised clocks)
    or since the node received it (``receipt``: robust to clock offsets). ``now_ros_ns`` is only read for stamps."""
    if reference == "stamp" and frame.stamp_ns > 0:
        return (now_ros_ns() - frame.stamp_ns) / 1e9
    return now - frame.receipt


def is_stale(frame: PendingFrame, max_age: float, reference: str, now: float, now_ros_ns: Callable[[], int]) -> bool:
    """Whether the worker drops ``frame`` as older than ``max_age`` seconds (0 = keep every frame)."""
    return max_age > 0 and frame_age(frame, reference, now, now_ros_ns) > max_age


K = TypeVar("K")


class FrameSlots(Generic[K]):
    """One pending slot per camera; thread-safe hand-over from the callbacks to the worker.

    ``put`` replaces a waiting frame of the same camera (and says so, for the ``dropped_superseded`` counter);
    ``take`` waits for frames and empties every slot at once, in camera order, so the worker batches all cameras.
    """

    def __init__(self) -> None:
        self._pending: dict[K, PendingFrame] = {}
        self._cond = threading.Condition()

    def put(self, camera: K, frame: PendingFrame) -> bool:
        """Store ``frame`` as ``camera``'s newest; True if it replaced a frame the worker had not taken yet."""
        with self._cond:
            replaced = camera in self._pending
            self._pending[camera] = frame
            self._cond.notify()
        return replaced

    def take(self, stop: threading.Event, poll: float = 0.5) -> list[tuple[K, PendingFrame]]:
        """Every waiting frame, sorted by camera, once there is one; [] when ``stop`` is set."""
        with self._cond:
            while not self._pending and not stop.is_set():
                self._cond.wait(poll)
            if stop.is_set():
                return []
            frames = sorted(self._pending.items(), key=lambda kv: kv[0])  # type: ignore[arg-type,return-value]
            self._pending.clear()
        return frames

    def wake(self) -> None:
        """Wake a waiting ``take`` (after setting its stop event)."""
        with self._cond:
            self._cond.notify_all()

    def clear(self) -> list[K]:
        """Drop every waiting frame; the cameras whose frame was dropped (counted as ``dropped_inactive``)."""
        with self._cond:
            cameras = list(self._pending)
            self._pending.clear()
        return cameras

    def __len__(self) -> int:
        with self._cond:
            return len(self._pending)


def allowed_by_task(name: str, task: str) -> bool:
    """Whether the ``task`` parameter (all, semantic, panoptic) lets output ``name`` be published."""
    return task == "all" or task in OUTPUT_SPECS[name].tasks


def wanted_outputs(
    available: Iterable[str],
    params: Mapping[str, Any],
    has_mask_classes: bool,
    subscribed: Callable[[str], bool],
) -> set[str]:
    """Outputs to produce for one camera now: among ``available`` (those with a publisher), enabled by
    ``outputs.<name>``, allowed by ``task``, ``class_mask`` only while ``mask_classes`` names a class, and with
    ``lazy`` only those ``subscribed`` (raw or compressed; asked only when it matters, it queries the graph)."""
    wanted = set()
    lazy = params["lazy"]
    for name in available:
        if not params[f"outputs.{name}"] or not allowed_by_task(name, params["task"]):
            continue
        if name == "class_mask" and not has_mask_classes:
            continue
        if lazy and not subscribed(name):
            continue
        wanted.add(name)
    return wanted


def tasks_for(wanted: Collection[str], task: str, edges: bool) -> set[str]:
    """Post-processing tasks needed for the ``wanted`` outputs under the ``task`` parameter.

    Under ``all`` each output takes its preferred task, and an overlay with instance ``edges`` also needs the
    panoptic result (the outlines come from its segments); under ``semantic``/``panoptic`` only that task runs.
    """
    tasks: set[str] = set()
    for name in wanted:
        produced_by = OUTPUT_SPECS[name].tasks
        if task == "all":
            tasks.add(produced_by[0])
        elif task in produced_by:
            tasks.add(task)
    if task == "all" and "overlay" in wanted and edges:
        tasks.add(PANOPTIC)
    return tasks


def task_order(tasks: Collection[str]) -> tuple[str, ...]:
    """``tasks`` in the order the segmenter runs them."""
    return tuple(t for t in TASK_ORDER if t in tasks)


def render_names(wanted: Iterable[str]) -> set[str]:
    """The :func:`~bisenetformer_ros.inference.outputs.render_outputs` entries behind the ``wanted`` outputs
    (``detections`` are built from the panoptic segments)."""
    return {OUTPUT_SPECS[name].source for name in wanted}


@dataclass
class BatchPlan:
    """What one network call computes: the tasks in run order and whether the confidence map is needed."""

    tasks: tuple[str, ...]
    semantic_confidence: bool


def plan_batch(wanted_per_frame: Iterable[Collection[str]], task: str, edges: bool) -> BatchPlan:
    """One batch for frames of several cameras: the union of the tasks each frame's outputs need."""
    tasks: set[str] = set()
    confidence = False
    for wanted in wanted_per_frame:
        tasks |= tasks_for(wanted, task, edges)
        confidence = confidence or "semantic_confidence" in wanted
    return BatchPlan(task_order(tasks), confidence)


class StageClock:
    """Times consecutive pipeline stages: each ``lap`` is the time since the previous one (or the start)."""

    def __init__(self, clock: Callable[[], float] = time.perf_counter) -> None:
        self._clock = clock
        self._last = clock()

    def lap(self) -> float:
        now = self._clock()
        elapsed, self._last = now - self._last, now
        return elapsed
