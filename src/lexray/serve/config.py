"""Configuration of the HTTP service (``lexray serve --config ... --set a.b=c``)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ServeConfig:
    """Where the service listens and the limits it enforces on requests."""

    host: str = "127.0.0.1"  # bind address; only loopback by default (the index holds report text)
    port: int = 8000  # TCP port
    token_env: str = (
        "LEXRAY_API_TOKEN"  # environment variable holding the bearer token; unset or empty = no auth
    )
    max_upload_bytes: int = 32 * 2**20  # largest accepted upload (413 above)
    max_pixels: int = 40_000_000  # largest accepted image height x width, checked before decoding (413 above)
    max_text_chars: int = 8000  # longest accepted text query (422 above)
    default_k: int = 5  # results returned when the request gives no k
    max_k: int = 100  # largest k a request may ask for
    image_max_side: int = 512  # longest side of the PNG previews the image endpoint returns by default
    check_fingerprint: bool = True  # refuse to serve if the model changed since the index was built
