"""The PostgreSQL backend: one method per operation, statements from sql/postgres/.

No lock around the pool (that would serialise it). JSON travels as msgspec-encoded bytes through
binary json/jsonb codecs registered in the pool's init; reads come back as one JSON document per
call and are decoded by the store in a single typed pass. A save or an append is one statement,
so one round trip.
Connections, their bounds and the liveness check are ``pool``'s.
"""

from __future__ import annotations

import builtins
import contextlib
import logging
from collections.abc import AsyncIterator, Callable, Sequence
from datetime import UTC, datetime
from typing import Any

import asyncpg
import msgspec

from threadstore import fulltext, matching, queries
from threadstore.backends import migrations
from threadstore.backends.base import (
    AppendPlan,
    MessageSearch,
    ReplicaStatus,
    SavePlan,
    SchemaStatus,
    SearchRow,
    ThreadCopy,
    ThreadSearch,
    sliced,
)
from threadstore.backends.indexer import Indexer, indexed_page, unindexed_first, unindexed_hits
from threadstore.backends.migrations import narrator_refusal
from threadstore.backends.postgres.pool import (
    PostgresPool,
    collided,
    read_only_server,
    retried,
    transaction,
)
from threadstore.config import DatabaseConfig
from threadstore.errors import ConfigurationError, ConflictError, ThreadStoreError
from threadstore.queries import Migration

_log = logging.getLogger(__name__)

_decode = msgspec.json.Decoder().decode

_LOCKED_ATTEMPTS = 3
# Queued messages per postgres.index_text statement: one transaction stays short however much an
# import queued.
_INDEX_BATCH = 500
# The indexer starts this long after the write that woke it, so that it takes the writes of that
# moment in one statement and keeps off the next requests' way: run right after each append, it
# made the next operation 30-50% slower on 2 cores; every 100 ms it indexes ~100 messages at once.
_INDEX_DELAY = 0.1
_INDEX_AT_CLOSE = 5.0  # seconds close() lets the indexer finish before cancelling it
# A round that indexed at least this many messages followed a bulk load (an import, a migration
# that queued every message): it then refreshes the planner's statistics and empties the queue's
# dead pages (postgres.analyze_indexed, clean_pending_lists, vacuum_queue), which autovacuum would do only
# a minute or more later, if it runs at all. Without them, right after importing 200,000
# messages, a word in 10 messages took 350 ms, not 0.9 (plans costed on empty tables, JIT
# compiling them, the empty queue's 1,667 dead pages read by every search; issue 28).
_SETTLE_AFTER = 10_000

# On a distributed store (docs/citus.md), the searches' first step: the page of thread ids (a
# thread search) or the page of message documents (a message search), from every shard.
_CITUS_THREAD_SEARCHES = {
    "search.by_title": "postgres.citus_by_title",
    "search.by_content": "postgres.citus_by_content",
    "search.by_platform_reference": "postgres.citus_by_platform_reference",
    "search.by_attributes": "postgres.citus_by_attributes",
    "search.by_platform": "postgres.citus_by_platform",
}
_CITUS_MESSAGE_SEARCHES = {
    "attributes": "postgres.citus_messages_by_attributes",
    "platforms": "postgres.citus_messages_by_platforms",
}


def _joined(row: asyncpg.Record) -> bytes:
    """A thread's document from a row of its JSON object without messages and its messages' JSON
    array (NULL without any), as threads.get and threads.list_recent give them."""
    thread, messages = row
    return b"".join((thread[:-1], b', "messages" : ', messages or b"[]", b"}"))


def _document(row: asyncpg.Record | None) -> bytes | None:
    """_joined of a read of one thread; None without a row (no such thread)."""
    return None if row is None else _joined(row)


def _documents(rows: Sequence[Any]) -> bytes:
    """A JSON array of thread documents from rows as _joined takes them."""
    return b"[" + b",".join([_joined(row) for row in rows]) + b"]"


def _some(ids: Sequence[str]) -> str:
    """Thread ids for a message: all of a few, else the first ones and how many."""
    shown = ", ".join(map(repr, ids[:3]))
    return shown if len(ids) <= 3 else f"{shown} and {len(ids) - 3} more"


class _Migrator:
    """Applies migrations on one connection (migrations.apply)."""

    def __init__(self, pool: PostgresPool, conn: asyncpg.Connection) -> None:
        self._pool = pool
        self._conn = conn

    async def run_script(self, migration: Migration) -> None:
        try:
            await self._conn.execute(migration.script)
        except TimeoutError as exc:
            raise self._pool.timed_out(f"migration {migration.origin}") from exc
        except asyncpg.PostgresError as exc:
            raise ThreadStoreError(f"migration {migration.origin} failed: {exc}") from exc

    async def record(self, migration: Migration) -> None:
        await self._pool.run(
            self._conn,
            "schema.record",
            version=migration.version,
            name=migration.name,
            applied_at=datetime.now(UTC),
        )


class PostgresBackend:
    """Threads in PostgreSQL through an asyncpg pool."""

    name = "postgres"
    loop_bound = True

    def __init__(self, config: DatabaseConfig) -> None:
        self._config = config
        self._echo = config.settings.echo
        self._queries = queries.load("postgres")
        self._pool = PostgresPool(config)
        # Fills message_text in the background, within _INDEX_DELAY of a write. Writes only
        # queue message ids (message_text_pending); the trigram index on message_text is kept
        # off their path (~70 us a message: a save of 10 messages 1.70x a hand-written schema's
        # with it on messages, 1.22x without). Searches read the queue as well, so nothing waits
        # for this.
        self._indexer = Indexer(
            self._index_round,
            batch=_INDEX_BATCH,
            log=_log,
            what="text",
            delay=_INDEX_DELAY,
            at_close=_INDEX_AT_CLOSE,
        )
        self._imported = 0  # messages imported since the tables were last settled (_SETTLE_AFTER)

    async def open(self) -> None:
        await self._pool.open()

    @property
    def engine(self) -> asyncpg.Pool | None:
        return self._pool.engine

    async def close(self) -> None:
        await self._indexer.close()
        await self._pool.close()

    def abandon(self) -> None:
        self._indexer.abandon()
        self._pool.abandon()

    @contextlib.asynccontextmanager
    async def session(self) -> AsyncIterator[asyncpg.Connection]:
        async with self._pool.session() as conn:
            yield conn

    async def ping(self) -> None:
        """One round trip to the server; StoreUnavailableError when it cannot be reached within
        the bounds (connect_timeout, pool_timeout, twice liveness_interval)."""
        await self._pool.read("postgres.ping")

    async def write_token(self) -> int:
        position = self._pool.position
        if position is None or not self._config.replicas:  # not tracked: where the primary is now
            position = await self._pool.current_position()
        return position

    async def reads_after(self, position: int) -> None:
        self._pool.reads_after(position)

    async def replica_status(self) -> builtins.list[ReplicaStatus]:
        return [ReplicaStatus(**replica) for replica in await self._pool.replica_status()]

    async def migrate(self) -> list[int]:
        # Up to date: nothing is written, so a read-only server (a hot standby, a database with
        # default_transaction_read_only = on) opens as well.
        distributed = self._config.settings.distributed
        if distributed and not await self._pool.read("postgres.citus_installed"):
            raise ConfigurationError(
                f"distributed=True needs a Citus coordinator, and {self._config.masked_url} has no "
                "citus extension (create it there, on a server that preloads citus); "
                "nothing was changed"
            )
        todo = await self._apply_migrations() if (await self.schema_status()).pending else []
        if todo:
            _log.info(
                "applied migrations %s to %s", ", ".join(m.origin for m in todo), self._config.masked_url
            )
        if distributed:
            await self._distribute()
        if await self._pool.read("search.queued"):  # a migration, an adoption or a process that ended
            self._indexer.soon()  # left messages queued: index them now, not at a search
        return [m.version for m in todo]

    async def _distribute(self) -> None:
        """The tables distributed by thread on a Citus coordinator (docs/citus.md); at once when
        they are already."""
        async with self._pool.acquire() as conn, transaction(conn):
            await self._pool.run(conn, "postgres.migration_lock")
            await self._pool.run(conn, "postgres.citus_distribute")
        # Apart: Citus defines no distributed function in a transaction that also wrote to
        # distributed tables over several connections, as distributing them does.
        async with self._pool.acquire() as conn, transaction(conn):
            await self._pool.run(conn, "postgres.migration_lock")
            await self._pool.run(conn, "postgres.citus_functions")

    async def _apply_migrations(self) -> builtins.list[Migration]:
        async with self._pool.acquire() as conn, transaction(conn):
            await self._pool.run(conn, "postgres.migration_lock")
            if await self._pool.run(conn, "schema.narrator_database"):
                raise narrator_refusal(self._config.masked_url or "")
            if await self._pool.run(conn, "schema.other_tables"):
                raise migrations.other_tables_refusal(self._config.masked_url or "")
            if self._config.settings.schema is not None:
                await self._pool.run(conn, "postgres.create_schema")
            await self._pool.run(conn, "schema.create_ledger")
            applied = [row[0] for row in await self._pool.run(conn, "schema.versions")]
            todo = migrations.pending(self._queries.migrations, applied)
            await migrations.apply(_Migrator(self._pool, conn), todo, echo=self._echo)
        return todo

    async def schema_status(self) -> SchemaStatus:
        applied = []
        if await self._pool.read("schema.ledger_exists"):
            applied = [row[0] for row in await self._pool.read("schema.versions")]
        elif await self._pool.read("schema.narrator_database"):
            raise narrator_refusal(self._config.masked_url or "")
        return migrations.status(self._queries.migrations, applied)

    async def get(self, thread_id: str) -> bytes | None:
        return _document(await self._pool.read("threads.get", thread_id=thread_id))

    async def list_recent(self, limit: int | None, offset: int) -> bytes:
        if self._config.settings.distributed:
            rows = await self._pool.read("postgres.citus_recent_ids", limit=limit, offset=offset)
            return await self._by_ids([row[0] for row in rows])
        return _documents(await self._pool.read("threads.list_recent", limit=limit, offset=offset))

    async def _by_ids(self, ids: builtins.list[str]) -> bytes:
        """The documents of the threads ``ids``, in that order (a distributed store's second
        step: postgres.citus_threads_by_ids); a thread deleted in between is left out."""
        rows = await self._pool.read("postgres.citus_threads_by_ids", ids=ids) if ids else []
        found = {row[0]: row[1:] for row in rows}
        return _documents([found[i] for i in ids if i in found])

    async def get_messages(self, thread_id: str, limit: int, before: int, after: int | None) -> bytes | None:
        if after is None:
            row = await self._pool.read(
                "bounded.get_messages_before", thread_id=thread_id, before=before, limit=limit
            )
        else:
            row = await self._pool.read(
                "bounded.get_messages_after", thread_id=thread_id, after=after, before=before, limit=limit
            )
        return _document(row)

    async def list_threads(
        self, limit: int, after: tuple[datetime, str] | None, wanted: bytes | None
    ) -> bytes:
        # No position yet: every stored time is before 'infinity' (times travel as text, so
        # datetime.max is stored as itself, not as infinity).
        params = {
            "after_time": "infinity" if after is None else after[0].isoformat(),
            "after_id": "" if after is None else after[1],
            "limit": limit,
        }
        if self._config.settings.distributed:  # the page of ids, then their summaries
            if wanted is None:
                rows = await self._pool.read("postgres.citus_list_threads", **params)
            else:
                rows = await self._pool.read(
                    "postgres.citus_list_threads_by_attributes", wanted=msgspec.Raw(wanted), **params
                )
            ids = [row[0] for row in rows]
            found = dict(await self._pool.read("postgres.citus_summaries_by_ids", ids=ids)) if ids else {}
            return b"[" + b",".join([found[i] for i in ids if i in found]) + b"]"
        doc: bytes
        if wanted is None:
            doc = await self._pool.read("bounded.list_threads", **params)
        else:
            doc = await self._pool.read(
                "bounded.list_threads_by_attributes", wanted=msgspec.Raw(wanted), **params
            )
        return doc

    async def delete_threads(self, cutoff: datetime, wanted: bytes | None, batch: int, dry_run: bool) -> int:
        params = {"cutoff": cutoff.isoformat(), "wanted": None if wanted is None else msgspec.Raw(wanted)}
        count: int
        if dry_run:
            count = await self._pool.read("bounded.count_threads_to_delete", **params)
            return count

        async def delete(conn: asyncpg.Connection) -> int:
            return await retried(
                lambda: self._pool.run(conn, "bounded.delete_threads", batch=batch, **params),
                lambda: "deleting old threads",
            )

        async def citus_delete(conn: asyncpg.Connection) -> int:
            async with transaction(conn):
                rows = await self._pool.run(conn, "postgres.citus_threads_to_delete", batch=batch, **params)
                if not rows:
                    return 0
                rows = await self._pool.run(
                    conn,
                    "postgres.citus_delete_threads",
                    ids=[row[0] for row in rows],
                    cutoff=params["cutoff"],
                )
                if rows:
                    await self._pool.run(conn, "postgres.citus_forget_aliases", ids=[row[0] for row in rows])
                return len(rows)

        if self._config.settings.distributed:
            return await self._pool.write(
                lambda conn: retried(lambda: citus_delete(conn), lambda: "deleting old threads"),
                lambda: "deleting old threads",
            )
        return await self._pool.write(delete, lambda: "deleting old threads")

    async def prune_messages(self, thread_id: str, keep_last: int) -> int | None:
        async def prune(conn: asyncpg.Connection) -> int | None:
            async with transaction(conn):
                if not await self._pool.run(conn, "bounded.thread_row", thread_id=thread_id):
                    return None
                count: int = await self._pool.run(
                    conn, "bounded.prune", thread_id=thread_id, keep_last=keep_last
                )
                return count

        def what() -> str:
            return f"pruning thread {thread_id!r}"

        return await self._pool.write(lambda conn: retried(lambda: prune(conn), what), what)

    @staticmethod
    def _thread_params(plan: SavePlan) -> dict[str, Any]:
        return {
            "thread_id": plan.thread_id,
            "title": plan.title,
            "attributes": msgspec.Raw(plan.attributes),
            "platforms": msgspec.Raw(plan.platforms),
            "source": None if plan.source is None else msgspec.Raw(plan.source),
            "platform_values": msgspec.Raw(plan.platform_values),
            # As text: asyncpg would turn datetime.min/max into -infinity/infinity.
            "created_at": plan.created_at.isoformat(),
            "updated_at": plan.updated_at.isoformat(),
        }

    def _citus_append_params(self, plan: AppendPlan) -> dict[str, Any]:
        """postgres.citus_append's thread fields: those of the thread created when absent (with
        create=True), else none."""
        fields = dict.fromkeys(
            ["title", "attributes", "platforms", "source", "platform_values", "created_at"]
        )
        if plan.create is not None:
            fields = self._thread_params(plan.create)
            del fields["thread_id"]
        return {**fields, "create": plan.create is not None, "updated_at": plan.updated_at.isoformat()}

    async def _index_round(self) -> int:
        """The background indexer's round: everything queued, on one pooled connection."""
        try:
            async with self._pool.acquire() as conn:
                await self._index_all(conn)
        except ThreadStoreError as exc:
            if not read_only_server(exc):
                raise
            # A hot standby: its primary's indexer does the work.
            _log.debug("not indexing message text: the server is read-only (%s)", exc)
        return 0

    async def _index_all(self, conn: asyncpg.Connection) -> None:
        """Index everything queued, in batches of _INDEX_BATCH, each its own transaction: the
        content text and, cut into words by threadstore.fulltext here, the full-text words;
        then, after a bulk load's worth, fresh statistics and an emptied queue (_SETTLE_AFTER)."""
        taken, total = _INDEX_BATCH, 0
        while taken == _INDEX_BATCH:
            async with transaction(conn):
                await self._pool.run(conn, "postgres.lock_indexer")
                take = (
                    "postgres.citus_take_queued"
                    if self._config.settings.distributed
                    else "postgres.take_queued"
                )
                row = await self._pool.run(conn, take, batch=_INDEX_BATCH, max_chars=fulltext.MAX_TEXT)
                taken = row[0]
                total += taken
                await self._store_words(conn, _decode(row[1]))
        if total >= _SETTLE_AFTER:
            await self._settle(conn)

    async def _store_words(self, conn: asyncpg.Connection, messages: builtins.list[Any]) -> None:
        """Index ``messages`` ([thread id, message id, content text or None], as
        postgres.take_queued and postgres.import_threads give them): their words cut by
        threadstore.fulltext here, stored with their text by postgres.store_text. The one place
        message text becomes index rows, for the indexer and for import_threads alike."""
        if messages:
            await self._pool.run(
                conn,
                "postgres.store_text",
                thread_ids=[m[0] for m in messages],
                ids=[m[1] for m in messages],
                words=[  # 500 messages of 1,000 words: 1.5 s of work, sliced
                    None if text is None else fulltext.tsvector_of(text)
                    async for _, _, text in sliced(messages)
                ],
            )

    async def _settle(self, conn: asyncpg.Connection) -> None:
        """After a bulk load (_SETTLE_AFTER): fresh statistics, merged GIN pending lists and an
        emptied queue, outside any transaction."""
        try:
            await self._pool.run(conn, "postgres.analyze_indexed")
            await self._pool.run(conn, "postgres.clean_pending_lists")
            await self._pool.run(conn, "postgres.vacuum_queue")
        except ThreadStoreError as exc:  # autovacuum gets there later
            _log.info("statistics not refreshed after a bulk load: %s", exc)

    async def search(
        self, query: fulltext.Query, wanted: bytes | None, limit: int, offset: int
    ) -> builtins.list[SearchRow]:
        name = "search.fulltext"
        params = {
            "query": fulltext.tsquery(query),
            "ranking": fulltext.tsquery(query, ranking=True),
            "ranked": fulltext.RANKED,
            "recent": fulltext.RECENT,
            "limit": limit,
            "offset": offset,
        }
        if wanted is not None:
            name, params["wanted"] = "search.fulltext_in_threads", msgspec.Raw(wanted)
            if self._config.settings.distributed:
                name = "postgres.citus_fulltext_in_threads"
        rows, queued = await indexed_page(
            lambda: self._pool.read(name, **params), lambda: self._pool.read("search.queued")
        )
        unindexed: builtins.list[SearchRow] = []
        # Messages queued are indexed first (usually none: the background indexer runs right
        # after writes), so every message whose save returned is found. What stays queued (a
        # read-only store or a standby cannot index; other processes write meanwhile) is matched
        # on its current text and listed first: an edit never leaves old words found or shown.
        if queued:
            if not self._config.read_only:
                try:
                    await self._pool.once_more(
                        self._index_all, "indexing the queued messages"
                    )  # a read's retry
                except ThreadStoreError as exc:
                    if not read_only_server(exc):
                        raise  # a standby: as a read-only store

            async def queued_and_indexed(conn: asyncpg.Connection) -> tuple[Any, Any]:
                # One snapshot: a message another process indexes meanwhile is found once.
                pending = await self._pool.run(conn, "search.unindexed")
                return pending, await self._pool.run(
                    conn, name, **dict(params, limit=offset + limit, offset=0)
                )

            pending, rows = await self._pool.read_together(queued_and_indexed, "search")
            unindexed, rows = unindexed_first(
                await unindexed_hits(query, wanted, pending), rows, limit, offset
            )
        hits = unindexed + [SearchRow(*row[1:]) for row in rows]
        if not hits:
            return hits
        # One read for every hit's title, not one get() per hit.
        titles = dict(await self._pool.read("search.titles", ids=list({h.thread_id for h in hits})))
        return [hit._replace(title=titles.get(hit.thread_id, "")) for hit in hits]

    async def save(self, plan: SavePlan) -> dict[str, int] | None:
        rows = await self._save(plan)
        if rows is None or any(row[0] is None for row in rows):
            return None  # a synced plan whose thread is gone: nothing was written
        if plan.new_count or plan.edited != b"[]":
            self._indexer.soon()
        return {row[0]: row[1] for row in rows}

    async def _save(self, plan: SavePlan) -> builtins.list[Any] | None:
        params = {
            **self._thread_params(plan),
            "new": msgspec.Raw(plan.new),
            "edited": msgspec.Raw(plan.edited),
            "removed": plan.removed,
            "synced": plan.synced,
        }

        def what() -> str:
            return f"saving thread {plan.thread_id!r}"

        return await self._pool.write(lambda conn: self._save_on(conn, plan, params, what), what)

    async def _save_on(
        self, conn: asyncpg.Connection, plan: SavePlan, params: dict[str, Any], what: Callable[[], str]
    ) -> builtins.list[Any] | None:
        if self._config.settings.distributed:  # on the thread's worker, in one phase, locked
            rows: builtins.list[Any] = await retried(
                lambda: self._pool.run(conn, "postgres.citus_save", **params), what
            )
            return rows
        # The two common saves get a light statement: messages appended to a thread loaded
        # from here, and a thread this store has not seen. Anything unexpected (the thread or
        # a message is stored already) falls to the general save; a thread gone is None.
        if plan.edited == b"[]" and not plan.removed and (plan.new_count or not plan.synced):
            light = {**params, "count": plan.new_count}
            del light["edited"], light["removed"], light["synced"]
            if plan.synced:
                del light["created_at"]
            name = "postgres.save_appended" if plan.synced else "postgres.save_new"
            try:
                rows = await retried(lambda: self._pool.run(conn, name, **light), what)
                if rows or not plan.synced:
                    return rows
                return None  # the thread is gone
            except ConflictError as exc:
                if collided(exc):
                    raise
        try:
            rows = await retried(lambda: self._pool.run(conn, "postgres.save", **params), what)
            return rows
        except ConflictError as exc:
            if collided(exc):
                raise  # else maybe a concurrent save inserted one of these messages: below

        # Under the thread's lock, each statement's snapshot includes every save of this
        # thread that finished before it, so a message another writer just inserted is seen
        # as held and updated, not inserted twice. A writer that skipped the lock can still
        # commit one in between, hence a few attempts; a message stored in another thread
        # fails every time.
        async def locked() -> builtins.list[Any]:
            async with transaction(conn):
                await self._pool.run(conn, "postgres.lock_thread", thread_id=plan.thread_id)
                rows: builtins.list[Any] = await self._pool.run(conn, "postgres.save", **params)
            return rows

        attempts_left = _LOCKED_ATTEMPTS
        while True:
            try:
                return await retried(locked, what)
            except ConflictError as exc:
                attempts_left -= 1
                if not attempts_left or collided(exc):
                    raise

    async def append(self, plan: AppendPlan) -> tuple[bytes, dict[str, int]] | None:
        name, params = "postgres.append", dict[str, Any](updated_at=plan.updated_at)
        if plan.create is not None:
            name, params = "postgres.append_creating", self._thread_params(plan.create)
            params["updated_at"] = plan.updated_at.isoformat()
        if self._config.settings.distributed:  # on the thread's worker, in one phase
            name, params = "postgres.citus_append", self._citus_append_params(plan)
        params.update(thread_id=plan.thread_id, count=plan.count, messages=msgspec.Raw(plan.messages))

        def what() -> str:
            return f"appending to thread {plan.thread_id!r}"

        row = await self._pool.write(
            lambda conn: retried(lambda: self._pool.run(conn, name, **params), what), what
        )
        if row is None:
            return None
        self._indexer.soon()
        sequences: dict[str, int] = _decode(row[1])
        return row[0], sequences

    async def pop_message(self, thread_id: str, updated_at: datetime) -> bytes | None:
        params = {"thread_id": thread_id, "updated_at": updated_at.isoformat()}

        def what() -> str:
            return f"popping a message of thread {thread_id!r}"

        if self._config.settings.distributed:  # on the thread's worker, in one phase, locked
            popped: bytes | None = await self._pool.write(
                lambda conn: retried(lambda: self._pool.run(conn, "postgres.citus_pop", **params), what), what
            )
            return popped

        async def pop(conn: asyncpg.Connection) -> Any:
            async def locked() -> Any:
                async with transaction(conn):
                    await self._pool.run(conn, "bounded.thread_row", thread_id=thread_id)
                    return await self._pool.run(conn, "postgres.pop_message", **params)

            row = await retried(lambda: self._pool.run(conn, "postgres.pop_message", **params), what)
            if row["present"] and not row["current"]:  # another writer came between: see the SQL
                row = await retried(locked, what)
            return row

        row = await self._pool.write(pop, what)
        message: bytes | None = row["message"]
        return message

    async def create_if_absent(self, plan: SavePlan) -> None:
        params = self._thread_params(plan)
        del params["platform_values"]
        await self._pool.write(
            lambda conn: self._pool.run(conn, "threads.create_if_absent", **params),
            lambda: f"creating thread {plan.thread_id!r}",
        )

    async def delete(self, thread_id: str) -> bool:
        distributed = self._config.settings.distributed

        def what() -> str:
            return f"deleting thread {thread_id!r}"

        async def delete(conn: asyncpg.Connection) -> int:
            # Retried as delete_many: its cascade can meet the indexer's locks on the messages.
            count: int = await retried(
                lambda: self._pool.run(conn, "threads.delete", thread_id=thread_id), what
            )
            if distributed:
                await self._pool.run(conn, "postgres.citus_forget_aliases", ids=[thread_id])
            return count

        count = await self._pool.write(delete, what)
        return count > 0

    async def delete_many(self, thread_ids: Sequence[str]) -> int:
        ids = list(thread_ids)
        distributed = self._config.settings.distributed
        name = "postgres.citus_delete_many" if distributed else "threads.delete_many"

        def what() -> str:
            return f"deleting {len(ids)} threads ({_some(sorted(ids))})"

        async def delete(conn: asyncpg.Connection) -> int:
            count: int = await retried(lambda: self._pool.run(conn, name, ids=ids), what)
            if distributed:
                await self._pool.run(conn, "postgres.citus_forget_aliases", ids=ids)
            return count

        count: int = await self._pool.write(delete, what)
        return count

    async def attachment_references(self, refs: Sequence[str] | None) -> set[str]:
        if refs is None:
            rows = await self._pool.read("files.references")
        else:
            rows = await self._pool.read("files.references_among", refs=list(refs))
        return {row[0] for row in rows}

    # -- searches, lookups, aliases, statistics ---------------------------------------------

    async def find_threads(self, search: ThreadSearch, limit: int | None, offset: int) -> bytes:
        params = {name: _param(getattr(search, name)) for name in search.__struct_fields__}
        if self._config.settings.distributed:  # the page of ids, then their documents
            name = _CITUS_THREAD_SEARCHES[search.query]
            rows = await self._pool.read(name, limit=limit, offset=offset, **params)
            return await self._by_ids([row[0] for row in rows])
        rows = await self._pool.read(search.query, limit=limit, offset=offset, **params)
        return _documents(rows)

    async def find_messages_by_attribute(
        self, search: MessageSearch, limit: int | None, offset: int
    ) -> bytes:
        params = {"keys": search.keys, "value": msgspec.Raw(search.value), "limit": limit, "offset": offset}
        if self._config.settings.distributed:
            rows = await self._pool.read(_CITUS_MESSAGE_SEARCHES[search.column], **params)
            return b"[" + b",".join([row[0] for row in rows]) + b"]"
        doc: bytes = await self._pool.read(MessageSearch.QUERIES[search.column], **params)
        return doc

    async def get_thread_by_message_id(self, message_id: str) -> bytes | None:
        if self._config.settings.distributed:
            thread_id = await self._pool.read("postgres.citus_message_thread", message_id=message_id)
            return None if thread_id is None else await self.get(thread_id)
        return _document(await self._pool.read("search.get_thread_by_message_id", message_id=message_id))

    async def save_thread_alias(self, alias: str, thread_id: str, created_at: datetime) -> bool:
        try:
            saved = await self._pool.write(
                lambda conn: self._pool.run(
                    conn,
                    "aliases.save_thread_alias",
                    alias=alias,
                    thread_id=thread_id,
                    created_at=created_at.isoformat(),
                ),
                lambda: f"saving alias {alias!r}",
            )
        except ThreadStoreError as exc:
            if isinstance(exc.__cause__, asyncpg.ForeignKeyViolationError):
                return False  # the thread was deleted in between
            raise
        return saved is not None

    async def get_by_alias(self, alias: str) -> bytes | None:
        if self._config.settings.distributed:  # two single-shard reads (postgres.citus_alias_thread)
            thread_id = await self._pool.read("postgres.citus_alias_thread", alias=alias)
            return None if thread_id is None else await self.get(thread_id)
        return _document(await self._pool.read("aliases.get_by_alias", alias=alias))

    async def delete_thread_alias(self, alias: str) -> bool:
        count: int = await self._pool.write(
            lambda conn: self._pool.run(conn, "aliases.delete_thread_alias", alias=alias),
            lambda: f"deleting alias {alias!r}",
        )
        return count > 0

    async def get_thread_aliases(self, thread_id: str) -> builtins.list[str]:
        rows = await self._pool.read("aliases.get_thread_aliases", thread_id=thread_id)
        return [row[0] for row in rows]

    async def get_usage_stats(self, hour_ago: datetime, day_ago: datetime, week_ago: datetime) -> bytes:
        doc: bytes = await self._pool.read(
            "stats.get_usage_stats",
            hour_ago=hour_ago.isoformat(),
            day_ago=day_ago.isoformat(),
            week_ago=week_ago.isoformat(),
        )
        return doc

    # -- export, import, copy ---------------------------------------------------------------

    async def export_threads(self, after: str | None, limit: int) -> bytes:
        if self._config.settings.distributed:
            return await self._citus_export(after, limit)
        rows = await self._pool.read("transfer.export_threads", after=after, limit=limit)
        return b"[" + b",".join([b"[%s,%s]" % (row[0], row[1]) for row in rows]) + b"]"

    async def _citus_export(self, after: str | None, limit: int) -> bytes:
        """export_threads on a distributed store: the page of ids (every shard), their documents
        (their shards), their aliases (every alias shard)."""
        ids = [row[0] for row in await self._pool.read("postgres.citus_export_ids", after=after, limit=limit)]
        if not ids:
            return b"[]"
        docs = dict(await self._pool.read("postgres.citus_export_docs", ids=ids))
        aliases: dict[str, builtins.list[bytes]] = {}
        for thread_id, alias in await self._pool.read("postgres.citus_export_aliases", ids=ids):
            aliases.setdefault(thread_id, []).append(alias)
        pages = [b"[%s,[%s]]" % (docs[i], b",".join(aliases.get(i, []))) for i in ids if i in docs]
        return b"[" + b",".join(pages) + b"]"

    async def existing_ids(self, thread_ids: Sequence[str]) -> builtins.list[str]:
        rows = await self._pool.read("transfer.existing_ids", ids=list(thread_ids))
        return [row[0] for row in rows]

    async def import_threads(self, copies: Sequence[ThreadCopy]) -> builtins.list[str]:
        threads = [
            {
                **self._thread_params(copy.plan),
                "id": copy.plan.thread_id,
                "last_sequence": copy.last_sequence,
                "messages": msgspec.Raw(copy.plan.new),
                "aliases": [{"alias": alias, "created_at": at.isoformat()} for alias, at in copy.aliases],
            }
            for copy in copies
        ]
        ids = [copy.plan.thread_id for copy in copies]

        def what() -> str:
            return f"importing {len(ids)} threads ({_some(sorted(ids))})"

        async def put(conn: asyncpg.Connection) -> tuple[builtins.list[str], int]:
            # The messages are indexed in the transaction that writes them, so an import leaves
            # nothing queued: a search right after it does not wait for its indexing (98 s after
            # 200,000 messages were imported, 400 s after a million; issue 28).
            async with transaction(conn):
                row = await self._pool.run(
                    conn, "postgres.import_threads", threads=threads, max_chars=fulltext.MAX_TEXT
                )
                messages = _decode(row[1])
                await self._store_words(conn, messages)
            return row[0], len(messages)

        async def put_and_settle(conn: asyncpg.Connection) -> builtins.list[str]:
            stored, count = await retried(lambda: put(conn), what)
            self._imported += count
            if self._imported >= _SETTLE_AFTER:  # as the indexer does after a bulk load
                self._imported = 0
                await self._settle(conn)
            return stored

        return await self._pool.write(put_and_settle, what)


def _param(value: Any) -> Any:
    """A search field as asyncpg takes it: JSON as raw jsonb, a pattern in its ~* spelling."""
    if isinstance(value, matching.TextPattern):
        return value.posix
    if isinstance(value, bytes):
        return msgspec.Raw(value)
    return value


def create(config: DatabaseConfig) -> PostgresBackend:
    """A PostgreSQL backend for the DSN in ``config``."""
    return PostgresBackend(config)
