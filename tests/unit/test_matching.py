"""threadstore.matching: the regex dialect's checks and spellings, content text, JSON equality."""

from __future__ import annotations

from typing import Any

import pytest

from threadstore import matching


@pytest.mark.parametrize(("pattern", "python"), [
    ("a.b", "a.b"), ("end$", "end\\Z"), ("^x", "^x"), ("[$]", "[\\$]"), ("\\$", "\\$"),
    ("(a|b)", "(?:a|b)"), ("(?:ab)+", "(?:ab)+"), ("x{2,3}?", "x{2,3}?"), ("a b", "a\\ b"),
    ("[^a-z]", "[^a-z]"), ("\\n", "\\\n"),
])
def test_regex_spells_the_pattern_for_python(pattern: str, python: str) -> None:
    checked = matching.regex(pattern)
    assert checked.posix == pattern
    assert checked.python == python


def test_regex_errors_say_where_and_what() -> None:
    with pytest.raises(ValueError, match=r"position 3: .*\\b is not supported"):
        matching.regex("abc\\b")
    with pytest.raises(ValueError, match="missing '\\)'"):
        matching.regex("(abc")
    with pytest.raises(ValueError, match="exponential"):
        matching.regex("(a+)+")
    with pytest.raises(ValueError, match="runs backwards"):
        matching.regex("[z-a]")


def test_literal_escapes_every_special_character() -> None:
    text = "\\^$.|?*+()[]{} plain %_"
    checked = matching.literal(text)
    assert matching.compiled(checked.python).search(f"x{text}y")
    assert checked.posix == "\\\\\\^\\$\\.\\|\\?\\*\\+\\(\\)\\[\\]\\{\\} plain %_"


@pytest.mark.parametrize(("content", "text"), [
    ("plain", "plain"), (None, None), ([], None),
    ([{"type": "text", "text": "a"}, {"type": "image_url", "image_url": {"url": "u"}},
      {"type": "text", "text": "b"}], "a\nb"),
    ([{"type": "text", "text": 3}, {"type": "text"}, "loose string", {"text": "no type"}], None),
])
def test_content_text(content: Any, text: str | None) -> None:
    assert matching.content_text(content) == text


@pytest.mark.parametrize(("a", "b", "equal"), [
    (1, 1.0, True), (1, True, False), (0, False, False), (None, None, True), (None, 0, False),
    ("1", 1, False), ({"a": 1, "b": 2}, {"b": 2.0, "a": 1}, True), ({"a": 1}, {"a": 1, "b": 2}, False),
    ([1, 2], [1, 2], True), ([1, 2], [2, 1], False), ([1], [1, 1], False), ([True], [1], False),
    ({"a": [1, {"b": None}]}, {"a": [1.0, {"b": None}]}, True), (2**70, 2**70 + 1, False),
])
def test_json_equal(a: Any, b: Any, equal: bool) -> None:
    assert matching.json_equal(a, b) is equal
    assert matching.json_equal(b, a) is equal


@pytest.mark.parametrize(("metrics", "expected"), [
    ({"model": "m", "usage": {"prompt_tokens": 1, "completion_tokens": 2, "total_tokens": 3}},
     ("m", 1, 2, 3)),
    ({"model": "", "usage": {"prompt_tokens": 1.9}}, (None, 1, 0, 0)),
    ({"model": 5, "usage": {"prompt_tokens": "7", "total_tokens": True}}, (None, 0, 0, 0)),
    ({"usage": "lots"}, (None, 0, 0, 0)), ({}, (None, 0, 0, 0)),
])
def test_message_tokens(metrics: dict[str, Any], expected: tuple[Any, ...]) -> None:
    assert matching.message_tokens(metrics) == expected
