"""Context path (paper eq. 1-3): enlarges the receptive field on the 1/32 and 1/16 backbone features.

``F1cp = ARM(F1) + ConvBNReLU1x1(GAP(F1))``, ``F2cp = ARM(F2) + ConvBNReLU3x3(Up(F1cp))`` and
``F3cp = ConvBNReLU3x3(Up(F2cp))``, all 128 channels, bilinear up-sampling with ``align_corners=False`` (the setting
that ONNX ``Resize`` and TensorRT reproduce exactly). The 3x3 refinement after each up-sampling removes the blocky
artefacts of plain interpolation; it is where the implementation follows STDC-Seg's context path.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from bisenetformer_ros.model.layers import ConvBNReLU


class AttentionRefinement(nn.Module):
    """ARM: 1x1 projection to the common width, 3x3 ConvBNReLU, then channel attention multiplied in.

    Projecting first (1x1) keeps the 3x3 conv at 128 channels; a 3x3 directly on the 1024/2048-channel backbone output
    would cost several GMACs at Cityscapes resolution and miss the paper's budget.
    """

    def __init__(self, in_ch: int, out_ch: int) -> None:
        super().__init__()
        self.proj = nn.Conv2d(in_ch, out_ch, 1, bias=False)
        self.conv = ConvBNReLU(out_ch, out_ch, 3)
        self.atten_conv = nn.Conv2d(out_ch, out_ch, 1, bias=False)
        self.atten_bn = nn.BatchNorm2d(out_ch)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feat = self.conv(self.proj(x))
        att = torch.sigmoid(self.atten_bn(self.atten_conv(feat.mean(dim=(2, 3), keepdim=True))))
        return feat * att


class ContextPath(nn.Module):
    """Produces ``(F1cp, F2cp, F3cp)`` at strides 32, 16 and 8 from the backbone's 1/16 and 1/32 features."""

    def __init__(self, ch16: int, ch32: int, out_ch: int = 128) -> None:
        super().__init__()
        self.arm32 = AttentionRefinement(ch32, out_ch)
        self.arm16 = AttentionRefinement(ch16, out_ch)
        self.global_conv = ConvBNReLU(ch32, out_ch, 1)
        self.refine32 = ConvBNReLU(out_ch, out_ch, 3)
        self.refine16 = ConvBNReLU(out_ch, out_ch, 3)

    def forward(
        self, f8: torch.Tensor, f16: torch.Tensor, f32: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        # GAP is a 1x1 map; adding it broadcasts the global scene descriptor over every position.
        global_ctx = self.global_conv(f32.mean(dim=(2, 3), keepdim=True))
        f1cp = self.arm32(f32) + global_ctx
        up1 = F.interpolate(f1cp, size=f16.shape[-2:], mode="bilinear", align_corners=False)
        f2cp = self.arm16(f16) + self.refine32(up1)
        up2 = F.interpolate(f2cp, size=f8.shape[-2:], mode="bilinear", align_corners=False)
        f3cp = self.refine16(up2)
        return f1cp, f2cp, f3cp
