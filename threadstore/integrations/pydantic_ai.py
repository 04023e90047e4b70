"""Pydantic AI message history in a ThreadStore: ``save_messages`` and ``load_messages``.

``await save_messages(store, "chat-1", result.new_messages())`` after a run, and
``message_history=await load_messages(store, "chat-1")`` for the next one. Each ModelRequest or
ModelResponse is one Message holding it as ``ModelMessagesTypeAdapter`` dumps it, so it loads back
equal. Importing this module imports ``pydantic_ai``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pydantic_ai.messages import ModelMessage, ModelMessagesTypeAdapter

from threadstore.integrations import items
from threadstore.models import Message
from threadstore.store import ThreadStore

FRAMEWORK = "pydantic-ai"


def _request(item: dict[str, Any]) -> Message:
    parts = item.get("parts", [])
    kinds = {part.get("part_kind") for part in parts}
    text = items.joined(
        items.text_of(part.get("content"), ("text",))
        for part in parts
        if part.get("part_kind") == "user-prompt"
    )
    returns = [part for part in parts if part.get("part_kind") == "tool-return" and part.get("tool_call_id")]
    if "user-prompt" not in kinds and returns:
        output = items.joined(part.get("content") for part in returns)
        first = returns[0]
        return items.message(
            FRAMEWORK, item, "tool", output, tool_call_id=first["tool_call_id"], name=first.get("tool_name")
        )
    if kinds == {"system-prompt"}:
        return items.message(FRAMEWORK, item, "system", items.joined(part.get("content") for part in parts))
    return items.message(FRAMEWORK, item, "user", text)


def _response(item: dict[str, Any]) -> Message:
    parts = item.get("parts", [])
    usage = item.get("usage") or {}
    calls = [
        items.tool_call(str(part.get("tool_call_id")), str(part.get("tool_name")), part.get("args") or {})
        for part in parts
        if part.get("part_kind") == "tool-call"
    ]
    model = item.get("model_name")
    return items.message(
        FRAMEWORK,
        item,
        "assistant",
        items.joined(part.get("content") for part in parts if part.get("part_kind") == "text"),
        tool_calls=calls,
        reasoning=items.joined(part.get("content") for part in parts if part.get("part_kind") == "thinking"),
        model=model if isinstance(model, str) else None,
        tokens=(int(usage.get("input_tokens") or 0), int(usage.get("output_tokens") or 0)),
    )


def to_messages(messages: Sequence[ModelMessage]) -> list[Message]:
    """Pydantic AI messages as Messages holding them."""
    dumped: list[dict[str, Any]] = ModelMessagesTypeAdapter.dump_python(list(messages), mode="json")
    return [_response(item) if item.get("kind") == "response" else _request(item) for item in dumped]


def from_messages(stored: Sequence[Message]) -> list[ModelMessage]:
    """The Pydantic AI messages that Messages hold; one stored otherwise (not through this
    module) as a request with a user prompt, or a response with a text, of its content."""
    dumped = []
    for message in stored:
        item = items.item_of(message)
        if item is None:
            text = (
                message.content if isinstance(message.content, str) else items.text_of(message.content) or ""
            )
            if message.role == "assistant":
                item = {"kind": "response", "parts": [{"part_kind": "text", "content": text}]}
            else:
                kind = "system-prompt" if message.role == "developer" else "user-prompt"
                item = {"kind": "request", "parts": [{"part_kind": kind, "content": text}]}
        dumped.append(item)
    return ModelMessagesTypeAdapter.validate_python(dumped)


async def save_messages(store: ThreadStore, thread_id: str, messages: Sequence[ModelMessage]) -> None:
    """Append ``messages`` (``result.new_messages()``) to the thread, creating it on the first."""
    if messages:
        await store.append(thread_id, *to_messages(messages), create=True)


async def load_messages(store: ThreadStore, thread_id: str, *, last: int | None = None) -> list[ModelMessage]:
    """The thread's messages as Pydantic AI messages (``message_history=``), oldest first: the
    ``last`` most recent ones when given; empty for an unknown thread."""
    thread = await store.get(thread_id, last=last)
    return [] if thread is None else from_messages(thread.messages)
