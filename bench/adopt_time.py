"""How long `threadstore.adopt` takes on a slide-narrator database, on SQLite and PostgreSQL.

    python bench/adopt_time.py [--threads 10000] [--messages 20] [--server postgresql://...]
                               [--runs 3] [--only sqlite|postgres]

Per run and backend, builds a narrator database in narrator 6.4.0's layout (the schema of the
fixtures narrator wrote, tests/fixtures/narrator, plus N threads of M messages inserted the way
narrator stores them: JSON as json.dumps text, naive UTC times on SQLite, one thread in 50 with
a sequence its concurrent saves repeated), then times `await threadstore.adopt(url)` alone and
checks the counts. PostgreSQL: a fresh database on the server per run, dropped after.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import statistics
import tempfile
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg

import threadstore
from threadstore import ThreadStore

FIXTURES = Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "narrator"
START = datetime(2026, 1, 1, tzinfo=UTC)


def _metrics(model: str | None, tokens: int) -> str:
    return json.dumps(
        {
            "model": model,
            "timing": {"started_at": None, "ended_at": None, "latency": 0},
            "usage": {"completion_tokens": tokens, "prompt_tokens": tokens, "total_tokens": 2 * tokens},
            "weave_call": {"id": "", "ui_url": ""},
        }
    )


Row = tuple[Any, ...]


def _rows(threads: int, messages: int, sqlite: bool) -> Iterator[tuple[Row, list[Row]]]:
    """(thread row, its message rows) in narrator's columns."""

    def when(t: datetime) -> Any:
        return t.strftime("%Y-%m-%d %H:%M:%S.%f") if sqlite else t

    def doc(value: Any) -> Any:
        return json.dumps(value)

    for i in range(threads):
        created = START + timedelta(minutes=i)
        thread = (
            f"bench-{i:06d}",
            f"Conversation {i}",
            doc({"customer": f"c{i % 97}", "tier": i % 3}),
            doc({"slack": {"channel": f"C{i % 50}", "thread_ts": f"{i}.0001"}}),
            when(created),
            when(created + timedelta(hours=1)),
        )
        rows = []
        for j in range(messages):
            sequence = j if (i % 50 == 0 and j > 1) else j + 1  # a repeated 2 in one thread of 50
            role = "user" if j % 2 == 0 else "assistant"
            rows.append(
                (
                    f"m-{i:06d}-{j:03d}",
                    thread[0],
                    sequence,
                    j // 2 + 1,
                    role,
                    f"message {j} of thread {i}: " + "lorem ipsum dolor " * 6,
                    None,
                    None,
                    None,
                    "null",
                    doc({}),
                    when(created + timedelta(seconds=j)),
                    doc({"id": f"u{i % 10}", "type": "user"}) if role == "user" else "null",
                    doc({}),
                    "null",
                    _metrics("gpt-4o" if role == "assistant" else None, 40),
                    doc({}),
                )
            )
        yield thread, rows


async def _build_sqlite(path: Path, threads: int, messages: int) -> None:
    import aiosqlite

    shutil.copyfile(FIXTURES / "narrator.sqlite", path)
    async with aiosqlite.connect(path) as conn:
        await conn.execute("DELETE FROM messages")
        await conn.execute("DELETE FROM threads")
        thread_rows, message_rows = [], []
        for thread, rows in _rows(threads, messages, sqlite=True):
            thread_rows.append(thread)
            message_rows += rows
        await conn.executemany("INSERT INTO threads VALUES (?, ?, ?, ?, ?, ?)", thread_rows)
        await conn.executemany(
            "INSERT INTO messages VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", message_rows
        )
        await conn.commit()


async def _build_postgres(url: str, threads: int, messages: int) -> None:
    conn = await asyncpg.connect(url)
    try:
        await conn.execute((FIXTURES / "narrator_postgres.sql").read_text(encoding="utf-8"))
        await conn.execute("TRUNCATE public.messages, public.threads")
        thread_rows, message_rows = [], []
        for thread, rows in _rows(threads, messages, sqlite=False):
            thread_rows.append(thread)
            message_rows += rows
        await conn.copy_records_to_table("threads", schema_name="public", records=thread_rows)
        await conn.copy_records_to_table("messages", schema_name="public", records=message_rows)
        await conn.execute("ANALYZE public.threads, public.messages")
    finally:
        await conn.close()


async def _adopt(url: str, threads: int, messages: int) -> float:
    report = await threadstore.adopt(url)
    assert (report.threads, report.messages) == (threads, threads * messages), report
    async with await ThreadStore.create(url, pool_size=1) as store:
        stats = await store.get_usage_stats()
        assert (stats["total_threads"], stats["total_messages"]) == (threads, threads * messages)
    return report.seconds


async def _admin(server: str, statement: str) -> None:
    conn = await asyncpg.connect(server)
    try:
        await conn.execute(statement)
    finally:
        await conn.close()


async def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--threads", type=int, default=10_000)
    parser.add_argument("--messages", type=int, default=20)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--server", default="postgresql://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--only", choices=("sqlite", "postgres"))
    args = parser.parse_args()
    times: dict[str, list[float]] = {"sqlite": [], "postgres": []}
    for _ in range(args.runs):
        if args.only != "postgres":
            with tempfile.TemporaryDirectory() as folder:
                path = Path(folder) / "narrator.db"
                await _build_sqlite(path, args.threads, args.messages)
                times["sqlite"].append(await _adopt(f"sqlite:///{path}", args.threads, args.messages))
        if args.only != "sqlite":
            name = f"threadstore_adopt_bench_{uuid.uuid4().hex[:8]}"  # generated, not input
            await _admin(args.server, f'CREATE DATABASE "{name}"')
            try:
                url = urlunsplit(urlsplit(args.server)._replace(path=f"/{name}"))
                await _build_postgres(url, args.threads, args.messages)
                times["postgres"].append(await _adopt(url, args.threads, args.messages))
            finally:
                await _admin(args.server, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    for backend, seconds in times.items():
        if seconds:
            print(
                f"{backend}: adopt of {args.threads:,} threads x {args.messages} messages: "
                f"median {statistics.median(seconds):.2f} s over {len(seconds)} run(s) "
                f"({', '.join(f'{s:.2f}' for s in seconds)})"
            )


if __name__ == "__main__":
    asyncio.run(main())
