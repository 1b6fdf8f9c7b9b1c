"""The shared training kit: parameter groups, schedules, the optimiser step, metrics and checkpoints."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from lexray.training import (
    MetricsLog,
    build_adamw,
    latest_checkpoint,
    load_checkpoint,
    lr_schedule,
    optimizer_step,
    param_groups,
    rank_slice,
    save_checkpoint,
)
from lexray.training.metrics import read_metrics
from lexray.training.optim import layer_decay_lr


class Tower(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.proj = nn.Linear(4, 3)
        self.norm = nn.LayerNorm(3)
        self.latents = nn.Parameter(torch.randn(5, 3))
        self.logit_scale = nn.Parameter(torch.tensor(2.0))
        self.frozen = nn.Linear(3, 3)
        self.frozen.requires_grad_(False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.norm(self.proj(x))  # (B, 3)
        return (h @ self.latents.T).sum() * self.logit_scale


@pytest.fixture(autouse=True)
def _fresh_accelerate_state():
    from accelerate.state import AcceleratorState

    AcceleratorState._reset_state(reset_partial_state=True)
    yield
    AcceleratorState._reset_state(reset_partial_state=True)


def test_param_groups_decay_only_matrices_and_skip_frozen_weights():
    model = Tower()
    groups = param_groups(model, 1e-3, 0.1, lr_of=lambda n: 2e-3 if n.startswith("proj") else 1e-3)
    by_id = {id(p): n for n, p in model.named_parameters()}
    seen = {by_id[id(p)]: (g["lr"], g["weight_decay"]) for g in groups for p in g["params"]}
    assert seen == {
        "proj.weight": (2e-3, 0.1),  # the only matrix that decays
        "proj.bias": (2e-3, 0.0),
        "norm.weight": (1e-3, 0.0),
        "norm.bias": (1e-3, 0.0),
        "latents": (1e-3, 0.0),  # a matrix, but a learnt query set: no decay
        "logit_scale": (1e-3, 0.0),
    }
    model.requires_grad_(False)
    with pytest.raises(ValueError, match="every parameter is frozen"):
        param_groups(model, 1e-3, 0.1)


def test_layer_decay_lowers_deeper_layers_geometrically():
    assert [layer_decay_lr(1.0, 0.5, i, 3) for i in range(4)] == [0.125, 0.25, 0.5, 1.0]


@pytest.mark.parametrize("shape", ["linear", "cosine"])
def test_schedules_warm_up_then_decay_as_the_stages_always_did(shape):
    opt = build_adamw(param_groups(Tower(), 1.0, 0.0), 1.0)
    sched = lr_schedule(opt, warmup=2, total=6, shape=shape, floor=0.0)
    lrs = []
    for _ in range(6):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    if shape == "linear":  # the text stage's schedule, unchanged: (total - step) / (total - warmup)
        expected = [0.5, 1.0, 1.0, 0.75, 0.5, 0.25]
    else:  # CLIP's: cosine from the peak at the end of warmup to 0 at total
        expected = [0.5, 1.0] + [0.5 * (1 + math.cos(math.pi * k / 4)) for k in range(4)]
    assert lrs == pytest.approx(expected)


def test_optimizer_step_clips_steps_and_zeroes_gradients():
    from lexray.training import make_accelerator

    model = Tower()
    opt = build_adamw(param_groups(model, 1e-2, 0.0), 1e-2)
    sched = lr_schedule(opt, 0, 10)
    accelerator = make_accelerator("no")
    model, opt = accelerator.prepare(model, opt)
    before = model.proj.weight.detach().clone()
    accelerator.backward(model(torch.randn(2, 4)))
    expected = torch.norm(torch.stack([p.grad.norm() for p in model.parameters() if p.grad is not None]))
    norm = optimizer_step(accelerator, model, opt, sched, grad_clip=0.5)
    assert norm == pytest.approx(float(expected), rel=1e-5)
    assert not torch.equal(before, model.proj.weight) and all(p.grad is None for p in model.parameters())
    accelerator.backward(model(torch.randn(2, 4)))
    assert math.isnan(optimizer_step(accelerator, model, opt, sched, grad_clip=0.0))


def test_metrics_log_schema(tmp_path):
    log = MetricsLog(tmp_path, enabled=True, world_size=4, precision="bf16")
    log.write("contrastive", 1, global_batch=128, loss=0.5, lr=1e-4)
    log.write("bench", 1, restyled_R1=0.9)
    MetricsLog(tmp_path, enabled=False, world_size=4, precision="bf16").write("mntp", 1, loss=1.0)
    assert read_metrics(tmp_path) == [
        {
            "stage": "contrastive",
            "step": 1,
            "world_size": 4,
            "precision": "bf16",
            "global_batch": 128,
            "loss": 0.5,
            "lr": 1e-4,
        },
        {"stage": "bench", "step": 1, "world_size": 4, "precision": "bf16", "restyled_R1": 0.9},
    ]


def test_checkpoints_restore_weights_optimizer_and_rng_and_keep_the_newest(tmp_path):
    from lexray.training import make_accelerator

    accelerator = make_accelerator("no", project_dir=str(tmp_path))
    model = Tower()
    opt = build_adamw(param_groups(model, 1e-2, 0.0), 1e-2)
    model, opt = accelerator.prepare(model, opt)
    for step in (1, 2, 3):
        accelerator.backward(model(torch.randn(2, 4)))
        opt.step()
        opt.zero_grad()
        save_checkpoint(accelerator, tmp_path, step, {"step": step}, keep=2)
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == ["step-0000002", "step-0000003"]
    (tmp_path / "checkpoints" / "step-0000009").mkdir()  # interrupted while saving: no trainer state
    latest = latest_checkpoint(tmp_path)
    assert latest is not None and latest.name == "step-0000003"
    weights = {k: v.clone() for k, v in model.state_dict().items()}
    draw = torch.rand(3)
    with torch.no_grad():
        model.proj.weight.zero_()
    assert load_checkpoint(accelerator, latest) == {"step": 3}
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in weights.items())
    assert torch.equal(torch.rand(3), draw)  # the RNG is back where it was when the checkpoint was saved


def test_rank_slice_splits_a_global_batch_in_order():
    assert [rank_slice(list(range(6)), r, 3) for r in range(3)] == [[0, 1], [2, 3], [4, 5]]
    with pytest.raises(ValueError, match="does not split"):
        rank_slice(list(range(5)), 0, 2)


def test_make_accelerator_hands_the_timeout_to_the_process_group():
    from datetime import timedelta

    from lexray.training import make_accelerator

    assert make_accelerator("no").init_handler is None  # the backend's default
    handler = make_accelerator("no", timeout=timedelta(hours=6)).init_handler
    assert handler.to_kwargs() == {"timeout": timedelta(hours=6)}


def test_a_launched_command_waits_long_for_the_main_process(monkeypatch):
    import lexray.training.distributed as distributed
    from lexray.training.sharded import LAUNCH_TIMEOUT, ShardedEmbedder, shard_across_launch

    asked: list[dict] = []

    class Main:
        is_main_process = True

    def fake_make_accelerator(**kwargs):
        asked.append(kwargs)
        return Main()

    monkeypatch.setattr(distributed, "make_accelerator", fake_make_accelerator)
    monkeypatch.setenv("WORLD_SIZE", "2")
    model, writes = shard_across_launch("model")
    assert isinstance(model, ShardedEmbedder) and writes
    assert asked == [{"timeout": LAUNCH_TIMEOUT}] and LAUNCH_TIMEOUT.total_seconds() > 600
