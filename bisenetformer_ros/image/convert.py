"""Raw camera buffers (the fields of a sensor_msgs/Image) <-> numpy arrays, without ROS and without cv_bridge.

Why our own code: cv_bridge is compiled against one numpy ABI and breaks across numpy 1.x/2.x, and the PyPI port maps
16UC1 wrongly. Here the buffer is read with ``np.frombuffer`` and a strided view, so packed RGB messages are used in
place (zero copy); row padding (``step > width * bytes_per_pixel``), big-endian 16-bit data and every encoding of
:mod:`bisenetformer_ros.image.encodings` are honoured. Demosaicing and 4:2:2 chroma up-sampling use OpenCV's SIMD
kernels (``cv2.cvtColor``) on those views, which is what keeps the node's own overhead small at 1080p.

Every malformed input raises :class:`ImageFormatError` whose ``cause`` is a short stable key (``data_size``,
``unknown_encoding``, ...) that the node uses to log once per cause and to count in diagnostics.
"""

from __future__ import annotations

from typing import Any

import cv2
import numpy as np

from bisenetformer_ros.image.encodings import SUPPORTED_ENCODINGS, EncodingInfo, encoding_info

#: Largest image (pixels) accepted by default: 8192 x 8192. Larger headers are treated as corrupt, so a bad message
#: can never make the node allocate gigabytes.
DEFAULT_MAX_PIXELS = 8192 * 8192

#: How 16-bit data becomes the 8-bit RGB the network expects: 'shift' keeps the top 8 bits (full-range 16-bit
#: cameras), 'minmax' stretches each frame's own range (10/12-bit sensors in 16-bit containers, thermal cameras).
SCALING_MODES: tuple[str, ...] = ("shift", "minmax")

# OpenCV's historical Bayer names describe the pattern one pixel down-right of the top-left corner, so ROS
# "bayer_rggb" (R at (0, 0)) is OpenCV "BayerBG". These legacy names exist in every OpenCV 3/4/5.
_BAYER_TO_RGB = {
    "bayer_rggb": cv2.COLOR_BayerBG2RGB,
    "bayer_bggr": cv2.COLOR_BayerRG2RGB,
    "bayer_gbrg": cv2.COLOR_BayerGR2RGB,
    "bayer_grbg": cv2.COLOR_BayerGB2RGB,
}
_SWAP_TO_RGB = {"bgr": cv2.COLOR_BGR2RGB, "rgba": cv2.COLOR_RGBA2RGB, "bgra": cv2.COLOR_BGRA2RGB}
_YUV422_TO_RGB = {"uyvy": cv2.COLOR_YUV2RGB_UYVY, "yuyv": cv2.COLOR_YUV2RGB_YUYV}


class ImageFormatError(ValueError):
    """A message that cannot be turned into an image; ``cause`` is a short key for counting and log throttling."""

    def __init__(self, cause: str, message: str) -> None:
        super().__init__(message)
        self.cause = cause


def check_layout(
    encoding: str,
    height: int,
    width: int,
    step: int,
    data_size: int,
    *,
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> EncodingInfo:
    """Validate the header fields of a raw image against its data size (O(1), no pixel is touched).

    The node runs this in the subscription callback so that a malformed message is rejected before it can displace
    a good frame waiting for the worker. ROS defines ``len(data) == step * height`` exactly; both shorter and longer
    buffers are rejected because either means the producer and we disagree about the layout.
    """
    info = encoding_info(encoding)
    if info is None:
        shown = encoding if len(encoding) <= 40 else encoding[:40] + "..."
        raise ImageFormatError(
            "unknown_encoding",
            f"unsupported image encoding '{shown}'; supported: {', '.join(SUPPORTED_ENCODINGS)} "
            "(or use the compressed input for jpeg/png)",
        )
    if height <= 0 or width <= 0:
        raise ImageFormatError("zero_size", f"image has zero size ({width}x{height})")
    if height * width > max_pixels:
        raise ImageFormatError(
            "too_large", f"image of {width}x{height} exceeds the limit of {max_pixels} pixels (max_image_pixels)"
        )
    row = width * info.bytes_per_pixel
    if step < row:
        raise ImageFormatError(
            "bad_step", f"{encoding} image {width}x{height}: step {step} is shorter than one row ({row} bytes)"
        )
    if data_size != step * height:
        raise ImageFormatError(
            "data_size",
            f"{encoding} image {width}x{height}, step {step}: data has {data_size} bytes, expected "
            f"step*height = {step * height}",
        )
    if info.is_yuv422 and width % 2:
        raise ImageFormatError("odd_width", f"{encoding} (4:2:2) image needs an even width, got {width}")
    if info.is_bayer and (width < 3 or height < 3):  # OpenCV's demosaicing needs a 3x3 neighbourhood
        raise ImageFormatError("too_small", f"{encoding} image must be at least 3x3 to demosaic, got {width}x{height}")
    return info


def _buffer(data: Any) -> np.ndarray:
    """Flat uint8 view of bytes/bytearray/memoryview/array.array/ndarray without copying."""
    if isinstance(data, np.ndarray):
        return data.reshape(-1).view(np.uint8) if data.dtype != np.uint8 else data.reshape(-1)
    return np.frombuffer(data, dtype=np.uint8)


def _rows(buf: np.ndarray, height: int, row_bytes: int, step: int) -> np.ndarray:
    """(height, row_bytes) view of a buffer whose rows start every ``step`` bytes (padding skipped, no copy)."""
    if step == row_bytes:
        return buf[: height * step].reshape(height, row_bytes)
    return np.lib.stride_tricks.as_strided(buf, shape=(height, row_bytes), strides=(step, 1), writeable=False)


def to_uint8(values: np.ndarray, scaling: str = "shift") -> np.ndarray:
    """16-bit values -> uint8 by ``scaling`` (see :data:`SCALING_MODES`)."""
    if scaling == "shift":
        return (values >> 8).astype(np.uint8)
    if scaling == "minmax":
        lo = int(values.min())
        hi = int(values.max())
        if hi <= lo:
            return np.zeros(values.shape, dtype=np.uint8)
        scaled = (values.astype(np.float32) - lo) * (255.0 / (hi - lo))
        return np.rint(scaled).astype(np.uint8)
    raise ValueError(f"unknown 16-bit scaling '{scaling}'; choose from {', '.join(SCALING_MODES)}")


def decode_image(
    encoding: str,
    height: int,
    width: int,
    step: int,
    data: Any,
    is_bigendian: bool = False,
    *,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    scaling: str = "shift",
) -> np.ndarray:
    """The fields of a sensor_msgs/Image -> ``HxWx3`` uint8 RGB for the network.

    ``rgb8`` comes back as a read-only view of ``data`` (no copy, also with padded rows); every other layout costs
    one OpenCV pass over a view of the buffer. The result may be read-only and non-contiguous: copy it before
    writing into it.
    """
    height, width, step = int(height), int(width), int(step)
    buf = _buffer(data)
    info = check_layout(encoding, height, width, step, buf.size, max_pixels=max_pixels)
    rows = _rows(buf, height, width * info.bytes_per_pixel, step)
    if info.depth == 2:
        dtype = np.dtype(">u2" if is_bigendian else "<u2")
        pixels16 = rows.view(dtype).reshape(height, width, info.channels)
        # Bayer and colour data are scaled before conversion: 8-bit kernels are faster, and the network sees 8 bits.
        pixels = to_uint8(pixels16, scaling)
    else:
        pixels = rows.reshape(height, width, info.channels)
    layout = info.layout
    if layout == "rgb":
        return pixels
    # Channel swaps go through OpenCV: one SIMD pass into a contiguous array is ~10x faster than letting numpy
    # materialise a reversed-stride view later (the pre-processor needs contiguous memory anyway).
    if layout in _SWAP_TO_RGB:
        return cv2.cvtColor(pixels, _SWAP_TO_RGB[layout])
    if layout == "mono":
        return cv2.cvtColor(np.ascontiguousarray(pixels[..., 0]), cv2.COLOR_GRAY2RGB)
    if info.is_yuv422:
        return cv2.cvtColor(np.ascontiguousarray(pixels), _YUV422_TO_RGB[layout])
    if info.is_bayer:
        return cv2.cvtColor(np.ascontiguousarray(pixels[..., 0]), _BAYER_TO_RGB[layout])
    raise ImageFormatError(
        "unknown_encoding", f"no conversion for layout '{layout}' of '{encoding}'"
    )  # pragma: no cover


# ----------------------------------------------------------------------------------------------------------- encode


def _as_uint8_rgb(array: np.ndarray, encoding: str) -> np.ndarray:
    if array.ndim != 3 or array.shape[2] not in (3, 4) or array.dtype != np.uint8:
        raise ImageFormatError(
            "bad_array", f"{encoding} needs an HxWx3 (RGB) or HxWx4 (RGBA) uint8 array, got {array.dtype} {array.shape}"
        )
    return array


def rgb_to_yuv422(rgb: np.ndarray, layout: str = "uyvy") -> np.ndarray:
    """HxWx3 RGB -> HxWx2 packed 4:2:2 (BT.601 limited range, chroma averaged over each pixel pair).

    The inverse of OpenCV's ``COLOR_YUV2RGB_UYVY``/``_YUYV`` up to rounding; used to make test and benchmark frames
    and by :func:`encode_image`.
    """
    if rgb.shape[1] % 2:
        raise ImageFormatError("odd_width", f"4:2:2 needs an even width, got {rgb.shape[1]}")
    f = rgb.astype(np.float32)
    r, g, b = f[..., 0], f[..., 1], f[..., 2]
    y = 16.0 + 0.256788 * r + 0.504129 * g + 0.097906 * b
    u = 128.0 - 0.148223 * r - 0.290993 * g + 0.439216 * b
    v = 128.0 + 0.439216 * r - 0.367788 * g - 0.071427 * b
    u2 = 0.5 * (u[:, 0::2] + u[:, 1::2])
    v2 = 0.5 * (v[:, 0::2] + v[:, 1::2])
    h, w = rgb.shape[:2]
    out = np.empty((h, w, 2), dtype=np.float32)
    luma, chroma = (1, 0) if layout == "uyvy" else (0, 1)
    out[..., luma] = y
    out[:, 0::2, chroma] = u2
    out[:, 1::2, chroma] = v2
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def rgb_to_bayer(rgb: np.ndarray, pattern: str) -> np.ndarray:
    """HxWx3 -> HxW mosaic: each pixel keeps the one channel its filter passes (``pattern`` like 'rggb')."""
    chan = {"r": 0, "g": 1, "b": 2}
    out = np.empty(rgb.shape[:2], dtype=rgb.dtype)
    for k, (dy, dx) in enumerate(((0, 0), (0, 1), (1, 0), (1, 1))):
        out[dy::2, dx::2] = rgb[dy::2, dx::2, chan[pattern[k]]]
    return out


def encode_image(
    array: np.ndarray,
    encoding: str,
    *,
    step: int | None = None,
    bigendian: bool = False,
    padding_byte: int = 0,
) -> tuple[int, bytes]:
    """Array -> ``(step, data)`` of a sensor_msgs/Image in ``encoding`` (the inverse of :func:`decode_image`).

    Label encodings (``mono8``/``8UC1``, ``mono16``/``16UC1``) take an HxW integer array of values (class or segment
    ids); every other encoding takes an HxWx3 RGB (or HxWx4 RGBA) uint8 image, and 16-bit colour/Bayer encodings
    also take uint16. ``step`` larger than a row pads each row with ``padding_byte`` (camera drivers do this for
    alignment), which is how the tests prove the decoder never reads padding.
    """
    step, rows = pack_image(array, encoding, step=step, bigendian=bigendian, padding_byte=padding_byte)
    return step, rows.tobytes()


def pack_image(
    array: np.ndarray,
    encoding: str,
    *,
    step: int | None = None,
    bigendian: bool = False,
    padding_byte: int = 0,
) -> tuple[int, np.ndarray]:
    """:func:`encode_image` without the final copy to ``bytes``: ``(step, uint8 array of shape (height, step))``.

    Message builders hand this array straight to their message type (a view of ``array`` when it already has the
    packed layout), so a 1080p output image is copied once, by the message, not twice.
    """
    info = encoding_info(encoding)
    if info is None:
        raise ImageFormatError("unknown_encoding", f"cannot encode '{encoding}'; supported: {SUPPORTED_ENCODINGS}")
    array = np.asarray(array)
    if info.layout == "mono":
        if array.ndim != 2 or not np.issubdtype(array.dtype, np.integer):
            raise ImageFormatError(
                "bad_array", f"{encoding} needs an HxW integer array, got {array.dtype} {array.shape}"
            )
        limit = 255 if info.depth == 1 else 65535
        fits = np.can_cast(array.dtype, np.uint8 if info.depth == 1 else np.uint16)  # no scan needed
        if array.size and not fits and (int(array.min()) < 0 or int(array.max()) > limit):
            raise ImageFormatError("bad_array", f"{encoding} values must lie in 0..{limit}")
        pixels = array[..., None]
    elif info.depth == 2 and array.dtype == np.uint16:
        if array.ndim != 3 or array.shape[2] not in (3, 4):
            raise ImageFormatError("bad_array", f"{encoding} needs an HxWx3 uint16 array, got {array.shape}")
        pixels = _arrange(array, info)
    else:
        rgb = _as_uint8_rgb(array, encoding)
        pixels = _arrange(rgb, info)
        if info.depth == 2:
            pixels = pixels.astype(np.uint16) * np.uint16(257)  # 0..255 -> 0..65535, so 'shift' decodes it back
    dtype = np.dtype(np.uint8) if info.depth == 1 else np.dtype(">u2" if bigendian else "<u2")
    packed = np.ascontiguousarray(pixels, dtype=dtype)
    h, w = packed.shape[:2]
    row = w * info.bytes_per_pixel
    step = row if step is None else int(step)
    if step < row:
        raise ImageFormatError("bad_step", f"step {step} is shorter than one row of {encoding} ({row} bytes)")
    raw = packed.view(np.uint8).reshape(h, row)
    if step == row:
        return step, raw
    out = np.full((h, step), padding_byte, dtype=np.uint8)
    out[:, :row] = raw
    return step, out


def _arrange(rgb: np.ndarray, info: EncodingInfo) -> np.ndarray:
    """RGB(A) array -> channel layout of ``info`` (HxWxC), before packing to bytes."""
    color = rgb[..., :3]
    if info.layout == "rgb":
        return color
    if info.layout == "bgr":
        return color[..., ::-1]
    if info.layout in ("rgba", "bgra"):
        alpha = rgb[..., 3:4] if rgb.shape[2] == 4 else np.full((*rgb.shape[:2], 1), np.iinfo(rgb.dtype).max, rgb.dtype)
        return np.concatenate([color if info.layout == "rgba" else color[..., ::-1], alpha], axis=2)
    if info.is_yuv422:
        if rgb.dtype != np.uint8:
            raise ImageFormatError("bad_array", f"{info.name} is encoded from uint8 RGB")
        return rgb_to_yuv422(color, info.layout)
    if info.is_bayer:
        return rgb_to_bayer(color, info.layout[len("bayer_") :])[..., None]
    raise ImageFormatError("bad_array", f"cannot encode an RGB image as {info.name}")
