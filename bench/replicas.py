"""What ``replicas=`` costs, on a primary + streaming hot standby of the bench's own.

    .venv/bin/python bench/replicas.py [--ops 500] [--rounds 5]

Starts the pair with tests/reliability/support.StandbyPair (initdb, pg_basebackup -R, pg_ctl, as
the postgres user when root) and, in one process, interleaves rounds of the same work through a
store without replicas and one with ``replicas=[standby]``: save (one message appended), get
right after that save (the gate asks the replica, one round trip, and falls back to the
primary when it has not replayed the save yet), get of settled data (the gate's answer is
reused for a second). Medians per op of wall time and of client CPU (``time.process_time``).
Also: the raw round trips the two cost (pg_current_wal_lsn() on the primary after a write, the
replica_state query), and how often a plain read of the standby right after a commit is stale.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import asyncpg

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.reliability.support import StandbyPair
from threadstore import Message, Thread, ThreadStore
from threadstore.queries import load


async def timed(ops: int, step: Callable[[int], Awaitable[object]]) -> tuple[float, float]:
    """(median wall, median CPU) per op, microseconds."""
    walls, cpus = [], []
    for index in range(ops):
        wall, cpu = time.perf_counter(), time.process_time()
        await step(index)
        walls.append(time.perf_counter() - wall)
        cpus.append(time.process_time() - cpu)
    return statistics.median(walls) * 1e6, statistics.median(cpus) * 1e6


async def main(ops: int, rounds: int) -> None:
    pair = StandbyPair("threadstore-bench-replicas-")
    try:
        primary, standby = pair.url("primary"), pair.url("standby")
        plain = await ThreadStore.create(primary)
        routed = await ThreadStore.create(primary, replicas=[standby])
        results: dict[str, dict[str, list[tuple[float, float]]]] = {}
        for round_ in range(rounds):
            for name, store in (
                (("without", plain), ("with", routed))
                if round_ % 2
                else (("with", routed), ("without", plain))
            ):
                thread = Thread(id=f"{name}-{round_}")
                await store.save(thread)

                async def save(index: int, store: ThreadStore = store, thread: Thread = thread) -> None:
                    thread.add_message(Message(role="user", content=f"message {index}"))
                    await store.save(thread)

                async def save_get(index: int, store: ThreadStore = store, prefix: str = thread.id) -> None:
                    small = Thread(id=f"{prefix}-{index}")
                    small.add_message(Message(role="user", content=f"one of many {index}"))
                    await store.save(small)
                    await store.get(small.id)

                async def get(index: int, store: ThreadStore = store, prefix: str = thread.id) -> None:
                    await store.get(f"{prefix}-{index}")

                side = results.setdefault(name, {})
                side.setdefault("save", []).append(await timed(ops, save))
                side.setdefault("save + get", []).append(await timed(ops, save_get))
                await asyncio.sleep(1.1)  # the standby replays; the gate's answer gets stale
                side.setdefault("get (settled)", []).append(await timed(ops, get))
        await plain.close()
        await routed.close()

        print(f"{ops} ops x {rounds} rounds, interleaved; medians of the rounds' medians, us per op")
        print(
            f"{'step':<16}{'without':>10}{'with':>10}{'ratio':>8}{'CPU w/o':>10}{'CPU with':>10}{'ratio':>8}"
        )
        for step in results["with"]:
            wo = [statistics.median(v[i] for v in results["without"][step]) for i in (0, 1)]
            wi = [statistics.median(v[i] for v in results["with"][step]) for i in (0, 1)]
            print(
                f"{step:<16}{wo[0]:>10.0f}{wi[0]:>10.0f}{wi[0] / wo[0]:>8.2f}"
                f"{wo[1]:>10.0f}{wi[1]:>10.0f}{wi[1] / wo[1]:>8.2f}"
            )

        queries = load("postgres")
        conn = await asyncpg.connect(primary)
        replica = await asyncpg.connect(standby)
        try:
            await conn.execute("CREATE TABLE IF NOT EXISTS bench_lag (n int)")
            lsn = queries["postgres.write_position"].sql
            state = queries["postgres.replica_state"].sql
            write_position = (await timed(ops, lambda _: conn.fetchval(lsn)))[0]
            replica_state = (await timed(ops, lambda _: replica.fetchrow(state)))[0]
            print(f"pg_current_wal_lsn() round trip: {write_position:.0f} us")
            print(f"replica_state round trip:       {replica_state:.0f} us")
            stale = 0
            for index in range(ops):
                await conn.execute("INSERT INTO bench_lag VALUES ($1)", index)
                stale += not await replica.fetchval(
                    "SELECT exists(SELECT FROM bench_lag WHERE n = $1)", index
                )
            print(f"plain standby read right after a commit: stale {stale} of {ops}")
        finally:
            await conn.close()
            await replica.close()
    finally:
        pair.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--ops", type=int, default=500)
    parser.add_argument("--rounds", type=int, default=5)
    arguments = parser.parse_args()
    asyncio.run(main(arguments.ops, arguments.rounds))
