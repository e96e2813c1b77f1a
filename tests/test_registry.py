"""The one lazy registry (bisenetformer_ros.registry): names, aliases, errors, lazy loading, no import side effects."""

from __future__ import annotations

import subprocess
import sys

import pytest

from bisenetformer_ros.registry import BACKBONES, BACKENDS, CLASS_TABLES, DATASETS, Registry


def test_registry_resolves_names_aliases_and_case() -> None:
    reg = Registry("widget", {"a": "json:dumps", "b": "json:loads"}, aliases={"alpha": "a"}, fold_case=True)
    assert reg.names() == ["a", "b"]
    assert reg.canonical(" Alpha ") == "a" and reg.target("B") == ("json", "loads")
    import json

    assert reg.load("alpha") is json.dumps
    assert "ALPHA" in reg and "c" not in reg and 3 not in reg
    with pytest.raises(ValueError, match=r"^unknown widget 'c'; choose one of a, b$"):
        reg.load("c")
    strict = Registry("widget", {"a": "json:dumps"})
    with pytest.raises(ValueError, match="unknown widget 'A'"):
        strict.canonical("A")


def test_registry_refuses_bad_tables() -> None:
    with pytest.raises(ValueError, match="alias 'x' points at 'z'"):
        Registry("widget", {"a": "json:dumps"}, aliases={"x": "z"})
    with pytest.raises(ValueError, match="not 'module:attribute'"):
        Registry("widget", {"a": "json.dumps"})


def test_every_declared_entry_loads() -> None:
    from bisenetformer_ros.data.classes import ClassTable

    for name in CLASS_TABLES.names():
        table = CLASS_TABLES.load(name)
        assert isinstance(table, ClassTable) and table.dataset == name
    for name in DATASETS.names():
        assert callable(DATASETS.load(name))
    for name in BACKBONES.names():
        assert callable(BACKBONES.load(name))
    assert BACKENDS.load("pytorch").NAME == "torch"
    assert BACKENDS.canonical("TRT") == "tensorrt"  # resolving a name never imports the backend


def test_lookups_keep_their_wording() -> None:
    from bisenetformer_ros.data.classes import get_class_table
    from bisenetformer_ros.data.datasets import build_dataset
    from bisenetformer_ros.inference.factory import backend_class
    from bisenetformer_ros.model.backbones import build_backbone

    with pytest.raises(ValueError, match=r"unknown backend 'openvino'; choose one of onnxruntime, tensorrt, torch"):
        backend_class("openvino")
    with pytest.raises(ValueError, match=r"unknown class table 'kitti'; choose one of ade20k, cityscapes, synthetic"):
        get_class_table("kitti")
    with pytest.raises(ValueError, match=r"unknown dataset 'kitti'; choose one of ade20k, cityscapes, coco_panoptic"):
        build_dataset("kitti", "val")
    with pytest.raises(ValueError, match=r"unknown backbone 'vgg'; choose one of r50, stdc1, stdc2"):
        build_backbone("vgg")


@pytest.mark.slow
def test_lookups_do_not_depend_on_import_order() -> None:
    """A fresh interpreter that asks for a table or dataset first gets it: nothing relies on another module having
    been imported (the old registries filled themselves through import side effects)."""
    code = (
        "from bisenetformer_ros.data.classes import get_class_table\n"
        "assert get_class_table('ade20k').num_classes == 150\n"
        "from bisenetformer_ros.data.datasets import dataset_names\n"
        "assert 'folder' in dataset_names()\n"
        "import sys\n"
        "assert 'bisenetformer_ros.data.folder' not in sys.modules, 'listing names imported a loader'\n"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
