"""Mask-classification targets: the set of (class, binary mask) pairs a BiSeNetFormer is trained to predict.

Panoptic task: one target per stuff class present and one per thing instance (crowd regions are skipped, as in
Mask2Former); a sample without a panoptic annotation is an error. Semantic task: one target per class present.
Void/ignore pixels belong to no target.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from bisenetformer_ros.data.classes import IGNORE_LABEL
from bisenetformer_ros.data.sample import Sample

TASKS = ("semantic", "panoptic")


@dataclass
class Targets:
    labels: torch.Tensor  # [N] int64 class ids
    masks: torch.Tensor  # [N,H,W] float32 0/1

    def to(self, device: torch.device | str) -> Targets:
        return Targets(self.labels.to(device), self.masks.to(device))


def build_targets(sample: Sample, task: str, num_classes: int, ignore_label: int = IGNORE_LABEL) -> Targets:
    if task not in TASKS:
        raise ValueError(f"task must be one of {TASKS}, got '{task}'")
    if task == "panoptic" and sample.panoptic is None:
        # Semantic targets would merge every instance of a thing class into one mask: never train on that silently.
        raise ValueError(
            f"sample '{sample.name}' has no panoptic annotation, which task 'panoptic' needs (provide the dataset's "
            f"panoptic annotation or train with data.task=semantic)"
        )
    h, w = sample.size
    labels: list[int] = []
    masks: list[np.ndarray] = []
    if task == "panoptic":
        stuff: dict[int, np.ndarray] = {}
        for s in sample.segments:
            if s.iscrowd:
                continue
            m = sample.panoptic == s.id
            if not m.any():
                continue
            if s.isthing:
                labels.append(s.category_id)
                masks.append(m)
            else:  # stuff classes are one segment per image even if a format splits them
                stuff[s.category_id] = stuff[s.category_id] | m if s.category_id in stuff else m
        for cls, m in sorted(stuff.items()):
            labels.append(cls)
            masks.append(m)
    else:
        for cls in np.unique(sample.semantic):
            if cls == ignore_label or cls >= num_classes:
                continue
            labels.append(int(cls))
            masks.append(sample.semantic == cls)
    if masks:
        mask_t = torch.from_numpy(np.stack(masks).astype(np.float32))
    else:
        mask_t = torch.zeros((0, h, w), dtype=torch.float32)
    return Targets(torch.tensor(labels, dtype=torch.int64), mask_t)
