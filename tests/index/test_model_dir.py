"""Where a run keeps its model: one rule (``lexray.clip.model.find_model_dir``) for loading and indexing."""

from __future__ import annotations

import pytest

from lexray.clip.model import MARKER_FILE, DualEncoder, find_model_dir
from lexray.index import make_ref


def test_the_index_refers_to_the_model_dir_from_pretrained_loads(tmp_path):
    run = tmp_path / "run"
    for name in ("final", "best"):
        (run / name).mkdir(parents=True)
        (run / name / MARKER_FILE).write_text("{}")
    assert find_model_dir(run) == run / "best"  # best/ before final/
    assert make_ref(run).path == str((run / "best").resolve())
    (run / "best" / MARKER_FILE).unlink()
    assert find_model_dir(run) == run / "final" and make_ref(run).path == str((run / "final").resolve())
    assert find_model_dir(run / "final") == run / "final"  # a model directory is its own
    plain = tmp_path / "plain"
    plain.mkdir()
    assert find_model_dir(plain) is None
    assert make_ref(plain).path == str(plain.resolve())  # kept; loading it says what is missing
    with pytest.raises(FileNotFoundError, match="holds no saved dual encoder"):
        DualEncoder.from_pretrained(plain)
