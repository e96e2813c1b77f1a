"""Datasets by name (``synthetic``, ``cityscapes``, ``ade20k``, ``coco_panoptic``, ``folder``) -> loader.

Every loader is a ``torch.utils.data.Dataset`` of :class:`~bisenetformer_ros.data.sample.Sample` with a
``class_table`` attribute, so training, evaluation and ``predict`` treat all formats alike. The names and where each
loader lives are declared in :data:`bisenetformer_ros.registry.DATASETS`; loaders for the public formats are imported
only when used.
"""

from __future__ import annotations

from typing import Any, Protocol

from torch.utils.data import Dataset

from bisenetformer_ros.data.classes import ClassTable
from bisenetformer_ros.data.sample import Sample, SegmentInfo
from bisenetformer_ros.data.synthetic import (
    DEFAULT_SIZE,
    SYNTHETIC,
    TRAIN_SEED,
    VAL_SEED,
    render_scene,
    render_sequence_frame,
)
from bisenetformer_ros.registry import DATASETS


class SampleDataset(Protocol):
    class_table: ClassTable

    def __len__(self) -> int: ...

    def __getitem__(self, index: int) -> Sample: ...


def dataset_names() -> list[str]:
    return DATASETS.names()


def build_dataset(name: str, split: str, root: str | None = None, **kwargs: Any) -> SampleDataset:
    """Instantiate dataset ``name`` for ``split``; unknown names list the known ones."""
    return DATASETS.load(name)(split=split, root=root, **kwargs)


class SyntheticDataset(Dataset):
    """Synthetic scenes rendered on the fly (no disk): image ``i`` of split ``train`` is ``render_scene(TRAIN_SEED+i)``,
    of ``val`` is ``render_scene(VAL_SEED+i)`` -- the held-out split never shares a seed with training."""

    class_table = SYNTHETIC

    def __init__(self, split: str = "train", num_images: int | None = None, image_size: tuple[int, int] = DEFAULT_SIZE):
        seeds = {"train": TRAIN_SEED, "val": VAL_SEED}
        if split not in seeds:
            raise ValueError(f"synthetic split must be 'train' or 'val', got '{split}'")
        self.seed = seeds[split]
        self.num_images = int(num_images if num_images is not None else (100_000 if split == "train" else 64))
        self.image_size = (int(image_size[0]), int(image_size[1]))

    def __len__(self) -> int:
        return self.num_images

    def __getitem__(self, index: int) -> Sample:
        if not 0 <= index < self.num_images:
            raise IndexError(index)
        scene = render_scene(self.seed + index, *self.image_size)
        segments = [SegmentInfo(s.id, s.category_id, s.isthing) for s in scene.segments]
        return Sample(scene.image, scene.semantic, scene.panoptic, segments, name=f"synthetic_{self.seed + index:08d}")


class SyntheticSequenceDataset(Dataset):
    """Tracking sequences rendered on the fly (:func:`render_sequence_frame`): ``num_sequences`` sequences of
    ``frames`` frames at ``rate`` Hz; sample ``i`` is frame ``i % frames`` of sequence ``i // frames`` (seed
    ``VAL_SEED + sequence`` for ``val``, ``TRAIN_SEED + sequence`` for ``train``), with ground-truth identities
    (``SegmentInfo.track_id``) and ``Sample.sequence`` set, so ``evaluate`` reports the video metrics."""

    class_table = SYNTHETIC

    def __init__(
        self,
        split: str = "val",
        num_sequences: int = 4,
        frames: int = 30,
        rate: float = 10.0,
        image_size: tuple[int, int] = (192, 256),
    ):
        if split not in ("train", "val"):
            raise ValueError(f"synthetic_sequence has splits 'train' and 'val', not '{split}'")
        if num_sequences < 1 or frames < 1 or not rate > 0:
            raise ValueError("synthetic_sequence needs >= 1 sequence of >= 1 frame at a rate > 0")
        self.seed = TRAIN_SEED if split == "train" else VAL_SEED
        self.num_sequences, self.frames, self.rate, self.image_size = num_sequences, frames, float(rate), image_size

    def __len__(self) -> int:
        return self.num_sequences * self.frames

    def __getitem__(self, index: int) -> Sample:
        if not 0 <= index < len(self):
            raise IndexError(index)
        seq, frame = divmod(index, self.frames)
        seed = self.seed + seq
        scene = render_sequence_frame(seed, *self.image_size, t=frame / self.rate)
        segments = [SegmentInfo(s.id, s.category_id, s.isthing, track_id=s.track_id) for s in scene.segments]
        name = f"sequence_{seed:08d}"
        return Sample(scene.image, scene.semantic, scene.panoptic, segments, name=f"{name}_{frame:04d}", sequence=name)


def build_synthetic_sequence(split: str, root: str | None = None, **kwargs: Any) -> SampleDataset:
    if root is not None:
        raise ValueError("synthetic_sequence is rendered on the fly: it takes no --root")
    return SyntheticSequenceDataset(split)


def build_synthetic(split: str, root: str | None = None, **kwargs: Any) -> SampleDataset:
    if root is not None:  # a dataset written by `bisenetformer make-synthetic` is plain COCO-panoptic
        return build_dataset(
            "coco_panoptic", split=split, root=root, class_table=SYNTHETIC, skip_bad=kwargs.get("skip_bad", False)
        )
    return SyntheticDataset(split, kwargs.get("num_images"), kwargs.get("image_size", DEFAULT_SIZE))
