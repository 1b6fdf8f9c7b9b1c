"""The embedding model an index is built with: a protocol, a stored reference, and its loader.

An index records *which* model made its vectors (:class:`ModelRef`) so that ``lexray search`` and
``lexray serve`` embed queries with exactly the same model. Any object with ``embed_images`` and
``embed_texts`` (:class:`lexray.embedding.EmbeddingModel`) and ``embed_dim`` fits (:class:`Embedder`);
:class:`lexray.clip.DualEncoder` is the one the command line uses by default.
"""

from __future__ import annotations

import hashlib
import importlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np

from lexray.embedding import EmbeddingModel
from lexray.errors import LexrayError

# The class the CLI loads a run directory with unless the index config names another.
DEFAULT_MODEL_CLASS = "lexray.clip:DualEncoder"

ImageInput = np.ndarray | str | Path


@runtime_checkable
class Embedder(EmbeddingModel, Protocol):
    """What the index and the service need from a model: the project's embedding protocol and its width.

    ``embed_images`` takes pixel arrays (H, W) in [0, 1] or file paths (:data:`ImageInput`); both
    ``embed_*`` methods return (N, D) L2-normalised float32 arrays.
    """

    @property
    def embed_dim(self) -> int:
        """Width D of the vectors both ``embed_*`` methods return."""
        ...


class ModelLoadError(LexrayError, RuntimeError):
    """The model an index refers to cannot be loaded."""


@dataclass(frozen=True)
class ModelRef:
    """Where an index's model lives and which class loads it."""

    model_class: str  # "module:Class" with a ``from_pretrained(path)`` classmethod
    path: str  # the run directory (absolute) handed to ``from_pretrained``
    fingerprint: str  # stable id of the run directory's files, to notice a model changed under the index

    def to_dict(self) -> dict[str, str]:
        """JSON-able form stored in ``index.json``."""
        return {"model_class": self.model_class, "path": self.path, "fingerprint": self.fingerprint}

    @classmethod
    def from_dict(cls, data: dict[str, str]) -> ModelRef:
        """Inverse of :meth:`to_dict`."""
        return cls(model_class=data["model_class"], path=data["path"], fingerprint=data["fingerprint"])


def fingerprint_dir(path: str | Path) -> str:
    """A short stable id of a model directory: names, sizes and mtimes of its files (not their bytes).

    Hashing every weight byte of a large model would take longer than loading it; file sizes and
    modification times change whenever a checkpoint is rewritten.
    """
    root = Path(path)
    if not root.exists():
        return "missing"
    entries = []
    files = [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.is_file())
    for p in files:
        st = p.stat()
        entries.append([str(p.relative_to(root)) if p != root else p.name, st.st_size, int(st.st_mtime)])
    return hashlib.sha256(json.dumps(entries).encode()).hexdigest()[:16]


def _model_dir(path: Path, model_class: str) -> Path:
    """The directory that holds the model itself.

    A DualEncoder training run keeps its model in ``best/`` or ``final/`` beside logs and metrics that
    later commands rewrite; fingerprinting the whole run would make the index look stale after every
    evaluation, so the reference points at the model directory ``from_pretrained`` would pick.
    """
    if model_class != DEFAULT_MODEL_CLASS:
        return path
    from lexray.clip.model import find_model_dir

    return find_model_dir(path) or path  # not a saved model: from_pretrained will say what is missing


def make_ref(path: str | Path, model_class: str = DEFAULT_MODEL_CLASS) -> ModelRef:
    """A :class:`ModelRef` for the run directory ``path`` (stored absolute, resolved to its model dir).

    Raises:
        ModelLoadError: ``path`` does not exist or is a file.
    """
    given = Path(path).expanduser()
    if not given.is_dir():
        what = "is a file" if given.exists() else "does not exist"
        raise ModelLoadError(f"model {path} {what}; give a model run directory (from `lexray clip train`)")
    p = _model_dir(given.resolve(), model_class)
    return ModelRef(model_class=model_class, path=str(p), fingerprint=fingerprint_dir(p))


def _import_class(spec: str) -> type:
    if ":" not in spec:
        raise ModelLoadError(f"model class {spec!r} must look like 'package.module:ClassName'")
    module_name, _, attr = spec.partition(":")
    try:
        obj: object = importlib.import_module(module_name)
    except ImportError as exc:
        raise ModelLoadError(f"cannot import {module_name!r} for model class {spec!r}: {exc}") from exc
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise ModelLoadError(f"{module_name!r} has no attribute {attr!r} (model class {spec!r})")
        obj = getattr(obj, part)
    if not isinstance(obj, type):
        raise ModelLoadError(f"model class {spec!r} is not a class")
    return obj


def load_model(ref: ModelRef, *, check_fingerprint: bool = True) -> Embedder:
    """Load the model an index refers to.

    Args:
        ref: the stored reference.
        check_fingerprint: refuse a run directory whose files changed since the index was built
            (query vectors would no longer match the stored ones).

    Raises:
        ModelLoadError: the directory is missing or changed, or the class cannot be imported/loaded.
    """
    if not Path(ref.path).exists():
        raise ModelLoadError(
            f"the index's model {ref.path} does not exist; rebuild the index or restore the run directory"
        )
    if check_fingerprint:
        now = fingerprint_dir(ref.path)
        if now != ref.fingerprint:
            raise ModelLoadError(
                f"the model files in {ref.path} changed since the index was built "
                f"(fingerprint {ref.fingerprint} -> {now}); rebuild the index with `lexray index build`"
            )
    cls = _import_class(ref.model_class)
    loader = getattr(cls, "from_pretrained", None)
    if loader is None:
        raise ModelLoadError(f"{ref.model_class} has no from_pretrained(path) classmethod")
    from lexray.models import ModelNotAvailableError

    try:
        model = loader(ref.path)
    except ModelNotAvailableError as exc:  # e.g. the run's frozen text tower is not on this machine
        raise ModelLoadError(f"cannot load the index's model {ref.path}: {exc}") from exc
    except (OSError, ValueError) as exc:  # a folder without the model's files, or with broken ones
        raise ModelLoadError(f"cannot load {ref.path} as {ref.model_class}: {exc}") from exc
    if not isinstance(model, Embedder):
        raise ModelLoadError(f"{ref.model_class} does not provide embed_images/embed_texts/embed_dim")
    return model
