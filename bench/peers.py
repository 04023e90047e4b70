"""Optional peers (``make bench PEERS=1``), on the same server, each in a database of its own.

- slide-narrator: the predecessor of this API (SQLAlchemy ORM over asyncpg / aiosqlite). Its
  tables have the same names as threadstore's, hence its own database (PostgreSQL) or file
  (SQLite). It has save, get and list; no append() without loading, searches or stats.
- langchain-postgres: ``PostgresChatMessageHistory`` (psycopg 3, one connection): a session's
  messages, added and read back. PostgreSQL only.
- the OpenAI Agents SDK's own sessions, for a conversation turn through a session
  (workloads.agents_turn): ``SQLAlchemySession`` over asyncpg on PostgreSQL,
  ``AsyncSQLiteSession`` (aiosqlite) on a SQLite file.

They are installed into the bench's own environment only (the ``bench-peers`` extra), never
threadstore's runtime dependencies. Their fixtures are written through their own APIs (not
timed); threads of more than 1,000 messages are left out to keep the run short.
"""

from __future__ import annotations

import uuid
from typing import Any

from bench import data
from bench.harness import Op, Prep

MAX_SIZE = 1_000  # the peers' fixtures go through their own (slow) write paths


class Narrator:
    """slide-narrator's ThreadStore."""

    name = "slide-narrator"

    def __init__(self, url: str) -> None:
        self.url = url
        self.store: Any = None

    async def open(self) -> None:
        import narrator

        self.narrator = narrator
        self.store = await narrator.ThreadStore.create(self.url)

    async def close(self) -> None:
        engine = getattr(self.store._backend, "engine", None)
        if engine is not None:
            await engine.dispose()

    def thread(self, size: int) -> Any:
        number = data.fresh_number()
        thread = self.narrator.Thread(id=data.new_id(), **data.thread_fields(number))
        for n in range(1, size + 1):
            thread.add_message(self.message(number, n))
        return thread

    def message(self, number: int, n: int) -> Any:
        return self.narrator.Message(**data.message_fields(number, n))

    async def save_new(self) -> Prep:
        async def prep(i: int) -> Op:
            thread = self.thread(10)
            return lambda: self.store.save(thread)

        return prep

    async def append(self, size: int) -> Prep | None:
        if size > MAX_SIZE:
            return None
        threads = []
        for _ in range(2):  # its own write path is slow: few fixture threads
            saved = self.thread(size)
            await self.store.save(saved)
            threads.append(await self.store.get(saved.id))
        numbers = [[data.fresh_number(), size + 1] for _ in threads]

        async def prep(i: int) -> Op:
            k = i % len(threads)
            thread, entry = threads[k], numbers[k]
            thread.add_message(self.message(entry[0], entry[1]))
            entry[1] += 1
            return lambda: self.store.save(thread)

        return prep

    async def get(self, size: int) -> Prep | None:
        if size > MAX_SIZE:
            return None
        ids = []
        for _ in range(2):
            thread = self.thread(size)
            await self.store.save(thread)
            ids.append(thread.id)

        async def prep(i: int) -> Op:
            thread_id = ids[i % len(ids)]
            return lambda: self.store.get(thread_id)

        return prep

    async def list(self) -> Prep:
        # Its own store holds only the threads the workloads above wrote (all of a few messages
        # or more): the page it reads is 20 threads with their messages all the same.
        async def prep(i: int) -> Op:
            return lambda: self.store.list(limit=20)

        return prep


class LangchainHistory:
    """langchain-postgres' PostgresChatMessageHistory: one session = one thread."""

    name = "langchain-pg"
    TABLE = "chat_history"

    def __init__(self, dsn: str) -> None:
        self.dsn = dsn
        self.conn: Any = None

    async def open(self) -> None:
        import psycopg
        from langchain_core.messages import AIMessage, HumanMessage
        from langchain_postgres import PostgresChatMessageHistory

        self.History, self.Human, self.AI = PostgresChatMessageHistory, HumanMessage, AIMessage
        self.conn = await psycopg.AsyncConnection.connect(self.dsn)
        await PostgresChatMessageHistory.acreate_tables(self.conn, self.TABLE)

    async def close(self) -> None:
        await self.conn.close()

    def history(self) -> Any:
        return self.History(self.TABLE, str(uuid.uuid4()), async_connection=self.conn)

    def message(self, number: int, n: int) -> Any:
        fields = data.message_fields(number, n)
        kind = self.Human if fields["role"] == "user" else self.AI
        return kind(content=fields["content"], additional_kwargs={"attributes": fields["attributes"]})

    async def save_new(self) -> Prep:
        async def prep(i: int) -> Op:
            history, number = self.history(), data.fresh_number()
            messages = [self.message(number, n) for n in range(1, 11)]
            return lambda: history.aadd_messages(messages)

        return prep

    async def append(self, size: int) -> Prep | None:
        if size > MAX_SIZE:
            return None
        histories = []
        for _ in range(2):  # its own write path is slow: few fixture threads
            history, number = self.history(), data.fresh_number()
            await history.aadd_messages([self.message(number, n) for n in range(1, size + 1)])
            histories.append(history)

        async def prep(i: int) -> Op:
            history = histories[i % len(histories)]
            message = self.message(data.fresh_number(), 1)
            return lambda: history.aadd_messages([message])

        return prep

    # An add needs no loaded session: it is threadstore's append() as much as its save().
    append_direct = append

    async def get(self, size: int) -> Prep | None:
        if size > MAX_SIZE:
            return None
        histories = []
        for _ in range(2):
            history, number = self.history(), data.fresh_number()
            await history.aadd_messages([self.message(number, n) for n in range(1, size + 1)])
            histories.append(history)

        async def prep(i: int) -> Op:
            return histories[i % len(histories)].aget_messages

        return prep


class AgentsSQLAlchemy:
    """The OpenAI Agents SDK's own SQLAlchemySession over asyncpg (one engine, its pool)."""

    name = "agents-sqlalchemy"

    def __init__(self, url: str) -> None:
        self.url = url
        self.engine: Any = None

    async def open(self) -> None:
        from sqlalchemy.ext.asyncio import create_async_engine

        self.engine = create_async_engine(self.url)

    async def close(self) -> None:
        await self.engine.dispose()

    async def agents_sessions(self, count: int) -> list[Any]:
        from agents.extensions.memory import SQLAlchemySession

        return [
            SQLAlchemySession(data.new_id(), engine=self.engine, create_tables=True) for _ in range(count)
        ]


class AgentsAsyncSQLite:
    """The OpenAI Agents SDK's own AsyncSQLiteSession (aiosqlite) on a SQLite file: one
    connection per session object, kept open across turns."""

    name = "agents-aiosqlite"

    def __init__(self, path: str) -> None:
        self.path = path
        self.sessions: list[Any] = []

    async def open(self) -> None:
        pass

    async def close(self) -> None:
        for session in self.sessions:
            await session.close()

    async def agents_sessions(self, count: int) -> list[Any]:
        from agents.extensions.memory import AsyncSQLiteSession

        made = [AsyncSQLiteSession(data.new_id(), db_path=self.path) for _ in range(count)]
        self.sessions += made
        return made


def postgres(url: str) -> list[Any]:
    """The PostgreSQL peers, in the database at ``url`` (a scratch database of their own)."""
    asyncpg_url = "postgresql+asyncpg://" + url.split("://", 1)[1]
    return [Narrator(asyncpg_url), LangchainHistory(url), AgentsSQLAlchemy(asyncpg_url)]


def sqlite(directory: str) -> list[Any]:
    return [
        Narrator(f"sqlite+aiosqlite:///{directory}/narrator.db"),
        AgentsAsyncSQLite(f"{directory}/agents.db"),
    ]
