"""`lexray serve` as a real process: binds 127.0.0.1, answers, enforces the token from the environment."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

TOY_DIR = Path(__file__).resolve().parents[1] / "index"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_serve_command(served_index: Path):
    port = _free_port()
    env = {**os.environ, "PYTHONPATH": str(TOY_DIR), "LEXRAY_API_TOKEN": "tok-123"}
    args = ["serve", "--index", str(served_index), "--set", f"port={port}"]
    proc = subprocess.Popen(
        [sys.executable, "-c", "from lexray.cli.main import main; main()", *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            try:
                health = httpx.get(f"{base}/healthz", timeout=2)
                break
            except httpx.TransportError:
                assert proc.poll() is None, proc.stdout.read() if proc.stdout else ""
                assert time.monotonic() < deadline, "lexray serve did not come up"
                time.sleep(0.2)
        assert health.json()["auth"] is True and health.json()["studies"] == 8
        assert httpx.get(f"{base}/v1/studies/s1").status_code == 401
        ok = httpx.get(f"{base}/v1/studies/s1", headers={"Authorization": "Bearer tok-123"})
        assert ok.status_code == 200 and ok.json()["study_id"] == "s1"
        assert "lexray" in httpx.get(f"{base}/").text
    finally:
        proc.terminate()
        out, _ = proc.communicate(timeout=30)
    assert f"serving {served_index} on http://127.0.0.1:{port} (auth: bearer token)" in out
    assert "GET /v1/studies/s1 -> 401" in out and "GET /v1/studies/s1 -> 200" in out
    assert "tok-123" not in out  # the token never reaches the log


def test_serve_refuses_a_non_index(tmp_path: Path):
    proc = subprocess.run(
        [
            sys.executable,
            "-c",
            "from lexray.cli.main import main; main()",
            "serve",
            "--index",
            str(tmp_path),
            "--set",
            f"port={_free_port()}",
        ],  # fmt: skip
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2 and "not a lexray index" in proc.stderr


def test_busy_port_and_unknown_host_are_one_line_before_the_model_loads(tmp_path: Path):
    from typer.testing import CliRunner

    from lexray.cli.main import app

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        # tmp_path is no index: the address is checked first, so the port is what the message names.
        result = CliRunner().invoke(app, ["serve", "--index", str(tmp_path), "--set", f"port={port}"])
    assert result.exit_code == 2 and isinstance(result.exception, SystemExit), result.output
    assert f"cannot listen on 127.0.0.1:{port}" in result.output and "in use" in result.output
    result = CliRunner().invoke(
        app, ["serve", "--index", str(tmp_path), "--set", "host=no-such-host.invalid"]
    )
    assert result.exit_code == 2 and "cannot listen on no-such-host.invalid" in result.output
