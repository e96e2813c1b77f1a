"""Model files: one self-describing dict of plain types, written atomically, read with ``weights_only=True``.

Layout (``format = 'bisenetformer/1'``)::

    {'format': 'bisenetformer/1', 'model_config': ModelConfig.to_dict(), 'class_table': ClassTable.to_dict(),
     'state_dict': {name: tensor}, 'inference': InferenceDefaults.to_dict(), 'extra': {...}}

``inference`` says how the model wants to be run (network size, pixel normalisation, post-processing order; see
``model.inference_defaults``); files without it run at their recipe's training size. Files written before the network
was aligned with the authors' reference implementation (another feature fusion module, a level embedding) fit no
network of this version; they are recognised by those keys and refused with a message saying so.

Training checkpoints add ``'train_state'`` (optimizer, scheduler, step) to the same dict, so :func:`load_model` accepts
them too. Only tensors, numbers, strings, lists and dicts are stored: loading never executes pickled code, and a file
from a user is safe to open.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from bisenetformer_ros.atomic_io import atomic_path
from bisenetformer_ros.data.classes import ClassTable
from bisenetformer_ros.model.bisenetformer import BiSeNetFormer, build_model
from bisenetformer_ros.model.config import ModelConfig
from bisenetformer_ros.model.inference_defaults import InferenceDefaults

FORMAT = "bisenetformer/1"
# Keys that only the pre-alignment network had (its FFM squeeze-excitation, merge of a concatenation, level embedding).
_PRE_ALIGNMENT_KEYS = ("ffm.se.", "ffm.spatial_proj.conv.", "decoder.level_embed.")


@dataclass
class LoadedModel:
    """What :func:`load_model` returns: the network in eval mode plus everything needed to use its outputs."""

    model: BiSeNetFormer
    config: ModelConfig
    class_table: ClassTable
    extra: dict[str, Any] = field(default_factory=dict)
    inference: InferenceDefaults = field(default_factory=InferenceDefaults)


def atomic_torch_save(obj: Any, path: str | os.PathLike) -> Path:
    """``torch.save`` to a temporary file in the target folder, fsync, then rename: a crash never leaves half a file."""
    path = Path(path)
    with atomic_path(path) as tmp:
        torch.save(obj, tmp)
    return path


def checkpoint_dict(
    model: BiSeNetFormer,
    config: ModelConfig,
    class_table: ClassTable,
    extra: dict[str, Any] | None = None,
    half: bool = False,
    inference: InferenceDefaults | None = None,
) -> dict[str, Any]:
    """The dict that :func:`save_model` writes (training code adds ``'train_state'`` and saves it itself)."""
    if class_table.num_classes != config.num_classes:
        raise ValueError(
            f"class table '{class_table.dataset}' has {class_table.num_classes} classes but the model config says "
            f"{config.num_classes}"
        )
    state = {}
    for k, v in model.state_dict().items():
        v = v.detach().cpu()
        if half and v.is_floating_point():
            v = v.half()
        state[k] = v.clone()
    return {
        "format": FORMAT,
        "model_config": config.to_dict(),
        "class_table": class_table.to_dict(),
        "state_dict": state,
        "inference": (inference or InferenceDefaults()).to_dict(),
        "extra": dict(extra or {}),
    }


def save_model(
    path: str | os.PathLike,
    model: BiSeNetFormer,
    config: ModelConfig,
    class_table: ClassTable,
    extra: dict[str, Any] | None = None,
    half: bool = False,
    inference: InferenceDefaults | None = None,
) -> Path:
    """Write a model file (``half=True`` stores floating tensors as fp16: half the size, loaded back as fp32)."""
    return atomic_torch_save(checkpoint_dict(model, config, class_table, extra, half, inference), path)


def read_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load and validate the top-level structure of a bisenetformer file; errors name the problem and the fix."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"model file '{path}' does not exist (give the path of a .pt written by bisenetformer)")
    try:
        data = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # pickle errors, truncated zip, disallowed globals
        raise RuntimeError(
            f"'{path}' is not a readable bisenetformer checkpoint ({describe_load_error(exc, path)}); only files saved "
            "by bisenetformer (plain tensors and dicts) can be loaded"
        ) from None
    if not isinstance(data, dict) or "format" not in data:
        raise RuntimeError(
            f"'{path}' is not a bisenetformer checkpoint (no 'format' field); if it is a backbone's ImageNet weights, "
            "load it with bisenetformer_ros.model.pretrained instead"
        )
    fmt = data["format"]
    if not isinstance(fmt, str) or not fmt.startswith("bisenetformer/"):
        raise RuntimeError(f"'{path}' has format {fmt!r}, expected '{FORMAT}'")
    if fmt != FORMAT:
        raise RuntimeError(f"'{path}' has format '{fmt}' which this version does not read (expected '{FORMAT}')")
    for key in ("model_config", "class_table", "state_dict"):
        if not isinstance(data.get(key), dict):
            raise RuntimeError(f"'{path}' is missing the '{key}' entry (or it is not a dict); the file is incomplete")
    return data


def describe_load_error(exc: Exception, path: Path) -> str:
    """Why torch could not load ``path``, in one phrase, without torch's advice to retry with ``weights_only=False``:
    that would execute pickled code from the file, the one thing never to do with a file one was handed."""
    text = str(exc)
    with open(path, "rb") as f:
        head = f.read(4)
    if "weights_only" in text or "Unsupported global" in text or "WeightsUnpickler" in text:
        return "it holds pickled Python objects, which are never executed"
    if head[:2] == b"PK" or head[:1] == b"\x80":
        return "a truncated or damaged torch file"
    return "unrecognised content: not a torch file"


def inference_defaults(data: dict[str, Any], source: str = "model file") -> InferenceDefaults:
    """:meth:`InferenceDefaults.from_checkpoint` with errors naming the file (RuntimeError, like other loading
    errors)."""
    try:
        return InferenceDefaults.from_checkpoint(data)
    except (TypeError, ValueError) as exc:
        raise RuntimeError(f"{source} has invalid inference defaults: {exc}") from None


def load_state_dict_checked(model: torch.nn.Module, state: dict[str, torch.Tensor], source: str = "checkpoint") -> None:
    """``load_state_dict`` with one error listing missing keys, unexpected keys and shape mismatches together."""
    own = model.state_dict()
    if any(k.startswith(_PRE_ALIGNMENT_KEYS) for k in state):
        raise RuntimeError(
            f"{source} was written by an older bisenetformer_ros whose feature fusion module differs from the "
            "reference implementation's; its weights fit no network of this version: retrain it with "
            "`bisenetformer train` (its recipe is stored in the file) or use a converted reference model"
        )
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    mismatched = [
        f"{k}: file {tuple(state[k].shape)} vs model {tuple(own[k].shape)}"
        for k in sorted(set(own) & set(state))
        if tuple(state[k].shape) != tuple(own[k].shape)
    ]
    if missing or unexpected or mismatched:
        parts = []
        if missing:
            parts.append(f"missing keys ({len(missing)}): {_preview(missing)}")
        if unexpected:
            parts.append(f"unexpected keys ({len(unexpected)}): {_preview(unexpected)}")
        if mismatched:
            parts.append(f"shape mismatches ({len(mismatched)}): {_preview(mismatched)}")
        raise RuntimeError(f"{source} does not match the model built from its config: " + "; ".join(parts))
    cast = {k: v.to(own[k].dtype) if v.is_floating_point() else v for k, v in state.items()}
    model.load_state_dict(cast, strict=True)


def _preview(items: list[str], limit: int = 10) -> str:
    shown = ", ".join(items[:limit])
    return shown + (f", ... (+{len(items) - limit} more)" if len(items) > limit else "")


def load_model(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> LoadedModel:
    """Rebuild the network stored in ``path`` (model file or training checkpoint) in eval mode, fp32."""
    data = read_checkpoint(path, map_location)
    try:
        config = ModelConfig.from_dict(data["model_config"])
        class_table = ClassTable.from_dict(data["class_table"])
    except (TypeError, ValueError) as exc:
        raise RuntimeError(f"'{path}' has an invalid model config or class table: {exc}") from None
    if class_table.num_classes != config.num_classes:
        raise RuntimeError(
            f"'{path}': class table has {class_table.num_classes} classes but the model config says "
            f"{config.num_classes}"
        )
    model = build_model(config)
    load_state_dict_checked(model, data["state_dict"], source=f"'{path}'")
    model.to(map_location).eval()
    extra = data.get("extra") or {}
    return LoadedModel(
        model=model,
        config=config,
        class_table=class_table,
        extra=dict(extra),
        inference=inference_defaults(data, f"'{path}'"),
    )
