"""The checks of a ThreadStore method's arguments, and their limits: a bad argument raises a
specific TypeError or ValueError before anything reaches the database."""

from __future__ import annotations

from threadstore import matching

MAX_ID_LENGTH = 512  # characters: at most 2,048 bytes in UTF-8, inside PostgreSQL's btree row limit (2,704)


def check_id(value: object, what: str = "thread_id") -> str:
    if not isinstance(value, str):
        raise TypeError(f"{what} must be a string, got {type(value).__name__}")
    if not value:
        raise ValueError(f"{what} must not be empty")
    if len(value) > MAX_ID_LENGTH:
        raise ValueError(f"{what} is {len(value)} characters long; ids are at most {MAX_ID_LENGTH}")
    matching.check_text(value, what)
    return value


MAX_ALIAS_LENGTH = 256


def check_alias(alias: object) -> str:
    check_id(alias, "alias")
    assert isinstance(alias, str)
    if len(alias) > MAX_ALIAS_LENGTH:
        raise ValueError(f"an alias is at most {MAX_ALIAS_LENGTH} characters; got {len(alias)}")
    return alias


def key_path(path: object) -> tuple[str, list[str]]:
    """(column, keys) of find_messages_by_attribute's path."""
    if isinstance(path, str):
        keys = path.split(".")
    elif isinstance(path, list | tuple) and all(isinstance(key, str) for key in path):
        keys = list(path)
    else:
        raise TypeError(f"path must be a dotted string or a list of keys, got {type(path).__name__}")
    if not keys or not all(keys):
        raise ValueError(f"path {path!r:.200} has an empty key")
    for key in keys:
        check_id(key, "a key of path")
    if keys[0] in ("attributes", "platforms") and len(keys) > 1:
        return keys[0], keys[1:]
    return "attributes", keys


def check_file_store(file_store: object) -> None:
    if file_store is not None:
        # Imported when a file store is used: threadstore.files imports asyncio (import time).
        from threadstore.files import FileStore

        if not isinstance(file_store, FileStore):
            raise TypeError(f"file_store must be a FileStore, got {type(file_store).__name__}")


MAX_COUNT = 2**62  # fits every backend's 64-bit LIMIT/OFFSET


MAX_PAGE = 10_000  # messages or thread summaries one bounded read returns at most
PAST_LAST = 2**31  # above every sequence (32-bit columns): "before" when none is given


def check_page(value: object, what: str, low: int, high: int = MAX_PAGE) -> None:
    if not isinstance(value, int) or isinstance(value, bool):
        raise TypeError(f"{what} must be an int, got {type(value).__name__}")
    if not low <= value <= high:
        raise ValueError(f"{what} must be between {low} and {high}, got {value}")


def check_count(value: object, what: str, *, allow_none: bool = False) -> None:
    if value is None and allow_none:
        return
    if not isinstance(value, int) or isinstance(value, bool):
        raise TypeError(f"{what} must be an int, got {type(value).__name__}")
    if not 0 <= value <= MAX_COUNT:
        raise ValueError(f"{what} must be between 0 and {MAX_COUNT}, got {value}")


_TOKEN_PREFIX = "threadstore-wal:"


def write_token(position: int) -> str:
    """The opaque text of ThreadStore.write_token for a WAL position."""
    return f"{_TOKEN_PREFIX}{position:x}"


def check_write_token(token: object) -> int:
    """The WAL position of a ThreadStore.write_token text."""
    if not isinstance(token, str):
        raise TypeError(f"token must be a string from write_token(), got {type(token).__name__}")
    digits = token.removeprefix(_TOKEN_PREFIX)
    if digits == token or not digits or len(digits) > 16 or digits.strip("0123456789abcdef"):
        raise ValueError(f"not a token from write_token(): {token[:80]!r}")
    return int(digits, 16)
