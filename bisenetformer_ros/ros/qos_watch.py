"""Incompatible-QoS reporting for the node's topics: a WARN log line when it happens, and a WARN in ``/diagnostics``
for as long as such an endpoint exists.

rclpy reports an incompatible endpoint once, through a QoS event on our publisher or subscription; a lazy node would
otherwise sit idle with an "OK" status while the user's display shows nothing. Each reported topic is therefore
re-checked against the graph every diagnostics period and forgotten once no mismatching endpoint is left.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from rclpy.qos import DurabilityPolicy, ReliabilityPolicy, qos_policy_name_from_kind

from bisenetformer_ros.ros.health import QosProblem

try:
    from rclpy.event_handler import PublisherEventCallbacks, SubscriptionEventCallbacks
except ImportError:  # pragma: no cover - Humble's name of the same module
    from rclpy.qos_event import PublisherEventCallbacks, SubscriptionEventCallbacks


@dataclass
class QosIssue:
    """An endpoint on one of our topics whose QoS does not match ours (seen through a QoS event)."""

    topic: str
    side: str  # 'subscriber' (of our output) or 'publisher' (of our input)
    policy: str  # e.g. RELIABILITY, DURABILITY
    ours: Any  # our QoSProfile on that topic
    count: int = 0  # incompatible endpoints found in the graph at the last check

    def problem(self) -> QosProblem:
        return QosProblem(self.topic, self.side, self.policy, self.count, describe_qos(self.ours))


def describe_qos(qos: Any) -> str:
    """``reliable, volatile`` for log lines and diagnostics."""
    rel = getattr(qos.reliability, "name", str(qos.reliability)).lower().replace("_", " ")
    dur = getattr(qos.durability, "name", str(qos.durability)).lower().replace("_", " ")
    return f"{rel}, {dur}"


def incompatible(pub_qos: Any, sub_qos: Any) -> bool:
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


class QosWatch:
    """Creates the node's publishers and subscriptions with QoS event callbacks that record issues in a camera's
    ``issues`` dict (topic -> :class:`QosIssue`). ``output_qos`` returns the ``output_qos`` parameter (for the fix
    a warning suggests)."""

    def __init__(self, node: Any, output_qos: Callable[[], str]) -> None:
        self._node = node
        self._output_qos = output_qos

    def publisher(self, issues: dict[str, QosIssue], msg_type: Any, topic: str, qos: Any) -> Any:
        resolved = self._node.resolve_topic_name(topic)

        def on_incompatible(event: Any) -> None:
            self._report(issues, resolved, "subscriber", event, qos)

        callbacks = PublisherEventCallbacks(incompatible_qos=on_incompatible)
        return self._node.create_publisher(msg_type, topic, qos, event_callbacks=callbacks)

    def subscription(self, issues: dict[str, QosIssue], msg_type: Any, topic: str, callback: Any, qos: Any) -> Any:
        resolved = self._node.resolve_topic_name(topic)

        def on_incompatible(event: Any) -> None:
            self._report(issues, resolved, "publisher", event, qos)

        callbacks = SubscriptionEventCallbacks(incompatible_qos=on_incompatible)
        return self._node.create_subscription(msg_type, topic, callback, qos, event_callbacks=callbacks)

    def _report(self, issues: dict[str, QosIssue], topic: str, side: str, event: Any, ours: Any) -> None:
        policy = qos_policy_name_from_kind(event.last_policy_kind)
        issues[topic] = QosIssue(topic, side, policy, ours, max(1, int(event.total_count_change)))
        if side == "subscriber":
            fix = "it receives nothing; give it a matching QoS" + (
                " or set output_qos: reliable" if self._output_qos() != "reliable" else ""
            )
        else:
            fix = "its messages are not received; give it a matching QoS or change input_qos"
        self._node.get_logger().warning(
            f"a {side} on {topic} requests an incompatible QoS ({policy}, ours: {describe_qos(ours)}): {fix}"
        )

    def refresh(self, issues: dict[str, QosIssue]) -> list[QosProblem]:
        """Recount the incompatible endpoints of every topic that reported one, forget topics that have none left;
        the problems that remain."""
        node = self._node
        for topic, issue in list(issues.items()):
            try:
                if issue.side == "subscriber":
                    infos = node.get_subscriptions_info_by_topic(topic)
                    bad = [i for i in infos if incompatible(issue.ours, i.qos_profile)]
                else:
                    infos = node.get_publishers_info_by_topic(topic)
                    bad = [i for i in infos if incompatible(i.qos_profile, issue.ours)]
            except Exception:  # pragma: no cover - graph queries fail only while shutting down
                continue
            if bad:
                issue.count = len(bad)
            else:
                del issues[topic]
        return [issue.problem() for issue in list(issues.values())]


def forget_input_issues(issues: dict[str, QosIssue]) -> None:
    """Drop the issues of our subscriptions (when they are destroyed, their mismatches are gone too)."""
    for topic in [t for t, issue in issues.items() if issue.side == "publisher"]:
        del issues[topic]
