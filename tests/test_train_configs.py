"""The shipped training recipes (config/train/*.yaml): they load, say what the paper says, and really train.

A recipe is only useful if it runs: each paper recipe does one optimiser step of the real Trainer on a tiny fixture
in the real on-disk format of its dataset (Cityscapes / ADE20K, semantic and panoptic annotations), with overrides
that keep the run cheap (64x64 crops, batch 2, 256 mask points, CPU, fp32) but leave the architecture untouched.
"""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from bisenetformer_ros.data.classes import get_class_table
from bisenetformer_ros.model.bisenetformer import build_model
from bisenetformer_ros.train.config import load_config
from bisenetformer_ros.train.trainer import Trainer

CONFIG_DIR = Path(__file__).resolve().parents[1] / "config" / "train"
ALL_CONFIGS = sorted(CONFIG_DIR.glob("*.yaml"))
PAPER_CONFIGS = [p for p in ALL_CONFIGS if p.stem.split("_")[0] in ("cityscapes", "ade20k")]
H, W = 96, 160


def test_all_twelve_paper_recipes_exist() -> None:
    expected = {
        f"{d}_{t}_{b}"
        for d in ("cityscapes", "ade20k")
        for t in ("semantic", "panoptic")
        for b in ("stdc1", "stdc2", "r50")
    }
    assert {p.stem for p in PAPER_CONFIGS} == expected


@pytest.mark.parametrize("path", ALL_CONFIGS, ids=lambda p: p.stem)
def test_config_loads_and_builds_model(path: Path) -> None:
    cfg = load_config(path)
    model = build_model(cfg.model)
    assert model.config.num_classes == cfg.model.num_classes
    # STDC1 = STDCNet813 (2, 2, 2 blocks per stage), STDC2 = STDCNet1446 (4, 5, 3), r50 = ResNet-50 bottlenecks
    kinds = {"stdc1": ("STDCNet", 6), "stdc2": ("STDCNet", 12), "r50": ("ResNet50", 16)}[cfg.model.backbone]
    blocks = [m for m in model.backbone.modules() if type(m).__name__ in ("STDCBlock", "Bottleneck")]
    assert (type(model.backbone).__name__, len(blocks)) == kinds
    if path in PAPER_CONFIGS:
        dataset, task, bb = path.stem.split("_")
        assert (cfg.data.dataset, cfg.data.task, cfg.model.backbone, cfg.name) == (dataset, task, bb, path.stem)
        assert cfg.model.num_classes == get_class_table(dataset).num_classes
        # the class head has K+1 outputs (K classes + "no object")
        with torch.no_grad():
            out = model.eval()(torch.zeros(1, 3, 64, 64))
        assert out["pred_logits"].shape[-1] == cfg.model.num_classes + 1


@pytest.mark.parametrize("path", PAPER_CONFIGS, ids=lambda p: p.stem)
def test_paper_recipe_values(path: Path) -> None:
    """§4.1: AdamW lr 3e-4 / wd 0.05 / backbone x0.1, step schedule, 90k / 160k iterations, batch 32, crops."""
    cfg = load_config(path)
    dataset, task, _ = path.stem.split("_")
    m = cfg.model
    assert (m.num_queries, m.hidden_dim, m.nheads, m.dim_feedforward, m.dec_layers) == (100, 256, 8, 1024, 6)
    o = cfg.optim
    assert (o.lr, o.weight_decay, o.backbone_lr_mult, o.schedule) == (3e-4, 0.05, 0.1, "step")
    c = cfg.criterion
    assert (c.class_weight, c.mask_weight, c.dice_weight) == (2.0, 5.0, 5.0)
    assert cfg.batch_size == 32 and 32 % cfg.batch_per_step == 0
    assert cfg.augment.scale_range == (0.5, 2.0)
    crop = {"cityscapes": 1024, "ade20k": 512 if task == "semantic" else 640}[dataset]
    assert cfg.augment.crop_size == (crop, crop)
    assert cfg.augment.cat_max_ratio == (0.75 if task == "semantic" else 1.0)
    assert cfg.max_iters == {"cityscapes": 90_000, "ade20k": 160_000}[dataset]
    assert cfg.amp == "fp16" and cfg.checkpoint_every == 5000


# -- fixtures in the real on-disk formats ----------------------------------------------------------------------------


def _write(path: Path, img: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), img)


def _image(seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (H, W, 3), dtype=np.uint8)


def _pan_png(ids: np.ndarray) -> np.ndarray:
    rgb = np.stack([ids % 256, (ids // 256) % 256, ids // 65536], -1).astype(np.uint8)
    return cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)


def _layout() -> np.ndarray:
    """Region index map: 0 stuff on top, 1 stuff below, 2 and 3 two thing instances."""
    regions = np.zeros((H, W), np.int64)
    regions[H // 2 :] = 1
    regions[20:60, 20:60] = 2
    regions[30:80, 90:140] = 3
    return regions


@pytest.fixture(scope="module")
def cityscapes_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("cityscapes")
    regions = _layout()
    label_ids = np.array([23, 7, 26, 24])[regions]  # sky, road, car, person (Cityscapes label ids)
    seg_ids = np.array([23, 7, 26000, 24000])[regions]
    anns = []
    for i in range(2):
        base = f"bonn_{i:06d}_000019"
        _write(root / f"leftImg8bit/train/bonn/{base}_leftImg8bit.png", _image(i))
        _write(root / f"gtFine/train/bonn/{base}_gtFine_labelIds.png", label_ids.astype(np.uint8))
        _write(root / f"gtFine/cityscapes_panoptic_train/{base}_gtFine_panoptic.png", _pan_png(seg_ids))
        segs = [{"id": s, "category_id": c, "iscrowd": 0} for s, c in ((23, 23), (7, 7), (26000, 26), (24000, 24))]
        anns.append({"image_id": base, "file_name": f"{base}_gtFine_panoptic.png", "segments_info": segs})
    cats = [{"id": 7, "name": "road", "isthing": 0}, {"id": 23, "name": "sky", "isthing": 0}]
    cats += [{"id": 24, "name": "person", "isthing": 1}, {"id": 26, "name": "car", "isthing": 1}]
    (root / "gtFine/cityscapes_panoptic_train.json").write_text(json.dumps({"annotations": anns, "categories": cats}))
    return root


@pytest.fixture(scope="module")
def ade20k_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("ade20k")
    regions = _layout()
    sem = np.array([3, 1, 13, 8])[regions]  # sky, wall, person, bed (1-based ADE20K values)
    seg_ids = np.array([1, 2, 3, 4])[regions]
    table = get_class_table("ade20k")
    cats = [
        {"id": i, "name": n, "isthing": int(t), "color": list(c)}
        for i, (n, c, t) in enumerate(zip(table.names, table.colors, table.is_thing, strict=True))
    ]
    anns, images = [], []
    for i in range(2):
        name = f"ADE_train_{i + 1:08d}"
        _write(root / f"images/training/{name}.jpg", _image(i))
        _write(root / f"annotations/training/{name}.png", sem.astype(np.uint8))
        _write(root / f"ade20k_panoptic_train/{name}.png", _pan_png(seg_ids))
        segs = [{"id": s, "category_id": c, "iscrowd": 0} for s, c in ((1, 2), (2, 0), (3, 12), (4, 7))]
        anns.append({"image_id": name, "file_name": f"{name}.png", "segments_info": segs})
        images.append({"id": name, "file_name": f"{name}.jpg", "height": H, "width": W})
    data = {"images": images, "annotations": anns, "categories": cats}
    (root / "ade20k_panoptic_train.json").write_text(json.dumps(data))
    return root


@pytest.mark.slow
@pytest.mark.parametrize("path", PAPER_CONFIGS, ids=lambda p: p.stem)
def test_one_iteration_dry_run(path: Path, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    root = request.getfixturevalue(f"{path.stem.split('_')[0]}_root")
    overrides = [
        "augment.crop_size=[64,64]",
        "augment.base_size=64",
        "batch_size=2",
        "batch_per_step=2",  # 2, not 1: BatchNorm after global pooling needs more than one value
        "max_iters=1",
        "criterion.num_points=256",
        f"data.root={root}",
        "data.num_workers=0",
        "amp=none",
        "device=cpu",
        "checkpoint_every=1",
    ]
    cfg = load_config(path, overrides)
    trainer = Trainer(cfg, tmp_path / "run", progress=False)
    assert trainer.class_table == get_class_table(cfg.data.dataset)
    before = {k: v.clone() for k, v in trainer.model.state_dict().items() if v.dtype.is_floating_point}
    last = trainer.train()
    assert last.is_file() and trainer.iteration == 1
    record = json.loads((tmp_path / "run" / "log.jsonl").read_text().splitlines()[-1])
    assert record["iter"] == 1 and np.isfinite(record["loss"])
    after = trainer.model.state_dict()
    assert any(not torch.equal(before[k], after[k]) for k in before), "one step changed no weight"
