"""Text-bench metrics against naive loops, and the README's reference numbers on the real dev set."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest

from lexray.text.bench import (
    error_discrimination,
    error_pairs_by_type,
    evaluate_bench,
    load_bench,
    retrieval_hits,
)


def _naive_hits(q, pool, k):
    hits = 0
    for i in range(len(q)):
        sims = [
            float(q[i] @ pool[j] / (np.linalg.norm(q[i]) * np.linalg.norm(pool[j]))) for j in range(len(pool))
        ]
        ahead = sum(1 for j, s in enumerate(sims) if j != i and s >= sims[i])
        hits += ahead < k
    return hits / len(q)


def test_retrieval_hits_matches_naive():
    rng = np.random.default_rng(0)
    q, pool = rng.normal(size=(30, 8)), rng.normal(size=(30, 8))
    q[:10] = pool[:10] + 0.1 * rng.normal(size=(10, 8))
    got = retrieval_hits(q, pool, (1, 5, 10))
    for k in (1, 5, 10):
        assert got[k] == pytest.approx(_naive_hits(q, pool, k))


def test_ties_count_against_the_query():
    pool = np.array([[1.0, 0.0], [1.0, 0.0]])
    assert retrieval_hits(pool, pool, (1, 2)) == {1: 0.0, 2: 1.0}


def test_error_discrimination_matches_naive():
    rng = np.random.default_rng(1)
    a, c, e = rng.normal(size=(20, 6)), rng.normal(size=(20, 6)), rng.normal(size=(20, 3, 6))

    def cos(x, y):
        return x @ y / (np.linalg.norm(x) * np.linalg.norm(y))

    naive = np.mean([all(cos(a[i], c[i]) > cos(a[i], e[i, j]) for j in range(3)) for i in range(20)])
    assert error_discrimination(a, c, e) == pytest.approx(naive)


def test_error_pairs_by_type_matches_naive():
    rng = np.random.default_rng(2)
    a, c, e = rng.normal(size=(25, 6)), rng.normal(size=(25, 6)), rng.normal(size=(25, 3, 6))
    kinds = ("severity", "negation", "laterality", "omission")
    types = [[kinds[(i + j) % 4] for j in range(3)] for i in range(25)]

    def cos(x, y):
        return x @ y / (np.linalg.norm(x) * np.linalg.norm(y))

    got = error_pairs_by_type(a, c, e, types)
    assert set(got) == set(kinds)
    for kind in kinds:
        pairs = [(i, j) for i in range(25) for j in range(3) if types[i][j] == kind]
        naive = np.mean([cos(a[i], c[i]) > cos(a[i], e[i, j]) for i, j in pairs])
        assert got[kind] == (pytest.approx(naive), len(pairs))


def test_evaluate_bench_perfect_and_word_matching_encoders(tmp_path):
    rows = [
        {
            "id": f"R{i}",
            "findings": f"finding {i}",
            "impression": f"impression {i}",
            "shorthand": f"sh {i}",
            "impression_only": f"io {i}",
            "restyled": f"re {i}",
            "errors": [
                {"type": ("negation", "severity", "omission")[j], "text": f"err{j} {i}"} for j in range(3)
            ],
        }
        for i in range(5)
    ]
    path = tmp_path / "b.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in rows))
    items = load_bench(path)
    assert items[0].original == "finding 0 impression 0"

    def oracle(texts):  # embeds by the report number, errors far away: a perfect encoder
        out = np.zeros((len(texts), 12))
        for r, t in enumerate(texts):
            n = int(t.split()[-1])
            out[r, n] = 1.0
            if t.startswith("err"):
                out[r, 6 + int(t[3])] = 5.0
        return out

    m = evaluate_bench(oracle, items)
    assert m["shorthand_R@1"] == 1.0 and m["restyled_R@5"] == 1.0 and m["errdisc_orig_acc"] == 1.0
    for kind in ("negation", "severity", "omission"):  # every error type is visible on its own
        assert m[f"errpair_orig/{kind}"] == 1.0 and m[f"errpair_shorthand/{kind}"] == 1.0
        assert m[f"errpair_n/{kind}"] == 5.0


def test_load_bench_names_missing_field(tmp_path):
    path = tmp_path / "b.jsonl"
    path.write_text(json.dumps({"id": "x", "findings": "a"}) + "\n")
    with pytest.raises(ValueError, match="b.jsonl:1: missing field"):
        load_bench(path)


@pytest.mark.slow
def test_minilm_reproduces_readme_reference(textbench_dev, minilm_dir):
    from lexray.text import TextEncoder

    enc = TextEncoder.from_pretrained(str(minilm_dir))
    m = evaluate_bench(lambda t: enc.encode(t, batch_size=32), load_bench(textbench_dev))
    got = [
        round(m[k], 2)
        for k in (
            "shorthand_R@1",
            "impression_only_R@1",
            "restyled_R@1",
            "errdisc_orig_acc",
            "errdisc_shorthand_acc",
        )
    ]
    assert got == [0.91, 0.62, 0.85, 0.11, 0.18]


def test_select_bench_studies_abnormal_deduplicated_and_seeded():
    from lexray.data.study import Study
    from lexray.text.bench import select_bench_studies

    def study(i: int, findings: str, impression: str, mesh: str) -> Study:
        return Study(
            study_id=f"s{i}",
            patient_id=f"p{i}",
            source="openi",
            split="test",
            findings=findings,
            impression=impression,
            extra={"mesh_major": mesh},
        )

    studies = [
        study(i, f"Small left effusion {i}.", "Effusion.", "Pleural Effusion/left/small") for i in range(6)
    ]
    studies += [
        study(10, "Lungs are clear.", "Normal chest.", "normal"),  # normal: excluded
        study(11, "Small left effusion 0.", "Effusion.", "Pleural Effusion"),  # duplicate text of s0
        study(12, "", "Cardiomegaly.", "Cardiomegaly"),  # no findings: excluded
    ]
    chosen = select_bench_studies(studies, n=6, seed=0)
    assert sorted(s.study_id for s in chosen) == [f"s{i}" for i in range(6)]
    assert [s.study_id for s in select_bench_studies(studies, 3, seed=1)] == [
        s.study_id for s in select_bench_studies(list(reversed(studies)), 3, seed=1)
    ]
    with pytest.raises(ValueError, match="only 6 eligible"):
        select_bench_studies(studies, n=7)


def test_bench_skeleton_cli(tmp_path):
    from typer.testing import CliRunner

    from lexray.cli.main import app
    from lexray.data.manifest import write_manifest
    from lexray.data.study import Study

    studies = [
        Study(
            study_id=f"s{i}",
            patient_id=f"p{i}",
            source="x",
            split="test" if i < 5 else "train",
            findings=f"Finding {i}.",
            impression="Abnormal.",
        )
        for i in range(8)
    ]
    write_manifest(studies, tmp_path / "m.parquet")
    out = tmp_path / "skel.jsonl"
    res = CliRunner().invoke(
        app,
        ["text", "bench-skeleton", "--manifest", str(tmp_path / "m.parquet"), "--n", "4", "--out", str(out)],
    )
    assert res.exit_code == 0, res.output
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(rows) == 4 and {r["id"] for r in rows} <= {f"s{i}" for i in range(5)}
    assert set(rows[0]) == {"id", "findings", "impression"}


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b'{"id": "x"}\n\xe9t\xe9\n', "b.jsonl is not UTF-8 JSON lines (line 2); save it as UTF-8"),
        (b"plain text\n", "b.jsonl is not a text bench (one JSON object per line): line 1: Expecting value"),
        (b'\n"a string"\n', "b.jsonl is not a text bench (one JSON object per line): line 2 is a JSON str"),
        (b'{"id": "x", "findings": 1, "impression": "b"}\n', "b.jsonl:1: a field has the wrong type"),
    ],
)
def test_load_bench_names_the_file_and_the_fix(tmp_path, content, message):
    from lexray.errors import LexrayError

    path = tmp_path / "b.jsonl"
    path.write_bytes(content)
    with pytest.raises(LexrayError, match=re.escape(message)):
        load_bench(path)
    with pytest.raises(LexrayError, match="cannot read the bench .*check the path"):
        load_bench(tmp_path / "missing.jsonl")
