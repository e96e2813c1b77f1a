"""Training configuration: one YAML file per recipe (``config/train/*.yaml``), overridable with ``key=value``.

The resolved configuration is written into every run directory and checkpoint, so a run can always be traced back to
exactly what produced it. Unknown keys are errors: a typo in a YAML must not silently fall back to a default.
"""

from __future__ import annotations

import copy
from dataclasses import asdict, dataclass, field, fields, is_dataclass
from pathlib import Path
from typing import Any

import yaml

from bisenetformer_ros.data.transforms import AugmentConfig
from bisenetformer_ros.model.config import ModelConfig
from bisenetformer_ros.train.criterion import CriterionConfig


@dataclass
class DataConfig:
    """Which dataset to read. ``dataset`` is a name in :mod:`bisenetformer_ros.data.datasets`."""

    dataset: str = "synthetic"
    root: str | None = None
    train_split: str = "train"
    val_split: str = "val"
    task: str = "panoptic"  # semantic | panoptic
    # Synthetic only: how many distinct training scenes (rendered on the fly) and the size they are rendered at.
    num_images: int = 100_000
    image_size: tuple[int, int] = (128, 128)
    num_workers: int = 0
    skip_bad: bool = False


@dataclass
class OptimConfig:
    lr: float = 3e-4
    weight_decay: float = 0.05
    backbone_lr_mult: float = 0.1
    schedule: str = "step"  # step | poly
    # Step schedule: multiply by ``gamma`` at these fractions of ``max_iters`` (detectron2's Mask2Former recipe).
    step_fractions: tuple[float, ...] = (0.889, 0.963)
    gamma: float = 0.1
    poly_power: float = 0.9
    warmup_iters: int = 0
    warmup_factor: float = 1.0
    grad_clip: float = 0.01  # Mask2Former clips the whole model's gradient norm at 0.01
    # Normalisation layers and embeddings get no weight decay (as in Mask2Former).
    weight_decay_norm: float = 0.0
    weight_decay_embed: float = 0.0


@dataclass
class TrainConfig:
    name: str = "run"
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    criterion: CriterionConfig = field(default_factory=CriterionConfig)
    max_iters: int = 90_000
    # Global batch size (paper: 32); reached by per-process batch x processes x accumulation steps.
    batch_size: int = 32
    batch_per_step: int = 8  # images per forward pass in each process (the accumulation unit)
    amp: str = "none"  # none | fp16 | bf16
    device: str = "auto"
    seed: int = 0
    pretrained: str | None = None  # ImageNet backbone weights (STDC-Seg or torchvision file)
    # Warm start: copy every tensor of this model file whose name and shape match (e.g. an earlier model of the same
    # recipe after an architecture change); everything else keeps its fresh initialisation. Logged tensor by tensor.
    init_from: str | None = None
    checkpoint_every: int = 1000
    log_every: int = 20
    image_every: int = 500
    max_minutes: float | None = None  # stop (after a checkpoint) when the wall-clock budget is spent
    snapshot_every: int = 0  # also keep a weights-only fp16 model file every N iterations (for learning curves)

    def validate(self) -> None:
        if self.data.task not in ("semantic", "panoptic"):
            raise ValueError(f"data.task must be 'semantic' or 'panoptic', got '{self.data.task}'")
        if self.optim.schedule not in ("step", "poly"):
            raise ValueError(f"optim.schedule must be 'step' or 'poly', got '{self.optim.schedule}'")
        if self.amp not in ("none", "fp16", "bf16"):
            raise ValueError(f"amp must be none, fp16 or bf16, got '{self.amp}'")
        for name in ("max_iters", "batch_size", "batch_per_step", "checkpoint_every", "log_every"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        self.model.validate()

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


_SECTIONS = {
    "model": ModelConfig,
    "data": DataConfig,
    "augment": AugmentConfig,
    "optim": OptimConfig,
    "criterion": CriterionConfig,
}


def _coerce(value: Any, current: Any) -> Any:
    """YAML lists become tuples where the default is a tuple (crop sizes, step fractions)."""
    if isinstance(current, tuple) and isinstance(value, list):
        return tuple(value)
    return value


def config_from_dict(d: dict[str, Any]) -> TrainConfig:
    cfg = TrainConfig()
    top = {f.name for f in fields(TrainConfig)}
    for key, value in d.items():
        if key not in top:
            raise ValueError(f"unknown training config key '{key}'; valid keys are {sorted(top)}")
        if key in _SECTIONS:
            if not isinstance(value, dict):
                raise ValueError(f"training config section '{key}' must be a mapping, got {type(value).__name__}")
            section = getattr(cfg, key)
            valid = {f.name for f in fields(section)}
            for k, v in value.items():
                if k not in valid:
                    raise ValueError(f"unknown key '{key}.{k}'; valid keys are {sorted(valid)}")
                setattr(section, k, _coerce(v, getattr(section, k)))
        else:
            setattr(cfg, key, _coerce(value, getattr(cfg, key)))
    cfg.model = ModelConfig.from_dict(asdict(cfg.model))
    cfg.validate()
    return cfg


def load_config(path: str | Path | None, overrides: list[str] | tuple[str, ...] = ()) -> TrainConfig:
    """Read a YAML recipe and apply ``section.key=value`` overrides (values parsed as YAML: ``1e-4``, ``[512,512]``)."""
    data: dict[str, Any] = {}
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"training config '{path}' does not exist")
        loaded = yaml.safe_load(path.read_text()) or {}
        if not isinstance(loaded, dict):
            raise ValueError(f"training config '{path}' must be a mapping at the top level")
        data = copy.deepcopy(loaded)
    for item in overrides:
        if "=" not in item:
            raise ValueError(f"override '{item}' must look like key=value (e.g. optim.lr=1e-4)")
        key, raw = item.split("=", 1)
        value = yaml.safe_load(raw)
        parts = key.strip().split(".")
        node = data
        for p in parts[:-1]:
            node = node.setdefault(p, {})
            if not isinstance(node, dict):
                raise ValueError(f"override '{item}': '{p}' is not a section")
        node[parts[-1]] = value
    return config_from_dict(data)


def dump_config(cfg: TrainConfig) -> str:
    def plain(x: Any) -> Any:
        if is_dataclass(x):
            return {k: plain(v) for k, v in asdict(x).items()}
        if isinstance(x, dict):
            return {k: plain(v) for k, v in x.items()}
        if isinstance(x, (list, tuple)):
            return [plain(v) for v in x]
        return x

    return yaml.safe_dump(plain(cfg), sort_keys=False)
