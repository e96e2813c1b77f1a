"""The network equals the authors' reference implementation (FocoosAI/focoos), and its published files convert.

``tests/data/reference_parity.npz`` was computed once with the reference's own code (``tools/make_reference_fixtures
.py``): for each published variant (S, M, L) the reference's state-dict manifest (every key and shape), and the
outputs of the reference network with seeded weights on a fixed normalised 256x512 input. Here the same seeded weights
are generated in the REFERENCE's layout from that manifest, converted with our mapping, and run through our network.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from bisenetformer_ros.cli.main import main as cli_main
from bisenetformer_ros.data.classes import get_class_table
from bisenetformer_ros.model import ModelConfig, build_model, load_model
from bisenetformer_ros.model.postprocess import PostprocessConfig, postprocess_batch
from bisenetformer_ros.model.preprocess import PreprocessMeta
from bisenetformer_ros.model.reference import (
    PUBLISHED_ENTRIES,
    ReferenceMismatch,
    from_reference_state_dict,
    model_from_registry,
    parity_input,
    published_model,
    seeded_state_dict,
    to_reference_state_dict,
)

FIXTURE = Path(__file__).parent / "data" / "reference_parity.npz"
VARIANTS = sorted(PUBLISHED_ENTRIES)


@pytest.fixture(scope="module")
def fixture() -> dict[str, np.ndarray]:
    with np.load(FIXTURE) as data:
        return {k: data[k] for k in data.files}


def reference_state(fixture: dict[str, np.ndarray], name: str) -> dict[str, torch.Tensor]:
    """The seeded weights of ``name`` in the reference's own key layout (from its manifest)."""
    manifest = json.loads(str(fixture[f"{name}/manifest"]))
    return seeded_state_dict(manifest, int(fixture["seed"]), json.loads(str(fixture["gains"])))


def test_parameter_counts_equal_the_reference() -> None:
    """The issue's figures: the reference's shipped settings (C=128, 6 layers, FFN 1024, 100 queries, K=19)."""
    for backbone, expected in (("stdc1", 13_100_340), ("stdc2", 17_130_804)):
        model = build_model(ModelConfig(backbone=backbone, num_classes=19))
        assert sum(p.numel() for p in model.parameters()) == expected


@pytest.mark.parametrize("name", VARIANTS)
def test_every_reference_key_maps(fixture: dict[str, np.ndarray], name: str) -> None:
    """Our network, written in the reference's layout, has exactly the reference's keys and shapes (and back)."""
    manifest = {k: tuple(v) for k, v in json.loads(str(fixture[f"{name}/manifest"])).items()}
    model = build_model(published_model(name).config)
    ours = to_reference_state_dict(model.state_dict(), num_classes=150)
    assert {k: tuple(v.shape) for k, v in ours.items()} == manifest
    mapped = from_reference_state_dict(ours, model.state_dict())
    assert mapped.keys() == model.state_dict().keys()
    assert all(torch.equal(mapped[k], v) for k, v in model.state_dict().items())


@pytest.mark.slow
@pytest.mark.parametrize("name", VARIANTS)
def test_outputs_equal_the_reference(fixture: dict[str, np.ndarray], name: str) -> None:
    model = build_model(published_model(name).config).eval()
    model.load_state_dict(from_reference_state_dict(reference_state(fixture, name), model.state_dict()))
    with torch.no_grad():
        out = model(parity_input(int(fixture["seed"])))
    logits = out["pred_logits"][0]
    masks = out["pred_masks"][0]
    assert tuple(masks.shape) == tuple(fixture[f"{name}/mask_shape"])
    want_logits = fixture[f"{name}/logits"]
    got_logits = logits[: len(want_logits)].numpy()
    got_masks = masks.flatten()[torch.from_numpy(fixture[f"{name}/mask_positions"].astype(np.int64))].numpy()
    rel_logits = np.abs(got_logits - want_logits).max() / float(fixture[f"{name}/logits_absmax"])
    rel_masks = np.abs(got_masks - fixture[f"{name}/mask_values"]).max() / float(fixture[f"{name}/masks_absmax"])
    assert rel_logits <= 1e-4, rel_logits
    assert rel_masks <= 1e-4, rel_masks

    # The reference's labels come from its post-processing order (sigmoid at mask resolution, then resizing); the
    # image was "resized" from 100x200 to the 256x512 network input.
    h, w = (int(v) for v in fixture["original_size"])
    meta = PreprocessMeta(orig_size=(h, w), resized_size=(256, 512), padded_size=(256, 512))
    result = postprocess_batch(
        out["pred_logits"],
        out["pred_masks"],
        [meta],
        tasks=("semantic",),
        config=PostprocessConfig(mask_order="sigmoid_first"),
    )[0]
    want = fixture[f"{name}/labels"]
    assert len(np.unique(want)) > 1, "the fixture's label map must have content"
    np.testing.assert_array_equal(result.semantic, want)


@pytest.mark.slow
def test_mapping_refuses_a_wrong_network(fixture: dict[str, np.ndarray]) -> None:
    """S weights into the L network: missing backbone blocks and mis-shaped tensors, listed in one error."""
    state = reference_state(fixture, "bisenetformer-s-ade")
    target = build_model(published_model("bisenetformer-l-ade").config).state_dict()
    with pytest.raises(ReferenceMismatch, match=r"missing keys \(\d+\).*pixel_decoder\.backbone\.features"):
        from_reference_state_dict(state, target)
    state["head.predictor.extra_layer.weight"] = torch.zeros(3)
    target_s = build_model(published_model("bisenetformer-s-ade").config).state_dict()
    with pytest.raises(ReferenceMismatch, match=r"unexpected keys \(1\): head\.predictor\.extra_layer\.weight"):
        from_reference_state_dict(state, target_s)


def test_registry_json_describes_the_published_models() -> None:
    m = published_model("bisenetformer-m-ade")
    assert (m.config.backbone, m.config.context_dim, m.config.mask_dim) == ("stdc2", 96, 96)
    assert (m.config.dec_layers, m.config.dim_feedforward, m.config.num_classes) == (4, 512, 150)
    assert m.image_size == 640 and m.class_names == get_class_table("ade20k").names
    bad = json.loads(json.dumps(PUBLISHED_ENTRIES["bisenetformer-s-ade"]))
    bad["config"]["backbone_config"]["layers"] = [3, 3, 3]
    with pytest.raises(ValueError, match=r"STDC layers \[3, 3, 3\] unknown"):
        model_from_registry(bad)
    bad = json.loads(json.dumps(PUBLISHED_ENTRIES["bisenetformer-s-ade"]))
    bad["config"]["pixel_decoder_out_dim"] = 64
    with pytest.raises(ValueError, match="must be equal"):
        model_from_registry(bad)


# --- bisenetformer convert focoos ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def s_weights(tmp_path_factory: pytest.TempPathFactory, fixture: dict[str, np.ndarray]) -> Path:
    """A file exactly like the published model_final.pth of S: ``{"model": state_dict}`` in the reference layout."""
    path = tmp_path_factory.mktemp("ref") / "model_final.pth"
    torch.save({"model": reference_state(fixture, "bisenetformer-s-ade")}, path)
    return path


@pytest.mark.slow
def test_convert_writes_a_model_file_with_the_references_outputs(
    s_weights: Path, tmp_path: Path, fixture: dict[str, np.ndarray]
) -> None:
    out = tmp_path / "s.pt"
    assert cli_main(["convert", "focoos", str(s_weights), "--variant", "bisenetformer-s-ade", "-o", str(out)]) == 0
    loaded = load_model(out)
    assert loaded.class_table == get_class_table("ade20k")
    assert loaded.inference.mask_order == "sigmoid_first"
    assert loaded.inference.input_size == 640
    assert loaded.inference.pixel_mean == (123.675, 116.28, 103.53)
    assert loaded.extra["reference_model"] == "bisenetformer-s-ade"
    with torch.no_grad():
        logits = loaded.model(parity_input(int(fixture["seed"])))["pred_logits"][0, :12].numpy()
    ref = fixture["bisenetformer-s-ade/logits"]
    assert np.abs(logits - ref).max() / float(fixture["bisenetformer-s-ade/logits_absmax"]) <= 1e-4

    # The same file described by a registry-style JSON (--config) converts to the same network.
    cfg = tmp_path / "s.json"
    cfg.write_text(json.dumps(PUBLISHED_ENTRIES["bisenetformer-s-ade"]))
    out2 = tmp_path / "s2.pt"
    assert cli_main(["convert", "focoos", str(s_weights), "--config", str(cfg), "-o", str(out2)]) == 0
    second = load_model(out2)
    first_state, second_state = loaded.model.state_dict(), second.model.state_dict()
    assert all(torch.equal(first_state[k], second_state[k]) for k in first_state)


class _Payload:
    """Pickling this needs a global that ``weights_only=True`` refuses: stands for a file with code in it."""

    def __reduce__(self) -> tuple:
        return (print, ("this must never run",))


@pytest.mark.parametrize("case", ["other_family", "truncated", "pickle_code", "wrong_variant", "bundle", "missing"])
def test_convert_refuses_bad_input(
    case: str, s_weights: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    src = tmp_path / "in.pth"
    variant = "bisenetformer-s-ade"
    expect = {
        "other_family": "not a BiSeNetFormer checkpoint of the reference implementation",
        "truncated": "truncated or damaged",
        "pickle_code": "pickled Python objects, which are never executed",
        "wrong_variant": "matches the published model bisenetformer-s-ade",
        "bundle": "already a bisenetformer_ros model file",
        "missing": "does not exist",
    }[case]
    if case == "other_family":
        torch.save({"model": {"backbone.conv1.weight": torch.zeros(2, 3, 3, 3)}}, src)
    elif case == "truncated":
        data = s_weights.read_bytes()
        src.write_bytes(data[: len(data) // 3])
    elif case == "pickle_code":
        torch.save({"model": _Payload()}, src)
    elif case == "wrong_variant":
        src = s_weights
        variant = "bisenetformer-l-ade"
    elif case == "bundle":
        from bisenetformer_ros.model import save_model

        cfg = published_model(variant).config
        save_model(src, build_model(cfg), cfg, get_class_table("ade20k"))
    out = tmp_path / "out.pt"
    code = cli_main(["convert", "focoos", str(src), "--variant", variant, "-o", str(out)])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert len(err) == 1 and expect in err[0], err
    assert "weights_only=False" not in err[0]
    assert not out.exists() and not list(tmp_path.glob("*.tmp"))
