"""``ThreadStore(url, read_only=True)``, on every backend: reads answer, every write raises
ReadOnlyError before it reaches the database, and nothing stored changes."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from tests.conftest import TEST_POOL, emptied
from tests.helpers import user
from threadstore import Message, ReadOnlyError, Thread, ThreadStore, ThreadStoreError


async def filled(url: str | None) -> Thread:
    thread = Thread(id="t", title="kept", attributes={"k": 1})
    thread.add_message(user("a refund is due"))
    async with await ThreadStore.create(url, **TEST_POOL) as store:
        await emptied(store)  # a shared database: what earlier tests left would be read too
        await store.save(thread)
        await store.save_thread_alias("t", "alias")
    return thread


WRITES: dict[str, Callable[[ThreadStore, Thread], Awaitable[Any]]] = {
    "save": lambda store, thread: store.save(thread),
    "save a new thread": lambda store, thread: store.save(Thread(id="new")),
    "append": lambda store, thread: store.append("t", Message(role="user", content="more")),
    "append create": lambda store, thread: store.append(
        "new", Message(role="user", content="x"), create=True
    ),
    "pop_message": lambda store, thread: store.pop_message("t"),
    "get_or_create": lambda store, thread: store.get_or_create("new"),
    "delete": lambda store, thread: store.delete("t"),
    "delete_many": lambda store, thread: store.delete_many(["t"]),
    "save_thread_alias": lambda store, thread: store.save_thread_alias("t", "other"),
    "delete_thread_alias": lambda store, thread: store.delete_thread_alias("alias"),
    "import_threads": lambda store, thread: store.import_threads([Thread(id="new")]),
    "migrate": lambda store, thread: store.migrate(),
}


@pytest.mark.parametrize("write", list(WRITES))
async def test_a_write_on_a_read_only_store_raises_and_changes_nothing(
    store_url: str | None, write: str
) -> None:
    thread = await filled(store_url)
    async with await ThreadStore.create(store_url, read_only=True, **TEST_POOL) as store:
        assert store.read_only
        loaded = await store.get("t")
        expected = None if loaded is None else (loaded.title, [m.content for m in loaded.messages])
        target = loaded or thread
        target.add_message(user("not stored"))
        with pytest.raises(ReadOnlyError, match=r"\(\) writes, and .* read_only=True") as raised:
            await WRITES[write](store, target)
        assert isinstance(raised.value, ThreadStoreError)
        after = await store.get("t")
        assert (None if after is None else (after.title, [m.content for m in after.messages])) == expected
        assert await store.get("new") is None
        assert await store.get_thread_aliases("t") == ([] if loaded is None else ["alias"])


async def test_a_read_only_store_reads_what_another_store_wrote(shared_url: str) -> None:
    await filled(shared_url)
    async with await ThreadStore.create(shared_url, read_only=True, **TEST_POOL) as store:
        loaded = await store.get("t")
        assert loaded is not None and [m.content for m in loaded.messages] == ["a refund is due"]
        assert [t.id for t in await store.list()] == ["t"]
        assert [t.id for t in await store.find_by_attributes({"k": 1})] == ["t"]
        assert [t.id for t in await store.search_by_content("refund")] == ["t"]
        assert (await store.get_by_alias("alias") or Thread()).id == "t"
        assert (await store.get_usage_stats())["total_messages"] == 1
        assert [[r.id for r in page] async for page in store.export_threads()] == [["t"]]
        assert not (await store.schema_status()).pending
        assert await store.ping() >= 0


async def test_a_read_only_store_does_not_migrate(shared_url: str) -> None:
    if shared_url.startswith("sqlite"):
        path = shared_url.partition(":///")[2]
        open(path, "wb").close()  # an empty file is an empty SQLite database
    async with await ThreadStore.create(shared_url, read_only=True, **TEST_POOL) as store:
        status = await store.schema_status()
        if shared_url.startswith("sqlite"):
            assert status.version == 0 and status.pending
        else:  # the run's database, migrated by the other tests' stores
            assert status.version > 0


async def test_read_only_needs_an_existing_sqlite_file(tmp_path: Any) -> None:
    path = tmp_path / "missing.db"
    with pytest.raises(ThreadStoreError, match="read-only: there is no such file"):
        await ThreadStore.create(f"sqlite+aiosqlite:///{path}", read_only=True)
    assert not path.exists()


_EDIT_AND_DIE = """
import asyncio, os, sys
from threadstore import Message, ThreadStore

async def main() -> None:
    store = await ThreadStore.create(sys.argv[1])
    thread = await store.get("zoo")
    thread.messages[0].content = "giraffe neck"
    thread.add_message(Message(role="user", content="okapi sighting"))
    await store.save(thread)
    os._exit(0)  # before its background indexer runs (0.1 s after the write)

asyncio.run(main())
"""


async def test_read_only_search_finds_no_edited_away_words_after_the_writer_died(
    shared_url: str, tmp_path: Any
) -> None:
    """Issue 30 item 3: a writer edits "zebra crossing" to "giraffe neck" and ends before its
    background indexer runs: a read-only store found "zebra" (PostgreSQL showed the snippet
    "[zebra] crossing") and never found the writer's new message. Queued messages are matched
    on their current text."""
    import subprocess
    import sys

    async with await ThreadStore.create(shared_url, **TEST_POOL) as writer:
        await writer.delete_many(["zoo", "other"])
        zoo = Thread(id="zoo", attributes={"k": 1})
        zoo.add_message(user("zebra crossing"))
        await writer.save(zoo)
        other = Thread(id="other", attributes={"k": 2})
        other.add_message(user("a giraffe elsewhere"))
        await writer.save(other)
    script = tmp_path / "edit_and_die.py"
    script.write_text(_EDIT_AND_DIE)
    subprocess.run([sys.executable, str(script), shared_url], check=True, timeout=60)

    async with await ThreadStore.create(shared_url, read_only=True, **TEST_POOL) as store:
        assert await store.search("zebra") == []
        assert await store.search("crossing") == []
        hits = await store.search("giraffe neck")
        assert [(h.thread_id, h.snippet) for h in hits] == [("zoo", "[giraffe] [neck]")]
        assert [h.snippet for h in await store.search("okapi")] == ["[okapi] sighting"]
        assert [h.thread_id for h in await store.search("okapi", attributes={"k": 1})] == ["zoo"]
        assert await store.search("okapi", attributes={"k": 2}) == []
        everything = await store.search("giraffe OR okapi", limit=10)
        assert sorted(h.snippet for h in everything) == [
            "[giraffe] neck",
            "[okapi] sighting",
            "a [giraffe] elsewhere",
        ]
        pages = [await store.search("giraffe OR okapi", limit=1, offset=n) for n in range(4)]
        assert [h.message_id for page in pages for h in page] == [h.message_id for h in everything]
    async with await ThreadStore.create(shared_url, **TEST_POOL) as reopened:  # indexes the queue
        assert await reopened.search("zebra") == []
        assert [h.snippet for h in await reopened.search("okapi")] == ["[okapi] sighting"]
        await reopened.delete_many(["zoo", "other"])  # the PostgreSQL database is shared
