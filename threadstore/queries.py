"""The query registry: every SQL statement threadstore runs, read once from ``sql/<dialect>/``.

Each ``sql/<dialect>/<area>.sql`` file holds named queries (``-- name: get :one``) addressed as
``"<area>.<name>"``; their ``:snake_name`` parameters are compiled at load to ``$1..`` (asyncpg)
or ``?1..`` (sqlite). ``sql/<dialect>/migrations/NNNN_name.sql`` are whole scripts, numbered from
0001 without gaps. One small scanner finds parameters and top-level ``;`` while skipping string
literals, quoted identifiers, comments and dollar-quoted bodies. It accepts the PostgreSQL forms
(``E'\\''`` strings, nested ``/* */``, ``$tag$`` bodies) in both dialects: the SQLite files use
none of them. No SQL is built at run time; a malformed file raises QueryFileError with file:line.
"""

from __future__ import annotations

import enum
import functools
import logging
import re
import sys
import types
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from threadstore.errors import QueryFileError

DIALECTS = ("postgres", "sqlite")
_SNAKE = re.compile(r"[a-z_][a-z0-9_]*")
_HEADER = re.compile(r"--\s*name\s*:(.*)")
_MIGRATION = re.compile(r"(\d{4})_([a-z_][a-z0-9_]*)\.sql")
_SPECIAL = re.compile(r"['\"$]|--|/\*")  # what may open a literal, identifier, comment or body
_DOLLAR_TAG = re.compile(r"\$([A-Za-z_][A-Za-z0-9_]*)?\$")
# A name after ':' starts with a letter or '_', so `arr[1:2]` holds no parameter. A ':' right
# after another ':' (a `::` cast), a word character (`arr[lo:hi]`) or ']'/')' is not one either;
# `arr[:hi]` would read as a parameter, so write `arr[1:hi]`.
_PARAM = re.compile(r"(?<![\w:\])\]]):([A-Za-z_]\w*)")


class Kind(enum.Enum):
    """What running a query returns: a row or None, rows, a value or None, nothing, a count."""

    ONE = "one"
    MANY = "many"
    VALUE = "value"
    EXEC = "exec"
    ROWCOUNT = "rowcount"
    SCRIPT = "script"


@dataclass(frozen=True, slots=True)
class Query:
    """One named statement, compiled for its dialect."""

    name: str
    kind: Kind
    sql: str
    params: tuple[str, ...]
    origin: str
    doc: str

    def args(self, values: Mapping[str, Any]) -> tuple[Any, ...]:
        """Positional args; a missing or unexpected name raises TypeError naming both sets."""
        # Names are unique, so as many values as params, all found, means exactly the params.
        if len(values) == len(self.params):
            try:
                return tuple([values[p] for p in self.params])
            except KeyError:
                pass
        missing = ", ".join(p for p in self.params if p not in values) or "none"
        unexpected = ", ".join(sorted(set(values) - set(self.params))) or "none"
        raise TypeError(
            f"query {self.name!r}: missing parameters: {missing}; unexpected parameters: {unexpected}"
        )


@dataclass(frozen=True, slots=True)
class Migration:
    """One numbered schema script and its statements, in order."""

    version: int
    name: str
    script: str
    statements: tuple[str, ...]
    origin: str


@dataclass(frozen=True)
class Registry:
    """The queries and migrations of one dialect."""

    dialect: str
    queries: Mapping[str, Query]
    migrations: tuple[Migration, ...]

    def __getitem__(self, name: str) -> Query:
        """The query called ``name`` ("threads.get"); KeyError when there is none."""
        try:
            return self.queries[name]
        except KeyError:
            raise KeyError(f"unknown query {name!r} for dialect {self.dialect!r}") from None


def sql_root() -> Path:
    """The ``sql`` folder: package data in a wheel install, else the source tree's top level."""
    packaged = Path(__file__).parent / "sql"
    return packaged if packaged.is_dir() else Path(__file__).parent.parent / "sql"


@functools.cache
def load(dialect: str) -> Registry:
    """The registry of ``dialect`` ("postgres" or "sqlite"), read from sql_root() once."""
    return load_from(sql_root(), dialect)


def load_from(root: Path, dialect: str) -> Registry:
    """Read ``root/<dialect>/*.sql`` and ``root/<dialect>/migrations/*.sql``; origins start at
    ``root``'s name ("sql/postgres/threads.sql:3")."""
    _check_dialect(dialect)
    folder = root / dialect
    if not folder.is_dir():
        raise QueryFileError(f"{folder}: no SQL folder for dialect {dialect!r}")
    queries: dict[str, Query] = {}
    for path in sorted(folder.glob("*.sql")):
        origin = path.relative_to(root.parent).as_posix()
        if not _SNAKE.fullmatch(path.stem):
            raise QueryFileError(f"{origin}: file name must be snake_case")
        text = path.read_text(encoding="utf-8")
        for query in parse_file(text, dialect=dialect, origin=origin, stem=path.stem):
            queries[query.name] = query
    migrations: list[Migration] = []
    for path in sorted((folder / "migrations").glob("*.sql")):
        origin = path.relative_to(root.parent).as_posix()
        if not (m := _MIGRATION.fullmatch(path.name)):
            raise QueryFileError(f"{origin}: migration file name must be NNNN_snake_name.sql")
        text = path.read_text(encoding="utf-8")
        mask = _mask(text, origin, 1)
        _check_params(text, mask, origin, 1, allowed=False)
        # Named like queries, so server logs and pg_stat_statements name the migration too.
        label = f"/* migrations.{path.stem} */\n"
        statements = tuple(label + text[a:b] for a, b in _statement_spans(text, mask))
        migrations.append(Migration(int(m[1]), m[2], label + text, statements, origin))
    migrations.sort(key=lambda mig: (mig.version, mig.origin))
    for i, mig in enumerate(migrations):
        if i and mig.version == migrations[i - 1].version:
            raise QueryFileError(
                f"{mig.origin}: duplicate migration version {mig.version}, also {migrations[i - 1].origin}"
            )
        if mig.version != i + 1:
            raise QueryFileError(
                f"{mig.origin}: expected migration version {i + 1:04d}; versions start at 0001 without gaps"
            )
    return Registry(dialect, types.MappingProxyType(queries), tuple(migrations))


# --- the echo of what runs ------------------------------------------------------------------

SQL_LOG = logging.getLogger("threadstore.sql")  # echo: one INFO line per statement


def enable_echo() -> None:
    """Make echo lines visible, as SQLAlchemy's ``echo=True`` does: the ``threadstore.sql``
    logger goes to INFO unless its level was set, and logs to stderr when the application
    configured no logging at all."""
    if SQL_LOG.level == logging.NOTSET:
        SQL_LOG.setLevel(logging.INFO)
    if not SQL_LOG.handlers and not logging.getLogger().handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(asctime)s %(name)s %(message)s"))
        SQL_LOG.addHandler(handler)


def log_statement(name: str, started: float, finished: float) -> None:
    """The echo line of one statement: its query name and duration, never its values."""
    SQL_LOG.info("%s %.2f ms", name, (finished - started) * 1000)


def parse_file(text: str, *, dialect: str, origin: str, stem: str) -> list[Query]:
    """The queries of one SQL file; ``origin`` is its path as shown in errors."""
    _check_dialect(dialect)
    lines = text.split("\n")
    headers = [(i, m[1]) for i, line in enumerate(lines) if (m := _HEADER.match(line))]
    bounds = [at for at, _ in headers] + [len(lines)]
    preamble = "\n".join(lines[: bounds[0]])
    mask = _mask(preamble, origin, 1)
    if mask.strip():
        pos = len(mask) - len(mask.lstrip())
        raise QueryFileError(
            f"{origin}:{_line(preamble, pos, 1)}: only comments may come before the first '-- name:' header"
        )
    queries: list[Query] = []
    seen: dict[str, int] = {}
    for (at, header), end in zip(headers, bounds[1:], strict=True):
        where = f"{origin}:{at + 1}"
        name, kind = _parse_header(header, where)
        if name in seen:
            raise QueryFileError(
                f"{where}: duplicate query name {name!r}, first defined at {origin}:{seen[name]}"
            )
        seen[name] = at + 1
        doc_end = at + 1
        while doc_end < end and lines[doc_end].startswith("--"):
            doc_end += 1
        doc = "\n".join(line[2:].removeprefix(" ").rstrip() for line in lines[at + 1 : doc_end])
        body, first_line = "\n".join(lines[doc_end:end]), doc_end + 1
        mask = _mask(body, origin, first_line)
        spans = _statement_spans(body, mask)
        if not spans:
            raise QueryFileError(f"{where}: query {name!r} has no SQL")
        _check_params(body, mask, origin, first_line, allowed=kind is not Kind.SCRIPT)
        if kind is Kind.SCRIPT:
            a, b = 0, len(body)  # kept whole, final ';' included
        elif len(spans) > 1:
            raise QueryFileError(
                f"{where}: query {name!r} holds {len(spans)} statements; only a :script may hold several"
            )
        else:
            a, b = spans[0]
        sql, params = _compile(body[a:b], mask[a:b], dialect)
        full_name = f"{stem}.{name}"
        # A leading /* */ comment (not "-- "): server logs and pg_stat_activity show the name, and
        # OpenTelemetry's asyncpg instrumentation, which strips it, names its span by the verb
        # (with "-- threads.get" every span it made was named "--").
        queries.append(Query(full_name, kind, f"/* {full_name} */\n{sql.strip()}", params, where, doc))
    return queries


def split_statements(script: str) -> list[str]:
    """The statements of ``script``, split at top-level ``;`` (not inside literals, comments or
    dollar bodies), stripped, without the ``;``; statements of only comments are dropped."""
    return [script[a:b] for a, b in _statement_spans(script, _mask(script, "<script>", 1))]


def _check_dialect(dialect: str) -> None:
    if dialect not in DIALECTS:
        raise ValueError(f"unknown dialect {dialect!r}; expected one of {DIALECTS}")


def _parse_header(header: str, where: str) -> tuple[str, Kind]:
    """Name and kind from what follows ``-- name:`` on a header line."""
    parts = header.split()
    if len(parts) != 2 or not parts[1].startswith(":"):
        raise QueryFileError(f"{where}: malformed header; expected '-- name: <snake_name> :<kind>'")
    if not _SNAKE.fullmatch(parts[0]):
        raise QueryFileError(f"{where}: bad query name {parts[0]!r}; use snake_case")
    kinds = {f":{k.value}": k for k in Kind}
    if parts[1] not in kinds:
        raise QueryFileError(f"{where}: unknown kind {parts[1]!r}; expected one of " + ", ".join(kinds))
    return parts[0], kinds[parts[1]]


def _check_params(text: str, mask: str, origin: str, first_line: int, *, allowed: bool) -> None:
    """Reject a parameter whose name is not snake_case, or any parameter when not allowed."""
    for m in _PARAM.finditer(mask):
        if not allowed or not _SNAKE.fullmatch(m[1]):
            reason = "is not snake_case" if allowed else "in a script"
            line = _line(text, m.start(), first_line)
            raise QueryFileError(f"{origin}:{line}: parameter :{m[1]} {reason}")


def _compile(sql: str, mask: str, dialect: str) -> tuple[str, tuple[str, ...]]:
    """Replace each ``:name`` by ``$N`` or ``?N``; a repeated name gets the same N."""
    marker = "$" if dialect == "postgres" else "?"
    numbers: dict[str, int] = {}
    pieces: list[str] = []
    last = 0
    for m in _PARAM.finditer(mask):
        number = numbers.setdefault(m[1], len(numbers) + 1)
        pieces += [sql[last : m.start()], f"{marker}{number}"]
        last = m.end()
    pieces.append(sql[last:])
    return "".join(pieces), tuple(numbers)


_TRIGGER = re.compile(r"\s*CREATE\s+(?:TEMP\s+|TEMPORARY\s+)?TRIGGER\b[^;]*?\bBEGIN\b", re.I | re.S)
_END = re.compile(r"\bEND\s*$", re.I)


def _statement_spans(text: str, mask: str) -> list[tuple[int, int]]:
    """(start, end) of each statement of ``text``, stripped, skipping those without code."""
    spans: list[tuple[int, int]] = []
    start = 0
    for end in [i for i, c in enumerate(mask) if c == ";"] + [len(text)]:
        if _TRIGGER.match(mask, start, end) and not _END.search(mask, start, end) and end < len(text):
            continue  # a ; inside CREATE TRIGGER ... BEGIN ... END (SQLite)
        if mask[start:end].strip():
            piece = text[start:end]
            a = start + len(piece) - len(piece.lstrip())
            spans.append((a, start + len(piece.rstrip())))
        start = end + 1
    return spans


def _mask(text: str, origin: str, first_line: int) -> str:
    """``text`` with each literal, quoted identifier and dollar body turned into ``'``s and
    each comment into spaces, same length, so that ``:name`` and ``;`` found in it are code."""
    out: list[str] = []
    code = i = 0
    n = len(text)
    while special := _SPECIAL.search(text, i):
        i, c = special.start(), special[0]
        if c in "'\"":
            backslash = c == "'" and i > 0 and text[i - 1] in "eE" and not _after_word(text, i - 1)
            end = i + 1
            while end < n and not (text[end] == c and text[end + 1 : end + 2] != c):
                # '' (or "") is an escaped quote; in E'...' so is \'
                end += 2 if text[end] == c or (backslash and text[end] == "\\") else 1
            what = "string literal" if c == "'" else "quoted identifier"
            fill, end = "'", end + 1
        elif c == "--":
            what, fill, end = "", " ", text.find("\n", i)
            end = n if end < 0 else end
        elif c == "/*":
            depth, end = 1, i + 2
            while depth and end < n:  # PostgreSQL nests block comments; SQLite files don't
                pair = text[end : end + 2]
                depth += 1 if pair == "/*" else -1 if pair == "*/" else 0
                end += 2 if pair in ("/*", "*/") else 1
            what, fill, end = "block comment", " ", n + 1 if depth else end
        elif c == "$" and (tag := _DOLLAR_TAG.match(text, i)) and not _after_word(text, i):
            close = text.find(tag[0], tag.end())
            what, fill, end = "dollar-quoted text", "'", close + len(tag[0]) if close >= 0 else n + 1
        else:  # a '$' that opens no dollar quote, like $1
            i += 1
            continue
        if end > n:
            raise QueryFileError(f"{origin}:{_line(text, i, first_line)}: unterminated {what}")
        out += [text[code:i], fill * (end - i)]
        code = i = end
    out.append(text[code:])
    return "".join(out)


def _after_word(text: str, i: int) -> bool:
    return i > 0 and (text[i - 1].isalnum() or text[i - 1] in "_$")


def _line(text: str, pos: int, first_line: int) -> int:
    return first_line + text.count("\n", 0, pos)
