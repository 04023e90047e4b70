"""Operations cancelled at random points (``asyncio.wait_for`` with tiny timeouts, ``task.cancel()``
after a few turns of the loop, sometimes twice), one at a time and several at once: every
operation happens wholly or not at all, and afterwards no connection is left checked out and no
SQLite transaction is left open."""

from __future__ import annotations

import asyncio
import os
import random
import sqlite3
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from tests.helpers import user
from tests.reliability.support import assert_connections_idle, scaled
from threadstore import Message, Thread, ThreadStore
from threadstore.testing import backend_of

Batches = list[str] | None  # a thread as its batches in order; None: not stored


def batch(label: str, size: int) -> list[Message]:
    return [user(f"{label}/{i}/{size}") for i in range(size)]


def batches_of(thread: Thread | None) -> Batches:
    """The batches a stored thread holds, in order, after checking each is whole and in one
    piece and the sequences increase (removals leave gaps: nothing is renumbered)."""
    if thread is None:
        return None
    numbers = [m.sequence or 0 for m in thread.messages]
    assert numbers == sorted(set(numbers)) and all(n >= 1 for n in numbers)
    found: list[str] = []
    position = 0
    while position < len(thread.messages):
        label, _, size = str(thread.messages[position].content).split("/")
        part = [str(m.content) for m in thread.messages[position : position + int(size)]]
        assert part == [f"{label}/{i}/{size}" for i in range(int(size))], (
            f"thread {thread.id!r} holds part of batch {label}: {part}"
        )
        found.append(label)
        position += int(size)
    return found


@dataclass
class Operation:
    """One operation on one thread and the states it may leave: ``done`` when it finished,
    ``done`` or the state before when it was cancelled."""

    thread_id: str
    run: Callable[[], Awaitable[Any]]
    done: Batches


def plan(store: ThreadStore, rng: random.Random, number: int, thread_id: str, before: Batches) -> Operation:
    label = f"b{number}"
    new = batch(label, rng.randint(1, 20))
    if before is None:
        if rng.random() < 0.2:
            return Operation(thread_id, lambda: store.get_or_create(thread_id), [])
        if rng.random() < 0.25:
            return Operation(thread_id, lambda: store.append(thread_id, *new, create=True), [label])
        return Operation(thread_id, lambda: store.save(Thread(id=thread_id, messages=new)), [label])
    if not before:
        kind = rng.choice(["append", "save", "delete"])
    elif len(before) < 8:
        kind = rng.choice(["append", "save", "save", "remove", "delete"])
    else:  # keep threads short
        kind = rng.choice(["remove", "remove", "delete"])
    if kind == "append":
        return Operation(thread_id, lambda: store.append(thread_id, *new), [*before, label])
    if kind == "delete":
        return Operation(thread_id, lambda: store.delete(thread_id), None)
    gone = rng.choice(before) if kind == "remove" else None

    async def save_loaded_copy() -> None:
        copy = await store.get(thread_id)
        assert copy is not None
        for message in list(copy.messages):
            if str(message.content).startswith(f"{gone}/"):
                copy.remove_message(message.id)
        for message in new:
            copy.add_message(message)
        await store.save(copy)

    return Operation(thread_id, save_loaded_copy, [*[b for b in before if b != gone], label])


def delay(rng: random.Random) -> float:
    """0 (before the operation starts), or 10 µs to 20 ms, log-uniform: an operation takes
    about 0.5-5 ms, so about half of them are cancelled and half finish first."""
    return 0 if rng.random() < 0.05 else 10 ** rng.uniform(-5, -1.7)


async def run_cancelled(run: Callable[[], Awaitable[Any]], rng: random.Random) -> bool:
    """Run it, cancelling it at a random point; True if it finished first."""
    if rng.random() < 0.5:
        try:
            await asyncio.wait_for(run(), timeout=delay(rng))
            return True
        except TimeoutError:
            return False
    task = asyncio.ensure_future(run())
    if rng.random() < 0.3:
        for _ in range(rng.randrange(20)):  # a few turns of the loop
            await asyncio.sleep(0)
    else:
        await asyncio.sleep(delay(rng))
    task.cancel()
    if rng.random() < 0.3:  # and again while it cleans up, as a cancelled TaskGroup may
        for _ in range(rng.randrange(4)):
            await asyncio.sleep(0)
        task.cancel()
    try:
        await task
        return True
    except asyncio.CancelledError:
        return False


async def assert_nothing_left_open(store: ThreadStore, store_url: str | None) -> None:
    await assert_connections_idle(store)
    backend: Any = backend_of(store)
    if store.backend == "postgres":  # and the server agrees: no session of this store is mid-transaction
        async with backend.engine.acquire() as conn:
            stuck = await conn.fetchval(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                "AND pid <> pg_backend_pid() AND state LIKE 'idle in transaction%'"
            )
        assert stuck == 0, f"{stuck} connection(s) left idle in a transaction"
    elif store_url is not None and ":memory:" not in store_url:
        other = sqlite3.connect(store_url.partition(":///")[2], timeout=0, isolation_level=None)
        try:
            other.execute("BEGIN IMMEDIATE")  # fails at once if the store still holds the lock
            other.execute("ROLLBACK")
        finally:
            other.close()


async def test_random_cancellations_leave_whole_threads_and_no_open_connection(
    store: ThreadStore,
    store_url: str | None,
) -> None:
    seed = int(os.environ.get("THREADSTORE_SEED", random.randrange(2**32)))
    rng = random.Random(seed)
    wanted = scaled(500)
    model: dict[str, Batches] = {f"t{n}": None for n in range(12)}
    cancelled = finished = number = 0
    # The in-memory store runs an operation without yielding to the loop, so a cancellation can
    # only land before it starts: there, the count is of operations, not of cancellations.
    while cancelled < wanted and not (store.backend == "memory" and number >= wanted):
        assert number < 10 * wanted, f"only {cancelled} of {number} operations were cancelled"
        targets = rng.sample(sorted(model), rng.choice([1, 1, 2, 3, 4]))  # at once, distinct threads
        operations = []
        for thread_id in targets:
            operations.append(plan(store, rng, number, thread_id, model[thread_id]))
            number += 1

        outcomes = await asyncio.gather(*[run_cancelled(op.run, rng) for op in operations])

        for operation, completed in zip(operations, outcomes, strict=True):
            now = batches_of(await store.get(operation.thread_id))
            before = model[operation.thread_id]
            allowed = [operation.done] if completed else [operation.done, before]
            assert now in allowed, (
                f"seed {seed}: thread {operation.thread_id} went from {before} to {now}; "
                f"{'finished' if completed else 'cancelled'}, it may only be one of {allowed}"
            )
            model[operation.thread_id] = now
            finished += completed
            cancelled += not completed

    listed = {thread.id: batches_of(thread) for thread in await store.list_recent()}
    assert listed == {k: v for k, v in model.items() if v is not None}, f"seed {seed}"
    await assert_nothing_left_open(store, store_url)
    await store.save(Thread(id="afterwards", messages=batch("last", 3)))
    assert batches_of(await store.get("afterwards")) == ["last"]
    print(f"\n{store.backend}: {number} operations, {cancelled} cancelled, {finished} finished (seed {seed})")
