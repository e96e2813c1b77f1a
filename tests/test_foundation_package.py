"""The repository is a valid ROS 2 package and a valid Python project: manifest, colcon build, CLI, layering."""

from __future__ import annotations

import ast
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
VENV = Path(sys.prefix)
BIN = Path(sys.executable).parent
IGNORED_DIRS = {".venv", "build", "install", "log", ".git", "__pycache__", ".pytest_cache", ".ruff_cache", "runs"}


def _python_files() -> list[Path]:
    files = []
    for root, dirs, names in os.walk(REPO):
        dirs[:] = [d for d in dirs if d not in IGNORED_DIRS]
        files += [Path(root) / n for n in names if n.endswith(".py")]
    return files + [p for p in (REPO / "tools" / "ros2_entry").iterdir() if p.is_file()]


def test_package_xml_is_valid_format_3() -> None:
    from catkin_pkg.package import parse_package

    pkg = parse_package(str(REPO / "package.xml"))
    pkg.validate()
    assert pkg.package_format == 3
    assert pkg.name == "bisenetformer_ros"
    declared = {d.name for d in pkg.build_depends + pkg.exec_depends + pkg.buildtool_depends}
    for needed in (
        "rclpy",
        "sensor_msgs",
        "std_msgs",
        "diagnostic_msgs",
        "lifecycle_msgs",
        "vision_msgs",
        "rosidl_default_generators",
        "rosidl_default_runtime",
        "python3-numpy",
        "python3-opencv",
    ):
        assert needed in declared, f"package.xml does not declare {needed}"
    assert "rosidl_interface_packages" in [g.name for g in pkg.member_of_groups]


def test_sources_parse_as_python_3_10() -> None:
    """Humble on JetPack 6 runs Python 3.10: no 3.11+ syntax anywhere."""
    for path in _python_files():
        ast.parse(path.read_text(encoding="utf-8"), filename=str(path), feature_version=(3, 10))


def test_ruff_clean() -> None:
    ruff = shutil.which("ruff", path=str(BIN))
    if ruff is None:
        pytest.skip("ruff is not installed in this environment")
    res = subprocess.run([ruff, "check", "--no-cache", str(REPO)], capture_output=True, text=True, cwd=REPO)
    assert res.returncode == 0, res.stdout + res.stderr


@pytest.mark.slow
def test_core_imports_no_ros() -> None:
    """Everything but bisenetformer_ros.ros must work after a plain pip install, with no ROS module loaded."""
    core = sorted(
        ".".join(p.relative_to(REPO).with_suffix("").parts).removesuffix(".__init__")
        for p in (REPO / "bisenetformer_ros").rglob("*.py")
        if "ros" not in p.relative_to(REPO / "bisenetformer_ros").parts[:1]
        and p.parts[-2:] != ("bisenetformer_ros", "msg")
    )
    code = (
        "import importlib, sys\n"
        f"mods = {core!r}\n"
        # Backends of optional accelerators (TensorRT) need their own package; ROS is never allowed.
        "OPTIONAL = {'tensorrt'}\n"
        "for m in mods:\n"
        "    try:\n"
        "        importlib.import_module(m)\n"
        "    except ModuleNotFoundError as e:\n"
        "        if e.name not in OPTIONAL:\n"
        "            raise\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in "
        "{'rclpy', 'rosidl_runtime_py', 'rosidl_parser', 'sensor_msgs', 'std_msgs', 'builtin_interfaces', "
        "'diagnostic_msgs', 'lifecycle_msgs', 'vision_msgs', 'launch', 'launch_ros'} "
        "or m.startswith('bisenetformer_ros.msg') or m.startswith('bisenetformer_ros.ros'))\n"
        "print('\\n'.join(bad)); sys.exit(1 if bad else 0)\n"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd="/")
    assert res.returncode == 0, f"core modules pulled in ROS modules:\n{res.stdout}{res.stderr}"


@pytest.mark.slow
def test_cli_help_and_errors() -> None:
    for exe in ("bisenetformer", "bisenetformer_node"):
        res = subprocess.run([str(BIN / exe), "--help"], capture_output=True, text=True, timeout=120)
        assert res.returncode == 0, res.stderr
        assert "usage" in res.stdout.lower()
    res = subprocess.run([str(BIN / "bisenetformer"), "no-such-command"], capture_output=True, text=True)
    assert res.returncode != 0
    assert "invalid choice" in res.stderr and "no-such-command" in res.stderr


@pytest.mark.slow
def test_colcon_build_in_a_workspace(tmp_path: Path) -> None:
    """What a robot team does: clone into <ws>/src, `colcon build`, import the messages from install/."""
    colcon = BIN / "colcon"
    if not colcon.exists():
        pytest.skip("colcon is not installed in this environment")
    src = tmp_path / "src" / "bisenetformer_ros"
    shutil.copytree(REPO, src, ignore=shutil.ignore_patterns(*IGNORED_DIRS, "*.pyc"))
    env = dict(os.environ, AMENT_PREFIX_PATH=str(VENV), PATH=f"{BIN}{os.pathsep}{os.environ['PATH']}")
    res = subprocess.run(
        [
            str(colcon),
            "build",
            "--event-handlers",
            "console_direct-",
            "--cmake-args",
            f"-DPython3_EXECUTABLE={sys.executable}",
            "-DBUILD_TESTING=OFF",
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert res.returncode == 0, res.stdout[-4000:] + res.stderr[-4000:]
    prefix = tmp_path / "install" / "bisenetformer_ros"
    site = prefix / "lib" / f"python{sys.version_info.major}.{sys.version_info.minor}" / "site-packages"
    assert (prefix / "lib" / "bisenetformer_ros" / "bisenetformer_node").is_file()
    assert (prefix / "share" / "bisenetformer_ros" / "package.xml").is_file()
    assert (site / "bisenetformer_ros" / "model" / "cellmerge_kernels.c").is_file()  # built at first use (native.py)
    code = (
        "import bisenetformer_ros, bisenetformer_ros.msg as m, bisenetformer_ros.cli.main\n"
        "from rclpy.serialization import serialize_message, deserialize_message\n"
        "for t in (m.PanopticSegment, m.PanopticSegmentation, m.ClassTable):\n"
        "    assert deserialize_message(serialize_message(t()), t) == t()\n"
        "maps = open('/proc/self/maps').read()\n"
        "print(m.__file__); print(bisenetformer_ros.cli.main.__file__)\n"
        "print('lib_from_install', f'{sys.argv[1]}/lib/libbisenetformer_ros__rosidl_typesupport_c.so' in maps)\n"
    )
    # As `source install/setup.bash` would: the install's libraries first, the environment's after.
    ld_path = os.pathsep.join(p for p in (str(prefix / "lib"), os.environ.get("LD_LIBRARY_PATH", "")) if p)
    env2 = dict(os.environ, PYTHONPATH=str(site), LD_LIBRARY_PATH=ld_path)
    res = subprocess.run(
        [sys.executable, "-c", "import sys\n" + code, str(prefix)],
        env=env2,
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert res.returncode == 0, res.stderr
    lines = res.stdout.splitlines()
    assert lines[0].startswith(str(site)), "messages were not imported from the colcon install"
    assert lines[1].startswith(str(site)), "the Python package was not imported from the colcon install"
    assert lines[2] == "lib_from_install True"


@pytest.mark.slow
@pytest.mark.parametrize(("given", "expected"), [(None, "PASSIVE"), ("ACTIVE", "ACTIVE")])
def test_openmp_workers_wait_passively_unless_told_otherwise(given: str | None, expected: str) -> None:
    """Importing the package before torch makes torch's OpenMP workers sleep instead of spinning (they would steal
    the CPU from ONNX Runtime and the post-processing); a value the user set is kept."""
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    if given is not None:
        env["OMP_WAIT_POLICY"] = given
    code = "import os, bisenetformer_ros, torch; print(os.environ['OMP_WAIT_POLICY'])"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == expected
