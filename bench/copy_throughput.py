"""`threadstore copy` throughput, SQLite -> PostgreSQL, in threads per second.

    python bench/copy_throughput.py [--threads 10000] [--messages 20] [--server postgresql://...]
                                    [--source kept.db] [--runs 3]

Builds a SQLite file of N threads of M messages (each with an alias; --source keeps it for the
next time), then, per run, creates a fresh PostgreSQL database on the server, runs the
`threadstore copy` command as a user would, reports what it prints, checks the copy and drops
the database.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg

from threadstore import Message, Thread, ThreadStore
from threadstore.transfer import AliasRecord, ThreadRecord


def _thread(i: int, messages: int) -> ThreadRecord:
    thread = ThreadRecord(
        id=f"thread-{i:06d}",
        title=f"Conversation {i}",
        attributes={"customer": f"c{i % 97}", "priority": "high" if i % 3 else "low"},
        platforms={"slack": {"channel": f"C{i % 50}", "thread_ts": f"{i}.0001"}},
        aliases=[AliasRecord(alias=f"ticket-{i}", created_at=Thread().created_at)],
    )
    for j in range(messages):
        role = "user" if j % 2 == 0 else "assistant"
        thread.add_message(
            Message(
                role=role,
                content=f"message {j} of thread {i}: " + "lorem ipsum " * 8,
                metrics={
                    "model": "gpt-4o" if role == "assistant" else None,
                    "usage": {"prompt_tokens": 20, "completion_tokens": 30, "total_tokens": 50},
                },
            )
        )
    return thread


async def _build(path: Path, threads: int, messages: int) -> None:
    async with await ThreadStore.create(f"sqlite+aiosqlite:///{path}") as store:
        for start in range(0, threads, 500):
            batch = range(start, min(start + 500, threads))
            await store.import_threads([_thread(i, messages) for i in batch])


async def _admin(server: str, statement: str) -> None:
    conn = await asyncpg.connect(server)
    try:
        await conn.execute(statement)
    finally:
        await conn.close()


async def _check(url: str, threads: int, messages: int) -> None:
    async with await ThreadStore.create(url) as store:
        stats = await store.get_usage_stats()
        assert (stats["total_threads"], stats["total_messages"]) == (threads, threads * messages), stats
        assert (await store.get_by_alias(f"ticket-{threads - 1}")) is not None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--threads", type=int, default=10_000)
    parser.add_argument("--messages", type=int, default=20)
    parser.add_argument(
        "--server",
        default=os.environ.get("THREADSTORE_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/postgres"),
    )
    parser.add_argument("--source", type=Path, help="SQLite file to build once and reuse")
    parser.add_argument("--runs", type=int, default=1)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        source = args.source or Path(folder) / "source.db"
        if not source.exists():
            started = time.monotonic()
            asyncio.run(_build(source, args.threads, args.messages))
            print(
                f"built {args.threads:,} threads x {args.messages} messages in SQLite "
                f"in {time.monotonic() - started:.1f} s"
            )
        for _ in range(args.runs):
            name = f"threadstore_bench_{uuid.uuid4().hex[:12]}"
            asyncio.run(_admin(args.server, f'CREATE DATABASE "{name}"'))
            target = urlunsplit(urlsplit(args.server)._replace(path=f"/{name}"))
            try:
                command = [
                    sys.executable,
                    "-m",
                    "threadstore",
                    "copy",
                    f"sqlite+aiosqlite:///{source}",
                    target,
                ]
                done = subprocess.run(command, capture_output=True, text=True, check=True)
                print(done.stdout.strip())
                asyncio.run(_check(target, args.threads, args.messages))
            finally:
                asyncio.run(_admin(args.server, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


if __name__ == "__main__":
    main()
