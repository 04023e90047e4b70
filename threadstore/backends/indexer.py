"""The background indexer both SQL backends use: writes only queue what changed, and this task
indexes it shortly after them, off their path (searches read the queue too, so none waits)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Iterable, Sequence
from datetime import datetime
from typing import Any, TypeVar

import msgspec

from threadstore import tracing
from threadstore.backends.base import SearchRow, sliced
from threadstore.fulltext import Query, bm25, bm25_weights, document, frequencies, matches
from threadstore.matching import contains_all

_Row = TypeVar("_Row")


class Indexer:
    """Indexes what writes queued, in the background, ``delay`` seconds after them.

    ``index_batch`` indexes one batch and returns how many entries it took; a round runs
    batches until one takes fewer than ``batch``. One of the ``busy`` exceptions (another
    connection holds the write lock) defers the round, less and less often, up to ``max_retry``
    seconds. A failure is logged on ``log`` (``what`` names what is indexed) and left queued:
    the next write tries again."""

    def __init__(
        self,
        index_batch: Callable[[], Awaitable[int]],
        *,
        batch: int,
        log: logging.Logger,
        what: str,
        delay: float = 0.1,
        busy: tuple[type[Exception], ...] = (),
        max_retry: float = 5.0,
        at_close: float = 5.0,
    ) -> None:
        self._index_batch = index_batch
        self._batch = batch
        self._log = log
        self._what = what
        self._delay = delay
        self._busy = busy
        self._max_retry = max_retry
        self._at_close = at_close  # seconds close() lets the indexer finish before cancelling it
        self.task: asyncio.Task[None] | None = None
        self._again = False
        self._now: asyncio.Event | None = None  # set by close(): no more waiting

    def soon(self) -> None:
        """Index what the writes queued, within ``delay``."""
        if self.task is not None and not self.task.done():
            self._again = True  # the running one goes round once more
            return
        if self._now is None:
            self._now = asyncio.Event()
        self.task = asyncio.get_running_loop().create_task(self._run(self._now))

    async def _run(self, now: asyncio.Event) -> None:
        delay = self._delay
        try:
            again = True
            while again:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(now.wait(), delay)
                self._again = False
                try:
                    with tracing.background("index"):  # a root span: the write that queued it has ended
                        taken = self._batch
                        while taken == self._batch:
                            taken = await self._index_batch()
                except self._busy as exc:
                    if now.is_set():  # closing: what is left stays queued for the next store
                        return
                    # Another connection is writing: try again later, less and less often.
                    delay = min(delay * 2, self._max_retry)
                    self._log.debug("background indexing deferred %.1f s: %s", delay, exc)
                    continue
                delay, again = self._delay, self._again
        except Exception as exc:  # the queue stays as it was: searches still read it, the next write retries
            self._log.warning("indexing message %s in the background failed: %s", self._what, exc)

    async def close(self) -> None:
        """Let a round under way finish (up to ``at_close`` seconds), then cancel it: what it
        leaves stays queued, for the next search or indexer."""
        task, self.task = self.task, None
        if task is not None and not task.done():
            if self._now is not None:
                self._now.set()
            await asyncio.wait([task], timeout=self._at_close)
            task.cancel()
            await asyncio.wait([task])

    def abandon(self) -> None:
        """Cancel the task of an event loop that has ended."""
        if self.task is not None:
            with contextlib.suppress(RuntimeError):  # its loop is closed: it never runs again
                self.task.cancel()


async def indexed_page(
    search: Callable[[], Awaitable[list[Any]]], queued: Callable[[], Awaitable[bool]]
) -> tuple[list[Any], bool]:
    """A search's page from the index (``search()``: rows whose first column says whether
    messages wait in the queue) and whether any do. A page that found nothing asks the queue
    (``queued()``), and, when it is empty, the index again: another process's indexer may have
    moved a match from the queue to the index between the two reads, and once the queue is
    seen empty every message saved before is indexed."""
    rows = await search()
    if rows:
        return rows, bool(rows[0][0])
    if await queued():
        return rows, True
    rows = await search()
    return rows, bool(rows and rows[0][0])


def unindexed_first(
    unindexed: list[SearchRow], indexed: list[_Row], limit: int, offset: int
) -> tuple[list[SearchRow], list[_Row]]:
    """The page at ``offset`` of a search's hits: ``unindexed`` ones (unindexed_hits) listed
    first, then the ``indexed`` rows (the first offset + limit of them, read in one snapshot
    with the queue)."""
    first = unindexed[offset : offset + limit]
    skip = max(offset - len(unindexed), 0)
    return first, indexed[skip : skip + limit - len(first)]


async def unindexed_hits(
    query: Query, wanted: bytes | None, rows: Iterable[Sequence[Any]]
) -> list[SearchRow]:
    """What a search finds among messages written but not indexed yet (the queue: a read-only
    store cannot index it, nor can a store while another process writes), matched on their
    current text as the memory backend matches, best first (ranked among themselves as memory
    ranks), then newest, then highest id. ``rows``: (thread id, message id, sequence, role,
    timestamp, content text or None, the thread's attributes as JSON text). Lets the event loop
    run meanwhile: a long queue is seconds of Python work."""
    attributes = None if wanted is None else msgspec.json.decode(wanted)
    having = [0] * len(query.phrases())
    total = lengths = 0
    found = []
    async for thread_id, message_id, sequence, role, timestamp, text, thread_attributes in sliced(rows):
        doc = document("" if text is None else text)
        if not doc.length:
            continue
        total += 1
        lengths += doc.length
        freqs = frequencies(query, doc)
        for k, freq in enumerate(freqs):
            having[k] += freq > 0
        if matches(query, doc, freqs) and (
            attributes is None or contains_all(msgspec.json.decode(thread_attributes), attributes)
        ):
            when = datetime.fromisoformat(timestamp) if isinstance(timestamp, str) else timestamp
            found.append(
                (doc, freqs, when, SearchRow(thread_id, message_id, sequence, role, 0.0, text or ""))
            )
    weights = bm25_weights(having, total)
    average = lengths / total if total else 1.0
    ranked = [
        (bm25(freqs, doc.length, weights, average), when, row.message_id, row)
        for doc, freqs, when, row in found
    ]
    ranked.sort(key=lambda hit: hit[:3], reverse=True)
    return [row._replace(score=score) for score, _, _, row in ranked]
