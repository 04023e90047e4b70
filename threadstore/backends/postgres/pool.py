"""Talking to PostgreSQL reliably: one asyncpg pool, statements from sql/postgres/.

No lock around the pool (that would serialise it). JSON travels as msgspec-encoded bytes through
binary json/jsonb codecs registered in the pool's init; reads come back as one JSON document per
call and are decoded by the store in a single typed pass. A save or an append is one statement,
so one round trip.

No wait without end: connecting has ``connect_timeout``, checkout ``pool_timeout``, and an
operation that has waited ``liveness_interval`` for the server is checked on a connection of its
own (see ``_check``) rather than cut by a timer, so long legitimate statements run to the end
while a server that stopped answering is found within two intervals. A read that meets a session
the server has ended is retried once on a new connection.

Past one server: a URL naming several hosts is tried host by host, each within its share of
``connect_timeout``; a write refused as read-only (a connection to a server that has become a
standby) runs once more on a new connection; reads go to read replicas that have replayed this
store's last write (see ``PostgresPool.read`` and docs/replicas.md).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import random
import re
import socket
import time
from collections.abc import AsyncIterator, Callable, Coroutine
from typing import Any, TypeVar
from urllib.parse import urlsplit

import asyncpg
import msgspec

from threadstore import queries, tracing
from threadstore.backends.base import alias_taken, message_stored
from threadstore.config import DatabaseConfig, Settings
from threadstore.errors import (
    CommandTimeoutError,
    ConflictError,
    PoolTimeoutError,
    StoreUnavailableError,
    ThreadStoreError,
)
from threadstore.queries import Kind, enable_echo, log_statement

# The backend's logger: the pool's records read as the backend's, as before the split.
_log = logging.getLogger("threadstore.backends.postgres")


class _QuietFloor(logging.Filter):
    """Drops asyncpg's "Failed to restore the pool connection floor" record: it carries a
    ~30-line traceback and comes on every retry while the server is down. The backend logs one
    WARNING when the server becomes unreachable and one INFO when it is back instead."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("Failed to restore the pool connection floor")


logging.getLogger("asyncpg.pool").addFilter(_QuietFloor())

_encode = msgspec.json.Encoder().encode
_decode = msgspec.json.Decoder().decode
_JSONB_VERSION = b"\x01"  # binary jsonb is a version byte followed by the JSON text

# Losing the server or the socket, as opposed to the server rejecting a statement: also a
# session the server ended (pg_terminate_backend, shutdown) and asyncpg's InternalClientError,
# raised when a session that just died is used again. (TimeoutError is an OSError.)
_CONNECTION_ERRORS = (
    OSError,
    asyncpg.InterfaceError,
    asyncpg.InternalClientError,
    asyncpg.PostgresConnectionError,
    asyncpg.CannotConnectNowError,
    asyncpg.AdminShutdownError,
    asyncpg.CrashShutdownError,
)


# Seconds a cancelled (or timed-out) statement waits for the server to end it before its
# connection is dropped. Locally the cancel request and the server's answer take 5 ms (median of
# 20 cancelled appends, at most 13 ms, on a shared machine). A write must know its outcome, so it
# waits longer; a read only keeps its connection by waiting.
_SETTLE_READ = 1.0
_SETTLE_WRITE = 3.0
_CLOSE_TIMEOUT = 2.0  # seconds for a graceful close (Terminate, then the server closes the socket)
_IDLE_CONFIRM = 1.0  # seconds between the two looks of a liveness check that finds a session idle
# pg_stat_activity states of a session the server is working on, or that this role may not see.
_UNKNOWN_OR_BUSY = (None, "active", "fastpath function call", "disabled")


def _server_settings(settings: Settings) -> dict[str, str]:
    # No plan_cache_mode=force_generic_plan, whatever the statement cache: a generic plan guesses
    # an unknown LIMIT at 10% of the table, so list(20) sorted every thread (4 ms -> 53 ms at
    # 100,000 threads) and the content search went from 10 to 32 ms, while saves plan as fast
    # either way (make bench, 1.01-1.03x).
    server = {
        "application_name": "threadstore",
        "timezone": "UTC",  # JSON documents carry times as ...+00:00
    }
    if settings.schema is not None:
        # The schema alone, without public: otherwise a table missing from it (before the
        # migrations, or an IF EXISTS in one) would be found in public, perhaps another store's.
        # config.py lets no quote into the name.
        server["search_path"] = f'"{settings.schema}"'
    return server


class _Connection(asyncpg.Connection):  # type: ignore[misc]
    """An asyncpg connection that knows when it was opened (for ``pool_recycle``) and never
    waits for ever to close."""

    __slots__ = ("opened_at", "rolled_back")

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.opened_at = time.monotonic()
        self.rolled_back = False  # dropped by transaction before COMMIT: nothing was written

    async def close(self, *, timeout: float | None = None) -> None:
        """Close gracefully within ``timeout`` (default _CLOSE_TIMEOUT), else drop the socket.

        asyncpg's pool closes expired, idle and surplus connections with no timeout, which on a
        server that stopped answering waits for ever (in the pool's own tasks, or in release()).
        """
        with contextlib.suppress(OSError):  # asyncpg aborts the socket when closing fails
            await super().close(timeout=_CLOSE_TIMEOUT if timeout is None else timeout)


class _Watch:
    """One operation's liveness check: its connection, whether it still runs, and why the check
    ended it (``reason``, with the check's own error as ``cause``) when it did."""

    __slots__ = ("cause", "conn", "handle", "reason", "running")

    def __init__(self, conn: asyncpg.Connection) -> None:
        self.conn = conn
        self.handle: asyncio.TimerHandle | None = None
        self.running = True
        self.reason: str | None = None
        self.cause: BaseException | None = None

    def stop(self) -> None:
        self.running = False
        if self.handle is not None:
            self.handle.cancel()


def _encode_jsonb(value: Any) -> bytes:
    if type(value) is msgspec.Raw:  # documents encoded by the store: one copy, not two
        return b"".join((_JSONB_VERSION, value))
    return _JSONB_VERSION + _encode(value)


def _decode_jsonb(data: bytes) -> Any:
    return _decode(data[1:])


def _raw_json(data: bytes) -> bytes:
    return data


async def _init_connection(conn: asyncpg.Connection) -> None:
    await conn.set_type_codec(
        "jsonb", schema="pg_catalog", format="binary", encoder=_encode_jsonb, decoder=_decode_jsonb
    )
    # json results are the documents the store decodes itself: hand over the bytes untouched.
    await conn.set_type_codec(
        "json", schema="pg_catalog", format="binary", encoder=_encode, decoder=_raw_json
    )


async def _no_reset(conn: asyncpg.Connection) -> None:
    """Release without a reset query (RESET ALL, UNLISTEN, ... cost a round trip each time).

    Safe because this backend leaves no session state: no SET, LISTEN, cursors or session
    advisory locks. asyncpg itself still rolls back a transaction left open.
    """


def _translate(exc: Exception, name: str, config: DatabaseConfig) -> Exception:
    text = config.scrub(f"{name}: {_reason(exc) if isinstance(exc, OSError) else exc}")
    detail = getattr(exc, "detail", None) or ""
    # Citus relays a worker's unique violation in a statement it ran through the coordinator
    # (import_threads' modifying CTEs) as XX000, with the worker's message and detail.
    if isinstance(exc, asyncpg.UniqueViolationError) or (
        isinstance(exc, asyncpg.InternalServerError) and re.fullmatch(r"Key \(.*\) already exists\.", detail)
    ):
        # messages_pkey is (thread_id, id); the server prints the pair unquoted, so the message
        # id is what follows the first ", " (a thread id holding ", " misnames it, only here).
        # By the key's columns, not the table: a Citus worker's error names no table.
        if key := re.fullmatch(r"Key \(thread_id, id\)=\(.*?, (.*)\) already exists\.", detail):
            return message_stored(key[1])
        if key := re.fullmatch(r"Key \(alias\)=\((.*)\) already exists\.", detail):
            return alias_taken(key[1])
        return ConflictError(f"{text} (an id is already stored elsewhere): {detail}")
    if isinstance(exc, asyncpg.InvalidRegularExpressionError):
        # Checked patterns still reach limits of PostgreSQL's engine ("too complex").
        return ValueError(f"PostgreSQL refused the search pattern: {exc}")
    if isinstance(exc, _CONNECTION_ERRORS):
        return StoreUnavailableError(f"PostgreSQL at {config.masked_url} is unavailable: {text}")
    if isinstance(exc, asyncpg.QueryCanceledError | asyncpg.LockNotAvailableError) and "timeout" in str(exc):
        # The server's statement_timeout or lock_timeout (a role's, a database's or the URL's).
        return CommandTimeoutError(f"PostgreSQL cancelled {text} (the server's own timeout)")
    if isinstance(exc, asyncpg.InvalidCatalogNameError):  # the database was dropped
        return StoreUnavailableError(f"PostgreSQL at {config.masked_url} is unavailable: {text}")
    return ThreadStoreError(f"PostgreSQL failed: {text}")


async def _settle(pool: asyncpg.Pool, conn: asyncpg.Connection, raw: _Connection, bound: float) -> bool:
    """Release a connection whose statement was cancelled, through further cancellations; True
    when the server ended the statement within ``bound`` seconds (or nothing of it can have
    been written), False when it did not (or the cancel request failed) and the connection was
    dropped. ``raw`` is the proxy's connection, which the proxy forgets once released.

    asyncpg's release waits until the server has ended the cancelled statement (committed or
    rolled it back); cancelled again meanwhile, it would stop waiting, and the write could then
    land after its caller gave up on it and looked. The release runs once, as one task: a second
    release of the same connection races the first ("inactivity timer already exists").
    """
    task = asyncio.ensure_future(pool.release(conn))
    loop = asyncio.get_running_loop()
    deadline = loop.time() + bound
    while not task.done() and loop.time() < deadline:
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.wait([task], timeout=deadline - loop.time())
    if not task.done():
        # Dropping the connection completes the cancellation release() waits for (asyncpg's
        # cancel request, a new connection, has no timeout of its own unless command_timeout).
        raw.terminate()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.wait([task], timeout=_CLOSE_TIMEOUT)
    if not task.done() or task.cancelled():
        return False
    error = task.exception()  # retrieved: the caller gets its own error
    if isinstance(error, asyncpg.PostgresError):
        # The reset refused by the server (a cancel request that reaches it just after the
        # statement ended cancels the next one), and the connection dropped: the statement ended.
        return True
    if raw.is_closed():
        # Dropped meanwhile: by transaction before its COMMIT, which a second cancellation can
        # reach while the first is settling, the server rolls back and nothing was written;
        # otherwise (a failed cancel request, a liveness check) the statement's end is unknown.
        return raw.rolled_back
    return error is None


@contextlib.asynccontextmanager
async def transaction(conn: asyncpg.Connection, **options: Any) -> AsyncIterator[None]:
    """``conn.transaction(**options)``, except that a block cancelled before its COMMIT does not wait
    for a ROLLBACK, which on a silent network never comes: the connection is dropped instead,
    and the server rolls back the transaction of a session that ended, so nothing of it was
    written. (A cancellation during COMMIT is acquire's: it waits for the server, bounded.)"""
    transaction = conn.transaction(**options)
    started = False
    try:
        await transaction.start()
        started = True
        yield
    except asyncio.CancelledError:
        conn._con.rolled_back = True  # the pool proxy's connection: _acquire reads it
        conn.terminate()
        raise
    except BaseException:
        if started:
            await transaction.rollback()
        raise
    await transaction.commit()


def _where(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _address(config: DatabaseConfig) -> str:
    """host:port of the server (of each, when the URL names several), for messages."""
    try:
        return ", ".join(_where(host, port) for host, port in config.hosts)
    except ValueError:
        return str(config.masked_url)


# What a host that does not match target_session_attrs is, by the attribute wanted.
_MISMATCH = {
    "read-write": "is read-only (a standby, or default_transaction_read_only is on)",
    "primary": "is a standby",
    "standby": "is not a standby",
    "read-only": "accepts writes (not read-only)",
}
_NONE_IS = {
    "read-write": "a primary",
    "primary": "a primary",
    "standby": "a standby",
    "read-only": "read-only",
}


class _NoServer(ConnectionError):
    """No host of a multi-host URL gave a connection of the kind wanted; the message says what
    each host answered."""


async def _connect_one(bound: float | None, args: Any, kwargs: dict[str, Any]) -> asyncpg.Connection:
    """A connection with its codecs, within ``bound`` seconds."""
    async with asyncio.timeout(bound):
        conn = await asyncpg.connect(*args, **kwargs)
        try:
            await _init_connection(conn)
        except BaseException:
            conn.terminate()
            raise
    return conn


async def _connect_each(
    hosts: list[tuple[str, int]], attrs: str, bound: float | None, args: Any, kwargs: dict[str, Any]
) -> tuple[asyncpg.Connection, tuple[str, int]]:
    """A connection to the first of ``hosts`` that matches ``attrs`` (target_session_attrs),
    each host tried within its share of ``bound``: asyncpg gives the first host the whole
    timeout, so one that accepts TCP and never answers left none for the next (asyncpg #1155).
    ``prefer-standby`` takes a standby, else the first host that answered. Returns the
    connection and its host."""
    share = None if bound is None else bound / len(hosts)
    wanted = "standby" if attrs == "prefer-standby" else attrs
    answers: list[str] = []
    answered: list[tuple[str, int]] = []
    for host, port in hosts:
        where = _where(host, port)
        try:
            conn = await _connect_one(
                share, args, {**kwargs, "host": host, "port": port, "target_session_attrs": wanted}
            )
            return conn, (host, port)
        except TimeoutError:
            answers.append(f"{where} did not answer within {share:g} s")
        except asyncpg.TargetServerAttributeNotMatched:
            answers.append(f"{where} {_MISMATCH.get(wanted, 'does not match')}")
            answered.append((host, port))
        except ConnectionRefusedError:
            answers.append(f"{where} refused the connection (no server listening)")
        except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError) as exc:
            answers.append(f"{where}: {_reason(exc)}")
    if attrs == "prefer-standby":
        for host, port in answered:
            with contextlib.suppress(TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError, OSError):
                conn = await _connect_one(
                    share, args, {**kwargs, "host": host, "port": port, "target_session_attrs": "any"}
                )
                return conn, (host, port)
    kind = _NONE_IS.get(wanted)
    summary = f"no host is {kind}" if kind and answered else "no host could be used"
    raise _NoServer(f"{summary} (target_session_attrs={attrs}): {'; '.join(answers)}")


_CONNECT_CALL = re.compile(r"Connect call failed \('([^']*)', (\d+)")


def _reason(exc: BaseException) -> str:
    """What went wrong, in words; a refused connection names the addresses tried."""
    text = str(exc) or type(exc).__name__
    tried = [
        f"[{host}]:{port}" if ":" in host else f"{host}:{port}" for host, port in _CONNECT_CALL.findall(text)
    ]
    if tried:
        return (
            f"connection refused at {', '.join(dict.fromkeys(tried))}: the PostgreSQL server may "
            "not be running, or not be listening on that host and port"
        )
    if isinstance(exc, socket.gaierror):
        return f"the host name does not resolve ({exc.strerror})"
    return text


def read_only_server(exc: BaseException) -> bool:
    """Whether ``exc`` is a write refused by a read-only server (a hot standby, a database with
    default_transaction_read_only = on)."""
    return isinstance(exc, ThreadStoreError) and isinstance(
        exc.__cause__, asyncpg.ReadOnlySQLTransactionError
    )


def _session_lost(exc: BaseException) -> bool:
    """Whether ``exc`` leaves the session gone or in an unknown state (a timeout does not)."""
    cause: BaseException | None = exc
    while isinstance(cause, StoreUnavailableError):
        cause = cause.__cause__
    return isinstance(cause, _CONNECTION_ERRORS) and not isinstance(cause, TimeoutError)


_T = TypeVar("_T")
# The server aborts one writer of a lock cycle (40P01) and, above READ COMMITTED (a server's
# default_transaction_isolation), one of two conflicting transactions (40001). Bulk writes lock
# in id order, so neither should happen between threadstore's own writers; other writers of the
# tables can still cause it.
_COLLISIONS = (asyncpg.DeadlockDetectedError, asyncpg.SerializationError)
_COLLISION_ATTEMPTS = 3
_COLLISION_PAUSE = 0.05  # seconds, doubled after each attempt, times 0.5-1.5 so two do not meet again


def collided(exc: BaseException) -> bool:
    """Whether ``exc`` is a write the server aborted as a deadlock or serialization failure."""
    return isinstance(exc, ThreadStoreError) and isinstance(exc.__cause__, _COLLISIONS)


async def retried(attempt: Callable[[], Coroutine[Any, Any, _T]], what: Callable[[], str]) -> _T:
    """``await attempt()`` -- one whole statement or transaction, so aborted it wrote nothing --
    run again when the server aborted it as a deadlock or serialization failure, up to
    _COLLISION_ATTEMPTS times in all; then a ConflictError naming ``what()`` collided."""
    for tries in range(1, _COLLISION_ATTEMPTS + 1):
        try:
            return await attempt()
        except ThreadStoreError as exc:
            if not collided(exc):
                raise
            reason = str(exc.__cause__).partition("\n")[0]
            if tries == _COLLISION_ATTEMPTS:
                raise ConflictError(
                    f"{what()} collided with another writer {tries} times in a row "
                    f"(PostgreSQL: {reason}); nothing of it was written"
                ) from exc.__cause__
            _log.info("%s collided with another writer (%s); trying again", what(), reason)
            await asyncio.sleep(_COLLISION_PAUSE * 2 ** (tries - 1) * random.uniform(0.5, 1.5))
    raise AssertionError("unreachable")


_REPLICA_RECHECK = 1.0  # seconds after which a replica's replay position and lag are asked again
_REPLICA_TRUST = 3.0  # seconds a replica's lag, as last seen, is taken as known
_REPLICA_RETRY = 5.0  # seconds a replica that failed is skipped before it is looked at again


class _Replica:
    """A read replica's pool and what the last look at it found."""

    __slots__ = ("error", "lag", "looked_at", "looking", "pool", "replayed", "retry_at", "up")

    def __init__(self, pool: PostgresPool) -> None:
        self.pool = pool
        self.up = False  # serves reads: its last look succeeded
        self.replayed = -1  # WAL position it had replayed at the last look
        self.lag = 0.0  # seconds it was behind in applying, at the last look
        self.looked_at = -math.inf
        self.retry_at = 0.0
        self.looking: asyncio.Future[None] | None = None
        self.error: str | None = None


class PostgresPool:
    """Talking to PostgreSQL reliably: the asyncpg pool, checkout within ``pool_timeout`` and
    ``pool_recycle``, the liveness check of a waiting operation, settling a cancelled statement,
    one retry of a read whose session was lost, and the one place where SQL meets the driver."""

    def __init__(self, config: DatabaseConfig, *, replica: bool = False) -> None:
        self._config = config
        self._settings = config.settings
        self._echo = config.settings.echo
        self._queries = queries.load("postgres")
        self._pool: asyncpg.Pool | None = None
        self._address = _address(config)
        self._hosts = config.hosts
        self._checks: set[asyncio.Task[None]] = set()  # liveness checks under way
        self._reachable: bool | None = None  # None until the pool is open; see _connect
        # A replica's pool connects on first use: an unreachable replica must not stop the
        # store from opening (it is skipped, and looked at again later).
        self._replica = replica
        self._replicas = [_Replica(PostgresPool(r, replica=True)) for r in config.replicas]
        self._turn = 0  # the replica the next read tries first
        # The WAL position of this store's last write (or of a token it was given): a replica
        # serves its reads once it has replayed this far. None: a write's position is unknown.
        self._position: int | None = 0
        self.waiting = self.timeouts = 0  # checkouts waiting for a connection; and given up
        database = urlsplit(config.dsn or "").path.lstrip("/")
        self._spans = tracing.Statements.postgres(
            next(iter(config.hosts), ("localhost", 5432)), database, self.usage
        )

    async def open(self) -> None:
        settings = self._settings
        if self._echo:
            enable_echo()
        try:
            self._pool = await asyncpg.create_pool(
                self._config.dsn,
                min_size=0 if self._replica else settings.pool_size,
                max_size=settings.pool_size + settings.max_overflow,
                command_timeout=settings.command_timeout,
                statement_cache_size=settings.statement_cache_size,
                connect=self._connect,
                reset=_no_reset,
                timeout=None,
                server_settings=_server_settings(settings),
                connection_class=_Connection,
            )
        except (asyncpg.PostgresError, ValueError, *_CONNECTION_ERRORS) as exc:
            message = self._config.scrub(_reason(exc))
            raise StoreUnavailableError(
                f"cannot connect to PostgreSQL at {self._config.masked_url}: {message}"
            ) from None
        self._reachable = True
        _log.debug(
            "PostgreSQL pool open at %s: %d kept, up to %d",
            self._config.masked_url,
            settings.pool_size,
            settings.pool_size + settings.max_overflow,
        )
        for replica in self._replicas:
            await replica.pool.open()  # connects nothing yet
            self._look_later(replica)

    @property
    def engine(self) -> asyncpg.Pool | None:
        """The asyncpg pool; None before open() and after close()."""
        return self._pool

    def usage(self) -> tracing.Usage | None:
        """The connections in use and idle, the most there may be, the checkouts waiting and
        those that timed out; None while the pool is closed (tracing's gauges)."""
        pool = self._pool
        if pool is None:
            return None
        idle = pool.get_idle_size()
        return tracing.Usage(pool.get_size() - idle, idle, pool.get_max_size(), self.waiting, self.timeouts)

    async def _connect(self, *args: Any, **kwargs: Any) -> asyncpg.Connection:
        """A new connection with its codecs, within connect_timeout (the pool's ``connect``:
        asyncpg would run the codec set-up, two round trips, with no bound). Once the pool is
        open, the first failure to connect logs one WARNING and the next success one INFO."""
        bound = self._settings.connect_timeout
        try:
            if len(self._hosts) > 1:
                conn, host = await _connect_each(
                    self._hosts, self._config.target_session_attrs, bound, args, kwargs
                )
                # The host that served comes first next time: a host that does not answer
                # costs its share of connect_timeout once, not on every new connection.
                self._hosts = [host, *(h for h in self._hosts if h != host)]
            else:
                async with asyncio.timeout(bound) as deadline:
                    conn = await _connect_one(None, args, kwargs)
        except TimeoutError as exc:
            if len(self._hosts) > 1 or not deadline.expired():
                self._unreachable(exc)
                raise
            error = StoreUnavailableError(
                f"cannot connect to PostgreSQL at {self._address} within {bound:g} s (DB_CONNECT_TIMEOUT)"
            )
            self._unreachable(error)
            raise error from None
        except _CONNECTION_ERRORS as exc:
            self._unreachable(exc)
            raise
        if self._reachable is False:
            self._reachable = True
            _log.info("PostgreSQL at %s is reachable again", self._address)
        return conn

    def _unreachable(self, exc: BaseException) -> None:
        if self._reachable:
            self._reachable = False
            _log.warning(
                "PostgreSQL at %s is unreachable (%s); operations raise "
                "StoreUnavailableError until it is back",
                self._address,
                self._config.scrub(_reason(exc)),
            )

    async def close(self) -> None:
        """Close the pool, waiting for the operations under way (each bounded)."""
        pool, self._pool = self._pool, None
        for check in self._checks:
            check.cancel()
        for replica in self._replicas:
            if replica.looking is not None:
                replica.looking.cancel()
            await replica.pool.close()
        if pool is not None:
            try:
                await pool.close()  # waits for operations under way, each bounded
            except Exception as exc:  # closing: drop whatever is left
                _log.debug("closing the PostgreSQL pool failed (%s); terminating it", exc)
                pool.terminate()

    def abandon(self) -> None:
        """Drop the pool of an event loop that has ended."""
        pool, self._pool = self._pool, None
        for replica in self._replicas:
            replica.pool.abandon()
        if pool is not None:
            with contextlib.suppress(Exception):  # its loop is closed: sockets close as they can
                pool.terminate()

    @contextlib.asynccontextmanager
    async def acquire(self, *, read: bool = False, watched: bool = True) -> AsyncIterator[asyncpg.Connection]:
        """A pooled connection for the block: waits at most ``pool_timeout`` for a free one,
        and never hands out one older than ``pool_recycle``. Losing the server outside a
        statement (connecting, ending a transaction) is a StoreUnavailableError too.

        ``watched`` blocks get the liveness check (``_check``). A block cancelled, or timed out,
        in a statement waits for the server to end it: up to _SETTLE_READ s for a ``read``, and
        _SETTLE_WRITE s for a write, which then raises StoreUnavailableError saying its outcome
        is unknown rather than the CancelledError.

        When an operation finds its session lost (killed, server restarted), that connection is
        closed and every other pooled one is replaced before its next use: asyncpg would hand
        out the dead ones again, failing one operation each (asyncpg issue #1069).
        """
        pool = self._pool
        if pool is None:
            raise StoreUnavailableError("the PostgreSQL pool is closed")
        conn = await self._checkout(pool)
        raw: _Connection = conn._con  # the proxy forgets it once the connection is dropped
        watch = _Watch(conn)
        interval = self._settings.liveness_interval
        if watched and interval is not None:
            # One timer per operation: ~2 us, against ~170 us for a get (2,000 gets and saves
            # ran as fast as without it, within the noise of a shared machine).
            watch.handle = asyncio.get_running_loop().call_later(interval, self._stalled, watch)
        try:
            yield conn
        except BaseException as exc:
            watch.stop()
            error: BaseException = exc
            if isinstance(exc, _CONNECTION_ERRORS) and not isinstance(exc, ThreadStoreError):
                # Not from _run: ending a transaction, ...
                error = _translate(exc, "connection", self._config)
            if watch.reason is not None or _session_lost(exc) or (not read and read_only_server(exc)):
                # (A write refused as read-only: the server became a standby since this
                # connection was opened, so the others are likely on it too.)
                with contextlib.suppress(asyncpg.InterfaceError):  # already released
                    conn.terminate()
                await pool.expire_connections()
                if watch.reason is not None:
                    outcome = "" if read else "; the write may or may not have been applied"
                    raise StoreUnavailableError(f"{error} ({watch.reason}{outcome})") from (
                        watch.cause or exc
                    )
            elif isinstance(exc, asyncio.CancelledError) and raw.rolled_back:
                await self._release(pool, conn)  # dropped before COMMIT by transaction
            elif isinstance(exc, asyncio.CancelledError | CommandTimeoutError):
                settled = await _settle(pool, conn, raw, _SETTLE_READ if read else _SETTLE_WRITE)
                if not settled and not read:
                    unknown = (
                        f"the server did not confirm within {_SETTLE_WRITE:g} s that it "
                        "ended the statement: the write may or may not have been applied"
                    )
                    if isinstance(exc, CommandTimeoutError):
                        raise CommandTimeoutError(f"{exc}; {unknown}") from exc
                    raise StoreUnavailableError(
                        f"a write to PostgreSQL at {self._config.masked_url} was cancelled, and {unknown}"
                    ) from exc
            else:
                await self._release(pool, conn)
            if error is not exc:
                raise error from exc
            raise
        watch.stop()
        if self._replicas and not read:
            await self._note_position(conn)
        await self._release(pool, conn)

    async def _release(self, pool: asyncpg.Pool, conn: asyncpg.Connection) -> None:
        """Check a connection back in; one that cannot be reset is dropped (by asyncpg), and
        the operation, which has ended, stands."""
        try:
            await pool.release(conn)
        except (asyncpg.PostgresError, *_CONNECTION_ERRORS) as exc:
            _log.debug("dropped a PostgreSQL connection that failed to reset: %s", exc)

    def _stalled(self, watch: _Watch) -> None:
        task = asyncio.ensure_future(self._check(watch))
        self._checks.add(task)
        task.add_done_callback(self._checks.discard)

    async def _check(self, watch: _Watch) -> None:
        """The liveness check of an operation that has waited ``liveness_interval`` for the
        server: on a connection of its own, ask the server what the operation's session is
        doing. Running a statement (or waiting for a lock): keep waiting, and check again after
        another interval. Gone, or idle twice with the same state_change _IDLE_CONFIRM s apart
        (the server waits for us while we wait for it: the request or the answer was lost), or
        the server cannot be reached within the interval: drop the connection, which ends the
        operation with StoreUnavailableError.

        A plain command_timeout would cut long legitimate statements (a big copy, statistics,
        a lock wait); TCP keepalives never notice a path that still acknowledges packets.
        """
        interval = self._settings.liveness_interval
        if interval is None or not watch.running:
            return
        pid = watch.conn.get_server_pid()
        looks = []
        reason = None
        try:
            async with asyncio.timeout(interval) as deadline:
                # Several hosts: the one that served last (the session's, most likely), whatever
                # it is now, not the first of the URL, which may not answer at all.
                (host, port), *others = self._hosts
                where = {"host": host, "port": port, "target_session_attrs": "any"} if others else {}
                probe = await asyncpg.connect(
                    self._config.dsn,
                    timeout=None,
                    statement_cache_size=0,
                    server_settings={"application_name": "threadstore-check"},
                    **where,
                )
                probe_pid = probe.get_server_pid()
                try:
                    looks = [await self.run(probe, "postgres.session_state", pid=pid)]
                    if looks[0]["present"] and looks[0]["state"] not in _UNKNOWN_OR_BUSY:
                        # A second look gets its own interval, after the pause.
                        deadline.reschedule(asyncio.get_running_loop().time() + _IDLE_CONFIRM + interval)
                        await asyncio.sleep(_IDLE_CONFIRM)
                        looks.append(await self.run(probe, "postgres.session_state", pid=pid))
                finally:
                    probe.terminate()  # the answer is in: no need for a graceful goodbye
        except (asyncpg.PostgresError, ThreadStoreError, *_CONNECTION_ERRORS) as exc:
            if not isinstance(exc, (StoreUnavailableError, *_CONNECTION_ERRORS)):
                # The server answered, with an error (too many connections, ...): it is there.
                _log.debug("liveness check of PostgreSQL session %d failed: %s", pid, exc)
            else:
                expired = isinstance(exc, TimeoutError) and deadline.expired()
                got = (
                    f"got none either within {interval:g} s"
                    if expired
                    else f"failed: {self._config.scrub(_reason(exc))}"
                )
                reason = f"no answer for {interval:g} s, and a new connection to {self._address} {got}"
                watch.cause = TimeoutError(reason) if expired else exc
        else:
            behind_pooler = looks[0]["probe_pid"] != probe_pid
            if behind_pooler:
                pass  # pids are the pooler's: the server answers, which is all we can know
            elif not looks[-1]["present"]:
                reason = "the server has ended this session"
            elif (
                len(looks) == 2
                and looks[1]["state"] not in _UNKNOWN_OR_BUSY
                and (looks[1]["state_change"] == looks[0]["state_change"])
            ):
                reason = (
                    f"no answer for {interval:g} s, while the server is "
                    f"{looks[1]['state']} on this session: the request or its answer was lost"
                )
        if not watch.running:
            return
        if reason is None:
            watch.handle = asyncio.get_running_loop().call_later(interval, self._stalled, watch)
            return
        _log.info("dropping PostgreSQL session %d: %s", pid, reason)
        watch.reason = f"{reason}; DB_LIVENESS_INTERVAL"
        with contextlib.suppress(asyncpg.InterfaceError):
            watch.conn.terminate()

    async def _checkout(self, pool: asyncpg.Pool) -> asyncpg.Connection:
        settings = self._settings
        deadline = time.monotonic() + settings.pool_timeout
        while True:
            try:
                if pool.get_idle_size():
                    # A free connection is handed over at once; a timer would cost ~70 us here.
                    conn = await pool.acquire()
                else:
                    self.waiting += 1
                    try:
                        conn = await pool.acquire(timeout=max(deadline - time.monotonic(), 0.0))
                    finally:
                        self.waiting -= 1
            except TimeoutError:
                self.timeouts += 1
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
                await conn.close()  # bounded by _Connection.close
            await pool.release(conn)  # a no-op unless close() failed half-way

    @contextlib.asynccontextmanager
    async def session(self) -> AsyncIterator[asyncpg.Connection]:
        """A connection inside a transaction, for the caller's own statements."""
        # Not watched: the caller's own code runs in between, leaving the session idle.
        async with self.acquire(watched=False) as conn, transaction(conn):
            yield conn

    async def read(self, name: str, /, **params: Any) -> Any:
        """Run one read-only query, retried as once_more says: on a read replica that has
        replayed this store's last write and lags at most replica_max_lag, else on the primary
        (a replica that fails is skipped, and looked at again later)."""
        if self._replicas:
            replica = self._replica_for_read()
            if replica is not None:
                try:
                    return await replica.pool.read(name, **params)
                except CommandTimeoutError:
                    raise  # the primary would take as long
                except StoreUnavailableError as exc:
                    self._lost(replica, exc)
                except ThreadStoreError as exc:
                    if not collided(exc):  # a recovery conflict (40001): the primary has none
                        raise
        return await self.once_more(lambda conn: self.run(conn, name, **params), name)

    async def read_together(
        self, work: Callable[[asyncpg.Connection], Coroutine[Any, Any, _T]], what: str
    ) -> _T:
        """``await work(conn)``, several reads that must see one snapshot (a repeatable-read,
        read-only transaction on the primary), retried as once_more says."""

        async def in_one_snapshot(conn: asyncpg.Connection) -> _T:
            async with transaction(conn, isolation="repeatable_read", readonly=True):
                return await work(conn)

        return await self.once_more(in_one_snapshot, what)

    async def write(
        self, work: Callable[[asyncpg.Connection], Coroutine[Any, Any, _T]], what: Callable[[], str]
    ) -> _T:
        """``await work(conn)``, a write (one statement or one transaction). When the server
        refuses it as read-only (25006: this connection was opened to a server that is now a
        standby, after a switchover), nothing of it ran: it runs once more on a new connection,
        which the URL's hosts and target_session_attrs lead to the primary."""
        for retry in (True, False):
            try:
                async with self.acquire() as conn:
                    return await work(conn)
            except ThreadStoreError as exc:
                if not (retry and read_only_server(exc)):
                    raise
                _log.info("retrying %s on a new connection: the server is read-only (%s)", what(), exc)
        raise AssertionError("unreachable")  # pragma: no cover - the loop returns or raises

    # -- read replicas ----------------------------------------------------------------------

    async def _note_position(self, conn: asyncpg.Connection) -> None:
        """Remember the WAL position after a write (one round trip, only with replicas)."""
        try:
            position: int = await self.run(conn, "postgres.write_position")
        except (ThreadStoreError, asyncpg.InterfaceError) as exc:
            # The write stands; until a later write's position is known, reads go to the primary.
            _log.debug("the WAL position after a write is unknown (%s): reading from the primary", exc)
            self._position = None
            return
        if self._position is not None:
            position = max(position, self._position)
        self._position = position

    @property
    def position(self) -> int | None:
        """The WAL position of this store's last write (or token); None when unknown."""
        return self._position

    def reads_after(self, position: int) -> None:
        """Serve later reads from replicas only once they have replayed ``position``."""
        if self._position is not None:
            self._position = max(self._position, position)

    async def current_position(self) -> int:
        """The primary's WAL position now: every write acknowledged so far lies before it."""
        async with self.acquire(read=True) as conn:
            position: int = await self.run(conn, "postgres.write_position")
        return position

    def _replica_for_read(self) -> _Replica | None:
        """A replica seen, within the last _REPLICA_TRUST s, to have replayed this store's
        position and to lag at most replica_max_lag; None: read the primary. Reads never wait
        for a replica: one behind the position, or seen more than _REPLICA_RECHECK s ago, is
        asked again in the background (one round trip), for the reads after this one. (Asked
        inline, the question cost a get right after a save 1.66x its time without replicas;
        in the background 1.0x, the read going to the primary.)"""
        position = self._position
        if position is None:
            return None
        max_lag = self._settings.replica_max_lag
        now = time.monotonic()
        count = len(self._replicas)
        self._turn = (self._turn + 1) % count
        for index in range(count):
            replica = self._replicas[(self._turn + index) % count]
            if not replica.up:
                if now >= replica.retry_at:
                    self._look_later(replica)
                continue
            if replica.replayed < position or now - replica.looked_at > _REPLICA_RECHECK:
                self._look_later(replica)
            if (
                replica.replayed >= position
                and now - replica.looked_at <= _REPLICA_TRUST
                and (max_lag is None or replica.lag <= max_lag)
            ):
                return replica
        return None

    async def _look(self, replica: _Replica) -> None:
        row = await replica.pool.read("postgres.replica_state")
        replica.replayed, replica.lag, replica.looked_at = row["replayed"], row["lag"], time.monotonic()
        if not replica.up:
            replica.up = True
            _log.info("read replica %s serves reads (%.1f s behind)", replica.pool._address, replica.lag)

    def _look_later(self, replica: _Replica) -> None:
        """Look at a replica not in use (unreachable, or not yet seen) in a task of its own:
        reads never wait for one."""
        if replica.looking is not None:
            return

        async def look() -> None:
            try:
                await self._look(replica)
            except StoreUnavailableError as exc:
                self._lost(replica, exc)
            finally:
                replica.looking = None

        replica.looking = asyncio.ensure_future(look())

    def _lost(self, replica: _Replica, exc: BaseException) -> None:
        replica.retry_at = time.monotonic() + _REPLICA_RETRY
        if replica.up or replica.error is None:
            _log.warning(
                "read replica %s is skipped for %g s: %s", replica.pool._address, _REPLICA_RETRY, exc
            )
        replica.up, replica.error = False, str(exc)

    async def replica_status(self) -> list[dict[str, Any]]:
        """Each replica, looked at now: its address, whether it serves reads, its lag."""
        found = []
        for replica in self._replicas:
            try:
                await self._look(replica)
            except StoreUnavailableError as exc:
                self._lost(replica, exc)
            found.append(
                {
                    "url": replica.pool._config.masked_url,
                    "reachable": replica.up,
                    "lag": replica.lag if replica.up else None,
                    "error": None if replica.up else replica.error,
                }
            )
        return found

    async def once_more(self, work: Callable[[asyncpg.Connection], Coroutine[Any, Any, _T]], what: str) -> _T:
        """``await work(conn)``, a read (or work as safe to repeat: indexing); when it meets a
        session the server has ended (killed, restarted, a connection reset) it runs again once
        on a new connection."""
        for retry in (True, False):
            entered = False
            try:
                async with self.acquire(read=True) as conn:
                    entered = True
                    return await work(conn)
            except StoreUnavailableError as exc:
                if not (retry and entered and _session_lost(exc)):
                    raise
                _log.info("retrying %s on a new connection: %s", what, exc)
        raise AssertionError("unreachable")  # pragma: no cover - the loop returns or raises

    async def run(self, conn: asyncpg.Connection, name: str, /, **params: Any) -> Any:
        """Run one named query; the one place where SQL meets the driver."""
        query = self._queries[name]
        args = query.args(params)
        started = time.perf_counter() if self._echo else 0.0
        with self._spans(query):
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
                raise self.timed_out(name) from exc
            except (asyncpg.PostgresError, *_CONNECTION_ERRORS) as exc:
                raise _translate(exc, name, self._config) from exc
            finally:
                if started:
                    log_statement(name, started, time.perf_counter())

    def timed_out(self, name: str) -> CommandTimeoutError:
        return CommandTimeoutError(
            f"{name} ran longer than the command timeout of "
            f"{self._settings.command_timeout:g} s (DB_COMMAND_TIMEOUT) "
            "and was cancelled"
        )
