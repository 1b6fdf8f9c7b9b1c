"""Configuration of the HTTP service (``lexray serve --config ... --set a.b=c``)."""

from __future__ import annotations

from dataclasses import dataclass

from lexray.config import ConfigError


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

    def __post_init__(self) -> None:
        # Checked here, not when uvicorn binds or a request arrives: a bad value fails in one line at start.
        problems = []
        if not self.host.strip():
            problems.append("host is empty; give an address such as 127.0.0.1")
        if not 1 <= self.port <= 65535:
            problems.append(f"port must be between 1 and 65535, got {self.port}")
        if not self.token_env.strip():
            problems.append("token_env is empty; name an environment variable such as LEXRAY_API_TOKEN")
        for name in ("max_upload_bytes", "max_pixels", "max_text_chars", "max_k"):
            if getattr(self, name) < 1:
                problems.append(f"{name} must be at least 1, got {getattr(self, name)}")
        if not 1 <= self.default_k <= max(self.max_k, 1):
            problems.append(f"default_k must be between 1 and max_k={self.max_k}, got {self.default_k}")
        if not 16 <= self.image_max_side <= 4096:
            problems.append(f"image_max_side must be between 16 and 4096, got {self.image_max_side}")
        if problems:
            raise ConfigError("ServeConfig: " + "; ".join(problems))
