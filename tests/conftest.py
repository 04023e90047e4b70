"""Fixtures shared by every test: the backends, and a throwaway PostgreSQL database.

PostgreSQL is found in this order: THREADSTORE_TEST_PG_URL (a server URL; the run creates its own
database there and drops it after); else a testcontainers container when a Docker engine answers;
else PostgreSQL tests are skipped with the reason, or fail when THREADSTORE_REQUIRE_PG=1.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import os
import shutil
import subprocess
import threading
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import pytest

from threadstore import ThreadStore
from threadstore.config import SettingsKwargs
from threadstore.sync import ThreadStore as SyncThreadStore

BACKENDS = ["memory", "sqlite_file", "sqlite_memory", "postgres"]
# The `store` fixture also runs the contract suite through the blocking facade (threadstore.sync)
# on a SQLite file: the "sync" param, for tests that take `store` (see pytest_collection_modifyitems).
STORE_BACKENDS = [*BACKENDS, "sync"]
# One connection kept open per PostgreSQL store is plenty for a test (the default of 5 opens
# five per store, which doubled the suite's time on the shared server).
TEST_POOL: SettingsKwargs = {"pool_size": 1}
SHARED_BACKENDS = ["sqlite_file", "postgres"]  # two store instances can open the same database


def _docker_answers() -> bool:
    if shutil.which("docker") is None:
        return False
    try:
        return subprocess.run(["docker", "info"], capture_output=True, timeout=10).returncode == 0
    except (OSError, subprocess.SubprocessError):
        return False


async def _admin(url: str, statement: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(url)
    try:
        await conn.execute(statement)
    finally:
        await conn.close()


@pytest.fixture(scope="session")
def pg_server() -> Iterator[str]:
    """URL of a PostgreSQL server the tests may create databases on."""
    server = os.environ.get("THREADSTORE_TEST_PG_URL")
    if server:
        yield server
        return
    if not _docker_answers():
        reason = (
            "no PostgreSQL for tests: set THREADSTORE_TEST_PG_URL, or run a Docker engine for testcontainers"
        )
        if os.environ.get("THREADSTORE_REQUIRE_PG") == "1":
            pytest.fail(f"{reason} (THREADSTORE_REQUIRE_PG=1 makes this a failure)")
        pytest.skip(reason)
    from testcontainers.postgres import PostgresContainer

    container = PostgresContainer("postgres:16-alpine", driver=None).start()
    try:
        yield container.get_connection_url()
    finally:
        container.stop()


@contextlib.contextmanager
def _database(server: str) -> Iterator[str]:
    # Test infrastructure only: the database name is generated here, never user input, and
    # CREATE DATABASE cannot take it as a bind parameter.
    name = f"threadstore_test_{uuid.uuid4().hex[:12]}"
    asyncio.run(_admin(server, f'CREATE DATABASE "{name}"'))
    try:
        yield urlunsplit(urlsplit(server)._replace(path=f"/{name}"))
    finally:
        asyncio.run(_admin(server, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture(scope="session")
def pg_url(pg_server: str) -> Iterator[str]:
    """URL of a PostgreSQL database created for this test run (dropped afterwards)."""
    with _database(pg_server) as url:
        yield url


@pytest.fixture
def fresh_pg_url(pg_server: str) -> Iterator[str]:
    """URL of a new, empty PostgreSQL database for one test (dropped afterwards)."""
    with _database(pg_server) as url:
        yield url


def backend_url(kind: str, request: pytest.FixtureRequest, tmp_path: object) -> str | None:
    """The URL a test uses for one backend kind."""
    if kind == "memory":
        return None
    if kind in ("sqlite_file", "sync"):
        return f"sqlite+aiosqlite:///{tmp_path}/threads.db"
    if kind == "sqlite_memory":
        return "sqlite+aiosqlite:///:memory:"
    url: str = request.getfixturevalue("pg_url")
    return url


async def emptied(store: ThreadStore) -> ThreadStore:
    # The PostgreSQL database lives for the whole run; each test starts from an empty store.
    await store.delete_many([t.id for t in await store.list_recent()])
    return store


@pytest.fixture(params=STORE_BACKENDS)
def store_url(request: pytest.FixtureRequest, tmp_path: object) -> str | None:
    """The URL of an empty store, once per backend."""
    return backend_url(request.param, request, tmp_path)


class SyncAwaited:
    """A threadstore.sync.ThreadStore as the async tests use a store: each blocking call runs in
    a thread of its own, so the test's event loop goes on meanwhile, as with the async store."""

    def __init__(self, store: SyncThreadStore) -> None:
        self.sync = store

    def __getattr__(self, name: str) -> Any:
        value = getattr(self.sync, name)
        if name == "export_threads":
            return lambda **kwargs: _pages(value(**kwargs))
        if not callable(value):
            return value

        async def call(*args: Any, **kwargs: Any) -> Any:
            # A thread per call, not asyncio.to_thread's pool of a few: tests run 32 calls at once.
            done: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
            loop = asyncio.get_running_loop()

            def run() -> None:
                try:
                    result = value(*args, **kwargs)
                except BaseException as exc:
                    loop.call_soon_threadsafe(_settle, done, None, exc)
                else:
                    loop.call_soon_threadsafe(_settle, done, result, None)

            threading.Thread(target=run, daemon=True).start()
            return await asyncio.shield(done)

        return call

    def __repr__(self) -> str:
        return repr(self.sync)

    async def __aenter__(self) -> SyncAwaited:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await asyncio.to_thread(self.sync.close)


def _settle(future: asyncio.Future[Any], result: Any, exc: BaseException | None) -> None:
    if future.cancelled():
        return
    if exc is not None:
        future.set_exception(exc)
    else:
        future.set_result(result)


async def _pages(pages: Iterator[Any]) -> AsyncIterator[Any]:
    sentinel = object()
    while (page := await asyncio.to_thread(next, pages, sentinel)) is not sentinel:
        yield page


@pytest.fixture
async def store(request: pytest.FixtureRequest, store_url: str | None) -> AsyncIterator[ThreadStore]:
    """An empty, connected store, once per backend (and once through the sync facade)."""
    if getattr(request.node, "callspec", None) and request.node.callspec.params.get("store_url") == "sync":
        opened: Any = SyncAwaited(await asyncio.to_thread(SyncThreadStore.create, store_url))
        async with opened:
            yield opened
        return
    async with await ThreadStore.create(store_url, **TEST_POOL) as opened:
        yield await emptied(opened)


@pytest.fixture(params=SHARED_BACKENDS)
def shared_url(request: pytest.FixtureRequest, tmp_path: object) -> str | None:
    """The URL of a database two store instances can share (SQLite file, PostgreSQL)."""
    return backend_url(request.param, request, tmp_path)


@pytest.fixture
async def open_store() -> AsyncIterator[Callable[[str | None], Awaitable[ThreadStore]]]:
    """Opens extra stores (closed after the test): ``await open_store(url)``."""
    opened: list[ThreadStore] = []

    async def _open(url: str | None) -> ThreadStore:
        store = await ThreadStore.create(url, **TEST_POOL)
        opened.append(store)
        return store

    yield _open
    for store in opened:
        await store.close()


def _looks_inside(item: pytest.Item) -> bool:
    """Whether a test reaches into the store's backend or its driver objects (which, behind the
    sync facade, live on another event loop): such tests run on the async store only."""
    function = getattr(item, "function", None)
    source = inspect.getsource(function) if function is not None else ""
    return any(inside in source for inside in ("backend_of(", ".engine", ".async_session"))


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark every PostgreSQL-backed test ``pg`` (``make test-pg`` selects them); run the "sync"
    param of ``store_url`` only for the contract tests that take the ``store`` fixture (the
    reliability tests cancel calls, which a blocking call in another thread cannot honour)."""
    sync_only_url = [
        item
        for item in items
        if getattr(item, "callspec", None) is not None
        and item.callspec.params.get("store_url") == "sync"  # type: ignore[attr-defined]
        and ("store" not in item.fixturenames or _looks_inside(item) or "contract" not in item.path.parts)  # type: ignore[attr-defined]
    ]
    if sync_only_url:
        config.hook.pytest_deselected(items=sync_only_url)
        deselected = set(sync_only_url)
        items[:] = [item for item in items if item not in deselected]
    for item in items:
        callspec = getattr(item, "callspec", None)
        params = callspec.params.values() if callspec is not None else ()
        if "postgres" in params or "pg_server" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.pg)
