#!/usr/bin/env python3
"""Print the README's ``bisenetformer_node`` parameter table (markdown) from the node's own declarations, or with
``--topics`` its topic table from the output catalogue (``bisenetformer_ros/topics.py``).

The table in :mod:`bisenetformer_ros.ros.parameters` is what the node declares (types, defaults, ranges, when a change
applies), so generating the README from it keeps the documentation from drifting; never edit the README table by
hand, re-run this instead::

    .venv/bin/python tools/param_table.py > /tmp/params.md

No ROS install is needed: the parameter module imports no ROS package.
"""

from __future__ import annotations

import argparse
import sys

from bisenetformer_ros.ros.parameters import PARAMETERS, markdown_table
from bisenetformer_ros.topics import markdown_topic_table


def main(argv: list[str] | None = None) -> int:
    """Print the table; ``--include-debug`` adds the test-only ``debug.*`` knobs that the README leaves out."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--include-debug", action="store_true", help="also list the test-only debug.* parameters")
    parser.add_argument("--topics", action="store_true", help="print the topic table (the output catalogue) instead")
    args = parser.parse_args(argv)
    if args.topics:
        print(markdown_topic_table())
        return 0
    params = [p for p in PARAMETERS if args.include_debug or p.group != "debug"]
    print(markdown_table(params))
    return 0


if __name__ == "__main__":
    sys.exit(main())
