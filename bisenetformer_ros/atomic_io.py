"""One way to write a file so that readers never see half of it: temporary file beside the target, fsync, rename.

Model files, ONNX exports, TensorRT engines and calibration caches are read by other processes (a node starting while
an export runs, a second node sharing the engine cache) and written by jobs that can be killed. Writing in place would
leave a truncated file that looks valid by name; a fixed temporary name would let two writers clobber each other. A
unique temporary name in the target's folder (same file system, so the rename is atomic), flushed to disk before the
rename, avoids both. The final file gets the permissions a plain ``open`` would give it (``mkstemp`` creates 0600).

Folders that are made in one go (a generated data set, the demo's cached bag) follow the same rule with
:func:`atomic_dir`: built under a unique name beside the target and renamed into place when complete.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, suffix: str = ".tmp") -> Iterator[Path]:
    """Yield a temporary path beside ``path``; when the block ends without error, fsync it and rename it onto
    ``path``. On error the temporary file is removed and ``path`` is untouched. For writers that need a file name
    (``onnx.save``, ``torch.onnx.export``); ``suffix`` keeps the extension such tools look at."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix, dir=path.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


def atomic_write_bytes(path: str | os.PathLike, chunks: bytes | Iterable[bytes]) -> Path:
    """Write ``chunks`` (one bytes object or several) to ``path`` atomically."""
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        for chunk in [chunks] if isinstance(chunks, (bytes, bytearray, memoryview)) else chunks:
            f.write(chunk)
    return Path(path)


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a unique, not yet existing folder path beside ``path`` for the block to create and fill; when the block
    ends without error the folder replaces ``path`` (an existing folder there is removed first). On error everything
    the block made is removed and ``path`` is untouched. The yielded path does not exist yet because some writers
    (rosbag2 bags) refuse an existing folder; it lies in a private holder folder, so concurrent writers never meet.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    holder = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    try:
        tmp = holder / path.name
        yield tmp
        tmp.mkdir(exist_ok=True)  # a block that wrote nothing still leaves an (empty) folder, never a missing one
        if path.exists():
            shutil.rmtree(path)
        os.replace(tmp, path)
    finally:
        shutil.rmtree(holder, ignore_errors=True)
