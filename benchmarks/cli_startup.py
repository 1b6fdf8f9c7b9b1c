"""Start-up time of the `lexray` command: lazy command loading vs an earlier lexray that loaded every command.

The baseline is the same commands run from another lexray source tree, e.g. the last commit before lazy
loading (`git archive 7dafa0d src | tar -x -C /tmp/lexray-old`), which imported every command module (and
so torch, spaCy, FAISS, pandas, transformers) before printing anything. Each row is the median wall time
of fresh processes, and the median of their peak resident memory.

    python benchmarks/cli_startup.py --baseline-src /tmp/lexray-old/src [--repeat 5]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

from lexray.cli.main import _COMMANDS


def _run(argv: list[str], repeat: int, env: dict[str, str] | None = None) -> tuple[float, float]:
    """Median wall seconds and the median of each process's own peak RSS (MiB)."""
    times, peaks = [], []
    for _ in range(repeat):
        start = time.perf_counter()
        proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
        _, status, usage = os.wait4(proc.pid, 0)  # this child's own rusage, not the running maximum
        times.append(time.perf_counter() - start)
        if os.waitstatus_to_exitcode(status) != 0:
            raise SystemExit(f"{' '.join(argv)} failed")
        peaks.append(usage.ru_maxrss / 1024)  # KiB on Linux
    return statistics.median(times), statistics.median(peaks)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--baseline-src", type=Path, required=True, help="src/ of the lexray to compare with")
    args = parser.parse_args()
    lexray = [sys.executable, "-m", "lexray.cli.main"]
    old_env = {**os.environ, "PYTHONPATH": str(args.baseline_src.resolve())}
    print(f"| command | lexray now: median of {args.repeat} (s) | peak RSS (MiB) | baseline (s) | peak RSS (MiB) |")
    print("|---|---|---|---|---|")
    for label, tail in (
        ("lexray version", ["version"]),
        ("lexray --help", ["--help"]),
        *((f"lexray {name} --help", [name, "--help"]) for name in _COMMANDS),
    ):
        seconds, rss = _run([*lexray, *tail], args.repeat)
        try:
            old = "| {:.2f} | {:.0f} |".format(*_run([*lexray, *tail], args.repeat, old_env))
        except SystemExit:  # a command the baseline did not have
            old = "| - | - |"
        print(f"| {label} | {seconds:.2f} | {rss:.0f} {old}")


if __name__ == "__main__":
    main()
