"""mIoU and PQ/SQ/RQ against torchmetrics on random maps, and against hand-computed small cases.

torchmetrics' PanopticQuality differs from panopticapi (whose definitions ours follow) in two corner cases, both
about *predicted* void pixels: it subtracts ``|G n void_pred|`` from the union as well, and it does not count a
ground-truth segment as a false negative when more than half of it is predicted void. The random comparison
therefore uses predictions without void pixels (ground truth has void), where both definitions coincide; the
predicted-void case is checked by hand below (``test_panoptic_predicted_void_follows_panopticapi``). torchmetrics
has no crowd regions; the crowd rules are checked by hand too.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from torchmetrics.classification import MulticlassAccuracy, MulticlassJaccardIndex
from torchmetrics.detection import PanopticQuality

from bisenetformer_ros.data.classes import ClassTable
from bisenetformer_ros.data.sample import SegmentInfo
from bisenetformer_ros.evaluation.metrics import PanopticMetric, SemanticMetric

IGN = 255


def _table(is_thing: tuple[bool, ...]) -> ClassTable:
    k = len(is_thing)
    return ClassTable(
        dataset="test",
        names=tuple(f"c{i}" for i in range(k)),
        colors=tuple((10 * i, 0, 0) for i in range(k)),
        is_thing=is_thing,
    )


ROAD_CAR = ClassTable("road_car", ("road", "car"), ((128, 64, 128), (0, 0, 142)), (False, True))


# ------------------------------------------------------------------------------------------------------ semantic
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_semantic_matches_torchmetrics(seed: int) -> None:
    rng = np.random.default_rng(seed)
    k = 7
    metric = SemanticMetric(k, IGN)
    jac = MulticlassJaccardIndex(num_classes=k, average=None, ignore_index=IGN)
    acc = MulticlassAccuracy(num_classes=k, average="micro", ignore_index=IGN)
    for _ in range(4):
        # Class 6 never appears in either map (absent); class 5 only in predictions (IoU 0, present).
        gt = rng.integers(0, 5, size=(20, 30))
        gt[rng.random(gt.shape) < 0.15] = IGN
        pred = np.where(rng.random(gt.shape) < 0.6, np.where(gt == IGN, 0, gt), rng.integers(0, 6, size=gt.shape))
        metric.update(pred.astype(np.uint8), gt.astype(np.uint8))
        jac.update(torch.from_numpy(pred), torch.from_numpy(gt))
        acc.update(torch.from_numpy(pred), torch.from_numpy(gt))
    res = metric.compute()
    ref = jac.compute().double().numpy()  # fractions; torchmetrics computes in float32
    cm = metric.confusion
    union = cm.sum(0) + cm.sum(1) - np.diag(cm)
    for c in range(k):
        if union[c] > 0:
            assert res["per_class_iou"][c] / 100 == pytest.approx(ref[c], abs=1e-6)
        else:  # torchmetrics reports 0 (zero_division); ours leaves the class out
            assert res["per_class_iou"][c] is None
    assert res["per_class_iou"][6] is None and res["per_class_iou"][5] == 0.0
    assert res["mIoU"] / 100 == pytest.approx(ref[union > 0].mean(), abs=1e-6)
    assert res["pixel_accuracy"] / 100 == pytest.approx(float(acc.compute()), abs=1e-6)
    json.dumps(res)  # JSON-ready: no NaN, no numpy types


def test_semantic_hand_computed() -> None:
    gt = np.array([[0, 0, 1, 1], [0, 0, 1, 1], [2, 2, IGN, IGN], [2, 2, IGN, IGN]])
    pred = np.array([[0, 1, 1, 1], [0, 0, 1, 1], [2, 0, 0, 2], [2, 2, 1, 9]])
    m = SemanticMetric(4, IGN)
    m.update(pred, gt)
    r = m.compute()
    # class 0: TP 3, FP 1 (pixel (2,1)), FN 1 (pixel (0,1)) -> 3/5; class 1: TP 4, FP 1 -> 4/5; class 2: TP 3, FN 1
    # -> 3/4; class 3: absent. Predictions on ignored pixels (1 and 9 in row 3) count for nothing.
    assert r["per_class_iou"] == pytest.approx([60.0, 80.0, 75.0, None])
    assert r["mIoU"] == pytest.approx((60 + 80 + 75) / 3)
    assert r["pixel_accuracy"] == pytest.approx(100 * 10 / 12)
    assert r["mean_accuracy"] == pytest.approx(100 * (3 / 4 + 1 + 3 / 4) / 3)
    assert r["num_pixels"] == 12

    # A prediction outside the table is wrong for its pixel's class but a false positive of no class.
    pred2 = pred.copy()
    pred2[0, 0] = 9
    m2 = SemanticMetric(4, IGN)
    m2.update(pred2, gt)
    assert m2.compute()["per_class_iou"][:3] == pytest.approx([40.0, 80.0, 75.0])


def test_semantic_merge_and_empty() -> None:
    rng = np.random.default_rng(5)
    maps = [(rng.integers(0, 3, (8, 8)), rng.integers(0, 3, (8, 8))) for _ in range(4)]
    whole, a, b = SemanticMetric(3), SemanticMetric(3), SemanticMetric(3)
    for i, (p, g) in enumerate(maps):
        whole.update(p, g)
        (a if i < 2 else b).update(p, g)
    assert a.merge(b).compute() == whole.compute()
    empty = SemanticMetric(3).compute()
    assert empty["mIoU"] is None and empty["pixel_accuracy"] is None
    with pytest.raises(ValueError, match="differ in shape"):
        SemanticMetric(3).update(np.zeros((2, 2)), np.zeros((2, 3)))
    with pytest.raises(ValueError, match="merge"):
        SemanticMetric(3).merge(SemanticMetric(4))


# ------------------------------------------------------------------------------------------------------ panoptic
def _random_pair(rng: np.random.Generator, k: int, things: set[int]) -> tuple[np.ndarray, np.ndarray]:
    """(category, instance) maps [H,W,2] for ground truth (with void = category 255) and a perturbed prediction."""
    cells = 6
    cat = rng.integers(0, k, (cells, cells))
    inst = rng.integers(1, 4, (cells, cells))
    inst[~np.isin(cat, list(things))] = 0
    cat[rng.random((cells, cells)) < 0.12] = IGN
    gt = np.stack([np.kron(cat, np.ones((4, 4), int)), np.kron(inst, np.ones((4, 4), int))], -1)
    pred = gt.copy()
    if rng.random() < 0.5:
        pred = np.roll(pred, int(rng.integers(1, 3)), axis=int(rng.integers(0, 2)))
    for _ in range(3):  # random rectangles re-labelled
        y, x = rng.integers(0, 20, 2)
        h, w = rng.integers(2, 8, 2)
        c = int(rng.integers(0, k))
        pred[y : y + h, x : x + w] = (c, int(rng.integers(1, 4)) if c in things else 0)
    noise = rng.random(pred.shape[:2]) < 0.08
    pred[noise, 0] = rng.integers(0, k, int(noise.sum()))
    void = pred[..., 0] == IGN  # no predicted void: see the module docstring
    pred[void, 0] = rng.integers(0, k, int(void.sum()))
    stuff = ~np.isin(pred[..., 0], list(things))
    pred[stuff, 1] = 0
    pred[~stuff & (pred[..., 1] == 0), 1] = 1
    return gt, pred


def _to_ids(pairs: np.ndarray, k: int, things: set[int]) -> tuple[np.ndarray, list[dict]]:
    """Segment-id map (0 = void) and segment table of a (category, instance) map."""
    ids = np.zeros(pairs.shape[:2], np.int32)
    segments = []
    keys = pairs[..., 0] * 1000 + pairs[..., 1]
    for n, key in enumerate(np.unique(keys[pairs[..., 0] < k]).tolist(), start=1):
        ids[keys == key] = n * 7  # non-contiguous ids on purpose
        c = key // 1000
        segments.append({"id": n * 7, "category_id": c, "isthing": c in things})
    return ids, segments


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_panoptic_matches_torchmetrics(seed: int) -> None:
    rng = np.random.default_rng(seed)
    k = 6
    things = {3, 4, 5}
    stuffs = set(range(k)) - things
    table = _table(tuple(c in things for c in range(k)))
    ours = PanopticMetric(table)
    ref = PanopticQuality(things=things, stuffs=stuffs, return_sq_and_rq=True)
    ref_per_class = PanopticQuality(things=things, stuffs=stuffs, return_sq_and_rq=True, return_per_class=True)
    for _ in range(5):
        gt, pred = _random_pair(rng, k, things)
        ref.update(torch.from_numpy(pred)[None], torch.from_numpy(gt)[None])
        ref_per_class.update(torch.from_numpy(pred)[None], torch.from_numpy(gt)[None])
        p_ids, p_segs = _to_ids(pred, k, things)
        g_ids, g_segs = _to_ids(gt, k, things)
        ours.update(p_ids, p_segs, g_ids, g_segs)
    # torchmetrics orders categories things first, then stuff (each sorted).
    order = sorted(things) + sorted(stuffs)
    np.testing.assert_array_equal(ours.tp[order], ref.true_positives.numpy())
    np.testing.assert_array_equal(ours.fp[order], ref.false_positives.numpy())
    np.testing.assert_array_equal(ours.fn[order], ref.false_negatives.numpy())
    np.testing.assert_allclose(ours.iou_sum[order], ref.iou_sum.numpy(), atol=1e-9)
    assert ours.tp.sum() > 0 and ours.fp.sum() > 0 and ours.fn.sum() > 0  # the maps exercise all three
    # Compared as fractions: torchmetrics divides in float32, so percent figures differ from ours at ~1e-6.
    pq, sq, rq = (float(v) for v in ref.compute())
    res = ours.compute()
    assert res["PQ"] / 100 == pytest.approx(pq, abs=1e-6)
    assert res["SQ"] / 100 == pytest.approx(sq, abs=1e-6)
    assert res["RQ"] / 100 == pytest.approx(rq, abs=1e-6)
    per = ref_per_class.compute().double().numpy()  # [C, 3] in torchmetrics order
    for suffix, group in (("_th", things), ("_st", stuffs)):
        cont = [order.index(c) for c in sorted(group)]
        counted = [i for i in cont if (ref.true_positives + ref.false_positives + ref.false_negatives)[i] > 0]
        assert res[f"PQ{suffix}"] / 100 == pytest.approx(per[counted, 0].mean(), abs=1e-6)
        assert res[f"SQ{suffix}"] / 100 == pytest.approx(per[counted, 1].mean(), abs=1e-6)
        assert res[f"RQ{suffix}"] / 100 == pytest.approx(per[counted, 2].mean(), abs=1e-6)
    json.dumps(res)


def test_panoptic_hand_computed() -> None:
    gt = np.array([[1, 1, 2, 2], [1, 1, 2, 2], [1, 1, 3, 3], [0, 0, 3, 3]])
    pred = np.array([[1, 1, 1, 2], [1, 1, 1, 2], [1, 1, 4, 4], [1, 1, 4, 4]])
    gt_segs = [{"id": 1, "category_id": 0}, {"id": 2, "category_id": 1}, {"id": 3, "category_id": 1}]
    pred_segs = [
        {"id": 1, "class_id": 0, "is_thing": False},
        {"id": 2, "class_id": 1, "is_thing": True},
        {"id": 4, "class_id": 1, "is_thing": True},
    ]
    m = PanopticMetric(ROAD_CAR)
    m.update(pred, pred_segs, gt, gt_segs)
    r = m.compute()
    # road: |P|=10, |G|=6, |PnG|=6, |P n void|=2 -> IoU 6/(10+6-6-2)=0.75 -> TP (0.6 without the void rule).
    # car: G2 (4 px) vs P2 (2 px): IoU 2/4 = 0.5, not > 0.5 -> FN + FP; G3 = P4 exactly -> TP with IoU 1.
    assert r["per_class"]["road"] == {"PQ": 75.0, "SQ": 75.0, "RQ": 100.0, "TP": 1, "FP": 0, "FN": 0}
    assert r["per_class"]["car"] == {"PQ": 50.0, "SQ": 100.0, "RQ": 50.0, "TP": 1, "FP": 1, "FN": 1}
    assert r["PQ"] == pytest.approx(62.5) and r["SQ"] == pytest.approx(87.5) and r["RQ"] == pytest.approx(75.0)
    assert r["PQ_th"] == pytest.approx(50.0) and r["PQ_st"] == pytest.approx(75.0)
    assert (r["TP"], r["FP"], r["FN"], r["n"], r["n_th"], r["n_st"]) == (2, 1, 1, 2, 1, 1)


def test_panoptic_void_prediction_not_false_positive() -> None:
    gt = np.array([[0, 0, 0, 0], [0, 0, 0, 0], [7, 7, 7, 7], [7, 7, 7, 7]])
    pred = np.array([[1, 1, 3, 3], [1, 1, 2, 2], [3, 3, 2, 2], [3, 3, 3, 3]])
    gt_segs = [SegmentInfo(id=7, category_id=0, isthing=False)]
    pred_segs = [{"id": 1, "category_id": 1}, {"id": 2, "category_id": 1}, {"id": 3, "category_id": 0}]
    m = PanopticMetric(ROAD_CAR)
    m.update(pred, pred_segs, gt, gt_segs)
    r = m.compute()
    # car 1: all 4 pixels in void -> ignored; car 2: exactly 50 % void -> a false positive (rule is > 50 %).
    # road: |P|=8 (2 of them void), |G|=8, |PnG|=6 -> IoU 6/(8+8-6-2) = 0.75.
    assert r["per_class"]["car"] == {"PQ": 0.0, "SQ": 0.0, "RQ": 0.0, "TP": 0, "FP": 1, "FN": 0}
    assert r["per_class"]["road"]["SQ"] == pytest.approx(75.0)
    assert r["PQ"] == pytest.approx(37.5)


def test_panoptic_predicted_void_follows_panopticapi() -> None:
    """Predicted void stays in the union (panopticapi); torchmetrics would subtract it and call both a match."""
    gt = np.full((4, 4), 5)
    gt_segs = [{"id": 5, "category_id": 0}]
    pred = np.zeros((4, 4), int)
    pred.flat[:10] = 1  # 10 of 16 pixels road, 6 predicted void
    m = PanopticMetric(ROAD_CAR)
    m.update(pred, [{"id": 1, "category_id": 0}], gt, gt_segs)
    assert m.compute()["per_class"]["road"]["SQ"] == pytest.approx(62.5)  # 10 / 16
    pred.flat[7:10] = 0  # 7 of 16: IoU 0.4375 -> no match, FN and FP (torchmetrics: IoU 1, and no FN)
    m2 = PanopticMetric(ROAD_CAR)
    m2.update(pred, [{"id": 1, "category_id": 0}], gt, gt_segs)
    road = m2.compute()["per_class"]["road"]
    assert (road["TP"], road["FP"], road["FN"]) == (0, 1, 1)
    ref = PanopticQuality(things={1}, stuffs={0}, allow_unknown_preds_category=True)
    to_pairs = torch.from_numpy(np.stack([np.where(pred > 0, 0, 9), np.zeros_like(pred)], -1))[None]
    ref.update(to_pairs, torch.zeros(1, 4, 4, 2, dtype=torch.long))
    assert int(ref.true_positives[1]) == 1  # documents the difference (index 1 = stuff class 0)


def test_panoptic_crowd() -> None:
    # GT: car crowd (cols 0-1) and road (cols 2-3).
    gt = np.array([[9, 9, 1, 1]] * 4)
    pred = np.array([[2, 2, 4, 4], [2, 2, 4, 4], [2, 2, 4, 4], [3, 3, 3, 3]])
    pred_segs = [{"id": 2, "category_id": 1}, {"id": 3, "category_id": 1}, {"id": 4, "category_id": 0}]

    def run(crowd_class: int) -> dict:
        gt_segs = [{"id": 9, "category_id": crowd_class, "iscrowd": 1}, {"id": 1, "category_id": 0, "iscrowd": 0}]
        m = PanopticMetric(ROAD_CAR)
        m.update(pred, pred_segs, gt, gt_segs)
        return m.compute()

    r = run(crowd_class=1)
    # car 2 lies entirely in the car crowd -> not a FP; car 3 is 50 % crowd -> FP. The crowd is never a FN.
    assert r["per_class"]["car"]["TP"] == 0 and r["per_class"]["car"]["FP"] == 1 and r["per_class"]["car"]["FN"] == 0
    # road: pred 4 (6 px) vs GT road (8 px): IoU 0.75 -> TP
    assert r["per_class"]["road"]["TP"] == 1 and r["per_class"]["road"]["SQ"] == pytest.approx(75.0)
    # A crowd region of another class absorbs nothing; it is not void either.
    r2 = run(crowd_class=0)
    assert r2["per_class"]["car"]["FP"] == 2 and r2["per_class"]["car"]["FN"] == 0
    assert r2["per_class"]["road"]["TP"] == 1 and r2["per_class"]["road"]["FN"] == 0


def test_panoptic_merge_and_edge_cases() -> None:
    rng = np.random.default_rng(3)
    things = {1}
    pairs = [_random_pair(rng, 2, things) for _ in range(4)]
    whole, a, b = PanopticMetric(ROAD_CAR), PanopticMetric(ROAD_CAR), PanopticMetric(ROAD_CAR)
    for i, (gt, pred) in enumerate(pairs):
        args = (*_to_ids(pred, 2, things), *_to_ids(gt, 2, things))
        whole.update(*args)
        (a if i < 2 else b).update(*args)
    merged = a.merge(b)
    for name in ("tp", "fp", "fn"):
        np.testing.assert_array_equal(getattr(merged, name), getattr(whole, name))
    np.testing.assert_allclose(merged.iou_sum, whole.iou_sum, rtol=1e-12)  # summation order differs
    assert merged.compute()["PQ"] == pytest.approx(whole.compute()["PQ"], abs=1e-9)
    empty = PanopticMetric(ROAD_CAR).compute()
    assert empty["PQ"] == 0.0 and empty["n"] == 0 and empty["per_class"]["car"]["PQ"] is None
    # Ids present in a map without a segment, and segments of categories outside the table, are void.
    m = PanopticMetric(ROAD_CAR)
    m.update(
        np.array([[1, 1], [1, 1]]),
        [{"id": 1, "category_id": 0}],
        np.array([[3, 3], [4, 4]]),
        [{"id": 3, "category_id": IGN}],
    )
    road = m.compute()["per_class"]["road"]
    assert (road["TP"], road["FP"], road["FN"]) == (0, 0, 0)  # the prediction lies entirely in void
    with pytest.raises(ValueError, match="category_id"):
        PanopticMetric(ROAD_CAR).update(np.zeros((2, 2)), [{"id": 1}], np.zeros((2, 2)), [])
    with pytest.raises(ValueError, match="differ in shape"):
        PanopticMetric(ROAD_CAR).update(np.zeros((2, 2)), [], np.zeros((3, 2)), [])
