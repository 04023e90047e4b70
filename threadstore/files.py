"""FileStore: attachment bytes in a local directory, stored once per content; and the garbage
collector that removes the files no stored message references.

A file lives at ``<base>/<aa>/<bb>/<sha256>``, named by the SHA-256 of its bytes, so the same
bytes are stored once whoever saves them and however often. A filename is metadata only: it
never becomes part of a path. A write goes to a temporary file in the final directory, is
fsync'd, then linked to its final name (and the directory fsync'd), so a crash never leaves a
half file under that name. All file IO and hashing runs in worker threads, off the event loop.

Files and database references are kept consistent by advisory locks (flock) on 256 lock files
in ``<base>/.locks``, one per first byte of the SHA-256: writing a file takes a shared lock,
which ``ThreadStore.save`` holds (a Lease) until its database write has ended; removing a file nothing
references (after a failed save, or in ``collect_garbage``) takes the exclusive lock and asks
the database again first. So a file another writer is about to reference, in this process or
another on the same machine, is never removed. (No flock on Windows: there the locks are only
skipped, and the ``min_age`` grace period of ``collect_garbage`` is the only protection.)
MIME types are detected by threadstore.mime.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import hashlib
import os
import re
import secrets
import shutil
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Any, Protocol, TypeVar

from threadstore.config import file_storage_path
from threadstore.errors import (
    FileStoreError,
    FileTooLargeError,
    StorageFullError,
    UnsupportedFileTypeError,
)
from threadstore.mime import detect_mime_type, is_allowed, normalize_mime_pattern, normalize_mime_type

if sys.platform != "win32":
    import fcntl

DEFAULT_MAX_FILE_SIZE = 50 * 1024 * 1024  # 50 MiB
GC_MIN_AGE = timedelta(hours=1)  # collect_garbage leaves files younger than this alone

_T = TypeVar("_T")

# --- paths ------------------------------------------------------------------------------------

_SHA256 = re.compile(r"[0-9a-f]{64}")
_SHARD = re.compile(r"[0-9a-f]{2}")
_TEMP_PREFIX = ".tmp-"
_LOCK_DIR = ".locks"


def _relative(sha: str) -> str:
    return f"{sha[:2]}/{sha[2:4]}/{sha}"


def _check_storage_path(storage_path: object) -> str:
    """A storage path as given, if it is relative text; ValueError otherwise (the caller also
    checks where it resolves)."""
    if not isinstance(storage_path, str):
        raise TypeError(f"storage_path must be a string, got {type(storage_path).__name__}")
    if not storage_path or "\x00" in storage_path:
        raise ValueError(f"storage_path {storage_path[:200]!r} is empty or holds a NUL character")
    if PurePosixPath(storage_path).is_absolute() or PureWindowsPath(storage_path).anchor:
        raise ValueError(
            f"storage_path {storage_path[:200]!r} is absolute; it must be relative "
            "to the FileStore's base path"
        )
    return storage_path


def _check_file_id(file_id: object) -> str:
    if not isinstance(file_id, str):
        raise TypeError(f"file_id must be a string, got {type(file_id).__name__}")
    if not _SHA256.fullmatch(file_id):
        raise ValueError(
            f"file_id {file_id[:200]!r} is not a file id of this FileStore (a SHA-256 "
            "in hex); pass the storage_path"
        )
    return file_id


def _fsync_directory(path: Path) -> None:
    if sys.platform == "win32":
        return
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_once(path: Path, content: bytes, created: list[Path]) -> float:
    """Store ``content`` at ``path`` unless a file is there; returns the file's modification time.

    The bytes go to a temporary file in the same directory, are fsync'd, and are then linked to
    the final name, which fails if another writer got there first: exactly one of many
    concurrent writers of the same bytes creates the file. A file already there only has its
    modification time refreshed, so collect_garbage's grace period covers the reference about to
    be saved; one of the wrong size (damaged by something else) is replaced. ``created`` gets the
    path if this call created it (also read after a cancellation).
    """
    damaged = False
    with contextlib.suppress(FileNotFoundError):
        if path.stat().st_size == len(content):
            os.utime(path)
            return path.stat().st_mtime
        damaged = True
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    temporary = path.with_name(f"{_TEMP_PREFIX}{secrets.token_hex(8)}")
    # Owner-only: one user's attachments are not every local user's to read.
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o600)
    try:
        with os.fdopen(fd, "wb") as stream:
            stream.write(content)
            stream.flush()
            os.fsync(stream.fileno())
        if damaged:
            os.replace(temporary, path)
            _fsync_directory(path.parent)
            return path.stat().st_mtime
        try:
            os.link(temporary, path)
        except FileExistsError:
            return path.stat().st_mtime
        except OSError as exc:
            if exc.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EXDEV, errno.EMLINK):
                raise
            os.replace(temporary, path)  # no hard links on this file system; rename is atomic too
        created.append(path)
        _fsync_directory(path.parent)
        return path.stat().st_mtime
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)


@dataclass(frozen=True, slots=True)
class _Entry:
    """A file found under the base path: a stored file (sha set) or a leftover temporary file."""

    relative: str
    sha: str | None
    size: int
    mtime: float


@dataclass(frozen=True, slots=True)
class _Incoming:
    content: bytes
    filename: str
    mime: str
    sha: str


def _hash_and_detect(content: bytes, filename: str, declared: str | None) -> tuple[str, str]:
    return hashlib.sha256(content).hexdigest(), detect_mime_type(content, filename, declared)


# --- locks ------------------------------------------------------------------------------------


async def _to_thread_to_the_end(function: Callable[..., _T], *args: Any) -> _T:
    """``function(*args)`` in a worker thread. If the caller is cancelled meanwhile, this still
    waits for the thread to finish before raising, so what it did (a file written, a lock taken,
    recorded in a container passed in) is known to the caller's clean-up."""
    task = asyncio.ensure_future(asyncio.to_thread(function, *args))
    try:
        return await asyncio.shield(task)
    except asyncio.CancelledError:
        await asyncio.wait([task])
        raise


class _Locks:
    """flock()s on ``<base>/.locks/<aa>``, one file per first byte of a SHA-256 (a "stripe")."""

    def __init__(self, root: Path) -> None:
        self._folder = root / _LOCK_DIR

    def _try(self, stripes: list[str], exclusive: bool, held: dict[str, int]) -> list[str]:
        """Lock what is free of ``stripes`` into ``held``; returns the busy ones."""
        busy = []
        for stripe in stripes:
            if sys.platform == "win32":
                held[stripe] = -1
                continue
            self._folder.mkdir(mode=0o700, parents=True, exist_ok=True)
            fd = os.open(self._folder / stripe, os.O_RDWR | os.O_CREAT, 0o600)
            try:
                fcntl.flock(fd, (fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH) | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                busy.append(stripe)
                continue
            except BaseException:
                os.close(fd)
                raise
            held[stripe] = fd
        return busy

    async def acquire(
        self, stripes: Iterable[str], held: dict[str, int], *, exclusive: bool, wait: float
    ) -> None:
        """Lock each stripe not yet in ``held`` (stripe -> fd), retrying for up to ``wait``
        seconds; stripes still busy then are left out. Polls rather than blocks in flock(), so
        waiting never ties up a worker thread."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait
        delay = 0.002
        busy = sorted(set(stripes) - held.keys())
        while busy:
            busy = await _to_thread_to_the_end(self._try, busy, exclusive, held)
            if not busy or loop.time() >= deadline:
                return
            await asyncio.sleep(delay)
            delay = min(delay * 2, 0.05)

    @staticmethod
    def release(held: dict[str, int]) -> None:
        """Unlock every stripe in ``held`` (closing its file releases the flock)."""
        for fd in held.values():
            if fd >= 0:
                os.close(fd)
        held.clear()


_SHARED_WAIT = 30.0  # seconds a writer waits for a removal in progress on the same stripe
_CLEANUP_WAIT = 10.0  # seconds a failed save's clean-up waits for writers; then gc's job


# --- the store --------------------------------------------------------------------------------


def _check_limit(value: object, what: str) -> int | None:
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool):
        raise TypeError(f"{what} must be an int (bytes) or None, got {type(value).__name__}")
    if value < 0:
        raise ValueError(f"{what} must not be negative, got {value}")
    return value


class FileStore:
    """Attachment bytes in a local directory, each content stored once (see the module docstring).

    ``await FileStore.create(base_path)`` creates the directory and checks it can be written;
    ``base_path`` defaults to THREADSTORE_FILE_STORAGE_PATH (or NARRATOR_/TYLER_FILE_STORAGE_PATH),
    else ``~/.threadstore/files``. ``max_file_size`` (bytes, default 50 MiB; None: no limit),
    ``max_storage_size`` (bytes of all files, default None) and ``allowed_mime_types`` (a set of
    ``type/subtype`` or ``type/*``, default None: any) are checked on every save.
    """

    storage_backend = "local"

    def __init__(
        self,
        base_path: str | os.PathLike[str] | None = None,
        *,
        max_file_size: int | None = DEFAULT_MAX_FILE_SIZE,
        max_storage_size: int | None = None,
        allowed_mime_types: Iterable[str] | None = None,
    ) -> None:
        if base_path is None:
            root = file_storage_path()
        elif isinstance(base_path, (str, os.PathLike)) and "\x00" not in os.fspath(base_path):
            root = Path(base_path).expanduser().absolute()
        else:
            raise TypeError(f"base_path must be a path without NUL characters, got {base_path!r}")
        self._root = root
        self._max_file_size = _check_limit(max_file_size, "max_file_size")
        self._max_storage_size = _check_limit(max_storage_size, "max_storage_size")
        if isinstance(allowed_mime_types, str):
            raise TypeError("allowed_mime_types must be a collection of MIME types, not one string")
        self._allowed = (
            None if allowed_mime_types is None else frozenset(map(normalize_mime_pattern, allowed_mime_types))
        )
        self._locks = _Locks(root)
        self._used: int | None = None  # bytes stored, measured on first need with max_storage_size
        self._measuring = asyncio.Lock()

    @classmethod
    async def create(
        cls,
        base_path: str | os.PathLike[str] | None = None,
        *,
        max_file_size: int | None = DEFAULT_MAX_FILE_SIZE,
        max_storage_size: int | None = None,
        allowed_mime_types: Iterable[str] | None = None,
    ) -> FileStore:
        """A FileStore whose directory exists and can be written (FileStoreError otherwise)."""
        store = cls(
            base_path,
            max_file_size=max_file_size,
            max_storage_size=max_storage_size,
            allowed_mime_types=allowed_mime_types,
        )
        try:
            await asyncio.to_thread(store._prepare)
        except OSError as exc:
            raise FileStoreError(f"cannot use {store._root} as a FileStore directory: {exc}") from exc
        return store

    def _prepare(self) -> None:
        self._root.mkdir(mode=0o700, parents=True, exist_ok=True)
        probe = self._root / f"{_TEMP_PREFIX}probe-{secrets.token_hex(8)}"
        probe.write_bytes(b"")
        probe.unlink()

    @property
    def base_path(self) -> Path:
        """The directory the files are kept in (absolute)."""
        return self._root

    @property
    def max_file_size(self) -> int | None:
        return self._max_file_size

    @property
    def max_storage_size(self) -> int | None:
        return self._max_storage_size

    @property
    def allowed_mime_types(self) -> frozenset[str] | None:
        return self._allowed

    def __repr__(self) -> str:
        return f"<FileStore {self._root}>"

    # -- writes -----------------------------------------------------------------------------

    async def save(self, content: bytes, filename: str, mime_type: str | None = None) -> dict[str, Any]:
        """Store ``content`` (once per content) and return its metadata: ``id`` (the SHA-256 in
        hex, also ``sha256``), ``filename``, ``mime_type`` (detected, see detect_mime_type),
        ``storage_path`` (relative to the base path), ``storage_backend``, ``size`` and
        ``created_at`` (the stored file's modification time, so the time of this save).

        Raises FileTooLargeError, UnsupportedFileTypeError or StorageFullError (naming the limit),
        ValueError/TypeError for bad arguments; nothing is stored then.
        """
        held: dict[str, int] = {}
        try:
            return await self._write(await self._inspect(content, filename, mime_type), held, [])
        finally:
            self._locks.release(held)

    async def batch_save(
        self, files: Iterable[tuple[bytes, str] | tuple[bytes, str, str | None]]
    ) -> list[dict[str, Any]]:
        """Store several files: ``(content, filename)`` or ``(content, filename, mime_type)``
        tuples; returns their metadata in order. Sizes, types and arguments of all are checked
        before any is written; a StorageFullError part-way leaves the earlier ones stored
        (``collect_garbage`` removes them if nothing comes to reference them)."""
        items = [self._check_item(item) for item in files]
        inspected = [await self._inspect(*item) for item in items]
        held: dict[str, int] = {}
        try:
            return [await self._write(item, held, []) for item in inspected]
        finally:
            self._locks.release(held)

    @staticmethod
    def _check_item(item: object) -> tuple[bytes, str, str | None]:
        if not isinstance(item, tuple) or len(item) not in (2, 3):
            raise TypeError("batch_save() takes (content, filename) or (content, filename, mime_type) tuples")
        return (item[0], item[1], item[2] if len(item) == 3 else None)

    async def write(
        self, content: bytes, filename: str, mime_type: str | None, lease: Lease
    ) -> dict[str, Any]:
        """save() for a database write that will reference the file: its stripe lock stays
        held, and a file it created is remembered, until ``lease`` ends (see lease())."""
        return await self._write(
            await self._inspect(content, filename, mime_type), lease._held, lease._created
        )

    @contextlib.asynccontextmanager
    async def lease(self, referenced: Callable[[list[str]], Awaitable[set[str]]]) -> AsyncIterator[Lease]:
        """A Lease for the files one database write references; the write runs inside the block.

        The files written under it stay locked (shared) until the block ends. If anything fails,
        files this write created are removed again unless some stored message references them
        (``referenced`` asks the database); if that cannot be asked, they are left for
        ``collect_garbage``.
        """
        lease = Lease(self)
        try:
            yield lease
        except BaseException:
            lease.release()
            if lease._created:
                # Shielded: a cancelled save still cleans up (or leaves the rest to collect_garbage).
                await asyncio.shield(lease.discard(referenced))
            raise
        finally:
            lease.release()

    async def _inspect(self, content: object, filename: object, mime_type: object) -> _Incoming:
        if isinstance(content, (bytearray, memoryview)):
            content = bytes(content)
        if not isinstance(content, bytes):
            raise TypeError(f"file content must be bytes, got {type(content).__name__}")
        if not isinstance(filename, str):
            raise TypeError(f"filename must be a string, got {type(filename).__name__}")
        declared = None if mime_type is None else normalize_mime_type(mime_type)
        limit = self._max_file_size
        if limit is not None and len(content) > limit:
            raise FileTooLargeError(
                f"file {filename[:200]!r} is {len(content)} bytes, over this "
                f"FileStore's max_file_size of {limit} bytes"
            )
        sha, mime = await asyncio.to_thread(_hash_and_detect, content, filename, declared)
        if self._allowed is not None and not is_allowed(mime, self._allowed):
            raise UnsupportedFileTypeError(
                f"file {filename[:200]!r} is {mime}, which is not in this FileStore's "
                f"allowed_mime_types ({', '.join(sorted(self._allowed))})"
            )
        return _Incoming(content, filename, mime, sha)

    async def _write(self, incoming: _Incoming, held: dict[str, int], created: list[Path]) -> dict[str, Any]:
        sha, size = incoming.sha, len(incoming.content)
        stripe = sha[:2]
        await self._locks.acquire([stripe], held, exclusive=False, wait=_SHARED_WAIT)
        if stripe not in held:
            raise FileStoreError(f"file {sha} stayed locked by a clean-up for {_SHARED_WAIT:.0f} s")
        path = self._root / _relative(sha)
        reserved = await self._reserve(path, size, incoming.filename)
        before = len(created)
        try:
            mtime = await _to_thread_to_the_end(_write_once, path, incoming.content, created)
        except OSError as exc:
            raise FileStoreError(f"cannot write {_relative(sha)} under {self._root}: {exc}") from exc
        finally:
            if len(created) == before:  # failed, or the file was there already
                self._give_back(reserved)
        return {
            "id": sha,
            "filename": incoming.filename,
            "mime_type": incoming.mime,
            "storage_path": _relative(sha),
            "storage_backend": self.storage_backend,
            "size": size,
            "sha256": sha,
            "created_at": datetime.fromtimestamp(mtime, UTC),
        }

    async def _measure(self) -> int:
        async with self._measuring:
            if self._used is None:
                self._used = sum(e.size for e in await asyncio.to_thread(self._scan) if e.sha)
            return self._used

    async def _reserve(self, path: Path, size: int, filename: str) -> int:
        """Count ``size`` bytes against max_storage_size (checked and counted with no await in
        between, so concurrent saves cannot overshoot together); 0 when there is no limit or the
        file is stored already."""
        limit = self._max_storage_size
        if limit is None:
            return 0
        used = await self._measure()
        if used + size > limit:
            if await asyncio.to_thread(path.exists):
                return 0
            raise StorageFullError(
                f"storing {filename[:200]!r} ({size} bytes) would take this FileStore to "
                f"{used + size} bytes, over its max_storage_size of {limit} bytes"
            )
        self._used = used + size
        return size

    def _give_back(self, size: int) -> None:
        if size and self._used is not None:
            self._used -= size

    # -- reads and removal ------------------------------------------------------------------

    def _locate(self, file_id: str | None, storage_path: str | None) -> Path:
        """The file's path, refusing any that resolves outside the base path (runs in a thread:
        resolving follows symbolic links)."""
        if storage_path is not None:
            relative = _check_storage_path(storage_path)
        elif file_id is not None:
            relative = _relative(_check_file_id(file_id))
        else:
            raise ValueError("give a file_id or a storage_path")
        root = self._root.resolve()
        path = (root / relative).resolve()
        if path == root or not path.is_relative_to(root):
            raise ValueError(
                f"storage_path {relative[:200]!r} resolves outside the FileStore's base path {self._root}"
            )
        return path

    def _missing(self, file_id: str | None, storage_path: str | None) -> FileNotFoundError:
        shown = (storage_path or file_id or "")[:200]
        return FileNotFoundError(f"no file {shown!r} in the FileStore at {self._root}")

    def _read(self, file_id: str | None, storage_path: str | None) -> bytes:
        path = self._locate(file_id, storage_path)
        try:
            return path.read_bytes()
        except OSError as exc:
            if (
                isinstance(exc, (FileNotFoundError, IsADirectoryError, NotADirectoryError))
                or exc.errno == errno.ENAMETOOLONG
            ):
                raise self._missing(file_id, storage_path) from None
            raise FileStoreError(f"cannot read {storage_path or file_id!r}: {exc}") from exc

    async def get(self, file_id: str | None = None, storage_path: str | None = None) -> bytes:
        """The bytes of a stored file, found by ``storage_path`` (preferred) or ``file_id``.
        FileNotFoundError if it is not there; ValueError for a path outside the base path."""
        return await asyncio.to_thread(self._read, file_id, storage_path)

    def _unlink(self, path: Path) -> int:
        size = path.stat().st_size
        path.unlink()
        return size

    def _delete(self, file_id: str | None, storage_path: str | None) -> int:
        path = self._locate(file_id, storage_path)
        try:
            if not path.is_file():
                raise FileNotFoundError
            return self._unlink(path)
        except OSError as exc:
            if isinstance(exc, FileNotFoundError) or exc.errno == errno.ENAMETOOLONG:
                raise self._missing(file_id, storage_path) from None
            raise FileStoreError(f"cannot delete {storage_path or file_id!r}: {exc}") from exc

    async def delete(self, file_id: str | None = None, storage_path: str | None = None) -> None:
        """Remove a stored file (by ``storage_path``, preferred, or ``file_id``), whatever
        references it. FileNotFoundError if it is not there."""
        self._give_back(await asyncio.to_thread(self._delete, file_id, storage_path))

    def _delete_many(self, file_ids: list[str]) -> list[int]:
        sizes = []
        for file_id in file_ids:
            with contextlib.suppress(FileNotFoundError):
                sizes.append(self._unlink(self._root / _relative(file_id)))
        return sizes

    async def batch_delete(self, file_ids: Iterable[str]) -> int:
        """Remove several stored files by id; returns how many were there (missing ones are
        skipped). Every id is checked before any file is removed."""
        if isinstance(file_ids, str):
            raise TypeError("batch_delete() takes a list of file ids, not one string")
        ids = [_check_file_id(file_id) for file_id in file_ids]
        sizes = await asyncio.to_thread(self._delete_many, ids)
        self._give_back(sum(sizes))
        return len(sizes)

    def _scan(self) -> list[_Entry]:
        """Every stored file (``aa/bb/<sha>``) and leftover temporary file under the base path;
        anything else there is not ours and is ignored. Symbolic links are not followed."""
        entries: list[_Entry] = []
        with contextlib.suppress(FileNotFoundError):
            for top in os.scandir(self._root):
                if not (_SHARD.fullmatch(top.name) and top.is_dir(follow_symlinks=False)):
                    continue
                for middle in os.scandir(top.path):
                    if not (_SHARD.fullmatch(middle.name) and middle.is_dir(follow_symlinks=False)):
                        continue
                    prefix = top.name + middle.name
                    for item in os.scandir(middle.path):
                        name = item.name
                        ours = _SHA256.fullmatch(name) and name.startswith(prefix)
                        if not (ours or name.startswith(_TEMP_PREFIX)):
                            continue
                        if not item.is_file(follow_symlinks=False):
                            continue
                        with contextlib.suppress(FileNotFoundError):
                            stat = item.stat(follow_symlinks=False)
                            entries.append(
                                _Entry(
                                    f"{top.name}/{middle.name}/{name}",
                                    name if ours else None,
                                    stat.st_size,
                                    stat.st_mtime,
                                )
                            )
        return entries

    async def list_files(self) -> list[str]:
        """The ids of every stored file, sorted."""
        return sorted(e.sha for e in await asyncio.to_thread(self._scan) if e.sha)

    async def get_storage_size(self) -> int:
        """Bytes of all stored files, measured now."""
        used = sum(e.size for e in await asyncio.to_thread(self._scan) if e.sha)
        self._used = used
        return used

    def get_file_url(self, storage_path: str) -> str:
        """A ``file://`` URL for a stored file; ValueError for a path outside the base path."""
        relative = _check_storage_path(storage_path)
        normal = os.path.normpath(relative)
        if normal == "." or normal == ".." or normal.startswith(("../", "..\\")):
            raise ValueError(
                f"storage_path {storage_path[:200]!r} points outside the FileStore's base path {self._root}"
            )
        return (self._root / normal).as_uri()

    async def check_health(self) -> dict[str, Any]:
        """Whether the directory can be written and how full it is: ``status`` ("healthy" or
        "unhealthy"), ``error`` (None or why), ``base_path``, ``file_count``, ``storage_size``,
        ``max_storage_size``, ``usage_percent`` (None without a limit), ``max_file_size`` and
        ``available_space`` (free bytes on the disk)."""
        report: dict[str, Any] = {
            "status": "healthy",
            "error": None,
            "base_path": str(self._root),
            "file_count": 0,
            "storage_size": 0,
            "max_storage_size": self._max_storage_size,
            "usage_percent": None,
            "max_file_size": self._max_file_size,
            "available_space": None,
        }
        try:
            await asyncio.to_thread(self._prepare)
            entries = [e for e in await asyncio.to_thread(self._scan) if e.sha]
            report["available_space"] = (await asyncio.to_thread(shutil.disk_usage, self._root)).free
        except OSError as exc:
            report.update(status="unhealthy", error=f"{type(exc).__name__}: {exc}")
            return report
        size = self._used = sum(e.size for e in entries)
        report.update(file_count=len(entries), storage_size=size)
        if self._max_storage_size:
            report["usage_percent"] = round(100 * size / self._max_storage_size, 2)
            if size >= self._max_storage_size:
                report.update(status="unhealthy", error="max_storage_size is reached")
        return report

    async def _remove_unreferenced(
        self,
        entries: Sequence[_Entry],
        referenced: Callable[[list[str]], Awaitable[set[str]]],
        *,
        wait: float,
        older_than: float | None = None,
    ) -> list[_Entry]:
        """Remove those stored files no stored message references, under the exclusive lock of
        their stripes (a stripe still busy after ``wait`` seconds is left alone) and, with
        ``older_than``, only files not modified since. Returns what was removed."""
        held: dict[str, int] = {}
        try:
            await self._locks.acquire({e.relative[:2] for e in entries}, held, exclusive=True, wait=wait)
            candidates = [e for e in entries if e.relative[:2] in held]
            if not candidates:
                return []
            # Asked again under the lock: a writer may have referenced a file since it was listed.
            references = await referenced([v for e in candidates for v in (e.relative, e.sha or "")])
            doomed = [e for e in candidates if e.relative not in references and e.sha not in references]
            removed = await asyncio.to_thread(self._remove, doomed, older_than)
        finally:
            self._locks.release(held)
        self._give_back(sum(e.size for e in removed))
        return removed

    def _remove(self, entries: Sequence[_Entry], older_than: float | None) -> list[_Entry]:
        """Unlink those files (with ``older_than``, only those not modified since); returns the
        ones removed, with their sizes."""
        removed = []
        for entry in entries:
            path = self._root / entry.relative
            with contextlib.suppress(FileNotFoundError):
                stat = path.stat()
                if older_than is not None and stat.st_mtime > older_than:
                    continue  # saved again (so maybe about to be referenced) since it was listed
                path.unlink()
                removed.append(_Entry(entry.relative, entry.sha, stat.st_size, stat.st_mtime))
        return removed


# --- what ThreadStore uses ---------------------------------------------------------------------


class Lease:
    """The stripe locks (shared) and the files created of writes made for one database write
    (FileStore.write), held until that write has ended (FileStore.lease)."""

    def __init__(self, file_store: FileStore) -> None:
        self._file_store = file_store
        self._held: dict[str, int] = {}
        self._created: list[Path] = []

    def release(self) -> None:
        """Unlock the stripes; idempotent."""
        self._file_store._locks.release(self._held)

    async def discard(self, referenced: Callable[[list[str]], Awaitable[set[str]]]) -> None:
        """Remove the files created under this lease that no stored message references."""
        entries = [_Entry(_relative(path.name), path.name, 0, 0.0) for path in self._created]
        with contextlib.suppress(Exception):  # e.g. the database is down: then collect_garbage's job
            await self._file_store._remove_unreferenced(entries, referenced, wait=_CLEANUP_WAIT)


class References(Protocol):
    """What collect_garbage asks of a store (a ThreadStore)."""

    async def attachment_references(self, refs: Iterable[str] | None = None) -> set[str]: ...


async def collect_garbage(
    store: References, file_store: FileStore, *, min_age: timedelta | float = GC_MIN_AGE
) -> list[dict[str, Any]]:
    """Delete the files in ``file_store`` that no message stored in ``store`` references, and
    temporary files left by interrupted writes; returns one dict per file removed:
    ``file_id`` (None for a temporary file), ``storage_path`` and ``size`` (bytes freed).

    Files modified less than ``min_age`` ago (a timedelta or seconds; default one hour) are
    left alone: they may belong to an attachment stored with ``process_and_store`` whose thread
    is not saved yet. Files a save in progress is writing are never removed (see the module
    docstring). Only this FileStore's own files (``aa/bb/<sha256>``) are considered.
    """
    seconds = min_age.total_seconds() if isinstance(min_age, timedelta) else float(min_age)
    if seconds < 0:
        raise ValueError(f"min_age must not be negative, got {min_age}")
    cutoff = time.time() - seconds
    entries = [e for e in await asyncio.to_thread(file_store._scan) if e.mtime <= cutoff]
    stored = [e for e in entries if e.sha]
    removed: list[_Entry] = []
    if stored:
        references = await store.attachment_references()
        orphans = [e for e in stored if e.relative not in references and e.sha not in references]
        if orphans:
            removed = await file_store._remove_unreferenced(
                orphans, store.attachment_references, wait=0, older_than=cutoff
            )
    removed += await asyncio.to_thread(file_store._remove, [e for e in entries if not e.sha], cutoff)
    return [{"file_id": e.sha, "storage_path": e.relative, "size": e.size} for e in removed]
