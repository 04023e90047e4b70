"""The ``threadstore`` command, run as a subprocess as a user runs it (and in-process where only
argument handling is checked): init, migrate, status, export/import, copy, docker-setup/stop."""

from __future__ import annotations

import asyncio
import importlib.metadata
import io
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest

import threadstore
from tests.helpers import everything, rich_thread, user
from threadstore import Message, Role, Thread, ThreadStore, cli
from threadstore.config import PREFIXES
from threadstore.queries import load
from threadstore.transfer import AliasRecord, Progress, ThreadRecord, read_lines

SECRET = "s3cr3t-pw"


def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """``threadstore ARGS`` in a fresh interpreter, without any THREADSTORE_/TYLER_/NARRATOR_
    variable of the test run's environment."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith(PREFIXES)}
    return subprocess.run(
        [sys.executable, "-m", "threadstore", *args],
        capture_output=True,
        text=True,
        env={**clean, **(env or {})},
        timeout=300,
    )


def one_error_line(result: subprocess.CompletedProcess[str], command: str) -> str:
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"threadstore {command}: error: "), result.stderr
    return lines[0]


@pytest.fixture(params=["sqlite", "postgres"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path}/cli.db"
    url: str = request.getfixturevalue("fresh_pg_url")
    return url


def test_status_migrate_and_init_on_a_new_database(db_url: str) -> None:
    dialect = "postgres" if db_url.startswith("postgres") else "sqlite"
    if dialect == "sqlite":  # an empty file is an empty SQLite database; no file is an error
        missing = run("status", db_url)
        assert missing.returncode == 1
        assert "there is no SQLite database at" in one_error_line(missing, "status")
        Path(db_url.partition(":///")[2]).touch()
    names = [f"{m.version:04d}_{m.name}" for m in load(dialect).migrations]

    status = run("status", db_url)
    assert status.returncode == 0, status.stderr
    assert re.search(r"^schema: +none \(run `threadstore init`\)$", status.stdout, re.M), status.stdout
    assert f"backend:  {dialect}" in status.stdout
    assert re.search(r"^ping: +\d+\.\d ms$", status.stdout, re.M), status.stdout  # store.ping()

    dry = run("migrate", db_url, "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert dry.stdout.splitlines() == [
        *(f"pending: {n}" for n in names),
        f"dry run: {len(names)} migration(s) not applied",
    ]

    init = run("init", db_url)
    assert init.returncode == 0, init.stderr
    assert init.stdout.strip().endswith(f"schema at version {len(names)} (applied {', '.join(names)})")

    async def add() -> None:
        async with await ThreadStore.create(db_url) as store:
            thread = Thread(title="t")
            thread.add_message(user("a"))
            thread.add_message(user("b"))
            await store.save(thread)

    asyncio.run(add())
    status = run("status", db_url)
    assert status.returncode == 0, status.stderr
    assert re.search(rf"^schema: +version {len(names)} \(up to date\)$", status.stdout, re.M)
    assert re.search(r"^threads: +1$", status.stdout, re.M)
    assert re.search(r"^messages: +2$", status.stdout, re.M)

    again = run("migrate", db_url)
    assert again.returncode == 0 and "nothing to migrate" in again.stdout


def test_status_of_an_unreachable_database_fails_with_the_password_masked() -> None:
    url = f"postgresql://user:{SECRET}@127.0.0.1:1/db"
    for result in (run("status", url), run("status", env={"THREADSTORE_DATABASE_URL": url})):
        assert result.returncode == 1
        line = one_error_line(result, "status")
        assert "cannot connect to PostgreSQL at postgresql://user:***@127.0.0.1:1/db" in line
        assert SECRET not in result.stdout + result.stderr


def test_the_url_comes_from_the_tyler_environment_too(tmp_path: Path) -> None:
    env = {"TYLER_DB_TYPE": "sqlite", "TYLER_DB_PATH": f"{tmp_path}/env.db"}
    init = run("init", env=env)
    assert init.returncode == 0, init.stderr
    assert init.stdout.startswith(f"sqlite+aiosqlite:///{tmp_path}/env.db: schema at version")


def test_export_then_import_round_trip_is_equal_on_every_field(tmp_path: Path, fresh_pg_url: str) -> None:
    source = f"sqlite+aiosqlite:///{tmp_path}/source.db"

    async def fill() -> None:
        async with await ThreadStore.create(source) as store:
            for i in range(12):
                thread = await store.save(rich_thread(f"{i:02d}", messages=5))
                await store.save_thread_alias(thread.id, f"ticket-{i}")
                await store.save_thread_alias(thread.id, f"slack-{i}")

    asyncio.run(fill())
    file = tmp_path / "threads.jsonl"
    exported = run("export", source, str(file))
    assert exported.returncode == 0, exported.stderr
    assert exported.stdout.strip() == f"exported 12 threads to {file}"
    assert len(file.read_bytes().splitlines()) == 12

    imported = run("import", fresh_pg_url, str(file))
    assert imported.returncode == 0, imported.stderr
    assert imported.stdout.strip() == "imported 12 threads (0 already there)"
    again = run("import", fresh_pg_url, str(file))
    assert again.stdout.strip() == "imported 0 threads (12 already there)"

    originals = asyncio.run(everything(source))
    assert asyncio.run(everything(fresh_pg_url)) == originals  # ids, times, sequences, aliases
    # the PostgreSQL copy exports to standard output the same records (JSON key order aside)
    piped = run("export", fresh_pg_url)
    assert piped.returncode == 0 and piped.stderr == ""
    assert [r for batch in read_lines(io.BytesIO(piped.stdout.encode())) for r in batch] == originals


def test_a_bad_line_fails_the_import_naming_the_line(tmp_path: Path) -> None:
    file = tmp_path / "bad.jsonl"
    file.write_text('{"id": "fine"}\n\n{"id": "x", "messages": [{"role": "robot"}]}\n')
    result = run("import", f"sqlite+aiosqlite:///{tmp_path}/t.db", str(file))
    assert result.returncode == 1
    assert "line 3: not a thread record: Message.role must be one of" in one_error_line(result, "import")


async def _source_of(count: int, path: Path) -> str:
    """A SQLite database of ``count`` threads of 3 messages, each with an alias."""
    url = f"sqlite+aiosqlite:///{path}"
    async with await ThreadStore.create(url) as store:
        records = []
        for i in range(count):
            thread = ThreadRecord(
                id=f"t-{i:05d}",
                title=f"thread {i}",
                attributes={"i": i},
                aliases=[AliasRecord(f"alias-{i}", Thread().created_at)],
            )
            for j in range(3):
                role: Role = "user" if j % 2 == 0 else "assistant"
                thread.add_message(Message(role=role, content=f"{i}/{j}"))
            records.append(thread)
        await store.import_threads(records)
    return url


async def test_copy_of_1000_threads_with_aliases_interrupted_by_ctrl_c_resumes(
    tmp_path: Path, fresh_pg_url: str
) -> None:
    """The copy is held on a row lock at thread 600 (an uncommitted insert of that id), so it is
    interrupted there for sure; run again, it copies the rest."""
    import asyncpg

    source = await _source_of(1000, tmp_path / "source.db")
    originals = await everything(source)
    async with await ThreadStore.create(fresh_pg_url):
        pass  # the schema
    # The watcher is another connection: pg_stat_activity is a snapshot within a transaction.
    holder, watcher = await asyncpg.connect(fresh_pg_url), await asyncpg.connect(fresh_pg_url)
    held = holder.transaction()
    try:
        await held.start()
        await holder.execute(
            "INSERT INTO threads (id, title, created_at, updated_at) VALUES ($1, 'held', now(), now())",
            originals[600].id,
        )
        env = {k: v for k, v in os.environ.items() if not k.startswith(PREFIXES)}
        copy = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "threadstore",
            "copy",
            source,
            fresh_pg_url,
            env=env,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        waiting = 0
        for _ in range(1200):  # until the copy waits on the held row
            waiting = await watcher.fetchval(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                "AND wait_event_type = 'Lock'"
            )
            if waiting or copy.returncode is not None:
                break
            await asyncio.sleep(0.05)
        copy.send_signal(signal.SIGINT)
        _, err = await asyncio.wait_for(copy.communicate(), 60)
        assert waiting, f"the copy never reached the held thread: {err.decode()}"
    finally:
        await held.rollback()
        await holder.close()
        await watcher.close()
    assert copy.returncode == 130, err
    assert err.decode() == (
        "threadstore copy: error: interrupted; run the same command again to "
        "finish (what is stored is kept)\n"
    )
    partial = await everything(fresh_pg_url)
    # Usually the pages before the held thread are in; on a loaded machine the signal can land
    # while they are still in flight, and they are rolled back with the rest.
    assert len(partial) < 1000 and originals[600].id not in {r.id for r in partial}
    by_id = {r.id: r for r in originals}
    assert all(r == by_id[r.id] for r in partial)  # whole threads, each page written atomically

    resumed = await asyncio.to_thread(run, "copy", source, fresh_pg_url)
    assert resumed.returncode == 0, resumed.stderr
    # no progress bar, standard error is not a terminal: at most plain lines every few seconds
    assert _only_progress_lines(resumed.stderr, "copied")
    summary = r"copied ([\d,]+) threads \(([\d,]+) already there\) in [\d.]+ s, [\d,]+ threads/s\n"
    match = re.fullmatch(summary, resumed.stdout)
    assert match is not None, resumed.stdout
    copied, present = (int(g.replace(",", "")) for g in match.groups())
    assert (copied, present) == (1000 - len(partial), len(partial))
    assert await everything(fresh_pg_url) == originals


def _docker_answers() -> bool:
    if shutil.which("docker") is None:
        return False
    return subprocess.run(["docker", "info"], capture_output=True, timeout=30).returncode == 0


def test_docker_commands_without_a_docker_engine_say_so_and_fail() -> None:
    if _docker_answers():
        pytest.skip("a Docker engine answers here")
    for command in ("docker-setup", "docker-stop"):
        result = run(command)
        assert result.returncode == 1
        line = one_error_line(result, command)
        assert "Docker" in line and ("no Docker engine answers" in line or "not installed" in line)


def test_docker_setup_starts_postgres_and_docker_stop_removes_it() -> None:
    if not _docker_answers():
        pytest.skip("no Docker engine answers here")
    name = f"threadstore-test-{os.getpid()}"
    args = ("--name", name, "--volume", f"{name}-data")
    setup = run("docker-setup", *args, "--port", "55432")
    try:
        assert setup.returncode == 0, setup.stderr
        url = setup.stdout.strip()
        assert url == "postgresql+asyncpg://threadstore:threadstore_dev@localhost:55432/threadstore"
        status = run("status", url)
        assert status.returncode == 0 and "backend:  postgres" in status.stdout
    finally:
        stop = run("docker-stop", *args, "--remove-volumes")
    assert stop.returncode == 0, stop.stderr


# --- read-only commands leave a SQLite file byte-for-byte as it was ------------------------------


def _sqlite_at(path: Path, state: str) -> str:
    """A SQLite database in ``state``: "empty" (a 0-byte file), "version 3" (migrations 1-3 and
    a thread, rollback journal), "current" (every migration, rollback journal) or "current wal"
    (as a store leaves it: WAL)."""
    import sqlite3

    url = f"sqlite+aiosqlite:///{path}"
    if state == "current wal":

        async def fill() -> None:
            async with await ThreadStore.create(url) as store:
                thread = Thread(id="t", title="kept")
                thread.add_message(user("a"))
                await store.save(thread)
                await store.save_thread_alias("t", "alias")

        asyncio.run(fill())
        return url
    conn = sqlite3.connect(path)
    if state != "empty":
        registry = load("sqlite")
        conn.execute(registry["schema.create_ledger"].sql)
        for migration in registry.migrations:
            if state == "current" or migration.version <= 3:
                conn.executescript(migration.script)
                conn.execute(
                    "INSERT INTO threadstore_migrations VALUES (?, ?, '2024-01-01T00:00:00Z')",
                    (migration.version, migration.name),
                )
        conn.execute(
            "INSERT INTO threads (id, title, attributes, platforms, created_at, updated_at) "
            "VALUES ('t', 'kept', '{}', '{}', '2024-01-01T00:00:00.000000+00:00', "
            "'2024-01-01T00:00:00.000000+00:00')"
        )
        conn.commit()
    conn.close()
    return url


def _files(directory: Path) -> dict[str, bytes]:
    return {path.name: path.read_bytes() for path in sorted(directory.iterdir())}


READ_ONLY_COMMANDS = {  # name -> (arguments, whether it succeeds on a current database)
    "status": (["status", "{url}"], True),
    "migrate --dry-run": (["migrate", "{url}", "--dry-run"], True),
    "export to a file": (["export", "{url}", "{out}/threads.jsonl"], True),
    "export to stdout": (["export", "{url}"], True),
    "files gc": (["files", "gc", "{url}", "{out}", "--min-age", "0"], True),
    "copy from it": (["copy", "{url}", "sqlite+aiosqlite:///{out}/copy.db"], True),
}


@pytest.mark.parametrize("state", ["empty", "version 3", "current", "current wal"])
@pytest.mark.parametrize("command", list(READ_ONLY_COMMANDS))
def test_a_read_only_command_leaves_the_sqlite_file_byte_for_byte(
    tmp_path: Path, command: str, state: str
) -> None:
    database, out = tmp_path / "db", tmp_path / "out"
    database.mkdir()
    out.mkdir()
    url = _sqlite_at(database / "threads.db", state)
    before = _files(database)
    assert list(before) == ["threads.db"]
    args, succeeds_when_current = READ_ONLY_COMMANDS[command]
    result = run(*(arg.format(url=url, out=out) for arg in args))
    succeeded = state.startswith("current") and succeeds_when_current
    refused_by_schema = command.startswith(("export", "files", "copy"))
    assert result.returncode == (0 if succeeded or not refused_by_schema else 1), result.stderr
    assert _files(database) == before, f"{command} changed the {state} database's directory"
    if not succeeded and command == "copy from it":
        assert list(out.iterdir()) == []  # refused before the target was even created


def test_copy_into_a_newer_target_is_refused_before_anything_is_written(tmp_path: Path) -> None:
    source = _sqlite_at(tmp_path / "source.db", "current wal")
    target = _sqlite_at(tmp_path / "target.db", "version 3")
    import sqlite3

    conn = sqlite3.connect(tmp_path / "target.db")
    conn.execute("INSERT INTO threadstore_migrations VALUES (99, 'from_the_future', '2030-01-01T00:00:00Z')")
    conn.commit()
    conn.close()
    before = _files(tmp_path)
    result = run("copy", source, target)
    assert result.returncode == 1
    assert "99" in one_error_line(result, "copy")
    assert _files(tmp_path) == before


def test_copy_from_a_source_needing_migrations_leaves_both_as_they_were(tmp_path: Path) -> None:
    source = _sqlite_at(tmp_path / "source.db", "version 3")
    target = _sqlite_at(tmp_path / "target.db", "empty")
    before = _files(tmp_path)
    result = run("copy", source, target)
    assert result.returncode == 1
    assert "needs migrations" in one_error_line(result, "copy")
    assert _files(tmp_path) == before  # the target was not migrated


# --- in-process: arguments, exit codes, progress -------------------------------------------------


def test_the_console_script_is_installed() -> None:
    script = Path(sys.executable).parent / "threadstore"
    result = subprocess.run([str(script), "--help"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0
    for command in ("init", "migrate", "status", "docker-setup", "docker-stop", "export", "import", "copy"):
        assert command in result.stdout


def test_version_is_the_package_metadata_one() -> None:
    pyproject = tomllib.loads((Path(__file__).resolve().parents[2] / "pyproject.toml").read_text())
    installed = importlib.metadata.version("threadstore")
    assert installed == pyproject["project"]["version"] == threadstore.__version__
    result = run("--version")
    assert (result.returncode, result.stdout, result.stderr) == (0, f"threadstore {installed}\n", "")


@pytest.fixture
def clean_environ(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name in list(os.environ):
        if name.startswith(PREFIXES):
            monkeypatch.delenv(name)
    return monkeypatch


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        ([], "threadstore: error: the following arguments are required: COMMAND"),
        (["migrate", "--bogus"], "threadstore: error: unrecognized arguments: --bogus"),
        (["copy", "sqlite:///a.db"], "threadstore copy: error: the following arguments are required: TO_URL"),
        (["status"], "threadstore status: error: no database given: pass a URL, or set THREADSTORE_"),
        (["status", "memory://"], "threadstore status: error: 'memory://' is an in-memory store"),
        (["status", "mysql://u:pw@h/db"], "threadstore status: error: unknown database URL scheme 'mysql'"),
        (["export", "a.jsonl", "b.jsonl"], "threadstore export: error: 'a.jsonl' is not a database URL"),
        (["copy", "--page-size", "0", "sqlite:///a", "sqlite:///b"], "expected a whole number of at least 1"),
    ],
)
def test_usage_errors_are_one_line_with_exit_code_2(
    argv: list[str], message: str, clean_environ: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err
    assert "pw@" not in err


def test_a_missing_docker_command_is_named(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    assert cli.main(["docker-setup"]) == 1
    assert "error: Docker is not installed (no `docker` command on PATH)" in capsys.readouterr().err


def test_an_interrupted_copy_exits_130_saying_how_to_resume(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    async def interrupted(args: Any) -> int:
        raise KeyboardInterrupt

    monkeypatch.setattr(cli, "_copy", interrupted)
    assert cli.main(["copy", "sqlite:///a.db", "sqlite:///b.db"]) == 130
    assert capsys.readouterr().err == (
        "threadstore copy: error: interrupted; run the same command again "
        "to finish (what is stored is kept)\n"
    )


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_shows_on_a_terminal_only() -> None:
    terminal, pipe = _Terminal(), io.StringIO()
    for stream in (terminal, pipe):
        progress = Progress(400, stream)
        progress.update(200)
        progress.update(400)
        progress.close()
    assert pipe.getvalue() == ""
    assert re.fullmatch(r"(\rcopied [\d,]+ / 400 threads \(\d+%\), [\d,]+ threads/s)+\n", terminal.getvalue())
    assert "copied 400 / 400 threads (100%)" in terminal.getvalue()


def test_files_gc_frees_only_unreferenced_files(db_url: str, tmp_path: Path) -> None:
    from threadstore import FileStore

    base = tmp_path / "files"

    async def prepare() -> tuple[str, str]:
        files = await FileStore.create(base)
        async with await ThreadStore.create(db_url) as store:
            await store.delete_many([t.id for t in await store.list_recent()])
            thread = Thread()
            message = user("see attached")
            message.add_attachment(b"kept bytes", filename="kept.txt")
            thread.add_message(message)
            await store.save(thread, file_store=files)
        orphan = await files.save(b"orphan bytes", "orphan.txt")
        kept = thread.messages[0].attachments[0].storage_path
        assert kept is not None
        return kept, orphan["storage_path"]

    kept, orphan = asyncio.run(prepare())
    young = run("files", "gc", db_url, str(base))  # default --min-age: both files are too new
    assert young.returncode == 0, young.stderr
    assert young.stdout.splitlines() == ["freed 0 files, 0 bytes"]

    result = run("files", "gc", db_url, str(base), "--min-age", "0")
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [f"freed {orphan} (12 bytes)", "freed 1 files, 12 bytes"]
    assert (base / kept).exists() and not (base / orphan).exists()

    missing = run("files", "gc", db_url, str(tmp_path / "nowhere"))
    assert missing.returncode == 1 and "no FileStore directory" in one_error_line(missing, "files")
    negative = run("files", "gc", db_url, str(base), "--min-age", "-1")
    assert negative.returncode == 2


async def _threads_of_ages(url: str) -> None:
    """Three threads last updated 100 days ago (two of team a), one updated now."""
    from datetime import UTC, datetime, timedelta

    old = datetime.now(UTC) - timedelta(days=100)
    async with await ThreadStore.create(url) as store:
        for thread_id, team, updated_at in [
            ("a1", "a", old),
            ("a2", "a", old),
            ("b1", "b", old),
            ("new", "a", None),
        ]:
            thread = Thread(id=thread_id, attributes={"team": team, "n": 1})
            thread.add_message(user(f"in {thread_id}"))
            if updated_at is not None:
                thread.updated_at = updated_at
            await store.save(thread)
        await store.save_thread_alias("a1", "alias-a1")


async def _thread_ids(url: str) -> list[str]:
    async with await ThreadStore.create(url) as store:
        return sorted(t.id for t in await store.list_recent())


def test_prune_deletes_old_threads_and_dry_run_only_counts(db_url: str) -> None:
    asyncio.run(_threads_of_ages(db_url))

    dry = run("prune", db_url, "--older-than", "90d", "--attribute", "team=a", "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert dry.stdout == "dry run: 2 threads not updated for 90 days would be deleted\n"
    assert asyncio.run(_thread_ids(db_url)) == ["a1", "a2", "b1", "new"]

    none = run("prune", db_url, "--older-than", "101d")
    assert none.returncode == 0, none.stderr
    assert none.stdout.startswith("deleted 0 threads")

    team = run(
        "prune",
        db_url,
        "--older-than",
        "90d",
        "--attribute",
        "team=a",
        "--attribute",
        "n=1",
        "--batch-size",
        "1",
    )
    assert team.returncode == 0, team.stderr
    assert team.stdout == "deleted 2 threads not updated for 90 days\n"
    assert team.stderr == ""  # no progress off a terminal
    assert asyncio.run(_thread_ids(db_url)) == ["b1", "new"]

    every = run("prune", db_url, "--older-than", "2w")
    assert every.returncode == 0, every.stderr
    assert every.stdout == "deleted 1 threads not updated for 14 days\n"
    assert asyncio.run(_thread_ids(db_url)) == ["new"]


def test_prune_shows_progress_on_a_terminal(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path}/prune.db"
    asyncio.run(_threads_of_ages(url))
    terminal = _Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)

    assert cli.main(["prune", url, "--older-than", "90d", "--batch-size", "2"]) == 0

    assert capsys.readouterr().out.startswith("deleted 3 threads")
    assert re.fullmatch(r"(\rdeleted [\d,]+ / 3 threads \(\d+%\), [\d,]+ threads/s)+\n", terminal.getvalue())
    assert "deleted 3 / 3 threads (100%)" in terminal.getvalue()


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["prune", "sqlite:///a.db"], "the following arguments are required: --older-than"),
        (["prune", "sqlite:///a.db", "--older-than", "90"], "expected a whole number and a unit"),
        (["prune", "sqlite:///a.db", "--older-than=-3d"], "expected a whole number and a unit"),
        (["prune", "sqlite:///a.db", "--older-than", "3y"], "expected a whole number and a unit"),
        (["prune", "sqlite:///a.db", "--older-than", "d"], "expected a whole number and a unit"),
        (["prune", "sqlite:///a.db", "--older-than", "6M"], "expected a whole number and a unit"),
        (
            ["prune", "sqlite:///a.db", "--older-than", "6m"],
            "'6m' is ambiguous: write 6min for minutes or 6mo",
        ),
        (["prune", "sqlite:///a.db", "--older-than", "0d"], "'0d' is no age: it would delete every thread"),
        (["prune", "sqlite:///a.db", "--older-than", "000min"], "'000min' is no age"),
        (["prune", "sqlite:///a.db", "--older-than", "0s", "--dry-run"], "'0s' is no age"),
        (["prune", "sqlite:///a.db", "--older-than", "1d", "--attribute", "team"], "expected key=value"),
    ],
)
def test_prune_usage_errors(
    argv: list[str], message: str, clean_environ: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err


# -- import: what a bad line leaves, line numbers, ids, a BOM (issue 30 item 16) -------------------


def _import(
    url: str, lines: list[str], path: Path, capsys: pytest.CaptureFixture[str], prefix: bytes = b""
) -> str:
    """Run ``threadstore import`` in-process; returns its one error line ("" on success)."""
    file = path / "in.jsonl"
    file.write_bytes(prefix + "".join(line + "\n" for line in lines).encode())
    code = cli.main(["import", url, str(file)])
    err = capsys.readouterr().err
    assert (code == 0) == (err == ""), err
    return err


def _ids(url: str) -> list[str]:
    async def ids() -> list[str]:
        async with await ThreadStore.create(url) as store:
            return sorted(t.id for t in await store.list_recent())

    return asyncio.run(ids())


def _line(i: int, **fields: Any) -> str:
    return json.dumps({"id": f"t{i:02d}", "messages": [{"role": "user", "content": f"hi {i}"}], **fields})


def test_import_keeps_the_good_lines_before_a_truncated_one(
    db_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """10 good lines and a truncated 11th imported 0 threads: the page of 200 was lost whole."""
    lines = [_line(i) for i in range(10)] + [_line(10)[:25]]
    assert "line 11: not a thread record" in _import(db_url, lines, tmp_path, capsys)
    assert _ids(db_url) == [f"t{i:02d}" for i in range(10)]


def test_import_names_the_line_of_an_invalid_value_or_a_conflict_and_keeps_those_before(
    db_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad_sequence = _line(4, messages=[{"role": "user", "content": "x", "sequence": 0}])
    err = _import(db_url, [_line(i) for i in range(4)] + [bad_sequence, _line(5)], tmp_path, capsys)
    assert "error: line 5: " in err and "sequence" in err, err
    assert _ids(db_url) == ["t00", "t01", "t02", "t03"]
    message = {"id": "m-shared", "role": "user", "content": "x"}
    lines = [_line(10, messages=[message]), _line(11), _line(12, messages=[message])]
    err = _import(db_url, lines, tmp_path, capsys)
    assert "error: line 3: " in err, err
    assert "t11" in _ids(db_url) and "t12" not in _ids(db_url)


def test_import_of_lines_without_an_id_twice_changes_nothing(
    db_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Lines without an id got a new id on every run: importing again stored them again."""
    lines = ['{"title": "a", "messages": [{"role": "user", "content": "one"}]}', '{"title": "b"}']
    assert _import(db_url, lines, tmp_path, capsys) == ""
    first = _ids(db_url)
    assert len(first) == 2
    assert _import(db_url, lines, tmp_path, capsys) == ""
    assert _ids(db_url) == first


def test_import_accepts_a_utf8_byte_order_mark(
    db_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert _import(db_url, [_line(1), _line(2)], tmp_path, capsys, prefix=b"\xef\xbb\xbf") == ""
    assert _ids(db_url) == ["t01", "t02"]


# -- issue 31, safety and the command line ---------------------------------------------------------


def test_export_into_a_pipe_closed_early_ends_quietly_with_exit_0(tmp_path: Path) -> None:
    """`threadstore export | head -n 1` printed "[Errno 32] Broken pipe" and exited 1."""
    source = asyncio.run(_source_of(2000, tmp_path / "source.db"))  # ~1 MB: more than a pipe holds
    clean = {k: v for k, v in os.environ.items() if not k.startswith(PREFIXES)}
    export = subprocess.Popen(
        [sys.executable, "-m", "threadstore", "export", source, "--page-size", "10"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=clean,
    )
    try:
        assert export.stdout is not None and export.stderr is not None
        assert export.stdout.readline().startswith(b'{"id":"t-00000"')
        export.stdout.close()  # as head does after its line
        err = export.stderr.read()
        assert export.wait(timeout=120) == 0, err
    finally:
        export.kill()
        export.wait()
    assert err == b""


def test_files_gc_takes_the_url_from_the_environment(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path}/gc.db"
    assert run("init", url).returncode == 0
    base = tmp_path / "files"
    base.mkdir()
    (base / "ab").mkdir()
    env = {"THREADSTORE_DATABASE_URL": url}
    for args in (
        ["files", "gc", str(base)],
        ["files", "gc", "-", str(base)],
        ["files", "gc", url, str(base)],
    ):
        result = run(*args, env=env)
        assert (result.returncode, result.stdout) == (0, "freed 0 files, 0 bytes\n"), (args, result.stderr)
    nothing = run("files", "gc", str(base))  # and no environment: the usual message
    assert nothing.returncode == 2 and "no database given" in one_error_line(nothing, "files")
    only_url = run("files", "gc", url)
    assert only_url.returncode == 2
    assert "is a database URL; give the FileStore's directory too" in one_error_line(only_url, "files")
    not_url = run("files", "gc", "gc.db", str(base))
    assert not_url.returncode == 2 and "'gc.db' is not a database URL" in one_error_line(not_url, "files")


@pytest.mark.parametrize(
    ("age", "shown"),
    [
        ("6mo", "180 days"),
        ("1mo", "30 days"),
        ("2w", "14 days"),
        ("36h", "36 hours"),
        ("24h", "1 day"),
        ("90min", "90 minutes"),
        ("120min", "2 hours"),
        ("45s", "45 seconds"),
        ("3600s", "1 hour"),
    ],
)
def test_prune_ages_are_unambiguous_and_said_in_words(age: str, shown: str, tmp_path: Path) -> None:
    """`--older-than 6m` meant six minutes; a dry run said "not updated for 1m"."""
    url = f"sqlite+aiosqlite:///{tmp_path}/ages.db"
    asyncio.run(_threads_of_ages(url))
    dry = run("prune", url, "--older-than", age, "--dry-run")
    assert dry.returncode == 0, dry.stderr
    count = 0 if age == "6mo" else 3  # three threads are 100 days old, one new
    assert dry.stdout == f"dry run: {count} threads not updated for {shown} would be deleted\n"


def _in_a_terminal(args: list[str], answer: bytes | None = None) -> tuple[int, str]:
    """``threadstore ARGS`` with stdin, stdout and stderr on a pseudo-terminal; ``answer`` is typed
    once a question ("... [y/N] ") shows (b"^C": SIGINT is sent instead). Returns the exit code
    and all the terminal showed."""
    import select
    import time

    clean = {k: v for k, v in os.environ.items() if not k.startswith(PREFIXES)}
    terminal, child_end = os.openpty()
    command = subprocess.Popen(
        [sys.executable, "-m", "threadstore", *args],
        stdin=child_end,
        stdout=child_end,
        stderr=child_end,
        env=clean,
    )
    os.close(child_end)
    shown, deadline = b"", time.monotonic() + 120
    try:
        while time.monotonic() < deadline:
            if not select.select([terminal], [], [], 1)[0]:
                continue
            try:
                chunk = os.read(terminal, 4096)
            except OSError:  # EIO: the command ended, closing the terminal
                break
            if not chunk:
                break
            shown += chunk
            if answer is not None and shown.endswith(b"[y/N] "):
                if answer == b"^C":
                    command.send_signal(signal.SIGINT)
                else:
                    os.write(terminal, answer)
                answer = None
        code = command.wait(timeout=60)
    finally:
        command.kill()
        os.close(terminal)
    return code, shown.decode().replace("\r\n", "\n")


def test_prune_on_a_terminal_asks_first_and_yes_skips_the_question(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path}/ask.db"
    asyncio.run(_threads_of_ages(url))
    question = f"delete 3 threads not updated for 90 days from {url}? [y/N] "

    code, shown = _in_a_terminal(["prune", url, "--older-than", "90d"], answer=b"n\n")
    assert code == 1, shown
    assert shown.startswith(question) and shown.endswith(
        "threadstore prune: error: not confirmed; nothing deleted\n"
    ), shown
    assert asyncio.run(_thread_ids(url)) == ["a1", "a2", "b1", "new"]
    code, shown = _in_a_terminal(["prune", url, "--older-than", "90d"], answer=b"^C")  # not blocked
    assert code == 130 and shown.endswith("threadstore prune: error: interrupted\n"), shown
    assert asyncio.run(_thread_ids(url)) == ["a1", "a2", "b1", "new"]

    code, shown = _in_a_terminal(
        ["prune", url, "--older-than", "90d", "--attribute", "team=b"], answer=b"yes\n"
    )
    assert code == 0, shown
    assert "delete 1 threads not updated for 90 days" in shown
    assert shown.endswith("deleted 1 threads not updated for 90 days\n"), shown
    assert asyncio.run(_thread_ids(url)) == ["a1", "a2", "new"]

    code, shown = _in_a_terminal(["prune", url, "--older-than", "90d", "--yes"])
    assert code == 0 and "[y/N]" not in shown, shown
    assert shown.endswith("deleted 2 threads not updated for 90 days\n"), shown
    assert "deleted 2 / 2 threads (100%)" in shown  # the progress bar, on the terminal's stderr

    code, shown = _in_a_terminal(["prune", url, "--older-than", "90d"])  # nothing to delete: no question
    assert code == 0 and shown.endswith("deleted 0 threads not updated for 90 days\n"), shown
    assert asyncio.run(_thread_ids(url)) == ["new"]


def _only_progress_lines(err: str, label: str) -> bool:
    """Whether ``err`` holds nothing but plain progress lines (no carriage returns)."""
    counted = rf"{label} [\d,]+ / [\d,]+ threads( \(\d+%\))?, [\d,]+ threads/s"
    uncounted = r"read [\d,]+ lines, [\d,]+ lines/s"
    return all(re.fullmatch(counted if label != "read" else uncounted, line) for line in err.split("\n")[:-1])


def _with_progress_every(
    seconds: float, *args: str, stdin: bytes | None = None
) -> subprocess.CompletedProcess[bytes]:
    """``threadstore ARGS`` in a subprocess, off a terminal, logging progress every ``seconds``."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith(PREFIXES)}
    code = f"import sys, threadstore.cli as c; c._LOG_EVERY = {seconds}; sys.exit(c.main(sys.argv[1:]))"
    return subprocess.run(
        [sys.executable, "-c", code, *args], input=stdin, capture_output=True, env=clean, timeout=300
    )


def test_off_a_terminal_long_work_logs_progress_lines_on_stderr(tmp_path: Path) -> None:
    """copy and prune printed nothing until done (27 s of silence on a resumed copy); export and
    import showed no progress at all. Every few seconds (here 0.01 s) a plain line goes to
    stderr, stdout keeps only the data and the summary."""
    source = asyncio.run(_source_of(300, tmp_path / "source.db"))
    small = ("--page-size", "5")

    copied = _with_progress_every(0.01, "copy", source, f"sqlite+aiosqlite:///{tmp_path}/copy.db", *small)
    assert copied.returncode == 0, copied.stderr
    assert copied.stdout.decode().startswith("copied 300 threads (0 already there)")
    err = copied.stderr.decode()
    assert "\r" not in err and _only_progress_lines(err, "copied") and err.count("\n") >= 2, err
    assert re.search(r"^copied [\d,]+ / 300 threads \(\d+%\)", err, re.M)

    exported = _with_progress_every(0.01, "export", source, *small)
    assert exported.returncode == 0, exported.stderr
    assert [r.id for batch in read_lines(io.BytesIO(exported.stdout)) for r in batch] == [
        f"t-{i:05d}" for i in range(300)
    ]
    err = exported.stderr.decode()
    assert _only_progress_lines(err, "exported") and err.count("\n") >= 2, err

    file = tmp_path / "export.jsonl"
    to_file = _with_progress_every(0.01, "export", source, str(file), *small)
    assert to_file.stdout.decode() == f"exported 300 threads to {file}\n"
    assert _only_progress_lines(to_file.stderr.decode(), "exported") and to_file.stderr, to_file.stderr

    target = f"sqlite+aiosqlite:///{tmp_path}/imported.db"
    imported = _with_progress_every(0.01, "import", target, "-", *small, stdin=file.read_bytes())
    assert imported.stdout.decode() == "imported 300 threads (0 already there)\n", imported.stderr
    err = imported.stderr.decode()
    assert _only_progress_lines(err, "read") and err.count("\n") >= 2, err

    async def age_all() -> None:
        async with await ThreadStore.create(target) as store:
            for thread in await store.list_recent(limit=300):
                thread.updated_at = thread.updated_at.replace(year=2000)
                await store.save(thread)

    asyncio.run(age_all())
    pruned = _with_progress_every(0.01, "prune", target, "--older-than", "1d", "--batch-size", "2")
    assert pruned.stdout.decode() == "deleted 300 threads not updated for 1 day\n", pruned.stderr
    err = pruned.stderr.decode()
    assert _only_progress_lines(err, "deleted") and err.count("\n") >= 2, err

    quiet = run("export", source)  # the default: a line every 5 s, none in a short run
    assert quiet.returncode == 0 and quiet.stderr == ""


def test_import_progress_on_a_terminal_counts_lines(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    file = tmp_path / "in.jsonl"
    file.write_text("".join(_line(i) + "\n" for i in range(7)))
    terminal = _Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    assert cli.main(["import", f"sqlite+aiosqlite:///{tmp_path}/t.db", str(file)]) == 0
    assert capsys.readouterr().out == "imported 7 threads (0 already there)\n"
    assert re.fullmatch(r"(\rread [\d,]+ lines, [\d,]+ lines/s)+\n", terminal.getvalue())
    assert "\rread 7 lines, " in terminal.getvalue()  # the last count, shown when done


def test_export_to_a_terminal_shows_the_data_without_a_progress_bar(tmp_path: Path) -> None:
    source = asyncio.run(_source_of(3, tmp_path / "source.db"))
    code, shown = _in_a_terminal(["export", source])
    assert code == 0, shown
    assert [json.loads(line)["id"] for line in shown.splitlines()] == ["t-00000", "t-00001", "t-00002"]
