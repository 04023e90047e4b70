"""PostgreSQL faults: connections killed mid-save, a server restart, an exhausted pool, slow
statements. Every operation either happened wholly or raised a clear ThreadStoreError, and the
same store object carries on afterwards with every pooled connection checked back in."""

from __future__ import annotations

import asyncio
import random
import shutil
import subprocess
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from tests.helpers import conversation, stored, user
from tests.reliability.support import (
    assert_connections_idle,
    create_accepts,
    free_port,
    scaled,
    server_directory,
)
from threadstore import StoreUnavailableError, Thread, ThreadStore, ThreadStoreError
from threadstore.testing import backend_of

pytestmark = pytest.mark.pg

# Only sessions of the test's own database are ever terminated: others share this server.
KILL_STORE_SESSIONS = """
SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
 WHERE datname = current_database() AND pid <> pg_backend_pid() AND application_name = 'threadstore'
"""


@pytest.fixture
async def admin(fresh_pg_url: str) -> AsyncIterator[asyncpg.Connection]:
    """A plain connection to the test's own database, outside any store."""
    conn = await asyncpg.connect(fresh_pg_url, server_settings={"application_name": "t8-admin"})
    yield conn
    await conn.close()


async def test_connections_killed_mid_save_leave_whole_threads_and_the_store_recovers(
    fresh_pg_url: str,
    admin: asyncpg.Connection,
) -> None:
    rng = random.Random()
    operations = scaled(200)  # 6 writers, each half saves of 20-message threads, half appends of 5
    results: dict[str, BaseException | None] = {}  # thread or batch label -> what the caller got
    async with await ThreadStore.create(fresh_pg_url) as store:
        await store.save(conversation("start", id="shared"))
        kills = 0
        stop = asyncio.Event()

        async def killer() -> None:
            nonlocal kills
            while not stop.is_set():
                await asyncio.sleep(rng.uniform(0.002, 0.05))
                kills += await admin.fetchval(KILL_STORE_SESSIONS)

        async def writer(number: int) -> None:
            for n in range(number, operations, 6):
                label = f"op{n}"
                try:
                    if n % 2:
                        await store.append("shared", *[user(f"{label}/{k}") for k in range(5)])
                    else:
                        thread = Thread(id=label)
                        for k in range(20):
                            thread.add_message(user(f"{label}/{k}"))
                        await store.save(thread)
                    results[label] = None
                except ThreadStoreError as exc:  # anything else fails the test
                    results[label] = exc

        killing = asyncio.create_task(killer())
        try:
            await asyncio.gather(*[writer(n) for n in range(6)])
        finally:
            stop.set()
            await killing

        # The first operation to meet a session killed while idle fails; the pool then replaces
        # every connection, so the ones after it work.
        after_failures = []
        for n in range(10):
            try:
                await store.save(conversation("after the storm", id=f"after-{n}"))
            except StoreUnavailableError as exc:
                after_failures.append(exc)
        assert len(after_failures) <= 1, after_failures
        await assert_connections_idle(store)

        shared = [str(m.content) for m in (await stored(store, "shared")).messages]
        assert [m.sequence for m in (await stored(store, "shared")).messages] == list(
            range(1, len(shared) + 1)
        )
        failed = 0
        for label, error in results.items():
            if int(label[2:]) % 2:
                kept = [c for c in shared if c.startswith(f"{label}/")]
                whole = [f"{label}/{k}" for k in range(5)]
            else:
                thread = await store.get(label)
                kept = [] if thread is None else [str(m.content) for m in thread.messages]
                whole = [f"{label}/{k}" for k in range(20)]
            assert kept in ([], whole), f"{label}: a partial write was stored: {kept}"
            if error is None:
                assert kept == whole, f"{label}: acknowledged but not stored"
            else:
                failed += 1
                assert isinstance(error, StoreUnavailableError), f"unclear error: {error!r}"
                assert "unavailable" in str(error)
    assert kills > 0
    print(
        f"\npostgres: {kills} sessions killed during {operations} writes: "
        f"{operations - failed} stored, {failed} failed clearly, none partial"
    )


async def test_after_its_sessions_are_killed_the_store_fails_at_most_one_operation(
    fresh_pg_url: str,
    admin: asyncpg.Connection,
) -> None:
    async with await ThreadStore.create(fresh_pg_url) as store:
        await store.save(conversation("kept", id="kept"))
        await store.save(Thread(id="log"))
        appended = 0
        for round_ in range(scaled(3)):
            # Ten sessions or more in the pool, all idle, then all killed: asyncpg still holds them
            await asyncio.gather(*[store.get("kept") for _ in range(10)])
            # (and the one the content indexer may have opened after an append)
            assert await admin.fetchval(KILL_STORE_SESSIONS) >= 10

            failures = []
            for n in range(15):
                try:
                    if n % 2:
                        await store.append("log", user(f"{round_}-{n}"))
                        appended += 1
                    else:
                        assert len((await stored(store, "kept")).messages) == 1
                except StoreUnavailableError as exc:
                    failures.append(exc)

            assert len(failures) <= 1, f"{len(failures)} operations failed after one fault: {failures}"
            await assert_connections_idle(store)
        assert len((await stored(store, "log")).messages) == appended


# --- a server restart --------------------------------------------------------------------------


@pytest.fixture
def throwaway_server(tmp_path: Path) -> Iterator[Callable[[str], None]]:
    """A PostgreSQL server of the test's own, on a free port with its data under tmp: yields
    ``control("stop" | "start")``; its URL is ``control.url``. Skipped when initdb is missing,
    or when running as root with no unprivileged ``postgres`` user (initdb refuses root)."""
    binaries, as_user, root = server_directory("threadstore-pg-")
    data = root / "data"
    port = free_port()

    def pg(*args: str) -> None:
        subprocess.run([*as_user, *args], check=True, capture_output=True, timeout=120)

    pg(
        str(binaries / "initdb"),
        "-D",
        str(data),
        "-A",
        "trust",
        "-U",
        "postgres",
        "-E",
        "UTF8",
        "--no-sync",
        "--no-instructions",
    )
    options = f"-F -p {port} -k {root} -c listen_addresses=127.0.0.1 -c max_connections=20"

    def control(action: str) -> None:
        if action == "start":
            pg(
                str(binaries / "pg_ctl"),
                "-D",
                str(data),
                "-l",
                str(root / "log"),
                "-o",
                options,
                "-w",
                "-t",
                "60",
                "start",
            )
        else:
            pg(str(binaries / "pg_ctl"), "-D", str(data), "-m", "fast", "-w", "-t", "60", "stop")

    control.url = f"postgresql://postgres@127.0.0.1:{port}/postgres"  # type: ignore[attr-defined]
    control("start")
    try:
        yield control
    finally:
        subprocess.run(
            [*as_user, str(binaries / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop"],
            capture_output=True,
            timeout=60,
        )
        shutil.rmtree(root, ignore_errors=True)


async def test_a_server_restart_fails_operations_clearly_then_the_same_store_carries_on(
    throwaway_server: Callable[[str], None],
) -> None:
    url: str = throwaway_server.url  # type: ignore[attr-defined]
    async with await ThreadStore.create(url) as store:
        await store.save(conversation("before the restart", id="kept"))
        await asyncio.gather(*[store.get("kept") for _ in range(5)])  # several pooled sessions

        await asyncio.to_thread(throwaway_server, "stop")
        loop = asyncio.get_running_loop()
        started = loop.time()
        for operation in (
            store.get("kept"),
            store.save(conversation("while down")),
            store.append("kept", user("while down")),
            store.list(),
            store.delete("kept"),
        ):
            with pytest.raises(StoreUnavailableError, match="unavailable"):
                await operation
        assert loop.time() - started < 30, "operations on a stopped server took too long to fail"

        await asyncio.to_thread(throwaway_server, "start")
        assert [m.content for m in (await stored(store, "kept")).messages] == ["before the restart"]
        await store.append("kept", user("after the restart"))
        await asyncio.gather(*[store.get("kept") for _ in range(5)])
        assert [m.content for m in (await stored(store, "kept")).messages] == [
            "before the restart",
            "after the restart",
        ]
        await assert_connections_idle(store)


# --- an exhausted pool, slow statements ---------------------------------------------------------

LOCK_THREAD_ROW = "SELECT 1 FROM threads WHERE id = $1 FOR UPDATE"


async def test_more_operations_than_pooled_connections_wait_their_turn_and_all_land(
    fresh_pg_url: str,
    admin: asyncpg.Connection,
) -> None:
    async with await ThreadStore.create(fresh_pg_url) as store:
        await store.save(conversation("start", id="hot"))
        pool: Any = backend_of(store).engine  # type: ignore[union-attr]
        waiting = 3 * pool.get_max_size()
        async with admin.transaction():
            await admin.execute(LOCK_THREAD_ROW, "hot")  # every append to "hot" now blocks
            appends = [asyncio.create_task(store.append("hot", user(f"queued {n}"))) for n in range(waiting)]
            for _ in range(200):  # until every pooled connection is held by a blocked append
                if pool.get_size() == pool.get_max_size() and pool.get_idle_size() == 0:
                    break
                await asyncio.sleep(0.01)
            assert pool.get_idle_size() == 0 and pool.get_size() == pool.get_max_size()
            # A read now waits for a connection too; giving up on it leaks nothing.
            with pytest.raises(TimeoutError):
                await asyncio.wait_for(store.get("hot"), timeout=0.3)
            assert not any(task.done() for task in appends)
        await asyncio.gather(*appends)  # the lock is gone: every queued append lands

        thread = await stored(store, "hot")
        assert [m.sequence for m in thread.messages] == list(range(1, waiting + 2))
        assert sorted(str(m.content) for m in thread.messages[1:]) == sorted(
            f"queued {n}" for n in range(waiting)
        )
        await assert_connections_idle(store)
        assert pool.get_size() <= pool.get_max_size()


ISSUE_5 = (
    "needs the pool settings of create() (pool_size, max_overflow, pool_timeout, command_timeout: issue 5)"
)


@pytest.mark.skipif(not create_accepts("pool_size", "max_overflow", "pool_timeout"), reason=ISSUE_5)
async def test_an_exhausted_pool_raises_a_clear_timeout_error_after_the_pool_timeout(
    fresh_pg_url: str,
    admin: asyncpg.Connection,
) -> None:
    create: Any = ThreadStore.create
    async with await create(fresh_pg_url, pool_size=2, max_overflow=0, pool_timeout=0.3) as store:
        await store.save(conversation("start", id="hot"))
        async with admin.transaction():
            await admin.execute(LOCK_THREAD_ROW, "hot")
            blocked = [asyncio.create_task(store.append("hot", user(f"blocked {n}"))) for n in range(2)]
            await asyncio.sleep(0.2)  # both connections are now held by the blocked appends
            loop = asyncio.get_running_loop()
            started = loop.time()
            with pytest.raises(ThreadStoreError, match=r"(?i)pool|timed? ?out"):
                await store.get("hot")
            assert 0.25 <= loop.time() - started < 5
        await asyncio.gather(*blocked)
        assert len((await stored(store, "hot")).messages) == 3
        await assert_connections_idle(store)


@pytest.mark.skipif(not create_accepts("command_timeout"), reason=ISSUE_5)
async def test_a_statement_over_the_command_timeout_fails_clearly_and_the_store_carries_on(
    fresh_pg_url: str,
    admin: asyncpg.Connection,
) -> None:
    create: Any = ThreadStore.create
    async with await create(fresh_pg_url, command_timeout=0.5) as store:
        await store.save(conversation("start", id="hot"))
        async with admin.transaction():
            await admin.execute(LOCK_THREAD_ROW, "hot")
            loop = asyncio.get_running_loop()
            started = loop.time()
            with pytest.raises(ThreadStoreError, match=r"(?i)time"):
                await store.append("hot", user("too slow"))
            assert 0.4 <= loop.time() - started < 5
        await store.append("hot", user("in time"))
        assert [m.content for m in (await stored(store, "hot")).messages] == ["start", "in time"]
        await assert_connections_idle(store)


async def test_search_whose_indexing_session_is_killed_is_retried(
    fresh_pg_url: str,
    admin: asyncpg.Connection,
) -> None:
    """search indexes what is queued before it reads; that step ran outside the retried read,
    so a killed session failed the search (11 failures under killed backends). Here the indexing
    session is killed while it waits for the indexer's lock: the search still answers."""
    async with await ThreadStore.create(fresh_pg_url) as store:
        async with admin.transaction():
            await admin.execute("SELECT pg_advisory_xact_lock(7425, 0)")  # postgres.lock_indexer's
            await store.save(conversation("zebra crossing", id="z"))  # queued: nobody can index it
            search = asyncio.create_task(store.search("zebra"))
            killed = 0
            for _ in range(500):  # until the search's indexing session waits for the lock
                await admin.execute("SELECT pg_stat_clear_snapshot()")  # a new look in this transaction
                killed = await admin.fetchval(
                    KILL_STORE_SESSIONS + " AND wait_event_type = 'Lock' AND query LIKE '%7425%'"
                )
                if killed:
                    break
                await asyncio.sleep(0.01)
            assert killed, "no session of the store waited for the indexer's lock"
            await asyncio.sleep(0.2)
        hits = await asyncio.wait_for(search, 30)
        assert [h.thread_id for h in hits] == ["z"]
