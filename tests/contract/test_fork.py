"""A store inherited through fork() (gunicorn --preload, Celery prefork, multiprocessing's
"fork") works in the child: the sync store gets a new event loop and every store new
connections, leaving the parent's alone; a private SQLite database, which stays in the parent,
raises a clear error instead. Each child is bounded: a hang fails the test."""

from __future__ import annotations

import asyncio
import multiprocessing
import traceback
from collections.abc import Callable
from multiprocessing.connection import Connection
from typing import Any

import pytest

from tests.conftest import TEST_POOL
from tests.helpers import conversation
from threadstore import ThreadStore as AsyncThreadStore
from threadstore import ThreadStoreError
from threadstore.sync import ThreadStore

CHILD_TIMEOUT = 60.0  # seconds a child may take (it takes well under one)


def _in_child(work: Callable[[], Any]) -> Any:
    """``work()``'s result (or exception) in a forked child; fails when the child hangs."""
    context = multiprocessing.get_context("fork")
    receiving, sending = context.Pipe(duplex=False)

    def child(conn: Connection) -> None:
        try:
            conn.send(("ok", work()))
        except BaseException as exc:
            conn.send(("error", (type(exc).__name__, str(exc), traceback.format_exc())))

    process = context.Process(target=child, args=(sending,), daemon=True)
    process.start()
    process.join(CHILD_TIMEOUT)
    if process.is_alive():
        process.kill()
        process.join(5)
        pytest.fail(f"the forked child hung for {CHILD_TIMEOUT:g} s")
    assert process.exitcode == 0, f"the child exited with {process.exitcode}"
    assert receiving.poll(5), "the child sent nothing"
    return receiving.recv()


def _save_and_read(store: ThreadStore, text: str) -> tuple[str, list[Any]]:
    thread = store.save(conversation(text))
    got = store.get(thread.id)
    assert got is not None
    found = [hit.thread_id == thread.id for hit in store.search(text)]
    return thread.id, [m.content for m in got.messages] + found


def test_sync_store_constructed_before_fork_works_in_the_child(store_url: str | None) -> None:
    store = ThreadStore(store_url, **TEST_POOL)
    try:

        def work() -> Any:
            result = _save_and_read(store, "forked")
            store.close()
            return result

        status, value = _in_child(work)
        assert status == "ok", value
        assert value[1] == ["forked", True]
    finally:
        store.close()


def test_sync_store_used_before_fork_works_in_the_child_and_the_parent(store_url: str | None) -> None:
    with ThreadStore.create(store_url, **TEST_POOL) as store:
        first, _ = _save_and_read(store, "before")

        def work() -> Any:
            seen = store.get(first)
            result = _save_and_read(store, "child")
            store.close()
            return seen is not None, result

        status, value = _in_child(work)
        if store_url is not None and ":memory:" in store_url:
            assert status == "error"
            assert value[0] == "ThreadStoreError" and "before the process forked" in value[1], value
        else:
            assert status == "ok", value
            seen, (child_id, child_result) = value
            assert seen and child_result == ["child", True]
            if store_url is not None:  # a shared database: the parent sees the child's thread
                assert store.get(child_id) is not None
        # The parent's connections were left alone.
        assert _save_and_read(store, "after")[1] == ["after", True]
        assert store.get(first) is not None


def test_two_children_at_once_each_work(store_url: str | None) -> None:
    if store_url is not None and ":memory:" in store_url:
        pytest.skip("a private SQLite database opened in the parent raises in the child (above)")
    with ThreadStore.create(store_url, **TEST_POOL) as store:
        store.ping()
        context = multiprocessing.get_context("fork")
        results = context.Queue()

        def child(name: str) -> None:
            results.put(_save_and_read(store, name)[1])
            store.close()

        processes = [context.Process(target=child, args=(f"child{i}",), daemon=True) for i in range(2)]
        for process in processes:
            process.start()
        for process in processes:
            process.join(CHILD_TIMEOUT)
        hung = [p for p in processes if p.is_alive()]
        for process in hung:
            process.kill()
        assert not hung, "a forked child hung"
        got = sorted(str(results.get(timeout=5)) for _ in processes)
        assert got == [str(["child0", True]), str(["child1", True])]


def test_async_store_connected_before_fork_works_in_the_child(store_url: str | None) -> None:
    store = AsyncThreadStore(store_url, **TEST_POOL)
    loop = asyncio.new_event_loop()
    try:
        loop.run_until_complete(store.ping())

        async def child_work() -> Any:
            thread = await store.save(conversation("async child"))
            got = await store.get(thread.id)
            await store.close()
            return got is not None

        status, value = _in_child(lambda: asyncio.run(child_work()))
        if store_url is not None and ":memory:" in store_url:
            assert status == "error" and value[0] == ThreadStoreError.__name__, value
        else:
            assert status == "ok" and value is True, value
        assert loop.run_until_complete(store.get("no such thread")) is None  # the parent's works
    finally:
        loop.run_until_complete(store.close())
        loop.close()
