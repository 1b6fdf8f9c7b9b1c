"""Uploads are recognised by their bytes, not their names: a PNG named x.dcm is searched as a PNG."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image as PILImage

from lexray.serve._upload import UploadError, decode_upload


def _png(size: int = 32) -> bytes:
    buf = io.BytesIO()
    PILImage.fromarray((np.random.default_rng(0).random((size, size)) * 255).astype(np.uint8)).save(
        buf, "PNG"
    )
    return buf.getvalue()


@pytest.mark.parametrize("name", ["x.dcm", "scan.DICOM", "x.png"])
def test_png_is_a_png_whatever_its_name(name: str) -> None:
    decoded = decode_upload(_png(), name, max_bytes=10**6, max_pixels=10**6)
    assert decoded.kind == "png" and decoded.pixels.shape == (32, 32)


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"garbage" * 50, "not a DICOM image (its header has no Rows and Columns)"),
        (b"\0" * 128 + b"DICM" + b"\x02\x00", "no Rows and Columns"),
    ],
)
def test_bad_dicom_named_dcm_is_a_clean_400(data: bytes, reason: str) -> None:
    with pytest.raises(UploadError) as err:
        decode_upload(data, "x.dcm", max_bytes=10**6, max_pixels=10**6)
    assert err.value.status == 400 and reason in err.value.reason
    assert "AttributeError" not in err.value.reason


def test_api_answers_png_named_dcm(searcher) -> None:  # noqa: ANN001
    from fastapi.testclient import TestClient

    from lexray.serve import create_app

    client = TestClient(create_app(searcher))
    r = client.post("/v1/search/image", files={"file": ("x.dcm", _png(64), "application/dicom")})
    assert r.status_code == 200 and r.json()["query"]["width"] == 64
