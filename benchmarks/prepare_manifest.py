"""Benchmark: prepare a generated 100,000-study MIMIC-CXR-JPG-style tree into a manifest.

Generates (once, cached under --workdir) a tree with the real layout: split and metadata CSVs
(``.csv.gz``), one report ``files/pNN/pN/sN.txt`` per study in MIMIC style, and 1-3 empty JPG files per
study; 0.5% of reports are missing and 0.2% empty so the reject path is exercised. Then times:

* ours: ``lexray.data.prepare`` (pandas joins/grouping, row validation and rejects, a stat per image,
  report parsing, ``Study`` records, Parquet write from Arrow offsets);
* baseline: a straightforward per-row implementation (csv module, a dict per row, ``os.path.exists``
  per image, the same report parser, pandas DataFrame of dicts -> Parquet; no validation), run on the
  same tree in the same process.

Wall and CPU seconds are both printed: on a shared machine wall time grows with the load.

Target: ours under 60 s for 100,000 studies on 2 CPU cores. Prints a table.

Usage: python benchmarks/prepare_manifest.py [--studies 100000] [--workdir /tmp/lexray-bench-mimic]
"""

from __future__ import annotations

import argparse
import csv
import gzip
import os
import random
import shutil
import time
from pathlib import Path

import numpy as np
import pandas as pd

from lexray.data.manifest import read_table
from lexray.data.prepare import PrepareConfig, prepare
from lexray.data.sections import parse_report
from lexray.data.sources.mimic import MimicCxrConfig

_FINDINGS = [
    "The lungs are clear without focal consolidation.",
    "No pleural effusion or pneumothorax is seen.",
    "Heart size is normal.",
    "Mild cardiomegaly is unchanged.",
    "Mediastinal and hilar contours are within normal limits.",
    "There is mild bibasilar atelectasis.",
    "A right internal jugular catheter terminates in the lower SVC.",
    "Small left pleural effusion has slightly increased since ___.",
]
_IMPRESSIONS = [
    "No acute cardiopulmonary process.",
    "Mild pulmonary vascular congestion.",
    "Small left pleural effusion.",
    "Findings concerning for right lower lobe pneumonia.",
]
_VIEWS = ["PA", "LATERAL", "AP", "LL", ""]


def generate(root: Path, n_studies: int, seed: int = 0) -> None:
    """Write the MIMIC-style tree under ``root`` (skipped when a complete one is already there)."""
    marker = root / ".complete"
    if marker.is_file() and marker.read_text() == str(n_studies):
        return
    if root.exists():
        shutil.rmtree(root)
    rng = random.Random(seed)
    study_ids = 50_000_000 + np.arange(n_studies)
    subjects = 10_000_000 + np.arange(n_studies) // 3  # ~3 studies per patient
    rows, meta = [], []
    for k, (st, su) in enumerate(zip(study_ids.tolist(), subjects.tolist(), strict=True)):
        split = "test" if k % 50 == 0 else ("validate" if k % 101 == 0 else "train")
        folder = root / "files" / f"p{str(su)[:2]}" / f"p{su}" / f"s{st}"
        folder.mkdir(parents=True, exist_ok=True)
        for j in range(rng.randint(1, 3)):
            dicom = f"{st:x}-{j:02d}-{rng.getrandbits(32):08x}"
            rows.append((dicom, st, su, split))
            meta.append((dicom, su, st, _VIEWS[j] if rng.random() > 0.05 else ""))
            (folder / f"{dicom}.jpg").touch()
        r = rng.random()
        if r < 0.005:
            continue  # missing report
        report = folder.parent / f"s{st}.txt"
        if r < 0.007:
            report.write_text("  \n")
            continue
        findings = " ".join(rng.sample(_FINDINGS, rng.randint(2, 5)))
        report.write_text(
            "                                 FINAL REPORT\n EXAMINATION:  CHEST (PA AND LAT)\n\n"
            f" INDICATION:  ___ with cough\n\n COMPARISON:  ___\n\n FINDINGS:\n\n {findings}\n\n"
            f" IMPRESSION:\n\n {rng.choice(_IMPRESSIONS)}\n"
        )
    pd.DataFrame(rows, columns=["dicom_id", "study_id", "subject_id", "split"]).to_csv(
        root / "mimic-cxr-2.0.0-split.csv.gz", index=False, compression="gzip"
    )
    pd.DataFrame(meta, columns=["dicom_id", "subject_id", "study_id", "ViewPosition"]).to_csv(
        root / "mimic-cxr-2.0.0-metadata.csv.gz", index=False, compression="gzip"
    )
    marker.write_text(str(n_studies))


def baseline(root: Path, out: Path) -> int:
    """A per-row implementation: csv rows, dict per study, exists() per image, DataFrame -> Parquet."""
    views = {}
    with gzip.open(root / "mimic-cxr-2.0.0-metadata.csv.gz", "rt") as f:
        for row in csv.DictReader(f):
            views[row["dicom_id"]] = row["ViewPosition"]
    studies: dict[str, dict] = {}
    with gzip.open(root / "mimic-cxr-2.0.0-split.csv.gz", "rt") as f:
        for row in csv.DictReader(f):
            su, st = row["subject_id"], row["study_id"]
            path = root / "files" / f"p{su[:2]}" / f"p{su}" / f"s{st}" / f"{row['dicom_id']}.jpg"
            s = studies.setdefault(
                st, {"study_id": st, "patient_id": su, "split": row["split"], "images": []}
            )
            if os.path.exists(path):
                s["images"].append({"path": str(path), "view": views.get(row["dicom_id"]) or None})
    records = []
    for st, s in studies.items():
        su = s["patient_id"]
        report = root / "files" / f"p{su[:2]}" / f"p{su}" / f"s{st}.txt"
        if not report.exists():
            continue
        text = report.read_text()
        sec = parse_report(text)
        if not (sec.findings or sec.impression):
            continue
        records.append({**s, "findings": sec.findings, "impression": sec.impression, "report": text})
    pd.DataFrame(records).to_parquet(out)
    return len(records)


def main() -> None:
    """Generate the tree, time ours and the baseline, print the table."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--studies", type=int, default=100_000)
    ap.add_argument("--workdir", type=Path, default=Path("/tmp/lexray-bench-mimic"))
    ap.add_argument("--skip-baseline", action="store_true")
    args = ap.parse_args()
    root = args.workdir / f"tree-{args.studies}"
    t0 = time.perf_counter()
    generate(root, args.studies)
    gen_s = time.perf_counter() - t0

    out = args.workdir / "manifest.parquet"
    t0, c0 = time.perf_counter(), time.process_time()
    summary = prepare(PrepareConfig(mimic_cxr=MimicCxrConfig(path=root)), out)
    ours_s, ours_cpu = time.perf_counter() - t0, time.process_time() - c0
    n_ours = read_table(out, columns=["study_id"]).num_rows
    n_rejects = sum(summary.rejected.values())

    rows = [("lexray prepare (pandas + Arrow, validated, rejects)", ours_s, ours_cpu, n_ours)]
    if not args.skip_baseline:
        t0, c0 = time.perf_counter(), time.process_time()
        n_base = baseline(root, args.workdir / "baseline.parquet")
        rows.append(
            (
                "baseline (csv rows, dict per row, DataFrame of dicts)",
                time.perf_counter() - t0,
                time.process_time() - c0,
                n_base,
            )
        )

    print(
        f"\nMIMIC-style tree: {args.studies:,} studies (generated/cached in {gen_s:.1f} s), cores={os.cpu_count()}"
    )
    print(f"ours: {n_ours:,} studies in the manifest, {n_rejects:,} rejects ({dict(summary.rejected)})")
    print(
        f"load average at the end: {os.getloadavg()[0]:.1f} (wall time grows with other processes; CPU does not)"
    )
    print(f"{'method':<55} {'wall s':>7} {'CPU s':>7} {'studies/s (wall)':>17} {'studies':>9}")
    for name, secs, cpu, n in rows:
        print(f"{name:<55} {secs:7.1f} {cpu:7.1f} {n / secs:17,.0f} {n:9,}")
    verdict = "PASS" if ours_s < 60 else "FAIL"
    print(f"target: < 60 s for 100,000 studies -> {verdict} ({ours_s:.1f} s)")


if __name__ == "__main__":
    main()
