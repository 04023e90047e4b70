"""Conversation models: Thread, Message and Attachment as msgspec Structs, with their behaviour.

No I/O here, except where an Attachment is handed a FileStore to read or store its bytes.
A Thread also remembers, outside its fields, which of its messages are already
stored (and which stored ones were edited through field assignment), so that a save writes only
what changed: threadstore.tracking keeps that state; only the edit hook stays here, inline.

Datetimes are aware UTC: a naive datetime is taken to be UTC, an aware one is converted to UTC.
"""

from __future__ import annotations

import base64
import binascii
import threading
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal, TypeAlias, TypeVar

import msgspec

from threadstore.matching import message_tokens

if TYPE_CHECKING:
    from threadstore.files import FileStore

if TYPE_CHECKING:
    # A Literal for type checkers and editors (role="usr" is flagged where it is written); at
    # run time a plain str, so that validate() refuses any other text with the error naming ROLES.
    Role: TypeAlias = Literal["system", "user", "assistant", "tool", "developer"]
else:
    Role = str
ROLES = ("system", "user", "assistant", "tool", "developer")  # developer: OpenAI's instructions role, stored
_COUNTED = ROLES[:4]  # get_message_counts always lists these (narrator's shape); others when present
ATTACHMENT_STATUSES = ("pending", "stored", "failed")
_T = TypeVar("_T")
_INT32_MIN, _INT32_MAX = -(2**31), 2**31 - 1  # Message.turn is an integer column

_set_field = msgspec.Struct.__setattr__  # bypasses edit tracking
# Keys kept in the instance __dict__, outside the fields (so never encoded or compared), by
# threadstore.tracking: a Thread's SyncState, and on each message shared with the store the dict
# (id -> message) where Message.__setattr__ records an edit.
SYNC = "_threadstore_sync"
EDITS = "_edited"


class _Trust(threading.local):
    on = False


# Set while the store decodes what it stored itself, validated when it was saved: Messages and
# Threads then skip validating again (45% of decoding a thread of 1,000 messages).
_trust = _Trust()


def decoding_stored(decode: Callable[[bytes], _T]) -> Callable[[bytes], _T]:
    """``decode`` for documents a backend gives back, without validating them again."""

    def run(data: bytes) -> _T:
        _trust.on = True
        try:
            return decode(data)
        finally:
            _trust.on = False

    return run


def utcnow() -> datetime:
    """The current time, aware UTC."""
    return datetime.now(UTC)


def as_utc(value: object, field: str) -> datetime:
    """``value`` as an aware UTC datetime; naive datetimes are taken to be UTC."""
    if not isinstance(value, datetime):
        raise TypeError(f"{field} must be a datetime, got {type(value).__name__}")
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    if value.tzinfo is UTC:
        return value
    return value.astimezone(UTC)


def default_metrics() -> dict[str, Any]:
    """The metrics layout every message starts with: model, token usage and timing.

    Stored and exported as ``{}`` (compact_metrics), read back as this layout: an empty metrics
    and this layout are the same value."""
    return {
        "model": None,
        "usage": {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0},
        "timing": {"started_at": None, "ended_at": None, "latency": 0},
    }


DEFAULT_METRICS = default_metrics()  # compared with, never handed out


def compact_metrics(message: Message) -> dict[str, Any]:
    """The message's metrics as stored: ``{}`` for the default layout (30,000 messages of
    default metrics exported 16.0 MB, the zero-filled block 4.5 MB of it)."""
    return {} if message.metrics == DEFAULT_METRICS else message.metrics


def _shown(value: object) -> str:
    """``value`` for an error message: short text or numbers as they are, anything else by type."""
    if isinstance(value, str | int | float) and len(text := repr(value)) <= 80:
        return text
    return f"a {type(value).__name__}"


def _require(value: object, kinds: type | tuple[type, ...], field: str) -> None:
    """TypeError unless ``value`` is one of ``kinds``: the one rule of the models and the store
    methods alike, a value of the wrong type is a TypeError and a value of the right type that is
    not allowed a ValueError."""
    if not isinstance(value, kinds):
        names = " or ".join(k.__name__ for k in (kinds if isinstance(kinds, tuple) else (kinds,)))
        raise TypeError(f"{field} must be {names}, got {type(value).__name__}")


def _decode_content(value: object) -> tuple[bytes, str | None]:
    """Attachment content given as text: base64, or a ``data:<type>;base64,`` URL (whose type is
    returned too)."""
    if isinstance(value, (bytearray, memoryview)):
        return bytes(value), None
    if not isinstance(value, str):
        raise TypeError(f"Attachment.content must be bytes or base64 text, got {type(value).__name__}")
    text, declared = value.strip(), None
    if text[:5].lower() == "data:":
        header, comma, text = text[5:].partition(",")
        if not comma or not header.lower().endswith(";base64"):
            raise ValueError(
                "Attachment.content is a data: URL that is not base64 (expected data:<type>;base64,<data>)"
            )
        declared = header[:-7].partition(";")[0] or None
    text = "".join(text.split())
    altchars = b"-_" if ("-" in text or "_" in text) else None
    try:
        return base64.b64decode(text + "=" * (-len(text) % 4), altchars, validate=True), declared
    except (binascii.Error, ValueError):
        raise ValueError(
            "Attachment.content is text that is neither base64 nor a base64 data: URL; "
            "pass the bytes (for text, text.encode())"
        ) from None


class Attachment(msgspec.Struct, kw_only=True):
    """A file attached to a message.

    ``content`` holds the bytes until they are stored (base64 text or a base64 ``data:`` URL is
    decoded to bytes at construction). It is never written to the database: ``await
    store.save(thread, file_store=fs)`` first stores every pending attachment's bytes in the
    FileStore and records ``file_id``, ``storage_path``, ``storage_backend``, the detected
    ``mime_type``, ``processed_content`` (the decoded text of text-like files, else None) and
    ``attributes["type"]`` / ``["size"]``, with ``status`` ``"stored"``. Loaded attachments have
    no content: ``await attachment.get_content_bytes(fs)`` reads it from the FileStore.
    """

    filename: str
    content: bytes | None = None
    mime_type: str | None = None
    file_id: str | None = None
    storage_path: str | None = None
    storage_backend: str | None = None
    status: str = "pending"  # "pending", "stored" or "failed"
    processed_content: str | None = None
    attributes: dict[str, Any] = {}

    def __post_init__(self) -> None:
        _require(self.filename, str, "Attachment.filename")
        if self.status not in ATTACHMENT_STATUSES:
            raise ValueError(
                f"Attachment.status must be one of {', '.join(ATTACHMENT_STATUSES)}; got {self.status!r}"
            )
        _require(self.attributes, dict, "Attachment.attributes")
        _require(self.mime_type, (str, type(None)), "Attachment.mime_type")
        content = self.content
        if content is not None and type(content) is not bytes:
            self.content, declared = _decode_content(content)
            if self.mime_type is None:
                self.mime_type = declared

    async def get_content_bytes(self, file_store: FileStore | None = None) -> bytes:
        """The bytes: from ``content`` when held in memory, else read from ``file_store`` by
        ``storage_path``/``file_id``. ValueError when neither is possible."""
        content: object = self.content
        if content is not None:
            return content if type(content) is bytes else _decode_content(content)[0]
        if file_store is not None and (self.storage_path or self.file_id):
            return await file_store.get(self.file_id, self.storage_path)
        where = (
            "pass the FileStore it is stored in"
            if self.storage_path or self.file_id
            else "it was never given any"
        )
        raise ValueError(f"Attachment {self.filename[:200]!r} holds no content in memory; {where}")

    async def process_and_store(self, file_store: FileStore, *, force: bool = False) -> None:
        """Store the bytes in ``file_store`` and record where (see the class docstring).

        An attachment already stored is left as it is unless ``force``. On failure ``status``
        becomes ``"failed"`` and the error is raised (FileTooLargeError, ...).
        """
        if self.status == "stored" and not force:
            return
        try:
            content = await self.get_content_bytes(file_store)
            stored = await file_store.save(content, self.filename, self.mime_type)
            # Imported here, as in threadstore/__init__.py: threadstore.mime (zipfile, mimetypes)
            # would take `import threadstore` from ~70 to ~130 ms (make bench).
            from threadstore import mime

            self.mark_stored(stored, await mime.describe(content, stored["mime_type"]))
        except Exception:
            self.status = "failed"
            raise

    def mark_stored(self, stored: dict[str, Any], description: tuple[str, str | None, bool]) -> None:
        """Record where the bytes went: ``stored`` is FileStore.save()'s metadata, ``description``
        threadstore.mime.describe()'s (kind, processed_content, truncated)."""
        kind, text, truncated = description
        self.file_id = stored["id"]
        self.storage_path = stored["storage_path"]
        self.storage_backend = stored["storage_backend"]
        self.mime_type = stored["mime_type"]
        self.processed_content = text
        attributes = {**self.attributes, "type": kind, "size": stored["size"]}
        attributes.pop("truncated", None)
        if truncated:
            attributes["truncated"] = True
        self.attributes = attributes
        self.status = "stored"


def _new_thread_id() -> str:
    return str(uuid.uuid4())


# Random, not derived from the content: role, content, timestamp and source made the same id for
# equal messages in two threads (a ConflictError; imports with second-resolution timestamps).
_new_message_id = _new_thread_id


class Message(msgspec.Struct, kw_only=True, dict=True):
    """One message of a thread, in the OpenAI chat layout plus threadstore's metadata.

    ``id`` is a new random UUID unless given (so equal messages in two threads never collide;
    stored ids of any form are read and kept as they are). ``sequence`` is its position in the
    thread (system messages 0).

    Attributes:
        role: "system", "user", "assistant", "tool" or "developer" (``Role``); a system message
            is kept on the Thread object but never stored (see Guarantees).
        content: text, a list of content parts (``{"type": "text", "text": ...}``, images...),
            or None (an assistant message that only calls tools).
        id: unique in the whole store; a new UUID unless given.
        reasoning_content: a model's reasoning text, when it gives one.
        name: the OpenAI ``name`` of the author or tool.
        tool_call_id: the call a "tool" message answers (required for that role).
        tool_calls: the OpenAI ``tool_calls`` of an assistant message.
        attributes: your own JSON data (searchable with find_messages_by_attribute).
        timestamp: when it was written, aware UTC (naive datetimes are taken as UTC).
        source: where it came from, as a dict, e.g. ``{"name": "slack", ...}``.
        platforms: references of the message on other platforms.
        attachments: files, stored in a FileStore by ``save(..., file_store=...)``.
        metrics: model, token usage and timing (default_metrics() unless set; stored as ``{}``
            then, and ``{}`` reads back as that default layout). get_usage_stats sums the usage.
        reactions: emoji -> the users who reacted with it.
        sequence: its position in the thread, set when it is saved (1, 2, ...; system 0).
        turn: your own number for a turn of conversation (a 32-bit int), or None.
        thread_id: the thread it belongs to, set when it is saved.
    """

    role: Role
    content: str | list[dict[str, Any]] | None = None
    id: str = ""
    reasoning_content: str | None = None
    name: str | None = None
    tool_call_id: str | None = None
    tool_calls: list[dict[str, Any]] | None = None
    attributes: dict[str, Any] = {}
    timestamp: datetime = msgspec.field(default_factory=utcnow)
    source: dict[str, Any] | None = None
    platforms: dict[str, Any] = {}
    attachments: list[Attachment] = []
    metrics: dict[str, Any] = msgspec.field(default_factory=default_metrics)
    reactions: dict[str, list[str]] = {}
    sequence: int | None = None
    turn: int | None = None
    thread_id: str | None = None

    def __post_init__(self) -> None:
        if not _trust.on:
            self.validate()
        elif not self.metrics:  # stored as {}: the default layout (see default_metrics)
            _set_field(self, "metrics", default_metrics())

    def validate(self) -> None:
        """Check the fields, normalise the timestamp and an empty metrics (the default layout);
        run again at save, since fields may have been assigned since construction."""
        _require(self.role, str, "Message.role")
        if self.role not in ROLES:
            raise ValueError(f"Message.role must be one of {', '.join(ROLES)}; got {_shown(self.role)}")
        if self.role == "tool" and not self.tool_call_id:
            raise ValueError("Message.tool_call_id is required for a 'tool' message")
        _require(self.content, (str, list, type(None)), "Message.content")
        _require(self.attributes, dict, "Message.attributes")
        _require(self.platforms, dict, "Message.platforms")
        _require(self.metrics, dict, "Message.metrics")
        if not self.metrics:
            _set_field(self, "metrics", default_metrics())
        _require(self.reactions, dict, "Message.reactions")
        _require(self.source, (dict, type(None)), "Message.source")
        _require(self.tool_calls, (list, type(None)), "Message.tool_calls")
        _require(self.attachments, list, "Message.attachments")
        for attachment in self.attachments:
            if not isinstance(attachment, Attachment):
                raise TypeError(f"Message.attachments holds a {type(attachment).__name__}, not an Attachment")
        _require(self.id, str, "Message.id")
        turn = self.turn
        if turn is not None and (type(turn) is not int or not _INT32_MIN <= turn <= _INT32_MAX):
            error = ValueError if type(turn) is int else TypeError
            raise error(f"Message.turn must be None or a 32-bit int, got {_shown(turn)}")
        timestamp = self.timestamp
        if type(timestamp) is not datetime or timestamp.tzinfo is not UTC:
            _set_field(self, "timestamp", as_utc(timestamp, "Message.timestamp"))
        if not self.id:
            _set_field(self, "id", _new_message_id())

    def __setattr__(self, name: str, value: Any) -> None:
        _set_field(self, name, value)
        if name[0] != "_":
            edited = self.__dict__.get("_edited")  # EDITS, spelled out: the hot path
            if edited is not None:
                edited[self.id] = self

    def add_attachment(self, data: bytes | Attachment, filename: str | None = None) -> Attachment:
        """Attach a file: bytes (or base64 text) with their ``filename``, or an Attachment
        (``filename``, if given, renames it). Stored by the next ``store.save(thread,
        file_store=...)``. Returns the Attachment."""
        if isinstance(data, Attachment):
            attachment = data
            if filename is not None:
                _require(filename, str, "filename")
                attachment.filename = filename
        elif isinstance(data, (bytes, bytearray, memoryview, str)):
            if not filename or not isinstance(filename, str):
                raise ValueError("add_attachment(data) needs a filename (a non-empty string)")
            attachment = Attachment(filename=filename, content=data)
        else:
            raise TypeError(f"add_attachment() takes bytes or an Attachment, got {type(data).__name__}")
        self.attachments = [*self.attachments, attachment]  # an assignment: a stored message is edited
        return attachment

    def add_reaction(self, emoji: str, user_id: str) -> bool:
        """Record ``user_id``'s reaction; False if it was already there."""
        users = self.reactions.get(emoji, [])
        if user_id in users:
            return False
        self.reactions = {**self.reactions, emoji: [*users, user_id]}
        return True

    def remove_reaction(self, emoji: str, user_id: str) -> bool:
        """Remove ``user_id``'s reaction; False if there was none."""
        users = self.reactions.get(emoji, [])
        if user_id not in users:
            return False
        reactions = {**self.reactions, emoji: [u for u in users if u != user_id]}
        if not reactions[emoji]:
            del reactions[emoji]
        self.reactions = reactions
        return True


class SearchHit(msgspec.Struct, frozen=True, kw_only=True):
    """A message ``ThreadStore.search`` found: where it is, how well it matched (higher is
    better; scores compare within one search and one backend only) and ``snippet``, a short
    plain-text excerpt around the first match with the matched words marked ``[word]``.

    Attributes:
        thread_id: the thread holding the message.
        message_id: the message found.
        sequence: its position in the thread.
        role: its role.
        score: BM25-like relevance; higher is better. On a few messages a word found in most of
            them weighs almost nothing (FTS5's rule, which memory follows), so print it with a
            format such as ``:.3g``, not ``:.3f``.
        snippet: plain text around the first match, matched words as ``[word]``.
        title: the thread's title, so a results page needs no get() per hit.
    """

    thread_id: str
    message_id: str
    sequence: int
    role: str
    score: float
    snippet: str
    title: str = ""


class ThreadSummary(msgspec.Struct, frozen=True, kw_only=True):
    """A thread as ``ThreadStore.list_threads`` shows it, without its messages: the number of
    stored messages and the one with the highest sequence (None when there is none)."""

    id: str
    title: str
    attributes: dict[str, Any] = {}
    platforms: dict[str, dict[str, Any]] = {}
    source: dict[str, Any] | None = None
    created_at: datetime
    updated_at: datetime
    message_count: int = 0
    last_message: Message | None = None


class ThreadPage(msgspec.Struct, frozen=True, kw_only=True):
    """One page of ``ThreadStore.list_threads``: pass ``next_cursor`` back for the next page;
    None on the last one."""

    threads: list[ThreadSummary]
    next_cursor: str | None = None


class Thread(msgspec.Struct, kw_only=True, dict=True):
    """A conversation: ordered messages plus attributes and platform references.

    ``platforms`` maps a platform name to its reference (``{"slack": {"channel": "C1"}}``);
    ``source`` is the same idea spelled as one dict with a ``"name"`` key.

    Attributes:
        id: a new random UUID unless given.
        title: "Untitled Thread" unless given; searched by search_by_title.
        messages: in order; add them with add_message.
        attributes: your own JSON data (find_by_attributes, search(attributes=...)).
        platforms: platform name -> its reference dict.
        source: where the thread came from, a dict with a "name" key, or None.
        created_at: aware UTC.
        updated_at: aware UTC; set by each save, and the order of list_recent and list_threads.
    """

    id: str = msgspec.field(default_factory=_new_thread_id)
    title: str = "Untitled Thread"
    messages: list[Message] = []
    attributes: dict[str, Any] = {}
    platforms: dict[str, dict[str, Any]] = {}
    source: dict[str, Any] | None = None
    created_at: datetime = msgspec.field(default_factory=utcnow)
    updated_at: datetime = msgspec.field(default_factory=utcnow)

    def __post_init__(self) -> None:
        if not _trust.on:
            self.validate()

    def validate(self) -> None:
        """Check the fields and normalise the times to UTC; run again at save, since fields
        may have been assigned since construction."""
        _require(self.id, str, "Thread.id")
        if not self.id:
            raise ValueError("Thread.id must not be empty")
        _require(self.title, str, "Thread.title")
        _require(self.messages, list, "Thread.messages")
        _require(self.attributes, dict, "Thread.attributes")
        _require(self.platforms, dict, "Thread.platforms")
        for name, reference in self.platforms.items():
            _require(reference, dict, f"Thread.platforms[{name!r}]")
        _require(self.source, (dict, type(None)), "Thread.source")
        if self.source is not None and not isinstance(self.source.get("name"), str):
            raise ValueError("Thread.source must have a string 'name' key")
        for field in ("created_at", "updated_at"):
            value = getattr(self, field)
            if type(value) is not datetime or value.tzinfo is not UTC:
                setattr(self, field, as_utc(value, f"Thread.{field}"))

    # -- messages --------------------------------------------------------------------------

    def add_message(self, message: Message) -> None:
        """Append ``message`` with the next sequence; a system message goes first, sequence 0."""
        _require(message, Message, "message")
        if message.role == "system":
            message.sequence = 0
            self.messages.insert(0, message)
        else:
            last = self.messages[-1].sequence if self.messages else 0
            message.sequence = (last or 0) + 1
            self.messages.append(message)
        message.thread_id = self.id
        self.updated_at = utcnow()

    def remove_message(self, message_id: str) -> bool:
        """Remove the message with that id; the next save deletes it. False if absent."""
        for index, message in enumerate(self.messages):
            if message.id == message_id:
                del self.messages[index]
                self.updated_at = utcnow()
                return True
        return False

    def clear_messages(self) -> None:
        """Remove every message; the next save deletes the stored ones."""
        self.messages = []
        self.updated_at = utcnow()

    def get_message(self, message_id: str) -> Message | None:
        """The message with that id, or None."""
        return next((m for m in self.messages if m.id == message_id), None)

    def mark_edited(self, message: Message | str) -> None:
        """Have the next save write this message again.

        Assigning a field (``message.content = ...``) marks it by itself; call this after
        changing a nested value in place (``message.attributes["k"] = v``).
        """
        message_id = message.id if isinstance(message, Message) else message
        found = self.get_message(message_id)
        if found is None or (isinstance(message, Message) and found is not message):
            raise ValueError(f"message {message_id!r} is not in thread {self.id!r}")
        state = self.__dict__.get(SYNC)  # a tracking.SyncState
        if state is not None:
            state.edits[found.id] = found

    def ensure_system_prompt(self, prompt: str) -> None:
        """Put a system message with ``prompt`` first unless the thread already starts with one."""
        if not self.messages or self.messages[0].role != "system":
            self.add_message(Message(role="system", content=prompt))

    def get_system_message(self) -> Message | None:
        """The system message, if any."""
        return next((m for m in self.messages if m.role == "system"), None)

    def get_last_message_by_role(self, role: Role) -> Message | None:
        """The most recent message with that role, or None."""
        return next((m for m in reversed(self.messages) if m.role == role), None)

    def get_messages_in_sequence(self) -> list[Message]:
        """Messages ordered by sequence."""
        return sorted(self.messages, key=lambda m: m.sequence if m.sequence is not None else 0)

    def get_messages_for_chat_completion(self) -> list[dict[str, Any]]:
        """Messages as OpenAI chat-completion dicts (tool calls and tool results included)."""
        result: list[dict[str, Any]] = []
        for message in self.get_messages_in_sequence():
            entry: dict[str, Any] = {"role": message.role, "content": message.content}
            if message.name:
                entry["name"] = message.name
            if message.tool_calls:
                entry["tool_calls"] = message.tool_calls
            if message.role == "tool":
                entry["tool_call_id"] = message.tool_call_id
            result.append(entry)
        return result

    def get_message_counts(self) -> dict[str, int]:
        """How many messages of each role."""
        counts = dict.fromkeys(_COUNTED, 0)
        for message in self.messages:
            counts[message.role] = counts.get(message.role, 0) + 1
        return counts

    def get_total_tokens(self) -> dict[str, Any]:
        """Token usage from message metrics: ``{"overall": {...}, "by_model": {model: {...}}}``.

        Read as ``get_usage_stats`` reads them: JSON numbers count (truncated), anything else 0.
        """
        keys = ("prompt_tokens", "completion_tokens", "total_tokens")
        overall = dict.fromkeys(keys, 0)
        by_model: dict[str, dict[str, int]] = {}
        for message in self.messages:
            model, *counts = message_tokens(message.metrics)
            for key, count in zip(keys, counts, strict=True):
                overall[key] += count
            if model is not None:
                entry = by_model.setdefault(model, {"calls": 0, **dict.fromkeys(keys, 0)})
                entry["calls"] += 1
                for key, count in zip(keys, counts, strict=True):
                    entry[key] += count
        return {"overall": overall, "by_model": by_model}

    def get_model_usage(self, model_name: str | None = None) -> dict[str, Any]:
        """Usage per model, or for one model (empty dict when unused)."""
        by_model: dict[str, Any] = self.get_total_tokens()["by_model"]
        return by_model if model_name is None else by_model.get(model_name, {})

    # -- reactions --------------------------------------------------------------------------

    def add_reaction(self, message_id: str, emoji: str, user_id: str) -> bool:
        """React to a message; False if the message is absent or the reaction already there."""
        message = self.get_message(message_id)
        return message is not None and message.add_reaction(emoji, user_id)

    def remove_reaction(self, message_id: str, emoji: str, user_id: str) -> bool:
        """Withdraw a reaction; False if the message or the reaction is absent."""
        message = self.get_message(message_id)
        return message is not None and message.remove_reaction(emoji, user_id)

    def get_reactions(self, message_id: str) -> dict[str, list[str]]:
        """A message's reactions (emoji -> user ids); empty when the message is absent."""
        message = self.get_message(message_id)
        return {} if message is None else {k: list(v) for k, v in message.reactions.items()}


class AliasRecord(msgspec.Struct, frozen=True):
    """An alias of an exported thread and when it was saved."""

    alias: str
    created_at: datetime


class ThreadRecord(Thread, kw_only=True):
    """A thread with its messages and its aliases: one line of an export."""

    aliases: list[AliasRecord] = msgspec.field(default_factory=list)
