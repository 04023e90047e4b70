"""SQLite answers full-text searches from its FTS5 index, and narrows substring searches with its
trigram indexes, instead of scanning messages or threads."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from tests.helpers import user
from threadstore import Message, Thread, ThreadStore, fulltext
from threadstore.queries import load


async def test_fulltext_search_reads_the_fts5_index(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'plans.db'}"
    async with await ThreadStore.create(url) as store:
        thread = Thread(title="t")
        for i in range(50):
            thread.add_message(Message(role="user", content=f"message {i} about refunds"))
        await store.save(thread)
        conn = store.engine
        cases = [("search.fulltext", {}), ("search.fulltext_in_threads", {"wanted": '{"team": "a"}'})]
        for name, extra in cases:
            query = load("sqlite")[name]
            values = {"query": fulltext.fts5_query(fulltext.parse("refunds 7")), "limit": 20, "offset": 0,
                      **extra}
            rows = await conn.execute_fetchall(f"EXPLAIN QUERY PLAN {query.sql}", query.args(values))
            plan = " / ".join(row[3] for row in rows)
            assert "SCAN message_fts VIRTUAL TABLE INDEX" in plan, plan
            assert "SCAN m " not in plan and "SCAN messages" not in plan, plan
            assert "SEARCH m USING INDEX" in plan, plan
            assert "SCAN message_words_pending" in plan, plan  # the queue: empty but for a moment


async def test_substring_searches_read_the_trigram_indexes(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'plans.db'}"
    async with await ThreadStore.create(url) as store:
        for i in range(50):
            await store.save(Thread(title=f"thread {i}", messages=[user(f"text {i}")]))
        conn = store.engine
        for name, indexed, queued in [
            ("sqlite.by_title_indexed", "title_trigrams", "thread_titles_pending"),
            ("sqlite.by_content_indexed", "message_trigrams", "message_words_pending"),
        ]:
            query = load("sqlite")[name]
            values = {"pattern": "refund", "trigrams": '"refund"', "limit": 20, "offset": 0}
            rows = await conn.execute_fetchall(f"EXPLAIN QUERY PLAN {query.sql}", query.args(values))
            plan = " / ".join(row[3] for row in rows)
            assert f"SCAN {indexed} VIRTUAL TABLE INDEX" in plan, plan
            assert f"SCAN {queued}" in plan, plan  # the queue: empty but for a moment
            assert "SCAN threads" not in plan and "SCAN m " not in plan and "SCAN messages" not in plan, plan


async def test_the_trigram_indexes_fold_case_as_the_regex_engine_does(tmp_path: Path) -> None:
    """RE2 takes k for the Kelvin sign and s for the long s; the folded index text does too, so
    SQLite (index or not) answers as the memory store. PostgreSQL's ~* does not (left as is)."""
    url = f"sqlite+aiosqlite:///{tmp_path / 'fold.db'}"
    async with await ThreadStore.create(url) as sqlite, await ThreadStore.create() as memory:
        for store in (sqlite, memory):
            await store.save(Thread(id="k", title="\u212aELVIN", messages=[user("300 \u212aelvin")]))
            await store.save(Thread(id="s", title="Statu\u017f", messages=[user("\u017ftatus")]))
        backend: Any = sqlite._backend
        for indexed in (False, True):
            if indexed:
                await asyncio.wait([backend._indexer], timeout=10)
            for pattern in ["kelvin", "KELVIN", "\u212aelvin", "status", "STATUS", "\u017ftatu"]:
                for search in ("search_by_title", "search_by_content"):
                    expected = [t.id for t in await getattr(memory, search)(pattern)]
                    assert expected, (search, pattern)
                    got = [t.id for t in await getattr(sqlite, search)(pattern)]
                    assert got == expected, (search, pattern)
