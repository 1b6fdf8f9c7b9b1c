"""LLM backends: the OpenAI-compatible client against a fake server on 127.0.0.1; the transformers backend."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from lexray.variants.backends import (
    BackendError,
    HFChatBackend,
    OpenAIChatBackend,
    make_backend,
    parse_generator,
)
from lexray.variants.config import LLMConfig

from ._fake_openai import MODEL, FakeOpenAI

FAST = LLMConfig(max_retries=3, backoff_s=0.01, max_backoff_s=0.05, timeout_s=0.5)


def _conv(text: str) -> list[dict[str, str]]:
    return [{"role": "system", "content": "s"}, {"role": "user", "content": text}]


def test_success_model_discovery_and_auth(monkeypatch) -> None:
    monkeypatch.setenv("LEXRAY_OPENAI_API_KEY", "sk-test")
    monkeypatch.delenv("LEXRAY_OPENAI_MODEL", raising=False)
    with FakeOpenAI() as server:
        backend = OpenAIChatBackend(server.url, FAST)
        (res,) = backend.chat([_conv("[[ok]]\nNo pneumothorax.")])
    assert res.ok and res.text == "Rewritten: No pneumothorax." and res.attempts == 1
    assert backend.model == MODEL and server.models_calls == 1
    assert server.auth == ["Bearer sk-test"]
    assert backend.name == f"openai:{server.url}"


def test_retries_on_5xx_then_succeeds() -> None:
    with FakeOpenAI() as server:
        (res,) = OpenAIChatBackend(server.url, FAST).chat([_conv("[[500x2]] x")])
    assert res.ok and res.attempts == 3
    assert server.calls["500x2"] == 3


def test_gives_up_after_max_retries() -> None:
    with FakeOpenAI() as server:
        (res,) = OpenAIChatBackend(server.url, FAST).chat([_conv("[[500]] x")])
    assert not res.ok and res.text is None
    assert "HTTP 500" in res.error and "gave up after 4 attempts" in res.error
    assert server.calls["500"] == 4


def test_retry_after_on_429() -> None:
    with FakeOpenAI() as server:
        (res,) = OpenAIChatBackend(server.url, FAST).chat([_conv("[[429]] x")])
    assert res.ok and res.attempts == 2


def test_timeouts_are_retried_and_reported() -> None:
    cfg = LLMConfig(max_retries=2, backoff_s=0.01, timeout_s=0.3)
    with FakeOpenAI(hang_s=1.0) as server:
        backend = OpenAIChatBackend(server.url, cfg)
        slow, hang = backend.chat([_conv("[[slow]] x"), _conv("[[hang]] y")])
    assert slow.ok and slow.attempts == 2
    assert not hang.ok and hang.error.startswith("timeout after 0.3s") and hang.attempts == 3


@pytest.mark.parametrize(
    ("directive", "reason"),
    [
        ("malformed", "malformed reply: not JSON"),
        ("nochoices", "malformed reply: no choices"),
        ("empty", "empty reply"),
        ("400", "HTTP 400"),
    ],
)
def test_bad_replies_fail_without_retry(directive: str, reason: str) -> None:
    with FakeOpenAI() as server:
        (res,) = OpenAIChatBackend(server.url, FAST).chat([_conv(f"[[{directive}]] x")])
    assert not res.ok and res.error.startswith(reason)
    assert server.calls[directive] == 1  # not retried


def test_concurrency_limit_and_order() -> None:
    cfg = LLMConfig(concurrency=3, timeout_s=5.0)
    with FakeOpenAI(delay=0.4) as server:
        results = OpenAIChatBackend(server.url, cfg).chat([_conv(f"[[ok]]\nreport {k}") for k in range(9)])
    assert [r.text for r in results] == [f"Rewritten: report {k}" for k in range(9)]
    assert 2 <= server.max_in_flight <= 3


def test_connection_refused_is_a_failure_not_a_crash() -> None:
    with FakeOpenAI() as server:
        url = server.url
    backend = OpenAIChatBackend(url, LLMConfig(model=MODEL, max_retries=1, backoff_s=0.01, timeout_s=0.5))
    (res,) = backend.chat([_conv("x")])
    assert not res.ok and "connection error" in res.error


def test_base_url_from_environment(monkeypatch) -> None:
    monkeypatch.delenv("LEXRAY_OPENAI_BASE_URL", raising=False)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    with pytest.raises(BackendError, match="LEXRAY_OPENAI_BASE_URL"):
        make_backend("openai:")
    monkeypatch.setenv("LEXRAY_OPENAI_BASE_URL", "http://127.0.0.1:9")
    backend = make_backend("openai:", LLMConfig(model="m"))
    assert backend.base_url == "http://127.0.0.1:9/v1" and backend.name == "openai:http://127.0.0.1:9"


def test_parse_generator() -> None:
    assert parse_generator("rules") == ("rules", "")
    assert parse_generator("hf:smollm2-135m") == ("hf", "smollm2-135m")
    assert parse_generator("openai:http://h:1/v1") == ("openai", "http://h:1/v1")
    for bad in ("gpt", "hf:", "vllm:x"):
        with pytest.raises(BackendError):
            parse_generator(bad)
    with pytest.raises(BackendError, match="no LLM backend"):
        make_backend("rules")


@pytest.fixture(scope="module")
def tiny_chat_model(tmp_path_factory, smollm2_dir: Path) -> Path:
    """A 2-layer random Llama with SmolLM2's tokenizer and chat template (no real weights used)."""
    from transformers import AutoTokenizer

    from lexray.testing import build_tiny_llama

    tok = AutoTokenizer.from_pretrained(smollm2_dir)
    return build_tiny_llama(tmp_path_factory.mktemp("tiny-chat"), tokenizer=tok, max_positions=1024)


def test_hf_backend_batches_like_single_requests(tiny_chat_model: Path) -> None:
    convs = [
        _conv("No pneumothorax."),
        _conv("Mild cardiomegaly with a small left pleural effusion, unchanged."),
    ]
    backend = HFChatBackend(str(tiny_chat_model), LLMConfig(max_new_tokens=6, batch_size=2))
    assert backend.name == f"hf:{tiny_chat_model}"
    batched = backend.chat(convs)
    backend.config = dataclasses.replace(backend.config, batch_size=1)
    single = backend.chat(convs)
    assert len(batched) == 2
    # left padding: a short prompt batched with a long one generates what it generates alone
    assert [r.text for r in batched] == [r.text for r in single]
    for r in batched:
        assert r.ok or r.error == "empty reply"


def test_hf_backend_needs_a_chat_template(tmp_path: Path, tiny_chat_model: Path) -> None:
    import shutil

    plain = tmp_path / "plain"
    shutil.copytree(tiny_chat_model, plain)
    (plain / "chat_template.jinja").unlink(missing_ok=True)
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(plain)
    if tok.chat_template is not None:
        pytest.skip("this tokenizer keeps its chat template inside tokenizer_config.json")
    with pytest.raises(BackendError, match="no chat template"):
        HFChatBackend(str(plain))
