"""Small builders and readers the test files share."""

from __future__ import annotations

from typing import Any

from threadstore import Message, Thread, ThreadStore
from threadstore.transfer import ThreadRecord


def user(text: str | list[dict[str, Any]], **fields: Any) -> Message:
    return Message(role="user", content=text, **fields)


def assistant(text: str | list[dict[str, Any]] | None, **fields: Any) -> Message:
    return Message(role="assistant", content=text, **fields)


def contents(thread: Thread) -> list[Any]:
    return [m.content for m in thread.messages]


def sequences(thread: Thread) -> list[int | None]:
    return [m.sequence for m in thread.messages]


def conversation(*texts: str, **thread_fields: Any) -> Thread:
    """A thread of user messages with those texts."""
    thread = Thread(**thread_fields)
    for text in texts:
        thread.add_message(user(text))
    return thread


async def stored(store: ThreadStore, thread_id: str) -> Thread:
    """The stored thread, which must exist."""
    thread = await store.get(thread_id)
    assert thread is not None, f"thread {thread_id!r} is not stored"
    return thread


def rich_thread(key: str, messages: int = 3) -> Thread:
    """A thread using every field: attributes, platforms, source, and messages of each kind
    (text, parts, tool calls and results, reasoning, metrics, reactions, attachments)."""
    from datetime import UTC, datetime

    from threadstore import Attachment

    thread = Thread(
        id=f"thread-{key}",
        title=f"Conversation {key} ✓",
        attributes={"customer": key, "n": 1.5},
        platforms={"slack": {"channel": "C1", "ts": key}},
        source={"name": "slack", "id": key},
        created_at=datetime(2023, 1, 2, 3, 4, 5, 678901, tzinfo=UTC),
    )
    for j in range(messages):
        kind = j % 4
        if kind == 0:
            message = user(
                f"question {j} of {key}",
                source={"type": "user", "id": "u1"},
                attributes={"lang": "en"},
                platforms={"slack": {"ts": f"{j}.1"}},
                attachments=[
                    Attachment(
                        filename="a.txt",
                        mime_type="text/plain",
                        status="stored",
                        file_id="f-1",
                        storage_path="8f/43/8f434346",
                    )
                ],
            )
        elif kind == 1:
            message = assistant(
                None,
                reasoning_content="thinking",
                turn=j,
                tool_calls=[
                    {"id": f"call-{j}", "type": "function", "function": {"name": "lookup", "arguments": "{}"}}
                ],
                metrics={
                    "model": "gpt-4o",
                    "usage": {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15},
                },
            )
        elif kind == 2:
            message = Message(role="tool", content="42", tool_call_id=f"call-{j - 1}", name="lookup")
        else:
            message = assistant([{"type": "text", "text": f"answer {j}"}], reactions={"👍": ["u1"]})
        thread.add_message(message)
    thread.updated_at = datetime(2024, 5, 6, 7, 8, 9, 123456, tzinfo=UTC)
    return thread


async def everything(url: str) -> list[ThreadRecord]:
    """Every thread of the database at ``url``, as ``export_threads`` gives them."""
    async with await ThreadStore.create(url, migrate=False) as store:
        return [record async for page in store.export_threads() for record in page]


def engine_kind(store: ThreadStore) -> str:
    """ "postgres", "sqlite" or "memory": what a connected store (or the test suite's wrapper of a
    synchronous one) runs on, told by its driver object."""
    if hasattr(store, "sync"):  # conftest's SyncAwaited: a synchronous store, on a SQLite file
        return "sqlite"
    engine = store.engine
    if engine is None:
        return "memory"
    return "sqlite" if type(engine).__module__.startswith("aiosqlite") else "postgres"


async def index_state(store: ThreadStore, thread_ids: list[str]) -> tuple[int, int]:
    """(entries queued for the indexer, index rows) of the threads ``thread_ids`` and their
    messages in a SQL store's full-text indexes: PostgreSQL's message_text and its queue,
    SQLite's message_words and thread_titles and their queues. (0, 0) on memory, which has none."""
    kind = engine_kind(store)
    if kind == "memory":
        return 0, 0
    if kind == "postgres":
        row = await store.engine.fetchrow(
            "SELECT (SELECT count(*) FROM message_text_pending WHERE thread_id = any($1)),"
            "       (SELECT count(*) FROM message_text WHERE thread_id = any($1))",
            thread_ids,
        )
        return row[0], row[1]
    import json

    ids = json.dumps(thread_ids)
    among = "WHERE thread_id IN (SELECT value FROM json_each(?1))"
    query = (
        f"SELECT (SELECT count(*) FROM message_words_pending {among})"
        f"     + (SELECT count(*) FROM thread_titles_pending {among}),"
        f"       (SELECT count(*) FROM message_words {among})"
        f"     + (SELECT count(*) FROM thread_titles {among})"
    )
    if hasattr(store, "sync"):  # its connection serves another event loop: a connection of our own
        import contextlib
        import sqlite3

        with contextlib.closing(sqlite3.connect((store.database_url or "").split("///", 1)[1])) as conn:
            queued, indexed = conn.execute(query, (ids,)).fetchone()
        return queued, indexed
    [(queued, indexed)] = await store.engine.execute_fetchall(query, (ids,))
    return queued, indexed
