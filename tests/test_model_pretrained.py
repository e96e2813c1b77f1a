"""ImageNet backbone loaders on files written in the public layouts.

Key names and shapes are generated here from the published architectures (STDC-Seg's STDCNet813/1446 with their
classifier tail, torchvision's resnet50 with ``fc``), independently of our module code, so a renamed module in our
backbones fails these tests.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from bisenetformer_ros.model import ModelConfig
from bisenetformer_ros.model.backbones import ResNet50, STDCNet
from bisenetformer_ros.model.bisenetformer import BiSeNetFormer
from bisenetformer_ros.model.pretrained import load_backbone_weights

torch.set_num_threads(1)


def _bn(prefix: str, c: int, out: dict[str, tuple[int, ...]]) -> None:
    for name in ("weight", "bias", "running_mean", "running_var"):
        out[f"{prefix}.{name}"] = (c,)
    out[f"{prefix}.num_batches_tracked"] = ()


def stdc_seg_layout(layers: tuple[int, ...], base: int = 64) -> dict[str, tuple[int, ...]]:
    """Key -> shape of an STDC-Seg ImageNet ``state_dict`` (STDCNet813: (2,2,2), STDCNet1446: (4,5,3))."""
    keys: dict[str, tuple[int, ...]] = {}

    def convx(prefix: str, cin: int, cout: int, k: int) -> None:
        keys[f"{prefix}.conv.weight"] = (cout, cin, k, k)
        _bn(f"{prefix}.bn", cout, keys)

    convx("features.0", 3, base // 2, 3)
    convx("features.1", base // 2, base, 3)
    idx, cin = 2, base
    for stage, n in enumerate(layers):
        cout = base * 4 * 2**stage
        for j in range(n):
            p = f"features.{idx}"
            convx(f"{p}.conv_list.0", cin, cout // 2, 1)
            convx(f"{p}.conv_list.1", cout // 2, cout // 4, 3)
            convx(f"{p}.conv_list.2", cout // 4, cout // 8, 3)
            convx(f"{p}.conv_list.3", cout // 8, cout // 8, 3)
            if j == 0:
                keys[f"{p}.avd_layer.0.weight"] = (cout // 2, 1, 3, 3)
                _bn(f"{p}.avd_layer.1", cout // 2, keys)
            idx += 1
            cin = cout
    # Classification tail of the ImageNet model: ignored by the loader.
    convx("conv_last", base * 16, 1024, 1)
    keys["fc.weight"] = (1024, 1024)
    _bn("bn", 1024, keys)
    keys["linear.weight"] = (1000, 1024)
    keys["x2.0.0.conv.weight"] = (base // 2, 3, 3, 3)  # stage alias repeating features.0
    return keys


def torchvision_resnet50_layout() -> dict[str, tuple[int, ...]]:
    keys: dict[str, tuple[int, ...]] = {"conv1.weight": (64, 3, 7, 7)}
    _bn("bn1", 64, keys)
    cin = 64
    for i, (n, width) in enumerate(zip((3, 4, 6, 3), (64, 128, 256, 512), strict=True), start=1):
        for j in range(n):
            p = f"layer{i}.{j}"
            keys[f"{p}.conv1.weight"] = (width, cin, 1, 1)
            _bn(f"{p}.bn1", width, keys)
            keys[f"{p}.conv2.weight"] = (width, width, 3, 3)
            _bn(f"{p}.bn2", width, keys)
            keys[f"{p}.conv3.weight"] = (width * 4, width, 1, 1)
            _bn(f"{p}.bn3", width * 4, keys)
            if j == 0:
                keys[f"{p}.downsample.0.weight"] = (width * 4, cin, 1, 1)
                _bn(f"{p}.downsample.1", width * 4, keys)
            cin = width * 4
    keys["fc.weight"] = (1000, 2048)
    keys["fc.bias"] = (1000,)
    return keys


def random_state(layout: dict[str, tuple[int, ...]], seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {
        k: torch.tensor(3) if k.endswith("num_batches_tracked") else torch.rand(shape, generator=g)
        for k, shape in layout.items()
    }


@pytest.mark.parametrize(("backbone", "layers"), [("stdc1", (2, 2, 2)), ("stdc2", (4, 5, 3))])
def test_stdc_seg_file_loads(tmp_path: Path, backbone: str, layers: tuple[int, ...]) -> None:
    state = random_state(stdc_seg_layout(layers))
    torch.save({"epoch": 250, "state_dict": state, "best_prec1": 73.9}, tmp_path / "stdc.tar")
    model = BiSeNetFormer(
        ModelConfig(
            backbone=backbone, num_classes=3, num_queries=4, hidden_dim=16, nheads=2, dim_feedforward=16, dec_layers=2
        )
    )
    report = load_backbone_weights(model, tmp_path / "stdc.tar")
    assert report.complete
    assert {"linear.weight", "fc.weight", "conv_last.conv.weight", "x2.0.0.conv.weight"} <= set(report.ignored)
    assert torch.equal(model.backbone.features[2].conv_list[3].conv.weight, state["features.2.conv_list.3.conv.weight"])
    assert torch.equal(model.backbone.features[2].avd_layer[1].running_var, state["features.2.avd_layer.1.running_var"])
    last = len(model.backbone.features) - 1
    key = f"features.{last}.conv_list.0.bn.weight"
    assert torch.equal(model.backbone.features[last].conv_list[0].bn.weight, state[key])


def test_stdc_wrong_variant_and_partial_files(tmp_path: Path) -> None:
    state = random_state(stdc_seg_layout((2, 2, 2)))
    torch.save({"state_dict": {"module." + k: v for k, v in state.items()}}, tmp_path / "stdc1.tar")
    stdc2 = STDCNet(layers=(4, 5, 3))
    with pytest.raises(RuntimeError) as err:  # an STDC1 file for an STDC2 backbone
        load_backbone_weights(stdc2, tmp_path / "stdc1.tar")
    assert "missing (" in str(err.value) and "stdc1/stdc2/r50" in str(err.value)
    assert "shape mismatches" in str(err.value)  # features.4 is a stride-1 block in STDC2, stride-2 in STDC1
    report = load_backbone_weights(stdc2, tmp_path / "stdc1.tar", strict=False)
    assert not report.complete and report.loaded
    assert "features.13.conv_list.0.conv.weight" in report.missing
    assert any(m.startswith("features.4.conv_list.0.conv.weight") for m in report.mismatched)
    assert torch.equal(stdc2.features[0].conv.weight, state["features.0.conv.weight"])  # 'module.' stripped

    partial = {k: v for k, v in state.items() if not k.startswith("features.7.")}
    partial["features.7.extra.weight"] = torch.zeros(1)
    torch.save({"state_dict": partial}, tmp_path / "partial.tar")
    with pytest.raises(RuntimeError, match=r"missing \(\d+\): features\.7\.") as err:
        load_backbone_weights(STDCNet(layers=(2, 2, 2)), tmp_path / "partial.tar")
    assert "unexpected (1): features.7.extra.weight" in str(err.value)


def test_torchvision_resnet50_file_loads(tmp_path: Path) -> None:
    layout = torchvision_resnet50_layout()
    state = {k: (v.half() if v.is_floating_point() else v) for k, v in random_state(layout, seed=1).items()}
    torch.save(state, tmp_path / "resnet50.pth")
    backbone = ResNet50()
    report = load_backbone_weights(backbone, tmp_path / "resnet50.pth")
    assert report.complete and sorted(report.ignored) == ["fc.bias", "fc.weight"]
    assert len(report.loaded) == len(layout) - 2
    assert torch.equal(backbone.layer3[5].conv2.weight, state["layer3.5.conv2.weight"].float())
    assert torch.equal(
        backbone.layer4[0].downsample[1].running_mean, state["layer4.0.downsample.1.running_mean"].float()
    )
    with pytest.raises(RuntimeError, match="STDC"):  # an ImageNet ResNet file is not an STDC file
        load_backbone_weights(STDCNet(), tmp_path / "resnet50.pth")


def test_missing_and_unreadable_files(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        load_backbone_weights(STDCNet(layers=(2, 2, 2), base=16), tmp_path / "none.tar")
    (tmp_path / "bad.tar").write_text("garbage")
    with pytest.raises(RuntimeError, match="cannot read"):
        load_backbone_weights(STDCNet(layers=(2, 2, 2), base=16), tmp_path / "bad.tar")
    torch.save({"state_dict": "nope"}, tmp_path / "empty.tar")
    with pytest.raises(RuntimeError, match="no state dict"):
        load_backbone_weights(STDCNet(layers=(2, 2, 2), base=16), tmp_path / "empty.tar")
