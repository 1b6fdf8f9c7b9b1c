"""CheXpert 5x200 and MIMIC 5x200 zero-shot benchmarks built from CheXpert-style label files.

The 5x200 protocol (GLoRIA, Huang et al. 2021; reused by MedCLIP, CXR-CLIP and others) takes 200
images for each of five observations — Atelectasis, Cardiomegaly, Consolidation, Edema, Pleural
Effusion — where every chosen image is positive for its class and *not positive for the other four*.
Label files use the CheXpert convention: ``1`` positive, ``0`` negative, ``-1`` uncertain, blank not
mentioned. Here a candidate for class C has ``C == 1`` and none of the other four equal to ``1``;
with ``uncertain_others="exclude"`` (the default) an uncertain ``-1`` on another of the five also
rules it out, so each image has one unambiguous answer.

Selection is deterministic: candidates are sorted by their id columns, shuffled with
``numpy.random.default_rng(seed)``, and the first ``n_per_class`` of each class are kept (classes are
disjoint by construction). A class with too few candidates raises, naming the class and the count.

* CheXpert: ``train.csv`` / ``valid.csv`` of CheXpert (``Path`` column + the 14 observations).
* MIMIC-CXR: ``mimic-cxr-2.0.0-chexpert.csv`` (``subject_id``, ``study_id`` + 14 observations),
  optionally joined with ``mimic-cxr-2.0.0-metadata.csv`` (one row per ``dicom_id``; frontal views
  kept) and ``mimic-cxr-2.0.0-split.csv`` (to restrict to one split).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd

log = logging.getLogger(__name__)

FIVE_CLASSES: tuple[str, ...] = ("Atelectasis", "Cardiomegaly", "Consolidation", "Edema", "Pleural Effusion")
FRONTAL_VIEWS = ("PA", "AP")


def _label_values(df: pd.DataFrame, classes: Sequence[str], source: str) -> pd.DataFrame:
    missing = [c for c in classes if c not in df.columns]
    if missing:
        raise ValueError(
            f"{source}: label columns {missing} are missing; a CheXpert-style file needs the columns "
            f"{list(classes)} with values 1 / 0 / -1 / blank"
        )
    raw = df[list(classes)]
    vals = raw.apply(pd.to_numeric, errors="coerce")
    blank = raw.isna() | (raw.astype(str).apply(lambda c: c.str.strip()) == "")
    bad = ~(blank | vals.isin([1, 0, -1]))
    if bad.to_numpy().any():
        row, col = np.argwhere(bad.to_numpy())[0]
        raise ValueError(
            f"{source}: row {df.index[row]} column {classes[col]!r} holds {raw.iloc[row, col]!r}; "
            "allowed values are 1, 0, -1 or blank"
        )
    return vals


def select_5x200(
    labels: pd.DataFrame,
    id_columns: Sequence[str],
    classes: Sequence[str] = FIVE_CLASSES,
    n_per_class: int = 200,
    seed: int = 0,
    uncertain_others: Literal["exclude", "allow"] = "exclude",
    source: str = "labels",
) -> pd.DataFrame:
    """Pick ``n_per_class`` rows per class, each positive for exactly that one of ``classes``.

    Args:
        labels: one row per image (or study) with ``id_columns`` and a CheXpert-style column per class.
        id_columns: columns that identify a row; they order candidates before the seeded shuffle.
        classes: the classes (default: the five of the 5x200 protocol).
        n_per_class: rows per class.
        seed: seed of the shuffle.
        uncertain_others: "exclude" drops rows uncertain (-1) on another class; "allow" keeps them.
        source: name used in error messages (e.g. the file path).

    Returns:
        DataFrame with ``id_columns`` and ``label`` (the class name), ordered by class then draw.

    Raises:
        ValueError: missing/invalid label columns, or a class with fewer than ``n_per_class`` candidates.
    """
    if uncertain_others not in ("exclude", "allow"):
        raise ValueError(f"uncertain_others must be 'exclude' or 'allow', got {uncertain_others!r}")
    vals = _label_values(labels, classes, source)
    df = labels[list(id_columns)].copy()
    order = np.lexsort([df[c].astype(str).to_numpy() for c in reversed(id_columns)])
    df, vals = df.iloc[order].reset_index(drop=True), vals.iloc[order].reset_index(drop=True)
    if df.duplicated().any():
        raise ValueError(f"{source}: the id columns {list(id_columns)} do not identify rows uniquely")
    positive = (vals == 1).to_numpy()
    uncertain = (vals == -1).to_numpy()
    rng = np.random.default_rng(seed)
    perm = rng.permutation(len(df))
    out = []
    for ci, name in enumerate(classes):
        others = np.delete(np.arange(len(classes)), ci)
        ok = positive[:, ci] & ~positive[:, others].any(axis=1)
        if uncertain_others == "exclude":
            ok &= ~uncertain[:, others].any(axis=1)
        picked = perm[ok[perm]]
        if len(picked) < n_per_class:
            raise ValueError(
                f"{source}: class {name!r} has only {len(picked)} rows positive for it alone; "
                f"need {n_per_class} (lower n_per_class or use a larger label file)"
            )
        rows = df.iloc[picked[:n_per_class]].copy()
        rows["label"] = name
        out.append(rows)
    return pd.concat(out, ignore_index=True)


def build_chexpert_5x200(
    labels_csv: str | Path,
    n_per_class: int = 200,
    seed: int = 0,
    frontal_only: bool = True,
    uncertain_others: Literal["exclude", "allow"] = "exclude",
) -> pd.DataFrame:
    """CheXpert 5x200 from a CheXpert ``train.csv``/``valid.csv`` (``Path``, ``Frontal/Lateral``, labels).

    Returns:
        DataFrame with ``Path`` and ``label``.
    """
    df = pd.read_csv(labels_csv)
    if "Path" not in df.columns:
        raise ValueError(f"{labels_csv}: a CheXpert label file needs a 'Path' column")
    if frontal_only and "Frontal/Lateral" in df.columns:
        df = df[df["Frontal/Lateral"].astype(str).str.lower() == "frontal"]
    return select_5x200(
        df,
        ["Path"],
        n_per_class=n_per_class,
        seed=seed,
        uncertain_others=uncertain_others,
        source=str(labels_csv),
    )


def build_mimic_5x200(
    chexpert_csv: str | Path,
    metadata_csv: str | Path | None = None,
    split_csv: str | Path | None = None,
    split: str | None = None,
    n_per_class: int = 200,
    seed: int = 0,
    uncertain_others: Literal["exclude", "allow"] = "exclude",
) -> pd.DataFrame:
    """MIMIC 5x200 from ``mimic-cxr-2.0.0-chexpert.csv``, one frontal image per chosen study.

    Args:
        chexpert_csv: study-level labels (``subject_id``, ``study_id`` + observations).
        metadata_csv: image metadata (``dicom_id``, ``subject_id``, ``study_id``, ``ViewPosition``); when
            given, each study is represented by its first frontal image in ``dicom_id`` order.
        split_csv: ``mimic-cxr-2.0.0-split.csv``; with ``split`` restricts studies to that split.
        split: "train", "validate" or "test" (MIMIC's names).
        n_per_class: studies per class.
        seed: seed of the shuffle.
        uncertain_others: see :func:`select_5x200`.

    Returns:
        DataFrame with ``subject_id``, ``study_id`` (and ``dicom_id`` when metadata is given) and ``label``.
    """
    labels = pd.read_csv(chexpert_csv)
    for col in ("subject_id", "study_id"):
        if col not in labels.columns:
            raise ValueError(f"{chexpert_csv}: a MIMIC-CXR label file needs a {col!r} column")
    if split is not None:
        if split_csv is None:
            raise ValueError("split needs split_csv (mimic-cxr-2.0.0-split.csv)")
        splits = pd.read_csv(split_csv)[["study_id", "split"]].drop_duplicates("study_id")
        keep = set(splits.loc[splits["split"] == split, "study_id"])
        labels = labels[labels["study_id"].isin(keep)]
    ids = ["subject_id", "study_id"]
    if metadata_csv is not None:
        meta = pd.read_csv(metadata_csv)
        meta = meta[meta["ViewPosition"].isin(FRONTAL_VIEWS)].sort_values("dicom_id")
        first = meta.drop_duplicates("study_id")[["study_id", "dicom_id"]]
        before = len(labels)
        labels = labels.merge(first, on="study_id", how="inner")
        log.info("%d of %d labelled studies have a frontal image", len(labels), before)
        ids = [*ids, "dicom_id"]
    return select_5x200(
        labels,
        ids,
        n_per_class=n_per_class,
        seed=seed,
        uncertain_others=uncertain_others,
        source=str(chexpert_csv),
    )
