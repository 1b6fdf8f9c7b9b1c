"""Append-only JSONL variant store, resumable after a crash with nothing lost or duplicated.

Each record is one JSON line written with a single ``write`` under an exclusive ``flock`` and
``fsync``'d before :meth:`VariantStore.add` returns, so a record is either fully on disk or (when the
process dies mid-write) a torn last line. Reading tolerates that torn line, and the next append cuts it
off first. Records are keyed by (study_id, style, generator, prompt_version, error_type); on read the
first record of a key wins, so re-adding a key after a crash never duplicates it.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import BinaryIO

from lexray.variants.record import VariantRecord

log = logging.getLogger(__name__)

STORE_FILENAME = "variants.jsonl"
REJECTS_FILENAME = "failures.jsonl"


class VariantStore:
    """A JSONL file of :class:`VariantRecord` s.

    Args:
        path: a directory (the store is ``<dir>/variants.jsonl``, created on first write) or a
            ``.jsonl`` file.
    """

    def __init__(self, path: str | Path) -> None:
        path = Path(path)
        self.path = path if path.suffix == ".jsonl" else path / STORE_FILENAME
        # Generation failures (LLM errors, empty replies): logged beside the store, never stored as variants.
        self.failures_path = self.path.with_name(REJECTS_FILENAME)

    def __repr__(self) -> str:
        return f"VariantStore({str(self.path)!r})"

    def _lines(self) -> Iterator[tuple[int, str]]:
        if not self.path.is_file():
            return
        with open(self.path, encoding="utf-8") as f:
            yield from enumerate(f, 1)

    def iter_records(self) -> Iterator[VariantRecord]:
        """All records in write order, duplicates of a key removed (first wins), torn lines skipped."""
        seen: set[tuple[str, ...]] = set()
        bad = 0
        for lineno, line in self._lines():
            if not line.strip():
                continue
            try:
                record = VariantRecord.from_dict(json.loads(line))
            except (json.JSONDecodeError, TypeError) as exc:
                # A torn last line after a crash is expected; anything else is worth a warning.
                bad += 1
                log.debug("%s line %d unreadable (%s); skipped", self.path, lineno, exc)
                continue
            if record.key in seen:
                continue
            seen.add(record.key)
            yield record
        if bad:
            log.warning("%s: skipped %d unreadable line(s) (torn write after a crash?)", self.path, bad)

    def read(self) -> list[VariantRecord]:
        """All records (deduplicated by key, first wins)."""
        return list(self.iter_records())

    def done_keys(self) -> set[tuple[str, str, str, str, str]]:
        """Keys already in the store: what a resumed run skips."""
        keys = set()
        for _, line in self._lines():
            try:
                d = json.loads(line)
                keys.add(
                    (
                        d["study_id"],
                        d["style"],
                        d["generator"],
                        d["prompt_version"],
                        d.get("error_type") or "",
                    )
                )
            except (json.JSONDecodeError, KeyError, TypeError):
                continue
        return keys

    def add(self, records: Iterable[VariantRecord]) -> int:
        """Append records durably; returns how many were written.

        Keys already present are written again only if the caller passes them; use :meth:`done_keys`
        to skip finished work (duplicates are harmless: reads keep the first).
        """
        payload = "".join(json.dumps(r.to_dict(), ensure_ascii=False) + "\n" for r in records)
        if not payload:
            return 0
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "a+b") as f:
            fcntl.flock(f, fcntl.LOCK_EX)
            try:
                _drop_torn_tail(f)
                f.write(payload.encode("utf-8"))
                f.flush()
                os.fsync(f.fileno())
            finally:
                fcntl.flock(f, fcntl.LOCK_UN)
        return payload.count("\n")

    def add_failures(self, failures: Iterable[dict[str, str]]) -> int:
        """Append generation failures (study_id, style, generator, reason) to ``failures.jsonl``."""
        payload = "".join(json.dumps(d, ensure_ascii=False) + "\n" for d in failures)
        if not payload:
            return 0
        self.failures_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.failures_path, "a", encoding="utf-8") as f:
            fcntl.flock(f, fcntl.LOCK_EX)
            try:
                f.write(payload)
                f.flush()
                os.fsync(f.fileno())
            finally:
                fcntl.flock(f, fcntl.LOCK_UN)
        return payload.count("\n")

    def read_failures(self) -> list[dict[str, str]]:
        """Generation failures logged beside the store (unreadable lines skipped)."""
        if not self.failures_path.is_file():
            return []
        out = []
        for line in self.failures_path.read_text(encoding="utf-8").splitlines():
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError:
                continue
        return out


def _drop_torn_tail(f: BinaryIO) -> None:
    """Cut an unterminated last line (a write torn by a crash) so the next record starts cleanly."""
    f.seek(0, os.SEEK_END)
    size = f.tell()
    if size == 0:
        return
    f.seek(size - 1)
    if f.read(1) == b"\n":
        return
    # Walk back to the previous newline in blocks.
    pos = size
    block = 4096
    cut = 0
    while pos > 0:
        start = max(0, pos - block)
        f.seek(start)
        chunk = f.read(pos - start)
        idx = chunk.rfind(b"\n")
        if idx >= 0:
            cut = start + idx + 1
            break
        pos = start
    log.warning("cutting a torn last line (%d bytes) before appending", size - cut)
    f.truncate(cut)
    f.seek(0, os.SEEK_END)
