"""SQLite's JSON shapes: message documents taken apart into rows, thread documents and
summaries joined as text from rows, what the indexers store, and the SQL functions search.sql
calls (threadstore.matching's code, so SQLite answers exactly as the memory backend does).
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import Any

import msgspec

from threadstore import fulltext, matching

# Longer message texts stay out of the trigram index (it holds a term per character): content
# searches test them one by one.
_MAX_TRIGRAM_TEXT = 100_000


def text_time(value: datetime) -> str:
    """A time as stored: ISO-8601 UTC text with microseconds, so text order is time order."""
    return value.astimezone(UTC).isoformat(timespec="microseconds")


_decode = msgspec.json.decode
# Parameters repeat on every row of a scan; stored documents differ per row.
_decode_param = functools.lru_cache(maxsize=64)(msgspec.json.decode)


_encode = msgspec.json.encode

# The messages table's columns, in the order of the rows message_row builds.
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


class MessageDoc(msgspec.Struct):
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


decode_docs = msgspec.json.Decoder(list[MessageDoc]).decode


def message_row(doc: MessageDoc, thread_id: str, sequence: int | None) -> tuple[Any, ...]:
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


def header(
    id: str, title: str, attributes: str, platforms: str, source: str | None, created_at: str, updated_at: str
) -> str:
    """The start of a thread document, up to its messages array, from the thread's columns."""
    return (
        f'{{"id":{_quote(id)},"title":{_quote(title)},"attributes":{attributes},'
        f'"platforms":{platforms},"source":{source or "null"},"created_at":"{created_at}",'
        f'"updated_at":"{updated_at}","messages":['
    )


def thread_documents(rows: Iterable[tuple[Any, ...]]) -> str:
    """Thread documents, joined by commas, from rows as threads.get and threads.list_recent give
    them: a thread's row (its sequence NULL), then its messages' rows. The columns hold JSON
    threadstore wrote, joined as text; strings are quoted; times are ISO text."""
    out: list[str] = []
    thread_id = comma = ""
    for row in rows:
        if row[1] is None:
            out.append(("]}," if out else "") + header(*row[2:9]))
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


def summaries(rows: Iterable[tuple[Any, ...]]) -> str:
    """A JSON array of ThreadSummary documents from bounded.list_threads rows: a thread's columns,
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


def optional(document: str | bytes | None) -> Any:
    return None if document is None else _decode(document)


def indexed_text(content: str | bytes | None) -> tuple[str | None, str | None] | None:
    """What message_words holds for a message's content (JSON; migration 0004): its words
    for message_fts (None without any) and its folded text for message_trigrams (None when too
    long); None without content text."""
    text = matching.content_text(optional(content))
    if text is None:
        return None
    folded = matching.fold(text) if len(text) <= _MAX_TRIGRAM_TEXT else None
    return fulltext.fts5_text_of(text), folded


def trigram_query(literals: Sequence[str]) -> str:
    """The FTS5 query finding texts that hold every one of ``literals``: a phrase each."""
    return " ".join('"' + literal.replace('"', '""') + '"' for literal in literals)


# The functions search.sql calls, registered on each connection: threadstore.matching's code,
# so SQLite answers exactly as the memory backend does.
FUNCTIONS: dict[str, Any] = {
    "regexp": lambda pattern, text: (
        None if pattern is None or text is None else matching.matcher(pattern)(text)
    ),
    "threadstore_content_text": lambda content: matching.content_text(optional(content)),
    "threadstore_has_reference": lambda platforms, name, reference: matching.has_reference(
        _decode(platforms), name, _decode_param(reference)
    ),
    "threadstore_has_all": lambda document, wanted: matching.contains_all(
        _decode(document), _decode_param(wanted)
    ),
    "threadstore_platform_match": lambda platforms, source, name, wanted: matching.platform_match(
        _decode(platforms), optional(source), name, _decode_param(wanted)
    ),
    "threadstore_value_equals": lambda document, keys, value: matching.value_equals(
        _decode(document), _decode_param(keys), _decode_param(value)
    ),
}
