"""Optional peers (``make bench PEERS=1``): filled in later."""

from __future__ import annotations

from typing import Any


async def postgres(server: str) -> list[Any]:
    return []


def sqlite(directory: str) -> list[Any]:
    return []
