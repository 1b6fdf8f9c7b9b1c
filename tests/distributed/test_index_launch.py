"""``accelerate launch --num_processes 2 -m lexray.cli.main index build``: the processes share the chunks,
the main one alone writes, and the index equals a one-process build row for row, fresh or resumed."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image as PILImage
from typer.testing import CliRunner

from lexray.data.manifest import write_manifest
from lexray.data.study import Image, Study

pytestmark = pytest.mark.distributed

HERE = Path(__file__).resolve().parent
MODEL = "_recording_embedder:RecordingEmbedder"


class Killed(BaseException):
    """A build killed mid-way (passes every ``except Exception``, as a signal would end the process)."""


@pytest.fixture
def corpus(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict:
    """9 studies to build from: s3's image is missing, s5's is not an image, s7 has no report. In chunks
    of 3 items: images s0-s2, s4-s6, s7-s8 (7 embed) and 8 reports, 3 chunks per side. To append: s9-s12
    and s0 again (already indexed)."""
    for folder in (HERE.parent / "index", HERE):  # the model class, in this process and the launched ones
        monkeypatch.syspath_prepend(str(folder))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(HERE.parent / "index"), str(HERE)]))
    from _recording_embedder import RecordingEmbedder

    rng = np.random.default_rng(0)
    studies = []
    for i in range(13):
        path = tmp_path / "img" / f"s{i}.png"
        path.parent.mkdir(exist_ok=True)
        if i == 5:
            path.write_bytes(b"not a png")
        elif i != 3:
            PILImage.fromarray((rng.random((24, 24)) * 255).astype(np.uint8)).save(path)
        words = " ".join(rng.choice(["left", "right", "small", "effusion", "clear", "edema"], size=5))
        report = "" if i == 7 else f"{words} case {i}."
        images = (Image(f"img/{path.name}"),)
        studies.append(Study(f"s{i}", f"p{i}", "synthetic", "test", findings=report, images=images))
    manifest = write_manifest(studies[:9], tmp_path / "manifest.parquet")
    extra = write_manifest(studies[:1] + studies[9:], tmp_path / "extra.parquet")
    run = RecordingEmbedder(dim=16).save_pretrained(tmp_path / "run")
    args = ["index", "build", "--model", str(run), "--manifest", str(manifest), "--no-progress"]
    args += ["--set", f"model_class={MODEL}", "--set", "chunk_size=3"]
    add = ["index", "add", "--manifest", str(extra), "--no-progress"]
    return {"args": args, "add": add, "run": run, "studies": studies[:9]}


def _same_index(a_dir: Path, b_dir: Path, appended: bool = False) -> None:
    """Equal row for row: studies, each side's rows and vectors, rejects (and the counts expected)."""
    from lexray.index import RetrievalIndex

    a, b = RetrievalIndex.load(a_dir), RetrievalIndex.load(b_dir)
    assert a.studies.equals(b.studies) and len(a.studies) == 9 + 4 * appended
    for side, n in (("image", 7), ("text", 8)):
        assert a.meta(side).equals(b.meta(side)) and len(a.meta(side)) == n + 4 * appended, side
        np.testing.assert_array_equal(a.vectors(side), b.vectors(side))
    assert a.rejects() == b.rejects()
    assert [r.record for r in a.rejects()] == ["s3", "s7", "s5"] + [
        "s0"
    ] * appended  # collected, then unembeddable


def _embedded_per_process(log: Path) -> list[int]:
    return [
        sum(int(line.split()[1]) for line in (log / f"rank-{r}.txt").read_text().splitlines())
        if (log / f"rank-{r}.txt").is_file()
        else 0
        for r in (0, 1)
    ]


def test_two_process_index_build_equals_one_process_fresh_and_resumed(corpus, launch, tmp_path):
    from _recording_embedder import LOG_ENV, RecordingEmbedder

    from lexray.cli.main import app
    from lexray.index import IndexConfig, build_index, make_ref

    one = CliRunner().invoke(app, [*corpus["args"], "--out", str(tmp_path / "one")])
    assert one.exit_code == 0, one.output

    log = tmp_path / "log-fresh"
    log.mkdir()
    printed = launch([*corpus["args"], "--out", str(tmp_path / "two")], env={LOG_ENV: str(log)}).stdout
    assert printed.count("studies: 9") == 1  # the main process alone reports
    _same_index(tmp_path / "one", tmp_path / "two")
    shares = _embedded_per_process(log)
    assert all(shares) and sum(shares) == 7 + 8, shares  # every item once, by both processes

    class KilledAtS7(RecordingEmbedder):
        def embed_images(self, images, batch_size=32):  # noqa: ANN001, ANN202 - the toy's signature
            if any("s7" in str(p) for p in images):
                raise Killed
            return super().embed_images(images, batch_size)

    cfg = IndexConfig(model_class=MODEL, chunk_size=3)
    ref = make_ref(corpus["run"], MODEL)
    with pytest.raises(Killed):  # one process, killed in the third image chunk: two chunks on disk
        build_index(
            corpus["studies"],
            KilledAtS7(16),
            ref,
            tmp_path / "resumed",
            cfg,
            image_root=tmp_path,
            progress=False,
        )
    log = tmp_path / "log-resumed"
    log.mkdir()
    printed = launch([*corpus["args"], "--out", str(tmp_path / "resumed")], env={LOG_ENV: str(log)}).stdout
    assert "reused chunks: 2" in printed
    _same_index(tmp_path / "one", tmp_path / "resumed")
    shares = _embedded_per_process(log)
    # Left: image chunk 3 (s7, s8: process 0, alone in its turn) and the 3 text chunks (0, 1, 0).
    assert shares[1] and sum(shares) == 2 + 8, shares
    assert not list((tmp_path / "resumed" / ".work").iterdir())

    # `index add` shares the loop: 4 new studies (images and reports in 2 chunks each), s0 skipped.
    one = CliRunner().invoke(app, [*corpus["add"], "--index", str(tmp_path / "one")])
    assert one.exit_code == 0, one.output
    log = tmp_path / "log-add"
    log.mkdir()
    launch([*corpus["add"], "--index", str(tmp_path / "two")], env={LOG_ENV: str(log)})
    _same_index(tmp_path / "one", tmp_path / "two", appended=True)
    shares = _embedded_per_process(log)
    assert all(shares) and sum(shares) == 4 + 4, shares


def test_bad_input_under_launch_is_an_error_line_not_a_traceback_or_a_hang(corpus, launch, tmp_path):
    from lexray.index._versions import locked

    out = tmp_path / "busy"
    with locked(out):  # decided by the main process alone: another writer holds the index
        proc = launch([*corpus["args"], "--out", str(out)], ok=False, timeout=120)
    # Every process raises the main one's error (tests/distributed/test_steps.py shows it for each
    # process); the launcher stops the others once the first has exited, so count at least one line.
    assert proc.returncode != 0
    assert "error: another process is writing the index" in proc.stderr, proc.stderr[-3000:]
    assert "IndexBusyError" not in proc.stderr  # a message, not a traceback
