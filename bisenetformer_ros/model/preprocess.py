"""Image pre-processing: RGB uint8 -> resized, ImageNet-normalised, zero-padded float batch (+ per-image metadata).

Padding goes to the bottom/right and is zero *after* normalisation (the mean colour), so it carries no signal; the
:class:`PreprocessMeta` of each image records where its content lies so that ``model.postprocess`` can crop the pad
away before resizing back to the original size — pads never leak into outputs. All work after the host->device copy
is done by torch on the target device (uint8 goes over the bus, 4x less than float).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from bisenetformer_ros.model.inference_defaults import IMAGENET_MEAN, IMAGENET_STD


@dataclass(frozen=True)
class PreprocessMeta:
    """Where an image went: ``orig_size`` (h, w) of the input, ``resized_size`` of its content in the batch (top-left
    corner) and ``padded_size`` (H, W) of the whole batch tensor (multiples of ``size_divisibility``)."""

    orig_size: tuple[int, int]
    resized_size: tuple[int, int]
    padded_size: tuple[int, int]


class Preprocessor:
    """Turns images into the network input.

    ``input_size``: ``None`` keeps each image's size, ``(h, w)`` resizes every image to exactly that size, an ``int``
    resizes the short side to that many pixels keeping the aspect ratio (the paper's ADE20K protocol); ``max_size``
    optionally caps the long side after that. Images of different sizes in one call are padded to a common size.
    """

    def __init__(
        self,
        input_size: int | tuple[int, int] | None = None,
        size_divisibility: int = 32,
        device: str | torch.device = "cpu",
        dtype: torch.dtype = torch.float32,
        max_size: int | None = None,
        mean: Sequence[float] = IMAGENET_MEAN,
        std: Sequence[float] = IMAGENET_STD,
    ) -> None:
        if input_size is not None:
            if isinstance(input_size, int):
                if input_size < 1:
                    raise ValueError(f"input_size (short side) must be positive, got {input_size}")
            else:
                input_size = (int(input_size[0]), int(input_size[1]))
                if min(input_size) < 1:
                    raise ValueError(f"input_size must be positive (h, w), got {input_size}")
        if size_divisibility < 1:
            raise ValueError(f"size_divisibility must be >= 1, got {size_divisibility}")
        self.input_size = input_size
        self.size_divisibility = int(size_divisibility)
        self.device = torch.device(device)
        self.dtype = dtype
        self.max_size = max_size
        self._mean = torch.tensor(mean, dtype=torch.float32, device=self.device).view(1, 3, 1, 1)
        self._std = torch.tensor(std, dtype=torch.float32, device=self.device).view(1, 3, 1, 1)

    def target_size(self, height: int, width: int) -> tuple[int, int]:
        """Content size for an input of ``height x width`` under this pre-processor's resize policy."""
        if self.input_size is None:
            h, w = height, width
        elif isinstance(self.input_size, int):
            scale = self.input_size / min(height, width)
            h, w = round(height * scale), round(width * scale)
        else:
            h, w = self.input_size
        if self.max_size is not None and max(h, w) > self.max_size:
            scale = self.max_size / max(h, w)
            h, w = round(h * scale), round(w * scale)
        return max(int(h), 1), max(int(w), 1)

    def _pad_to(self, size: int) -> int:
        d = self.size_divisibility
        return int(math.ceil(size / d) * d)

    def __call__(self, images: Sequence[np.ndarray] | torch.Tensor) -> tuple[torch.Tensor, list[PreprocessMeta]]:
        tensors = self._as_tensors(images)
        sizes = [(int(img.shape[-2]), int(img.shape[-1])) for img in tensors]  # img: uint8 [3, h, w] on device
        targets = [self.target_size(h, w) for h, w in sizes]
        ph = self._pad_to(max(rh for rh, _ in targets))
        pw = self._pad_to(max(rw for _, rw in targets))
        # Each image is converted, resized and normalised straight into its slot of the batch (in place, no
        # temporaries of camera size); only the padding strips are zeroed.
        batch = torch.empty((len(tensors), 3, ph, pw), dtype=torch.float32, device=self.device)
        for i, (img, (h, w), (rh, rw)) in enumerate(zip(tensors, sizes, targets, strict=True)):
            dst = batch[i, :, :rh, :rw]
            if (rh, rw) != (h, w):
                # Antialiasing matters when shrinking camera frames: without it thin structures alias.
                x = img.unsqueeze(0).float()
                dst.copy_(F.interpolate(x, size=(rh, rw), mode="bilinear", align_corners=False, antialias=True)[0])
            else:
                dst.copy_(img)
            dst.sub_(self._mean[0]).div_(self._std[0])
            batch[i, :, rh:, :] = 0.0
            batch[i, :, :rh, rw:] = 0.0
        metas = [
            PreprocessMeta(orig_size=o, resized_size=r, padded_size=(ph, pw))
            for o, r in zip(sizes, targets, strict=True)
        ]
        return batch.to(self.dtype), metas

    def _as_tensors(self, images: Sequence[np.ndarray] | torch.Tensor) -> list[torch.Tensor]:
        if isinstance(images, torch.Tensor):
            if images.dim() != 4 or images.shape[1] != 3:
                raise ValueError(f"image tensor must be uint8 [B, 3, H, W], got shape {tuple(images.shape)}")
            if images.dtype != torch.uint8:
                raise ValueError(f"image tensor must be uint8 RGB 0-255, got {images.dtype}")
            if images.shape[0] == 0 or images.shape[-1] == 0 or images.shape[-2] == 0:
                raise ValueError(f"empty image tensor of shape {tuple(images.shape)}")
            return list(images.to(self.device, non_blocking=True).unbind(0))
        if isinstance(images, np.ndarray):
            raise ValueError("pass a list of HxWx3 arrays (or a uint8 tensor [B,3,H,W]), not a single array")
        out = []
        if len(images) == 0:
            raise ValueError("no images given")
        for i, img in enumerate(images):
            if not isinstance(img, np.ndarray):
                raise ValueError(f"image {i}: expected a numpy array, got {type(img).__name__}")
            if img.ndim != 3 or img.shape[2] != 3:
                raise ValueError(f"image {i}: expected an HxWx3 RGB array, got shape {img.shape}")
            if img.dtype != np.uint8:
                raise ValueError(f"image {i}: expected dtype uint8 (RGB 0-255), got {img.dtype}")
            if img.shape[0] == 0 or img.shape[1] == 0:
                raise ValueError(f"image {i}: empty image of shape {img.shape}")
            arr = np.ascontiguousarray(img)
            if not arr.flags.writeable:  # e.g. a frombuffer() view of a ROS message: torch wants writable memory
                arr = arr.copy()
            t = torch.from_numpy(arr).to(self.device, non_blocking=True)
            out.append(t.permute(2, 0, 1))
        return out
