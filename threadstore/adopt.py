"""Adopt a slide-narrator database in place: ``await threadstore.adopt(url)``, ``threadstore adopt URL``.

slide-narrator (6.x) keeps threads and messages in tables named like threadstore's, in another
layout (narrator/database/models.py). Adoption converts them, in one transaction, into the
current threadstore schema: narrator's tables are renamed aside, migration 0001 creates
threadstore's, set-based INSERT ... SELECT statements (``sql/<dialect>/adopt.sql``) copy every
thread and message with their times, numbering each thread's messages 1..n in stored order
(sequence, then timestamp, then id), narrator's tables are dropped and the later migrations run.
On PostgreSQL narrator's tables stay locked until it commits; on SQLite a copy made with SQLite's
backup API is kept beside the file first (``<file>.narrator-backup``). A failure rolls it all back.
Attachments keep narrator's metadata and files: a FileStore on narrator's base path reads them.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import msgspec

from threadstore import queries
from threadstore.backends import migrations
from threadstore.config import DatabaseConfig, configure
from threadstore.errors import ConfigurationError, ThreadStoreError
from threadstore.queries import Migration

# What each kind of problem the adopt.problems queries find means for the adopted data.
PROBLEMS = {
    "nul": "holds a NUL character: it reads back as it is, but PostgreSQL cannot store one, so "
    "saving the thread again is refused until it is removed",
    "float": "holds a float PostgreSQL's jsonb would change (1e16 and above, or -0.0): it reads "
    "back as it is, but saving the thread again is refused until it changes",
    "not_json": "holds NaN or Infinity, which JSON has no value for: each reads back as null",
    "no_title": "was NULL: it reads back as 'Untitled Thread'",
    "time": "was missing or not in narrator's format: converted (a missing time reads as the "
    "thread's other time, else 1970-01-01T00:00:00Z)",
    "orphan": "names a thread that no longer exists (narrator could not read the message "
    "either): not adopted",
}


class AdoptionProblem(msgspec.Struct, frozen=True, kw_only=True):
    """A value of narrator's data that threadstore keeps readable but would not store as it is."""

    thread_id: str
    message_id: str | None  # None: a field of the thread itself
    field: str
    kind: str  # a key of PROBLEMS

    def __str__(self) -> str:
        where = f"thread {self.thread_id!r}"
        if self.message_id is not None:
            where = f"message {self.message_id!r} of {where}"
        return f"{self.field} of {where} {PROBLEMS[self.kind]}"


class AdoptionReport(msgspec.Struct, frozen=True, kw_only=True):
    """What ``adopt`` did, or found (``dry_run``, ``already_adopted``)."""

    database: str  # the URL, password masked
    dry_run: bool
    already_adopted: bool = False  # the database holds a threadstore schema: nothing to do
    threads: int = 0
    messages: int = 0
    renumbered: int = 0  # messages whose sequence changed (repeated or missing numbers)
    problems: list[AdoptionProblem] = []
    backup: str | None = None  # SQLite: the copy made before converting
    seconds: float = 0.0


async def adopt(url: str | None = None, *, dry_run: bool = False) -> AdoptionReport:
    """Convert the slide-narrator database at ``url`` (None: from the environment, as
    ``ThreadStore.create``) in place to the current threadstore schema; with ``dry_run``, only
    count and check what would be converted. A database already adopted is left as it is
    (``already_adopted``). ThreadStoreError when it holds neither; nothing is changed then, nor
    when the conversion fails."""
    config = configure(url)
    if config.backend == "memory" or config.path == ":memory:":
        raise ConfigurationError("adopt converts a SQLite file or a PostgreSQL database; give its URL")
    started = time.perf_counter()
    session = _sqlite(config, dry_run) if config.backend == "sqlite" else _postgres(config, dry_run)
    async with session as database:
        report = await _convert(database, config.masked_url or "", dry_run)
    return msgspec.structs.replace(report, seconds=time.perf_counter() - started)


async def _convert(db: _Database, shown: str, dry_run: bool) -> AdoptionReport:
    if await db.value("schema.ledger_exists"):
        return AdoptionReport(database=shown, dry_run=dry_run, already_adopted=True)
    if not await db.value("schema.narrator_database"):
        raise ThreadStoreError(
            f"{shown} holds neither slide-narrator's tables (threads, messages) "
            "nor a threadstore schema: there is nothing to adopt"
        )
    if not dry_run:
        await db.lock()
    threads, messages, renumbered = await db.row("adopt.counts")
    problems = [
        AdoptionProblem(thread_id=t, message_id=m, field=f, kind=k)
        for t, m, f, k in await db.rows("adopt.problems")
    ]
    report = AdoptionReport(
        database=shown,
        dry_run=dry_run,
        threads=threads,
        messages=messages,
        renumbered=renumbered,
        problems=problems,
    )
    if dry_run:
        return report
    backup = await db.backup()
    first, *later = queries.load(db.dialect).migrations
    await db.run_all(db.renames)
    await migrations.apply(db, [first])  # the copies write version 1's tables
    await db.run_all(db.copies)
    await db.run_all(("adopt.drop_messages", "adopt.drop_threads"))
    await migrations.apply(db, later)
    return msgspec.structs.replace(report, backup=backup)


class _Database:
    """One connection inside the adoption's transaction; the dialect's part of the steps."""

    dialect: str
    renames: tuple[str, ...]
    copies: tuple[str, ...]  # in the order the foreign key allows

    def __init__(self, conn: Any) -> None:
        self.conn = conn
        self.queries = queries.load(self.dialect)

    async def value(self, name: str) -> Any:
        rows = await self.rows(name)
        return rows[0][0] if rows else None

    async def row(self, name: str) -> Sequence[Any]:
        return (await self.rows(name))[0]

    async def rows(self, name: str) -> Sequence[Sequence[Any]]:
        raise NotImplementedError

    async def run(self, name: str, /, **params: Any) -> None:
        raise NotImplementedError

    async def run_all(self, names: Sequence[str]) -> None:
        for name in names:
            try:
                await self.run(name)
            except ThreadStoreError:
                raise
            except Exception as exc:
                raise ThreadStoreError(
                    f"adoption failed at {self.queries[name].origin} ({name}), nothing was changed: {exc}"
                ) from exc

    async def lock(self) -> None:
        """Keep narrator's writers out until the transaction ends."""

    async def backup(self) -> str | None:
        return None

    async def run_script(self, migration: Migration) -> None:
        """Run a migration's script (migrations.apply), after creating the ledger."""
        raise NotImplementedError

    async def record(self, migration: Migration) -> None:
        raise NotImplementedError


class _SQLiteDatabase(_Database):
    dialect = "sqlite"
    renames = ("adopt.rename_threads", "adopt.rename_messages")
    copies = ("adopt.copy_messages", "adopt.copy_threads")  # the foreign key is checked at COMMIT

    def __init__(self, conn: Any, path: str) -> None:
        super().__init__(conn)
        self.path = path

    async def rows(self, name: str) -> Sequence[Sequence[Any]]:
        return list(await self.conn.execute_fetchall(self.queries[name].sql))

    async def run(self, name: str, /, **params: Any) -> None:
        query = self.queries[name]
        await self.conn.execute(query.sql, query.args(params))

    async def backup(self) -> str:
        """A consistent copy of the file beside it, through SQLite's backup API: read by a second
        connection while this one holds the write lock, so it is the data being converted."""
        import aiosqlite

        target = f"{self.path}.narrator-backup"
        async with aiosqlite.connect(self.path) as source, aiosqlite.connect(target) as copy:
            await source.backup(copy)
        return target

    async def run_script(self, migration: Migration) -> None:
        import sqlite3

        await self.run("schema.create_ledger")
        for statement in migration.statements:
            try:
                await self.conn.execute(statement)
            except sqlite3.Error as exc:
                raise ThreadStoreError(
                    f"adoption failed in migration {migration.origin}, nothing was changed: {exc}"
                ) from exc

    async def record(self, migration: Migration) -> None:
        await self.run(
            "schema.record",
            version=migration.version,
            name=migration.name,
            applied_at=datetime.now(UTC).isoformat(timespec="microseconds"),
        )


class _PostgresDatabase(_Database):
    dialect = "postgres"
    renames = ("adopt.rename_threads", "adopt.rename_messages", "postgres.adopt_rename_indexes")
    copies = ("adopt.copy_threads", "adopt.copy_messages")

    async def rows(self, name: str) -> Sequence[Sequence[Any]]:
        return list(await self.conn.fetch(self.queries[name].sql))

    async def run(self, name: str, /, **params: Any) -> None:
        query = self.queries[name]
        await self.conn.execute(query.sql, *query.args(params))

    async def lock(self) -> None:
        await self.run("postgres.migration_lock")  # one adoption or migration at a time
        await self.run("postgres.adopt_lock")

    async def run_script(self, migration: Migration) -> None:
        import asyncpg

        await self.run("schema.create_ledger")
        try:
            await self.conn.execute(migration.script)
        except asyncpg.PostgresError as exc:
            raise ThreadStoreError(
                f"adoption failed in migration {migration.origin}, nothing was changed: {exc}"
            ) from exc

    async def record(self, migration: Migration) -> None:
        await self.run(
            "schema.record", version=migration.version, name=migration.name, applied_at=datetime.now(UTC)
        )


@contextlib.asynccontextmanager
async def _sqlite(config: DatabaseConfig, dry_run: bool) -> AsyncIterator[_Database]:
    """A connection in a transaction on the SQLite file: read-only for a dry run, else holding
    the write lock (BEGIN IMMEDIATE) from the first read to COMMIT."""
    import asyncio
    import sqlite3

    import aiosqlite

    path = config.path or ""
    if not Path(path).is_file():
        raise ThreadStoreError(f"there is no SQLite database at {path}")
    backup = Path(f"{path}.narrator-backup")
    try:
        async with aiosqlite.connect(path, isolation_level=None) as conn:
            database = _SQLiteDatabase(conn, path)
            await database.run("sqlite.wait_when_busy")
            if dry_run:
                await database.run("sqlite.adopt_read_only")
            await database.run("sqlite.begin_read" if dry_run else "sqlite.begin")
            try:
                yield database
            except BaseException:
                await asyncio.shield(database.run("sqlite.rollback"))  # also when cancelled
                if not dry_run:
                    backup.unlink(missing_ok=True)  # the database is as it was
                raise
            await database.run("sqlite.rollback" if dry_run else "sqlite.commit")
    except sqlite3.Error as exc:
        raise ThreadStoreError(f"adopting {config.masked_url} failed, nothing was changed: {exc}") from exc


@contextlib.asynccontextmanager
async def _postgres(config: DatabaseConfig, dry_run: bool) -> AsyncIterator[_Database]:
    """A connection in one transaction: read-only (repeatable read) for a dry run."""
    import asyncpg

    try:
        conn = await asyncpg.connect(config.dsn, timeout=config.settings.connect_timeout)
    except (OSError, TimeoutError, asyncpg.PostgresError) as exc:
        raise ThreadStoreError(
            f"cannot connect to PostgreSQL at {config.masked_url}: {config.scrub(str(exc))}"
        ) from None
    try:
        isolation = "repeatable_read" if dry_run else "read_committed"
        async with conn.transaction(isolation=isolation, readonly=dry_run):
            yield _PostgresDatabase(conn)
    except asyncpg.PostgresError as exc:
        raise ThreadStoreError(
            f"adopting {config.masked_url} failed, nothing was changed: {config.scrub(str(exc))}"
        ) from exc
    finally:
        await conn.close()
