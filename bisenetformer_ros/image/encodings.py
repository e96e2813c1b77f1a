"""The table of raw image encodings the package understands (names as in ROS ``sensor_msgs/image_encodings``).

One table drives validation, decoding, encoding and the documentation, so adding an encoding is one entry here plus
its conversion in :mod:`bisenetformer_ros.image.convert`. Generic OpenCV names (``8UC3``, ``8UC4``) follow the OpenCV
convention that cv_bridge also uses: three or four channels are BGR(A).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class EncodingInfo:
    """Memory layout of one encoding.

    ``layout`` says how pixels are stored: ``rgb``/``bgr``/``rgba``/``bgra``/``mono`` (one value per channel),
    ``uyvy``/``yuyv`` (4:2:2, two bytes per pixel, chroma shared by pixel pairs) or ``bayer_<pattern>`` (one
    colour sample per pixel, the 2x2 pattern starting at the top-left pixel).
    """

    name: str
    layout: str
    channels: int
    depth: int  # bytes per channel value

    @property
    def bytes_per_pixel(self) -> int:
        return self.channels * self.depth

    @property
    def is_bayer(self) -> bool:
        return self.layout.startswith("bayer_")

    @property
    def is_yuv422(self) -> bool:
        return self.layout in ("uyvy", "yuyv")


def _table() -> dict[str, EncodingInfo]:
    entries = [
        EncodingInfo("rgb8", "rgb", 3, 1),
        EncodingInfo("bgr8", "bgr", 3, 1),
        EncodingInfo("rgba8", "rgba", 4, 1),
        EncodingInfo("bgra8", "bgra", 4, 1),
        EncodingInfo("rgb16", "rgb", 3, 2),
        EncodingInfo("bgr16", "bgr", 3, 2),
        EncodingInfo("rgba16", "rgba", 4, 2),
        EncodingInfo("bgra16", "bgra", 4, 2),
        EncodingInfo("mono8", "mono", 1, 1),
        EncodingInfo("mono16", "mono", 1, 2),
        EncodingInfo("8UC1", "mono", 1, 1),
        EncodingInfo("8UC3", "bgr", 3, 1),
        EncodingInfo("8UC4", "bgra", 4, 1),
        EncodingInfo("16UC1", "mono", 1, 2),
        EncodingInfo("16UC3", "bgr", 3, 2),
        # 4:2:2. ROS calls UYVY "yuv422" (and, since Jazzy, "uyvy"); YUYV is "yuv422_yuy2" (and "yuyv").
        EncodingInfo("yuv422", "uyvy", 2, 1),
        EncodingInfo("uyvy", "uyvy", 2, 1),
        EncodingInfo("yuv422_yuy2", "yuyv", 2, 1),
        EncodingInfo("yuyv", "yuyv", 2, 1),
    ]
    for pattern in ("rggb", "bggr", "gbrg", "grbg"):
        entries.append(EncodingInfo(f"bayer_{pattern}8", f"bayer_{pattern}", 1, 1))
        entries.append(EncodingInfo(f"bayer_{pattern}16", f"bayer_{pattern}", 1, 2))
    return {e.name: e for e in entries}


ENCODINGS: dict[str, EncodingInfo] = _table()

#: Every raw encoding ``decode_image`` accepts, in table order (for docs, help texts and error messages).
SUPPORTED_ENCODINGS: tuple[str, ...] = tuple(ENCODINGS)

#: Formats of sensor_msgs/CompressedImage that ``decode_compressed`` accepts (image_transport writes e.g. "jpeg",
#: "png" or "bgr8; jpeg compressed bgr8"; the codec is recognised from the data itself).
SUPPORTED_COMPRESSED_FORMATS: tuple[str, ...] = ("jpeg", "png")


def encoding_info(encoding: str) -> EncodingInfo | None:
    """The layout of ``encoding`` or None when it is not supported (case-sensitive, as ROS encodings are)."""
    return ENCODINGS.get(encoding)
