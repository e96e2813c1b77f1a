"""BiSeNetFormer (paper §3, Fig. 2): two-stream backbone + masked-attention decoder for mask classification.

Data flow: backbone -> spatial path (1/8 feature) and context path (F1cp 1/32, F2cp 1/16, F3cp 1/8) -> the decoder
refines queries on F1cp/F2cp -> the FFM fuses spatial feature and F3cp into 1/8 mask features -> each query yields
class logits (K classes + "no object") and a mask (dot product of its embedding with the mask features). The same
outputs serve semantic, instance and panoptic segmentation (``model.postprocess``).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from bisenetformer_ros.model.backbones import build_backbone
from bisenetformer_ros.model.config import ModelConfig
from bisenetformer_ros.model.context_path import ContextPath
from bisenetformer_ros.model.decoder import MaskedTransformerDecoder
from bisenetformer_ros.model.fusion import FeatureFusion


class BiSeNetFormer(nn.Module):
    """The network. ``forward(images)`` takes normalised ``float[B,3,H,W]`` with H, W multiples of 32.

    Returns ``{'pred_logits': [B,Q,K+1], 'pred_masks': [B,Q,H/8,W/8]}`` (mask logits, before sigmoid) and, in training
    mode or when ``return_aux=True``, ``'aux_outputs'``: a list of the earlier predictions (query-only prediction
    first) as dicts with the same two keys, for deep supervision.
    """

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        config.validate()
        self.config = config
        self.backbone = build_backbone(config.backbone, config.stdc_base)
        _, ch8, ch16, ch32 = self.backbone.out_channels
        self.context_path = ContextPath(ch16, ch32, config.context_dim)
        self.ffm = FeatureFusion(ch8, config.context_dim, config.context_dim, config.mask_dim)
        self.decoder = MaskedTransformerDecoder(
            in_channels=config.context_dim,
            num_classes=config.num_classes,
            num_queries=config.num_queries,
            hidden_dim=config.hidden_dim,
            nheads=config.nheads,
            dim_feedforward=config.dim_feedforward,
            dec_layers=config.dec_layers,
            mask_dim=config.mask_dim,
            # The decoder alternates between F1cp (1/32) and F2cp (1/16); a one-block decoder only ever sees F1cp.
            num_levels=min(2, config.dec_layers),
            pre_norm=config.pre_norm,
            dropout=config.dropout,
        )

    def forward(self, images: torch.Tensor, return_aux: bool | None = None) -> dict[str, Any]:
        _, f8, f16, f32 = self.backbone(images)
        f1cp, f2cp, f3cp = self.context_path(f8, f16, f32)
        mask_features = self.ffm(f8, f3cp)
        predictions = self.decoder([f1cp, f2cp][: self.decoder.num_levels], mask_features)
        logits, masks = predictions[-1]
        out: dict[str, Any] = {"pred_logits": logits, "pred_masks": masks}
        if self.training if return_aux is None else return_aux:
            out["aux_outputs"] = [{"pred_logits": lg, "pred_masks": mk} for lg, mk in predictions[:-1]]
        return out

    def backbone_parameters(self) -> list[nn.Parameter]:
        """Backbone weights (the paper trains them with a 0.1 learning-rate multiplier)."""
        return list(self.backbone.parameters())

    def head_parameters(self) -> list[nn.Parameter]:
        """Everything that is not the backbone: context path, FFM and decoder."""
        ids = {id(p) for p in self.backbone.parameters()}
        return [p for p in self.parameters() if id(p) not in ids]


class InferenceWrapper(nn.Module):
    """Tuple-output view ``images -> (pred_logits, pred_masks)`` for ONNX / TensorRT export and ``torch.jit``.

    Exporters want positional outputs with stable names; the dict with optional auxiliary outputs is a training API.
    The wrapper puts itself and the model in eval mode: exporters trace whatever mode the top module is in, and a
    batch-norm traced in training mode would normalise with batch statistics.
    """

    def __init__(self, model: BiSeNetFormer) -> None:
        super().__init__()
        self.model = model
        self.eval()

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        out = self.model(images, return_aux=False)
        return out["pred_logits"], out["pred_masks"]


def build_model(config: ModelConfig) -> BiSeNetFormer:
    """Construct a randomly initialised BiSeNetFormer (load pretrained backbones with ``model.pretrained``)."""
    return BiSeNetFormer(config)
