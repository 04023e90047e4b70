"""The raw floor: the fewest statements asyncpg / aiosqlite code can run for each operation.

No models, no validation, no query registry: fixed SQL strings, plain dicts in and out. Reads
return plain dicts (JSON columns decoded with msgspec, the fastest decoder there is), so the floor
does everything a caller needs and nothing more. Writes keep the schema's invariants (the thread's
last_sequence hands out message sequences, thread_search holds the searched thread fields,
message_text_pending queues the messages written for threadstore's content indexer) so
threadstore can read and search what the floor wrote.

PostgreSQL: one statement per operation (writable CTEs), one asyncpg pool of the same size as
threadstore's, no reset query on release. SQLite: one connection in autocommit mode; a write of
more than one statement is BEGIN IMMEDIATE ... COMMIT, as any correct concurrent writer must.
Each read takes whichever way measured fastest: on PostgreSQL the database builds one JSON
document, decoded once (a thread of 1,000 messages: 17.7 ms, against 16.5 ms for its rows turned
into dicts, within noise, and one statement instead of two); on SQLite the rows, turned into dicts
in Python (7.9 ms, against 12.9 ms for the cheapest JSON document query).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec

from bench import data
from threadstore import fulltext, matching

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
), searched AS (
    INSERT INTO thread_search (thread_id, title, attributes, platforms, source, platform_values)
    VALUES ($1, $2, $3, $4, $5, threadstore_platform_values($4::jsonb))
), inserted AS (
{_PG_INSERT_MESSAGES}
SELECT id, thread_id, sequence, turn, role, content::jsonb, reasoning_content, name, tool_call_id,
       tool_calls::jsonb, attributes::jsonb, timestamp, source::jsonb, platforms::jsonb,
       attachments::jsonb, metrics::jsonb, reactions::jsonb
  FROM unnest($9::text[], $10::text[], $11::int[], $12::int[], $13::text[], $14::text[],
              $15::text[], $16::text[], $17::text[], $18::text[], $19::text[],
              $20::timestamptz[], $21::text[], $22::text[], $23::text[], $24::text[], $25::text[])
       AS m(id, thread_id, sequence, turn, role, content, reasoning_content, name, tool_call_id,
            tool_calls, attributes, timestamp, source, platforms, attachments, metrics, reactions)
RETURNING thread_id, id
)
INSERT INTO message_text_pending (thread_id, message_id) SELECT thread_id, id FROM inserted"""

PG_APPEND = f"""
WITH thread AS (
    UPDATE threads SET updated_at = $2, last_sequence = last_sequence + 1
     WHERE id = $1
    RETURNING last_sequence
), inserted AS (
{_PG_INSERT_MESSAGES}
SELECT $3, $1, thread.last_sequence, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17
  FROM thread
RETURNING thread_id, id
)
INSERT INTO message_text_pending (thread_id, message_id) SELECT thread_id, id FROM inserted"""


def _pg_threads(where: str) -> str:
    """Thread documents (with messages) of the threads matching ``where``, newest first, 100 at most."""
    return f"""
SELECT coalesce(json_agg({_PG_THREAD_DOC} ORDER BY t.updated_at DESC, t.id DESC), '[]'::json)
  FROM (SELECT * FROM threads WHERE {where} ORDER BY updated_at DESC, id DESC LIMIT 100) AS t"""


# The same questions as threadstore's searches, asked the plainest way PostgreSQL answers them
# from the same indexes (trigram for ILIKE, GIN jsonb_path_ops for @>).
PG_SEARCH_TITLE = _pg_threads(
    "id IN (SELECT thread_id FROM thread_search WHERE title ILIKE '%' || $1 || '%')"
)
PG_SEARCH_CONTENT = _pg_threads(
    "id IN (SELECT thread_id FROM message_text WHERE text ILIKE '%' || $1 || '%')"
)
PG_FIND_ATTRIBUTES = _pg_threads("id IN (SELECT thread_id FROM thread_search WHERE attributes @> $1::jsonb)")
PG_GET_BY_ALIAS = (
    f"SELECT {_PG_THREAD_DOC} FROM threads AS t "
    "WHERE t.id = (SELECT thread_id FROM thread_aliases WHERE alias = $1)"
)
PG_USAGE = """
SELECT json_build_object(
    'threads', (SELECT count(*) FROM threads),
    'messages', (SELECT count(*) FROM messages),
    'last_hour', (SELECT count(*) FROM threads WHERE updated_at >= now() - interval '1 hour'),
    'last_day', (SELECT count(*) FROM threads WHERE updated_at >= now() - interval '1 day'),
    'last_week', (SELECT count(*) FROM threads WHERE updated_at >= now() - interval '7 days'),
    'models', (SELECT json_object_agg(coalesce(model, ''), json_build_array(prompt, completion, total))
                 FROM (SELECT metrics ->> 'model' AS model,
                              sum((metrics #>> '{usage,prompt_tokens}')::bigint) AS prompt,
                              sum((metrics #>> '{usage,completion_tokens}')::bigint) AS completion,
                              sum((metrics #>> '{usage,total_tokens}')::bigint) AS total
                         FROM messages GROUP BY 1) AS per_model))"""


def _jsonb_encode(value: Any) -> bytes:
    return b"\x01" + _encode(value)


def _jsonb_decode(value: bytes) -> Any:
    return _decode(value[1:])


async def _pg_init(conn: Any) -> None:
    await conn.set_type_codec(
        "jsonb", schema="pg_catalog", format="binary", encoder=_jsonb_encode, decoder=_jsonb_decode
    )
    await conn.set_type_codec("json", schema="pg_catalog", format="binary", encoder=_encode, decoder=_decode)


async def _no_reset(conn: Any) -> None:
    pass


# Full-text search on threadstore's index by hand: the words tsvector, ts_rank_cd, 20 best.
PG_SEARCH_WORDS = """
SELECT m.thread_id, m.id, m.sequence, m.role, ts_rank_cd(x.words, q, 1) AS score, x.text
  FROM to_tsquery('simple', $1) AS q
  JOIN message_text AS x ON x.words @@ q
  JOIN messages AS m ON m.thread_id = x.thread_id AND m.id = x.message_id
 ORDER BY score DESC, m.timestamp DESC, m.id DESC
 LIMIT 20"""


def _phrase(text: str) -> str:
    """An FTS5 phrase query for the trigram indexes: the folded text, quoted."""
    return '"' + matching.fold(text).replace('"', '""') + '"'


def _message_words(
    threads: Sequence[tuple[dict[str, Any], list[dict[str, Any]]]],
) -> list[tuple[str, str, str, list[tuple[str, int]]]]:
    """(message id, thread id, content text, words as threadstore's indexer computes them) of
    every message with text."""
    out = []
    for _, messages in threads:
        for m in messages:
            text = matching.content_text(m["content"])
            if text is not None:
                words = fulltext.words(text)
                out.append((m["id"], m["thread_id"], text, words))
    return out


class PgFloor:
    """Raw asyncpg."""

    name = "floor"

    def __init__(self, dsn: str, pool_size: int = 10) -> None:
        self.dsn, self.pool_size = dsn, pool_size
        self.pool: Any = None

    async def open(self) -> None:
        import asyncpg

        self.pool = await asyncpg.create_pool(
            self.dsn, min_size=1, max_size=self.pool_size, init=_pg_init, reset=_no_reset
        )

    async def close(self) -> None:
        await self.pool.close()

    async def save_new(self, thread: dict[str, Any], messages: list[dict[str, Any]]) -> None:
        columns = [
            [data.json_text(m[c]) for m in messages] if c in data.JSON_COLUMNS else [m[c] for m in messages]
            for c in data.MESSAGE_COLUMNS
        ]
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

    async def search_by_title(self, text: str) -> list[dict[str, Any]]:
        docs: list[dict[str, Any]] = await self.pool.fetchval(PG_SEARCH_TITLE, _like_escape(text))
        return docs

    async def search_by_content(self, text: str) -> list[dict[str, Any]]:
        docs: list[dict[str, Any]] = await self.pool.fetchval(PG_SEARCH_CONTENT, _like_escape(text))
        return docs

    async def find_by_attributes(self, wanted: dict[str, Any]) -> list[dict[str, Any]]:
        docs: list[dict[str, Any]] = await self.pool.fetchval(PG_FIND_ATTRIBUTES, wanted)
        return docs

    async def get_by_alias(self, alias: str) -> dict[str, Any] | None:
        doc: dict[str, Any] | None = await self.pool.fetchval(PG_GET_BY_ALIAS, alias)
        return doc

    async def get_usage_stats(self) -> dict[str, Any]:
        stats: dict[str, Any] = await self.pool.fetchval(PG_USAGE)
        return stats

    async def search_words(self, words: Sequence[str]) -> list[Any]:
        """The 20 best messages holding any of ``words``."""
        return list(await self.pool.fetch(PG_SEARCH_WORDS, " | ".join(f"'{w}'" for w in words)))

    async def seed(
        self,
        threads: Sequence[tuple[dict[str, Any], list[dict[str, Any]]]],
        aliases: Sequence[tuple[str, str]] = (),
        *,
        settle: bool = True,
    ) -> None:
        """Bulk load with COPY (not timed): threads, their messages, aliases."""
        async with self.pool.acquire() as conn, conn.transaction():
            await conn.copy_records_to_table(
                "threads",
                columns=data.THREAD_COLUMNS,
                records=[[t[c] for c in data.THREAD_COLUMNS] for t, _ in threads],
            )
            await conn.copy_records_to_table(
                "messages",
                columns=data.MESSAGE_COLUMNS,
                records=[[m[c] for c in data.MESSAGE_COLUMNS] for _, ms in threads for m in ms],
            )
            # threadstore's search copies, as its writes and its content indexer leave them
            ids = [t["id"] for t, _ in threads]
            await conn.execute(
                "INSERT INTO thread_search "
                "(thread_id, title, attributes, platforms, source, platform_values) "
                "SELECT id, title, attributes, platforms, source, threadstore_platform_values(platforms) "
                "FROM threads WHERE id = any($1::text[])",
                ids,
            )
            indexed = _message_words(threads)
            await conn.execute(
                "INSERT INTO message_text (message_id, thread_id, text, words, stamp) "
                "SELECT i, t, x, w::tsvector, m.timestamp "
                "FROM unnest($1::text[], $2::text[], $3::text[], $4::text[]) AS u(i, t, x, w) "
                "JOIN messages AS m ON m.thread_id = u.t AND m.id = u.i",
                [r[0] for r in indexed],
                [r[1] for r in indexed],
                [r[2] for r in indexed],
                [fulltext.tsvector(r[3]) for r in indexed],
            )
            if aliases:
                now = datetime.now(UTC)
                await conn.copy_records_to_table(
                    "thread_aliases",
                    columns=("alias", "thread_id", "created_at"),
                    records=[(a, t, now) for a, t in aliases],
                )
        if settle:
            await self.settle()

    async def delete_threads(self, ids: Sequence[str]) -> None:
        """Remove a workload's threads (messages and aliases cascade), then settle."""
        await self.pool.execute("DELETE FROM threads WHERE id = any($1::text[])", list(ids))
        await self.settle()

    async def settle(self) -> None:
        """After a bulk load: VACUUM (ANALYZE), as autovacuum soon would. Until then, plans rest on
        the statistics of near-empty tables, and each GIN search scans the index's pending list
        of every row loaded (find_by_attributes: 12.6 ms before, 0.6 ms after, 40,000 threads loaded)."""
        await self.pool.execute(
            "VACUUM (ANALYZE) threads, thread_search, messages, message_text, "
            "message_text_pending, thread_aliases"
        )


# -- SQLite ----------------------------------------------------------------------------------------

# Reads fetch plain rows and build the dicts in Python: measured faster than having SQLite build
# JSON documents (thread of 1,000 messages: 7.9 ms against 12.9 ms for the cheapest document query).
_SQ_ROWS = """
SELECT t.id, t.title, t.attributes, t.platforms, t.source, t.created_at, t.updated_at,
       m.id, m.thread_id, m.sequence, m.turn, m.role, m.content, m.reasoning_content, m.name,
       m.tool_call_id, m.tool_calls, m.attributes, m.timestamp, m.source, m.platforms,
       m.attachments, m.metrics, m.reactions
  FROM ({threads}) AS t
  LEFT JOIN messages AS m ON m.thread_id = t.id
 ORDER BY t.updated_at DESC, t.id DESC, m.sequence"""


def _sq_rows(threads: str) -> str:
    return _SQ_ROWS.format(threads=threads)


_SQ_PAGE = "SELECT * FROM threads WHERE {where} ORDER BY updated_at DESC, id DESC LIMIT {limit}"
SQ_GET = _sq_rows("SELECT * FROM threads WHERE id = ?")
SQ_LIST = _sq_rows(_SQ_PAGE.format(where="true", limit="?"))
# From the same trigram indexes (of folded text) that threadstore reads, checked by LIKE.
SQ_SEARCH_TITLE = _sq_rows(
    _SQ_PAGE.format(
        where="id IN (SELECT tt.thread_id FROM title_trigrams JOIN thread_titles AS tt"
        " ON tt.id = title_trigrams.rowid WHERE title_trigrams MATCH ?2)"
        " AND title LIKE ?1 ESCAPE '\\'",
        limit=100,
    )
)
SQ_SEARCH_CONTENT = _sq_rows(
    _SQ_PAGE.format(
        where="id IN (SELECT m.thread_id FROM message_trigrams JOIN message_words AS w"
        " ON w.id = message_trigrams.rowid JOIN messages AS m"
        " ON m.thread_id = w.thread_id AND m.id = w.message_id"
        " WHERE message_trigrams MATCH ?2 AND m.content LIKE ?1 ESCAPE '\\')",
        limit=100,
    )
)
# One key, as the bench asks (a key path and a JSON scalar).
SQ_FIND_ATTRIBUTE = _sq_rows(_SQ_PAGE.format(where="json_extract(attributes, ?) = ?", limit=100))
SQ_GET_BY_ALIAS = _sq_rows(
    "SELECT * FROM threads WHERE id = (SELECT thread_id FROM thread_aliases WHERE alias = ?)"
)
SQ_USAGE = """
SELECT (SELECT count(*) FROM threads), (SELECT count(*) FROM messages),
       (SELECT count(*) FROM threads WHERE updated_at >= ?),
       (SELECT count(*) FROM threads WHERE updated_at >= ?),
       (SELECT count(*) FROM threads WHERE updated_at >= ?),
       (SELECT json_group_object(coalesce(model, ''), json_array(prompt, completion, total))
          FROM (SELECT json_extract(metrics, '$.model') AS model,
                       sum(json_extract(metrics, '$.usage.prompt_tokens')) AS prompt,
                       sum(json_extract(metrics, '$.usage.completion_tokens')) AS completion,
                       sum(json_extract(metrics, '$.usage.total_tokens')) AS total
                  FROM messages GROUP BY 1))"""

_THREAD_KEYS = ("id", "title", "attributes", "platforms", "source", "created_at", "updated_at")
_MESSAGE_KEYS = data.MESSAGE_COLUMNS
_JSON_AT = tuple(i for i, k in enumerate(_THREAD_KEYS + _MESSAGE_KEYS) if k in data.JSON_COLUMNS)


def _threads_from_rows(rows: Any) -> list[dict[str, Any]]:
    """Joined thread+message rows, in order, as thread dicts holding their message dicts."""
    threads: list[dict[str, Any]] = []
    current: dict[str, Any] | None = None
    split = len(_THREAD_KEYS)
    for row in rows:
        values = list(row)
        for i in _JSON_AT:
            if values[i] is not None:
                values[i] = _decode(values[i])
        if current is None or current["id"] != values[0]:
            current = dict(zip(_THREAD_KEYS, values[:split], strict=True))
            current["messages"] = []
            threads.append(current)
        if values[split] is not None:
            current["messages"].append(dict(zip(_MESSAGE_KEYS, values[split:], strict=True)))
    return threads


def _like_escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


_SQ_PLACEHOLDERS = ", ".join("?" * len(data.MESSAGE_COLUMNS))
SQ_INSERT_MESSAGE = f"INSERT INTO messages ({', '.join(data.MESSAGE_COLUMNS)}) VALUES ({_SQ_PLACEHOLDERS})"
SQ_INSERT_THREAD = (
    f"INSERT INTO threads ({', '.join(data.THREAD_COLUMNS)}) "
    f"VALUES ({', '.join('?' * len(data.THREAD_COLUMNS))})"
)
SQ_APPEND_THREAD = (
    "UPDATE threads SET updated_at = ?, last_sequence = last_sequence + 1 "
    "WHERE id = ? RETURNING last_sequence"
)


SQ_SEARCH_WORDS = """
SELECT m.thread_id, m.id, m.sequence, m.role, -bm25(message_fts) AS score, m.content
  FROM message_fts
  JOIN message_words AS w ON w.id = message_fts.rowid
  JOIN messages AS m ON m.thread_id = w.thread_id AND m.id = w.message_id
 WHERE message_fts MATCH ?
 ORDER BY score DESC
 LIMIT 20"""


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
            "PRAGMA busy_timeout = 5000; PRAGMA journal_mode = WAL; PRAGMA foreign_keys = ON;"
        )

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
                rows = await self.conn.execute_fetchall(
                    SQ_APPEND_THREAD, (data.sqlite_time(updated_at), thread_id)
                )
                values = data.sqlite_message_values({**message, "sequence": next(iter(rows))[0]})
                await self.conn.execute(SQ_INSERT_MESSAGE, values)
                await self.conn.execute("COMMIT")
            except BaseException:
                await self.conn.execute("ROLLBACK")
                raise

    async def _threads(self, sql: str, *args: Any) -> list[dict[str, Any]]:
        async with self.lock:
            rows = await self.conn.execute_fetchall(sql, args)
        return _threads_from_rows(rows)

    async def get(self, thread_id: str) -> dict[str, Any] | None:
        return next(iter(await self._threads(SQ_GET, thread_id)), None)

    async def list(self, limit: int) -> list[dict[str, Any]]:
        return await self._threads(SQ_LIST, limit)

    async def search_by_title(self, text: str) -> list[dict[str, Any]]:
        return await self._threads(SQ_SEARCH_TITLE, f"%{_like_escape(text)}%", _phrase(text))

    async def search_by_content(self, text: str) -> list[dict[str, Any]]:
        return await self._threads(SQ_SEARCH_CONTENT, f"%{_like_escape(text)}%", _phrase(text))

    async def find_by_attributes(self, wanted: dict[str, Any]) -> list[dict[str, Any]]:
        ((key, value),) = wanted.items()
        return await self._threads(SQ_FIND_ATTRIBUTE, f'$."{key}"', value)

    async def get_by_alias(self, alias: str) -> dict[str, Any] | None:
        return next(iter(await self._threads(SQ_GET_BY_ALIAS, alias)), None)

    async def search_words(self, words: Sequence[str]) -> list[Any]:
        """The 20 best messages holding any of ``words``."""
        query = " OR ".join(fulltext.fts5_text([(w, 1)]) or "" for w in words)
        async with self.lock:
            return list(await self.conn.execute_fetchall(SQ_SEARCH_WORDS, (query,)))

    async def get_usage_stats(self) -> dict[str, Any]:
        now = datetime.now(UTC)
        since = [data.sqlite_time(now - timedelta(hours=h)) for h in (1, 24, 168)]
        async with self.lock:
            rows = await self.conn.execute_fetchall(SQ_USAGE, since)
        threads, messages, hour, day, week, models = next(iter(rows))
        return {
            "threads": threads,
            "messages": messages,
            "last_hour": hour,
            "last_day": day,
            "last_week": week,
            "models": _decode(models),
        }

    async def seed(
        self,
        threads: Sequence[tuple[dict[str, Any], list[dict[str, Any]]]],
        aliases: Sequence[tuple[str, str]] = (),
        *,
        settle: bool = True,
    ) -> None:
        async with self.lock:
            await self.conn.execute("BEGIN IMMEDIATE")
            await self.conn.executemany(SQ_INSERT_THREAD, [data.sqlite_thread_values(t) for t, _ in threads])
            await self.conn.executemany(
                SQ_INSERT_MESSAGE, [data.sqlite_message_values(m) for _, ms in threads for m in ms]
            )
            if aliases:
                now = data.sqlite_time(datetime.now(UTC))
                await self.conn.executemany(
                    "INSERT INTO thread_aliases (alias, thread_id, created_at) VALUES (?, ?, ?)",
                    [(a, t, now) for a, t in aliases],
                )
            # threadstore's full-text index, as its indexer leaves it (the triggers queued them)
            await self.conn.executemany(
                "INSERT INTO message_words (thread_id, message_id, words, text, stamp) "
                "SELECT ?1, ?2, ?3, ?4, substr(timestamp, 1, 19) || CASE WHEN length(timestamp) = 20 "
                "THEN '.000000' ELSE substr(timestamp, 20, 7) END "
                "FROM messages WHERE thread_id = ?1 AND id = ?2",
                [
                    (t, i, fulltext.fts5_text(w), matching.fold(text))
                    for i, t, text, w in _message_words(threads)
                ],
            )
            await self.conn.execute("DELETE FROM message_words_pending")
            await self.conn.executemany(
                "INSERT INTO thread_titles (thread_id, text) VALUES (?, ?)",
                [(t["id"], matching.fold(t["title"])) for t, _ in threads],
            )
            await self.conn.execute("DELETE FROM thread_titles_pending")
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
        """After a bulk load: fold the WAL back into the database file, so the next writes do not
        pay for the checkpoint. (No ANALYZE: threadstore does not run it on SQLite either.)"""
        async with self.lock:
            await self.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
