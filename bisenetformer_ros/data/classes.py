"""Class tables: the one place that says which label spaces exist, their names, colours and thing/stuff split.

A :class:`ClassTable` travels inside every checkpoint and exported model (so a model can never be paired with the
wrong names), is published by the node on ``class_info``, and is what evaluation uses to split PQ into things/stuff.
"""

from __future__ import annotations

import difflib
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

IGNORE_LABEL = 255


@dataclass(frozen=True)
class ClassTable:
    """Names, RGB colours (0-255), thing flags and the ignore label of a label space.

    Class id ``i`` is the index into the lists; ids are contiguous ``0..K-1`` (dataset loaders map raw ids, such as
    Cityscapes ``labelIds``, to these train ids).
    """

    dataset: str
    names: tuple[str, ...]
    colors: tuple[tuple[int, int, int], ...]
    is_thing: tuple[bool, ...]
    ignore_label: int = IGNORE_LABEL
    extra: dict[str, Any] = field(default_factory=dict, compare=False)

    def __post_init__(self) -> None:
        k = len(self.names)
        if k == 0:
            raise ValueError(f"class table '{self.dataset}' has no classes")
        if len(self.colors) != k or len(self.is_thing) != k:
            raise ValueError(
                f"class table '{self.dataset}': {k} names but {len(self.colors)} colours and "
                f"{len(self.is_thing)} thing flags; all three lists must have one entry per class"
            )
        for c in self.colors:
            if len(c) != 3 or not all(0 <= int(v) <= 255 for v in c):
                raise ValueError(f"class table '{self.dataset}': colour {c} is not an RGB triple in 0..255")
        if 0 <= self.ignore_label < k:
            raise ValueError(
                f"class table '{self.dataset}': ignore_label {self.ignore_label} collides with a class id (0..{k - 1})"
            )

    @property
    def num_classes(self) -> int:
        return len(self.names)

    @property
    def thing_ids(self) -> list[int]:
        return [i for i, t in enumerate(self.is_thing) if t]

    @property
    def stuff_ids(self) -> list[int]:
        return [i for i, t in enumerate(self.is_thing) if not t]

    def palette(self) -> np.ndarray:
        """(K+1, 3) uint8 colour lookup; the last row (index K) is black, used for void/ignored pixels."""
        pal = np.zeros((self.num_classes + 1, 3), dtype=np.uint8)
        pal[: self.num_classes] = np.asarray(self.colors, dtype=np.uint8)
        return pal

    def colorize(self, labels: np.ndarray) -> np.ndarray:
        """Map an (H, W) class-id image to (H, W, 3) RGB; ids outside the table (void/ignore) become black."""
        pal = self.palette()
        idx = np.where((labels >= 0) & (labels < self.num_classes), labels, self.num_classes)
        return pal[idx]

    def colors_rgba(self) -> list[tuple[float, float, float, float]]:
        """Colours as RGBA in 0..1 for std_msgs/ColorRGBA, rounded to float32 (the message's field type) here so the
        values published and the values a consumer reads are the same; :meth:`from_message` inverts it exactly."""
        return [(*(float(np.float32(v / 255.0)) for v in c[:3]), 1.0) for c in self.colors]  # type: ignore[misc]

    @classmethod
    def from_message(cls, msg: Any) -> ClassTable:
        """From a bisenetformer_ros/ClassTable message of either binding (rclpy in the node, rosbags in bag tools):
        only the field names are used, so the core stays free of ROS imports."""
        return cls(
            dataset=str(msg.dataset),
            names=tuple(str(n) for n in msg.names),
            colors=tuple((round(c.r * 255), round(c.g * 255), round(c.b * 255)) for c in msg.colors),
            is_thing=tuple(bool(t) for t in msg.is_thing),
            ignore_label=int(msg.ignore_label),
        )

    def resolve(self, entries: Sequence[str | int]) -> list[int]:
        """Class ids for user-given class names (case-insensitive, e.g. from a ROS parameter) or ids (ints or digit
        strings), in the given order without repeats. An unknown entry raises ValueError naming it, the closest
        names and the table, so a typo in a YAML file is caught when the model is loaded, not silently ignored."""
        lookup = {n.lower(): i for i, n in enumerate(self.names)}
        ids: list[int] = []
        for entry in entries:
            text = str(entry).strip()
            if text.lstrip("-").isdigit():
                cid = int(text)
                if not 0 <= cid < self.num_classes:
                    raise ValueError(
                        f"class id {cid} is outside the {self.num_classes} classes of '{self.dataset}' "
                        f"(0..{self.num_classes - 1})"
                    )
            elif text.lower() in lookup:
                cid = lookup[text.lower()]
            else:
                close = difflib.get_close_matches(text.lower(), list(lookup), n=3, cutoff=0.6)
                hint = f" (did you mean {', '.join(repr(self.names[lookup[c]]) for c in close)}?)" if close else ""
                raise ValueError(
                    f"unknown class {text!r} for the class table '{self.dataset}'{hint}; its classes: "
                    + ", ".join(self.names[:40])
                    + (" ..." if self.num_classes > 40 else "")
                )
            if cid not in ids:
                ids.append(cid)
        return ids

    def to_dict(self) -> dict[str, Any]:
        return {
            "dataset": self.dataset,
            "names": list(self.names),
            "colors": [list(map(int, c)) for c in self.colors],
            "is_thing": [bool(t) for t in self.is_thing],
            "ignore_label": int(self.ignore_label),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ClassTable:
        try:
            return cls(
                dataset=str(d["dataset"]),
                names=tuple(str(n) for n in d["names"]),
                colors=tuple(tuple(int(v) for v in c) for c in d["colors"]),  # type: ignore[misc]
                is_thing=tuple(bool(t) for t in d["is_thing"]),
                ignore_label=int(d.get("ignore_label", IGNORE_LABEL)),
            )
        except KeyError as exc:
            raise ValueError(f"class table is missing the field {exc}") from None

    def to_json(self) -> str:
        return json.dumps(self.to_dict())

    @classmethod
    def from_json(cls, text: str) -> ClassTable:
        return cls.from_dict(json.loads(text))

    def differences(self, other: ClassTable) -> list[str]:
        """Human-readable list of what differs, for errors such as 'checkpoint does not match config'."""
        diffs: list[str] = []
        if self.num_classes != other.num_classes:
            diffs.append(f"number of classes {self.num_classes} != {other.num_classes}")
        for i, (a, b) in enumerate(zip(self.names, other.names, strict=False)):
            if a != b:
                diffs.append(f"class {i}: name '{a}' != '{b}'")
        for i, (a, b) in enumerate(zip(self.is_thing, other.is_thing, strict=False)):
            if a != b:
                diffs.append(f"class {i}: is_thing {a} != {b}")
        if self.ignore_label != other.ignore_label:
            diffs.append(f"ignore_label {self.ignore_label} != {other.ignore_label}")
        return diffs


# Cityscapes 19 evaluation classes (trainIds 0..18), colours from cityscapesScripts' labels.py.
_CITYSCAPES = [
    ("road", (128, 64, 128), False),
    ("sidewalk", (244, 35, 232), False),
    ("building", (70, 70, 70), False),
    ("wall", (102, 102, 156), False),
    ("fence", (190, 153, 153), False),
    ("pole", (153, 153, 153), False),
    ("traffic light", (250, 170, 30), False),
    ("traffic sign", (220, 220, 0), False),
    ("vegetation", (107, 142, 35), False),
    ("terrain", (152, 251, 152), False),
    ("sky", (70, 130, 180), False),
    ("person", (220, 20, 60), True),
    ("rider", (255, 0, 0), True),
    ("car", (0, 0, 142), True),
    ("truck", (0, 0, 70), True),
    ("bus", (0, 60, 100), True),
    ("train", (0, 80, 100), True),
    ("motorcycle", (0, 0, 230), True),
    ("bicycle", (119, 11, 32), True),
]

CITYSCAPES = ClassTable(
    dataset="cityscapes",
    names=tuple(n for n, _, _ in _CITYSCAPES),
    colors=tuple(c for _, c, _ in _CITYSCAPES),
    is_thing=tuple(t for _, _, t in _CITYSCAPES),
)


def get_class_table(name: str) -> ClassTable:
    """Built-in table by dataset name ('cityscapes', 'ade20k', 'synthetic'; see
    :data:`bisenetformer_ros.registry.CLASS_TABLES`)."""
    from bisenetformer_ros.registry import CLASS_TABLES

    return CLASS_TABLES.load(name)
