"""Resumable checkpoints: Accelerate state plus a small JSON trainer state, newest N kept.

Layout: ``<run_dir>/checkpoints/step-NNNNNNN/`` with whatever ``accelerator.save_state`` writes
(prepared models, optimisers, schedulers registered for checkpointing, the loss scaler, every RNG) and
``trainer_state.json`` (where the loop is: step, epoch, batch position, ...). Resume is exact when the
batches are a pure function of the trainer state, which both stages guarantee.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

TRAINER_STATE = "trainer_state.json"


def _step_of(path: Path) -> int:
    return int(path.name.split("-")[1])


def latest_checkpoint(run_dir: str | Path) -> Path | None:
    """The newest complete checkpoint of a run (one with its trainer state written), or None."""
    ckpts = sorted((Path(run_dir) / "checkpoints").glob("step-*"), key=_step_of)
    ckpts = [c for c in ckpts if (c / TRAINER_STATE).is_file()]
    return ckpts[-1] if ckpts else None


def save_checkpoint(
    accelerator: Any, run_dir: str | Path, step: int, state: dict[str, Any], keep: int
) -> Path:
    """Save the Accelerate state and ``state`` as ``checkpoints/step-<step>``; keep the newest ``keep``.

    Every process must call it (Accelerate gathers and writes from the main one). The trainer state
    is written last, so a checkpoint interrupted while saving is never picked up.
    """
    root = Path(run_dir) / "checkpoints"
    out = root / f"step-{step:07d}"
    accelerator.save_state(str(out))
    if accelerator.is_main_process:
        (out / TRAINER_STATE).write_text(json.dumps(state))
        if keep > 0:
            for old in sorted(root.glob("step-*"), key=_step_of)[:-keep]:
                shutil.rmtree(old)
    accelerator.wait_for_everyone()
    return out


def load_checkpoint(accelerator: Any, path: str | Path) -> dict[str, Any]:
    """Restore the Accelerate state of ``path`` (non-strict: frozen weights are not in it); its trainer state."""
    accelerator.load_state(str(path), strict=False)
    return json.loads((Path(path) / TRAINER_STATE).read_text())
