"""A LangChain chat message history (``BaseChatMessageHistory``) over a ThreadStore.

``ThreadStoreChatMessageHistory(session_id, store)``: the history is the thread ``session_id``.
Its async methods (``aget_messages``, ``aadd_messages``, ``aclear``) run natively on an async
``threadstore.ThreadStore``; its sync ones (``messages``, ``add_messages``, ``clear``) on a
``threadstore.sync.ThreadStore``. Importing this module imports ``langchain_core``.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence
from typing import Any

from langchain_core.chat_history import BaseChatMessageHistory
from langchain_core.messages import BaseMessage, message_to_dict, messages_from_dict

from threadstore import sync
from threadstore.errors import NotFoundError
from threadstore.integrations import items
from threadstore.models import Message, Role
from threadstore.store import ThreadStore

FRAMEWORK = "langchain"
# LangChain message types (chunks too: "AIMessageChunk") by prefix -> the role stored.
_ROLES: tuple[tuple[str, Role], ...] = (
    ("human", "user"),
    ("ai", "assistant"),
    ("system", "system"),
    ("tool", "tool"),
    ("function", "tool"),
)


def to_message(message: BaseMessage) -> Message:
    """One LangChain message as a Message holding it (``message_to_dict``)."""
    if not isinstance(message, BaseMessage):
        raise TypeError(f"a chat history holds BaseMessages, got {type(message).__name__}")
    item = message_to_dict(message)
    kind = item["type"].lower()
    role: Role = next((role for prefix, role in _ROLES if kind.startswith(prefix)), "user")
    chat_role = getattr(message, "role", None)  # ChatMessage only
    if kind.startswith("chat") and chat_role in ("user", "assistant", "system", "developer"):
        role = chat_role
    # A FunctionMessage answers the function it names.
    tool_call_id = getattr(message, "tool_call_id", None) or (
        message.name if kind.startswith("function") else None
    )
    if role == "tool" and not tool_call_id:
        role = "user"
    calls = [
        items.tool_call(str(c.get("id")), c["name"], c.get("args", {}))
        for c in getattr(message, "tool_calls", [])
    ]
    usage = getattr(message, "usage_metadata", None)
    model = message.response_metadata.get("model_name") or message.response_metadata.get("model")
    return items.message(
        FRAMEWORK,
        item,
        role,
        items.text_of(message.content, ("text",)),
        tool_calls=calls,
        tool_call_id=tool_call_id,
        name=message.name,
        model=model if isinstance(model, str) else None,
        tokens=None if not usage else (usage.get("input_tokens", 0), usage.get("output_tokens", 0)),
    )


def to_messages(stored: Sequence[Message]) -> list[BaseMessage]:
    """The LangChain messages that Messages hold; one stored otherwise as a message of its role."""
    dicts = []
    for message in stored:
        item = items.item_of(message)
        if item is None:
            kind = {"user": "human", "assistant": "ai", "developer": "system"}.get(message.role, message.role)
            data: dict[str, Any] = {"content": message.content or ""}
            if kind == "tool":
                data["tool_call_id"] = message.tool_call_id
            item = {"type": kind, "data": data}
        dicts.append(item)
    return messages_from_dict(dicts)


class ThreadStoreChatMessageHistory(BaseChatMessageHistory):
    """The chat history ``session_id`` in ``store``: an async ``threadstore.ThreadStore`` (the
    async methods run on it, the sync ones raise TypeError saying so) or a
    ``threadstore.sync.ThreadStore`` (the sync methods run on it, the async ones in a worker
    thread). Messages come back equal to what was added, system messages included."""

    def __init__(self, session_id: str, store: ThreadStore | sync.ThreadStore) -> None:
        if not isinstance(store, ThreadStore | sync.ThreadStore):
            raise TypeError(f"store must be a threadstore ThreadStore, got {type(store).__name__}")
        self.session_id = session_id
        self.store = store

    def _sync(self, method: str) -> sync.ThreadStore:
        if not isinstance(self.store, sync.ThreadStore):
            raise TypeError(
                f"{method}() blocks: pass a threadstore.sync.ThreadStore, or await a{method}() "
                "with this async ThreadStore"
            )
        return self.store

    @property
    def messages(self) -> list[BaseMessage]:  # type: ignore[override]
        """Every message of the history, oldest first."""
        thread = self._sync("get_messages").get(self.session_id)
        return [] if thread is None else to_messages(thread.messages)

    def add_messages(self, messages: Sequence[BaseMessage]) -> None:
        """Append the messages (one write; the thread is created on the first ones)."""
        if messages:
            stored = [to_message(m) for m in messages]
            self._sync("add_messages").append(self.session_id, *stored, create=True)

    def clear(self) -> None:
        """Delete every message; the thread stays, with its title and attributes."""
        with contextlib.suppress(NotFoundError):
            self._sync("clear").prune_messages(self.session_id, keep_last=0)

    async def aget_messages(self) -> list[BaseMessage]:
        """Every message of the history, oldest first."""
        if isinstance(self.store, sync.ThreadStore):
            return await asyncio.to_thread(lambda: self.messages)
        thread = await self.store.get(self.session_id)
        return [] if thread is None else to_messages(thread.messages)

    async def aadd_messages(self, messages: Sequence[BaseMessage]) -> None:
        """Append the messages (one write; the thread is created on the first ones)."""
        if isinstance(self.store, sync.ThreadStore):
            return await asyncio.to_thread(self.add_messages, messages)
        if messages:
            await self.store.append(self.session_id, *[to_message(m) for m in messages], create=True)
        return None

    async def aclear(self) -> None:
        """Delete every message; the thread stays, with its title and attributes."""
        if isinstance(self.store, sync.ThreadStore):
            return await asyncio.to_thread(self.clear)
        with contextlib.suppress(NotFoundError):
            await self.store.prune_messages(self.session_id, keep_last=0)
        return None
