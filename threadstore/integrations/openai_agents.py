"""A session of the OpenAI Agents SDK (``agents.memory.Session``) over a ThreadStore.

``Runner.run(agent, text, session=ThreadStoreSession("user-42", store))``: the session is a
thread whose id is the session id, each item one of its messages. The SDK is not imported: the
class meets the Session protocol by its methods, so this module loads nothing of ``agents``.
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Any

from threadstore.checks import MAX_PAGE
from threadstore.errors import NotFoundError
from threadstore.integrations import items
from threadstore.models import Message

if TYPE_CHECKING:
    from threadstore.store import ThreadStore

FRAMEWORK = "openai-agents"
_ROLES = ("user", "assistant", "system", "developer")


def to_message(item: Any) -> Message:
    """One SDK item (a TResponseInputItem dict) as a Message holding it."""
    if not isinstance(item, dict):
        raise TypeError(f"an OpenAI Agents session item is a dict, got {type(item).__name__}")
    kind, role = item.get("type"), item.get("role")
    if role in _ROLES:
        return items.message(FRAMEWORK, item, role, items.text_of(item.get("content")))
    if kind == "function_call":
        call = items.tool_call(str(item.get("call_id")), str(item.get("name")), item.get("arguments"))
        return items.message(FRAMEWORK, item, "assistant", None, tool_calls=[call])
    if kind == "function_call_output" and item.get("call_id"):
        output = item.get("output")
        return items.message(
            FRAMEWORK, item, "tool", items.text_of(output), tool_call_id=str(item["call_id"])
        )
    if kind == "reasoning":
        summary = item.get("summary") or []
        reasoning = items.joined(part.get("text") for part in summary if isinstance(part, dict))
        return items.message(FRAMEWORK, item, "assistant", None, reasoning=reasoning)
    # Web and file search calls, computer calls, their outputs, ...: kept as they are.
    return items.message(FRAMEWORK, item, "assistant", None)


def to_item(message: Message) -> Any:
    """The SDK item a Message holds; a message stored otherwise as an input item of its role."""
    item = items.item_of(message)
    if item is not None:
        return item
    if message.role == "tool":
        return {
            "type": "function_call_output",
            "call_id": message.tool_call_id,
            "output": message.content or "",
        }
    return {"role": message.role, "content": message.content or ""}


class ThreadStoreSession:
    """``agents.memory.Session`` over a ThreadStore: the thread ``session_id`` holds the items.

    ``get_items(limit)`` is one read of the latest ``limit`` messages (``session_settings.limit``
    when None; all of them when both are None; none for 0 or less); ``add_items`` one
    ``append(..., create=True)``; ``pop_item`` one ``pop_message``; ``clear_session`` deletes
    the messages and keeps the thread with its title and attributes. Items come back equal to
    what was added (as JSON).
    """

    def __init__(self, session_id: str, store: ThreadStore, *, session_settings: Any = None) -> None:
        self.session_id = session_id
        self.store = store
        self.session_settings = session_settings  # an agents SessionSettings (or its dict), or None

    def _limit(self, limit: int | None) -> int | None:
        if limit is not None:
            return limit
        settings = self.session_settings
        found = settings.get("limit") if isinstance(settings, dict) else getattr(settings, "limit", None)
        return found if isinstance(found, int) else None

    async def get_items(self, limit: int | None = None) -> list[Any]:
        """The session's items, oldest first; the latest ``limit`` of them when given."""
        limit = self._limit(limit)
        if limit is not None and limit <= 0:
            return []
        last = limit if limit is not None and limit <= MAX_PAGE else None
        thread = await self.store.get(self.session_id, last=last)
        if thread is None:
            return []
        messages = thread.messages if limit is None or last is not None else thread.messages[-limit:]
        return [to_item(message) for message in messages]

    async def add_items(self, items: list[Any]) -> None:
        """Append the items (creating the session's thread on its first items)."""
        if items:
            await self.store.append(self.session_id, *[to_message(item) for item in items], create=True)

    async def pop_item(self) -> Any | None:
        """Remove and return the latest item; None when the session is empty."""
        message = await self.store.pop_message(self.session_id)
        return None if message is None else to_item(message)

    async def clear_session(self) -> None:
        """Delete every item; the thread stays, with its title and attributes."""
        with contextlib.suppress(NotFoundError):
            await self.store.prune_messages(self.session_id, keep_last=0)

    def __repr__(self) -> str:
        return f"<ThreadStoreSession {self.session_id!r} on {self.store!r}>"
