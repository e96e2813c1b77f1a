"""``bisenetformer bag make-synthetic``: a camera bag with exact ground truth, from the synthetic scene generator.

The bag looks like a real camera recording (``<ns>/image`` rgb8 and ``<ns>/camera_info`` with the same headers, at
a fixed rate) plus ground truth on ``<ns>/gt/semantic`` (class ids, mono8), ``<ns>/gt/panoptic`` (this package's
PanopticSegmentation) and the class table on ``<ns>/gt/class_info`` (transient local). Frames are one scene at
successive times, so objects move smoothly from frame to frame. The same settings always give the same bag.

Every ground-truth thing segment carries its object's identity in ``track_id`` (stable over the bag), so the video
metrics (STQ, VPQ, ID switches) can score a tracker on any synthetic bag. ``sequence=True`` (``--sequence``) renders
the tracking sequences of :func:`~bisenetformer_ros.data.synthetic.render_sequence_frame` instead: faster objects
that cross and hide each other and leave the frame and come back.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from bisenetformer_ros.bags import msgconv as mc
from bisenetformer_ros.bags.bagio import LATCHED_QOS, SENSOR_QOS, BagWriter
from bisenetformer_ros.bags.typestore import CAMERA_INFO, CLASS_TABLE, IMAGE, PANOPTIC_SEGMENTATION

#: Key under which the generator settings are stored in the bag's metadata (custom_data).
CUSTOM_DATA_KEY = "bisenetformer.synthetic"


@dataclass(frozen=True)
class SyntheticBagConfig:
    width: int = 320
    height: int = 240
    rate: float = 10.0
    frames: int = 50
    seed: int = 0
    storage: str = "sqlite3"
    namespace: str = "/camera"
    frame_id: str = "camera_optical_frame"
    start_time: float = 1_700_000_000.0  # seconds since the epoch of the first frame
    horizontal_fov_deg: float = 70.0
    sequence: bool = False  # tracking sequence (crossing, leaving, returning objects) instead of the plain scene

    def validate(self) -> None:
        if self.width < 8 or self.height < 8:
            raise ValueError(f"synthetic frames need at least 8x8 pixels, got {self.width}x{self.height}")
        if self.width * self.height > 4096 * 4096:
            raise ValueError(f"{self.width}x{self.height} is too large for a synthetic bag (max 4096x4096)")
        if not self.rate > 0:
            raise ValueError(f"--rate must be > 0 Hz, got {self.rate}")
        if self.frames < 1:
            raise ValueError(f"--frames must be >= 1, got {self.frames}")
        if self.start_time < 0:
            raise ValueError("--start-time must be >= 0")

    def topic(self, rel: str) -> str:
        ns = "/" + self.namespace.strip("/") if self.namespace.strip("/") else ""
        return f"{ns}/{rel}"


def make_synthetic_bag(
    out: str | Path, cfg: SyntheticBagConfig, *, overwrite: bool = False, progress: bool = False
) -> dict[str, Any]:
    """Write the bag; returns ``{'frames': n, 'topics': [...], 'path': ...}``."""
    from bisenetformer_ros.data.synthetic import SYNTHETIC, render_scene, render_sequence_frame

    cfg.validate()
    render = render_sequence_frame if cfg.sequence else render_scene
    table = SYNTHETIC
    t_image, t_info = cfg.topic("image"), cfg.topic("camera_info")
    t_sem, t_pan, t_cls = cfg.topic("gt/semantic"), cfg.topic("gt/panoptic"), cfg.topic("gt/class_info")
    period_ns = round(1e9 / cfg.rate)
    start_ns = round(cfg.start_time * 1e9)
    fx = (cfg.width / 2.0) / np.tan(np.deg2rad(cfg.horizontal_fov_deg) / 2.0)
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=cfg.frames, unit="frame", desc="make-synthetic")
    with BagWriter(out, storage=cfg.storage, overwrite=overwrite) as w:
        ts = w.typestore
        w.add_topic(t_info, CAMERA_INFO, [SENSOR_QOS])
        w.add_topic(t_image, IMAGE, [SENSOR_QOS])
        w.add_topic(t_sem, IMAGE, [SENSOR_QOS])
        w.add_topic(t_pan, PANOPTIC_SEGMENTATION, [SENSOR_QOS])
        w.add_topic(t_cls, CLASS_TABLE, [LATCHED_QOS])
        w.set_custom_data(CUSTOM_DATA_KEY, json.dumps(asdict(cfg)))
        w.write(t_cls, start_ns, mc.class_table_msg(ts, mc.make_header(ts, start_ns, cfg.frame_id), table))
        sem_encoding = "mono8" if table.num_classes <= 255 else "mono16"
        for i in range(cfg.frames):
            stamp = start_ns + i * period_ns
            scene = render(cfg.seed, cfg.height, cfg.width, t=i / cfg.rate)
            header = mc.make_header(ts, stamp, cfg.frame_id)
            ids = scene.panoptic.astype(np.uint16)
            classes = {s.id: s.category_id for s in scene.segments}
            tracks = {s.id: s.track_id for s in scene.segments if s.track_id}
            w.write(t_info, stamp, mc.camera_info_msg(ts, header, cfg.width, cfg.height, fx))
            w.write(t_image, stamp, mc.image_msg(ts, header, scene.image, "rgb8"))
            w.write(t_sem, stamp, mc.image_msg(ts, header, scene.semantic, sem_encoding))
            w.write(t_pan, stamp, mc.panoptic_msg(ts, header, ids, mc.segments_from_ids(ids, classes, table, tracks)))
            if bar is not None:
                bar.update(1)
    if bar is not None:
        bar.close()
    return {"frames": cfg.frames, "topics": [t_image, t_info, t_sem, t_pan, t_cls], "path": str(out)}
