"""Load public ImageNet weights into the backbones (the paper initialises every backbone from ImageNet-1k).

Supported files (read with ``torch.load(weights_only=True)``, so no pickled code runs):

* STDC-Seg ImageNet checkpoints (``STDCNet813M_73.91.tar``, ``STDCNet1446_76.47.tar``): a dict whose ``'state_dict'``
  holds ``features.N.conv_list.M.conv.weight`` style keys. The classification tail (``conv_last``, ``fc``, ``bn``,
  ``linear``) and the ``x2``..``x32`` stage aliases that repeat the ``features`` weights are ignored.
* torchvision ``resnet50`` ``state_dict`` files (``conv1``, ``bn1``, ``layerN.M...``); ``fc`` is ignored.

A ``module.`` prefix (DataParallel) is stripped. With ``strict=True`` any missing backbone weight, unexpected key or
shape mismatch raises one error that lists them; ``strict=False`` loads what matches and returns a
:class:`PretrainedReport` listing the rest, for deliberate partial initialisation.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from bisenetformer_ros.model.backbones import ResNet50, STDCNet
from bisenetformer_ros.model.bisenetformer import BiSeNetFormer

STDC_IGNORED_PREFIXES = ("conv_last.", "fc.", "bn.", "linear.", "gap.", "x2.", "x4.", "x8.", "x16.", "x32.")
RESNET_IGNORED_PREFIXES = ("fc.",)


@dataclass
class PretrainedReport:
    """What happened: keys loaded, backbone weights the file lacked, file keys with no place, shape mismatches, and
    keys deliberately ignored (classifier heads)."""

    path: str
    loaded: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    mismatched: list[str] = field(default_factory=list)
    ignored: list[str] = field(default_factory=list)

    @property
    def complete(self) -> bool:
        return not (self.missing or self.unexpected or self.mismatched)

    def summary(self) -> str:
        parts = [f"loaded {len(self.loaded)} tensors from '{self.path}'"]
        if self.ignored:
            parts.append(f"ignored {len(self.ignored)} classifier/alias keys")
        if self.missing:
            parts.append(f"missing ({len(self.missing)}): {_preview(self.missing)}")
        if self.unexpected:
            parts.append(f"unexpected ({len(self.unexpected)}): {_preview(self.unexpected)}")
        if self.mismatched:
            parts.append(f"shape mismatches ({len(self.mismatched)}): {_preview(self.mismatched)}")
        return "; ".join(parts)


def _preview(items: list[str], limit: int = 8) -> str:
    return ", ".join(items[:limit]) + (f", ... (+{len(items) - limit} more)" if len(items) > limit else "")


def read_state_dict(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """The tensor dict inside a weights file: ``obj['state_dict']``, ``obj['model']`` or the object itself."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"pretrained weights '{path}' do not exist; download the ImageNet file first")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise RuntimeError(
            f"cannot read '{path}' as plain tensors ({type(exc).__name__}: {str(exc).splitlines()[0]})"
        ) from None
    if isinstance(obj, dict):
        for key in ("state_dict", "model"):
            if isinstance(obj.get(key), dict):
                obj = obj[key]
                break
    if not isinstance(obj, dict) or not obj or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise RuntimeError(
            f"'{path}' holds no state dict (expected tensors under 'state_dict' or at top level); is it a model file? "
            "Use checkpoint.load_model for bisenetformer files"
        )
    return {(k[len("module.") :] if k.startswith("module.") else k): v for k, v in obj.items()}


def load_backbone_weights(
    target: BiSeNetFormer | nn.Module, path: str | os.PathLike, strict: bool = True
) -> PretrainedReport:
    """Copy ImageNet weights from ``path`` into ``target``'s backbone (a model or a backbone module).

    The file layout is chosen from the backbone type: STDC-Seg for :class:`STDCNet`, torchvision for
    :class:`ResNet50`. Raises ``RuntimeError`` listing missing/unexpected/mismatched keys when ``strict``.
    """
    backbone = target.backbone if isinstance(target, BiSeNetFormer) else target
    if isinstance(backbone, STDCNet):
        ignored_prefixes = STDC_IGNORED_PREFIXES
        layout = "STDC-Seg ImageNet"
    elif isinstance(backbone, ResNet50):
        ignored_prefixes = RESNET_IGNORED_PREFIXES
        layout = "torchvision resnet50"
    else:
        raise ValueError(f"no pretrained layout known for backbone type {type(backbone).__name__}")
    state = read_state_dict(path)
    report = PretrainedReport(path=str(path))
    own = backbone.state_dict()
    usable: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        if key.startswith(ignored_prefixes):
            report.ignored.append(key)
        elif key not in own:
            report.unexpected.append(key)
        elif tuple(value.shape) != tuple(own[key].shape):
            report.mismatched.append(f"{key}: file {tuple(value.shape)} vs model {tuple(own[key].shape)}")
        else:
            usable[key] = value
    # Files written before PyTorch 0.4.1 have no BN step counters; they carry no information, so not a real gap.
    report.missing = sorted(k for k in own if k not in state and not k.endswith("num_batches_tracked"))
    report.unexpected.sort()
    if strict and not report.complete:
        raise RuntimeError(
            f"'{path}' does not fit the {type(backbone).__name__} backbone as a {layout} file: {report.summary()}. "
            "Check the backbone choice (stdc1/stdc2/r50) matches the file, or load with strict=False"
        )
    with torch.no_grad():
        for key, value in usable.items():
            own[key].copy_(value.to(own[key].dtype))
    report.loaded = sorted(usable)
    return report
