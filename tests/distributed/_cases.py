"""One training step of each loss, run either in one process or as one of several (gloo on CPU).

The same functions serve both sides of the distributed tests: the test process calls them with a
one-process accelerator, and ``python -m torch.distributed.run --nproc_per_node 2 _cases.py`` runs them
in two processes, each taking its slice of the same global batch; rank 0 saves what it got.
"""

from __future__ import annotations

import math
import random
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from lexray.clip.losses import LOSSES
from lexray.text.contrastive import InfoNCELoss
from lexray.text.pairs import ContrastiveExample, stable_hash
from lexray.training import build_adamw, lr_schedule, optimizer_step, param_groups, rank_slice

# A global batch of 8: anchors 1 and 6 share a normalised text (one per process with 2 processes), so
# only false-negative masking over the global batch keeps them apart; hard negatives per anchor vary
# (the two processes hold 3 and 5), so the gather must handle unequal counts.
TEXTS = [
    ("lungs are clear .", "the lungs are clear", ("lungs are not clear",)),
    ("mild cardiomegaly", "heart size is mild cardiomegaly", ()),
    ("small left pleural effusion", "left effusion small", ("large right pleural effusion",)),
    ("no pneumothorax", "pneumothorax no", ("pneumothorax",)),
    ("right lower lobe opacity", "opacity right lower lobe", ("left lower lobe opacity", "no opacity")),
    ("pulmonary edema", "moderate pulmonary edema", ("no pulmonary edema",)),
    ("mild cardiomegaly .", "cardiomegaly mild", ("severe cardiomegaly",)),
    ("left lower lobe atelectasis", "atelectasis left lower lobe", ("right lower lobe atelectasis",)),
]
TEXT_KEY = {1: "mild cardiomegaly", 6: "mild cardiomegaly"}


def text_examples() -> list[ContrastiveExample]:
    """The global contrastive batch (study key, text key, no label key)."""
    out = []
    for i, (a, p, negs) in enumerate(TEXTS):
        text_key = stable_hash("text:" + TEXT_KEY.get(i, a))
        out.append(ContrastiveExample(a, p, negs, (stable_hash(f"study:{i}"), text_key, -1), "variant"))
    return out


def _trainable(module: nn.Module) -> dict[str, torch.Tensor]:
    return {n: p.detach().clone() for n, p in module.named_parameters() if p.requires_grad}


def _grads(module: nn.Module) -> dict[str, torch.Tensor]:
    """Gradients as the optimiser sees them (after DDP's all-reduce)."""
    return {n: p.grad.detach().clone() for n, p in module.named_parameters() if p.grad is not None}


def text_step(accelerator: Any, tiny_llama_dir: str, chunk: int) -> dict[str, Any]:
    """One contrastive step (symmetric InfoNCE, hard negatives, masking) of this process's slice."""
    from lexray.text import TextEncoder
    from lexray.text.config import ContrastiveConfig
    from lexray.text.train import contrastive_step

    torch.manual_seed(0)
    enc = TextEncoder.from_pretrained(
        tiny_llama_dir, pooling="latent", lora={"enabled": True, "dropout": 0.0}
    )
    with torch.no_grad():  # LoRA B starts at zero: give every adapter a gradient path to A
        for p in enc.parameters():
            if p.requires_grad and not p.any():
                p.normal_(std=0.05)
    optimizer = build_adamw(param_groups(enc, 1e-2, 0.0), 1e-2)
    scheduler = lr_schedule(optimizer, 0, 1)
    model, optimizer = accelerator.prepare(enc, optimizer)
    config = ContrastiveConfig(scale=10.0, symmetric=True, hard_negatives=2, chunk_size=chunk)
    batch = rank_slice(text_examples(), accelerator.process_index, accelerator.num_processes)
    terms = contrastive_step(model, enc, batch, InfoNCELoss(10.0, True), config, accelerator)
    loss = float(sum(accelerator.reduce(v, "mean") for v in terms.values()))
    grads = _grads(enc)
    optimizer_step(accelerator, model, optimizer, scheduler, grad_clip=1e9)
    accelerator.free_memory()
    return {"loss": loss, "grads": grads, "weights": _trainable(enc)}


class ToyDualEncoder(nn.Module):
    """Two linear towers and a learnt temperature/bias: the CLIP/SigLIP step without the big towers."""

    def __init__(self) -> None:
        super().__init__()
        self.image = nn.Linear(6, 4)
        self.text = nn.Linear(5, 4)
        self.logit_scale = nn.Parameter(torch.tensor(math.log(10.0)))
        self.logit_bias = nn.Parameter(torch.tensor(-2.0))

    def forward(self, pixels: torch.Tensor, tokens: torch.Tensor) -> dict[str, torch.Tensor]:
        """Normalised (B, 4) features of both towers, the scale and the bias."""
        return {
            "image": F.normalize(self.image(pixels), dim=-1),
            "text": F.normalize(self.text(tokens), dim=-1),
            "logit_scale": self.logit_scale.exp(),
            "logit_bias": self.logit_bias,
        }


def clip_step(accelerator: Any, loss_name: str) -> dict[str, Any]:
    """One CLIP or SigLIP step of this process's slice of a global batch of 8 pairs."""
    torch.manual_seed(0)
    model = ToyDualEncoder()
    model.logit_bias.requires_grad_(loss_name == "siglip")  # CLIP has no bias (DDP rejects unused weights)
    pixels, tokens = torch.randn(8, 6), torch.randn(8, 5)
    optimizer = build_adamw(param_groups(model, 1e-2, 0.05), 1e-2)
    scheduler = lr_schedule(optimizer, 0, 1)
    wrapped, optimizer = accelerator.prepare(model, optimizer)
    rank, world = accelerator.process_index, accelerator.num_processes
    share = rank_slice(list(range(8)), rank, world)
    out = wrapped(pixels[share], tokens[share])
    terms = LOSSES[loss_name]()(out["image"], out["text"], out["logit_scale"], out["logit_bias"])
    accelerator.backward(sum(terms.values()))
    loss = float(sum(accelerator.reduce(v.detach(), "mean") for v in terms.values()))
    grads = _grads(model)
    optimizer_step(accelerator, wrapped, optimizer, scheduler, grad_clip=1e9)
    accelerator.free_memory()
    return {"loss": loss, "grads": grads, "weights": _trainable(model)}


def sampler_batches(rank: int, world: int) -> dict[str, list[list[str]]]:
    """This process's slices of the first epoch of both stages' batch samplers (as texts)."""
    from lexray.clip.data import BatchPlanner, Pair, TextAugmentConfig
    from lexray.data.study import Study
    from lexray.text.config import ContrastiveConfig
    from lexray.text.train import VariantPool, contrastive_epoch

    reports = [f"report {i % 5} ." for i in range(20)]  # every text four times
    studies = [Study(f"S{i}", f"P{i}", "synthetic", "train", findings=t) for i, t in enumerate(reports)]
    pool = VariantPool({s.study_id: [f"variant of {s.findings}"] for s in studies}, {}, {})
    config = ContrastiveConfig(batch_size=2, pairs_per_study=1, findings_impression=False, relayout=False)
    text = [rank_slice(b, rank, world) for b in contrastive_epoch(studies, pool, config, 0, 0, world)]
    pairs = [Pair(f"s{i}", "src", t, "", ("x.png",)) for i, t in enumerate(reports)]
    planner = BatchPlanner(pairs, [1.0] * len(pairs), 2 * world, TextAugmentConfig(), seed=0)
    clip = [rank_slice(b, rank, world) for b in planner.batches(0)]
    return {"text": [[e.anchor for e in b] for b in text], "clip": [[d.text for d in b] for b in clip]}


class FakeEmbedder:
    """Row i is a function of item i; an item "bad" cannot be embedded."""

    def embed_texts(self, texts: list[str], batch_size: int) -> np.ndarray:
        if "bad" in texts:
            raise ValueError("cannot read 'bad'")
        return np.array([[len(t), sum(map(ord, t)) % 97, 1.0] for t in texts], dtype=np.float32)

    embed_images = embed_texts


REPORT_ITEMS = [f"report {'x' * i}" for i in range(7)]


def sharded_embedder(rank: int | None = None, world: int | None = None) -> dict[str, Any]:
    """Both calls over 7 items (uneven shares), and the error every process sees for a bad item."""
    from lexray.training import ShardedEmbedder

    model = ShardedEmbedder(FakeEmbedder(), rank, world)
    out: dict[str, Any] = {
        "texts": model.embed_texts(REPORT_ITEMS, 2),
        "images": model.embed_images(REPORT_ITEMS[:1], 2),
    }
    try:
        model.embed_texts(["ok", "bad", "ok too"], 2)
    except ValueError as exc:
        out["error"] = str(exc)
    return out


def led_by_main(rank: int | None = None, world: int | None = None) -> dict[str, Any]:
    """``ShardedEmbedder.lead``: who computed each of 5 tasks, and the error a task or the plan raised."""
    from lexray.training import ShardedEmbedder

    crew = ShardedEmbedder(FakeEmbedder(), rank, world)
    out: dict[str, Any] = {
        "result": crew.lead(lambda tasks: list(tasks(range(5))), lambda t: (t * t, crew.rank))
    }

    def task_fails(t: int) -> int:
        if t == 3:  # with 2 processes, process 1's task of the second turn
            raise ValueError(f"task {t} cannot run")
        return t

    def plan_fails(tasks: Any) -> None:
        raise ValueError("no usable study")  # decided on the main process before any task

    for name, plan, work in [
        ("task_error", lambda tasks: list(tasks(range(5))), task_fails),
        ("plan_error", plan_fails, task_fails),
    ]:
        try:
            crew.lead(plan, work)
        except ValueError as exc:
            out[name] = str(exc)
    return out


def main(tiny_llama_dir: str, out: str) -> None:
    """Run every case as one of the launched processes; rank 0 saves the results."""
    import torch.distributed as dist

    from lexray.training import make_accelerator

    random.seed(0)
    accelerator = make_accelerator("no", broadcast_buffers=False)
    assert accelerator.num_processes == 2, accelerator.state
    results: dict[str, Any] = {
        "text": text_step(accelerator, tiny_llama_dir, 0),
        "gradcache": text_step(accelerator, tiny_llama_dir, 3),
        "clip": clip_step(accelerator, "clip"),
        "siglip": clip_step(accelerator, "siglip"),
    }
    embedder = sharded_embedder()  # every process must see the same error; rank 0's is saved below
    errors: list[Any] = [None] * accelerator.num_processes
    dist.all_gather_object(errors, embedder.get("error"))
    results["embedder"], results["embedder_errors"] = embedder, errors
    shards: list[Any] = [None] * accelerator.num_processes
    dist.all_gather_object(shards, sampler_batches(accelerator.process_index, accelerator.num_processes))
    results["sampler"] = shards
    shards = [None] * accelerator.num_processes
    dist.all_gather_object(shards, led_by_main())
    results["led"] = shards
    if accelerator.is_main_process:
        torch.save(results, Path(out) / "results.pt")
    accelerator.wait_for_everyone()
    dist.destroy_process_group()


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
