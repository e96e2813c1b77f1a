"""TensorRT backend (TensorRT 10 Python API): engine build from ONNX, int8 calibration, engine cache, execution.

Pipeline: ``.pt`` -> cached ONNX export (:func:`.export.ensure_onnx`) -> engine built for this GPU / TensorRT version /
precision / input profile, stored in the :class:`.engine_cache.EngineCache` -> deserialised and run with
``execute_async_v3`` on torch's current CUDA stream. Device buffers are torch CUDA tensors (no pycuda): the input is
the pre-processed batch, outputs are allocated by torch's caching allocator, and post-processing continues on the
GPU without a host round trip.

Build options and why:

* One optimisation profile covering the configured input sizes (``profile_hw``; the first is the tuned ``opt`` size)
  and batches ``1..max_batch_size``. Inputs outside it are refused by :meth:`Backend.check_input` with a message
  naming the profile and the fix, before TensorRT sees them.
* fp16 keeps normalisation layers in fp32 (``fp32_norm``): LayerNorm after attention can overflow fp16, which
  TensorRT itself warns about. bf16 needs compute capability >= 8.0. TF32 is off unless ``tf32=True``, so that
  'fp32' engines compute in fp32 (TensorRT enables TF32 by default on Ampere and newer).
* int8 uses entropy calibration (``IInt8EntropyCalibrator2``) over a folder of camera images at the ``opt`` size,
  with fp16 fallback for layers without int8 kernels; the calibration cache is kept next to the engines, named by
  model and image-set hashes, so a rebuild (e.g. after a TensorRT upgrade) does not calibrate again. (TensorRT 10
  marks implicit int8 calibration deprecated in favour of explicit Q/DQ models; it remains the practical path for a
  folder of robot images and is what JetPack 6 supports for DLA.)
* ``dla_core`` puts the network on an Orin DLA with GPU fallback for unsupported layers (fp16/int8 only).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

import torch

from bisenetformer_ros.atomic_io import atomic_write_bytes
from bisenetformer_ros.data.classes import ClassTable
from bisenetformer_ros.inference.base import Backend, BackendInfo, UnsupportedPrecisionError, check_precision
from bisenetformer_ros.inference.calibration import CalibrationImages
from bisenetformer_ros.inference.engine_cache import (
    ENGINE_SUFFIX,
    CacheResult,
    EngineCache,
    EngineKey,
    EngineMismatchError,
    InputProfile,
    file_sha256,
    read_engine,
    read_engine_header,
    write_engine,
)
from bisenetformer_ros.inference.export import DEFAULT_OPSET, INPUT_NAME, OUTPUT_NAMES, ensure_onnx, read_onnx_metadata
from bisenetformer_ros.model.inference_defaults import InferenceDefaults
from bisenetformer_ros.model.preprocess import Preprocessor

try:
    import tensorrt as trt
except ImportError as _exc:  # the factory turns this into "install tensorrt or choose another backend"
    raise ModuleNotFoundError(str(_exc), name="tensorrt") from None

LOG = logging.getLogger("bisenetformer_ros.inference.tensorrt")

#: TensorRT 11 removed weak typing (BuilderFlag.FP16/INT8/BF16, implicit int8 calibration): there only fp32 ONNX
#: graphs build here; reduced precision would need a strongly typed (pre-cast / Q-DQ) ONNX model.
TRT_MAJOR = int(str(trt.__version__).split(".")[0])
_WEAK_TYPING = TRT_MAJOR < 11 and hasattr(trt.BuilderFlag, "FP16")
_CalibratorBase: Any = getattr(trt, "IInt8EntropyCalibrator2", object)

#: Default profile: tuned for 512x1024, accepts up to a full Cityscapes frame 1024x2048, down to 128x128.
DEFAULT_PROFILE_HW: tuple[tuple[int, int], ...] = ((512, 1024), (1024, 2048))
DEFAULT_MIN_HW: tuple[int, int] = (128, 128)
ENGINE_FILE_SUFFIXES: tuple[str, ...] = (ENGINE_SUFFIX, ".plan", ".trt")


class _Logger(trt.ILogger):
    """Routes TensorRT's messages into Python logging (one logger per process, as TensorRT requires)."""

    _LEVELS: ClassVar[dict[Any, int]] = {
        trt.ILogger.Severity.INTERNAL_ERROR: logging.CRITICAL,
        trt.ILogger.Severity.ERROR: logging.ERROR,
        trt.ILogger.Severity.WARNING: logging.WARNING,
        trt.ILogger.Severity.INFO: logging.DEBUG,
        trt.ILogger.Severity.VERBOSE: logging.DEBUG,
    }

    def __init__(self) -> None:
        trt.ILogger.__init__(self)
        self.errors: list[str] = []

    def log(self, severity: Any, msg: str) -> None:
        level = self._LEVELS.get(severity, logging.INFO)
        if level >= logging.ERROR:
            self.errors.append(msg)
        LOG.log(level, "TensorRT: %s", msg)


_LOGGER: _Logger | None = None


def trt_logger() -> _Logger:
    global _LOGGER
    if _LOGGER is None:
        _LOGGER = _Logger()
    return _LOGGER


def current_environment(device: torch.device) -> dict[str, str]:
    """TensorRT version, GPU name and compute capability of ``device`` (the environment part of an engine key)."""
    major, minor = torch.cuda.get_device_capability(device)
    return {
        "tensorrt_version": str(trt.__version__),
        "gpu_name": torch.cuda.get_device_name(device),
        "compute_capability": f"{major}.{minor}",
    }


def _torch_dtype(dt: Any) -> torch.dtype:
    table = {trt.float32: torch.float32, trt.float16: torch.float16, trt.int32: torch.int32, trt.int8: torch.int8}
    if hasattr(trt, "bfloat16"):
        table[trt.bfloat16] = torch.bfloat16
    if dt not in table:
        raise RuntimeError(f"engine tensor type {dt} is not supported by this backend")
    return table[dt]


class EntropyCalibrator(_CalibratorBase):
    """Feeds pre-processed calibration batches (torch CUDA tensors) to TensorRT's int8 entropy calibration."""

    def __init__(
        self,
        images: CalibrationImages | None,
        input_hw: tuple[int, int],
        batch_size: int,
        cache_path: Path,
        device: torch.device,
        inference: InferenceDefaults | None = None,
    ) -> None:
        if _CalibratorBase is object:
            raise UnsupportedPrecisionError(f"TensorRT {trt.__version__} has no implicit int8 calibration")
        _CalibratorBase.__init__(self)
        self.batch_size = batch_size
        self.cache_path = cache_path
        self.device = device
        self._batches = images.batches(batch_size) if images is not None else iter(())
        # Calibrate on inputs normalised exactly as inference will normalise them (the model file's statistics).
        defaults = inference or InferenceDefaults()
        self._pre = Preprocessor(input_size=input_hw, device=device, mean=defaults.pixel_mean, std=defaults.pixel_std)
        self._current: torch.Tensor | None = None  # keeps the device buffer alive while TensorRT reads it
        self.seen = 0

    def get_batch_size(self) -> int:
        return self.batch_size

    def get_batch(self, names: list[str]) -> list[int] | None:
        try:
            frames = next(self._batches)
        except StopIteration:
            return None
        batch, _ = self._pre(frames)
        self._current = batch.contiguous()
        torch.cuda.synchronize(self.device)
        self.seen += len(frames)
        if self.seen % (self.batch_size * 20) == 0:
            LOG.info("int8 calibration: %d images", self.seen)
        return [int(self._current.data_ptr())]

    def read_calibration_cache(self) -> bytes | None:
        if self.cache_path.is_file():
            LOG.info("using int8 calibration cache %s", self.cache_path)
            return self.cache_path.read_bytes()
        return None

    def write_calibration_cache(self, cache: Any) -> None:
        atomic_write_bytes(self.cache_path, bytes(cache))
        LOG.info("wrote int8 calibration cache %s", self.cache_path)


def build_serialized_engine(
    onnx_path: Path,
    profile: InputProfile,
    precision: str,
    device: torch.device,
    workspace_gb: float = 4.0,
    fp32_norm: bool = True,
    calibrator: EntropyCalibrator | None = None,
    dla_core: int | None = None,
    tf32: bool = False,
) -> bytes:
    """Parse ``onnx_path`` and build a serialized engine (``IHostMemory`` bytes)."""
    logger = trt_logger()
    logger.errors.clear()
    torch.cuda.set_device(device)
    builder = trt.Builder(logger)
    network = builder.create_network(0)  # TensorRT 10: explicit batch is the only (and default) mode
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise RuntimeError(
            f"TensorRT cannot parse '{onnx_path}': {errors}; re-export with 'bisenetformer export --format onnx'"
        )
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace_gb * (1 << 30)))
    opt_profile = builder.create_optimization_profile()
    opt_profile.set_shape(INPUT_NAME, profile.min_shape, profile.opt_shape, profile.max_shape)
    config.add_optimization_profile(opt_profile)

    if not tf32 and hasattr(trt.BuilderFlag, "TF32"):
        # TensorRT enables TF32 (10-bit mantissa) by default on Ampere+; 'fp32' should mean fp32.
        config.clear_flag(trt.BuilderFlag.TF32)
    if precision != "fp32" and not _WEAK_TYPING:
        raise UnsupportedPrecisionError(f"TensorRT {trt.__version__} cannot build {precision} from an fp32 graph")
    if precision in ("fp16", "int8"):
        if not getattr(builder, "platform_has_fast_fp16", True):  # deprecated in 10.5, removed in 11
            LOG.warning("this GPU has no fast fp16; the %s engine may not be faster than fp32", precision)
        config.set_flag(trt.BuilderFlag.FP16)
    if precision == "bf16":
        config.set_flag(trt.BuilderFlag.BF16)
    if precision == "int8":
        if calibrator is None:
            raise ValueError("int8 needs calibration images or a calibration cache")
        config.set_flag(trt.BuilderFlag.INT8)
        config.int8_calibrator = calibrator
        _, _, h, w = profile.opt_shape
        calib_profile = builder.create_optimization_profile()
        shape = (calibrator.batch_size, 3, h, w)
        calib_profile.set_shape(INPUT_NAME, shape, shape, shape)
        config.set_calibration_profile(calib_profile)
    if precision in ("fp16", "bf16", "int8") and fp32_norm:
        pinned = 0
        for i in range(network.num_layers):
            layer = network.get_layer(i)
            if layer.type == trt.LayerType.NORMALIZATION:
                layer.precision = trt.float32
                for j in range(layer.num_outputs):
                    layer.set_output_type(j, trt.float32)
                pinned += 1
        if pinned:
            config.set_flag(trt.BuilderFlag.PREFER_PRECISION_CONSTRAINTS)
            LOG.info("kept %d normalisation layers in fp32", pinned)
    if dla_core is not None:
        if builder.num_DLA_cores == 0:
            raise RuntimeError("this device has no DLA cores (DLA exists on Jetson Orin/Xavier); drop --dla-core")
        if not 0 <= dla_core < builder.num_DLA_cores:
            raise ValueError(f"DLA core {dla_core} does not exist; this device has {builder.num_DLA_cores}")
        if precision not in ("fp16", "int8"):
            raise UnsupportedPrecisionError("DLA runs fp16 or int8 only; use --precision fp16 or int8 with --dla-core")
        config.default_device_type = trt.DeviceType.DLA
        config.DLA_core = int(dla_core)
        config.set_flag(trt.BuilderFlag.GPU_FALLBACK)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise RuntimeError(
            "TensorRT failed to build the engine: " + ("; ".join(logger.errors[-5:]) or "see the log above")
        )
    return bytes(serialized)


class TensorRTBackend(Backend):
    """Runs a TensorRT engine built (and cached) from a ``.pt``/``.onnx`` model, or an engine file from ``export``."""

    NAME = "tensorrt"

    def __init__(
        self,
        model_path: str | Path,
        device: str | torch.device = "auto",
        precision: str = "fp16",
        class_table: ClassTable | None = None,
        cache_dir: str | Path | None = None,
        profile_hw: Sequence[tuple[int, int]] | None = None,
        max_batch_size: int = 1,
        opt_batch: int | None = None,
        min_hw: tuple[int, int] | None = DEFAULT_MIN_HW,
        workspace_gb: float = 4.0,
        fp32_norm: bool = True,
        tf32: bool = False,
        calibration_images: str | Path | None = None,
        calibration_cache: str | Path | None = None,
        calibration_limit: int = 500,
        calibration_batch: int = 8,
        dla_core: int | None = None,
        opset: int = DEFAULT_OPSET,
    ) -> None:
        super().__init__(model_path, device, precision, class_table)
        if self.device.type != "cuda":
            raise RuntimeError(
                "the tensorrt backend needs a CUDA GPU (device 'cuda' or 'auto' on a GPU machine); use the torch or "
                "onnxruntime backend on the CPU"
            )
        major, _ = torch.cuda.get_device_capability(self.device)
        if _WEAK_TYPING:
            supported: tuple[str, ...] = ("fp32", "fp16", "int8") + (("bf16",) if major >= 8 else ())
            hint = "bf16 needs compute capability >= 8.0 (Ampere or newer); use fp16"
        else:
            supported = ("fp32",)
            hint = (
                f"TensorRT {trt.__version__} removed the fp16/int8 builder flags (strong typing only); use "
                "TensorRT 10.x (JetPack 6, 'pip install tensorrt~=10.0') for fp16/int8, or fp32"
            )
        self.precision = check_precision(precision, supported, self.NAME, self.device, hint)
        self.cache = EngineCache(cache_dir)
        self.profile = InputProfile.from_sizes(
            list(profile_hw or DEFAULT_PROFILE_HW), max_batch=max_batch_size, opt_batch=opt_batch or 1, min_hw=min_hw
        )
        self.workspace_gb = float(workspace_gb)
        self.fp32_norm = bool(fp32_norm)
        self.tf32 = bool(tf32)
        self.dla_core = dla_core
        self.opset = opset
        self.calibration_images = calibration_images
        self.calibration_cache = Path(calibration_cache) if calibration_cache else None
        self.calibration_limit = calibration_limit
        self.calibration_batch = calibration_batch
        self.pin_memory = True
        self.engine_path: Path | None = None
        self.cache_result: CacheResult | None = None
        self._runtime: Any = None
        self._engine: Any = None
        self._context: Any = None
        self._output_dtypes: dict[str, torch.dtype] = {}
        self._input_dtype = torch.float32

    @property
    def input_dtype(self) -> torch.dtype:
        return self._input_dtype

    # ------------------------------------------------------------------ engine preparation
    def _key(self, onnx_path: Path, calibration_sha: str | None) -> EngineKey:
        env = current_environment(self.device)
        return EngineKey(
            tensorrt_version=env["tensorrt_version"],
            gpu_name=env["gpu_name"],
            compute_capability=env["compute_capability"],
            precision=self.precision,
            profile=self.profile,
            model_sha256=file_sha256(onnx_path),
            dla_core=self.dla_core,
            calibration_sha256=calibration_sha,
            builder_options={"workspace_gb": self.workspace_gb, "fp32_norm": self.fp32_norm, "tf32": self.tf32},
        )

    def prepare_engine(self) -> CacheResult:
        """Find or build the engine for this configuration (what ``bisenetformer export --format tensorrt`` runs)."""
        if self.precision == "int8" and not (
            self.calibration_images or (self.calibration_cache and self.calibration_cache.is_file())
        ):
            raise ValueError(
                "int8 needs calibration data: pass calibration_images (a folder of representative camera frames, "
                "--calibration-images) or an existing calibration_cache file; or use --precision fp16"
            )
        onnx_path = ensure_onnx(self.model_path, self.cache.root, self.opset)
        meta = read_onnx_metadata(onnx_path)
        images = None
        calibration_sha = None
        calib_cache = self.calibration_cache
        if self.precision == "int8":
            if self.calibration_images:
                images = CalibrationImages(self.calibration_images, self.calibration_limit)
                calibration_sha = images.digest()
            else:
                assert calib_cache is not None
                calibration_sha = file_sha256(calib_cache)
        key = self._key(onnx_path, calibration_sha)
        if self.precision == "int8" and calib_cache is None:
            name = f"{key.model_sha256[:12]}-{(calibration_sha or '')[:12]}-{key.profile.tag()}.calib"
            calib_cache = self.cache.root / "calibration" / name

        def build() -> bytes:
            calibrator = None
            if self.precision == "int8":
                assert calib_cache is not None
                batch = min(self.calibration_batch, len(images)) if images is not None else self.calibration_batch
                calibrator = EntropyCalibrator(
                    images,
                    (key.profile.opt_shape[2], key.profile.opt_shape[3]),
                    batch,
                    calib_cache,
                    self.device,
                    meta.inference,
                )
            return build_serialized_engine(
                onnx_path,
                key.profile,
                self.precision,
                self.device,
                workspace_gb=self.workspace_gb,
                fp32_norm=self.fp32_norm,
                calibrator=calibrator,
                dla_core=self.dla_core,
                tf32=self.tf32,
            )

        metadata = {
            "class_table": meta.class_table.to_dict(),
            "model_config": meta.model_config,
            "inference": meta.inference.to_dict(),
            "onnx_path": str(onnx_path.resolve()),
            "source_sha256": meta.source_sha256,
        }
        return self.cache.get_or_build(key, build, metadata, stem=Path(self.model_path).stem)

    def _load_explicit_engine(self) -> tuple[bytes, Any]:
        """An engine file given by the user: verified against this machine; rebuilt from its ONNX when stale."""
        header = read_engine_header(self.model_path)  # foreign/corrupt files fail here, before TensorRT
        env = current_environment(self.device)
        diffs = header.key.environment_differences(**env)
        if diffs:
            source = Path(str(header.metadata.get("onnx_path", "")))
            if source.is_file() and file_sha256(source) == header.key.model_sha256:
                LOG.warning(
                    "engine %s was built for another environment (%s); rebuilding it from %s into the cache",
                    self.model_path,
                    "; ".join(diffs),
                    source,
                )
                self.precision = header.key.precision
                self.profile = header.key.profile
                self.dla_core = header.key.dla_core
                original = self.model_path
                self.model_path = source
                try:
                    result = self.prepare_engine()
                finally:
                    self.model_path = original
                self.cache_result = result
                return result.payload, result.header
            raise EngineMismatchError(
                f"engine '{self.model_path}' cannot run here: " + "; ".join(diffs) + ". Engines are specific to a "
                "GPU model and TensorRT version: rebuild it on this machine with 'bisenetformer export --format "
                "tensorrt --model <model.pt>' (or pass the .pt/.onnx model and let the backend build and cache it)",
                diffs,
            )
        if self.precision != header.key.precision:
            LOG.warning(
                "engine %s was built for %s; the requested precision %s does not apply (it is fixed at build time)",
                self.model_path,
                header.key.precision,
                self.precision,
            )
        self.precision = header.key.precision
        self.profile = header.key.profile
        self.dla_core = header.key.dla_core
        payload, header = read_engine(self.model_path, expected=header.key)  # checksum before deserialising
        return payload, header

    # ------------------------------------------------------------------ Backend hooks
    def _load(self) -> BackendInfo:
        if self.model_path.suffix.lower() in ENGINE_FILE_SUFFIXES:
            payload, header = self._load_explicit_engine()
            self.engine_path = self.model_path
        else:
            result = self.prepare_engine()
            self.cache_result = result
            payload, header = result.payload, result.header
            self.engine_path = result.path
        try:
            self.class_table = ClassTable.from_dict(header.metadata["class_table"])
            self.model_config = dict(header.metadata.get("model_config") or {})
            self.inference_defaults = InferenceDefaults.from_dict(header.metadata.get("inference"))
        except (KeyError, ValueError, TypeError) as exc:
            raise RuntimeError(f"engine '{self.engine_path}' lacks its class table ({exc}); rebuild it") from None
        torch.cuda.set_device(self.device)
        self._runtime = trt.Runtime(trt_logger())
        if self.dla_core is not None:
            self._runtime.DLA_core = int(self.dla_core)
        engine = self._runtime.deserialize_cuda_engine(payload)
        if engine is None:
            raise RuntimeError(
                f"TensorRT could not deserialise '{self.engine_path}' (see the log); delete it and let it rebuild, or "
                f"run 'bisenetformer export --format tensorrt' again"
            )
        self._engine = engine
        self._context = engine.create_execution_context()
        if self._context is None:
            raise RuntimeError("TensorRT could not create an execution context (out of GPU memory?)")
        names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
        inputs = [n for n in names if engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        outputs = [n for n in names if engine.get_tensor_mode(n) == trt.TensorIOMode.OUTPUT]
        if inputs != [INPUT_NAME] or sorted(outputs) != sorted(OUTPUT_NAMES):
            raise RuntimeError(
                f"engine has inputs {inputs} / outputs {outputs}; expected {INPUT_NAME} / {OUTPUT_NAMES}"
            )
        self._input_dtype = _torch_dtype(engine.get_tensor_dtype(INPUT_NAME))
        self._output_dtypes = {n: _torch_dtype(engine.get_tensor_dtype(n)) for n in outputs}
        mins, _opt, maxs = engine.get_tensor_profile_shape(INPUT_NAME, 0)
        device_mem = getattr(engine, "device_memory_size_v2", None)
        if device_mem is None:
            device_mem = getattr(engine, "device_memory_size", 0)
        return BackendInfo(
            name=self.NAME,
            device=str(self.device),
            precision=self.precision,
            max_batch=int(maxs[0]),
            min_hw=(int(mins[2]), int(mins[3])),
            max_hw=(int(maxs[2]), int(maxs[3])),
            details={
                "engine": str(self.engine_path),
                "tensorrt": str(trt.__version__),
                "built": bool(self.cache_result.built) if self.cache_result else False,
                "profile": self.profile.to_dict(),
                "dla_core": self.dla_core,
                "activation_memory_bytes": int(device_mem or 0),
                "num_queries": self.model_config.get("num_queries"),
                "backbone": self.model_config.get("backbone"),
            },
        )

    def _infer(self, batch: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        ctx = self._context
        x = batch.to(device=self.device, dtype=self._input_dtype).contiguous()
        if not ctx.set_input_shape(INPUT_NAME, tuple(x.shape)):
            raise RuntimeError(f"TensorRT rejected input shape {tuple(x.shape)} (profile {self.profile.to_dict()})")
        ctx.set_tensor_address(INPUT_NAME, int(x.data_ptr()))
        outs: dict[str, torch.Tensor] = {}
        for name in OUTPUT_NAMES:
            shape = tuple(ctx.get_tensor_shape(name))
            if any(d < 0 for d in shape):
                raise RuntimeError(f"TensorRT could not infer the shape of '{name}' for input {tuple(x.shape)}")
            t = torch.empty(shape, dtype=self._output_dtypes[name], device=self.device)
            ctx.set_tensor_address(name, int(t.data_ptr()))
            outs[name] = t
        stream = torch.cuda.current_stream(self.device)
        if not ctx.execute_async_v3(stream.cuda_stream):
            raise RuntimeError("TensorRT execution failed (see the log)")
        return outs[OUTPUT_NAMES[0]], outs[OUTPUT_NAMES[1]]

    def _close(self) -> None:
        self._context = None
        self._engine = None
        self._runtime = None
        torch.cuda.empty_cache()


def build_engine_file(
    model_path: str | Path,
    output: str | Path | None = None,
    device: str | torch.device = "auto",
    precision: str = "fp16",
    **options: Any,
) -> tuple[Path, CacheResult]:
    """Ahead-of-time build (``bisenetformer export --format tensorrt``): cache it and optionally copy to ``output``.

    The copy keeps the verified header, so it can be given later as the model of the tensorrt backend.
    """
    backend = TensorRTBackend(model_path, device=device, precision=precision, **options)
    result = backend.prepare_engine()
    path = result.path
    if output is not None:
        path = write_engine(Path(output), result.payload, result.header.key, result.header.metadata)
    return path, result
