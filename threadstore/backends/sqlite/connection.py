"""The SQLite connection: one aiosqlite connection per store, and the one place where SQL meets it.

The connection runs in autocommit mode (``isolation_level=None``) and every write is an explicit
``BEGIN IMMEDIATE`` ... ``COMMIT``. One asyncio.Lock guards the connection for a whole
operation, so the statements of concurrent operations never interleave inside a transaction.
Times are stored as ISO-8601 UTC text with microseconds, so text order is time order.
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import contextvars
import os
import sqlite3
import time
from collections.abc import AsyncIterator, Callable
from operator import itemgetter
from pathlib import Path
from typing import Any, TypeVar

import aiosqlite

from threadstore import queries, tracing
from threadstore.backends.migrations import narrator_refusal
from threadstore.backends.sqlite.documents import FUNCTIONS, MESSAGE_COLUMNS
from threadstore.errors import ConflictError, StoreUnavailableError, ThreadStoreError
from threadstore.queries import Kind, enable_echo, log_statement

_MESSAGE_WRITES = ("sqlite.insert_message", "sqlite.update_message")  # run with executemany
_T = TypeVar("_T")
# Extended result codes (sqlite3.Error.sqlite_errorcode) for constraint failures.
_PRIMARY_KEY, _UNIQUE, _FOREIGN_KEY = 1555, 2067, 787
_BUSY, _LOCKED = 5, 6
_BUSY_TIMEOUT = 5.0  # seconds; the busy_timeout pragma in sql/sqlite/sqlite.sql says the same


class Busy(StoreUnavailableError):
    """SQLITE_BUSY / SQLITE_LOCKED: another connection holds the lock."""


def _translate(exc: sqlite3.Error, name: str) -> ThreadStoreError:
    code = getattr(exc, "sqlite_errorcode", None)
    if code in (_PRIMARY_KEY, _UNIQUE):
        return ConflictError(f"{name}: an id is already stored elsewhere ({exc})")
    if code is not None and code & 0xFF in (_BUSY, _LOCKED):
        return Busy(f"{name}: the SQLite database is locked by another writer ({exc})")
    if isinstance(exc, sqlite3.OperationalError):
        return StoreUnavailableError(f"{name}: SQLite failed: {exc}")
    return ThreadStoreError(f"{name}: SQLite failed: {exc}")


def _daemon(conn: aiosqlite.Connection) -> aiosqlite.Connection:
    """``conn`` with its worker thread made a daemon, before it starts.

    aiosqlite runs each connection on a non-daemon thread, so a program that never closes its
    store would hang at exit (omnilib/aiosqlite#299). Committed data is on disk already: a write
    is acknowledged only after its COMMIT returned. The store still closes the connection when
    the event loop ends (lifecycle's watcher); this covers loops that end without
    saying so.
    """
    thread: Any = getattr(conn, "_thread", conn)  # aiosqlite < 0.22: the Connection is the Thread
    thread.daemon = True
    return conn


class SQLiteConnection:
    """The store's one aiosqlite connection and the lock every operation holds on it for its
    whole length, so the statements of concurrent operations never interleave."""

    def __init__(self, path: str, *, echo: bool, url: str, read_only: bool) -> None:
        self._path = path
        self._url = url  # as given, for messages naming a command
        self._echo = echo
        self._read_only = read_only
        self._queries = queries.load("sqlite")
        # Each executemany statement binds its parameters by name from MESSAGE_COLUMNS rows.
        self._binders = {
            name: itemgetter(*[MESSAGE_COLUMNS.index(p) for p in self._queries[name].params])
            for name in _MESSAGE_WRITES
        }
        self._conn: aiosqlite.Connection | None = None
        self.lock = asyncio.Lock()
        self._spans = tracing.Statements("sqlite", path, self.usage)

    async def open(self) -> None:
        """Open and configure the connection; SchemaVersionError for a narrator database."""
        if self._path != ":memory:" and not Path(self._path).parent.exists():
            raise StoreUnavailableError(
                f"cannot open SQLite database {self._path!r}: its directory does not exist"
            )
        if self._read_only and self._path != ":memory:" and not Path(self._path).is_file():
            raise StoreUnavailableError(
                f"cannot open SQLite database {self._path!r} read-only: there is no such file"
            )
        if self._echo:
            enable_echo()
        if not self._read_only and self._path != ":memory:":
            # A new database is owner-only (its -wal and -shm files follow it), not 0644.
            try:
                os.close(os.open(self._path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
            except FileExistsError:
                pass
            except OSError as exc:
                raise StoreUnavailableError(f"cannot open SQLite database {self._path!r}: {exc}") from exc
        try:
            self._conn = await _daemon(aiosqlite.connect(self._path, isolation_level=None))
            # Before _configure, which switches the file to WAL: a narrator database is refused
            # unchanged.
            await self.run("sqlite.wait_when_busy")
            narrator = await self.run("schema.narrator_database")
            if not narrator:
                await self._configure()
            for name, function in FUNCTIONS.items():
                arity = function.__code__.co_argcount
                await self._conn.create_function(name, arity, function, deterministic=True)
        except (sqlite3.Error, ThreadStoreError) as exc:
            await self.close()
            raise StoreUnavailableError(f"cannot open SQLite database {self._path!r}: {exc}") from exc
        except BaseException:
            await self.close()
            raise
        if narrator:
            await self.close()
            raise narrator_refusal(self._url)

    async def _configure(self) -> None:
        # Switching a new file to WAL takes an exclusive lock, and SQLite may answer SQLITE_BUSY
        # at once rather than wait out busy_timeout (seen with two stores opening one new file
        # together), so wait for the lock here, as long as busy_timeout would.
        loop = asyncio.get_running_loop()
        deadline = loop.time() + _BUSY_TIMEOUT
        delay = 0.005
        while True:
            try:
                await self.run("sqlite.connect_read_only" if self._read_only else "sqlite.connect")
                return
            except Busy:
                if loop.time() >= deadline:
                    raise
                await asyncio.sleep(delay)
                delay = min(delay * 2, 0.2)

    async def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            await conn.close()

    def abandon(self) -> None:
        """Drop the connection of an event loop that has ended."""
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(Exception):
                conn.stop()  # closes the sqlite3 connection on its own thread, then ends it

    @property
    def engine(self) -> aiosqlite.Connection | None:
        """The aiosqlite connection; None before open() and after close()."""
        return self._conn

    def usage(self) -> tracing.Usage | None:
        """The connection in use or idle, and the operations waiting for its lock; None while
        it is closed (tracing's gauges)."""
        if self._conn is None:
            return None
        used = int(self.lock.locked())
        # asyncio.Lock counts its waiters only privately; read here alone.
        return tracing.Usage(used, 1 - used, 1, len(self.lock._waiters or ()), 0)

    def connection(self) -> aiosqlite.Connection:
        if self._conn is None:
            raise StoreUnavailableError("the SQLite connection is closed")
        return self._conn

    async def run(self, name: str, /, **params: Any) -> Any:
        """Run one named query; the one place where SQL meets the driver."""
        query = self._queries[name]
        args = query.args(params)
        conn = self.connection()
        started = time.perf_counter() if self._echo else 0.0
        with self._spans(query):
            try:
                match query.kind:
                    case Kind.ONE:
                        rows = await conn.execute_fetchall(query.sql, args)
                        return next(iter(rows), None)
                    case Kind.MANY:
                        return list(await conn.execute_fetchall(query.sql, args))
                    case Kind.VALUE:
                        rows = await conn.execute_fetchall(query.sql, args)
                        row = next(iter(rows), None)
                        return None if row is None else row[0]
                    case Kind.EXEC:
                        await conn.execute(query.sql, args)
                        return None
                    case Kind.ROWCOUNT:
                        cursor = await conn.execute(query.sql, args)
                        return cursor.rowcount
                    case Kind.SCRIPT:
                        await conn.executescript(query.sql)
                        return None
            except sqlite3.Error as exc:
                raise _translate(exc, name) from exc
            finally:
                if started:
                    log_statement(name, started, time.perf_counter())

    async def run_many(self, name: str, rows: builtins.list[tuple[Any, ...]]) -> None:
        """Run one of _MESSAGE_WRITES once per row (a tuple in MESSAGE_COLUMNS order)."""
        bind = self._binders[name]
        query = self._queries[name]
        started = time.perf_counter() if self._echo else 0.0
        with self._spans(query):
            try:
                await self.connection().executemany(query.sql, [bind(row) for row in rows])
            except sqlite3.Error as exc:
                raise _translate(exc, name) from exc
            finally:
                if started:
                    log_statement(name, started, time.perf_counter())

    @contextlib.asynccontextmanager
    async def transaction(self, *, patient: bool = True) -> AsyncIterator[None]:
        """BEGIN IMMEDIATE ... COMMIT, rolled back on any failure or cancellation. Not
        ``patient``, BEGIN raises Busy at once when another connection holds the write lock."""
        try:
            if patient:
                await self.run("sqlite.begin")
            else:
                await self._begin_or_fail()
            yield
            await self.run("sqlite.commit")
        except BaseException:
            # Shielded: a cancelled task must still leave no transaction open on the connection.
            await asyncio.shield(self._rollback())
            raise

    @contextlib.asynccontextmanager
    async def snapshot(self) -> AsyncIterator[None]:
        """Several reads that see one snapshot (the caller holds the lock)."""
        try:
            await self.run("sqlite.begin_read")
            yield
            await self.run("sqlite.commit")
        except BaseException:
            await asyncio.shield(self._rollback())
            raise

    async def in_one_call(self, name: str, write: Callable[[sqlite3.Connection], _T]) -> _T:
        """``write`` inside BEGIN IMMEDIATE ... COMMIT, all in one call to the connection's
        thread (the caller holds the lock): each call costs 60-100 us of handing over (BEGIN, an
        insert, an executemany of 3 rows and COMMIT: 0.86 ms in four calls, 0.50 ms in one,
        measured side by side on aiosqlite). Rolled back on any failure. A cancellation waits
        for the call to end (it cannot be stopped on the thread) and is raised then, so the
        write has happened wholly or not at all. ``write`` runs its statements with run_in_call
        and run_many_in_call."""
        conn = self.connection()

        def transaction(raw: sqlite3.Connection) -> _T:
            self.run_in_call(raw, "sqlite.begin")
            try:
                result = write(raw)
                self.run_in_call(raw, "sqlite.commit")
            except BaseException:
                if raw.in_transaction:
                    raw.rollback()
                raise
            return result

        # aiosqlite's one way to run a function on its thread (private, as _daemon's _thread).
        worker: Any = conn
        # In a copy of this task's context: the statements' spans are children of its span.
        run = contextvars.copy_context().run
        call: asyncio.Future[_T] = asyncio.ensure_future(worker._execute(run, transaction, worker._conn))
        cancelled: asyncio.CancelledError | None = None
        while not call.done():
            try:
                await asyncio.wait({call})
            except asyncio.CancelledError as exc:
                cancelled = cancelled or exc
        try:
            result = call.result()
        except sqlite3.Error as exc:
            raise _translate(exc, name) from exc
        if cancelled is not None:
            raise cancelled
        return result

    def run_in_call(
        self, raw: sqlite3.Connection, name: str, params: dict[str, Any] | None = None
    ) -> sqlite3.Cursor:
        """One named query on the connection's own thread (inside in_one_call)."""
        query = self._queries[name]
        started = time.perf_counter() if self._echo else 0.0
        with self._spans(query):
            try:
                return raw.execute(query.sql, query.args(params or {}))
            finally:
                if started:
                    log_statement(name, started, time.perf_counter())

    def run_many_in_call(
        self, raw: sqlite3.Connection, name: str, rows: builtins.list[tuple[Any, ...]]
    ) -> None:
        """One of _MESSAGE_WRITES once per row, on the connection's own thread (inside
        in_one_call)."""
        bind = self._binders[name]
        query = self._queries[name]
        started = time.perf_counter() if self._echo else 0.0
        with self._spans(query):
            try:
                raw.executemany(query.sql, [bind(row) for row in rows])
            finally:
                if started:
                    log_statement(name, started, time.perf_counter())

    async def _begin_or_fail(self) -> None:
        await self.run("sqlite.fail_when_busy")
        try:
            await self.run("sqlite.begin")
        finally:
            # Shielded as _rollback is: the connection's next user must find busy_timeout back.
            await asyncio.shield(self.run("sqlite.wait_when_busy"))

    async def _rollback(self) -> None:
        # Issued unconditionally: a cancelled statement may still be queued on the connection's
        # thread, and this ROLLBACK runs after it. With no transaction open it fails harmlessly.
        with contextlib.suppress(ThreadStoreError):
            await self.run("sqlite.rollback")
