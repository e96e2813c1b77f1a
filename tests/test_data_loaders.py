"""Dataset loaders against tiny fixtures written in exactly each published on-disk format.

Every fixture is built here from the format's documentation (cityscapesScripts, ADEChallengeData2016 + Mask2Former's
ADE20K-panoptic export, COCO-panoptic, our folder layout), not with the loaders' own helpers, so a loader that
misreads a format fails here rather than on a cluster after hours of training.
"""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from bisenetformer_ros.data.classes import CITYSCAPES, ClassTable, get_class_table
from bisenetformer_ros.data.datasets import build_dataset, dataset_names
from bisenetformer_ros.data.sample import Sample
from bisenetformer_ros.data.synthetic import SYNTHETIC, TRAIN_SEED, VAL_SEED, render_scene

H, W = 64, 128

# cityscapesScripts labels.py: the 19 evaluated classes as (label id, name, hasInstances), in train-id order.
CS_LABELS = [
    (7, "road", 0), (8, "sidewalk", 0), (11, "building", 0), (12, "wall", 0), (13, "fence", 0), (17, "pole", 0),
    (19, "traffic light", 0), (20, "traffic sign", 0), (21, "vegetation", 0), (22, "terrain", 0), (23, "sky", 0),
    (24, "person", 1), (25, "rider", 1), (26, "car", 1), (27, "truck", 1), (28, "bus", 1), (31, "train", 1),
    (32, "motorcycle", 1), (33, "bicycle", 1),
]  # fmt: skip


def _rgb(path: Path, h: int = H, w: int = W, seed: int = 0) -> np.ndarray:
    img = np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), cv2.cvtColor(img, cv2.COLOR_RGB2BGR))
    return img


def _gray(path: Path, labels: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), labels)


def _panoptic_png(path: Path, ids: np.ndarray) -> None:
    """COCO-panoptic encoding written independently of the code under test: id = R + 256 G + 256^2 B."""
    rgb = np.stack([ids % 256, (ids // 256) % 256, ids // 65536], -1).astype(np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))


def _bands(values: list[int], dtype: type = np.uint8) -> np.ndarray:
    """H x W map with one vertical band per value (left to right)."""
    out = np.zeros((H, W), dtype)
    edges = np.linspace(0, W, len(values) + 1).astype(int)
    for v, a, b in zip(values, edges[:-1], edges[1:], strict=True):
        out[:, a:b] = v
    return out


def _ids(values: list[int]) -> np.ndarray:
    """Panoptic segment-id map with one vertical band per id."""
    return _bands(values, np.int64)


# -- Cityscapes ------------------------------------------------------------------------------------------------------


def _cityscapes(root: Path, panoptic: bool = True) -> dict[str, np.ndarray]:
    """Two frames of 'aachen' (one with labelTrainIds, one with only raw labelIds) and a cityscapesScripts json."""
    out = {}
    names = ["aachen_000000_000019", "aachen_000001_000019"]
    for i, base in enumerate(names):
        out[base] = _rgb(root / "leftImg8bit/train/aachen" / f"{base}_leftImg8bit.png", seed=i)
    # frame 0: labelTrainIds (road, sky, person, ignore); frame 1: raw labelIds (road 7, car 26, ego vehicle 1, 33)
    _gray(root / f"gtFine/train/aachen/{names[0]}_gtFine_labelTrainIds.png", _bands([0, 10, 11, 255]))
    _gray(root / f"gtFine/train/aachen/{names[1]}_gtFine_labelIds.png", _bands([7, 26, 1, 33]))
    if panoptic:
        # frame 0: road (stuff, id = label id 7), two persons 24000/24001, a crowd person region (id 24), void.
        pan = _ids([7, 24000, 24001, 24, 0])
        _panoptic_png(root / f"gtFine/cityscapes_panoptic_train/{names[0]}_gtFine_panoptic.png", pan)
        pan1 = _ids([7, 26000, 0, 33000])
        _panoptic_png(root / f"gtFine/cityscapes_panoptic_train/{names[1]}_gtFine_panoptic.png", pan1)

        def seg(i: int, c: int, crowd: int = 0) -> dict:
            return {"id": i, "category_id": c, "area": 1, "bbox": [0, 0, 1, 1], "iscrowd": crowd}

        data = {
            "images": [{"id": n, "file_name": f"{n}_gtFine_leftImg8bit.png", "height": H, "width": W} for n in names],
            "annotations": [
                {
                    "image_id": names[0],
                    "file_name": f"{names[0]}_gtFine_panoptic.png",
                    "segments_info": [seg(7, 7), seg(24000, 24), seg(24001, 24), seg(24, 24, 1)],
                },
                {
                    "image_id": names[1],
                    "file_name": f"{names[1]}_gtFine_panoptic.png",
                    "segments_info": [seg(7, 7), seg(26000, 26), seg(33000, 33)],
                },
            ],
            "categories": [
                {"id": i, "name": n, "color": [0, 0, 0], "supercategory": "x", "isthing": t} for i, n, t in CS_LABELS
            ],
        }
        (root / "gtFine/cityscapes_panoptic_train.json").write_text(json.dumps(data))
    return out


def test_cityscapes_semantic_train_ids_and_label_ids(tmp_path: Path) -> None:
    images = _cityscapes(tmp_path, panoptic=False)
    ds = build_dataset("cityscapes", "train", str(tmp_path))
    assert ds.class_table is CITYSCAPES and len(ds) == 2
    s0, s1 = ds[0], ds[1]
    assert s0.panoptic is None
    np.testing.assert_array_equal(s0.image, images[s0.name])
    np.testing.assert_array_equal(s0.semantic, _bands([0, 10, 11, 255]))
    # labelIds through the official table: road 7->0, car 26->13, ego vehicle 1->ignore, bicycle 33->18
    np.testing.assert_array_equal(s1.semantic, _bands([0, 13, 255, 18]))
    assert s0.semantic.dtype == np.uint8


def test_cityscapes_panoptic_segments_and_crowd(tmp_path: Path) -> None:
    _cityscapes(tmp_path, panoptic=True)
    ds = build_dataset("cityscapes", "train", str(tmp_path))
    s0 = ds[0]
    assert s0.panoptic is not None and s0.name == "aachen_000000_000019"
    by_id = {s.id: s for s in s0.segments}
    assert by_id[7].category_id == 0 and not by_id[7].isthing
    assert by_id[24000].category_id == 11 and by_id[24000].isthing and not by_id[24000].iscrowd
    assert by_id[24].iscrowd and by_id[24].category_id == 11
    assert set(np.unique(s0.panoptic)) == {0, 7, 24, 24000, 24001}
    # the official semantic map (labelTrainIds) is kept next to the panoptic one
    np.testing.assert_array_equal(s0.semantic, _bands([0, 10, 11, 255]))
    s1 = ds[1]
    assert {s.category_id for s in s1.segments} == {0, 13, 18}
    for seg in s0.segments + s1.segments:
        assert seg.isthing == CITYSCAPES.is_thing[seg.category_id]
    # without any semantic PNG the semantic map is derived from the panoptic one (crowd pixels keep their class)
    for p in tmp_path.glob("gtFine/train/aachen/*label*"):
        p.unlink()
    s0 = build_dataset("cityscapes", "train", str(tmp_path))[0]
    np.testing.assert_array_equal(s0.semantic, _bands([0, 11, 11, 11, 255]))


def test_cityscapes_missing_annotation_names_the_file(tmp_path: Path) -> None:
    _cityscapes(tmp_path, panoptic=False)
    (tmp_path / "gtFine/train/aachen/aachen_000001_000019_gtFine_labelIds.png").unlink()
    with pytest.raises(FileNotFoundError, match=r"aachen_000001_000019_gtFine_labelTrainIds\.png"):
        build_dataset("cityscapes", "train", str(tmp_path))
    ds = build_dataset("cityscapes", "train", str(tmp_path), skip_bad=True)
    assert len(ds) == 1 and ds.skipped == 1


def test_cityscapes_label_outside_table(tmp_path: Path) -> None:
    _cityscapes(tmp_path, panoptic=False)
    bad = tmp_path / "gtFine/train/aachen/aachen_000000_000019_gtFine_labelTrainIds.png"
    _gray(bad, _bands([0, 77]))
    ds = build_dataset("cityscapes", "train", str(tmp_path))
    with pytest.raises(ValueError, match=r"labelTrainIds\.png.*77"):
        ds[0]


# -- ADE20K ----------------------------------------------------------------------------------------------------------


def test_ade20k_class_table() -> None:
    t = get_class_table("ade20k")
    assert t.num_classes == 150 and len(t.thing_ids) == 100 and len(t.stuff_ids) == 50
    assert t.names[:4] == ("wall", "building", "sky", "floor") and t.names[-1] == "flag"
    assert t.names[12] == "person" and t.is_thing[12] and t.names[20] == "car" and t.is_thing[20]
    assert t.colors[0] == (120, 120, 120) and t.colors[149] == (92, 0, 255)
    assert not t.is_thing[2] and t.is_thing[8] and t.names[8] == "window"


def _ade20k(root: Path, panoptic: bool) -> None:
    for i in (1, 2):
        name = f"ADE_train_{i:08d}"
        _rgb(root / "images/training" / f"{name}.jpg", seed=i)
        _gray(root / "annotations/training" / f"{name}.png", _bands([0, 1, 13, 150] if i == 1 else [3, 4]))
    _rgb(root / "images/validation/ADE_val_00000001.jpg")
    _gray(root / "annotations/validation/ADE_val_00000001.png", _bands([2]))
    if panoptic:
        # Mask2Former prepare_ade20k_pan_seg.py: category ids 0..149, stuff segments first, then instances.
        table = get_class_table("ade20k")
        cats = [
            {"id": i, "name": n + (" " if n == "window" else ""), "isthing": int(t), "color": list(c)}
            for i, (n, c, t) in enumerate(zip(table.names, table.colors, table.is_thing, strict=True))
        ]
        anns, images = [], []
        for i in (1, 2):
            name = f"ADE_train_{i:08d}"
            # wall (stuff, cat 0), two persons (cat 12), void
            _panoptic_png(root / "ade20k_panoptic_train" / f"{name}.png", _ids([0, 1, 2, 300]) if i == 1 else _ids([1]))
            segs = [{"id": 1, "category_id": 0, "iscrowd": 0}]
            if i == 1:
                segs += [{"id": 2, "category_id": 12, "iscrowd": 0}, {"id": 300, "category_id": 12, "iscrowd": 0}]
            anns.append({"image_id": name, "file_name": f"{name}.png", "segments_info": segs})
            images.append({"id": name, "file_name": f"{name}.jpg", "width": W, "height": H})
        data = {"images": images, "annotations": anns, "categories": cats}
        (root / "ade20k_panoptic_train.json").write_text(json.dumps(data))


def test_ade20k_semantic(tmp_path: Path) -> None:
    _ade20k(tmp_path, panoptic=False)
    ds = build_dataset("ade20k", "train", str(tmp_path))
    assert ds.class_table.dataset == "ade20k" and len(ds) == 2
    s = ds[0]
    assert s.name == "ADE_train_00000001" and s.panoptic is None and s.image.shape == (H, W, 3)
    np.testing.assert_array_equal(s.semantic, _bands([255, 0, 12, 149]))  # 0 = other -> ignore, v -> v - 1
    val = build_dataset("ade20k", "val", str(tmp_path))
    assert len(val) == 1 and (val[0].semantic == 1).all()
    assert len(build_dataset("ade20k", "validation", str(tmp_path))) == 1
    with pytest.raises(ValueError, match="'train' or 'val'"):
        build_dataset("ade20k", "test", str(tmp_path))


def test_ade20k_panoptic(tmp_path: Path) -> None:
    _ade20k(tmp_path, panoptic=True)
    ds = build_dataset("ade20k", "train", str(tmp_path))
    s = ds[0]
    assert s.panoptic is not None
    assert [(g.id, g.category_id, g.isthing) for g in s.segments] == [(1, 0, False), (2, 12, True), (300, 12, True)]
    np.testing.assert_array_equal(s.panoptic, _ids([0, 1, 2, 300]))
    np.testing.assert_array_equal(s.semantic, _bands([255, 0, 12, 149]))  # official semantic annotation kept
    assert build_dataset("ade20k", "train", str(tmp_path), panoptic=False)[0].panoptic is None


def test_ade20k_label_above_150_is_an_error(tmp_path: Path) -> None:
    _ade20k(tmp_path, panoptic=False)
    _gray(tmp_path / "annotations/training/ADE_train_00000002.png", _bands([1, 200]))
    with pytest.raises(ValueError, match=r"ADE_train_00000002\.png.*200"):
        build_dataset("ade20k", "train", str(tmp_path))[1]


# -- COCO-panoptic ---------------------------------------------------------------------------------------------------


def _coco(root: Path) -> None:
    """COCO layout: val2017/*.jpg, annotations/panoptic_val2017.json, annotations/panoptic_val2017/*.png."""
    cats = [
        {"id": 1, "name": "person", "isthing": 1, "color": [220, 20, 60], "supercategory": "person"},
        {"id": 3, "name": "car", "isthing": 1, "color": [0, 0, 142], "supercategory": "vehicle"},
        {"id": 187, "name": "sky-other-merged", "isthing": 0, "color": [70, 130, 180], "supercategory": "sky"},
    ]
    images, anns = [], []
    for i in (139, 285):
        stem = f"{i:012d}"
        _rgb(root / "val2017" / f"{stem}.jpg", seed=i)
        ids = _ids([5000, 5001, 6000, 0]) if i == 139 else _ids([5000])
        _panoptic_png(root / "annotations/panoptic_val2017" / f"{stem}.png", ids)
        segs = [{"id": 5000, "category_id": 187, "iscrowd": 0, "area": 1, "bbox": [0, 0, 1, 1]}]
        if i == 139:
            segs += [
                {"id": 5001, "category_id": 1, "iscrowd": 0, "area": 1, "bbox": [0, 0, 1, 1]},
                {"id": 6000, "category_id": 3, "iscrowd": 1, "area": 1, "bbox": [0, 0, 1, 1]},
            ]
        images.append({"id": i, "file_name": f"{stem}.jpg", "height": H, "width": W})
        anns.append({"image_id": i, "file_name": f"{stem}.png", "segments_info": segs})
    data = {"info": {}, "images": images, "annotations": anns, "categories": cats}
    (root / "annotations/panoptic_val2017.json").write_text(json.dumps(data))


def test_coco_panoptic_contiguous_categories_and_crowd(tmp_path: Path) -> None:
    _coco(tmp_path)
    ds = build_dataset("coco_panoptic", "val2017", str(tmp_path))
    t = ds.class_table
    assert t.names == ("person", "car", "sky-other-merged") and t.is_thing == (True, True, False)
    assert t.colors[2] == (70, 130, 180)
    s = ds[0]
    assert s.name == "000000000139"
    by_id = {g.id: g for g in s.segments}
    assert (by_id[5000].category_id, by_id[5001].category_id, by_id[6000].category_id) == (2, 0, 1)
    assert by_id[6000].iscrowd and not by_id[5001].iscrowd and by_id[5001].isthing and not by_id[5000].isthing
    np.testing.assert_array_equal(s.semantic, _bands([2, 0, 1, 255]))  # derived from the panoptic map
    # a table passed in must agree with the categories
    with pytest.raises(ValueError, match="categories"):
        build_dataset("coco_panoptic", "val2017", str(tmp_path), class_table=CITYSCAPES)


def test_coco_panoptic_unknown_segment_and_category(tmp_path: Path) -> None:
    _coco(tmp_path)
    _panoptic_png(tmp_path / "annotations/panoptic_val2017/000000000285.png", _ids([5000, 7777]))
    ds = build_dataset("coco_panoptic", "val2017", str(tmp_path))
    with pytest.raises(ValueError, match=r"000000000285\.png.*7777"):
        ds[1]
    path = tmp_path / "annotations/panoptic_val2017.json"
    data = json.loads(path.read_text())
    data["annotations"][0]["segments_info"][0]["category_id"] = 77
    path.write_text(json.dumps(data))
    with pytest.raises(ValueError, match=r"panoptic_val2017\.json.*category_id 77"):
        build_dataset("coco_panoptic", "val2017", str(tmp_path))


def test_coco_panoptic_missing_json_names_expected_files(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"panoptic_train\.json"):
        build_dataset("coco_panoptic", "train", str(tmp_path))


# -- folder ----------------------------------------------------------------------------------------------------------

TABLE = ClassTable("team", ("floor", "box", "shelf"), ((1, 2, 3), (4, 5, 6), (7, 8, 9)), (False, True, True))


def _folder(root: Path, n: int = 3) -> None:
    (root / "classes.json").write_text(TABLE.to_json())
    for i in range(n):
        _rgb(root / "images/train" / f"img{i}.png", seed=i)
        _gray(root / "semantic/train" / f"img{i}.png", _bands([0, 1, 2, 255][: i + 2]))


def test_folder_semantic(tmp_path: Path) -> None:
    _folder(tmp_path)
    ds = build_dataset("folder", "train", str(tmp_path))
    assert ds.class_table == TABLE and len(ds) == 3
    assert [ds[i].name for i in range(3)] == ["img0", "img1", "img2"]
    np.testing.assert_array_equal(ds[2].semantic, _bands([0, 1, 2, 255]))
    assert ds[0].panoptic is None


def test_folder_class_table_argument(tmp_path: Path) -> None:
    _folder(tmp_path)
    (tmp_path / "classes.json").unlink()
    with pytest.raises(FileNotFoundError, match=r"classes\.json"):
        build_dataset("folder", "train", str(tmp_path))
    assert build_dataset("folder", "train", str(tmp_path), class_table=TABLE).class_table == TABLE
    (tmp_path / "classes.json").write_text(TABLE.to_json())
    with pytest.raises(ValueError, match="differs"):
        build_dataset("folder", "train", str(tmp_path), class_table=SYNTHETIC)


def test_folder_panoptic(tmp_path: Path) -> None:
    _folder(tmp_path, n=2)
    ids = _ids([1, 2, 3, 0])
    _panoptic_png(tmp_path / "panoptic/train/img0.png", ids)
    _panoptic_png(tmp_path / "panoptic/train/img1.png", _ids([1]))
    cats = [
        {"id": i, "name": n, "isthing": int(t)}
        for i, (n, t) in enumerate(zip(TABLE.names, TABLE.is_thing, strict=True))
    ]
    segs0 = [{"id": 1, "category_id": 0}, {"id": 2, "category_id": 1}, {"id": 3, "category_id": 1, "iscrowd": 1}]
    data = {
        "images": [{"id": 0, "file_name": "img0.png"}, {"id": 1, "file_name": "img1.png"}],
        "annotations": [
            {"image_id": 0, "file_name": "img0.png", "segments_info": segs0},
            {"image_id": 1, "file_name": "img1.png", "segments_info": [{"id": 1, "category_id": 0}]},
        ],
        "categories": cats,
    }
    (tmp_path / "panoptic_train.json").write_text(json.dumps(data))
    (tmp_path / "semantic/train/img0.png").unlink()  # semantic derived from panoptic for this one
    ds = build_dataset("folder", "train", str(tmp_path))
    s0, s1 = ds[0], ds[1]
    np.testing.assert_array_equal(s0.panoptic, ids)
    assert [(g.id, g.category_id, g.isthing, g.iscrowd) for g in s0.segments] == [
        (1, 0, False, False),
        (2, 1, True, False),
        (3, 1, True, True),
    ]
    np.testing.assert_array_equal(s0.semantic, _bands([0, 1, 1, 255]))
    np.testing.assert_array_equal(s1.semantic, _bands([0, 1, 2]))  # own semantic PNG wins
    assert s1.panoptic is not None


def test_folder_errors_name_the_files(tmp_path: Path) -> None:
    _folder(tmp_path)
    # missing annotation: an error at construction naming the expected file
    (tmp_path / "semantic/train/img1.png").unlink()
    with pytest.raises(FileNotFoundError, match=r"semantic/train/img1\.png"):
        build_dataset("folder", "train", str(tmp_path))
    _gray(tmp_path / "semantic/train/img1.png", _bands([0, 1]))
    # corrupt PNG (garbage bytes, and a truncated file)
    (tmp_path / "semantic/train/img0.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really a png")
    ds = build_dataset("folder", "train", str(tmp_path))
    with pytest.raises(ValueError, match=r"semantic/train/img0\.png"):
        ds[0]
    good = (tmp_path / "images/train/img2.png").read_bytes()
    (tmp_path / "images/train/img2.png").write_bytes(good[: len(good) // 3])
    with pytest.raises(ValueError, match=r"images/train/img2\.png"):
        ds[2]
    (tmp_path / "images/train/img2.png").write_bytes(good)
    # label 77 is outside the 3-class table
    _gray(tmp_path / "semantic/train/img0.png", _bands([0, 77]))
    with pytest.raises(ValueError, match=r"img0\.png.*\[77\]"):
        ds[0]
    # size mismatch names both files
    _gray(tmp_path / "semantic/train/img0.png", np.zeros((H // 2, W), np.uint8))
    with pytest.raises(ValueError, match=r"images/train/img0\.png.*semantic/train/img0\.png"):
        ds[0]
    # colour label images are rejected rather than misread
    _rgb(tmp_path / "semantic/train/img0.png")
    with pytest.raises(ValueError, match="single-channel"):
        ds[0]


def test_folder_skip_bad_counts(tmp_path: Path) -> None:
    _folder(tmp_path, n=4)
    (tmp_path / "semantic/train/img1.png").unlink()  # missing: dropped while listing
    (tmp_path / "semantic/train/img2.png").write_bytes(b"garbage")  # corrupt: skipped when read
    ds = build_dataset("folder", "train", str(tmp_path), skip_bad=True)
    assert len(ds) == 3 and ds.skipped == 1
    names = [ds[i].name for i in range(len(ds))]
    assert names == ["img0", "img3", "img3"]  # the bad index returns the next good sample
    assert ds.skipped == 2
    assert all(isinstance(ds[i], Sample) for i in range(3)) and ds.skipped == 2  # each bad file counted once


# -- registry, synthetic, make-synthetic -----------------------------------------------------------------------------


def test_all_loaders_registered() -> None:
    assert {"synthetic", "cityscapes", "ade20k", "coco_panoptic", "folder"} <= set(dataset_names())
    with pytest.raises(ValueError, match=r"needs data\.root"):
        build_dataset("cityscapes", "train", None)


def test_make_synthetic_cli_round_trip(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from bisenetformer_ros.cli.main import main

    out = tmp_path / "syn"
    assert main(["make-synthetic", str(out), "--train", "3", "--val", "2", "--size", "48", "80", "--quiet"]) == 0
    assert "wrote 3 train and 2 val" in capsys.readouterr().out
    for split, n, seed in (("train", 3, TRAIN_SEED), ("val", 2, VAL_SEED)):
        for name in ("synthetic", "coco_panoptic"):
            ds = (
                build_dataset(name, split, str(out), class_table=SYNTHETIC)
                if name == "coco_panoptic"
                else (build_dataset(name, split, str(out)))
            )
            assert ds.class_table == SYNTHETIC and len(ds) == n
            for i in range(n):
                s, scene = ds[i], render_scene(seed + i, 48, 80)
                np.testing.assert_array_equal(s.image, scene.image)
                np.testing.assert_array_equal(s.semantic, scene.semantic)
                np.testing.assert_array_equal(s.panoptic, scene.panoptic)
                assert [(g.id, g.category_id, g.isthing) for g in s.segments] == [
                    (g.id, g.category_id, g.isthing) for g in scene.segments
                ]
    # the class table read from the json categories alone equals the built-in one
    assert build_dataset("coco_panoptic", "val", str(out)).class_table.names == SYNTHETIC.names
    assert main(["make-synthetic", str(out), "--train", "2000000", "--val", "0"]) == 2


def test_semantic_from_ids_with_coco_sized_ids_and_void() -> None:
    """Ids up to 256^3 (COCO-panoptic RGB encoding) map without a table sized by the largest id; unlisted = void."""
    from bisenetformer_ros.data.sample import semantic_from_ids

    ids = np.array([[0, 16_777_215, 5], [5, 70_000, 3]], dtype=np.int32)
    sem = semantic_from_ids(ids, {16_777_215: 2, 5: 0, 70_000: 7})
    np.testing.assert_array_equal(sem, [[255, 2, 0], [0, 7, 255]])
    assert sem.dtype == np.uint8
    wide = semantic_from_ids(ids, {5: 300}, ignore_label=65535)
    assert wide.dtype == np.uint16 and wide[0, 2] == 300 and wide[0, 0] == 65535
