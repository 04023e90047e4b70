"""save_messages / load_messages with Pydantic AI's own Agent and TestModel (no network), on
every backend: a run with a tool, saved, loaded and continued, equals the runs' own messages."""

from __future__ import annotations

from pydantic_ai import Agent
from pydantic_ai.messages import (
    ModelMessage,
    ModelRequest,
    ModelResponse,
    SystemPromptPart,
    TextPart,
    UserPromptPart,
)
from pydantic_ai.models.test import TestModel

from threadstore import Message, ThreadStore
from threadstore.integrations.pydantic_ai import load_messages, save_messages


def weather_agent() -> Agent[None, str]:
    agent = Agent(TestModel(), system_prompt="Antworte kurz.")

    @agent.tool_plain
    def forecast(city: str) -> str:
        """The weather in a city."""
        return f"Sonnig in {city} ☀"

    return agent


async def test_a_run_saved_loads_back_equal_and_continues(store: ThreadStore) -> None:
    agent = weather_agent()
    first = await agent.run("Wie ist das Wetter in Zürich?")
    await save_messages(store, "chat-1", first.new_messages())

    loaded = await load_messages(store, "chat-1")
    assert loaded == first.all_messages()

    second = await agent.run("Danke!", message_history=loaded)
    await save_messages(store, "chat-1", second.new_messages())
    assert await load_messages(store, "chat-1") == second.all_messages()
    assert await load_messages(store, "chat-1", last=2) == second.all_messages()[-2:]
    assert await load_messages(store, "unknown") == []


async def test_each_model_message_is_a_real_message_with_its_usage(store: ThreadStore) -> None:
    result = await weather_agent().run("Wie ist das Wetter in Zürich?")
    await save_messages(store, "chat-1", result.all_messages())

    thread = await store.get("chat-1")
    assert thread is not None
    assert [m.role for m in thread.messages] == ["user", "assistant", "tool", "assistant"]
    request, call, output, _ = thread.messages
    assert request.content == "Wie ist das Wetter in Zürich?"
    assert call.tool_calls is not None and call.tool_calls[0]["function"]["name"] == "forecast"
    assert output.tool_call_id == call.tool_calls[0]["id"]
    assert isinstance(output.content, str) and output.content.startswith("Sonnig in")
    usage = result.usage
    stats = await store.get_usage_stats()
    assert stats["total_tokens"]["by_model"]["test"] == {
        "prompt_tokens": usage.input_tokens,
        "completion_tokens": usage.output_tokens,
        "total_tokens": usage.input_tokens + usage.output_tokens,
    }
    assert [hit.thread_id for hit in await store.search("Zürich")] == ["chat-1"]


async def test_a_system_prompt_alone_is_a_developer_message_and_round_trips(store: ThreadStore) -> None:
    history: list[ModelMessage] = [
        ModelRequest(parts=[SystemPromptPart(content="Sei höflich.")]),
        ModelRequest(parts=[UserPromptPart(content="Hallo")]),
        ModelResponse(parts=[TextPart(content="Grüezi!")], model_name="m"),
    ]
    await save_messages(store, "s", history)
    await save_messages(store, "s", history)  # the same messages again: new ids of their own

    assert await load_messages(store, "s") == history + history
    thread = await store.get("s")
    assert thread is not None and [m.role for m in thread.messages[:3]] == ["developer", "user", "assistant"]


async def test_messages_stored_otherwise_load_as_prompts_and_texts(store: ThreadStore) -> None:
    await store.append(
        "s",
        Message(role="developer", content="Kurz."),
        Message(role="user", content="Hallo"),
        Message(role="assistant", content="Hi"),
        create=True,
    )
    loaded = await load_messages(store, "s")
    assert [type(m) for m in loaded] == [ModelRequest, ModelRequest, ModelResponse]
    assert isinstance(loaded[0].parts[0], SystemPromptPart) and loaded[0].parts[0].content == "Kurz."
    assert isinstance(loaded[2].parts[0], TextPart) and loaded[2].parts[0].content == "Hi"
