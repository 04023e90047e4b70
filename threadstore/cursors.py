"""The opaque cursors of ``ThreadStore.list_threads``: where a walk stands, as URL-safe text.

A cursor is base64url (unpadded) of a version byte, a JSON payload ``[updated_at, id, filter]``
and an 8-byte keyed BLAKE2b tag over both. ``filter`` is a digest of the attribute filter the
walk was started with, so a cursor only continues its own walk. The tag makes a corrupted or
hand-edited cursor a ValueError rather than a silently different page; it carries no secret
and its key is public, so it protects against accidents, not forgery (cursors grant nothing:
every thread they lead to can be listed anyway), and a forged cursor's values are checked as
any input is: a ValueError, never a database error. A new payload layout
gets a new version byte; cursors of older versions can then still be read, or refused clearly.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from datetime import UTC, datetime
from typing import Any

import msgspec

from threadstore import matching

_VERSION = 1
_TAG_SIZE = 8
_KEY = b"threadstore.list_threads.cursor"
_MAX_LENGTH = 4096  # characters: ids are at most 512 of them (store.MAX_ID_LENGTH)
_MAX_ID = 512
_payload = msgspec.json.Decoder(tuple[str, str, str])
_BAD = "cursor is not one list_threads returned (corrupted, edited, or from another version)"


def _tag(data: bytes) -> bytes:
    return hashlib.blake2b(data, digest_size=_TAG_SIZE, key=_KEY).digest()


def _filter(attributes: dict[str, Any] | None) -> str:
    if attributes is None:
        return ""
    canonical = msgspec.json.encode(attributes, order="sorted")
    return hashlib.blake2b(canonical, digest_size=8).hexdigest()


def encode(updated_at: datetime, thread_id: str, attributes: dict[str, Any] | None) -> str:
    """The cursor of the position just after the thread (``updated_at``, ``thread_id``)."""
    body = bytes([_VERSION]) + msgspec.json.encode(
        [updated_at.isoformat(timespec="microseconds"), thread_id, _filter(attributes)]
    )
    return base64.urlsafe_b64encode(body + _tag(body)).rstrip(b"=").decode()


def decode(cursor: object, attributes: dict[str, Any] | None) -> tuple[datetime, str]:
    """The (updated_at, id) position of ``cursor``; ValueError unless it is a cursor this
    version made for a walk with the same ``attributes`` filter."""
    if not isinstance(cursor, str):
        raise TypeError(f"cursor must be a string or None, got {type(cursor).__name__}")
    if not cursor or len(cursor) > _MAX_LENGTH or not cursor.isascii():
        raise ValueError(_BAD)
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
    except (binascii.Error, ValueError):
        raise ValueError(_BAD) from None
    body, tag = raw[:-_TAG_SIZE], raw[-_TAG_SIZE:]
    if len(body) < 2 or not hmac.compare_digest(tag, _tag(body)) or body[0] != _VERSION:
        raise ValueError(_BAD)
    try:
        when, thread_id, walk = _payload.decode(body[1:])
        updated_at = datetime.fromisoformat(when)
        if updated_at.tzinfo is None or not thread_id or len(thread_id) > _MAX_ID:
            raise ValueError(_BAD)
        # The tag's key is public: a forged cursor is checked like any input.
        updated_at = updated_at.astimezone(UTC)
        matching.check_text(thread_id, "a cursor's id")
    except (msgspec.DecodeError, ValueError, OverflowError):
        raise ValueError(_BAD) from None
    if walk != _filter(attributes):
        raise ValueError(
            "cursor belongs to a list_threads walk with other attributes; "
            "pass the same attributes as for its first page"
        )
    return updated_at, thread_id
