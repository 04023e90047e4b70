"""Database URLs (which backend a URL names, where it points, how to show it safely), and the
environment settings: where a FileStore keeps its files.

Accepted forms::

    None                                   in-memory (the default)
    sqlite+aiosqlite:///relative/path.db   SQLite file (also sqlite:///; four slashes = absolute)
    sqlite+aiosqlite:///:memory:           SQLite in memory, private to the store
    postgresql+asyncpg://user:pass@host:5432/db   PostgreSQL (also postgresql://, postgres://)
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import parse_qsl, unquote, urlencode, urlsplit, urlunsplit

from threadstore.errors import ConfigurationError

# The first one set (and not empty) wins; the NARRATOR_/TYLER_ names are the predecessors'.
FILE_STORAGE_PATH_VARIABLES = (
    "THREADSTORE_FILE_STORAGE_PATH", "NARRATOR_FILE_STORAGE_PATH", "TYLER_FILE_STORAGE_PATH",
)
DEFAULT_FILE_STORAGE_PATH = "~/.threadstore/files"

_SQLITE_SCHEMES = ("sqlite", "sqlite+aiosqlite")
_POSTGRES_SCHEMES = ("postgresql", "postgresql+asyncpg", "postgres")


@dataclass(frozen=True)
class DatabaseConfig:
    """A parsed database URL. ``repr`` and ``masked_url`` never show the password."""

    backend: str  # "memory", "sqlite" or "postgres"
    url: str | None = field(default=None, repr=False)
    path: str | None = None  # SQLite file path or ":memory:"
    dsn: str | None = field(default=None, repr=False)  # the URL asyncpg is given
    password: str | None = field(default=None, repr=False)

    @property
    def masked_url(self) -> str | None:
        """The URL with its password replaced by ``***``."""
        return mask_url(self.url)

    def __repr__(self) -> str:
        return f"DatabaseConfig(backend={self.backend!r}, url={self.masked_url!r})"

    def scrub(self, text: str) -> str:
        """``text`` with the password (if any) replaced by ``***``."""
        if not self.password:
            return text
        return text.replace(self.password, "***").replace(unquote(self.password), "***")


def _query_password(query: str) -> str | None:
    return next((v for k, v in parse_qsl(query, keep_blank_values=True) if k == "password"), None)


def mask_url(url: str | None) -> str | None:
    """``url`` with any password (``user:password@`` or ``?password=``) replaced by ``***``."""
    if not url:
        return url
    try:
        parts = urlsplit(url)
        password = parts.password
    except ValueError:
        return "<unparseable URL>"
    if not password and _query_password(parts.query) is None:
        return url
    if password:
        host = parts.netloc.rpartition("@")[2]
        parts = parts._replace(netloc=f"{parts.username or ''}:***@{host}")
    if _query_password(parts.query) is not None:
        query = [(k, "***" if k == "password" else v)
                 for k, v in parse_qsl(parts.query, keep_blank_values=True)]
        parts = parts._replace(query=urlencode(query, safe="*"))
    return urlunsplit(parts)


def parse_url(url: str | None) -> DatabaseConfig:
    """Parse a database URL; an unknown or malformed one raises ConfigurationError."""
    if url is None:
        return DatabaseConfig(backend="memory")
    if not isinstance(url, str):
        raise TypeError(f"database URL must be a string or None, got {type(url).__name__}")
    scheme, sep, rest = url.partition("://")
    scheme = scheme.lower()
    if not sep:
        raise ConfigurationError(f"not a database URL: {mask_url(url)!r} (expected scheme://...)")
    if scheme in ("memory", "mem"):
        return DatabaseConfig(backend="memory", url=url)
    if scheme in _SQLITE_SCHEMES:
        path = rest[1:] if rest.startswith("/") else rest
        path = path.partition("?")[0]
        if not path:
            raise ConfigurationError(
                f"SQLite URL {url!r} names no file; use sqlite+aiosqlite:///path.db "
                "or sqlite+aiosqlite:///:memory:"
            )
        return DatabaseConfig(backend="sqlite", url=url, path=path)
    if scheme in _POSTGRES_SCHEMES:
        try:
            parts = urlsplit(url)
            password = parts.password
            parts.port  # noqa: B018 - raises ValueError on a malformed port
        except ValueError as exc:
            raise ConfigurationError(f"malformed PostgreSQL URL {mask_url(url)!r}: {exc}") from None
        if not parts.hostname and "host=" not in parts.query:
            raise ConfigurationError(f"PostgreSQL URL {mask_url(url)!r} names no host")
        dsn = urlunsplit(parts._replace(scheme="postgresql"))
        password = password or _query_password(parts.query)
        return DatabaseConfig(backend="postgres", url=url, dsn=dsn, password=password)
    raise ConfigurationError(
        f"unknown database URL scheme {scheme!r} in {mask_url(url)!r}; use sqlite+aiosqlite://, "
        "postgresql+asyncpg:// (or postgresql://, postgres://), or no URL for in-memory"
    )


def file_storage_path() -> Path:
    """Where a FileStore keeps its files when no base path is given: the first of
    FILE_STORAGE_PATH_VARIABLES that is set, else ``~/.threadstore/files``; made absolute."""
    value = next((v for v in map(os.environ.get, FILE_STORAGE_PATH_VARIABLES) if v),
                 DEFAULT_FILE_STORAGE_PATH)
    return Path(value).expanduser().absolute()
