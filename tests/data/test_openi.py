"""Open-i source: synthetic archives made here (incl. broken files) and the real archive in ../shared."""

from __future__ import annotations

import io
import json
import tarfile
from collections import Counter
from pathlib import Path

import pytest

from lexray.data.sources.openi import load_openi


def _xml(
    n: int, findings: str, impression: str, images: list[str], mesh: tuple[str, ...] = ("normal",)
) -> bytes:
    abstract = "".join(
        f'<AbstractText Label="{label}">{text}</AbstractText>'
        for label, text in (
            ("COMPARISON", "None."),
            ("INDICATION", "Cough"),
            ("FINDINGS", findings),
            ("IMPRESSION", impression),
        )
    )
    parents = "".join(
        f'<parentImage id="{i}"><caption>Xray Chest PA and Lateral</caption></parentImage>' for i in images
    )
    major = "".join(f"<major>{m}</major>" for m in mesh)
    return (
        f'<?xml version="1.0" encoding="utf-8"?><eCitation><uId id="CXR{n}"/><MedlineCitation><Article>'
        f"<Abstract>{abstract}</Abstract></Article></MedlineCitation><MeSH>{major}"
        f"<automatic>Cardiomegaly/mild</automatic></MeSH>{parents}</eCitation>"
    ).encode()


def _archive(tmp_path: Path) -> Path:
    files = {
        "1.xml": _xml(
            1,
            "Heart normal.\n   Lungs clear.",
            "Normal chest x-XXXX.",
            ["CXR1_1_IM-0001-3001", "CXR1_1_IM-0001-4001"],
        ),
        "2.xml": _xml(
            2, "", "No acute disease.", ["CXR2_IM-0652-1001"], mesh=("Opacity/lung/base/left", "Lung")
        ),
        "3.xml": _xml(3, "Effusion.", "", []),
        "4.xml": _xml(4, "", "", ["CXR4_IM-2050-1001"]),  # empty report
        "5.xml": b"<?xml version='1.0'?><eCitation><MeSH>",  # truncated XML
        "6.xml": _xml(6, "Caf\xe9", "ok", []).replace(
            b"Caf\xc3\xa9", b"Caf\xe9"
        ),  # Latin-1 byte in a UTF-8 file
        "10.xml": _xml(10, "Clear.", "Normal.", ["CXR10_IM-0002-1001", "CXR10_IM-0002-2001"]),
    }
    path = tmp_path / "NLMCXR_reports.tgz"
    with tarfile.open(path, "w:gz") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(f"ecgen-radiology/{name}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def test_archive_records_rejects_and_fields(tmp_path):
    result = load_openi(_archive(tmp_path), image_root=tmp_path / "png")
    assert [s.study_id for s in result.studies] == ["openi-1", "openi-2", "openi-3", "openi-10"]
    assert Counter(r.reason for r in result.rejects) == {"empty_report": 1, "bad_xml": 2}
    assert {r.record for r in result.rejects} == {"4.xml", "5.xml", "6.xml"}
    s1 = result.studies[0]
    assert s1.findings == "Heart normal. Lungs clear." and s1.impression == "Normal chest x-XXXX."
    assert s1.indication == "Cough" and s1.comparison == "None."
    assert s1.report.splitlines()[-1] == "IMPRESSION: Normal chest x-XXXX."
    assert [i.path for i in s1.images] == [
        str(tmp_path / "png" / "CXR1_1_IM-0001-3001.png"),
        str(tmp_path / "png" / "CXR1_1_IM-0001-4001.png"),
    ]
    assert s1.images[0].image_id == "CXR1_1_IM-0001-3001" and s1.images[0].view is None
    assert result.studies[1].extra["mesh_major"] == "Opacity/lung/base/left;Lung"
    assert result.studies[1].extra["mesh_automatic"] == "Cardiomegaly/mild"
    assert result.studies[2].images == ()
    assert all(s.patient_id == s.study_id and s.source == "openi" for s in result.studies)
    assert len(load_openi(_archive(tmp_path), keep_empty=True).studies) == 5


def test_extracted_folder_equals_archive(tmp_path):
    archive = _archive(tmp_path)
    out = tmp_path / "x"
    with tarfile.open(archive) as tar:
        tar.extractall(out, filter="data")
    assert load_openi(out).studies == load_openi(archive).studies
    assert load_openi(out / "ecgen-radiology").studies == load_openi(archive).studies
    assert load_openi(tmp_path).studies == load_openi(archive).studies  # folder holding the .tgz
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_openi(tmp_path / "missing.tgz")


def test_r2gen_and_promptmrg_split_files(tmp_path):
    archive = _archive(tmp_path)
    r2gen = tmp_path / "r2gen.json"
    r2gen.write_text(
        json.dumps(
            {
                "train": [{"id": "CXR1_1_IM-0001", "image_path": ["CXR1_1_IM-0001/0.png"]}],
                "val": [{"id": "CXR2_IM-0652-1001", "image_path": ["CXR2_IM-0652-1001/0.png"]}],
                "    ": [{"id": "CXR10_IM-0002", "image_path": []}, {"id": "CXR999_IM-9", "image_path": []}],
            }
        )
    )
    splits = {s.study_id: s.split for s in load_openi(archive, r2gen).studies}
    assert splits == {"openi-1": "train", "openi-2": "val", "openi-3": "", "openi-10": "test"}
    assert load_openi(archive, r2gen).studies[0].extra["split_id"] == "CXR1_1_IM-0001"
    unlisted = load_openi(archive, r2gen, unlisted_split="train").studies
    assert {s.study_id: s.split for s in unlisted}["openi-3"] == "train"

    promptmrg = tmp_path / "promptmrg.json"
    promptmrg.write_text(
        json.dumps(
            {
                "train": [{"id": "3", "report": "", "image_path": []}],
                "test": [{"id": "x", "image_path": ["CXR10_IM-0002-1001.png"]}],
            }
        )
    )
    splits = {s.study_id: s.split for s in load_openi(archive, promptmrg).studies}
    assert splits == {"openi-1": "", "openi-2": "", "openi-3": "train", "openi-10": "test"}


def test_seeded_split_is_deterministic_and_seed_dependent(tmp_path):
    archive = _archive(tmp_path)
    a = [s.split for s in load_openi(archive, seed=1, test_fraction=0.5).studies]
    assert a == [s.split for s in load_openi(archive, seed=1, test_fraction=0.5).studies]
    assert set(a) <= {"train", "val", "test"}
    assert any(
        [s.split for s in load_openi(archive, seed=k, test_fraction=0.5).studies] != a for k in range(2, 12)
    )


@pytest.mark.slow
def test_real_open_i_archive_counts(openi_dir):
    archive = openi_dir / "NLMCXR_reports.tgz"
    everything = load_openi(archive, keep_empty=True).studies
    assert len(everything) == 3955
    assert sum(bool(s.images) for s in everything) == 3851
    assert sum(bool(s.findings) for s in everything) == 3425
    assert sum(bool(s.impression) for s in everything) == 3921
    assert sum(len(s.images) for s in everything) == 7470

    result = load_openi(archive, openi_dir / "r2gen_split.json")
    assert len(result.studies) + len(result.rejects) == 3955
    assert {r.reason for r in result.rejects} == {"empty_report"}
    counts = Counter(s.split for s in result.studies)
    assert (counts["train"], counts["val"], counts["test"]) == (2069, 296, 590)
    # R2Gen keeps studies with findings and two images; every mapped study must satisfy that.
    assert all(s.findings and len(s.images) >= 2 for s in result.studies if s.split)

    promptmrg = Counter(s.split for s in load_openi(archive, openi_dir / "promptmrg_split.json").studies)
    assert (promptmrg["train"], promptmrg["val"], promptmrg["test"]) == (3062, 382, 382)


def test_read_studies_from_open_i_or_a_manifest(tmp_path):
    from lexray.data.manifest import read_studies, write_manifest

    archive = _archive(tmp_path)
    from_archive = read_studies(openi=archive)
    assert from_archive == load_openi(archive).studies
    manifest = write_manifest(from_archive[:2], tmp_path / "m.parquet")
    assert read_studies(manifest=manifest, openi=archive) == from_archive[:2]  # the manifest wins
    with pytest.raises(ValueError, match="give a manifest"):
        read_studies()
