"""Two processes (gloo on CPU) take the same step as one process given the same global batch.

fp32 throughout. Tolerances: the loss to 1e-5 relative; every gradient (as the optimiser sees it, after
DDP's all-reduce) to 1e-6 absolute + 1e-4 relative; the weights after one AdamW step at lr 1e-2 to
1e-4 absolute (1% of the lr). The runs differ only in the order of floating-point sums, but AdamW's
first step is about lr * sign(gradient), so a gradient that is zero in exact arithmetic (the key bias
of the pooling attention, which softmax ignores) turns rounding noise into updates of up to ~1e-4.
"""

from __future__ import annotations

import importlib.util
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

pytestmark = pytest.mark.distributed

HERE = Path(__file__).resolve().parent
_spec = importlib.util.spec_from_file_location("lexray_distributed_cases", HERE / "_cases.py")
cases = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(cases)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def two_processes(tiny_llama: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """Every case run once in two processes (one launch, ~20 s on 2 cores)."""
    out = tmp_path_factory.mktemp("two-processes")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2"]
    cmd += ["--master_addr", "127.0.0.1", "--master_port", str(free_port())]
    cmd += [str(HERE / "_cases.py"), str(tiny_llama), str(out)]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-6000:]
    return torch.load(out / "results.pt", weights_only=False)


@pytest.fixture
def one_process():
    """A one-process accelerator (Accelerate keeps its state per process: reset around each use)."""
    from accelerate.state import AcceleratorState

    from lexray.training import make_accelerator

    AcceleratorState._reset_state(reset_partial_state=True)
    yield make_accelerator("no")
    AcceleratorState._reset_state(reset_partial_state=True)


def _same_step(two: dict, one: dict) -> None:
    assert two["loss"] == pytest.approx(one["loss"], rel=1e-5)
    assert two["grads"].keys() == one["grads"].keys() == one["weights"].keys() and one["grads"]
    for name, g in one["grads"].items():
        assert g.abs().max() > 0, name  # every trainable tensor takes part
        torch.testing.assert_close(two["grads"][name], g, rtol=1e-4, atol=1e-6, msg=name)
    for name, w in one["weights"].items():
        torch.testing.assert_close(two["weights"][name], w, rtol=0, atol=1e-4, msg=name)


@pytest.mark.parametrize("case,chunk", [("text", 0), ("gradcache", 3)])
def test_contrastive_step_with_hard_negatives_equals_one_process(
    two_processes, one_process, tiny_llama, case, chunk
):
    _same_step(two_processes[case], cases.text_step(one_process, str(tiny_llama), chunk))


@pytest.mark.parametrize("loss", ["clip", "siglip"])
def test_clip_and_siglip_steps_equal_one_process(two_processes, one_process, loss):
    _same_step(two_processes[loss], cases.clip_step(one_process, loss))


def test_batch_samplers_stay_duplicate_free_across_processes(two_processes):
    shards = two_processes["sampler"]  # one dict per process
    for stage in ("text", "clip"):
        steps = list(zip(*(s[stage] for s in shards), strict=True))
        assert steps
        for step, (mine, theirs) in enumerate(steps):
            texts = [t.rstrip(" .") for t in mine + theirs]
            assert len(set(texts)) == len(texts), (stage, step, texts)


def test_sharded_embedder_equals_one_process_and_fails_everywhere_alike(two_processes):
    import numpy as np

    one = cases.sharded_embedder(0, 1)
    two = two_processes["embedder"]
    np.testing.assert_array_equal(two["texts"], one["texts"])
    np.testing.assert_array_equal(two["images"], one["images"])  # one item: process 1 has none
    assert one["error"] == "cannot read 'bad'"  # one process: the model's own error, unchanged
    # "bad" is item 1: process 1's share; both processes raise the same ValueError
    assert two_processes["embedder_errors"] == ["process 1: ValueError: cannot read 'bad'"] * 2


def test_work_led_by_the_main_process_is_shared_and_fails_everywhere_alike(two_processes):
    one = cases.led_by_main(0, 1)
    assert one == {
        "result": [(t * t, 0) for t in range(5)],
        "task_error": "task 3 cannot run",
        "plan_error": "no usable study",
    }
    # Two processes: the same results in task order, computed a task per process a turn at a time, and
    # every process returns them (or raises the same error) whichever process computed or failed.
    assert two_processes["led"] == [{**one, "result": [(t * t, t % 2) for t in range(5)]}] * 2
