"""ThreadStoreChatMessageHistory with LangChain's own messages, held to the assertions of
langchain-postgres's PostgresChatMessageHistory tests (empty at first; three messages added twice
read back as six equal ones; clear), async over ThreadStore and sync over threadstore.sync."""

from __future__ import annotations

import asyncio

import pytest
from langchain_core.chat_history import BaseChatMessageHistory
from langchain_core.messages import (
    AIMessage,
    AIMessageChunk,
    BaseMessage,
    ChatMessage,
    FunctionMessage,
    HumanMessage,
    SystemMessage,
    SystemMessageChunk,
    ToolMessage,
)

from threadstore import ThreadStore
from threadstore.integrations.langchain import ThreadStoreChatMessageHistory
from threadstore.sync import ThreadStore as SyncThreadStore

THREE = [SystemMessage(content="Meow"), AIMessage(content="woof"), HumanMessage(content="bark")]


def rich() -> list[BaseMessage]:
    """Every message type, with ids, names, tool calls, usage and response metadata."""
    return [
        SystemMessage(content="Du bist ein Wetterdienst.", id="sys-1"),
        HumanMessage(content=[{"type": "text", "text": "Wetter in Zürich?"}], name="ana", id="h-1"),
        AIMessage(
            content="",
            id="ai-1",
            tool_calls=[
                {"name": "forecast", "args": {"city": "Zürich"}, "id": "call_1", "type": "tool_call"}
            ],
            usage_metadata={"input_tokens": 12, "output_tokens": 7, "total_tokens": 19},
            response_metadata={"model_name": "gpt-test", "finish_reason": "tool_calls"},
        ),
        ToolMessage(content="Sonnig ☀", tool_call_id="call_1", name="forecast", id="t-1"),
        SystemMessage(content="Antworte kurz."),  # a system message mid-history
        AIMessage(
            content="Sonnig ☀, 24 °C.",
            usage_metadata={"input_tokens": 30, "output_tokens": 5, "total_tokens": 35},
            response_metadata={"model_name": "gpt-test"},
            additional_kwargs={"refusal": None},
        ),
        ChatMessage(content="eine Rolle", role="critic"),
        FunctionMessage(content="42", name="answer"),
        SystemMessageChunk(content="ein Stück"),
        AIMessageChunk(content="noch ein Stück"),
    ]


async def test_the_langchain_postgres_history_assertions_hold_async(store: ThreadStore) -> None:
    history = ThreadStoreChatMessageHistory("5b0d2d6e-2b5a-4a51-9bd5-6f0a51d1e0e9", store)
    assert isinstance(history, BaseChatMessageHistory)
    assert await history.aget_messages() == []

    await history.aadd_messages(THREE)
    assert await history.aget_messages() == THREE
    await history.aadd_messages(THREE)
    messages = await history.aget_messages()
    assert len(messages) == 6
    assert messages == THREE + THREE

    await history.aclear()
    assert await history.aget_messages() == []


@pytest.mark.parametrize("backend", ["memory", "sqlite", "postgres"])
def test_the_langchain_postgres_history_assertions_hold_sync(
    backend: str, request: pytest.FixtureRequest, tmp_path: object
) -> None:
    url = {"memory": None, "sqlite": f"sqlite:///{tmp_path}/h.db"}.get(backend)
    if backend == "postgres":
        url = request.getfixturevalue("pg_url")
    with SyncThreadStore.create(url, pool_size=1) as store:
        store.delete_many(["sync-session"])
        history = ThreadStoreChatMessageHistory("sync-session", store)
        assert history.messages == []

        history.add_messages(THREE)
        assert history.messages == THREE
        history.add_messages(THREE)
        assert len(history.messages) == 6
        assert history.messages == THREE + THREE
        history.add_user_message("noch da?")  # BaseChatMessageHistory's helpers use add_messages
        assert history.messages[-1] == HumanMessage(content="noch da?")

        history.clear()
        assert history.messages == []
        assert asyncio.run(history.aget_messages()) == []  # the async methods work over it too


async def test_every_message_type_round_trips_and_is_a_real_message(store: ThreadStore) -> None:
    history = ThreadStoreChatMessageHistory("s", store)
    await history.aadd_messages(rich())

    assert await history.aget_messages() == rich()
    thread = await store.get("s")
    assert thread is not None
    roles = [m.role for m in thread.messages]
    assert roles == [
        *["developer", "user", "assistant", "tool", "developer", "assistant"],
        *["user", "tool", "developer", "assistant"],
    ]
    call = thread.messages[2]
    assert call.tool_calls == [
        {
            "id": "call_1",
            "type": "function",
            "function": {"name": "forecast", "arguments": '{"city": "Zürich"}'},
        }
    ]
    assert (thread.messages[3].tool_call_id, thread.messages[3].content) == ("call_1", "Sonnig ☀")
    assert thread.messages[1].content == "Wetter in Zürich?"
    stats = await store.get_usage_stats()
    assert stats["total_tokens"] == {
        "total": 54,
        "by_model": {"gpt-test": {"prompt_tokens": 42, "completion_tokens": 12, "total_tokens": 54}},
    }
    assert {hit.thread_id for hit in await store.search("Zürich")} == {"s"}


async def test_sessions_are_isolated_and_the_same_message_ids_reach_two(store: ThreadStore) -> None:
    one, two = ThreadStoreChatMessageHistory("one", store), ThreadStoreChatMessageHistory("two", store)
    await one.aadd_messages(rich())
    await two.aadd_messages(rich())  # the same LangChain ids: threadstore mints its own
    await one.aclear()
    assert await one.aget_messages() == []
    assert await two.aget_messages() == rich()


async def test_sync_methods_on_an_async_store_say_what_to_use(store: ThreadStore) -> None:
    history = ThreadStoreChatMessageHistory("s", store)
    with pytest.raises(TypeError, match=r"threadstore\.sync\.ThreadStore"):
        history.add_messages(THREE)
    with pytest.raises(TypeError, match="threadstore"):
        ThreadStoreChatMessageHistory("s", "not a store")  # type: ignore[arg-type]


# RunnableWithMessageHistory is deprecated in langchain-core 1.x (for LangGraph's persistence),
# and still how a chat history serves a chain.
@pytest.mark.filterwarnings("ignore::langchain_core._api.deprecation.LangChainDeprecationWarning")
async def test_runnable_with_message_history_keeps_the_conversation(store: ThreadStore) -> None:
    from langchain_core.language_models.fake_chat_models import FakeListChatModel
    from langchain_core.prompt_values import PromptValue
    from langchain_core.prompts import ChatPromptTemplate, MessagesPlaceholder
    from langchain_core.runnables import RunnableConfig
    from langchain_core.runnables.history import RunnableWithMessageHistory

    prompt = ChatPromptTemplate.from_messages(
        [("system", "Antworte kurz."), MessagesPlaceholder("history"), ("human", "{question}")]
    )
    model = FakeListChatModel(responses=["Grüezi!", "Tschüss!"])
    seen: list[int] = []

    def count(value: PromptValue) -> PromptValue:
        seen.append(len(value.to_messages()))
        return value

    chat = RunnableWithMessageHistory(
        prompt | count | model,
        lambda session_id: ThreadStoreChatMessageHistory(session_id, store),
        input_messages_key="question",
        history_messages_key="history",
    )
    config: RunnableConfig = {"configurable": {"session_id": "s1"}}

    first = await chat.ainvoke({"question": "Hallo"}, config=config)
    second = await chat.ainvoke({"question": "Auf Wiedersehen"}, config=config)

    assert (first.content, second.content) == ("Grüezi!", "Tschüss!")
    assert seen == [2, 4]  # the second call saw the first exchange from the store
    history = await ThreadStoreChatMessageHistory("s1", store).aget_messages()
    assert [(type(m).__name__, m.content) for m in history] == [
        ("HumanMessage", "Hallo"),
        ("AIMessage", "Grüezi!"),
        ("HumanMessage", "Auf Wiedersehen"),
        ("AIMessage", "Tschüss!"),
    ]
