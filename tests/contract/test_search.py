"""search_by_title, search_by_content, search_by_platform, find_by_attributes, find_by_platform /
find_by_source, find_messages_by_attribute and get_thread_by_message_id, on every backend."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from tests.helpers import assistant, stored, user
from tests.reliability.support import background_done
from threadstore import Message, Thread, ThreadStore
from threadstore.backends import sqlite as sqlite_backend

T0 = datetime(2024, 1, 1, 12, 0, 0, tzinfo=UTC)


async def put(
    store: ThreadStore, thread_id: str, *messages: Message | str, minutes: int = 0, **fields: Any
) -> Thread:
    """Save a thread with that id, fields and messages, updated ``minutes`` after T0."""
    thread = Thread(id=thread_id, **fields)
    for message in messages:
        thread.add_message(user(message) if isinstance(message, str) else message)
    thread.updated_at = T0 + timedelta(minutes=minutes)
    return await store.save(thread)


def ids(threads: list[Thread]) -> list[str]:
    return [t.id for t in threads]


# --- search_by_title ---------------------------------------------------------------------------


async def test_search_by_title_is_a_case_insensitive_substring_match(store: ThreadStore) -> None:
    await put(store, "support", title="Customer Support", minutes=1)
    await put(store, "sales", title="Sales pipeline", minutes=2)
    await put(store, "upper", title="CUSTOMERS of 2024", minutes=3)

    assert ids(await store.search_by_title("customer")) == ["upper", "support"]
    assert ids(await store.search_by_title("SUPPORT")) == ["support"]
    assert ids(await store.search_by_title("nothing like it")) == []


async def test_search_by_title_with_attributes_keeps_the_threads_that_hold_them(store: ThreadStore) -> None:
    await put(store, "u1-a", title="Trip to Rome", attributes={"user_id": "u1", "n": 1}, minutes=1)
    await put(store, "u2-a", title="Rome again", attributes={"user_id": "u2"}, minutes=2)
    await put(store, "u1-b", title="rome, the sequel", attributes={"user_id": "u1", "n": 2.0}, minutes=3)
    await put(store, "none", title="Rome without attributes", minutes=4)

    assert ids(await store.search_by_title("rome", attributes={"user_id": "u1"})) == ["u1-b", "u1-a"]
    assert ids(await store.search_by_title("rome", attributes={"user_id": "u1", "n": 2})) == ["u1-b"]
    assert ids(await store.search_by_title("rome", 1, offset=1, attributes={"user_id": "u1"})) == ["u1-a"]
    assert ids(await store.search_by_title("rome", attributes={"user_id": "u3"})) == []
    assert ids(await store.search_by_title("paris", attributes={"user_id": "u1"})) == []
    assert ids(await store.search_by_title("rome", attributes={})) == ["none", "u1-b", "u2-a", "u1-a"]
    with pytest.raises(TypeError, match="attributes"):
        await store.search_by_title("rome", attributes=["user_id"])  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("%", ["percent"]),
        ("_", ["underscore"]),
        ("\\", ["backslash"]),
        (".*", ["regex"]),
        ("(", ["regex"]),
        ("[a]", ["brackets"]),
        ("it's", ["quote"]),
        ('"hi"', ["dquote"]),
        ("'; DROP TABLE threads; --", ["injection"]),
        ("^$|+?{}", ["specials"]),
    ],
)
async def test_search_by_title_treats_every_character_literally(
    store: ThreadStore, text: str, expected: list[str]
) -> None:
    titles = {
        "percent": "100% sure",
        "underscore": "a_b",
        "backslash": "back\\slash",
        "regex": "dot.*star (x",
        "brackets": "list [a] item",
        "quote": "it's here",
        "dquote": 'say "hi"',
        "injection": "x'; DROP TABLE threads; --",
        "plain": "abc ab",
        "specials": "odd ^$|+?{} chars",
    }
    for minute, (thread_id, title) in enumerate(titles.items()):
        await put(store, thread_id, title=title, minutes=minute)

    assert ids(await store.search_by_title(text)) == expected
    assert len(await store.list()) == len(titles)  # nothing was harmed


async def test_search_by_title_folds_case_beyond_ascii(store: ThreadStore) -> None:
    await put(store, "fr", title="L'École des Hautes Études", minutes=1)
    await put(store, "de", title="über uns", minutes=2)
    await put(store, "emoji", title="party 🎉 time", minutes=3)

    assert ids(await store.search_by_title("école")) == ["fr"]
    assert ids(await store.search_by_title("ÜBER")) == ["de"]
    assert ids(await store.search_by_title("🎉")) == ["emoji"]


async def test_search_by_title_orders_newest_first_with_limit_and_offset(store: ThreadStore) -> None:
    for minute in range(5):
        await put(store, f"t{minute}", title=f"Report {minute}", minutes=minute)
    await put(store, "tie-a", title="Report tie", minutes=10)
    await put(store, "tie-b", title="Report tie", minutes=10)

    assert ids(await store.search_by_title("report")) == ["tie-b", "tie-a", "t4", "t3", "t2", "t1", "t0"]
    assert ids(await store.search_by_title("report", 2)) == ["tie-b", "tie-a"]
    assert ids(await store.search_by_title("report", limit=2, offset=3)) == ["t3", "t2"]
    assert ids(await store.search_by_title("report", None, offset=6)) == ["t0"]
    assert await store.search_by_title("report", 0) == []


async def test_search_results_are_whole_threads_that_save_like_loaded_ones(store: ThreadStore) -> None:
    await put(store, "t", "one", "two", title="Found me", attributes={"k": 1})
    [found] = await store.search_by_title("found")
    assert [m.content for m in found.messages] == ["one", "two"]
    assert [m.sequence for m in found.messages] == [1, 2]
    assert found.attributes == {"k": 1}

    found.add_message(user("three"))
    await store.save(found)
    assert [m.content for m in (await stored(store, "t")).messages] == ["one", "two", "three"]


@pytest.mark.parametrize(
    ("text", "error"),
    [
        (None, TypeError),
        (b"bytes", TypeError),
        (3, TypeError),
        ("nul\x00", ValueError),
        ("lone \ud800 surrogate", ValueError),
        ("x" * 10_001, ValueError),
    ],
)
async def test_search_by_title_rejects_what_is_not_searchable_text(
    store: ThreadStore, text: Any, error: type[Exception]
) -> None:
    await put(store, "t", title="x" * 20)
    with pytest.raises(error):
        await store.search_by_title(text)
    assert ids(await store.search_by_title("x" * 10_000)) == []
    assert ids(await store.search_by_title("xx")) == ["t"]


@pytest.mark.parametrize(
    ("limit", "offset", "error"),
    [
        (-1, 0, ValueError),
        ("10", 0, TypeError),
        (10, -1, ValueError),
        (1.5, 0, TypeError),
        (10, None, TypeError),
        (True, 0, TypeError),
    ],
)
async def test_searches_reject_bad_limits(
    store: ThreadStore, limit: Any, offset: Any, error: type[Exception]
) -> None:
    with pytest.raises(error):
        await store.search_by_title("x", limit, offset=offset)
    with pytest.raises(error):
        await store.find_by_attributes({}, limit, offset=offset)


# --- search_by_content -------------------------------------------------------------------------


async def test_search_by_content_matches_a_regex_ignoring_case(store: ThreadStore) -> None:
    await put(store, "high", "hello", "Priority: very HIGH, please", minutes=1)
    await put(store, "reversed", "high, then priority", minutes=2)
    await put(store, "refund", assistant("Your REFUND is on its way"), minutes=3)

    assert ids(await store.search_by_content("priority.*high")) == ["high"]
    assert ids(await store.search_by_content("refund")) == ["refund"]
    assert ids(await store.search_by_content("high|refund")) == ["refund", "reversed", "high"]
    assert ids(await store.search_by_content("refund", limit=5)) == ["refund"]


async def test_search_by_content_returns_each_thread_once_newest_first(store: ThreadStore) -> None:
    await put(store, "old", "refund one", "refund two", "refund three", minutes=1)
    await put(store, "new", "a refund", minutes=2)
    await put(store, "none", "nothing here", minutes=3)

    assert ids(await store.search_by_content("refund")) == ["new", "old"]
    assert ids(await store.search_by_content("refund", 1)) == ["new"]
    assert ids(await store.search_by_content("refund", 1, offset=1)) == ["old"]


async def test_search_by_content_reads_the_text_parts_of_a_list(store: ThreadStore) -> None:
    parts = [
        {"type": "text", "text": "first part"},
        {"type": "image_url", "image_url": {"url": "https://example.com/refund.png"}},
        {"type": "text", "text": "second part"},
    ]
    await put(store, "parts", user(parts), minutes=1)  # type: ignore[arg-type]
    await put(store, "plain", "third part", minutes=2)

    assert ids(await store.search_by_content("first part")) == ["parts"]
    assert ids(await store.search_by_content("second")) == ["parts"]
    assert ids(await store.search_by_content("refund")) == []  # not a text part
    assert ids(await store.search_by_content("part$")) == ["plain", "parts"]
    # The text parts are joined by newlines: a pattern can span them.
    assert ids(await store.search_by_content("first part\\nsecond")) == ["parts"]


async def test_search_by_content_skips_messages_without_text(store: ThreadStore) -> None:
    await put(
        store,
        "empty",
        assistant(None),
        user([{"type": "image_url", "image_url": {"url": "x"}}]),
        minutes=1,
    )
    await put(store, "text", "", minutes=2)

    assert ids(await store.search_by_content("")) == ["text"]  # an empty text still is text
    assert ids(await store.search_by_content("x")) == []


async def test_search_by_content_sees_only_stored_messages(store: ThreadStore) -> None:
    thread = await put(store, "t", "keep me", "drop me")
    thread.ensure_system_prompt("secret system prompt")
    await store.save(thread)
    assert ids(await store.search_by_content("secret")) == []  # system messages are not stored

    thread.remove_message(thread.messages[-1].id)
    await store.save(thread)
    assert ids(await store.search_by_content("drop")) == []
    assert ids(await store.search_by_content("keep")) == ["t"]

    await store.delete("t")
    assert await store.search_by_content("keep") == []


async def test_substring_searches_answer_alike_before_and_after_indexing(store: ThreadStore) -> None:
    """SQLite narrows these searches with trigram indexes its background indexer fills: the
    answers are the same while writes are queued for it, once it has run, after edits, title
    changes and removals."""
    long_text = "x" * 150_000 + " the needle"  # longer than SQLite's trigram index takes
    await put(store, "kelvin", "300 KELVIN is warm", title="Kelvin scale", minutes=1)
    await put(store, "longs", "Status report für Café", "???", title="STATUS", minutes=2)
    await put(
        store,
        "plain",
        "Refund DELAYED again",
        long_text,
        user([{"type": "text", "text": "part one"}, {"type": "text", "text": "part two"}]),
        title="refunds",
        minutes=3,
    )
    await put(store, "quote", 'she said "refund" twice', title='the "kelvin" quote', minutes=4)

    async def check() -> None:
        assert ids(await store.search_by_content("kelvin")) == ["kelvin"]
        assert ids(await store.search_by_content("KELVIN is")) == ["kelvin"]
        assert ids(await store.search_by_content("status rep")) == ["longs"]
        assert ids(await store.search_by_content("für café")) == ["longs"]
        assert ids(await store.search_by_content("r caf")) == ["longs"]
        assert ids(await store.search_by_content("refund")) == ["quote", "plain"]
        assert ids(await store.search_by_content('"refund"', literal=True)) == ["quote"]
        assert ids(await store.search_by_content("ref.nd del")) == ["plain"]
        assert ids(await store.search_by_content("\\?\\?\\?")) == ["longs"]
        assert ids(await store.search_by_content("the needle")) == ["plain"]
        assert ids(await store.search_by_content("one\npart two")) == ["plain"]
        assert ids(await store.search_by_content("(kel|sta)")) == ["longs", "kelvin"]
        assert ids(await store.search_by_title("kelvin")) == ["quote", "kelvin"]
        assert ids(await store.search_by_title("STATUS")) == ["longs"]
        assert ids(await store.search_by_title("refunds")) == ["plain"]

    await check()  # on SQLite: queued for the index
    await background_done(store)
    await check()  # indexed

    thread = await store.get("plain")
    assert thread is not None
    thread.messages[0].content = "Refund sent"
    thread.title = "money back"
    await store.save(thread)
    assert ids(await store.search_by_content("delayed")) == []
    assert ids(await store.search_by_content("refund sent")) == ["plain"]
    assert ids(await store.search_by_title("refunds")) == []
    assert ids(await store.search_by_title("money")) == ["plain"]
    await background_done(store)
    assert ids(await store.search_by_content("refund sent")) == ["plain"]
    assert ids(await store.search_by_title("money")) == ["plain"]

    thread.remove_message(thread.messages[0].id)
    await store.save(thread)
    await store.delete("kelvin")
    assert ids(await store.search_by_content("refund sent")) == []
    assert ids(await store.search_by_content("kelvin")) == []
    assert ids(await store.search_by_title("kelvin")) == ["quote"]
    await background_done(store)
    assert ids(await store.search_by_content("refund")) == ["quote"]
    assert ids(await store.search_by_title("kelvin")) == ["quote"]


@pytest.mark.parametrize(
    ("pattern", "text", "found"),
    [
        ("a.b", "a\nb", True),  # . matches a newline
        ("end$", "the end", True),
        ("end$", "the end\n", False),  # $ is the end of the text only
        ("^the", "the end", True),
        ("^end", "the end", False),
        (r"\d{3}-\d{4}", "call 555-1234 now", True),
        (r"\d{3}-\d{4}", "call 55-1234 now", False),
        (r"[^a-z ]", "only letters here", False),
        (r"[^a-z ]", "ONLY LETTERS", False),  # the class ignores case too
        (r"[^a-z ]", "letters and 1 digit", True),
        (r"\w+@\w+\.com", "mail bob@example.com", True),
        (r"\s", "nospace", False),
        (r"(?:ab)+c", "xxababcxx", True),
        ("colou?r", "COLOR", True),
        (r"x{2,3}", "axxb", True),
        (r"x{3,}", "axxb", False),
        (r"\$\.\*\(\[\\", "cost $.*([\\ odd", True),
        ("[]x]", "a]b", True),
        ("[a-]", "-", True),
        (r"[\d.]+", "v1.2", True),
        ("tab\\there", "tab\there", True),
        ("a.*?b", "a to b", True),
        ("100%", "it is 100% true", True),
        ("a_b", "a_b", True),
        ("a_b", "axb", False),
        ("it's", "IT'S", True),
        ("🎉", "party 🎉", True),
        ("ÉCOLE", "l'école", True),
        ("", "anything", True),
        ("(a+)+b", "xaaab", True),  # nested repeats: fine for an engine that does not backtrack
        ("(a|b)*c$", "abba", False),
        ("(.*a){3}", "banana", True),
        ("(.*a){4}", "banana", False),
        ("\\w+", "日本", True),  # \w and \s are Unicode classes
        ("a\\sb", "a\u2003b", True),
        ("x{01}", "x", True),
    ],
)
async def test_the_regex_dialect_means_the_same_on_every_backend(
    store: ThreadStore, pattern: str, text: str, found: bool
) -> None:
    await put(store, "t", text)
    assert ids(await store.search_by_content(pattern)) == (["t"] if found else [])


async def test_literal_search_matches_plain_text(store: ThreadStore) -> None:
    await put(store, "dot", "see A.B here", minutes=1)
    await put(store, "x", "see axb here", minutes=2)
    await put(store, "specials", "odd (x[y]* \\ 100%", minutes=3)

    assert ids(await store.search_by_content("a.b", literal=True)) == ["dot"]
    assert ids(await store.search_by_content("a.b")) == ["x", "dot"]
    assert ids(await store.search_by_content("(x[y]* \\ 100%", literal=True)) == ["specials"]
    assert ids(await store.search_by_content("(unclosed", literal=True)) == []


@pytest.mark.parametrize(
    "pattern",
    [
        "(unclosed",
        "[a-",
        "*x",
        "+x",
        "?x",
        "x**",
        "x+*",
        "a{2,1}",
        "a{256}",
        "a{1",
        "{1}",
        "x)",
        "(?=x)",
        "(?!x)",
        "(?<=x)",
        "(?P<name>x)",
        "(?i)x",
        "\\1",
        "(a)\\1",
        "\\b",
        "\\B",
        "\\A",
        "\\Z",
        "\\x41",
        "\\u0041",
        "\\p{L}",
        "\\",
        "[[:alpha:]]",
        "[\\D]",
        "[z-a]",
        "^*",
        "nul\x00",
        "x" * 10_001,
        "(a{1,255}){4}",
        "(\\w{1,255}){2}",  # too large for RE2: refused on every backend alike
    ],
)
async def test_invalid_patterns_raise_value_error_and_the_store_keeps_working(
    store: ThreadStore, pattern: str
) -> None:
    await put(store, "t", "some text")
    with pytest.raises(ValueError, match="pattern"):
        await store.search_by_content(pattern)
    assert ids(await store.search_by_content("some")) == ["t"]
    assert [t.id for t in await store.list()] == ["t"]


async def test_invalid_patterns_are_refused_before_the_database_is_asked() -> None:
    unreachable = ThreadStore("postgresql://nobody@127.0.0.1:1/nothing")  # lazy: never connects
    with pytest.raises(ValueError, match="pattern"):
        await unreachable.search_by_content("(unclosed")
    with pytest.raises(TypeError):
        await unreachable.search_by_content(None)  # type: ignore[arg-type]
    await unreachable.close()


async def test_long_patterns_work(store: ThreadStore) -> None:
    await put(store, "long", "a" * 10_000)
    await put(store, "short", "a" * 9_999)
    assert ids(await store.search_by_content("a" * 10_000)) == ["long"]
    assert ids(await store.search_by_content("a" * 10_000, literal=True)) == ["long"]
    assert ids(await store.search_by_content("(?:b|" + "a" * 9_990 + ")")) == ["short", "long"]


# --- search_by_platform ------------------------------------------------------------------------


async def test_search_by_platform_finds_a_reference_among_the_platform_values(store: ThreadStore) -> None:
    await put(store, "slack", platforms={"slack": {"channel": "C123456", "thread_ts": "1.5"}}, minutes=1)
    await put(store, "discord", platforms={"discord": {"channel": "C123456"}}, minutes=2)
    await put(
        store, "both", platforms={"slack": {"channel": "C9"}, "discord": {"thread": "C123456"}}, minutes=3
    )
    await put(
        store, "nested", platforms={"slack": {"meta": {"channel": "C123456"}, "ids": ["C123456"]}}, minutes=4
    )

    assert ids(await store.search_by_platform("slack", "C123456")) == ["slack"]
    assert ids(await store.search_by_platform("slack", "1.5")) == ["slack"]
    assert ids(await store.search_by_platform("discord", "C123456")) == ["both", "discord"]
    assert ids(await store.search_by_platform("slack", "c123456")) == []  # references are exact
    assert ids(await store.search_by_platform("teams", "C123456")) == []


async def test_search_by_platform_compares_numbers_as_json(store: ThreadStore) -> None:
    await put(store, "int", platforms={"discord": {"guild": 12345, "flag": True}}, minutes=1)
    await put(store, "str", platforms={"discord": {"guild": "12345"}}, minutes=2)

    assert ids(await store.search_by_platform("discord", 12345)) == ["int"]
    assert ids(await store.search_by_platform("discord", 12345.0)) == ["int"]
    assert ids(await store.search_by_platform("discord", "12345")) == ["str"]
    assert ids(await store.search_by_platform("discord", True)) == ["int"]
    assert ids(await store.search_by_platform("discord", 1)) == []  # true is not 1


@pytest.mark.parametrize(
    ("name", "reference", "error"),
    [
        ("slack", None, TypeError),
        ("slack", ["C1"], TypeError),
        ("slack", {"a": 1}, TypeError),
        (None, "C1", TypeError),
        ("", "C1", ValueError),
        ("slack", float("nan"), ValueError),
        ("slack", "nul\x00", ValueError),
    ],
)
async def test_search_by_platform_rejects_bad_arguments(
    store: ThreadStore, name: Any, reference: Any, error: type[Exception]
) -> None:
    with pytest.raises(error):
        await store.search_by_platform(name, reference)


# --- find_by_attributes ------------------------------------------------------------------------


async def test_find_by_attributes_needs_every_key_equal(store: ThreadStore) -> None:
    await put(store, "both", attributes={"customer_id": "123", "priority": "high", "x": 1}, minutes=1)
    await put(store, "one", attributes={"customer_id": "123", "priority": "low"}, minutes=2)
    await put(store, "none", attributes={}, minutes=3)

    assert ids(await store.find_by_attributes({"customer_id": "123", "priority": "high"})) == ["both"]
    assert ids(await store.find_by_attributes({"customer_id": "123"})) == ["one", "both"]
    assert ids(await store.find_by_attributes({"customer_id": 123})) == []  # "123" is not 123


@pytest.mark.parametrize(
    ("wanted", "found"),
    [
        ({"n": 1}, True),
        ({"n": 1.0}, True),
        ({"n": 2}, False),
        ({"f": 1.5}, True),
        ({"yes": True}, True),
        ({"yes": 1}, False),
        ({"zero": False}, True),
        ({"zero": 0}, False),
        ({"nothing": None}, True),
        ({"missing": None}, False),
        ({"s": "text"}, True),
        ({"obj": {"b": [1, 2], "a": "x"}}, True),  # key order does not matter
        ({"obj": {"a": "x"}}, False),  # a part of an object is not equal to it
        ({"obj": {"a": "x", "b": [1, 2], "c": 3}}, False),
        ({"obj": {"a": "x", "b": [1.0, 2]}}, True),
        ({"list": [1, "two", {"three": 3}]}, True),
        ({"list": [1, "two"]}, False),  # nor is a part of a list
        ({"list": ["two", 1, {"three": 3}]}, False),  # lists keep their order
        ({"list": "two"}, False),
        ({"empty": {}}, True),
        ({"empty": []}, False),
        ({"none_list": []}, True),
    ],
)
async def test_find_by_attributes_compares_values_as_json(
    store: ThreadStore, wanted: dict[str, Any], found: bool
) -> None:
    await put(
        store,
        "t",
        attributes={
            "n": 1,
            "f": 1.5,
            "yes": True,
            "zero": False,
            "nothing": None,
            "s": "text",
            "obj": {"a": "x", "b": [1, 2]},
            "list": [1, "two", {"three": 3}],
            "empty": {},
            "none_list": [],
        },
    )
    assert ids(await store.find_by_attributes(wanted)) == (["t"] if found else [])


async def test_find_by_attributes_takes_any_key(store: ThreadStore) -> None:
    keys = [
        "ключ",
        "🎉",
        'qu"ote',
        "it's",
        "a.b",
        "x[0]",
        "$.path",
        "'; DROP TABLE threads; --",
        "back\\slash",
        "%_",
        "",
        " ",
    ]
    for i, key in enumerate(keys):
        await put(store, f"t{i}", attributes={key: i, "other": "x"}, minutes=i)

    for i, key in enumerate(keys):
        assert ids(await store.find_by_attributes({key: i})) == [f"t{i}"], key
    assert ids(await store.find_by_attributes({"a": {"b": 1}})) == []
    assert len(await store.list()) == len(keys)


async def test_find_by_attributes_with_an_empty_dict_matches_every_thread(store: ThreadStore) -> None:
    await put(store, "a", attributes={"k": 1}, minutes=1)
    await put(store, "b", minutes=2)
    assert ids(await store.find_by_attributes({})) == ["b", "a"]
    assert ids(await store.find_by_attributes({}, 1, offset=1)) == ["a"]


async def test_find_by_attributes_follows_changes_to_the_attributes(store: ThreadStore) -> None:
    thread = await put(store, "t", attributes={"user": "u1", "n": 7}, minutes=1)
    await put(store, "other", attributes={"user": "u2", "n": 7}, minutes=2)
    assert ids(await store.find_by_attributes({"user": "u1"})) == ["t"]

    thread.attributes["user"] = "u3"
    await store.save(thread)
    assert ids(await store.find_by_attributes({"user": "u1"})) == []
    assert ids(await store.find_by_attributes({"user": "u3", "n": 7})) == ["t"]
    assert ids(await store.find_by_attributes({"n": 7})) == ["other", "t"]

    del thread.attributes["n"]
    await store.save(thread)
    assert ids(await store.find_by_attributes({"n": 7})) == ["other"]
    thread.attributes["n"] = 7.0
    await store.save(thread)
    assert ids(await store.find_by_attributes({"n": 7})) == ["other", "t"]

    await store.delete("t")
    assert ids(await store.find_by_attributes({"n": 7})) == ["other"]
    assert ids(await store.find_by_attributes({"user": "u3"})) == []


@pytest.mark.parametrize(
    "value",
    [
        0,
        -1,
        2**53 - 1,
        2**53 + 1,
        2**62,
        -(2**63),
        10**30,
        0.5,
        123.456,
        1.25e15,
        "",
        "é",
        r"\u00e9 \\",
        "a" * 3000,
    ],
)
async def test_find_by_attributes_finds_every_kind_of_number_and_string(
    store: ThreadStore, value: Any
) -> None:
    await put(store, "t", attributes={"k": value, "other": "x"}, minutes=1)
    await put(store, "near", attributes={"k": "1" if value == 1 else 1, "other": "x"}, minutes=2)
    assert ids(await store.find_by_attributes({"k": value})) == ["t"]
    assert ids(await store.find_by_attributes({"other": "x", "k": value})) == ["t"]
    assert ids(await store.find_by_attributes({"k": value, "other": "y"})) == []


async def test_find_by_attributes_is_the_same_whether_many_or_few_threads_hold_a_key(
    store: ThreadStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    # SQLite reads its attribute index only when fewer threads than _FEW_HOLDERS hold a wanted
    # key = value; a small bound makes both ways run here on a few threads.
    monkeypatch.setattr(sqlite_backend, "_FEW_HOLDERS", 3)
    for n in range(6):
        await put(store, f"t{n}", attributes={"lang": "en", "user": f"u{n % 2}", "n": n}, minutes=n)
    assert ids(await store.find_by_attributes({"lang": "en"})) == [f"t{n}" for n in range(5, -1, -1)]
    assert ids(await store.find_by_attributes({"lang": "en"}, 2, offset=1)) == ["t4", "t3"]
    assert ids(await store.find_by_attributes({"lang": "en", "user": "u1"})) == ["t5", "t3", "t1"]
    assert ids(await store.find_by_attributes({"user": "u0", "lang": "en", "n": 2})) == ["t2"]
    assert ids(await store.find_by_attributes({"user": "u0", "n": 3})) == []
    for wanted in ({"lang": "en"}, {"user": "u1"}, {"n": 4, "lang": "en"}):
        walked: list[str] = []
        cursor = None
        while True:
            page = await store.list_threads(limit=2, cursor=cursor, attributes=wanted)
            walked += [s.id for s in page.threads]
            if (cursor := page.next_cursor) is None:
                break
        assert walked == ids(await store.find_by_attributes(wanted)), wanted


@pytest.mark.parametrize(
    ("wanted", "error"),
    [
        (None, TypeError),
        ([("k", 1)], TypeError),
        ("k", TypeError),
        ({"k": {1, 2}}, ValueError),
        ({"k": float("nan")}, ValueError),
        ({1: "x"}, ValueError),
        ({"k": b"bytes"}, ValueError),
        ({"k": "nul\x00"}, ValueError),
    ],
)
async def test_find_by_attributes_rejects_what_json_cannot_hold(
    store: ThreadStore, wanted: Any, error: type[Exception]
) -> None:
    with pytest.raises(error):
        await store.find_by_attributes(wanted)


# --- find_by_platform / find_by_source ---------------------------------------------------------


async def test_find_by_platform_needs_every_property_equal(store: ThreadStore) -> None:
    await put(
        store, "slack", platforms={"slack": {"channel": "C123", "thread_ts": "1234567890.123"}}, minutes=1
    )
    await put(store, "other-ts", platforms={"slack": {"channel": "C123", "thread_ts": "9"}}, minutes=2)
    await put(store, "discord", platforms={"discord": {"channel": "C123"}}, minutes=3)

    found = await store.find_by_source("slack", {"channel": "C123", "thread_ts": "1234567890.123"})
    assert ids(found) == ["slack"]
    assert ids(await store.find_by_platform("slack", {"channel": "C123"})) == ["other-ts", "slack"]
    assert ids(await store.find_by_platform("slack", {})) == ["other-ts", "slack"]
    assert ids(await store.find_by_platform("discord", {"channel": "C123"})) == ["discord"]
    assert ids(await store.find_by_platform("slack", {"channel": "C999"})) == []


async def test_find_by_source_also_matches_a_named_source(store: ThreadStore) -> None:
    await put(store, "src", source={"name": "slack", "channel": "C9", "user": "u1"}, minutes=1)
    await put(store, "other-name", source={"name": "web", "channel": "C9"}, minutes=2)
    await put(store, "plat", platforms={"slack": {"channel": "C9"}}, minutes=3)

    assert ids(await store.find_by_source("slack", {"channel": "C9"})) == ["plat", "src"]
    assert ids(await store.find_by_source("slack", {"channel": "C9", "user": "u1"})) == ["src"]
    assert ids(await store.find_by_source("web", {})) == ["other-name"]
    assert ids(await store.find_by_source("slack", {"name": "web"})) == []
    assert ids(await store.find_by_platform(name := "slack", {"channel": "C9"})) == ids(
        await store.find_by_source(name, {"channel": "C9"})
    )


@pytest.mark.parametrize(
    ("name", "properties", "error"),
    [
        (None, {}, TypeError),
        ("", {}, ValueError),
        ("slack", None, TypeError),
        ("slack", {"k": {1}}, ValueError),
        ("slack", {"k": object()}, TypeError),
        ("slack", {"k": float("inf")}, ValueError),
    ],
)
async def test_find_by_platform_rejects_bad_arguments(
    store: ThreadStore, name: Any, properties: Any, error: type[Exception]
) -> None:
    with pytest.raises(error):
        await store.find_by_platform(name, properties)


# --- find_messages_by_attribute ----------------------------------------------------------------


async def test_find_messages_by_attribute_follows_a_dotted_path(store: ThreadStore) -> None:
    first = user("in slack", platforms={"slack": {"ts": "111.1", "channel": "C1"}})
    second = user("also", platforms={"slack": {"ts": "111.1"}})
    await put(store, "b", first, "plain", second)
    await put(
        store,
        "a",
        user("a", platforms={"slack": {"ts": "111.1"}}),
        user("other ts", platforms={"slack": {"ts": "222.2"}}),
    )

    found = await store.find_messages_by_attribute("platforms.slack.ts", "111.1")
    assert [(m.thread_id, m.sequence, m.content) for m in found] == [
        ("a", 1, "a"),
        ("b", 1, "in slack"),
        ("b", 3, "also"),
    ]
    assert found[1].id == first.id and found[1].platforms == first.platforms
    assert await store.find_messages_by_attribute("platforms.slack.ts", "333") == []
    assert len(await store.find_messages_by_attribute("platforms.slack.ts", "111.1", 2)) == 2
    assert [
        m.content for m in await store.find_messages_by_attribute("platforms.slack.ts", "111.1", 2, offset=2)
    ] == ["also"]


async def test_find_messages_by_attribute_reads_attributes_by_key_or_path(store: ThreadStore) -> None:
    await put(
        store,
        "t",
        user("one", attributes={"customer": "c1", "meta": {"score": 1}}),
        user("two", attributes={"customer": "c2", "meta": {"score": 1.0}, "a.b": True}),
        user("three", attributes={"platforms": {"slack": {"ts": "1"}}}),
    )

    assert [m.content for m in await store.find_messages_by_attribute("customer", "c1")] == ["one"]
    assert [m.content for m in await store.find_messages_by_attribute("attributes.customer", "c2")] == ["two"]
    assert [m.content for m in await store.find_messages_by_attribute("meta.score", 1)] == ["one", "two"]
    assert [m.content for m in await store.find_messages_by_attribute(["a.b"], True)] == ["two"]
    assert [
        m.content for m in await store.find_messages_by_attribute("attributes.platforms.slack.ts", "1")
    ] == ["three"]
    assert await store.find_messages_by_attribute("meta", {"score": 2}) == []
    assert [m.content for m in await store.find_messages_by_attribute("meta", {"score": 1})] == ["one", "two"]
    assert await store.find_messages_by_attribute("customer", None) == []  # missing is not null


@pytest.mark.parametrize(
    ("path", "error"),
    [
        ("", ValueError),
        ("a..b", ValueError),
        ("a.", ValueError),
        (3, TypeError),
        (None, TypeError),
        ([], ValueError),
        (["a", 1], TypeError),
        ("nul\x00", ValueError),
    ],
)
async def test_find_messages_by_attribute_rejects_bad_paths(
    store: ThreadStore, path: Any, error: type[Exception]
) -> None:
    with pytest.raises(error):
        await store.find_messages_by_attribute(path, "x")


# --- get_thread_by_message_id ------------------------------------------------------------------


async def test_get_thread_by_message_id_finds_the_holding_thread(store: ThreadStore) -> None:
    thread = await put(store, "t", "one", "two", title="Holder")
    await put(store, "other", "three")
    message = thread.messages[1]

    found = await store.get_thread_by_message_id(message.id)
    assert found is not None and found.id == "t" and found.title == "Holder"
    assert [m.content for m in found.messages] == ["one", "two"]
    assert await store.get_thread_by_message_id("no-such-message") is None

    thread.remove_message(message.id)
    await store.save(thread)
    assert await store.get_thread_by_message_id(message.id) is None
    await store.delete("t")
    assert await store.get_thread_by_message_id(thread.messages[0].id) is None


@pytest.mark.parametrize(("message_id", "error"), [(None, TypeError), ("", ValueError), (1, TypeError)])
async def test_get_thread_by_message_id_rejects_bad_ids(
    store: ThreadStore, message_id: Any, error: type[Exception]
) -> None:
    with pytest.raises(error):
        await store.get_thread_by_message_id(message_id)
