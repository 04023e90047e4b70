"""threadstore: persist AI conversation threads in memory, SQLite or PostgreSQL.

    from threadstore import ThreadStore, Thread, Message, Attachment, FileStore
    store = await ThreadStore.create()          # or "sqlite+aiosqlite:///threads.db", "postgresql://..."
"""

from typing import TYPE_CHECKING, Any

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
from threadstore.models import Attachment, Message, SearchHit, Thread
from threadstore.store import ThreadStore

if TYPE_CHECKING:
    from threadstore.files import FileStore

    __version__: str


def __getattr__(name: str) -> Any:
    # FileStore on first use: threadstore.files imports asyncio, which would double the cost of
    # `import threadstore` (make bench). __version__ too: importlib.metadata is as costly.
    if name == "FileStore":
        from threadstore.files import FileStore

        return FileStore
    if name == "__version__":
        from threadstore.version import version

        return version()
    raise AttributeError(f"module 'threadstore' has no attribute {name!r}")

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
    "SearchHit",
    "StorageFullError",
    "StoreClosedError",
    "StoreUnavailableError",
    "Thread",
    "ThreadStore",
    "ThreadStoreError",
    "UnsupportedFileTypeError",
]
