"""Past one server, on real servers of the tests' own (a primary and a streaming hot standby):
every libpq multi-host URL form, a black-holed first host, reads from a replica that never miss
the store's own writes (nor a token's), the lag bound, and failover: kill -9 of the primary and
promotion of the standby during a write loop, and a write that meets a demoted primary."""

from __future__ import annotations

import asyncio
import contextlib
import re
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator

import asyncpg
import pytest

from tests.reliability.support import StandbyPair, free_port, scaled
from threadstore import Message, Thread, ThreadStore, ThreadStoreError
from threadstore.errors import StoreUnavailableError

pytestmark = pytest.mark.pg


@pytest.fixture(scope="module")
def pair() -> Iterator[StandbyPair]:
    """One primary + standby for the module's tests that leave both as they found them."""
    servers = StandbyPair("threadstore-replicas-")
    try:
        yield servers
    finally:
        servers.close()


def hosts_url(pair: StandbyPair, *names: str, query: str = "") -> str:
    hosts = ",".join(f"127.0.0.1:{pair.ports[name]}" for name in names)
    return f"postgresql://postgres@{hosts}/postgres{query}"


async def in_recovery(store: ThreadStore) -> bool:
    async with store.engine.acquire() as conn:
        return bool(await conn.fetchval("SELECT pg_is_in_recovery()"))


async def replayed(pair: StandbyPair) -> None:
    """Wait until the standby has replayed everything the primary has written (at most 30 s)."""
    primary = await asyncpg.connect(pair.url("primary"))
    standby = await asyncpg.connect(pair.url("standby"))
    try:
        target = await primary.fetchval("SELECT pg_current_wal_lsn()")
        async with asyncio.timeout(30):
            while await standby.fetchval("SELECT pg_last_wal_replay_lsn() < $1", target):
                await asyncio.sleep(0.02)
    finally:
        await primary.close()
        await standby.close()


async def test_every_multi_host_url_form_opens_a_store_on_the_primary(pair: StandbyPair) -> None:
    s, p = pair.ports["standby"], pair.ports["primary"]
    for url in (
        hosts_url(pair, "standby", "primary", query="?target_session_attrs=read-write"),
        hosts_url(pair, "standby", "primary", query="?target_session_attrs=primary"),
        f"postgresql://postgres@/postgres?host=127.0.0.1,127.0.0.1&port={s},{p}&target_session_attrs=read-write",
        f"postgresql+asyncpg://postgres@127.0.0.1:{s},127.0.0.1:{p}/postgres?target_session_attrs=primary",
    ):
        async with await ThreadStore.create(url, pool_size=1) as store:
            assert not await in_recovery(store), url
            await store.save(Thread(id="multi-host"))
    async with await ThreadStore.create(
        hosts_url(pair, "primary", "standby", query="?target_session_attrs=prefer-standby"),
        pool_size=1,
        migrate=False,
    ) as store:
        assert await in_recovery(store)
    async with await ThreadStore.create(
        hosts_url(pair, "primary", "standby", query="?target_session_attrs=standby"),
        pool_size=1,
        migrate=False,
    ) as store:
        assert await in_recovery(store)


async def test_no_primary_among_the_hosts_is_said_host_by_host(pair: StandbyPair) -> None:
    dead = free_port()
    url = f"postgresql://postgres@127.0.0.1:{pair.ports['standby']},127.0.0.1:{dead}/postgres"
    with pytest.raises(StoreUnavailableError) as caught:
        await ThreadStore.create(url + "?target_session_attrs=read-write", pool_size=1)
    message = str(caught.value)
    assert "no host is a primary (target_session_attrs=read-write)" in message, message
    assert f"127.0.0.1:{pair.ports['standby']} is read-only" in message, message
    assert f"127.0.0.1:{dead} refused the connection" in message, message


@contextlib.asynccontextmanager
async def black_hole() -> AsyncIterator[int]:
    """A port that accepts TCP connections (the kernel completes the handshake for the
    backlog) and never answers a byte."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(64)
        yield listener.getsockname()[1]


async def test_a_black_holed_first_host_costs_only_its_share_of_connect_timeout(pair: StandbyPair) -> None:
    async with black_hole() as hole:
        url = f"postgresql://postgres@127.0.0.1:{hole},127.0.0.1:{pair.ports['primary']}/postgres"
        started = time.monotonic()
        async with await ThreadStore.create(url, pool_size=2, connect_timeout=4) as store:
            opened = time.monotonic() - started
            assert not await in_recovery(store)
        assert 1.9 <= opened < 3.5, opened  # the hole's share is 2 s of 4 (asyncpg alone: all 4)
        started = time.monotonic()
        with pytest.raises(StoreUnavailableError, match=rf"127.0.0.1:{hole} did not answer within 1 s"):
            await ThreadStore.create(
                f"postgresql://postgres@127.0.0.1:{hole},127.0.0.1:{hole}/x", connect_timeout=2
            )
        assert time.monotonic() - started < 3.5


async def test_the_liveness_check_asks_the_host_that_served_not_a_black_holed_first_one(
    pair: StandbyPair,
) -> None:
    """A save waiting 2.5 s for a row lock is checked every second on a connection of its own:
    to the primary, which says the session is waiting, so the save completes."""
    async with black_hole() as hole:
        url = f"postgresql://postgres@127.0.0.1:{hole},127.0.0.1:{pair.ports['primary']}/postgres"
        async with await ThreadStore.create(
            url, pool_size=1, connect_timeout=4, liveness_interval=1
        ) as store:
            thread = await store.save(conversation("locked", 1))
            holder = await asyncpg.connect(pair.url("primary"))
            try:
                async with holder.transaction():
                    await holder.execute("SELECT FROM threads WHERE id = 'locked' FOR UPDATE")
                    thread.add_message(Message(role="user", content="after the lock"))
                    saving = asyncio.ensure_future(store.save(thread))
                    await asyncio.sleep(2.5)
                    assert not saving.done()
                await asyncio.wait_for(saving, 10)
            finally:
                await holder.close()
            assert len((await store.get("locked") or Thread()).messages) == 2


def conversation(thread_id: str, count: int) -> Thread:
    thread = Thread(id=thread_id)
    for index in range(count):
        thread.add_message(Message(role="user", content=f"message {index}", id=f"{thread_id}-{index}"))
    return thread


async def standby_commits(pair: StandbyPair) -> int:
    conn = await asyncpg.connect(pair.url("standby"))
    try:
        return int(await conn.fetchval("SELECT xact_commit FROM pg_stat_database WHERE datname = 'postgres'"))
    finally:
        await conn.close()


async def test_reads_never_miss_the_stores_own_writes_and_settled_reads_go_to_the_replica(
    pair: StandbyPair,
) -> None:
    pairs = scaled(300)
    async with await ThreadStore.create(pair.url("primary"), replicas=[pair.url("standby")]) as store:
        thread = Thread(id="ryw")
        stale = 0
        for index in range(pairs):
            thread.add_message(Message(role="user", content=f"m{index}", id=f"ryw-{index}"))
            await store.save(thread)
            for pause in (0, 0.001, 0.003):  # the primary at once; a replica once seen to have it
                await asyncio.sleep(pause)
                got = await store.get("ryw")
                stale += got is None or len(got.messages) != index + 1
        assert stale == 0
        status = await store.replica_status()
        assert [(s.url, s.reachable) for s in status] == [(pair.url("standby"), True)]
        assert status[0].lag is not None and status[0].lag < 5

    await replayed(pair)
    before = await standby_commits(pair)
    reads = 200
    async with await ThreadStore.create(pair.url("primary"), replicas=[pair.url("standby")]) as reader:
        for _ in range(reads):
            assert len((await reader.get("ryw") or Thread()).messages) == pairs
        assert len(await reader.list(limit=5)) >= 1
    async with asyncio.timeout(30):  # statistics are flushed when the reader's sessions end
        while await standby_commits(pair) - before < reads:
            await asyncio.sleep(0.1)


async def test_a_token_carries_read_your_writes_to_another_store_and_a_delayed_replica_is_waited_for(
    pair: StandbyPair,
) -> None:
    pair.configure("standby", recovery_min_apply_delay="'300ms'")
    try:
        replicas = [pair.url("standby")]
        async with (
            await ThreadStore.create(pair.url("primary"), replicas=replicas) as writer,
            await ThreadStore.create(pair.url("primary"), replicas=replicas) as reader,
        ):
            for index in range(scaled(40)):
                await writer.save(conversation(f"token-{index}", 2))
                assert await writer.get(f"token-{index}") is not None  # its own write
                await reader.reads_after(await writer.write_token())
                got = await reader.get(f"token-{index}")
                assert got is not None and len(got.messages) == 2, index
            with pytest.raises(ValueError, match="not a token"):
                await reader.reads_after("0/16B3748")
    finally:
        pair.configure("standby", recovery_min_apply_delay="0")


async def test_a_replica_beyond_the_lag_bound_or_unreachable_is_skipped(pair: StandbyPair) -> None:
    dead = f"postgresql://postgres@127.0.0.1:{free_port()}/postgres"
    async with await ThreadStore.create(
        pair.url("primary"), replicas=[dead, pair.url("standby")], connect_timeout=5
    ) as store:
        await store.save(conversation("skip", 1))
        started = time.monotonic()
        for _ in range(20):
            assert await store.get("skip") is not None
        assert time.monotonic() - started < 2  # never waits for the dead replica
        status = {s.url: s for s in await store.replica_status()}
        assert not status[dead].reachable and "refused" in (status[dead].error or "")
        assert status[pair.url("standby")].reachable


async def test_memory_and_sqlite_accept_tokens(tmp_path: object) -> None:
    for url in (None, "sqlite+aiosqlite:///:memory:"):
        async with await ThreadStore.create(url) as store:
            token = await store.write_token()
            await store.reads_after(token)
            assert await store.replica_status() == []
    with pytest.raises(ThreadStoreError, match="read replicas are for PostgreSQL"):
        ThreadStore("sqlite+aiosqlite:///:memory:", replicas=["postgresql://h/db"])


async def test_a_write_meeting_a_demoted_primary_runs_once_more_on_the_new_primary() -> None:
    """A switchover: the primary turns read-only (its sessions stay open) and the standby is
    promoted; the next save meets 25006 on a pooled connection, which never executed, and is
    retried once on a new connection, which the multi-host URL leads to the new primary."""
    pair = StandbyPair("threadstore-switchover-")
    try:
        url = hosts_url(pair, "primary", "standby", query="?target_session_attrs=read-write")
        async with await ThreadStore.create(url, pool_size=2, max_overflow=0) as store:
            await store.save(conversation("before", 1))
            await replayed(pair)
            pair.configure("primary", default_transaction_read_only="on")
            pair.promote("standby")
            saved = await store.save(conversation("after", 1))
            assert saved.messages[0].sequence == 1
            assert not await in_recovery(store)
        async with await ThreadStore.create(pair.url("standby"), pool_size=1) as new_primary:
            assert await new_primary.get("after") is not None
    finally:
        pair.close()


async def test_kill_9_of_the_primary_and_promotion_lose_no_acknowledged_save() -> None:
    """Synchronous replication: a save returns once the standby has its WAL. The primary is
    killed mid-loop and the standby promoted; the loop's saves resume through the multi-host
    URL without a restart, and every save that returned is on the new primary."""
    pair = StandbyPair("threadstore-failover-", synchronous=True)
    try:
        url = hosts_url(pair, "primary", "standby", query="?target_session_attrs=read-write")
        acknowledged: list[str] = []
        failed = 0
        async with await ThreadStore.create(
            url, pool_size=2, connect_timeout=2, liveness_interval=1, pool_timeout=5
        ) as store:

            async def loop(count: int) -> None:
                nonlocal failed
                index = len(acknowledged)
                while len(acknowledged) < count:
                    thread_id = f"f{index}"
                    try:
                        await store.save(conversation(thread_id, 2))
                    except ThreadStoreError:
                        failed += 1  # unavailable or in doubt: the same thread is saved again
                        await asyncio.sleep(0.05)
                        continue
                    acknowledged.append(thread_id)
                    index += 1

            async with asyncio.timeout(60):
                before = scaled(100)
                await loop(before)
                writing = asyncio.ensure_future(loop(before + scaled(100)))
                await asyncio.sleep(0.05)
                pair.kill("primary")
                killed = time.monotonic()
                await asyncio.sleep(0.1)
                pair.promote("standby")
                await writing
                resumed = time.monotonic() - killed
        assert len(acknowledged) == before + scaled(100)
        async with await ThreadStore.create(pair.url("standby")) as new_primary:
            missing = [t for t in acknowledged if await new_primary.get(t) is None]
            dupes = [
                t for t in acknowledged[-5:] if len((await new_primary.get(t) or Thread()).messages) != 2
            ]
        assert missing == [] and dupes == [], (missing, dupes)
        print(f"failover: saves resumed {resumed:.2f} s after kill -9, {failed} failed saves retried")
    finally:
        pair.close()


def test_status_reports_each_replica_and_its_lag(pair: StandbyPair) -> None:
    dead = f"postgresql://postgres@127.0.0.1:{free_port()}/postgres"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "threadstore",
            "status",
            pair.url("primary"),
            "--replica",
            pair.url("standby"),
            "--replica",
            dead,
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert re.search(rf"^replica: +{re.escape(pair.url('standby'))} \d+\.\d s behind$", done.stdout, re.M), (
        done.stdout
    )
    assert re.search(rf"^replica: +{re.escape(dead)} unreachable \(.*refused", done.stdout, re.M), done.stdout
