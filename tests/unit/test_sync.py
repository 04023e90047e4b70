"""threadstore.sync: the blocking facade has the async store's methods with the same arguments,
works with or without a running event loop and from several threads, and programs that never
close it exit at once. (Its behaviour is the contract suite's "sync" param: tests/conftest.py.)"""

from __future__ import annotations

import asyncio
import gc
import inspect
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

import threadstore
from threadstore import Message, StoreClosedError, Thread
from threadstore.sync import ThreadStore

ROOT = Path(__file__).resolve().parents[2]
ASYNC_ONLY = {"engine", "async_session"}  # driver objects: async by nature


def _public(cls: type) -> dict[str, object]:
    return {
        name: value
        for name, value in inspect.getmembers(cls)
        if not name.startswith("_") and name not in ASYNC_ONLY
    }


def test_every_method_and_argument_of_the_async_store_is_there() -> None:
    sync, asynchronous = _public(ThreadStore), _public(threadstore.ThreadStore)
    assert set(asynchronous) <= set(sync), f"missing: {sorted(set(asynchronous) - set(sync))}"
    for name, method in asynchronous.items():
        if isinstance(inspect.getattr_static(threadstore.ThreadStore, name), property):
            assert isinstance(inspect.getattr_static(ThreadStore, name), property), name
            continue
        expected = inspect.signature(method)  # type: ignore[arg-type]
        got = inspect.signature(sync[name])  # type: ignore[arg-type]
        assert list(got.parameters.values()) == list(expected.parameters.values()), name
        if not inspect.isasyncgenfunction(method):
            # create: the async one returns an Opening, which awaited gives a ThreadStore.
            returns = expected.return_annotation.replace("Opening", "ThreadStore")
            assert got.return_annotation.replace("ThreadStore", "") == returns.replace("ThreadStore", ""), (
                name
            )


def test_blocking_calls_without_an_event_loop(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path}/sync.db"
    with ThreadStore.create(url) as store:
        thread = Thread(title="blocking")
        thread.add_message(Message(role="user", content="hello"))
        assert store.save(thread) is thread
        assert [m.content for m in (store.get(thread.id) or Thread()).messages] == ["hello"]
        store.append(thread.id, Message(role="assistant", content="hi"))
        assert [[r.id for r in page] for page in store.export_threads(page_size=1)] == [[thread.id]]
        assert store.search("hello")[0].thread_id == thread.id
    with pytest.raises(StoreClosedError):
        store.get(thread.id)
    store.close()  # idempotent
    assert not store.event_loop.is_running()


def test_it_works_inside_a_running_event_loop() -> None:
    async def main() -> list[str]:
        with ThreadStore.create() as store:  # blocks this loop for each call, and works
            store.save(Thread(id="inside"))
            return [t.id for t in store.list()]

    assert asyncio.run(main()) == ["inside"]


def test_calls_from_several_threads_at_once(tmp_path: Path) -> None:
    with ThreadStore.create(f"sqlite+aiosqlite:///{tmp_path}/threads.db") as store:
        store.save(Thread(id="shared"))
        errors: list[BaseException] = []

        def work(n: int) -> None:
            try:
                for i in range(10):
                    store.append("shared", Message(role="user", content=f"{n}-{i}"))
            except BaseException as exc:
                errors.append(exc)

        workers = [threading.Thread(target=work, args=(n,)) for n in range(8)]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join(60)
        assert errors == []
        stored = store.get("shared")
        assert stored is not None and [m.sequence for m in stored.messages] == list(range(1, 81))


def test_a_store_garbage_collected_unclosed_ends_its_thread() -> None:
    store = ThreadStore.create()
    loop_thread = store._loop.thread
    del store
    gc.collect()
    loop_thread.join(10)
    assert not loop_thread.is_alive()


@pytest.mark.parametrize("kind", ["memory", "sqlite_file", "postgres"])
def test_a_script_that_never_closes_its_store_exits_at_once(
    kind: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    url = {"memory": None, "sqlite_file": f"sqlite+aiosqlite:///{tmp_path}/exit.db"}.get(kind)
    if kind == "postgres":
        url = request.getfixturevalue("fresh_pg_url")
    script = textwrap.dedent(f"""
        from threadstore import Message, Thread
        from threadstore.sync import ThreadStore

        store = ThreadStore.create({url!r})
        thread = Thread(id="kept")
        thread.add_message(Message(role="user", content="still there"))
        store.save(thread)
        print(len(store.list()))
    """)
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=30, cwd=ROOT
    )
    elapsed = time.monotonic() - started
    assert (result.returncode, result.stdout, result.stderr) == (0, "1\n", "")
    assert elapsed < 10
    if url is not None:
        # read-only: it indexes nothing itself, so this finds what the exiting store indexed
        with ThreadStore.create(url, read_only=True) as store:
            kept = store.get("kept")
            assert kept is not None and kept.messages[0].content == "still there"
            assert [hit.thread_id for hit in store.search("still")] == ["kept"]


@pytest.mark.parametrize("kind", ["sqlite_file", "postgres"])
def test_a_program_blocked_in_a_sync_call_exits_promptly(
    kind: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    """A save waiting for a lock held elsewhere, in a daemon thread, when the program ends: the
    exit took 10.6 s (the close at exit waited for it). It is cancelled now, quietly."""
    url = f"sqlite+aiosqlite:///{tmp_path}/blocked.db"
    if kind == "postgres":
        url = request.getfixturevalue("fresh_pg_url")
    script = textwrap.dedent(f"""
        import asyncio, sqlite3, sys, threading, time
        from threadstore import Thread
        from threadstore.sync import ThreadStore

        url = {url!r}
        store = ThreadStore.create(url)
        thread = store.save(Thread(id="locked", title="before"))
        if url.startswith("postgres"):
            import asyncpg
            loop = asyncio.new_event_loop()
            holder = loop.run_until_complete(asyncpg.connect(url))
            loop.run_until_complete(holder.execute(
                "BEGIN; SELECT 1 FROM threads WHERE id = 'locked' FOR UPDATE"))
        else:
            holder = sqlite3.connect(url.split(":///", 1)[1], isolation_level=None)
            holder.execute("BEGIN IMMEDIATE")
        thread.title = "after"
        threading.Thread(target=store.save, args=(thread,), daemon=True).start()
        time.sleep(0.5)
        print("ending", flush=True)
    """)
    process = subprocess.Popen(
        [sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT
    )
    try:
        assert process.stdout is not None and process.stdout.readline() == "ending\n"
        ending = time.monotonic()
        process.wait(30)
        took = time.monotonic() - ending
    finally:
        process.kill()
    assert process.returncode == 0 and process.stderr is not None and process.stderr.read() == ""
    # The close at exit waits at most 2 s for calls in flight; the rest is the interpreter's
    # shutdown, 2.2 s at a load of 8 on 2 cores (the bug this guards against took 10.6 s).
    assert took < 5.0, f"the program took {took:.1f} s to exit"
