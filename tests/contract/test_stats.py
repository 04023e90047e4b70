"""get_usage_stats on every backend, and the multi-user support example of the user guide."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from tests.helpers import assistant, user
from threadstore import Message, Thread, ThreadStore
from threadstore.models import utcnow


def metered(model: str | None, prompt: Any, completion: Any, total: Any) -> Message:
    return assistant(
        "reply",
        metrics={
            "model": model,
            "usage": {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": total},
        },
    )


async def test_an_empty_store_has_zero_stats(store: ThreadStore) -> None:
    assert await store.get_usage_stats() == {
        "total_threads": 0,
        "total_messages": 0,
        "avg_messages_per_thread": 0.0,
        "total_tokens": {"total": 0, "by_model": {}},
        "threads_last_hour": 0,
        "threads_last_24h": 0,
        "threads_last_7d": 0,
    }


async def test_stats_count_threads_messages_and_tokens_by_model(store: ThreadStore) -> None:
    first = Thread(id="a")
    first.add_message(user("question"))
    first.add_message(metered("gpt-4.1", 10, 5, 15))
    first.add_message(metered("claude", 7, 3, 10))
    first.ensure_system_prompt("not stored, not counted")
    await store.save(first)
    second = Thread(id="b")
    second.add_message(metered("gpt-4.1", 1, 2, 3))
    second.add_message(metered(None, 100, 100, 200))  # no model: counts in the total only
    second.add_message(metered("", 1, 1, 1))  # an empty model name is no model
    await store.save(second)
    await store.save(Thread(id="empty"))

    stats = await store.get_usage_stats()
    assert stats["total_threads"] == 3
    assert stats["total_messages"] == 6
    assert stats["avg_messages_per_thread"] == 2.0
    assert stats["total_tokens"] == {
        "total": 229,
        "by_model": {
            "claude": {"prompt_tokens": 7, "completion_tokens": 3, "total_tokens": 10},
            "gpt-4.1": {"prompt_tokens": 11, "completion_tokens": 7, "total_tokens": 18},
        },
    }
    # The same reading of metrics as Thread.get_total_tokens, summed over the store.
    per_thread = [t.get_total_tokens() for t in [first, second]]
    assert stats["total_tokens"]["total"] == sum(t["overall"]["total_tokens"] for t in per_thread)


async def test_token_counts_that_are_not_numbers_count_zero(store: ThreadStore) -> None:
    thread = Thread(id="t")
    thread.add_message(metered("m", "12", None, True))
    thread.add_message(metered("m", 2.9, -1.5, 4))
    thread.add_message(assistant("odd metrics", metrics={"model": 5, "usage": "lots"}))
    thread.add_message(assistant("no usage", metrics={"model": "m"}))
    thread.add_message(assistant("empty metrics", metrics={}))
    await store.save(thread)

    stats = await store.get_usage_stats()
    assert stats["total_tokens"] == {
        "total": 4,
        "by_model": {"m": {"prompt_tokens": 2, "completion_tokens": -1, "total_tokens": 4}},
    }
    assert stats["total_messages"] == 5


async def test_usage_stats_overflow_sums_past_2_63_are_exact(store: ThreadStore) -> None:
    """Issue 30 item 5: SQLite raised "integer overflow" past 2^63 total tokens (so `threadstore
    status` exited 1 on a healthy database) and clamped one value of 2^63 or more, where memory
    and PostgreSQL give the exact number. Sums and single values past 64 bits, negatives and
    fractions (truncated), on every backend alike."""
    thread = Thread(id="big")
    values = [2**62, 2**62, 2**62, 2**63 + 5, 10**30, -(2**63), -(2**63) - 1, 12.9, -7.5, 2**63 - 1]
    for value in values:
        thread.add_message(metered("wide", 1, value, value))
    thread.add_message(metered(None, 2**64, 0, 2**64))
    await store.save(thread)

    stats = await store.get_usage_stats()

    exact = sum(int(v) for v in values)
    assert stats["total_tokens"]["by_model"] == {
        "wide": {"prompt_tokens": len(values), "completion_tokens": exact, "total_tokens": exact}
    }
    assert stats["total_tokens"]["total"] == exact + 2**64
    assert stats["total_messages"] == len(values) + 1


async def test_recent_activity_counts_threads_by_updated_at(store: ThreadStore) -> None:
    now = utcnow()
    for thread_id, age in [
        ("minutes", timedelta(minutes=30)),
        ("hours", timedelta(hours=5)),
        ("days", timedelta(days=3)),
        ("weeks", timedelta(days=30)),
        ("future", timedelta(minutes=-5)),
    ]:
        thread = Thread(id=thread_id)
        thread.updated_at = now - age
        await store.save(thread)

    stats = await store.get_usage_stats()
    assert (stats["threads_last_hour"], stats["threads_last_24h"], stats["threads_last_7d"]) == (2, 3, 4)
    assert stats["total_threads"] == 5
    assert stats["avg_messages_per_thread"] == 0.0


async def test_stats_follow_deletes(store: ThreadStore) -> None:
    for thread_id in ["a", "b"]:
        thread = Thread(id=thread_id)
        thread.add_message(metered("m", 1, 1, 2))
        thread.add_message(user("x"))
        await store.save(thread)
    await store.delete("a")
    stats = await store.get_usage_stats()
    assert (stats["total_threads"], stats["total_messages"], stats["avg_messages_per_thread"]) == (1, 2, 2.0)
    assert stats["total_tokens"]["total"] == 2


async def test_the_multi_user_support_example_runs(store: ThreadStore) -> None:
    """The guide's "Multi-User Chat Application" example, verbatim after the store is made."""
    # Create a support thread
    thread = Thread(
        title="Order #12345 Support",
        attributes={"customer_id": "cust_789", "order_id": "12345", "priority": "high"},
        platforms={"slack": {"channel": "C123456", "thread_ts": "1234567890.123"}},
    )
    # Add conversation
    thread.add_message(
        Message(
            role="user",
            content="My order hasn't arrived yet",
            source={"type": "user", "id": "cust_789", "name": "John Doe"},
        )
    )
    thread.add_message(
        Message(
            role="assistant",
            content="I'll check on that order for you right away.",
            source={"type": "agent", "id": "support_bot", "name": "Support Bot"},
        )
    )
    # Save thread
    await store.save(thread)
    # Create alias for easy lookup
    await store.save_thread_alias(thread.id, f"order-{thread.attributes['order_id']}")
    # Later: retrieve by order
    order_thread = await store.get_by_alias("order-12345")
    # Search for high priority threads
    high_priority = await store.search_by_content("priority.*high", limit=10)
    # Get usage stats
    stats = await store.get_usage_stats()
    print(f"Active support threads: {stats['total_threads']}")

    assert order_thread is not None and order_thread.id == thread.id
    assert [m.content for m in order_thread.messages] == [m.content for m in thread.messages]
    assert high_priority == []  # no message says so: the priority is an attribute
    assert [t.id for t in await store.find_by_attributes({"priority": "high"})] == [thread.id]
    assert [t.id for t in await store.search_by_platform("slack", "C123456")] == [thread.id]
    assert stats["total_threads"] == 1 and stats["total_messages"] == 2

    escalated = Thread(title="Escalation")
    escalated.add_message(Message(role="user", content="Priority is HIGH now, please hurry"))
    await store.save(escalated)
    assert [t.id for t in await store.search_by_content("priority.*high", limit=10)] == [escalated.id]
