"""Radiograph loading (PNG/JPEG 8/16-bit, DICOM) into one grey-scale convention, and resize + pad.

Every loader returns a :class:`Radiograph` whose ``pixels`` are float32 ``(H, W)`` in ``[0, 1]`` with
0 = black, the way a radiologist sees the film (air dark, bone bright):

* PNG/JPEG: colour is converted to luma; 8-bit data is divided by 255 and 16-bit data by 65535 (the
  container's range, so intensities stay comparable across files); EXIF orientation is applied.
* DICOM (pydicom): the Modality LUT (rescale slope/intercept) and then the VOI LUT or window
  (centre/width, with the LINEAR / LINEAR_EXACT / SIGMOID functions of DICOM PS3.3 C.11.2.1.2) are
  applied; without either the full range is min-max scaled. MONOCHROME1 (0 = white) is inverted. The
  first frame of a multi-frame object is used. Pixel spacing (mm, row then column) comes from
  PixelSpacing or ImagerPixelSpacing when it is positive.

Sizes are checked from the header *before* any pixel data is decoded, which protects against
decompression bombs (a tiny file that expands to gigabytes) and absurd dimensions; see
:class:`ImageLimits`. Every failure raises :class:`ImageError` naming the file.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image as PILImage
from PIL import ImageOps, UnidentifiedImageError

from lexray.errors import LexrayError

DICOM_SUFFIXES = (".dcm", ".dicom", ".dic")


class ImageError(LexrayError, ValueError):
    """A radiograph cannot be read: unreadable, corrupt, unsupported or of an absurd size."""


@dataclass(frozen=True)
class ImageLimits:
    """Checks applied to an image header before its pixels are decoded."""

    max_pixels: int = 80_000_000  # largest H*W accepted (a 14x17 inch detector at 0.1 mm is ~24 M)
    max_side: int = 16_384  # largest height or width in pixels
    min_side: int = 16  # smallest height or width in pixels
    max_aspect: float = 8.0  # largest long side / short side ratio
    max_file_bytes: int = 1 << 30  # largest file size on disk (1 GiB)


DEFAULT_LIMITS = ImageLimits()


@dataclass(frozen=True)
class Radiograph:
    """A decoded radiograph in lexray's grey-scale convention."""

    pixels: np.ndarray  # (H, W) float32 in [0, 1]; 0 = black (air), 1 = white (bone, metal)
    pixel_spacing: tuple[float, float] | None  # (row, column) spacing in mm, None when unknown
    source_path: str  # the file it was read from


def _check_size(path: Path, height: int, width: int, limits: ImageLimits) -> None:
    if height < limits.min_side or width < limits.min_side:
        raise ImageError(f"{path}: {width}x{height} pixels is smaller than {limits.min_side} px on a side")
    if height > limits.max_side or width > limits.max_side or height * width > limits.max_pixels:
        raise ImageError(
            f"{path}: {width}x{height} pixels exceeds the limits (side <= {limits.max_side}, "
            f"pixels <= {limits.max_pixels:,}); a decompression bomb or a non-radiograph. Raise "
            "ImageLimits.max_pixels / max_side if the file is genuine"
        )
    aspect = max(height, width) / min(height, width)
    if aspect > limits.max_aspect:
        raise ImageError(f"{path}: aspect ratio {aspect:.1f} exceeds {limits.max_aspect}; not a radiograph")


# What the file says it is decides, not its name: a PNG or JPEG named "x.dcm" is read as what it is.
_PIL_MAGIC = (b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff")
# The raster formats accepted besides DICOM, as Pillow names them (MPO: multi-picture JPEG).
PIL_FORMATS = ("PNG", "JPEG", "MPO")


def _is_dicom(path: Path) -> bool:
    with path.open("rb") as f:
        head = f.read(132)
    if head[128:132] == b"DICM":
        return True
    # Old DICOM files have no preamble: the suffix is the only sign.
    return not head.startswith(_PIL_MAGIC) and path.suffix.lower() in DICOM_SUFFIXES


def load_radiograph(path: str | Path, limits: ImageLimits = DEFAULT_LIMITS) -> Radiograph:
    """Read a PNG, JPEG or DICOM radiograph into float32 ``(H, W)`` in ``[0, 1]`` with 0 = black.

    Other formats (GIF, TIFF, BMP, WebP, ...) are refused, as the HTTP API refuses them.

    Args:
        path: the image file; DICOM is recognised by its ``DICM`` preamble, or by a ``.dcm`` suffix on
            a file that is not a PNG or JPEG.
        limits: size checks made on the header before decoding.

    Raises:
        ImageError: the file is missing, unreadable, corrupt, of an unsupported kind or too large.
    """
    p = Path(path)
    try:
        size = p.stat().st_size
    except OSError as exc:
        raise ImageError(f"{p}: cannot read the image file ({exc.strerror or exc})") from exc
    if size == 0:
        raise ImageError(f"{p}: the image file is empty")
    if size > limits.max_file_bytes:
        raise ImageError(f"{p}: {size:,} bytes exceeds ImageLimits.max_file_bytes={limits.max_file_bytes:,}")
    if _is_dicom(p):
        return _load_dicom(p, limits)
    return _load_pil(p, limits)


def _load_pil(path: Path, limits: ImageLimits) -> Radiograph:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", PILImage.DecompressionBombWarning)
            with PILImage.open(path) as im:
                if im.format not in PIL_FORMATS:
                    raise ImageError(
                        f"{path}: {im.format} images are not accepted; convert it to PNG (or give DICOM/JPEG)"
                    )
                width, height = im.size
                _check_size(path, height, width, limits)
                im = ImageOps.exif_transpose(im)
                pixels = _pil_to_unit(im, path)
    except ImageError:
        raise
    except (PILImage.DecompressionBombError, PILImage.DecompressionBombWarning) as exc:
        raise ImageError(
            f"{path}: the declared size exceeds the limits; a decompression bomb ({exc})"
        ) from exc
    except UnidentifiedImageError as exc:
        raise ImageError(f"{path}: not a readable PNG/JPEG/DICOM image ({exc})") from exc
    except (OSError, SyntaxError, ValueError) as exc:  # truncated or corrupt data raise these in Pillow
        raise ImageError(f"{path}: corrupt image data ({exc})") from exc
    return Radiograph(pixels=pixels, pixel_spacing=None, source_path=str(path))


def _pil_to_unit(im: PILImage.Image, path: Path) -> np.ndarray:
    mode = im.mode
    if mode in ("I;16", "I;16L", "I;16B", "I;16N"):
        return (np.asarray(im, dtype=np.float32) / 65535.0).astype(np.float32)
    if mode == "I":  # 32-bit signed container; 16-bit PNGs decode to it in some Pillow builds
        arr = np.asarray(im, dtype=np.float64)
        if arr.min() >= 0 and arr.max() <= 65535:
            return (arr / 65535.0).astype(np.float32)
        return _minmax(arr)
    if mode == "F":
        return _minmax(np.asarray(im, dtype=np.float64))
    if mode not in ("L", "1", "P", "RGB", "RGBA", "LA", "CMYK", "YCbCr", "PA", "La", "RGBa"):
        raise ImageError(f"{path}: unsupported image mode {mode!r}")
    return (np.asarray(im.convert("L"), dtype=np.float32) / 255.0).astype(np.float32)


def _minmax(arr: np.ndarray) -> np.ndarray:
    lo, hi = float(np.min(arr)), float(np.max(arr))
    if hi <= lo:
        return np.zeros(arr.shape, dtype=np.float32)
    return ((arr - lo) / (hi - lo)).astype(np.float32)


def _first(value: object) -> float:
    from pydicom.multival import MultiValue

    # Window centre/width may be multi-valued (several presets); the first is the default one.
    if isinstance(value, (list, tuple, MultiValue)):
        value = value[0]
    return float(value)  # type: ignore[arg-type]


def _window(arr: np.ndarray, center: float, width: float, function: str) -> np.ndarray:
    """DICOM VOI windowing (PS3.3 C.11.2.1.2) straight to [0, 1]."""
    if function == "SIGMOID":
        return (1.0 / (1.0 + np.exp(-4.0 * (arr - center) / width))).astype(np.float32)
    if function == "LINEAR_EXACT":
        out = (arr - center) / width + 0.5
    else:  # LINEAR: the standard's half-pixel offsets
        if width < 1:
            raise ValueError(f"window width {width} < 1 is invalid for the LINEAR function")
        out = (arr - (center - 0.5)) / (width - 1) + 0.5
    return np.clip(out, 0.0, 1.0).astype(np.float32)


def _spacing(ds: object) -> tuple[float, float] | None:
    for key in ("PixelSpacing", "ImagerPixelSpacing"):
        value = getattr(ds, key, None)
        if value is None:
            continue
        try:
            row, col = float(value[0]), float(value[1])
        except (TypeError, ValueError, IndexError):
            continue
        if row > 0 and col > 0 and math.isfinite(row) and math.isfinite(col):
            return (row, col)
    return None


def _load_dicom(path: Path, limits: ImageLimits) -> Radiograph:
    import pydicom
    from pydicom.errors import InvalidDicomError
    from pydicom.pixels import apply_modality_lut, apply_voi_lut

    try:
        header = pydicom.dcmread(path, stop_before_pixels=True, force=True)
        rows, cols = int(header.get("Rows", 0) or 0), int(header.get("Columns", 0) or 0)
    except (InvalidDicomError, OSError, ValueError, TypeError, AttributeError) as exc:
        raise ImageError(f"{path}: not a readable DICOM file ({exc})") from exc
    if not rows or not cols:
        raise ImageError(f"{path}: DICOM without Rows/Columns (no image pixel module); not an image object")
    _check_size(path, rows, cols, limits)
    try:
        ds = pydicom.dcmread(path, force=True)
        arr = ds.pixel_array
    except (OSError, ValueError, TypeError, AttributeError, RuntimeError, NotImplementedError) as exc:
        hint = ""
        if "handler" in str(exc).lower() or "plugin" in str(exc).lower():
            hint = " (compressed transfer syntax: install pylibjpeg[all] or python-gdcm)"
        raise ImageError(f"{path}: cannot decode DICOM pixel data: {exc}{hint}") from exc
    frames = int(ds.get("NumberOfFrames", 1) or 1)
    samples = int(ds.get("SamplesPerPixel", 1) or 1)
    if frames > 1:
        arr = arr[0]
    photometric = str(ds.get("PhotometricInterpretation", "MONOCHROME2")).upper()
    try:
        if samples > 1:
            # Colour secondary captures: pydicom returns RGB for RGB and (by default) for YBR.
            rgb = np.asarray(arr, dtype=np.float64)
            max_value = float(2 ** int(ds.get("BitsStored", 8)) - 1)
            luma = rgb[..., 0] * 0.299 + rgb[..., 1] * 0.587 + rgb[..., 2] * 0.114  # (H, W)
            pixels = np.clip(luma / max_value, 0.0, 1.0).astype(np.float32)
        else:
            values = np.asarray(apply_modality_lut(arr, ds), dtype=np.float64)  # (H, W)
            if "VOILUTSequence" in ds:
                # A VOI LUT is indexed by (integer) modality values.
                indices = np.rint(values).astype(np.int64)
                pixels = _minmax(np.asarray(apply_voi_lut(indices, ds, prefer_lut=True), dtype=np.float64))
            elif ds.get("WindowCenter") is not None and ds.get("WindowWidth") is not None:
                function = str(ds.get("VOILUTFunction", "LINEAR") or "LINEAR").upper()
                pixels = _window(values, _first(ds.WindowCenter), _first(ds.WindowWidth), function)
            else:
                pixels = _minmax(values)
            if photometric == "MONOCHROME1":
                pixels = (1.0 - pixels).astype(np.float32)
    except (ValueError, TypeError, KeyError, IndexError) as exc:
        raise ImageError(f"{path}: invalid DICOM grey-scale transform ({exc})") from exc
    if pixels.ndim != 2:
        raise ImageError(f"{path}: expected a 2-D image after decoding, got shape {pixels.shape}")
    return Radiograph(pixels=np.ascontiguousarray(pixels), pixel_spacing=_spacing(ds), source_path=str(path))


def resize_pad(pixels: np.ndarray, size: int, fill: float = 0.0) -> np.ndarray:
    """Resize so the longer side is ``size`` (aspect kept, antialiased) and pad the rest, centred.

    Args:
        pixels: float ``(H, W)`` image, e.g. :attr:`Radiograph.pixels`.
        size: the output side length.
        fill: the padding value (0 = black, like the border of a radiograph).

    Returns:
        float32 ``(size, size)``.
    """
    if pixels.ndim != 2:
        raise ValueError(f"resize_pad expects a 2-D (H, W) array, got shape {pixels.shape}")
    if size < 1:
        raise ValueError(f"size must be positive, got {size}")
    h, w = pixels.shape
    scale = size / max(h, w)
    new_h, new_w = max(1, round(h * scale)), max(1, round(w * scale))
    img = PILImage.fromarray(np.asarray(pixels, dtype=np.float32), mode="F")
    if (new_h, new_w) != (h, w):
        # Lanczos on a float image: antialiased downsampling without an 8-bit round trip.
        img = img.resize((new_w, new_h), resample=PILImage.Resampling.LANCZOS)
    resized = np.asarray(img, dtype=np.float32)  # (new_h, new_w)
    lo, hi = float(np.min(pixels)), float(np.max(pixels))
    resized = np.clip(resized, lo, hi)  # Lanczos overshoots at edges; keep the input's range
    out = np.full((size, size), fill, dtype=np.float32)
    top, left = (size - new_h) // 2, (size - new_w) // 2
    out[top : top + new_h, left : left + new_w] = resized
    return out
