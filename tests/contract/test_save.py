"""save(): what a save writes, on every backend alike (the memory backend is the reference).

Round trips, system messages, writing only what changed, edits, removals (nothing renumbered),
copies between stores, conflicts, values JSON cannot carry, and atomicity of a failing save.
Two writers, many concurrent saves and cancellation live in test_concurrency.py.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import msgspec
import pytest

from tests.helpers import assistant, contents, conversation, sequences, stored, user
from threadstore import Attachment, ConflictError, Message, Thread, ThreadStore


async def saved_and_loaded(store: ThreadStore, *texts: str) -> Thread:
    """A thread with those user messages, saved, then loaded afresh."""
    thread = conversation(*texts)
    await store.save(thread)
    return await stored(store, thread.id)


# --- the return value and the round trip --------------------------------------------------------


async def test_save_returns_the_same_thread_object(store: ThreadStore) -> None:
    thread = conversation("hello")
    assert await store.save(thread) is thread


def rich_thread() -> Thread:
    """A thread using every field, with values that are easy to get subtly wrong."""
    thread = Thread(
        id="round-trip-thread",
        title="Ünïcødé 🧵 title — “quoted”",
        attributes={
            "customer": {"tier": "gold", "tags": ["a", "b"], "score": 0.25, "visits": 12},
            "emoji": "😀",
            "中文": "测试",
            "empty": {},
            "none": None,
            "flag": False,
            "big": 2**62,
            "negative": -7,
            "escaped": 'quote " backslash \\ newline \n tab \t',
        },
        platforms={"slack": {"channel": "C123", "thread_ts": "1700000000.000100"}},
        source={"name": "slack", "team": "T1"},
        created_at=datetime(2020, 2, 29, 13, 14, 15, 123456, tzinfo=UTC),
    )
    thread.add_message(
        Message(
            role="user",
            content=[
                {"type": "text", "text": "What is in this image?"},
                {"type": "image_url", "image_url": {"url": "https://example.com/a.png", "detail": "high"}},
            ],
            name="alice",
            source={"name": "slack", "user": "U1"},
            platforms={"slack": {"ts": "1700000000.000200"}},
            attributes={"nested": [1, 2.5, None, True, "x", {"deep": {"deeper": "é"}}]},
            timestamp=datetime(2020, 2, 29, 13, 14, 16, 1, tzinfo=UTC),
            turn=1,
        )
    )
    thread.add_message(
        Message(
            role="assistant",
            content=None,
            reasoning_content="Thinking about it…",
            tool_calls=[
                {"id": "call_1", "type": "function", "function": {"name": "lookup", "arguments": '{"q": 1}'}}
            ],
            metrics={
                "model": "gpt-4o",
                "usage": {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15},
                "timing": {"started_at": "2020-02-29T13:14:16Z", "ended_at": None, "latency": 12.5},
            },
            timestamp=datetime(2020, 2, 29, 13, 14, 17, 999999, tzinfo=UTC),
            turn=1,
        )
    )
    thread.add_message(
        Message(
            role="tool",
            tool_call_id="call_1",
            name="lookup",
            content='{"result": 42}',
            timestamp=datetime(2020, 2, 29, 13, 14, 18, 500000, tzinfo=UTC),
        )
    )
    thread.add_message(
        Message(
            role="assistant",
            content="The answer is 42.",
            id="explicit-message-id",
            reactions={"👍": ["U1", "U2"], "🎉": ["U3"]},
            attachments=[
                Attachment(
                    filename="notes.txt",
                    mime_type="text/plain",
                    file_id="f" * 64,
                    storage_path=f"ff/ff/{'f' * 64}",
                    storage_backend="local",
                    status="stored",
                    processed_content="Ünïcødé notes",
                    attributes={"type": "text", "size": 13},
                )
            ],
            timestamp=datetime(2020, 2, 29, 13, 14, 19, 10, tzinfo=UTC),
        )
    )
    thread.updated_at = datetime(2021, 3, 1, 1, 2, 3, 654321, tzinfo=UTC)
    return thread


async def test_everything_saved_reads_back_equal(store: ThreadStore) -> None:
    thread = rich_thread()
    await store.save(thread)

    loaded = await stored(store, thread.id)

    assert loaded.title == "Ünïcødé 🧵 title — “quoted”"
    assert loaded.attributes == thread.attributes
    assert loaded.platforms == {"slack": {"channel": "C123", "thread_ts": "1700000000.000100"}}
    assert loaded.source == {"name": "slack", "team": "T1"}
    assert loaded.created_at == datetime(2020, 2, 29, 13, 14, 15, 123456, tzinfo=UTC)
    assert loaded.updated_at == datetime(2021, 3, 1, 1, 2, 3, 654321, tzinfo=UTC)
    assert sequences(loaded) == [1, 2, 3, 4]
    assert [m.thread_id for m in loaded.messages] == [thread.id] * 4
    assert [m.timestamp.microsecond for m in loaded.messages] == [1, 999999, 500000, 10]
    assert loaded.messages[3].attachments == thread.messages[3].attachments
    for got, sent in zip(loaded.messages, thread.messages, strict=True):
        assert got == sent
    assert loaded == thread
    assert identical(loaded, thread)


async def test_list_returns_the_same_documents_as_get(store: ThreadStore) -> None:
    thread = rich_thread()
    await store.save(thread)

    assert await store.list() == [thread]
    assert await store.list_recent() == [thread]


async def test_times_read_back_as_aware_utc(store: ThreadStore) -> None:
    plus_five = timezone(timedelta(hours=5))
    thread = Thread(created_at=datetime(2020, 1, 1, 12, 0, tzinfo=plus_five))
    thread.add_message(user("hi", timestamp=datetime(2020, 1, 1, 12, 30, tzinfo=plus_five)))
    thread.updated_at = datetime(2020, 1, 1, 13, 0, tzinfo=plus_five)
    await store.save(thread)

    loaded = await stored(store, thread.id)

    assert loaded.created_at == datetime(2020, 1, 1, 7, 0, tzinfo=UTC)
    assert loaded.created_at.tzinfo is UTC
    assert loaded.updated_at == datetime(2020, 1, 1, 8, 0, tzinfo=UTC)
    assert loaded.updated_at.tzinfo is UTC
    assert loaded.messages[0].timestamp == datetime(2020, 1, 1, 7, 30, tzinfo=UTC)
    assert loaded.messages[0].timestamp.tzinfo is UTC


async def test_messages_given_to_the_constructor_are_numbered_in_list_order(store: ThreadStore) -> None:
    thread = Thread(messages=[user("first", sequence=99), assistant("second"), user("third", sequence=7)])
    await store.save(thread)

    loaded = await stored(store, thread.id)
    assert contents(loaded) == ["first", "second", "third"]
    assert sequences(loaded) == [1, 2, 3]
    assert sequences(thread) == [1, 2, 3]


async def test_an_empty_thread_round_trips(store: ThreadStore) -> None:
    thread = Thread(id="empty", title="")
    await store.save(thread)

    loaded = await stored(store, "empty")
    assert loaded == thread
    assert loaded.messages == []
    assert loaded.title == ""


async def test_header_changes_are_saved(store: ThreadStore) -> None:
    loaded = await saved_and_loaded(store, "hi")
    loaded.title = "Renamed"
    loaded.attributes = {"k": "v"}
    loaded.platforms = {"teams": {"chat": "19:abc"}}
    loaded.source = {"name": "teams"}
    loaded.updated_at = datetime(2030, 1, 1, tzinfo=UTC)
    await store.save(loaded)

    again = await stored(store, loaded.id)
    assert (again.title, again.attributes, again.platforms, again.source, again.updated_at) == (
        "Renamed",
        {"k": "v"},
        {"teams": {"chat": "19:abc"}},
        {"name": "teams"},
        datetime(2030, 1, 1, tzinfo=UTC),
    )
    assert contents(again) == ["hi"]

    again.source = None
    await store.save(again)
    assert (await stored(store, loaded.id)).source is None


async def test_created_at_given_is_kept(store: ThreadStore) -> None:
    thread = Thread(created_at=datetime(2020, 5, 17, 8, 9, 10, 111111, tzinfo=UTC))
    thread.add_message(user("hi"))
    await store.save(thread)
    thread.add_message(user("again"))
    await store.save(thread)

    assert (await stored(store, thread.id)).created_at == datetime(2020, 5, 17, 8, 9, 10, 111111, tzinfo=UTC)


# --- system messages ---------------------------------------------------------------------------


async def test_system_messages_are_not_written_but_stay_on_the_callers_thread(store: ThreadStore) -> None:
    thread = Thread()
    thread.add_message(user("question"))
    thread.ensure_system_prompt("You are helpful.")
    thread.add_message(assistant("answer"))
    await store.save(thread)

    assert [m.role for m in thread.messages] == ["system", "user", "assistant"]
    assert sequences(thread) == [0, 1, 2]
    loaded = await stored(store, thread.id)
    assert [(m.role, m.content, m.sequence) for m in loaded.messages] == [
        ("user", "question", 1),
        ("assistant", "answer", 2),
    ]
    assert loaded.get_system_message() is None


async def test_a_system_prompt_added_to_a_loaded_thread_is_not_written(store: ThreadStore) -> None:
    loaded = await saved_and_loaded(store, "one", "two")
    loaded.ensure_system_prompt("Be brief.")
    loaded.get_system_message().content = "Be very brief."  # type: ignore[union-attr]  # an edit of it is not written either
    loaded.add_message(assistant("three"))
    await store.save(loaded)

    again = await stored(store, loaded.id)
    assert [(m.role, m.content, m.sequence) for m in again.messages] == [
        ("user", "one", 1),
        ("user", "two", 2),
        ("assistant", "three", 3),
    ]
    assert loaded.messages[0].role == "system"


async def test_a_thread_holding_only_a_system_message_stores_no_messages(store: ThreadStore) -> None:
    thread = Thread()
    thread.ensure_system_prompt("Only a prompt.")
    await store.save(thread)

    assert (await stored(store, thread.id)).messages == []


# --- writing only what changed -----------------------------------------------------------------


async def test_appending_to_a_loaded_thread_keeps_the_old_messages_and_numbers_the_new_one(
    store: ThreadStore,
) -> None:
    loaded = await saved_and_loaded(store, "one", "two", "three")
    before = (await stored(store, loaded.id)).messages
    new = assistant("four")
    loaded.add_message(new)
    await store.save(loaded)

    again = await stored(store, loaded.id)
    assert again.messages[:3] == before
    assert contents(again) == ["one", "two", "three", "four"]
    assert sequences(again) == [1, 2, 3, 4]
    assert new.sequence == 4
    assert new.thread_id == loaded.id


async def test_saving_the_same_object_repeatedly_appends_each_time(store: ThreadStore) -> None:
    thread = conversation("a")
    await store.save(thread)
    for text in ("b", "c", "d"):
        thread.add_message(user(text))
        await store.save(thread)

    again = await stored(store, thread.id)
    assert contents(again) == ["a", "b", "c", "d"]
    assert sequences(again) == [1, 2, 3, 4]
    assert sequences(thread) == [1, 2, 3, 4]


async def test_saving_an_unchanged_thread_changes_nothing(store: ThreadStore) -> None:
    loaded = await saved_and_loaded(store, "one", "two")
    snapshot = await stored(store, loaded.id)
    await store.save(loaded)
    await store.save(loaded)

    assert await stored(store, loaded.id) == snapshot


async def test_saving_a_fresh_copy_of_a_stored_thread_does_not_duplicate_messages(
    store: ThreadStore,
) -> None:
    thread = conversation("one", "two")
    await store.save(thread)
    copy = Thread(
        id=thread.id,
        title=thread.title,
        messages=list(thread.messages),
        created_at=thread.created_at,
        updated_at=thread.updated_at,
    )
    copy.add_message(user("three"))
    await store.save(copy)

    again = await stored(store, thread.id)
    assert contents(again) == ["one", "two", "three"]
    assert sequences(again) == [1, 2, 3]


async def test_a_copy_holding_stored_messages_gets_their_stored_sequences(store: ThreadStore) -> None:
    thread = conversation("one", "two", "three")
    await store.save(thread)
    copies = [
        Message(role="user", content=m.content, timestamp=m.timestamp, id=m.id) for m in thread.messages
    ]
    copy = Thread(id=thread.id, messages=[copies[2], copies[0], copies[1]])
    copy.add_message(user("four"))
    await store.save(copy)

    assert [(m.content, m.sequence) for m in copy.messages] == [
        ("three", 3),
        ("one", 1),
        ("two", 2),
        ("four", 4),
    ]
    again = await stored(store, thread.id)
    assert contents(again) == ["one", "two", "three", "four"]
    assert sequences(again) == [1, 2, 3, 4]


# --- edits -------------------------------------------------------------------------------------


def _set_content(thread: Thread, message: Message) -> None:
    message.content = "edited"


def _set_content_parts(thread: Thread, message: Message) -> None:
    message.content = [{"type": "text", "text": "as parts"}]


def _set_attributes(thread: Thread, message: Message) -> None:
    message.attributes = {"flag": "on", "n": [1, 2]}


def _set_metrics(thread: Thread, message: Message) -> None:
    message.metrics = {
        "model": "m1",
        "usage": {"prompt_tokens": 3, "completion_tokens": 4, "total_tokens": 7},
        "timing": {"latency": 1.5},
    }


def _add_reaction(thread: Thread, message: Message) -> None:
    assert thread.add_reaction(message.id, "👍", "U1") is True


def _nested_change_marked_edited(thread: Thread, message: Message) -> None:
    message.attributes["k"] = 1
    message.metrics["usage"]["total_tokens"] = 99
    thread.mark_edited(message)


def _nested_change_marked_edited_by_id(thread: Thread, message: Message) -> None:
    message.attributes["k"] = 1
    thread.mark_edited(message.id)


EDITS: dict[str, Callable[[Thread, Message], None]] = {
    "content": _set_content,
    "content_parts": _set_content_parts,
    "attributes": _set_attributes,
    "metrics": _set_metrics,
    "add_reaction": _add_reaction,
    "nested_change_marked_edited": _nested_change_marked_edited,
    "nested_change_marked_edited_by_id": _nested_change_marked_edited_by_id,
}


@pytest.mark.parametrize("edit", EDITS.values(), ids=EDITS.keys())
async def test_an_edit_of_a_loaded_message_is_saved(
    store: ThreadStore, edit: Callable[[Thread, Message], None]
) -> None:
    loaded = await saved_and_loaded(store, "one", "two", "three")
    before = await stored(store, loaded.id)
    target = loaded.messages[1]
    edit(loaded, target)
    await store.save(loaded)

    again = await stored(store, loaded.id)
    assert again.messages[1] == target
    assert [again.messages[0], again.messages[2]] == [before.messages[0], before.messages[2]]
    assert again.messages[1] != before.messages[1]
    assert sequences(again) == [1, 2, 3]


@pytest.mark.parametrize("edit", EDITS.values(), ids=EDITS.keys())
async def test_an_edit_of_a_message_on_the_object_just_saved_is_saved(
    store: ThreadStore, edit: Callable[[Thread, Message], None]
) -> None:
    thread = conversation("one", "two")
    await store.save(thread)
    edit(thread, thread.messages[0])
    await store.save(thread)

    again = await stored(store, thread.id)
    assert again.messages == thread.messages


async def test_a_stored_message_replaced_by_a_changed_copy_is_saved(store: ThreadStore) -> None:
    loaded = await saved_and_loaded(store, "one", "two", "three")
    replacement = msgspec.structs.replace(loaded.messages[1], content="replaced")
    loaded.messages[1] = replacement
    await store.save(loaded)
    assert contents(await stored(store, loaded.id)) == ["one", "replaced", "three"]

    replacement.content = "edited afterwards"  # the replacement is tracked from now on
    await store.save(loaded)
    again = await stored(store, loaded.id)
    assert contents(again) == ["one", "edited afterwards", "three"]
    assert sequences(again) == [1, 2, 3]


async def test_an_equal_copy_put_in_place_of_a_stored_message_then_edited_is_saved(
    store: ThreadStore,
) -> None:
    loaded = await saved_and_loaded(store, "one", "two")
    copy = msgspec.structs.replace(loaded.messages[0])
    loaded.messages[0] = copy
    await store.save(loaded)
    copy.content = "edited copy"
    await store.save(loaded)
    assert contents(await stored(store, loaded.id)) == ["edited copy", "two"]


async def test_removing_a_reaction_is_saved(store: ThreadStore) -> None:
    thread = conversation("one")
    thread.add_reaction(thread.messages[0].id, "👍", "U1")
    thread.add_reaction(thread.messages[0].id, "👍", "U2")
    await store.save(thread)
    loaded = await stored(store, thread.id)
    assert loaded.remove_reaction(loaded.messages[0].id, "👍", "U1") is True
    await store.save(loaded)

    assert (await stored(store, thread.id)).get_reactions(thread.messages[0].id) == {"👍": ["U2"]}


async def test_an_edit_and_an_append_in_one_save(store: ThreadStore) -> None:
    loaded = await saved_and_loaded(store, "one", "two")
    loaded.messages[0].content = "one, edited"
    loaded.add_message(user("three"))
    await store.save(loaded)

    again = await stored(store, loaded.id)
    assert contents(again) == ["one, edited", "two", "three"]
    assert sequences(again) == [1, 2, 3]


async def test_a_message_edited_to_an_invalid_value_is_rejected_and_nothing_changes(
    store: ThreadStore,
) -> None:
    loaded = await saved_and_loaded(store, "one", "two")
    before = await stored(store, loaded.id)
    loaded.messages[0].role = "narrator"  # type: ignore[assignment]
    loaded.add_message(user("three"))

    with pytest.raises(ValueError):
        await store.save(loaded)
    assert await stored(store, loaded.id) == before


# --- removals ----------------------------------------------------------------------------------


async def test_removing_a_message_deletes_it_and_leaves_the_rest_as_they_were(store: ThreadStore) -> None:
    loaded = await saved_and_loaded(store, "one", "two", "three", "four")
    assert loaded.remove_message(loaded.messages[1].id) is True
    await store.save(loaded)

    again = await stored(store, loaded.id)
    assert contents(again) == ["one", "three", "four"]
    assert sequences(again) == [1, 3, 4]  # never renumbered: a sequence held as a cursor holds
    assert sequences(loaded) == [1, 3, 4]
    assert again.messages == loaded.messages


@pytest.mark.parametrize("position", [0, 2, 4])
async def test_removing_first_middle_or_last_message_keeps_the_others_sequences(
    store: ThreadStore, position: int
) -> None:
    texts = ["a", "b", "c", "d", "e"]
    loaded = await saved_and_loaded(store, *texts)
    loaded.remove_message(loaded.messages[position].id)
    await store.save(loaded)

    again = await stored(store, loaded.id)
    assert contents(again) == texts[:position] + texts[position + 1 :]
    kept = [n for n in range(1, 6) if n != position + 1]
    assert sequences(again) == kept
    assert sequences(loaded) == kept
    loaded.add_message(user("f"))  # numbered after the highest ever handed out
    await store.save(loaded)
    assert sequences(await stored(store, loaded.id)) == [*kept, 6]


async def test_removing_several_messages_and_appending_in_one_save(store: ThreadStore) -> None:
    loaded = await saved_and_loaded(store, "a", "b", "c", "d")
    loaded.remove_message(loaded.messages[0].id)
    loaded.remove_message(loaded.messages[1].id)  # "c"
    loaded.add_message(user("e"))
    await store.save(loaded)

    again = await stored(store, loaded.id)
    assert contents(again) == ["b", "d", "e"]
    assert sequences(again) == [2, 4, 5]
    assert sequences(loaded) == [2, 4, 5]

    loaded.add_message(user("f"))
    await store.save(loaded)
    again = await stored(store, loaded.id)
    assert contents(again) == ["b", "d", "e", "f"]
    assert sequences(again) == [2, 4, 5, 6]


async def test_removing_from_the_object_just_saved(store: ThreadStore) -> None:
    thread = conversation("a", "b", "c")
    await store.save(thread)
    thread.remove_message(thread.messages[0].id)
    await store.save(thread)

    again = await stored(store, thread.id)
    assert contents(again) == ["b", "c"]
    assert sequences(again) == [2, 3]
    assert sequences(thread) == [2, 3]


async def test_clear_messages_deletes_them_all_and_numbering_goes_on(store: ThreadStore) -> None:
    loaded = await saved_and_loaded(store, "a", "b", "c")
    loaded.clear_messages()
    await store.save(loaded)
    assert (await stored(store, loaded.id)).messages == []

    loaded.add_message(user("fresh start"))
    await store.save(loaded)
    again = await stored(store, loaded.id)
    assert contents(again) == ["fresh start"]
    assert sequences(again) == [4]
    assert sequences(loaded) == [4]


async def test_clear_and_append_in_one_save(store: ThreadStore) -> None:
    loaded = await saved_and_loaded(store, "a", "b", "c")
    loaded.clear_messages()
    loaded.add_message(user("only"))
    await store.save(loaded)

    again = await stored(store, loaded.id)
    assert contents(again) == ["only"]
    assert sequences(again) == [4]
    assert sequences(loaded) == [4]


async def test_removing_keeps_the_system_message_on_the_callers_thread(store: ThreadStore) -> None:
    thread = conversation("a", "b", "c")
    thread.ensure_system_prompt("sys")
    await store.save(thread)
    thread.remove_message(thread.messages[1].id)  # "a"
    await store.save(thread)

    assert [(m.role, m.sequence) for m in thread.messages] == [("system", 0), ("user", 2), ("user", 3)]
    again = await stored(store, thread.id)
    assert contents(again) == ["b", "c"]
    assert sequences(again) == [2, 3]


async def test_a_message_removed_and_saved_can_then_be_saved_in_another_thread(
    store: ThreadStore,
) -> None:
    first = conversation("moving", "staying")
    await store.save(first)
    moving = first.messages[0]
    first.remove_message(moving.id)
    await store.save(first)

    second = Thread()
    second.add_message(moving)
    await store.save(second)

    assert contents(await stored(store, second.id)) == ["moving"]
    assert contents(await stored(store, first.id)) == ["staying"]


# --- copying between stores --------------------------------------------------------------------


async def test_a_thread_loaded_from_another_store_is_copied_whole(
    store: ThreadStore, open_store: Callable[..., Any]
) -> None:
    other = await open_store(None)
    thread = rich_thread()
    await other.save(thread)
    loaded = await stored(other, thread.id)
    loaded.add_message(user("added before the copy"))
    await store.save(loaded)

    copy = await stored(store, thread.id)
    assert len(copy.messages) == 5
    assert copy.messages[:4] == thread.messages
    assert contents(copy)[4] == "added before the copy"
    assert sequences(copy) == [1, 2, 3, 4, 5]
    assert copy.title == thread.title and copy.attributes == thread.attributes


async def test_a_thread_loaded_from_this_store_is_copied_whole_to_another(
    store: ThreadStore, open_store: Callable[..., Any]
) -> None:
    other = await open_store(None)
    loaded = await saved_and_loaded(store, "one", "two", "three")
    await other.save(loaded)

    copy = await stored(other, loaded.id)
    assert contents(copy) == ["one", "two", "three"]
    assert sequences(copy) == [1, 2, 3]

    loaded.add_message(user("four"))  # and back again: nothing doubles
    await store.save(loaded)
    assert contents(await stored(store, loaded.id)) == ["one", "two", "three", "four"]
    await other.save(loaded)
    assert contents(await stored(other, loaded.id)) == ["one", "two", "three", "four"]
    assert sequences(await stored(other, loaded.id)) == [1, 2, 3, 4]


# --- conflicts ---------------------------------------------------------------------------------


async def test_a_message_stored_in_another_thread_is_a_conflict_and_nothing_is_created(
    store: ThreadStore,
) -> None:
    first = conversation("shared", "own")
    await store.save(first)
    before = await stored(store, first.id)

    second = Thread(title="second")
    second.add_message(user("valid new message"))
    second.add_message(first.messages[0])

    # One wording on every backend (the three said it three ways).
    with pytest.raises(ConflictError) as raised:
        await store.save(second)
    assert str(raised.value) == f"message {first.messages[0].id!r} is already stored"
    assert await store.get(second.id) is None
    assert await stored(store, first.id) == before
    assert [t.id for t in await store.list()] == [first.id]


async def test_a_conflicting_save_of_an_existing_thread_changes_nothing(store: ThreadStore) -> None:
    first = conversation("shared")
    await store.save(first)
    second = await saved_and_loaded(store, "mine 1", "mine 2", "mine 3")
    before = await stored(store, second.id)

    second.title = "changed title"
    second.attributes = {"changed": True}
    second.messages[0].content = "mine 1, edited"
    second.remove_message(second.messages[1].id)
    second.add_message(user("valid new message"))
    second.add_message(first.messages[0])

    with pytest.raises(ConflictError):
        await store.save(second)
    assert await stored(store, second.id) == before


async def test_after_a_conflict_the_thread_can_be_fixed_and_saved(store: ThreadStore) -> None:
    first = conversation("shared")
    await store.save(first)
    second = await saved_and_loaded(store, "a", "b", "c")
    second.messages[0].content = "a, edited"
    second.remove_message(second.messages[1].id)  # "b"
    second.add_message(user("d"))
    second.add_message(first.messages[0])
    with pytest.raises(ConflictError):
        await store.save(second)

    second.remove_message(first.messages[0].id)
    await store.save(second)

    again = await stored(store, second.id)
    assert contents(again) == ["a, edited", "c", "d"]
    assert sequences(again) == [1, 3, 4]
    assert sequences(second) == [1, 3, 4]
    assert contents(await stored(store, first.id)) == ["shared"]


async def test_the_same_message_twice_in_one_thread_is_rejected_before_writing(
    store: ThreadStore,
) -> None:
    message = user("twice")
    thread = Thread(messages=[message, user("other"), message])

    with pytest.raises(ValueError):
        await store.save(thread)
    assert await store.get(thread.id) is None


async def test_the_same_message_appended_twice_to_a_loaded_thread_is_rejected(
    store: ThreadStore,
) -> None:
    loaded = await saved_and_loaded(store, "one")
    loaded.messages.append(loaded.messages[0])

    with pytest.raises(ValueError):
        await store.save(loaded)
    again = await stored(store, loaded.id)
    assert contents(again) == ["one"]


# --- values JSON cannot carry back, and atomicity ----------------------------------------------

BAD_VALUES: dict[str, Any] = {
    "tuple": (1, 2),
    "set": {1, 2},
    "frozenset": frozenset({"a"}),
    "bytes": b"raw",
    "datetime": datetime(2020, 1, 1, tzinfo=UTC),
    "non_string_key": {1: "one"},
    "nan": float("nan"),
    "infinity": float("inf"),
}


def _thread_attribute(thread: Thread, value: Any) -> None:
    thread.attributes = {"ok": 1, "bad": {"inner": value}}


def _thread_platform(thread: Thread, value: Any) -> None:
    thread.platforms = {"slack": {"channel": value}}


def _thread_source(thread: Thread, value: Any) -> None:
    thread.source = {"name": "slack", "bad": value}


def _new_message_attribute(thread: Thread, value: Any) -> None:
    thread.add_message(user("bad one", attributes={"bad": [value]}))


def _stored_message_attribute(thread: Thread, value: Any) -> None:
    thread.messages[0].attributes = {"bad": value}


def _stored_message_metrics(thread: Thread, value: Any) -> None:
    thread.messages[0].metrics = {"model": None, "usage": {"prompt_tokens": value}}


PLACES: dict[str, Callable[[Thread, Any], None]] = {
    "thread_attribute": _thread_attribute,
    "thread_platform": _thread_platform,
    "thread_source": _thread_source,
    "new_message_attribute": _new_message_attribute,
    "stored_message_attribute": _stored_message_attribute,
    "stored_message_metrics": _stored_message_metrics,
}


@pytest.mark.parametrize("value", BAD_VALUES.values(), ids=BAD_VALUES.keys())
@pytest.mark.parametrize("place", PLACES.values(), ids=PLACES.keys())
async def test_a_value_json_cannot_carry_back_is_rejected_and_nothing_is_written(
    store: ThreadStore, place: Callable[[Thread, Any], None], value: Any
) -> None:
    loaded = await saved_and_loaded(store, "one", "two")
    before = await stored(store, loaded.id)
    loaded.title = "should not be written"
    loaded.add_message(user("valid new message"))
    place(loaded, value)

    with pytest.raises((ValueError, TypeError)):
        await store.save(loaded)
    assert await stored(store, loaded.id) == before


@pytest.mark.parametrize("value", BAD_VALUES.values(), ids=BAD_VALUES.keys())
async def test_a_new_thread_with_a_value_json_cannot_carry_back_is_not_created(
    store: ThreadStore, value: Any
) -> None:
    thread = conversation("hi")
    thread.attributes = {"bad": value}

    with pytest.raises((ValueError, TypeError)):
        await store.save(thread)
    assert await store.get(thread.id) is None
    assert await store.list() == []


def _attributes_not_a_dict(thread: Thread) -> None:
    thread.attributes = ["not", "a", "dict"]  # type: ignore[assignment]


def _platform_reference_not_a_dict(thread: Thread) -> None:
    thread.platforms = {"slack": "C123"}  # type: ignore[dict-item]


def _source_without_name(thread: Thread) -> None:
    thread.source = {"team": "T1"}


def _source_not_a_dict(thread: Thread) -> None:
    thread.source = "slack"  # type: ignore[assignment]


INVALID_HEADERS: dict[str, Callable[[Thread], None]] = {
    "attributes_not_a_dict": _attributes_not_a_dict,
    "platform_reference_not_a_dict": _platform_reference_not_a_dict,
    "source_without_name": _source_without_name,
    "source_not_a_dict": _source_not_a_dict,
}


@pytest.mark.parametrize("invalidate", INVALID_HEADERS.values(), ids=INVALID_HEADERS.keys())
async def test_a_thread_header_assigned_an_invalid_value_is_rejected_at_save(
    store: ThreadStore, invalidate: Callable[[Thread], None]
) -> None:
    healthy = conversation("healthy")
    await store.save(healthy)
    loaded = await saved_and_loaded(store, "one")
    before = await stored(store, loaded.id)
    invalidate(loaded)

    try:
        with pytest.raises((ValueError, TypeError)):
            await store.save(loaded)
        assert await stored(store, loaded.id) == before
        assert {t.id for t in await store.list()} == {healthy.id, loaded.id}
    finally:
        await store.delete(loaded.id)  # a stored invalid thread would break later list() calls


@pytest.mark.parametrize(
    "invalidate",
    [lambda t: setattr(t, "id", ""), lambda t: setattr(t, "id", 42), lambda t: setattr(t, "title", None)],
    ids=["empty_id", "int_id", "title_none"],
)
async def test_a_thread_assigned_an_invalid_id_or_title_is_rejected(
    store: ThreadStore, invalidate: Callable[[Thread], None]
) -> None:
    thread = conversation("hi")
    invalidate(thread)

    with pytest.raises((TypeError, ValueError)):
        await store.save(thread)
    assert await store.list() == []


@pytest.mark.parametrize(
    "intruder", ["hello", {"role": "user", "content": "hi"}, None], ids=["str", "dict", "none"]
)
async def test_something_not_a_message_in_the_messages_is_a_type_error(
    store: ThreadStore, intruder: Any
) -> None:
    loaded = await saved_and_loaded(store, "one")
    before = await stored(store, loaded.id)
    loaded.add_message(user("valid new message"))
    loaded.messages.append(intruder)

    with pytest.raises(TypeError):
        await store.save(loaded)
    assert await stored(store, loaded.id) == before


@pytest.mark.parametrize("not_a_thread", [None, "thread-id", {"id": "x"}], ids=["none", "str", "dict"])
async def test_save_takes_only_a_thread(store: ThreadStore, not_a_thread: Any) -> None:
    with pytest.raises(TypeError):
        await store.save(not_a_thread)


async def test_json_edge_values_that_do_round_trip(store: ThreadStore) -> None:
    attributes = {
        "huge_int": 2**70,
        "min_int64": -(2**63),
        "tiny": 5e-324,
        "third": 1 / 3,
        "one_float": 1.0,
        "empty_key": {"": ""},
        "line_separators": "\u2028\u2029",
        "control": "\x01\x1f\x7f",
        "astral": "𝄞🧵",
        "deep": {"a": {"b": {"c": {"d": [[[]]]}}}},
    }
    thread = conversation("hi", attributes=attributes)
    await store.save(thread)

    loaded = await stored(store, thread.id)
    assert loaded.attributes == attributes
    assert type(loaded.attributes["one_float"]) is float
    assert type(loaded.attributes["huge_int"]) is int


# Values some database cannot give back unchanged. The contract is that every backend treats
# them alike: each one either reads back exactly as saved, or save() refuses it with ValueError
# or TypeError before writing anything. Each case is compared with a reference in-memory store.

EDGE_TIME = datetime(2024, 1, 1, tzinfo=UTC)


def _edge_thread(**fields: Any) -> Thread:
    return Thread(id="edge", created_at=EDGE_TIME, updated_at=EDGE_TIME, **fields)


def _edge_message(**fields: Any) -> Thread:
    message = Message(id="edge-message", role="user", content="x", timestamp=EDGE_TIME)
    for name, value in fields.items():
        setattr(message, name, value)
    return Thread(id="edge", messages=[message], created_at=EDGE_TIME, updated_at=EDGE_TIME)


EDGE_CASES = [
    pytest.param(lambda: _edge_thread(attributes={"f": 1e16}), id="float_1e16"),
    pytest.param(lambda: _edge_thread(attributes={"f": 1e100}), id="float_1e100"),
    pytest.param(lambda: _edge_thread(attributes={"f": -2.5e20}), id="float_negative_2_5e20"),
    pytest.param(lambda: _edge_thread(attributes={"f": -0.0}), id="float_negative_zero"),
    pytest.param(lambda: _edge_message(metrics={"timing": {"latency": 1e22}}), id="message_float_1e22"),
    pytest.param(lambda: _edge_thread(attributes={"f": 1e15, "g": 1e-7, "h": 0.1}), id="plain_floats"),
    pytest.param(lambda: _edge_thread(attributes={"i": 2**64 + 1, "j": -(2**70)}), id="huge_ints"),
    pytest.param(lambda: _edge_message(turn=2**31), id="turn_beyond_32_bits"),
    pytest.param(lambda: _edge_message(turn=2**63), id="turn_beyond_64_bits"),
    pytest.param(lambda: _edge_message(turn=-3), id="negative_turn"),
    pytest.param(lambda: _edge_message(timestamp=datetime.min.replace(tzinfo=UTC)), id="timestamp_min"),
    pytest.param(lambda: _edge_message(timestamp=datetime.max.replace(tzinfo=UTC)), id="timestamp_max"),
    pytest.param(
        lambda: Thread(id="edge", created_at=datetime.min.replace(tzinfo=UTC), updated_at=EDGE_TIME),
        id="created_at_min",
    ),
    pytest.param(
        lambda: Thread(id="edge", created_at=EDGE_TIME, updated_at=datetime.max.replace(tzinfo=UTC)),
        id="updated_at_max",
    ),
    pytest.param(
        lambda: Thread(
            id="edge",
            created_at=datetime(1899, 12, 31, 23, 59, 59, 999999, tzinfo=UTC),
            updated_at=datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC),
        ),
        id="far_past_and_future",
    ),
]


def identical(a: Any, b: Any) -> bool:
    """Equal and of the same types all the way down (1e16 is not 10**16, -0.0 is not 0.0);
    dicts compare regardless of key order."""
    if type(a) is not type(b):
        return False
    if isinstance(a, msgspec.Struct):
        return all(identical(getattr(a, f), getattr(b, f)) for f in a.__struct_fields__)
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(identical(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(identical(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, float):
        return a == b and math.copysign(1.0, a) == math.copysign(1.0, b)
    return bool(a == b)


async def _outcome(store: ThreadStore, thread: Thread) -> str:
    try:
        await store.save(thread)
    except (ValueError, TypeError):
        return "refused"
    loaded = await store.get(thread.id)
    return "stored as given" if identical(loaded, thread) else f"stored changed: {loaded!r}"


@pytest.mark.parametrize("make", EDGE_CASES)
async def test_an_edge_value_is_treated_alike_on_every_backend(
    store: ThreadStore, open_store: Callable[..., Any], make: Callable[[], Thread]
) -> None:
    reference = await open_store(None)
    healthy = conversation("healthy")
    await store.save(healthy)
    try:
        expected = await _outcome(reference, make())
        assert expected in ("stored as given", "refused")
        assert await _outcome(store, make()) == expected
        if expected == "refused":
            assert await store.get("edge") is None
        assert {t.id for t in await store.list()} == {healthy.id} | (
            {"edge"} if expected != "refused" else set()
        )
    finally:
        await store.delete("edge")  # a bad stored thread would break later list() calls


def _nul_in_attributes(thread: Thread) -> None:
    thread.attributes = {"k": "before\x00after"}


def _nul_in_title(thread: Thread) -> None:
    thread.title = "before\x00after"


def _nul_in_content(thread: Thread) -> None:
    thread.add_message(user("before\x00after"))


def _nul_in_content_parts(thread: Thread) -> None:
    thread.add_message(Message(role="user", content=[{"type": "text", "text": "before\x00after"}]))


def _nul_in_message_name(thread: Thread) -> None:
    thread.add_message(user("named", name="before\x00after"))


NUL_PLACES: dict[str, Callable[[Thread], None]] = {
    "thread_attributes": _nul_in_attributes,
    "thread_title": _nul_in_title,
    "message_content": _nul_in_content,
    "message_content_parts": _nul_in_content_parts,
    "message_name": _nul_in_message_name,
}


@pytest.mark.parametrize("put_nul", NUL_PLACES.values(), ids=NUL_PLACES.keys())
async def test_strings_holding_nul_are_refused_on_every_backend_and_nothing_is_written(
    store: ThreadStore, put_nul: Callable[[Thread], None]
) -> None:
    # PostgreSQL cannot store NUL in text or jsonb, so every backend refuses it alike.
    loaded = await saved_and_loaded(store, "plain")
    before = await stored(store, loaded.id)
    loaded.add_message(user("valid new message"))
    put_nul(loaded)

    with pytest.raises(ValueError):
        await store.save(loaded)
    assert await stored(store, loaded.id) == before


async def test_a_thread_id_holding_nul_is_refused(store: ThreadStore) -> None:
    with pytest.raises(ValueError):
        await store.save(Thread(id="before\x00after"))
    assert await store.list() == []


# --- naive datetimes ---------------------------------------------------------------------------


@pytest.fixture
def local_time_is_not_utc() -> Iterator[None]:
    """Run with the process's local time zone at UTC+05:30, where naive != UTC is visible."""
    if not hasattr(time, "tzset"):
        pytest.skip("time.tzset is not available on this platform")
    saved = os.environ.get("TZ")
    os.environ["TZ"] = "Asia/Kolkata"
    time.tzset()
    try:
        yield
    finally:
        if saved is None:
            del os.environ["TZ"]
        else:
            os.environ["TZ"] = saved
        time.tzset()


async def test_naive_datetimes_given_to_the_constructors_are_stored_as_utc(
    store: ThreadStore, local_time_is_not_utc: None
) -> None:
    thread = Thread(created_at=datetime(2020, 1, 1, 12, 0), updated_at=datetime(2020, 1, 1, 13, 0))
    thread.messages.append(user("hi", timestamp=datetime(2020, 1, 1, 12, 30)))
    await store.save(thread)

    loaded = await stored(store, thread.id)
    assert loaded.created_at == datetime(2020, 1, 1, 12, 0, tzinfo=UTC)
    assert loaded.updated_at == datetime(2020, 1, 1, 13, 0, tzinfo=UTC)
    assert loaded.messages[0].timestamp == datetime(2020, 1, 1, 12, 30, tzinfo=UTC)


async def test_naive_thread_times_assigned_later_are_taken_as_utc(
    store: ThreadStore, local_time_is_not_utc: None
) -> None:
    thread = conversation("hi")
    thread.created_at = datetime(2020, 1, 1, 12, 0)
    thread.updated_at = datetime(2020, 1, 1, 13, 0)
    await store.save(thread)

    loaded = await stored(store, thread.id)
    assert loaded.created_at == datetime(2020, 1, 1, 12, 0, tzinfo=UTC)
    assert loaded.updated_at == datetime(2020, 1, 1, 13, 0, tzinfo=UTC)


async def test_list_orders_a_thread_whose_updated_at_was_assigned_naive(store: ThreadStore) -> None:
    later = conversation("later")
    later.updated_at = datetime(2099, 1, 1, 0, 0)  # naive, assigned after construction
    await store.save(later)
    now = conversation("now")
    await store.save(now)

    assert [t.id for t in await store.list()] == [later.id, now.id]


async def test_a_naive_message_timestamp_assigned_later_is_taken_as_utc(store: ThreadStore) -> None:
    loaded = await saved_and_loaded(store, "hi")
    loaded.messages[0].timestamp = datetime(2020, 1, 1, 12, 0)
    await store.save(loaded)

    again = await stored(store, loaded.id)
    assert again.messages[0].timestamp == datetime(2020, 1, 1, 12, 0, tzinfo=UTC)


# --- the store never aliases the caller's objects ----------------------------------------------


async def test_changing_objects_without_saving_does_not_change_the_store(store: ThreadStore) -> None:
    thread = conversation("one", attributes={"k": ["v"]})
    thread.messages[0].attributes = {"a": {"b": 1}}
    await store.save(thread)
    snapshot = await stored(store, thread.id)

    thread.title = "changed"
    thread.attributes["k"].append("w")
    thread.messages[0].attributes["a"]["b"] = 2
    thread.messages[0].content = "changed"
    loaded = await stored(store, thread.id)
    loaded.title = "changed too"
    loaded.messages[0].attributes["a"]["b"] = 3
    loaded.messages.clear()

    assert await stored(store, thread.id) == snapshot
    assert snapshot.title == "Untitled Thread" and snapshot.attributes == {"k": ["v"]}
    assert snapshot.messages[0].attributes == {"a": {"b": 1}}


# --- a stale save after a delete (issue 30 item 6) ----------------------------------------------


@pytest.mark.parametrize("change", ["append", "edit", "remove", "title", "nothing"])
async def test_stale_save_after_a_delete_raises_not_found_and_writes_nothing(
    store: ThreadStore, change: str
) -> None:
    """A Thread loaded, then deleted by another writer, then saved: it came back hollow (only
    the messages added since the load; an edit-only save made an empty thread) while save()
    returned normally. Now NotFoundError, nothing written, and the edit is kept for later."""
    from threadstore import NotFoundError

    await store.save(conversation("one", "two", "three", id="gone"))
    thread = await stored(store, "gone")
    assert await store.delete("gone")
    if change == "append":
        thread.add_message(user("four"))
    elif change == "edit":
        thread.messages[0].content = "one, edited"
    elif change == "remove":
        thread.remove_message(thread.messages[1].id)
    elif change == "title":
        thread.title = "renamed"

    with pytest.raises(NotFoundError, match="deleted"):
        await store.save(thread)
    with pytest.raises(NotFoundError, match="deleted"):  # and again: nothing changed meanwhile
        await store.save(thread)

    assert await store.get("gone") is None
    assert await store.list() == []


async def test_stale_save_after_a_delete_of_a_partial_or_saved_thread_raises_not_found(
    store: ThreadStore,
) -> None:
    from threadstore import NotFoundError

    thread = conversation("one", "two", "three", id="saved")
    await store.save(thread)  # saved here, never loaded
    await store.save(conversation("a", "b", "c", id="partial"))
    partial = await store.get("partial", last=1)
    assert partial is not None
    for gone in (thread, partial):
        assert await store.delete(gone.id)
        gone.add_message(user("more"))
        with pytest.raises(NotFoundError):
            await store.save(gone)
        assert await store.get(gone.id) is None


async def test_stale_save_after_a_delete_a_copy_stores_the_thread_whole_again(store: ThreadStore) -> None:
    import copy

    from threadstore import NotFoundError

    await store.save(conversation("one", "two", id="again"))
    thread = await stored(store, "again")
    await store.delete("again")
    thread.messages[0].content = "one, edited"
    thread.add_message(user("three"))
    with pytest.raises(NotFoundError):
        await store.save(thread)

    await store.save(copy.copy(thread))

    assert contents(await stored(store, "again")) == ["one, edited", "two", "three"]
    assert sequences(await stored(store, "again")) == [1, 2, 3]


# --- equal messages in two threads (issue 30 item 4) ---------------------------------------------


async def test_colliding_message_ids_equal_messages_in_two_threads_are_two_messages(
    store: ThreadStore,
) -> None:
    """Message ids were derived from role, content, timestamp and source, so the same content at
    the same time in a second thread raised ConflictError (imports with second-resolution
    timestamps hit it). New messages' ids never collide; a given id is kept as it is."""
    when = datetime(2024, 5, 1, 12, 0, 0, tzinfo=UTC)

    def ok() -> Message:
        return Message(role="user", content="ok", timestamp=when, source={"name": "import"})

    first, second = Thread(id="first"), Thread(id="second")
    first.add_message(ok())
    first.add_message(ok())  # twice in one thread too: two messages
    second.add_message(ok())
    await store.save(first)
    await store.save(second)
    await store.append("second", ok())
    assert await store.import_threads([Thread(id="third", messages=[ok(), ok()])]) == ["third"]

    for thread_id, count in (("first", 2), ("second", 2), ("third", 2)):
        loaded = await stored(store, thread_id)
        assert contents(loaded) == ["ok"] * count
        assert len({m.id for m in loaded.messages}) == count
    given = "b" * 64  # a stored id of the old derived form is read and kept as it is
    await store.save(
        Thread(id="fourth", messages=[Message(role="user", content="ok", id=given, timestamp=when)])
    )
    assert [m.id for m in (await stored(store, "fourth")).messages] == [given]
    with pytest.raises(ConflictError):  # an id given twice is still one message, in one thread
        await store.save(Thread(id="fifth", messages=[Message(role="user", content="ok", id=given)]))


@pytest.mark.parametrize(
    ("thread", "path"),
    [
        (lambda: _edge_thread(attributes={"x": 1e20}), '$["x"]'),
        (lambda: _edge_thread(attributes={"a b": {"y": [1, -0.0]}}), '$["a b"]["y"][1]'),
        (lambda: _edge_message(metrics={"timing": {"latency": 1e22}}), '$.metrics["timing"]["latency"]'),
    ],
)
async def test_a_refused_float_is_named_by_its_whole_path(
    store: ThreadStore, thread: Callable[[], Thread], path: str
) -> None:
    with pytest.raises(ValueError) as raised:
        await store.save(thread())
    assert str(raised.value).endswith(f" - at `{path}`") and "[...]" not in str(raised.value)
    assert await store.get("edge") is None
