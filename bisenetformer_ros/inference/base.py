"""The one interface every inference backend implements, plus the checks all of them share.

A backend takes a *pre-processed* batch (``float[B,3,H,W]``, normalised, padded to a multiple of 32, produced by
:class:`~bisenetformer_ros.model.preprocess.Preprocessor` on :attr:`Backend.input_device`) and returns the raw network
outputs ``(pred_logits [B,Q,K+1], pred_masks [B,Q,H/8,W/8])`` as float32 torch tensors on the backend's device.
Pre- and post-processing are therefore written once (model package + :class:`~bisenetformer_ros.inference.segmenter.
Segmenter`) and post-processing runs wherever the backend's outputs already are — on the GPU for CUDA backends.

Shape limits and the class table are checked here, in :meth:`Backend.infer`, so that every backend reports bad input
with the same wording (cause + fix) instead of a TensorRT or ONNX Runtime stack trace.
"""

from __future__ import annotations

import logging
import time
from abc import ABC, abstractmethod
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from bisenetformer_ros.data.classes import ClassTable
from bisenetformer_ros.model.inference_defaults import InferenceDefaults

LOG = logging.getLogger("bisenetformer_ros.inference")

#: Precisions a user can ask for; each backend accepts a subset (see ``Backend.SUPPORTED_PRECISIONS``).
PRECISIONS: tuple[str, ...] = ("fp32", "fp16", "bf16", "int8")

_TORCH_DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


class UnsupportedPrecisionError(ValueError):
    """The requested precision cannot run on this backend/device combination."""


class InputShapeError(ValueError):
    """A batch does not fit the backend's input limits (e.g. a TensorRT optimisation profile)."""


class ClassTableMismatchError(ValueError):
    """The model was trained for another label space than the caller expects."""


class InjectedFailure(RuntimeError):
    """Raised on every n-th network call when :attr:`Backend.fail_every_n` is set (fault-recovery tests)."""


@dataclass(frozen=True)
class BackendInfo:
    """What a loaded backend is and what it accepts.

    ``max_batch``/``min_hw``/``max_hw`` are ``None`` when unlimited (PyTorch, ONNX Runtime); a TensorRT engine reports
    its optimisation profile so callers can size their input before hitting an error. ``min_hw``/``max_hw`` are
    (height, width) of the padded network input.
    """

    name: str
    device: str
    precision: str
    max_batch: int | None = None
    min_hw: tuple[int, int] | None = None
    max_hw: tuple[int, int] | None = None
    details: dict[str, Any] = field(default_factory=dict, compare=False)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["min_hw"] = list(self.min_hw) if self.min_hw else None
        d["max_hw"] = list(self.max_hw) if self.max_hw else None
        return d

    def describe(self) -> str:
        limits = ""
        if self.max_hw is not None:
            low = f"{self.min_hw[0]}x{self.min_hw[1]}" if self.min_hw else "any"
            limits = f", input {low}..{self.max_hw[0]}x{self.max_hw[1]}"
        if self.max_batch is not None:
            limits += f", batch <= {self.max_batch}"
        return f"{self.name} on {self.device} ({self.precision}{limits})"


def resolve_device(device: str | torch.device = "auto", default_index: int = 0) -> torch.device:
    """The one device rule of inference and training: ``'auto'`` -> CUDA GPU ``default_index`` when torch sees one,
    else the CPU; ``'cuda'``/``'gpu'`` without an index -> GPU ``default_index``; explicit CUDA requests are checked.

    ``default_index`` is 0 except for a training process started by ``torchrun``, which passes its local rank so each
    process of a multi-GPU run takes its own GPU.
    """
    if isinstance(device, torch.device):
        dev = device
    else:
        text = str(device).strip().lower()
        if text in ("", "auto"):
            return torch.device("cuda", default_index) if torch.cuda.is_available() else torch.device("cpu")
        if text == "gpu":
            text = "cuda"
        try:
            dev = torch.device(text)
        except RuntimeError:
            raise ValueError(f"unknown device '{device}'; use 'auto', 'cpu', 'cuda' or 'cuda:N'") from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise RuntimeError(
                f"device '{device}' requested but this torch build sees no CUDA GPU "
                f"(torch {torch.__version__}); use device 'cpu' or install a CUDA build of torch"
            )
        index = default_index if dev.index is None else dev.index
        if index >= torch.cuda.device_count():
            raise ValueError(f"device '{device}' does not exist; this machine has {torch.cuda.device_count()} GPU(s)")
        return torch.device("cuda", index)
    if dev.type != "cpu":
        raise ValueError(f"device type '{dev.type}' is not supported; use 'auto', 'cpu' or 'cuda[:N]'")
    return dev


def check_precision(precision: str, supported: tuple[str, ...], backend: str, device: torch.device, hint: str) -> str:
    """Normalise a precision name and raise :class:`UnsupportedPrecisionError` with ``hint`` as the fix."""
    p = str(precision).strip().lower()
    aliases = {"float32": "fp32", "float": "fp32", "float16": "fp16", "half": "fp16", "bfloat16": "bf16"}
    p = aliases.get(p, p)
    if p not in PRECISIONS:
        raise UnsupportedPrecisionError(f"unknown precision '{precision}'; choose one of {list(PRECISIONS)}")
    if p not in supported:
        raise UnsupportedPrecisionError(
            f"precision '{p}' is not supported by the {backend} backend on {device} (supported: {list(supported)}); "
            f"{hint}"
        )
    return p


def torch_dtype(precision: str) -> torch.dtype:
    """Torch dtype of a floating precision name (``int8`` has none: it only exists inside TensorRT engines)."""
    try:
        return _TORCH_DTYPES[precision]
    except KeyError:
        raise UnsupportedPrecisionError(f"precision '{precision}' has no torch dtype") from None


def check_class_table(found: ClassTable, expected: ClassTable | None, source: str) -> None:
    """Refuse a model whose label space differs from the one the caller works with (names, thing flags, count)."""
    if expected is None:
        return
    diffs = found.differences(expected)
    if diffs:
        shown = "; ".join(diffs[:5]) + (f"; ... ({len(diffs) - 5} more)" if len(diffs) > 5 else "")
        raise ClassTableMismatchError(
            f"{source} was trained for class table '{found.dataset}' ({found.num_classes} classes) but "
            f"'{expected.dataset}' ({expected.num_classes} classes) is expected: {shown}. Use a model trained for "
            f"'{expected.dataset}', or drop the expected class table to use the model's own"
        )


class Backend(ABC):
    """Load a model, run pre-processed batches, report limits, release resources.

    Subclasses implement :meth:`_load`, :meth:`_infer` and :meth:`_close`; the public methods add the shared
    behaviour (lazy loading, input validation, float32 outputs, context management). After :meth:`load`,
    :attr:`class_table` and :attr:`model_config` describe the loaded model (read from the checkpoint, the ONNX
    metadata or the engine header) so a caller never has to be told separately which labels a model predicts.
    """

    #: Registry name, e.g. ``'torch'``.
    NAME: str = ""
    #: Whether the Segmenter should stage frames in pinned host memory (CUDA input devices only).
    pin_memory: bool = False

    def __init__(
        self,
        model_path: str | Path,
        device: str | torch.device = "auto",
        precision: str = "fp32",
        class_table: ClassTable | None = None,
    ) -> None:
        self.model_path = Path(model_path)
        self.device = resolve_device(device)
        self.requested_precision = precision
        self.expected_class_table = class_table
        self.class_table: ClassTable | None = None
        self.model_config: dict[str, Any] = {}
        # How the model wants to be run (size, normalisation, post-processing order), set by _load from the file.
        self.inference_defaults = InferenceDefaults()
        self._info: BackendInfo | None = None
        self._loaded = False
        self._delay_s = 0.0
        #: Why ``backend: auto`` chose this backend (None when it was named); shown in the info's details.
        self.selected_by: str | None = None
        self._fail_every_n = 0
        self._calls = 0

    # ------------------------------------------------------------------ test / rehearsal tool
    @property
    def inference_delay_ms(self) -> float:
        """Fixed extra latency added to every :meth:`infer` call, in milliseconds (0 = off).

        A tool for load and latency tests, not a tuning knob: it turns any backend into a deliberately slow one
        (e.g. to rehearse a Jetson's latency on a workstation, or to drive a node into overload and check that it
        drops stale frames instead of queueing them). The device is synchronised before the sleep so the delay adds
        to real work instead of overlapping queued GPU kernels. ``create_backend(..., inference_delay_ms=...)`` and
        ``Segmenter.from_model(..., inference_delay_ms=...)`` set it for any backend.
        """
        return self._delay_s * 1000.0

    @inference_delay_ms.setter
    def inference_delay_ms(self, value: float) -> None:
        ms = float(value)
        if not ms >= 0.0 or ms == float("inf"):
            raise ValueError(f"inference_delay_ms must be a finite number >= 0, got {value!r}")
        self._delay_s = ms / 1000.0
        if self._info is not None:
            self._info.details["inference_delay_ms"] = ms

    @property
    def fail_every_n(self) -> int:
        """Every n-th :meth:`infer` call raises :class:`InjectedFailure` after running (0 = never).

        The companion of :attr:`inference_delay_ms` for fault-recovery tests: a node must report the failure and
        keep serving the next frames. Set with ``create_backend(..., fail_every_n=...)`` or the node's
        ``debug.fail_every_n``.
        """
        return self._fail_every_n

    @fail_every_n.setter
    def fail_every_n(self, value: int) -> None:
        n = int(value)
        if n < 0:
            raise ValueError(f"fail_every_n must be >= 0, got {value!r}")
        self._fail_every_n = n
        if self._info is not None and n:
            self._info.details["fail_every_n"] = n

    # ------------------------------------------------------------------ public API
    @property
    def info(self) -> BackendInfo:
        """Device, precision and input limits; loads the backend on first access."""
        self.load()
        assert self._info is not None
        return self._info

    @property
    def input_device(self) -> torch.device:
        """Where the pre-processed batch must live (the pre-processor runs there)."""
        return self.device

    @property
    def input_dtype(self) -> torch.dtype:
        """Dtype of the pre-processed batch this backend consumes."""
        return torch.float32

    @property
    def loaded(self) -> bool:
        return self._loaded

    def load(self) -> Backend:
        """Load the model (idempotent) and verify its class table against the expected one."""
        if not self._loaded:
            self._info = self._load()
            if self.class_table is None:
                raise RuntimeError(f"{self.NAME} backend did not find a class table in {self.model_path}")
            check_class_table(self.class_table, self.expected_class_table, f"model '{self.model_path}'")
            if self._delay_s > 0:
                self._info.details["inference_delay_ms"] = self._delay_s * 1000.0
            if self.selected_by:
                self._info.details["selected_by"] = f"auto: {self.selected_by}"
            if self._fail_every_n > 0:
                self._info.details["fail_every_n"] = self._fail_every_n
            self._loaded = True
            LOG.info("loaded %s from %s", self._info.describe(), self.model_path)
        return self

    def check_input(self, batch: torch.Tensor) -> None:
        """Raise :class:`InputShapeError` (cause + fix) if ``batch`` does not fit this backend."""
        info = self.info
        if batch.dim() != 4 or batch.shape[1] != 3:
            raise InputShapeError(f"expected a pre-processed batch [B,3,H,W], got shape {tuple(batch.shape)}")
        b, _, h, w = (int(s) for s in batch.shape)
        if h % 32 or w % 32:
            raise InputShapeError(
                f"input {h}x{w} is not a multiple of 32; pad it with bisenetformer_ros.model.Preprocessor"
            )
        if info.max_batch is not None and b > info.max_batch:
            raise InputShapeError(
                f"batch of {b} exceeds the {info.name} limit of {info.max_batch}; send smaller batches (Segmenter "
                f"splits them) or rebuild the engine with a larger --max-batch"
            )
        if info.max_hw is not None and (h > info.max_hw[0] or w > info.max_hw[1]):
            raise InputShapeError(
                f"input {h}x{w} is larger than the {info.name} engine profile maximum "
                f"{info.max_hw[0]}x{info.max_hw[1]}; "
                f"resize the input (input_size) or rebuild the engine with --height/--width covering {h}x{w}"
            )
        if info.min_hw is not None and (h < info.min_hw[0] or w < info.min_hw[1]):
            raise InputShapeError(
                f"input {h}x{w} is smaller than the {info.name} engine profile minimum "
                f"{info.min_hw[0]}x{info.min_hw[1]}; "
                f"resize the input (input_size) or rebuild the engine with a smaller --min-height/--min-width"
            )

    def infer(self, batch: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Run the network on a pre-processed batch; returns float32 ``(pred_logits, pred_masks)`` on the device."""
        self.load()
        self.check_input(batch)
        self._calls += 1
        logits, masks = self._infer(batch)
        if self._delay_s > 0:
            self.synchronize()
            time.sleep(self._delay_s)
        if self._fail_every_n > 0 and self._calls % self._fail_every_n == 0:
            raise InjectedFailure(f"injected failure on network call {self._calls} (fail_every_n={self._fail_every_n})")
        return logits.float(), masks.float()

    def warmup(self, shape: tuple[int, int, int, int] = (1, 3, 512, 512), iterations: int = 2) -> None:
        """Run a few dummy batches so that kernel selection, allocator growth and lazy init happen before timing."""
        batch = torch.zeros(shape, dtype=self.input_dtype, device=self.input_device)
        for _ in range(max(1, iterations)):
            self.infer(batch)
        self.synchronize()

    def synchronize(self) -> None:
        """Wait for queued device work (timings are meaningless without it on CUDA)."""
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def close(self) -> None:
        """Release the model and device memory (idempotent)."""
        if self._loaded:
            self._close()
        self._loaded = False

    def __enter__(self) -> Backend:
        return self.load()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        state = self._info.describe() if self._info else f"{self.NAME} (not loaded)"
        return f"<{type(self).__name__} {state} model={self.model_path}>"

    # ------------------------------------------------------------------ subclass hooks
    @abstractmethod
    def _load(self) -> BackendInfo:
        """Load the model; set :attr:`class_table` and :attr:`model_config`; return the backend's info."""

    @abstractmethod
    def _infer(self, batch: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Run the validated batch."""

    @abstractmethod
    def _close(self) -> None:
        """Free resources."""
