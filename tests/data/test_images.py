"""Radiograph loading: PNG/JPEG 8/16-bit, DICOM (real RG1_UNCR.dcm and synthetic), limits, resize_pad."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image as PILImage

from lexray.data.images import ImageError, ImageLimits, load_radiograph, resize_pad


def _ramp(h: int = 40, w: int = 60) -> np.ndarray:
    return np.tile(np.linspace(0, 1, w), (h, 1))  # (H, W), dark left -> bright right


def test_png_8_and_16_bit(tmp_path):
    ramp = _ramp()
    p8 = tmp_path / "a8.png"
    PILImage.fromarray((ramp * 255).round().astype(np.uint8)).save(p8)
    r8 = load_radiograph(p8)
    assert r8.pixels.dtype == np.float32 and r8.pixels.shape == (40, 60)
    np.testing.assert_allclose(r8.pixels, (ramp * 255).round() / 255, atol=1e-6)
    assert r8.pixel_spacing is None and r8.source_path == str(p8)

    p16 = tmp_path / "a16.png"
    PILImage.fromarray((ramp * 65535).round().astype(np.uint16)).save(p16)
    r16 = load_radiograph(p16)
    np.testing.assert_allclose(r16.pixels, (ramp * 65535).round() / 65535, atol=1e-6)
    assert r16.pixels.max() == pytest.approx(1.0)


def test_jpeg_rgb_becomes_luma_and_exif_orientation_applies(tmp_path):
    rgb = np.zeros((40, 60, 3), dtype=np.uint8)
    rgb[..., 1] = 200  # pure green: luma 0.587 * 200
    path = tmp_path / "c.jpg"
    PILImage.fromarray(rgb).save(path, quality=95)
    r = load_radiograph(path)
    assert r.pixels.shape == (40, 60)
    assert abs(float(r.pixels.mean()) - 0.587 * 200 / 255) < 0.02

    im = PILImage.fromarray((_ramp() * 255).astype(np.uint8))
    exif = PILImage.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to display"
    rotated = tmp_path / "rot.jpg"
    im.save(rotated, exif=exif.tobytes())
    assert load_radiograph(rotated).pixels.shape == (60, 40)


def _png_header_only(path: Path, width: int, height: int) -> None:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    body = chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + chunk(b"IEND", b"")
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + body)


def test_decompression_bomb_and_absurd_sizes_are_refused_before_decoding(tmp_path):
    bomb = tmp_path / "bomb.png"
    _png_header_only(bomb, 100_000, 100_000)  # 10 G pixels declared in a ~100-byte file
    assert bomb.stat().st_size < 200
    with pytest.raises(ImageError, match="bomb.png.*exceeds the limits"):
        load_radiograph(bomb)
    strip = tmp_path / "strip.png"
    PILImage.fromarray(np.zeros((20, 400), dtype=np.uint8)).save(strip)
    with pytest.raises(ImageError, match="aspect ratio"):
        load_radiograph(strip)
    tiny = tmp_path / "tiny.png"
    PILImage.fromarray(np.zeros((8, 8), dtype=np.uint8)).save(tiny)
    with pytest.raises(ImageError, match="smaller than"):
        load_radiograph(tiny)
    ok = tmp_path / "ok.png"
    PILImage.fromarray(np.zeros((100, 100), dtype=np.uint8)).save(ok)
    with pytest.raises(ImageError, match="exceeds"):
        load_radiograph(ok, ImageLimits(max_pixels=5_000))
    with pytest.raises(ImageError, match="max_file_bytes"):
        load_radiograph(ok, ImageLimits(max_file_bytes=10))


def test_missing_corrupt_and_non_image_files_name_the_file(tmp_path):
    with pytest.raises(ImageError, match="nope.png: cannot read"):
        load_radiograph(tmp_path / "nope.png")
    good = tmp_path / "good.png"
    PILImage.fromarray((_ramp(200, 200) * 255).astype(np.uint8)).save(good)
    truncated = tmp_path / "trunc.png"
    truncated.write_bytes(good.read_bytes()[:200])
    with pytest.raises(ImageError, match="trunc.png"):
        load_radiograph(truncated)
    text = tmp_path / "notes.png"
    text.write_text("this is not an image")
    with pytest.raises(ImageError, match="notes.png: not a readable"):
        load_radiograph(text)
    empty = tmp_path / "empty.jpg"
    empty.write_bytes(b"")
    with pytest.raises(ImageError, match="empty"):
        load_radiograph(empty)


def _write_dicom(path: Path, pixels: np.ndarray, **attrs) -> Path:
    from pydicom import Dataset
    from pydicom.dataset import FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, SecondaryCaptureImageStorage, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.Modality = "CR"
    ds.Rows, ds.Columns = pixels.shape
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated = 16
    ds.BitsStored = 12
    ds.HighBit = 11
    ds.PixelRepresentation = 0
    for k, v in attrs.items():
        setattr(ds, k, v)
    ds.PixelData = pixels.astype(np.uint16).tobytes()
    ds.save_as(path, enforce_file_format=True)
    return path


def test_dicom_window_monochrome_and_spacing(tmp_path):
    values = np.tile(np.arange(0, 4000, 50, dtype=np.uint16), (40, 1))  # (40, 80), 0..3950
    plain = load_radiograph(_write_dicom(tmp_path / "plain.dcm", values))
    np.testing.assert_allclose(plain.pixels, values / 3950.0, atol=1e-6)  # no window: min-max
    assert plain.pixel_spacing is None

    win = load_radiograph(
        _write_dicom(
            tmp_path / "w.dcm", values, WindowCenter=2000, WindowWidth=1001, PixelSpacing=[0.2, 0.25]
        )
    )
    oracle = np.clip((values - 1999.5) / 1000.0 + 0.5, 0, 1)  # DICOM LINEAR window
    np.testing.assert_allclose(win.pixels, oracle, atol=1e-6)
    assert win.pixel_spacing == (0.2, 0.25)

    rescaled = load_radiograph(
        _write_dicom(
            tmp_path / "r.dcm",
            values,
            RescaleSlope=2,
            RescaleIntercept=-1000,
            WindowCenter=3000,
            WindowWidth=2001,
        )
    )
    np.testing.assert_allclose(
        rescaled.pixels, np.clip((values.astype(float) * 2 - 1000 - 2999.5) / 2000 + 0.5, 0, 1), atol=1e-6
    )

    inverted = load_radiograph(
        _write_dicom(
            tmp_path / "m1.dcm",
            values,
            PhotometricInterpretation="MONOCHROME1",
            WindowCenter=2000,
            WindowWidth=1001,
        )
    )
    np.testing.assert_allclose(inverted.pixels, 1.0 - oracle, atol=1e-6)


def test_dicom_voi_lut_sequence_is_applied(tmp_path):
    from pydicom import Dataset
    from pydicom.sequence import Sequence

    values = np.tile(np.arange(0, 256, 4, dtype=np.uint16), (32, 1))  # (32, 64), 0..252
    lut = Dataset()
    lut.LUTDescriptor = [256, 0, 8]
    lut.LUTData = [255 - v for v in range(256)]  # an inverting LUT
    lut["LUTData"].VR = "US"
    r = load_radiograph(_write_dicom(tmp_path / "lut.dcm", values, VOILUTSequence=Sequence([lut])))
    np.testing.assert_allclose(r.pixels, 1.0 - values / 252.0, atol=1e-6)


def test_dicom_without_pixels_is_an_image_error(tmp_path):
    from pydicom import Dataset

    ds = Dataset()
    ds.PatientName = "Anon"
    path = tmp_path / "nopix.dcm"
    ds.save_as(path, implicit_vr=True, little_endian=True)
    with pytest.raises(ImageError, match="nopix.dcm"):
        load_radiograph(path)


def _rg1() -> Path:
    data_store = pytest.importorskip("data_store", reason="pydicom-data (dev extra) provides RG1_UNCR.dcm")
    path = Path(data_store.__file__).parent / "data" / "RG1_UNCR.dcm"
    if not path.is_file():
        pytest.skip(f"{path} is absent from pydicom-data")
    return path


@pytest.mark.slow
def test_real_monochrome1_chest_radiograph_lungs_dark_bone_bright():
    r = load_radiograph(_rg1())
    x = r.pixels
    h, w = x.shape
    assert (h, w) == (1955, 1841) and x.dtype == np.float32
    assert 0.0 <= x.min() and x.max() <= 1.0
    lungs = np.concatenate(
        [
            x[int(0.3 * h) : int(0.6 * h), int(0.2 * w) : int(0.4 * w)],
            x[int(0.3 * h) : int(0.6 * h), int(0.6 * w) : int(0.8 * w)],
        ]
    )
    spine = x[int(0.3 * h) : int(0.7 * h), int(0.47 * w) : int(0.53 * w)]
    assert lungs.mean() + 0.15 < spine.mean()  # measured: lungs 0.62, spine/mediastinum 0.88
    assert r.pixel_spacing is None  # the file's PixelSpacing is 0\0, which is not a spacing


def test_resize_pad_keeps_aspect_and_centres():
    wide = np.ones((50, 100), dtype=np.float32)
    out = resize_pad(wide, 64)
    assert out.shape == (64, 64) and out.dtype == np.float32
    rows = np.where(out.max(axis=1) > 0.5)[0]
    assert rows.min() == 16 and rows.max() == 47  # 32 rows of content centred in 64
    assert np.all(out[:16] == 0) and np.all(out[48:] == 0)
    np.testing.assert_allclose(out[16:48], 1.0, atol=1e-5)

    tall = resize_pad(np.ones((100, 50), dtype=np.float32), 64, fill=0.25)
    assert np.all(tall[:, :16] == 0.25) and np.all(tall[:, 48:] == 0.25)


def test_resize_pad_downsampling_matches_block_mean_on_smooth_images():
    yy, xx = np.mgrid[0:256, 0:256] / 255.0
    smooth = (0.5 + 0.25 * np.sin(3 * xx) * np.cos(2 * yy)).astype(np.float32)  # (256, 256)
    out = resize_pad(smooth, 64)
    oracle = smooth.reshape(64, 4, 64, 4).mean(axis=(1, 3))  # naive area average
    np.testing.assert_allclose(out[2:-2, 2:-2], oracle[2:-2, 2:-2], atol=2e-3)
    up = resize_pad(np.full((10, 20), 0.7, dtype=np.float32), 100)
    assert up.shape == (100, 100) and np.allclose(up[25:75], 0.7, atol=1e-5)
    with pytest.raises(ValueError, match="2-D"):
        resize_pad(np.zeros((3, 4, 4)), 8)


@pytest.mark.slow
def test_real_compressed_dicoms_decode_or_fail_clearly():
    data = _rg1().parent
    lossless = load_radiograph(data / "RG1_J2KR.dcm")  # JPEG 2000 lossless of the same radiograph
    np.testing.assert_allclose(lossless.pixels, load_radiograph(data / "RG1_UNCR.dcm").pixels, atol=1e-6)
    try:
        r = load_radiograph(data / "JPEG-LL.dcm")
    except ImageError as exc:  # no JPEG-lossless plugin installed: the error names the file and the fix
        assert "JPEG-LL.dcm" in str(exc) and "pylibjpeg" in str(exc)
    else:
        assert r.pixels.ndim == 2


@pytest.mark.parametrize("fmt", ["GIF", "TIFF", "BMP"])
def test_formats_the_api_refuses_are_refused_here_too(tmp_path, fmt):
    path = tmp_path / f"x.{fmt.lower()}"
    PILImage.fromarray((_ramp() * 255).astype(np.uint8)).save(path, format=fmt)
    with pytest.raises(ImageError, match=f"{fmt} images are not accepted"):
        load_radiograph(path)


@pytest.mark.parametrize("fmt", ["PNG", "JPEG"])
def test_a_png_or_jpeg_named_dcm_is_read_as_what_it_is(tmp_path, fmt):
    path = tmp_path / "x.dcm"
    PILImage.fromarray((_ramp() * 255).astype(np.uint8)).save(path, format=fmt)
    assert load_radiograph(path).pixels.shape == (40, 60)
