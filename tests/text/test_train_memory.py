"""The CPU memory settings of text training: bounded heap over many batch shapes, same numbers."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from lexray.training.memory import configure_cpu_memory

# A fresh process per run: the kernel caches read their capacity once, at their first use. Forward and
# backward of a bf16 linear layer for ~100 distinct row counts, as text batches of varying padded
# length give; glibc's heap is read after a warm-up and at the end.
_PROBE = r"""
import ctypes, hashlib, json, random, sys
import torch
from torch.nn import functional as F
if sys.argv[1] != "off":
    from lexray.training.memory import MMAP_THRESHOLD, configure_cpu_memory
    configure_cpu_memory(mmap_threshold=MMAP_THRESHOLD if sys.argv[1] == "mmap" else None)
torch.set_num_threads(1)
class Info(ctypes.Structure):
    _fields_ = [(n, ctypes.c_size_t) for n in
                ("arena ordblks smblks hblks hblkhd usmblks fsmblks uordblks fordblks keepcost").split()]
libc = ctypes.CDLL("libc.so.6")
libc.mallinfo2.restype = Info
gen = torch.Generator().manual_seed(0)
weight = torch.randn(768, 256, generator=gen).bfloat16()
digest = hashlib.sha256()
rows = random.Random(0).sample(range(128, 2048), 70)
for i, m in enumerate(rows):
    x = torch.randn(m, 256, generator=gen).bfloat16().requires_grad_()
    y = F.linear(x, weight)
    y.float().square().sum().backward()
    digest.update(y.detach().float().numpy().tobytes() + x.grad.float().numpy().tobytes())
    if i == 29:
        start = libc.mallinfo2()
end = libc.mallinfo2()
mb = 1 << 20
print(json.dumps({"used_growth": (end.uordblks - start.uordblks) / mb, "heap_free": end.fordblks / mb,
                  "digest": digest.hexdigest()}))
"""


def _probe(mode: str) -> dict:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    for name in ("ONEDNN_PRIMITIVE_CACHE_CAPACITY", "LRU_CACHE_CAPACITY", "MALLOC_MMAP_THRESHOLD_"):
        env.pop(name, None)
    done = subprocess.run(
        [sys.executable, "-c", _PROBE, mode], env=env, capture_output=True, text=True, timeout=120, check=True
    )
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_memory_settings_bound_the_heap_over_varying_shapes_with_identical_results() -> None:
    before, after, mapped = _probe("off"), _probe("on"), _probe("mmap")
    if before["used_growth"] < 20:
        pytest.skip("this CPU does not multiply bfloat16 through oneDNN's kernel caches")
    # Without the settings every new shape leaves a cached kernel and its workspace behind.
    assert after["used_growth"] < before["used_growth"] / 4, (before, after)
    assert mapped["heap_free"] < 64, mapped  # opt-in: large blocks go back to the system, not the heap
    # The same kernels: bit-identical outputs and gradients.
    assert after["digest"] == before["digest"] == mapped["digest"]


def test_configure_keeps_a_capacity_the_user_set(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LRU_CACHE_CAPACITY", "256")
    monkeypatch.delenv("ONEDNN_PRIMITIVE_CACHE_CAPACITY", raising=False)
    applied = configure_cpu_memory(kernel_cache_capacity=32)
    assert applied["LRU_CACHE_CAPACITY"] == "256"
    assert os.environ["ONEDNN_PRIMITIVE_CACHE_CAPACITY"] == "32"


@pytest.mark.parametrize("kwargs", [{"kernel_cache_capacity": 0}, {"mmap_threshold": 0}])
def test_configure_rejects_settings_that_crash_or_mean_nothing(kwargs: dict) -> None:
    with pytest.raises(ValueError, match=next(iter(kwargs))):
        configure_cpu_memory(**kwargs)
