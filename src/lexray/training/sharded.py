"""Embedding work split across processes: every process embeds a rank-strided share of each call, and
all of them get the whole result back, in the order of the items.

Wrap any :class:`lexray.evaluate.embedder.EmbeddingModel` (a ``DualEncoder``, a text-only baseline) in
:class:`ShardedEmbedder` and hand it to code that embeds, such as ``lexray.evaluate.run_evaluation``.
Every process must make the same calls with the same items, as a launched copy of one command does.

Work whose plan depends on files (a resumable index build) uses :meth:`ShardedEmbedder.lead` instead:
the main process alone decides what is left, hands the tasks out a turn at a time, and writes.
"""

from __future__ import annotations

import atexit
import logging
import os
import pickle
from collections.abc import Callable, Iterable, Iterator, Sequence
from datetime import timedelta
from typing import Any, TypeVar

import numpy as np
import torch.distributed as dist

R = TypeVar("R")
log = logging.getLogger(__name__)

# What an embedding call may raise about one bad item; the caller's retry policy sees it on every rank.
ITEM_ERRORS = (OSError, ValueError, RuntimeError)

# What the main process tells the others under :meth:`ShardedEmbedder.lead`: one turn of tasks, the
# plan's result, or the error that ended it.
_TURN, _DONE, _FAILED = "turn", "done", "failed"

MapTasks = Callable[[Iterable[Any]], Iterator[Any]]  # tasks -> their results, in task order

# How long a launched command's processes wait for each other in one collective. Under
# :meth:`ShardedEmbedder.lead` the others wait in a broadcast while the main process works alone (reading
# the done chunks before the first turn; checking images, building FAISS, writing and committing after the
# last), which on a large index takes far longer than NCCL's default 10 minutes. A stuck process still
# ends the run, just later.
LAUNCH_TIMEOUT = timedelta(hours=6)


class ShardedEmbedder:
    """An embedding model whose calls run split across the processes of a launch.

    Process r embeds items r, r + N, r + 2N, ... of each call (long and short items spread evenly), and the
    rows come back on every process in item order, so the result equals a one-process call row for row.
    When any process fails on its share, every process raises the same ``ValueError``, so a retry (for
    example one image at a time) runs everywhere in step instead of leaving the others waiting.
    """

    def __init__(self, model: Any, rank: int | None = None, world: int | None = None) -> None:
        """Wrap ``model``; ``rank`` / ``world`` default to the process group's (1 process without one)."""
        initialised = dist.is_available() and dist.is_initialized()
        self.model = model
        self.world = world if world is not None else (dist.get_world_size() if initialised else 1)
        self.rank = rank if rank is not None else (dist.get_rank() if initialised else 0)

    @property
    def is_main(self) -> bool:
        """Whether this is the process that decides and writes (rank 0)."""
        return self.rank == 0

    def __getattr__(self, name: str) -> Any:
        # Anything but the two embedding calls (config, towers, ...) is the wrapped model's.
        return getattr(self.model, name)

    def embed_texts(self, texts: Sequence[str], batch_size: int = 32) -> np.ndarray:
        """(len(texts), D) float32 embeddings, computed a share per process."""
        return self._map(lambda part: self.model.embed_texts(part, batch_size), texts)

    def embed_images(self, images: Sequence[Any], batch_size: int = 32) -> np.ndarray:
        """(len(images), D) float32 embeddings, computed a share per process."""
        return self._map(lambda part: self.model.embed_images(part, batch_size), images)

    def _map(self, fn: Callable[[list[Any]], np.ndarray], items: Sequence[Any]) -> np.ndarray:
        if self.world == 1:
            return np.asarray(fn(list(items)), dtype=np.float32)
        mine = list(items[self.rank :: self.world])
        local, error = None, None
        try:
            local = np.asarray(fn(mine), dtype=np.float32) if mine else None
        except ITEM_ERRORS as exc:
            error = f"process {self.rank}: {type(exc).__name__}: {exc}"
        shards: list[Any] = [None] * self.world
        dist.all_gather_object(shards, (local, error))
        errors = [e for _, e in shards if e]
        if errors:
            raise ValueError(errors[0])
        width = next(arr.shape[1:] for arr, _ in shards if arr is not None)
        out = np.empty((len(items), *width), dtype=np.float32)
        for r, (arr, _) in enumerate(shards):
            if arr is not None:
                out[r :: self.world] = arr
        return out

    def lead(self, plan: Callable[[MapTasks], R], work: Callable[[Any], Any]) -> R:
        """Run ``plan`` on the main process while every process computes ``work(task)`` for it.

        ``plan(map_tasks)`` runs on the main process only, so it alone reads what is done and writes;
        ``map_tasks(tasks)`` yields ``work(task)`` for each task in task order, the tasks computed one per
        process a turn at a time (task ``i`` of a turn on process ``i``, with the process's own model).
        The other processes serve the turns until the plan ends. Every process then returns the plan's
        result, or raises the error the plan or any task raised, so bad input ends every process with
        the same message instead of leaving them waiting.
        """
        if self.world == 1:
            return plan(lambda tasks: map(work, tasks))
        if not self.is_main:
            return self._follow(work)
        try:
            result = plan(lambda tasks: self._hand_out(work, tasks))
        except Exception as exc:  # told to the others, then raised here unchanged
            self._say((_FAILED, _portable(exc)))
            raise
        self._say((_DONE, result))
        return result

    def _say(self, message: Any) -> Any:
        """The main process's ``message`` on every process."""
        box = [message]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def _hand_out(self, work: Callable[[Any], Any], tasks: Iterable[Any]) -> Iterator[Any]:
        todo = list(tasks)
        for start in range(0, len(todo), self.world):
            turn = todo[start : start + self.world]
            self._say((_TURN, turn))
            for done, value in self._turn(work, turn):
                if not done:
                    raise value
                yield value

    def _turn(self, work: Callable[[Any], Any], turn: list[Any]) -> list[tuple[bool, Any]]:
        """(finished, result or error) of each task of the turn, gathered on every process."""
        outcome: tuple[bool, Any] = (True, None)
        if self.rank < len(turn):
            try:
                outcome = (True, work(turn[self.rank]))
            except Exception as exc:  # sent to the main process, which ends the plan with it
                outcome = (False, _portable(exc))
        shards: list[Any] = [None] * self.world
        dist.all_gather_object(shards, outcome)
        return shards[: len(turn)]

    def _follow(self, work: Callable[[Any], Any]) -> Any:
        while True:
            kind, payload = self._say(None)
            if kind == _TURN:
                self._turn(work, payload)
            elif kind == _DONE:
                return payload
            else:
                raise payload


def _portable(exc: Exception) -> Exception:
    """``exc`` when it survives pickling (to reach the other processes), else a RuntimeError with its text."""
    try:
        pickle.loads(pickle.dumps(exc))
    except Exception:  # an exception whose constructor pickle cannot call again
        return RuntimeError(f"{type(exc).__name__}: {exc}")
    return exc


def shard_across_launch(model: Any) -> tuple[Any, bool]:
    """``model`` split across the processes of ``accelerate launch`` / ``torchrun``, and whether this one writes.

    In a single process it returns ``(model, True)`` unchanged. Launched as several, it sets up the process
    group (gloo on CPU) and returns a :class:`ShardedEmbedder`, so every embedding call is computed a share
    per process, and True only on the main process, which alone writes the outputs.

    The process group it creates waits :data:`LAUNCH_TIMEOUT` in a collective. A group that already
    exists (set up earlier in the process, for example by another ``Accelerator``) keeps its own timeout,
    because Accelerate does not create it again; a warning says so.
    """
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return model, True
    from lexray.training.distributed import make_accelerator

    if dist.is_available() and dist.is_initialized():
        log.warning(
            "the process group exists already: it keeps its own timeout, not %s, for the waits on the main process",
            LAUNCH_TIMEOUT,
        )
    accelerator = make_accelerator(timeout=LAUNCH_TIMEOUT)
    atexit.register(_leave_group)
    return ShardedEmbedder(model), bool(accelerator.is_main_process)


def _leave_group() -> None:
    # A gloo group left to the interpreter's own teardown sometimes aborts a process that has finished
    # ("terminate called without an active exception"), failing the whole launch after its work is done.
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
