"""Finding labeler vs Open-i's manual MeSH indexing: per-class precision, recall and F1.

Labels every Open-i report (the full report text with its section headers, as the data stage gives
it; INDICATION/COMPARISON are read as sections and not counted as findings) and scores the classes
both sides can express (``lexray.findings.mesh``) against the indexers' ``<major>`` MeSH terms.

Baseline, measured in the same run: the same lexicon and pipeline with ConText switched off, i.e.
every mention counts as positive (what keyword matching without negation handling gives).

    python benchmarks/labeler_mesh.py [--openi ../shared/data/openi]

Prints the per-class table (reports that were indexed and have text; "No Indexing" reports have no
reference), the macro-F1 on all 3,955 reports, with uncertain counted as positive, and the baseline,
and how often the labeler's laterality and severity match those in the MeSH heading.
"""

from __future__ import annotations

import argparse
import dataclasses
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

from lexray.data.sources.openi import load_openi
from lexray.findings import Labeler, ReportLabels, aggregate
from lexray.findings.mesh import attribute_agreement, macro_f1, score_reports

REPO = Path(__file__).resolve().parents[1]


def without_context(labels: ReportLabels) -> ReportLabels:
    """The baseline: every finding mention positive, as keyword matching without ConText would count it.

    Statements of normality ("heart size is normal": a negative mention without a cue) are not
    keyword hits for a finding and are dropped.
    """
    mentions = tuple(
        dataclasses.replace(m, status="positive")
        for m in labels.mentions
        if not (m.status == "negative" and "status" not in m.cues)
    )
    empty = all(v == "absent" for v in labels.vector())
    return ReportLabels(observations=aggregate(mentions, empty=empty), mentions=mentions)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--openi", type=Path, default=REPO.parent / "shared" / "data" / "openi")
    parser.add_argument("--batch-size", type=int, default=128)
    args = parser.parse_args()
    console = Console()

    studies = load_openi(args.openi / "NLMCXR_reports.tgz", keep_empty=True).studies
    texts = [s.report for s in studies]
    mesh = [s.extra.get("mesh_major", "") for s in studies]
    labeler = Labeler()
    start = time.perf_counter()
    labels = list(labeler.pipe(texts, batch_size=args.batch_size))
    seconds = time.perf_counter() - start

    scores, n = score_reports(labels, mesh)
    table = Table(title=f"Labeler vs Open-i MeSH (major), {n} indexed reports with text")
    for col in ("class", "support", "precision", "recall", "F1"):
        table.add_column(col, justify="right" if col != "class" else "left")
    for s in scores:
        table.add_row(s.name, str(s.support), f"{s.precision:.3f}", f"{s.recall:.3f}", f"{s.f1:.3f}")
    table.add_row("macro", "", "", "", f"{macro_f1(scores):.3f}", style="bold")
    console.print(table)

    baseline = [without_context(lab) for lab in labels]
    summary = Table(title="Macro-F1 over the mapped classes")
    for col in ("method", "reports", "macro-F1"):
        summary.add_column(col)
    rows = [
        ("labeler (positive only)", labels, False, True),
        ("labeler, uncertain counted positive", labels, True, True),
        ("labeler, all 3,955 reports (unindexed/empty count)", labels, False, False),
        ("baseline: same lexicon, no ConText", baseline, False, True),
    ]
    for name, labs, unc, indexed in rows:
        sc, m = score_reports(labs, mesh, count_uncertain=unc, indexed_only=indexed)
        summary.add_row(name, str(m), f"{macro_f1(sc):.3f}")
    console.print(summary)

    for attribute, classes in (
        (
            "laterality",
            ("effusion", "pneumothorax", "atelectasis", "opacity", "consolidation", "nodule/mass"),
        ),
        ("severity", ("cardiomegaly", "effusion", "pneumothorax", "atelectasis", "opacity", "edema")),
    ):
        table = Table(title=f"{attribute}: labeler vs the MeSH heading (reports where both state it)")
        for col in ("class", "compared", "agree"):
            table.add_column(col)
        for cls, (agree, compared) in attribute_agreement(labels, mesh, attribute, classes).items():
            table.add_row(cls, str(compared), f"{agree / compared:.3f}" if compared else "-")
        console.print(table)
    console.print(
        f"{len(texts)} reports labelled in {seconds:.1f} s ({len(texts) / seconds:.0f} reports/s, 1 process)"
    )


if __name__ == "__main__":
    main()
