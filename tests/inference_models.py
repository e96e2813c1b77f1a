"""Random-weight model files for the inference tests (imported by tests/test_inference_*.py).

A freshly initialised BiSeNetFormer predicts one class everywhere: its queries collapse to nearly the same vector
and its mask features are ~1e-2 in magnitude, so comparing two backends on it would compare constant maps. The
``sharpen`` option rescales three tensors (query features x30, class head x10 with zero bias, last mask-embedding
layer x1000 with zero bias) so that different queries predict different classes with spatially varying masks —
the parity tests then compare label maps and panoptic tables that actually have content. The architecture and every
other weight stay as built.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import torch

from bisenetformer_ros.data.classes import CITYSCAPES, ClassTable
from bisenetformer_ros.model import ModelConfig, build_model, save_model

TINY = {
    "num_queries": 8,
    "hidden_dim": 32,
    "nheads": 4,
    "dim_feedforward": 64,
    "dec_layers": 2,
    "stdc_base": 16,
    "context_dim": 16,
    "mask_dim": 16,
}


def tiny_config(num_classes: int, backbone: str = "stdc1", **overrides: int) -> ModelConfig:
    """The ~0.1 s test architecture (:data:`TINY`) for ``num_classes`` classes, with ``overrides`` on top."""
    return ModelConfig(backbone=backbone, num_classes=num_classes, **{**TINY, **overrides})


def make_model_file(
    path: Path,
    backbone: str = "stdc1",
    class_table: ClassTable = CITYSCAPES,
    tiny: bool = True,
    num_queries: int | None = None,
    sharpen: bool = True,
    seed: int = 0,
) -> Path:
    """Save a random-weight model (``tiny``: the ~0.1 s test size; else the paper's widths) to ``path``."""
    kwargs = {} if num_queries is None else {"num_queries": num_queries}
    if tiny:
        config = tiny_config(class_table.num_classes, backbone, **kwargs)
    else:
        config = ModelConfig(backbone=backbone, num_classes=class_table.num_classes, **kwargs)
    torch.manual_seed(seed)
    model = build_model(config).eval()
    if sharpen:
        with torch.no_grad():
            dec = model.decoder
            dec.query_feat.weight.mul_(30.0)
            dec.class_embed.weight.mul_(10.0)
            dec.class_embed.bias.zero_()
            last = [m for m in dec.mask_embed.modules() if isinstance(m, torch.nn.Linear)][-1]
            last.weight.mul_(1000.0)
            last.bias.zero_()
    return save_model(path, model, config, class_table)


def camera_like_images(sizes: list[tuple[int, int]], seed: int = 0) -> list[np.ndarray]:
    """Smooth colour blobs (up-sampled noise): structured like a camera frame, deterministic."""
    rng = np.random.default_rng(seed)
    out = []
    for h, w in sizes:
        small = rng.integers(0, 256, size=(6, 8, 3), dtype=np.uint8)
        out.append(cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC))
    return out
