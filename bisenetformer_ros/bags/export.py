"""``bisenetformer bag export``: a bag's camera frames and ground truth as a ``folder`` dataset on disk.

Why: a bag recorded on the robot should be usable by everything that takes a dataset (``bisenetformer evaluate``,
``predict``, training on the team's own data) and it lets anyone check that ``bag evaluate`` scores a bag exactly as
``evaluate`` scores the same frames as images. The layout is the one :mod:`bisenetformer_ros.data.folder` reads::

    out/classes.json                       the class table (from the bag's class_info topic or --class-table)
    out/images/<split>/<stem>.png          RGB frames, decoded with the node's converter (lossless PNG)
    out/semantic/<split>/<stem>.png        class ids (only with a semantic ground-truth topic)
    out/panoptic_<split>.json              COCO-panoptic segments_info (only with a panoptic ground-truth topic)
    out/panoptic/<split>/<stem>.png        segment ids as id = R + 256 G + 256^2 B
    out/frames_<split>.json                stem -> frame index and header stamp, and what was skipped and why

``<stem>`` is the frame index (``000012``), so the files sort in bag order and ``bag evaluate --gt-dir
out/semantic/<split>`` finds them too. Frames are paired with ground truth by header stamp exactly as ``bag
evaluate`` pairs them; a frame that cannot be exported (undecodable image, missing or broken ground truth, ground
truth of another size) is left out and counted with its reason — never dropped silently.
"""

from __future__ import annotations

import json
import shutil
from collections import Counter
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from bisenetformer_ros.bags import msgconv as mc
from bisenetformer_ros.bags.bagio import BagReader
from bisenetformer_ros.bags.evaluate import _Pending, pair_frames
from bisenetformer_ros.bags.scoring import SKIP_GT_BAD, SKIP_GT_SIZE, SKIP_IMAGE, SKIP_NO_GT
from bisenetformer_ros.bags.typestore import CLASS_TABLE, COMPRESSED_IMAGE, IMAGE, PANOPTIC_SEGMENTATION
from bisenetformer_ros.data.classes import ClassTable, get_class_table

#: Files this module writes at the top of the output folder; an existing folder is only replaced when it looks like
#: an earlier export (so a typo in --out never deletes someone's data).
_MARKER = "frames_{split}.json"


def _class_table(reader: BagReader, name: str | None) -> ClassTable:
    """The table the labels are in: ``name`` (a built-in table) or the bag's own class_info topic, which must agree."""
    topics = [t for t, s in reader.topics.items() if s.msgtype == CLASS_TABLE and s.known_type]
    from_bag = [mc.class_table_from_msg(m.msg) for m in reader.messages(topics)] if topics else []
    if name:
        table = get_class_table(name)
        for other in from_bag:
            diffs = table.differences(other)
            if diffs:
                raise ValueError(
                    f"--class-table {name} differs from the class table stored in bag {reader.path}: "
                    + "; ".join(diffs[:5])
                )
        return table
    if not from_bag:
        raise ValueError(
            f"bag {reader.path} holds no class table (bisenetformer_ros/msg/ClassTable topic); pass --class-table "
            "NAME (e.g. synthetic, cityscapes, ade20k) so the exported labels have names"
        )
    return from_bag[0]


def _prepare_out(out: Path, split: str, overwrite: bool) -> None:
    if out.exists() and not out.is_dir():
        raise ValueError(f"output {out} exists and is not a folder")
    if out.exists() and any(out.iterdir()):
        if not overwrite:
            raise ValueError(f"output folder {out} already exists and is not empty; pass --overwrite to replace it")
        if not (out / _MARKER.format(split=split)).is_file():
            raise ValueError(f"refusing to overwrite {out}: it does not look like a bag export (no frames json)")
        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)


def export_bag(
    bag: str | Path,
    out: str | Path,
    *,
    image_topic: str,
    gt_semantic_topic: str | None = None,
    gt_panoptic_topic: str | None = None,
    max_frames: int | None = None,
    split: str = "val",
    class_table: str | None = None,
    overwrite: bool = False,
) -> dict[str, Any]:
    """Write the ``folder`` dataset described in the module docstring; returns a JSON-ready summary.

    Without any ground-truth topic only ``images/`` and ``classes.json`` are written (enough for ``predict``).
    """
    if max_frames is not None and max_frames < 1:
        raise ValueError(f"--max-frames must be >= 1, got {max_frames}")
    out = Path(out)
    gt_topics = [t for t in (gt_semantic_topic, gt_panoptic_topic) if t]
    with BagReader(bag) as reader:
        reader.require_topic(image_topic, [IMAGE, COMPRESSED_IMAGE], what="image topic")
        if gt_semantic_topic:
            reader.require_topic(gt_semantic_topic, [IMAGE], what="ground-truth topic")
        if gt_panoptic_topic:
            reader.require_topic(gt_panoptic_topic, [PANOPTIC_SEGMENTATION], what="ground-truth topic")
        table = _class_table(reader, class_table)
        _prepare_out(out, split, overwrite)
        export = _FolderExport(out, split, gt_semantic_topic, gt_panoptic_topic)
        total = 0
        for p in pair_frames(reader, image_topic, gt_topics, max_frames):
            total += 1
            export.add(p)
        warnings = _reader_warnings(reader)
    export.write_tables(table)
    summary: dict[str, Any] = {
        "bag": str(bag),
        "out": str(out),
        "split": split,
        "class_table": table.dataset,
        "frames": {
            "total": total,
            "exported": len(export.frames),
            "skipped": dict(export.skipped),
            "skip_examples": export.examples,
        },
        "warnings": warnings,
        "evaluate": f"bisenetformer evaluate --dataset folder --root {out} --split {split}",
    }
    (out / _MARKER.format(split=split)).write_text(json.dumps({**summary, "stems": export.frames}, indent=2) + "\n")
    if not export.frames:
        raise ValueError(
            f"no frame of {bag} could be exported ({total} read; skipped: {dict(export.skipped) or 'none'}); "
            f"first problem: {next(iter(export.examples.values()), 'the image topic has no messages')}"
        )
    return summary


def _reader_warnings(reader: BagReader) -> list[str]:
    """What went wrong while reading the bag, for the summary (the export itself still completed)."""
    warnings = []
    if reader.issues.stopped_early:
        warnings.append(f"reading stopped early: {reader.issues.stopped_early}")
    for topic, n in dict(reader.issues.undecodable).items():
        warnings.append(f"{n} message(s) on {topic} could not be deserialised")
    return warnings


class _FolderExport:
    """The files of one export as they are written: a frame's image and labels, the panoptic annotations gathered
    for the json written at the end, and every frame left out with its reason (one example each)."""

    def __init__(self, out: Path, split: str, gt_semantic_topic: str | None, gt_panoptic_topic: str | None) -> None:
        self.out = out
        self.split = split
        self.semantic_topic = gt_semantic_topic
        self.panoptic_topic = gt_panoptic_topic
        self.num_gt = sum(1 for t in (gt_semantic_topic, gt_panoptic_topic) if t)
        self.dirs = {"images": out / "images" / split}
        if gt_semantic_topic:
            self.dirs["semantic"] = out / "semantic" / split
        if gt_panoptic_topic:
            self.dirs["panoptic"] = out / "panoptic" / split
        for d in self.dirs.values():
            d.mkdir(parents=True, exist_ok=True)
        self.skipped: Counter[str] = Counter()
        self.examples: dict[str, str] = {}
        self.frames: list[dict[str, Any]] = []
        self.images_json: list[dict[str, Any]] = []
        self.annotations: list[dict[str, Any]] = []

    def skip(self, reason: str, index: int, stamp: int, detail: str = "") -> None:
        self.skipped[reason] += 1
        self.examples.setdefault(reason, f"frame {index} (stamp {stamp}){': ' + detail if detail else ''}")

    def add(self, p: _Pending) -> None:
        """Decode one paired frame (:func:`pair_frames`) and write it, or count why it cannot be exported."""
        try:
            rgb = mc.camera_image_to_rgb(p.image.msg)
        except (ValueError, RuntimeError) as exc:
            self.skip(SKIP_IMAGE, p.index, p.stamp, str(exc))
            return
        if len(p.gt) < self.num_gt:
            self.skip(SKIP_NO_GT, p.index, p.stamp)
            return
        try:
            sem = mc.label_image_to_array(p.gt[self.semantic_topic].msg) if self.semantic_topic else None
            pan = mc.panoptic_from_msg(p.gt[self.panoptic_topic].msg) if self.panoptic_topic else None
        except ValueError as exc:
            self.skip(SKIP_GT_BAD, p.index, p.stamp, str(exc))
            return
        shapes = [a.shape[:2] for a in (sem, pan[0] if pan else None) if a is not None]
        if any(s != rgb.shape[:2] for s in shapes):
            self.skip(SKIP_GT_SIZE, p.index, p.stamp, f"image {rgb.shape[1]}x{rgb.shape[0]}, ground truth {shapes}")
            return
        self._write_frame(p.index, p.stamp, rgb, sem, pan)

    def _write_frame(
        self, index: int, stamp: int, rgb: np.ndarray, sem: np.ndarray | None, pan: tuple[np.ndarray, Any] | None
    ) -> None:
        stem = f"{index:06d}"
        name = f"{stem}.png"
        # cv2 writes BGR; PNG keeps every value exactly, so the model sees the same pixels as in bag evaluate.
        cv2.imwrite(str(self.dirs["images"] / name), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
        if sem is not None:
            dtype = np.uint8 if int(sem.max(initial=0)) <= 255 else np.uint16
            cv2.imwrite(str(self.dirs["semantic"] / name), sem.astype(dtype))
        if pan is not None:
            from bisenetformer_ros.data.synthetic import encode_panoptic_png

            ids, segments = pan
            cv2.imwrite(str(self.dirs["panoptic"] / name), cv2.cvtColor(encode_panoptic_png(ids), cv2.COLOR_RGB2BGR))
            self.images_json.append({"id": index, "file_name": name, "height": rgb.shape[0], "width": rgb.shape[1]})
            self.annotations.append(
                {
                    "image_id": index,
                    "file_name": name,
                    "segments_info": [
                        {
                            "id": int(s.id),
                            "category_id": int(s.class_id),
                            "iscrowd": 0,
                            "area": int(s.area),
                            "bbox": [int(v) for v in s.bbox],
                        }
                        for s in segments
                    ],
                }
            )
        self.frames.append({"stem": stem, "index": index, "stamp": stamp})

    def write_tables(self, table: ClassTable) -> None:
        """``classes.json`` and, with panoptic ground truth, the COCO-panoptic ``panoptic_<split>.json``."""
        (self.out / "classes.json").write_text(table.to_json())
        if not self.panoptic_topic:
            return
        categories = [
            {"id": i, "name": n, "isthing": int(t), "color": [int(c) for c in col]}
            for i, (n, t, col) in enumerate(zip(table.names, table.is_thing, table.colors, strict=True))
        ]
        meta = {"images": self.images_json, "annotations": self.annotations, "categories": categories}
        (self.out / f"panoptic_{self.split}.json").write_text(json.dumps(meta))
