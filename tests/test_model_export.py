"""ONNX export (opset 17, dynamic batch and image size) and onnxruntime agreement with PyTorch."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from bisenetformer_ros.model import InferenceWrapper, build_model
from tests.inference_models import tiny_config

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

torch.set_num_threads(1)


@pytest.mark.slow
def test_onnx_export_dynamic_shapes_match_torch(tmp_path: Path) -> None:
    torch.manual_seed(0)
    cfg = tiny_config(4, num_queries=6)
    model = build_model(cfg)
    wrapper = InferenceWrapper(model)
    assert not model.training  # the wrapper switches to eval: BN must use running statistics in the graph
    path = tmp_path / "model.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript-based exporter announces its deprecation
        torch.onnx.export(
            wrapper,
            (torch.randn(1, 3, 64, 96),),
            str(path),
            opset_version=17,
            dynamo=False,
            input_names=["images"],
            output_names=["pred_logits", "pred_masks"],
            dynamic_axes={
                "images": {0: "batch", 2: "height", 3: "width"},
                "pred_logits": {0: "batch"},
                "pred_masks": {0: "batch", 2: "mask_height", 3: "mask_width"},
            },
        )
    proto = onnx.load(str(path))
    onnx.checker.check_model(proto)
    assert {o.domain: o.version for o in proto.opset_import}.get("", 0) == 17
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    for shape in [(1, 3, 64, 96), (2, 3, 128, 64), (3, 3, 32, 160)]:  # other batch sizes and sizes than traced
        x = torch.randn(*shape)
        with torch.no_grad():
            ref_logits, ref_masks = wrapper(x)
        logits, masks = session.run(None, {"images": x.numpy()})
        assert logits.shape == tuple(ref_logits.shape) and masks.shape == tuple(ref_masks.shape)
        assert np.abs(logits - ref_logits.numpy()).max() < 1e-3
        assert np.abs(masks - ref_masks.numpy()).max() < 1e-3
