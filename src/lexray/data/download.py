"""Resumable, verified, atomic downloads of dataset archives, and safe extraction.

:func:`download` streams into ``<dest>.part``; an interrupted transfer resumes from the bytes already
there with an HTTP ``Range`` request (a server that ignores ranges makes it start over). When the body
is complete its size is checked against the server's declared length and the expected size, and its
SHA-256 against the expected digest; only then is ``.part`` renamed to ``dest``. A mismatch raises
:class:`DownloadError` and deletes the partial file, so a bad archive is never left behind.

:func:`extract_tar` unpacks with the tarfile ``"data"`` filter (no absolute paths, no ``..``, no device
files or links escaping the target) and writes a marker so a finished extraction is not repeated.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import tarfile
from dataclasses import dataclass
from pathlib import Path

import httpx
from tqdm import tqdm

from lexray.errors import LexrayError

log = logging.getLogger(__name__)

_CONTENT_RANGE = re.compile(r"bytes\s+(?:(\d+)-(\d+)|\*)/(\d+|\*)")


class DownloadError(LexrayError, RuntimeError):
    """A download failed, or its size or checksum did not match (no partial file is kept then)."""


@dataclass(frozen=True)
class Artifact:
    """One downloadable archive of a dataset."""

    name: str  # file name on disk
    url: str  # official address
    sha256: str | None = None  # expected SHA-256 (hex); None = not pinned, the digest is logged instead
    size: int | None = None  # expected size in bytes; None = trust the server's Content-Length


# NLM does not publish checksums for the Open-i archives and they have been re-packed over the years,
# so no digest is pinned here: pass --sha256 NAME=HEX to enforce one.
OPENI_ARTIFACTS: dict[str, Artifact] = {
    "reports": Artifact(
        "NLMCXR_reports.tgz", "https://openi.nlm.nih.gov/imgs/collections/NLMCXR_reports.tgz"
    ),
    "images": Artifact("NLMCXR_png.tgz", "https://openi.nlm.nih.gov/imgs/collections/NLMCXR_png.tgz"),
}


def sha256_file(path: str | Path, chunk_size: int = 1 << 20) -> str:
    """Hex SHA-256 of a file, read in chunks."""
    h = hashlib.sha256()
    with Path(path).open("rb") as f:
        while chunk := f.read(chunk_size):
            h.update(chunk)
    return h.hexdigest()


def _verify(path: Path, sha256: str | None, size: int | None) -> str:
    """The file's digest after checking size and digest; deletes the file and raises on a mismatch."""
    actual_size = path.stat().st_size
    if size is not None and actual_size != size:
        path.unlink(missing_ok=True)
        raise DownloadError(
            f"{path.name}: size {actual_size:,} bytes, expected {size:,}; the partial file was removed"
        )
    digest = sha256_file(path)
    if sha256 is not None and digest.lower() != sha256.lower():
        path.unlink(missing_ok=True)
        raise DownloadError(
            f"{path.name}: SHA-256 mismatch (got {digest}, expected {sha256.lower()}); the file was removed. "
            "The server may serve a different version: check the expected digest"
        )
    return digest


def _parse_content_range(value: str | None) -> tuple[int | None, int | None]:
    """(first byte, total length) of a Content-Range header."""
    m = _CONTENT_RANGE.match(value or "")
    if not m:
        return None, None
    start = int(m.group(1)) if m.group(1) is not None else None
    total = int(m.group(3)) if m.group(3) != "*" else None
    return start, total


def download(
    url: str,
    dest: str | Path,
    sha256: str | None = None,
    size: int | None = None,
    *,
    retries: int = 3,
    timeout: float = 60.0,
    client: httpx.Client | None = None,
) -> Path:
    """Download ``url`` to ``dest`` with resume, verification and an atomic final rename.

    Args:
        url: http(s) address.
        dest: the final file; ``<dest>.part`` holds the bytes while the transfer runs.
        sha256: expected hex digest (checked when given).
        size: expected byte size (checked when given).
        retries: how many times a broken connection is resumed within this call.
        timeout: network timeout per read, in seconds.
        client: an httpx client to reuse (its settings win over ``timeout``).

    Returns:
        ``dest``.

    Raises:
        DownloadError: the server answered with an error, the transfer broke more than ``retries``
            times (the ``.part`` file stays, so calling again resumes), or size/SHA-256 did not match
            (nothing is kept).
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    if dest.is_file():
        if sha256 is None and size is None:
            log.info("%s exists; not downloading again", dest)
            return dest
        try:
            _verify(dest, sha256, size)
            log.info("%s exists and matches; not downloading again", dest)
            return dest
        except DownloadError:
            log.warning("%s exists but does not match; downloading again", dest)
    part = dest.with_name(dest.name + ".part")
    own_client = client is None
    client = client or httpx.Client(follow_redirects=True, timeout=timeout)
    try:
        attempts = 0
        while True:
            try:
                if _transfer(client, url, part):
                    break
            except (httpx.TransportError, httpx.StreamError) as exc:
                attempts += 1
                if attempts > retries:
                    raise DownloadError(
                        f"{url}: transfer broke ({exc}); {part.stat().st_size if part.exists() else 0:,} bytes "
                        f"kept in {part}: run again to resume"
                    ) from exc
                log.warning("%s: transfer broke (%s); resuming (%d/%d)", url, exc, attempts, retries)
    finally:
        if own_client:
            client.close()
    digest = _verify(part, sha256, size)
    os.replace(part, dest)
    log.info("%s: %s bytes, sha256 %s", dest.name, f"{dest.stat().st_size:,}", digest)
    return dest


def _transfer(client: httpx.Client, url: str, part: Path) -> bool:
    """One request appending to ``part``; True when the body is complete."""
    offset = part.stat().st_size if part.exists() else 0
    headers = {"Range": f"bytes={offset}-"} if offset else {}
    with client.stream("GET", url, headers=headers) as response:
        if response.status_code == 416 and offset:
            _, total = _parse_content_range(response.headers.get("Content-Range"))
            if total == offset:
                return True  # the partial file already holds every byte
            log.warning("%s: server refused resuming at byte %d; starting over", url, offset)
            part.unlink()
            return False
        if response.status_code == 206:
            start, total = _parse_content_range(response.headers.get("Content-Range"))
            if start != offset:
                raise DownloadError(f"{url}: asked for bytes from {offset}, server sent from {start}")
            mode = "ab"
        elif response.status_code == 200:
            if offset:
                log.info("%s: server ignores Range; downloading from the start", url)
            offset, mode = 0, "wb"
            length = response.headers.get("Content-Length")
            total = int(length) if length is not None and length.isdigit() else None
        else:
            raise DownloadError(f"{url}: HTTP {response.status_code} {response.reason_phrase}")
        with (
            part.open(mode) as f,
            tqdm(total=total, initial=offset, unit="B", unit_scale=True, desc=part.stem, disable=None) as bar,
        ):
            # Chunks as they arrive (no re-chunking buffer), so a broken connection loses nothing received.
            for chunk in response.iter_bytes():
                f.write(chunk)
                bar.update(len(chunk))
    received = part.stat().st_size
    if total is not None and received != total:
        raise httpx.ReadError(f"connection closed at byte {received:,} of {total:,}")
    return True


def extract_tar(archive: str | Path, dest_dir: str | Path) -> Path:
    """Safely extract a (gzipped) tar archive into ``dest_dir``; skipped when already done.

    Raises:
        DownloadError: the archive is corrupt or tries to write outside ``dest_dir``.
    """
    archive, dest_dir = Path(archive), Path(dest_dir)
    marker = dest_dir / f".{archive.name}.extracted"
    if marker.is_file() and marker.read_text().strip() == str(archive.stat().st_size):
        log.info("%s already extracted into %s", archive.name, dest_dir)
        return dest_dir
    dest_dir.mkdir(parents=True, exist_ok=True)
    try:
        with tarfile.open(archive, "r:*") as tar:
            tar.extractall(dest_dir, filter="data")
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise DownloadError(f"{archive}: cannot extract ({exc}); delete it and download again") from exc
    marker.write_text(str(archive.stat().st_size))
    return dest_dir
