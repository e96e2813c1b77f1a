"""``bisenetformer convert focoos``: a checkpoint of the authors' reference implementation -> a model file of ours."""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "convert",
        help="convert a published reference checkpoint (FocoosAI/focoos model_final.pth) into a model file",
        description="Reads the reference implementation's model_final.pth ({'model': state_dict}, loaded with "
        "weights_only=True), maps every tensor onto this project's network (renames, the packed attention "
        "in-projection split into q/k/v, the loss buffer dropped) and writes a normal model file with the class "
        "table, the reference's pre-processing (pixel mean/std, 640 px short side) and its post-processing order. "
        "A file that does not fit is refused with the missing, unexpected and mis-shaped keys; nothing is written.",
    )
    p.add_argument("source", choices=["focoos"], help="where the checkpoint comes from (the reference implementation)")
    p.add_argument("weights", type=Path, help="the reference's model_final.pth")
    which = p.add_mutually_exclusive_group(required=True)
    which.add_argument("--variant", help="a published model: " + ", ".join(_published_names()))
    which.add_argument(
        "--config",
        type=Path,
        help="registry-style JSON describing any model of the reference family (name, classes, im_size, config{...})",
    )
    p.add_argument("--output", "-o", type=Path, required=True, help="model file to write (.pt)")
    p.add_argument("--force", action="store_true", help="overwrite --output if it exists")
    p.set_defaults(func=run)


def _published_names() -> list[str]:
    # The table is small and import-light (no torch at --help time would be nicer, but names must stay one fact).
    from bisenetformer_ros.model.reference import PUBLISHED_ENTRIES

    return sorted(PUBLISHED_ENTRIES)


def run(args: argparse.Namespace) -> int:
    from bisenetformer_ros.model.reference import convert_reference, model_from_registry, published_model

    if args.output.exists() and not args.force:
        raise ValueError(f"--output '{args.output}' exists; pass --force to overwrite it")
    if args.output.is_dir():
        raise ValueError(f"--output '{args.output}' is a directory; give a file name such as model.pt")
    if args.variant:
        model = published_model(args.variant)
    else:
        if not args.config.is_file():
            raise FileNotFoundError(f"--config '{args.config}' does not exist")
        try:
            entry = json.loads(args.config.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise ValueError(f"--config '{args.config}' is not valid JSON ({exc})") from None
        model = model_from_registry(entry)
    path = convert_reference(args.weights, model, args.output)
    print(f"wrote {path} ({model.name}: {model.config.backbone}, {model.config.num_classes} classes)")
    return 0
