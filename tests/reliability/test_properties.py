"""Property tests (hypothesis): generated threads read back equal after a save, and generated
sequences of operations leave every backend holding the same threads as the in-memory one."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from threadstore import Message, Thread, ThreadStore, ThreadStoreError

pytestmark = pytest.mark.asyncio(loop_scope="module")  # the stores live as long as the module

EPOCH = datetime(2020, 1, 1, tzinfo=UTC)

text = st.text(max_size=30)
keys = st.text(max_size=10)
# Mostly what JSON keeps; now and then what it does not (NaN, -0.0, 1e16 and above, NUL), which
# every backend must refuse alike.
numbers = st.integers(-(2**63), 2**63 - 1) | st.floats()
json_values = st.recursive(
    st.none() | st.booleans() | numbers | text,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(keys, inner, max_size=4),
    max_leaves=12,
)
objects = st.dictionaries(keys, json_values, max_size=4)
times = st.integers(0, 10**9).map(lambda s: EPOCH + timedelta(seconds=s, microseconds=s % 997))


@st.composite
def messages(draw: st.DrawFn) -> dict[str, Any]:
    """The fields of a message (but its id), its timestamp fixed so copies are equal."""
    role = draw(st.sampled_from(["user", "assistant", "tool", "system"]))
    fields: dict[str, Any] = {
        "role": role,
        "timestamp": draw(times),
        "content": draw(
            text
            | st.none()
            | st.lists(st.fixed_dictionaries({"type": st.just("text"), "text": text}), max_size=3)
        ),
        "attributes": draw(objects),
    }
    if role == "tool":
        fields["tool_call_id"] = draw(text.filter(bool))
    if draw(st.booleans()):
        fields["source"] = {"type": "user", "id": draw(text)}
        fields["platforms"] = {draw(keys): draw(objects)}
        fields["name"] = draw(text | st.none())
        fields["reactions"] = draw(st.dictionaries(keys, st.lists(text, max_size=3), max_size=2))
        fields["metrics"] = {"model": draw(text), "usage": {"total_tokens": draw(st.integers(0, 10**6))}}
    return fields


@st.composite
def threads(draw: st.DrawFn) -> dict[str, Any]:
    """The fields of a thread (but its id) with its messages."""
    return {
        "title": draw(text),
        "attributes": draw(objects),
        "platforms": draw(st.dictionaries(keys, objects, max_size=3)),
        "source": draw(st.none() | st.fixed_dictionaries({"name": text})),
        "created_at": draw(times),
        "updated_at": draw(times),
        "messages": draw(st.lists(messages(), max_size=6)),
    }


def build(fields: dict[str, Any], thread_id: str) -> Thread:
    """A new Thread from generated fields (a new object per backend: saving changes it); its
    messages' ids are derived from ``thread_id``, so they are the same on every backend."""
    return Thread(**{**fields, "id": thread_id, "messages": new_messages(fields["messages"], thread_id)})


def new_messages(fields: list[dict[str, Any]], prefix: str) -> list[Message]:
    return [Message(**m, id=f"{prefix}-{n}") for n, m in enumerate(fields)]


def stored_part(thread: Thread) -> Thread:
    """What a backend keeps of a thread: everything but its system messages."""
    return Thread(
        **{
            **{f: getattr(thread, f) for f in thread.__struct_fields__},
            "messages": [m for m in thread.messages if m.role != "system"],
        }
    )


@pytest.fixture(scope="module")
def witness() -> Thread:
    return Thread(id="witness", title="untouched")


@given(fields=threads())
async def test_a_saved_thread_reads_back_equal_on_every_backend(
    stores: dict[str, ThreadStore],
    fields: dict[str, Any],
) -> None:
    answers = {}
    thread_id = uuid.uuid4().hex
    for kind, store in stores.items():
        try:
            thread = build(fields, thread_id)
        except (ValueError, TypeError) as exc:  # refused by the models, before any store
            answers[kind] = f"refused: {type(exc).__name__}"
            continue
        try:
            await store.save(thread)
        except (ValueError, TypeError) as exc:
            answers[kind] = f"rejected: {type(exc).__name__}"
            assert await store.get(thread.id) is None, f"{kind}: rejected, yet written"
            continue
        loaded = await store.get(thread.id)
        assert loaded == stored_part(thread), kind
        assert [m.sequence for m in loaded.messages] == list(range(1, len(loaded.messages) + 1))
        answers[kind] = "stored"
        await store.delete(thread_id)
    assert len(set(answers.values())) == 1, answers


# --- the same operations on every backend ------------------------------------------------------

operations = st.lists(
    st.one_of(
        st.tuples(st.just("save"), st.integers(0, 3), threads()),
        st.tuples(st.just("append"), st.integers(0, 3), st.lists(messages(), min_size=1, max_size=3)),
        st.tuples(st.just("add_and_save"), st.integers(0, 3), st.lists(messages(), max_size=3)),
        st.tuples(st.just("edit"), st.integers(0, 3), st.integers(0, 10), text),
        st.tuples(st.just("remove"), st.integers(0, 3), st.integers(0, 10)),
        st.tuples(st.just("delete"), st.integers(0, 3)),
        st.tuples(st.just("get_or_create"), st.integers(0, 3)),
    ),
    min_size=1,
    max_size=8,
)


async def apply(store: ThreadStore, ids: list[str], step: int, operation: tuple[Any, ...]) -> str:
    """Run one generated operation; what it answered, as comparable text. New messages get ids
    made of the thread's and the step's, the same on every backend."""
    kind, target, *args = operation
    thread_id = ids[target]
    prefix = f"{thread_id}-step{step}"
    try:
        if kind == "save":
            await store.save(build(args[0], thread_id))
            return "saved"
        if kind == "append":
            header = await store.append(thread_id, *new_messages(args[0], prefix))
            return f"appended {[m.sequence for m in header.messages]}"
        if kind == "delete":
            return f"deleted {await store.delete(thread_id)}"
        if kind == "get_or_create":
            return f"got {(await store.get_or_create(thread_id)).id}"
        loaded = await store.get(thread_id)
        if loaded is None:
            return "absent"
        if kind == "add_and_save":
            for message in new_messages(args[0], prefix):
                loaded.add_message(message)
        elif kind == "edit" and loaded.messages:
            loaded.messages[args[0] % len(loaded.messages)].content = args[1]
        elif kind == "remove" and loaded.messages:
            loaded.remove_message(loaded.messages[args[0] % len(loaded.messages)].id)
        await store.save(loaded)
        return f"{kind} saved {[m.sequence for m in loaded.messages]}"
    except (ValueError, TypeError, ThreadStoreError) as exc:
        return f"raised {type(exc).__name__}"


def comparable(thread: Thread | None) -> dict[str, Any] | None:
    """A stored thread but the times a backend sets itself (get_or_create, append)."""
    if thread is None:
        return None
    return {f: getattr(thread, f) for f in thread.__struct_fields__ if not f.endswith("ed_at")}


@given(steps=operations)
async def test_every_backend_answers_a_sequence_of_operations_as_memory_does(
    stores: dict[str, ThreadStore],
    steps: list[tuple[Any, ...]],
) -> None:
    ids = [f"parity-{uuid.uuid4().hex[:8]}-{n}" for n in range(4)]
    reference = stores["memory"]
    for number, step in enumerate(steps):
        answers = {kind: await apply(store, ids, number, step) for kind, store in stores.items()}
        assert len(set(answers.values())) == 1, (step[0], answers)
        expected = [comparable(await reference.get(i)) for i in ids]
        for kind, store in stores.items():
            assert [comparable(await store.get(i)) for i in ids] == expected, (kind, step[0])
    for store in stores.values():
        await store.delete_many(ids)
