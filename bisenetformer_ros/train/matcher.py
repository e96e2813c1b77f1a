"""Hungarian matching of predicted queries to ground-truth segments (paper §4.1: class 2, mask BCE 5, dice 5).

Set prediction needs a one-to-one assignment before any loss can be computed; the cost of pairing query ``q`` with
target ``t`` mixes how likely ``q`` says class(t) and how well its mask overlaps mask(t), the latter measured on the
same random points for all pairs (12,544 by default) so the cost matrix is cheap at any resolution.
"""

from __future__ import annotations

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment

from bisenetformer_ros.train.points import point_sample
from bisenetformer_ros.train.targets import Targets


def pairwise_dice_cost(pred_logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """``1 - dice`` between every prediction ``[Q,P]`` (logits) and every target ``[N,P]`` (0/1) -> ``[Q,N]``."""
    p = pred_logits.sigmoid()
    num = 2 * p @ target.T
    den = p.sum(-1)[:, None] + target.sum(-1)[None, :]
    return 1 - (num + 1) / (den + 1)


def pairwise_bce_cost(pred_logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean sigmoid BCE of every prediction ``[Q,P]`` against every target ``[N,P]`` -> ``[Q,N]``.

    Uses BCE(x, y) = softplus(x) - x*y, so the pairwise matrix is one matrix product instead of Q*N loss calls.
    """
    p = pred_logits.shape[1]
    pos = torch.nn.functional.softplus(-pred_logits)  # loss if y = 1
    neg = torch.nn.functional.softplus(pred_logits)  # loss if y = 0
    return (pos @ target.T + neg @ (1 - target).T) / p


class HungarianMatcher:
    def __init__(
        self, cost_class: float = 2.0, cost_mask: float = 5.0, cost_dice: float = 5.0, num_points: int = 12544
    ) -> None:
        if cost_class == 0 and cost_mask == 0 and cost_dice == 0:
            raise ValueError("all matcher costs are 0; at least one must be positive")
        self.cost_class = cost_class
        self.cost_mask = cost_mask
        self.cost_dice = cost_dice
        self.num_points = num_points

    @torch.no_grad()
    def __call__(
        self, pred_logits: torch.Tensor, pred_masks: torch.Tensor, targets: list[Targets]
    ) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """For each image, ``(query_indices, target_indices)`` of the optimal assignment (int64 tensors on CPU)."""
        indices = []
        for b, tgt in enumerate(targets):
            if tgt.labels.numel() == 0:
                empty = torch.zeros(0, dtype=torch.int64)
                indices.append((empty, empty))
                continue
            prob = pred_logits[b].float().softmax(-1)  # [Q,K+1]
            c_class = -prob[:, tgt.labels]  # [Q,N]
            coords = torch.rand(1, self.num_points, 2, device=pred_masks.device)
            out = point_sample(pred_masks[b].float().unsqueeze(1), coords.expand(pred_masks.shape[1], -1, -1))
            out = out.squeeze(1)  # [Q,P]
            tm = point_sample(tgt.masks.unsqueeze(1), coords.expand(tgt.masks.shape[0], -1, -1)).squeeze(1)
            c_mask = pairwise_bce_cost(out, tm)
            c_dice = pairwise_dice_cost(out, tm)
            cost = self.cost_class * c_class + self.cost_mask * c_mask + self.cost_dice * c_dice
            cost_np = np.nan_to_num(cost.cpu().numpy(), nan=1e6, posinf=1e6, neginf=-1e6)
            rows, cols = linear_sum_assignment(cost_np)
            indices.append((torch.as_tensor(rows, dtype=torch.int64), torch.as_tensor(cols, dtype=torch.int64)))
        return indices
