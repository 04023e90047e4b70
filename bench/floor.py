"""The raw floor: the fewest statements asyncpg / aiosqlite code can run for each operation.

No models, no validation, no query registry: fixed SQL strings, plain dicts in and out. Reads
return plain dicts (JSON columns decoded with msgspec, the fastest decoder there is), so the floor
does everything a caller needs and nothing more. Writes keep the schema's invariants (the thread's
last_sequence hands out message sequences) so threadstore can read what the floor wrote.

PostgreSQL: one statement per operation (writable CTEs), one asyncpg pool of the same size as
threadstore's, no reset query on release. SQLite: one connection in autocommit mode; a write of
more than one statement is BEGIN IMMEDIATE ... COMMIT, as any correct concurrent writer must.
Reads build the JSON document in the database and decode it once: measured faster than decoding
rows into dicts on both databases (see README, Performance).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import msgspec

from bench import data

_encode = msgspec.json.Encoder().encode
_decode = msgspec.json.Decoder().decode

# -- PostgreSQL ------------------------------------------------------------------------------------

_PG_MESSAGE_DOC = """json_build_object(
    'id', m.id, 'thread_id', m.thread_id, 'sequence', m.sequence, 'turn', m.turn, 'role', m.role,
    'content', m.content, 'reasoning_content', m.reasoning_content, 'name', m.name,
    'tool_call_id', m.tool_call_id, 'tool_calls', m.tool_calls, 'attributes', m.attributes,
    'timestamp', m.timestamp, 'source', m.source, 'platforms', m.platforms,
    'attachments', m.attachments, 'metrics', m.metrics, 'reactions', m.reactions)"""

_PG_THREAD_DOC = f"""json_build_object(
    'id', t.id, 'title', t.title, 'attributes', t.attributes, 'platforms', t.platforms,
    'source', t.source, 'created_at', t.created_at, 'updated_at', t.updated_at,
    'messages', coalesce((SELECT json_agg({_PG_MESSAGE_DOC} ORDER BY m.sequence)
                            FROM messages AS m WHERE m.thread_id = t.id), '[]'::json))"""

PG_GET = f"SELECT {_PG_THREAD_DOC} FROM threads AS t WHERE t.id = $1"

PG_LIST = f"""
SELECT coalesce(json_agg({_PG_THREAD_DOC} ORDER BY t.updated_at DESC, t.id DESC), '[]'::json)
  FROM (SELECT * FROM threads ORDER BY updated_at DESC, id DESC LIMIT $1) AS t"""

_PG_INSERT_MESSAGES = """
INSERT INTO messages (id, thread_id, sequence, turn, role, content, reasoning_content, name,
                      tool_call_id, tool_calls, attributes, timestamp, source, platforms,
                      attachments, metrics, reactions)"""

# JSON columns travel as text[] (a jsonb[] parameter would read a list value as a sub-array).
PG_SAVE_NEW = f"""
WITH thread AS (
    INSERT INTO threads (id, title, attributes, platforms, source, created_at, updated_at, last_sequence)
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
)
{_PG_INSERT_MESSAGES}
SELECT id, thread_id, sequence, turn, role, content::jsonb, reasoning_content, name, tool_call_id,
       tool_calls::jsonb, attributes::jsonb, timestamp, source::jsonb, platforms::jsonb,
       attachments::jsonb, metrics::jsonb, reactions::jsonb
  FROM unnest($9::text[], $10::text[], $11::int[], $12::int[], $13::text[], $14::text[],
              $15::text[], $16::text[], $17::text[], $18::text[], $19::text[],
              $20::timestamptz[], $21::text[], $22::text[], $23::text[], $24::text[], $25::text[])
       AS m(id, thread_id, sequence, turn, role, content, reasoning_content, name, tool_call_id,
            tool_calls, attributes, timestamp, source, platforms, attachments, metrics, reactions)"""

PG_APPEND = f"""
WITH thread AS (
    UPDATE threads SET updated_at = $2, last_sequence = last_sequence + 1
     WHERE id = $1
    RETURNING last_sequence
)
{_PG_INSERT_MESSAGES}
SELECT $3, $1, thread.last_sequence, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17
  FROM thread"""


def _jsonb_encode(value: Any) -> bytes:
    return b"\x01" + _encode(value)


def _jsonb_decode(value: bytes) -> Any:
    return _decode(value[1:])


async def _pg_init(conn: Any) -> None:
    await conn.set_type_codec("jsonb", schema="pg_catalog", format="binary",
                              encoder=_jsonb_encode, decoder=_jsonb_decode)
    await conn.set_type_codec("json", schema="pg_catalog", format="binary",
                              encoder=_encode, decoder=_decode)


async def _no_reset(conn: Any) -> None:
    pass


class PgFloor:
    """Raw asyncpg."""

    name = "floor"

    def __init__(self, dsn: str, pool_size: int = 10) -> None:
        self.dsn, self.pool_size = dsn, pool_size
        self.pool: Any = None

    async def open(self) -> None:
        import asyncpg

        self.pool = await asyncpg.create_pool(self.dsn, min_size=1, max_size=self.pool_size,
                                              init=_pg_init, reset=_no_reset)

    async def close(self) -> None:
        await self.pool.close()

    async def save_new(self, thread: dict[str, Any], messages: list[dict[str, Any]]) -> None:
        columns = [[data.json_text(m[c]) for m in messages] if c in data.JSON_COLUMNS
                   else [m[c] for m in messages] for c in data.MESSAGE_COLUMNS]
        await self.pool.execute(PG_SAVE_NEW, *[thread[c] for c in data.THREAD_COLUMNS], *columns)

    async def append(self, thread_id: str, message: dict[str, Any], updated_at: datetime) -> None:
        row = [message[c] for c in data.MESSAGE_COLUMNS]
        await self.pool.execute(PG_APPEND, thread_id, updated_at, row[0], *row[3:])

    async def get(self, thread_id: str) -> dict[str, Any] | None:
        doc: dict[str, Any] | None = await self.pool.fetchval(PG_GET, thread_id)
        return doc

    async def list(self, limit: int) -> list[dict[str, Any]]:
        docs: list[dict[str, Any]] = await self.pool.fetchval(PG_LIST, limit)
        return docs

    async def fetch_value(self, sql: str, *args: Any) -> Any:
        return await self.pool.fetchval(sql, *args)

    async def seed(self, threads: Sequence[tuple[dict[str, Any], list[dict[str, Any]]]],
                   aliases: Sequence[tuple[str, str]] = (), *, settle: bool = True) -> None:
        """Bulk load with COPY (not timed): threads, their messages, aliases."""
        async with self.pool.acquire() as conn, conn.transaction():
            await conn.copy_records_to_table(
                "threads", columns=data.THREAD_COLUMNS,
                records=[[t[c] for c in data.THREAD_COLUMNS] for t, _ in threads])
            await conn.copy_records_to_table(
                "messages", columns=data.MESSAGE_COLUMNS,
                records=[[m[c] for c in data.MESSAGE_COLUMNS] for _, ms in threads for m in ms])
            if aliases:
                now = datetime.now(UTC)
                await conn.copy_records_to_table(
                    "thread_aliases", columns=("alias", "thread_id", "created_at"),
                    records=[(a, t, now) for a, t in aliases])
        if settle:
            await self.settle()

    async def settle(self) -> None:
        """After a bulk load: ANALYZE, as autovacuum soon would. A generic plan prepared against
        the statistics of near-empty tables is kept until then (measured: a save of a loaded
        thread 94 ms before, 3.7 ms after, on 60,000 messages loaded by COPY)."""
        await self.pool.execute("ANALYZE threads, messages, thread_aliases")


# -- SQLite ----------------------------------------------------------------------------------------

_SQ_MESSAGE_DOC = """json_object(
    'id', m.id, 'thread_id', m.thread_id, 'sequence', m.sequence, 'turn', m.turn, 'role', m.role,
    'content', json(m.content), 'reasoning_content', m.reasoning_content, 'name', m.name,
    'tool_call_id', m.tool_call_id, 'tool_calls', json(m.tool_calls),
    'attributes', json(m.attributes), 'timestamp', m.timestamp, 'source', json(m.source),
    'platforms', json(m.platforms), 'attachments', json(m.attachments),
    'metrics', json(m.metrics), 'reactions', json(m.reactions))"""

# SQLite 3.40 has no ORDER BY inside an aggregate: the subquery orders, json_group_array keeps it
# (the order SQLite documents for aggregates over an ordered subquery in practice).
_SQ_THREAD_DOC = f"""json_object(
    'id', t.id, 'title', t.title, 'attributes', json(t.attributes), 'platforms', json(t.platforms),
    'source', json(t.source), 'created_at', t.created_at, 'updated_at', t.updated_at,
    'messages', (SELECT json_group_array(json(doc)) FROM
                   (SELECT {_SQ_MESSAGE_DOC} AS doc FROM messages AS m
                     WHERE m.thread_id = t.id ORDER BY m.sequence)))"""

SQ_GET = f"SELECT {_SQ_THREAD_DOC} FROM threads AS t WHERE t.id = ?"

SQ_LIST = f"""
SELECT json_group_array(json(doc)) FROM (
    SELECT {_SQ_THREAD_DOC} AS doc
      FROM threads AS t ORDER BY t.updated_at DESC, t.id DESC LIMIT ?)"""

_SQ_PLACEHOLDERS = ", ".join("?" * len(data.MESSAGE_COLUMNS))
SQ_INSERT_MESSAGE = f"INSERT INTO messages ({', '.join(data.MESSAGE_COLUMNS)}) VALUES ({_SQ_PLACEHOLDERS})"
SQ_INSERT_THREAD = (f"INSERT INTO threads ({', '.join(data.THREAD_COLUMNS)}) "
                    f"VALUES ({', '.join('?' * len(data.THREAD_COLUMNS))})")
SQ_APPEND_THREAD = ("UPDATE threads SET updated_at = ?, last_sequence = last_sequence + 1 "
                    "WHERE id = ? RETURNING last_sequence")


class SqliteFloor:
    """Raw aiosqlite, one connection (SQLite has one writer anyway)."""

    name = "floor"

    def __init__(self, path: str) -> None:
        self.path = path
        self.conn: Any = None
        self.lock = asyncio.Lock()  # one connection: transactions of concurrent tasks must not mix

    async def open(self) -> None:
        import aiosqlite

        self.conn = await aiosqlite.connect(self.path, isolation_level=None)
        await self.conn.executescript(
            "PRAGMA busy_timeout = 5000; PRAGMA journal_mode = WAL; PRAGMA foreign_keys = ON;")

    async def close(self) -> None:
        await self.conn.close()

    async def save_new(self, thread: dict[str, Any], messages: list[dict[str, Any]]) -> None:
        thread_values = data.sqlite_thread_values(thread)
        message_values = [data.sqlite_message_values(m) for m in messages]
        async with self.lock:
            await self.conn.execute("BEGIN IMMEDIATE")
            try:
                await self.conn.execute(SQ_INSERT_THREAD, thread_values)
                await self.conn.executemany(SQ_INSERT_MESSAGE, message_values)
                await self.conn.execute("COMMIT")
            except BaseException:
                await self.conn.execute("ROLLBACK")
                raise

    async def append(self, thread_id: str, message: dict[str, Any], updated_at: datetime) -> None:
        async with self.lock:
            await self.conn.execute("BEGIN IMMEDIATE")
            try:
                rows = await self.conn.execute_fetchall(SQ_APPEND_THREAD,
                                                        (data.sqlite_time(updated_at), thread_id))
                values = data.sqlite_message_values({**message, "sequence": next(iter(rows))[0]})
                await self.conn.execute(SQ_INSERT_MESSAGE, values)
                await self.conn.execute("COMMIT")
            except BaseException:
                await self.conn.execute("ROLLBACK")
                raise

    async def get(self, thread_id: str) -> dict[str, Any] | None:
        async with self.lock:
            rows = await self.conn.execute_fetchall(SQ_GET, (thread_id,))
        row = next(iter(rows), None)
        return None if row is None else _decode(row[0])

    async def list(self, limit: int) -> list[dict[str, Any]]:
        async with self.lock:
            rows = await self.conn.execute_fetchall(SQ_LIST, (limit,))
        docs: list[dict[str, Any]] = _decode(next(iter(rows))[0])
        return docs

    async def fetch_value(self, sql: str, *args: Any) -> Any:
        async with self.lock:
            rows = await self.conn.execute_fetchall(sql, args)
        row = next(iter(rows), None)
        return None if row is None else row[0]

    async def seed(self, threads: Sequence[tuple[dict[str, Any], list[dict[str, Any]]]],
                   aliases: Sequence[tuple[str, str]] = (), *, settle: bool = True) -> None:
        async with self.lock:
            await self.conn.execute("BEGIN IMMEDIATE")
            await self.conn.executemany(SQ_INSERT_THREAD, [data.sqlite_thread_values(t) for t, _ in threads])
            await self.conn.executemany(
                SQ_INSERT_MESSAGE, [data.sqlite_message_values(m) for _, ms in threads for m in ms])
            if aliases:
                now = data.sqlite_time(datetime.now(UTC))
                await self.conn.executemany(
                    "INSERT INTO thread_aliases (alias, thread_id, created_at) VALUES (?, ?, ?)",
                    [(a, t, now) for a, t in aliases])
            await self.conn.execute("COMMIT")
        if settle:
            await self.settle()

    async def settle(self) -> None:
        """After a bulk load: fold the WAL back into the database file, so the next writes do not
        pay for the checkpoint. (No ANALYZE: threadstore does not run it on SQLite either.)"""
        async with self.lock:
            await self.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
