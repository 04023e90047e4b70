"""A real hot standby: a primary of the test's own and a streaming replica made by pg_basebackup.
A store opens on the standby of a migrated database (create() wrote the migration ledger and
failed there), reads and searches what the primary wrote, and refuses writes clearly."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
from collections.abc import Iterator

import pytest

from tests.helpers import conversation
from tests.reliability.support import free_port, server_directory
from threadstore import Thread, ThreadStore, ThreadStoreError

pytestmark = pytest.mark.pg


@pytest.fixture
def primary_and_standby() -> Iterator[tuple[str, str]]:
    """(primary URL, standby URL): two servers of the test's own under a temporary directory,
    each bounded by pg_ctl's own timeouts; skipped where initdb cannot run."""
    binaries, as_user, root = server_directory("threadstore-standby-")
    ports = {"primary": free_port(), "standby": free_port()}

    def pg(*args: str) -> None:
        subprocess.run([*as_user, *args], check=True, capture_output=True, timeout=120)

    def start(name: str) -> None:
        options = f"-F -p {ports[name]} -k {root} -c listen_addresses=127.0.0.1 -c max_connections=30"
        pg(str(binaries / "pg_ctl"), "-D", str(root / name), "-l", str(root / f"{name}.log"),
           "-o", options, "-w", "-t", "60", "start")  # fmt: skip

    pg(str(binaries / "initdb"), "-D", str(root / "primary"), "-A", "trust", "-U", "postgres",
       "-E", "UTF8", "--no-sync", "--no-instructions")  # fmt: skip
    try:
        start("primary")
        pg(str(binaries / "pg_basebackup"), "-D", str(root / "standby"), "-h", "127.0.0.1",
           "-p", str(ports["primary"]), "-U", "postgres", "-R", "-X", "stream")  # fmt: skip
        start("standby")
        yield tuple(f"postgresql://postgres@127.0.0.1:{ports[n]}/postgres" for n in ("primary", "standby"))  # type: ignore[misc]
    finally:
        for name in ("standby", "primary"):
            subprocess.run(
                [*as_user, str(binaries / "pg_ctl"), "-D", str(root / name), "-m", "immediate", "-w", "stop"],
                capture_output=True,
                timeout=60,
            )
        shutil.rmtree(root, ignore_errors=True)


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
