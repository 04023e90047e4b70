"""pop_message, append(create=True) and the developer role, on every backend: the primitives a
framework session store needs (threadstore.integrations)."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest

from tests.helpers import assistant, rich_thread, stored, user
from threadstore import ConflictError, Message, NotFoundError, Thread, ThreadStore


async def test_pop_message_of_an_absent_or_empty_thread_is_none(store: ThreadStore) -> None:
    assert await store.pop_message("absent") is None
    await store.save(Thread(id="empty"))
    assert await store.pop_message("empty") is None
    assert await store.get("absent") is None  # popping created nothing


async def test_pop_message_removes_and_returns_the_newest_message_field_for_field(store: ThreadStore) -> None:
    thread = rich_thread("pop", messages=4)
    await store.save(thread)
    expected = (await stored(store, thread.id)).messages

    popped = [await store.pop_message(thread.id) for _ in range(4)]

    assert popped == expected[::-1]  # every field, its thread_id and sequence included
    assert await store.pop_message(thread.id) is None
    assert (await stored(store, thread.id)).messages == []


@pytest.mark.parametrize("length", [1, 2, 5])
@pytest.mark.parametrize("pops", [1, 2, 5, 6])
async def test_after_pops_appends_never_reuse_a_popped_sequence(
    store: ThreadStore, length: int, pops: int
) -> None:
    await store.append("t", *[user(f"m{n}") for n in range(1, length + 1)], create=True)
    cursor = length  # a reader walking forward has seen every message so far
    for _ in range(pops):
        await store.pop_message("t")
    left = max(length - pops, 0)

    appended = await store.append("t", user("next"))

    assert [m.sequence for m in appended.messages] == [length + 1]
    thread = await stored(store, "t")
    assert [(m.sequence, m.content) for m in thread.messages] == [
        *[(n, f"m{n}") for n in range(1, left + 1)],
        (length + 1, "next"),
    ]
    assert [m.content for m in await store.get_messages("t", limit=2)] == [
        *[f"m{n}" for n in range(1, left + 1)][-1:],
        "next",
    ]
    # the walk resumed after its cursor finds the new message (a reused number would hide it)
    assert [m.content for m in await store.get_messages("t", after=cursor)] == ["next"]


async def test_pop_message_keeps_search_summaries_and_usage_right(store: ThreadStore) -> None:
    thread = Thread(id="t", title="Pops")
    thread.add_message(user("the walrus question"))
    thread.add_message(
        assistant(
            "the walrus answer",
            metrics={"model": "m1", "usage": {"prompt_tokens": 3, "completion_tokens": 4, "total_tokens": 7}},
        )
    )
    await store.save(thread)
    assert len(await store.search("walrus")) == 2
    before = (await store.list_threads()).threads[0].updated_at

    popped = await store.pop_message("t")

    assert popped is not None and popped.content == "the walrus answer"
    assert [hit.message_id for hit in await store.search("walrus")] == [thread.messages[0].id]
    assert await store.search_by_content("answer") == []
    assert await store.find_messages_by_attribute("x", 1) == []
    summary = (await store.list_threads()).threads[0]
    assert (summary.message_count, summary.last_message and summary.last_message.content) == (
        1,
        "the walrus question",
    )
    assert summary.updated_at > before  # a change moves the thread ahead in list_threads
    stats = await store.get_usage_stats()
    assert (stats["total_messages"], stats["total_tokens"]) == (1, {"total": 0, "by_model": {}})
    assert await store.get_thread_by_message_id(popped.id) is None


async def test_two_pop_loops_at_once_return_each_message_exactly_once(store: ThreadStore) -> None:
    await store.append("t", *[user(f"m{n}") for n in range(40)], create=True)

    async def pop_all() -> list[str]:
        got = []
        while (message := await store.pop_message("t")) is not None:
            got.append(str(message.content))
        return got

    first, second = await asyncio.gather(pop_all(), pop_all())

    assert sorted(first + second) == sorted(f"m{n}" for n in range(40))  # none twice, none lost
    for got in (first, second):  # each loop saw the newest first
        assert got == sorted(got, key=lambda text: int(text[1:]), reverse=True)
    assert (await stored(store, "t")).messages == []


async def test_pops_racing_appends_lose_nothing_and_keep_sequences_unique(store: ThreadStore) -> None:
    await store.append("t", *[user(f"old{n}") for n in range(20)], create=True)
    popped: list[str] = []

    async def popper() -> None:
        for _ in range(15):
            message = await store.pop_message("t")
            if message is not None:
                popped.append(str(message.content))

    async def appender(name: str) -> None:
        for n in range(10):
            await store.append("t", user(f"{name}{n}"))

    await asyncio.gather(popper(), appender("a"), popper(), appender("b"))

    left = (await stored(store, "t")).messages
    written = {f"old{n}" for n in range(20)} | {f"{w}{n}" for w in "ab" for n in range(10)}
    assert sorted(popped + [str(m.content) for m in left]) == sorted(written)
    sequences = [m.sequence or 0 for m in left]
    assert sequences == sorted(set(sequences))  # unique, in order
    appended = await store.append("t", user("last"))  # numbered after every one handed out
    assert appended.messages[0].sequence == 20 + 20 + 1


async def test_append_create_stores_an_absent_thread_with_its_messages(store: ThreadStore) -> None:
    with pytest.raises(NotFoundError):
        await store.append("new", user("no"))

    header = await store.append("new", user("one"), assistant("two"), create=True)

    assert (header.id, header.title, header.attributes) == ("new", "Untitled Thread", {})
    assert [(m.sequence, m.thread_id) for m in header.messages] == [(1, "new"), (2, "new")]
    thread = await stored(store, "new")
    assert [m.content for m in thread.messages] == ["one", "two"]
    assert thread.created_at == header.created_at
    assert [t.id for t in await store.search_by_title("untitled")] == ["new"]
    assert [t.id for t in await store.find_by_attributes({})] == ["new"]


async def test_append_create_to_a_stored_thread_appends_and_keeps_its_fields(store: ThreadStore) -> None:
    thread = Thread(id="t", title="Kept", attributes={"owner": "u1"}, platforms={"web": {"id": 1}})
    thread.add_message(user("first"))
    await store.save(thread)

    header = await store.append("t", user("second"), create=True)

    assert (header.title, header.attributes, header.created_at) == (
        "Kept",
        {"owner": "u1"},
        thread.created_at,
    )
    again = await stored(store, "t")
    assert [(m.sequence, m.content) for m in again.messages] == [(1, "first"), (2, "second")]
    assert again.platforms == {"web": {"id": 1}}


async def test_two_first_appends_at_once_both_succeed_and_make_one_thread(store: ThreadStore) -> None:
    for round_ in range(5):
        thread_id = f"race-{round_}"
        await asyncio.gather(*[store.append(thread_id, user(f"w{n}"), create=True) for n in range(4)])
        thread = await stored(store, thread_id)
        assert sorted(str(m.content) for m in thread.messages) == ["w0", "w1", "w2", "w3"]
        assert [m.sequence for m in thread.messages] == [1, 2, 3, 4]
    assert len((await store.list_threads()).threads) == 5


async def test_a_refused_append_create_stores_no_thread(store: ThreadStore) -> None:
    twice = user("twice")
    with pytest.raises((ConflictError, ValueError)):
        await store.append("new", user("fine"), twice, user("twice", id=twice.id), create=True)
    with pytest.raises(ValueError, match="system messages are never stored"):
        await store.append("new", Message(role="system", content="no"), create=True)
    with pytest.raises(ValueError):
        await store.append("", user("x"), create=True)
    assert await store.get("new") is None


async def test_the_developer_role_is_stored_read_and_searched_like_the_others(store: ThreadStore) -> None:
    thread = Thread(id="t")
    thread.add_message(Message(role="developer", content="answer in haiku"))
    thread.add_message(user("hello"))
    await store.save(thread)
    await store.append("t", Message(role="developer", content="now in prose"))

    again = await stored(store, "t")

    assert [(m.sequence, m.role) for m in again.messages] == [(1, "developer"), (2, "user"), (3, "developer")]
    assert [hit.role for hit in await store.search("haiku")] == ["developer"]
    assert again.get_message_counts() == {"system": 0, "user": 1, "assistant": 0, "tool": 0, "developer": 2}
    assert again.get_messages_for_chat_completion()[0] == {"role": "developer", "content": "answer in haiku"}
    popped = await store.pop_message("t")
    assert popped is not None and popped.role == "developer"
    assert (await store.get_usage_stats())["total_messages"] == 2


async def test_pop_message_moves_updated_at_only_when_it_removes_one(store: ThreadStore) -> None:
    thread = Thread(id="t")
    await store.save(thread)
    quiet = (await stored(store, "t")).updated_at
    assert await store.pop_message("t") is None
    assert (await stored(store, "t")).updated_at == quiet
    await store.append("t", user("x"))
    await store.pop_message("t")
    assert (await stored(store, "t")).updated_at - quiet > timedelta(0)


async def test_pop_message_checks_its_argument(store: ThreadStore) -> None:
    with pytest.raises(TypeError):
        await store.pop_message(1)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        await store.pop_message("")
