"""threadstore: persist AI conversation threads in memory, SQLite or PostgreSQL.

    from threadstore import ThreadStore, Thread, Message
    store = await ThreadStore.create()          # or "sqlite+aiosqlite:///threads.db", "postgresql://..."
"""

from threadstore.errors import (
    ConfigurationError,
    ConflictError,
    NotFoundError,
    SchemaVersionError,
    StoreClosedError,
    StoreUnavailableError,
    ThreadStoreError,
)
from threadstore.models import Attachment, Message, Thread
from threadstore.store import ThreadStore

__all__ = [
    "Attachment",
    "ConfigurationError",
    "ConflictError",
    "Message",
    "NotFoundError",
    "SchemaVersionError",
    "StoreClosedError",
    "StoreUnavailableError",
    "Thread",
    "ThreadStore",
    "ThreadStoreError",
]
