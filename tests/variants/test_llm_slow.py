"""LLM variants with the real SmolLM2-135M-Instruct: in process, and served by `transformers serve`."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from lexray.variants.backends import HFChatBackend, OpenAIChatBackend
from lexray.variants.config import LLMConfig, VariantsConfig
from lexray.variants.llm import make_llm_variants
from lexray.variants.pipeline import generate_variants, variant_stats
from lexray.variants.store import VariantStore

from .conftest import HANDWRITTEN

pytestmark = pytest.mark.slow

STUDIES = [HANDWRITTEN[1], HANDWRITTEN[4], HANDWRITTEN[5]]


@pytest.fixture(autouse=True, scope="module")
def _one_torch_thread():
    """One intra-op thread: on a shared 2-core machine, spinning OpenMP threads slow decoding about 10x."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def test_local_transformers_backend(smollm2_dir: Path, labeler) -> None:
    backend = HFChatBackend(str(smollm2_dir), LLMConfig(max_new_tokens=64, batch_size=3))
    out = make_llm_variants(STUDIES, ["paraphrase"], backend, labeler)
    assert len(out.records) + len(out.failures) == len(STUDIES)
    for r in out.records:
        assert r.text and r.generator == f"hf:{smollm2_dir}" and r.prompt_version.startswith("paraphrase/v1-")
        assert r.accepted or r.reject_reason
    # greedy decoding: the same run gives the same replies
    again = make_llm_variants(STUDIES, ["paraphrase"], backend, labeler)
    assert [r.text for r in again.records] == [r.text for r in out.records]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def served_smollm2(smollm2_dir: Path):
    """`transformers serve` with the offline SmolLM2 directory on 127.0.0.1 (started and stopped here)."""
    exe = shutil.which("transformers") or str(Path(sys.executable).parent / "transformers")
    if not Path(exe).exists():
        pytest.skip("the `transformers` CLI is not installed (pip install 'transformers[serving]')")
    port = _free_port()
    proc = subprocess.Popen(
        [exe, "serve", str(smollm2_dir), "--host", "127.0.0.1", "--port", str(port), "--device", "cpu"],
        env={**os.environ, "OMP_NUM_THREADS": "1"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    url = f"http://127.0.0.1:{port}/v1"
    try:
        deadline = time.monotonic() + 180
        while True:
            if proc.poll() is not None:
                pytest.fail(f"transformers serve exited with {proc.returncode}: {proc.stderr.read()[-2000:]}")
            try:
                if httpx.get(f"{url}/models", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                pytest.fail("transformers serve did not answer within 180 s")
            time.sleep(1)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def test_openai_backend_against_transformers_serve(served_smollm2: str, tmp_path: Path, labeler) -> None:
    # 1. a timeout shorter than any generation: retried, then reported as a failure and not stored
    impatient = VariantsConfig(
        generator=f"openai:{served_smollm2}",
        styles=("paraphrase",),
        llm=LLMConfig(max_new_tokens=48, timeout_s=0.05, max_retries=1, backoff_s=0.05),
    )
    store = VariantStore(tmp_path / "v")
    first = generate_variants(STUDIES[:1], impatient, store, labeler=labeler, progress=False)
    assert first.written == 0 and first.failures == 1 and "timeout" in store.read_failures()[0]["reason"]
    assert store.read() == []

    # 2. a normal run: the served model's model id is discovered from /v1/models
    cfg = VariantsConfig(
        generator=f"openai:{served_smollm2}",
        styles=("paraphrase", "impression_only"),
        llm=LLMConfig(max_new_tokens=48, timeout_s=300, concurrency=2),
    )
    summary = generate_variants(STUDIES, cfg, store, labeler=labeler, progress=False)
    records = store.read()
    assert summary.written == len(records) and len(records) + summary.failures == 2 * len(STUDIES)
    assert len(records) >= len(STUDIES)  # the real server answers most requests
    for r in records:
        assert r.text and r.generator == f"openai:{served_smollm2}"
    rows = {(row.style, row.generator): row for row in variant_stats(store)}
    assert rows[("paraphrase", f"openai:{served_smollm2}")].total >= 1

    # 3. the same backend object answers a direct chat call with a non-empty reply
    backend = OpenAIChatBackend(served_smollm2, LLMConfig(max_new_tokens=16, timeout_s=300))
    (reply,) = backend.chat([[{"role": "user", "content": "Say: no pneumothorax."}]])
    assert reply.ok and backend.model.endswith("smollm2-135m")
