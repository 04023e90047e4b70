"""What tracing costs a store operation: client CPU and wall time per save, get and append.

    python -m bench.tracing [--backends memory,sqlite,postgres] [--rounds 15] [--ops 100]
                            [--server postgresql://...]

Three worker processes, one per mode, each with its own store: **absent** (OpenTelemetry cannot
be imported, as without the otel extra: the store's methods are not wrapped), **api** (the API
installed, no SDK configured: its no-op tracer and meter take the calls) and **sdk** (the SDK's
TracerProvider with a BatchSpanProcessor and a MeterProvider with a periodic reader, both
exporting to exporters that drop everything). The workers run interleaved, one batch each in
turn, the one that goes first rotating every round, so load on the shared machine hits all
alike. A batch is ``--ops`` each of: save a new thread of 10 messages, get a thread of 10,
append one message. Per mode and operation: the median over rounds of each batch's median
client CPU (``time.process_time``) and wall time per operation, and the ratio to absent.
PostgreSQL: a database created on the server for the run, dropped after.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

MODES = ("absent", "api", "sdk")
OPERATIONS = ("save", "get", "append")

ABSENT = """
import importlib.abc, sys

class _NoOpenTelemetry(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] == "opentelemetry":
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None

sys.meta_path.insert(0, _NoOpenTelemetry())
"""


def _sdk() -> None:
    """The SDK as an application configures it, exporting to exporters that drop everything."""
    from opentelemetry import metrics, trace
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import (
        MetricExporter,
        MetricExportResult,
        PeriodicExportingMetricReader,
    )
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult

    class Spans(SpanExporter):
        def export(self, spans: Any) -> SpanExportResult:
            return SpanExportResult.SUCCESS

    class Metrics(MetricExporter):
        def export(
            self, metrics_data: Any, timeout_millis: float = 10_000, **kwargs: Any
        ) -> MetricExportResult:
            return MetricExportResult.SUCCESS

        def force_flush(self, timeout_millis: float = 10_000) -> bool:
            return True

        def shutdown(self, timeout_millis: float = 30_000, **kwargs: Any) -> None:
            return None

    provider = TracerProvider()
    provider.add_span_processor(BatchSpanProcessor(Spans()))
    trace.set_tracer_provider(provider)
    reader = PeriodicExportingMetricReader(Metrics(), export_interval_millis=1_000)
    metrics.set_meter_provider(MeterProvider(metric_readers=[reader]))


async def _worker(mode: str, url: str | None, ops: int) -> None:
    """Answer each line on stdin with one batch's medians per operation, as a JSON line."""
    if mode == "sdk":
        _sdk()
    from threadstore import Message, Thread, ThreadStore, tracing

    assert tracing.INSTALLED is (mode != "absent"), mode
    loop = asyncio.get_running_loop()
    async with await ThreadStore.create(url, pool_size=1) as store:
        read = Thread(id=f"{mode}-read")
        for i in range(10):
            read.add_message(Message(role="user", content=f"message {i} " + "lorem ipsum " * 8))
        await store.save(read)
        target = Thread(id=f"{mode}-append")
        await store.save(target)
        batch = 0
        while await loop.run_in_executor(None, sys.stdin.readline):
            batch += 1
            threads = []
            for n in range(ops):
                thread = Thread(id=f"{mode}-{batch}-{n}")
                for i in range(10):
                    thread.add_message(Message(role="user", content=f"message {i} " + "lorem ipsum " * 8))
                threads.append(thread)
            steps = {
                "save": [lambda t=t: store.save(t) for t in threads],
                "get": [lambda: store.get(read.id)] * ops,
                "append": [
                    lambda n=n: store.append(target.id, Message(role="user", content=f"appended {n}"))
                    for n in range(ops)
                ],
            }
            result = {}
            for name, calls in steps.items():
                cpu, wall = [], []
                for call in calls:
                    c0, w0 = time.process_time(), time.perf_counter()
                    await call()
                    cpu.append(time.process_time() - c0)
                    wall.append(time.perf_counter() - w0)
                result[name] = [statistics.median(cpu), statistics.median(wall)]
            print(json.dumps(result), flush=True)


def _spawn(mode: str, url: str | None, ops: int) -> subprocess.Popen[str]:
    code = (ABSENT if mode == "absent" else "") + (
        f"import asyncio\nfrom bench.tracing import _worker\nasyncio.run(_worker({mode!r}, {url!r}, {ops}))\n"
    )
    return subprocess.Popen(
        [sys.executable, "-c", code],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        cwd=Path(__file__).resolve().parent.parent,
    )


def _measure(url: str | None, rounds: int, ops: int) -> dict[str, dict[str, list[float]]]:
    workers = {mode: _spawn(mode, url, ops) for mode in MODES}
    found: dict[str, dict[str, list[list[float]]]] = {m: {o: [] for o in OPERATIONS} for m in MODES}
    try:
        for r in range(rounds + 1):  # round 0 warms up
            order = MODES[r % 3 :] + MODES[: r % 3]
            for mode in order:
                worker = workers[mode]
                assert worker.stdin is not None and worker.stdout is not None
                worker.stdin.write("go\n")
                worker.stdin.flush()
                line = worker.stdout.readline()
                if not line:
                    raise RuntimeError(f"the {mode} worker ended")
                if r:
                    for name, value in json.loads(line).items():
                        found[mode][name].append(value)
    finally:
        for worker in workers.values():
            assert worker.stdin is not None
            worker.stdin.close()
            worker.wait(timeout=60)
    return {
        mode: {
            name: [statistics.median(v[0] for v in values), statistics.median(v[1] for v in values)]
            for name, values in by_op.items()
        }
        for mode, by_op in found.items()
    }


def _table(backend: str, medians: dict[str, dict[str, list[float]]]) -> str:
    lines = [
        f"\n{backend}: client CPU / wall per operation, median (ratio to absent)",
        "| operation | absent | api, no SDK | SDK, no-op exporter |",
        "|---|---|---|---|",
    ]
    for name in OPERATIONS:
        base_cpu, base_wall = medians["absent"][name]
        cells = []
        for mode in MODES:
            cpu, wall = medians[mode][name]
            cells.append(
                f"{cpu * 1e6:.1f} us ({cpu / base_cpu:.2f}x) / {wall * 1e6:.1f} us ({wall / base_wall:.2f}x)"
            )
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


async def _admin(server: str, statement: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(server)
    try:
        await conn.execute(statement)
    finally:
        await conn.close()


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.tracing", description=__doc__.split("\n\n")[0])
    parser.add_argument("--backends", default="memory,sqlite,postgres")
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--ops", type=int, default=100)
    parser.add_argument("--server", default="postgresql://postgres@127.0.0.1:5432/postgres")
    args = parser.parse_args()
    for backend in args.backends.split(","):
        if backend == "memory":
            print(_table(backend, _measure(None, args.rounds, args.ops)), flush=True)
        elif backend == "sqlite":
            with tempfile.TemporaryDirectory() as folder:
                url = f"sqlite:///{folder}/bench.db"
                print(_table(backend, _measure(url, args.rounds, args.ops)), flush=True)
        elif backend == "postgres":
            # The bench's own database: its name is generated here, never input.
            name = f"threadstore_bench_tracing_{uuid.uuid4().hex[:8]}"
            asyncio.run(_admin(args.server, f'CREATE DATABASE "{name}"'))
            try:
                url = urlunsplit(urlsplit(args.server)._replace(path=f"/{name}"))
                print(_table(backend, _measure(url, args.rounds, args.ops)), flush=True)
            finally:
                asyncio.run(_admin(args.server, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        else:
            parser.error(f"unknown backend {backend!r}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
