"""One metrics log for both stages: ``metrics.jsonl`` in the run directory, one JSON object per line.

Schema (every line): ``stage`` (str: "mntp", "contrastive", "clip", "val", "bench", "done"), ``step``
(int, optimiser steps done in that stage), ``world_size`` (processes) and ``precision`` ("no", "bf16",
"fp16"); training-step lines add ``global_batch`` (examples per optimiser step over all processes and
micro-batches), ``loss`` and ``lr``; then the stage's own numbers (named loss terms, scores). Only the
main process writes.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

METRICS_FILE = "metrics.jsonl"


class MetricsLog:
    """Appends records to ``<run_dir>/metrics.jsonl`` (and TensorBoard scalars when asked)."""

    def __init__(
        self,
        run_dir: str | Path,
        enabled: bool,
        world_size: int,
        precision: str,
        tensorboard: bool = False,
    ) -> None:
        """Open the log; ``enabled`` is False on every process but the main one."""
        self.path = Path(run_dir) / METRICS_FILE
        self.enabled = enabled
        self.common = {"world_size": world_size, "precision": precision}
        self._writer = None
        if enabled and tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            self._writer = SummaryWriter(str(Path(run_dir) / "tb"))

    def write(self, stage: str, step: int, global_batch: int | None = None, **values: Any) -> None:
        """Append ``{"stage", "step", "world_size", "precision"[, "global_batch"], **values}``."""
        if not self.enabled:
            return
        record: dict[str, Any] = {"stage": stage, "step": step, **self.common}
        if global_batch is not None:
            record["global_batch"] = global_batch
        record.update(values)
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")
        if self._writer is not None:
            for k, v in values.items():
                if isinstance(v, (int, float)) and not isinstance(v, bool):
                    self._writer.add_scalar(f"{stage}/{k}", v, step)

    def close(self) -> None:
        """Flush and close TensorBoard (the JSONL file is closed after every line)."""
        if self._writer is not None:
            self._writer.close()
            self._writer = None


def read_metrics(run_dir: str | Path) -> list[dict[str, Any]]:
    """Every record of a run's ``metrics.jsonl`` (empty when there is none)."""
    path = Path(run_dir) / METRICS_FILE
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
