"""A blocking ThreadStore, for scripts, notebooks and synchronous web frameworks.

``from threadstore.sync import ThreadStore`` has the async store's methods with the same
arguments, each blocking until it is done. Each store runs an ``threadstore.ThreadStore`` on a
private event loop in a daemon thread of its own, so it works the same whether or not the calling
thread runs an event loop (inside one, a call blocks that loop for its duration: there, prefer
the async store). Calls from several threads are safe and run concurrently on the store's loop.
``close()`` (or ``with``) ends the thread; a store never closed is closed when it is
garbage-collected or when the interpreter exits, so a script that forgets it still exits at once.
"""

from __future__ import annotations

import builtins
import concurrent.futures
import threading
import weakref
from collections.abc import AsyncGenerator, Callable, Coroutine, Iterable, Iterator, Sequence
from types import TracebackType
from typing import TYPE_CHECKING, Any, TypeVar, Unpack

from threadstore import forks
from threadstore.config import SettingsKwargs, check_keywords
from threadstore.errors import StoreClosedError
from threadstore.store import ThreadStore as AsyncThreadStore

if TYPE_CHECKING:
    import asyncio
    from datetime import timedelta

    from threadstore.backends import SchemaStatus
    from threadstore.files import FileStore
    from threadstore.models import Message, SearchHit, Thread, ThreadPage
    from threadstore.transfer import ThreadRecord

_T = TypeVar("_T")
_CLOSE_TIMEOUT = 10.0  # seconds a close() or a close at garbage collection may take
_EXIT_TIMEOUT = 2.0  # seconds a close at exit may take (SQLite's worker, a daemon, may be busy)


class _Loop:
    """An event loop running in a daemon thread until ``stop()``."""

    def __init__(self) -> None:
        import asyncio  # here: importing it is half of `import threadstore` (bench: ~40 ms)

        self.loop = asyncio.new_event_loop()
        self.stopped = False
        self.exiting = False  # set by _close at interpreter exit
        self.calls: set[concurrent.futures.Future[Any]] = set()  # submitted, not done yet
        started = threading.Event()
        self.thread = threading.Thread(
            target=self._run, args=(started,), name="threadstore-sync", daemon=True
        )
        self.thread.start()
        started.wait()

    def _run(self, started: threading.Event) -> None:
        self.loop.call_soon(started.set)
        try:
            self.loop.run_forever()
            self.loop.run_until_complete(self.loop.shutdown_asyncgens())
        finally:
            self.loop.close()

    def submit(self, coroutine: Coroutine[Any, Any, _T]) -> concurrent.futures.Future[_T]:
        if self.stopped:
            coroutine.close()
            raise StoreClosedError("this ThreadStore is closed")
        if threading.current_thread() is self.thread:
            coroutine.close()
            raise RuntimeError(
                "a threadstore.sync.ThreadStore cannot be called from its own event "
                "loop's thread (it would wait for itself)"
            )
        import asyncio

        future = asyncio.run_coroutine_threadsafe(coroutine, self.loop)
        self.calls.add(future)
        future.add_done_callback(self.calls.discard)
        return future

    def run(self, coroutine: Coroutine[Any, Any, _T]) -> _T:
        future = self.submit(coroutine)
        try:
            return future.result()
        except concurrent.futures.CancelledError:
            if self.exiting:  # cancelled by _close at exit: this (daemon) thread ends with it
                threading.Event().wait()
            raise
        except BaseException:
            future.cancel()  # Ctrl-C while waiting: the operation is cancelled on the loop too
            raise

    def stop(self) -> None:
        if self.stopped:
            return
        self.stopped = True
        self.loop.call_soon_threadsafe(self.loop.stop)
        if threading.current_thread() is not self.thread:
            self.thread.join(_CLOSE_TIMEOUT)


def _close(runner: _Loop, store: AsyncThreadStore) -> None:
    """Close ``store`` on its loop, then end the loop; for close(), garbage collection and exit.
    At exit, calls still running (in daemon threads: a save waiting for a row lock held
    elsewhere) are cancelled first, and the close is bounded by _EXIT_TIMEOUT: no one is left to
    take their results, and closing would wait for them (a program blocked that way took 10.6 s
    to exit). Without such calls the close lets the background indexer finish, as close() does."""
    runner.exiting = not threading.main_thread().is_alive()  # the interpreter is shutting down
    busy = runner.exiting and bool(runner.calls)
    for call in list(runner.calls) if busy else []:
        call.cancel()
    try:
        if runner.thread.is_alive():
            runner.submit(store.close()).result(_EXIT_TIMEOUT if busy else _CLOSE_TIMEOUT)
    except concurrent.futures.TimeoutError:
        if busy:
            return  # still busy (SQLite waiting out a lock): its daemon thread ends with the process
    except Exception:
        pass
    runner.stop()


async def _next(pages: AsyncGenerator[_T, None]) -> _T | None:
    return await anext(pages, None)


async def _aclose(pages: AsyncGenerator[Any, None]) -> None:
    await pages.aclose()


class ThreadStore:
    """A blocking :class:`threadstore.ThreadStore`: the same methods and arguments, each
    returning its result instead of a coroutine. ``export_threads`` is a plain generator of
    pages. ``engine`` and ``async_session`` are the async store's only (the driver objects are
    async): use ``store.async_store`` from async code if you need them."""

    def __init__(
        self,
        url: str | None = None,
        *,
        migrate: bool = True,
        read_only: bool = False,
        **settings: Unpack[SettingsKwargs],
    ) -> None:
        check_keywords(settings, "ThreadStore.__init__")
        self._store = AsyncThreadStore(url, migrate=migrate, read_only=read_only, **settings)
        self._loop = _Loop()
        self._finalizer = weakref.finalize(self, _close, self._loop, self._store)
        self._generation = forks.generation

    def _runner(self) -> _Loop:
        """The store's loop; in a process forked since it started, a new one (the parent's has
        no thread in the child: calls would wait for ever), on which the async store connects
        afresh."""
        if self._generation != forks.generation:
            with forks.lock:
                if self._generation != forks.generation:
                    old = self._loop
                    self._finalizer.detach()
                    forks.leave_behind(old)
                    if not old.stopped:
                        self._loop = _Loop()
                        self._finalizer = weakref.finalize(self, _close, self._loop, self._store)
                    self._generation = forks.generation
        return self._loop

    @classmethod
    def create(
        cls,
        url: str | None = None,
        *,
        migrate: bool = True,
        read_only: bool = False,
        **settings: Unpack[SettingsKwargs],
    ) -> ThreadStore:
        """A connected store (migrated unless ``migrate=False``), as ``ThreadStore.create``."""
        check_keywords(settings, "ThreadStore.create")
        store = cls(url, migrate=migrate, read_only=read_only, **settings)
        try:
            store.ping()
        except BaseException:
            store.close()
            raise
        return store

    def _run(self, coroutine: Coroutine[Any, Any, _T]) -> _T:
        return self._runner().run(coroutine)

    # -- lifecycle --------------------------------------------------------------------------

    @property
    def async_store(self) -> AsyncThreadStore:
        """The async store underneath; it belongs to this store's private event loop."""
        return self._store

    @property
    def event_loop(self) -> asyncio.AbstractEventLoop:
        """The private event loop the async store runs on (in this store's own thread)."""
        return self._runner().loop

    @property
    def backend(self) -> str:
        """``"memory"``, ``"sqlite"`` or ``"postgres"``."""
        return self._store.backend

    @property
    def database_url(self) -> str | None:
        """The database URL with its password masked; None for the in-memory store."""
        return self._store.database_url

    @property
    def read_only(self) -> bool:
        """Whether the store was opened with ``read_only=True``."""
        return self._store.read_only

    def __repr__(self) -> str:
        return f"<threadstore.sync.{repr(self._store)[1:]}"

    def close(self) -> None:
        """Release the connection(s) and end the store's thread. Idempotent."""
        self._runner()
        self._finalizer()

    def __enter__(self) -> ThreadStore:
        self.ping()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def ping(self) -> float:
        """Seconds one round trip to the database takes; StoreUnavailableError if none."""
        return self._run(self._store.ping())

    def migrate(self) -> builtins.list[int]:
        """Apply pending schema migrations; returns the versions applied."""
        return self._run(self._store.migrate())

    def schema_status(self) -> SchemaStatus:
        """The schema version applied and the migrations pending; changes nothing."""
        return self._run(self._store.schema_status())

    # -- writes -----------------------------------------------------------------------------

    def save(self, thread: Thread, file_store: FileStore | None = None) -> Thread:
        """Store the thread atomically, writing only what changed (``ThreadStore.save``)."""
        return self._run(self._store.save(thread, file_store))

    def append(
        self, thread_id: str, *messages: Message, file_store: FileStore | None = None, create: bool = False
    ) -> Thread:
        """Add messages after the stored ones of a thread without loading it (``create``: store
        the thread first when absent)."""
        return self._run(self._store.append(thread_id, *messages, file_store=file_store, create=create))

    def pop_message(self, thread_id: str) -> Message | None:
        """Remove the thread's newest stored message and return it; None when there is none."""
        return self._run(self._store.pop_message(thread_id))

    def get_or_create(self, thread_id: str) -> Thread:
        """The stored thread, or a new empty one with that id, stored now."""
        return self._run(self._store.get_or_create(thread_id))

    def delete(self, thread_id: str) -> bool:
        """Delete a thread with its messages and aliases; False if it did not exist."""
        return self._run(self._store.delete(thread_id))

    def delete_many(self, thread_ids: Iterable[str]) -> int:
        """Delete those threads; returns how many existed."""
        return self._run(self._store.delete_many(thread_ids))

    def delete_threads(
        self,
        older_than: timedelta,
        attributes: dict[str, Any] | None = None,
        dry_run: bool = False,
        *,
        batch_size: int = 500,
        progress: Callable[[int], None] | None = None,
    ) -> int:
        """Delete the threads not updated for ``older_than``, in batches; how many."""
        return self._run(
            self._store.delete_threads(
                older_than, attributes, dry_run, batch_size=batch_size, progress=progress
            )
        )

    def prune_messages(self, thread_id: str, keep_last: int = 200) -> int:
        """Delete all but the ``keep_last`` most recent messages of a thread; how many."""
        return self._run(self._store.prune_messages(thread_id, keep_last))

    def import_threads(
        self, threads: Iterable[Thread], file_store: FileStore | None = None
    ) -> builtins.list[str]:
        """Store threads exactly as given, skipping ids already stored; the ids stored."""
        return self._run(self._store.import_threads(threads, file_store))

    # -- reads ------------------------------------------------------------------------------

    def get(self, thread_id: str, *, last: int | None = None) -> Thread | None:
        """The thread with its messages (only its ``last`` most recent ones, if given), or None."""
        return self._run(self._store.get(thread_id, last=last))

    def get_messages(
        self, thread_id: str, limit: int = 50, before: int | None = None, after: int | None = None
    ) -> builtins.list[Message]:
        """A page of a thread's stored messages by sequence, in ascending order."""
        return self._run(self._store.get_messages(thread_id, limit, before, after))

    def list_threads(
        self, limit: int = 50, cursor: str | None = None, attributes: dict[str, Any] | None = None
    ) -> ThreadPage:
        """Thread summaries, newest ``updated_at`` first, a page at a time."""
        return self._run(self._store.list_threads(limit, cursor, attributes))

    def list(self, limit: int = 100, offset: int = 0) -> builtins.list[Thread]:
        """Threads, newest ``updated_at`` first."""
        return self._run(self._store.list(limit, offset))

    def list_recent(self, limit: int | None = None) -> builtins.list[Thread]:
        """Threads, newest ``updated_at`` first; None: all."""
        return self._run(self._store.list_recent(limit))

    def attachment_references(self, refs: Iterable[str] | None = None) -> set[str]:
        """The attachment ``file_id``/``storage_path`` values stored messages reference."""
        return self._run(self._store.attachment_references(refs))

    def export_threads(
        self, *, page_size: int = 200, after: str | None = None
    ) -> Iterator[builtins.list[ThreadRecord]]:
        """Every stored thread with its messages and aliases, in pages, in id order."""
        pages = self._store.export_threads(page_size=page_size, after=after)
        try:
            while (page := self._run(_next(pages))) is not None:
                yield page
        finally:
            if not self._runner().stopped:
                self._run(_aclose(pages))

    # -- searches and lookups ---------------------------------------------------------------

    def search_by_title(
        self,
        text: str,
        limit: int | None = 100,
        *,
        offset: int = 0,
        attributes: dict[str, Any] | None = None,
    ) -> builtins.list[Thread]:
        """Threads whose title holds ``text``, any case (and whose attributes hold ``attributes``)."""
        return self._run(self._store.search_by_title(text, limit, offset=offset, attributes=attributes))

    def search_by_content(
        self, pattern: str, limit: int | None = 100, *, offset: int = 0, literal: bool = False
    ) -> builtins.list[Thread]:
        """Threads with a message matching ``pattern`` (a regular expression unless ``literal``)."""
        return self._run(self._store.search_by_content(pattern, limit, offset=offset, literal=literal))

    def search_by_platform(
        self,
        platform_name: str,
        reference: str | int | float | bool,
        limit: int | None = 100,
        *,
        offset: int = 0,
    ) -> builtins.list[Thread]:
        """Threads whose ``platforms[platform_name]`` has the value ``reference``."""
        return self._run(self._store.search_by_platform(platform_name, reference, limit, offset=offset))

    def find_by_attributes(
        self, attributes: dict[str, Any], limit: int | None = 100, *, offset: int = 0
    ) -> builtins.list[Thread]:
        """Threads whose attributes hold every given key with an equal value."""
        return self._run(self._store.find_by_attributes(attributes, limit, offset=offset))

    def find_by_platform(
        self, platform_name: str, properties: dict[str, Any], limit: int | None = 100, *, offset: int = 0
    ) -> builtins.list[Thread]:
        """Threads whose platform (or source) holds every property with an equal value."""
        return self._run(self._store.find_by_platform(platform_name, properties, limit, offset=offset))

    def find_by_source(
        self, source_name: str, properties: dict[str, Any], limit: int | None = 100, *, offset: int = 0
    ) -> builtins.list[Thread]:
        """``find_by_platform`` under its older name."""
        return self._run(self._store.find_by_source(source_name, properties, limit, offset=offset))

    def search(
        self, query: str, limit: int = 20, offset: int = 0, *, attributes: dict[str, Any] | None = None
    ) -> builtins.list[SearchHit]:
        """Ranked full-text search of message content."""
        return self._run(self._store.search(query, limit, offset, attributes=attributes))

    def find_messages_by_attribute(
        self, path: str | Sequence[str], value: Any, limit: int | None = 100, *, offset: int = 0
    ) -> builtins.list[Message]:
        """Messages whose attribute (or platform) at ``path`` equals ``value``."""
        return self._run(self._store.find_messages_by_attribute(path, value, limit, offset=offset))

    def get_thread_by_message_id(self, message_id: str) -> Thread | None:
        """The thread holding that message, or None."""
        return self._run(self._store.get_thread_by_message_id(message_id))

    # -- aliases, statistics ----------------------------------------------------------------

    def save_thread_alias(self, thread_id: str, alias: str) -> None:
        """Name the thread ``alias``; NotFoundError when the thread does not exist."""
        return self._run(self._store.save_thread_alias(thread_id, alias))

    def get_by_alias(self, alias: str) -> Thread | None:
        """The thread ``alias`` names, or None."""
        return self._run(self._store.get_by_alias(alias))

    def delete_thread_alias(self, alias: str) -> bool:
        """Forget an alias; False if it was unknown."""
        return self._run(self._store.delete_thread_alias(alias))

    def get_thread_aliases(self, thread_id: str) -> builtins.list[str]:
        """The thread's aliases, in the order they were saved."""
        return self._run(self._store.get_thread_aliases(thread_id))

    def get_usage_stats(self) -> dict[str, Any]:
        """Counts and token usage, computed by the database in one call."""
        return self._run(self._store.get_usage_stats())
