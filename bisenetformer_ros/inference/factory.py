"""``create_backend``: pick a backend by name so the node, evaluator and CLI never care which one runs.

Every backend accepts the same ``.pt`` model file: ONNX Runtime exports it to ONNX once (cached by the file's hash),
TensorRT additionally builds an engine once (cached by GPU, TensorRT version, precision and input profile). An
``.onnx`` file (from ``bisenetformer export``) works for ONNX Runtime and TensorRT, and a TensorRT engine file for
TensorRT. Backend modules are imported lazily: ``onnxruntime`` or ``tensorrt`` are only needed when used.
"""

from __future__ import annotations

import importlib
import logging
from pathlib import Path
from typing import Any

import torch

from bisenetformer_ros.backend_choice import DEFAULT_BACKEND
from bisenetformer_ros.data.classes import ClassTable
from bisenetformer_ros.inference.base import Backend
from bisenetformer_ros.registry import BACKENDS

LOG = logging.getLogger("bisenetformer_ros.inference")


def backend_class(name: str) -> type[Backend]:
    """The class registered under ``name`` in :data:`~bisenetformer_ros.registry.BACKENDS` (aliases: pytorch,
    ort/onnx, trt); a backend whose Python package is missing is reported with the fix."""
    key = BACKENDS.canonical(name)
    try:
        return BACKENDS.load(key)
    except ModuleNotFoundError as exc:
        raise RuntimeError(
            f"the {key} backend needs the Python package '{exc.name}', which is not installed; install it "
            f"(see README, 'Backends') or choose another backend"
        ) from None


def available_backends() -> dict[str, str]:
    """Backend name -> 'ok' or the reason it cannot run here (missing package, no GPU)."""
    out: dict[str, str] = {"torch": "ok"}
    try:
        importlib.import_module("onnxruntime")
        out["onnxruntime"] = "ok"
    except ImportError as exc:
        out["onnxruntime"] = f"not installed ({exc})"
    try:
        importlib.import_module("tensorrt")
        out["tensorrt"] = "ok" if torch.cuda.is_available() else "tensorrt installed but no CUDA GPU visible to torch"
    except ImportError:
        out["tensorrt"] = "the 'tensorrt' Python package is not installed"
    return out


def resolve_model_path(model_path: str | Path | None) -> Path:
    """``None`` -> the embedded default model; the name of a published model (``bisenetformer pretrained list``) ->
    its converted file in the cache; otherwise the path, which must exist."""
    if model_path is None or str(model_path) == "":
        from bisenetformer_ros.resources import default_model_path

        return default_model_path()
    path = Path(model_path).expanduser()
    if not path.is_file():
        from bisenetformer_ros.model.reference import PUBLISHED_ENTRIES

        if str(model_path) in PUBLISHED_ENTRIES:
            from bisenetformer_ros.model.hub import resolve_published

            return resolve_published(str(model_path))
        raise FileNotFoundError(
            f"model file '{path}' does not exist; pass the path of a .pt model (or an .onnx / TensorRT engine "
            f"exported by 'bisenetformer export'), the name of a fetched pretrained model "
            f"({', '.join(sorted(PUBLISHED_ENTRIES))}), or leave it empty to use the embedded default model"
        )
    return path


def _auto_backend(
    path: Path, device: str | torch.device, precision: str, options: dict[str, Any]
) -> tuple[str, dict[str, Any], str]:
    """Resolve ``auto`` (see :mod:`bisenetformer_ros.backend_choice`) and keep only the options the chosen backend
    takes: callers pass one option set whatever runs (e.g. a TensorRT cache folder), and ``auto`` must not fail on
    an option meant for a backend it did not pick."""
    import inspect

    from bisenetformer_ros.backend_choice import choose_backend
    from bisenetformer_ros.inference.base import resolve_device

    choice = choose_backend(path, resolve_device(device).type, precision, options)
    LOG.info("backend auto -> %s (%s)", choice.name, choice.reason)
    accepted = inspect.signature(backend_class(choice.name).__init__).parameters
    dropped = sorted(k for k in options if k not in accepted)
    if dropped:
        LOG.debug("backend auto -> %s: options %s do not apply", choice.name, dropped)
    return choice.name, {k: v for k, v in options.items() if k in accepted}, choice.reason


def create_backend(
    name: str = DEFAULT_BACKEND,
    model_path: str | Path | None = None,
    device: str | torch.device = "auto",
    precision: str = "fp32",
    class_table: ClassTable | None = None,
    load: bool = True,
    **options: Any,
) -> Backend:
    """Instantiate (and by default load) a backend.

    ``class_table``: the label space the caller expects; a model trained for another one is refused.
    ``options``: backend-specific keywords (see each backend's constructor); unknown ones are an error.
    ``inference_delay_ms`` and ``fail_every_n`` (any backend): fixed extra latency per batch and injected failures,
    for load and fault-recovery tests (see :attr:`Backend.inference_delay_ms`, :attr:`Backend.fail_every_n`).
    """
    path = resolve_model_path(model_path)
    delay_ms = options.pop("inference_delay_ms", 0.0) or 0.0
    fail_every_n = options.pop("fail_every_n", 0) or 0
    selected_by = None
    if str(name).strip().lower() == "auto":
        name, options, selected_by = _auto_backend(path, device, precision, options)
    cls = backend_class(name)
    try:
        backend = cls(path, device=device, precision=precision, class_table=class_table, **options)
    except TypeError as exc:
        if "unexpected keyword argument" in str(exc):
            raise ValueError(f"{cls.NAME} backend: {exc}") from None
        raise
    backend.inference_delay_ms = delay_ms
    backend.selected_by = selected_by
    backend.fail_every_n = fail_every_n
    if load:
        backend.load()
    return backend
