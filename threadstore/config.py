"""Database URLs and settings: which backend, where it points, how it is tuned, shown safely;
and where a FileStore keeps its files.

Accepted URL forms::

    None                                   the environment (below), else in-memory
    sqlite+aiosqlite:///relative/path.db   SQLite file (also sqlite:///; four slashes = absolute)
    sqlite+aiosqlite:///:memory:           SQLite in memory, private to the store
    postgresql+asyncpg://user:pass@host:5432/db   PostgreSQL (also postgresql://, postgres://)

With no URL, ``THREADSTORE_DATABASE_URL`` is used, else ``<PREFIX>DB_TYPE`` with its
``DB_HOST``/``DB_PORT``/``DB_NAME``/``DB_USER``/``DB_PASSWORD`` (PostgreSQL) or ``DB_PATH``
(SQLite), for the prefixes THREADSTORE_, TYLER_ and NARRATOR_ (existing deployments use the
latter two). The connection settings come as a group from the first prefix whose DB_TYPE is set,
never mixed across prefixes, so one application's password is never sent to another's host.
Tuning settings (pool, timeouts, cache, echo) are each read from the first prefix that sets them;
``create()`` keyword arguments win over all of them.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypedDict
from urllib.parse import parse_qsl, quote, unquote, urlencode, urlsplit, urlunsplit

from threadstore.errors import ConfigurationError

PREFIXES = ("THREADSTORE_", "TYLER_", "NARRATOR_")
URL_VARIABLE = "THREADSTORE_DATABASE_URL"
_TYPES = {"memory": "memory", "sqlite": "sqlite", "postgresql": "postgres", "postgres": "postgres"}
_TRUE, _FALSE = ("1", "true", "yes", "on"), ("0", "false", "no", "off")


@dataclass(frozen=True)
class Settings:
    """How a store connects: pool (PostgreSQL), timeouts, statement cache, echo.

    Each field is the environment variable ``<PREFIX>DB_<FIELD>`` and a ``create()`` keyword.
    """

    pool_size: int = 5  # connections kept open
    max_overflow: int = 10  # extra connections allowed above pool_size
    pool_timeout: float = 30.0  # seconds to wait for a free connection
    pool_recycle: float | None = None  # seconds after which a connection is not reused; None: never
    command_timeout: float | None = None  # seconds per statement; None: no limit
    connect_timeout: float | None = 10.0  # seconds to open (and set up) a connection; None: no limit
    # Seconds an operation waits for the server before a check on a new connection asks whether
    # the server is still working on it (again every interval): a server that cannot be reached
    # within the interval, or no longer runs the statement, ends the operation. None: never check.
    liveness_interval: float | None = 10.0
    statement_cache_size: int = 100  # prepared statements per connection; 0 behind PgBouncer
    echo: bool = False  # log each statement's name and duration (threadstore.sql, INFO)
    # PostgreSQL only: the schema that holds threadstore's tables (created when missing), the
    # connections' search_path; None: the server's default (usually public).
    schema: str | None = None


class SettingsKwargs(TypedDict, total=False):
    """The settings as keyword arguments of ``ThreadStore(...)`` and ``create(...)`` (each a
    Settings field; None leaves the environment's value or the default)."""

    pool_size: int | None
    max_overflow: int | None
    pool_timeout: float | None
    pool_recycle: float | None
    command_timeout: float | None
    statement_cache_size: int | None
    echo: bool | None
    connect_timeout: float | None
    liveness_interval: float | None
    schema: str | None


def check_keywords(settings: Mapping[str, object], where: str) -> None:
    """TypeError for a keyword that is not a setting, worded as Python words it for a signature."""
    for name in settings:
        if name not in SettingsKwargs.__annotations__:
            raise TypeError(f"{where}() got an unexpected keyword argument {name!r}")


# field -> (kind, lower bound, whether the bound itself is allowed). A "bound" is a number of
# seconds whose default is not None: 0 (or "none"/"off" in the environment) turns it off, since a
# keyword of None means "not given" for every setting.
_RULES: dict[str, tuple[str, float, bool]] = {
    "pool_size": ("int", 1, True),
    "max_overflow": ("int", 0, True),
    "pool_timeout": ("number", 0, False),
    "pool_recycle": ("number", 0, False),
    "command_timeout": ("number", 0, False),
    "connect_timeout": ("bound", 0, True),
    "liveness_interval": ("bound", 0, True),
    "statement_cache_size": ("int", 0, True),
    "echo": ("bool", 0, True),
    "schema": ("schema", 0, True),
}
# A schema name as PostgreSQL folds no case of, quoted as is in search_path: no quote, comma or
# space can reach the server; pg_ names are the server's own (it refuses to create them).
_SCHEMA = re.compile(r"(?!pg_)[A-Za-z_][A-Za-z0-9_]{0,62}")


def _rule_text(kind: str, low: float, inclusive: bool) -> str:
    if kind == "schema":
        return "a schema name of letters, digits and _ (at most 63, not starting with a digit or pg_)"
    if kind == "bool":
        return "true or false"
    if kind == "bound":
        return "a number of seconds > 0, or 0 for no limit"
    noun = "an integer" if kind == "int" else "a number of seconds"
    return f"{noun} {'>=' if inclusive else '>'} {low:g}"


def _check_setting(name: str, value: Any, what: str, given: object = None) -> Any:
    """``value`` for setting ``name``; ConfigurationError naming ``what`` and showing ``given``
    (by default ``value``) when it breaks the setting's rule."""
    kind, low, inclusive = _RULES[name]
    if kind == "schema":
        if not (isinstance(value, str) and _SCHEMA.fullmatch(value)):
            shown = value if given is None else given
            raise ConfigurationError(f"{what} must be {_rule_text(kind, low, inclusive)}, got {shown!r}")
        return value
    wanted = {"int": (int,), "number": (int, float), "bound": (int, float), "bool": (bool,)}[kind]
    ok = isinstance(value, wanted) and (kind == "bool" or not isinstance(value, bool))
    if ok and kind != "bool":
        ok = (kind == "int" or math.isfinite(value)) and (value >= low if inclusive else value > low)
    if not ok:
        shown = value if given is None else given
        raise ConfigurationError(f"{what} must be {_rule_text(kind, low, inclusive)}, got {shown!r}")
    if kind == "bound":
        return float(value) or None
    return float(value) if kind == "number" else value


def _parse_setting(name: str, text: str, variable: str) -> Any:
    """A setting from the text of environment variable ``variable``."""
    kind = _RULES[name][0]
    word = text.strip().lower()
    value: Any = text
    if kind == "schema":
        value = text.strip()
    elif kind == "bool":
        value = True if word in _TRUE else False if word in _FALSE else text
    elif kind == "bound" and word in ("none", "off"):
        value = 0
    else:
        with contextlib.suppress(ValueError):
            value = int(word) if kind == "int" else float(word)
    return _check_setting(name, value, variable, given=text)


def _lookup(environ: Mapping[str, str], prefix: str, key: str) -> tuple[str, str] | None:
    """(variable name, value) of ``<prefix>DB_<key>`` when set to something other than blanks."""
    variable = f"{prefix}DB_{key}"
    value = environ.get(variable)
    return None if value is None or not value.strip() else (variable, value)


def settings_from(environ: Mapping[str, str], overrides: Mapping[str, Any]) -> Settings:
    """Settings from the environment, each overridden by a keyword argument that is not None."""
    unknown = set(overrides) - set(_RULES)
    if unknown:
        raise TypeError(f"unknown setting(s): {', '.join(sorted(unknown))}")
    values: dict[str, Any] = {}
    for name in _RULES:
        if overrides.get(name) is not None:
            values[name] = _check_setting(name, overrides[name], name)
            continue
        found = next((hit for p in PREFIXES if (hit := _lookup(environ, p, name.upper()))), None)
        if found is not None:
            values[name] = _parse_setting(name, found[1], found[0])
    return Settings(**values)


def _url_from_environment(environ: Mapping[str, str]) -> DatabaseConfig:
    """The database the environment names; in-memory when it names none."""
    url = environ.get(URL_VARIABLE, "").strip()
    if url:
        return parse_url(url)
    typed = next(((p, hit) for p in PREFIXES if (hit := _lookup(environ, p, "TYPE"))), None)
    if typed is None:
        return DatabaseConfig(backend="memory")
    prefix, (variable, value) = typed
    backend = _TYPES.get(value.strip().lower())
    if backend is None:
        raise ConfigurationError(f"{variable} must be memory, sqlite or postgresql, got {value!r}")
    if backend == "memory":
        return DatabaseConfig(backend="memory")

    def need(*keys: str) -> list[str]:
        missing = [f"{prefix}DB_{k}" for k in keys if _lookup(environ, prefix, k) is None]
        if missing:
            raise ConfigurationError(f"{variable}={value} needs {', '.join(missing)} to be set")
        return [environ[f"{prefix}DB_{k}"] for k in keys]

    if backend == "sqlite":
        (path,) = need("PATH")
        return DatabaseConfig(backend="sqlite", url=f"sqlite+aiosqlite:///{path}", path=path)
    host, name, user = need("HOST", "NAME", "USER")
    port_variable, port = _lookup(environ, prefix, "PORT") or ("", "5432")
    if not port.strip().isdigit() or not 0 < int(port) < 65536:
        raise ConfigurationError(f"{port_variable} must be a port number (1-65535), got {port!r}")
    password = (_lookup(environ, prefix, "PASSWORD") or ("", ""))[1]
    login = quote(user, safe="") + (f":{quote(password, safe='')}" if password else "")
    if host.startswith("/"):  # a Unix socket directory
        where = f"/{quote(name, safe='')}?{urlencode({'host': host, 'port': int(port)})}"
        return parse_url(f"postgresql+asyncpg://{login}@{where}")
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"  # an IPv6 address
    return parse_url(f"postgresql+asyncpg://{login}@{host}:{int(port)}/{quote(name, safe='')}")


def configure(
    url: str | None = None, environ: Mapping[str, str] | None = None, **overrides: Any
) -> DatabaseConfig:
    """The database and settings a store uses: ``url``, else the environment (see the module
    docstring); settings from the environment, overridden by keyword arguments not None."""
    environ = os.environ if environ is None else environ
    config = parse_url(url) if url is not None else _url_from_environment(environ)
    if overrides.get("schema") is None and config.settings.schema is not None:
        overrides = {**overrides, "schema": config.settings.schema}  # the URL's ?schema=
    settings = settings_from(environ, overrides)
    if settings.schema is not None and config.backend != "postgres":
        raise ConfigurationError(
            f"schema={settings.schema!r} applies to PostgreSQL only; this store is {config.backend}"
        )
    if settings.schema is not None and "search_path" in dict(parse_qsl(urlsplit(config.dsn or "").query)):
        raise ConfigurationError("give either schema= or the URL's search_path, not both")
    return dataclasses.replace(config, settings=settings)


# The first one set (and not empty) wins; the NARRATOR_/TYLER_ names are the predecessors'.
FILE_STORAGE_PATH_VARIABLES = (
    "THREADSTORE_FILE_STORAGE_PATH",
    "NARRATOR_FILE_STORAGE_PATH",
    "TYLER_FILE_STORAGE_PATH",
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
    settings: Settings = field(default_factory=Settings, repr=False)
    read_only: bool = False  # ThreadStore(read_only=True): open for reading, write nothing

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
        query = [
            (k, "***" if k == "password" else v) for k, v in parse_qsl(parts.query, keep_blank_values=True)
        ]
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
        path, query, parameters = (rest[1:] if rest.startswith("/") else rest).partition("?")
        if query:
            # Dropping them silently changed the file name ("a?b.db" opened "a") and lost the
            # parameters ("?mode=ro" still wrote).
            raise ConfigurationError(
                f"SQLite URL {url!r} has query parameters ({parameters!r}): SQLite URLs take none "
                "(use read_only=True for a read-only store); write a '?' in a file name as %3F"
            )
        path = unquote(path)
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
        # ?schema= is threadstore's (Settings.schema); the other parameters are asyncpg's.
        pairs = parse_qsl(parts.query, keep_blank_values=True)
        schema = next((v for k, v in reversed(pairs) if k == "schema"), None)
        if schema is not None:
            parts = parts._replace(query=urlencode([(k, v) for k, v in pairs if k != "schema"]))
        dsn = urlunsplit(parts._replace(scheme="postgresql"))
        password = password or _query_password(parts.query)
        settings = (
            Settings() if schema is None else Settings(schema=_check_setting("schema", schema, "?schema="))
        )
        return DatabaseConfig(backend="postgres", url=url, dsn=dsn, password=password, settings=settings)
    raise ConfigurationError(
        f"unknown database URL scheme {scheme!r} in {mask_url(url)!r}; use sqlite+aiosqlite://, "
        "postgresql+asyncpg:// (or postgresql://, postgres://), or no URL for in-memory"
    )


def file_storage_path() -> Path:
    """Where a FileStore keeps its files when no base path is given: the first of
    FILE_STORAGE_PATH_VARIABLES that is set, else ``~/.threadstore/files``; made absolute."""
    value = next(
        (v for v in map(os.environ.get, FILE_STORAGE_PATH_VARIABLES) if v), DEFAULT_FILE_STORAGE_PATH
    )
    return Path(value).expanduser().absolute()
