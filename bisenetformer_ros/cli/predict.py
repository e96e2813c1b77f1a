"""``bisenetformer predict``: segment images, folders and videos and write label, panoptic and overlay files.

For every input image (or video frame) ``<name>`` it writes into ``--out``:

* ``<name>_semantic.png``: class ids (8-bit, 16-bit for > 255 classes), the same array the node publishes;
* ``<name>_panoptic.png``: segment ids in the COCO-panoptic RGB encoding (``id = R + 256 G + 256^2 B``, 0 = void),
  so COCO tooling and our own dataset loaders read it back;
* ``<name>_panoptic.json``: the segment table (id, category_id, name, isthing, score, area, bbox ``[x, y, w, h]``);
* ``<name>_overlay.png``: class colours blended over the image (``--alpha``) with thing outlines, as on the node's
  overlay topic (rendered by the same function).

Names: an image given directly -> its stem; a file inside a given folder -> its path relative to that folder with
``/`` replaced by ``__`` (so equal stems in sub-folders cannot overwrite each other); a video frame ->
``<video stem>_f<frame index, 6 digits>``. Remaining clashes get ``_2``, ``_3``, ...
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from bisenetformer_ros.cli.options import (
    OutputDir,
    add_model_arguments,
    add_quiet_option,
    build_segmenter,
    fraction,
    int_at_least,
    new_output_dir,
)

IMAGE_EXTENSIONS = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".ppm", ".pgm", ".pnm"})
VIDEO_EXTENSIONS = frozenset({".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg", ".wmv"})


class VideoReadError(ValueError):
    """A video file that cannot be opened or yields no frame (an unreadable input, like a corrupt image)."""


@dataclass(frozen=True)
class InputItem:
    """One input file: ``kind`` is ``image`` or ``video``; ``name`` the output name (frames add a suffix)."""

    path: Path
    kind: str
    name: str


def _kind(path: Path) -> str:
    return "video" if path.suffix.lower() in VIDEO_EXTENSIONS else "image"


def collect_inputs(inputs: list[str]) -> list[InputItem]:
    """Expand files and folders (recursively, image and video extensions) into items with unique output names."""
    items: list[InputItem] = []
    for text in inputs:
        p = Path(text).expanduser()
        if p.is_dir():
            found = sorted(
                f for f in p.rglob("*") if f.is_file() and f.suffix.lower() in IMAGE_EXTENSIONS | VIDEO_EXTENSIONS
            )
            if not found:
                raise FileNotFoundError(f"folder '{p}' contains no images or videos")
            for f in found:
                rel = f.relative_to(p).with_suffix("")
                items.append(InputItem(f, _kind(f), "__".join(rel.parts)))
        elif p.is_file():
            items.append(InputItem(p, _kind(p), p.stem))
        else:
            raise FileNotFoundError(f"input '{p}' does not exist")
    taken = {it.name for it in items}  # a later input literally named 'x_2' keeps its name
    seen: set[str] = set()
    unique: list[InputItem] = []
    for it in items:
        if it.name not in seen:
            seen.add(it.name)
            unique.append(it)
            continue
        n = 2
        while f"{it.name}_{n}" in taken:
            n += 1
        taken.add(f"{it.name}_{n}")
        unique.append(InputItem(it.path, it.kind, f"{it.name}_{n}"))
    return unique


def read_image(path: Path) -> np.ndarray | None:
    """HxWx3 uint8 RGB, or ``None`` when the file cannot be decoded (grey and 16-bit images are converted)."""
    import cv2

    data = np.fromfile(str(path), dtype=np.uint8) if path.stat().st_size else np.zeros(0, np.uint8)
    if data.size == 0:
        return None
    img = cv2.imdecode(data, cv2.IMREAD_COLOR)
    if img is None or img.ndim != 3 or img.shape[0] == 0 or img.shape[1] == 0:
        return None
    return np.ascontiguousarray(cv2.cvtColor(img, cv2.COLOR_BGR2RGB))


def video_frames(path: Path, every: int) -> Iterator[tuple[int, np.ndarray]]:
    """``(frame index, RGB frame)`` for every ``every``-th frame; :class:`VideoReadError` when unreadable."""
    import cv2

    cap = cv2.VideoCapture(str(path))
    try:
        if not cap.isOpened():
            raise VideoReadError(f"cannot open video '{path}'")
        index = 0
        produced = 0
        while True:
            ok, frame = cap.read()
            if not ok or frame is None:
                break
            if index % every == 0:
                produced += 1
                yield index, np.ascontiguousarray(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB))
            index += 1
        if produced == 0:
            raise VideoReadError(f"cannot read any frame from video '{path}'")
    finally:
        cap.release()


def segments_json(segments: list[Any], class_table: Any) -> list[dict[str, Any]]:
    """The segment table of ``<name>_panoptic.json`` (COCO ``segments_info`` fields plus name and score)."""
    return [
        {
            "id": int(s.id),
            "category_id": int(s.class_id),
            "name": class_table.names[s.class_id],
            "isthing": bool(s.is_thing),
            "score": float(s.score),
            "area": int(s.area),
            "bbox": [int(v) for v in s.bbox],
        }
        for s in segments
    ]


def write_outputs(
    out_dir: OutputDir,
    name: str,
    image: np.ndarray,
    frame_result: Any,
    class_table: Any,
    alpha: float,
    source: str,
    frame: int | None,
) -> None:
    """Write the four files of one image (see the module docstring)."""
    import cv2

    from bisenetformer_ros.data.synthetic import encode_panoptic_png
    from bisenetformer_ros.inference.outputs import render_outputs

    rendered = render_outputs(
        frame_result, image, class_table, alpha=alpha, outputs=("semantic", "overlay", "panoptic")
    )
    pan = frame_result.output.panoptic
    if rendered.semantic is None or pan is None or rendered.overlay is None:  # pragma: no cover - both tasks asked
        raise RuntimeError("the segmenter returned no semantic/panoptic result")
    h, w = image.shape[:2]
    _imwrite(out_dir.file(f"{name}_semantic.png"), rendered.semantic[0])
    _imwrite(out_dir.file(f"{name}_panoptic.png"), cv2.cvtColor(encode_panoptic_png(pan.id_map), cv2.COLOR_RGB2BGR))
    _imwrite(out_dir.file(f"{name}_overlay.png"), cv2.cvtColor(rendered.overlay, cv2.COLOR_RGB2BGR))
    meta = {
        "file_name": f"{name}_panoptic.png",
        "source": source,
        "frame": frame,
        "height": h,
        "width": w,
        "class_table": class_table.dataset,
        "segments_info": segments_json(pan.segments, class_table),
    }
    out_dir.file(f"{name}_panoptic.json").write_text(json.dumps(meta, indent=1))


def _imwrite(path: Path, array: np.ndarray) -> None:
    import cv2

    if not cv2.imwrite(str(path), array):
        raise RuntimeError(f"cannot write '{path}'")


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "predict",
        help="segment images, folders and videos; write label, panoptic (COCO PNG + JSON) and overlay files",
        description="Segment every image (folders are searched recursively for image and video files) and every "
        "frame of videos (or every N-th, --every). For each one writes <name>_semantic.png (class ids), "
        "<name>_panoptic.png (COCO-panoptic RGB id encoding), <name>_panoptic.json (segments) and "
        "<name>_overlay.png. An unreadable file stops with an error naming it unless --skip-bad is given.",
    )
    p.add_argument("inputs", nargs="+", metavar="INPUT", help="image files, video files or folders")
    p.add_argument(
        "--out",
        required=True,
        metavar="DIR",
        help="output folder (created if needed; a failed run removes what it wrote)",
    )
    add_model_arguments(p)
    p.add_argument("--alpha", type=fraction, default=0.5, help="overlay opacity of the class colours (0..1)")
    p.add_argument(
        "--every", type=int_at_least(1), default=1, metavar="N", help="videos: segment every N-th frame (default 1)"
    )
    p.add_argument("--skip-bad", action="store_true", help="skip unreadable files (counted) instead of stopping")
    add_quiet_option(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    items = collect_inputs(args.inputs)
    with new_output_dir(args.out, "--out") as out_dir:
        return _predict(args, items, out_dir)


def _predict(args: argparse.Namespace, items: list[InputItem], out_dir: OutputDir) -> int:
    from tqdm import tqdm

    segmenter = build_segmenter(args)
    table = segmenter.class_table
    tasks = ("semantic", "panoptic")
    written = 0
    skipped: list[str] = []

    def bad(path: Path, reason: str) -> None:
        if not args.skip_bad:
            raise ValueError(f"{reason} '{path}' (use --skip-bad to skip unreadable files)")
        skipped.append(str(path))
        print(f"skipping {path}: {reason}", file=sys.stderr)

    bar = tqdm(total=len(items), desc="predict", unit="file", disable=args.quiet, file=sys.stderr)
    try:
        for item in items:
            if item.kind == "image":
                image = read_image(item.path)
                if image is None:
                    bad(item.path, "cannot read image")
                else:
                    res = segmenter.run([image], tasks)[0]
                    write_outputs(out_dir, item.name, image, res, table, args.alpha, str(item.path), None)
                    written += 1
            else:
                try:
                    for index, frame in video_frames(item.path, args.every):
                        res = segmenter.run([frame], tasks)[0]
                        name = f"{item.name}_f{index:06d}"
                        write_outputs(out_dir, name, frame, res, table, args.alpha, str(item.path), index)
                        written += 1
                        bar.set_postfix_str(f"{item.path.name} frame {index}", refresh=False)
                except VideoReadError:
                    bad(item.path, "cannot read video")
            bar.update(1)
    finally:
        bar.close()
        segmenter.close()
    line = f"wrote {written} result(s) to {out_dir.path}"
    if skipped:
        line += f"; skipped {len(skipped)} unreadable file(s): " + ", ".join(skipped[:5])
        line += " ..." if len(skipped) > 5 else ""
    print(line)
    return 0
