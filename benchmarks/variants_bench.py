"""Report-variant generation on real Open-i reports: throughput and acceptance per style and generator.

Compares, on the same R2Gen train reports in the same run:

* ours: the batched path (``make_rule_variants_batch`` + ``make_error_variants_batch`` in chunks, one
  labeler ``pipe`` per chunk and verification round, texts memoised by ``CachedLabeler``);
* baseline: one study at a time with a labeler that labels each text by ``__call__`` (no batching, no
  memo), on the first ``--baseline-studies`` studies.

Then prints the acceptance / rejection table per style and error type, and, with ``--llm N``, the same
for LLM styles from SmolLM2-135M-Instruct run in process (``hf:smollm2-135m``) on N studies.

    python benchmarks/variants_bench.py [--studies 2069] [--baseline-studies 150] [--llm 12]
"""

from __future__ import annotations

import argparse
import time
from collections import Counter
from pathlib import Path

from rich.console import Console
from rich.table import Table

from lexray.data.sources.openi import load_openi
from lexray.findings import Labeler
from lexray.variants import ERROR_TYPES, RULE_STYLES
from lexray.variants.checks import CachedLabeler
from lexray.variants.errors import make_error_variants_batch
from lexray.variants.rules import make_rule_variants_batch

REPO = Path(__file__).resolve().parents[1]


class PerTextLabeler:
    """Baseline labeler: ``pipe`` labels each text with its own ``__call__`` (no spaCy batching)."""

    def __init__(self, labeler: Labeler) -> None:
        self.labeler = labeler

    def pipe(self, texts):
        return [self.labeler(t) for t in texts]


def _ours(studies, labeler, chunk: int):
    cached = CachedLabeler(labeler)
    records = []
    for i in range(0, len(studies), chunk):
        part = studies[i : i + chunk]
        records += make_rule_variants_batch(part, RULE_STYLES, 0, cached)
        records += make_error_variants_batch(part, ERROR_TYPES, 0, cached)
    return records


def _baseline(studies, labeler):
    plain = PerTextLabeler(labeler)
    records = []
    for study in studies:
        records += make_rule_variants_batch([study], RULE_STYLES, 0, plain)
        records += make_error_variants_batch([study], ERROR_TYPES, 0, plain)
    return records


def _rate_table(title: str, records, failures: Counter | None = None) -> Table:
    table = Table(
        "generator",
        "style",
        "error",
        "made",
        "accepted",
        "rejected",
        "n/a",
        "failed",
        "reject %",
        title=title,
    )
    groups: dict[tuple[str, str, str], Counter] = {}
    for r in records:
        c = groups.setdefault((r.generator, r.style, r.error_type or ""), Counter())
        c["made"] += 1
        c["accepted" if r.accepted else ("n/a" if r.not_applicable else "rejected")] += 1
    for key, n in (failures or Counter()).items():
        groups.setdefault(key, Counter())["failed"] += n
    for (gen, style, etype), c in sorted(groups.items()):
        attempts = c["accepted"] + c["rejected"] + c["failed"]
        rate = 100 * (c["rejected"] + c["failed"]) / attempts if attempts else 0.0
        table.add_row(
            gen,
            style,
            etype,
            *(str(c[k]) for k in ("made", "accepted", "rejected", "n/a", "failed")),
            f"{rate:.1f}",
        )
    return table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--openi", type=Path, default=REPO.parent / "shared" / "data" / "openi")
    parser.add_argument("--studies", type=int, default=2069, help="R2Gen train studies for our path")
    parser.add_argument("--baseline-studies", type=int, default=150, help="studies for the slow baseline")
    parser.add_argument("--chunk", type=int, default=256)
    parser.add_argument("--llm", type=int, default=0, help="studies for the SmolLM2 LLM rows (0 = skip)")
    parser.add_argument("--llm-tokens", type=int, default=96)
    parser.add_argument(
        "--llm-out", type=Path, default=None, help="also write the LLM records to this store dir"
    )
    parser.add_argument("--skip-rules", action="store_true", help="only the LLM rows")
    args = parser.parse_args()
    console = Console(width=160)

    result = load_openi(args.openi / "NLMCXR_reports.tgz", args.openi / "r2gen_split.json")
    train = [s for s in result.studies if s.split == "train"][: args.studies]
    labeler = Labeler()
    labeler("warm-up.")

    if not args.skip_rules:

        def timed(fn, *fargs):
            wall, cpu = time.perf_counter(), time.process_time()
            out = fn(*fargs)
            return out, time.perf_counter() - wall, time.process_time() - cpu

        speed = Table(
            "path",
            "studies",
            "variants",
            "wall s",
            "CPU s",
            "studies/s (wall)",
            "studies/s (CPU)",
            title="rule variants (7 styles + 8 error types), labeler included",
        )

        def row(name: str, n: int, records, wall: float, cpu: float) -> None:
            speed.add_row(
                name,
                str(n),
                str(len(records)),
                f"{wall:.1f}",
                f"{cpu:.1f}",
                f"{n / wall:.1f}",
                f"{n / cpu:.1f}",
            )

        # Same subset, alternated twice (best of two): the machine is shared, so single timings are noisy.
        base_set = train[: args.baseline_studies]
        best: dict[str, tuple] = {}
        for _ in range(2):
            for name, fn, fargs in (
                ("ours: batched pipe + memo", _ours, (base_set, labeler, args.chunk)),
                ("baseline: per study, __call__ per text", _baseline, (base_set, labeler)),
            ):
                result_ = timed(fn, *fargs)
                if name not in best or result_[2] < best[name][2]:
                    best[name] = result_
        for name, (records, wall, cpu) in best.items():
            row(name, len(base_set), records, wall, cpu)
        base = best["baseline: per study, __call__ per text"][0]
        ours, wall, cpu = timed(_ours, train, labeler, args.chunk)
        row("ours, all selected train studies", len(train), ours, wall, cpu)
        same = {r.key: r for r in ours if r.study_id in {s.study_id for s in base_set}}
        agree = sum(same[r.key] == r for r in base)
        console.print(speed)
        console.print(f"baseline records identical to ours: {agree}/{len(base)}")
        console.print(_rate_table(f"rules on {len(train)} Open-i train reports", ours))

    if args.llm:
        import torch

        from lexray.variants.backends import HFChatBackend
        from lexray.variants.config import LLMConfig
        from lexray.variants.llm import make_llm_variants

        torch.set_num_threads(1)  # shared CPU: spinning OpenMP threads slow decoding
        backend = HFChatBackend("smollm2-135m", LLMConfig(max_new_tokens=args.llm_tokens, batch_size=8))
        styles = ["standardized", "expanded", "impression_only", "paraphrase"]
        subset = train[: args.llm]
        start = time.perf_counter()
        out = make_llm_variants(subset, styles, backend, CachedLabeler(labeler))
        t_llm = time.perf_counter() - start
        fails = Counter((f["generator"], f["style"], f["error_type"]) for f in out.failures)
        console.print(
            _rate_table(
                f"SmolLM2-135M-Instruct (hf, greedy, {args.llm_tokens} new tokens) on {len(subset)} reports",
                out.records,
                fails,
            )
        )
        if args.llm_out is not None:
            from lexray.variants.store import VariantStore

            VariantStore(args.llm_out).add(out.records)
        n = len(subset) * len(styles)
        console.print(f"LLM: {n} requests in {t_llm:.0f}s ({n / t_llm:.2f} replies/s, batch 8, 1 thread)")


if __name__ == "__main__":
    main()
