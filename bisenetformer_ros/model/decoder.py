"""Masked-attention transformer decoder (Mask2Former-style) refining learnable queries on F1cp / F2cp.

Per block (paper eq. 4-6): masked cross-attention to one context-path scale, self-attention among queries, FFN, each
a residual block (pre-norm by default, as in the published implementation; ``pre_norm=False`` gives post-norm).
Blocks alternate between the 1/32 and 1/16 features, so ``dec_layers=6`` is 3 stages x 2 scales. Before the first
block and after every block the shared heads predict class logits and mask logits; each prediction's masks, resized
to the next block's key grid, become that block's attention mask (logit < 0 = not attended), with rows that would mask
every key left fully open so that softmax never sees an empty row.

Export notes: everything is tensor ops on shapes (no ``.item()``, no data-dependent Python branches, no boolean
indexing), attention goes through ``scaled_dot_product_attention`` with a boolean mask (no finite fill value that
could overflow in fp16), and the mask product is a batched matmul rather than an einsum.
"""

from __future__ import annotations

import itertools
import math

import torch
import torch.nn.functional as F
from torch import nn


def sine_position_encoding(
    height: int | torch.SymInt, width: int | torch.SymInt, num_feats: int, device: torch.device, dtype: torch.dtype
) -> torch.Tensor:
    """2-D sine/cosine encoding of a ``height x width`` grid as ``[height*width, 2*num_feats]`` (y features first).

    Coordinates are normalised to (0, 2*pi] so the encoding describes relative position in the image, independent
    of resolution — the model is trained on crops and run on full frames. Computed in fp32 and cast at the end.
    """
    eps = 1e-6
    scale = 2.0 * math.pi
    y = torch.arange(1, height + 1, device=device, dtype=torch.float32)
    x = torch.arange(1, width + 1, device=device, dtype=torch.float32)
    y = y / (y[-1:] + eps) * scale
    x = x / (x[-1:] + eps) * scale
    idx = torch.arange(num_feats, device=device, dtype=torch.float32)
    dim_t = torch.pow(10000.0, 2.0 * torch.div(idx, 2, rounding_mode="floor") / num_feats)
    py = y[:, None] / dim_t  # [H, F]
    px = x[:, None] / dim_t  # [W, F]
    # Even channels sine, odd channels cosine (interleaved).
    py = torch.stack((py[:, 0::2].sin(), py[:, 1::2].cos()), dim=2).flatten(1)
    px = torch.stack((px[:, 0::2].sin(), px[:, 1::2].cos()), dim=2).flatten(1)
    grid_y = py[:, None, :].expand(-1, width, -1)
    grid_x = px[None, :, :].expand(height, -1, -1)
    return torch.cat((grid_y, grid_x), dim=2).reshape(-1, 2 * num_feats).to(dtype)


class Attention(nn.Module):
    """Multi-head attention with separate q/k/v/out projections, computed by ``scaled_dot_product_attention``."""

    def __init__(self, dim: int, nheads: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.nheads = nheads
        self.head_dim = dim // nheads
        self.dropout = dropout
        self.q_proj = nn.Linear(dim, dim)
        self.k_proj = nn.Linear(dim, dim)
        self.v_proj = nn.Linear(dim, dim)
        self.out_proj = nn.Linear(dim, dim)

    def forward(
        self, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, allow: torch.Tensor | None = None
    ) -> torch.Tensor:
        """``query [B,Nq,C]``, ``key/value [B,Nk,C]``, ``allow`` bool ``[B,1,Nq,Nk]`` (True = may attend)."""
        b = query.shape[0]
        q = self.q_proj(query).reshape(b, -1, self.nheads, self.head_dim).transpose(1, 2)
        k = self.k_proj(key).reshape(b, -1, self.nheads, self.head_dim).transpose(1, 2)
        v = self.v_proj(value).reshape(b, -1, self.nheads, self.head_dim).transpose(1, 2)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=allow, dropout_p=self.dropout if self.training else 0.0)
        return self.out_proj(out.transpose(1, 2).reshape(b, -1, self.nheads * self.head_dim))


class CrossAttentionBlock(nn.Module):
    """Queries attend to image tokens (keys carry the positional encoding, values do not)."""

    def __init__(self, dim: int, nheads: int, dropout: float, pre_norm: bool) -> None:
        super().__init__()
        self.attn = Attention(dim, nheads, dropout)
        self.norm = nn.LayerNorm(dim)
        self.drop = nn.Dropout(dropout)
        self.pre_norm = pre_norm

    def forward(
        self, x: torch.Tensor, memory: torch.Tensor, pos: torch.Tensor, query_pos: torch.Tensor, allow: torch.Tensor
    ) -> torch.Tensor:
        if self.pre_norm:
            return x + self.drop(self.attn(self.norm(x) + query_pos, memory + pos, memory, allow))
        return self.norm(x + self.drop(self.attn(x + query_pos, memory + pos, memory, allow)))


class SelfAttentionBlock(nn.Module):
    """Queries exchange information (duplicate suppression, context between segments)."""

    def __init__(self, dim: int, nheads: int, dropout: float, pre_norm: bool) -> None:
        super().__init__()
        self.attn = Attention(dim, nheads, dropout)
        self.norm = nn.LayerNorm(dim)
        self.drop = nn.Dropout(dropout)
        self.pre_norm = pre_norm

    def forward(self, x: torch.Tensor, query_pos: torch.Tensor) -> torch.Tensor:
        if self.pre_norm:
            h = self.norm(x)
            return x + self.drop(self.attn(h + query_pos, h + query_pos, h))
        return self.norm(x + self.drop(self.attn(x + query_pos, x + query_pos, x)))


class FFNBlock(nn.Module):
    """Two-layer ReLU MLP (expansion ``dim_feedforward / dim``) with residual."""

    def __init__(self, dim: int, hidden: int, dropout: float, pre_norm: bool) -> None:
        super().__init__()
        self.linear1 = nn.Linear(dim, hidden)
        self.linear2 = nn.Linear(hidden, dim)
        self.norm = nn.LayerNorm(dim)
        self.drop = nn.Dropout(dropout)
        self.pre_norm = pre_norm

    def _mlp(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear2(self.drop(F.relu(self.linear1(x))))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.pre_norm:
            return x + self.drop(self._mlp(self.norm(x)))
        return self.norm(x + self.drop(self._mlp(x)))


class MLP(nn.Module):
    """Plain MLP with ReLU between layers (mask embedding head)."""

    def __init__(self, in_dim: int, hidden: int, out_dim: int, num_layers: int) -> None:
        super().__init__()
        dims = [in_dim] + [hidden] * (num_layers - 1) + [out_dim]
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in itertools.pairwise(dims))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for i, layer in enumerate(self.layers):
            x = layer(x)
            if i < len(self.layers) - 1:
                x = F.relu(x)
        return x


class MaskedTransformerDecoder(nn.Module):
    """Refines ``num_queries`` learnable queries on ``num_levels`` feature maps (coarsest first).

    ``forward(features, mask_features)`` returns a list of ``(class_logits [B,Q,K+1], mask_logits [B,Q,h,w])``: the
    query-only prediction first, then one per block; the last entry is the model output, the rest are auxiliary
    predictions for deep supervision.
    """

    def __init__(
        self,
        in_channels: int,
        num_classes: int,
        num_queries: int = 100,
        hidden_dim: int = 256,
        nheads: int = 8,
        dim_feedforward: int = 1024,
        dec_layers: int = 6,
        mask_dim: int = 128,
        num_levels: int = 2,
        pre_norm: bool = True,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        self.num_levels = num_levels
        self.num_layers = dec_layers
        self.hidden_dim = hidden_dim
        self.query_feat = nn.Embedding(num_queries, hidden_dim)
        self.query_embed = nn.Embedding(num_queries, hidden_dim)
        # Always a 1x1 projection per level, also when the widths agree (the reference's enforce_input_project), and
        # no level embedding: the reference has none, and its checkpoints carry neither an identity nor an embedding.
        self.input_proj = nn.ModuleList(nn.Conv2d(in_channels, hidden_dim, 1) for _ in range(num_levels))
        self.cross_blocks = nn.ModuleList(
            CrossAttentionBlock(hidden_dim, nheads, dropout, pre_norm) for _ in range(dec_layers)
        )
        self.self_blocks = nn.ModuleList(
            SelfAttentionBlock(hidden_dim, nheads, dropout, pre_norm) for _ in range(dec_layers)
        )
        self.ffn_blocks = nn.ModuleList(
            FFNBlock(hidden_dim, dim_feedforward, dropout, pre_norm) for _ in range(dec_layers)
        )
        self.decoder_norm = nn.LayerNorm(hidden_dim)
        self.class_embed = nn.Linear(hidden_dim, num_classes + 1)
        self.mask_embed = MLP(hidden_dim, hidden_dim, mask_dim, 3)
        self._reset_parameters()

    def _reset_parameters(self) -> None:
        for blocks in (self.cross_blocks, self.self_blocks, self.ffn_blocks):
            for p in blocks.parameters():
                if p.dim() > 1:
                    nn.init.xavier_uniform_(p)
        for proj in self.input_proj:
            nn.init.kaiming_uniform_(proj.weight, a=1)
            nn.init.zeros_(proj.bias)

    def _predict(
        self, queries: torch.Tensor, mask_features: torch.Tensor, attn_size: tuple[int, int] | torch.Size
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Heads on the current queries; also the boolean attention mask for a key grid of ``attn_size``."""
        x = self.decoder_norm(queries)
        logits = self.class_embed(x)
        emb = self.mask_embed(x)  # [B, Q, Cm]
        b, c = mask_features.shape[0], mask_features.shape[1]
        h, w = mask_features.shape[-2], mask_features.shape[-1]
        masks = torch.matmul(emb, mask_features.reshape(b, c, -1)).reshape(b, -1, h, w)
        small = F.interpolate(masks.detach(), size=attn_size, mode="bilinear", align_corners=False)
        allow = small.flatten(2) >= 0  # [B, Q, N]; sigmoid(logit) >= 0.5
        # A query whose mask is empty on this grid would get an all-masked softmax row (NaN): open the whole row.
        allow = allow | ~allow.any(dim=-1, keepdim=True)
        return logits, masks, allow.unsqueeze(1)

    def forward(
        self, features: list[torch.Tensor], mask_features: torch.Tensor
    ) -> list[tuple[torch.Tensor, torch.Tensor]]:
        if len(features) != self.num_levels:
            raise ValueError(f"decoder expects {self.num_levels} feature maps, got {len(features)}")
        b = mask_features.shape[0]
        memories, positions, sizes = [], [], []
        for lvl, feat in enumerate(features):
            h, w = feat.shape[-2], feat.shape[-1]
            src = self.input_proj[lvl](feat).flatten(2).transpose(1, 2)  # [B, HW, C]
            memories.append(src)
            pos = sine_position_encoding(h, w, self.hidden_dim // 2, src.device, src.dtype)
            positions.append(pos.unsqueeze(0))
            sizes.append((h, w))
        queries = self.query_feat.weight.unsqueeze(0).expand(b, -1, -1).to(mask_features.dtype)
        query_pos = self.query_embed.weight.unsqueeze(0).expand(b, -1, -1).to(mask_features.dtype)

        predictions: list[tuple[torch.Tensor, torch.Tensor]] = []
        logits, masks, allow = self._predict(queries, mask_features, sizes[0])
        predictions.append((logits, masks))
        for i in range(self.num_layers):
            lvl = i % self.num_levels
            queries = self.cross_blocks[i](queries, memories[lvl], positions[lvl], query_pos, allow)
            queries = self.self_blocks[i](queries, query_pos)
            queries = self.ffn_blocks[i](queries)
            logits, masks, allow = self._predict(queries, mask_features, sizes[(i + 1) % self.num_levels])
            predictions.append((logits, masks))
        return predictions
