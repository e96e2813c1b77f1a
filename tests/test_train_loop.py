"""The training loop end to end on the tiny network (64x64 synthetic scenes, 8 queries, 2 decoder layers, CPU).

What a user relies on and only a real run can show: a run killed at any moment resumes from ``last.pt`` to exactly the
weights an uninterrupted run reaches; accumulation and ``torchrun`` DDP keep one optimiser step per logged iteration
and identical replicas; ``train -> evaluate -> predict`` works from the command line on the exported file; the run
directory holds a config that reloads, TensorBoard events and a log that plots; bad input fails with a message that
names the problem.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from bisenetformer_ros.data.synthetic import SYNTHETIC, VAL_SEED, render_scene
from bisenetformer_ros.model.bisenetformer import build_model
from bisenetformer_ros.model.checkpoint import atomic_torch_save, load_model, read_checkpoint
from bisenetformer_ros.train.config import TrainConfig, load_config
from bisenetformer_ros.train.curves import plot_training_curve, read_log
from bisenetformer_ros.train.trainer import Trainer

REPO = Path(__file__).resolve().parents[1]
CONFIG = REPO / "config" / "train" / "synthetic.yaml"
BIN = Path(sys.executable).parent
CLI = str(BIN / "bisenetformer")
TINY = [
    "model.num_queries=8",
    "model.hidden_dim=32",
    "model.nheads=4",
    "model.dim_feedforward=64",
    "model.dec_layers=2",
    "model.stdc_base=16",
    "model.context_dim=16",
    "model.mask_dim=16",
    "data.image_size=[64,64]",
    "augment.base_size=64",
    "augment.crop_size=[64,64]",
    "batch_size=2",
    "batch_per_step=2",
    "criterion.num_points=256",
    "max_minutes=null",
    "snapshot_every=0",
    # CPU everywhere: bit-identical resume is a CPU guarantee, and CI machines with a GPU must run the same test.
    "device=cpu",
    "log_every=1",
]


def _cfg(*extra: str) -> TrainConfig:
    return load_config(CONFIG, [*TINY, *extra])


def _env() -> dict[str, str]:
    # Same thread count as this process: CPU kernels are only bit-reproducible at a fixed number of threads.
    return dict(os.environ, OMP_NUM_THREADS=str(torch.get_num_threads()), PYTHONUNBUFFERED="1")


def _cli(*args: str | Path | int, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run([CLI, *map(str, args)], capture_output=True, text=True, timeout=timeout, env=_env(), cwd=REPO)


def _iteration(path: Path) -> int:
    return int(read_checkpoint(path)["train_state"]["iteration"])


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# -- exact resume ------------------------------------------------------------------------------------------------------


def _start_and_kill(cmd: list[str], last: Path, log: Path, at_least: int, timeout: float = 300) -> int:
    """Run ``cmd``; as soon as ``last`` holds iteration >= ``at_least``, SIGKILL it. Returns the saved iteration.

    ``last`` is read while the trainer keeps replacing it (a save every iteration): each read must succeed, which is
    what the atomic write promises to any reader, including the trainer resuming after a crash.
    """
    with open(log, "w") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=_env(), cwd=REPO)
        try:
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline and proc.poll() is None:
                if last.is_file() and _iteration(last) >= at_least:
                    break
                time.sleep(0.02)
            assert proc.poll() is None or proc.returncode == 0, log.read_text()
        finally:
            if proc.poll() is None:
                proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=60)
    return _iteration(last)  # must load whatever instant the kill hit


@pytest.mark.slow
def test_killed_run_resumes_to_bit_identical_weights(tmp_path: Path) -> None:
    # Run A: 6 iterations without interruption, in this process. The lr schedule depends on max_iters, so the
    # interrupted run uses the same max_iters and only differs by being killed.
    a = Trainer(_cfg("max_iters=6", "checkpoint_every=100"), tmp_path / "a", progress=False)
    a.train()
    a_log = {r["iter"]: r for r in read_log(tmp_path / "a" / "log.jsonl")}
    assert sorted(a_log) == [1, 2, 3, 4, 5, 6]

    # Run B: the same command-line run, SIGKILLed once its checkpoint reaches iteration 3 (it saves every iteration,
    # so the kill can land in a save), then resumed by re-running the same command.
    for attempt in range(3):
        run_b = tmp_path / f"b{attempt}"
        cmd = [CLI, "train", "--config", str(CONFIG), "--run-dir", str(run_b), "--no-progress", *TINY]
        cmd += ["max_iters=6", "checkpoint_every=1"]
        killed_at = _start_and_kill(cmd, run_b / "last.pt", tmp_path / f"b{attempt}.out", at_least=3)
        if killed_at < 6:
            break
        # the run finished before the kill (a very slow poller): the interruption was not tested, try again
    assert 3 <= killed_at < 6, f"could not interrupt the run (last.pt at iteration {killed_at})"

    # The interrupted checkpoint is also a model file: weights-only loading rebuilds the network from it.
    loaded = load_model(run_b / "last.pt")
    assert loaded.config == a.cfg.model and loaded.class_table == SYNTHETIC
    assert loaded.extra["iteration"] == killed_at and not loaded.model.training

    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=_env(), cwd=REPO)
    assert proc.returncode == 0, proc.stderr
    b = read_checkpoint(run_b / "last.pt")
    assert b["train_state"]["iteration"] == 6
    a_state = a.model.state_dict()
    assert set(b["state_dict"]) == set(a_state)
    differing = [k for k, v in a_state.items() if not torch.equal(v, b["state_dict"][k])]
    assert not differing, f"resumed weights differ from the uninterrupted run: {differing[:5]}"
    # the optimiser moments too: the next step would also be identical
    a_opt = a.optimizer.state_dict()["state"]
    b_opt = b["train_state"]["optimizer"]["state"]
    assert all(torch.equal(a_opt[i]["exp_avg_sq"], b_opt[i]["exp_avg_sq"]) for i in a_opt)
    # every logged iteration (killed and resumed part) has the uninterrupted run's loss, bit for bit; an iteration
    # logged just before the kill but not yet checkpointed appears twice, with the same value
    b_records = read_log(run_b / "log.jsonl")
    assert {r["iter"] for r in b_records} == set(a_log)
    assert all(r["loss"] == a_log[r["iter"]]["loss"] for r in b_records)


# -- accumulation and DDP ----------------------------------------------------------------------------------------------


def test_gradient_accumulation_one_record_per_optimizer_step(tmp_path: Path) -> None:
    trainer = Trainer(_cfg("batch_size=4", "batch_per_step=2", "max_iters=2"), tmp_path, progress=False)
    assert trainer.accum == 2
    forwards: list[int] = []
    trainer.model.register_forward_hook(lambda _m, inputs, _o: forwards.append(inputs[0].shape[0]))
    trainer.train()
    assert forwards == [2, 2, 2, 2]  # 2 optimiser steps x 2 micro-batches of 2 images = batch 4 per step
    records = read_log(tmp_path / "log.jsonl")
    assert [r["iter"] for r in records] == [1, 2]
    steps = {int(s["step"]) for s in trainer.optimizer.state_dict()["state"].values()}
    assert steps == {2}
    assert _iteration(tmp_path / "last.pt") == 2
    assert all(np.isfinite(r["loss"]) and r["grad_norm"] > 0 for r in records)


@pytest.mark.parametrize("amp", ["bf16", "fp16"])
def test_mixed_precision_steps_update_weights(tmp_path: Path, amp: str) -> None:
    """AMP runs on this CPU too (bf16 autocast; fp16 with a GradScaler): losses stay finite and weights move."""
    trainer = Trainer(_cfg(f"amp={amp}", "max_iters=2"), tmp_path, progress=False)
    before = {k: v.clone() for k, v in trainer.model.state_dict().items() if v.is_floating_point()}
    trainer.train()
    records = read_log(tmp_path / "log.jsonl")
    assert all(np.isfinite(r["loss"]) for r in records)
    after = trainer.model.state_dict()
    assert any(not torch.equal(before[k], after[k]) for k in before)
    assert trainer.scaler.is_enabled() == (amp == "fp16")


# torchrun runs this instead of ``-m bisenetformer_ros.cli.main`` only to see every replica: it is the real CLI
# entry point, and after training each rank writes its model weights (the trainer itself saves on rank 0 only).
DDP_DRIVER = """
import sys
import torch
from bisenetformer_ros.cli.main import main
from bisenetformer_ros.train import trainer as T

out, stop_after = sys.argv[1], int(sys.argv[2])
_train = T.Trainer.train
_save = T.Trainer.save_checkpoint

def train(self):
    last = _train(self)
    torch.save({k: v.detach().cpu() for k, v in self.model.state_dict().items()}, f"{out}/rank{self.dist.rank}.pt")
    return last

def save_checkpoint(self, *args, **kwargs):
    # stop_after > 0: every process stops right after the checkpoint of that iteration, as if the job were killed
    path = _save(self, *args, **kwargs)
    if self.iteration == stop_after:
        torch.distributed.barrier()
        torch.distributed.destroy_process_group()
        sys.exit(0)
    return path

T.Trainer.train = train
T.Trainer.save_checkpoint = save_checkpoint
sys.exit(main(sys.argv[3:]))
"""


def _torchrun_train(tmp_path: Path, run: Path, stop_after: int = 0, *extra: str) -> None:
    driver = tmp_path / "ddp_driver.py"
    driver.write_text(DDP_DRIVER)
    cmd = [str(BIN / "torchrun"), "--nnodes=1", "--nproc_per_node=2", "--master_addr=127.0.0.1"]
    cmd += [f"--master_port={_free_port()}", str(driver), str(tmp_path), str(stop_after)]
    cmd += ["train", "--config", str(CONFIG), "--run-dir", str(run), "--no-progress", *TINY]
    cmd += ["batch_size=4", "batch_per_step=2", "max_iters=2", *extra]  # 2 images x 2 processes: no accumulation
    cmd += ["max_minutes=60"]  # never reached, but the processes then agree on stopping every iteration
    env = dict(_env(), OMP_NUM_THREADS="1")
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=400, env=env, cwd=REPO)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]


@pytest.mark.slow
def test_torchrun_ddp_two_cpu_processes(tmp_path: Path) -> None:
    run = tmp_path / "run"
    _torchrun_train(tmp_path, run)
    last = read_checkpoint(run / "last.pt")
    assert last["train_state"]["iteration"] == 2
    assert [r["iter"] for r in read_log(run / "log.jsonl")] == [1, 2]  # rank 1 writes no log lines
    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in (0, 1)]
    params = {n for n, _ in build_model(_cfg().model).named_parameters()}
    # DDP averages gradients, so the replicas' parameters stay identical. (BatchNorm running statistics are buffers
    # that each process updates from its own images; DDP re-broadcasts rank 0's before every forward pass.)
    assert all(torch.equal(ranks[0][n], ranks[1][n]) for n in params)
    assert all(torch.equal(ranks[0][k], v) for k, v in last["state_dict"].items())  # rank 0 saved its model
    torch.manual_seed(0)  # seed + rank 0: the initialisation that DDP broadcasts to every replica
    init = build_model(_cfg().model).state_dict()
    assert any(not torch.equal(init[n], last["state_dict"][n]) for n in params), "training changed no weight"
    # Each process has its own RNG stream (seed + rank; point sampling draws from it): all are saved.
    rng = last["train_state"]["rng_per_rank"]
    assert len(rng) == 2 and not torch.equal(rng[0]["cpu"], rng[1]["cpu"])
    assert all(r["cuda"] is None for r in rng)  # CPU run

    # Interrupted after iteration 1 and resumed with the same command: every rank continues its own RNG stream,
    # so the result is the uninterrupted run's, bit for bit (with rank 0's stream on both ranks it was not).
    run_b = tmp_path / "run_b"
    _torchrun_train(tmp_path, run_b, 1, "checkpoint_every=1")
    assert read_checkpoint(run_b / "last.pt")["train_state"]["iteration"] == 1
    _torchrun_train(tmp_path, run_b, 0, "checkpoint_every=1")
    b = read_checkpoint(run_b / "last.pt")
    assert b["train_state"]["iteration"] == 2
    differing = [k for k, v in last["state_dict"].items() if not torch.equal(v, b["state_dict"][k])]
    assert not differing, f"resumed DDP weights differ from the uninterrupted run: {differing[:5]}"
    a_log = {r["iter"]: r["loss"] for r in read_log(run / "log.jsonl")}
    assert {r["iter"]: r["loss"] for r in read_log(run_b / "log.jsonl")} == a_log


# -- command line: train -> evaluate -> predict, run directory ---------------------------------------------------------


@pytest.fixture(scope="module")
def cli_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    base = tmp_path_factory.mktemp("cli_run")
    run, model = base / "run", base / "model.pt"
    args = ["--config", CONFIG, "--run-dir", run, "--export", model, "--half", "--no-progress", *TINY, "max_iters=3"]
    proc = _cli("train", *args)
    assert proc.returncode == 0, proc.stderr
    assert f"model file: {model}" in proc.stdout
    return run, model


@pytest.mark.slow
def test_cli_train_export_evaluate_predict(cli_run: tuple[Path, Path], tmp_path: Path) -> None:
    _, model = cli_run
    data = read_checkpoint(model)
    assert "train_state" not in data and data["extra"]["iteration"] == 3 and data["extra"]["task"] == "panoptic"
    assert {v.dtype for v in data["state_dict"].values() if v.is_floating_point()} == {torch.float16}  # --half
    assert load_model(model).config == _cfg().model

    proc = _cli("evaluate", "--model", model, "--dataset", "synthetic", "--limit", 2, "--device", "cpu", "--json")
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert result["num_images"] == 2
    assert 0.0 <= result["mIoU"] <= 100.0 and 0.0 <= result["PQ"] <= 100.0

    image = render_scene(VAL_SEED, 64, 64).image
    png = tmp_path / "scene.png"
    assert cv2.imwrite(str(png), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    out = tmp_path / "pred"
    proc = _cli("predict", png, "--model", model, "--out", out, "--device", "cpu", "--quiet")
    assert proc.returncode == 0, proc.stderr
    semantic = cv2.imread(str(out / "scene_semantic.png"), cv2.IMREAD_UNCHANGED)
    assert semantic.shape == (64, 64) and int(semantic.max()) < SYNTHETIC.num_classes
    for suffix in ("panoptic.png", "overlay.png"):
        assert cv2.imread(str(out / f"scene_{suffix}")) is not None, suffix
    meta = json.loads((out / "scene_panoptic.json").read_text())
    assert (meta["height"], meta["width"]) == (64, 64) and meta["class_table"] == "synthetic"


@pytest.mark.slow
def test_run_dir_config_reloads_and_tensorboard_events(cli_run: tuple[Path, Path]) -> None:
    run, _ = cli_run
    assert load_config(run / "config.yaml") == _cfg("max_iters=3")
    events = list((run / "tb").glob("events.out.tfevents.*"))
    assert events and all(e.stat().st_size > 0 for e in events)
    assert [r["iter"] for r in read_log(run / "log.jsonl")] == [1, 2, 3]
    assert _iteration(run / "last.pt") == 3


@pytest.mark.slow
def test_training_curve_png(cli_run: tuple[Path, Path], tmp_path: Path) -> None:
    run, _ = cli_run
    png = plot_training_curve(run / "log.jsonl", tmp_path / "plots" / "curve.png", title="tiny")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    img = cv2.imread(str(png))
    assert img is not None and img.shape == (462, 715, 3)  # decodes; figsize 6.5 x 4.2 in at 110 dpi
    assert len(np.unique(img.reshape(-1, 3), axis=0)) > 50  # axes, text and curves, not a blank canvas
    # The total-loss curve (matplotlib's first colour, BGR 180/119/31) is drawn through the three logged points:
    # hundreds of pixels (a one-record log, which draws no line, has none).
    first_colour = np.abs(img.astype(np.int16) - np.array([180, 119, 31])).max(axis=-1) <= 12
    assert int(first_colour.sum()) > 100


# -- bad input ---------------------------------------------------------------------------------------------------------


def test_unknown_override_keys_are_named() -> None:
    with pytest.raises(ValueError, match=r"model\.hiden_dim"):
        _cfg("model.hiden_dim=32")
    with pytest.raises(ValueError, match="'max_iter'"):
        _cfg("max_iter=3")
    with pytest.raises(ValueError, match="key=value"):
        _cfg("max_iters")


def test_resume_with_other_architecture_names_the_field(tmp_path: Path) -> None:
    Trainer(_cfg("max_iters=1"), tmp_path, progress=False).save_checkpoint()  # a last.pt at iteration 0
    with pytest.raises(ValueError, match=r"different architecture.*num_queries: checkpoint 8 != config 4"):
        Trainer(_cfg("max_iters=1", "model.num_queries=4"), tmp_path, progress=False)
    # --no-resume starts afresh in the same folder
    assert Trainer(_cfg("max_iters=1", "model.num_queries=4"), tmp_path, resume=False, progress=False).iteration == 0


def test_resume_restores_this_process_rng_or_says_why_not(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """Same process count: the saved stream continues. Another count (e.g. a DDP run resumed on one machine): the
    run still resumes, with a fresh stream and a log line saying it is not bit-identical."""
    first = Trainer(_cfg("max_iters=1"), tmp_path, progress=False)
    torch.rand(5)  # move the stream away from the seed
    first.save_checkpoint()
    expected = torch.rand(3)
    Trainer(_cfg("max_iters=1"), tmp_path, progress=False)
    assert torch.equal(torch.rand(3), expected)

    data = read_checkpoint(tmp_path / "last.pt")
    data["train_state"]["rng_per_rank"] *= 2  # as if two processes had saved it
    atomic_torch_save(data, tmp_path / "last.pt")
    with caplog.at_level("WARNING", logger="bisenetformer_ros.train.trainer"):
        resumed = Trainer(_cfg("max_iters=1"), tmp_path, progress=False)
    assert resumed.iteration == 0
    assert "saved by 2 process(es), this run has 1" in caplog.text and "not bit-identical" in caplog.text
    assert not torch.equal(torch.rand(3), expected)


@pytest.mark.slow
def test_batch_size_must_divide_into_micro_batches(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="batch_size 3 is not a multiple of batch_per_step"):
        Trainer(_cfg("batch_size=3", "batch_per_step=2"), tmp_path, progress=False)
    proc = _cli("train", "--config", CONFIG, "--run-dir", tmp_path / "cli", *TINY, "batch_size=5")
    assert proc.returncode == 2 and "batch_size 5 is not a multiple" in proc.stderr
    assert "Traceback" not in proc.stderr


def _folder_dataset(root: Path, num_classes: int, ignore_label: int, size: int = 32) -> np.ndarray:
    """A plain-folder dataset ('folder' loader) of one image whose 16-bit semantic map uses classes 0, 255 and K-1;
    a second image without annotation. Returns the semantic map."""
    from bisenetformer_ros.data.classes import ClassTable

    table = ClassTable(
        dataset="many",
        names=tuple(f"c{i}" for i in range(num_classes)),
        colors=tuple((i % 256, 0, 0) for i in range(num_classes)),
        is_thing=(False,) * num_classes,
        ignore_label=ignore_label,
    )
    for sub in ("images/train", "semantic/train"):
        (root / sub).mkdir(parents=True)
    (root / "classes.json").write_text(table.to_json())
    sem = np.zeros((size, size), np.uint16)
    sem[:, size // 3 :] = 255
    sem[:, 2 * size // 3 :] = num_classes - 1
    cv2.imwrite(str(root / "images/train/a.png"), np.full((size, size, 3), 128, np.uint8))
    cv2.imwrite(str(root / "semantic/train/a.png"), sem)
    cv2.imwrite(str(root / "images/train/b.png"), np.full((size, size, 3), 128, np.uint8))  # no annotation
    return sem


def test_trainer_pads_and_targets_with_the_datasets_ignore_label(tmp_path: Path) -> None:
    """300 classes, ignore 65535: class 255 is a real class, so padding must not write 255 and targets must keep it;
    data.skip_bad also skips an image whose annotation is missing when the split is listed."""
    k = 300
    _folder_dataset(tmp_path / "data", k, 65535)
    extra = ["data.dataset=folder", f"data.root={tmp_path / 'data'}", "data.task=semantic", f"model.num_classes={k}"]
    with pytest.raises(FileNotFoundError, match=r"b\.png"):
        Trainer(_cfg(*extra), tmp_path / "run", progress=False)
    trainer = Trainer(_cfg(*extra, "data.skip_bad=true"), tmp_path / "run", progress=False)
    assert len(trainer.train_set) == 1 and trainer.train_set.skipped == 1
    source = trainer._loader().dataset
    padded = False
    for step in range(4):  # short side scaled to 48..96 for a 64x64 crop: some crops are padded
        samples, targets = source[step]
        for sample, target in zip(samples, targets, strict=True):
            sem = sample.semantic
            assert set(np.unique(sem).tolist()) <= {0, 255, k - 1, 65535}
            padded |= bool((sem == 65535).any())
            assert sorted(target.labels.tolist()) == sorted(v for v in np.unique(sem).tolist() if v != 65535)
            assert float(target.masks.sum()) == float((sem != 65535).sum())
    assert padded
