"""Generic COCO-panoptic loader, dataset ``"coco_panoptic"`` of the registry.

COCO-panoptic is the lingua franca of panoptic data (COCO itself, Mask2Former's ADE20K-panoptic, cityscapesScripts'
panoptic export, ``bisenetformer make-synthetic``), so one reader serves them all: a json with ``images``,
``annotations`` (``file_name`` of the PNG, ``segments_info`` with ``id``/``category_id``/``iscrowd``) and
``categories``, plus one PNG per image whose pixel value ``R + 256 G + 256^2 B`` is the segment id (0 = void).

Json categories map to contiguous class ids in json order; the class table is built from them (names, colours,
``isthing``) or passed in as ``class_table=`` (then the names must agree). The semantic map is derived from the
panoptic one, so both can never disagree; crowd flags are kept in :class:`SegmentInfo` (training skips crowd
regions, as Mask2Former does).

Layouts found under ``root`` (first match wins; ``json_file``/``image_dir``/``panoptic_dir`` override):

- ``panoptic_<split>.json``, ``images/<split>/``, ``panoptic/<split>/`` (what ``make-synthetic`` writes);
- COCO: ``annotations/panoptic_<split>.json``, ``<split>/`` images, ``annotations/panoptic_<split>/`` or
  ``panoptic_<split>/`` PNGs (``split`` e.g. ``train2017``).
"""

from __future__ import annotations

from pathlib import Path

from bisenetformer_ros.data.classes import ClassTable
from bisenetformer_ros.data.loading import (
    Record,
    RecordDataset,
    category_map_by_order,
    find_image,
    panoptic_entries,
    read_json,
    resolve_missing,
    table_from_categories,
)


def resolve_layout(root: Path, split: str) -> tuple[Path, Path, Path]:
    """(json file, image folder, panoptic PNG folder) of ``split`` under ``root``."""
    own = root / f"panoptic_{split}.json"
    if own.is_file():
        return own, root / "images" / split, root / "panoptic" / split
    coco = root / "annotations" / f"panoptic_{split}.json"
    if coco.is_file():
        png_dir = root / "annotations" / f"panoptic_{split}"
        if not png_dir.is_dir() and (root / f"panoptic_{split}").is_dir():
            png_dir = root / f"panoptic_{split}"
        return coco, root / split, png_dir
    raise FileNotFoundError(
        f"no COCO-panoptic annotation for split '{split}' under '{root}': expected '{own}' (with images/{split}/ and "
        f"panoptic/{split}/) or '{coco}' (COCO layout)"
    )


def panoptic_records(
    json_file: Path,
    image_dir: Path,
    panoptic_dir: Path,
    class_table: ClassTable | None = None,
    dataset_name: str | None = None,
    category_map: dict[int, int] | None = None,
) -> tuple[list[Record], list[str], ClassTable]:
    """Records of a COCO-panoptic split, messages for samples whose files are missing, and the class table."""
    data = read_json(json_file)
    categories = list(data["categories"])
    table = class_table or table_from_categories(categories, dataset_name or json_file.stem)
    cmap = category_map if category_map is not None else category_map_by_order(categories, table, json_file)
    records: list[Record] = []
    missing: list[str] = []
    for entry in panoptic_entries(data, json_file, cmap, table):
        image = find_image(image_dir, entry.image_file)
        pan = panoptic_dir / entry.panoptic_file
        if not image.is_file():
            missing.append(f"image '{image}' (listed in '{json_file}') does not exist")
            continue
        if not pan.is_file():
            missing.append(f"panoptic annotation '{pan}' for image '{image}' does not exist")
            continue
        records.append(Record(Path(entry.panoptic_file).stem, image, None, pan, entry.segments))
    return records, missing, table


class CocoPanopticDataset(RecordDataset):
    """COCO-panoptic split as a Dataset of :class:`~bisenetformer_ros.data.sample.Sample`."""

    def __init__(
        self,
        root: str | Path | None,
        split: str,
        class_table: ClassTable | None = None,
        json_file: str | Path | None = None,
        image_dir: str | Path | None = None,
        panoptic_dir: str | Path | None = None,
        skip_bad: bool = False,
    ) -> None:
        if root is None and (json_file is None or image_dir is None or panoptic_dir is None):
            raise ValueError("coco_panoptic needs data.root (or json_file, image_dir and panoptic_dir)")
        root_p = Path(root) if root is not None else Path(".")
        if json_file is None or image_dir is None or panoptic_dir is None:
            j, i, p = resolve_layout(root_p, split)
            json_file, image_dir, panoptic_dir = json_file or j, image_dir or i, panoptic_dir or p
        records, missing, table = panoptic_records(Path(json_file), Path(image_dir), Path(panoptic_dir), class_table)
        dropped = resolve_missing(missing, skip_bad, f"coco_panoptic split '{split}'")
        if not records:
            raise FileNotFoundError(f"'{json_file}' lists no readable samples (images in '{image_dir}')")
        super().__init__(records, table, skip_bad, dropped)


def build_coco_panoptic(
    split: str,
    root: str | None = None,
    class_table: ClassTable | None = None,
    json_file: str | None = None,
    image_dir: str | None = None,
    panoptic_dir: str | None = None,
    skip_bad: bool = False,
) -> CocoPanopticDataset:
    return CocoPanopticDataset(root, split, class_table, json_file, image_dir, panoptic_dir, skip_bad)
