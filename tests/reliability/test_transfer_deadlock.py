"""Two `threadstore import` / `copy` processes writing the same threads into one PostgreSQL
database in opposite orders: neither may fail on a deadlock, and every thread lands once, whole."""

from __future__ import annotations

import asyncio
import logging
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from tests.helpers import everything
from tests.reliability.support import ROOT, scaled
from threadstore import ConflictError, Message, NotFoundError, Thread, ThreadStore, ThreadStoreError
from threadstore.backends.postgres.pool import PostgresPool
from threadstore.config import PREFIXES
from threadstore.transfer import AliasRecord, ThreadRecord, export_lines

THREADS, MESSAGES, PAGE = 400, 3, 50  # 8 batches each way: the writers meet in several of them
RUNS = scaled(10)
SUMMARY = re.compile(r"(?:imported|copied) ([\d,]+) threads \(([\d,]+) already there\)")


def _records() -> list[ThreadRecord]:
    records = []
    for i in range(THREADS):
        record = ThreadRecord(
            id=f"t-{i:05d}",
            title=f"thread {i}",
            attributes={"i": i},
            aliases=[AliasRecord(f"alias-{i}", Thread().created_at)],
        )
        for j in range(MESSAGES):
            record.add_message(Message(role="user" if j % 2 == 0 else "assistant", content=f"{i}/{j}"))
        records.append(record)
    return records


def _start(*args: str) -> subprocess.Popen[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(PREFIXES)}
    return subprocess.Popen(
        [sys.executable, "-m", "threadstore", *args, "--page-size", str(PAGE)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _finish(processes: list[subprocess.Popen[str]], timeout: float) -> list[tuple[int, str, str]]:
    try:
        outputs = [p.communicate(timeout=timeout) for p in processes]
        return [(p.returncode, out, err) for p, (out, err) in zip(processes, outputs, strict=True)]
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
                process.wait()


async def _counts(url: str) -> tuple[int, int, int]:
    conn = await asyncpg.connect(url)
    try:
        row = await conn.fetchrow(
            "SELECT (SELECT count(*) FROM threads), "
            "(SELECT count(*) FROM messages), "
            "(SELECT count(*) FROM thread_aliases)"
        )
        await conn.execute("TRUNCATE threads CASCADE")  # the next run starts empty
    finally:
        await conn.close()
    return row[0], row[1], row[2]


async def test_imports_and_copies_of_the_same_threads_in_opposite_orders_never_deadlock(
    tmp_path: Path,
    fresh_pg_url: str,
) -> None:
    """Odd runs: two imports, one of the file in id order, one of it with each page backwards.
    Even runs: a copy from SQLite (id order, two pages in flight) against the backwards import.
    Each run starts from an empty database; the first from one not even migrated. Before the
    writes were ordered, 5-8 of the 10 runs had one process fail on a deadlock."""
    records = _records()
    source = f"sqlite+aiosqlite:///{tmp_path}/source.db"
    async with await ThreadStore.create(source) as store:
        await store.import_threads(_records())
        forwards, backwards = tmp_path / "forwards.jsonl", tmp_path / "backwards.jsonl"
        with forwards.open("wb") as out:
            await export_lines(store, out)
    lines = forwards.read_bytes().splitlines(keepends=True)
    # Each page backwards, the pages in order: the two writers take the same threads at once.
    backwards.write_bytes(
        b"".join(line for start in range(0, THREADS, PAGE) for line in reversed(lines[start : start + PAGE]))
    )
    originals = await everything(source)
    assert [r.id for r in originals] == [r.id for r in records]

    failed = []
    for run in range(RUNS):
        first = ["copy", source, fresh_pg_url] if run % 2 else ["import", fresh_pg_url, str(forwards)]
        processes = [_start(*first), _start("import", fresh_pg_url, str(backwards))]
        results = await asyncio.to_thread(_finish, processes, 120)
        failed += [
            f"run {run + 1}, {command}: exit {code}: {err.strip()}"
            for command, (code, _, err) in zip((first[0], "import"), results, strict=True)
            if (code, err) != (0, "")
        ]
        if failed and failed[-1].startswith(f"run {run + 1},"):
            await _counts(fresh_pg_url)  # emptied for the next run
            continue
        stored = []
        for _, out, _ in results:  # type: ignore[assignment]
            match = SUMMARY.search(out)  # type: ignore[call-overload]
            assert match is not None, out
            stored.append(int(match.group(1).replace(",", "")))
        assert sum(stored) == THREADS, f"run {run + 1}: each thread stored once, got {stored}"
        assert await everything(fresh_pg_url) == originals, f"run {run + 1}: a thread differs"
        # Counted by the database itself: no row the export would not show.
        assert await _counts(fresh_pg_url) == (THREADS, THREADS * MESSAGES, THREADS)
    assert not failed, f"{len(failed)} of {2 * RUNS} processes failed:\n" + "\n".join(failed)


async def _until_waiting(watcher: asyncpg.Connection, task: asyncio.Task[object]) -> None:
    """Until the store's session waits on a row lock (or ``task`` ended without waiting)."""
    for _ in range(600):
        if task.done() or await watcher.fetchval(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
            "AND application_name = 'threadstore' AND wait_event_type = 'Lock'"
        ):
            return
        await asyncio.sleep(0.02)
    raise AssertionError("the store's statement never waited on the held row")


async def test_a_write_the_server_aborts_as_a_deadlock_is_retried_and_succeeds(
    fresh_pg_url: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A real deadlock with a writer that locks against id order: it holds "b" (an uncommitted
    insert), the import of ["a", "b"] takes "a" and waits for "b", then it asks for "a". The
    import, waiting longest, finds the cycle (deadlock_timeout, 1 s by default) and is aborted;
    tried again, it waits until the other writer rolls back, and stores both."""
    caplog.set_level(logging.INFO, logger="threadstore.backends.postgres")
    async with await ThreadStore.create(fresh_pg_url, pool_size=1) as store:
        other, watcher = await asyncpg.connect(fresh_pg_url), await asyncpg.connect(fresh_pg_url)
        held = other.transaction()
        try:
            await held.start()
            insert = "INSERT INTO threads (id, title, created_at, updated_at) VALUES ($1, '', now(), now())"
            await other.execute(insert, "b")
            importing = asyncio.ensure_future(store.import_threads([Thread(id="a"), Thread(id="b")]))
            await _until_waiting(watcher, importing)
            await asyncio.wait_for(other.execute(insert, "a"), 30)  # closes the cycle
            await held.rollback()
            assert await asyncio.wait_for(importing, 30) == ["a", "b"]
        finally:
            await other.close()  # rolls back what it still holds
            await watcher.close()
        assert [t.id for t in await store.list_recent()] == ["b", "a"]
    retries = [r.getMessage() for r in caplog.records if "trying again" in r.getMessage()]
    assert retries == [
        "importing 2 threads ('a', 'b') collided with another writer (deadlock detected); trying again"
    ]


@pytest.mark.parametrize("operation", ["import", "delete_many", "save", "append"])
async def test_a_write_that_keeps_colliding_raises_a_conflict_error_after_three_attempts(
    fresh_pg_url: str,
    monkeypatch: pytest.MonkeyPatch,
    operation: str,
) -> None:
    """The server's deadlock error injected into every attempt of one statement: three attempts,
    then a ConflictError naming the operation and its threads; nothing written."""
    statement = {
        "import": "postgres.import_threads",
        "delete_many": "threads.delete_many",
        "save": "postgres.save_appended",
        "append": "postgres.append",
    }[operation]
    async with await ThreadStore.create(fresh_pg_url, pool_size=1) as store:
        thread = await store.save(Thread(id="kept", title="before"))
        run = PostgresPool.run
        attempts = []

        async def colliding(self: PostgresPool, conn: Any, name: str, /, **params: Any) -> Any:
            if name != statement:
                return await run(self, conn, name, **params)
            attempts.append(name)
            cause = asyncpg.DeadlockDetectedError("deadlock detected")
            raise ThreadStoreError(f"PostgreSQL failed: {name}: {cause}") from cause

        monkeypatch.setattr(PostgresPool, "run", colliding)
        monkeypatch.setattr("threadstore.backends.postgres.pool._COLLISION_PAUSE", 0.001)
        thread.add_message(Message(role="user", content="more"))
        with pytest.raises(ConflictError) as raised:
            match operation:
                case "import":
                    await store.import_threads([Thread(id=f"n{i}") for i in range(5, 0, -1)])
                case "delete_many":
                    await store.delete_many(["kept", "zz"])
                case "save":
                    await store.save(thread)
                case "append":
                    await store.append("kept", Message(role="user", content="more"))
        monkeypatch.undo()
        assert attempts == [statement] * 3
        what = {
            "import": "importing 5 threads ('n1', 'n2', 'n3' and 2 more)",
            "delete_many": "deleting 2 threads ('kept', 'zz')",
            "save": "saving thread 'kept'",
            "append": "appending to thread 'kept'",
        }[operation]
        assert str(raised.value) == (
            f"{what} collided with another writer 3 times in a row "
            "(PostgreSQL: deadlock detected); nothing of it was written"
        )
        assert isinstance(raised.value.__cause__, asyncpg.DeadlockDetectedError)
        assert [(t.id, t.title, len(t.messages)) for t in await store.list_recent()] == [
            ("kept", "before", 0)
        ]


async def test_moving_an_alias_while_both_threads_are_deleted_does_not_deadlock(fresh_pg_url: str) -> None:
    """delete_many(["t", "u"]) has locked "t" when the alias of "u" is moved to "t"; it then
    deletes the alias with "u". The move must wait for "t" before it takes the alias row."""
    async with await ThreadStore.create(fresh_pg_url, pool_size=1) as store:
        await store.import_threads([Thread(id="t"), Thread(id="u")])
        await store.save_thread_alias("u", "a")
        deleter, watcher = await asyncpg.connect(fresh_pg_url), await asyncpg.connect(fresh_pg_url)
        try:
            async with deleter.transaction():
                await deleter.execute("SELECT id FROM threads WHERE id = 't' FOR UPDATE")
                moving = asyncio.ensure_future(store.save_thread_alias("t", "a"))
                await _until_waiting(watcher, moving)
                await asyncio.wait_for(
                    deleter.execute("DELETE FROM threads WHERE id = any($1::text[])", ["t", "u"]), 30
                )
            with pytest.raises(NotFoundError):
                await asyncio.wait_for(moving, 30)
        finally:
            await deleter.close()
            await watcher.close()
        assert await store.list_recent() == []
        assert await store.get_by_alias("a") is None


pytestmark = pytest.mark.pg
