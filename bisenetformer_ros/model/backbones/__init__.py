"""Backbones returning features at strides 4, 8, 16 and 32 (``out_channels`` lists their widths).

The 1/8 feature is BiSeNetFormer's spatial path; the 1/16 and 1/32 features feed the context path (§3.2, §4.1: the
context path re-uses the spatial path's computation, as in STDC-Seg).
"""

from __future__ import annotations

from torch import nn

from bisenetformer_ros.model.backbones.resnet import ResNet50
from bisenetformer_ros.model.backbones.stdc import STDCNet
from bisenetformer_ros.registry import BACKBONES


def build_backbone(name: str, stdc_base: int = 64) -> nn.Module:
    """Construct ``'stdc1'`` (STDCNet813), ``'stdc2'`` (STDCNet1446) or ``'r50'`` (torchvision ResNet-50 layout), as
    declared in :data:`bisenetformer_ros.registry.BACKBONES`."""
    return BACKBONES.load(name)(stdc_base)


__all__ = ["ResNet50", "STDCNet", "build_backbone"]
