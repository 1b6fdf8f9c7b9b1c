"""VariantStore: append-only JSONL, torn-line tolerance, dedupe on read, resumable runs."""

from __future__ import annotations

import json
import multiprocessing as mp
from pathlib import Path

from lexray.variants import VariantRecord, VariantStore


def _rec(
    study: str, style: str = "shorthand", text: str = "t", error_type: str | None = None
) -> VariantRecord:
    return VariantRecord(
        study_id=study,
        style=style,
        kind="error" if error_type else "equivalent",
        error_type=error_type,
        generator="rules",
        prompt_version="",
        text=text,
        accepted=True,
        reject_reason="",
    )


def test_roundtrip_and_keys(tmp_path: Path) -> None:
    store = VariantStore(tmp_path / "run")
    recs = [
        _rec("a"),
        _rec("a", "reordered"),
        _rec("a", "error", error_type="laterality"),
        _rec("a", "error", error_type="negation"),
    ]
    assert store.add(recs) == 4
    assert store.path == tmp_path / "run" / "variants.jsonl"
    assert store.read() == recs
    assert store.done_keys() == {r.key for r in recs}
    # error variants of one study are distinct keys
    assert len({r.key for r in recs}) == 4


def test_jsonl_path_and_unicode(tmp_path: Path) -> None:
    store = VariantStore(tmp_path / "v.jsonl")
    store.add([_rec("a", text="Größe ±2 cm")])
    assert store.path == tmp_path / "v.jsonl"
    assert VariantStore(tmp_path / "v.jsonl").read()[0].text == "Größe ±2 cm"


def test_duplicates_first_wins(tmp_path: Path) -> None:
    store = VariantStore(tmp_path)
    store.add([_rec("a", text="first")])
    store.add([_rec("a", text="second"), _rec("b")])
    got = store.read()
    assert [(r.study_id, r.text) for r in got] == [("a", "first"), ("b", "t")]


def test_torn_last_line_tolerated_and_cut_before_append(tmp_path: Path) -> None:
    store = VariantStore(tmp_path)
    store.add([_rec("a"), _rec("b")])
    full = json.dumps(_rec("c").to_dict())
    with open(store.path, "a", encoding="utf-8") as f:
        f.write(full[: len(full) // 2])  # a crash mid-write
    assert [r.study_id for r in store.read()] == ["a", "b"]
    assert ("c", "shorthand", "rules", "", "") not in store.done_keys()
    # the resumed run re-adds c; the torn half is cut so the file stays valid JSONL
    store.add([_rec("c")])
    lines = store.path.read_text(encoding="utf-8").splitlines()
    assert len(lines) == 3
    assert all(json.loads(line) for line in lines)
    assert [r.study_id for r in store.read()] == ["a", "b", "c"]


def test_empty_and_missing(tmp_path: Path) -> None:
    store = VariantStore(tmp_path / "nothing")
    assert store.read() == []
    assert store.done_keys() == set()
    assert store.add([]) == 0
    assert not store.path.exists()


def test_failures_sidecar(tmp_path: Path) -> None:
    store = VariantStore(tmp_path)
    store.add_failures(
        [{"study_id": "a", "style": "paraphrase", "generator": "openai:x", "reason": "empty reply"}]
    )
    assert store.read_failures()[0]["reason"] == "empty reply"
    assert store.read() == []


def _writer(path: str, worker: int) -> None:
    store = VariantStore(path)
    for k in range(50):
        store.add([_rec(f"w{worker}-{k}", text="x" * 500)])


def test_concurrent_appends_do_not_interleave(tmp_path: Path) -> None:
    ctx = mp.get_context("fork")
    procs = [ctx.Process(target=_writer, args=(str(tmp_path), w)) for w in range(3)]
    for p in procs:
        p.start()
    for p in procs:
        p.join()
    store = VariantStore(tmp_path)
    lines = store.path.read_text(encoding="utf-8").splitlines()
    assert len(lines) == 150
    assert len(store.read()) == 150
