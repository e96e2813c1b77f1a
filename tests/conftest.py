"""Shared test fixtures and the markers that say what a test needs.

ROS tests talk over real DDS. Each test module gets its own ROS_DOMAIN_ID (and discovery limited to this host), so
tests running in parallel, or a developer's own nodes, never see each other's topics.

Markers (registered in pyproject.toml): ``ros`` is set here on every test of a ``tests/test_ros_*.py`` module and on
every test that uses :func:`ros_env` (directly or through another fixture), i.e. every test that starts rclpy / DDS or
a node process; ``slow`` and ``gpu`` are set where the tests are. Day-to-day: ``pytest -m "not ros and not slow"``.

The tiny random-weight model files come from here too, one per test module (module scope, like before): tests that
change a model file never affect another module.
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


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark every test that needs a ROS 2 runtime (rclpy, DDS, node processes) ``ros``."""
    for item in items:
        if item.path.name.startswith("test_ros_") or "ros_env" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.ros)


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


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random-weight model file with the Cityscapes class table (tests.inference_models.make_model_file)."""
    from tests.inference_models import make_model_file

    return make_model_file(tmp_path_factory.mktemp("model") / "tiny.pt")


@pytest.fixture(scope="module")
def synthetic_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random-weight model file with the synthetic data set's class table.

    Seed 1: with seed 0 the sharpened random network happens to predict one class on the synthetic frames, and
    parity checks need label maps with content (the tests assert that they have it).
    """
    from bisenetformer_ros.data.synthetic import SYNTHETIC
    from tests.inference_models import make_model_file

    return make_model_file(tmp_path_factory.mktemp("model") / "tiny.pt", class_table=SYNTHETIC, seed=1)
