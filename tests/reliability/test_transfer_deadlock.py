"""Two `threadstore import` / `copy` processes writing the same threads into one PostgreSQL
database in opposite orders: neither may fail on a deadlock, and every thread lands once, whole."""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
from pathlib import Path

import asyncpg
import pytest

from tests.reliability.support import ROOT, scaled
from threadstore import Message, Thread, ThreadStore
from threadstore.config import PREFIXES
from threadstore.transfer import AliasRecord, ThreadRecord, export_lines

THREADS, MESSAGES, PAGE = 400, 3, 50  # 8 batches each way: the writers meet in several of them
RUNS = scaled(10)
SUMMARY = re.compile(r"(?:imported|copied) ([\d,]+) threads \(([\d,]+) already there\)")


def _records() -> list[ThreadRecord]:
    records = []
    for i in range(THREADS):
        record = ThreadRecord(id=f"t-{i:05d}", title=f"thread {i}", attributes={"i": i},
                              aliases=[AliasRecord(f"alias-{i}", Thread().created_at)])
        for j in range(MESSAGES):
            record.add_message(Message(role="user" if j % 2 == 0 else "assistant",
                                       content=f"{i}/{j}"))
        records.append(record)
    return records


def _start(*args: str) -> subprocess.Popen[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(PREFIXES)}
    return subprocess.Popen([sys.executable, "-m", "threadstore", *args, "--page-size", str(PAGE)],
                            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)


def _finish(processes: list[subprocess.Popen[str]], timeout: float) -> list[tuple[int, str, str]]:
    try:
        outputs = [p.communicate(timeout=timeout) for p in processes]
        return [(p.returncode, out, err) for p, (out, err) in zip(processes, outputs, strict=True)]
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
                process.wait()


async def _everything(url: str) -> list[ThreadRecord]:
    async with await ThreadStore.create(url, migrate=False) as store:
        return [record async for page in store.export_threads() for record in page]


async def _counts(url: str) -> tuple[int, int, int]:
    conn = await asyncpg.connect(url)
    try:
        row = await conn.fetchrow("SELECT (SELECT count(*) FROM threads), "
                                  "(SELECT count(*) FROM messages), "
                                  "(SELECT count(*) FROM thread_aliases)")
        await conn.execute("TRUNCATE threads CASCADE")  # the next run starts empty
    finally:
        await conn.close()
    return row[0], row[1], row[2]


async def test_imports_and_copies_of_the_same_threads_in_opposite_orders_never_deadlock(
    tmp_path: Path, fresh_pg_url: str,
) -> None:
    """Odd runs: two imports, one of the file in id order, one of it backwards. Even runs: a copy
    from SQLite (id order, two pages in flight) against the backwards import. Each run starts
    from an empty database; the first from one not even migrated."""
    records = _records()
    source = f"sqlite+aiosqlite:///{tmp_path}/source.db"
    async with await ThreadStore.create(source) as store:
        await store.import_threads(_records())
        forwards, backwards = tmp_path / "forwards.jsonl", tmp_path / "backwards.jsonl"
        with forwards.open("wb") as out:
            await export_lines(store, out)
    lines = forwards.read_bytes().splitlines(keepends=True)
    # Each page backwards, the pages in order: the two writers take the same threads at once.
    backwards.write_bytes(b"".join(line for start in range(0, THREADS, PAGE)
                                   for line in reversed(lines[start:start + PAGE])))
    originals = await _everything(source)
    assert [r.id for r in originals] == [r.id for r in records]

    failed = []
    for run in range(RUNS):
        first = (["copy", source, fresh_pg_url] if run % 2 else
                 ["import", fresh_pg_url, str(forwards)])
        processes = [_start(*first), _start("import", fresh_pg_url, str(backwards))]
        results = await asyncio.to_thread(_finish, processes, 120)
        failed += [f"run {run + 1}, {command}: exit {code}: {err.strip()}"
                   for command, (code, _, err) in zip((first[0], "import"), results, strict=True)
                   if (code, err) != (0, "")]
        if failed and failed[-1].startswith(f"run {run + 1},"):
            await _counts(fresh_pg_url)  # emptied for the next run
            continue
        stored = []
        for _, out, _ in results:
            match = SUMMARY.search(out)
            assert match is not None, out
            stored.append(int(match.group(1).replace(",", "")))
        assert sum(stored) == THREADS, f"run {run + 1}: each thread stored once, got {stored}"
        assert await _everything(fresh_pg_url) == originals, f"run {run + 1}: a thread differs"
        # Counted by the database itself: no row the export would not show.
        assert await _counts(fresh_pg_url) == (THREADS, THREADS * MESSAGES, THREADS)
    assert not failed, f"{len(failed)} of {2 * RUNS} processes failed:\n" + "\n".join(failed)


pytestmark = pytest.mark.pg
