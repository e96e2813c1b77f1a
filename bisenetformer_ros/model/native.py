"""The cell merge of CPU tensors in C (``cellmerge_kernels.c``): built once with the machine's C compiler, cached,
loaded with ctypes.

Why: as tensor operations the merge is a long chain of small ops (window extremes, bound tables, gathers,
interpolations, candidate lists padded per group) whose dispatch costs more than the arithmetic - most of the merge
in frames with many kept queries. In C each cell is decided in one pass over its queries, each open cell evaluates
its candidates pixel by pixel in the order of their upper bounds until none can win, and the work runs without the
interpreter lock (ctypes releases it), split over threads.

Like the TensorRT engine cache: the shared library is compiled at first use (about 3 s; ``$CC``, else the compiler
Python was built with, else ``cc``) into ``$BISENETFORMER_NATIVE_DIR`` (default
``$XDG_CACHE_HOME/bisenetformer_ros/native``), named by a hash of the source, flags, compiler and CPU, written
atomically, and reused by every later process. Without a compiler (or with ``BISENETFORMER_NATIVE=0``) the merge uses
its tensor path, with one log line: the results are the same (tests compare both with the float64 brute force).
CPU tensors only; on CUDA the tensor path runs on the device.
"""

from __future__ import annotations

import ctypes
import hashlib
import logging
import os
import platform
import shlex
import shutil
import subprocess
import sysconfig
import tempfile
import threading
from pathlib import Path

import torch

from bisenetformer_ros.atomic_io import atomic_path

LOG = logging.getLogger(__name__)
ENV = "BISENETFORMER_NATIVE"  # "0": never use the kernels
DIR_ENV = "BISENETFORMER_NATIVE_DIR"
SOURCE = Path(__file__).with_name("cellmerge_kernels.c")
# -ffp-contract=off: no fused multiply-adds, so every product and sum rounds like the tensor path's elementwise ops
# (-fno-trapping-math only lets the compiler turn the fast sigmoid's clamps into vector min / max; no value changes).
# -march=native: the vector width of this CPU (the cache key holds the CPU's model and flags).
FLAGS = (
    "-O3",
    "-march=native",
    "-std=c11",
    "-fPIC",
    "-shared",
    "-ffp-contract=off",
    "-fno-fast-math",
    "-fno-trapping-math",
    "-pthread",
)
_LOCK = threading.Lock()
_STATE: dict[str, object] = {}

_I64, _I32, _F32, _F64, _PTR = ctypes.c_int64, ctypes.c_int32, ctypes.c_float, ctypes.c_double, ctypes.c_void_p
_AXIS = [_I64, _I64, _PTR, _PTR, _PTR]  # window, cell length, valid, weights, start
# The panoptic kernels' shared arguments: masks, ids, n, h, w, scores, sigmoid_first, threshold, cut_in, cut_reach,
# far, each axis with its cell lengths, cells_y, cells_x.
_WHOLE = [_PTR, _PTR, _I64, _I64, _I64, _PTR, _I32, _F64, _F32, _F32, _F32, *_AXIS, _PTR, *_AXIS, _PTR, _I64, _I64]
# The semantic kernels' shared arguments: masks, q, h, w, class_probs, k, live, n_live; p_live, reach, dead,
# dead_probs, envelope, major; n_major, beyond, sigmoid_first, prune, near, the two axes, cells_y, cells_x.
_SEMANTIC = [_PTR, _I64, _I64, _I64, _PTR, _I64, _PTR, _I64] + [_PTR] * 6
_SEMANTIC += [_I64, _F64, _I32, _F64, _F32, *_AXIS, *_AXIS, _I64, _I64]
_SIGNATURES = {
    "bfr_semantic_labels": [*_SEMANTIC, _PTR, _PTR, _PTR, _PTR, _I64, _I64, _PTR, _I32, _I32],
    "bfr_panoptic_merge": [*_WHOLE, _PTR, _PTR, _I64] + [_PTR] * 8 + [_I32],
    "bfr_panoptic_paint": [_I64] * 4 + [_PTR] * 4 + [_I64] + [_PTR] * 5 + [_I64, _PTR, _PTR, _I32],
    "bfr_panoptic_edges": [*_WHOLE, _I64, _PTR, _PTR, _I32],
    "bfr_sigmoid_fast": [_PTR, _PTR, _I64],
}  # fmt: skip


def cache_dir() -> Path:
    """Where the compiled kernels live: ``$BISENETFORMER_NATIVE_DIR``, else ``$XDG_CACHE_HOME/bisenetformer_ros/
    native`` (``~/.cache/...``)."""
    if os.environ.get(DIR_ENV):
        return Path(os.environ[DIR_ENV]).expanduser()
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "bisenetformer_ros" / "native"


def compiler() -> list[str] | None:
    """The C compiler command: ``$CC``, else the one Python was built with, else ``cc``; None when not installed."""
    for text in (os.environ.get("CC"), sysconfig.get_config_var("CC"), "cc", "gcc"):
        cmd = shlex.split(text or "")
        if cmd and shutil.which(cmd[0]):
            return cmd
    return None


def _cpu() -> bytes:
    """What identifies this CPU's instruction set (``-march=native`` builds for it): model and flag lines."""
    try:
        lines = Path("/proc/cpuinfo").read_text(errors="replace").splitlines()
    except OSError:
        return platform.processor().encode()
    keys = ("model name", "flags", "Features", "CPU implementer", "CPU part")
    return "\n".join(sorted({ln for ln in lines if ln.split(":")[0].strip() in keys})).encode()


def library_path(cc: list[str], flags: tuple[str, ...] = FLAGS, folder: Path | None = None) -> Path:
    """The cached library for this source, compiler, flags and CPU."""
    key = hashlib.sha256()
    for part in (SOURCE.read_bytes(), " ".join(flags).encode(), " ".join(cc).encode(), platform.machine().encode(),
                 _cpu()):  # fmt: skip
        key.update(part)
        key.update(b"\0")
    return (folder or cache_dir()) / f"cellmerge-{key.hexdigest()[:16]}.so"


def build(cc: list[str]) -> Path:
    """Compile the kernels (unless cached) and return the library's path. Without ``-march=native`` when the
    compiler refuses it (the portable build is slower, same results); into a private temporary folder when the
    cache folder cannot be written (a read-only home)."""
    errors = []
    for flags in (FLAGS, tuple(f for f in FLAGS if f != "-march=native")):
        for folder in (cache_dir(), Path(tempfile.gettempdir()) / f"bisenetformer_ros-native-{os.getuid()}"):
            path = library_path(cc, flags, folder)
            if path.is_file():
                return path
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
                with atomic_path(path, suffix=".so") as tmp:
                    cmd = [*cc, *flags, "-o", str(tmp), str(SOURCE), "-lm"]
                    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300, check=False)
                    if done.returncode != 0:
                        last = done.stderr.strip().splitlines()[-1:] or [f"exit status {done.returncode}"]
                        raise OSError(f"{' '.join(cmd)} failed: {last[0]}")
            except PermissionError as exc:
                errors.append(str(exc))
                continue  # the next folder
            except OSError as exc:
                errors.append(str(exc))
                break  # the compiler failed: the next flags
            LOG.info("compiled the cell merge's native kernels: %s", path)
            return path
    raise OSError("; ".join(errors))


def library() -> ctypes.CDLL | None:
    """The loaded kernels, built at first use; None when turned off or not buildable (logged once)."""
    with _LOCK:
        if "lib" in _STATE:
            return _STATE["lib"]  # type: ignore[return-value]
        lib = None
        if os.environ.get(ENV, "1").strip().lower() not in ("0", "false", "no", "off"):
            cc = compiler()
            try:
                if cc is None:
                    raise OSError("no C compiler found (set CC)")
                lib = ctypes.CDLL(str(build(cc)))
                for name, args in _SIGNATURES.items():
                    fn = getattr(lib, name)
                    fn.argtypes, fn.restype = args, _I64
            except (OSError, subprocess.SubprocessError) as exc:
                LOG.warning("cell merge: native kernels unavailable, using the tensor path (%s)", exc)
                lib = None
        _STATE["lib"] = lib
        return lib


def reset() -> None:
    """Forget the loaded state (tests switch ``BISENETFORMER_NATIVE`` and the cache directory)."""
    with _LOCK:
        _STATE.clear()


def available_for(t: torch.Tensor) -> bool:
    """Whether the kernels serve a merge of ``t``'s device (CPU tensors, kernels built)."""
    return t.device.type == "cpu" and library() is not None


def _ptr(t: torch.Tensor) -> int:
    """The address of a CPU tensor's data; the kernels read it as one dense block."""
    if not t.is_contiguous() or t.device.type != "cpu":
        raise ValueError("native kernels need contiguous CPU tensors")
    return t.data_ptr()


def _axis_args(axis: object) -> list:
    return [
        int(axis.window),
        int(axis.max_len),
        _ptr(axis.pixel_valid),
        _ptr(axis.pixel_weights),
        _ptr(axis.cell_start),
    ]


class _Bound:
    """Arguments of one image's kernel calls, bound once: the grid's shape and pixel tables, the tensors they point
    into (kept alive here) and the thread count."""

    def __init__(self, cells: object, threads: int, keep: tuple) -> None:
        lib = library()
        if lib is None:
            raise RuntimeError("native kernels unavailable")
        self._lib = lib
        self._keep = keep
        self.shape = tuple(int(v) for v in cells.shape)
        self._pixels = (_ptr(cells.y.pixel), _ptr(cells.x.pixel), int(cells.size[1]))
        self._size = tuple(int(v) for v in cells.size)
        self._cell_pixels = (int(cells.y.max_len), int(cells.x.max_len))  # padded pixel slots per cell and axis
        self._lengths = (cells.y.cell_len, cells.x.cell_len)  # output pixels per cell along y and x
        self.threads = int(threads)

    @staticmethod
    def _check(status: int, what: str) -> None:
        if status < 0:
            raise MemoryError(f"cell merge: the native {what} ran out of memory")


class SemanticKernels(_Bound):
    """The whole semantic merge of one image on the CPU (``cellmerge_kernels.c``, "whole semantic"): the arguments
    every call shares, bound once."""

    def __init__(
        self,
        masks32: torch.Tensor,
        class_probs: torch.Tensor,
        live: torch.Tensor,
        dead: torch.Tensor,
        dead_probs: torch.Tensor,
        envelope: torch.Tensor | None,
        tier: tuple[torch.Tensor | None, float],
        sigmoid_first: bool,
        prune: float,
        near: float,
        cells: object,
        threads: int,
    ) -> None:
        live = live.to(torch.int64).contiguous()
        p_live = class_probs.index_select(0, live).contiguous()
        tensors = (masks32, class_probs, live, p_live, p_live.sum(0), dead.contiguous(), dead_probs.contiguous())
        major = None if tier[0] is None else tier[0].to(torch.int64).contiguous()
        super().__init__(cells, threads, (*tensors, envelope, major))
        q, h, w = (int(v) for v in masks32.shape)
        self._args = [
            _ptr(masks32), q, h, w, _ptr(class_probs), int(class_probs.shape[1]), _ptr(live), int(live.numel()),
            *(_ptr(t) for t in tensors[3:]), None if envelope is None else _ptr(envelope),
            None if major is None else _ptr(major), 0 if major is None else int(major.numel()), float(tier[1]),
            int(sigmoid_first), float(prune), float(near), *_axis_args(cells.y), *_axis_args(cells.x), *self.shape,
        ]  # fmt: skip

    def labels(self, budget: int, dtype: torch.dtype) -> tuple[torch.Tensor, int] | None:
        """Every pixel's label (``[H, W]`` of ``dtype``: uint8 or int32) and the number of pixels evaluated with every
        query (near-ties); None when more than ``budget`` pixels lie in cells the bounds leave open (the caller's
        dense fallback: the kernel stops there)."""
        if dtype not in (torch.uint8, torch.int32):
            raise ValueError(f"semantic labels: unsupported dtype {dtype}")
        out = torch.empty(self._size, dtype=dtype)
        y_len, x_len = self._lengths
        redone = self._lib.bfr_semantic_labels(
            *self._args, _ptr(y_len), _ptr(x_len), *self._pixels, int(budget), _ptr(out), out.element_size(),
            self.threads,
        )  # fmt: skip
        if redone == -2:
            return None
        self._check(redone, "semantic merge")
        return out, int(redone)


class PanopticKernels(_Bound):
    """The whole panoptic merge of one image on the CPU (see ``cellmerge_kernels.c``, "whole panoptic"): the
    arguments every call shares, bound once."""

    def __init__(
        self,
        masks32: torch.Tensor,
        ids: torch.Tensor | None,
        scores: torch.Tensor,
        sigmoid_first: bool,
        threshold: float,
        cut: tuple[float, float],
        far: float,
        cells: object,
        threads: int,
    ) -> None:
        ids = None if ids is None else ids.to(torch.int64).contiguous()
        super().__init__(cells, threads, (masks32, ids, scores))
        n = int(scores.numel())
        h, w = (int(v) for v in masks32.shape[1:])
        y, x = cells.y, cells.x
        self._args = [
            _ptr(masks32),
            None if ids is None else _ptr(ids),
            n,
            h,
            w,
            _ptr(scores),
            int(sigmoid_first),
            float(threshold),
            float(cut[0]),
            float(cut[1]),
            float(far),
            *_axis_args(y),
            _ptr(y.cell_len),
            *_axis_args(x),
            _ptr(x.cell_len),
            *self.shape,
        ]
        self.n = n

    def merge(self) -> tuple[torch.Tensor, ...]:
        """The merge up to the id map: ``[Cy, Cx]`` winners (-1: undecided), owned and partly-owned flags; ``[n]``
        areas of the cells inside each query's mask and of those its edge crosses; ``[H, W]`` int32 ``2 * winner +
        owned`` at the pixels of the cells that are not decided as a whole (elsewhere undefined); ``[n]`` pixels each
        query wins, and wins and owns."""
        winner = torch.empty(self.shape, dtype=torch.int64)
        owned = torch.empty(self.shape, dtype=torch.bool)
        partly = torch.empty(self.shape, dtype=torch.bool)
        inside, edge, won, fin = (torch.zeros(self.n, dtype=torch.int64) for _ in range(4))
        pixels = torch.empty(self._size, dtype=torch.int32)
        outs = (winner, owned, partly, inside, edge, pixels, won, fin)
        status = self._lib.bfr_panoptic_merge(*self._args, *self._pixels, *(_ptr(t) for t in outs), self.threads)
        self._check(status, "panoptic merge")
        return outs

    def paint(
        self, cell: tuple[torch.Tensor, torch.Tensor, torch.Tensor], pixels: torch.Tensor, lut: torch.Tensor, n: int
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The ``[H, W]`` int32 id map (``lut [n_kept]`` int32: kept query -> segment id, 0 = dropped) from the cells'
        winners, owned and per-pixel flags (``cell``) and :meth:`merge`'s ``pixels``, and ``[7, n + 1]`` int64 per
        id 0..n: area, sums of columns and rows, x0, y0, x1, y1 (x0 / y0 huge and x1 / y1 -1 for absent ids)."""
        winner, owned, pixelwise = (t.contiguous() for t in cell)
        lut = lut.to(torch.int32).contiguous()
        ids = torch.empty(self._size, dtype=torch.int32)
        stats = torch.empty((7, n + 1), dtype=torch.int64)
        y_len, x_len = self._lengths
        status = self._lib.bfr_panoptic_paint(
            *self.shape, int(self._cell_pixels[0]), int(self._cell_pixels[1]), _ptr(y_len), _ptr(x_len), *self._pixels,
            _ptr(winner), _ptr(owned), _ptr(pixelwise), _ptr(pixels), _ptr(lut), n, _ptr(ids), _ptr(stats),
            self.threads,
        )  # fmt: skip
        self._check(status, "panoptic id map")
        return ids, stats

    def edge_areas(self, queries: torch.Tensor) -> torch.Tensor:
        """``[m]`` pixels with probability >= threshold in the cells the edges of ``queries [m]`` cross."""
        counts = torch.zeros(int(queries.numel()), dtype=torch.int64)
        status = self._lib.bfr_panoptic_edges(
            *self._args, int(queries.numel()), _ptr(queries), _ptr(counts), self.threads
        )
        self._check(status, "panoptic edge areas")
        return counts
