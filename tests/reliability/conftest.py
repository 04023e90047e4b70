"""Fixtures of the reliability tests: new empty databases on demand, and the hypothesis profiles
(`make test` runs few examples, `make stress` many)."""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest
from hypothesis import HealthCheck, settings

from tests.reliability.support import STRESS

settings.register_profile("default", max_examples=25, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("stress", max_examples=500, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "stress" if STRESS else "default"))


async def _admin(server: str, statement: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(server)
    try:
        await conn.execute(statement)
    finally:
        await conn.close()


@pytest.fixture(params=["sqlite_file", "postgres"])
def new_database(
    request: pytest.FixtureRequest, tmp_path: Path
) -> Iterator[Callable[[], Awaitable[str]]]:
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
