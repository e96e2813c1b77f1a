"""Dataset registry: a name (``synthetic``, ``cityscapes``, ``ade20k``, ``coco_panoptic``, ``folder``) -> loader.

Every loader is a ``torch.utils.data.Dataset`` of :class:`~bisenetformer_ros.data.sample.Sample` with a
``class_table`` attribute, so training, evaluation and ``predict`` treat all formats alike. Loaders for the public
formats live in their own modules and register themselves here on import.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any, Protocol

from torch.utils.data import Dataset

from bisenetformer_ros.data.classes import ClassTable
from bisenetformer_ros.data.sample import Sample, SegmentInfo
from bisenetformer_ros.data.synthetic import DEFAULT_SIZE, SYNTHETIC, TRAIN_SEED, VAL_SEED, render_scene


class SampleDataset(Protocol):
    class_table: ClassTable

    def __len__(self) -> int: ...

    def __getitem__(self, index: int) -> Sample: ...


Factory = Callable[..., SampleDataset]
_REGISTRY: dict[str, Factory] = {}
# Modules that register the loaders of the public formats (imported on first use, as they import this module).
_BUILTIN_MODULES = (
    "bisenetformer_ros.data.cityscapes",
    "bisenetformer_ros.data.ade20k",
    "bisenetformer_ros.data.coco_panoptic",
    "bisenetformer_ros.data.folder",
)


def register_dataset(name: str) -> Callable[[Factory], Factory]:
    def deco(factory: Factory) -> Factory:
        _REGISTRY[name] = factory
        return factory

    return deco


def _load_builtin() -> None:
    for module in _BUILTIN_MODULES:
        importlib.import_module(module)


def dataset_names() -> list[str]:
    _load_builtin()
    return sorted(_REGISTRY)


def build_dataset(name: str, split: str, root: str | None = None, **kwargs: Any) -> SampleDataset:
    """Instantiate dataset ``name`` for ``split``; unknown names list the known ones."""
    _load_builtin()
    if name not in _REGISTRY:
        raise ValueError(f"unknown dataset '{name}'; known datasets: {sorted(_REGISTRY)}")
    return _REGISTRY[name](split=split, root=root, **kwargs)


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


@register_dataset("synthetic")
def _synthetic(split: str, root: str | None = None, **kwargs: Any) -> SampleDataset:
    if root is not None:  # a dataset written by `bisenetformer make-synthetic` is plain COCO-panoptic
        return build_dataset(
            "coco_panoptic", split=split, root=root, class_table=SYNTHETIC, skip_bad=kwargs.get("skip_bad", False)
        )
    return SyntheticDataset(split, kwargs.get("num_images"), kwargs.get("image_size", DEFAULT_SIZE))
