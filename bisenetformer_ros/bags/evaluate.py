"""``bisenetformer bag evaluate``: run the model over every frame of a bag, offline and batched, and score it.

No DDS is involved: frames are read with rosbags, decoded with the node's image converter, run through the same
:class:`~bisenetformer_ros.inference.Segmenter` the node uses, rendered with the node's
:func:`~bisenetformer_ros.inference.outputs.render_outputs` and — with ``--write-bag`` — written as the node's
output topics with the input frames' stamps. Ground truth comes from a label topic, a panoptic topic or a folder of
label images, matched to frames by header stamp (or frame index for files).

Tracking: like the node, the panoptic segments are tracked over the frames (:mod:`bisenetformer_ros.tracking`,
``tracking``; None = off), the output bag carries the track ids, and with panoptic ground truth the report has the
video metrics (STQ, AQ, VPQ, ID switches, mostly tracked) of the tracker next to those of per-frame ids.
"""

from __future__ import annotations

import bisect
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from bisenetformer_ros.backend_choice import DEFAULT_BACKEND
from bisenetformer_ros.bags import msgconv as mc
from bisenetformer_ros.bags.bagio import LATCHED_QOS, SENSOR_QOS, BagMessage, BagReader, BagWriter
from bisenetformer_ros.bags.scoring import (
    SKIP_GT_BAD,
    SKIP_IMAGE,
    SKIP_INFER,
    SKIP_NO_GT,
    FrameEval,
    Scorer,
)
from bisenetformer_ros.bags.typestore import (
    CAMERA_INFO,
    CLASS_TABLE,
    COMPRESSED_IMAGE,
    IMAGE,
    PANOPTIC_SEGMENTATION,
)
from bisenetformer_ros.model.network_size import NetworkSize, resolve_network_size
from bisenetformer_ros.topics import (
    CLASS_INFO_TOPIC,
    FIXED_ENCODINGS,
    OUTPUT_CAMERA_INFO_TOPICS,
    OUTPUT_SPECS,
    OUTPUTS,
    absolute_topic,
)
from bisenetformer_ros.tracking import PanopticTracker, TrackerConfig

#: How many later image messages an image waits for its ground truth before it is processed without it.
GT_LOOKAHEAD = 32

#: Camera info of the outputs (the node's names: where image_transport looks for it, see bisenetformer_ros.topics).
CAMERA_INFO_OUTS = OUTPUT_CAMERA_INFO_TOPICS

#: Output topics (relative to the output namespace) -> type, as the node publishes them: the recorded outputs of the
#: catalogue and the class table.
OUTPUT_TOPICS = {**{o.topic: o.msgtype for o in OUTPUTS if o.recorded}, CLASS_INFO_TOPIC: CLASS_TABLE}


@dataclass
class BagEvalConfig:
    bag: str
    image_topic: str
    gt_semantic_topic: str | None = None
    gt_panoptic_topic: str | None = None
    gt_dir: str | None = None
    model: str | None = None
    backend: str = DEFAULT_BACKEND
    device: str = "auto"
    precision: str = "fp32"
    #: backend-specific keywords (e.g. ``calibration_images`` for int8), as in ``Segmenter.from_model``
    backend_options: dict[str, Any] = field(default_factory=dict)
    input_size: Any = None  # None = the model file's recorded size; int, (h, w) or 'native' override it
    network_size: NetworkSize | None = None  # already resolved (the CLI resolves and prints it first)
    batch: int = 4
    max_frames: int | None = None
    out_dir: str | None = None
    write_bag: str | None = None
    write_storage: str = "sqlite3"
    output_namespace: str = "/bisenetformer"
    camera_info_topic: str | None = None  # default: <image topic's namespace>/camera_info when present
    overlay_alpha: float = 0.5
    overwrite: bool = False
    progress: bool = True
    grid_frames: int = 8
    worst_frames: int = 4
    segmenter: Any = None  # an already built Segmenter (tests, demo); else built from model/backend/device
    extra_warnings: list[str] = field(default_factory=list)
    tracking: TrackerConfig | None = field(default_factory=TrackerConfig)  # None = per-frame ids (tracking off)


@dataclass
class _Pending:
    index: int
    stamp: int
    image: BagMessage
    gt: dict[str, BagMessage] = field(default_factory=dict)


def pair_frames(
    reader: BagReader, image_topic: str, gt_topics: list[str], max_frames: int | None = None
) -> Iterator[_Pending]:
    """Images in bag order, each with the ground-truth messages (one per ``gt_topics``) of the same header stamp.

    Ground truth may be recorded just before or after its image; an image waits for it over the next
    ``GT_LOOKAHEAD`` images, which bounds memory on long bags (later ground truth counts as missing).
    """
    pending: deque[_Pending] = deque()
    early: dict[tuple[str, int], BagMessage] = {}  # ground truth that arrived before its image
    by_stamp: dict[int, _Pending] = {}
    index = 0
    for m in reader.messages([image_topic, *gt_topics]):
        stamp = mc.stamp_ns(m.msg.header)
        if m.topic == image_topic:
            if max_frames is not None and index >= max_frames:
                break
            p = _Pending(index, stamp, m)
            for t in gt_topics:
                if (t, stamp) in early:
                    p.gt[t] = early.pop((t, stamp))
            index += 1
            pending.append(p)
            by_stamp[stamp] = p
        elif stamp in by_stamp and m.topic not in by_stamp[stamp].gt:
            by_stamp[stamp].gt[m.topic] = m
        else:
            early[(m.topic, stamp)] = m
            if len(early) > 4 * GT_LOOKAHEAD * max(1, len(gt_topics)):  # GT of images we never see: bound memory
                early.pop(next(iter(early)))
        while pending and (len(pending[0].gt) == len(gt_topics) or len(pending) > GT_LOOKAHEAD):
            p = pending.popleft()
            by_stamp.pop(p.stamp, None)
            yield p
    while pending:
        yield pending.popleft()


class GroundTruthDir:
    """Label images in a folder, by frame stamp (``<stamp_ns>.png``) or frame index (``000012.png``).

    Semantic class-id PNGs (8- or 16-bit, ignore = the class table's ignore label).
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        if not self.path.is_dir():
            raise FileNotFoundError(f"--gt-dir {self.path} is not a directory")
        self.files = {p.stem: p for p in self.path.iterdir() if p.suffix.lower() in (".png", ".tif", ".tiff")}
        if not self.files:
            raise ValueError(
                f"--gt-dir {self.path} holds no label images (.png); name them <stamp_ns>.png or "
                "<frame index>.png (e.g. 000000.png)"
            )

    def lookup(self, index: int, stamp: int) -> Path | None:
        for key in (str(stamp), f"{index:06d}", str(index)):
            if key in self.files:
                return self.files[key]
        return None

    @staticmethod
    def load(path: Path) -> np.ndarray:
        import cv2

        arr = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
        if arr is None:
            raise ValueError(f"cannot read label image {path}")
        if arr.ndim == 3:
            raise ValueError(f"label image {path} has {arr.shape[2]} channels; expected one channel of class ids")
        return arr


def network_size_of(cfg: BagEvalConfig) -> NetworkSize:
    """The network size for this evaluation: the node's rule (the model file's recorded size unless overridden)."""
    return cfg.network_size or resolve_network_size(cfg.model, cfg.input_size)


def _build_segmenter(cfg: BagEvalConfig, size: NetworkSize) -> Any:
    if cfg.segmenter is not None:
        return cfg.segmenter
    from bisenetformer_ros.inference import Segmenter

    return Segmenter.from_model(
        model_path=cfg.model,
        backend=cfg.backend,
        device=cfg.device,
        precision=cfg.precision,
        input_size=size.input_size,
        **cfg.backend_options,
    )


def _validate(cfg: BagEvalConfig, reader: BagReader) -> None:
    if cfg.batch < 1:
        raise ValueError(f"--batch must be >= 1, got {cfg.batch}")
    if cfg.max_frames is not None and cfg.max_frames < 1:
        raise ValueError(f"--max-frames must be >= 1, got {cfg.max_frames}")
    if cfg.gt_dir and (cfg.gt_semantic_topic or cfg.gt_panoptic_topic):
        raise ValueError("give ground truth either as topics (--gt-semantic-topic/--gt-panoptic-topic) or --gt-dir")
    reader.require_topic(cfg.image_topic, [IMAGE, COMPRESSED_IMAGE], what="image topic")
    if cfg.gt_semantic_topic:
        reader.require_topic(cfg.gt_semantic_topic, [IMAGE], what="ground-truth topic")
    if cfg.gt_panoptic_topic:
        reader.require_topic(cfg.gt_panoptic_topic, [PANOPTIC_SEGMENTATION], what="ground-truth topic")
    if reader.topics[cfg.image_topic].count == 0:
        raise ValueError(f"image topic '{cfg.image_topic}' in bag {reader.path} has no messages")


def _bag_class_tables(reader: BagReader) -> list[tuple[str, Any]]:
    out = []
    topics = [t for t, s in reader.topics.items() if s.msgtype == CLASS_TABLE and s.known_type]
    for m in reader.messages(topics):
        out.append((m.topic, mc.class_table_from_msg(m.msg)))
    return out


class OutputBag:
    """Writes the node's output topics for each frame, with the input image's header, as the node publishes them.

    ``camera_infos`` are the input bag's ``(bag time, CameraInfo)``: like the node, each output frame gets the
    latest camera_info received before its image, re-stamped with the image header, on ``semantic/camera_info``
    and ``panoptic/camera_info``.
    """

    def __init__(
        self,
        path: str,
        storage: str,
        namespace: str,
        overwrite: bool,
        class_table: Any,
        camera_infos: list[tuple[int, Any]],
    ) -> None:
        self.writer = BagWriter(path, storage=storage, overwrite=overwrite).open()
        self.ns = namespace
        self.ts = self.writer.typestore
        self.table = class_table
        for rel, msgtype in OUTPUT_TOPICS.items():
            qos = LATCHED_QOS if rel == CLASS_INFO_TOPIC else SENSOR_QOS
            self.writer.add_topic(absolute_topic(namespace, rel), msgtype, [qos])
        self.infos = camera_infos
        self._info_times = [t for t, _ in camera_infos]
        if camera_infos:
            for info_topic in CAMERA_INFO_OUTS:
                self.writer.add_topic(absolute_topic(namespace, info_topic), CAMERA_INFO, [SENSOR_QOS])
        self._table_written = False

    def _topic(self, name: str) -> str:
        """Bag topic of catalogue output ``name`` under this bag's namespace."""
        return absolute_topic(self.ns, OUTPUT_SPECS[name].topic)

    def write_frame(self, header: Any, timestamp: int, outputs: Any) -> None:
        ts, t, ns = self.ts, timestamp, self.ns
        if not self._table_written:
            self.writer.write(absolute_topic(ns, CLASS_INFO_TOPIC), t, mc.class_table_msg(ts, header, self.table))
            self._table_written = True
        sem, enc = outputs.semantic
        self.writer.write(self._topic("semantic"), t, mc.image_msg(ts, header, sem, enc))
        for name in ("semantic_color", "overlay"):
            arr = getattr(outputs, name)
            self.writer.write(self._topic(name), t, mc.image_msg(ts, header, arr, FIXED_ENCODINGS[name]))
        tracks = outputs.tracks or {}
        segments = [mc.segment_record(s, tracks.get(s.id)) for s in outputs.segments]
        self.writer.write(self._topic("panoptic"), t, mc.panoptic_msg(ts, header, outputs.panoptic_ids, segments))
        color = FIXED_ENCODINGS["panoptic_color"]
        self.writer.write(self._topic("panoptic_color"), t, mc.image_msg(ts, header, outputs.panoptic_color, color))
        i = bisect.bisect_right(self._info_times, timestamp) - 1
        if i >= 0:
            h, w = sem.shape[:2]
            info = mc.scaled_camera_info(ts, self.infos[i][1], header, w, h)
            for info_topic in CAMERA_INFO_OUTS:
                self.writer.write(absolute_topic(ns, info_topic), t, info)

    def close(self) -> None:
        self.writer.close()

    def abort(self) -> None:
        self.writer.abort()


def evaluate_bag(cfg: BagEvalConfig) -> dict[str, Any]:
    """Run the evaluation described by ``cfg``; writes the report (and output bag) and returns the report dict."""

    gt_dir = GroundTruthDir(cfg.gt_dir) if cfg.gt_dir else None
    gt_topics = [t for t in (cfg.gt_semantic_topic, cfg.gt_panoptic_topic) if t]
    warnings: list[str] = list(cfg.extra_warnings)
    with BagReader(cfg.bag) as reader:
        _validate(cfg, reader)
        size = network_size_of(cfg) if cfg.segmenter is None else None
        segmenter = _build_segmenter(cfg, size) if size is not None else cfg.segmenter
        table = segmenter.class_table
        for topic, bag_table in _bag_class_tables(reader):
            diffs = table.differences(bag_table)
            if diffs:
                raise ValueError(
                    f"the model's class table ({table.dataset}) does not match the class table in the bag on "
                    f"{topic} ({bag_table.dataset}): {'; '.join(diffs[:5])}; evaluate with a model trained on this "
                    "label space"
                )
        n_images = reader.topics[cfg.image_topic].count
        total_hint = min(n_images, cfg.max_frames) if cfg.max_frames else n_images
        scorer = Scorer(
            table,
            semantic_gt=bool(cfg.gt_semantic_topic or gt_dir),
            panoptic_gt=bool(cfg.gt_panoptic_topic),
            total_hint=total_hint,
            grid_frames=cfg.grid_frames,
            worst_frames=cfg.worst_frames,
        )
        scorer.tracker_settings = asdict(cfg.tracking) if cfg.tracking is not None else None
        info_topic = cfg.camera_info_topic or cfg.image_topic.rsplit("/", 1)[0] + "/camera_info"
        has_info = info_topic in reader.topics and reader.topics[info_topic].msgtype == CAMERA_INFO
        out_bag = None
        if cfg.write_bag:
            infos = [(m.timestamp, m.msg) for m in reader.messages([info_topic])] if has_info else []
            out_bag = OutputBag(cfg.write_bag, cfg.write_storage, cfg.output_namespace, cfg.overwrite, table, infos)
        try:
            wall, processed = _run(cfg, reader, segmenter, scorer, gt_topics, gt_dir, out_bag, total_hint)
        except BaseException:
            if out_bag is not None:
                out_bag.abort()
            raise
        if out_bag is not None:
            out_bag.close()
        issues = reader.issues
        if issues.stopped_early:
            warnings.append(f"reading stopped early: {issues.stopped_early}; frames after that point are missing")
        for topic, n in issues.undecodable.items():
            warnings.append(f"{n} message(s) on {topic} could not be deserialised and were skipped")
        backend_info = getattr(getattr(segmenter, "backend", None), "info", None)

    return scorer.build_report(
        title=f"BiSeNetFormer on {Path(cfg.bag).name}",
        kind="bag_evaluate",
        source={
            "bag": str(cfg.bag),
            "image_topic": cfg.image_topic,
            "ground_truth": ", ".join(gt_topics) or cfg.gt_dir or "none",
            "model": str(cfg.model or "embedded default"),
            "backend": getattr(backend_info, "name", cfg.backend),
            "device": getattr(backend_info, "device", cfg.device),
            "precision": getattr(backend_info, "precision", cfg.precision),
            "batch": cfg.batch,
            "class_table": table.dataset,
            "output_bag": cfg.write_bag or "",
            "network_input": size.describe() if size is not None else "as set up by the caller",
            "network_input_size": size.to_json()["input_size"] if size is not None else None,
        },
        warnings=warnings,
        latency=scorer.latency(wall, processed),
        latency_note=(
            f"Offline, batches of {cfg.batch}: a frame's latency is its decode time plus the whole batch's "
            "pre-process, inference and post-process, plus its rendering; throughput = frames per second of wall "
            "time after a warm-up run."
        ),
        out_dir=cfg.out_dir,
    )


def _decode_gt(pending: _Pending, cfg: BagEvalConfig, gt_dir: GroundTruthDir | None, f: FrameEval) -> None:
    """Ground truth of one frame into ``f``; a missing or broken one marks the frame as skipped (with the cause)."""
    if gt_dir is not None:
        path = gt_dir.lookup(pending.index, pending.stamp)
        if path is None:
            f.skip = f.skip or SKIP_NO_GT
            return
        try:
            f.gt_semantic = GroundTruthDir.load(path)
        except ValueError as exc:
            f.skip, f.detail = f.skip or SKIP_GT_BAD, str(exc)
        return
    for topic, decode, attr in (
        (cfg.gt_semantic_topic, mc.label_image_to_array, "gt_semantic"),
        (cfg.gt_panoptic_topic, mc.panoptic_from_msg, "gt_panoptic"),
    ):
        if not topic:
            continue
        msg = pending.gt.get(topic)
        if msg is None:
            f.skip = f.skip or SKIP_NO_GT
            continue
        try:
            setattr(f, attr, decode(msg.msg))
        except ValueError as exc:
            f.skip, f.detail = f.skip or SKIP_GT_BAD, f"{topic}: {exc}"


def _run(
    cfg: BagEvalConfig,
    reader: BagReader,
    segmenter: Any,
    scorer: Scorer,
    gt_topics: list[str],
    gt_dir: GroundTruthDir | None,
    out_bag: OutputBag | None,
    total: int,
) -> tuple[float, int]:
    """The frame loop: decode, batch, infer, render, write, score. Returns (processing wall time, frames run)."""
    loop = _FrameLoop(cfg, segmenter, scorer, gt_dir, out_bag, total)
    for pending in pair_frames(reader, cfg.image_topic, gt_topics, cfg.max_frames):
        loop.add(pending)
    loop.flush()
    loop.close()
    return loop.wall, loop.processed


class _FrameLoop:
    """State of the frame loop of one bag: the batch being filled, the tracker, the progress bar and the totals.

    Frames stay in input order; those that cannot be decoded ride along in the batch (image ``None``) so the report
    keeps the order. ``wall`` adds up the processing time of the frames run (decode, batches, rendering), which
    the report turns into throughput; the warm-up call of the first batch is not part of it.
    """

    def __init__(
        self,
        cfg: BagEvalConfig,
        segmenter: Any,
        scorer: Scorer,
        gt_dir: GroundTruthDir | None,
        out_bag: OutputBag | None,
        total: int,
    ) -> None:
        self.cfg = cfg
        self.segmenter = segmenter
        self.scorer = scorer
        self.gt_dir = gt_dir
        self.out_bag = out_bag
        self.bar = None
        if cfg.progress:
            from tqdm import tqdm

            self.bar = tqdm(total=total, unit="frame", desc="evaluate")
        self.batch: list[tuple[_Pending, FrameEval, np.ndarray | None]] = []
        self.tracker = PanopticTracker(cfg.tracking) if cfg.tracking is not None else None
        self.processed = 0
        self.wall = 0.0
        self.warmed = False

    def add(self, pending: _Pending) -> None:
        """Decode one frame and its ground truth into the batch; run the batch once it holds ``cfg.batch`` images."""
        f = FrameEval(index=pending.index, stamp=pending.stamp)
        t0 = time.perf_counter()
        try:
            img: np.ndarray | None = mc.camera_image_to_rgb(pending.image.msg)
        except (ValueError, RuntimeError) as exc:
            img = None
            f.skip, f.detail = SKIP_IMAGE, str(exc)
        t_decode = time.perf_counter() - t0
        if img is not None:
            self.wall += t_decode
            f.image = img
            f.timings_ms["decode"] = t_decode * 1000.0
            _decode_gt(pending, self.cfg, self.gt_dir, f)
        self.batch.append((pending, f, img))
        if sum(1 for _, _, i in self.batch if i is not None) >= self.cfg.batch:
            self.flush()

    def flush(self) -> None:
        """Run the batch and hand every frame of it (run, undecodable or failed) to the scorer, in order."""
        if not self.batch:
            return
        images = [img for _, _, img in self.batch if img is not None]
        results, t_batch, error = self._infer(images)
        stage = {k: 0.0 for k in ("preprocess", "inference", "postprocess")}
        for r in results:
            for k, v in (getattr(r, "timings", None) or {}).items():
                stage[k] = max(stage.get(k, 0.0), float(v))  # batch times: every frame waits for the whole batch
        other = max(0.0, t_batch - sum(stage.values()))
        it = iter(results)
        for pending, f, img in self.batch:
            if img is None:
                self.scorer.add(f)
                continue
            if error is not None:
                f.skip, f.detail = SKIP_INFER, f"{type(error).__name__}: {error}"
                self.scorer.add(f)
                continue
            self._finish_frame(pending, f, img, next(it), stage, other)
        self.wall += t_batch
        if self.bar is not None:
            self.bar.update(len(self.batch))
        self.batch.clear()

    def _infer(self, images: list[np.ndarray]) -> tuple[list[Any], float, Exception | None]:
        """Segmenter results of the batch, its wall time and the backend error (a failed batch is reported; the rest
        of the bag still runs)."""
        if not images:
            return [], 0.0, None
        if not self.warmed:  # the first call allocates and tunes kernels: keep it out of the latency numbers
            self.segmenter.run(images)
            self.warmed = True
        t0 = time.perf_counter()
        results: list[Any] = []
        error: Exception | None = None
        try:
            results = self.segmenter.run(images)
        except Exception as exc:
            error = exc
        return results, time.perf_counter() - t0, error

    def _finish_frame(
        self, pending: _Pending, f: FrameEval, img: np.ndarray, r: Any, stage: dict[str, float], other: float
    ) -> None:
        """Track, render and write one inferred frame, then score it with its stage times (ms)."""
        from bisenetformer_ros.inference.outputs import render_outputs

        out = r.output
        f.pred_semantic = out.semantic
        t1 = time.perf_counter()
        tracker = self.tracker
        tracks = tracker.update(out.panoptic) if tracker is not None and out.panoptic is not None else None
        if out.panoptic is not None:
            f.pred_panoptic = (
                out.panoptic.id_map,
                [mc.segment_record(s, (tracks or {}).get(s.id)) for s in out.panoptic.segments],
            )
        rendered = render_outputs(r, img, self.segmenter.class_table, self.cfg.overlay_alpha, tracks=tracks)
        if self.out_bag is not None:
            self.out_bag.write_frame(pending.image.msg.header, pending.image.timestamp, rendered)
        t_render = time.perf_counter() - t1
        self.wall += t_render
        f.overlay = rendered.overlay
        f.track_color = rendered.panoptic_color if tracks is not None else None
        f.timings_ms.update({k: v * 1000.0 for k, v in stage.items()})
        f.timings_ms["other"] = other * 1000.0
        f.timings_ms["render"] = t_render * 1000.0
        self.scorer.add(f)
        self.processed += 1

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
