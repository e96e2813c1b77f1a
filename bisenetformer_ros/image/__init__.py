"""Camera image conversion without ROS: sensor_msgs/Image and CompressedImage fields <-> numpy arrays.

Used by the node (``bisenetformer_ros.ros``) and by the offline bag tools, so both read camera data the same way.
"""

from bisenetformer_ros.image.compressed import (
    check_compressed,
    compress_output,
    decode_compressed,
    encode_compressed,
    probe_size,
)
from bisenetformer_ros.image.convert import (
    DEFAULT_MAX_PIXELS,
    SCALING_MODES,
    ImageFormatError,
    check_layout,
    decode_image,
    encode_image,
    pack_image,
    rgb_to_bayer,
    rgb_to_yuv422,
)
from bisenetformer_ros.image.encodings import (
    ENCODINGS,
    SUPPORTED_COMPRESSED_FORMATS,
    SUPPORTED_ENCODINGS,
    EncodingInfo,
    encoding_info,
)

__all__ = [
    "DEFAULT_MAX_PIXELS",
    "ENCODINGS",
    "SCALING_MODES",
    "SUPPORTED_COMPRESSED_FORMATS",
    "SUPPORTED_ENCODINGS",
    "EncodingInfo",
    "ImageFormatError",
    "check_compressed",
    "check_layout",
    "compress_output",
    "decode_compressed",
    "decode_image",
    "encode_compressed",
    "encode_image",
    "encoding_info",
    "pack_image",
    "probe_size",
    "rgb_to_bayer",
    "rgb_to_yuv422",
]
