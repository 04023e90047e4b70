"""ThreadStoreSession against the OpenAI Agents SDK itself: its Runner with its ScriptedModel
(agents.testing, openai-agents >= 0.21), compared with the SDK's own SQLiteSession, on every
backend."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from agents import Agent, Runner, SQLiteSession, function_tool, set_tracing_disabled
from agents.memory import Session, SessionSettings
from agents.testing import ScriptedModel, assistant_message, function_call

from threadstore import ThreadStore
from threadstore.integrations.openai_agents import ThreadStoreSession

set_tracing_disabled(True)  # no exporter: nothing leaves the machine


@function_tool
def forecast(city: str) -> str:
    """The weather in a city."""
    return f"Sonnig in {city} ☀, 24 °C"


def scripted() -> ScriptedModel:
    """Two runs: a function call, its output, an answer; then a plain answer. Fixed item ids, as
    a real model's are not: the same id reaches every session that runs this script."""
    return ScriptedModel(
        [
            [function_call("forecast", {"city": "Zürich"}, call_id="call_1")],
            [assistant_message("In Zürich ist es sonnig ☀ — 24 °C.")],
            [assistant_message("Gern geschehen! 😊")],
        ]
    )


async def converse(session: Session) -> dict[str, Any]:
    """Run the script's two turns on ``session``: what the second model call saw, and what the
    session answers afterwards (each read, then one pop)."""
    model = scripted()
    agent = Agent(name="Wetter", instructions="Antworte kurz.", model=model, tools=[forecast])
    first = await Runner.run(agent, "Wie ist das Wetter in Zürich?", session=session)
    second = await Runner.run(agent, "Danke schön", session=session)
    model.assert_complete()
    last_call = model.calls[-1]
    assert last_call.system_instructions == "Antworte kurz."
    return {
        "outputs": [first.final_output, second.final_output],
        "second_call_input": last_call.input,
        "all": await session.get_items(),
        "last_two": await session.get_items(limit=2),
        "none": await session.get_items(limit=0),
        "popped": await session.pop_item(),
        "after_pop": await session.get_items(),
    }


async def test_runs_see_and_leave_what_the_sdks_own_sqlite_session_does(store: ThreadStore) -> None:
    ours = await converse(ThreadStoreSession("user-42", store))
    theirs = await converse(SQLiteSession("user-42"))

    assert ours == theirs
    assert len(ours["all"]) == 6  # user, function call, its output, answer, user, answer
    assert ours["popped"] == ours["all"][-1]
    assert isinstance(ThreadStoreSession("x", store), Session)  # the SDK's runtime protocol check


async def test_each_item_is_a_real_message_that_lists_searches_and_counts(store: ThreadStore) -> None:
    await converse(ThreadStoreSession("user-42", store))

    thread = await store.get("user-42")
    assert thread is not None
    assert [m.role for m in thread.messages] == ["user", "assistant", "tool", "assistant", "user"]
    call = thread.messages[1]
    assert call.tool_calls == [
        {
            "id": "call_1",
            "type": "function",
            "function": {"name": "forecast", "arguments": '{"city":"Zürich"}'},
        }
    ]
    assert (thread.messages[2].tool_call_id, thread.messages[2].content) == (
        "call_1",
        "Sonnig in Zürich ☀, 24 °C",
    )
    assert thread.messages[3].content == "In Zürich ist es sonnig ☀ — 24 °C."
    page = await store.list_threads()
    assert [(t.id, t.message_count) for t in page.threads] == [("user-42", 5)]
    assert [hit.thread_id for hit in await store.search("sonnig")] == ["user-42", "user-42"]
    assert (await store.get_usage_stats())["total_messages"] == 5


async def test_sessions_are_isolated_and_share_item_ids_without_conflict(store: ThreadStore) -> None:
    alice, bob = ThreadStoreSession("alice", store), ThreadStoreSession("bob", store)
    await converse(alice)
    await bob.add_items([{"role": "user", "content": "Hallo"}])

    assert await bob.get_items() == [{"role": "user", "content": "Hallo"}]
    await converse(bob)  # the same scripted item ids again, in another session
    assert len(await alice.get_items()) == 5
    assert len(await bob.get_items()) == 6
    await alice.clear_session()
    assert await alice.get_items() == []
    assert len(await bob.get_items()) == 6


async def test_two_concurrent_pop_loops_return_each_item_exactly_once(store: ThreadStore) -> None:
    session = ThreadStoreSession("s", store)
    added = [{"role": "user", "content": f"Nachricht {n} ✓"} for n in range(30)]
    await session.add_items(added)

    async def pop_all() -> list[Any]:
        got = []
        while (item := await session.pop_item()) is not None:
            got.append(item)
        return got

    first, second = await asyncio.gather(pop_all(), pop_all())

    assert sorted(first + second, key=lambda i: int(i["content"].split()[1])) == added
    assert await session.get_items() == []


async def test_clear_session_then_pop_is_none_and_the_thread_keeps_its_fields(store: ThreadStore) -> None:
    session = ThreadStoreSession("s", store)
    assert await session.pop_item() is None
    await session.clear_session()  # nothing stored yet: nothing to do
    await session.add_items([{"role": "user", "content": "eins"}, {"role": "assistant", "content": "zwei"}])
    thread = await store.get("s")
    assert thread is not None
    thread.title, thread.attributes = "Support", {"owner": "u1"}
    await store.save(thread)

    await session.clear_session()

    assert await session.pop_item() is None
    assert await session.get_items() == []
    kept = await store.get("s")
    assert kept is not None and (kept.title, kept.attributes, kept.messages) == (
        "Support",
        {"owner": "u1"},
        [],
    )


@pytest.mark.parametrize("limit", [None, 0, 1, 2, 3, 5, 10_001])
async def test_get_items_returns_the_latest_limit_items_in_order(
    store: ThreadStore, limit: int | None
) -> None:
    session = ThreadStoreSession("s", store)
    added: list[Any] = [{"role": "user", "content": f"m{n}"} for n in range(3)]
    added.append({"type": "function_call", "call_id": "c", "name": "f", "arguments": "{}"})
    added.append(
        {"type": "function_call_output", "call_id": "c", "output": [{"type": "input_text", "text": "x"}]}
    )
    await session.add_items(added)

    expected = added if limit is None else added[-limit:] if limit > 0 else []
    assert await session.get_items(limit) == expected
    settled = ThreadStoreSession("s", store, session_settings=SessionSettings(limit=limit))
    assert await settled.get_items() == expected


async def test_a_system_item_round_trips_as_a_developer_message(store: ThreadStore) -> None:
    session = ThreadStoreSession("s", store)
    items = [
        {"role": "system", "content": "Sei höflich."},
        {"role": "developer", "content": [{"type": "input_text", "text": "Kurz."}]},
        {"type": "reasoning", "id": "rs_1", "summary": [{"type": "summary_text", "text": "überlegt"}]},
    ]
    await session.add_items(items)

    assert await session.get_items() == items
    thread = await store.get("s")
    assert thread is not None
    assert [(m.role, m.content, m.reasoning_content) for m in thread.messages] == [
        ("developer", "Sei höflich.", None),
        ("developer", "Kurz.", None),
        ("assistant", None, "überlegt"),
    ]
