"""ferrocorn: a drop-in replacement for Gunicorn with a Rust engine, master and workers."""

from ferrocorn._ferrocorn import version as _version
from ferrocorn.errors import RequestTimeout

__all__ = ["RequestTimeout"]

__version__ = _version()
