"""The one in-memory form of an annotated image that every dataset loader returns and every consumer reads.

Loaders (Cityscapes, ADE20K, COCO-panoptic, plain folders, synthetic scenes) differ only in how they fill a
:class:`Sample`; augmentation, training targets and evaluation see nothing else, so a new format never touches them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np

from bisenetformer_ros.data.classes import IGNORE_LABEL


@dataclass(frozen=True)
class SegmentInfo:
    """One panoptic segment: its value in ``Sample.panoptic`` and its contiguous class id."""

    id: int
    category_id: int
    isthing: bool
    iscrowd: bool = False
    #: Identity of the object over the frames of a sequence (0 = none: single images, stuff).
    track_id: int = 0


@dataclass
class Sample:
    """An RGB image with its semantic map and, when the dataset has one, its panoptic annotation.

    ``semantic`` holds contiguous train ids with ``ignore_label`` (255) for unlabelled pixels. ``panoptic`` holds
    segment ids (0 = void) described by ``segments``; it is ``None`` for semantic-only datasets.
    """

    image: np.ndarray  # HxWx3 uint8 RGB
    semantic: np.ndarray  # HxW uint8 (or uint16 for > 255 classes) train ids
    panoptic: np.ndarray | None = None  # HxW int32 segment ids
    segments: list[SegmentInfo] = field(default_factory=list)
    name: str = ""
    #: Name of the video sequence this frame belongs to (frames of one sequence are consecutive and in time
    #: order); None for single images. Evaluation tracks and scores identities within each sequence.
    sequence: str | None = None

    def __post_init__(self) -> None:
        if self.image.ndim != 3 or self.image.shape[2] != 3 or self.image.dtype != np.uint8:
            raise ValueError(
                f"sample '{self.name}': image must be HxWx3 uint8, got shape {self.image.shape} {self.image.dtype}"
            )
        h, w = self.image.shape[:2]
        if h == 0 or w == 0:
            raise ValueError(f"sample '{self.name}': image is empty ({h}x{w})")
        if self.semantic.shape != (h, w):
            raise ValueError(
                f"sample '{self.name}': semantic map is {self.semantic.shape[1]}x{self.semantic.shape[0]} but the "
                f"image is {w}x{h}"
            )
        if self.panoptic is not None and self.panoptic.shape != (h, w):
            raise ValueError(
                f"sample '{self.name}': panoptic map is {self.panoptic.shape[1]}x{self.panoptic.shape[0]} but the "
                f"image is {w}x{h}"
            )

    @property
    def size(self) -> tuple[int, int]:
        return int(self.image.shape[0]), int(self.image.shape[1])


def semantic_from_ids(ids: np.ndarray, id_to_class: Mapping[int, int], ignore_label: int = IGNORE_LABEL) -> np.ndarray:
    """Class-id map of a segment-id map: ``id_to_class[id]`` per pixel, ``ignore_label`` for unlisted ids (void).

    One ``np.unique`` pass instead of a mask per segment or a lookup table sized by the largest id (COCO-style ids
    reach 256^3); uint8 output when every value fits, uint16 otherwise.
    """
    values, inverse = np.unique(ids, return_inverse=True)
    classes = np.array([id_to_class.get(int(v), ignore_label) for v in values], dtype=np.int64)
    top = max([ignore_label, *id_to_class.values()]) if id_to_class else ignore_label
    dtype = np.uint8 if top <= 255 else np.uint16
    return classes[inverse.reshape(ids.shape)].astype(dtype)


def semantic_from_panoptic(
    panoptic: np.ndarray, segments: list[SegmentInfo], ignore_label: int = IGNORE_LABEL
) -> np.ndarray:
    """Semantic train ids implied by a panoptic annotation (void and crowd-free gaps become ``ignore_label``)."""
    return semantic_from_ids(panoptic, {s.id: s.category_id for s in segments}, ignore_label)


def check_class_ids(sample: Sample, num_classes: int, ignore_label: int = IGNORE_LABEL) -> None:
    """Raise naming the sample when a label is neither a class id nor the ignore label (never train on it silently)."""
    values = np.unique(sample.semantic)
    bad = [int(v) for v in values if v >= num_classes and v != ignore_label]
    if bad:
        raise ValueError(
            f"sample '{sample.name}': semantic labels {bad[:10]} are outside the class table (0..{num_classes - 1}, "
            f"ignore {ignore_label})"
        )
    bad_seg = [s.category_id for s in sample.segments if not 0 <= s.category_id < num_classes]
    if bad_seg:
        raise ValueError(f"sample '{sample.name}': segment categories {bad_seg[:10]} are outside the class table")
