"""threadstore.testing, the pytest plugin for users' tests, run as a user runs it: pytest in a
subprocess on a test file of its own. A fresh store per test: in memory by default, or a database
of its own on THREADSTORE_TEST_URL (PostgreSQL, SQLite), gone after the test."""

from __future__ import annotations

import asyncio
import importlib.metadata
import os
import subprocess
import sys
import textwrap
import tomllib
from pathlib import Path

import pytest

from threadstore.testing import DATABASE_PREFIX

ROOT = Path(__file__).resolve().parents[2]

USER_TESTS = textwrap.dedent("""
    import asyncio

    import pytest

    from threadstore import Thread


    @pytest.mark.parametrize("n", [1, 2])
    def test_a_fresh_store_each_time_with_asyncio_run(thread_store, n):
        async def main():
            assert await thread_store.list() == []
            await thread_store.save(Thread(id=f"t{n}"))
            assert [t.id for t in await thread_store.list()] == [f"t{n}"]
            print(f"backend={thread_store.backend}")
            await thread_store.close()

        asyncio.run(main())


    @pytest.mark.asyncio
    async def test_in_pytest_asyncios_loop_and_left_open(thread_store, thread_store_url):
        assert (await thread_store.get_usage_stats())["total_threads"] == 0
        await thread_store.save(Thread(id="open"))
        assert (await thread_store.get("open")) is not None
""")


def _entry_point_installed() -> bool:
    return bool(importlib.metadata.entry_points(group="pytest11", name="threadstore"))


def run_user_tests(tmp_path: Path, url: str | None) -> subprocess.CompletedProcess[str]:
    (tmp_path / "test_user.py").write_text(USER_TESTS)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("THREADSTORE_", "TYLER_", "NARRATOR_"))}
    if url is not None:
        env["THREADSTORE_TEST_URL"] = url
    # Once threadstore is installed from this tree its entry point loads the plugin; before that
    # (an editable install made before the entry point existed) it is named here.
    plugin = [] if _entry_point_installed() else ["-p", "threadstore.testing"]
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            *plugin,
            "-p",
            "no:cacheprovider",
            "-s",
            "-q",
            "-W",
            "error::pytest.PytestUnraisableExceptionWarning",
            "test_user.py",
        ],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=env,
        timeout=120,
    )


def test_the_plugin_is_registered_under_pytest11() -> None:
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert pyproject["project"]["entry-points"]["pytest11"] == {"threadstore": "threadstore.testing"}


def test_thread_store_is_a_fresh_in_memory_store_by_default(tmp_path: Path) -> None:
    result = run_user_tests(tmp_path, None)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "3 passed" in result.stdout
    assert result.stdout.count("backend=memory") == 2


def test_thread_store_on_sqlite_is_a_new_file_deleted_after_the_test(tmp_path: Path) -> None:
    databases = tmp_path / "databases"
    databases.mkdir()
    result = run_user_tests(tmp_path, f"sqlite+aiosqlite:///{databases}/tests.db")
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count("backend=sqlite") == 2
    assert list(databases.iterdir()) == []


async def _fixture_databases(server: str) -> set[str]:
    import asyncpg

    conn = await asyncpg.connect(server)
    try:
        rows = await conn.fetch(
            "SELECT datname FROM pg_database WHERE starts_with(datname, $1)", DATABASE_PREFIX
        )
    finally:
        await conn.close()
    return {row["datname"] for row in rows}


def test_thread_store_on_postgres_is_a_database_of_its_own_dropped_after(
    tmp_path: Path, pg_server: str
) -> None:
    before = asyncio.run(_fixture_databases(pg_server))
    result = run_user_tests(tmp_path, pg_server)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count("backend=postgres") == 2
    assert asyncio.run(_fixture_databases(pg_server)) <= before  # every one dropped


def test_a_bad_url_fails_the_test_naming_it(tmp_path: Path) -> None:
    result = run_user_tests(tmp_path, "mysql://nowhere/db")
    assert result.returncode == 1
    assert "unknown database URL scheme 'mysql'" in result.stdout


def test_the_fixture_runs_no_statement_but_its_own_create_and_drop() -> None:
    from threadstore.testing import _admin

    for statement in ('DROP DATABASE "postgres"', 'CREATE DATABASE "threadstore_fixture_x"; DROP TABLE t'):
        with pytest.raises(ValueError, match="not a statement of the thread_store fixture"):
            asyncio.run(_admin("postgresql://nobody@127.0.0.1:1/db", statement))


LEFT_OPEN = textwrap.dedent("""
    import asyncio

    import pytest

    from threadstore import Thread


    @pytest.mark.parametrize("n", [1, 2])
    def test_with_asyncio_run_left_open(thread_store, n):
        async def main():
            await thread_store.save(Thread(id=f"t{n}"))
            assert [t.id for t in await thread_store.list()] == [f"t{n}"]

        asyncio.run(main())


    async def test_in_pytest_asyncios_loop_left_open(thread_store):
        await thread_store.save(Thread(id="open"))


    @pytest.mark.asyncio(loop_scope="session")
    @pytest.mark.parametrize("n", [1, 2, 3])
    async def test_in_a_session_scoped_loop_left_open(thread_store, n):
        await thread_store.save(Thread(id=f"s{n}"))
        assert len(await thread_store.list()) == 1
""")


@pytest.mark.parametrize("backend", ["memory", "sqlite", "postgres"])
def test_the_fixture_never_closed_its_store_and_failed_under_w_error(
    tmp_path: Path, backend: str, request: pytest.FixtureRequest
) -> None:
    """Issue 30 item 15: the fixture left its store open, so under ``-W error`` SQLite runs
    exited 1 (ResourceWarning as unraisable exceptions), on PostgreSQL later tests failed, and
    a session-scoped loop gave one ResourceWarning per test. It closes the store at teardown, in
    the store's loop, or quietly when that loop ended first."""
    url = None
    if backend == "sqlite":
        (tmp_path / "databases").mkdir()
        url = f"sqlite+aiosqlite:///{tmp_path}/databases/tests.db"
    elif backend == "postgres":
        url = request.getfixturevalue("pg_server")
    (tmp_path / "test_left_open.py").write_text(LEFT_OPEN)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("THREADSTORE_", "TYLER_", "NARRATOR_"))}
    if url is not None:
        env["THREADSTORE_TEST_URL"] = url
    plugin = [] if _entry_point_installed() else ["-p", "threadstore.testing"]
    result = subprocess.run(
        [
            *(sys.executable, "-X", "dev", "-m", "pytest", *plugin, "-p", "no:cacheprovider", "-q"),
            *("-p", "no:randomly", "-W", "error", "-o", "asyncio_mode=auto"),
            *("-o", "asyncio_default_fixture_loop_scope=function", "test_left_open.py"),
        ],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=env,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "6 passed" in result.stdout
    assert "ResourceWarning" not in result.stdout + result.stderr
    if backend == "sqlite":
        assert list((tmp_path / "databases").iterdir()) == []
