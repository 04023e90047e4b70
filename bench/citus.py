"""threadstore on a Citus cluster beside one plain PostgreSQL node, in one run (docs/citus.md).

    python -m bench.citus [--quick] [--server postgresql://...]

Starts a Citus coordinator and two workers of its own on free loopback ports (the test
helper tests/reliability/support.py: `citus_cluster`, as the `postgres` OS user), creates a
store with distributed=True there and a plain store in a new database on --server (default
THREADSTORE_BENCH_PG_URL, else the local server), and times the same workloads on both,
interleaved round by round: save (a new thread of 10 messages), append (one message to a stored
thread), get (a thread of 10 messages), list (the 20 newest threads) and what fans out across
shards: list_threads (20 summaries), find_by_attributes (the few threads holding one value),
search_by_title (the 20 newest whose title holds "thread 1") and get_usage_stats (the store
grows by the saves as the rounds go); and the other writes of one thread: save_more (a loaded
thread saved with one message more), save_edit (a loaded thread saved with its first message
edited), append_creating (append(create=True) of a new thread) and pop (pop_message). Reports per operation
the median wall time and the client CPU (time.process_time) of the rounds, and the ratio of the
cluster to the plain node. The servers share the machine's cores with the client: the ratios
and the structure matter, not the milliseconds.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import statistics
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg

from threadstore import Message, Thread, ThreadStore

RESULTS = Path(__file__).resolve().parent / "results"
Op = Callable[[ThreadStore, int], Awaitable[Any]]


def _thread(i: int, n: int = 10) -> Thread:
    thread = Thread(id=f"bench-{i}-{uuid.uuid4().hex[:8]}", title=f"thread {i}", attributes={"n": i})
    for k in range(n):
        thread.add_message(Message(role="user" if k % 2 == 0 else "assistant", content=f"message {k} " * 8))
    return thread


async def _prepare(store: ThreadStore, count: int) -> list[str]:
    ids = []
    for i in range(count):
        ids.append((await store.save(_thread(i))).id)
    return ids


def _workloads(ids: list[str], loaded: dict[ThreadStore, list[Thread]] | None = None) -> dict[str, Op]:
    """The timed operations on the threads ``ids``; the saves of stored threads save the
    Thread objects ``loaded`` holds per store (loaded once, saved again each call)."""
    loaded = loaded or {}

    async def save(store: ThreadStore, i: int) -> Any:
        return await store.save(_thread(i))

    async def save_more(store: ThreadStore, i: int) -> Any:
        thread = loaded[store][i % len(ids)]
        thread.add_message(Message(role="user", content="one more"))
        return await store.save(thread)

    async def save_edit(store: ThreadStore, i: int) -> Any:
        thread = loaded[store][i % len(ids)]
        thread.messages[0].content = f"edited {i}"
        return await store.save(thread)

    async def append(store: ThreadStore, i: int) -> Any:
        return await store.append(ids[i % len(ids)], Message(role="user", content="one more"))

    async def append_creating(store: ThreadStore, i: int) -> Any:
        thread_id = f"created-{uuid.uuid4().hex[:12]}"
        return await store.append(thread_id, Message(role="user", content="first"), create=True)

    async def pop(store: ThreadStore, i: int) -> Any:
        return await store.pop_message(ids[i % len(ids)])

    async def get(store: ThreadStore, i: int) -> Any:
        return await store.get(ids[i % len(ids)])

    async def list_newest(store: ThreadStore, i: int) -> Any:
        return await store.list(20)

    async def list_threads(store: ThreadStore, i: int) -> Any:
        return await store.list_threads(20)

    async def find_by_attributes(store: ThreadStore, i: int) -> Any:
        return await store.find_by_attributes({"n": i % 50})

    async def search_by_title(store: ThreadStore, i: int) -> Any:
        return await store.search_by_title("thread 1", 20)

    async def get_usage_stats(store: ThreadStore, i: int) -> Any:
        return await store.get_usage_stats()

    return {
        "save": save,
        "save_more": save_more,
        "save_edit": save_edit,
        "append": append,
        "append_creating": append_creating,
        "pop": pop,
        "get": get,
        "list": list_newest,
        "list_threads": list_threads,
        "find_by_attributes": find_by_attributes,
        "search_by_title": search_by_title,
        "get_usage_stats": get_usage_stats,
    }


async def _time(store: ThreadStore, op: Op, count: int) -> tuple[float, float]:
    """Median wall ms and mean client CPU ms per operation over ``count`` calls."""
    walls = []
    cpu = time.process_time()
    for i in range(count):
        started = time.perf_counter()
        await op(store, i)
        walls.append((time.perf_counter() - started) * 1000)
    return statistics.median(walls), (time.process_time() - cpu) * 1000 / count


@contextlib.contextmanager
def _plain_database(server: str) -> Iterator[str]:
    name = f"threadstore_bench_citus_{uuid.uuid4().hex[:8]}"

    async def admin(statement: str) -> None:
        conn = await asyncpg.connect(server)
        try:
            await conn.execute(statement)
        finally:
            await conn.close()

    asyncio.run(admin(f'CREATE DATABASE "{name}"'))
    try:
        parts = urlsplit(server)
        yield urlunsplit(parts._replace(path=f"/{name}"))
    finally:
        asyncio.run(admin(f'DROP DATABASE "{name}" WITH (FORCE)'))


async def _run(sides: dict[str, str], rounds: int, count: int) -> dict[str, dict[str, list[float]]]:
    stores = {
        side: await ThreadStore.create(url, distributed=side == "citus", pool_size=2)
        for side, url in sides.items()
    }
    try:
        ids = {side: await _prepare(store, 50) for side, store in stores.items()}
        loaded = {
            store: [thread for i in ids[side] if (thread := await store.get(i)) is not None]
            for side, store in stores.items()
        }
        results: dict[str, dict[str, list[float]]] = {}
        for _ in range(rounds):  # interleaved: each round times every workload on each side
            for side, store in stores.items():
                for name, op in _workloads(ids[side], loaded).items():
                    wall, cpu = await _time(store, op, count)
                    results.setdefault(f"{name}/{side}", {"wall": [], "cpu": []})
                    results[f"{name}/{side}"]["wall"].append(wall)
                    results[f"{name}/{side}"]["cpu"].append(cpu)
        return results
    finally:
        for store in stores.values():
            await store.close()


def _table(results: dict[str, dict[str, list[float]]]) -> str:
    lines = [
        "| operation | plain node ms | Citus ms | Citus / plain | client CPU ms, plain | Citus |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for name in _workloads([]):
        plain, citus = results[f"{name}/plain"], results[f"{name}/citus"]
        p, c = statistics.median(plain["wall"]), statistics.median(citus["wall"])
        lines.append(
            f"| {name} | {p:.2f} | {c:.2f} | {c / p:.1f}x | "
            f"{statistics.median(plain['cpu']):.3f} | {statistics.median(citus['cpu']):.3f} |"
        )
    return "\n".join(lines)


def main() -> None:
    from tests.reliability.support import citus_cluster, citus_installed

    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="a smoke run: 2 rounds of 10 calls")
    parser.add_argument(
        "--server",
        default=os.environ.get("THREADSTORE_BENCH_PG_URL", "postgresql://postgres@127.0.0.1:5432/postgres"),
    )
    args = parser.parse_args()
    if not citus_installed():
        raise SystemExit("Citus is not installed (../shared/citus/install.sh): no Citus bench")
    rounds, count = (2, 10) if args.quick else (5, 40)
    with citus_cluster(workers=2) as citus_url, _plain_database(args.server) as plain_url:
        results = asyncio.run(_run({"plain": plain_url, "citus": citus_url}, rounds, count))
    table = _table(results)
    print(
        f"threadstore on Citus (coordinator + 2 workers) beside one plain node, {rounds} rounds x {count}\n"
    )
    print(table)
    RESULTS.mkdir(exist_ok=True)
    name = "citus-quick.json" if args.quick else "citus.json"
    (RESULTS / name).write_text(json.dumps({"rounds": rounds, "count": count, "results": results}, indent=1))


if __name__ == "__main__":
    main()
