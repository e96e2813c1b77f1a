"""BiSeNetFormer network: configuration, output shapes, gradients, precisions, torch.compile, parameter counts."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from bisenetformer_ros.model import BiSeNetFormer, InferenceWrapper, ModelConfig, Preprocessor, build_model
from bisenetformer_ros.model.decoder import MaskedTransformerDecoder, sine_position_encoding
from tests.inference_models import tiny_config as shared_tiny_config

torch.set_num_threads(1)


def tiny_config(backbone: str = "stdc1", **kw: int) -> ModelConfig:
    """The shared tiny architecture (inference_models.TINY) with 5 classes and 6 queries unless ``kw`` says else."""
    return shared_tiny_config(5, backbone, **{"num_queries": 6, **kw})


def test_config_round_trip_and_validation() -> None:
    cfg = tiny_config()
    assert ModelConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ValueError, match="backbone"):
        ModelConfig(backbone="vgg")
    with pytest.raises(ValueError, match="dec_layers must be a positive integer"):
        ModelConfig(dec_layers=0)
    with pytest.raises(ValueError, match="divisible by nheads"):
        ModelConfig(hidden_dim=30, nheads=4)
    with pytest.raises(ValueError, match="unknown model config keys"):
        ModelConfig.from_dict({"backbone": "stdc1", "num_layers": 3})
    with pytest.raises(ValueError, match="num_classes"):
        ModelConfig(num_classes=0)


@pytest.mark.parametrize("sizes", [[(64, 96)], [(33, 50), (70, 41)], [(100, 100)]])
def test_output_shapes_via_preprocessor(sizes: list[tuple[int, int]]) -> None:
    cfg = tiny_config()
    model = build_model(cfg).eval()
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 256, (h, w, 3), dtype=np.uint8) for h, w in sizes]
    batch, _metas = Preprocessor()(images)
    ph, pw = batch.shape[-2:]
    assert ph % 32 == 0 and pw % 32 == 0
    assert ph == -(-max(h for h, _ in sizes) // 32) * 32 and pw == -(-max(w for _, w in sizes) // 32) * 32
    with torch.no_grad():
        out = model(batch)
    assert set(out) == {"pred_logits", "pred_masks"}  # no aux outputs in eval mode unless asked
    assert out["pred_logits"].shape == (len(sizes), cfg.num_queries, cfg.num_classes + 1)
    assert out["pred_masks"].shape == (len(sizes), cfg.num_queries, ph // 8, pw // 8)
    assert torch.isfinite(out["pred_masks"]).all() and torch.isfinite(out["pred_logits"]).all()
    with torch.no_grad():
        aux = model(batch, return_aux=True)["aux_outputs"]
    assert len(aux) == cfg.dec_layers  # query-only prediction + one per block except the last
    assert all(a["pred_masks"].shape == out["pred_masks"].shape for a in aux)


@pytest.mark.parametrize("backbone", ["stdc1", "stdc2", "r50"])
def test_backbone_feature_strides(backbone: str) -> None:
    from bisenetformer_ros.model.backbones import build_backbone

    with torch.device("meta"):
        bb = build_backbone(backbone, 64)
        feats = bb(torch.zeros(1, 3, 256, 320))
    for f, stride, ch in zip(feats, (4, 8, 16, 32), bb.out_channels, strict=True):
        assert f.shape == (1, ch, 256 // stride, 320 // stride)
    expected = {"stdc1": (64, 256, 512, 1024), "stdc2": (64, 256, 512, 1024), "r50": (256, 512, 1024, 2048)}
    assert bb.out_channels == expected[backbone]


def test_gradients_reach_every_parameter() -> None:
    torch.manual_seed(0)
    model = build_model(tiny_config(dec_layers=4)).train()
    out = model(torch.randn(2, 3, 64, 64))
    assert len(out["aux_outputs"]) == 4
    preds = [out, *out["aux_outputs"]]
    loss = sum(
        (p["pred_logits"] * torch.randn_like(p["pred_logits"])).sum()
        + (p["pred_masks"] * torch.randn_like(p["pred_masks"])).mean()
        for p in preds
    )
    loss.backward()
    no_grad = [n for n, p in model.named_parameters() if p.grad is None or not torch.any(p.grad != 0)]
    assert no_grad == []
    assert all(torch.isfinite(p.grad).all() for p in model.parameters())


def test_attention_mask_opens_fully_masked_rows() -> None:
    torch.manual_seed(0)
    dec = MaskedTransformerDecoder(
        in_channels=8,
        num_classes=3,
        num_queries=4,
        hidden_dim=16,
        nheads=2,
        dim_feedforward=32,
        dec_layers=2,
        mask_dim=8,
    )
    # Strongly negative mask features: every query's mask logit < 0 everywhere -> every row fully masked.
    feats = [torch.randn(1, 8, 2, 3), torch.randn(1, 8, 4, 6)]
    with torch.no_grad():
        dec.mask_embed.layers[-1].weight.zero_()
        dec.mask_embed.layers[-1].bias.fill_(1.0)
        _, masks, allow = dec._predict(dec.query_feat.weight[None], -torch.ones(1, 8, 8, 12), (2, 3))
        assert (masks < 0).all()
        assert allow.shape == (1, 1, 4, 6) and allow.all()  # opened, not all-False (which gives NaN)
        preds = dec(feats, -torch.ones(1, 8, 8, 12))
    assert all(torch.isfinite(lg).all() and torch.isfinite(mk).all() for lg, mk in preds)


def test_attention_mask_restricts_cross_attention() -> None:
    """Keys outside a query's predicted mask must not influence that query's update."""
    torch.manual_seed(0)
    dec = MaskedTransformerDecoder(
        in_channels=8,
        num_classes=3,
        num_queries=2,
        hidden_dim=16,
        nheads=2,
        dim_feedforward=32,
        dec_layers=2,
        mask_dim=8,
    ).eval()
    mask_features = torch.zeros(1, 8, 8, 8)
    mask_features[:, :, :, :4] = 1.0  # left half positive, right half negative along the mask embedding
    mask_features[:, :, :, 4:] = -1.0
    with torch.no_grad():
        dec.mask_embed.layers[-1].weight.zero_()
        dec.mask_embed.layers[-1].bias.fill_(1.0)  # every query's embedding = ones -> mask logit > 0 on the left
        feat32 = torch.randn(1, 8, 2, 2)
        block = dec.cross_blocks[0]
        q = dec.query_feat.weight[None]
        qp = dec.query_embed.weight[None]
        _, _, allow = dec._predict(q, mask_features, (2, 2))
        src = dec.input_proj[0](feat32).flatten(2).transpose(1, 2)
        pos = sine_position_encoding(2, 2, 8, src.device, src.dtype)[None]
        ref = block(q, src, pos, qp, allow)
        src2 = src.clone()
        src2[:, 1] += 5.0  # key (row 0, col 1) lies in the right half: masked out for every query
        assert torch.allclose(block(q, src2, pos, qp, allow), ref, atol=1e-6)
        src3 = src.clone()
        src3[:, 0] += 5.0  # key (row 0, col 0) is attended
        assert not torch.allclose(block(q, src3, pos, qp, allow), ref, atol=1e-3)


def test_bf16_and_fp16_forward() -> None:
    torch.manual_seed(0)
    model = build_model(tiny_config()).eval()
    x = torch.randn(1, 3, 64, 96)
    with torch.no_grad():
        ref = model(x)["pred_masks"]
        with torch.autocast("cpu", dtype=torch.bfloat16):
            auto = model(x)["pred_masks"]
        bf16 = build_model(tiny_config()).eval()
        bf16.load_state_dict(model.state_dict())
        out_bf16 = bf16.to(torch.bfloat16)(x.to(torch.bfloat16))["pred_masks"]
        half = build_model(tiny_config()).eval()
        half.load_state_dict(model.state_dict())
        out_half = half.half()(x.half())["pred_masks"]
    for out in (auto, out_bf16, out_half):
        assert torch.isfinite(out.float()).all()
        assert (out.float() - ref).abs().max() < 0.1 * ref.abs().max() + 0.05


@pytest.mark.slow
def test_torch_compile_full_graph() -> None:
    """The forward pass traces as one graph (no graph breaks, no data-dependent control flow), with dynamic shapes."""
    torch._dynamo.reset()
    model = build_model(tiny_config()).eval()
    x = torch.randn(2, 3, 64, 96)  # batch 2 first: a batch of 1 would be specialised as a constant
    compiled = torch.compile(InferenceWrapper(model), backend="eager", fullgraph=True, dynamic=True)
    with torch.no_grad():
        logits, masks = compiled(x)
        ref = model(x)
        _, masks2 = compiled(torch.randn(3, 3, 96, 64))  # other batch and size: same graph
    assert torch.allclose(logits, ref["pred_logits"], atol=1e-5)
    assert torch.allclose(masks, ref["pred_masks"], atol=1e-5)
    assert masks2.shape == (3, 6, 12, 8)


@pytest.mark.parametrize(
    ("backbone", "num_classes", "paper_m", "tol"),
    [("stdc1", 19, 13.1, 0.02), ("stdc2", 19, 17.1, 0.02), ("stdc2", 150, 17.2, 0.02), ("r50", 19, 31.7, 0.03)],
)
def test_parameter_counts_match_paper(backbone: str, num_classes: int, paper_m: float, tol: float) -> None:
    with torch.device("meta"):  # identical shapes, no memory, no init cost
        model = BiSeNetFormer(ModelConfig(backbone=backbone, num_classes=num_classes))
    n = sum(p.numel() for p in model.parameters()) / 1e6
    assert abs(n / paper_m - 1) <= tol, f"{backbone} K={num_classes}: {n:.3f} M vs paper {paper_m} M"
