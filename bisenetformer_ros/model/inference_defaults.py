"""How a model file wants to be run: network size, pixel normalisation and the post-processing order.

These facts belong to the weights, not to the caller: a model trained on 128-pixel scenes must see 128-pixel frames,
a model trained with other pixel statistics must be normalised with those, and a model imported from the reference
implementation only reproduces the reference's labels with the reference's post-processing order. So they travel in
the model file (``"inference"`` entry, see ``model.checkpoint``) and in exported ONNX/TensorRT metadata, and every
caller (node, bag tools, evaluation, predict, export) reads them from there instead of being told.

Post-processing orders (both exact; they differ in where the non-linearity sits relative to the bilinear resize):

* ``"upsample_logits"`` (Mask2Former): resize the mask logits to the image, then sigmoid;
* ``"sigmoid_first"`` (the reference implementation, FocoosAI/focoos): sigmoid at mask resolution, then resize the
  probabilities. Imported reference models use this order so that their labels equal the reference's; models
  trained here record whichever order scored better on their validation split.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

# ImageNet statistics on 0-255 RGB: what STDC/ResNet backbones and the reference's published models expect.
IMAGENET_MEAN: tuple[float, float, float] = (123.675, 116.28, 103.53)
IMAGENET_STD: tuple[float, float, float] = (58.395, 57.12, 57.375)

MASK_ORDERS: tuple[str, ...] = ("upsample_logits", "sigmoid_first")


def parse_input_size(value: Any, what: str = "input_size") -> int | tuple[int, int] | None:
    """``None``, a positive int (short side) or ``[h, w]`` -> the normalised form; anything else is a ValueError."""
    if value is None:
        return None
    if isinstance(value, bool):
        raise ValueError(f"{what} must be a short side (int) or [height, width], got {value!r}")
    if isinstance(value, int):
        if value < 1:
            raise ValueError(f"{what} must be positive, got {value}")
        return value
    if isinstance(value, Sequence) and not isinstance(value, str) and len(value) == 2:
        try:
            h, w = (int(v) for v in value)
        except (TypeError, ValueError):
            raise ValueError(f"{what} must be a short side (int) or [height, width], got {value!r}") from None
        if min(h, w) < 1:
            raise ValueError(f"{what} must be positive, got {value!r}")
        return (h, w)
    raise ValueError(f"{what} must be a short side (int) or [height, width], got {value!r}")


@dataclass(frozen=True)
class InferenceDefaults:
    """``input_size``: the network size the model was trained/evaluated at (short side int, ``(h, w)``, or ``None`` =
    no preference); ``pixel_mean``/``pixel_std``: normalisation on 0-255 RGB; ``mask_order``: see module doc;
    ``mask_order_scores``: what the choice was based on (free-form, e.g. ``{"upsample_logits": {"mIoU": ..}}``)."""

    input_size: int | tuple[int, int] | None = None
    pixel_mean: tuple[float, float, float] = IMAGENET_MEAN
    pixel_std: tuple[float, float, float] = IMAGENET_STD
    mask_order: str = "upsample_logits"
    mask_order_scores: Mapping[str, Any] | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "input_size", parse_input_size(self.input_size))
        for name in ("pixel_mean", "pixel_std"):
            value = getattr(self, name)
            try:
                triple = tuple(float(v) for v in value)
            except (TypeError, ValueError):
                raise ValueError(f"{name} must be three numbers, got {value!r}") from None
            if len(triple) != 3 or (name == "pixel_std" and min(triple) <= 0):
                raise ValueError(f"{name} must be three numbers{' > 0' if name == 'pixel_std' else ''}, got {value!r}")
            object.__setattr__(self, name, triple)
        if self.mask_order not in MASK_ORDERS:
            raise ValueError(f"mask_order '{self.mask_order}' is unknown; choose one of {list(MASK_ORDERS)}")

    def to_dict(self) -> dict[str, Any]:
        size = list(self.input_size) if isinstance(self.input_size, tuple) else self.input_size
        out: dict[str, Any] = {
            "input_size": size,
            "pixel_mean": list(self.pixel_mean),
            "pixel_std": list(self.pixel_std),
            "mask_order": self.mask_order,
        }
        if self.mask_order_scores is not None:
            out["mask_order_scores"] = dict(self.mask_order_scores)
        return out

    @classmethod
    def from_dict(cls, d: Mapping[str, Any] | None) -> InferenceDefaults:
        """From a model file's / export's entry; missing keys take the defaults, unknown keys are an error."""
        if d is None:
            return cls()
        if not isinstance(d, Mapping):
            raise ValueError(f"inference defaults must be a mapping, got {type(d).__name__}")
        known = {"input_size", "pixel_mean", "pixel_std", "mask_order", "mask_order_scores"}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"unknown inference default(s) {unknown}; valid keys are {sorted(known)}")
        return cls(**dict(d))

    @classmethod
    def from_checkpoint(cls, data: Mapping[str, Any]) -> InferenceDefaults:
        """The defaults a model file (its loaded dict) records. The network size follows the one rule: the
        ``inference`` entry's ``input_size`` when the entry has that key (``None`` there is final: each image's own
        size), else the training recipe's scale (files written before the entry existed), else none."""
        entry = data.get("inference")
        defaults = cls.from_dict(entry)
        if isinstance(entry, Mapping) and "input_size" in entry:
            return defaults
        extra = data.get("extra")
        recipe = extra.get("train_config") if isinstance(extra, Mapping) else None
        return defaults.with_changes(input_size=recipe_input_size(recipe))

    def with_changes(self, **changes: Any) -> InferenceDefaults:
        return InferenceDefaults.from_dict({**self.to_dict(), **changes})


def recipe_input_size(train_config_yaml: str | Mapping[str, Any] | None) -> int | None:
    """Short side a training recipe (YAML text stored by the trainer) trains at: ``augment.base_size``.

    The paper evaluates with the short side resized to the training scale (ADE20K protocol). Files written before
    the ``inference`` entry existed only carry the recipe; this keeps them running at the size they were trained at.
    """
    if not train_config_yaml:
        return None
    import yaml

    try:
        recipe = yaml.safe_load(train_config_yaml) if isinstance(train_config_yaml, str) else train_config_yaml
    except yaml.YAMLError:
        return None  # an unreadable recipe only loses the hint; the weights are what matters
    augment = recipe.get("augment") if isinstance(recipe, Mapping) else None
    base = augment.get("base_size") if isinstance(augment, Mapping) else None
    return int(base) if isinstance(base, int) and not isinstance(base, bool) and base > 0 else None
