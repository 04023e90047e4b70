"""The properties kept for code written against the older API: database_url, engine, async_session.
They hand out driver objects (asyncpg, aiosqlite), not SQLAlchemy ones."""

from __future__ import annotations

from typing import Any

import pytest

from threadstore import Thread, ThreadStore


async def _execute(store: ThreadStore, conn: Any, text: str, *args: object) -> None:
    """Run ``text`` (``$1`` placeholders) the way each driver takes it."""
    if store.backend == "postgres":
        await conn.execute(text, *args)
    else:
        await conn.execute(text.replace("$1", "?").replace("$2", "?"), args)


async def _title(store: ThreadStore, thread_id: str) -> str:
    thread = await store.get(thread_id)
    assert thread is not None
    return thread.title


async def test_engine_is_the_driver_object(store: ThreadStore) -> None:
    expected = {"memory": type(None), "sqlite": "aiosqlite.core.Connection", "postgres": "asyncpg.pool.Pool"}
    kind = expected[store.backend]
    engine = store.engine
    if isinstance(kind, str):
        assert f"{type(engine).__module__}.{type(engine).__qualname__}" == kind
    else:
        assert engine is None and store.async_session is None and store.database_url is None


async def test_async_session_commits_at_the_end_and_rolls_back_on_error(store: ThreadStore) -> None:
    if store.async_session is None:
        pytest.skip("the in-memory store has no session")
    await store.save(Thread(id="t1", title="before"))
    update = "UPDATE threads SET title = $1 WHERE id = $2"
    async with store.async_session() as conn:
        await _execute(store, conn, update, "committed", "t1")
    assert await _title(store, "t1") == "committed"
    with pytest.raises(RuntimeError, match="boom"):
        async with store.async_session() as conn:
            await _execute(store, conn, update, "rolled back", "t1")
            raise RuntimeError("boom")
    assert await _title(store, "t1") == "committed"


async def test_a_lazy_store_connects_for_a_session(store_url: str | None) -> None:
    store = ThreadStore(store_url)
    try:
        assert store.engine is None  # not connected yet
        if store.async_session is None:
            assert store_url is None
            return
        async with store.async_session() as conn:
            await _execute(store, conn, "DELETE FROM threads WHERE id = $1", "none")
        assert store.engine is not None
    finally:
        await store.close()
