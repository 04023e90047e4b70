"""Exceptions raised by threadstore.

Every error the store raises for a reason outside the caller's arguments is a ThreadStoreError,
a RuntimeError, so code written against the predecessors' documented ``except RuntimeError``
keeps working. Bad arguments raise ValueError or TypeError before anything is written.
"""


class ThreadStoreError(RuntimeError):
    """Base class of every threadstore error (a RuntimeError, as the predecessors documented)."""


class ConfigurationError(ThreadStoreError, ValueError):
    """A database URL or setting is invalid."""


class StoreUnavailableError(ThreadStoreError):
    """The database could not be reached or the connection was lost."""


class PoolTimeoutError(StoreUnavailableError, TimeoutError):
    """No pooled connection became free within the pool timeout (``DB_POOL_TIMEOUT``)."""


class CommandTimeoutError(StoreUnavailableError, TimeoutError):
    """A statement ran longer than the command timeout (``DB_COMMAND_TIMEOUT``); it was cancelled."""


class StoreClosedError(ThreadStoreError):
    """The store was closed; create a new one."""


class ReadOnlyError(ThreadStoreError):
    """A write was asked of a store opened with ``read_only=True``; nothing was written."""


class ConflictError(ThreadStoreError):
    """The write collides with stored data (e.g. a message id stored in another thread)."""


class NotFoundError(ThreadStoreError, LookupError):
    """The thread the operation needs does not exist."""


class SchemaVersionError(ThreadStoreError):
    """The database schema is newer than this version of threadstore understands."""


class QueryFileError(ThreadStoreError):
    """A SQL file under sql/ is malformed."""


class FileStoreError(ThreadStoreError):
    """A file could not be stored, found or removed by a FileStore."""


class FileTooLargeError(FileStoreError, ValueError):
    """A file is larger than the FileStore's ``max_file_size``."""


class UnsupportedFileTypeError(FileStoreError, ValueError):
    """A file's MIME type is not in the FileStore's ``allowed_mime_types``."""


class StorageFullError(FileStoreError):
    """Storing a file would take the FileStore past its ``max_storage_size``."""
