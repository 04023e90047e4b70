"""The same generated data on every backend gives the same answer to every read (memory is the
reference): searches, lookups, aliases and statistics."""

from __future__ import annotations

import random
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from tests.conftest import BACKENDS, backend_url
from threadstore import Message, Thread, ThreadStore

WORDS = [
    "refund",
    "Refund",
    "order",
    "ORDER",
    "priority",
    "high",
    "low",
    "école",
    "ÉCOLE",
    "🎉",
    "100%",
    "a_b",
    "back\\slash",
    "it's",
    'say "x"',
    "line\nbreak",
    "(paren",
    "[br]",
    ".*",
]
VALUES: list[Any] = [
    1,
    1.0,
    2,
    2.5,
    True,
    False,
    None,
    "1",
    "high",
    "",
    {"a": 1},
    {"a": 1.0, "b": [1]},
    [1, 2],
    [2, 1],
    [],
    {},
    "é",
    "🎉",
]
KEYS = ["customer", "priority", "n", "a.b", "ключ", "it's", "x"]


def generated(seed: int, count: int) -> tuple[list[Thread], list[tuple[str, str]]]:
    """Threads with varied titles, contents, attributes, platforms, sources and metrics, and
    aliases (thread id, alias) for some of them."""
    rng = random.Random(seed)
    t0 = datetime(2024, 1, 1, tzinfo=UTC)
    threads = []
    for i in range(count):
        thread = Thread(
            id=f"t{i:03d}",
            title=" ".join(rng.sample(WORDS, 2)),
            attributes={k: rng.choice(VALUES) for k in rng.sample(KEYS, rng.randint(0, 3))},
            platforms={
                name: {"channel": rng.choice(["C1", "C2", 3, 3.0]), "ts": rng.choice(["1.1", "2.2"])}
                for name in rng.sample(["slack", "discord"], rng.randint(0, 2))
            },
            source=rng.choice([None, {"name": "slack", "channel": "C1"}, {"name": "web", "channel": "C2"}]),
        )
        for _ in range(rng.randint(0, 4)):
            if rng.random() < 0.2:
                content: Any = [
                    {"type": "text", "text": " ".join(rng.sample(WORDS, 2))},
                    {"type": "image_url", "image_url": {"url": rng.choice(WORDS)}},
                ]
            else:
                content = rng.choice([None, " ".join(rng.sample(WORDS, 3))])
            model = rng.choice([None, "gpt", "claude"])
            thread.add_message(
                Message(
                    role=rng.choice(["user", "assistant"]),
                    content=content,
                    attributes={k: rng.choice(VALUES) for k in rng.sample(KEYS, rng.randint(0, 2))},
                    platforms={"slack": {"ts": rng.choice(["1.1", "2.2", 2.2])}}
                    if rng.random() < 0.5
                    else {},
                    metrics={
                        "model": model,
                        "usage": {
                            "prompt_tokens": rng.randint(0, 9),
                            "completion_tokens": rng.choice([1, 2.5, "3", None]),
                            "total_tokens": rng.randint(0, 20),
                        },
                    },
                )
            )
        thread.updated_at = t0 + timedelta(minutes=rng.randint(0, count // 2))  # some ties
        threads.append(thread)
    aliases = [(rng.choice(threads).id, alias) for alias in rng.sample([*WORDS, "Z", "z", "a"], 12)]
    return threads, aliases


READS: list[tuple[str, tuple[Any, ...], dict[str, Any]]] = [
    *[("search_by_title", (w,), {}) for w in ["refund", "ÉCOLE", "%", "_", "\\", ".*", "e", "'", "\n"]],
    *[
        ("search_by_content", (p,), {})
        for p in [
            "refund",
            "priority.*high",
            "^order",
            "high$",
            "é",
            r"\d+%",
            "[(]",
            "🎉",
            "",
            "line.break",
            r"\w+_\w+",
        ]
    ],
    ("search_by_content", ("(paren",), {"literal": True}),
    ("search_by_content", ("refund",), {"limit": 3, "offset": 2}),
    *[("search_by_platform", (n, r), {}) for n in ["slack", "discord"] for r in ["C1", 3, 3.0, "1.1", "x"]],
    *[("find_by_attributes", ({k: v},), {}) for k in KEYS[:4] for v in VALUES],
    ("find_by_attributes", ({},), {}),
    ("find_by_attributes", ({"customer": 1, "n": 1},), {}),
    *[
        ("find_by_platform", (n, p), {})
        for n in ["slack", "discord", "web"]
        for p in [{}, {"channel": "C1"}, {"channel": 3}, {"ts": "2.2", "channel": "C2"}]
    ],
    *[
        ("find_messages_by_attribute", (path, v), {})
        for path in ["customer", "attributes.n", "a.b", ["a.b"], "platforms.slack.ts"]
        for v in [1, True, None, "1.1", 2.2, {"a": 1}, [1, 2]]
    ],
    ("list", (), {"limit": 7, "offset": 3}),
]


@pytest.mark.pg
async def test_every_backend_answers_every_read_like_memory(
    request: pytest.FixtureRequest,
    tmp_path: Any,
    pg_url: str,
    open_store: Callable[[str | None], Awaitable[ThreadStore]],
) -> None:
    threads, aliases = generated(seed=4, count=80)
    stores = {}
    for kind in BACKENDS:
        store = await open_store(backend_url(kind, request, tmp_path))
        await store.delete_many([t.id for t in await store.list_recent()])
        for thread in threads:
            await store.save(
                Thread(
                    **{f: getattr(thread, f) for f in ("id", "title", "attributes", "platforms", "source")},
                    messages=[
                        Message(
                            **{
                                f: getattr(m, f)
                                for f in m.__struct_fields__
                                if f not in ("sequence", "thread_id")
                            }
                        )
                        for m in thread.messages
                    ],
                    updated_at=thread.updated_at,
                    created_at=thread.created_at,
                )
            )
        for thread_id, alias in aliases:
            await store.save_thread_alias(thread_id, alias)
        stores[kind] = store

    def answer(result: Any) -> Any:
        if isinstance(result, list):
            return [answer(r) for r in result]
        if isinstance(result, Thread):
            return (result.id, [m.id for m in result.messages])
        if isinstance(result, Message):
            return (result.thread_id, result.sequence, result.id)
        return result

    reference = stores.pop("memory")
    matched = 0
    for method, args, kwargs in READS:
        expected = answer(await getattr(reference, method)(*args, **kwargs))
        matched += bool(expected)
        for kind, store in stores.items():
            got = answer(await getattr(store, method)(*args, **kwargs))
            assert got == expected, f"{kind}: {method}{args!r} {kwargs or ''}"
    assert matched > len(READS) // 2, "the generated data should make most reads find something"

    for alias in {alias for _, alias in aliases} | {"missing"}:
        expected = answer(await reference.get_by_alias(alias))
        for kind, store in stores.items():
            assert answer(await store.get_by_alias(alias)) == expected, (kind, alias)
    for thread in threads[:20]:
        expected_aliases = await reference.get_thread_aliases(thread.id)
        for message in thread.messages[:1]:
            expected = answer(await reference.get_thread_by_message_id(message.id))
            for store in stores.values():
                assert answer(await store.get_thread_by_message_id(message.id)) == expected
        for kind, store in stores.items():
            assert await store.get_thread_aliases(thread.id) == expected_aliases, kind

    expected_stats = await reference.get_usage_stats()
    assert expected_stats["total_tokens"]["by_model"].keys() == {"gpt", "claude"}
    for kind, store in stores.items():
        stats = await store.get_usage_stats()
        assert stats == expected_stats, kind
