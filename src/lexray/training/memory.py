"""Bounded CPU memory for training: oneDNN's per-shape caches and glibc's heap.

A CPU run in bfloat16 multiplies through oneDNN, which compiles and caches one kernel (a "primitive")
per distinct matrix shape, in two least-recently-used caches of 1,024 entries each: oneDNN's own and
ideep's (PyTorch's wrapper). Text batches change their padded length every step, so the caches
fill with kernels and workspaces for shapes that never come back (about 15 MB a step in the
SmolLM2 recipe). The activations of those batches vary in size too, and glibc's malloc keeps the
freed blocks of its heap for reuse (its mmap threshold rises to 32 MB after the first large free),
so the heap fragments into gigabytes of free but unreturned memory.

:func:`configure_cpu_memory` bounds both before the first multiplication: small kernel caches (a
cache hit or miss picks the same kernel, so results are bit-identical) and a fixed mmap threshold, so
large tensors are mapped on allocation and returned to the system when freed.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os

log = logging.getLogger(__name__)

# Kernel-cache entries kept by oneDNN and by ideep: a training step uses a few dozen shapes, and the
# steps that follow reuse some of them.
KERNEL_CACHE_CAPACITY = 64
# Blocks from this size up are mmapped and unmapped when freed (glibc's default is dynamic, 128 KiB
# rising to 32 MiB, which sends most activations to the fragmenting heap).
MMAP_THRESHOLD = 1 << 20

_CACHE_ENV = ("ONEDNN_PRIMITIVE_CACHE_CAPACITY", "LRU_CACHE_CAPACITY")  # oneDNN's, ideep's
_M_MMAP_THRESHOLD = -3  # mallopt parameter numbers from glibc's malloc.h


def _libc() -> ctypes.CDLL | None:
    """glibc, or None on a C library without ``mallopt`` (musl, macOS, Windows)."""
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    try:
        lib = ctypes.CDLL(name)
    except OSError:
        return None
    if not hasattr(lib, "mallopt") or not hasattr(lib, "malloc_trim"):
        return None
    return lib


def configure_cpu_memory(
    kernel_cache_capacity: int = KERNEL_CACHE_CAPACITY, mmap_threshold: int | None = None
) -> dict[str, int | str]:
    """Bound oneDNN's kernel caches and fix glibc's mmap threshold for this process.

    Call it before the first bfloat16 multiplication of the process (the caches read their capacity
    once, when first used). A capacity set in the environment by the user is kept.

    Args:
        kernel_cache_capacity: entries of each oneDNN kernel cache (must be at least 1: ideep crashes
            with an empty cache).
        mmap_threshold: bytes from which glibc maps allocations instead of taking them from its heap;
            None (the default) leaves glibc's own. :data:`MMAP_THRESHOLD` returns freed activations to
            the system at once but costs a page fault per large allocation: on the SmolLM2 one-block
            recipe's shapes, steps took 1.45x as long, while the capped caches alone bounded memory at
            no cost (BENCHMARKS.md), so it is opt-in.

    Returns:
        What was applied: each cache variable's value, and ``mmap_threshold`` (0 when the C library is
        not glibc, and nothing was changed there).

    Raises:
        ValueError: ``kernel_cache_capacity`` is below 1 or ``mmap_threshold`` is given and not positive.
    """
    if kernel_cache_capacity < 1:
        raise ValueError(f"kernel_cache_capacity={kernel_cache_capacity}: at least 1 (0 crashes ideep)")
    if mmap_threshold is not None and mmap_threshold <= 0:
        raise ValueError(f"mmap_threshold={mmap_threshold}: a positive number of bytes")
    applied: dict[str, int | str] = {}
    for name in _CACHE_ENV:
        applied[name] = os.environ.setdefault(name, str(kernel_cache_capacity))
    lib = _libc()
    applied["mmap_threshold"] = 0
    if mmap_threshold is not None and lib is not None and lib.mallopt(_M_MMAP_THRESHOLD, ctypes.c_int(mmap_threshold)) == 1:
        applied["mmap_threshold"] = mmap_threshold
    log.debug("CPU memory settings: %s", applied)
    return applied


def release_free_memory() -> bool:
    """Return the free pages of glibc's heap to the system (``malloc_trim``); False when not glibc.

    Cheap between stages; not needed every step once :func:`configure_cpu_memory` has run.
    """
    lib = _libc()
    return bool(lib is not None and lib.malloc_trim(ctypes.c_size_t(0)))
