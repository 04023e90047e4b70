"""A real Citus cluster (a coordinator and two workers of the module's own, started once): a
store created with distributed=True shards every table by thread, each thread's reads and writes
run on one worker, `threadstore distribute` converts a store in place keeping every row, and the
contract suite's per-thread behaviour holds on the distributed store.

Which part of the contract suite runs here: the tests of the modules imported below (saves,
appends, gets, pages, pops, prunes, deletes, aliases, and what fans out across shards: thread
lists, the searches, statistics, export, import and copy, retention) that take only ``store``,
with the module's ``store`` fixture, a distributed store on the cluster: about 510 tests, 14
minutes on 2 shared cores, so `make test` runs those of test_pop_and_create only, with
test_what_fans_out_answers_as_one_node_does, and `make test-citus` (run by .ci/run) all of them
(THREADSTORE_CITUS_CONTRACT=1).
"""

from __future__ import annotations

import inspect
import json
import os
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import msgspec
import pytest

from tests.conftest import TEST_POOL
from tests.contract import (
    test_aliases,
    test_bounded,
    test_pop_and_create,
    test_reads,
    test_save,
    test_search,
    test_stats,
    test_transfer,
)
from tests.helpers import user
from tests.reliability.support import citus_cluster
from threadstore import ConfigurationError, Message, Thread, ThreadStore
from threadstore.queries import load

pytestmark = pytest.mark.pg


def _contract_tests() -> dict[str, Any]:
    """The per-thread tests of the contract modules that take only ``store`` (and their own
    parameters), to run here on the distributed store."""
    chosen: dict[str, Any] = {}
    modules = [test_save, test_reads, test_bounded, test_pop_and_create, test_aliases, test_search]
    modules += [test_stats, test_transfer]
    if os.environ.get("THREADSTORE_CITUS_CONTRACT") != "1":
        modules = [test_pop_and_create]
    for module in modules:
        for name, test in vars(module).items():
            if not name.startswith("test_") or not callable(test):
                continue
            parametrized = {
                arg.strip()
                for mark in getattr(test, "pytestmark", [])
                if mark.name == "parametrize"
                for arg in (mark.args[0].split(",") if isinstance(mark.args[0], str) else mark.args[0])
            }
            if set(inspect.signature(test).parameters) <= {"store", *parametrized}:
                chosen[name] = test
    return chosen


globals().update(_contract_tests())

_TABLES = "threads, messages, thread_search, message_text, message_text_pending, thread_aliases"


@pytest.fixture(scope="module")
def citus_url() -> Iterator[str]:
    """A Citus coordinator with two workers, for the whole module."""
    with citus_cluster(workers=2) as url:
        yield url


@pytest.fixture
def store_url(citus_url: str) -> str:
    return citus_url


@pytest.fixture
async def store(store_url: str) -> AsyncIterator[ThreadStore]:
    """An empty distributed store on the cluster (distributed on first use)."""
    async with await ThreadStore.create(store_url, distributed=True, pool_size=1) as opened:
        await opened.engine.execute(f"TRUNCATE {_TABLES}")
        yield opened


async def _two_phase_commits(conn: asyncpg.Connection) -> int:
    """Two-phase commits the coordinator recorded (the cluster never clears them)."""
    count: int = await conn.fetchval("SELECT count(*) FROM pg_dist_transaction")
    return count


async def _reset(url: str) -> None:
    """No threadstore schema left on the cluster."""
    conn = await asyncpg.connect(url)
    try:
        await conn.execute(
            f"DROP TABLE IF EXISTS {_TABLES}, threadstore_migrations CASCADE;"
            "DROP FUNCTION IF EXISTS threadstore_content_text(jsonb), threadstore_platform_values(jsonb),"
            " threadstore_nested(text[], jsonb)"
        )
    finally:
        await conn.close()


async def test_distributed_on_a_server_without_citus_is_a_configuration_error(fresh_pg_url: str) -> None:
    with pytest.raises(ConfigurationError, match=r"needs a Citus coordinator.*no citus extension"):
        await ThreadStore.create(fresh_pg_url, distributed=True)
    conn = await asyncpg.connect(fresh_pg_url)
    try:  # nothing was changed
        assert await conn.fetchval("SELECT to_regclass('threadstore_migrations')") is None
    finally:
        await conn.close()


async def test_distribute_converts_a_store_of_1000_threads_in_place_keeping_every_row(
    citus_url: str,
) -> None:
    await _reset(citus_url)
    checksums = """
        SELECT (SELECT md5(string_agg(t::text, '|' ORDER BY t.id)) FROM threads AS t),
               (SELECT md5(string_agg(m::text, '|' ORDER BY m.thread_id, m.id)) FROM messages AS m),
               (SELECT md5(string_agg(a::text, '|' ORDER BY a.alias)) FROM thread_aliases AS a),
               (SELECT md5(string_agg(s::text, '|' ORDER BY s.thread_id)) FROM thread_search AS s),
               (SELECT count(*) FROM messages), (SELECT count(*) FROM thread_aliases)
        """
    async with await ThreadStore.create(citus_url, **TEST_POOL) as plain:  # one node's tables
        threads = []
        for i in range(1000):
            thread = Thread(id=f"t{i:04d}", title=f"thread {i}", attributes={"n": i})
            for k in range(3):
                thread.add_message(user(f"message {k} of {i}"))
            threads.append(thread)
        await plain.import_threads(threads)
        for i in range(0, 1000, 10):
            await plain.save_thread_alias(f"t{i:04d}", f"alias-{i}")
        before = await plain.engine.fetchrow(checksums)
    assert tuple(before)[4:] == (3000, 100)

    done = subprocess.run(
        [sys.executable, "-m", "threadstore", "distribute", citus_url],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    assert "distributed by thread (1,000 threads, 3,000 messages)" in done.stdout

    async with await ThreadStore.create(citus_url, distributed=True, pool_size=1) as store:
        assert await store.engine.fetchrow(checksums) == before
        distributed = await store.engine.fetch(
            "SELECT logicalrelid::text, colocationid FROM pg_dist_partition ORDER BY 1"
        )
        groups = {name: group for name, group in distributed}
        assert sorted(groups) == sorted(_TABLES.split(", "))
        by_thread = {groups[name] for name in groups if name != "thread_aliases"}
        assert len(by_thread) == 1  # co-located: each thread's rows on one worker
        workers = await store.engine.fetchval(
            "SELECT count(DISTINCT (nodename, nodeport)) FROM citus_shards"
            " WHERE table_name = 'threads'::regclass"
        )
        assert workers == 2
        one = await store.get("t0042")
        assert one is not None and [m.content for m in one.messages] == [
            f"message {k} of 42" for k in range(3)
        ]
        assert (await store.get_by_alias("alias-420") or Thread()).id == "t0420"
        again = subprocess.run(  # distributed already: nothing to do
            [sys.executable, "-m", "threadstore", "distribute", citus_url],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert again.returncode == 0, again.stderr
        assert await store.engine.fetchrow(checksums) == before


def _explained(plan: list[Any]) -> str:
    return "\n".join(row[0] for row in plan)


async def test_each_threads_reads_and_delete_run_on_one_worker(store: ThreadStore) -> None:
    """EXPLAIN of a thread's reads and its delete: one task, on one worker."""
    thread = Thread(id="t1")
    for k in range(5):
        thread.add_message(user(f"m{k}"))
    await store.save(thread)
    registry = load("postgres")
    statements: dict[str, dict[str, Any]] = {
        "threads.get": {"thread_id": "t1"},
        "bounded.get_messages_before": {"thread_id": "t1", "before": 2**31, "limit": 2},
        "bounded.get_messages_after": {"thread_id": "t1", "after": 1, "before": 2**31, "limit": 2},
        "threads.delete": {"thread_id": "t1"},
        "bounded.prune": {"thread_id": "t1", "keep_last": 2},
    }
    async with store.engine.acquire() as conn:
        for name, params in statements.items():
            query = registry[name]
            sql = query.sql  # the values written in, as a client's one-off statement has them
            for number in range(len(query.params), 0, -1):
                sql = sql.replace(
                    f"${number}", json.dumps(params[query.params[number - 1]]).replace('"', "'")
                )
            plan = _explained(await conn.fetch(f"EXPLAIN {sql}"))
            assert "Task Count: 1" in plan, f"{name}:\n{plan}"
            assert "Distributed Subplan" not in plan, f"{name}:\n{plan}"


async def test_reads_prunes_and_deletes_of_a_thread_need_no_two_phase_commit(store: ThreadStore) -> None:
    thread = Thread(id="t1")
    for k in range(5):
        thread.add_message(user(f"m{k}"))
    await store.save(thread)
    async with store.engine.acquire() as conn:
        before = await _two_phase_commits(conn)
    assert (await store.get("t1") or Thread()).messages
    await store.get_messages("t1", limit=2)
    await store.prune_messages("t1", keep_last=3)
    async with store.engine.acquire() as conn:
        assert await _two_phase_commits(conn) == before


async def test_ids_from_outside_repeat_across_threads_on_citus(store: ThreadStore) -> None:
    """The same message id in two threads on two shards: two messages, and the lookup by id
    (which asks every shard) names the first thread in id order."""
    for thread_id in ("b", "a"):
        await store.save(Thread(id=thread_id, messages=[Message(role="user", content=thread_id, id="m")]))
    assert [m.content for m in (await store.get("a") or Thread()).messages] == ["a"]
    assert [m.content for m in (await store.get("b") or Thread()).messages] == ["b"]
    assert (await store.get_thread_by_message_id("m") or Thread()).id == "a"
    assert [t.id for t in await store.list()] == ["a", "b"]
    await store.save_thread_alias("a", "alias")
    assert await store.delete("a")
    assert await store.get_by_alias("alias") is None
    assert await store.get_thread_aliases("a") == []
    assert (await store.get_thread_by_message_id("m") or Thread()).id == "b"


async def _remote_commands(url: str, name: str, params: dict[str, Any]) -> list[str]:
    """The commands the coordinator sent the workers for the statement ``name``, from
    citus.log_remote_commands of a session of its own (exact, unlike the cluster's counter of
    two-phase commits, which other sessions' indexers move)."""
    query = load("postgres")[name]
    conn = await asyncpg.connect(url)
    sent: list[str] = []
    conn.add_log_listener(lambda _, message: sent.append(message.message))
    await conn.execute("SET citus.log_remote_commands = on; SET client_min_messages = log")
    try:
        await conn.fetch(query.sql, *query.args(params))
    finally:
        await conn.close()
    return [m for m in sent if m.startswith("issuing")]


_DOC = json.dumps(
    [
        {"id": "m1", "role": "user", "content": "hi", "timestamp": "2024-01-01T00:00:00Z",
         "attributes": {}, "platforms": {}, "attachments": [], "metrics": {}, "reactions": {}}
    ]
)  # fmt: skip


def _one_call(issued: list[str], function: str) -> None:
    """``issued`` is one call of ``function`` sent whole to a worker, committed in one phase."""
    assert len(issued) == 1 and function in issued[0], issued
    assert not [m for m in issued if "PREPARE TRANSACTION" in m]


async def test_an_append_commits_on_one_worker_without_two_phase_commit(
    store: ThreadStore, citus_url: str
) -> None:
    """append on a distributed store: one call of a function distributed by thread, sent whole
    to the thread's worker (one remote command) and committed there in one phase."""
    await store.save(Thread(id="w1", messages=[user("first")]))
    now = datetime.now(UTC)
    params: dict[str, Any] = {"thread_id": "w1", "updated_at": now, "count": 1, "messages": _DOC}
    unused = dict.fromkeys(["title", "attributes", "platforms", "source", "platform_values", "created_at"])
    call = {**params, **unused, "create": False, "updated_at": now.isoformat()}
    _one_call(await _remote_commands(citus_url, "postgres.citus_append", call), "threadstore_append")
    bare = await _remote_commands(
        citus_url, "postgres.append", {**params, "messages": _DOC.replace("m1", "m2")}
    )
    assert [m for m in bare if "PREPARE TRANSACTION" in m]  # what the function spares
    thread = await store.get("w1")
    assert thread is not None and [(m.id, m.sequence) for m in thread.messages][1:] == [("m1", 2), ("m2", 3)]


async def test_each_threads_saves_commit_on_one_worker_without_two_phase_commit(
    store: ThreadStore, citus_url: str
) -> None:
    """save (a new thread, messages added, an edit and a removal), append(create=True) and
    pop_message on a distributed store: each one call of a function distributed by thread
    (postgres.citus_functions), sent whole to the thread's worker and committed there in one
    phase, where the plain statements commit in two."""
    now = datetime.now(UTC).isoformat()
    thread: dict[str, Any] = {"title": "t", "attributes": "{}", "platforms": "{}", "source": None}
    thread["platform_values"] = "{}"
    save: dict[str, Any] = {
        **thread,
        "created_at": now,
        "updated_at": now,
        "edited": "[]",
        "removed": [],
        "synced": False,
    }
    _one_call(
        await _remote_commands(citus_url, "postgres.citus_save", {**save, "thread_id": "w1", "new": _DOC}),
        "threadstore_save",
    )
    more = _DOC.replace("m1", "m2")
    synced = {**save, "thread_id": "w1", "synced": True}
    _one_call(
        await _remote_commands(citus_url, "postgres.citus_save", {**synced, "new": more}), "threadstore_save"
    )
    edit = {**synced, "new": "[]", "edited": _DOC.replace('"hi"', '"edited"'), "removed": ["m2"]}
    _one_call(await _remote_commands(citus_url, "postgres.citus_save", edit), "threadstore_save")
    creating = {**thread, "create": True, "created_at": now, "updated_at": now, "count": 1}
    creating.update(thread_id="w2", messages=_DOC)
    _one_call(await _remote_commands(citus_url, "postgres.citus_append", creating), "threadstore_append")
    popped = {"thread_id": "w2", "updated_at": now}
    _one_call(await _remote_commands(citus_url, "postgres.citus_pop", popped), "threadstore_pop")

    first = await store.get("w1")
    assert first is not None and [(m.id, m.sequence, m.content) for m in first.messages] == [
        ("m1", 1, "edited")
    ]
    second = await store.get("w2")
    assert second is not None and second.messages == [] and second.title == "t"
    bare = {**save, "thread_id": "w3", "new": _DOC.replace("m1", "m3")}
    assert [m for m in await _remote_commands(citus_url, "postgres.save", bare) if "PREPARE TRANSACTION" in m]


async def test_a_store_in_a_schema_of_its_own_runs_its_functions_there(citus_url: str) -> None:
    """schema= on a distributed store: the functions are created in that schema and keep its
    search_path, so the worker running a call finds the store's tables (not public's)."""
    async with await ThreadStore.create(citus_url, distributed=True, schema="chat_fn", pool_size=1) as store:
        thread = await store.save(Thread(id="s1", messages=[user("one")]))
        thread.add_message(user("two"))
        thread.messages[0].content = "one, edited"
        await store.save(thread)
        await store.append("s1", user("three"))
        await store.append("s2", user("first"), create=True)
        popped = await store.pop_message("s1")
        assert popped is not None and popped.content == "three"
        got = await store.get("s1")
        assert got is not None and [(m.sequence, m.content) for m in got.messages] == [
            (1, "one, edited"),
            (2, "two"),
        ]
        assert [m.content for m in (await store.get("s2") or Thread()).messages] == ["first"]
    conn = await asyncpg.connect(citus_url)
    try:
        placed = await conn.fetch(
            "SELECT p.proname, n.nspname FROM pg_proc AS p JOIN pg_namespace AS n ON n.oid = p.pronamespace"
            " JOIN pg_dist_object AS d ON d.classid = 'pg_proc'::regclass AND d.objid = p.oid"
            " WHERE p.proname IN ('threadstore_append', 'threadstore_save', 'threadstore_pop')"
            " AND n.nspname = 'chat_fn' AND d.colocationid IS NOT NULL"
        )
        assert sorted(row[0] for row in placed) == [
            "threadstore_append",
            "threadstore_pop",
            "threadstore_save",
        ]
        assert await conn.fetchval("SELECT count(*) FROM chat_fn.messages") == 3
    finally:
        await conn.execute("DROP SCHEMA chat_fn CASCADE")
        await conn.close()


async def _answers(store: ThreadStore) -> dict[str, Any]:
    """What every read across threads answers on ``store``, as plain data."""
    data = msgspec.to_builtins
    pages, cursor = [], None
    while True:
        page = await store.list_threads(limit=7, cursor=cursor)
        pages.append(data(page))
        if (cursor := page.next_cursor) is None:
            break
    answers = {
        "list_threads": pages,
        "list_threads_by_attributes": data(await store.list_threads(limit=5, attributes={"team": "a"})),
        "list": data(await store.list(limit=6, offset=3)),
        "list_recent": [t.id for t in await store.list_recent()],
        "search_by_title": data(await store.search_by_title("thread 1", limit=4, offset=1)),
        "search_by_title_with_attributes": data(
            await store.search_by_title("thread", 3, attributes={"team": "b"})
        ),
        "search_by_content": data(await store.search_by_content("word 7", limit=None)),
        "search_by_platform": data(await store.search_by_platform("slack", "C1")),
        "find_by_attributes": data(await store.find_by_attributes({"team": "a"}, limit=4, offset=2)),
        "find_by_platform": data(await store.find_by_platform("slack", {"channel": "C2"})),
        "find_by_source": data(await store.find_by_source("import", {"batch": 1})),
        "find_messages_by_attribute": data(await store.find_messages_by_attribute("tag", "odd", 5, offset=2)),
        "search": data(await store.search("word", limit=6, offset=2)),
        "search_in_threads": data(await store.search("seven", attributes={"team": "a"})),
        "get_thread_by_message_id": data(await store.get_thread_by_message_id("m-12-1")),
        "get_usage_stats": data(await store.get_usage_stats()),
        "export_threads": [  # alias times are each store's own
            [{**data(record), "aliases": [a.alias for a in record.aliases]} for record in page]
            async for page in store.export_threads(page_size=8, after="t05")
        ],
        "delete_threads_dry_run": await store.delete_threads(timedelta(days=1), {"team": "b"}, dry_run=True),
    }
    answers["delete_threads"] = await store.delete_threads(timedelta(days=1), {"team": "b"}, batch_size=3)
    answers["after_delete"] = [t.id for t in await store.list_recent()]
    answers["aliases_after_delete"] = [
        await store.get_by_alias(f"alias-{i}") is None for i in range(0, 30, 3)
    ]
    return answers


async def test_what_fans_out_answers_as_one_node_does(store: ThreadStore, fresh_pg_url: str) -> None:
    """Lists, searches, lookups by message id, statistics, export and retention on the
    distributed store give what one plain PostgreSQL node gives for the same threads (imported
    into both with their times; several threads share an updated_at, so ties are broken by id)."""
    start = datetime(2024, 1, 1, tzinfo=UTC)
    threads = []
    for i in range(30):
        at = start + timedelta(hours=i // 3)
        thread = Thread(
            id=f"t{i:02d}",
            title=f"thread {i}",
            attributes={"team": "ab"[i % 2], "n": i},
            platforms={"slack": {"channel": f"C{i % 3}"}},
            source={"name": "import", "batch": i % 4},
            created_at=at,
            updated_at=at,
        )
        for k in range(3):
            message = user(f"word {i + k} seven" if k == 1 else f"word {i + k}")
            message.id, message.timestamp = f"m-{i}-{k}", at
            message.attributes = {"tag": "odd" if (i + k) % 2 else "even"}
            message.metrics = {"model": "gpt", "usage": {"total_tokens": i + k}}
            thread.messages.append(message)
        threads.append(thread)
    async with await ThreadStore.create(fresh_pg_url, **TEST_POOL) as plain:
        for target in (plain, store):
            await target.import_threads(threads)
            for i in range(0, 30, 3):
                await target.save_thread_alias(f"t{i:02d}", f"alias-{i}")
        expected = await _answers(plain)
    answers = await _answers(store)
    for name, answer in expected.items():
        assert answers[name] == answer, name
    assert expected["delete_threads"] == 15 and len(expected["after_delete"]) == 15
