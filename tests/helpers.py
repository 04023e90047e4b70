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
