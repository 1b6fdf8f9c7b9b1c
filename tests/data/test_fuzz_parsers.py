"""Property-based tests of every parser of user files: hostile input raises only lexray's own errors,
and every record of an export is accounted for (kept exactly, or rejected with its line)."""

from __future__ import annotations

import csv
import io
import json
import tarfile

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lexray.config import load_config
from lexray.data.manifest import read_manifest, read_rejects
from lexray.data.prepare import PrepareConfig
from lexray.data.sections import parse_report
from lexray.data.sources._tables import read_table_file
from lexray.data.sources.hospital import HospitalConfig, load_hospital
from lexray.data.sources.openi import _load_split_file, load_openi
from lexray.errors import LexrayError
from lexray.phantoms import PhantomConfig

FAST = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])

# Text as exports hold it: any character a UTF-8 file can carry (no lone surrogates), quotes, separators,
# every newline style, NUL, and long runs.
cell_text = st.text(st.characters(blacklist_categories=("Cs",)), max_size=40) | st.sampled_from(
    ['"', '""', ",", "\t", "\r", "\n", "\r\n", "\x00", "a\u2028b", "x" * 3000]
)
plain_text = st.text(st.characters(whitelist_categories=("L", "N"), whitelist_characters=" .-"), max_size=20)


def _call(fn, *args, **kw):
    """Run ``fn``; a LexrayError is a fine answer to hostile input, anything else fails the test."""
    try:
        return fn(*args, **kw)
    except LexrayError:
        return None


def _write_csv(rows: list[list[str]], sep: str) -> tuple[str, list[int]]:
    """CSV text (header first) and the line on which each data row starts (universal newlines)."""
    buf = io.StringIO()
    writer = csv.writer(buf, delimiter=sep)  # "\r\n" ends rows, so cells with \r or \n are quoted
    starts = []
    writer.writerow(["study_id", "patient_id", "report"])
    for row in rows:
        starts.append(len(io.StringIO(buf.getvalue(), newline="").readlines()) + 1)
        writer.writerow(row)
    return buf.getvalue(), starts


@FAST
@given(reports=st.lists(cell_text, max_size=8), sep=st.sampled_from([",", "\t"]))
def test_valid_csv_round_trips_exactly(tmp_path_factory, reports, sep):
    rows = [[f"S{i}", f"P{i}", r] for i, r in enumerate(reports)]
    text, starts = _write_csv(rows, sep)
    path = tmp_path_factory.mktemp("csv") / ("e.tsv" if sep == "\t" else "e.csv")
    path.write_text(text, encoding="utf-8", newline="")
    table = read_table_file(path, "h")
    assert table.rejects == [] and table.rows_read == len(rows)
    assert table.frame.values.tolist() == rows
    assert table.records.tolist() == [f"{path.name}:line {n}" for n in starts]


@FAST
@given(
    reports=st.lists(plain_text, min_size=1, max_size=8),
    broken=st.data(),
    kind=st.sampled_from(["open_quote", "extra_fields", "stray_after_quote"]),
)
def test_one_broken_record_costs_exactly_that_record(tmp_path_factory, reports, broken, kind):
    rows = [[f"S{i}", f"P{i}", f"IMPRESSION: {r}"] for i, r in enumerate(reports)]
    text, starts = _write_csv(rows, ",")
    k = broken.draw(st.integers(0, len(rows) - 1))
    lines = text.splitlines(keepends=True)
    line = lines[starts[k] - 1].rstrip("\r\n")
    lines[starts[k] - 1] = {
        "open_quote": line.replace("IMPRESSION", '"IMPRESSION', 1),
        "extra_fields": line + ",surplus",
        "stray_after_quote": line.replace("IMPRESSION: ", '"IMPRESSION:" x ', 1),
    }[kind] + "\r\n"
    path = tmp_path_factory.mktemp("csv") / "e.csv"
    path.write_text("".join(lines), encoding="utf-8")
    result = load_hospital(HospitalConfig(path=path, image_path=None))
    assert [r.record for r in result.rejects if r.reason == "bad_row"] == [f"e.csv:line {starts[k]}"]
    kept = {s.study_id for s in result.studies}
    rejected = {r.record for r in result.rejects}
    for i, n in enumerate(starts):
        assert f"hospital-S{i}" in kept or f"e.csv:line {n}" in rejected
    assert result.rows_read == len(rows) == len(result.studies) + len(result.rejects)


@FAST
@given(
    data=st.binary(max_size=600), name=st.sampled_from(["e.csv", "e.tsv", "e.jsonl", "e.csv.gz", "e.parquet"])
)
def test_arbitrary_bytes_in_an_export_raise_only_lexray_errors(tmp_path_factory, data, name):
    path = tmp_path_factory.mktemp("bytes") / name
    path.write_bytes(data)
    table = _call(read_table_file, path, "h")
    if table is not None:
        assert table.rows_read == len(table.frame) + len(table.rejects)
        assert all(r.record.startswith(f"{name}:") for r in table.rejects)
    result = _call(load_hospital, HospitalConfig(path=path, image_path=None, patient_id=None))
    if result is not None:
        # Every record read is a study or a reject (one export row per study here: ids may repeat).
        assert result.rows_read >= len(result.studies)


json_value = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
    max_leaves=8,
)


@FAST
@given(
    lines=st.lists(
        st.one_of(
            st.fixed_dictionaries({"report": st.text(max_size=30)}, optional={"patient_id": json_value}),
            json_value,
            st.binary(max_size=30),
        ),
        max_size=8,
    )
)
def test_jsonl_lines_are_each_kept_or_rejected_by_number(tmp_path_factory, lines):
    raw, expect = [], {}
    for i, item in enumerate(lines, start=1):
        if isinstance(item, bytes):
            raw.append(item.replace(b"\n", b" "))
        else:
            if isinstance(item, dict) and "report" in item:
                item = {"study_id": f"S{i}", **item}
            raw.append(json.dumps(item).encode())
        text = raw[-1].strip()
        if text:
            expect[i] = item
    path = tmp_path_factory.mktemp("jsonl") / "e.jsonl"
    path.write_bytes(b"\n".join(raw))
    table = _call(read_table_file, path, "h", ["study_id", "patient_id", "report"])
    if table is None:
        return
    kept = {int(r.rsplit(" ", 1)[1]) for r in table.records}
    rejected = [int(r.record.rsplit(" ", 1)[1]) for r in table.rejects]
    assert len(rejected) == len(set(rejected)) and not kept & set(rejected)
    assert kept | set(rejected) == set(expect)
    for i in kept:  # a kept line was a JSON object whose mapped values are text, numbers or null
        obj = json.loads(raw[i - 1])
        assert isinstance(obj, dict)
        assert not any(isinstance(obj.get(c), (list, dict)) for c in ("study_id", "patient_id", "report"))


parquet_column = st.sampled_from(["string", "int", "float", "binary", "list", "null", "bool"])


@FAST
@given(kinds=st.lists(parquet_column, min_size=1, max_size=3), n=st.integers(0, 5), data=st.data())
def test_parquet_exports_of_any_column_type(tmp_path_factory, kinds, n, data):
    makers = {
        "string": (pa.string(), st.none() | st.text(max_size=10)),
        "int": (pa.int64(), st.none() | st.integers(-(2**63), 2**63 - 1)),
        "float": (pa.float64(), st.none() | st.floats()),
        "binary": (pa.binary(), st.none() | st.binary(max_size=10)),
        "list": (pa.list_(pa.string()), st.none() | st.lists(st.text(max_size=3), max_size=2)),
        "null": (pa.null(), st.none()),
        "bool": (pa.bool_(), st.none() | st.booleans()),
    }
    names = ["study_id", "report", "patient_id"][: len(kinds)]
    arrays = [pa.array([data.draw(makers[k][1]) for _ in range(n)], makers[k][0]) for k in kinds]
    path = tmp_path_factory.mktemp("pq") / "e.parquet"
    pq.write_table(pa.table(dict(zip(names, arrays, strict=True))), path)
    table = _call(read_table_file, path, "h")
    if table is not None:
        assert table.rows_read == n
    _call(load_hospital, HospitalConfig(path=path, image_path=None, patient_id=None))


@FAST
@given(
    content=json_value | st.dictionaries(st.sampled_from(["train", "val", "test", "oops", " "]), json_value)
)
def test_split_files_of_any_shape_raise_only_lexray_errors(tmp_path_factory, content):
    path = tmp_path_factory.mktemp("split") / "annotation.json"
    path.write_text(json.dumps(content))
    entries = _call(_load_split_file, path)
    if entries is not None:
        assert all(split in ("train", "val", "test") and isinstance(i, str) for split, i, _ in entries)


@FAST
@given(data=st.binary(max_size=300))
def test_split_file_bytes(tmp_path_factory, data):
    path = tmp_path_factory.mktemp("split") / "annotation.json"
    path.write_bytes(data)
    _call(_load_split_file, path)


yaml_leaf = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=15)
recipe_value = st.recursive(
    yaml_leaf,
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.dictionaries(
            st.sampled_from(["path", "name", "seed", "image_path", "check_images", "x"]), inner, max_size=3
        )
    ),
    max_leaves=10,
)
prepare_keys = st.sampled_from(
    ["openi", "mimic_cxr", "chexpert_plus", "hospital", "views", "require_images", "decode_images", "nope"]
)


@FAST
@given(
    recipe=st.dictionaries(prepare_keys, recipe_value, max_size=4) | recipe_value,
    overrides=st.lists(
        st.text(max_size=30) | st.sampled_from(["hospital.0.seed=x", "hospital.name=a", "openi.path=[1"]),
        max_size=3,
    ),
)
def test_recipes_and_overrides_raise_only_config_errors(tmp_path_factory, recipe, overrides):
    path = tmp_path_factory.mktemp("cfg") / "recipe.yaml"
    path.write_text(yaml.safe_dump(recipe), encoding="utf-8")
    for cls in (PrepareConfig, PhantomConfig):
        _call(
            load_config,
            cls,
            path,
            overrides,
            base={"hospital": [{"path": "e.csv"}]} if cls is PrepareConfig else None,
        )


@FAST
@given(text=st.text(max_size=200) | st.binary(max_size=200).map(lambda b: b.decode("latin-1")))
def test_recipe_text_of_any_kind(tmp_path_factory, text):
    path = tmp_path_factory.mktemp("cfg") / "recipe.yaml"
    path.write_text(text, encoding="utf-8", errors="surrogatepass")
    _call(load_config, PrepareConfig, path)


@FAST
@given(data=st.binary(max_size=200))
def test_recipe_bytes(tmp_path_factory, data):
    path = tmp_path_factory.mktemp("cfg") / "recipe.yaml"
    path.write_bytes(data)
    _call(load_config, PrepareConfig, path)


section_words = st.sampled_from(
    [
        "FINDINGS:",
        "Impression:",
        "IMPRESSION",
        "findings",
        "\n",
        "\r\n",
        ":",
        ".",
        " ",
        "History:",
        "XXXX",
        "___",
    ]
)


@settings(max_examples=200, deadline=None)
@given(
    parts=st.lists(section_words | st.text(max_size=12), max_size=12),
    headerless=st.sampled_from(["impression", "findings"]),
)
def test_section_parser_never_raises_and_keeps_text(parts, headerless):
    text = "".join(parts)
    sections = parse_report(text, headerless=headerless)  # type: ignore[arg-type]
    out = " ".join(
        [
            sections.findings,
            sections.impression,
            sections.indication,
            sections.comparison,
            sections.technique,
            sections.other,
        ]
    )
    assert "\n" not in out and "\r" not in out
    assert all(word in text for word in out.split())  # text is moved between sections, never invented


@FAST
@given(data=st.binary(max_size=400), as_manifest=st.booleans())
def test_damaged_manifest_and_rejects_files_raise_only_manifest_errors(tmp_path_factory, data, as_manifest):
    folder = tmp_path_factory.mktemp("m")
    if as_manifest:
        (folder / "m.parquet").write_bytes(data)
        _call(read_manifest, folder / "m.parquet")
    else:
        (folder / "m.rejects.jsonl").write_bytes(data)
        _call(read_rejects, folder / "m.parquet")


@FAST
@given(data=st.binary(max_size=400), xml=st.binary(max_size=200))
def test_openi_archive_bytes_and_xml_bytes(tmp_path_factory, data, xml):
    folder = tmp_path_factory.mktemp("openi")
    archive = folder / "NLMCXR_reports.tgz"
    archive.write_bytes(data)
    _call(load_openi, archive)
    packed = folder / "packed.tgz"
    with tarfile.open(packed, "w:gz") as tar:
        info = tarfile.TarInfo("ecgen-radiology/1.xml")
        info.size = len(xml)
        tar.addfile(info, io.BytesIO(xml))
    result = load_openi(packed)  # one unreadable report is a reject, never an exception
    assert len(result.studies) + len(result.rejects) == 1


def test_fuzz_helpers_fail_on_foreign_errors():
    with pytest.raises(KeyError):
        _call(lambda: {}["x"])
    assert _call(lambda: (_ for _ in ()).throw(LexrayError("x"))) is None


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    reports=st.lists(cell_text, max_size=5),
    garbage=st.binary(max_size=80),
    fmt=st.sampled_from(["csv", "jsonl"]),
)
def test_data_prepare_on_hostile_exports_exits_0_or_2_without_traceback(
    tmp_path_factory, reports, garbage, fmt
):
    from typer.testing import CliRunner

    from lexray.cli.main import app

    folder = tmp_path_factory.mktemp("cli")
    rows = [[f"S{i}", f"P{i}", r] for i, r in enumerate(reports)]
    if fmt == "csv":
        data = _write_csv(rows, ",")[0].encode() + garbage
    else:
        data = (
            b"".join(
                json.dumps(dict(zip(["study_id", "patient_id", "report"], r, strict=True))).encode() + b"\n"
                for r in rows
            )
            + garbage
        )
    export = folder / f"e.{fmt}"
    export.write_bytes(data)
    out = folder / "m.parquet"
    recipe = folder / "recipe.yaml"
    recipe.write_text(yaml.safe_dump({"hospital": [{"path": str(export), "image_path": None}]}))
    result = CliRunner().invoke(app, ["data", "prepare", "--config", str(recipe), "--out", str(out)])
    assert result.exit_code in (0, 2), result.output
    assert "Traceback" not in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    if result.exit_code == 0:
        manifest = {s.study_id for s in read_manifest(out)}
        rejected = {r.record for r in read_rejects(out)}
        for i, n in enumerate(_write_csv(rows, ",")[1] if fmt == "csv" else range(1, len(rows) + 1)):
            # Garbage appended after the records cannot take them: each is kept or rejected by its line.
            assert f"hospital-S{i}" in manifest or f"e.{fmt}:line {n}" in rejected
