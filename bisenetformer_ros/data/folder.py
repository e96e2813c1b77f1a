"""A team's own data in plain folders, dataset ``"folder"`` of the registry.

The smallest format that still carries everything the model learns from::

    root/classes.json                      ClassTable.to_json(): names, colours, is_thing, ignore_label
    root/images/<split>/<stem>.{png,jpg}   RGB images
    root/semantic/<split>/<stem>.png       single-channel class ids 0..K-1, ignore_label (255) for unlabelled
    root/panoptic_<split>.json             optional COCO-panoptic (categories in class-table order)
    root/panoptic/<split>/<stem>.png       optional panoptic PNGs (id = R + 256 G + 256^2 B)

The class table comes from ``classes.json`` or the ``class_table=`` argument (if both exist they must agree: a
checkpoint must never carry names that differ from the labels it was trained on). ``panoptic=None`` loads the
panoptic annotation when ``panoptic_<split>.json`` exists; an image may then lack its semantic PNG (the semantic
map is derived from the panoptic one).
"""

from __future__ import annotations

from pathlib import Path

from bisenetformer_ros.data.classes import ClassTable
from bisenetformer_ros.data.coco_panoptic import panoptic_records
from bisenetformer_ros.data.loading import IMAGE_EXTENSIONS, Record, RecordDataset, resolve_missing


def load_class_table(root: Path, class_table: ClassTable | None) -> ClassTable:
    path = root / "classes.json"
    if not path.is_file():
        if class_table is None:
            raise FileNotFoundError(
                f"folder dataset '{root}' has no class table: write '{path}' (ClassTable.to_json()) or pass "
                f"class_table="
            )
        return class_table
    try:
        from_file = ClassTable.from_json(path.read_text())
    except ValueError as exc:
        raise ValueError(f"'{path}' is not a valid class table: {exc}") from None
    if class_table is not None:
        diffs = class_table.differences(from_file)
        if diffs:
            raise ValueError(f"class_table argument differs from '{path}': " + "; ".join(diffs[:5]))
        return class_table
    return from_file


class FolderDataset(RecordDataset):
    """Plain-folder split as a Dataset of :class:`~bisenetformer_ros.data.sample.Sample`."""

    def __init__(
        self,
        root: str | Path,
        split: str = "train",
        class_table: ClassTable | None = None,
        panoptic: bool | None = None,
        skip_bad: bool = False,
    ) -> None:
        root = Path(root)
        table = load_class_table(root, class_table)
        image_dir = root / "images" / split
        sem_dir = root / "semantic" / split
        if not image_dir.is_dir():
            raise FileNotFoundError(
                f"image folder '{image_dir}' does not exist (folder layout: images/{split}/, semantic/{split}/, "
                f"classes.json under data.root)"
            )
        pan_json = root / f"panoptic_{split}.json"
        want_pan = pan_json.is_file() if panoptic is None else bool(panoptic)
        missing: list[str] = []
        records: list[Record] = []
        pan_by_stem: dict[str, Record] = {}
        if want_pan:
            pan_records, pan_missing, _ = panoptic_records(pan_json, image_dir, root / "panoptic" / split, table)
            missing += pan_missing
            pan_by_stem = {r.image.stem: r for r in pan_records}
        for image in sorted(p for p in image_dir.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS):
            sem = sem_dir / f"{image.stem}.png"
            pan = pan_by_stem.get(image.stem)
            if not sem.is_file() and pan is None:
                missing.append(f"annotation '{sem}' for image '{image}' does not exist")
                continue
            rec = Record(image.stem, image, sem if sem.is_file() else None)
            if pan is not None:
                rec.panoptic, rec.segments = pan.panoptic, pan.segments
            records.append(rec)
        dropped = resolve_missing(missing, skip_bad, f"folder dataset split '{split}'")
        if not records:
            raise FileNotFoundError(f"no images found in '{image_dir}' ({', '.join(IMAGE_EXTENSIONS)})")
        super().__init__(records, table, skip_bad, dropped)


def build_folder(
    split: str,
    root: str | None = None,
    class_table: ClassTable | None = None,
    panoptic: bool | None = None,
    skip_bad: bool = False,
) -> FolderDataset:
    if root is None:
        raise ValueError("dataset 'folder' needs data.root")
    return FolderDataset(root, split, class_table, panoptic, skip_bad)
