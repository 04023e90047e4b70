"""The PostgreSQL backend: one asyncpg pool, statements from sql/postgres/.

No lock around the pool (that would serialise it). JSON travels as msgspec-encoded bytes through
binary json/jsonb codecs registered in the pool's init; reads come back as one JSON document per
call and are decoded by the store in a single typed pass. A save or an append is one statement,
so one round trip, unless the save deletes messages (then a transaction renumbers them).
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import logging
import random
import time
from collections.abc import AsyncIterator, Callable, Coroutine, Sequence
from datetime import UTC, datetime
from typing import Any, TypeVar

import asyncpg
import msgspec

from threadstore import matching, queries
from threadstore.backends import (
    AppendPlan,
    MessageSearch,
    SavePlan,
    SchemaStatus,
    ThreadCopy,
    ThreadSearch,
    enable_echo,
    log_statement,
    pending_migrations,
    schema_status,
)
from threadstore.config import DatabaseConfig, Settings
from threadstore.errors import (
    CommandTimeoutError,
    ConflictError,
    PoolTimeoutError,
    StoreUnavailableError,
    ThreadStoreError,
)
from threadstore.queries import Kind

_log = logging.getLogger(__name__)

_encode = msgspec.json.Encoder().encode
_decode = msgspec.json.Decoder().decode
_JSONB_VERSION = b"\x01"  # binary jsonb is a version byte followed by the JSON text

# Losing the server or the socket, as opposed to the server rejecting a statement: also a
# session the server ended (pg_terminate_backend, shutdown) and asyncpg's InternalClientError,
# raised when a session that just died is used again. (TimeoutError is an OSError.)
_CONNECTION_ERRORS = (OSError, asyncpg.InterfaceError, asyncpg.InternalClientError,
                      asyncpg.PostgresConnectionError, asyncpg.CannotConnectNowError,
                      asyncpg.AdminShutdownError, asyncpg.CrashShutdownError)


_LOCKED_ATTEMPTS = 3
_CONNECT_TIMEOUT = 10.0  # seconds; asyncpg's default of 60 leaves create() hanging on a dead host
_SETTLE_TIMEOUT = 10.0  # seconds a cancelled operation waits for the server to end its statement


def _server_settings(settings: Settings) -> dict[str, str]:
    # No plan_cache_mode=force_generic_plan, whatever the statement cache: a generic plan guesses
    # an unknown LIMIT at 10% of the table, so list(20) sorted every thread (4 ms -> 53 ms at
    # 100,000 threads) and the content search went from 10 to 32 ms, while saves plan as fast
    # either way (make bench, 1.01-1.03x).
    return {
        "application_name": "threadstore",
        "timezone": "UTC",  # JSON documents carry times as ...+00:00
    }


class _Connection(asyncpg.Connection):  # type: ignore[misc]
    """An asyncpg connection that knows when it was opened (for ``pool_recycle``)."""

    __slots__ = ("opened_at",)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.opened_at = time.monotonic()


def _encode_jsonb(value: Any) -> bytes:
    return _JSONB_VERSION + _encode(value)


def _decode_jsonb(data: bytes) -> Any:
    return _decode(data[1:])


def _raw_json(data: bytes) -> bytes:
    return data


async def _init_connection(conn: asyncpg.Connection) -> None:
    await conn.set_type_codec("jsonb", schema="pg_catalog", format="binary",
                              encoder=_encode_jsonb, decoder=_decode_jsonb)
    # json results are the documents the store decodes itself: hand over the bytes untouched.
    await conn.set_type_codec("json", schema="pg_catalog", format="binary",
                              encoder=_encode, decoder=_raw_json)


async def _no_reset(conn: asyncpg.Connection) -> None:
    """Release without a reset query (RESET ALL, UNLISTEN, ... cost a round trip each time).

    Safe because this backend leaves no session state: no SET, LISTEN, cursors or session
    advisory locks. asyncpg itself still rolls back a transaction left open.
    """


def _translate(exc: Exception, name: str, config: DatabaseConfig) -> Exception:
    text = config.scrub(f"{name}: {exc}")
    if isinstance(exc, asyncpg.UniqueViolationError):
        return ConflictError(f"{text} (an id is already stored elsewhere)")
    if isinstance(exc, asyncpg.InvalidRegularExpressionError):
        # Checked patterns still reach limits of PostgreSQL's engine ("too complex").
        return ValueError(f"PostgreSQL refused the search pattern: {exc}")
    if isinstance(exc, _CONNECTION_ERRORS):
        return StoreUnavailableError(f"PostgreSQL at {config.masked_url} is unavailable: {text}")
    return ThreadStoreError(f"PostgreSQL failed: {text}")


async def _to_the_end(release: Coroutine[Any, Any, None]) -> None:
    """Release a connection whose statement was cancelled, through further cancellations.

    asyncpg's release waits until the server has ended the cancelled statement (committed or
    rolled it back); cancelled again meanwhile, it would stop waiting, and the write could then
    land after its caller gave up on it and looked. So wait, for up to _SETTLE_TIMEOUT seconds.
    """
    task = asyncio.ensure_future(release)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + _SETTLE_TIMEOUT
    while not task.done() and loop.time() < deadline:
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.wait([task], timeout=deadline - loop.time())
    if task.done() and not task.cancelled():
        task.exception()  # retrieved: the caller gets its CancelledError


def _session_lost(exc: BaseException) -> bool:
    """Whether ``exc`` leaves the session gone or in an unknown state (a timeout does not)."""
    cause = exc.__cause__ if isinstance(exc, StoreUnavailableError) else exc
    return isinstance(cause, _CONNECTION_ERRORS) and not isinstance(cause, TimeoutError)


_T = TypeVar("_T")
# The server aborts one writer of a lock cycle (40P01) and, above READ COMMITTED (a server's
# default_transaction_isolation), one of two conflicting transactions (40001). Bulk writes lock
# in id order, so neither should happen between threadstore's own writers; other writers of the
# tables can still cause it.
_COLLISIONS = (asyncpg.DeadlockDetectedError, asyncpg.SerializationError)
_COLLISION_ATTEMPTS = 3
_COLLISION_PAUSE = 0.05  # seconds, doubled after each attempt, times 0.5-1.5 so two do not meet again


def _collided(exc: BaseException) -> bool:
    """Whether ``exc`` is a write the server aborted as a deadlock or serialization failure."""
    return isinstance(exc, ThreadStoreError) and isinstance(exc.__cause__, _COLLISIONS)


async def _retried(attempt: Callable[[], Coroutine[Any, Any, _T]], what: Callable[[], str]) -> _T:
    """``await attempt()`` -- one whole statement or transaction, so aborted it wrote nothing --
    run again when the server aborted it as a deadlock or serialization failure, up to
    _COLLISION_ATTEMPTS times in all; then a ConflictError naming ``what()`` collided."""
    for tries in range(1, _COLLISION_ATTEMPTS + 1):
        try:
            return await attempt()
        except ThreadStoreError as exc:
            if not _collided(exc):
                raise
            reason = str(exc.__cause__).partition("\n")[0]
            if tries == _COLLISION_ATTEMPTS:
                raise ConflictError(f"{what()} collided with another writer {tries} times in a row "
                                    f"(PostgreSQL: {reason}); nothing of it was written") from exc.__cause__
            _log.info("%s collided with another writer (%s); trying again", what(), reason)
            await asyncio.sleep(_COLLISION_PAUSE * 2 ** (tries - 1) * random.uniform(0.5, 1.5))
    raise AssertionError("unreachable")


def _some(ids: Sequence[str]) -> str:
    """Thread ids for a message: all of a few, else the first ones and how many."""
    shown = ", ".join(map(repr, ids[:3]))
    return shown if len(ids) <= 3 else f"{shown} and {len(ids) - 3} more"


class PostgresBackend:
    """Threads in PostgreSQL through an asyncpg pool."""

    name = "postgres"
    loop_bound = True

    def __init__(self, config: DatabaseConfig) -> None:
        self._config = config
        self._settings = config.settings
        self._echo = config.settings.echo
        self._queries = queries.load("postgres")
        self._pool: asyncpg.Pool | None = None

    async def open(self) -> None:
        settings = self._settings
        if self._echo:
            enable_echo()
        try:
            self._pool = await asyncpg.create_pool(
                self._config.dsn, min_size=settings.pool_size,
                max_size=settings.pool_size + settings.max_overflow,
                command_timeout=settings.command_timeout,
                statement_cache_size=settings.statement_cache_size,
                init=_init_connection, reset=_no_reset, timeout=_CONNECT_TIMEOUT,
                server_settings=_server_settings(settings), connection_class=_Connection,
            )
        except (asyncpg.PostgresError, ValueError, *_CONNECTION_ERRORS) as exc:
            message = self._config.scrub(str(exc))
            raise StoreUnavailableError(
                f"cannot connect to PostgreSQL at {self._config.masked_url}: {message}"
            ) from None
        _log.debug("PostgreSQL pool open at %s: %d kept, up to %d", self._config.masked_url,
                   settings.pool_size, settings.pool_size + settings.max_overflow)

    async def ping(self) -> None:
        async with self._acquire() as conn:
            await self._run(conn, "postgres.ping")

    @property
    def engine(self) -> asyncpg.Pool | None:
        return self._pool

    async def close(self) -> None:
        pool, self._pool = self._pool, None
        if pool is not None:
            await pool.close()

    def abandon(self) -> None:
        pool, self._pool = self._pool, None
        if pool is not None:
            with contextlib.suppress(Exception):  # its loop is closed: sockets close as they can
                pool.terminate()

    @contextlib.asynccontextmanager
    async def _acquire(self) -> AsyncIterator[asyncpg.Connection]:
        """A pooled connection for the block: waits at most ``pool_timeout`` for a free one,
        and never hands out one older than ``pool_recycle``. Losing the server outside a
        statement (connecting, ending a transaction) is a StoreUnavailableError too.

        When an operation finds its session lost (killed, server restarted), that connection is
        closed and every other pooled one is replaced before its next use: asyncpg would hand
        out the dead ones again, failing one operation each (asyncpg issue #1069).
        """
        pool = self._pool
        if pool is None:
            raise StoreUnavailableError("the PostgreSQL pool is closed")
        try:
            conn = await self._checkout(pool)
            try:
                yield conn
            except BaseException as exc:
                if _session_lost(exc):
                    with contextlib.suppress(asyncpg.InterfaceError):  # already released
                        conn.terminate()
                    await pool.expire_connections()
                elif isinstance(exc, asyncio.CancelledError):
                    await _to_the_end(pool.release(conn))
                raise
            finally:
                await pool.release(conn)  # does nothing when released above
        except ThreadStoreError:
            raise  # already translated (PoolTimeoutError and CommandTimeoutError are TimeoutErrors)
        except _CONNECTION_ERRORS as exc:
            raise _translate(exc, "connection", self._config) from exc
    async def _checkout(self, pool: asyncpg.Pool) -> asyncpg.Connection:
        settings = self._settings
        deadline = time.monotonic() + settings.pool_timeout
        while True:
            try:
                if pool.get_idle_size():
                    # A free connection is handed over at once; a timer would cost ~70 us here.
                    conn = await pool.acquire()
                else:
                    conn = await pool.acquire(timeout=max(deadline - time.monotonic(), 0.0))
            except TimeoutError:
                raise PoolTimeoutError(
                    f"no PostgreSQL connection became free within {settings.pool_timeout:g} s: all "
                    f"{settings.pool_size + settings.max_overflow} are in use (pool_size "
                    f"{settings.pool_size} + max_overflow {settings.max_overflow}); raise them or "
                    "pool_timeout (DB_POOL_SIZE, DB_MAX_OVERFLOW, DB_POOL_TIMEOUT)"
                ) from None
            except (asyncpg.PostgresError, *_CONNECTION_ERRORS) as exc:
                raise _translate(exc, "connect", self._config) from exc
            recycle = settings.pool_recycle
            if recycle is None or time.monotonic() - conn.opened_at <= recycle:
                return conn
            # Too old to reuse: closing it returns its slot to the pool, which opens a new
            # connection on the next acquire.
            _log.debug("closing a PostgreSQL connection older than pool_recycle (%g s)", recycle)
            with contextlib.suppress(Exception):
                await conn.close(timeout=_CONNECT_TIMEOUT)
            await pool.release(conn)  # a no-op unless close() failed half-way

    @contextlib.asynccontextmanager
    async def session(self) -> AsyncIterator[asyncpg.Connection]:
        async with self._acquire() as conn, conn.transaction():
            yield conn

    async def _run(self, conn: asyncpg.Connection, name: str, /, **params: Any) -> Any:
        """Run one named query; the one place where SQL meets the driver."""
        query = self._queries[name]
        args = query.args(params)
        started = time.perf_counter() if self._echo else 0.0
        try:
            match query.kind:
                case Kind.ONE:
                    return await conn.fetchrow(query.sql, *args)
                case Kind.MANY:
                    return await conn.fetch(query.sql, *args)
                case Kind.VALUE:
                    return await conn.fetchval(query.sql, *args)
                case Kind.EXEC:
                    await conn.execute(query.sql, *args)
                    return None
                case Kind.ROWCOUNT:
                    status: str = await conn.execute(query.sql, *args)
                    return int(status.rpartition(" ")[2])
                case Kind.SCRIPT:
                    await conn.execute(query.sql)
                    return None
        except TimeoutError as exc:  # only command_timeout makes asyncpg time a statement out
            raise self._timed_out(name) from exc
        except (asyncpg.PostgresError, *_CONNECTION_ERRORS) as exc:
            raise _translate(exc, name, self._config) from exc
        finally:
            if started:
                log_statement(name, started, time.perf_counter())

    def _timed_out(self, name: str) -> CommandTimeoutError:
        return CommandTimeoutError(f"{name} ran longer than the command timeout of "
                                   f"{self._settings.command_timeout:g} s (DB_COMMAND_TIMEOUT) "
                                   "and was cancelled")

    async def migrate(self) -> list[int]:
        registry = self._queries
        async with self._acquire() as conn, conn.transaction():
            await self._run(conn, "postgres.migration_lock")
            await self._run(conn, "schema.create_ledger")
            applied = [row[0] for row in await self._run(conn, "schema.versions")]
            pending = pending_migrations(registry.migrations, applied)
            for migration in pending:
                started = time.perf_counter()
                try:
                    await conn.execute(migration.script)
                except TimeoutError as exc:
                    raise self._timed_out(f"migration {migration.origin}") from exc
                except asyncpg.PostgresError as exc:
                    raise ThreadStoreError(f"migration {migration.origin} failed: {exc}") from exc
                if self._echo:
                    log_statement(f"migrations.{migration.version:04d}_{migration.name}", started,
                                  time.perf_counter())
                await self._run(conn, "schema.record", version=migration.version,
                                name=migration.name, applied_at=datetime.now(UTC))
        if pending:
            _log.info("applied migrations %s to %s", ", ".join(m.origin for m in pending),
                      self._config.masked_url)
        return [m.version for m in pending]

    async def schema_status(self) -> SchemaStatus:
        async with self._acquire() as conn:
            applied = []
            if await self._run(conn, "schema.ledger_exists"):
                applied = [row[0] for row in await self._run(conn, "schema.versions")]
        return schema_status(self._queries.migrations, applied)

    async def get(self, thread_id: str) -> bytes | None:
        async with self._acquire() as conn:
            doc: bytes | None = await self._run(conn, "threads.get", thread_id=thread_id)
        return doc

    async def list(self, limit: int | None, offset: int) -> bytes:
        async with self._acquire() as conn:
            doc: bytes = await self._run(conn, "threads.list", limit=limit, offset=offset)
        return doc

    @staticmethod
    def _thread_params(plan: SavePlan) -> dict[str, Any]:
        return {
            "thread_id": plan.thread_id, "title": plan.title,
            "attributes": msgspec.Raw(plan.attributes), "platforms": msgspec.Raw(plan.platforms),
            "source": None if plan.source is None else msgspec.Raw(plan.source),
            # As text: asyncpg would turn datetime.min/max into -infinity/infinity.
            "created_at": plan.created_at.isoformat(), "updated_at": plan.updated_at.isoformat(),
        }

    async def save(self, plan: SavePlan) -> dict[str, int]:
        params = {**self._thread_params(plan), "new": msgspec.Raw(plan.new),
                  "edited": msgspec.Raw(plan.edited), "removed": plan.removed}

        def what() -> str:
            return f"saving thread {plan.thread_id!r}"

        async with self._acquire() as conn:
            # The two common saves get a light statement: messages appended to a thread loaded
            # from here, and a thread this store has not seen. Anything unexpected (the thread or
            # a message is stored already, or the thread is gone) falls to the general save.
            if plan.edited == b"[]" and not plan.removed and (plan.new_count or not plan.synced):
                light = {**params, "count": plan.new_count}
                del light["edited"], light["removed"]
                if plan.synced:
                    del light["created_at"]
                name = "postgres.save_appended" if plan.synced else "postgres.save_new"
                try:
                    rows = await _retried(lambda: self._run(conn, name, **light), what)
                    if rows or not plan.synced:
                        return {row[0]: row[1] for row in rows}
                except ConflictError as exc:
                    if _collided(exc):
                        raise
            if not plan.removed:
                try:
                    rows = await _retried(lambda: self._run(conn, "postgres.save", **params), what)
                    return {row[0]: row[1] for row in rows}
                except ConflictError as exc:
                    if _collided(exc):
                        raise  # else maybe a concurrent save inserted one of these messages: below
            # Under the thread's lock, each statement's snapshot includes every save of this
            # thread that finished before it, so a message another writer just inserted is seen
            # as held and updated, not inserted twice. A writer that skipped the lock can still
            # commit one in between, hence a few attempts; a message stored in another thread
            # fails every time.
            async def locked() -> builtins.list[Any]:
                async with conn.transaction():
                    await self._run(conn, "postgres.lock_thread", thread_id=plan.thread_id)
                    rows: builtins.list[Any] = await self._run(conn, "postgres.save", **params)
                    if plan.removed:
                        rows += await self._run(conn, "postgres.renumber", thread_id=plan.thread_id)
                return rows

            attempts_left = _LOCKED_ATTEMPTS
            while True:
                try:
                    rows = await _retried(locked, what)
                    return {row[0]: row[1] for row in rows}
                except ConflictError as exc:
                    attempts_left -= 1
                    if not attempts_left or _collided(exc):
                        raise

    async def append(self, plan: AppendPlan) -> tuple[bytes, dict[str, int]] | None:
        async with self._acquire() as conn:
            row = await _retried(lambda: self._run(
                conn, "postgres.append", thread_id=plan.thread_id, count=plan.count,
                updated_at=plan.updated_at, messages=msgspec.Raw(plan.messages),
            ), lambda: f"appending to thread {plan.thread_id!r}")
        if row is None:
            return None
        sequences: dict[str, int] = _decode(row[1])
        return row[0], sequences

    async def create_if_absent(self, plan: SavePlan) -> None:
        async with self._acquire() as conn:
            await self._run(conn, "threads.create_if_absent", **self._thread_params(plan))

    async def delete(self, thread_id: str) -> bool:
        async with self._acquire() as conn:
            count: int = await self._run(conn, "threads.delete", thread_id=thread_id)
        return count > 0

    async def delete_many(self, thread_ids: Sequence[str]) -> int:
        ids = list(thread_ids)
        async with self._acquire() as conn:
            count: int = await _retried(lambda: self._run(conn, "threads.delete_many", ids=ids),
                                        lambda: f"deleting {len(ids)} threads ({_some(sorted(ids))})")
        return count

    async def attachment_references(self, refs: Sequence[str] | None) -> set[str]:
        async with self._acquire() as conn:
            if refs is None:
                rows = await self._run(conn, "files.references")
            else:
                rows = await self._run(conn, "files.references_among", refs=list(refs))
        return {row[0] for row in rows}


    # -- searches, lookups, aliases, statistics ---------------------------------------------

    async def find_threads(self, search: ThreadSearch, limit: int | None, offset: int) -> bytes:
        params = {name: _param(getattr(search, name)) for name in search.__struct_fields__}
        async with self._acquire() as conn:
            doc: bytes = await self._run(conn, f"search.{search.query}", limit=limit, offset=offset,
                                         **params)
        return doc

    async def find_messages(self, search: MessageSearch, limit: int | None, offset: int) -> bytes:
        async with self._acquire() as conn:
            doc: bytes = await self._run(
                conn, f"search.messages_by_{search.column}", keys=search.keys,
                value=msgspec.Raw(search.value), limit=limit, offset=offset)
        return doc

    async def thread_of_message(self, message_id: str) -> bytes | None:
        async with self._acquire() as conn:
            doc: bytes | None = await self._run(conn, "search.by_message_id", message_id=message_id)
        return doc

    async def save_alias(self, alias: str, thread_id: str, created_at: datetime) -> bool:
        async with self._acquire() as conn:
            try:
                saved = await self._run(conn, "aliases.save", alias=alias, thread_id=thread_id,
                                        created_at=created_at.isoformat())
            except ThreadStoreError as exc:
                if isinstance(exc.__cause__, asyncpg.ForeignKeyViolationError):
                    return False  # the thread was deleted in between
                raise
        return saved is not None

    async def thread_by_alias(self, alias: str) -> bytes | None:
        async with self._acquire() as conn:
            doc: bytes | None = await self._run(conn, "aliases.get_thread", alias=alias)
        return doc

    async def delete_alias(self, alias: str) -> bool:
        async with self._acquire() as conn:
            count: int = await self._run(conn, "aliases.delete", alias=alias)
        return count > 0

    async def aliases(self, thread_id: str) -> builtins.list[str]:
        async with self._acquire() as conn:
            rows = await self._run(conn, "aliases.of_thread", thread_id=thread_id)
        return [row[0] for row in rows]

    async def usage(self, hour_ago: datetime, day_ago: datetime, week_ago: datetime) -> bytes:
        async with self._acquire() as conn:
            doc: bytes = await self._run(conn, "stats.usage", hour_ago=hour_ago.isoformat(),
                                         day_ago=day_ago.isoformat(), week_ago=week_ago.isoformat())
        return doc

    # -- export, import, copy ---------------------------------------------------------------

    async def export_page(self, after: str | None, limit: int) -> bytes:
        async with self._acquire() as conn:
            rows = await self._run(conn, "transfer.page", after=after, limit=limit)
        return b"[" + b",".join([b"[%s,%s]" % (row[0], row[1]) for row in rows]) + b"]"

    async def stored(self, thread_ids: Sequence[str]) -> builtins.list[str]:
        async with self._acquire() as conn:
            rows = await self._run(conn, "transfer.stored", ids=list(thread_ids))
        return [row[0] for row in rows]

    async def put(self, copies: Sequence[ThreadCopy]) -> builtins.list[str]:
        threads = [{
            **self._thread_params(copy.plan), "id": copy.plan.thread_id,
            "last_sequence": copy.last_sequence, "messages": msgspec.Raw(copy.plan.new),
            "aliases": [{"alias": alias, "created_at": at.isoformat()} for alias, at in copy.aliases],
        } for copy in copies]
        ids = [copy.plan.thread_id for copy in copies]
        async with self._acquire() as conn:
            try:
                rows = await _retried(lambda: self._run(conn, "postgres.put", threads=threads),
                                      lambda: f"importing {len(ids)} threads ({_some(sorted(ids))})")
            except ConflictError as exc:
                if _collided(exc):
                    raise
                detail = getattr(exc.__cause__, "detail", None)  # "Key (alias)=(x) already exists."
                raise ConflictError(f"{exc}{f': {detail}' if detail else ''}") from exc.__cause__
        return [row[0] for row in rows]


def _param(value: Any) -> Any:
    """A search field as asyncpg takes it: JSON as raw jsonb, a pattern in its ~* spelling."""
    if isinstance(value, matching.TextPattern):
        return value.posix
    if isinstance(value, bytes):
        return msgspec.Raw(value)
    return value


def create(config: DatabaseConfig) -> PostgresBackend:
    """A PostgreSQL backend for the DSN in ``config``."""
    return PostgresBackend(config)
