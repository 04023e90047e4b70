"""What the adapters share: a framework item as a stored Message, and back."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable
from typing import Any

from threadstore.models import Message, Role, default_metrics

ITEM = "item"  # attributes[ITEM]: the framework's item, exactly as it was added
FRAMEWORK = "framework"  # attributes[FRAMEWORK]: which adapter wrote it


def message(
    framework: str,
    item: Any,
    role: Role,
    content: str | None,
    *,
    tool_calls: list[dict[str, Any]] | None = None,
    tool_call_id: str | None = None,
    name: str | None = None,
    reasoning: str | None = None,
    model: str | None = None,
    tokens: tuple[int, int] | None = None,
) -> Message:
    """A Message of ``role`` holding ``item``, with an id of its own: message ids are unique in
    the whole store, and one framework item id can reach two sessions. A ``system`` role is
    stored as ``developer`` (the store keeps no system message); the item keeps its own."""
    metrics = default_metrics()
    if model is not None:
        metrics["model"] = model
    if tokens is not None:
        prompt, completion = tokens
        metrics["usage"] = {
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "total_tokens": prompt + completion,
        }
    return Message(
        id=uuid.uuid4().hex,
        role="developer" if role == "system" else role,
        content=content,
        tool_calls=tool_calls or None,
        tool_call_id=tool_call_id if role == "tool" else None,
        name=name,
        reasoning_content=reasoning,
        attributes={FRAMEWORK: framework, ITEM: item},
        metrics=metrics,
    )


def item_of(message: Message) -> Any:
    """The framework item a Message holds, or None for a message an adapter did not write."""
    return message.attributes.get(ITEM)


def tool_call(call_id: str, name: str, arguments: Any) -> dict[str, Any]:
    """A tool call in the OpenAI chat layout Message.tool_calls uses."""
    if not isinstance(arguments, str):
        arguments = json.dumps(arguments, ensure_ascii=False)
    return {"id": call_id, "type": "function", "function": {"name": name, "arguments": arguments}}


def joined(texts: Iterable[Any]) -> str | None:
    """The strings among ``texts`` joined by newlines; None when there is none."""
    found = [text for text in texts if isinstance(text, str)]
    return "\n".join(found) if found else None


def text_of(content: Any, kinds: tuple[str, ...] = ("text", "input_text", "output_text")) -> str | None:
    """The text of a framework's content: a string as it is, or the text parts of a list."""
    if content is None or isinstance(content, str):
        return content
    if isinstance(content, list):
        return joined(
            part if isinstance(part, str) else part.get("text")
            for part in content
            if isinstance(part, str) or (isinstance(part, dict) and part.get("type") in kinds)
        )
    return None
