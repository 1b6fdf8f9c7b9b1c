"""Step time and peak RSS of one-block SmolLM2 bf16 training steps under lexray's CPU memory settings.

Each setting runs in a fresh process (the kernel caches read their capacity once): forward + backward of
SmolLM2-135M's first block, bf16, 32 texts of a random padded length per step (as text batches vary), on
the idle machine. Settings: `default` (oneDNN's 1,024-entry caches, glibc's own mmap threshold),
`caches` (what `text train` applies: 64-entry caches), `caches+mmap` (also the opt-in 1 MiB threshold).

    python benchmarks/text_step_memory_settings.py [--steps 100]
"""

from __future__ import annotations

import argparse
import subprocess
import sys

_STEP = r"""
import random, resource, sys, time
from lexray.training.memory import MMAP_THRESHOLD, configure_cpu_memory
if sys.argv[1] != "default":
    configure_cpu_memory(mmap_threshold=MMAP_THRESHOLD if sys.argv[1] == "caches+mmap" else None)
from lexray.text import TextEncoder
enc = TextEncoder.from_pretrained("smollm2-135m", num_layers=1, dtype="bfloat16", final_norm=False)
enc.train()
rng = random.Random(0)
words = "the heart size is normal lungs are clear no pleural effusion or pneumothorax mild cardiomegaly".split()
times = []
for step in range(int(sys.argv[2])):
    n = rng.randint(20, 120)
    texts = [" ".join(rng.choice(words) for _ in range(rng.randint(n // 2, n))) for _ in range(32)]
    t0 = time.perf_counter()
    enc(enc.tokenize(texts)).float().pow(2).mean().backward()
    times.append(time.perf_counter() - t0)
first, last = sorted(times[:10]), sorted(times[-10:])
rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(f"{first[5]:.3f} {last[5]:.3f} {rss:.0f}")
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=100)
    args = parser.parse_args()
    print(f"| setting | median s/step, first 10 | median s/step, last 10 | peak RSS MiB ({args.steps} steps) |")
    print("|---|---|---|---|")
    for setting in ("default", "caches", "caches+mmap"):
        out = subprocess.run(
            [sys.executable, "-c", _STEP, setting, str(args.steps)], capture_output=True, text=True, check=True
        ).stdout.split()
        print(f"| {setting} | {out[-3]} | {out[-2]} | {out[-1]} |")


if __name__ == "__main__":
    main()
