"""Checks on command arguments: output paths before any work starts, and named messages for bad inputs.

An output path is checked before a model loads or a file is read, so a wrong ``--out`` costs no compute.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from lexray.errors import LexrayError

if TYPE_CHECKING:  # the bench module loads only when a command reads a bench
    from lexray.text.bench import BenchItem, SeedErrorItem, SeedRetrievalItem

# Entries of a lexray index directory (see lexray.index.store): a folder holding only these is an index,
# or the start of one an interrupted first build left.
_INDEX_ENTRIES = ("CURRENT", ".work", ".lock")
_INDEX_PREFIXES = ("v-", ".staging-")


class CommandError(LexrayError):
    """What a command was given cannot be used; the CLI prints it as one ``error: ...`` line and exits 2."""


class OutputPathError(LexrayError, ValueError):
    """An output path that cannot be written as asked: a folder where a file goes, an input, ..."""


def _check_parents(path: Path, option: str) -> None:
    for parent in path.parents:
        if parent.exists() and not parent.is_dir():
            raise OutputPathError(
                f"{option} {path}: {parent} is a file, not a folder; choose another {option}"
            )


def check_output_file(
    path: Path, option: str = "--out", example: str = "out.npy", inputs: Sequence[Path] = ()
) -> Path:
    """Refuse an output file path that is a folder, lies under a file or is one of the inputs.

    Args:
        path: the file the command will write.
        option: the option's name, for the message.
        example: a file name suggested inside a folder given by mistake.
        inputs: files the command reads, which the output must not overwrite.

    Returns:
        ``path``.

    Raises:
        OutputPathError: naming the problem and what to give instead.
    """
    if path.is_dir():
        raise OutputPathError(
            f"{option} {path} is a folder: give the file to write, e.g. {option} {path / example}"
        )
    _check_parents(path, option)
    for source in inputs:
        if source.exists() and path.exists() and path.resolve() == source.resolve():
            raise OutputPathError(f"{option} {path} is also an input ({source}); choose another {option}")
    return path


def check_output_dir(path: Path, option: str = "--out") -> Path:
    """Refuse an output folder path that is an existing file or lies under a file.

    Raises:
        OutputPathError: naming the problem and what to give instead.
    """
    if path.exists() and not path.is_dir():
        raise OutputPathError(f"{option} {path} is a file: give a folder to write into (new or existing)")
    _check_parents(path, option)
    return path


def check_index_dir(path: Path, option: str = "--out") -> Path:
    """Refuse an index output that is a file, lies under a file, or is a folder of other things.

    An existing index (or an interrupted first build of one) is accepted: the build adds a version or
    resumes.

    Raises:
        OutputPathError: naming the problem and what to give instead.
    """
    check_output_dir(path, option)
    if path.is_dir():
        names = [p.name for p in path.iterdir()]
        foreign = [n for n in names if n not in _INDEX_ENTRIES and not n.startswith(_INDEX_PREFIXES)]
        if foreign and not any(n in ("CURRENT", ".work") for n in names):
            raise OutputPathError(
                f"{option} {path} is a folder of other files ({', '.join(sorted(foreign)[:3])}"
                f"{', ...' if len(foreign) > 3 else ''}), not a lexray index; give a new or empty folder, "
                f"e.g. {option} {path / 'index'}"
            )
    return path


def not_utf8(path: Path, exc: UnicodeDecodeError, what: str = "text") -> str:
    """A message naming a non-UTF-8 input file and, where known, the line and byte of the first bad byte.

    The position is only known when the reader decoded the whole file at once (``exc.object`` is then
    the file's bytes); a reader that decodes in chunks reports offsets within a chunk.
    """
    data = exc.object if isinstance(exc.object, bytes) else b""
    try:
        whole = len(data) == path.stat().st_size
    except OSError:
        whole = False
    where = ""
    if whole:
        line = data.count(b"\n", 0, exc.start) + 1
        where = f" (line {line}, byte 0x{data[exc.start]:02x} at byte offset {exc.start})"
    return f"{path} is not UTF-8 {what}{where}; save it as UTF-8"


def load_text_bench(path: Path) -> list[BenchItem] | list[SeedRetrievalItem] | list[SeedErrorItem]:
    """The items of a text bench (:func:`lexray.text.bench.load_bench`), imported when a command reads one.

    Raises:
        BenchFormatError: the file is missing, not UTF-8, or not a bench; a LexrayError naming the file,
            which the command line prints as its ``error:`` line.
    """
    from lexray.text.bench import load_bench

    return load_bench(path)
