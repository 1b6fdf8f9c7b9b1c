"""Configuration of variant generation: one frozen dataclass per component."""

from __future__ import annotations

from dataclasses import dataclass, field

from lexray.variants.checks import ATTRIBUTES
from lexray.variants.record import ERROR_TYPES, RULE_STYLES


@dataclass(frozen=True)
class LLMConfig:
    """An LLM backend: a local transformers chat model or an OpenAI-compatible endpoint."""

    model: str = (
        ""  # openai: the served model name ("" = $LEXRAY_OPENAI_MODEL, else the first of GET /models)
    )
    max_new_tokens: int = 256  # tokens generated per reply
    temperature: float = 0.0  # 0 = greedy (reproducible); > 0 samples
    top_p: float = 1.0  # nucleus sampling mass when temperature > 0
    seed: int = 0  # sampling seed (local backend; sent as "seed" to OpenAI-compatible servers)
    batch_size: int = 4  # hf: conversations generated together
    device: str = "cpu"  # hf: torch device of the local model
    dtype: str = "float32"  # hf: torch dtype of the local model ("float32", "bfloat16", "float16")
    concurrency: int = 8  # openai: requests in flight at once
    max_retries: int = 4  # openai: retries after a 5xx, 429, timeout or dropped connection
    timeout_s: float = 120.0  # openai: per-request timeout in seconds
    backoff_s: float = 1.0  # openai: first retry delay; doubles per retry (plus up to 10% jitter)
    max_backoff_s: float = 30.0  # openai: cap on one retry delay (also caps Retry-After)
    max_length_ratio: float = (
        4.0  # a reply longer than this many times the source (in characters) is rejected
    )


@dataclass(frozen=True)
class VariantsConfig:
    """One ``lexray variants make`` run."""

    generator: str = (
        "rules"  # "rules", "hf:<model ref>" or "openai:<base url>" ("openai:" = $LEXRAY_OPENAI_BASE_URL)
    )
    styles: tuple[str, ...] = (
        *RULE_STYLES,
        "error",
    )  # styles to make; "error" makes one variant per error type
    error_types: tuple[str, ...] = ERROR_TYPES  # error types made for the "error" style
    seed: int = 0  # rule styles and error edits are deterministic under this seed
    splits: tuple[str, ...] = (
        "train",
    )  # manifest splits used (never make training variants of val/test); () = all
    limit: int = 0  # use only the first N studies (0 = all)
    chunk_size: int = 256  # studies per labeler pass and per durable store append
    max_candidates: int = 4  # error variants: candidate edits tried before giving up
    attributes: tuple[str, ...] = ATTRIBUTES  # mention attributes the checks compare
    prompts_dir: str = ""  # folder of prompt YAML files overriding the packaged ones ("" = packaged)
    llm: LLMConfig = field(default_factory=LLMConfig)  # LLM backend settings (ignored by "rules")
