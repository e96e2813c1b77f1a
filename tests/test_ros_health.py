"""The health rules of the node's /diagnostics: made-up statistics in, (level, message, values) out; no DDS."""

from __future__ import annotations

from typing import Any

from bisenetformer_ros.ros.health import (
    ERROR,
    OK,
    WARN,
    QosProblem,
    camera_health,
    pipeline_health,
    value_text,
)
from bisenetformer_ros.ros.stats import CameraSnapshot, CameraStats


def snapshot(
    input_fps: float = 30.0,
    output_fps: float = 30.0,
    received: int = 300,
    idle: int = 0,
    errors: int = 0,
    bad: int = 0,
    **latency: tuple[float, float, float],
) -> CameraSnapshot:
    counters = {k: 0 for k in CameraStats.COUNTERS} | {"received": received, "idle": idle}
    return CameraSnapshot(
        name="/cam/image",
        counters=counters,
        bad_input={"data_size": bad} if bad else {},
        input_fps=input_fps,
        output_fps=output_fps,
        window_bad_input=bad,
        window_errors=errors,
        window_drops=0,
        latency_ms=dict(latency),
    )


def values(h: Any) -> dict[str, str]:
    return dict(h.values)


def test_a_healthy_camera_reports_its_rate_and_latencies() -> None:
    h = camera_health(snapshot(inference=(10.0, 12.5, 20.0)), "active", active=True)
    assert (h.level, h.message) == (OK, "30.0 fps")
    v = values(h)
    assert v["state"] == "active" and v["input_fps"] == "30.000" and v["received"] == "300"
    assert v["latency.inference.p50_ms"] == "10.000" and v["latency.inference.max_ms"] == "20.000"
    assert "latency.decode.p50_ms" not in v  # stages without samples are left out
    keys = [k for k, _ in h.values]
    assert keys[:3] == ["state", "input_fps", "output_fps"]


def test_idle_states() -> None:
    assert camera_health(snapshot(), "inactive", active=False).message == "inactive"
    assert camera_health(snapshot(input_fps=0.0, output_fps=0.0), "active", active=True).message == "no frames"
    idle = snapshot(output_fps=0.0, received=300, idle=300)  # frames arrive, nobody subscribes
    h = camera_health(idle, "active", active=True, warn_fps=10.0, error_fps=5.0)
    assert (h.level, h.message) == (OK, "idle: no subscribers")  # no rate alarm without subscribers


def test_rate_thresholds() -> None:
    slow = snapshot(output_fps=4.0)
    assert camera_health(slow, "active", True).level == OK  # thresholds 0 = off
    h = camera_health(slow, "active", True, warn_fps=10.0)
    assert (h.level, h.message) == (WARN, "output 4.0 fps < 10")
    h = camera_health(slow, "active", True, warn_fps=10.0, error_fps=5.0)
    assert (h.level, h.message) == (ERROR, "output 4.0 fps < 5")  # the error threshold wins, one message


def test_errors_malformed_input_and_qos_accumulate() -> None:
    qos = QosProblem("/cam/semantic", "subscriber", "RELIABILITY", 2, "best effort, volatile")
    h = camera_health(snapshot(errors=3, bad=2), "active", True, qos_problems=[qos])
    assert h.level == ERROR
    assert h.message == (
        "3 inference error(s); 2 malformed frame(s); incompatible QoS: 2 subscriber(s) on /cam/semantic "
        "(RELIABILITY; ours: best effort, volatile)"
    )
    v = values(h)
    assert v["bad_input.data_size"] == "2"
    assert v["incompatible_qos./cam/semantic"] == "2 subscriber(s), RELIABILITY"
    h = camera_health(snapshot(bad=1), "active", True)
    assert (h.level, h.message) == (WARN, "1 malformed frame(s)")
    h = camera_health(snapshot(), "inactive", False, qos_problems=[qos])
    assert h.level == WARN  # an incompatible endpoint is loud in every state


def test_pipeline_status() -> None:
    h = pipeline_health("active", 12, 1, last_error="RuntimeError: boom", model=[("backend", "torch")])
    assert (h.level, h.message) == (OK, "active")
    assert h.values == [
        ("state", "active"),
        ("network_calls", "12"),
        ("errors", "1"),
        ("backend", "torch"),
        ("last_error", "RuntimeError: boom"),
    ]
    h = pipeline_health("unconfigured", 0, 0, configure_error="FileNotFoundError: missing.pt")
    assert (h.level, h.message) == (ERROR, "configure failed: FileNotFoundError: missing.pt")
    assert values(h)["configure_error"] == "FileNotFoundError: missing.pt"


def test_value_text() -> None:
    assert value_text(0.5) == "0.500" and value_text(3) == "3" and value_text("x") == "x"
