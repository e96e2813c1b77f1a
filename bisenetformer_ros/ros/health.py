"""The health rules behind the node's ``/diagnostics``: counters and statistics in, (level, message, values) out.

Plain Python next to :mod:`bisenetformer_ros.ros.stats`, so each rule (inference errors, output rate thresholds,
malformed input, incompatible QoS, idle states) is tested with made-up snapshots; the node only copies the result
into ``diagnostic_msgs/DiagnosticStatus``. Levels are the numbers of ``DiagnosticStatus`` (OK 0, WARN 1, ERROR 2).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from bisenetformer_ros.ros.stats import STAGES, CameraSnapshot

OK, WARN, ERROR = 0, 1, 2


@dataclass(frozen=True)
class Health:
    """One diagnostics status: level (OK/WARN/ERROR), message and the key/value pairs shown with it."""

    level: int
    message: str
    values: list[tuple[str, str]] = field(default_factory=list)


@dataclass(frozen=True)
class QosProblem:
    """Endpoints on one of a camera's topics whose QoS cannot match ours (from the node's graph check)."""

    topic: str
    side: str  # 'subscriber' (of our output) or 'publisher' (of our input)
    policy: str  # e.g. RELIABILITY, DURABILITY
    count: int
    ours: str  # our profile in words, e.g. 'best effort, volatile'


def value_text(v: Any) -> str:
    """A diagnostics value: floats with three decimals, everything else as ``str``."""
    return f"{v:.3f}" if isinstance(v, float) else str(v)


def _kv(key: str, value: Any) -> tuple[str, str]:
    return key, value_text(value)


def pipeline_health(
    state: str,
    network_calls: int,
    errors: int,
    last_error: str = "",
    configure_error: str = "",
    model: Sequence[tuple[str, Any]] = (),
) -> Health:
    """The node-wide status: ERROR while the last configure failed, else OK with the lifecycle state.

    ``model`` are the loaded model's (key, value) pairs (backend, device, ...), empty while none is loaded.
    """
    values = [_kv("state", state), _kv("network_calls", network_calls), _kv("errors", errors)]
    values += [_kv(k, v) for k, v in model]
    if last_error:
        values.append(_kv("last_error", last_error))
    if configure_error:
        values.append(_kv("configure_error", configure_error))
        return Health(ERROR, f"configure failed: {configure_error}", values)
    return Health(OK, state, values)


def model_values(segmenter: Any, model: str) -> list[tuple[str, Any]]:
    """What the pipeline status says about the loaded model: backend, device, precision, file and classes."""
    info = segmenter.backend.info
    return [
        ("backend", info.name),
        ("device", info.device),
        ("precision", info.precision),
        ("model", model or "(embedded default)"),
        ("classes", segmenter.class_table.dataset),
        ("num_classes", segmenter.class_table.num_classes),
    ]


def camera_values(state: str, s: CameraSnapshot) -> list[tuple[str, str]]:
    """A camera's key/value pairs: state, rates, counters, malformed-input causes and latency percentiles."""
    values = [_kv("state", state), _kv("input_fps", s.input_fps), _kv("output_fps", s.output_fps)]
    values += [_kv(k, v) for k, v in s.counters.items()]
    values += [_kv(f"bad_input.{k}", v) for k, v in sorted(s.bad_input.items())]
    for stage in STAGES:
        if stage in s.latency_ms:
            p50, p99, mx = s.latency_ms[stage]
            values += [
                _kv(f"latency.{stage}.p50_ms", p50),
                _kv(f"latency.{stage}.p99_ms", p99),
                _kv(f"latency.{stage}.max_ms", mx),
            ]
    return values


def camera_health(
    s: CameraSnapshot,
    state: str,
    active: bool,
    warn_fps: float = 0.0,
    error_fps: float = 0.0,
    qos_problems: Iterable[QosProblem] = (),
) -> Health:
    """One camera's status from its snapshot over the diagnostics window.

    ERROR: inference errors in the window, or (while frames arrive and someone is subscribed) an output rate below
    ``error_fps``; WARN: a rate below ``warn_fps``, malformed frames, an endpoint with an incompatible QoS. Without a
    problem the message says what the camera is doing (state, no frames, idle without subscribers, fps). A rate
    threshold of 0 is off.
    """
    values = camera_values(state, s)
    level, problems = OK, []
    busy = s.input_fps > 0 and s.counters["idle"] < s.counters["received"]
    if s.window_errors:
        level = ERROR
        problems.append(f"{s.window_errors} inference error(s)")
    if busy and error_fps > 0 and s.output_fps < error_fps:
        level = ERROR
        problems.append(f"output {s.output_fps:.1f} fps < {error_fps:g}")
    elif busy and warn_fps > 0 and s.output_fps < warn_fps:
        level = max(level, WARN)
        problems.append(f"output {s.output_fps:.1f} fps < {warn_fps:g}")
    if s.window_bad_input:
        level = max(level, WARN)
        problems.append(f"{s.window_bad_input} malformed frame(s)")
    for q in qos_problems:
        level = max(level, WARN)
        problems.append(f"incompatible QoS: {q.count} {q.side}(s) on {q.topic} ({q.policy}; ours: {q.ours})")
        values.append(_kv(f"incompatible_qos.{q.topic}", f"{q.count} {q.side}(s), {q.policy}"))
    if problems:
        message = "; ".join(problems)
    elif not active:
        message = state
    elif s.input_fps == 0:
        message = "no frames"
    elif not busy:
        message = "idle: no subscribers"
    else:
        message = f"{s.output_fps:.1f} fps"
    return Health(level, message, values)
