"""Model configuration: every architectural knob of BiSeNetFormer in one serialisable dataclass.

The configuration travels inside every checkpoint (``checkpoint.save_model``) so that a file always rebuilds the exact
network it was trained with; ``from_dict`` therefore rejects unknown keys and invalid values with a message that names
the field, instead of silently building a different model.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any

from bisenetformer_ros.registry import BACKBONES as BACKBONE_REGISTRY

#: Backbone names in declaration order (the registry is the one list).
BACKBONES: tuple[str, ...] = tuple(BACKBONE_REGISTRY.entries)


@dataclass
class ModelConfig:
    """Architecture of a BiSeNetFormer network.

    Defaults are the paper's (§4.1): 100 queries, hidden size 256, 8 heads, FFN expansion 4 (1024), 3 stages of two
    transformer blocks (one per context-path scale, 1/32 then 1/16), 128-channel context path and mask features.
    The widths are configuration because the authors' published models differ: their M model (STDC2) uses a 96-wide
    pixel decoder (``context_dim = mask_dim = 96``), 4 decoder layers and FFN 512 (see ``model.reference``).
    Tiny values (e.g. ``num_queries=4, hidden_dim=32, dec_layers=2``) are valid and make fast tests possible.
    """

    backbone: str = "stdc1"
    num_classes: int = 19
    num_queries: int = 100
    hidden_dim: int = 256
    nheads: int = 8
    dim_feedforward: int = 1024
    dec_layers: int = 6
    mask_dim: int = 128
    context_dim: int = 128
    pre_norm: bool = True
    dropout: float = 0.0
    # Channel width of the STDC backbones (64 in the paper); lets tests build a small but structurally faithful net.
    stdc_base: int = 64

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Raise ``ValueError`` naming the bad field; called on construction and by ``from_dict``."""
        if self.backbone not in BACKBONES:
            raise ValueError(f"ModelConfig.backbone '{self.backbone}' is unknown; choose one of {list(BACKBONES)}")
        for name in ("num_classes", "num_queries", "hidden_dim", "nheads", "dim_feedforward", "mask_dim"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"ModelConfig.{name} must be a positive integer, got {value!r}")
        if self.hidden_dim % self.nheads != 0:
            raise ValueError(f"ModelConfig.hidden_dim ({self.hidden_dim}) must be divisible by nheads ({self.nheads})")
        if self.hidden_dim % 2 != 0:
            raise ValueError(f"ModelConfig.hidden_dim ({self.hidden_dim}) must be even (sine positional encoding)")
        if not isinstance(self.dec_layers, int) or isinstance(self.dec_layers, bool) or self.dec_layers < 1:
            raise ValueError(
                f"ModelConfig.dec_layers must be a positive integer (blocks alternate between the 1/32 and 1/16 "
                f"scales; the paper uses 6, the reference's M model 4), got {self.dec_layers!r}"
            )
        if not isinstance(self.context_dim, int) or self.context_dim < 4:
            raise ValueError(f"ModelConfig.context_dim must be an integer >= 4, got {self.context_dim!r}")
        if not isinstance(self.stdc_base, int) or self.stdc_base < 8 or self.stdc_base % 8 != 0:
            raise ValueError(f"ModelConfig.stdc_base must be a multiple of 8 (>= 8), got {self.stdc_base!r}")
        if not 0.0 <= float(self.dropout) < 1.0:
            raise ValueError(f"ModelConfig.dropout must be in [0, 1), got {self.dropout!r}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ModelConfig:
        """Build from a plain dict (checkpoint, YAML); unknown keys are an error, missing keys take defaults."""
        if not isinstance(d, dict):
            raise ValueError(f"model config must be a mapping, got {type(d).__name__}")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"unknown model config keys {unknown}; valid keys are {sorted(known)}")
        return cls(**d)
