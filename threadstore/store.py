"""ThreadStore: the public facade. URL -> backend, lazy connection, validation, save planning.

It holds no SQL and no driver calls. A save is planned here: the Thread reports which messages
are new, edited or removed since it was loaded from (or last saved to) this store; each changed
message is encoded once and checked to read back unchanged, so every backend stores exactly the
same JSON and rejects the same values. System messages are never written.
"""

from __future__ import annotations

import asyncio
import builtins
import re
from collections.abc import Callable, Iterable
from types import TracebackType
from typing import Any

import msgspec

from threadstore.backends import AppendPlan, Backend, SavePlan, open_backend
from threadstore.config import DatabaseConfig, parse_url
from threadstore.errors import NotFoundError, StoreClosedError
from threadstore.models import Changes, Message, Thread, _set_field, utcnow


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
_decode_thread = msgspec.json.Decoder(Thread).decode
_decode_threads = msgspec.json.Decoder(list[Thread]).decode

# An escaped NUL in encoded JSON: \u0000 after an even number of backslashes.
_JSON_NUL = re.compile(rb"(?<!\\)(?:\\\\)*\\u0000")
_NUL = "a NUL character (\\x00), which PostgreSQL cannot store (refused on every backend alike)"
_NOT_JSON = ("holds a value JSON would not give back unchanged "
             "(a tuple, set, bytes, datetime, non-string key or NaN, for example)")


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
        level = [item for container in level for item in _children(container)
                 if isinstance(item, _CONTAINERS)]
        if not level:
            return False
    return True


def _children(container: Any) -> Any:
    if isinstance(container, dict):
        return container.values()
    if isinstance(container, msgspec.Struct):
        return [getattr(container, f) for f in container.__struct_fields__]
    return container


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
            what = next(f"Message.{f} of {what}" for f in value.__struct_fields__
                        if _too_deep(getattr(value, f)))
        raise ValueError(f"{what} {_TOO_DEEP}")
    try:
        back = decode(raw)
    except msgspec.ValidationError as exc:
        raise ValueError(f"{what} is invalid: {exc}") from None
    if back != value:
        if isinstance(value, Message):  # name the field
            what = next(f"Message.{f} of {what}" for f in value.__struct_fields__
                        if getattr(back, f) != getattr(value, f))
        raise ValueError(f"{what} {_NOT_JSON}")
    if _JSON_NUL.search(raw):
        raise ValueError(f"{what} contains {_NUL}")
    return raw


def _json(value: Any, field: str) -> bytes:
    """A thread field encoded; ValueError/TypeError naming ``field`` unless it reads back equal."""
    return _checked_json(value, field, _decode_any)


def _message_doc(message: Message) -> bytes:
    """One message as a JSON document, checked to decode back to an equal Message."""
    message._validate()
    _check_id(message.id, "Message.id")
    return _checked_json(message, f"message {message.id!r}", _decode_message)


def _message_docs(messages: list[Message]) -> bytes:
    if not messages:
        return b"[]"
    return b"[" + b",".join([_message_doc(m) for m in messages]) + b"]"


MAX_ID_LENGTH = 512  # characters: at most 2,048 bytes in UTF-8, inside PostgreSQL's btree row limit (2,704)


def _check_text(value: str, what: str) -> None:
    """Refuse text some backend cannot store as it is: NUL, lone surrogates (not UTF-8)."""
    if "\x00" in value:
        raise ValueError(f"{what} contains {_NUL}")
    if not value.isascii():
        try:
            value.encode()
        except UnicodeEncodeError:
            raise ValueError(f"{what} is not valid Unicode text (it holds a lone surrogate)") from None


def _check_id(value: object, what: str = "thread_id") -> str:
    if not isinstance(value, str):
        raise TypeError(f"{what} must be a string, got {type(value).__name__}")
    if not value:
        raise ValueError(f"{what} must not be empty")
    if len(value) > MAX_ID_LENGTH:
        raise ValueError(f"{what} is {len(value)} characters long; ids are at most {MAX_ID_LENGTH}")
    _check_text(value, what)
    return value


_MAX_COUNT = 2**62  # fits every backend's 64-bit LIMIT/OFFSET


def _check_count(value: object, what: str, *, allow_none: bool = False) -> None:
    if value is None and allow_none:
        return
    if not isinstance(value, int) or isinstance(value, bool):
        raise TypeError(f"{what} must be an int, got {type(value).__name__}")
    if not 0 <= value <= _MAX_COUNT:
        raise ValueError(f"{what} must be between 0 and {_MAX_COUNT}, got {value}")


class ThreadStore:
    """Persists Threads on one backend: in-memory (no URL), SQLite or PostgreSQL.

    ``ThreadStore(url)`` connects on first use; ``await ThreadStore.create(url)`` connects (and
    migrates, unless ``migrate=False``) at once. ``close()`` or ``async with`` releases it.
    """

    def __init__(self, url: str | None = None, *, migrate: bool = True) -> None:
        self._config: DatabaseConfig = parse_url(url)
        self._migrate_on_open = migrate
        self._backend: Backend | None = None
        self._opening: asyncio.Lock | None = None
        self._closed = False

    @classmethod
    async def create(cls, url: str | None = None, *, migrate: bool = True) -> ThreadStore:
        """A connected store; raises ThreadStoreError (a RuntimeError) when it cannot connect."""
        store = cls(url, migrate=migrate)
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

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open" if self._backend else "not connected"
        return f"<ThreadStore {self.backend} {self.database_url or ''} ({state})>".replace("  ", " ")

    async def _ready(self) -> Backend:
        backend = self._backend
        if backend is not None:
            return backend
        if self._closed:
            raise StoreClosedError("this ThreadStore is closed")
        if self._opening is None:
            self._opening = asyncio.Lock()
        async with self._opening:  # ten first operations at once still connect once
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
                except BaseException:
                    await backend.close()
                    raise
                self._backend = backend
            return self._backend

    async def migrate(self) -> builtins.list[int]:
        """Apply pending schema migrations; returns the versions applied."""
        return await (await self._ready()).migrate()

    async def close(self) -> None:
        """Release the connection(s). Further use raises StoreClosedError."""
        self._closed = True
        backend, self._backend = self._backend, None
        if backend is not None:
            await backend.close()

    async def __aenter__(self) -> ThreadStore:
        await self._ready()
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.close()

    # -- writes ---------------------------------------------------------------------------

    def _plan(self, thread: Thread, changes: Changes | None = None) -> SavePlan:
        thread._validate()
        _check_id(thread.id, "Thread.id")
        _check_text(thread.title, "Thread.title")
        return SavePlan(
            thread_id=thread.id, title=thread.title,
            attributes=_json(thread.attributes, "Thread.attributes"),
            platforms=_json(thread.platforms, "Thread.platforms"),
            source=None if thread.source is None else _json(thread.source, "Thread.source"),
            created_at=thread.created_at, updated_at=thread.updated_at,
            new=_message_docs(changes.new) if changes else b"[]",
            new_count=len(changes.new) if changes else 0,
            edited=_message_docs(changes.edited) if changes else b"[]",
            removed=changes.removed if changes else [],
        )

    async def save(self, thread: Thread) -> Thread:
        """Store the thread atomically, writing only what changed since it was loaded or saved.

        New messages are inserted after the stored ones (a concurrent writer's included),
        messages changed by field assignment or ``thread.mark_edited`` are updated, and only
        messages this Thread removed are deleted. System messages are not stored. Returns the
        same Thread, its messages carrying their stored sequences.
        """
        if not isinstance(thread, Thread):
            raise TypeError(f"save() takes a Thread, got {type(thread).__name__}")
        backend = await self._ready()
        changes = thread._changes(backend)
        plan = self._plan(thread, changes)
        thread._begin_save(changes)
        try:
            sequences = await backend.save(plan)
        except BaseException:
            thread._abort_save(changes)
            raise
        for message in changes.new:
            _set_field(message, "thread_id", thread.id)
        if sequences:
            for message in thread.messages if changes.removed else changes.new:
                sequence = sequences.get(message.id)
                if sequence is not None:
                    _set_field(message, "sequence", sequence)
        thread._mark_synced(backend, changes)
        return thread

    async def append(self, thread_id: str, *messages: Message) -> Thread:
        """Add messages after the stored ones of a thread without loading it.

        Returns the thread's header (id, title, attributes, times) whose ``messages`` are just
        the appended ones, with their stored sequences; saving it later leaves the others be.
        Raises NotFoundError when the thread does not exist.
        """
        _check_id(thread_id)
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
        backend = await self._ready()
        plan = AppendPlan(thread_id=thread_id, messages=_message_docs(batch), count=len(batch),
                          updated_at=utcnow())
        result = await backend.append(plan)
        if result is None:
            raise NotFoundError(f"no thread {thread_id!r} to append to")
        header, sequences = result
        thread = _decode_thread(header)
        for message in batch:
            _set_field(message, "sequence", sequences[message.id])
            _set_field(message, "thread_id", thread_id)
        thread.messages = batch
        thread._mark_synced(backend)
        return thread

    async def get_or_create(self, thread_id: str) -> Thread:
        """The stored thread, or a new empty one with that id, stored now."""
        thread = await self.get(thread_id)
        if thread is not None:
            return thread
        backend = await self._ready()
        await backend.create_if_absent(self._plan(Thread(id=thread_id)))
        thread = await self.get(thread_id)
        if thread is None:  # deleted again in between
            raise NotFoundError(f"thread {thread_id!r} vanished while it was being created")
        return thread

    async def delete(self, thread_id: str) -> bool:
        """Delete a thread with its messages and aliases; False if it did not exist."""
        _check_id(thread_id)
        return await (await self._ready()).delete(thread_id)

    async def delete_many(self, thread_ids: Iterable[str]) -> int:
        """Delete those threads; returns how many existed. Unknown ids are ignored."""
        if isinstance(thread_ids, str):
            raise TypeError("delete_many() takes a list of thread ids, not one string")
        ids = [_check_id(i) for i in thread_ids]
        if not ids:
            return 0
        return await (await self._ready()).delete_many(builtins.list(dict.fromkeys(ids)))

    # -- reads ----------------------------------------------------------------------------

    async def get(self, thread_id: str) -> Thread | None:
        """The thread with all its messages, or None."""
        _check_id(thread_id)
        backend = await self._ready()
        doc = await backend.get(thread_id)
        if doc is None:
            return None
        thread = _decode_thread(doc)
        thread._mark_synced(backend)
        return thread

    async def list(self, limit: int = 100, offset: int = 0) -> builtins.list[Thread]:
        """Threads with their messages, newest ``updated_at`` first (id breaks ties)."""
        _check_count(limit, "limit")
        _check_count(offset, "offset")
        return await self._list(limit, offset)

    async def list_recent(self, limit: int | None = None) -> builtins.list[Thread]:
        """The most recently updated threads, newest first; all of them when limit is None."""
        _check_count(limit, "limit", allow_none=True)
        return await self._list(limit, 0)

    async def _list(self, limit: int | None, offset: int) -> builtins.list[Thread]:
        backend = await self._ready()
        threads = _decode_threads(await backend.list(limit, offset))
        for thread in threads:
            thread._mark_synced(backend)
        return threads
