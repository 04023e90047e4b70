"""threadstore: persist AI conversation threads in memory, SQLite or PostgreSQL.

    from threadstore import ThreadStore, Thread, Message, Attachment, FileStore
    store = await ThreadStore.create()          # or "sqlite+aiosqlite:///threads.db", "postgresql://..."

Every public type is importable from here and listed in ``__all__``.
"""

from typing import TYPE_CHECKING, Any

from threadstore.adopt import AdoptionProblem, AdoptionReport, adopt
from threadstore.backends import SchemaStatus
from threadstore.errors import (
    CommandTimeoutError,
    ConfigurationError,
    ConflictError,
    FileStoreError,
    FileTooLargeError,
    NotFoundError,
    PoolTimeoutError,
    QueryFileError,
    ReadOnlyError,
    SchemaVersionError,
    StorageFullError,
    StoreClosedError,
    StoreUnavailableError,
    ThreadStoreError,
    UnsupportedFileTypeError,
)
from threadstore.models import Attachment, Message, Role, SearchHit, Thread, ThreadPage, ThreadSummary
from threadstore.store import ThreadStore
from threadstore.transfer import AliasRecord, ThreadRecord

if TYPE_CHECKING:
    from threadstore.files import FileStore, collect_garbage

    __version__: str

_LAZY = {"FileStore", "collect_garbage"}


def __getattr__(name: str) -> Any:
    # threadstore.files on first use: it imports asyncio, which would double the cost of
    # `import threadstore` (make bench). __version__ too: importlib.metadata costs as much.
    if name in _LAZY:
        from threadstore import files

        return getattr(files, name)
    if name == "__version__":
        from threadstore.version import version

        return version()
    raise AttributeError(f"module 'threadstore' has no attribute {name!r}")


__all__ = [
    "AdoptionProblem",
    "AdoptionReport",
    "AliasRecord",
    "Attachment",
    "CommandTimeoutError",
    "ConfigurationError",
    "ConflictError",
    "FileStore",
    "FileStoreError",
    "FileTooLargeError",
    "Message",
    "NotFoundError",
    "PoolTimeoutError",
    "QueryFileError",
    "ReadOnlyError",
    "Role",
    "SchemaStatus",
    "SchemaVersionError",
    "SearchHit",
    "StorageFullError",
    "StoreClosedError",
    "StoreUnavailableError",
    "Thread",
    "ThreadPage",
    "ThreadRecord",
    "ThreadStore",
    "ThreadStoreError",
    "ThreadSummary",
    "UnsupportedFileTypeError",
    "adopt",
    "collect_garbage",
]
