"""The node's parameters in ROS: declared from the table of :mod:`~bisenetformer_ros.ros.parameters` (with
descriptors), every change reviewed by its rules, the current values kept as one dict the worker reads.

The values dict is replaced, never mutated, on each accepted change, so a reader that took ``values`` once (the
worker, per batch) sees one consistent set. ``tracking.reset`` is an action rather than a state: accepting it calls
``on_reset`` and the parameter reads false again right after.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from rcl_interfaces.msg import SetParametersResult
from rclpy.parameter import Parameter

from bisenetformer_ros.ros.parameters import (
    BUILTIN_PARAMETERS,
    PARAMETERS,
    SPECS,
    check_combination,
    review_changes,
    ros_descriptor,
    suggest,
)


class NodeParameters:
    """Declares every parameter on ``node`` and guards changes.

    ``state()`` is (a model is configured, the lifecycle state in words) for the reload rule; ``accept(new)`` is the
    node's own check of an otherwise valid change against what it has loaded (a reason refuses it; None accepts,
    and the node has applied what it derives); ``on_reset`` runs when ``tracking.reset`` is set. Raises ValueError
    when the start-up values break a combination rule.
    """

    def __init__(
        self,
        node: Any,
        state: Callable[[], tuple[bool, str]],
        accept: Callable[[dict[str, Any]], str | None],
        on_reset: Callable[[], None],
    ) -> None:
        self.values: dict[str, Any] = {p.name: p.default for p in PARAMETERS}
        self._node = node
        self._state = state
        self._accept = accept
        self._on_reset = on_reset
        self._declaring = True
        self._reset_timer: Any = None
        node.add_on_set_parameters_callback(self._on_set_parameters)
        for spec in PARAMETERS:
            node.declare_parameter(spec.name, spec.default, ros_descriptor(spec))
            self.values[spec.name] = node.get_parameter(spec.name).value
        problems = check_combination(self.values)
        if problems:
            raise ValueError("; ".join(problems))
        self._declaring = False
        for name in getattr(node, "_parameter_overrides", {}) or {}:
            if name not in SPECS and name not in BUILTIN_PARAMETERS:
                node.get_logger().warning(f"ignoring unknown parameter '{name}'{suggest(name)}")

    def _on_set_parameters(self, params: Sequence[Parameter]) -> SetParametersResult:
        changes = [(p.name, None if p.type_ == Parameter.Type.NOT_SET else p.value) for p in params]
        configured, state = self._state()
        new, reason = review_changes(
            self.values, changes, declaring=self._declaring, configured=configured, state=state
        )
        if reason is None and not self._declaring:
            reason = self._accept(new)
        if reason:
            return SetParametersResult(successful=False, reason=reason)
        if not self._declaring and new.get("tracking.reset"):
            self._on_reset()
            new["tracking.reset"] = False
            self._schedule_reset_clear()
        self.values = new
        return SetParametersResult(successful=True)

    def _schedule_reset_clear(self) -> None:
        """Set ``tracking.reset`` back to false once the current set-parameters call is over (a parameter cannot be
        changed from inside its own callback)."""
        if self._reset_timer is not None:
            return
        node = self._node

        def clear() -> None:
            if self._reset_timer is not None:
                self._reset_timer.cancel()
                node.destroy_timer(self._reset_timer)
                self._reset_timer = None
            if node.get_parameter("tracking.reset").value:
                node.set_parameters([Parameter("tracking.reset", Parameter.Type.BOOL, False)])

        self._reset_timer = node.create_timer(0.01, clear)
