"""Resident memory and step time of a short text-encoder run, with and without lexray's CPU memory settings.

Runs the recipe (default ``configs/text/smollm2-iu.yaml``) twice with few steps, each in a fresh process:
``before`` with :func:`lexray.training.memory.configure_cpu_memory` switched off (torch's and glibc's
defaults), ``after`` as lexray runs now. Each samples after every optimiser step its resident set
(VmRSS, VmHWM) and glibc's heap (``mallinfo2``: bytes in use, free but kept, mapped), then the parent
prints one table and whether both runs saved identical weights.

    python benchmarks/text_train_memory.py --variants runs/text-smollm2-iu/variants
    python benchmarks/text_train_memory.py --mntp-steps 20 --contrastive-steps 300 --threads 2

``--variants`` copies a variant cache of the same recipe into each run (else each run makes its own, about
a minute). The bench is not scored (``eval_bench`` off): it is the training loop that is measured.
"""

from __future__ import annotations

import argparse
import ctypes
import hashlib
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

MODES = ("before", "after")


class _MallInfo2(ctypes.Structure):
    _fields_ = [
        (name, ctypes.c_size_t)
        for name in (
            "arena",
            "ordblks",
            "smblks",
            "hblks",
            "hblkhd",
            "usmblks",
            "fsmblks",
            "uordblks",
            "fordblks",
            "keepcost",
        )
    ]


def _sample() -> dict[str, float]:
    """Resident set and glibc heap figures of this process, in MB."""
    status = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            status[key] = int(value.split()[0]) / 1024
    libc = ctypes.CDLL("libc.so.6")
    libc.mallinfo2.restype = _MallInfo2
    info = libc.mallinfo2()
    mb = 1 << 20
    return {
        "rss": round(status["VmRSS"]),
        "hwm": round(status["VmHWM"]),
        "heap_used": round(info.uordblks / mb),  # live malloc'd bytes in the heap arenas
        "heap_free": round(info.fordblks / mb),  # freed but kept by malloc: fragmentation
        "mapped": round(info.hblkhd / mb),  # live blocks mmapped on their own
    }


def _weights_digest(out: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(out.rglob("*.safetensors")):
        if "checkpoints" not in path.parts:
            digest.update(path.read_bytes())
    return digest.hexdigest()


def child(mode: str, out: Path, overrides: list[str]) -> None:
    """One run in this process; writes ``<out>/memory.json``."""
    import lexray.text.train as text_train
    import lexray.text.train.loops as text_loops
    from lexray.config import load_config
    from lexray.text.config import TextTrainConfig

    if mode == "before":
        text_train.configure_cpu_memory = lambda *a, **k: {}
        text_train.release_free_memory = lambda: False
    steps: list[dict[str, Any]] = []
    step_fn = text_loops.optimizer_step
    last = [time.perf_counter()]

    def timed_step(accelerator: Any, model: Any, *args: Any, **kwargs: Any) -> float:
        norm = step_fn(accelerator, model, *args, **kwargs)
        now = time.perf_counter()
        steps.append({"sec": now - last[0], **_sample()})
        last[0] = now
        return norm

    text_loops.optimizer_step = timed_step  # the loops take their optimiser step from there
    config = load_config(TextTrainConfig, overrides[0], [*overrides[1:], f"output_dir={out}"])
    started = time.perf_counter()
    text_train.train(config)
    (out / "memory.json").write_text(
        json.dumps(
            {
                "mode": mode,
                "mntp_steps": config.mntp.steps if config.mntp.enabled else 0,
                "wall": time.perf_counter() - started,
                "steps": steps,
                "end": _sample(),
                "weights": _weights_digest(out),
            }
        )
    )


def _summary(result: dict[str, Any], window: int) -> dict[str, Any]:
    mntp = result["mntp_steps"]
    # The first contrastive step also loads the variants and labels the studies: not a step time.
    contrastive = result["steps"][mntp + 1 :]
    early = contrastive[:window]
    late = contrastive[-window:]
    return {
        "peak RSS GB": max(s["hwm"] for s in result["steps"] + [result["end"]]) / 1024,
        "end RSS GB": result["end"]["rss"] / 1024,
        "heap used GB": result["end"]["heap_used"] / 1024,
        "heap free GB": result["end"]["heap_free"] / 1024,
        "early s/step": sum(s["sec"] for s in early) / max(1, len(early)),
        "late s/step": sum(s["sec"] for s in late) / max(1, len(late)),
        "wall s": result["wall"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--config", default="configs/text/smollm2-iu.yaml")
    parser.add_argument("--mntp-steps", type=int, default=20)
    parser.add_argument("--contrastive-steps", type=int, default=60)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", default="/tmp/lexray-text-train-memory")
    parser.add_argument("--variants", help="a variant cache of the same recipe to copy into each run")
    parser.add_argument("--modes", nargs="+", choices=MODES, default=list(MODES))
    parser.add_argument("--window", type=int, default=5, help="steps averaged for early and late step time")
    parser.add_argument(
        "--parallel", action="store_true", help="run the modes at the same time (1 thread each)"
    )
    parser.add_argument("--set", action="append", default=[], help="extra recipe override a.b=c")
    parser.add_argument("--child", choices=MODES, help=argparse.SUPPRESS)
    args = parser.parse_args()
    overrides = [
        args.config,
        f"mntp.steps={args.mntp_steps}",
        f"contrastive.steps={args.contrastive_steps}",
        f"threads={args.threads}",
        'eval_bench=""',
        "save_every=0",
        *args.set,
    ]
    root = Path(args.out)
    if args.child:
        child(args.child, root / args.child, overrides)
        return
    results, jobs = {}, {}
    for mode in args.modes:
        out = root / mode
        shutil.rmtree(out, ignore_errors=True)
        out.mkdir(parents=True)
        if args.variants:
            shutil.copytree(args.variants, out / "variants")
        command = [
            sys.executable,
            __file__,
            "--child",
            mode,
            "--out",
            str(root),
            "--config",
            args.config,
            "--mntp-steps",
            str(args.mntp_steps),
            "--contrastive-steps",
            str(args.contrastive_steps),
            "--threads",
            str(args.threads),
            *[f"--set={s}" for s in args.set],
        ]
        jobs[mode] = subprocess.Popen(command, stdout=subprocess.DEVNULL)
        if not args.parallel:
            jobs[mode].wait()
    for mode, job in jobs.items():
        if job.wait():
            raise SystemExit(f"the {mode} run failed (exit {job.returncode})")
        results[mode] = json.loads((root / mode / "memory.json").read_text())
    rows = {mode: _summary(r, args.window) for mode, r in results.items()}
    columns = list(next(iter(rows.values())))
    print(
        f"{args.config}: MNTP {args.mntp_steps} + contrastive {args.contrastive_steps} steps, "
        f"{args.threads} thread(s); step time over the first and last {args.window} contrastive steps"
    )
    print("| run | " + " | ".join(columns) + " |")
    print("|---" * (len(columns) + 1) + "|")
    for mode, row in rows.items():
        cells = (f"{v:.0f}" if k == "wall s" else f"{v:.2f}" for k, v in row.items())
        print(f"| {mode} | " + " | ".join(cells) + " |")
    if len(results) == 2:
        same = results["before"]["weights"] == results["after"]["weights"]
        print("final weights identical:", same)
    print("RSS (MB) every 10 steps:")
    for mode, r in results.items():
        print(f"  {mode}:", " ".join(str(s["rss"]) for s in r["steps"][::10]))


if __name__ == "__main__":
    main()
