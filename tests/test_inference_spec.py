"""One segmenter specification (SegmenterSpec): the node's parameters, the CLI and from_model build the same thing;
one device rule; one test-only delay and failure injection on every backend."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from bisenetformer_ros.data.classes import get_class_table
from bisenetformer_ros.inference import InjectedFailure, Segmenter, SegmenterSpec, create_backend, resolve_device
from bisenetformer_ros.model.postprocess import PostprocessConfig
from tests.inference_models import camera_like_images, make_model_file

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def model_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_model_file(tmp_path_factory.mktemp("models") / "tiny.pt")


def _node_defaults() -> dict[str, object]:
    from bisenetformer_ros.ros.parameters import PARAMETERS

    return {p.name: p.default for p in PARAMETERS}


def test_from_params_maps_the_node_parameter_names(model_path: Path) -> None:
    params = {
        **_node_defaults(),
        "model": str(model_path),
        "backend": "torch",
        "device": "cpu",
        "input_height": 64,
        "input_width": 96,
        "max_batch_size": 3,
        "expected_classes": "cityscapes",
        "torch_compile": True,
        "engine_cache_dir": "/tmp/engines",  # TensorRT only: ignored for torch
        "object_mask_threshold": 0.5,
        "debug.inference_delay_ms": 7.5,
        "debug.fail_every_n": 4,
    }
    spec = SegmenterSpec.from_params(params)
    assert spec.model == str(model_path) and spec.backend == "torch" and spec.device == "cpu"
    assert spec.input_size == (64, 96) and spec.max_batch == 3
    assert spec.class_table == get_class_table("cityscapes")
    assert spec.postprocess is not None and spec.postprocess.object_mask_threshold == 0.5
    assert (spec.inference_delay_ms, spec.fail_every_n) == (7.5, 4)
    assert dict(spec.backend_options) == {"compile": True}
    trt = SegmenterSpec.from_params({**params, "backend": "tensorrt", "torch_compile": False})
    assert dict(trt.backend_options) == {"cache_dir": "/tmp/engines"}
    # the engine's profile covers what the pipeline sends, as for every other caller
    kwargs = trt.backend_kwargs()
    assert kwargs["profile_hw"] == [(64, 96)] and kwargs["max_batch_size"] == 3
    assert kwargs["inference_delay_ms"] == 7.5 and kwargs["fail_every_n"] == 4
    # auto (the default) may pick either, so it carries both; the factory drops what its choice does not take
    auto = SegmenterSpec.from_params({**params, "backend": "auto"})
    assert dict(auto.backend_options) == {"compile": True, "cache_dir": "/tmp/engines"}
    assert auto.backend_kwargs()["profile_hw"] == [(64, 96)]
    # int8 calibration frames travel with int8 only
    frames = {**params, "calibration_images": "/data/frames"}
    assert "calibration_images" not in SegmenterSpec.from_params(frames).backend_options
    int8 = SegmenterSpec.from_params({**frames, "precision": "int8", "backend": "onnxruntime"})
    assert dict(int8.backend_options) == {"calibration_images": "/data/frames"}
    defaults = SegmenterSpec.from_params({**_node_defaults(), "model": str(model_path)})
    assert defaults.model == str(model_path) and defaults.inference_delay_ms == 0 and defaults.fail_every_n == 0
    assert defaults.class_table is None and defaults.backend == "auto"


def test_from_params_refuses_an_unknown_class_table_before_reading_the_model() -> None:
    with pytest.raises(ValueError, match="unknown class table 'kitti'"):
        SegmenterSpec.from_params({**_node_defaults(), "model": "/no/such/model.pt", "expected_classes": "kitti"})


def test_backend_kwargs_leave_explicit_engine_options_alone() -> None:
    spec = SegmenterSpec(
        backend="TRT", input_size=(32, 64), max_batch=2, backend_options={"profile_hw": [(64, 64)], "x": 1}
    )
    kwargs = spec.backend_kwargs()
    assert kwargs["profile_hw"] == [(64, 64)] and kwargs["max_batch_size"] == 2 and kwargs["x"] == 1
    torch_kwargs = SegmenterSpec(backend="torch", input_size=(32, 64), max_batch=2).backend_kwargs()
    assert "profile_hw" not in torch_kwargs and "max_batch_size" not in torch_kwargs


@pytest.mark.slow
def test_from_spec_equals_from_model(model_path: Path) -> None:
    config = PostprocessConfig(object_mask_threshold=0.3)
    spec = SegmenterSpec(model=model_path, device="cpu", input_size=64, max_batch=2, postprocess=config)
    images = camera_like_images([(48, 80), (64, 64)])
    with (
        Segmenter.from_spec(spec) as a,
        Segmenter.from_model(model_path, device="cpu", input_size=64, max_batch=2, postprocess_config=config) as b,
    ):
        assert a.max_batch == b.max_batch == 2 and a.postprocess_config == b.postprocess_config
        for x, y in zip(a.run(images), b.run(images), strict=True):
            np.testing.assert_array_equal(x.output.semantic, y.output.semantic)


@pytest.mark.slow
def test_fail_every_n_injects_failures_on_any_backend(model_path: Path) -> None:
    seg = Segmenter.from_spec(SegmenterSpec(model=model_path, device="cpu", fail_every_n=2))
    assert seg.backend.fail_every_n == 2 and seg.backend.info.details["fail_every_n"] == 2
    images = camera_like_images([(32, 32)])
    seg.run(images, ("semantic",))
    with pytest.raises(InjectedFailure, match="injected failure on network call 2"):
        seg.run(images, ("semantic",))
    seg.run(images, ("semantic",))  # the backend keeps working after a failure
    with pytest.raises(ValueError, match="fail_every_n must be >= 0"):
        create_backend("torch", model_path, device="cpu", fail_every_n=-1)


def test_resolve_device_is_one_rule_for_inference_and_training() -> None:
    from bisenetformer_ros.train import trainer

    assert trainer.resolve_device is resolve_device
    assert resolve_device("cpu") == torch.device("cpu")
    if not torch.cuda.is_available():
        assert resolve_device("auto", default_index=3) == torch.device("cpu")
        with pytest.raises(RuntimeError, match="sees no CUDA GPU"):
            resolve_device("cuda")
    else:  # pragma: no cover - GPU machines
        assert resolve_device("auto") == torch.device("cuda", 0)
        assert resolve_device("gpu", default_index=0) == torch.device("cuda", 0)
    with pytest.raises(ValueError, match="not supported"):
        resolve_device("meta")


def test_cli_calibration_images_travel_with_int8_only() -> None:
    """``--calibration-images`` (every model-running command, ``bag evaluate`` included) reaches the backend only
    for ``--precision int8``; other precisions have nothing to calibrate."""
    import argparse

    from bisenetformer_ros.cli.options import calibration_options

    frames = argparse.Namespace(calibration_images="/data/frames", precision="int8")
    assert calibration_options(frames) == {"calibration_images": "/data/frames"}
    assert calibration_options(argparse.Namespace(calibration_images="/data/frames", precision="fp32")) == {}
    assert calibration_options(argparse.Namespace(calibration_images=None, precision="int8")) == {}
