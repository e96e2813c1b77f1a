"""Published reference models on this machine: a user cache, resumable downloads, conversion, name resolution.

``bisenetformer pretrained get bisenetformer-s-ade`` downloads the authors' ``model_final.pth`` into the cache,
converts it (``model.reference.convert_reference``) into ``<cache>/bisenetformer-s-ade.pt`` and from then on the name
works wherever a model path does (node ``model`` parameter, CLI ``--model``). Nothing is fetched implicitly: a name
that is not in the cache is an error that says which command fetches it, so a robot never blocks on a download at
start-up.

Downloads go to ``<file>.part`` and continue from there with an HTTP ``Range`` request after an interruption; a
server that ignores the range (200 instead of 206) restarts the file from zero. The finished file is renamed into
place, so a half-downloaded file never looks complete.
"""

from __future__ import annotations

import os
import shutil
import sys
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from bisenetformer_ros.model.reference import PUBLISHED_ENTRIES, convert_reference, published_model

CACHE_ENV = "BISENETFORMER_CACHE"
CHUNK = 1 << 16


def cache_dir() -> Path:
    """``$BISENETFORMER_CACHE``, else ``$XDG_CACHE_HOME/bisenetformer_ros/pretrained`` (``~/.cache/...``)."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV]).expanduser()
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "bisenetformer_ros" / "pretrained"


def is_published_name(text: str | os.PathLike) -> bool:
    return str(text) in PUBLISHED_ENTRIES


def cached_model_path(name: str) -> Path:
    """Where the converted model file of a published model lives (whether or not it is there)."""
    published_model(name)  # validates the name
    return cache_dir() / f"{name}.pt"


def resolve_published(name: str) -> Path:
    """The converted model file of a published model, or FileNotFoundError saying how to fetch it."""
    path = cached_model_path(name)
    if not path.is_file():
        raise FileNotFoundError(
            f"pretrained model '{name}' is not in the cache ({path}); fetch it once with "
            f"`bisenetformer pretrained get {name}` (needs internet access), or convert a downloaded file with "
            f"`bisenetformer convert focoos model_final.pth --variant {name} --output {path}`"
        )
    return path


@dataclass(frozen=True)
class PublishedStatus:
    name: str
    backbone: str
    num_classes: int
    image_size: int
    reported_miou: float | None
    url: str
    cached: Path | None


def list_published() -> list[PublishedStatus]:
    """Every published model with whether its converted file is in the local cache."""
    rows = []
    for name in PUBLISHED_ENTRIES:
        model = published_model(name)
        path = cached_model_path(name)
        rows.append(
            PublishedStatus(
                name=name,
                backbone=model.config.backbone,
                num_classes=model.config.num_classes,
                image_size=model.image_size,
                reported_miou=model.reported_miou,
                url=str(model.weights_uri),
                cached=path if path.is_file() else None,
            )
        )
    return rows


def download(url: str, dest: Path, progress: bool = True, timeout: float = 30.0) -> Path:
    """Fetch ``url`` to ``dest``, resuming ``dest.part`` when a previous attempt was interrupted."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    have = part.stat().st_size if part.exists() else 0
    request = urllib.request.Request(url, headers={"User-Agent": "bisenetformer_ros"})
    if have:
        request.add_header("Range", f"bytes={have}-")
    try:
        response = urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and have:  # the part file is already complete (or the server disagrees): start over
            part.unlink()
            return download(url, dest, progress, timeout)
        raise ConnectionError(f"cannot download {url}: HTTP {exc.code} {exc.reason}") from None
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise ConnectionError(f"cannot download {url}: {reason} (no network access?)") from None
    with response:
        status = getattr(response, "status", 200)
        if have and status != 206:
            have = 0  # the server sent the whole file: restart instead of appending a second copy
        length = response.headers.get("Content-Length")
        total = have + int(length) if length is not None else None
        mode = "ab" if have else "wb"
        from tqdm import tqdm

        with (
            open(part, mode) as f,
            tqdm(
                total=total,
                initial=have,
                unit="B",
                unit_scale=True,
                unit_divisor=1024,
                desc=dest.name,
                disable=not progress,
                file=sys.stderr,
            ) as bar,
        ):
            try:
                while True:
                    chunk = response.read(CHUNK)
                    if not chunk:
                        break
                    f.write(chunk)
                    bar.update(len(chunk))
            except (OSError, urllib.error.URLError) as exc:
                raise ConnectionError(
                    f"download of {url} was interrupted after {f.tell()} bytes ({exc}); run the same command again "
                    "to resume"
                ) from None
            f.flush()
            os.fsync(f.fileno())
            size = f.tell()
    if total is not None and size != total:
        raise ConnectionError(
            f"download of {url} ended after {size} of {total} bytes; run the same command again to resume"
        )
    os.replace(part, dest)
    return dest


def get_published(name: str, url: str | None = None, force: bool = False, progress: bool = True) -> Path:
    """Download (or reuse) and convert a published model; returns the converted model file in the cache."""
    model = published_model(name)
    target = cached_model_path(name)
    if target.is_file() and not force:
        return target
    weights = cache_dir() / "downloads" / name / "model_final.pth"
    if force and weights.exists():
        weights.unlink()
    if not weights.is_file():
        download(url or str(model.weights_uri), weights, progress=progress)
    try:
        return convert_reference(weights, model, target, source_url=url or model.weights_uri)
    except ValueError:
        # A corrupt or foreign download must not stay in the cache looking finished: the next call fetches again.
        shutil.move(str(weights), str(weights.with_name(weights.name + ".rejected")))
        raise
