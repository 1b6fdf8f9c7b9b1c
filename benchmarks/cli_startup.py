"""Start-up time of the `lexray` command: lazy command loading vs importing every command module.

The baseline is what `lexray --help` did before commands were loaded lazily: import every module under
lexray.cli (and so torch, spaCy, FAISS, pandas, transformers) before printing anything. Each row is the
median wall time of fresh processes, and the median of their peak resident memory.

    python benchmarks/cli_startup.py [--repeat 5]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time

from lexray.cli.main import _COMMANDS

EAGER = "import importlib\n" + "".join(
    f"importlib.import_module('lexray.cli.{m}')\n" for m in dict.fromkeys(e.module for e in _COMMANDS.values())
) + "importlib.import_module('lexray.cli.phantom')\n"


def _run(argv: list[str], repeat: int) -> tuple[float, float]:
    """Median wall seconds and the median of each process's own peak RSS (MiB)."""
    times, peaks = [], []
    for _ in range(repeat):
        start = time.perf_counter()
        proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        _, status, usage = os.wait4(proc.pid, 0)  # this child's own rusage, not the running maximum
        times.append(time.perf_counter() - start)
        if os.waitstatus_to_exitcode(status) != 0:
            raise SystemExit(f"{' '.join(argv)} failed")
        peaks.append(usage.ru_maxrss / 1024)  # KiB on Linux
    return statistics.median(times), statistics.median(peaks)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    lexray = [sys.executable, "-m", "lexray.cli.main"]
    rows = [
        ("lexray version", [*lexray, "version"]),
        ("lexray --help", [*lexray, "--help"]),
        *((f"lexray {name} --help", [*lexray, name, "--help"]) for name in _COMMANDS),
        ("baseline: import every command module", [sys.executable, "-c", EAGER]),
    ]
    print(f"| command | median of {args.repeat} (s) | peak RSS (MiB) |")
    print("|---|---|---|")
    for label, argv in rows:
        seconds, rss = _run(argv, args.repeat)
        print(f"| {label} | {seconds:.2f} | {rss:.0f} |")


if __name__ == "__main__":
    main()
