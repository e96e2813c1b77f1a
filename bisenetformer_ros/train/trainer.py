"""The training loop: AdamW with backbone multiplier, warm-up + step/poly schedule, gradient clipping, AMP,
gradient accumulation, ``torchrun`` DDP, exact resume, TensorBoard, progress bar.

Exact resume without saving data-loader state: the images of every step are a pure function of ``(seed, step)``
(which dataset indices, which augmentation draws), so after a restart the loop simply continues at the saved step.
Together with the model, optimiser, scheduler, scaler and every process's torch RNG states (CPU and CUDA; the matcher's
point sampling draws from them) in the checkpoint, an interrupted run ends with bit-identical weights, also under DDP
when it resumes with the same number of processes.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

from bisenetformer_ros.data.classes import ClassTable
from bisenetformer_ros.data.datasets import SampleDataset, build_dataset
from bisenetformer_ros.data.sample import Sample, check_class_ids
from bisenetformer_ros.data.transforms import Augmenter
from bisenetformer_ros.inference.base import resolve_device
from bisenetformer_ros.model.bisenetformer import BiSeNetFormer, build_model
from bisenetformer_ros.model.checkpoint import (
    FORMAT,
    atomic_torch_save,
    load_state_dict_checked,
    read_checkpoint,
    save_model,
)
from bisenetformer_ros.model.inference_defaults import InferenceDefaults, recipe_input_size
from bisenetformer_ros.model.preprocess import IMAGENET_MEAN, IMAGENET_STD
from bisenetformer_ros.train.config import TrainConfig, dump_config
from bisenetformer_ros.train.criterion import SetCriterion
from bisenetformer_ros.train.targets import Targets, build_targets

LAST = "last.pt"
LOG = logging.getLogger(__name__)


@dataclass
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def init_distributed(device: torch.device) -> DistInfo:
    """Join the process group that ``torchrun`` describes in the environment (gloo on CPU, NCCL on CUDA)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistInfo()
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return DistInfo(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")))


def param_groups(model: BiSeNetFormer, cfg: TrainConfig) -> list[dict[str, Any]]:
    """AdamW groups: backbone at ``lr * backbone_lr_mult``; norms and embeddings without weight decay."""
    o = cfg.optim
    backbone = {id(p) for p in model.backbone_parameters()}
    groups: dict[tuple[float, float], list[nn.Parameter]] = {}
    seen: set[int] = set()
    for module in model.modules():
        for pname, p in module.named_parameters(recurse=False):
            if not p.requires_grad or id(p) in seen:
                continue
            seen.add(id(p))
            lr = o.lr * (o.backbone_lr_mult if id(p) in backbone else 1.0)
            wd = o.weight_decay
            if isinstance(module, (nn.BatchNorm2d, nn.LayerNorm, nn.GroupNorm, nn.SyncBatchNorm)):
                wd = o.weight_decay_norm
            elif isinstance(module, nn.Embedding) or "embed" in pname:
                wd = o.weight_decay_embed
            groups.setdefault((lr, wd), []).append(p)
    return [{"params": ps, "lr": lr, "initial_lr": lr, "weight_decay": wd} for (lr, wd), ps in groups.items()]


def lr_factor(cfg: TrainConfig, it: int) -> float:
    """Multiplier of the base learning rates at iteration ``it`` (warm-up, then step or poly decay)."""
    o = cfg.optim
    if o.schedule == "poly":
        f = (1 - min(it, cfg.max_iters) / cfg.max_iters) ** o.poly_power
    else:
        f = o.gamma ** sum(it >= int(frac * cfg.max_iters) for frac in o.step_fractions)
    if o.warmup_iters > 0 and it < o.warmup_iters:
        alpha = it / o.warmup_iters
        f *= o.warmup_factor * (1 - alpha) + alpha
    return f


def samples_to_batch(samples: list[Sample], device: torch.device) -> torch.Tensor:
    """Stack equally sized RGB uint8 samples into an ImageNet-normalised float batch on ``device``."""
    x = torch.from_numpy(np.stack([s.image for s in samples])).to(device).permute(0, 3, 1, 2).float()
    mean = torch.tensor(IMAGENET_MEAN, device=device).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD, device=device).view(1, 3, 1, 1)
    return (x - mean) / std


class StepSource(torch.utils.data.Dataset):
    """Item ``k`` = the augmented samples and targets of micro-batch ``k`` (a pure function of ``seed`` and ``k``)."""

    def __init__(self, dataset: SampleDataset, augmenter: Augmenter, cfg: TrainConfig, dist_info: DistInfo) -> None:
        self.dataset = dataset
        self.augmenter = augmenter
        self.cfg = cfg
        self.dist = dist_info
        self.skipped = 0

    def __len__(self) -> int:
        return self.cfg.max_iters * accumulation_steps(self.cfg, self.dist.world_size)

    def __getitem__(self, k: int) -> tuple[list[Sample], list[Targets]]:
        cfg = self.cfg
        rng = np.random.default_rng([cfg.seed, k, self.dist.rank])
        samples, targets = [], []
        while len(samples) < cfg.batch_per_step:
            index = int(rng.integers(len(self.dataset)))
            try:
                sample = self.dataset[index]
                check_class_ids(sample, cfg.model.num_classes, self.dataset.class_table.ignore_label)
            except (OSError, ValueError) as exc:
                if not cfg.data.skip_bad:
                    raise
                self.skipped += 1
                if self.skipped > 100 and self.skipped > len(samples) * 10:
                    raise RuntimeError(f"too many unreadable samples (last: {exc})") from exc
                continue
            sample = self.augmenter(sample, rng)
            samples.append(sample)
            targets.append(
                build_targets(sample, cfg.data.task, cfg.model.num_classes, self.dataset.class_table.ignore_label)
            )
        return samples, targets


def accumulation_steps(cfg: TrainConfig, world_size: int) -> int:
    per_step = cfg.batch_per_step * world_size
    if cfg.batch_size % per_step != 0:
        raise ValueError(
            f"batch_size {cfg.batch_size} is not a multiple of batch_per_step ({cfg.batch_per_step}) x processes "
            f"({world_size}); choose values whose product divides the global batch"
        )
    return cfg.batch_size // per_step


def _dataset_kwargs(cfg: TrainConfig) -> dict[str, Any]:
    # skip_bad also drops samples whose files are missing when the split is listed (only passed when set, so a
    # user-registered loader without that argument keeps working).
    kwargs: dict[str, Any] = {"skip_bad": True} if cfg.data.skip_bad else {}
    if cfg.data.dataset == "synthetic":
        kwargs.update(num_images=cfg.data.num_images, image_size=cfg.data.image_size)
    return kwargs


@dataclass
class _LogWindow:
    """What the next log line averages: loss terms summed per optimiser step since the previous line."""

    t_start: float  # when the loop began (the time budget and elapsed_min count from here)
    t_last: float  # when the previous line was written
    sums: dict[str, float] = field(default_factory=dict)
    steps: int = 0

    def add(self, losses: dict[str, torch.Tensor], accum: int) -> None:
        """Add one micro-batch's loss terms (the total and the per-term sums, not the per-layer ones)."""
        for k, v in losses.items():
            if "_" not in k.removeprefix("loss_") or k == "loss":
                self.sums[k] = self.sums.get(k, 0.0) + float(v.detach()) / accum

    def restart(self, now: float) -> None:
        self.sums = {}
        self.steps = 0
        self.t_last = now


class Trainer:
    """``Trainer(cfg, run_dir).train()``; ``resume=True`` continues from ``run_dir/last.pt`` when it exists."""

    def __init__(self, cfg: TrainConfig, run_dir: str | Path, resume: bool = True, progress: bool = True) -> None:
        cfg.validate()
        self.cfg = cfg
        self.run_dir = Path(run_dir)
        self.progress = progress
        # The inference rule, with the process's local rank as the GPU that 'auto'/'cuda' mean under torchrun.
        probe = resolve_device(cfg.device, int(os.environ.get("LOCAL_RANK", "0")))
        self.dist = init_distributed(probe)
        self.device = resolve_device(cfg.device, self.dist.local_rank)
        self.accum = accumulation_steps(cfg, self.dist.world_size)
        if self.device.type == "cuda":
            torch.cuda.set_device(self.device)  # NCCL collectives (and all_gather_object) use the current device
        torch.manual_seed(cfg.seed + self.dist.rank)
        if self.device.type == "cpu":
            torch.set_flush_denormal(True)  # tiny gradients of a from-scratch net otherwise hit slow denormal paths
        self.train_set = build_dataset(
            cfg.data.dataset,
            cfg.data.train_split,
            cfg.data.root,
            **_dataset_kwargs(cfg),
        )
        self.class_table: ClassTable = self.train_set.class_table
        if self.class_table.num_classes != cfg.model.num_classes:
            raise ValueError(
                f"dataset '{cfg.data.dataset}' has {self.class_table.num_classes} classes but model.num_classes is "
                f"{cfg.model.num_classes}"
            )
        self.model = build_model(cfg.model).to(self.device)
        if cfg.pretrained:
            from bisenetformer_ros.model.pretrained import load_backbone_weights

            load_backbone_weights(self.model, cfg.pretrained)
        if cfg.init_from:
            self._warm_start(Path(cfg.init_from))
        self.ddp_model: nn.Module = self.model
        if self.dist.world_size > 1:
            self.ddp_model = nn.parallel.DistributedDataParallel(
                self.model, device_ids=[self.device.index] if self.device.type == "cuda" else None
            )
        self.criterion = SetCriterion(cfg.model.num_classes, cfg.criterion).to(self.device)
        self.optimizer = torch.optim.AdamW(param_groups(self.model, cfg), lr=cfg.optim.lr)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, lambda it: lr_factor(cfg, it))
        self.amp_dtype = {"none": None, "fp16": torch.float16, "bf16": torch.bfloat16}[cfg.amp]
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=cfg.amp == "fp16")
        self.iteration = 0
        self.writer = None
        if resume and (self.run_dir / LAST).is_file():
            self.load_checkpoint(self.run_dir / LAST)

    # -- checkpoints -----------------------------------------------------------------------------------------------
    def rng_states(self) -> list[dict[str, Any]]:
        """Every process's torch RNG states (CPU, and CUDA on a GPU), indexed by rank. Collective under DDP: all
        ranks must call it together (they do, at the same iterations)."""
        local = {
            "cpu": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state(self.device) if self.device.type == "cuda" else None,
        }
        if self.dist.world_size == 1:
            return [local]
        states: list[Any] = [None] * self.dist.world_size
        dist.all_gather_object(states, local)
        return [{k: (v.cpu() if isinstance(v, torch.Tensor) else v) for k, v in st.items()} for st in states]

    def checkpoint_state(self, rng: list[dict[str, Any]]) -> dict[str, Any]:
        """The checkpoint dict; ``rng`` is :meth:`rng_states` (gathered by every rank, so it is passed in, not
        gathered here where only rank 0 runs)."""
        return {
            "format": FORMAT,
            "model_config": self.cfg.model.to_dict(),
            "class_table": self.class_table.to_dict(),
            "state_dict": {k: v.detach().cpu().clone() for k, v in self.model.state_dict().items()},
            "extra": {"iteration": self.iteration, "train_config": dump_config(self.cfg), "task": self.cfg.data.task},
            "train_state": {
                "iteration": self.iteration,
                "optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict(),
                "scaler": self.scaler.state_dict(),
                "torch_rng": rng[0]["cpu"],  # rank 0's CPU state, as in checkpoints before rng_per_rank
                "rng_per_rank": rng,
            },
        }

    def _warm_start(self, path: Path) -> None:
        """Copy the matching tensors (same name and shape) of a model file; the file is read as plain tensors, so a
        model of an older architecture (which ``load_model`` refuses) still donates what fits."""
        state = read_checkpoint(path, map_location="cpu")["state_dict"]
        own = self.model.state_dict()
        copied = {k: v for k, v in state.items() if k in own and tuple(v.shape) == tuple(own[k].shape)}
        with torch.no_grad():
            for k, v in copied.items():
                own[k].copy_(v.to(own[k].dtype))
        fresh = sorted(set(own) - set(copied))
        LOG.info(
            "warm start from %s: %d of %d tensors copied; freshly initialised: %s",
            path,
            len(copied),
            len(own),
            ", ".join(fresh) if fresh else "none",
        )

    def save_checkpoint(self, name: str = LAST) -> Path | None:
        """Write the training checkpoint (rank 0). Collective under DDP: every rank calls it at the same time."""
        rng = self.rng_states()
        if not self.dist.is_main:
            return None
        return atomic_torch_save(self.checkpoint_state(rng), self.run_dir / name)

    def save_model(self, path: Path, half: bool = False) -> Path | None:
        """Weights-only model file (no optimiser state): what the node, ``evaluate`` and ``export`` load."""
        if not self.dist.is_main:
            return None
        extra = {"iteration": self.iteration, "task": self.cfg.data.task, "train_config": dump_config(self.cfg)}
        # Run at the training scale by default (the paper's protocol); the post-processing order stays Mask2Former's
        # until `bisenetformer choose-mask-order` measures both on the validation split and records the better one.
        inference = InferenceDefaults(input_size=recipe_input_size(extra["train_config"]))
        return save_model(
            path, self.model, self.cfg.model, self.class_table, extra=extra, half=half, inference=inference
        )

    def load_checkpoint(self, path: Path) -> None:
        data = read_checkpoint(path, map_location="cpu")
        saved = data["model_config"]
        ours = self.cfg.model.to_dict()
        diffs = [f"{k}: checkpoint {saved.get(k)!r} != config {v!r}" for k, v in ours.items() if saved.get(k) != v]
        if diffs:
            raise ValueError(f"'{path}' was trained with a different architecture: " + "; ".join(diffs))
        table = ClassTable.from_dict(data["class_table"])
        table_diffs = self.class_table.differences(table)
        if table_diffs:
            raise ValueError(f"'{path}' has a different class table: " + "; ".join(table_diffs))
        load_state_dict_checked(self.model, data["state_dict"], source=str(path))
        state = data.get("train_state")
        if not isinstance(state, dict):
            raise ValueError(f"'{path}' is a model file, not a training checkpoint (no train_state); cannot resume")
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.scaler.load_state_dict(state["scaler"])
        self.iteration = int(state["iteration"])
        self._restore_rng(state, path)

    def _restore_rng(self, state: dict[str, Any], path: Path) -> None:
        """This process's RNG states from the checkpoint; when the number of processes changed (or the checkpoint
        predates per-rank states) each rank gets a distinct stream derived from (seed, iteration, rank) instead, and
        the log says the continuation is not bit-identical to an uninterrupted run."""
        per_rank = state.get("rng_per_rank")
        if isinstance(per_rank, list) and len(per_rank) == self.dist.world_size:
            mine = per_rank[self.dist.rank]
            torch.set_rng_state(mine["cpu"])
            if self.device.type == "cuda" and mine.get("cuda") is not None:
                torch.cuda.set_rng_state(mine["cuda"], self.device)
            elif self.device.type == "cuda":
                LOG.warning("'%s' has no CUDA RNG state (saved on a CPU): random draws on the GPU restart", path)
            return
        if per_rank is None and self.dist.world_size == 1 and "torch_rng" in state:  # single-process, older file
            torch.set_rng_state(state["torch_rng"])
            return
        saved = len(per_rank) if isinstance(per_rank, list) else "an unknown number of"
        LOG.warning(
            "'%s' was saved by %s process(es), this run has %d: RNG streams are re-seeded per rank, so the resumed "
            "run is not bit-identical to an uninterrupted one",
            path,
            saved,
            self.dist.world_size,
        )
        torch.manual_seed(hash((self.cfg.seed, self.iteration, self.dist.rank)) & 0x7FFFFFFF)

    # -- loop ------------------------------------------------------------------------------------------------------
    def _loader(self) -> torch.utils.data.DataLoader:
        # Padding must carry the dataset's ignore label: with > 255 classes (ignore 65535) the default 255 is a class.
        augment = replace(self.cfg.augment, ignore_label=self.class_table.ignore_label)
        source = StepSource(self.train_set, Augmenter(augment), self.cfg, self.dist)
        start = self.iteration * self.accum
        # A DataLoader without its own generator draws its workers' base seed from the global torch RNG when it is
        # iterated, i.e. once per (re)start: a resumed run would then continue from a different RNG state than an
        # uninterrupted one (matcher and point sampling use that RNG) and exact resume would be lost.
        return torch.utils.data.DataLoader(
            source,
            batch_size=None,
            sampler=range(start, len(source)),
            num_workers=self.cfg.data.num_workers,
            persistent_workers=False,
            generator=torch.Generator().manual_seed(self.cfg.seed),
        )

    def _log(self, record: dict[str, Any]) -> None:
        if not self.dist.is_main:
            return
        with open(self.run_dir / "log.jsonl", "a") as f:
            f.write(json.dumps(record) + "\n")
        if self.writer is not None:
            for k, v in record.items():
                if isinstance(v, (int, float)) and k != "iter":
                    self.writer.add_scalar(k if "/" in k else f"train/{k}", v, record["iter"])

    def _image_panel(self, samples: list[Sample], outputs: dict[str, Any]) -> None:
        """TensorBoard panel: input | ground truth | prediction (semantic colours) for the first image."""
        if self.writer is None:
            return
        logits = outputs["pred_logits"][:1].detach().float().softmax(-1)[..., :-1]
        masks = outputs["pred_masks"][:1].detach().float().sigmoid()
        sem = torch.einsum("bqk,bqhw->bkhw", logits, masks)
        h, w = samples[0].size
        sem = torch.nn.functional.interpolate(sem, size=(h, w), mode="bilinear", align_corners=False)
        pred = sem.argmax(1)[0].cpu().numpy()
        palette = np.array(self.class_table.colors + ((0, 0, 0),) * (256 - self.class_table.num_classes), np.uint8)
        gt = palette[np.minimum(samples[0].semantic, 255)]
        panel = np.concatenate([samples[0].image, gt, palette[pred]], axis=1)
        self.writer.add_image("train/input_gt_pred", panel, self.iteration, dataformats="HWC")

    def train(self) -> Path:
        """Run until ``max_iters`` (or ``max_minutes``) and return the path of the last training checkpoint."""
        self._open_run_dir()
        bar = self._progress_bar()
        self.ddp_model.train()
        t_start = time.monotonic()
        window = _LogWindow(t_start=t_start, t_last=t_start)
        micro = 0
        for samples, targets in self._loader():
            if self.iteration >= self.cfg.max_iters:
                break
            sync = micro == self.accum - 1
            outputs = self._micro_step(samples, targets, sync, window)
            micro += 1
            if not sync:
                continue
            micro = 0
            grad_norm = self._optimizer_step()
            window.steps += 1
            bar.update(1)
            if self._should_log():
                record = self._log_record(window, grad_norm)
                bar.set_postfix(loss=f"{record.get('loss', math.nan):.3f}")
                self._log(record)
            if self.iteration % self.cfg.image_every == 0:
                self._image_panel(samples, outputs)
            out_of_time = self._out_of_time(window.t_start)
            self._save_due(out_of_time)
            if out_of_time:
                break
        bar.close()
        return self._finish()

    def _open_run_dir(self) -> None:
        """Create the run folder; rank 0 writes the resolved config and opens TensorBoard when it is installed."""
        self.run_dir.mkdir(parents=True, exist_ok=True)
        if not self.dist.is_main:
            return
        (self.run_dir / "config.yaml").write_text(dump_config(self.cfg))
        try:
            from torch.utils.tensorboard import SummaryWriter

            self.writer = SummaryWriter(str(self.run_dir / "tb"))
        except ImportError:  # tensorboard is optional ([train] extra)
            self.writer = None

    def _progress_bar(self) -> Any:
        from tqdm import tqdm

        return tqdm(
            total=self.cfg.max_iters,
            initial=self.iteration,
            desc=self.cfg.name,
            unit="it",
            disable=not (self.progress and self.dist.is_main),
            dynamic_ncols=True,
        )

    def _micro_step(
        self, samples: list[Sample], targets: list[Targets], sync: bool, window: _LogWindow
    ) -> dict[str, Any]:
        """Forward and backward of one micro-batch (gradients accumulate; under DDP they are all-reduced only on
        the ``sync`` micro-batch that completes the step); its loss terms are added to ``window``."""
        images = samples_to_batch(samples, self.device)
        targets = [t.to(self.device) for t in targets]
        ctx = self.ddp_model.no_sync() if (self.dist.world_size > 1 and not sync) else contextlib.nullcontext()
        with ctx:
            with torch.autocast(self.device.type, dtype=self.amp_dtype, enabled=self.amp_dtype is not None):
                outputs = self.ddp_model(images)
            losses = self.criterion(outputs, targets)
            loss = losses["loss"] / self.accum
            if not torch.isfinite(loss):
                raise FloatingPointError(f"loss is {loss.item()} at iteration {self.iteration}; lower optim.lr")
            self.scaler.scale(loss).backward()
        window.add(losses, self.accum)
        return outputs

    def _optimizer_step(self) -> float:
        """Clip, step optimiser / scaler / scheduler and advance the iteration; returns the gradient norm before
        clipping."""
        self.scaler.unscale_(self.optimizer)
        grad_norm = float(torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg.optim.grad_clip))
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.optimizer.zero_grad(set_to_none=True)
        self.scheduler.step()
        self.iteration += 1
        return grad_norm

    def _should_log(self) -> bool:
        return self.iteration % self.cfg.log_every == 0 or self.iteration == self.cfg.max_iters

    def _log_record(self, window: _LogWindow, grad_norm: float) -> dict[str, Any]:
        """The log line of the steps since the previous one (loss terms averaged over them); resets ``window``."""
        now = time.monotonic()
        record = {
            "iter": self.iteration,
            **{k: v / window.steps for k, v in window.sums.items()},
            "grad_norm": grad_norm,
            "lr": self.optimizer.param_groups[0]["lr"],
            "sec_per_iter": (now - window.t_last) / window.steps,
            "elapsed_min": (now - window.t_start) / 60,
        }
        window.restart(now)
        return record

    def _out_of_time(self, t_start: float) -> bool:
        """Whether the ``max_minutes`` budget is spent. Collective under DDP when a budget is set."""
        cfg = self.cfg
        out_of_time = cfg.max_minutes is not None and (time.monotonic() - t_start) / 60 >= cfg.max_minutes
        if cfg.max_minutes is not None and self.dist.world_size > 1:
            # Each process has its own clock: one that stopped alone would leave the others waiting forever for
            # its gradients. Stop together as soon as any process is out of time.
            flag = torch.tensor([float(out_of_time)], device=self.device)
            dist.all_reduce(flag, op=dist.ReduceOp.MAX)
            out_of_time = bool(flag.item())
        return out_of_time

    def _save_due(self, out_of_time: bool) -> None:
        """The training checkpoint and half-precision snapshot that are due after this step."""
        cfg = self.cfg
        if self.iteration % cfg.checkpoint_every == 0 or self.iteration == cfg.max_iters or out_of_time:
            self.save_checkpoint()
        if cfg.snapshot_every and self.iteration % cfg.snapshot_every == 0:
            self.save_model(self.run_dir / "snapshots" / f"model_{self.iteration:07d}.pt", half=True)

    def _finish(self) -> Path:
        """Close TensorBoard and make sure ``last.pt`` exists (a run resumed at its end saved none)."""
        if self.writer is not None:
            self.writer.close()
        last = self.run_dir / LAST
        # Only rank 0 can see whether a checkpoint exists (it writes them); the save itself is collective.
        missing = torch.tensor([float(self.dist.is_main and not last.is_file())], device=self.device)
        if self.dist.world_size > 1:
            dist.all_reduce(missing, op=dist.ReduceOp.MAX)
        if bool(missing.item()):
            self.save_checkpoint()
        if self.dist.world_size > 1:
            dist.barrier()
        return last
