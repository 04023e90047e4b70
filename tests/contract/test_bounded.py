"""Bounded reads and retention on every backend: get(last=N), get_messages, list_threads with
cursors, saves of partial threads, delete_threads and prune_messages."""

from __future__ import annotations

import asyncio
import base64
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from tests.helpers import contents, conversation, sequences, stored, user
from threadstore import Message, NotFoundError, Thread, ThreadPage, ThreadStore, ThreadSummary

T0 = datetime(2024, 1, 1, 12, 0, 0, tzinfo=UTC)
LONG_AGO = datetime(2020, 1, 1, tzinfo=UTC)


async def saved(
    store: ThreadStore, thread_id: str, count: int, *, updated_at: datetime | None = None, **fields: Any
) -> Thread:
    """A stored thread of ``count`` user messages "m1".."m<count>"."""
    thread = conversation(*[f"m{n}" for n in range(1, count + 1)], id=thread_id, **fields)
    if updated_at is not None:
        thread.updated_at = updated_at
    return await store.save(thread)


def texts(messages: list[Message]) -> list[Any]:
    return [m.content for m in messages]


# --- get(last=N) -------------------------------------------------------------------------------


async def test_get_last_returns_the_most_recent_messages_in_sequence_order(store: ThreadStore) -> None:
    await saved(store, "t", 10, title="ten")

    thread = await store.get("t", last=3)

    assert thread is not None
    assert thread.title == "ten"
    assert contents(thread) == ["m8", "m9", "m10"]
    assert sequences(thread) == [8, 9, 10]
    assert all(m.thread_id == "t" for m in thread.messages)


async def test_get_last_beyond_the_thread_or_zero(store: ThreadStore) -> None:
    await saved(store, "t", 3)

    assert contents(await stored_last(store, "t", 50)) == ["m1", "m2", "m3"]
    assert contents(await stored_last(store, "t", 0)) == []
    assert await store.get("missing", last=5) is None


async def stored_last(store: ThreadStore, thread_id: str, last: int) -> Thread:
    thread = await store.get(thread_id, last=last)
    assert thread is not None
    return thread


async def test_wrong_window_every_window_size_against_every_thread_length(store: ThreadStore) -> None:
    """Issue 30 item 1: memory returned 6 of 14 messages for last=20 (a negative slice whenever
    the thread held between limit/2 and limit messages). Every window against every length, for
    get(last=) and get_messages(limit=, before=, after=)."""
    lengths, windows = range(0, 10), range(0, 12)
    for length in lengths:
        await saved(store, f"len-{length}", length)
    for length in lengths:
        thread_id = f"len-{length}"
        every = [f"m{n}" for n in range(1, length + 1)]
        for window in windows:
            got = await stored_last(store, thread_id, window)
            assert contents(got) == (every[max(length - window, 0) :] if window else []), (length, window)
            if window == 0:
                continue
            page = await store.get_messages(thread_id, limit=window)
            assert texts(page) == every[max(length - window, 0) :], (length, window)
            for before in range(1, length + 2):
                below = every[: before - 1]
                page = await store.get_messages(thread_id, limit=window, before=before)
                assert texts(page) == below[max(len(below) - window, 0) :], (length, window, before)
            for after in range(0, length + 1):
                page = await store.get_messages(thread_id, limit=window, after=after)
                assert texts(page) == every[after : after + window], (length, window, after)


@pytest.mark.parametrize("last", [-1, 10_001])
async def test_get_last_outside_its_range_is_a_value_error(store: ThreadStore, last: int) -> None:
    with pytest.raises(ValueError, match="last"):
        await store.get("t", last=last)


async def test_get_last_of_a_wrong_type_is_a_type_error(store: ThreadStore) -> None:
    with pytest.raises(TypeError, match="last"):
        await store.get("t", last="5")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="last"):
        await store.get("t", last=True)


async def _remove(store: ThreadStore, thread_id: str, text: str) -> None:
    """Another writer removes the message holding ``text``."""
    other = await stored(store, thread_id)
    (message,) = [m for m in other.messages if m.content == text]
    assert other.remove_message(message.id)
    await store.save(other)


@pytest.mark.parametrize("removed", ["m95", "m50", "m3"])
async def test_page_walk_back_with_a_removal_meanwhile_repeats_nothing(
    store: ThreadStore, removed: str
) -> None:
    """Issue 30 item 2: a removal renumbered the thread 1..n, so a before= cursor pointed one
    message further on: 100 rows for 99 messages. A removal behind, ahead of or inside the walk
    changes nothing of what the walk returns but the removed message."""
    await saved(store, "t", 100)
    page = await store.get_messages("t", limit=10)
    walked = texts(page)
    await _remove(store, "t", removed)
    while page:
        page = await store.get_messages("t", limit=10, before=page[0].sequence)
        walked[:0] = texts(page)
    expected = [f"m{n}" for n in range(1, 101)]
    if removed != "m95":  # already read when it was removed
        expected.remove(removed)
    assert walked == expected


@pytest.mark.parametrize("removed", ["m5", "m50", "m98"])
async def test_page_walk_forward_with_a_removal_meanwhile_skips_nothing(
    store: ThreadStore, removed: str
) -> None:
    """Issue 30 item 2: after= skipped a message once a removal behind the cursor renumbered
    the thread."""
    await saved(store, "t", 100)
    page = await store.get_messages("t", limit=10, after=0)
    walked = texts(page)
    await _remove(store, "t", removed)
    while page:
        page = await store.get_messages("t", limit=10, after=page[-1].sequence)
        walked += texts(page)
    expected = [f"m{n}" for n in range(1, 101)]
    if removed != "m5":
        expected.remove(removed)
    assert walked == expected


async def test_page_walk_with_a_prune_meanwhile_repeats_or_skips_nothing(store: ThreadStore) -> None:
    """prune_messages during walks in both directions: the walks go on where they were."""
    await saved(store, "t", 100)
    back = await store.get_messages("t", limit=10)
    forward = await store.get_messages("t", limit=10, after=50)
    walked_back, walked_forward = texts(back), texts(forward)
    assert await store.prune_messages("t", keep_last=70) == 30
    while back:
        back = await store.get_messages("t", limit=10, before=back[0].sequence)
        walked_back[:0] = texts(back)
    while forward:
        forward = await store.get_messages("t", limit=10, after=forward[-1].sequence)
        walked_forward += texts(forward)
    assert walked_back == [f"m{n}" for n in range(31, 101)]
    assert walked_forward == [f"m{n}" for n in range(51, 101)]
    appended = await store.append("t", user("next"))
    assert appended.messages[0].sequence == 101  # numbers are never handed out twice


async def test_sequences_are_never_handed_out_twice_after_the_last_message_is_removed(
    store: ThreadStore,
) -> None:
    """A cursor at the end (after=100) must find a message appended after m100 was removed."""
    await saved(store, "t", 3)
    await _remove(store, "t", "m3")
    await store.append("t", user("appended"))
    thread = await stored(store, "t")
    thread.add_message(user("saved"))
    await store.save(thread)
    assert sequences(await stored(store, "t")) == [1, 2, 4, 5]
    assert texts(await store.get_messages("t", after=3)) == ["appended", "saved"]
    await store.prune_messages("t", keep_last=0)
    thread = await stored(store, "t")
    thread.add_message(user("after the prune"))
    await store.save(thread)
    assert sequences(await stored(store, "t")) == [6]


# --- saving a partial thread -------------------------------------------------------------------


async def test_a_partial_thread_saved_with_a_new_message_keeps_the_unloaded_ones(store: ThreadStore) -> None:
    await saved(store, "t", 10)
    partial = await stored_last(store, "t", 2)

    partial.add_message(user("new"))
    await store.save(partial)

    whole = await stored(store, "t")
    assert contents(whole) == [*[f"m{n}" for n in range(1, 11)], "new"]
    assert sequences(whole) == list(range(1, 12))
    assert partial.messages[-1].sequence == 11


async def test_a_partial_thread_saved_with_an_edit_keeps_the_unloaded_ones(store: ThreadStore) -> None:
    await saved(store, "t", 10)
    partial = await stored_last(store, "t", 2)

    partial.messages[0].content = "edited m9"
    partial.title = "renamed"
    await store.save(partial)

    whole = await stored(store, "t")
    assert whole.title == "renamed"
    assert contents(whole) == [*[f"m{n}" for n in range(1, 9)], "edited m9", "m10"]


async def test_a_partial_thread_saved_with_a_removal_deletes_only_that_message(store: ThreadStore) -> None:
    await saved(store, "t", 10)
    partial = await stored_last(store, "t", 3)

    assert partial.remove_message(partial.messages[1].id)  # m9
    await store.save(partial)

    whole = await stored(store, "t")
    assert contents(whole) == [*[f"m{n}" for n in range(1, 9)], "m10"]
    assert sequences(whole) == [*range(1, 9), 10]  # a removal leaves a gap: nothing renumbered
    assert sequences(partial) == [8, 10]


async def test_a_partial_thread_cleared_and_saved_deletes_only_the_loaded_messages(
    store: ThreadStore,
) -> None:
    await saved(store, "t", 5)
    partial = await stored_last(store, "t", 2)

    partial.clear_messages()
    await store.save(partial)

    assert contents(await stored(store, "t")) == ["m1", "m2", "m3"]


async def test_a_thread_loaded_without_messages_saved_with_one_appends_it(store: ThreadStore) -> None:
    await saved(store, "t", 3)
    header = await stored_last(store, "t", 0)

    header.add_message(user("new"))
    await store.save(header)

    assert contents(await stored(store, "t")) == ["m1", "m2", "m3", "new"]
    assert sequences(header) == [4]


async def test_a_partial_thread_saved_after_another_writer_appended_keeps_both(store: ThreadStore) -> None:
    await saved(store, "t", 6)
    partial = await stored_last(store, "t", 2)
    other = await stored_last(store, "t", 1)
    other.add_message(user("from the other writer"))
    await store.save(other)
    await store.append("t", user("appended"))

    partial.add_message(user("from the partial thread"))
    partial.remove_message(partial.messages[0].id)  # m5
    await store.save(partial)

    whole = await stored(store, "t")
    assert contents(whole) == [
        "m1",
        "m2",
        "m3",
        "m4",
        "m6",
        "from the other writer",
        "appended",
        "from the partial thread",
    ]
    assert sequences(whole) == [1, 2, 3, 4, 6, 7, 8, 9]  # m5 removed: its number stays unused


async def test_partial_threads_saved_concurrently_with_appends_lose_nothing(store: ThreadStore) -> None:
    await saved(store, "t", 20)
    partials = [await stored_last(store, "t", 3) for _ in range(3)]
    for n, partial in enumerate(partials):
        partial.add_message(user(f"partial {n}"))

    await asyncio.gather(
        *[store.save(p) for p in partials], *[store.append("t", user(f"append {n}")) for n in range(3)]
    )

    whole = await stored(store, "t")
    assert contents(whole)[:20] == [f"m{n}" for n in range(1, 21)]
    assert sorted(contents(whole)[20:]) == [
        *[f"append {n}" for n in range(3)],
        *[f"partial {n}" for n in range(3)],
    ]
    assert sequences(whole) == list(range(1, 27))


# --- get_messages --------------------------------------------------------------------------------


async def test_get_messages_without_a_position_returns_the_last_page(store: ThreadStore) -> None:
    await saved(store, "t", 8)

    page = await store.get_messages("t", limit=3)

    assert texts(page) == ["m6", "m7", "m8"]
    assert [m.sequence for m in page] == [6, 7, 8]
    assert all(isinstance(m, Message) and m.thread_id == "t" for m in page)


async def test_get_messages_before_and_after(store: ThreadStore) -> None:
    await saved(store, "t", 8)

    assert texts(await store.get_messages("t", limit=3, before=6)) == ["m3", "m4", "m5"]
    assert texts(await store.get_messages("t", limit=3, before=2)) == ["m1"]
    assert texts(await store.get_messages("t", limit=3, after=2)) == ["m3", "m4", "m5"]
    assert texts(await store.get_messages("t", limit=3, after=7)) == ["m8"]
    assert texts(await store.get_messages("t", limit=3, after=8)) == []
    assert texts(await store.get_messages("t", limit=3, after=0)) == ["m1", "m2", "m3"]
    assert texts(await store.get_messages("t", limit=10, after=2, before=6)) == ["m3", "m4", "m5"]
    assert texts(await store.get_messages("t", limit=2, after=2, before=6)) == ["m3", "m4"]


@pytest.mark.parametrize("limit", [1, 3, 7, 50])
async def test_walking_back_and_forward_visits_every_message_once(store: ThreadStore, limit: int) -> None:
    await saved(store, "t", 7)
    expected = [f"m{n}" for n in range(1, 8)]

    back: list[Message] = []
    page = await store.get_messages("t", limit=limit)
    while page:
        assert len(page) <= limit
        back = page + back
        page = await store.get_messages("t", limit=limit, before=page[0].sequence)
    forward: list[Message] = []
    page = await store.get_messages("t", limit=limit, after=0)
    while page:
        forward += page
        page = await store.get_messages("t", limit=limit, after=page[-1].sequence)

    assert texts(back) == texts(forward) == expected


async def test_walking_back_while_messages_are_appended_visits_every_older_message_once(
    store: ThreadStore,
) -> None:
    await saved(store, "t", 9)
    seen: list[Message] = []
    page = await store.get_messages("t", limit=2)
    while page:
        seen = page + seen
        await store.append("t", user(f"late {len(seen)}"))
        page = await store.get_messages("t", limit=2, before=page[0].sequence)

    assert texts(seen) == [f"m{n}" for n in range(1, 10)]


async def test_get_messages_of_an_empty_thread_is_empty(store: ThreadStore) -> None:
    await store.save(Thread(id="empty"))

    assert await store.get_messages("empty") == []
    assert await store.get_messages("empty", after=0) == []


async def test_get_messages_of_a_missing_thread_is_not_found(store: ThreadStore) -> None:
    with pytest.raises(NotFoundError):
        await store.get_messages("missing")
    with pytest.raises(NotFoundError):
        await store.get_messages("missing", after=3)


@pytest.mark.parametrize(
    "arguments",
    [{"limit": 0}, {"limit": 10_001}, {"limit": -1}, {"before": -1}, {"after": -5}, {"after": 2**31 + 1}],
)
async def test_get_messages_with_a_bad_bound_is_a_value_error(
    store: ThreadStore, arguments: dict[str, int]
) -> None:
    await saved(store, "t", 2)
    with pytest.raises(ValueError, match=next(iter(arguments))):
        await store.get_messages("t", **arguments)


async def test_get_messages_with_a_wrong_type_is_a_type_error(store: ThreadStore) -> None:
    for arguments in ({"limit": "5"}, {"before": 2.0}, {"after": True}):
        with pytest.raises(TypeError):
            await store.get_messages("t", **arguments)


async def test_get_messages_takes_ten_thousand(store: ThreadStore) -> None:
    await saved(store, "t", 3)
    assert len(await store.get_messages("t", limit=10_000)) == 3


# --- list_threads --------------------------------------------------------------------------------


async def test_list_threads_summarises_newest_first_with_id_breaking_ties(store: ThreadStore) -> None:
    await saved(
        store,
        "old",
        2,
        updated_at=T0,
        title="Old",
        attributes={"k": 1},
        platforms={"slack": {"channel": "C1"}},
        source={"name": "slack"},
    )
    await saved(store, "b", 1, updated_at=T0 + timedelta(hours=1))
    await saved(store, "a", 3, updated_at=T0 + timedelta(hours=1))
    await store.save(Thread(id="empty", updated_at=T0 - timedelta(days=1)))

    page = await store.list_threads()

    assert isinstance(page, ThreadPage) and page.next_cursor is None
    assert [s.id for s in page.threads] == ["b", "a", "old", "empty"]
    old = page.threads[2]
    assert isinstance(old, ThreadSummary)
    assert (old.title, old.attributes, old.platforms, old.source) == (
        "Old",
        {"k": 1},
        {"slack": {"channel": "C1"}},
        {"name": "slack"},
    )
    assert old.updated_at == T0
    assert old.created_at.tzinfo is not None
    assert [(s.message_count, s.last_message and s.last_message.content) for s in page.threads] == [
        (1, "m1"),
        (3, "m3"),
        (2, "m2"),
        (0, None),
    ]
    last = page.threads[1].last_message
    assert last is not None and (last.sequence, last.thread_id, last.role) == (3, "a", "user")


async def test_list_threads_of_an_empty_store(store: ThreadStore) -> None:
    assert await store.list_threads() == ThreadPage(threads=[], next_cursor=None)


async def test_summaries_follow_appends_edits_removals_and_prunes(store: ThreadStore) -> None:
    thread = await saved(store, "t", 3)

    async def summary() -> tuple[int, Any]:
        [found] = (await store.list_threads()).threads
        return found.message_count, found.last_message and found.last_message.content

    await store.append("t", user("appended"))
    assert await summary() == (4, "appended")
    loaded = await stored(store, "t")
    loaded.messages[-1].content = "edited"
    await store.save(loaded)
    assert await summary() == (4, "edited")
    loaded.remove_message(loaded.messages[-1].id)
    await store.save(loaded)
    assert await summary() == (3, "m3")
    await store.prune_messages("t", keep_last=1)
    assert await summary() == (1, "m3")
    thread.clear_messages()
    await store.save(thread)
    assert await summary() == (0, None)


@pytest.mark.parametrize("limit", [1, 2, 3, 10])
async def test_a_cursor_walk_returns_every_thread_once_in_order(store: ThreadStore, limit: int) -> None:
    # Ties on updated_at: the id orders them.
    for n in range(7):
        await saved(store, f"t{n}", n % 2, updated_at=T0 + timedelta(minutes=n // 3))
    expected = [s.id for s in (await store.list_threads(limit=100)).threads]

    walked, cursor, pages = [], None, 0
    while True:
        page = await store.list_threads(limit=limit, cursor=cursor)
        assert len(page.threads) <= limit
        walked += [s.id for s in page.threads]
        pages += 1
        if page.next_cursor is None:
            break
        assert len(page.threads) == limit
        cursor = page.next_cursor

    assert walked == expected and sorted(walked) == [f"t{n}" for n in range(7)]
    assert pages == -(-7 // limit)  # no empty last page


async def test_a_cursor_walk_while_other_tasks_update_threads_returns_no_thread_twice(
    store: ThreadStore,
) -> None:
    for n in range(30):
        await saved(store, f"t{n:02}", 1, updated_at=T0 + timedelta(seconds=n))
    walked: list[str] = []
    touched: set[str] = set()
    cursor = None
    while True:
        # Each page is read while other tasks append to a thread it has returned (which moves
        # ahead of the walk) and to one it has not (which may then be passed over: it was updated).
        seen = walked[-1] if walked else "t29"
        ahead = next(
            (
                f"t{n:02}"
                for n in range(29, -1, -1)
                if f"t{n:02}" not in walked and f"t{n:02}" not in touched and n % 3 == 0
            ),
            None,
        )
        updates = [store.append(seen, user("update"))] + (
            [store.append(ahead, user("update"))] if ahead else []
        )
        touched.update([seen] + ([ahead] if ahead else []))
        page, *_ = await asyncio.gather(store.list_threads(limit=4, cursor=cursor), *updates)
        walked += [s.id for s in page.threads]  # type: ignore[attr-defined]
        if (cursor := page.next_cursor) is None:  # type: ignore[attr-defined]
            break

    assert len(walked) == len(set(walked))
    assert {f"t{n:02}" for n in range(30)} - touched <= set(walked)
    assert len(touched) > 5


async def test_list_threads_filters_on_attributes(store: ThreadStore) -> None:
    await saved(store, "one", 1, updated_at=T0, attributes={"team": "a", "n": 1, "tags": ["x"]})
    await saved(store, "float", 1, updated_at=T0 + timedelta(seconds=1), attributes={"team": "a", "n": 1.0})
    await saved(store, "other", 1, updated_at=T0 + timedelta(seconds=2), attributes={"team": "b", "n": 1})
    await saved(
        store, "bigger", 1, updated_at=T0 + timedelta(seconds=3), attributes={"team": "a", "tags": ["x", "y"]}
    )
    await saved(store, "none", 1, updated_at=T0 + timedelta(seconds=4))

    async def ids(attributes: dict[str, Any], limit: int = 50) -> list[str]:
        found: list[str] = []
        cursor = None
        while True:
            page = await store.list_threads(limit=limit, cursor=cursor, attributes=attributes)
            found += [s.id for s in page.threads]
            if (cursor := page.next_cursor) is None:
                return found

    assert await ids({"team": "a"}) == ["bigger", "float", "one"]
    assert await ids({"team": "a"}, limit=1) == ["bigger", "float", "one"]
    assert await ids({"team": "a", "n": 1}) == ["float", "one"]
    assert await ids({"tags": ["x"]}) == ["one"]  # lists compare whole
    assert await ids({"team": "c"}) == []
    assert await ids({}) == ["none", "bigger", "other", "float", "one"]
    matches = (await store.list_threads(attributes={"team": "b"})).threads
    assert [(s.id, s.message_count) for s in matches] == [("other", 1)]


async def test_a_cursor_only_continues_a_walk_with_the_same_filter(store: ThreadStore) -> None:
    for n in range(3):
        await saved(store, f"t{n}", 0, attributes={"team": "a", "n": n})
    page = await store.list_threads(limit=1, attributes={"team": "a"})
    assert page.next_cursor is not None

    with pytest.raises(ValueError, match="attributes"):
        await store.list_threads(limit=1, cursor=page.next_cursor)
    with pytest.raises(ValueError, match="attributes"):
        await store.list_threads(limit=1, cursor=page.next_cursor, attributes={"team": "b"})
    same = await store.list_threads(limit=1, cursor=page.next_cursor, attributes={"team": "a"})
    assert len(same.threads) == 1


def _forgeries(cursor: str) -> list[object]:
    raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
    flipped = bytearray(raw)
    flipped[5] ^= 1
    other_version = bytes([2]) + raw[1:]

    def text(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

    return [
        "",
        "x",
        "not a cursor",
        cursor[:-1],
        cursor[:-3],
        cursor + "A",
        cursor[1:],
        text(bytes(flipped)),
        text(other_version),
        text(raw[:-8]),
        "é" * 20,
        cursor * 200,
        text(b'\x01["2024-01-01T00:00:00+00:00","t",""]' + b"\x00" * 8),
    ]


async def test_forged_or_corrupted_cursors_are_value_errors(store: ThreadStore) -> None:
    for n in range(3):
        await saved(store, f"t{n}", 0)
    cursor = (await store.list_threads(limit=1)).next_cursor
    assert cursor is not None

    for forged in _forgeries(cursor):
        with pytest.raises(ValueError, match="cursor"):
            await store.list_threads(limit=1, cursor=forged)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="cursor"):
        await store.list_threads(cursor=12)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("when", "thread_id"),
    [
        ("0001-01-01T00:00:00+05:00", "t1"),  # before the year 1 in UTC: OverflowError
        ("9999-12-31T23:59:59-05:00", "t1"),  # after 9999 in UTC
        ("2025-01-01T00:00:00+00:00", "a\x00b"),  # a raw PostgreSQL error
        ("2025-01-01T00:00:00+00:00", "\ud800"),
        ("2025-01-01T00:00:00+00:00", "x" * 513),
    ],
)
async def test_cursors_forged_with_the_public_key_are_value_errors(
    store: ThreadStore, when: str, thread_id: str
) -> None:
    """The cursor key is a public constant: a forged cursor passes the tag, and its values gave
    an OverflowError or a raw PostgreSQL error. They are checked like any input now."""
    import base64
    import json

    from threadstore import cursors

    await saved(store, "t0", 0)
    body = bytes([1]) + json.dumps([when, thread_id, ""]).encode()  # escapes a lone surrogate
    forged = base64.urlsafe_b64encode(body + cursors._tag(body)).rstrip(b"=").decode()
    with pytest.raises(ValueError, match="cursor"):
        await store.list_threads(limit=1, cursor=forged)


async def test_delete_threads_older_than_any_time_deletes_nothing(store: ThreadStore) -> None:
    """timedelta(days=10**6) reached before the year 1: OverflowError."""
    await saved(store, "t0", 1, updated_at=LONG_AGO)
    assert await store.delete_threads(timedelta(days=10**6), dry_run=True) == 0
    assert await store.delete_threads(timedelta.max) == 0
    assert await store.get("t0") is not None


@pytest.mark.parametrize("limit", [0, -1, 10_001])
async def test_list_threads_limit_outside_its_range_is_a_value_error(store: ThreadStore, limit: int) -> None:
    with pytest.raises(ValueError, match="limit"):
        await store.list_threads(limit=limit)


async def test_list_threads_with_bad_attributes_is_refused(store: ThreadStore) -> None:
    with pytest.raises(TypeError, match="attributes"):
        await store.list_threads(attributes=["team"])  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="attributes"):
        await store.list_threads(attributes={"x": float("nan")})


# --- delete_threads ----------------------------------------------------------------------------


async def test_delete_threads_deletes_old_threads_with_their_messages_and_aliases(store: ThreadStore) -> None:
    old = await saved(store, "old", 3, updated_at=LONG_AGO)
    await store.save_thread_alias("old", "old-alias")
    await saved(store, "recent", 2)

    assert await store.delete_threads(older_than=timedelta(days=90)) == 1

    assert await store.get("old") is None
    assert await store.get_by_alias("old-alias") is None
    assert await store.get_thread_by_message_id(old.messages[0].id) is None
    assert contents(await stored(store, "recent")) == ["m1", "m2"]
    assert (await store.get_usage_stats())["total_messages"] == 2
    assert await store.delete_threads(older_than=timedelta(days=90)) == 0


async def test_delete_threads_dry_run_counts_and_changes_nothing(store: ThreadStore) -> None:
    for n in range(4):
        await saved(store, f"old{n}", 1, updated_at=LONG_AGO, attributes={"n": n % 2})
    await saved(store, "recent", 1)

    assert await store.delete_threads(timedelta(days=1), dry_run=True) == 4
    assert await store.delete_threads(timedelta(days=1), {"n": 1}, dry_run=True) == 2
    assert len((await store.list_threads()).threads) == 5


async def test_delete_threads_filters_on_attributes(store: ThreadStore) -> None:
    await saved(store, "a-old", 1, updated_at=LONG_AGO, attributes={"team": "a"})
    await saved(store, "b-old", 1, updated_at=LONG_AGO, attributes={"team": "b"})
    await saved(store, "a-new", 1, attributes={"team": "a"})

    assert await store.delete_threads(timedelta(days=1), attributes={"team": "a"}) == 1

    assert sorted(s.id for s in (await store.list_threads()).threads) == ["a-new", "b-old"]


async def test_delete_threads_goes_in_batches_and_reports_progress(store: ThreadStore) -> None:
    for n in range(7):
        await saved(store, f"old{n}", 2, updated_at=LONG_AGO + timedelta(minutes=n))
    await saved(store, "recent", 1)
    totals: list[int] = []

    assert await store.delete_threads(timedelta(days=1), batch_size=3, progress=totals.append) == 7

    assert totals == [3, 6, 7]
    assert [s.id for s in (await store.list_threads()).threads] == ["recent"]


async def test_delete_threads_keeps_threads_appended_to_while_it_runs(store: ThreadStore) -> None:
    for n in range(40):
        await saved(store, f"old{n:02}", 2, updated_at=LONG_AGO + timedelta(seconds=n))
    appended: dict[str, str] = {}

    async def appender() -> None:
        for n in range(39, -1, -4):  # from the newest, which the deletion reaches last
            message = user(f"late {n}")
            try:
                await store.append(f"old{n:02}", message)
            except NotFoundError:
                continue  # deleted first: the appender is told, nothing is lost silently
            appended[f"old{n:02}"] = message.id
            await asyncio.sleep(0)

    deleted, _ = await asyncio.gather(store.delete_threads(timedelta(days=1), batch_size=1), appender())

    left = {s.id: s for s in (await store.list_threads(limit=100)).threads}
    assert appended and deleted  # the two interleaved
    assert set(left) == set(appended)
    assert deleted == 40 - len(appended)
    for thread_id, message_id in appended.items():
        assert left[thread_id].message_count == 3
        found = await store.get_thread_by_message_id(message_id)
        assert found is not None and found.id == thread_id


@pytest.mark.parametrize(
    "arguments, error",
    [
        ({"older_than": 90}, TypeError),
        ({"older_than": timedelta(days=-1)}, ValueError),
        ({"older_than": timedelta(days=1), "attributes": "x"}, TypeError),
        ({"older_than": timedelta(days=1), "batch_size": 0}, ValueError),
    ],
)
async def test_delete_threads_with_bad_arguments_changes_nothing(
    store: ThreadStore, arguments: dict[str, Any], error: type[Exception]
) -> None:
    await saved(store, "old", 1, updated_at=LONG_AGO)
    with pytest.raises(error):
        await store.delete_threads(**arguments)
    assert await store.get("old") is not None


# --- prune_messages ----------------------------------------------------------------------------


async def test_prune_messages_keeps_the_newest(store: ThreadStore) -> None:
    await saved(store, "t", 10)
    await saved(store, "other", 3)

    assert await store.prune_messages("t", keep_last=4) == 6

    thread = await stored(store, "t")
    assert contents(thread) == ["m7", "m8", "m9", "m10"]
    assert sequences(thread) == [7, 8, 9, 10]  # kept, as after any removal
    assert len((await stored(store, "other")).messages) == 3
    thread.add_message(user("next"))
    await store.save(thread)
    assert sequences(await stored(store, "t")) == [7, 8, 9, 10, 11]
    await store.append("t", user("appended"))
    assert sequences(await stored(store, "t")) == [7, 8, 9, 10, 11, 12]


async def test_prune_messages_edges(store: ThreadStore) -> None:
    await saved(store, "t", 3)
    assert await store.prune_messages("t", keep_last=3) == 0
    assert await store.prune_messages("t", keep_last=200) == 0
    assert await store.prune_messages("t") == 0
    assert await store.prune_messages("t", keep_last=0) == 3
    assert contents(await stored(store, "t")) == []
    with pytest.raises(NotFoundError):
        await store.prune_messages("missing")
    with pytest.raises(ValueError, match="keep_last"):
        await store.prune_messages("t", keep_last=-1)


async def test_prune_messages_keeps_what_is_appended_meanwhile(store: ThreadStore) -> None:
    await saved(store, "t", 30)

    async def appender() -> None:
        for n in range(5):
            await store.append("t", user(f"late {n}"))
            await asyncio.sleep(0)

    results = await asyncio.gather(
        store.prune_messages("t", keep_last=5), appender(), store.prune_messages("t", keep_last=5)
    )

    thread = await stored(store, "t")
    assert [f"late {n}" for n in range(5)] == [c for c in contents(thread) if c.startswith("late")]
    assert sequences(thread) == list(range(36 - len(thread.messages), 36))  # the newest, unrenumbered
    assert results[0] + results[2] + len(thread.messages) == 35


async def test_a_partial_thread_saved_after_a_prune_keeps_the_rest(store: ThreadStore) -> None:
    await saved(store, "t", 10)
    partial = await stored_last(store, "t", 2)
    await store.prune_messages("t", keep_last=5)

    partial.add_message(user("new"))
    partial.messages[0].content = "edited m9"
    await store.save(partial)

    assert contents(await stored(store, "t")) == ["m6", "m7", "m8", "edited m9", "m10", "new"]
