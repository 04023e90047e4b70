"""Every message and thread column list in sql/<dialect>/ names exactly the model's fields, so a
schema change that misses one place fails here, on both dialects."""

from __future__ import annotations

import re

import msgspec
import pytest

from threadstore import Message, Thread, queries
from threadstore.backends import sqlite
from threadstore.backends.sqlite import documents as sqlite_documents

MESSAGE_FIELDS = frozenset(Message.__struct_fields__)
THREAD_FIELDS = frozenset(Thread.__struct_fields__) - {"messages"}
THREAD_COLUMNS = THREAD_FIELDS | {"last_sequence"}  # a thread row also keeps its highest sequence
KEPT = {"id", "thread_id", "sequence"}  # what rewriting a stored message leaves as it is
DIALECTS = ["sqlite", "postgres"]


def _statements(dialect: str) -> list[tuple[str, str]]:
    registry = queries.load(dialect)
    found = [(name, query.sql) for name, query in registry.queries.items()]
    return found + [(m.origin, s) for m in registry.migrations for s in m.statements]


def _names(listed: str) -> set[str]:
    return {name.strip() for name in listed.split(",")}


@pytest.mark.parametrize("dialect", DIALECTS)
def test_every_insert_names_every_column(dialect: str) -> None:
    inserts = {"messages": MESSAGE_FIELDS, "threads": THREAD_COLUMNS}
    seen = 0
    for name, sql in _statements(dialect):
        for table, listed in re.findall(r"INSERT INTO (messages|threads) \(([^)]*)\)", sql):
            seen += 1
            columns = _names(listed)
            # create_if_absent stores an empty thread: last_sequence keeps its default 0
            assert columns in (inserts[table], inserts[table] - {"last_sequence"}), name
    assert seen


@pytest.mark.parametrize("dialect", DIALECTS)
def test_every_message_update_rewrites_every_field_but_the_kept_ones(dialect: str) -> None:
    seen = 0
    for name, sql in _statements(dialect):
        match = re.search(r"UPDATE messages(?: AS \w+)?\s+SET (.*?)\s+(?:FROM|WHERE)", sql, re.S)
        if match and "turn" in match[1]:
            seen += 1
            assigned = set(re.findall(r"(\w+) = ", match[1]))
            assert assigned == MESSAGE_FIELDS - KEPT, name
    assert seen


@pytest.mark.parametrize("dialect", DIALECTS)
def test_every_document_view_has_a_key_per_field(dialect: str) -> None:
    seen = 0
    for name, sql in _statements(dialect):
        for view, body in re.findall(
            r"CREATE (?:OR REPLACE )?VIEW (message_docs|thread_docs) AS(.*)", sql, re.S
        ):
            seen += 1
            if view == "message_docs" and "row_to_json(m)" in body:
                continue  # the whole row: its keys are the columns, which the inserts name
            keys = set(re.findall(r"'(\w+)', ", body.split("FROM message_docs")[0]))
            assert keys == (MESSAGE_FIELDS if view == "message_docs" else THREAD_FIELDS | {"messages"}), name
    assert seen >= 2


def test_sqlite_rows_and_documents_hold_every_field() -> None:
    assert set(sqlite.MESSAGE_COLUMNS) == MESSAGE_FIELDS
    assert set(sqlite_documents.MessageDoc.__struct_fields__) == MESSAGE_FIELDS
    read = queries.load("sqlite")["threads.get"].sql
    selected = re.search(r"SELECT 1, (sequence, .*?)\s+FROM messages", read, re.S)
    assert selected is not None
    assert _names(selected[1]) == MESSAGE_FIELDS - {"thread_id"}  # the thread row gives it
    thread = (
        1,
        None,
        "t1",
        "title",
        "{}",
        "{}",
        None,
        "2024-01-01T00:00:00.000000+00:00",
        "2024-01-01T00:00:00.000000+00:00",
        *[None] * 8,
    )
    message = (
        1,
        1,
        "m1",
        None,
        "user",
        '"hi"',
        None,
        None,
        None,
        None,
        "{}",
        "2024-01-01T00:00:00.000000+00:00",
        None,
        "{}",
        "[]",
        "{}",
        "{}",
    )
    doc = msgspec.json.decode(sqlite_documents.thread_documents([thread, message]))
    assert set(doc) == THREAD_FIELDS | {"messages"}
    assert set(doc["messages"][0]) == MESSAGE_FIELDS
