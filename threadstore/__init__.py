"""threadstore: persist AI conversation threads in memory, SQLite or PostgreSQL.

    from threadstore import ThreadStore, Thread, Message, Attachment, FileStore
    store = await ThreadStore.create()          # or "sqlite+aiosqlite:///threads.db", "postgresql://..."
"""

from threadstore.errors import (
    ConfigurationError,
    ConflictError,
    FileStoreError,
    FileTooLargeError,
    NotFoundError,
    SchemaVersionError,
    StorageFullError,
    StoreClosedError,
    StoreUnavailableError,
    ThreadStoreError,
    UnsupportedFileTypeError,
)
from threadstore.files import FileStore
from threadstore.models import Attachment, Message, Thread
from threadstore.store import ThreadStore

__all__ = [
    "Attachment",
    "ConfigurationError",
    "ConflictError",
    "FileStore",
    "FileStoreError",
    "FileTooLargeError",
    "Message",
    "NotFoundError",
    "SchemaVersionError",
    "StorageFullError",
    "StoreClosedError",
    "StoreUnavailableError",
    "Thread",
    "ThreadStore",
    "ThreadStoreError",
    "UnsupportedFileTypeError",
]
