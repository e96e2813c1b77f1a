"""Small building blocks shared by the backbones, the context path and the segmentation head."""

from __future__ import annotations

import torch
from torch import nn


class ConvBNReLU(nn.Module):
    """``Conv2d (no bias) -> BatchNorm2d -> ReLU`` with 'same' padding.

    The attribute names ``conv`` / ``bn`` are those of the public STDC-Seg ImageNet checkpoints, so backbone blocks
    built from this module load those files without any key renaming.
    """

    def __init__(
        self, in_ch: int, out_ch: int, kernel: int = 3, stride: int = 1, groups: int = 1, relu: bool = True
    ) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_ch, out_ch, kernel, stride=stride, padding=kernel // 2, groups=groups, bias=False)
        self.bn = nn.BatchNorm2d(out_ch)
        self.relu = nn.ReLU(inplace=True) if relu else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.relu(self.bn(self.conv(x)))


def init_conv_bn(module: nn.Module) -> None:
    """He-normal init for convolutions (fan-out, ReLU nets), unit BN scale: the usual start for CNNs from scratch."""
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, (nn.BatchNorm2d, nn.GroupNorm)):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
