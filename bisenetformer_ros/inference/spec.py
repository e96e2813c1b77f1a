"""One description of "which segmenter to build": :class:`SegmenterSpec`.

The node's parameters, the CLI options and ``Segmenter.from_model`` keywords all name the same handful of choices
(model, backend, device, precision, network input size, batch, test-only delay and failures). Each caller used to
turn its own spelling into backend options and pipeline arguments, with small differences (which options a
TensorRT engine's profile is derived from, for instance). They now fill a spec and hand it to
:meth:`~bisenetformer_ros.inference.segmenter.Segmenter.from_spec`, the one place that derives the rest.

:meth:`SegmenterSpec.from_params` maps the node's parameter names (``bisenetformer_ros.ros.parameters``) to a spec
without any ROS import, so it can be tested without a node.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bisenetformer_ros.backend_choice import DEFAULT_BACKEND
from bisenetformer_ros.data.classes import ClassTable
from bisenetformer_ros.model.postprocess import PostprocessConfig

if TYPE_CHECKING:
    import torch

    from bisenetformer_ros.model.network_size import NetworkSize


@dataclass(frozen=True)
class SegmenterSpec:
    """Everything that decides which segmenter is built.

    ``model``: a ``.pt`` / ``.onnx`` / engine file, a published model's name, or None for the embedded default.
    ``input_size``: the network input (short side, ``(height, width)``, or None = each image's own size); callers
    resolve "the size the model file records" first (:mod:`bisenetformer_ros.model.network_size`).
    ``max_batch``: most frames per network call. ``class_table``: the label space the caller expects (a model for
    another one is refused); None = the model's own. ``postprocess``/``mask_order``: post-processing settings
    (``mask_order`` overrides the model file's order, for experiments only).
    ``inference_delay_ms``/``fail_every_n``: test-only, a deliberately slow or failing backend (load and
    fault-recovery tests; see :attr:`~bisenetformer_ros.inference.base.Backend.inference_delay_ms`).
    ``backend_options``: backend-specific keywords (``compile``, ``channels_last``, ``cache_dir``, ``profile_hw``,
    ``max_batch_size``, ``calibration_images``, ...); unknown ones are refused by the backend.
    """

    model: str | Path | None = None
    backend: str = DEFAULT_BACKEND
    device: str | torch.device = "auto"
    precision: str = "fp32"
    input_size: int | tuple[int, int] | None = None
    max_batch: int | None = None
    class_table: ClassTable | None = None
    postprocess: PostprocessConfig | None = None
    mask_order: str | None = None
    inference_delay_ms: float = 0.0
    fail_every_n: int = 0
    backend_options: Mapping[str, Any] = field(default_factory=dict)

    def replace(self, **changes: Any) -> SegmenterSpec:
        return dataclasses.replace(self, **changes)

    def backend_kwargs(self) -> dict[str, Any]:
        """Keywords of :func:`~bisenetformer_ros.inference.factory.create_backend` beyond name and model.

        A TensorRT engine's optimisation profile must cover what the pipeline will send it: a fixed ``input_size``
        becomes its profile and ``max_batch`` its largest batch, unless ``backend_options`` say otherwise. With
        ``auto`` they are passed too, and dropped by the factory if ``auto`` picks a backend without profiles.
        """
        options = dict(self.backend_options)
        if _may_be(self.backend, "tensorrt"):
            if isinstance(self.input_size, tuple):
                options.setdefault("profile_hw", [self.input_size])
            if self.max_batch is not None:
                options.setdefault("max_batch_size", self.max_batch)
        if self.inference_delay_ms:
            options["inference_delay_ms"] = self.inference_delay_ms
        if self.fail_every_n:
            options["fail_every_n"] = self.fail_every_n
        return {"device": self.device, "precision": self.precision, "class_table": self.class_table, **options}

    @classmethod
    def from_params(cls, params: Mapping[str, Any], network_size: NetworkSize | None = None) -> SegmenterSpec:
        """The spec of the node's parameters (names of ``bisenetformer_ros.ros.parameters``).

        ``network_size``: the already resolved network size (the node resolves it once and reports it); None
        resolves it here from ``input_height``/``input_width``/``input_short_side`` and the model file.
        ``torch_compile`` applies to the torch backend, ``engine_cache_dir`` to TensorRT (both also to ``auto``);
        ``debug.*`` are the test-only delay and failure injection.
        """
        from bisenetformer_ros.data.classes import get_class_table

        backend = str(params["backend"])
        options: dict[str, Any] = {}
        if _may_be(backend, "torch") and params.get("torch_compile", False):
            options["compile"] = True  # with auto, this selects PyTorch (backend_choice)
        if _may_be(backend, "tensorrt") and params.get("engine_cache_dir", ""):
            options["cache_dir"] = str(params["engine_cache_dir"])
        if params["precision"] == "int8" and params.get("calibration_images", ""):
            options["calibration_images"] = str(params["calibration_images"])
        expected = params.get("expected_classes", "")
        class_table = get_class_table(expected) if expected else None  # a wrong name fails before the model is read
        return cls(
            model=params["model"] or None,
            backend=backend,
            device=params["device"],
            precision=params["precision"],
            input_size=(network_size or network_size_from(params)).input_size,
            max_batch=int(params["max_batch_size"]),
            class_table=class_table,
            postprocess=postprocess_config_from(params),
            inference_delay_ms=float(params.get("debug.inference_delay_ms", 0.0)),
            fail_every_n=int(params.get("debug.fail_every_n", 0)),
            backend_options=options,
        )


def _may_be(name: str, backend: str) -> bool:
    """Whether backend ``name`` is ``backend`` (or an alias of it) or ``auto``, which may pick it."""
    from bisenetformer_ros.registry import BACKENDS

    if str(name).strip().lower() == DEFAULT_BACKEND:
        return True
    return name in BACKENDS and BACKENDS.canonical(name) == backend


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
    from bisenetformer_ros.model.network_size import model_file_network_size

    return model_file_network_size(params["model"] or None, input_size_from(params))


def postprocess_config_from(params: Mapping[str, Any]) -> PostprocessConfig:
    """Post-processing thresholds of the node's parameters."""
    return PostprocessConfig(
        object_mask_threshold=float(params["object_mask_threshold"]),
        overlap_threshold=float(params["overlap_threshold"]),
        mask_threshold=float(params["mask_threshold"]),
        label_stride=int(params.get("label_stride", 1)),
    )
