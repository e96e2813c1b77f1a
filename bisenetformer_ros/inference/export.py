"""ONNX export with the model's class table and configuration embedded, plus the cached export used by backends.

Exporter choice (torch 2.13): the TorchScript-based exporter (``dynamo=False``) produces a clean opset-17 graph with
symbolic batch/height/width in ~3 s for STDC2; the dynamo exporter also works but only emits opset >= 18 (onnx's
version converter fails to go down to 17, which older TensorRT/JetPack releases need) and takes ~40 s. We therefore
use ``dynamo=False`` and simplify with onnxslim (constant folding, shape-op elimination: about half the nodes go).

Metadata (``metadata_props``, read back by ONNX Runtime via ``custom_metadata_map`` and by :func:`read_onnx_metadata`):

* ``bisenetformer.format`` = ``bisenetformer-onnx/1``
* ``bisenetformer.class_table`` = ClassTable JSON (names, colours, thing flags, ignore label)
* ``bisenetformer.model_config`` = ModelConfig JSON
* ``bisenetformer.inference`` = InferenceDefaults JSON (network size, normalisation, post-processing order); exports
  without it (older ones) get the defaults
* ``bisenetformer.source_sha256`` = SHA-256 of the ``.pt`` file it came from
* ``bisenetformer.version`` = package version that exported it
"""

from __future__ import annotations

import json
import logging
import os
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bisenetformer_ros.atomic_io import atomic_path
from bisenetformer_ros.data.classes import ClassTable
from bisenetformer_ros.inference.engine_cache import default_cache_dir, file_lock, file_sha256
from bisenetformer_ros.model.inference_defaults import InferenceDefaults

LOG = logging.getLogger("bisenetformer_ros.inference.export")

ONNX_FORMAT = "bisenetformer-onnx/1"
META_FORMAT = "bisenetformer.format"
META_CLASS_TABLE = "bisenetformer.class_table"
META_MODEL_CONFIG = "bisenetformer.model_config"
META_INFERENCE = "bisenetformer.inference"
META_SOURCE = "bisenetformer.source_sha256"
META_VERSION = "bisenetformer.version"

INPUT_NAME = "images"
OUTPUT_NAMES: tuple[str, str] = ("pred_logits", "pred_masks")
DEFAULT_OPSET = 17


@dataclass
class OnnxModelInfo:
    """What an exported ONNX file says about itself."""

    path: Path
    class_table: ClassTable
    model_config: dict[str, Any]
    source_sha256: str | None
    opset: int
    metadata: dict[str, str] = field(default_factory=dict)
    inference: InferenceDefaults = field(default_factory=InferenceDefaults)


@dataclass
class OnnxExportReport:
    path: Path
    opset: int
    seconds: float
    nodes_exported: int
    nodes_final: int
    simplified: bool
    sha256: str
    max_abs_diff: float | None = None  # ONNX Runtime vs PyTorch on a check input of another size, when verified

    def to_dict(self) -> dict[str, Any]:
        d = dict(self.__dict__)
        d["path"] = str(self.path)
        return d


def _require_onnx() -> Any:
    try:
        import onnx
    except ImportError:
        raise RuntimeError("ONNX export needs the 'onnx' package: pip install onnx onnxslim") from None
    return onnx


def export_onnx(
    model_path: str | os.PathLike,
    output_path: str | os.PathLike,
    opset: int = DEFAULT_OPSET,
    simplify: bool = True,
    trace_hw: tuple[int, int] = (256, 320),
    verify: bool = True,
) -> OnnxExportReport:
    """Export a ``.pt`` model file to ONNX with dynamic batch, height and width.

    ``trace_hw`` is the example input size used for tracing (any multiple of 32; non-square so that a height/width
    mix-up would show). With ``verify``, ONNX Runtime (when installed) runs the file at a *different* batch and size
    and the largest absolute difference to PyTorch is reported — proof that the shapes really are dynamic.
    """
    import torch

    from bisenetformer_ros import __version__
    from bisenetformer_ros.model.bisenetformer import InferenceWrapper
    from bisenetformer_ros.model.checkpoint import load_model

    onnx = _require_onnx()
    if opset < 17:
        raise ValueError(f"opset {opset} is too old: LayerNormalization needs opset >= 17")
    if trace_hw[0] % 32 or trace_hw[1] % 32:
        raise ValueError(f"trace size {trace_hw} must be multiples of 32")
    model_path = Path(model_path)
    output_path = Path(output_path)
    t0 = time.perf_counter()
    loaded = load_model(model_path, map_location="cpu")
    wrapper = InferenceWrapper(loaded.model).float().eval()
    example = torch.randn(1, 3, *trace_hw)
    with atomic_path(output_path, suffix=".tmp.onnx") as tmp:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")  # deprecation notice of the TorchScript exporter; tracer warnings
            torch.onnx.export(
                wrapper,
                (example,),
                str(tmp),
                opset_version=opset,
                dynamo=False,
                do_constant_folding=True,
                input_names=[INPUT_NAME],
                output_names=list(OUTPUT_NAMES),
                dynamic_axes={
                    INPUT_NAME: {0: "batch", 2: "height", 3: "width"},
                    OUTPUT_NAMES[0]: {0: "batch"},
                    OUTPUT_NAMES[1]: {0: "batch", 2: "mask_height", 3: "mask_width"},
                },
            )
        proto = onnx.load(str(tmp))
        nodes_exported = len(proto.graph.node)
        simplified = False
        if simplify:
            try:
                import onnxslim
            except ImportError:
                LOG.warning("onnxslim is not installed; the ONNX graph is left unsimplified (pip install onnxslim)")
            else:
                proto = onnxslim.slim(proto)
                simplified = True
        meta = {
            META_FORMAT: ONNX_FORMAT,
            META_CLASS_TABLE: loaded.class_table.to_json(),
            META_MODEL_CONFIG: json.dumps(loaded.config.to_dict(), sort_keys=True),
            META_INFERENCE: json.dumps(loaded.inference.to_dict(), sort_keys=True),
            META_SOURCE: file_sha256(model_path),
            META_VERSION: __version__,
        }
        del proto.metadata_props[:]
        for k, v in meta.items():
            entry = proto.metadata_props.add()
            entry.key, entry.value = k, v
        proto.producer_name = "bisenetformer_ros"
        proto.producer_version = __version__
        onnx.checker.check_model(proto)
        _check_dynamic_input(proto)
        onnx.save(proto, str(tmp))
        max_diff = _verify_against_torch(tmp, wrapper, trace_hw) if verify else None
    report = OnnxExportReport(
        path=output_path,
        opset=opset,
        seconds=time.perf_counter() - t0,
        nodes_exported=nodes_exported,
        nodes_final=len(proto.graph.node),
        simplified=simplified,
        sha256=file_sha256(output_path),
        max_abs_diff=max_diff,
    )
    LOG.info(
        "exported %s -> %s (opset %d, %d -> %d nodes, %.1f s)",
        model_path,
        output_path,
        opset,
        nodes_exported,
        report.nodes_final,
        report.seconds,
    )
    return report


def _check_dynamic_input(proto: Any) -> None:
    """The simplifier must not have frozen the symbolic batch/height/width of the input."""
    (inp,) = [i for i in proto.graph.input if i.name == INPUT_NAME]
    dims = inp.type.tensor_type.shape.dim
    frozen = [i for i in (0, 2, 3) if dims[i].HasField("dim_value")]
    if frozen:
        raise RuntimeError(f"ONNX export produced a static input shape in dims {frozen}; this is a bug in the exporter")


def _verify_against_torch(path: Path, wrapper: Any, trace_hw: tuple[int, int]) -> float | None:
    """Largest |difference| of both outputs, ONNX Runtime vs PyTorch, at batch 2 and a size unlike the trace."""
    try:
        import onnxruntime as ort
    except ImportError:
        return None
    import numpy as np
    import torch

    h, w = trace_hw[0] + 64, max(32, trace_hw[1] - 96)
    x = torch.randn(2, 3, h, w, generator=torch.Generator().manual_seed(0))
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = max(1, torch.get_num_threads())
    sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    outs = sess.run(list(OUTPUT_NAMES), {INPUT_NAME: x.numpy()})
    with torch.no_grad():
        refs = wrapper(x)
    return float(max(np.abs(o - r.numpy()).max() for o, r in zip(outs, refs, strict=True)))


def read_onnx_metadata(path: str | os.PathLike) -> OnnxModelInfo:
    """Class table and model config stored in an exported file; clear errors for non-ONNX or foreign ONNX files."""
    onnx = _require_onnx()
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"ONNX file '{path}' does not exist; create it with 'bisenetformer export --format onnx'"
        )
    try:
        proto = onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # DecodeError and friends
        raise RuntimeError(f"'{path}' is not a readable ONNX file ({type(exc).__name__}: {exc})") from None
    meta = {p.key: p.value for p in proto.metadata_props}
    return metadata_to_info(path, meta, opset={o.domain: o.version for o in proto.opset_import}.get("", 0))


def metadata_to_info(path: Path, meta: dict[str, str], opset: int = 0) -> OnnxModelInfo:
    """Parse the ``bisenetformer.*`` metadata (also used with ONNX Runtime's ``custom_metadata_map``)."""
    if meta.get(META_FORMAT) != ONNX_FORMAT:
        raise RuntimeError(
            f"'{path}' has no bisenetformer metadata (format {meta.get(META_FORMAT)!r}); it was not exported by "
            f"bisenetformer, so its class table is unknown. Export the .pt model with 'bisenetformer export --format "
            f"onnx'"
        )
    try:
        table = ClassTable.from_json(meta[META_CLASS_TABLE])
        config = json.loads(meta[META_MODEL_CONFIG])
        inference = InferenceDefaults.from_dict(json.loads(meta[META_INFERENCE]) if META_INFERENCE in meta else None)
    except (KeyError, ValueError, TypeError) as exc:
        raise RuntimeError(f"'{path}' has corrupt bisenetformer metadata ({exc}); re-export the model") from None
    return OnnxModelInfo(
        path=path,
        class_table=table,
        model_config=config,
        source_sha256=meta.get(META_SOURCE),
        opset=opset,
        metadata=dict(meta),
        inference=inference,
    )


def ensure_onnx(
    model_path: str | os.PathLike, cache_dir: str | os.PathLike | None = None, opset: int = DEFAULT_OPSET
) -> Path:
    """An ONNX file for ``model_path``: the path itself if it is ``.onnx``, else a cached export of the ``.pt``.

    The cache entry is named by the checkpoint's SHA-256, opset and package version, so editing or replacing the
    model file (or upgrading the exporter) produces a fresh export; an entry whose metadata no longer matches is
    re-exported.
    """
    from bisenetformer_ros import __version__

    path = Path(model_path)
    if path.suffix.lower() == ".onnx":
        return path
    if not path.is_file():
        raise FileNotFoundError(f"model file '{path}' does not exist")
    sha = file_sha256(path)
    root = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    target = root / "onnx" / f"{path.stem}-{sha[:16]}-op{opset}-v{__version__}.onnx"
    with file_lock(target):
        if target.is_file():
            try:
                info = read_onnx_metadata(target)
                if info.source_sha256 == sha:
                    LOG.info("using cached ONNX export %s", target)
                    return target
                reason = "it was exported from another model file"
            except RuntimeError as exc:
                reason = str(exc)
            LOG.warning("cached ONNX export %s is unusable (%s); re-exporting", target, reason)
        LOG.info("exporting %s to ONNX (once; cached at %s)", path, target)
        export_onnx(path, target, opset=opset, verify=False)
    return target
