"""lexray: chest X-ray image-text retrieval with large-language-model report encoders."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("lexray")
except PackageNotFoundError:  # running from a source tree that was not installed
    __version__ = "0.0.0+unknown"

__all__ = ["__version__"]
