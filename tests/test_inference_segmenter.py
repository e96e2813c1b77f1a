"""PyTorch backend and the Segmenter pipeline: outputs, batching, timings and bad input (clear errors)."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from bisenetformer_ros.data.classes import CITYSCAPES, ClassTable
from bisenetformer_ros.inference import (
    Backend,
    BackendInfo,
    ClassTableMismatchError,
    InputShapeError,
    Segmenter,
    UnsupportedPrecisionError,
    available_backends,
    create_backend,
)
from bisenetformer_ros.inference.torch_backend import TorchBackend
from bisenetformer_ros.model import PostprocessConfig, Preprocessor, load_model, postprocess_batch
from tests.inference_models import camera_like_images

torch.set_num_threads(1)

OTHER_TABLE = ClassTable(
    dataset="warehouse",
    names=("floor", "shelf", "forklift"),
    colors=((10, 10, 10), (20, 20, 20), (30, 30, 30)),
    is_thing=(False, False, True),
)


def test_segmenter_outputs_match_direct_model_call(tiny_model: Path) -> None:
    """The pipeline is exactly Preprocessor -> model -> postprocess_batch, at each image's original size."""
    seg = Segmenter.from_model(tiny_model, backend="torch", device="cpu")
    images = camera_like_images([(100, 130), (64, 90)])
    results = seg.run(images, tasks=("semantic", "panoptic"))
    loaded = load_model(tiny_model)
    batch, metas = Preprocessor()(images)
    with torch.no_grad():
        out = loaded.model(batch)
    expected = postprocess_batch(out["pred_logits"], out["pred_masks"], metas, class_table=CITYSCAPES)
    assert len(results) == 2
    for r, e, img in zip(results, expected, images, strict=True):
        assert r.output.semantic.shape == img.shape[:2]
        np.testing.assert_array_equal(r.output.semantic, e.semantic)
        np.testing.assert_array_equal(r.output.panoptic.id_map, e.panoptic.id_map)
        assert r.output.panoptic.segments == e.panoptic.segments
        assert set(r.timings) == {"preprocess", "inference", "postprocess"}
        assert all(v > 0 for v in r.timings.values())
        assert r.batch_size == 2 and r.call_index == 0
    assert len(np.unique(results[0].output.semantic)) > 1  # the sharpened random model gives non-trivial maps
    assert seg.class_table == CITYSCAPES
    info = seg.backend.info
    assert (info.name, info.device, info.precision) == ("torch", "cpu", "fp32")
    assert info.max_batch is None and info.max_hw is None


@pytest.mark.slow
def test_segmenter_splits_into_max_batch_calls_and_keeps_order(tiny_model: Path) -> None:
    seg = Segmenter.from_model(tiny_model, device="cpu", max_batch=2)
    images = camera_like_images([(64, 64), (96, 64), (64, 96), (70, 70), (64, 64)], seed=3)
    results = seg.run(images, tasks=("semantic",))
    assert [r.output.semantic.shape for r in results] == [im.shape[:2] for im in images]
    assert [r.call_index for r in results] == [0, 0, 1, 1, 2]
    assert [r.batch_size for r in results] == [2, 2, 2, 2, 1]
    assert all(r.output.panoptic is None for r in results)
    # Equal-sized frames: batching does not change results (mixed sizes are padded to a common size, which the
    # network does see, as in any padded batch).
    same = camera_like_images([(64, 96)] * 3, seed=4)
    batched = seg.run(same, tasks=("semantic",))
    for r, im in zip(batched, same, strict=True):
        single = seg.run([im], tasks=("semantic",))[0].output.semantic
        assert (r.output.semantic == single).mean() >= 0.999
    assert seg.run([]) == []


@pytest.mark.slow
def test_fixed_input_size_and_instances(tiny_model: Path) -> None:
    seg = Segmenter.from_model(
        tiny_model, device="cpu", input_size=(64, 96), postprocess_config=PostprocessConfig(instance_topk=5)
    )
    assert seg.preprocessor.input_size == (64, 96)
    [r] = seg.run(camera_like_images([(120, 200)]), tasks=("semantic", "instance"))
    assert r.output.semantic.shape == (120, 200)  # back at the original size
    assert r.output.instances is not None and len(r.output.instances) <= 5
    assert r.output.instances.masks.shape[1:] == (120, 200)


def test_bf16_on_cpu_runs_and_mostly_agrees(tiny_model: Path) -> None:
    images = camera_like_images([(64, 96)], seed=5)
    ref = Segmenter.from_model(tiny_model, device="cpu").run(images, ("semantic",))[0].output.semantic
    seg = Segmenter.from_model(tiny_model, device="cpu", precision="bf16")
    assert seg.backend.input_dtype == torch.bfloat16
    logits, masks = seg.backend.infer(torch.zeros(1, 3, 64, 96, dtype=torch.bfloat16))
    assert logits.dtype == torch.float32 and masks.dtype == torch.float32  # outputs always float32
    out = seg.run(images, ("semantic",))[0].output.semantic
    assert (out == ref).mean() > 0.8  # bf16 has an 8-bit mantissa: close, not identical


def test_channels_last_gives_same_outputs(tiny_model: Path) -> None:
    x = torch.randn(1, 3, 64, 96)
    a = TorchBackend(tiny_model, device="cpu", channels_last=False).load().infer(x)
    b = TorchBackend(tiny_model, device="cpu", channels_last=True).load().infer(x)
    assert b[0].shape == a[0].shape
    assert max((p - q).abs().max().item() for p, q in zip(a, b, strict=True)) < 1e-3


def test_inference_delay_makes_any_backend_slower_for_load_tests(tiny_model: Path) -> None:
    """``inference_delay_ms``: a deliberately slow backend (overload/latency tests), visible in info and timings."""
    seg = Segmenter.from_model(tiny_model, device="cpu", inference_delay_ms=120)
    assert seg.backend.inference_delay_ms == 120.0
    assert seg.backend.info.details["inference_delay_ms"] == 120.0
    images = camera_like_images([(64, 64)])
    [slow] = seg.run(images, ("semantic",))
    assert slow.timings["inference"] >= 0.12
    seg.backend.inference_delay_ms = 0
    [fast] = seg.run(images, ("semantic",))
    assert fast.timings["inference"] < slow.timings["inference"]
    np.testing.assert_array_equal(fast.output.semantic, slow.output.semantic)  # only slower, never different
    with pytest.raises(ValueError, match=r"inference_delay_ms must be a finite number >= 0"):
        create_backend("torch", tiny_model, device="cpu", inference_delay_ms=-5)


def test_postprocess_alias(tiny_model: Path) -> None:
    config = PostprocessConfig(instance_topk=3)
    assert Segmenter.from_model(tiny_model, device="cpu", postprocess=config).postprocess_config == config
    with pytest.raises(ValueError, match=r"not both"):
        Segmenter.from_model(tiny_model, device="cpu", postprocess=config, postprocess_config=config)


def test_backend_context_manager_warmup_and_close(tiny_model: Path) -> None:
    with create_backend("torch", tiny_model, device="cpu") as backend:
        assert backend.loaded
        backend.warmup((1, 3, 64, 64), iterations=1)
        assert "torch on cpu (fp32)" in repr(backend)
    assert not backend.loaded and backend.model is None


# ---------------------------------------------------------------------------------------------------- bad input
def test_missing_model_file_names_path_and_fix(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"absent\.pt' does not exist; pass the path of a \.pt model"):
        Segmenter.from_model(tmp_path / "absent.pt", device="cpu")


def test_not_a_model_file(tmp_path: Path) -> None:
    bad = tmp_path / "weights.pt"
    torch.save({"some": torch.zeros(2)}, bad)
    with pytest.raises(RuntimeError, match=r"not a bisenetformer checkpoint"):
        create_backend("torch", bad, device="cpu")


def test_model_for_another_class_table_is_refused(tiny_model: Path) -> None:
    with pytest.raises(ClassTableMismatchError, match=r"trained for class table 'cityscapes'.*'warehouse'"):
        Segmenter.from_model(tiny_model, device="cpu", class_table=OTHER_TABLE)
    renamed = replace(CITYSCAPES, names=("street", *CITYSCAPES.names[1:]))
    with pytest.raises(ClassTableMismatchError, match=r"class 0: name 'road' != 'street'"):
        create_backend("torch", tiny_model, device="cpu", class_table=renamed)
    # the matching table is accepted
    assert create_backend("torch", tiny_model, device="cpu", class_table=CITYSCAPES).class_table == CITYSCAPES


def test_unsupported_precisions_name_the_fix(tiny_model: Path) -> None:
    with pytest.raises(UnsupportedPrecisionError, match=r"CPUs have no fp16 arithmetic.*use fp32"):
        create_backend("torch", tiny_model, device="cpu", precision="fp16")
    with pytest.raises(UnsupportedPrecisionError, match=r"'int8' is not supported by the torch backend"):
        create_backend("torch", tiny_model, device="cpu", precision="int8")
    with pytest.raises(UnsupportedPrecisionError, match=r"unknown precision 'fp8'"):
        create_backend("torch", tiny_model, device="cpu", precision="fp8")


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message on a machine without CUDA")
def test_cuda_request_without_gpu(tiny_model: Path) -> None:
    with pytest.raises(RuntimeError, match=r"sees no CUDA GPU.*use device 'cpu'"):
        create_backend("torch", tiny_model, device="cuda")


def test_unknown_backend_device_and_options(tiny_model: Path) -> None:
    with pytest.raises(ValueError, match=r"unknown backend 'openvino'"):
        create_backend("openvino", tiny_model)
    with pytest.raises(ValueError, match=r"unknown device 'tpu:0'|device type 'tpu'"):
        create_backend("torch", tiny_model, device="tpu:0")
    with pytest.raises(ValueError, match=r"torch backend: .*unexpected keyword argument 'profile_hw'"):
        create_backend("torch", tiny_model, device="cpu", profile_hw=[(512, 512)])


def test_torch_backend_refuses_onnx_file(tmp_path: Path) -> None:
    onnx_file = tmp_path / "m.onnx"
    onnx_file.write_bytes(b"\x08\x07")
    with pytest.raises(ValueError, match=r"runs .pt model files.*--backend onnxruntime"):
        create_backend("torch", onnx_file, device="cpu")


def test_bad_images_and_batches(tiny_model: Path) -> None:
    seg = Segmenter.from_model(tiny_model, device="cpu")
    with pytest.raises(ValueError, match=r"expected an HxWx3 RGB array"):
        seg.run([np.zeros((10, 10), np.uint8)])
    with pytest.raises(ValueError, match=r"expected dtype uint8"):
        seg.run([np.zeros((10, 10, 3), np.float32)])
    with pytest.raises(ValueError, match=r"not a single array"):
        seg.run(np.zeros((10, 10, 3), np.uint8))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"unknown task"):
        seg.run(camera_like_images([(32, 32)]), tasks=("depth",))
    with pytest.raises(InputShapeError, match=r"not a multiple of 32"):
        seg.backend.infer(torch.zeros(1, 3, 50, 64))
    with pytest.raises(InputShapeError, match=r"\[B,3,H,W\]"):
        seg.backend.infer(torch.zeros(3, 64, 64))


class ProfiledTorchBackend(TorchBackend):
    """The PyTorch backend with a TensorRT-like input profile, to exercise the shared limit checks on this CPU."""

    def _load(self) -> BackendInfo:
        return replace(super()._load(), max_batch=2, min_hw=(64, 64), max_hw=(128, 160))


def test_input_outside_profile_names_limit_and_fix(tiny_model: Path) -> None:
    backend: Backend = ProfiledTorchBackend(tiny_model, device="cpu")
    seg = Segmenter(backend)
    assert seg.max_batch == 2  # the Segmenter honours the backend's batch limit
    results = seg.run(camera_like_images([(128, 160)] * 3), tasks=("semantic",))
    assert [r.call_index for r in results] == [0, 0, 1]
    with pytest.raises(InputShapeError, match=r"input 192x160 is larger than .*maximum 128x160.*input_size"):
        seg.run(camera_like_images([(180, 150)]), tasks=("semantic",))
    with pytest.raises(InputShapeError, match=r"smaller than .* minimum 64x64"):
        seg.run(camera_like_images([(32, 96)]), tasks=("semantic",))
    with pytest.raises(InputShapeError, match=r"batch of 3 exceeds .* limit of 2"):
        backend.infer(torch.zeros(3, 3, 64, 64))
    # fitting the input to the profile is the documented fix
    fitted = Segmenter(backend, input_size=(128, 160))
    assert fitted.run(camera_like_images([(400, 500)]), ("semantic",))[0].output.semantic.shape == (400, 500)


def test_available_backends_reports_reasons() -> None:
    status = available_backends()
    assert status["torch"] == "ok"
    assert set(status) == {"torch", "onnxruntime", "tensorrt"}
    if status["tensorrt"] != "ok":
        assert "tensorrt" in status["tensorrt"].lower()


def test_default_model_is_used_when_no_path_given() -> None:
    from bisenetformer_ros.resources import models_dir

    default = models_dir() / "synthetic_stdc1.pt"
    if not default.is_file():
        with pytest.raises(FileNotFoundError, match=r"embedded default model"):
            Segmenter.from_model(None, device="cpu")
        pytest.skip(f"the embedded default model {default} is not built yet (tools/train_default_model.sh)")
    seg = Segmenter.from_model(None, device="cpu")
    [r] = seg.run(camera_like_images([(96, 128)]))
    assert r.output.semantic.shape == (96, 128)
    assert seg.backend.model_path == default


COMPILE_FALLBACK = """
import logging, sys
import numpy as np
from pathlib import Path
from tests.inference_models import camera_like_images
from bisenetformer_ros.inference import Segmenter
logging.basicConfig(level=logging.WARNING)
model = Path(sys.argv[1])
images = camera_like_images([(64, 80)])
seg = Segmenter.from_model(model, device="cpu", compile=True)
compiled = seg.run(images, tasks=("semantic",))[0].output.semantic
eager = Segmenter.from_model(model, device="cpu").run(images, tasks=("semantic",))[0].output.semantic
print("equal", np.array_equal(compiled, eager), seg.backend.info.details["compile"])
"""


@pytest.mark.slow
def test_torch_compile_without_a_compiler_falls_back_to_eager(tiny_model: Path, tmp_path: Path) -> None:
    """A robot without a C++ toolchain: torch.compile fails at the first call; the backend logs it once and keeps
    segmenting eagerly with identical results instead of failing every frame."""
    env = dict(os.environ, CXX="/bin/false", TORCHINDUCTOR_CACHE_DIR=str(tmp_path / "inductor"), OMP_NUM_THREADS="1")
    env["PYTHONPATH"] = os.pathsep.join([str(Path(__file__).resolve().parents[1]), env.get("PYTHONPATH", "")])
    proc = subprocess.run(
        [sys.executable, "-c", COMPILE_FALLBACK, str(tiny_model)], capture_output=True, text=True, timeout=300, env=env
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "equal True failed, eager" in proc.stdout, proc.stdout + proc.stderr[-2000:]
    assert proc.stderr.count("torch.compile failed") == 1 and "running the model eagerly" in proc.stderr
