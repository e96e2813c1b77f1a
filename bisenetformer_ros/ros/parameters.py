"""Every parameter of ``bisenetformer_node`` in one table: type, default, description, range, runtime behaviour.

The table is the single source for: the node's declarations (with ROS descriptors, so ``ros2 param describe`` shows
ranges), validation of runtime changes, ``bisenetformer_node --help``, the README table
(``python -m bisenetformer_ros.ros.parameters --markdown``) and the test that checks every YAML in ``config/node``.

Runtime behaviour of a parameter:

* ``tunable``: may change while the node runs; the worker applies it to the next frame.
* otherwise it is read at ``configure`` (model, backend, topics, QoS): a change is refused while a model is loaded
  (inactive or active) with a reason that names the fix (``cleanup``, set, ``configure``), and accepted when
  unconfigured.
* ``startup``: read once when the process starts (``autostart``).

This module imports no ROS package at import time, so the table can be used (README, YAML checks) without ROS.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bisenetformer_ros.backend_choice import BACKEND_CHOICES, DEFAULT_BACKEND
from bisenetformer_ros.topics import (
    CLASS_INFO_TOPIC,
    LABEL_INFO_TOPIC,
    OUTPUT_CAMERA_INFO_TOPICS,
    OUTPUTS,
)

#: Parameter types, named as in ROS (rcl_interfaces/ParameterType) in lower case.
TYPES: tuple[str, ...] = ("bool", "integer", "double", "string", "string_array")

_DEVICE_RE = re.compile(r"^(auto|cpu|cuda|gpu|cuda:\d+)$")


@dataclass(frozen=True)
class ParameterSpec:
    """One declared parameter. ``minimum``/``maximum`` bound numbers, ``choices`` strings."""

    name: str
    type: str
    default: Any
    description: str
    group: str
    minimum: float | None = None
    maximum: float | None = None
    choices: tuple[str, ...] | None = None
    tunable: bool = False
    startup: bool = False

    @property
    def when(self) -> str:
        """When a change takes effect, for docs and refusal messages."""
        if self.startup:
            return "startup"
        return "next frame" if self.tunable else "configure"

    def range_text(self) -> str:
        if self.choices:
            return " | ".join(self.choices)
        if self.minimum is not None or self.maximum is not None:
            lo = "" if self.minimum is None else _fmt(self.minimum)
            hi = "" if self.maximum is None else _fmt(self.maximum)
            return f"{lo} .. {hi}"
        return ""

    def check(self, value: Any) -> str | None:
        """None if ``value`` is valid for this parameter, else the reason (names the parameter and the range)."""
        ok_type = {
            "bool": lambda v: isinstance(v, bool),
            "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
            "double": lambda v: isinstance(v, float),
            "string": lambda v: isinstance(v, str),
            "string_array": lambda v: isinstance(v, (list, tuple)) and all(isinstance(x, str) for x in v),
        }[self.type]
        if not ok_type(value):
            hint = (
                " (write it with a decimal point, e.g. 1.0)" if self.type == "double" and isinstance(value, int) else ""
            )
            return f"parameter '{self.name}' must be of type {self.type}, got {value!r}{hint}"
        if self.type in ("integer", "double"):
            if self.minimum is not None and value < self.minimum:
                return f"parameter '{self.name}' = {value} is below the minimum {_fmt(self.minimum)}"
            if self.maximum is not None and value > self.maximum:
                return f"parameter '{self.name}' = {value} is above the maximum {_fmt(self.maximum)}"
        if self.choices is not None and value not in self.choices:
            return f"parameter '{self.name}' = {value!r} is not one of: {', '.join(self.choices)}"
        extra = _EXTRA_CHECKS.get(self.name)
        return extra(value) if extra else None


def _fmt(v: float) -> str:
    return str(int(v)) if float(v).is_integer() and abs(v) < 1e15 else repr(float(v))


def _check_device(v: str) -> str | None:
    if not _DEVICE_RE.match(v.strip().lower()):
        return f"parameter 'device' = {v!r} is not auto, cpu, cuda or cuda:N"
    return None


def _check_cameras(v: list[str]) -> str | None:
    if not v:
        return "parameter 'cameras' must list at least one namespace ('' = the node's own namespace)"
    names = [x.strip("/") for x in v]
    if len(set(names)) != len(names):
        return f"parameter 'cameras' lists a namespace twice: {list(v)}"
    bad = [x for x in v if x and not re.fullmatch(r"/?[A-Za-z_~{][A-Za-z0-9_/{}~]*", x)]
    if bad:
        return f"parameter 'cameras' has invalid ROS namespaces: {bad}"
    return None


def _check_mask_classes(v: list[str]) -> str | None:
    if [x for x in v if x.strip()] and any(not x.strip() for x in v):
        return f"parameter 'mask_classes' mixes class names with empty entries: {list(v)} ([''] alone = none)"
    return None


def mask_class_entries(v: Sequence[str]) -> list[str]:
    """The class entries of a ``mask_classes`` value ([''] and [] = none)."""
    return [x.strip() for x in v if x.strip()]


_EXTRA_CHECKS = {"device": _check_device, "cameras": _check_cameras, "mask_classes": _check_mask_classes}


def _specs() -> list[ParameterSpec]:
    s: list[ParameterSpec] = []
    add = s.append
    g = "model"
    add(
        ParameterSpec(
            "model",
            "string",
            "",
            "Model file: a .pt checkpoint, an .onnx export or a TensorRT engine, or the name of a published model "
            "fetched with `bisenetformer pretrained get` (e.g. bisenetformer-s-ade); empty = the embedded default "
            "model",
            g,
        )
    )
    add(
        ParameterSpec(
            "backend",
            "string",
            DEFAULT_BACKEND,
            "Inference backend (auto: ONNX Runtime on the CPU, its export cached; PyTorch on CUDA)",
            g,
            choices=BACKEND_CHOICES,
        )
    )
    add(ParameterSpec("device", "string", "auto", "auto (first CUDA GPU, else CPU), cpu, cuda or cuda:N", g))
    add(
        ParameterSpec(
            "precision",
            "string",
            "fp32",
            "Numeric precision (the backend refuses what the device cannot run)",
            g,
            choices=("fp32", "fp16", "bf16", "int8"),
        )
    )
    add(
        ParameterSpec(
            "expected_classes",
            "string",
            "",
            "Name of the class table the model must have been trained "
            "for (e.g. cityscapes); empty = accept the model's own",
            g,
        )
    )
    add(
        ParameterSpec(
            "input_height",
            "integer",
            0,
            "Network input height (with input_width); 0 = the size recorded in the model file (camera size if it "
            "records none)",
            g,
            minimum=0,
            maximum=8192,
        )
    )
    add(
        ParameterSpec(
            "input_width",
            "integer",
            0,
            "Network input width (with input_height); 0 = the size recorded in the model file (camera size if it "
            "records none)",
            g,
            minimum=0,
            maximum=8192,
        )
    )
    add(
        ParameterSpec(
            "input_short_side",
            "integer",
            0,
            "Resize the short image side to this many pixels keeping the aspect ratio (instead of "
            "input_height/width); 0 = the size recorded in the model file (camera size if it records none)",
            g,
            minimum=0,
            maximum=8192,
        )
    )
    add(
        ParameterSpec(
            "max_batch_size",
            "integer",
            4,
            "Most frames (one per camera) sent through the network in one call",
            g,
            minimum=1,
            maximum=64,
        )
    )
    add(
        ParameterSpec(
            "warmup",
            "bool",
            True,
            "Run the pipeline on blank frames at configure so the first camera frame is not slow",
            g,
        )
    )
    add(
        ParameterSpec(
            "num_threads",
            "integer",
            0,
            "CPU threads for torch (0 = torch's default); above 1 the semantic and panoptic merges run side by side",
            g,
            minimum=0,
            maximum=256,
        )
    )
    add(ParameterSpec("torch_compile", "bool", False, "torch backend: compile the model with torch.compile", g))
    add(
        ParameterSpec("engine_cache_dir", "string", "", "tensorrt backend: engine cache directory (empty = default)", g)
    )
    add(
        ParameterSpec(
            "calibration_images",
            "string",
            "",
            "precision int8: folder of representative camera frames to calibrate on once (ONNX Runtime on the CPU, "
            "TensorRT; the result is cached); empty = the synthetic training scenes for models of the synthetic "
            "label space, any other model then refuses int8",
            g,
        )
    )

    g = "input"
    add(
        ParameterSpec(
            "cameras",
            "string_array",
            [""],
            "Camera namespaces; each gets <ns>/image (or "
            "<ns>/image/compressed), <ns>/camera_info and its own outputs; '' = the node's namespace",
            g,
        )
    )
    add(
        ParameterSpec(
            "input_transport",
            "string",
            "raw",
            "raw: sensor_msgs/Image on <ns>/image; compressed: "
            "sensor_msgs/CompressedImage (jpeg/png) on <ns>/image/compressed",
            g,
            choices=("raw", "compressed"),
        )
    )
    add(
        ParameterSpec(
            "input_qos",
            "string",
            "sensor_data",
            "QoS of image subscriptions: sensor_data (best effort) or reliable",
            g,
            choices=("sensor_data", "reliable"),
        )
    )
    add(
        ParameterSpec(
            "input_qos_depth", "integer", 1, "History depth of image subscriptions", g, minimum=1, maximum=1000
        )
    )
    add(
        ParameterSpec(
            "camera_info_passthrough",
            "bool",
            True,
            "Republish <ns>/camera_info with each output frame's header, scaled to the output size, where "
            "image_transport looks for the camera info of the output images: <ns>/semantic/camera_info (for "
            "semantic/color, semantic/confidence) and <ns>/panoptic/camera_info (for panoptic/color); the outputs "
            "directly in <ns> (semantic, overlay, class_mask) pair with the input <ns>/camera_info",
            g,
        )
    )
    add(
        ParameterSpec(
            "max_image_pixels",
            "integer",
            8192 * 8192,
            "Larger images are rejected as malformed",
            g,
            minimum=1,
            maximum=2**31 - 1,
            tunable=True,
        )
    )
    add(
        ParameterSpec(
            "image_16bit_scaling",
            "string",
            "shift",
            "16-bit images to 8 bits: shift (top byte) or "
            "minmax (stretch each frame's range, for 10/12-bit or thermal data)",
            g,
            choices=("shift", "minmax"),
            tunable=True,
        )
    )

    g = "output"
    for out in OUTPUTS:
        add(
            ParameterSpec(
                f"outputs.{out.name}", "bool", True, f"Enable `{out.name}`: {out.description}", g, tunable=True
            )
        )
    add(
        ParameterSpec(
            "lazy",
            "bool",
            True,
            "Publish an enabled output only while it has subscribers; with none on any output no inference runs",
            g,
            tunable=True,
        )
    )
    add(
        ParameterSpec(
            "task",
            "string",
            "all",
            "Post-processing to run: all, semantic or panoptic (outputs of the other task are not published)",
            g,
            choices=("all", "semantic", "panoptic"),
            tunable=True,
        )
    )
    add(
        ParameterSpec(
            "output_resolution",
            "string",
            "camera",
            "Outputs at the camera resolution, or at the network "
            "input resolution (cheaper; camera_info is scaled to match)",
            g,
            choices=("camera", "network"),
            tunable=True,
        )
    )
    add(
        ParameterSpec(
            "output_qos",
            "string",
            "reliable",
            "QoS of the outputs: reliable (REP 2003; serves reliable and best-effort subscribers such as RViz) or "
            "sensor_data (best effort: only best-effort subscribers receive it; an incompatible subscriber is "
            "reported in the log and as a WARN in /diagnostics)",
            g,
            choices=("sensor_data", "reliable"),
        )
    )
    add(ParameterSpec("output_qos_depth", "integer", 5, "History depth of outputs", g, minimum=1, maximum=1000))
    add(
        ParameterSpec(
            "overlay_alpha",
            "double",
            0.5,
            "Weight of the class colours in `overlay`",
            g,
            minimum=0.0,
            maximum=1.0,
            tunable=True,
        )
    )
    add(ParameterSpec("overlay_instance_edges", "bool", True, "Outline thing instances in `overlay`", g, tunable=True))
    add(
        ParameterSpec(
            "compressed_format",
            "string",
            "jpeg",
            "Codec of the colour images on `<output>/compressed` (CompressedImage, published only to subscribers, "
            "like image_transport's compressed plugin); label, mask and confidence images are always lossless png",
            g,
            choices=("jpeg", "png"),
            tunable=True,
        )
    )
    add(
        ParameterSpec(
            "compressed_jpeg_quality",
            "integer",
            80,
            "JPEG quality of `<output>/compressed` colour images",
            g,
            minimum=1,
            maximum=100,
            tunable=True,
        )
    )
    add(
        ParameterSpec(
            "mask_classes",
            "string_array",
            [""],
            "Classes marked in `class_mask`: names of the model's class table (case-insensitive) or class ids, "
            "checked against the loaded model (unknown names are refused); [''] = none",
            g,
            tunable=True,
        )
    )
    add(
        ParameterSpec(
            "detection_min_score",
            "double",
            0.0,
            "Thing segments below this score are left out of `detections`",
            g,
            minimum=0.0,
            maximum=1.0,
            tunable=True,
        )
    )

    g = "post-processing"
    add(
        ParameterSpec(
            "object_mask_threshold",
            "double",
            0.8,
            "Panoptic: minimum class score of a query to become a segment",
            g,
            minimum=0.0,
            maximum=1.0,
            tunable=True,
        )
    )
    add(
        ParameterSpec(
            "overlap_threshold",
            "double",
            0.8,
            "Panoptic: drop a segment that keeps less than this fraction of its mask after overlaps",
            g,
            minimum=0.0,
            maximum=1.0,
            tunable=True,
        )
    )
    add(
        ParameterSpec(
            "mask_threshold",
            "double",
            0.5,
            "Mask probability above which a pixel belongs to a query",
            g,
            minimum=0.0,
            maximum=1.0,
            tunable=True,
        )
    )
    add(
        ParameterSpec(
            "label_stride",
            "integer",
            1,
            "Merge query masks on a grid this many times coarser than the output, then nearest-upsample the label "
            "maps. 1 = exact labels at the output resolution (the cell merge: per-pixel work only along boundaries, "
            "2-4 % of the default CPU network's time for typical frames at 2 threads, 4-8 % with every query "
            "kept); 4 / 8 save a few more milliseconds and change boundary pixels",
            g,
            minimum=1,
            maximum=8,
            tunable=True,
        )
    )

    g = "tracking"
    add(
        ParameterSpec(
            "tracking.enable",
            "bool",
            True,
            "Track panoptic thing segments per camera: `PanopticSegment.track_id` (and the `detections` id) stays "
            "the same for the same object across frames; false = track_id 0 (per-frame segment ids only). "
            "Turning it off forgets the tracks",
            g,
            tunable=True,
        )
    )
    add(
        ParameterSpec(
            "tracking.min_iou",
            "double",
            0.25,
            "Least mask IoU between a track's predicted mask and a segment of the same class for a match",
            g,
            minimum=0.01,
            maximum=1.0,
            tunable=True,
        )
    )
    add(
        ParameterSpec(
            "tracking.max_lost_frames",
            "integer",
            10,
            "Frames a track that is not seen is remembered (an object hidden this long keeps its id; one that "
            "returns later gets a new id); 0 = forget at once",
            g,
            minimum=0,
            maximum=10000,
            tunable=True,
        )
    )
    add(
        ParameterSpec(
            "tracking.min_age",
            "integer",
            1,
            "Frames in a row a new object must be seen before its track id is published (track_id 0 until then); "
            "1 = at once",
            g,
            minimum=1,
            maximum=1000,
            tunable=True,
        )
    )
    add(
        ParameterSpec(
            "tracking.centroid_gate",
            "double",
            0.75,
            "Second association stage for what the masks leave (objects re-appearing from behind an occluder): "
            "same class, centroid within this many object sizes of the predicted position; 0 = masks only",
            g,
            minimum=0.0,
            maximum=10.0,
            tunable=True,
        )
    )
    add(
        ParameterSpec(
            "tracking.color_by_track",
            "bool",
            True,
            "Colour thing segments in `panoptic/color` by track id (an object keeps its colour while tracked; "
            "untracked ones get their class colour) instead of by per-frame segment id",
            g,
            tunable=True,
        )
    )
    add(
        ParameterSpec(
            "tracking.reset",
            "bool",
            False,
            "Set to true to forget every camera's tracks at the next frame (the node sets it back to false); "
            "tracks are also reset when a camera's stamps jump back in time (bag loop) and on lifecycle cleanup; "
            "ids are never reused while the node runs",
            g,
            tunable=True,
        )
    )

    g = "latency"
    add(
        ParameterSpec(
            "max_age",
            "double",
            0.5,
            "Frames older than this (seconds) when the worker reaches them are dropped and counted; 0 = keep all",
            g,
            minimum=0.0,
            maximum=3600.0,
            tunable=True,
        )
    )
    add(
        ParameterSpec(
            "max_age_reference",
            "string",
            "receipt",
            "Age measured from the node's receipt of the frame "
            "(robust to clock offsets) or from header.stamp (needs synchronised clocks)",
            g,
            choices=("receipt", "stamp"),
            tunable=True,
        )
    )

    g = "diagnostics"
    add(
        ParameterSpec(
            "diagnostics.period",
            "double",
            1.0,
            "Seconds between /diagnostics messages",
            g,
            minimum=0.05,
            maximum=3600.0,
        )
    )
    add(
        ParameterSpec(
            "diagnostics.window",
            "double",
            10.0,
            "Seconds of history behind rates and latency percentiles",
            g,
            minimum=0.5,
            maximum=3600.0,
            tunable=True,
        )
    )
    add(
        ParameterSpec(
            "diagnostics.warn_fps",
            "double",
            0.0,
            "WARN when a camera that is sending frames gets fewer output frames per second than this (0 = off)",
            g,
            minimum=0.0,
            maximum=10000.0,
            tunable=True,
        )
    )
    add(
        ParameterSpec(
            "diagnostics.error_fps",
            "double",
            0.0,
            "ERROR below this output rate (0 = off)",
            g,
            minimum=0.0,
            maximum=10000.0,
            tunable=True,
        )
    )

    g = "lifecycle"
    add(
        ParameterSpec(
            "autostart",
            "bool",
            True,
            "Configure and activate at start-up, so the node behaves like a "
            "plain node; false = wait for lifecycle transitions",
            g,
            startup=True,
        )
    )
    add(
        ParameterSpec(
            "exit_on_autostart_failure",
            "bool",
            True,
            "With autostart: a failed configure (missing or corrupt model, wrong expected_classes, no GPU for "
            "device cuda) ends the process with exit code 2 and one error line, so a launch file can respawn or stop "
            "on it; false = stay unconfigured and wait for a lifecycle manager to configure again",
            g,
            startup=True,
        )
    )

    g = "debug"
    add(
        ParameterSpec(
            "debug.inference_delay_ms",
            "double",
            0.0,
            "Testing only: add this delay to every network call (emulates a slow device, e.g. for overload tests)",
            g,
            minimum=0.0,
            maximum=60000.0,
        )
    )
    add(
        ParameterSpec(
            "debug.fail_every_n",
            "integer",
            0,
            "Testing only: make every n-th network call raise (fault injection; 0 = off)",
            g,
            minimum=0,
            maximum=10**9,
        )
    )
    return s


PARAMETERS: tuple[ParameterSpec, ...] = tuple(_specs())
SPECS: dict[str, ParameterSpec] = {p.name: p for p in PARAMETERS}
OUTPUT_PARAMS: tuple[str, ...] = tuple(f"outputs.{o.name}" for o in OUTPUTS)


def ros_descriptor(spec: ParameterSpec) -> Any:
    """The rcl_interfaces/ParameterDescriptor the node declares ``spec`` with, so ``ros2 param describe`` shows the
    type, range or choices and when a change applies (imports ROS only when called)."""
    from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor, ParameterType

    desc = ParameterDescriptor(
        name=spec.name,
        type=getattr(ParameterType, f"PARAMETER_{spec.type.upper()}"),
        description=spec.description.replace("`", ""),
        additional_constraints=f"one of: {', '.join(spec.choices)}" if spec.choices else f"applies: {spec.when}",
        read_only=spec.startup,
    )
    if spec.minimum is not None and spec.maximum is not None:
        if spec.type == "integer":
            desc.integer_range = [IntegerRange(from_value=int(spec.minimum), to_value=int(spec.maximum), step=1)]
        elif spec.type == "double":
            desc.floating_point_range = [
                FloatingPointRange(from_value=float(spec.minimum), to_value=float(spec.maximum), step=0.0)
            ]
    return desc


def check_values(values: Mapping[str, Any]) -> list[str]:
    """Reasons why a set of parameter values is invalid (unknown names, wrong types, ranges, combinations)."""
    problems: list[str] = []
    for name, value in values.items():
        spec = SPECS.get(name)
        if spec is None:
            problems.append(f"unknown parameter '{name}'{_suggest(name)}")
            continue
        reason = spec.check(value)
        if reason:
            problems.append(reason)
    if not problems:
        merged = {p.name: p.default for p in PARAMETERS} | dict(values)
        problems.extend(check_combination(merged))
    return problems


def check_combination(values: Mapping[str, Any]) -> list[str]:
    """Rules that involve more than one parameter."""
    out = []
    h, w, short = values.get("input_height", 0), values.get("input_width", 0), values.get("input_short_side", 0)
    if (h > 0) != (w > 0):
        out.append("input_height and input_width must both be set (> 0) or both be 0")
    if short > 0 and h > 0:
        out.append("set either input_height/input_width or input_short_side, not both")
    return out


def review_changes(
    current: Mapping[str, Any],
    changes: Iterable[tuple[str, Any]],
    *,
    declaring: bool,
    configured: bool,
    state: str,
) -> tuple[dict[str, Any], str | None]:
    """The node's answer to a set-parameters request: (the parameter values after it, None) or (_, the reason it
    is refused). ``changes`` are (name, value) with None for a parameter being unset; names not in the table (ROS's
    own) pass through untouched.

    While ``declaring`` (the node's start-up) every value is only checked for type and range. Later a ``startup``
    parameter cannot change, one that needs a reload cannot change while a model is ``configured`` (the reason
    names the fix for the node's lifecycle ``state``), and the combination rules apply.
    """
    new = dict(current)
    for name, raw in changes:
        spec = SPECS.get(name)
        if spec is None:
            continue
        if raw is None:
            return new, f"parameter '{name}' cannot be unset"
        value = list(raw) if spec.type == "string_array" else raw
        reason = spec.check(value)
        if reason:
            return new, reason
        if not declaring and value != current.get(name):
            if spec.startup:
                return new, f"parameter '{name}' is read only at start-up"
            if not spec.tunable and configured:
                return new, (
                    f"parameter '{name}' needs a reload and cannot change while the node is {state}: deactivate and "
                    "clean up the node, set it, then configure (and activate) again"
                )
        new[name] = value
    if not declaring:
        problems = check_combination(new)
        if problems:
            return new, "; ".join(problems)
    return new, None


def _suggest(name: str) -> str:
    import difflib

    close = difflib.get_close_matches(name, SPECS, n=1, cutoff=0.6)
    return f" (did you mean '{close[0]}'?)" if close else ""


def suggest(name: str) -> str:
    """' (did you mean ...?)' for a misspelt parameter name, or ''."""
    return _suggest(name)


# --------------------------------------------------------------------------------------------- YAML parameter files


def flatten(tree: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested ``ros__parameters`` dict -> ``{'a.b': value}`` as ROS names nested keys."""
    out: dict[str, Any] = {}
    for k, v in tree.items():
        key = f"{prefix}{k}"
        if isinstance(v, Mapping):
            out.update(flatten(v, key + "."))
        else:
            out[key] = v
    return out


class ParamsFileError(ValueError):
    """A parameter file that is missing, unreadable, not YAML or not shaped like a ROS parameter file."""


def load_params_yaml(path: str | Path) -> Mapping[str, Any]:
    """The YAML of a ROS parameter file, checked for the shape rcl needs: a mapping of node names, each with a
    ``ros__parameters`` mapping. :class:`ParamsFileError` with one line naming the file and the problem otherwise.
    """
    import yaml

    p = Path(path)
    if not str(path):
        raise ParamsFileError("--params-file needs a file name")
    if not p.exists():
        raise ParamsFileError(f"parameter file '{p}' does not exist")
    if p.is_dir():
        raise ParamsFileError(f"parameter file '{p}' is a directory")
    try:
        text = p.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise ParamsFileError(f"cannot read parameter file '{p}': {exc}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ParamsFileError(f"parameter file '{p}' is not valid YAML{where}: {problem}") from None
    if not isinstance(data, Mapping) or not data:
        raise ParamsFileError(
            f"parameter file '{p}' must map node names to 'ros__parameters' (e.g. '/**:' then "
            "'  ros__parameters:'), got " + ("an empty file" if not data else type(data).__name__)
        )
    for key, section in data.items():
        params = section.get("ros__parameters") if isinstance(section, Mapping) else None
        if not isinstance(params, Mapping):
            raise ParamsFileError(
                f"parameter file '{p}': section '{key}' has no 'ros__parameters' mapping (expected '{key}:' then "
                "'  ros__parameters:' then the parameters)"
            )
    return data


def check_params_file_syntax(path: str | Path) -> None:
    """Raise :class:`ParamsFileError` unless ``path`` is a readable ROS parameter file (the node runs this before
    handing the file to rcl, whose parser answers these problems with a traceback)."""
    load_params_yaml(path)


def read_params_file(path: str | Path, node_name: str = "bisenetformer") -> dict[str, Any]:
    """Parameters a ROS params file gives to ``node_name`` (``/**`` wildcards and namespaced keys included)."""
    data = load_params_yaml(path)
    out: dict[str, Any] = {}
    for key, section in data.items():
        base = str(key).rstrip("/").split("/")[-1]
        if base not in ("**", "*", node_name) or not isinstance(section, Mapping):
            continue
        params = section.get("ros__parameters")
        if not isinstance(params, Mapping):
            raise ValueError(f"{path}: section '{key}' has no 'ros__parameters' mapping")
        out.update(flatten(params))
    return out


#: Parameters every rclpy node declares itself; allowed in parameter files but not in our table.
BUILTIN_PARAMETERS: frozenset[str] = frozenset({"use_sim_time", "start_type_description_service"})


def check_params_file(path: str | Path, node_name: str = "bisenetformer") -> list[str]:
    """Problems of a params file for this node; [] when every name is declared and every value valid."""
    values = {k: v for k, v in read_params_file(path, node_name).items() if k not in BUILTIN_PARAMETERS}
    if not values:
        return [f"{path}: no parameters for node '{node_name}' (expected a '/**' or '{node_name}' section)"]
    return [f"{Path(path).name}: {p}" for p in check_values(values)]


# ------------------------------------------------------------------------------------------------------ docs / help


def _default_text(p: ParameterSpec) -> str:
    if p.type == "string":
        return f"'{p.default}'"
    if p.type == "string_array":
        return "[" + ", ".join(f"'{x}'" for x in p.default) + "]"
    if p.type == "bool":
        return str(p.default).lower()
    return str(p.default)


def markdown_table(params: Iterable[ParameterSpec] = PARAMETERS) -> str:
    """The README table: name, type, default, range, when a change applies, description."""
    lines = [
        "| Parameter | Type | Default | Range | Applies | Description |",
        "|---|---|---|---|---|---|",
    ]
    for p in params:
        rng = p.range_text().replace("|", "\\|")
        lines.append(f"| `{p.name}` | {p.type} | `{_default_text(p)}` | {rng} | {p.when} | {p.description} |")
    return "\n".join(lines)


def help_text() -> str:
    """Usage printed by ``bisenetformer_node --help`` (without starting ROS). Test-only ``debug.*`` parameters are
    left out (``tools/param_table.py --include-debug`` lists them)."""
    images = [o.topic for o in OUTPUTS if o.is_image]
    others = ", ".join(f"{o.topic} ({o.short_type})" for o in OUTPUTS if not o.is_image)
    lines = [
        "usage: bisenetformer_node [--help] [--ros-args [-p NAME:=VALUE] [-r FROM:=TO] [--params-file FILE] ...]",
        "",
        "BiSeNetFormer semantic + panoptic segmentation node (ROS 2 lifecycle node).",
        "",
        "Topics (relative to each camera namespace in 'cameras'; '' = the node's namespace):",
        "  in:  image (sensor_msgs/Image) or image/compressed (sensor_msgs/CompressedImage), camera_info",
        "  out: " + ", ".join(images) + " (sensor_msgs/Image; each also as <topic>/compressed),",
        f"       {others},",
        "       " + ", ".join(OUTPUT_CAMERA_INFO_TOPICS) + " (sensor_msgs/CameraInfo, scaled to the outputs),",
        f"       {CLASS_INFO_TOPIC} (bisenetformer_ros/ClassTable), {LABEL_INFO_TOPIC} (vision_msgs/LabelInfo), both "
        "transient local; /diagnostics",
        "  QoS: outputs reliable by default (output_qos), inputs best effort (input_qos); mismatches are logged and",
        "       reported in /diagnostics",
        "",
        "Parameters (set with -p NAME:=VALUE or a --params-file; 'applies' says when a change takes effect):",
    ]
    group = None
    for p in PARAMETERS:
        if p.group == "debug":
            continue
        if p.group != group:
            group = p.group
            lines.append(f"  [{group}]")
        rng = f" [{p.range_text()}]" if p.range_text() else ""
        lines.append(f"    {p.name} ({p.type}, default {_default_text(p)}{rng}; applies: {p.when})")
        lines.append(f"        {p.description.replace('`', '')}")
    lines += [
        "",
        "Examples:",
        "  bisenetformer_node --ros-args -r image:=/camera/image_raw -r camera_info:=/camera/camera_info",
        "  bisenetformer_node --ros-args --params-file config/node/default.yaml -p device:=cpu",
        '  bisenetformer_node --ros-args -p "cameras:=[front, left, right]"',
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """``python -m bisenetformer_ros.ros.parameters``: the README table, the help text, or ``--check FILE...``
    (exit 0 and ``ok``; exit 2 with one line per problem, a missing or malformed file included)."""
    parser = argparse.ArgumentParser(description="bisenetformer_node parameter table")
    parser.add_argument("--markdown", action="store_true", help="print the README table")
    parser.add_argument("--check", nargs="*", metavar="YAML", help="validate ROS parameter files for the node")
    args = parser.parse_args(argv)
    if args.check is not None:
        if not args.check:
            parser.error("--check needs at least one parameter file")
        problems: list[str] = []
        for f in args.check:
            try:
                problems += check_params_file(f)
            except ParamsFileError as exc:
                problems.append(f"error: {exc}")
        if problems:
            print("\n".join(problems), file=sys.stderr)
            return 2
        print("ok")
        return 0
    print(markdown_table() if args.markdown else help_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
