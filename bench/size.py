"""Searches as the store grows (issue 28): ``python -m bench.size`` (``make bench SIZE=...``).

Stores of 10,000, 200,000 and 1,000,000 messages (threads of 10), each bulk-loaded with
``import_threads`` (not timed). Then, once right after the load (the indexer's queue still full:
the first search indexes what is queued, and is timed apart as ``first search``), and once
after the indexer caught up (its queue empty; every size's store in one interleaved call): a
full-text search for a word in 10 messages, the top 20 of a word in four messages of five, and
search_by_title, search_by_content and find_by_attributes that one thread matches. Medians of
interleaved rounds, ms, with client CPU per operation.

A store is kept between runs (a PostgreSQL database ``threadstore_size_<n>`` on the
server, a SQLite file in ``--dir``), so iterating does not seed a million messages each time;
``--drop`` removes them.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import time
from collections.abc import Awaitable, Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from threadstore import Message, Thread, ThreadStore

DEFAULT_PG = "postgresql://postgres@127.0.0.1:5432/postgres"
PER_THREAD = 10
RARE = "quokkaesque"  # in 10 messages, whatever the size
COMMON = "refund"  # in four messages of five
EPOCH = datetime(2025, 1, 1, tzinfo=UTC)
SIZES = {"10k": 10_000, "200k": 200_000, "1m": 1_000_000}


def thread_of(i: int) -> Thread:
    """Thread i: a title and a customer of its own; message n mentions the common word unless
    n is a multiple of 5; the first message of threads 0-9 holds the rare word."""
    thread = Thread(
        id=f"size-{i:07d}",
        title=f"Case {i:07d} about billing",
        attributes={"customer_id": f"cust_{i}", "tier": i % 5},
        created_at=EPOCH + timedelta(seconds=i),
        updated_at=EPOCH + timedelta(seconds=i),
    )
    for n in range(1, PER_THREAD + 1):
        words = [f"ticket k{i}x{n} about the order"]
        if n % 5:
            words.append(f"asking for a {COMMON} of the payment")
        if i < 10 and n == 1:
            words.append(RARE)
        thread.messages.append(
            Message(
                role="user" if n % 2 else "assistant",
                content=" ".join(words),
                timestamp=EPOCH + timedelta(seconds=i, microseconds=n),
                sequence=n,
            )
        )
    return thread


def chunks(threads: int, size: int = 2_000) -> Iterator[range]:
    for start in range(0, threads, size):
        yield range(start, min(threads, start + size))


async def queued(url: str) -> int:
    """Messages waiting for the background indexer, read on a connection of the bench's own."""
    if url.startswith("sqlite"):
        import sqlite3

        with sqlite3.connect(url.split("///", 1)[1]) as conn:
            return int(conn.execute("SELECT count(*) FROM message_words_pending").fetchone()[0])
    import asyncpg

    conn = await asyncpg.connect(url)
    try:
        return int(await conn.fetchval("SELECT count(*) FROM message_text_pending"))
    finally:
        await conn.close()


async def seed(store: ThreadStore, messages: int) -> float:
    """Import up to ``messages`` messages unless already there; seconds spent."""
    threads = messages // PER_THREAD
    if await store.get(f"size-{threads - 1:07d}") is not None:
        return 0.0
    started = time.perf_counter()
    for part in chunks(threads):
        await store.import_threads([thread_of(i) for i in part])
    return time.perf_counter() - started


Op = Callable[[], Awaitable[Any]]


async def measure(ops: dict[str, Op], rounds: int) -> dict[str, dict[str, float]]:
    """Each op once per round, interleaved, order rotating; median ms and mean CPU us per op."""
    names = list(ops)
    wall: dict[str, list[float]] = {n: [] for n in names}
    cpu = dict.fromkeys(names, 0.0)
    for r in range(rounds + 1):  # round 0 warms up
        shift = r % len(names)
        for name in names[shift:] + names[:shift]:
            start, start_cpu = time.perf_counter(), time.process_time()
            await ops[name]()
            if r:
                wall[name].append((time.perf_counter() - start) * 1000)
                cpu[name] += time.process_time() - start_cpu
    return {
        n: {"median_ms": round(statistics.median(w), 3), "cpu_us": round(cpu[n] / len(w) * 1e6, 1)}
        for n, w in wall.items()
    }


def operations(store: ThreadStore, threads: int) -> dict[str, Op]:
    middle = threads // 2

    async def rare() -> None:
        hits = await store.search(RARE)
        assert len(hits) == 10, len(hits)

    async def common() -> None:
        assert len(await store.search(COMMON, limit=20)) == 20

    async def title() -> None:
        assert len(await store.search_by_title(f"Case {middle:07d} ")) == 1

    async def content() -> None:
        assert len(await store.search_by_content(f"k{middle}x3 ", literal=True)) == 1

    async def attributes() -> None:
        assert len(await store.find_by_attributes({"customer_id": f"cust_{middle}"})) == 1

    return {
        f"search: a word in 10 messages ({RARE})": rare,
        f"search: top 20 of a word in 4/5 messages ({COMMON})": common,
        "search_by_title (1 match)": title,
        "search_by_content (1 match)": content,
        "find_by_attributes (1 match)": attributes,
    }


async def pg_url(server: str, stem: str, size: str, *, create: bool) -> str:
    import asyncpg

    name = f"{stem}_{size}"  # --name and SIZES' keys, the bench's own options
    admin = await asyncpg.connect(server)
    try:
        exists = await admin.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name)
        if create and not exists:
            await admin.execute(f'CREATE DATABASE "{name}"')
        if not create and exists:
            await admin.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
    finally:
        await admin.close()
    return server.rsplit("/", 1)[0] + "/" + name


async def load(url: str, messages: int, rounds: int) -> dict[str, Any]:
    """Seed the store unless kept; when seeded now, time the first search and the searches right
    after the load; then wait for the indexer to catch up."""
    threads = messages // PER_THREAD
    async with await ThreadStore.create(url) as store:
        loaded = await seed(store, messages)
        out: dict[str, Any] = {"messages": messages, "seed_s": round(loaded, 1)}
        if loaded:
            out["queued_after_load"] = await queued(url)
            started = time.perf_counter()
            await operations(store, threads)[f"search: a word in 10 messages ({RARE})"]()
            out["first search after load ms"] = round((time.perf_counter() - started) * 1000, 1)
            out["after load"] = await measure(operations(store, threads), rounds)
        waited = time.perf_counter()
        while await queued(url):
            await asyncio.sleep(0.5)
        out["indexer wait s"] = round(time.perf_counter() - waited, 1)
    return out


async def caught_up(urls: dict[str, str], rounds: int) -> dict[str, dict[str, dict[str, float]]]:
    """Every search on every size's store, interleaved in one call (the shared machine's load
    falls on all sizes alike, so the ratios between sizes hold): size -> search -> figures."""
    stores = {size: await ThreadStore.create(url) for size, url in urls.items()}
    try:
        ops = {
            f"{name} @{size}": op
            for size, store in stores.items()
            for name, op in operations(store, SIZES[size] // PER_THREAD).items()
        }
        # The word in most messages reads most of a large store, evicting the others' pages
        # from PostgreSQL's buffers: it runs in a call of its own (a word in 10 messages took
        # 15 ms at a million interleaved with it, 2-4 ms without).
        common = {k: op for k, op in ops.items() if COMMON in k}
        measured = await measure({k: op for k, op in ops.items() if k not in common}, rounds)
        measured.update(await measure(common, rounds))
    finally:
        for store in stores.values():
            await store.close()
    by_size: dict[str, dict[str, dict[str, float]]] = {}
    for key, figures in measured.items():
        name, _, size = key.rpartition(" @")
        by_size.setdefault(size, {})[name] = figures
    return by_size


async def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.size", description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="10k,200k,1m", help="among " + ", ".join(SIZES))
    parser.add_argument("--backends", default="postgres,sqlite")
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--dir", default=os.environ.get("TMPDIR", "/tmp"), help="where SQLite stores live")
    parser.add_argument("--drop", action="store_true", help="remove the kept stores and exit")
    parser.add_argument("--name", default="threadstore_size", help="the kept stores' name: NAME_<size>")
    parser.add_argument(
        "--out", default=str(Path(__file__).parent / "results" / "size.json"), help="merged into"
    )
    parser.add_argument(
        "--write-docs", action="store_true", help="docs/performance.md's size table from --out; run nothing"
    )
    args = parser.parse_args()
    if args.write_docs:
        from bench import docs

        print(docs.write_size(Path(args.out)))
        return
    server = os.environ.get("THREADSTORE_BENCH_PG_URL", DEFAULT_PG)
    sizes = args.sizes.split(",")
    out = Path(args.out)
    results: dict[str, Any] = json.loads(out.read_text()) if out.exists() else {"results": {}}
    results["run_at"] = datetime.now(UTC).isoformat(timespec="seconds")
    for backend in args.backends.split(","):
        urls: dict[str, str] = {}
        for size in sizes:
            path = Path(args.dir) / f"{args.name}_{size}.db"
            if args.drop:
                if backend == "postgres":
                    await pg_url(server, args.name, size, create=False)
                else:
                    for suffix in ("", "-wal", "-shm"):
                        Path(f"{path}{suffix}").unlink(missing_ok=True)
                continue
            urls[size] = (
                await pg_url(server, args.name, size, create=True)
                if backend == "postgres"
                else f"sqlite+aiosqlite:///{path}"
            )
            result = await load(urls[size], SIZES[size], args.rounds)
            # A kept store was not loaded now: its figures right after the load stay.
            results["results"].setdefault(backend, {}).setdefault(size, {}).update(result)
            print(backend, size, json.dumps(result, indent=1), flush=True)
        if urls:
            for size, figures in (await caught_up(urls, args.rounds)).items():
                results["results"][backend][size]["caught up"] = figures
                print(backend, size, "caught up", json.dumps(figures, indent=1), flush=True)
    if not args.drop:
        out.write_text(json.dumps(results, indent=1) + "\n")


if __name__ == "__main__":
    asyncio.run(main())
