"""Moving threads between stores: the JSON Lines export format, import from it, and copy.

A line is one ThreadRecord: a thread document (``Thread``'s fields, its messages with their
sequences) plus ``"aliases": [{"alias": ..., "created_at": ...}]``. Exports read the store in
pages of threads in id order and imports write in batches, so neither holds the whole store in
memory. Importing skips threads whose id is already stored, so running an import or a copy
again after an interruption finishes the job without writing anything twice.
"""

from __future__ import annotations

import hashlib
import sys
import time
import uuid
from collections.abc import Iterator
from typing import IO, TYPE_CHECKING

import msgspec

from threadstore.errors import ConflictError
from threadstore.models import AliasRecord, ThreadRecord, compact_metrics

if TYPE_CHECKING:
    import asyncio

    from threadstore.store import ThreadStore

__all__ = [
    "PAGE_SIZE",
    "AliasRecord",
    "Progress",
    "ThreadRecord",
    "copy_threads",
    "export_lines",
    "read_lines",
]

PAGE_SIZE = 200  # threads per read and per write: measured best for SQLite -> PostgreSQL copies


_encode = msgspec.json.Encoder().encode
_set_field = msgspec.Struct.__setattr__  # the records are this export's own: nothing tracks them
_decode_record = msgspec.json.Decoder(ThreadRecord).decode


async def export_lines(store: ThreadStore, out: IO[bytes], *, page_size: int = PAGE_SIZE) -> int:
    """Write every thread of ``store`` to ``out`` as JSON Lines; returns how many."""
    count = 0
    async for page in store.export_threads(page_size=page_size):
        for record in page:
            for message in record.messages:
                _set_field(message, "metrics", compact_metrics(message))  # read back the same
        out.write(b"".join([_encode(record) + b"\n" for record in page]))
        count += len(page)
    return count


class _Id(msgspec.Struct):
    id: str | None = None


_decode_id = msgspec.json.Decoder(_Id).decode
_BOM = b"\xef\xbb\xbf"


def _record(line: bytes) -> ThreadRecord:
    """The ThreadRecord of one line. A line without an id gets one derived from the line, so
    importing it again finds it stored (the default, a random id, would store it again)."""
    record = _decode_record(line)
    if _decode_id(line).id is None:
        digest = hashlib.sha256(line.strip()).digest()[:16]
        record.id = f"import-{uuid.UUID(bytes=digest, version=5)}"
    return record


def numbered_lines(
    source: IO[bytes], *, page_size: int = PAGE_SIZE
) -> Iterator[list[tuple[int, ThreadRecord]]]:
    """(line number, ThreadRecord) from JSON Lines, in batches; a bad line is a ValueError naming
    its number, raised after the batch of the lines before it. Blank lines are skipped, and a
    UTF-8 byte order mark at the start."""
    batch: list[tuple[int, ThreadRecord]] = []
    for number, line in enumerate(source, 1):
        if number == 1 and line.startswith(_BOM):
            line = line[len(_BOM) :]
        if not line.strip():
            continue
        try:
            batch.append((number, _record(line)))
        except (msgspec.DecodeError, ValueError, TypeError) as exc:
            if batch:
                yield batch
            raise ValueError(f"line {number}: not a thread record: {exc}") from None
        if len(batch) == page_size:
            yield batch
            batch = []
    if batch:
        yield batch


def read_lines(source: IO[bytes], *, page_size: int = PAGE_SIZE) -> Iterator[list[ThreadRecord]]:
    """ThreadRecords from JSON Lines, in batches, as numbered_lines reads them."""
    for batch in numbered_lines(source, page_size=page_size):
        yield [record for _, record in batch]


async def import_lines(
    store: ThreadStore, source: IO[bytes], *, page_size: int = PAGE_SIZE
) -> tuple[int, int]:
    """Store the threads of JSON Lines not stored yet, a batch at a time; returns (imported,
    already there). A bad line raises its error naming its number, after the threads of every
    line before it are stored: a batch the store refuses is imported again line by line."""
    imported = present = 0
    for batch in numbered_lines(source, page_size=page_size):
        try:
            stored = await store.import_threads([record for _, record in batch])
        except (ValueError, TypeError, ConflictError):
            stored = []
            for number, record in batch:  # each alone, to find the line at fault
                try:
                    stored += await store.import_threads([record])
                except (ValueError, TypeError, ConflictError) as exc:
                    exc.args = (f"line {number}: {exc}", *exc.args[1:])
                    raise
        imported += len(stored)
        present += len(batch) - len(stored)
    return imported, present


class Progress:
    """``done / total threads (percent), rate`` on one self-rewriting line of a terminal; silent
    when the stream is not a terminal (a log file, a pipe)."""

    def __init__(self, total: int, stream: IO[str] | None = None, *, label: str = "copied") -> None:
        self._stream = sys.stderr if stream is None else stream
        self.enabled = self._stream.isatty()
        self.total, self._label = total, label
        self._started = self._shown = time.monotonic()
        self.done = 0

    def update(self, done: int) -> None:
        self.done = done
        now = time.monotonic()
        if self.enabled and (now - self._shown >= 0.1 or done >= self.total):
            self._shown = now
            self._stream.write(f"\r{self.line(now)}")
            self._stream.flush()

    def line(self, now: float | None = None) -> str:
        elapsed = max((time.monotonic() if now is None else now) - self._started, 1e-9)
        percent = f" ({100 * self.done / self.total:.0f}%)" if self.total else ""
        return (
            f"{self._label} {self.done:,} / {self.total:,} threads{percent}, "
            f"{self.done / elapsed:,.0f} threads/s"
        )

    def close(self) -> None:
        if self.enabled:
            self._stream.write("\n")
            self._stream.flush()


async def copy_threads(
    source: ThreadStore,
    target: ThreadStore,
    *,
    page_size: int = PAGE_SIZE,
    writers: int = 2,
    progress: Progress | None = None,
) -> tuple[int, int]:
    """Copy every thread of ``source`` that ``target`` lacks, ids, times, sequences and aliases
    kept; returns (copied, already there). Each page is written atomically, so after an
    interruption running it again picks up where it stopped.

    Up to ``writers`` pages are written at once (each on its own connection) while the next
    page is read. SQLite -> PostgreSQL on a shared 2-core machine, 2 writers copied 1.0-1.8x as
    fast as 1 (the load of other processes varied), 3 no faster than 2. Pages may commit out of
    order, which resuming does not mind.
    """
    import asyncio  # here: `import threadstore` does not import asyncio (make bench: import time)

    copied = present = 0
    writing: set[asyncio.Task[tuple[int, int]]] = set()

    async def write(page: list[ThreadRecord]) -> tuple[int, int]:
        stored = await target.import_threads(page)
        return len(stored), len(page) - len(stored)

    async def finish(tasks: set[asyncio.Task[tuple[int, int]]]) -> None:
        nonlocal copied, present
        for task in tasks:
            done, skipped = task.result()
            copied, present = copied + done, present + skipped
        if progress is not None:
            progress.update(copied + present)

    try:
        async for page in source.export_threads(page_size=page_size):
            writing.add(asyncio.ensure_future(write(page)))
            if len(writing) >= writers:
                done, writing = await asyncio.wait(writing, return_when=asyncio.FIRST_COMPLETED)
                await finish(done)
        while writing:
            done, writing = await asyncio.wait(writing, return_when=asyncio.FIRST_COMPLETED)
            await finish(done)
    finally:
        for task in writing:
            task.cancel()
        if writing:
            await asyncio.wait(writing)
    return copied, present
