"""File reading shared by the dataset loaders (Cityscapes, ADE20K, COCO-panoptic, plain folders).

Every public format is, in the end, "an RGB image, maybe a class-id PNG, maybe a COCO-panoptic PNG with its
``segments_info``". The format modules only *list* their files into :class:`Record` s; :class:`RecordDataset`
reads them, so all formats fail the same way: a clear error that names the offending file (a missing, unreadable or
differently sized annotation, or a label outside the class table), never a silent wrong label. With
``skip_bad=True`` such samples are skipped instead and counted in ``.skipped`` (real datasets contain the odd
broken file; a 90k-iteration run should not die on it, but it must say how many it dropped).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from torch.utils.data import Dataset

from bisenetformer_ros.data.classes import ClassTable
from bisenetformer_ros.data.sample import Sample, SegmentInfo, semantic_from_panoptic
from bisenetformer_ros.data.synthetic import decode_panoptic_png

log = logging.getLogger(__name__)

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")


@dataclass
class Record:
    """The files of one sample. ``label_lut`` maps raw semantic PNG values to train ids (-1 = not allowed)."""

    name: str
    image: Path
    semantic: Path | None = None
    panoptic: Path | None = None
    segments: list[SegmentInfo] = field(default_factory=list)
    label_lut: np.ndarray | None = None


def _read_bytes(path: Path) -> np.ndarray:
    # np.fromfile + imdecode (not cv2.imread): works with non-ASCII paths and lets us tell "missing" from "corrupt".
    if not path.is_file():
        raise FileNotFoundError(f"file '{path}' does not exist")
    data = np.fromfile(str(path), dtype=np.uint8)
    if data.size == 0:
        raise ValueError(f"file '{path}' is empty")
    return data


def read_rgb(path: str | Path) -> np.ndarray:
    """HxWx3 uint8 RGB (grey images are expanded); ``ValueError`` naming the file when it cannot be decoded."""
    path = Path(path)
    img = cv2.imdecode(_read_bytes(path), cv2.IMREAD_COLOR)
    if img is None:
        raise ValueError(f"cannot decode image '{path}' (corrupt or not an image file)")
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


def read_label(path: str | Path) -> np.ndarray:
    """Single-channel 8- or 16-bit class-id PNG as an HxW integer array."""
    path = Path(path)
    lab = cv2.imdecode(_read_bytes(path), cv2.IMREAD_UNCHANGED)
    if lab is None:
        raise ValueError(f"cannot decode label image '{path}' (corrupt or not an image file)")
    if lab.ndim == 3:
        # OpenCV expands palette PNGs to colour; class ids must be stored as grey values to be unambiguous.
        raise ValueError(
            f"label image '{path}' has {lab.shape[2]} channels; class-id maps must be single-channel (grey) 8- or "
            f"16-bit PNGs (palette/colour PNGs are not read as ids)"
        )
    if lab.dtype not in (np.uint8, np.uint16):
        raise ValueError(f"label image '{path}' has pixel type {lab.dtype}; expected 8- or 16-bit integers")
    return lab


def read_panoptic(path: str | Path) -> np.ndarray:
    """COCO-panoptic PNG (id = R + 256 G + 256^2 B) as HxW int32 segment ids."""
    path = Path(path)
    bgr = cv2.imdecode(_read_bytes(path), cv2.IMREAD_COLOR)
    if bgr is None:
        raise ValueError(f"cannot decode panoptic PNG '{path}' (corrupt or not an image file)")
    return decode_panoptic_png(bgr[..., ::-1])


def check_same_size(image: np.ndarray, image_path: Path, label: np.ndarray, label_path: Path) -> None:
    if image.shape[:2] != label.shape[:2]:
        raise ValueError(
            f"size mismatch: image '{image_path}' is {image.shape[1]}x{image.shape[0]} but its annotation "
            f"'{label_path}' is {label.shape[1]}x{label.shape[0]}"
        )


def lut_from_mapping(mapping: dict[int, int], ignore_label: int, ignore_values: Sequence[int] = ()) -> np.ndarray:
    """Lookup table raw value -> train id for 16-bit inputs; unmapped values are -1 (an error when they occur)."""
    lut = np.full(65536, -1, np.int32)
    for raw, train in mapping.items():
        lut[raw] = train
    for raw in ignore_values:
        lut[raw] = ignore_label
    return lut


def check_labels(semantic: np.ndarray, table: ClassTable, path: Path) -> None:
    """Raise naming ``path`` when a label is neither a class id of ``table`` nor its ignore label."""
    values = np.unique(semantic)
    bad = [int(v) for v in values if (v < 0 or v >= table.num_classes) and v != table.ignore_label]
    if bad:
        raise ValueError(
            f"'{path}': labels {bad[:10]} are outside the class table '{table.dataset}' "
            f"(0..{table.num_classes - 1}, ignore {table.ignore_label})"
        )


def load_record(rec: Record, table: ClassTable) -> Sample:
    """Read and validate the files of one record into a :class:`Sample`."""
    image = read_rgb(rec.image)
    panoptic = None
    segments: list[SegmentInfo] = []
    if rec.panoptic is not None:
        panoptic = read_panoptic(rec.panoptic)
        check_same_size(image, rec.image, panoptic, rec.panoptic)
        segments = list(rec.segments)
        known = {s.id for s in segments} | {0}
        unknown = sorted(int(v) for v in np.unique(panoptic) if int(v) not in known)
        if unknown:
            raise ValueError(
                f"panoptic PNG '{rec.panoptic}' contains segment ids {unknown[:10]} that its segments_info does not "
                f"list"
            )
        bad = [s.category_id for s in segments if not 0 <= s.category_id < table.num_classes]
        if bad:
            raise ValueError(f"'{rec.panoptic}': segment categories {bad[:10]} are outside the class table")
    if rec.semantic is not None:
        raw = read_label(rec.semantic)
        check_same_size(image, rec.image, raw, rec.semantic)
        if rec.label_lut is not None:
            mapped = rec.label_lut[raw]
            if (mapped < 0).any():
                bad_raw = sorted(int(v) for v in np.unique(raw[mapped < 0]))
                raise ValueError(
                    f"'{rec.semantic}': labels {bad_raw[:10]} are outside the class table '{table.dataset}' "
                    f"(no mapping to a train id)"
                )
            raw = mapped
        check_labels(raw, table, rec.semantic)
        semantic = raw.astype(np.uint8 if table.ignore_label < 256 else np.uint16)
    elif panoptic is not None:
        semantic = semantic_from_panoptic(panoptic, segments, table.ignore_label)
    else:  # pragma: no cover - the listing functions never build such a record
        raise ValueError(f"sample '{rec.name}' has neither a semantic nor a panoptic annotation")
    return Sample(image, semantic, panoptic, segments, name=rec.name)


class RecordDataset(Dataset):
    """A torch Dataset of :class:`Sample` over listed :class:`Record` s.

    ``skip_bad=False``: any unreadable sample raises (OSError/ValueError naming the file), which is also what the
    trainer's own ``data.skip_bad`` catches. ``skip_bad=True``: index ``i`` of a bad sample returns the next good one
    (deterministic), and ``skipped`` counts distinct bad samples, including those dropped while listing.
    """

    def __init__(
        self, records: list[Record], class_table: ClassTable, skip_bad: bool = False, dropped: int = 0
    ) -> None:
        if not records:
            raise FileNotFoundError("no samples found")
        self.records = records
        self.class_table = class_table
        self.skip_bad = bool(skip_bad)
        self.dropped = int(dropped)
        self.bad: dict[int, str] = {}

    @property
    def skipped(self) -> int:
        return self.dropped + len(self.bad)

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, index: int) -> Sample:
        n = len(self.records)
        if not -n <= index < n:
            raise IndexError(f"index {index} out of range for {n} samples")
        index %= n
        if not self.skip_bad:
            return load_record(self.records[index], self.class_table)
        for k in range(n):
            j = (index + k) % n
            if j in self.bad:
                continue
            try:
                return load_record(self.records[j], self.class_table)
            except (OSError, ValueError) as exc:
                self.bad[j] = str(exc)
                log.warning("skipping bad sample (%d skipped so far): %s", self.skipped, exc)
        raise RuntimeError(f"all {n} samples are unreadable; first error: {next(iter(self.bad.values()))}")


def resolve_missing(missing: list[str], skip_bad: bool, what: str) -> int:
    """Raise the first of ``missing`` (messages naming files) unless ``skip_bad``; return how many were dropped."""
    if missing and not skip_bad:
        more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
        raise FileNotFoundError(f"{what}: {missing[0]}{more}")
    for m in missing:
        log.warning("skipping sample: %s", m)
    return len(missing)


# -- COCO-panoptic json ---------------------------------------------------------------------------------------------


def read_json(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise FileNotFoundError(f"panoptic annotation file '{path}' does not exist")
    try:
        data = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ValueError(f"'{path}' is not valid JSON: {exc}") from None
    for key in ("annotations", "categories"):
        if not isinstance(data, dict) or key not in data:
            raise ValueError(f"'{path}' is not a COCO-panoptic file (no '{key}' list)")
    return data


def palette_color(i: int) -> tuple[int, int, int]:
    """Deterministic distinct-ish colour for class ``i`` when a format gives none (bit-interleaved, as in VOC)."""
    r = g = b = 0
    c = i + 1
    for j in range(8):
        r |= ((c >> 0) & 1) << (7 - j)
        g |= ((c >> 1) & 1) << (7 - j)
        b |= ((c >> 2) & 1) << (7 - j)
        c >>= 3
    return r, g, b


def table_from_categories(categories: list[dict[str, Any]], dataset: str) -> ClassTable:
    """Class table whose id ``i`` is the ``i``-th category of a COCO-panoptic json (json order)."""
    return ClassTable(
        dataset=dataset,
        names=tuple(str(c.get("name", c["id"])).strip() for c in categories),
        colors=tuple(
            tuple(int(v) for v in c["color"]) if "color" in c else palette_color(i)  # type: ignore[misc]
            for i, c in enumerate(categories)
        ),
        is_thing=tuple(bool(c.get("isthing", 0)) for c in categories),
    )


def category_map_by_order(categories: list[dict[str, Any]], table: ClassTable, path: Path) -> dict[int, int]:
    """Json category id -> class id, by json order; the names must be the table's (catches a wrong table early)."""
    if len(categories) != table.num_classes:
        raise ValueError(
            f"'{path}' has {len(categories)} categories but the class table '{table.dataset}' has "
            f"{table.num_classes} classes"
        )
    diffs = [
        f"{i}: '{c.get('name')}' != '{n}'"
        for i, (c, n) in enumerate(zip(categories, table.names, strict=True))
        if "name" in c and str(c["name"]).strip().lower() != n.strip().lower()
    ]
    if diffs:
        raise ValueError(f"'{path}': category names differ from class table '{table.dataset}': " + "; ".join(diffs[:5]))
    return {int(c["id"]): i for i, c in enumerate(categories)}


@dataclass
class PanopticEntry:
    image_id: Any
    image_file: str  # file_name of the json "images" entry (or the annotation's stem + .jpg)
    panoptic_file: str
    segments: list[SegmentInfo]


def panoptic_entries(
    data: dict[str, Any], path: Path, category_map: dict[int, int], table: ClassTable
) -> list[PanopticEntry]:
    """The annotations of a COCO-panoptic json with categories mapped to class ids and crowd flags kept."""
    images = {img["id"]: img for img in data.get("images", [])}
    out: list[PanopticEntry] = []
    for ann in data["annotations"]:
        try:
            pan_file = str(ann["file_name"])
            segs = []
            for s in ann.get("segments_info", []):
                cat = int(s["category_id"])
                if cat not in category_map:
                    raise ValueError(
                        f"'{path}': annotation '{pan_file}' has category_id {cat}, which is not in 'categories' "
                        f"(outside the class table)"
                    )
                cls = category_map[cat]
                segs.append(SegmentInfo(int(s["id"]), cls, table.is_thing[cls], bool(s.get("iscrowd", 0))))
        except KeyError as exc:
            raise ValueError(f"'{path}': an annotation is missing the field {exc}") from None
        img = images.get(ann.get("image_id"))
        image_file = str(img["file_name"]) if img and "file_name" in img else Path(pan_file).stem + ".jpg"
        out.append(PanopticEntry(ann.get("image_id"), image_file, pan_file, segs))
    return out


def find_image(directory: Path, file_name: str) -> Path:
    """``directory/file_name``, else the same stem with another image extension (COCO json says .jpg, data .png)."""
    p = directory / file_name
    if p.is_file():
        return p
    for ext in IMAGE_EXTENSIONS:
        q = directory / (Path(file_name).stem + ext)
        if q.is_file():
            return q
    return p
