"""Adopting slide-narrator databases in place (issue 16), on the fixtures slide-narrator 6.4.0
wrote itself (tests/fixtures/narrator/make_fixtures.py): SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import hashlib
import json
import math
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

import threadstore
from threadstore import FileStore, Message, SchemaVersionError, ThreadStore, ThreadStoreError
from threadstore.adopt import PROBLEMS, AdoptionReport
from threadstore.config import SettingsKwargs

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "narrator"
FILES = FIXTURES / "files"  # narrator's FileStore base path when it wrote the fixtures
TEST_POOL: SettingsKwargs = {"pool_size": 1}


async def _load_dump(url: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(url)
    try:
        await conn.execute((FIXTURES / "narrator_postgres.sql").read_text(encoding="utf-8"))
    finally:
        await conn.close()


@pytest.fixture(params=["sqlite", "postgres"])
def dialect(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def narrator_url(dialect: str, request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh copy of the narrator database of ``dialect``."""
    if dialect == "sqlite":
        path = tmp_path / "narrator.db"
        shutil.copyfile(FIXTURES / "narrator.sqlite", path)
        return f"sqlite+aiosqlite:///{path}"
    url: str = request.getfixturevalue("fresh_pg_url")
    asyncio.run(_load_dump(url))
    return url


@pytest.fixture
def expected(dialect: str) -> dict[str, Any]:
    """Every thread as narrator read it back (NaN included: json reads it)."""
    data: dict[str, Any] = json.loads((FIXTURES / f"expected_{dialect}.json").read_text(encoding="utf-8"))
    return data


async def snapshot(url: str) -> Any:
    """Everything the database holds: the file's bytes (SQLite), or every relation and every
    row of narrator's tables (PostgreSQL)."""
    if url.startswith("sqlite"):
        path = Path(url.partition(":///")[2])
        return sorted(p.name for p in path.parent.iterdir()), path.read_bytes()
    import asyncpg

    conn = await asyncpg.connect(url)
    try:
        relations = await conn.fetch(
            "SELECT relname, relkind FROM pg_class WHERE relnamespace = 'public'::regnamespace ORDER BY 1"
        )
        rows = [
            await conn.fetchval("SELECT string_agg(t::text, E'\\n' ORDER BY t::text) FROM threads AS t"),
            await conn.fetchval("SELECT string_agg(m::text, E'\\n' ORDER BY m::text) FROM messages AS m"),
        ]
        return [tuple(r) for r in relations], rows
    finally:
        await conn.close()


def _dump(path: Path) -> list[str]:
    """The SQL text that recreates the SQLite database at ``path``."""
    import sqlite3

    conn = sqlite3.connect(path)
    try:
        return list(conn.iterdump())
    finally:
        conn.close()


def _ordered(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """narrator's messages in the order adoption numbers them: sequence, timestamp, id."""
    return sorted(
        messages, key=lambda m: (m["sequence"], datetime.fromisoformat(m["timestamp"]), m["id"].encode())
    )


def _without_nan(value: Any) -> Any:
    """``value`` with NaN as None: JSON has no NaN, so adoption reads it back as null."""
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {k: _without_nan(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_without_nan(v) for v in value]
    return value


async def assert_reads_as_narrator(store: ThreadStore, expected: dict[str, Any]) -> None:
    threads = {t.id: t for t in await store.list_recent()}
    assert sorted(threads) == sorted(expected)
    files = FileStore(FILES)
    for thread_id, want in expected.items():
        got = threads[thread_id]
        assert got.title == (want["title"] if want["title"] is not None else "Untitled Thread")
        assert got.attributes == want["attributes"]
        assert got.platforms == want["platforms"]
        assert got.source is None
        assert got.created_at == datetime.fromisoformat(want["created_at"])
        assert got.updated_at == datetime.fromisoformat(want["updated_at"])
        assert [m.id for m in got.messages] == [m["id"] for m in _ordered(want["messages"])]
        for number, (message, wanted) in enumerate(
            zip(got.messages, _ordered(want["messages"]), strict=True), start=1
        ):
            assert message.sequence == number
            assert message.thread_id == thread_id
            assert message.timestamp == datetime.fromisoformat(wanted["timestamp"])
            for field in (
                "role",
                "turn",
                "content",
                "reasoning_content",
                "name",
                "tool_call_id",
                "tool_calls",
                "attributes",
                "source",
                "platforms",
                "reactions",
            ):
                assert getattr(message, field) == wanted[field], (thread_id, message.id, field)
            assert message.metrics == _without_nan(wanted["metrics"])
            assert len(message.attachments) == len(wanted["attachments"])
            for attachment, attached in zip(message.attachments, wanted["attachments"], strict=True):
                for field in (
                    "filename",
                    "mime_type",
                    "file_id",
                    "storage_path",
                    "storage_backend",
                    "status",
                ):
                    assert getattr(attachment, field) == attached[field]
                assert attachment.attributes == (attached["attributes"] or {})
                data = await attachment.get_content_bytes(files)
                assert hashlib.sha256(data).hexdigest() == attached["sha256"]


async def test_a_narrator_database_is_refused_unchanged(narrator_url: str) -> None:
    before = await snapshot(narrator_url)
    command = f"threadstore adopt {narrator_url}"
    with pytest.raises(SchemaVersionError, match="slide-narrator database") as raised:
        await ThreadStore.create(narrator_url, **TEST_POOL)
    assert command in str(raised.value)
    store = ThreadStore(narrator_url, migrate=False, **TEST_POOL)
    try:
        with pytest.raises(SchemaVersionError, match="slide-narrator database"):
            await store.schema_status()
    finally:
        await store.close()
    assert await snapshot(narrator_url) == before


async def test_adopted_threads_read_back_as_narrator_read_them(
    narrator_url: str, dialect: str, expected: dict[str, Any]
) -> None:
    report = await threadstore.adopt(narrator_url)
    assert isinstance(report, AdoptionReport) and not report.dry_run and not report.already_adopted
    assert report.threads == len(expected)
    assert report.messages == sum(len(t["messages"]) for t in expected.values())
    assert report.renumbered == 2  # the concurrent saves' repeated sequence 2: 1,2,2,3 -> 1,2,3,4
    repeated = [
        m["sequence"] for t in expected.values() if t["id"].startswith("t-concurrent") for m in t["messages"]
    ]
    assert sorted(repeated) == [1, 2, 2, 3]
    if dialect == "sqlite":
        assert report.backup == f"{narrator_url.partition(':///')[2]}.narrator-backup"
        assert _dump(Path(report.backup)) == _dump(FIXTURES / "narrator.sqlite")
    else:
        assert report.backup is None
    async with await ThreadStore.create(narrator_url, **TEST_POOL) as store:
        status = await store.schema_status()
        assert status.pending == [] and status.version == len(threadstore.queries.load(dialect).migrations)
        await assert_reads_as_narrator(store, expected)


async def test_the_report_lists_what_threadstore_would_refuse(narrator_url: str, dialect: str) -> None:
    report = await threadstore.adopt(narrator_url, dry_run=True)
    found = {(p.thread_id, p.field, p.kind) for p in report.problems}
    untitled = {("t-untitled", "title", "no_title")}
    if dialect == "postgres":  # PostgreSQL refused NUL and NaN to narrator, and jsonb took the floats
        assert found == untitled
        return
    assert found == untitled | {
        ("t-odd-values", "attributes", "float"),
        ("t-odd-values", "content", "nul"),
        ("t-odd-values", "metrics", "not_json"),
    }
    assert all(p.message_id for p in report.problems if p.field in ("content", "metrics"))
    assert all(PROBLEMS[p.kind] in str(p) for p in report.problems)
    await threadstore.adopt(narrator_url)
    async with await ThreadStore.create(narrator_url, **TEST_POOL) as store:
        odd = await store.get("t-odd-values")
        assert odd is not None
        assert odd.attributes == {"big": 1e16, "negative_zero": -0.0}
        assert odd.messages[0].content == "a NUL \x00 inside"
        assert odd.messages[1].metrics["timing"] == {"latency": None}
        with pytest.raises(ValueError, match="refused on every backend"):
            await store.save(odd)  # listed: threadstore keeps it readable but would not store it


async def test_a_dry_run_changes_nothing(narrator_url: str, expected: dict[str, Any]) -> None:
    before = await snapshot(narrator_url)
    report = await threadstore.adopt(narrator_url, dry_run=True)
    assert report.dry_run and not report.already_adopted and report.backup is None
    assert report.threads == len(expected)
    assert report.messages == sum(len(t["messages"]) for t in expected.values())
    assert report.renumbered == 2
    assert await snapshot(narrator_url) == before  # SQLite: byte for byte, and no backup file


async def test_a_dry_run_leaves_a_wal_database_as_it_was(tmp_path: Path) -> None:
    import sqlite3

    path = tmp_path / "narrator.db"
    shutil.copyfile(FIXTURES / "narrator.sqlite", path)
    sqlite3.connect(path).execute("PRAGMA journal_mode = WAL").connection.close()
    url = f"sqlite:///{path}"
    threads = len(json.loads((FIXTURES / "expected_sqlite.json").read_text(encoding="utf-8")))
    before = await snapshot(url)
    assert (await threadstore.adopt(url, dry_run=True)).threads == threads
    assert await snapshot(url) == before  # no -wal or -shm file left beside it either
    assert (await threadstore.adopt(url)).threads == threads


async def test_a_second_adoption_says_so_and_changes_nothing(narrator_url: str) -> None:
    await threadstore.adopt(narrator_url)
    after = await snapshot(narrator_url)
    for dry_run in (True, False):
        again = await threadstore.adopt(narrator_url, dry_run=dry_run)
        assert again.already_adopted and again.threads == 0 and again.problems == []
    assert await snapshot(narrator_url) == after


async def _block_a_later_migration(url: str) -> None:
    """Make the adoption fail part-way, in a migration after every row was copied and narrator's
    tables dropped: a table in the way of one migration 0004 (SQLite) or 0003 (PostgreSQL) creates."""
    if url.startswith("sqlite"):
        import sqlite3

        conn = sqlite3.connect(url.partition(":///")[2])
        conn.execute("CREATE TABLE message_words_pending (x)")
        conn.commit()
        conn.close()
        return
    import asyncpg

    pg = await asyncpg.connect(url)
    await pg.execute("CREATE TABLE thread_search (x int)")
    await pg.close()


async def test_a_failure_part_way_leaves_narrators_database_as_it_was(
    narrator_url: str, expected: dict[str, Any]
) -> None:
    await _block_a_later_migration(narrator_url)
    before = await snapshot(narrator_url)
    with pytest.raises(ThreadStoreError, match="nothing was changed") as raised:
        await threadstore.adopt(narrator_url)
    assert "migrations/000" in str(raised.value)
    assert await snapshot(narrator_url) == before  # SQLite: byte for byte, the backup removed
    with pytest.raises(SchemaVersionError, match="slide-narrator database"):
        await ThreadStore.create(narrator_url, **TEST_POOL)


# More narrator rows, so that an adoption lasts long enough to be killed part-way (test data only).
_BULK_SQLITE = [
    """
INSERT INTO threads
WITH RECURSIVE n (i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 3000)
SELECT 'bulk-' || i, 'Bulk ' || i, '{}', '{}', '2026-01-02 00:00:00.000000', '2026-01-02 00:00:00.000000'
  FROM n""",
    """
INSERT INTO messages
WITH RECURSIVE n (i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 3000),
               m (j) AS (SELECT 1 UNION ALL SELECT j + 1 FROM m WHERE j < 20)
SELECT 'bulk-' || i || '-' || j, 'bulk-' || i, j, j, 'user', 'bulk message ' || j, NULL, NULL, NULL,
       'null', '{}', '2026-01-02 00:00:00.000000', 'null', '{}', 'null', '{"model": null}', '{}'
  FROM n, m""",
]
_BULK_POSTGRES = [
    """
INSERT INTO threads
SELECT 'bulk-' || i, 'Bulk ' || i, '{}', '{}', '2026-01-02 00:00+00', '2026-01-02 00:00+00'
  FROM generate_series(1, 3000) AS i""",
    """
INSERT INTO messages
SELECT 'bulk-' || i || '-' || j, 'bulk-' || i, j, j, 'user', 'bulk message ' || j, NULL, NULL, NULL,
       'null', '{}', '2026-01-02 00:00+00', 'null', '{}', 'null', '{"model": null}', '{}'
  FROM generate_series(1, 3000) AS i, generate_series(1, 20) AS j""",
]
_ADOPT = "import asyncio, sys, threadstore; asyncio.run(threadstore.adopt(sys.argv[1]))"


async def _adoption_under_way(url: str, process: subprocess.Popen[str]) -> None:
    """Wait until the adoption in ``process`` holds its lock and has started converting."""
    import asyncpg

    for _ in range(600):
        assert process.poll() is None, process.communicate()
        if url.startswith("sqlite"):
            path = url.partition(":///")[2]
            # The backup is made first; the journal exists once the conversion writes.
            if Path(f"{path}.narrator-backup").exists() and Path(f"{path}-journal").exists():
                break
        else:
            conn = await asyncpg.connect(url)
            try:
                if await conn.fetchval(
                    "SELECT count(*) FROM pg_locks WHERE mode = 'AccessExclusiveLock' "
                    "AND granted AND pid <> pg_backend_pid()"
                ):
                    break
            finally:
                await conn.close()
        await asyncio.sleep(0.02)
    await asyncio.sleep(0.3)


async def test_an_adoption_killed_part_way_leaves_narrators_database_as_it_was(narrator_url: str) -> None:
    if narrator_url.startswith("sqlite"):
        import sqlite3

        path = Path(narrator_url.partition(":///")[2])
        conn = sqlite3.connect(path)
        for statement in _BULK_SQLITE:
            conn.execute(statement)
        conn.commit()
        conn.close()
        before: Any = _dump(path)
    else:
        import asyncpg

        pg = await asyncpg.connect(narrator_url)
        for statement in _BULK_POSTGRES:
            await pg.execute(statement)
        await pg.close()
        before = await snapshot(narrator_url)
    process = subprocess.Popen(
        [sys.executable, "-c", _ADOPT, narrator_url],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        await _adoption_under_way(narrator_url, process)
        assert process.poll() is None, "the adoption ended before it could be killed"
    finally:
        process.kill()
        process.communicate(timeout=60)
    if narrator_url.startswith("sqlite"):
        assert Path(f"{path}-journal").exists()  # killed while converting: a hot journal
        assert _dump(path) == before  # which the next connection rolls back
    else:
        assert await snapshot(narrator_url) == before  # waits for the server's rollback
    with pytest.raises(SchemaVersionError, match="slide-narrator database"):
        await ThreadStore.create(narrator_url, **TEST_POOL)


_LATE_THREAD = ("t-late", "Written while adopting", "{}", "{}")


async def test_adoption_waits_for_a_narrator_writer_and_keeps_its_rows(
    narrator_url: str, expected: dict[str, Any]
) -> None:
    """A narrator save under way when the adoption starts: the adoption waits for its commit (the
    write lock on SQLite, the table lock on PostgreSQL) and adopts what it wrote."""
    if narrator_url.startswith("sqlite"):
        import aiosqlite

        writer = await aiosqlite.connect(narrator_url.partition(":///")[2], isolation_level=None)
        await writer.execute("BEGIN IMMEDIATE")
        await writer.execute(
            "INSERT INTO threads VALUES (?, ?, ?, ?, '2026-01-06 08:00:00.000000', "
            "'2026-01-06 08:00:00.000000')",
            _LATE_THREAD,
        )
    else:
        import asyncpg

        writer = await asyncpg.connect(narrator_url)
        await writer.execute("BEGIN")
        await writer.execute(
            "INSERT INTO threads VALUES ($1, $2, $3, $4, '2026-01-06 08:00+00', '2026-01-06 08:00+00')",
            *_LATE_THREAD,
        )
    adoption = asyncio.create_task(threadstore.adopt(narrator_url))
    await asyncio.sleep(1.0)
    assert not adoption.done()
    await writer.execute("COMMIT")
    await writer.close()
    report = await asyncio.wait_for(adoption, 60)
    assert report.threads == len(expected) + 1
    async with await ThreadStore.create(narrator_url, **TEST_POOL) as store:
        late = await store.get("t-late")
        assert late is not None and late.title == "Written while adopting" and late.messages == []


async def test_adopted_data_works_like_any_other(narrator_url: str, expected: dict[str, Any]) -> None:
    await threadstore.adopt(narrator_url)
    async with await ThreadStore.create(narrator_url, **TEST_POOL) as store:
        support = await store.get("t-support")
        assert support is not None
        support.title = "Order #12345 (shipped)"
        support.add_message(Message(role="user", content="One more question about shipping"))
        await store.save(support)
        again = await store.get("t-support")
        assert again is not None and again.title == "Order #12345 (shipped)"
        assert [m.sequence for m in again.messages] == [1, 2, 3, 4, 5, 6]

        await store.append("t-concurrent-0", Message(role="assistant", content="appended after adoption"))
        concurrent = await store.get("t-concurrent-0")
        assert concurrent is not None
        assert [m.sequence for m in concurrent.messages] == [1, 2, 3, 4, 5]
        assert concurrent.messages[-1].content == "appended after adoption"

        hits = await store.search("shipping", limit=50)
        assert {h.thread_id for h in hits} == {"t-long", "t-support"}
        assert [t.id for t in await store.find_by_attributes({"customer": {"tier": "gold", "id": 42}})] == [
            "t-support"
        ]
        assert [t.id for t in await store.find_by_platform("slack", {"channel": "C123456"})] == ["t-support"]
        assert [t.id for t in await store.search_by_title("Legacy")] == ["t-legacy"]
        found = await store.find_messages_by_attribute("platforms.slack.ts", "1700000000.000100")
        assert [m.content for m in found] == ["Where is my order?"]
        tool = next(m for m in again.messages if m.role == "tool")
        owner = await store.get_thread_by_message_id(tool.id)
        assert owner is not None and owner.id == "t-support"

        await store.save_thread_alias("t-legacy", "legacy-alias")
        by_alias = await store.get_by_alias("legacy-alias")
        assert by_alias is not None and by_alias.id == "t-legacy"
        assert await store.get_thread_aliases("t-legacy") == ["legacy-alias"]

        empty = await store.get("t-empty")
        assert empty is not None and empty.messages == []
        empty.add_message(Message(role="user", content="first words"))
        await store.save(empty)

        stats = await store.get_usage_stats()
        messages = [m for t in expected.values() for m in t["messages"]]
        assert stats["total_threads"] == len(expected)
        assert stats["total_messages"] == len(messages) + 3
        by_model: dict[str, int] = {}
        for m in messages:
            if m["metrics"].get("model"):
                by_model[m["metrics"]["model"]] = (
                    by_model.get(m["metrics"]["model"], 0) + m["metrics"]["usage"]["total_tokens"]
                )
        assert {k: v["total_tokens"] for k, v in stats["total_tokens"]["by_model"].items()} == by_model
        assert stats["total_tokens"]["total"] == sum(by_model.values())

        assert await store.delete("t-long")
        assert await store.get("t-long") is None


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    environment = {
        k: v for k, v in os.environ.items() if not k.startswith(("THREADSTORE_", "NARRATOR_", "TYLER_"))
    }
    return subprocess.run(
        [sys.executable, "-m", "threadstore", *args],
        capture_output=True,
        text=True,
        env=environment,
        timeout=120,
    )


def test_the_cli_refuses_then_adopts(
    narrator_url: str, dialect: str, expected: dict[str, Any], tmp_path: Path
) -> None:
    for command in (
        ["status", narrator_url],
        ["migrate", narrator_url],
        ["init", narrator_url],
        ["export", narrator_url],
        ["copy", narrator_url, f"sqlite:///{tmp_path}/copy.db"],
        ["files", "gc", narrator_url, str(FILES)],
    ):
        refused = _cli(*command)
        assert refused.returncode == 1, refused.stderr
        assert "slide-narrator database" in refused.stderr
        assert f"threadstore adopt {narrator_url}" in refused.stderr
    before = asyncio.run(snapshot(narrator_url))
    dry = _cli("adopt", narrator_url, "--dry-run")
    assert dry.returncode == 0, dry.stderr
    messages = sum(len(t["messages"]) for t in expected.values())
    assert f"would be adopted: {len(expected)} threads, {messages} messages (2 renumbered)" in dry.stdout
    assert "problem: title of thread 't-untitled' was NULL" in dry.stdout
    assert asyncio.run(snapshot(narrator_url)) == before

    adopted = _cli("adopt", narrator_url)
    assert adopted.returncode == 0, adopted.stderr
    assert f"adopted {len(expected)} threads, {messages} messages" in adopted.stdout
    if dialect == "sqlite":
        assert f"backup: {narrator_url.partition(':///')[2]}.narrator-backup" in adopted.stdout

    again = _cli("adopt", narrator_url)
    assert again.returncode == 0, again.stderr
    assert "already a threadstore database, nothing to adopt" in again.stdout
    status = _cli("status", narrator_url)
    assert status.returncode == 0 and f"threads:  {len(expected)}" in status.stdout


def test_the_cli_names_what_is_not_a_narrator_database(tmp_path: Path) -> None:
    missing = _cli("adopt", f"sqlite:///{tmp_path}/none.db")
    assert missing.returncode == 1 and "there is no SQLite database" in missing.stderr
    assert not (tmp_path / "none.db").exists()
    other = tmp_path / "other.db"
    import sqlite3

    sqlite3.connect(other).execute("CREATE TABLE notes (x)").connection.close()
    refused = _cli("adopt", f"sqlite:///{other}")
    assert refused.returncode == 1 and "nothing to adopt" in refused.stderr
    memory = _cli("adopt", "sqlite:///:memory:")
    assert memory.returncode == 2


@pytest.fixture
def _no_environment(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for name in list(os.environ):
        if name.startswith(("THREADSTORE_", "NARRATOR_", "TYLER_")):
            monkeypatch.delenv(name)
    yield


@pytest.mark.usefixtures("_no_environment")
async def test_adopt_needs_a_database_url() -> None:
    with pytest.raises(ValueError, match="SQLite file or a PostgreSQL database"):
        await threadstore.adopt(None)
