"""Benchmark harness: latency percentiles per pipeline stage, throughput and peak memory of one Segmenter.

What is measured: ``iters`` calls of :meth:`Segmenter.run` on the same ``batch`` frames after ``warmup`` untimed
calls. Per call the three stage times (pre-process, inference, post-process; device-synchronised at the boundaries)
and the wall time of the whole call are recorded; percentiles are over calls, in milliseconds. ``fps`` = frames
processed / total wall time of the timed calls. Peak host memory is the process's peak resident set size (so compare
backends in separate processes, as ``bisenetformer benchmark`` does); device memory is torch's allocator peak plus,
for TensorRT, the engine's activation memory.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch

from bisenetformer_ros.data.classes import ClassTable
from bisenetformer_ros.evaluation.latency import LatencySummary
from bisenetformer_ros.inference.segmenter import STAGES, Segmenter


@dataclass
class StageStats:
    """Latency of one stage over the timed calls, in milliseconds."""

    p50: float
    p90: float
    p99: float
    mean: float

    @classmethod
    def from_seconds(cls, values: Sequence[float]) -> StageStats:
        s = LatencySummary.of(values, scale=1000.0)
        return cls(p50=s.p50, p90=s.p90, p99=s.p99, mean=s.mean)


@dataclass
class BenchmarkResult:
    backend: str
    device: str
    precision: str
    model: str
    backbone: str | None
    height: int
    width: int
    batch: int
    iters: int
    warmup: int
    tasks: list[str]
    stages: dict[str, StageStats]
    fps: float
    peak_rss_mb: float
    device_peak_mb: float | None
    load_seconds: float
    threads: int
    details: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["stages"] = {k: asdict(v) for k, v in self.stages.items()}
        return d


def peak_rss_mb() -> float:
    """Peak resident set size of this process in MiB (``ru_maxrss``; Linux reports KiB, macOS bytes)."""
    try:
        import resource
    except ImportError:  # pragma: no cover - non-POSIX
        import psutil

        return psutil.Process().memory_info().rss / 2**20
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 1024


def make_frames(height: int, width: int, count: int, seed: int = 0) -> list[np.ndarray]:
    """Benchmark frames: synthetic street-like scenes when the generator is available, else smooth colour blobs.

    Content matters for post-processing time (how many queries survive), so frames resemble camera images rather
    than white noise.
    """
    try:
        from bisenetformer_ros.data.synthetic import render_scene
    except ImportError:
        render_scene = None
    frames = []
    for i in range(count):
        if render_scene is not None:
            frames.append(np.ascontiguousarray(render_scene(seed + i, height, width).image, dtype=np.uint8))
            continue
        rng = np.random.default_rng(seed + i)
        small = rng.integers(0, 256, size=(max(2, height // 64), max(2, width // 64), 3), dtype=np.uint8)
        import cv2

        img = cv2.resize(small, (width, height), interpolation=cv2.INTER_CUBIC)
        noise = rng.integers(-8, 9, size=img.shape)
        frames.append(np.clip(img.astype(np.int16) + noise, 0, 255).astype(np.uint8))
    return frames


def random_class_table(num_classes: int) -> ClassTable:
    """Cityscapes for 19 classes; otherwise a generic table (odd ids are things) for random-weight benchmarks."""
    from bisenetformer_ros.data.classes import CITYSCAPES

    if num_classes == CITYSCAPES.num_classes:
        return CITYSCAPES
    rng = np.random.default_rng(num_classes)
    colors = tuple(tuple(int(c) for c in rng.integers(0, 256, 3)) for _ in range(num_classes))
    return ClassTable(
        dataset=f"random{num_classes}",
        names=tuple(f"class{i}" for i in range(num_classes)),
        colors=colors,  # type: ignore[arg-type]
        is_thing=tuple(i % 2 == 1 for i in range(num_classes)),
    )


def run_benchmark(
    segmenter: Segmenter,
    height: int,
    width: int,
    batch: int = 1,
    iters: int = 20,
    warmup: int = 3,
    tasks: Sequence[str] = ("semantic", "panoptic"),
    load_seconds: float = 0.0,
    model_name: str = "",
    progress: Callable[[int], None] | None = None,
) -> BenchmarkResult:
    """Time ``iters`` calls of ``segmenter.run`` on ``batch`` frames of ``height x width``."""
    if iters < 1 or warmup < 0 or batch < 1:
        raise ValueError(f"need iters >= 1, warmup >= 0, batch >= 1 (got {iters}, {warmup}, {batch})")
    frames = make_frames(height, width, batch)
    backend = segmenter.backend
    cuda = backend.device.type == "cuda"
    for _ in range(warmup):
        segmenter.run(frames, tasks)
    if cuda:
        torch.cuda.synchronize(backend.device)
        torch.cuda.reset_peak_memory_stats(backend.device)
    per_stage: dict[str, list[float]] = {s: [] for s in (*STAGES, "total")}
    wall = 0.0
    for i in range(iters):
        t0 = time.perf_counter()
        results = segmenter.run(frames, tasks)
        dt = time.perf_counter() - t0
        wall += dt
        # Stage times are per network call; sum over the calls of this run (Segmenter may split the batch).
        calls = {r.call_index: r.timings for r in results}
        sums = {s: sum(t[s] for t in calls.values()) for s in STAGES}
        for s in STAGES:
            per_stage[s].append(sums[s])
        per_stage["total"].append(dt)
        if progress is not None:
            progress(i + 1)
    info = backend.info
    device_peak = None
    if cuda:
        device_peak = torch.cuda.max_memory_allocated(backend.device) / 2**20
        device_peak += float(info.details.get("activation_memory_bytes", 0)) / 2**20
    return BenchmarkResult(
        backend=info.name,
        device=info.device,
        precision=info.precision,
        model=model_name or str(backend.model_path),
        backbone=(backend.model_config or {}).get("backbone"),
        height=height,
        width=width,
        batch=batch,
        iters=iters,
        warmup=warmup,
        tasks=list(tasks),
        stages={k: StageStats.from_seconds(v) for k, v in per_stage.items()},
        fps=batch * iters / wall,
        peak_rss_mb=peak_rss_mb(),
        device_peak_mb=device_peak,
        load_seconds=load_seconds,
        threads=torch.get_num_threads(),
        details={k: v for k, v in info.details.items() if isinstance(v, (str, int, float, bool, type(None)))},
    )


def cpu_name() -> str:
    """Model name of the CPU (for the record next to CPU figures)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="ignore") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    import platform

    return platform.processor() or platform.machine()


def machine_summary() -> dict[str, Any]:
    """Hardware/software context printed with every benchmark."""
    summary: dict[str, Any] = {
        "cpu": cpu_name(),
        "cpu_count": os.cpu_count(),
        "torch": torch.__version__,
    }
    if torch.cuda.is_available():
        summary["gpu"] = torch.cuda.get_device_name(0)
    try:
        import onnxruntime

        summary["onnxruntime"] = onnxruntime.__version__
    except ImportError:
        pass
    return summary


def plot_runs(records: Sequence[dict[str, Any]], path: str | os.PathLike, title: str = "") -> None:
    """Stacked bars of the p50 stage latencies of each run, FPS written on top (``bisenetformer benchmark --plot``)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ok = [r for r in records if "stages" in r]
    if not ok:
        raise ValueError("no successful runs to plot")
    labels = []
    for r in ok:
        q = r.get("_request", r)
        labels.append(
            f"{q['backend']}\n{q['precision']} {q.get('backbone') or r.get('backbone') or ''}\n"
            f"{q['height']}x{q['width']}"
        )
    fig, ax = plt.subplots(figsize=(max(6.0, 1.3 * len(ok)), 4.5))
    bottom = np.zeros(len(ok))
    colors = {"preprocess": "#8fbcd4", "inference": "#2b6f97", "postprocess": "#f0a35e"}
    for stage in STAGES:
        values = np.array([r["stages"][stage]["p50"] for r in ok])
        ax.bar(range(len(ok)), values, bottom=bottom, label=stage, color=colors[stage])
        bottom += values
    for i, r in enumerate(ok):
        ax.text(i, bottom[i], f"{r['fps']:.1f} FPS", ha="center", va="bottom", fontsize=8)
    ax.set_xticks(range(len(ok)), labels, fontsize=7)
    ax.set_ylabel("p50 latency per call [ms]")
    ax.set_title(title or "BiSeNetFormer pipeline latency by stage")
    ax.legend(fontsize=8)
    ax.margins(y=0.12)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
