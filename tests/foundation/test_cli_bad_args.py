"""Every command with bad arguments: exit code 2, one `error:` line (or click's usage box), no traceback.

Each row is (argv with placeholders, a phrase the message must hold). The placeholders name files made by
the test: missing paths, folders where files belong, files of the wrong kind, non-UTF-8 text, a damaged
index. A few rows also run the installed ``lexray`` in a real process, as a user would.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from lexray.cli.main import app
from lexray.data.manifest import write_manifest
from lexray.data.study import Study

INDEX_TESTS = Path(__file__).resolve().parents[1] / "index"
LATIN1 = "lungs clear\nmild cardiom\u00e9galy\n".encode("latin-1")
NOT_TEXT = bytes(range(256)) * 8  # neither UTF-8 nor Parquet


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Placeholder -> path of the bad (and a few good) inputs the rows refer to."""
    root = tmp_path_factory.mktemp("bad-args")
    (root / "folder").mkdir()
    (root / "stuff").mkdir()
    (root / "stuff" / "notes.txt").write_text("not an index")
    (root / "latin1.txt").write_bytes(LATIN1)
    (root / "binary.parquet").write_bytes(NOT_TEXT)
    (root / "texts.txt").write_text("lungs clear\nno effusion\n")
    (root / "bad.yaml").write_text("faiss: [unclosed\n")
    good, damaged = _indexes(root)
    study = Study(study_id="s1", patient_id="p1", source="synthetic", split="test", findings="lungs clear.")
    write_manifest([study], root / "manifest.parquet")
    names = {
        "MISSING": root / "missing" / "nothing.txt",
        "FOLDER": root / "folder",
        "STUFF": root / "stuff",
        "LATIN1": root / "latin1.txt",
        "BINARY": root / "binary.parquet",
        "TEXTS": root / "texts.txt",
        "MANIFEST": root / "manifest.parquet",
        "BADYAML": root / "bad.yaml",
        "OUT": root / "out" / "result.npy",
        "GOOD": good,
        "DAMAGED": damaged,
        "FREEPORT": _free_port(),
    }
    return {k: str(v) for k, v in names.items()}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _indexes(root: Path) -> tuple[Path, Path]:
    """A small toy index and a copy whose text.faiss is truncated (as by a full disk or a partial copy)."""
    sys.path.insert(0, str(INDEX_TESTS))
    try:
        from toy_embedder import ToyEmbedder

        from lexray.index import IndexConfig, build_index, make_ref

        run = ToyEmbedder(dim=16).save_pretrained(root / "run")
        cfg = IndexConfig(model_class="toy_embedder:ToyEmbedder", modalities=("text",), chunk_size=4)
        ref = make_ref(run, "toy_embedder:ToyEmbedder")
        studies = [
            Study(study_id=f"s{i}", patient_id=f"p{i}", source="synthetic", split="test", findings=text)
            for i, text in enumerate(["lungs clear.", "mild cardiomegaly.", "small left effusion."])
        ]
        build_index(studies, ToyEmbedder(dim=16), ref, root / "good", cfg, progress=False)
    finally:
        sys.path.remove(str(INDEX_TESTS))
    shutil.copytree(root / "good", root / "damaged")
    faiss_file = root / "damaged" / (root / "damaged" / "CURRENT").read_text().strip() / "text.faiss"
    faiss_file.write_bytes(faiss_file.read_bytes()[:100])
    return root / "good", root / "damaged"


ROWS: list[tuple[str, str]] = [
    # encode
    ("encode -m MISSING -t LATIN1 -o OUT", "line 2 is not UTF-8"),
    ("encode -m MISSING -t BINARY -o OUT", "is not UTF-8"),
    ("encode -m MISSING -t FOLDER -o OUT", "is a folder"),
    ("encode -m MISSING -t TEXTS -o OUT", "is not a directory"),
    ("encode -m TEXTS -t TEXTS -o OUT", "is a file; give the model's directory"),
    ("encode -m owner/not-downloaded -t TEXTS -o OUT", "HF_HUB_OFFLINE is set"),
    ("encode -m MISSING -t TEXTS -o OUT --batch-size 0", "--batch-size"),
    ("encode -m MISSING -t TEXTS -o OUT --batch-size -1", "--batch-size"),
    ("encode -m MISSING -t TEXTS -o FOLDER", "is a folder: give the file to write"),
    ("encode -m MISSING -t TEXTS -o TEXTS/e.npy", "is a file, not a folder"),
    # search
    ("search --index MISSING --text lungs", "not a lexray index"),
    ("search --index TEXTS --text lungs", "not a lexray index"),
    ("search --index DAMAGED --text lungs", "text.faiss is damaged"),
    ("search --index GOOD --text lungs -k 0", "-k"),
    ("search --index GOOD --image LATIN1", "latin1.txt"),
    ("search --index GOOD --image FOLDER", "folder"),
    ("search --index GOOD", "exactly one of --image or --text"),
    # serve
    ("serve --index GOOD --set port=-1", "port must be between 1 and 65535, got -1"),
    ("serve --index GOOD --set port", "must look like key.path=value"),
    ("serve --index GOOD --set max_k=0", "max_k must be at least 1"),
    ("serve --index GOOD --config BADYAML", "not valid YAML"),
    ("serve --index GOOD --config LATIN1", "not UTF-8"),
    ("serve --index DAMAGED --set port=FREEPORT", "text.faiss is damaged"),
    # index
    ("index build --model GOOD --manifest BINARY --out FOLDER/i", "not a Parquet file"),
    ("index build --model GOOD --manifest MISSING --out TEXTS", "is a file: give a folder"),
    ("index build --model GOOD --manifest MISSING --out STUFF", "not a lexray index"),
    ("index build --model GOOD --manifest MISSING --out FOLDER/i --set faiss.kind", "must look like"),
    ("index build --model TEXTS --manifest MANIFEST --out FOLDER/i", "is a file; give a model run directory"),
    ("index build --model FOLDER --manifest MANIFEST --out FOLDER/i", "holds no saved dual encoder"),
    ("index add --index DAMAGED --manifest BINARY", "text.faiss is damaged"),
    ("index info --index LATIN1", "not a lexray index"),
    # embed
    ("embed texts --model MISSING --manifest MISSING --out FOLDER", "is a folder: give the file to write"),
    ("embed images --model MISSING --manifest MISSING --out OUT --batch-size 0", "--batch-size"),
    ("embed images --model MISSING --manifest BINARY --out OUT", "not a Parquet file"),
    # evaluate
    ("evaluate --model MISSING --manifest MISSING --out TEXTS", "is a file: give a folder"),
    ("evaluate run --model MISSING --manifest BINARY --out FOLDER/e", "not a Parquet file"),
    ("evaluate build-5x200 --labels LATIN1 --out FOLDER/x.csv", "is not UTF-8 CSV (line 2"),
    ("evaluate build-5x200 --labels MISSING --out FOLDER/x.csv", "does not exist"),
    ("evaluate build-5x200 --labels TEXTS --out FOLDER", "is a folder"),
    ("evaluate build-5x200 --labels TEXTS --out FOLDER/x.csv --n-per-class -1", "--n-per-class"),
    ("evaluate text --model MISSING --bench LATIN1", "is not UTF-8 JSON lines"),
    ("evaluate compare FOLDER", "metrics.json not found"),
    # text
    ("text evaluate --model MISSING --bench LATIN1", "is not UTF-8 JSON lines"),
    ("text evaluate --model MISSING --bench LATIN1 --batch-size 0", "--batch-size"),
    ("text evaluate --model MISSING --bench TEXTS --out FOLDER", "is a folder"),
    ("text evaluate --model MISSING --bench TEXTS", "is not a text bench (one JSON object per line)"),
    ("evaluate text --model MISSING --bench TEXTS", "is not a text bench (one JSON object per line)"),
    ("text train --config BADYAML", "not valid YAML"),
    ("text train --set nokey", "must look like key.path=value"),
    ("text export-st MISSING TEXTS", "is a file: give a folder"),
    ("text bench-skeleton --out FOLDER --manifest BINARY", "is a folder"),
    ("text bench-skeleton --out FOLDER/b.jsonl --manifest BINARY --n 0", "--n"),
    # clip
    ("clip train --config BADYAML", "not valid YAML"),
    ("clip train --set a.b", "must look like key.path=value"),
    ("clip cache-texts --shard 2 --num-shards 2", "must be below --num-shards"),
    ("clip cache-texts --num-shards 0", "--num-shards"),
    # variants
    ("variants make --manifest BINARY --out FOLDER/v", "not a Parquet file"),
    ("variants make --manifest MISSING --out TEXTS", "is a file: give a folder"),
    ("variants stats LATIN1", "no variant store"),
    # findings
    ("findings label LATIN1 --out FOLDER/l.jsonl", "is not UTF-8 text (line 2"),
    ("findings label TEXTS --out FOLDER", "is a folder"),
    ("findings label MISSING --out FOLDER/l.jsonl", "does not exist"),
    ("findings stats LATIN1", "is not UTF-8 JSON lines"),
    ("findings stats TEXTS", "not a labels file"),
    ("findings stats FOLDER", "does not exist"),
    # doctor
    ("doctor --bogus", "No such option"),
    # demo and experiments
    ("demo --out TEXTS/demo --openi MISSING", "is a file, not a folder"),
    ("experiment style-mix --config BADYAML", "not valid YAML"),
    ("experiment style-mix --config TEXTS", "must be a mapping"),
    # data (helper A's fixes)
    ("data prepare openi=MISSING --out FOLDER", "is a folder"),
    ("data prepare openi=MISSING --out FOLDER/m.parquet --config BADYAML", "not valid YAML"),
    ("data prepare openi=TEXTS --out TEXTS", "would overwrite the input"),
    ("data stats BINARY", "binary.parquet"),
    ("data stats LATIN1", "latin1.txt"),
]


def _argv(row: str, files: dict[str, str]) -> list[str]:
    out = []
    for word in row.split():
        for name in sorted(files, key=len, reverse=True):  # longest first: MISSING before none shorter
            word = word.replace(name, files[name])
        out.append(word)
    return out


@pytest.mark.parametrize(("row", "phrase"), ROWS, ids=[r for r, _ in ROWS])
def test_bad_arguments_exit_2_without_traceback(
    row: str, phrase: str, files: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.syspath_prepend(str(INDEX_TESTS))  # the toy model the GOOD index refers to
    result = CliRunner().invoke(app, _argv(row, files))
    assert isinstance(result.exception, SystemExit), f"{row}: {result.exception!r}\n{result.output}"
    assert result.exit_code == 2, f"{row}:\n{result.output}"
    assert "Traceback" not in result.output, result.output
    assert phrase in result.output, f"{row}: expected {phrase!r} in\n{result.output}"
    errors = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 or "Usage:" in result.output, result.output


def _lexray() -> str:
    exe = Path(sys.executable).parent / "lexray"
    if not exe.is_file():
        pytest.skip(f"{exe} is not installed (pip install -e .)")
    return str(exe)


@pytest.mark.parametrize(
    ("row", "phrase"),
    [
        ("encode -m MISSING -t LATIN1 -o OUT", "line 2 is not UTF-8"),
        ("serve --index GOOD --set port=-1", "port must be between 1 and 65535"),
        ("search --index DAMAGED --text lungs", "text.faiss is damaged"),
    ],
)
def test_real_process_prints_one_line(row: str, phrase: str, files: dict[str, str]) -> None:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(INDEX_TESTS)}
    proc = subprocess.run(
        [_lexray(), *_argv(row, files)], capture_output=True, text=True, timeout=120, env=env
    )
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout
    assert phrase in proc.stderr
    assert [line for line in proc.stderr.splitlines() if line.strip()] == [proc.stderr.strip()]
