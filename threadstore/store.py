"""ThreadStore: the public facade. Each method checks its arguments (threadstore.checks), plans
the write (threadstore.documents, from what threadstore.tracking says changed), calls the
backend, and records what was loaded or saved (threadstore.tracking). It holds no SQL and no
driver calls.
"""

from __future__ import annotations

import builtins
import dataclasses
import time
from collections.abc import AsyncGenerator, Callable, Coroutine, Generator, Iterable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from datetime import datetime, timedelta
from types import TracebackType
from typing import TYPE_CHECKING, Any, Unpack

from threadstore import attachments, checks, cursors, documents, fulltext, matching, tracing, tracking
from threadstore.backends import (
    Backend,
    ByAttributes,
    ByContent,
    ByPlatform,
    ByPlatformReference,
    ByTitle,
    MessageSearch,
    ReplicaStatus,
    SchemaStatus,
    ThreadSearch,
)
from threadstore.config import DatabaseConfig, SettingsKwargs, check_keywords, configure
from threadstore.errors import NotFoundError
from threadstore.lifecycle import Connector
from threadstore.models import (
    Attachment,
    Message,
    SearchHit,
    Thread,
    ThreadPage,
    ThreadRecord,
    utcnow,
)
from threadstore.tracking import Changes, set_quietly

if TYPE_CHECKING:
    from threadstore.files import FileStore


class ThreadStore:
    """Persists Threads on one backend: in-memory, SQLite or PostgreSQL.

    ``ThreadStore(url)`` connects on first use; ``await ThreadStore.create(url)`` connects (and
    migrates, unless ``migrate=False``) at once. ``close()`` or ``async with`` releases it.
    With no URL the environment decides (``THREADSTORE_DATABASE_URL``, ``THREADSTORE_DB_TYPE``
    and the TYLER_/NARRATOR_ equivalents), else in-memory. The keyword settings (``pool_size``,
    ``max_overflow``, ``pool_timeout``, ``pool_recycle``, ``command_timeout``,
    ``statement_cache_size``, ``echo``, ``connect_timeout``, ``liveness_interval``) override the
    ``<PREFIX>DB_*`` variables; None leaves the environment's value or the default.

    ``read_only=True`` opens the database for reading only: no migrations, every write method
    raises ReadOnlyError before it reaches the database, and a SQLite file stays byte-for-byte
    as it was (no switch to WAL; the connection refuses writes with ``query_only``).
    """

    def __init__(
        self,
        url: str | None = None,
        *,
        migrate: bool = True,
        read_only: bool = False,
        replicas: Sequence[str] | None = None,
        **settings: Unpack[SettingsKwargs],
    ) -> None:
        check_keywords(settings, "ThreadStore.__init__")
        config = configure(url, replicas=replicas, **settings)
        self._config: DatabaseConfig = dataclasses.replace(config, read_only=bool(read_only))
        # A private in-memory database gets its schema all the same: it is empty, and stays so.
        private = config.backend == "memory" or config.path == ":memory:"
        self._connector = Connector(self._config, migrate=migrate and (private or not read_only))
        self._last_alias_time: datetime | None = None
        # id(thread) -> [lock, saves waiting or running]: one save of a Thread object at a time
        self._saving: dict[int, builtins.list[Any]] = {}

    @classmethod
    def create(
        cls,
        url: str | None = None,
        *,
        migrate: bool = True,
        read_only: bool = False,
        replicas: Sequence[str] | None = None,
        **settings: Unpack[SettingsKwargs],
    ) -> Opening:
        """A connected store: ``store = await ThreadStore.create(url)``, or ``async with
        ThreadStore.create(url) as store:`` (closed when the block ends; ``async with await``
        works too). Raises ThreadStoreError (a RuntimeError) when it cannot connect."""
        check_keywords(settings, "ThreadStore.create")

        async def connected() -> ThreadStore:
            store = cls(url, migrate=migrate, read_only=read_only, replicas=replicas, **settings)
            await store._connector.ready()
            return store

        return Opening(connected)

    # -- lifecycle --------------------------------------------------------------------------

    @property
    def backend(self) -> str:
        """``"memory"``, ``"sqlite"`` or ``"postgres"``."""
        return self._config.backend

    @property
    def database_url(self) -> str | None:
        """The database URL with its password masked; None for the in-memory store."""
        return self._config.masked_url

    @property
    def engine(self) -> Any:
        """The driver object underneath: an asyncpg ``Pool`` (PostgreSQL) or an aiosqlite
        ``Connection`` (SQLite); None in memory or before the store connects. Not SQLAlchemy."""
        backend = self._connector.backend
        return None if backend is None else backend.engine

    @property
    def async_session(self) -> Callable[[], AbstractAsyncContextManager[Any]] | None:
        """A factory of driver connections inside a transaction, for code written against the
        older API: ``async with store.async_session() as conn:`` yields an asyncpg
        ``Connection`` or the aiosqlite ``Connection`` (not a SQLAlchemy session), commits when
        the block ends and rolls back on an exception. None for the in-memory store.
        On SQLite the block holds the store's only connection: no store call may run inside it.
        """
        return None if self._config.backend == "memory" else self._connector.session

    def __repr__(self) -> str:
        return self._connector.describe()

    @property
    def read_only(self) -> bool:
        """Whether the store was opened with ``read_only=True``."""
        return self._config.read_only

    async def migrate(self) -> builtins.list[int]:
        """Apply pending schema migrations; returns the versions applied."""
        return await (await self._connector.writer("migrate")).migrate()

    async def schema_status(self) -> SchemaStatus:
        """The schema version applied and the migrations pending (``"0002_name"``); changes
        nothing. Raises SchemaVersionError when the database is newer than this code."""
        return await (await self._connector.ready()).schema_status()

    async def ping(self) -> float:
        """Seconds one round trip to the database takes (connecting first if needed); raises
        StoreUnavailableError when it does not answer. 0-ish for the in-memory store."""
        backend = await self._connector.ready()
        started = time.perf_counter()
        await backend.ping()
        return time.perf_counter() - started

    async def write_token(self) -> str:
        """An opaque token standing for this store's writes so far. Another store (the next
        request of a web app, another process) given it by ``reads_after`` reads them from
        its replicas too. Only PostgreSQL with ``replicas=`` has use for it; elsewhere it is
        accepted and every read sees every write anyway."""
        backend = await self._connector.ready()
        return checks.write_token(await backend.write_token())

    async def reads_after(self, token: str) -> None:
        """Read from replicas only once they hold the writes ``token`` (from ``write_token``)
        stands for; until then reads go to the primary. ValueError for a text that is not a
        token."""
        position = checks.check_write_token(token)
        await (await self._connector.ready()).reads_after(position)

    async def replica_status(self) -> builtins.list[ReplicaStatus]:
        """Each read replica (``replicas=``), looked at now: reachable, and how many seconds
        it is behind its primary in applying changes. Empty without replicas."""
        return await (await self._connector.ready()).replica_status()

    async def close(self) -> None:
        """Release the connection(s). Further use raises StoreClosedError. Idempotent.

        A program that never calls it still exits cleanly: the connections are closed when the
        event loop that opened them ends (``asyncio.run`` returning or raising), with a
        ResourceWarning (shown only when warnings are enabled), as asyncio does for its own.
        """
        await self._connector.close()

    async def __aenter__(self) -> ThreadStore:
        await self._connector.ready()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    # -- writes ---------------------------------------------------------------------------

    async def save(self, thread: Thread, file_store: FileStore | None = None) -> Thread:
        """Store the thread atomically, writing only what changed since it was loaded or saved.

        New messages are inserted after the stored ones (a concurrent writer's included),
        messages changed by field assignment or ``thread.mark_edited`` are updated, and only
        messages this Thread removed are deleted. System messages are not stored. Returns the
        same Thread, its messages carrying their stored sequences. Saves of one Thread object
        run one after the other: what is added or edited meanwhile goes to the next save.

        A Thread loaded from (or saved to) this store is saved into the stored thread: when
        that was deleted meanwhile, NotFoundError, and nothing is written (``copy.copy(thread)``
        is saved whole, as a new thread).

        The bytes of pending attachments of the messages written are stored in ``file_store``
        first (required then: ValueError without it, before anything is stored); if the save
        fails, the files it created are removed again unless something references them.
        """
        if not isinstance(thread, Thread):
            raise TypeError(f"save() takes a Thread, got {type(thread).__name__}")
        checks.check_file_store(file_store)
        backend = await self._connector.writer("save")
        async with self._one_save_at_a_time(thread):
            changes = tracking.changes(thread, backend)
            pending = attachments.pending_of([*changes.new, *changes.edited])
            if not pending:  # the usual save: no staging block (~4 us of a 60 us save in memory)
                return await self._save(thread, backend, changes, {})
            async with attachments.staged(pending, file_store, backend.attachment_references) as stored:
                await self._save(thread, backend, changes, stored)
            return thread

    def _one_save_at_a_time(self, thread: Thread) -> _SaveTurn:
        """Saves of one Thread object run one after the other: each takes its changes once the
        one before has recorded what it stored, so messages added or edited while a save runs go
        to the next one, none is written twice and the bookkeeping never goes back in time."""
        return _SaveTurn(self._saving, id(thread))

    async def _save(
        self, thread: Thread, backend: Backend, changes: Changes, stored: Mapping[int, Attachment]
    ) -> Thread:
        plan = documents.save_plan(thread, changes, stored)
        tracking.begin(changes)
        try:
            sequences = await backend.save(plan)
            if sequences is None:
                raise NotFoundError(
                    f"thread {thread.id!r} was deleted after this Thread was loaded from (or saved "
                    "to) this store; nothing was written. To store it again with the messages it "
                    "holds, save a copy: store.save(copy.copy(thread))"
                )
        except BaseException:
            tracking.abort(changes)
            raise
        tracking.mark_saved(thread, backend, changes, sequences)
        return thread

    async def append(
        self, thread_id: str, *messages: Message, file_store: FileStore | None = None, create: bool = False
    ) -> Thread:
        """Add messages after the stored ones of a thread without loading it.

        Returns the thread's header (id, title, attributes, times) whose ``messages`` are just
        the appended ones, with their stored sequences; saving it later leaves the others be.
        Raises NotFoundError when the thread does not exist, unless ``create``: then an absent
        thread is stored (as ``Thread(id=thread_id)``) in the same transaction, so two first
        appends at once both succeed and make one thread. Pending attachments are stored in
        ``file_store`` first, as by save().
        """
        checks.check_id(thread_id)
        checks.check_file_store(file_store)
        batch = builtins.list(messages)
        if not batch:
            raise ValueError("append() needs at least one message")
        for message in batch:
            if not isinstance(message, Message):
                raise TypeError(f"append() takes Messages, got {type(message).__name__}")
            if message.role == "system":
                raise ValueError("system messages are never stored; append() takes the others")
        if len({m.id for m in batch}) != len(batch):
            raise ValueError("append() got the same message twice")
        pending = attachments.pending_of(batch)
        if pending and file_store is None:
            raise attachments.no_file_store(pending)
        backend = await self._connector.writer("append")
        if not pending:  # no staging block, as in save()
            header, sequences = await self._append(backend, thread_id, batch, {}, create)
        else:
            async with attachments.staged(pending, file_store, backend.attachment_references) as stored:
                header, sequences = await self._append(backend, thread_id, batch, stored, create)
        thread = documents.decode_thread(header)
        for message in batch:
            set_quietly(message, "sequence", sequences[message.id])
            set_quietly(message, "thread_id", thread_id)
        thread.messages = batch
        return tracking.mark_loaded(thread, backend)

    @staticmethod
    async def _append(
        backend: Backend,
        thread_id: str,
        batch: builtins.list[Message],
        stored: Mapping[int, Attachment],
        create: bool,
    ) -> tuple[bytes, dict[str, int]]:
        result = await backend.append(documents.append_plan(thread_id, batch, stored, create))
        if result is None:
            raise NotFoundError(f"no thread {thread_id!r} to append to")
        return result

    async def pop_message(self, thread_id: str) -> Message | None:
        """Remove the thread's newest stored message (the highest sequence) and return it,
        atomically: two pops at once never return the same message. None when the thread does
        not exist or holds no stored message. Moves the thread's ``updated_at`` forward;
        its sequence is never handed out again."""
        checks.check_id(thread_id)
        backend = await self._connector.writer("pop_message")
        doc = await backend.pop_message(thread_id, utcnow())
        return None if doc is None else documents.decode_message(doc)

    async def get_or_create(self, thread_id: str) -> Thread:
        """The stored thread, or a new empty one with that id, stored now."""
        thread = await self.get(thread_id)
        if thread is not None:
            return thread
        backend = await self._connector.writer("get_or_create")
        await backend.create_if_absent(documents.save_plan(Thread(id=thread_id)))
        thread = await self.get(thread_id)
        if thread is None:  # deleted again in between
            raise NotFoundError(f"thread {thread_id!r} vanished while it was being created")
        return thread

    async def delete(self, thread_id: str) -> bool:
        """Delete a thread with its messages and aliases; False if it did not exist."""
        checks.check_id(thread_id)
        return await (await self._connector.writer("delete")).delete(thread_id)

    async def delete_threads(
        self,
        older_than: timedelta,
        attributes: dict[str, Any] | None = None,
        dry_run: bool = False,
        *,
        batch_size: int = 500,
        progress: Callable[[int], None] | None = None,
    ) -> int:
        """Delete the threads not updated for ``older_than`` (and whose attributes hold every
        key of ``attributes`` with an equal value, when given), with their messages and
        aliases; returns how many. ``dry_run`` only counts them.

        Deleted ``batch_size`` at a time, each batch its own short transaction, so concurrent
        saves wait for one batch at most; each thread goes wholly or not at all, and one
        updated after the walk began (a concurrent append) is kept. ``progress`` is called with
        the running total after each batch."""
        if not isinstance(older_than, timedelta):
            raise TypeError(f"older_than must be a timedelta, got {type(older_than).__name__}")
        if older_than < timedelta(0):
            raise ValueError(f"older_than must not be negative, got {older_than}")
        checks.check_page(batch_size, "batch_size", 1)
        wanted = None if attributes is None else documents.wanted(attributes, "attributes")
        backend = await (self._connector.ready() if dry_run else self._connector.writer("delete_threads"))
        now = utcnow()
        # Older than anything storable: nothing was updated before the year 1.
        cutoff = now - min(older_than, now - datetime.min.replace(tzinfo=now.tzinfo))
        if dry_run:
            return await backend.delete_threads(cutoff, wanted, batch_size, True)
        total = 0
        while deleted := await backend.delete_threads(cutoff, wanted, batch_size, False):
            total += deleted
            if progress is not None:
                progress(total)
        return total

    async def prune_messages(self, thread_id: str, keep_last: int = 200) -> int:
        """Delete all but the ``keep_last`` most recent stored messages of a thread; returns how
        many were deleted. The kept ones keep their sequences, as after any removal; messages
        appended meanwhile are kept. NotFoundError for a missing thread."""
        checks.check_id(thread_id)
        checks.check_count(keep_last, "keep_last")
        backend = await self._connector.writer("prune_messages")
        deleted = await backend.prune_messages(thread_id, keep_last)
        if deleted is None:
            raise NotFoundError(f"no thread {thread_id!r}")
        return deleted

    async def delete_many(self, thread_ids: Iterable[str]) -> int:
        """Delete those threads; returns how many existed. Unknown ids are ignored."""
        if isinstance(thread_ids, str):
            raise TypeError("delete_many() takes a list of thread ids, not one string")
        ids = [checks.check_id(i) for i in thread_ids]
        if not ids:
            return 0
        return await (await self._connector.writer("delete_many")).delete_many(
            builtins.list(dict.fromkeys(ids))
        )

    # -- reads ----------------------------------------------------------------------------

    async def get(self, thread_id: str, *, last: int | None = None) -> Thread | None:
        """The thread with all its messages, or None.

        With ``last``, only its ``last`` most recent messages (0 to MAX_PAGE). Saving such a
        partial thread writes what changed and never deletes the messages it did not load.
        """
        checks.check_id(thread_id)
        if last is None:
            backend = await self._connector.ready()
            return self._thread(backend, await backend.get(thread_id))
        checks.check_page(last, "last", 0)
        backend = await self._connector.ready()
        return self._thread(backend, await backend.get_messages(thread_id, last, checks.PAST_LAST, None))

    async def get_messages(
        self, thread_id: str, limit: int = 50, before: int | None = None, after: int | None = None
    ) -> builtins.list[Message]:
        """A page of a thread's stored messages, in ascending sequence order, found by sequence.

        With ``after``, the first ``limit`` messages whose sequence is above it (and below
        ``before``, when given); otherwise the last ``limit`` below ``before``, or the last
        ``limit`` of the thread. ``before=page[0].sequence`` walks back,
        ``after=page[-1].sequence`` forward. NotFoundError for a missing thread; ``limit`` is 1
        to MAX_PAGE."""
        checks.check_id(thread_id)
        checks.check_page(limit, "limit", 1)
        for value, what in ((before, "before"), (after, "after")):
            if value is not None:
                checks.check_page(value, what, 0, checks.PAST_LAST)
        backend = await self._connector.ready()
        doc = await backend.get_messages(
            thread_id, limit, checks.PAST_LAST if before is None else before, after
        )
        if doc is None:
            raise NotFoundError(f"no thread {thread_id!r}")
        return documents.decode_thread(doc).messages

    async def list_threads(
        self, limit: int = 50, cursor: str | None = None, attributes: dict[str, Any] | None = None
    ) -> ThreadPage:
        """Thread summaries (no messages read), newest ``updated_at`` first, id breaking ties.

        Pass ``page.next_cursor`` back as ``cursor`` for the next page (None on the last). A walk
        never returns a thread twice and returns every thread not updated during it exactly
        once (an update moves a thread ahead of the walk, as long as it moves ``updated_at``
        forward, as add_message, remove_message and append do); a cursor that list_threads did
        not return raises ValueError. ``attributes`` keeps
        threads whose attributes hold every given key with an equal value (as
        find_by_attributes); pass the same for every page. ``limit`` is 1 to MAX_PAGE."""
        checks.check_page(limit, "limit", 1)
        wanted = None if attributes is None else documents.wanted(attributes, "attributes")
        after = None if cursor is None else cursors.decode(cursor, attributes)
        backend = await self._connector.ready()
        summaries = documents.decode_summaries(await backend.list_threads(limit + 1, after, wanted))
        if len(summaries) <= limit:
            return ThreadPage(threads=summaries)
        last = summaries[limit - 1]
        return ThreadPage(
            threads=summaries[:limit], next_cursor=cursors.encode(last.updated_at, last.id, attributes)
        )

    async def list(self, limit: int = 100, offset: int = 0) -> builtins.list[Thread]:
        """Threads with their messages, newest ``updated_at`` first (id breaks ties)."""
        checks.check_count(limit, "limit")
        checks.check_count(offset, "offset")
        return await self._list(limit, offset)

    async def list_recent(self, limit: int | None = None) -> builtins.list[Thread]:
        """The most recently updated threads, newest first; all of them when limit is None."""
        checks.check_count(limit, "limit", allow_none=True)
        return await self._list(limit, 0)

    async def attachment_references(self, refs: Iterable[str] | None = None) -> set[str]:
        """The ``storage_path`` and ``file_id`` values held by the attachments of stored messages
        (only those among ``refs`` when given). Reads every message with attachments: meant for
        FileStore maintenance (files.collect_garbage), not for request paths."""
        if isinstance(refs, str):
            raise TypeError("attachment_references() takes a list of references, not one string")
        if refs is None:
            return await (await self._connector.ready()).attachment_references(None)
        wanted = builtins.list(dict.fromkeys(checks.check_id(r, "reference") for r in refs))
        if not wanted:
            return set()
        return await (await self._connector.ready()).attachment_references(wanted)

    async def _list(self, limit: int | None, offset: int) -> builtins.list[Thread]:
        backend = await self._connector.ready()
        return self._threads(backend, await backend.list_recent(limit, offset))

    @staticmethod
    def _threads(backend: Backend, docs: bytes) -> builtins.list[Thread]:
        threads = documents.decode_threads(docs)
        for thread in threads:
            tracking.mark_loaded(thread, backend)
        return threads

    @staticmethod
    def _thread(backend: Backend, doc: bytes | None) -> Thread | None:
        if doc is None:
            return None
        return tracking.mark_loaded(documents.decode_thread(doc), backend)

    # -- searches and lookups ---------------------------------------------------------------
    # Each returns whole threads with their messages, newest updated_at first (id breaks ties),
    # in one database call however many match; ``limit`` None means all of them.

    async def _find(self, search: ThreadSearch, limit: int | None, offset: int) -> builtins.list[Thread]:
        checks.check_count(limit, "limit", allow_none=True)
        checks.check_count(offset, "offset")
        backend = await self._connector.ready()
        return self._threads(backend, await backend.find_threads(search, limit, offset))

    async def search_by_title(
        self,
        text: str,
        limit: int | None = 100,
        *,
        offset: int = 0,
        attributes: dict[str, Any] | None = None,
    ) -> builtins.list[Thread]:
        """Threads whose title contains ``text``, ignoring case; every character is literal.
        ``attributes`` keeps the threads whose attributes hold every given key with an equal
        value, as find_by_attributes does (``{"user_id": "u1"}``: one user's threads)."""
        wanted = None if attributes is None else documents.wanted(attributes, "attributes")
        return await self._find(ByTitle(pattern=matching.literal(text), wanted=wanted), limit, offset)

    async def search_by_content(
        self, pattern: str, limit: int | None = 100, *, offset: int = 0, literal: bool = False
    ) -> builtins.list[Thread]:
        """Threads with a stored message whose content matches ``pattern``, ignoring case.

        ``pattern`` is a regular expression in the dialect every backend runs alike (see
        threadstore.matching.regex; anything else raises ValueError before the database is
        asked), or, with ``literal=True``, plain text. A list of content parts is searched as its
        text parts joined by newlines.
        """
        checked = matching.literal(pattern, "pattern") if literal else matching.regex(pattern)
        return await self._find(ByContent(pattern=checked), limit, offset)

    async def search_by_platform(
        self,
        platform_name: str,
        reference: str | int | float | bool,
        limit: int | None = 100,
        *,
        offset: int = 0,
    ) -> builtins.list[Thread]:
        """Threads whose ``platforms[platform_name]`` has ``reference`` as one of its values."""
        checks.check_id(platform_name, "platform_name")
        if not isinstance(reference, str | int | float):
            raise TypeError(f"reference must be a string or a number, got {type(reference).__name__}")
        search = ByPlatformReference(
            platform=platform_name, reference=documents.field_json(reference, "reference")
        )
        return await self._find(search, limit, offset)

    async def find_by_attributes(
        self, attributes: dict[str, Any], limit: int | None = 100, *, offset: int = 0
    ) -> builtins.list[Thread]:
        """Threads whose attributes hold every given key with an equal JSON value (1 equals 1.0;
        objects and lists compare whole). An empty dict matches every thread."""
        search = ByAttributes(wanted=documents.wanted(attributes, "attributes"))
        return await self._find(search, limit, offset)

    async def find_by_platform(
        self, platform_name: str, properties: dict[str, Any], limit: int | None = 100, *, offset: int = 0
    ) -> builtins.list[Thread]:
        """Threads whose ``platforms[platform_name]`` holds every given property with an equal
        value, or whose ``source`` is named ``platform_name`` and holds them."""
        checks.check_id(platform_name, "platform_name")
        search = ByPlatform(name=platform_name, wanted=documents.wanted(properties, "properties"))
        return await self._find(search, limit, offset)

    async def find_by_source(
        self, source_name: str, properties: dict[str, Any], limit: int | None = 100, *, offset: int = 0
    ) -> builtins.list[Thread]:
        """The same as find_by_platform (the older name)."""
        return await self.find_by_platform(source_name, properties, limit, offset=offset)

    async def search(
        self, query: str, limit: int = 20, offset: int = 0, *, attributes: dict[str, Any] | None = None
    ) -> builtins.list[SearchHit]:
        """Messages matching ``query``, best first (ties: the newer message first), ranked among
        the newest ``fulltext.RANKED`` (1,000) matches when more match.

        The syntax is a web search engine's: words (all must occur), ``"quoted phrases"``,
        ``OR`` between two terms, ``-word`` or ``-"a phrase"`` (must not occur). Words match
        whole, ignoring case, without stemming (threadstore.fulltext defines them). ``attributes``
        keeps the messages of threads whose attributes hold every given key with an equal value,
        as find_by_attributes does. ValueError for a query without a word that must occur."""
        parsed = fulltext.parse(query)
        if isinstance(limit, int) and not isinstance(limit, bool) and limit < 1:
            raise ValueError(f"limit must be at least 1, got {limit}")
        checks.check_count(limit, "limit")
        checks.check_count(offset, "offset")
        wanted = None if attributes is None else documents.wanted(attributes, "attributes")
        backend = await self._connector.ready()
        if parsed.impossible:
            return []
        return documents.search_hits(await backend.search(parsed, wanted, limit, offset), parsed)

    async def find_messages_by_attribute(
        self, path: str | Sequence[str], value: Any, limit: int | None = 100, *, offset: int = 0
    ) -> builtins.list[Message]:
        """Stored messages whose value at ``path`` equals ``value`` (as JSON), ordered by thread
        id, then sequence; each carries its ``thread_id``.

        ``path`` is dotted: ``"platforms.slack.ts"`` looks in the messages' platforms,
        ``"attributes.x.y"`` or just ``"x.y"`` in their attributes. A key holding a dot needs the
        list form: ``["platforms", "web", "a.b"]``.
        """
        column, keys = checks.key_path(path)
        checks.check_count(limit, "limit", allow_none=True)
        checks.check_count(offset, "offset")
        search = MessageSearch(column=column, keys=keys, value=documents.field_json(value, "value"))  # type: ignore[arg-type]
        backend = await self._connector.ready()
        return documents.decode_messages(await backend.find_messages_by_attribute(search, limit, offset))

    async def get_thread_by_message_id(self, message_id: str) -> Thread | None:
        """The thread holding that stored message, or None. Ids the store mints never repeat;
        an id from outside that several threads hold names the first of them in id order."""
        checks.check_id(message_id, "message_id")
        backend = await self._connector.ready()
        return self._thread(backend, await backend.get_thread_by_message_id(message_id))

    # -- aliases ----------------------------------------------------------------------------
    # An alias is another, caller-chosen name of one thread: case-sensitive, any text of 1 to
    # MAX_ALIAS_LENGTH characters. Deleting a thread deletes its aliases.

    async def save_thread_alias(self, thread_id: str, alias: str) -> None:
        """Name the thread ``alias``. An alias naming another thread is moved to this one.
        Raises NotFoundError when the thread does not exist."""
        checks.check_id(thread_id)
        checks.check_alias(alias)
        backend = await self._connector.writer("save_thread_alias")
        if not await backend.save_thread_alias(alias, thread_id, self._alias_time()):
            raise NotFoundError(f"no thread {thread_id!r} to alias")

    def _alias_time(self) -> datetime:
        # Strictly increasing within this store, so aliases list in the order they were saved.
        now = utcnow()
        last = self._last_alias_time
        if last is not None and now <= last:
            now = last + timedelta(microseconds=1)
        self._last_alias_time = now
        return now

    async def get_by_alias(self, alias: str) -> Thread | None:
        """The thread ``alias`` names, or None."""
        checks.check_alias(alias)
        backend = await self._connector.ready()
        return self._thread(backend, await backend.get_by_alias(alias))

    async def delete_thread_alias(self, alias: str) -> bool:
        """Forget an alias (the thread stays); False if it was unknown."""
        checks.check_alias(alias)
        return await (await self._connector.writer("delete_thread_alias")).delete_thread_alias(alias)

    async def get_thread_aliases(self, thread_id: str) -> builtins.list[str]:
        """The thread's aliases, in the order they were saved; empty for an unknown thread."""
        checks.check_id(thread_id)
        return await (await self._connector.ready()).get_thread_aliases(thread_id)

    # -- statistics -------------------------------------------------------------------------

    async def get_usage_stats(self) -> dict[str, Any]:
        """Counts and token usage, computed by the database in one call.

        ``total_threads``, ``total_messages``, ``avg_messages_per_thread`` (0.0 when empty),
        ``total_tokens`` = ``{"total": int, "by_model": {model: {"prompt_tokens",
        "completion_tokens", "total_tokens"}}}`` from Message.metrics (non-numbers count 0), and
        ``threads_last_hour`` / ``_24h`` / ``_7d`` by updated_at.
        """
        backend = await self._connector.ready()
        now = utcnow()
        return documents.usage_stats(
            await backend.get_usage_stats(
                now - timedelta(hours=1), now - timedelta(days=1), now - timedelta(days=7)
            )
        )

    # -- export, import ---------------------------------------------------------------------

    async def export_threads(
        self, *, page_size: int = 200, after: str | None = None
    ) -> AsyncGenerator[builtins.list[ThreadRecord], None]:
        """Every stored thread with its messages and aliases (ThreadRecords), in pages of up to
        ``page_size``, in id order after the id ``after`` (None: from the first). One read per
        page, so memory stays flat however large the store."""
        checks.check_count(page_size, "page_size")
        if page_size < 1:
            raise ValueError("page_size must be at least 1")
        if after is not None:
            checks.check_id(after, "after")
        backend = await self._connector.ready()
        while True:
            page = documents.decode_page(await backend.export_threads(after, page_size))
            if not page:
                return
            for record, aliases in page:
                record.aliases = aliases
            yield [record for record, _ in page]
            if len(page) < page_size:
                return
            after = page[-1][0].id

    async def import_threads(
        self, threads: Iterable[Thread], file_store: FileStore | None = None
    ) -> builtins.list[str]:
        """Store threads exactly as given -- ids, times, message sequences, and the aliases of
        a ThreadRecord with their times -- skipping each id already stored, so importing the
        same threads again changes nothing. Atomic: a bad value raises ValueError/TypeError and
        a message id or alias stored for another thread ConflictError, and then none of them is
        stored. Messages without a sequence are numbered after the others; system messages are
        not stored. Pending attachments need ``file_store``, as for save(). Returns the ids
        stored, in order."""
        if isinstance(threads, Thread):
            raise TypeError("import_threads() takes a list of threads, not one Thread")
        batch: dict[str, Thread] = {}
        for thread in threads:
            if not isinstance(thread, Thread):
                raise TypeError(f"import_threads() takes Threads, got {type(thread).__name__}")
            batch.setdefault(checks.check_id(thread.id, "Thread.id"), thread)
        checks.check_file_store(file_store)
        if not batch:
            return []
        backend = await self._connector.writer("import_threads")
        present = set(await backend.existing_ids(builtins.list(batch)))
        todo = [thread for thread_id, thread in batch.items() if thread_id not in present]
        for thread in todo:
            tracking.unique_ids(thread.id, thread.messages)  # Messages only, each once
        pending = attachments.pending_of(m for thread in todo for m in thread.messages if m.role != "system")
        async with attachments.staged(pending, file_store, backend.attachment_references) as stored:
            return await self._put(backend, todo, stored)

    async def _put(
        self, backend: Backend, threads: builtins.list[Thread], stored: Mapping[int, Attachment]
    ) -> builtins.list[str]:
        if not threads:
            return []
        copies = [documents.import_copy(thread, stored) for thread in threads]
        done = set(await backend.import_threads(copies))
        return [copy.plan.thread_id for copy in copies if copy.plan.thread_id in done]


tracing.operations(ThreadStore)  # a span per public operation, when OpenTelemetry's API is installed


class _SaveTurn:
    """One save's turn at a Thread object (see ThreadStore._one_save_at_a_time). A class, not an
    asynccontextmanager: this is on every save, and the generator-based one costs ~10 us."""

    __slots__ = ("_entry", "_key", "_saving")

    def __init__(self, saving: dict[int, list[Any]], key: int) -> None:
        self._saving, self._key = saving, key  # the entry lives only while the thread is saved
        self._entry: list[Any] = []

    async def __aenter__(self) -> None:
        import asyncio

        entry = self._saving.get(self._key)
        if entry is None:
            entry = self._saving[self._key] = [asyncio.Lock(), 0]
        entry[1] += 1
        self._entry = entry
        try:
            await entry[0].acquire()
        except BaseException:
            self._leave()
            raise

    async def __aexit__(self, *exc_info: object) -> None:
        self._entry[0].release()
        self._leave()

    def _leave(self) -> None:
        self._entry[1] -= 1
        if not self._entry[1]:
            del self._saving[self._key]


class Opening:
    """What ThreadStore.create returns: awaited, the connected store; in ``async with``, the
    connected store, closed when the block ends. A store method called on it (an ``await``
    forgotten) is an AttributeError saying so, not Python's words about a coroutine."""

    __slots__ = ("_connected", "_store")

    def __init__(self, connected: Callable[[], Coroutine[Any, Any, ThreadStore]]) -> None:
        self._connected = connected
        self._store: ThreadStore | None = None

    def __await__(self) -> Generator[Any, None, ThreadStore]:
        return self._connected().__await__()

    async def __aenter__(self) -> ThreadStore:
        self._store = await self._connected()
        return self._store

    async def __aexit__(self, *exc_info: object) -> None:
        if self._store is not None:
            await self._store.close()

    if not TYPE_CHECKING:  # type checkers see no such attribute: they flag the missing await

        def __getattr__(self, name: str) -> Any:
            raise AttributeError(
                f"ThreadStore.create() returns an awaitable, not a store (no .{name}): write "
                "`store = await ThreadStore.create(...)` or `async with ThreadStore.create(...) as store:`"
            )
