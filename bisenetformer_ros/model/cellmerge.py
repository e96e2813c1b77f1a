"""Exact Mask2Former merging at camera resolution, with per-pixel work only where the answer can change.

Why: the dense merge up-samples every query's mask to camera size (``Q x H x W`` values, ``K x H x W`` class scores
for semantic); at 1280x720 on a CPU that costs more than the network, and ADE20K's 150 classes need 0.5 GB. Yet the
labels are piecewise constant and only their boundaries depend on per-pixel values.

**Cells.** The mask chain (mask grid -> padded batch size, crop the padding, -> original size; bilinear,
``align_corners=False``) is separable, and along each axis every output index reads a convex combination of a few
consecutive mask-grid indices (2 for one resize, 3 when the image was also resized; the weights are PyTorch's own,
obtained by pushing an identity matrix through the same resizes). Output pixels whose supports start at the same grid
row and column form a *cell* (8x8 pixels for an 8x up-sampling); every pixel of a cell reads only the cell's *window*
of ``Sy x Sx`` grid points, as a convex combination. Hence:

* ``sigmoid_first`` (probabilities resized): class scores ``sum_q p_q(k) sigmoid(m_q)`` and panoptic scores
  ``score_q sigmoid(m_q)`` are linear in what is resized, so an entity that beats every other one by a margin at all
  window points beats it at every pixel of the cell (a convex combination of positive differences is positive), and
  each value lies between its window minimum and maximum.
* ``upsample_logits`` (logits resized, then the sigmoid): each pixel's logit lies between the window's smallest and
  largest logit and the sigmoid is monotonic, so every probability, class score (non-negative weights) and panoptic
  score lies between the values computed from the window extremes.

A cell where one entity's lower bound beats every other entity's upper bound is *decided* and costs nothing per pixel;
in the others (a thin band along boundaries) only the *candidates* - entities whose upper bound reaches the best lower
bound - are evaluated per pixel, first maximum in index order like ``max(0)``. Mask-threshold tests (panoptic
ownership and areas, instance masks) use the same bounds.

**Precision.** Bounds are computed in float32 on the mask grid and widened by a bound on their rounding error plus a
margin, so a decided cell is decided for the float64 computation too; per-pixel values are computed in float64. The
result therefore equals the dense float64 merge pixel for pixel (tests); the float32 dense merge can differ from both
only at pixels where two scores agree to float32 rounding.

Everything is plain torch on the logits' device (CPU or CUDA); memory is ``O(Q x mask grid)`` plus the output maps and
bounded chunks, never ``K x H x W``.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import torch
import torch.nn.functional as F

from bisenetformer_ros.model.preprocess import PreprocessMeta

MASK_ORDERS: tuple[str, ...] = ("upsample_logits", "sigmoid_first")
EXACT = torch.float64  # per-pixel values; float32 bounds decide everything else
_EPS32 = 2.0**-24
_ABS_MARGIN = 1e-9  # far above float64 rounding of the dense reference, far below any real score difference
_CHUNK_ELEMENTS = 1 << 21  # float64 elements per per-pixel chunk (16 MB)
_BAND_ELEMENTS = 1 << 22  # float32 elements of one band's bound tables (16 MB)


def float32_tolerance(n_terms: int, mass: torch.Tensor) -> torch.Tensor:
    """Bound on the error of a float32 sum of ``n_terms`` non-negative products ``p * sigmoid`` whose exact total is at
    most ``mass`` (``n u`` per accumulation step, a few ulps for softmax and sigmoid), plus the float64 margin."""
    return (4.0 * (n_terms + 8) * _EPS32) * mass + _ABS_MARGIN


# ------------------------------------------------------------------------------------------------ geometry
@dataclass(frozen=True)
class _Axis:
    """The interpolation chain along one axis: output index ``o`` = ``sum_s weights[o, s] * grid[start[o] + s]``."""

    weights: torch.Tensor  # [O, S] float64
    start: torch.Tensor  # [O] window start on the mask grid
    cell_first: torch.Tensor  # [C] first output index of each cell
    cell_len: torch.Tensor  # [C] output indices in each cell
    cell_start: torch.Tensor  # [C] window start of each cell
    cell_of: torch.Tensor  # [O] cell of each output index
    window: int  # S
    max_len: int  # largest cell


@lru_cache(maxsize=64)
def _axis(n: int, padded: int, resized: int, orig: int, second: bool, device: str) -> _Axis:
    """Weights of the chain by resizing the identity (PyTorch's own index and weight arithmetic, in float64)."""
    dev = torch.device(device)
    eye = torch.eye(n, dtype=EXACT, device=dev)[None, :, :, None]  # channel i = basis vector e_i along this axis
    x = F.interpolate(eye, size=(padded, 1), mode="bilinear", align_corners=False)[:, :, :resized]
    if second:
        x = F.interpolate(x, size=(orig, 1), mode="bilinear", align_corners=False)
    dense = x[0, :, :, 0].t().contiguous()  # [O, n]
    nz = (dense != 0).to(torch.uint8)
    first = nz.argmax(1)
    last = n - 1 - nz.flip(1).argmax(1)
    window = int((last - first).max()) + 1
    start = first.clamp(max=n - window)
    weights = dense.gather(1, start[:, None] + torch.arange(window, device=dev))
    o = int(start.numel())
    change = torch.ones(o, dtype=torch.bool, device=dev)
    change[1:] = start[1:] != start[:-1]
    cell_first = torch.nonzero(change).flatten()
    cell_len = torch.diff(cell_first, append=torch.tensor([o], device=dev))
    return _Axis(
        weights=weights,
        start=start,
        cell_first=cell_first,
        cell_len=cell_len,
        cell_start=start[cell_first],
        cell_of=torch.cumsum(change, 0) - 1,
        window=window,
        max_len=int(cell_len.max()),
    )


@dataclass
class _Block:
    """Pixels of ``U`` cells, each padded to the largest cell: rows ``[U, ry]``, cols ``[U, rx]`` (padding repeats a
    valid index), their validity and interpolation weights, and the cells' window starts."""

    rows: torch.Tensor
    cols: torch.Tensor
    valid: torch.Tensor  # [U, ry, rx]
    wy: torch.Tensor  # [U, ry, Sy]
    wx: torch.Tensor  # [U, rx, Sx]
    sy: torch.Tensor  # [U]
    sx: torch.Tensor  # [U]

    def flat(self, width: int) -> torch.Tensor:
        """Flat pixel index of every valid pixel, in the block's ``[U, ry, rx]`` order."""
        return (self.rows[:, :, None] * width + self.cols[:, None, :])[self.valid]


class CellGrid:
    """Cells of one image's mask chain (see the module docstring) and the operations on them."""

    def __init__(self, meta: PreprocessMeta, mask_hw: tuple[int, int], device: torch.device) -> None:
        second = tuple(meta.resized_size) != tuple(meta.orig_size)
        dev = str(device)
        self.y, self.x = (
            _axis(
                int(mask_hw[a]),
                int(meta.padded_size[a]),
                int(meta.resized_size[a]),
                int(meta.orig_size[a]),
                second,
                dev,
            )
            for a in (0, 1)
        )
        self.size = (int(meta.orig_size[0]), int(meta.orig_size[1]))
        self.shape = (int(self.y.cell_first.numel()), int(self.x.cell_first.numel()))
        self.device = device

    @property
    def cell_pixels(self) -> torch.Tensor:
        """``[Cy, Cx]`` pixel count of each cell."""
        return self.y.cell_len[:, None] * self.x.cell_len[None, :]

    def bands(self, entities: int) -> list[tuple[int, int]]:
        """Ranges of cell rows whose ``entities x cells`` bound tables stay within the band budget."""
        step = max(1, _BAND_ELEMENTS // max(1, entities * self.shape[1]))
        return [(a, min(a + step, self.shape[0])) for a in range(0, self.shape[0], step)]

    def band_rows(self, c0: int, c1: int) -> tuple[int, int]:
        """Mask-grid rows read by cell rows ``c0..c1``."""
        return int(self.y.cell_start[c0]), int(self.y.cell_start[c1 - 1]) + self.y.window

    def window_max(self, values: torch.Tensor, c0: int, c1: int) -> torch.Tensor:
        """Max of ``values [E, rows of band, n_x]`` (mask-grid rows ``band_rows(c0, c1)``) over each cell's window:
        ``[E, c1 - c0, Cx]``."""
        r0, _ = self.band_rows(c0, c1)
        pooled = F.max_pool2d(values[None], (self.y.window, self.x.window), stride=1)[0]
        return pooled[:, self.y.cell_start[c0:c1] - r0][:, :, self.x.cell_start]

    def window_min(self, values: torch.Tensor, c0: int, c1: int) -> torch.Tensor:
        return -self.window_max(-values, c0, c1)

    def block(self, cy: torch.Tensor, cx: torch.Tensor) -> _Block:
        """The pixels of cells ``(cy[u], cx[u])``."""
        ry, rx = self.y.max_len, self.x.max_len
        dev = self.device
        ar_y, ar_x = torch.arange(ry, device=dev), torch.arange(rx, device=dev)
        vy = ar_y[None, :] < self.y.cell_len[cy][:, None]
        vx = ar_x[None, :] < self.x.cell_len[cx][:, None]
        rows = torch.where(vy, self.y.cell_first[cy][:, None] + ar_y, self.y.cell_first[cy][:, None])
        cols = torch.where(vx, self.x.cell_first[cx][:, None] + ar_x, self.x.cell_first[cx][:, None])
        return _Block(
            rows=rows,
            cols=cols,
            valid=vy[:, :, None] & vx[:, None, :],
            wy=self.y.weights[rows],
            wx=self.x.weights[cols],
            sy=self.y.cell_start[cy],
            sx=self.x.cell_start[cx],
        )

    def window(self, grid: torch.Tensor, entities: torch.Tensor, blk: _Block) -> torch.Tensor:
        """``grid[entities[u, a]]`` on cell ``u``'s window: ``[U, A, Sy, Sx]`` from ``grid [E, n_y, n_x]``."""
        _e, n_y, n_x = grid.shape
        dy = torch.arange(self.y.window, device=grid.device)
        dx = torch.arange(self.x.window, device=grid.device)
        flat = (
            entities[:, :, None, None] * (n_y * n_x)
            + (blk.sy[:, None, None, None] + dy[:, None]) * n_x
            + (blk.sx[:, None, None, None] + dx)
        )
        return grid.reshape(-1)[flat]

    @staticmethod
    def interpolate(win: torch.Tensor, blk: _Block) -> torch.Tensor:
        """Window values ``[U, A, Sy, Sx]`` -> the cells' pixel values ``[U, A, ry, rx]`` (float64)."""
        t = win.to(EXACT) @ blk.wx.transpose(1, 2)[:, None]
        return blk.wy[:, None] @ t

    def probabilities(self, masks: torch.Tensor, entities: torch.Tensor, blk: _Block, order: str) -> torch.Tensor:
        """Exact per-pixel mask probabilities ``[U, A, ry, rx]`` of queries ``entities [U, A]`` in ``order``."""
        win = self.window(masks, entities, blk).to(EXACT)
        if order == "sigmoid_first":
            return self.interpolate(win.sigmoid(), blk)
        return self.interpolate(win, blk).sigmoid()

    def expand(self, cell_values: torch.Tensor) -> torch.Tensor:
        """``[Cy, Cx]`` per-cell values -> ``[H, W]`` (each pixel takes its cell's value)."""
        return cell_values.index_select(0, self.y.cell_of).index_select(1, self.x.cell_of)


def _chunks(n: int, per_item: int) -> list[tuple[int, int]]:
    step = max(1, _CHUNK_ELEMENTS // max(1, per_item))
    return [(a, min(a + step, n)) for a in range(0, n, step)]


def _candidate_lists(cand: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``[U, E]`` bool -> ascending entity indices ``[U, C]`` (C = most candidates of any row) and their validity."""
    count = cand.sum(1)
    c = max(1, int(count.max()))
    order = torch.sort((~cand).to(torch.uint8), dim=1, stable=True).indices[:, :c]
    valid = torch.arange(c, device=cand.device)[None, :] < count[:, None]
    return order, valid


def _first_max(values: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """Index along dim 1 of the first maximum of ``values [U, C, ...]`` among valid ``[U, C]`` entries."""
    shape = valid.shape + (1,) * (values.dim() - 2)
    masked = torch.where(valid.reshape(shape), values, torch.full_like(values, -torch.inf))
    return masked.max(1).indices


@dataclass
class _Decision:
    """Per band: ``winner [Cb, Cx]`` (-1 where undecided) and candidate table ``[E, Cb, Cx]``."""

    winner: torch.Tensor
    cand: torch.Tensor


def _decide(lower: torch.Tensor, upper: torch.Tensor, tol: torch.Tensor) -> _Decision:
    """Bounds ``[E, Cb, Cx]`` -> candidates (upper bound reaches the best lower bound) and decided winners."""
    lo = lower - tol[:, None, None]
    best, arg = lo.max(0)
    cand = (upper + tol[:, None, None]) >= best
    cand.scatter_(0, arg[None], True)  # the best lower bound's entity is always a candidate
    return _Decision(winner=torch.where(cand.sum(0) == 1, arg, -1), cand=cand)


def _corner_winners(grid_values: torch.Tensor, tol: float, cells: CellGrid, c0: int, c1: int) -> torch.Tensor:
    """Linear quantities ``[E, rows, n_x]`` on the band's grid: the entity that wins at every window point by more
    than ``tol`` (it then wins at every pixel of the cell), else -1."""
    if grid_values.shape[0] == 1:
        return torch.zeros((c1 - c0, cells.shape[1]), dtype=torch.long, device=grid_values.device)
    top, idx = grid_values.topk(2, dim=0)
    win = idx[0].to(grid_values.dtype)[None]
    same = cells.window_max(win, c0, c1) == cells.window_min(win, c0, c1)
    margin = cells.window_min((top[0] - top[1])[None], c0, c1)
    return torch.where(same & (margin > tol), cells.window_max(win, c0, c1).long(), -1)[0]


# ------------------------------------------------------------------------------------------------ semantic
def semantic_labels(class_probs: torch.Tensor, masks: torch.Tensor, cells: CellGrid, order: str) -> torch.Tensor:
    """Exact ``argmax_k sum_q class_probs[q, k] * prob_q`` at every pixel: ``[H, W]`` int64 labels.

    ``class_probs [Q, K]`` float64 (softmax without no-object), ``masks [Q, h, w]`` mask logits."""
    q, k = class_probs.shape
    p32 = class_probs.float()
    tol = float32_tolerance(q, p32.sum(0))
    m32 = masks.float()
    cell_label = torch.empty(cells.shape, dtype=torch.long, device=masks.device)
    pix_idx, pix_val = [], []
    for c0, c1 in cells.bands(k):
        r0, r1 = cells.band_rows(c0, c1)
        band = m32[:, r0:r1]
        if order == "sigmoid_first":
            scores = (p32.t() @ band.sigmoid().reshape(q, -1)).reshape(k, r1 - r0, -1)  # linear: class scores
            lower, upper = cells.window_min(scores, c0, c1), cells.window_max(scores, c0, c1)
            corner = _corner_winners(scores, 2 * float(tol.max()), cells, c0, c1)
        else:
            lo = cells.window_min(band, c0, c1).sigmoid().reshape(q, -1)
            hi = cells.window_max(band, c0, c1).sigmoid().reshape(q, -1)
            lower = (p32.t() @ lo).reshape(k, c1 - c0, -1)
            upper = (p32.t() @ hi).reshape(k, c1 - c0, -1)
            corner = None
        dec = _decide(lower, upper, tol)
        winner = dec.winner if corner is None else torch.where(corner >= 0, corner, dec.winner)
        cell_label[c0:c1] = winner
        cy, cx = torch.nonzero(winner < 0, as_tuple=True)
        if cy.numel() == 0:
            continue
        cand, valid = _candidate_lists(dec.cand[:, cy, cx].t())
        ppc = cells.y.max_len * cells.x.max_len
        per_cell = q * (ppc if order == "upsample_logits" else cells.y.window * cells.x.window) + cand.shape[1] * ppc
        for a, b in _chunks(int(cy.numel()), per_cell):
            blk = cells.block(cy[a:b] + c0, cx[a:b])
            queries = torch.arange(q, device=masks.device).expand(b - a, q)
            pc = class_probs[:, cand[a:b]].permute(1, 2, 0)  # [U, C, Q]
            if order == "sigmoid_first":
                win = cells.window(masks, queries, blk).to(EXACT).sigmoid()  # [U, Q, Sy, Sx]
                class_win = (pc @ win.flatten(2)).reshape(b - a, -1, cells.y.window, cells.x.window)
                values = cells.interpolate(class_win, blk)
            else:
                probs = cells.probabilities(masks, queries, blk, order)  # [U, Q, ry, rx]
                values = (pc @ probs.flatten(2)).reshape(b - a, -1, cells.y.max_len, cells.x.max_len)
            best = cand[a:b].gather(1, _first_max(values, valid[a:b]).flatten(1)).reshape(values[:, 0].shape)
            pix_idx.append(blk.flat(cells.size[1]))
            pix_val.append(best[blk.valid])
    labels = cells.expand(cell_label)
    if pix_idx:
        labels.view(-1)[torch.cat(pix_idx)] = torch.cat(pix_val)
    return labels


# ------------------------------------------------------------------------------------------------ panoptic
@dataclass
class PanopticCells:
    """What the panoptic rules need, measured exactly at full resolution without full-resolution scores.

    ``won`` / ``fin`` / ``orig`` (per kept query): pixels where it wins, where it wins and owns the pixel (its
    probability >= mask_threshold), and where its probability >= mask_threshold. Decided cells keep one winner and
    an all-owned flag; the per-pixel ``(index, winner, owned)`` records cover undecided cells and decided cells
    whose winner's mask edge crosses them."""

    won: torch.Tensor
    fin: torch.Tensor
    orig: torch.Tensor
    cell_winner: torch.Tensor
    cell_owned: torch.Tensor
    pix_idx: torch.Tensor
    pix_win: torch.Tensor
    pix_own: torch.Tensor
    cells: CellGrid

    def id_map(self, lut: torch.Tensor) -> torch.Tensor:
        """``[H, W]`` int32 segment ids given ``lut`` (kept query -> segment id, 0 = dropped)."""
        cell_ids = torch.where(self.cell_owned, lut[self.cell_winner.clamp(min=0)], 0)
        ids = self.cells.expand(cell_ids.to(torch.int32))
        ids.view(-1)[self.pix_idx] = torch.where(self.pix_own, lut[self.pix_win], 0).to(torch.int32)
        return ids


def panoptic_cells(
    scores: torch.Tensor, masks: torch.Tensor, cells: CellGrid, order: str, threshold: float
) -> PanopticCells:
    """Per pixel: the kept query with the highest ``scores[q] * prob_q`` (first maximum) and whether its probability
    reaches ``threshold``; ``scores [n]`` float64, ``masks [n, h, w]`` the kept queries' mask logits (n >= 1)."""
    n = int(scores.numel())
    dev = masks.device
    s32 = scores.float()
    tol = float32_tolerance(1, s32)
    ptol = float(float32_tolerance(1, torch.ones(())))
    m32 = masks.float()
    sizes = cells.cell_pixels
    won = torch.zeros(n, dtype=torch.long, device=dev)
    fin = torch.zeros_like(won)
    orig = torch.zeros_like(won)
    cell_winner = torch.empty(cells.shape, dtype=torch.long, device=dev)
    cell_owned = torch.zeros(cells.shape, dtype=torch.bool, device=dev)
    pix_idx, pix_win, pix_own = [], [], []
    ppc = cells.y.max_len * cells.x.max_len

    def probs_of(cy: torch.Tensor, cx: torch.Tensor, entities: torch.Tensor) -> tuple[_Block, torch.Tensor]:
        blk = cells.block(cy, cx)
        return blk, cells.probabilities(masks, entities, blk, order)

    for c0, c1 in cells.bands(n):
        r0, r1 = cells.band_rows(c0, c1)
        band = m32[:, r0:r1]
        plo = cells.window_min(band, c0, c1).sigmoid()  # probability bounds, both orders (sigmoid is monotonic)
        phi = cells.window_max(band, c0, c1).sigmoid()
        size = sizes[c0:c1]
        # Areas of the binary masks: cells entirely above / below the threshold, per pixel where the edge crosses.
        inside = plo - ptol >= threshold
        crossing = ~inside & (phi + ptol >= threshold)
        orig += (inside * size).sum((1, 2))
        qi, cy, cx = torch.nonzero(crossing, as_tuple=True)
        for a, b in _chunks(int(qi.numel()), ppc):
            blk, p = probs_of(cy[a:b] + c0, cx[a:b], qi[a:b, None])
            hit = (p[:, 0] >= threshold) & blk.valid
            orig.index_add_(0, qi[a:b], hit.flatten(1).sum(1))
        # Winners.
        lower, upper = s32[:, None, None] * plo, s32[:, None, None] * phi
        dec = _decide(lower, upper, tol)
        winner = dec.winner
        if order == "sigmoid_first":
            grid_scores = s32[:, None, None] * band.sigmoid()
            corner = _corner_winners(grid_scores, 2 * float(tol.max()), cells, c0, c1)
            winner = torch.where(corner >= 0, corner, winner)
        cell_winner[c0:c1] = winner
        decided = winner >= 0
        w = winner.clamp(min=0)
        owned = decided & (plo.gather(0, w[None])[0] - ptol >= threshold)
        partly = decided & ~owned & (phi.gather(0, w[None])[0] + ptol >= threshold)
        cell_owned[c0:c1] = owned
        won.index_add_(0, w[decided], size[decided])
        fin.index_add_(0, w[owned], size[owned])
        cy, cx = torch.nonzero(partly, as_tuple=True)
        for a, b in _chunks(int(cy.numel()), ppc):
            blk, p = probs_of(cy[a:b] + c0, cx[a:b], w[cy[a:b], cx[a:b]][:, None])
            own = p[:, 0] >= threshold
            who = w[cy[a:b], cx[a:b]][:, None, None].expand_as(own)
            pix_idx.append(blk.flat(cells.size[1]))
            pix_win.append(who[blk.valid])
            pix_own.append(own[blk.valid])
            fin.index_add_(0, who[blk.valid & own], torch.ones_like(who[blk.valid & own]))
        cy, cx = torch.nonzero(~decided, as_tuple=True)
        if cy.numel() == 0:
            continue
        cand, valid = _candidate_lists(dec.cand[:, cy, cx].t())
        for a, b in _chunks(int(cy.numel()), cand.shape[1] * ppc):
            blk, p = probs_of(cy[a:b] + c0, cx[a:b], cand[a:b])
            values = scores[cand[a:b]][:, :, None, None] * p
            pick = _first_max(values, valid[a:b])
            who = cand[a:b].gather(1, pick.flatten(1)).reshape(pick.shape)
            own = p.gather(1, pick[:, None])[:, 0] >= threshold
            v = blk.valid
            pix_idx.append(blk.flat(cells.size[1]))
            pix_win.append(who[v])
            pix_own.append(own[v])
            won.index_add_(0, who[v], torch.ones_like(who[v]))
            fin.index_add_(0, who[v & own], torch.ones_like(who[v & own]))
    empty_l = torch.zeros(0, dtype=torch.long, device=dev)
    return PanopticCells(
        won=won,
        fin=fin,
        orig=orig,
        cell_winner=cell_winner,
        cell_owned=cell_owned,
        pix_idx=torch.cat(pix_idx) if pix_idx else empty_l,
        pix_win=torch.cat(pix_win) if pix_win else empty_l,
        pix_own=torch.cat(pix_own) if pix_own else torch.zeros(0, dtype=torch.bool, device=dev),
        cells=cells,
    )


# ------------------------------------------------------------------------------------------------ instance
def _dense_weights(axis: _Axis, a: int, b: int) -> tuple[int, torch.Tensor]:
    """Output indices ``a..b`` of an axis as a dense ``[b - a, n_read]`` weight matrix and the first grid index."""
    base = int(axis.start[a])
    width = int(axis.start[b - 1]) + axis.window - base
    dense = torch.zeros((b - a, width), dtype=EXACT, device=axis.weights.device)
    idx = axis.start[a:b, None] - base + torch.arange(axis.window, device=dense.device)
    return base, dense.scatter_(1, idx, axis.weights[a:b])


def instance_masks(
    masks: torch.Tensor, cells: CellGrid, order: str, threshold: float
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Binary masks ``prob >= threshold`` ``[N, H, W]``, the sum of the probability inside each mask (float64) and
    its area, for ``masks [N, h, w]`` logits; per-pixel work only inside the cells that can reach the threshold."""
    n = int(masks.shape[0])
    h, w = cells.size
    dev = masks.device
    out = torch.zeros((n, h, w), dtype=torch.bool, device=dev)
    prob_sum = torch.zeros(n, dtype=EXACT, device=dev)
    ptol = float(float32_tolerance(1, torch.ones(())))
    if n == 0:
        return out, prob_sum, torch.zeros(0, dtype=torch.long, device=dev)
    reach = cells.window_max(masks.float(), 0, cells.shape[0]).sigmoid() + ptol >= threshold  # [N, Cy, Cx]
    for i in range(n):
        rows = torch.nonzero(reach[i].any(1)).flatten()
        cols = torch.nonzero(reach[i].any(0)).flatten()
        if rows.numel() == 0:
            continue
        y0 = int(cells.y.cell_first[rows[0]])
        y1 = int(cells.y.cell_first[rows[-1]] + cells.y.cell_len[rows[-1]])
        x0 = int(cells.x.cell_first[cols[0]])
        x1 = int(cells.x.cell_first[cols[-1]] + cells.x.cell_len[cols[-1]])
        by, wy = _dense_weights(cells.y, y0, y1)
        bx, wx = _dense_weights(cells.x, x0, x1)
        grid = masks[i, by : by + wy.shape[1], bx : bx + wx.shape[1]].to(EXACT)
        if order == "sigmoid_first":
            prob = wy @ grid.sigmoid() @ wx.t()
        else:
            prob = (wy @ grid @ wx.t()).sigmoid()
        binary = prob >= threshold
        out[i, y0:y1, x0:x1] = binary
        prob_sum[i] = (prob * binary).sum()
    return out, prob_sum, out.flatten(1).sum(1)
