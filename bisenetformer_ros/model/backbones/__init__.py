"""Backbones returning features at strides 4, 8, 16 and 32 (``out_channels`` lists their widths).

The 1/8 feature is BiSeNetFormer's spatial path; the 1/16 and 1/32 features feed the context path (§3.2, §4.1: the
context path re-uses the spatial path's computation, as in STDC-Seg).
"""

from __future__ import annotations

from torch import nn

from bisenetformer_ros.model.backbones.resnet import ResNet50
from bisenetformer_ros.model.backbones.stdc import STDCNet


def build_backbone(name: str, stdc_base: int = 64) -> nn.Module:
    """Construct ``'stdc1'`` (STDCNet813), ``'stdc2'`` (STDCNet1446) or ``'r50'`` (torchvision ResNet-50 layout)."""
    if name == "stdc1":
        return STDCNet(layers=(2, 2, 2), base=stdc_base)
    if name == "stdc2":
        return STDCNet(layers=(4, 5, 3), base=stdc_base)
    if name == "r50":
        return ResNet50()
    raise ValueError(f"unknown backbone '{name}'; choose stdc1, stdc2 or r50")


__all__ = ["ResNet50", "STDCNet", "build_backbone"]
