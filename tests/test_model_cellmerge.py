"""The cell merge (default post-processing) against the dense brute force: pixel for pixel, both mask orders.

The dense reference (``dense_reference``, float64) up-samples every query to the output size; the cell merge only
evaluates pixels where bounds leave the answer open. Equality must hold for random and trained models, odd sizes,
sizes that are not multiples of the mask stride, images resized before the network (two resizes), padding, ties,
more than 255 classes and degenerate query sets.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterator

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from bisenetformer_ros.data.classes import ClassTable
from bisenetformer_ros.model import (
    PostprocessConfig,
    PreprocessMeta,
    Preprocessor,
    SegmentationOutput,
    postprocess_batch,
)
from bisenetformer_ros.model.postprocess import dense_reference

torch.set_num_threads(1)
ORDERS = ("upsample_logits", "sigmoid_first")
TASKS = ("semantic", "panoptic", "instance")


@pytest.fixture(params=["native", "tensor"])
def merge_path(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """Both implementations of the cell merge's CPU work: the C kernels (model/native.py, the default where a C
    compiler is installed) and the tensor operations (CUDA, and CPUs without a compiler)."""
    from bisenetformer_ros.model import native

    monkeypatch.setenv(native.ENV, "1" if request.param == "native" else "0")
    native.reset()
    if request.param == "native" and native.library() is None:
        pytest.skip("native kernels unavailable: no C compiler on this machine")
    yield request.param
    native.reset()


def table(k: int) -> ClassTable:
    return ClassTable(
        dataset=f"t{k}",
        names=tuple(f"c{i}" for i in range(k)),
        colors=tuple((i % 256, 0, 0) for i in range(k)),
        is_thing=tuple(i % 2 == 1 for i in range(k)),
        ignore_label=65535,
    )


def assert_same(a: SegmentationOutput, b: SegmentationOutput) -> None:
    """Identical labels, panoptic maps and segment tables, instance masks/classes/boxes; instance scores to 1e-6."""
    if b.semantic is not None:
        assert a.semantic.dtype == b.semantic.dtype
        np.testing.assert_array_equal(a.semantic, b.semantic)
    if b.panoptic is not None:
        np.testing.assert_array_equal(a.panoptic.id_map, b.panoptic.id_map)
        assert a.panoptic.segments == b.panoptic.segments
    if b.instances is not None:
        assert len(a.instances) == len(b.instances)
        np.testing.assert_array_equal(a.instances.classes, b.instances.classes)
        np.testing.assert_array_equal(a.instances.masks, b.instances.masks)
        np.testing.assert_array_equal(a.instances.boxes, b.instances.boxes)
        np.testing.assert_allclose(a.instances.scores, b.instances.scores, rtol=1e-6, atol=1e-7)


def random_predictions(
    seed: int, q: int, k: int, mask_hw: tuple[int, int], smooth: bool
) -> tuple[torch.Tensor, torch.Tensor]:
    """Class logits with some confident queries; masks either noise (every cell a boundary) or smooth blobs."""
    gen = torch.Generator().manual_seed(seed)
    logits = torch.randn(1, q, k + 1, generator=gen) * 3
    logits[:, ::2, :k] += 6
    if smooth:
        low = torch.randn(1, q, max(1, mask_hw[0] // 3), max(1, mask_hw[1] // 3), generator=gen) * 8
        masks = F.interpolate(low, size=mask_hw, mode="bilinear", align_corners=False)
    else:
        masks = torch.randn(1, q, *mask_hw, generator=gen) * 5
    return logits, masks


GEOMETRIES = [
    # (mask grid, meta): one resize, exact multiples
    ((12, 20), PreprocessMeta((96, 160), (96, 160), (96, 160))),
    # content smaller than the padded batch, then resized to an odd original size (two resizes)
    ((12, 20), PreprocessMeta((97, 203), (90, 150), (96, 160))),
    ((9, 13), PreprocessMeta((70, 101), (66, 100), (72, 104))),
    # strong up-sampling of a tiny network input; and an original smaller than the network input (down-sampling)
    ((8, 8), PreprocessMeta((333, 251), (61, 47), (64, 64))),
    ((16, 24), PreprocessMeta((50, 75), (128, 190), (128, 192))),
    # no padding, sizes not multiples of 8
    ((5, 7), PreprocessMeta((41, 55), (40, 56), (40, 56))),
]


@pytest.mark.parametrize("order", ORDERS)
@pytest.mark.parametrize(("mask_hw", "meta"), GEOMETRIES)
@pytest.mark.parametrize("smooth", [True, False])
def test_cell_merge_equals_dense_reference_on_random_models(
    order: str, mask_hw: tuple[int, int], meta: PreprocessMeta, smooth: bool, merge_path: str
) -> None:
    cfg = PostprocessConfig(
        merge="cells",
        mask_order=order,
        dense_fallback=1.0,
        object_mask_threshold=0.5,
        overlap_threshold=0.3,
        instance_topk=10,
    )
    for k in (3, 19):
        seed = zlib.crc32(repr((order, mask_hw, smooth, k)).encode())  # stable across runs (unlike hash())
        logits, masks = random_predictions(seed, 17, k, mask_hw, smooth)
        fast = postprocess_batch(logits, masks, [meta], TASKS, cfg, table(k))[0]
        ref = dense_reference(logits, masks, [meta], TASKS, cfg, table(k))[0]
        assert_same(fast, ref)
        assert fast.semantic.shape == tuple(meta.orig_size)
        assert len(ref.panoptic.segments) >= 1


@pytest.mark.parametrize("order", ORDERS)
def test_cell_merge_more_than_255_classes(order: str, merge_path: str) -> None:
    k = 300
    logits, masks = random_predictions(3, 12, k, (9, 13), smooth=True)
    logits[0, :, 280] += 9  # make a class id above 255 win somewhere
    meta = PreprocessMeta((70, 101), (66, 100), (72, 104))
    cfg = PostprocessConfig(merge="cells", mask_order=order, dense_fallback=1.0, object_mask_threshold=0.5)
    fast = postprocess_batch(logits, masks, [meta], ("semantic", "panoptic"), cfg, table(k))[0]
    ref = dense_reference(logits, masks, [meta], ("semantic", "panoptic"), cfg, table(k))[0]
    assert fast.semantic.dtype == np.uint16 and int(fast.semantic.max()) > 255
    assert_same(fast, ref)


@pytest.mark.parametrize("order", ORDERS)
@pytest.mark.parametrize(("mask_hw", "meta"), [GEOMETRIES[1], GEOMETRIES[3], GEOMETRIES[5]])
def test_cell_merge_many_classes_few_in_the_frame(
    order: str, mask_hw: tuple[int, int], meta: PreprocessMeta, monkeypatch: pytest.MonkeyPatch, merge_path: str
) -> None:
    """ADE20K-like: 150 classes, a handful confident in the frame. The major classes decide most cells and the
    others are bounded together (cellmerge._major_classes); cells where that bound does not hold (boundaries, low
    scores) are decided over all classes. Same labels as the brute force."""
    from bisenetformer_ros.model import cellmerge

    k, q = 150, 24
    gen = torch.Generator().manual_seed(zlib.crc32(repr((order, mask_hw)).encode()))
    logits = torch.randn(1, q, k + 1, generator=gen) - 3.0
    present = torch.randperm(k, generator=gen)[:6]
    for i in range(12):  # confident queries of six classes; the rest mostly no-object, some weak everywhere
        logits[0, i, present[i % 6]] = 6.0 + float(torch.rand(1, generator=gen)) * 3
    logits[0, 12:, k] = 3.0
    # Blobs on a background no query claims: there every class score is small, so the major classes' bound does not
    # exclude the others and those cells are decided over all classes.
    low = torch.randn(1, q, max(1, mask_hw[0] // 3), max(1, mask_hw[1] // 3), generator=gen) * 8 - 6
    masks = F.interpolate(low, size=mask_hw, mode="bilinear", align_corners=False)
    tiers = []
    original = cellmerge._major_classes
    monkeypatch.setattr(cellmerge, "_major_classes", lambda reach: tiers.append(original(reach)) or tiers[-1])
    cfg = PostprocessConfig(merge="cells", mask_order=order, dense_fallback=1.0, object_mask_threshold=0.5)
    fast = postprocess_batch(logits, masks, [meta], TASKS, cfg, table(k))[0]
    ref = dense_reference(logits, masks, [meta], TASKS, cfg, table(k))[0]
    assert_same(fast, ref)
    if merge_path == "tensor":  # (the native merge bounds every class per cell from the queries near it)
        assert tiers and tiers[0] is not None  # the tiered decision ran
    assert len(np.unique(fast.semantic)) >= 2


@pytest.mark.parametrize("order", ORDERS)
@pytest.mark.parametrize("mask_threshold", [0.0, 1e-7, 0.1, 0.5, 0.93, 1.0 - 1e-7, 1.0])
def test_cell_merge_any_mask_threshold(order: str, mask_threshold: float, merge_path: str) -> None:
    """Mask areas and ownership are decided on the logits for usual thresholds (cellmerge._logit_cut) and on the
    probabilities near 0 and 1; both equal the brute force."""
    logits, masks = random_predictions(11, 17, 5, (12, 20), smooth=True)
    meta = PreprocessMeta((97, 203), (90, 150), (96, 160))
    cfg = PostprocessConfig(
        merge="cells", mask_order=order, mask_threshold=mask_threshold, object_mask_threshold=0.3, overlap_threshold=0.0
    )
    fast = postprocess_batch(logits, masks, [meta], TASKS, cfg, table(5))[0]
    ref = dense_reference(logits, masks, [meta], TASKS, cfg, table(5))[0]
    assert_same(fast, ref)
    assert len(ref.panoptic.segments) >= (1 if mask_threshold < 1.0 else 0)


@pytest.mark.parametrize("order", ORDERS)
def test_cell_merge_ties_take_the_first_maximum(order: str, merge_path: str) -> None:
    """Duplicate queries and duplicate classes tie exactly everywhere: the lower index wins, as with ``max(0)``."""
    k, q = 4, 6
    gen = torch.Generator().manual_seed(0)
    logits = torch.randn(1, q, k + 1, generator=gen)
    logits[0, :, 2] = logits[0, :, 1]  # classes 1 and 2 always tie
    logits[0, :, 1] += 3
    logits[0, :, 2] += 3
    logits[0, 3] = logits[0, 1]  # query 3 duplicates query 1 ...
    masks = F.interpolate(torch.randn(1, q, 3, 4, generator=gen) * 6, size=(7, 9), mode="bilinear")
    masks[0, 3] = masks[0, 1]  # ... mask included
    masks[0, 5] = 1.5  # a flat query: the same probability everywhere
    meta = PreprocessMeta((53, 71), (52, 70), (56, 72))
    cfg = PostprocessConfig(
        merge="cells", mask_order=order, dense_fallback=1.0, object_mask_threshold=0.0, overlap_threshold=0.0
    )
    fast = postprocess_batch(logits, masks, [meta], TASKS, cfg, table(k))[0]
    ref = dense_reference(logits, masks, [meta], TASKS, cfg, table(k))[0]
    assert_same(fast, ref)
    assert 2 not in set(np.unique(fast.semantic).tolist())  # class 2 only ever ties with class 1
    # Flat masks everywhere: equal queries tie at every pixel, and so do the two equal classes. (Not flat at logit 0:
    # a probability exactly at mask_threshold is decided by rounding in any implementation.)
    flat = torch.full_like(masks, 1.5)
    fast = postprocess_batch(logits, flat, [meta], TASKS, cfg, table(k))[0]
    ref = dense_reference(logits, flat, [meta], TASKS, cfg, table(k))[0]
    assert_same(fast, ref)


@pytest.mark.parametrize("order", ORDERS)
def test_cell_merge_degenerate_query_sets(order: str, merge_path: str) -> None:
    meta = PreprocessMeta((37, 45), (37, 45), (40, 48))
    for q, k in ((1, 1), (1, 3), (2, 1)):
        logits, masks = random_predictions(q * 10 + k, q, k, (5, 6), smooth=True)
        for thr in (0.0, 1.0):  # everything kept / nothing kept
            cfg = PostprocessConfig(
                merge="cells", mask_order=order, dense_fallback=1.0, object_mask_threshold=thr, overlap_threshold=0.0
            )
            fast = postprocess_batch(logits, masks, [meta], TASKS, cfg, table(k))[0]
            ref = dense_reference(logits, masks, [meta], TASKS, cfg, table(k))[0]
            assert_same(fast, ref)


@pytest.mark.parametrize("order", ORDERS)
@pytest.mark.parametrize("input_size", [None, 48, (40, 72)])
def test_cell_merge_equals_dense_reference_on_the_trained_model(
    order: str, input_size: object, merge_path: str
) -> None:
    """The shipped model on rendered scenes, the network at camera size or resized (short side / (h, w))."""
    from bisenetformer_ros.data.synthetic import render_scene
    from bisenetformer_ros.model import load_model
    from bisenetformer_ros.resources import default_model_path

    loaded = load_model(default_model_path())
    net = loaded.model.eval()
    pre = Preprocessor(input_size=input_size)  # type: ignore[arg-type]
    images = [render_scene(seed, 75, 133).image for seed in (10_000, 10_001)]
    batch, metas = pre(images)
    with torch.no_grad():
        out = net(batch)
    logits, masks = out["pred_logits"], out["pred_masks"]
    cfg = PostprocessConfig(merge="cells", mask_order=order, dense_fallback=1.0)
    fast = postprocess_batch(logits, masks, metas, TASKS, cfg, loaded.class_table)
    ref = dense_reference(logits, masks, metas, TASKS, cfg, loaded.class_table)
    for a, b in zip(fast, ref, strict=True):
        assert_same(a, b)
        assert len(b.panoptic.segments) >= 2


@pytest.mark.parametrize("order", ORDERS)
def test_cell_merge_agrees_with_the_float32_dense_merge_up_to_float32_ties(order: str, merge_path: str) -> None:
    """Against the float32 brute force (the previous default) labels differ at most where that computation's own
    top two class scores are equal to float32 rounding."""
    logits, masks = random_predictions(5, 20, 6, (12, 20), smooth=True)
    meta = PreprocessMeta((97, 203), (90, 150), (96, 160))
    cfg = PostprocessConfig(merge="cells", mask_order=order, dense_fallback=1.0)
    fast = postprocess_batch(logits, masks, [meta], ("semantic",), cfg)[0].semantic
    dense_cfg = PostprocessConfig(mask_order=order, dense_fallback=1.0, merge="dense")
    dense = postprocess_batch(logits, masks, [meta], ("semantic",), dense_cfg)[0].semantic
    from bisenetformer_ros.model.postprocess import masks_to_original

    probs = masks_to_original(masks[0], meta, order, torch.float64)  # [Q, H, W]
    scores = torch.einsum("qk,qhw->khw", logits[0].double().softmax(-1)[:, :-1], probs)
    top2 = scores.topk(2, dim=0).values
    near_tie = ((top2[0] - top2[1]) <= 1e-5 * top2[0]).numpy()
    assert not ((fast != dense) & ~near_tie).any()


@pytest.mark.parametrize("order", ORDERS)
def test_frames_without_spatial_structure_fall_back_to_the_dense_merge(order: str, merge_path: str) -> None:
    """Noise masks leave most cells undecided: the semantic labels then come from the dense merge (faster there),
    exactly its result; ``dense_fallback=1.0`` keeps the cell merge, which still equals the float64 reference."""
    logits, masks = random_predictions(21, 17, 5, (12, 20), smooth=False)
    meta = PreprocessMeta((97, 203), (90, 150), (96, 160))
    kw = {"mask_order": order, "object_mask_threshold": 0.5, "overlap_threshold": 0.3}
    fallback = postprocess_batch(logits, masks, [meta], ("semantic",), PostprocessConfig(merge="cells", **kw))[0]
    dense = postprocess_batch(logits, masks, [meta], ("semantic",), PostprocessConfig(merge="dense", **kw))[0]
    np.testing.assert_array_equal(fallback.semantic, dense.semantic)
    from bisenetformer_ros.model.cellmerge import CellGrid, semantic_labels

    probs = logits[0].double().softmax(-1)[:, :-1]
    assert semantic_labels(probs, masks[0], CellGrid(meta, (12, 20), masks.device), order, 0.25) is None  # fell back
    cells = postprocess_batch(
        logits, masks, [meta], TASKS, PostprocessConfig(merge="cells", dense_fallback=1.0, **kw), table(5)
    )[0]
    assert_same(
        cells, dense_reference(logits, masks, [meta], TASKS, PostprocessConfig(merge="cells", **kw), table(5))[0]
    )
    with pytest.raises(ValueError, match="dense_fallback"):
        PostprocessConfig(merge="cells", dense_fallback=1.5)


def test_sigmoid_first_is_the_reference_order() -> None:
    """``sigmoid_first``: sigmoid on the mask grid, then the bilinear chain; semantic = argmax of weighted sums."""
    logits, masks = random_predictions(11, 7, 4, (6, 10), smooth=False)
    meta = PreprocessMeta((45, 83), (44, 76), (48, 80))
    cfg = PostprocessConfig(merge="cells", mask_order="sigmoid_first", dense_fallback=1.0)
    out = postprocess_batch(logits, masks, [meta], ("semantic",), cfg)[0]
    prob = F.interpolate(masks.double().sigmoid(), size=(48, 80), mode="bilinear", align_corners=False)[..., :44, :76]
    prob = F.interpolate(prob, size=(45, 83), mode="bilinear", align_corners=False)[0]
    scores = torch.einsum("qk,qhw->khw", logits[0].double().softmax(-1)[:, :-1], prob)
    np.testing.assert_array_equal(out.semantic, scores.argmax(0).numpy().astype(np.uint8))


def test_postprocess_config_rejects_unknown_order_and_merge() -> None:
    with pytest.raises(ValueError, match=r"mask_order.*sigmoid_first"):
        PostprocessConfig(merge="cells", mask_order="sigmoid_last")
    with pytest.raises(ValueError, match="merge"):
        PostprocessConfig(merge="fast")


def test_auto_merge_takes_dense_while_its_score_table_is_small(monkeypatch: pytest.MonkeyPatch) -> None:
    """'auto' (the default) picks the dense merge below AUTO_DENSE_MAX_BYTES of K x H x W float32 scores and the
    cell merge above it; both are exact, so the choice is about time and memory only."""
    from bisenetformer_ros.model import postprocess as pp

    seen: list[object] = []
    real = pp._postprocess

    def spy(*args: object) -> object:
        seen.append(args[-1])
        return real(*args)

    monkeypatch.setattr(pp, "_postprocess", spy)
    assert PostprocessConfig().merge == "auto"
    for k, (h, w), expect in ((8, (288, 384), torch.float32), (150, (480, 640), None)):
        logits = torch.randn(1, 4, k + 1)
        masks = torch.randn(1, 4, (h + 7) // 8, (w + 7) // 8)
        meta = PreprocessMeta(orig_size=(h, w), resized_size=(h, w), padded_size=(h, w))
        pp.postprocess_batch(logits, masks, [meta], ("semantic",))
        assert seen[-1] == expect, (k, h, w, seen[-1])


@pytest.mark.parametrize("order", ORDERS)
@pytest.mark.parametrize(("mask_hw", "meta"), GEOMETRIES)
def test_segment_stats_from_cells_equal_the_per_pixel_measurement(
    order: str, mask_hw: tuple[int, int], meta: PreprocessMeta, merge_path: str
) -> None:
    """PanopticCells.segment_stats (cells as rectangles + per-pixel records) gives what _segment_stats reads from
    the full-resolution id map: areas, integer-exact centroids, boxes, and the fills of absent ids."""
    from bisenetformer_ros.model import cellmerge
    from bisenetformer_ros.model.postprocess import _nearest_index, _segment_stats

    logits, masks = random_predictions(zlib.crc32(repr((order, mask_hw)).encode()), 17, 5, mask_hw, smooth=True)
    scores = logits[0].softmax(-1)[:, :-1].amax(-1).double()
    grid = cellmerge.CellGrid(meta, mask_hw, masks.device)
    pc = cellmerge.panoptic_cells(scores, masks[0], grid, order, 0.5)
    h, w = meta.orig_size
    n = 6  # 17 queries onto 6 segment ids, some queries dropped (0), one id (6) never used
    lut = torch.tensor([(i % 7) if i % 7 < n else 0 for i in range(17)], dtype=torch.int32)
    lut[lut == 6] = 0
    expected = _segment_stats(pc.id_map(lut), n, _nearest_index(h, h), _nearest_index(w, w))
    assert pc.segment_stats(lut, n) == expected
    assert pc.cell_pixelwise.any() and (~pc.cell_pixelwise).any()
    # Another segment assignment (the native path paints once per lut): the largest segment dropped, the rest alike.
    ids = pc.id_map(lut)
    drop = int(torch.bincount(ids.flatten().long())[1:].argmax()) + 1
    assert torch.equal(pc.id_map(torch.where(lut == drop, 0, lut)), torch.where(ids == drop, 0, ids))
    assert sum(expected["area"][1:]) > 0 and expected["x0"][6] == max(h, w)


@pytest.mark.parametrize("order", ORDERS)
def test_panoptic_areas_counted_only_where_the_overlap_rule_needs_them(order: str, merge_path: str) -> None:
    """With the overlap rule given, mask areas along the edges are counted only for queries whose bounds leave the
    rule open; every query's rule (kept or dropped) is the one the exact areas give, for thresholds from 0 to 1."""
    from bisenetformer_ros.model import cellmerge

    mask_hw, meta = GEOMETRIES[1]
    logits, masks = random_predictions(zlib.crc32(repr(("overlap", order)).encode()), 17, 5, mask_hw, smooth=True)
    scores = logits[0].softmax(-1)[:, :-1].amax(-1).double()
    grid = cellmerge.CellGrid(meta, mask_hw, masks.device)
    exact = cellmerge.panoptic_cells(scores, masks[0], grid, order, 0.5)
    _binary, _probs, area = cellmerge.instance_masks(masks[0], grid, order, 0.5)
    assert torch.equal(exact.orig, area)  # None: every area counted per pixel

    def rule(pc: cellmerge.PanopticCells, overlap: float) -> list[bool]:
        won, fin, orig = (a.tolist() for a in (pc.won, pc.fin, pc.orig))
        return [w > 0 and f > 0 and o > 0 and w / o >= overlap for w, f, o in zip(won, fin, orig, strict=True)]

    bounded = 0
    for overlap in (0.0, 0.3, 0.5, 0.8, 0.95, 1.0):
        pc = cellmerge.panoptic_cells(scores, masks[0], grid, order, 0.5, overlap)
        assert torch.equal(pc.won, exact.won) and torch.equal(pc.fin, exact.fin)
        assert rule(pc, overlap) == rule(exact, overlap)
        bounded += int((pc.orig != exact.orig).sum())
    assert bounded > 0  # the bounds did decide some queries


@pytest.mark.parametrize("order", ORDERS)
def test_semantic_merge_beside_the_panoptic_one(order: str, monkeypatch: pytest.MonkeyPatch, merge_path: str) -> None:
    """On a multi-core CPU the semantic merge runs on a side thread while the panoptic one runs in the caller's, each
    with half the band budget and half the native kernels' threads: the same outputs as the dense reference, and an
    error there reaches the caller."""
    import threading

    from bisenetformer_ros.model import cellmerge
    from bisenetformer_ros.model import postprocess as pp

    threads: list[str] = []
    semantic_labels = cellmerge.semantic_labels

    def spy(*args: object, **kwargs: object) -> object:
        threads.append(threading.current_thread().name)
        assert args[2].band_elements == cellmerge._BAND_ELEMENTS // 2  # half the band budget each: same peak memory
        assert args[2].threads == max(1, torch.get_num_threads() // 2)  # the native kernels: half the threads each
        assert not torch.is_grad_enabled()
        return semantic_labels(*args, **kwargs)

    monkeypatch.setattr(pp, "_side_thread_pays", lambda masks: True)
    monkeypatch.setattr(cellmerge, "semantic_labels", spy)
    mask_hw, meta = GEOMETRIES[2]
    cfg = PostprocessConfig(merge="cells", mask_order=order, object_mask_threshold=0.5, dense_fallback=1.0)
    logits, masks = random_predictions(zlib.crc32(repr(("side", order)).encode()), 17, 5, mask_hw, smooth=True)
    fast = postprocess_batch(logits, masks, [meta], TASKS, cfg, table(5))[0]
    assert_same(fast, dense_reference(logits, masks, [meta], TASKS, cfg, table(5))[0])
    assert threads and threads[0].startswith("postprocess") and threads[0] != threading.current_thread().name

    def broken(*args: object, **kwargs: object) -> object:
        raise RuntimeError("semantic merge failed")

    monkeypatch.setattr(cellmerge, "semantic_labels", broken)
    with pytest.raises(RuntimeError, match="semantic merge failed"):
        postprocess_batch(logits, masks, [meta], TASKS, cfg, table(5))


@pytest.mark.parametrize(("mask_hw", "meta"), GEOMETRIES)
def test_cell_areas_count_the_pixels_of_the_marked_cells(mask_hw: tuple[int, int], meta: PreprocessMeta) -> None:
    """CellGrid.area (byte counts and border corrections) equals the plain weighted sum, for any band."""
    from bisenetformer_ros.model import cellmerge

    grid = cellmerge.CellGrid(meta, mask_hw, torch.device("cpu"))
    gen = torch.Generator().manual_seed(zlib.crc32(repr(mask_hw).encode()))
    for c0, c1 in ((0, grid.shape[0]), (0, 1), (grid.shape[0] // 2, grid.shape[0])):
        table = torch.rand((5, c1 - c0, grid.shape[1]), generator=gen) > 0.4
        expected = (table * grid.cell_pixels[c0:c1]).sum((1, 2))
        assert torch.equal(grid.area(table, c0, c1), expected)
    assert (
        int(grid.area(torch.ones((1, *grid.shape), dtype=torch.bool), 0, grid.shape[0]))
        == meta.orig_size[0] * meta.orig_size[1]
    )


def test_overlap_bounds_decide_the_rule_for_every_area_between_them() -> None:
    """_overlap_bounds against brute force on small integers, ratios exactly at the threshold included: where it
    says the rule is decided, every area in [low, high] (at least ``fin``, which the area contains) gives the same
    answer as the bound it keeps."""
    from bisenetformer_ros.model import cellmerge

    cases = [
        (won, fin, low, high)
        for won in range(0, 7)
        for fin in range(0, won + 1)
        for low in range(0, 9)
        for high in range(low, 11)
        if high >= fin
    ]
    won, fin, low, high = (torch.tensor(c) for c in zip(*cases, strict=True))
    for overlap in (0.0, 0.5, 0.6, 0.8, 1.0):
        open_rule, passes = cellmerge._overlap_bounds(won, fin, low, high, overlap)
        for i, (w, f, lo, hi) in enumerate(cases):
            if bool(open_rule[i]):
                continue

            def rule(area: int, w: int = w, f: int = f, overlap: float = overlap) -> bool:
                return w > 0 and f > 0 and area > 0 and w / area >= overlap

            kept = hi if bool(passes[i]) else lo
            assert {rule(a) for a in range(max(lo, f), hi + 1)} <= {rule(kept)}, (w, f, lo, hi, overlap)
    assert cellmerge._overlap_bounds(won, fin, low, high, None)[0].all()


@pytest.mark.parametrize("order", ORDERS)
@pytest.mark.parametrize(("mask_hw", "meta"), GEOMETRIES)
def test_first_pass_stays_within_its_error_bound(order: str, mask_hw: tuple[int, int], meta: PreprocessMeta) -> None:
    """The float32 first pass (batched products with the dense cell weights) against the exact float64 per-pixel
    probabilities: within the bound it reports, for logits up to +-60 (saturated sigmoids, large rounding), on every
    cell; and the weights from the per-grid pattern table equal the per-block outer product."""
    from bisenetformer_ros.model import cellmerge

    grid = cellmerge.CellGrid(meta, mask_hw, torch.device("cpu"))
    gen = torch.Generator().manual_seed(zlib.crc32(repr((order, mask_hw)).encode()))
    masks = torch.randn((6, *mask_hw), generator=gen, dtype=torch.float64) * 20
    masks[0] *= 3
    cy, cx = (
        v.flatten() for v in torch.meshgrid(torch.arange(grid.shape[0]), torch.arange(grid.shape[1]), indexing="ij")
    )
    blk = grid.block(cy, cx)
    entities = torch.randint(0, 6, (int(cy.numel()), 4), generator=gen)
    fast, err = grid.first_pass(masks.float(), entities, blk, order)
    exact = grid.probabilities(masks, entities, blk, order).flatten(2)
    assert fast.dtype == torch.float32 and 0.0 < err < 1e-4
    assert float((fast.double() - exact).abs().amax()) <= err
    assert torch.equal(grid.dense32(blk), cellmerge._outer_weights(blk.wy, blk.wx))


@pytest.mark.parametrize("order", ORDERS)
def test_near_ties_go_to_the_exact_computation(order: str, monkeypatch: pytest.MonkeyPatch, merge_path: str) -> None:
    """Two classes whose scores differ by less than the first pass's error bound near where they cross over
    inside the image: the first pass leaves those cells to the exact computation, which decides as the dense
    reference does; also with float32 products that are not IEEE (TF32 / bfloat16 allowed), which turn the first
    pass off."""
    from bisenetformer_ros.model import cellmerge

    k, q = 3, 8
    gen = torch.Generator().manual_seed(5)
    logits = torch.randn(1, q, k + 1, generator=gen) - 2
    logits[0, :, 0] += 6
    logits[0, 1] = logits[0, 0]
    logits[0, 1, [0, 1]] = logits[0, 0, [1, 0]]  # query 1 = query 0 with classes 0 and 1 swapped
    logits[0, 2:, 1] = logits[0, 2:, 0]  # the others add the same to both
    masks = F.interpolate(torch.randn(1, q, 3, 4, generator=gen) * 6, size=(9, 13), mode="bilinear")
    # Query 1 ahead of query 0 on the right by up to 1e-4 of a logit; the crossing is off the grid points (no pixel
    # where the two are exactly equal: there the dense reference's BLAS sums break the tie either way).
    masks[0, 1] = masks[0, 0] + 1e-4 * (torch.linspace(-1, 1, 13) + 0.037)
    meta = PreprocessMeta((70, 101), (66, 100), (72, 104))
    cfg = PostprocessConfig(merge="cells", mask_order=order, dense_fallback=1.0)
    ref = dense_reference(logits, masks, [meta], ("semantic",), cfg, table(k))[0]
    assert {0, 1} <= set(np.unique(ref.semantic).tolist())
    deferred = []
    if merge_path == "tensor":
        real = cellmerge._unsafe_cells

        def spy(*args: object) -> torch.Tensor:
            out = real(*args)
            deferred.append(int(out.sum()))
            return out

        monkeypatch.setattr(cellmerge, "_unsafe_cells", spy)
    else:  # the C kernel counts the pixels it evaluated with every query
        from bisenetformer_ros.model import native

        real_kernel = native.SemanticKernels.labels

        def spy_kernel(self: native.SemanticKernels, budget: int, dtype: torch.dtype) -> tuple[torch.Tensor, int]:
            done = real_kernel(self, budget, dtype)
            assert done is not None
            deferred.append(done[1])
            return done

        monkeypatch.setattr(native.SemanticKernels, "labels", spy_kernel)
    assert_same(postprocess_batch(logits, masks, [meta], ("semantic",), cfg, table(k))[0], ref)
    assert sum(deferred) > 0  # cells / pixels near the crossing were left to the exact computation
    assert cellmerge.ieee_float32_products(torch.device("cpu"))
    matmul = torch.backends.mkldnn.matmul
    before = matmul.fp32_precision
    try:
        matmul.fp32_precision = "bf16"  # what torch.set_float32_matmul_precision("medium") selects
        assert not cellmerge.ieee_float32_products(torch.device("cpu"))
        assert_same(postprocess_batch(logits, masks, [meta], ("semantic",), cfg, table(k))[0], ref)
    finally:
        matmul.fp32_precision = before
    assert cellmerge.ieee_float32_products(torch.device("cpu"))


@pytest.mark.parametrize("order", ORDERS)
@pytest.mark.parametrize(
    ("mask_hw", "meta"),
    [
        ((30, 40), PreprocessMeta((240, 320), (240, 320), (240, 320))),
        ((30, 40), PreprocessMeta((233, 311), (228, 304), (240, 320))),  # two resizes
    ],
)
@pytest.mark.parametrize("k", [5, 60])
def test_bands_bound_the_queries_far_from_them(
    order: str, mask_hw: tuple[int, int], meta: PreprocessMeta, k: int, monkeypatch: pytest.MonkeyPatch, merge_path: str
) -> None:
    """A crowded frame (40 kept queries, each a compact blob): each panoptic band's tables hold only the queries that
    reach it, the others bounded as one entity, and cells where that bound is not beaten (boundaries between blobs,
    the background) are decided over every query - pixel-identical to the dense reference, and so are the semantic
    labels of the same frame (with 60 classes through the major-class tables)."""
    from bisenetformer_ros.model import cellmerge

    q = 40
    gen = torch.Generator().manual_seed(zlib.crc32(repr((order, mask_hw, k)).encode()))
    logits = torch.randn(1, q, k + 1, generator=gen)
    logits[0, torch.arange(q), torch.arange(q) % 5] += 7  # five classes in the frame
    yy, xx = torch.meshgrid(torch.arange(mask_hw[0]), torch.arange(mask_hw[1]), indexing="ij")
    centres = torch.rand(q, 2, generator=gen) * torch.tensor(mask_hw)
    radius = 1.0 + torch.rand(q, generator=gen) * 2.5
    dist = ((yy - centres[:, 0, None, None]) ** 2 + (xx - centres[:, 1, None, None]) ** 2).sqrt()
    masks = (8.0 * (radius[:, None, None] - dist)).clamp(-12, 10)[None] + torch.randn(1, q, *mask_hw, generator=gen)
    cfg = PostprocessConfig(merge="cells", mask_order=order, object_mask_threshold=0.3, overlap_threshold=0.5)
    tiered, rest, majors = [], [], []
    real_near, real_tier, real_major = cellmerge._near_queries, cellmerge._far_tier, cellmerge._major_classes

    def major(*args: object) -> torch.Tensor | None:
        out = real_major(*args)
        majors.append(out is not None)
        return out

    def near(*args: object) -> tuple[torch.Tensor | None, float]:
        out = real_near(*args)
        tiered.append(out[0] is not None)
        return out

    def tier(*args: object) -> object:
        out = real_tier(*args)
        rest.append(int((out.slot >= 0).sum()))
        return out

    monkeypatch.setattr(cellmerge, "_near_queries", near)
    monkeypatch.setattr(cellmerge, "_far_tier", tier)
    monkeypatch.setattr(cellmerge, "_major_classes", major)
    tasks = ("semantic", "panoptic")
    fast = postprocess_batch(logits, masks, [meta], tasks, cfg, table(k))[0]
    ref = dense_reference(logits, masks, [meta], tasks, cfg, table(k))[0]
    assert_same(fast, ref)
    assert len(ref.panoptic.segments) >= 5  # stuff classes merge: fewer segments than kept queries
    if merge_path == "tensor":  # the native merges bound the far queries per cell instead
        assert any(tiered) and sum(rest) > 0
        assert majors == [k > 32]
