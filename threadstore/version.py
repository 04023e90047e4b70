"""The installed threadstore's version, read from its package metadata (pyproject.toml's
``version`` is the one place it is written)."""

from __future__ import annotations

import functools
from importlib import metadata


@functools.cache
def version() -> str:
    """The version of the installed threadstore distribution, e.g. ``"0.1.0"``."""
    try:
        return metadata.version("threadstore")
    except metadata.PackageNotFoundError:  # a source tree on sys.path that was never installed
        return "0+unknown"
