"""Which backend serves which event loop: a store's ``Connector`` opens its backend on first use
(once, however many first operations start together), opens it again in a later event loop when
the one it belonged to has ended, and closes it when that loop ends without the store closed.
"""

from __future__ import annotations

import contextlib
import sys
import warnings
import weakref
from collections.abc import AsyncGenerator, AsyncIterator
from typing import TYPE_CHECKING, Any

from threadstore import forks
from threadstore.backends import Backend, open_backend
from threadstore.config import DatabaseConfig
from threadstore.errors import ReadOnlyError, StoreClosedError, ThreadStoreError

if TYPE_CHECKING:
    import asyncio

_CLOSE_TIMEOUT = 5.0  # seconds the end of an event loop waits for an unclosed store to close


def _running_loop() -> asyncio.AbstractEventLoop:
    """The running event loop (asyncio is imported by then; the store does not import it)."""
    loop: asyncio.AbstractEventLoop = sys.modules["asyncio"].get_running_loop()
    return loop


async def _close_when_loop_ends(
    connector: weakref.ref[Connector], backend: Backend
) -> AsyncGenerator[None, None]:
    """Started when a store connects, so that its event loop finalises it when the loop shuts
    down (``asyncio.run`` does, also after an exception), or when the store is garbage-collected:
    then it closes the connections a program did not close, so the program exits, quietly.
    The store itself closes it first when closed, or when it moves to another loop."""
    try:
        yield
    finally:
        owner = connector()
        if owner is None or owner.backend is backend:
            if owner is not None:  # a later event loop connects afresh
                owner.backend = owner._loop = owner._watcher = None
            when = "was garbage-collected" if owner is None else "outlived its event loop"
            if owner is None or owner.warn_unclosed:
                warnings.warn(
                    f"unclosed ThreadStore ({backend.name}) {when}: its connections were "
                    "closed for it; call close() or use `async with`",
                    ResourceWarning,
                    stacklevel=1,
                )
            import asyncio

            with contextlib.suppress(Exception):
                await asyncio.wait_for(backend.close(), _CLOSE_TIMEOUT)
            backend.abandon()  # a no-op after a close that finished in time


def _stop_watching(watcher: AsyncGenerator[None, None] | None) -> None:
    """Finalise a watcher whose store has let go of its backend: its ``finally`` then returns
    without awaiting, so this runs it to the end at once, from any loop or none."""
    if watcher is not None:
        with contextlib.suppress(StopIteration, RuntimeError):
            watcher.aclose().send(None)


class Connector:
    """The backend a store uses in the running event loop: opened once on first use, opened
    again in a later loop, closed when the loop that opened it ends."""

    def __init__(self, config: DatabaseConfig, *, migrate: bool) -> None:
        self.config = config
        self._migrate = migrate  # on open
        self.backend: Backend | None = None
        self._loop: asyncio.AbstractEventLoop | None = None  # the one the backend belongs to
        self._opening: tuple[asyncio.AbstractEventLoop, asyncio.Lock] | None = None
        self._watcher: AsyncGenerator[None, None] | None = None
        self.closed = False
        self._generation = forks.generation  # see _forget_parent
        self._unusable: str | None = None  # why this store cannot connect (after a fork)
        self.warn_unclosed = True  # False for a store its owner closes (threadstore.testing)

    @property
    def loop(self) -> asyncio.AbstractEventLoop | None:
        """The event loop the backend belongs to (None before it connects)."""
        return self._loop

    def describe(self) -> str:
        """The repr of the store this serves."""
        state = "closed" if self.closed else "open" if self.backend else "not connected"
        url = self.config.masked_url
        return f"<ThreadStore {self.config.backend} {url or ''} ({state})>".replace("  ", " ")

    @contextlib.asynccontextmanager
    async def session(self) -> AsyncIterator[Any]:
        """A driver connection inside a transaction (ThreadStore.async_session)."""
        backend = await self.ready()
        async with backend.session() as conn:
            yield conn

    async def writer(self, operation: str) -> Backend:
        """The backend, for an operation that writes; ReadOnlyError on a read-only store."""
        if self.config.read_only:
            raise ReadOnlyError(f"{operation}() writes, and {self.describe()} was opened with read_only=True")
        return await self.ready()

    async def ready(self) -> Backend:
        """The backend, connected in the running event loop."""
        backend = self.backend
        if backend is not None and self._loop is _running_loop() and self._generation == forks.generation:
            return backend
        return await self._connect()

    def _forget_parent(self) -> None:
        """In a process forked since this store connected, leave the parent's connections alone
        (they and their threads serve the parent) and connect afresh; the in-memory store keeps
        its copy of the data. A private SQLite database cannot follow: it lives in the parent."""
        if self._generation == forks.generation:
            return
        self._generation = forks.generation
        backend = self.backend
        if backend is None or not backend.loop_bound:
            return
        forks.leave_behind(backend, self._watcher, self._loop)
        self.backend = self._loop = self._watcher = None
        self._opening = None
        if self.config.path == ":memory:":
            self._unusable = (
                "this ThreadStore's private SQLite database (:memory:) was opened before the process "
                "forked and stays in the parent process: open the store in the child, or use a file"
            )

    async def _connect(self) -> Backend:
        """Connect, once however many first operations start together; and again in a later
        event loop when the one the connections belong to has ended."""
        import asyncio  # here: importing it is half of `import threadstore` (bench: ~40 ms)

        loop = asyncio.get_running_loop()
        self._forget_parent()
        if self._unusable is not None:
            raise ThreadStoreError(self._unusable)
        if self.backend is not None and self._loop is not loop:
            self._leave_loop(self.backend, loop)
            if self.backend is not None:
                return self.backend
        if self.closed:
            raise StoreClosedError("this ThreadStore is closed")
        if self._opening is None or self._opening[0] is not loop:
            self._opening = (loop, asyncio.Lock())
        async with self._opening[1]:  # ten first operations at once still connect once
            if self.backend is None:
                if self.closed:
                    raise StoreClosedError("this ThreadStore is closed")
                backend = open_backend(self.config)
                await backend.open()
                try:
                    if self._migrate:
                        await backend.migrate()
                    if self.closed:  # close() was called while this was connecting
                        raise StoreClosedError("this ThreadStore is closed")
                    if backend.loop_bound:
                        watcher = _close_when_loop_ends(weakref.ref(self), backend)
                        await anext(watcher)  # now the loop knows it: it finalises it at its end
                        self._watcher = watcher
                except BaseException:
                    await backend.close()
                    raise
                self.backend, self._loop = backend, loop
            return self.backend

    def _leave_loop(self, backend: Backend, loop: asyncio.AbstractEventLoop) -> None:
        """The store is used in ``loop``, not the event loop its connections belong to."""
        old, self._loop = self._loop, loop
        if not backend.loop_bound:  # the in-memory store: nothing belongs to a loop
            return
        if old is not None and old.is_running():
            self._loop = old
            raise ThreadStoreError(
                f"{self.describe()} is in use by an event loop running in another thread; a ThreadStore "
                "serves one event loop at a time: create one store per thread"
            )
        # That loop was closed without finalising its async generators (asyncio.run would have):
        # its connections cannot be closed from here, so they are dropped and new ones opened.
        self._let_go()
        backend.abandon()

    def _let_go(self) -> Backend | None:
        """Forget the backend (returned, for the caller to close) and finalise its watcher."""
        backend, self.backend = self.backend, None
        watcher, self._watcher = self._watcher, None
        _stop_watching(watcher)
        return backend

    async def close(self) -> None:
        """Release the connection(s) (ThreadStore.close). Further use raises StoreClosedError."""
        self.closed = True
        self._forget_parent()
        backend = self._let_go()
        old = self._loop
        if backend is None:
            return
        if old is None or old is _running_loop() or not backend.loop_bound:
            await backend.close()
        elif old.is_running():  # another thread's loop: close it there
            import asyncio

            await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(backend.close(), old))
        else:
            backend.abandon()  # opened in an event loop that has ended: nothing to wait for
