"""The regex dialect means the same to PostgreSQL's ~* as to RE2 (memory, SQLite), for generated patterns."""

from __future__ import annotations

import random

import asyncpg
import pytest

from threadstore import matching

pytestmark = pytest.mark.pg

ATOMS = [
    "a",
    "b",
    "A",
    ".",
    "[ab]",
    "[^a]",
    "[a-c]",
    "\\d",
    "\\w",
    "\\s",
    "\\W",
    "\\.",
    "é",
    "É",
    "\\n",
    "[\\d.]",
    "[]a]",
    "-",
    " ",
    "_",
    "%",
    "1",
    "\\$",
    "[^\\s]",
]
QUANTIFIERS = ["", "", "*", "+", "?", "{2}", "{1,}", "{0,2}", "*?", "+?"]
TEXTS = [
    "",
    "a",
    "ab",
    "aab\nb",
    "AB",
    "é",
    "É",
    "a.b",
    "12",
    "a b",
    "_%",
    "ba",
    "abc-1",
    "\n",
    "aaa",
    "x y\nz",
    "a]b",
    "$5",
    "b\n",
    "ÜBER über",
    "日本語 ab",
    "x\ty",
    "ÀÉ àé 1_2",
    "\u2003a\u3000b",
]  # both in \s everywhere (PostgreSQL's \s lacks U+00A0, Python's has it)


def generated_pattern(rng: random.Random, depth: int = 0) -> str:
    parts: list[str] = []
    for _ in range(rng.randint(1, 4)):
        roll = rng.random()
        if roll < 0.15 and depth < 2:
            group = rng.choice(["(%s)", "(?:%s)"]) % generated_pattern(rng, depth + 1)
            parts.append(group + rng.choice(["", "?", "*", "+", "{2}"]))
        elif roll < 0.22:
            parts.append(rng.choice(["^", "$"]))
        elif roll < 0.27 and parts:
            parts.append("|")
        else:
            parts.append(rng.choice(ATOMS) + rng.choice(QUANTIFIERS))
    return "".join(parts)


async def test_generated_patterns_match_alike_in_postgres_and_re2(pg_url: str) -> None:
    rng = random.Random(2024)
    conn = await asyncpg.connect(pg_url)
    compared = 0
    try:
        for _ in range(600):
            pattern = generated_pattern(rng)
            try:
                checked = matching.regex(pattern)
            except ValueError:
                continue  # refused before any engine sees it
            regex = matching.compiled(checked.re2)
            rows = await conn.fetch("SELECT t, t ~* $1 FROM unnest($2::text[]) AS t", checked.posix, TEXTS)
            for text, in_postgres in rows:
                assert (regex.search(text) is not None) == in_postgres, (pattern, text)
            compared += 1
    finally:
        await conn.close()
    assert compared > 450  # nested repeats like (a+)* are accepted: RE2 does not backtrack
