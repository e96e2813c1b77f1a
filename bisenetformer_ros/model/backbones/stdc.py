"""STDC backbones (Fan et al., "Rethinking BiSeNet", CVPR 2021): STDC1 = STDCNet813, STDC2 = STDCNet1446.

Structure (facts of the published architecture): a stem of two stride-2 3x3 ConvBNReLU (3->base/2->base), then three
stages of STDC blocks. An STDC block with output width C runs four convolutions in series — 1x1 to C/2, then 3x3 to
C/4, C/8 and C/8 — and concatenates all four outputs (C channels). The first block of a stage has stride 2: its first
branch's output goes through a depthwise 3x3 stride-2 conv + BN before the second conv, and the same first-branch
output is average-pooled (3x3, stride 2) before the concatenation. Stage widths are 4/8/16 x base, i.e. 256/512/1024
at strides 8/16/32 for base 64. The classification tail (conv_last, fc, linear) is not built: segmentation does not use
it and it would only add parameters.

Module names follow the public STDC-Seg ImageNet checkpoints (``features.N.conv_list.M.conv``, ``avd_layer``) so those
files load by prefix only (see ``model.pretrained``).
"""

from __future__ import annotations

import torch
from torch import nn

from bisenetformer_ros.model.layers import ConvBNReLU, init_conv_bn


class STDCBlock(nn.Module):
    """Short-Term Dense Concatenate block with four convolutions (widths C/2, C/4, C/8, C/8)."""

    def __init__(self, in_ch: int, out_ch: int, stride: int = 1) -> None:
        super().__init__()
        if stride not in (1, 2):
            raise ValueError(f"STDC block stride must be 1 or 2, got {stride}")
        if out_ch % 8 != 0:
            raise ValueError(f"STDC block width must be a multiple of 8, got {out_ch}")
        self.stride = stride
        widths = [out_ch // 2, out_ch // 4, out_ch // 8, out_ch // 8]
        self.conv_list = nn.ModuleList()
        prev = in_ch
        for i, w in enumerate(widths):
            self.conv_list.append(ConvBNReLU(prev, w, kernel=1 if i == 0 else 3))
            prev = w
        if stride == 2:
            half = out_ch // 2
            # Spatial reduction happens on the cheap half-width tensor, depthwise (groups = channels).
            self.avd_layer = nn.Sequential(
                nn.Conv2d(half, half, 3, stride=2, padding=1, groups=half, bias=False), nn.BatchNorm2d(half)
            )
            self.skip = nn.AvgPool2d(kernel_size=3, stride=2, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        first = self.conv_list[0](x)
        y = self.avd_layer(first) if self.stride == 2 else first
        outs = [self.skip(first) if self.stride == 2 else first]
        for conv in self.conv_list[1:]:
            y = conv(y)
            outs.append(y)
        return torch.cat(outs, dim=1)


class STDCNet(nn.Module):
    """STDC feature extractor; ``forward`` returns the features at strides (4, 8, 16, 32)."""

    def __init__(self, layers: tuple[int, int, int] = (2, 2, 2), base: int = 64) -> None:
        super().__init__()
        self.layers = tuple(layers)
        feats: list[nn.Module] = [ConvBNReLU(3, base // 2, 3, stride=2), ConvBNReLU(base // 2, base, 3, stride=2)]
        in_ch = base
        self.stage_ends: list[int] = []  # index (exclusive) into features where strides 8, 16, 32 end
        for stage, n in enumerate(self.layers):
            out_ch = base * 4 * (2**stage)
            for j in range(n):
                feats.append(STDCBlock(in_ch, out_ch, stride=2 if j == 0 else 1))
                in_ch = out_ch
            self.stage_ends.append(len(feats))
        self.features = nn.ModuleList(feats)
        self.out_channels: tuple[int, int, int, int] = (base, base * 4, base * 8, base * 16)
        init_conv_bn(self)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        x = self.features[0](x)
        x = self.features[1](x)
        outs = [x]
        start = 2
        for end in self.stage_ends:
            for i in range(start, end):
                x = self.features[i](x)
            outs.append(x)
            start = end
        return outs[0], outs[1], outs[2], outs[3]


def stdc1(stdc_base: int = 64) -> STDCNet:
    """STDCNet813 (``'stdc1'``), ``stdc_base`` channels wide (64 in the paper)."""
    return STDCNet(layers=(2, 2, 2), base=stdc_base)


def stdc2(stdc_base: int = 64) -> STDCNet:
    """STDCNet1446 (``'stdc2'``), ``stdc_base`` channels wide (64 in the paper)."""
    return STDCNet(layers=(4, 5, 3), base=stdc_base)
