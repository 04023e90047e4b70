"""The SQLite backend: one aiosqlite connection per store, statements from sql/sqlite/.

The connection runs in autocommit mode (``isolation_level=None``) and every write is an explicit
``BEGIN IMMEDIATE`` ... ``COMMIT``. One asyncio.Lock guards the connection for a whole
operation, so the statements of concurrent operations never interleave inside a transaction.
Times are stored as ISO-8601 UTC text with microseconds, so text order is time order.
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import functools
import logging
import sqlite3
import time
from collections.abc import AsyncIterator, Iterable, Sequence
from datetime import UTC, datetime
from operator import itemgetter
from pathlib import Path
from typing import Any

import aiosqlite
import msgspec

from threadstore import fulltext, matching, queries
from threadstore.backends import (
    AppendPlan,
    ByContent,
    ByTitle,
    MessageSearch,
    SavePlan,
    SchemaStatus,
    SearchRow,
    ThreadCopy,
    ThreadSearch,
    enable_echo,
    log_statement,
    narrator_refusal,
    pending_migrations,
    schema_status,
    unindexed_hits,
)
from threadstore.config import DatabaseConfig
from threadstore.errors import ConflictError, StoreUnavailableError, ThreadStoreError
from threadstore.queries import Kind

_log = logging.getLogger(__name__)

# The full-text indexer (migration 0004), as PostgreSQL's: it starts this long after the write
# that wakes it, takes this many queued messages per transaction (holding the connection about
# 1-4 ms), and close() waits this long for it.
_INDEX_DELAY = 0.1
_INDEX_BATCH = 100
_INDEX_RETRY = 5.0  # seconds: the longest wait between tries while another connection writes
_INDEX_AT_CLOSE = 5.0
# Longer message texts stay out of the trigram index (it holds a term per character): content
# searches test them one by one.
_MAX_TRIGRAM_TEXT = 100_000

# Extended result codes (sqlite3.Error.sqlite_errorcode) for constraint failures.
_PRIMARY_KEY, _UNIQUE, _FOREIGN_KEY = 1555, 2067, 787
_BUSY, _LOCKED = 5, 6
_BUSY_TIMEOUT = 5.0  # seconds; the busy_timeout pragma in sql/sqlite/sqlite.sql says the same


def _text_time(value: datetime) -> str:
    return value.astimezone(UTC).isoformat(timespec="microseconds")


class _NotLight(Exception):
    """The light save does not apply (SQLiteBackend._save_light): roll back, take the general one."""


class _Busy(StoreUnavailableError):
    """SQLITE_BUSY / SQLITE_LOCKED: another connection holds the lock."""


def _translate(exc: sqlite3.Error, name: str) -> ThreadStoreError:
    code = getattr(exc, "sqlite_errorcode", None)
    if code in (_PRIMARY_KEY, _UNIQUE):
        return ConflictError(f"{name}: an id is already stored elsewhere ({exc})")
    if code is not None and code & 0xFF in (_BUSY, _LOCKED):
        return _Busy(f"{name}: the SQLite database is locked by another writer ({exc})")
    if isinstance(exc, sqlite3.OperationalError):
        return StoreUnavailableError(f"{name}: SQLite failed: {exc}")
    return ThreadStoreError(f"{name}: SQLite failed: {exc}")


def _daemon(conn: aiosqlite.Connection) -> aiosqlite.Connection:
    """``conn`` with its worker thread made a daemon, before it starts.

    aiosqlite runs each connection on a non-daemon thread, so a program that never closes its
    store would hang at exit (omnilib/aiosqlite#299). Committed data is on disk already: a write
    is acknowledged only after its COMMIT returned. The store still closes the connection when
    the event loop ends (store._close_when_loop_ends); this covers loops that end without
    saying so.
    """
    thread: Any = getattr(conn, "_thread", conn)  # aiosqlite < 0.22: the Connection is the Thread
    thread.daemon = True
    return conn


_decode = msgspec.json.decode
# Parameters repeat on every row of a scan; stored documents differ per row.
_decode_param = functools.lru_cache(maxsize=64)(msgspec.json.decode)


_encode = msgspec.json.encode

# The messages table's columns, in the order of the rows _message_row builds.
MESSAGE_COLUMNS = (
    "id",
    "thread_id",
    "sequence",
    "turn",
    "role",
    "content",
    "reasoning_content",
    "name",
    "tool_call_id",
    "tool_calls",
    "attributes",
    "timestamp",
    "source",
    "platforms",
    "attachments",
    "metrics",
    "reactions",
)
_MESSAGE_WRITES = ("sqlite.insert_message", "sqlite.update_message")  # run with executemany


class _MessageDoc(msgspec.Struct):
    """A message document as the store encodes it, JSON values kept as their bytes (msgspec.Raw
    points into the document: a 20 MB content is not copied)."""

    id: str
    thread_id: str | None
    sequence: int | None
    turn: int | None
    role: str
    content: msgspec.Raw
    reasoning_content: str | None
    name: str | None
    tool_call_id: str | None
    tool_calls: msgspec.Raw
    attributes: msgspec.Raw
    timestamp: str
    source: msgspec.Raw
    platforms: msgspec.Raw
    attachments: msgspec.Raw
    metrics: msgspec.Raw
    reactions: msgspec.Raw


_decode_docs = msgspec.json.Decoder(list[_MessageDoc]).decode


def _message_row(doc: _MessageDoc, thread_id: str, sequence: int | None) -> tuple[Any, ...]:
    """The values of a message row, in MESSAGE_COLUMNS order."""
    return (
        doc.id,
        thread_id,
        sequence,
        doc.turn,
        doc.role,
        doc.content,
        doc.reasoning_content,
        doc.name,
        doc.tool_call_id,
        doc.tool_calls,
        doc.attributes,
        doc.timestamp,
        doc.source,
        doc.platforms,
        doc.attachments,
        doc.metrics,
        doc.reactions,
    )


def _quote(text: str | None) -> str:
    return "null" if text is None else _encode(text).decode()


def _header(
    id: str, title: str, attributes: str, platforms: str, source: str | None, created_at: str, updated_at: str
) -> str:
    """The start of a thread document, up to its messages array, from the thread's columns."""
    return (
        f'{{"id":{_quote(id)},"title":{_quote(title)},"attributes":{attributes},'
        f'"platforms":{platforms},"source":{source or "null"},"created_at":"{created_at}",'
        f'"updated_at":"{updated_at}","messages":['
    )


def _documents(rows: Iterable[tuple[Any, ...]]) -> str:
    """Thread documents, joined by commas, from rows as threads.get and threads.list give
    them: a thread's row (its sequence NULL), then its messages' rows. The columns hold JSON
    threadstore wrote, joined as text; strings are quoted; times are ISO text."""
    out: list[str] = []
    thread_id = comma = ""
    for row in rows:
        if row[1] is None:
            out.append(("]}," if out else "") + _header(*row[2:9]))
            thread_id, comma = _quote(row[2]), ""
            continue
        (
            _,
            sequence,
            id,
            turn,
            role,
            content,
            reasoning_content,
            name,
            tool_call_id,
            tool_calls,
            attributes,
            timestamp,
            source,
            platforms,
            attachments,
            metrics,
            reactions,
        ) = row
        out.append(
            f'{comma}{{"id":{_quote(id)},"thread_id":{thread_id},"sequence":{sequence},'
            f'"turn":{"null" if turn is None else turn},"role":{_quote(role)},'
            f'"content":{content or "null"},"reasoning_content":{_quote(reasoning_content)},'
            f'"name":{_quote(name)},"tool_call_id":{_quote(tool_call_id)},'
            f'"tool_calls":{tool_calls or "null"},"attributes":{attributes},'
            f'"timestamp":"{timestamp}","source":{source or "null"},"platforms":{platforms},'
            f'"attachments":{attachments},"metrics":{metrics},"reactions":{reactions}}}'
        )
        comma = ","
    if out:
        out.append("]}")
    return "".join(out)


def _summaries(rows: Iterable[tuple[Any, ...]]) -> str:
    """A JSON array of ThreadSummary documents from bounded.summaries rows: a thread's columns,
    its message count and its last message's document (or NULL)."""
    return (
        "["
        + ",".join(
            [
                f'{{"id":{_quote(id)},"title":{_quote(title)},"attributes":{attributes},'
                f'"platforms":{platforms},"source":{source or "null"},"created_at":"{created_at}",'
                f'"updated_at":"{updated_at}","message_count":{count},"last_message":{last or "null"}}}'
                for id, title, attributes, platforms, source, created_at, updated_at, count, last in rows
            ]
        )
        + "]"
    )


def _optional(document: str | None) -> Any:
    return None if document is None else _decode(document)


def _indexed_text(content: str | None) -> tuple[str | None, str | None] | None:
    """What message_words holds for a message's content (JSON text; migration 0004): its words
    for message_fts (None without any) and its folded text for message_trigrams (None when too
    long); None without content text."""
    text = matching.content_text(_optional(content))
    if text is None:
        return None
    folded = matching.fold(text) if len(text) <= _MAX_TRIGRAM_TEXT else None
    return fulltext.fts5_text_of(text), folded


def _trigram_query(literals: Sequence[str]) -> str:
    """The FTS5 query finding texts that hold every one of ``literals``: a phrase each."""
    return " ".join('"' + literal.replace('"', '""') + '"' for literal in literals)


# The functions search.sql calls, registered on each connection: threadstore.matching's code,
# so SQLite answers exactly as the memory backend does.
_FUNCTIONS: dict[str, Any] = {
    "regexp": lambda pattern, text: (
        None if pattern is None or text is None else matching.matcher(pattern)(text)
    ),
    "threadstore_content_text": lambda content: matching.content_text(_optional(content)),
    "threadstore_has_reference": lambda platforms, name, reference: matching.has_reference(
        _decode(platforms), name, _decode_param(reference)
    ),
    "threadstore_has_all": lambda document, wanted: matching.contains_all(
        _decode(document), _decode_param(wanted)
    ),
    "threadstore_platform_match": lambda platforms, source, name, wanted: matching.platform_match(
        _decode(platforms), _optional(source), name, _decode_param(wanted)
    ),
    "threadstore_value_equals": lambda document, keys, value: matching.value_equals(
        _decode(document), _decode_param(keys), _decode_param(value)
    ),
}


class SQLiteBackend:
    """Threads in a SQLite file (or a private in-memory database)."""

    name = "sqlite"
    loop_bound = True

    def __init__(
        self, path: str, *, echo: bool = False, url: str | None = None, read_only: bool = False
    ) -> None:
        self._path = path
        self._url = url or f"sqlite:///{path}"  # as given, for messages naming a command
        self._echo = echo
        self._read_only = read_only and path != ":memory:"  # a private one gets its schema
        self._queries = queries.load("sqlite")
        # Each executemany statement binds its parameters by name from MESSAGE_COLUMNS rows.
        self._binders = {
            name: itemgetter(*[MESSAGE_COLUMNS.index(p) for p in self._queries[name].params])
            for name in _MESSAGE_WRITES
        }
        self._conn: aiosqlite.Connection | None = None
        self._lock = asyncio.Lock()
        self._indexer: asyncio.Task[None] | None = None  # fills message_words; see _index_soon
        self._index_again = False
        self._index_now: asyncio.Event | None = None  # set by close(): no more waiting

    async def open(self) -> None:
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
        try:
            self._conn = await _daemon(aiosqlite.connect(self._path, isolation_level=None))
            # Before _configure, which switches the file to WAL: a narrator database is refused
            # unchanged.
            await self._run("sqlite.wait_when_busy")
            narrator = await self._run("schema.narrator_database")
            if not narrator:
                await self._configure()
            for name, function in _FUNCTIONS.items():
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
                await self._run("sqlite.connect_read_only" if self._read_only else "sqlite.connect")
                return
            except _Busy:
                if loop.time() >= deadline:
                    raise
                await asyncio.sleep(delay)
                delay = min(delay * 2, 0.2)

    async def close(self) -> None:
        indexer, self._indexer = self._indexer, None
        if indexer is not None and not indexer.done():
            if self._index_now is not None:
                self._index_now.set()
            await asyncio.wait([indexer], timeout=_INDEX_AT_CLOSE)
            indexer.cancel()  # what it leaves stays queued: the next search or indexer takes it
            await asyncio.wait([indexer])
        conn, self._conn = self._conn, None
        if conn is not None:
            await conn.close()

    def abandon(self) -> None:
        if self._indexer is not None:
            with contextlib.suppress(RuntimeError):  # its loop is closed: it never runs again
                self._indexer.cancel()
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(Exception):
                conn.stop()  # closes the sqlite3 connection on its own thread, then ends it

    async def ping(self) -> None:
        async with self._lock:
            await self._run("sqlite.ping")

    @property
    def engine(self) -> aiosqlite.Connection | None:
        return self._conn

    @contextlib.asynccontextmanager
    async def session(self) -> AsyncIterator[aiosqlite.Connection]:
        async with self._lock, self._transaction():
            yield self._connection()

    def _connection(self) -> aiosqlite.Connection:
        if self._conn is None:
            raise StoreUnavailableError("the SQLite connection is closed")
        return self._conn

    async def _run(self, name: str, /, **params: Any) -> Any:
        """Run one named query; the one place where SQL meets the driver."""
        query = self._queries[name]
        args = query.args(params)
        conn = self._connection()
        started = time.perf_counter() if self._echo else 0.0
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

    async def _run_many(self, name: str, rows: builtins.list[tuple[Any, ...]]) -> None:
        """Run one of _MESSAGE_WRITES once per row (a tuple in MESSAGE_COLUMNS order)."""
        bind = self._binders[name]
        started = time.perf_counter() if self._echo else 0.0
        try:
            await self._connection().executemany(self._queries[name].sql, [bind(row) for row in rows])
        except sqlite3.Error as exc:
            raise _translate(exc, name) from exc
        finally:
            if started:
                log_statement(name, started, time.perf_counter())

    @contextlib.asynccontextmanager
    async def _transaction(self, *, patient: bool = True) -> AsyncIterator[None]:
        """BEGIN IMMEDIATE ... COMMIT, rolled back on any failure or cancellation. Not
        ``patient``, BEGIN raises _Busy at once when another connection holds the write lock."""
        try:
            if patient:
                await self._run("sqlite.begin")
            else:
                await self._begin_or_fail()
            yield
            await self._run("sqlite.commit")
        except BaseException:
            # Shielded: a cancelled task must still leave no transaction open on the connection.
            await asyncio.shield(self._rollback())
            raise

    async def _begin_or_fail(self) -> None:
        await self._run("sqlite.fail_when_busy")
        try:
            await self._run("sqlite.begin")
        finally:
            # Shielded as _rollback is: the connection's next user must find busy_timeout back.
            await asyncio.shield(self._run("sqlite.wait_when_busy"))

    async def _rollback(self) -> None:
        # Issued unconditionally: a cancelled statement may still be queued on the connection's
        # thread, and this ROLLBACK runs after it. With no transaction open it fails harmlessly.
        with contextlib.suppress(ThreadStoreError):
            await self._run("sqlite.rollback")

    async def migrate(self) -> list[int]:
        registry = self._queries
        async with self._lock, self._transaction():
            await self._run("schema.create_ledger")
            applied = [row[0] for row in await self._run("schema.versions")]
            pending = pending_migrations(registry.migrations, applied)
            for migration in pending:
                started = time.perf_counter()
                for statement in migration.statements:
                    try:
                        await self._connection().execute(statement)
                    except sqlite3.Error as exc:
                        raise ThreadStoreError(f"migration {migration.origin} failed: {exc}") from exc
                if self._echo:
                    log_statement(
                        f"migrations.{migration.version:04d}_{migration.name}", started, time.perf_counter()
                    )
                await self._run(
                    "schema.record",
                    version=migration.version,
                    name=migration.name,
                    applied_at=_text_time(datetime.now(UTC)),
                )
        if pending:
            _log.info("applied migrations %s to %s", ", ".join(m.origin for m in pending), self._path)
        async with self._lock:
            queued = await self._run("sqlite.queued_any")
        if queued:  # a migration, an adoption or a process that ended left entries queued:
            self._index_soon()  # index them now, not at a search
        return [m.version for m in pending]

    async def schema_status(self) -> SchemaStatus:
        async with self._lock:
            applied = []
            if await self._run("schema.ledger_exists"):
                applied = [row[0] for row in await self._run("schema.versions")]
        return schema_status(self._queries.migrations, applied)

    async def get(self, thread_id: str) -> bytes | None:
        async with self._lock:
            rows = await self._run("threads.get", thread_id=thread_id)
        return _documents(rows).encode() if rows else None

    async def list(self, limit: int | None, offset: int) -> bytes:
        async with self._lock:
            rows = await self._run("threads.list", limit=limit, offset=offset)
        return f"[{_documents(rows)}]".encode()

    async def get_messages(self, thread_id: str, limit: int, before: int, after: int | None) -> bytes | None:
        async with self._lock:
            if after is None:
                rows = await self._run(
                    "bounded.messages_before", thread_id=thread_id, before=before, limit=limit
                )
            else:
                rows = await self._run(
                    "bounded.messages_after", thread_id=thread_id, after=after, before=before, limit=limit
                )
        return _documents(rows).encode() if rows else None

    async def list_threads(
        self, limit: int, after: tuple[datetime, str] | None, wanted: bytes | None
    ) -> bytes:
        # No position yet: "~" sorts after every ISO time, so every thread comes after it.
        params = {
            "after_time": "~" if after is None else _text_time(after[0]),
            "after_id": "" if after is None else after[1],
            "limit": limit,
        }
        async with self._lock:
            if wanted is None:
                rows = await self._run("bounded.summaries", **params)
            else:
                rows = await self._run("bounded.summaries_by_attributes", wanted=wanted.decode(), **params)
        return _summaries(rows).encode()

    async def delete_threads(self, cutoff: datetime, wanted: bytes | None, batch: int, dry_run: bool) -> int:
        params = {"cutoff": _text_time(cutoff), "wanted": None if wanted is None else wanted.decode()}
        count: int
        async with self._lock:
            if dry_run:
                count = await self._run("bounded.count_old", **params)
            else:
                async with self._transaction():
                    count = await self._run("bounded.delete_old", batch=batch, **params)
        return count

    async def prune_messages(self, thread_id: str, keep_last: int) -> int | None:
        async with self._lock, self._transaction():
            if not await self._run("bounded.thread_row", thread_id=thread_id):
                return None
            count: int = await self._run("bounded.prune", thread_id=thread_id, keep_last=keep_last)
        return count

    def _thread_params(self, plan: SavePlan) -> dict[str, Any]:
        return {
            "thread_id": plan.thread_id,
            "title": plan.title,
            "attributes": plan.attributes.decode(),
            "platforms": plan.platforms.decode(),
            "source": None if plan.source is None else plan.source.decode(),
            "created_at": _text_time(plan.created_at),
            "updated_at": _text_time(plan.updated_at),
        }

    async def save(self, plan: SavePlan) -> dict[str, int] | None:
        # The two common saves, messages appended to a thread loaded from here and a thread this
        # store has not seen, take four calls to the connection's thread (BEGIN, the thread row,
        # the messages, COMMIT) as a hand-written writer does, instead of five: each costs
        # 60-90 us here. Anything unexpected (a message or the thread stored already, the thread
        # gone) rolls back and takes the general save.
        sequences = None
        if plan.new_count and plan.edited == b"[]" and not plan.removed:
            sequences = await self._save_light(plan)
        if sequences is None:
            sequences = await self._save(plan)
        if sequences is not None:
            self._index_soon()  # new or edited messages, or a title, may be queued
        return sequences

    async def _save_light(self, plan: SavePlan) -> dict[str, int] | None:
        thread_id, docs = plan.thread_id, _decode_docs(plan.new)
        params = {**self._thread_params(plan), "count": len(docs)}
        try:
            async with self._lock, self._transaction():
                if plan.synced:
                    del params["created_at"]
                    base = await self._run("sqlite.save_appended_thread", **params)
                    if base is None:
                        raise _NotLight
                else:
                    await self._run("sqlite.save_new_thread", **params)
                    base = 0
                await self._run_many(
                    "sqlite.insert_message",
                    [_message_row(doc, thread_id, base + i) for i, doc in enumerate(docs, 1)],
                )
        except (_NotLight, ConflictError):
            return None
        return {doc.id: base + i for i, doc in enumerate(docs, 1)}

    async def _save(self, plan: SavePlan) -> dict[str, int] | None:
        thread_id = plan.thread_id
        new = _decode_docs(plan.new) if plan.new_count else []
        updates = [_message_row(doc, thread_id, None) for doc in _decode_docs(plan.edited)]
        async with self._lock, self._transaction():
            if plan.synced and not await self._run("bounded.thread_row", thread_id=thread_id):
                return None  # deleted since the Thread was loaded or saved: not recreated
            sequences = {}
            if new:
                held, last = {}, 0
                state = await self._run(
                    "sqlite.save_state", thread_id=thread_id, ids=_json_list([doc.id for doc in new])
                )
                for message_id, mine, sequence in state:
                    if message_id is None:
                        last = sequence
                    elif not mine:
                        raise ConflictError(
                            f"a message of thread {thread_id!r} is already stored in another thread"
                        )
                    else:
                        held[message_id] = sequence
                inserts = []
                for doc in new:
                    if doc.id in held:  # rewritten in place, keeping its sequence
                        sequences[doc.id] = held[doc.id]
                        updates.append(_message_row(doc, thread_id, None))
                    else:
                        last += 1
                        sequences[doc.id] = last
                        inserts.append(_message_row(doc, thread_id, last))
                if inserts:
                    await self._run_many("sqlite.insert_message", inserts)
            if updates:
                await self._run_many("sqlite.update_message", updates)
            if plan.removed:
                await self._run("sqlite.delete_messages", thread_id=thread_id, ids=_json_list(plan.removed))
            await self._run("sqlite.save_thread", **self._thread_params(plan))
        return sequences

    async def append(self, plan: AppendPlan) -> tuple[bytes, dict[str, int]] | None:
        thread_id = plan.thread_id
        docs = _decode_docs(plan.messages)
        async with self._lock, self._transaction():
            row = await self._run(
                "sqlite.append_thread",
                thread_id=thread_id,
                count=plan.count,
                updated_at=_text_time(plan.updated_at),
            )
            if row is None:
                return None
            first = row[0]
            await self._run_many(
                "sqlite.insert_message",
                [_message_row(doc, thread_id, first + i) for i, doc in enumerate(docs)],
            )
        self._index_soon()
        return (_header(*row[1:]) + "]}").encode(), {doc.id: first + i for i, doc in enumerate(docs)}

    async def create_if_absent(self, plan: SavePlan) -> None:
        async with self._lock, self._transaction():
            await self._run("threads.create_if_absent", **self._thread_params(plan))
        self._index_soon()

    async def delete(self, thread_id: str) -> bool:
        async with self._lock, self._transaction():
            count: int = await self._run("threads.delete", thread_id=thread_id)
        return count > 0

    async def delete_many(self, thread_ids: Sequence[str]) -> int:
        async with self._lock, self._transaction():
            count: int = await self._run("threads.delete_many", ids=_json_list(thread_ids))
        return count

    async def attachment_references(self, refs: Sequence[str] | None) -> set[str]:
        async with self._lock:
            if refs is None:
                rows = await self._run("files.references")
            else:
                rows = await self._run("files.references_among", refs=_json_list(refs))
        return {row[0] for row in rows}

    # -- searches, lookups, aliases, statistics ---------------------------------------------

    async def find_threads(self, search: ThreadSearch, limit: int | None, offset: int) -> bytes:
        params = {name: _param(getattr(search, name)) for name in search.__struct_fields__}
        name = f"search.{search.query}"
        literals = search.pattern.literals if isinstance(search, ByTitle | ByContent) else ()
        if literals:
            name, params["trigrams"] = f"sqlite.{search.query}_indexed", _trigram_query(literals)
        async with self._lock:
            doc: str = await self._run(name, limit=limit, offset=offset, **params)
        return doc.encode()

    async def find_messages(self, search: MessageSearch, limit: int | None, offset: int) -> bytes:
        async with self._lock:
            doc: str = await self._run(
                f"search.messages_by_{search.column}",
                keys=_json_list(search.keys),
                value=search.value.decode(),
                limit=limit,
                offset=offset,
            )
        return doc.encode()

    def _index_soon(self) -> None:
        """Have the words of the messages writes queued indexed in the background, within
        _INDEX_DELAY (migration 0004: FTS5 kept off the write path)."""
        if self._indexer is not None and not self._indexer.done():
            self._index_again = True  # the running one goes round once more
            return
        if self._index_now is None:
            self._index_now = asyncio.Event()
        self._indexer = asyncio.get_running_loop().create_task(self._index_queued(self._index_now))

    async def _index_queued(self, now: asyncio.Event) -> None:
        delay = _INDEX_DELAY
        try:
            again = True
            while again:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(now.wait(), delay)
                self._index_again = False
                try:
                    taken = _INDEX_BATCH
                    while taken == _INDEX_BATCH:  # the lock is let go between batches
                        async with self._lock:
                            taken = await self._index_batch(patient=False)
                except _Busy as exc:
                    if now.is_set():  # closing: what is left stays queued for the next store
                        return
                    # Another connection is writing: try again later, less and less often.
                    delay = min(delay * 2, _INDEX_RETRY)
                    _log.debug("background indexing deferred %.1f s: %s", delay, exc)
                    continue
                delay, again = _INDEX_DELAY, self._index_again
        except Exception as exc:  # the queue stays as it was: searches index it, the next write retries
            _log.warning("indexing message words in the background failed: %s", exc)

    async def _index_batch(self, *, patient: bool = True) -> int:
        """Index up to _INDEX_BATCH queued messages, and as many queued titles, in one
        transaction (the caller holds the lock); the most entries it took of either queue.
        The background indexer is not ``patient`` (see sqlite.fail_when_busy)."""
        if not await self._run("sqlite.queued_any"):
            return 0
        async with self._transaction(patient=patient):
            rows = await self._run("sqlite.queued_words", batch=_INDEX_BATCH)
            if rows:
                latest = {message_id: content for _, message_id, content in rows}
                indexed = [(i, _indexed_text(content)) for i, content in latest.items()]
                await self._run("sqlite.clear_words", ids=_encode(list(latest)).decode())
                await self._run(
                    "sqlite.insert_words",
                    rows=_encode([[i, *texts] for i, texts in indexed if texts is not None]).decode(),
                )
                await self._run("sqlite.dequeue_words", last=rows[-1][0])
            titles = await self._run("sqlite.queued_titles", batch=_INDEX_BATCH)
            if titles:
                latest_titles = {thread_id: title for _, thread_id, title in titles}
                await self._run("sqlite.clear_titles", ids=_encode(list(latest_titles)).decode())
                await self._run(
                    "sqlite.insert_titles",
                    rows=_encode(
                        [[i, matching.fold(t)] for i, t in latest_titles.items() if t is not None]
                    ).decode(),
                )
                await self._run("sqlite.dequeue_titles", last=titles[-1][0])
        return max(len(rows), len(titles))

    async def search(
        self, query: fulltext.Query, wanted: bytes | None, limit: int, offset: int
    ) -> builtins.list[SearchRow]:
        name = "search.fulltext"
        params = {"query": fulltext.fts5_query(query), "limit": limit, "offset": offset}
        if wanted is not None:
            name, params["wanted"] = "search.fulltext_in_threads", wanted.decode()
        unindexed: builtins.list[SearchRow] = []
        async with self._lock:
            rows = await self._run(name, **params)
            # Messages queued are indexed first (usually none: the background indexer runs
            # right after writes), so every message whose save returned is found. What stays
            # queued (a read-only store cannot index; another process may write meanwhile) is
            # matched on its current text and listed first: an edit never leaves old words found.
            if rows[0][0] if rows else await self._run("search.queued"):
                if not self._read_only:
                    while await self._index_batch() == _INDEX_BATCH:
                        pass
                found = unindexed_hits(query, wanted, await self._run("search.unindexed"))
                unindexed = found[offset : offset + limit]
                rows = []
                if len(unindexed) < limit:
                    params.update(limit=limit - len(unindexed), offset=max(offset - len(found), 0))
                    rows = await self._run(name, **params)
        return unindexed + [
            SearchRow(
                thread_id, message_id, sequence, role, score, matching.content_text(_optional(content)) or ""
            )
            for _, thread_id, message_id, sequence, role, score, content in rows
        ]

    async def thread_of_message(self, message_id: str) -> bytes | None:
        async with self._lock:
            doc = await self._run("search.by_message_id", message_id=message_id)
        return None if doc is None else doc.encode()

    async def save_alias(self, alias: str, thread_id: str, created_at: datetime) -> bool:
        async with self._lock:
            saved = await self._run(
                "aliases.save", alias=alias, thread_id=thread_id, created_at=_text_time(created_at)
            )
        return saved is not None

    async def thread_by_alias(self, alias: str) -> bytes | None:
        async with self._lock:
            doc = await self._run("aliases.get_thread", alias=alias)
        return None if doc is None else doc.encode()

    async def delete_alias(self, alias: str) -> bool:
        async with self._lock:
            count: int = await self._run("aliases.delete", alias=alias)
        return count > 0

    async def aliases(self, thread_id: str) -> builtins.list[str]:
        async with self._lock:
            rows = await self._run("aliases.of_thread", thread_id=thread_id)
        return [row[0] for row in rows]

    async def usage(self, hour_ago: datetime, day_ago: datetime, week_ago: datetime) -> bytes:
        async with self._lock:
            doc: str = await self._run(
                "stats.usage",
                hour_ago=_text_time(hour_ago),
                day_ago=_text_time(day_ago),
                week_ago=_text_time(week_ago),
            )
        usage = _decode(doc)
        # Each count as stats.usage splits it (exact past 2^63): high and low 32-bit sums and
        # the values wider than 64 bits, truncated as matching.token_count does.
        usage["models"] = [
            [row[0], *[_exact_sum(*row[i : i + 3]) for i in (1, 4, 7)]] for row in usage["models"]
        ]
        return _encode(usage)

    # -- export, import, copy ---------------------------------------------------------------

    async def export_page(self, after: str | None, limit: int) -> bytes:
        async with self._lock:
            rows = await self._run("transfer.page", after=after, limit=limit)
        return ("[" + ",".join([f"[{doc},{aliases}]" for doc, aliases in rows]) + "]").encode()

    async def stored(self, thread_ids: Sequence[str]) -> builtins.list[str]:
        async with self._lock:
            rows = await self._run("transfer.stored", ids=_json_list(thread_ids))
        return [row[0] for row in rows]

    async def put(self, copies: Sequence[ThreadCopy]) -> builtins.list[str]:
        threads = msgspec.json.encode(
            [
                {
                    **self._thread_params(copy.plan),
                    "id": copy.plan.thread_id,
                    "attributes": msgspec.Raw(copy.plan.attributes),
                    "platforms": msgspec.Raw(copy.plan.platforms),
                    "source": None if copy.plan.source is None else msgspec.Raw(copy.plan.source),
                    "last_sequence": copy.last_sequence,
                }
                for copy in copies
            ]
        ).decode()
        messages = {copy.plan.thread_id: _decode_docs(copy.plan.new) for copy in copies}
        aliases = msgspec.json.encode(
            [
                {"alias": alias, "thread_id": copy.plan.thread_id, "created_at": _text_time(at)}
                for copy in copies
                for alias, at in copy.aliases
            ]
        ).decode()
        async with self._lock, self._transaction():
            rows = await self._run("sqlite.put_threads", threads=threads)
            stored = [row[0] for row in rows]
            if stored:
                # The documents carry the sequences the copies keep.
                rows = [
                    _message_row(doc, thread_id, doc.sequence)
                    for thread_id in stored
                    for doc in messages[thread_id]
                ]
                if rows:
                    await self._run_many("sqlite.insert_message", rows)
                await self._run("sqlite.put_aliases", aliases=aliases, ids=_json_list(stored))
        if stored:
            self._index_soon()
        return stored


def _exact_sum(high: int | None, low: int | None, wide: builtins.list[int | float]) -> int | None:
    if high is None and not wide:
        return None  # nothing counted
    return ((high or 0) << 32) + (low or 0) + sum(matching.token_count(value) for value in wide)


def _param(value: Any) -> Any:
    """A search field as SQLite takes it: JSON as text, a pattern in its RE2 spelling."""
    if isinstance(value, matching.TextPattern):
        return value.re2
    if isinstance(value, bytes):
        return value.decode()
    return value


def _json_list(values: Sequence[str]) -> str:
    return msgspec.json.encode(list(values)).decode()


def create(config: DatabaseConfig) -> SQLiteBackend:
    """A SQLite backend for the path in ``config``."""
    return SQLiteBackend(
        config.path or ":memory:",
        echo=config.settings.echo,
        url=config.masked_url,
        read_only=config.read_only,
    )
