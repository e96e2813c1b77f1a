"""ResNet-50 (He et al. 2016, "v1.5": stride on the 3x3 conv) with torchvision's module names, without torchvision.

Names match ``torchvision.models.resnet50().state_dict()`` (``conv1``, ``bn1``, ``layerN.M.convK``/``bnK``,
``layerN.0.downsample.{0,1}``), so the public ImageNet weights load directly; the classifier ``fc`` is not built.
"""

from __future__ import annotations

import torch
from torch import nn

from bisenetformer_ros.model.layers import init_conv_bn


class Bottleneck(nn.Module):
    """1x1 reduce -> 3x3 (carries the stride) -> 1x1 expand (x4), identity or projected shortcut."""

    expansion = 4

    def __init__(self, in_ch: int, width: int, stride: int = 1) -> None:
        super().__init__()
        out_ch = width * self.expansion
        self.conv1 = nn.Conv2d(in_ch, width, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, width, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = nn.Conv2d(width, out_ch, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(out_ch)
        self.relu = nn.ReLU(inplace=True)
        self.downsample: nn.Module | None = None
        if stride != 1 or in_ch != out_ch:
            self.downsample = nn.Sequential(
                nn.Conv2d(in_ch, out_ch, 1, stride=stride, bias=False), nn.BatchNorm2d(out_ch)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        y = self.relu(self.bn1(self.conv1(x)))
        y = self.relu(self.bn2(self.conv2(y)))
        y = self.bn3(self.conv3(y))
        return self.relu(y + identity)


class ResNet50(nn.Module):
    """ResNet-50 trunk; ``forward`` returns the outputs of layer1..layer4 (strides 4, 8, 16, 32)."""

    def __init__(self, blocks: tuple[int, int, int, int] = (3, 4, 6, 3)) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        in_ch = 64
        for i, (n, width) in enumerate(zip(blocks, (64, 128, 256, 512), strict=True)):
            stage = []
            for j in range(n):
                stage.append(Bottleneck(in_ch, width, stride=2 if (j == 0 and i > 0) else 1))
                in_ch = width * Bottleneck.expansion
            setattr(self, f"layer{i + 1}", nn.Sequential(*stage))
        self.out_channels: tuple[int, int, int, int] = (256, 512, 1024, 2048)
        init_conv_bn(self)
        # Zero-init of the last BN in each residual branch is a training trick; keep the plain init so that a model
        # trained from scratch and one loaded from ImageNet weights behave the same way at step 0.

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        c2 = self.layer1(x)
        c3 = self.layer2(c2)
        c4 = self.layer3(c3)
        c5 = self.layer4(c4)
        return c2, c3, c4, c5


def r50(stdc_base: int = 64) -> ResNet50:
    """ResNet-50 (``'r50'``); every backbone builder takes the STDC width so callers need not know which one they
    build, and ResNet-50 has a fixed width, so it is ignored here."""
    del stdc_base
    return ResNet50()
