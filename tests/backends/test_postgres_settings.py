"""PostgreSQL settings, each observed by its behaviour: pool size and overflow, pool timeout,
recycling by age, command timeout, statement cache (PgBouncer mode), the query name on the wire."""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest

from threadstore import Message, SchemaVersionError, StoreUnavailableError, Thread, ThreadStore
from threadstore.errors import CommandTimeoutError, PoolTimeoutError


async def _pid(store: ThreadStore) -> int:
    assert store.async_session is not None
    async with store.async_session() as conn:
        pid: int = await conn.fetchval("SELECT pg_backend_pid()")
    return pid


@contextlib.asynccontextmanager
async def _holding(store: ThreadStore, count: int) -> AsyncIterator[list[Any]]:
    """``count`` pooled connections held (each inside a transaction) until the block ends."""
    assert store.async_session is not None
    async with contextlib.AsyncExitStack() as stack:
        yield [await stack.enter_async_context(store.async_session()) for _ in range(count)]


async def test_pool_size_connections_open_at_once_and_overflow_allows_more(pg_url: str) -> None:
    async with await ThreadStore.create(pg_url, pool_size=2, max_overflow=1, pool_timeout=0.2) as store:
        pool = store.engine
        assert (pool.get_size(), pool.get_min_size(), pool.get_max_size()) == (2, 2, 3)
        async with _holding(store, 3) as held:
            assert len({await conn.fetchval("SELECT pg_backend_pid()") for conn in held}) == 3
            with pytest.raises(PoolTimeoutError):
                await store.get("x")


async def test_a_third_operation_times_out_on_a_pool_of_two_with_a_clear_error(pg_url: str) -> None:
    async with await ThreadStore.create(pg_url, pool_size=2, max_overflow=0, pool_timeout=0.2) as store:
        async with _holding(store, 2):
            started = time.monotonic()
            with pytest.raises(PoolTimeoutError) as raised:
                await store.get("x")
            waited = time.monotonic() - started
        assert 0.15 < waited < 2
        message = str(raised.value)
        assert "within 0.2 s" in message and "DB_POOL_TIMEOUT" in message and "pool_size 2" in message
        assert isinstance(raised.value, StoreUnavailableError) and isinstance(raised.value, TimeoutError)
        assert await store.get("x") is None  # the pool recovers once connections are free


async def test_a_connection_older_than_pool_recycle_is_not_reused(pg_url: str) -> None:
    async with await ThreadStore.create(pg_url, pool_size=1, max_overflow=0, pool_recycle=0.5) as store:
        first = await _pid(store)
        assert await _pid(store) == first  # young enough: reused
        await asyncio.sleep(0.6)
        second = await _pid(store)
        assert second != first
        await store.save(Thread(id="recycled"))
        assert await store.get("recycled") is not None
    async with await ThreadStore.create(pg_url, pool_size=1, max_overflow=0) as store:
        first = await _pid(store)
        await asyncio.sleep(0.6)
        assert await _pid(store) == first  # no recycling unless asked


async def test_a_statement_over_the_command_timeout_is_cancelled_and_named_on_the_server(pg_url: str) -> None:
    """A save blocked on a row lock: the server sees it as "/* postgres.save */", and it is cancelled
    after command_timeout with CommandTimeoutError; the store works on afterwards."""
    async with await ThreadStore.create(pg_url, pool_size=2, command_timeout=0.5) as store:
        thread = await store.save(Thread(id="locked", title="before"))
        assert store.async_session is not None
        async with store.async_session() as conn:
            await conn.execute("SELECT 1 FROM threads WHERE id = 'locked' FOR UPDATE")
            thread.title = "after"
            save = asyncio.ensure_future(store.save(thread))
            waiting = None
            for _ in range(40):
                await asyncio.sleep(0.01)
                waiting = await conn.fetchval(
                    "SELECT query FROM pg_stat_activity WHERE datname = current_database() "
                    "AND wait_event_type = 'Lock'"
                )
                if waiting:
                    break
            assert waiting is not None and waiting.startswith("/* postgres.save */\n")
            with pytest.raises(
                CommandTimeoutError,
                match=r"postgres\.save ran longer than the command "
                r"timeout of 0\.5 s \(DB_COMMAND_TIMEOUT\)",
            ):
                await save
        assert (await store.save(thread)).title == "after"
        stored = await store.get("locked")
        assert stored is not None and stored.title == "after"


@pytest.mark.parametrize(("cache", "plan_mode"), [(0, "auto"), (100, "auto")])
async def test_statement_cache_size_zero_prepares_nothing_and_sends_no_plan_cache_mode(
    pg_url: str, cache: int, plan_mode: str
) -> None:
    """PgBouncer in transaction mode needs no named prepared statements and refuses unknown
    startup parameters such as plan_cache_mode."""
    async with await ThreadStore.create(
        pg_url, pool_size=1, max_overflow=0, statement_cache_size=cache
    ) as store:
        await store.save(Thread(id="cached"))
        await store.get("cached")
        assert store.async_session is not None
        async with store.async_session() as conn:
            prepared = await conn.fetchval("SELECT count(*) FROM pg_prepared_statements")
            assert await conn.fetchval("SHOW plan_cache_mode") == plan_mode
        assert (prepared == 0) is (cache == 0)


async def test_the_servers_statement_timeout_is_a_command_timeout_error(fresh_pg_url: str) -> None:
    """A server statement_timeout (a role's, a database's, the URL's options) arrived as a plain
    ThreadStoreError."""
    async with await ThreadStore.create(fresh_pg_url, pool_size=1) as owner:
        await owner.save(Thread(id="timed", title="before"))
        url = f"{fresh_pg_url}?options=-c%20statement_timeout%3D200"
        async with await ThreadStore.create(url, pool_size=1) as store:
            thread = await store.get("timed")
            assert thread is not None and owner.async_session is not None
            async with owner.async_session() as conn:
                await conn.execute("SELECT 1 FROM threads WHERE id = 'timed' FOR UPDATE")
                thread.title = "after"
                with pytest.raises(CommandTimeoutError, match="statement timeout"):
                    await store.save(thread)
            assert (await store.save(thread)).title == "after"


async def test_ping_of_a_dropped_database_is_store_unavailable(pg_server: str, fresh_pg_url: str) -> None:
    """A dropped database gave a plain ThreadStoreError from ping()."""
    import asyncpg

    async with await ThreadStore.create(fresh_pg_url, pool_size=1) as store:
        await store.ping()
        admin = await asyncpg.connect(pg_server)
        try:
            await admin.execute(f'DROP DATABASE "{fresh_pg_url.rsplit("/", 1)[1]}" WITH (FORCE)')
        finally:
            await admin.close()
        for _ in range(2):  # the lost session, then the database that is not there
            with pytest.raises(StoreUnavailableError):
                await store.ping()


async def _tables(url: str, name: str) -> list[str]:
    """The schemas holding a table called ``name``."""
    conn = await asyncpg.connect(url)
    try:
        rows = await conn.fetch(
            "SELECT table_schema FROM information_schema.tables WHERE table_name = $1 ORDER BY 1", name
        )
    finally:
        await conn.close()
    return [row[0] for row in rows]


async def test_two_stores_in_two_schemas_of_one_database_keep_apart(fresh_pg_url: str) -> None:
    async with (
        ThreadStore(fresh_pg_url, schema="chat_a") as a,
        ThreadStore(fresh_pg_url + "?schema=chat_b") as b,
    ):
        thread = Thread(id="t1", title="only in a")
        thread.add_message(Message(role="user", content="hello a"))
        await a.save(thread)
        assert (await a.get("t1")) is not None and await b.get("t1") is None
        other = Thread(id="t1", title="only in b")  # the same id: another table
        await b.save(other)
        assert [t.title for t in await a.search_by_title("only")] == ["only in a"]
        assert [t.title for t in await b.search_by_title("only")] == ["only in b"]
        assert [hit.thread_id for hit in await b.search("hello")] == []
    assert await _tables(fresh_pg_url, "threadstore_migrations") == ["chat_a", "chat_b"]
    async with ThreadStore(fresh_pg_url, schema="chat_a") as again:  # opened again: migrated already
        assert (await again.get("t1")).title == "only in a"  # type: ignore[union-attr]


async def test_a_store_in_a_schema_lives_beside_an_applications_messages_table(fresh_pg_url: str) -> None:
    conn = await asyncpg.connect(fresh_pg_url)
    await conn.execute(
        "CREATE TABLE messages (id serial PRIMARY KEY, body text); INSERT INTO messages (body) VALUES ('app')"
    )
    await conn.close()
    with pytest.raises(SchemaVersionError):  # without schema=, the application's table is in the way
        await ThreadStore.create(fresh_pg_url)
    async with await ThreadStore.create(fresh_pg_url, schema="threadstore") as store:
        thread = Thread(title="beside")
        thread.add_message(Message(role="user", content="hi"))
        await store.save(thread)
        assert len((await store.get(thread.id)).messages) == 1  # type: ignore[union-attr]
    assert await _tables(fresh_pg_url, "messages") == ["public", "threadstore"]
    conn = await asyncpg.connect(fresh_pg_url)
    assert await conn.fetchval("SELECT body FROM public.messages") == "app"  # untouched
    await conn.close()


async def test_an_existing_schema_is_used_without_the_create_privilege(fresh_pg_url: str) -> None:
    role = f"threadstore_schema_{uuid.uuid4().hex[:12]}"  # roles are the whole server's
    conn = await asyncpg.connect(fresh_pg_url)
    await conn.execute(f"CREATE ROLE {role} LOGIN; CREATE SCHEMA given AUTHORIZATION {role}")
    await conn.close()
    parts = urlsplit(fresh_pg_url)
    url = urlunsplit(parts._replace(netloc=f"{role}@{parts.netloc.rpartition('@')[2]}"))
    try:  # the role may not create schemas in this database (PUBLIC has no CREATE on it)
        async with ThreadStore(url, schema="given") as store:
            await store.save(Thread(id="x"))
            assert await store.get("x") is not None
    finally:
        conn = await asyncpg.connect(fresh_pg_url)
        await conn.execute(f"DROP SCHEMA given CASCADE; DROP OWNED BY {role}; DROP ROLE {role}")
        await conn.close()
