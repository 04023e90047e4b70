"""Ranked full-text search (``ThreadStore.search``), defined once for every backend.

A message's text (``matching.content_text``) is cut into words here, in Python, and every
backend indexes exactly these words: PostgreSQL a tsvector built from them (positions kept, so
phrases work), SQLite an FTS5 table fed the words hex-encoded (so FTS5's own tokenizer has
nothing left to decide), the memory backend the lists themselves. Queries are parsed here too and
handed to each engine in its syntax, so every backend finds the same messages.

Words: the maximal runs of letters and digits of any script (``str.isalnum``; the underscore and
marks separate words) of the text in NFC, lowercased (the dotted capital I as i); each Han, kana,
CJK-compatibility, Thai or Lao character is a word of its own, as those scripts do not separate
words by spaces. No stemming, no stop words. Limits, the
same on every backend (PostgreSQL's tsvector sets them): only a message's first 1,000,000
characters are read, a word of more than 256 characters is skipped, a word counts at most 256
times, only the first 16,383 word positions are indexed, and indexing stops once the distinct
words of a message reach 1,000,000 bytes.
"""

from __future__ import annotations

import math
import re
import unicodedata
from collections import Counter
from collections.abc import Sequence
from typing import NamedTuple

MAX_QUERY_LENGTH = 10_000
# Words a query may hold, in all its terms (as a web search engine: Google takes 32). It bounds
# what any query costs: matching reads one index entry per word, and ranking weighs only the
# terms that must or may occur.
MAX_QUERY_WORDS = 32
MAX_TEXT = 1_000_000  # characters of a message's text that are indexed
MAX_WORD_LENGTH = 256
MAX_OCCURRENCES = 256  # PostgreSQL keeps 256 positions per lexeme
MAX_POSITION = 16_383  # PostgreSQL's largest tsvector position
MAX_WORD_BYTES = 1_000_000  # PostgreSQL's tsvector holds at most 1 MiB of lexeme text
SNIPPET_LENGTH = 200
# search() ranks at most the RANKED newest matches (message timestamp, then id, then thread id,
# highest first): ranking every match of a word in most of a million messages took 3.6-6.9 s.
# The SQL backends find them by walking the RECENT newest indexed messages (an index by time);
# a word in fewer than a third of those falls back to its index entries (every match, as before).
# The walk is what a rare word's search pays extra (1-3 ms at 3,000 on PostgreSQL).
RANKED = 1_000
RECENT = 3 * RANKED

_IDEOGRAPHS = (  # and Thai and Lao, written without spaces between words too
    "\u0e00-\u0eff\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\uff66-\uff9f"
    "\U00020000-\U0002fa1f\U00030000-\U0003134f"
)
_WORD = re.compile(f"[{_IDEOGRAPHS}]|[^\\W_{_IDEOGRAPHS}]+")
_ASCII_WORD = re.compile("[a-z0-9]+")  # _WORD in lowered ASCII text, in half its time


def _normal(text: str) -> str:
    """``text`` in NFC: a word typed composed (é) and stored decomposed (e + ◌́) is one word."""
    return text if text.isascii() else unicodedata.normalize("NFC", text)


def _fold(word: str) -> str:
    """A word lowercased; the dotted capital I (İ) lowercases to i + ◌̇: as i, so that
    ``istanbul`` finds ``İstanbul``."""
    word = word.lower()
    return word.replace("i\u0307", "i") if "\u0307" in word else word


class _Found(NamedTuple):
    words: list[str]  # the regex's words of the indexed part of a text
    folded: bool  # and whether they are folded already


def _found(text: str) -> _Found:
    """The regex's words of the indexed part of ``text``. An ASCII text is lowered whole, then
    cut (ASCII lowers letter by letter, so its words are then folded as _fold folds each): on a
    700-character message, 12 us instead of 36 for the words."""
    text = text[:MAX_TEXT]
    if text.isascii():
        return _Found(_ASCII_WORD.findall(text.lower()), True)
    return _Found(_WORD.findall(unicodedata.normalize("NFC", text)), False)


_FILLER = "g"  # an FTS5 token that is never a hex-encoded word: holds the place of a skipped one


def _unlimited_words(found: _Found) -> list[str] | None:
    """The folded ``found`` words of a text, in order, when no limit can apply to them (most
    texts: at most MAX_OCCURRENCES words, none too long), else None."""
    if len(found.words) > MAX_OCCURRENCES:  # some word may then occur too often: not lowered in vain
        return None
    words = found.words if found.folded else [_fold(word) for word in found.words]
    if len(words) <= MAX_OCCURRENCES and all(len(word) <= MAX_WORD_LENGTH for word in words):
        return words
    return None


def words(text: str) -> list[tuple[str, int]]:
    """The indexed words of ``text`` with their positions (1-based, in order)."""
    matched = _found(text)
    found = _unlimited_words(matched)
    if found is not None:  # 2-3x faster than _limited_words
        return list(zip(found, range(1, len(found) + 1), strict=True))
    return _limited_words(matched)


def _limited_words(found: _Found) -> list[tuple[str, int]]:
    """words(text) of a text some limit applies to, from its ``found`` words: a walk that keeps
    count."""
    out: list[tuple[str, int]] = []
    counts: dict[str, int] = {}
    size = 0
    for position, match in enumerate(found.words[:MAX_POSITION], 1):
        word = match if found.folded else _fold(match)
        if len(word) > MAX_WORD_LENGTH:
            continue
        seen = counts.get(word, 0)
        if not seen:
            size += len(word.encode())
            if size > MAX_WORD_BYTES:
                break
        elif seen >= MAX_OCCURRENCES:
            continue
        counts[word] = seen + 1
        out.append((word, position))
    return out


def _query_words(text: str) -> list[str]:
    return [_fold(word) for word in _WORD.findall(_normal(text))]


Phrase = tuple[str, ...]  # words that must occur next to each other, in order


class Query(NamedTuple):
    """A parsed query: every group must match (a group matches when one of its phrases occurs),
    and no excluded phrase may occur."""

    groups: tuple[tuple[Phrase, ...], ...]
    excluded: tuple[Phrase, ...]
    impossible: bool = False  # a required word is longer than any indexed one: nothing matches

    def phrases(self) -> list[Phrase]:
        """The phrases that must or may occur, in query order, a repeated one as often as it is
        repeated: what ranks a message (FTS5's bm25 weighs each phrase of the expression)."""
        return [p for group in self.groups for p in group]


_TOKEN = re.compile(r'(-?)"([^"]*)"?|(\S+)')


def parse(query: object) -> Query:
    """``query`` as a web search engine reads it: words (all must occur), ``"quoted phrases"``,
    ``OR`` between two terms, ``-term`` (must not occur). Anything else is taken as words; a
    term with several words (``e-mail``) is a phrase. ValueError when no word must occur."""
    if not isinstance(query, str):
        raise TypeError(f"the search query must be a string, got {type(query).__name__}")
    if len(query) > MAX_QUERY_LENGTH:
        raise ValueError(f"the search query is {len(query)} characters long; at most {MAX_QUERY_LENGTH}")
    terms: list[tuple[bool, Phrase] | None] = []  # None stands for OR
    for match in _TOKEN.finditer(query):
        negated, quoted, bare = match.group(1) == "-", match.group(2), match.group(3)
        if bare is not None:
            if bare == "OR":
                terms.append(None)
                continue
            negated = bare.startswith("-")
            quoted = bare[1:] if negated else bare
        phrase = tuple(_query_words(quoted))
        if phrase:
            terms.append((negated, phrase))
    groups: list[list[Phrase]] = []
    excluded: list[Phrase] = []
    joining = False
    for i, term in enumerate(terms):
        if term is None:
            # OR joins the positive terms on either side; anywhere else it is the word "or".
            after = terms[i + 1] if i + 1 < len(terms) else None
            before = terms[i - 1] if i else None
            if before is not None and after is not None and (before[0] or after[0]):
                raise ValueError(
                    "OR joins two terms that must or may occur, not an excluded one: "
                    f"{query[:100]!r} (write 'a -b' to exclude b, 'a OR c' for either)"
                )
            if before is not None and after is not None and groups:
                joining = True
                continue
            term = (False, ("or",))
        negated, phrase = term
        if negated:
            excluded.append(phrase)
        elif joining:
            groups[-1].append(phrase)
        else:
            groups.append([phrase])
        joining = False
    count = sum(len(term[1]) if term else 1 for term in terms)
    if count > MAX_QUERY_WORDS:
        raise ValueError(
            f"the search query holds {count} words; at most {MAX_QUERY_WORDS} (excluded ones and "
            f"OR included), as a web search engine takes (got {query[:100]!r})"
        )
    if not groups:
        raise ValueError(
            "the search query has no word that must occur: give at least one word or "
            f"phrase (got {query[:100]!r})"
        )

    # A phrase with a word longer than MAX_WORD_LENGTH occurs nowhere (such words are not indexed).
    def indexable(phrase: Phrase) -> bool:
        return all(len(word) <= MAX_WORD_LENGTH for word in phrase)

    kept = [tuple(dict.fromkeys(p for p in g if indexable(p))) for g in groups]
    excluded = [p for p in excluded if indexable(p)]
    if not all(kept):
        return Query((), (), impossible=True)
    return Query(tuple(kept), tuple(dict.fromkeys(excluded)))


# -- the memory backend's matching and ranking ---------------------------------------------------


class Document(NamedTuple):
    """A message's indexed words as the memory backend keeps them: two objects for the
    collector to walk, however long the message."""

    words: tuple[str, ...]  # the word at each position (1 at index 0); "" for a skipped one
    counts: dict[str, int]  # word -> how many times it is indexed

    @property
    def length(self) -> int:
        """In words, as FTS5 counts them (skipped words hold their place)."""
        return len(self.words)


def document(text: str) -> Document:
    """The indexed words of ``text`` (as ``words(text)``) as a Document."""
    matched = _found(text)
    found = _unlimited_words(matched)
    if found is None:
        indexed = _limited_words(matched)
        slots = [""] * (indexed[-1][1] if indexed else 0)
        for word, position in indexed:
            slots[position - 1] = word
        found = [word for word, _ in indexed]
        return Document(tuple(slots), Counter(found))
    return Document(tuple(found), Counter(found))


def occurrences(phrase: Phrase, doc: Document) -> int:
    """How many times ``phrase`` occurs in ``doc``."""
    counts = doc.counts
    if len(phrase) == 1:
        return counts.get(phrase[0], 0)
    if not all(word in counts for word in phrase):
        return 0
    words, size, first = doc.words, len(phrase), phrase[0]
    return sum(1 for i, word in enumerate(words) if word == first and words[i : i + size] == phrase)


def frequencies(query: Query, doc: Document) -> list[int]:
    """The occurrences in ``doc`` of each of ``query.phrases()``, in that order."""
    return [occurrences(p, doc) for p in query.phrases()]


def matches(query: Query, doc: Document, freqs: Sequence[int]) -> bool:
    """Whether ``doc``, whose ``frequencies`` are ``freqs``, matches ``query``."""
    at = 0
    for group in query.groups:
        if not any(freqs[at : at + len(group)]):
            return False
        at += len(group)
    return not any(occurrences(p, doc) for p in query.excluded)


def bm25_weights(having: Sequence[int], total: int) -> list[float]:
    """FTS5's IDF of each phrase, from how many of ``total`` messages hold it."""
    weights = []
    for count in having:
        idf = math.log((total - count + 0.5) / (count + 0.5))
        weights.append(idf if idf > 0 else 1e-6)
    return weights


def bm25(freqs: Sequence[int], length: int, weights: Sequence[float], average: float) -> float:
    """The score SQLite's FTS5 gives (the negative of its ``bm25()``, k1=1.2, b=0.75)."""
    norm = 1.2 * (0.25 + 0.75 * length / average)
    return sum(idf * (freq * 2.2) / (freq + norm) for freq, idf in zip(freqs, weights, strict=True))


# -- what the SQL backends index and ask ---------------------------------------------------------


def _lexeme(word: str) -> str:
    return "'" + word.replace("\\", "\\\\").replace("'", "''") + "'"


def tsvector(indexed: Sequence[tuple[str, int]]) -> str | None:
    """PostgreSQL tsvector text of the words (None without any)."""
    if not indexed:
        return None
    positions: dict[str, list[str]] = {}
    for word, position in indexed:
        positions.setdefault(word, []).append(str(position))
    return " ".join(f"{_lexeme(w)}:{','.join(p)}" for w, p in positions.items())


def tsvector_of(text: str) -> str | None:
    """``tsvector(words(text))``, in less than half the time for most texts (no positions to
    skip; 30 us instead of 77 for 700 ASCII characters): what the PostgreSQL indexers store."""
    matched = _found(text)
    found = _unlimited_words(matched)
    if found is None:
        return tsvector(_limited_words(matched))
    positions: dict[str, list[str]] = {}
    for position, word in enumerate(found, 1):  # at most MAX_OCCURRENCES words here
        at = positions.get(word)
        if at is None:
            positions[word] = [_NUMBERS[position]]
        else:
            at.append(_NUMBERS[position])
    # A word holds no quote or backslash (both separate words): nothing to escape.
    return " ".join([f"'{w}':{','.join(p)}" for w, p in positions.items()]) or None


_NUMBERS = [str(n) for n in range(MAX_OCCURRENCES + 1)]


def _tsquery_phrase(phrase: Phrase) -> str:
    return "(" + " <-> ".join(map(_lexeme, phrase)) + ")"


def tsquery(query: Query, *, ranking: bool = False) -> str:
    """PostgreSQL tsquery text of ``query``; ``ranking``: of its phrases that must or may occur
    only, what ranks a match (excluded ones occur in no match: ranking by them only costs)."""
    parts = ["(" + " | ".join(map(_tsquery_phrase, group)) + ")" for group in query.groups]
    if not ranking:
        parts += ["!" + _tsquery_phrase(p) for p in query.excluded]
    return " & ".join(parts)


def _hex(word: str) -> str:
    return word.encode().hex()


def fts5_text(indexed: Sequence[tuple[str, int]]) -> str | None:
    """The text SQLite's FTS5 table indexes (its ascii tokenizer splits it back into these words,
    at these positions); None without any word."""
    if not indexed:
        return None
    out: list[str] = []
    for word, position in indexed:
        out.extend([_FILLER] * (position - len(out) - 1))
        out.append(_hex(word))
    return " ".join(out)


def fts5_text_of(text: str) -> str | None:
    """``fts5_text(words(text))``, in about half the time for most texts (no positions to skip)."""
    matched = _found(text)
    found = _unlimited_words(matched)
    if found is None:
        return fts5_text(_limited_words(matched))
    return " ".join([word.encode().hex() for word in found]) or None


def _fts5_phrase(phrase: Phrase) -> str:
    return '"' + " ".join(map(_hex, phrase)) + '"'


def fts5_query(query: Query) -> str:
    """SQLite FTS5 MATCH text of ``query``."""
    expression = " AND ".join("(" + " OR ".join(map(_fts5_phrase, group)) + ")" for group in query.groups)
    if query.excluded:  # one flat NOT: nested ones overflow FTS5's parser stack near 100
        expression = f"({expression}) NOT ({' OR '.join(map(_fts5_phrase, query.excluded))})"
    return expression


# -- snippets --------------------------------------------------------------------------------------

_SPACES = re.compile(r"\s+")


def snippet(text: str, query: Query) -> str:
    """At most SNIPPET_LENGTH characters of ``text`` around the first word of the query's
    phrases, every such word marked ``[word]``, cut at spaces (``…`` where cut); plain text,
    whitespace runs as one space."""
    wanted = {word for phrase in query.phrases() for word in phrase}
    text = _normal(text)
    spans = (m.span() for m in _WORD.finditer(text) if _fold(m.group()) in wanted)
    first = next(spans, None)
    start = 0
    if first is not None and first[0] > SNIPPET_LENGTH // 4:  # from the start of a word
        space = _SPACES.search(text, first[0] - SNIPPET_LENGTH // 4, first[0])
        start = space.end() if space else first[0]
    room = SNIPPET_LENGTH - 2  # the two …
    marked: list[tuple[int, int]] = []
    span = first
    while span is not None and span[1] <= start + room - 2 * (len(marked) + 1):  # a mark takes 2
        marked.append(span)
        span = next(spans, None)
    end = min(len(text), start + room - 2 * len(marked))
    if end < len(text):
        cut = max(text.rfind(" ", start, end), text.rfind("\n", start, end), text.rfind("\t", start, end))
        if cut > (marked[-1][1] if marked else start):
            end = cut
    out, at = [], start
    for a, b in marked:
        out += [text[at:a], "[", text[a:b], "]"]
        at = b
    out.append(text[at:end])
    body = _SPACES.sub(" ", "".join(out)).strip()
    return ("…" if start else "") + body + ("…" if end < len(text) else "")
