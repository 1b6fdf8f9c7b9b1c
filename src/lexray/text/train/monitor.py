"""The evaluation hook of text training: the encoder scored on a text bench while it trains."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any

from lexray.text.config import TextTrainConfig
from lexray.text.encoder import TextEncoder
from lexray.training import MetricsLog

log = logging.getLogger(__name__)


def bench_monitor(
    encoder: TextEncoder,
    items: Sequence[Any] | None,
    config: TextTrainConfig,
    metrics: MetricsLog,
    accelerator: Any,
) -> Callable[..., None] | None:
    """Score the encoder on the bench ``items`` every ``config.eval_every`` steps and after the last.

    ``items`` is ``config.eval_bench`` as :func:`lexray.text.bench.load_bench` read it (None: no bench);
    only the main process scores. The bench is only embedded, never trained on; its scores go to
    ``metrics.jsonl`` as ``{"stage": "bench", ...}`` records so a run's trajectory can be read afterwards.
    Extra keyword arguments force a score now and are written with it (the final weight interpolation).
    """
    if items is None or not (config.eval_every and accelerator.is_main_process):
        return None
    from lexray.text.bench import evaluate_bench

    last = config.contrastive.steps

    def monitor(step: int, **extra: Any) -> None:
        if step % config.eval_every and step != last and not extra:
            return
        scores = evaluate_bench(lambda texts: encoder.encode(texts, batch_size=32), items)
        metrics.write("bench", step, **extra, **{k: round(v, 4) for k, v in scores.items()})
        log.info(
            "bench at step %d: %s",
            step,
            " ".join(f"{k}={v:.2f}" for k, v in scores.items() if k.endswith("R@1") or "errdisc" in k),
        )

    return monitor
