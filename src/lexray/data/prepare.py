"""Sources -> one manifest: read every configured dataset, filter views, write the manifest and rejects."""

from __future__ import annotations

import dataclasses
import logging
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from tqdm import tqdm

from lexray.data.images import ImageError, load_radiograph
from lexray.data.manifest import check_output_manifest, rejects_path, write_manifest
from lexray.data.sources import SourceError, SourceResult
from lexray.data.sources.chexpert_plus import ChexpertPlusConfig, load_chexpert_plus_config
from lexray.data.sources.hospital import HospitalConfig, load_hospital
from lexray.data.sources.mimic import MimicCxrConfig, load_mimic_cxr_config
from lexray.data.sources.openi import OpenIConfig, load_openi_config
from lexray.data.study import Reject, Study
from lexray.data.views import filter_views

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PrepareConfig:
    """Which datasets go into a manifest and how their images are filtered."""

    openi: OpenIConfig | None = None  # Open-i report archive; None = not used
    mimic_cxr: MimicCxrConfig | None = None  # MIMIC-CXR-JPG + reports; None = not used
    chexpert_plus: ChexpertPlusConfig | None = None  # CheXpert Plus report CSV; None = not used
    hospital: tuple[HospitalConfig, ...] = ()  # hospital exports, each with its column mapping
    views: Literal["all", "frontal", "lateral"] = "all"  # which images each study keeps
    keep_unknown_views: bool = True  # keep images without a view position when filtering (Open-i has none)
    require_images: bool = False  # reject studies left without images (needed for image-text training)
    decode_images: bool = False  # decode every image once (slow) and drop corrupt or oversized ones


# Config field -> reader: the one place that knows how each source is loaded.
SOURCE_READERS: dict[str, Callable[[Any], SourceResult]] = {
    "openi": load_openi_config,
    "mimic_cxr": load_mimic_cxr_config,
    "chexpert_plus": load_chexpert_plus_config,
    "hospital": load_hospital,
}
# CLI spelling -> config field.
SOURCE_KINDS = {
    "openi": "openi",
    "mimic-cxr": "mimic_cxr",
    "chexpert-plus": "chexpert_plus",
    "hospital": "hospital",
}
_SOURCE_NAMES = {field: kind for kind, field in SOURCE_KINDS.items()}  # the source name studies carry


@dataclass
class PrepareSummary:
    """What :func:`prepare` wrote."""

    manifest: Path  # the manifest file
    rejects: Path  # its rejects file
    studies: Counter = field(default_factory=Counter)  # studies per source
    rejected: Counter = field(default_factory=Counter)  # rejects per (source, reason)
    rows_read: Counter = field(default_factory=Counter)  # records read from tabular inputs per source


def config_path(manifest: str | Path) -> Path:
    """Where the resolved prepare recipe of a manifest is saved: ``<stem>.config.yaml`` beside it."""
    p = Path(manifest)
    return p.with_name(f"{p.stem}.config.yaml")


def _input_paths(config: PrepareConfig) -> list[Path]:
    """Every path a configured source reads (export, archive, split file, report zip, image root)."""
    paths = []
    for _, sub in _configured(config):
        for f in dataclasses.fields(sub):
            value = getattr(sub, f.name)
            if isinstance(value, Path):
                paths.append(value)
    return paths


def check_outputs(config: PrepareConfig, out: str | Path, inputs: Sequence[str | Path] = ()) -> Path:
    """Refuse an ``out`` that would overwrite an input or a file that is not a manifest, before any work.

    Args:
        config: the recipe; every path its sources read is protected.
        out: the manifest to write; its rejects file and saved recipe go beside it.
        inputs: further files to protect (e.g. the ``--config`` recipe itself).

    Returns:
        ``out`` as a Path.

    Raises:
        ManifestError: ``out`` is a folder, lies under a file, is one of the inputs (or its rejects file
            or saved recipe would be), or exists without being a lexray manifest.
    """
    return check_output_manifest(out, [*_input_paths(config), *map(Path, inputs)], [config_path(out)])


def _configured(config: PrepareConfig) -> list[tuple[str, Any]]:
    out: list[tuple[str, Any]] = []
    for name in SOURCE_READERS:
        value = getattr(config, name)
        if name == "hospital":
            out.extend((name, h) for h in value)
        elif value is not None:
            out.append((name, value))
    return out


def _drop_corrupt(study: Study, rejects: list[Reject]) -> Study:
    """The study without images that :func:`load_radiograph` cannot decode (each logged as a Reject)."""
    kept = []
    for img in study.images:
        try:
            load_radiograph(img.path)
        except ImageError as exc:
            rejects.append(Reject(study.source, study.study_id, "corrupt_image", str(exc)))
            continue
        kept.append(img)
    return study if len(kept) == len(study.images) else dataclasses.replace(study, images=tuple(kept))


def prepare(config: PrepareConfig, out: str | Path, protect: Sequence[str | Path] = ()) -> PrepareSummary:
    """Read every configured source into one manifest at ``out`` (rejects beside it).

    Record-level problems are skipped and written to the rejects file; a source that cannot be read at
    all (missing folder, wrong columns) raises, because that is a configuration error. ``out`` is
    checked first (:func:`check_outputs`), so a bad one costs no work and never touches an input.

    Args:
        config: the sources and filters.
        out: the manifest file to write.
        protect: further files ``out`` must not overwrite (e.g. the recipe file).

    Raises:
        SourceError: no source is configured, or a source cannot be read (the message names it).
        SourceNotFoundError: a source's files are absent.
        ManifestError: ``out`` is unusable (see :func:`check_outputs`).
    """
    sources = _configured(config)
    if not sources:
        raise SourceError("no source configured: give e.g. `openi=PATH` or set openi.path in the config")
    out = check_outputs(config, out, protect)
    studies, rejects = [], []
    rows_read: Counter = Counter()
    seen: set[str] = set()
    for name, sub in sources:
        log.info("reading %s from %s", name, sub.path)
        if config.decode_images:
            log.info("decode_images is on: every image of %s is decoded once", name)
        result = SOURCE_READERS[name](sub)
        rejects.extend(result.rejects)
        rows_read[sub.name if name == "hospital" else _SOURCE_NAMES[name]] += result.rows_read
        # Decoding every image is the slow path; only then is a progress bar worth showing.
        for study in tqdm(
            result.studies,
            desc=f"{name} images",
            unit="study",
            disable=None if config.decode_images else True,
        ):
            if study.study_id in seen:
                rejects.append(
                    Reject(
                        study.source,
                        study.study_id,
                        "duplicate_study_id",
                        "the id is already taken by an earlier record",
                    )
                )
                continue
            filtered = filter_views(study, config.views, config.keep_unknown_views)
            if config.decode_images and filtered.images:
                filtered = _drop_corrupt(filtered, rejects)
            if config.require_images and not filtered.images:
                why = "no images" if not study.images else f"no {config.views} images"
                rejects.append(Reject(study.source, study.study_id, "no_images", why))
                continue
            seen.add(study.study_id)
            studies.append(filtered)
    path = write_manifest(studies, out, rejects)
    summary = PrepareSummary(manifest=path, rejects=rejects_path(path), rows_read=rows_read)
    summary.studies.update(s.source for s in studies)
    summary.rejected.update((r.source, r.reason) for r in rejects)
    log.info("wrote %d studies and %d rejects to %s", len(studies), len(rejects), path)
    return summary
