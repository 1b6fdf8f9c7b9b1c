"""The text benchmark (``textbench-*.jsonl``): style-robust retrieval and error discrimination.

Metrics exactly as defined in the benchmark README:

* ``{style}_R@k`` for style in shorthand / impression_only / restyled: each variant queries the pool of
  originals (original = findings + " " + impression); a hit when its own source ranks within the top k
  by cosine similarity.
* ``errdisc_orig_acc`` / ``errdisc_shorthand_acc``: the anchor (original, or its shorthand variant)
  picks among ``restyled`` (correct) and the three single-error texts; correct when ``restyled`` has
  the highest cosine. Chance is 0.25.
* ``errpair_{orig,shorthand}/{error type}``: per error type, the share of (report, single-error text)
  pairs where ``restyled`` scores strictly above that error text (chance 0.5); ``errpair_n/{type}``
  counts the pairs.

The metric functions take embeddings, so any encoder (or the CLIP text tower) can be scored.

:func:`load_bench` also reads the evaluation files of the published CXR text encoder's scripts (``.csv``,
``.parquet`` or ``.jsonl`` with those columns), scored as those scripts score them:

* ``instruction`` / ``query`` / ``answer`` (text retrieval): documents are the distinct answers
  (whitespace-collapsed); a query hits when a top-k document has the same canonical text as its own
  answer, so duplicate answers all count; ``recall@k`` with k clipped to the number of documents.
* ``instruction`` / ``query`` / ``candidate0..3`` (error discrimination; candidate0 is correct):
  ``accuracy_top1_strict`` (argmax is candidate0, the first index winning ties), ``accuracy_top1_tie_aware``
  (within ``tol`` of the best), ``mean_margin``, ``mean_rank_candidate0`` and ``recall@k_within4``.

Queries are ``query_format.format(instruction=..., query=...)`` of the stripped fields (the scripts'
formats per model are ``lexray.text.published.QUERY_FORMATS``); documents and candidates are plain text.
"""

from __future__ import annotations

import hashlib
import json
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lexray.data.study import Study
from lexray.errors import LexrayError

STYLES = ("shorthand", "impression_only", "restyled")
KS = (1, 5, 10)


class BenchFormatError(LexrayError, ValueError):
    """A bench file that cannot be read as one; the message names the file (and line) and the fix.

    A ``ValueError`` too, so callers that caught the format errors of earlier versions still do.
    """


@dataclass(frozen=True)
class BenchItem:
    """One benchmark report with its variants."""

    id: str  # study id of the source report
    original: str  # findings + " " + impression
    shorthand: str  # terse, abbreviation-heavy dictation of the same content
    impression_only: str  # one/two-line impression-style summary
    restyled: str  # formal, reordered rewrite (the correct candidate in error discrimination)
    errors: tuple[tuple[str, str], ...]  # (error type, text) with exactly one clinically significant error


DEFAULT_QUERY_FORMAT = "{instruction}\n{query}"  # the published scripts' format for BERT-like models
ERROR_CANDIDATES = 4


@dataclass(frozen=True)
class SeedRetrievalItem:
    """One row of a published text-retrieval file."""

    instruction: str  # task instruction of the query
    query: str  # the query text
    answer: str  # its target document


@dataclass(frozen=True)
class SeedErrorItem:
    """One row of a published error-discrimination file."""

    instruction: str  # task instruction of the query
    query: str  # the query text
    candidates: tuple[str, ...]  # candidate0 (correct) .. candidate3


def _read_rows(path: Path) -> list[dict]:
    """Rows of a ``.csv``/``.parquet``/``.jsonl`` file as dicts; missing values become ""."""
    import pandas as pd

    if path.suffix == ".parquet":
        frame = pd.read_parquet(path)
    elif path.suffix == ".csv":
        frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    else:
        frame = pd.read_json(path, lines=True, dtype=False)
    return frame.fillna("").astype(str).to_dict("records")


def load_seed_bench(path: str | Path) -> list[SeedRetrievalItem] | list[SeedErrorItem]:
    """Read a published evaluation file (retrieval or error discrimination, by its columns).

    Raises:
        BenchFormatError: the file cannot be parsed, or has neither set of columns (the message lists them).
    """
    path = Path(path)
    try:
        rows = _read_rows(path)
    except ValueError as exc:  # pandas' parser errors and UnicodeDecodeError are ValueErrors
        raise BenchFormatError(f"{path} is not a readable {path.suffix} evaluation file: {exc}") from exc
    columns = set(rows[0]) if rows else set()
    cand = [f"candidate{i}" for i in range(ERROR_CANDIDATES)]
    if {"instruction", "query", *cand} <= columns:
        return [SeedErrorItem(r["instruction"], r["query"], tuple(r[c] for c in cand)) for r in rows]
    if {"instruction", "query", "answer"} <= columns:
        return [SeedRetrievalItem(r["instruction"], r["query"], r["answer"]) for r in rows]
    raise BenchFormatError(
        f"{path}: columns {sorted(columns)} are neither instruction/query/answer (retrieval) nor "
        f"instruction/query/{'/'.join(cand)} (error discrimination)"
    )


def _json_objects(path: Path) -> list[tuple[int, dict]]:
    """(line number, object) of each non-blank line of a JSON-lines file.

    Raises:
        BenchFormatError: the file is missing, not UTF-8, or a line is not one JSON object.
    """
    try:
        text = path.read_bytes().decode("utf-8")
    except OSError as exc:
        raise BenchFormatError(f"{path}: cannot read the bench ({exc.strerror}); check the path") from exc
    except UnicodeDecodeError as exc:
        line = exc.object.count(b"\n", 0, exc.start) + 1
        raise BenchFormatError(f"{path} is not UTF-8 JSON lines (line {line}); save it as UTF-8") from exc
    not_bench = f"{path} is not a text bench (one JSON object per line): line"
    lines = enumerate(text.split("\n"), 1)  # not splitlines: JSON strings may hold U+2028
    return [(lineno, _json_object(line, f"{not_bench} {lineno}")) for lineno, line in lines if line.strip()]


def _json_object(line: str, where: str) -> dict:
    """The JSON object on ``line``; ``where`` starts the message when it is not one."""
    try:
        rec = json.loads(line)
    except json.JSONDecodeError as exc:
        raise BenchFormatError(f"{where}: {exc.msg}") from exc
    if isinstance(rec, dict):
        return rec
    raise BenchFormatError(f"{where} is a JSON {type(rec).__name__}")


def load_bench(path: str | Path) -> list[BenchItem] | list[SeedRetrievalItem] | list[SeedErrorItem]:
    """Read a ``textbench-*.jsonl`` file, or a published evaluation file (see :func:`load_seed_bench`).

    Raises:
        BenchFormatError: the file is missing, not UTF-8, not one JSON object per line, or a line lacks
            a field; the message names the file, the line and the field.
    """
    path = Path(path)
    if path.suffix in (".csv", ".parquet"):
        return load_seed_bench(path)
    records = _json_objects(path)
    if records and "query" in records[0][1]:
        return load_seed_bench(path)
    items = []
    for lineno, rec in records:
        try:
            items.append(
                BenchItem(
                    id=str(rec["id"]),
                    original=rec["findings"] + " " + rec["impression"],
                    shorthand=rec["shorthand"],
                    impression_only=rec["impression_only"],
                    restyled=rec["restyled"],
                    errors=tuple((e["type"], e["text"]) for e in rec["errors"]),
                )
            )
        except KeyError as exc:
            raise BenchFormatError(
                f"{path}:{lineno}: missing field {exc} (see the bench README for the format)"
            ) from exc
        except TypeError as exc:  # a field of the wrong kind (a number for a text, a list of texts)
            raise BenchFormatError(
                f"{path}:{lineno}: a field has the wrong type ({exc}); see the bench README for the format"
            ) from exc
    return items


def _unit(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    return x / np.clip(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12, None)


def retrieval_hits(queries: np.ndarray, pool: np.ndarray, ks: Sequence[int] = KS) -> dict[int, float]:
    """Hit rate at k: query i is a hit when pool item i ranks within the top k by cosine.

    Ties count against the query (rank = number of pool items scoring at least as high, minus itself).
    """
    sims = _unit(queries) @ _unit(pool).T  # (N, N)
    own = np.diag(sims)[:, None]  # (N, 1)
    rank = (sims > own).sum(axis=1) + ((sims == own).sum(axis=1) - 1)  # (N,) items ahead of the source
    return {k: float((rank < k).mean()) for k in ks}


def error_discrimination(anchors: np.ndarray, correct: np.ndarray, errors: np.ndarray) -> float:
    """Accuracy of picking ``correct`` (N, D) over every error (N, E, D) by cosine to ``anchors`` (N, D).

    Correct only when the correct candidate scores strictly higher than all error texts.
    """
    a = _unit(anchors)
    good = (a * _unit(correct)).sum(-1)  # (N,)
    bad = np.einsum("nd,ned->ne", a, _unit(errors))  # (N, E)
    return float((good > bad.max(axis=1)).mean())


def error_pairs_by_type(
    anchors: np.ndarray, correct: np.ndarray, errors: np.ndarray, types: Sequence[Sequence[str]]
) -> dict[str, tuple[float, int]]:
    """Per error type: how often ``correct`` scores strictly above one single-error text of that type.

    Args:
        anchors: (N, D) anchor embeddings; correct: (N, D); errors: (N, E, D).
        types: (N, E) error type of each error text.

    Returns:
        error type -> (share of (item, error) pairs where the correct text wins, number of pairs).
    """
    a = _unit(anchors)
    good = (a * _unit(correct)).sum(-1)  # (N,)
    bad = np.einsum("nd,ned->ne", a, _unit(errors))  # (N, E)
    wins = good[:, None] > bad  # (N, E)
    flat_types = np.asarray([t for row in types for t in row], dtype=object)
    flat_wins = wins.reshape(-1)
    return {
        t: (float(flat_wins[flat_types == t].mean()), int((flat_types == t).sum()))
        for t in sorted(set(flat_types.tolist()))
    }


def canonical_text(text: str) -> str:
    """Whitespace collapsed and stripped: the form under which two answers are the same document."""
    return " ".join(str(text).split())


def text_id(text: str) -> int:
    """The published scripts' document id: blake2b (8 bytes) of the canonical text, signed little-endian."""
    digest = hashlib.blake2b(canonical_text(text).encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "little", signed=True)


def _queries(items: Sequence[SeedRetrievalItem | SeedErrorItem], query_format: str) -> list[str]:
    return [query_format.format(instruction=it.instruction.strip(), query=it.query.strip()) for it in items]


def seed_retrieval_metrics(
    embed: Callable[[list[str]], np.ndarray],
    items: Sequence[SeedRetrievalItem],
    query_format: str = DEFAULT_QUERY_FORMAT,
    ks: Sequence[int] = KS,
    dedup_answers: bool = True,
) -> dict[str, float]:
    """Duplicate-aware text retrieval as the published script scores it (cosine, hit by canonical text)."""
    answers = [it.answer for it in items]
    if dedup_answers:  # one document per canonical answer, first occurrence kept
        first = {}
        for a in answers:
            first.setdefault(text_id(a), canonical_text(a))
        doc_ids, docs = list(first), list(first.values())
    else:
        doc_ids, docs = [text_id(a) for a in answers], answers
    q = _unit(embed(_queries(items, query_format)))
    d = _unit(embed(docs))
    order = np.argsort(-(q @ d.T), axis=1, kind="stable")  # (N, M) best documents first
    ranked_ids = np.asarray(doc_ids, dtype=np.int64)[order]
    target = np.array([text_id(a) for a in answers], dtype=np.int64)[:, None]
    out: dict[str, float] = {"n_queries": float(len(items)), "n_docs": float(len(docs))}
    for k in ks:
        k_eff = min(k, len(docs))
        out[f"recall@{k_eff}"] = float((ranked_ids[:, :k_eff] == target).any(axis=1).mean())
    return out


def seed_error_metrics(
    embed: Callable[[list[str]], np.ndarray],
    items: Sequence[SeedErrorItem],
    query_format: str = DEFAULT_QUERY_FORMAT,
    tol: float = 1e-6,
) -> dict[str, float]:
    """Report-error discrimination as the published script scores it (candidate0 is correct)."""
    n_cand = {len(it.candidates) for it in items}
    if n_cand != {ERROR_CANDIDATES}:
        raise ValueError(f"every row needs {ERROR_CANDIDATES} candidates, got {sorted(n_cand)}")
    q = _unit(embed(_queries(items, query_format)))  # (N, D)
    c = _unit(embed([t for it in items for t in it.candidates])).reshape(len(items), ERROR_CANDIDATES, -1)
    sims = np.einsum("nd,ncd->nc", q, c)  # (N, 4)
    best_other = sims[:, 1:].max(axis=1)
    rank = 1 + (sims[:, 1:] > sims[:, :1]).sum(axis=1)  # candidate0's rank, ties in its favour
    out = {
        "accuracy_top1_strict": float((sims.argmax(axis=1) == 0).mean()),
        "accuracy_top1_tie_aware": float((sims[:, 0] >= sims.max(axis=1) - tol).mean()),
        "mean_margin": float((sims[:, 0] - best_other).mean()),
        "mean_rank_candidate0": float(rank.mean()),
    }
    out.update({f"recall@{k}_within4": float((rank <= k).mean()) for k in range(1, ERROR_CANDIDATES + 1)})
    out["chance_level"] = 1.0 / ERROR_CANDIDATES
    out["n_total"] = float(len(items))
    return out


def evaluate_bench(
    embed: Callable[[list[str]], np.ndarray],
    items: Sequence[BenchItem] | Sequence[SeedRetrievalItem] | Sequence[SeedErrorItem],
    ks: Sequence[int] = KS,
    query_format: str = DEFAULT_QUERY_FORMAT,
) -> dict[str, float]:
    """All benchmark metrics for an embedding function (texts -> (n, D) array).

    Every distinct text is embedded once. Items from a published evaluation file get that file's
    metrics (:func:`seed_retrieval_metrics`, :func:`seed_error_metrics`), with queries in ``query_format``.
    """
    if items and isinstance(items[0], SeedRetrievalItem):
        return seed_retrieval_metrics(embed, items, query_format, ks)
    if items and isinstance(items[0], SeedErrorItem):
        return seed_error_metrics(embed, items, query_format)
    n_err = {len(it.errors) for it in items}
    if len(n_err) != 1:
        raise ValueError(f"every bench item needs the same number of error texts, got {sorted(n_err)}")
    texts: list[str] = []
    for it in items:
        texts += [it.original, it.shorthand, it.impression_only, it.restyled, *(t for _, t in it.errors)]
    unique = sorted(set(texts))
    emb = np.asarray(embed(unique), dtype=np.float32)
    row = {t: i for i, t in enumerate(unique)}

    def get(ts: list[str]) -> np.ndarray:
        return emb[[row[t] for t in ts]]

    originals = get([it.original for it in items])
    metrics: dict[str, float] = {}
    for style in STYLES:
        hits = retrieval_hits(get([getattr(it, style) for it in items]), originals, ks)
        metrics.update({f"{style}_R@{k}": v for k, v in hits.items()})
    errors = np.stack([get([t for _, t in it.errors]) for it in items])  # (N, E, D)
    restyled = get([it.restyled for it in items])
    metrics["errdisc_orig_acc"] = error_discrimination(originals, restyled, errors)
    metrics["errdisc_shorthand_acc"] = error_discrimination(
        get([it.shorthand for it in items]), restyled, errors
    )
    # Per error type: the correct rewrite against each single-error rewrite of that type, pair by pair.
    types = [[t for t, _ in it.errors] for it in items]
    for anchor_name, anchors in (("orig", originals), ("shorthand", get([it.shorthand for it in items]))):
        for error_type, (share, n) in error_pairs_by_type(anchors, restyled, errors, types).items():
            metrics[f"errpair_{anchor_name}/{error_type}"] = share
            metrics[f"errpair_n/{error_type}"] = float(n)
    return metrics


def _is_normal(study: Study) -> bool:
    """Open-i codes a normal study with the single MeSH major term "normal"."""
    major = [t.strip().lower() for t in str(study.extra.get("mesh_major", "")).split(";") if t.strip()]
    return major == ["normal"]


def select_bench_studies(studies: Sequence[Study], n: int = 100, seed: int = 0) -> list[Study]:
    """Pick the source reports of a new bench the way the dev set was built.

    Abnormal studies (Open-i MeSH other than "normal"; studies without MeSH count as abnormal) with both
    findings and impression, de-duplicated on normalised report text, then ``n`` drawn with ``seed``.

    Raises:
        ValueError: fewer than ``n`` eligible studies.
    """
    from lexray.data.study import normalize_report

    seen: set[str] = set()
    eligible = []
    for s in sorted(studies, key=lambda s: s.study_id):
        if not (s.findings.strip() and s.impression.strip()) or _is_normal(s):
            continue
        key = normalize_report(s.findings + " " + s.impression)
        if key not in seen:
            seen.add(key)
            eligible.append(s)
    if len(eligible) < n:
        raise ValueError(f"only {len(eligible)} eligible abnormal, de-duplicated studies; asked for {n}")
    return random.Random(seed).sample(eligible, n)


def write_bench_skeleton(studies: Sequence[Study], path: str | Path) -> Path:
    """Write ``{"id", "findings", "impression"}`` lines; the variants are then written by hand."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        for s in studies:
            f.write(json.dumps({"id": s.study_id, "findings": s.findings, "impression": s.impression}) + "\n")
    return path
