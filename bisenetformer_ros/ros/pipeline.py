"""Builds the node's inference pipeline (a :class:`~bisenetformer_ros.inference.Segmenter`) from its parameters.

Also home of :class:`DelayedBackend`, a real :class:`~bisenetformer_ros.inference.Backend` that wraps another one
and adds a fixed delay and/or injected failures. The node's ``debug.inference_delay_ms`` and ``debug.fail_every_n``
parameters select it, so overload and fault-recovery tests exercise the node's real worker and queue with a
deliberately slow or failing device, and users can rehearse a slower target (e.g. a Jetson) on a workstation.
No ROS imports here.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

import cv2
import numpy as np
import torch

from bisenetformer_ros.inference import Backend, BackendInfo, Segmenter, create_backend
from bisenetformer_ros.model.network_size import NetworkSize, model_file_network_size
from bisenetformer_ros.model.postprocess import PostprocessConfig
from bisenetformer_ros.tracking import TrackerConfig


class InjectedFailure(RuntimeError):
    """Raised by :class:`DelayedBackend` on every n-th call (``debug.fail_every_n``)."""


class DelayedBackend(Backend):
    """Forwards to ``inner`` and sleeps ``delay_s`` after each call; every ``fail_every``-th call raises."""

    NAME = "delayed"

    def __init__(self, inner: Backend, delay_s: float = 0.0, fail_every: int = 0) -> None:
        super().__init__(inner.model_path, device=inner.device, precision=inner.requested_precision)
        self.inner = inner
        self.delay_s = float(delay_s)
        self.fail_every = int(fail_every)
        self.calls = 0
        self.pin_memory = inner.pin_memory

    @property
    def input_device(self) -> torch.device:
        return self.inner.input_device

    @property
    def input_dtype(self) -> torch.dtype:
        return self.inner.input_dtype

    def _load(self) -> BackendInfo:
        info = self.inner.info
        self.class_table = self.inner.class_table
        self.model_config = dict(self.inner.model_config)
        details = dict(info.details)
        details.update({"debug_delay_ms": self.delay_s * 1000.0, "debug_fail_every_n": self.fail_every})
        return BackendInfo(info.name, info.device, info.precision, info.max_batch, info.min_hw, info.max_hw, details)

    def _infer(self, batch: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        self.calls += 1
        out = self.inner.infer(batch)
        self.inner.synchronize()
        if self.delay_s > 0:
            time.sleep(self.delay_s)
        if self.fail_every > 0 and self.calls % self.fail_every == 0:
            raise InjectedFailure(
                f"injected failure on network call {self.calls} (debug.fail_every_n={self.fail_every})"
            )
        return out

    def synchronize(self) -> None:
        self.inner.synchronize()

    def _close(self) -> None:
        self.inner.close()


def resize_to_network(seg: Segmenter, rgb: np.ndarray) -> np.ndarray:
    """The camera frame at the network input size (``output_resolution: network``), so that every output, the
    overlay included, is produced at that size. Area averaging from a 2x reduction on (bilinear would alias there),
    bilinear below it, where it is ~8x faster and equivalent.
    """
    h, w = rgb.shape[:2]
    th, tw = seg.preprocessor.target_size(h, w)
    if (th, tw) == (h, w):
        return rgb
    factor = max(h / th, w / tw)
    interp = cv2.INTER_AREA if factor >= 2.0 else cv2.INTER_LINEAR
    return cv2.resize(np.ascontiguousarray(rgb), (tw, th), interpolation=interp)


def input_size_from(params: Mapping[str, Any]) -> int | tuple[int, int] | None:
    """Preprocessor ``input_size`` from input_height/input_width/input_short_side (0 = unset)."""
    h, w, short = int(params["input_height"]), int(params["input_width"]), int(params["input_short_side"])
    if h > 0 and w > 0:
        return (h, w)
    if short > 0:
        return short
    return None


def network_size_from(params: Mapping[str, Any]) -> NetworkSize:
    """The network input size for the node's parameters: input_height/input_width/input_short_side when set, else
    the size the model file records (the rule of :mod:`bisenetformer_ros.model.network_size`, shared with
    ``bag evaluate``, ``predict`` and the demo), else each camera frame's own size."""
    return model_file_network_size(params["model"] or None, input_size_from(params))


def postprocess_config_from(params: Mapping[str, Any]) -> PostprocessConfig:
    return PostprocessConfig(
        object_mask_threshold=float(params["object_mask_threshold"]),
        overlap_threshold=float(params["overlap_threshold"]),
        mask_threshold=float(params["mask_threshold"]),
        label_stride=int(params.get("label_stride", 1)),
    )


def tracker_config_from(params: Mapping[str, Any]) -> TrackerConfig:
    """The per-camera tracker's settings from the ``tracking.*`` parameters."""
    return TrackerConfig(
        min_iou=float(params["tracking.min_iou"]),
        max_lost_frames=int(params["tracking.max_lost_frames"]),
        min_age=int(params["tracking.min_age"]),
        centroid_gate=float(params["tracking.centroid_gate"]),
    )


def build_segmenter(params: Mapping[str, Any], network_size: NetworkSize | None = None) -> Segmenter:
    """Load the model on the configured backend/device (raises with cause + fix on any problem)."""
    from bisenetformer_ros.data.classes import get_class_table

    if int(params["num_threads"]) > 0:
        torch.set_num_threads(int(params["num_threads"]))
    options: dict[str, Any] = {}
    name = str(params["backend"])
    if name in ("torch", "auto") and params["torch_compile"]:
        options["compile"] = True
    if name in ("tensorrt", "auto") and params["engine_cache_dir"]:
        options["cache_dir"] = str(params["engine_cache_dir"])
    expected = get_class_table(params["expected_classes"]) if params["expected_classes"] else None
    input_size = (network_size or network_size_from(params)).input_size
    if name in ("tensorrt", "auto") and isinstance(input_size, tuple):
        options["profile_hw"] = [input_size]
    backend = create_backend(
        name,
        params["model"] or None,
        device=params["device"],
        precision=params["precision"],
        class_table=expected,
        **options,
    )
    try:
        delay = float(params["debug.inference_delay_ms"]) / 1000.0
        fail_every = int(params["debug.fail_every_n"])
        if delay > 0 or fail_every > 0:
            backend = DelayedBackend(backend, delay, fail_every)
            backend.load()
        return Segmenter(
            backend,
            class_table=expected,
            postprocess_config=postprocess_config_from(params),
            max_batch=int(params["max_batch_size"]),
            input_size=input_size,
        )
    except BaseException:
        backend.close()
        raise
