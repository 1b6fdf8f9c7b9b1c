"""HTTP service over a retrieval index: FastAPI app and a build-free web page."""

from lexray.serve.app import create_app
from lexray.serve.config import ServeConfig

__all__ = ["ServeConfig", "create_app"]
