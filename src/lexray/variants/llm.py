"""LLM-rewritten variants: prompts -> backend -> reply clean-up -> labeler check -> records.

Replies that fail (backend error, empty or malformed, runaway length) are returned as *failures* and
never become records, so a resumed run asks again. Replies that arrive are labelled and checked like
rule variants; rejected ones are stored with their reason so rejection rates per style and generator
are visible (small models such as SmolLM2-135M are rejected often).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field

from lexray.data.study import Study
from lexray.variants._text import source_text, study_sections
from lexray.variants.backends import ChatBackend
from lexray.variants.checks import ATTRIBUTES, LabelerLike, check_equivalent, check_error, get_default_labeler
from lexray.variants.prompts import Prompt, prompt_for_style
from lexray.variants.record import ERROR_STYLE, NOT_APPLICABLE, VariantRecord

_FENCE = re.compile(r"^```[a-zA-Z]*\s*|\s*```$")
# "Here is the rewritten report:" / "Rewritten report:" preambles small models add.
_PREAMBLE = re.compile(
    r"^(?:(?:sure|certainly|okay)[,!.]?\s*)?(?:here\s+is|here's)?\s*(?:the\s+)?"
    r"(?:rewritten|expanded|paraphrased|changed|modified|standardi[sz]ed)?\s*(?:report|impression|version)\s*:\s*",
    re.IGNORECASE,
)


def clean_reply(text: str) -> str:
    """Strip code fences, quotes and "Here is the rewritten report:" preambles from a reply."""
    text = _FENCE.sub("", text.strip()).strip()
    text = _PREAMBLE.sub("", text, count=1).strip()
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "\"'":
        text = text[1:-1].strip()
    return text


@dataclass
class LLMOutcome:
    """Records made (accepted or rejected by the labeler) and failures (no usable reply; not stored)."""

    records: list[VariantRecord] = field(default_factory=list)
    failures: list[dict[str, str]] = field(default_factory=list)


def make_llm_variants(
    studies: Sequence[Study],
    styles: Sequence[str],
    backend: ChatBackend,
    labeler: LabelerLike | None = None,
    error_types: Sequence[str] = (),
    prompts_dir: str | None = None,
    attributes: Sequence[str] = ATTRIBUTES,
    max_length_ratio: float = 4.0,
    skip: set[tuple[str, ...]] | None = None,
) -> LLMOutcome:
    """Rewrite each study's report in each LLM style (and inject each error type for ``"error"``).

    Args:
        studies: source studies.
        styles: LLM styles (``standardized``, ``expanded``, ``impression_only``, ``paraphrase``, ``error``).
        backend: a :class:`~lexray.variants.backends.ChatBackend`.
        labeler: finding labeler for the checks; default :func:`lexray.findings.get_labeler`.
        error_types: error types asked for when ``"error"`` is among the styles.
        prompts_dir: folder overriding the packaged prompt files.
        attributes: mention attributes the checks compare.
        max_length_ratio: replies longer than this times the source (characters) are failures.
        skip: store keys already done (see :meth:`VariantStore.done_keys`).

    Returns:
        An :class:`LLMOutcome`.
    """
    labeler = labeler or get_default_labeler()
    skip = skip or set()
    prompts: dict[str, Prompt] = {s: prompt_for_style(s, prompts_dir) for s in styles}
    outcome = LLMOutcome()
    jobs: list[tuple[Study, str, str | None, Prompt, str]] = []  # study, style, error type, prompt, source
    for study in studies:
        src = source_text(study)
        for style in styles:
            prompt = prompts[style]
            for etype in error_types if style == ERROR_STYLE else (None,):
                key = (study.study_id, style, backend.name, prompt.version_id, etype or "")
                if key in skip:
                    continue
                if not src:
                    outcome.records.append(
                        _record(
                            study, style, etype, backend, prompt, "", False, f"{NOT_APPLICABLE}: empty report"
                        )
                    )
                    continue
                if style == "impression_only" and not study_sections(study)[0]:
                    reason = f"{NOT_APPLICABLE}: the report has no findings to summarise"
                    outcome.records.append(_record(study, style, etype, backend, prompt, "", False, reason))
                    continue
                jobs.append((study, style, etype, prompt, src))
    if not jobs:
        return outcome

    replies = backend.chat([prompt.messages(src, etype) for _, _, etype, prompt, src in jobs])
    kept: list[tuple[Study, str, str | None, Prompt, str, str]] = []
    for (study, style, etype, prompt, src), reply in zip(jobs, replies, strict=True):
        text = clean_reply(reply.text) if reply.ok else ""
        reason = reply.error if not reply.ok else ("empty reply after clean-up" if not text else "")
        if text and len(text) > max_length_ratio * max(len(src), 1):
            reason = f"reply {len(text)} chars, over {max_length_ratio:g}x the source"
        if reason:
            outcome.failures.append(
                {
                    "study_id": study.study_id,
                    "style": style,
                    "error_type": etype or "",
                    "generator": backend.name,
                    "prompt_version": prompt.version_id,
                    "reason": reason,
                }
            )
            continue
        kept.append((study, style, etype, prompt, src, text))

    texts = list(dict.fromkeys([t for *_, src, t in kept] + [src for *_, src, _ in kept]))
    labels = dict(zip(texts, labeler.pipe(texts), strict=True))
    for study, style, etype, prompt, src, text in kept:
        if text.strip() == src.strip():
            ok, why = False, "identical to the source"
        elif etype is None:
            ok, why = check_equivalent(labels[src], labels[text], style, attributes)
        else:
            ok, why = check_error(labels[src], labels[text], etype, None, attributes)
        outcome.records.append(_record(study, style, etype, backend, prompt, text, ok, why))
    return outcome


def _record(
    study: Study,
    style: str,
    etype: str | None,
    backend: ChatBackend,
    prompt: Prompt,
    text: str,
    ok: bool,
    why: str,
) -> VariantRecord:
    return VariantRecord(
        study_id=study.study_id,
        style=style,
        kind="error" if etype else "equivalent",
        error_type=etype,
        generator=backend.name,
        prompt_version=prompt.version_id,
        text=text,
        accepted=ok,
        reject_reason="" if ok else why,
    )
