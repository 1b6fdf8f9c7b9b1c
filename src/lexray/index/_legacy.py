"""Reading format-1 indexes: their flat studies table and their own reject records.

Format 1 wrote ``studies.parquet`` as string columns (``extra`` as a JSON object) and each line of
``rejects.jsonl`` as ``{study_id, modality, item, reason}`` with a free-text reason. Both are turned into
today's records on read, so an index built before format 2 opens and searches as it did.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pyarrow as pa

from lexray.data.manifest import studies_to_table
from lexray.data.study import Reject, Study
from lexray.index._layout import (
    ALREADY_INDEXED,
    DUPLICATE_STUDY,
    EMPTY_REPORT,
    EMPTY_STUDY_ID,
    MISSING_IMAGE,
    UNEMBEDDABLE,
)

STUDY_COLUMNS_V1 = [
    "study_id", "patient_id", "source", "split", "findings", "impression",
    "indication", "comparison", "report", "extra",
]  # fmt: skip


def studies_table_v1(frame: pd.DataFrame) -> pa.Table:
    """The manifest-schema table of a format-1 studies frame (which has every column of STUDY_COLUMNS_V1)."""
    cols = {c: frame[c].tolist() for c in STUDY_COLUMNS_V1}
    return studies_to_table(
        Study(
            **{c: cols[c][i] for c in STUDY_COLUMNS_V1 if c != "extra"},
            extra=json.loads(cols["extra"][i]),
        )
        for i in range(len(frame))
    )


def _reason_code(modality: str, reason: str) -> str:
    # Format 1 kept only the message; these are the messages it wrote, by side.
    if modality == "study":
        if reason.startswith("already"):
            return ALREADY_INDEXED
        return DUPLICATE_STUDY if reason.startswith("duplicate") else EMPTY_STUDY_ID
    if modality == "image":
        return MISSING_IMAGE if reason.startswith("file not found") else UNEMBEDDABLE["image"]
    return EMPTY_REPORT if reason.startswith("empty") else UNEMBEDDABLE["text"]


def read_rejects_v1(path: Path, sources: dict[str, str]) -> list[Reject]:
    """Format-1 reject lines as reject records; ``sources`` maps study ids to their source.

    Raises:
        ValueError: a line is not JSON or lacks a field (the caller names the file).
    """
    out = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        r = json.loads(line)
        try:
            sid, modality, item, reason = (str(r[k]) for k in ("study_id", "modality", "item", "reason"))
        except (KeyError, TypeError) as exc:
            raise ValueError(f"line {number} is not a format-1 reject record") from exc
        detail = f"{item}: {reason}" if modality == "image" else reason
        out.append(Reject(sources.get(sid, ""), sid, _reason_code(modality, reason), detail))
    return out
