"""`bisenetformer pretrained`: downloads from a local HTTP server on 127.0.0.1 (never the internet), resume after an
interrupted transfer, conversion into the cache, and published names working as model paths."""

from __future__ import annotations

import http.server
import json
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch

from bisenetformer_ros.cli.main import main as cli_main
from bisenetformer_ros.inference.factory import resolve_model_path
from bisenetformer_ros.model import load_model
from bisenetformer_ros.model.hub import download
from bisenetformer_ros.model.reference import seeded_state_dict

FIXTURE = Path(__file__).parent / "data" / "reference_parity.npz"
NAME = "bisenetformer-s-ade"


class _Server:
    """Serves one payload with HTTP Range support; can cut the first transfer short to simulate a lost connection."""

    def __init__(self, payload: bytes) -> None:
        self.payload = payload
        self.cut_after: int | None = None
        self.ranges: list[str | None] = []
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                if self.path != "/model_final.pth":
                    self.send_error(404)
                    return
                rng = self.headers.get("Range")
                server.ranges.append(rng)
                start = int(rng.split("=")[1].split("-")[0]) if rng else 0
                body = server.payload[start:]
                self.send_response(206 if rng else 200)
                if rng:
                    self.send_header("Content-Range", f"bytes {start}-{len(server.payload) - 1}/{len(server.payload)}")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if server.cut_after is not None:
                    body, server.cut_after = body[: server.cut_after], None
                    self.wfile.write(body)
                    self.wfile.flush()
                    self.connection.shutdown(socket.SHUT_RDWR)
                    return
                self.wfile.write(body)

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/model_final.pth"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture(scope="module")
def weights_bytes(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    with np.load(FIXTURE) as data:
        state = seeded_state_dict(json.loads(str(data[f"{NAME}/manifest"])), int(data["seed"]))
    path = tmp_path_factory.mktemp("w") / "model_final.pth"
    torch.save({"model": state}, path)
    return path.read_bytes()


@pytest.fixture
def server(weights_bytes: bytes) -> Iterator[_Server]:
    srv = _Server(weights_bytes)
    yield srv
    srv.close()


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("BISENETFORMER_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


@pytest.mark.slow
def test_get_downloads_converts_and_resolves_by_name(
    server: _Server, cache: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(FileNotFoundError, match=f"bisenetformer pretrained get {NAME}"):
        resolve_model_path(NAME)
    assert cli_main(["pretrained", "get", NAME, "--url", server.url, "--quiet"]) == 0
    printed = Path(capsys.readouterr().out.strip().splitlines()[-1])
    assert printed == cache / f"{NAME}.pt" and printed.is_file()
    assert resolve_model_path(NAME) == printed
    loaded = load_model(printed)
    assert loaded.class_table.dataset == "ade20k" and loaded.inference.mask_order == "sigmoid_first"
    # Cached: a second get neither downloads nor converts again.
    requests = len(server.ranges)
    assert cli_main(["pretrained", "get", NAME, "--url", server.url, "--quiet"]) == 0
    assert len(server.ranges) == requests


def test_list_reports_cache_state(server: _Server, cache: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli_main(["pretrained", "list", "--json"]) == 0
    rows = {r["name"]: r for r in json.loads(capsys.readouterr().out)}
    assert set(rows) == {"bisenetformer-s-ade", "bisenetformer-m-ade", "bisenetformer-l-ade"}
    assert rows[NAME]["cached"] is None and rows[NAME]["classes"] == 150 and rows[NAME]["reported_mIoU"] > 40
    assert cli_main(["pretrained", "get", NAME, "--url", server.url, "--quiet"]) == 0
    capsys.readouterr()
    assert cli_main(["pretrained", "list", "--json"]) == 0
    rows = {r["name"]: r for r in json.loads(capsys.readouterr().out)}
    assert rows[NAME]["cached"] == str(cache / f"{NAME}.pt")


def test_interrupted_download_resumes_with_a_range_request(server: _Server, tmp_path: Path) -> None:
    dest = tmp_path / "model_final.pth"
    server.cut_after = len(server.payload) // 3
    with pytest.raises(ConnectionError, match="run the same command again to resume"):
        download(server.url, dest, progress=False)
    part = dest.with_name(dest.name + ".part")
    assert not dest.exists() and 0 < part.stat().st_size < len(server.payload)
    have = part.stat().st_size
    download(server.url, dest, progress=False)
    assert server.ranges[-1] == f"bytes={have}-"
    assert dest.read_bytes() == server.payload and not part.exists()


def test_server_without_range_support_restarts_cleanly(server: _Server, tmp_path: Path) -> None:
    dest = tmp_path / "model_final.pth"
    part = dest.with_name(dest.name + ".part")
    part.write_bytes(b"garbage from an older, different file")
    original = server.httpd.RequestHandlerClass.do_GET

    def ignore_range(handler: http.server.BaseHTTPRequestHandler) -> None:
        del handler.headers["Range"]
        original(handler)

    server.httpd.RequestHandlerClass.do_GET = ignore_range  # type: ignore[method-assign]
    download(server.url, dest, progress=False)
    assert dest.read_bytes() == server.payload


def test_no_network_and_unknown_names_are_one_line_errors(cache: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    code = cli_main(["pretrained", "get", NAME, "--url", f"http://127.0.0.1:{port}/x.pth", "--quiet"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "cannot download" in err[0]
    assert not (cache / f"{NAME}.pt").exists()
    assert cli_main(["pretrained", "get", "bisenetformer-xl-ade", "--quiet"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "choose one of" in err[0]


def test_corrupt_download_is_refused_and_not_kept(server: _Server, cache: Path) -> None:
    server.payload = server.payload[: len(server.payload) // 2] + b"\0" * 16  # complete transfer, broken file
    assert cli_main(["pretrained", "get", NAME, "--url", server.url, "--quiet"]) == 2
    assert not (cache / f"{NAME}.pt").exists()
    assert not (cache / "downloads" / NAME / "model_final.pth").exists()
