from __future__ import annotations

from pathlib import Path

import pytest

from lexray.index import model as index_model
from lexray.models import ModelNotAvailableError


class _NeedsMissingTextTower:
    @classmethod
    def from_pretrained(cls, path: str) -> _NeedsMissingTextTower:
        raise ModelNotAvailableError("model 'runs/text' is not available")


def test_missing_tower_becomes_a_model_load_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "run").mkdir()
    monkeypatch.setattr(index_model, "_import_class", lambda spec: _NeedsMissingTextTower)
    ref = index_model.ModelRef.from_dict(
        {"path": str(tmp_path / "run"), "model_class": "x:Y", "fingerprint": "f"}
    )
    with pytest.raises(index_model.ModelLoadError, match="cannot load the index's model .*runs/text"):
        index_model.load_model(ref, check_fingerprint=False)


class _NoFiles:
    @classmethod
    def from_pretrained(cls, path: str) -> _NoFiles:
        raise FileNotFoundError(f"{path} holds no saved dual encoder")


def test_folder_without_model_files_is_a_model_load_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(index_model, "_import_class", lambda spec: _NoFiles)
    ref = index_model.make_ref(tmp_path, "x:Y")
    with pytest.raises(index_model.ModelLoadError, match="holds no saved dual encoder"):
        index_model.load_model(ref, check_fingerprint=False)


@pytest.mark.parametrize(("name", "why"), [("missing", "does not exist"), ("file.txt", "is a file")])
def test_model_reference_must_be_a_directory(tmp_path: Path, name: str, why: str) -> None:
    (tmp_path / "file.txt").write_text("x")
    with pytest.raises(index_model.ModelLoadError, match=why):
        index_model.make_ref(tmp_path / name)
