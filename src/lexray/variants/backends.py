"""LLM chat backends: a local transformers chat model and any OpenAI-compatible HTTP endpoint.

Both take a batch of conversations (lists of ``{"role", "content"}`` messages) and return one
:class:`ChatResult` per conversation, in order, with either the reply text or the reason there is none
(HTTP error after retries, timeout, malformed JSON, empty reply). Callers store only replies.

Generator strings select a backend (:func:`make_backend`):

* ``hf:<model ref>`` - a local chat model via transformers (alias, directory or hub id, resolved by
  :func:`lexray.models.local_path`; ``hf:smollm2-135m`` works offline).
* ``openai:<base url>`` - ``POST <base url>/chat/completions`` (vLLM, Ollama, llama.cpp server,
  ``transformers serve``, hosted APIs). ``openai:`` alone reads ``$LEXRAY_OPENAI_BASE_URL`` (or
  ``$OPENAI_BASE_URL``); the key comes from ``$LEXRAY_OPENAI_API_KEY`` (or ``$OPENAI_API_KEY``).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol
from urllib.parse import urlsplit

import httpx

from lexray.errors import LexrayError
from lexray.variants.config import LLMConfig

log = logging.getLogger(__name__)

Message = dict[str, str]
RETRY_STATUS = frozenset({408, 409, 425, 429, 500, 502, 503, 504})  # worth another try


class BackendError(LexrayError, RuntimeError):
    """A backend cannot be built (bad generator string, no base URL, model not available)."""


@dataclass(frozen=True)
class ChatResult:
    """One reply, or why there is none."""

    text: str | None  # the reply (stripped), None on failure
    error: str = ""  # failure reason ("" on success)
    attempts: int = 1  # requests made (1 + retries)

    @property
    def ok(self) -> bool:
        """True when there is a non-empty reply."""
        return bool(self.text)


class ChatBackend(Protocol):
    """What :mod:`lexray.variants.llm` needs from a backend."""

    name: str  # the generator string recorded with each variant

    def chat(self, conversations: Sequence[list[Message]]) -> list[ChatResult]: ...


def _reply(text: str | None) -> ChatResult:
    text = (text or "").strip()
    return ChatResult(text) if text else ChatResult(None, "empty reply")


class HFChatBackend:
    """A local transformers chat model (needs a chat template), generating in padded batches.

    Args:
        model: alias, local directory or hub id (see :func:`lexray.models.local_path`).
        config: generation settings (``max_new_tokens``, ``temperature``, ``batch_size``, ``device``).
    """

    def __init__(self, model: str, config: LLMConfig | None = None) -> None:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        from lexray.models import local_path

        self.config = config or LLMConfig()
        self.name = f"hf:{model}"
        path = local_path(model)
        self.tokenizer = AutoTokenizer.from_pretrained(path)
        if self.tokenizer.chat_template is None:
            raise BackendError(
                f"model {model} ({path}) has no chat template; use an instruction-tuned chat model"
            )
        # Left padding so that every row's reply starts right after its own prompt.
        self.tokenizer.padding_side = "left"
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        dtype = getattr(torch, self.config.dtype)
        self.model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype).to(self.config.device).eval()

    def chat(self, conversations: Sequence[list[Message]]) -> list[ChatResult]:
        """Greedy (temperature 0) or sampled replies, ``batch_size`` conversations at a time."""
        import torch

        cfg = self.config
        out: list[ChatResult] = []
        for i in range(0, len(conversations), cfg.batch_size):
            batch = conversations[i : i + cfg.batch_size]
            prompts = [
                self.tokenizer.apply_chat_template(conv, add_generation_prompt=True, tokenize=False)
                for conv in batch
            ]
            enc = self.tokenizer(prompts, return_tensors="pt", padding=True, add_special_tokens=False)
            enc = enc.to(self.model.device)
            sample = cfg.temperature > 0
            torch.manual_seed(cfg.seed + i)  # sampled replies are reproducible per batch position
            with torch.inference_mode():
                generated = self.model.generate(
                    **enc,
                    max_new_tokens=cfg.max_new_tokens,
                    do_sample=sample,
                    temperature=cfg.temperature if sample else None,
                    top_p=cfg.top_p if sample else None,
                    top_k=None,
                    pad_token_id=self.tokenizer.pad_token_id,
                )  # (B, T_prompt + T_new)
            new_tokens = generated[:, enc["input_ids"].shape[1] :]  # (B, T_new)
            texts = self.tokenizer.batch_decode(new_tokens, skip_special_tokens=True)
            out.extend(_reply(t) for t in texts)
        return out


def _env(*names: str) -> str:
    return next((os.environ[n] for n in names if os.environ.get(n)), "")


def _api_base(url: str) -> str:
    """``http://host:port`` -> ``http://host:port/v1``; a URL with a path is used as given."""
    url = url.rstrip("/")
    return url + "/v1" if urlsplit(url).path in ("", "/") else url


class OpenAIChatBackend:
    """An OpenAI-compatible ``/chat/completions`` endpoint, with concurrency, retries and timeouts.

    Retries (exponential backoff with jitter, ``Retry-After`` honoured) on 408/409/425/429/5xx, timeouts
    and dropped connections. Other 4xx answers, malformed JSON, replies without
    ``choices[0].message.content`` and empty replies fail at once with a reason.

    Args:
        base_url: e.g. ``http://127.0.0.1:8000/v1`` (``/v1`` is added to a bare host:port).
        config: ``model``, ``concurrency``, ``max_retries``, ``timeout_s``, ``backoff_s`` and sampling.
        api_key: bearer token; default ``$LEXRAY_OPENAI_API_KEY`` or ``$OPENAI_API_KEY``.
    """

    def __init__(self, base_url: str, config: LLMConfig | None = None, api_key: str | None = None) -> None:
        self.config = config or LLMConfig()
        given = base_url
        base_url = base_url or _env("LEXRAY_OPENAI_BASE_URL", "OPENAI_BASE_URL")
        if not base_url:
            raise BackendError(
                "no OpenAI-compatible base URL: use --generator openai:http://HOST:PORT/v1 "
                "or set LEXRAY_OPENAI_BASE_URL"
            )
        self.base_url = _api_base(base_url)
        self.name = f"openai:{given or base_url}"
        self.api_key = api_key if api_key is not None else _env("LEXRAY_OPENAI_API_KEY", "OPENAI_API_KEY")
        self.model = self.config.model or _env("LEXRAY_OPENAI_MODEL")
        self._jitter = random.Random(self.config.seed)

    def _headers(self) -> dict[str, str]:
        headers = {"Content-Type": "application/json"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        return headers

    async def _resolve_model(self, client: httpx.AsyncClient) -> str:
        if self.model:
            return self.model
        try:
            r = await client.get(
                f"{self.base_url}/models", headers=self._headers(), timeout=self.config.timeout_s
            )
            r.raise_for_status()
            data = r.json().get("data") or []
        except (httpx.HTTPError, ValueError, AttributeError) as exc:
            raise BackendError(
                f"cannot list models at {self.base_url}/models ({type(exc).__name__}: {exc}); "
                "check the server, or set llm.model / LEXRAY_OPENAI_MODEL"
            ) from exc
        if not data:
            raise BackendError(f"{self.base_url}/models lists no model; set llm.model")
        self.model = str(data[0]["id"])
        log.info("using served model %s", self.model)
        return self.model

    def _delay(self, attempt: int, retry_after: str | None) -> float:
        cfg = self.config
        if retry_after:
            try:
                return min(float(retry_after), cfg.max_backoff_s)
            except ValueError:
                pass
        base = min(cfg.backoff_s * (2**attempt), cfg.max_backoff_s)
        return base * (1 + 0.1 * self._jitter.random())

    async def _one(
        self, client: httpx.AsyncClient, sem: asyncio.Semaphore, messages: list[Message]
    ) -> ChatResult:
        cfg = self.config
        payload = {
            "model": self.model,
            "messages": messages,
            "max_tokens": cfg.max_new_tokens,
            "temperature": cfg.temperature,
            "top_p": cfg.top_p,
            "seed": cfg.seed,
            "stream": False,
        }
        last = ""
        async with sem:
            for attempt in range(cfg.max_retries + 1):
                retry_after = None
                try:
                    r = await client.post(
                        f"{self.base_url}/chat/completions",
                        json=payload,
                        headers=self._headers(),
                        timeout=cfg.timeout_s,
                    )
                except httpx.TimeoutException:
                    last = f"timeout after {cfg.timeout_s:g}s"
                except httpx.TransportError as exc:
                    last = f"connection error ({type(exc).__name__})"
                else:
                    if r.status_code in RETRY_STATUS:
                        last = f"HTTP {r.status_code}"
                        retry_after = r.headers.get("retry-after")
                    elif r.status_code >= 400:
                        return ChatResult(None, f"HTTP {r.status_code}: {r.text[:200]}", attempt + 1)
                    else:
                        return _parse(r.content, attempt + 1)
                if attempt < cfg.max_retries:
                    delay = self._delay(attempt, retry_after)
                    log.debug("%s; retry %d in %.2fs", last, attempt + 1, delay)
                    await asyncio.sleep(delay)
        return ChatResult(None, f"{last} (gave up after {cfg.max_retries + 1} attempts)", cfg.max_retries + 1)

    async def achat(self, conversations: Sequence[list[Message]]) -> list[ChatResult]:
        """Async :meth:`chat`: at most ``concurrency`` requests in flight."""
        sem = asyncio.Semaphore(self.config.concurrency)
        limits = httpx.Limits(max_connections=self.config.concurrency)
        async with httpx.AsyncClient(limits=limits) as client:
            await self._resolve_model(client)
            return list(await asyncio.gather(*(self._one(client, sem, m) for m in conversations)))

    def chat(self, conversations: Sequence[list[Message]]) -> list[ChatResult]:
        """Replies for every conversation, in order (runs its own event loop)."""
        if not conversations:
            return []
        return asyncio.run(self.achat(conversations))


def _parse(content: bytes, attempts: int) -> ChatResult:
    try:
        data = json.loads(content)
        text = data["choices"][0]["message"]["content"]
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        return ChatResult(
            None, f"malformed reply: not JSON ({exc.msg if hasattr(exc, 'msg') else exc})", attempts
        )
    except (KeyError, IndexError, TypeError):
        return ChatResult(None, "malformed reply: no choices[0].message.content", attempts)
    if not isinstance(text, str):
        return ChatResult(None, "malformed reply: content is not a string", attempts)
    result = _reply(text)
    return ChatResult(result.text, result.error, attempts)


# Generator prefix -> backend factory (argument: the text after "<prefix>:").
_BACKENDS: dict[str, Callable[[str, LLMConfig], ChatBackend]] = {
    "hf": lambda arg, cfg: HFChatBackend(arg, cfg),
    "openai": lambda arg, cfg: OpenAIChatBackend(arg, cfg),
}


def parse_generator(generator: str) -> tuple[str, str]:
    """Split ``"hf:smollm2-135m"`` into ("hf", "smollm2-135m"); ``"rules"`` -> ("rules", "").

    Raises:
        BackendError: an unknown prefix.
    """
    if generator == "rules":
        return "rules", ""
    prefix, _, arg = generator.partition(":")
    if prefix not in _BACKENDS:
        raise BackendError(f"unknown generator {generator!r}; use rules, hf:MODEL or openai:URL")
    if prefix == "hf" and not arg:
        raise BackendError("hf: needs a model, e.g. hf:smollm2-135m")
    return prefix, arg


def make_backend(generator: str, config: LLMConfig | None = None) -> ChatBackend:
    """The backend named by a generator string (``hf:MODEL`` or ``openai:URL``).

    Raises:
        BackendError: ``rules`` (not an LLM), an unknown prefix or a missing URL.
    """
    prefix, arg = parse_generator(generator)
    if prefix == "rules":
        raise BackendError("the rules generator has no LLM backend")
    return _BACKENDS[prefix](arg, config or LLMConfig())
