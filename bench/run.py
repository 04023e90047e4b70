"""``make bench``: threadstore against the raw-driver floors on PostgreSQL and a SQLite file.

    python -m bench [--quick] [--peers] [--backends postgres,sqlite] [--only STEP,...]
    python -m bench --markdown RESULTS | --write-docs RESULTS

PostgreSQL comes from THREADSTORE_BENCH_PG_URL (default: the local server); the bench creates its
own databases there (threadstore's, the minimal floor's, the peers') and drops them at the end.
Prints the table of medians and ratios to the minimal and the same-schema floor, and writes the
results with the machine's facts to bench/results/latest.json (quick.json with --quick; --out
FILE elsewhere). ``--write-docs RESULTS`` regenerates
bench/README.md and docs/performance.md's table from a results file.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import json
import os
import platform
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from bench import report, workloads
from bench.floor import PgFloor, SqliteFloor
from bench.harness import Result, Settings
from bench.minimal import MinimalPgFloor, MinimalSqliteFloor
from bench.workloads import Env
from threadstore import ThreadStore

DEFAULT_PG = "postgresql://postgres@127.0.0.1:5432/postgres"
RESULTS = Path(__file__).parent / "results"
STEPS = ("save", "append", "get", "concurrent", "store", "bounded", "agents")


@dataclass(frozen=True)
class Plan:
    quick: bool
    settings: Settings
    append_sizes: tuple[int, ...] = (10, 1_000, 10_000)
    get_sizes: tuple[int, ...] = (10, 100, 1_000)
    store_sizes: tuple[int, ...] = (1_000, 10_000, 100_000)
    page_sizes: tuple[int, ...] = (20_000, 100_000)  # list_threads page 1 vs 40 (after "store")
    concurrency_rounds: int = 5
    ops_per_task: int = 10
    import_runs: int = 10


# One operation per side per round: the sides alternate operation by operation, so a burst of
# load on this shared machine hits them alike.
FULL = Plan(quick=False, settings=Settings(warmup=1, rounds=300, min_rounds=5, batch=1, budget=2.5))
QUICK = Plan(
    quick=True,
    settings=Settings(warmup=1, rounds=20, min_rounds=3, batch=1, budget=0.2),
    store_sizes=(1_000,),
    page_sizes=(20_000,),
    concurrency_rounds=1,
    ops_per_task=2,
    import_runs=3,
)


def import_time(runs: int) -> dict[str, Any]:
    """``import threadstore`` in fresh interpreters (median and fastest wall time), whether it
    loaded a driver, and ``import msgspec`` alone (its one import-time dependency) for scale;
    the two alternate, so load on the machine hits both alike."""

    def once(module: str) -> tuple[float, bool]:
        code = (
            "import sys, time; t = time.perf_counter(); import " + module + "; "
            "t = time.perf_counter() - t; "
            "print(t * 1000, any(m in sys.modules for m in ('asyncpg', 'aiosqlite', 'sqlite3')))"
        )
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
        elapsed, loaded = out.stdout.split()
        return float(elapsed), loaded == "True"

    times, baseline, drivers = [], [], False
    for _ in range(runs):
        elapsed, loaded = once("threadstore")
        times.append(elapsed)
        drivers = drivers or loaded
        baseline.append(once("msgspec")[0])
    return {
        "median_ms": round(statistics.median(times), 2),
        "min_ms": round(min(times), 2),
        "runs_ms": [round(t, 2) for t in times],
        "drivers_imported": drivers,
        "msgspec_median_ms": round(statistics.median(baseline), 2),
    }


@contextlib.asynccontextmanager
async def pg_database(server: str) -> AsyncIterator[str]:
    """A fresh database on ``server`` for this run, dropped afterwards (with its connections)."""
    import asyncpg

    # The name is generated here, never user input; CREATE DATABASE takes no bind parameters.
    name = f"threadstore_bench_{uuid.uuid4().hex[:10]}"
    admin = await asyncpg.connect(server)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    try:
        yield urlunsplit(urlsplit(server)._replace(path=f"/{name}"))
    finally:
        admin = await asyncpg.connect(server)
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await admin.close()


async def pg_version(url: str) -> str:
    import asyncpg

    conn = await asyncpg.connect(url)
    try:
        version: str = await conn.fetchval("SHOW server_version")
    finally:
        await conn.close()
    return version


async def run_backend(
    backend: str, url: str, floor: Any, minimal: Any, plan: Plan, only: set[str], peers: list[Any]
) -> list[Result]:
    store = await ThreadStore.create(url)
    await floor.open()
    await minimal.open()
    for peer in peers:
        await peer.open()
    env = Env(
        backend=backend,
        store=store,
        floor=floor,
        minimal=minimal,
        settings=plan.settings,
        peers=peers,
        full=not plan.quick,
    )
    results: list[Result] = []
    steps: list[tuple[str, Callable[[], Awaitable[list[Result]]]]] = [
        ("save", lambda: workloads.save_new(env)),
        *[("append", lambda s=s: workloads.append(env, s)) for s in plan.append_sizes],
        *[("get", lambda s=s: workloads.get(env, s)) for s in plan.get_sizes],
        ("concurrent", lambda: workloads.concurrent(env, plan.concurrency_rounds, plan.ops_per_task)),
    ]

    async def grow(size: int) -> None:
        started = time.perf_counter()
        await workloads.grow_store(env, size)
        print(
            f"  {time.perf_counter() - started:5.1f}s {backend:8} seeded the store to {size:,} threads",
            flush=True,
        )

    try:
        # Every workload runs on a store that already holds threads and has statistics, as a
        # service's database does: on a new, empty database PostgreSQL would prepare its generic
        # plans for empty tables (see PgFloor.settle).
        await grow(plan.store_sizes[0])
        for step, run in steps:
            if step in only:
                results += await run()
        if "bounded" in only:
            results += await workloads.message_pages(env)
        if "agents" in only and peers:
            results += await workloads.agents_turn(env)
        store_sizes = plan.store_sizes if "store" in only else ()
        page_sizes = plan.page_sizes if "bounded" in only else ()
        for size in sorted({*store_sizes, *page_sizes}):  # the seeded store only grows
            if size > env.store_size:
                await grow(size)
            if size in store_sizes:
                results += await workloads.store_reads(env)
            if size in page_sizes:
                results += await workloads.thread_pages(env)
    finally:
        for peer in peers:
            await peer.close()
        await minimal.close()
        await floor.close()
        await store.close()
    return results


def machine_facts(versions: dict[str, str]) -> dict[str, Any]:
    cpu = "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    packages = {}
    for name in (
        "threadstore",
        "asyncpg",
        "aiosqlite",
        "msgspec",
        "langchain-postgres",
        "psycopg",
        "slide-narrator",
        "openai-agents",
        "sqlalchemy",
    ):
        with contextlib.suppress(metadata.PackageNotFoundError):
            packages[name] = metadata.version(name)
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=Path(__file__).parent
    ).stdout.strip()
    return {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "cpu_count": os.cpu_count(),
        "cpu": cpu,
        "load_average": list(os.getloadavg()),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "postgresql": versions.get("postgres"),
        "sqlite": sqlite3.sqlite_version,
        "packages": packages,
        "commit": commit or None,
    }


async def amain(args: argparse.Namespace) -> int:
    plan = QUICK if args.quick else FULL
    if args.store_sizes:
        plan = dataclasses.replace(plan, store_sizes=tuple(int(n) for n in args.store_sizes.split(",")))
    only = set(args.only.split(",")) if args.only else set(STEPS)
    backends = args.backends.split(",")
    started = time.perf_counter()
    print(
        f"threadstore bench ({'quick' if plan.quick else 'full'}): interleaved rounds, "
        "medians in ms (ops/s for the concurrent workload)",
        flush=True,
    )
    imports = import_time(plan.import_runs)
    print(f"  import threadstore: {imports['median_ms']:.1f} ms (median of {plan.import_runs})", flush=True)

    from bench import peers as peer_sides

    results: list[Result] = []
    versions: dict[str, str] = {}
    if "postgres" in backends:
        server = os.environ.get("THREADSTORE_BENCH_PG_URL") or DEFAULT_PG
        try:
            versions["postgres"] = await pg_version(server)
        except Exception as exc:  # any failure to connect: skip PostgreSQL
            if os.environ.get("THREADSTORE_BENCH_PG_URL"):
                raise
            print(f"  PostgreSQL skipped: no server at {DEFAULT_PG} ({exc})", flush=True)
        else:
            async with contextlib.AsyncExitStack() as stack:
                url = await stack.enter_async_context(pg_database(server))
                minimal_url = await stack.enter_async_context(pg_database(server))
                peers = (
                    peer_sides.postgres(await stack.enter_async_context(pg_database(server)))
                    if args.peers
                    else []
                )
                results += await run_backend(
                    "postgres", url, PgFloor(url), MinimalPgFloor(minimal_url), plan, only, peers
                )
    if "sqlite" in backends:
        with tempfile.TemporaryDirectory(prefix="threadstore-bench-") as tmp:
            path = os.path.join(tmp, "bench.db")
            peers = peer_sides.sqlite(tmp) if args.peers else []
            results += await run_backend(
                "sqlite",
                f"sqlite+aiosqlite:///{path}",
                SqliteFloor(path),
                MinimalSqliteFloor(os.path.join(tmp, "minimal.db")),
                plan,
                only,
                peers,
            )
    facts = machine_facts(versions)
    elapsed = time.perf_counter() - started
    print()
    print(report.table(results, imports, facts, elapsed))
    name = "quick.json" if plan.quick else "latest.json"  # peers run interleaved: one file
    out = Path(args.out) if args.out else RESULTS / name
    out.parent.mkdir(parents=True, exist_ok=True)
    document = {
        "format": report.FORMAT,
        "mode": "quick" if plan.quick else "full",
        "machine": facts,
        "elapsed_s": round(elapsed, 1),
        "import_threadstore": imports,
        "results": [r.row() for r in results],
        "ratios": report.ratios(results),
    }
    out.write_text(json.dumps(document, indent=1) + "\n")
    print(f"\nresults: {out} ({elapsed:.0f} s)")
    return 0


def main(argv: list[str] | None = None) -> int:
    # SIGTERM unwinds like Ctrl-C, so the bench's database is still dropped.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--quick",
        action="store_true",
        default=os.environ.get("QUICK") == "1",
        help="a smoke run of about a minute (also QUICK=1)",
    )
    parser.add_argument(
        "--peers",
        action="store_true",
        default=os.environ.get("PEERS") == "1",
        help="also measure slide-narrator, langchain-postgres and the OpenAI Agents SDK's sessions "
        "(also PEERS=1)",
    )
    parser.add_argument("--backends", default="postgres,sqlite")
    parser.add_argument("--only", help=f"comma-separated steps among {', '.join(STEPS)}")
    parser.add_argument("--out", help="where to write the JSON results")
    parser.add_argument(
        "--store-sizes",
        help="comma-separated thread counts of the seeded store, in "
        "increasing order (4 messages each; default 1000,10000,100000)",
    )
    parser.add_argument(
        "--markdown",
        metavar="RESULTS",
        help="print a results file's full tables in Markdown (as in bench/README.md), and run nothing",
    )
    parser.add_argument(
        "--write-docs",
        metavar="RESULTS",
        help="regenerate bench/README.md and the "
        "table between docs/performance.md's bench markers from a results file, "
        "and run nothing",
    )
    args = parser.parse_args(argv)
    if args.markdown:
        print(report.markdown(json.loads(Path(args.markdown).read_text())))
        return 0
    if args.write_docs:
        from bench import docs

        for path in docs.write(Path(args.write_docs)):
            print(f"wrote {path}")
        return 0
    return asyncio.run(amain(args))
