"""The node's statistics (rates, percentiles, log throttling): plain Python, exercised with explicit clocks."""

from __future__ import annotations

import pytest

from bisenetformer_ros.ros.stats import CameraStats, CauseThrottle, EventCounter, TimedSamples, percentile


def test_event_counter_counts_exactly_at_high_rates() -> None:
    c = EventCounter()
    for i in range(50_000):  # 5 kHz for 10 s: more events than any sample buffer would keep
        c.add(now=100.0 + i * 0.0002)
    assert c.count(window=10.5, now=110.0) == 50_000
    assert c.count(window=1.0, now=110.0) == pytest.approx(5_000, abs=500)
    assert c.count(window=1.0, now=200.0) == 0


def test_percentile_and_windowed_samples() -> None:
    assert percentile([3.0, 1.0, 2.0], 50) == 2.0
    assert percentile(list(map(float, range(101))), 99) == pytest.approx(99.0)
    s = TimedSamples()
    s.add(1.0, now=0.0)
    s.add(5.0, now=9.0)
    assert s.values(window=2.0, now=10.0) == [5.0]


def test_camera_stats_snapshot() -> None:
    st = CameraStats("/cam/image")
    for _ in range(20):
        st.count("received")
    st.count("published", 10)
    st.count("dropped_stale")
    st.bad("data_size")
    st.bad("data_size")
    st.latency("inference", 0.010)
    st.latency("inference", 0.030)
    snap = st.snapshot(window=10.0)
    assert snap.counters["received"] == 20 and snap.counters["bad_input"] == 2
    assert snap.bad_input == {"data_size": 2}
    assert snap.window_drops == 1 and snap.window_bad_input == 2
    p50, p99, mx = snap.latency_ms["inference"]
    assert p50 == pytest.approx(20.0) and mx == pytest.approx(30.0) and p50 <= p99 <= mx
    assert snap.input_fps > 0 and snap.output_fps > 0


def test_cause_throttle_logs_once_per_period_with_suppressed_count() -> None:
    t = CauseThrottle(period=10.0)
    assert t.should_log("a", now=0.0) == (True, 0)
    assert t.should_log("a", now=1.0) == (False, 0)
    assert t.should_log("b", now=1.0) == (True, 0)  # causes are independent
    assert t.should_log("a", now=2.0) == (False, 0)
    assert t.should_log("a", now=10.5) == (True, 2)
