"""sensor_msgs/CompressedImage (JPEG, PNG) -> RGB, guarded against corrupt data and decompression bombs.

The image size is read from the PNG/JPEG header before anything is decoded, so a few hundred bytes that claim to be
a 60000x60000 image are rejected instead of allocating gigabytes; OpenCV then decodes the data (libjpeg/libpng).
"""

from __future__ import annotations

import struct
from typing import Any

import cv2
import numpy as np

from bisenetformer_ros.image.convert import DEFAULT_MAX_PIXELS, ImageFormatError, to_uint8

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_JPEG_SOI = b"\xff\xd8"
# JPEG start-of-frame markers (baseline, extended, progressive, lossless, arithmetic variants); C4/C8/CC are not SOF.
_SOF_MARKERS = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}
# Real JPEGs reach their SOF within a few dozen segments (APPn, DQT, DHT, ...); the cap bounds the header walk, which
# the node runs in its subscription callback, on crafted data made of thousands of empty segments.
_MAX_JPEG_SEGMENTS = 1024


def _as_bytes(data: Any) -> bytes | memoryview:
    if isinstance(data, np.ndarray):
        return memoryview(np.ascontiguousarray(data, dtype=np.uint8)).cast("B")
    if isinstance(data, (bytes, bytearray)):
        return data
    return memoryview(data).cast("B")


def codec_of(data: bytes | memoryview) -> str | None:
    """'png', 'jpeg' or None, from the magic bytes (the format string of a message is only a hint)."""
    head = bytes(data[:8])
    if head.startswith(_PNG_SIGNATURE):
        return "png"
    if head.startswith(_JPEG_SOI):
        return "jpeg"
    return None


def probe_size(data: bytes | memoryview) -> tuple[int, int] | None:
    """(width, height) from a PNG IHDR or JPEG SOF header; None if the header cannot be found."""
    codec = codec_of(data)
    if codec == "png":
        if len(data) < 24 or bytes(data[12:16]) != b"IHDR":
            return None
        w, h = struct.unpack(">II", bytes(data[16:24]))
        return int(w), int(h)
    if codec == "jpeg":
        i, n, segments = 2, len(data), 0
        while i + 4 <= n:
            segments += 1
            if segments > _MAX_JPEG_SEGMENTS:
                return None
            if data[i] != 0xFF:
                return None
            marker = data[i + 1]
            if marker == 0xFF:  # fill byte
                i += 1
                continue
            if marker in (0x01,) or 0xD0 <= marker <= 0xD7:  # stand-alone markers without a length
                i += 2
                continue
            seg_len = (data[i + 2] << 8) | data[i + 3]
            if seg_len < 2:
                return None
            if marker in _SOF_MARKERS:
                if i + 9 > n:
                    return None
                h = (data[i + 5] << 8) | data[i + 6]
                w = (data[i + 7] << 8) | data[i + 8]
                return int(w), int(h)
            i += 2 + seg_len
        return None
    return None


def check_compressed(fmt: str, data: Any, *, max_pixels: int = DEFAULT_MAX_PIXELS) -> tuple[str, int, int]:
    """Everything about a CompressedImage that can be checked without decoding: ``(codec, width, height)``.

    Reads only the format string, the magic bytes and the PNG IHDR / JPEG SOF header (a few segment headers, never
    the entropy-coded data), so the node's subscription callback can afford it on every message: a corrupt or
    bomb-sized frame is then counted and skipped on arrival instead of displacing the newest good frame that waits
    for the worker. Raises :class:`ImageFormatError` with a stable cause (``unsupported_format``, ``empty_data``,
    ``corrupt_compressed``, ``zero_size``, ``too_large``).
    """
    raw = _as_bytes(data)
    if "compresseddepth" in fmt.lower().replace(" ", ""):
        raise ImageFormatError(
            "unsupported_format", f"compressed format '{fmt[:60]}' is a depth stream; subscribe to a camera image"
        )
    if len(raw) == 0:
        raise ImageFormatError("empty_data", "compressed image has no data")
    codec = codec_of(raw)
    if codec is None:
        raise ImageFormatError(
            "corrupt_compressed", f"compressed image ('{fmt[:60]}', {len(raw)} bytes) is neither JPEG nor PNG data"
        )
    size = probe_size(raw)
    if size is None:
        raise ImageFormatError("corrupt_compressed", f"{codec} data ({len(raw)} bytes) has no readable image header")
    w, h = size
    if w <= 0 or h <= 0:
        raise ImageFormatError("zero_size", f"{codec} header declares a zero size ({w}x{h})")
    if w * h > max_pixels:
        raise ImageFormatError(
            "too_large", f"{codec} header declares {w}x{h}, above the limit of {max_pixels} pixels (max_image_pixels)"
        )
    return codec, w, h


def decode_compressed(
    fmt: str, data: Any, *, max_pixels: int = DEFAULT_MAX_PIXELS, scaling: str = "shift"
) -> np.ndarray:
    """The fields of a sensor_msgs/CompressedImage -> ``HxWx3`` uint8 RGB.

    ``fmt`` is checked only to refuse what is not a colour/grey image (``compressedDepth`` streams carry a depth
    header and are not camera images); the codec itself is taken from the data. 16-bit PNGs are scaled by
    ``scaling`` like raw 16-bit images.
    """
    raw = _as_bytes(data)
    codec, _w, _h = check_compressed(fmt, raw, max_pixels=max_pixels)
    img = cv2.imdecode(np.frombuffer(raw, dtype=np.uint8), cv2.IMREAD_UNCHANGED)
    if img is None or img.size == 0:
        raise ImageFormatError("corrupt_compressed", f"{codec} data ({len(raw)} bytes) could not be decoded")
    if img.dtype == np.uint16:
        img = to_uint8(img, scaling)
    elif img.dtype != np.uint8:
        raise ImageFormatError("unsupported_format", f"{codec} image of type {img.dtype} is not a camera image")
    if img.ndim == 2:
        return cv2.cvtColor(img, cv2.COLOR_GRAY2RGB)
    if img.shape[2] == 3:
        return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
    if img.shape[2] == 4:
        return cv2.cvtColor(img, cv2.COLOR_BGRA2RGB)
    raise ImageFormatError("unsupported_format", f"{codec} image with {img.shape[2]} channels")  # pragma: no cover


def encode_compressed(rgb: np.ndarray, fmt: str = "jpeg", quality: int = 90) -> bytes:
    """HxWx3 RGB -> JPEG/PNG bytes (as image_transport's compressed publisher would send them)."""
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
        raise ImageFormatError("bad_array", f"expected an HxWx3 uint8 RGB image, got {rgb.dtype} {rgb.shape}")
    bgr = cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2BGR)
    if fmt == "jpeg":
        ok, buf = cv2.imencode(".jpg", bgr, [int(cv2.IMWRITE_JPEG_QUALITY), int(quality)])
    elif fmt == "png":
        ok, buf = cv2.imencode(".png", bgr)
    else:
        raise ImageFormatError("unsupported_format", f"cannot encode '{fmt}'; choose jpeg or png")
    if not ok:  # pragma: no cover - OpenCV fails only on invalid arrays, excluded above
        raise RuntimeError(f"OpenCV could not encode the image as {fmt}")
    return buf.tobytes()


def compress_output(arr: np.ndarray, encoding: str, fmt: str = "jpeg", quality: int = 80) -> tuple[str, bytes]:
    """An output image as ``(CompressedImage.format, data)`` in compressed_image_transport's convention
    (``"<encoding>; <codec> compressed <stored encoding>"``), so RViz and ``image_transport republish`` decode it.

    ``rgb8`` images use ``fmt`` (jpeg or png); ``mono8``/``mono16`` images (class ids, masks, confidences) are always
    PNG: a lossy codec would turn class ids into other classes."""
    if encoding == "rgb8":
        return f"rgb8; {fmt} compressed bgr8", encode_compressed(arr, fmt, quality)
    if encoding in ("mono8", "mono16") and arr.ndim == 2:
        ok, buf = cv2.imencode(".png", np.ascontiguousarray(arr))
        if not ok:  # pragma: no cover - OpenCV fails only on invalid arrays
            raise RuntimeError(f"OpenCV could not encode a {encoding} image as png")
        return f"{encoding}; png compressed {encoding}", buf.tobytes()
    raise ImageFormatError("unsupported_format", f"cannot compress a {encoding} output of shape {arr.shape}")
