"""SQLite file faults: a file that is not a database, a read-only file, a missing directory, a
full disk. Each is a clear StoreUnavailableError, and what was stored stays readable."""

from __future__ import annotations

import asyncio
import contextlib
import os
import resource
import shutil
import signal
import sqlite3
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers import conversation, stored, user
from tests.reliability.support import background_done, run_workers
from threadstore import StoreUnavailableError, ThreadStore, ThreadStoreError


async def _database_with_a_thread(path: Path) -> None:
    async with await ThreadStore.create(f"sqlite+aiosqlite:///{path}") as store:
        await store.save(conversation("kept", "safe", id="kept"))


async def _kept(path: Path) -> list[object]:
    async with await ThreadStore.create(f"sqlite+aiosqlite:///{path}", migrate=False) as store:
        return [m.content for m in (await stored(store, "kept")).messages]


async def test_a_file_that_is_not_a_database_is_a_clear_error_and_is_left_as_it_was(
    tmp_path: Path,
) -> None:
    path = tmp_path / "notes.db"
    content = b"These are my notes, not a database.\n" * 200
    path.write_bytes(content)
    url = f"sqlite+aiosqlite:///{path}"

    with pytest.raises(StoreUnavailableError, match="not a database"):
        await ThreadStore.create(url)
    lazy = ThreadStore(url, migrate=False)
    with pytest.raises(StoreUnavailableError, match="not a database"):
        await lazy.save(conversation("x"))
    await lazy.close()

    assert path.read_bytes() == content
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.db"]


@pytest.fixture
def read_only(tmp_path: Path) -> Iterator[Path]:
    """A directory whose database file (threads.db) cannot be written: mode 0444, and, as root
    (whom file modes do not stop), the immutable attribute."""
    path = tmp_path / "threads.db"
    asyncio.run(_database_with_a_thread(path))
    path.chmod(0o444)
    immutable = os.geteuid() == 0
    if immutable:
        chattr = shutil.which("chattr")
        if chattr is None or subprocess.run([chattr, "+i", str(path)], capture_output=True).returncode:
            pytest.skip("running as root, and the file cannot be made immutable (chattr +i)")
    try:
        yield path
    finally:
        if immutable:
            subprocess.run(["chattr", "-i", str(path)], check=True)
        path.chmod(0o644)


async def test_a_read_only_file_is_read_and_refuses_writes_clearly(read_only: Path) -> None:
    # create() works too: with no migration pending, migrating writes nothing.
    async with await ThreadStore.create(f"sqlite+aiosqlite:///{read_only}") as store:
        assert [m.content for m in (await stored(store, "kept")).messages] == ["kept", "safe"]
        with pytest.raises(StoreUnavailableError, match="readonly"):
            await store.save(conversation("new"))
        with pytest.raises(StoreUnavailableError, match="readonly"):
            await store.append("kept", user("more"))
        with pytest.raises(StoreUnavailableError, match="readonly"):
            await store.delete("kept")
        assert [m.content for m in (await stored(store, "kept")).messages] == ["kept", "safe"]
        assert len(await store.list()) == 1


async def test_a_missing_directory_is_a_clear_error_and_creates_nothing(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path}/gone/threads.db"
    with pytest.raises(StoreUnavailableError, match="directory does not exist"):
        await ThreadStore.create(url)
    assert list(tmp_path.iterdir()) == []


async def test_a_directory_removed_under_an_open_store_fails_writes_clearly(tmp_path: Path) -> None:
    directory = tmp_path / "data"
    directory.mkdir()
    async with await ThreadStore.create(f"sqlite+aiosqlite:///{directory}/threads.db") as store:
        await store.save(conversation("kept", id="kept"))
        shutil.rmtree(directory)
        # A clear error, or SQLite goes on writing to the open (now unlinked) file.
        with contextlib.suppress(ThreadStoreError):
            await store.append("kept", user("after the directory went"))
        assert next(m.content for m in (await stored(store, "kept")).messages) == "kept"


async def test_another_connection_writing_does_not_stall_the_store_behind_its_indexer(
    tmp_path: Path,
) -> None:
    """The background indexer does not wait for another connection's write lock while holding
    the store's: it tries again later, and indexes once the other writer is done."""
    path = tmp_path / "threads.db"
    async with await ThreadStore.create(f"sqlite+aiosqlite:///{path}") as store:
        await store.save(conversation("the parcel left on Tuesday", id="kept"))
        other = sqlite3.connect(path, isolation_level=None)
        try:
            other.execute("BEGIN IMMEDIATE")  # before the indexer's first try (0.1 s after the save)
            await asyncio.sleep(0.4)  # the indexer has tried to begin meanwhile
            loop = asyncio.get_running_loop()
            started = loop.time()
            async with asyncio.timeout(10):
                thread = await stored(store, "kept")
            waited = loop.time() - started
        finally:
            other.execute("ROLLBACK")
            other.close()
        assert [m.content for m in thread.messages] == ["the parcel left on Tuesday"]
        assert waited < 0.5, f"a read waited {waited:.2f} s behind the indexer"
        # The indexer tries again by itself: a reader that cannot index finds the message.
        await background_done(store)
        async with await ThreadStore.create(f"sqlite+aiosqlite:///{path}", read_only=True) as reader:
            hits = await reader.search("parcel")
        assert [(h.thread_id, h.sequence) for h in hits] == [("kept", 1)]


def _file_size_limit(limit: int) -> None:
    """In the child: files may not grow past ``limit`` bytes, and writing past it is an error
    (EFBIG) rather than the SIGXFSZ that would kill the process."""
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))


async def test_a_full_disk_fails_the_save_clearly_and_keeps_what_was_stored(tmp_path: Path) -> None:
    path = tmp_path / "threads.db"
    await _database_with_a_thread(path)
    limit = path.stat().st_size + 256 * 1024  # room for the -wal and -shm files, not for 2 MB

    [result] = await asyncio.to_thread(
        run_workers,
        "full_disk",
        [{"url": f"sqlite+aiosqlite:///{path}", "thread_id": "kept"}],
        60,
        lambda: _file_size_limit(limit),
    )

    [error, *others] = result["errors"]
    assert others == [], f"reads failed after the failed save: {others}"
    assert error["type"] == "StoreUnavailableError", error
    assert "SQLite failed" in error["message"]
    print(f"\nsqlite, full disk: {error['type']}: {error['message']}")
    assert result["kept"] == ["kept", "safe"]
    assert result["too_big_stored"] is False
    assert await _kept(path) == ["kept", "safe"]  # and without the limit, nothing was damaged
    async with await ThreadStore.create(f"sqlite+aiosqlite:///{path}") as store:
        assert await store.get("too-big") is None
        await store.append("kept", user("room again"))
        assert [m.content for m in (await stored(store, "kept")).messages] == ["kept", "safe", "room again"]


async def test_a_new_database_and_its_wal_files_are_owner_only(tmp_path: Path) -> None:
    """The database was created 0644 under umask 022: readable by every local user."""
    import stat

    old = os.umask(0o022)
    try:
        async with await ThreadStore.create(f"sqlite+aiosqlite:///{tmp_path}/private.db") as store:
            await store.save(conversation("secret"))
            files = [p for p in tmp_path.iterdir() if p.name.startswith("private.db")]
            assert {p.name for p in files} >= {"private.db", "private.db-wal"}
            for path in files:
                assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    finally:
        os.umask(old)
