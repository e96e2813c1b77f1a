"""Builds the node's inference pipeline (a :class:`~bisenetformer_ros.inference.Segmenter`) from its parameters.

The parameter names are mapped to a :class:`~bisenetformer_ros.inference.spec.SegmenterSpec` by
:meth:`~bisenetformer_ros.inference.spec.SegmenterSpec.from_params` (ROS-free, shared with every other caller), so
the node builds its pipeline the way the CLI and the bag tools do. The node's ``debug.inference_delay_ms`` and
``debug.fail_every_n`` select the backends' own test-only delay and failure injection
(:attr:`~bisenetformer_ros.inference.base.Backend.inference_delay_ms`, ``fail_every_n``), so overload and
fault-recovery tests exercise the node's real worker and queue with a deliberately slow or failing device, and users
can rehearse a slower target (e.g. a Jetson) on a workstation. No ROS imports here.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import cv2
import numpy as np
import torch

from bisenetformer_ros.inference import Segmenter, SegmenterSpec
from bisenetformer_ros.model.network_size import NetworkSize
from bisenetformer_ros.tracking import TrackerConfig


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
    if int(params["num_threads"]) > 0:
        torch.set_num_threads(int(params["num_threads"]))
    return Segmenter.from_spec(SegmenterSpec.from_params(params, network_size))
