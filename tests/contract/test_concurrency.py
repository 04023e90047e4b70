"""Two writers, many concurrent saves and appends, and cancelled saves, on every backend."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Awaitable, Callable
from typing import Any

from tests.helpers import contents, conversation, sequences, stored, user
from threadstore import Message, Thread, ThreadStore

OpenStore = Callable[[str | None], Awaitable[ThreadStore]]


# --- two writers of one thread -----------------------------------------------------------------


async def test_two_loaded_copies_each_appending_keep_both_messages(store: ThreadStore) -> None:
    thread = conversation("one", "two")
    await store.save(thread)
    first, second = await stored(store, thread.id), await stored(store, thread.id)
    first.add_message(user("from first"))
    second.add_message(user("from second"))

    await store.save(first)
    await store.save(second)

    loaded = await stored(store, thread.id)
    assert contents(loaded) == ["one", "two", "from first", "from second"]
    assert sequences(loaded) == [1, 2, 3, 4]
    assert first.messages[-1].sequence == 3
    assert second.messages[-1].sequence == 4


async def test_one_thread_saved_twice_at_once_while_growing_stays_in_step(store: ThreadStore) -> None:
    """Two saves of one Thread object under way together, each with messages appended since the
    last sync (the second with one more): every message is stored once, and the saves after
    them write only what is new."""
    thread = conversation("one")
    await store.save(thread)
    thread.add_message(user("two"))
    first = asyncio.ensure_future(store.save(thread))
    await asyncio.sleep(0)  # the first save has taken its changes
    thread.add_message(user("three"))
    await asyncio.gather(first, store.save(thread))
    for text in ("four", "five"):
        thread.add_message(user(text))
        await store.save(thread)
    loaded = await stored(store, thread.id)
    assert contents(loaded) == ["one", "two", "three", "four", "five"]
    assert sequences(loaded) == [1, 2, 3, 4, 5]
    assert sequences(thread) == [1, 2, 3, 4, 5]


async def test_two_loaded_copies_saving_concurrently_keep_both_messages(store: ThreadStore) -> None:
    thread = conversation("one", "two")
    await store.save(thread)
    first, second = await stored(store, thread.id), await stored(store, thread.id)
    first.add_message(user("from first"))
    second.add_message(user("from second"))

    await asyncio.gather(store.save(first), store.save(second))

    loaded = await stored(store, thread.id)
    assert contents(loaded)[:2] == ["one", "two"]
    assert sorted(contents(loaded)[2:]) == ["from first", "from second"]
    assert sequences(loaded) == [1, 2, 3, 4]
    assert sorted([first.messages[-1].sequence, second.messages[-1].sequence]) == [3, 4]  # type: ignore[type-var]


async def test_ten_loaded_copies_saving_concurrently_all_land(store: ThreadStore) -> None:
    thread = conversation("start")
    await store.save(thread)
    copies = [await stored(store, thread.id) for _ in range(10)]
    for number, copy in enumerate(copies):
        copy.add_message(user(f"writer {number}"))
        copy.add_message(user(f"writer {number}, again"))

    await asyncio.gather(*[store.save(copy) for copy in copies])

    loaded = await stored(store, thread.id)
    assert len(loaded.messages) == 21
    assert sequences(loaded) == list(range(1, 22))
    assert sorted(contents(loaded)[1:]) == sorted(
        [f"writer {n}" for n in range(10)] + [f"writer {n}, again" for n in range(10)]
    )
    for number in range(10):  # each writer's two messages stay in its order, one after the other
        position = contents(loaded).index(f"writer {number}")
        assert contents(loaded)[position + 1] == f"writer {number}, again"


async def test_two_stores_on_one_database_each_appending_keep_both(
    shared_url: str, open_store: OpenStore
) -> None:
    a, b = await open_store(shared_url), await open_store(shared_url)
    thread = conversation("one", "two")
    await a.save(thread)
    via_a, via_b = await stored(a, thread.id), await stored(b, thread.id)
    via_a.add_message(user("via a"))
    via_b.add_message(user("via b"))

    await a.save(via_a)
    await b.save(via_b)

    for reader in (a, b):
        loaded = await stored(reader, thread.id)
        assert contents(loaded) == ["one", "two", "via a", "via b"]
        assert sequences(loaded) == [1, 2, 3, 4]


async def test_two_stores_on_one_database_saving_concurrently_keep_both(
    shared_url: str, open_store: OpenStore
) -> None:
    a, b = await open_store(shared_url), await open_store(shared_url)
    thread = conversation("one", "two")
    await a.save(thread)
    via_a, via_b = await stored(a, thread.id), await stored(b, thread.id)
    for n in range(3):
        via_a.add_message(user(f"via a {n}"))
        via_b.add_message(user(f"via b {n}"))

    await asyncio.gather(a.save(via_a), b.save(via_b))

    loaded = await stored(b, thread.id)
    assert contents(loaded)[:2] == ["one", "two"]
    assert sorted(contents(loaded)[2:]) == sorted(
        [f"via a {n}" for n in range(3)] + [f"via b {n}" for n in range(3)]
    )
    assert sequences(loaded) == [1, 2, 3, 4, 5, 6, 7, 8]


async def test_two_stores_on_one_database_appending_concurrently_all_land(
    shared_url: str, open_store: OpenStore
) -> None:
    a, b = await open_store(shared_url), await open_store(shared_url)
    thread = conversation("start")
    await a.save(thread)

    await asyncio.gather(*[(a if n % 2 else b).append(thread.id, user(f"append {n}")) for n in range(20)])

    loaded = await stored(a, thread.id)
    assert sequences(loaded) == list(range(1, 22))
    assert sorted(contents(loaded)[1:]) == sorted(f"append {n}" for n in range(20))


async def test_two_stores_on_one_database_see_each_others_writes(
    shared_url: str, open_store: OpenStore
) -> None:
    a, b = await open_store(shared_url), await open_store(shared_url)
    thread = conversation("from a")
    await a.save(thread)
    await b.append(thread.id, user("appended via b"))
    assert await b.delete(thread.id) is True
    assert await a.get(thread.id) is None


async def test_a_save_leaves_messages_it_did_not_touch_as_another_writer_left_them(
    store: ThreadStore,
) -> None:
    thread = conversation("one", "two")
    await store.save(thread)
    editor, appender = await stored(store, thread.id), await stored(store, thread.id)
    editor.messages[0].content = "one, edited"
    await store.save(editor)

    appender.add_message(user("three"))
    await store.save(appender)

    assert contents(await stored(store, thread.id)) == ["one, edited", "two", "three"]


async def test_only_messages_the_saving_thread_removed_are_deleted(store: ThreadStore) -> None:
    thread = conversation("one", "two", "three")
    await store.save(thread)
    remover, appender = await stored(store, thread.id), await stored(store, thread.id)
    appender.add_message(user("appended meanwhile"))
    await store.save(appender)

    remover.remove_message(remover.messages[1].id)
    await store.save(remover)

    loaded = await stored(store, thread.id)
    assert contents(loaded) == ["one", "three", "appended meanwhile"]
    assert sequences(loaded) == [1, 3, 4]  # nothing renumbered: stored sequences never change
    assert contents(remover) == ["one", "three"]
    assert sequences(remover) == [1, 3]


async def test_a_message_another_writer_deleted_is_not_brought_back(store: ThreadStore) -> None:
    thread = conversation("one", "two", "three")
    await store.save(thread)
    remover, other = await stored(store, thread.id), await stored(store, thread.id)
    remover.remove_message(remover.messages[0].id)
    await store.save(remover)

    other.messages[0].content = "one, edited after it was deleted"
    other.add_message(user("four"))
    await store.save(other)

    loaded = await stored(store, thread.id)
    assert contents(loaded) == ["two", "three", "four"]
    assert sequences(loaded) == [2, 3, 4]


async def test_concurrent_removals_and_appends_leave_unique_increasing_sequences(store: ThreadStore) -> None:
    thread = conversation(*[f"m{n}" for n in range(6)])
    await store.save(thread)
    copies = [await stored(store, thread.id) for _ in range(4)]
    copies[0].remove_message(copies[0].messages[0].id)
    copies[1].remove_message(copies[1].messages[3].id)
    copies[2].add_message(user("added 2"))
    copies[3].add_message(user("added 3"))
    copies[3].remove_message(copies[3].messages[5].id)

    await asyncio.gather(*[store.save(copy) for copy in copies])

    loaded = await stored(store, thread.id)
    assert contents(loaded)[:3] == ["m1", "m2", "m4"]
    assert sorted(contents(loaded)[3:]) == ["added 2", "added 3"]
    assert sequences(loaded) == [2, 3, 5, 7, 8]  # the removed ones' numbers stay unused


async def test_concurrent_saves_of_the_same_new_message_into_one_thread_store_it_once(
    store: ThreadStore,
) -> None:
    await asyncio.gather(*[store.get("warm-up") for _ in range(4)])  # open pooled connections
    for round_ in range(5):
        thread_id, message_id = f"shared-{round_}", f"event-{round_}"
        await store.get_or_create(thread_id)

        def writer() -> Thread:  # e.g. two workers handling the same incoming event
            return Thread(id=thread_id, messages=[Message(id=message_id, role="user", content="hi")])  # noqa: B023 - called at once

        await asyncio.gather(store.save(writer()), store.save(writer()))

        loaded = await stored(store, thread_id)
        assert [(m.id, m.content, m.sequence) for m in loaded.messages] == [(message_id, "hi", 1)]


async def test_overlapping_concurrent_saves_of_new_messages_into_one_thread_all_land(
    store: ThreadStore,
) -> None:
    await asyncio.gather(*[store.get("warm-up") for _ in range(6)])  # open pooled connections
    for round_ in range(15):
        thread_id = f"overlap-{round_}"
        await store.get_or_create(thread_id)
        ids = [f"{thread_id}-m{k}" for k in range(4)]

        def writer(*picked: int, thread_id: str = thread_id, ids: list[str] = ids) -> Thread:
            return Thread(
                id=thread_id, messages=[Message(id=ids[k], role="user", content=f"m{k}") for k in picked]
            )

        await asyncio.gather(
            store.save(writer(0)),
            store.save(writer(1)),
            store.save(writer(2)),
            store.save(writer(0, 1, 2)),
            store.save(writer(2, 1, 0, 3)),
        )

        loaded = await stored(store, thread_id)
        assert sorted(m.id for m in loaded.messages) == ids
        assert sequences(loaded) == [1, 2, 3, 4]


async def test_one_thread_object_saved_twice_at_once_is_stored_once(store: ThreadStore) -> None:
    thread = conversation("a", "b")
    await store.save(thread)
    thread.add_message(user("c"))
    thread.add_message(user("d"))

    await asyncio.gather(store.save(thread), store.save(thread))

    loaded = await stored(store, thread.id)
    assert contents(loaded) == ["a", "b", "c", "d"]
    assert sequences(loaded) == [1, 2, 3, 4]
    assert sequences(thread) == [1, 2, 3, 4]
    thread.add_message(user("e"))  # and it goes on saving normally
    await store.save(thread)
    assert contents(await stored(store, thread.id)) == ["a", "b", "c", "d", "e"]


async def test_one_thread_object_with_a_removal_saved_twice_at_once_is_stored_once(
    store: ThreadStore,
) -> None:
    await asyncio.gather(*[store.get("warm-up") for _ in range(4)])  # open pooled connections
    for round_ in range(5):
        thread = conversation("a", "b", "c", id=f"twice-{round_}")
        await store.save(thread)
        thread.remove_message(thread.messages[0].id)
        thread.add_message(user("d"))

        await asyncio.gather(store.save(thread), store.save(thread))

        loaded = await stored(store, thread.id)
        assert contents(loaded) == ["b", "c", "d"]
        assert sequences(loaded) == [2, 3, 4]
        assert sequences(thread) == [2, 3, 4]


async def test_holds_message_twice_one_thread_saved_from_four_tasks_at_once(store: ThreadStore) -> None:
    """Issue 30 item 13: 4 tasks x 30, each appending to one shared Thread object and saving it,
    raised ``ValueError: holds message ... twice`` (87 of 120 saves) and left messages unsaved.
    Every save succeeds, every message is stored once, and a last save finds nothing left."""
    thread = conversation("first")
    await store.save(thread)

    async def writer(task: int) -> None:
        for n in range(30):
            thread.add_message(user(f"task {task} message {n}"))
            await store.save(thread)
            await asyncio.sleep(0)

    await asyncio.gather(*[writer(task) for task in range(4)])

    loaded = await stored(store, thread.id)
    assert sorted(contents(loaded)) == sorted(
        ["first", *[f"task {t} message {n}" for t in range(4) for n in range(30)]]
    )
    assert sequences(loaded) == list(range(1, 122))
    assert sorted(m.id for m in loaded.messages) == sorted(m.id for m in thread.messages)
    assert {m.id: m.sequence for m in thread.messages} == {m.id: m.sequence for m in loaded.messages}


def test_holds_message_twice_one_thread_saved_through_the_sync_facade_from_eight_threads(
    store_url: str | None,
) -> None:
    """Issue 30 item 13, through threadstore.sync: 8 threads appending to one Thread object and
    saving it (164 ValueErrors before)."""
    from threadstore.sync import ThreadStore as SyncThreadStore

    with SyncThreadStore(store_url) as sync:
        thread = conversation("first")
        sync.save(thread)
        errors: list[BaseException] = []

        def writer(worker: int) -> None:
            try:
                for n in range(15):
                    thread.add_message(user(f"worker {worker} message {n}"))
                    sync.save(thread)
            except BaseException as exc:
                errors.append(exc)

        workers = [threading.Thread(target=writer, args=(w,)) for w in range(8)]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join(120)
        assert not errors, errors[:3]
        sync.save(thread)  # a message added after the last save of its writer began
        loaded = sync.get(thread.id)
        assert loaded is not None
        assert len(loaded.messages) == 1 + 8 * 15
        assert sorted(m.id for m in loaded.messages) == sorted(m.id for m in thread.messages)
        assert sequences(loaded) == list(range(1, 122))
        sync.delete(thread.id)


# --- many operations at once -------------------------------------------------------------------


async def test_fifty_concurrent_saves_of_distinct_threads_all_land(store: ThreadStore) -> None:
    threads = [conversation(f"t{n} first", f"t{n} second", id=f"thread-{n:02d}") for n in range(50)]

    results = await asyncio.gather(*[store.save(thread) for thread in threads])

    assert results == threads
    listed = await store.list_recent()
    assert sorted(t.id for t in listed) == [f"thread-{n:02d}" for n in range(50)]
    for thread in listed:
        n = int(thread.id.removeprefix("thread-"))
        assert contents(thread) == [f"t{n} first", f"t{n} second"]
        assert sequences(thread) == [1, 2]


async def test_concurrent_appends_all_land_with_gap_free_sequences(store: ThreadStore) -> None:
    await store.save(conversation("start", id="t"))
    batches = [[user(f"batch {n} a"), user(f"batch {n} b")] for n in range(20)]

    headers = await asyncio.gather(*[store.append("t", *batch) for batch in batches])

    loaded = await stored(store, "t")
    assert sequences(loaded) == list(range(1, 42))
    assert sorted(m.sequence for h in headers for m in h.messages) == list(range(2, 42))  # type: ignore[type-var]
    for batch in batches:
        assert batch[1].sequence == batch[0].sequence + 1  # type: ignore[operator]
        assert loaded.messages[batch[0].sequence - 1].content == batch[0].content  # type: ignore[operator]


async def test_concurrent_appends_and_saves_of_one_thread_all_land(store: ThreadStore) -> None:
    await store.save(conversation("start", id="t"))
    copies = [await stored(store, "t") for _ in range(5)]
    for n, copy in enumerate(copies):
        copy.add_message(user(f"saved {n}"))

    await asyncio.gather(
        *[store.save(copy) for copy in copies],
        *[store.append("t", user(f"appended {n}")) for n in range(5)],
    )

    loaded = await stored(store, "t")
    assert sequences(loaded) == list(range(1, 12))
    assert sorted(contents(loaded)) == sorted(
        ["start"] + [f"saved {n}" for n in range(5)] + [f"appended {n}" for n in range(5)]
    )


async def test_concurrent_reads_during_writes_see_whole_threads(store: ThreadStore) -> None:
    await store.save(conversation("start", id="t"))

    async def writer(n: int) -> None:
        await store.append("t", user(f"w{n} a"), user(f"w{n} b"))

    async def reader() -> list[int]:
        thread = await stored(store, "t")
        return [m.sequence for m in thread.messages]  # type: ignore[misc]

    results = await asyncio.gather(*[f for n in range(10) for f in (writer(n), reader())])

    for seen in results[1::2]:
        assert seen == list(range(1, len(seen) + 1))  # type: ignore[arg-type]  # never a gap: a batch lands whole
        assert len(seen) % 2 == 1


# --- cancellation ------------------------------------------------------------------------------

MANY = 200


async def _cancel_after(awaitable: Awaitable[Any], delay: float) -> bool:
    """Run it as a task and cancel it after ``delay``; True if it finished first."""
    task = asyncio.ensure_future(awaitable)
    await asyncio.sleep(delay)
    task.cancel()
    try:
        await task
    except asyncio.CancelledError:
        return False
    return True


async def test_messages_added_or_edited_while_a_save_runs_go_to_the_next_save(
    store: ThreadStore,
) -> None:
    thread = conversation("a")
    await store.save(thread)
    thread.add_message(user("b"))
    saving = asyncio.create_task(store.save(thread))
    await asyncio.sleep(0)  # the save has taken its changes and is writing
    thread.add_message(user("c"))
    thread.messages[0].content = "a edited"
    thread.messages[1].content = "b edited"  # new in the running save, edited after it
    await saving
    await store.save(thread)

    assert contents(await stored(store, thread.id)) == ["a edited", "b edited", "c"]


async def test_a_cancelled_save_stores_all_or_nothing_and_the_store_keeps_working(
    store: ThreadStore,
) -> None:
    threads = []
    for attempt, delay in enumerate([0, 0, 0.0001, 0.0005, 0.001, 0.002, 0.005]):
        thread = Thread(id=f"cancelled-{attempt}")
        for n in range(MANY):
            thread.add_message(user(f"attempt {attempt} message {n}"))
        threads.append(thread)
        await _cancel_after(store.save(thread), delay)

        found = await store.get(thread.id)
        assert found is None or (
            len(found.messages) == MANY and sequences(found) == list(range(1, MANY + 1))
        ), f"attempt {attempt}: a partial thread was stored"

    ok = conversation("after the cancellations")
    await store.save(ok)
    assert contents(await stored(store, ok.id)) == ["after the cancellations"]
    for thread in threads:  # the cancelled objects can simply be saved again
        await store.save(thread)
        again = await stored(store, thread.id)
        assert len(again.messages) == MANY
        assert sequences(again) == list(range(1, MANY + 1))
        assert contents(again) == contents(thread)


async def test_a_save_timing_out_stores_all_or_nothing(store: ThreadStore) -> None:
    for attempt in range(3):
        thread = Thread(id=f"timed-out-{attempt}")
        for n in range(MANY):
            thread.add_message(user(f"attempt {attempt} message {n}"))
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(store.save(thread), timeout=0.0001)

        found = await store.get(thread.id)
        assert found is None or len(found.messages) == MANY

    await store.save(conversation("still works", id="after"))
    assert contents(await stored(store, "after")) == ["still works"]


async def test_a_cancelled_save_with_removals_is_all_or_nothing(store: ThreadStore) -> None:
    for attempt, delay in enumerate([0, 0.0005, 0.002]):
        thread = Thread(id=f"removals-{attempt}")
        for n in range(MANY):
            thread.add_message(user(f"old {n}"))
        await store.save(thread)
        before = await stored(store, thread.id)
        loaded = await stored(store, thread.id)
        for message in list(loaded.messages[::2]):
            loaded.remove_message(message.id)
        for n in range(50):
            loaded.add_message(user(f"new {n}"))

        await _cancel_after(store.save(loaded), delay)

        after = await stored(store, thread.id)
        if after != before:
            assert contents(after) == [f"old {n}" for n in range(1, MANY, 2)] + [
                f"new {n}" for n in range(50)
            ]
            assert sequences(after) == [*range(2, MANY + 1, 2), *range(MANY + 1, MANY + 51)]


async def test_a_cancelled_append_is_all_or_nothing(store: ThreadStore) -> None:
    await store.save(conversation("start", id="t"))
    expected = 1
    for attempt, delay in enumerate([0, 0.0001, 0.001, 0.005]):
        batch = [user(f"attempt {attempt} message {n}") for n in range(50)]
        if await _cancel_after(store.append("t", *batch), delay):
            expected += 50
        loaded = await stored(store, "t")
        assert len(loaded.messages) in (expected, expected + 50)  # landed whole, or not at all
        expected = len(loaded.messages)
        assert sequences(loaded) == list(range(1, expected + 1))

    await store.append("t", user("after"))
    assert sequences(await stored(store, "t")) == list(range(1, expected + 2))


async def test_a_cancelled_first_operation_of_a_lazy_store_leaves_it_usable(
    store_url: str | None,
) -> None:
    lazy = ThreadStore(store_url)
    try:
        for delay in (0, 0.0005, 0.002):
            await _cancel_after(lazy.get("anything"), delay)
        await lazy.save(conversation("works", id="lazy"))
        assert contents(await stored(lazy, "lazy")) == ["works"]
    finally:
        await lazy.close()


def _sqlite_worker_threads() -> int:
    """Live aiosqlite connection threads (each one an unclosed SQLite connection)."""
    return sum("connection_worker" in thread.name for thread in threading.enumerate())


async def _settled_sqlite_worker_threads(expected: int) -> int:
    for _ in range(100):  # a closed connection's thread ends a moment after close()
        if _sqlite_worker_threads() <= expected:
            break
        await asyncio.sleep(0.01)
    return _sqlite_worker_threads()


async def test_cancelling_the_first_operation_while_connecting_leaks_no_connection(
    store_url: str | None,
) -> None:
    before = _sqlite_worker_threads()
    for delay in (0, 0.0001, 0.0002, 0.0005, 0.001, 0.002, 0.005) * 2:
        lazy = ThreadStore(store_url)
        try:
            await _cancel_after(lazy.get("anything"), delay)
        finally:
            await lazy.close()

    assert await _settled_sqlite_worker_threads(before) == before
