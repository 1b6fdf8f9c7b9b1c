"""The variant record: one rewritten report (clinically equivalent, or with one injected error)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Literal

# Styles of clinically equivalent variants. Rule styles are made by `lexray.variants.rules`; the LLM
# styles come from prompt files in `lexray/variants/prompts`.
RULE_STYLES: tuple[str, ...] = (
    "shorthand",  # abbreviation-heavy, telegraphic
    "expanded",  # abbreviations spelled out, telegraphic sentences made whole
    "impression_only",  # the impression section alone
    "summary",  # one or two lines: the findings that state something present, then the impression
    "brief",  # the summary's content in hospital shorthand, impression first or last
    "findings_only",  # the findings section alone
    "reordered",  # sentence order changed within each section
    "headerless",  # section headers and list numbering removed
    "hospital_template",  # a hospital-style template with other headers and layout
    "restyled",  # reworded: synonyms, other sentence frames, findings reordered
)
LLM_STYLES: tuple[str, ...] = ("standardized", "expanded", "impression_only", "paraphrase")
ERROR_STYLE = "error"
STYLES: tuple[str, ...] = tuple(dict.fromkeys((*RULE_STYLES, *LLM_STYLES, ERROR_STYLE)))

# Single clinical errors for hard negatives. "chronicity" (acute <-> chronic, new <-> unchanged) is the
# second half of the "certainty/chronicity change" and is kept as its own type so that checks can
# tell the two apart.
ERROR_TYPES: tuple[str, ...] = (
    "laterality",
    "negation",
    "severity",
    "location",
    "fabricated",
    "omission",
    "certainty",
    "chronicity",
)

Kind = Literal["equivalent", "error"]
NOT_APPLICABLE = "not applicable"  # reject_reason prefix: the style or error cannot apply to this report


@dataclass(frozen=True)
class VariantRecord:
    """One variant of one study's report.

    ``accepted`` is the verdict of the labeler check: an equivalent variant keeps the source's label
    vector; an error variant differs in exactly its intended observation or attribute. Rejected variants
    are kept (with ``reject_reason``) so that rejection rates can be reported per style and generator.
    """

    study_id: str  # Study.study_id of the source report
    style: str  # one of STYLES ("error" for single-error variants)
    kind: Kind  # "equivalent" or "error"
    error_type: str | None  # one of ERROR_TYPES for kind == "error", else None
    generator: str  # "rules", "hf:<model>" or "openai:<url>"
    prompt_version: str  # "<prompt name>/<version>-<sha8>" for LLM variants, "rules-<sha8>" for rules
    text: str  # the variant report text ("" when nothing could be made)
    accepted: bool  # passed the labeler check
    reject_reason: str = ""  # why it was rejected ("" when accepted)
    target: str = ""  # error variants: the CheXpert observation the error was aimed at (rules), if known

    @property
    def key(self) -> tuple[str, str, str, str, str]:
        """Store key: (study_id, style, generator, prompt_version, error_type or "")."""
        return record_key(self.study_id, self.style, self.generator, self.prompt_version, self.error_type)

    @property
    def not_applicable(self) -> bool:
        """True when the style or error could not apply to the report (not counted as a rejection)."""
        return not self.accepted and self.reject_reason.startswith(NOT_APPLICABLE)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able dict."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> VariantRecord:
        """Inverse of :meth:`to_dict`; unknown keys are ignored so newer stores stay readable."""
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})


def record_key(
    study_id: str, style: str, generator: str, prompt_version: str, error_type: str | None = None
) -> tuple[str, str, str, str, str]:
    """The store key of a variant (error variants of one study differ by their error type)."""
    return (study_id, style, generator, prompt_version, error_type or "")
