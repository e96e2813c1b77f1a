"""TensorRT backend on a real GPU: engine build, cache hit, invalidation, explicit engine files, fp16/int8 parity.

Needs the ``tensorrt`` Python package and a CUDA GPU; skipped (with the reason) elsewhere. The pure-Python parts
(cache keys, container checks, calibration data) are tested everywhere in test_inference_engine_cache.py.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from tests.inference_models import camera_like_images, make_model_file

pytestmark = pytest.mark.gpu

trt = pytest.importorskip("tensorrt", reason="the TensorRT tests need the 'tensorrt' Python package")
if not torch.cuda.is_available():
    pytest.skip("the TensorRT tests need a CUDA GPU visible to torch", allow_module_level=True)

from bisenetformer_ros.cli.main import main  # noqa: E402
from bisenetformer_ros.inference import InputShapeError, Segmenter, create_backend  # noqa: E402
from bisenetformer_ros.inference.engine_cache import (  # noqa: E402
    EngineFileError,
    EngineMismatchError,
    read_engine,
    write_engine,
)

PROFILE = {"profile_hw": [(128, 160)], "min_hw": (64, 64), "max_batch_size": 2}


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("trt_cache")


def max_diff(a: tuple[torch.Tensor, ...], b: tuple[torch.Tensor, ...]) -> float:
    return max((x.float() - y.float()).abs().max().item() for x, y in zip(a, b, strict=True))


def test_fp32_engine_builds_matches_torch_and_is_cached(tiny_model: Path, cache_dir: Path) -> None:
    backend = create_backend("tensorrt", tiny_model, device="cuda", precision="fp32", cache_dir=cache_dir, **PROFILE)
    info = backend.info
    assert info.details["built"] is True
    assert info.max_batch == 2 and info.min_hw == (64, 64) and info.max_hw == (128, 160)
    ref = create_backend("torch", tiny_model, device="cuda")
    x = torch.randn(2, 3, 128, 160, device="cuda")
    got = backend.infer(x)
    want = ref.infer(x)
    assert got[0].device.type == "cuda"  # outputs stay on the GPU for post-processing
    # Content guard: the tolerance is only meaningful against outputs far from zero (std ~6 and ~20 on the CPU).
    assert all(float(t.float().std()) > 1.0 for t in want)
    assert max_diff(got, want) < 1e-3
    small = torch.randn(1, 3, 64, 96, device="cuda")  # another shape inside the profile
    assert max_diff(backend.infer(small), ref.infer(small)) < 1e-3
    again = create_backend("tensorrt", tiny_model, device="cuda", precision="fp32", cache_dir=cache_dir, **PROFILE)
    assert again.info.details["built"] is False  # cache hit
    assert again.engine_path == backend.engine_path


def test_input_larger_than_profile_is_refused(tiny_model: Path, cache_dir: Path) -> None:
    seg = Segmenter.from_model(
        tiny_model, backend="tensorrt", device="cuda", precision="fp32", cache_dir=cache_dir, **PROFILE
    )
    with pytest.raises(InputShapeError, match=r"larger than the tensorrt engine profile maximum 128x160"):
        seg.run(camera_like_images([(256, 320)]))
    with pytest.raises(InputShapeError, match=r"batch of 3 exceeds"):
        seg.backend.infer(torch.zeros(3, 3, 128, 160, device="cuda"))
    assert seg.run(camera_like_images([(120, 150)]))[0].output.semantic.shape == (120, 150)


def test_stale_and_corrupt_engines_are_rebuilt(
    tiny_model: Path, cache_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    first = create_backend("tensorrt", tiny_model, device="cuda", precision="fp32", cache_dir=cache_dir, **PROFILE)
    path = first.engine_path
    payload, header = read_engine(path)
    first.close()
    # Pretend the engine came from an older TensorRT: same file name, different key -> stale -> rebuilt.
    write_engine(path, payload, replace(header.key, tensorrt_version="8.6.1"), header.metadata)
    caplog.set_level(logging.WARNING, logger="bisenetformer_ros.inference.engine_cache")
    rebuilt = create_backend("tensorrt", tiny_model, device="cuda", precision="fp32", cache_dir=cache_dir, **PROFILE)
    assert rebuilt.info.details["built"] is True
    assert any("stale engine" in r.getMessage() and "8.6.1" in r.getMessage() for r in caplog.records)
    rebuilt.close()
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    repaired = create_backend("tensorrt", tiny_model, device="cuda", precision="fp32", cache_dir=cache_dir, **PROFILE)
    assert repaired.info.details["built"] is True
    assert any("checksum" in r.getMessage() for r in caplog.records)


def test_export_cli_and_explicit_engine_files(tiny_model: Path, cache_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "robot.engine"
    args = ["export", "--format", "tensorrt", "--model", str(tiny_model), "--precision", "fp16", "--height", "128"]
    args += ["--width", "160", "--min-height", "64", "--min-width", "64", "--cache-dir", str(cache_dir), "-o", str(out)]
    assert main(args) == 0
    backend = create_backend("tensorrt", out, device="cuda", precision="fp16")
    assert backend.info.precision == "fp16" and backend.class_table is not None
    # A foreign file is refused before TensorRT sees it (no segfault).
    foreign = tmp_path / "foreign.engine"
    foreign.write_bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    with pytest.raises(EngineFileError, match=r"not a bisenetformer TensorRT engine"):
        create_backend("tensorrt", foreign, device="cuda")
    # An engine for another GPU without its ONNX source: clear error naming the fix.
    payload, header = read_engine(out)
    meta = {k: v for k, v in header.metadata.items() if k != "onnx_path"}
    other = write_engine(tmp_path / "other_gpu.engine", payload, replace(header.key, gpu_name="Some Other GPU"), meta)
    with pytest.raises(EngineMismatchError, match=r"Some Other GPU.*rebuild it on this machine"):
        create_backend("tensorrt", other, device="cuda")
    # ... and with its ONNX source still present it is rebuilt automatically into the cache.
    stale = write_engine(
        tmp_path / "stale.engine", payload, replace(header.key, gpu_name="Some Other GPU"), header.metadata
    )
    auto = create_backend("tensorrt", stale, device="cuda", cache_dir=cache_dir)
    assert auto.cache_result is not None and auto.cache_result.path.parent == cache_dir / "engines"


def test_fp16_engine_label_agreement_with_torch(tmp_path: Path) -> None:
    model = make_model_file(tmp_path / "stdc1.pt", backbone="stdc1", tiny=False, num_queries=20)
    images = camera_like_images([(256, 320), (256, 320)], seed=2)
    ref = Segmenter.from_model(model, backend="torch", device="cuda", precision="fp32")
    seg = Segmenter.from_model(
        model, backend="tensorrt", device="cuda", precision="fp16", cache_dir=tmp_path, profile_hw=[(256, 320)]
    )
    for a, b in zip(ref.run(images), seg.run(images), strict=True):
        # Content guard: 99 % agreement only means something when the reference labels are not one big class
        # (on the CPU this model gives 6 classes here, the largest under half of the pixels).
        _, counts = np.unique(a.output.semantic, return_counts=True)
        assert len(counts) >= 3 and counts.max() < 0.9 * counts.sum(), counts
        assert (a.output.semantic == b.output.semantic).mean() >= 0.99


def test_int8_engine_with_calibration_folder_and_cache(tiny_model: Path, tmp_path: Path) -> None:
    folder = tmp_path / "calib"
    folder.mkdir()
    for i, img in enumerate(camera_like_images([(128, 160)] * 16, seed=7)):
        cv2.imwrite(str(folder / f"{i:02d}.png"), img[:, :, ::-1])
    opts = {"cache_dir": tmp_path, "calibration_images": folder, "calibration_batch": 4, **PROFILE}
    backend = create_backend("tensorrt", tiny_model, device="cuda", precision="int8", **opts)
    assert backend.info.precision == "int8"
    caches = list((tmp_path / "calibration").glob("*.calib"))
    assert len(caches) == 1 and caches[0].stat().st_size > 0
    x = torch.randn(1, 3, 128, 160, device="cuda")
    logits, masks = backend.infer(x)
    assert torch.isfinite(logits).all() and torch.isfinite(masks).all()
    # Not a constant (e.g. all-zero) engine: the outputs vary like the fp32 network's (std ~6 and ~20 there).
    assert float(logits.float().std()) > 0.1 and float(masks.float().std()) > 0.1
    with pytest.raises(ValueError, match=r"int8 needs calibration data"):
        create_backend("tensorrt", tiny_model, device="cuda", precision="int8", cache_dir=tmp_path / "other")


def test_tensorrt_refuses_cpu(tiny_model: Path) -> None:
    with pytest.raises(RuntimeError, match=r"needs a CUDA GPU"):
        create_backend("tensorrt", tiny_model, device="cpu")
