"""The JSON that crosses the Backend seam: the plans a write hands a backend, and the decoders
of what a read gives back.

Each changed message is encoded once and checked to read back unchanged (round trip, nesting
depth, NUL characters), so every backend stores exactly the same JSON and rejects the same
values. System messages are never written. Attachments are written as metadata only: their
bytes go to a FileStore first (threadstore.attachments).
"""

from __future__ import annotations

import copy
import re
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any

import msgspec

from threadstore import checks, fulltext, matching
from threadstore.backends import AppendPlan, SavePlan, SearchRow, ThreadCopy, UsageCounts
from threadstore.models import (
    AliasRecord,
    Attachment,
    Message,
    SearchHit,
    Thread,
    ThreadRecord,
    ThreadSummary,
    as_utc,
    compact_metrics,
    decoding_stored,
    utcnow,
)
from threadstore.tracking import Changes, set_quietly


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
_set_field = msgspec.Struct.__setattr__  # on a document's own copy: no edit to track
# Decoders that check what was encoded reads back unchanged, on every backend.
_decode_any = msgspec.json.Decoder(float_hook=_checked_float).decode
_decode_message = msgspec.json.Decoder(Message, float_hook=_checked_float).decode
decode_thread = decoding_stored(msgspec.json.Decoder(Thread).decode)
decode_threads = decoding_stored(msgspec.json.Decoder(list[Thread]).decode)
decode_messages = decoding_stored(msgspec.json.Decoder(list[Message]).decode)
decode_message = decoding_stored(msgspec.json.Decoder(Message).decode)
decode_summaries = decoding_stored(msgspec.json.Decoder(list[ThreadSummary]).decode)
decode_usage = msgspec.json.Decoder(UsageCounts).decode
decode_page = msgspec.json.Decoder(list[tuple[ThreadRecord, list[AliasRecord]]]).decode
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
    """_round_trips for a Message (after validate), which also decodes to Message's field types:
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


def _refused_float(value: Any, path: str) -> str | None:
    """The JSON path (``$.field["key"][0]``) of the first float in ``value`` _checked_float
    refuses, or None."""
    if isinstance(value, float):
        try:
            _checked_float(_encode(value).decode())
        except ValueError:
            return path
        return None
    if isinstance(value, msgspec.Struct):
        items: Any = ((f".{f}", getattr(value, f)) for f in value.__struct_fields__)
    elif isinstance(value, dict):
        items = ((f"[{_encode(str(k)).decode()}]", v) for k, v in value.items())
    elif isinstance(value, list | tuple):
        items = ((f"[{i}]", v) for i, v in enumerate(value))
    else:
        return None
    return next((found for step, item in items if (found := _refused_float(item, path + step))), None)


def _check_round_trip(value: Any, raw: bytes, what: str, decode: Callable[[bytes], Any]) -> None:
    try:
        back = decode(raw)
    except msgspec.ValidationError as exc:
        # msgspec writes a dict key of the path as [...]: spell the path out instead.
        reason, _, _ = str(exc).partition(" - at `")
        where = _refused_float(value, "$")
        raise ValueError(f"{what} is invalid: {reason}" + (f" - at `{where}`" if where else "")) from None
    if isinstance(value, Message) and not value.metrics:
        back.metrics = value.metrics  # {} reads back as the default layout, which it stands for
    if back != value:
        if isinstance(value, Message):  # name the field
            what = next(
                f"Message.{f} of {what}"
                for f in value.__struct_fields__
                if getattr(back, f) != getattr(value, f)
            )
        raise ValueError(f"{what} {_NOT_JSON}")


def field_json(value: Any, field: str) -> bytes:
    """A thread field encoded; ValueError/TypeError naming ``field`` unless it reads back equal."""
    return _checked_json(value, field, _decode_any)


def message_doc(message: Message, stored: Mapping[int, Attachment]) -> bytes:
    """One message as a JSON document, checked to decode back to an equal Message. Attachments
    are written as ``stored`` has them (after their bytes went to a FileStore), without content."""
    message.validate()
    checks.check_id(message.id, "Message.id")
    doc = message
    if message.attachments:
        attachments = [
            msgspec.structs.replace(stored.get(id(a), a), content=None) for a in message.attachments
        ]
        doc = msgspec.structs.replace(message, attachments=attachments)
    metrics = compact_metrics(message)
    if metrics is not message.metrics:
        doc = copy.copy(doc) if doc is message else doc  # a copy: replace() would validate again
        _set_field(doc, "metrics", metrics)
    return _checked_json(doc, f"message {message.id!r}", _decode_message)


def message_docs(messages: list[Message], stored: Mapping[int, Attachment]) -> bytes:
    if not messages:
        return b"[]"
    # One copy of the documents: b",".join gives a single document back as it is.
    return b"".join([b"[", b",".join([message_doc(m, stored) for m in messages]), b"]"])


def wanted(value: object, what: str) -> bytes:
    """A dict of search values, as checked JSON."""
    if not isinstance(value, dict):
        raise TypeError(f"{what} must be a dict, got {type(value).__name__}")
    return field_json(value, what)


def save_plan(
    thread: Thread, changes: Changes | None = None, stored: Mapping[int, Attachment] | None = None
) -> SavePlan:
    """What a save of ``thread`` writes (the thread row, and ``changes`` when given), checked: a
    bad value raises ValueError/TypeError naming the field before anything is stored."""
    thread.validate()
    checks.check_id(thread.id, "Thread.id")
    matching.check_text(thread.title, "Thread.title")
    return SavePlan(
        thread_id=thread.id,
        title=thread.title,
        attributes=field_json(thread.attributes, "Thread.attributes"),
        platforms=field_json(thread.platforms, "Thread.platforms"),
        source=None if thread.source is None else field_json(thread.source, "Thread.source"),
        platform_values=_encode(matching.platform_index(thread.platforms)),
        created_at=thread.created_at,
        updated_at=thread.updated_at,
        new=message_docs(changes.new, stored or {}) if changes else b"[]",
        new_count=len(changes.new) if changes else 0,
        edited=message_docs(changes.edited, stored or {}) if changes else b"[]",
        removed=changes.removed if changes else [],
        synced=changes.synced if changes else False,
    )


def append_plan(
    thread_id: str, batch: list[Message], stored: Mapping[int, Attachment], create: bool = False
) -> AppendPlan:
    """What append() writes: ``batch`` after the stored messages of the thread, checked; with
    ``create``, the empty thread (``Thread(id=thread_id)``) to store first when it is absent."""
    now = utcnow()
    return AppendPlan(
        thread_id=thread_id,
        messages=message_docs(batch, stored),
        count=len(batch),
        updated_at=now,
        create=save_plan(Thread(id=thread_id, created_at=now, updated_at=now)) if create else None,
    )


def import_copy(thread: Thread, stored: Mapping[int, Attachment]) -> ThreadCopy:
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
            set_quietly(message, "sequence", last)
        set_quietly(message, "thread_id", thread.id)
    aliases: dict[str, datetime] = {}
    for record in thread.aliases if isinstance(thread, ThreadRecord) else []:
        if not isinstance(record, AliasRecord):
            raise TypeError(f"ThreadRecord.aliases holds AliasRecords, got {type(record).__name__}")
        if checks.check_alias(record.alias) in aliases:
            raise ValueError(f"Thread {thread.id!r} lists the alias {record.alias!r} twice")
        aliases[record.alias] = as_utc(record.created_at, "AliasRecord.created_at")
    plan = msgspec.structs.replace(
        save_plan(thread), new=message_docs(messages, stored), new_count=len(messages)
    )
    return ThreadCopy(plan=plan, last_sequence=last, aliases=list(aliases.items()))


def usage_stats(doc: bytes) -> dict[str, Any]:
    """get_usage_stats()'s answer from the backend's counts (a UsageCounts document)."""
    counts = decode_usage(doc)
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


def search_hits(rows: list[SearchRow], query: fulltext.Query) -> list[SearchHit]:
    """search()'s answer from the backend's rows, each with its snippet."""
    return [
        SearchHit(
            thread_id=r.thread_id,
            message_id=r.message_id,
            sequence=r.sequence,
            role=r.role,
            score=r.score,
            snippet=fulltext.snippet(r.text, query),
            title=r.title,
        )
        for r in rows
    ]
