"""int8 static quantisation of an exported ONNX model for ONNX Runtime on the CPU, calibrated and cached.

Why this shape:

* Static (not dynamic) quantisation: the activation scales are fixed by calibration, so the CPU runs int8 convolutions
  (VNNI / AMX where the CPU has them) without measuring each activation at run time. The graph is written in QDQ form
  (QuantizeLinear/DequantizeLinear pairs around float ops), which ONNX Runtime fuses into int8 kernels and which stays
  readable by any ONNX tool.
* Only convolutions are quantised (per output channel for weights): they are about 60 % of the CPU time of this
  network, while the transformer decoder's matrix products and softmax are small, and quantising them costs accuracy
  for little speed.
* Calibration inputs go through the same :class:`~bisenetformer_ros.model.preprocess.Preprocessor` as inference (the
  model file's pixel mean/std, the network size it records), so the scales describe what the network really sees.
* The result is cached next to the fp32 export, named by the fp32 file's digest, the calibration set's digest and the
  ONNX Runtime version; the ``bisenetformer.*`` metadata (class table, configuration, inference defaults) is carried
  over and a ``bisenetformer.quantization`` entry says how it was made.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from bisenetformer_ros.atomic_io import atomic_path
from bisenetformer_ros.inference.calibration import CalibrationImages, SyntheticCalibration
from bisenetformer_ros.inference.engine_cache import file_lock, file_sha256
from bisenetformer_ros.inference.export import INPUT_NAME, read_onnx_metadata

LOG = logging.getLogger("bisenetformer_ros.inference.quantize")

META_QUANTIZATION = "bisenetformer.quantization"
#: Operators quantised to int8 (see the module docstring for why only these).
QUANTIZED_OPS: tuple[str, ...] = ("Conv",)


def int8_cache_path(fp32_onnx: Path, calibration_digest: str) -> Path:
    """Where the int8 variant of ``fp32_onnx`` calibrated on a given set lives (beside the fp32 export)."""
    import onnxruntime as ort

    sha = file_sha256(fp32_onnx)[:12]
    return fp32_onnx.with_name(f"{fp32_onnx.stem}-int8-{sha}-cal{calibration_digest[:12]}-ort{ort.__version__}.onnx")


def ensure_int8_onnx(
    fp32_onnx: str | os.PathLike,
    calibration: CalibrationImages | SyntheticCalibration,
    input_hw: tuple[int, int] | None = None,
    output_dir: str | os.PathLike | None = None,
) -> Path:
    """The int8 QDQ model for ``fp32_onnx`` calibrated on ``calibration``; built once, then read from the cache.

    ``input_hw``: the calibration resolution (default: the network size the model file records). ``output_dir``:
    where the cached file goes (default: beside ``fp32_onnx``).
    """
    fp32_onnx = Path(fp32_onnx)
    target = int8_cache_path(fp32_onnx, calibration.digest())
    if output_dir is not None:
        target = Path(output_dir) / target.name
    with file_lock(target):
        if target.is_file():
            try:
                meta = read_onnx_metadata(target).metadata
                if META_QUANTIZATION in meta:
                    LOG.info("using cached int8 model %s", target)
                    return target
                reason = "it has no quantisation record"
            except RuntimeError as exc:
                reason = str(exc)
            LOG.warning("cached int8 model %s is unusable (%s); quantising again", target, reason)
        quantize_int8(fp32_onnx, target, calibration, input_hw)
    return target


class _Reader:
    """ONNX Runtime's calibration-reader protocol over pre-processed frames (``get_next`` -> feed dict or None)."""

    def __init__(self, batches: Any, preprocess: Any, total: int) -> None:
        from tqdm import tqdm

        self._batches = batches
        self._pre = preprocess
        self._bar = tqdm(total=total, desc="int8 calibration", unit="img", leave=False)
        self.seen = 0

    def get_next(self) -> dict[str, np.ndarray] | None:
        try:
            frames = next(self._batches)
        except StopIteration:
            self._bar.close()
            return None
        batch, _ = self._pre(frames)
        self.seen += len(frames)
        self._bar.update(len(frames))
        return {INPUT_NAME: batch.numpy().astype(np.float32, copy=False)}

    def rewind(self) -> None:  # pragma: no cover - only multi-pass calibrators call it
        raise RuntimeError("the calibration set is read once")


def quantize_int8(
    fp32_onnx: Path,
    target: Path,
    calibration: CalibrationImages | SyntheticCalibration,
    input_hw: int | tuple[int, int] | None = None,
) -> Path:
    """Calibrate and write the int8 QDQ model (atomically) with the source's metadata plus a quantisation record."""
    import onnx
    import onnxruntime as ort
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    from bisenetformer_ros.model.preprocess import Preprocessor

    info = read_onnx_metadata(fp32_onnx)
    defaults = info.inference
    hw = input_hw if input_hw is not None else defaults.input_size  # None: each image at its own size
    pre = Preprocessor(input_size=hw, device="cpu", mean=defaults.pixel_mean, std=defaults.pixel_std)
    t0 = time.perf_counter()
    LOG.info("quantising %s to int8 (once; %d calibration images at %s)", fp32_onnx.name, len(calibration), hw)
    with tempfile.TemporaryDirectory(prefix="bisenetformer-int8-") as tmp:
        prepared = Path(tmp) / "prepared.onnx"
        quantized = Path(tmp) / "int8.onnx"
        # Shape inference and graph clean-up first, as ONNX Runtime recommends for static quantisation.
        quant_pre_process(str(fp32_onnx), str(prepared), skip_symbolic_shape=True)
        reader = _Reader(calibration.batches(1), pre, len(calibration))
        quantize_static(
            str(prepared),
            str(quantized),
            reader,
            quant_format=QuantFormat.QDQ,
            op_types_to_quantize=list(QUANTIZED_OPS),
            per_channel=True,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            calibrate_method=CalibrationMethod.MinMax,
        )
        if reader.seen == 0:
            raise ValueError("the calibration set yielded no images")
        proto = onnx.load(str(quantized))
        record = {
            "format": "QDQ",
            "ops": list(QUANTIZED_OPS),
            "per_channel": True,
            "method": "minmax",
            "images": reader.seen,
            "input_size": list(hw) if isinstance(hw, tuple) else hw,
            "calibration_sha256": calibration.digest(),
            "source_onnx_sha256": file_sha256(fp32_onnx),
            "onnxruntime": ort.__version__,
        }
        meta = {**info.metadata, META_QUANTIZATION: json.dumps(record, sort_keys=True)}
        del proto.metadata_props[:]
        for k, v in meta.items():
            entry = proto.metadata_props.add()
            entry.key, entry.value = k, v
        with atomic_path(target) as out:
            onnx.save(proto, str(out))
    LOG.info("int8 model written: %s (%.1f s)", target, time.perf_counter() - t0)
    return target
