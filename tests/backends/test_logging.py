"""Logging: echo names each statement and its duration, never values or passwords; nothing above
DEBUG otherwise."""

from __future__ import annotations

import logging
import re
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest

from tests.helpers import user
from threadstore import Thread, ThreadStore

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
        sql_url: str, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="threadstore")
    async with await ThreadStore.create(sql_url, echo=True) as store:
        await _work(store)
    echo = [r for r in caplog.records if r.name == "threadstore.sql"]
    lines = [r.getMessage() for r in echo]
    assert all(r.levelno == logging.INFO for r in echo)
    assert all(ECHO_LINE.fullmatch(line) for line in lines), lines
    names = {line.rsplit(" ", 2)[0] for line in lines}
    assert {"threads.get", "threads.list", "threads.delete", "schema.versions"} <= names
    assert "migrations.0001_init" in names
    assert names & {"postgres.save", "postgres.save_new", "postgres.save_appended", "sqlite.save_thread",
                     "sqlite.save_new_thread", "sqlite.save_appended_thread"}
    everything = "\n".join(r.getMessage() for r in caplog.records)
    for value in (*VALUES, SECRET):
        assert value not in everything


async def test_without_echo_nothing_above_debug_is_logged_by_operations(
        sql_url: str, caplog: pytest.LogCaptureFixture) -> None:
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
    env = {"PATH": "/usr/bin:/bin", "TYLER_DB_TYPE": "sqlite", "TYLER_DB_PATH": f"{tmp_path}/e.db",
           "TYLER_DB_ECHO": "true"}
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env,
                            timeout=60, cwd=Path(__file__).resolve().parents[2])
    assert result.returncode == 0, result.stderr
    assert result.stdout == ""
    assert re.search(r"threadstore\.sql sqlite\.save_thread \d+\.\d\d ms", result.stderr), result.stderr
    assert VALUES[0] not in result.stderr
