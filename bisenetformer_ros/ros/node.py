"""``bisenetformer_node``: the console script. ``--help`` and parameter-file checks without ROS, then the node.

The node class itself is :class:`~bisenetformer_ros.ros.segmentation_node.SegmentationNode` (see that module for
threads, lifecycle, tracking and QoS). This module imports neither rclpy nor the node until the node is started,
so ``bisenetformer_node --help`` prints the parameter table at once, even where ROS is not sourced.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Sequence
from typing import Any

import cv2

from bisenetformer_ros.cli.options import EXIT_BAD_INPUT
from bisenetformer_ros.ros.parameters import ParamsFileError, check_params_file_syntax, help_text

__all__ = ["EXIT_BAD_INPUT", "main"]


def __getattr__(name: str) -> Any:
    """``BiSeNetFormerNode`` (the node class under its former name) on first access: imports rclpy only then."""
    if name == "BiSeNetFormerNode":
        from bisenetformer_ros.ros.segmentation_node import SegmentationNode

        return SegmentationNode
    raise AttributeError(name)


def _wants_help(argv: Sequence[str]) -> bool:
    head = list(argv)
    if "--ros-args" in head:
        head = head[: head.index("--ros-args")]
    return any(a in ("-h", "--help") for a in head)


def _params_files(args: Sequence[str]) -> list[str]:
    """The ``--params-file`` arguments among the ROS arguments (after ``--ros-args``)."""
    files: list[str] = []
    in_ros = False
    it = iter(args)
    for a in it:
        if a == "--ros-args":
            in_ros = True
        elif a == "--":
            in_ros = False
        elif in_ros and a == "--params-file":
            files.append(next(it, ""))
    return files


def main(argv: Sequence[str] | None = None) -> int:
    """Console script ``bisenetformer_node``: ``--help``, or run the node until SIGINT/SIGTERM.

    Exit codes: 0 after a normal shutdown, 2 for bad input (a parameter file that is missing or not a ROS parameter
    file, an invalid parameter value, a failed autostart with ``exit_on_autostart_failure``), each with one line.
    """
    args = list(sys.argv[1:] if argv is None else argv)
    if _wants_help(args):
        print(help_text())
        return 0
    # rcl parses --params-file itself and answers a missing file or bad YAML with a traceback: check them first.
    for path in _params_files(args):
        try:
            check_params_file_syntax(path)
        except ParamsFileError as exc:
            print(f"bisenetformer_node: error: {exc}", file=sys.stderr)
            return EXIT_BAD_INPUT
    import rclpy
    from rclpy.exceptions import (
        InvalidParameterTypeException,
        InvalidParameterValueException,
        ParameterException,
    )
    from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor

    with contextlib.suppress(AttributeError):  # older OpenCV builds lack the logging API
        cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)  # corrupt-JPEG warnings: we count those
    try:
        rclpy.init(args=["bisenetformer_node", *args])
    except Exception as exc:  # rcl's argument parser (RCLError): bad --ros-args
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        print(f"bisenetformer_node: error: invalid ROS arguments: {first}", file=sys.stderr)
        return EXIT_BAD_INPUT
    from bisenetformer_ros.ros.segmentation_node import SegmentationNode

    try:
        node = SegmentationNode()
    except (InvalidParameterTypeException, InvalidParameterValueException, ParameterException, ValueError) as exc:
        print(f"bisenetformer_node: invalid parameter: {exc}", file=sys.stderr)
        rclpy.try_shutdown()
        return EXIT_BAD_INPUT
    executor = SingleThreadedExecutor()
    executor.add_node(node)
    code = 0
    try:
        if node.get_parameter("autostart").value:
            exit_on_failure = bool(node.get_parameter("exit_on_autostart_failure").value)
            if not node.autostart(exit_on_failure=exit_on_failure):
                if exit_on_failure:
                    code = EXIT_BAD_INPUT  # the configure error was logged as the one error line
                else:
                    node.get_logger().error(
                        "autostart failed; the node stays unconfigured (configure it again via lifecycle)"
                    )
        while code == 0 and rclpy.ok() and not node.finalized:
            executor.spin_once(timeout_sec=0.25)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        node.teardown()
        executor.shutdown(timeout_sec=1.0)
        node.destroy_node()
        rclpy.try_shutdown()
    return code


if __name__ == "__main__":
    sys.exit(main())
