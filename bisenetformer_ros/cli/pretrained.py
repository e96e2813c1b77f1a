"""``bisenetformer pretrained list|get``: the authors' published models, downloaded and converted once."""

from __future__ import annotations

import argparse
import json


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "pretrained",
        help="list or fetch the published BiSeNetFormer models (ADE20K, 150 classes)",
        description="'list' shows the published models of the reference implementation and whether each is in the "
        "local cache; 'get NAME' downloads its weights (resuming an interrupted download), converts them into a "
        "model file in the cache and prints its path. The name then works wherever a model path does (the node's "
        "'model' parameter, --model). Cache: $BISENETFORMER_CACHE or ~/.cache/bisenetformer_ros/pretrained.",
    )
    sub = p.add_subparsers(dest="action", metavar="<action>")
    sub.required = True
    ls = sub.add_parser("list", help="published models and their cache state")
    ls.add_argument("--json", action="store_true", help="print JSON instead of a table")
    ls.set_defaults(func=run_list)
    get = sub.add_parser("get", help="download and convert a published model; prints the model file's path")
    get.add_argument("name", help="e.g. bisenetformer-s-ade (see 'bisenetformer pretrained list')")
    get.add_argument("--url", default=None, help="download from here instead of the published URL (a mirror)")
    get.add_argument("--force", action="store_true", help="download and convert again even if cached")
    get.add_argument("--quiet", "-q", action="store_true", help="no progress bar")
    get.set_defaults(func=run_get)


def run_list(args: argparse.Namespace) -> int:
    from bisenetformer_ros.model.hub import cache_dir, list_published

    rows = list_published()
    if args.json:
        print(
            json.dumps(
                [
                    {
                        "name": r.name,
                        "backbone": r.backbone,
                        "classes": r.num_classes,
                        "image_size": r.image_size,
                        "reported_mIoU": r.reported_miou,
                        "url": r.url,
                        "cached": str(r.cached) if r.cached else None,
                    }
                    for r in rows
                ],
                indent=2,
            )
        )
        return 0
    print(f"{'name':<22} {'backbone':<8} {'classes':>7} {'size':>5} {'mIoU':>6}  cached  url")
    for r in rows:
        miou = f"{r.reported_miou:.1f}" if r.reported_miou is not None else "-"
        print(
            f"{r.name:<22} {r.backbone:<8} {r.num_classes:>7} {r.image_size:>5} {miou:>6}  "
            f"{'yes' if r.cached else 'no':<6}  {r.url}"
        )
    print(f"cache: {cache_dir()}  (mIoU: ADE20K val as reported by the authors)")
    return 0


def run_get(args: argparse.Namespace) -> int:
    from bisenetformer_ros.model.hub import get_published

    try:
        path = get_published(args.name, url=args.url, force=args.force, progress=not args.quiet)
    except ConnectionError as exc:
        raise RuntimeError(str(exc)) from None
    print(path)
    return 0
