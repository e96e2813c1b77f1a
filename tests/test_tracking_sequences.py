"""Tracking on the synthetic sequences: the generator's events and identities, the tracker on ground-truth masks
scored by the video metrics, and ``bag make-synthetic --sequence`` + ``bag evaluate`` end to end (CLI, real bags)."""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from bisenetformer_ros.bags import msgconv as mc
from bisenetformer_ros.bags.bagio import BagReader
from bisenetformer_ros.data.synthetic import SYNTHETIC, Scene, render_sequence_frame
from bisenetformer_ros.evaluation.video import VideoPanopticMetric
from bisenetformer_ros.model.postprocess import PanopticResult, Segment
from bisenetformer_ros.tracking import PanopticTracker
from tests.inference_models import make_model_file

CLI = str(Path(sys.executable).parent / "bisenetformer")
SEED, FRAMES, H, W, RATE = 2, 60, 72, 96, 10.0


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    return subprocess.run([CLI, *args], capture_output=True, text=True, timeout=540, env=env)


@pytest.fixture(scope="module")
def sequence() -> list:
    return [render_sequence_frame(SEED, H, W, t=i / RATE) for i in range(FRAMES)]


def _as_result(scene: Scene) -> PanopticResult:
    """The ground truth as the post-processing would give it: per-frame segment ids, no identities."""
    segs = []
    for s in scene.segments:
        ys, xs = np.nonzero(scene.panoptic == s.id)
        segs.append(Segment(s.id, s.category_id, s.isthing, 1.0, s.area, s.bbox, (float(xs.mean()), float(ys.mean()))))
    return PanopticResult(scene.panoptic.astype(np.uint16), segs)


def test_sequence_has_identities_crossings_exits_and_returns(sequence: list) -> None:
    visible: dict[int, list[int]] = {}
    classes: dict[int, set[int]] = {}
    overlaps = 0
    for i, scene in enumerate(sequence):
        boxes = []
        for s in scene.segments:
            if s.isthing:
                assert s.track_id > 0
                visible.setdefault(s.track_id, []).append(i)
                classes.setdefault(s.track_id, set()).add(s.category_id)
                boxes.append(s.bbox)
        for a in range(len(boxes)):
            for b in range(a + 1, len(boxes)):
                (xa, ya, wa, ha), (xb, yb, wb, hb) = boxes[a], boxes[b]
                overlaps += int(xa < xb + wb and xb < xa + wa and ya < yb + hb and yb < ya + ha)
    assert all(len(c) == 1 for c in classes.values()), "an identity never changes class"
    assert overlaps > 0, "objects must cross (boxes overlap, the nearer hides the farther)"
    returns = [k for k, frames in visible.items() if any(b - a > 1 for a, b in itertools.pairwise(frames))]
    assert returns, "at least one object leaves the view and comes back"
    assert any(frames[0] > 0 for frames in visible.values()) or any(
        frames[-1] < FRAMES - 1 for frames in visible.values()
    )
    # deterministic: the same (seed, t) gives the same frame
    again = render_sequence_frame(SEED, H, W, t=5 / RATE)
    assert np.array_equal(again.image, sequence[5].image) and np.array_equal(again.panoptic, sequence[5].panoptic)


def test_tracker_on_ground_truth_masks_keeps_identities(sequence: list) -> None:
    """Perfect masks with fresh per-frame ids: the tracker recovers the identities (high AQ, few switches); per-frame
    ids have almost no association quality and switch on every frame."""
    tracker = PanopticTracker()
    on, off = VideoPanopticMetric(SYNTHETIC), VideoPanopticMetric(SYNTHETIC)
    for scene in sequence:
        infos = tracker.update(_as_result(scene))
        gt = [{"id": s.id, "class_id": s.category_id, "track_id": s.track_id} for s in scene.segments]
        pred = [{"id": s.id, "class_id": s.category_id, "track_id": infos[s.id].track_id} for s in scene.segments]
        on.update(scene.panoptic, pred, scene.panoptic, gt)
        off.update(scene.panoptic, [{**p, "track_id": 0} for p in pred], scene.panoptic, gt)
    r_on, r_off = on.compute(), off.compute()
    assert r_on["SQ"] == pytest.approx(100.0) and r_off["SQ"] == pytest.approx(100.0)
    assert r_on["AQ"] > 80.0 and r_off["AQ"] < 10.0
    assert r_on["STQ"] > 90.0 > r_off["STQ"] + 50.0
    assert r_on["id_switches"] <= 6 < r_off["id_switches"]
    assert r_on["VPQ"] > r_off["VPQ"]
    assert r_on["VPQ_k"]["1"] == pytest.approx(r_off["VPQ_k"]["1"])  # one-frame windows do not see identities
    assert r_on["mostly_tracked"] == pytest.approx(100.0)


@pytest.mark.slow
def test_bag_evaluate_reports_video_metrics_and_writes_track_ids(tmp_path: Path) -> None:
    model = make_model_file(tmp_path / "tiny.pt", class_table=SYNTHETIC)
    bag = tmp_path / "seq"
    made = _cli(
        "bag",
        "make-synthetic",
        str(bag),
        "--sequence",
        "--frames",
        "10",
        "--width",
        "64",
        "--height",
        "48",
        "--seed",
        str(SEED),
        "-q",
    )
    assert made.returncode == 0, made.stderr
    with BagReader(bag) as r:
        gts = [mc.panoptic_from_msg(m.msg) for m in r.messages(["/camera/gt/panoptic"])]
    assert any(s.track_id > 0 for _, segs in gts for s in segs if s.is_thing)
    assert all(s.track_id == 0 for _, segs in gts for s in segs if not s.is_thing)

    reports = {}
    for mode in ("on", "off"):
        out = tmp_path / f"eval_{mode}"
        args = [
            "bag",
            "evaluate",
            str(bag),
            "--image-topic",
            "/camera/image",
            "--gt-panoptic-topic",
            "/camera/gt/panoptic",
            "--model",
            str(model),
            "--out",
            str(out),
            "--tracking",
            mode,
            "-q",
        ]
        if mode == "on":
            args += ["--write-bag", str(tmp_path / "outputs")]
        proc = _cli(*args)
        assert proc.returncode == 0, proc.stderr[-2000:]
        reports[mode] = json.loads((out / "report.json").read_text())
        if mode == "on":
            assert "STQ" in proc.stdout
    video = reports["on"]["video"]
    for key in ("STQ", "AQ", "SQ", "VPQ", "VPQ_k", "id_switches", "mostly_tracked"):
        assert key in video["tracking"] and key in video["per_frame_ids"]
    assert video["tracker"]["min_iou"] == pytest.approx(0.25)
    assert video["per_frame_ids"]["frames"] == 10
    assert reports["off"]["video"]["tracking"] is None
    assert reports["off"]["video"]["per_frame_ids"] == video["per_frame_ids"]  # same predictions, same baseline
    with BagReader(tmp_path / "outputs") as r:
        pans = [mc.panoptic_from_msg(m.msg) for m in r.messages(["/bisenetformer/panoptic"])]
    things = [s for _, segs in pans for s in segs if s.is_thing]
    assert things and all(s.track_id > 0 and s.frames_seen >= 1 for s in things)  # min_age 1: all tracked
    assert "Tracking" in (tmp_path / "eval_on" / "report.html").read_text()


@pytest.mark.slow
def test_bad_tracking_options_are_one_line_errors(tmp_path: Path) -> None:
    proc = _cli("bag", "evaluate", str(tmp_path / "none"), "--image-topic", "/x", "--track-min-age", "0")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr and "--track-min-age" in proc.stderr


@pytest.mark.slow
def test_evaluate_on_sequences_reports_video_metrics(tmp_path: Path) -> None:
    """``evaluate`` on a sequence dataset tracks per sequence (tracker reset between sequences) and reports both."""
    from bisenetformer_ros.data.datasets import SyntheticSequenceDataset, build_dataset
    from bisenetformer_ros.evaluation.evaluator import evaluate, format_table
    from bisenetformer_ros.inference import Segmenter

    model = make_model_file(tmp_path / "tiny.pt", class_table=SYNTHETIC)
    segmenter = Segmenter.from_model(model_path=str(model), device="cpu", input_size=(48, 64))
    try:
        ds = SyntheticSequenceDataset("val", num_sequences=2, frames=4, image_size=(48, 64))
        assert ds[5].sequence == ds[4].sequence != ds[3].sequence
        assert any(s.track_id for s in ds[0].segments if s.isthing)
        result = evaluate(segmenter, ds, progress=False, warmup=False)
        off = evaluate(segmenter, ds, progress=False, warmup=False, tracking=None)
    finally:
        segmenter.close()
    video = result["video"]
    assert video["per_frame_ids"]["sequences"] == 2 and video["per_frame_ids"]["frames"] == 8
    assert video["tracking"]["frames"] == 8 and video["tracker"]["max_lost_frames"] == 10
    assert off["video"]["tracking"] is None and off["video"]["per_frame_ids"] == video["per_frame_ids"]
    assert "STQ" in format_table(result, SYNTHETIC)
    with pytest.raises(ValueError, match="no --root"):
        build_dataset("synthetic_sequence", "val", root=str(tmp_path))


#: PanopticSegment as recorded before tracking (no track_id / frames_seen).
PRE_TRACKING_SEGMENT = """uint16 id
uint16 class_id
bool is_thing
float32 score
uint32 area
sensor_msgs/RegionOfInterest bbox
float32 centroid_x
float32 centroid_y
"""


def test_bags_recorded_before_tracking_still_decode(tmp_path: Path) -> None:
    """Ground truth / outputs recorded with the older PanopticSegment decode with the bag's own definition."""
    from bisenetformer_ros.bags.bagio import SENSOR_QOS, BagWriter
    from bisenetformer_ros.bags.typestore import PANOPTIC_SEGMENT, PANOPTIC_SEGMENTATION, build_typestore

    ts = build_typestore([(PANOPTIC_SEGMENT, PRE_TRACKING_SEGMENT)])
    ids = np.zeros((4, 5), np.uint16)
    ids[1:3, 1:3] = 1
    roi = ts.types["sensor_msgs/msg/RegionOfInterest"](x_offset=1, y_offset=1, height=2, width=2, do_rectify=False)
    seg = ts.types[PANOPTIC_SEGMENT](
        id=1, class_id=4, is_thing=True, score=1.0, area=4, bbox=roi, centroid_x=1.5, centroid_y=1.5
    )
    header = mc.make_header(ts, 1, "camera")
    msg = ts.types[PANOPTIC_SEGMENTATION](
        header=header, segment_ids=mc.image_msg(ts, header, ids, "mono16"), segments=[seg]
    )
    with BagWriter(tmp_path / "old", typestore=ts) as w:
        w.add_topic("/gt", PANOPTIC_SEGMENTATION, [SENSOR_QOS])
        w.write("/gt", 1, msg)
    with BagReader(tmp_path / "old") as r:
        (decoded,) = [mc.panoptic_from_msg(m.msg) for m in r.messages(["/gt"])]
    assert np.array_equal(decoded[0], ids)
    (s,) = decoded[1]
    assert (s.id, s.class_id, s.area, s.bbox, s.track_id, s.frames_seen) == (1, 4, 4, (1, 1, 2, 2), 0, 0)
