"""Per-camera panoptic trackers of the node, and when they forget: plain Python, run by the worker thread.

Each camera has its own :class:`~bisenetformer_ros.tracking.PanopticTracker` (track ids are per camera). The tracks
are forgotten when a camera's stamps jump back in time (a bag played in a loop), on ``tracking.reset`` (requested
from the parameter callback, applied by the worker at its next frame), when tracking is switched off and on
lifecycle cleanup. A camera's id counter outlives its tracker, keyed by the camera namespace so that it also
survives cleanup and a new configure: ids are never reused while the process runs.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from typing import Any

from bisenetformer_ros.ros.pipeline import tracker_config_from
from bisenetformer_ros.tracking import PanopticTracker


class CameraTracks:
    """The trackers of every camera, keyed by camera namespace; ``log`` receives the info lines of resets."""

    def __init__(self, log: Callable[[str], None]) -> None:
        self._log = log
        self._trackers: dict[str, PanopticTracker] = {}
        self._last_stamp_ns: dict[str, int] = {}
        self._next_ids: dict[str, int] = {}
        self._reset = threading.Event()

    def request_reset(self) -> None:
        """Forget every camera's tracks at the next frame (``tracking.reset``; safe from any thread)."""
        self._reset.set()

    def forget(self, camera: str) -> None:
        """Forget ``camera``'s tracks, keeping its id counter for the next tracker (ids are never reused)."""
        tracker = self._trackers.pop(camera, None)
        if tracker is not None:
            self._next_ids[camera] = tracker.next_id
        self._last_stamp_ns.pop(camera, None)

    def forget_all(self) -> None:
        for camera in list(self._trackers):
            self.forget(camera)
        self._last_stamp_ns.clear()

    def tracking(self, camera: str) -> bool:
        """Whether ``camera`` has a live tracker."""
        return camera in self._trackers

    def update(
        self, camera: str, label: str, stamp_ns: int, panoptic: Any, params: Mapping[str, Any]
    ) -> dict[int, Any] | None:
        """Track ids of this frame's segments (None when tracking is off or there is no panoptic result)."""
        if self._reset.is_set():
            self._reset.clear()
            self.forget_all()
            self._log("tracking.reset: every camera's tracks forgotten")
        if not params["tracking.enable"]:
            if camera in self._trackers:
                self.forget(camera)
            return None
        if panoptic is None:
            return None
        last = self._last_stamp_ns.get(camera)
        if last is not None and stamp_ns < last:
            self._log(f"[{label}] time jumped back ({(last - stamp_ns) / 1e9:.3f} s, e.g. a bag loop): tracks reset")
            self.forget(camera)
        self._last_stamp_ns[camera] = stamp_ns
        config = tracker_config_from(params)
        tracker = self._trackers.get(camera)
        if tracker is None:
            tracker = self._trackers[camera] = PanopticTracker(config, first_id=self._next_ids.get(camera, 1))
        elif tracker.config != config:
            tracker.set_config(config)
        return tracker.update(panoptic)
