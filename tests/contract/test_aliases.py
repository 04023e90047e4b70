"""save_thread_alias, get_by_alias, delete_thread_alias and get_thread_aliases, on every backend."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from tests.helpers import conversation
from threadstore import NotFoundError, Thread, ThreadStore


async def saved(store: ThreadStore, thread_id: str, *texts: str) -> Thread:
    return await store.save(conversation(*texts, id=thread_id, title=f"Thread {thread_id}"))


async def test_an_alias_finds_its_thread(store: ThreadStore) -> None:
    await saved(store, "t", "hello")
    await store.save_thread_alias("t", "slack-C123456")

    found = await store.get_by_alias("slack-C123456")
    assert found is not None and found.id == "t" and found.title == "Thread t"
    assert [m.content for m in found.messages] == ["hello"]
    assert await store.get_by_alias("slack-C999") is None


async def test_aliases_list_in_the_order_they_were_saved(store: ThreadStore) -> None:
    await saved(store, "t")
    for alias in ["zeta", "alpha", "mid", "Alpha"]:
        await store.save_thread_alias("t", alias)
    await store.save_thread_alias("t", "zeta")  # again: no duplicate, keeps its place

    assert await store.get_thread_aliases("t") == ["zeta", "alpha", "mid", "Alpha"]
    assert await store.get_thread_aliases("unknown-thread") == []


async def test_saving_an_alias_of_another_thread_moves_it(store: ThreadStore) -> None:
    await saved(store, "a")
    await saved(store, "b")
    await store.save_thread_alias("a", "shared")
    await store.save_thread_alias("a", "own")
    await store.save_thread_alias("b", "first")

    await store.save_thread_alias("b", "shared")
    found = await store.get_by_alias("shared")
    assert found is not None and found.id == "b"
    assert await store.get_thread_aliases("a") == ["own"]
    assert await store.get_thread_aliases("b") == ["first", "shared"]


async def test_an_alias_of_an_unknown_thread_raises_and_stores_nothing(store: ThreadStore) -> None:
    await saved(store, "t")
    await store.save_thread_alias("t", "taken")
    with pytest.raises(NotFoundError, match="no-such-thread"):
        await store.save_thread_alias("no-such-thread", "fresh")
    with pytest.raises(NotFoundError):
        await store.save_thread_alias("no-such-thread", "taken")
    assert await store.get_by_alias("fresh") is None
    found = await store.get_by_alias("taken")
    assert found is not None and found.id == "t"


async def test_delete_thread_alias_forgets_only_the_alias(store: ThreadStore) -> None:
    await saved(store, "t", "kept")
    await store.save_thread_alias("t", "one")
    await store.save_thread_alias("t", "two")

    assert await store.delete_thread_alias("one") is True
    assert await store.delete_thread_alias("one") is False
    assert await store.delete_thread_alias("never-saved") is False
    assert await store.get_by_alias("one") is None
    assert await store.get_thread_aliases("t") == ["two"]
    assert [m.content for m in (await store.get("t") or Thread()).messages] == ["kept"]


async def test_deleting_a_thread_removes_its_aliases(store: ThreadStore) -> None:
    await saved(store, "a")
    await saved(store, "b")
    await store.save_thread_alias("a", "gone-with-a")
    await store.save_thread_alias("b", "stays")

    await store.delete("a")
    assert await store.get_by_alias("gone-with-a") is None
    assert await store.get_thread_aliases("a") == []
    await store.delete_many(["no-such"])
    found = await store.get_by_alias("stays")
    assert found is not None and found.id == "b"

    await saved(store, "a")  # same id, new thread: the old aliases do not come back
    assert await store.get_thread_aliases("a") == []
    await store.save_thread_alias("a", "gone-with-a")  # and the name is free again
    assert await store.get_thread_aliases("a") == ["gone-with-a"]
    await store.delete_many(["a", "b"])
    assert await store.get_by_alias("stays") is None


async def test_aliases_are_case_sensitive_text_of_any_kind(store: ThreadStore) -> None:
    await saved(store, "upper")
    await saved(store, "lower")
    await store.save_thread_alias("upper", "Order-1")
    await store.save_thread_alias("lower", "order-1")
    odd = [
        "заказ-1",
        "🎉",
        "it's",
        'say "x"',
        "'; DROP TABLE thread_aliases; --",
        "%",
        "_",
        "\\",
        " spaced ",
        "a" * 256,
        "e\u0301",
        "é",
    ]
    for alias in odd:
        await store.save_thread_alias("lower", alias)

    assert (await store.get_by_alias("Order-1") or Thread()).id == "upper"
    assert (await store.get_by_alias("order-1") or Thread()).id == "lower"
    assert await store.get_by_alias("ORDER-1") is None
    for alias in odd:
        assert (await store.get_by_alias(alias) or Thread()).id == "lower", alias
    assert await store.get_thread_aliases("lower") == ["order-1", *odd]
    assert await store.get_by_alias("%%") is None and await store.get_by_alias("e") is None


@pytest.mark.parametrize(
    ("alias", "error"),
    [
        (None, TypeError),
        (1, TypeError),
        (b"bytes", TypeError),
        ("", ValueError),
        ("a" * 257, ValueError),
        ("nul\x00", ValueError),
        ("\ud800", ValueError),
    ],
)
async def test_bad_aliases_are_refused_everywhere(
    store: ThreadStore, alias: Any, error: type[Exception]
) -> None:
    await saved(store, "t")
    with pytest.raises(error):
        await store.save_thread_alias("t", alias)
    with pytest.raises(error):
        await store.get_by_alias(alias)
    with pytest.raises(error):
        await store.delete_thread_alias(alias)
    assert await store.get_thread_aliases("t") == []


async def test_aliases_survive_reopening(
    shared_url: str, open_store: Callable[[str | None], Awaitable[ThreadStore]]
) -> None:
    first = await open_store(shared_url)
    await first.delete_many([t.id for t in await first.list_recent()])
    await saved(first, "t", "persisted")
    await first.save_thread_alias("t", "durable")
    await first.save_thread_alias("t", "second")
    await first.close()

    second = await open_store(shared_url)
    found = await second.get_by_alias("durable")
    assert found is not None and [m.content for m in found.messages] == ["persisted"]
    assert await second.get_thread_aliases("t") == ["durable", "second"]
    other = await open_store(shared_url)  # a second store on the same database sees the move
    await saved(other, "u")
    await other.save_thread_alias("u", "durable")
    assert (await second.get_by_alias("durable") or Thread()).id == "u"


async def test_an_alias_saved_while_its_thread_is_deleted_never_outlives_it(
    shared_url: str, open_store: Callable[[str | None], Awaitable[ThreadStore]]
) -> None:
    aliasing, deleting = await open_store(shared_url), await open_store(shared_url)
    await aliasing.delete_many([t.id for t in await aliasing.list_recent()])
    for i in range(15):
        await saved(aliasing, f"t{i}")
        outcome, deleted = await asyncio.gather(
            aliasing.save_thread_alias(f"t{i}", f"alias-{i}"),
            deleting.delete(f"t{i}"),
            return_exceptions=True,
        )
        assert deleted is True
        assert outcome is None or isinstance(outcome, NotFoundError), outcome
        assert await aliasing.get_by_alias(f"alias-{i}") is None
        assert await deleting.get_thread_aliases(f"t{i}") == []
