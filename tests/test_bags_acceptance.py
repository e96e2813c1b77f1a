"""Acceptance of the rosbag tools and the demo (issue 8), run as a user runs them: CLI subprocesses, the real node.

A tiny random-weight model with the synthetic class table (tests/inference_models.py) stands in for the shipped
one, so these tests do not depend on a trained model: they check that the paths agree with each other exactly, not
that the model is good. Every process is pinned to one CPU thread (OMP_NUM_THREADS=1, node ``num_threads:=1``):
the equality checks compare float pipelines, which are only bit-reproducible at an equal thread count.

- ``bag evaluate`` scores a bag exactly as ``evaluate`` scores the same frames exported with ``bag export``;
- the labels ``bag evaluate --write-bag`` writes equal, pixel for pixel, what the node publishes over DDS;
- ``demo --quick`` runs end to end, writes its report and bags, prints the headline and accounts for every frame;
- bad input (missing, corrupt or truncated bag, missing topic, ground truth that is missing, broken or of another
  size) gives a clear error or a counted per-frame skip.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest

from bisenetformer_ros.bags import msgconv as mc
from bisenetformer_ros.bags.bagio import BagError, BagReader, BagWriter
from bisenetformer_ros.bags.scoring import SKIP_GT_BAD, SKIP_GT_SIZE, SKIP_NO_GT
from bisenetformer_ros.bags.typestore import IMAGE
from bisenetformer_ros.data.synthetic import SYNTHETIC
from tests.inference_models import camera_like_images

CLI = str(Path(sys.executable).parent / "bisenetformer")
FRAMES, HEIGHT, WIDTH = 6, 96, 128
IMAGE_TOPIC, GT_SEM, GT_PAN = "/camera/image", "/camera/gt/semantic", "/camera/gt/panoptic"
QUICK_FRAMES = 8  # demo --quick (ros/demo_runner.synthetic_settings)
STAMP0 = 1_700_000_000_000_000_000


def _cli(*args: str, env: dict[str, str] | None = None, timeout: float = 540) -> subprocess.CompletedProcess[str]:
    """One CLI run on one thread (see the module docstring)."""
    run_env = dict(env if env is not None else os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    return subprocess.run([CLI, *args], capture_output=True, text=True, timeout=timeout, env=run_env)


def _ok(proc: subprocess.CompletedProcess[str]) -> subprocess.CompletedProcess[str]:
    assert proc.returncode == 0, (
        f"exit {proc.returncode}\nstdout:\n{proc.stdout[-3000:]}\nstderr:\n{proc.stderr[-3000:]}"
    )
    return proc


@pytest.fixture(scope="module")
def synthetic_bag(tmp_path_factory: pytest.TempPathFactory) -> Path:
    bag = tmp_path_factory.mktemp("synthetic") / "bag"
    proc = _ok(
        _cli(
            "bag",
            "make-synthetic",
            str(bag),
            "--frames",
            str(FRAMES),
            "--width",
            str(WIDTH),
            "--height",
            str(HEIGHT),
            "--seed",
            "3",
        )
    )
    assert f"wrote {FRAMES} frames" in proc.stdout
    return bag


def _close(a: float | None, b: float | None, what: str) -> None:
    assert (a is None) == (b is None), f"{what}: {a} vs {b}"
    if a is not None and b is not None:
        assert abs(a - b) <= 1e-6, f"{what}: {a} vs {b}"


@pytest.mark.slow
def test_bag_evaluate_scores_like_evaluate_on_exported_frames(
    synthetic_bag: Path, synthetic_model: Path, tmp_path: Path
) -> None:
    """Both ground-truth topics: mIoU from the label topic / semantic PNGs, PQ from the panoptic topic / COCO json."""
    gt = ["--gt-semantic-topic", GT_SEM, "--gt-panoptic-topic", GT_PAN]
    model = ["--model", str(synthetic_model), "--backend", "torch", "--device", "cpu"]
    _ok(
        _cli(
            "bag",
            "evaluate",
            str(synthetic_bag),
            "--image-topic",
            IMAGE_TOPIC,
            *gt,
            *model,
            "--batch",
            "1",
            "--out",
            str(tmp_path / "report"),
            "--no-progress",
        )
    )
    report = json.loads((tmp_path / "report" / "report.json").read_text())
    assert report["frames"]["total"] == FRAMES and report["frames"]["scored"] == FRAMES
    # The report's images decode and show something (more than a blank canvas with a header).
    plots = sorted((tmp_path / "report" / "plots").glob("*.png"))
    assert plots
    for png in [tmp_path / "report" / "overview.png", *plots]:
        img = cv2.imread(str(png))
        assert img is not None and min(img.shape[:2]) >= 100, png
        assert len(np.unique(img.reshape(-1, 3), axis=0)) > 20, png

    dataset = tmp_path / "dataset"
    export = json.loads(
        _ok(_cli("bag", "export", str(synthetic_bag), "--image-topic", IMAGE_TOPIC, *gt, "--out", str(dataset))).stdout
    )
    assert export["frames"] == {"total": FRAMES, "exported": FRAMES, "skipped": {}, "skip_examples": {}}
    assert export["class_table"] == "synthetic"
    assert len(list((dataset / "images" / "val").glob("*.png"))) == FRAMES
    result = json.loads(
        _ok(
            _cli(
                "evaluate", "--dataset", "folder", "--root", str(dataset), "--split", "val", *model, "--json", "--quiet"
            )
        ).stdout
    )
    assert result["num_images"] == FRAMES and result["num_images_panoptic"] == FRAMES

    sem, pan = report["semantic"], report["panoptic"]
    _close(sem["mIoU"], result["mIoU"], "mIoU")
    _close(sem["pixel_accuracy"], result["pixel_accuracy"], "pixel accuracy")
    for name, iou in zip(SYNTHETIC.names, sem["per_class_iou"], strict=True):
        _close(iou, result["per_class_iou"][name], f"IoU of {name}")
    for key in ("PQ", "SQ", "RQ", "PQ_th", "SQ_th", "RQ_th", "PQ_st", "SQ_st", "RQ_st"):
        _close(pan[key], result[key], key)
    # A random model's PQ is 0 on both sides; the matching counts show that the same segments were compared.
    assert {k: pan[k] for k in ("TP", "FP", "FN")} == result["panoptic_counts"]
    assert pan["FP"] + pan["FN"] > 0
    for name in SYNTHETIC.names:
        ours, theirs = pan["per_class"][name], result["panoptic_per_class"][name]
        assert {k: ours[k] for k in ("TP", "FP", "FN")} == {k: theirs[k] for k in ("TP", "FP", "FN")}, name


# -- the demo and the node -----------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def quick_demo(
    ros_env: dict[str, str], synthetic_model: Path, tmp_path_factory: pytest.TempPathFactory
) -> tuple[subprocess.CompletedProcess[str], Path]:
    """``bisenetformer demo --quick`` once per module: the real node in its own process, in this module's domain."""
    out = tmp_path_factory.mktemp("demo") / "out"
    proc = _cli(
        "demo",
        "--quick",
        "--model",
        str(synthetic_model),
        "--out",
        str(out),
        "--cache-dir",
        str(out.parent / "cache"),
        "--domain-id",
        ros_env["ROS_DOMAIN_ID"],
        "--no-progress",
        "--node-arg=-p",
        "--node-arg=num_threads:=1",
        env=ros_env,
    )
    return proc, out


def test_demo_quick_writes_report_and_bags_and_accounts_for_every_frame(
    quick_demo: tuple[subprocess.CompletedProcess[str], Path],
) -> None:
    proc, out = quick_demo
    _ok(proc)
    text = proc.stdout
    for figure in ("mIoU", "PQ", "FPS", "p99"):
        assert figure in text, text
    report_dir = out / "report"
    for name in ("report.html", "report.json", "overview.png"):
        assert (report_dir / name).is_file(), name
    assert str(report_dir / "report.html") in text
    report = json.loads((report_dir / "report.json").read_text())
    frames = report["frames"]
    assert frames["total"] == QUICK_FRAMES
    assert frames["scored"] + sum(frames["skipped"].values()) == frames["total"]
    assert frames["scored"] == QUICK_FRAMES, frames  # lock-step: the node answers every frame
    assert len(report["per_frame"]) == QUICK_FRAMES
    assert report["semantic"]["mIoU"] is not None and report["panoptic"]["PQ"] is not None
    assert report["latency"]["total"]["count"] == QUICK_FRAMES and report["latency"]["fps"] > 0
    with BagReader(out / "node_outputs") as r:
        counts = {t: s.count for t, s in r.topics.items()}
    for rel in ("semantic", "semantic/color", "overlay", "panoptic", "panoptic/color"):
        assert counts[f"/bisenetformer/{rel}"] == QUICK_FRAMES, counts
    input_bag = next(p for p in (out.parent / "cache").iterdir() if p.name.startswith("synthetic_"))
    with BagReader(input_bag) as r:
        assert r.topics[IMAGE_TOPIC].count == QUICK_FRAMES


def _by_stamp(bag: Path, topic: str, decode: Any) -> dict[int, Any]:
    with BagReader(bag) as r:
        return {mc.stamp_ns(m.msg.header): decode(m.msg) for m in r.messages([topic])}


def test_offline_labels_equal_the_labels_the_node_publishes(
    quick_demo: tuple[subprocess.CompletedProcess[str], Path], synthetic_model: Path, tmp_path: Path
) -> None:
    """Same frames, same model, torch on the CPU with one thread; ``--batch 1`` as the lock-stepped node runs."""
    proc, out = quick_demo
    _ok(proc)
    input_bag = next(p for p in (out.parent / "cache").iterdir() if p.name.startswith("synthetic_"))
    written = tmp_path / "offline"
    _ok(
        _cli(
            "bag",
            "evaluate",
            str(input_bag),
            "--image-topic",
            IMAGE_TOPIC,
            "--model",
            str(synthetic_model),
            "--backend",
            "torch",
            "--device",
            "cpu",
            "--batch",
            "1",
            "--out",
            str(tmp_path / "report"),
            "--write-bag",
            str(written),
            "--no-progress",
        )
    )
    node_sem = _by_stamp(out / "node_outputs", "/bisenetformer/semantic", mc.label_image_to_array)
    offline_sem = _by_stamp(written, "/bisenetformer/semantic", mc.label_image_to_array)
    assert len(node_sem) == QUICK_FRAMES and sorted(offline_sem) == sorted(node_sem)
    for stamp, labels in node_sem.items():
        assert labels.shape == offline_sem[stamp].shape and labels.dtype == offline_sem[stamp].dtype
        mismatch = int((labels != offline_sem[stamp]).sum())
        assert mismatch == 0, f"frame stamp {stamp}: {mismatch} pixels differ"
    assert any(len(np.unique(lab)) > 1 for lab in node_sem.values())  # maps with content, not one class
    node_pan = _by_stamp(out / "node_outputs", "/bisenetformer/panoptic", mc.panoptic_from_msg)
    offline_pan = _by_stamp(written, "/bisenetformer/panoptic", mc.panoptic_from_msg)
    for stamp, (ids, segments) in node_pan.items():
        np.testing.assert_array_equal(ids, offline_pan[stamp][0])
        # the same tracker on the same frames in the same order: the same track ids (tracking on in both)
        assert [(s.id, s.class_id, s.track_id, s.frames_seen) for s in segments] == [
            (s.id, s.class_id, s.track_id, s.frames_seen) for s in offline_pan[stamp][1]
        ]


# -- bad input -----------------------------------------------------------------------------------------------------
@pytest.mark.slow
def test_bag_cli_bad_input_gives_clear_errors(synthetic_bag: Path, synthetic_model: Path, tmp_path: Path) -> None:
    """Exit code 2 with one line naming the cause, before any model is loaded (missing, corrupt bag, no topic)."""
    ev = ["--image-topic", IMAGE_TOPIC, "--model", str(synthetic_model), "--device", "cpu", "--no-progress"]
    proc = _cli("bag", "evaluate", str(tmp_path / "nope"), *ev, "--out", str(tmp_path / "r1"))
    assert proc.returncode == 2 and "does not exist" in proc.stderr, proc.stderr

    corrupt = tmp_path / "corrupt"
    shutil.copytree(synthetic_bag, corrupt)
    db = next(corrupt.glob("*.db3"))
    db.write_bytes(b"definitely not sqlite " * 100)
    proc = _cli("bag", "evaluate", str(corrupt), *ev, "--out", str(tmp_path / "r2"))
    assert proc.returncode == 2 and "truncated or corrupt" in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr

    proc = _cli("bag", "evaluate", str(synthetic_bag), *ev[2:], "--image-topic", "/camera/nope")
    assert proc.returncode == 2 and "no image topic '/camera/nope'" in proc.stderr and IMAGE_TOPIC in proc.stderr

    proc = _cli(
        "bag",
        "export",
        str(synthetic_bag),
        "--image-topic",
        IMAGE_TOPIC,
        "--gt-semantic-topic",
        "/nope",
        "--out",
        str(tmp_path / "x"),
    )
    assert proc.returncode == 2 and "no ground-truth topic '/nope'" in proc.stderr, proc.stderr

    proc = _cli("demo", "--bag", str(tmp_path / "nope"), "--model", str(synthetic_model), "--out", str(tmp_path / "d"))
    assert proc.returncode == 2 and "does not exist" in proc.stderr, proc.stderr


def _gt_problem_bag(path: Path) -> None:
    """Five 24x32 frames: GT fine, 16x16 (size mismatch), absent, malformed (too little data), fine."""
    images = camera_like_images([(24, 32)] * 5, seed=4)
    with BagWriter(path) as w:
        ts = w.typestore
        w.add_topic(IMAGE_TOPIC, IMAGE)
        w.add_topic(GT_SEM, IMAGE)
        for i, rgb in enumerate(images):
            stamp = STAMP0 + i * 100_000_000
            header = mc.make_header(ts, stamp, "cam")
            w.write(IMAGE_TOPIC, stamp, mc.image_msg(ts, header, rgb, "rgb8"))
            labels = (np.arange(24 * 32).reshape(24, 32) // 97 % SYNTHETIC.num_classes).astype(np.uint8)
            if i == 1:
                w.write(GT_SEM, stamp, mc.image_msg(ts, header, labels[:16, :16], "mono8"))
            elif i == 3:
                bad = ts.types[IMAGE](
                    header=header,
                    height=24,
                    width=32,
                    encoding="mono8",
                    is_bigendian=0,
                    step=32,
                    data=np.zeros(10, np.uint8),
                )
                w.write(GT_SEM, stamp, bad)
            elif i != 2:
                w.write(GT_SEM, stamp, mc.image_msg(ts, header, labels, "mono8"))


@pytest.mark.slow
def test_ground_truth_problems_are_counted_per_frame(synthetic_model: Path, tmp_path: Path) -> None:
    """No frame is silently dropped: each bad one is skipped with its reason, in bag evaluate and in bag export."""
    import torch

    from bisenetformer_ros.bags.evaluate import BagEvalConfig, evaluate_bag
    from bisenetformer_ros.bags.export import export_bag
    from bisenetformer_ros.inference import Segmenter

    torch.set_num_threads(1)
    bag = tmp_path / "bag"
    _gt_problem_bag(bag)
    expected = {SKIP_GT_SIZE: 1, SKIP_NO_GT: 1, SKIP_GT_BAD: 1}
    segmenter = Segmenter.from_model(model_path=str(synthetic_model), backend="torch", device="cpu")
    try:
        report = evaluate_bag(
            BagEvalConfig(
                bag=str(bag),
                image_topic=IMAGE_TOPIC,
                gt_semantic_topic=GT_SEM,
                out_dir=str(tmp_path / "report"),
                batch=2,
                progress=False,
                segmenter=segmenter,
            )
        )
    finally:
        segmenter.close()
    frames = report["frames"]
    assert frames["total"] == 5 and frames["scored"] == 2 and frames["skipped"] == expected
    assert [f["status"] for f in report["per_frame"]] == ["scored", "skipped", "skipped", "skipped", "scored"]
    assert "ground truth 16x16, image 32x24" in frames["skip_examples"][SKIP_GT_SIZE]
    assert "malformed" in frames["skip_examples"][SKIP_GT_BAD]
    assert sum("frame(s) skipped" in w for w in report["warnings"]) == 3
    assert report["semantic"]["num_images"] == 2
    on_disk = json.loads((tmp_path / "report" / "report.json").read_text())
    assert on_disk["frames"]["skipped"] == expected
    assert "2/5 frames scored, 3 skipped" in report["headline"]

    info = export_bag(
        bag, tmp_path / "dataset", image_topic=IMAGE_TOPIC, gt_semantic_topic=GT_SEM, class_table="synthetic"
    )
    assert info["frames"]["total"] == 5 and info["frames"]["exported"] == 2 and info["frames"]["skipped"] == expected
    assert sorted(p.name for p in (tmp_path / "dataset" / "semantic" / "val").iterdir()) == ["000000.png", "000004.png"]


@pytest.mark.parametrize("storage", ["sqlite3", "mcap"])
def test_truncated_bag_is_an_error_or_a_reported_early_stop(
    synthetic_model: Path, tmp_path: Path, storage: str
) -> None:
    """A bag cut short (interrupted copy) either refuses to open with the cause (sqlite3 does), or is evaluated up
    to the cut with a warning that frames are missing (mcap can) - never reported as a complete, shorter bag."""
    import torch

    from bisenetformer_ros.bags.evaluate import BagEvalConfig, evaluate_bag
    from bisenetformer_ros.bags.synthetic_bag import SyntheticBagConfig, make_synthetic_bag
    from bisenetformer_ros.inference import Segmenter

    torch.set_num_threads(1)
    good = tmp_path / "good"
    make_synthetic_bag(good, SyntheticBagConfig(width=32, height=24, frames=12, storage=storage))
    outcomes = []
    segmenter = Segmenter.from_model(model_path=str(synthetic_model), backend="torch", device="cpu")
    try:
        for frac in (0.5, 0.9):
            cut = tmp_path / f"cut{frac}"
            shutil.copytree(good, cut)
            f = next(p for p in cut.iterdir() if p.suffix in (".db3", ".mcap"))
            data = f.read_bytes()
            f.write_bytes(data[: int(len(data) * frac)])
            cfg = BagEvalConfig(
                bag=str(cut), image_topic=IMAGE_TOPIC, gt_panoptic_topic=GT_PAN, progress=False, segmenter=segmenter
            )
            try:
                report = evaluate_bag(cfg)
            except (BagError, ValueError) as exc:
                assert "truncated or corrupt" in str(exc), str(exc)
                outcomes.append("error")
                continue
            frames = report["frames"]
            assert frames["total"] < 12
            assert frames["scored"] + sum(frames["skipped"].values()) == frames["total"]
            assert any("stopped early" in w and "truncated or corrupt" in w for w in report["warnings"]), report[
                "warnings"
            ]
            outcomes.append(f"stopped after {frames['total']}")
    finally:
        segmenter.close()
    assert len(outcomes) == 2
