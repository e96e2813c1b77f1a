"""Video metrics (STQ / AQ / SQ, VPQ^k, ID switches, mostly tracked) on hand-computed cases, and VPQ^1 = PQ."""

from __future__ import annotations

import math

import numpy as np
import pytest

from bisenetformer_ros.data.classes import ClassTable
from bisenetformer_ros.evaluation.metrics import PanopticMetric
from bisenetformer_ros.evaluation.video import VideoPanopticMetric

ROAD, CAR = 0, 1
TABLE = ClassTable("road_car", ("road", "car"), ((128, 64, 128), (0, 0, 142)), (False, True))


def seg(sid: int, cls: int, track: int = 0, crowd: bool = False) -> dict:
    return {"id": sid, "class_id": cls, "track_id": track, "iscrowd": crowd}


def row(*values: int) -> np.ndarray:
    """A one-row id map."""
    return np.array([values], dtype=np.uint16)


def test_perfect_tracking_scores_100_everywhere() -> None:
    m = VideoPanopticMetric(TABLE, window_sizes=(1, 2, 3))
    for x in range(3):
        ids = np.ones((4, 8), dtype=np.uint16)
        ids[1:3, x : x + 2] = 2
        ids[1:3, 5:7] = 3
        segs = [seg(1, ROAD), seg(2, CAR, 7), seg(3, CAR, 9)]
        pred_segs = [seg(1, ROAD), seg(2, CAR, 1), seg(3, CAR, 2)]  # other numbers, same identities
        m.update(ids, pred_segs, ids, segs)
    r = m.compute()
    assert r["STQ"] == pytest.approx(100.0) and r["AQ"] == pytest.approx(100.0) and r["SQ"] == pytest.approx(100.0)
    assert r["VPQ"] == pytest.approx(100.0) and set(r["VPQ_k"]) == {"1", "2", "3"}
    assert r["windows"] == {"1": 3, "2": 2, "3": 1}
    assert r["id_switches"] == 0 and r["gt_tracks"] == 2 and r["mostly_tracked"] == pytest.approx(100.0)


def test_an_id_switch_halves_aq_and_breaks_the_two_frame_tube() -> None:
    """One car (4 px) over two frames, perfectly segmented, predicted as track 1 then track 2.

    AQ = 1/8 * (4 * 4/8 + 4 * 4/8) = 0.5; SQ = 1; STQ = sqrt(0.5). VPQ^1: everything matches (100). VPQ^2: the
    road tube matches; the car tube (8 px) meets two predicted tubes of 4 px (IoU 0.5, not > 0.5): FN 1, FP 2, car
    PQ 0, so VPQ^2 = (100 + 0) / 2 = 50; VPQ = 75. One ID switch; the track is matched in both frames (MT).
    """
    ids = row(1, 1, 2, 2, 2, 2, 1, 1)
    m = VideoPanopticMetric(TABLE, window_sizes=(1, 2))
    m.update(ids, [seg(1, ROAD), seg(2, CAR, 1)], ids, [seg(1, ROAD), seg(2, CAR, 5)])
    m.update(ids, [seg(1, ROAD), seg(2, CAR, 2)], ids, [seg(1, ROAD), seg(2, CAR, 5)])
    r = m.compute()
    assert r["AQ"] == pytest.approx(50.0)
    assert r["SQ"] == pytest.approx(100.0)
    assert r["STQ"] == pytest.approx(100.0 * math.sqrt(0.5))
    assert r["VPQ_k"] == {"1": pytest.approx(100.0), "2": pytest.approx(50.0)}
    assert r["VPQ"] == pytest.approx(75.0)
    assert r["id_switches"] == 1 and r["mostly_tracked"] == pytest.approx(100.0)
    # per-frame ids (tracking off) score the same here: each frame's car is its own predicted tube
    off = VideoPanopticMetric(TABLE, window_sizes=(1, 2))
    for _ in range(2):
        off.update(ids, [seg(1, ROAD), seg(2, CAR)], ids, [seg(1, ROAD), seg(2, CAR, 5)])
    r_off = off.compute()
    assert (r_off["AQ"], r_off["VPQ"], r_off["id_switches"]) == (pytest.approx(50.0), pytest.approx(75.0), 1)


def test_aq_with_partial_overlaps_by_hand() -> None:
    """Ground-truth car g = x 0..9 (10 px). Prediction: p1 = x 0..5 and x 10..11 (8 px, 6 on g), p2 = x 6..8 (3 px
    on g), x 9 road. AQ = 1/10 * (6 * 6/12 + 3 * 3/10) = 0.39. Classes: car TP 9, gt 10, pred 11 -> IoU 0.75;
    road TP 8, gt 10, pred 9 -> IoU 8/11; SQ = (0.75 + 8/11) / 2; STQ = sqrt(AQ * SQ)."""
    gt = row(*([2] * 10 + [1] * 10))
    pred = row(*([3] * 6 + [4] * 3 + [1] + [3] * 2 + [1] * 8))
    m = VideoPanopticMetric(TABLE, window_sizes=(1,))
    m.update(pred, [seg(1, ROAD), seg(3, CAR, 1), seg(4, CAR, 2)], gt, [seg(1, ROAD), seg(2, CAR, 1)])
    r = m.compute()
    sq = (0.75 + 8 / 11) / 2
    assert r["AQ"] == pytest.approx(39.0)
    assert r["SQ"] == pytest.approx(100 * sq)
    assert r["STQ"] == pytest.approx(100 * math.sqrt(0.39 * sq))


def test_void_ground_truth_is_out_of_the_predicted_tube() -> None:
    """The predicted car covers the 4 car pixels and 4 void pixels: AQ counts only the non-void part (IoU 1)."""
    gt = row(1, 2, 2, 2, 2, 0, 0, 0, 0, 1)
    pred = row(1, 2, 2, 2, 2, 2, 2, 2, 2, 1)
    m = VideoPanopticMetric(TABLE, window_sizes=(1,))
    m.update(pred, [seg(1, ROAD), seg(2, CAR, 3)], gt, [seg(1, ROAD), seg(2, CAR, 1)])
    r = m.compute()
    assert r["AQ"] == pytest.approx(100.0)
    # PQ rule: union without the void part -> IoU 4/4, a TP
    assert r["VPQ_k"]["1"] == pytest.approx(100.0)


def test_misses_are_not_switches_and_decide_mostly_tracked() -> None:
    gt_ids = row(1, 2, 2, 1)
    gt = [seg(1, ROAD), seg(2, CAR, 1)]
    m = VideoPanopticMetric(TABLE, window_sizes=(1,))
    hit, miss = row(1, 2, 2, 1), row(1, 1, 1, 1)
    for pred in (hit, miss, hit, miss, miss):  # matched 2 of 5 frames, same predicted id both times
        m.update(pred, [seg(1, ROAD), seg(2, CAR, 4)], gt_ids, gt)
    r = m.compute()
    assert r["id_switches"] == 0
    assert r["mostly_tracked"] == pytest.approx(0.0) and r["mostly_lost"] == pytest.approx(0.0)  # 40 %
    m = VideoPanopticMetric(TABLE, window_sizes=(1,))
    for pred in (hit, miss, miss, miss, miss, miss):  # 1 of 6 < 20 %
        m.update(pred, [seg(1, ROAD), seg(2, CAR, 4)], gt_ids, gt)
    assert m.compute()["mostly_lost"] == pytest.approx(100.0)


def test_sequences_are_separate() -> None:
    """The same ids in two sequences are different tubes, and no window spans the boundary."""
    ids = row(1, 2, 2, 1)
    m = VideoPanopticMetric(TABLE, window_sizes=(1, 2))
    m.update(ids, [seg(1, ROAD), seg(2, CAR, 1)], ids, [seg(1, ROAD), seg(2, CAR, 1)])
    m.new_sequence()
    m.update(ids, [seg(1, ROAD), seg(2, CAR, 1)], ids, [seg(1, ROAD), seg(2, CAR, 1)])
    r = m.compute()
    assert r["windows"] == {"1": 2, "2": 0} and r["VPQ_k"]["2"] is None and r["VPQ"] == pytest.approx(100.0)
    assert r["gt_tracks"] == 2 and r["sequences"] == 2 and r["AQ"] == pytest.approx(100.0)


def test_ground_truth_without_identity_is_left_out_of_aq() -> None:
    ids = row(1, 2, 2, 1)
    m = VideoPanopticMetric(TABLE, window_sizes=(1,))
    m.update(ids, [seg(1, ROAD), seg(2, CAR, 1)], ids, [seg(1, ROAD), seg(2, CAR, 0)])
    r = m.compute()
    assert r["AQ"] is None and r["STQ"] is None and r["SQ"] == pytest.approx(100.0) and r["gt_tracks"] == 0


def test_vpq1_equals_pq_on_random_frames() -> None:
    """With windows of one frame, VPQ is PQ (valid panoptic frames: one segment per stuff class, unique thing ids)."""
    rng = np.random.default_rng(3)
    table = ClassTable("t4", ("a", "b", "c", "d"), ((1, 1, 1),) * 4, (False, False, True, True))
    video = VideoPanopticMetric(table, window_sizes=(1,))
    pq = PanopticMetric(table)
    gt_segs = [seg(1, 0), seg(2, 1), seg(3, 2, 1), seg(4, 2, 2), seg(5, 3, 1), seg(6, 3, 2)]
    pred_segs = [seg(1, 0), seg(2, 1), seg(3, 2, 1), seg(4, 3, 1), seg(5, 2, 2), seg(6, 3, 2)]
    for _ in range(6):
        gt = rng.integers(0, 7, (12, 16)).astype(np.uint16)
        pred = gt.copy()
        flip = rng.random(gt.shape) < 0.3
        pred[flip] = rng.integers(0, 7, int(flip.sum()))
        video.update(pred, pred_segs, gt, gt_segs)
        pq.update(pred, pred_segs, gt, gt_segs)
    assert video.compute()["VPQ_k"]["1"] == pytest.approx(pq.compute()["PQ"])


def test_window_sizes_are_validated() -> None:
    with pytest.raises(ValueError, match="window"):
        VideoPanopticMetric(TABLE, window_sizes=(0, 5))
