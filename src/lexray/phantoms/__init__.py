"""Phantom radiographs: synthetic frontal (PA) chest films rendered from each report's labelled findings.

No paired chest X-ray images can be had on the development machines, so image-side work runs on
phantoms. The stage sits above :mod:`lexray.findings` (it depicts the labeler's output) and has three
rooms: :mod:`~lexray.phantoms.scene` (labels -> :class:`PhantomFindings`, what to draw),
:mod:`~lexray.phantoms.render` (pure-numpy drawing of a scene) and :mod:`~lexray.phantoms.run` (a
manifest in, PNGs and their manifest out). Every phantom is labelled synthetic (a burn-in, PNG
metadata, ``extra["synthetic"]``); phantoms never stand in for real images in any claim about them.
"""

from lexray.phantoms.render import (
    MIN_SIZE,
    SYNTHETIC_TEXT,
    Anatomy,
    render_phantom,
    sample_anatomy,
    side_sign,
    study_seed,
)
from lexray.phantoms.run import (
    PNG_SYNTHETIC_KEY,
    PhantomConfig,
    PhantomResult,
    is_synthetic_png,
    phantom_labels,
    render_studies,
    save_phantom_png,
    write_phantom_run,
)
from lexray.phantoms.scene import (
    DEVICES,
    LESION_KINDS,
    PARENCHYMAL_KINDS,
    SIDES,
    ZONES,
    PhantomFindings,
    findings_from_labels,
)

__all__ = [
    "DEVICES",
    "LESION_KINDS",
    "MIN_SIZE",
    "PARENCHYMAL_KINDS",
    "PNG_SYNTHETIC_KEY",
    "SIDES",
    "SYNTHETIC_TEXT",
    "ZONES",
    "Anatomy",
    "PhantomConfig",
    "PhantomFindings",
    "PhantomResult",
    "findings_from_labels",
    "is_synthetic_png",
    "phantom_labels",
    "render_phantom",
    "render_studies",
    "sample_anatomy",
    "save_phantom_png",
    "side_sign",
    "study_seed",
    "write_phantom_run",
]
