"""``bisenetformer train``: train BiSeNetFormer from a YAML recipe (``config/train/*.yaml``) with overrides.

Single process: ``bisenetformer train --config config/train/synthetic.yaml``. Several GPUs or CPU processes:
``torchrun --nproc_per_node N -m bisenetformer_ros.cli.main train ...`` (DDP; the global batch is kept by
accumulation). Re-running the same command continues from ``<run-dir>/last.pt``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from bisenetformer_ros.cli.options import add_quiet_option, check_output_file


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "train",
        help="train a model from a YAML recipe (resumes automatically from <run-dir>/last.pt)",
        description="Train BiSeNetFormer. Overrides are key=value pairs with dotted keys, values parsed as YAML, "
        "e.g. optim.lr=1e-4 augment.crop_size=[512,1024] max_iters=1000.",
    )
    p.add_argument("--config", type=Path, required=True, help="training recipe (see config/train/)")
    p.add_argument("--run-dir", type=Path, default=None, help="output folder (default runs/<name>)")
    p.add_argument("--no-resume", action="store_true", help="start from scratch even if <run-dir>/last.pt exists")
    p.add_argument("--export", type=Path, default=None, help="also write the final weights as a model file here")
    p.add_argument("--half", action="store_true", help="store the --export file in fp16 (half the size)")
    add_quiet_option(p)  # logs still go to log.jsonl
    p.add_argument("overrides", nargs="*", metavar="key=value", help="recipe overrides, before or after the flags")
    p.set_defaults(func=run, accepts_overrides=True)


def run(args: argparse.Namespace) -> int:
    from bisenetformer_ros.train.config import load_config
    from bisenetformer_ros.train.trainer import Trainer

    if args.export is not None:
        check_output_file(args.export, "--export")
    cfg = load_config(args.config, args.overrides)
    run_dir = args.run_dir or Path("runs") / cfg.name
    trainer = Trainer(cfg, run_dir, resume=not args.no_resume, progress=not args.quiet)
    last = trainer.train()
    if trainer.dist.is_main:
        print(f"checkpoint: {last}")
        if args.export is not None:
            print(f"model file: {trainer.save_model(args.export, half=args.half)}")
    return 0
