"""The in-memory backend: the reference semantics every SQL backend must match.

It keeps decoded copies of what it was given and hands out freshly encoded documents, so a
caller mutating a returned Thread never changes the store. Each write runs without an await,
so it is atomic on the event loop; it checks everything before it changes anything. Searches
go over the threads or messages stored when they start, letting other tasks run every few
milliseconds (backends.sliced), as a SQL backend's read runs beside writes.
"""

from __future__ import annotations

import asyncio
import bisect
import builtins
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import msgspec

from threadstore import fulltext, matching
from threadstore.backends.base import (
    AppendPlan,
    ByAttributes,
    ByContent,
    ByPlatform,
    ByPlatformReference,
    ByTitle,
    MessageSearch,
    ReplicaStatus,
    SavePlan,
    SchemaStatus,
    SearchRow,
    ThreadCopy,
    ThreadSearch,
    UsageCounts,
    alias_taken,
    message_stored,
    sliced,
)
from threadstore.config import DatabaseConfig
from threadstore.errors import ThreadStoreError
from threadstore.models import Message

_encode = msgspec.json.Encoder().encode
_decode = msgspec.json.decode
_decode_messages = msgspec.json.Decoder(list[Message]).decode


@dataclass
class _Row:
    title: str
    attributes: msgspec.Raw
    platforms: msgspec.Raw
    source: msgspec.Raw | None
    created_at: datetime
    updated_at: datetime
    last_sequence: int = 0
    messages: dict[str, Message] = field(default_factory=dict)
    aliases: dict[str, datetime] = field(default_factory=dict)  # alias -> created_at

    def header(self, thread_id: str) -> dict[str, Any]:
        return {
            "id": thread_id,
            "title": self.title,
            "attributes": self.attributes,
            "platforms": self.platforms,
            "source": self.source,
            "created_at": self.created_at,
            "updated_at": self.updated_at,
        }


class MemoryBackend:
    """Threads in dicts, compared and ordered exactly as the SQL backends do."""

    name = "memory"
    loop_bound = False

    def __init__(self) -> None:
        self._threads: dict[str, _Row] = {}
        # message id -> the threads holding a message of that id (ids from outside may repeat
        # across threads: each thread holds its own message)
        self._owners: dict[str, set[str]] = {}
        self._aliases: dict[str, str] = {}  # alias -> thread id
        # message id -> (the stored Message object, its text, its indexed words): recomputed
        # when the object stored under that id changes (saves store new objects).
        self._words: dict[str, tuple[Message, str | None, fulltext.Document]] = {}

    async def open(self) -> None:
        pass

    async def close(self) -> None:
        pass

    def abandon(self) -> None:
        pass

    async def ping(self) -> None:
        pass

    async def write_token(self) -> int:
        return 0  # one database, no replicas: every read sees every write

    async def reads_after(self, position: int) -> None:
        pass

    async def replica_status(self) -> builtins.list[ReplicaStatus]:
        return []

    engine = None

    def session(self) -> Any:
        raise ThreadStoreError("the in-memory store has no database session")

    async def migrate(self) -> list[int]:
        return []

    async def schema_status(self) -> SchemaStatus:
        return SchemaStatus(0, [])

    def _doc(self, thread_id: str, row: _Row) -> dict[str, Any]:
        messages = sorted(row.messages.values(), key=lambda m: m.sequence or 0)
        return {**row.header(thread_id), "messages": messages}

    async def get(self, thread_id: str) -> bytes | None:
        row = self._threads.get(thread_id)
        return None if row is None else _encode(self._doc(thread_id, row))

    async def list_recent(self, limit: int | None, offset: int) -> bytes:
        return self._page(self._threads.items(), limit, offset)

    async def get_messages(self, thread_id: str, limit: int, before: int, after: int | None) -> bytes | None:
        row = self._threads.get(thread_id)
        if row is None:
            return None
        ordered = sorted(row.messages.values(), key=lambda m: m.sequence or 0)
        if after is not None:
            chosen = [m for m in ordered if after < (m.sequence or 0) < before][:limit]
        else:
            below = [m for m in ordered if (m.sequence or 0) < before]
            chosen = below[max(len(below) - limit, 0) :] if limit else []
        return _encode({**row.header(thread_id), "messages": chosen})

    async def list_threads(
        self, limit: int, after: tuple[datetime, str] | None, wanted: bytes | None
    ) -> bytes:
        attributes = None if wanted is None else _decode(wanted)
        rows = [
            (row.updated_at, thread_id, row)
            for thread_id, row in self._threads.items()
            if (after is None or (row.updated_at, thread_id) < after)
            and (attributes is None or matching.contains_all(_decode(row.attributes), attributes))
        ]
        rows.sort(key=lambda item: item[:2], reverse=True)
        summaries = []
        for _, thread_id, row in rows[:limit]:
            last = max(row.messages.values(), key=lambda m: m.sequence or 0, default=None)
            summaries.append(
                {**row.header(thread_id), "message_count": len(row.messages), "last_message": last}
            )
        return _encode(summaries)

    async def delete_threads(self, cutoff: datetime, wanted: bytes | None, batch: int, dry_run: bool) -> int:
        # Other tasks run between batches, as they do on the SQL backends; the batch itself is
        # chosen and deleted without an await, so atomically.
        await asyncio.sleep(0)
        attributes = None if wanted is None else _decode(wanted)
        doomed = sorted(
            (row.updated_at, thread_id)
            for thread_id, row in self._threads.items()
            if row.updated_at < cutoff
            and (attributes is None or matching.contains_all(_decode(row.attributes), attributes))
        )
        if dry_run:
            return len(doomed)
        return await self.delete_many([thread_id for _, thread_id in doomed[:batch]])

    async def prune_messages(self, thread_id: str, keep_last: int) -> int | None:
        row = self._threads.get(thread_id)
        if row is None:
            return None
        ordered = sorted(row.messages.values(), key=lambda m: m.sequence or 0)
        doomed = ordered[: max(len(ordered) - keep_last, 0)]
        for message in doomed:
            del row.messages[message.id]
            self._disown(message.id, thread_id)
        return len(doomed)

    def _page(self, rows: Iterable[tuple[str, _Row]], limit: int | None, offset: int) -> bytes:
        order = sorted(rows, key=lambda item: (item[1].updated_at, item[0]), reverse=True)
        page = order[offset:] if limit is None else order[offset : offset + limit]
        return _encode([self._doc(thread_id, row) for thread_id, row in page])

    def _new_row(self, plan: SavePlan) -> _Row:
        return _Row(
            title=plan.title,
            attributes=msgspec.Raw(plan.attributes),
            platforms=msgspec.Raw(plan.platforms),
            source=None if plan.source is None else msgspec.Raw(plan.source),
            created_at=plan.created_at,
            updated_at=plan.updated_at,
        )

    def _disown(self, message_id: str, thread_id: str) -> None:
        owners = self._owners[message_id]
        owners.discard(thread_id)
        if not owners:
            del self._owners[message_id]

    async def save(self, plan: SavePlan) -> dict[str, int] | None:
        row = self._threads.get(plan.thread_id)
        if row is None and plan.synced:
            return None  # deleted since the Thread was loaded or saved: not recreated
        new: builtins.list[Message] = _decode_messages(plan.new)
        edited: builtins.list[Message] = _decode_messages(plan.edited)
        held = {} if row is None else row.messages
        fresh = [m for m in new if m.id not in held]
        if row is None:
            row = self._threads[plan.thread_id] = self._new_row(plan)
        else:
            update = self._new_row(plan)
            row.title, row.attributes, row.platforms = update.title, update.attributes, update.platforms
            row.source, row.updated_at = update.source, update.updated_at
        sequences: dict[str, int] = {}
        for message in [*new, *edited]:
            stored = held.get(message.id)
            if stored is not None:
                message.sequence, message.thread_id = stored.sequence, plan.thread_id
                held[message.id] = message
                sequences[message.id] = stored.sequence or 0
        sequences.update(self._insert(plan.thread_id, row, fresh))
        for message_id in plan.removed:
            if row.messages.pop(message_id, None) is not None:
                self._disown(message_id, plan.thread_id)
        return sequences

    def _insert(self, thread_id: str, row: _Row, messages: builtins.list[Message]) -> dict[str, int]:
        """Store messages after the thread's last sequence; their id -> sequence."""
        sequences = {}
        for message in messages:
            row.last_sequence += 1
            message.sequence, message.thread_id = row.last_sequence, thread_id
            row.messages[message.id] = message
            self._owners.setdefault(message.id, set()).add(thread_id)
            sequences[message.id] = row.last_sequence
        return sequences

    async def append(self, plan: AppendPlan) -> tuple[bytes, dict[str, int]] | None:
        row = self._threads.get(plan.thread_id)
        if row is None:
            if plan.create is None:
                return None
            row = self._new_row(plan.create)  # stored below, once the messages are checked
        messages = _decode_messages(plan.messages)
        for message in messages:
            if message.id in row.messages:
                raise message_stored(message.id)
        self._threads[plan.thread_id] = row
        sequences = self._insert(plan.thread_id, row, messages)
        row.updated_at = plan.updated_at
        return _encode({**row.header(plan.thread_id), "messages": []}), sequences

    async def pop_message(self, thread_id: str, updated_at: datetime) -> bytes | None:
        row = self._threads.get(thread_id)
        if row is None or not row.messages:
            return None
        newest = max(row.messages.values(), key=lambda m: m.sequence or 0)
        del row.messages[newest.id]
        self._disown(newest.id, thread_id)
        row.updated_at = updated_at
        return _encode(newest)

    async def create_if_absent(self, plan: SavePlan) -> None:
        if plan.thread_id not in self._threads:
            self._threads[plan.thread_id] = self._new_row(plan)

    async def delete(self, thread_id: str) -> bool:
        row = self._threads.pop(thread_id, None)
        if row is None:
            return False
        for message_id in row.messages:
            self._disown(message_id, thread_id)
        for alias in row.aliases:
            del self._aliases[alias]
        return True

    async def delete_many(self, thread_ids: Sequence[str]) -> int:
        return sum([await self.delete(thread_id) for thread_id in dict.fromkeys(thread_ids)])

    async def attachment_references(self, refs: Sequence[str] | None) -> set[str]:
        found = {
            value
            for row in self._threads.values()
            for message in row.messages.values()
            for a in message.attachments
            for value in (a.storage_path, a.file_id)
            if value is not None
        }
        return found if refs is None else found.intersection(refs)

    # -- searches, lookups, aliases, statistics ---------------------------------------------

    async def find_threads(self, search: ThreadSearch, limit: int | None, offset: int) -> bytes:
        # On the loop, so the search stays atomic: RE2 scans a 5 MB message in 4-17 ms (3 of
        # them, the worst pattern of tests/contract/test_search_time.py: 51 ms, loop gap 61 ms).
        # Over the threads stored when it starts, letting other tasks run meanwhile.
        matches = self._matcher(search)
        rows = builtins.list(self._threads.items())
        return self._page([(i, row) async for i, row in sliced(rows) if matches(row)], limit, offset)

    @staticmethod
    def _matcher(search: ThreadSearch) -> Callable[[_Row], bool]:
        match search:
            case ByTitle(pattern=pattern, wanted=wanted):
                found = matching.matcher(pattern.re2)
                if wanted is None:
                    return lambda row: found(row.title)
                attributes = _decode(wanted)
                return lambda row: (
                    found(row.title) and matching.contains_all(_decode(row.attributes), attributes)
                )
            case ByContent(pattern=pattern):
                found = matching.matcher(pattern.re2)

                def any_message(row: _Row) -> bool:
                    texts = (matching.content_text(m.content) for m in row.messages.values())
                    return any(text is not None and found(text) for text in texts)

                return any_message
            case ByPlatformReference(platform=platform, reference=reference):
                value = _decode(reference)
                return lambda row: matching.has_reference(_decode(row.platforms), platform, value)
            case ByAttributes(wanted=wanted):
                attributes = _decode(wanted)
                return lambda row: matching.contains_all(_decode(row.attributes), attributes)
            case ByPlatform(name=name, wanted=wanted):
                properties = _decode(wanted)
                return lambda row: matching.platform_match(
                    _decode(row.platforms),
                    None if row.source is None else _decode(row.source),
                    name,
                    properties,
                )
        raise TypeError(f"unknown search {search!r}")

    async def find_messages_by_attribute(
        self, search: MessageSearch, limit: int | None, offset: int
    ) -> bytes:
        value = _decode(search.value)
        found = sorted(
            (
                m
                for row in self._threads.values()
                for m in row.messages.values()
                if matching.value_equals(getattr(m, search.column), search.keys, value)
            ),
            key=lambda m: (m.thread_id or "", m.sequence or 0),
        )
        return _encode(found[offset:] if limit is None else found[offset : offset + limit])

    def _indexed(self, message: Message) -> tuple[str | None, fulltext.Document]:
        cached = self._words.get(message.id)
        if cached is None or cached[0] is not message:
            text = matching.content_text(message.content)
            doc = fulltext.document("" if text is None else text)
            cached = self._words[message.id] = (message, text, doc)
        return cached[1], cached[2]

    async def search(
        self, query: fulltext.Query, wanted: bytes | None, limit: int, offset: int
    ) -> builtins.list[SearchRow]:
        # Over the messages stored when it starts, letting other tasks run meanwhile
        # (a search over 3,000 long messages held the loop for seconds).
        for gone in self._words.keys() - self._owners.keys():
            del self._words[gone]
        messages = [(row, m) for row in self._threads.values() for m in row.messages.values()]
        attributes = None if wanted is None else _decode(wanted)
        having = [0] * len(query.phrases())
        total = lengths = 0
        found = []
        async for row, m in sliced(messages):
            text, doc = self._indexed(m)
            if not doc.length:
                continue
            total += 1
            lengths += doc.length
            freqs = fulltext.frequencies(query, doc)
            for k, freq in enumerate(freqs):
                having[k] += freq > 0
            if fulltext.matches(query, doc, freqs) and (
                attributes is None or matching.contains_all(_decode(row.attributes), attributes)
            ):
                found.append((m, text, doc, freqs))
        weights = fulltext.bm25_weights(having, total)
        average = lengths / total if total else 1.0
        found.sort(key=lambda hit: (hit[0].timestamp, hit[0].id, hit[0].thread_id or ""), reverse=True)
        ranked = [
            (
                fulltext.bm25(freqs, doc.length, weights, average),
                m.timestamp,
                m.id,
                m.thread_id or "",
                m,
                text,
            )
            for m, text, doc, freqs in found[: fulltext.RANKED]  # the newest (fulltext.RANKED)
        ]
        ranked.sort(key=lambda hit: hit[:4], reverse=True)
        hits = []
        for s, _, _, _, m, text in ranked[offset : offset + limit]:
            owner = self._threads.get(m.thread_id or "")  # None: deleted while the search ran
            title = "" if owner is None else owner.title
            hits.append(SearchRow(m.thread_id or "", m.id, m.sequence or 0, m.role, s, text or "", title))
        return hits

    async def get_thread_by_message_id(self, message_id: str) -> bytes | None:
        owners = self._owners.get(message_id)
        return None if owners is None else await self.get(min(owners))

    async def save_thread_alias(self, alias: str, thread_id: str, created_at: datetime) -> bool:
        row = self._threads.get(thread_id)
        if row is None:
            return False
        previous = self._aliases.get(alias)
        if previous != thread_id:
            if previous is not None:
                del self._threads[previous].aliases[alias]
            self._aliases[alias] = thread_id
            row.aliases[alias] = created_at
        return True

    async def get_by_alias(self, alias: str) -> bytes | None:
        thread_id = self._aliases.get(alias)
        return None if thread_id is None else await self.get(thread_id)

    async def delete_thread_alias(self, alias: str) -> bool:
        thread_id = self._aliases.pop(alias, None)
        if thread_id is None:
            return False
        del self._threads[thread_id].aliases[alias]
        return True

    async def get_thread_aliases(self, thread_id: str) -> builtins.list[str]:
        row = self._threads.get(thread_id)
        if row is None:
            return []
        return [alias for alias, _ in sorted(row.aliases.items(), key=lambda item: (item[1], item[0]))]

    async def get_usage_stats(self, hour_ago: datetime, day_ago: datetime, week_ago: datetime) -> bytes:
        rows = self._threads.values()
        models: dict[str | None, tuple[int, int, int]] = {}
        for row in rows:
            for message in row.messages.values():
                model, prompt, completion, total = matching.message_tokens(message.metrics)
                p, c, t = models.get(model, (0, 0, 0))
                models[model] = (p + prompt, c + completion, t + total)
        return _encode(
            UsageCounts(
                threads=len(self._threads),
                messages=sum(len(row.messages) for row in rows),
                last_hour=sum(row.updated_at >= hour_ago for row in rows),
                last_day=sum(row.updated_at >= day_ago for row in rows),
                last_week=sum(row.updated_at >= week_ago for row in rows),
                models=[(model, *sums) for model, sums in models.items()],
            )
        )

    # -- export, import, copy ---------------------------------------------------------------

    async def export_threads(self, after: str | None, limit: int) -> bytes:
        ids = sorted(self._threads)
        start = 0 if after is None else bisect.bisect_right(ids, after)
        page = []
        for thread_id in ids[start : start + limit]:
            row = self._threads[thread_id]
            aliases = sorted(row.aliases.items(), key=lambda item: (item[1], item[0]))
            page.append(
                (self._doc(thread_id, row), [{"alias": alias, "created_at": at} for alias, at in aliases])
            )
        return _encode(page)

    async def existing_ids(self, thread_ids: Sequence[str]) -> builtins.list[str]:
        return [thread_id for thread_id in thread_ids if thread_id in self._threads]

    async def import_threads(self, copies: Sequence[ThreadCopy]) -> builtins.list[str]:
        fresh = [
            (copy, _decode_messages(copy.plan.new))
            for copy in copies
            if copy.plan.thread_id not in self._threads
        ]
        aliases: set[str] = set()
        for copy, _ in fresh:  # check everything before changing anything
            for alias, _ in copy.aliases:
                if alias in self._aliases or alias in aliases:
                    raise alias_taken(alias)
                aliases.add(alias)
        for copy, messages in fresh:
            thread_id = copy.plan.thread_id
            row = self._threads[thread_id] = self._new_row(copy.plan)
            row.last_sequence = copy.last_sequence
            for message in messages:
                message.thread_id = thread_id
                row.messages[message.id] = message
                self._owners.setdefault(message.id, set()).add(thread_id)
            for alias, at in copy.aliases:
                row.aliases[alias] = at
                self._aliases[alias] = thread_id
        return [copy.plan.thread_id for copy, _ in fresh]


def create(config: DatabaseConfig) -> MemoryBackend:
    """A fresh, empty in-memory backend."""
    return MemoryBackend()
