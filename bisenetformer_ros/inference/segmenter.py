"""The inference pipeline every caller uses: images -> pre-process -> backend -> post-process -> per-frame results.

The node, the rosbag evaluator, the demo and the benchmark all go through :class:`Segmenter`, so they run the same
code whatever backend is chosen; only :func:`~bisenetformer_ros.inference.factory.create_backend` differs.

Timings: each :class:`FrameResult` carries the wall time of the three stages of the *batch* the frame was in (every
frame of a batch waits for the whole batch). On CUDA the device is synchronised at stage boundaries when
``sync_timings`` is on, so the figures are real stage times rather than kernel-launch times.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from bisenetformer_ros.data.classes import ClassTable
from bisenetformer_ros.inference.base import Backend, check_class_table
from bisenetformer_ros.inference.spec import SegmenterSpec
from bisenetformer_ros.model import native
from bisenetformer_ros.model.postprocess import PostprocessConfig, SegmentationOutput, postprocess_batch
from bisenetformer_ros.model.preprocess import Preprocessor

STAGES: tuple[str, ...] = ("preprocess", "inference", "postprocess")


@dataclass
class FrameResult:
    """One image's outputs (at its original size) and the stage times in seconds of the batch it ran in.

    ``batch_size`` is the size of that network call and ``call_index`` its position within one :meth:`Segmenter.run`
    (a long list is split into several calls), so per-call totals can be recovered from per-frame results.
    """

    output: SegmentationOutput
    timings: dict[str, float] = field(default_factory=dict)
    batch_size: int = 1
    call_index: int = 0


class PinnedUploader:
    """Copies equally sized HxWx3 uint8 frames to the GPU through a reused pinned host buffer.

    Pinned (page-locked) memory lets the copy run asynchronously via DMA; pageable numpy memory forces a staging
    copy inside the driver. The buffer is reused across calls, so an event guards against overwriting it while the
    previous upload may still be in flight.
    """

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self._buffer: torch.Tensor | None = None
        self._event: torch.cuda.Event | None = None

    def __call__(self, images: Sequence[np.ndarray]) -> torch.Tensor | None:
        """``[B,3,H,W]`` uint8 CUDA tensor, or ``None`` when the frames differ in size (caller uploads per frame)."""
        first = images[0]
        if (
            not all(
                isinstance(im, np.ndarray) and im.dtype == np.uint8 and im.ndim == 3 and im.shape == first.shape
                for im in images
            )
            or first.shape[2] != 3
        ):
            return None
        shape = (len(images), *first.shape)
        if self._buffer is None or tuple(self._buffer.shape) != shape:
            self._buffer = torch.empty(shape, dtype=torch.uint8, pin_memory=True)
        elif self._event is not None:
            self._event.synchronize()  # the previous upload from this buffer has finished
        host = self._buffer.numpy()
        for i, im in enumerate(images):
            host[i] = im
        gpu = self._buffer.to(self.device, non_blocking=True)
        self._event = torch.cuda.Event()
        self._event.record()
        return gpu.permute(0, 3, 1, 2)


class Segmenter:
    """Batches images through a backend with the shared pre- and post-processing.

    ``class_table`` defaults to the one stored with the model; when given it must match the model's (a model for
    another label space is refused with :class:`~bisenetformer_ros.inference.base.ClassTableMismatchError`).
    ``preprocessor`` defaults to one on the backend's input device and dtype with ``input_size`` and the model file's
    pixel normalisation. The post-processing order always comes from the model file (``mask_order`` overrides it for
    experiments such as ``bisenetformer choose-mask-order``): a reference model's labels only equal the reference's
    in the reference's order.
    ``max_batch`` caps how many frames go through the network at once (also capped by the backend's own limit).
    """

    def __init__(
        self,
        backend: Backend,
        class_table: ClassTable | None = None,
        preprocessor: Preprocessor | None = None,
        postprocess_config: PostprocessConfig | None = None,
        max_batch: int | None = None,
        input_size: int | tuple[int, int] | None = None,
        sync_timings: bool = True,
        mask_order: str | None = None,
    ) -> None:
        backend.load()
        if backend.class_table is None:  # pragma: no cover - Backend.load guarantees it
            raise RuntimeError("backend has no class table")
        if class_table is not None:
            check_class_table(backend.class_table, class_table, f"model '{backend.model_path}'")
        self.backend = backend
        self.class_table: ClassTable = class_table or backend.class_table
        if preprocessor is not None and input_size is not None:
            raise ValueError("give either a preprocessor or an input_size, not both")
        defaults = backend.inference_defaults
        self.preprocessor = preprocessor or Preprocessor(
            input_size=input_size,
            device=backend.input_device,
            dtype=backend.input_dtype,
            mean=defaults.pixel_mean,
            std=defaults.pixel_std,
        )
        self.postprocess_config = dataclasses.replace(
            postprocess_config or PostprocessConfig(), mask_order=mask_order or defaults.mask_order
        )
        if max_batch is not None and max_batch < 1:
            raise ValueError(f"max_batch must be >= 1, got {max_batch}")
        limits = [x for x in (max_batch, backend.info.max_batch) if x is not None]
        self.max_batch: int | None = min(limits) if limits else None
        self.sync_timings = sync_timings
        use_pinned = backend.pin_memory and backend.input_device.type == "cuda"
        self._uploader = PinnedUploader(backend.input_device) if use_pinned else None

    @classmethod
    def from_spec(cls, spec: SegmenterSpec) -> Segmenter:
        """Build backend + pipeline as ``spec`` describes (the one construction path of the node, the CLI and
        :meth:`from_model`)."""
        from bisenetformer_ros.inference.factory import create_backend

        be = create_backend(spec.backend, spec.model, **spec.backend_kwargs())
        try:
            return cls(
                be,
                class_table=spec.class_table,
                postprocess_config=spec.postprocess,
                max_batch=spec.max_batch,
                input_size=spec.input_size,
                mask_order=spec.mask_order,
            )
        except BaseException:
            be.close()
            raise

    @classmethod
    def from_model(
        cls,
        model_path: str | Path | None = None,
        backend: str = "auto",
        device: str | torch.device = "auto",
        precision: str = "fp32",
        input_size: int | tuple[int, int] | None = None,
        postprocess_config: PostprocessConfig | None = None,
        class_table: ClassTable | None = None,
        max_batch: int | None = None,
        postprocess: PostprocessConfig | None = None,
        mask_order: str | None = None,
        **backend_options: Any,
    ) -> Segmenter:
        """Build backend + pipeline from a model file (``None`` = the embedded default model): a
        :class:`~bisenetformer_ros.inference.spec.SegmenterSpec` of these keywords, see :meth:`from_spec`.

        ``backend_options`` go to the backend (e.g. ``channels_last``, ``compile`` for torch; ``cache_dir``,
        ``max_batch_size``, ``calibration_images`` for TensorRT; ``inference_delay_ms`` and ``fail_every_n`` for
        any backend, load-test tools). For TensorRT a fixed ``input_size`` also becomes the engine's optimisation
        profile and ``max_batch`` its largest batch (unless ``profile_hw`` / ``max_batch_size`` are given).
        ``postprocess`` is an alias of ``postprocess_config``. ``mask_order`` overrides the model file's
        post-processing order (experiments only; see :class:`Segmenter`).
        """
        if postprocess is not None:
            if postprocess_config is not None:
                raise ValueError("give postprocess or postprocess_config (the same thing), not both")
            postprocess_config = postprocess
        delay_ms = backend_options.pop("inference_delay_ms", 0.0) or 0.0
        fail_every_n = backend_options.pop("fail_every_n", 0) or 0
        spec = SegmenterSpec(
            model=model_path,
            backend=backend,
            device=device,
            precision=precision,
            input_size=input_size,
            max_batch=max_batch,
            class_table=class_table,
            postprocess=postprocess_config,
            mask_order=mask_order,
            inference_delay_ms=delay_ms,
            fail_every_n=fail_every_n,
            backend_options=backend_options,
        )
        return cls.from_spec(spec)

    # ------------------------------------------------------------------ running
    def run(self, images: Sequence[np.ndarray], tasks: Sequence[str] = ("semantic", "panoptic")) -> list[FrameResult]:
        """Segment RGB uint8 HxWx3 images; results keep the input order and each image's original size."""
        if isinstance(images, np.ndarray):
            raise ValueError("pass a list of HxWx3 uint8 RGB arrays, not a single array")
        images = list(images)
        if not images:
            return []
        step = self.max_batch or len(images)
        results: list[FrameResult] = []
        for call, start in enumerate(range(0, len(images), step)):
            results.extend(self._run_batch(images[start : start + step], tuple(tasks), call))
        return results

    def _sync(self) -> None:
        if self.sync_timings:
            self.backend.synchronize()

    def _run_batch(self, images: list[np.ndarray], tasks: tuple[str, ...], call: int = 0) -> list[FrameResult]:
        t0 = time.perf_counter()
        staged: Any = None
        if self._uploader is not None:
            staged = self._uploader(images)
        batch, metas = self.preprocessor(staged if staged is not None else images)
        if batch.device != self.backend.input_device or batch.dtype != self.backend.input_dtype:
            batch = batch.to(device=self.backend.input_device, dtype=self.backend.input_dtype)
        self._sync()
        t1 = time.perf_counter()
        logits, masks = self.backend.infer(batch)
        self._sync()
        t2 = time.perf_counter()
        outputs = postprocess_batch(
            logits, masks, metas, tasks=tasks, config=self.postprocess_config, class_table=self.class_table
        )
        t3 = time.perf_counter()
        timings = {"preprocess": t1 - t0, "inference": t2 - t1, "postprocess": t3 - t2}
        return [FrameResult(output=o, timings=dict(timings), batch_size=len(images), call_index=call) for o in outputs]

    def warmup(self, height: int = 512, width: int = 512, batch: int = 1, iterations: int = 2) -> None:
        """Run the whole pipeline on blank frames so that first-call costs stay out of real frames' latency (on the
        CPU including the merge's native kernels, built once per machine: a few seconds)."""
        if self.backend.input_device.type == "cpu":
            native.library()  # blank frames may take the dense merge, which does not load them
        frames = [np.zeros((height, width, 3), dtype=np.uint8) for _ in range(batch)]
        for _ in range(max(1, iterations)):
            self.run(frames)

    # ------------------------------------------------------------------ lifecycle
    def close(self) -> None:
        self.backend.close()

    def __enter__(self) -> Segmenter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<Segmenter {self.backend.info.describe()} classes={self.class_table.dataset}>"
