"""QoS profiles of the node's topics, chosen by name from parameters.

``sensor_data`` is best effort with a short history: a late camera frame is worthless, and a best-effort
subscription also matches a reliable publisher. ``reliable`` is for recorders and lock-step pipelines that must not
lose frames. Class tables are latched (transient local) so late subscribers still get the one message.
"""

from __future__ import annotations

from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy

QOS_NAMES: tuple[str, ...] = ("sensor_data", "reliable")


def stream_qos(name: str, depth: int) -> QoSProfile:
    """Profile for an image stream (input or output) by parameter value."""
    if name == "sensor_data":
        reliability = ReliabilityPolicy.BEST_EFFORT
    elif name == "reliable":
        reliability = ReliabilityPolicy.RELIABLE
    else:
        raise ValueError(f"unknown QoS '{name}'; choose one of {', '.join(QOS_NAMES)}")
    return QoSProfile(
        history=HistoryPolicy.KEEP_LAST,
        depth=int(depth),
        reliability=reliability,
        durability=DurabilityPolicy.VOLATILE,
    )


def latched_qos() -> QoSProfile:
    """Reliable + transient local, depth 1: published once, delivered to every later subscriber."""
    return QoSProfile(
        history=HistoryPolicy.KEEP_LAST,
        depth=1,
        reliability=ReliabilityPolicy.RELIABLE,
        durability=DurabilityPolicy.TRANSIENT_LOCAL,
    )


def diagnostics_qos() -> QoSProfile:
    """As diagnostic_updater publishes /diagnostics (reliable, volatile)."""
    return QoSProfile(
        history=HistoryPolicy.KEEP_LAST,
        depth=10,
        reliability=ReliabilityPolicy.RELIABLE,
        durability=DurabilityPolicy.VOLATILE,
    )
