"""Downloader against a local HTTP server on 127.0.0.1: resume, checksum, atomicity, extraction."""

from __future__ import annotations

import hashlib
import io
import os
import re
import tarfile
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from typer.testing import CliRunner

from lexray.data.download import DownloadError, download, extract_tar

PAYLOAD = os.urandom(300_000)


class _State:
    def __init__(self) -> None:
        self.files: dict[str, bytes] = {"/blob.bin": PAYLOAD}
        self.cut_after: int | None = None  # close the connection after this many body bytes (once)
        self.honour_range = True
        self.ranges: list[str | None] = []


class _Handler(BaseHTTPRequestHandler):
    state: _State

    def log_message(self, *args) -> None:  # keep test output quiet
        pass

    def do_GET(self) -> None:  # noqa: N802 (http.server API)
        data = self.state.files.get(self.path)
        header = self.headers.get("Range")
        self.state.ranges.append(header)
        if data is None:
            self.send_error(404)
            return
        start = 0
        m = re.fullmatch(r"bytes=(\d+)-", header or "")
        if m and self.state.honour_range:
            start = int(m.group(1))
            if start >= len(data):
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(data)}")
                self.end_headers()
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        else:
            self.send_response(200)
        body = data[start:]
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.state.cut_after is not None:
            self.wfile.write(body[: self.state.cut_after])
            self.wfile.flush()
            self.state.cut_after = None
            self.close_connection = True
            return
        self.wfile.write(body)


@pytest.fixture
def server() -> Iterator[tuple[str, _State]]:
    state = _State()
    handler = type("H", (_Handler,), {"state": state})
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}", state
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)


def test_plain_download_verifies_and_leaves_no_part(server, tmp_path):
    url, _ = server
    sha = hashlib.sha256(PAYLOAD).hexdigest()
    dest = download(f"{url}/blob.bin", tmp_path / "blob.bin", sha256=sha, size=len(PAYLOAD))
    assert dest.read_bytes() == PAYLOAD
    assert not (tmp_path / "blob.bin.part").exists()


def test_interrupted_transfer_resumes_with_range(server, tmp_path):
    url, state = server
    state.cut_after = 100_000
    dest = tmp_path / "blob.bin"
    with pytest.raises(DownloadError, match="run again to resume"):
        download(f"{url}/blob.bin", dest, retries=0)
    part = tmp_path / "blob.bin.part"
    assert part.stat().st_size == 100_000 and not dest.exists()
    download(f"{url}/blob.bin", dest, sha256=hashlib.sha256(PAYLOAD).hexdigest())
    assert dest.read_bytes() == PAYLOAD
    assert state.ranges[-1] == "bytes=100000-"  # the second request asked only for the rest
    assert not part.exists()


def test_broken_connection_is_resumed_within_one_call(server, tmp_path):
    url, state = server
    state.cut_after = 50_000
    dest = download(f"{url}/blob.bin", tmp_path / "b.bin", retries=2)
    assert dest.read_bytes() == PAYLOAD
    assert state.ranges == [None, "bytes=50000-"]


def test_server_ignoring_range_restarts_cleanly(server, tmp_path):
    url, state = server
    (tmp_path / "blob.bin.part").write_bytes(b"garbage-prefix")
    state.honour_range = False
    dest = download(f"{url}/blob.bin", tmp_path / "blob.bin")
    assert dest.read_bytes() == PAYLOAD


def test_complete_part_file_is_finished_after_416(server, tmp_path):
    url, state = server
    (tmp_path / "blob.bin.part").write_bytes(PAYLOAD)
    dest = download(f"{url}/blob.bin", tmp_path / "blob.bin", size=len(PAYLOAD))
    assert dest.read_bytes() == PAYLOAD and state.ranges == [f"bytes={len(PAYLOAD)}-"]


def test_checksum_or_size_mismatch_is_an_error_and_keeps_nothing(server, tmp_path):
    url, _ = server
    dest = tmp_path / "blob.bin"
    with pytest.raises(DownloadError, match="SHA-256 mismatch"):
        download(f"{url}/blob.bin", dest, sha256="0" * 64)
    assert not dest.exists() and not (tmp_path / "blob.bin.part").exists()
    with pytest.raises(DownloadError, match="expected 5"):
        download(f"{url}/blob.bin", dest, size=5)
    assert list(tmp_path.iterdir()) == []


def test_http_error_and_existing_file_handling(server, tmp_path):
    url, state = server
    with pytest.raises(DownloadError, match="HTTP 404"):
        download(f"{url}/missing.bin", tmp_path / "m.bin")
    dest = tmp_path / "blob.bin"
    dest.write_bytes(b"stale")
    sha = hashlib.sha256(PAYLOAD).hexdigest()
    download(f"{url}/blob.bin", dest, sha256=sha)  # a stale file that fails the check is replaced
    assert dest.read_bytes() == PAYLOAD
    n = len(state.ranges)
    download(f"{url}/blob.bin", dest, sha256=sha)  # a verified file is not fetched again
    assert len(state.ranges) == n


def _tgz(files: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def test_extract_is_safe_and_idempotent(tmp_path):
    good = tmp_path / "good.tgz"
    good.write_bytes(_tgz({"ecgen-radiology/1.xml": b"<a/>"}))
    out = extract_tar(good, tmp_path / "out")
    assert (out / "ecgen-radiology/1.xml").read_bytes() == b"<a/>"
    (out / "ecgen-radiology/1.xml").unlink()
    extract_tar(good, tmp_path / "out")  # marker present: not extracted again
    assert not (out / "ecgen-radiology/1.xml").exists()
    evil = tmp_path / "evil.tgz"
    evil.write_bytes(_tgz({"../escape.txt": b"x"}))
    with pytest.raises(DownloadError, match="cannot extract"):
        extract_tar(evil, tmp_path / "out2")
    assert not (tmp_path / "escape.txt").exists()


def test_cli_download_openi_from_a_mirror(server, tmp_path):
    from lexray.cli.main import app

    url, state = server
    reports = _tgz({"ecgen-radiology/1.xml": b"<eCitation/>"})
    state.files["/NLMCXR_reports.tgz"] = reports
    dest = tmp_path / "openi"
    sha = hashlib.sha256(reports).hexdigest()
    result = CliRunner().invoke(
        app,
        [
            "data",
            "download",
            "openi",
            "--dest",
            str(dest),
            "--no-images",
            "--base-url",
            url,
            "--sha256",
            f"NLMCXR_reports.tgz={sha}",
        ],
    )
    assert result.exit_code == 0, result.output
    assert (dest / "ecgen-radiology" / "1.xml").is_file()
    assert Path(dest / "NLMCXR_reports.tgz").read_bytes() == reports
    bad = CliRunner().invoke(
        app,
        [
            "data",
            "download",
            "openi",
            "--dest",
            str(tmp_path / "o2"),
            "--no-images",
            "--base-url",
            url,
            "--sha256",
            "NLMCXR_reports.tgz=" + "1" * 64,
        ],
    )
    assert bad.exit_code == 1 and "SHA-256 mismatch" in bad.output
    assert not (tmp_path / "o2" / "NLMCXR_reports.tgz").exists()
