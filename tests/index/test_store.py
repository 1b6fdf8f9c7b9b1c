"""Index build / load / append round-trips, rejects, FAISS kinds, and crash safety."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from lexray.index import (
    FaissConfig,
    IndexBusyError,
    IndexConfig,
    IndexFormatError,
    ModelLoadError,
    RetrievalIndex,
    Searcher,
    _versions,
    add_to_index,
    build_index,
    load_model,
    make_ref,
)
from lexray.index._faiss import IndexBuildError, recall_at_k


def _build(tmp_path, toy_run, toy_module, studies, cfg=None, out=None):
    model = load_model(make_ref(toy_run, toy_module))
    cfg = cfg or IndexConfig(model_class=toy_module, chunk_size=4)
    out = out or tmp_path / "idx"
    report = build_index(
        studies, model, make_ref(toy_run, toy_module), out, cfg, image_root=tmp_path, progress=False
    )
    return model, out, report


def test_build_load_round_trip(tmp_path, toy_run, toy_module, corpus):
    studies = corpus(tmp_path, 10)
    model, out, report = _build(tmp_path, toy_run, toy_module, studies)
    assert report.studies == 10 and report.vectors == {"image": 20, "text": 10} and not report.rejects
    idx = RetrievalIndex.load(out)
    assert idx.embed_dim == 32 and sorted(idx.modalities) == ["image", "text"]
    assert idx.model_ref == make_ref(toy_run, toy_module)
    # The stored vectors are exactly the model's embeddings of the same items, in metadata order.
    texts = [s.report_text for s in studies]
    np.testing.assert_allclose(idx.vectors("text"), model.embed_texts(texts), atol=1e-6)
    paths = list(idx.meta("image")["path"])
    assert paths == [str((tmp_path / im.path).resolve()) for s in studies for im in s.images]
    np.testing.assert_allclose(idx.vectors("image"), model.embed_images(paths), atol=1e-6)
    # Studies come back whole, with absolute image paths.
    s3 = idx.study("s3")
    assert s3.findings == studies[3].findings and s3.impression == studies[3].impression
    assert [im.view for im in s3.images] == ["PA", "LATERAL"]
    assert all(Path(im.path).is_absolute() for im in s3.images)
    with pytest.raises(KeyError, match="not in the index"):
        idx.study("nope")
    cfg_text = (out / idx.version / "config.yaml").read_text()
    assert "chunk_size: 4" in cfg_text


def test_flat_search_matches_bruteforce_oracle(tmp_path, toy_run, toy_module, corpus):
    studies = corpus(tmp_path, 25, images_per_study=1)
    _, out, _ = _build(tmp_path, toy_run, toy_module, studies)
    idx = RetrievalIndex.load(out)
    rng = np.random.default_rng(0)
    q = rng.standard_normal((7, 32)).astype(np.float32)
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    for side in ("image", "text"):
        scores, ids = idx.search(side, q, 5)
        sims = q @ np.asarray(idx.vectors(side)).T  # (Q, N) naive oracle
        oracle = np.argsort(-sims, axis=1)[:, :5]
        np.testing.assert_array_equal(ids, oracle)
        np.testing.assert_allclose(scores, np.take_along_axis(sims, oracle, 1), atol=1e-5)
    # k larger than the corpus is capped, not padded with -1.
    _, ids = idx.search("text", q[:1], 100)
    assert ids.shape == (1, 25)


def test_searcher_finds_the_exact_report_and_image(tmp_path, toy_run, toy_module, corpus):
    studies = corpus(tmp_path, 12)
    _, out, _ = _build(tmp_path, toy_run, toy_module, studies)
    searcher = Searcher.open(out)
    res = searcher.by_text(studies[5].report_text, k=3, target="text")
    assert res.hits[0].study_id == "s5" and res.hits[0].score == pytest.approx(1.0, abs=1e-5)
    assert [h.rank for h in res.hits] == [1, 2, 3]
    img = tmp_path / studies[7].images[1].path
    res = searcher.by_image(img, k=2, target="image")
    assert res.hits[0].image is not None and res.hits[0].image.path == str(img.resolve())
    assert res.hits[0].study_id == "s7"
    res = searcher.by_image(img, k=4)  # default: image -> reports
    assert all(h.modality == "text" and h.image is None for h in res.hits) and len(res.hits) == 4
    with pytest.raises(ValueError, match="empty"):
        searcher.by_text("   ")


def test_append_equals_fresh_build(tmp_path, toy_run, toy_module, corpus):
    first, second = corpus(tmp_path, 6), corpus(tmp_path, 5, start=6)
    model, out, _ = _build(tmp_path, toy_run, toy_module, first)
    v1 = RetrievalIndex.load(out).version
    # s2 is already indexed: skipped with a reason, not duplicated.
    report = add_to_index(out, [*second, first[2]], model, image_root=tmp_path, progress=False)
    assert report.added == {"image": 10, "text": 5}
    assert [(r.record, r.reason, r.detail) for r in report.rejects] == [
        ("s2", "already_indexed", "already in the index")
    ]
    appended = RetrievalIndex.load(out)
    assert appended.version != v1 and len(appended.studies) == 11
    _, fresh_out, _ = _build(tmp_path, toy_run, toy_module, [*first, *second], out=tmp_path / "fresh")
    fresh = RetrievalIndex.load(fresh_out)
    for side in ("image", "text"):
        np.testing.assert_allclose(appended.vectors(side), fresh.vectors(side), atol=1e-6)
        assert appended.meta(side).equals(fresh.meta(side))
    q = np.asarray(fresh.vectors("text"))[:3]
    np.testing.assert_array_equal(appended.search("image", q, 4)[1], fresh.search("image", q, 4)[1])
    assert appended.study("s9").findings == second[3].findings


def test_append_rejects_other_model_width(tmp_path, toy_run, toy_module, corpus):
    from toy_embedder import ToyEmbedder

    model, out, _ = _build(tmp_path, toy_run, toy_module, corpus(tmp_path, 3))
    with pytest.raises(IndexFormatError, match="16-d vectors"):
        add_to_index(
            out, corpus(tmp_path, 2, start=3), ToyEmbedder(dim=16), image_root=tmp_path, progress=False
        )


def test_bad_records_are_skipped_and_counted(tmp_path, toy_run, toy_module, corpus):
    studies = corpus(tmp_path, 6)
    (tmp_path / studies[1].images[0].path).write_bytes(b"not an image at all")  # corrupt file
    (tmp_path / studies[2].images[1].path).unlink()  # missing file
    studies[3] = replace(studies[3], findings="", impression="")  # nothing to embed
    studies.append(replace(studies[0], findings="duplicate"))  # duplicate id
    _, out, report = _build(tmp_path, toy_run, toy_module, studies)
    # One reject record for the whole project: the study id, a reason code naming the side, the detail.
    details = {(r.record, r.reason): r.detail for r in report.rejects}
    assert set(details) == {
        ("s1", "unembeddable_image"),
        ("s2", "missing_image"),
        ("s3", "empty_report"),
        ("s0", "duplicate_study_id"),
    }
    assert "ImageError" in details[("s1", "unembeddable_image")]
    assert "not found" in details[("s2", "missing_image")]
    assert "empty" in details[("s3", "empty_report")]
    assert "duplicate" in details[("s0", "duplicate_study_id")]
    assert {r.source for r in report.rejects} == {"synthetic"}
    idx = RetrievalIndex.load(out)
    assert len(idx.meta("image")) == 10 and len(idx.meta("text")) == 5 and len(idx.studies) == 6
    assert idx.rejects() == list(report.rejects)
    assert idx.study("s3").images  # its images are still indexed


def test_approximate_kinds_record_recall(tmp_path, toy_run, toy_module, corpus):
    studies = corpus(tmp_path, 150, images_per_study=2)
    hnsw = IndexConfig(model_class=toy_module, chunk_size=64, faiss=FaissConfig(kind="hnsw", hnsw_m=16))
    _, out, report = _build(tmp_path, toy_run, toy_module, studies, cfg=hnsw)
    assert 0.9 <= report.recall_at_10["image"] <= 1.0
    idx = RetrievalIndex.load(out)
    assert idx.info["faiss"]["image"]["recall_at_10_vs_exact"] == report.recall_at_10["image"]
    assert idx.faiss_index("image").hnsw.efSearch == 128  # query-time parameter reapplied on load
    ivf = IndexConfig(
        model_class=toy_module,
        chunk_size=64,
        faiss=FaissConfig(kind="ivfpq", ivf_nlist=4, pq_m=8, pq_nbits=8),
    )
    _, out2, report2 = _build(
        tmp_path, toy_run, toy_module, studies, cfg=replace(ivf, modalities=("image",)), out=tmp_path / "ivf"
    )
    assert 0.0 < report2.recall_at_10["image"] <= 1.0
    with pytest.raises(IndexBuildError, match="at least 256 vectors"):
        _build(tmp_path, toy_run, toy_module, studies[:20], cfg=ivf, out=tmp_path / "ivf2")


def test_recall_at_k_matches_naive_definition():
    rng = np.random.default_rng(3)
    a = np.stack([rng.permutation(20)[:10] for _ in range(30)])  # (Q, k) distinct ids per row, like FAISS
    e = np.stack([rng.permutation(20)[:10] for _ in range(30)])
    naive = np.mean([len(set(x) & set(y)) / 10 for x, y in zip(a, e, strict=True)])
    assert recall_at_k(a, e) == pytest.approx(naive)
    assert recall_at_k(e, e) == 1.0


def test_load_errors_name_the_fix(tmp_path):
    with pytest.raises(IndexFormatError, match="lexray index build"):
        RetrievalIndex.load(tmp_path)


def test_changed_model_is_refused(tmp_path, toy_run, toy_module, corpus):
    _, out, _ = _build(tmp_path, toy_run, toy_module, corpus(tmp_path, 2))
    (toy_run / "toy.json").write_text(json.dumps({"dim": 32, "extra": 1}))
    os.utime(toy_run / "toy.json", (1, 1))
    with pytest.raises(ModelLoadError, match="changed since the index was built"):
        Searcher.open(out)


def test_concurrent_writer_is_refused(tmp_path, toy_run, toy_module, corpus):
    studies = corpus(tmp_path, 2)
    with _versions.locked(tmp_path / "idx"), pytest.raises(IndexBusyError):
        _build(tmp_path, toy_run, toy_module, studies)


def test_failure_while_writing_keeps_previous_version(tmp_path, toy_run, toy_module, corpus, monkeypatch):
    _, out, _ = _build(tmp_path, toy_run, toy_module, corpus(tmp_path, 3))
    before = RetrievalIndex.load(out).version

    def broken_write(*args, **kwargs):
        raise OSError("disk full (simulated)")

    monkeypatch.setattr(_versions.faiss, "write_index", broken_write)
    with pytest.raises(OSError, match="disk full"):
        _build(tmp_path, toy_run, toy_module, corpus(tmp_path, 5))
    idx = RetrievalIndex.load(out)
    assert idx.version == before and len(idx.studies) == 3


_CRASH_SCRIPT = """
import os, sys
from pathlib import Path
from toy_embedder import ToyEmbedder
from lexray.index import IndexConfig, build_index, make_ref
from lexray.data.study import Image, Study

class Crashing(ToyEmbedder):
    def embed_texts(self, texts, batch_size=32):
        if self.calls["text"] >= 2:
            os._exit(3)  # a hard crash: no exception handlers, no cleanup
        return super().embed_texts(texts, batch_size)

tmp, run, out = map(Path, sys.argv[1:4])
studies = [Study(study_id=f"n{i}", patient_id="p", source="t", split="", findings=f"new report {i} lungs")
           for i in range(10)]
cfg = IndexConfig(model_class="toy_embedder:ToyEmbedder", modalities=("text",), chunk_size=3)
build_index(studies, Crashing(32), make_ref(run, cfg.model_class), out, cfg, image_root=tmp, progress=False)
"""


def test_hard_crash_during_build_leaves_previous_index_and_resumes(tmp_path, toy_run, toy_module, corpus):
    from toy_embedder import ToyEmbedder

    model, out, _ = _build(tmp_path, toy_run, toy_module, corpus(tmp_path, 4))
    before = RetrievalIndex.load(out).version
    script = tmp_path / "crash.py"
    script.write_text(textwrap.dedent(_CRASH_SCRIPT))
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent)}
    proc = subprocess.run(
        [sys.executable, str(script), str(tmp_path), str(toy_run), str(out)],
        env=env,
        capture_output=True,
        timeout=120,
    )
    assert proc.returncode == 3, proc.stderr.decode()[-2000:]
    idx = RetrievalIndex.load(out)  # the previous index is untouched and loads
    assert idx.version == before and sorted(idx.studies["study_id"]) == ["s0", "s1", "s2", "s3"]
    chunks = list((out / ".work").rglob("chunk-*.npz"))
    assert len(chunks) == 2  # two finished chunks of three items survived the crash
    sorted(chunks)[1].write_bytes(b"PK garbage")  # and one of them is damaged
    # Resuming embeds only the missing or damaged chunks (10 items in chunks of 3: 4 chunks, 1 reused).
    counting = ToyEmbedder(32)
    studies = [
        replace(s, findings=f"new report {i} lungs")
        for i, s in enumerate(corpus(tmp_path, 10, images_per_study=0))
    ]
    studies = [
        replace(s, study_id=f"n{i}", patient_id="p", source="t", split="", impression="")
        for i, s in enumerate(studies)
    ]
    cfg = IndexConfig(model_class=toy_module, modalities=("text",), chunk_size=3)
    report = build_index(
        studies, counting, make_ref(toy_run, toy_module), out, cfg, image_root=tmp_path, progress=False
    )
    assert report.resumed_chunks == 1 and counting.calls["text"] == 3
    idx = RetrievalIndex.load(out)
    assert len(idx.studies) == 10 and idx.version != before
    np.testing.assert_allclose(
        idx.vectors("text"), model.embed_texts([s.report_text for s in studies]), atol=1e-6
    )
    assert not list((out / ".work").iterdir())  # work chunks removed after commit
    assert not list(out.glob(".staging-*"))


def test_text_only_index_still_lists_images(tmp_path, toy_run, toy_module, corpus):
    cfg = IndexConfig(model_class=toy_module, modalities=("text",), chunk_size=4)
    model, out, report = _build(tmp_path, toy_run, toy_module, corpus(tmp_path, 3), cfg=cfg)
    assert report.vectors == {"text": 3}
    add_to_index(out, corpus(tmp_path, 2, start=3), model, image_root=tmp_path, progress=False)
    idx = RetrievalIndex.load(out)
    assert idx.modalities == ["text"] and len(idx.images) == 10  # images kept for display, not embedded
    assert [r.image_id for r in idx.study_images("s4")] == ["s4_0", "s4_1"]
    with pytest.raises(KeyError, match="no image vectors"):
        idx.search("image", np.zeros((1, 32), np.float32), 3)


def test_measure_recall_excludes_the_query_itself():
    import faiss

    from lexray.index._faiss import measure_recall

    rng = np.random.default_rng(0)
    x = rng.standard_normal((300, 16)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    exact = faiss.IndexFlatIP(16)
    exact.add(x)
    assert measure_recall(exact, x, 50) is None

    class SelfOnly:
        """Returns each stored query first, then arbitrary ids: only the trivial hit is right."""

        def search(self, q, k):
            ids = np.array([[int(np.argmax(x @ v))] + list(range(290, 290 + k - 1)) for v in q])
            return np.zeros(ids.shape, np.float32), ids

    assert measure_recall(SelfOnly(), x, 50) < 0.1  # self matches do not count
    hnsw = faiss.IndexHNSWFlat(16, 16, faiss.METRIC_INNER_PRODUCT)
    hnsw.add(x)
    hnsw.hnsw.efSearch = 300
    assert measure_recall(hnsw, x, 50) == pytest.approx(1.0)


class _Broken:
    """An embedder whose texts all fail, or whose vectors are narrower than it claims."""

    def __init__(self, width: int = 32) -> None:
        self.width = width

    embed_dim = 32

    def embed_texts(self, texts, batch_size=32):
        if self.width == 32:
            raise RuntimeError("CUDA error: device lost (simulated)")
        return np.ones((len(texts), self.width), np.float32)


def test_a_model_that_embeds_nothing_or_the_wrong_width_is_a_named_error(
    tmp_path, toy_run, toy_module, corpus
):
    from lexray.embedding import EmbeddingError

    cfg = IndexConfig(model_class=toy_module, modalities=("text",), chunk_size=4)
    ref = make_ref(toy_run, toy_module)
    with pytest.raises(EmbeddingError, match="device lost"):
        build_index(corpus(tmp_path, 3), _Broken(), ref, tmp_path / "a", cfg, progress=False)
    with pytest.raises(IndexFormatError, match="16-d vectors, expected 32-d"):
        build_index(corpus(tmp_path, 3), _Broken(16), ref, tmp_path / "b", cfg, progress=False)
    assert not (tmp_path / "a" / "CURRENT").exists() and not (tmp_path / "b" / "CURRENT").exists()
