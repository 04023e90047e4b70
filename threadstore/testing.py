"""A pytest plugin for code that uses threadstore: a fresh store for every test.

Installing threadstore registers it (entry point ``pytest11``), so tests just ask for it:

    async def test_reply(thread_store):
        await thread_store.save(Thread(title="hello"))

``thread_store`` is a ``threadstore.ThreadStore`` that connects on its first use, in whatever
event loop the test runs (pytest-asyncio, anyio, or ``asyncio.run`` in a plain test), and is
closed after the test. By default
it is a fresh in-memory store. With ``THREADSTORE_TEST_URL`` set it is a fresh database there:
for a PostgreSQL URL (a server the tests may create databases on) a database of its own, created
for the test and dropped after it; for a SQLite URL a new file beside the one named, deleted after
the test. ``thread_store_url`` is that fresh database's URL, for tests that open stores
themselves (``threadstore.sync.ThreadStore(thread_store_url)``); None means in-memory.
"""

from __future__ import annotations

import asyncio
import os
import re
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest

from threadstore.backends import Backend
from threadstore.config import parse_url
from threadstore.store import ThreadStore

TEST_URL_VARIABLE = "THREADSTORE_TEST_URL"
DATABASE_PREFIX = "threadstore_fixture_"  # the PostgreSQL databases the fixture creates
# CREATE/DROP DATABASE take no bind parameters: only the names generated below may get there.
_ADMIN_STATEMENT = re.compile(
    r'(CREATE|DROP) DATABASE (IF EXISTS )?"threadstore_fixture_[0-9a-f]{16}"'
    r"( WITH \(FORCE\))?"
)


async def _admin(server_dsn: str, statement: str) -> None:
    import asyncpg

    if not _ADMIN_STATEMENT.fullmatch(statement):
        raise ValueError(f"not a statement of the thread_store fixture: {statement!r}")

    conn = await asyncpg.connect(server_dsn)
    try:
        await conn.execute(statement)
    finally:
        await conn.close()


@pytest.fixture
def thread_store_url() -> Iterator[str | None]:
    """The URL of a fresh, empty database for one test (see the module docstring); None for
    in-memory, when THREADSTORE_TEST_URL is not set."""
    url = os.environ.get(TEST_URL_VARIABLE) or None
    if url is None:
        yield None
        return
    config = parse_url(url)  # a bad URL is a ConfigurationError naming the variable's value
    name = f"{DATABASE_PREFIX}{uuid.uuid4().hex[:16]}"
    if config.backend == "sqlite":
        if config.path == ":memory:":
            yield url
            return
        base = Path(config.path or "threadstore.db")
        path = base.with_name(f"{base.stem}-{name}{base.suffix or '.db'}")
        try:
            yield f"sqlite+aiosqlite:///{path}"
        finally:
            for leftover in (path, *(path.with_name(path.name + end) for end in ("-wal", "-shm"))):
                leftover.unlink(missing_ok=True)
        return
    if config.backend != "postgres" or config.dsn is None:
        yield None
        return
    # The name is generated here, never taken from input; CREATE DATABASE takes no parameters.
    asyncio.run(_admin(config.dsn, f'CREATE DATABASE "{name}"'))
    try:
        yield urlunsplit(urlsplit(url)._replace(path=f"/{name}"))
    finally:
        asyncio.run(_admin(config.dsn, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture
def thread_store(thread_store_url: str | None) -> Iterator[ThreadStore]:
    """A fresh ``ThreadStore`` for one test: in memory, or a database of its own on
    THREADSTORE_TEST_URL. It connects (and creates its schema) on first use; the fixture closes
    it after the test, in the event loop it connected in (a loop still open, such as a session-
    scoped one), or quietly when that loop ended first (``asyncio.run`` in the test)."""
    store = ThreadStore(thread_store_url or "memory://")
    store._connector.warn_unclosed = False  # the fixture closes it: no ResourceWarning under -W error
    try:
        yield store
    finally:
        _close(store)


def _close(store: ThreadStore) -> None:
    """Close ``store`` in the event loop its connections belong to, if that loop is still open."""
    loop = store._connector.loop
    if backend_of(store) is None or loop is None or loop.is_closed():
        return  # never connected, closed by the test, or closed when its loop ended
    if loop.is_running():  # a loop running in another thread
        asyncio.run_coroutine_threadsafe(store.close(), loop).result(_CLOSE_TIMEOUT)
    else:
        loop.run_until_complete(asyncio.wait_for(store.close(), _CLOSE_TIMEOUT))


_CLOSE_TIMEOUT = 30.0  # seconds the fixture waits for its store to close


def backend_of(store: ThreadStore) -> Backend | None:
    """The backend object a store runs on in its event loop (None before it connects), for
    tests that look beneath the API: the one place that reads the store's private state."""
    return store._connector.backend
