"""The panoptic tracker on hand-built sequences: label maps drawn rectangle by rectangle, so every expected id is
known in advance (a track survives a one-frame miss, crossing objects keep their ids, an object that returns after
the memory gets a new id, classes never mix, ids are never reused, memory stays bounded)."""

from __future__ import annotations

import numpy as np
import pytest

from bisenetformer_ros.model.postprocess import PanopticResult, Segment
from bisenetformer_ros.tracking import UNTRACKED, PanopticTracker, TrackerConfig

STUFF, BALL, CRATE = 0, 4, 5  # class ids (only is_thing matters to the tracker)


def frame(shape: tuple[int, int], objects: list[tuple[int, int, int, int, int]], stuff: bool = True) -> PanopticResult:
    """Objects ``(class, y, x, h, w)`` drawn in order (later ones occlude earlier ones) over one stuff segment.

    Segment ids are per frame (1 = stuff, then 2, 3, ... in drawing order), as the model's post-processing gives
    them: identity over time can only come from the tracker.
    """
    ids = np.zeros(shape, dtype=np.uint16)
    classes = {}
    if stuff:
        ids[:] = 1
        classes[1] = STUFF
    for k, (cls, y, x, h, w) in enumerate(objects, start=2):
        ids[max(0, y) : max(0, y + h), max(0, x) : max(0, x + w)] = k
        classes[k] = cls
    segs = []
    for sid, cls in classes.items():
        ys, xs = np.nonzero(ids == sid)
        if ys.size == 0:
            continue
        bbox = (int(xs.min()), int(ys.min()), int(xs.max() - xs.min() + 1), int(ys.max() - ys.min() + 1))
        segs.append(Segment(sid, cls, cls != STUFF, 0.9, int(ys.size), bbox, (float(xs.mean()), float(ys.mean()))))
    return PanopticResult(ids, segs)


def track_ids(tracker: PanopticTracker, result: PanopticResult) -> list[int]:
    """Track ids of the thing segments in drawing order (segment ids 2, 3, ...)."""
    infos = tracker.update(result)
    return [infos[s.id].track_id for s in sorted(result.segments, key=lambda s: s.id) if s.is_thing]


def test_moving_object_keeps_its_id_and_counts_frames() -> None:
    tr = PanopticTracker()
    seen = []
    for t in range(10):
        r = frame((60, 120), [(BALL, 20, 5 + 8 * t, 16, 16)])
        infos = tr.update(r)
        seen.append(infos[2])
        assert infos[1] == UNTRACKED  # stuff keeps its class as identity: not tracked
    assert {i.track_id for i in seen} == {1}
    assert [i.frames_seen for i in seen] == list(range(1, 11))


def test_track_survives_a_one_frame_miss_within_memory() -> None:
    tr = PanopticTracker(TrackerConfig(max_lost_frames=2))
    ids = []
    for t in range(8):
        objects = [] if t == 4 else [(CRATE, 10, 10 + 3 * t, 20, 20)]
        ids.append(track_ids(tr, frame((50, 80), objects)))
    assert ids[4] == []
    assert {i for f in ids for i in f} == {1}


def test_without_memory_a_missed_object_gets_a_new_id() -> None:
    tr = PanopticTracker(TrackerConfig(max_lost_frames=0))
    ids = [track_ids(tr, frame((50, 80), [] if t == 2 else [(CRATE, 10, 10, 20, 20)])) for t in range(4)]
    assert ids == [[1], [1], [], [2]]


def test_object_that_returns_after_the_memory_gets_a_new_id() -> None:
    tr = PanopticTracker(TrackerConfig(max_lost_frames=3))
    present = [True] * 3 + [False] * 4 + [True] * 2  # gone 4 frames > memory 3
    ids = [track_ids(tr, frame((40, 40), [(BALL, 10, 10, 12, 12)] if p else [])) for p in present]
    assert ids == [[1], [1], [1], [], [], [], [], [2], [2]]
    # gone exactly max_lost_frames frames: still remembered
    tr = PanopticTracker(TrackerConfig(max_lost_frames=3))
    present = [True] * 2 + [False] * 3 + [True]
    ids = [track_ids(tr, frame((40, 40), [(BALL, 10, 10, 12, 12)] if p else [])) for p in present]
    assert ids[-1] == [1]


def test_two_crossing_objects_of_one_class_keep_their_ids() -> None:
    """A moves right, B moves left on overlapping rows; B is drawn in front and hides A completely for a frame.

    After the crossing each object is on the other side: ids must follow the objects, not the positions.
    """
    tr = PanopticTracker(TrackerConfig(max_lost_frames=3))
    history = []
    for t in range(21):
        ax, bx = 10 + 6 * t, 130 - 6 * t
        r = frame((60, 160), [(BALL, 20, ax, 16, 16), (BALL, 18, bx, 20, 20)])
        infos = tr.update(r)
        a_visible = sum(s.is_thing for s in r.segments) == 2
        history.append((t, ax, bx, a_visible, infos, r))
    a_ids, b_ids = set(), set()
    for _, _ax, bx, _visible, infos, r in history:
        for s in r.segments:
            if not s.is_thing:
                continue
            # B occupies x in [bx, bx + 20); a segment whose box starts at bx is B, otherwise A (partly hidden)
            (b_ids if s.bbox[0] == bx else a_ids).add(infos[s.id].track_id)
    assert any(not v for _, _, _, v, _, _ in history), "the sequence must hide A completely at least once"
    assert a_ids == {1} and b_ids == {2}


def test_assignment_is_optimal_not_greedy() -> None:
    """Greedy (best IoU first) gives T1 the larger overlap and leaves T2 without a partner; the optimal
    assignment matches both (IoUs: T1-S1 0.43, T1-S2 0.40, T2-S1 0.40, T2-S2 0)."""
    tr = PanopticTracker(TrackerConfig(min_iou=0.3, motion=False, centroid_gate=0.0))
    assert track_ids(tr, frame((10, 14), [(BALL, 0, 0, 10, 10), (BALL, 0, 10, 10, 4)], stuff=False)) == [1, 2]
    # S1 covers x 4..13, S2 covers x 0..3 (drawn first, ids: S2 = 2, S1 = 3)
    assert track_ids(tr, frame((10, 14), [(BALL, 0, 0, 10, 4), (BALL, 0, 4, 10, 10)], stuff=False)) == [1, 2]


def test_classes_never_mix() -> None:
    tr = PanopticTracker()
    assert track_ids(tr, frame((40, 40), [(BALL, 10, 10, 12, 12)])) == [1]
    # same place, other class: a new object, and the ball's track is not continued by it
    assert track_ids(tr, frame((40, 40), [(CRATE, 10, 10, 12, 12)])) == [2]
    # the ball is back where the crate was (the crate's track overlaps it fully): the ball's own track takes it;
    # the crate, now elsewhere and far, is a new object
    assert track_ids(tr, frame((40, 40), [(BALL, 10, 10, 12, 12), (CRATE, 26, 26, 12, 12)])) == [1, 3]


def test_low_overlap_is_not_a_match() -> None:
    tr = PanopticTracker(TrackerConfig(min_iou=0.5, motion=False, centroid_gate=0.0))
    assert track_ids(tr, frame((40, 80), [(BALL, 10, 10, 10, 10)])) == [1]
    assert track_ids(tr, frame((40, 80), [(BALL, 10, 16, 10, 10)])) == [2]  # IoU 4/16 = 0.25 < 0.5
    # with the centroid stage, 6 px is 0.6 object sizes: within a gate of 0.75, beyond one of 0.5
    for gate, expected in ((0.75, [1]), (0.5, [2])):
        tr = PanopticTracker(TrackerConfig(min_iou=0.5, motion=False, centroid_gate=gate))
        track_ids(tr, frame((40, 80), [(BALL, 10, 10, 10, 10)]))
        assert track_ids(tr, frame((40, 80), [(BALL, 10, 16, 10, 10)])) == expected


def test_motion_prediction_follows_fast_objects() -> None:
    """Speeds up to 8 px per frame with a 10 px box: without prediction consecutive masks overlap by IoU 0.11 <
    min_iou; the velocity estimate from the first, slower step carries the track on."""
    steps = [0, 4, 12, 20, 28, 36, 44]
    with_motion = PanopticTracker(TrackerConfig(motion=True, centroid_gate=0.0))
    ids = [track_ids(with_motion, frame((30, 100), [(BALL, 10, 5 + s, 10, 10)])) for s in steps]
    assert {i for f in ids for i in f} == {1}
    without = PanopticTracker(TrackerConfig(motion=False, centroid_gate=0.0))
    ids = [track_ids(without, frame((30, 100), [(BALL, 10, 5 + s, 10, 10)])) for s in steps]
    assert len({i for f in ids for i in f}) > 1


def test_min_age_hides_young_tracks_and_spends_no_id_on_flicker() -> None:
    tr = PanopticTracker(TrackerConfig(min_age=3))
    infos = [tr.update(frame((40, 60), [(BALL, 10, 10, 12, 12)])) for _ in range(4)]
    assert [(i[2].track_id, i[2].frames_seen) for i in infos] == [(0, 1), (0, 2), (1, 3), (1, 4)]
    # a segment seen for one frame only (a false detection) never gets an id
    tr.update(frame((40, 60), [(BALL, 10, 10, 12, 12), (CRATE, 25, 40, 8, 8)]))
    for _ in range(3):
        tr.update(frame((40, 60), [(BALL, 10, 10, 12, 12)]))
    assert track_ids(tr, frame((40, 60), [(BALL, 10, 10, 12, 12), (CRATE, 25, 40, 8, 8)])) == [1, 0]
    assert tr.next_id == 2


def test_ids_are_never_reused_after_reset_or_size_change() -> None:
    tr = PanopticTracker()
    assert track_ids(tr, frame((40, 40), [(BALL, 5, 5, 10, 10), (CRATE, 20, 20, 10, 10)])) == [1, 2]
    tr.reset()
    assert track_ids(tr, frame((40, 40), [(BALL, 5, 5, 10, 10)])) == [3]
    # another output size: the tracks cannot be compared, they are forgotten; the counter continues
    assert track_ids(tr, frame((20, 20), [(BALL, 2, 2, 5, 5)])) == [4]


@pytest.mark.slow
def test_memory_is_bounded_over_a_long_run() -> None:
    """600 frames of objects that appear at random places and vanish: tracks and bytes stay bounded."""
    rng = np.random.default_rng(0)
    cfg = TrackerConfig(max_lost_frames=5, max_tracks=64)
    tr = PanopticTracker(cfg)
    most_tracks, most_bytes = 0, 0
    for _ in range(600):
        objs = [
            (int(rng.choice([BALL, CRATE])), int(rng.integers(0, 90)), int(rng.integers(0, 150)), 10, 10)
            for _ in range(int(rng.integers(0, 12)))
        ]
        tr.update(frame((100, 160), objs))
        most_tracks = max(most_tracks, tr.num_tracks)
        most_bytes = max(most_bytes, tr.memory_bytes())
    assert most_tracks <= cfg.max_tracks
    assert most_tracks <= 12 * (cfg.max_lost_frames + 1)
    assert most_bytes <= 64 * (10 * 10 + 128)
    assert tr.next_id > 500  # many objects came and went, every one with a fresh id


def test_config_is_validated() -> None:
    for bad in (
        {"min_iou": 0.0},
        {"min_iou": 1.5},
        {"max_lost_frames": -1},
        {"min_age": 0},
        {"max_tracks": 0},
        {"centroid_gate": -1.0},
    ):
        with pytest.raises(ValueError, match="tracking"):
            TrackerConfig(**bad)


def test_segments_without_pixels_and_stuff_are_untracked() -> None:
    r = frame((20, 20), [(BALL, 2, 2, 5, 5)])
    r.segments.append(Segment(9, BALL, True, 0.5, 0, (0, 0, 0, 0), (0.0, 0.0)))  # in the table, not in the map
    infos = PanopticTracker().update(r)
    assert infos[9] == UNTRACKED and infos[1] == UNTRACKED and infos[2].track_id == 1


def test_large_objects_iou_on_the_subgrid_is_close_to_exact() -> None:
    """Crops above EXACT_PIXELS are read on a subgrid: compare with the exact IoU of two large discs."""
    from bisenetformer_ros.tracking.tracker import EXACT_PIXELS

    h, w = 400, 600
    yy, xx = np.mgrid[0:h, 0:w]

    def disc(cy: float, cx: float, r: float) -> PanopticResult:
        ids = np.ones((h, w), dtype=np.uint16)
        ids[(yy - cy) ** 2 + (xx - cx) ** 2 <= r * r] = 2
        ys, xs = np.nonzero(ids == 2)
        bbox = (int(xs.min()), int(ys.min()), int(xs.max() - xs.min() + 1), int(ys.max() - ys.min() + 1))
        segs = [
            Segment(1, STUFF, False, 1.0, int((ids == 1).sum()), (0, 0, w, h), (0.0, 0.0)),
            Segment(2, BALL, True, 1.0, int(ys.size), bbox, (float(xs.mean()), float(ys.mean()))),
        ]
        return PanopticResult(ids, segs)

    a, b = disc(200, 250, 120), disc(210, 300, 120)
    assert a.segments[1].bbox[2] * a.segments[1].bbox[3] > 4 * EXACT_PIXELS  # really on the subgrid
    exact = ((a.id_map == 2) & (b.id_map == 2)).sum() / ((a.id_map == 2) | (b.id_map == 2)).sum()
    tr = PanopticTracker(TrackerConfig(motion=False))
    tr.update(a)
    tr._frame += 1  # compare with the next frame without updating the tracks
    est = tr._iou(b.id_map, [b.segments[1]], tr._frame)[0, 0]
    assert abs(est - exact) < 0.01


@pytest.mark.slow
def test_benchmark_script_prints_its_figures() -> None:
    """tools/bench_tracking.py (the README's tracker cost) runs end to end; bad sizes are one line, exit code 2."""
    import subprocess
    import sys
    from pathlib import Path

    script = str(Path(__file__).resolve().parents[1] / "tools" / "bench_tracking.py")
    args = [sys.executable, script, "--height", "90", "--width", "160", "--segments", "12", "--frames", "12"]
    proc = subprocess.run([*args, "--repeat", "1"], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "tracker update at 160x90" in proc.stdout and "p50" in proc.stdout and "MB" in proc.stdout
    bad = subprocess.run([sys.executable, script, "--frames", "1"], capture_output=True, text=True, timeout=300)
    assert bad.returncode == 2 and len(bad.stderr.strip().splitlines()) == 1


def test_panoptic_colours_follow_the_track_not_the_segment_id() -> None:
    """``panoptic_color`` by track: the same track id keeps its colour although its segment id changes; an
    untracked thing shows its class colour; without ``color_by_track`` the per-segment colours of before."""
    from bisenetformer_ros.data.synthetic import SYNTHETIC
    from bisenetformer_ros.inference.outputs import instance_color, render_outputs
    from bisenetformer_ros.model.postprocess import SegmentationOutput
    from bisenetformer_ros.tracking import TrackInfo

    r = frame((20, 30), [(BALL, 2, 2, 6, 6), (CRATE, 10, 15, 6, 6)])
    image = np.zeros((20, 30, 3), dtype=np.uint8)
    out = SegmentationOutput(semantic=None, panoptic=r)
    tracks = {1: UNTRACKED, 2: TrackInfo(41, 5), 3: TrackInfo(0, 1)}
    colored = render_outputs(out, image, SYNTHETIC, outputs=["panoptic", "panoptic_color"], tracks=tracks)
    assert colored.tracks is tracks
    assert tuple(colored.panoptic_color[4, 4]) == instance_color(41, BALL, SYNTHETIC)
    assert tuple(colored.panoptic_color[12, 17]) == tuple(SYNTHETIC.colors[CRATE])
    plain = render_outputs(out, image, SYNTHETIC, outputs=["panoptic_color"], tracks=tracks, color_by_track=False)
    assert tuple(plain.panoptic_color[4, 4]) == instance_color(2, BALL, SYNTHETIC)
