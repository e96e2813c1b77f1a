"""Point sampling for mask losses (PointRend / Mask2Former): losses on K points instead of every pixel.

Sampling a few thousand points per mask makes the matcher and the mask losses independent of image size, which is
what lets BiSeNetFormer train at 1024x2048 with 100 queries; uncertainty sampling puts most points where the
prediction is least sure (near boundaries).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def point_sample(inputs: torch.Tensor, coords: torch.Tensor) -> torch.Tensor:
    """Bilinearly sample ``inputs [N,C,H,W]`` at normalised ``coords [N,P,2]`` in [0,1] (x, y) -> ``[N,C,P]``."""
    out = F.grid_sample(inputs, 2.0 * coords.unsqueeze(2) - 1.0, mode="bilinear", align_corners=False)
    return out.squeeze(3)


def uncertain_point_coords(
    mask_logits: torch.Tensor, num_points: int, oversample: float, importance: float
) -> torch.Tensor:
    """Coordinates ``[N,num_points,2]``: ``importance`` of them the most uncertain (|logit| smallest) of
    ``oversample * num_points`` random candidates, the rest uniformly random."""
    n = mask_logits.shape[0]
    device = mask_logits.device
    num_sampled = int(num_points * oversample)
    candidates = torch.rand(n, num_sampled, 2, device=device)
    logits = point_sample(mask_logits, candidates)  # [N,1,P]
    uncertainty = -logits.abs().squeeze(1)
    num_uncertain = int(importance * num_points)
    num_random = num_points - num_uncertain
    idx = torch.topk(uncertainty, k=num_uncertain, dim=1).indices
    picked = torch.gather(candidates, 1, idx.unsqueeze(-1).expand(-1, -1, 2))
    if num_random > 0:
        picked = torch.cat([picked, torch.rand(n, num_random, 2, device=device)], dim=1)
    return picked
