"""OpenTelemetry spans and metrics from threadstore itself, through ``opentelemetry-api`` only
(the ``threadstore[otel]`` extra): the one module that knows OpenTelemetry.

Each public store operation gets a span (``threadstore save``) as a child of the caller's current
span, and each statement a CLIENT span under it named by its query (``threads.get``), with the
database semantic conventions' attributes; ``db.client.operation.duration`` records each
operation's time, and observable gauges read the connection pools. The application brings the
SDK; until it sets one, threadstore makes no span and no measurement at all.

``import threadstore`` imports none of OpenTelemetry: the API is imported when a store first
connects or runs an operation, and when it is not installed the store's methods are not even
wrapped.
"""

from __future__ import annotations

import functools
import importlib.util
import inspect
import time
import weakref
from collections.abc import AsyncGenerator, Awaitable, Callable, Iterable
from types import TracebackType
from typing import TYPE_CHECKING, Any, NamedTuple

if TYPE_CHECKING:
    from threadstore.queries import Query


def _installed() -> bool:
    """Whether the API can be imported, found without importing it."""
    try:
        return importlib.util.find_spec("opentelemetry") is not None
    except (ImportError, ValueError):
        return False


INSTALLED = _installed()
_SYSTEMS = {"postgres": "postgresql", "sqlite": "sqlite", "memory": "memory"}
# The semantic conventions' advice for db.client.operation.duration, in seconds.
_BUCKETS = (0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0)
_query_text = True
_providers: tuple[Any, Any] = (None, None)  # the TracerProvider and MeterProvider; None: global


def configure(*, query_text: bool = True, tracer_provider: Any = None, meter_provider: Any = None) -> None:
    """Set how threadstore traces: whether statement spans carry ``db.query.text`` (the SQL with
    its placeholders, never the values), and the TracerProvider and MeterProvider to use
    (None: OpenTelemetry's global ones, the default). Each call sets all three."""
    global _api, _missing, _query_text, _providers
    _query_text = bool(query_text)
    _providers = (tracer_provider, meter_provider)
    if INSTALLED:
        _api, _missing = None, False
        _activate()


class Usage(NamedTuple):
    """One pool's connections as its gauges report them."""

    used: int
    idle: int
    max: int
    waiting: int
    timeouts: int


class _Api:
    """The API's objects, imported and made on first use."""

    def __init__(self, tracer_provider: Any, meter_provider: Any) -> None:
        from opentelemetry import context, metrics, trace
        from opentelemetry.metrics import _internal as metrics_internal

        from threadstore.version import version

        self.attach, self.detach = context.attach, context.detach
        self.in_context = trace.set_span_in_context
        self.empty = context.Context
        self.current = trace.get_current_span
        self.link = trace.Link
        self.client, self.internal = trace.SpanKind.CLIENT, trace.SpanKind.INTERNAL
        self.error = trace.StatusCode.ERROR
        trace.get_tracer_provider(), metrics.get_meter_provider()  # those the environment names
        self._globals = (trace, metrics_internal)
        self._sdk = tracer_provider is not None or meter_provider is not None
        self.tracer = trace.get_tracer("threadstore", version(), tracer_provider=tracer_provider)
        meter = metrics.get_meter("threadstore", version(), meter_provider=meter_provider)
        self.duration = meter.create_histogram(
            "db.client.operation.duration",
            unit="s",
            description="Duration of threadstore operations.",
            explicit_bucket_boundaries_advisory=list(_BUCKETS),
        )
        connections = "{connection}"
        meter.create_observable_up_down_counter(
            "db.client.connection.count",
            [_observe(lambda usage: [(usage.used, "used"), (usage.idle, "idle")])],
            unit=connections,
            description="Connections by state (used, idle).",
        )
        meter.create_observable_up_down_counter(
            "db.client.connection.max",
            [_observe(lambda usage: [(usage.max, None)])],
            unit=connections,
            description="The most connections the pool opens.",
        )
        meter.create_observable_up_down_counter(
            "db.client.connection.pending_requests",
            [_observe(lambda usage: [(usage.waiting, None)])],
            unit="{request}",
            description="Operations waiting for a connection (SQLite: for the connection's lock).",
        )
        meter.create_observable_counter(
            "db.client.connection.timeouts",
            [_observe(lambda usage: [(usage.timeouts, None)])],
            unit="{timeout}",
            description="Operations that found no free connection within pool_timeout.",
        )

    def idle(self) -> bool:
        """Whether no SDK is set yet, so that every span and measurement would be a no-op; they
        are skipped then (~3.5 us of a 6 us get in memory). A provider, once set, stays."""
        if not self._sdk:
            # The API's own record of the global providers (private: its getters cost 1.0-1.5 us
            # each, an os.environ lookup, as much as the no-op calls they would spare).
            trace, metrics = self._globals
            self._sdk = trace._TRACER_PROVIDER is not None or metrics._METER_PROVIDER is not None
        return not self._sdk


_api: _Api | None = None
_missing = not INSTALLED


def _activate() -> _Api | None:
    """The API, imported on first use; None when it cannot be."""
    global _api, _missing
    if _api is None and not _missing:
        try:
            _api = _Api(*_providers)
        except ImportError:
            _missing = True
    return _api


# --- operations --------------------------------------------------------------------------------


def operations(cls: type) -> None:
    """Give each public coroutine method of ``cls`` (a ThreadStore) a span, and each async
    generator method a span per item; nothing when the API is not installed."""
    if not INSTALLED:
        return
    for name, method in list(vars(cls).items()):
        if name.startswith("_"):
            continue
        if inspect.iscoroutinefunction(method):
            setattr(cls, name, _operation(name, method))
        elif inspect.isasyncgenfunction(method):
            setattr(cls, name, _pages(name, method))


def _operation(name: str, method: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
    @functools.wraps(method)
    async def operation(store: Any, *args: Any, **kwargs: Any) -> Any:
        api = _api or _activate()
        if api is None or api.idle():
            return await method(store, *args, **kwargs)
        return await _traced(api, name, store, method(store, *args, **kwargs))

    return operation


def _pages(name: str, method: Callable[..., AsyncGenerator[Any, None]]) -> Callable[..., Any]:
    @functools.wraps(method)
    async def pages(store: Any, *args: Any, **kwargs: Any) -> AsyncGenerator[Any, None]:
        items = method(store, *args, **kwargs)
        try:
            while True:
                api = _api or _activate()
                try:
                    if api is None or api.idle():
                        item = await anext(items)
                    else:
                        item = await _traced(api, name, store, anext(items))
                except StopAsyncIteration:
                    return
                yield item  # outside the span: the caller's code runs here
        finally:
            await items.aclose()

    return pages


async def _traced(api: _Api, name: str, store: Any, work: Awaitable[Any]) -> Any:
    attributes: dict[str, str] = {
        "db.system.name": _SYSTEMS.get(store.backend, store.backend),
        "db.operation.name": name,
    }
    span = api.tracer.start_span(f"threadstore {name}", kind=api.internal, attributes=attributes)
    token = api.attach(api.in_context(span))
    started = time.perf_counter()
    try:
        return await work
    except StopAsyncIteration:  # the end of an async generator's items
        raise
    except BaseException as exc:
        attributes["error.type"] = _fail(api, span, exc)
        raise
    finally:
        api.duration.record(time.perf_counter() - started, attributes)
        api.detach(token)
        span.end()


def _fail(api: _Api, span: Any, exc: BaseException) -> str:
    """Mark ``span`` failed by ``exc``; returns its ``error.type``: the SQLSTATE when the server
    answered with one, "cancelled" for a cancellation, else the exception's class."""
    state = _sqlstate(exc)
    if type(exc).__name__ == "CancelledError":
        error = "cancelled"
        span.set_status(api.error, "cancelled")
    else:
        cls = type(exc)
        error = state or (
            cls.__qualname__ if cls.__module__ == "builtins" else f"{cls.__module__}.{cls.__qualname__}"
        )
        span.record_exception(exc)
        span.set_status(api.error, f"{type(exc).__name__}: {exc}")
    span.set_attribute("error.type", error)
    if state is not None:
        span.set_attribute("db.response.status_code", state)
    return error


def _sqlstate(exc: BaseException | None) -> str | None:
    """The SQLSTATE of a PostgreSQL error, on ``exc`` or on the error it was raised from."""
    while exc is not None:
        state = getattr(exc, "sqlstate", None)
        if isinstance(state, str):
            return state
        exc = exc.__cause__
    return None


# --- statements and pools ------------------------------------------------------------------------


class _Off:
    """The statement span when tracing is off: nothing."""

    __slots__ = ()

    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc_info: object) -> None:
        return None


_OFF = _Off()
_statements: weakref.WeakSet[Statements] = weakref.WeakSet()  # every pool's, for the gauges
_verbs: dict[str, str] = {}  # query name -> its first SQL keyword (db.operation.name)


class Statements:
    """The statement spans of one connection pool (or SQLite connection), and its gauges:
    ``usage`` says how its connections are used, or None while it is closed."""

    def __init__(
        self,
        system: str,
        namespace: str,
        usage: Callable[[], Usage | None],
        server: tuple[str, int] | None = None,
    ) -> None:
        _activate()  # a store is connecting: its first statements are traced too
        self.pool = f"{server[0]}:{server[1]}/{namespace}" if server else namespace
        self.system = system
        self.usage = usage
        self._base: dict[str, str | int] = {"db.system.name": system, "db.namespace": namespace}
        if server is not None:
            self._base |= {"server.address": server[0], "server.port": server[1]}
        _statements.add(self)

    @classmethod
    def postgres(
        cls, server: tuple[str, int], database: str, usage: Callable[[], Usage | None]
    ) -> Statements:
        """Those of a PostgreSQL pool: ``server`` is the (host, port) the URL names first."""
        return cls("postgresql", database or "postgres", usage, server)

    def __call__(self, query: Query) -> _Off | _Current:
        """The span of one run of ``query``, as a context manager."""
        api = _api
        if api is None or api.idle():
            return _OFF
        verb = _verbs.get(query.name)
        if verb is None:
            verb = _verbs[query.name] = query.sql.partition("*/")[2].split(maxsplit=1)[0].upper()
        attributes = self._base | {"db.query.summary": query.name, "db.operation.name": verb}
        if _query_text:
            attributes["db.query.text"] = query.sql
        return _Current(api, api.tracer.start_span(query.name, kind=api.client, attributes=attributes))


class _Current:
    """A span made current while its block runs (asyncpg's own spans nest under a statement's),
    marked failed by the block's exception, ended after it."""

    __slots__ = ("_api", "_span", "_token")

    def __init__(self, api: _Api, span: Any) -> None:
        self._api = api
        self._span = span
        self._token: object = None

    def __enter__(self) -> None:
        self._token = self._api.attach(self._api.in_context(self._span))

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._api.detach(self._token)  # type: ignore[arg-type]
        if exc is not None:
            _fail(self._api, self._span, exc)
        self._span.end()


def _observe(values: Callable[[Usage], Iterable[tuple[int, str | None]]]) -> Callable[[Any], Any]:
    """An observable instrument's callback: ``values`` of each open pool's usage."""

    def callback(options: Any) -> Iterable[Any]:
        from opentelemetry.metrics import Observation

        for statements in list(_statements):
            usage = statements.usage()
            if usage is None:
                continue
            attributes = {
                "db.system.name": statements.system,
                "db.client.connection.pool.name": statements.pool,
            }
            for value, state in values(usage):
                if state is not None:
                    attributes = attributes | {"db.client.connection.state": state}
                yield Observation(value, attributes)

    return callback


def background(name: str) -> _Off | _Current:
    """A root span for work a task does on its own (the background indexer), linked to the
    span current when the task started; as a context manager."""
    api = _api
    if api is None or api.idle():
        return _OFF
    started_by = api.current().get_span_context()
    links = [api.link(started_by)] if started_by.is_valid else None
    span = api.tracer.start_span(f"threadstore {name}", context=api.empty(), kind=api.internal, links=links)
    return _Current(api, span)
