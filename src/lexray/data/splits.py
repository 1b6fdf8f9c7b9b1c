"""Seeded, patient-level train/val/test assignment that does not depend on record order."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

import numpy as np

from lexray.errors import LexrayError


class SplitError(LexrayError, ValueError):
    """A split name or split setting (fractions) is not usable."""


SPLIT_ALIASES = {
    "train": "train",
    "training": "train",
    "val": "val",
    "valid": "val",
    "validate": "val",
    "validation": "val",
    "dev": "val",
    "test": "test",
    "testing": "test",
    "": "",
}


def normalize_split(name: str) -> str:
    """Map a source's split spelling ("validate", "valid", " Test ") to "train" / "val" / "test".

    Raises:
        SplitError: the name is not a known split spelling (a ValueError).
    """
    key = str(name).strip().lower()
    if key not in SPLIT_ALIASES:
        raise SplitError(f"unknown split name {name!r}; expected one of {sorted(set(SPLIT_ALIASES) - {''})}")
    return SPLIT_ALIASES[key]


def _unit_hash(seed: int, key: str) -> float:
    digest = hashlib.blake2b(f"{seed}\x00{key}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2.0**64


def patient_splits(
    patient_ids: Iterable[str], val_fraction: float = 0.1, test_fraction: float = 0.2, seed: int = 0
) -> dict[str, str]:
    """Assign each patient to "train", "val" or "test" by a seeded hash of its id.

    All studies of a patient share a split (no patient leaks between train and test). The hash makes the
    assignment independent of record order and stable when patients are added, so a manifest rebuilt
    from a grown export keeps every old patient where it was. Fractions are met in expectation.

    Raises:
        SplitError: fractions outside [0, 1) or summing to 1 or more (a ValueError).
    """
    if not (0 <= val_fraction < 1 and 0 <= test_fraction < 1 and val_fraction + test_fraction < 1):
        raise SplitError(
            f"val_fraction={val_fraction} and test_fraction={test_fraction} must be in [0, 1) and sum below 1"
        )
    unique = list(dict.fromkeys(patient_ids))
    u = np.fromiter((_unit_hash(seed, p) for p in unique), dtype=np.float64, count=len(unique))
    labels = np.where(u < test_fraction, "test", np.where(u < test_fraction + val_fraction, "val", "train"))
    return dict(zip(unique, labels.tolist(), strict=True))
