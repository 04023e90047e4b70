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


# query -> (parameters, what its plan must show); none of them may scan a whole table.
BOUNDED = {
    "bounded.messages_before": ({"thread_id": "t", "before": 2**31, "limit": 50},
                                ["SEARCH threads USING INDEX sqlite_autoindex_threads_1 (id=?)",
                                 "USING INDEX sqlite_autoindex_messages_2 (thread_id=? AND sequence<?)"]),
    "bounded.messages_after": ({"thread_id": "t", "after": 3, "before": 2**31, "limit": 50},
                               ["SEARCH threads USING INDEX sqlite_autoindex_threads_1 (id=?)",
                                "sqlite_autoindex_messages_2 (thread_id=? AND sequence>? AND sequence<?)"]),
    "bounded.summaries": ({"after_time": "~", "after_id": "", "limit": 51},
                          ["SEARCH t USING INDEX threads_updated_at_idx ((updated_at,id)<(?,?))",
                           "SEARCH c USING COVERING INDEX sqlite_autoindex_messages_2 (thread_id=?)",
                           "SEARCH messages USING INDEX sqlite_autoindex_messages_2 (thread_id=?)"]),
    "bounded.summaries_by_attributes": ({"after_time": "~", "after_id": "", "limit": 51, "wanted": "{}"},
                                        ["threads_updated_at_idx ((updated_at,id)<(?,?))",
                                         "sqlite_autoindex_messages_2 (thread_id=?)"]),
    "bounded.count_old": ({"cutoff": "2020", "wanted": None},
                          ["SEARCH threads USING INDEX threads_updated_at_idx (updated_at<?)"]),
    "bounded.delete_old": ({"cutoff": "2020", "wanted": None, "batch": 5},
                           ["SEARCH threads USING INDEX threads_updated_at_idx (updated_at<?)"]),
    "bounded.thread_row": ({"thread_id": "t"}, ["sqlite_autoindex_threads_1 (id=?)"]),
    "bounded.prune": ({"thread_id": "t", "keep_last": 5},
                      ["sqlite_autoindex_messages_2 (thread_id=? AND sequence<?)"]),
}


async def test_bounded_reads_and_retention_search_their_indexes(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'plans.db'}"
    async with await ThreadStore.create(url) as store:
        for n in range(20):
            thread = Thread(id=f"t{n}")
            for i in range(5):
                thread.add_message(Message(role="user", content=f"message {i}"))
            await store.save(thread)
        conn = store.engine
        for name, (values, expected) in BOUNDED.items():
            query = load("sqlite")[name]
            rows = await conn.execute_fetchall(f"EXPLAIN QUERY PLAN {query.sql}", query.args(values))
            plan = " / ".join(row[3] for row in rows)
            for step in expected:
                assert step in plan, f"{name}: {plan}"
            assert "SCAN threads" not in plan and "SCAN messages" not in plan, f"{name}: {plan}"
            for alias in ("m", "c", "t"):
                assert f" SCAN {alias} " not in f" {plan} ", f"{name}: {plan}"
            if name.startswith("bounded.summaries"):  # in index order: nothing sorted
                assert "TEMP B-TREE" not in plan, f"{name}: {plan}"
