"""``backend: auto`` (the fastest exact path for the device) and ONNX Runtime int8 (static quantisation, cached)."""

from __future__ import annotations

import logging
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from bisenetformer_ros.backend_choice import BACKEND_CHOICES, DEFAULT_BACKEND, choose_backend
from bisenetformer_ros.data.classes import CITYSCAPES
from bisenetformer_ros.data.synthetic import VAL_SEED, render_scene
from bisenetformer_ros.inference import Segmenter, create_backend
from bisenetformer_ros.inference.calibration import SyntheticCalibration, calibration_set
from bisenetformer_ros.inference.export import read_onnx_metadata
from bisenetformer_ros.inference.quantize import META_QUANTIZATION
from bisenetformer_ros.resources import default_model_path

pytest.importorskip("onnxruntime", reason="ONNX Runtime is part of the suite's environment (tools/bootstrap.sh)")


def test_auto_is_the_default_and_a_choice() -> None:
    assert DEFAULT_BACKEND == "auto"
    assert BACKEND_CHOICES[0] == "auto"


@pytest.mark.parametrize(
    ("path", "device", "precision", "options", "expected"),
    [
        ("m.pt", "cpu", "fp32", {}, "onnxruntime"),
        ("m.pt", "cpu", "int8", {}, "onnxruntime"),
        ("m.pt", "cpu", "bf16", {}, "torch"),
        ("m.pt", "cpu", "fp32", {"compile": True}, "torch"),
        ("m.pt", "cpu", "fp32", {"compile": False, "channels_last": None}, "onnxruntime"),
        ("m.pt", "cuda", "fp16", {}, "torch"),
        ("m.pt", "cuda", "int8", {}, "tensorrt"),
        ("m.onnx", "cuda", "fp32", {}, "onnxruntime"),
        ("m.engine", "cuda", "fp16", {}, "tensorrt"),
        ("m.plan", "cpu", "fp32", {}, "tensorrt"),
    ],
)
def test_choice_rule(path: str, device: str, precision: str, options: dict, expected: str) -> None:
    choice = choose_backend(path, device, precision, options)
    assert choice.name == expected
    assert choice.reason  # logged and shown in the backend's details


@pytest.mark.slow
def test_auto_runs_onnxruntime_on_cpu_and_says_why(tmp_path: Path, tiny_model: Path) -> None:
    be = create_backend("auto", tiny_model, device="cpu", cache_dir=tmp_path / "cache")
    try:
        assert be.NAME == "onnxruntime"
        assert be.info.details["selected_by"].startswith("auto: CPU fp32")
        # The export is cached: a second backend finds it instead of exporting again.
        (onnx_file,) = (tmp_path / "cache" / "onnx").glob("*.onnx")
        mtime = onnx_file.stat().st_mtime_ns
        be2 = create_backend("auto", tiny_model, device="cpu", cache_dir=tmp_path / "cache")
        be2.close()
        assert onnx_file.stat().st_mtime_ns == mtime
    finally:
        be.close()


def test_auto_with_torch_options_runs_torch_and_drops_foreign_options(tiny_model: Path, tmp_path: Path) -> None:
    # cache_dir is an ONNX Runtime / TensorRT option: auto must not fail on it when it picks PyTorch.
    be = create_backend("auto", tiny_model, device="cpu", channels_last=True, cache_dir=tmp_path)
    try:
        assert be.NAME == "torch"
        assert "channels_last" in be.info.details["selected_by"]
    finally:
        be.close()


@pytest.mark.slow
def test_auto_matches_torch_labels(tiny_model: Path, tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 256, (96, 128, 3), dtype=np.uint8) for _ in range(2)]
    ref = Segmenter.from_model(tiny_model, backend="torch", device="cpu")
    auto = Segmenter.from_model(tiny_model, backend="auto", device="cpu", cache_dir=tmp_path)
    try:
        assert auto.backend.NAME == "onnxruntime"
        for a, b in zip(ref.run(images), auto.run(images), strict=True):
            assert np.mean(a.output.semantic == b.output.semantic) >= 0.999
    finally:
        ref.backend.close()
        auto.backend.close()


def test_synthetic_calibration_is_the_training_split() -> None:
    cal = SyntheticCalibration(limit=3)
    (batch,) = list(cal.batches(3))
    # Training seeds start at TRAIN_SEED; none of them is a held-out seed.
    assert all(img.shape[2] == 3 and img.dtype == np.uint8 for img in batch)
    assert not np.array_equal(batch[0], render_scene(VAL_SEED).image)
    assert cal.digest() == SyntheticCalibration(limit=3).digest() != SyntheticCalibration(limit=4).digest()
    assert isinstance(calibration_set("synthetic", limit=500), SyntheticCalibration)


@pytest.mark.slow
@pytest.mark.slow
def test_int8_shipped_model_calibrates_once_and_keeps_the_labels(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """int8 of the shipped model, calibrated on synthetic training scenes, against fp32 on held-out scenes."""
    model = default_model_path()
    opts = {"cache_dir": tmp_path, "calibration_limit": 16}
    fp32 = Segmenter.from_model(model, backend="onnxruntime", device="cpu", cache_dir=tmp_path)
    int8 = Segmenter.from_model(model, backend="auto", device="cpu", precision="int8", **opts)
    try:
        info = int8.backend.info
        assert info.name == "onnxruntime" and info.precision == "int8"
        record = info.details["int8"]
        assert record["images"] == 16 and record["ops"] == ["Conv"] and record["format"] == "QDQ"
        q_path = Path(info.details["onnx"])
        assert META_QUANTIZATION in read_onnx_metadata(q_path).metadata
        import onnx

        ops = {n.op_type for n in onnx.load(str(q_path)).graph.node}
        assert {"QuantizeLinear", "DequantizeLinear"} <= ops
        images = [render_scene(VAL_SEED + i, 128, 160).image for i in range(4)]
        agree = [
            np.mean(a.output.semantic == b.output.semantic)
            for a, b in zip(fp32.run(images), int8.run(images), strict=True)
        ]
        assert min(agree) >= 0.95, agree
        # The int8 graph really runs (not the fp32 graph under another name): raw mask logits differ, a little.
        x, _ = fp32.preprocessor(images[:1])
        m32, m8 = fp32.backend.infer(x)[1], int8.backend.infer(x)[1]
        assert not torch.equal(m32, m8)
        assert float((m32 - m8).abs().mean()) < 0.25 * float(m32.abs().mean())
    finally:
        fp32.backend.close()
        int8.backend.close()
    # Second start: the cached int8 file is used, no calibration.
    caplog.set_level(logging.INFO, logger="bisenetformer_ros.inference.quantize")
    again = create_backend("onnxruntime", model, device="cpu", precision="int8", **opts)
    again.close()
    assert any("using cached int8 model" in r.getMessage() for r in caplog.records)
    assert not any("quantising" in r.getMessage() for r in caplog.records)


@pytest.mark.slow
def test_int8_needs_calibration_data_for_a_foreign_label_space(tiny_model: Path, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="int8 needs calibration data"):
        create_backend("onnxruntime", tiny_model, device="cpu", precision="int8", cache_dir=tmp_path)


@pytest.mark.slow
@pytest.mark.slow
def test_int8_from_a_folder_of_camera_frames(tiny_model: Path, tmp_path: Path) -> None:
    frames = tmp_path / "frames"
    frames.mkdir()
    rng = np.random.default_rng(1)
    for i in range(3):
        cv2.imwrite(str(frames / f"{i:03d}.png"), rng.integers(0, 256, (64, 96, 3), dtype=np.uint8))
    be = create_backend(
        "onnxruntime", tiny_model, device="cpu", precision="int8", cache_dir=tmp_path, calibration_images=frames
    )
    try:
        assert be.info.details["int8"]["images"] == 3
        assert be.class_table.names == CITYSCAPES.names
    finally:
        be.close()
