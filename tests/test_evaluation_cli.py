"""``bisenetformer evaluate`` and ``bisenetformer predict`` end to end, as a user runs them (subprocesses).

A tiny random-weight model (sharpened so that it predicts varied classes and segments, see inference_models.py) with
the synthetic class table stands in for a trained one: the tests check plumbing and consistency, not accuracy.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from bisenetformer_ros.data.classes import CITYSCAPES
from bisenetformer_ros.data.datasets import build_dataset
from bisenetformer_ros.data.synthetic import SYNTHETIC, decode_panoptic_png
from bisenetformer_ros.evaluation.evaluator import evaluate, format_table
from bisenetformer_ros.evaluation.metrics import PanopticMetric, SemanticMetric
from bisenetformer_ros.inference.segmenter import Segmenter
from tests.inference_models import make_model_file

# Every test here runs the CLI end to end (seconds each); the metric rules themselves are in test_evaluation_metrics.
pytestmark = pytest.mark.slow

CLI = str(Path(sys.executable).parent / "bisenetformer")
LIMIT = 4


def _cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    # Same thread count as this process so that CLI and in-process runs compute bit-identical maps.
    env = dict(os.environ, OMP_NUM_THREADS=str(torch.get_num_threads()))
    return subprocess.run([CLI, *args], capture_output=True, text=True, timeout=300, env=env, cwd=cwd)


@pytest.fixture(scope="module")
def evaluate_json(synthetic_model: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, Path]:
    out = tmp_path_factory.mktemp("eval") / "sub" / "result.json"
    proc = _cli(
        "evaluate",
        "--model",
        str(synthetic_model),
        "--dataset",
        "synthetic",
        "--limit",
        str(LIMIT),
        "--device",
        "cpu",
        "--json",
        "--out",
        str(out),
    )
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout), out  # exactly one JSON object: json.loads refuses trailing text


def test_evaluate_json_keys_and_ranges(evaluate_json: tuple[dict, Path]) -> None:
    res, out = evaluate_json
    for key in ("mIoU", "PQ", "SQ", "RQ", "PQ_th", "PQ_st", "pixel_accuracy", "per_class_iou", "timing"):
        assert key in res, key
    assert res["num_images"] == LIMIT and res["num_images_panoptic"] == LIMIT
    assert res["model"].endswith("tiny.pt") and res["dataset"].startswith("synthetic/val")
    for key in ("mIoU", "PQ", "SQ", "RQ", "PQ_th", "PQ_st", "pixel_accuracy"):
        assert 0.0 <= res[key] <= 100.0, key
    assert list(res["per_class_iou"]) == list(SYNTHETIC.names)
    assert all(v is None or 0.0 <= v <= 100.0 for v in res["per_class_iou"].values())
    t = res["timing"]
    assert 0 < t["p50_ms"] <= t["p90_ms"] <= t["p99_ms"] and t["mean_ms"] > 0 and t["fps"] > 0
    assert set(t["stages_ms"]) == {"preprocess", "inference", "postprocess"}
    assert json.loads(out.read_text()) == res


def test_evaluate_equals_metrics_on_segmenter_outputs(synthetic_model: Path, evaluate_json: tuple[dict, Path]) -> None:
    """The CLI's figures are exactly the metric classes applied to the Segmenter's outputs on the same samples."""
    dataset = build_dataset("synthetic", "val")
    sem, pan = SemanticMetric(SYNTHETIC.num_classes, SYNTHETIC.ignore_label), PanopticMetric(SYNTHETIC)
    with Segmenter.from_model(synthetic_model, device="cpu") as seg:
        for i in range(LIMIT):
            sample = dataset[i]
            out = seg.run([sample.image])[0].output
            assert out.semantic is not None and out.panoptic is not None and sample.panoptic is not None
            sem.update(out.semantic, sample.semantic)
            pan.update(out.panoptic.id_map, out.panoptic.segments, sample.panoptic, sample.segments)
        in_process = evaluate(seg, dataset, limit=LIMIT, progress=False, batch_size=3)
    direct_sem, direct_pan = sem.compute(), pan.compute()
    assert direct_sem["num_classes_present"] > 1  # the model predicts more than one class
    res = evaluate_json[0]
    for r in (res, in_process):
        assert r["mIoU"] == pytest.approx(direct_sem["mIoU"], abs=1e-9)
        assert r["pixel_accuracy"] == pytest.approx(direct_sem["pixel_accuracy"], abs=1e-9)
        for key in ("PQ", "SQ", "RQ", "PQ_th", "PQ_st"):
            assert r[key] == pytest.approx(direct_pan[key], abs=1e-9)
    assert in_process["batch_size"] == 3
    table = format_table(res, SYNTHETIC)
    assert "mIoU" in table and "ring" in table and "p99" in table


def test_evaluate_class_table_mismatch(tmp_path: Path) -> None:
    model = make_model_file(tmp_path / "cityscapes.pt", class_table=CITYSCAPES)
    proc = _cli("evaluate", "--model", str(model), "--dataset", "synthetic", "--limit", "1", "--json")
    assert proc.returncode == 2
    assert proc.stdout == ""
    err = proc.stderr.strip().splitlines()[-1]
    assert "cityscapes" in err and "synthetic" in err and "number of classes 19 != 8" in err and "class 0" in err


def test_evaluate_missing_default_model(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from bisenetformer_ros import resources
    from bisenetformer_ros.cli.evaluate import resolve_model

    monkeypatch.setattr(resources, "models_dir", lambda: tmp_path)
    with pytest.raises(FileNotFoundError, match=r"bash tools/train_default_model\.sh"):
        resolve_model(None)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        resolve_model(str(tmp_path / "nope.pt"))


# ------------------------------------------------------------------------------------------------------- predict
def _write_inputs(root: Path) -> Path:
    """Two PNG images (one in a sub-folder) and a 3-frame MJPG video."""
    ds = build_dataset("synthetic", "val")
    root.mkdir(parents=True)
    (root / "sub").mkdir()
    cv2.imwrite(str(root / "a.png"), cv2.cvtColor(ds[0].image, cv2.COLOR_RGB2BGR))
    cv2.imwrite(str(root / "sub" / "b.png"), cv2.cvtColor(ds[1].image, cv2.COLOR_RGB2BGR))
    writer = cv2.VideoWriter(str(root / "clip.avi"), cv2.VideoWriter_fourcc(*"MJPG"), 5, (96, 64))
    assert writer.isOpened()
    for i in range(3):
        writer.write(cv2.cvtColor(cv2.resize(ds[2 + i].image, (96, 64)), cv2.COLOR_RGB2BGR))
    writer.release()
    return root


def _check_result(out: Path, name: str, hw: tuple[int, int]) -> None:
    sem = cv2.imread(str(out / f"{name}_semantic.png"), cv2.IMREAD_UNCHANGED)
    assert sem.shape == hw and sem.dtype == np.uint8 and int(sem.max()) < SYNTHETIC.num_classes
    pan_rgb = cv2.cvtColor(cv2.imread(str(out / f"{name}_panoptic.png"), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
    ids = decode_panoptic_png(pan_rgb)
    meta = json.loads((out / f"{name}_panoptic.json").read_text())
    assert (meta["height"], meta["width"]) == hw and meta["file_name"] == f"{name}_panoptic.png"
    segs = {s["id"]: s for s in meta["segments_info"]}
    assert set(np.unique(ids).tolist()) <= {0, *segs}
    for sid, s in segs.items():
        assert s["area"] == int((ids == sid).sum()) > 0
        assert s["name"] == SYNTHETIC.names[s["category_id"]]
        assert s["isthing"] == SYNTHETIC.is_thing[s["category_id"]]
        x, y, w, h = s["bbox"]
        ys, xs = np.nonzero(ids == sid)
        assert (x, y, w, h) == (xs.min(), ys.min(), xs.max() - xs.min() + 1, ys.max() - ys.min() + 1)
        assert 0.0 <= s["score"] <= 1.0
    overlay = cv2.imread(str(out / f"{name}_overlay.png"), cv2.IMREAD_COLOR)
    assert overlay.shape == (*hw, 3)


def test_predict_images_folder_and_video(synthetic_model: Path, tmp_path: Path) -> None:
    inputs = _write_inputs(tmp_path / "in")
    out = tmp_path / "out"
    proc = _cli("predict", str(inputs), "--out", str(out), "--model", str(synthetic_model), "--device", "cpu")
    assert proc.returncode == 0, proc.stderr
    assert "wrote 5 result(s)" in proc.stdout  # 2 images + 3 frames
    _check_result(out, "a", (128, 128))
    _check_result(out, "sub__b", (128, 128))
    for f in range(3):
        _check_result(out, f"clip_f{f:06d}", (64, 96))
    assert len(list(out.glob("*_panoptic.json"))) == 5
    assert any(json.loads(p.read_text())["segments_info"] for p in out.glob("*_panoptic.json"))

    # Explicit files, every 2nd video frame.
    out2 = tmp_path / "out2"
    proc = _cli(
        "predict",
        str(inputs / "a.png"),
        str(inputs / "clip.avi"),
        "--out",
        str(out2),
        "--model",
        str(synthetic_model),
        "--every",
        "2",
        "--alpha",
        "0.3",
        "--quiet",
    )
    assert proc.returncode == 0, proc.stderr
    assert sorted(p.name for p in out2.glob("*_semantic.png")) == [
        "a_semantic.png",
        "clip_f000000_semantic.png",
        "clip_f000002_semantic.png",
    ]
    assert json.loads((out2 / "clip_f000002_panoptic.json").read_text())["frame"] == 2


def test_predict_corrupt_file(synthetic_model: Path, tmp_path: Path) -> None:
    inputs = tmp_path / "in"
    inputs.mkdir()
    cv2.imwrite(str(inputs / "good.png"), np.full((40, 60, 3), 90, np.uint8))
    (inputs / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really a png")
    out = tmp_path / "out"
    proc = _cli("predict", str(inputs), "--out", str(out), "--model", str(synthetic_model))
    assert proc.returncode == 2
    assert "broken.png" in proc.stderr.strip().splitlines()[-1] and "--skip-bad" in proc.stderr

    proc = _cli("predict", str(inputs), "--out", str(out), "--model", str(synthetic_model), "--skip-bad")
    assert proc.returncode == 0, proc.stderr
    assert "wrote 1 result(s)" in proc.stdout and "skipped 1 unreadable file(s)" in proc.stdout
    assert "broken.png" in proc.stdout
    _check_result(out, "good", (40, 60))
    assert not list(out.glob("broken*"))

    missing = _cli("predict", str(tmp_path / "nothing.png"), "--out", str(out), "--model", str(synthetic_model))
    assert missing.returncode == 2 and "nothing.png" in missing.stderr


def test_evaluate_semantic_only_dataset(synthetic_model: Path) -> None:
    """Datasets without panoptic annotations give mIoU and no PQ (None, not 0)."""
    from bisenetformer_ros.data.sample import Sample

    class SemanticOnly:
        class_table = SYNTHETIC

        def __init__(self) -> None:
            self.inner = build_dataset("synthetic", "val")

        def __len__(self) -> int:
            return 2

        def __getitem__(self, i: int) -> Sample:
            s = self.inner[i]
            return Sample(s.image, s.semantic, name=s.name)

    with Segmenter.from_model(synthetic_model, device="cpu") as seg:
        res = evaluate(seg, SemanticOnly(), progress=False, batch_size=2)
    assert res["num_images"] == 2 and res["num_images_panoptic"] == 0
    assert res["mIoU"] is not None and res["PQ"] is None and res["panoptic_per_class"] is None
    assert "no panoptic annotation" in format_table(res, SYNTHETIC)
    json.dumps(res)


def test_predict_output_names_never_clash(tmp_path: Path) -> None:
    """Two inputs with stem 'a' and one named 'a_2': the suffix given to the second 'a' must not be 'a_2'."""
    from bisenetformer_ros.cli.predict import collect_inputs

    for sub in ("x", "y"):
        (tmp_path / sub).mkdir()
        (tmp_path / sub / "a.png").write_bytes(b"")
    (tmp_path / "y" / "a_2.png").write_bytes(b"")
    inputs = [tmp_path / "x" / "a.png", tmp_path / "y" / "a.png", tmp_path / "y" / "a_2.png"]
    names = [it.name for it in collect_inputs([str(p) for p in inputs])]
    assert names == ["a", "a_3", "a_2"]


def test_record_mask_order_scores_both_orders_and_writes_the_winner(synthetic_model: Path, tmp_path: Path) -> None:
    """The order a model trained here uses is measured on its validation split and stored in the file; evaluate then
    follows the file, and --mask-order reproduces each recorded score."""
    from bisenetformer_ros.model import load_model

    model = tmp_path / "m.pt"
    model.write_bytes(synthetic_model.read_bytes())
    assert load_model(model).inference.mask_order == "upsample_logits"
    args = ["--model", str(model), "--dataset", "synthetic", "--limit", "2", "--device", "cpu", "--quiet"]
    proc = _cli("evaluate", *args, "--record-mask-order", "--json")
    assert proc.returncode == 0, proc.stderr
    assert "mask order:" in proc.stderr
    loaded = load_model(model)
    scores = loaded.inference.mask_order_scores
    assert scores is not None and set(scores) == {"upsample_logits", "sigmoid_first", "dataset"}

    def mean(s: dict) -> float:
        return (s["mIoU"] + s["PQ"]) / 2

    winner = max(("upsample_logits", "sigmoid_first"), key=lambda o: mean(scores[o]))
    assert loaded.inference.mask_order == winner
    assert json.loads(proc.stdout)["mask_order"] == winner
    for order in ("upsample_logits", "sigmoid_first"):
        result = json.loads(_cli("evaluate", *args, "--mask-order", order, "--json").stdout)
        assert result["mask_order"] == order
        assert result["mIoU"] == pytest.approx(scores[order]["mIoU"])
    assert _cli("evaluate", *args, "--mask-order", "sideways").returncode == 2
