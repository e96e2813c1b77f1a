"""Cityscapes loader (fine annotations), dataset ``"cityscapes"`` of the registry.

Layout (as downloaded, plus the outputs of cityscapesScripts' ``createTrainIdLabelImgs`` / ``createPanopticImgs``)::

    root/leftImg8bit/<split>/<city>/<city>_<seq>_<frame>_leftImg8bit.png
    root/gtFine/<split>/<city>/<city>_<seq>_<frame>_gtFine_labelTrainIds.png   (or *_gtFine_labelIds.png)
    root/gtFine/cityscapes_panoptic_<split>.json
    root/gtFine/cityscapes_panoptic_<split>/<city>_<seq>_<frame>_gtFine_panoptic.png

Semantic labels are the 19 train ids (255 ignore); ``*_labelIds.png`` is mapped through the official
id -> trainId table when ``labelTrainIds`` have not been generated, so the raw download works as is. Panoptic
category ids are Cityscapes label ids (24 person, 26 car, ...), mapped to train ids the same way; a json exported
with ``--use-train-id`` is recognised by its category names. ``panoptic=None`` loads the panoptic annotation when
its json exists (the trainer does not tell a loader its task).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from bisenetformer_ros.data.classes import CITYSCAPES, ClassTable
from bisenetformer_ros.data.loading import (
    Record,
    RecordDataset,
    lut_from_mapping,
    panoptic_entries,
    read_json,
    resolve_missing,
)

# cityscapesScripts labels.py: label id -> train id for the 19 evaluated classes; every other id (0..33) is ignored.
LABEL_TO_TRAIN: dict[int, int] = {
    7: 0, 8: 1, 11: 2, 12: 3, 13: 4, 17: 5, 19: 6, 20: 7, 21: 8, 22: 9, 23: 10,
    24: 11, 25: 12, 26: 13, 27: 14, 28: 15, 31: 16, 32: 17, 33: 18,
}  # fmt: skip
NUM_LABEL_IDS = 34  # ids 0..33; -1 (license plate) is never written into labelIds PNGs


def label_id_lut(table: ClassTable = CITYSCAPES) -> np.ndarray:
    """labelIds value -> train id (ignored ids -> 255, values >= 34 -> -1 = error)."""
    ignored = [i for i in range(NUM_LABEL_IDS) if i not in LABEL_TO_TRAIN]
    return lut_from_mapping(LABEL_TO_TRAIN, table.ignore_label, ignored)


def train_id_lut(table: ClassTable = CITYSCAPES) -> np.ndarray:
    """labelTrainIds value -> itself for 0..18 and 255; anything else -> -1 (an error naming the file)."""
    return lut_from_mapping({i: i for i in range(table.num_classes)}, table.ignore_label, (table.ignore_label,))


def panoptic_category_map(categories: list[dict], path: Path) -> dict[int, int]:
    """Json category id -> train id; label ids normally, train ids for a ``--use-train-id`` export (by name)."""
    out: dict[int, int] = {}
    for c in categories:
        cid, name = int(c["id"]), str(c.get("name", "")).strip()
        if cid in LABEL_TO_TRAIN and (not name or CITYSCAPES.names[LABEL_TO_TRAIN[cid]] == name):
            out[cid] = LABEL_TO_TRAIN[cid]
        elif 0 <= cid < CITYSCAPES.num_classes and CITYSCAPES.names[cid] == name:
            out[cid] = cid
        else:
            raise ValueError(
                f"'{path}': category {cid} '{name}' is not one of the 19 Cityscapes evaluation classes (label ids "
                f"{sorted(LABEL_TO_TRAIN)})"
            )
    return out


class CityscapesDataset(RecordDataset):
    """Cityscapes split as a Dataset of :class:`~bisenetformer_ros.data.sample.Sample` (19 classes)."""

    def __init__(
        self, root: str | Path, split: str = "train", panoptic: bool | None = None, skip_bad: bool = False
    ) -> None:
        root = Path(root)
        image_root = root / "leftImg8bit" / split
        gt_root = root / "gtFine" / split
        pan_json = root / "gtFine" / f"cityscapes_panoptic_{split}.json"
        want_pan = pan_json.is_file() if panoptic is None else bool(panoptic)
        missing: list[str] = []
        records: list[Record] = []
        if want_pan:
            records = self._panoptic_records(root, split, pan_json, missing)
        else:
            if not image_root.is_dir():
                raise FileNotFoundError(
                    f"Cityscapes image folder '{image_root}' does not exist (expected leftImg8bit/{split}/<city>/ "
                    f"and gtFine/{split}/<city>/ under data.root)"
                )
            for image in sorted(image_root.glob("*/*_leftImg8bit.png")):
                rec = self._semantic_record(image, gt_root / image.parent.name)
                if isinstance(rec, str):
                    missing.append(rec)
                else:
                    records.append(rec)
        dropped = resolve_missing(missing, skip_bad, f"Cityscapes split '{split}'")
        if not records:
            raise FileNotFoundError(f"no Cityscapes samples found in '{image_root}'")
        super().__init__(records, CITYSCAPES, skip_bad, dropped)

    @staticmethod
    def _semantic_record(image: Path, gt_dir: Path) -> Record | str:
        base = image.name[: -len("_leftImg8bit.png")]
        train_ids = gt_dir / f"{base}_gtFine_labelTrainIds.png"
        if train_ids.is_file():
            return Record(base, image, train_ids, label_lut=train_id_lut())
        label_ids = gt_dir / f"{base}_gtFine_labelIds.png"
        if label_ids.is_file():
            return Record(base, image, label_ids, label_lut=label_id_lut())
        return f"annotation '{train_ids}' (or '{label_ids.name}') for image '{image}' does not exist"

    @staticmethod
    def _panoptic_records(root: Path, split: str, pan_json: Path, missing: list[str]) -> list[Record]:
        """cityscapesScripts names images by ``image_id`` (``<city>_<seq>_<frame>``) and keeps them in city
        folders (its json ``file_name`` is not the real image name), so the generic COCO listing does not apply."""
        data = read_json(pan_json)
        cmap = panoptic_category_map(data["categories"], pan_json)
        records: list[Record] = []
        for entry in panoptic_entries(data, pan_json, cmap, CITYSCAPES):
            image_id = str(entry.image_id) if entry.image_id is not None else entry.panoptic_file.split("_gtFine")[0]
            city = image_id.split("_")[0]
            image = root / "leftImg8bit" / split / city / f"{image_id}_leftImg8bit.png"
            pan = root / "gtFine" / f"cityscapes_panoptic_{split}" / entry.panoptic_file
            if not image.is_file():
                missing.append(f"image '{image}' (listed in '{pan_json}') does not exist")
                continue
            if not pan.is_file():
                missing.append(f"panoptic annotation '{pan}' for image '{image}' does not exist")
                continue
            rec = Record(image_id, image, None, pan, entry.segments)
            sem = CityscapesDataset._semantic_record(image, root / "gtFine" / split / city)
            if isinstance(sem, Record):
                rec.semantic, rec.label_lut = sem.semantic, sem.label_lut
            records.append(rec)
        return records


def build_cityscapes(
    split: str, root: str | None = None, panoptic: bool | None = None, skip_bad: bool = False
) -> CityscapesDataset:
    if root is None:
        raise ValueError("dataset 'cityscapes' needs data.root (the folder holding leftImg8bit/ and gtFine/)")
    return CityscapesDataset(root, split, panoptic, skip_bad)
