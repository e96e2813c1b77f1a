"""Counters, rates and latency percentiles behind the node's /diagnostics (no ROS imports, thread-safe).

The subscription callbacks (executor thread) and the worker thread both write here; the diagnostics timer reads a
consistent snapshot. Each camera has its own :class:`CameraStats` so that one slow or broken camera is visible as
such. Percentiles are computed over a sliding time window (parameter ``diagnostics.window``) with the same
definition as every other latency figure of the package (:mod:`bisenetformer_ros.evaluation.latency`).
"""

from __future__ import annotations

import threading
import time
from collections import Counter, deque
from dataclasses import dataclass, field

from bisenetformer_ros.evaluation.latency import percentile

#: Latency stages reported per camera, in pipeline order ("age" = receipt to published, the latency a user sees).
STAGES: tuple[str, ...] = ("decode", "preprocess", "inference", "postprocess", "render", "publish", "age")


class TimedSamples:
    """Values with their time of arrival; keeps at most ``maxlen`` and answers over the last ``window`` seconds."""

    def __init__(self, maxlen: int = 2048) -> None:
        self._items: deque[tuple[float, float]] = deque(maxlen=maxlen)

    def add(self, value: float, now: float | None = None) -> None:
        self._items.append((time.monotonic() if now is None else now, float(value)))

    def values(self, window: float, now: float | None = None) -> list[float]:
        now = time.monotonic() if now is None else now
        return [v for t, v in self._items if now - t <= window]

    def clear(self) -> None:
        self._items.clear()


class EventCounter:
    """Counts events in 0.1 s buckets, so rates stay exact at any message rate with bounded memory."""

    BUCKET = 0.1

    def __init__(self, horizon: float = 3600.0) -> None:
        self._buckets: deque[list[float]] = deque(maxlen=int(horizon / self.BUCKET) + 1)  # [bucket start, count]

    def add(self, now: float | None = None, n: int = 1) -> None:
        now = time.monotonic() if now is None else now
        start = now - (now % self.BUCKET)
        if self._buckets and self._buckets[-1][0] == start:
            self._buckets[-1][1] += n
        else:
            self._buckets.append([start, n])

    def count(self, window: float, now: float | None = None) -> int:
        now = time.monotonic() if now is None else now
        total = 0
        for t, c in reversed(self._buckets):  # newest first: stop at the window's edge
            if now - t > window:
                break
            total += c
        return int(total)


@dataclass
class CameraSnapshot:
    """What diagnostics report for one camera (rates per second, latencies in milliseconds)."""

    name: str
    counters: dict[str, int]
    bad_input: dict[str, int]
    input_fps: float
    output_fps: float
    window_bad_input: int
    window_errors: int
    window_drops: int
    latency_ms: dict[str, tuple[float, float, float]] = field(default_factory=dict)  # stage -> (p50, p99, max)


class CameraStats:
    """Everything counted for one camera."""

    COUNTERS = (
        "received",  # messages that arrived
        "accepted",  # handed to the worker
        "idle",  # arrived while no output had a subscriber (no inference)
        "dropped_superseded",  # replaced by a newer frame before the worker took it
        "dropped_stale",  # older than max_age when the worker reached it
        "dropped_inactive",  # arrived or waited while the node was not active
        "bad_input",  # malformed (see bad_input causes)
        "errors",  # backend/pipeline failures
        "processed",  # inferred
        "published",  # frames with at least one output published
    )

    def __init__(self, name: str) -> None:
        self.name = name
        self._lock = threading.Lock()
        self.counters: Counter[str] = Counter({k: 0 for k in self.COUNTERS})
        self.bad_causes: Counter[str] = Counter()
        self._events: dict[str, EventCounter] = {
            k: EventCounter() for k in ("received", "published", "bad", "error", "drop")
        }
        self._latency: dict[str, TimedSamples] = {s: TimedSamples() for s in STAGES}
        self._since = time.monotonic()

    def count(self, key: str, n: int = 1) -> None:
        with self._lock:
            self.counters[key] += n
            now = time.monotonic()
            if key == "received":
                self._events["received"].add(now, n)
            elif key == "published":
                self._events["published"].add(now, n)
            elif key == "errors":
                self._events["error"].add(now, n)
            elif key.startswith("dropped_"):
                self._events["drop"].add(now, n)

    def bad(self, cause: str) -> None:
        with self._lock:
            self.counters["bad_input"] += 1
            self.bad_causes[cause] += 1
            self._events["bad"].add()

    def latency(self, stage: str, seconds: float) -> None:
        with self._lock:
            self._latency[stage].add(seconds)

    def snapshot(self, window: float) -> CameraSnapshot:
        now = time.monotonic()
        with self._lock:
            lat = {}
            for stage, samples in self._latency.items():
                vals = samples.values(window, now)
                if vals:
                    lat[stage] = (
                        percentile(vals, 50) * 1000.0,
                        percentile(vals, 99) * 1000.0,
                        max(vals) * 1000.0,
                    )
            n_in = self._events["received"].count(window, now)
            n_out = self._events["published"].count(window, now)
            # Rates over the window, or over the time since the stats began when that is shorter.
            span = max(min(window, now - self._since), 1e-3)
            return CameraSnapshot(
                name=self.name,
                counters=dict(self.counters),
                bad_input=dict(self.bad_causes),
                input_fps=n_in / span,
                output_fps=n_out / span,
                window_bad_input=self._events["bad"].count(window, now),
                window_errors=self._events["error"].count(window, now),
                window_drops=self._events["drop"].count(window, now),
                latency_ms=lat,
            )


class CauseThrottle:
    """Log a problem the first time each cause appears, then at most once per ``period`` with the count since.

    A camera that sends a malformed frame at 30 Hz would otherwise flood the log; one line per cause per period
    still tells the user what is wrong and how often.
    """

    def __init__(self, period: float = 10.0) -> None:
        self.period = period
        self._lock = threading.Lock()
        self._last: dict[str, float] = {}
        self._suppressed: Counter[str] = Counter()

    def should_log(self, cause: str, now: float | None = None) -> tuple[bool, int]:
        """(log now?, occurrences suppressed since the last logged one)."""
        now = time.monotonic() if now is None else now
        with self._lock:
            last = self._last.get(cause)
            if last is None or now - last >= self.period:
                self._last[cause] = now
                n = self._suppressed.pop(cause, 0)
                return True, n
            self._suppressed[cause] += 1
            return False, 0
