"""OpenTelemetry: a span per store operation under the caller's span, a CLIENT span per statement
under it, the duration histogram and the pool gauges, read with the SDK's in-memory exporter and
metric reader on every backend (threadstore.tracing.configure points threadstore at them, so
the rest of the suite runs with no SDK)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any
from urllib.parse import urlsplit

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from tests.conftest import BACKENDS, TEST_POOL, backend_url
from threadstore import ConflictError, Message, NotFoundError, PoolTimeoutError, Thread, ThreadStore, tracing
from threadstore.sync import ThreadStore as SyncThreadStore

SYSTEMS = {"memory": "memory", "sqlite_file": "sqlite", "sqlite_memory": "sqlite", "postgres": "postgresql"}


class Telemetry:
    def __init__(self) -> None:
        self.exporter = InMemorySpanExporter()
        self.tracer_provider = TracerProvider()
        self.tracer_provider.add_span_processor(SimpleSpanProcessor(self.exporter))
        self.reader = InMemoryMetricReader()
        self.meter_provider = MeterProvider(metric_readers=[self.reader])
        self.tracer = self.tracer_provider.get_tracer("app")

    def spans(self, name: str | None = None) -> list[ReadableSpan]:
        return [s for s in self.exporter.get_finished_spans() if name is None or s.name == name]

    def span(self, name: str) -> ReadableSpan:
        found = self.spans(name)
        assert len(found) == 1, [s.name for s in self.spans()]
        return found[0]

    def children(self, parent: ReadableSpan) -> list[ReadableSpan]:
        assert parent.context is not None
        return [
            s for s in self.spans() if s.parent is not None and s.parent.span_id == parent.context.span_id
        ]

    def points(self, name: str) -> list[Any]:
        data = self.reader.get_metrics_data()
        return [
            point
            for resource in (data.resource_metrics if data else [])
            for scope in resource.scope_metrics
            for metric in scope.metrics
            if metric.name == name
            for point in metric.data.data_points
        ]


@pytest.fixture
def otel() -> Iterator[Telemetry]:
    telemetry = Telemetry()
    tracing.configure(tracer_provider=telemetry.tracer_provider, meter_provider=telemetry.meter_provider)
    try:
        yield telemetry
    finally:
        tracing.configure()
        telemetry.tracer_provider.shutdown()
        telemetry.meter_provider.shutdown()


@pytest.fixture(params=BACKENDS)
def traced_url(request: pytest.FixtureRequest, tmp_path: object) -> tuple[str | None, str]:
    return backend_url(request.param, request, tmp_path), request.param


@pytest.fixture(params=["sqlite_file", "postgres"])
def sql_url(request: pytest.FixtureRequest, tmp_path: object) -> tuple[str, str]:
    """A database other connections can reach too, and its backend param."""
    url = backend_url(request.param, request, tmp_path)
    assert url is not None
    return url, request.param


@pytest.fixture
async def traced(
    traced_url: tuple[str | None, str], otel: Telemetry
) -> AsyncIterator[tuple[ThreadStore, str]]:
    """A store connected while the in-memory SDK is threadstore's, and its backend param."""
    url, kind = traced_url
    async with await ThreadStore.create(url, **TEST_POOL) as store:
        await store.delete_many([t.id for t in await store.list_recent()])
        otel.exporter.clear()
        yield store, kind


def _thread(thread_id: str, *texts: str) -> Thread:
    thread = Thread(id=thread_id, title="traced")
    for text in texts:
        thread.add_message(Message(role="user", content=text))
    return thread


async def test_each_operation_is_a_span_under_the_callers_with_a_span_per_statement(
    traced: tuple[ThreadStore, str], otel: Telemetry
) -> None:
    store, kind = traced
    with otel.tracer.start_as_current_span("request"):
        await store.save(_thread("t1", "hello"))
        assert await store.get("t1") is not None
    request = otel.span("request")
    save, get = otel.span("threadstore save"), otel.span("threadstore get")
    assert otel.children(request) == [save, get]
    for span, name in ((save, "save"), (get, "get")):
        assert span.kind is SpanKind.INTERNAL
        assert span.status.status_code is StatusCode.UNSET
        assert dict(span.attributes or {}) == {"db.system.name": SYSTEMS[kind], "db.operation.name": name}
    statements = otel.children(get)
    if kind == "memory":  # no statements: operation spans only
        assert [s for s in otel.spans() if s.kind is SpanKind.CLIENT] == []
        return
    assert [s.name for s in statements] == ["threads.get"]
    assert otel.children(save), "the save's statements are under its span"
    assert all(s.kind is SpanKind.CLIENT for s in otel.children(save))
    attributes: dict[str, Any] = dict(statements[0].attributes or {})
    assert attributes.pop("db.query.text").startswith("/* threads.get */\nSELECT ")
    expected: dict[str, Any] = {
        "db.system.name": SYSTEMS[kind],
        "db.query.summary": "threads.get",
        "db.operation.name": "SELECT",
    }
    if kind == "postgres":
        assert attributes.pop("db.namespace").startswith("threadstore_test_")
        assert attributes.pop("server.address") == "127.0.0.1"
        assert isinstance(attributes.pop("server.port"), int)
    else:
        assert attributes.pop("db.namespace").endswith("threads.db" if kind == "sqlite_file" else ":memory:")
    assert attributes == expected


async def test_query_text_can_be_left_out(traced: tuple[ThreadStore, str], otel: Telemetry) -> None:
    store, kind = traced
    tracing.configure(
        query_text=False, tracer_provider=otel.tracer_provider, meter_provider=otel.meter_provider
    )
    await store.get("absent")
    statements = [s for s in otel.spans() if s.kind is SpanKind.CLIENT]
    assert len(statements) == (0 if kind == "memory" else 1)
    assert all("db.query.text" not in (s.attributes or {}) for s in statements)


async def test_a_failed_operation_has_status_error_and_the_exception(
    traced: tuple[ThreadStore, str], otel: Telemetry
) -> None:
    store, kind = traced
    with pytest.raises(NotFoundError):
        await store.append("absent", Message(role="user", content="hi"))
    span = otel.span("threadstore append")
    assert span.status.status_code is StatusCode.ERROR
    assert (span.attributes or {})["error.type"] == "threadstore.errors.NotFoundError"
    assert [e.name for e in span.events] == ["exception"]
    assert (span.events[0].attributes or {})["exception.type"] == "threadstore.errors.NotFoundError"

    # A message id the thread holds already, appended again: the server refuses it (PostgreSQL:
    # SQLSTATE 23505; messages are keyed by (thread, id), so only the same thread refuses it).
    first = await store.save(_thread("a", "one"))
    with pytest.raises(ConflictError):
        await store.append("a", Message(id=first.messages[0].id, role="user", content="same id"))
    append = otel.spans("threadstore append")[-1]
    assert append.status.status_code is StatusCode.ERROR
    if kind == "postgres":
        assert (append.attributes or {})["error.type"] == "23505"
        failed = [s for s in otel.children(append) if s.status.status_code is StatusCode.ERROR]
        assert failed and failed[0].name == "postgres.append"
        assert {dict(s.attributes or {})["db.response.status_code"] for s in failed} == {"23505"}
        assert {dict(s.attributes or {})["error.type"] for s in failed} == {"23505"}
    else:
        assert (append.attributes or {})["error.type"] == "threadstore.errors.ConflictError"


async def test_a_cancelled_operation_says_so(sql_url: tuple[str, str], otel: Telemetry) -> None:
    """The operation waits (SQLite: for the connection another block holds; PostgreSQL: for a row
    lock) and is cancelled."""
    url, kind = sql_url
    async with await ThreadStore.create(url, **TEST_POOL) as store:
        thread = await store.save(_thread("locked", "one"))
        assert store.async_session is not None
        async with store.async_session() as conn:
            if kind == "postgres":
                await conn.execute("SELECT 1 FROM threads WHERE id = 'locked' FOR UPDATE")
            thread.title = "changed"
            save = asyncio.ensure_future(store.save(thread))
            await asyncio.sleep(0.3)
            assert not save.done()
            save.cancel()
            with pytest.raises(asyncio.CancelledError):
                await save
    span = otel.spans("threadstore save")[-1]
    assert span.status.status_code is StatusCode.ERROR
    assert span.status.description == "cancelled"
    assert (span.attributes or {})["error.type"] == "cancelled"
    assert [e.name for e in span.events] == []  # a cancellation is no exception to record


async def test_the_duration_histogram_by_operation_and_outcome(
    traced: tuple[ThreadStore, str], otel: Telemetry
) -> None:
    store, kind = traced
    await store.save(_thread("t1", "hello"))
    await store.get("t1")
    await store.get("t2")
    with pytest.raises(ValueError):
        await store.get("")
    points = {
        tuple(sorted((p.attributes or {}).items())): p.count
        for p in otel.points("db.client.operation.duration")
    }
    system = ("db.system.name", SYSTEMS[kind])
    assert points[(("db.operation.name", "get"), system)] == 2
    assert points[(("db.operation.name", "get"), system, ("error.type", "ValueError"))] == 1
    assert points[(("db.operation.name", "save"), system)] == 1
    point = next(p for p in otel.points("db.client.operation.duration") if p.count == 2)
    assert 0 < point.sum < 5 and list(point.explicit_bounds) == [0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 10]


async def test_the_pool_gauges(traced: tuple[ThreadStore, str], otel: Telemetry) -> None:
    store, kind = traced
    await store.get("absent")
    names = ("count", "max", "pending_requests", "timeouts")
    gauges = {name: otel.points(f"db.client.connection.{name}") for name in names}
    if kind == "memory":
        assert all(points == [] for points in gauges.values())
        return
    pool = (
        "threads.db"
        if kind == "sqlite_file"
        else ":memory:"
        if kind == "sqlite_memory"
        else store.database_url
    )
    assert pool is not None
    mine = {  # this store's pool: the names end with the database's
        name: [
            p
            for p in points
            if pool.endswith(p.attributes["db.client.connection.pool.name"].rpartition("/")[2])
        ]
        for name, points in gauges.items()
    }
    states = {p.attributes["db.client.connection.state"]: p.value for p in mine["count"]}
    assert states["used"] == 0 and states["idle"] >= 1
    assert [p.value for p in mine["max"]] == [1 + 10 if kind == "postgres" else 1]  # pool_size + max_overflow
    assert [p.value for p in mine["pending_requests"]] == [0]
    assert [p.value for p in mine["timeouts"]] == [0]


async def test_waiters_and_pool_timeouts_are_counted(sql_url: tuple[str, str], otel: Telemetry) -> None:
    """The only connection held by a block: a get waits for it (SQLite: for the lock), counted
    as a pending request; PostgreSQL's checkout gives up after pool_timeout, counted too."""
    url, kind = sql_url
    async with await ThreadStore.create(url, pool_size=1, max_overflow=0, pool_timeout=0.5) as store:
        assert store.async_session is not None

        def gauge(name: str) -> list[int]:
            return [
                p.value
                for p in otel.points(f"db.client.connection.{name}")
                if p.attributes["db.client.connection.pool.name"].endswith(
                    "threads.db" if kind == "sqlite_file" else url.rpartition("/")[2]
                )
            ]

        async with store.async_session():
            waiting = asyncio.ensure_future(store.get("absent"))
            await asyncio.sleep(0.1)
            assert gauge("pending_requests") == [1]
            if kind == "postgres":
                with pytest.raises(PoolTimeoutError):
                    await waiting
        if kind != "postgres":
            assert await waiting is None
        assert gauge("pending_requests") == [0]
        assert gauge("timeouts") == [1 if kind == "postgres" else 0]


async def test_the_background_indexer_is_a_root_span_linked_to_the_write(
    sql_url: tuple[str, str], otel: Telemetry
) -> None:
    url, _ = sql_url
    async with await ThreadStore.create(url, **TEST_POOL) as store:
        otel.exporter.clear()
        await store.save(_thread("indexed", "words to index"))
        deadline = time.monotonic() + 10
        while not otel.spans("threadstore index") and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
    index, save = otel.spans("threadstore index")[0], otel.span("threadstore save")
    assert index.parent is None
    assert save.context is not None
    assert [link.context.span_id for link in index.links] == [save.context.span_id]
    assert otel.children(index), "the indexer's statements are under its span"


def test_the_blocking_facade_traces_under_the_callers_span(tmp_path: object, otel: Telemetry) -> None:
    with SyncThreadStore(f"sqlite:///{tmp_path}/sync.db") as store, otel.tracer.start_as_current_span("job"):
        store.save(_thread("s1", "hello"))
    job, save = otel.span("job"), otel.span("threadstore save")
    assert save.parent is not None and job.context is not None
    assert save.parent.span_id == job.context.span_id
    assert otel.children(save)[0].name == "sqlite.begin"


@pytest.mark.pg
async def test_asyncpg_instrumentation_names_its_spans_by_the_statement(pg_url: str, otel: Telemetry) -> None:
    """opentelemetry-instrumentation-asyncpg names a span by the statement's first word after a
    leading /* */ comment: with threadstore's former "-- name" line every span was named "--"."""
    from opentelemetry.instrumentation.asyncpg import AsyncPGInstrumentor

    instrumentor = AsyncPGInstrumentor()
    instrumentor.instrument(tracer_provider=otel.tracer_provider)
    try:
        async with await ThreadStore.create(pg_url, **TEST_POOL) as store:
            otel.exporter.clear()
            await store.save(_thread("pg", "hello"))
            await store.get("pg")
    finally:
        instrumentor.uninstrument()
    driver = [
        s for s in otel.spans() if s.instrumentation_scope and "asyncpg" in s.instrumentation_scope.name
    ]
    assert driver, "the instrumentation made spans"
    assert {s.name for s in driver} <= {"SELECT", "INSERT", "UPDATE", "DELETE", "WITH", "BEGIN;", "COMMIT;"}
    assert "--" not in {s.name for s in otel.spans()}
    get = otel.span("threads.get")
    assert [s.name for s in otel.children(get)] == ["SELECT"]  # the driver's span under the statement's


@pytest.mark.pg
async def test_a_multi_host_url_names_its_first_server(pg_url: str, otel: Telemetry) -> None:
    """``h1:p1,h2:p2`` (libpq's several hosts): the statement spans name the first host and
    port, not ``localhost`` (urlsplit reads no port of such a URL)."""
    parts = urlsplit(pg_url)
    host, port = parts.hostname, parts.port or 5432
    multi = parts._replace(netloc=f"{parts.username}@{host}:{port},localhost:{port}").geturl()
    async with await ThreadStore.create(multi, **TEST_POOL) as store:
        otel.exporter.clear()
        assert await store.get("absent") is None
    attributes = dict(otel.span("threads.get").attributes or {})
    assert (attributes["server.address"], attributes["server.port"]) == (host, port)
    assert attributes["db.namespace"] == parts.path.lstrip("/")
