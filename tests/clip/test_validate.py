"""Validation retrieval metrics against a naive sort-based oracle; sharded validation equals one process."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from lexray.clip.validate import embed_pairs, retrieval_metrics


def naive_hit_at_k(q: np.ndarray, k: np.ndarray, groups: np.ndarray, kk: int) -> float:
    """% of queries with a same-group key among the kk highest scores (ties are impossible here)."""
    hits = 0
    for i in range(len(q)):
        order = np.argsort(-(k @ q[i]))[:kk]
        hits += any(groups[j] == groups[i] for j in order)
    return 100.0 * hits / len(q)


@pytest.mark.parametrize("seed", [0, 1])
def test_metrics_match_the_naive_oracle(seed: int) -> None:
    rng = np.random.default_rng(seed)
    img = rng.standard_normal((30, 8)).astype(np.float32)
    txt = (img + rng.standard_normal((30, 8)).astype(np.float32)).astype(np.float32)
    img /= np.linalg.norm(img, axis=1, keepdims=True)
    txt /= np.linalg.norm(txt, axis=1, keepdims=True)
    groups = [f"g{i % 7}" for i in range(30)]
    m = retrieval_metrics(img, txt, groups, ks=(1, 5))
    exact = np.arange(30)
    g = np.array([i % 7 for i in range(30)])
    for kk in (1, 5):
        assert m[f"exact/i2t/R@{kk}"] == pytest.approx(naive_hit_at_k(img, txt, exact, kk))
        assert m[f"exact/t2i/R@{kk}"] == pytest.approx(naive_hit_at_k(txt, img, exact, kk))
        assert m[f"group/i2t/R@{kk}"] == pytest.approx(naive_hit_at_k(img, txt, g, kk))
        assert m[f"group/i2t/R@{kk}"] >= m[f"exact/i2t/R@{kk}"]
    assert m["exact/rsum"] == pytest.approx(
        sum(m[f"exact/{d}/R@{kk}"] for d in ("i2t", "t2i") for kk in (1, 5))
    )


def test_perfect_embeddings_score_100() -> None:
    emb = np.eye(5, dtype=np.float32)
    m = retrieval_metrics(emb, emb, None, ks=(1,))
    assert m["exact/i2t/R@1"] == m["exact/t2i/R@1"] == 100.0 and "group/i2t/R@1" not in m


# Launched as 2 processes: every one embeds its share of the same 7 pairs (4 + 3); rank 0 saves the rows.
_SHARDED = r"""
import sys
import numpy as np
import torch.distributed as dist
from lexray.clip import DualEncoder
from lexray.clip.data import SourceConfig, load_pairs
from lexray.clip.validate import embed_pairs
from lexray.data.images import load_radiograph

dist.init_process_group("gloo")
model = DualEncoder.from_pretrained(sys.argv[1])
pairs = load_pairs(SourceConfig(manifest=sys.argv[2], split="val"))[0][:7]
pre = model.image_tower.preprocess
loaded = []
def load(p):
    loaded.append(p.study_id)
    return pre(load_radiograph(p.images[0]).pixels)
images, texts = embed_pairs(
    model, pairs, load, [p.text("plain") for p in pairs], 2, dist.get_rank(), dist.get_world_size()
)
shares = [None, None]
dist.all_gather_object(shares, len(loaded))
if dist.get_rank() == 0:
    np.savez(sys.argv[3], images=images, texts=texts, shares=np.array(shares))
dist.destroy_process_group()
"""


@pytest.mark.distributed
def test_validation_split_across_two_processes_equals_one_process(
    manifest: Path, tiny_text_dir: Path, tmp_path: Path
) -> None:
    from lexray.clip import DualEncoder, DualEncoderConfig
    from lexray.clip.data import SourceConfig, load_pairs
    from lexray.config import load_config
    from lexray.data.images import load_radiograph

    torch.manual_seed(0)
    config = {
        "vision": {"kind": "small_cnn", "image_size": 32, "cnn_widths": [8, 16, 16], "cnn_out_dim": 24},
        "text": {"encoder": str(tiny_text_dir), "mode": "lora", "max_length": 32},
        "embed_dim": 16,
    }
    model = DualEncoder.from_config(load_config(DualEncoderConfig, base=config))
    model.save_pretrained(tmp_path / "model")
    model = DualEncoder.from_pretrained(tmp_path / "model")
    pairs = load_pairs(SourceConfig(manifest=str(manifest), split="val"))[0][:7]
    pre = model.image_tower.preprocess
    one = embed_pairs(
        model, pairs, lambda p: pre(load_radiograph(p.images[0]).pixels), [p.text("plain") for p in pairs], 2
    )

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    script = tmp_path / "sharded.py"
    script.write_text(_SHARDED)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2"]
    cmd += ["--master_addr", "127.0.0.1", "--master_port", str(port)]
    cmd += [str(script), str(tmp_path / "model"), str(manifest), str(tmp_path / "two.npz")]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-6000:]
    two = np.load(tmp_path / "two.npz")

    assert two["shares"].tolist() == [4, 3]  # each process read only its own images
    assert one[0].shape == (7, 16) and len({row.tobytes() for row in one[0]}) == 7
    np.testing.assert_allclose(two["images"], one[0], rtol=0, atol=1e-5)
    np.testing.assert_allclose(two["texts"], one[1], rtol=0, atol=1e-5)
    assert retrieval_metrics(two["images"], two["texts"]) == retrieval_metrics(*one)
