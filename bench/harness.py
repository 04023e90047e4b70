"""Timing: sides measured in interleaved rounds, medians and p95, the report table and JSON.

A round runs a batch of operations on every side in turn, starting with a different side each
round, so a burst of noise on this shared machine falls on all sides alike. Only the awaited
store or driver call is timed; the inputs of each operation are built before the timer starts.
Beside the wall time, ``time.process_time`` around each timed call gives the client CPU per
operation (the event loop, the driver, aiosqlite's thread; not the server's): far steadier than
latency on this shared machine.
"""

from __future__ import annotations

import gc
import statistics
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

Op = Callable[[], Awaitable[Any]]
Prep = Callable[[int], Awaitable[Op]]  # builds the i-th operation's input (untimed)
Burst = Callable[[], Awaitable[float]]  # runs one burst, returns operations per second


@dataclass(frozen=True)
class Settings:
    warmup: int  # rounds thrown away
    rounds: int  # at most this many measured rounds
    min_rounds: int  # ... and at least this many, whatever the budget
    batch: int  # operations per side per round
    budget: float  # seconds of measured time per side after which no new round starts


@dataclass
class Result:
    workload: str
    backend: str
    side: str
    unit: str  # "ms" (latency: lower is better) or "ops/s" (throughput: higher is better)
    median: float
    p95: float
    samples: int
    extra: dict[str, Any] = field(default_factory=dict)

    def row(self) -> dict[str, Any]:
        return {
            "workload": self.workload,
            "backend": self.backend,
            "side": self.side,
            "unit": self.unit,
            "median": round(self.median, 4),
            "p95": round(self.p95, 4),
            "samples": self.samples,
            **self.extra,
        }


def _settle_heap() -> None:
    """Collect once, then exempt what exists from later collections: a full collection with large
    loaded threads in memory costs 0.25 s, which would land on whichever operation triggered it."""
    gc.unfreeze()
    gc.collect()
    gc.freeze()


def p95(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]


async def latency(workload: str, backend: str, sides: dict[str, Prep], settings: Settings) -> list[Result]:
    """Median and p95 latency (ms) of each side's operations, measured in interleaved rounds.

    The warm-up also times a few operations per side; slow workloads (a store-wide statistic)
    then get smaller batches, so that ``min_rounds`` rounds still fit the budget.
    """
    names = list(sides)
    samples: dict[str, list[float]] = {n: [] for n in names}
    spent = dict.fromkeys(names, 0.0)
    cpu = dict.fromkeys(names, 0.0)
    counter = 0

    async def run(name: str, count: int, measured: bool) -> float:
        nonlocal counter
        slowest = 0.0
        for _ in range(count):
            op = await sides[name](counter)
            counter += 1
            start, start_cpu = time.perf_counter(), time.process_time()
            await op()
            elapsed = time.perf_counter() - start
            used = time.process_time() - start_cpu
            slowest = max(slowest, elapsed)
            if measured:
                samples[name].append(elapsed * 1000)
                spent[name] += elapsed
                cpu[name] += used
        return slowest

    _settle_heap()
    batch = settings.batch
    for round_no in range(settings.warmup + settings.rounds):
        measured = round_no >= settings.warmup
        shift = round_no % len(names)
        slowest = 0.0
        for name in names[shift:] + names[:shift]:
            slowest = max(slowest, await run(name, batch if measured else 3, measured))
        if not measured:
            per_round = settings.budget / settings.min_rounds
            batch = max(1, min(settings.batch, int(per_round / max(slowest, 1e-6))))
        done = round_no + 1 - settings.warmup
        if done >= settings.min_rounds and max(spent.values()) > settings.budget:
            break
    return [
        Result(
            workload,
            backend,
            n,
            "ms",
            statistics.median(s),
            p95(s),
            len(s),
            {"cpu_us": round(cpu[n] / len(s) * 1e6, 1)},
        )
        for n, s in samples.items()
    ]


async def throughput(workload: str, backend: str, sides: dict[str, Burst], rounds: int) -> list[Result]:
    """Operations per second of each side, bursts interleaved; median (and 5th percentile as
    the p95 counterpart: the slow end) over the rounds."""
    names = list(sides)
    rates: dict[str, list[float]] = {n: [] for n in names}
    _settle_heap()
    for round_no in range(rounds + 1):  # round 0 warms up
        shift = round_no % len(names)
        for name in names[shift:] + names[:shift]:
            rate = await sides[name]()
            if round_no:
                rates[name].append(rate)
    return [
        Result(
            workload,
            backend,
            n,
            "ops/s",
            statistics.median(r),
            sorted(r)[max(0, round(0.05 * (len(r) - 1)))],
            len(r),
        )
        for n, r in rates.items()
    ]


def cpu_ratio(result: Result, floor: Result) -> float | None:
    """Client CPU per operation of result over floor's (None where either was not measured)."""
    mine, theirs = result.extra.get("cpu_us"), floor.extra.get("cpu_us")
    return mine / theirs if mine and theirs else None


def ratio(result: Result, floor: Result) -> float:
    """Result over floor: for latency above 1 is slower than the floor; for throughput (ops/s)
    below 1 is fewer operations per second than the floor."""
    return result.median / floor.median
