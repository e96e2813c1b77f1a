"""Parameters, parameter files and launch files of the node.

* every YAML in config/node is checked against the parameter table (names, types, ranges) and loaded by the real
  node class through rcl's own ``--params-file`` parser, so a type rclpy would refuse (``1`` for a double) fails here;
* every launch file compiles and names only existing config files, declared parameters and real node topics;
* where launch_ros exists (ROS machines) a launch test starts the single-camera launch file.
"""

from __future__ import annotations

import ast
import os
import py_compile
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from bisenetformer_ros.ros.parameters import (
    BUILTIN_PARAMETERS,
    PARAMETERS,
    SPECS,
    check_params_file,
    check_values,
    markdown_table,
    read_params_file,
    review_changes,
)

REPO = Path(__file__).resolve().parents[1]
NODE_YAMLS = sorted((REPO / "config" / "node").glob("*.yaml"))
LAUNCH_FILES = sorted((REPO / "launch").glob("*.launch.py"))
BIN = Path(sys.executable).parent


def test_expected_files_exist() -> None:
    names = {p.name for p in NODE_YAMLS}
    assert {"default.yaml", "cityscapes.yaml", "ade20k.yaml", "jetson_orin_trt_fp16.yaml", "multi_camera.yaml"} <= names
    assert {p.name for p in LAUNCH_FILES} >= {"bisenetformer.launch.py", "multi_camera.launch.py", "tuning.launch.py"}
    assert (REPO / "config" / "rviz" / "bisenetformer.rviz").is_file()


def test_default_yaml_equals_the_built_in_defaults() -> None:
    values = read_params_file(REPO / "config" / "node" / "default.yaml")
    documented = {name for name, spec in SPECS.items() if spec.group != "debug"}  # test-only knobs stay out
    assert set(values) == documented, set(values) ^ documented
    for name, value in values.items():
        assert value == SPECS[name].default, name


@pytest.mark.parametrize("path", NODE_YAMLS, ids=lambda p: p.name)
def test_node_yaml_against_parameter_table(path: Path) -> None:
    assert check_params_file(path) == []


def test_parameter_table_rejects_what_ros_would() -> None:
    assert check_values({"overlay_alpha": 1}) and "decimal point" in check_values({"overlay_alpha": 1})[0]
    assert "did you mean 'model'" in check_values({"modle": "x"})[0]
    assert "maximum" in check_values({"overlay_alpha": 1.5})[0]
    assert "not one of" in check_values({"backend": "caffe"})[0]
    assert check_values({"input_height": 512})  # width missing
    assert check_values({"cameras": ["a", "a"]})
    assert check_values({"cameras": ["bad name"]})
    assert check_values({"device": "tpu"})
    assert check_values({"cameras": ["front", "/rear"], "device": "cuda:1", "input_short_side": 512}) == []


def test_runtime_changes_follow_the_table() -> None:
    """The rules the node applies to set-parameters requests, without a node: types and ranges always; startup
    parameters never change; reload parameters only while no model is loaded; combinations."""
    current = {p.name: p.default for p in PARAMETERS}

    def review(changes: list[tuple[str, object]], configured: bool = True, declaring: bool = False) -> str | None:
        return review_changes(current, changes, declaring=declaring, configured=configured, state="active")[1]

    new, reason = review_changes(
        current, [("overlay_alpha", 0.25), ("use_sim_time", True)], declaring=False, configured=True, state="active"
    )
    assert reason is None and new["overlay_alpha"] == 0.25 and "use_sim_time" not in new
    assert current["overlay_alpha"] == 0.5  # the current values are left alone
    assert "maximum" in (review([("overlay_alpha", 1.5)]) or "")
    assert "cannot be unset" in (review([("overlay_alpha", None)]) or "")
    assert "read only at start-up" in (review([("autostart", False)]) or "")
    assert review([("autostart", True)]) is None  # the same value is no change
    reason = review([("backend", "onnxruntime")])
    assert reason is not None and "needs a reload" in reason and "while the node is active" in reason
    assert review([("backend", "onnxruntime")], configured=False) is None
    assert "input_width" in (review([("input_height", 480)], configured=False) or "")
    assert review([("input_height", 480)], configured=False, declaring=True) is None  # checked after declaring
    new, _ = review_changes(current, [("cameras", ("a", "b"))], declaring=False, configured=False, state="x")
    assert new["cameras"] == ["a", "b"]  # string arrays as lists, as the node compares them


@pytest.mark.parametrize("path", NODE_YAMLS, ids=lambda p: p.name)
def test_real_node_accepts_every_yaml(path: Path, ros_env: dict[str, str]) -> None:
    """The node class declares its parameters from the file exactly as ``--params-file`` delivers them."""
    import rclpy

    from bisenetformer_ros.ros.node import BiSeNetFormerNode

    ctx = rclpy.Context()
    rclpy.init(
        context=ctx,
        args=["bisenetformer_node", "--ros-args", "--params-file", str(path), "-r", "__node:=bisenetformer"],
    )
    try:
        node = BiSeNetFormerNode(context=ctx)  # declares everything; no model is loaded before configure
        try:
            declared = {n for n in node._parameters if n not in ("use_sim_time", "start_type_description_service")}
            assert declared == set(SPECS)
            for name, value in read_params_file(path).items():
                got = node.get_parameter(name).value
                assert (list(got) if isinstance(got, (list, tuple)) else got) == value, name
        finally:
            node.destroy_node()
    finally:
        ctx.try_shutdown()


def test_real_node_refuses_bad_values_at_startup(tmp_path: Path, ros_env: dict[str, str]) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("/**:\n  ros__parameters:\n    overlay_alpha: 1\n")
    assert check_params_file(bad)  # our checker says why ...
    res = subprocess.run(
        [str(BIN / "bisenetformer_node"), "--ros-args", "--params-file", str(bad)],
        capture_output=True,
        text=True,
        timeout=120,
        env=ros_env,
    )
    assert res.returncode == 2, res.stdout + res.stderr  # ... and the node refuses to start with a clear line
    assert "invalid parameter" in res.stderr and "overlay_alpha" in res.stderr
    res = subprocess.run(
        [str(BIN / "bisenetformer_node"), "--ros-args", "-p", "task:=depth"],
        capture_output=True,
        text=True,
        timeout=120,
        env=ros_env,
    )
    assert res.returncode == 2 and "task" in res.stderr and "semantic" in res.stderr


def test_help_lists_parameters_without_starting_ros() -> None:
    res = subprocess.run([str(BIN / "bisenetformer_node"), "--help"], capture_output=True, text=True, timeout=60)
    assert res.returncode == 0 and res.stdout.startswith("usage:")
    for p in PARAMETERS:  # every parameter a user sets; the test-only debug.* knobs stay out of --help
        assert (p.name in res.stdout) == (p.group != "debug"), p.name
    from bisenetformer_ros.topics import OUTPUT_CAMERA_INFO_TOPICS, OUTPUT_TOPICS

    for topic in [*OUTPUT_TOPICS.values(), *OUTPUT_CAMERA_INFO_TOPICS, "class_info", "label_info", "/compressed"]:
        assert topic in res.stdout, f"--help does not list output topic {topic}"
    code = "import sys; from bisenetformer_ros.ros.node import main; main(['--help']); print('rclpy' in sys.modules)"
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert res.stdout.strip().endswith("False")


def test_markdown_table_for_readme() -> None:
    res = subprocess.run(
        [sys.executable, "-m", "bisenetformer_ros.ros.parameters", "--markdown"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert res.returncode == 0
    assert res.stdout == markdown_table() + "\n"
    rows = [line for line in res.stdout.splitlines() if line.startswith("| `")]
    assert len(rows) == len(PARAMETERS)


# ------------------------------------------------------------------------------------------------------ launch files

NODE_INPUT_TOPICS = {"image", "image/compressed", "camera_info"}


def _launch_facts(path: Path) -> dict[str, set[str]]:
    """Config files, parameter names, remapped topics and executables a launch file refers to."""
    tree = ast.parse(path.read_text(), filename=str(path))
    facts: dict[str, set[str]] = {"files": set(), "params": set(), "remaps": set(), "executables": set()}
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and getattr(node.func, "attr", getattr(node.func, "id", "")) == "join":
            parts = [a.value for a in node.args if isinstance(a, ast.Constant) and isinstance(a.value, str)]
            if parts and parts[-1].endswith((".yaml", ".rviz")):
                facts["files"].add("/".join(parts))
        if isinstance(node, ast.Dict):  # parameter override dicts
            facts["params"] |= {k.value for k in node.keys if isinstance(k, ast.Constant)}
        if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == "OVERRIDES" for t in node.targets):
            facts["params"] |= {e.value for e in node.value.elts if isinstance(e, ast.Constant)}
        if (
            isinstance(node, ast.Subscript)
            and isinstance(node.ctx, ast.Store)
            and isinstance(node.value, ast.Name)
            and node.value.id == "overrides"
            and isinstance(node.slice, ast.Constant)
        ):
            facts["params"].add(node.slice.value)
        if isinstance(node, ast.keyword) and node.arg == "remappings" and isinstance(node.value, ast.List):
            for elt in node.value.elts:
                first = elt.elts[0] if isinstance(elt, ast.Tuple) else None
                if isinstance(first, ast.Constant):
                    facts["remaps"].add(first.value)
                elif isinstance(first, ast.Name):
                    facts["remaps"].add(f"<{first.id}>")
        if isinstance(node, ast.keyword) and node.arg == "executable" and isinstance(node.value, ast.Constant):
            facts["executables"].add(node.value.value)
    return facts


@pytest.mark.parametrize("path", LAUNCH_FILES, ids=lambda p: p.name)
def test_launch_file_compiles_and_refers_to_real_things(path: Path, tmp_path: Path) -> None:
    py_compile.compile(str(path), cfile=str(tmp_path / "x.pyc"), doraise=True)
    facts = _launch_facts(path)
    assert facts["files"], "a launch file should take its parameters from config/"
    for rel in facts["files"]:
        assert (REPO / rel).is_file(), f"{path.name} refers to missing {rel}"
    undeclared = facts["params"] - set(SPECS) - BUILTIN_PARAMETERS
    assert not undeclared, f"{path.name} sets undeclared parameters {undeclared}"
    for r in facts["remaps"]:
        assert r in NODE_INPUT_TOPICS or r == "<image_in>", f"{path.name} remaps unknown topic {r}"
    assert "bisenetformer_node" in facts["executables"]
    assert (REPO / "tools" / "ros2_entry" / "bisenetformer_node").is_file()
    setup_py = (REPO / "setup.py").read_text()
    assert "bisenetformer_node=bisenetformer_ros.ros.node:main" in setup_py


def test_launch_argument_defaults_point_at_valid_parameter_files() -> None:
    for path in LAUNCH_FILES:
        for rel in _launch_facts(path)["files"]:
            if rel.endswith(".yaml"):
                assert check_params_file(REPO / rel) == [], rel
            else:
                yaml.safe_load((REPO / rel).read_text())  # the RViz config is valid YAML


def test_launch_with_launch_ros(ros_env: dict[str, str], tmp_path: Path) -> None:
    """Start launch/bisenetformer.launch.py with launch_ros and see the node's topics appear (ROS machines only)."""
    pytest.importorskip("launch_ros", reason="launch_ros is not installed here (it ships with ROS 2, not on PyPI)")
    from ament_index_python.packages import PackageNotFoundError, get_package_share_directory

    try:
        share = Path(get_package_share_directory("bisenetformer_ros"))
    except PackageNotFoundError:
        pytest.skip("bisenetformer_ros is not installed in an ament prefix (colcon build + source install/setup.bash)")
    from tests.ros_node_harness import RosClient, latched_qos, save_tiny_model

    model = save_tiny_model(tmp_path / "tiny.pt")
    env = dict(ros_env, OMP_NUM_THREADS="1")
    proc = subprocess.Popen(
        [
            "ros2",
            "launch",
            str(share / "launch" / "bisenetformer.launch.py"),
            f"model:={model}",
            "device:=cpu",
            "namespace:=launch_test",
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    client = RosClient("launch_test_client")
    try:
        from bisenetformer_ros.msg import ClassTable

        info = client.subscribe(ClassTable, "/launch_test/class_info", latched_qos())
        assert client.wait(lambda: bool(info.snapshot()), 120), "the launched node never published class_info"
    finally:
        client.close()
        import signal

        os.killpg(proc.pid, signal.SIGINT)
        proc.wait(30)


def test_readme_parameter_table_is_generated_from_the_declarations() -> None:
    """The README's table is the node's own declarations (tools/param_table.py); a new or changed parameter that
    is not regenerated into the README fails here instead of drifting."""
    from bisenetformer_ros.ros.parameters import PARAMETERS, markdown_table

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    begin = "<!-- BEGIN generated: tools/param_table.py -->\n"
    start = readme.index(begin) + len(begin)
    block = readme[start : readme.index("<!-- END generated -->", start)]
    assert block.strip() == markdown_table([p for p in PARAMETERS if p.group != "debug"]).strip()


def test_readme_topic_table_is_generated_from_the_output_catalogue() -> None:
    """The README's topic table is the output catalogue (tools/param_table.py --topics): an output added to
    ``topics.OUTPUTS`` appears in the node, its parameters and the README together."""
    from bisenetformer_ros.topics import OUTPUTS, markdown_topic_table

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    begin = "<!-- BEGIN generated: tools/param_table.py --topics -->\n"
    start = readme.index(begin) + len(begin)
    block = readme[start : readme.index("<!-- END generated -->", start)]
    assert block.strip() == markdown_topic_table().strip()
    for out in OUTPUTS:
        assert f"| out | `{out.topic}` |" in block
