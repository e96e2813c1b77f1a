"""Every pluggable name of the package -- backends, datasets, class tables, backbones -- declared as one table.

Why a table of ``"module:attribute"`` strings: listing the names (for help texts and "choose one of" errors) must not
import what they name (TensorRT, a dataset's decoder, the ADE20K class list), and a module that provides an entry must
not have to be imported for its entry to exist. The previous per-kind lookups filled themselves through import side
effects (a dataset module registered itself in the module that imported it), a cycle that made the registries'
content depend on import order. Here nothing registers itself: an entry is loaded on first use, by name.
"""

from __future__ import annotations

import functools
import importlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Registry:
    """Names of one kind of thing -> where it lives (``"package.module:attribute"``), plus aliases.

    ``fold_case``: names are compared after ``strip().lower()`` (user-typed options such as backends).
    """

    kind: str
    entries: Mapping[str, str]
    aliases: Mapping[str, str] = field(default_factory=dict)
    fold_case: bool = False

    def __post_init__(self) -> None:
        for alias, target in self.aliases.items():
            if target not in self.entries:
                raise ValueError(f"{self.kind} alias '{alias}' points at '{target}', which is not registered")
        for name, target in self.entries.items():
            if target.count(":") != 1:
                raise ValueError(f"{self.kind} '{name}': target '{target}' is not 'module:attribute'")

    def names(self) -> list[str]:
        """Registered names, sorted (aliases are accepted but not listed)."""
        return sorted(self.entries)

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and self._key(name) in self.entries

    def _key(self, name: str) -> str:
        key = str(name).strip().lower() if self.fold_case else str(name)
        return self.aliases.get(key, key)

    def canonical(self, name: str) -> str:
        """The registered name ``name`` stands for (itself or an alias's target); unknown names raise ValueError
        listing the registered ones."""
        key = self._key(name)
        if key not in self.entries:
            raise ValueError(f"unknown {self.kind} '{name}'; choose one of {', '.join(self.names())}")
        return key

    def target(self, name: str) -> tuple[str, str]:
        """(module, attribute) of ``name``, without importing anything."""
        module, attr = self.entries[self.canonical(name)].split(":")
        return module, attr

    def load(self, name: str) -> Any:
        """Import and return the object registered under ``name`` (imported once; import errors propagate, so
        callers can say which optional package is missing)."""
        return _load(*self.target(name))


@functools.cache
def _load(module: str, attr: str) -> Any:
    return getattr(importlib.import_module(module), attr)


#: Inference backends (classes implementing :class:`~bisenetformer_ros.inference.base.Backend`).
BACKENDS = Registry(
    "backend",
    {
        "torch": "bisenetformer_ros.inference.torch_backend:TorchBackend",
        "onnxruntime": "bisenetformer_ros.inference.onnxruntime_backend:OnnxRuntimeBackend",
        "tensorrt": "bisenetformer_ros.inference.tensorrt_backend:TensorRTBackend",
    },
    aliases={"pytorch": "torch", "ort": "onnxruntime", "onnx": "onnxruntime", "trt": "tensorrt"},
    fold_case=True,
)

#: Dataset factories: ``factory(split=..., root=..., **options)`` -> a dataset of ``Sample``.
DATASETS = Registry(
    "dataset",
    {
        "synthetic": "bisenetformer_ros.data.datasets:build_synthetic",
        "synthetic_sequence": "bisenetformer_ros.data.datasets:build_synthetic_sequence",
        "cityscapes": "bisenetformer_ros.data.cityscapes:build_cityscapes",
        "ade20k": "bisenetformer_ros.data.ade20k:build_ade20k",
        "coco_panoptic": "bisenetformer_ros.data.coco_panoptic:build_coco_panoptic",
        "folder": "bisenetformer_ros.data.folder:build_folder",
    },
)

#: Built-in class tables (:class:`~bisenetformer_ros.data.classes.ClassTable`), kept beside their datasets.
CLASS_TABLES = Registry(
    "class table",
    {
        "cityscapes": "bisenetformer_ros.data.classes:CITYSCAPES",
        "ade20k": "bisenetformer_ros.data.ade20k_classes:ADE20K",
        "synthetic": "bisenetformer_ros.data.synthetic:SYNTHETIC",
    },
)

#: Backbone builders: ``builder(stdc_base)`` -> module with features at strides 4, 8, 16, 32.
BACKBONES = Registry(
    "backbone",
    {
        "stdc1": "bisenetformer_ros.model.backbones.stdc:stdc1",
        "stdc2": "bisenetformer_ros.model.backbones.stdc:stdc2",
        "r50": "bisenetformer_ros.model.backbones.resnet:r50",
    },
)
