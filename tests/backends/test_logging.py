"""Logging: echo names each statement and its duration, never values or passwords; nothing above
DEBUG otherwise."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest

from tests.helpers import user
from threadstore import StoreUnavailableError, Thread, ThreadStore

SECRET = "pa55-w0rd-xyz"
VALUES = ("Top secret title", "my card number 4111", "cust_789")
ECHO_LINE = re.compile(r"(?:[a-z_]+\.[a-z_]+|migrations\.\d{4}_[a-z_]+) \d+\.\d\d ms")


@pytest.fixture(params=["sqlite_file", "postgres"])
def sql_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite_file":
        return f"sqlite+aiosqlite:///{tmp_path}/echo.db"
    url: str = request.getfixturevalue("fresh_pg_url")
    # The test server trusts local connections, so any password is accepted and must not show.
    parts = urlsplit(url)
    return urlunsplit(parts._replace(netloc=f"{parts.username}:{SECRET}@{parts.hostname}:{parts.port}"))


async def _work(store: ThreadStore) -> None:
    thread = Thread(title=VALUES[0], attributes={"customer": VALUES[2]})
    thread.add_message(user(VALUES[1]))
    await store.save(thread)
    assert await store.get(thread.id) is not None
    await store.list()
    await store.delete(thread.id)


async def test_echo_logs_each_statement_name_and_duration_without_values(
    sql_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="threadstore")
    async with await ThreadStore.create(sql_url, echo=True) as store:
        await _work(store)
    echo = [r for r in caplog.records if r.name == "threadstore.sql"]
    lines = [r.getMessage() for r in echo]
    assert all(r.levelno == logging.INFO for r in echo)
    assert all(ECHO_LINE.fullmatch(line) for line in lines), lines
    names = {line.rsplit(" ", 2)[0] for line in lines}
    assert {"threads.get", "threads.list_recent", "threads.delete", "schema.versions"} <= names
    assert "migrations.0001_init" in names
    assert names & {
        "postgres.save",
        "postgres.save_new",
        "postgres.save_appended",
        "sqlite.save_thread_row",
        "sqlite.save_new_thread",
        "sqlite.save_appended_thread",
    }
    everything = "\n".join(r.getMessage() for r in caplog.records)
    for value in (*VALUES, SECRET):
        assert value not in everything


async def test_without_echo_nothing_above_debug_is_logged_by_operations(
    sql_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    async with await ThreadStore.create(sql_url) as store:
        caplog.set_level(logging.DEBUG, logger="threadstore")
        await _work(store)
    assert not [r for r in caplog.records if r.name.startswith("threadstore") and r.levelno > logging.DEBUG]
    assert not [r for r in caplog.records if r.name == "threadstore.sql"]
    assert SECRET not in caplog.text


def test_db_echo_prints_to_stderr_when_the_application_configured_no_logging(tmp_path: Path) -> None:
    script = (
        "import asyncio\n"
        "from threadstore import Thread, ThreadStore\n"
        "async def main():\n"
        "    async with await ThreadStore.create() as store:\n"
        f"        await store.save(Thread(title={VALUES[0]!r}))\n"
        "asyncio.run(main())\n"
    )
    env = {
        "PATH": "/usr/bin:/bin",
        "TYLER_DB_TYPE": "sqlite",
        "TYLER_DB_PATH": f"{tmp_path}/e.db",
        "TYLER_DB_ECHO": "true",
    }
    result = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        cwd=Path(__file__).resolve().parents[2],
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == ""
    assert re.search(r"threadstore\.sql sqlite\.save_thread_row \d+\.\d\d ms", result.stderr), result.stderr
    assert VALUES[0] not in result.stderr


class Switch:
    """127.0.0.1:<port> forwarding to a PostgreSQL server; ``down()`` cuts every connection and
    refuses new ones (as a stopped server does), ``up()`` listens on the same port again."""

    def __init__(self, target: str) -> None:
        self.target = urlsplit(target)
        self.port = 0
        self.server: asyncio.Server | None = None
        self.writers: list[asyncio.StreamWriter] = []

    def url(self, password: str) -> str:
        netloc = f"{self.target.username}:{password}@127.0.0.1:{self.port}"
        return urlunsplit(self.target._replace(netloc=netloc))

    async def up(self) -> None:
        self.server = await asyncio.start_server(self._accept, "127.0.0.1", self.port)
        self.port = self.server.sockets[0].getsockname()[1]

    async def down(self) -> None:
        assert self.server is not None
        self.server.close()
        for writer in self.writers:
            writer.transport.abort()
        self.writers.clear()
        await self.server.wait_closed()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection(self.target.hostname, self.target.port)
        self.writers += [writer, up_writer]

        async def pump(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
            with contextlib.suppress(OSError):
                while data := await source.read(65536):
                    sink.write(data)
                    await sink.drain()
            sink.transport.abort()

        await asyncio.gather(pump(reader, up_writer), pump(up_reader, writer))


async def test_a_server_going_away_logs_one_warning_and_coming_back_one_info(
    fresh_pg_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    switch = Switch(fresh_pg_url)
    await switch.up()
    caplog.set_level(logging.DEBUG)
    address = f"127.0.0.1:{switch.port}"
    async with await ThreadStore.create(switch.url(SECRET), pool_size=2, max_overflow=0) as store:
        thread = await store.save(Thread(title="kept"))
        await switch.down()
        for _ in range(2):  # two operations while it is down: still one warning
            with pytest.raises(StoreUnavailableError) as raised:
                await store.get(thread.id)
            assert SECRET not in str(raised.value)
        await asyncio.sleep(3.5)  # asyncpg retries the pool's floor after 1 s, 2 s, ...
        await switch.up()
        for _ in range(50):
            with contextlib.suppress(StoreUnavailableError):
                if await store.get(thread.id) is not None:
                    break
            await asyncio.sleep(0.1)
        assert await store.get(thread.id) is not None
        await asyncio.sleep(1.5)  # the floor refilled: no second line either way
    records = [r for r in caplog.records if r.levelno >= logging.INFO]
    assert not [r for r in records if not r.name.startswith("threadstore")]  # asyncpg's are quiet
    warnings = [r.getMessage() for r in records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1, warnings
    assert warnings[0].startswith(
        f"PostgreSQL at {address} is unreachable (connection refused at "
        f"{address}: the PostgreSQL server may not be running"
    )
    back = [r.getMessage() for r in records if "reachable again" in r.getMessage()]
    assert back == [f"PostgreSQL at {address} is reachable again"]
    assert all(r.exc_info is None and "\n" not in r.getMessage() for r in records)
    assert SECRET not in caplog.text and "Traceback" not in caplog.text


async def test_connect_call_failed_names_the_host_and_port_and_a_likely_cause() -> None:
    with pytest.raises(StoreUnavailableError) as raised:
        await ThreadStore.create(f"postgresql://u:{SECRET}@127.0.0.1:1/db", connect_timeout=5)
    message = str(raised.value)
    assert message == (
        "cannot connect to PostgreSQL at postgresql://u:***@127.0.0.1:1/db: connection "
        "refused at 127.0.0.1:1: the PostgreSQL server may not be running, or not be "
        "listening on that host and port"
    )
