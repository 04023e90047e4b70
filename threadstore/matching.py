"""What the search and lookup operations match, defined once for every backend.

- ``regex``/``literal``: the one regular-expression dialect of ``search_by_content`` and
  ``search_by_title``, checked here and given to each backend in the form its engine runs:
  PostgreSQL's ``~*`` and RE2 (``matcher``: the memory backend, and SQLite's REGEXP function).
- ``content_text``: the text of a message's content that content search looks at.
- ``json_equal`` and the lookups built on it: JSON equality, as PostgreSQL's jsonb compares.

The PostgreSQL twins of ``content_text`` and ``platform_values`` are SQL functions in
sql/postgres/migrations/0002_search.sql; the contract suite checks each pair answers alike.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable
from typing import Any, NamedTuple

import re2

MAX_PATTERN_LENGTH = 10_000

# Characters special in either engine outside brackets; escaped, each stands for itself.
_SPECIAL = frozenset("\\^$.|?*+()[]{}")
_CHAR_ESCAPES = {"n": "\n", "t": "\t"}
_MAX_BOUND = 255  # PostgreSQL's limit for {m,n}
# RE2's own \d \s \w are ASCII-only; these are Python's Unicode classes (its str.isalnum,
# isdecimal, isspace), which tests/unit/test_matching.py checks over every code point.
_SPACE = (
    "\\t\\n\\x{b}\\f\\r\\x{1c}-\\x{20}\\x{85}\\x{a0}\\x{1680}\\x{2000}-\\x{200a}\\x{2028}\\x{2029}"
    "\\x{202f}\\x{205f}\\x{3000}"
)
_CLASSES = {"d": "\\p{Nd}", "s": _SPACE, "w": "\\pL\\pN_"}
_BOUND = re.compile(r"\{(\d+)(,(\d*))?\}")


def _options() -> re2.Options:
    options = re2.Options()
    options.case_sensitive = False
    options.dot_nl = True  # "." matches newlines too, as in PostgreSQL
    options.never_capture = True  # only whether it matches is asked
    options.log_errors = False  # a refused pattern is a ValueError, not a line on stderr
    # RE2's default, 8 MiB for the program and its DFA cache (re2 keeps 128 compiled patterns):
    # x{1,255}x{1,255}x{1,255}y (1,532 instructions) compiles in 2 ms and scans 5 MB in ~15 ms;
    # \w{1,255} (343,000: a Unicode class is ~450) takes 0.2 s and 1.4 s per 5 MB; two of
    # those in a row do not fit and are refused.
    options.max_mem = 8 << 20
    return options


_OPTIONS = _options()


class TextPattern(NamedTuple):
    """A checked search pattern, spelled for each engine (both case-insensitive)."""

    text: str  # what the caller gave
    posix: str  # for PostgreSQL's ~* (advanced regular expressions)
    re2: str  # for RE2 (compiled()), case-insensitive, "." matching newlines
    # Substrings, folded, that fold(text) holds wherever the pattern matches text: SQLite's
    # trigram index narrows a search by them (empty: nothing narrows it, every row is tested).
    literals: tuple[str, ...] = ()


# What case-insensitive matching makes of ASCII characters, as one character each: RE2 matches
# an ASCII letter to its other case and nothing else, except k to the Kelvin sign (U+212A) and s
# to the long s (U+017F) (tests/unit/test_matching.py checks every code point). fold() maps all of
# them to one character, so that a case-insensitive match of an ASCII run in a text is a plain
# substring of the folded text; other characters are left as they are, so runs stop at them.
_FOLD = {ord(c): c.lower() for c in "ABCDEFGHIJKLMNOPQRSTUVWXYZ"} | {0x212A: "k", 0x17F: "s"}
MIN_LITERAL = 3  # the trigram index finds substrings of 3 characters or more


def fold(text: str) -> str:
    """``text`` as SQLite's trigram index holds it (see ``TextPattern.literals``)."""
    return text.translate(_FOLD)


def _literals(runs: list[str]) -> tuple[str, ...]:
    """The folded ASCII stretches of ``runs`` long enough for the index, longest first."""
    found: set[str] = set()
    for run in runs:
        for part in re.split(r"[^\x00-\x7f]+", run):
            if len(part) >= MIN_LITERAL:
                found.add(fold(part))
    return tuple(sorted(found, key=lambda part: (-len(part), part)))


def literal(text: str, what: str = "search text") -> TextPattern:
    """A pattern matching ``text`` as a plain, case-insensitive substring."""
    _check_text(text, what)
    posix = "".join("\\" + c if c in _SPECIAL else c for c in text)
    return _checked(TextPattern(text, posix, "".join(map(_re2_char, text)), _literals([text])))


def regex(pattern: str) -> TextPattern:
    """Check ``pattern`` against the supported dialect; ValueError naming what is wrong.

    Supported, with the same meaning on every backend: literal characters; ``.`` (any
    character, newlines included); bracket classes ``[abc]``, ``[^a-z]`` (ranges, ``\\d \\s \\w``
    and escaped punctuation inside); ``\\d \\D \\s \\S \\w \\W``; ``\\n``, ``\\t``; a backslash
    before punctuation for the character itself; groups ``( )`` and ``(?: )``; ``|``; ``^`` and
    ``$`` (start and end of the text); quantifiers ``* + ? {m} {m,} {m,n}`` (n <= 255), each
    optionally followed by ``?``. Matching is case-insensitive and finds the pattern anywhere,
    in time linear in the text. Refused: backreferences, lookaround, named groups, inline
    flags, ``\\b`` and other escapes, POSIX ``[[:classes:]]``, and patterns too large for RE2
    (nested bounds multiplying past 1000, like ``(a{1,255}){4}``, or a program over 8 MiB).
    """
    _check_text(pattern, "pattern")
    parser = _Parser(pattern)
    return _checked(TextPattern(pattern, pattern, parser.spelled(), _literals(parser.runs)))


@functools.lru_cache(maxsize=64)
def compiled(spelling: str) -> re2._Regexp:
    """The compiled form of a pattern's ``re2`` spelling (``.search(text)`` finds it)."""
    return re2.compile(spelling, _OPTIONS)


@functools.lru_cache(maxsize=64)
def matcher(spelling: str) -> Callable[[str], bool]:
    """Whether a text holds a match of a pattern's ``re2`` spelling: what the searches run.

    It calls RE2 directly, without google-re2's ``re``-like layer, which builds a match object
    per call: 0.9 us per 140-character message instead of 4.0 us (Python's ``re``: 0.35 us).
    """
    match = compiled(spelling)._regexp.Match
    unanchored = re2._Anchor.UNANCHORED

    def found(text: str) -> bool:
        data = text.encode()
        return bool(match(unanchored, data, 0, len(data))[0][0] >= 0)

    return found


def _checked(pattern: TextPattern) -> TextPattern:
    """``pattern`` once RE2 has compiled it, so every backend refuses what RE2 cannot run."""
    try:
        compiled(pattern.re2)
    except re2.error as exc:
        reason = exc.args[0].decode() if exc.args and isinstance(exc.args[0], bytes) else str(exc)
        raise ValueError(
            f"the search pattern {pattern.text[:100]!r} is too large to run ({reason}); "
            "repeat a smaller part, or fewer times"
        ) from None
    return pattern


def _re2_char(char: str) -> str:
    """One character as RE2 reads it: ASCII punctuation, space and controls escaped."""
    if not char.isprintable():
        return f"\\x{{{ord(char):x}}}"
    return "\\" + char if char.isascii() and not char.isalnum() else char


def check_text(text: str, what: str) -> None:
    """Refuse text some backend cannot store or search as it is: a NUL character (PostgreSQL
    cannot hold one) or a lone surrogate (not encodable as UTF-8)."""
    if "\x00" in text:
        raise ValueError(
            f"{what} contains a NUL character (\\x00), which PostgreSQL cannot store "
            "(refused on every backend alike)"
        )
    if not text.isascii():
        try:
            text.encode()
        except UnicodeEncodeError:
            raise ValueError(f"{what} is not valid Unicode text (it holds a lone surrogate)") from None


def _check_text(text: object, what: str) -> None:
    if not isinstance(text, str):
        raise TypeError(f"the {what} must be a string, got {type(text).__name__}")
    if len(text) > MAX_PATTERN_LENGTH:
        raise ValueError(f"the {what} is {len(text)} characters long; the limit is {MAX_PATTERN_LENGTH}")
    check_text(text, f"the {what}")


class _Parser:
    """A recursive-descent check of the dialect, producing the RE2 spelling as it goes, and the
    runs of literal characters every match holds (``runs``: only at the top level, where each
    atom must match in turn; a top-level ``|`` leaves none)."""

    def __init__(self, pattern: str) -> None:
        self.text = pattern
        self.pos = 0
        self.depth = 0  # of groups
        self.runs: list[str] = []

    def fail(self, reason: str) -> ValueError:
        return ValueError(f"invalid search pattern {self.text!r} at position {self.pos}: {reason}")

    def spelled(self) -> str:
        out = self.alternation()
        if self.pos < len(self.text):  # only a ")" stops an alternation early
            raise self.fail("unbalanced ')'")
        return out

    def alternation(self) -> str:
        """Branches separated by ``|``."""
        parts = [self.branch()]
        while self.pos < len(self.text) and self.text[self.pos] == "|":
            self.pos += 1
            parts.append(self.branch())
        if self.depth == 0 and len(parts) > 1:
            self.runs = []
        return "|".join(parts)

    def branch(self) -> str:
        out = []
        text = self.text
        top = self.depth == 0
        run: list[str] = []
        while self.pos < len(text) and text[self.pos] not in "|)":
            start = self.pos
            atom, can_repeat = self.atom()
            char = _literal_char(text[start : self.pos])
            repeats = self.quantifier()
            if repeats is not None:
                if not can_repeat:
                    raise self.fail("a quantifier must follow something it can repeat")
                atom += repeats
            out.append(atom)
            if not top:
                continue
            if char is None or (repeats is not None and _may_skip(repeats)):
                self.runs.append("".join(run))
                run = []
            elif repeats is not None:  # at least once: the run ends with it, the next starts with it
                self.runs.append("".join([*run, char]))
                run = [char]
            else:
                run.append(char)
        if top:
            self.runs.append("".join(run))
        return "".join(out)

    def atom(self) -> tuple[str, bool]:
        """One atom: (RE2 text, may be quantified)."""
        text = self.text
        char = text[self.pos]
        self.pos += 1
        if char == "(":
            if text.startswith("?:", self.pos):
                self.pos += 2
            elif text.startswith("?", self.pos):
                raise self.fail("only plain groups ( ) and (?: ) are supported")
            self.depth += 1
            inner = self.alternation()
            self.depth -= 1
            if self.pos >= len(text):
                raise self.fail("missing ')'")
            self.pos += 1
            return f"(?:{inner})", True
        if char == "[":
            return self.bracket(), True
        if char == "\\":
            return self.escape(in_bracket=False), True
        if char in "*+?":
            self.pos -= 1
            raise self.fail(f"nothing before {char!r} to repeat")
        if char == "{":
            self.pos -= 1
            raise self.fail("a '{' must follow something to repeat; write \\{ for the character")
        if char == "^":
            return "^", False
        if char == "$":
            return r"\z", False  # end of text only, as in PostgreSQL
        if char == ".":
            return ".", True
        return _re2_char(char), True

    def escape(self, *, in_bracket: bool) -> str:
        """The escape after a backslash just read; errors point at the backslash."""
        start = self.pos - 1
        if self.pos >= len(self.text):
            self.pos = start
            raise self.fail("a pattern cannot end with a backslash")
        char = self.text[self.pos]
        self.pos += 1
        if char.lower() in _CLASSES:
            if in_bracket and char.isupper():
                self.pos = start
                raise self.fail(f"\\{char} is not supported inside [ ]")
            items = _CLASSES[char.lower()]
            if in_bracket:
                return items
            return f"[^{items}]" if char.isupper() else f"[{items}]"
        if char in _CHAR_ESCAPES:
            return _re2_char(_CHAR_ESCAPES[char])
        if char.isascii() and not char.isalnum() and char.isprintable():
            return _re2_char(char)
        self.pos = start
        raise self.fail(f"the escape \\{char} is not supported")

    def quantifier(self) -> str | None:
        """The quantifier at the position, if any, spelled for RE2."""
        text = self.text
        if self.pos >= len(text):
            return None
        char = text[self.pos]
        if char in "*+?":
            self.pos += 1
            spelled = char
        elif char == "{":
            match = _BOUND.match(text, self.pos)
            if match is None:
                raise self.fail("a '{' must start a bound {m}, {m,} or {m,n}; write \\{ for the character")
            low = int(match[1])
            high = low if match[2] is None else (int(match[3]) if match[3] else None)
            if low > _MAX_BOUND or (high is not None and high > _MAX_BOUND):
                raise self.fail(f"bounds above {_MAX_BOUND} are not supported")
            if high is not None and high < low:
                raise self.fail(f"the bound {match[0]} has its maximum below its minimum")
            self.pos = match.end()
            # Rewritten: RE2 misreads leading zeros ("x{01}" matches nothing).
            spelled = (
                f"{{{low}}}" if match[2] is None else f"{{{low},}}" if high is None else f"{{{low},{high}}}"
            )
        else:
            return None
        if self.pos < len(text) and text[self.pos] == "?":  # non-greedy: same matches
            self.pos += 1
            spelled += "?"
        if self.pos < len(text) and text[self.pos] in "*+?{":
            raise self.fail("a quantifier cannot follow another quantifier")
        return spelled

    def bracket(self) -> str:
        text = self.text
        out = ["["]
        if self.pos < len(text) and text[self.pos] == "^":
            out.append("^")
            self.pos += 1
        first = True
        previous: str | None = None  # the last single character, for a range
        while True:
            if self.pos >= len(text):
                raise self.fail("missing ']'")
            char = text[self.pos]
            if char == "]" and not first:
                self.pos += 1
                out.append("]")
                return "".join(out)
            first = False
            if char == "[" and text[self.pos + 1 : self.pos + 2] in (":", "=", "."):
                raise self.fail("POSIX classes like [[:alpha:]] are not supported; use \\w, \\d, \\s")
            if char == "-" and previous is not None and text[self.pos + 1 : self.pos + 2] not in ("]", ""):
                self.pos += 1
                spelled, end = self.bracket_char()
                if end is None:
                    raise self.fail("a range must end with a character")
                if ord(end) < ord(previous):
                    raise self.fail(f"the range {previous}-{end} runs backwards")
                out.append("-" + spelled)
                previous = None
                continue
            spelled, single = self.bracket_char()
            out.append(spelled)
            previous = single

    def bracket_char(self) -> tuple[str, str | None]:
        """One item of a bracket expression: (RE2 text, the character or None for \\d \\s \\w)."""
        char = self.text[self.pos]
        self.pos += 1
        if char != "\\":
            return _re2_char(char), char
        if self.pos < len(self.text) and self.text[self.pos].lower() in _CLASSES:
            return self.escape(in_bracket=True), None
        escaped = self.text[self.pos : self.pos + 1]
        spelled = self.escape(in_bracket=True)
        return spelled, _CHAR_ESCAPES.get(escaped, escaped)


def _literal_char(atom: str) -> str | None:
    """The one character an atom (as written in the pattern) stands for, or None."""
    if len(atom) == 1:
        return None if atom in _SPECIAL else atom
    if len(atom) == 2 and atom[0] == "\\":
        char = atom[1]
        if char in _CHAR_ESCAPES:
            return _CHAR_ESCAPES[char]
        return char if char.isascii() and not char.isalnum() else None
    return None


def _may_skip(quantifier: str) -> bool:
    """Whether a quantifier (RE2 spelling) allows no repetition at all."""
    return quantifier[0] in "*?" or quantifier.startswith(("{0}", "{0,"))


def content_text(content: object) -> str | None:
    """The text content search looks at: the content string, or a list's text parts joined by
    newlines; None when there is no text (no content, or no text parts)."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        texts = [
            part["text"]
            for part in content
            if isinstance(part, dict) and part.get("type") == "text" and isinstance(part.get("text"), str)
        ]
        return "\n".join(texts) if texts else None
    return None


def json_equal(a: Any, b: Any) -> bool:
    """JSON equality as PostgreSQL's jsonb has it: 1 equals 1.0, true is not 1, objects ignore
    key order, lists compare in order."""
    if isinstance(a, bool) or isinstance(b, bool) or a is None or b is None:
        return type(a) is type(b) and a == b
    if isinstance(a, int | float) and isinstance(b, int | float):
        return a == b
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(json_equal(v, b[k]) for k, v in a.items())
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(json_equal(x, y) for x, y in zip(a, b, strict=True))
    return type(a) is type(b) and isinstance(a, str) and a == b


def contains_all(document: object, wanted: dict[str, Any]) -> bool:
    """Whether ``document`` is an object holding every key of ``wanted`` with an equal value."""
    if not isinstance(document, dict):
        return False
    missing = object()
    return all(json_equal(document.get(key, missing), value) for key, value in wanted.items())


def platform_values(platforms: dict[str, Any], name: str) -> list[Any]:
    """The scalar values of ``platforms[name]`` (the references search_by_platform matches)."""
    entry = platforms.get(name)
    if not isinstance(entry, dict):
        return []
    return [v for v in entry.values() if not isinstance(v, dict | list)]


def platform_index(platforms: dict[str, Any]) -> dict[str, list[Any]]:
    """{platform: its scalar values} for every platform whose entry is an object: PostgreSQL
    stores it beside the thread so that "has this reference" is a containment test on an index."""
    return {
        name: platform_values(platforms, name) for name, entry in platforms.items() if isinstance(entry, dict)
    }


def token_count(value: object) -> int:
    """A token count from metrics: JSON numbers count (truncated), anything else is 0."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return int(value)
    return 0


def message_tokens(metrics: dict[str, Any]) -> tuple[str | None, int, int, int]:
    """(model or None, prompt, completion, total tokens) of a message's metrics."""
    usage = metrics.get("usage")
    if not isinstance(usage, dict):
        usage = {}
    model = metrics.get("model")
    return (
        model if isinstance(model, str) and model else None,
        token_count(usage.get("prompt_tokens")),
        token_count(usage.get("completion_tokens")),
        token_count(usage.get("total_tokens")),
    )


def has_reference(platforms: dict[str, Any], name: str, reference: Any) -> bool:
    """Whether ``platforms[name]`` has ``reference`` as one of its (scalar) values."""
    return any(json_equal(value, reference) for value in platform_values(platforms, name))


def platform_match(platforms: dict[str, Any], source: object, name: str, wanted: dict[str, Any]) -> bool:
    """Whether ``platforms[name]`` holds all of ``wanted``, or ``source`` is named ``name`` and
    holds them."""
    if contains_all(platforms.get(name), wanted):
        return True
    return isinstance(source, dict) and json_equal(source.get("name"), name) and contains_all(source, wanted)


def value_equals(document: object, keys: list[str], value: Any) -> bool:
    """Whether the value at the key path in ``document`` exists and equals ``value``."""
    for key in keys:
        if not isinstance(document, dict) or key not in document:
            return False
        document = document[key]
    return json_equal(document, value)
