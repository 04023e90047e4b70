"""The minimal floor (issue 14): what a competent developer writes by hand without threadstore.

Its own two tables, only the primary keys, one index on ``messages(thread_id, sequence)`` and one
on ``threads(updated_at DESC)``; no search indexes, no aliases, no statistics. Message content is
plain text, metrics one JSON value; the rows come from bench/data.py, so every side stores the
same content and metrics.

- PostgreSQL (asyncpg, a database of its own): each write is one statement (a save of a new
  thread inserts the thread and its messages from ``unnest`` arrays); reads are binary rows, the
  thread's row then its messages' (UNION ALL, so the thread's JSON is decoded once per thread),
  turned into dicts, jsonb decoded by a msgspec codec.
  The pool has threadstore's default size (5, up to 15) and, like threadstore's, no reset query.
- SQLite (aiosqlite, a file of its own, WAL, ``synchronous=FULL`` as threadstore promises,
  foreign keys on): writes are BEGIN IMMEDIATE, ``execute``/``executemany``, COMMIT on one
  connection, under a lock so concurrent tasks' transactions do not mix; reads are one
  ``execute_fetchall``, JSON text decoded with msgspec.

An append takes the next sequence as ``coalesce(max(sequence), 0) + 1`` from the
``(thread_id, sequence)`` index: the caller of an append does not know the thread's length, and
that is the query one writes for it. The index is unique, so two racing appends fail rather than
share a sequence.
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

Rows = Sequence[tuple[dict[str, Any], list[dict[str, Any]]]]

THREAD_COLUMNS = ("id", "title", "attributes", "platforms", "created_at", "updated_at")
MESSAGE_COLUMNS = ("id", "thread_id", "sequence", "turn", "role", "content", "metrics", "timestamp")
_SPLIT = len(THREAD_COLUMNS)

# -- PostgreSQL ------------------------------------------------------------------------------------

PG_SCHEMA = """
CREATE TABLE threads (
    id         text PRIMARY KEY,
    title      text,
    attributes jsonb NOT NULL,
    platforms  jsonb NOT NULL,
    created_at timestamptz NOT NULL,
    updated_at timestamptz NOT NULL
);
CREATE INDEX threads_updated_at ON threads (updated_at DESC);
CREATE TABLE messages (
    id        text PRIMARY KEY,
    thread_id text NOT NULL REFERENCES threads (id) ON DELETE CASCADE,
    sequence  integer NOT NULL,
    turn      integer,
    role      text NOT NULL,
    content   text NOT NULL,
    metrics   jsonb NOT NULL,
    timestamp timestamptz NOT NULL
);
CREATE UNIQUE INDEX messages_thread_sequence ON messages (thread_id, sequence);
"""

PG_SAVE_NEW = """
WITH thread AS (
    INSERT INTO threads (id, title, attributes, platforms, created_at, updated_at)
    VALUES ($1, $2, $3, $4, $5, $6)
)
INSERT INTO messages (id, thread_id, sequence, turn, role, content, metrics, timestamp)
SELECT * FROM unnest($7::text[], $8::text[], $9::int[], $10::int[], $11::text[], $12::text[],
                     $13::jsonb[], $14::timestamptz[])"""

PG_APPEND = """
WITH thread AS (UPDATE threads SET updated_at = $2 WHERE id = $1 RETURNING id)
INSERT INTO messages (id, thread_id, sequence, turn, role, content, metrics, timestamp)
SELECT $3, thread.id,
       coalesce((SELECT max(sequence) FROM messages WHERE thread_id = $1), 0) + 1,
       $4, $5, $6, $7, $8
  FROM thread"""

# Reads as one writes them by hand (issue 28): one round trip whose first row is the thread and
# whose next rows are its messages, in sequence order, so each thread's columns (and its two JSON
# objects) cross the wire and are decoded once per thread, not once per message row. The thread
# row carries NULL message columns and each message row NULL thread columns (the jsonb codec never
# sees a NULL); UNION ALL runs its branches in order. A list reads its page of threads once
# (a CTE) and then their messages, ordered by the page's position and sequence.
_THREAD_ROW = """
SELECT {t}id, {t}title, {t}attributes, {t}platforms, {t}created_at, {t}updated_at,
       NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL"""
_MESSAGE_ROW = """
SELECT NULL, NULL, NULL, NULL, NULL, NULL,
       m.id, m.thread_id, m.sequence, m.turn, m.role, m.content, m.metrics, m.timestamp"""
_GET = (
    _THREAD_ROW.format(t="")
    + " FROM threads WHERE id = {p1}\nUNION ALL"
    + _MESSAGE_ROW
    + " FROM (SELECT * FROM messages WHERE thread_id = {p1} ORDER BY sequence) AS m"
)
_LIST = (
    "WITH page AS (SELECT row_number() OVER (ORDER BY updated_at DESC, id DESC) AS n, *"
    " FROM threads ORDER BY updated_at DESC, id DESC LIMIT {p1})"
    + _THREAD_ROW.format(t="page.")
    + ", page.n FROM page\nUNION ALL"
    + _MESSAGE_ROW
    + ", page.n FROM page {messages}"
    + "\nORDER BY 15, 9 NULLS FIRST"
)

PG_GET = _GET.format(p1="$1")
# Each page thread's messages by index, as one writes it on PostgreSQL: a plain join lets the
# generic plan of the prepared statement hash the whole messages table (75-114 ms for 20 threads
# with a 100,000-message thread stored, bench/probe_reads.py found).
PG_LIST = _LIST.format(
    p1="$1", messages="CROSS JOIN LATERAL (SELECT * FROM messages WHERE thread_id = page.id) AS m"
)

# Bounded reads (issue 15) as one writes them by hand: the last messages of a thread from the
# (thread_id, sequence) index; a sidebar page after a (updated_at, id) position, each thread with
# its message count and last message. Only threads(updated_at DESC) is indexed, so the position is
# an index range on updated_at and id orders the rows of equal times after it.
_LAST = """
SELECT id, thread_id, sequence, turn, role, content, metrics, timestamp
  FROM messages WHERE thread_id = {p1} ORDER BY sequence DESC LIMIT {p2}"""
_PAGE = """
SELECT t.id, t.title, t.attributes, t.platforms, t.created_at, t.updated_at,
       (SELECT count(*) FROM messages AS c WHERE c.thread_id = t.id),
       m.id, m.thread_id, m.sequence, m.turn, m.role, m.content, m.metrics, m.timestamp
  FROM (SELECT id, title, attributes, platforms, created_at, updated_at FROM threads
         WHERE updated_at <= {p1} AND (updated_at < {p1} OR id < {p2})
         ORDER BY updated_at DESC, id DESC LIMIT {p3}) AS t
  LEFT JOIN messages AS m
    ON m.thread_id = t.id
   AND m.sequence = (SELECT max(sequence) FROM messages WHERE thread_id = t.id)
 ORDER BY t.updated_at DESC, t.id DESC"""
PG_LAST = _LAST.format(p1="$1", p2="$2")
PG_PAGE = _PAGE.format(p1="$1", p2="$2", p3="$3")
SQ_LAST = _LAST.format(p1="?1", p2="?2")
SQ_PAGE = _PAGE.format(p1="?1", p2="?2", p3="?3")


def _message(r: Any) -> dict[str, Any]:
    return {
        "id": r[0],
        "thread_id": r[1],
        "sequence": r[2],
        "turn": r[3],
        "role": r[4],
        "content": r[5],
        "metrics": r[6],
        "timestamp": r[7],
    }


def _summaries(rows: Any) -> list[dict[str, Any]]:
    return [
        {
            "id": r[0],
            "title": r[1],
            "attributes": r[2],
            "platforms": r[3],
            "created_at": r[4],
            "updated_at": r[5],
            "message_count": r[6],
            "last_message": None if r[7] is None else _message(r[7:]),
        }
        for r in rows
    ]


def _threads_from_rows(rows: Any) -> list[dict[str, Any]]:
    """A thread row followed by its message rows, in order, as thread dicts each holding a list
    of message dicts."""
    threads: list[dict[str, Any]] = []
    messages: list[dict[str, Any]] = []
    for r in rows:
        if r[0] is not None:
            messages = []
            threads.append(
                {
                    "id": r[0],
                    "title": r[1],
                    "attributes": r[2],
                    "platforms": r[3],
                    "created_at": r[4],
                    "updated_at": r[5],
                    "messages": messages,
                }
            )
        else:
            messages.append(
                {
                    "id": r[6],
                    "thread_id": r[7],
                    "sequence": r[8],
                    "turn": r[9],
                    "role": r[10],
                    "content": r[11],
                    "metrics": r[12],
                    "timestamp": r[13],
                }
            )
    return threads


async def _pg_init(conn: Any) -> None:
    await conn.set_type_codec(
        "jsonb",
        schema="pg_catalog",
        format="binary",
        encoder=lambda value: b"\x01" + _encode(value),
        decoder=lambda value: _decode(value[1:]),
    )


async def _no_reset(conn: Any) -> None:
    pass


class MinimalPgFloor:
    """Hand-written asyncpg on two tables of its own."""

    name = "minimal"

    def __init__(self, dsn: str) -> None:
        self.dsn = dsn
        self.pool: Any = None

    async def open(self) -> None:
        import asyncpg

        self.pool = await asyncpg.create_pool(
            self.dsn, min_size=5, max_size=15, init=_pg_init, reset=_no_reset
        )
        await self.pool.execute(PG_SCHEMA)

    async def close(self) -> None:
        await self.pool.close()

    async def save_new(self, thread: dict[str, Any], messages: list[dict[str, Any]]) -> None:
        await self.pool.execute(
            PG_SAVE_NEW,
            *[thread[c] for c in THREAD_COLUMNS],
            *[[m[c] for m in messages] for c in MESSAGE_COLUMNS],
        )

    async def append(self, thread_id: str, message: dict[str, Any], updated_at: datetime) -> None:
        await self.pool.execute(
            PG_APPEND,
            thread_id,
            updated_at,
            message["id"],
            message["turn"],
            message["role"],
            message["content"],
            message["metrics"],
            message["timestamp"],
        )

    async def get(self, thread_id: str) -> dict[str, Any] | None:
        return next(iter(_threads_from_rows(await self.pool.fetch(PG_GET, thread_id))), None)

    async def list(self, limit: int) -> list[dict[str, Any]]:
        return _threads_from_rows(await self.pool.fetch(PG_LIST, limit))

    async def last_messages(self, thread_id: str, limit: int) -> list[dict[str, Any]]:
        return [_message(r) for r in reversed(await self.pool.fetch(PG_LAST, thread_id, limit))]

    async def page(self, after: tuple[datetime, str] | None, limit: int) -> list[dict[str, Any]]:
        """A sidebar page after the (updated_at, id) position ``after`` (None: the first)."""
        when, thread_id = after or (datetime.max.replace(tzinfo=UTC), "")
        return _summaries(await self.pool.fetch(PG_PAGE, when, thread_id, limit))

    async def position(self, offset: int) -> tuple[datetime, str]:
        """The (updated_at, id) of the thread at ``offset`` in the sidebar order (not timed)."""
        row = await self.pool.fetchrow(
            "SELECT updated_at, id FROM threads ORDER BY updated_at DESC, id DESC OFFSET $1 LIMIT 1", offset
        )
        return row[0], row[1]

    async def seed(self, threads: Rows, *, settle: bool = True) -> None:
        """Bulk load with COPY (not timed)."""
        async with self.pool.acquire() as conn, conn.transaction():
            await conn.copy_records_to_table(
                "threads",
                columns=THREAD_COLUMNS,
                records=[[t[c] for c in THREAD_COLUMNS] for t, _ in threads],
            )
            await conn.copy_records_to_table(
                "messages",
                columns=MESSAGE_COLUMNS,
                records=[[m[c] for c in MESSAGE_COLUMNS] for _, ms in threads for m in ms],
            )
        if settle:
            await self.settle()

    async def delete_threads(self, ids: Sequence[str]) -> None:
        await self.pool.execute("DELETE FROM threads WHERE id = any($1::text[])", list(ids))
        await self.settle()

    async def settle(self) -> None:
        """VACUUM (ANALYZE) after a bulk load, as for the same-schema floor."""
        await self.pool.execute("VACUUM (ANALYZE) threads, messages")


# -- SQLite ----------------------------------------------------------------------------------------

SQ_SCHEMA = """
PRAGMA journal_mode = WAL;
PRAGMA synchronous = FULL;
PRAGMA foreign_keys = ON;
PRAGMA busy_timeout = 5000;
CREATE TABLE IF NOT EXISTS threads (
    id         TEXT PRIMARY KEY,
    title      TEXT,
    attributes TEXT NOT NULL,
    platforms  TEXT NOT NULL,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS threads_updated_at ON threads (updated_at DESC);
CREATE TABLE IF NOT EXISTS messages (
    id        TEXT PRIMARY KEY,
    thread_id TEXT NOT NULL REFERENCES threads (id) ON DELETE CASCADE,
    sequence  INTEGER NOT NULL,
    turn      INTEGER,
    role      TEXT NOT NULL,
    content   TEXT NOT NULL,
    metrics   TEXT NOT NULL,
    timestamp TEXT NOT NULL
);
CREATE UNIQUE INDEX IF NOT EXISTS messages_thread_sequence ON messages (thread_id, sequence);
"""

SQ_INSERT_THREAD = (
    "INSERT INTO threads (id, title, attributes, platforms, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?)"
)
SQ_INSERT_MESSAGE = (
    "INSERT INTO messages (id, thread_id, sequence, turn, role, content, metrics, "
    "timestamp) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
)
SQ_TOUCH = "UPDATE threads SET updated_at = ? WHERE id = ?"
SQ_APPEND = """
INSERT INTO messages (id, thread_id, sequence, turn, role, content, metrics, timestamp)
SELECT ?1, ?2, coalesce((SELECT max(sequence) FROM messages WHERE thread_id = ?2), 0) + 1,
       ?3, ?4, ?5, ?6, ?7"""

SQ_GET = _GET.format(p1="?1")
SQ_LIST = _LIST.format(p1="?1", messages="JOIN messages AS m ON m.thread_id = page.id")


def _sq_thread(t: dict[str, Any]) -> tuple[Any, ...]:
    return (
        t["id"],
        t["title"],
        _encode(t["attributes"]).decode(),
        _encode(t["platforms"]).decode(),
        data.sqlite_time(t["created_at"]),
        data.sqlite_time(t["updated_at"]),
    )


def _sq_message(m: dict[str, Any]) -> tuple[Any, ...]:
    return (
        m["id"],
        m["thread_id"],
        m["sequence"],
        m["turn"],
        m["role"],
        m["content"],
        _encode(m["metrics"]).decode(),
        data.sqlite_time(m["timestamp"]),
    )


def _sq_threads_from_rows(rows: Any) -> list[dict[str, Any]]:
    threads = _threads_from_rows(rows)
    for thread in threads:
        thread["attributes"] = _decode(thread["attributes"])
        thread["platforms"] = _decode(thread["platforms"])
        for message in thread["messages"]:
            message["metrics"] = _decode(message["metrics"])
    return threads


class MinimalSqliteFloor:
    """Hand-written aiosqlite on two tables of its own, one connection."""

    name = "minimal"

    def __init__(self, path: str) -> None:
        self.path = path
        self.conn: Any = None
        self.lock = asyncio.Lock()

    async def open(self) -> None:
        import aiosqlite

        self.conn = await aiosqlite.connect(self.path, isolation_level=None)
        await self.conn.executescript(SQ_SCHEMA)

    async def close(self) -> None:
        await self.conn.close()

    async def save_new(self, thread: dict[str, Any], messages: list[dict[str, Any]]) -> None:
        thread_values, message_values = _sq_thread(thread), [_sq_message(m) for m in messages]
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
        values = (
            message["id"],
            thread_id,
            message["turn"],
            message["role"],
            message["content"],
            _encode(message["metrics"]).decode(),
            data.sqlite_time(message["timestamp"]),
        )
        async with self.lock:
            await self.conn.execute("BEGIN IMMEDIATE")
            try:
                await self.conn.execute(SQ_TOUCH, (data.sqlite_time(updated_at), thread_id))
                await self.conn.execute(SQ_APPEND, values)
                await self.conn.execute("COMMIT")
            except BaseException:
                await self.conn.execute("ROLLBACK")
                raise

    async def _threads(self, sql: str, arg: Any) -> list[dict[str, Any]]:
        async with self.lock:
            rows = await self.conn.execute_fetchall(sql, (arg,))
        return _sq_threads_from_rows(rows)

    async def get(self, thread_id: str) -> dict[str, Any] | None:
        return next(iter(await self._threads(SQ_GET, thread_id)), None)

    async def list(self, limit: int) -> list[dict[str, Any]]:
        return await self._threads(SQ_LIST, limit)

    async def last_messages(self, thread_id: str, limit: int) -> list[dict[str, Any]]:
        async with self.lock:
            rows = await self.conn.execute_fetchall(SQ_LAST, (thread_id, limit))
        messages = [_message(r) for r in reversed(rows)]
        for message in messages:
            message["metrics"] = _decode(message["metrics"])
        return messages

    async def page(self, after: tuple[datetime, str] | None, limit: int) -> list[dict[str, Any]]:
        """A sidebar page after the (updated_at, id) position ``after`` (None: the first)."""
        when, thread_id = ("~", "") if after is None else (data.sqlite_time(after[0]), after[1])
        async with self.lock:
            rows = await self.conn.execute_fetchall(SQ_PAGE, (when, thread_id, limit))
        threads = _summaries(rows)
        for thread in threads:
            thread["attributes"] = _decode(thread["attributes"])
            thread["platforms"] = _decode(thread["platforms"])
            if thread["last_message"] is not None:
                thread["last_message"]["metrics"] = _decode(thread["last_message"]["metrics"])
        return threads

    async def position(self, offset: int) -> tuple[datetime, str]:
        async with self.lock:
            [(when, thread_id)] = await self.conn.execute_fetchall(
                "SELECT updated_at, id FROM threads ORDER BY updated_at DESC, id DESC LIMIT 1 OFFSET ?",
                (offset,),
            )
        return datetime.fromisoformat(when), thread_id

    async def seed(self, threads: Rows, *, settle: bool = True) -> None:
        async with self.lock:
            await self.conn.execute("BEGIN IMMEDIATE")
            await self.conn.executemany(SQ_INSERT_THREAD, [_sq_thread(t) for t, _ in threads])
            await self.conn.executemany(SQ_INSERT_MESSAGE, [_sq_message(m) for _, ms in threads for m in ms])
            await self.conn.execute("COMMIT")
        if settle:
            await self.settle()

    async def delete_threads(self, ids: Sequence[str]) -> None:
        async with self.lock:
            await self.conn.execute(
                "DELETE FROM threads WHERE id IN (SELECT value FROM json_each(?))",
                (_encode(list(ids)).decode(),),
            )
        await self.settle()

    async def settle(self) -> None:
        async with self.lock:
            await self.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
