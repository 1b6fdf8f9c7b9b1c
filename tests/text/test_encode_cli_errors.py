"""`lexray encode` with bad input: one line naming the problem, exit 2, and nothing loaded or written first."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from lexray.cli.encode import TextFileError, parse_lines
from lexray.cli.main import app

runner = CliRunner()


@pytest.fixture
def texts(tmp_path: Path) -> Path:
    path = tmp_path / "reports.txt"
    path.write_text("lungs are clear .\nmild cardiomegaly\n", encoding="utf-8")
    return path


def _encode(*args: str | Path, env: dict[str, str] | None = None):  # noqa: ANN202 - a click Result
    return runner.invoke(app, ["encode", *map(str, args)], env=env)


def _fails_cleanly(result, *phrases: str) -> None:  # noqa: ANN001
    assert result.exit_code == 2, result.output
    assert isinstance(result.exception, SystemExit), result.exception  # nothing escaped the command
    assert "Traceback" not in result.output
    for phrase in phrases:
        assert phrase in result.output, result.output


def test_non_utf8_file_names_line_and_offset(tiny_llama_dir: Path, tmp_path: Path) -> None:
    src = tmp_path / "latin1.txt"
    src.write_bytes("lungs clear\nno effusion\nmild cardiom\u00e9galy\n".encode("latin-1"))
    result = _encode("-m", tiny_llama_dir, "-t", src, "-o", tmp_path / "e.npy")
    _fails_cleanly(result, str(src), "line 3 is not UTF-8", "byte 0xe9 at byte offset 36")
    assert not (tmp_path / "e.npy").exists()


def test_binary_file_is_refused(tiny_llama_dir: Path, tmp_path: Path) -> None:
    src = tmp_path / "vectors.txt"
    src.write_bytes(b"\x93NUMPY\x01\x00v\x00{'descr': '<f4'}\n\x00\x00\x00")
    _fails_cleanly(_encode("-m", tiny_llama_dir, "-t", src, "-o", tmp_path / "e.npy"), "line 1")


def test_texts_folder_is_refused(tiny_llama_dir: Path, tmp_path: Path) -> None:
    _fails_cleanly(_encode("-m", tiny_llama_dir, "-t", tmp_path, "-o", tmp_path / "e.npy"), "is a folder")


@pytest.mark.parametrize("model", ["/nonexistent/encoder", "texts-file", "owner/not-downloaded"])
def test_bad_model_references(model: str, texts: Path, tmp_path: Path) -> None:
    ref = str(texts) if model == "texts-file" else model
    result = _encode("-m", ref, "-t", texts, "-o", tmp_path / "e.npy", env={"HF_HUB_OFFLINE": "1"})
    why = {"texts-file": "is a file", "/nonexistent/encoder": "is not a directory"}.get(
        model, "HF_HUB_OFFLINE"
    )
    _fails_cleanly(result, why)


def test_folder_without_a_model(texts: Path, tmp_path: Path) -> None:
    (tmp_path / "notamodel").mkdir()
    (tmp_path / "notamodel" / "config.json").write_text('{"model_type": "nonsense"}')
    result = _encode("-m", tmp_path / "notamodel", "-t", texts, "-o", tmp_path / "e.npy")
    _fails_cleanly(result, "cannot be loaded as a text encoder")
    assert len(result.output.strip().splitlines()) == 1


@pytest.mark.parametrize("size", ["0", "-1"])
def test_batch_size_is_checked_before_the_model_loads(size: str, texts: Path, tmp_path: Path) -> None:
    # The model does not exist: a batch size checked only after loading would report the model instead.
    result = _encode(
        "-m", "/nonexistent/encoder", "-t", texts, "-o", tmp_path / "e.npy", "--batch-size", size
    )
    _fails_cleanly(result, "--batch-size")


def test_out_folder_is_refused_before_any_work(texts: Path, tmp_path: Path) -> None:
    result = _encode("-m", "/nonexistent/encoder", "-t", texts, "-o", tmp_path)
    _fails_cleanly(result, f"--out {tmp_path} is a folder")


def test_out_under_a_file_and_out_same_as_texts(tiny_llama_dir: Path, texts: Path) -> None:
    _fails_cleanly(
        _encode("-m", tiny_llama_dir, "-t", texts, "-o", texts / "e.npy"), "is a file, not a folder"
    )
    before = texts.read_bytes()
    _fails_cleanly(_encode("-m", tiny_llama_dir, "-t", texts, "-o", texts), "is also an input")
    assert texts.read_bytes() == before


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200) | st.text(max_size=80).map(lambda t: t.encode("utf-8")))
def test_any_bytes_give_lines_or_an_error_naming_the_line(data: bytes) -> None:
    try:
        lines = parse_lines(data, "f.txt")
    except TextFileError as exc:
        message = str(exc)
        assert message.startswith("f.txt: line ")
        line = int(message.split("line ")[1].split()[0])
        offset = int(message.split("byte offset ")[1].split(")")[0])
        assert line == data.count(b"\n", 0, offset) + 1  # the line that holds the culprit byte
        assert _decodes(data[:offset])  # everything before it is good UTF-8 ...
        assert data[offset] == 0 or not _decodes(data[offset:])  # ... and it is a NUL or bad UTF-8
        return
    # Oracle: split the bytes first, then decode each line (the parser decodes, then splits).
    body = data.removeprefix(b"\xef\xbb\xbf")
    segments = body.split(b"\n")
    if segments[-1] == b"":
        segments.pop()
    assert lines == [seg.decode("utf-8").removesuffix("\r") for seg in segments]


def _decodes(data: bytes) -> bool:
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True
