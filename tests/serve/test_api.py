"""The HTTP API through FastAPI's test client: searches, studies, images, limits, auth and logging."""

from __future__ import annotations

import io
import logging

import numpy as np
import pydicom
import pytest
from fastapi.testclient import TestClient
from PIL import Image as PILImage
from pydicom.dataset import FileDataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from lexray.serve import ServeConfig, create_app
from lexray.serve._upload import UploadError, decode_upload


def _png_bytes(seed: int, size: int = 64, mode: str = "L", fmt: str = "PNG") -> bytes:
    rng = np.random.default_rng(seed)
    img = PILImage.fromarray((rng.random((size, size)) * 255).astype(np.uint8)).convert(mode)
    buf = io.BytesIO()
    img.save(buf, format=fmt)
    return buf.getvalue()


def _dicom_bytes(pixels_u16: np.ndarray) -> bytes:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.1"  # CR image storage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = FileDataset("x.dcm", {}, file_meta=meta, preamble=b"\0" * 128)
    ds.SOPClassUID, ds.SOPInstanceUID = meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID
    ds.Modality, ds.PhotometricInterpretation, ds.SamplesPerPixel = "CR", "MONOCHROME2", 1
    ds.Rows, ds.Columns = pixels_u16.shape
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    ds.PixelData = pixels_u16.astype(np.uint16).tobytes()
    buf = io.BytesIO()
    pydicom.dcmwrite(buf, ds, enforce_file_format=True)
    return buf.getvalue()


@pytest.fixture(scope="module")
def client(searcher) -> TestClient:
    return TestClient(create_app(searcher, ServeConfig(max_k=20)))


def test_healthz_and_page(client):
    h = client.get("/healthz").json()
    assert h["status"] == "ok" and h["studies"] == 8 and h["images"] == 16 and not h["auth"]
    assert sorted(h["modalities"]) == ["image", "text"]
    page = client.get("/")
    assert page.status_code == 200 and 'id="image-file"' in page.text and "static/app.js" in page.text
    assert "textContent" in client.get("/static/app.js").text
    assert client.get("/static/style.css").status_code == 200
    paths = client.get("/openapi.json").json()["paths"]
    assert {"/v1/search/image", "/v1/search/text", "/v1/studies/{study_id}", "/healthz"} <= set(paths)


def test_text_search_finds_exact_report(client, searcher):
    study = searcher.index.study("s3")
    r = client.post("/v1/search/text", json={"text": study.report_text, "k": 3, "target": "text"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert [h["rank"] for h in body["results"]] == [1, 2, 3]
    top = body["results"][0]
    assert top["study_id"] == "s3" and top["score"] == pytest.approx(1.0, abs=1e-4)
    assert top["findings"] == study.findings and len(top["images"]) == 2
    assert body["query"] == {"kind": "text", "target": "text", "k": 3, "width": None, "height": None,
                             "chars": len(study.report_text)}  # fmt: skip
    # Default target: images, each hit carrying the matched image.
    r = client.post("/v1/search/text", json={"text": "heart effusion"})
    hits = r.json()["results"]
    assert len(hits) == 5 and all(h["matched_image"] is not None for h in hits)
    scores = [h["score"] for h in hits]
    assert scores == sorted(scores, reverse=True)


def test_image_search_png_and_served_images(client, searcher):
    rec = searcher.index.study_images("s5")[1]
    with open(rec.path, "rb") as fh:
        data = fh.read()
    r = client.post(
        "/v1/search/image",
        files={"file": ("film.png", data, "image/png")},
        data={"k": "2", "target": "image"},
    )
    assert r.status_code == 200, r.text
    top = r.json()["results"][0]
    assert top["study_id"] == "s5" and top["matched_image"]["id"] == rec.row
    assert top["score"] == pytest.approx(1.0, abs=1e-4)
    r = client.post("/v1/search/image", files={"file": ("film.png", data, "image/png")})
    body = r.json()
    assert len(body["results"]) == 5 and body["query"]["width"] == 64 and body["query"]["target"] == "text"
    img = client.get("/" + top["matched_image"]["url"])
    assert img.status_code == 200 and img.headers["content-type"] == "image/png"
    served = np.asarray(PILImage.open(io.BytesIO(img.content)))
    original = np.asarray(PILImage.open(rec.path))
    np.testing.assert_allclose(served.astype(int), original.astype(int), atol=1)
    small = PILImage.open(io.BytesIO(client.get(f"/v1/images/{rec.row}?max_side=32").content))
    assert max(small.size) == 32


def test_image_search_dicom(client):
    rng = np.random.default_rng(0)
    pixels = (rng.random((80, 64)) * 4000).astype(np.uint16)
    r = client.post(
        "/v1/search/image", files={"file": ("film.dcm", _dicom_bytes(pixels), "application/dicom")}
    )
    assert r.status_code == 200, r.text
    assert r.json()["query"]["width"] == 64 and r.json()["query"]["height"] == 80


@pytest.mark.parametrize(
    ("files", "data", "status", "reason"),
    [
        ({"file": ("a.png", b"", "image/png")}, {}, 400, "empty"),
        ({"file": ("a.png", b"\x89PNG garbage", "image/png")}, {}, 400, "not a PNG, JPEG or DICOM"),
        ({"file": ("a.dcm", b"\0" * 128 + b"DICMxxxx", "application/dicom")}, {}, 400, "DICOM"),
        ({"file": ("a.gif", _png_bytes(4, fmt="GIF"), "image/gif")}, {}, 400, "GIF"),
        ({"file": ("a.png", _png_bytes(1), "image/png")}, {"k": "0"}, 422, "k must be between 1 and 20"),
        ({"file": ("a.png", _png_bytes(1), "image/png")}, {"k": "21"}, 422, "k must be between 1 and 20"),
        ({"file": ("a.png", _png_bytes(1), "image/png")}, {"k": "many"}, 422, "k"),
        ({"file": ("a.png", _png_bytes(1), "image/png")}, {"target": "audio"}, 422, "target"),
        ({}, {}, 422, "file"),
    ],
)
def test_bad_image_uploads_get_clean_4xx(client, files, data, status, reason):
    r = client.post("/v1/search/image", files=files or None, data=data)
    assert r.status_code == status, r.text
    assert reason in r.json()["detail"]


def test_upload_limits(searcher):
    small = TestClient(create_app(searcher, ServeConfig(max_upload_bytes=20_000, max_pixels=50 * 50)))
    r = small.post("/v1/search/image", files={"file": ("big.png", _png_bytes(2, size=64), "image/png")})
    assert r.status_code == 413 and "64x64 pixels exceeds the limit of 2,500" in r.json()["detail"]
    noisy = _png_bytes(3, size=200, mode="RGB")  # incompressible: well over 20 kB
    r = small.post("/v1/search/image", files={"file": ("big.png", noisy, "image/png")})
    assert r.status_code == 413 and "exceeds the upload limit" in r.json()["detail"]
    with pytest.raises(UploadError) as err:
        decode_upload(noisy, "/secret/dir/big.png", max_bytes=10**9, max_pixels=10)
    assert err.value.status == 413 and "/secret/dir" not in err.value.reason


@pytest.mark.parametrize(
    ("body", "status", "reason"),
    [
        ({"text": "   "}, 400, "blank"),
        ({"text": ""}, 422, "text"),
        ({"text": "x" * 9000}, 422, "limit is 8000"),
        ({"text": "lungs", "k": 0}, 422, "k"),
        ({"text": "lungs", "k": 50}, 422, "k must be between 1 and 20"),
        ({"text": "lungs", "target": "video"}, 422, "target"),
        ({"k": 3}, 422, "text"),
    ],
)
def test_bad_text_queries_get_clean_4xx(client, body, status, reason):
    r = client.post("/v1/search/text", json=body)
    assert r.status_code == status, r.text
    assert reason in r.json()["detail"]


def test_studies_and_images_only_from_the_index(client):
    s = client.get("/v1/studies/s2").json()
    assert s["study_id"] == "s2" and [im["view"] for im in s["images"]] == ["PA", "LATERAL"]
    assert client.get("/v1/studies/nope").status_code == 404
    assert client.get("/v1/images/16").status_code == 404
    assert client.get("/v1/images/-1").status_code == 404
    assert client.get("/v1/images/abc").status_code == 422
    assert client.get("/v1/images/0?max_side=5").status_code == 422
    # Paths never reach the filesystem: only integer ids of indexed images exist.
    assert client.get("/v1/images/..%2F..%2Fetc%2Fpasswd").status_code in (404, 422)
    assert client.get("/static/../../index/store.py").status_code == 404


def test_bearer_token(searcher):
    c = TestClient(create_app(searcher, token="s3cret"))
    assert c.get("/healthz").status_code == 200 and c.get("/healthz").json()["auth"]
    assert c.get("/v1/studies/s1").status_code == 401
    r = c.get("/v1/studies/s1", headers={"Authorization": "Bearer wrong"})
    assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer"
    assert c.get("/v1/images/0").status_code == 401
    assert c.post("/v1/search/text", json={"text": "lungs"}).status_code == 401
    ok = c.get("/v1/studies/s1", headers={"Authorization": "Bearer s3cret"})
    assert ok.status_code == 200


def test_logs_never_contain_report_or_query_text(client, searcher, caplog, secret_words):
    caplog.set_level(logging.DEBUG)
    study = searcher.index.study("s0")
    client.post("/v1/search/text", json={"text": study.report_text + " querymarker", "target": "text"})
    client.post("/v1/search/text", json={"text": "x" * 9000 + " querymarker"})
    client.get("/v1/studies/s0")
    rec = searcher.index.study_images("s1")[0]
    client.post("/v1/search/image", files={"file": ("f.png", open(rec.path, "rb").read(), "image/png")})
    messages = [r.getMessage() for r in caplog.records]
    assert any("POST /v1/search/text -> 200" in m for m in messages)
    assert any("GET /v1/studies/s0 -> 200" in m for m in messages)
    for secret in (*secret_words, "querymarker", study.findings):
        assert not any(secret in m for m in messages), secret
