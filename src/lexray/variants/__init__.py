"""Report variants: clinically equivalent rewrites and single-error hard negatives, checked by the labeler.

* :mod:`~lexray.variants.rules` - rule styles (shorthand, expanded, impression_only, summary, brief,
  findings_only, reordered, headerless, hospital_template, restyled), deterministic under a seed.
* :mod:`~lexray.variants.errors` - single-error variants driven by the labeler's mention spans.
* :mod:`~lexray.variants.llm` - LLM rewriting from versioned prompt files through a local transformers
  chat model or any OpenAI-compatible endpoint (:mod:`~lexray.variants.backends`).
* :mod:`~lexray.variants.checks` - the clinical-equivalence and single-error checks.
* :mod:`~lexray.variants.store` - the append-only, crash-safe variant store.

Private helpers: ``_text`` (sentences and layout), ``_reword`` (the ``restyled`` rewording), ``_edit``
(editable reports), ``_candidates`` (candidate edits per error type), ``_rewrites`` (the word tables).
"""

from lexray.variants._rewrites import SIDED_FABRICATIONS
from lexray.variants._text import parse_sections, source_text, split_sentences
from lexray.variants.backends import ChatResult, HFChatBackend, OpenAIChatBackend, make_backend
from lexray.variants.checks import CachedLabeler, Change, check_equivalent, check_error, diff_labels
from lexray.variants.config import LLMConfig, VariantsConfig
from lexray.variants.errors import make_error_variants, make_error_variants_batch
from lexray.variants.llm import make_llm_variants
from lexray.variants.pipeline import generate_variants, select_studies, variant_stats
from lexray.variants.prompts import load_prompt
from lexray.variants.record import ERROR_STYLE, ERROR_TYPES, LLM_STYLES, RULE_STYLES, STYLES, VariantRecord
from lexray.variants.rules import make_rule_variants, make_rule_variants_batch, render_rule_style
from lexray.variants.store import VariantStore

__all__ = [
    "ERROR_STYLE",
    "ERROR_TYPES",
    "LLM_STYLES",
    "RULE_STYLES",
    "SIDED_FABRICATIONS",
    "STYLES",
    "CachedLabeler",
    "Change",
    "ChatResult",
    "HFChatBackend",
    "LLMConfig",
    "OpenAIChatBackend",
    "VariantRecord",
    "VariantStore",
    "VariantsConfig",
    "check_equivalent",
    "check_error",
    "diff_labels",
    "generate_variants",
    "load_prompt",
    "make_backend",
    "make_llm_variants",
    "select_studies",
    "variant_stats",
    "make_error_variants",
    "make_error_variants_batch",
    "make_rule_variants",
    "make_rule_variants_batch",
    "parse_sections",
    "render_rule_style",
    "source_text",
    "split_sentences",
]
