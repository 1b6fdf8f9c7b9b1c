"""Turning an uploaded file into pixels safely: size limits first, header-only probing, then decoding."""

from __future__ import annotations

import io
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pydicom
from PIL import Image as PILImage
from PIL import UnidentifiedImageError
from pydicom.errors import InvalidDicomError

from lexray.data.images import ImageError, ImageLimits, load_radiograph
from lexray.errors import LexrayError


class UploadError(LexrayError, ValueError):
    """An upload the service refuses; ``status`` is the HTTP code (400 bad, 413 too large)."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


@dataclass(frozen=True)
class DecodedUpload:
    """An uploaded radiograph in lexray's grey-scale convention."""

    pixels: np.ndarray  # (H, W) float32 in [0, 1]
    kind: str  # "dicom" or the PIL format name ("PNG", "JPEG")


def _has_dicom_preamble(data: bytes) -> bool:
    return data[128:132] == b"DICM"


def _probe_dicom(data: bytes, filename: str) -> tuple[str, int, int]:
    try:
        ds = pydicom.dcmread(io.BytesIO(data), stop_before_pixels=True, force=True)
    except (InvalidDicomError, ValueError, TypeError, EOFError, OSError) as exc:
        raise UploadError(400, f"{filename}: not a readable DICOM image ({type(exc).__name__})") from exc
    if "Rows" not in ds or "Columns" not in ds:
        raise UploadError(400, f"{filename}: not a DICOM image (its header has no Rows and Columns)")
    try:
        return "dicom", int(ds.Columns), int(ds.Rows)
    except (TypeError, ValueError) as exc:
        raise UploadError(400, f"{filename}: the DICOM Rows and Columns are not numbers") from exc


def _probe(data: bytes, filename: str) -> tuple[str, int, int]:
    """(kind, width, height) from the header only, without decoding pixels.

    The bytes decide the kind, not the name: a PNG named ``x.dcm`` is a PNG. Only a file without a PNG
    or JPEG signature that is named ``.dcm`` is read as a DICOM without the 128-byte preamble.
    """
    if _has_dicom_preamble(data):
        return _probe_dicom(data, filename)
    try:
        with PILImage.open(io.BytesIO(data)) as im:  # lazy: reads the header only
            kind, (width, height) = str(im.format), im.size
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        if filename.lower().endswith((".dcm", ".dicom")):
            return _probe_dicom(data, filename)
        raise UploadError(400, f"{filename}: not a PNG, JPEG or DICOM image") from exc
    except PILImage.DecompressionBombError as exc:
        raise UploadError(413, f"{filename}: image too large ({exc})") from exc
    if kind not in ("PNG", "JPEG"):
        raise UploadError(400, f"{filename}: {kind} images are not accepted; send PNG, JPEG or DICOM")
    return kind, width, height


def decode_upload(data: bytes, filename: str, max_bytes: int, max_pixels: int) -> DecodedUpload:
    """Check and decode an uploaded PNG, JPEG or DICOM radiograph.

    Args:
        data: the uploaded bytes.
        filename: the client's file name (only used in messages and to recognise ``.dcm``).
        max_bytes: largest accepted size.
        max_pixels: largest accepted width x height, checked on the header before decoding.

    Raises:
        UploadError: 400 for empty, unreadable or unsupported files; 413 for files or images too large.
    """
    name = Path(filename or "upload").name
    if not data:
        raise UploadError(400, f"{name}: the uploaded file is empty")
    if len(data) > max_bytes:
        raise UploadError(413, f"{name}: {len(data):,} bytes exceeds the upload limit of {max_bytes:,} bytes")
    kind, width, height = _probe(data, name)
    if width * height > max_pixels:
        raise UploadError(413, f"{name}: {width}x{height} pixels exceeds the limit of {max_pixels:,} pixels")
    limits = ImageLimits(max_pixels=max_pixels, max_file_bytes=max_bytes)
    suffix = ".dcm" if kind == "dicom" else ".img"
    with tempfile.NamedTemporaryFile(suffix=suffix) as tmp:
        tmp.write(data)
        tmp.flush()
        try:
            radiograph = load_radiograph(tmp.name, limits)
        except ImageError as exc:
            # The loader names the temporary file; the client knows its file by its own name.
            raise UploadError(400, str(exc).replace(tmp.name, name)) from exc
    return DecodedUpload(pixels=radiograph.pixels, kind=kind.lower())


def to_png(pixels: np.ndarray, max_side: int) -> bytes:
    """8-bit grey PNG of (H, W) pixels in [0, 1], shrunk so the longest side is at most ``max_side``."""
    img = PILImage.fromarray((np.clip(pixels, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8))
    if max(img.size) > max_side:
        img.thumbnail((max_side, max_side), PILImage.BILINEAR)
    buf = io.BytesIO()
    img.save(buf, format="PNG", optimize=False)
    return buf.getvalue()
