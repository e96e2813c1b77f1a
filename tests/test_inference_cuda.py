"""PyTorch on a CUDA GPU: parity with the CPU reference, fp16/bf16, pinned uploads, post-processing on the device,
benchmark memory figures and a training step whose checkpoint carries the CUDA RNG state.

Needs a CUDA GPU visible to torch; skipped (with the reason) elsewhere. ``tools/device_gpu_checks.sh`` runs this module
on the lent GPU machine together with the TensorRT tests and the GPU benchmark.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from tests.inference_models import camera_like_images

if not torch.cuda.is_available():
    pytest.skip("the CUDA tests need a CUDA GPU visible to torch", allow_module_level=True)

from bisenetformer_ros.data.classes import CITYSCAPES
from bisenetformer_ros.data.synthetic import VAL_SEED, render_scene
from bisenetformer_ros.inference import Segmenter, create_backend
from bisenetformer_ros.inference.benchmark import run_benchmark
from bisenetformer_ros.model import PostprocessConfig, PreprocessMeta, postprocess_batch
from bisenetformer_ros.resources import default_model_path

pytestmark = pytest.mark.gpu

SIZES = [(180, 240), (121, 317)]


@pytest.fixture(scope="module", autouse=True)
def strict_fp32() -> None:
    """fp32 parity means IEEE fp32 on both sides: TF32 convolutions/matmuls (PyTorch's cuDNN default) round inputs
    to 10 mantissa bits and would be measured instead of our code."""
    saved = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    yield
    torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved


def _labels(seg: Segmenter, images: list[np.ndarray]) -> list[np.ndarray]:
    return [r.output.semantic for r in seg.run(images, tasks=("semantic",))]


def _agreement(a: list[np.ndarray], b: list[np.ndarray]) -> float:
    return float(np.mean([(x == y).mean() for x, y in zip(a, b, strict=True)]))


def test_cuda_fp32_matches_cpu(tiny_model: Path) -> None:
    images = camera_like_images(SIZES)
    cpu = create_backend("torch", tiny_model, device="cpu")
    gpu = create_backend("torch", tiny_model, device="cuda")
    assert gpu.info.device.startswith("cuda") and gpu.input_device.type == "cuda"
    seg_cpu, seg_gpu = Segmenter(cpu), Segmenter(gpu)
    batch, _ = seg_cpu.preprocessor(images)
    logits_cpu, masks_cpu = cpu.infer(batch)
    logits_gpu, masks_gpu = gpu.infer(batch.cuda())
    assert (logits_gpu.float().cpu() - logits_cpu).abs().max() <= 1e-3
    assert (masks_gpu.float().cpu() - masks_cpu).abs().max() <= 1e-2 * max(1.0, float(masks_cpu.abs().max()))
    assert _agreement(_labels(seg_gpu, images), _labels(seg_cpu, images)) >= 0.999
    pan_cpu = seg_cpu.run(images, tasks=("panoptic",))
    pan_gpu = seg_gpu.run(images, tasks=("panoptic",))
    for c, g in zip(pan_cpu, pan_gpu, strict=True):
        assert [s.class_id for s in g.output.panoptic.segments] == [s.class_id for s in c.output.panoptic.segments]


@pytest.mark.parametrize(("precision", "minimum"), [("fp16", 0.99), ("bf16", 0.98)])
def test_cuda_half_precision_labels_agree_with_fp32(precision: str, minimum: float) -> None:
    """The shipped (trained) model in reduced precision on held-out synthetic scenes: fp16 keeps >= 99 % of the fp32
    labels (the TensorRT fp16 criterion); bf16, with 3 fewer mantissa bits, >= 98 % (99.5 % measured on a CPU)."""
    if precision == "bf16" and not torch.cuda.is_bf16_supported():
        pytest.skip(f"{torch.cuda.get_device_name()} has no bf16")
    try:
        default_model_path()
    except FileNotFoundError as exc:
        pytest.skip(f"the embedded default model is not built: {exc}")
    images = [render_scene(VAL_SEED + i, 128, 128).image for i in range(8)]
    ref = _labels(Segmenter.from_model(None, device="cuda", precision="fp32"), images)
    seg = Segmenter.from_model(None, device="cuda", precision=precision)
    assert seg.backend.input_dtype == {"fp16": torch.float16, "bf16": torch.bfloat16}[precision]
    assert _agreement(_labels(seg, images), ref) >= minimum


def test_pinned_uploads_batch_equals_single_frames(tiny_model: Path) -> None:
    """Equal-size frames go through the reused pinned buffer; batching them changes no label."""
    seg = Segmenter.from_model(tiny_model, device="cuda")
    assert seg._uploader is not None, "a CUDA torch backend uploads through pinned memory"
    images = camera_like_images([(200, 300)] * 4, seed=5)
    batched = _labels(seg, images)
    single = [_labels(seg, [img])[0] for img in images]
    assert _agreement(batched, single) >= 0.999
    again = _labels(seg, images)  # the buffer is reused: the second call sees the new frames, not stale ones
    for a, b in zip(again, batched, strict=True):
        np.testing.assert_array_equal(a, b)


def test_postprocess_on_the_device_matches_the_host() -> None:
    """Post-processing runs where the logits are; on the GPU it gives the CPU's labels and segment table."""
    gen = torch.Generator().manual_seed(11)
    q, k = 20, CITYSCAPES.num_classes
    logits = torch.randn(1, q, k + 1, generator=gen) * 3
    logits[0, :8, :k] += 10
    low = torch.randn(1, q, 6, 8, generator=gen) * 6
    masks = torch.nn.functional.interpolate(low, size=(24, 32), mode="bilinear", align_corners=False)
    meta = PreprocessMeta(orig_size=(180, 250), resized_size=(190, 256), padded_size=(192, 256))
    for stride in (1, 4):
        cfg = PostprocessConfig(overlap_threshold=0.5, label_stride=stride)
        tasks = ("semantic", "panoptic", "instance")
        [cpu] = postprocess_batch(logits, masks, [meta], tasks, cfg, CITYSCAPES)
        [gpu] = postprocess_batch(logits.cuda(), masks.cuda(), [meta], tasks, cfg, CITYSCAPES)
        assert isinstance(gpu.semantic, np.ndarray) and gpu.semantic.shape == (180, 250)
        assert (gpu.semantic == cpu.semantic).mean() >= 0.999
        assert [(s.class_id, s.is_thing) for s in gpu.panoptic.segments] == [
            (s.class_id, s.is_thing) for s in cpu.panoptic.segments
        ]
        for g, c in zip(gpu.panoptic.segments, cpu.panoptic.segments, strict=True):
            assert abs(g.area - c.area) <= max(5, 0.01 * c.area)
        np.testing.assert_array_equal(gpu.instances.classes, cpu.instances.classes)


def test_benchmark_reports_device_memory(tiny_model: Path) -> None:
    seg = Segmenter.from_model(tiny_model, device="cuda", precision="fp16")
    res = run_benchmark(seg, 256, 320, batch=2, iters=3, warmup=1)
    assert res.device_peak_mb is not None and res.device_peak_mb > 0
    assert res.fps > 0


def test_training_on_cuda_checkpoints_the_cuda_rng(tmp_path: Path) -> None:
    from bisenetformer_ros.model.checkpoint import read_checkpoint
    from bisenetformer_ros.train.config import load_config
    from bisenetformer_ros.train.trainer import Trainer

    repo = Path(__file__).resolve().parents[1]
    tiny = [f"model.{k}={v}" for k, v in {"num_queries": 8, "hidden_dim": 32, "nheads": 4, "dec_layers": 2}.items()]
    overrides = [*tiny, "data.image_size=[64,64]", "augment.base_size=64", "augment.crop_size=[64,64]"]
    overrides += ["batch_size=2", "batch_per_step=2", "max_iters=2", "device=cuda", "amp=fp16", "snapshot_every=0"]
    overrides += ["max_minutes=null", "log_every=1"]
    cfg = load_config(repo / "config" / "train" / "synthetic.yaml", overrides)
    trainer = Trainer(cfg, tmp_path, progress=False)
    trainer.train()
    state = read_checkpoint(tmp_path / "last.pt")["train_state"]
    [rank0] = state["rng_per_rank"]
    assert isinstance(rank0["cuda"], torch.Tensor) and rank0["cuda"].numel() > 0
    Trainer(cfg, tmp_path, progress=False)  # resume: this process's CUDA stream is the saved one again
    assert torch.equal(torch.cuda.get_rng_state(), rank0["cuda"])
