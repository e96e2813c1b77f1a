"""Model files: save/load round trip, fp16 storage, training checkpoints, and clear errors for bad files."""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest
import torch

from bisenetformer_ros.data.classes import CITYSCAPES, ClassTable
from bisenetformer_ros.model import ModelConfig, build_model, load_model, save_model
from bisenetformer_ros.model.checkpoint import FORMAT, atomic_torch_save, checkpoint_dict
from tests.inference_models import tiny_config

torch.set_num_threads(1)

TOY = ClassTable(
    dataset="toy", names=("a", "b", "c"), colors=((0, 0, 0), (9, 9, 9), (99, 99, 99)), is_thing=(False, True, True)
)


def tiny(num_classes: int = 3) -> ModelConfig:
    """An even smaller variant of the shared tiny architecture (tests.inference_models.TINY): checkpoints only."""
    return tiny_config(
        num_classes, num_queries=4, hidden_dim=16, nheads=2, dim_feedforward=32, context_dim=8, mask_dim=8
    )


def test_round_trip_same_outputs(tmp_path: Path) -> None:
    torch.manual_seed(0)
    cfg = tiny()
    model = build_model(cfg).eval()
    path = save_model(tmp_path / "m.pt", model, cfg, TOY, extra={"iteration": 7, "note": "unit"})
    assert path.is_file() and not list(tmp_path.glob(".*tmp"))  # atomic: no temporary left behind
    loaded = load_model(path)
    assert loaded.config == cfg and loaded.class_table == TOY and loaded.extra == {"iteration": 7, "note": "unit"}
    assert not loaded.model.training
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        a, b = model(x), loaded.model(x)
    assert torch.equal(a["pred_logits"], b["pred_logits"]) and torch.equal(a["pred_masks"], b["pred_masks"])


@pytest.mark.slow
def test_half_storage_and_training_checkpoint(tmp_path: Path) -> None:
    cfg = tiny()
    model = build_model(cfg).eval()
    save_model(tmp_path / "full.pt", model, cfg, TOY)
    save_model(tmp_path / "half.pt", model, cfg, TOY, half=True)
    assert (tmp_path / "half.pt").stat().st_size < 0.7 * (tmp_path / "full.pt").stat().st_size
    loaded = load_model(tmp_path / "half.pt")
    assert all(p.dtype == torch.float32 for p in loaded.model.parameters())
    w0 = model.decoder.class_embed.weight
    assert torch.allclose(loaded.model.decoder.class_embed.weight, w0, atol=1e-3)
    # A training checkpoint = the same dict plus 'train_state'.
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    ckpt = checkpoint_dict(model, cfg, TOY, extra={"iteration": 10})
    ckpt["train_state"] = {"optimizer": opt.state_dict(), "iteration": 10}
    atomic_torch_save(ckpt, tmp_path / "train.pt")
    assert load_model(tmp_path / "train.pt").extra["iteration"] == 10


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_model(tmp_path / "nope.pt")


def test_not_a_torch_file(tmp_path: Path) -> None:
    (tmp_path / "junk.pt").write_bytes(b"this is not a checkpoint")
    with pytest.raises(RuntimeError, match="not a readable bisenetformer checkpoint"):
        load_model(tmp_path / "junk.pt")


class _Evil:
    def __reduce__(self) -> tuple:
        return (print, ("code ran",))


def test_pickled_code_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with open(tmp_path / "evil.pt", "wb") as f:
        pickle.dump({"format": FORMAT, "payload": _Evil()}, f, protocol=2)
    with pytest.raises(RuntimeError, match="not a readable"):
        load_model(tmp_path / "evil.pt")
    assert "code ran" not in capsys.readouterr().out


def test_plain_state_dict_is_not_a_model_file(tmp_path: Path) -> None:
    torch.save(build_model(tiny()).state_dict(), tmp_path / "sd.pt")
    with pytest.raises(RuntimeError, match="no 'format' field"):
        load_model(tmp_path / "sd.pt")
    torch.save({"format": "other/2", "state_dict": {}}, tmp_path / "other.pt")
    with pytest.raises(RuntimeError, match="format"):
        load_model(tmp_path / "other.pt")


def test_wrong_keys_are_listed(tmp_path: Path) -> None:
    cfg = tiny()
    data = checkpoint_dict(build_model(cfg), cfg, TOY)
    del data["state_dict"]["decoder.class_embed.bias"]
    data["state_dict"]["decoder.extra_head.weight"] = torch.zeros(3)
    torch.save(data, tmp_path / "bad.pt")
    with pytest.raises(RuntimeError) as err:
        load_model(tmp_path / "bad.pt")
    msg = str(err.value)
    assert "missing keys (1): decoder.class_embed.bias" in msg
    assert "unexpected keys (1): decoder.extra_head.weight" in msg


def test_config_and_class_table_mismatches(tmp_path: Path) -> None:
    cfg = tiny()
    data = checkpoint_dict(build_model(cfg), cfg, TOY)
    data["model_config"]["num_queries"] = 5  # weights were trained with 4 queries
    torch.save(data, tmp_path / "shape.pt")
    with pytest.raises(RuntimeError, match="shape mismatches"):
        load_model(tmp_path / "shape.pt")
    data = checkpoint_dict(build_model(cfg), cfg, TOY)
    data["class_table"] = CITYSCAPES.to_dict()
    torch.save(data, tmp_path / "table.pt")
    with pytest.raises(RuntimeError, match="19 classes"):
        load_model(tmp_path / "table.pt")
    with pytest.raises(ValueError, match="classes"):
        save_model(tmp_path / "x.pt", build_model(cfg), cfg, CITYSCAPES)
