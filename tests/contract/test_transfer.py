"""export_threads, import_threads and copy_threads on every backend: threads move whole, with
their ids, times, message sequences and aliases; importing again changes nothing."""

from __future__ import annotations

import io
from datetime import UTC, datetime
from typing import Any

import msgspec
import pytest

from tests.helpers import contents, conversation, index_state, rich_thread, stored, user
from threadstore import Attachment, ConflictError, FileStore, Message, Thread, ThreadStore
from threadstore.models import default_metrics
from threadstore.transfer import AliasRecord, ThreadRecord, copy_threads, export_lines

T0 = datetime(2022, 2, 2, 2, 2, 2, 222222, tzinfo=UTC)


async def everything(store: ThreadStore) -> list[ThreadRecord]:
    return [record async for page in store.export_threads() for record in page]


async def filled(store: ThreadStore, count: int = 5) -> list[Thread]:
    threads = []
    for i in range(count):
        thread = await store.save(rich_thread(f"{i:02d}", messages=4))
        for alias in (f"alias-{i}-b", f"alias-{i}-a"):
            await store.save_thread_alias(thread.id, alias)
        threads.append(await stored(store, thread.id))
    return threads


def record(thread_id: str, *messages: Message, aliases: tuple[str, ...] = (), **fields: Any) -> ThreadRecord:
    return ThreadRecord(
        id=thread_id,
        messages=list(messages),
        created_at=T0,
        updated_at=T0,
        aliases=[AliasRecord(alias, T0) for alias in aliases],
        **fields,
    )


async def test_export_then_import_gives_back_every_field(store: ThreadStore) -> None:
    threads = await filled(store)
    aliases = {t.id: await store.get_thread_aliases(t.id) for t in threads}
    exported = await everything(store)
    assert [r.id for r in exported] == sorted(t.id for t in threads)
    assert all(len(r.aliases) == 2 for r in exported)

    await store.delete_many([t.id for t in threads])
    assert await store.import_threads(exported) == [r.id for r in exported]
    for thread in threads:
        back = await stored(store, thread.id)
        assert back == thread  # every field, messages and their sequences and times included
        assert (
            await store.get_thread_aliases(thread.id)
            == aliases[thread.id]
            == [f"alias-{thread.id[-1]}-b", f"alias-{thread.id[-1]}-a"]
        )
    assert await everything(store) == exported  # alias times too


async def test_importing_the_same_threads_again_changes_nothing(store: ThreadStore) -> None:
    await filled(store, 3)
    before = await everything(store)
    assert await store.import_threads(before) == []
    assert await store.import_threads([*before[:1], record("new-one", user("hi"))]) == ["new-one"]
    assert [r for r in await everything(store) if r.id != "new-one"] == before


async def test_import_keeps_times_and_sequences_as_given_and_numbers_on_from_them(store: ThreadStore) -> None:
    messages = [user("one", sequence=3), user("two", sequence=7), user("three")]
    assert await store.import_threads([record("gappy", *messages)]) == ["gappy"]
    thread = await stored(store, "gappy")
    assert [(m.content, m.sequence) for m in thread.messages] == [("one", 3), ("two", 7), ("three", 8)]
    assert (thread.created_at, thread.updated_at) == (T0, T0)
    appended = await store.append("gappy", user("four"))
    assert appended.messages[0].sequence == 9


async def test_import_skips_system_messages_and_takes_plain_threads(store: ThreadStore) -> None:
    thread = conversation("hello", id="plain")
    thread.ensure_system_prompt("be nice")
    assert await store.import_threads([thread]) == ["plain"]
    assert [m.content for m in (await stored(store, "plain")).messages] == ["hello"]


async def test_a_thread_listed_twice_is_imported_once(store: ThreadStore) -> None:
    first, second = record("twice", user("first")), record("twice", user("second"))
    assert await store.import_threads([first, second]) == ["twice"]
    assert [m.content for m in (await stored(store, "twice")).messages] == ["first"]


async def test_an_alias_naming_another_thread_is_a_conflict_and_stores_nothing(store: ThreadStore) -> None:
    owner = await store.save(conversation("mine", id="owner"))
    await store.save_thread_alias("owner", "taken")
    clashing = record("b", user("x"), aliases=("taken",))
    with pytest.raises(ConflictError) as raised:
        await store.import_threads([record("a", user("fine"), aliases=("free",)), clashing])
    assert str(raised.value) == "alias 'taken' already names another thread"  # on every backend
    assert await store.get("a") is None and await store.get("b") is None
    assert await store.get_by_alias("free") is None
    assert (await stored(store, "owner")).messages == owner.messages
    assert await store.get_thread_aliases("owner") == ["taken"]


@pytest.mark.parametrize("failure", ["alias taken", "bad value"])
async def test_an_import_that_fails_leaves_no_index_rows(store: ThreadStore, failure: str) -> None:
    """An import indexes its messages in the transaction that writes them (issue 28): one that
    fails leaves neither rows nor index rows nor queue entries."""
    await store.save(conversation("mine", id="owner"))
    await store.save_thread_alias("owner", "taken")
    bad = (
        record("b", user("walrus two"), aliases=("taken",))
        if failure == "alias taken"
        else record("b", user("walrus two", sequence=0))
    )
    with pytest.raises(ConflictError if failure == "alias taken" else ValueError):
        await store.import_threads([record("a", user("walrus one"), title="walrus"), bad])
    assert await index_state(store, ["a", "b"]) == (0, 0)
    assert await store.get("a") is None and await store.get("b") is None
    assert await store.search("walrus") == [] and await store.search_by_title("walrus") == []
    assert [h.thread_id for h in await store.search("mine")] == ["owner"]


async def test_an_imported_thread_edited_is_indexed_anew(store: ThreadStore) -> None:
    await store.import_threads(
        [record("e", user("original walrus"), user("kept okapi"), title="first title")]
    )
    loaded = await stored(store, "e")
    loaded.messages[0].content = "edited narwhal"
    loaded.title = "second title"
    await store.save(loaded)
    assert await store.search("walrus") == []
    assert [h.message_id for h in await store.search("narwhal")] == [loaded.messages[0].id]
    assert [t.id for t in await store.search_by_title("second")] == ["e"]
    assert await store.search_by_title("first") == []
    await store.append("e", user("appended quagga"))
    assert [h.sequence for h in await store.search("quagga")] == [3]
    assert [h.sequence for h in await store.search("okapi")] == [2]
    await store.delete("e")
    assert await store.search("narwhal") == [] and await store.search("okapi") == []
    assert await index_state(store, ["e"]) == (0, 0)


async def test_a_message_id_another_thread_holds_is_imported_as_this_threads_own(
    store: ThreadStore,
) -> None:
    owner = await store.save(conversation("mine", id="owner"))
    taken = owner.messages[0]
    assert await store.import_threads([record("b", Message(role="user", content="x", id=taken.id))]) == ["b"]
    assert [(m.id, m.content) for m in (await stored(store, "b")).messages] == [(taken.id, "x")]
    assert contents(await stored(store, "owner")) == ["mine"]


@pytest.mark.parametrize(
    ("bad", "error", "match"),
    [
        (lambda: record("x", user("a", sequence=2), user("b", sequence=2)), ValueError, "same sequence"),
        (lambda: record("x", user("a", sequence=0)), ValueError, "sequence must be an int from 1"),
        (lambda: record("x", user("a", sequence=2**31)), ValueError, "sequence must be an int from 1"),
        (lambda: record("x", user("a"), aliases=("dup", "dup")), ValueError, "alias 'dup' twice"),
        (lambda: record("x", aliases=("",)), ValueError, "alias must not be empty"),
        (lambda: record("x", attributes={"k": (1, 2)}), ValueError, "Thread.attributes"),
        (lambda: record("x", user("nul \x00")), ValueError, "NUL"),
        (lambda: {"id": "x"}, TypeError, "takes Threads, got dict"),
    ],
)
async def test_bad_input_is_refused_and_stores_nothing(
    store: ThreadStore, bad: Any, error: type, match: str
) -> None:
    with pytest.raises(error, match=match):
        await store.import_threads([record("fine", user("ok")), bad()])
    assert await store.get("fine") is None and await store.get("x") is None


async def test_pending_attachments_are_stored_in_the_file_store_first(
    store: ThreadStore, tmp_path: Any
) -> None:
    message = user("see attached", attachments=[Attachment(filename="notes.md", content=b"# hi")])
    with pytest.raises(ValueError, match="pass file_store=FileStore"):
        await store.import_threads([record("files", message)])
    assert await store.get("files") is None
    files = await FileStore.create(tmp_path / "files")
    assert await store.import_threads([record("files", message)], file_store=files) == ["files"]
    attachment = (await stored(store, "files")).messages[0].attachments[0]
    assert (attachment.status, attachment.content) == ("stored", None)
    assert await attachment.get_content_bytes(files) == b"# hi"


async def test_export_reads_pages_in_id_order_from_after(store: ThreadStore) -> None:
    assert [page async for page in store.export_threads()] == []
    await store.import_threads([record(f"t{i}") for i in (4, 1, 3, 0, 2)])
    pages = [[r.id for r in page] async for page in store.export_threads(page_size=2)]
    assert pages == [["t0", "t1"], ["t2", "t3"], ["t4"]]
    after = [[r.id for r in page] async for page in store.export_threads(page_size=2, after="t2")]
    assert after == [["t3", "t4"]]
    with pytest.raises(ValueError, match="page_size"):
        await anext(store.export_threads(page_size=0))


async def test_copy_to_the_in_memory_reference_is_equal(store: ThreadStore) -> None:
    await filled(store, 5)
    async with await ThreadStore.create() as reference:
        assert await copy_threads(store, reference, page_size=2) == (5, 0)
        assert await everything(reference) == await everything(store)
        assert await copy_threads(store, reference, page_size=2) == (0, 5)


async def test_an_interrupted_copy_resumes_where_it_stopped(
    store: ThreadStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    await store.import_threads([record(f"t{i:02d}", user(f"m{i}"), aliases=(f"a{i}",)) for i in range(10)])
    async with await ThreadStore.create() as target:
        real = target.import_threads
        calls = 0

        async def failing_on_the_third_page(threads: Any) -> list[str]:
            nonlocal calls
            calls += 1
            if calls == 3:
                raise ConnectionResetError("the network went away")
            return await real(threads)

        monkeypatch.setattr(target, "import_threads", failing_on_the_third_page)
        with pytest.raises(ConnectionResetError):
            await copy_threads(store, target, page_size=2, writers=1)
        assert len(await everything(target)) == 4  # two pages written, nothing of the third
        monkeypatch.setattr(target, "import_threads", real)
        assert await copy_threads(store, target, page_size=2) == (6, 4)
        assert await everything(target) == await everything(store)


async def test_metrics_left_at_their_default_are_exported_empty_and_read_back_as_the_default(
    store: ThreadStore,
) -> None:
    set_metrics = {"model": "m1", "usage": {"total_tokens": 7}}
    thread = Thread(id="metrics")
    thread.add_message(Message(role="user", content="nothing set"))
    thread.add_message(Message(role="user", content="emptied", metrics={}))
    thread.add_message(Message(role="assistant", content="set", metrics=set_metrics))
    await store.save(thread)
    out = io.BytesIO()
    assert await export_lines(store, out) == 1
    line = msgspec.json.decode(out.getvalue())
    assert [m["metrics"] for m in line["messages"]] == [{}, {}, set_metrics]
    back = await stored(store, "metrics")
    assert [m.metrics for m in back.messages] == [default_metrics(), default_metrics(), set_metrics]
    assert Message(role="user", metrics={}).metrics == default_metrics()  # the same value in memory
    assert (await store.get_usage_stats())["total_tokens"]["total"] == 7
