"""On-disk cache of TensorRT engines (and exported ONNX files), safe against stale, foreign and corrupt files.

A serialized TensorRT engine only runs on the TensorRT version and GPU model it was built for, and deserialising a
foreign or damaged file can crash the process inside the native library. Every engine we write is therefore a pair:

* ``<name>.engine`` — the plain serialized engine, exactly as TensorRT produced it (so ``trtexec --loadEngine``,
  Triton or other TensorRT tools can still use it), and
* ``<name>.engine.json`` — a sidecar: ``{format, key (EngineKey), key_digest, engine_size, engine_sha256, created,
  metadata (class table, model config, ONNX source)}``.

Before a single byte reaches TensorRT, :func:`read_engine` checks the sidecar (format, key digest), compares its
:class:`EngineKey` (TensorRT version, GPU name, compute capability, precision, input profile, model hash, DLA core,
calibration, builder options) with the one the caller needs, and checks the engine's size and SHA-256 against the
sidecar. An engine without a sidecar, or failing any check, is never deserialised: the cache logs why and rebuilds
it; an explicit engine path gives an error naming the cause and the fix. The cache file name depends on the model,
precision and profile but *not* on the TensorRT version or GPU, so after a JetPack upgrade or a GPU swap the old
engine is found, recognised as stale, replaced (with a log line), and does not linger on disk.

Everything here is pure Python (no TensorRT, no GPU) so it is tested on any machine.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bisenetformer_ros.atomic_io import atomic_write_bytes

LOG = logging.getLogger("bisenetformer_ros.inference.engine_cache")

ENGINE_FORMAT = "bisenetformer-engine/1"
ENGINE_SUFFIX = ".engine"
SIDECAR_SUFFIX = ".json"
_MAX_SIDECAR = 16 * 1024 * 1024


class EngineFileError(RuntimeError):
    """The file is not a (complete, intact) bisenetformer engine: foreign, truncated or corrupted."""


class EngineMismatchError(RuntimeError):
    """The engine is intact but was built for another environment or configuration (see :attr:`differences`)."""

    def __init__(self, message: str, differences: Sequence[str]) -> None:
        super().__init__(message)
        self.differences = list(differences)


def default_cache_dir() -> Path:
    """``$BISENETFORMER_CACHE_DIR``, else ``$XDG_CACHE_HOME/bisenetformer_ros``, else ``~/.cache/bisenetformer_ros``."""
    env = os.environ.get("BISENETFORMER_CACHE_DIR")
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "bisenetformer_ros"


def file_sha256(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    """Hex SHA-256 of a file, streamed (model files can be hundreds of MB)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def round_up(value: int, divisor: int = 32) -> int:
    return ((int(value) + divisor - 1) // divisor) * divisor


@dataclass(frozen=True)
class InputProfile:
    """A TensorRT optimisation profile for the ``images`` input: min / opt / max ``(B, 3, H, W)``."""

    min_shape: tuple[int, int, int, int]
    opt_shape: tuple[int, int, int, int]
    max_shape: tuple[int, int, int, int]

    def __post_init__(self) -> None:
        for name in ("min_shape", "opt_shape", "max_shape"):
            shape = getattr(self, name)
            if len(shape) != 4 or shape[1] != 3 or min(shape) < 1:
                raise ValueError(f"InputProfile.{name} must be (B, 3, H, W) with positive sizes, got {shape}")
            if shape[2] % 32 or shape[3] % 32:
                raise ValueError(f"InputProfile.{name} {shape}: H and W must be multiples of 32")
        for i in (0, 2, 3):
            if not self.min_shape[i] <= self.opt_shape[i] <= self.max_shape[i]:
                raise ValueError(
                    f"InputProfile needs min <= opt <= max in every dimension, got {self.min_shape} / "
                    f"{self.opt_shape} / {self.max_shape}"
                )

    @classmethod
    def from_sizes(
        cls,
        sizes: Sequence[tuple[int, int]],
        max_batch: int = 1,
        opt_batch: int | None = None,
        min_hw: tuple[int, int] | None = None,
    ) -> InputProfile:
        """Profile covering the configured input sizes (rounded up to multiples of 32).

        The first size is the one TensorRT tunes kernels for (``opt``); the profile spans the smallest to the
        largest size given (``min_hw`` can lower the minimum further) and batches 1..``max_batch``.
        """
        if not sizes:
            raise ValueError("give at least one input size (height, width) for the TensorRT profile")
        if max_batch < 1:
            raise ValueError(f"max batch must be >= 1, got {max_batch}")
        rounded = [(round_up(h), round_up(w)) for h, w in sizes]
        if min(min(s) for s in rounded) < 32:
            raise ValueError(f"input sizes must be positive, got {list(sizes)}")
        lo_h = min(h for h, _ in rounded)
        lo_w = min(w for _, w in rounded)
        if min_hw is not None:
            lo_h, lo_w = min(lo_h, round_up(min_hw[0])), min(lo_w, round_up(min_hw[1]))
        hi_h = max(h for h, _ in rounded)
        hi_w = max(w for _, w in rounded)
        ob = max_batch if opt_batch is None else opt_batch
        if not 1 <= ob <= max_batch:
            raise ValueError(f"opt batch {ob} must be in 1..{max_batch}")
        return cls(
            min_shape=(1, 3, lo_h, lo_w),
            opt_shape=(ob, 3, *rounded[0]),
            max_shape=(max_batch, 3, hi_h, hi_w),
        )

    @property
    def max_batch(self) -> int:
        return self.max_shape[0]

    @property
    def min_hw(self) -> tuple[int, int]:
        return self.min_shape[2], self.min_shape[3]

    @property
    def max_hw(self) -> tuple[int, int]:
        return self.max_shape[2], self.max_shape[3]

    def tag(self) -> str:
        """Short file-name fragment, e.g. ``b1-4x512x1024``."""
        return f"b{self.opt_shape[0]}-{self.max_shape[0]}x{self.opt_shape[2]}x{self.opt_shape[3]}"

    def to_dict(self) -> dict[str, list[int]]:
        return {"min": list(self.min_shape), "opt": list(self.opt_shape), "max": list(self.max_shape)}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> InputProfile:
        return cls(tuple(d["min"]), tuple(d["opt"]), tuple(d["max"]))  # type: ignore[arg-type]


@dataclass(frozen=True)
class EngineKey:
    """Everything an engine depends on; two engines are interchangeable iff their keys are equal."""

    tensorrt_version: str
    gpu_name: str
    compute_capability: str  # "8.7"
    precision: str
    profile: InputProfile
    model_sha256: str
    dla_core: int | None = None
    calibration_sha256: str | None = None
    builder_options: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "tensorrt_version": self.tensorrt_version,
            "gpu_name": self.gpu_name,
            "compute_capability": self.compute_capability,
            "precision": self.precision,
            "profile": self.profile.to_dict(),
            "model_sha256": self.model_sha256,
            "dla_core": self.dla_core,
            "calibration_sha256": self.calibration_sha256,
            "builder_options": dict(sorted(self.builder_options.items())),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> EngineKey:
        try:
            return cls(
                tensorrt_version=str(d["tensorrt_version"]),
                gpu_name=str(d["gpu_name"]),
                compute_capability=str(d["compute_capability"]),
                precision=str(d["precision"]),
                profile=InputProfile.from_dict(d["profile"]),
                model_sha256=str(d["model_sha256"]),
                dla_core=None if d.get("dla_core") is None else int(d["dla_core"]),
                calibration_sha256=d.get("calibration_sha256"),
                builder_options=dict(d.get("builder_options") or {}),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise EngineFileError(f"engine header has an invalid key ({type(exc).__name__}: {exc})") from None

    def digest(self) -> str:
        """SHA-256 of the canonical JSON form."""
        text = json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()

    def file_name(self, stem: str = "model") -> str:
        """Cache file name: model, precision, profile and DLA core — not TensorRT version/GPU (see module doc)."""
        dla = f"-dla{self.dla_core}" if self.dla_core is not None else ""
        return f"{stem}-{self.model_sha256[:12]}-{self.precision}-{self.profile.tag()}{dla}{ENGINE_SUFFIX}"

    def differences(self, other: EngineKey) -> list[str]:
        """Readable 'field: this != other' lines (this = the engine file, other = what is needed)."""
        a, b = self.to_dict(), other.to_dict()
        labels = {
            "tensorrt_version": "TensorRT version",
            "gpu_name": "GPU",
            "compute_capability": "compute capability",
            "model_sha256": "model hash",
            "calibration_sha256": "int8 calibration",
            "dla_core": "DLA core",
            "builder_options": "builder options",
        }
        return [f"{labels.get(k, k)} {a[k]!r} (engine) != {b[k]!r} (needed)" for k in a if a[k] != b[k]]

    def environment_differences(self, tensorrt_version: str, gpu_name: str, compute_capability: str) -> list[str]:
        """Differences to the running machine only (for an engine file given explicitly by the user)."""
        out = []
        if self.tensorrt_version != tensorrt_version:
            out.append(f"TensorRT version {self.tensorrt_version!r} (engine) != {tensorrt_version!r} (installed)")
        if self.gpu_name != gpu_name or self.compute_capability != compute_capability:
            out.append(
                f"GPU {self.gpu_name!r} sm {self.compute_capability} (engine) != {gpu_name!r} sm {compute_capability} "
                "(this machine)"
            )
        return out


def sidecar_path(engine_path: str | os.PathLike) -> Path:
    """The sidecar JSON of an engine file: ``model.engine`` -> ``model.engine.json``."""
    engine_path = Path(engine_path)
    return engine_path.with_name(engine_path.name + SIDECAR_SUFFIX)


@dataclass
class EngineHeader:
    """Parsed sidecar of an engine file (what the engine is, and the size/checksum it must have)."""

    key: EngineKey
    payload_size: int
    payload_sha256: str
    metadata: dict[str, Any]
    created: float
    sidecar: Path


def _atomic_write(path: Path, chunks: Sequence[bytes]) -> None:
    atomic_write_bytes(path, chunks)


def write_engine(
    path: str | os.PathLike, payload: bytes, key: EngineKey, metadata: dict[str, Any] | None = None
) -> Path:
    """Write ``payload`` (a serialized engine) and its sidecar, each atomically; returns the engine path.

    The engine is written first: a crash in between leaves a new engine next to an old sidecar, which the checksum
    check rejects, so no interleaving can pair an engine with the wrong description.
    """
    path = Path(path)
    payload = bytes(payload)
    sidecar = {
        "format": ENGINE_FORMAT,
        "key": key.to_dict(),
        "key_digest": key.digest(),
        "engine_file": path.name,
        "engine_size": len(payload),
        "engine_sha256": hashlib.sha256(payload).hexdigest(),
        "created": time.time(),
        "metadata": metadata or {},
    }
    _atomic_write(path, [payload])
    _atomic_write(sidecar_path(path), [json.dumps(sidecar, sort_keys=True, indent=1).encode()])
    return path


def remove_engine(path: str | os.PathLike) -> None:
    """Delete an engine and its sidecar (missing files are fine)."""
    for p in (Path(path), sidecar_path(path)):
        with contextlib.suppress(OSError):
            p.unlink()


def read_engine_header(path: str | os.PathLike) -> EngineHeader:
    """Parse and validate an engine's sidecar (cheap; the engine's checksum is checked by :func:`read_engine`)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"engine file '{path}' does not exist; build it with 'bisenetformer export --format tensorrt'"
        )
    fix = "build it with 'bisenetformer export --format tensorrt' (or let the tensorrt backend build it from the model)"
    side = sidecar_path(path)
    if not side.is_file():
        raise EngineFileError(
            f"'{path}' is not a bisenetformer TensorRT engine: its sidecar '{side.name}' (GPU, TensorRT version, "
            f"checksum, class table) is missing, e.g. a raw trtexec plan or a copied engine without its .json. It is "
            f"not loaded because TensorRT may crash on foreign engine files; copy the sidecar along, or {fix}"
        )
    if side.stat().st_size > _MAX_SIDECAR:
        raise EngineFileError(f"sidecar '{side}' is implausibly large; it is not an engine description; {fix}")
    try:
        header = json.loads(side.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise EngineFileError(f"sidecar '{side}' of '{path}' is corrupt (not JSON); {fix}") from None
    if not isinstance(header, dict) or header.get("format") != ENGINE_FORMAT:
        fmt = header.get("format") if isinstance(header, dict) else None
        raise EngineFileError(
            f"sidecar '{side}' has engine format {fmt!r}, this version reads '{ENGINE_FORMAT}'; {fix}"
        )
    key = EngineKey.from_dict(header.get("key") or {})
    if header.get("key_digest") != key.digest():
        raise EngineFileError(f"sidecar '{side}' is corrupt or was edited (key digest mismatch); {fix}")
    try:
        size = int(header["engine_size"])
        sha = str(header["engine_sha256"])
    except (KeyError, TypeError, ValueError):
        raise EngineFileError(f"sidecar '{side}' lacks the engine size/checksum; {fix}") from None
    return EngineHeader(
        key=key,
        payload_size=size,
        payload_sha256=sha,
        metadata=dict(header.get("metadata") or {}),
        created=float(header.get("created") or 0.0),
        sidecar=side,
    )


def read_engine(path: str | os.PathLike, expected: EngineKey | None = None) -> tuple[bytes, EngineHeader]:
    """Return ``(payload, header)`` after verifying sidecar, size, checksum and (optionally) the key.

    Raises :class:`EngineFileError` for foreign/corrupt files and :class:`EngineMismatchError` when ``expected`` is
    given and differs; in neither case has anything been handed to TensorRT.
    """
    path = Path(path)
    header = read_engine_header(path)
    fix = "rebuild it with 'bisenetformer export --format tensorrt'"
    if expected is not None and header.key != expected:
        diffs = header.key.differences(expected)
        raise EngineMismatchError(f"engine '{path}' does not match: " + "; ".join(diffs) + f"; {fix}", diffs)
    size = path.stat().st_size
    if size != header.payload_size:
        raise EngineFileError(
            f"'{path}' is truncated or was replaced ({size} bytes, its sidecar says {header.payload_size}); {fix}"
        )
    payload = path.read_bytes()
    if hashlib.sha256(payload).hexdigest() != header.payload_sha256:
        raise EngineFileError(f"'{path}' is corrupt or does not belong to its sidecar (checksum mismatch); {fix}")
    return payload, header


@contextlib.contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """Exclusive advisory lock on ``path`` + '.lock' so two processes never build the same file at once."""
    path.parent.mkdir(parents=True, exist_ok=True)
    lock_path = path.with_name(path.name + ".lock")
    try:
        import fcntl
    except ImportError:  # pragma: no cover - non-POSIX: no locking, atomic renames still prevent torn files
        yield
        return
    with open(lock_path, "a+") as fh:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)


@dataclass
class CacheResult:
    path: Path
    payload: bytes
    header: EngineHeader
    built: bool
    reason: str  # why it was (re)built, or 'cache hit'


class EngineCache:
    """Engines stored under ``root/engines``; :meth:`get_or_build` is the only entry point backends need."""

    def __init__(self, root: str | os.PathLike | None = None) -> None:
        self.root = Path(root) if root is not None else default_cache_dir()
        self.engine_dir = self.root / "engines"

    def path_for(self, key: EngineKey, stem: str = "model") -> Path:
        return self.engine_dir / key.file_name(stem)

    def lookup(self, key: EngineKey, stem: str = "model") -> tuple[CacheResult | None, str]:
        """``(hit, '')`` or ``(None, reason)``; an unusable file is deleted and the reason logged."""
        path = self.path_for(key, stem)
        if not path.exists():
            if sidecar_path(path).exists():
                remove_engine(path)  # an orphaned sidecar from an interrupted write
            return None, "not in cache"
        try:
            payload, header = read_engine(path, expected=key)
        except EngineMismatchError as exc:
            reason = "stale engine: " + "; ".join(exc.differences)
        except EngineFileError as exc:
            reason = f"unusable engine file: {exc}"
        else:
            return CacheResult(path, payload, header, built=False, reason="cache hit"), ""
        LOG.warning("TensorRT engine cache: %s -> %s; rebuilding", path, reason)
        remove_engine(path)
        return None, reason

    def get_or_build(
        self,
        key: EngineKey,
        build: Callable[[], bytes],
        metadata: dict[str, Any] | None = None,
        stem: str = "model",
    ) -> CacheResult:
        """Return the cached engine for ``key`` or build, store and return it (one builder at a time per file)."""
        path = self.path_for(key, stem)
        with file_lock(path):
            hit, reason = self.lookup(key, stem)
            if hit is not None:
                LOG.info("TensorRT engine cache hit: %s", path)
                return hit
            LOG.info("building TensorRT engine %s (%s); this can take minutes", path.name, reason)
            t0 = time.perf_counter()
            payload = build()
            write_engine(path, payload, key, metadata)
            LOG.info("built TensorRT engine in %.1f s -> %s", time.perf_counter() - t0, path)
            payload, header = read_engine(path, expected=key)
            return CacheResult(path, payload, header, built=True, reason=reason)

    def entries(self) -> list[tuple[Path, EngineHeader | str]]:
        """Every engine file with its sidecar, or the reason it is unusable (``bisenetformer export --list``)."""
        out: list[tuple[Path, EngineHeader | str]] = []
        for p in sorted(self.engine_dir.glob(f"*{ENGINE_SUFFIX}")):
            try:
                out.append((p, read_engine_header(p)))
            except (EngineFileError, OSError) as exc:
                out.append((p, str(exc)))
        return out
