"""PyTorch backend: the reference implementation, on CPU or a CUDA GPU, fp32 / fp16 / bf16.

Choices and why:

* Reduced precision casts the weights (``model.to(dtype)``), not ``autocast``: the network was written to be
  fp16-safe (boolean attention masks, fp32 positional encoding) and a cast model halves weight memory and avoids
  re-casting weights on every call. Outputs are returned as float32 so that post-processing is identical for all
  precisions.
* fp16 on the CPU is refused: CPUs have no fp16 arithmetic and PyTorch emulates it (measured ~35x slower than fp32
  for STDC1 at 256x256 on an x86 core). bf16 runs on the CPU (fast on CPUs with AVX512-BF16/AMX; we warn when the
  CPU lacks them).
* channels-last memory format defaults to on for CUDA (tensor-core convolutions want NHWC) and off for the CPU
  (measured slower with oneDNN on this model).
* Batch norms are folded into the preceding convolutions at load time (``fold_bn``, on by default): the same
  function in fewer passes over the feature maps; outputs equal the unfolded model to float rounding (tested).
* ``compile=True`` (or a mode name such as ``'max-autotune'``) wraps the model with ``torch.compile`` using static
  shapes: each new input size compiles once (a camera stream has one size; the first call takes tens of seconds).
  Dynamic-shape compilation of this model fails in torch 2.13's inductor (a symbolic value-range error in the
  resize arithmetic), so it is not used. Outputs match eager mode to float precision.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch

from bisenetformer_ros.data.classes import ClassTable
from bisenetformer_ros.inference.base import (
    Backend,
    BackendInfo,
    UnsupportedPrecisionError,
    check_precision,
    torch_dtype,
)

LOG = logging.getLogger("bisenetformer_ros.inference.torch")


def cpu_has_native_bf16() -> bool:
    """True when the CPU advertises bf16 arithmetic (AVX512-BF16 or AMX); False when unknown."""
    try:
        flags = Path("/proc/cpuinfo").read_text(errors="ignore")
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


class TorchBackend(Backend):
    """Runs a ``.pt`` model file with PyTorch (``load_model``: ``weights_only=True``, validated keys)."""

    NAME = "torch"

    def __init__(
        self,
        model_path: str | Path,
        device: str | torch.device = "auto",
        precision: str = "fp32",
        class_table: ClassTable | None = None,
        channels_last: bool | None = None,
        compile: bool | str = False,
        pin_memory: bool = True,
        fold_bn: bool = True,
    ) -> None:
        super().__init__(model_path, device, precision, class_table)
        if self.device.type == "cpu":
            supported: tuple[str, ...] = ("fp32", "bf16")
            hint = (
                "CPUs have no fp16 arithmetic (PyTorch would emulate it, ~35x slower than fp32): use fp32, or bf16 "
                "on CPUs with AVX512-BF16/AMX, or a CUDA device for fp16"
            )
        else:
            supported = ("fp32", "fp16", "bf16")
            hint = "int8 needs a calibrated TensorRT engine: use --backend tensorrt --precision int8"
        self.precision = check_precision(precision, supported, self.NAME, self.device, hint)
        if self.precision == "bf16" and self.device.type == "cuda" and not torch.cuda.is_bf16_supported():
            raise UnsupportedPrecisionError(
                f"GPU {torch.cuda.get_device_name(self.device)} has no bf16 support; use fp16 or fp32"
            )
        self.dtype = torch_dtype(self.precision)
        self.channels_last = (self.device.type == "cuda") if channels_last is None else bool(channels_last)
        self.compile = compile
        self.fold_bn = bool(fold_bn)
        #: Segmenter stages camera frames in pinned host memory for asynchronous uploads when this is set.
        self.pin_memory = bool(pin_memory) and self.device.type == "cuda"
        self.model: torch.nn.Module | None = None
        self._runner: Any = None

    @property
    def input_dtype(self) -> torch.dtype:
        return self.dtype

    def _load(self) -> BackendInfo:
        from bisenetformer_ros.model.checkpoint import load_model
        from bisenetformer_ros.model.layers import fold_batchnorms

        if self.model_path.suffix.lower() in (".onnx", ".engine", ".plan", ".trt"):
            raise ValueError(
                f"the torch backend runs .pt model files, not '{self.model_path.name}'; use --backend onnxruntime for "
                f".onnx files or --backend tensorrt for engines"
            )
        if self.precision == "bf16" and self.device.type == "cpu" and not cpu_has_native_bf16():
            LOG.warning("this CPU has no native bf16 arithmetic: bf16 will be much slower than fp32")
        loaded = load_model(self.model_path, map_location="cpu")
        loaded.model.eval()
        folded = fold_batchnorms(loaded.model) if self.fold_bn else 0
        model = loaded.model.to(device=self.device, dtype=self.dtype)
        if self.channels_last:
            model = model.to(memory_format=torch.channels_last)
        model.eval()
        self.model = model
        self.class_table = loaded.class_table
        self.model_config = loaded.config.to_dict()
        self.inference_defaults = loaded.inference
        runner: Any = model
        if self.compile:
            mode = self.compile if isinstance(self.compile, str) else None
            runner = torch.compile(model, mode=mode, dynamic=False)
            LOG.info("torch.compile enabled (mode=%s); the first batches compile kernels", mode or "default")
        self._runner = runner
        return BackendInfo(
            name=self.NAME,
            device=str(self.device),
            precision=self.precision,
            details={
                "channels_last": self.channels_last,
                "compile": self.compile,
                "folded_batchnorms": folded,
                "torch": torch.__version__,
                "backbone": loaded.config.backbone,
                "num_queries": loaded.config.num_queries,
            },
        )

    def _infer(self, batch: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = batch.to(device=self.device, dtype=self.dtype, non_blocking=True)
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with torch.inference_mode():
            try:
                out = self._runner(x, return_aux=False)
            except Exception as exc:
                if self._runner is self.model:
                    raise
                # torch.compile builds kernels on the first call of each input size and needs a C++ toolchain (CPU)
                # or Triton (CUDA); a robot without them must still segment: fall back to eager for good. If eager
                # fails too, that error (about the input or the model) is the one worth reporting.
                out = self.model(x, return_aux=False)
                LOG.warning(
                    "torch.compile failed (%s: %s); running the model eagerly from now on",
                    type(exc).__name__,
                    str(exc).strip().splitlines()[0][:300] if str(exc).strip() else "",
                )
                self._runner = self.model
                if self._info is not None:
                    self._info.details["compile"] = f"failed, eager ({type(exc).__name__})"
        return out["pred_logits"], out["pred_masks"]

    def _close(self) -> None:
        self.model = None
        self._runner = None
        if self.device.type == "cuda":
            torch.cuda.empty_cache()
