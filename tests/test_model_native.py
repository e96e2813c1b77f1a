"""The cell merge's native kernels (model/native.py): built once per source / compiler / CPU and cached, turned off by
``BISENETFORMER_NATIVE=0``, replaced by the tensor path (same results) when no compiler works, and the fast sigmoid
of the semantic kernel within the error bound the kernel assumes. Their results against the float64 brute force are
tested in test_model_cellmerge.py (every test there runs on both paths)."""

from __future__ import annotations

import ctypes
import logging
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch

from bisenetformer_ros.data.classes import ClassTable
from bisenetformer_ros.model import PostprocessConfig, PreprocessMeta, native, postprocess_batch
from bisenetformer_ros.model.postprocess import dense_reference


@pytest.fixture
def fresh_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv(native.DIR_ENV, str(tmp_path / "native"))
    monkeypatch.setenv(native.ENV, "1")
    native.reset()
    yield tmp_path / "native"
    native.reset()


def _frame() -> tuple[torch.Tensor, torch.Tensor, PreprocessMeta]:
    gen = torch.Generator().manual_seed(3)
    logits = torch.randn(1, 12, 6, generator=gen) * 3
    logits[0, ::2, :5] += 5
    low = torch.randn(1, 12, 4, 6, generator=gen) * 8
    masks = torch.nn.functional.interpolate(low, size=(10, 14), mode="bilinear", align_corners=False)
    return logits, masks, PreprocessMeta((77, 109), (80, 112), (80, 112))


def test_kernels_are_built_once_and_reused(fresh_cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    if native.compiler() is None:
        pytest.skip("no C compiler on this machine")
    lib = native.library()
    assert lib is not None and native.available_for(torch.zeros(1))
    built = sorted(fresh_cache.glob("cellmerge-*.so"))
    assert len(built) == 1 and built[0] == native.library_path(native.compiler())
    assert not any(p.name.startswith(".") for p in fresh_cache.iterdir())  # no temporary file left behind
    calls: list[object] = []
    monkeypatch.setattr(subprocess, "run", lambda *a, **k: calls.append(a))
    native.reset()
    assert native.library() is not None and calls == []  # a new process state loads the cached library
    assert not native.available_for(torch.zeros(1, device="meta"))  # CPU tensors only


def test_switched_off_or_without_a_compiler_the_tensor_path_gives_the_same_result(
    fresh_cache: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    logits, masks, meta = _frame()
    cfg = PostprocessConfig(merge="cells", dense_fallback=1.0, object_mask_threshold=0.5)
    table = ClassTable("t5", tuple("abcde"), ((0, 0, 0),) * 5, (False, True, False, True, True), 255)
    ref = dense_reference(logits, masks, [meta], ("semantic", "panoptic"), cfg, table)[0]
    monkeypatch.setenv(native.ENV, "0")
    native.reset()
    assert native.library() is None and not native.available_for(masks)
    monkeypatch.setenv(native.ENV, "1")
    monkeypatch.setenv("CC", "false")  # a compiler that always fails
    native.reset()
    with caplog.at_level(logging.WARNING, logger=native.__name__):
        assert native.library() is None
    assert "native kernels unavailable" in caplog.text and "tensor path" in caplog.text
    assert not list(fresh_cache.glob("*.so")) and not list(fresh_cache.glob(".*"))
    out = postprocess_batch(logits, masks, [meta], ("semantic", "panoptic"), cfg, table)[0]
    np.testing.assert_array_equal(out.semantic, ref.semantic)
    np.testing.assert_array_equal(out.panoptic.id_map, ref.panoptic.id_map)
    assert out.panoptic.segments == ref.panoptic.segments


def test_fast_sigmoid_stays_within_the_bound_the_semantic_kernel_assumes(fresh_cache: Path) -> None:
    """The kernel widens every sum of fast sigmoids by FAST_SIGMOID_ERROR (2^-40) per term; the function is far
    more accurate than that (a few 1e-16) over the whole range, saturation and the clamps included."""
    lib = native.library()
    if lib is None:
        pytest.skip("no C compiler on this machine")
    rng = np.random.default_rng(0)
    x = np.concatenate(
        [np.linspace(-800.0, 800.0, 400_001), rng.normal(0.0, 20.0, 200_000), [0.0, -0.0, 708.0, -708.0, 745.0, -745.0]]
    )
    out = np.empty_like(x)
    lib.bfr_sigmoid_fast(x.ctypes.data_as(ctypes.c_void_p), out.ctypes.data_as(ctypes.c_void_p), x.size)
    with np.errstate(over="ignore"):
        exact = 1.0 / (1.0 + np.exp(-x))
    assert np.abs(out - exact).max() <= 2.0**-50
    assert out[-6] == 0.5 and np.all((out >= 0.0) & (out <= 1.0))
    assert "#define FAST_SIGMOID_ERROR 0x1p-40" in native.SOURCE.read_text()  # the bound: ~1000x looser


def test_a_compiler_without_march_native_gets_the_portable_build(
    fresh_cache: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Older or cross compilers may refuse ``-march=native``: the kernels are then built without it (slower vector
    code, the same results) instead of falling back to the tensor path."""
    real = native.compiler()
    if real is None:
        pytest.skip("no C compiler on this machine")
    wrapper = tmp_path / "cc-without-native"
    wrapper.write_text(
        '#!/bin/sh\ncase "$*" in *-march=native*) echo "unknown option -march=native" >&2; exit 1;; esac\n'
        f'exec {" ".join(real)} "$@"\n'
    )
    wrapper.chmod(0o755)
    monkeypatch.setenv("CC", str(wrapper))
    native.reset()
    assert native.library() is not None
    portable = tuple(f for f in native.FLAGS if f != "-march=native")
    assert native.library_path([str(wrapper)], portable).is_file()
    assert not native.library_path([str(wrapper)]).exists()
    logits, masks, meta = _frame()
    cfg = PostprocessConfig(merge="cells", dense_fallback=1.0)
    out = postprocess_batch(logits, masks, [meta], ("semantic",), cfg)[0]
    np.testing.assert_array_equal(out.semantic, dense_reference(logits, masks, [meta], ("semantic",), cfg)[0].semantic)


@pytest.mark.parametrize("order", ["upsample_logits", "sigmoid_first"])
def test_work_split_over_threads_gives_the_same_result(order: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The kernels hand out cell rows / cells to their threads as they finish (a shared counter): with 3 threads on
    a frame of many overlapping queries, semantic and panoptic outputs equal the float64 brute force."""
    from bisenetformer_ros.model import cellmerge

    if not native.available_for(torch.zeros(1)):
        pytest.skip("native kernels unavailable: no C compiler on this machine")
    monkeypatch.setattr(cellmerge, "native_threads", lambda cells: 3)
    gen = torch.Generator().manual_seed(11)
    q, k = 40, 7
    logits = torch.randn(1, q, k + 1, generator=gen)
    logits[0, torch.arange(q), torch.arange(q) % k] += 6
    low = torch.randn(1, q, 7, 9, generator=gen) * 9 - 2
    masks = torch.nn.functional.interpolate(low, size=(21, 27), mode="bilinear", align_corners=False)
    meta = PreprocessMeta((163, 211), (168, 216), (168, 216))
    table = ClassTable("t7", tuple("abcdefg"), ((0, 0, 0),) * 7, (False, True) * 3 + (True,), 255)
    cfg = PostprocessConfig(
        merge="cells", mask_order=order, dense_fallback=1.0, object_mask_threshold=0.3, overlap_threshold=0.0
    )
    tasks = ("semantic", "panoptic")
    out = postprocess_batch(logits, masks, [meta], tasks, cfg, table)[0]
    ref = dense_reference(logits, masks, [meta], tasks, cfg, table)[0]
    np.testing.assert_array_equal(out.semantic, ref.semantic)
    np.testing.assert_array_equal(out.panoptic.id_map, ref.panoptic.id_map)
    assert out.panoptic.segments == ref.panoptic.segments and len(ref.panoptic.segments) >= 1
    assert len(np.unique(ref.semantic)) >= 5
