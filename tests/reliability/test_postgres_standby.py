"""A real hot standby: a primary of the test's own and a streaming replica made by pg_basebackup.
A store opens on the standby of a migrated database (create() wrote the migration ledger and
failed there), reads and searches what the primary wrote, and refuses writes clearly."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

from tests.helpers import conversation
from tests.reliability.support import StandbyPair
from threadstore import Thread, ThreadStore, ThreadStoreError

pytestmark = pytest.mark.pg


@pytest.fixture
def primary_and_standby() -> Iterator[tuple[str, str]]:
    """(primary URL, standby URL): two servers of the test's own; skipped where initdb cannot run."""
    pair = StandbyPair("threadstore-standby-")
    try:
        yield pair.url("primary"), pair.url("standby")
    finally:
        pair.close()


async def test_a_store_opens_on_a_hot_standby_reads_and_refuses_writes(
    primary_and_standby: tuple[str, str],
) -> None:
    primary_url, standby_url = primary_and_standby
    async with await ThreadStore.create(primary_url) as primary:
        await primary.save(conversation("zebra crossing", id="z"))
        await primary.search("zebra")  # indexed on the primary
        await primary.save(conversation("giraffe neck", id="g"))  # maybe still queued
        async with asyncio.timeout(60):
            while True:  # until the standby has replayed both
                try:
                    async with await ThreadStore.create(standby_url, read_only=True) as probe:
                        if await probe.get("g") is not None:
                            break
                except ThreadStoreError:
                    pass
                await asyncio.sleep(0.2)
    async with await ThreadStore.create(standby_url) as standby:  # migrate=True: nothing pending
        assert not (await standby.schema_status()).pending
        assert (await standby.get("z") or Thread()).messages[0].content == "zebra crossing"
        assert [h.thread_id for h in await standby.search("zebra")] == ["z"]
        assert [h.thread_id for h in await standby.search("giraffe")] == ["g"]  # indexed or queued
        assert [t.id for t in await standby.search_by_content("giraffe")] == ["g"]
        with pytest.raises(ThreadStoreError, match="read-only"):
            await standby.save(Thread(id="new"))
