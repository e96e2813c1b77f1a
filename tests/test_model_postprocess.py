"""Pre-processing and post-processing on hand-built inputs with known answers."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from bisenetformer_ros.data.classes import ClassTable
from bisenetformer_ros.model import PostprocessConfig, PreprocessMeta, Preprocessor, postprocess_batch
from bisenetformer_ros.model.preprocess import IMAGENET_MEAN, IMAGENET_STD

torch.set_num_threads(1)

TABLE = ClassTable(
    dataset="toy",
    names=("road", "car", "person"),
    colors=((128, 64, 128), (0, 0, 142), (220, 20, 60)),
    is_thing=(False, True, True),
)
ON, OFF = 12.0, -12.0  # mask logits: sigmoid = 0.999994 / 0.000006


def class_logits(cls: int, score: float, num_classes: int = 3) -> list[float]:
    """Logits whose softmax puts ``score`` on ``cls`` (index ``num_classes`` = no-object) and spreads the rest."""
    rest = (1.0 - score) / num_classes
    return [math.log(score) if i == cls else math.log(rest) for i in range(num_classes + 1)]


def rect(h: int, w: int, rows: slice, cols: slice) -> torch.Tensor:
    m = torch.full((h, w), OFF)
    m[rows, cols] = ON
    return m


def meta(h: int, w: int) -> PreprocessMeta:
    return PreprocessMeta(orig_size=(h, w), resized_size=(h, w), padded_size=(h, w))


# ---------------------------------------------------------------------------------------------------- preprocess
def test_preprocess_normalises_and_pads_with_zero() -> None:
    img = np.zeros((30, 45, 3), dtype=np.uint8)
    img[..., 0] = 200
    img[..., 2] = 10
    batch, metas = Preprocessor()([img])
    assert batch.shape == (1, 3, 32, 64) and batch.dtype == torch.float32
    assert metas[0] == PreprocessMeta(orig_size=(30, 45), resized_size=(30, 45), padded_size=(32, 64))
    expected = [(v - m) / s for v, m, s in zip((200, 0, 10), IMAGENET_MEAN, IMAGENET_STD, strict=True)]
    for c in range(3):
        assert torch.allclose(batch[0, c, :30, :45], torch.tensor(expected[c]), atol=1e-5)
    assert (batch[0, :, 30:, :] == 0).all() and (batch[0, :, :, 45:] == 0).all()


def test_preprocess_resize_policies_and_mixed_sizes() -> None:
    a = np.full((100, 200, 3), 128, dtype=np.uint8)
    b = np.full((50, 60, 3), 7, dtype=np.uint8)
    batch, metas = Preprocessor(input_size=64)([a, b])  # short side -> 64
    assert metas[0].resized_size == (64, 128) and metas[1].resized_size == (64, 77)
    assert batch.shape == (2, 3, 64, 128)
    assert all(m.padded_size == (64, 128) for m in metas)
    batch, metas = Preprocessor(input_size=(40, 50))([a])
    assert metas[0].resized_size == (40, 50) and batch.shape == (1, 3, 64, 64)
    t = torch.from_numpy(np.stack([a, a])).permute(0, 3, 1, 2).contiguous()
    batch_t, metas_t = Preprocessor()(t)
    batch_n, _ = Preprocessor()([a, a])
    assert torch.equal(batch_t, batch_n) and metas_t[0].orig_size == (100, 200)


@pytest.mark.parametrize(
    ("bad", "match"),
    [
        ([np.zeros((10, 10), np.uint8)], "HxWx3"),
        ([np.zeros((10, 10, 3), np.float32)], "uint8"),
        ([np.zeros((0, 10, 3), np.uint8)], "empty"),
        ([], "no images"),
        (np.zeros((10, 10, 3), np.uint8), "list"),
        (torch.zeros(1, 3, 8, 8), "uint8"),
    ],
)
def test_preprocess_rejects_bad_input(bad: object, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        Preprocessor()(bad)  # type: ignore[arg-type]


# ---------------------------------------------------------------------------------------------------- semantic
def test_semantic_known_map() -> None:
    h, w = 6, 10
    logits = torch.tensor([[class_logits(0, 0.9), class_logits(1, 0.9), class_logits(3, 0.97)]])
    masks = torch.stack(
        [
            rect(h, w, slice(None), slice(0, 4)),
            rect(h, w, slice(None), slice(4, 10)),
            rect(h, w, slice(None), slice(None)),
        ]
    )[None]
    out = postprocess_batch(logits, masks, [meta(h, w)], tasks=("semantic",))[0]
    expected = np.zeros((h, w), dtype=np.uint8)
    expected[:, 4:] = 1
    assert out.semantic.dtype == np.uint8
    np.testing.assert_array_equal(out.semantic, expected)
    assert out.panoptic is None and out.instances is None


@pytest.mark.parametrize("stride", [1, 2])
def test_semantic_confidence_is_the_winning_share_of_class_scores(stride: int) -> None:
    """Left: a road query (0.9; 0.1/3 on each other entry) and a void query (0.97 no-object, 0.01 on each class)
    cover the pixel: road scores 0.91, car and person 0.1/3 + 0.01 each. Only computed when asked for."""
    h, w = 6, 10
    logits = torch.tensor([[class_logits(0, 0.9), class_logits(1, 0.6), class_logits(3, 0.97)]])
    masks = torch.stack(
        [
            rect(h, w, slice(None), slice(0, 4)),
            rect(h, w, slice(None), slice(4, 10)),
            rect(h, w, slice(None), slice(None)),
        ]
    )[None]
    plain = postprocess_batch(logits, masks, [meta(h, w)], tasks=("semantic",))[0]
    assert plain.semantic_confidence is None
    cfg = PostprocessConfig(semantic_confidence=True, label_stride=stride)
    out = postprocess_batch(logits, masks, [meta(h, w)], tasks=("semantic",), config=cfg)[0]
    conf = out.semantic_confidence
    assert conf.dtype == np.float32 and conf.shape == (h, w)
    # Reference: scores s_k = sum_q p_q(k) * sigmoid(mask_q) at the pixel, share of the arg-max class.
    probs = logits[0].softmax(-1)[:, :-1].numpy()
    sig = torch.sigmoid(masks[0]).numpy()
    scores = np.einsum("qk,qhw->khw", probs, sig)
    expected = scores.max(0) / scores.sum(0)
    if stride == 1:
        np.testing.assert_allclose(conf, expected, rtol=1e-5)
    else:  # merged on a coarser grid: each pixel carries a value of the same region (these regions are flat)
        assert np.isclose(conf[:, :3], expected[0, 0], rtol=1e-5).all()
        assert np.isclose(conf[:, 5:], expected[0, 9], rtol=1e-5).all()
    assert expected[0, 0] == pytest.approx(0.91 / (0.91 + 2 * (0.1 / 3 + 0.01)), rel=1e-4)
    assert conf.min() >= 1 / 3 and conf.max() <= 1.0
    np.testing.assert_array_equal(out.semantic, plain.semantic)  # asking for it changes no label


def test_pads_never_leak_and_output_is_original_size() -> None:
    # Content 8x16 in a 16x32 padded batch, original image 16x32 (the pre-processor halved it).
    m = PreprocessMeta(orig_size=(16, 32), resized_size=(8, 16), padded_size=(16, 32))
    logits = torch.tensor([[class_logits(0, 0.95), class_logits(1, 0.95), class_logits(2, 0.99)]])
    road = rect(16, 32, slice(0, 8), slice(0, 8))
    car = rect(16, 32, slice(0, 8), slice(8, 16))
    pad_person = rect(16, 32, slice(8, 16), slice(0, 32))  # lives only in the padding
    pad_person[:, 16:] = ON
    masks = torch.stack([road, car, pad_person])[None]
    out = postprocess_batch(logits, masks, [m], tasks=("semantic", "panoptic", "instance"), class_table=TABLE)[0]
    assert out.semantic.shape == (16, 32)
    assert set(np.unique(out.semantic)) == {0, 1}
    assert (out.semantic[:, :14] == 0).all() and (out.semantic[:, 18:] == 1).all()
    assert out.panoptic.id_map.shape == (16, 32)
    assert [s.class_id for s in out.panoptic.segments] == [0, 1]
    # The padding-only person (class prob 0.99) produced no instance; only low-probability pairs of other queries.
    assert all(score < 0.1 for c, score in zip(out.instances.classes, out.instances.scores, strict=True) if c == 2)


# ---------------------------------------------------------------------------------------------------- panoptic
def scene() -> tuple[torch.Tensor, torch.Tensor]:
    """8x16 image: road left (q0) + road strip bottom right (q1, merged), two cars top right (q2, q3), a person
    with a low score (q4), a no-object query (q5) and a person hidden behind car q2 (q6, fails the overlap test)."""
    h, w = 8, 16
    qs = [
        (class_logits(0, 0.95), rect(h, w, slice(None), slice(0, 8))),
        (class_logits(0, 0.90), rect(h, w, slice(6, 8), slice(8, 16))),
        (class_logits(1, 0.99), rect(h, w, slice(0, 4), slice(8, 12))),
        (class_logits(1, 0.98), rect(h, w, slice(0, 4), slice(12, 16))),
        (class_logits(2, 0.50), rect(h, w, slice(4, 6), slice(12, 16))),
        (class_logits(3, 0.99), rect(h, w, slice(None), slice(None))),
        (class_logits(2, 0.85), rect(h, w, slice(0, 5), slice(8, 12))),
    ]
    logits = torch.tensor([[q[0] for q in qs]], dtype=torch.float32)
    masks = torch.stack([q[1] for q in qs])[None]
    # q6 extends one row below car q2 on columns 8-9 only.
    masks[0, 6, 4, 10:12] = OFF
    return logits, masks


@pytest.mark.parametrize("chunk", [1, 3, 16])
def test_panoptic_known_ids_and_segment_table(chunk: int) -> None:
    logits, masks = scene()
    cfg = PostprocessConfig(chunk_size=chunk)
    out = postprocess_batch(logits, masks, [meta(8, 16)], tasks=("panoptic",), config=cfg, class_table=TABLE)[0]
    expected = np.zeros((8, 16), dtype=np.uint16)
    expected[:, 0:8] = 1
    expected[6:8, 8:16] = 1  # stuff of the same class merged into segment 1
    expected[0:4, 8:12] = 2
    expected[0:4, 12:16] = 3
    # rows 4-5 right: the person q4 is below the score threshold, q6 is dropped by the overlap rule -> void
    assert out.panoptic.id_map.dtype == np.uint16
    np.testing.assert_array_equal(out.panoptic.id_map, expected)
    segs = out.panoptic.segments
    assert [(s.id, s.class_id, s.is_thing) for s in segs] == [(1, 0, False), (2, 1, True), (3, 1, True)]
    assert [s.area for s in segs] == [80, 16, 16]
    assert [s.bbox for s in segs] == [(0, 0, 16, 8), (8, 0, 4, 4), (12, 0, 4, 4)]
    ys, xs = np.nonzero(expected == 1)
    assert segs[0].centroid == pytest.approx((xs.mean(), ys.mean()))
    assert segs[1].centroid == pytest.approx((9.5, 1.5)) and segs[2].centroid == pytest.approx((13.5, 1.5))
    assert [s.score for s in segs] == pytest.approx([0.95, 0.99, 0.98], abs=1e-5)


def test_panoptic_thresholds_are_configurable() -> None:
    logits, masks = scene()
    # Lower score threshold: the 0.5 person q4 is kept and gets id 4.
    cfg = PostprocessConfig(object_mask_threshold=0.4)
    out = postprocess_batch(logits, masks, [meta(8, 16)], tasks=("panoptic",), config=cfg, class_table=TABLE)[0]
    assert [s.class_id for s in out.panoptic.segments] == [0, 1, 1, 2]
    assert (out.panoptic.id_map[4:6, 12:16] == 4).all()
    # No overlap requirement: the hidden person q6 keeps the 2 pixels it won (row 4, cols 8-9).
    cfg = PostprocessConfig(overlap_threshold=0.0)
    out = postprocess_batch(logits, masks, [meta(8, 16)], tasks=("panoptic",), config=cfg, class_table=TABLE)[0]
    assert out.panoptic.segments[-1].class_id == 2 and out.panoptic.segments[-1].area == 2
    assert (out.panoptic.id_map[4, 8:10] == 4).all()


def test_panoptic_empty_when_nothing_confident() -> None:
    logits = torch.tensor([[class_logits(3, 0.9), class_logits(0, 0.3)]])
    masks = torch.zeros(1, 2, 4, 4)
    out = postprocess_batch(logits, masks, [meta(4, 4)], tasks=("panoptic",), class_table=TABLE)[0]
    assert out.panoptic.segments == [] and (out.panoptic.id_map == 0).all()


# ---------------------------------------------------------------------------------------------------- instance
def test_instance_topk_over_thing_classes() -> None:
    logits, masks = scene()
    cfg = PostprocessConfig(instance_topk=3)
    out = postprocess_batch(logits, masks, [meta(8, 16)], tasks=("instance",), config=cfg, class_table=TABLE)[0]
    ins = out.instances
    assert len(ins) == 3
    np.testing.assert_array_equal(ins.classes, [1, 1, 2])  # car q2, car q3, person q6 (stuff 'road' never)
    assert ins.scores == pytest.approx([0.99, 0.98, 0.85], abs=1e-4)  # class prob x mean mask prob (~1)
    np.testing.assert_array_equal(ins.boxes, [[8, 0, 4, 4], [12, 0, 4, 4], [8, 0, 4, 5]])
    assert ins.masks.shape == (3, 8, 16) and ins.masks.dtype == bool
    assert ins.masks[0].sum() == 16 and ins.masks[2].sum() == 18


def test_postprocess_argument_errors() -> None:
    logits, masks = scene()
    with pytest.raises(ValueError, match="class_table"):
        postprocess_batch(logits, masks, [meta(8, 16)], tasks=("panoptic",))
    with pytest.raises(ValueError, match="unknown task"):
        postprocess_batch(logits, masks, [meta(8, 16)], tasks=("depth",))
    with pytest.raises(ValueError, match="metas"):
        postprocess_batch(logits, masks, [meta(8, 16), meta(8, 16)], tasks=("semantic",))
    wrong = ClassTable(dataset="two", names=("a", "b"), colors=((0, 0, 0), (1, 1, 1)), is_thing=(False, True))
    with pytest.raises(ValueError, match="classes"):
        postprocess_batch(logits, masks, [meta(8, 16)], tasks=("instance",), class_table=wrong)
    with pytest.raises(ValueError, match="overlap_threshold"):
        PostprocessConfig(overlap_threshold=1.5)


# ---------------------------------------------------------------------------------------------------- label_stride
@pytest.mark.parametrize(("stride", "size"), [(2, (96, 160)), (4, (96, 160)), (3, (97, 203)), (5, (61, 150))])
def test_label_stride_changes_only_boundaries_and_keeps_tables_consistent(stride: int, size: tuple[int, int]) -> None:
    """Coarse merging (the node's speed option) agrees with the exact rule away from mask boundaries, and the
    segment table (measured on the coarse grid) always describes the published (upsampled) id map exactly, also when
    the output size is not a multiple of the stride."""
    gen = torch.Generator().manual_seed(stride)
    q, k, h8, w8 = 12, 3, 12, 20
    logits = torch.randn(1, q, k + 1, generator=gen) * 3
    low = torch.randn(1, q, h8 // 4, w8 // 4, generator=gen) * 6  # smooth masks: upsampled from a coarse grid
    masks = torch.nn.functional.interpolate(low, size=(h8, w8), mode="bilinear", align_corners=False)
    m = PreprocessMeta(orig_size=size, resized_size=(96, 160), padded_size=(96, 160))
    base = PostprocessConfig(object_mask_threshold=0.0, overlap_threshold=0.0)
    exact = postprocess_batch(logits, masks, [m], ("semantic", "panoptic"), base, TABLE)[0]
    cfg = PostprocessConfig(object_mask_threshold=0.0, overlap_threshold=0.0, label_stride=stride)
    fast = postprocess_batch(logits, masks, [m], ("semantic", "panoptic"), cfg, TABLE)[0]
    assert fast.semantic.shape == exact.semantic.shape == size
    assert (fast.semantic == exact.semantic).mean() > 0.97
    ids = fast.panoptic.id_map
    assert ids.shape == size
    assert fast.panoptic.segments
    for s in fast.panoptic.segments:
        ys, xs = np.nonzero(ids == s.id)
        assert s.area == len(xs) > 0
        assert s.bbox == (xs.min(), ys.min(), xs.max() - xs.min() + 1, ys.max() - ys.min() + 1)
        assert s.centroid == pytest.approx((xs.mean(), ys.mean()), abs=1e-9)
    assert set(np.unique(ids)) <= {0} | {s.id for s in fast.panoptic.segments}
    # Nothing confident: the empty map still has the output size.
    empty_cfg = PostprocessConfig(label_stride=stride, object_mask_threshold=1.0)
    none = postprocess_batch(logits, masks, [m], ("panoptic",), empty_cfg, TABLE)[0]
    assert none.panoptic.segments == [] and none.panoptic.id_map.shape == size


@pytest.mark.parametrize("stride", [1, 3])
def test_semantic_and_panoptic_in_one_pass_equal_separate_runs(stride: int) -> None:
    """Both tasks share one up-sampling pass over the queries; the result must not depend on what else was asked."""
    gen = torch.Generator().manual_seed(7)
    q, k = 23, 3
    logits = torch.randn(2, q, k + 1, generator=gen) * 3
    logits[:, ::3, :k] += 8  # some confident queries, spread over several chunks
    masks = torch.randn(2, q, 9, 13, generator=gen) * 5
    metas = [PreprocessMeta(orig_size=(70, 101), resized_size=(66, 100), padded_size=(72, 104))] * 2
    cfg = PostprocessConfig(chunk_size=4, object_mask_threshold=0.5, overlap_threshold=0.0, label_stride=stride)
    both = postprocess_batch(logits, masks, metas, ("semantic", "panoptic"), cfg, TABLE)
    sem = postprocess_batch(logits, masks, metas, ("semantic",), cfg, TABLE)
    pan = postprocess_batch(logits, masks, metas, ("panoptic",), cfg, TABLE)
    for b, s, p in zip(both, sem, pan, strict=True):
        assert p.semantic is None and s.panoptic is None
        np.testing.assert_array_equal(b.semantic, s.semantic)
        np.testing.assert_array_equal(b.panoptic.id_map, p.panoptic.id_map)
        assert b.panoptic.segments == p.panoptic.segments and len(b.panoptic.segments) >= 2
    with pytest.raises(ValueError, match="label_stride"):
        PostprocessConfig(label_stride=0)
