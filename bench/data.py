"""The bench's data: deterministic threads and messages, as model objects and as plain rows.

Every side gets the same content. threadstore gets Thread/Message objects (built before the timer
starts); the raw floor gets plain dicts holding the same values, the way hand-written driver code
would. Store sizes of 100,000 threads are seeded with the raw drivers in bulk (COPY on
PostgreSQL, executemany on SQLite), in exactly the formats threadstore itself writes, and the bench
checks that threadstore reads a seeded thread back.
"""

from __future__ import annotations

import random
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec

from threadstore import Message, Thread

EPOCH = datetime(2024, 1, 1, tzinfo=UTC)
# The seeded store is "newer" than every thread a workload writes (those are updated now), so
# list() pages through seeded threads of a few messages whatever ran before.
FUTURE = datetime(2100, 1, 1, tzinfo=UTC)
MODELS = ("gpt-4o", "gpt-4o-mini", "claude-sonnet")
PRIORITIES = ("low", "normal", "high")
WORDS = (
    "order",
    "refund",
    "shipping",
    "invoice",
    "login",
    "password",
    "delivery",
    "billing",
    "account",
    "upgrade",
    "cancel",
    "warranty",
    "customer",
    "payment",
    "address",
    "tracking",
)
TEXT = (
    "Thanks for reaching out. I looked at the order history and the shipment left the "
    "warehouse on Tuesday; the carrier shows it in transit with an expected delivery on Friday. "
    "If it does not arrive by then, reply here and I will open a claim for you."
)

_encode = msgspec.json.Encoder().encode


def title_of(i: int) -> str:
    """Titles vary, so a title search matches a small share of the store."""
    return f"{WORDS[i % 16].capitalize()} question {i} from {WORDS[(i * 7) % 16]} team"


def thread_fields(i: int, base: datetime = EPOCH) -> dict[str, Any]:
    created = base + timedelta(seconds=i % 10_000_000)
    return {
        "title": title_of(i),
        "attributes": {"customer_id": f"cust_{i}", "priority": PRIORITIES[i % 3], "tier": i % 5},
        "platforms": {"slack": {"channel": f"C{i % 500:05d}", "thread_ts": f"{1700000000 + i}.0001"}},
        "created_at": created,
        "updated_at": created,
    }


def message_fields(thread_no: int, n: int) -> dict[str, Any]:
    """The n-th message (1-based) of a thread: users ask, assistants answer with token usage."""
    user = n % 2 == 1
    content = (
        f"Hi, my {WORDS[(thread_no + n) % 16]} #{thread_no}-{n} has a problem, can you help?"
        if user
        else f"{TEXT} (ref {thread_no}-{n})"
    )
    fields: dict[str, Any] = {
        "role": "user" if user else "assistant",
        "content": content,
        "timestamp": EPOCH + timedelta(seconds=thread_no % 10_000_000, microseconds=n),
        "attributes": {"lang": "en"},
    }
    if user:
        fields["source"] = {"type": "user", "id": f"user_{thread_no % 1000}"}
    else:
        fields["metrics"] = {
            "model": MODELS[n % 3],
            "usage": {"prompt_tokens": 100 + n, "completion_tokens": 50, "total_tokens": 150 + n},
            "timing": {"started_at": None, "ended_at": None, "latency": 420},
        }
    return fields


# -- model objects (threadstore) --------------------------------------------------------------


def new_thread(i: int, messages: int, thread_id: str | None = None) -> Thread:
    thread = Thread(id=thread_id or new_id(), **thread_fields(i))
    for n in range(1, messages + 1):
        thread.add_message(Message(**message_fields(i, n)))
    return thread


def new_message(thread_no: int, n: int) -> Message:
    return Message(**message_fields(thread_no, n))


# -- plain rows (raw floor, bulk seeding) ----------------------------------------------------------


def new_id() -> str:
    return uuid.uuid4().hex


# Random start: a database kept from an earlier run (or another bench process) holds other ids.
_numbers = iter(range(10_000_000 + random.randrange(10**12) * 1000, 2**62))


def fresh_number() -> int:
    """A thread number no other thread of this run has: threadstore derives message ids from
    the content, which the number makes unique."""
    return next(_numbers)


def message_row(thread_id: str, thread_no: int, n: int, sequence: int | None = None) -> dict[str, Any]:
    """A messages row as a plain dict, every column present (what the floor writes)."""
    fields = message_fields(thread_no, n)
    return {
        "id": f"{thread_id}:{n}",
        "thread_id": thread_id,
        "sequence": n if sequence is None else sequence,
        "turn": None,
        "role": fields["role"],
        "content": fields["content"],
        "reasoning_content": None,
        "name": None,
        "tool_call_id": None,
        "tool_calls": None,
        "attributes": fields["attributes"],
        "timestamp": fields["timestamp"],
        "source": fields.get("source"),
        "platforms": {},
        "attachments": [],
        "metrics": fields.get("metrics")
        or {
            "model": None,
            "usage": {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0},
            "timing": {"started_at": None, "ended_at": None, "latency": 0},
        },
        "reactions": {},
    }


def thread_row(thread_id: str, i: int, messages: int, base: datetime = EPOCH) -> dict[str, Any]:
    return {"id": thread_id, **thread_fields(i, base), "source": None, "last_sequence": messages}


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
THREAD_COLUMNS = (
    "id",
    "title",
    "attributes",
    "platforms",
    "source",
    "created_at",
    "updated_at",
    "last_sequence",
)
JSON_COLUMNS = frozenset(
    ("content", "tool_calls", "attributes", "source", "platforms", "attachments", "metrics", "reactions")
)


def json_text(value: Any) -> str | None:
    return None if value is None else _encode(value).decode()


def sqlite_message_values(row: dict[str, Any]) -> tuple[Any, ...]:
    """A message row as SQLite stores it: JSON as text, the timestamp as msgspec writes it."""
    values = []
    for column in MESSAGE_COLUMNS:
        value = row[column]
        if column == "timestamp":
            value = _encode(value).decode()[1:-1]
        elif column in JSON_COLUMNS:
            value = json_text(value)
        values.append(value)
    return tuple(values)


def sqlite_time(value: datetime) -> str:
    return value.astimezone(UTC).isoformat(timespec="microseconds")


def sqlite_thread_values(row: dict[str, Any]) -> tuple[Any, ...]:
    values = []
    for column in THREAD_COLUMNS:
        value = row[column]
        if column in ("created_at", "updated_at"):
            value = sqlite_time(value)
        elif column in JSON_COLUMNS:
            value = json_text(value)
        values.append(value)
    return tuple(values)
