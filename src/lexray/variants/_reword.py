"""Rewording for the ``restyled`` style: synonym groups and other sentence frames with the same content.

Every rewrite keeps the statement it rewrites (a negation stays a negation, a degree stays the degree),
so it also serves to reword single-error variants without undoing their error.
"""

from __future__ import annotations

import random
import re

from lexray.variants import _rewrites as rw
from lexray.variants._text import match_start_case, shuffled, tidy_sentence

# A sentence with a verb of its own: "No X." frames must not be put around it.
NO_VERB = re.compile(r"\b(?:is|are|was|were|seen|noted|identified|present|demonstrated|visualized)\b", re.I)
# "No (interval) change in X" states X is unchanged, not absent: never rewrite it as "There is no ...".
NO_CHANGE = re.compile(r"^No\s+(?:\w+\s+){0,2}(?:change|progression|difference)", re.I)


def _synonym_table() -> list[tuple[re.Pattern[str], tuple[str, ...]]]:
    out = []
    for group in rw.SYNONYM_GROUPS:
        alternation = "|".join(re.escape(p) for p in sorted(group, key=len, reverse=True))
        out.append((re.compile(rf"(?<![\w/])(?:{alternation})(?![\w/])", re.I), group))
    return out


_SYNONYMS = _synonym_table()
_ADVERB = "|".join(rw.DEGREE_ADJECTIVES)
_ADJECTIVE = "|".join(rw.DEGREE_ADJECTIVES.values())
_HEART_ENLARGED = re.compile(rf"^(?:The )?(?:heart|cardiac silhouette) is (?:({_ADVERB}) )?enlarged\.$", re.I)
_CARDIOMEGALY = re.compile(rf"^(?:There is )?(?:({_ADJECTIVE}) )?cardiomegaly\.$", re.I)
_NEGATION = re.compile(r"^(?:There (?:is|are) no|No) (.+)\.$")
_SEEN = re.compile(r"^(?!No\b)(.+?) (is|are) (?:seen|noted|identified|present)\.$")
_THERE_IS = re.compile(r"^There (is|are) (?!no\b)(.+)\.$")
_ARTICLE_NOUNS = re.compile(r"^(?:Lungs|Heart|Mediastinum|Trachea|Cardiomediastinal|Pulmonary|Osseous)\b")


def _lower_first(phrase: str) -> str:
    """Lower-case a phrase's first letter unless it starts an acronym ("PICC", "RLL")."""
    return phrase if phrase[1:2].isupper() else phrase[:1].lower() + phrase[1:]


def _recast(sentence: str, rng: random.Random) -> str:
    """Another sentence frame with the same content: negation, existence and heart-size frames."""
    if m := _HEART_ENLARGED.match(sentence):
        degree = rw.DEGREE_ADJECTIVES[m.group(1).lower()] + " " if m.group(1) else ""
        return rng.choice((f"There is {degree}cardiomegaly.", f"{degree}cardiomegaly."))
    if m := _CARDIOMEGALY.match(sentence):
        degree = rw.DEGREE_ADVERBS[m.group(1).lower()] + " " if m.group(1) else ""
        return rng.choice((f"The heart is {degree}enlarged.", f"The cardiac silhouette is {degree}enlarged."))
    m = _NEGATION.match(sentence)
    if m and not NO_VERB.search(m.group(1)) and not NO_CHANGE.search(sentence):
        what = m.group(1)
        frames = ["No {}.", "There is no {}.", "No {} is seen.", "No {} is identified."]
        if not what.lower().startswith("evidence"):
            frames.append("No evidence of {}.")
        return rng.choice(frames).format(what)
    if m := _SEEN.match(sentence):
        return f"There {m.group(2)} {_lower_first(m.group(1))}."
    if m := _THERE_IS.match(sentence):
        return f"{m.group(2)} {m.group(1)} seen."
    if sentence.startswith("The ") and rng.random() < 0.3:
        return sentence[4:]
    if _ARTICLE_NOUNS.match(sentence) and rng.random() < 0.5:
        return "The " + _lower_first(sentence)
    return sentence


def _reword_sentence(sentence: str, rng: random.Random) -> str:
    s = sentence
    for pattern, group in _SYNONYMS:

        def repl(m: re.Match[str], group: tuple[str, ...] = group) -> str:
            others = [g for g in group if g != m.group(0).lower()]
            if rng.random() < 0.25:  # some phrasings stay, so seeds differ
                return m.group(0)
            return match_start_case(rng.choice(others), m.group(0), m.start() == 0)

        s = pattern.sub(repl, s)
    return tidy_sentence(_recast(s, rng))


def reword_sections(
    findings: list[str], impression: list[str], rng: random.Random
) -> tuple[list[str], list[str]]:
    """Both sections reworded (synonyms, other sentence frames) and the findings reordered."""
    f = [_reword_sentence(s, rng) for s in findings]
    i = [_reword_sentence(s, rng) for s in impression]
    return (shuffled(f, rng) if rng.random() < 0.7 else f), i
