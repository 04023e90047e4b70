"""import_threads' throughput (issue 28: an import indexes what it writes): ``python -m
bench.importing``. Imports MESSAGES messages (bench.size's threads of 10, in its pages of 2,000
threads) into a fresh store, then times the first search; prints JSON: seconds, messages per
second and client CPU per message of the import, and the first search's ms. Run it once per
version to compare (``PYTHONPATH=<other checkout> python bench/importing.py``), alternating."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import tempfile
import time
from pathlib import Path

import asyncpg

from bench.size import DEFAULT_PG, PER_THREAD, RARE, chunks, thread_of
from threadstore import ThreadStore


async def run(url: str, messages: int) -> dict[str, float]:
    threads = [thread_of(i) for i in range(messages // PER_THREAD)]  # built before the clock
    async with await ThreadStore.create(url) as store:
        wall = cpu = 0.0
        for part in chunks(len(threads)):
            page = threads[part.start : part.stop]
            started, started_cpu = time.perf_counter(), time.process_time()
            await store.import_threads(page)
            wall += time.perf_counter() - started
            cpu += time.process_time() - started_cpu
        started = time.perf_counter()
        assert len(await store.search(RARE)) == 10
        first = time.perf_counter() - started
    return {
        "import_s": round(wall, 2),
        "messages_per_s": round(messages / wall),
        "cpu_us_per_message": round(cpu / messages * 1e6, 1),
        "first_search_ms": round(first * 1000, 1),
    }


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--messages", type=int, default=100_000)
    parser.add_argument("--backend", default="postgres")
    args = parser.parse_args()
    if args.backend == "postgres":
        server = os.environ.get("THREADSTORE_BENCH_PG_URL", DEFAULT_PG)
        name = f"threadstore_importing_{os.getpid()}"  # the bench's own, dropped after
        admin = await asyncpg.connect(server)
        await admin.execute(f'CREATE DATABASE "{name}"')
        try:
            result = await run(server.rsplit("/", 1)[0] + "/" + name, args.messages)
        finally:
            await admin.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
            await admin.close()
    else:
        with tempfile.TemporaryDirectory() as tmp:
            result = await run(f"sqlite+aiosqlite:///{Path(tmp) / 'import.db'}", args.messages)
    print(json.dumps({"backend": args.backend, "messages": args.messages, **result}))


if __name__ == "__main__":
    asyncio.run(main())
