"""The phantom run: label each study's report, render its phantom, write the PNGs and their manifest.

Every phantom is labelled synthetic: the "SYNTHETIC" burn-in, PNG text metadata
(:data:`PNG_SYNTHETIC_KEY`), and ``extra["synthetic"] = "true"`` in its manifest record. The on-disk
format (PNG files, their metadata and the manifest's records) is the one written since phantoms began.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import shutil
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from lexray.config import ConfigError
from lexray.data.study import Image, Reject, Study
from lexray.phantoms.render import MIN_SIZE, render_phantom
from lexray.phantoms.scene import PhantomFindings, findings_from_labels

if TYPE_CHECKING:
    from lexray.findings.labels import ReportLabels

log = logging.getLogger(__name__)

PNG_SYNTHETIC_KEY = "lexray-synthetic"


def save_phantom_png(path: str | Path, pixels: np.ndarray, study_id: str, findings: PhantomFindings) -> Path:
    """Write a phantom as an 8-bit grey PNG whose text metadata marks it synthetic."""
    from PIL import Image
    from PIL.PngImagePlugin import PngInfo

    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    info = PngInfo()
    info.add_text(PNG_SYNTHETIC_KEY, "true")
    info.add_text("Description", f"SYNTHETIC phantom radiograph rendered by lexray for study {study_id}")
    info.add_text("lexray-phantom-findings", findings.key())
    tmp = out.with_suffix(".tmp.png")
    Image.fromarray(np.round(np.clip(pixels, 0, 1) * 255).astype(np.uint8), mode="L").save(tmp, pnginfo=info)
    tmp.replace(out)
    return out


def is_synthetic_png(path: str | Path) -> bool:
    """True when a PNG carries lexray's synthetic marker."""
    from PIL import Image

    with Image.open(path) as im:
        return getattr(im, "text", {}).get(PNG_SYNTHETIC_KEY) == "true"


@dataclass(frozen=True)
class PhantomConfig:
    """Rendering a phantom image per study of a manifest."""

    size: int = 256  # image side in pixels
    image_dir: str = "images"  # folder for the PNGs, relative to the output manifest's folder
    splits: tuple[str, ...] = ()  # only these splits (empty = all)
    workers: int = 0  # rendering processes (0 = one per CPU core; 1 = in this process)

    def __post_init__(self) -> None:
        if self.size < MIN_SIZE:
            raise ConfigError(f"size: a phantom needs at least {MIN_SIZE} pixels a side, got {self.size}")
        if self.workers < 0:
            raise ConfigError(f"workers: expected 0 (one per core) or more, got {self.workers}")
        parts = Path(self.image_dir).parts
        if not parts or Path(self.image_dir).is_absolute() or ".." in parts:
            raise ConfigError(
                f"image_dir: expected a folder inside the output manifest's folder, got {self.image_dir!r}"
            )


@dataclass
class PhantomResult:
    """What :func:`render_studies` produced."""

    studies: list[Study] = field(default_factory=list)  # records with their phantom image attached
    findings: dict[str, PhantomFindings] = field(default_factory=dict)  # study id -> rendered findings
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (study id, reason)


def phantom_labels(studies: Sequence[Study], labeler: Any | None = None) -> list[ReportLabels]:
    """Labeler output for each study's findings + impression (the text a phantom depicts)."""
    if labeler is None:
        from lexray.findings import get_labeler

        labeler = get_labeler()
    texts = [s.report_text for s in studies]
    if hasattr(labeler, "pipe"):
        return list(labeler.pipe(texts))
    return [labeler(t) for t in texts]


def render_studies(
    studies: Sequence[Study],
    out_dir: str | Path,
    config: PhantomConfig = PhantomConfig(),
    labeler: Any | None = None,
    progress: bool = True,
) -> PhantomResult:
    """Render and save one phantom per study; return the studies with the phantom as their only image.

    Each returned record has ``images = (Image("<image_dir>/<study>.png", view="PA"),)`` (relative to
    ``out_dir``, where the caller writes the manifest), and ``extra`` gains ``synthetic="true"`` and
    ``phantom_findings`` (the :meth:`PhantomFindings.key`). Studies without report text are skipped
    and counted. To replace an earlier run safely, use :func:`write_phantom_run`.

    Args:
        studies: the reports to depict.
        out_dir: folder of the output manifest; PNGs go to ``out_dir / config.image_dir``.
        config: size, image folder and split filter.
        labeler: anything with ``__call__(text) -> ReportLabels`` (and optionally ``pipe``); default
            :func:`lexray.findings.get_labeler`.
        progress: show a progress bar.
    """
    planned, skipped = _plan(studies, config, labeler)
    result, jobs = _attach(planned, skipped, Path(out_dir), config.image_dir, config.size)
    _render(jobs, config.workers, progress)
    return result


def write_phantom_run(
    studies: Sequence[Study],
    out: str | Path,
    config: PhantomConfig = PhantomConfig(),
    labeler: Any | None = None,
    progress: bool = True,
) -> PhantomResult:
    """Render phantoms and write their manifest ``out``, replacing an earlier run in one atomic step.

    The PNGs go to a folder of their own, ``<image_dir>/<manifest stem>-<run id>/`` beside ``out``,
    where the run id hashes what is drawn (study ids, findings, size). The manifest is written
    (atomically) only after every PNG, so it is the one switch from the old run to the new: an
    interrupted rerun leaves the old manifest and all of its images intact, and the same run started
    again resumes, keeping the PNGs it finished (each PNG is itself written atomically). After the
    switch, the images of earlier runs of this manifest are removed.

    Returns:
        The result, as :func:`render_studies` gives it (rejects for skipped studies are the caller's).
    """
    from lexray.data.manifest import ManifestError, is_manifest, read_manifest, write_manifest

    out = Path(out)
    base = out.parent
    planned, skipped = _plan(studies, config, labeler)
    digest = hashlib.blake2b(digest_size=6)
    for study, findings, name in planned:
        digest.update(f"{study.study_id}\x00{name}\x00{findings.key()}\x00{config.size}\n".encode())
    run_dir = f"{config.image_dir}/{out.stem}-{digest.hexdigest()}"
    result, jobs = _attach(planned, skipped, base, run_dir, config.size)
    old: set[Path] = set()
    if is_manifest(out):
        try:
            old = {base / i.path for s in read_manifest(out) for i in s.images}
        except ManifestError:  # a damaged earlier output: its run folders are still found by name
            log.warning("phantoms: the earlier manifest %s is unreadable; replacing it", out)
    todo = [job for job in jobs if not Path(job[3]).is_file()]  # a finished PNG of this run is kept
    if len(todo) < len(jobs):
        log.info("phantoms: resuming, %d of %d PNGs already rendered", len(jobs) - len(todo), len(jobs))
    _render(todo, config.workers, progress)
    rejects = [Reject("phantom", sid, "empty_report", why) for sid, why in result.skipped]
    write_manifest(result.studies, out, rejects=rejects)  # the switch
    _remove_old_runs(base / config.image_dir, out.stem, base / run_dir, old - {Path(j[3]) for j in jobs})
    return result


def _remove_old_runs(image_root: Path, stem: str, current: Path, old_files: set[Path]) -> None:
    """Delete this manifest's earlier run folders, stray temporaries, and images the old run listed."""
    pattern = re.compile(rf"{re.escape(stem)}-[0-9a-f]{{12}}")
    if image_root.is_dir():
        for entry in image_root.iterdir():
            if entry.is_dir() and entry != current and pattern.fullmatch(entry.name):
                shutil.rmtree(entry, ignore_errors=True)
    for stray in current.glob("*.tmp.png"):
        stray.unlink(missing_ok=True)
    for f in old_files:  # images of a run written before run folders existed; only lexray's phantoms
        try:
            if f.suffix == ".png" and f.is_file() and is_synthetic_png(f):
                f.unlink()
        except OSError:  # not a readable PNG: not ours to delete
            continue


def _plan(
    studies: Sequence[Study], config: PhantomConfig, labeler: Any | None
) -> tuple[list[tuple[Study, PhantomFindings, str]], list[tuple[str, str]]]:
    """(study, findings to draw, file stem) per study with report text, and the skipped ones."""
    chosen = [s for s in studies if not config.splits or s.split in config.splits]
    todo, skipped = [], []
    for s in chosen:
        if not s.report_text.strip():
            skipped.append((s.study_id, "no findings or impression text to depict"))
        else:
            todo.append(s)
    labels = phantom_labels(todo, labeler)
    planned = [
        (study, findings_from_labels(lab), _safe_name(study.study_id))
        for study, lab in zip(todo, labels, strict=True)
    ]
    return planned, skipped


def _attach(
    planned: list[tuple[Study, PhantomFindings, str]],
    skipped: list[tuple[str, str]],
    out: Path,
    image_dir: str,
    size: int,
) -> tuple[PhantomResult, list[tuple[PhantomFindings, str, int, str]]]:
    """The records with their phantom attached (paths relative to ``out``) and the render jobs."""
    result = PhantomResult(skipped=list(skipped))
    jobs = []
    for study, findings, name in planned:
        rel = f"{image_dir}/{name}.png"
        jobs.append((findings, study.study_id, size, str(out / rel)))
        extra = {**study.extra, "synthetic": "true", "phantom_findings": findings.key()}
        result.studies.append(
            replace(study, images=(Image(path=rel, view="PA", image_id=name),), extra=extra)
        )
        result.findings[study.study_id] = findings
    if result.skipped:
        log.warning("phantoms: skipped %d studies without report text", len(result.skipped))
    return result, jobs


def _render(jobs: list[tuple[PhantomFindings, str, int, str]], workers: int, progress: bool) -> None:
    from tqdm.auto import tqdm

    workers = workers or os.cpu_count() or 1
    bar = tqdm(total=len(jobs), desc="phantoms", disable=not progress, unit="img")
    if workers == 1 or len(jobs) < 64:
        for job in jobs:
            _render_job(job)
            bar.update(1)
    else:
        # Rendering is pure numpy per image: processes scale it across cores.
        with ProcessPoolExecutor(max_workers=workers) as pool:
            for _ in pool.map(_render_job, jobs, chunksize=32):
                bar.update(1)
    bar.close()


def _render_job(job: tuple[PhantomFindings, str, int, str]) -> None:
    findings, study_id, size, path = job
    save_phantom_png(path, render_phantom(findings, study_id, size), study_id, findings)


def _safe_name(study_id: str) -> str:
    """A file name for a study id (ids may hold slashes or spaces)."""
    keep = "".join(c if c.isalnum() or c in "-_." else "_" for c in study_id)
    return (
        keep
        if keep == study_id
        else f"{keep}-{hashlib.blake2b(study_id.encode(), digest_size=4).hexdigest()}"
    )
