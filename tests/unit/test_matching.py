"""threadstore.matching: the regex dialect's checks and spellings, content text, JSON equality."""

from __future__ import annotations

import unicodedata
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from threadstore import matching


@pytest.mark.parametrize(
    ("pattern", "re2"),
    [
        ("a.b", "a.b"),
        ("end$", "end\\z"),
        ("^x", "^x"),
        ("[$]", "[\\$]"),
        ("\\$", "\\$"),
        ("(a|b)", "(?:a|b)"),
        ("(?:ab)+", "(?:ab)+"),
        ("x{2,3}?", "x{2,3}?"),
        ("a b", "a\\ b"),
        ("[^a-z]", "[^a-z]"),
        ("\\n", "\\x{a}"),
        ("x{02,03}", "x{2,3}"),
        ("(a+)+", "(?:a+)+"),
        ("\\w", "[\\pL\\pN_]"),
        ("\\D", "[^\\p{Nd}]"),
        ("[\\d.]", "[\\p{Nd}\\.]"),
    ],
)
def test_regex_spells_the_pattern_for_re2(pattern: str, re2: str) -> None:
    checked = matching.regex(pattern)
    assert checked.posix == pattern
    assert checked.re2 == re2


def test_regex_errors_say_where_and_what() -> None:
    with pytest.raises(ValueError, match=r"position 3: .*\\b is not supported"):
        matching.regex("abc\\b")
    with pytest.raises(ValueError, match="missing '\\)'"):
        matching.regex("(abc")
    with pytest.raises(ValueError, match="runs backwards"):
        matching.regex("[z-a]")


@pytest.mark.parametrize(
    "pattern", ["(a{1,255}){4}", "((a{2}){2}){251}", "\\w{1,255}\\w{1,255}", "\\d{1,255}" * 40]
)
def test_patterns_too_large_for_re2_are_a_value_error(pattern: str) -> None:
    with pytest.raises(ValueError, match="too large to run"):
        matching.regex(pattern)


@pytest.mark.parametrize(
    "pattern", ["x{1,255}x{1,255}x{1,255}y", "(.*a){8}", "\\w{1,255}", "(a{2}){250}", "(?:[\\w\\s]{1,40}){3}"]
)
def test_big_patterns_within_the_limits_compile(pattern: str) -> None:
    assert matching.compiled(matching.regex(pattern).re2).search("x" * 300 + "y a" * 9 + "a" * 500)


# Every character Python's Unicode tables know (not NUL, surrogates, nor the three below).
EVERY_CHARACTER = "".join(
    c
    for c in map(chr, range(1, 0x110000))
    if unicodedata.category(c) not in ("Cn", "Cs") and c not in "\u0345\u0130\u0131"
)


@pytest.mark.parametrize(
    "escape",
    [
        "\\w",
        "\\W",
        "\\d",
        "\\D",
        "\\s",
        "\\S",
        ".",
        "[\\w\\s]",
        "[^\\d\\s]",
        "[a-z]",
        "[^A-Z]",
        "k",
        "Σ",
        "[^ß]",
    ],
)
def test_re2_means_what_python_re_meant_for_every_character(escape: str) -> None:
    """The engine before RE2 was Python's re (IGNORECASE | DOTALL): each class and case-folded
    character matches the same code points in both, except characters Python's Unicode tables do
    not know yet and two measured differences of case folding, where RE2 agrees with PostgreSQL:
    U+0345 (it folds to ι, a letter, so RE2 counts it in \\w) and the dotless ı (U+0131), which
    Python folds with i and I."""
    import re as python_re

    regex = matching.compiled(matching.regex(f"(?:{escape})+").re2)  # runs: one match per run
    old = python_re.compile(f"(?:{escape})+", python_re.IGNORECASE | python_re.DOTALL)
    in_re2 = "".join(m.group() for m in regex.finditer(EVERY_CHARACTER))
    in_python = "".join(m.group() for m in old.finditer(EVERY_CHARACTER))
    assert in_re2, "every escape matches some characters"
    if in_re2 != in_python:
        differ = set(in_re2).symmetric_difference(in_python)
        raise AssertionError(sorted(f"U+{ord(c):04X}" for c in differ)[:20])


def test_literal_escapes_every_special_character() -> None:
    text = "\\^$.|?*+()[]{} plain %_\n\t"
    checked = matching.literal(text)
    regex = matching.compiled(checked.re2)
    assert regex.search(f"x{text.upper()}y")
    assert not regex.search(text.replace(".", "x"))
    assert checked.posix == "\\\\\\^\\$\\.\\|\\?\\*\\+\\(\\)\\[\\]\\{\\} plain %_\n\t"


@pytest.mark.parametrize(
    ("content", "text"),
    [
        ("plain", "plain"),
        (None, None),
        ([], None),
        (
            [
                {"type": "text", "text": "a"},
                {"type": "image_url", "image_url": {"url": "u"}},
                {"type": "text", "text": "b"},
            ],
            "a\nb",
        ),
        ([{"type": "text", "text": 3}, {"type": "text"}, "loose string", {"text": "no type"}], None),
    ],
)
def test_content_text(content: Any, text: str | None) -> None:
    assert matching.content_text(content) == text


@pytest.mark.parametrize(
    ("a", "b", "equal"),
    [
        (1, 1.0, True),
        (1, True, False),
        (0, False, False),
        (None, None, True),
        (None, 0, False),
        ("1", 1, False),
        ({"a": 1, "b": 2}, {"b": 2.0, "a": 1}, True),
        ({"a": 1}, {"a": 1, "b": 2}, False),
        ([1, 2], [1, 2], True),
        ([1, 2], [2, 1], False),
        ([1], [1, 1], False),
        ([True], [1], False),
        ({"a": [1, {"b": None}]}, {"a": [1.0, {"b": None}]}, True),
        (2**70, 2**70 + 1, False),
    ],
)
def test_json_equal(a: Any, b: Any, equal: bool) -> None:
    assert matching.json_equal(a, b) is equal
    assert matching.json_equal(b, a) is equal


@pytest.mark.parametrize(
    ("metrics", "expected"),
    [
        (
            {"model": "m", "usage": {"prompt_tokens": 1, "completion_tokens": 2, "total_tokens": 3}},
            ("m", 1, 2, 3),
        ),
        ({"model": "", "usage": {"prompt_tokens": 1.9}}, (None, 1, 0, 0)),
        ({"model": 5, "usage": {"prompt_tokens": "7", "total_tokens": True}}, (None, 0, 0, 0)),
        ({"usage": "lots"}, (None, 0, 0, 0)),
        ({}, (None, 0, 0, 0)),
    ],
)
def test_message_tokens(metrics: dict[str, Any], expected: tuple[Any, ...]) -> None:
    assert matching.message_tokens(metrics) == expected


def test_fold_maps_what_re2_matches_to_an_ascii_character_to_that_character() -> None:
    """For every code point and every ASCII character: when RE2's case-insensitive match takes
    the one for the other, fold gives both the same character (what SQLite's trigram index,
    which holds folded text, relies on)."""
    text = "".join(chr(c) for c in range(1, 0x110000) if not 0xD800 <= c < 0xE000)
    for code in range(1, 128):
        char = chr(code)
        found = set(matching.compiled(matching.literal(char).re2).findall(text))
        assert char in found
        assert {matching.fold(f) for f in found} == {matching.fold(char)}, (char, found)


@pytest.mark.parametrize(
    ("pattern", "literals"),
    [
        ("refund", ("refund",)),
        ("Refund DELAYED", ("refund delayed",)),
        ("ab", ()),
        ("abc|def", ()),
        ("(abc|def)ghij", ("ghij",)),
        ("ab+cd", ("bcd",)),
        ("abc*de", ()),
        ("abcd*e", ("abc",)),
        ("x{2}yz", ("xyz",)),
        ("x{0,2}yzw", ("yzw",)),
        ("^refund\\.$", ("refund.",)),
        ("Über alles", ("ber alles",)),
        ("\u212aelvin", ("elvin",)),
        ("kelvin", ("kelvin",)),
        ("a.bcd[xy]efg", ("bcd", "efg")),
        ("(?:x)yzw", ("yzw",)),
        ("\\\\ab\\n", ("\\ab\n",)),
        ("\\d+ items", (" items",)),
        ("abc?", ()),
        ("abc??d", ()),
    ],
)
def test_regex_literals_are_the_runs_every_match_holds(pattern: str, literals: tuple[str, ...]) -> None:
    assert matching.regex(pattern).literals == literals


def test_literal_literals_are_its_ascii_stretches() -> None:
    assert matching.literal("Naïve (CAFÉ) order").literals == (") order", "ve (caf")
    assert matching.literal("ab").literals == ()
    assert matching.literal('say "x"').literals == ('say "x"',)


_ATOMS = [
    "a",
    "b",
    "K",
    "k",
    "s",
    "S",
    "\u212a",
    "\u017f",
    "é",
    "É",
    " ",
    ".",
    "\\.",
    "\\n",
    "[ab]",
    "\\d",
    "\\w",
    "(a|bc)",
    "(?:k|s)",
]
_QUANTIFIERS = ["", "", "", "", "+", "*", "?", "{2}", "{0,2}", "{1,}"]


@st.composite
def _pattern_and_match(draw: st.DrawFn) -> tuple[str, str]:
    """A pattern and a text it matches: each atom with a text it matches, in any case."""
    pattern, text = [], []
    for _ in range(draw(st.integers(1, 12))):
        atom, quantifier = draw(st.sampled_from(_ATOMS)), draw(st.sampled_from(_QUANTIFIERS))
        pattern.append(atom + quantifier)
        times = {
            "": 1,
            "+": draw(st.integers(1, 3)),
            "*": draw(st.integers(0, 3)),
            "?": draw(st.integers(0, 1)),
            "{2}": 2,
            "{0,2}": draw(st.integers(0, 2)),
            "{1,}": draw(st.integers(1, 3)),
        }[quantifier]
        for _ in range(times):
            text.append(draw(st.sampled_from(_MATCHES[atom])))
    return "".join(pattern), draw(st.text(max_size=3)) + "".join(text) + draw(st.text(max_size=3))


_MATCHES = {
    "a": ["a", "A"],
    "b": ["b", "B"],
    "K": ["k", "K", "\u212a"],
    "k": ["k", "K", "\u212a"],
    "s": ["s", "S", "\u017f"],
    "S": ["s", "S", "\u017f"],
    "\u212a": ["k", "K", "\u212a"],
    "\u017f": ["s", "S", "\u017f"],
    "é": ["é", "É"],
    "É": ["é", "É"],
    " ": [" "],
    ".": ["x", "\n", "é"],
    "\\.": ["."],
    "\\n": ["\n"],
    "[ab]": ["a", "B"],
    "\\d": ["1", "٣"],
    "\\w": ["x", "_", "ж"],
    "(a|bc)": ["A", "bC"],
    "(?:k|s)": ["\u212a", "\u017f"],
}


@given(_pattern_and_match())
def test_every_match_holds_the_literals_folded(case: tuple[str, str]) -> None:
    pattern, text = case
    checked = matching.regex(pattern)
    assert matching.matcher(checked.re2)(text), (pattern, text)
    for literal in checked.literals:
        assert literal in matching.fold(text), (pattern, text, literal)
