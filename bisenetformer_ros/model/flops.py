"""Parameter and multiply-accumulate (MAC) accounting — what the paper's tables call "FLOPs" and "Params".

How MACs are counted: the forward pass runs once under :class:`torch.utils.flop_counter.FlopCounterMode`, a
dispatch-level counter that sees every ATen operator actually executed — convolutions, the matrix products behind
``nn.Linear`` (addmm/mm), batched matrix products (the query-mask dot products, attention ``QK^T`` and ``AV`` inside
``scaled_dot_product_attention``) — with module hooks attributing each op to the module it ran in. This catches
functional matmuls that per-module forward hooks on Conv/Linear would miss. The counter reports FLOPs = 2 x MACs; we
divide by two, which is the convention of the paper's tables (fvcore/detectron2 count one "flop" per MAC).
Element-wise ops, normalisation, activations, pooling, interpolation and softmax are not counted (they are a few
percent at most and are memory-bound, not MAC-bound), again as in those tables.

By default the model is built and run on the ``meta`` device: shapes propagate but no memory is allocated and no
arithmetic is done, so counting a 1024x2048 ResNet-50 model takes well under a second and no RAM.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from bisenetformer_ros.model.bisenetformer import BiSeNetFormer, build_model
from bisenetformer_ros.model.config import ModelConfig


@dataclass
class CostReport:
    """Parameters and MACs of one configuration at one input size, total and per module (dotted names)."""

    config: dict[str, Any]
    height: int
    width: int
    params_total: int
    macs_total: int
    params_by_module: dict[str, int] = field(default_factory=dict)
    macs_by_module: dict[str, int] = field(default_factory=dict)
    macs_by_op: dict[str, int] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "config": self.config,
            "height": self.height,
            "width": self.width,
            "params_total": self.params_total,
            "macs_total": self.macs_total,
            "params_by_module": self.params_by_module,
            "macs_by_module": self.macs_by_module,
            "macs_by_op": self.macs_by_op,
            "mac_counting": "FlopCounterMode (conv, mm/addmm/bmm, attention) / 2; elementwise/norm/resize excluded",
        }

    def format_table(self) -> str:
        """Human-readable breakdown (module, params M, params %, GMACs, GMACs %)."""
        names = list(dict.fromkeys([*self.params_by_module, *self.macs_by_module]))
        width = max([len(n) for n in names] + [len("total")])
        lines = [
            f"{self.config.get('backbone', '?')}  K={self.config.get('num_classes', '?')}  input "
            f"{self.height}x{self.width}",
            f"{'module':<{width}}  {'params (M)':>10} {'%':>6}  {'GMACs':>9} {'%':>6}",
        ]
        for n in names:
            p = self.params_by_module.get(n, 0)
            m = self.macs_by_module.get(n, 0)
            lines.append(
                f"{n:<{width}}  {p / 1e6:>10.3f} {100 * p / max(self.params_total, 1):>5.1f}%  {m / 1e9:>9.3f} "
                f"{100 * m / max(self.macs_total, 1):>5.1f}%"
            )
        lines.append(
            f"{'total':<{width}}  {self.params_total / 1e6:>10.3f} {100.0:>5.1f}%  {self.macs_total / 1e9:>9.3f}"
        )
        return "\n".join(lines)


def _depth(name: str) -> int:
    return 0 if not name else name.count(".") + 1


def count_parameters(model: nn.Module, depth: int = 2) -> tuple[int, dict[str, int]]:
    """Total parameters and per-module counts down to ``depth`` levels (``'decoder'``, ``'decoder.cross_blocks'``)."""
    total = sum(p.numel() for p in model.parameters())
    by_module: dict[str, int] = {}
    for name, module in model.named_modules():
        if 1 <= _depth(name) <= depth:
            n = sum(p.numel() for p in module.parameters())
            if n:
                by_module[name] = n
    return total, by_module


def count_macs(model: nn.Module, images: torch.Tensor, depth: int = 2) -> tuple[int, dict[str, int], dict[str, int]]:
    """MACs of ``model(images)``: total, per module (down to ``depth``; ``'<parent>.(own ops)'`` holds ops executed
    directly in a parent, such as the decoder's mask products) and per ATen operator."""
    requires = [p.requires_grad for p in model.parameters()]
    model.requires_grad_(False)  # no autograd bookkeeping; also what the counter's module tracker expects
    counter = FlopCounterMode(display=False, depth=None)
    try:
        with counter:
            model(images)
    finally:
        for p, r in zip(model.parameters(), requires, strict=True):
            p.requires_grad_(r)
    counts = counter.get_flop_counts()
    total = int(sum(counts.get("Global", {}).values())) // 2
    by_op = {str(op).split(".")[-1]: int(v) // 2 for op, v in counts.get("Global", {}).items()}
    root = type(model).__name__
    called: dict[str, int] = {}
    for key, ops in counts.items():
        if key.startswith(root + "."):
            called[key[len(root) + 1 :]] = int(sum(ops.values())) // 2

    def macs_of(name: str) -> int:
        # Containers such as nn.ModuleList are never called, so the counter has no entry for them: add up their
        # outermost called descendants instead.
        if name in called:
            return called[name]
        total_desc = 0
        for key, value in called.items():
            if not key.startswith(name + "."):
                continue
            parts = key[len(name) + 1 :].split(".")
            ancestors = [name + "." + ".".join(parts[:i]) for i in range(1, len(parts))]
            if not any(a in called for a in ancestors):
                total_desc += value
        return total_desc

    names = [n for n, _ in model.named_modules() if 1 <= _depth(n) <= depth]
    macs = {n: macs_of(n) for n in names}
    result: dict[str, int] = {}
    for name in names:
        result[name] = macs[name]
        if _depth(name) < depth:
            children = [c for c in names if c.startswith(name + ".") and _depth(c) == _depth(name) + 1]
            own = macs[name] - sum(macs[c] for c in children)
            if children and own > 0:
                # Ops executed directly in the parent's forward (e.g. the decoder's query-mask products).
                result[f"{name}.(own ops)"] = own
    own_root = total - sum(macs[n] for n in names if _depth(n) == 1)
    if own_root > 0:
        result["(own ops)"] = own_root
    return total, result, by_op


def model_cost(
    config: ModelConfig, height: int, width: int, depth: int = 2, device: str | torch.device = "meta"
) -> CostReport:
    """Parameters and MACs of ``config`` at ``height x width`` (rounded up to the multiple of 32 the model runs at)."""
    if height < 1 or width < 1:
        raise ValueError(f"input size must be positive, got {height}x{width}")
    h = int(math.ceil(height / 32) * 32)
    w = int(math.ceil(width / 32) * 32)
    with torch.device(device):
        model: BiSeNetFormer = build_model(config).eval()
        images = torch.zeros(1, 3, h, w)
    params_total, params_by_module = count_parameters(model, depth)
    macs_total, macs_by_module, macs_by_op = count_macs(model, images, depth)
    return CostReport(
        config=config.to_dict(),
        height=h,
        width=w,
        params_total=params_total,
        macs_total=macs_total,
        params_by_module=params_by_module,
        macs_by_module=macs_by_module,
        macs_by_op=macs_by_op,
    )
