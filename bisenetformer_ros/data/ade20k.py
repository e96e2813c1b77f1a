"""ADE20K SceneParsing loader (ADEChallengeData2016), dataset ``"ade20k"`` of the registry.

Layout (as downloaded, plus Mask2Former's ``prepare_ade20k_pan_seg.py`` output for panoptic)::

    root/images/{training,validation}/ADE_*.jpg
    root/annotations/{training,validation}/ADE_*.png      0 = other (ignored), 1..150 = classes 0..149
    root/ade20k_panoptic_{train,val}.json                 COCO-panoptic, category ids 0..149
    root/ade20k_panoptic_{train,val}/ADE_*.png

Split names ``train``/``val`` (or the folder names ``training``/``validation``). ``panoptic=None`` loads the
panoptic annotation when its json exists (training code does not tell a loader the task); the semantic map always
comes from ``annotations/`` when present, because that is the official semantic ground truth (mIoU), while the
panoptic PNGs paste instances over stuff and differ from it by a few pixels.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from bisenetformer_ros.data.ade20k_classes import ADE20K
from bisenetformer_ros.data.classes import ClassTable
from bisenetformer_ros.data.coco_panoptic import panoptic_records
from bisenetformer_ros.data.loading import IMAGE_EXTENSIONS, Record, RecordDataset, lut_from_mapping, resolve_missing

SPLITS = {"train": ("training", "train"), "val": ("validation", "val")}


def _split_names(split: str) -> tuple[str, str]:
    for key, (folder, short) in SPLITS.items():
        if split in (key, folder):
            return folder, short
    raise ValueError(f"ADE20K split must be 'train' or 'val' (or 'training'/'validation'), got '{split}'")


def semantic_lut(table: ClassTable = ADE20K) -> np.ndarray:
    """Annotation value -> train id: 0 (other) -> ignore, v in 1..150 -> v - 1, anything else -> error."""
    return lut_from_mapping({v: v - 1 for v in range(1, table.num_classes + 1)}, table.ignore_label, (0,))


class ADE20KDataset(RecordDataset):
    """ADE20K split as a Dataset of :class:`~bisenetformer_ros.data.sample.Sample` (150 classes)."""

    def __init__(
        self, root: str | Path, split: str = "train", panoptic: bool | None = None, skip_bad: bool = False
    ) -> None:
        root = Path(root)
        folder, short = _split_names(split)
        image_dir = root / "images" / folder
        ann_dir = root / "annotations" / folder
        pan_json = root / f"ade20k_panoptic_{short}.json"
        want_pan = pan_json.is_file() if panoptic is None else bool(panoptic)
        lut = semantic_lut()
        missing: list[str] = []
        if want_pan:
            records, missing, _ = panoptic_records(
                pan_json, image_dir, root / f"ade20k_panoptic_{short}", class_table=ADE20K
            )
            for rec in records:
                sem = ann_dir / f"{rec.name}.png"
                if sem.is_file():
                    rec.semantic, rec.label_lut = sem, lut
        else:
            if not image_dir.is_dir():
                raise FileNotFoundError(
                    f"ADE20K image folder '{image_dir}' does not exist (expected ADEChallengeData2016 layout: "
                    f"images/{folder}/*.jpg and annotations/{folder}/*.png under data.root)"
                )
            records = []
            for image in sorted(p for p in image_dir.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS):
                sem = ann_dir / f"{image.stem}.png"
                if not sem.is_file():
                    missing.append(f"annotation '{sem}' for image '{image}' does not exist")
                    continue
                records.append(Record(image.stem, image, sem, label_lut=lut))
        dropped = resolve_missing(missing, skip_bad, f"ADE20K split '{split}'")
        if not records:
            raise FileNotFoundError(f"no ADE20K samples found in '{image_dir}'")
        super().__init__(records, ADE20K, skip_bad, dropped)


def build_ade20k(
    split: str, root: str | None = None, panoptic: bool | None = None, skip_bad: bool = False
) -> ADE20KDataset:
    if root is None:
        raise ValueError("dataset 'ade20k' needs data.root (the ADEChallengeData2016 folder)")
    return ADE20KDataset(root, split, panoptic, skip_bad)
