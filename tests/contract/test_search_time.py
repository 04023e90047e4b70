"""No search that never ends: patterns that make a backtracking engine take quadratic or
exponential time answer within a second over 100 KB and 5 MB messages, correctly, on every
backend, while another task on the event loop keeps being served.

Python's re took 8.2 s for the first case (``.*a.*b.*c.*d`` over 400 characters) on memory and
SQLite, with the loop stuck on memory; RE2 takes well under a millisecond. The store is filled in
stages, smallest first, so the old engine fails on that case rather than never finishing.
"""

from __future__ import annotations

import asyncio
import time

from tests.helpers import user
from threadstore import Thread, ThreadStore

# Text kinds: each lacks what some pattern needs, so a backtracking engine tries every split.
KINDS = {"abc": "abc ", "error": "error ", "x": "x"}
HIT = "abcd error then timeout aaaaaaaa xxxy"  # every pattern matches this one
PATTERNS = {  # pattern -> the kinds (or "hit") it matches
    ".*a.*b.*c.*d": {"hit"},
    "error.*timeout": {"hit"},
    "(.*a){8}": {"abc", "hit"},
    "\\w*\\w*\\w*x": {"x", "hit"},
    "x{1,255}x{1,255}x{1,255}y": {"hit"},
}
SIZES = [400, 100_000, 5_000_000]
WITHIN = 1.0  # seconds per search; RE2 takes ~10-40 ms per 5 MB message
STALL = 0.5  # the longest the loop may go unserved; the old engine held memory's for 8 s and more


async def test_searches_take_linear_time_and_leave_the_loop_served(store: ThreadStore) -> None:
    gaps: list[float] = []

    async def ticker() -> None:
        last = time.perf_counter()
        while True:
            await asyncio.sleep(0.01)
            now = time.perf_counter()
            gaps.append(now - last)
            last = now

    await store.save(Thread(id="hit", messages=[user(HIT)]))
    matched_by = {pattern: {"hit"} for pattern in PATTERNS}
    ticking = asyncio.create_task(ticker())
    try:
        for size in SIZES:
            for kind, unit in KINDS.items():
                text = (unit * (size // len(unit) + 1))[:size]
                await store.save(Thread(id=f"{kind}-{size}", messages=[user(text)]))
                for pattern, kinds in PATTERNS.items():
                    if kind in kinds:
                        matched_by[pattern].add(f"{kind}-{size}")
            for pattern in PATTERNS:
                gaps.clear()
                started = time.perf_counter()
                found = await store.search_by_content(pattern, limit=None)
                took = time.perf_counter() - started
                assert {t.id for t in found} == matched_by[pattern], (pattern, size)
                assert took < WITHIN, f"{pattern!r} over {size:,} characters took {took:.2f} s"
                await asyncio.sleep(0.02)  # one more tick, so a stall during the search is seen
                assert max(gaps) < STALL, f"the loop went {max(gaps):.2f} s unserved during {pattern!r}"
    finally:
        ticking.cancel()
    assert {t.id for t in await store.search_by_content("xxxy", literal=True)} == {"hit"}
