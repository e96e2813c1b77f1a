"""Every ``bisenetformer`` command refuses bad input the same way (issue 12): one line naming the problem on stderr,
exit code 2, no traceback, nothing half-written; shared option spellings; the one network-size rule.

Each case is a real subprocess of the installed console script, as a user runs it.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

BIN = Path(sys.executable).parent
CLI = str(BIN / "bisenetformer")


def _cli(*args: str, cwd: Path | None = None, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run([CLI, *args], capture_output=True, text=True, timeout=timeout, cwd=cwd)


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    from bisenetformer_ros.data.synthetic import SYNTHETIC
    from tests.inference_models import make_model_file

    tmp = tmp_path_factory.mktemp("cli_errors")
    a_file = tmp / "a_file"
    a_file.write_text("x")
    not_a_model = tmp / "not_a_model.pt"
    not_a_model.write_bytes(b"\x00not a checkpoint" * 64)
    bad_yaml = tmp / "bad.yaml"
    bad_yaml.write_text("model: [\n")
    image = tmp / "img.png"
    import cv2
    import numpy as np

    cv2.imwrite(str(image), np.full((32, 48, 3), 127, np.uint8))
    return {
        "tmp": tmp,
        "a_file": a_file,
        "not_a_model": not_a_model,
        "bad_yaml": bad_yaml,
        "image": image,
        "model": make_model_file(tmp / "tiny.pt", class_table=SYNTHETIC),
    }


#: (id, argv with {placeholders}, text the error line must contain, paths that must not exist afterwards)
CASES = [
    ("make-synthetic onto a file", ["make-synthetic", "{a_file}", "--train", "1", "--val", "1"], "is a file", []),
    (
        "make-synthetic nothing",
        ["make-synthetic", "{tmp}/ds0", "--train", "0", "--val", "0"],
        "writes nothing",
        ["{tmp}/ds0"],
    ),
    ("predict --out onto a file", ["predict", "{image}", "--out", "{a_file}"], "is a file", []),
    (
        "predict bad model",
        ["predict", "{image}", "--model", "{not_a_model}", "--out", "{tmp}/pred"],
        "not_a_model.pt",
        ["{tmp}/pred"],
    ),
    (
        "evaluate bad model",
        ["evaluate", "--model", "{not_a_model}", "--limit", "1", "--out", "{tmp}/ev/r.json"],
        "not_a_model.pt",
        ["{tmp}/ev"],
    ),
    (
        "evaluate --out onto a dir",
        ["evaluate", "--model", "{model}", "--limit", "1", "--out", "{tmp}"],
        "is a directory",
        [],
    ),
    ("bag play domain 500", ["bag", "play", "{tmp}/nobag", "--domain-id", "500"], "0..232", []),
    (
        "bag record duration -1",
        ["bag", "record", "{tmp}/rec", "--topics", "/a", "--duration", "-1"],
        "--duration",
        ["{tmp}/rec"],
    ),
    (
        "bag record max-messages 0",
        ["bag", "record", "{tmp}/rec", "--all", "--max-messages", "0"],
        "--max-messages",
        ["{tmp}/rec"],
    ),
    ("bag make-synthetic frames 0", ["bag", "make-synthetic", "{tmp}/b0", "--frames", "0"], "--frames", ["{tmp}/b0"]),
    ("bag make-synthetic onto a file", ["bag", "make-synthetic", "{a_file}"], "is a file", []),
    ("bag evaluate batch 0", ["bag", "evaluate", "{tmp}/nobag", "--image-topic", "/i", "--batch", "0"], "--batch", []),
    ("demo frames 0", ["demo", "--frames", "0"], "--frames", []),
    ("demo domain 500", ["demo", "--domain-id", "500"], "0..232", []),
    ("info bad model", ["info", "--model", "{not_a_model}"], "not_a_model.pt", []),
    ("train missing recipe", ["train", "--config", "{tmp}/nope.yaml"], "nope.yaml", []),
    ("train bad yaml", ["train", "--config", "{bad_yaml}"], "", []),
    ("input size 0", ["evaluate", "--input-size", "0"], "--input-size", []),
    ("unknown option", ["predict", "{image}", "--out", "{tmp}/p2", "--bogus"], "--bogus", ["{tmp}/p2"]),
]


@pytest.mark.slow
@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_bad_input_is_one_line_exit_2_nothing_written(case: tuple, files: dict[str, Path]) -> None:
    _, argv, needle, absent = case
    fmt = {k: str(v) for k, v in files.items()}
    proc = _cli(*(a.format(**fmt) for a in argv), cwd=files["tmp"])
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip() and not ln.startswith("network input:")]
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert len(lines) == 1, proc.stderr
    assert "error" in lines[0] and needle in lines[0], lines[0]
    assert "Traceback" not in proc.stderr
    for path in absent:
        assert not Path(path.format(**fmt)).exists(), f"{path} was left behind"


@pytest.mark.slow
def test_checkpoint_errors_do_not_repeat_torchs_unsafe_advice(files: dict[str, Path]) -> None:
    """A file that is not a model file is named as such; torch's 'weights_only=False' advice would tell a user to
    run arbitrary code from an unknown file."""
    proc = _cli("info", "--model", str(files["not_a_model"]))
    assert proc.returncode == 2
    assert "weights_only" not in proc.stderr, proc.stderr


def _help_text(*cmd: str) -> str:
    """What ``bisenetformer <cmd> --help`` prints, from the CLI's own parser in this process (a subprocess per
    command spent ~5 s importing torch just to print help)."""
    import contextlib
    import io

    from bisenetformer_ros.cli.main import build_parser

    out = io.StringIO()
    with contextlib.redirect_stdout(out), pytest.raises(SystemExit) as stop:
        build_parser().parse_args([*cmd, "--help"])
    assert stop.value.code == 0, cmd
    return out.getvalue()


def test_one_spelling_across_commands() -> None:
    """--quiet everywhere a progress bar can be shown (--no-progress stays a hidden alias), --input-size S|HxW|native
    everywhere a model runs."""
    for cmd in (
        ["predict"],
        ["evaluate"],
        ["train"],
        ["demo"],
        ["make-synthetic"],
        ["bag", "evaluate"],
        ["bag", "play"],
    ):
        text = _help_text(*cmd)
        assert "--quiet" in text, cmd
        assert "--no-progress" not in text, cmd
    for cmd in (["predict"], ["evaluate"], ["bag", "evaluate"]):
        assert "--input-size S|HxW|native" in _help_text(*cmd), cmd


@pytest.mark.slow
def test_training_overrides_after_a_flag_parse(tmp_path: Path) -> None:
    """key=value words after --quiet reach the recipe: an unknown key after a flag is reported by the recipe loader,
    not by argparse as an unrecognised argument."""
    recipe = Path(__file__).resolve().parents[1] / "config" / "train" / "synthetic.yaml"
    proc = _cli("train", "--config", str(recipe), "max_iters=1", "--quiet", "no_such_key=1", "--run-dir", str(tmp_path))
    assert proc.returncode == 2, proc.stderr
    assert "no_such_key" in proc.stderr and "unrecognized arguments" not in proc.stderr, proc.stderr
    from bisenetformer_ros.cli.main import build_parser

    args, extra = build_parser().parse_known_args(["train", "--config", "c.yaml", "a=1", "--quiet", "b=2"])
    assert args.overrides == ["a=1"] and extra == ["b=2"] and args.accepts_overrides


@pytest.mark.slow
def test_info_describes_a_model_file(files: dict[str, Path]) -> None:
    from bisenetformer_ros.resources import default_model_path

    proc = _cli("info", "--model", str(default_model_path()), "--json")
    assert proc.returncode == 0, proc.stderr
    info = json.loads(proc.stdout)
    assert info["classes"]["dataset"] == "synthetic" and info["classes"]["num_classes"] == 8
    assert info["network_input"]["input_size"] == 128 and info["network_input"]["source"] == "model file"
    assert info["model_config"]["backbone"] == "stdc1"
    assert info["training"]["recipe"]["augment.base_size"] == 128
    assert info["cost"]["params_M"] > 1 and info["cost"]["GMACs"] > 0
    text = _cli("info", "--model", str(default_model_path())).stdout
    for word in ("classes", "network input", "short side 128", "architecture", "training", "cost"):
        assert word in text, word


def test_network_size_rule(files: dict[str, Path]) -> None:
    """One rule: the model file's inference.input_size, else its training recipe's base_size, else none; an
    explicit size or 'native' overrides it."""
    import torch

    from bisenetformer_ros.model.network_size import recorded_input_size, resolve_network_size
    from bisenetformer_ros.resources import default_model_path

    assert recorded_input_size({"inference": {"input_size": [512, 1024]}}) == (512, 1024)
    assert (
        recorded_input_size({"inference": {"input_size": None}, "extra": {"train_config": "augment: {base_size: 9}"}})
        is None
    )
    assert recorded_input_size({"extra": {"train_config": "augment:\n  base_size: 128\n"}}) == 128
    assert recorded_input_size({"extra": {}}) is None
    with pytest.raises(ValueError):
        recorded_input_size({"inference": {"input_size": -3}})
    assert resolve_network_size(default_model_path(), None).input_size == 128
    assert resolve_network_size(default_model_path(), "native").input_size is None
    assert resolve_network_size(default_model_path(), (64, 96)).input_size == (64, 96)
    assert resolve_network_size(files["model"], None).input_size is None  # the tiny test model records nothing
    ckpt = torch.load(files["model"], weights_only=True)
    ckpt["inference"] = {"input_size": 96}
    recorded = files["tmp"] / "recorded.pt"
    torch.save(ckpt, recorded)
    size = resolve_network_size(recorded, None)
    assert size.input_size == 96 and size.source == "model file"
