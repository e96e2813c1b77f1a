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
margin, so a decided cell is decided for the float64 computation too; per-pixel values are computed in float64, except
that the semantic sums over many queries first take a float32 pass (``CellGrid.first_pass``) whose answer is kept only
where the winner leads by more than that pass's error bound (else the cell is evaluated in float64). The result
therefore equals the dense float64 merge pixel for pixel (tests); the float32 dense merge can differ from both only at
pixels where two scores agree to float32 rounding.

Everything is plain torch on the logits' device (CPU or CUDA); memory is ``O(Q x mask grid)`` plus the output maps and
bounded chunks, never ``K x H x W``.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import cached_property, lru_cache, partial

import torch
import torch.nn.functional as F

from bisenetformer_ros.model import native
from bisenetformer_ros.model.preprocess import PreprocessMeta

EXACT = torch.float64  # per-pixel values; float32 bounds decide everything else
_EPS32 = 2.0**-24
_ABS_MARGIN = 1e-9  # far above float64 rounding of the dense reference, far below any real score difference
_CHUNK_ELEMENTS = 1 << 21  # float64 elements per per-pixel chunk (16 MB)
_BAND_ELEMENTS = 1 << 20  # float32 elements of one band's bound tables (4 MB; a handful are alive at once)
_SMALL_PRODUCT = 1 << 18  # float64 elements of a [U, C, A, P] product computed in one piece (2 MB)
_PRUNE = 1e-4  # a query adding less than this to every class score (in a cell) is bounded, not evaluated
# The same in the whole frame: the query stays out of every per-cell table (1e-4..1e-3 measured within noise of
# each other with 19 classes; 3e-4 the best with 150, whose faint queries spread over more classes).
_LIVE = 3e-4
_MAJOR = 0.25  # classes that can score at least this somewhere decide the cells on their own (see _major_classes)
_MAJOR_MIN_CLASSES = 32  # below this many classes one table of all of them is as cheap
# Largest error allowed for a float32 sigmoid (PyTorch's vectorised CPU one measured within 9e-8 of float64 on
# [-40, 40]): the first pass's per-pixel probabilities are trusted to this much plus their interpolation's rounding.
_SIGMOID32 = 2.0**-18
_PATTERN_ELEMENTS = 1 << 20  # float32 elements of the per-grid table of distinct dense cell weights (4 MB)
# Panoptic bands: with at least this many kept queries, bands of at most _NEAR_ROWS cell rows, and the queries whose
# logits stay below _FAR_LOGIT (and the mask threshold) all over a band bounded there as one entity (see
# _near_queries): crowded frames and overlapping duplicates leave about half of the queries near a band of 16 rows.
_NEAR_MIN_QUERIES = 24
_NEAR_ROWS = 16
_FAR_LOGIT = -5.0


def float32_error(n_terms: int) -> float:
    """Relative error bound of a float32 sum of ``n_terms`` non-negative products ``p * sigmoid`` (``n u`` for the
    accumulation - relative to the sum itself because no term is negative - and a few ulps for softmax and sigmoid).
    Bounds are widened by it and by ``_ABS_MARGIN``: ``[lower (1 - e) - margin, upper (1 + e) + margin]``."""
    return 4.0 * (n_terms + 8) * _EPS32


def _widen_low(values: torch.Tensor, rel: float) -> torch.Tensor:
    return values * (1.0 - rel) - _ABS_MARGIN


def _widen_high(values: torch.Tensor, rel: float) -> torch.Tensor:
    return values * (1.0 + rel) + _ABS_MARGIN


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
    pixel: torch.Tensor  # [C, max_len] output indices of each cell, padded by repeating the first
    pixel_valid: torch.Tensor  # [C, max_len]
    pixel_weights: torch.Tensor  # [C, max_len, S] their weights (float64)


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
    # Runs of one window start are cells; the runs at the borders are longer (clamped source positions), so runs are
    # cut to the most common length: every cell's pixels are padded to the largest cell in per-pixel work.
    run_first = torch.nonzero(change).flatten()
    run_len = torch.diff(run_first, append=torch.tensor([o], device=dev))
    longest = int(torch.mode(run_len).values)
    pos = torch.arange(o, device=dev) - run_first[torch.cumsum(change, 0) - 1]
    change |= pos % longest == 0
    cell_first = torch.nonzero(change).flatten()
    cell_len = torch.diff(cell_first, append=torch.tensor([o], device=dev))
    # Per-cell pixel tables, so that a block of cells is a few row gathers (blocks are built per chunk).
    max_len = int(cell_len.max())
    ar = torch.arange(max_len, device=dev)
    pixel_valid = ar[None, :] < cell_len[:, None]
    pixel = torch.where(pixel_valid, cell_first[:, None] + ar, cell_first[:, None])
    return _Axis(
        weights=weights,
        start=start,
        cell_first=cell_first,
        cell_len=cell_len,
        cell_start=start[cell_first],
        cell_of=torch.cumsum(change, 0) - 1,
        window=window,
        max_len=max_len,
        pixel=pixel,
        pixel_valid=pixel_valid,
        pixel_weights=weights[pixel],
    )


@dataclass
class _Block:
    """Pixels of ``U`` cells, each padded to the largest cell: rows ``[U, ry]``, cols ``[U, rx]`` (padding repeats a
    valid index), their validity and interpolation weights, and the cells' window starts."""

    rows: torch.Tensor
    cols: torch.Tensor
    valid: torch.Tensor  # [U, ry, rx]
    wy: torch.Tensor  # [U, ry, Sy] float64: window row -> pixel row
    wx: torch.Tensor  # [U, rx, Sx] float64: window column -> pixel column
    sy: torch.Tensor  # [U]
    sx: torch.Tensor  # [U]
    cy: torch.Tensor  # [U] the cells
    cx: torch.Tensor  # [U]

    def select(self, idx: torch.Tensor) -> _Block:
        """The cells ``idx`` of this block."""
        return _Block(
            **{f: getattr(self, f)[idx] for f in ("rows", "cols", "valid", "wy", "wx", "sy", "sx", "cy", "cx")}
        )

    @cached_property
    def valid_at(self) -> torch.Tensor | None:
        """Flat positions of the valid pixels in ``[U, ry, rx]``; None when all are (cells of the image's interior).
        Found once per block: a boolean mask would search the block again for every value taken from it."""
        if bool(self.valid.all()):
            return None
        return torch.nonzero(self.valid.flatten()).flatten()

    def pixels(self, values: torch.Tensor) -> torch.Tensor:
        """``values [U, ry, rx]`` (or ``[U, ry * rx]``) at the valid pixels, flat, in the block's order (a view when
        every pixel is valid)."""
        at = self.valid_at
        return values.reshape(-1) if at is None else values.reshape(-1).index_select(0, at)

    def flat(self, width: int) -> torch.Tensor:
        """Flat pixel index of every valid pixel, in the block's ``[U, ry, rx]`` order."""
        return self.pixels(self.rows[:, :, None] * width + self.cols[:, None, :])


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
        self.band_elements = _BAND_ELEMENTS
        self.threads = 0  # native kernels' threads: 0 = torch's intra-op count

    def sharing(self, parts: int) -> CellGrid:
        """The same grid for one of ``parts`` merges that run at the same time (semantic beside panoptic): each gets
        that share of the band budget, so together they stay within one merge's peak memory, and of the threads of
        the native kernels."""
        grid = copy.copy(self)
        grid.band_elements = max(1, self.band_elements // parts)
        grid.threads = max(1, torch.get_num_threads() // parts)
        return grid

    @property
    def cell_pixels(self) -> torch.Tensor:
        """``[Cy, Cx]`` pixel count of each cell."""
        return self.y.cell_len[:, None] * self.x.cell_len[None, :]

    def bands(self, entities: int, rows: int | None = None) -> list[tuple[int, int]]:
        """Ranges of cell rows (at most ``rows`` each) whose ``entities x cells`` bound tables stay within the band
        budget."""
        step = max(1, self.band_elements // max(1, entities * self.shape[1]))
        step = step if rows is None else min(step, rows)
        return [(a, min(a + step, self.shape[0])) for a in range(0, self.shape[0], step)]

    def band_rows(self, c0: int, c1: int) -> tuple[int, int]:
        """Mask-grid rows read by cell rows ``c0..c1``."""
        return int(self.y.cell_start[c0]), int(self.y.cell_start[c1 - 1]) + self.y.window

    def area(self, table: torch.Tensor, c0: int, c1: int) -> torch.Tensor:
        """Pixels of the cells marked in ``table [E, c1 - c0, Cx]`` (bool), per entity: ``[E]`` long.

        Why not ``(table * cell_pixels).sum()``: that makes an int64 table of every entity and cell (~10x slower
        with 100 queries). Cells share one width except a few border columns, so each cell row's count is the width
        times a byte count plus those columns' corrections, then weighted by the row heights."""
        width, odd = self._column_layout
        per_row = table.view(torch.uint8).sum(2, dtype=torch.int64) * width  # [E, Cb]
        if odd.numel():
            per_row += (table.index_select(2, odd).long() * (self.x.cell_len[odd] - width)).sum(2)
        return (per_row * self.y.cell_len[c0:c1]).sum(1)  # elementwise: CUDA has no integer matrix products

    @cached_property
    def _column_layout(self) -> tuple[int, torch.Tensor]:
        """The common cell width and the columns of other widths (for :meth:`area`; found once per grid)."""
        width = int(torch.mode(self.x.cell_len).values)
        return width, torch.nonzero(self.x.cell_len != width).flatten()

    def window_max(self, values: torch.Tensor, c0: int, c1: int) -> torch.Tensor:
        """Max of ``values [E, rows of band, n_x]`` (mask-grid rows ``band_rows(c0, c1)``) over each cell's window:
        ``[E, c1 - c0, Cx]``."""
        return self._window_reduce(values, c0, c1, torch.maximum)

    def window_min(self, values: torch.Tensor, c0: int, c1: int) -> torch.Tensor:
        return self._window_reduce(values, c0, c1, torch.minimum)

    def _window_reduce(self, values: torch.Tensor, c0: int, c1: int, op: Callable) -> torch.Tensor:
        # Separable: the reduction at every window position by shifted slices, then each cell picks its position
        # (max_pool2d is ~10x slower on CPU; gathering the shifted copies first costs twice the memory traffic).
        e, _r, n_x = values.shape
        rows = self.y.cell_start[c0:c1] - self.band_rows(c0, c1)[0]
        npos = int(rows[-1]) + 1
        acc = values[:, :npos]
        for d in range(1, self.y.window):
            acc = op(acc, values[:, d : d + npos])
        acc = acc.index_select(1, rows).reshape(-1, n_x)  # a 2-D index_select is ~5x faster than a 3-D one
        npos = n_x - self.x.window + 1
        out = acc[:, :npos]
        for d in range(1, self.x.window):
            out = op(out, acc[:, d : d + npos])
        return out.index_select(1, self.x.cell_start).reshape(e, c1 - c0, -1)

    def block(self, cy: torch.Tensor, cx: torch.Tensor) -> _Block:
        """The pixels of cells ``(cy[u], cx[u])``."""
        y, x = self.y, self.x
        vy, vx = y.pixel_valid.index_select(0, cy), x.pixel_valid.index_select(0, cx)
        return _Block(
            rows=y.pixel.index_select(0, cy),
            cols=x.pixel.index_select(0, cx),
            valid=vy[:, :, None] & vx[:, None, :],
            wy=y.pixel_weights.index_select(0, cy),
            wx=x.pixel_weights.index_select(0, cx),
            sy=y.cell_start.index_select(0, cy),
            sx=x.cell_start.index_select(0, cx),
            cy=cy,
            cx=cx,
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

    def interpolate(self, win: torch.Tensor, blk: _Block) -> torch.Tensor:
        """Window values ``[U, A, Sy, Sx]`` -> the cells' pixel values ``[U, A, ry, rx]`` (float64).

        Separably, columns first then rows, like PyTorch's own bilinear kernel: ``Sx`` multiply-adds on ``[U, A, Sy,
        rx]`` and ``Sy`` on ``[U, A, ry, rx]`` instead of ``Sy * Sx`` on the latter (and no per-cell 2-D weight
        tables), and the same order of operations for every entity, so equal inputs give equal values."""
        win = win.to(EXACT)
        wx = blk.wx.transpose(1, 2)[:, None, None]  # [U, 1, 1, Sx, rx]
        rows = win[..., 0, None] * wx[..., 0, :]
        for i in range(1, self.x.window):
            rows.addcmul_(win[..., i, None], wx[..., i, :])  # [U, A, Sy, rx]
        wy = blk.wy.transpose(1, 2)[:, None, :, :, None]  # [U, 1, Sy, ry, 1]
        out = rows[:, :, 0, None, :] * wy[:, :, 0]
        for i in range(1, self.y.window):
            out.addcmul_(rows[:, :, i, None, :], wy[:, :, i])
        return out

    def probabilities(self, masks: torch.Tensor, entities: torch.Tensor, blk: _Block, order: str) -> torch.Tensor:
        """Exact per-pixel mask probabilities ``[U, A, ry, rx]`` of queries ``entities [U, A]`` in ``order``."""
        win = self.window(masks, entities, blk).to(EXACT)
        if order == "sigmoid_first":
            return self.interpolate(win.sigmoid(), blk)
        return self.interpolate(win, blk).sigmoid()

    def above(
        self, masks: torch.Tensor, entities: torch.Tensor, blk: _Block, order: str, threshold: float
    ) -> torch.Tensor:
        """``probabilities(...) >= threshold`` without per-pixel sigmoids where the order allows: in
        ``upsample_logits`` the test is on the interpolated logit against ``logit(threshold)`` (equal up to float64
        rounding at the threshold itself)."""
        if order == "sigmoid_first" or not 0.0 < threshold < 1.0:
            return self.probabilities(masks, entities, blk, order) >= threshold
        logit = self.interpolate(self.window(masks, entities, blk), blk)
        return logit >= math.log(threshold / (1.0 - threshold))

    def dense32(self, blk: _Block) -> torch.Tensor:
        """``[U, Sy * Sx, ry * rx]`` float32: each pixel's weight on each window point of the block's cells, for the
        first pass's batched products (window values ``[U, A, Sy * Sx]`` -> pixel values ``[U, A, ry * rx]``)."""
        table = self._weight_patterns
        if table is not None:
            patterns, row_at, col_at = table
            return patterns.index_select(0, row_at.index_select(0, blk.cy) + col_at.index_select(0, blk.cx))
        return _outer_weights(blk.wy, blk.wx)

    @cached_property
    def _weight_patterns(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None:
        """The distinct per-cell weight tables of each axis, their products (``[ny * nx, S, P]`` float32) and each
        cell row's / column's share of its index there (``pattern_y * nx``, ``pattern_x``); None when there are too
        many pairs to keep (a second, non-integer resize gives most cells their own weights). Why: with one resize
        the weights repeat every cell, and a per-block outer product of ``[ry, Sy]`` and ``[rx, Sx]`` tables (tiny
        inner dimensions) cost more than the products it serves."""
        y, x = self.y, self.x
        wy, iy = torch.unique(y.pixel_weights.flatten(1), dim=0, return_inverse=True)
        wx, ix = torch.unique(x.pixel_weights.flatten(1), dim=0, return_inverse=True)
        ny, nx = int(wy.shape[0]), int(wx.shape[0])
        if ny * nx * y.window * x.window * y.max_len * x.max_len > _PATTERN_ELEMENTS:
            return None
        wy = wy.view(ny, 1, y.max_len, y.window).expand(ny, nx, -1, -1).reshape(ny * nx, y.max_len, y.window)
        wx = wx.view(1, nx, x.max_len, x.window).expand(ny, nx, -1, -1).reshape(ny * nx, x.max_len, x.window)
        return _outer_weights(wy, wx), iy * nx, ix

    def window_points(
        self, values: torch.Tensor, cy: torch.Tensor, cx: torch.Tensor, r0: int = 0
    ) -> Iterator[torch.Tensor]:
        """``values [E, rows, n_x]`` (mask-grid rows from ``r0``) at each window point of cells ``(cy, cx)``
        (absolute cell rows): one ``[E, m]`` per point, by a flat ``index_select`` (~5x faster than indexing
        ``[E, rows, n_x]`` by two index lists)."""
        width = int(values.shape[2])
        corner = (self.y.cell_start[cy] - r0) * width + self.x.cell_start[cx]
        flat = values.reshape(values.shape[0], -1)
        for i in range(self.y.window):
            for j in range(self.x.window):
                yield flat.index_select(1, corner + (i * width + j))

    def first_pass(
        self, masks32: torch.Tensor, entities: torch.Tensor, blk: _Block, order: str
    ) -> tuple[torch.Tensor, float]:
        """Per-pixel probabilities ``[U, A, P]`` in float32 from ``masks32 [E, h, w]`` and a bound of their absolute
        error against exact arithmetic.

        Why: with many entities per cell (20-30 queries where overlapping duplicates meet) the exact per-pixel
        values (float64, elementwise in PyTorch's own order of operations, see :meth:`interpolate`) cost several
        times more than one batched product of the window values with the cells' dense weights. Callers keep the
        first pass's answer where it is farther than the error bound from a tie and evaluate the other cells
        exactly (with two or three entities per cell these tests cost more than they save). The bound: a float32
        sum of ``n`` products with non-negative weights summing to 1 (rounded to float32 themselves) is within ``(n
        + 2) u max|x|`` of the exact sum in any order of summation, the conversion of the logits to float32 adds
        ``u |x|``, the sigmoid's slope is at most 1/4 and its own float32 error at most ``_SIGMOID32``. Requires
        IEEE float32 products (:func:`ieee_float32_products`)."""
        win = self.window(masks32, entities, blk).flatten(2)  # [U, A, S]
        n = int(win.shape[2])
        big = float(win.abs().amax()) if win.numel() else 0.0
        if order == "sigmoid_first":
            return torch.bmm(win.sigmoid(), self.dense32(blk)), _SIGMOID32 + (0.25 * big + n + 2) * _EPS32
        logit = torch.bmm(win, self.dense32(blk)).sigmoid_()
        return logit, 0.25 * (n + 3) * _EPS32 * big + _SIGMOID32

    def expand(self, cell_values: torch.Tensor) -> torch.Tensor:
        """``[Cy, Cx]`` per-cell values -> ``[H, W]`` (each pixel takes its cell's value)."""
        # Columns first, on the small map: selecting along dim 1 of a full-height map is ~7x slower than this order,
        # whose second step copies whole rows.
        return cell_values.index_select(1, self.x.cell_of).index_select(0, self.y.cell_of)


def _outer_weights(wy: torch.Tensor, wx: torch.Tensor) -> torch.Tensor:
    """Row weights ``[U, ry, Sy]`` and column weights ``[U, rx, Sx]`` (float64) -> ``[U, Sy * Sx, ry * rx]`` float32:
    pixel ``(i, j)``'s weight on window point ``(a, b)`` is ``wy[i, a] * wx[j, b]``."""
    u, ry, sy = wy.shape
    rx, sx = wx.shape[1:]
    # One batched outer product of the flattened tables ([sy, ry] x [sx, rx]), then the window axes first.
    both = torch.bmm(wy.transpose(1, 2).reshape(u, -1, 1), wx.transpose(1, 2).reshape(u, 1, -1))
    return both.view(u, sy, ry, sx, rx).permute(0, 1, 3, 2, 4).reshape(u, sy * sx, ry * rx).float()


def _float32_at_least(x: float) -> float:
    """The smallest float32 value ``>= x`` (as a Python float): compared with a float32 tensor it does not round."""
    v = torch.tensor(x, dtype=torch.float32)
    return (v if v.item() >= x else torch.nextafter(v, v.new_tensor(math.inf))).item()


def _float32_at_most(x: float) -> float:
    """The largest float32 value ``<= x``."""
    return -_float32_at_least(-x)


def ieee_float32_products(device: torch.device) -> bool:
    """Whether float32 matrix products on ``device`` keep IEEE single precision (the first pass's error bounds assume
    it): not when a user allowed TF32 or bfloat16 shortcuts for them."""
    cuda = torch.device(device).type == "cuda"
    backend = torch.backends.cuda.matmul if cuda else getattr(torch.backends.mkldnn, "matmul", None)
    precision = getattr(backend, "fp32_precision", None)  # PyTorch >= 2.9; older ones: the global setting
    if precision is None and torch.get_float32_matmul_precision() != "highest":
        return False
    if precision not in (None, "none", "ieee"):
        return False
    return not (cuda and torch.backends.cuda.matmul.allow_tf32)


def _chunks(n: int, per_item: int) -> list[tuple[int, int]]:
    step = max(1, _CHUNK_ELEMENTS // max(1, per_item))
    return [(a, min(a + step, n)) for a in range(0, n, step)]


def _candidate_lists(cand: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``[U, E]`` bool -> ascending entity indices ``[U, C]`` (C = most candidates of any row) and their validity."""
    # Each candidate's place in its row is the running count before it; the rest go to a spare column. Padding
    # entries are 0 (any entity): callers mask them with ``valid``. (A stable sort of the rows cost ~4x more.)
    u, e = cand.shape
    count = cand.sum(1)
    c = max(1, int(count.max()))
    place = torch.where(cand, torch.cumsum(cand, 1) - 1, c)
    lists = torch.zeros((u, c + 1), dtype=torch.long, device=cand.device)
    lists.scatter_(1, place, torch.arange(e, device=cand.device).expand(u, e))
    valid = torch.arange(c, device=cand.device)[None, :] < count[:, None]
    return lists[:, :c], valid


Evaluate = Callable[[_Block, torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor | None]]


def _resolve(
    dec: _Decision | _TieredDecision,
    undecided: torch.Tensor,
    cells: CellGrid,
    c0: int,
    evaluate: Evaluate,
    per_item: Callable[[int], int],
) -> Iterator[tuple[_Block, torch.Tensor, torch.Tensor, torch.Tensor | None]]:
    """Exact per-pixel winners of the ``undecided [Cb, Cx]`` cells of a band starting at cell row ``c0``: chunks of
    ``(pixels, entities [U, C], pick [U, P], aux)``, the winner of pixel ``p`` of cell ``u`` being
    ``entities[u, pick[u, p]]``.

    ``evaluate(block, entities [U, C], valid [U, C])`` returns per-pixel values ``[U, C, P]`` whose first maximum
    over the valid entities is the exact one and whose maximum does not exceed the true maximum, plus optional
    ``aux`` of the same shape. Bounds rarely leave one candidate at a boundary (two masks crossing leave every
    entity's lower bound near zero), but the two entities with the highest upper bounds usually own every pixel: they
    are evaluated first, and any other candidate whose upper bound is below the lowest per-pixel maximum found can
    never win; cells where one could are evaluated again with all remaining candidates."""
    cy, cx = torch.nonzero(undecided, as_tuple=True)
    if cy.numel() == 0:
        return
    table, upper, ids = dec.rows(cy, cx)  # [U, E'] over the entities ids (ascending: first maximum kept)
    upper = torch.where(table, upper, -torch.inf)
    first = upper.topk(min(2, upper.shape[1]), dim=1).indices.sort(1).values
    fvalid = table.gather(1, first)
    first_ids = first if ids is None else ids[first]
    for a, b in _chunks(int(cy.numel()), per_item(int(first.shape[1]))):
        blk = cells.block(cy[a:b] + c0, cx[a:b])
        values, aux = evaluate(blk, first_ids[a:b], fvalid[a:b])
        every_valid = bool(fvalid[a:b].all())  # two candidates or more everywhere: no masking
        top = (values if every_valid else torch.where(fvalid[a:b, :, None], values, -torch.inf)).amax(1)
        floor = torch.where(blk.valid.flatten(1), top, torch.inf).amin(1)  # [U]
        more = table[a:b] & (upper[a:b].to(EXACT) >= (floor - _ABS_MARGIN)[:, None])
        more.scatter_(1, first[a:b], False)
        again = more.any(1)
        redo = torch.nonzero(again).flatten()
        if redo.numel() == 0:  # the usual case: no copies of the chunk
            yield blk, first_ids[a:b], _first_max(values, fvalid[a:b]), aux
            continue
        done = torch.nonzero(~again).flatten()
        if done.numel():
            pick = _first_max(values[done], fvalid[a:b][done])
            yield blk.select(done), first_ids[a:b][done], pick, None if aux is None else aux[done]
        full = more[redo].scatter(1, first[a:b][redo], fvalid[a:b][redo])  # the rest and the first two
        # Lists padded per group of similar length, not to the chunk's longest (see _count_groups).
        for members in _count_groups(full.sum(1)):
            ents, valid = _candidate_lists(full[members])
            ents = ents if ids is None else ids[ents]
            for a2, b2 in _chunks(int(members.numel()), per_item(int(ents.shape[1]))):
                sub = blk.select(redo[members[a2:b2]])
                values, aux = evaluate(sub, ents[a2:b2], valid[a2:b2])
                yield sub, ents[a2:b2], _first_max(values, valid[a2:b2]), aux


def native_threads(cells: CellGrid) -> int:
    """Threads of one native kernel call: the grid's share (:meth:`CellGrid.sharing`: semantic and panoptic side by
    side), else torch's intra-op count."""
    return cells.threads or max(1, torch.get_num_threads())


def _label_dtype(k: int) -> torch.dtype:
    """The smallest integer type that holds ``k`` class labels: the full-resolution map is the merge's largest
    tensor."""
    return torch.uint8 if k <= 255 else torch.int32


def _count_groups(counts: torch.Tensor) -> Iterator[torch.Tensor]:
    """Row indices grouped by ``counts`` rounded up to a power of two (at least 4): padded per-row lists of one group
    are at most twice as long as their longest member needs (overlapping duplicate queries leave 3 candidates in
    one cell and 30 in the next)."""
    group = torch.log2(counts.clamp(min=4).double()).ceil().long()
    for g in torch.unique(group).tolist():
        yield torch.nonzero(group == g).flatten()


def _first_max(values: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """Index along dim 1 of the first maximum of ``values [U, C, ...]`` among valid ``[U, C]`` entries."""
    shape = valid.shape + (1,) * (values.dim() - 2)
    if values.shape[1] == 2:  # the two best candidates (most calls): one comparison instead of max-with-indices
        per_pixel = shape[:1] + shape[2:]
        v0, v1 = valid[:, 0].reshape(per_pixel), valid[:, 1].reshape(per_pixel)
        return (v1 & ((values[:, 1] > values[:, 0]) | ~v0)).long()
    masked = torch.where(valid.reshape(shape), values, torch.full_like(values, -torch.inf))
    return masked.max(1).indices


@dataclass
class _Decision:
    """Per band: ``winner [Cb, Cx]`` (-1 where undecided), candidate table ``[E, Cb, Cx]``, the widened upper
    bounds (at least every true value in the cell) and the widened best lower bound ``[Cb, Cx]``."""

    winner: torch.Tensor
    cand: torch.Tensor
    upper: torch.Tensor
    best: torch.Tensor

    def rows(self, cy: torch.Tensor, cx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """Candidates ``[U, E']`` and upper bounds ``[U, E']`` of cells ``(cy, cx)`` (band-local) over the entities
        ``ids [E']`` (ascending; None = all ``E``, in order)."""
        return self.cand[:, cy, cx].t(), self.upper[:, cy, cx].t(), None


@dataclass
class _TieredDecision:
    """A band decided by some entities (``major``, ascending: the classes that can score high, or the queries that
    reach the band; ``part`` in their index space) where their best lower bound beats every other entity's reach, and
    over all entities (``rest``, one column per cell listed in ``slot [Cb, Cx]``, else -1) where it does not. Same
    ``winner`` / ``rows`` as :class:`_Decision`, in entity ids."""

    winner: torch.Tensor
    part: _Decision
    major: torch.Tensor
    slot: torch.Tensor
    rest: _Decision | None

    @staticmethod
    def of(
        winner: torch.Tensor,
        ok: torch.Tensor,
        part: _Decision,
        major: torch.Tensor,
        cell_bounds: Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]],
        rel: float,
    ) -> _TieredDecision:
        """The band's decision given the winners so far (entity ids, -1 = open) and ``ok [Cb, Cx]`` (where the major
        entities' decision holds): the open cells that are not ok are decided over all entities from
        ``cell_bounds(cy, cx) -> (lower, upper) [E, m]`` (``winner`` is updated in place)."""
        fy, fx = torch.nonzero((winner < 0) & ~ok, as_tuple=True)
        slot = torch.full(winner.shape, -1, dtype=torch.long, device=winner.device)
        rest = None
        if fy.numel():
            slot[fy, fx] = torch.arange(int(fy.numel()), device=winner.device)
            rest = _decide(*cell_bounds(fy, fx), rel)
            winner[fy, fx] = rest.winner
        return _TieredDecision(winner=winner, part=part, major=major, slot=slot, rest=rest)

    def rows(self, cy: torch.Tensor, cx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        # Columns: the major classes and the classes that are candidates in the listed cells decided over all
        # classes - not all K (150 columns for the ~3-10 that can win: building and searching them cost more than
        # the rest of the table work).
        major_table, major_upper, _ = self.part.rows(cy, cx)
        pos = self.slot[cy, cx]
        redo = torch.nonzero(pos >= 0).flatten()
        if redo.numel() == 0 or self.rest is None:
            return major_table, major_upper, self.major
        at = pos[redo]
        rest_cand = self.rest.cand.index_select(1, at)  # [K, r]
        ids = torch.unique(torch.cat([self.major, torch.nonzero(rest_cand.any(1)).flatten()]))  # sorted
        u, e = int(cy.numel()), int(ids.numel())
        table = torch.zeros((u, e), dtype=torch.bool, device=cy.device)
        upper = torch.full((u, e), -torch.inf, dtype=major_upper.dtype, device=cy.device)
        cols = torch.searchsorted(ids, self.major)
        table[:, cols], upper[:, cols] = major_table, major_upper
        table[redo] = rest_cand.index_select(0, ids).t()
        upper[redo] = self.rest.upper.index_select(0, ids).index_select(1, at).t()
        return table, upper, ids


def _decide(lower: torch.Tensor, upper: torch.Tensor, rel: float) -> _Decision:
    """Float32 bounds ``[E, Cb, Cx]`` (relative error ``rel``; ``upper`` is widened in place) -> candidates (upper
    bound reaches the best lower bound) and decided winners (one candidate: its lower bound beats every other upper
    bound by > 2 margins)."""
    # Widening is monotonic (float rounding included), so the best widened lower bound is the widened best one: one
    # [Cb, Cx] widening instead of [E, Cb, Cx]; the upper bounds (fresh tensors of the callers) are widened in place.
    # The entity with the best lower bound is always a candidate (its widened upper bound >= its lower bound >= the
    # widened best), so a cell with one candidate is won by that one: its index is the index sum of the candidates
    # there. amax and narrow integer sums are ~10x cheaper than max-with-indices / argmax over E on the CPU; the
    # index sum may wrap where several entities are candidates, but it is only read where there is one.
    best = _widen_low(lower.amax(0), rel)
    upper = upper.mul_(1.0 + rel).add_(_ABS_MARGIN)
    cand = upper >= best
    small = torch.int16 if cand.shape[0] < 2**15 else torch.int32
    count = cand.sum(0, dtype=small)
    ids = torch.arange(cand.shape[0], dtype=small, device=cand.device).reshape((-1,) + (1,) * (cand.dim() - 1))
    index = (cand * ids).sum(0, dtype=small)
    return _Decision(winner=torch.where(count == 1, index.long(), -1), cand=cand, upper=upper, best=best)


def _corner_winners(
    grid_values: torch.Tensor, slack: torch.Tensor, rel: float, cells: CellGrid, c0: int, c1: int
) -> torch.Tensor:
    """Linear quantities on the band's grid, known as ``[grid_values, grid_values + slack]`` (``[E, rows, n_x]``
    float32, relative error ``rel``; ``slack [E]``): the entity whose lower value beats every other entity's upper
    value at every window point (it then wins at every pixel of the cell), else -1."""
    if grid_values.shape[0] == 1:
        return torch.zeros((c1 - c0, cells.shape[1]), dtype=torch.long, device=grid_values.device)
    # At each grid point, the same test as a cell's (_decide): one candidate = its lower value beats every other
    # upper value. The cell is decided when every window point has the same such winner.
    point = _decide(grid_values, grid_values + slack[:, None, None], rel).winner.to(grid_values.dtype)[None]
    low, high = cells.window_min(point, c0, c1)[0], cells.window_max(point, c0, c1)[0]
    return torch.where((low == high) & (low >= 0), high.long(), -1)


# ------------------------------------------------------------------------------------------------ semantic
@dataclass
class _BandProbs:
    """What bounds the live queries' probabilities in a band of cells ``c0..c1`` (mask-grid rows from ``r0``):
    ``sigmoid_first``: the probabilities at the grid points (``grid [n, rows, n_x]``; class scores are linear in
    them); ``upsample_logits``: each cell's probability bounds ``low`` / ``high [n, Cb, Cx]``."""

    cells: CellGrid
    c0: int
    c1: int
    r0: int
    grid: torch.Tensor | None = None
    low: torch.Tensor | None = None
    high: torch.Tensor | None = None

    def bounds(self, p: torch.Tensor, slack: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """Lower and upper bounds ``[E, Cb, Cx]`` of the scores ``p [n, E]`` (float32; ``slack [E]`` added to the
        upper ones) in every cell, and (``sigmoid_first``) the scores at the grid points ``[E, rows, n_x]``."""
        n, e = p.shape
        if self.grid is not None:
            scores = (p.t() @ self.grid.reshape(n, -1)).reshape(e, self.grid.shape[1], -1)
            upper = self.cells.window_max(scores, self.c0, self.c1) + slack[:, None, None]
            return self.cells.window_min(scores, self.c0, self.c1), upper, scores
        shape = (e, *self.low.shape[1:])
        lower = (p.t() @ self.low.reshape(n, -1)).reshape(shape)
        return lower, (p.t() @ self.high.reshape(n, -1)).reshape(shape) + slack[:, None, None], None

    def cell_bounds(
        self, p: torch.Tensor, slack: torch.Tensor, cy: torch.Tensor, cx: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The same bounds ``[E, m]`` for the band's cells ``(cy, cx)`` only (cell rows relative to ``c0``)."""
        if self.grid is None:  # flat index_select: ~5x faster than indexing [n, Cb, Cx] by two index lists
            width = int(self.low.shape[2])
            at = cy * width + cx
            low, high = (t.reshape(t.shape[0], -1).index_select(1, at) for t in (self.low, self.high))
            return p.t() @ low, p.t() @ high + slack[:, None]
        points = self.cells.window_points(self.grid, cy + self.c0, cx, self.r0)
        at = torch.stack([p.t() @ v for v in points])  # the scores at each window point: [Sy * Sx, E, m]
        return at.amin(0), at.amax(0) + slack[:, None]


def _major_classes(reach: torch.Tensor) -> torch.Tensor | None:
    """The classes whose ``reach`` (an upper bound of the class's score at every pixel) is at least ``_MAJOR``, when
    there are many classes but few of these (a frame shows a handful of ADE20K's 150); else None (one table)."""
    k = int(reach.numel())
    major = torch.nonzero(reach >= _MAJOR).flatten()
    if k < _MAJOR_MIN_CLASSES or major.numel() == 0 or int(major.numel()) > k // 4:
        return None
    return major


def semantic_labels(
    class_probs: torch.Tensor, masks: torch.Tensor, cells: CellGrid, order: str, max_undecided: float = 1.0
) -> torch.Tensor | None:
    """Exact ``argmax_k sum_q class_probs[q, k] * prob_q`` at every pixel: ``[H, W]`` labels (uint8, or int32 for
    more than 255 classes); ``None`` when the bounds leave more than ``max_undecided`` of the pixels open (masks
    without spatial structure: per-pixel work here then costs more than the dense merge).

    ``class_probs [Q, K]`` float64 (softmax without no-object), ``masks [Q, h, w]`` mask logits."""
    q, k = class_probs.shape
    rel = float32_error(q)
    # Queries that add less than _PRUNE to any class score anywhere (no-object queries, masks off everywhere) are
    # left out of the bounds and accounted for by a per-class slack: most of a typical frame's queries.
    peak = masks.flatten(1).amax(1).to(EXACT).sigmoid()  # [Q] largest probability of each query
    live = peak * class_probs.amax(1) > _LIVE
    if not bool(live.any()):  # nothing but faint queries: no slack, every query per pixel
        live = torch.ones_like(live)
    # Index lists, not boolean masks: selecting ~90 of 100 mask maps by a mask cost ~4x more.
    live_at, faint_at = torch.nonzero(live).flatten(), torch.nonzero(~live).flatten()
    p_faint = class_probs.index_select(0, faint_at)
    dead = (p_faint * peak.index_select(0, faint_at)[:, None]).sum(0)  # [K] >= what the faint queries add to a score
    slack = _widen_high(dead, 1e-12).float()
    # Per cell the faint queries add far less than ``dead`` (which takes each one's largest probability anywhere):
    # at most their summed class probabilities times the sigmoid of their largest logit in the cell's window. One
    # envelope map of the faint logits gives that bound; per-pixel safety tests use it (with ``dead`` they failed
    # on ~1 % of the boundary cells, each then evaluated with every query).
    envelope = masks.index_select(0, faint_at).amax(0).float() if faint_at.numel() else None  # [h, w]
    dead_probs = p_faint.sum(0)  # [K]
    p_live = class_probs.index_select(0, live_at)  # [L, K]
    # ADE20K's 150 classes, of which a frame shows a handful: the classes that can score at least _MAJOR somewhere
    # decide every cell whose best lower bound beats the reach of all others; the rest (boundaries, where every lower
    # bound is near zero) take bounds over all classes, for those cells only.
    reach = (p_live * peak.index_select(0, live_at)[:, None]).sum(0) + dead  # [K] >= every score of the class
    major = _major_classes(reach)
    beyond = math.inf
    if major is not None:
        others = reach.clone()
        others[major] = 0.0
        beyond = float(_widen_high(others.amax(), 1e-9))
    if native.available_for(masks):  # the whole merge in C (same labels; see native.py)
        tier = (major, beyond)
        return _semantic_native(
            class_probs, masks, cells, order, max_undecided, live_at, dead, dead_probs, envelope, tier
        )
    m_live = masks.index_select(0, live_at)  # [L, h, w]
    live_probs, p32, m32 = p_live.t().contiguous(), p_live.float(), m_live.float()
    fast = m32 if ieee_float32_products(masks.device) else None  # the per-pixel first pass (CellGrid.first_pass)
    label_dtype = _label_dtype(k)
    cell_label = torch.empty(cells.shape, dtype=label_dtype, device=masks.device)
    pix_idx, pix_val = [], []
    ppc = cells.y.max_len * cells.x.max_len
    # Band size: the class tables and the live queries' per-cell tables both stay within the band budget.
    tables = max(k if major is None else int(major.numel()) + 1, int(p32.shape[0]))
    bands, undecided = [], 0
    for c0, c1 in cells.bands(tables):
        r0, r1 = cells.band_rows(c0, c1)
        band = m32[:, r0:r1]
        hi_logit = cells.window_max(band, c0, c1)  # bounds every probability in a cell (both orders)
        faint_hi = None if envelope is None else cells.window_max(envelope[None, r0:r1], c0, c1)[0]
        if order == "sigmoid_first":
            probs = _BandProbs(cells, c0, c1, r0, grid=band.sigmoid())
        else:
            probs = _BandProbs(cells, c0, c1, r0, low=cells.window_min(band, c0, c1).sigmoid(), high=hi_logit.sigmoid())
        if major is None:
            lower, upper, scores = probs.bounds(p32, slack)
            dec = _decide(lower, upper, rel)
            winner = dec.winner
            if scores is not None:
                corner = _corner_winners(scores, slack, rel, cells, c0, c1)
                winner = torch.where(corner >= 0, corner, winner)
        else:
            lower, upper, scores = probs.bounds(p32[:, major], slack[major])
            part = _decide(lower, upper, rel)
            ok = part.best > beyond
            winner = torch.where(ok & (part.winner >= 0), major[part.winner.clamp(min=0)], -1)
            if scores is not None:
                # The other classes as one more entity valued in [0, beyond] at every window point.
                n_major = int(major.numel())
                zero = scores.new_zeros((1, *scores.shape[1:]))
                extra = torch.cat([slack[major], slack.new_tensor([beyond])])
                corner = _corner_winners(torch.cat([scores, zero]), extra, rel, cells, c0, c1)
                known = (corner >= 0) & (corner < n_major)
                winner = torch.where(known, major[corner.clamp(0, n_major - 1)], winner)
            dec = _TieredDecision.of(winner, ok, part, major, partial(probs.cell_bounds, p32, slack), rel)
            winner = dec.winner
        cell_label[c0:c1] = winner.clamp(min=0)  # undecided cells are overwritten per pixel below
        undecided += int((cells.cell_pixels[c0:c1] * (winner < 0)).sum())
        bands.append((c0, dec, winner, hi_logit, faint_hi))
    if undecided > max_undecided * cells.size[0] * cells.size[1]:
        return None
    for c0, dec, winner, hi_logit, faint_hi in bands:

        def evaluate(
            blk: _Block,
            cand: torch.Tensor,
            valid: torch.Tensor,
            hi_logit: torch.Tensor = hi_logit,
            faint_hi: torch.Tensor | None = faint_hi,
            c0: int = c0,
        ) -> tuple[torch.Tensor, None]:
            # Only the live queries enter the per-cell tables ([U, C, live], not [U, C, Q]: a typical frame has ~8 of
            # 100); the others are bounded per cell and candidate by ``outside [U, C]`` (both bounds hold; the
            # smaller is taken).
            outside = dead[cand]
            if faint_hi is not None:
                env = faint_hi[blk.cy - c0, blk.cx].to(EXACT).sigmoid()  # [U]
                outside = torch.minimum(outside, dead_probs[cand] * env[:, None])

            def every(
                idx: torch.Tensor, cand: torch.Tensor = cand, blk: _Block = blk, outside: torch.Tensor = outside
            ) -> torch.Tensor:
                # Two steps: every live query (the faint ones bounded), then every query where candidates are
                # within the faint queries' bound of each other (a few cells on a boundary). A handful of cells go
                # to every query at once: there the first step's fixed cost is most of the work.
                sub, m = blk.select(idx), int(idx.numel())
                ents = cand[idx]

                def all_queries(j: torch.Tensor) -> torch.Tensor:
                    allq = torch.arange(q, device=cand.device).expand(int(j.numel()), q)
                    return _class_values(masks, class_probs.t()[ents[j]], allq, sub.select(j), cells, order)

                if m * q * ppc * int(ents.shape[1]) <= _SMALL_PRODUCT:
                    return all_queries(torch.arange(m, device=cand.device))
                n_live = int(m_live.shape[0])
                lq = torch.arange(n_live, device=cand.device).expand(m, n_live)
                values = _class_values(m_live, live_probs[ents], lq, sub, cells, order)
                tied = _unsafe_cells(values, valid[idx], _widen_high(outside[idx], 1e-9), sub)
                if bool(tied.any()):
                    j = torch.nonzero(tied).flatten()
                    values[j] = all_queries(j)
                return values

            pc = live_probs[cand]  # [U, C, live]
            if order == "sigmoid_first":
                return _class_values_linear(m_live, pc, valid, blk, cells, outside, every), None
            # upsample_logits: per-pixel probabilities of the queries that matter in the cell, the rest bounded.
            hi = hi_logit[:, blk.cy - c0, blk.cx].t().to(EXACT).sigmoid()  # [U, live] bound of each probability
            return _class_values_pruned(m_live, pc, valid, hi, blk, cells, order, outside, every, fast), None

        def per_cell(c: int) -> int:
            return q * cells.y.window * cells.x.window + c * q + c * ppc

        for blk, cand, pick, _aux in _resolve(dec, winner < 0, cells, c0, evaluate, per_cell):
            pix_idx.append(blk.flat(cells.size[1]))
            pix_val.append(blk.pixels(cand.gather(1, pick)).to(label_dtype))
    labels = cells.expand(cell_label)
    if pix_idx:
        labels.view(-1)[torch.cat(pix_idx)] = torch.cat(pix_val)
    return labels


def _semantic_native(
    class_probs: torch.Tensor,
    masks: torch.Tensor,
    cells: CellGrid,
    order: str,
    max_undecided: float,
    live_at: torch.Tensor,
    dead: torch.Tensor,
    dead_probs: torch.Tensor,
    envelope: torch.Tensor | None,
    tier: tuple[torch.Tensor | None, float],
) -> torch.Tensor | None:
    """:func:`semantic_labels` by the native kernels (the same labels): every cell decided in C from float64 bounds of
    the live queries near it (window max >= ``_FAR_LOGIT``; the far ones together, the others through ``dead`` /
    ``envelope`` as in the tensor path; ``tier``: the major classes and what bounds every other class, see
    :func:`_major_classes`), per-pixel work in the cells left open."""
    k = int(class_probs.shape[1])
    kernels = native.SemanticKernels(
        masks.float().contiguous(),
        class_probs.contiguous(),
        live_at.contiguous(),
        dead,
        dead_probs,
        None if envelope is None else envelope.contiguous(),
        tier,
        order == "sigmoid_first",
        _PRUNE,
        _FAR_LOGIT,
        cells,
        native_threads(cells),
    )
    budget = math.floor(max_undecided * cells.size[0] * cells.size[1])
    done = kernels.labels(budget, _label_dtype(k))
    return None if done is None else done[0]


def _class_values(masks: torch.Tensor, pc: torch.Tensor, queries: torch.Tensor, blk: _Block, cells: CellGrid,
                  order: str, listed: torch.Tensor | None = None) -> torch.Tensor:  # fmt: skip
    """``[U, C, ry*rx]`` sums ``pc[u, c, q] * prob_q`` over the distinct ``queries [U, A]`` (those with
    ``listed [U, A]`` when given: the others are padding)."""
    probs = cells.probabilities(masks, queries, blk, order).flatten(2)  # [U, A, P]
    return _weighted_sum(_query_weights(pc, queries, listed), probs)


def _query_weights(pc: torch.Tensor, queries: torch.Tensor, listed: torch.Tensor | None) -> torch.Tensor:
    """``pc [U, C, Q]`` at ``queries [U, A]`` -> ``[U, C, A]``, zero where not ``listed``."""
    weights = pc.gather(2, queries[:, None, :].expand(-1, pc.shape[1], -1))
    return weights if listed is None else weights * listed[:, None, :]


def _weighted_sum(weights: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
    """``[U, C, A] x [U, A, P] -> [U, C, P]``, summing over A in the same order for every C. A batched matmul does
    not: BLAS kernels may accumulate two identical rows differently, which would break exact ties (two classes or
    queries with the same inputs must tie, and the first wins)."""
    # Large blocks: one multiply-add per term over the whole [U, C, P] block, no [U, C, A, P] intermediate (memory
    # traffic). Small blocks with many terms (a few cells with every query): one broadcast product and sum, because
    # there a Python loop of A tiny ops costs more than the arithmetic. Either way every element of one call sees
    # the same order of operations.
    u, c, a = weights.shape
    if u * c * a * values.shape[2] <= _SMALL_PRODUCT:
        return (weights[:, :, :, None] * values[:, None]).sum(2)
    out = weights[:, :, 0, None] * values[:, None, 0]
    for i in range(1, a):
        out.addcmul_(weights[:, :, i, None], values[:, None, i])
    return out


def _class_values_pruned(
    masks: torch.Tensor,
    pc: torch.Tensor,
    valid: torch.Tensor,
    hi: torch.Tensor,
    blk: _Block,
    cells: CellGrid,
    order: str,
    outside: torch.Tensor,
    every: Callable[[torch.Tensor], torch.Tensor],
    fast: torch.Tensor | None = None,
) -> torch.Tensor:
    """Candidate class scores ``[U, C, P]`` whose first maximum is the exact one (either mask order) and whose
    maximum does not exceed the exact one.

    Per cell only the queries that can add more than ``_PRUNE`` to a candidate are evaluated per pixel; the others
    add at most ``slack[c] = sum_q pc[c, q] * hi[q] + outside[c]`` (``hi`` bounds the query's probability in the
    cell, ``outside [U, C]`` what the queries not in ``pc`` can add). A pixel whose winner beats every other
    candidate by more than that candidate's slack has the exact winner; cells with a pixel that does not (about 1 %
    of them in a typical frame) are evaluated with every query (``every(cells) -> [m, C, P]``).

    ``fast`` (``masks`` in float32): the scores come from the float32 first pass (:meth:`CellGrid.first_pass`),
    lowered by their error bound ``e [U, C]``; the winner must then also beat every other candidate's ``+ 2e``."""
    pcv = pc * valid[:, :, None]
    active = hi * pcv.amax(1) > _PRUNE  # [U, Q]
    queries, listed = _candidate_lists(active)
    slack = (pcv * (hi * ~active)[:, None, :]).sum(2) + outside  # [U, C]
    if fast is None:
        values = _class_values(masks, pc, queries, blk, cells, order, listed)
    else:
        weights = _query_weights(pc, queries, listed)
        probs, err = cells.first_pass(fast, queries, blk, order)
        values = torch.bmm(weights.float(), probs).double()
        # Each score: float32 weights (relative u) times probabilities within err of the exact ones, summed in
        # float32 (A terms, non-negative, each probability <= 1): within sum(weights) * (err + (A + 3) u).
        e = weights.sum(2) * (err + (int(weights.shape[2]) + 3) * _EPS32)
        values -= e[:, :, None]
        slack = slack + 2.0 * e
    unsafe = _unsafe_cells(values, valid, _widen_high(slack, 1e-9), blk)
    if bool(unsafe.any()):
        idx = torch.nonzero(unsafe).flatten()
        values[idx] = every(idx)
    return values


def _class_values_linear(
    masks: torch.Tensor,
    pc: torch.Tensor,
    valid: torch.Tensor,
    blk: _Block,
    cells: CellGrid,
    outside: torch.Tensor,
    every: Callable[[torch.Tensor], torch.Tensor],
) -> torch.Tensor:
    """``sigmoid_first``: candidate class scores ``[U, C, P]`` whose first maximum is the exact one, interpolated from
    the class scores at the window points instead of summed per pixel over the queries.

    Why: in this order a class score is linear in the resized probabilities, so it is the interpolation of the
    class's score on the mask grid: per-pixel work grows with the candidates (~2), not with the queries that add to
    them (~3 in a typical frame, 20-30 where overlapping duplicates meet). The sums run in another order than the
    dense computation's (float64 rounding, ~1e-15 apart), and ``masks`` are the live queries only (the others add at
    most ``outside [U, C]``), so a pixel's winner is taken only where it beats every other candidate by more than
    that and a 1e-9 margin; cells with a pixel that does not (near-ties, exact ties included) are evaluated with the
    dense order of operations (``every(cells) -> [m, C, P]``)."""
    u, n = int(pc.shape[0]), int(masks.shape[0])
    win = cells.window(masks, torch.arange(n, device=pc.device).expand(u, n), blk).to(EXACT).sigmoid()
    sy, sx = int(win.shape[2]), int(win.shape[3])
    at = torch.bmm(pc, win.reshape(u, n, sy * sx)).reshape(u, -1, sy, sx)  # [U, C, Sy, Sx] at the window points
    values = cells.interpolate(at, blk).flatten(2)
    unsafe = _unsafe_cells(values, valid, _widen_high(outside, 1e-9), blk)
    if bool(unsafe.any()):
        idx = torch.nonzero(unsafe).flatten()
        values[idx] = every(idx)
    return values


def _unsafe_cells(values: torch.Tensor, valid: torch.Tensor, slack: torch.Tensor, blk: _Block) -> torch.Tensor:
    """``[U]``: cells with a pixel whose first maximum of ``values [U, C, P]`` (valid ``[U, C]`` entries) does not beat
    every other candidate's value plus its ``slack [U, C]``."""
    every_valid = bool(valid.all())
    if values.shape[1] == 2 and every_valid:
        # The two best candidates (most calls): whichever wins must beat the other plus its slack; the loser's test
        # can never pass (slack >= 0), so one "or" replaces the first-maximum search and the masked maximum.
        v0, v1 = values[:, 0], values[:, 1]
        safe = (v1 > v0 + slack[:, 0, None]) | (v0 > v1 + slack[:, 1, None])
    else:
        pick = _first_max(values, valid)[:, None]  # [U, 1, P]
        others = values + slack[:, :, None]
        if not every_valid:
            others = torch.where(valid[:, :, None], others, -torch.inf)
        safe = values.gather(1, pick)[:, 0] > others.scatter_(1, pick, -torch.inf).amax(1)  # [U, P]
    if blk.valid_at is not None:
        safe |= ~blk.valid.flatten(1)
    return ~safe.all(1)


# ------------------------------------------------------------------------------------------------ panoptic
@dataclass
class PanopticCells:
    """What the panoptic rules need, measured exactly at full resolution without full-resolution scores.

    ``won`` / ``fin`` / ``orig`` (per kept query): pixels where it wins, where it wins and owns the pixel (its
    probability >= mask_threshold), and where its probability >= mask_threshold. ``orig`` is exact wherever the
    overlap rule (``won / orig`` against ``overlap``, see :func:`panoptic_cells`) can depend on it; elsewhere it is
    one of its bounds, which decides the rule the same way. Decided cells keep one winner and an all-owned flag; the
    per-pixel ``(index, winner, owned)`` records cover undecided cells and decided cells whose winner's mask edge
    crosses them."""

    won: torch.Tensor
    fin: torch.Tensor
    orig: torch.Tensor
    cell_winner: torch.Tensor
    cell_owned: torch.Tensor
    cell_pixelwise: torch.Tensor  # [Cy, Cx] cells whose every pixel has a per-pixel record
    pix_idx: torch.Tensor
    pix_win: torch.Tensor
    pix_own: torch.Tensor
    cells: CellGrid
    _pixel_ids: tuple[torch.Tensor, torch.Tensor] | None = field(default=None, repr=False, compare=False)

    def pixel_ids(self, lut: torch.Tensor) -> torch.Tensor:
        """The per-pixel records' segment ids (int64, 0 = not owned or dropped), kept for the last ``lut``: the id
        map and the segment table both read them (~100k records in a crowded frame)."""
        if self._pixel_ids is None or self._pixel_ids[0] is not lut:
            self._pixel_ids = (lut, torch.where(self.pix_own, lut.long()[self.pix_win], 0))
        return self._pixel_ids[1]

    def id_map(self, lut: torch.Tensor) -> torch.Tensor:
        """``[H, W]`` int32 segment ids given ``lut`` (kept query -> segment id, 0 = dropped)."""
        cell_ids = torch.where(self.cell_owned, lut[self.cell_winner.clamp(min=0)], 0)
        ids = self.cells.expand(cell_ids.to(torch.int32))
        ids.view(-1)[self.pix_idx] = self.pixel_ids(lut).to(torch.int32)
        return ids

    def segment_stats(self, lut: torch.Tensor, n: int) -> dict[str, list]:
        """Area, centroid and box of segments ``1..n`` of :meth:`id_map` (same keys and values as
        ``postprocess._segment_stats`` at the merge's own size), from the cells and the per-pixel records instead
        of two passes over the full-resolution map: a cell without records is one rectangle of one id. Sums of
        pixel coordinates are integers, so the centroids equal the per-pixel computation's exactly."""
        cy, cx = self.cells.y, self.cells.x
        h, w = self.cells.size
        nb = n + 1
        # Cells covered by records count through their records only: they go to a spare bin (nb), dropped below.
        cell_id = torch.where(self.cell_owned, lut[self.cell_winner.clamp(min=0)], 0).long()
        cell_id = torch.where(self.cell_pixelwise, nb, cell_id).flatten()
        ylen, xlen = cy.cell_len[:, None], cx.cell_len[None, :]
        y0, x0 = cy.cell_first[:, None], cx.cell_first[None, :]
        area = ylen * xlen
        sum_y = xlen * (ylen * y0 + ylen * (ylen - 1) // 2)  # sum of the row index over the cell's pixels
        sum_x = ylen * (xlen * x0 + xlen * (xlen - 1) // 2)
        pix_id = self.pixel_ids(lut)
        # The records as two small histograms, (id, row) and (id, column): everything per id follows from them.
        rows = torch.bincount(pix_id * h + self.pix_idx // w, minlength=nb * h).reshape(nb, h)
        cols = torch.bincount(pix_id * w + self.pix_idx % w, minlength=nb * w).reshape(nb, w)
        ar_y, ar_x = torch.arange(h, device=rows.device), torch.arange(w, device=cols.device)

        def cell_total(values: torch.Tensor) -> torch.Tensor:
            out = torch.zeros(nb + 1, dtype=torch.long, device=cell_id.device)
            out.index_add_(0, cell_id, values.expand(self.cells.shape).flatten())
            return out[:nb]

        def extreme(cell_values: torch.Tensor, hist: torch.Tensor, ar: torch.Tensor, lowest: bool) -> list:
            fill = max(h, w) if lowest else -1
            out = torch.full((nb + 1,), fill, dtype=torch.long, device=cell_id.device)
            how = "amin" if lowest else "amax"
            out.scatter_reduce_(0, cell_id, cell_values.expand(self.cells.shape).flatten(), how)
            at = torch.where(hist > 0, ar, fill)
            both = torch.minimum(out[:nb], at.amin(1)) if lowest else torch.maximum(out[:nb], at.amax(1))
            return both.tolist()

        a = cell_total(area) + rows.sum(1)
        denom = a.clamp(min=1).double()
        return {
            "area": a.tolist(),
            # Elementwise products, not ``@``: CUDA has no integer matrix products.
            "cx": ((cell_total(sum_x) + (cols * ar_x).sum(1)).double() / denom).tolist(),
            "cy": ((cell_total(sum_y) + (rows * ar_y).sum(1)).double() / denom).tolist(),
            "x0": extreme(x0, cols, ar_x, True),
            "y0": extreme(y0, rows, ar_y, True),
            "x1": extreme(x0 + xlen - 1, cols, ar_x, False),
            "y1": extreme(y0 + ylen - 1, rows, ar_y, False),
        }


@lru_cache(maxsize=16)
def _logit_cut(threshold: float) -> tuple[float, float] | None:
    """Float32 logits ``(inside, reach)``: a cell whose window's smallest mask logit is ``>= inside`` has every
    pixel's probability ``>= threshold`` (float64, either order, rounding included); one whose largest logit is
    ``< reach`` has none. ``None`` for thresholds too close to 0 or 1 for this margin (probabilities are compared)."""
    if not 1e-6 < threshold < 1.0 - 1e-6:
        return None
    mid = math.log(threshold / (1.0 - threshold))
    step = 1e-6 * (1.0 + abs(mid))  # far above float64 rounding of either order's per-pixel value, far below scores
    inside, reach = _float32_at_least(mid + step), _float32_at_most(mid - step)

    def sig(x: float) -> float:
        return 1.0 / (1.0 + math.exp(-x))

    # The per-pixel tests: upsample_logits compares the interpolated logit with ``mid``, sigmoid_first an
    # interpolated probability with the threshold; a convex combination stays within 1e-12 of its extremes.
    ok = sig(inside) * (1 - 1e-12) - 1e-15 >= threshold and inside - 1e-12 * (1 + abs(inside)) >= mid
    ok = ok and sig(reach) * (1 + 1e-12) + 1e-15 < threshold and reach + 1e-12 * (1 + abs(reach)) < mid
    return (inside, reach) if ok else None


def panoptic_cells(
    scores: torch.Tensor,
    masks: torch.Tensor,
    cells: CellGrid,
    order: str,
    threshold: float,
    overlap: float | None = None,
    ids: torch.Tensor | None = None,
) -> PanopticCells | NativePanopticCells:
    """Per pixel: the kept query with the highest ``scores[q] * prob_q`` (first maximum) and whether its probability
    reaches ``threshold``; ``scores [n]`` float64, ``masks [n, h, w]`` the kept queries' mask logits (n >= 1), or
    every query's with ``ids [n]`` the kept ones (the native kernels read them in place, no copy of the masks).

    ``overlap``: the rule that reads the mask areas (a query that wins pixels and owns some is dropped when
    ``won / orig < overlap``). Given, a query's area is counted per pixel along its mask edge only when its bounds
    (cells inside the mask / also those the edge crosses) leave the rule open: with many kept queries most of them
    win nothing (duplicates) or clearly pass, and their edges were most of the per-pixel work. None: every area
    exactly."""
    cut = _logit_cut(threshold)
    if cut is not None and native.available_for(masks):
        return _panoptic_native(scores, masks, ids, cells, order, threshold, overlap, cut)
    if ids is not None:
        masks = masks.index_select(0, ids)
    n = int(scores.numel())
    dev = masks.device
    s32 = scores.float()
    rel = float32_error(1)
    m32 = masks.float()
    sizes = cells.cell_pixels
    won = torch.zeros(n, dtype=torch.long, device=dev)
    fin = torch.zeros_like(won)
    orig = torch.zeros_like(won)
    cell_winner = torch.empty(cells.shape, dtype=torch.long, device=dev)
    cell_owned = torch.zeros(cells.shape, dtype=torch.bool, device=dev)
    cell_pixelwise = torch.zeros(cells.shape, dtype=torch.bool, device=dev)
    edge_area = torch.zeros_like(won)  # pixels of the cells each query's mask edge crosses
    edges: list[tuple[int, torch.Tensor | None, torch.Tensor]] = []  # (first cell row, near, crossing) per band
    partly_records: list[tuple[torch.Tensor, ...]] = []  # (flat pixel index, winner, owned) per chunk
    resolved_records: list[tuple[torch.Tensor, ...]] = []
    ppc = cells.y.max_len * cells.x.max_len

    for c0, c1 in cells.bands(n, _NEAR_ROWS if n >= _NEAR_MIN_QUERIES else None):
        r0, r1 = cells.band_rows(c0, c1)
        band = m32[:, r0:r1]
        near, far = _near_queries(band, cut)
        if near is not None:  # the tables over the queries near the band; the others bounded per cell as one
            far_logit = band.index_select(0, far).amax(0, keepdim=True)  # [1, rows, w]: their largest logits
            far_score = s32.index_select(0, far).amax()
            band = band.index_select(0, near)
        sn = s32 if near is None else s32.index_select(0, near)
        lo_logit, hi_logit = cells.window_min(band, c0, c1), cells.window_max(band, c0, c1)
        plo, phi = lo_logit.sigmoid(), hi_logit.sigmoid()  # probability bounds, both orders (sigmoid is monotonic)
        size = sizes[c0:c1]
        # Areas of the binary masks: cells entirely above / below the threshold, per pixel where the edge crosses.
        if cut is not None:  # on the logits: two comparisons instead of widening both probability tables
            inside = lo_logit >= cut[0]
            crossing = (hi_logit >= cut[1]) ^ inside  # inside implies hi >= lo >= cut[0] > cut[1]
        else:
            inside = _widen_low(plo, rel) >= threshold
            crossing = ~inside & (_widen_high(phi, rel) >= threshold)
        if near is None:
            orig += cells.area(inside, c0, c1)
            edge_area += cells.area(crossing, c0, c1)
        else:
            orig.index_add_(0, near, cells.area(inside, c0, c1))
            edge_area.index_add_(0, near, cells.area(crossing, c0, c1))
        edges.append((c0, near, crossing))
        # Winners.
        lower, upper = sn[:, None, None] * plo, sn[:, None, None] * phi
        dec = _decide(lower, upper, rel)
        winner = dec.winner
        grid_scores = sn[:, None, None] * band.sigmoid() if order == "sigmoid_first" else None
        if near is None:
            if grid_scores is not None:
                corner = _corner_winners(grid_scores, torch.zeros_like(sn), rel, cells, c0, c1)
                winner = torch.where(corner >= 0, corner, winner)
            pos = winner.clamp(min=0)  # the winner's row in the band tables
        else:
            dec = _far_tier(dec, near, far_logit, far_score, grid_scores, m32, s32, rel, cells, c0, c1)
            winner = dec.winner
            pos = dec.slot.new_full((n,), -1).index_copy_(0, near, torch.arange(int(near.numel()), device=dev))
            pos = pos[winner.clamp(min=0)]  # -1: a far query (it owns no cell of this band)
        cell_winner[c0:c1] = winner
        decided = winner >= 0
        w = winner.clamp(min=0)
        at = pos.clamp(min=0)[None]
        owned = decided & inside.gather(0, at)[0] & (pos >= 0)
        partly = decided & crossing.gather(0, at)[0] & (pos >= 0)
        cell_owned[c0:c1] = owned
        cell_pixelwise[c0:c1] = ~decided | partly
        # Weighted by the cell sizes where decided / owned (0 elsewhere): no boolean selections of the grid.
        won += torch.bincount(w.flatten(), weights=(size * decided).flatten(), minlength=n).long()
        fin += torch.bincount(w.flatten(), weights=(size * owned).flatten(), minlength=n).long()
        cy, cx = torch.nonzero(partly, as_tuple=True)
        for a, b in _chunks(int(cy.numel()), ppc):
            blk = cells.block(cy[a:b] + c0, cx[a:b])
            own = cells.above(masks, w[cy[a:b], cx[a:b]][:, None], blk, order, threshold)[:, 0]
            who = w[cy[a:b], cx[a:b]][:, None, None].expand_as(own)
            partly_records.append((blk.flat(cells.size[1]), blk.pixels(who), blk.pixels(own)))

        def evaluate(blk: _Block, cand: torch.Tensor, valid: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            p = cells.probabilities(masks, cand, blk, order).flatten(2)
            return scores[cand][:, :, None] * p, p

        for blk, cand, pick, p in _resolve(dec, ~decided, cells, c0, evaluate, lambda c: c * ppc):
            own = p.gather(1, pick[:, None])[:, 0] >= threshold
            resolved_records.append((blk.flat(cells.size[1]), blk.pixels(cand.gather(1, pick)), blk.pixels(own)))

    # Records: partly owned decided cells, then undecided ones (disjoint pixels: order is free). Areas from them
    # in one pass each (bincount, not index_add_ of ones: a few indices repeated over many pixels serialise
    # index_add_); the won area of partly owned cells was counted per cell above.
    def joined(records: list[tuple[torch.Tensor, ...]], field: int, dtype: torch.dtype) -> torch.Tensor:
        parts = [r[field] for r in records]
        return torch.cat(parts) if parts else torch.zeros(0, dtype=dtype, device=dev)

    records = partly_records + resolved_records
    all_win, all_own = joined(records, 1, torch.long), joined(records, 2, torch.bool)
    won += torch.bincount(joined(resolved_records, 1, torch.long), minlength=n)
    fin += torch.bincount(all_win, weights=all_own.double(), minlength=n).long()
    # The areas along the mask edges, per pixel, for the queries whose overlap rule their bounds leave open.
    open_rule, passes = _overlap_bounds(won, fin, orig, orig + edge_area, overlap)
    orig = torch.where(passes, orig + edge_area, orig)  # decided (passing excludes open): the bound that decides it
    rule_open = torch.nonzero(open_rule).flatten()
    for c0, near, crossing in edges:
        # One (query, cell) pair per crossing edge: no per-cell lists padded to the most crowded cell (with
        # overlapping duplicates the counts per cell vary a lot).
        ids, rows = rule_open, rule_open
        if near is not None:  # far queries cross no cell of the band
            rows = torch.searchsorted(near, rule_open).clamp(max=int(near.numel()) - 1)
            present = near[rows] == rule_open
            ids, rows = rule_open[present], rows[present]
        qi, cy, cx = torch.nonzero(crossing.index_select(0, rows), as_tuple=True)
        qi = ids[qi]
        for a, b in _chunks(int(qi.numel()), ppc):
            blk = cells.block(cy[a:b] + c0, cx[a:b])
            hit = cells.above(masks, qi[a:b, None], blk, order, threshold)[:, 0] & blk.valid
            orig += torch.bincount(qi[a:b], weights=hit.flatten(1).sum(1).double(), minlength=n).long()
    return PanopticCells(
        won=won,
        fin=fin,
        orig=orig,
        cell_winner=cell_winner,
        cell_owned=cell_owned,
        cell_pixelwise=cell_pixelwise,
        pix_idx=joined(records, 0, torch.long),
        pix_win=all_win,
        pix_own=all_own,
        cells=cells,
    )


def _panoptic_native(
    scores: torch.Tensor,
    masks: torch.Tensor,
    ids: torch.Tensor | None,
    cells: CellGrid,
    order: str,
    threshold: float,
    overlap: float | None,
    cut: tuple[float, float],
) -> NativePanopticCells:
    """:func:`panoptic_cells` by the native kernels (the same result): every cell decided in C from float64 bounds
    of the queries near it (the others bounded together), per-pixel work in the cells left open and where a decided
    winner's mask edge crosses, areas along the edges only for the queries whose overlap rule needs them."""
    k = native.PanopticKernels(
        masks.float().contiguous(),
        None if ids is None else ids.contiguous(),
        scores.to(EXACT).contiguous(),
        order == "sigmoid_first",
        threshold,
        cut,
        min(_FAR_LOGIT, cut[1]),
        cells,
        native_threads(cells),
    )
    cell_winner, cell_owned, partly, inside, edge, pixels, won, fin = k.merge()
    pixelwise = (cell_winner < 0) | partly
    open_rule, passes = _overlap_bounds(won, fin, inside, inside + edge, overlap)
    orig = torch.where(passes, inside + edge, inside)
    rule_open = torch.nonzero(open_rule).flatten()
    if rule_open.numel():
        orig[rule_open] += k.edge_areas(rule_open)
    paint = partial(k.paint, (cell_winner, cell_owned, pixelwise), pixels)
    return NativePanopticCells(won, fin, orig, pixelwise, paint)


@dataclass
class NativePanopticCells:
    """:class:`PanopticCells` of the native kernels: the same areas, id map and segment table; the per-pixel results
    stay in one ``[H, W]`` map that the kernels read again for the id map and the segment table in one pass."""

    won: torch.Tensor
    fin: torch.Tensor
    orig: torch.Tensor
    cell_pixelwise: torch.Tensor
    paint: Callable[[torch.Tensor, int], tuple[torch.Tensor, torch.Tensor]]  # (lut, n) -> id map, [7, n + 1] stats
    _painted: tuple[torch.Tensor, int, torch.Tensor, torch.Tensor] | None = field(default=None, repr=False)

    def _paint(self, lut: torch.Tensor, n: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The id map and per-id stats for ``lut``, painted once (the id map and the segment table both need them)."""
        if self._painted is None or self._painted[0] is not lut or self._painted[1] < n:
            ids, stats = self.paint(lut, max(n, int(lut.max()) if lut.numel() else 0))
            self._painted = (lut, int(stats.shape[1]) - 1, ids, stats)
        return self._painted[2], self._painted[3]

    def id_map(self, lut: torch.Tensor) -> torch.Tensor:
        """``[H, W]`` int32 segment ids given ``lut`` (kept query -> segment id, 0 = dropped)."""
        return self._paint(lut, 0)[0]

    def segment_stats(self, lut: torch.Tensor, n: int) -> dict[str, list]:
        """As :meth:`PanopticCells.segment_stats` (the same keys and values), counted by the paint pass."""
        ids, stats = self._paint(lut, n)
        stats = stats[:, : n + 1]
        area = stats[0]
        denom = area.clamp(min=1).double()
        absent = area == 0
        far = max(int(ids.shape[0]), int(ids.shape[1]))
        return {
            "area": area.tolist(),
            "cx": (stats[1].double() / denom).tolist(),
            "cy": (stats[2].double() / denom).tolist(),
            "x0": torch.where(absent, far, stats[3]).tolist(),
            "y0": torch.where(absent, far, stats[4]).tolist(),
            "x1": stats[5].tolist(),
            "y1": stats[6].tolist(),
        }


def _near_queries(
    band: torch.Tensor, cut: tuple[float, float] | None
) -> tuple[torch.Tensor, torch.Tensor] | tuple[None, None]:
    """The kept queries that reach a band (``band [n, rows, w]``: their logits on its mask-grid rows) and the others,
    ascending; ``(None, None)`` when all of them should enter the band's tables (few queries, most of them near, or a
    mask threshold without a logit cut).

    A query whose largest logit in the band stays below ``_FAR_LOGIT`` and the threshold's cut owns and crosses no cell
    there, and its score is at most the largest far score times the sigmoid of the far queries' largest logit: they
    only matter in cells where no near query's lower bound beats that (see :func:`_far_tier`)."""
    n = int(band.shape[0])
    if n < _NEAR_MIN_QUERIES or cut is None:
        return None, None
    is_near = band.flatten(1).amax(1) >= min(_FAR_LOGIT, cut[1])
    count = int(is_near.sum())
    if count == 0 or count > n * 3 // 4:
        return None, None
    return torch.nonzero(is_near).flatten(), torch.nonzero(~is_near).flatten()


def _far_tier(
    part: _Decision,
    near: torch.Tensor,
    far_logit: torch.Tensor,
    far_score: torch.Tensor,
    grid_scores: torch.Tensor | None,
    m32: torch.Tensor,
    s32: torch.Tensor,
    rel: float,
    cells: CellGrid,
    c0: int,
    c1: int,
) -> _TieredDecision:
    """A band's panoptic decision from the tables of its ``near`` queries (``part``): valid where their best lower
    bound beats what the far queries can score in the cell (``far_score * sigmoid(window max of far_logit)``, both
    orders); the other cells (where no query is confident) are decided over every query. ``grid_scores``:
    (``sigmoid_first``) the near queries' scores at the grid points, for the corner test with the far queries as one
    more entity valued at most ``far_score * sigmoid(far_logit)`` there."""
    n_near = int(near.numel())
    far_upper = _widen_high(far_score * cells.window_max(far_logit, c0, c1)[0].sigmoid(), rel)
    ok = part.best > far_upper
    winner = torch.where(ok & (part.winner >= 0), near[part.winner.clamp(min=0)], -1)
    if grid_scores is not None:
        far_points = _widen_high(far_score * far_logit.sigmoid(), rel)
        corner = _corner_winners(
            torch.cat([grid_scores, far_points]), grid_scores.new_zeros(n_near + 1), rel, cells, c0, c1
        )
        known = (corner >= 0) & (corner < n_near)
        winner = torch.where(known, near[corner.clamp(0, n_near - 1)], winner)
    return _TieredDecision.of(
        winner, ok, part, near, lambda fy, fx: _query_cell_bounds(m32, s32, cells, fy + c0, fx), rel
    )


def _query_cell_bounds(
    m32: torch.Tensor, s32: torch.Tensor, cells: CellGrid, cy: torch.Tensor, cx: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Lower and upper bounds ``[n, m]`` of every query's panoptic score ``s32 * prob`` in cells ``(cy, cx)`` (both
    orders: each probability lies between the sigmoids of its window's extreme logits). One ``[n, m]`` gather per
    window point: per-(cell, query) window gathers cost ~10x more (index tables and reductions over 4 values)."""
    at = torch.stack(list(cells.window_points(m32, cy, cx)))  # [Sy * Sx, n, m]
    return s32[:, None] * at.amin(0).sigmoid(), s32[:, None] * at.amax(0).sigmoid()


def _overlap_bounds(
    won: torch.Tensor, fin: torch.Tensor, low: torch.Tensor, high: torch.Tensor, overlap: float | None
) -> tuple[torch.Tensor, torch.Tensor]:
    """``[n]`` each: queries whose overlap rule (kept when ``won, fin, orig > 0`` and ``won / orig >= overlap``) can
    differ for a mask area ``orig`` in ``[low, high]``, and those that pass it at ``high``. ``won / orig`` does not
    grow with ``orig`` (float division is correctly rounded, hence monotonic), so the ends decide: the rule holds at
    ``high`` -> at every area up to it; fails at ``low > 0`` -> at every larger one. ``fin > 0`` implies ``orig >= fin
    > 0``, so the zero test of the area never depends on it once ``won`` and ``fin`` pass theirs."""
    if overlap is None:
        return torch.ones_like(won, dtype=torch.bool), torch.zeros_like(won, dtype=torch.bool)
    w = won.double()
    passes = (high > 0) & (w / high.double().clamp(min=1) >= overlap)
    fails = (low > 0) & (w / low.double().clamp(min=1) < overlap)
    return (won > 0) & (fin > 0) & ~passes & ~fails, passes


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
    if n == 0:
        return out, prob_sum, torch.zeros(0, dtype=torch.long, device=dev)
    reach = _widen_high(cells.window_max(masks.float(), 0, cells.shape[0]).sigmoid(), float32_error(1)) >= threshold
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
