"""Fixtures of the reliability tests: a store on every backend at once, new empty databases on
demand, and the hypothesis profiles (`make test` runs few examples, `make stress` many)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import msgspec
import pytest
import pytest_asyncio
from hypothesis import HealthCheck, settings

from tests.conftest import _admin
from tests.reliability.support import STRESS
from threadstore import Thread, ThreadStore

# The stores are fixtures shared by every example, which hypothesis warns about: each example
# uses ids of its own instead.
_QUIET = [HealthCheck.too_slow, HealthCheck.function_scoped_fixture]
settings.register_profile("default", max_examples=20, deadline=None, suppress_health_check=_QUIET)
settings.register_profile("stress", max_examples=500, deadline=None, suppress_health_check=_QUIET)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "stress" if STRESS else "default"))


@pytest.fixture(params=["sqlite_file", "postgres"])
def new_database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Callable[[], Awaitable[str]]]:
    """``await new_database()``: the URL of a new, empty database several processes can open
    (a SQLite file, a PostgreSQL database); the PostgreSQL ones are dropped after the test."""
    created: list[str] = []
    server: str | None = request.getfixturevalue("pg_server") if request.param == "postgres" else None

    async def make() -> str:
        name = f"threadstore_test_{uuid.uuid4().hex[:12]}"
        if server is None:
            return f"sqlite+aiosqlite:///{tmp_path}/{name}.db"
        # Test infrastructure only: the name is generated here, and CREATE DATABASE takes no
        # bind parameters.
        await _admin(server, f'CREATE DATABASE "{name}"')
        created.append(name)
        return urlunsplit(urlsplit(server)._replace(path=f"/{name}"))

    yield make
    for name in created:
        assert server is not None
        asyncio.run(_admin(server, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture(scope="module")
def store_urls(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, str | None]:
    """The URL of each backend: PostgreSQL only when a server is found."""
    path = tmp_path_factory.mktemp("stores") / "threads.db"
    urls: dict[str, str | None] = {
        "memory": None,
        "sqlite_file": f"sqlite+aiosqlite:///{path}",
        "sqlite_memory": "sqlite+aiosqlite:///:memory:",
    }
    with contextlib.suppress(pytest.skip.Exception):
        urls["postgres"] = request.getfixturevalue("pg_url")
    return urls


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def stores(store_urls: dict[str, str | None], witness: Thread) -> AsyncIterator[dict[str, ThreadStore]]:
    """One store per backend for the whole module (whose tests run in the module's event loop:
    ``pytestmark = pytest.mark.asyncio(loop_scope="module")``), each holding nothing but a copy
    of the module's ``witness`` thread, checked to be intact at the end."""
    opened: dict[str, ThreadStore] = {}
    try:
        for kind, url in store_urls.items():
            store = opened[kind] = await ThreadStore.create(url)
            await store.delete_many([t.id for t in await store.list_recent()])
            await store.save(msgspec.json.decode(msgspec.json.encode(witness), type=Thread))
        yield opened
        for store in opened.values():
            assert await store.get(witness.id) == witness, f"{store.backend}: the witness changed"
    finally:
        for store in opened.values():
            await store.close()
