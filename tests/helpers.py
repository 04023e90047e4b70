"""Small builders and readers the test files share."""

from __future__ import annotations

from typing import Any

from threadstore import Message, Thread, ThreadStore


def user(text: str, **fields: Any) -> Message:
    return Message(role="user", content=text, **fields)


def assistant(text: str | None, **fields: Any) -> Message:
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
