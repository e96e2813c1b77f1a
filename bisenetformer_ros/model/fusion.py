"""Feature Fusion Module (paper eq. 8-11): merges the 1/8 spatial feature with F3cp into the mask features.

The paper leaves the exact layers open (it writes a 3x3 conv over the concatenation); the authors' reference
implementation (FocoosAI/focoos, ``BiseNet.ffm`` + ``conv_out``) decides, and its published checkpoints only load into
this exact structure:

* each input is projected to the fusion width ``C`` by a plain 1x1 conv with bias (no BN, no ReLU) and the two
  projections are **summed** (not concatenated): the sum is linear, so a separate BN/ReLU per branch would change
  about half of the values and no weight mapping could reproduce the reference;
* a 1x1 ConvBNReLU ``C -> C``;
* channel attention: global average pool -> 1x1 conv ``C -> C/4`` (no bias) -> ReLU -> 1x1 conv ``C/4 -> C`` (no
  bias) -> sigmoid, applied as ``out = x * att + x`` (the residual keeps features alive where attention is small);
* a 3x3 ConvBNReLU ``C -> out_ch`` gives the mask features (eq. 9's 3x3 receptive field, at 128 channels).
"""

from __future__ import annotations

import torch
from torch import nn

from bisenetformer_ros.model.layers import ConvBNReLU


class FeatureFusion(nn.Module):
    """``(spatial [B,Cs,H/8,W/8], context [B,Cc,H/8,W/8]) -> mask features [B,out_ch,H/8,W/8]``.

    ``fusion_ch`` is the width of the fusion itself (the context-path width in the reference), ``out_ch`` the width of
    the mask features (the pixel decoder's output width).
    """

    def __init__(self, spatial_ch: int, context_ch: int, fusion_ch: int = 128, out_ch: int = 128) -> None:
        super().__init__()
        self.spatial_proj = nn.Conv2d(spatial_ch, fusion_ch, 1)
        self.context_proj = nn.Conv2d(context_ch, fusion_ch, 1)
        self.merge = ConvBNReLU(fusion_ch, fusion_ch, 1)
        hidden = max(fusion_ch // 4, 1)
        self.att_reduce = nn.Conv2d(fusion_ch, hidden, 1, bias=False)
        self.att_expand = nn.Conv2d(hidden, fusion_ch, 1, bias=False)
        self.out_conv = ConvBNReLU(fusion_ch, out_ch, 3)

    def forward(self, spatial: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        x = self.merge(self.spatial_proj(spatial) + self.context_proj(context))
        att = torch.sigmoid(self.att_expand(torch.relu(self.att_reduce(x.mean(dim=(2, 3), keepdim=True)))))
        return self.out_conv(x * att + x)
