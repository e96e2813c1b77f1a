"""The measurement scripts in tools/ run end to end and report consistent figures (they back README tables).

They are run as a user runs them (subprocesses, tiny sizes); the tests check the plumbing and the invariants of the
reported figures, never a speed."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from bisenetformer_ros.resources import default_model_path

# Each test runs a measurement script in a subprocess.
pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]


def _run_tool(name: str, *args: str) -> dict:
    proc = subprocess.run(
        [sys.executable, str(ROOT / "tools" / name), *args, "--json"],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _need_default_model() -> None:
    try:
        default_model_path()
    except FileNotFoundError as exc:
        pytest.skip(f"the embedded default model is not built: {exc}")


def test_label_stride_quality_reports_exact_reference_and_coarser_strides() -> None:
    _need_default_model()
    out = _run_tool("label_stride_quality.py", "--frames", "2", "--size", "160x120", "--strides", "4", "--threads", "1")
    rows = {r["label_stride"]: r for r in out["rows"]}
    assert set(rows) == {1, 4}  # the exact merge is always measured as the reference
    assert rows[1]["agreement_with_exact_pct"] == 100.0
    assert 50.0 < rows[4]["agreement_with_exact_pct"] <= 100.0
    for r in rows.values():
        assert 0.0 <= r["mIoU"] <= 100.0 and 0.0 <= r["pixel_accuracy"] <= 100.0


@pytest.mark.parametrize("predictions", ["network", "rendered"])
def test_node_overhead_benchmark_splits_the_frame_into_stages(ros_env: dict[str, str], predictions: str) -> None:
    """The script publishes over DDS: ros_env gives it this module's private domain (and the ``ros`` marker).
    ``rendered``: the real network still runs, post-processing gets realistic predictions."""
    _need_default_model()
    out = _run_tool(
        "bench_node_overhead.py",
        "--sizes",
        "160x120",
        "--iters",
        "2",
        "--warmup",
        "0",
        "--threads",
        "1",
        "--label-stride",
        "2",
        "--predictions",
        predictions,
    )
    assert out["predictions"] == predictions
    [row] = out["results"]
    assert row["camera"] == "160x120"
    stages = row["stages_ms"]
    assert set(stages) >= {"decode", "preprocess", "inference", "postprocess", "render", "publish", "backend"}
    assert all(v >= 0.0 for v in stages.values()) and stages["backend"] > 0.0
    assert 0.0 < row["adapter_pct_of_backend"] <= row["node_pct_of_backend"]
    assert {d["encoding"] for d in out["decode"]} >= {"rgb8", "bgr8", "mono8", "jpeg"}


def test_bench_postprocess_reports_cell_and_dense_merge_side_by_side() -> None:
    """One row per (kept-query set, order, merge), network and post-processing timed in the same run, with the
    merge's peak memory."""
    proc = subprocess.run(
        [sys.executable, str(ROOT / "tools" / "bench_postprocess.py"), "--camera", "160x96", "--classes", "3",
         "--iters", "1", "--threads", "1", "--dense", "--orders", "sigmoid_first", "--backend", "torch", "--json"],
        capture_output=True, text=True, timeout=300, cwd=ROOT,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    rows = [json.loads(line) for line in proc.stdout.strip().splitlines()]
    assert [(r["merge"], r["kept"] > 8) for r in rows] == [("cells", False), ("dense", False), ("cells", True),
                                                          ("dense", True)]  # fmt: skip
    for r in rows:
        assert r["network_input"] == "160x96" and r["classes"] == 3 and r["order"] == "sigmoid_first"
        assert r["network_ms"] > 0 and r["post_ms"] > 0 and r["post_pct_of_network"] > 0
        assert r["peak_mb"] >= 0  # the dense merge's memory is measured for the last camera only (here the only one)
