"""The Backend protocol every storage backend implements, and what the store hands to it.

The store validates and encodes; a backend only moves JSON documents in and out of its storage,
so all backends answer alike. Reads return JSON bytes of Thread documents, decoded by the store.
"""

from __future__ import annotations

import builtins
import time
from collections.abc import AsyncIterator, Iterable, Sequence
from contextlib import AbstractAsyncContextManager
from datetime import datetime
from typing import Any, ClassVar, Literal, NamedTuple, Protocol, TypeVar

import msgspec

from threadstore.errors import ConflictError
from threadstore.fulltext import Query
from threadstore.matching import TextPattern


class SavePlan(msgspec.Struct, frozen=True, kw_only=True):
    """One save: the thread row plus only the messages that changed, as JSON documents."""

    thread_id: str
    title: str
    attributes: bytes  # JSON object
    platforms: bytes  # JSON object
    source: bytes | None  # JSON object, or None
    platform_values: bytes = b"{}"  # JSON: matching.platform_index(platforms), for PostgreSQL's index
    created_at: datetime
    updated_at: datetime
    new: bytes = b"[]"  # JSON array of messages this Thread object has not stored yet
    new_count: int = 0
    edited: bytes = b"[]"  # JSON array of stored messages changed in place
    removed: list[str] = []  # ids of stored messages to delete
    synced: bool = False  # this Thread was loaded from or saved to this backend


class AppendPlan(msgspec.Struct, frozen=True, kw_only=True):
    """Messages to add after the stored ones of a thread."""

    thread_id: str
    messages: bytes  # JSON array of message documents
    count: int
    updated_at: datetime
    create: SavePlan | None = None  # the empty thread to store first when absent (append(create=True))


class ThreadCopy(msgspec.Struct, frozen=True, kw_only=True):
    """A thread to store exactly as given (import, copy): its times, its messages with their
    sequences (``plan.new``), its aliases with their times."""

    plan: SavePlan
    last_sequence: int  # the highest message sequence, 0 without messages
    aliases: list[tuple[str, datetime]] = []


class SchemaStatus(NamedTuple):
    """Where a database's schema stands."""

    version: int  # the newest migration applied; 0 for an empty database or the in-memory store
    pending: list[str]  # migrations not applied yet, as "NNNN_name"


class ThreadSearch(msgspec.Struct, frozen=True, kw_only=True):
    """A filter on threads. SQL backends run the query ``query`` names with the fields as
    parameters (JSON fields as JSON, a TextPattern spelled for their engine); memory evaluates it
    itself."""

    query: ClassVar[str]


class ByTitle(ThreadSearch, frozen=True, kw_only=True):
    query = "search.by_title"
    pattern: TextPattern
    wanted: bytes | None = None  # a JSON object the attributes must hold, as in ByAttributes


class ByContent(ThreadSearch, frozen=True, kw_only=True):
    query = "search.by_content"
    pattern: TextPattern


class ByPlatformReference(ThreadSearch, frozen=True, kw_only=True):
    query = "search.by_platform_reference"
    platform: str
    reference: bytes  # a JSON scalar


class ByAttributes(ThreadSearch, frozen=True, kw_only=True):
    query = "search.by_attributes"
    wanted: bytes  # a JSON object


class ByPlatform(ThreadSearch, frozen=True, kw_only=True):
    query = "search.by_platform"
    name: str
    wanted: bytes  # a JSON object


class MessageSearch(msgspec.Struct, frozen=True, kw_only=True):
    """Messages whose ``column`` holds ``value`` at the key path ``keys``."""

    QUERIES: ClassVar[dict[str, str]] = {
        "attributes": "search.messages_by_attributes",
        "platforms": "search.messages_by_platforms",
    }

    column: Literal["attributes", "platforms"]
    keys: list[str]
    value: bytes  # JSON


class UsageCounts(msgspec.Struct, frozen=True):
    """What get_usage_stats reads from a backend in one call."""

    threads: int
    messages: int
    last_hour: int
    last_day: int
    last_week: int
    # [model or None, prompt, completion, total] per model; sums are None when nothing counted
    models: list[tuple[str | None, int | None, int | None, int | None]]


class SearchRow(NamedTuple):
    """One message a full-text search found (ThreadStore.search builds its SearchHit)."""

    thread_id: str
    message_id: str
    sequence: int
    role: str
    score: float
    text: str  # matching.content_text of the message, for the snippet
    title: str = ""  # its thread's title (search.titles)


class Lifecycle(Protocol):
    """Opening and closing a backend, and the driver objects underneath."""

    name: str
    # Whether the backend holds what belongs to one event loop (connections, locks): the store
    # then closes it when that loop ends and connects afresh in a later one.
    loop_bound: ClassVar[bool]

    async def open(self) -> None:
        """Connect (and check the connection works)."""

    async def close(self) -> None:
        """Release every connection; idempotent."""

    def abandon(self) -> None:
        """Drop the connections of an event loop that ended without ``close()``: synchronous,
        never waits, never raises; the backend is not used again."""

    @property
    def engine(self) -> Any:
        """The driver object: an asyncpg Pool or an aiosqlite Connection; None in memory."""

    def session(self) -> AbstractAsyncContextManager[Any]:
        """A driver connection inside a transaction, held until the block ends."""


class Operations(Protocol):
    """One method per operation, each named as the ThreadStore method it serves (or, where it
    serves another, as tests/unit/test_backend_names.py lists). Every method is atomic;
    sequences are handed out by the backend."""

    async def ping(self) -> None:
        """One round trip to the database; StoreUnavailableError when it does not answer."""

    async def migrate(self) -> list[int]:
        """Apply pending migrations under a cross-process lock; return the versions applied."""

    async def schema_status(self) -> SchemaStatus:
        """The applied schema version and the pending migrations; changes nothing."""

    async def get(self, thread_id: str) -> bytes | None:
        """The thread document, or None."""

    async def list_recent(self, limit: int | None, offset: int) -> bytes:
        """A JSON array of thread documents, newest updated_at first, id breaking ties."""

    async def get_messages(self, thread_id: str, limit: int, before: int, after: int | None) -> bytes | None:
        """The thread document holding only some of its messages, in sequence order, or None
        when the thread does not exist: with ``after``, the first ``limit`` whose sequence is
        above ``after`` and below ``before``; else the last ``limit`` below ``before``."""

    async def list_threads(
        self, limit: int, after: tuple[datetime, str] | None, wanted: bytes | None
    ) -> bytes:
        """A JSON array of up to ``limit`` ThreadSummary documents, newest updated_at first (id
        breaking ties), after the (updated_at, id) position ``after`` when given; only threads
        whose attributes hold every key of ``wanted`` (a JSON object) with an equal value, when
        given."""

    async def delete_threads(self, cutoff: datetime, wanted: bytes | None, batch: int, dry_run: bool) -> int:
        """Delete up to ``batch`` threads (with their messages and aliases) updated before
        ``cutoff`` and matching ``wanted`` as list_threads does, each re-checked as it is
        deleted; the number deleted. ``dry_run``: how many match in all, deleting nothing."""

    async def prune_messages(self, thread_id: str, keep_last: int) -> int | None:
        """Delete all but the ``keep_last`` highest-sequenced messages of the thread (the others
        keep their sequences); how many were deleted, or None when the thread does not exist."""

    async def save(self, plan: SavePlan) -> dict[str, int] | None:
        """Write the plan; return the stored sequence of every new message (inserted, or
        already held by the thread). Sequences are never renumbered nor handed out twice in a
        thread. A ``synced`` plan is written into the stored thread only: None, writing
        nothing, when it is gone."""

    async def append(self, plan: AppendPlan) -> tuple[bytes, dict[str, int]] | None:
        """Insert after the stored messages: (thread header document, id -> sequence), or None
        when the thread does not exist. With ``plan.create``, an absent thread is stored first,
        in the same transaction (two first appends at once both succeed, making one thread)."""

    async def pop_message(self, thread_id: str, updated_at: datetime) -> bytes | None:
        """Delete the thread's highest-sequenced message and return its document, atomically
        (two pops never return the same message); the thread's ``updated_at`` becomes
        ``updated_at``; its last sequence stays (never handed out again). None when
        the thread does not exist or holds no message."""

    async def create_if_absent(self, plan: SavePlan) -> None:
        """Store the (empty) thread of the plan unless the id is taken."""

    async def delete(self, thread_id: str) -> bool:
        """Delete a thread with its messages and aliases; False if absent."""

    async def delete_many(self, thread_ids: Sequence[str]) -> int:
        """Delete those threads; the number deleted."""

    async def find_threads(self, search: ThreadSearch, limit: int | None, offset: int) -> bytes:
        """A JSON array of the matching thread documents, newest updated_at first."""

    async def find_messages_by_attribute(
        self, search: MessageSearch, limit: int | None, offset: int
    ) -> bytes:
        """A JSON array of the matching message documents, by thread id, then sequence."""

    async def search(
        self, query: Query, wanted: bytes | None, limit: int, offset: int
    ) -> builtins.list[SearchRow]:
        """The stored messages matching ``query`` (threadstore.fulltext), best score first, then
        newest timestamp, then highest id; only in threads whose attributes hold every key of
        ``wanted`` (a JSON object) with an equal value, when given."""

    async def get_thread_by_message_id(self, message_id: str) -> bytes | None:
        """The document of the thread holding that message, or None."""

    async def save_thread_alias(self, alias: str, thread_id: str, created_at: datetime) -> bool:
        """Point the alias at the thread (moving it from another); False if no such thread."""

    async def get_by_alias(self, alias: str) -> bytes | None:
        """The document of the thread the alias names, or None."""

    async def delete_thread_alias(self, alias: str) -> bool:
        """Forget an alias; False if it was unknown."""

    async def get_thread_aliases(self, thread_id: str) -> builtins.list[str]:
        """A thread's aliases, oldest first (alias breaks ties)."""

    async def get_usage_stats(self, hour_ago: datetime, day_ago: datetime, week_ago: datetime) -> bytes:
        """UsageCounts as JSON."""

    async def attachment_references(self, refs: Sequence[str] | None) -> set[str]:
        """The storage_path and file_id values the stored messages' attachments hold (only those
        among ``refs`` when given)."""

    async def export_threads(self, after: str | None, limit: int) -> bytes:
        """Up to ``limit`` threads with ids above ``after`` (None: from the first), in id order,
        as a JSON array of ``[thread document, [{"alias", "created_at"}, ...]]`` pairs."""

    async def existing_ids(self, thread_ids: Sequence[str]) -> builtins.list[str]:
        """Which of these thread ids are stored."""

    async def import_threads(self, copies: Sequence[ThreadCopy]) -> builtins.list[str]:
        """Store each thread exactly as given unless its id is taken; return the ids stored.
        Atomic: a message id or alias stored for another thread is a ConflictError, and then
        nothing is stored."""


class Backend(Lifecycle, Operations, Protocol):
    """Storage for threads: what every backend implements."""


_T = TypeVar("_T")
SLICE = 0.005  # seconds of work on the event loop before other tasks get a turn


async def sliced(items: Iterable[_T]) -> AsyncIterator[_T]:
    """``items``, letting the event loop run other tasks every SLICE seconds meanwhile: for
    Python work over many messages (searching them in memory, cutting them into words)."""
    import asyncio  # here: importing it is half of `import threadstore`

    clock = time.perf_counter
    resume = clock() + SLICE
    for item in items:
        if clock() > resume:
            await asyncio.sleep(0)
            resume = clock() + SLICE
        yield item


# A message id or an alias stored for another thread: one wording on every backend.
def message_stored(message_id: str) -> ConflictError:
    return ConflictError(f"message {message_id!r} is already stored")


def alias_taken(alias: str) -> ConflictError:
    return ConflictError(f"alias {alias!r} already names another thread")
