"""GREEN (Ostmeier et al., EMNLP Findings 2024) through any OpenAI-compatible chat endpoint.

GREEN asks a judge LLM to compare a candidate report with a reference and list clinically significant
and insignificant errors in six categories (a)-(f) plus the matched findings. The score of one pair is

    GREEN = matched findings / (matched findings + clinically significant errors)

and 0 when nothing matched. The published GREEN model (``StanfordAIMI/GREEN-radllama2-7b``) is served
by the ``green-score`` package (extra ``report-metrics``); this module sends the same prompt to any
OpenAI-compatible ``/chat/completions`` endpoint (vLLM, ``transformers serve``, a hosted API) and
parses the reply. Replies that do not follow the template are reported as unparsed, never guessed.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, field

import httpx
from tqdm.auto import tqdm

from lexray.errors import LexrayError

log = logging.getLogger(__name__)

CATEGORIES = ("a", "b", "c", "d", "e", "f")
CATEGORY_NAMES = {
    "a": "False report of a finding in the candidate",
    "b": "Missing a finding present in the reference",
    "c": "Misidentification of a finding's anatomic location/position",
    "d": "Misassessment of the severity of a finding",
    "e": "Mentioning a comparison that isn't in the reference",
    "f": "Omitting a comparison detailing a change from a prior study",
}

# The GREEN prompt as published with the GREEN model (green_score.utils.make_prompt), so judges other
# than the fine-tuned GREEN model see the same instructions and output template.
GREEN_PROMPT = """Objective: Evaluate the accuracy of a candidate radiology report in comparison to a reference radiology report composed by expert radiologists.

    Process Overview: You will be presented with:

    1. The criteria for making a judgment.
    2. The reference radiology report.
    3. The candidate radiology report.
    4. The desired format for your assessment.

    1. Criteria for Judgment:

    For each candidate report, determine:

    The count of clinically significant errors.
    The count of clinically insignificant errors.

    Errors can fall into one of these categories:

    a) False report of a finding in the candidate.
    b) Missing a finding present in the reference.
    c) Misidentification of a finding's anatomic location/position.
    d) Misassessment of the severity of a finding.
    e) Mentioning a comparison that isn't in the reference.
    f) Omitting a comparison detailing a change from a prior study.
    Note: Concentrate on the clinical findings rather than the report's writing style. Evaluate only the findings that appear in both reports.

    2. Reference Report:
    {reference}

    3. Candidate Report:
    {candidate}

    4. Reporting Your Assessment:

    Follow this specific format for your output, even if no errors are found:
    ```
    [Explanation]:
    <Explanation>

    [Clinically Significant Errors]:
    (a) <Error Type>: <The number of errors>. <Error 1>; <Error 2>; ...; <Error n>
    ....
    (f) <Error Type>: <The number of errors>. <Error 1>; <Error 2>; ...; <Error n>

    [Clinically Insignificant Errors]:
    (a) <Error Type>: <The number of errors>. <Error 1>; <Error 2>; ...; <Error n>
    ....
    (f) <Error Type>: <The number of errors>. <Error 1>; <Error 2>; ...; <Error n>

    [Matched Findings]:
    <The number of matched findings>. <Finding 1>; <Finding 2>; ...; <Finding n>
    ```
"""


def green_prompt(reference: str, candidate: str) -> str:
    """The GREEN judge prompt for one (reference, candidate) pair."""
    return GREEN_PROMPT.format(reference=reference, candidate=candidate)


@dataclass(frozen=True)
class GreenReply:
    """Counts parsed from one judge reply."""

    significant: dict[str, int] | None  # category letter -> count; None when the section is missing
    insignificant: dict[str, int] | None  # same for clinically insignificant errors
    matched: int | None  # matched findings; None when the section or its number is missing
    problems: tuple[str, ...] = field(default_factory=tuple)  # what did not follow the template

    @property
    def score(self) -> float | None:
        """matched / (matched + significant errors); 0 when nothing matched; None when unparseable."""
        if self.matched == 0:
            return 0.0
        if self.matched is None or self.significant is None:
            return None
        return self.matched / (self.matched + sum(self.significant.values()))


_SECTION = r"\[\s*{name}\s*\]\s*:?(.*?)(?=\n\s*\[[A-Za-z][A-Za-z ]*\]\s*:|\Z)"
_ITEM = re.compile(r"^\s*\(\s*([a-f1-6])\s*\)[^:\n]*:\s*(\d+)", re.MULTILINE | re.IGNORECASE)


def _section(text: str, name: str) -> str | None:
    m = re.search(_SECTION.format(name=name), text, re.DOTALL | re.IGNORECASE)
    return m.group(1).strip().strip("`").strip() if m else None


def _error_counts(body: str | None, name: str, problems: list[str]) -> dict[str, int] | None:
    if body is None:
        problems.append(f"no [{name}] section")
        return None
    counts = dict.fromkeys(CATEGORIES, 0)
    if re.match(r"(no\b|none\b|n/a\b)", body, re.IGNORECASE):
        return counts
    found = _ITEM.findall(body)
    if not found and body:
        problems.append(f"[{name}] has no '(a) <type>: <count>.' lines")
        return None
    seen = set()
    for key, count in found:
        letter = CATEGORIES[int(key) - 1] if key.isdigit() else key.lower()
        counts[letter] = int(count)
        seen.add(letter)
    missing = [c for c in CATEGORIES if c not in seen]
    if missing:
        problems.append(f"[{name}] lacks categories {','.join(missing)} (counted as 0)")
    return counts


def parse_green_reply(text: str) -> GreenReply:
    """Parse a judge reply written in the GREEN template.

    Tolerates what judges commonly do: code fences, numbered (1)-(6) instead of lettered categories,
    missing categories (counted as 0 and listed in ``problems``), and "No errors" sections.
    """
    problems: list[str] = []
    sig = _error_counts(
        _section(text, "Clinically Significant Errors"), "Clinically Significant Errors", problems
    )
    insig = _error_counts(
        _section(text, "Clinically Insignificant Errors"), "Clinically Insignificant Errors", problems
    )
    body = _section(text, "Matched Findings")
    matched: int | None = None
    if body is None:
        problems.append("no [Matched Findings] section")
    elif re.match(r"(no\b|none\b)", body, re.IGNORECASE):
        matched = 0
    else:
        m = re.match(r"(\d+)", body)
        if m:
            matched = int(m.group(1))
        else:
            problems.append("[Matched Findings] does not start with a number")
    return GreenReply(significant=sig, insignificant=insig, matched=matched, problems=tuple(problems))


@dataclass(frozen=True)
class JudgeConfig:
    """An OpenAI-compatible chat endpoint used as the GREEN judge."""

    base_url: str = "http://127.0.0.1:8000/v1"  # endpoint root; /chat/completions is appended
    model: str = "StanfordAIMI/GREEN-radllama2-7b"  # model name the server knows
    api_key_env: str = "OPENAI_API_KEY"  # environment variable holding the key (unset: no auth header)
    max_tokens: int = 1024  # reply length limit
    timeout_s: float = 120.0  # per-request timeout
    retries: int = 2  # extra attempts after a failed request


class JudgeError(LexrayError, RuntimeError):
    """The judge endpoint could not be reached or answered with an error."""


def ask_judge(client: httpx.Client, config: JudgeConfig, prompt: str) -> str:
    """Send one prompt to the judge (temperature 0) and return the reply text."""
    headers = {}
    key = os.environ.get(config.api_key_env)
    if key:
        headers["Authorization"] = f"Bearer {key}"
    body = {
        "model": config.model,
        "messages": [{"role": "user", "content": prompt}],
        "temperature": 0.0,
        "max_tokens": config.max_tokens,
    }
    url = config.base_url.rstrip("/") + "/chat/completions"
    last: Exception | None = None
    for _ in range(config.retries + 1):
        try:
            resp = client.post(url, json=body, headers=headers, timeout=config.timeout_s)
            resp.raise_for_status()
            return resp.json()["choices"][0]["message"]["content"]
        except (httpx.HTTPError, KeyError, IndexError, ValueError) as exc:
            last = exc
    raise JudgeError(
        f"GREEN judge at {url} failed after {config.retries + 1} attempts: {last}. Start an OpenAI-compatible "
        "server (e.g. `transformers serve`, vLLM) or set judge.base_url / judge.model"
    ) from last


def green_scores(
    references: Sequence[str],
    candidates: Sequence[str],
    config: JudgeConfig = JudgeConfig(),
    client: httpx.Client | None = None,
    progress: bool = True,
) -> dict:
    """GREEN for every (reference, candidate) pair through the judge endpoint.

    Returns:
        ``{"green": mean over parsed replies, "green_unparsed_as_zero": mean counting unparsed as 0,
        "n_parsed": ..., "n_unparsed": ..., "significant_errors_mean": {letter: ...}, "scores": [...]}``;
        per-pair scores are None where the reply did not follow the template.
    """
    if len(references) != len(candidates):
        raise ValueError(f"{len(references)} references but {len(candidates)} candidates")
    own = client is None
    client = client or httpx.Client()
    replies: list[GreenReply] = []
    try:
        for ref, cand in tqdm(
            list(zip(references, candidates, strict=True)), desc="GREEN judge", disable=not progress
        ):
            replies.append(parse_green_reply(ask_judge(client, config, green_prompt(ref, cand))))
    finally:
        if own:
            client.close()
    scores = [r.score for r in replies]
    parsed = [s for s in scores if s is not None]
    n_bad = len(scores) - len(parsed)
    if n_bad:
        log.warning("%d of %d GREEN replies did not follow the template", n_bad, len(scores))
    sig = [r.significant for r in replies if r.significant is not None]
    return {
        "green": float(sum(parsed) / len(parsed)) if parsed else None,
        "green_unparsed_as_zero": float(sum(parsed) / len(scores)) if scores else None,
        "n_parsed": len(parsed),
        "n_unparsed": n_bad,
        "significant_errors_mean": {c: float(sum(s[c] for s in sig) / len(sig)) for c in CATEGORIES}
        if sig
        else {},
        "scores": scores,
    }
