"""The node's scheduling rules (newest-frame slots, max age, wanted outputs, tasks, batches, stage timing) and its
per-camera tracking resets: plain Python, exercised with explicit clocks and no DDS."""

from __future__ import annotations

import threading
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

from bisenetformer_ros.model.postprocess import PanopticResult, Segment
from bisenetformer_ros.ros.parameters import PARAMETERS
from bisenetformer_ros.ros.scheduler import (
    PANOPTIC_OUTPUTS,
    SEMANTIC_OUTPUTS,
    FrameSlots,
    PendingFrame,
    StageClock,
    allowed_by_task,
    frame_age,
    is_stale,
    plan_batch,
    render_names,
    stamp_to_ns,
    tasks_for,
    wanted_outputs,
)
from bisenetformer_ros.ros.tracks import CameraTracks
from bisenetformer_ros.topics import OUTPUT_TOPICS, RENDERED_OUTPUTS

ALL = set(OUTPUT_TOPICS)


def params(**overrides: Any) -> dict[str, Any]:
    p = {spec.name: spec.default for spec in PARAMETERS}
    p.update({k.replace("__", "."): v for k, v in overrides.items()})
    return p


def frame(receipt: float = 0.0, stamp_ns: int = 0) -> PendingFrame:
    return PendingFrame(msg=None, receipt=receipt, receipt_ros_ns=0, stamp_ns=stamp_ns)


def never_asked() -> int:
    raise AssertionError("the ROS clock is read only for stamp-based ages")


# --------------------------------------------------------------------------------------------------- slots and ages


def test_newest_frame_replaces_the_waiting_one_per_camera() -> None:
    slots: FrameSlots[int] = FrameSlots()
    assert slots.put(1, frame(1.0)) is False
    assert slots.put(0, frame(2.0)) is False
    assert slots.put(1, frame(3.0)) is True  # superseded: the caller counts the drop
    assert len(slots) == 2
    taken = slots.take(threading.Event())
    assert [(cam, f.receipt) for cam, f in taken] == [(0, 2.0), (1, 3.0)]  # camera order, newest frames
    assert len(slots) == 0
    slots.put(2, frame())
    assert slots.clear() == [2] and len(slots) == 0


def test_take_waits_for_a_frame_and_returns_empty_on_stop() -> None:
    slots: FrameSlots[int] = FrameSlots()
    stop = threading.Event()
    got: list[Any] = []
    worker = threading.Thread(target=lambda: got.append(slots.take(stop, poll=0.01)))
    worker.start()
    slots.put(0, frame(7.0))
    worker.join(5.0)
    assert [f.receipt for _, f in got[0]] == [7.0]
    stop.set()
    slots.wake()
    assert slots.take(stop) == []


def test_age_from_receipt_or_stamp() -> None:
    f = frame(receipt=10.0, stamp_ns=5 * 10**9)
    assert frame_age(f, "receipt", 10.25, never_asked) == pytest.approx(0.25)
    assert frame_age(f, "stamp", 10.25, lambda: 7 * 10**9) == pytest.approx(2.0)
    # Without a header stamp the receipt is the only reference.
    assert frame_age(frame(receipt=10.0), "stamp", 11.0, never_asked) == pytest.approx(1.0)


def test_max_age_check() -> None:
    f = frame(receipt=100.0)
    assert not is_stale(f, 0.5, "receipt", 100.4, never_asked)
    assert is_stale(f, 0.5, "receipt", 100.6, never_asked)
    assert not is_stale(f, 0.0, "receipt", 1e9, never_asked)  # 0 = keep every frame


def test_stamp_to_ns() -> None:
    assert stamp_to_ns(SimpleNamespace(sec=3, nanosec=25)) == 3_000_000_025


# --------------------------------------------------------------------------------------------------- outputs, tasks


def test_task_groups_follow_the_catalogue() -> None:
    assert {"semantic", "semantic_color", "semantic_confidence", "overlay", "class_mask"} == SEMANTIC_OUTPUTS
    assert {"panoptic", "panoptic_color", "detections", "overlay"} == PANOPTIC_OUTPUTS
    assert all(allowed_by_task(n, "all") for n in ALL)
    assert {n for n in ALL if allowed_by_task(n, "semantic")} == SEMANTIC_OUTPUTS
    assert {n for n in ALL if allowed_by_task(n, "panoptic")} == PANOPTIC_OUTPUTS


@pytest.mark.parametrize(
    ("wanted", "task", "edges", "expected"),
    [
        ({"semantic"}, "all", True, {"semantic"}),
        ({"panoptic_color"}, "all", True, {"panoptic"}),
        ({"detections"}, "all", False, {"panoptic"}),
        ({"overlay"}, "all", True, {"semantic", "panoptic"}),  # instance outlines come from the panoptic segments
        ({"overlay"}, "all", False, {"semantic"}),
        ({"overlay"}, "panoptic", False, {"panoptic"}),  # drawn from the segments alone
        ({"overlay", "panoptic"}, "semantic", True, {"semantic"}),
        ({"semantic"}, "panoptic", True, set()),
        (set(), "all", True, set()),
    ],
)
def test_tasks_for(wanted: set[str], task: str, edges: bool, expected: set[str]) -> None:
    assert tasks_for(wanted, task, edges) == expected


def test_wanted_outputs_enabled_allowed_and_subscribed() -> None:
    subscribed = {"overlay", "class_mask", "panoptic"}
    asked: list[str] = []

    def has_subscribers(name: str) -> bool:
        asked.append(name)
        return name in subscribed

    assert wanted_outputs(ALL, params(), True, has_subscribers) == subscribed
    assert wanted_outputs(ALL, params(), False, has_subscribers) == {"overlay", "panoptic"}  # no mask classes
    assert wanted_outputs(ALL, params(task="semantic"), True, has_subscribers) == {"overlay", "class_mask"}
    assert wanted_outputs(ALL, params(outputs__overlay=False), True, has_subscribers) == {"class_mask", "panoptic"}
    asked.clear()
    # Not lazy: every enabled output the task allows, without asking the graph.
    assert wanted_outputs(ALL, params(lazy=False), True, has_subscribers) == ALL
    assert asked == []
    # Only outputs that have a publisher (no detections without vision_msgs).
    assert wanted_outputs(ALL - {"detections"}, params(lazy=False), True, has_subscribers) == ALL - {"detections"}


def test_render_names_and_batch_plan() -> None:
    assert render_names({"detections", "overlay"}) == {"panoptic", "overlay"}
    assert render_names(ALL) == set(RENDERED_OUTPUTS)
    plan = plan_batch([{"semantic"}, {"detections"}], "all", True)
    assert plan.tasks == ("semantic", "panoptic") and not plan.semantic_confidence
    plan = plan_batch([{"panoptic"}, {"semantic_confidence"}], "all", True)
    assert plan.tasks == ("semantic", "panoptic") and plan.semantic_confidence
    assert plan_batch([{"semantic"}], "panoptic", True).tasks == ()  # nothing to compute: the frames are idle


def test_stage_clock_laps() -> None:
    ticks = iter([1.0, 1.25, 2.0, 2.0])
    lap = StageClock(clock=lambda: next(ticks))
    assert lap.lap() == pytest.approx(0.25)
    assert lap.lap() == pytest.approx(0.75)
    assert lap.lap() == 0.0


# --------------------------------------------------------------------------------------------------- tracking resets


def _panoptic() -> PanopticResult:
    ids = np.zeros((8, 8), dtype=np.uint16)
    ids[2:6, 2:6] = 1
    seg = Segment(id=1, class_id=0, is_thing=True, score=0.9, area=16, bbox=(2, 2, 4, 4), centroid=(4.0, 4.0))
    return PanopticResult(id_map=ids, segments=[seg])


def test_tracks_reset_on_time_jump_and_request_without_reusing_ids() -> None:
    lines: list[str] = []
    tracks = CameraTracks(lines.append)
    p = params(**{"tracking.min_age": 1})

    def track_id(stamp_ns: int, camera: str = "front") -> int:
        found = tracks.update(camera, camera, stamp_ns, _panoptic(), p)
        assert found is not None
        return int(found[1].track_id)

    first = track_id(1)
    assert track_id(2) == first  # the same object keeps its id
    assert track_id(1) > first and "time jumped back" in lines[-1]  # bag loop: new tracks, new ids
    assert track_id(1, "left") == first  # ids are per camera
    tracks.request_reset()
    later = track_id(3)
    assert later > first and "tracking.reset" in lines[-1]
    tracks.forget_all()  # lifecycle cleanup: the id counter survives
    assert track_id(4) > later
    assert tracks.update("front", "front", 5, _panoptic(), params(**{"tracking.enable": False})) is None
    assert not tracks.tracking("front")
    assert tracks.update("left", "left", 5, None, p) is None
