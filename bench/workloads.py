"""The workloads: for each one, how every side prepares and runs one operation.

A backend's ``Env`` holds the threadstore store, the same-schema floor (on threadstore's
database), the minimal floor (its own tables, in a database or file of its own) and the optional
peers (their own databases). Each workload seeds what it needs with the floors' bulk loaders (not
timed; threadstore reads what the same-schema floor loads) and gives every side its own threads
where an operation writes, so every side's threads have the same size when measured.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from bench import data
from bench.harness import Burst, Op, Prep, Result, Settings, latency, throughput
from threadstore import Thread, ThreadStore

Rows = list[tuple[dict[str, Any], list[dict[str, Any]]]]


MAIN = ("threadstore", "minimal", "floor")


@dataclass
class Env:
    backend: str  # "postgres" or "sqlite"
    store: ThreadStore
    floor: Any  # PgFloor or SqliteFloor: the same-schema floor
    minimal: Any  # MinimalPgFloor or MinimalSqliteFloor
    settings: Settings
    peers: list[Any] = field(default_factory=list)
    store_size: int = 0  # threads seeded for the list/search/stats workloads so far
    full: bool = True  # False in a quick run: fewer fixture threads

    async def measure(self, workload: str, sides: dict[str, Prep | None]) -> list[Result]:
        """threadstore, the minimal floor and the same-schema floor interleaved in one call; then
        each peer interleaved with threadstore and the minimal floor, so that a slow peer neither
        uses up the main sides' time budget nor is compared across calls. A peer's result keeps
        the medians of its call's threadstore and minimal floor (``paired``) for its ratios."""
        present = {name: prep for name, prep in sides.items() if prep is not None}
        results = await latency(
            workload, self.backend, {n: present.pop(n) for n in MAIN if n in present}, self.settings
        )
        _progress(results)
        companions = {n: p for n in ("threadstore", "minimal") if (p := sides.get(n)) is not None}
        for name, prep in present.items():
            trio = await latency(workload, self.backend, {**companions, name: prep}, self.settings)
            _progress(trio)
            peer = next(r for r in trio if r.side == name)
            peer.extra["paired"] = {r.side: round(r.median, 4) for r in trio if r.side != name}
            results.append(peer)
        return results

    async def peer_preps(self, method: str, *args: Any) -> dict[str, Prep | None]:
        """Each peer's preparer for a workload (after its set-up), where the peer supports it."""
        return {p.name: await getattr(p, method)(*args) for p in self.peers if hasattr(p, method)}

    async def seed(self, rows: Rows, minimal_rows: Rows) -> None:
        """Fixtures (not timed): ``rows`` into threadstore's schema, ``minimal_rows`` into the
        minimal floor's tables."""
        await self.floor.seed(rows)
        await self.minimal.seed(minimal_rows)

    async def delete(self, ids: list[str], minimal_ids: list[str]) -> None:
        await self.floor.delete_threads(ids)
        await self.minimal.delete_threads(minimal_ids)


_START = time.perf_counter()


def _progress(results: list[Result]) -> None:
    first = results[0]
    parts = ", ".join(f"{r.side} {r.median:.3f}" for r in results)
    print(
        f"  {time.perf_counter() - _START:5.0f}s {first.backend:8} {first.workload:36} {parts} "
        f"{first.unit} (n={first.samples})",
        flush=True,
    )


def fixture_rows(count: int, size: int, base: datetime = data.EPOCH) -> Rows:
    """``count`` threads of ``size`` messages as plain rows (each with a fresh thread number)."""
    rows: Rows = []
    for _ in range(count):
        thread_id, number = data.new_id(), data.fresh_number()
        rows.append(
            (
                data.thread_row(thread_id, number, size, base),
                [data.message_row(thread_id, number, n) for n in range(1, size + 1)],
            )
        )
    return rows


# -- writes -------------------------------------------------------------------------------------


async def save_new(env: Env) -> list[Result]:
    """Save a new thread of 10 messages."""

    created: list[str] = []
    minimal_created: list[str] = []

    async def threadstore(i: int) -> Op:
        thread = data.new_thread(data.fresh_number(), 10)
        created.append(thread.id)
        return lambda: env.store.save(thread)

    def raw(floor: Any, ids: list[str]) -> Prep:
        """A floor's save: plain rows of a new thread, its id kept in ``ids`` for deleting."""

        async def prep(i: int) -> Op:
            thread_id, number = data.new_id(), data.fresh_number()
            thread = data.thread_row(thread_id, number, 10)
            messages = [data.message_row(thread_id, number, n) for n in range(1, 11)]
            ids.append(thread_id)
            return lambda: floor.save_new(thread, messages)

        return prep

    floor, minimal = raw(env.floor, created), raw(env.minimal, minimal_created)

    results = await env.measure(
        "save new thread (10 msgs)",
        {"threadstore": threadstore, "minimal": minimal, "floor": floor, **await env.peer_preps("save_new")},
    )
    await env.delete(created, minimal_created)
    return results


async def append(env: Env, size: int) -> list[Result]:
    """Append one message to a stored thread of ``size`` messages: through a save of the loaded
    thread, and through ``append()``; each side appends to threads of its own."""
    # Spread the appends over threads so that each grows by 2% at most (fewer in a quick run).
    count = max(2, min(50, 20_000 // size)) if env.full else max(1, min(10, 2_000 // size))
    floor_rows, save_rows, append_rows, minimal_rows = (fixture_rows(count, size) for _ in range(4))
    await env.seed(floor_rows + save_rows + append_rows, minimal_rows)
    loaded: list[Thread] = []
    for row, _ in save_rows:
        thread = await env.store.get(row["id"])
        assert thread is not None and len(thread.messages) == size
        loaded.append(thread)
    every = floor_rows + save_rows + append_rows + minimal_rows
    next_n = {row["id"]: size + 1 for row, _ in every}
    numbers = {row["id"]: data.fresh_number() for row, _ in every}

    def message_no(thread_id: str) -> tuple[int, int]:
        n = next_n[thread_id]
        next_n[thread_id] = n + 1
        return numbers[thread_id], n

    async def via_save(i: int) -> Op:
        thread = loaded[i % count]
        thread.add_message(data.new_message(*message_no(thread.id)))
        return lambda: env.store.save(thread)

    async def via_append(i: int) -> Op:
        thread_id = append_rows[i % count][0]["id"]
        message = data.new_message(*message_no(thread_id))
        return lambda: env.store.append(thread_id, message)

    def raw(floor: Any, rows: Rows) -> Prep:
        """A floor's append: one message row to one of its own ``rows``' threads."""

        async def prep(i: int) -> Op:
            thread_id = rows[i % count][0]["id"]
            message = data.message_row(thread_id, *message_no(thread_id))
            now = datetime.now(UTC)
            return lambda: floor.append(thread_id, message, now)

        return prep

    floor, minimal = raw(env.floor, floor_rows), raw(env.minimal, minimal_rows)

    # Peers that add a message without loading the thread (langchain-postgres) run in both
    # rows; those that save a loaded thread (slide-narrator) only in the save() row.
    results = await env.measure(
        f"append 1 msg to {size:,}: save()",
        {"threadstore": via_save, "minimal": minimal, "floor": floor, **await env.peer_preps("append", size)},
    )
    results += await env.measure(
        f"append 1 msg to {size:,}: append()",
        {
            "threadstore": via_append,
            "minimal": minimal,
            "floor": floor,
            **await env.peer_preps("append_direct", size),
        },
    )
    await env.delete(
        [row["id"] for row, _ in floor_rows + save_rows + append_rows], [row["id"] for row, _ in minimal_rows]
    )
    return results


# -- reads --------------------------------------------------------------------------------------


async def get(env: Env, size: int) -> list[Result]:
    """Read a thread of ``size`` messages (both sides read the same threads)."""
    count = max(2, min(10, 4_000 // size)) if env.full else 1
    rows = fixture_rows(count, size)
    await env.seed(rows, rows)  # the same threads in both schemas
    ids = [row["id"] for row, _ in rows]
    for thread_id in ids[:2]:  # every side reads the same thing
        thread, doc = await env.store.get(thread_id), await env.floor.get(thread_id)
        mini = await env.minimal.get(thread_id)
        assert thread is not None and len(thread.messages) == len(doc["messages"]) == size
        assert [m["content"] for m in mini["messages"]] == [m.content for m in thread.messages]

    async def threadstore(i: int) -> Op:
        thread_id = ids[i % count]
        return lambda: env.store.get(thread_id)

    async def floor(i: int) -> Op:
        thread_id = ids[i % count]
        return lambda: env.floor.get(thread_id)

    async def minimal(i: int) -> Op:
        thread_id = ids[i % count]
        return lambda: env.minimal.get(thread_id)

    peers = await env.peer_preps("get", size)
    results = await env.measure(
        f"get thread of {size:,} msgs",
        {"threadstore": threadstore, "minimal": minimal, "floor": floor, **peers},
    )
    await env.delete(ids, ids)
    return results


# -- concurrency ----------------------------------------------------------------------------------

TASKS = 32


async def concurrent(env: Env, rounds: int, ops_per_task: int) -> list[Result]:
    """32 tasks at once, each doing get + append (one save of the loaded thread) on a thread of
    its own, against one pool (SQLite: one connection). Operations (get+append pairs) per second."""
    floor_rows, store_rows, minimal_rows = (fixture_rows(TASKS, 10) for _ in range(3))
    await env.seed(floor_rows + store_rows, minimal_rows)
    numbers = {row["id"]: [data.fresh_number(), 11] for row, _ in floor_rows + store_rows + minimal_rows}

    def next_message(thread_id: str) -> tuple[int, int]:
        entry = numbers[thread_id]
        entry[1] += 1
        return entry[0], entry[1] - 1

    async def run(tasks: list[Callable[[], Awaitable[None]]]) -> float:
        start = time.perf_counter()
        await asyncio.gather(*(task() for task in tasks))
        return TASKS * ops_per_task / (time.perf_counter() - start)

    async def threadstore() -> float:
        def task(thread_id: str) -> Callable[[], Awaitable[None]]:
            messages = [data.new_message(*next_message(thread_id)) for _ in range(ops_per_task)]

            async def go() -> None:
                for message in messages:
                    thread = await env.store.get(thread_id)
                    assert thread is not None
                    thread.add_message(message)
                    await env.store.save(thread)

            return go

        return await run([task(row["id"]) for row, _ in store_rows])

    def raw(side: Any, rows: Rows) -> Burst:
        async def burst() -> float:
            def task(thread_id: str) -> Callable[[], Awaitable[None]]:
                messages = [
                    data.message_row(thread_id, *next_message(thread_id)) for _ in range(ops_per_task)
                ]

                async def go() -> None:
                    for message in messages:
                        await side.get(thread_id)
                        await side.append(thread_id, message, datetime.now(UTC))

                return go

            return await run([task(row["id"]) for row, _ in rows])

        return burst

    sides: dict[str, Burst] = {
        "threadstore": threadstore,
        "minimal": raw(env.minimal, minimal_rows),
        "floor": raw(env.floor, floor_rows),
    }
    results = await throughput(f"{TASKS} tasks get+append", env.backend, sides, rounds)
    _progress(results)
    await env.delete(
        [row["id"] for row, _ in floor_rows + store_rows], [row["id"] for row, _ in minimal_rows]
    )
    return results


# -- the seeded store: list, searches, lookups, stats ------------------------------------------------

GROWTH_MESSAGES = 4  # messages per thread of the seeded store


async def grow_store(env: Env, size: int) -> None:
    """Seed the list/search store up to ``size`` threads (numbered 0..size-1), in chunks."""
    chunk = 5_000
    for start in range(env.store_size, size, chunk):
        rows: Rows = []
        aliases = []
        for i in range(start, min(size, start + chunk)):
            thread_id = f"store-{i:07d}"
            rows.append(
                (
                    data.thread_row(thread_id, i, GROWTH_MESSAGES, data.FUTURE),
                    [data.message_row(thread_id, i, n) for n in range(1, GROWTH_MESSAGES + 1)],
                )
            )
            aliases.append((f"order-{i}", thread_id))
        await env.floor.seed(rows, aliases, settle=False)
        await env.minimal.seed(rows, settle=False)
    await env.floor.settle()
    await env.minimal.settle()
    env.store_size = size
    thread = await env.store.get("store-0000000")
    assert thread is not None and len(thread.messages) == GROWTH_MESSAGES


async def store_reads(env: Env) -> list[Result]:
    """list 20 (and the search/lookup/stats operations threadstore has) on the seeded store."""
    size = env.store_size
    suffix = f" @{size:,}"
    results = []

    async def ts_list(i: int) -> Op:
        return lambda: env.store.list(limit=20)

    async def floor_list(i: int) -> Op:
        return lambda: env.floor.list(20)

    async def minimal_list(i: int) -> Op:
        return lambda: env.minimal.list(20)

    peers = await env.peer_preps("list")
    results += await env.measure(
        "list 20 threads" + suffix,
        {"threadstore": ts_list, "minimal": minimal_list, "floor": floor_list, **peers},
    )
    for workload in SEARCHES:
        if hasattr(env.store, workload.method):
            results += await workload.run(env, suffix)
    return results


@dataclass(frozen=True)
class Search:
    """A store-wide read: threadstore's method and argument, and the floor's SQL per dialect
    (filled in from the query-surface issue's statements once they exist)."""

    method: str
    label: str
    args: Callable[[int, int], tuple[Any, ...]]  # (operation number, store size) -> arguments
    floor: Callable[[Env, tuple[Any, ...]], Awaitable[Any]] | None = None

    async def run(self, env: Env, suffix: str) -> list[Result]:
        size = env.store_size

        async def threadstore(i: int) -> Op:
            args = self.args(i, size)
            method = getattr(env.store, self.method)
            return lambda: method(*args)

        floor: Prep | None = None
        if self.floor is not None:
            run_floor = self.floor

            async def floor(i: int) -> Op:
                args = self.args(i, size)
                return lambda: run_floor(env, args)

        return await env.measure(self.label + suffix, {"threadstore": threadstore, "floor": floor})


def _spread(i: int, size: int) -> int:
    return (i * 7919) % size  # a different thread each time, all over the store


# Each asks for something a constant number of threads match at every store size (thread k's
# own title, message, attribute, alias), so a flat cost means an index found it.
SEARCHES = [
    Search(
        "search_by_title",
        "search_by_title (1 match)",
        lambda i, size: (f"question {_spread(i, size)} from",),
        lambda env, args: env.floor.search_by_title(*args),
    ),
    Search(
        "search_by_content",
        "search_by_content (1 match)",
        lambda i, size: (f"#{_spread(i, size)}-1 has",),
        lambda env, args: env.floor.search_by_content(*args),
    ),
    Search(
        "find_by_attributes",
        "find_by_attributes (1 match)",
        lambda i, size: ({"customer_id": f"cust_{_spread(i, size)}"},),
        lambda env, args: env.floor.find_by_attributes(*args),
    ),
    Search(
        "get_by_alias",
        "get_by_alias",
        lambda i, size: (f"order-{_spread(i, size)}",),
        lambda env, args: env.floor.get_by_alias(*args),
    ),
    # Two threads' numbers: each is a word of its thread's 4 messages and of no other message.
    Search(
        "search",
        "search, full text (8 matches)",
        lambda i, size: (f"{64 + _spread(i, size - 64)} OR {64 + _spread(i + 1, size - 64)}",),
        lambda env, args: env.floor.search_words(args[0].split(" OR ")),
    ),
    Search(
        "get_usage_stats",
        "get_usage_stats",
        lambda i, size: (),
        lambda env, args: env.floor.get_usage_stats(),
    ),
]


# -- bounded reads (issue 15) ------------------------------------------------------------------------

PAGE = 50


async def message_pages(env: Env) -> list[Result]:
    """The last 50 messages of a thread of 100 and of 100,000 (get_messages against the minimal
    floor's ``ORDER BY sequence DESC LIMIT 50``), and get(last=50) of the long one."""
    sizes = (100, 100_000)
    rows = {size: fixture_rows(1, size) for size in sizes}
    every = [row for size in sizes for row in rows[size]]
    await env.seed(every, every)  # the same threads in both schemas
    ids = {size: rows[size][0][0]["id"] for size in sizes}
    for size, thread_id in ids.items():  # every side reads the same thing
        page = await env.store.get_messages(thread_id, limit=PAGE)
        mini = await env.minimal.last_messages(thread_id, PAGE)
        assert (
            [m.sequence for m in page]
            == [m["sequence"] for m in mini]
            == list(range(size - PAGE + 1, size + 1))
        )
        assert [m.content for m in page] == [m["content"] for m in mini]

    results = []
    for size, thread_id in ids.items():

        async def threadstore(i: int, thread_id: str = thread_id) -> Op:
            return lambda: env.store.get_messages(thread_id, limit=PAGE)

        async def minimal(i: int, thread_id: str = thread_id) -> Op:
            return lambda: env.minimal.last_messages(thread_id, PAGE)

        results += await env.measure(
            f"last {PAGE} of {size:,} msgs", {"threadstore": threadstore, "minimal": minimal}
        )
    long = ids[sizes[-1]]

    async def get_last(i: int) -> Op:
        return lambda: env.store.get(long, last=PAGE)

    async def get_messages(i: int) -> Op:
        return lambda: env.store.get_messages(long, limit=PAGE)

    # get_messages runs as the "floor" side: the issue compares get(last=50) with it.
    results += await env.measure(
        f"get(last={PAGE}) of {sizes[-1]:,} msgs", {"threadstore": get_last, "floor": get_messages}
    )
    await env.delete([row["id"] for row, _ in every], [row["id"] for row, _ in every])
    return results


async def thread_pages(env: Env) -> list[Result]:
    """list_threads(limit=50), page 1 and page 40, on the seeded store, against the minimal
    floor's keyset query at the same positions."""
    size = env.store_size
    cursor = None
    for _ in range(39):  # the cursor of page 40, walked once (not timed)
        cursor = (await env.store.list_threads(limit=PAGE, cursor=cursor)).next_cursor
    page40 = await env.store.list_threads(limit=PAGE, cursor=cursor)
    floor_after = await env.minimal.position(39 * PAGE - 1)
    mini40 = await env.minimal.page(floor_after, PAGE)
    assert [s.id for s in page40.threads] == [t["id"] for t in mini40]
    assert [s.message_count for s in page40.threads] == [t["message_count"] for t in mini40]

    results = []
    for label, ts_cursor, after in (("page 1", None, None), ("page 40", cursor, floor_after)):

        async def threadstore(i: int, ts_cursor: str | None = ts_cursor) -> Op:
            return lambda: env.store.list_threads(limit=PAGE, cursor=ts_cursor)

        async def minimal(i: int, after: tuple[datetime, str] | None = after) -> Op:
            return lambda: env.minimal.page(after, PAGE)

        results += await env.measure(
            f"list_threads({PAGE}) {label} @{size:,}", {"threadstore": threadstore, "minimal": minimal}
        )
    return results


# -- framework sessions -------------------------------------------------------------------------

TURN_SESSIONS = 10  # sessions each side rotates over
TURN_HISTORY = 20  # items each session holds before the first turn


def turn_items(n: int) -> list[dict[str, Any]]:
    """What one turn of an agent adds to its session: the user's message, the model's function
    call, and its answer (a Responses output message), as the Runner hands them over."""
    return [
        {"role": "user", "content": f"Where is my order {n}? It was due on Monday."},
        {
            "type": "function_call",
            "id": f"fc_{n}",
            "call_id": f"call_{n}",
            "name": "lookup_order",
            "arguments": f'{{"order": {n}}}',
        },
        {
            "id": f"msg_{n}",
            "type": "message",
            "role": "assistant",
            "status": "completed",
            "content": [
                {"type": "output_text", "text": f"Order {n} left the warehouse today.", "annotations": []}
            ],
        },
    ]


async def agents_turn(env: Env) -> list[Result]:
    """One conversation turn through an OpenAI Agents session, as the Runner makes it: the
    history read (get_items(limit=20)), then the turn's 3 items added; threadstore's
    ThreadStoreSession against the peers that are the SDK's own sessions (make bench PEERS=1)."""
    from threadstore.integrations.openai_agents import ThreadStoreSession

    sides: dict[str, Prep | None] = {}
    ours = [ThreadStoreSession(data.new_id(), env.store) for _ in range(TURN_SESSIONS)]
    for side, sessions in [
        ("threadstore", ours),
        *[
            (p.name, await p.agents_sessions(TURN_SESSIONS))
            for p in env.peers
            if hasattr(p, "agents_sessions")
        ],
    ]:
        for session in sessions:  # not timed
            for n in range(TURN_HISTORY // 3 + 1):
                await session.add_items(turn_items(n)[: TURN_HISTORY - 3 * n])
        sides[side] = _turn(sessions)
    if len(sides) == 1:
        return []  # no peer: the workload compares against the SDK's sessions only
    return await env.measure("agents session turn (get 20, add 3)", sides)


def _turn(sessions: list[Any]) -> Prep:
    async def prep(i: int) -> Op:
        session, items = sessions[i % len(sessions)], turn_items(data.fresh_number())

        async def turn() -> None:
            await session.get_items(limit=20)
            await session.add_items(items)

        return turn

    return prep
