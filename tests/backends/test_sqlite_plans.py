"""SQLite answers full-text searches from its FTS5 index, not by scanning messages."""

from __future__ import annotations

from pathlib import Path

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
