"""The index format on disk: studies in the manifest schema, project-wide reject records, and format 1.

The format-1 fixture is written by hand here (pandas, numpy, FAISS) in the layout lexray wrote before
format 2, so the migration is checked against the files themselves rather than against lexray's writer.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import faiss
import numpy as np
import pandas as pd
import yaml

from lexray.config import to_dict
from lexray.data.manifest import is_manifest, read_manifest, read_rejects
from lexray.data.study import Reject, Study
from lexray.index import (
    FORMAT_VERSION,
    IndexConfig,
    RetrievalIndex,
    Searcher,
    add_to_index,
    build_index,
    make_ref,
)


def _write_format_1(out: Path, studies: list[Study], root: Path, run: Path, model_class: str) -> None:
    """An index of ``studies`` (image and text sides, flat FAISS) in the format-1 layout."""
    from toy_embedder import ToyEmbedder

    model = ToyEmbedder(32)
    version = "v-20250101T000000000000-abcdef"
    vdir = out / version
    vdir.mkdir(parents=True)
    images = pd.DataFrame(
        [
            {
                "study_id": s.study_id,
                "path": str((root / im.path).resolve()),
                "view": im.view,
                "image_id": im.image_id,
            }
            for s in studies
            for im in s.images
        ]
    )
    flat = {
        "study_id": [s.study_id for s in studies],
        "patient_id": [s.patient_id for s in studies],
        "source": [s.source for s in studies],
        "split": [s.split for s in studies],
        **{
            c: [getattr(s, c) for s in studies]
            for c in ("findings", "impression", "indication", "comparison")
        },
        "report": [s.report for s in studies],
        "extra": [json.dumps(s.extra, sort_keys=True) for s in studies],
    }
    pd.DataFrame(flat).to_parquet(vdir / "studies.parquet", index=False)
    images.to_parquet(vdir / "images.parquet", index=False)
    pd.DataFrame({"study_id": [s.study_id for s in studies]}).to_parquet(vdir / "texts.parquet", index=False)
    sides = {
        "image": model.embed_images(list(images["path"])),
        "text": model.embed_texts([s.report_text for s in studies]),
    }
    for side, vectors in sides.items():
        np.save(vdir / f"{side}_vectors.npy", vectors)
        index = faiss.IndexFlatIP(32)
        index.add(vectors)
        faiss.write_index(index, str(vdir / f"{side}.faiss"))
    old_rejects = [
        {
            "study_id": "s9",
            "modality": "image",
            "item": "/gone.png",
            "reason": "file not found; check the path",
        },
        {"study_id": "s0", "modality": "study", "item": "s0", "reason": "duplicate study_id in the manifest"},
    ]
    (vdir / "rejects.jsonl").write_text("".join(json.dumps(r) + "\n" for r in old_rejects))
    cfg = IndexConfig(model_class=model_class, chunk_size=4)
    (vdir / "config.yaml").write_text(yaml.safe_dump(to_dict(cfg), sort_keys=False))
    info = {
        "format": 1,
        "version": version,
        "created": "2025-01-01T00:00:00+00:00",
        "model": make_ref(run, model_class).to_dict(),
        "embed_dim": 32,
        "modalities": ["image", "text"],
        "counts": {
            "studies": len(studies),
            "images": len(images),
            "image": len(images),
            "text": len(studies),
        },
        "faiss": {m: {"kind": "flat", "recall_at_10_vs_exact": None} for m in sides},
        "rejects": len(old_rejects),
    }
    (vdir / "index.json").write_text(json.dumps(info, indent=2))
    (out / "CURRENT").write_text(version + "\n")


def _same_search(a: Searcher, b: Searcher, studies: list[Study], root: Path) -> None:
    """Both searchers return the same hits (ids, images, scores) for every study's text and first image."""
    for s in studies:
        for target in ("image", "text"):
            results = [
                (
                    x.by_text(s.report_text, k=4, target=target),
                    x.by_image(root / s.images[0].path, k=3, target=target),
                )
                for x in (a, b)
            ]
            for ra, rb in zip(*results, strict=True):
                assert [(h.study_id, h.image) for h in ra.hits] == [(h.study_id, h.image) for h in rb.hits]
                np.testing.assert_allclose([h.score for h in ra.hits], [h.score for h in rb.hits], atol=1e-6)


def test_studies_and_rejects_use_the_data_stage_formats(tmp_path, toy_run, toy_module, corpus):
    from toy_embedder import ToyEmbedder

    studies = corpus(tmp_path, 4)
    studies[1] = replace(studies[1], extra={"mesh": "Cardiomegaly/mild"})
    (tmp_path / studies[2].images[0].path).unlink()
    cfg = IndexConfig(model_class=toy_module, chunk_size=4)
    out = tmp_path / "idx"
    build_index(
        studies, ToyEmbedder(32), make_ref(toy_run, toy_module), out, cfg, image_root=tmp_path, progress=False
    )
    idx = RetrievalIndex.load(out)
    vdir = out / idx.version
    assert idx.format == FORMAT_VERSION == json.loads((vdir / "index.json").read_text())["format"]
    # studies.parquet is a manifest: the data stage's reader gives the studies back (images are listed
    # once, in images.parquet).
    assert is_manifest(vdir / "studies.parquet")
    assert read_manifest(vdir / "studies.parquet") == [replace(s, images=()) for s in studies]
    assert idx.study("s1").extra == {"mesh": "Cardiomegaly/mild"}
    # rejects.jsonl holds the data stage's reject records.
    rejects = read_rejects(vdir / "rejects.jsonl")
    assert [(r.source, r.record, r.reason) for r in rejects] == [("synthetic", "s2", "missing_image")]
    assert idx.rejects() == rejects


def test_format_1_index_opens_searches_identically_and_migrates_on_append(
    tmp_path, toy_run, toy_module, corpus
):
    from toy_embedder import ToyEmbedder

    studies = corpus(tmp_path, 6)
    studies[3] = replace(studies[3], extra={"mesh": "Granuloma"}, indication="cough", report="FINDINGS: ...")
    old = tmp_path / "old"
    _write_format_1(old, studies, tmp_path, toy_run, toy_module)
    cfg = IndexConfig(model_class=toy_module, chunk_size=4)
    fresh = tmp_path / "fresh"
    build_index(
        studies,
        ToyEmbedder(32),
        make_ref(toy_run, toy_module),
        fresh,
        cfg,
        image_root=tmp_path,
        progress=False,
    )

    legacy = RetrievalIndex.load(old)
    assert legacy.format == 1 and len(legacy.studies) == 6
    for s in studies:
        assert legacy.study(s.study_id) == RetrievalIndex.load(fresh).study(s.study_id)
    assert legacy.study("s3").extra == {"mesh": "Granuloma"} and legacy.study("s3").indication == "cough"
    migrated = [
        Reject("", "s9", "missing_image", "/gone.png: file not found; check the path"),
        Reject("synthetic", "s0", "duplicate_study_id", "duplicate study_id in the manifest"),
    ]
    assert legacy.rejects() == migrated
    _same_search(Searcher.open(old), Searcher.open(fresh), studies, tmp_path)

    # Appending writes a current-format version holding the old studies, the new ones and the old rejects.
    more = corpus(tmp_path, 3, start=6)
    report = add_to_index(old, more, ToyEmbedder(32), image_root=tmp_path, progress=False)
    assert report.added == {"image": 6, "text": 3} and report.studies == 9
    appended = RetrievalIndex.load(old)
    assert appended.format == FORMAT_VERSION and appended.rejects() == migrated
    assert is_manifest(old / appended.version / "studies.parquet")
    assert appended.study("s3") == legacy.study("s3")
    build_index(
        [*studies, *more], ToyEmbedder(32), make_ref(toy_run, toy_module), tmp_path / "all", cfg,
        image_root=tmp_path, progress=False,
    )  # fmt: skip
    _same_search(Searcher.open(old), Searcher.open(tmp_path / "all"), [*studies, *more], tmp_path)
