"""Batch-norm folding for inference (``fold_batchnorms``, on by default in the torch backend)."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch

from bisenetformer_ros.inference import create_backend
from bisenetformer_ros.model import build_model
from bisenetformer_ros.model.layers import fold_batchnorms
from tests.inference_models import tiny_config


def _with_trained_like_statistics(model: torch.nn.Module) -> torch.nn.Module:
    """Running statistics and affine parameters away from their initial 0/1, so folding has something to fold."""
    g = torch.Generator().manual_seed(0)
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            n = m.num_features
            m.running_mean.copy_(torch.rand(n, generator=g) - 0.5)
            m.running_var.copy_(torch.rand(n, generator=g) * 1.5 + 0.5)
            m.weight.data.copy_(torch.rand(n, generator=g) + 0.5)
            m.bias.data.copy_(torch.rand(n, generator=g) * 0.4 - 0.2)
    return model


@pytest.mark.parametrize("backbone", ["stdc1", "stdc2"])
def test_folded_model_computes_the_same_function(backbone: str) -> None:
    torch.manual_seed(0)
    model = _with_trained_like_statistics(build_model(tiny_config(19, backbone)).eval())
    folded = copy.deepcopy(model)
    n = fold_batchnorms(folded)
    bns = sum(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules())
    assert n > 0 and n == bns  # every batch norm of the network follows a convolution
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in folded.modules())
    x = torch.randn(2, 3, 96, 160, generator=torch.Generator().manual_seed(1))
    with torch.inference_mode():
        a, b = model(x), folded(x)
    for key in ("pred_logits", "pred_masks"):
        scale = float(a[key].abs().max())
        assert float((a[key] - b[key]).abs().max()) <= 1e-4 * scale, key
        assert not torch.equal(a[key], b[key]) or key == "pred_logits"  # the weights really changed


def test_fold_refuses_a_training_model() -> None:
    with pytest.raises(RuntimeError, match="eval mode"):
        fold_batchnorms(build_model(tiny_config(19)).train())


def test_torch_backend_folds_by_default(tiny_model: Path) -> None:
    path = tiny_model
    on = create_backend("torch", path, device="cpu")
    off = create_backend("torch", path, device="cpu", fold_bn=False)
    try:
        assert on.info.details["folded_batchnorms"] > 0
        assert off.info.details["folded_batchnorms"] == 0
        x = torch.randn(1, 3, 64, 96, generator=torch.Generator().manual_seed(2))
        (la, ma), (lb, mb) = on.infer(x), off.infer(x)
        assert torch.allclose(la, lb, rtol=1e-4, atol=1e-4 * float(lb.abs().max()))
        assert torch.allclose(ma, mb, rtol=1e-4, atol=1e-4 * float(mb.abs().max()))
    finally:
        on.close()
        off.close()
