"""Versioned prompt files for LLM rewriting (``lexray/variants/prompts/<name>.yaml``).

A prompt file holds ``name``, ``version``, ``style`` (the variant style it makes), ``kind``
(``equivalent`` or ``error``), a ``system`` message and a ``user`` template with ``{report}`` (and
``{error_description}`` for error prompts, filled from ``error_descriptions``). A variant records
``prompt_version = "<name>/v<version>-<sha8 of the file>"``, so editing a prompt without bumping its
version still gives new store keys and never mixes outputs of two prompts.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import yaml

from lexray.errors import LexrayError
from lexray.variants.record import ERROR_TYPES

# Which packaged prompt makes each LLM style.
PROMPT_FOR_STYLE: dict[str, str] = {
    "standardized": "standardize",
    "expanded": "expand",
    "impression_only": "impression",
    "paraphrase": "paraphrase",
    "error": "inject_error",
}
_REQUIRED = ("name", "version", "style", "kind", "system", "user")


class PromptError(LexrayError, ValueError):
    """A prompt file is missing, malformed or lacks a required field."""


@dataclass(frozen=True)
class Prompt:
    """One versioned prompt."""

    name: str  # file stem, e.g. "standardize"
    version: int  # bumped by hand when the wording changes on purpose
    style: str  # variant style it produces
    kind: str  # "equivalent" or "error"
    system: str  # system message
    user: str  # user message template with {report} (and {error_description})
    sha: str  # SHA-256 of the file, so silent edits still change the version id
    error_descriptions: dict[str, str] = field(default_factory=dict)  # error type -> instruction

    @property
    def version_id(self) -> str:
        """The ``prompt_version`` recorded with every variant: ``name/v<version>-<sha8>``."""
        return f"{self.name}/v{self.version}-{self.sha[:8]}"

    def messages(self, report: str, error_type: str | None = None) -> list[dict[str, str]]:
        """The chat messages for one report.

        Raises:
            PromptError: an error prompt without ``error_type`` or without a description for it.
        """
        user = self.user.replace("{report}", report.strip())
        if "{error_description}" in user:
            if error_type not in self.error_descriptions:
                raise PromptError(
                    f"prompt {self.name} needs an error type with a description; "
                    f"got {error_type!r}, described: {', '.join(self.error_descriptions)}"
                )
            user = user.replace("{error_description}", self.error_descriptions[error_type])
        return [{"role": "system", "content": self.system}, {"role": "user", "content": user}]


def _read(text: str, origin: str) -> Prompt:
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise PromptError(f"prompt file {origin} is not valid YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise PromptError(f"prompt file {origin} must be a mapping with keys {', '.join(_REQUIRED)}")
    missing = [k for k in _REQUIRED if k not in data]
    if missing:
        raise PromptError(f"prompt file {origin} lacks {', '.join(missing)}")
    if "{report}" not in data["user"]:
        raise PromptError(f"prompt file {origin}: the user template must contain {{report}}")
    descriptions = {str(k): str(v) for k, v in (data.get("error_descriptions") or {}).items()}
    unknown = sorted(set(descriptions) - set(ERROR_TYPES))
    if unknown:
        raise PromptError(
            f"prompt file {origin} describes unknown error types {unknown}; known: {ERROR_TYPES}"
        )
    return Prompt(
        name=str(data["name"]),
        version=int(data["version"]),
        style=str(data["style"]),
        kind=str(data["kind"]),
        system=str(data["system"]).strip(),
        user=str(data["user"]).strip(),
        sha=hashlib.sha256(text.encode("utf-8")).hexdigest(),
        error_descriptions=descriptions,
    )


def load_prompt(name_or_path: str | Path, prompts_dir: str | Path | None = None) -> Prompt:
    """Load a prompt by packaged name (``"standardize"``), from ``prompts_dir``, or from a YAML path.

    Raises:
        PromptError: no such prompt, or the file is malformed.
    """
    path = Path(name_or_path)
    if path.suffix in (".yaml", ".yml") and path.is_file():
        return _read(path.read_text(encoding="utf-8"), str(path))
    name = str(name_or_path)
    if prompts_dir is not None:
        candidate = Path(prompts_dir) / f"{name}.yaml"
        if candidate.is_file():
            return _read(candidate.read_text(encoding="utf-8"), str(candidate))
    packaged = resources.files("lexray.variants") / "prompts" / f"{name}.yaml"
    if not packaged.is_file():
        known = ", ".join(sorted(available_prompts()))
        raise PromptError(f"no prompt named {name!r}; packaged prompts: {known}; or give a .yaml path")
    return _read(packaged.read_text(encoding="utf-8"), f"lexray/variants/prompts/{name}.yaml")


def available_prompts() -> list[str]:
    """Names of the packaged prompts."""
    folder = resources.files("lexray.variants") / "prompts"
    return sorted(p.name[: -len(".yaml")] for p in folder.iterdir() if p.name.endswith(".yaml"))


def prompt_for_style(style: str, prompts_dir: str | Path | None = None) -> Prompt:
    """The prompt that makes an LLM style.

    Raises:
        PromptError: the style has no prompt (it is a rule-only style).
    """
    if style not in PROMPT_FOR_STYLE:
        raise PromptError(f"style {style!r} has no LLM prompt; LLM styles: {', '.join(PROMPT_FOR_STYLE)}")
    return load_prompt(PROMPT_FOR_STYLE[style], prompts_dir)
