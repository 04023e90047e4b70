"""ThreadStore: the public facade. URL -> backend, lazy connection, validation, save planning.

It holds no SQL and no driver calls. A save is planned here: the Thread reports which messages
are new, edited or removed since it was loaded from (or last saved to) this store; each changed
message is encoded once and checked to read back unchanged, so every backend stores exactly the
same JSON and rejects the same values. System messages are never written. Attachments are
written as metadata only: their bytes go to a FileStore first (see files.storing).
"""

from __future__ import annotations

import builtins
import contextlib
import dataclasses
import re
import sys
import time
import warnings
import weakref
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Iterable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from datetime import datetime, timedelta
from types import TracebackType
from typing import TYPE_CHECKING, Any

import msgspec

from threadstore import cursors, fulltext, matching
from threadstore.backends import (
    AppendPlan,
    Backend,
    ByAttributes,
    ByContent,
    ByPlatform,
    ByPlatformReference,
    ByTitle,
    MessageSearch,
    SavePlan,
    SchemaStatus,
    ThreadCopy,
    ThreadSearch,
    UsageCounts,
    open_backend,
)
from threadstore.config import DatabaseConfig, configure
from threadstore.errors import NotFoundError, ReadOnlyError, StoreClosedError, ThreadStoreError
from threadstore.models import (
    Attachment,
    Changes,
    Message,
    SearchHit,
    Thread,
    ThreadPage,
    ThreadSummary,
    _set_field,
    _unique_ids,
    as_utc,
    decoding_stored,
    utcnow,
)
from threadstore.transfer import AliasRecord, ThreadRecord

if TYPE_CHECKING:
    import asyncio

    from threadstore.files import FileStore


def _checked_float(text: str) -> float:
    """A float from JSON text, refusing those PostgreSQL's jsonb would give back changed: it
    keeps numbers as decimals, so 1e16 comes back as an int and -0.0 as 0.0."""
    if text == "-0.0" or ("e" in text and "e-" not in text):
        raise ValueError(
            f"the float {text} is refused on every backend: PostgreSQL would give it back changed "
            "(floats of 1e16 and above as integers, -0.0 as 0.0)"
        )
    return float(text)


_encode = msgspec.json.Encoder().encode
# Decoders that check what was encoded reads back unchanged, on every backend.
_decode_any = msgspec.json.Decoder(float_hook=_checked_float).decode
_decode_message = msgspec.json.Decoder(Message, float_hook=_checked_float).decode
_decode_thread = decoding_stored(msgspec.json.Decoder(Thread).decode)
_decode_threads = decoding_stored(msgspec.json.Decoder(list[Thread]).decode)
_decode_messages = decoding_stored(msgspec.json.Decoder(list[Message]).decode)
_decode_summaries = decoding_stored(msgspec.json.Decoder(list[ThreadSummary]).decode)
_decode_usage = msgspec.json.Decoder(UsageCounts).decode
_decode_page = msgspec.json.Decoder(list[tuple[ThreadRecord, list[AliasRecord]]]).decode
_MAX_SEQUENCE = 2**31 - 1  # the sequence columns are 32-bit

# An escaped NUL in encoded JSON: \u0000 after an even number of backslashes.
_JSON_NUL = re.compile(rb"(?<!\\)(?:\\\\)*\\u0000")
_NUL = "a NUL character (\\x00), which PostgreSQL cannot store (refused on every backend alike)"
_NOT_JSON = (
    "holds a value JSON would not give back unchanged "
    "(a tuple, set, bytes, datetime, non-string key or NaN, for example)"
)


MAX_DEPTH = 100  # how deep dicts and lists may nest in a field, as in MongoDB's documents
# Deeper JSON is refused on every backend alike: near 1,000 levels SQLite's JSON functions stop
# and encoding, decoding or comparing it exhausts Python's recursion limit.
_TOO_DEEP = f"nests dicts and lists more than {MAX_DEPTH} levels deep"
_CONTAINERS = (dict, list, tuple, msgspec.Struct)


def _too_deep(value: Any) -> bool:
    """Whether dicts and lists nest in ``value`` (in each field of a Message) more than MAX_DEPTH
    levels deep; walked one level at a time, without recursion."""
    start = _children(value) if isinstance(value, msgspec.Struct) else [value]
    level = [item for item in start if isinstance(item, _CONTAINERS)]
    for _ in range(MAX_DEPTH):
        level = [
            item for container in level for item in _children(container) if isinstance(item, _CONTAINERS)
        ]
        if not level:
            return False
    return True


def _children(container: Any) -> Any:
    if isinstance(container, dict):
        return container.values()
    if isinstance(container, msgspec.Struct):
        return [getattr(container, f) for f in container.__struct_fields__]
    return container


def _round_trips(value: Any) -> bool:
    """Whether JSON surely gives ``value`` back equal: dicts with string keys, lists, strings,
    ints, bools, None and plain floats only. False means "decode it and compare" (a tuple, a
    Struct, a float jsonb would change, ...). Walking is ~20x cheaper than that decoding."""
    stack = [value]
    pop, push = stack.pop, stack.extend
    while stack:
        item = pop()
        kind = type(item)
        if kind is str or kind is int or kind is bool or item is None:
            continue
        if kind is dict:
            for key in item:
                if type(key) is not str:
                    return False
            push(item.values())
        elif kind is list:
            push(item)
        elif kind is not float or not ((item == 0.0 and str(item) == "0.0") or 1e-4 <= abs(item) < 1e15):
            return False  # msgspec writes these without an exponent: _checked_float accepts them
    return True


def _message_round_trips(message: Message) -> bool:
    """_round_trips for a Message (after _validate), which also decodes to Message's field types:
    text fields hold strings, content parts and tool calls are dicts, reactions lists of strings."""
    if message.attachments or (message.sequence is not None and type(message.sequence) is not int):
        return False
    for text in (message.reasoning_content, message.name, message.tool_call_id, message.thread_id):
        if text is not None and type(text) is not str:
            return False
    content, calls = message.content, message.tool_calls
    if type(content) is list:
        for part in content:
            if type(part) is not dict:
                return False
    if calls is not None:
        for call in calls:
            if type(call) is not dict:
                return False
    for users in message.reactions.values():
        if type(users) is not list:
            return False
        for user in users:
            if type(user) is not str:
                return False
    return (
        type(message.id) is str
        and type(message.role) is str
        and _round_trips(
            [
                content,
                calls,
                message.attributes,
                message.source,
                message.platforms,
                message.metrics,
                message.reactions,
            ]
        )
    )


def _checked_json(value: Any, what: str, decode: Callable[[bytes], Any]) -> bytes:
    """``value`` encoded, after checking that ``decode`` gives it back equal (on every backend)."""
    try:
        raw = _encode(value)
    except TypeError as exc:
        raise TypeError(f"{what} cannot be stored as JSON: {exc}") from None
    except (ValueError, OverflowError) as exc:
        raise ValueError(f"{what} cannot be stored as JSON: {exc}") from None
    except RecursionError:
        raise ValueError(f"{what} {_TOO_DEEP}") from None
    # Counting brackets (inside strings too) bounds the depth: only a document with more of them
    # than MAX_DEPTH is walked.
    if raw.count(b"{") + raw.count(b"[") > MAX_DEPTH and _too_deep(value):
        if isinstance(value, Message):  # name the field
            what = next(
                f"Message.{f} of {what}" for f in value.__struct_fields__ if _too_deep(getattr(value, f))
            )
        raise ValueError(f"{what} {_TOO_DEEP}")
    plain = _message_round_trips(value) if isinstance(value, Message) else _round_trips(value)
    if not plain:
        _check_round_trip(value, raw, what, decode)
    if b"u0000" in raw and _JSON_NUL.search(raw):  # the substring test first: 50x faster
        raise ValueError(f"{what} contains {_NUL}")
    return raw


def _check_round_trip(value: Any, raw: bytes, what: str, decode: Callable[[bytes], Any]) -> None:
    try:
        back = decode(raw)
    except msgspec.ValidationError as exc:
        raise ValueError(f"{what} is invalid: {exc}") from None
    if back != value:
        if isinstance(value, Message):  # name the field
            what = next(
                f"Message.{f} of {what}"
                for f in value.__struct_fields__
                if getattr(back, f) != getattr(value, f)
            )
        raise ValueError(f"{what} {_NOT_JSON}")


def _json(value: Any, field: str) -> bytes:
    """A thread field encoded; ValueError/TypeError naming ``field`` unless it reads back equal."""
    return _checked_json(value, field, _decode_any)


def _message_doc(message: Message, stored: Mapping[int, Attachment]) -> bytes:
    """One message as a JSON document, checked to decode back to an equal Message. Attachments
    are written as ``stored`` has them (after their bytes went to a FileStore), without content."""
    message._validate()
    _check_id(message.id, "Message.id")
    doc = message
    if message.attachments:
        attachments = [
            msgspec.structs.replace(stored.get(id(a), a), content=None) for a in message.attachments
        ]
        doc = msgspec.structs.replace(message, attachments=attachments)
    return _checked_json(doc, f"message {message.id!r}", _decode_message)


def _message_docs(messages: list[Message], stored: Mapping[int, Attachment]) -> bytes:
    if not messages:
        return b"[]"
    # One copy of the documents: b",".join gives a single document back as it is.
    return b"".join([b"[", b",".join([_message_doc(m, stored) for m in messages]), b"]"])


def _pending_attachments(messages: Iterable[Message]) -> builtins.list[Attachment]:
    """The attachments of ``messages`` whose bytes must go to a FileStore before the messages are
    written (status other than "stored"), after checking every attachment's metadata."""
    pending = []
    for message in messages:
        if not isinstance(message.attachments, list):
            continue  # message._validate() names the field
        for attachment in message.attachments:
            what = f"attachment of message {message.id!r}"
            if not isinstance(attachment, Attachment):
                raise TypeError(f"an {what} is a {type(attachment).__name__}, not an Attachment")
            name = attachment.filename
            if not isinstance(name, str) or not name or "\x00" in name:
                raise ValueError(
                    f"an {what} has the filename {name!r}: it must be a non-empty string "
                    "without NUL characters"
                )
            if attachment.status == "stored":
                if not (attachment.storage_path or attachment.file_id):
                    raise ValueError(f"{what} {name!r} has status 'stored' but no file_id or storage_path")
                continue
            if attachment.content is None:
                raise ValueError(f"{what} {name!r} is {attachment.status!r} but holds no content to store")
            pending.append(attachment)
    return pending


def _record_stored(pending: builtins.list[Attachment], stored: Mapping[int, Attachment]) -> None:
    """Give the caller's attachments what was stored (they keep their content)."""
    for attachment in pending:
        copy = stored[id(attachment)]
        for field in Attachment.__struct_fields__:
            if field != "content":
                setattr(attachment, field, getattr(copy, field))


def _no_file_store(pending: builtins.list[Attachment]) -> ValueError:
    return ValueError(
        f"{len(pending)} attachment(s) (the first: {pending[0].filename[:200]!r}) must be stored "
        "before the messages are saved: pass file_store=FileStore (await FileStore.create(...))"
    )


MAX_ID_LENGTH = 512  # characters: at most 2,048 bytes in UTF-8, inside PostgreSQL's btree row limit (2,704)


def _check_id(value: object, what: str = "thread_id") -> str:
    if not isinstance(value, str):
        raise TypeError(f"{what} must be a string, got {type(value).__name__}")
    if not value:
        raise ValueError(f"{what} must not be empty")
    if len(value) > MAX_ID_LENGTH:
        raise ValueError(f"{what} is {len(value)} characters long; ids are at most {MAX_ID_LENGTH}")
    matching.check_text(value, what)
    return value


MAX_ALIAS_LENGTH = 256


def _check_alias(alias: object) -> str:
    _check_id(alias, "alias")
    assert isinstance(alias, str)
    if len(alias) > MAX_ALIAS_LENGTH:
        raise ValueError(f"an alias is at most {MAX_ALIAS_LENGTH} characters; got {len(alias)}")
    return alias


def _check_object(value: object, what: str) -> bytes:
    """A dict of search values, as checked JSON."""
    if not isinstance(value, dict):
        raise TypeError(f"{what} must be a dict, got {type(value).__name__}")
    return _json(value, what)


def _key_path(path: object) -> tuple[str, builtins.list[str]]:
    """(column, keys) of find_messages_by_attribute's path."""
    if isinstance(path, str):
        keys = path.split(".")
    elif isinstance(path, list | tuple) and all(isinstance(key, str) for key in path):
        keys = builtins.list(path)
    else:
        raise TypeError(f"path must be a dotted string or a list of keys, got {type(path).__name__}")
    if not keys or not all(keys):
        raise ValueError(f"path {path!r:.200} has an empty key")
    for key in keys:
        _check_id(key, "a key of path")
    if keys[0] in ("attributes", "platforms") and len(keys) > 1:
        return keys[0], keys[1:]
    return "attributes", keys


def _check_file_store(file_store: object) -> None:
    if file_store is not None:
        # Imported when a file store is used: threadstore.files imports asyncio (import time).
        from threadstore.files import FileStore

        if not isinstance(file_store, FileStore):
            raise TypeError(f"file_store must be a FileStore, got {type(file_store).__name__}")


def _storing(pending: Any, file_store: FileStore, references: Any) -> Any:
    from threadstore.files import storing

    return storing(pending, file_store, references)


_MAX_COUNT = 2**62  # fits every backend's 64-bit LIMIT/OFFSET


MAX_PAGE = 10_000  # messages or thread summaries one bounded read returns at most
_PAST_LAST = 2**31  # above every sequence (32-bit columns): "before" when none is given


def _check_page(value: object, what: str, low: int, high: int = MAX_PAGE) -> None:
    if not isinstance(value, int) or isinstance(value, bool):
        raise TypeError(f"{what} must be an int, got {type(value).__name__}")
    if not low <= value <= high:
        raise ValueError(f"{what} must be between {low} and {high}, got {value}")


def _check_count(value: object, what: str, *, allow_none: bool = False) -> None:
    if value is None and allow_none:
        return
    if not isinstance(value, int) or isinstance(value, bool):
        raise TypeError(f"{what} must be an int, got {type(value).__name__}")
    if not 0 <= value <= _MAX_COUNT:
        raise ValueError(f"{what} must be between 0 and {_MAX_COUNT}, got {value}")


_CLOSE_TIMEOUT = 5.0  # seconds the end of an event loop waits for an unclosed store to close


def _running_loop() -> asyncio.AbstractEventLoop:
    """The running event loop (asyncio is imported by then; the store does not import it)."""
    loop: asyncio.AbstractEventLoop = sys.modules["asyncio"].get_running_loop()
    return loop


async def _close_when_loop_ends(
    store: weakref.ref[ThreadStore], backend: Backend
) -> AsyncGenerator[None, None]:
    """Started when a store connects, so that its event loop finalises it when the loop shuts
    down (``asyncio.run`` does, also after an exception), or when the store is garbage-collected:
    then it closes the connections a program did not close, so the program exits, quietly.
    The store itself closes it first when closed, or when it moves to another loop."""
    try:
        yield
    finally:
        owner = store()
        if owner is None or owner._backend is backend:
            if owner is not None:  # a later event loop connects afresh
                owner._backend = owner._loop = owner._watcher = None
            when = "was garbage-collected" if owner is None else "outlived its event loop"
            if owner is None or owner._warn_unclosed:
                warnings.warn(
                    f"unclosed ThreadStore ({backend.name}) {when}: its connections were "
                    "closed for it; call close() or use `async with`",
                    ResourceWarning,
                    stacklevel=1,
                )
            import asyncio

            with contextlib.suppress(Exception):
                await asyncio.wait_for(backend.close(), _CLOSE_TIMEOUT)
            backend.abandon()  # a no-op after a close that finished in time


def _stop_watching(watcher: AsyncGenerator[None, None] | None) -> None:
    """Finalise a watcher whose store has let go of its backend: its ``finally`` then returns
    without awaiting, so this runs it to the end at once, from any loop or none."""
    if watcher is not None:
        with contextlib.suppress(StopIteration, RuntimeError):
            watcher.aclose().send(None)


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

    _warn_unclosed = True  # False for a store its owner closes (threadstore.testing's fixture)

    def __init__(
        self,
        url: str | None = None,
        *,
        migrate: bool = True,
        pool_size: int | None = None,
        max_overflow: int | None = None,
        pool_timeout: float | None = None,
        pool_recycle: float | None = None,
        command_timeout: float | None = None,
        statement_cache_size: int | None = None,
        echo: bool | None = None,
        connect_timeout: float | None = None,
        liveness_interval: float | None = None,
        read_only: bool = False,
    ) -> None:
        config = configure(
            url,
            pool_size=pool_size,
            max_overflow=max_overflow,
            pool_timeout=pool_timeout,
            pool_recycle=pool_recycle,
            command_timeout=command_timeout,
            statement_cache_size=statement_cache_size,
            echo=echo,
            connect_timeout=connect_timeout,
            liveness_interval=liveness_interval,
        )
        self._config: DatabaseConfig = dataclasses.replace(config, read_only=bool(read_only))
        # A private in-memory database gets its schema all the same: it is empty, and stays so.
        private = config.backend == "memory" or config.path == ":memory:"
        self._migrate_on_open = migrate and (private or not read_only)
        self._backend: Backend | None = None
        self._loop: asyncio.AbstractEventLoop | None = None  # the one the backend belongs to
        self._opening: tuple[asyncio.AbstractEventLoop, asyncio.Lock] | None = None
        self._watcher: AsyncGenerator[None, None] | None = None
        self._closed = False
        self._last_alias_time: datetime | None = None
        # id(thread) -> [lock, saves waiting or running]: one save of a Thread object at a time
        self._saving: dict[int, builtins.list[Any]] = {}

    @classmethod
    async def create(
        cls,
        url: str | None = None,
        *,
        migrate: bool = True,
        pool_size: int | None = None,
        max_overflow: int | None = None,
        pool_timeout: float | None = None,
        pool_recycle: float | None = None,
        command_timeout: float | None = None,
        statement_cache_size: int | None = None,
        echo: bool | None = None,
        connect_timeout: float | None = None,
        liveness_interval: float | None = None,
        read_only: bool = False,
    ) -> ThreadStore:
        """A connected store; raises ThreadStoreError (a RuntimeError) when it cannot connect."""
        store = cls(
            url,
            migrate=migrate,
            pool_size=pool_size,
            max_overflow=max_overflow,
            pool_timeout=pool_timeout,
            pool_recycle=pool_recycle,
            command_timeout=command_timeout,
            statement_cache_size=statement_cache_size,
            echo=echo,
            connect_timeout=connect_timeout,
            liveness_interval=liveness_interval,
            read_only=read_only,
        )
        await store._ready()
        return store

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
        return None if self._backend is None else self._backend.engine

    @property
    def async_session(self) -> Callable[[], AbstractAsyncContextManager[Any]] | None:
        """A factory of driver connections inside a transaction, for code written against the
        older API: ``async with store.async_session() as conn:`` yields an asyncpg
        ``Connection`` or the aiosqlite ``Connection`` (not a SQLAlchemy session), commits when
        the block ends and rolls back on an exception. None for the in-memory store.
        On SQLite the block holds the store's only connection: no store call may run inside it.
        """
        return None if self._config.backend == "memory" else self._session

    @contextlib.asynccontextmanager
    async def _session(self) -> AsyncIterator[Any]:
        backend = await self._ready()
        async with backend.session() as conn:
            yield conn

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open" if self._backend else "not connected"
        return f"<ThreadStore {self.backend} {self.database_url or ''} ({state})>".replace("  ", " ")

    @property
    def read_only(self) -> bool:
        """Whether the store was opened with ``read_only=True``."""
        return self._config.read_only

    async def _writer(self, operation: str) -> Backend:
        """The backend, for an operation that writes; ReadOnlyError on a read-only store."""
        if self._config.read_only:
            raise ReadOnlyError(f"{operation}() writes, and {self!r} was opened with read_only=True")
        return await self._ready()

    async def _ready(self) -> Backend:
        backend = self._backend
        if backend is not None and self._loop is _running_loop():
            return backend
        return await self._connect()

    async def _connect(self) -> Backend:
        """Connect, once however many first operations start together; and again in a later
        event loop when the one the connections belong to has ended."""
        import asyncio  # here: importing it is half of `import threadstore` (bench: ~40 ms)

        loop = asyncio.get_running_loop()
        if self._backend is not None and self._loop is not loop:
            self._leave_loop(self._backend, loop)
            if self._backend is not None:
                return self._backend
        if self._closed:
            raise StoreClosedError("this ThreadStore is closed")
        if self._opening is None or self._opening[0] is not loop:
            self._opening = (loop, asyncio.Lock())
        async with self._opening[1]:  # ten first operations at once still connect once
            if self._backend is None:
                if self._closed:
                    raise StoreClosedError("this ThreadStore is closed")
                backend = open_backend(self._config)
                await backend.open()
                try:
                    if self._migrate_on_open:
                        await backend.migrate()
                    if self._closed:  # close() was called while this was connecting
                        raise StoreClosedError("this ThreadStore is closed")
                    if backend.loop_bound:
                        watcher = _close_when_loop_ends(weakref.ref(self), backend)
                        await anext(watcher)  # now the loop knows it: it finalises it at its end
                        self._watcher = watcher
                except BaseException:
                    await backend.close()
                    raise
                self._backend, self._loop = backend, loop
            return self._backend

    def _leave_loop(self, backend: Backend, loop: asyncio.AbstractEventLoop) -> None:
        """The store is used in ``loop``, not the event loop its connections belong to."""
        old, self._loop = self._loop, loop
        if not backend.loop_bound:  # the in-memory store: nothing belongs to a loop
            return
        if old is not None and old.is_running():
            self._loop = old
            raise ThreadStoreError(
                f"{self!r} is in use by an event loop running in another thread; a ThreadStore "
                "serves one event loop at a time: create one store per thread"
            )
        # That loop was closed without finalising its async generators (asyncio.run would have):
        # its connections cannot be closed from here, so they are dropped and new ones opened.
        self._let_go()
        backend.abandon()

    def _let_go(self) -> Backend | None:
        """Forget the backend (returned, for the caller to close) and finalise its watcher."""
        backend, self._backend = self._backend, None
        watcher, self._watcher = self._watcher, None
        _stop_watching(watcher)
        return backend

    async def migrate(self) -> builtins.list[int]:
        """Apply pending schema migrations; returns the versions applied."""
        return await (await self._writer("migrate")).migrate()

    async def schema_status(self) -> SchemaStatus:
        """The schema version applied and the migrations pending (``"0002_name"``); changes
        nothing. Raises SchemaVersionError when the database is newer than this code."""
        return await (await self._ready()).schema_status()

    async def close(self) -> None:
        """Release the connection(s). Further use raises StoreClosedError. Idempotent.

        A program that never calls it still exits cleanly: the connections are closed when the
        event loop that opened them ends (``asyncio.run`` returning or raising), with a
        ResourceWarning (shown only when warnings are enabled), as asyncio does for its own.
        """
        self._closed = True
        backend = self._let_go()
        old = self._loop
        if backend is None:
            return
        if old is None or old is _running_loop() or not backend.loop_bound:
            await backend.close()
        elif old.is_running():  # another thread's loop: close it there
            import asyncio

            await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(backend.close(), old))
        else:
            backend.abandon()  # opened in an event loop that has ended: nothing to wait for

    async def ping(self) -> float:
        """Seconds one round trip to the database takes (connecting first if needed); raises
        StoreUnavailableError when it does not answer. 0-ish for the in-memory store."""
        backend = await self._ready()
        started = time.perf_counter()
        await backend.ping()
        return time.perf_counter() - started

    async def __aenter__(self) -> ThreadStore:
        await self._ready()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    # -- writes ---------------------------------------------------------------------------

    def _plan(
        self,
        thread: Thread,
        changes: Changes | None = None,
        stored: Mapping[int, Attachment] | None = None,
        *,
        synced: bool = False,
    ) -> SavePlan:
        thread._validate()
        _check_id(thread.id, "Thread.id")
        matching.check_text(thread.title, "Thread.title")
        return SavePlan(
            thread_id=thread.id,
            title=thread.title,
            attributes=_json(thread.attributes, "Thread.attributes"),
            platforms=_json(thread.platforms, "Thread.platforms"),
            source=None if thread.source is None else _json(thread.source, "Thread.source"),
            platform_values=_encode(matching.platform_index(thread.platforms)),
            created_at=thread.created_at,
            updated_at=thread.updated_at,
            new=_message_docs(changes.new, stored or {}) if changes else b"[]",
            new_count=len(changes.new) if changes else 0,
            edited=_message_docs(changes.edited, stored or {}) if changes else b"[]",
            removed=changes.removed if changes else [],
            synced=synced,
        )

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
        _check_file_store(file_store)
        backend = await self._writer("save")
        async with self._one_save_at_a_time(thread):
            return await self._save_changes(thread, backend, file_store)

    @contextlib.asynccontextmanager
    async def _one_save_at_a_time(self, thread: Thread) -> AsyncIterator[None]:
        """Saves of one Thread object run one after the other: each takes its changes once the
        one before has recorded what it stored, so messages added or edited while a save runs go
        to the next one, none is written twice and the bookkeeping never goes back in time."""
        import asyncio

        key = id(thread)  # the entry lives only while the thread is being saved
        entry = self._saving.get(key)
        if entry is None:
            entry = self._saving[key] = [asyncio.Lock(), 0]
        entry[1] += 1
        try:
            async with entry[0]:
                yield
        finally:
            entry[1] -= 1
            if not entry[1]:
                del self._saving[key]

    async def _save_changes(self, thread: Thread, backend: Backend, file_store: FileStore | None) -> Thread:
        changes = thread._changes(backend)
        pending = _pending_attachments([*changes.new, *changes.edited])
        if not pending:
            return await self._save(thread, backend, changes, {})
        if file_store is None:
            raise _no_file_store(pending)
        async with _storing(pending, file_store, backend.attachment_references) as stored:
            await self._save(thread, backend, changes, stored)
        _record_stored(pending, stored)
        return thread

    async def _save(
        self, thread: Thread, backend: Backend, changes: Changes, stored: Mapping[int, Attachment]
    ) -> Thread:
        plan = self._plan(thread, changes, stored, synced=thread.__dict__.get("_origin") is backend)
        thread._begin_save(changes)
        try:
            sequences = await backend.save(plan)
            if sequences is None:
                raise NotFoundError(
                    f"thread {thread.id!r} was deleted after this Thread was loaded from (or saved "
                    "to) this store; nothing was written. To store it again with the messages it "
                    "holds, save a copy: store.save(copy.copy(thread))"
                )
        except BaseException:
            thread._abort_save(changes)
            raise
        for message in changes.new:
            _set_field(message, "thread_id", thread.id)
        for message in changes.new:
            sequence = sequences.get(message.id)
            if sequence is not None:
                _set_field(message, "sequence", sequence)
        thread._mark_synced(backend, changes)
        return thread

    async def append(self, thread_id: str, *messages: Message, file_store: FileStore | None = None) -> Thread:
        """Add messages after the stored ones of a thread without loading it.

        Returns the thread's header (id, title, attributes, times) whose ``messages`` are just
        the appended ones, with their stored sequences; saving it later leaves the others be.
        Raises NotFoundError when the thread does not exist. Pending attachments are stored in
        ``file_store`` first, as by save().
        """
        _check_id(thread_id)
        _check_file_store(file_store)
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
        pending = _pending_attachments(batch)
        if pending and file_store is None:
            raise _no_file_store(pending)
        backend = await self._writer("append")
        if pending and file_store is not None:
            async with _storing(pending, file_store, backend.attachment_references) as stored:
                header, sequences = await self._append(backend, thread_id, batch, stored)
            _record_stored(pending, stored)
        else:
            header, sequences = await self._append(backend, thread_id, batch, {})
        thread = _decode_thread(header)
        for message in batch:
            _set_field(message, "sequence", sequences[message.id])
            _set_field(message, "thread_id", thread_id)
        thread.messages = batch
        thread._mark_synced(backend)
        return thread

    @staticmethod
    async def _append(
        backend: Backend, thread_id: str, batch: builtins.list[Message], stored: Mapping[int, Attachment]
    ) -> tuple[bytes, dict[str, int]]:
        plan = AppendPlan(
            thread_id=thread_id, messages=_message_docs(batch, stored), count=len(batch), updated_at=utcnow()
        )
        result = await backend.append(plan)
        if result is None:
            raise NotFoundError(f"no thread {thread_id!r} to append to")
        return result

    async def get_or_create(self, thread_id: str) -> Thread:
        """The stored thread, or a new empty one with that id, stored now."""
        thread = await self.get(thread_id)
        if thread is not None:
            return thread
        backend = await self._writer("get_or_create")
        await backend.create_if_absent(self._plan(Thread(id=thread_id)))
        thread = await self.get(thread_id)
        if thread is None:  # deleted again in between
            raise NotFoundError(f"thread {thread_id!r} vanished while it was being created")
        return thread

    async def delete(self, thread_id: str) -> bool:
        """Delete a thread with its messages and aliases; False if it did not exist."""
        _check_id(thread_id)
        return await (await self._writer("delete")).delete(thread_id)

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
        _check_page(batch_size, "batch_size", 1)
        wanted = None if attributes is None else _check_object(attributes, "attributes")
        backend = await (self._ready() if dry_run else self._writer("delete_threads"))
        cutoff = utcnow() - older_than
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
        _check_id(thread_id)
        _check_count(keep_last, "keep_last")
        backend = await self._writer("prune_messages")
        deleted = await backend.prune_messages(thread_id, keep_last)
        if deleted is None:
            raise NotFoundError(f"no thread {thread_id!r}")
        return deleted

    async def delete_many(self, thread_ids: Iterable[str]) -> int:
        """Delete those threads; returns how many existed. Unknown ids are ignored."""
        if isinstance(thread_ids, str):
            raise TypeError("delete_many() takes a list of thread ids, not one string")
        ids = [_check_id(i) for i in thread_ids]
        if not ids:
            return 0
        return await (await self._writer("delete_many")).delete_many(builtins.list(dict.fromkeys(ids)))

    # -- reads ----------------------------------------------------------------------------

    async def get(self, thread_id: str, *, last: int | None = None) -> Thread | None:
        """The thread with all its messages, or None.

        With ``last``, only its ``last`` most recent messages (0 to MAX_PAGE). Saving such a
        partial thread writes what changed and never deletes the messages it did not load.
        """
        _check_id(thread_id)
        if last is None:
            backend = await self._ready()
            return self._thread(backend, await backend.get(thread_id))
        _check_page(last, "last", 0)
        backend = await self._ready()
        return self._thread(backend, await backend.get_messages(thread_id, last, _PAST_LAST, None))

    async def get_messages(
        self, thread_id: str, limit: int = 50, before: int | None = None, after: int | None = None
    ) -> builtins.list[Message]:
        """A page of a thread's stored messages, in ascending sequence order, found by sequence.

        With ``after``, the first ``limit`` messages whose sequence is above it (and below
        ``before``, when given); otherwise the last ``limit`` below ``before``, or the last
        ``limit`` of the thread. ``before=page[0].sequence`` walks back,
        ``after=page[-1].sequence`` forward. NotFoundError for a missing thread; ``limit`` is 1
        to MAX_PAGE."""
        _check_id(thread_id)
        _check_page(limit, "limit", 1)
        for value, what in ((before, "before"), (after, "after")):
            if value is not None:
                _check_page(value, what, 0, _PAST_LAST)
        backend = await self._ready()
        doc = await backend.get_messages(thread_id, limit, _PAST_LAST if before is None else before, after)
        if doc is None:
            raise NotFoundError(f"no thread {thread_id!r}")
        return _decode_thread(doc).messages

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
        _check_page(limit, "limit", 1)
        wanted = None if attributes is None else _check_object(attributes, "attributes")
        after = None if cursor is None else cursors.decode(cursor, attributes)
        backend = await self._ready()
        summaries = _decode_summaries(await backend.list_threads(limit + 1, after, wanted))
        if len(summaries) <= limit:
            return ThreadPage(threads=summaries)
        last = summaries[limit - 1]
        return ThreadPage(
            threads=summaries[:limit], next_cursor=cursors.encode(last.updated_at, last.id, attributes)
        )

    async def list(self, limit: int = 100, offset: int = 0) -> builtins.list[Thread]:
        """Threads with their messages, newest ``updated_at`` first (id breaks ties)."""
        _check_count(limit, "limit")
        _check_count(offset, "offset")
        return await self._list(limit, offset)

    async def list_recent(self, limit: int | None = None) -> builtins.list[Thread]:
        """The most recently updated threads, newest first; all of them when limit is None."""
        _check_count(limit, "limit", allow_none=True)
        return await self._list(limit, 0)

    async def attachment_references(self, refs: Iterable[str] | None = None) -> set[str]:
        """The ``storage_path`` and ``file_id`` values held by the attachments of stored messages
        (only those among ``refs`` when given). Reads every message with attachments: meant for
        FileStore maintenance (files.collect_garbage), not for request paths."""
        if isinstance(refs, str):
            raise TypeError("attachment_references() takes a list of references, not one string")
        if refs is None:
            return await (await self._ready()).attachment_references(None)
        wanted = builtins.list(dict.fromkeys(_check_id(r, "reference") for r in refs))
        if not wanted:
            return set()
        return await (await self._ready()).attachment_references(wanted)

    async def _list(self, limit: int | None, offset: int) -> builtins.list[Thread]:
        backend = await self._ready()
        return self._threads(backend, await backend.list(limit, offset))

    @staticmethod
    def _threads(backend: Backend, docs: bytes) -> builtins.list[Thread]:
        threads = _decode_threads(docs)
        for thread in threads:
            thread._mark_synced(backend)
        return threads

    @staticmethod
    def _thread(backend: Backend, doc: bytes | None) -> Thread | None:
        if doc is None:
            return None
        thread = _decode_thread(doc)
        thread._mark_synced(backend)
        return thread

    # -- searches and lookups ---------------------------------------------------------------
    # Each returns whole threads with their messages, newest updated_at first (id breaks ties),
    # in one database call however many match; ``limit`` None means all of them.

    async def _find(self, search: ThreadSearch, limit: int | None, offset: int) -> builtins.list[Thread]:
        _check_count(limit, "limit", allow_none=True)
        _check_count(offset, "offset")
        backend = await self._ready()
        return self._threads(backend, await backend.find_threads(search, limit, offset))

    async def search_by_title(
        self, text: str, limit: int | None = 100, *, offset: int = 0
    ) -> builtins.list[Thread]:
        """Threads whose title contains ``text``, ignoring case; every character is literal."""
        return await self._find(ByTitle(pattern=matching.literal(text)), limit, offset)

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
        _check_id(platform_name, "platform_name")
        if not isinstance(reference, str | int | float):
            raise TypeError(f"reference must be a string or a number, got {type(reference).__name__}")
        search = ByPlatformReference(platform=platform_name, reference=_json(reference, "reference"))
        return await self._find(search, limit, offset)

    async def find_by_attributes(
        self, attributes: dict[str, Any], limit: int | None = 100, *, offset: int = 0
    ) -> builtins.list[Thread]:
        """Threads whose attributes hold every given key with an equal JSON value (1 equals 1.0;
        objects and lists compare whole). An empty dict matches every thread."""
        search = ByAttributes(wanted=_check_object(attributes, "attributes"))
        return await self._find(search, limit, offset)

    async def find_by_platform(
        self, platform_name: str, properties: dict[str, Any], limit: int | None = 100, *, offset: int = 0
    ) -> builtins.list[Thread]:
        """Threads whose ``platforms[platform_name]`` holds every given property with an equal
        value, or whose ``source`` is named ``platform_name`` and holds them."""
        _check_id(platform_name, "platform_name")
        search = ByPlatform(name=platform_name, wanted=_check_object(properties, "properties"))
        return await self._find(search, limit, offset)

    async def find_by_source(
        self, source_name: str, properties: dict[str, Any], limit: int | None = 100, *, offset: int = 0
    ) -> builtins.list[Thread]:
        """The same as find_by_platform (the older name)."""
        return await self.find_by_platform(source_name, properties, limit, offset=offset)

    async def search(
        self, query: str, limit: int = 20, offset: int = 0, *, attributes: dict[str, Any] | None = None
    ) -> builtins.list[SearchHit]:
        """Messages matching ``query``, best first (ties: the newer message first).

        The syntax is a web search engine's: words (all must occur), ``"quoted phrases"``,
        ``OR`` between two terms, ``-word`` or ``-"a phrase"`` (must not occur). Words match
        whole, ignoring case, without stemming (threadstore.fulltext defines them). ``attributes``
        keeps the messages of threads whose attributes hold every given key with an equal value,
        as find_by_attributes does. ValueError for a query without a word that must occur."""
        parsed = fulltext.parse(query)
        if isinstance(limit, int) and not isinstance(limit, bool) and limit < 1:
            raise ValueError(f"limit must be at least 1, got {limit}")
        _check_count(limit, "limit")
        _check_count(offset, "offset")
        wanted = None if attributes is None else _check_object(attributes, "attributes")
        backend = await self._ready()
        if parsed.impossible:
            return []
        rows = await backend.search(parsed, wanted, limit, offset)
        return [
            SearchHit(
                thread_id=r.thread_id,
                message_id=r.message_id,
                sequence=r.sequence,
                role=r.role,
                score=r.score,
                snippet=fulltext.snippet(r.text, parsed),
            )
            for r in rows
        ]

    async def find_messages_by_attribute(
        self, path: str | Sequence[str], value: Any, limit: int | None = 100, *, offset: int = 0
    ) -> builtins.list[Message]:
        """Stored messages whose value at ``path`` equals ``value`` (as JSON), ordered by thread
        id, then sequence; each carries its ``thread_id``.

        ``path`` is dotted: ``"platforms.slack.ts"`` looks in the messages' platforms,
        ``"attributes.x.y"`` or just ``"x.y"`` in their attributes. A key holding a dot needs the
        list form: ``["platforms", "web", "a.b"]``.
        """
        column, keys = _key_path(path)
        _check_count(limit, "limit", allow_none=True)
        _check_count(offset, "offset")
        search = MessageSearch(column=column, keys=keys, value=_json(value, "value"))  # type: ignore[arg-type]
        backend = await self._ready()
        return _decode_messages(await backend.find_messages(search, limit, offset))

    async def get_thread_by_message_id(self, message_id: str) -> Thread | None:
        """The thread holding that stored message, or None."""
        _check_id(message_id, "message_id")
        backend = await self._ready()
        return self._thread(backend, await backend.thread_of_message(message_id))

    # -- aliases ----------------------------------------------------------------------------
    # An alias is another, caller-chosen name of one thread: case-sensitive, any text of 1 to
    # MAX_ALIAS_LENGTH characters. Deleting a thread deletes its aliases.

    async def save_thread_alias(self, thread_id: str, alias: str) -> None:
        """Name the thread ``alias``. An alias naming another thread is moved to this one.
        Raises NotFoundError when the thread does not exist."""
        _check_id(thread_id)
        _check_alias(alias)
        backend = await self._writer("save_thread_alias")
        if not await backend.save_alias(alias, thread_id, self._alias_time()):
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
        _check_alias(alias)
        backend = await self._ready()
        return self._thread(backend, await backend.thread_by_alias(alias))

    async def delete_thread_alias(self, alias: str) -> bool:
        """Forget an alias (the thread stays); False if it was unknown."""
        _check_alias(alias)
        return await (await self._writer("delete_thread_alias")).delete_alias(alias)

    async def get_thread_aliases(self, thread_id: str) -> builtins.list[str]:
        """The thread's aliases, in the order they were saved; empty for an unknown thread."""
        _check_id(thread_id)
        return await (await self._ready()).aliases(thread_id)

    # -- statistics -------------------------------------------------------------------------

    async def get_usage_stats(self) -> dict[str, Any]:
        """Counts and token usage, computed by the database in one call.

        ``total_threads``, ``total_messages``, ``avg_messages_per_thread`` (0.0 when empty),
        ``total_tokens`` = ``{"total": int, "by_model": {model: {"prompt_tokens",
        "completion_tokens", "total_tokens"}}}`` from Message.metrics (non-numbers count 0), and
        ``threads_last_hour`` / ``_24h`` / ``_7d`` by updated_at.
        """
        backend = await self._ready()
        now = utcnow()
        counts = _decode_usage(
            await backend.usage(now - timedelta(hours=1), now - timedelta(days=1), now - timedelta(days=7))
        )
        total = 0
        by_model: dict[str, dict[str, int]] = {}
        for model, prompt, completion, total_tokens in counts.models:
            total += total_tokens or 0
            if model is not None:
                by_model[model] = {
                    "prompt_tokens": prompt or 0,
                    "completion_tokens": completion or 0,
                    "total_tokens": total_tokens or 0,
                }
        return {
            "total_threads": counts.threads,
            "total_messages": counts.messages,
            "avg_messages_per_thread": counts.messages / counts.threads if counts.threads else 0.0,
            "total_tokens": {"total": total, "by_model": dict(sorted(by_model.items()))},
            "threads_last_hour": counts.last_hour,
            "threads_last_24h": counts.last_day,
            "threads_last_7d": counts.last_week,
        }

    # -- export, import ---------------------------------------------------------------------

    async def export_threads(
        self, *, page_size: int = 200, after: str | None = None
    ) -> AsyncGenerator[builtins.list[ThreadRecord], None]:
        """Every stored thread with its messages and aliases (ThreadRecords), in pages of up to
        ``page_size``, in id order after the id ``after`` (None: from the first). One read per
        page, so memory stays flat however large the store."""
        _check_count(page_size, "page_size")
        if page_size < 1:
            raise ValueError("page_size must be at least 1")
        if after is not None:
            _check_id(after, "after")
        backend = await self._ready()
        while True:
            page = _decode_page(await backend.export_page(after, page_size))
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
            batch.setdefault(_check_id(thread.id, "Thread.id"), thread)
        _check_file_store(file_store)
        if not batch:
            return []
        backend = await self._writer("import_threads")
        present = set(await backend.stored(builtins.list(batch)))
        todo = [thread for thread_id, thread in batch.items() if thread_id not in present]
        for thread in todo:
            _unique_ids(thread.id, thread.messages)  # Messages only, each once
        pending = _pending_attachments(m for thread in todo for m in thread.messages if m.role != "system")
        if not pending:
            return await self._put(backend, todo, {})
        if file_store is None:
            raise _no_file_store(pending)
        async with _storing(pending, file_store, backend.attachment_references) as stored:
            result = await self._put(backend, todo, stored)
        _record_stored(pending, stored)
        return result

    async def _put(
        self, backend: Backend, threads: builtins.list[Thread], stored: Mapping[int, Attachment]
    ) -> builtins.list[str]:
        if not threads:
            return []
        copies = [self._copy(thread, stored) for thread in threads]
        done = set(await backend.put(copies))
        return [copy.plan.thread_id for copy in copies if copy.plan.thread_id in done]

    def _copy(self, thread: Thread, stored: Mapping[int, Attachment]) -> ThreadCopy:
        """The thread as it is to be stored by import_threads, checked like a save."""
        messages = [m for m in thread.messages if m.role != "system"]
        given = [m.sequence for m in messages if m.sequence is not None]
        for sequence in given:
            if type(sequence) is not int or not 1 <= sequence <= _MAX_SEQUENCE:
                raise ValueError(
                    f"Thread {thread.id!r}: a message sequence must be an int from 1 "
                    f"to {_MAX_SEQUENCE}, got {sequence!r}"
                )
        if len(set(given)) != len(given):
            raise ValueError(f"Thread {thread.id!r} holds two messages with the same sequence")
        last = max(given, default=0)
        for message in messages:
            if message.sequence is None:
                last += 1
                _set_field(message, "sequence", last)
            _set_field(message, "thread_id", thread.id)
        aliases: dict[str, datetime] = {}
        for record in thread.aliases if isinstance(thread, ThreadRecord) else []:
            if not isinstance(record, AliasRecord):
                raise TypeError(f"ThreadRecord.aliases holds AliasRecords, got {type(record).__name__}")
            if _check_alias(record.alias) in aliases:
                raise ValueError(f"Thread {thread.id!r} lists the alias {record.alias!r} twice")
            aliases[record.alias] = as_utc(record.created_at, "AliasRecord.created_at")
        plan = msgspec.structs.replace(
            self._plan(thread), new=_message_docs(messages, stored), new_count=len(messages)
        )
        return ThreadCopy(plan=plan, last_sequence=last, aliases=builtins.list(aliases.items()))
