"""The one rule for the network input size of a model file, used by the node, ``bag evaluate``, ``predict``,
``evaluate``, the demo and ``info``.

Why one rule: a model sees objects at the scale it was trained at. Running it at the camera's size instead (a model
trained on 128-pixel scenes fed 384x288 frames) cost 17 mIoU points on the same bag, and different tools choosing
differently made their numbers disagree. So every tool runs the network at the size the model file records, unless
the user overrides it, and says which size it used and why.

Where the size comes from, first match wins:

1. ``checkpoint["inference"]["input_size"]``: what the model file says inference should use (an int = short side,
   or ``[h, w]``); ``None`` there means "each image's own size" and is final;
2. the training recipe stored by the trainer (``extra.train_config``, YAML): ``augment.base_size`` is the short side
   the scenes were scaled around during training;
3. nothing recorded: each image's own size.

No ROS, no torch import at module level (``info`` and ``--help`` stay fast).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

InputSize = int | tuple[int, int]


def _as_size(value: Any, where: str) -> InputSize | None:
    """An int short side or an (h, w) pair from a recorded value; ValueError naming ``where`` when malformed."""
    from bisenetformer_ros.model.inference_defaults import parse_input_size as parse_recorded

    return parse_recorded(value, where)


def _recipe_base_size(checkpoint: Mapping[str, Any]) -> int | None:
    """``augment.base_size`` of the training recipe stored in the file, or None."""
    from bisenetformer_ros.model.inference_defaults import recipe_input_size

    extra = checkpoint.get("extra")
    return recipe_input_size(extra.get("train_config")) if isinstance(extra, Mapping) else None


def recorded_input_size(checkpoint: Mapping[str, Any]) -> InputSize | None:
    """The network input size a model file (its loaded dict) records: see the module docstring for the order.

    Returns an int (short side), an ``(h, w)`` tuple, or None (each image's own size).
    """
    from bisenetformer_ros.model.inference_defaults import InferenceDefaults

    return InferenceDefaults.from_checkpoint(checkpoint).input_size


@dataclass(frozen=True)
class NetworkSize:
    """The size the network runs at and why (printed by the tools, written into reports)."""

    input_size: InputSize | None
    source: str  # 'override', 'model file', 'training recipe', 'none recorded'

    def describe(self) -> str:
        """E.g. ``short side 128 px (recorded in the model file's training recipe)``."""
        if self.input_size is None:
            what = "each image's own size"
        elif isinstance(self.input_size, int):
            what = f"short side {self.input_size} px"
        else:
            what = f"{self.input_size[0]}x{self.input_size[1]} px"
        why = {
            "override": "as requested",
            "model file": "recorded in the model file",
            "training recipe": "the scale of the training recipe stored in the model file",
            "none recorded": "the model file records no size",
        }.get(self.source, self.source)
        return f"{what} ({why})"

    def to_json(self) -> dict[str, Any]:
        size = list(self.input_size) if isinstance(self.input_size, tuple) else self.input_size
        return {"input_size": size, "source": self.source, "text": self.describe()}


def _onnx_recorded(path: Path) -> tuple[InputSize | None, str]:
    from bisenetformer_ros.inference.export import read_onnx_metadata

    meta = read_onnx_metadata(path).metadata
    for key in ("bisenetformer.inference",):
        if key in meta:
            try:
                value = json.loads(meta[key])
            except json.JSONDecodeError:
                return None, "none recorded"
            if isinstance(value, Mapping) and "input_size" in value:
                return _as_size(value["input_size"], f"'{path}' inference.input_size"), "model file"
    return None, "none recorded"


def model_file_network_size(model: str | Path | None, override: InputSize | None = None) -> NetworkSize:
    """The network size for ``model`` (None = the embedded default model) under the one rule.

    ``override`` (a user's explicit size) wins. A ``.pt`` file is read (weights-only) for its record; an ``.onnx``
    export for its ``bisenetformer.inference`` metadata; TensorRT engines record nothing here. A file that cannot be
    read raises the loader's own clear error, as loading it for inference would.
    """
    if override is not None:
        return NetworkSize(override, "override")
    if model is None:
        from bisenetformer_ros.resources import default_model_path

        model = default_model_path()
    path = Path(model)
    if not path.is_file():
        from bisenetformer_ros.inference.factory import resolve_model_path

        path = resolve_model_path(model)  # a fetched pretrained model's name, or the loader's clear error
    suffix = path.suffix.lower()
    if suffix == ".onnx":
        size, source = _onnx_recorded(path)
        return NetworkSize(size, source)
    if suffix not in (".pt", ".pth"):
        return NetworkSize(None, "none recorded")
    from bisenetformer_ros.model.checkpoint import read_checkpoint

    ckpt = read_checkpoint(path)
    inference = ckpt.get("inference")
    if isinstance(inference, Mapping) and "input_size" in inference:
        return NetworkSize(recorded_input_size(ckpt), "model file")
    base = _recipe_base_size(ckpt)
    return NetworkSize(base, "training recipe" if base else "none recorded")


NATIVE_SIZE_WORDS = ("native",)


def parse_input_size(text: str) -> InputSize | str:
    """``'512'`` (short side) -> 512; ``'512x1024'`` -> (512, 1024); ``'native'`` -> 'native' (each image's own
    size, overriding the model file's record). ValueError with the accepted forms otherwise."""
    t = text.strip().lower()
    if t in NATIVE_SIZE_WORDS:
        return "native"
    try:
        if "x" in t:
            h, w = (int(v) for v in t.split("x"))
            if h < 1 or w < 1:
                raise ValueError
            return h, w
        v = int(t)
        if v < 1:
            raise ValueError
        return v
    except ValueError:
        raise ValueError(
            f"input size '{text}' must be a positive short side (e.g. 512), HEIGHTxWIDTH (e.g. 512x1024) or "
            "'native' (each image's own size)"
        ) from None


def resolve_network_size(model: str | Path | None, requested: InputSize | str | None) -> NetworkSize:
    """``requested`` from :func:`parse_input_size` (None = follow the model file) -> the size to run at."""
    if requested == "native":
        return NetworkSize(None, "override")
    return model_file_network_size(model, requested if not isinstance(requested, str) else None)
