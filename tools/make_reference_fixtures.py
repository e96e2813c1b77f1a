#!/usr/bin/env python3
"""Compute the reference-parity fixtures (tests/data/reference_parity.npz) with the authors' own code.

Development-time only: needs a source tree of FocoosAI/focoos (``git clone`` it, or ``git archive`` a mirror) and is
not run by the tests. For each published variant (S, M, L) it builds the reference ``BisenetFormer`` with the
variant's registry configuration, fills it with :func:`~bisenetformer_ros.model.reference.seeded_state_dict` weights
(computed from the reference's OWN key list and shapes), runs a fixed normalised 256x512 input and stores, small:

* the reference's state-dict manifest (every key and shape: the converter test maps each of them);
* the final ``pred_logits`` of 12 queries and ``pred_masks`` at 512 fixed positions (raw, before softmax/sigmoid);
* the reference's semantic labels for that input at an "original" size of 100x200 (its inference path: sigmoid and
  softmax in the head, bilinear up-sampling of the probabilities to the input size, then to the original size,
  ``einsum('qc,qhw->chw')``, arg-max).

The focoos package ``__init__`` files pull in a whole platform (pydantic, torchvision, gradio, ...); the loader below
registers the few package objects the BiSeNetFormer files need and imports the real modelling, backbone and layer
modules from the source tree, so the network that runs is the reference's own code.

Usage: python tools/make_reference_fixtures.py --focoos-src /path/to/focoos [--out tests/data/reference_parity.npz]
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import json
import logging
import sys
import types
from collections import OrderedDict
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from bisenetformer_ros.model.reference import PUBLISHED_ENTRIES, parity_input, seeded_state_dict

SEED = 2026
INPUT_SHAPE = (1, 3, 256, 512)
ORIGINAL_SIZE = (100, 200)
NUM_LOGIT_QUERIES = 12
NUM_MASK_POSITIONS = 512
# Sharpened heads (reference key suffixes): different queries predict different classes with varied masks.
GAINS = {
    "forward_prediction_heads.classifier.weight": 6.0,
    "forward_prediction_heads.mask_classifier.layers.2.weight": 8.0,
    "query_feat.weight": 60.0,
}


def mask_positions(shape: tuple[int, ...]) -> np.ndarray:
    """Flat indices into ``pred_masks[0]`` that the fixture stores (saved with the values)."""
    rng = np.random.default_rng([SEED, 2])
    return rng.choice(int(np.prod(shape)), size=NUM_MASK_POSITIONS, replace=False)


def load_reference(src: Path) -> tuple[types.ModuleType, type]:
    """Import the reference BiSeNetFormer modules from ``src`` without executing focoos' package ``__init__`` files."""
    root = src / "focoos"
    if not (root / "models" / "bisenetformer" / "modelling.py").is_file():
        raise SystemExit(f"error: {src} is not a focoos source tree (no focoos/models/bisenetformer/modelling.py)")

    def package(name: str, path: Path) -> None:
        mod = types.ModuleType(name)
        mod.__path__ = [str(path)]
        sys.modules[name] = mod

    def module(name: str, **attrs: object) -> None:
        mod = types.ModuleType(name)
        mod.__dict__.update(attrs)
        sys.modules[name] = mod

    for name, sub in (
        ("focoos", ""),
        ("focoos.models", "models"),
        ("focoos.models.bisenetformer", "models/bisenetformer"),
        ("focoos.nn", "nn"),
        ("focoos.nn.layers", "nn/layers"),
        ("focoos.nn.backbone", "nn/backbone"),
        ("focoos.utils", "utils"),
    ):
        package(name, root / sub)

    class DictClass(OrderedDict):
        pass

    @dataclasses.dataclass
    class ModelConfig(DictClass):
        num_classes: int

    @dataclasses.dataclass
    class ModelOutput(DictClass):
        loss: object

    class BaseModelNN(nn.Module):
        def __init__(self, config: object) -> None:
            super().__init__()

    class Criterion(nn.Module):
        """Only the loss buffer matters here: it is part of the published state dict."""

        def __init__(self, num_classes: int, eos_coef: float, **_: object) -> None:
            super().__init__()
            weight = torch.ones(num_classes + 1)
            weight[-1] = eos_coef
            self.register_buffer("empty_weight", weight)

    torch_version = tuple(int(x) for x in torch.__version__.split("+")[0].split(".")[:2])
    module("focoos.ports", DictClass=DictClass, ModelConfig=ModelConfig, ModelOutput=ModelOutput)
    module("focoos.utils.logger", get_logger=lambda *a, **k: logging.getLogger("focoos"))
    module("focoos.utils.env", TORCH_VERSION=torch_version)
    module("focoos.models.focoos_model", BaseModelNN=BaseModelNN)
    module("focoos.models.bisenetformer.loss", SetCriterion=Criterion, MaskHungarianMatcher=lambda **kw: None)
    module("focoos.nn.layers.misc", DropPath=nn.Identity)
    stdc = importlib.import_module("focoos.nn.backbone.stdc")
    module("focoos.nn.backbone.build", load_backbone=lambda cfg: stdc.STDC(cfg))
    modelling = importlib.import_module("focoos.models.bisenetformer.modelling")
    config = importlib.import_module("focoos.models.bisenetformer.config")
    return modelling, lambda entry: config.BisenetFormerConfig(  # type: ignore[return-value]
        backbone_config=stdc.STDCConfig(**{"use_pretrained": False, **entry["config"]["backbone_config"]}),
        **{k: v for k, v in entry["config"].items() if k != "backbone_config"},
    )


@torch.no_grad()
def run_variant(modelling: types.ModuleType, make_config: type, name: str) -> dict[str, np.ndarray]:
    net = modelling.BisenetFormer(make_config(PUBLISHED_ENTRIES[name])).eval()
    manifest = {k: list(v.shape) for k, v in net.state_dict().items()}
    net.load_state_dict(seeded_state_dict(manifest, SEED, GAINS), strict=True)
    x = parity_input(SEED, INPUT_SHAPE)
    features = net.pixel_decoder(x)
    raw = net.head.predictor(features[1], features[0])
    (cls_prob, mask_prob), _ = net.head(features, [])
    mask_prob = F.interpolate(mask_prob, size=x.shape[-2:], mode="bilinear", align_corners=False)
    mask_prob = F.interpolate(mask_prob, size=ORIGINAL_SIZE, mode="bilinear", align_corners=False)
    labels = torch.einsum("qc,qhw->chw", cls_prob[0], mask_prob[0]).argmax(0).to(torch.uint8)
    logits, masks = raw["pred_logits"][0], raw["pred_masks"][0]
    pos = mask_positions(tuple(masks.shape))
    print(
        f"{name}: {sum(p.numel() for p in net.parameters()):,} parameters, logits |max| {logits.abs().max():.3g}, "
        f"masks |max| {masks.abs().max():.3g}, {len(torch.unique(labels))} classes in the label map"
    )
    return {
        f"{name}/manifest": np.array(json.dumps(manifest)),
        f"{name}/logits": logits[:NUM_LOGIT_QUERIES].numpy(),
        f"{name}/mask_shape": np.array(masks.shape),
        f"{name}/mask_positions": pos.astype(np.int32),
        f"{name}/mask_values": masks.flatten()[torch.from_numpy(pos)].numpy(),
        f"{name}/logits_absmax": np.array(float(logits.abs().max())),
        f"{name}/masks_absmax": np.array(float(masks.abs().max())),
        f"{name}/labels": labels.numpy(),
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--focoos-src", type=Path, required=True, help="root of a FocoosAI/focoos source tree")
    ap.add_argument("--out", type=Path, default=Path(__file__).resolve().parents[1] / "tests/data/reference_parity.npz")
    args = ap.parse_args()
    torch.manual_seed(0)
    modelling, make_config = load_reference(args.focoos_src)
    arrays: dict[str, np.ndarray] = {
        "seed": np.array(SEED),
        "gains": np.array(json.dumps(GAINS)),
        "original_size": np.array(ORIGINAL_SIZE),
    }
    for name in PUBLISHED_ENTRIES:
        arrays.update(run_variant(modelling, make_config, name))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(args.out, **arrays)
    print(f"wrote {args.out} ({args.out.stat().st_size / 1024:.1f} KiB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
