"""PostgreSQL behind a network that fails: a TCP proxy of the test's own between the store and the
server black-holes (stops forwarding, keeps every socket open, so the kernel still acknowledges
packets and TCP keepalives see nothing) or resets every connection. No operation waits for ever,
a caller's cancellation takes effect within seconds, a read survives a reset, a write is whole
or absent, and the same store works again as soon as the network does.

One test keeps the default bounds (about 20 s); the others shorten them through the documented
settings (liveness_interval, connect_timeout) to stay fast. Every test bounds its own time.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest

from tests.helpers import conversation, stored, user
from tests.reliability.support import assert_connections_idle, background_done, scaled
from threadstore import StoreUnavailableError, Thread, ThreadStore
from threadstore.config import SettingsKwargs
from threadstore.errors import CommandTimeoutError
from threadstore.testing import backend_of

pytestmark = pytest.mark.pg

FAST: SettingsKwargs = {"liveness_interval": 1.0, "connect_timeout": 1.0, "pool_size": 2}


class _Link:
    """One proxied connection: its two sockets and the gate its bytes wait at."""

    def __init__(
        self, client: asyncio.StreamWriter, upstream: asyncio.StreamWriter, gate: asyncio.Event
    ) -> None:
        self.client, self.upstream, self.gate = client, upstream, gate


class Proxy:
    """127.0.0.1:<port> forwarding to the PostgreSQL server of ``target``. ``blackhole()`` holds
    every byte from then on (delivered once ``forward()`` is called, as TCP would after a
    network partition heals); ``existing_only`` spares connections opened later (a NAT that
    dropped its old flows). ``reset()`` aborts every connection at once."""

    def __init__(self, target: str) -> None:
        parts = urlsplit(target)
        self.target_host, self.target_port = parts.hostname or "127.0.0.1", parts.port or 5432
        self.target = target
        self.gate = asyncio.Event()  # of connections opened from now on
        self.gate.set()
        self.held: list[asyncio.Event] = []
        self.links: list[_Link] = []
        self.tasks: set[asyncio.Task[None]] = set()
        self.server: asyncio.Server | None = None
        self.port = 0

    @property
    def url(self) -> str:
        parts = urlsplit(self.target)
        login = parts.netloc.rpartition("@")[0]
        return urlunsplit(parts._replace(netloc=f"{login}@127.0.0.1:{self.port}"))

    async def start(self) -> None:
        self.server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(self.target_host, self.target_port)
        except OSError:
            writer.transport.abort()
            return
        link = _Link(writer, up_writer, self.gate)
        self.links.append(link)
        for source, sink in ((reader, up_writer), (up_reader, writer)):
            task = asyncio.ensure_future(self._pump(source, sink, link))
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)

    async def _pump(self, source: asyncio.StreamReader, sink: asyncio.StreamWriter, link: _Link) -> None:
        with contextlib.suppress(OSError, asyncio.CancelledError):
            while data := await source.read(65536):
                while not link.gate.is_set():  # the gate may be swapped while waiting
                    gate = link.gate
                    await gate.wait()
                sink.write(data)
                await sink.drain()
        sink.transport.abort()

    def blackhole(self, *, existing_only: bool = False) -> None:
        held = asyncio.Event()
        self.held.append(held)
        for link in self.links:
            link.gate = held
        if not existing_only:
            self.gate = held

    def forward(self) -> None:
        for held in self.held:
            held.set()
        self.held.clear()
        self.gate = asyncio.Event()
        self.gate.set()

    def reset(self) -> None:
        """Abort every connection (a RST both ways), synchronously."""
        for link in self.links:
            link.client.transport.abort()
            link.upstream.transport.abort()
        self.links.clear()

    async def close(self) -> None:
        self.forward()
        self.reset()
        for task in list(self.tasks):
            task.cancel()
        if self.server is not None:
            self.server.close()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(5):
                    await self.server.wait_closed()
            self.server = None


@pytest.fixture
async def proxy(fresh_pg_url: str) -> AsyncIterator[Proxy]:
    running = Proxy(fresh_pg_url)
    await running.start()
    yield running
    await running.close()


@contextlib.contextmanager
def within(seconds: float) -> Iterator[Any]:
    """Asserts the block takes less than ``seconds``; yields a callable giving the time so far."""
    started = time.monotonic()
    yield lambda: time.monotonic() - started
    elapsed = time.monotonic() - started
    assert elapsed < seconds, f"took {elapsed:.1f} s (bound {seconds} s)"


async def test_with_default_bounds_a_black_holed_server_is_reported_within_30_s(
    proxy: Proxy,
    fresh_pg_url: str,
) -> None:
    """The default: liveness_interval 10 s, so a statement without an answer is found out in
    about 20 s (the check itself waits one interval for the server)."""
    async with asyncio.timeout(90):
        store = await ThreadStore.create(proxy.url, pool_size=2)
        try:
            await store.save(conversation("before", id="kept"))
            await background_done(store)
            proxy.blackhole()
            with within(30) as elapsed:
                results = await asyncio.gather(
                    store.get("kept"), store.save(conversation("lost")), return_exceptions=True
                )
            for result in results:
                assert isinstance(result, StoreUnavailableError), result
            assert "no answer for 10 s" in str(results[0]), results[0]
            assert "may or may not have been applied" in str(results[1]), results[1]
            print(f"\ndefault bounds: black-holed server reported after {elapsed():.1f} s")
            proxy.forward()
            assert [m.content for m in (await stored(store, "kept")).messages] == ["before"]
            await assert_connections_idle(store)
        finally:
            async with asyncio.timeout(10):
                await store.close()


async def test_black_holed_operations_fail_within_the_shortened_bounds_then_the_store_recovers(
    proxy: Proxy,
) -> None:
    async with asyncio.timeout(60), await ThreadStore.create(proxy.url, **FAST) as store:
        await store.save(conversation("before", id="kept"))
        await background_done(store)
        proxy.blackhole()
        # In flight: found out by the liveness check (an interval, then one for the check).
        with (
            within(5),
            pytest.raises(
                StoreUnavailableError,
                match=r"no answer for 1 s, and a new "
                r"connection to 127\.0\.0\.1:\d+ got none either within 1 s",
            ),
        ):
            await store.get("kept")
        # The next ones: the pool replaced its connections, and connecting now times out.
        for operation in (store.get("kept"), store.save(conversation("lost")), store.list()):
            with (
                within(5),
                pytest.raises(
                    StoreUnavailableError,
                    match=(
                        rf"cannot connect to PostgreSQL at 127\.0\.0\.1:{proxy.port} within 1 s "
                        r"\(DB_CONNECT_TIMEOUT\)|no answer for 1 s"
                    ),
                ),
            ):
                await operation
        proxy.forward()
        with within(5):
            assert [m.content for m in (await stored(store, "kept")).messages] == ["before"]
            await store.append("kept", user("after"))
            await asyncio.gather(*[store.get("kept") for _ in range(4)])
        assert [m.content for m in (await stored(store, "kept")).messages] == ["before", "after"]
        await assert_connections_idle(store)


async def test_a_callers_timeout_takes_effect_within_seconds_while_black_holed(
    proxy: Proxy,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Default settings. The cancelled read returns after its own 2 s plus at most 1 s waiting
    for the server; the cancelled write, whose outcome cannot be known, says so after 3 s."""
    async with asyncio.timeout(60), await ThreadStore.create(proxy.url, pool_size=2) as store:
        await store.save(conversation("before", id="kept"))
        await background_done(store)
        proxy.blackhole()
        with within(5), pytest.raises(TimeoutError):
            await asyncio.wait_for(store.get("kept"), 2)
        unknown = "may or may not have been applied"
        with within(8), pytest.raises(StoreUnavailableError, match=unknown):
            await asyncio.wait_for(store.append("kept", user("maybe")), 2)
        task = asyncio.ensure_future(store.get("kept"))
        await asyncio.sleep(0.5)
        task.cancel()
        with within(3), pytest.raises(asyncio.CancelledError):
            await task
        proxy.forward()
        with within(5):
            contents = [m.content for m in (await stored(store, "kept")).messages]
            assert contents in (["before"], ["before", "maybe"])
            await store.append("kept", user("after"))
            await asyncio.gather(*[store.get("kept") for _ in range(4)])
        await assert_connections_idle(store)
    assert "inactivity timer" not in caplog.text


async def test_reads_after_a_reset_succeed_without_an_error(
    proxy: Proxy,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="threadstore")
    async with asyncio.timeout(60), await ThreadStore.create(proxy.url, **FAST) as store:
        await store.save(conversation("kept", id="kept"))
        await store.save_thread_alias("kept", "kept-alias")
        for _ in range(scaled(5)):
            await asyncio.gather(*[store.get("kept") for _ in range(4)])  # several pooled
            await background_done(store)
            proxy.reset()  # no await in between: the store learns of it by using a connection
            results = await asyncio.gather(
                store.get("kept"),
                store.list_recent(),
                store.search_by_content("kept"),
                store.get_usage_stats(),
                store.get_by_alias("kept-alias"),
                store.get_thread_aliases("kept"),
                store.schema_status(),
            )
            assert results[0] is not None and results[0].id == "kept"  # type: ignore[union-attr]
            assert [t.id for t in results[1]] == ["kept"]  # type: ignore[union-attr]
            assert results[4] is not None and results[5] == ["kept-alias"]
        await assert_connections_idle(store)
    assert "retrying threads.get on a new connection" in caplog.text


async def test_a_write_cut_by_a_reset_is_wholly_there_or_wholly_absent(proxy: Proxy) -> None:
    rng = random.Random()
    async with asyncio.timeout(90), await ThreadStore.create(proxy.url, **FAST) as store:
        outcomes = {"stored": 0, "failed": 0}
        for n in range(scaled(30)):
            thread = Thread(id=f"cut-{n}")
            for k in range(50):
                thread.add_message(user(f"{n}/{k} " + "x" * 200))
            save = asyncio.ensure_future(store.save(thread))
            await asyncio.sleep(rng.uniform(0, 0.03))
            proxy.reset()
            try:
                await save
                outcomes["stored"] += 1
            except StoreUnavailableError:
                outcomes["failed"] += 1
            kept = await store.get(f"cut-{n}")
            count = 0 if kept is None else len(kept.messages)
            assert count in (0, 50), f"cut-{n}: {count} of 50 messages stored"
        await assert_connections_idle(store)
    print(f"\nwrites cut by a reset: {outcomes}")


async def test_a_connect_timeout_says_where_and_how_long(proxy: Proxy) -> None:
    proxy.blackhole()
    async with asyncio.timeout(30):
        with (
            within(5),
            pytest.raises(
                StoreUnavailableError,
                match=(
                    rf"^cannot connect to PostgreSQL at 127\.0\.0\.1:{proxy.port} within 1 s "
                    r"\(DB_CONNECT_TIMEOUT\)$"
                ),
            ),
        ):
            await ThreadStore.create(proxy.url, connect_timeout=1)
        # A refused connection gives its reason too (never "...: " with nothing after it).
        closed = urlsplit(proxy.url)._replace(netloc=f"postgres@127.0.0.1:{proxy.port}")
        proxy.forward()
        await proxy.close()
        with (
            within(5),
            pytest.raises(
                StoreUnavailableError,
                match=r"cannot connect to PostgreSQL"
                r" at .*: \S",
            ),
        ):
            await ThreadStore.create(urlunsplit(closed), connect_timeout=1)


async def test_command_timeout_n_fails_after_about_n_seconds_while_black_holed(
    proxy: Proxy,
) -> None:
    """asyncpg times the statement out after N s, then its cancel request travels the dead path
    too: the read waits at most 1 s more for it (it used to wait N more: 2N in all)."""
    async with (
        asyncio.timeout(60),
        await ThreadStore.create(proxy.url, command_timeout=3, pool_size=1) as store,
    ):
        await store.save(conversation("kept", id="kept"))
        await background_done(store)
        proxy.blackhole()
        started = time.monotonic()
        with pytest.raises(
            CommandTimeoutError,
            match=r"threads\.get ran longer than the command "
            r"timeout of 3 s",
        ):
            await store.get("kept")
        elapsed = time.monotonic() - started
        assert 2.8 < elapsed < 5.5, f"command_timeout=3 failed after {elapsed:.1f} s"
        proxy.forward()
        assert await store.get("kept") is not None


async def test_when_only_old_connections_are_dropped_reads_go_on_and_writes_say_so(
    proxy: Proxy,
) -> None:
    """A NAT that forgot its flows: the old connections hear nothing, new ones work. The check
    finds the session idle on the server twice, so the request or its answer was lost."""
    async with asyncio.timeout(60), await ThreadStore.create(proxy.url, **FAST) as store:
        await store.save(conversation("kept", id="kept"))
        await background_done(store)
        proxy.blackhole(existing_only=True)
        with within(6):
            thread = await store.get("kept")  # retried on a new connection, transparently
        assert thread is not None and [m.content for m in thread.messages] == ["kept"]
        await asyncio.gather(*[store.get("kept") for _ in range(2)])
        await background_done(store)
        proxy.blackhole(existing_only=True)
        with (
            within(6),
            pytest.raises(
                StoreUnavailableError,
                match=(
                    r"while the server is idle on this session: the request or its answer was lost; "
                    r"DB_LIVENESS_INTERVAL; the write may or may not have been applied"
                ),
            ),
        ):
            await store.append("kept", user("maybe"))
        proxy.forward()
        await store.append("kept", user("after"))
        assert [m.content for m in (await stored(store, "kept")).messages][-1] == "after"
        await assert_connections_idle(store)


async def test_a_statement_longer_than_the_liveness_interval_is_not_cut(
    proxy: Proxy,
    fresh_pg_url: str,
) -> None:
    """A write waiting 3 s for a row lock, with checks every 0.5 s: each finds it running."""
    async with (
        asyncio.timeout(60),
        await ThreadStore.create(proxy.url, liveness_interval=0.5, pool_size=1) as store,
    ):
        await store.save(conversation("start", id="hot"))
        admin = await asyncpg.connect(fresh_pg_url)
        try:
            async with admin.transaction():
                await admin.execute("SELECT 1 FROM threads WHERE id = 'hot' FOR UPDATE")
                append = asyncio.ensure_future(store.append("hot", user("waited")))
                await asyncio.sleep(3)
                assert not append.done()
            await append
        finally:
            await admin.close()
        assert [m.content for m in (await stored(store, "hot")).messages] == ["start", "waited"]


async def test_ping_answers_and_fails_within_the_bounds_when_black_holed(proxy: Proxy) -> None:
    async with asyncio.timeout(30), await ThreadStore.create(proxy.url, **FAST) as store:
        backend: Any = backend_of(store)
        await backend.ping()
        await background_done(store)
        proxy.blackhole()
        with within(5), pytest.raises(StoreUnavailableError):
            await backend.ping()
        proxy.forward()
        await backend.ping()


async def test_a_cancelled_save_in_a_transaction_returns_within_seconds_and_wrote_nothing(
    proxy: Proxy,
) -> None:
    """Default settings. prune_messages runs in a transaction (the thread's row locked, then the
    delete): cancelled while black-holed, it drops the connection rather than wait for a
    ROLLBACK that never comes, and the caller gets its timeout, since nothing was committed."""
    async with asyncio.timeout(60), await ThreadStore.create(proxy.url, pool_size=2) as store:
        await store.save(conversation("one", "two", "three", id="kept"))
        await background_done(store)
        proxy.blackhole()
        with within(5), pytest.raises(TimeoutError):
            await asyncio.wait_for(store.prune_messages("kept", keep_last=2), 2)
        proxy.forward()
        with within(5):
            assert [m.content for m in (await stored(store, "kept")).messages] == ["one", "two", "three"]
            assert await store.prune_messages("kept", keep_last=2) == 1  # the same prune, now through
            assert [m.content for m in (await stored(store, "kept")).messages] == ["two", "three"]
        await assert_connections_idle(store)
