"""View positions: normalise the spellings of different sources and keep frontal or all images."""

from __future__ import annotations

import re
from dataclasses import replace
from typing import Literal

from lexray.data.study import Study

ViewFilter = Literal["all", "frontal", "lateral"]

# Normalised spelling -> kind. Spellings from DICOM ViewPosition (MIMIC-CXR metadata), CheXpert
# (frontal_lateral / ap_pa columns) and common hospital exports.
VIEW_KINDS: dict[str, str] = {
    "PA": "frontal",
    "AP": "frontal",
    "AP AXIAL": "frontal",
    "PA LLD": "frontal",
    "PA RLD": "frontal",
    "AP LLD": "frontal",
    "AP RLD": "frontal",
    "AP SUPINE": "frontal",
    "AP ERECT": "frontal",
    "FRONTAL": "frontal",
    "POSTERO ANTERIOR": "frontal",
    "ANTERO POSTERIOR": "frontal",
    "LATERAL": "lateral",
    "LAT": "lateral",
    "LL": "lateral",
    "RL": "lateral",
    "XTABLE LATERAL": "lateral",
    "LEFT LATERAL": "lateral",
    "RIGHT LATERAL": "lateral",
    "LAO": "oblique",
    "RAO": "oblique",
    "LPO": "oblique",
    "RPO": "oblique",
    "SWIMMERS": "other",
}
_SEP = re.compile(r"[\s_\-]+")


def normalize_view(view: object) -> str | None:
    """Upper-case, single-spaced view position (``"ap_axial"`` -> ``"AP AXIAL"``); None when missing."""
    if view is None or (isinstance(view, float) and view != view):  # None or NaN from pandas
        return None
    text = _SEP.sub(" ", str(view)).strip().upper()
    return text or None


def view_kind(view: str | None) -> str | None:
    """ "frontal", "lateral", "oblique", "other", or None when the view is unknown."""
    norm = normalize_view(view)
    if norm is None:
        return None
    return VIEW_KINDS.get(norm, "other")


def filter_views(study: Study, views: ViewFilter = "all", keep_unknown: bool = True) -> Study:
    """The study with only the images of the wanted kind.

    Args:
        study: the record.
        views: "all" keeps every image; "frontal" / "lateral" keep that kind.
        keep_unknown: keep images without a view position (Open-i gives none) when filtering.
    """
    if views == "all":
        return study
    kept = tuple(
        img
        for img in study.images
        if (kind := view_kind(img.view)) == views or (kind is None and keep_unknown)
    )
    return study if len(kept) == len(study.images) else replace(study, images=kept)
