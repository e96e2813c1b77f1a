"""Camera buffer conversion (bisenetformer_ros.image) against OpenCV reference conversions.

Every encoding is checked at odd sizes and with padded rows (step > width * bytes per pixel, padding filled with a
value that would show up if it were read), little- and big-endian. References are independent of our decoder:
OpenCV's cvtColor on a packed copy of the same pixels (with OpenCV's own pattern names for Bayer where the build has
them), the colour the Bayer filter actually sampled at each site, and closed-form BT.601 for 4:2:2.
"""

from __future__ import annotations

import array

import cv2
import numpy as np
import pytest

from bisenetformer_ros.image import (
    SUPPORTED_ENCODINGS,
    ImageFormatError,
    check_compressed,
    check_layout,
    compress_output,
    decode_compressed,
    decode_image,
    encode_compressed,
    encode_image,
    encoding_info,
    probe_size,
    rgb_to_bayer,
    rgb_to_yuv422,
)

RNG = np.random.default_rng(1234)
# Odd height and width; 4:2:2 needs an even width so it gets its own size.
H, W = 37, 53
RGB = RNG.integers(0, 256, (H, W, 3), dtype=np.uint8)
RGB_EVEN = RNG.integers(0, 256, (H, 54, 3), dtype=np.uint8)


def _padded(arr_bytes_rows: np.ndarray, pad: int, fill: int = 0xA7) -> tuple[int, bytes]:
    """Append ``pad`` bytes of ``fill`` to every row of a (h, row_bytes) uint8 array."""
    h, row = arr_bytes_rows.shape
    out = np.full((h, row + pad), fill, dtype=np.uint8)
    out[:, :row] = arr_bytes_rows
    return row + pad, out.tobytes()


def _rows(arr: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(arr).view(np.uint8).reshape(arr.shape[0], -1)


@pytest.mark.parametrize("pad", [0, 3, 64])
@pytest.mark.parametrize(
    ("encoding", "reference"),
    [
        ("rgb8", lambda a: a),
        ("bgr8", lambda a: cv2.cvtColor(a, cv2.COLOR_BGR2RGB)),
        ("8UC3", lambda a: cv2.cvtColor(a, cv2.COLOR_BGR2RGB)),
        ("rgba8", lambda a: cv2.cvtColor(a, cv2.COLOR_RGBA2RGB)),
        ("bgra8", lambda a: cv2.cvtColor(a, cv2.COLOR_BGRA2RGB)),
        ("8UC4", lambda a: cv2.cvtColor(a, cv2.COLOR_BGRA2RGB)),
    ],
)
def test_8bit_colour_against_opencv(encoding: str, reference, pad: int) -> None:
    channels = encoding_info(encoding).channels
    raw = RNG.integers(0, 256, (H, W, channels), dtype=np.uint8)  # the buffer as a camera would fill it
    step, data = _padded(_rows(raw), pad)
    out = decode_image(encoding, H, W, step, data)
    assert out.shape == (H, W, 3) and out.dtype == np.uint8
    np.testing.assert_array_equal(out, reference(raw))


@pytest.mark.parametrize("encoding", ["mono8", "8UC1"])
def test_mono8_against_opencv(encoding: str) -> None:
    raw = RNG.integers(0, 256, (H, W), dtype=np.uint8)
    step, data = _padded(raw, 5)
    np.testing.assert_array_equal(decode_image(encoding, H, W, step, data), cv2.cvtColor(raw, cv2.COLOR_GRAY2RGB))


@pytest.mark.parametrize("bigendian", [False, True])
@pytest.mark.parametrize("encoding", ["mono16", "16UC1"])
def test_mono16_endianness_padding_and_scaling(encoding: str, bigendian: bool) -> None:
    values = RNG.integers(0, 65536, (H, W), dtype=np.uint16)
    raw = values.astype(">u2" if bigendian else "<u2")
    step, data = _padded(_rows(raw), 6)
    out = decode_image(encoding, H, W, step, data, bigendian)
    expect = cv2.cvtColor((values >> 8).astype(np.uint8), cv2.COLOR_GRAY2RGB)
    np.testing.assert_array_equal(out, expect)
    # 12-bit data in a 16-bit container: 'minmax' uses the frame's own range.
    twelve = RNG.integers(100, 4000, (H, W), dtype=np.uint16)
    step, data = _padded(_rows(twelve.astype(">u2" if bigendian else "<u2")), 2)
    out = decode_image(encoding, H, W, step, data, bigendian, scaling="minmax")
    ref = cv2.normalize(twelve.astype(np.float32), None, 0, 255, cv2.NORM_MINMAX)
    np.testing.assert_allclose(out[..., 0].astype(float), np.rint(ref), atol=1)
    assert out[..., 0].min() == 0 and out[..., 0].max() == 255


@pytest.mark.parametrize("bigendian", [False, True])
@pytest.mark.parametrize(
    ("encoding", "code"),
    [
        ("rgb16", None),
        ("bgr16", cv2.COLOR_BGR2RGB),
        ("rgba16", cv2.COLOR_RGBA2RGB),
        ("bgra16", cv2.COLOR_BGRA2RGB),
        ("16UC3", cv2.COLOR_BGR2RGB),
    ],
)
def test_16bit_colour(encoding: str, code: int | None, bigendian: bool) -> None:
    channels = encoding_info(encoding).channels
    values = RNG.integers(0, 65536, (H, W, channels), dtype=np.uint16)
    step, data = _padded(_rows(values.astype(">u2" if bigendian else "<u2")), 4)
    out = decode_image(encoding, H, W, step, data, bigendian)
    ref16 = values if code is None else cv2.cvtColor(values, code)
    np.testing.assert_array_equal(out, (ref16 >> 8).astype(np.uint8))


# OpenCV >= 4.x/5 has pattern names that say what is at the top-left pixel; older builds only the legacy ones.
_CV_BAYER_TRUE_NAMES = {p: getattr(cv2, f"COLOR_Bayer{p.upper()}2RGB", None) for p in ("rggb", "bggr", "gbrg", "grbg")}


@pytest.mark.parametrize("size", [(H, W), (36, 52), (3, 3)])
@pytest.mark.parametrize("pattern", ["rggb", "bggr", "gbrg", "grbg"])
def test_bayer_against_opencv_and_filter_sites(pattern: str, size: tuple[int, int]) -> None:
    h, w = size
    rgb = RNG.integers(0, 256, (h, w, 3), dtype=np.uint8)
    mosaic = rgb_to_bayer(rgb, pattern)
    step, data = _padded(mosaic, 7)
    out = decode_image(f"bayer_{pattern}8", h, w, step, data)
    assert out.shape == (h, w, 3)
    # 1) the colour each filter site measured is kept exactly (catches a wrong pattern mapping). OpenCV fills the
    # outermost row/column from their neighbours, so sites are checked one pixel inside the border.
    chan = {"r": 0, "g": 1, "b": 2}
    inner = np.zeros((h, w), bool)
    inner[1:-1, 1:-1] = True
    for k, (dy, dx) in enumerate(((0, 0), (0, 1), (1, 0), (1, 1))):
        site = np.zeros((h, w), bool)
        site[dy::2, dx::2] = True
        sel = site & inner
        np.testing.assert_array_equal(out[..., chan[pattern[k]]][sel], mosaic[sel])
    # 2) identical to OpenCV demosaicing the packed mosaic under OpenCV's own name for this pattern.
    code = _CV_BAYER_TRUE_NAMES[pattern]
    if code is not None:
        np.testing.assert_array_equal(out, cv2.cvtColor(mosaic, code))
    # 3) a uniform colour comes back as that colour.
    flat = np.broadcast_to(np.array([200, 90, 30], np.uint8), (h, w, 3))
    st, d = encode_image(np.ascontiguousarray(flat), f"bayer_{pattern}8")
    np.testing.assert_array_equal(decode_image(f"bayer_{pattern}8", h, w, st, d), flat)


@pytest.mark.parametrize("bigendian", [False, True])
@pytest.mark.parametrize("pattern", ["rggb", "bggr", "gbrg", "grbg"])
def test_bayer16(pattern: str, bigendian: bool) -> None:
    rgb16 = RNG.integers(0, 65536, (H, W, 3), dtype=np.uint16)
    mosaic16 = rgb_to_bayer(rgb16, pattern)
    step, data = _padded(_rows(mosaic16.astype(">u2" if bigendian else "<u2")), 2)
    out = decode_image(f"bayer_{pattern}16", H, W, step, data, bigendian)
    np.testing.assert_array_equal(out, decode_image(f"bayer_{pattern}8", H, W, W, (mosaic16 >> 8).astype(np.uint8)))


@pytest.mark.parametrize(
    ("encoding", "cv_code", "luma_first"),
    [
        ("yuv422", cv2.COLOR_YUV2RGB_UYVY, False),
        ("uyvy", cv2.COLOR_YUV2RGB_UYVY, False),
        ("yuv422_yuy2", cv2.COLOR_YUV2RGB_YUYV, True),
        ("yuyv", cv2.COLOR_YUV2RGB_YUYV, True),
    ],
)
def test_yuv422_against_opencv_and_bt601(encoding: str, cv_code: int, luma_first: bool) -> None:
    h, w = RGB_EVEN.shape[:2]
    packed = RNG.integers(16, 236, (h, w, 2), dtype=np.uint8)  # arbitrary camera data (video range)
    step, data = _padded(packed.reshape(h, -1), 10)
    out = decode_image(encoding, h, w, step, data)
    np.testing.assert_array_equal(out, cv2.cvtColor(packed, cv_code))
    # Closed-form BT.601 video range as the independent reference (OpenCV rounds in fixed point: +-2).
    y = packed[..., 0 if luma_first else 1].astype(float)
    chroma = packed[..., 1 if luma_first else 0].astype(float)
    u = np.repeat(chroma[:, 0::2], 2, axis=1)
    v = np.repeat(chroma[:, 1::2], 2, axis=1)
    r = 1.164 * (y - 16) + 1.596 * (v - 128)
    g = 1.164 * (y - 16) - 0.392 * (u - 128) - 0.813 * (v - 128)
    b = 1.164 * (y - 16) + 2.017 * (u - 128)
    ref = np.clip(np.rint(np.stack([r, g, b], -1)), 0, 255)
    assert np.abs(out.astype(float) - ref).max() <= 2
    # Our encoder is the inverse: a smooth image survives the round trip within chroma-subsampling error.
    smooth = cv2.GaussianBlur(RGB_EVEN, (0, 0), 3)
    st, d = encode_image(smooth, encoding)
    back = decode_image(encoding, h, w, st, d)
    assert np.abs(back.astype(int) - smooth.astype(int)).mean() < 3.0
    yuv = rgb_to_yuv422(smooth, "yuyv" if luma_first else "uyvy")
    np.testing.assert_array_equal(np.frombuffer(d, np.uint8).reshape(h, w, 2), yuv)


@pytest.mark.parametrize("encoding", SUPPORTED_ENCODINGS)
def test_every_encoding_round_trips_with_padding(encoding: str) -> None:
    info = encoding_info(encoding)
    img = RGB_EVEN if info.is_yuv422 else RGB
    h, w = img.shape[:2]
    if info.layout == "mono":
        values = img[..., 1].astype(np.uint16 if info.depth == 2 else np.uint8)
        if info.depth == 2:
            values = values * np.uint16(257)
        step, data = encode_image(values, encoding, step=w * info.bytes_per_pixel + 9, padding_byte=0xEE)
        expect = cv2.cvtColor(img[..., 1].copy(), cv2.COLOR_GRAY2RGB)
    else:
        step, data = encode_image(img, encoding, step=w * info.bytes_per_pixel + 9, padding_byte=0xEE)
        expect = img
    assert len(data) == step * h
    for big in (False, True) if info.depth == 2 else (False,):
        if big:
            arr = values if info.layout == "mono" else img
            step, data = encode_image(arr, encoding, bigendian=True)
        out = decode_image(encoding, h, w, step, bytearray(data), big)
        assert out.shape == (h, w, 3) and out.dtype == np.uint8
        if info.is_bayer or info.is_yuv422:  # lossy by nature: compare against the filter/chroma-limited input
            assert np.abs(out.astype(int) - expect.astype(int)).mean() < 60
        else:
            np.testing.assert_array_equal(out, expect)


def test_zero_copy_for_packed_rgb_and_input_types() -> None:
    step, data = encode_image(RGB, "rgb8")
    buf = bytearray(data)
    out = decode_image("rgb8", H, W, step, buf)
    assert np.shares_memory(out, np.frombuffer(buf, np.uint8))  # a view of the message buffer, no copy
    for container in (bytes(data), memoryview(data), array.array("B", data), np.frombuffer(data, np.uint8)):
        np.testing.assert_array_equal(decode_image("rgb8", H, W, step, container), RGB)
    # Padded rows are also a view (strided), still without a copy.
    step, data = encode_image(RGB, "rgb8", step=W * 3 + 13)
    buf = bytearray(data)
    out = decode_image("rgb8", H, W, step, buf)
    assert np.shares_memory(out, np.frombuffer(buf, np.uint8))
    np.testing.assert_array_equal(out, RGB)


@pytest.mark.parametrize(
    ("args", "cause"),
    [
        (("rgb8", 4, 4, 12, 47), "data_size"),  # one byte short
        (("rgb8", 4, 4, 12, 49), "data_size"),  # one byte too many
        (("rgb8", 4, 4, 11, 44), "bad_step"),
        (("rgb8", 0, 4, 12, 0), "zero_size"),
        (("rgb8", 4, 0, 0, 0), "zero_size"),
        (("rgb8", 100_000, 100_000, 300_000, 0), "too_large"),
        (("rgb9", 4, 4, 12, 48), "unknown_encoding"),
        (("", 4, 4, 12, 48), "unknown_encoding"),
        (("yuv422", 4, 5, 10, 40), "odd_width"),
        (("bayer_rggb8", 1, 8, 8, 8), "too_small"),
        (("bayer_gbrg8", 2, 2, 2, 4), "too_small"),
        (("mono16", 4, 4, 7, 28), "bad_step"),
    ],
)
def test_malformed_headers_are_rejected_with_a_cause(args: tuple, cause: str) -> None:
    enc, h, w, step, n = args
    with pytest.raises(ImageFormatError) as info:
        check_layout(enc, h, w, step, n)
    assert info.value.cause == cause
    assert str(info.value)  # a readable reason
    with pytest.raises(ImageFormatError):
        decode_image(enc, h, w, step, bytes(n))


@pytest.mark.parametrize("fmt", ["jpeg", "png", "rgb8; jpeg compressed bgr8", "bgr8; png compressed bgr8"])
def test_compressed_against_opencv(fmt: str) -> None:
    codec = "png" if "png" in fmt else "jpeg"
    data = encode_compressed(RGB, codec, quality=95)
    assert probe_size(data) == (W, H)
    out = decode_compressed(fmt, data)
    ref = cv2.cvtColor(cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
    np.testing.assert_array_equal(out, ref)
    if codec == "png":
        np.testing.assert_array_equal(out, RGB)  # lossless


def test_compressed_grey_alpha_and_16bit_png() -> None:
    grey = RNG.integers(0, 256, (H, W), dtype=np.uint8)
    _ok, buf = cv2.imencode(".png", grey)
    np.testing.assert_array_equal(decode_compressed("png", buf.tobytes()), cv2.cvtColor(grey, cv2.COLOR_GRAY2RGB))
    bgra = RNG.integers(0, 256, (H, W, 4), dtype=np.uint8)
    _ok, buf = cv2.imencode(".png", bgra)
    np.testing.assert_array_equal(decode_compressed("png", buf.tobytes()), cv2.cvtColor(bgra, cv2.COLOR_BGRA2RGB))
    deep = RNG.integers(0, 65536, (H, W), dtype=np.uint16)
    _ok, buf = cv2.imencode(".png", deep)
    out = decode_compressed("png", buf.tobytes())
    np.testing.assert_array_equal(out[..., 0], (deep >> 8).astype(np.uint8))


def _png_with_size(w: int, h: int) -> bytes:
    import struct
    import zlib

    ihdr = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)
    chunk = b"IHDR" + ihdr
    return b"\x89PNG\r\n\x1a\n" + struct.pack(">I", 13) + chunk + struct.pack(">I", zlib.crc32(chunk)) + b"\x00" * 16


@pytest.mark.parametrize(
    ("fmt", "data", "cause"),
    [
        ("jpeg", b"", "empty_data"),
        ("jpeg", b"\x00\x01garbage" * 10, "corrupt_compressed"),
        ("jpeg", b"\xff\xd8\xff\xe0\x00\x10JFIF\x00" + b"\x00" * 40, "corrupt_compressed"),
        ("png", _png_with_size(60000, 60000), "too_large"),
        ("png", _png_with_size(0, 10), "zero_size"),
        ("png", _png_with_size(16, 16), "corrupt_compressed"),  # header fine, no image data
        ("16UC1; compressedDepth png", b"\x89PNG", "unsupported_format"),
    ],
)
def test_corrupt_compressed_rejected(fmt: str, data: bytes, cause: str) -> None:
    with pytest.raises(ImageFormatError) as info:
        decode_compressed(fmt, data)
    assert info.value.cause == cause


def test_header_check_without_decoding() -> None:
    """The node's callback runs check_compressed on every message: same causes as decoding, bounded work."""
    good = encode_compressed(RGB, "png")
    assert check_compressed("png", good) == ("png", W, H)
    with pytest.raises(ImageFormatError) as info:
        check_compressed("jpeg", _png_with_size(60000, 60000))
    assert info.value.cause == "too_large"
    # Thousands of empty JPEG segments before any SOF: the header walk gives up instead of scanning them all.
    crafted = b"\xff\xd8" + b"\xff\xe1\x00\x02" * 100_000
    with pytest.raises(ImageFormatError) as info:
        check_compressed("jpeg", crafted)
    assert info.value.cause == "corrupt_compressed"


def test_truncated_jpeg_is_rejected_or_decoded_never_crashes() -> None:
    data = encode_compressed(RGB, "jpeg")
    for cut in range(0, len(data), max(1, len(data) // 40)):
        try:
            out = decode_compressed("jpeg", data[:cut])
        except ImageFormatError as exc:
            assert exc.cause in ("empty_data", "corrupt_compressed")
        else:  # libjpeg fills a truncated tail with grey: still a well-formed image of the declared size
            assert out.shape == (H, W, 3)


def test_encode_rejects_bad_arrays() -> None:
    with pytest.raises(ImageFormatError):
        encode_image(np.zeros((4, 4), np.uint8), "rgb8")
    with pytest.raises(ImageFormatError):
        encode_image(np.full((4, 4), 300, np.int32), "mono8")
    with pytest.raises(ImageFormatError):
        encode_image(RGB, "yuv422")  # odd width
    with pytest.raises(ImageFormatError):
        encode_image(RGB, "rgb8", step=10)


def test_compress_output_keeps_labels_lossless_and_names_the_format() -> None:
    rng = np.random.default_rng(4)
    labels16 = rng.integers(0, 300, (21, 33)).astype(np.uint16)
    labels8 = rng.integers(0, 19, (21, 33)).astype(np.uint8)
    rgb = rng.integers(0, 256, (21, 33, 3), dtype=np.uint8)
    for arr, enc in ((labels16, "mono16"), (labels8, "mono8")):
        fmt, data = compress_output(arr, enc, "jpeg")  # labels ignore the lossy codec
        assert fmt == f"{enc}; png compressed {enc}"
        np.testing.assert_array_equal(cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED), arr)
    fmt, data = compress_output(rgb, "rgb8", "png")
    assert fmt == "rgb8; png compressed bgr8"
    np.testing.assert_array_equal(decode_compressed(fmt, data), rgb)  # our own decoder reads it back too
    fmt, data = compress_output(rgb, "rgb8", "jpeg", 90)
    assert fmt == "rgb8; jpeg compressed bgr8" and check_compressed(fmt, data)[0] == "jpeg"
    with pytest.raises(ImageFormatError, match="cannot compress"):
        compress_output(rgb, "bgr8")
