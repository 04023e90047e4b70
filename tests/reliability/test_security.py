"""Security: no SQL text built at run time, no password in any message, log, repr or CLI
output, and the contract suite through PgBouncer in transaction pooling mode."""

from __future__ import annotations

import ast
import asyncio
import logging
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote, urlsplit, urlunsplit

import asyncpg
import pytest

from tests.helpers import conversation
from tests.reliability.support import ROOT, STRESS, create_accepts, free_port
from threadstore import ThreadStore, ThreadStoreError
from threadstore.config import parse_url

# --- no SQL built at run time --------------------------------------------------------------------

# The methods of asyncpg and aiosqlite (and sqlite3) that take SQL text first.
DRIVER_METHODS = {
    "execute",
    "executemany",
    "executescript",
    "execute_fetchall",
    "fetch",
    "fetchrow",
    "fetchval",
    "fetchmany",
    "prepare",
    "cursor",
    "copy_from_query",
}
SQL_WORDS = re.compile(
    r"\b(SELECT|INSERT|UPDATE|DELETE|CREATE|DROP|ALTER|PRAGMA|BEGIN|COMMIT|"
    r"ROLLBACK|VALUES|WHERE|FROM|JOIN|SET|INTO)\b"
)


def _is_registry_text(node: ast.expr, loop_names: set[str]) -> bool:
    """SQL that comes whole from sql/: a registry Query's ``.sql``, a Migration's ``.script``,
    or a name looping over a Migration's ``.statements``."""
    if isinstance(node, ast.Attribute):
        return node.attr in ("sql", "script")
    return isinstance(node, ast.Name) and node.id in loop_names


def _builds_text(node: ast.AST) -> bool:
    """An f-string, ``%`` or ``+`` on strings, or ``.format()``/``.join()`` of one."""
    if isinstance(node, ast.JoinedStr):
        return True
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add | ast.Mod):
        return any(
            (isinstance(side, ast.Constant) and isinstance(side.value, str)) or _builds_text(side)
            for side in (node.left, node.right)
        )
    return (
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and node.func.attr in ("format", "join")
        and isinstance(node.func.value, ast.Constant)
    )


def _literal_text(node: ast.AST) -> str:
    return " ".join(
        n.value for n in ast.walk(node) if isinstance(n, ast.Constant) and isinstance(n.value, str)
    )


def run_time_sql(source: str, filename: str) -> list[str]:
    """Where ``source`` hands a driver SQL that is not a fixed text from sql/, or builds text
    (f-string, %, +, .format, .join) that reads like SQL; "file:line: what" each."""
    tree = ast.parse(source, filename)
    loop_names = {
        target.id
        for loop in ast.walk(tree)
        if isinstance(loop, ast.For | ast.AsyncFor)
        and isinstance(loop.iter, ast.Attribute)
        and loop.iter.attr == "statements"
        for target in ast.walk(loop.target)
        if isinstance(target, ast.Name)
    }
    found = []
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr in DRIVER_METHODS
            and node.args
            and not _is_registry_text(node.args[0], loop_names)
        ):
            found.append(
                f"{filename}:{node.lineno}: {node.func.attr}() is given "
                f"{ast.unparse(node.args[0])!r}, not SQL from sql/"
            )
        if _builds_text(node) and SQL_WORDS.search(_literal_text(node)):
            found.append(f"{filename}:{node.lineno}: SQL built at run time: {ast.unparse(node)[:80]}")  # type: ignore[attr-defined]
    return found


# The pytest plugin creates and drops a PostgreSQL database per test: CREATE DATABASE takes no bind
# parameters, and the name is one the plugin generates (threadstore_fixture_ + hex), checked there.
ALLOWED = [
    ("threadstore/testing.py", text)
    for text in (
        "SQL built at run time: f'CREATE DATABASE ",
        "SQL built at run time: f'DROP DATABASE ",
        "execute() is given 'statement'",
    )
]


def test_no_sql_is_built_at_run_time_in_threadstore() -> None:
    files = sorted((ROOT / "threadstore").rglob("*.py"))
    found = [f for path in files for f in run_time_sql(path.read_text(), str(path.relative_to(ROOT)))]
    allowed = [f for f in found if any(f.startswith(path) and text in f for path, text in ALLOWED)]
    assert len(allowed) == len(ALLOWED)  # the exemption stays exactly as narrow as that
    assert [f for f in found if f not in allowed] == []
    # The scan does see the driver calls: both backends' single query runners.
    calls = sum(len(re.findall(r"\.(?:fetchrow|fetchval|execute_fetchall)\(", p.read_text())) for p in files)
    assert calls >= 4


BAD_MODULE = """
async def f(conn, table, name, rows, registry):
    await conn.execute(f"DELETE FROM {table}")
    await conn.fetch("SELECT * FROM threads WHERE id = '%s'" % name)
    await conn.fetchrow("SELECT " + name)
    await conn.execute_fetchall("SELECT {} FROM t".format(name))
    query = "UPDATE threads SET title = '" + name + "'"
    await conn.execute(query)
    await conn.executescript(";".join(rows))
    sql = f"INSERT INTO t VALUES ({name})"
    await conn.execute(registry["threads.get"].sql)
    for statement in registry.migrations[0].statements:
        await conn.execute(statement)
"""


def test_the_scan_finds_every_way_of_building_sql() -> None:
    lines = {int(f.split(":")[1]) for f in run_time_sql(BAD_MODULE, "bad.py")}
    assert lines == {3, 4, 5, 6, 7, 8, 9, 10}  # and not the fixed SQL of lines 11 and 13


# --- no password anywhere ------------------------------------------------------------------------

PASSWORD = "Pw-7f3Kq9-distinctive"
SPECIAL_PASSWORD = "p@ss:w/rd%Z#q?7-" + PASSWORD  # needs percent-encoding in a URL


def _text_of(exc: BaseException) -> str:
    """Everything a log would show of an exception: str, repr and the formatted chain."""
    return "\n".join([str(exc), repr(exc), "".join(traceback.format_exception(exc))])


def _secrets(password: str) -> list[str]:
    return [password, quote(password, safe=""), quote(password)]


def _with_password(url: str, password: str, *, port: int | None = None) -> str:
    parts = urlsplit(url)
    host = f"{parts.hostname}:{port or parts.port or 5432}"
    user = parts.username or "postgres"
    return urlunsplit(parts._replace(netloc=f"{user}:{quote(password, safe='')}@{host}"))


UNREACHABLE = "postgresql://127.0.0.1:1/db"
URLS = {
    "in_userinfo": lambda p: _with_password(UNREACHABLE, p, port=1),
    "in_query": lambda p: f"postgresql://postgres@127.0.0.1:1/db?password={quote(p, safe='')}",
    "bad_port": lambda p: f"postgresql://u:{quote(p, safe='')}@localhost:notaport/db",
    "no_host": lambda p: f"postgresql://u:{quote(p, safe='')}@/db",
    "unknown_scheme": lambda p: f"mysql://u:{quote(p, safe='')}@localhost/db",
    "bad_sslmode": lambda p: f"postgresql://u:{quote(p, safe='')}@127.0.0.1:1/db?sslmode=bogus",
}


@pytest.mark.parametrize("password", [PASSWORD, SPECIAL_PASSWORD], ids=["plain", "special"])
@pytest.mark.parametrize("form", URLS)
async def test_no_password_in_errors_reprs_or_logs_of_a_failing_store(
    form: str,
    password: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    url = URLS[form](password)
    seen: list[str] = []
    caplog.set_level(logging.DEBUG)
    try:
        config = parse_url(url)
    except ThreadStoreError as exc:
        seen.append(_text_of(exc))
    else:
        seen += [repr(config), str(config), str(config.masked_url)]
        store = ThreadStore(url)
        seen += [repr(store), str(store.database_url)]
        for attempt in (ThreadStore.create(url), store.get("t"), store.save(conversation("x"))):
            try:
                await attempt
            except ThreadStoreError as exc:
                seen.append(_text_of(exc))
            else:
                pytest.fail(f"{form}: the store worked on an unreachable server")
        seen.append(repr(store))
        await store.close()
    seen += [record.getMessage() for record in caplog.records]
    seen += ["".join(traceback.format_exception(*r.exc_info)) for r in caplog.records if r.exc_info]
    for secret in _secrets(password):
        assert not [text for text in seen if secret in text], f"{form}: the password leaked"


KILL_STORE_SESSIONS = """
SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
 WHERE datname = current_database() AND pid <> pg_backend_pid() AND application_name = 'threadstore'
"""


@pytest.mark.pg
async def test_no_password_in_the_errors_of_a_connected_store_losing_its_connections(
    fresh_pg_url: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    url = _with_password(fresh_pg_url, SPECIAL_PASSWORD)  # the test server trusts local connections
    caplog.set_level(logging.DEBUG)
    seen = []
    admin = await asyncpg.connect(fresh_pg_url)
    try:
        async with await ThreadStore.create(url) as store:
            seen.append(repr(store))
            for _ in range(20):  # until an operation meets a killed session
                await asyncio.gather(*[store.save(conversation("x")) for _ in range(5)])
                await admin.fetchval(KILL_STORE_SESSIONS)
                try:
                    await store.append("missing", *conversation("y").messages)
                except ThreadStoreError as exc:
                    seen.append(_text_of(exc))
                    if "unavailable" in str(exc):
                        break
    finally:
        await admin.close()
    assert any("unavailable" in text for text in seen), "no connection error was provoked"
    seen += [record.getMessage() for record in caplog.records]
    for secret in _secrets(SPECIAL_PASSWORD):
        assert not [text for text in seen if secret in text]


def test_no_password_in_the_output_of_the_command_line() -> None:
    url = _with_password(UNREACHABLE, SPECIAL_PASSWORD, port=1)
    done = subprocess.run(
        [sys.executable, "-m", "threadstore.quickstart", url],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode != 0
    assert "StoreUnavailableError" in done.stderr
    for secret in _secrets(SPECIAL_PASSWORD):
        assert secret not in done.stdout + done.stderr


# --- PgBouncer in transaction pooling mode ---------------------------------------------------------


@pytest.fixture
def pgbouncer(pg_server: str) -> Iterator[str]:
    """A PgBouncer in transaction pooling mode in front of the test server (Debian's package,
    configured as it comes: no ignore_startup_parameters); yields the server URL through it."""
    binary = shutil.which("pgbouncer") or "/usr/sbin/pgbouncer"
    if not Path(binary).exists():
        pytest.skip("pgbouncer is not installed (apt-get install pgbouncer; .ci/run does)")
    if not create_accepts("statement_cache_size"):
        pytest.skip(
            "needs create(statement_cache_size=...) / THREADSTORE_DB_STATEMENT_CACHE_SIZE "
            "(issue 5): PgBouncer's transaction pooling cannot keep prepared statements"
        )
    server = urlsplit(pg_server)
    directory = Path(tempfile.mkdtemp(prefix="threadstore-pgbouncer-"))
    port = free_port()
    (directory / "users.txt").write_text(f'"{server.username or "postgres"}" ""\n')
    (directory / "pgbouncer.ini").write_text(f"""
[databases]
* = host={server.hostname} port={server.port or 5432}
[pgbouncer]
listen_addr = 127.0.0.1
listen_port = {port}
unix_socket_dir =
auth_type = trust
auth_file = {directory}/users.txt
pool_mode = transaction
max_client_conn = 500
default_pool_size = 20
logfile = {directory}/pgbouncer.log
""")
    command = [binary, str(directory / "pgbouncer.ini")]
    if os.geteuid() == 0:  # pgbouncer refuses to run as root
        shutil.chown(directory, "postgres")
        for path in directory.iterdir():
            shutil.chown(path, "postgres")
        command[1:1] = ["-u", "postgres"]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        for _ in range(100):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                time.sleep(0.05)
        else:
            pytest.fail(f"pgbouncer did not start: {(directory / 'pgbouncer.log').read_text()}")
        yield urlunsplit(server._replace(netloc=f"{server.username or 'postgres'}@127.0.0.1:{port}"))
    finally:
        process.terminate()
        process.wait(timeout=30)
        shutil.rmtree(directory, ignore_errors=True)


@pytest.mark.pg
def test_the_contract_suite_passes_through_pgbouncer_in_transaction_pooling_mode(pgbouncer: str) -> None:
    # `make test` runs the concurrency part of the contract suite (where pooling matters most),
    # `make stress` all of it.
    target = "tests/contract" if STRESS else "tests/contract/test_concurrency.py"
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-m", "pg", "-p", "no:cacheprovider", target],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=1800,
        env={
            **os.environ,
            "THREADSTORE_TEST_PG_URL": pgbouncer,
            "THREADSTORE_REQUIRE_PG": "1",
            "THREADSTORE_DB_STATEMENT_CACHE_SIZE": "0",
        },
    )
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    assert " passed" in done.stdout and "skipped" not in done.stdout.splitlines()[-1]
