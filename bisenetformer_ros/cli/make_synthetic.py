"""``bisenetformer make-synthetic OUT``: write the synthetic scenes to disk as a COCO-panoptic dataset.

Why on disk when training renders scenes on the fly: a written dataset exercises exactly the file path real data
takes (``data.dataset=synthetic data.root=OUT`` reads it with the COCO-panoptic loader), can be inspected with any
COCO tool, and can be copied to another machine. Image ``i`` of ``train`` is ``render_scene(TRAIN_SEED + seed + i)``
and of ``val`` ``render_scene(VAL_SEED + seed + i)``, the same scenes the on-the-fly dataset renders for seed 0.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from bisenetformer_ros.atomic_io import atomic_dir
from bisenetformer_ros.cli.options import add_quiet_option, check_output_dir, int_at_least


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "make-synthetic",
        help="write synthetic scenes as a COCO-panoptic dataset (train and val splits)",
        description="Writes OUT/images/<split>/*.png, OUT/panoptic/<split>/*.png, OUT/panoptic_<split>.json and "
        "OUT/semantic/<split>/*.png for the splits train and val. Read it back with "
        "`bisenetformer train data.dataset=synthetic data.root=OUT` (or dataset coco_panoptic).",
    )
    p.add_argument("out", help="output folder (must not exist or be empty, unless --overwrite)")
    p.add_argument("--train", type=int_at_least(0), default=256, help="number of training images (default 256)")
    p.add_argument("--val", type=int_at_least(0), default=64, help="number of validation images (default 64)")
    p.add_argument(
        "--size",
        type=int_at_least(16),
        nargs=2,
        default=None,
        metavar=("H", "W"),
        help="image height and width (default 128 128)",
    )
    p.add_argument("--overwrite", action="store_true", help="replace an existing dataset in OUT")
    p.add_argument(
        "--seed",
        type=int,
        default=0,
        help="offset added to the split seeds (train starts at TRAIN_SEED+seed, val at VAL_SEED+seed); 0 gives the "
        "standard splits",
    )
    add_quiet_option(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from bisenetformer_ros.data.synthetic import DEFAULT_SIZE, TRAIN_SEED, VAL_SEED, write_dataset

    height, width = args.size if args.size is not None else DEFAULT_SIZE
    if args.train == 0 and args.val == 0:
        raise ValueError("--train 0 --val 0 writes nothing; ask for at least one image")
    out = check_output_dir(args.out, "OUT")
    if out.exists() and any(out.iterdir()) and not args.overwrite:
        raise ValueError(f"'{out}' exists and is not empty; choose a new folder or pass --overwrite")
    if args.seed < 0 or TRAIN_SEED + args.seed + args.train > VAL_SEED:
        raise ValueError(
            f"--seed {args.seed} with --train {args.train} would overlap the validation seeds (from {VAL_SEED}); "
            "training and validation scenes must stay disjoint"
        )
    # Written next to OUT and moved into place at the end: an interrupted or failed run leaves no partial dataset.
    with atomic_dir(out) as tmp:
        for split, n, seed in (("train", args.train, TRAIN_SEED), ("val", args.val, VAL_SEED)):
            if n == 0:
                continue
            write_dataset(tmp, split, n, seed + args.seed, height, width, progress=not args.quiet)
    splits = " and ".join(f"{n} {s}" for s, n in (("train", args.train), ("val", args.val)) if n)
    print(f"wrote {splits} images ({height}x{width}) to {Path(out)}")
    return 0
