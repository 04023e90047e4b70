"""PostgreSQL's content index is filled off the write path (message_text, see migration 0003):
searches find every message as soon as its save returns, and the background indexer leaves
message_text equal to each stored message's content text, whatever was saved, edited, removed,
deleted or imported."""

from __future__ import annotations

import asyncio

import asyncpg
import pytest

from threadstore import Message, Thread, ThreadStore, matching

pytestmark = pytest.mark.pg


async def _queued_and_text(url: str) -> tuple[int, dict[str, str]]:
    conn = await asyncpg.connect(url)
    try:
        queued = await conn.fetchval("SELECT count(*) FROM message_text_pending")
        rows = await conn.fetch("SELECT message_id, text FROM message_text")
    finally:
        await conn.close()
    return queued, {r[0]: r[1] for r in rows}


async def _expected(store: ThreadStore) -> dict[str, str]:
    expected = {}
    for thread in await store.list_recent():
        for m in thread.messages:
            text = matching.content_text(m.content)
            if text is not None:
                expected[m.id] = text
    return expected


async def _indexed(url: str) -> dict[str, str]:
    for _ in range(100):  # the indexer runs right after each write: bounded at ~5 s
        queued, text = await _queued_and_text(url)
        if not queued:
            return text
        await asyncio.sleep(0.05)
    raise AssertionError("the indexer left messages queued for 5 s")


async def test_searches_find_every_message_before_and_after_indexing(fresh_pg_url: str) -> None:
    async with await ThreadStore.create(fresh_pg_url) as store:
        thread = Thread(title="t")
        thread.add_message(Message(role="user", content="the parcel is late"))
        thread.add_message(Message(role="assistant", content=[{"type": "text", "text": "refund sent"}]))
        await store.save(thread)
        assert [t.id for t in await store.search_by_content("refund")] == [thread.id]  # maybe queued
        assert await _indexed(fresh_pg_url) == await _expected(store)
        assert [t.id for t in await store.search_by_content("refund")] == [thread.id]  # indexed

        # edits, removals, appends, imports and deletes keep message_text equal to the content
        thread.messages[0].content = "the parcel arrived"
        thread.messages[1].content = None
        await store.save(thread)
        assert await store.search_by_content("refund") == []
        assert [t.id for t in await store.search_by_content("arrived")] == [thread.id]
        await store.append(thread.id, Message(role="user", content="thanks, refund received"))
        other = Thread(title="o")
        other.add_message(Message(role="user", content="imported refund question"))
        await store.import_threads([other])
        assert sorted(t.id for t in await store.search_by_content("refund")) == sorted([thread.id, other.id])
        assert await _indexed(fresh_pg_url) == await _expected(store)
        assert sorted(t.id for t in await store.search_by_content("refund")) == sorted([thread.id, other.id])

        loaded = await store.get(thread.id)
        assert loaded is not None
        loaded.messages = loaded.messages[:1]
        await store.save(loaded)
        await store.delete(other.id)
        assert await store.search_by_content("refund") == []
        assert await _indexed(fresh_pg_url) == await _expected(store)
        assert await store.search_by_content("refund") == []


async def test_many_concurrent_writers_leave_the_index_exact(fresh_pg_url: str) -> None:
    async with await ThreadStore.create(fresh_pg_url) as store:
        threads = [Thread(title=f"t{i}") for i in range(8)]
        for t in threads:
            t.add_message(Message(role="user", content=f"first {t.title}"))
            await store.save(t)

        async def edit(t: Thread) -> None:
            for n in range(10):
                t.messages[0].content = f"version {n} of {t.title}"
                t.add_message(Message(role="assistant", content=f"reply {n} in {t.title}"))
                await store.save(t)

        await asyncio.gather(*(edit(t) for t in threads))
        assert await _indexed(fresh_pg_url) == await _expected(store)
        assert len(await store.search_by_content("version 9 of")) == 8
        assert await store.search_by_content("version 8 of") == []


async def test_messages_an_ended_process_left_queued_are_found_and_indexed(fresh_pg_url: str) -> None:
    async with await ThreadStore.create(fresh_pg_url) as store:
        thread = Thread(title="t")
        thread.add_message(Message(role="user", content="left in the queue"))
        await store.save(thread)
        await _indexed(fresh_pg_url)
    conn = await asyncpg.connect(fresh_pg_url)
    try:  # as if the process had ended before its indexer ran
        await conn.execute("DELETE FROM message_text")
        await conn.execute(
            "INSERT INTO message_text_pending (thread_id, message_id) SELECT thread_id, id FROM messages"
        )
    finally:
        await conn.close()
    async with await ThreadStore.create(fresh_pg_url) as store:
        assert [t.id for t in await store.search_by_content("in the queue")] == [thread.id]
        await store.append(thread.id, Message(role="user", content="a later write"))
        assert await _indexed(fresh_pg_url) == await _expected(store)
