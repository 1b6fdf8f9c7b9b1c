"""Quality of the report encoder against the number of SmolLM2 blocks kept, at equal steps and equal compute.

Each row is one ``lexray text train`` run of the recipe (default ``configs/text/smollm2-iu.yaml``) with
``encoder.num_layers`` set to the row's depth, in a fresh process, scored on the bench after its last
step. Two protocols:

* ``steps``: every depth trains ``--steps`` contrastive steps;
* ``compute``: every depth trains for about ``--budget-s`` seconds of optimiser steps; its step count
  is the budget divided by its step time, measured in the ``steps`` protocol (or, for a depth not run
  there, extrapolated linearly in depth from the measured ones). The table shows the seconds each run
  really trained.

``--frozen-below`` adds rows whose LoRA adapters sit only in the last block (``lora.last_n_layers: 1``):
the lower blocks still run forward, but backward stops at the kept top block.

    python benchmarks/text_depth.py --variants runs/text-smollm2-iu/variants --depths 1,2,4,8,30 \\
        --steps 100 --budget-s 300 --set contrastive.batch_size=16 --set contrastive.hard_negatives=2

``--set`` overrides apply to every run (a reduced recipe keeps the deep rows affordable on a CPU).
MNTP is off in every run (``mntp.enabled=false``) unless ``--mntp`` is given.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

COLUMNS = (
    ("shorthand", "shorthand_R@1"),
    ("impression_only", "impression_only_R@1"),
    ("restyled", "restyled_R@1"),
    ("errdisc orig", "errdisc_orig_acc"),
    ("errdisc shorthand", "errdisc_shorthand_acc"),
)


def _peak_rss_gb(pid: int) -> float:
    """VmHWM (peak resident set) of a live process, in GB; 0 when it has already gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / (1 << 20)
    except OSError:
        pass
    return 0.0


def run_one(args: argparse.Namespace, depth: int, steps: int, frozen: bool, out: Path) -> dict[str, Any]:
    """Train one depth in a child process and read its last bench record and step times."""
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    if args.variants:
        shutil.copytree(args.variants, out / "variants")
    overrides = [
        f"output_dir={out}",
        f"threads={args.threads}",
        f"encoder.num_layers={depth}",
        f"contrastive.steps={steps}",
        f"contrastive.warmup_steps={max(1, min(30, steps // 10))}",
        f"eval_bench={args.bench}",
        f"eval_every={steps}",
        "save=adapter",
        *([] if args.mntp else ["mntp.enabled=false"]),
        *(["contrastive.lora.last_n_layers=1"] if frozen else []),
        *args.set,
    ]
    cmd = [sys.executable, "-m", "lexray.cli.main", "text", "train", "--config", args.config]
    for item in overrides:
        cmd += ["--set", item]
    started = time.perf_counter()
    with open(out / "run.log", "w") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
        peak = 0.0
        while proc.poll() is None:
            peak = max(peak, _peak_rss_gb(proc.pid))
            time.sleep(1.0)
    if proc.returncode:
        raise SystemExit(f"depth {depth}: text train exited {proc.returncode}; see {out / 'run.log'}")
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    secs = [r["sec"] for r in records if r.get("stage") == "contrastive" and "sec" in r]
    bench = [r for r in records if r.get("stage") == "bench"][-1]
    step_s = statistics.median(secs[1:] or secs)
    return {
        "depth": depth,
        "lora": "top block" if frozen else "all blocks",
        "steps": steps,
        "s/step": step_s,
        "train s": step_s * steps,
        "wall s": time.perf_counter() - started,
        "peak GB": peak,
        **{name: bench.get(key, float("nan")) for name, key in COLUMNS},
        "errpair": {k: v for k, v in bench.items() if k.startswith("errpair_orig/")},
    }


def _extrapolate(times: dict[int, float], depth: int) -> float:
    """Step time at ``depth`` from a least-squares line through the measured (depth, s/step) points."""
    xs, ys = list(times), list(times.values())
    if len(xs) == 1:
        return ys[0] * depth / xs[0]
    mx, my = statistics.fmean(xs), statistics.fmean(ys)
    slope = sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / sum((x - mx) ** 2 for x in xs)
    return max(1e-3, my + slope * (depth - mx))


def _table(rows: list[dict[str, Any]], protocol: str) -> str:
    head = ["depth", "LoRA", "steps", "s/step", "train s", "peak GB", *(n for n, _ in COLUMNS)]
    lines = [
        f"### {protocol}",
        "",
        "| " + " | ".join(head) + " |",
        "|" + "---|" * len(head),
    ]
    for r in rows:
        cells = [
            str(r["depth"]),
            r["lora"],
            str(r["steps"]),
            f"{r['s/step']:.2f}",
            f"{r['train s']:.0f}",
            f"{r['peak GB']:.2f}",
            *(f"{r[n]:.2f}" for n, _ in COLUMNS),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    types = sorted({k.split("/", 1)[1] for r in rows for k in r["errpair"]})
    if types:
        lines += ["", "Per error type (original anchor, correct rewrite above the error):", ""]
        lines += ["| depth | LoRA | " + " | ".join(types) + " |", "|" + "---|" * (len(types) + 2)]
        for r in rows:
            vals = [f"{r['errpair'].get(f'errpair_orig/{t}', float('nan')):.2f}" for t in types]
            lines.append(f"| {r['depth']} | {r['lora']} | " + " | ".join(vals) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--config", default="configs/text/smollm2-iu.yaml")
    parser.add_argument("--bench", default="../shared/bench/textbench-dev.jsonl")
    parser.add_argument("--variants", help="a variant cache of the same recipe to copy into each run")
    parser.add_argument("--depths", default="1,2,4,8,30")
    parser.add_argument("--steps", type=int, default=100, help="steps of the equal-steps protocol")
    parser.add_argument("--steps-depths", default="", help="depths of the equal-steps protocol (default all)")
    parser.add_argument("--budget-s", type=float, default=0.0, help="seconds of the equal-compute protocol")
    parser.add_argument("--frozen-below", default="", help="depths also run with LoRA on the top block only")
    parser.add_argument("--mntp", action="store_true", help="keep the recipe's MNTP stage")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--set", action="append", default=[], help="KEY=VALUE override for every run")
    parser.add_argument("--out", default="/tmp/lexray-text-depth")
    args = parser.parse_args()

    depths = [int(d) for d in args.depths.split(",")]
    step_depths = [int(d) for d in args.steps_depths.split(",")] if args.steps_depths else depths
    frozen = [int(d) for d in args.frozen_below.split(",")] if args.frozen_below else []
    out = Path(args.out)
    results: dict[str, list[dict[str, Any]]] = {"steps": [], "compute": []}
    for depth in step_depths:
        for top_only in [False] + ([True] if depth in frozen else []):
            tag = f"steps-d{depth}{'-top' if top_only else ''}"
            results["steps"].append(run_one(args, depth, args.steps, top_only, out / tag))
            print(_table(results["steps"], "equal steps"), flush=True)
    if args.budget_s:
        for top_only in [False] + ([True] if frozen else []):
            measured = {
                r["depth"]: r["s/step"] for r in results["steps"] if (r["lora"] == "top block") == top_only
            }
            for depth in depths if not top_only else frozen:
                step_s = measured.get(depth) or _extrapolate(measured, depth)
                steps = max(1, round(args.budget_s / step_s))
                tag = f"compute-d{depth}{'-top' if top_only else ''}"
                results["compute"].append(run_one(args, depth, steps, top_only, out / tag))
                print(_table(results["compute"], "equal compute"), flush=True)
    (out / "results.json").write_text(json.dumps(results, indent=1))
    print(_table(results["steps"], "equal steps"))
    if results["compute"]:
        print()
        print(_table(results["compute"], "equal compute"))


if __name__ == "__main__":
    main()
