"""Migrations on the SQL backends: applied once, under a lock, by processes racing to create."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tests.reliability.support import background_done
from threadstore import Message, SchemaVersionError, Thread, ThreadStore, fulltext
from threadstore.queries import load
from threadstore.testing import backend_of

# Each process sleeps until the same instant, then creates a store on the empty database.
_CREATE_AT = """
import asyncio, sys, time
from threadstore import ThreadStore

async def main(url, start):
    time.sleep(max(0.0, start - time.time()))
    store = await ThreadStore.create(url)
    await store.close()

asyncio.run(main(sys.argv[1], float(sys.argv[2])))
"""


@pytest.fixture(params=["sqlite_file", "postgres"])
def empty_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite_file":
        return f"sqlite+aiosqlite:///{tmp_path}/race.db"
    url: str = request.getfixturevalue("fresh_pg_url")
    return url


async def _applied_versions(store: ThreadStore) -> list[int]:
    backend = backend_of(store)
    assert backend is not None
    if backend.name == "postgres":
        async with backend._pool.acquire() as conn:  # type: ignore[attr-defined]
            rows = await backend._pool.run(conn, "schema.versions")  # type: ignore[attr-defined]
    else:
        async with backend._db.lock:  # type: ignore[attr-defined]
            rows = await backend._db.run("schema.versions")  # type: ignore[attr-defined]
    return [row[0] for row in rows]


async def test_processes_creating_at_once_both_succeed_and_migrate_once(empty_url: str) -> None:
    start = time.time() + 1.5  # time for both interpreters to start
    processes = [
        subprocess.Popen(
            [sys.executable, "-c", _CREATE_AT, empty_url, str(start)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    for process in processes:
        _, stderr = process.communicate(timeout=60)
        assert process.returncode == 0, stderr
    async with await ThreadStore.create(empty_url, migrate=False) as store:
        dialect = "postgres" if store.backend == "postgres" else "sqlite"
        expected = [m.version for m in load(dialect).migrations]
        assert await _applied_versions(store) == expected
        assert await store.migrate() == []
        await store.save(Thread(title="works"))
        assert [t.title for t in await store.list()] == ["works"]


async def test_a_database_newer_than_the_code_is_refused_naming_both_versions(empty_url: str) -> None:
    async with await ThreadStore.create(empty_url) as store:
        backend = backend_of(store)
        assert backend is not None
        record = {"version": 99, "name": "from_the_future", "applied_at": None}
        if backend.name == "postgres":
            from datetime import UTC, datetime

            record["applied_at"] = datetime.now(UTC)
            async with backend._pool.acquire() as conn:  # type: ignore[attr-defined]
                await backend._pool.run(conn, "schema.record", **record)  # type: ignore[attr-defined]
        else:
            record["applied_at"] = "2030-01-01T00:00:00.000000+00:00"
            async with backend._db.lock:  # type: ignore[attr-defined]
                await backend._db.run("schema.record", **record)  # type: ignore[attr-defined]
    with pytest.raises(SchemaVersionError) as raised:
        await ThreadStore.create(empty_url)
    known = max(m.version for m in load("postgres" if "postgres" in empty_url else "sqlite").migrations)
    assert "99" in str(raised.value) and f"up to {known}" in str(raised.value)
    assert isinstance(raised.value, RuntimeError)


@pytest.fixture
def unprivileged_url(pg_server: str) -> Iterator[str]:
    """A new database and a role that may create tables in it but not extensions (no CREATE
    privilege on the database, which even the trusted pg_trgm extension needs)."""
    import asyncio
    import uuid
    from urllib.parse import urlsplit, urlunsplit

    from tests.conftest import _admin, _database

    role = f"threadstore_test_role_{uuid.uuid4().hex[:10]}"  # generated here, not user input

    asyncio.run(_admin(pg_server, f'CREATE ROLE "{role}" LOGIN'))
    try:
        with _database(pg_server) as url:
            asyncio.run(_admin(url, f'GRANT USAGE, CREATE ON SCHEMA public TO "{role}"'))
            parts = urlsplit(url)
            yield urlunsplit(parts._replace(netloc=f"{role}@{parts.hostname}:{parts.port or 5432}"))
    finally:
        asyncio.run(_admin(pg_server, f'DROP ROLE IF EXISTS "{role}"'))


@pytest.mark.pg
async def test_without_pg_trgm_migrations_succeed_and_searches_scan(unprivileged_url: str) -> None:
    async with await ThreadStore.create(unprivileged_url) as store:
        backend = backend_of(store)
        async with backend._pool.acquire() as conn:  # type: ignore[union-attr]
            indexes = {r[0] for r in await conn.fetch("SELECT indexname FROM pg_indexes")}
            extensions = {r[0] for r in await conn.fetch("SELECT extname FROM pg_extension")}
        assert "pg_trgm" not in extensions
        assert "thread_search_title_trgm_idx" not in indexes and "message_text_trgm_idx" not in indexes
        assert {"thread_search_attributes_idx", "messages_platforms_idx"} <= indexes
        assert await _applied_versions(store) == [m.version for m in load("postgres").migrations]

        thread = Thread(title="Customer Support")
        thread.add_message(Message(role="user", content="Priority is HIGH"))
        await store.save(thread)
        assert [t.id for t in await store.search_by_title("customer")] == [thread.id]
        assert [t.id for t in await store.search_by_content("priority.*high")] == [thread.id]


# A store filled at schema version 2 (PostgreSQL), as the statements of that version wrote it.
_FILLED_AT_2 = """
INSERT INTO threads (id, title, attributes, platforms, source, created_at, updated_at, last_sequence)
VALUES ('t1', 'Refund for order 77', '{"customer": "c7", "tier": 2}',
        '{"slack": {"channel": "C77", "ts": "1.5"}}', '{"name": "web", "user": "u7"}',
        '2024-01-02T03:04:05.123456+00', '2024-02-03T04:05:06.654321+00', 2),
       ('t2', 'Other', '{}', '{}', NULL, '2024-01-01T00:00:00+00', '2024-01-01T00:00:00+00', 0);
INSERT INTO messages (id, thread_id, sequence, role, content, attributes, timestamp, platforms, metrics)
VALUES ('m1', 't1', 1, 'user', '"where is my refund?"', '{"lang": "en"}',
        '2024-01-02T03:04:06+00', '{}', '{}'),
       ('m2', 't1', 2, 'assistant', '[{"type": "text", "text": "it is on its way"}]', '{}',
        '2024-01-02T03:04:07+00', '{"slack": {"ts": "1.6"}}', '{"model": "m"}');
INSERT INTO thread_aliases (alias, thread_id, created_at) VALUES ('order-77', 't1', '2024-01-03T00:00:00+00');
"""


@pytest.mark.pg
async def test_a_postgres_store_filled_at_version_2_migrates_keeping_everything(fresh_pg_url: str) -> None:
    import asyncpg

    registry = load("postgres")
    conn = await asyncpg.connect(fresh_pg_url)
    try:
        await conn.execute(registry["schema.create_ledger"].sql)
        for migration in registry.migrations:
            if migration.version <= 2:
                await conn.execute(migration.script)
                await conn.execute(
                    "INSERT INTO threadstore_migrations VALUES ($1, $2, now())",
                    migration.version,
                    migration.name,
                )
        await conn.execute(_FILLED_AT_2)
    finally:
        await conn.close()

    async with await ThreadStore.create(fresh_pg_url) as store:
        assert await _applied_versions(store) == [m.version for m in registry.migrations]
        await background_done(store)  # the store indexes what the migrations queued, unasked
        assert await store.engine.fetchval("SELECT count(*) FROM message_text_pending") == 0
        thread = await store.get("t1")
        assert thread is not None
        assert (thread.title, thread.attributes, thread.source) == (
            "Refund for order 77",
            {"customer": "c7", "tier": 2},
            {"name": "web", "user": "u7"},
        )
        assert thread.platforms == {"slack": {"channel": "C77", "ts": "1.5"}}
        assert thread.created_at.isoformat() == "2024-01-02T03:04:05.123456+00:00"
        assert thread.updated_at.isoformat() == "2024-02-03T04:05:06.654321+00:00"
        assert [(m.id, m.sequence, m.content) for m in thread.messages] == [
            ("m1", 1, "where is my refund?"),
            ("m2", 2, [{"type": "text", "text": "it is on its way"}]),
        ]
        assert [t.id for t in await store.list()] == ["t1", "t2"]

        def ids(threads: list[Thread]) -> list[str]:
            return [t.id for t in threads]

        # every search reads the migrated copy of the thread fields
        assert ids(await store.search_by_title("refund")) == ["t1"]
        assert ids(await store.search_by_content("on its way")) == ["t1"]
        assert ids(await store.find_by_attributes({"customer": "c7"})) == ["t1"]
        assert ids(await store.search_by_platform("slack", "C77")) == ["t1"]
        assert ids(await store.find_by_platform("slack", {"channel": "C77"})) == ["t1"]
        assert ids(await store.find_by_source("web", {"user": "u7"})) == ["t1"]
        assert (await store.get_by_alias("order-77")).id == "t1"  # type: ignore[union-attr]
        # version 4 queued every message for its words: full-text search finds them
        assert [h.message_id for h in await store.search("refund")] == ["m1"]
        assert [h.message_id for h in await store.search('"its way"')] == ["m2"]

        # and follows later changes of them
        thread.title = "Renamed"
        thread.platforms = {"slack": {"channel": "C78"}}
        thread.add_message(Message(role="user", content="thanks"))
        await store.save(thread)
        assert ids(await store.search_by_title("refund")) == []
        assert ids(await store.search_by_title("renamed")) == ["t1"]
        assert ids(await store.search_by_platform("slack", "C77")) == []
        assert ids(await store.search_by_platform("slack", "C78")) == ["t1"]


# A SQLite store filled at schema version 3, as that version's statements wrote it.
_SQLITE_FILLED_AT_3 = """
INSERT INTO threads (id, title, attributes, platforms, source, created_at, updated_at, last_sequence)
VALUES ('t1', 'Refund', '{"customer": "c7"}', '{}', NULL, '2024-01-02T03:04:05Z', '2024-01-02T03:04:05Z', 3);
INSERT INTO messages (id, thread_id, sequence, role, content, timestamp)
VALUES ('m1', 't1', 1, 'user', '"where is my refund?"', '2024-01-02T03:04:06Z'),
       ('m2', 't1', 2, 'assistant', '[{"type": "text", "text": "it is on its way"}]', '2024-01-02T03:04:07Z'),
       ('m3', 't1', 3, 'assistant', NULL, '2024-01-02T03:04:08Z');
"""


async def test_a_sqlite_store_filled_at_version_3_gets_its_messages_searchable(tmp_path: Path) -> None:
    import sqlite3

    registry = load("sqlite")
    path = tmp_path / "v3.db"
    conn = sqlite3.connect(path)
    conn.execute(registry["schema.create_ledger"].sql)
    for migration in registry.migrations:
        if migration.version <= 3:
            conn.executescript(migration.script)
            conn.execute(
                "INSERT INTO threadstore_migrations VALUES (?, ?, '2024-01-01T00:00:00Z')",
                (migration.version, migration.name),
            )
    conn.executescript(_SQLITE_FILLED_AT_3)
    conn.commit()
    conn.close()

    async with await ThreadStore.create(f"sqlite+aiosqlite:///{path}") as store:
        assert await _applied_versions(store) == [m.version for m in registry.migrations]
        await background_done(store)  # the store indexes what the migration queued, unasked
        rows = await store.engine.execute_fetchall(
            "SELECT (SELECT count(*) FROM message_words_pending),"
            " (SELECT count(*) FROM thread_titles_pending),"
            " (SELECT count(*) FROM message_words), (SELECT count(*) FROM thread_titles)"
        )
        assert list(rows) == [(0, 0, 2, 1)]
        assert [t.id for t in await store.search_by_title("refund")] == ["t1"]
        assert [t.id for t in await store.search_by_content("on its way")] == ["t1"]
        assert [h.message_id for h in await store.search("refund")] == ["m1"]
        assert [h.message_id for h in await store.search('"its way"')] == ["m2"]
        # version 9 indexed the attributes the file held
        indexed = await store.engine.execute_fetchall("SELECT * FROM thread_attribute_values")
        assert list(indexed) == [("t1", "customer", "c7")]
        assert [t.id for t in await store.find_by_attributes({"customer": "c7"})] == ["t1"]
        thread = await store.get("t1")
        assert thread is not None
        thread.messages[0].content = "changed"
        await store.save(thread)
        assert await store.search("refund") == []


async def _execute(url: str, statements: list[str]) -> None:
    if url.startswith("sqlite"):
        import aiosqlite

        async with aiosqlite.connect(url.split(":///", 1)[1]) as conn:
            for statement in statements:
                await conn.execute(statement)
            await conn.commit()
        return
    import asyncpg

    conn = await asyncpg.connect(url)
    try:
        for statement in statements:
            await conn.execute(statement)
    finally:
        await conn.close()


async def test_another_applications_threads_and_messages_tables_are_not_called_narrators(
    empty_url: str,
) -> None:
    """Unrelated tables named threads and messages were called a slide-narrator database."""
    await _execute(
        empty_url,
        [
            "CREATE TABLE threads (id text PRIMARY KEY, subject text)",
            "CREATE TABLE messages (id text PRIMARY KEY, body text)",
            "INSERT INTO threads VALUES ('x', 'theirs')",
        ],
    )
    with pytest.raises(SchemaVersionError, match="neither threadstore's nor slide-narrator's") as raised:
        await ThreadStore.create(empty_url)
    assert "adopt" not in str(raised.value)
    with pytest.raises(SchemaVersionError, match="neither"):  # the same when only migrating
        async with ThreadStore(empty_url) as store:
            await store.ping()
    await _execute(empty_url, ["INSERT INTO threads VALUES ('y', 'still theirs')"])  # untouched


@pytest.mark.pg
async def test_a_read_only_server_opens_a_migrated_database(fresh_pg_url: str) -> None:
    """default_transaction_read_only = on (as on a hot standby) made create() fail on a fully
    migrated database: the ledger's CREATE TABLE IF NOT EXISTS is a write."""
    async with await ThreadStore.create(fresh_pg_url) as store:
        thread = Thread(id="t", title="kept")
        thread.add_message(Message(role="user", content="indexed zebra"))
        await store.save(thread)
        assert [h.thread_id for h in await store.search("zebra")] == ["t"]
    database = fresh_pg_url.rsplit("/", 1)[1]
    await _execute(
        fresh_pg_url,
        [  # a message queued for the indexer, as a standby's primary leaves them
            "INSERT INTO message_text_pending (thread_id, message_id) SELECT thread_id, id FROM messages",
            f'ALTER DATABASE "{database}" SET default_transaction_read_only = on',
        ],
    )
    async with await ThreadStore.create(fresh_pg_url) as store:
        assert (await store.get("t") or Thread()).title == "kept"
        assert not (await store.schema_status()).pending
        assert await store.search_by_title("kept") != []
        # search cannot index the queue there: it answers from the index, as a read-only store
        assert [h.thread_id for h in await store.search("zebra")] == ["t"]


async def test_a_sqlite_store_indexed_at_version_4_gets_its_words_cut_anew(tmp_path: Path) -> None:
    """Migration 5 queues every message again, so words indexed by the older cutting (Thai runs
    as one word, NFD, İ) are cut anew: here a message whose words the queue no longer holds."""
    import sqlite3

    registry = load("sqlite")
    path = tmp_path / "v4.db"
    conn = sqlite3.connect(path)
    conn.execute(registry["schema.create_ledger"].sql)
    for migration in registry.migrations:
        if migration.version <= 4:
            conn.executescript(migration.script)
            conn.execute(
                "INSERT INTO threadstore_migrations VALUES (?, ?, '2024-01-01T00:00:00Z')",
                (migration.version, migration.name),
            )
    conn.executescript(
        """
        INSERT INTO threads (id, title, attributes, platforms, source, created_at, updated_at, last_sequence)
        VALUES ('t1', 'Thai', '{}', '{}', NULL, '2024-01-02T03:04:05Z', '2024-01-02T03:04:05Z', 1);
        INSERT INTO messages (id, thread_id, sequence, role, content, timestamp)
        VALUES ('m1', 't1', 1, 'user', '"สวัสดีครับ to İstanbul"', '2024-01-02T03:04:06Z');
        DELETE FROM message_words_pending;  -- as if indexed by the older cutting
        """
    )
    conn.commit()
    conn.close()

    async with await ThreadStore.create(f"sqlite+aiosqlite:///{path}") as store:
        assert await _applied_versions(store) == [m.version for m in registry.migrations]
        assert [h.message_id for h in await store.search("ครับ")] == ["m1"]
        assert [h.message_id for h in await store.search("istanbul")] == ["m1"]


# Rows as every earlier version stores them (the columns these tables have had since version 1).
_FILLED_BEFORE_THREAD_KEYS = [
    "INSERT INTO threads (id, title, attributes, platforms, created_at, updated_at, last_sequence)"
    " VALUES ('t1', 'One', '{}', '{}', '2024-01-02T03:04:05.123456+00:00',"
    " '2024-02-03T04:05:06.654321+00:00', 2),"
    " ('t2', 'Two', '{}', '{}', '2024-01-02T03:04:05+00:00', '2024-01-02T03:04:05+00:00', 1)",
    "INSERT INTO messages (id, thread_id, sequence, role, content, timestamp)"
    " VALUES ('m1', 't1', 1, 'user', '\"hello there\"', '2024-01-02T03:04:06.5+00:00'),"
    " ('m2', 't1', 2, 'assistant', '\"general kenobi\"', '2024-01-02T03:04:07+00:00'),"
    " ('m3', 't2', 1, 'user', '\"another\"', '2024-01-02T03:04:08+00:00')",
    "INSERT INTO thread_aliases (alias, thread_id, created_at)"
    " VALUES ('first', 't1', '2024-03-04T05:06:07.000001+00:00')",
]


@pytest.mark.parametrize("version", range(1, 7))
async def test_the_thread_keys_migration_keeps_every_row_from_each_earlier_version(
    empty_url: str, version: int
) -> None:
    """Migration 0007 re-keys messages by (thread_id, id) and the search side tables by thread:
    threads, messages, aliases and their times come through, and the search finds them."""
    dialect = "sqlite" if empty_url.startswith("sqlite") else "postgres"
    registry = load(dialect)
    url = empty_url
    statements = [registry["schema.create_ledger"].sql]
    for migration in registry.migrations:
        if migration.version <= version:
            statements.append(migration.script)
            statements.append(
                f"INSERT INTO threadstore_migrations VALUES ({migration.version}, '{migration.name}',"
                " '2024-01-01T00:00:00+00:00')"
            )
    if dialect == "sqlite":
        import sqlite3

        conn = sqlite3.connect(url.split(":///", 1)[1])
        for statement in statements:
            conn.executescript(statement)
        conn.commit()
        conn.close()
        await _execute(url, [s.replace("+00:00", "Z") for s in _FILLED_BEFORE_THREAD_KEYS])
    else:
        # as that version's writes queue them for the indexer (version 4 queues every message)
        queued = ["INSERT INTO message_text_pending (message_id) SELECT id FROM messages"] * (version >= 4)
        await _execute(url, [*statements, *_FILLED_BEFORE_THREAD_KEYS, *queued])

    async with await ThreadStore.create(url) as store:
        assert await _applied_versions(store) == [m.version for m in registry.migrations]
        one = await store.get("t1")
        assert one is not None
        assert (one.title, one.created_at.isoformat(), one.updated_at.isoformat()) == (
            "One",
            "2024-01-02T03:04:05.123456+00:00",
            "2024-02-03T04:05:06.654321+00:00",
        )
        assert [(m.id, m.sequence, m.content, m.timestamp.isoformat()) for m in one.messages] == [
            ("m1", 1, "hello there", "2024-01-02T03:04:06.500000+00:00"),
            ("m2", 2, "general kenobi", "2024-01-02T03:04:07+00:00"),
        ]
        assert [m.id for m in (await store.get("t2") or Thread()).messages] == ["m3"]
        assert (await store.get_by_alias("first") or Thread()).id == "t1"
        assert await store.get_thread_aliases("t1") == ["first"]
        assert (await store.get_usage_stats())["total_messages"] == 3
        await background_done(store)
        assert [h.message_id for h in await store.search("kenobi")] == ["m2"]
        # keyed by thread now: t2 may hold a message of id m1 too
        await store.append("t2", Message(role="user", content="m1 again", id="m1"))
        assert [m.id for m in (await store.get("t2") or Thread()).messages] == ["m3", "m1"]
        assert (await store.get_thread_by_message_id("m1") or Thread()).id == "t1"


# Back to version 7: message_text / message_words without their timestamps (migration 0008).
_BEFORE_RECENT_MATCHES = {
    "postgres": [
        "DROP INDEX message_text_recent_idx",
        "ALTER TABLE message_text DROP COLUMN stamp",
        "DELETE FROM threadstore_migrations WHERE version = 8",
    ],
    "sqlite": [
        "DROP INDEX message_words_recent_idx",
        "ALTER TABLE message_words DROP COLUMN stamp",
        "DROP TRIGGER messages_words_updated",
        "CREATE TRIGGER messages_words_updated AFTER UPDATE OF content ON messages"
        " WHEN old.content IS NOT new.content"
        " BEGIN INSERT INTO message_words_pending (thread_id, message_id)"
        " VALUES (new.thread_id, new.id); END",
        "DELETE FROM threadstore_migrations WHERE version = 8",
    ],
}


async def test_the_recent_matches_migration_stamps_every_indexed_message(empty_url: str) -> None:
    """Migration 0008 copies each indexed message's timestamp beside its words: a store indexed
    at version 7 keeps every row, nothing is queued again, and search ranks the newest matches
    (fulltext.RANKED) at once."""
    dialect = "sqlite" if empty_url.startswith("sqlite") else "postgres"
    start = datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC)
    thread = Thread(id="t1", title="t")
    for i in range(fulltext.RANKED + 2):
        stamp = start + timedelta(seconds=i, microseconds=i % 2)  # with and without a fraction
        thread.add_message(Message(id=f"m{i:05d}", role="user", content=f"refund {i}", timestamp=stamp))
    async with await ThreadStore.create(empty_url) as store:
        await store.save(thread)
        await background_done(store)
    await _execute(empty_url, _BEFORE_RECENT_MATCHES[dialect])

    async with await ThreadStore.create(empty_url) as store:
        assert await _applied_versions(store) == [m.version for m in load(dialect).migrations]
        hits = await store.search("refund", limit=fulltext.RANKED + 2)
        assert sorted(hit.message_id for hit in hits) == [f"m{i:05d}" for i in range(2, fulltext.RANKED + 2)]
        assert [hit.message_id for hit in await store.search("1")] == ["m00001"]  # a rare word: found
        loaded = await store.get("t1")
        assert loaded is not None and loaded.messages == thread.messages
    queue, words = (
        ("message_text_pending", "message_text")
        if dialect == "postgres"
        else ("message_words_pending", "message_words")
    )
    assert await _value(empty_url, f"SELECT count(*) FROM {queue}") == 0  # nothing indexed again
    assert (
        await _value(empty_url, f"SELECT count(*) FROM {words} WHERE stamp IS NOT NULL")
        == fulltext.RANKED + 2
    )


async def _value(url: str, statement: str) -> object:
    if url.startswith("sqlite"):
        import aiosqlite

        async with aiosqlite.connect(url.split(":///", 1)[1]) as conn:
            rows = list(await conn.execute_fetchall(statement))
            return rows[0][0]
    import asyncpg

    conn = await asyncpg.connect(url)
    try:
        return await conn.fetchval(statement)
    finally:
        await conn.close()
