"""Engine cache keys, engine sidecars (key + checksum) and int8 calibration data: pure Python, runs anywhere.

The payloads here are arbitrary bytes standing in for serialized engines: everything tested happens before a byte
would reach TensorRT, which is exactly the point of the sidecar (a foreign or damaged file must be caught first).
"""

from __future__ import annotations

import json
import logging
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
import pytest

from bisenetformer_ros.inference.calibration import CalibrationImages, load_rgb
from bisenetformer_ros.inference.engine_cache import (
    EngineCache,
    EngineFileError,
    EngineKey,
    EngineMismatchError,
    InputProfile,
    read_engine,
    read_engine_header,
    remove_engine,
    sidecar_path,
    write_engine,
)


def make_key(**changes: object) -> EngineKey:
    key = EngineKey(
        tensorrt_version="10.3.0",
        gpu_name="Orin",
        compute_capability="8.7",
        precision="fp16",
        profile=InputProfile.from_sizes([(512, 1024), (1024, 2048)], max_batch=2, opt_batch=1, min_hw=(128, 128)),
        model_sha256="ab" * 32,
        builder_options={"workspace_gb": 4.0, "fp32_norm": True},
    )
    return replace(key, **changes)  # type: ignore[arg-type]


# ---------------------------------------------------------------------------------------------------- profiles
def test_profile_from_sizes_rounds_to_32_and_spans_all_sizes() -> None:
    p = InputProfile.from_sizes([(500, 1000), (1024, 2048), (300, 1200)], max_batch=4, opt_batch=2)
    assert p.opt_shape == (2, 3, 512, 1024)  # first size, rounded up to multiples of 32
    assert p.min_shape == (1, 3, 320, 1024)
    assert p.max_shape == (4, 3, 1024, 2048)
    assert p.max_batch == 4 and p.min_hw == (320, 1024) and p.max_hw == (1024, 2048)
    assert InputProfile.from_dict(p.to_dict()) == p
    lowered = InputProfile.from_sizes([(512, 512)], min_hw=(100, 130))
    assert lowered.min_shape == (1, 3, 128, 160)


@pytest.mark.parametrize(
    ("sizes", "kwargs", "message"),
    [
        ([], {}, "at least one input size"),
        ([(512, 512)], {"max_batch": 0}, "max batch"),
        ([(512, 512)], {"max_batch": 2, "opt_batch": 3}, "opt batch"),
    ],
)
def test_profile_rejects_bad_settings(sizes: list, kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        InputProfile.from_sizes(sizes, **kwargs)


def test_profile_rejects_inconsistent_shapes() -> None:
    with pytest.raises(ValueError, match=r"min <= opt <= max"):
        InputProfile((1, 3, 512, 512), (1, 3, 256, 512), (1, 3, 1024, 1024))
    with pytest.raises(ValueError, match=r"multiples of 32"):
        InputProfile((1, 3, 500, 512), (1, 3, 512, 512), (1, 3, 512, 512))


# ---------------------------------------------------------------------------------------------------- keys
def test_key_digest_is_stable_and_sensitive_to_every_field() -> None:
    key = make_key()
    assert key.digest() == make_key().digest()
    assert EngineKey.from_dict(json.loads(json.dumps(key.to_dict()))) == key
    variants = [
        make_key(tensorrt_version="10.7.0"),
        make_key(gpu_name="NVIDIA H100"),
        make_key(compute_capability="9.0"),
        make_key(precision="int8"),
        make_key(profile=InputProfile.from_sizes([(512, 512)])),
        make_key(model_sha256="cd" * 32),
        make_key(dla_core=0),
        make_key(calibration_sha256="ef" * 32),
        make_key(builder_options={"workspace_gb": 2.0, "fp32_norm": True}),
    ]
    digests = {v.digest() for v in variants}
    assert len(digests) == len(variants) and key.digest() not in digests


def test_cache_file_name_ignores_environment_so_stale_engines_are_found() -> None:
    key = make_key()
    # A TensorRT upgrade or another GPU maps to the same file: it is then detected as stale and replaced.
    assert make_key(tensorrt_version="10.7.0", gpu_name="RTX 4090").file_name("m") == key.file_name("m")
    assert make_key(precision="fp32").file_name("m") != key.file_name("m")
    assert make_key(dla_core=1).file_name("m").endswith("-dla1.engine")


def test_key_differences_name_the_changed_fields() -> None:
    diffs = make_key().differences(make_key(tensorrt_version="10.7.0", gpu_name="RTX 4090"))
    assert len(diffs) == 2
    assert any("TensorRT version '10.3.0' (engine) != '10.7.0'" in d for d in diffs)
    assert any("GPU 'Orin'" in d and "RTX 4090" in d for d in diffs)
    env = make_key().environment_differences("10.3.0", "NVIDIA A100", "8.0")
    assert env == ["GPU 'Orin' sm 8.7 (engine) != 'NVIDIA A100' sm 8.0 (this machine)"]
    assert make_key().environment_differences("10.3.0", "Orin", "8.7") == []


# ---------------------------------------------------------------------------------------------------- sidecar
def test_engine_roundtrip_keeps_payload_key_and_metadata(tmp_path: Path) -> None:
    payload = np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes()
    key = make_key()
    path = write_engine(tmp_path / "a.engine", payload, key, {"class_table": {"dataset": "x"}})
    assert path.read_bytes() == payload  # the engine file stays a plain TensorRT plan (trtexec can load it)
    side = sidecar_path(path)
    assert side == tmp_path / "a.engine.json"
    described = json.loads(side.read_text())
    assert described["engine_size"] == len(payload) and described["key"]["gpu_name"] == "Orin"
    data, header = read_engine(path, expected=key)
    assert data == payload
    assert header.key == key and header.metadata == {"class_table": {"dataset": "x"}}
    assert read_engine_header(path).payload_size == len(payload)
    assert not list(tmp_path.glob("*.tmp"))  # atomic writes leave no temporary file
    remove_engine(path)
    assert not path.exists() and not side.exists()


def test_foreign_file_is_refused_before_tensorrt(tmp_path: Path) -> None:
    raw = tmp_path / "model.engine"
    raw.write_bytes(b"ftrt" + bytes(range(200)))  # e.g. a raw trtexec plan: no sidecar
    with pytest.raises(EngineFileError, match=r"not a bisenetformer TensorRT engine.*sidecar.*bisenetformer export"):
        read_engine(raw)
    # A sidecar that is not ours (another tool's JSON next to the plan).
    sidecar_path(raw).write_text(json.dumps({"format": "trtexec/1"}))
    with pytest.raises(EngineFileError, match=r"engine format 'trtexec/1'"):
        read_engine_header(raw)
    with pytest.raises(FileNotFoundError, match=r"does not exist"):
        read_engine_header(tmp_path / "absent.engine")


def test_corrupt_truncated_swapped_and_tampered_files_are_detected(tmp_path: Path) -> None:
    payload = bytes(range(256)) * 8
    key = make_key()
    good = write_engine(tmp_path / "good.engine", payload, key)
    good_sidecar = sidecar_path(good).read_text()

    def pair(name: str, engine: bytes, sidecar: str = good_sidecar) -> Path:
        path = tmp_path / name
        path.write_bytes(engine)
        sidecar_path(path).write_text(sidecar)
        return path

    flipped = bytearray(payload)
    flipped[-10] ^= 0xFF
    with pytest.raises(EngineFileError, match=r"checksum mismatch"):
        read_engine(pair("flip.engine", bytes(flipped)))
    with pytest.raises(EngineFileError, match=r"truncated.*sidecar says 2048"):
        read_engine(pair("trunc.engine", payload[:-100]))
    # An engine rebuilt by someone else next to the old sidecar (same size, other bytes).
    with pytest.raises(EngineFileError, match=r"does not belong to its sidecar"):
        read_engine(pair("swapped.engine", bytes(reversed(payload))))

    # Editing the key in the sidecar (claiming another GPU) breaks the key digest.
    edited = json.loads(good_sidecar)
    edited["key"]["gpu_name"] = "RTX 4090"
    with pytest.raises(EngineFileError, match=r"key digest mismatch"):
        read_engine(pair("tamper.engine", payload, json.dumps(edited)))
    with pytest.raises(EngineFileError, match=r"not JSON"):
        read_engine(pair("json.engine", payload, "{nope"))
    missing_sum = {k: v for k, v in json.loads(good_sidecar).items() if k != "engine_sha256"}
    with pytest.raises(EngineFileError, match=r"lacks the engine size/checksum"):
        read_engine(pair("nosum.engine", payload, json.dumps(missing_sum)))


def test_engine_for_another_environment_raises_mismatch_with_differences(tmp_path: Path) -> None:
    path = write_engine(tmp_path / "x.engine", b"payload", make_key())
    with pytest.raises(EngineMismatchError) as info:
        read_engine(path, expected=make_key(tensorrt_version="10.7.0"))
    assert info.value.differences == ["TensorRT version '10.3.0' (engine) != '10.7.0' (needed)"]
    assert "bisenetformer export --format tensorrt" in str(info.value)


# ---------------------------------------------------------------------------------------------------- cache
def test_cache_builds_once_then_hits(tmp_path: Path) -> None:
    cache = EngineCache(tmp_path)
    builds: list[int] = []

    def build() -> bytes:
        builds.append(1)
        return b"engine-bytes-1"

    first = cache.get_or_build(make_key(), build, {"m": 1}, stem="net")
    second = cache.get_or_build(make_key(), build, {"m": 1}, stem="net")
    assert len(builds) == 1
    assert first.built and not second.built and second.reason == "cache hit"
    assert first.path == second.path == tmp_path / "engines" / make_key().file_name("net")
    assert second.payload == b"engine-bytes-1" and second.header.metadata == {"m": 1}
    assert [p for p, _ in cache.entries()] == [first.path]


def test_cache_rebuilds_stale_engine_with_log_line(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    cache = EngineCache(tmp_path)
    old = cache.get_or_build(make_key(tensorrt_version="10.0.1"), lambda: b"old", stem="net")
    caplog.set_level(logging.WARNING, logger="bisenetformer_ros.inference.engine_cache")
    new = cache.get_or_build(make_key(), lambda: b"new", stem="net")
    assert new.path == old.path  # same file, replaced
    assert new.built and new.payload == b"new"
    assert "stale engine: TensorRT version '10.0.1' (engine) != '10.3.0' (needed)" in new.reason
    assert any("rebuilding" in r.getMessage() and "10.0.1" in r.getMessage() for r in caplog.records)
    payload, header = read_engine(new.path, expected=make_key())
    assert payload == b"new" and header.key.tensorrt_version == "10.3.0"


def test_cache_replaces_corrupt_or_foreign_file(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    cache = EngineCache(tmp_path)
    path = cache.path_for(make_key(), "net")
    path.parent.mkdir(parents=True)
    path.write_bytes(b"\x00" * 64)  # foreign bytes where the engine should be, no sidecar
    caplog.set_level(logging.WARNING, logger="bisenetformer_ros.inference.engine_cache")
    result = cache.get_or_build(make_key(), lambda: b"fresh", stem="net")
    assert result.built and "unusable engine file" in result.reason and "sidecar" in result.reason
    assert any("rebuilding" in r.getMessage() for r in caplog.records)
    # Now damage the good one: flipped payload byte -> detected by the checksum -> rebuilt.
    data = bytearray(path.read_bytes())
    data[-1] ^= 0x01
    path.write_bytes(bytes(data))
    again = cache.get_or_build(make_key(), lambda: b"fresh2", stem="net")
    assert again.built and "checksum" in again.reason and again.payload == b"fresh2"
    # A sidecar whose engine was deleted is cleaned up and the engine rebuilt.
    path.unlink()
    third = cache.get_or_build(make_key(), lambda: b"fresh3", stem="net")
    assert third.built and third.reason == "not in cache" and read_engine(path)[0] == b"fresh3"


def test_cache_does_not_store_failed_builds(tmp_path: Path) -> None:
    cache = EngineCache(tmp_path)

    def fail() -> bytes:
        raise RuntimeError("TensorRT failed to build the engine")

    with pytest.raises(RuntimeError, match=r"failed to build"):
        cache.get_or_build(make_key(), fail, stem="net")
    assert not cache.path_for(make_key(), "net").exists()


def test_default_cache_dir_follows_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from bisenetformer_ros.inference.engine_cache import default_cache_dir

    monkeypatch.setenv("BISENETFORMER_CACHE_DIR", str(tmp_path / "c"))
    assert default_cache_dir() == tmp_path / "c"
    monkeypatch.delenv("BISENETFORMER_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert default_cache_dir() == tmp_path / "xdg" / "bisenetformer_ros"


# ---------------------------------------------------------------------------------------------------- calibration
def _write_images(folder: Path, n: int) -> None:
    rng = np.random.default_rng(1)
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        img = rng.integers(0, 256, (24, 32, 3), dtype=np.uint8)
        cv2.imwrite(str(folder / f"frame_{i:03d}.png"), img)


def test_calibration_images_spread_digest_and_batches(tmp_path: Path) -> None:
    _write_images(tmp_path / "cal" / "sub", 10)
    (tmp_path / "cal" / "notes.txt").write_text("not an image")
    images = CalibrationImages(tmp_path / "cal", limit=4)
    names = [p.name for p in images.files]
    assert names == ["frame_000.png", "frame_003.png", "frame_006.png", "frame_009.png"]  # spread, not the first 4
    batches = list(images.batches(3))
    assert len(batches) == 1 and len(batches[0]) == 3  # trailing partial batch dropped (fixed engine shape)
    assert batches[0][0].shape == (24, 32, 3) and batches[0][0].dtype == np.uint8
    digest = images.digest()
    assert digest == CalibrationImages(tmp_path / "cal", limit=4).digest()
    cv2.imwrite(str(tmp_path / "cal" / "sub" / "frame_003.png"), np.zeros((24, 32, 3), np.uint8))
    assert CalibrationImages(tmp_path / "cal", limit=4).digest() != digest  # content changes the digest


def test_load_rgb_converts_bgr_grey_and_16_bit(tmp_path: Path) -> None:
    bgr = np.zeros((4, 5, 3), np.uint8)
    bgr[..., 0] = 200  # blue in OpenCV's BGR order
    cv2.imwrite(str(tmp_path / "c.png"), bgr)
    rgb = load_rgb(tmp_path / "c.png")
    assert rgb[0, 0].tolist() == [0, 0, 200]
    cv2.imwrite(str(tmp_path / "g.png"), np.full((4, 5), 7, np.uint8))
    assert load_rgb(tmp_path / "g.png").shape == (4, 5, 3)
    cv2.imwrite(str(tmp_path / "d.png"), np.full((4, 5), 32768, np.uint16))
    assert load_rgb(tmp_path / "d.png")[0, 0, 0] == 128  # 32768 >> 8
    (tmp_path / "bad.png").write_bytes(b"not a png")
    with pytest.raises(ValueError, match=r"cannot decode"):
        load_rgb(tmp_path / "bad.png")


def test_calibration_folder_errors_name_the_fix(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"does not exist.*representative camera images"):
        CalibrationImages(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match=r"contains no images"):
        CalibrationImages(tmp_path / "empty")


# ---------------------------------------------------------------------------------------------------- CLI
def test_cli_export_list_shows_cached_engines(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from bisenetformer_ros.cli.main import main

    cache = EngineCache(tmp_path)
    good = cache.get_or_build(make_key(), lambda: b"engine", stem="net").path
    broken = tmp_path / "engines" / "copied-without-sidecar.engine"
    broken.write_bytes(b"plan")
    assert main(["export", "--list", "--cache-dir", str(tmp_path), "--json"]) == 0
    listing = json.loads(capsys.readouterr().out)
    by_name = {Path(e["path"]).name: e for e in listing["engines"]}
    assert by_name[good.name]["key"]["gpu_name"] == "Orin" and by_name[good.name]["size"] == len(b"engine")
    assert "sidecar" in by_name[broken.name]["error"]
    assert main(["export", "--list", "--cache-dir", str(tmp_path)]) == 0
    text = capsys.readouterr().out
    assert "2 engine(s)" in text and "fp16" in text and "unusable" in text
    assert main(["export"]) == 2
    assert "give --format onnx or --format tensorrt" in capsys.readouterr().err
