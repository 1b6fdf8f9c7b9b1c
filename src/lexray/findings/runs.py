"""Label report files: a manifest (.parquet), JSON lines or plain text in, one JSON line per report out.

Output lines are ``{"id": ..., "observations": {...}, "mentions": [...]}`` (see
:meth:`lexray.findings.ReportLabels.to_dict`). Records without usable text are skipped, counted and
written with a reason to ``<out stem>.rejects.jsonl``; a long run never stops on one.
"""

from __future__ import annotations

import collections
import json
import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from tqdm import tqdm

from lexray.data.study import TEXT_FIELDS, rejects_path
from lexray.findings.labeler import Labeler, LabelerConfig
from lexray.findings.labels import CHEXPERT_OBSERVATIONS, STATUSES

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class LabelRunConfig:
    """A labelling run over a file of reports."""

    labeler: LabelerConfig = field(default_factory=LabelerConfig)  # the labeler's settings
    text: str = "report"  # field holding the report: a Study attribute for manifests, a key for JSON lines
    id_key: str = "study_id"  # JSON-lines key holding the record id (the line number when absent)


@dataclass(frozen=True)
class LabelRunStats:
    """What a labelling run did."""

    labelled: int  # reports written
    rejected: int  # records skipped (see the rejects file)
    seconds: float  # wall time of the labelling
    out: Path  # the labels file
    rejects: Path | None  # the rejects file, None when nothing was rejected


def iter_records(
    path: str | Path, text: str = "report", id_key: str = "study_id"
) -> Iterator[tuple[str, object]]:
    """(id, text) pairs from a manifest, JSON lines or a text file; text is whatever the record holds.

    Args:
        path: ``.parquet`` (a lexray manifest), ``.jsonl``/``.json`` (one object per line) or any other
            suffix (one report per line).
        text: the field to label.
        id_key: the JSON-lines key of the record id.

    Raises:
        ValueError: an unknown manifest field.
        FileNotFoundError: the input does not exist.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist")
    if path.suffix == ".parquet":
        if text not in TEXT_FIELDS:
            raise ValueError(f"manifest field {text!r} is not one of {', '.join(TEXT_FIELDS)}")
        from lexray.data.manifest import read_manifest

        for study in read_manifest(path):
            yield study.study_id, study.text(text)
        return
    with path.open(encoding="utf-8") as fh:
        for n, line in enumerate(fh, start=1):
            if path.suffix in (".jsonl", ".json"):
                if not line.strip():
                    continue
                try:
                    record = json.loads(line)
                except json.JSONDecodeError as exc:
                    yield f"line {n}", ValueError(f"not JSON: {exc.msg}")
                    continue
                if not isinstance(record, dict):
                    yield f"line {n}", ValueError("not a JSON object")
                    continue
                yield str(record.get(id_key, f"line {n}")), record.get(text)
            else:
                yield str(n), line.rstrip("\n")


def label_file(
    in_path: str | Path, out_path: str | Path, config: LabelRunConfig | None = None
) -> LabelRunStats:
    """Label every report of ``in_path`` into ``out_path`` (JSON lines, written atomically).

    Args:
        in_path: the reports (see :func:`iter_records`).
        out_path: the labels file to write.
        config: run settings; defaults when None.

    Returns:
        Counts, time and the paths written.
    """
    config = config or LabelRunConfig()
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    labeler = Labeler(config.labeler)
    rejects: list[dict[str, str]] = []
    pending_ids: collections.deque[str] = collections.deque()

    def texts() -> Iterator[str]:
        # Streams the input: the labeler pulls texts lazily and returns labels in input order, so
        # the id of each label is the oldest id not yet written.
        for rid, text in iter_records(in_path, config.text, config.id_key):
            if isinstance(text, Exception):
                rejects.append({"id": rid, "reason": "unreadable", "detail": str(text)})
            elif not isinstance(text, str):
                detail = f"field {config.text!r} is {type(text).__name__}, not text; choose it with --set text=FIELD"
                rejects.append({"id": rid, "reason": "no_text", "detail": detail})
            elif len(text) > labeler.nlp.max_length:
                detail = (
                    f"{len(text)} characters, more than spaCy's limit of {labeler.nlp.max_length}; split it"
                )
                rejects.append({"id": rid, "reason": "too_long", "detail": detail})
            else:
                pending_ids.append(rid)
                yield text

    tmp = out_path.with_name(out_path.name + ".tmp")
    start = time.perf_counter()
    written = 0
    with tmp.open("w", encoding="utf-8") as fh:
        for lab in tqdm(labeler.pipe(texts()), desc="labelling", unit="report"):
            fh.write(json.dumps({"id": pending_ids.popleft(), **lab.to_dict()}) + "\n")
            written += 1
    seconds = time.perf_counter() - start
    tmp.replace(out_path)
    rej_path = None
    if rejects:
        rej_path = rejects_path(out_path)
        rej_path.write_text("".join(json.dumps(r) + "\n" for r in rejects), encoding="utf-8")
        logger.warning("%d records skipped (no usable text): see %s", len(rejects), rej_path)
    return LabelRunStats(written, len(rejects), seconds, out_path, rej_path)


def label_counts(labels_path: str | Path) -> dict[str, collections.Counter[str]]:
    """Per observation, how many reports of a labels file have each status."""
    counts = {name: collections.Counter({s: 0 for s in STATUSES}) for name in CHEXPERT_OBSERVATIONS}
    with Path(labels_path).open(encoding="utf-8") as fh:
        for line in fh:
            if line.strip():
                for name, status in json.loads(line)["observations"].items():
                    counts[name][status] += 1
    return counts
