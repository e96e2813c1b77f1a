"""ONNX Runtime backend: the exported graph on the CPU, or on a GPU through the CUDA / TensorRT execution providers.

* The class table and model configuration come from the ONNX file's metadata (see :mod:`.export`); a ``.pt`` model
  is exported once and cached. A model for another label space than the caller expects is refused.
* CPU: fp32, or int8 (static quantisation of the convolutions, calibrated once on ``calibration_images`` -- a folder
  of camera frames, or ``"synthetic"`` for the synthetic training scenes, the default for models of the synthetic
  label space -- and cached; see :mod:`.quantize`). ONNX Runtime's CPU kernels have no fast fp16/bf16 path. Threads
  default to torch's thread count so that a comparison with the PyTorch backend uses the same CPU budget.
* CUDA: tensors stay on the GPU through IO binding (input and outputs are torch CUDA tensors; no host round trip),
  so the shared post-processing runs on the GPU as for the other backends. With the TensorRT execution provider,
  fp16 is available (``trt_fp16_enable``); the CUDA provider alone runs fp32.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import torch

from bisenetformer_ros.data.classes import ClassTable
from bisenetformer_ros.inference.base import Backend, BackendInfo, check_precision
from bisenetformer_ros.inference.export import (
    DEFAULT_OPSET,
    INPUT_NAME,
    OUTPUT_NAMES,
    ensure_onnx,
    metadata_to_info,
)

LOG = logging.getLogger("bisenetformer_ros.inference.onnxruntime")

try:
    import onnxruntime as ort
except ImportError as _exc:  # pragma: no cover - the factory reports the missing package
    raise ModuleNotFoundError(str(_exc), name="onnxruntime") from None


_GRAPH_LEVELS = {
    "disable": "ORT_DISABLE_ALL",
    "basic": "ORT_ENABLE_BASIC",
    "extended": "ORT_ENABLE_EXTENDED",
    "all": "ORT_ENABLE_ALL",
}


class OnnxRuntimeBackend(Backend):
    """Runs an ``.onnx`` file exported by ``bisenetformer export`` (or a ``.pt``, exported on first use)."""

    NAME = "onnxruntime"

    def __init__(
        self,
        model_path: str | Path,
        device: str | torch.device = "auto",
        precision: str = "fp32",
        class_table: ClassTable | None = None,
        cache_dir: str | Path | None = None,
        intra_op_threads: int | None = None,
        graph_optimization: str = "all",
        use_tensorrt_ep: bool | None = None,
        opset: int = DEFAULT_OPSET,
        allow_spinning: bool = False,
        calibration_images: str | Path | None = None,
        calibration_limit: int = 200,
    ) -> None:
        super().__init__(model_path, device, precision, class_table)
        available = ort.get_available_providers()
        self.providers: list[Any]
        if self.device.type == "cuda":
            if "CUDAExecutionProvider" not in available:
                raise RuntimeError(
                    f"onnxruntime {ort.__version__} here has no CUDA execution provider (available: {available}); "
                    f"install onnxruntime-gpu, or use device 'cpu'"
                )
            trt_ep = "TensorrtExecutionProvider" in available if use_tensorrt_ep is None else use_tensorrt_ep
            if trt_ep and "TensorrtExecutionProvider" not in available:
                raise RuntimeError("the TensorRT execution provider is not available in this onnxruntime build")
            supported = ("fp32", "fp16") if trt_ep else ("fp32",)
            hint = "fp16 needs the TensorRT execution provider; use the tensorrt backend or fp32"
            self.precision = check_precision(precision, supported, self.NAME, self.device, hint)
            idx = self.device.index or 0
            self.providers = []
            if trt_ep:
                trt_cache = Path(cache_dir) if cache_dir is not None else None
                opts: dict[str, Any] = {"device_id": idx, "trt_fp16_enable": self.precision == "fp16"}
                if trt_cache is not None:
                    opts.update(trt_engine_cache_enable=True, trt_engine_cache_path=str(trt_cache / "ort_trt"))
                self.providers.append(("TensorrtExecutionProvider", opts))
            self.providers.append(("CUDAExecutionProvider", {"device_id": idx}))
            self.providers.append("CPUExecutionProvider")
        else:
            hint = "use fp32 or int8 (or the torch backend for bf16)"
            self.precision = check_precision(precision, ("fp32", "int8"), self.NAME, self.device, hint)
            self.providers = ["CPUExecutionProvider"]
        if graph_optimization not in _GRAPH_LEVELS:
            raise ValueError(f"graph_optimization must be one of {list(_GRAPH_LEVELS)}, got '{graph_optimization}'")
        self.graph_optimization = graph_optimization
        self.intra_op_threads = intra_op_threads
        self.cache_dir = cache_dir
        self.opset = opset
        self.allow_spinning = bool(allow_spinning)
        self.calibration_images = calibration_images
        self.calibration_limit = int(calibration_limit)
        self.quantization: dict[str, Any] | None = None
        self.pin_memory = self.device.type == "cuda"
        self.session: ort.InferenceSession | None = None
        self.onnx_path: Path | None = None
        self._num_queries = 0
        self._num_logits = 0

    def _load(self) -> BackendInfo:
        if self.model_path.suffix.lower() in (".engine", ".plan", ".trt"):
            raise ValueError(f"'{self.model_path.name}' looks like a TensorRT engine; use --backend tensorrt")
        self.onnx_path = ensure_onnx(self.model_path, self.cache_dir, self.opset)
        if self.precision == "int8":
            self.onnx_path = self._int8_model(self.onnx_path)
        so = ort.SessionOptions()
        so.graph_optimization_level = getattr(ort.GraphOptimizationLevel, _GRAPH_LEVELS[self.graph_optimization])
        threads = self.intra_op_threads if self.intra_op_threads is not None else torch.get_num_threads()
        so.intra_op_num_threads = max(1, int(threads))
        so.inter_op_num_threads = 1
        if not self.allow_spinning:
            # ORT's workers busy-wait after a run by default; here the CPU is needed right away by torch's
            # post-processing, which the spinning threads would slow down.
            so.add_session_config_entry("session.intra_op.allow_spinning", "0")
        try:
            self.session = ort.InferenceSession(str(self.onnx_path), so, providers=self.providers)
        except Exception as exc:  # InvalidProtobuf, Fail, ...
            raise RuntimeError(
                f"ONNX Runtime cannot load '{self.onnx_path}' ({type(exc).__name__}: {str(exc).splitlines()[0]}); "
                f"re-export it with 'bisenetformer export --format onnx'"
            ) from None
        info = metadata_to_info(self.onnx_path, dict(self.session.get_modelmeta().custom_metadata_map))
        inputs = [i.name for i in self.session.get_inputs()]
        outputs = [o.name for o in self.session.get_outputs()]
        if inputs != [INPUT_NAME] or outputs != list(OUTPUT_NAMES):
            raise RuntimeError(
                f"'{self.onnx_path}' has inputs {inputs} and outputs {outputs}, expected [{INPUT_NAME!r}] and "
                f"{list(OUTPUT_NAMES)}; re-export it with 'bisenetformer export --format onnx'"
            )
        self.class_table = info.class_table
        self.model_config = info.model_config
        self.inference_defaults = info.inference
        self._num_queries = int(info.model_config.get("num_queries", 0))
        self._num_logits = info.class_table.num_classes + 1
        used = self.session.get_providers()
        if self.device.type == "cuda" and "CUDAExecutionProvider" not in used:
            raise RuntimeError(f"onnxruntime fell back to {used} although CUDA was requested; check the CUDA install")
        return BackendInfo(
            name=self.NAME,
            device=str(self.device),
            precision=self.precision,
            details={
                "onnx": str(self.onnx_path),
                "providers": used,
                "onnxruntime": ort.__version__,
                "intra_op_threads": so.intra_op_num_threads,
                "backbone": info.model_config.get("backbone"),
                "num_queries": self._num_queries,
                **({"int8": self.quantization} if self.quantization else {}),
            },
        )

    def _int8_model(self, fp32_onnx: Path) -> Path:
        """The cached int8 variant of the export; calibration data: the given folder, else the synthetic training
        scenes for a model of the synthetic label space, else a one-line error saying what to pass."""
        import json

        from bisenetformer_ros.data.synthetic import SYNTHETIC
        from bisenetformer_ros.inference.calibration import SYNTHETIC_CALIBRATION, calibration_set
        from bisenetformer_ros.inference.export import read_onnx_metadata
        from bisenetformer_ros.inference.quantize import META_QUANTIZATION, ensure_int8_onnx

        meta = read_onnx_metadata(fp32_onnx)
        if META_QUANTIZATION in meta.metadata:  # an int8 file exported earlier: use as is
            self.quantization = json.loads(meta.metadata[META_QUANTIZATION])
            return fp32_onnx
        source = self.calibration_images
        if source is None:
            if meta.class_table.names != SYNTHETIC.names:
                raise ValueError(
                    "int8 needs calibration data: pass calibration_images (a folder of a few hundred representative "
                    "camera frames, --calibration-images), or use precision fp32"
                )
            source = SYNTHETIC_CALIBRATION
        out = ensure_int8_onnx(fp32_onnx, calibration_set(source, self.calibration_limit))
        self.quantization = json.loads(read_onnx_metadata(out).metadata[META_QUANTIZATION])
        return out

    def _infer(self, batch: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        assert self.session is not None
        if self.device.type == "cpu":
            x = batch.detach().to("cpu", torch.float32).contiguous().numpy()
            logits, masks = self.session.run(list(OUTPUT_NAMES), {INPUT_NAME: x})
            return torch.from_numpy(logits), torch.from_numpy(masks)
        return self._infer_cuda(batch)

    def _infer_cuda(self, batch: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """IO binding with torch-owned CUDA buffers: no host copies, outputs land where post-processing runs."""
        assert self.session is not None
        x = batch.to(self.device, torch.float32).contiguous()
        b, _, h, w = x.shape
        logits = torch.empty((b, self._num_queries, self._num_logits), device=self.device, dtype=torch.float32)
        masks = torch.empty((b, self._num_queries, h // 8, w // 8), device=self.device, dtype=torch.float32)
        idx = self.device.index or 0
        binding = self.session.io_binding()
        binding.bind_input(INPUT_NAME, "cuda", idx, np.float32, tuple(x.shape), x.data_ptr())
        for name, t in zip(OUTPUT_NAMES, (logits, masks), strict=True):
            binding.bind_output(name, "cuda", idx, np.float32, tuple(t.shape), t.data_ptr())
        torch.cuda.current_stream(self.device).synchronize()  # input written by torch's stream is complete
        self.session.run_with_iobinding(binding)
        return logits, masks

    def _close(self) -> None:
        self.session = None
