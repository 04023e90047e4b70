"""Thread and Message on their own: defaults, validation, ids, and the Thread methods (no store)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from tests.helpers import assistant, user
from threadstore import Attachment, Message, Role, Thread

T0 = datetime(2024, 1, 1, 12, 0, 0, tzinfo=UTC)


def usage(model: str | None, prompt: int, completion: int) -> dict[str, Any]:
    return {
        "model": model,
        "usage": {
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "total_tokens": prompt + completion,
        },
        "timing": {"started_at": None, "ended_at": None, "latency": 0},
    }


# --- Thread defaults and validation ------------------------------------------------------------


def test_thread_defaults() -> None:
    before = datetime.now(UTC)
    thread = Thread()
    after = datetime.now(UTC)

    assert uuid.UUID(thread.id).version == 4
    assert thread.title == "Untitled Thread"
    assert thread.messages == [] and thread.attributes == {} and thread.platforms == {}
    assert thread.source is None
    assert before <= thread.created_at <= after
    assert before <= thread.updated_at <= after
    assert thread.created_at.tzinfo is UTC and thread.updated_at.tzinfo is UTC


def test_each_thread_gets_its_own_id_and_containers() -> None:
    first, second = Thread(), Thread()
    first.messages.append(user("only in first"))
    first.attributes["k"] = "v"
    first.platforms["slack"] = {"channel": "C1"}

    assert first.id != second.id
    assert second.messages == [] and second.attributes == {} and second.platforms == {}


def test_thread_takes_platform_references_and_a_named_source() -> None:
    thread = Thread(
        platforms={"slack": {"channel": "C1", "ts": "1.2"}}, source={"name": "slack", "team": "T1"}
    )

    assert thread.platforms == {"slack": {"channel": "C1", "ts": "1.2"}}
    assert thread.source == {"name": "slack", "team": "T1"}


@pytest.mark.parametrize(
    "fields",
    [
        {"source": {"team": "T1"}},
        {"source": {"name": 3}},
        {"source": "slack"},
        {"platforms": {"slack": "C1"}},
        {"platforms": ["slack"]},
        {"attributes": ["not", "a", "dict"]},
        {"messages": "hello"},
        {"title": None},
        {"id": ""},
        {"id": 7},
    ],
    ids=[
        "source_without_name",
        "source_name_not_str",
        "source_not_dict",
        "platform_not_dict",
        "platforms_not_dict",
        "attributes_not_dict",
        "messages_not_list",
        "title_none",
        "id_empty",
        "id_int",
    ],
)
def test_thread_rejects_bad_fields(fields: dict[str, Any]) -> None:
    with pytest.raises((ValueError, TypeError)):
        Thread(**fields)


@pytest.mark.parametrize(
    ("fields", "error"),
    [
        ({"role": 5}, TypeError),  # the wrong type
        ({"role": "usr"}, ValueError),  # the right type, a value not allowed
        ({"role": "user", "turn": "1"}, TypeError),
        ({"role": "user", "turn": 2**31}, ValueError),
        ({"role": "user", "attributes": []}, TypeError),
        ({"role": "tool"}, ValueError),
    ],
)
def test_one_rule_a_wrong_type_is_a_type_error_a_wrong_value_a_value_error(
    fields: dict[str, Any], error: type[Exception]
) -> None:
    with pytest.raises(error) as raised:
        Message(**fields)
    assert type(raised.value) is error  # not both
    message = Message(role="user")
    for name, value in fields.items():
        setattr(message, name, value)
    with pytest.raises(error) as raised:  # checked again at save, the same way
        message.validate()
    assert type(raised.value) is error


def test_a_source_without_a_name_is_a_value_error_naming_it() -> None:
    with pytest.raises(ValueError, match="name"):
        Thread(source={"team": "T1"})


def test_naive_thread_times_are_taken_as_utc() -> None:
    thread = Thread(created_at=datetime(2020, 1, 1, 12, 0), updated_at=datetime(2020, 1, 2, 8, 30))

    assert thread.created_at == datetime(2020, 1, 1, 12, 0, tzinfo=UTC)
    assert thread.created_at.tzinfo is UTC
    assert thread.updated_at == datetime(2020, 1, 2, 8, 30, tzinfo=UTC)
    assert thread.updated_at.tzinfo is UTC


def test_aware_thread_times_are_converted_to_utc() -> None:
    thread = Thread(created_at=datetime(2020, 1, 1, 12, 0, tzinfo=timezone(timedelta(hours=-5))))

    assert thread.created_at == datetime(2020, 1, 1, 17, 0, tzinfo=UTC)
    assert thread.created_at.tzinfo is UTC
    assert thread.created_at.hour == 17


def test_thread_times_must_be_datetimes() -> None:
    with pytest.raises(TypeError):
        Thread(created_at="2020-01-01")  # type: ignore[arg-type]


# --- Message defaults, validation and ids ------------------------------------------------------


def test_message_defaults() -> None:
    before = datetime.now(UTC)
    message = Message(role="user", content="hi")

    assert message.metrics == {
        "model": None,
        "usage": {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0},
        "timing": {"started_at": None, "ended_at": None, "latency": 0},
    }
    assert message.attributes == {} and message.platforms == {} and message.reactions == {}
    assert message.attachments == [] and message.tool_calls is None and message.source is None
    assert message.sequence is None and message.thread_id is None
    assert before <= message.timestamp <= datetime.now(UTC)
    assert message.timestamp.tzinfo is UTC
    assert str(uuid.UUID(message.id)) == message.id


def test_each_message_gets_its_own_containers() -> None:
    first, second = user("a"), user("b")
    first.metrics["usage"]["prompt_tokens"] = 5
    first.attributes["k"] = 1
    first.reactions["👍"] = ["U1"]

    assert second.metrics["usage"]["prompt_tokens"] == 0
    assert second.attributes == {} and second.reactions == {}


@pytest.mark.parametrize("role", ["system", "user", "assistant", "tool"])
def test_the_four_roles(role: Role) -> None:
    message = Message(role=role, content="x", tool_call_id="call_1" if role == "tool" else None)
    assert message.role == role


@pytest.mark.parametrize("role", ["", "User", "bot", "function"])
def test_an_unknown_role_is_a_value_error_naming_the_field(role: str) -> None:
    with pytest.raises(ValueError, match="role"):
        Message(role=role, content="x")  # type: ignore[arg-type]


def test_a_tool_message_needs_a_tool_call_id() -> None:
    with pytest.raises(ValueError, match="tool_call_id"):
        Message(role="tool", content="42")
    with pytest.raises(ValueError, match="tool_call_id"):
        Message(role="tool", content="42", tool_call_id="")
    assert Message(role="tool", content="42", tool_call_id="call_1").tool_call_id == "call_1"


def test_content_may_be_text_parts_or_none() -> None:
    parts = [
        {"type": "text", "text": "look"},
        {"type": "image_url", "image_url": {"url": "https://example.com/a.png"}},
    ]

    assert user("text").content == "text"
    assert Message(role="user", content=parts).content == parts  # type: ignore[arg-type]
    assert assistant(None).content is None


@pytest.mark.parametrize("content", [42, {"type": "text"}, b"bytes", 1.5])
def test_other_content_is_a_type_error_naming_the_field(content: Any) -> None:
    with pytest.raises(TypeError, match="content"):
        Message(role="user", content=content)


@pytest.mark.parametrize("attributes", [["a"], "a=1", 5, ("k", "v")])
def test_non_dict_message_attributes_are_a_type_error(attributes: Any) -> None:
    with pytest.raises(TypeError, match="attributes"):
        Message(role="user", content="x", attributes=attributes)


@pytest.mark.parametrize(
    "field, value",
    [
        ("metrics", ["m"]),
        ("reactions", ["👍"]),
        ("platforms", "slack"),
        ("source", "slack"),
        ("tool_calls", {"id": "call_1"}),
    ],
)
def test_other_mistyped_message_fields_are_type_errors_naming_them(field: str, value: Any) -> None:
    with pytest.raises(TypeError, match=field):
        Message(role="assistant", content="x", **{field: value})


def test_equal_inputs_give_distinct_ids() -> None:
    """Ids were derived from role, content, timestamp and source: equal messages in two threads
    collided (issue 30 item 4). Each new message gets its own random id."""
    kwargs: dict[str, Any] = {"role": "user", "content": "hi", "timestamp": T0, "source": {"name": "slack"}}

    ids = {Message(**kwargs).id for _ in range(1000)}
    assert len(ids) == 1000


def test_one_instant_in_any_time_zone_is_stored_as_utc() -> None:
    naive = Message(role="user", content="hi", timestamp=datetime(2024, 1, 1, 12, 0))
    shifted = Message(
        role="user", content="hi", timestamp=datetime(2024, 1, 1, 14, 0, tzinfo=timezone(timedelta(hours=2)))
    )

    assert naive.timestamp == T0 and naive.timestamp.tzinfo is UTC
    assert shifted.timestamp.tzinfo is UTC and shifted.timestamp.hour == 12


def test_a_given_id_is_kept() -> None:
    assert Message(role="user", content="hi", id="my-id").id == "my-id"


def test_an_attachment_holds_bytes_and_defaults_to_pending() -> None:
    attachment = Attachment(filename="a.txt", content=b"\x00data")

    assert attachment.content == b"\x00data"
    assert attachment.status == "pending"
    assert attachment.attributes == {}


# --- add_message and sequences -----------------------------------------------------------------


def test_add_message_numbers_one_two_three() -> None:
    thread = Thread()
    messages = [user("a"), assistant("b"), user("c")]
    for message in messages:
        thread.add_message(message)

    assert thread.messages == messages
    assert [m.sequence for m in thread.messages] == [1, 2, 3]
    assert [m.thread_id for m in thread.messages] == [thread.id] * 3


def test_a_system_message_gets_sequence_zero_and_goes_first() -> None:
    thread = Thread()
    thread.add_message(user("a"))
    thread.add_message(assistant("b"))
    system = Message(role="system", content="be nice")
    thread.add_message(system)
    thread.add_message(user("c"))

    assert thread.messages[0] is system
    assert [(m.role, m.sequence) for m in thread.messages] == [
        ("system", 0),
        ("user", 1),
        ("assistant", 2),
        ("user", 3),
    ]


def test_add_message_moves_updated_at_to_now() -> None:
    thread = Thread(updated_at=T0)
    before = datetime.now(UTC)
    thread.add_message(user("a"))

    assert before <= thread.updated_at <= datetime.now(UTC)
    assert thread.updated_at.tzinfo is UTC


def test_add_message_takes_only_messages() -> None:
    with pytest.raises((ValueError, TypeError)):
        Thread().add_message({"role": "user", "content": "hi"})  # type: ignore[arg-type]


def test_get_messages_in_sequence_orders_by_sequence() -> None:
    first, second, third = user("1", sequence=1), user("2", sequence=2), user("3", sequence=3)
    thread = Thread(messages=[third, first, second])

    assert thread.get_messages_in_sequence() == [first, second, third]
    assert thread.messages == [third, first, second]


# --- finding messages --------------------------------------------------------------------------


def test_get_last_message_by_role_and_get_system_message() -> None:
    thread = Thread()
    assert thread.get_last_message_by_role("user") is None
    assert thread.get_system_message() is None

    first, second, answer = user("1"), user("2"), assistant("a")
    for message in (first, answer, second):
        thread.add_message(message)
    thread.ensure_system_prompt("sys")

    assert thread.get_last_message_by_role("user") is second
    assert thread.get_last_message_by_role("assistant") is answer
    assert thread.get_last_message_by_role("tool") is None
    assert thread.get_system_message().content == "sys"  # type: ignore[union-attr]


def test_get_message_counts() -> None:
    thread = Thread()
    for message in (
        user("1"),
        user("2"),
        assistant("a"),
        Message(role="tool", content="r", tool_call_id="c1"),
    ):
        thread.add_message(message)
    thread.ensure_system_prompt("sys")

    assert thread.get_message_counts() == {"system": 1, "user": 2, "assistant": 1, "tool": 1}
    assert Thread().get_message_counts() == {"system": 0, "user": 0, "assistant": 0, "tool": 0}


def test_ensure_system_prompt_adds_one_system_message_first_once() -> None:
    thread = Thread()
    thread.add_message(user("hi"))
    thread.ensure_system_prompt("You are helpful.")
    thread.ensure_system_prompt("Another prompt.")

    assert [(m.role, m.content, m.sequence) for m in thread.messages] == [
        ("system", "You are helpful.", 0),
        ("user", "hi", 1),
    ]


def test_ensure_system_prompt_on_an_empty_thread() -> None:
    thread = Thread()
    thread.ensure_system_prompt("sys")

    assert [(m.role, m.sequence) for m in thread.messages] == [("system", 0)]
    thread.add_message(user("next"))
    assert [m.sequence for m in thread.messages] == [0, 1]


# --- removing messages -------------------------------------------------------------------------


def test_remove_message_by_id() -> None:
    thread = Thread(updated_at=T0)
    keep, drop = user("keep"), user("drop")
    thread.add_message(keep)
    thread.add_message(drop)
    thread.updated_at = T0

    assert thread.remove_message(drop.id) is True
    assert thread.messages == [keep]
    assert thread.updated_at > T0
    assert thread.remove_message(drop.id) is False
    assert thread.remove_message("never-there") is False
    assert thread.messages == [keep]


def test_clear_messages() -> None:
    thread = Thread()
    thread.add_message(user("a"))
    thread.ensure_system_prompt("sys")
    thread.updated_at = T0
    thread.clear_messages()

    assert thread.messages == []
    assert thread.updated_at > T0


# --- chat completion layout --------------------------------------------------------------------


def test_get_messages_for_chat_completion() -> None:
    call = {"id": "call_1", "type": "function", "function": {"name": "lookup", "arguments": "{}"}}
    parts = [
        {"type": "text", "text": "and this?"},
        {"type": "image_url", "image_url": {"url": "https://example.com/a.png"}},
    ]
    thread = Thread()
    thread.add_message(user("question", name="alice", attributes={"internal": True}))
    thread.add_message(assistant(None, tool_calls=[call], metrics=usage("gpt-4o", 1, 2)))
    thread.add_message(Message(role="tool", content='{"x": 1}', tool_call_id="call_1"))
    thread.add_message(assistant("answer", reasoning_content="hidden"))
    thread.add_message(Message(role="user", content=parts))  # type: ignore[arg-type]
    thread.ensure_system_prompt("sys")

    assert thread.get_messages_for_chat_completion() == [
        {"role": "system", "content": "sys"},
        {"role": "user", "content": "question", "name": "alice"},
        {"role": "assistant", "content": None, "tool_calls": [call]},
        {"role": "tool", "content": '{"x": 1}', "tool_call_id": "call_1"},
        {"role": "assistant", "content": "answer"},
        {"role": "user", "content": parts},
    ]


def test_chat_completion_of_an_empty_thread_is_empty() -> None:
    assert Thread().get_messages_for_chat_completion() == []


# --- token usage -------------------------------------------------------------------------------


def test_get_total_tokens_sums_overall_and_by_model() -> None:
    thread = Thread()
    thread.add_message(user("q"))
    thread.add_message(assistant("a1", metrics=usage("gpt-4o", 10, 5)))
    thread.add_message(assistant("a2", metrics=usage("gpt-4o", 20, 7)))
    thread.add_message(assistant("a3", metrics=usage("mini", 1, 2)))
    thread.add_message(assistant("no model", metrics=usage(None, 100, 0)))

    assert thread.get_total_tokens() == {
        "overall": {"prompt_tokens": 131, "completion_tokens": 14, "total_tokens": 145},
        "by_model": {
            "gpt-4o": {"calls": 2, "prompt_tokens": 30, "completion_tokens": 12, "total_tokens": 42},
            "mini": {"calls": 1, "prompt_tokens": 1, "completion_tokens": 2, "total_tokens": 3},
        },
    }


def test_get_total_tokens_tolerates_missing_usage() -> None:
    thread = Thread()
    thread.add_message(assistant("a", metrics={}))
    thread.add_message(assistant("b", metrics={"model": "m", "usage": None}))
    thread.add_message(
        assistant("c", metrics={"model": "m", "usage": {"prompt_tokens": None, "total_tokens": 4}})
    )

    assert thread.get_total_tokens() == {
        "overall": {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 4},
        "by_model": {"m": {"calls": 2, "prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 4}},
    }


def test_get_total_tokens_of_an_empty_thread() -> None:
    assert Thread().get_total_tokens() == {
        "overall": {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0},
        "by_model": {},
    }


def test_get_model_usage() -> None:
    thread = Thread()
    thread.add_message(assistant("a", metrics=usage("gpt-4o", 10, 5)))
    thread.add_message(assistant("b", metrics=usage("mini", 1, 1)))

    assert thread.get_model_usage("gpt-4o") == {
        "calls": 1,
        "prompt_tokens": 10,
        "completion_tokens": 5,
        "total_tokens": 15,
    }
    assert thread.get_model_usage("unused") == {}
    assert thread.get_model_usage() == {
        "gpt-4o": {"calls": 1, "prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15},
        "mini": {"calls": 1, "prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
    }


# --- reactions ---------------------------------------------------------------------------------


def test_reactions_are_added_once_per_user_and_removed() -> None:
    thread = Thread()
    message = user("react to me")
    thread.add_message(message)

    assert thread.add_reaction(message.id, "👍", "U1") is True
    assert thread.add_reaction(message.id, "👍", "U2") is True
    assert thread.add_reaction(message.id, "👍", "U1") is False
    assert thread.add_reaction(message.id, "🎉", "U1") is True
    assert thread.get_reactions(message.id) == {"👍": ["U1", "U2"], "🎉": ["U1"]}

    assert thread.remove_reaction(message.id, "👍", "U1") is True
    assert thread.remove_reaction(message.id, "👍", "U1") is False
    assert thread.remove_reaction(message.id, "🎉", "U1") is True
    assert thread.get_reactions(message.id) == {"👍": ["U2"]}
    assert message.reactions == {"👍": ["U2"]}


def test_reactions_on_a_missing_message() -> None:
    thread = Thread()

    assert thread.add_reaction("missing", "👍", "U1") is False
    assert thread.remove_reaction("missing", "👍", "U1") is False
    assert thread.get_reactions("missing") == {}


def test_get_reactions_returns_a_copy() -> None:
    thread = Thread()
    message = user("x")
    thread.add_message(message)
    thread.add_reaction(message.id, "👍", "U1")

    reactions = thread.get_reactions(message.id)
    reactions["👍"].append("intruder")
    reactions["🎉"] = ["U9"]

    assert thread.get_reactions(message.id) == {"👍": ["U1"]}


def test_message_reactions_directly() -> None:
    message = user("x")

    assert message.add_reaction("👍", "U1") is True
    assert message.add_reaction("👍", "U1") is False
    assert message.remove_reaction("👎", "U1") is False
    assert message.remove_reaction("👍", "U1") is True
    assert message.reactions == {}


# --- mark_edited -------------------------------------------------------------------------------


def test_mark_edited_accepts_a_message_or_its_id_and_refuses_an_unknown_id() -> None:
    thread = Thread()
    message = user("x")
    thread.add_message(message)

    thread.mark_edited(message)
    thread.mark_edited(message.id)
    with pytest.raises(ValueError):
        thread.mark_edited("not-in-this-thread")


def test_mark_edited_refuses_a_message_of_another_thread() -> None:
    thread, other = Thread(), Thread()
    thread.add_message(user("x"))
    stranger = user("y")
    other.add_message(stranger)
    with pytest.raises(ValueError):
        thread.mark_edited(stranger)


# --- equality ----------------------------------------------------------------------------------


def test_threads_and_messages_compare_by_value() -> None:
    def build() -> Thread:
        thread = Thread(id="same", created_at=T0, updated_at=T0)
        thread.messages.append(user("hi", timestamp=T0, sequence=1, id="m1"))
        return thread

    assert build() == build()
    changed = build()
    changed.messages[0].content = "bye"
    assert changed != build()
