"""Acceptance items of the node issue that the per-feature test modules leave open.

* Launch files are *executed*, not only parsed: ``generate_launch_description()`` and its ``OpaqueFunction`` run
  against a small stand-in for the ``launch``/``launch_ros`` API (neither is on PyPI), with the launch arguments'
  defaults and with every override set. The ``Node`` actions they create must name existing parameter files that
  validate, parameter overrides that are declared *and* of the declared type (as launch_ros types them), real input
  topics, and an existing RViz config. The AST checks in test_ros_params.py cannot see values computed at launch time.
* Through the node in its own process (real DDS): a model with more than 255 classes publishes ``semantic`` as
  mono16 with ids above 255; runtime-tunable parameters the other modules do not exercise (enabled outputs,
  post-processing thresholds) apply to the next frame; every reload-needing parameter is refused while active, with
  a reason that names the fix, and the refused value is not applied.
"""

from __future__ import annotations

import importlib.util
import sys
import types
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

from bisenetformer_ros.ros.parameters import BUILTIN_PARAMETERS, SPECS, check_params_file
from tests.ros_node_harness import (
    NodeProcess,
    RosClient,
    check_panoptic,
    image_msg,
    label_array,
    reliable_qos,
    running_node,
    stamp_key,
)

REPO = Path(__file__).resolve().parents[1]
LAUNCH_FILES = sorted((REPO / "launch").glob("*.launch.py"))
NODE_INPUT_TOPICS = {"image", "image/compressed", "camera_info"}

# --------------------------------------------------------------------------------------- launch files, executed


@dataclass
class FakeNode:
    """What a launch_ros ``Node`` action was created with."""

    kwargs: dict[str, Any] = field(default_factory=dict)


class FakeLaunchConfiguration:
    """``LaunchConfiguration(name).perform(context)`` reads the context's launch arguments, as launch does."""

    def __init__(self, name: str) -> None:
        self.name = name

    def perform(self, context: dict[str, str]) -> str:
        return context[self.name]


@dataclass
class FakeDeclareLaunchArgument:
    name: str
    default_value: str = ""
    description: str = ""


@dataclass
class FakeOpaqueFunction:
    function: Callable[..., list[Any]]


def _stub_modules() -> dict[str, types.ModuleType]:
    """Stand-ins for launch, launch.actions, launch.substitutions, launch_ros.actions and ament_index_python."""
    launch = types.ModuleType("launch")
    launch.LaunchDescription = lambda entities: list(entities)  # type: ignore[attr-defined]
    actions = types.ModuleType("launch.actions")
    actions.DeclareLaunchArgument = FakeDeclareLaunchArgument  # type: ignore[attr-defined]
    actions.OpaqueFunction = FakeOpaqueFunction  # type: ignore[attr-defined]
    subs = types.ModuleType("launch.substitutions")
    subs.LaunchConfiguration = FakeLaunchConfiguration  # type: ignore[attr-defined]
    launch.actions, launch.substitutions = actions, subs  # type: ignore[attr-defined]
    lros = types.ModuleType("launch_ros")
    lros_actions = types.ModuleType("launch_ros.actions")
    lros_actions.Node = lambda **kw: FakeNode(kw)  # type: ignore[attr-defined]
    lros.actions = lros_actions  # type: ignore[attr-defined]
    ament = types.ModuleType("ament_index_python")
    ament_pkgs = types.ModuleType("ament_index_python.packages")

    def share(package: str) -> str:
        assert package == "bisenetformer_ros", package
        return str(REPO)  # setup.py installs config/ and launch/ under share/<pkg> with the repository's layout

    ament_pkgs.get_package_share_directory = share  # type: ignore[attr-defined]
    ament.packages = ament_pkgs  # type: ignore[attr-defined]
    return {
        "launch": launch,
        "launch.actions": actions,
        "launch.substitutions": subs,
        "launch_ros": lros,
        "launch_ros.actions": lros_actions,
        "ament_index_python": ament,
        "ament_index_python.packages": ament_pkgs,
    }


def _run_launch_file(path: Path, overrides: dict[str, str]) -> tuple[list[FakeDeclareLaunchArgument], list[FakeNode]]:
    """Execute ``path`` like ``ros2 launch path name:=value ...`` up to the creation of its Node actions."""
    saved = {name: sys.modules.get(name) for name in _stub_modules()}
    sys.modules.update(_stub_modules())
    try:
        spec = importlib.util.spec_from_file_location(f"launch_under_test_{path.stem.replace('.', '_')}", path)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        entities = module.generate_launch_description()
    finally:
        for name, mod in saved.items():
            if mod is None:
                sys.modules.pop(name, None)
            else:
                sys.modules[name] = mod
    args = [e for e in entities if isinstance(e, FakeDeclareLaunchArgument)]
    context = {a.name: a.default_value for a in args}
    unknown = set(overrides) - set(context)
    assert not unknown, f"{path.name} has no launch arguments {unknown}"
    context.update(overrides)
    nodes: list[FakeNode] = []
    for e in entities:
        if isinstance(e, FakeOpaqueFunction):
            nodes += [n for n in e.function(context) if isinstance(n, FakeNode)]
    return args, nodes


def _launch_ros_value(value: Any) -> Any:
    """The typed value launch_ros gives the node for a parameter dict entry: strings are read as YAML."""
    if isinstance(value, str):
        return yaml.safe_load(value) if value else value
    return value


#: A value for every override-style launch argument, to run each launch file's override branch as well.
OVERRIDE_VALUES = {
    "model": "/models/m.pt",
    "device": "cpu",
    "backend": "onnxruntime",
    "precision": "fp16",
    "input_transport": "compressed",
    "cameras": "front, left,right",
    "image": "/cam/image_raw",
    "camera_info": "/cam/camera_info",
    "namespace": "seg",
    "use_sim_time": "true",
    "log_level": "debug",
    "autostart": "false",
    "image_topics": "/front_cam/image_raw, /left_cam/image_raw,/right_cam/image_raw",
    "camera_info_topics": "/front_cam/camera_info,/left_cam/camera_info,/right_cam/camera_info",
}

#: Launch arguments every launch file offers, as ROS users expect them.
COMMON_LAUNCH_ARGUMENTS = {"namespace", "use_sim_time", "log_level", "autostart", "params_file"}


@pytest.mark.parametrize("with_overrides", [False, True], ids=["defaults", "overrides"])
@pytest.mark.parametrize("path", LAUNCH_FILES, ids=lambda p: p.name)
def test_launch_file_runs_and_its_nodes_are_valid(path: Path, with_overrides: bool) -> None:
    declared = {a.name for a in _run_launch_file(path, {})[0]}
    overrides = {k: v for k, v in OVERRIDE_VALUES.items() if k in declared} if with_overrides else {}
    _, nodes = _run_launch_file(path, overrides)
    ours = [n.kwargs for n in nodes if n.kwargs.get("executable") == "bisenetformer_node"]
    assert len(ours) == 1, f"{path.name} should start exactly one bisenetformer_node"
    node = ours[0]
    assert node["package"] == "bisenetformer_ros"
    merged: dict[str, Any] = {}
    files = [p for p in node["parameters"] if isinstance(p, str)]
    assert files, f"{path.name}: the node takes no parameter file"
    for f in files:
        assert Path(f).is_file(), f"{path.name}: missing parameter file {f}"
        assert check_params_file(f) == [], f
    for entry in node["parameters"]:
        if isinstance(entry, dict):
            for name, value in entry.items():
                typed = _launch_ros_value(value)
                if name in BUILTIN_PARAMETERS:  # use_sim_time: every rclpy node's own parameter, a bool
                    assert isinstance(typed, bool), (name, typed)
                    merged[name] = typed
                    continue
                assert name in SPECS, f"{path.name} sets undeclared parameter '{name}'"
                reason = SPECS[name].check(list(typed) if isinstance(typed, tuple) else typed)
                assert reason is None, f"{path.name}: {reason}"
                merged[name] = typed
    for name, value in overrides.items():  # an override argument reaches the parameter of the same name
        if name in SPECS or name in BUILTIN_PARAMETERS:
            kind = SPECS[name].type if name in SPECS else "bool"
            want: Any = value
            if kind == "string_array":
                want = [c.strip() for c in value.split(",")]
            elif kind == "bool":
                want = yaml.safe_load(value)
            assert merged.get(name) == want, (name, merged.get(name))
    assert merged.get("use_sim_time") is (overrides.get("use_sim_time") == "true"), "use_sim_time must reach the node"
    args = node.get("arguments", [])
    level = overrides.get("log_level", "info")
    assert args[args.index("--log-level") + 1] == level, args  # log_level reaches the node's --ros-args
    cameras = [c.strip() for c in merged.get("cameras", [])]
    for src, _dst in node.get("remappings", []):
        base = src.rsplit("/", 1)[-1] if src.rsplit("/", 1)[0] in cameras else src
        assert base in NODE_INPUT_TOPICS, f"{path.name} remaps '{src}', which the node does not subscribe"
    if with_overrides and "image_topics" in overrides:  # multi-camera: one image and one info remap per camera
        remaps = dict(node["remappings"])
        assert remaps["front/image"] == "/front_cam/image_raw" and remaps["right/image"] == "/right_cam/image_raw"
        assert remaps["left/camera_info"] == "/left_cam/camera_info"
    if with_overrides and "input_transport" in overrides:
        assert any(src == "image/compressed" for src, _ in node["remappings"])
    for other in nodes:
        args = other.kwargs.get("arguments", [])
        if other.kwargs.get("executable") == "rviz2":
            assert path.name == "tuning.launch.py", "RViz belongs to the tuning launch file only"
        if "-d" in args:
            rviz = Path(args[args.index("-d") + 1])
            assert rviz.is_file() and rviz.suffix == ".rviz", rviz
            assert "overlay" in rviz.read_text() and "panoptic/color" in rviz.read_text()


# --------------------------------------------------------------------------------- the node: >255 classes, params

NS = "/accept"
H, W = 36, 52
BIG_CLASS = 299  # every query is pushed to this class: ids above 255 must survive as mono16


def _big_table() -> Any:
    from bisenetformer_ros.data.classes import ClassTable

    k = BIG_CLASS + 1
    return ClassTable(
        "many_classes",
        tuple(f"class_{i}" for i in range(k)),
        tuple(((37 * i) % 256, (91 * i) % 256, (13 * i) % 256) for i in range(k)),
        tuple(i % 2 == 1 and i != BIG_CLASS for i in range(k)),  # stuff: the queries merge into one segment
        ignore_label=65535,  # 255 is a class id here
    )


def _save_big_model(path: Path) -> Path:
    """The harness's tiny architecture with 300 classes, biased so that every query predicts class 299."""
    import torch

    from bisenetformer_ros.model import build_model, save_model
    from tests.inference_models import tiny_config

    table = _big_table()
    torch.manual_seed(0)
    cfg = tiny_config(table.num_classes)
    model = build_model(cfg)
    with torch.no_grad():
        heads = [m for name, m in model.named_modules() if name.endswith("class_embed")]
        assert heads
        for head in heads:
            head.bias[BIG_CLASS] += 50.0
    save_model(path, model, cfg, table)
    return path


@pytest.fixture(scope="module")
def setup(ros_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[NodeProcess, RosClient]]:
    tmp = tmp_path_factory.mktemp("accept")
    model = _save_big_model(tmp / "many_classes.pt")
    params = {
        "model": str(model),
        "device": "cpu",
        "num_threads": 1,
        "input_qos": "reliable",
        "output_qos": "reliable",
        "object_mask_threshold": 0.0,  # random weights: keep every query, give it every pixel it wins
        "mask_threshold": 0.0,
        "overlap_threshold": 0.0,
        "diagnostics.period": 0.25,
        "max_age": 5.0,
        "warmup": False,
    }
    with running_node(
        ros_env, tmp, params, namespace=NS, client_name="acceptance_test_client", forbid_traceback=True
    ) as running:
        yield running


@pytest.fixture(scope="module")
def io(setup: tuple[NodeProcess, RosClient]) -> tuple[Any, dict[str, Any]]:
    from sensor_msgs.msg import Image

    from bisenetformer_ros.msg import PanopticSegmentation

    _, client = setup
    subs = {
        "semantic": client.subscribe(Image, f"{NS}/semantic", reliable_qos()),
        "overlay": client.subscribe(Image, f"{NS}/overlay", reliable_qos()),
        "panoptic": client.subscribe(PanopticSegmentation, f"{NS}/panoptic", reliable_qos()),
    }
    pub = client.publisher(Image, f"{NS}/image", reliable_qos())
    assert client.wait(lambda: pub.get_subscription_count() > 0, 20)
    return pub, subs


def _frame(client: RosClient, pub: Any, subs: dict[str, Any], need: tuple[str, ...], seed: int) -> tuple[int, int]:
    """Publish one frame until every topic in ``need`` has its outputs; the frame's stamp key."""
    rgb = np.random.default_rng(seed).integers(0, 256, (H, W, 3), dtype=np.uint8)
    sent: list[tuple[int, int]] = []

    def done() -> tuple[int, int] | None:
        return next((k for k in sent if all(k in subs[t].by_stamp() for t in need)), None)

    for _ in range(5):
        stamp = client.now_stamp()
        sent.append((int(stamp.sec), int(stamp.nanosec)))
        pub.publish(image_msg(rgb, "rgb8", stamp, f"accept_{seed}"))
        if client.wait(lambda: done() is not None, 5):
            break
    key = done()
    assert key is not None, f"no {need} output"
    return key


def test_more_than_255_classes_publish_mono16(setup, io) -> None:
    _, client = setup
    pub, subs = io
    key = _frame(client, pub, subs, ("semantic", "panoptic"), 1)
    sem = subs["semantic"].by_stamp()[key]
    assert sem.encoding == "mono16" and sem.step == 2 * W and (sem.height, sem.width) == (H, W)
    labels = label_array(sem)
    assert int(labels.max()) == BIG_CLASS  # a value that mono8 could not hold
    pan = subs["panoptic"].by_stamp()[key]
    check_panoptic(pan, _big_table(), (H, W))
    assert {int(s.class_id) for s in pan.segments} == {BIG_CLASS}


def test_enabled_outputs_and_thresholds_apply_to_the_next_frame(setup, io) -> None:
    node, client = setup
    pub, subs = io
    fqn = node.fqn
    # Disable one output: the next frame has semantic but no overlay; no restart, same process.
    [res] = client.set_parameters(fqn, {"outputs.overlay": False})
    assert res.successful, res.reason
    n_overlay = len(subs["overlay"].snapshot())
    key = _frame(client, pub, subs, ("semantic",), 2)
    client.wait(lambda: False, 0.5)  # time for a late overlay to show up, if the node still sent one
    assert key not in subs["overlay"].by_stamp() and len(subs["overlay"].snapshot()) == n_overlay
    [res] = client.set_parameters(fqn, {"outputs.overlay": True})
    assert res.successful, res.reason
    _frame(client, pub, subs, ("semantic", "overlay"), 3)
    # A post-processing threshold: no query scores above 1.0, so the next panoptic frame has no segment at all.
    [res] = client.set_parameters(fqn, {"object_mask_threshold": 1.0})
    assert res.successful, res.reason
    key = _frame(client, pub, subs, ("panoptic",), 4)
    pan = subs["panoptic"].by_stamp()[key]
    assert len(pan.segments) == 0 and int(label_array(pan.segment_ids).max()) == 0
    [res] = client.set_parameters(fqn, {"object_mask_threshold": 0.0})
    assert res.successful, res.reason
    key = _frame(client, pub, subs, ("panoptic",), 5)
    assert len(subs["panoptic"].by_stamp()[key].segments) > 0
    assert stamp_key(subs["panoptic"].by_stamp()[key].header) == key
    assert node.pid == node.proc.pid and node.alive()  # the same process throughout: no restart


RELOAD_CHANGES: dict[str, Any] = {
    "model": "/tmp/another_model.pt",
    "backend": "onnxruntime",
    "device": "cuda",
    "precision": "fp16",
    "input_short_side": 256,
    "max_batch_size": 2,
    "input_transport": "compressed",
    "cameras": ["a", "b"],
    "output_qos": "sensor_data",
}


@pytest.mark.parametrize("name", list(RELOAD_CHANGES))
def test_reload_parameters_refused_while_active(setup, name: str) -> None:
    node, client = setup
    assert not SPECS[name].tunable
    before = client.get_parameter(node.fqn, name)
    [res] = client.set_parameters(node.fqn, {name: RELOAD_CHANGES[name]})
    assert not res.successful, name
    assert name in res.reason and "active" in res.reason and "configure" in res.reason, res.reason
    after = client.get_parameter(node.fqn, name)
    assert (list(after) if isinstance(after, (list, tuple)) else after) == (
        list(before) if isinstance(before, (list, tuple)) else before
    )


@pytest.mark.parametrize("path", LAUNCH_FILES, ids=lambda p: p.name)
def test_launch_files_offer_the_arguments_ros_users_expect(path: Path) -> None:
    """namespace, use_sim_time, log_level, autostart and params_file everywhere, each with a description; the
    multi-camera file also remaps each camera's topics; a wrong number of remaps is refused, not guessed."""
    declared = {a.name: a for a in _run_launch_file(path, {})[0]}
    missing = COMMON_LAUNCH_ARGUMENTS - set(declared)
    assert not missing, f"{path.name} lacks launch arguments {missing}"
    assert all(a.description for a in declared.values()), path.name
    if path.name == "multi_camera.launch.py":
        assert {"cameras", "image_topics", "camera_info_topics"} <= set(declared)
        with pytest.raises(ValueError, match="one topic per camera"):
            _run_launch_file(path, {"cameras": "a,b", "image_topics": "/only_one"})
    with pytest.raises(ValueError, match="true or false"):
        _run_launch_file(path, {"use_sim_time": "maybe"})


def test_package_xml_keeps_rviz_off_the_robot() -> None:
    from catkin_pkg.package import parse_package

    pkg = parse_package(str(REPO / "package.xml"))
    deps = {d.name for d in pkg.build_depends + pkg.exec_depends + pkg.buildtool_depends + pkg.test_depends}
    assert not {d for d in deps if d.startswith("rviz")}, "a headless robot must not pull RViz in"
    assert "vision_msgs" in {d.name for d in pkg.exec_depends}
