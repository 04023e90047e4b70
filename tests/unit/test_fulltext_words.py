"""threadstore.fulltext's shortcut for SQLite's FTS5 text gives exactly what the general path
gives, on short and long texts alike."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from threadstore import fulltext

_WORDS = st.sampled_from(["order", "Über", "日本", "a", "x" * 257, "_", "9", "ÉTÉ", "ǅ", " ", "\n"])
_TEXTS = st.one_of(
    st.text(),
    st.lists(_WORDS, max_size=600).map(" ".join),  # over MAX_OCCURRENCES words, and too-long ones
)


@given(_TEXTS)
def test_fts5_text_of_is_fts5_text_of_the_words(text: str) -> None:
    assert fulltext.fts5_text_of(text) == fulltext.fts5_text(fulltext.words(text))


def test_the_limits_are_kept_on_both_paths() -> None:
    many = " ".join(["word"] * 300)  # past MAX_OCCURRENCES: the general path
    assert fulltext.fts5_text_of(many) == " ".join(["776f7264"] * 256)
    long_word = "x" * 257 + " kept"  # a word too long is skipped, its place kept
    assert fulltext.fts5_text_of(long_word) == "g 6b657074"
    assert fulltext.fts5_text_of("a b") == "61 62"
    assert fulltext.fts5_text_of("_ -") is None
