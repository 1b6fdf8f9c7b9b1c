"""Shared by the multi-process tests: a tiny random Llama (each launched process loads it from disk), and
``accelerate launch`` of the lexray command line as 2 processes on CPU."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from lexray.testing import build_tiny_llama


@pytest.fixture(scope="session")
def tiny_llama(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 2-layer random Llama directory (tied embeddings)."""
    return build_tiny_llama(tmp_path_factory.mktemp("tiny-llama"))


def _launch(
    args: list[str], env: dict[str, str] | None = None, ok: bool = True, timeout: int = 240
) -> subprocess.CompletedProcess:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, **(env or {}), "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    # --multi_gpu selects Accelerate's torchrun launcher; without a GPU lexray's processes use gloo on CPU.
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2"]
    cmd += ["--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no"]
    cmd += ["--main_process_ip", "127.0.0.1", "--main_process_port", str(port)]
    proc = subprocess.run(
        cmd + ["-m", "lexray.cli.main", *args], env=env, capture_output=True, text=True, timeout=timeout
    )
    if ok:
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-6000:]
    return proc


@pytest.fixture(scope="session")
def launch() -> Callable[..., subprocess.CompletedProcess]:
    """``launch(args, env=None, ok=True)``: ``lexray ARGS`` as 2 processes (gloo), asserted to succeed
    unless ``ok`` is False; ``env`` adds environment variables."""
    return _launch
