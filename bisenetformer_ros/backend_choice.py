"""Which inference backend runs a model when the user does not say: the fastest exact path for the device.

Kept free of torch, onnxruntime and ROS imports (the node's ``--help`` and the parameter table read
:data:`BACKEND_CHOICES` and :data:`DEFAULT_BACKEND`); the device is passed in already resolved.

The rule (``backend: auto``, the default of the node and of every command):

* a TensorRT engine file -> ``tensorrt``; an ``.onnx`` file -> ``onnxruntime`` (nothing else can read them);
* options only PyTorch understands (``compile``, ``channels_last``) or a precision only PyTorch runs on the CPU
  (``bf16``) -> ``torch``;
* CPU, fp32 or int8, with ``onnxruntime`` importable -> ``onnxruntime``: measured 0.69-0.73x the time of eager
  PyTorch for the same fp32 outputs (within 2e-6) on this project's machines, because its graph optimiser folds the
  batch norms into the convolutions, blocks the convolutions' memory layout (NCHWc) once for the whole graph and
  drops the copies eager PyTorch makes between layers. The export it runs is built once per model file and cached,
  so only the first start pays for it (a few seconds);
* CUDA -> ``torch`` (fp16 and bf16 included; post-processing stays on the GPU). A TensorRT engine is faster still
  but takes minutes to build for each input size, so it is chosen explicitly (``backend: tensorrt``); int8 on CUDA
  needs TensorRT's calibration and selects it.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bisenetformer_ros.registry import BACKENDS

DEFAULT_BACKEND = "auto"
#: Names accepted wherever a backend is chosen: ``auto`` (the default) and the registered backends.
BACKEND_CHOICES: tuple[str, ...] = (DEFAULT_BACKEND, *BACKENDS.names())
ENGINE_SUFFIXES: tuple[str, ...] = (".engine", ".plan", ".trt")
#: Keyword options that only the PyTorch backend takes; a truthy one selects it.
TORCH_ONLY_OPTIONS: tuple[str, ...] = ("compile", "channels_last")


@dataclass(frozen=True)
class BackendChoice:
    """The backend ``auto`` picked and why (logged, and kept in the backend's info as ``selected_by``)."""

    name: str
    reason: str


def onnxruntime_available() -> bool:
    return importlib.util.find_spec("onnxruntime") is not None


def choose_backend(
    model_path: str | Path, device_type: str, precision: str = "fp32", options: dict[str, Any] | None = None
) -> BackendChoice:
    """Apply the rule of the module docstring; ``device_type`` is ``'cpu'`` or ``'cuda'`` (already resolved)."""
    suffix = Path(model_path).suffix.lower()
    if suffix in ENGINE_SUFFIXES:
        return BackendChoice("tensorrt", "the model is a TensorRT engine")
    if suffix == ".onnx":
        return BackendChoice("onnxruntime", "the model is an ONNX file")
    torch_opts = [k for k in TORCH_ONLY_OPTIONS if (options or {}).get(k)]
    if torch_opts:
        return BackendChoice("torch", f"option {', '.join(torch_opts)} is PyTorch's")
    if device_type == "cuda":
        if precision == "int8":
            return BackendChoice("tensorrt", "int8 on CUDA needs TensorRT's calibration")
        return BackendChoice("torch", "CUDA device: PyTorch (choose backend tensorrt for an engine)")
    if precision in ("fp32", "int8"):
        if onnxruntime_available():
            return BackendChoice("onnxruntime", f"CPU {precision}: ONNX Runtime is the fastest exact path")
        if precision == "int8":
            return BackendChoice("onnxruntime", "CPU int8 needs ONNX Runtime (pip install onnxruntime)")
        return BackendChoice("torch", "CPU fp32: onnxruntime is not installed, so PyTorch")
    return BackendChoice("torch", f"CPU {precision}: only PyTorch runs it")
