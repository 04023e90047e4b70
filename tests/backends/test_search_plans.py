"""PostgreSQL answers each read from an index on a store of 10,000 threads (30,000 messages).

Each query runs prepared, as the store runs it, with a generic plan (plan_cache_mode=
force_generic_plan: blind to the parameters, the harder case; the store's sessions let PostgreSQL
choose), after ANALYZE. ``pytest -s`` prints each plan's
indexes and execution time.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from typing import Any

import asyncpg
import pytest

from threadstore import Message, Thread, ThreadStore, fulltext, matching
from threadstore.queries import load

pytestmark = pytest.mark.pg

THREADS = 10_000

FILL = f"""
INSERT INTO threads (id, title, attributes, platforms, source, created_at, updated_at, last_sequence)
SELECT 't' || i, 'Thread ' || i || ' about ' || md5(i::text),
       jsonb_build_object('customer', 'c' || (i % 2000), 'n', i % 7),
       jsonb_build_object('slack', jsonb_build_object('channel', 'C' || i, 'ts', i || '.0')),
       jsonb_build_object('name', 'web', 'user', 'u' || i),
       now() - i * interval '1 minute', now() - i * interval '1 minute', 3
  FROM generate_series(1, {THREADS}) AS i;
INSERT INTO thread_search (thread_id, title, attributes, platforms, source, platform_values)
SELECT id, title, attributes, platforms, source, threadstore_platform_values(platforms) FROM threads;
INSERT INTO messages (id, thread_id, sequence, role, content, attributes, timestamp, platforms, metrics)
SELECT 'm' || i || '-' || s, 't' || i, s, 'user',
       to_jsonb('message ' || s || ' of ' || i || ' says ' || md5((i * s)::text)),
       jsonb_build_object('k', i * 10 + s), now(),
       jsonb_build_object('slack', jsonb_build_object('ts', i || '.' || s)),
       jsonb_build_object('model', 'gpt', 'usage',
                          jsonb_build_object('prompt_tokens', 1, 'completion_tokens', 1, 'total_tokens', 2))
  FROM generate_series(1, {THREADS}) AS i, generate_series(1, 3) AS s;
-- What the indexer makes of them (postgres.index_text), with a few messages still queued.
INSERT INTO message_text (message_id, thread_id, text, words, stamp)
SELECT id, thread_id, threadstore_content_text(content),
       to_tsvector('simple', threadstore_content_text(content)), timestamp FROM messages;
INSERT INTO message_text_pending (thread_id, message_id)
SELECT 't' || i, 'm' || i || '-1' FROM generate_series(1, 20) AS i;
INSERT INTO thread_aliases (alias, thread_id, created_at)
SELECT 'alias-' || i, 't' || i, now() FROM generate_series(1, {THREADS}) AS i;
"""

RANKING = {"ranked": fulltext.RANKED, "recent": fulltext.RECENT}

# query -> (parameters, the indexes its plan must use)
CASES: dict[str, tuple[dict[str, Any], set[str]]] = {
    "threads.get": ({"thread_id": "t77"}, {"threads_pkey", "messages_thread_sequence_key|messages_pkey"}),
    "threads.list_recent": ({"limit": 20, "offset": 0}, {"threads_updated_at_idx"}),
    "search.by_title": (
        {"pattern": matching.literal("0a1b").posix, "wanted": None, "limit": 100, "offset": 0},
        {"thread_search_title_trgm_idx"},
    ),
    "search.by_content": (
        {"pattern": matching.regex("says 9f.*0a").posix, "limit": 100, "offset": 0},
        {"message_text_trgm_idx"},
    ),
    "search.by_platform_reference": (
        {"platform": "slack", "reference": '"C4242"', "limit": 100, "offset": 0},
        {"thread_search_platform_values_idx"},
    ),
    "search.by_attributes": (
        {"wanted": '{"customer": "c42", "n": 0}', "limit": 100, "offset": 0},
        {"thread_search_attributes_idx"},
    ),
    "search.by_platform": (
        {"name": "slack", "wanted": '{"channel": "C4242"}', "limit": 100, "offset": 0},
        {"thread_search_platforms_idx", "thread_search_source_idx"},
    ),
    "search.messages_by_attributes": (
        {"keys": "{k}", "value": "4243", "limit": 100, "offset": 0},
        {"messages_attributes_idx"},
    ),
    "search.messages_by_platforms": (
        {"keys": "{slack,ts}", "value": '"424.2"', "limit": 100, "offset": 0},
        {"messages_platforms_idx"},
    ),
    "search.fulltext": (
        {"query": "'of' & '4242' & !'x'", "ranking": "'of' & '4242'", **RANKING, "limit": 20, "offset": 0},
        {"message_text_recent_idx", "message_text_words_idx", "messages_id_idx|messages_pkey"},
    ),
    "search.fulltext_in_threads": (
        {"query": "'4242'", "ranking": "'4242'", "wanted": '{"n": 0}', **RANKING, "limit": 20, "offset": 0},
        {"message_text_recent_idx", "message_text_words_idx", "thread_search_pkey"},
    ),
    "search.get_thread_by_message_id": ({"message_id": "m77-2"}, {"messages_id_idx", "threads_pkey"}),
    "aliases.get_by_alias": ({"alias": "alias-77"}, {"thread_aliases_pkey", "threads_pkey"}),
    "aliases.get_thread_aliases": ({"thread_id": "t77"}, {"thread_aliases_thread_id_idx"}),
    "stats.get_usage_stats": (
        {
            "hour_ago": "2000-01-01T00:00:00+00:00",
            "day_ago": "2000-01-01T00:00:00+00:00",
            "week_ago": "2000-01-01T00:00:00+00:00",
        },
        {"threads_updated_at_idx"},
    ),
    # Bounded reads and retention (sql/postgres/bounded.sql).
    "bounded.get_messages_before": (
        {"thread_id": "t77", "before": 2**31, "limit": 50},
        {"threads_pkey", "messages_thread_sequence_key"},
    ),
    "bounded.get_messages_after": (
        {"thread_id": "t77", "after": 1, "before": 2**31, "limit": 50},
        {"threads_pkey", "messages_thread_sequence_key"},
    ),
    "bounded.list_threads": (
        {"after_time": "infinity", "after_id": "", "limit": 51},
        {"threads_updated_at_idx", "messages_thread_sequence_key"},
    ),
    "bounded.list_threads_by_attributes": (
        {"after_time": "infinity", "after_id": "", "wanted": '{"customer": "c42", "n": 0}', "limit": 51},
        {"thread_search_attributes_idx", "messages_thread_sequence_key"},
    ),
    "bounded.count_threads_to_delete": (
        {"cutoff": "2000-01-01T00:00:00+00:00", "wanted": None},
        {"threads_updated_at_idx"},
    ),
    "bounded.delete_threads": (
        {"cutoff": "2000-01-01T00:00:00+00:00", "wanted": None, "batch": 500},
        {"threads_updated_at_idx"},
    ),
    "bounded.thread_row": ({"thread_id": "t77"}, {"threads_pkey"}),
    "bounded.prune": ({"thread_id": "t77", "keep_last": 200}, {"messages_thread_sequence_key"}),
}
# Aggregates over the whole store read every row whatever the plan; a sequential scan is the
# cheapest way to do that (the index-only alternative reads the same rows plus the index).
WHOLE_TABLE = {"stats.get_usage_stats"}


def _literal(value: Any) -> str:
    if value is None:
        return "NULL"
    if isinstance(value, int):
        return str(value)
    return "'" + str(value).replace("'", "''") + "'"


def _nodes(plan: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield plan
    for child in plan.get("Plans", []):
        yield from _nodes(child)


@pytest.fixture(scope="module")
def filled_url(pg_server: str) -> Iterator[str]:
    import asyncio

    from tests.conftest import _database

    async def fill(url: str) -> None:
        async with await ThreadStore.create(url):
            pass
        conn = await asyncpg.connect(url)
        try:
            await conn.execute(FILL)
            await conn.execute(
                "VACUUM ANALYZE threads, thread_search, messages, message_text, "
                "message_text_pending, thread_aliases"
            )
        finally:
            await conn.close()

    with _database(pg_server) as url:
        asyncio.run(fill(url))
        yield url


@pytest.mark.parametrize("name", sorted(CASES))
async def test_each_read_uses_its_index(filled_url: str, name: str) -> None:
    params, indexes = CASES[name]
    query = load("postgres")[name]
    conn = await asyncpg.connect(filled_url, server_settings={"plan_cache_mode": "force_generic_plan"})
    try:
        await conn.execute(f"PREPARE q AS {query.sql}")
        args = ", ".join(_literal(params[p]) for p in query.params)
        execute = f"EXECUTE q({args})" if args else "EXECUTE q"
        [row] = await conn.fetch(f"EXPLAIN (ANALYZE, FORMAT JSON) {execute}")
    finally:
        await conn.close()
    [explained] = json.loads(row[0])
    nodes = list(_nodes(explained["Plan"]))
    used = {n["Index Name"] for n in nodes if "Index Name" in n}
    scanned = {n["Relation Name"] for n in nodes if n["Node Type"] == "Seq Scan"}
    print(
        f"\n{name}: {explained['Execution Time']:.2f} ms, indexes {sorted(used)}, "
        f"sequential scans {sorted(scanned) or 'none'}"
    )

    # "a|b": either index serves (a thread's messages: both keys lead with thread_id).
    missing = {i for i in indexes if not used & set(i.split("|"))}
    assert not missing, f"{name} does not use {sorted(missing)}"
    if name not in WHOLE_TABLE:
        tables = {"threads", "thread_search", "messages", "message_text", "thread_aliases"}
        assert not scanned & tables, f"{name} scans {scanned}"


async def test_a_later_page_of_summaries_starts_at_its_position_in_the_index(filled_url: str) -> None:
    """list_threads' cursor is a range condition of threads_updated_at_idx: page 40 reads the
    rows of its page, not the 39 pages before it."""
    query = load("postgres")["bounded.list_threads"]
    conn = await asyncpg.connect(filled_url, server_settings={"plan_cache_mode": "force_generic_plan"})
    try:
        after_time, after_id = await conn.fetchrow(
            "SELECT updated_at::text, id FROM threads ORDER BY updated_at DESC, id DESC OFFSET 1949 LIMIT 1"
        )
        await conn.execute(f"PREPARE q AS {query.sql}")
        args = {"after_time": after_time, "after_id": after_id, "limit": 51}
        values = ", ".join(_literal(args[p]) for p in query.params)
        [row] = await conn.fetch(f"EXPLAIN (ANALYZE, FORMAT JSON) EXECUTE q({values})")
    finally:
        await conn.close()
    [explained] = json.loads(row[0])
    [scan] = [n for n in _nodes(explained["Plan"]) if n.get("Index Name") == "threads_updated_at_idx"]
    print(f"\nbounded.summaries, page 40: {explained['Execution Time']:.2f} ms, {scan.get('Index Cond')}")
    assert "updated_at" in scan.get("Index Cond", ""), scan
    assert scan["Actual Rows"] <= 51 and not scan.get("Rows Removed by Filter"), scan


async def test_a_rare_word_reads_few_pages_right_after_a_bulk_index(filled_url: str) -> None:
    """Migration 0006: message_text's GIN indexes keep no pending list (fastupdate off), so the
    entries the indexer just wrote are in the index's tree, not in a list every search reads in
    full until VACUUM: with fastupdate, 5,000 freshly indexed messages made a rare word's search
    read 94 buffers instead of 4 (issue 28: 495 buffers, 52-87 ms at 200,000)."""
    query = load("postgres")["search.fulltext"]
    conn = await asyncpg.connect(filled_url, server_settings={"plan_cache_mode": "force_generic_plan"})
    try:
        options = await conn.fetchval(
            "SELECT reloptions FROM pg_class WHERE relname = 'message_text_words_idx'"
        )
        assert "fastupdate=off" in (options or []), options
        transaction = conn.transaction()  # rolled back: the module's store stays as filled
        await transaction.start()
        try:
            await conn.execute(
                "INSERT INTO messages (id, thread_id, sequence, role, content, timestamp) "
                "SELECT 'bulk' || i, 't1', 1000 + i, 'user', to_jsonb('bulk'::text), now() "
                "  FROM generate_series(1, 5000) AS i"
            )
            await conn.execute(
                "INSERT INTO message_text (message_id, thread_id, text, words, stamp) "
                "SELECT 'bulk' || i, 't1', 'bulk ' || md5(i::text), "
                "       to_tsvector('simple', 'bulk words ' || md5(i::text) || ' ' || md5((i + 1)::text)), "
                "       now() "
                "  FROM generate_series(1, 5000) AS i"
            )
            await conn.execute(f"PREPARE q AS {query.sql}")
            args = {"query": "'rarissime'", "ranking": "'rarissime'", **RANKING, "limit": 20, "offset": 0}
            values = ", ".join(_literal(args[p]) for p in query.params)
            [row] = await conn.fetch(f"EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) EXECUTE q({values})")
        finally:
            await transaction.rollback()
    finally:
        await conn.close()
    [explained] = json.loads(row[0])
    [scan] = [n for n in _nodes(explained["Plan"]) if n.get("Index Name") == "message_text_words_idx"]
    pages = scan["Shared Hit Blocks"] + scan["Shared Read Blocks"]
    print(f"\nsearch.fulltext, a word in no message after 5,000 indexed: {pages} buffers")
    assert pages <= 20, scan


@pytest.mark.parametrize("name", ["search.fulltext", "search.fulltext_in_threads"])
async def test_a_word_in_every_message_reads_only_the_newest(filled_url: str, name: str) -> None:
    """Issue 28: the top 20 of a word in four messages of five took 3.6-6.6 s at 1,000,000
    messages, every match read and ranked. Only the fulltext.RANKED newest matches are ranked:
    a word in all 30,000 messages walks at most fulltext.RECENT rows of message_text_recent_idx,
    and its entries in message_text_words_idx (every match) are never read."""
    query = load("postgres")[name]
    args = {"query": "'message'", "ranking": "'message'", "wanted": "{}", **RANKING, "limit": 20, "offset": 0}
    conn = await asyncpg.connect(filled_url, server_settings={"plan_cache_mode": "force_generic_plan"})
    try:
        await conn.execute(f"PREPARE q AS {query.sql}")
        values = ", ".join(_literal(args[p]) for p in query.params)
        [row] = await conn.fetch(f"EXPLAIN (ANALYZE, FORMAT JSON) EXECUTE q({values})")
        assert (
            len(await conn.fetch(f"EXECUTE q({values.replace(', 20, 0', ', 2000, 0')})")) == fulltext.RANKED
        )
    finally:
        await conn.close()
    [explained] = json.loads(row[0])
    nodes = list(_nodes(explained["Plan"]))
    print(f"\n{name}, a word in every message: {explained['Execution Time']:.2f} ms")
    [walk] = [n for n in nodes if n.get("Index Name") == "message_text_recent_idx"]
    assert walk["Actual Rows"] <= fulltext.RECENT, walk
    words = [n for n in nodes if n.get("Index Name") == "message_text_words_idx"]
    assert words and all(n["Actual Loops"] == 0 for n in words), words
    assert not {n["Relation Name"] for n in nodes if n["Node Type"] == "Seq Scan"} & {
        "messages",
        "message_text",
    }


def _bulk() -> list[Thread]:
    return [
        Thread(
            id=f"bulk-{i}",
            messages=[Message(role="user", content=f"bulk message {i} {n}") for n in range(10)],
        )
        for i in range(1_000)
    ]


async def test_the_indexer_settles_the_tables_after_a_bulk_load(fresh_pg_url: str) -> None:
    """After indexing a bulk load (10,000 messages or more in a round: here a migration that
    queued every message), the indexer refreshes the statistics and truncates the emptied queue,
    so a search right after it is planned on the tables as loaded and reads no dead queue pages
    (before: 350 ms, not 0.9, for a word in 10 of 200,000 messages; autovacuum may be a minute
    away, or off)."""
    conn = await asyncpg.connect(fresh_pg_url)
    try:
        async with await ThreadStore.create(fresh_pg_url) as store:
            await store.import_threads(_bulk())
        await conn.execute(
            "DELETE FROM message_text;"
            "INSERT INTO message_text_pending (thread_id, message_id) SELECT thread_id, id FROM messages"
        )
        analyzed = await conn.fetchval(
            "SELECT last_analyze FROM pg_stat_user_tables WHERE relname = 'message_text'"
        )
        async with await ThreadStore.create(fresh_pg_url) as store:  # its indexer takes the queue
            deadline = time.monotonic() + 120
            while await conn.fetchval("SELECT count(*) FROM message_text_pending"):
                assert time.monotonic() < deadline, "the indexer did not catch up"
                await asyncio.sleep(0.2)
            assert len(await store.search("bulk message 7")) == 20
            while await conn.fetchval(
                "SELECT pg_relation_size('message_text_pending') > 0 OR (SELECT last_analyze IS NOT "
                "DISTINCT FROM $1 FROM pg_stat_user_tables WHERE relname = 'message_text')",
                analyzed,
            ):
                assert time.monotonic() < deadline, "the indexer did not settle the tables"
                await asyncio.sleep(0.2)
        analyzed = await conn.fetchval("SELECT reltuples FROM pg_class WHERE relname = 'message_text'")
        assert analyzed >= 10_000, analyzed
    finally:
        await conn.close()


async def test_an_import_indexes_and_settles_the_tables_before_it_returns(fresh_pg_url: str) -> None:
    """Issue 28: an import queued its messages, and the first search after it indexed them (98 s
    after 200,000 messages). It indexes them in its own transaction now and, after a bulk load's
    worth (10,000 messages or more), settles the tables as the indexer does: right after it,
    nothing is queued, the statistics count what it wrote, and a word's search is planned on
    the word's index."""
    conn = await asyncpg.connect(fresh_pg_url, server_settings={"plan_cache_mode": "force_generic_plan"})
    try:
        async with await ThreadStore.create(fresh_pg_url) as store:
            await store.import_threads(_bulk())
            queued, size, rows, pages = await conn.fetchrow(
                "SELECT (SELECT count(*) FROM message_text_pending), "
                "       pg_relation_size('message_text_pending'), "
                "       (SELECT reltuples FROM pg_class WHERE relname = 'message_text'), "
                "       (SELECT reltuples FROM pg_class WHERE relname = 'messages')"
            )
            assert (queued, size) == (0, 0)
            assert rows >= 10_000 and pages >= 10_000, (rows, pages)  # analyzed: -1 before
            query = load("postgres")["search.fulltext"]
            await conn.execute(f"PREPARE q AS {query.sql}")
            args = {"query": "'rarissime'", "ranking": "'rarissime'", **RANKING, "limit": 20, "offset": 0}
            values = ", ".join(_literal(args[p]) for p in query.params)
            [row] = await conn.fetch(f"EXPLAIN (ANALYZE, FORMAT JSON) EXECUTE q({values})")
            [explained] = json.loads(row[0])
            nodes = list(_nodes(explained["Plan"]))
            assert "message_text_words_idx" in {n.get("Index Name") for n in nodes}
            assert "message_text" not in {n["Relation Name"] for n in nodes if n["Node Type"] == "Seq Scan"}
            assert len(await store.search("bulk message 7")) == 20
    finally:
        await conn.close()
