"""Inference: one :class:`Backend` interface (PyTorch, ONNX Runtime, TensorRT), the shared :class:`Segmenter`
pipeline, model export and the engine cache. ROS-free.

Typical use::

    from bisenetformer_ros.inference import Segmenter
    seg = Segmenter.from_model(None, backend="torch", device="auto")   # embedded default model
    [result] = seg.run([rgb_image])
    result.output.semantic, result.output.panoptic, result.timings
"""

from bisenetformer_ros.inference.base import (
    PRECISIONS,
    Backend,
    BackendInfo,
    ClassTableMismatchError,
    InjectedFailure,
    InputShapeError,
    UnsupportedPrecisionError,
    resolve_device,
)
from bisenetformer_ros.inference.factory import BACKENDS, available_backends, create_backend
from bisenetformer_ros.inference.segmenter import STAGES, FrameResult, Segmenter
from bisenetformer_ros.inference.spec import SegmenterSpec

__all__ = [
    "BACKENDS",
    "PRECISIONS",
    "STAGES",
    "Backend",
    "BackendInfo",
    "ClassTableMismatchError",
    "FrameResult",
    "InjectedFailure",
    "InputShapeError",
    "Segmenter",
    "SegmenterSpec",
    "UnsupportedPrecisionError",
    "available_backends",
    "create_backend",
    "resolve_device",
]
