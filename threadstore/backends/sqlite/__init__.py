"""The SQLite backend: one method per operation, statements from sql/sqlite/; the connection is
``connection``'s, the JSON shapes ``documents``'.

The connection runs in autocommit mode (``isolation_level=None``) and every write is an explicit
``BEGIN IMMEDIATE`` ... ``COMMIT``. One asyncio.Lock guards the connection for a whole
operation, so the statements of concurrent operations never interleave inside a transaction.
Times are stored as ISO-8601 UTC text with microseconds, so text order is time order.
"""

from __future__ import annotations

import builtins
import contextlib
import logging
import sqlite3
from collections.abc import AsyncIterator, Iterable, Sequence
from datetime import UTC, datetime
from typing import Any

import aiosqlite
import msgspec

from threadstore import fulltext, matching, queries
from threadstore.backends import migrations
from threadstore.backends.base import (
    AppendPlan,
    ByAttributes,
    ByContent,
    ByTitle,
    MessageSearch,
    ReplicaStatus,
    SavePlan,
    SchemaStatus,
    SearchRow,
    ThreadCopy,
    ThreadSearch,
    alias_taken,
    message_stored,
    sliced,
)
from threadstore.backends.indexer import Indexer, indexed_page, unindexed_first, unindexed_hits
from threadstore.backends.sqlite.connection import Busy, SQLiteConnection
from threadstore.backends.sqlite.documents import (
    MESSAGE_COLUMNS,
    decode_docs,
    header,
    indexed_text,
    message_row,
    optional,
    summaries,
    text_time,
    thread_documents,
    trigram_query,
)
from threadstore.config import DatabaseConfig
from threadstore.errors import ConflictError, ThreadStoreError
from threadstore.queries import Migration

__all__ = ["MESSAGE_COLUMNS", "SQLiteBackend", "create"]

_log = logging.getLogger(__name__)

_encode = msgspec.json.encode

# The full-text indexer (migration 0004), as PostgreSQL's: it starts this long after the write
# that wakes it, takes this many queued messages per transaction (holding the connection about
# 1-4 ms), and close() waits this long for it.
_INDEX_DELAY = 0.1
_INDEX_BATCH = 100
_INDEX_RETRY = 5.0  # seconds: the longest wait between tries while another connection writes
_INDEX_AT_CLOSE = 5.0


# The title and content searches through the trigram index, for patterns with literal text.
_INDEXED = {"search.by_title": "sqlite.by_title_indexed", "search.by_content": "sqlite.by_content_indexed"}

# Attribute lookups read thread_attribute_values (migration 0009) when fewer threads than this
# hold a wanted key = value; with more, walking the threads newest first fills a page as soon.
_FEW_HOLDERS = 1000


class _NotLight(Exception):
    """The light save does not apply (SQLiteBackend._save_light): roll back, take the general one."""


class _Migrator:
    """Applies migrations inside the caller's transaction (migrations.apply)."""

    def __init__(self, db: SQLiteConnection) -> None:
        self._db = db

    async def run_script(self, migration: Migration) -> None:
        for statement in migration.statements:
            try:
                await self._db.connection().execute(statement)
            except sqlite3.Error as exc:
                raise ThreadStoreError(f"migration {migration.origin} failed: {exc}") from exc

    async def record(self, migration: Migration) -> None:
        await self._db.run(
            "schema.record",
            version=migration.version,
            name=migration.name,
            applied_at=text_time(datetime.now(UTC)),
        )


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
        self._db = SQLiteConnection(path, echo=echo, url=self._url, read_only=self._read_only)
        # Fills message_words (migration 0004: FTS5 kept off the write path).
        self._indexer = Indexer(
            self._index_in_background,
            batch=_INDEX_BATCH,
            log=_log,
            what="words",
            delay=_INDEX_DELAY,
            busy=(Busy,),
            max_retry=_INDEX_RETRY,
            at_close=_INDEX_AT_CLOSE,
        )

    async def open(self) -> None:
        await self._db.open()

    async def close(self) -> None:
        await self._indexer.close()
        await self._db.close()

    def abandon(self) -> None:
        self._indexer.abandon()
        self._db.abandon()

    async def ping(self) -> None:
        async with self._db.lock:
            await self._db.run("sqlite.ping")

    async def write_token(self) -> int:
        return 0  # one database, no replicas: every read sees every write

    async def reads_after(self, position: int) -> None:
        pass

    async def replica_status(self) -> builtins.list[ReplicaStatus]:
        return []

    @property
    def engine(self) -> aiosqlite.Connection | None:
        return self._db.engine

    @contextlib.asynccontextmanager
    async def session(self) -> AsyncIterator[aiosqlite.Connection]:
        async with self._db.lock, self._db.transaction():
            yield self._db.connection()

    async def migrate(self) -> list[int]:
        registry = self._queries
        async with self._db.lock, self._db.transaction():
            if await self._db.run("schema.other_tables"):
                raise migrations.other_tables_refusal(self._url)
            await self._db.run("schema.create_ledger")
            applied = [row[0] for row in await self._db.run("schema.versions")]
            todo = migrations.pending(registry.migrations, applied)
            await migrations.apply(_Migrator(self._db), todo, echo=self._echo)
        if todo:
            _log.info("applied migrations %s to %s", ", ".join(m.origin for m in todo), self._path)
        async with self._db.lock:
            queued = await self._db.run("sqlite.queued_any")
        if queued:  # a migration, an adoption or a process that ended left entries queued:
            self._indexer.soon()  # index them now, not at a search
        return [m.version for m in todo]

    async def schema_status(self) -> SchemaStatus:
        async with self._db.lock:
            applied = []
            if await self._db.run("schema.ledger_exists"):
                applied = [row[0] for row in await self._db.run("schema.versions")]
        return migrations.status(self._queries.migrations, applied)

    async def get(self, thread_id: str) -> bytes | None:
        async with self._db.lock:
            rows = await self._db.run("threads.get", thread_id=thread_id)
        return thread_documents(rows).encode() if rows else None

    async def list_recent(self, limit: int | None, offset: int) -> bytes:
        async with self._db.lock:
            rows = await self._db.run("threads.list_recent", limit=limit, offset=offset)
        return f"[{thread_documents(rows)}]".encode()

    async def get_messages(self, thread_id: str, limit: int, before: int, after: int | None) -> bytes | None:
        async with self._db.lock:
            if after is None:
                rows = await self._db.run(
                    "bounded.get_messages_before", thread_id=thread_id, before=before, limit=limit
                )
            else:
                rows = await self._db.run(
                    "bounded.get_messages_after", thread_id=thread_id, after=after, before=before, limit=limit
                )
        return thread_documents(rows).encode() if rows else None

    async def list_threads(
        self, limit: int, after: tuple[datetime, str] | None, wanted: bytes | None
    ) -> bytes:
        # No position yet: "~" sorts after every ISO time, so every thread comes after it.
        params = {
            "after_time": "~" if after is None else text_time(after[0]),
            "after_id": "" if after is None else after[1],
            "limit": limit,
        }
        async with self._db.lock:
            if wanted is None:
                rows = await self._db.run("bounded.list_threads", **params)
            elif held := await self._few_holders(wanted):
                rows = await self._db.run(
                    "sqlite.list_threads_by_attributes_indexed", wanted=wanted.decode(), **held, **params
                )
            else:
                rows = await self._db.run(
                    "bounded.list_threads_by_attributes", wanted=wanted.decode(), **params
                )
        return summaries(rows).encode()

    async def delete_threads(self, cutoff: datetime, wanted: bytes | None, batch: int, dry_run: bool) -> int:
        params = {"cutoff": text_time(cutoff), "wanted": None if wanted is None else wanted.decode()}
        count: int
        async with self._db.lock:
            if dry_run:
                count = await self._db.run("bounded.count_threads_to_delete", **params)
            else:
                async with self._db.transaction():
                    count = await self._db.run("bounded.delete_threads", batch=batch, **params)
        return count

    async def prune_messages(self, thread_id: str, keep_last: int) -> int | None:
        async with self._db.lock, self._db.transaction():
            if not await self._db.run("bounded.thread_row", thread_id=thread_id):
                return None
            count: int = await self._db.run("bounded.prune", thread_id=thread_id, keep_last=keep_last)
        return count

    def _thread_params(self, plan: SavePlan) -> dict[str, Any]:
        return {
            "thread_id": plan.thread_id,
            "title": plan.title,
            "attributes": plan.attributes.decode(),
            "platforms": plan.platforms.decode(),
            "source": None if plan.source is None else plan.source.decode(),
            "created_at": text_time(plan.created_at),
            "updated_at": text_time(plan.updated_at),
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
            self._indexer.soon()  # new or edited messages, or a title, may be queued
        return sequences

    async def _save_light(self, plan: SavePlan) -> dict[str, int] | None:
        thread_id, docs = plan.thread_id, decode_docs(plan.new)
        params = {**self._thread_params(plan), "count": len(docs)}
        try:
            async with self._db.lock, self._db.transaction():
                if plan.synced:
                    del params["created_at"]
                    base = await self._db.run("sqlite.save_appended_thread", **params)
                    if base is None:
                        raise _NotLight
                else:
                    await self._db.run("sqlite.save_new_thread", **params)
                    base = 0
                await self._db.run_many(
                    "sqlite.insert_message",
                    [message_row(doc, thread_id, base + i) for i, doc in enumerate(docs, 1)],
                )
        except (_NotLight, ConflictError):
            return None
        return {doc.id: base + i for i, doc in enumerate(docs, 1)}

    async def _save(self, plan: SavePlan) -> dict[str, int] | None:
        thread_id = plan.thread_id
        new = decode_docs(plan.new) if plan.new_count else []
        updates = [message_row(doc, thread_id, None) for doc in decode_docs(plan.edited)]
        async with self._db.lock, self._db.transaction():
            if plan.synced and not await self._db.run("bounded.thread_row", thread_id=thread_id):
                return None  # deleted since the Thread was loaded or saved: not recreated
            sequences = {}
            if new:
                held, last = {}, 0
                state = await self._db.run(
                    "sqlite.save_state", thread_id=thread_id, ids=_json_list([doc.id for doc in new])
                )
                for message_id, sequence in state:
                    if message_id is None:
                        last = sequence
                    else:
                        held[message_id] = sequence
                inserts = []
                for doc in new:
                    if doc.id in held:  # rewritten in place, keeping its sequence
                        sequences[doc.id] = held[doc.id]
                        updates.append(message_row(doc, thread_id, None))
                    else:
                        last += 1
                        sequences[doc.id] = last
                        inserts.append(message_row(doc, thread_id, last))
                if inserts:
                    await self._db.run_many("sqlite.insert_message", inserts)
            if updates:
                await self._db.run_many("sqlite.update_message", updates)
            if plan.removed:
                await self._db.run(
                    "sqlite.delete_messages", thread_id=thread_id, ids=_json_list(plan.removed)
                )
            await self._db.run("sqlite.save_thread_row", **self._thread_params(plan))
        return sequences

    @contextlib.asynccontextmanager
    async def _named_conflict(
        self, thread_id: str = "", message_ids: Sequence[str] = (), aliases: Sequence[str] = ()
    ) -> AsyncIterator[None]:
        """A write's unique-key failure named as every backend names it (message_stored,
        alias_taken): the id the thread already holds, or the alias already taken, looked up
        once the write has rolled back."""
        try:
            yield
        except ConflictError as exc:
            async with self._db.lock:
                held = await self._db.run(
                    "sqlite.save_state", thread_id=thread_id, ids=_json_list(message_ids)
                )
                taken = [row[0] for row in held if row[0] is not None]
                if taken:
                    raise message_stored(taken[0]) from exc
                for alias in aliases:
                    if await self._db.run("aliases.get_by_alias", alias=alias) is not None:
                        raise alias_taken(alias) from exc
            raise

    async def append(self, plan: AppendPlan) -> tuple[bytes, dict[str, int]] | None:
        thread_id = plan.thread_id
        docs = decode_docs(plan.messages)
        params: dict[str, Any] = {"thread_id": thread_id, "count": plan.count}
        if plan.create is None:
            name, params["updated_at"] = "sqlite.append_thread_row", text_time(plan.updated_at)
        else:
            name = "sqlite.append_creating_thread_row"
            params.update(self._thread_params(plan.create), updated_at=text_time(plan.updated_at))

        def write(conn: sqlite3.Connection) -> Any:
            row = self._db.run_in_call(conn, name, params).fetchone()
            if row is not None:
                rows = [message_row(doc, thread_id, row[0] + i) for i, doc in enumerate(docs)]
                self._db.run_many_in_call(conn, "sqlite.insert_message", rows)
            return row

        async with self._named_conflict(thread_id, [doc.id for doc in docs]), self._db.lock:
            row = await self._db.in_one_call(name, write)
        if row is None:
            return None
        first = row[0]
        self._indexer.soon()
        return (header(*row[1:]) + "]}").encode(), {doc.id: first + i for i, doc in enumerate(docs)}

    async def pop_message(self, thread_id: str, updated_at: datetime) -> bytes | None:
        def pop(conn: sqlite3.Connection) -> str | None:
            row = self._db.run_in_call(conn, "sqlite.pop_message", {"thread_id": thread_id}).fetchone()
            if row is not None:
                params = {"thread_id": thread_id, "updated_at": text_time(updated_at)}
                self._db.run_in_call(conn, "sqlite.pop_message_thread_row", params)
            return None if row is None else str(row[0])

        async with self._db.lock:
            doc = await self._db.in_one_call("sqlite.pop_message", pop)
        return None if doc is None else doc.encode()

    async def create_if_absent(self, plan: SavePlan) -> None:
        async with self._db.lock, self._db.transaction():
            await self._db.run("threads.create_if_absent", **self._thread_params(plan))
        self._indexer.soon()

    async def delete(self, thread_id: str) -> bool:
        async with self._db.lock, self._db.transaction():
            count: int = await self._db.run("threads.delete", thread_id=thread_id)
        return count > 0

    async def delete_many(self, thread_ids: Sequence[str]) -> int:
        async with self._db.lock, self._db.transaction():
            count: int = await self._db.run("threads.delete_many", ids=_json_list(thread_ids))
        return count

    async def attachment_references(self, refs: Sequence[str] | None) -> set[str]:
        async with self._db.lock:
            if refs is None:
                rows = await self._db.run("files.references")
            else:
                rows = await self._db.run("files.references_among", refs=_json_list(refs))
        return {row[0] for row in rows}

    # -- searches, lookups, aliases, statistics ---------------------------------------------

    async def find_threads(self, search: ThreadSearch, limit: int | None, offset: int) -> bytes:
        params = {name: _param(getattr(search, name)) for name in search.__struct_fields__}
        name = search.query
        literals = search.pattern.literals if isinstance(search, ByTitle | ByContent) else ()
        if literals:
            name, params["trigrams"] = _INDEXED[name], trigram_query(literals)
        async with self._db.lock:
            if isinstance(search, ByAttributes) and (held := await self._few_holders(search.wanted)):
                name = "sqlite.by_attributes_indexed"
                params.update(held)
            doc: str = await self._db.run(name, limit=limit, offset=offset, **params)
        return doc.encode()

    async def _few_holders(self, wanted: bytes) -> dict[str, Any] | None:
        """{key, value}: an attribute of ``wanted`` that fewer than _FEW_HOLDERS threads hold, for
        the lookups' indexed twins; None when there is none (the caller holds the lock)."""
        for key, value in _indexed_attributes(wanted):
            held: int = await self._db.run(
                "sqlite.attribute_candidates", key=key, value=value, cap=_FEW_HOLDERS
            )
            if held < _FEW_HOLDERS:
                return {"key": key, "value": value}
        return None

    async def find_messages_by_attribute(
        self, search: MessageSearch, limit: int | None, offset: int
    ) -> bytes:
        async with self._db.lock:
            doc: str = await self._db.run(
                MessageSearch.QUERIES[search.column],
                keys=_json_list(search.keys),
                value=search.value.decode(),
                limit=limit,
                offset=offset,
            )
        return doc.encode()

    async def _index_in_background(self) -> int:
        """One batch of the background indexer, under the lock (let go between batches)."""
        async with self._db.lock:
            return await self._index_batch(patient=False)

    async def _index_batch(self, *, patient: bool = True) -> int:
        """Index up to _INDEX_BATCH queued messages, and as many queued titles, in one
        transaction (the caller holds the lock); the most entries it took of either queue.
        The background indexer is not ``patient`` (see sqlite.fail_when_busy)."""
        if not await self._db.run("sqlite.queued_any"):
            return 0
        async with self._db.transaction(patient=patient):
            rows = await self._db.run("sqlite.queued_words", batch=_INDEX_BATCH)
            if rows:
                latest = {(thread_id, message_id): content for _, thread_id, message_id, content in rows}
                words = await _word_rows(latest.items())
                await self._db.run("sqlite.clear_words", ids=_encode(list(latest)).decode())
                await self._db.run("sqlite.insert_words", rows=_json_rows(words))
                await self._db.run("sqlite.dequeue_words", last=rows[-1][0])
            titles = await self._db.run("sqlite.queued_titles", batch=_INDEX_BATCH)
            if titles:
                latest_titles = {thread_id: title for _, thread_id, title in titles}
                await self._db.run("sqlite.clear_titles", ids=_encode(list(latest_titles)).decode())
                await self._db.run("sqlite.insert_titles", rows=_title_rows(latest_titles.items()))
                await self._db.run("sqlite.dequeue_titles", last=titles[-1][0])
        return max(len(rows), len(titles))

    async def search(
        self, query: fulltext.Query, wanted: bytes | None, limit: int, offset: int
    ) -> builtins.list[SearchRow]:
        name = "search.fulltext"
        params = {
            "query": fulltext.fts5_query(query),
            "ranked": fulltext.RANKED,
            "recent": fulltext.RECENT,
            "limit": limit,
            "offset": offset,
        }
        if wanted is not None:
            name, params["wanted"] = "search.fulltext_in_threads", wanted.decode()
        unindexed: builtins.list[SearchRow] = []
        async with self._db.lock:
            rows, queued = await indexed_page(
                lambda: self._db.run(name, **params), lambda: self._db.run("search.queued")
            )
        if queued:
            # Messages queued are indexed first (usually none: the background indexer runs
            # right after writes), so every message whose save returned is found; a batch at a
            # time, letting other operations through in between (the whole queue of a
            # 10,000-message import held a concurrent get for 0.8 s). What stays queued (a
            # read-only store cannot index; another process may write meanwhile) is matched on
            # its current text and listed first: an edit never leaves old words found.
            taken = 0 if self._read_only else _INDEX_BATCH
            while taken == _INDEX_BATCH:
                async with self._db.lock:
                    taken = await self._index_batch()
            # One snapshot: a message another process indexes meanwhile is found once.
            async with self._db.lock, self._db.snapshot():
                pending = await self._db.run("search.unindexed")
                rows = await self._db.run(name, **dict(params, limit=offset + limit, offset=0))
            unindexed, rows = unindexed_first(
                await unindexed_hits(query, wanted, pending), rows, limit, offset
            )
        hits = unindexed + [
            SearchRow(
                thread_id, message_id, sequence, role, score, matching.content_text(optional(content)) or ""
            )
            for _, thread_id, message_id, sequence, role, score, content in rows
        ]
        if not hits:
            return hits
        async with self._db.lock:  # one read for every hit's title, not one get() per hit
            titles = dict(await self._db.run("search.titles", ids=_json_list([h.thread_id for h in hits])))
        return [hit._replace(title=titles.get(hit.thread_id, "")) for hit in hits]

    async def get_thread_by_message_id(self, message_id: str) -> bytes | None:
        async with self._db.lock:
            doc = await self._db.run("search.get_thread_by_message_id", message_id=message_id)
        return None if doc is None else doc.encode()

    async def save_thread_alias(self, alias: str, thread_id: str, created_at: datetime) -> bool:
        async with self._db.lock:
            saved = await self._db.run(
                "aliases.save_thread_alias",
                alias=alias,
                thread_id=thread_id,
                created_at=text_time(created_at),
            )
        return saved is not None

    async def get_by_alias(self, alias: str) -> bytes | None:
        async with self._db.lock:
            doc = await self._db.run("aliases.get_by_alias", alias=alias)
        return None if doc is None else doc.encode()

    async def delete_thread_alias(self, alias: str) -> bool:
        async with self._db.lock:
            count: int = await self._db.run("aliases.delete_thread_alias", alias=alias)
        return count > 0

    async def get_thread_aliases(self, thread_id: str) -> builtins.list[str]:
        async with self._db.lock:
            rows = await self._db.run("aliases.get_thread_aliases", thread_id=thread_id)
        return [row[0] for row in rows]

    async def get_usage_stats(self, hour_ago: datetime, day_ago: datetime, week_ago: datetime) -> bytes:
        async with self._db.lock:
            doc: str = await self._db.run(
                "stats.get_usage_stats",
                hour_ago=text_time(hour_ago),
                day_ago=text_time(day_ago),
                week_ago=text_time(week_ago),
            )
        usage = msgspec.json.decode(doc)
        # Each count as stats.get_usage_stats splits it (exact past 2^63): high and low 32-bit
        # sums and the values wider than 64 bits, truncated as matching.token_count does.
        usage["models"] = [
            [row[0], *[_exact_sum(*row[i : i + 3]) for i in (1, 4, 7)]] for row in usage["models"]
        ]
        return _encode(usage)

    # -- export, import, copy ---------------------------------------------------------------

    async def export_threads(self, after: str | None, limit: int) -> bytes:
        async with self._db.lock:
            rows = await self._db.run("transfer.export_threads", after=after, limit=limit)
        return ("[" + ",".join([f"[{doc},{aliases}]" for doc, aliases in rows]) + "]").encode()

    async def existing_ids(self, thread_ids: Sequence[str]) -> builtins.list[str]:
        async with self._db.lock:
            rows = await self._db.run("transfer.existing_ids", ids=_json_list(thread_ids))
        return [row[0] for row in rows]

    async def import_threads(self, copies: Sequence[ThreadCopy]) -> builtins.list[str]:
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
        messages = {copy.plan.thread_id: decode_docs(copy.plan.new) for copy in copies}
        aliases = msgspec.json.encode(
            [
                {"alias": alias, "thread_id": copy.plan.thread_id, "created_at": text_time(at)}
                for copy in copies
                for alias, at in copy.aliases
            ]
        ).decode()
        aliases_given = [alias for copy in copies for alias, _ in copy.aliases]
        # Indexed as they are written, so an import leaves nothing queued: a search right after
        # it does not wait for its indexing (36 s after 200,000 messages were imported, 260 s
        # after a million; issue 28). The words are cut before the lock is taken.
        words = await _word_rows(
            ((copy.plan.thread_id, doc.id), doc.content)
            for copy in copies
            for doc in messages[copy.plan.thread_id]
        )
        titles = {copy.plan.thread_id: copy.plan.title for copy in copies}
        async with self._named_conflict(aliases=aliases_given), self._db.lock, self._db.transaction():
            words_queued, titles_queued = await self._db.run("sqlite.queue_ends")
            rows = await self._db.run("sqlite.import_threads", threads=threads)
            stored = [row[0] for row in rows]
            if stored:
                # The documents carry the sequences the copies keep.
                rows = [
                    message_row(doc, thread_id, doc.sequence)
                    for thread_id in stored
                    for doc in messages[thread_id]
                ]
                if rows:
                    await self._db.run_many("sqlite.insert_message", rows)
                await self._db.run("sqlite.import_aliases", aliases=aliases, ids=_json_list(stored))
                # What the import queued (its threads and messages only: it holds the write lock).
                kept = set(stored)
                await self._db.run("sqlite.insert_words", rows=_json_rows(r for r in words if r[0] in kept))
                await self._db.run("sqlite.insert_titles", rows=_title_rows((i, titles[i]) for i in stored))
                await self._db.run("sqlite.dequeue_words_after", last=words_queued)
                await self._db.run("sqlite.dequeue_titles_after", last=titles_queued)
        return stored


async def _word_rows(contents: Iterable[tuple[tuple[str, str], Any]]) -> builtins.list[builtins.list[Any]]:
    """The message_words rows ([thread id, message id, words, folded text]) of messages' contents
    (JSON text or bytes, or None), keyed (thread id, message id): the one place a message's text
    becomes index rows, for the indexer and for import_threads alike. Lets the event loop run."""
    rows = []
    async for (thread_id, message_id), content in sliced(contents):
        texts = indexed_text(content)
        if texts is not None:
            rows.append([thread_id, message_id, *texts])
    return rows


def _json_rows(rows: Iterable[builtins.list[Any]]) -> str:
    """Rows as sqlite.insert_words and sqlite.insert_titles take them: a JSON array."""
    return _encode(list(rows)).decode()


def _title_rows(titles: Iterable[tuple[str, str | None]]) -> str:
    """The thread_titles rows (sqlite.insert_titles) of (thread id, title or None) pairs."""
    return _json_rows([i, matching.fold(t)] for i, t in titles if t is not None)


def _exact_sum(high: int | None, low: int | None, wide: builtins.list[int | float]) -> int | None:
    if high is None and not wide:
        return None  # nothing counted
    return ((high or 0) << 32) + (low or 0) + sum(matching.token_count(value) for value in wide)


def _indexed_attributes(wanted: bytes) -> list[tuple[str, str | int]]:
    """The (key, value) pairs of ``wanted`` (a JSON object) thread_attribute_values can answer:
    strings, and integers SQLite and Python compare alike whatever the stored spelling (1, 1.0,
    1e0); strings first. Not floats: SQLite may read a long decimal to another double."""
    attributes: dict[str, Any] = msgspec.json.decode(wanted)
    strings: list[tuple[str, str | int]] = [(k, v) for k, v in attributes.items() if type(v) is str]
    numbers = [(k, v) for k, v in attributes.items() if type(v) is int and abs(v) < 2**53]
    return strings + numbers


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
