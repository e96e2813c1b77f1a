"""Training augmentation (paper §4.1 / Mask2Former): random resize 0.5-2.0, crop, flip, photometric distortion.

Every geometric step transforms image, semantic map and panoptic map together (nearest-neighbour for labels), and
segments that leave the crop are dropped from ``segments``, so instance targets always match the pixels.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import cv2
import numpy as np

from bisenetformer_ros.data.classes import IGNORE_LABEL
from bisenetformer_ros.data.sample import Sample


@dataclass
class AugmentConfig:
    """Knobs of :class:`Augmenter`. ``base_size`` is the short side that scale 1.0 maps to (1024 for Cityscapes,
    512 for ADE20K), ``crop_size`` is ``(h, w)``; ``cat_max_ratio`` re-draws crops dominated by one class (semantic).
    The trainer replaces ``ignore_label`` with its dataset's (the class table is authoritative)."""

    base_size: int = 512
    crop_size: tuple[int, int] = (512, 512)
    scale_range: tuple[float, float] = (0.5, 2.0)
    flip: bool = True
    photometric: bool = True
    cat_max_ratio: float = 1.0
    ignore_label: int = IGNORE_LABEL
    extra: dict = field(default_factory=dict)


class Augmenter:
    """Callable ``(Sample, rng) -> Sample``; deterministic for a given ``numpy.random.Generator`` state."""

    def __init__(self, config: AugmentConfig) -> None:
        if config.scale_range[0] <= 0 or config.scale_range[0] > config.scale_range[1]:
            raise ValueError(f"scale_range must be 0 < min <= max, got {config.scale_range}")
        if min(config.crop_size) < 1 or config.base_size < 1:
            raise ValueError(f"crop_size and base_size must be positive, got {config.crop_size}, {config.base_size}")
        self.config = config

    def __call__(self, sample: Sample, rng: np.random.Generator) -> Sample:
        c = self.config
        sample = random_resize(sample, c.base_size, c.scale_range, rng)
        sample = random_crop(sample, c.crop_size, rng, c.cat_max_ratio, c.ignore_label)
        if c.flip and rng.random() < 0.5:
            sample = hflip(sample)
        if c.photometric:
            sample = replace(sample, image=photometric_distortion(sample.image, rng))
        return sample


def resize(sample: Sample, height: int, width: int) -> Sample:
    """Resize image (bilinear) and labels (nearest) to ``height x width``."""
    image = cv2.resize(sample.image, (width, height), interpolation=cv2.INTER_LINEAR)
    # Both label maps go through the same index arithmetic: cv2's INTER_NEAREST samples at ``floor(x * scale)``
    # (no half-pixel centre), which would shift the semantic map against the panoptic one by up to a pixel.
    semantic = _nearest(sample.semantic, height, width)
    panoptic = None if sample.panoptic is None else _nearest(sample.panoptic, height, width)
    return _with(sample, image, semantic, panoptic)


def _nearest(labels: np.ndarray, height: int, width: int) -> np.ndarray:
    """Nearest-neighbour resize with pixel-centre alignment (same grid as cv2's bilinear), for any integer dtype."""
    h, w = labels.shape
    ys = np.minimum((np.arange(height) + 0.5) * h / height, h - 1).astype(np.int64)
    xs = np.minimum((np.arange(width) + 0.5) * w / width, w - 1).astype(np.int64)
    return labels[ys[:, None], xs[None, :]]


def random_resize(sample: Sample, base_size: int, scale_range: tuple[float, float], rng: np.random.Generator) -> Sample:
    """Scale so the short side becomes ``base_size * s`` with ``s`` uniform in ``scale_range``."""
    h, w = sample.size
    s = float(rng.uniform(*scale_range)) * base_size / min(h, w)
    return resize(sample, max(1, round(h * s)), max(1, round(w * s)))


def random_crop(
    sample: Sample,
    crop_size: tuple[int, int],
    rng: np.random.Generator,
    cat_max_ratio: float = 1.0,
    ignore_label: int = IGNORE_LABEL,
) -> Sample:
    """Crop ``crop_size`` (padding with 0 / ignore / void when the image is smaller)."""
    sample = pad_to(sample, crop_size, ignore_label)
    h, w = sample.size
    ch, cw = crop_size
    y0 = x0 = 0
    for _ in range(10):
        y0 = int(rng.integers(0, h - ch + 1))
        x0 = int(rng.integers(0, w - cw + 1))
        if cat_max_ratio >= 1.0:
            break
        crop = sample.semantic[y0 : y0 + ch, x0 : x0 + cw]
        labels, counts = np.unique(crop[crop != ignore_label], return_counts=True)
        if len(labels) > 1 and counts.max() / counts.sum() < cat_max_ratio:
            break
    return crop_at(sample, y0, x0, ch, cw)


def crop_at(sample: Sample, y0: int, x0: int, ch: int, cw: int) -> Sample:
    sl = (slice(y0, y0 + ch), slice(x0, x0 + cw))
    pan = None if sample.panoptic is None else sample.panoptic[sl]
    return _with(sample, sample.image[sl], sample.semantic[sl], pan)


def pad_to(sample: Sample, size: tuple[int, int], ignore_label: int = IGNORE_LABEL) -> Sample:
    """Pad bottom/right up to ``size`` (image 0, semantic ignore, panoptic void)."""
    h, w = sample.size
    ph, pw = max(0, size[0] - h), max(0, size[1] - w)
    if ph == 0 and pw == 0:
        return sample
    image = np.pad(sample.image, ((0, ph), (0, pw), (0, 0)))
    semantic = np.pad(sample.semantic, ((0, ph), (0, pw)), constant_values=ignore_label)
    pan = None if sample.panoptic is None else np.pad(sample.panoptic, ((0, ph), (0, pw)))
    return _with(sample, image, semantic, pan)


def hflip(sample: Sample) -> Sample:
    pan = None if sample.panoptic is None else sample.panoptic[:, ::-1]
    return _with(sample, sample.image[:, ::-1], sample.semantic[:, ::-1], pan)


def photometric_distortion(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Brightness, contrast, saturation and hue jitter, each applied with probability 0.5 (mmseg's recipe)."""
    img = image.astype(np.float32)
    if rng.random() < 0.5:
        img += rng.uniform(-32, 32)
    contrast_first = rng.random() < 0.5
    if contrast_first and rng.random() < 0.5:
        img *= rng.uniform(0.5, 1.5)
    img = np.clip(img, 0, 255)
    # Draw both coins first: the HSV round trip (lossy in uint8) is skipped when neither applies, and each of the
    # two still happens with probability 0.5.
    saturation, hue = rng.random() < 0.5, rng.random() < 0.5
    if saturation or hue:
        hsv = cv2.cvtColor(img.astype(np.uint8), cv2.COLOR_RGB2HSV).astype(np.float32)
        if saturation:
            hsv[..., 1] = np.clip(hsv[..., 1] * rng.uniform(0.5, 1.5), 0, 255)
        if hue:
            hsv[..., 0] = (hsv[..., 0] + rng.integers(-9, 10)) % 180  # OpenCV hue is 0..179 (±18 degrees)
        img = cv2.cvtColor(hsv.astype(np.uint8), cv2.COLOR_HSV2RGB).astype(np.float32)
    if not contrast_first and rng.random() < 0.5:
        img *= rng.uniform(0.5, 1.5)
    return np.clip(img, 0, 255).astype(np.uint8)


def _with(sample: Sample, image: np.ndarray, semantic: np.ndarray, panoptic: np.ndarray | None) -> Sample:
    """Copy ``sample`` with new arrays, keeping only segments still visible."""
    segments = sample.segments
    if panoptic is not None:
        present = set(np.unique(panoptic).tolist())
        segments = [s for s in sample.segments if s.id in present]
    return Sample(
        image=np.ascontiguousarray(image),
        semantic=np.ascontiguousarray(semantic),
        panoptic=None if panoptic is None else np.ascontiguousarray(panoptic),
        segments=segments,
        name=sample.name,
    )
