"""The README's quickstart, runnable: ``python -m threadstore.quickstart [URL ...]``.

With no URL it runs on the in-memory default, then on a SQLite file in a temporary directory
(what ``make demo`` does), printing what it stored and read back. The code between the markers
is the README's first example, word for word (a unit test keeps them equal).
"""

# --- README quickstart ---
import asyncio

from threadstore import Message, Thread, ThreadStore


async def main(url: str | None = None) -> None:
    store = await ThreadStore.create(url)  # None = in-memory; or "sqlite+aiosqlite:///threads.db"

    thread = Thread(
        title="Order #12345 Support",
        attributes={"customer_id": "cust_789", "priority": "high"},
        platforms={"slack": {"channel": "C123456", "thread_ts": "1234567890.123"}},
    )
    thread.add_message(Message(role="system", content="You are a helpful support agent."))
    thread.add_message(
        Message(role="user", content="My order hasn't arrived yet", source={"type": "user", "id": "cust_789"})
    )
    thread.add_message(Message(role="assistant", content="I'll check on that order right away."))
    await store.save(thread)  # the system message stays on `thread` but is not stored

    loaded = await store.get(thread.id)
    assert loaded is not None
    print(f"[{store.backend}] saved {len(thread.messages)} messages, read back {len(loaded.messages)}:")
    for message in loaded.messages:
        print(f"  {message.sequence}. {message.role}: {message.content}")

    loaded.add_message(Message(role="user", content="Thanks!"))
    await store.save(loaded)  # writes only the new message
    await store.close()


# --- end of README quickstart ---


async def _demo(urls: list[str]) -> None:
    import tempfile

    if urls:
        for url in urls:
            await main(url)
        return
    await main()
    with tempfile.TemporaryDirectory() as directory:
        await main(f"sqlite+aiosqlite:///{directory}/threads.db")


if __name__ == "__main__":
    import sys

    asyncio.run(_demo(sys.argv[1:]))
