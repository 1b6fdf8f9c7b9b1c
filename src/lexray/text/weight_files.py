"""Reading published weight files: a model directory's tensors, pickled checkpoints, tolerant loads.

The published text and CLIP importers (:mod:`lexray.text.published`, :mod:`lexray.clip.published`,
:mod:`lexray.clip.openclip`) read their checkpoints through these, so a missing, truncated or foreign file
fails the same way everywhere: a :class:`CheckpointError` naming the file and the fix.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import torch

from lexray import models
from lexray.errors import LexrayError

log = logging.getLogger(__name__)


class CheckpointError(LexrayError, ValueError):
    """A published checkpoint is missing, incomplete or not in the layout its importer reads."""


def load_matching(
    module: torch.nn.Module, state: dict[str, torch.Tensor], ignored_suffix: str
) -> tuple[list[str], list[str]]:
    """Load ``state`` into ``module``; return the (missing, unexpected) keys, less those ending in
    ``ignored_suffix`` (buffers a model recomputes, e.g. RoPE frequencies or position ids)."""
    missing, unexpected = module.load_state_dict(state, strict=False)
    return (
        [k for k in missing if not k.endswith(ignored_suffix)],
        [k for k in unexpected if not k.endswith(ignored_suffix)],
    )


def source_dir(source: str | Path) -> Path:
    """A local directory with the published files: ``source`` itself, or the hub snapshot of a hub id.

    Raises:
        lexray.models.ModelNotAvailableError: a hub id while offline (``HF_HUB_OFFLINE=1``) or unreachable.
        CheckpointError: ``source`` is a file, not the model's directory.
    """
    path = Path(source).expanduser()
    if path.is_file():
        raise CheckpointError(
            f"{path} is a file; give the directory holding config.json, model.safetensors and the tokenizer"
        )
    return models.local_path(str(source))


def read_state_dict(directory: Path, hub_id: str = "REPO") -> dict[str, torch.Tensor]:
    """All tensors of a model directory: ``model.safetensors``, its shards, or ``pytorch_model.bin``.

    ``hub_id`` names the repository in the fix a missing weight file gets.

    Raises:
        CheckpointError: no weight file, a truncated or unreadable file (naming it and the fix).
    """
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    single, index = directory / "model.safetensors", directory / "model.safetensors.index.json"
    if single.is_file():
        files = [single]
    elif index.is_file():
        shards = sorted(set(json.loads(index.read_text())["weight_map"].values()))
        files = [directory / s for s in shards]
    elif (directory / "pytorch_model.bin").is_file():
        return load_pickle(directory / "pytorch_model.bin", allow_pickle=False)
    else:
        raise CheckpointError(
            f"{directory} has no model.safetensors (nor shards or pytorch_model.bin); download the whole "
            f"repository (`hf download {hub_id} --local-dir DIR`) and pass DIR"
        )
    state: dict[str, torch.Tensor] = {}
    for file in files:
        if not file.is_file():
            raise CheckpointError(f"{file} is listed in the shard index but absent; download it again")
        try:
            state.update(load_file(file))
        except (SafetensorError, OSError) as exc:
            raise CheckpointError(
                f"{file} cannot be read ({exc}); it is truncated or corrupt: download it again"
            ) from exc
    return state


def load_pickle(file: Path, allow_pickle: bool) -> dict[str, Any]:
    """``torch.load`` a ``.bin``/``.pt`` checkpoint with ``weights_only=True``; full unpickling only if allowed.

    Raises:
        CheckpointError: a truncated file, or one that needs full unpickling without ``allow_pickle``.
    """
    import pickle
    import zipfile

    try:
        return torch.load(file, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        if not allow_pickle:
            raise CheckpointError(
                f"{file} holds Python objects beyond tensors, so it cannot be loaded with "
                "weights_only=True; unpickling can run arbitrary code: pass --allow-pickle only if you "
                f"trust the file ({str(exc).splitlines()[0]})"
            ) from exc
        log.warning("%s: loading with full unpickling (--allow-pickle)", file)
        return torch.load(file, map_location="cpu", weights_only=False)
    except (RuntimeError, EOFError, zipfile.BadZipFile) as exc:
        raise CheckpointError(
            f"{file} cannot be read ({type(exc).__name__}: {str(exc).splitlines()[0][:200]}); "
            "it is truncated or not a torch checkpoint: download it again"
        ) from exc
