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
