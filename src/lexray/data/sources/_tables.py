"""Tabular exports (CSV / TSV / JSONL / Parquet, optionally gzipped) read record by record, losing none.

Every data record of a file ends up either as a row of :attr:`Table.frame` or as a :class:`Reject`
that names its place (``export.csv:line 7``, the line where the record starts; ``export.parquet:row
7``) and why it could not be read:

=================  ==================================================================================
reason             record
=================  ==================================================================================
``bad_row``        a CSV record with more or fewer fields than the header, or broken quoting (a quote
                   that never closes, a character after a closing quote); parsing resumes on the next
                   line
``bad_json``       a JSONL line that is not JSON, or not one JSON object
``wrong_type``     a JSONL value that is a list or an object where a column's text is expected
``non_utf8``       a record whose bytes are not UTF-8 (or a JSON string with an unpaired surrogate)
=================  ==================================================================================

CSV fields have no size limit (the standard library's default of 131,072 characters would drop a long
report). Blank lines are not records. A file that cannot be read at all (absent, a folder, truncated gzip, not Parquet, an
unreadable header) raises :class:`~lexray.data.sources.SourceError`.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import math
import re
import sys
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from lexray.data.sources import SourceError, SourceNotFoundError
from lexray.data.study import Reject

_SURROGATE = re.compile("[\ud800-\udfff]")  # undecodable bytes (surrogateescape) or unpaired JSON escapes
_FORMATS = "use .csv, .tsv, .jsonl (each optionally .gz) or .parquet"


@dataclass
class Table:
    """The readable records of a tabular file and a reject for each unreadable one."""

    frame: pd.DataFrame  # readable records: the requested columns the file has, string cells ("" = empty)
    records: pd.Series  # "file:line N" (or "file:row N") of each frame row, same index
    columns: list[str]  # every column the file has, in file order (for error messages)
    rejects: list[Reject] = field(default_factory=list)  # records that could not be read
    rows_read: int = 0  # data records seen: len(frame) + len(rejects)


def read_table_file(path: str | Path, source: str, columns: Iterable[str] | None = None) -> Table:
    """Read a CSV / TSV / JSONL / Parquet export (see the module docstring for what is rejected).

    Args:
        path: the file; the format follows its name (``.csv``, ``.tsv``, ``.jsonl``/``.ndjson``, each
            optionally ``.gz``; ``.parquet``/``.pq``).
        source: source name written into the rejects.
        columns: the columns to keep (None = all); absent ones are simply not in the frame.

    Raises:
        SourceNotFoundError: the file is absent or a folder.
        SourceError: the format is unknown or the file cannot be read at all.
    """
    path = Path(path)
    if path.is_dir():
        raise SourceNotFoundError(f"{path} is a folder: give the export file itself ({_FORMATS})")
    if not path.is_file():
        raise SourceNotFoundError(f"{path} does not exist")
    name = path.name.lower()
    wanted = list(dict.fromkeys(columns)) if columns is not None else None
    if name.endswith((".parquet", ".pq")):
        return _read_parquet(path, source, wanted)
    stem = name[:-3] if name.endswith(".gz") else name
    if not stem.endswith((".csv", ".tsv", ".jsonl", ".ndjson")):
        raise SourceError(f"{path}: unknown table format ({_FORMATS})")
    try:
        data = path.read_bytes()
        if name.endswith(".gz"):
            data = gzip.decompress(data)
    except (OSError, EOFError, zlib.error) as exc:
        raise SourceError(f"{path}: cannot read the file ({exc}); is the download or copy complete?") from exc
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):  # "Unicode text" from spreadsheets
        raise SourceError(f'{path} is UTF-16 text; export it again as UTF-8 ("CSV UTF-8")')
    if stem.endswith((".jsonl", ".ndjson")):
        return _read_jsonl(path, data, source, wanted)
    return _read_delimited(path, data, "\t" if stem.endswith(".tsv") else ",", source, wanted)


def _csv_records(lines: list[str], sep: str) -> Iterator[tuple[int, list[str] | None, str]]:
    """(first line number, fields or None, error) of every record; a broken record costs one line."""
    start = 0

    def feed(first: int) -> Iterator[str]:  # the lines from ``first`` on, without copying the list
        for i in range(first, len(lines)):
            yield lines[i]

    while start < len(lines):
        reader = csv.reader(feed(start), delimiter=sep, strict=True)
        done = 0  # lines from ``start`` consumed by complete records
        try:
            for fields in reader:
                yield start + done + 1, fields, ""
                done = reader.line_num
            return
        except csv.Error as exc:
            first = start + done + 1
            why = "a quoted field never closes" if "end of data" in str(exc) else f"broken quoting ({exc})"
            yield first, None, why
            start = first  # resume on the line after the one where the broken record starts


def _read_delimited(path: Path, data: bytes, sep: str, source: str, wanted: list[str] | None) -> Table:
    # surrogateescape keeps undecodable bytes visible, so the record holding them is rejected, not mangled.
    text = data.decode("utf-8-sig", errors="surrogateescape")
    lines = io.StringIO(text, newline="").readlines()
    limit = csv.field_size_limit()
    csv.field_size_limit(sys.maxsize)  # a report may be megabytes long
    try:
        records = _csv_records(lines, sep)
        header: list[str] | None = None
        for line, fields, error in records:
            if error:
                raise SourceError(f"{path}: the header (line {line}) cannot be parsed: {error}")
            if fields:
                header = [_SURROGATE.sub("\ufffd", c) for c in fields]
                break
        if header is None:
            raise SourceError(f"{path} has no header line: an export starts with its column names")
        keep = _pick(path, header, wanted)
        targets = [(i, []) for i in keep.values()]  # (field position, cells) per kept column
        width = len(header)
        name = path.name
        check = _SURROGATE.search(text) is not None  # most files are clean UTF-8: no per-cell search
        places: list[str] = []
        rejects: list[Reject] = []
        for line, fields, error in records:
            if error:
                place = f"{name}:line {line}"
                rejects.append(Reject(source, place, "bad_row", f"{error}; fix the quotes on this line"))
                continue
            if not fields:  # a blank line
                continue
            if len(fields) != width:
                # A short record is as suspect as a long one: after broken quoting it is often the tail
                # of a multi-line report, which padding would turn into a study of its own.
                place = f"{name}:line {line}"
                detail = f"{len(fields)} fields where the header has {width}"
                rejects.append(Reject(source, place, "bad_row", detail))
                continue
            if check:
                bad = [c for c, i in keep.items() if _SURROGATE.search(fields[i])]
                if bad:
                    rejects.append(_non_utf8(source, f"{name}:line {line}", bad))
                    continue
            for i, cells in targets:
                cells.append(fields[i])
            places.append(f"{name}:line {line}")
        rows = {c: cells for c, (_, cells) in zip(keep, targets, strict=True)}
    finally:
        csv.field_size_limit(limit)
    return _table(rows, places, header, rejects)


def _read_jsonl(path: Path, data: bytes, source: str, wanted: list[str] | None) -> Table:
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    objects: list[dict] = []
    places: list[str] = []
    rejects: list[Reject] = []
    columns: dict[str, None] = {}
    for number, raw in enumerate(data.split(b"\n"), start=1):
        if not raw.strip():
            continue
        place = f"{path.name}:line {number}"
        try:
            obj = json.loads(raw.decode("utf-8"))
        except UnicodeDecodeError as exc:
            rejects.append(
                Reject(
                    source,
                    place,
                    "non_utf8",
                    f"byte {exc.start} is not UTF-8 ({exc.reason}); re-export as UTF-8",
                )
            )
            continue
        except (ValueError, RecursionError) as exc:  # JSONDecodeError is a ValueError; deep nesting recurses
            rejects.append(Reject(source, place, "bad_json", f"not JSON ({_short(exc)})"))
            continue
        if not isinstance(obj, dict):
            rejects.append(
                Reject(
                    source, place, "bad_json", f"a JSON object per line expected, got {type(obj).__name__}"
                )
            )
            continue
        for k in obj:
            columns.setdefault(str(k), None)
        objects.append(obj)
        places.append(place)
    header = list(columns)
    keep = _pick(path, header, wanted)
    rows: dict[str, list[str]] = {c: [] for c in keep}
    kept_places = []
    for obj, place in zip(objects, places, strict=True):
        cells, problem = {}, None
        for c in keep:
            value = obj.get(c)
            if isinstance(value, (list, dict)):
                problem = Reject(
                    source,
                    place,
                    "wrong_type",
                    f"{c!r} holds a JSON {'list' if isinstance(value, list) else 'object'} where text is expected",
                )
                break
            cells[c] = _json_text(value)
        bad = [c for c, v in cells.items() if _SURROGATE.search(v)]
        if problem is None and bad:
            problem = _non_utf8(source, place, bad)
        if problem is not None:
            rejects.append(problem)
            continue
        for c, v in cells.items():
            rows[c].append(v)
        kept_places.append(place)
    # Rejects in file order: JSON errors were found in the first pass, type errors in the second.
    rejects.sort(key=lambda r: int(r.record.rsplit(" ", 1)[1]))
    return _table(rows, kept_places, header, rejects)


def _read_parquet(path: Path, source: str, wanted: list[str] | None) -> Table:
    try:
        header = pq.read_schema(path).names
        keep = _pick(path, header, wanted)
        table = pq.read_table(path, columns=list(keep))
    except (pa.ArrowException, OSError) as exc:
        raise SourceError(
            f"{path}: not a readable Parquet file ({_short(exc)}); export it again or use CSV"
        ) from exc
    rows: dict[str, list[str]] = {}
    bad_rows: dict[int, list[str]] = {}
    for c in keep:
        column = table.column(c)
        kind = column.type
        if pa.types.is_nested(kind):
            raise SourceError(f"{path}: column {c!r} holds {kind} values; map a column of text")
        if pa.types.is_binary(kind) or pa.types.is_large_binary(kind):
            values = []
            for i, v in enumerate(column.to_pylist()):
                try:
                    values.append(v.decode("utf-8") if v is not None else "")
                except UnicodeDecodeError:
                    bad_rows.setdefault(i, []).append(c)
                    values.append("")
        else:
            try:
                text = pc.cast(column, pa.string())
            except pa.ArrowException as exc:
                raise SourceError(f"{path}: column {c!r} of type {kind} cannot be read as text") from exc
            values = [v if v is not None else "" for v in text.to_pylist()]
        rows[c] = values
    places, rejects = [], []
    out: dict[str, list[str]] = {c: [] for c in keep}
    for i in range(table.num_rows):
        place = f"{path.name}:row {i + 1}"
        if i in bad_rows:
            rejects.append(_non_utf8(source, place, bad_rows[i]))
            continue
        for c in keep:
            out[c].append(rows[c][i])
        places.append(place)
    return _table(out, places, header, rejects)


def _pick(path: Path, header: list[str], wanted: list[str] | None) -> dict[str, int]:
    """Requested column -> its position in the header (the first, when a name repeats)."""
    positions: dict[str, int] = {}
    for i, c in enumerate(header):
        if wanted is not None and c not in wanted:
            continue
        if c in positions:
            raise SourceError(f"{path}: column {c!r} appears twice in the header; rename one of them")
        positions[c] = i
    return positions


def _table(rows: dict[str, list[str]], places: list[str], header: list[str], rejects: list[Reject]) -> Table:
    frame = pd.DataFrame({c: pd.Series(v, dtype=object) for c, v in rows.items()}, index=range(len(places)))
    return Table(
        frame=frame.astype(str) if len(frame.columns) else frame,
        records=pd.Series(places, index=frame.index, dtype=object),
        columns=header,
        rejects=rejects,
        rows_read=len(places) + len(rejects),
    )


def _json_text(value: object) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _non_utf8(source: str, place: str, columns: list[str]) -> Reject:
    return Reject(
        source, place, "non_utf8", f"column(s) {columns} hold bytes that are not UTF-8; re-export as UTF-8"
    )


def _short(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return text if len(text) <= 200 else text[:200] + "..."
