"""Set criterion (paper §4.1, Mask2Former): CE over classes with a down-weighted "no object", sigmoid BCE and dice
on uncertainty-sampled points of matched masks, applied to the final and every auxiliary prediction.

Loss weights are class 2, mask 5, dice 5; the no-object class weight is 0.1 because most of the 100 queries match
nothing and would otherwise dominate the classification loss.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.distributed as dist
import torch.nn.functional as F

from bisenetformer_ros.train.matcher import HungarianMatcher
from bisenetformer_ros.train.points import point_sample, uncertain_point_coords
from bisenetformer_ros.train.targets import Targets


@dataclass
class CriterionConfig:
    class_weight: float = 2.0
    mask_weight: float = 5.0
    dice_weight: float = 5.0
    no_object_weight: float = 0.1
    num_points: int = 12544
    oversample_ratio: float = 3.0
    importance_sample_ratio: float = 0.75
    deep_supervision: bool = True


def dice_loss(logits: torch.Tensor, targets: torch.Tensor, num_masks: float) -> torch.Tensor:
    p = logits.sigmoid()
    num = 2 * (p * targets).sum(-1)
    den = p.sum(-1) + targets.sum(-1)
    return (1 - (num + 1) / (den + 1)).sum() / num_masks


def bce_loss(logits: torch.Tensor, targets: torch.Tensor, num_masks: float) -> torch.Tensor:
    return F.binary_cross_entropy_with_logits(logits, targets, reduction="none").mean(1).sum() / num_masks


class SetCriterion(torch.nn.Module):
    def __init__(self, num_classes: int, config: CriterionConfig | None = None) -> None:
        super().__init__()
        self.config = config or CriterionConfig()
        self.num_classes = num_classes
        c = self.config
        self.matcher = HungarianMatcher(c.class_weight, c.mask_weight, c.dice_weight, c.num_points)
        weight = torch.ones(num_classes + 1)
        weight[-1] = c.no_object_weight
        self.register_buffer("empty_weight", weight)

    def _num_masks(self, targets: list[Targets], device: torch.device) -> float:
        """Average number of target masks per process (the loss normaliser), all-reduced under DDP."""
        n = torch.tensor([float(sum(len(t.labels) for t in targets))], device=device)
        if dist.is_available() and dist.is_initialized():
            dist.all_reduce(n)
            n = n / dist.get_world_size()
        return max(float(n.item()), 1.0)

    def _single(
        self, logits: torch.Tensor, masks: torch.Tensor, targets: list[Targets], num_masks: float
    ) -> dict[str, torch.Tensor]:
        indices = self.matcher(logits, masks, targets)
        b, q, _ = logits.shape
        target_classes = torch.full((b, q), self.num_classes, dtype=torch.int64, device=logits.device)
        for i, (src, tgt) in enumerate(indices):
            target_classes[i, src.to(logits.device)] = targets[i].labels.to(logits.device)[tgt.to(logits.device)]
        loss_ce = F.cross_entropy(logits.float().transpose(1, 2), target_classes, self.empty_weight)

        batch_idx = torch.cat([torch.full_like(src, i) for i, (src, _) in enumerate(indices)])
        src_idx = torch.cat([src for src, _ in indices])
        if src_idx.numel() == 0:
            zero = masks.sum() * 0.0
            return {"loss_ce": loss_ce, "loss_mask": zero, "loss_dice": zero}
        src_masks = masks[batch_idx.to(masks.device), src_idx.to(masks.device)].float().unsqueeze(1)
        tgt_masks = torch.cat([t.masks[tgt.to(t.masks.device)] for t, (_, tgt) in zip(targets, indices, strict=True)])
        tgt_masks = tgt_masks.to(src_masks.device).unsqueeze(1)
        c = self.config
        with torch.no_grad():
            coords = uncertain_point_coords(src_masks, c.num_points, c.oversample_ratio, c.importance_sample_ratio)
            point_labels = point_sample(tgt_masks, coords).squeeze(1)
        point_logits = point_sample(src_masks, coords).squeeze(1)
        return {
            "loss_ce": loss_ce,
            "loss_mask": bce_loss(point_logits, point_labels, num_masks),
            "loss_dice": dice_loss(point_logits, point_labels, num_masks),
        }

    def forward(self, outputs: dict, targets: list[Targets]) -> dict[str, torch.Tensor]:
        """Weighted losses; ``'loss'`` is their sum (what to back-propagate), the rest are for logging."""
        num_masks = self._num_masks(targets, outputs["pred_logits"].device)
        preds = [outputs]
        if self.config.deep_supervision:
            preds = [*outputs.get("aux_outputs", []), outputs]
        c = self.config
        weights = {"loss_ce": c.class_weight, "loss_mask": c.mask_weight, "loss_dice": c.dice_weight}
        losses: dict[str, torch.Tensor] = {}
        total = outputs["pred_logits"].new_zeros(())
        for i, pred in enumerate(preds):
            single = self._single(pred["pred_logits"], pred["pred_masks"], targets, num_masks)
            suffix = "" if i == len(preds) - 1 else f"_{i}"
            for k, v in single.items():
                losses[k + suffix] = v.detach()
                total = total + weights[k] * v
        losses["loss"] = total
        return losses
