"""Calibration data for int8 TensorRT engines: a folder of camera images, read in a fixed order.

Kept free of TensorRT so that listing, hashing and decoding are tested on any machine; the entropy calibrator in
:mod:`.tensorrt_backend` only wraps :class:`CalibrationImages`. The digest of the image set is part of the engine key
and of the calibration-cache name, so a different image set never silently reuses another set's int8 scales.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np

IMAGE_SUFFIXES: tuple[str, ...] = (".jpg", ".jpeg", ".png", ".bmp", ".ppm", ".pgm", ".tif", ".tiff", ".webp")


class CalibrationImages:
    """Sorted images under ``folder`` (recursively), at most ``limit`` of them, spread evenly over the sorted list.

    Spreading rather than taking the first ``limit`` matters for folders of consecutive frames: the first 500
    frames of a drive are one street; every n-th frame covers the whole drive.
    """

    def __init__(self, folder: str | os.PathLike, limit: int = 500) -> None:
        self.folder = Path(folder)
        if not self.folder.is_dir():
            raise FileNotFoundError(
                f"calibration folder '{self.folder}' does not exist; give a folder of representative camera images "
                f"(a few hundred frames from the robot), or use --precision fp16"
            )
        if limit < 1:
            raise ValueError(f"calibration image limit must be >= 1, got {limit}")
        files = sorted(p for p in self.folder.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
        if not files:
            raise FileNotFoundError(
                f"calibration folder '{self.folder}' contains no images ({', '.join(IMAGE_SUFFIXES)}); add a few "
                f"hundred representative camera frames"
            )
        if len(files) > limit:
            idx = np.linspace(0, len(files) - 1, limit).round().astype(int)
            files = [files[i] for i in sorted(set(idx.tolist()))]
        self.files: list[Path] = files

    def __len__(self) -> int:
        return len(self.files)

    def digest(self) -> str:
        """SHA-256 over the chosen files' relative names and contents (identifies the calibration set)."""
        h = hashlib.sha256()
        for p in self.files:
            h.update(str(p.relative_to(self.folder)).encode())
            h.update(b"\0")
            h.update(hashlib.sha256(p.read_bytes()).digest())
        return h.hexdigest()

    def batches(self, batch_size: int) -> Iterator[list[np.ndarray]]:
        """Full batches of RGB uint8 images (a trailing partial batch is dropped: the engine shape is fixed)."""
        if batch_size < 1:
            raise ValueError(f"batch size must be >= 1, got {batch_size}")
        for start in range(0, len(self.files) - batch_size + 1, batch_size):
            yield [load_rgb(p) for p in self.files[start : start + batch_size]]


def load_rgb(path: str | os.PathLike) -> np.ndarray:
    """Read an image file as HxWx3 uint8 RGB (grey images are expanded, alpha dropped, 16-bit scaled)."""
    import cv2

    arr = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if arr is None:
        raise ValueError(f"cannot decode image '{path}' (unsupported or corrupt file)")
    if arr.dtype == np.uint16:
        arr = (arr >> 8).astype(np.uint8)
    elif arr.dtype != np.uint8:
        raise ValueError(f"image '{path}' has unsupported pixel type {arr.dtype}")
    if arr.ndim == 2:
        arr = np.repeat(arr[:, :, None], 3, axis=2)
        return arr
    if arr.shape[2] == 4:
        arr = arr[:, :, :3]
    return np.ascontiguousarray(arr[:, :, ::-1])  # BGR -> RGB


#: ``calibration_images`` value that selects rendered synthetic training scenes instead of a folder.
SYNTHETIC_CALIBRATION = "synthetic"


class SyntheticCalibration:
    """The first ``limit`` scenes of the synthetic *training* split (never the held-out seeds), rendered on demand.

    The shipped model was trained on these scenes, so they are its representative inputs: int8 scales calibrated on
    them describe the activations it meets, and the accuracy change is then measured on the disjoint held-out split.
    Same interface as :class:`CalibrationImages` (length, digest, batches).
    """

    def __init__(self, limit: int = 64, image_size: tuple[int, int] | None = None) -> None:
        from bisenetformer_ros.data.synthetic import DEFAULT_SIZE, TRAIN_SEED

        if limit < 1:
            raise ValueError(f"calibration image limit must be >= 1, got {limit}")
        self.limit = int(limit)
        self.image_size = tuple(image_size) if image_size is not None else DEFAULT_SIZE
        self.first_seed = TRAIN_SEED

    def __len__(self) -> int:
        return self.limit

    def digest(self) -> str:
        """Identifies the scene set (renderer seeds and size); the renderer is deterministic."""
        key = f"synthetic:{self.first_seed}:{self.limit}:{self.image_size[0]}x{self.image_size[1]}"
        return hashlib.sha256(key.encode()).hexdigest()

    def batches(self, batch_size: int) -> Iterator[list[np.ndarray]]:
        from bisenetformer_ros.data.synthetic import render_scene

        if batch_size < 1:
            raise ValueError(f"batch size must be >= 1, got {batch_size}")
        for start in range(0, self.limit - batch_size + 1, batch_size):
            yield [render_scene(self.first_seed + i, *self.image_size).image for i in range(start, start + batch_size)]


def calibration_set(source: str | os.PathLike, limit: int = 500) -> CalibrationImages | SyntheticCalibration:
    """A folder of camera images, or :data:`SYNTHETIC_CALIBRATION` for the synthetic training scenes."""
    if str(source) == SYNTHETIC_CALIBRATION:
        return SyntheticCalibration(limit=min(limit, 64))
    return CalibrationImages(source, limit=limit)
