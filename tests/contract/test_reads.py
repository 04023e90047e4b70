"""get, get_or_create, list, list_recent, delete, delete_many and append, on every backend."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from tests.helpers import contents, sequences, stored, user
from threadstore import ConflictError, Message, NotFoundError, Thread, ThreadStore

T0 = datetime(2024, 1, 1, 12, 0, 0, tzinfo=UTC)


async def save_at(store: ThreadStore, thread_id: str, updated_at: datetime, *texts: str) -> Thread:
    """Save a thread with that id, messages and updated_at."""
    thread = Thread(id=thread_id)
    for text in texts:
        thread.add_message(user(f"{thread_id}: {text}"))
    thread.updated_at = updated_at
    return await store.save(thread)


# --- get ---------------------------------------------------------------------------------------


async def test_get_of_an_unknown_id_is_none(store: ThreadStore) -> None:
    assert await store.get("no-such-thread") is None


async def test_get_returns_the_thread_with_its_messages_in_sequence(store: ThreadStore) -> None:
    await save_at(store, "t", T0, "one", "two", "three")
    await save_at(store, "other", T0, "x")

    thread = await stored(store, "t")
    assert thread.id == "t"
    assert contents(thread) == ["t: one", "t: two", "t: three"]
    assert sequences(thread) == [1, 2, 3]


async def test_ids_are_exact_strings(store: ThreadStore) -> None:
    ids = ["Thread", "thread", "thread ", "💬 ü", "a/b?c=d&e#f", "100%_'\"", "x" * 300]
    for thread_id in ids:
        await store.save(Thread(id=thread_id, title=f"title of {thread_id}"))

    for thread_id in ids:
        assert (await stored(store, thread_id)).title == f"title of {thread_id}"
    assert await store.get("THREAD") is None
    assert await store.get("x" * 299) is None


# --- get_or_create -----------------------------------------------------------------------------


async def test_get_or_create_stores_an_empty_thread_with_that_id(store: ThreadStore) -> None:
    before = datetime.now(UTC)
    thread = await store.get_or_create("new-thread")

    assert thread.id == "new-thread"
    assert thread.title == "Untitled Thread"
    assert thread.messages == []
    assert thread.attributes == {} and thread.platforms == {} and thread.source is None
    assert before <= thread.created_at <= datetime.now(UTC)
    assert await store.get("new-thread") == thread
    assert [t.id for t in await store.list()] == ["new-thread"]


async def test_get_or_create_returns_an_existing_thread_untouched(store: ThreadStore) -> None:
    existing = Thread(
        id="existing", title="Kept", attributes={"k": "v"}, created_at=datetime(2020, 1, 1, tzinfo=UTC)
    )
    existing.add_message(user("hello"))
    existing.updated_at = datetime(2020, 1, 2, tzinfo=UTC)
    await store.save(existing)

    thread = await store.get_or_create("existing")

    assert thread == existing
    assert await stored(store, "existing") == existing


async def test_get_or_create_returns_a_thread_that_can_be_saved(store: ThreadStore) -> None:
    thread = await store.get_or_create("chat")
    thread.add_message(user("first"))
    await store.save(thread)
    again = await store.get_or_create("chat")
    again.add_message(user("second"))
    await store.save(again)

    loaded = await stored(store, "chat")
    assert contents(loaded) == ["first", "second"]
    assert sequences(loaded) == [1, 2]


async def test_concurrent_get_or_create_of_one_id_creates_it_once(store: ThreadStore) -> None:
    threads = await asyncio.gather(*[store.get_or_create("same") for _ in range(10)])

    assert {t.id for t in threads} == {"same"}
    assert all(t == threads[0] for t in threads)
    assert [t.id for t in await store.list()] == ["same"]


# --- list and list_recent ----------------------------------------------------------------------


async def test_list_is_newest_updated_at_first(store: ThreadStore) -> None:
    await save_at(store, "middle", T0, "m")
    await save_at(store, "oldest", T0 - timedelta(days=1), "o")
    await save_at(store, "newest", T0 + timedelta(days=1), "n")

    threads = await store.list()
    assert [t.id for t in threads] == ["newest", "middle", "oldest"]
    assert [contents(t) for t in threads] == [["newest: n"], ["middle: m"], ["oldest: o"]]


async def test_list_tells_apart_a_single_microsecond(store: ThreadStore) -> None:
    await save_at(store, "a", T0)
    await save_at(store, "b", T0 + timedelta(microseconds=1))
    await save_at(store, "c", T0 - timedelta(microseconds=1))

    assert [t.id for t in await store.list()] == ["b", "a", "c"]


async def test_list_breaks_updated_at_ties_by_id_descending(store: ThreadStore) -> None:
    for thread_id in ["b", "a", "c"]:
        await save_at(store, thread_id, T0)
    await save_at(store, "z-older", T0 - timedelta(seconds=1))

    assert [t.id for t in await store.list()] == ["c", "b", "a", "z-older"]


async def test_the_id_tie_break_compares_code_points(store: ThreadStore) -> None:
    ids = ["a", "B", "aa", "é", "z", "Z", "_", "10", "9", "💬"]
    for thread_id in ids:
        await save_at(store, thread_id, T0)

    assert [t.id for t in await store.list()] == sorted(ids, reverse=True)


async def test_list_pages_with_limit_and_offset(store: ThreadStore) -> None:
    for day in range(5):
        await save_at(store, f"t{day}", T0 + timedelta(days=day))

    assert [t.id for t in await store.list(limit=2)] == ["t4", "t3"]
    assert [t.id for t in await store.list(limit=2, offset=2)] == ["t2", "t1"]
    assert [t.id for t in await store.list(limit=2, offset=4)] == ["t0"]
    assert await store.list(limit=2, offset=5) == []
    assert await store.list(limit=0) == []
    assert [t.id for t in await store.list(offset=3)] == ["t1", "t0"]


async def test_list_of_an_empty_store_is_empty(store: ThreadStore) -> None:
    assert await store.list() == []
    assert await store.list_recent() == []


async def test_list_defaults_to_100_and_list_recent_to_all(store: ThreadStore) -> None:
    await asyncio.gather(*[save_at(store, f"t{n:03d}", T0 + timedelta(seconds=n)) for n in range(101)])

    listed = await store.list()
    assert len(listed) == 100
    assert listed[0].id == "t100" and listed[-1].id == "t001"
    recent = await store.list_recent()
    assert [t.id for t in recent] == [f"t{n:03d}" for n in range(100, -1, -1)]


async def test_list_recent_limits_to_the_newest(store: ThreadStore) -> None:
    for day in range(4):
        await save_at(store, f"t{day}", T0 + timedelta(days=day), "hi")

    recent = await store.list_recent(2)
    assert [t.id for t in recent] == ["t3", "t2"]
    assert [contents(t) for t in recent] == [["t3: hi"], ["t2: hi"]]
    assert await store.list_recent(0) == []
    assert [t.id for t in await store.list_recent(limit=10)] == ["t3", "t2", "t1", "t0"]


async def test_a_save_that_moves_updated_at_reorders_the_list(store: ThreadStore) -> None:
    await save_at(store, "a", T0)
    await save_at(store, "b", T0 + timedelta(hours=1))
    a = await stored(store, "a")
    a.add_message(user("bump"))  # add_message moves updated_at to now
    await store.save(a)

    assert [t.id for t in await store.list()] == ["a", "b"]


async def test_threads_from_list_can_be_edited_and_saved(store: ThreadStore) -> None:
    await save_at(store, "a", T0, "one", "two")
    [listed] = await store.list()
    listed.messages[0].content = "one, edited"
    listed.add_message(user("three"))
    await store.save(listed)

    loaded = await stored(store, "a")
    assert contents(loaded) == ["one, edited", "a: two", "three"]
    assert sequences(loaded) == [1, 2, 3]


# --- delete and delete_many --------------------------------------------------------------------


async def test_delete_removes_the_thread_and_says_whether_it_existed(store: ThreadStore) -> None:
    await save_at(store, "gone", T0, "a", "b")
    await save_at(store, "kept", T0, "c")

    assert await store.delete("gone") is True
    assert await store.get("gone") is None
    assert await store.delete("gone") is False
    assert await store.delete("never-existed") is False
    assert [t.id for t in await store.list()] == ["kept"]
    assert contents(await stored(store, "kept")) == ["kept: c"]


async def test_deleting_a_thread_frees_its_message_ids(store: ThreadStore) -> None:
    old = await save_at(store, "old", T0, "reused")
    await store.delete("old")

    new = Thread(id="new")
    new.add_message(old.messages[0])
    await store.save(new)

    assert contents(await stored(store, "new")) == ["old: reused"]
    assert sequences(await stored(store, "new")) == [1]


# A stale object saved after its thread was deleted: test_save.py, test_stale_save_after_a_delete_*.


async def test_a_fresh_copy_saved_after_a_delete_is_stored_whole(store: ThreadStore) -> None:
    thread = await save_at(store, "t", T0, "a", "b")
    await store.delete("t")
    await store.save(Thread(id="t", messages=list(thread.messages)))

    loaded = await stored(store, "t")
    assert contents(loaded) == ["t: a", "t: b"]
    assert sequences(loaded) == [1, 2]


async def test_delete_many_counts_what_it_deleted(store: ThreadStore) -> None:
    for thread_id in ["a", "b", "c", "d"]:
        await save_at(store, thread_id, T0, "x")

    assert await store.delete_many(["a", "c", "unknown", "a", "c"]) == 2
    assert [t.id for t in await store.list()] == ["d", "b"]
    assert await store.delete_many(["a", "unknown"]) == 0
    assert await store.delete_many([]) == 0
    assert await store.delete_many(iter(["b", "d"])) == 2
    assert await store.list() == []


# --- append ------------------------------------------------------------------------------------


async def test_append_numbers_on_after_the_stored_messages(store: ThreadStore) -> None:
    await save_at(store, "t", T0, "one", "two")
    first, second = user("three"), user("four")

    header = await store.append("t", first, second)

    assert header.id == "t"
    assert header.messages == [first, second]
    assert header.messages[0] is first and header.messages[1] is second
    assert (first.sequence, second.sequence) == (3, 4)
    assert (first.thread_id, second.thread_id) == ("t", "t")
    loaded = await stored(store, "t")
    assert contents(loaded) == ["t: one", "t: two", "three", "four"]
    assert sequences(loaded) == [1, 2, 3, 4]
    assert loaded.messages[2:] == [first, second]


async def test_append_returns_the_stored_header(store: ThreadStore) -> None:
    thread = Thread(
        id="t",
        title="Header",
        attributes={"k": [1]},
        platforms={"slack": {"c": "C1"}},
        source={"name": "slack"},
        created_at=datetime(2020, 1, 1, tzinfo=UTC),
    )
    await store.save(thread)

    header = await store.append("t", user("hi"))

    assert (header.title, header.attributes, header.platforms, header.source, header.created_at) == (
        "Header",
        {"k": [1]},
        {"slack": {"c": "C1"}},
        {"name": "slack"},
        datetime(2020, 1, 1, tzinfo=UTC),
    )
    loaded = await stored(store, "t")
    assert header.updated_at == loaded.updated_at


async def test_append_moves_the_thread_to_the_front_of_the_list(store: ThreadStore) -> None:
    await save_at(store, "old", T0)
    await save_at(store, "new", T0 + timedelta(days=1))
    before = datetime.now(UTC)

    header = await store.append("old", user("bump"))

    assert before <= header.updated_at <= datetime.now(UTC)
    assert [t.id for t in await store.list()] == ["old", "new"]


async def test_append_to_an_empty_thread_starts_at_one(store: ThreadStore) -> None:
    await store.get_or_create("empty")
    await store.append("empty", user("a"))
    await store.append("empty", user("b"), user("c"))

    loaded = await stored(store, "empty")
    assert contents(loaded) == ["a", "b", "c"]
    assert sequences(loaded) == [1, 2, 3]


async def test_append_continues_after_a_removal_without_renumbering(store: ThreadStore) -> None:
    thread = await save_at(store, "t", T0, "a", "b", "c")
    thread.remove_message(thread.messages[2].id)  # the last: its number is not handed out again
    await store.save(thread)

    appended = user("d")
    await store.append("t", appended)

    assert appended.sequence == 4
    loaded = await stored(store, "t")
    assert contents(loaded) == ["t: a", "t: b", "d"]
    assert sequences(loaded) == [1, 2, 4]


async def test_the_header_from_append_can_be_saved_without_losing_messages(store: ThreadStore) -> None:
    await save_at(store, "t", T0, "one", "two")
    header = await store.append("t", user("three"))
    header.title = "Renamed"
    header.messages[0].content = "three, edited"
    header.add_message(user("four"))
    await store.save(header)

    loaded = await stored(store, "t")
    assert loaded.title == "Renamed"
    assert contents(loaded) == ["t: one", "t: two", "three, edited", "four"]
    assert sequences(loaded) == [1, 2, 3, 4]


async def test_a_thread_loaded_before_an_append_keeps_the_appended_messages_when_saved(
    store: ThreadStore,
) -> None:
    await save_at(store, "t", T0, "one")
    loaded = await stored(store, "t")
    await store.append("t", user("appended"))
    loaded.add_message(user("saved"))
    await store.save(loaded)

    again = await stored(store, "t")
    assert contents(again) == ["t: one", "appended", "saved"]
    assert sequences(again) == [1, 2, 3]
    assert loaded.messages[-1].sequence == 3


async def test_append_to_an_unknown_thread_is_not_found_and_creates_nothing(store: ThreadStore) -> None:
    with pytest.raises(NotFoundError):
        await store.append("missing", user("hi"))
    assert await store.get("missing") is None
    assert await store.list() == []


async def test_append_refuses_a_system_message(store: ThreadStore) -> None:
    await save_at(store, "t", T0, "one")

    with pytest.raises(ValueError):
        await store.append("t", user("fine"), Message(role="system", content="nope"))
    assert contents(await stored(store, "t")) == ["t: one"]


async def test_append_needs_at_least_one_message(store: ThreadStore) -> None:
    await save_at(store, "t", T0, "one")

    with pytest.raises(ValueError):
        await store.append("t")
    assert contents(await stored(store, "t")) == ["t: one"]


async def test_append_of_a_message_already_in_the_thread_is_a_conflict(store: ThreadStore) -> None:
    thread = await save_at(store, "t", T0, "one", "two")
    before = await stored(store, "t")

    with pytest.raises(ConflictError) as raised:
        await store.append("t", user("new"), thread.messages[0])
    assert str(raised.value) == f"message {thread.messages[0].id!r} is already stored"
    assert await stored(store, "t") == before

    appended = user("after the conflict")
    await store.append("t", appended)
    assert appended.sequence == 3
    assert sequences(await stored(store, "t")) == [1, 2, 3]


async def test_append_of_a_message_id_stored_in_another_thread_stores_another_message(
    store: ThreadStore,
) -> None:
    """Messages are keyed by (thread, id): an id from outside that another thread holds too is
    this thread's own message, and each thread edits and deletes its own."""
    other = await save_at(store, "other", T0, "theirs")
    await save_at(store, "t", T0, "mine")
    copied = Message(role="user", content="copied", id=other.messages[0].id)

    await store.append("t", user("new"), copied)
    assert contents(await stored(store, "t")) == ["t: mine", "new", "copied"]
    assert contents(await stored(store, "other")) == ["other: theirs"]
    mine = await stored(store, "t")
    mine.remove_message(copied.id)
    await store.save(mine)
    assert contents(await stored(store, "t")) == ["t: mine", "new"]
    assert contents(await stored(store, "other")) == ["other: theirs"]


async def test_append_of_the_same_message_twice_in_one_call_is_refused(store: ThreadStore) -> None:
    await save_at(store, "t", T0, "one")
    message = user("twice")

    with pytest.raises(ValueError):
        await store.append("t", message, message)
    assert contents(await stored(store, "t")) == ["t: one"]


async def test_append_refuses_values_json_cannot_carry_back(store: ThreadStore) -> None:
    await save_at(store, "t", T0, "one")
    before = await stored(store, "t")

    with pytest.raises((ValueError, TypeError)):
        await store.append("t", user("fine"), user("bad", attributes={"when": (1, 2)}))
    assert await stored(store, "t") == before


# --- bad arguments -----------------------------------------------------------------------------

Call = Callable[[ThreadStore], Awaitable[Any]]
BAD_CALLS: dict[str, tuple[Call, type[Exception]]] = {
    "get_int": (lambda s: s.get(1), TypeError),  # type: ignore[arg-type]
    "get_none": (lambda s: s.get(None), TypeError),  # type: ignore[arg-type]
    "get_empty": (lambda s: s.get(""), ValueError),
    "get_or_create_int": (lambda s: s.get_or_create(1), TypeError),  # type: ignore[arg-type]
    "get_or_create_empty": (lambda s: s.get_or_create(""), ValueError),
    "delete_int": (lambda s: s.delete(1), TypeError),  # type: ignore[arg-type]
    "delete_empty": (lambda s: s.delete(""), ValueError),
    "delete_many_one_string": (lambda s: s.delete_many("abc"), TypeError),
    "delete_many_int_id": (lambda s: s.delete_many(["a", 1]), TypeError),  # type: ignore[list-item]
    "delete_many_empty_id": (lambda s: s.delete_many(["a", ""]), ValueError),
    "list_negative_limit": (lambda s: s.list(limit=-1), ValueError),
    "list_negative_offset": (lambda s: s.list(offset=-1), ValueError),
    "list_limit_beyond_64_bits": (lambda s: s.list(limit=2**64), ValueError),
    "list_offset_beyond_64_bits": (lambda s: s.list(offset=2**63), ValueError),
    "list_str_limit": (lambda s: s.list(limit="10"), TypeError),  # type: ignore[arg-type]
    "list_float_limit": (lambda s: s.list(limit=1.5), TypeError),  # type: ignore[arg-type]
    "list_none_limit": (lambda s: s.list(limit=None), TypeError),  # type: ignore[arg-type]
    "list_bool_limit": (lambda s: s.list(limit=True), TypeError),
    "list_recent_negative": (lambda s: s.list_recent(-1), ValueError),
    "list_recent_str": (lambda s: s.list_recent("5"), TypeError),  # type: ignore[arg-type]
    "append_int_id": (lambda s: s.append(1, Message(role="user", content="x")), TypeError),  # type: ignore[arg-type]
    "append_empty_id": (lambda s: s.append("", Message(role="user", content="x")), ValueError),
    "append_not_a_message": (lambda s: s.append("kept", "text"), TypeError),  # type: ignore[arg-type]
}


@pytest.mark.parametrize("call, error", BAD_CALLS.values(), ids=BAD_CALLS.keys())
async def test_bad_arguments_raise_before_anything_changes(
    store: ThreadStore, call: Call, error: type[Exception]
) -> None:
    await save_at(store, "kept", T0, "one")
    before = await stored(store, "kept")

    with pytest.raises(error):
        await call(store)
    assert await store.list() == [before]
