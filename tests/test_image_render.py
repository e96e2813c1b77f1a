"""render_outputs: the arrays the node publishes (and the bag writer records) for one result."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from bisenetformer_ros.data.classes import CITYSCAPES, ClassTable
from bisenetformer_ros.inference.outputs import (
    EDGE_COLOR,
    OUTPUT_NAMES,
    class_mask,
    colorize_panoptic,
    instance_color,
    instance_edges,
    render_outputs,
)
from bisenetformer_ros.model.postprocess import PanopticResult, Segment, SegmentationOutput

H, W = 21, 30


def _scene() -> tuple[np.ndarray, SegmentationOutput]:
    """Road (stuff) everywhere, two touching cars (things) and a person, as a model would report them."""
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (H, W, 3), dtype=np.uint8)
    sem = np.zeros((H, W), np.uint8)  # road
    ids = np.ones((H, W), np.uint16)  # segment 1: road
    ids[5:12, 3:10] = 2  # car A
    ids[5:12, 10:16] = 3  # car B, touching A
    ids[14:20, 20:25] = 4  # person
    ids[0, :] = 0  # void row
    sem[ids == 2] = sem[ids == 3] = 13
    sem[ids == 4] = 11
    segs = []
    for sid, cls in ((1, 0), (2, 13), (3, 13), (4, 11)):
        ys, xs = np.nonzero(ids == sid)
        segs.append(
            Segment(
                sid,
                cls,
                CITYSCAPES.is_thing[cls],
                0.9,
                int(xs.size),
                (int(xs.min()), int(ys.min()), int(xs.max() - xs.min() + 1), int(ys.max() - ys.min() + 1)),
                (float(xs.mean()), float(ys.mean())),
            )
        )
    return image, SegmentationOutput(semantic=sem, panoptic=PanopticResult(ids, segs))


def test_semantic_and_colour_images() -> None:
    image, out = _scene()
    r = render_outputs(out, image, CITYSCAPES, alpha=0.5)
    sem, enc = r.semantic
    assert enc == "mono8" and sem is out.semantic
    pal = np.asarray(CITYSCAPES.colors, np.uint8)
    np.testing.assert_array_equal(r.semantic_color, pal[out.semantic])
    assert r.semantic_color.flags.c_contiguous and r.semantic_color.dtype == np.uint8
    assert r.size == (H, W)
    np.testing.assert_array_equal(r.panoptic_ids, out.panoptic.id_map)
    assert [s.id for s in r.segments] == [1, 2, 3, 4]


def test_overlay_blend_and_instance_outlines() -> None:
    image, out = _scene()
    pal = np.asarray(CITYSCAPES.colors, np.uint8)
    r0 = render_outputs(out, image, CITYSCAPES, alpha=0.0, draw_instance_edges=False)
    np.testing.assert_array_equal(r0.overlay, image)
    r1 = render_outputs(out, image, CITYSCAPES, alpha=1.0, draw_instance_edges=False)
    np.testing.assert_array_equal(r1.overlay, pal[out.semantic])
    rh = render_outputs(out, image, CITYSCAPES, alpha=0.3, draw_instance_edges=False)
    expect = np.clip(np.rint(0.7 * image + 0.3 * pal[out.semantic]), 0, 255)
    assert np.abs(rh.overlay.astype(float) - expect).max() <= 1
    # Outlines: on the border between the two touching cars and around the person, never inside stuff.
    re = render_outputs(out, image, CITYSCAPES, alpha=0.3, draw_instance_edges=True)
    edge = (re.overlay == EDGE_COLOR).all(-1) & ~(rh.overlay == EDGE_COLOR).all(-1)
    ids = out.panoptic.id_map
    assert edge[5:12, 9].all() and edge[5:12, 10].all()  # both sides of the car A | car B border
    assert edge[14, 20:25].all()  # top row of the person
    assert not edge[8, 6] and not edge[16, 22]  # instance interiors stay blended
    assert not edge[ids == 1].any()  # only the thing side of a border is painted: road stays blended


def test_panoptic_colours_are_per_segment_and_stable() -> None:
    image, out = _scene()
    r = render_outputs(out, image, CITYSCAPES)
    ids = out.panoptic.id_map
    col = r.panoptic_color
    assert (col[ids == 0] == 0).all()  # void is black
    assert (col[ids == 1] == CITYSCAPES.colors[0]).all()  # stuff keeps its class colour
    car_a = col[ids == 2][0]
    car_b = col[ids == 3][0]
    assert (col[ids == 2] == car_a).all() and (col[ids == 3] == car_b).all()
    assert tuple(car_a) != tuple(car_b)  # two instances of one class are told apart
    assert tuple(car_a) == instance_color(2, 13, CITYSCAPES)  # deterministic across calls and tools
    np.testing.assert_array_equal(colorize_panoptic(out.panoptic, CITYSCAPES), col)


def test_only_requested_outputs_are_rendered() -> None:
    image, out = _scene()
    r = render_outputs(out, image, CITYSCAPES, outputs={"semantic"})
    assert r.semantic is not None and r.overlay is None and r.semantic_color is None
    assert r.panoptic_ids is None and r.panoptic_color is None and r.segments == []
    r = render_outputs(out, image, CITYSCAPES, outputs={"panoptic_color"})
    assert r.panoptic_color is not None and r.semantic is None
    with pytest.raises(ValueError, match="unknown output"):
        render_outputs(out, image, CITYSCAPES, outputs={"depth"})
    with pytest.raises(ValueError, match="alpha"):
        render_outputs(out, image, CITYSCAPES, alpha=1.5)
    with pytest.raises(ValueError, match="but the image is"):
        render_outputs(out, image[:-1], CITYSCAPES)


def test_panoptic_only_overlay_keeps_void_pixels() -> None:
    image, out = _scene()
    pan_only = SegmentationOutput(semantic=None, panoptic=out.panoptic)
    r = render_outputs(pan_only, image, CITYSCAPES, alpha=1.0, draw_instance_edges=False)
    ids = out.panoptic.id_map
    np.testing.assert_array_equal(r.overlay[ids == 0], image[ids == 0])
    np.testing.assert_array_equal(r.overlay[ids > 0], r.panoptic_color[ids > 0])
    assert r.semantic is None and r.semantic_color is None


def test_more_than_255_classes_use_mono16() -> None:
    k = 300
    table = ClassTable(
        "many",
        tuple(f"c{i}" for i in range(k)),
        tuple((i % 256, (7 * i) % 256, 3) for i in range(k)),
        tuple(i % 2 == 0 for i in range(k)),
        ignore_label=65535,
    )
    sem = np.arange(H * W, dtype=np.uint16).reshape(H, W) % k
    r = render_outputs(SegmentationOutput(semantic=sem), np.zeros((H, W, 3), np.uint8), table)
    assert r.semantic[1] == "mono16"
    np.testing.assert_array_equal(r.semantic_color, np.asarray(table.colors, np.uint8)[sem])


@pytest.mark.slow
def test_with_a_real_model_result(tmp_path: Path) -> None:
    """A FrameResult of the real pipeline (random tiny model) renders consistently with its own outputs."""
    from bisenetformer_ros.inference import Segmenter
    from bisenetformer_ros.model import PostprocessConfig
    from tests.inference_models import make_model_file

    torch.set_num_threads(1)
    path = make_model_file(tmp_path / "tiny.pt", class_table=CITYSCAPES, sharpen=False, seed=0)

    seg = Segmenter.from_model(path, device="cpu", postprocess_config=PostprocessConfig(object_mask_threshold=0.0))
    img = np.random.default_rng(3).integers(0, 256, (45, 61, 3), dtype=np.uint8)
    [res] = seg.run([img])
    r = render_outputs(res, img, seg.class_table, alpha=0.4, mask_classes=seg.class_table.resolve(["road", "Car"]))
    assert set(OUTPUT_NAMES) == {
        "semantic",
        "semantic_color",
        "semantic_confidence",
        "overlay",
        "class_mask",
        "panoptic",
        "panoptic_color",
    }
    assert r.semantic_confidence is None  # not computed unless PostprocessConfig.semantic_confidence
    sem = r.semantic[0]
    np.testing.assert_array_equal(r.class_mask, np.where(np.isin(sem, [0, 13]), 255, 0).astype(np.uint8))
    assert r.size == (45, 61)
    assert int(r.semantic[0].max()) < seg.class_table.num_classes
    ids = r.panoptic_ids
    for s in r.segments:
        assert int((ids == s.id).sum()) == s.area
    assert set(np.unique(ids).tolist()) <= {0} | {s.id for s in r.segments}


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
def test_class_mask_marks_exactly_the_chosen_classes(dtype: type) -> None:
    labels = np.random.default_rng(0).integers(0, 300 if dtype == np.uint16 else 19, (33, 47)).astype(dtype)
    for ids in ([], [0], [3, 17], [18, 299] if dtype == np.uint16 else [18]):
        mask = class_mask(labels, ids)
        assert mask.dtype == np.uint8 and mask.shape == labels.shape
        np.testing.assert_array_equal(mask, np.where(np.isin(labels, ids), 255, 0))


def test_class_names_resolve_to_ids_with_a_useful_error() -> None:
    assert CITYSCAPES.resolve(["road", "SIDEWALK", "13", 13, " terrain "]) == [0, 1, 13, 9]
    assert CITYSCAPES.resolve([]) == []
    with pytest.raises(ValueError, match=r"unknown class 'sidewalks'.*did you mean 'sidewalk'"):
        CITYSCAPES.resolve(["sidewalks"])
    with pytest.raises(ValueError, match=r"class id 19 is outside the 19 classes of 'cityscapes'"):
        CITYSCAPES.resolve(["19"])


def test_semantic_confidence_renders_as_mono8_x255() -> None:
    conf = np.array([[0.0, 0.25, 0.5], [0.999, 1.0, 1 / 19]], dtype=np.float32)
    out = SegmentationOutput(semantic=np.zeros((2, 3), np.uint8), semantic_confidence=conf)
    r = render_outputs(out, np.zeros((2, 3, 3), np.uint8), CITYSCAPES, outputs={"semantic_confidence"})
    assert r.semantic_confidence.dtype == np.uint8
    np.testing.assert_array_equal(r.semantic_confidence, [[0, 64, 128], [255, 255, 13]])
    assert r.size == (2, 3) and r.semantic is None


def test_colour_lookup_equals_indexing_on_every_path() -> None:
    """The OpenCV 8-bit path (uint8 ids, uint16 ids below 256) and the packed path (larger ids) give palette[ids],
    black beyond the palette."""
    from bisenetformer_ros.inference.outputs import _lookup_rgb

    rng = np.random.default_rng(5)
    palette = rng.integers(0, 256, (40, 3), dtype=np.uint8)
    padded = np.zeros((70_000, 3), dtype=np.uint8)
    padded[:40] = palette
    for ids in (
        rng.integers(0, 50, (31, 47), dtype=np.uint8),
        rng.integers(0, 50, (31, 47)).astype(np.uint16),
        rng.integers(0, 65_000, (31, 47)).astype(np.uint16),
    ):
        got = _lookup_rgb(ids, palette)
        assert got.shape == (*ids.shape, 3) and got.flags.c_contiguous
        np.testing.assert_array_equal(got, padded[ids])


@pytest.mark.parametrize(("n_ids", "shape"), [(6, (7, 9)), (200, (40, 57)), (700, (31, 29)), (3, (1, 6)), (3, (5, 1))])
def test_instance_edges_match_the_four_neighbour_definition(n_ids: int, shape: tuple[int, int]) -> None:
    """Border pixels of things (a 4-neighbour with another id; out-of-image neighbours do not count) on blocky random
    id maps, for ids that fit 8 bits and ids that do not."""
    rng = np.random.default_rng(n_ids)
    ids = np.repeat(np.repeat(rng.integers(0, n_ids, shape), 2, 0), 3, 1).astype(np.uint16)
    segments = [
        Segment(id=i, class_id=0, is_thing=i % 3 == 1, score=1.0, area=1, bbox=(0, 0, 1, 1), centroid=(0.0, 0.0))
        for i in range(1, n_ids)
    ]
    thing = np.isin(ids, [s.id for s in segments if s.is_thing])
    padded = np.pad(ids.astype(np.int64), 1, constant_values=-1)
    h, w = ids.shape
    neighbours = [padded[1 + dy : 1 + dy + h, 1 + dx : 1 + dx + w] for dy, dx in ((-1, 0), (1, 0), (0, -1), (0, 1))]
    expected = thing & np.any([(nb != ids) & (nb >= 0) for nb in neighbours], axis=0)
    got = instance_edges(PanopticResult(id_map=ids, segments=segments))
    assert got.dtype == bool and got.shape == ids.shape
    np.testing.assert_array_equal(got, expected)
    assert expected.any() or min(shape) == 1
