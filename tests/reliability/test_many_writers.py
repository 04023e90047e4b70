"""Many processes and tasks on one database: appends and saves that all land, deletes racing
appends, a writer waiting out another's lock, and migrations started at the same instant."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from collections import Counter
from collections.abc import Awaitable, Callable
from pathlib import Path

from tests.helpers import conversation, stored, user
from tests.reliability.support import (
    STRESS,
    applied_versions,
    run_workers,
    scaled,
    stored_message_count,
)
from threadstore import Message, NotFoundError, Thread, ThreadStore
from threadstore.queries import load

NewDatabase = Callable[[], Awaitable[str]]
OpenStore = Callable[[str | None], Awaitable[ThreadStore]]
PROCESSES, TASKS = 2, 4


async def test_processes_appending_and_saving_to_one_thread_lose_and_duplicate_nothing(
    new_database: NewDatabase,
) -> None:
    url = await new_database()
    per_task = scaled(250)
    # Every 50th message (every 100th under stress) goes through save() of a freshly loaded
    # copy, the others through append(): 40 (200) such saves race the appends. Loading reads the
    # whole thread, so more of them would make the run quadratic, not more telling.
    load_every = 100 if STRESS else 50
    async with await ThreadStore.create(url) as store:
        await store.save(Thread(id="busy"))

    results = await asyncio.to_thread(
        run_workers,
        "append",
        [
            {
                "url": url,
                "thread_id": "busy",
                "worker": worker,
                "tasks": TASKS,
                "per_task": per_task,
                "load_every": load_every,
            }
            for worker in range(PROCESSES)
        ],
        900,
    )

    # SQLite's "database is locked" among them too: writers must wait for the lock, not fail.
    errors = [error for result in results for error in result["errors"]]
    assert errors == [], f"{len(errors)} operations failed, e.g. {errors[:3]}"
    expected = PROCESSES * TASKS * per_task
    acknowledged = [content for result in results for content in result["written"]]
    assert len(acknowledged) == expected
    async with await ThreadStore.create(url) as store:
        thread = await stored(store, "busy")
    kept = [str(m.content) for m in thread.messages]
    duplicated = [content for content, n in Counter(kept).items() if n > 1]
    assert duplicated == [], f"{len(duplicated)} messages stored twice"
    assert sorted(kept) == sorted(acknowledged), "a message was lost (or one never sent was kept)"
    assert [m.sequence for m in thread.messages] == list(range(1, expected + 1))
    assert len({m.id for m in thread.messages}) == expected
    for worker in range(PROCESSES):  # each task's messages stay in the order it sent them
        for task in range(TASKS):
            mine = [c for c in kept if c.startswith(f"w{worker}-t{task}-")]
            assert mine == sorted(mine)
    print(
        f"\n{url.partition(':')[0]}: {expected} messages written and kept by {PROCESSES} "
        f"processes x {TASKS} tasks in {max(r['seconds'] for r in results):.1f} s"
    )


async def test_a_sqlite_writer_waits_out_another_processes_lock_instead_of_failing(
    tmp_path: Path,
) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path}/held.db"
    async with await ThreadStore.create(url) as store:
        await store.save(conversation("before", id="held"))
        holder = sqlite3.connect(tmp_path / "held.db", isolation_level=None, check_same_thread=False)
        holder.execute("BEGIN IMMEDIATE")  # another process's long write transaction
        release = threading.Timer(1.0, holder.execute, ["COMMIT"])
        release.start()
        try:
            assert len((await stored(store, "held")).messages) == 1  # WAL: readers go on
            loop = asyncio.get_running_loop()
            started = loop.time()
            await store.append("held", user("after the lock"))
            assert loop.time() - started >= 0.5, "the append did not wait for the lock"
        finally:
            release.join()
            holder.close()
        assert len((await stored(store, "held")).messages) == 2


async def test_deletes_racing_appends_leave_no_orphan_and_refuse_late_appends_clearly(
    store: ThreadStore,
    store_url: str | None,
    open_store: OpenStore,
) -> None:
    # A second store where the database allows one: a SQLite store runs one operation at a time.
    shared = store.backend == "postgres" or (store.backend == "sqlite" and ":memory:" not in str(store_url))
    other = await open_store(store_url) if shared else store
    rounds = scaled(20)
    landed = refused = 0
    for round_ in range(rounds):
        thread_id = f"race-{round_}"
        await store.save(conversation("first", "second", id=thread_id))
        batches = [[user(f"{round_}-{b}-{k}") for k in range(5)] for b in range(4)]

        async def append(batch: list[Message], thread_id: str = thread_id) -> bool:
            try:
                await other.append(thread_id, *batch)
                return True
            except NotFoundError:
                return False

        # The delete goes first, last or in between (the in-memory store runs them in order).
        operations = [append(batch) for batch in batches]
        operations.insert(round_ % 5, store.delete(thread_id))
        results = await asyncio.gather(*operations)
        deleted = results.pop(round_ % 5)
        appended: list[bool] = results

        assert deleted is True
        landed += sum(appended)
        refused += appended.count(False)
        assert await store.get(thread_id) is None
        assert await other.get(thread_id) is None
        assert await stored_message_count(store, thread_id) == 0, "orphan messages were left"
        # No appended message lingers anywhere: the same ids can be stored again.
        again = Thread(id=f"again-{round_}")
        for batch in batches:
            for message in batch:
                again.add_message(user(str(message.content), id=message.id))
        await store.save(again)
        assert len((await stored(store, again.id)).messages) == 20
    assert landed + refused == 4 * rounds
    print(
        f"\n{store.backend}: {rounds} deletes raced {4 * rounds} appends: {landed} landed "
        f"before the delete, {refused} refused with NotFoundError"
    )


async def test_processes_creating_one_empty_database_at_once_all_migrate_it_once(
    new_database: NewDatabase,
) -> None:
    for _ in range(scaled(1)):
        url = await new_database()

        results = await asyncio.to_thread(run_workers, "create", [{"url": url}] * PROCESSES, 120)

        assert [r["errors"] for r in results] == [[]] * PROCESSES
        assert [r["migrate_again"] for r in results] == [[]] * PROCESSES
        async with await ThreadStore.create(url, migrate=False) as store:
            dialect = "postgres" if store.backend == "postgres" else "sqlite"
            assert await applied_versions(store) == [m.version for m in load(dialect).migrations]


async def test_processes_making_first_appends_at_once_all_succeed_and_make_one_thread_each(
    new_database: NewDatabase,
) -> None:
    url = await new_database()
    async with await ThreadStore.create(url):
        pass  # migrated before the workers start
    thread_ids = [f"first-{n}" for n in range(scaled(30))]

    results = await asyncio.to_thread(
        run_workers,
        "first_append",
        [{"url": url, "thread_ids": thread_ids, "worker": worker} for worker in range(PROCESSES)],
        120,
    )

    assert [r["errors"] for r in results] == [[]] * PROCESSES
    async with await ThreadStore.create(url) as store:
        assert len((await store.list_threads(limit=1000)).threads) == len(thread_ids)
        for thread_id in thread_ids:
            thread = await stored(store, thread_id)
            assert sorted(str(m.content) for m in thread.messages) == [f"w{w}" for w in range(PROCESSES)]
            assert [m.sequence for m in thread.messages] == list(range(1, PROCESSES + 1))


async def test_processes_popping_one_thread_at_once_get_each_message_exactly_once(
    new_database: NewDatabase,
) -> None:
    url = await new_database()
    count = scaled(200)
    async with await ThreadStore.create(url) as store:
        await store.append("t", *[user(f"m{n}") for n in range(count)], create=True)

    results = await asyncio.to_thread(run_workers, "pop", [{"url": url, "thread_id": "t"}] * PROCESSES, 120)

    assert [r["errors"] for r in results] == [[]] * PROCESSES
    popped = [text for r in results for text in r["popped"]]
    assert sorted(popped) == sorted(f"m{n}" for n in range(count))  # none twice, none lost
    async with await ThreadStore.create(url) as store:
        assert (await stored(store, "t")).messages == []
