"""Programs that never call close() exit promptly and quietly, on every backend.

The user documents' own examples (../shared/reference, copied here with only the import line
changed and wrapped in ``asyncio.run``) run in a fresh interpreter: each must exit within 10 s,
with nothing on stderr, and leave what it saved readable. The same with an exception escaping
``asyncio.run``. Then one store used across event loops, in-process.
"""

from __future__ import annotations

import asyncio
import gc
import os
import subprocess
import sys
import textwrap
import threading
import warnings
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from threadstore import Message, Thread, ThreadStore, ThreadStoreError
from threadstore.config import parse_url

EXIT_TIMEOUT = 10.0  # seconds; a hang fails the test, not the run

# threadstore-guide.txt, "Example: Multi-User Chat Application", verbatim but for the import.
MULTI_USER = """
DATABASE_URL = os.getenv("DATABASE_URL", "sqlite+aiosqlite:///chat.db")
store = await ThreadStore.create(DATABASE_URL)
thread = Thread(
    title="Order #12345 Support",
    attributes={"customer_id": "cust_789", "order_id": "12345", "priority": "high"},
    platforms={"slack": {"channel": "C123456", "thread_ts": "1234567890.123"}},
)
thread.add_message(Message(
    role="user",
    content="My order hasn't arrived yet",
    source={"type": "user", "id": "cust_789", "name": "John Doe"}
))
thread.add_message(Message(
    role="assistant",
    content="I'll check on that order for you right away.",
    source={"type": "agent", "id": "support_bot", "name": "Support Bot"}
))
await store.save(thread)
await store.save_thread_alias(thread.id, f"order-{thread.attributes['order_id']}")
order_thread = await store.get_by_alias("order-12345")
high_priority = await store.search_by_content("priority.*high", limit=10)
stats = await store.get_usage_stats()
print(f"Active support threads: {stats['total_threads']}")
"""

# threadstore-guide.txt, "Migration Between Backends": the target URL is the backend's.
MIGRATION = """
sqlite_store = await ThreadStore.create("sqlite+aiosqlite:///old.db")
await sqlite_store.save(Thread(title="Order #12345 Support"))  # something to migrate
threads = await sqlite_store.list(limit=1000)
pg_store = await ThreadStore.create(os.environ["DATABASE_URL"])
for thread in threads:
    await pg_store.save(thread)
print(f"Migrated {len(threads)} threads")
"""

# threadstore-api.md, "Environment Variable Configuration" (TYLER_DB_* set by the test) and
# the save/get/list examples.
TYLER_CONFIGURATION = """
store = await ThreadStore.create()  # Will use configured database type
thread = Thread(title="Order #12345 Support")
thread.add_message(Message(role="user", content="Hello"))
saved_thread = await store.save(thread)
thread = await store.get(saved_thread.id)
if thread:
    print(f"Found {len(thread.messages)} messages")
threads = await store.list(limit=50, offset=0)
"""

# threadstore-guide.txt, "Creating a ThreadStore" then "Error handling": the PostgreSQL URL
# cannot connect, and the example falls back to the in-memory store.
CREATING = """
store = await ThreadStore.create()
store = await ThreadStore.create("sqlite+aiosqlite:///threads.db")
try:
    store = await ThreadStore.create("postgresql+asyncpg://user:pass@localhost/dbname")
except RuntimeError as e:
    print(f"Failed to connect: {e}")
    store = await ThreadStore.create()
"""

EXAMPLES = {
    "multi_user": MULTI_USER,
    "migration": MIGRATION,
    "tyler_configuration": TYLER_CONFIGURATION,
    "creating": CREATING,
}


def _program(body: str, *, escape: bool) -> str:
    ending = '\n    raise KeyError("escaped")' if escape else ""
    return (
        "import asyncio\nimport os\n\nfrom threadstore import Message, Thread, ThreadStore\n\n\n"
        f"async def main():\n{textwrap.indent(body.strip(), '    ')}{ending}\n\n\nasyncio.run(main())\n"
    )


def _environment(url: str | None) -> dict[str, str]:
    """DATABASE_URL and the TYLER_DB_* variables naming the backend under test."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("THREADSTORE_", "TYLER_", "NARRATOR_"))}
    env["DATABASE_URL"] = url or "memory://"
    config = parse_url(url)
    if config.backend == "memory":
        env["TYLER_DB_TYPE"] = "memory"
    elif config.backend == "sqlite":
        env.update(TYLER_DB_TYPE="sqlite", TYLER_DB_PATH=config.path or ":memory:")
    else:
        parts = urlsplit(url)
        env.update(
            TYLER_DB_TYPE="postgresql",
            TYLER_DB_HOST=parts.hostname or "",  # type: ignore[arg-type]
            TYLER_DB_PORT=str(parts.port or 5432),
            TYLER_DB_NAME=parts.path.lstrip("/"),  # type: ignore[arg-type]
            TYLER_DB_USER=parts.username or "",  # type: ignore[arg-type]
        )
    env["PYTHONPATH"] = str(Path(__file__).resolve().parents[2])
    return env


def _run(source: str, tmp_path: Path, url: str | None, *options: str) -> subprocess.CompletedProcess[str]:
    script = tmp_path / "example.py"
    script.write_text(source)
    try:
        return subprocess.run(
            [sys.executable, *options, str(script)],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=EXIT_TIMEOUT,
            env=_environment(url),
        )
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"the program did not exit within {EXIT_TIMEOUT:g} s; it printed {exc.stdout!r}")


def _url_for_subprocess(store_url: str | None, tmp_path: Path) -> str | None:
    if store_url and store_url.startswith("sqlite") and ":memory:" not in store_url:
        return f"sqlite+aiosqlite:///{tmp_path}/chat.db"
    return store_url


async def _stored_titles(url: str | None) -> list[str]:
    async with await ThreadStore.create(url, pool_size=1) as store:
        return [thread.title for thread in await store.list(limit=1000)]


@pytest.mark.parametrize("example", sorted(EXAMPLES))
async def test_an_example_that_never_closes_its_store_exits_quietly(
    store: ThreadStore, store_url: str | None, tmp_path: Path, example: str
) -> None:
    url = _url_for_subprocess(store_url, tmp_path)
    done = _run(_program(EXAMPLES[example], escape=False), tmp_path, url)
    assert (done.returncode, done.stderr) == (0, "")
    if example in ("multi_user", "migration", "tyler_configuration") and url and ":memory:" not in url:
        # what save() acknowledged is stored, though the program never closed its store
        assert "Order #12345 Support" in await _stored_titles(url)
    if example == "creating":
        assert "Failed to connect: cannot connect to PostgreSQL" in done.stdout


@pytest.mark.parametrize("example", sorted(EXAMPLES))
async def test_an_exception_escaping_asyncio_run_still_exits_quietly(
    store: ThreadStore, store_url: str | None, tmp_path: Path, example: str
) -> None:
    done = _run(_program(EXAMPLES[example], escape=True), tmp_path, _url_for_subprocess(store_url, tmp_path))
    assert done.returncode == 1
    # the escaping exception's own traceback, and nothing else
    assert done.stderr.count("Traceback") == 1, done.stderr
    assert done.stderr.rstrip().endswith("KeyError: 'escaped'"), done.stderr


async def test_an_unclosed_store_warns_only_when_warnings_are_on(
    store: ThreadStore, store_url: str | None, tmp_path: Path
) -> None:
    url = _url_for_subprocess(store_url, tmp_path)
    source = _program(
        "store = await ThreadStore.create(os.environ['DATABASE_URL'])\nawait store.list()", escape=False
    )
    quiet = _run(source, tmp_path, url)
    assert (quiet.returncode, quiet.stderr) == (0, "")
    loud = _run(source, tmp_path, url, "-W", "always::ResourceWarning")
    assert loud.returncode == 0
    if store.backend == "memory":  # nothing to release
        assert loud.stderr == ""
    else:
        assert "ResourceWarning: unclosed ThreadStore" in loud.stderr
        assert "Traceback" not in loud.stderr


def test_a_module_level_store_works_in_one_event_loop_after_another(store_url: str | None) -> None:
    shared = ThreadStore(store_url, pool_size=1)
    thread = Thread(title="kept across loops")
    thread.add_message(Message(role="user", content="hello"))

    async def save() -> None:
        await shared.save(thread)

    async def read() -> Thread | None:
        return await shared.get(thread.id)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)  # the store is not closed between loops
        asyncio.run(save())
        again = asyncio.run(read())
        # a loop closed without finalising its async generators (not asyncio.run) as well
        loop = asyncio.new_event_loop()
        try:
            third = loop.run_until_complete(read())
        finally:
            loop.close()
        fourth = asyncio.run(read())
        asyncio.run(shared.close())
    if store_url and ":memory:" in store_url:  # a private database per connection
        assert again is None
        return
    for found in (again, third, fourth):
        assert found is not None and [m.content for m in found.messages] == ["hello"]


def test_a_store_in_use_by_a_loop_in_another_thread_raises_a_clear_error(store_url: str | None) -> None:
    shared = ThreadStore(store_url, pool_size=1)
    started, finish = threading.Event(), threading.Event()

    async def hold() -> None:
        await shared.list()
        started.set()
        while not finish.is_set():
            await asyncio.sleep(0.01)
        await shared.close()

    holder = threading.Thread(target=asyncio.run, args=(hold(),))
    holder.start()
    try:
        assert started.wait(EXIT_TIMEOUT)
        if shared.backend == "memory":  # nothing belongs to a loop: it works
            assert asyncio.run(shared.list()) == []
        else:
            with pytest.raises(ThreadStoreError, match="event loop running in another thread"):
                asyncio.run(shared.list())
    finally:
        finish.set()
        holder.join(EXIT_TIMEOUT)
    assert not holder.is_alive()


def test_a_store_dropped_without_close_closes_its_connection(store_url: str | None) -> None:
    async def drop() -> None:
        store = await ThreadStore.create(store_url, pool_size=1)
        engine = store.engine
        del store
        gc.collect()
        for _ in range(100):  # the loop runs the store's finaliser soon
            await asyncio.sleep(0.01)
            if engine is None or _closed(engine):
                break
        assert engine is None or _closed(engine)

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ResourceWarning)
        asyncio.run(drop())
    unclosed = [w for w in caught if "unclosed ThreadStore" in str(w.message)]
    assert len(unclosed) == (0 if parse_url(store_url).backend == "memory" else 1)


def _closed(engine: object) -> bool:
    if hasattr(engine, "is_closing"):  # an asyncpg pool
        return bool(engine.is_closing())
    return getattr(engine, "_connection", None) is None  # aiosqlite: no sqlite3 connection left
