"""Finding labeler throughput (reports/s) on real Open-i reports.

Compares, on the same reports in the same run:

* baseline: one ``Labeler.__call__`` per report (no batching);
* ``Labeler.pipe`` with spaCy batching (``--batch-size``), in this process;
* ``Labeler.pipe(n_process=N)``: worker processes, each with its own pipeline (start-up included).

    python benchmarks/labeler_speed.py [--repeat 3] [--workers 2]

Besides wall-clock reports/s, the table gives reports per CPU-second (this process plus its finished
workers), which stays meaningful on a machine shared with other jobs.

The reports are the 3,955 Open-i reports (full text with section headers), repeated ``--repeat``
times so that process start-up is amortised as it would be on a large corpus.
"""

from __future__ import annotations

import argparse
import os
import resource
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

from lexray.data.sources.openi import load_openi
from lexray.findings import Labeler

REPO = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--openi", type=Path, default=REPO.parent / "shared" / "data" / "openi")
    parser.add_argument("--repeat", type=int, default=3, help="passes over the 3,955 reports")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--workers", type=int, default=2, help="worker processes for the multi-process row")
    args = parser.parse_args()
    console = Console()

    reports = [s.report for s in load_openi(args.openi / "NLMCXR_reports.tgz").studies]
    texts = reports * args.repeat
    chars = sum(map(len, texts)) / len(texts)

    start = time.perf_counter()
    labeler = Labeler()
    build = time.perf_counter() - start

    def cpu() -> float:
        own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
        return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime

    rows = []
    start, cpu0 = time.perf_counter(), cpu()
    for text in reports:  # one pass is enough to measure the unbatched baseline
        labeler(text)
    rows.append(("baseline: __call__ per report", 1, len(reports), time.perf_counter() - start, cpu() - cpu0))

    start, cpu0 = time.perf_counter(), cpu()
    serial = list(labeler.pipe(texts, batch_size=args.batch_size, n_process=1))
    rows.append(
        (f"pipe(batch_size={args.batch_size})", 1, len(texts), time.perf_counter() - start, cpu() - cpu0)
    )

    start, cpu0 = time.perf_counter(), cpu()
    parallel = list(labeler.pipe(texts, batch_size=args.batch_size, n_process=args.workers))
    rows.append(
        (
            f"pipe(n_process={args.workers})",
            args.workers,
            len(texts),
            time.perf_counter() - start,
            cpu() - cpu0,
        )
    )
    if parallel != serial:
        raise SystemExit("worker processes gave different labels from the in-process pipe")

    table = Table(
        title=f"Labeler throughput, {len(texts)} Open-i reports ({chars:.0f} chars each on average)"
    )
    cols = ("method", "processes", "reports", "seconds", "reports/s", "vs baseline", "reports/CPU-s")
    for col in cols:
        table.add_column(col, justify="left" if col == "method" else "right")
    base = rows[0][2] / rows[0][3]
    for name, procs, n, sec, cpu_s in rows:
        table.add_row(
            name,
            str(procs),
            str(n),
            f"{sec:.1f}",
            f"{n / sec:.0f}",
            f"{n / sec / base:.2f}x",
            f"{n / cpu_s:.0f}",
        )
    console.print(table)
    load = os.getloadavg()[0]
    console.print(
        f"pipeline build: {build:.1f} s; CPUs visible: {os.cpu_count()}; 1-min load average: {load:.1f}"
    )


if __name__ == "__main__":
    main()
