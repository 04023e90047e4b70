"""Probe (issue 28, measurement only): what would bring reads to <= 1.3x the fair floor?

    python -m bench.probe_reads [--rounds 15] [--batch 10] [--skip-long] [--skip-sqlite]

On the real schema threadstore creates (a fresh PostgreSQL database, a SQLite file), it saves
threads of 10 / 100 / 1,000 messages (bench/data.py's content, the same the floor stores) and
times, interleaved in rounds that start with a different side each time, medians of the wall time
and client CPU per operation (time.process_time) of:

- ``store``: the store's own ``get`` / ``list`` / ``get(last=50)`` (today's SQL and decode);
- ``floor``: bench/minimal.py's fair floor on its own database or file;
- alternatives that keep one round trip, run on a pool with the store's own codecs, each decoded
  with the store's decoder into a Thread that must encode exactly as ``store.get``'s does
  (checked before timing, also on a thread with tool calls, content parts and attributes).

Per-message stored documents live in scratch copies of ``messages`` with a ``doc`` column filled
by UPDATE (text, json or jsonb). Server time is the median ``Execution Time`` of EXPLAIN ANALYZE
(TIMING OFF): it covers building the JSON but not the output functions of binary rows. Write
cost of a stored document: an INSERT of 10 rows / 1 row into a scratch table with the doc and
without it, plus the client's encoding of the doc, beside the store's save / append.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any

import msgspec

from bench import data
from bench.minimal import PG_GET, PG_LIST, MinimalPgFloor, MinimalSqliteFloor
from bench.run import DEFAULT_PG, pg_database
from threadstore import Message, Thread, ThreadStore
from threadstore import documents as docs_mod
from threadstore.backends.postgres import pool as pg_pool
from threadstore.backends.sqlite import documents as sq_docs
from threadstore.models import decoding_stored

_encode = msgspec.json.Encoder().encode
decode_thread = docs_mod.decode_thread
decode_threads = docs_mod.decode_threads
# Epoch-number times: msgspec reads a datetime from a number only when not strict.
decode_thread_lax = decoding_stored(msgspec.json.Decoder(Thread, strict=False).decode)

Op = Callable[[], Awaitable[Any]]

COLUMNS = (
    "id, thread_id, sequence, turn, role, content, reasoning_content, name, tool_call_id, "
    "tool_calls, attributes, timestamp, source, platforms, attachments, metrics, reactions"
)
_BUILD = (
    "json_build_object('id', m.id, 'thread_id', m.thread_id, 'sequence', m.sequence, "
    "'turn', m.turn, 'role', m.role, 'content', m.content, "
    "'reasoning_content', m.reasoning_content, 'name', m.name, 'tool_call_id', m.tool_call_id, "
    "'tool_calls', m.tool_calls, 'attributes', m.attributes, 'timestamp', {ts}, "
    "'source', m.source, 'platforms', m.platforms, 'attachments', m.attachments, "
    "'metrics', m.metrics, 'reactions', m.reactions)"
)
BUILD = _BUILD.format(ts="m.timestamp")
BUILD_EPOCH = _BUILD.format(ts="extract(epoch FROM m.timestamp)")

# -- PostgreSQL get variants: SQL of one round trip and how its row becomes a Thread ---------------

TODAY = """SELECT row_to_json(t),
       (SELECT json_agg(m ORDER BY m.sequence) FROM messages AS m WHERE m.thread_id = $1)
  FROM threads AS t WHERE t.id = $1"""
BUILD_OBJECT = f"""SELECT row_to_json(t),
       (SELECT json_agg({BUILD} ORDER BY m.sequence) FROM messages AS m WHERE m.thread_id = $1)
  FROM threads AS t WHERE t.id = $1"""
JSONB_AGG = """SELECT row_to_json(t),
       (SELECT jsonb_agg(m ORDER BY m.sequence) FROM messages AS m WHERE m.thread_id = $1)
  FROM threads AS t WHERE t.id = $1"""
EPOCH_TIMES = f"""SELECT row_to_json(t),
       (SELECT json_agg({BUILD_EPOCH} ORDER BY m.sequence) FROM messages AS m WHERE m.thread_id = $1)
  FROM threads AS t WHERE t.id = $1"""
DOC_TEXT = """SELECT row_to_json(t),
       (SELECT '[' || string_agg(m.doc, ',' ORDER BY m.sequence) || ']'
          FROM probe_msg_text AS m WHERE m.thread_id = $1)
  FROM threads AS t WHERE t.id = $1"""
DOC_JSON = """SELECT row_to_json(t),
       (SELECT json_agg(m.doc ORDER BY m.sequence) FROM probe_msg_json AS m WHERE m.thread_id = $1)
  FROM threads AS t WHERE t.id = $1"""
DOC_JSONB_TEXT = """SELECT row_to_json(t),
       (SELECT '[' || string_agg(m.doc::text, ',' ORDER BY m.sequence) || ']'
          FROM probe_msg_jsonb AS m WHERE m.thread_id = $1)
  FROM threads AS t WHERE t.id = $1"""
# A stored doc without the keys a renumbering or a move rewrites (thread_id, sequence), which the
# read splices back in: such a doc changes only when the message does.
DOC_SPLICED = """SELECT row_to_json(t),
       (SELECT '[' || string_agg('{"thread_id":' || to_json(m.thread_id) || ',"sequence":' || m.sequence
                                 || ',' || substr(m.doc, 2), ',' ORDER BY m.sequence) || ']'
          FROM probe_msg_keyless AS m WHERE m.thread_id = $1)
  FROM threads AS t WHERE t.id = $1"""
# Binary rows: the thread's JSON object first, then one row of columns per message.
ROWS = f"""SELECT row_to_json(t), NULL::text AS {COLUMNS.replace(", ", ", NULL AS ")}
  FROM threads AS t WHERE t.id = $1
UNION ALL
SELECT * FROM (SELECT NULL::json, {COLUMNS} FROM messages WHERE thread_id = $1 ORDER BY sequence) AS m"""

# list 20 (as threads.list_recent) and the last 50 (as bounded.get_messages_before)
LIST_TODAY = """SELECT (SELECT row_to_json(t) FROM threads AS t WHERE t.id = page.id),
       (SELECT json_agg(m ORDER BY m.sequence) FROM messages AS m WHERE m.thread_id = page.id)
  FROM (SELECT id, updated_at FROM threads ORDER BY updated_at DESC, id DESC LIMIT $1) AS page
 ORDER BY page.updated_at DESC, page.id DESC"""
LIST_DOC_TEXT = """SELECT (SELECT row_to_json(t) FROM threads AS t WHERE t.id = page.id),
       (SELECT '[' || string_agg(m.doc, ',' ORDER BY m.sequence) || ']'
          FROM probe_msg_text AS m WHERE m.thread_id = page.id)
  FROM (SELECT id, updated_at FROM threads ORDER BY updated_at DESC, id DESC LIMIT $1) AS page
 ORDER BY page.updated_at DESC, page.id DESC"""
LIST_BUILD = f"""SELECT (SELECT row_to_json(t) FROM threads AS t WHERE t.id = page.id),
       (SELECT json_agg({BUILD} ORDER BY m.sequence) FROM messages AS m WHERE m.thread_id = page.id)
  FROM (SELECT id, updated_at FROM threads ORDER BY updated_at DESC, id DESC LIMIT $1) AS page
 ORDER BY page.updated_at DESC, page.id DESC"""
LAST_TODAY = """SELECT row_to_json(t),
       (SELECT json_agg(page.m ORDER BY (page.m).sequence)
          FROM (SELECT m FROM messages AS m WHERE m.thread_id = $1
                 ORDER BY m.sequence DESC LIMIT $2) AS page)
  FROM threads AS t WHERE t.id = $1"""
LAST_BUILD = f"""SELECT row_to_json(t),
       (SELECT json_agg(page.doc ORDER BY page.sequence)
          FROM (SELECT m.sequence, {BUILD} AS doc FROM messages AS m WHERE m.thread_id = $1
                 ORDER BY m.sequence DESC LIMIT $2) AS page)
  FROM threads AS t WHERE t.id = $1"""
LAST_DOC_TEXT = """SELECT row_to_json(t),
       (SELECT '[' || string_agg(page.doc, ',' ORDER BY page.sequence) || ']'
          FROM (SELECT m.sequence, m.doc FROM probe_msg_text AS m WHERE m.thread_id = $1
                 ORDER BY m.sequence DESC LIMIT $2) AS page)
  FROM threads AS t WHERE t.id = $1"""


def _joined(thread: Any, messages: Any) -> bytes:
    """As the backend's _joined; a text column (str) is encoded first."""
    if isinstance(messages, str):
        messages = messages.encode()
    return b"".join((thread[:-1], b', "messages" : ', messages or b"[]", b"}"))


def json_doc(row: Any) -> Thread:
    return decode_thread(_joined(row[0], row[1]))


def json_doc_lax(row: Any) -> Thread:
    return decode_thread_lax(_joined(row[0], row[1]))


def json_docs(rows: Any) -> list[Thread]:
    return decode_threads(b"[" + b",".join([_joined(r[0], r[1]) for r in rows]) + b"]")


_q = msgspec.json.Encoder().encode


def _opt(value: Any) -> bytes:
    return b"null" if value is None else value


def rows_assembled(rows: Any) -> Thread:
    """Binary rows joined client-side into the thread's JSON document (as SQLite's backend does),
    JSON columns passed through as the bytes the server sent, then one typed decode."""
    head, *messages = rows
    parts = [head[0][:-1], b', "messages" : [']
    comma = b""
    for r in messages:
        parts.append(
            b"".join(
                (
                    comma,
                    b'{"id":',
                    _q(r[1]),
                    b',"thread_id":',
                    _q(r[2]),
                    b',"sequence":',
                    str(r[3]).encode(),
                    b',"turn":',
                    b"null" if r[4] is None else str(r[4]).encode(),
                    b',"role":',
                    _q(r[5]),
                    b',"content":',
                    _opt(r[6]),
                    b',"reasoning_content":',
                    _q(r[7]),
                    b',"name":',
                    _q(r[8]),
                    b',"tool_call_id":',
                    _q(r[9]),
                    b',"tool_calls":',
                    _opt(r[10]),
                    b',"attributes":',
                    r[11],
                    b',"timestamp":',
                    _q(r[12]),
                    b',"source":',
                    _opt(r[13]),
                    b',"platforms":',
                    r[14],
                    b',"attachments":',
                    r[15],
                    b',"metrics":',
                    r[16],
                    b',"reactions":',
                    r[17],
                    b"}",
                )
            )
        )
        comma = b","
    parts.append(b"]}")
    return decode_thread(b"".join(parts))


_MESSAGE_KEYS = tuple(COLUMNS.split(", "))
_JSON_AT = frozenset(i for i, k in enumerate(_MESSAGE_KEYS) if k in data.JSON_COLUMNS)
_decode_any = msgspec.json.decode
_convert_thread = decoding_stored(lambda obj: msgspec.convert(obj, Thread))


def rows_converted(rows: Any) -> Thread:
    """Binary rows, JSON columns decoded by msgspec, the rest as asyncpg gives it, then
    msgspec.convert of the whole into the Thread."""
    head, *messages = rows
    thread = _decode_any(head[0])
    thread["messages"] = [
        {
            k: (_decode_any(v) if v is not None else None) if i in _JSON_AT else v
            for i, (k, v) in enumerate(zip(_MESSAGE_KEYS, r[1:], strict=True))
        }
        for r in messages
    ]
    return _convert_thread(thread)


# -- timing ----------------------------------------------------------------------------------------


async def interleaved(sides: dict[str, Op], rounds: int, batch: int) -> dict[str, tuple[float, float]]:
    """Median wall time (us) and mean client CPU (us) per op of each side, interleaved rounds
    (two thrown away first), each round starting with another side."""
    names = list(sides)
    wall: dict[str, list[float]] = {n: [] for n in names}
    cpu = dict.fromkeys(names, 0.0)
    for round_no in range(rounds + 2):
        shift = round_no % len(names)
        for name in names[shift:] + names[:shift]:
            for _ in range(batch):
                start, start_cpu = time.perf_counter(), time.process_time()
                await sides[name]()
                elapsed, used = time.perf_counter() - start, time.process_time() - start_cpu
                if round_no >= 2:
                    wall[name].append(elapsed * 1e6)
                    cpu[name] += used * 1e6
    return {n: (statistics.median(wall[n]), cpu[n] / len(wall[n])) for n in names}


async def server_us(conn: Any, sql: str, args: tuple[Any, ...], times: int = 15) -> float:
    """Median Execution Time (us) of EXPLAIN ANALYZE (TIMING OFF) of ``sql``."""
    found = []
    for _ in range(times):
        plan = await conn.fetchval(f"EXPLAIN (ANALYZE, TIMING OFF, FORMAT JSON) {sql}", *args)
        found.append(msgspec.json.decode(plan)[0]["Execution Time"] * 1000)
    return statistics.median(found)


def table(title: str, results: dict[str, tuple[float, float]], server: dict[str, float]) -> None:
    floor_wall, floor_cpu = results["floor"]
    print(f"\n## {title}")
    print("| variant | median us | x floor | client CPU us | CPU x floor | server us (EXPLAIN) |")
    print("|---|---|---|---|---|---|")
    for name, (w, c) in results.items():
        s = server.get(name)
        print(
            f"| {name} | {w:.0f} | {w / floor_wall:.2f}x | {c:.0f} | {c / floor_cpu:.2f}x | "
            f"{'' if s is None else f'{s:.0f}'} |"
        )


# -- content ---------------------------------------------------------------------------------------


def rich_thread(i: int, n: int) -> Thread:
    """A thread with tool calls, tool answers, content parts, names and attributes: for the check
    that each variant decodes exactly what the store's get does."""
    thread = Thread(id=data.new_id(), **data.thread_fields(i))
    for k in range(1, n + 1):
        fields = data.message_fields(i, k)
        if k % 5 == 0:
            fields.update(
                role="assistant",
                content=None,
                tool_calls=[
                    {
                        "id": f"call_{k}",
                        "type": "function",
                        "function": {"name": "lookup_order", "arguments": '{"order": "A-1", "n": 1.5}'},
                    }
                ],
                reasoning_content='need the order \u00e9\u2603 "quoted"\n',
            )
        elif k % 5 == 1 and k > 1:
            fields.update(role="tool", tool_call_id=f"call_{k - 1}", name="lookup_order")
        elif k % 7 == 0:
            fields.update(
                content=[
                    {"type": "text", "text": "see image"},
                    {"type": "image_url", "image_url": {"url": "x"}},
                ]
            )
        fields["attributes"] = {"lang": "en", "score": 0.25, "tags": ["a", "b"], "nested": {"k": None}}
        fields["turn"] = k // 2
        thread.add_message(Message(**fields))
    return thread


def same(a: Thread | None, b: Thread | None) -> bool:
    return _encode(a) == _encode(b)


async def seed_scratch(conn: Any) -> None:
    """Scratch copies of messages with a per-message document column, filled by UPDATE."""
    for kind in ("text", "json", "jsonb"):
        await conn.execute(f"DROP TABLE IF EXISTS probe_msg_{kind}")
        await conn.execute(f"CREATE TABLE probe_msg_{kind} AS SELECT * FROM messages")
        await conn.execute(f"ALTER TABLE probe_msg_{kind} ADD COLUMN doc {kind}")
        await conn.execute(
            f"UPDATE probe_msg_{kind} AS p SET doc = row_to_json(m)::{kind}"
            " FROM messages AS m WHERE m.id = p.id"
        )
        await conn.execute(f"CREATE UNIQUE INDEX ON probe_msg_{kind} (thread_id, sequence)")
        await conn.execute(f"VACUUM (FULL, ANALYZE) probe_msg_{kind}")  # sizes without the UPDATE's dead rows
    await conn.execute("DROP TABLE IF EXISTS probe_msg_keyless")
    await conn.execute("CREATE TABLE probe_msg_keyless AS SELECT * FROM messages")
    await conn.execute("ALTER TABLE probe_msg_keyless ADD COLUMN doc text")
    await conn.execute(
        "UPDATE probe_msg_keyless AS p SET doc = (to_jsonb(m) - 'thread_id' - 'sequence')::json::text"
        " FROM messages AS m WHERE m.id = p.id"
    )
    await conn.execute("CREATE UNIQUE INDEX ON probe_msg_keyless (thread_id, sequence)")
    await conn.execute("VACUUM (FULL, ANALYZE) probe_msg_keyless")
    await conn.execute("VACUUM ANALYZE threads, messages")
    await conn.execute("DROP TABLE IF EXISTS probe_msg_plain")
    await conn.execute("CREATE TABLE probe_msg_plain AS SELECT * FROM messages")
    sizes = await conn.fetch(
        "SELECT c, pg_table_size(c::regclass) FROM unnest($1::text[]) AS c",
        ["probe_msg_plain", "probe_msg_text", "probe_msg_json", "probe_msg_jsonb", "probe_msg_keyless"],
    )
    print("# table sizes, heap + TOAST (MB): " + ", ".join(f"{c} {b / 1e6:.1f}" for c, b in sizes))


# -- PostgreSQL ------------------------------------------------------------------------------------


async def postgres(args: argparse.Namespace) -> None:
    import asyncpg

    async with contextlib.AsyncExitStack() as stack:
        url = await stack.enter_async_context(pg_database(args.pg))
        floor_url = await stack.enter_async_context(pg_database(args.pg))
        store = await ThreadStore.create(url)
        stack.push_async_callback(store.close)
        floor = MinimalPgFloor(floor_url)
        await floor.open()
        stack.push_async_callback(floor.close)

        async def raw_init(conn: Any) -> None:
            await pg_pool._init_connection(conn)
            # jsonb columns handed over as their JSON bytes too (binary rows, jsonb_agg)
            await conn.set_type_codec(
                "jsonb",
                schema="pg_catalog",
                format="binary",
                encoder=pg_pool._encode_jsonb,
                decoder=lambda b: b[1:],
            )

        probe = await asyncpg.create_pool(
            url,
            min_size=2,
            max_size=2,
            init=raw_init,
            reset=pg_pool._no_reset,  # as the store's and the floor's pools: no reset round trip
            server_settings={"timezone": "UTC"},
        )
        stack.push_async_callback(probe.close)

        sizes = (10, 100, 1000)
        ids: dict[int, str] = {}
        floor_ids: dict[int, str] = {}
        for no, n in enumerate(sizes):
            thread = await store.save(data.new_thread(no, n))
            ids[n] = thread.id
            fid = data.new_id()
            floor_ids[n] = fid
            await floor.seed(
                [(data.thread_row(fid, no, n), [data.message_row(fid, no, k) for k in range(1, n + 1)])],
                settle=False,
            )
        rich = await store.save(rich_thread(7, 60))
        long_id = long_fid = None
        if not args.skip_long:
            long_fid = data.new_id()
            long_thread = await store.save(data.new_thread(5000, 0))
            long_id = long_thread.id
            # 100,000 messages in batches of 5,000 appends (seeding, not timed)
            for start in range(1, 100_001, 5000):
                await store.append(long_id, *[data.new_message(5000, k) for k in range(start, start + 5000)])
            await floor.seed(
                [
                    (
                        data.thread_row(long_fid, 5000, 100_000),
                        [data.message_row(long_fid, 5000, k) for k in range(1, 100_001)],
                    )
                ],
                settle=False,
            )
        # the list's threads last: a save stamps updated_at now, so they are the newest 20
        list_no = 1000
        for k in range(20):
            t = Thread(id=data.new_id(), **data.thread_fields(list_no + k, data.FUTURE))
            for j in range(1, 11):
                t.add_message(data.new_message(list_no + k, j))
            await store.save(t)
            fid = data.new_id()
            await floor.seed(
                [
                    (
                        data.thread_row(fid, list_no + k, 10, base=data.FUTURE),
                        [data.message_row(fid, list_no + k, j) for j in range(1, 11)],
                    )
                ],
                settle=False,
            )
        await floor.settle()
        async with probe.acquire() as conn:
            await seed_scratch(conn)

        get_variants: dict[str, tuple[str, Callable[[Any], Thread]]] = {
            "json_agg(row_to_json) [today, raw pool]": (TODAY, json_doc),
            "json_agg(json_build_object)": (BUILD_OBJECT, json_doc),
            "jsonb_agg(m)": (JSONB_AGG, json_doc),
            "json_build_object, epoch times": (EPOCH_TIMES, json_doc_lax),
            "stored doc text, string_agg": (DOC_TEXT, json_doc),
            "stored doc json, json_agg": (DOC_JSON, json_doc),
            "stored doc text w/o thread_id+sequence, spliced": (DOC_SPLICED, json_doc),
            "stored doc jsonb, string_agg(::text)": (DOC_JSONB_TEXT, json_doc),
            "binary rows, joined client-side": (ROWS, rows_assembled),
            "binary rows, msgspec.convert": (ROWS, rows_converted),
        }

        async def one(sql: str, decode: Callable[[Any], Thread], *params: Any) -> Thread:
            if sql == ROWS:
                return decode(await probe.fetch(sql, *params))
            return decode(await probe.fetchrow(sql, *params))

        # identical decoded Thread, on the bench threads and the rich one
        print("# identity check (msgspec encoding equal to store.get's)")
        for name, (sql, decode) in get_variants.items():
            verdict = []
            for tid in (*ids.values(), rich.id):
                verdict.append(same(await one(sql, decode, tid), await store.get(tid)))
            print(f"- {name}: {'identical' if all(verdict) else f'DIFFERS {verdict}'}")
        ok_list = same(json_docs(await probe.fetch(LIST_DOC_TEXT, 20)), await store.list(limit=20))
        print(f"- list stored doc text: {'identical' if ok_list else 'DIFFERS'}")
        ok_list = same(json_docs(await probe.fetch(LIST_BUILD, 20)), await store.list(limit=20))
        print(f"- list json_build_object: {'identical' if ok_list else 'DIFFERS'}")

        for n in sizes:
            tid, fid = ids[n], floor_ids[n]
            sides: dict[str, Op] = {
                "store.get [today]": lambda tid=tid: store.get(tid),
                "floor": lambda fid=fid: floor.get(fid),
            }
            for name, (sql, decode) in get_variants.items():
                sides[name] = lambda sql=sql, decode=decode, tid=tid: one(sql, decode, tid)
            rounds = args.rounds if n < 1000 else max(5, args.rounds // 2)
            results = await interleaved(sides, rounds, args.batch)
            server: dict[str, float] = {}
            async with probe.acquire() as conn:
                for name, (sql, _) in get_variants.items():
                    server[name] = await server_us(conn, sql, (tid,))
            async with floor.pool.acquire() as conn:
                server["floor"] = await server_us(conn, PG_GET, (fid,))
            table(f"PostgreSQL get {n}", results, server)

        if args.gets_only:
            return
        # list 20 threads of 10
        sides = {
            "store.list(20) [today]": lambda: store.list(limit=20),
            "floor": lambda: floor.list(20),
            "list_recent [today, raw pool]": lambda: _list(probe, LIST_TODAY),
            "list json_build_object": lambda: _list(probe, LIST_BUILD),
            "list stored doc text": lambda: _list(probe, LIST_DOC_TEXT),
        }
        results = await interleaved(sides, args.rounds, args.batch)
        server = {}
        async with probe.acquire() as conn:
            for name, sql in (
                ("list_recent [today, raw pool]", LIST_TODAY),
                ("list json_build_object", LIST_BUILD),
                ("list stored doc text", LIST_DOC_TEXT),
            ):
                server[name] = await server_us(conn, sql, (20,))
        async with floor.pool.acquire() as conn:
            server["floor"] = await server_us(conn, PG_LIST, (20,))
        table("PostgreSQL list 20 threads of 10", results, server)

        if long_id is not None:
            for name, sql in (("last doc text", LAST_DOC_TEXT), ("last build", LAST_BUILD)):
                got = json_doc(await probe.fetchrow(sql, long_id, 50))
                print(
                    f"- {name}: {'identical' if same(got, await store.get(long_id, last=50)) else 'DIFFERS'}"
                )
            sides = {
                "store.get(last=50) [today]": lambda: store.get(long_id, last=50),
                "floor": lambda: floor.last_messages(long_fid, 50),
                "last_50 [today, raw pool]": lambda: _last(probe, LAST_TODAY, long_id),
                "last_50 json_build_object": lambda: _last(probe, LAST_BUILD, long_id),
                "last_50 stored doc text": lambda: _last(probe, LAST_DOC_TEXT, long_id),
            }
            results = await interleaved(sides, args.rounds, args.batch)
            server = {}
            async with probe.acquire() as conn:
                for name, sql in (
                    ("last_50 [today, raw pool]", LAST_TODAY),
                    ("last_50 json_build_object", LAST_BUILD),
                    ("last_50 stored doc text", LAST_DOC_TEXT),
                ):
                    server[name] = await server_us(conn, sql, (long_id, 50))
            table("PostgreSQL get(last=50) of a 100,000-message thread", results, server)

        await pg_write_cost(store, probe, args)


async def _list(pool: Any, sql: str) -> list[Thread]:
    return json_docs(await pool.fetch(sql, 20))


async def _last(pool: Any, sql: str, tid: str) -> Thread:
    return json_doc(await pool.fetchrow(sql, tid, 50))


WRITE_COLUMNS = COLUMNS.split(", ")
INSERT_PLAIN = f"""INSERT INTO probe_w_plain ({COLUMNS})
SELECT * FROM unnest($1::text[], $2::text[], $3::int[], $4::int[], $5::text[], $6::jsonb[], $7::text[],
  $8::text[], $9::text[], $10::jsonb[], $11::jsonb[], $12::timestamptz[], $13::jsonb[], $14::jsonb[],
  $15::jsonb[], $16::jsonb[], $17::jsonb[])"""
INSERT_DOC = f"""INSERT INTO probe_w_doc ({COLUMNS}, doc)
SELECT * FROM unnest($1::text[], $2::text[], $3::int[], $4::int[], $5::text[], $6::jsonb[], $7::text[],
  $8::text[], $9::text[], $10::jsonb[], $11::jsonb[], $12::timestamptz[], $13::jsonb[], $14::jsonb[],
  $15::jsonb[], $16::jsonb[], $17::jsonb[], $18::text[])"""


async def pg_write_cost(store: ThreadStore, probe: Any, args: argparse.Namespace) -> None:
    """What a stored per-message doc adds to a write: the server's INSERT of the doc beside the
    columns (scratch tables like messages, with its unique (thread_id, sequence) and primary key)
    and the client's encoding of each message's document, beside the store's own save/append."""
    async with probe.acquire() as conn:
        for name, extra in (("plain", ""), ("doc", ", doc text")):
            await conn.execute(f"DROP TABLE IF EXISTS probe_w_{name}")
            await conn.execute(
                f"CREATE TABLE probe_w_{name} (LIKE messages INCLUDING DEFAULTS{extra}, PRIMARY KEY (id),"
                " UNIQUE (thread_id, sequence))"
            )
    counter = iter(range(10**9))

    def rows(n: int) -> list[dict[str, Any]]:
        tid = data.new_id()
        no = data.fresh_number()
        return [data.message_row(tid, no, k) for k in range(1, n + 1)]

    def arrays(ms: list[dict[str, Any]], with_doc: bool) -> list[Any]:
        # JSON values as encoded bytes: asyncpg would take a list value for a nested array
        out: list[Any] = [
            [m[c] if c not in data.JSON_COLUMNS or m[c] is None else msgspec.Raw(_encode(m[c])) for m in ms]
            for c in WRITE_COLUMNS
        ]
        if with_doc:
            out.append([_encode(m).decode() for m in ms])
        return out

    async def insert(n: int, with_doc: bool) -> None:
        ms = rows(n)
        await probe.execute(INSERT_DOC if with_doc else INSERT_PLAIN, *arrays(ms, with_doc))

    async def save10() -> None:
        await store.save(data.new_thread(data.fresh_number(), 10))

    appended = await store.save(data.new_thread(data.fresh_number(), 100))

    async def append1() -> None:
        await store.append(appended.id, data.new_message(7, next(counter)))

    # the floor key is required by table(); the store's save is the reference here
    sides: dict[str, Op] = {
        "floor": save10,
        "append 1 to 100 (store)": append1,
        "insert 10 rows, no doc (+ its arrays)": lambda: insert(10, False),
        "insert 10 rows + doc (+ doc encode)": lambda: insert(10, True),
        "insert 1 row, no doc": lambda: insert(1, False),
        "insert 1 row + doc": lambda: insert(1, True),
    }
    results = await interleaved(sides, args.rounds, args.batch)
    sample = data.new_thread(1, 10).messages
    start = time.process_time()
    for _ in range(2000):
        for m in sample:
            _encode(m)
    encode_us = (time.process_time() - start) / 2000 / 10 * 1e6
    print("\n## PostgreSQL write cost of a stored per-message doc ('floor' row = store.save of 10)")
    table("writes (x floor = x store.save of 10)", results, {})
    print(f"client encode of one Message document: {encode_us:.1f} us")
    # server time of the INSERT alone (EXPLAIN ANALYZE in a transaction rolled back each time)
    async with probe.acquire() as conn:
        for n in (10, 1):
            found: dict[bool, list[float]] = {False: [], True: []}
            for _ in range(args.rounds * 2):
                for with_doc in (False, True):
                    sql = INSERT_DOC if with_doc else INSERT_PLAIN
                    tx = conn.transaction()
                    await tx.start()
                    plan = await conn.fetchval(
                        f"EXPLAIN (ANALYZE, TIMING OFF, FORMAT JSON) {sql}", *arrays(rows(n), with_doc)
                    )
                    await tx.rollback()
                    found[with_doc].append(msgspec.json.decode(plan)[0]["Execution Time"] * 1000)
            plain, doc = statistics.median(found[False]), statistics.median(found[True])
            print(f"server INSERT of {n} row(s): {plain:.0f} us without the doc, {doc:.0f} us with it")


# -- SQLite ----------------------------------------------------------------------------------------

SQ_VIEW = """SELECT 1, NULL, id, title, attributes, platforms, source, created_at, updated_at
  FROM threads WHERE id = ?1
UNION ALL
SELECT 1, sequence, doc, NULL, NULL, NULL, NULL, NULL, NULL
  FROM message_docs WHERE thread_id = ?1
 ORDER BY 2"""
SQ_DOC = SQ_VIEW.replace("message_docs", "probe_docs")


def sq_joined(rows: Any) -> Thread:
    head, *messages = rows
    doc = sq_docs.header(*head[2:9]) + ",".join([r[2] for r in messages]) + "]}"
    return decode_thread(doc.encode())


async def sqlite(args: argparse.Namespace) -> None:
    import aiosqlite

    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "store.db")
        store = await ThreadStore.create(f"sqlite+aiosqlite:///{path}")
        floor = MinimalSqliteFloor(os.path.join(tmp, "floor.db"))
        await floor.open()
        try:
            ids, floor_ids = {}, {}
            for no, n in enumerate((100, 1000)):
                ids[n] = (await store.save(data.new_thread(no, n))).id
                fid = data.new_id()
                floor_ids[n] = fid
                await floor.seed(
                    [(data.thread_row(fid, no, n), [data.message_row(fid, no, k) for k in range(1, n + 1)])]
                )
            rich = await store.save(rich_thread(7, 60))
            conn = await aiosqlite.connect(path, isolation_level=None)
            try:
                await conn.executescript(
                    "CREATE TABLE probe_docs (thread_id TEXT NOT NULL, sequence INTEGER NOT NULL, doc TEXT,"
                    " PRIMARY KEY (thread_id, sequence));"
                    "INSERT INTO probe_docs SELECT thread_id, sequence, NULL FROM messages;"
                    "UPDATE probe_docs SET doc = (SELECT d.doc FROM message_docs AS d"
                    " WHERE d.thread_id = probe_docs.thread_id AND d.sequence = probe_docs.sequence);"
                    "ANALYZE;"
                )

                async def via(sql: str, tid: str) -> Thread:
                    return sq_joined(await conn.execute_fetchall(sql, (tid,)))

                print("\n# SQLite identity check")
                for name, sql in (("view json_object per row", SQ_VIEW), ("stored doc column", SQ_DOC)):
                    ok = [same(await via(sql, t), await store.get(t)) for t in (*ids.values(), rich.id)]
                    print(f"- {name}: {'identical' if all(ok) else f'DIFFERS {ok}'}")
                for n in (100, 1000):
                    tid, fid = ids[n], floor_ids[n]
                    sides: dict[str, Op] = {
                        "store.get [today: rows joined in Python]": lambda tid=tid: store.get(tid),
                        "floor": lambda fid=fid: floor.get(fid),
                        "view message_docs (json_object per row)": lambda tid=tid: via(SQ_VIEW, tid),
                        "stored doc column": lambda tid=tid: via(SQ_DOC, tid),
                    }
                    results = await interleaved(sides, args.rounds, args.batch)
                    table(f"SQLite get {n}", results, {})
            finally:
                await conn.close()
        finally:
            await floor.close()
            await store.close()


async def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--pg", default=os.environ.get("THREADSTORE_TEST_PG_URL", DEFAULT_PG))
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--batch", type=int, default=10)
    parser.add_argument("--skip-long", action="store_true", help="no 100,000-message thread")
    parser.add_argument("--skip-sqlite", action="store_true")
    parser.add_argument("--skip-pg", action="store_true")
    parser.add_argument("--gets-only", action="store_true", help="PostgreSQL: only get 10/100/1,000")
    args = parser.parse_args()
    print(
        f"# probe_reads {datetime.now().isoformat(timespec='seconds')}"
        f" rounds={args.rounds} batch={args.batch}"
    )
    if not args.skip_pg:
        await postgres(args)
    if not args.skip_sqlite:
        await sqlite(args)


if __name__ == "__main__":
    asyncio.run(main())
