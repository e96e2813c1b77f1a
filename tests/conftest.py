"""Shared test fixtures.

ROS tests talk over real DDS. Each test module gets its own ROS_DOMAIN_ID (and discovery limited to this host), so
tests running in parallel, or a developer's own nodes, never see each other's topics.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
VENV_BIN = Path(sys.executable).parent

_next_domain = [0]


def unique_domain_id() -> int:
    """A domain id in 1..200 unlikely to be used by anything else on this machine at the same time."""
    _next_domain[0] += 1
    return 1 + (os.getpid() * 7 + _next_domain[0] * 13) % 200


@pytest.fixture(scope="module")
def ros_env() -> Iterator[dict[str, str]]:
    """Environment for ROS processes of this module: private domain, localhost-only discovery.

    The current process takes the same settings so that rclpy in the test and in child processes meet.
    """
    saved = {k: os.environ.get(k) for k in ("ROS_DOMAIN_ID", "ROS_AUTOMATIC_DISCOVERY_RANGE", "ROS_LOCALHOST_ONLY")}
    os.environ["ROS_DOMAIN_ID"] = str(unique_domain_id())
    os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
    os.environ.pop("ROS_LOCALHOST_ONLY", None)
    env = dict(os.environ)
    env["PYTHONUNBUFFERED"] = "1"
    env["PATH"] = f"{VENV_BIN}{os.pathsep}{env.get('PATH', '')}"
    try:
        yield env
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
