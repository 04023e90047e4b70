"""The ``threadstore`` command: schema, status, a local PostgreSQL in Docker, export/import/copy,
retention (prune), adopting a slide-narrator database.

Each command takes its database URL as an argument, or else from the environment (the same
settings as ``ThreadStore.create()``: THREADSTORE_DATABASE_URL, <PREFIX>DB_TYPE, ...). Output
goes to stdout, the progress of long work to stderr; an error is one line on stderr, with exit
code 2 for a usage error (bad arguments, bad configuration) and 1 for a failure. Passwords are
masked in all of it; only the URL that docker-setup prints for you to use shows its password.

A new subcommand is a function that adds its parser and sets ``run`` (see ``_add_init``),
listed in COMMANDS.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator, Sequence
from datetime import timedelta
from pathlib import Path
from typing import IO, Any, NoReturn, cast
from urllib.parse import quote

from threadstore.adopt import adopt
from threadstore.config import configure, parse_url
from threadstore.errors import ConfigurationError, StoreUnavailableError, ThreadStoreError
from threadstore.files import GC_MIN_AGE, FileStore, collect_garbage
from threadstore.store import ThreadStore
from threadstore.transfer import PAGE_SIZE, Progress, copy_threads, export_lines, import_lines
from threadstore.version import version

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130
_NO_DATABASE = (
    "no database given: pass a URL, or set THREADSTORE_DATABASE_URL (or THREADSTORE_DB_TYPE "
    "with its DB_* settings; TYLER_ and NARRATOR_ prefixes work too)"
)


class UsageError(Exception):
    """Bad arguments: exit code 2. ``prog`` is the command they were given to, when known."""

    def __init__(self, message: str, prog: str | None = None) -> None:
        super().__init__(message)
        self.prog = prog


class CommandError(Exception):
    """The command could not do its job: exit code 1."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{message} (see {self.prog} --help)", prog=self.prog)


Command = Callable[[argparse.Namespace], Coroutine[Any, Any, int]]
Subparsers = Any  # argparse's _SubParsersAction, which is private


def _out(text: str) -> None:
    print(text, flush=True)


def _note(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


@contextlib.asynccontextmanager
async def _store(
    url: str | None,
    *,
    migrate: bool = False,
    create: bool = False,
    read_only: bool = False,
    replicas: list[str] | None = None,
    distributed: bool = False,
) -> AsyncIterator[ThreadStore]:
    """A connected store for ``url`` (None: the environment). The in-memory store is refused,
    since it would vanish when the command ends; so is a missing SQLite file unless ``create``.
    A ``read_only`` store leaves the database as it was (a SQLite file byte-for-byte)."""
    store = ThreadStore(
        url, migrate=migrate, read_only=read_only, replicas=replicas, distributed=distributed or None
    )
    if store.backend == "memory":
        raise UsageError(
            _NO_DATABASE
            if url is None
            else f"{url!r} is an in-memory store, gone when the command ends; give a SQLite or PostgreSQL URL"
        )
    path = configure(url).path
    if not create and path not in (None, ":memory:") and not Path(path).exists():
        raise CommandError(f"there is no SQLite database at {path} (`threadstore init` creates one)")
    async with store:
        yield store


async def _require_current(store: ThreadStore) -> None:
    status = await store.schema_status()
    if status.version == 0:
        raise CommandError(f"{store.database_url} holds no threadstore schema (run `threadstore init`)")
    if status.pending:
        raise CommandError(
            f"{store.database_url} needs migrations {', '.join(status.pending)} first "
            "(run `threadstore migrate`)"
        )


def _url_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "url",
        nargs="?",
        metavar="URL",
        help="database URL (default: from the environment, as ThreadStore.create())",
    )


def _page_size(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--page-size",
        type=_positive_int,
        default=PAGE_SIZE,
        metavar="N",
        help=f"threads per read and per write (default {PAGE_SIZE})",
    )


def _positive_int(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number of at least 1, got {text!r}")
    return int(text)


# -- init, migrate, status -----------------------------------------------------------------------


def _add_init(commands: Subparsers) -> None:
    parser = commands.add_parser(
        "init",
        help="create the schema, or bring it up to date",
        description="Create the threadstore schema in the database (a "
        "SQLite file is created too), or apply the migrations it lacks.",
    )
    _url_argument(parser)
    parser.add_argument(
        "--distributed",
        action="store_true",
        help="on a Citus coordinator: the tables distributed by thread (docs/citus.md)",
    )
    parser.set_defaults(run=_init)


async def _init(args: argparse.Namespace) -> int:
    async with _store(args.url, migrate=False, create=True, distributed=args.distributed) as store:
        pending = (await store.schema_status()).pending
        await store.migrate()
        version = (await store.schema_status()).version
    done = f"applied {', '.join(pending)}" if pending else "already up to date"
    _out(f"{store.database_url}: schema at version {version} ({done})")
    return EXIT_OK


def _add_distribute(commands: Subparsers) -> None:
    parser = commands.add_parser(
        "distribute",
        help="distribute a PostgreSQL store by thread on its Citus coordinator",
        description="Convert the store in place into Citus distributed tables sharded by thread "
        "(applying any pending migrations first); Citus moves the rows to the workers. "
        "Does nothing when it is distributed already.",
    )
    _url_argument(parser)
    parser.set_defaults(run=_distribute)


async def _distribute(args: argparse.Namespace) -> int:
    async with _store(args.url, distributed=True) as store:
        await store.migrate()
        stats = await store.get_usage_stats()
    _out(
        f"{store.database_url}: distributed by thread "
        f"({stats['total_threads']:,} threads, {stats['total_messages']:,} messages)"
    )
    return EXIT_OK


def _add_migrate(commands: Subparsers) -> None:
    parser = commands.add_parser(
        "migrate",
        help="list and apply pending migrations",
        description="List the schema migrations the database lacks and apply them, in order, under a lock.",
    )
    _url_argument(parser)
    parser.add_argument("--dry-run", action="store_true", help="only list them; change nothing")
    parser.set_defaults(run=_migrate)


async def _migrate(args: argparse.Namespace) -> int:
    async with _store(args.url, create=not args.dry_run, read_only=args.dry_run) as store:
        status = await store.schema_status()
        if not status.pending:
            _out(f"{store.database_url}: schema at version {status.version}, nothing to migrate")
            return EXIT_OK
        for name in status.pending:
            _out(f"pending: {name}")
        if args.dry_run:
            _out(f"dry run: {len(status.pending)} migration(s) not applied")
            return EXIT_OK
        await store.migrate()
        version = (await store.schema_status()).version
    _out(f"{store.database_url}: applied {len(status.pending)} migration(s); schema at version {version}")
    return EXIT_OK


def _add_status(commands: Subparsers) -> None:
    parser = commands.add_parser(
        "status",
        help="backend, schema version, counts; exit 1 if unreachable",
        description="Show the backend, the schema version, pending "
        "migrations and thread/message counts. Exit code 0 when the "
        "database answers, 1 when it does not.",
    )
    _url_argument(parser)
    parser.add_argument(
        "--replica",
        action="append",
        metavar="URL",
        help="a PostgreSQL read replica to report on (repeatable; default: THREADSTORE_REPLICA_URLS)",
    )
    parser.set_defaults(run=_status)


async def _status(args: argparse.Namespace) -> int:
    async with _store(args.url, read_only=True, replicas=args.replica) as store:
        round_trip = await store.ping()
        status = await store.schema_status()
        replicas = await store.replica_status()
        stats = None if status.pending else await store.get_usage_stats()
    if status.version == 0:
        schema = "none (run `threadstore init`)"
    elif status.pending:
        schema = f"version {status.version}, pending {', '.join(status.pending)} (run `threadstore migrate`)"
    else:
        schema = f"version {status.version} (up to date)"
    lines = [
        ("backend", store.backend),
        ("database", str(store.database_url)),
        ("ping", f"{round_trip * 1000:.1f} ms"),
        ("schema", schema),
    ]
    if stats is not None:
        lines += [("threads", f"{stats['total_threads']:,}"), ("messages", f"{stats['total_messages']:,}")]
    for replica in replicas:
        state = f"{replica.lag:.1f} s behind" if replica.reachable else f"unreachable ({replica.error})"
        lines.append(("replica", f"{replica.url} {state}"))
    for key, value in lines:
        _out(f"{key + ':':<10}{value}")
    return EXIT_OK


# -- a PostgreSQL container for development -----------------------------------------------------

_CONTAINER, _VOLUME, _IMAGE = "threadstore-postgres", "threadstore-data", "postgres:16"


def _docker(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run(["docker", *args], capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise CommandError(f"`docker {args[0]}` did not finish within {timeout:g} s") from None


def _last_line(text: str) -> str:
    return next((line.strip() for line in reversed(text.splitlines()) if line.strip()), "no output")


def _require_docker() -> None:
    if shutil.which("docker") is None:
        raise CommandError(
            "Docker is not installed (no `docker` command on PATH); install Docker, "
            "or point threadstore at an existing PostgreSQL"
        )
    info = _docker("info", "--format", "{{.ServerVersion}}", timeout=30)
    if info.returncode != 0:
        raise CommandError(
            f"no Docker engine answers ({_last_line(info.stderr)}); start Docker and run this again"
        )


def _add_docker_setup(commands: Subparsers) -> None:
    parser = commands.add_parser(
        "docker-setup",
        help="start a local PostgreSQL 16 in Docker and print its URL",
        description=f"Start (or reuse) a PostgreSQL container named {_CONTAINER} with its data in the "
        f"volume {_VOLUME}, wait until it accepts connections, apply the migrations, "
        "and print the URL to use.",
    )
    parser.add_argument("--name", default=_CONTAINER, help=f"container name (default {_CONTAINER})")
    parser.add_argument("--volume", default=_VOLUME, help=f"data volume (default {_VOLUME})")
    parser.add_argument("--image", default=_IMAGE, help=f"image (default {_IMAGE})")
    parser.add_argument("--port", type=_positive_int, default=5432, help="host port (default 5432)")
    parser.add_argument("--user", default="threadstore", help="database user (default threadstore)")
    parser.add_argument(
        "--password", default="threadstore_dev", help="database password (default threadstore_dev)"
    )
    parser.add_argument("--db", default="threadstore", help="database name (default threadstore)")
    parser.add_argument(
        "--timeout",
        type=_positive_int,
        default=60,
        help="seconds to wait for PostgreSQL to accept connections (default 60)",
    )
    parser.set_defaults(run=_docker_setup)


async def _docker_setup(args: argparse.Namespace) -> int:
    _require_docker()
    running = _docker("inspect", "--format", "{{.State.Running}}", args.name)
    if running.returncode != 0:
        _note(f"starting container {args.name} ({args.image}, data in volume {args.volume})")
        started = _docker(
            "run",
            "--detach",
            "--name",
            args.name,
            "--env",
            f"POSTGRES_USER={args.user}",
            "--env",
            f"POSTGRES_PASSWORD={args.password}",
            "--env",
            f"POSTGRES_DB={args.db}",
            "--publish",
            f"{args.port}:5432",
            "--volume",
            f"{args.volume}:/var/lib/postgresql/data",
            args.image,
            timeout=600,
        )
    elif running.stdout.strip() != "true":
        _note(f"starting the stopped container {args.name}")
        started = _docker("start", args.name)
    else:
        _note(f"container {args.name} is already running")
        started = running
    if started.returncode != 0:
        raise CommandError(f"docker could not start {args.name}: {_last_line(started.stderr)}")
    url = (
        f"postgresql+asyncpg://{quote(args.user, safe='')}:{quote(args.password, safe='')}"
        f"@localhost:{args.port}/{quote(args.db, safe='')}"
    )
    deadline = time.monotonic() + args.timeout
    while True:
        try:
            store = await ThreadStore.create(url, pool_size=1, max_overflow=0)
            break
        except StoreUnavailableError as exc:
            if time.monotonic() > deadline:
                raise CommandError(
                    f"PostgreSQL in {args.name} did not accept connections within {args.timeout} s: {exc}"
                ) from None
            await asyncio.sleep(1)
    version = (await store.schema_status()).version
    await store.close()
    _note(f"PostgreSQL is ready, schema at version {version}; use this URL:")
    _out(url)
    return EXIT_OK


def _add_docker_stop(commands: Subparsers) -> None:
    parser = commands.add_parser(
        "docker-stop",
        help="stop the docker-setup container",
        description=f"Stop the {_CONTAINER} container; its data stays in "
        f"the {_VOLUME} volume unless --remove-volumes.",
    )
    parser.add_argument("--name", default=_CONTAINER, help=f"container name (default {_CONTAINER})")
    parser.add_argument("--volume", default=_VOLUME, help=f"data volume (default {_VOLUME})")
    parser.add_argument(
        "--remove-volumes", action="store_true", help="also remove the container and delete its data volume"
    )
    parser.set_defaults(run=_docker_stop)


async def _docker_stop(args: argparse.Namespace) -> int:
    _require_docker()
    exists = _docker("inspect", "--format", "{{.State.Running}}", args.name).returncode == 0
    if not exists and not args.remove_volumes:
        raise CommandError(f"there is no container named {args.name}")
    steps: list[tuple[str, ...]] = [("stop", args.name), ("rm", args.name)] if exists else []
    if not args.remove_volumes:
        steps = steps[:1]
    else:
        steps.append(("volume", "rm", args.volume))
    for step in steps:
        done = _docker(*step)
        if done.returncode != 0:
            raise CommandError(f"`docker {' '.join(step)}` failed: {_last_line(done.stderr)}")
    _out(
        f"stopped {args.name}"
        + (
            f"; removed it and the volume {args.volume}"
            if args.remove_volumes
            else f"; its data stays in the volume {args.volume}"
        )
    )
    return EXIT_OK


# -- export, import, copy ------------------------------------------------------------------------

_LOG_EVERY = 5.0  # seconds between progress lines off a terminal


class _Progress(Progress):
    """Progress of long work on standard error, while ``running()``: on a terminal, Progress's
    self-rewriting line; elsewhere (a log, a pipe) the same line, plain, every _LOG_EVERY
    seconds, so long work is never silent. A ``total`` of None is not known: ``done`` counts
    ``unit`` without a percentage."""

    def __init__(self, label: str, total: int | None, unit: str = "threads", *, visible: bool = True) -> None:
        super().__init__(sys.maxsize if total is None else total, label=label)  # maxsize: never done
        self.enabled = self.enabled and visible
        self._logged = visible and not self.enabled
        self._counted, self._unit = total is not None, unit

    def line(self, now: float | None = None) -> str:
        if self._counted:
            return super().line(now)
        elapsed = max((time.monotonic() if now is None else now) - self._started, 1e-9)
        return f"{self._label} {self.done:,} {self._unit}, {self.done / elapsed:,.0f} {self._unit}/s"

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[_Progress]:
        ticker = asyncio.ensure_future(self._log()) if self._logged else None
        try:
            yield self
        finally:
            if ticker is not None:
                ticker.cancel()
            if self.enabled and not self._counted:  # the last count, which update may have skipped
                self._stream.write(f"\r{self.line()}")
            self.close()

    async def _log(self) -> None:
        while True:
            await asyncio.sleep(_LOG_EVERY)
            _note(self.line())


class _Counted:
    """A binary stream whose lines (JSON Lines: a thread each) are counted into ``progress`` as
    they are written or read."""

    def __init__(self, stream: IO[bytes], progress: _Progress) -> None:
        self._stream, self._progress = stream, progress

    def write(self, data: bytes) -> int:
        written = self._stream.write(data)
        self._progress.update(self._progress.done + data.count(b"\n"))
        return written

    def __iter__(self) -> Iterator[bytes]:
        for line in self._stream:
            self._progress.update(self._progress.done + 1)
            yield line


def _counted(stream: IO[bytes], progress: _Progress) -> IO[bytes]:
    return cast(IO[bytes], _Counted(stream, progress))  # export_lines writes, import_lines iterates


def _add_export(commands: Subparsers) -> None:
    parser = commands.add_parser(
        "export",
        help="write every thread as JSON Lines",
        description="Write every thread, with its messages and aliases, "
        "as JSON Lines: one thread per line, read in pages.",
    )
    _url_and_file(parser, "output file (default -, standard output)")
    _page_size(parser)
    parser.set_defaults(run=_export)


def _url_and_file(parser: argparse.ArgumentParser, file_help: str) -> None:
    parser.add_argument(
        "url",
        nargs="?",
        metavar="URL",
        help="database URL (default: from the environment); a first argument without :// is taken as FILE",
    )
    parser.add_argument("file", nargs="?", metavar="FILE", help=file_help)


def _split_url_file(args: argparse.Namespace) -> tuple[str | None, str]:
    """(URL or None for the environment, FILE or "-") from one or two positional arguments."""
    url, file = args.url, args.file
    if url is not None and "://" not in url:
        if file is not None:
            raise UsageError(f"{url!r} is not a database URL (expected scheme://...)")
        url, file = None, url
    return url, file or "-"


async def _export(args: argparse.Namespace) -> int:
    url, args.file = _split_url_file(args)
    async with _store(url, read_only=True) as store:
        await _require_current(store)
        total = (await store.get_usage_stats())["total_threads"]  # for the percentage
        # No progress over the data when both go to one terminal.
        progress = _Progress("exported", total, visible=args.file != "-" or not sys.stdout.isatty())
        if args.file == "-":
            async with progress.running():
                await export_lines(store, _counted(sys.stdout.buffer, progress), page_size=args.page_size)
                sys.stdout.buffer.flush()
            return EXIT_OK
        partial = Path(f"{args.file}.part")  # renamed once complete: no half-written FILE
        try:
            with partial.open("wb") as out:
                async with progress.running():
                    count = await export_lines(store, _counted(out, progress), page_size=args.page_size)
            os.replace(partial, args.file)
        finally:
            partial.unlink(missing_ok=True)
    _out(f"exported {count:,} threads to {args.file}")
    return EXIT_OK


def _add_import(commands: Subparsers) -> None:
    parser = commands.add_parser(
        "import",
        help="read threads from JSON Lines (idempotent)",
        description="Store the threads of a JSON Lines export exactly as "
        "they are (ids, times, sequences, aliases), skipping those already "
        "stored: importing the same file again changes nothing, and an "
        "interrupted import finishes when run again.",
    )
    _url_and_file(parser, "input file (default -, standard input)")
    _page_size(parser)
    parser.set_defaults(run=_import)


async def _import(args: argparse.Namespace) -> int:
    url, args.file = _split_url_file(args)
    with contextlib.ExitStack() as files:
        source = sys.stdin.buffer if args.file == "-" else files.enter_context(open(args.file, "rb"))
        async with (
            _store(url, migrate=True, create=True) as store,
            _Progress("read", None, "lines").running() as progress,
        ):
            imported, present = await import_lines(
                store, _counted(source, progress), page_size=args.page_size
            )
    _out(f"imported {imported:,} threads ({present:,} already there)")
    return EXIT_OK


def _add_copy(commands: Subparsers) -> None:
    parser = commands.add_parser(
        "copy",
        help="copy every thread to another database (resumable)",
        description="Copy every thread with its messages and aliases from "
        "one database to another (SQLite to PostgreSQL and back), keeping "
        "ids, times and sequences. Threads already in the target are "
        "skipped, so an interrupted copy finishes when run again. Progress "
        "shows on standard error (off a terminal, a line every 5 s).",
    )
    parser.add_argument("source", metavar="FROM_URL", help="database to read")
    parser.add_argument("target", metavar="TO_URL", help="database to write (migrated if needed)")
    _page_size(parser)
    parser.set_defaults(run=_copy)


async def _copy(args: argparse.Namespace) -> int:
    # Everything is checked before anything is written: the source must be current and the
    # target no newer than this code, each looked at read-only.
    async with _store(args.source, read_only=True) as source:
        await _require_current(source)
        path = configure(args.target).path
        if path in (None, ":memory:") or Path(path).exists():  # else a new SQLite file
            async with _store(args.target, read_only=True) as target:
                await target.schema_status()  # SchemaVersionError when newer than this code
        async with _store(args.target, migrate=True, create=True) as target:
            await _copy_all(source, target, args.page_size)
    return EXIT_OK


async def _copy_all(source: ThreadStore, target: ThreadStore, page_size: int) -> None:
    total = (await source.get_usage_stats())["total_threads"]  # for the percentage
    started = time.monotonic()
    async with _Progress("copied", total).running() as progress:
        copied, present = await copy_threads(source, target, page_size=page_size, progress=progress)
    elapsed = time.monotonic() - started
    _out(
        f"copied {copied:,} threads ({present:,} already there) in {elapsed:.1f} s, "
        f"{copied / max(elapsed, 1e-9):,.0f} threads/s"
    )


# -- retention -----------------------------------------------------------------------------------

# Months and minutes never share a letter: `6m` is refused, naming both.
_UNITS = {"s": "seconds", "min": "minutes", "h": "hours", "d": "days", "w": "weeks", "mo": "months"}
_UNIT_SECONDS = {"s": 1, "min": 60, "h": 3600, "d": 86400, "w": 7 * 86400, "mo": 30 * 86400}
_UNIT_LIST = "s (seconds), min (minutes), h (hours), d (days), w (weeks) or mo (months of 30 days)"


def _age(text: str) -> timedelta:
    """``90d``, ``12h``, ``30min``, ``45s``, ``2w`` or ``6mo`` (30 days each) as a timedelta."""
    unit = text.lstrip("0123456789")
    number = text[: len(text) - len(unit)]
    if unit == "m" and number:
        raise argparse.ArgumentTypeError(
            f"{text!r} is ambiguous: write {number}min for minutes or {number}mo for months (30 days each)"
        )
    if unit not in _UNITS or not number:
        raise argparse.ArgumentTypeError(
            f"expected a whole number and a unit, {_UNIT_LIST}, like 90d; got {text!r}"
        )
    if int(number) == 0:
        raise argparse.ArgumentTypeError(
            f"{text!r} is no age: it would delete every thread; give more than 0"
        )
    try:
        return timedelta(seconds=int(number) * _UNIT_SECONDS[unit])
    except OverflowError:
        raise argparse.ArgumentTypeError(f"{text!r} is longer than a timedelta holds") from None


def _shown_age(age: timedelta) -> str:
    """An --older-than age in words: 90 days, 12 hours, 30 minutes, 45 seconds."""
    seconds = int(age.total_seconds())
    units = (("day", 86400), ("hour", 3600), ("minute", 60), ("second", 1))
    unit, count = next((unit, seconds // size) for unit, size in units if seconds % size == 0)
    return f"{count:,} {unit}{'' if count == 1 else 's'}"


def _attribute(text: str) -> tuple[str, Any]:
    """``key=value``: the value as JSON when it is JSON (1, true, "1", {...}), else as text."""
    key, equals, value = text.partition("=")
    if not equals or not key:
        raise argparse.ArgumentTypeError(f"expected key=value, got {text!r}")
    try:
        return key, json.loads(value)
    except ValueError:
        return key, value


def _add_prune(commands: Subparsers) -> None:
    parser = commands.add_parser(
        "prune",
        help="delete threads not updated for a while",
        description="Delete the threads not updated for --older-than "
        "(and whose attributes equal every --attribute given), with their "
        "messages and aliases, in batches that concurrent writers wait "
        "for at most one of; a thread updated meanwhile is kept. Progress "
        "shows on standard error (off a terminal, a line every 5 s).",
    )
    _url_argument(parser)
    parser.add_argument(
        "--older-than",
        type=_age,
        required=True,
        metavar="AGE",
        help=f"how long a thread must have gone without an update: a whole number and a unit, "
        f"{_UNIT_LIST}: 90d, 12h, 2w, 6mo, ...",
    )
    parser.add_argument(
        "--attribute",
        type=_attribute,
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="only threads whose attribute KEY equals VALUE "
        "(JSON when it parses as JSON, else text); may be repeated",
    )
    parser.add_argument("--dry-run", action="store_true", help="only count them; delete nothing")
    parser.add_argument(
        "--yes",
        action="store_true",
        help="delete without asking (on a terminal it asks first, showing how many would go)",
    )
    parser.add_argument(
        "--batch-size",
        type=_positive_int,
        default=500,
        metavar="N",
        help="threads per transaction (default 500)",
    )
    parser.set_defaults(run=_prune)


async def _prune(args: argparse.Namespace) -> int:
    attributes = dict(args.attribute) or None
    async with _store(args.url, read_only=args.dry_run) as store:
        await _require_current(store)
        if args.dry_run:
            count = await store.delete_threads(args.older_than, attributes, dry_run=True)
            _out(f"dry run: {count:,} threads not updated for {_shown_age(args.older_than)} would be deleted")
            return EXIT_OK
        total = await store.delete_threads(args.older_than, attributes, dry_run=True)
        question = (
            f"delete {total:,} threads not updated for {_shown_age(args.older_than)} "
            f"from {store.database_url}? [y/N] "
        )
        asking = not args.yes and sys.stdin.isatty() and sys.stdout.isatty()
        if asking and total and not await _confirmed(question):
            raise CommandError("not confirmed; nothing deleted")
        async with _Progress("deleted", total).running() as progress:
            count = await store.delete_threads(
                args.older_than, attributes, batch_size=args.batch_size, progress=progress.update
            )
    _out(f"deleted {count:,} threads not updated for {_shown_age(args.older_than)}")
    return EXIT_OK


async def _confirmed(question: str) -> bool:
    """Whether the user at the terminal answers ``question`` with y or yes. Read without blocking
    the event loop, so Ctrl-C interrupts the wait at once."""
    print(question, end="", flush=True)
    loop, fd = asyncio.get_running_loop(), sys.stdin.fileno()
    typed: asyncio.Future[None] = loop.create_future()

    def answered() -> None:
        if not typed.done():
            typed.set_result(None)

    loop.add_reader(fd, answered)
    try:
        await typed
    finally:
        loop.remove_reader(fd)
    return sys.stdin.readline().strip().lower() in ("y", "yes")


# -- adopt ---------------------------------------------------------------------------------------


def _add_adopt(commands: Subparsers) -> None:
    parser = commands.add_parser(
        "adopt",
        help="convert a slide-narrator database in place",
        description="Convert a database slide-narrator wrote (SQLite or "
        "PostgreSQL) in place to the threadstore schema, keeping every "
        "thread, message and time, in one transaction (SQLite: after a "
        "backup copy, FILE.narrator-backup). Stop narrator's writers first. "
        "Running it again on an adopted database changes nothing.",
    )
    _url_argument(parser)
    parser.add_argument(
        "--dry-run", action="store_true", help="only count and check what would be converted; change nothing"
    )
    parser.set_defaults(run=_adopt)


async def _adopt(args: argparse.Namespace) -> int:
    if args.url is None and configure(None).backend == "memory":
        raise UsageError(_NO_DATABASE)
    report = await adopt(args.url, dry_run=args.dry_run)
    if report.already_adopted:
        _out(f"{report.database}: already a threadstore database, nothing to adopt")
        return EXIT_OK
    for problem in report.problems:
        _out(f"problem: {problem}")
    counts = (
        f"{report.threads:,} threads, {report.messages:,} messages "
        f"({report.renumbered:,} renumbered), {len(report.problems):,} problem(s)"
    )
    if report.dry_run:
        _out(f"dry run: {report.database} would be adopted: {counts}; nothing changed")
        return EXIT_OK
    if report.backup:
        _out(f"backup: {report.backup}")
    _out(f"{report.database}: adopted {counts} in {report.seconds:.1f} s")
    return EXIT_OK


# -- files ---------------------------------------------------------------------------------------


def _add_files(commands: Subparsers) -> None:
    parser = commands.add_parser(
        "files",
        help="attachment files kept by a FileStore",
        description="Manage the files a FileStore keeps for attachments.",
    )
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    gc = actions.add_parser(
        "gc",
        help="delete files no stored message references",
        description="Delete the files under BASE_PATH that no message stored "
        "in the database references (left by failed saves, or by messages "
        "deleted since), and temporary files of interrupted writes. Prints "
        "each file freed and the total.",
    )
    gc.add_argument(
        "url",
        nargs="?",
        metavar="URL",
        help="database URL (default, or '-': from the environment, as ThreadStore.create())",
    )
    gc.add_argument("base_path", metavar="BASE_PATH", help="the FileStore's directory")
    gc.add_argument(
        "--min-age",
        type=float,
        default=GC_MIN_AGE.total_seconds(),
        metavar="SECONDS",
        help="leave files younger than this alone (default %(default).0f: an "
        "attachment stored ahead of its thread's save is not yet referenced)",
    )
    gc.set_defaults(run=_files_gc)


async def _files_gc(args: argparse.Namespace) -> int:
    if args.url is None and "://" in args.base_path:
        raise UsageError(
            f"{args.base_path!r} is a database URL; give the FileStore's directory too (BASE_PATH)"
        )
    if args.url not in (None, "-") and "://" not in args.url:
        raise UsageError(
            f"{args.url!r} is not a database URL (expected scheme://..., or - for the environment)"
        )
    if args.min_age < 0:
        raise UsageError(f"--min-age must not be negative, got {args.min_age}")
    base = Path(args.base_path)
    if not base.is_dir():
        raise CommandError(f"there is no FileStore directory at {base}")
    async with _store(None if args.url == "-" else args.url, read_only=True) as store:
        await _require_current(store)
        freed = await collect_garbage(store, FileStore(base), min_age=args.min_age)
    for item in freed:
        _out(f"freed {item['storage_path']} ({item['size']:,} bytes)")
    _out(f"freed {len(freed):,} files, {sum(item['size'] for item in freed):,} bytes")
    return EXIT_OK


COMMANDS: tuple[Callable[[Subparsers], None], ...] = (
    _add_init,
    _add_migrate,
    _add_distribute,
    _add_status,
    _add_docker_setup,
    _add_docker_stop,
    _add_export,
    _add_import,
    _add_copy,
    _add_files,
    _add_prune,
    _add_adopt,
)


def build_parser() -> argparse.ArgumentParser:
    """The ``threadstore`` argument parser with every command of COMMANDS."""
    parser = _Parser(prog="threadstore", description="Manage threadstore databases.")
    parser.add_argument("--version", action="version", version=f"threadstore {version()}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add in COMMANDS:
        add(commands)
    return parser


def _scrubbed(text: str, argv: Sequence[str]) -> str:
    """``text`` on one line, without the password of any URL among the arguments."""
    for arg in argv:
        if "://" in arg:
            with contextlib.suppress(ThreadStoreError, TypeError, ValueError):
                text = parse_url(arg).scrub(text)
    return " ".join(text.split())


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line ``argv`` (default: sys.argv[1:]); returns the exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    name = "threadstore"
    try:
        args = parser.parse_args(argv)
        name = f"threadstore {args.command}"
        run: Command = args.run
        return asyncio.run(run(args))
    except (UsageError, ConfigurationError) as exc:
        code, message = EXIT_USAGE, str(exc)
        name = getattr(exc, "prog", None) or name
    except KeyboardInterrupt:
        code, message = EXIT_INTERRUPTED, "interrupted"
        if name.endswith(("copy", "import")):
            message += "; run the same command again to finish (what is stored is kept)"
    except BrokenPipeError:  # the reader of stdout went away (`threadstore export | head`): done
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no error when Python exits
        return EXIT_OK
    except (CommandError, ThreadStoreError, OSError, ValueError) as exc:
        code, message = EXIT_FAILED, str(exc) or type(exc).__name__
    print(f"{name}: error: {_scrubbed(message, argv)}", file=sys.stderr)
    return code


if __name__ == "__main__":
    sys.exit(main())
