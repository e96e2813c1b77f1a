"""The authors' reference implementation (FocoosAI/focoos ``models/bisenetformer``) as data: published variants, the
registry JSON they are described by, and the tensor-for-tensor mapping between its state dict and ours.

Why a mapping and not the reference's module names: our modules are named for what they do (``context_path.arm32``,
``ffm.merge``) and split attention into q/k/v projections, which export to ONNX/TensorRT without the packed
``nn.MultiheadAttention`` path. The network is the same function (``tests/test_model_reference.py`` checks outputs
against values computed once with the reference code); this module only renames, splits the packed attention
in-projection and drops the loss buffer. Every tensor of a file must be accounted for, or nothing is converted.

Reference layout (``model_final.pth`` = ``{"model": state_dict}``)::

    pixel_decoder.backbone.features.N...          STDC backbone (same names as ours)
    pixel_decoder.cp.{arm32,arm16,conv_avg,conv_head32,conv_head16}...
    pixel_decoder.ffm.{proj1,proj2,convblk,conv1,conv2}...,  pixel_decoder.conv_out...
    head.predictor.{query_feat,query_embed,input_proj.L}...
    head.predictor.transformer_{cross,self}_attention_layers.i.{multihead_attn,self_attn}.{in_proj_*,out_proj.*}
    head.predictor.transformer_{cross,self}_attention_layers.i.norm.*, transformer_ffn_layers.i.{linear1,linear2,norm}
    head.predictor.forward_prediction_heads.{decoder_norm,classifier,mask_classifier.layers.j}...
    head.criterion.empty_weight                   (loss weights: dropped)
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from bisenetformer_ros.model.config import ModelConfig

# Keys of a reference state dict that carry no network weight.
DROPPED_KEYS: tuple[str, ...] = ("head.criterion.empty_weight",)

# (our prefix, reference prefix): applied to the first matching prefix, longest first.
_PREFIXES: tuple[tuple[str, str], ...] = (
    ("backbone.", "pixel_decoder.backbone."),
    ("context_path.arm32.atten_conv.", "pixel_decoder.cp.arm32.conv_atten."),
    ("context_path.arm32.atten_bn.", "pixel_decoder.cp.arm32.bn_atten."),
    ("context_path.arm16.atten_conv.", "pixel_decoder.cp.arm16.conv_atten."),
    ("context_path.arm16.atten_bn.", "pixel_decoder.cp.arm16.bn_atten."),
    ("context_path.arm32.", "pixel_decoder.cp.arm32."),
    ("context_path.arm16.", "pixel_decoder.cp.arm16."),
    ("context_path.global_conv.", "pixel_decoder.cp.conv_avg."),
    ("context_path.refine32.", "pixel_decoder.cp.conv_head32."),
    ("context_path.refine16.", "pixel_decoder.cp.conv_head16."),
    ("ffm.spatial_proj.", "pixel_decoder.ffm.proj1."),
    ("ffm.context_proj.", "pixel_decoder.ffm.proj2."),
    ("ffm.merge.", "pixel_decoder.ffm.convblk."),
    ("ffm.att_reduce.", "pixel_decoder.ffm.conv1."),
    ("ffm.att_expand.", "pixel_decoder.ffm.conv2."),
    ("ffm.out_conv.", "pixel_decoder.conv_out."),
    ("decoder.query_feat.", "head.predictor.query_feat."),
    ("decoder.query_embed.", "head.predictor.query_embed."),
    ("decoder.input_proj.", "head.predictor.input_proj."),
    ("decoder.decoder_norm.", "head.predictor.forward_prediction_heads.decoder_norm."),
    ("decoder.class_embed.", "head.predictor.forward_prediction_heads.classifier."),
    ("decoder.mask_embed.", "head.predictor.forward_prediction_heads.mask_classifier."),
)
_BLOCKS: dict[str, tuple[str, str]] = {
    # our block list -> (reference layer list, attention attribute)
    "cross_blocks": ("transformer_cross_attention_layers", "multihead_attn"),
    "self_blocks": ("transformer_self_attention_layers", "self_attn"),
    "ffn_blocks": ("transformer_ffn_layers", ""),
}
_BLOCK_KEY = re.compile(r"^decoder\.(cross_blocks|self_blocks|ffn_blocks)\.(\d+)\.(.+)$")
_QKV = ("q_proj", "k_proj", "v_proj")


class ReferenceMismatch(ValueError):
    """A reference state dict that does not fit the configuration: one message listing every problem."""


def _ours_to_reference_key(key: str) -> tuple[str, int | None]:
    """Reference key for one of our keys; the int is the q/k/v slice index of a packed in-projection (else None)."""
    m = _BLOCK_KEY.match(key)
    if m:
        kind, idx, rest = m.groups()
        layers, attn = _BLOCKS[kind]
        base = f"head.predictor.{layers}.{idx}."
        if rest.startswith("attn."):
            sub = rest[len("attn.") :]
            proj, _, tensor = sub.partition(".")
            if proj in _QKV:
                return f"{base}{attn}.in_proj_{tensor}", _QKV.index(proj)
            return f"{base}{attn}.{sub}", None
        return base + rest, None
    for ours, ref in _PREFIXES:
        if key.startswith(ours):
            return ref + key[len(ours) :], None
    raise KeyError(f"no reference name for '{key}'")


def to_reference_state_dict(state: Mapping[str, torch.Tensor], num_classes: int | None = None) -> dict[str, Any]:
    """Our state dict in the reference's layout (q/k/v packed again; the loss buffer added when ``num_classes`` is
    given, with the reference's no-object weight 0.1), e.g. to hand a model trained here to the reference code."""
    out: dict[str, torch.Tensor] = {}
    packed: dict[str, list[torch.Tensor | None]] = {}
    for key, value in state.items():
        ref, part = _ours_to_reference_key(key)
        if part is None:
            out[ref] = value
        else:
            packed.setdefault(ref, [None, None, None])[part] = value
    for ref, parts in packed.items():
        if any(p is None for p in parts):
            raise KeyError(f"incomplete q/k/v set for '{ref}'")
        out[ref] = torch.cat(parts, dim=0)  # type: ignore[arg-type]
    if num_classes is not None:
        weight = torch.ones(num_classes + 1)
        weight[-1] = 0.1
        out[DROPPED_KEYS[0]] = weight
    return out


def from_reference_state_dict(
    ref_state: Mapping[str, Any], target: Mapping[str, torch.Tensor], source: str = "reference checkpoint"
) -> dict[str, torch.Tensor]:
    """Map a reference state dict onto ``target`` (our model's ``state_dict()``, for names and shapes).

    Raises :class:`ReferenceMismatch` naming missing, unexpected and mis-shaped keys (all of them, in one message) when
    the file is not this configuration's network; nothing partial is returned.
    """
    tensors = {k: v for k, v in ref_state.items() if isinstance(v, torch.Tensor)}
    not_tensors = sorted(k for k in ref_state if k not in tensors)
    used: set[str] = set()
    missing: list[str] = []
    mismatched: list[str] = []
    result: dict[str, torch.Tensor] = {}
    for key, own in target.items():
        ref, part = _ours_to_reference_key(key)
        if ref not in tensors:
            missing.append(ref)
            continue
        used.add(ref)
        value = tensors[ref]
        if part is not None:
            if value.shape[0] % 3 != 0:
                mismatched.append(f"{ref}: {tuple(value.shape)} is not a packed q/k/v projection")
                continue
            value = value.chunk(3, dim=0)[part]
        if tuple(value.shape) != tuple(own.shape):
            mismatched.append(f"{ref}: file {tuple(value.shape)} vs expected {tuple(own.shape)}")
            continue
        result[key] = value.detach().clone()
    unexpected = sorted(k for k in tensors if k not in used and k not in DROPPED_KEYS) + not_tensors
    if missing or unexpected or mismatched:
        parts = []
        for label, items in (
            ("missing", sorted(set(missing))),
            ("unexpected", unexpected),
            ("mis-shaped", mismatched),
        ):
            if items:
                shown = ", ".join(items[:8]) + (f", ... (+{len(items) - 8} more)" if len(items) > 8 else "")
                parts.append(f"{label} keys ({len(items)}): {shown}")
        raise ReferenceMismatch(f"{source} does not match the expected network: " + "; ".join(parts))
    return result


# --- published variants and the registry JSON that describes them

_STDC_LAYERS = {(2, 2, 2): "stdc1", (4, 5, 3): "stdc2"}


@dataclass(frozen=True)
class ReferenceModel:
    """A model of the reference family as our configuration plus the facts pre-processing and listing need."""

    name: str
    config: ModelConfig
    class_names: tuple[str, ...]
    pixel_mean: tuple[float, float, float]
    pixel_std: tuple[float, float, float]
    image_size: int
    weights_uri: str | None = None
    description: str = ""
    dataset: str = ""
    reported_miou: float | None = None


def model_from_registry(entry: Mapping[str, Any]) -> ReferenceModel:
    """Parse a registry-style JSON (``focoos/model_registry/*.json``: name, classes, im_size, config{...}).

    Only the BiSeNetFormer family with an STDC backbone and the reference's fixed parts is accepted (8 heads, pre-norm,
    no sigmoid classifier, no size divisibility); anything else is an error naming the field, not a silently different
    network.
    """

    def need(mapping: Mapping[str, Any], key: str, where: str) -> Any:
        if key not in mapping:
            raise ValueError(f"model description: '{where}{key}' is missing")
        return mapping[key]

    if not isinstance(entry, Mapping):
        raise ValueError("model description must be a JSON object")
    family = entry.get("model_family", "bisenetformer")
    if family != "bisenetformer":
        raise ValueError(f"model description: model_family '{family}' is not bisenetformer")
    cfg = need(entry, "config", "")
    bb = need(cfg, "backbone_config", "config.")
    if bb.get("model_type") != "stdc":
        raise ValueError(f"model description: backbone model_type '{bb.get('model_type')}' is not supported (stdc)")
    layers = tuple(need(bb, "layers", "config.backbone_config."))
    if layers not in _STDC_LAYERS:
        raise ValueError(f"model description: STDC layers {list(layers)} unknown; expected [2, 2, 2] or [4, 5, 3]")
    for key, want in (("block_num", 4), ("block_type", "cat"), ("use_conv_last", False), ("in_chans", 3)):
        if bb.get(key, want) != want:
            raise ValueError(f"model description: backbone {key}={bb.get(key)!r} is not supported (only {want!r})")
    if cfg.get("cls_sigmoid", False):
        raise ValueError("model description: cls_sigmoid=true (sigmoid classifier) is not supported")
    if int(cfg.get("size_divisibility", 0) or 0) not in (0, 32):
        raise ValueError("model description: size_divisibility must be 0 or 32")
    feat = int(cfg.get("pixel_decoder_feat_dim", 256))
    out = int(cfg.get("pixel_decoder_out_dim", 256))
    head = int(cfg.get("transformer_predictor_out_dim", 256))
    if not feat == out == head:
        # The reference feeds the context-path features (feat_dim wide) into input projections sized for out_dim,
        # and dots query embeddings (head width) with the mask features (out_dim wide): only equal widths run there.
        raise ValueError(
            f"model description: pixel_decoder_feat_dim ({feat}), pixel_decoder_out_dim ({out}) and "
            f"transformer_predictor_out_dim ({head}) must be equal (the reference network only runs that way)"
        )
    classes = tuple(str(c).strip() for c in need(entry, "classes", ""))
    num_classes = int(need(cfg, "num_classes", "config."))
    if len(classes) != num_classes:
        raise ValueError(f"model description: {len(classes)} class names for num_classes={num_classes}")
    config = ModelConfig(
        backbone=_STDC_LAYERS[layers],
        num_classes=num_classes,
        num_queries=int(cfg.get("num_queries", 100)),
        hidden_dim=int(cfg.get("transformer_predictor_hidden_dim", 256)),
        nheads=8,
        dim_feedforward=int(cfg.get("transformer_predictor_dim_feedforward", 1024)),
        dec_layers=int(cfg.get("transformer_predictor_dec_layers", 6)),
        mask_dim=out,
        context_dim=feat,
        pre_norm=True,
        dropout=0.0,
        stdc_base=int(bb.get("base", 64)),
    )
    metrics = entry.get("val_metrics") or {}
    miou = metrics.get("sem_seg/mIoU")
    mean = tuple(float(v) for v in cfg.get("pixel_mean", (123.675, 116.28, 103.53)))
    std = tuple(float(v) for v in cfg.get("pixel_std", (58.395, 57.12, 57.375)))
    if len(mean) != 3 or len(std) != 3 or min(std) <= 0:
        raise ValueError("model description: pixel_mean / pixel_std must be three numbers (std > 0)")
    return ReferenceModel(
        name=str(need(entry, "name", "")),
        config=config,
        class_names=classes,
        pixel_mean=mean,  # type: ignore[arg-type]
        pixel_std=std,  # type: ignore[arg-type]
        image_size=int(entry.get("im_size", 640)),
        weights_uri=entry.get("weights_uri"),
        description=str(entry.get("description", "")),
        dataset=str(entry.get("val_dataset", "")),
        reported_miou=float(miou) if miou is not None else None,
    )


# --- deterministic weights for parity checks


def seeded_state_dict(
    shapes: Mapping[str, tuple[int, ...]], seed: int, gains: Mapping[str, float] | None = None
) -> dict[str, torch.Tensor]:
    """Reproducible, well-scaled random weights for a state dict given as ``{key: shape}``, any layout.

    Each tensor comes from its own numpy PCG64 stream seeded by ``(seed, crc32(key))``, so the values do not depend on
    key order or on the framework that consumes them: the reference network and ours get the same numbers for the
    same tensor. Scales keep activations finite and varied through 6 decoder layers (fan-in scaled weights, BN
    statistics near identity), which a parity check needs to be meaningful. ``gains`` multiplies tensors whose key
    ends with a given suffix: a random head predicts one class everywhere unless its class and mask heads are sharpened.
    """
    import zlib

    import numpy as np

    out: dict[str, torch.Tensor] = {}
    for key, shape in shapes.items():
        rng = np.random.default_rng([seed, zlib.crc32(key.encode())])
        shape = tuple(int(s) for s in shape)
        leaf = key.rsplit(".", 1)[-1]
        if leaf == "num_batches_tracked":
            out[key] = torch.zeros(shape, dtype=torch.long)
            continue
        if leaf == "running_var":
            values = rng.uniform(0.5, 1.5, shape)
        elif leaf == "running_mean":
            values = rng.normal(0.0, 0.1, shape)
        elif len(shape) == 1 and leaf == "weight":  # BN / LayerNorm scale
            values = 1.0 + rng.normal(0.0, 0.1, shape)
        elif leaf.endswith("bias"):
            values = rng.normal(0.0, 0.1, shape)
        else:
            fan_in = int(np.prod(shape[1:])) if len(shape) > 1 else 1
            values = rng.normal(0.0, 1.0 / max(fan_in, 1) ** 0.5, shape)
        gain = next((g for suffix, g in (gains or {}).items() if key.endswith(suffix)), 1.0)
        out[key] = torch.from_numpy(np.asarray(values * gain, dtype=np.float32))
    return out


# --- the authors' published ADE20K models

_PUBLIC_URL = "https://public.focoos.ai/pretrained_models/{name}/model_final.pth"


def _ade20k_entry(
    name: str, layers: list[int], width: int, dec_layers: int, ffn: int, miou: float, description: str
) -> dict[str, Any]:
    """A registry-style description (the reference's JSON schema) of one published ADE20K model."""
    from bisenetformer_ros.data.classes import get_class_table

    return {
        "name": name,
        "model_family": "bisenetformer",
        "description": description,
        "classes": list(get_class_table("ade20k").names),
        "im_size": 640,
        "weights_uri": _PUBLIC_URL.format(name=name),
        "val_dataset": "ade20k_semseg",
        "val_metrics": {"sem_seg/mIoU": miou},
        "config": {
            "num_classes": 150,
            "backbone_config": {
                "model_type": "stdc",
                "base": 64,
                "layers": layers,
                "block_num": 4,
                "block_type": "cat",
            },
            "num_queries": 100,
            "pixel_mean": [123.675, 116.28, 103.53],
            "pixel_std": [58.395, 57.12, 57.375],
            "pixel_decoder_out_dim": width,
            "pixel_decoder_feat_dim": width,
            "transformer_predictor_out_dim": width,
            "transformer_predictor_hidden_dim": 256,
            "transformer_predictor_dec_layers": dec_layers,
            "transformer_predictor_dim_feedforward": ffn,
        },
    }


#: The reference's published models (registry ``focoos/model_registry/bisenetformer-{s,m,l}-ade.json``): widths,
#: depths and the mIoU the authors report on ADE20K val (semantic, 640 px short side).
PUBLISHED_ENTRIES: dict[str, dict[str, Any]] = {
    e["name"]: e
    for e in (
        _ade20k_entry("bisenetformer-s-ade", [2, 2, 2], 128, 6, 1024, 42.9098, "BiSeNetFormer S: STDC1, ADE20K"),
        _ade20k_entry("bisenetformer-m-ade", [4, 5, 3], 96, 4, 512, 43.4309, "BiSeNetFormer M: STDC2 (narrow), ADE20K"),
        _ade20k_entry("bisenetformer-l-ade", [4, 5, 3], 128, 6, 1024, 45.0742, "BiSeNetFormer L: STDC2, ADE20K"),
    )
}


def published_model(name: str) -> ReferenceModel:
    """One of :data:`PUBLISHED_ENTRIES` by name ("choose one of ..." error otherwise)."""
    if name not in PUBLISHED_ENTRIES:
        raise ValueError(f"unknown published model '{name}'; choose one of {sorted(PUBLISHED_ENTRIES)}")
    return model_from_registry(PUBLISHED_ENTRIES[name])


def parity_input(seed: int, shape: tuple[int, int, int, int] = (1, 3, 256, 512)) -> torch.Tensor:
    """The fixed, already normalised network input of the parity checks (standard normal, numpy PCG64 stream)."""
    import numpy as np

    return torch.from_numpy(np.random.default_rng([seed, 1]).standard_normal(shape).astype(np.float32))


# --- converting a published file into a model file of this project ---------------------------------------------------


def class_table_for(model: ReferenceModel) -> Any:
    """Our class table for a reference model: ADE20K's (colours, 100 things / 50 stuff) when the names are ADE20K's,
    else a generic table (deterministic colours; every class a thing, since the reference does not say)."""
    import numpy as np

    from bisenetformer_ros.data.classes import ClassTable, get_class_table

    ade = get_class_table("ade20k")
    if tuple(model.class_names) == tuple(ade.names):
        return ade
    rng = np.random.default_rng(len(model.class_names))
    colors = tuple(tuple(int(c) for c in rng.integers(0, 256, 3)) for _ in model.class_names)
    return ClassTable(
        dataset=model.name,
        names=tuple(model.class_names),
        colors=colors,  # type: ignore[arg-type]
        is_thing=tuple(True for _ in model.class_names),
        ignore_label=255 if len(model.class_names) < 255 else 65535,
    )


def read_reference_weights(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """The state dict of a reference ``model_final.pth`` (``{"model": state_dict}`` or a bare state dict), loaded
    with ``weights_only=True``; anything else is an error naming what the file is instead."""
    from bisenetformer_ros.model.checkpoint import describe_load_error

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"weights file '{path}' does not exist")
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise ValueError(f"'{path}' is not a readable weights file ({describe_load_error(exc, path)})") from None
    if isinstance(data, dict) and isinstance(data.get("model"), dict):
        data = data["model"]
    if isinstance(data, dict) and "format" in data and "state_dict" in data:
        raise ValueError(f"'{path}' is already a bisenetformer_ros model file; it needs no conversion")
    if not isinstance(data, dict) or not data:
        raise ValueError(f"'{path}' holds no state dict (expected {{'model': state_dict}} as the reference saves)")
    keys = [k for k in data if isinstance(k, str)]
    if not any(k.startswith(("pixel_decoder.", "head.predictor.")) for k in keys):
        raise ValueError(
            f"'{path}' is not a BiSeNetFormer checkpoint of the reference implementation (no 'pixel_decoder.' / "
            f"'head.predictor.' keys; first keys: {', '.join(keys[:3]) or 'none'})"
        )
    return data


def convert_reference(
    weights: str | os.PathLike, model: ReferenceModel, output: str | os.PathLike, source_url: str | None = None
) -> Path:
    """Write ``output``: the reference weights in ``weights`` as a model file of this project (fp32, the reference's
    pre-processing and post-processing order recorded), after checking that every tensor maps. Nothing is written
    when anything does not fit; the error names missing, unexpected and mis-shaped keys, and a published variant the
    file matches instead when there is one."""
    from bisenetformer_ros.inference.engine_cache import file_sha256
    from bisenetformer_ros.model.bisenetformer import build_model
    from bisenetformer_ros.model.checkpoint import save_model
    from bisenetformer_ros.model.inference_defaults import InferenceDefaults

    state = read_reference_weights(weights)
    net = build_model(model.config)
    try:
        mapped = from_reference_state_dict(state, net.state_dict(), source=f"'{weights}'")
    except ReferenceMismatch as exc:
        fits = [name for name in PUBLISHED_ENTRIES if name != model.name and _fits(state, published_model(name))]
        hint = f" It matches the published model {fits[0]}: use --variant {fits[0]}." if fits else ""
        raise ValueError(f"{exc} (converting as {model.name}).{hint}") from None
    net.load_state_dict(mapped, strict=True)
    inference = InferenceDefaults(
        input_size=model.image_size, pixel_mean=model.pixel_mean, pixel_std=model.pixel_std, mask_order="sigmoid_first"
    )
    extra = {
        "source": "FocoosAI/focoos reference implementation",
        "reference_model": model.name,
        "description": model.description,
        "dataset": model.dataset,
        "reported_mIoU": model.reported_miou,
        "weights_sha256": file_sha256(weights),
        "weights_uri": source_url or model.weights_uri,
        "task": "semantic",
    }
    return save_model(output, net, model.config, class_table_for(model), extra=extra, inference=inference)


def _fits(state: Mapping[str, Any], model: ReferenceModel) -> bool:
    from bisenetformer_ros.model.bisenetformer import build_model

    with torch.device("meta"):
        target = build_model(model.config).state_dict()
    try:
        from_reference_state_dict(state, target)
    except ReferenceMismatch:
        return False
    return True
