"""threadstore.fulltext's shortcuts (SQLite's FTS5 text, PostgreSQL's tsvector text, the words of
an ASCII text) give exactly what the general path gives, on short and long texts alike."""

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


@given(_TEXTS)
def test_tsvector_of_is_tsvector_of_the_words(text: str) -> None:
    assert fulltext.tsvector_of(text) == fulltext.tsvector(fulltext.words(text))


_ASCII_WORDS = st.sampled_from(["Order", "REFUND", "a", "x" * 257, "_", "9", "it's", "e-mail", " ", "\n"])


@given(
    st.one_of(st.text(st.characters(max_codepoint=127)), st.lists(_ASCII_WORDS, max_size=600).map(" ".join))
)
def test_an_ascii_text_has_the_words_it_has_folded_word_by_word(text: str) -> None:
    # An ASCII text is lowered whole; one more, non-ASCII, word sends it down the general path.
    assert fulltext.words(text + " é")[:-1] == fulltext.words(text)
    assert fulltext.words(text + " é")[-1][0] == "é"


def test_the_limits_are_kept_on_both_paths() -> None:
    many = " ".join(["word"] * 300)  # past MAX_OCCURRENCES: the general path
    assert fulltext.fts5_text_of(many) == " ".join(["776f7264"] * 256)
    long_word = "x" * 257 + " kept"  # a word too long is skipped, its place kept
    assert fulltext.fts5_text_of(long_word) == "g 6b657074"
    assert fulltext.fts5_text_of("a b") == "61 62"
    assert fulltext.fts5_text_of("_ -") is None
    assert fulltext.tsvector_of(many) == "'word':" + ",".join(map(str, range(1, 257)))
    assert fulltext.tsvector_of(long_word) == "'kept':2"
    assert fulltext.tsvector_of("b a b") == "'b':1,3 'a':2"
    assert fulltext.tsvector_of("_ -") is None
