"""attachment_references on the SQL backends reads stored JSON it did not write itself: an
attachments value that is not an array, or elements that are not objects, are skipped."""

from __future__ import annotations

import pytest

from threadstore import Attachment, Message, Thread, ThreadStore
from threadstore.testing import backend_of

ODD_VALUES = [
    (
        '["plain string", 5, null, [1], {"storage_path": "aa/bb/kept", "file_id": "kept-id"}]',
        {"aa/bb/kept", "kept-id"},
    ),
    ('{"storage_path": "not/an/array"}', set()),
    ('"just a string"', set()),
]


@pytest.mark.parametrize(("raw", "expected"), ODD_VALUES)
async def test_odd_stored_attachments_are_read_without_error(
    shared_url: str, raw: str, expected: set[str]
) -> None:
    async with await ThreadStore.create(shared_url) as store:
        await store.delete_many([t.id for t in await store.list_recent()])
        thread = Thread()
        thread.add_message(
            Message(
                role="user",
                content="x",
                id="odd-message",
                attachments=[Attachment(filename="a", storage_path="aa/bb/original", status="stored")],
            )
        )
        await store.save(thread)
        backend = backend_of(store)
        assert backend is not None
        # Test set-up only: fixed statement text, values bound.
        if backend.name == "postgres":
            async with backend._pool.acquire() as conn:  # type: ignore[attr-defined]
                await conn.execute(
                    "UPDATE messages SET attachments = $1::text::jsonb WHERE id = $2", raw, "odd-message"
                )
        else:
            async with backend._db.lock:  # type: ignore[attr-defined]
                await backend._db.connection().execute(  # type: ignore[attr-defined]
                    "UPDATE messages SET attachments = ? WHERE id = ?", (raw, "odd-message")
                )

        assert await store.attachment_references() == expected
        assert await store.attachment_references(["aa/bb/kept", "nothing"]) == expected & {"aa/bb/kept"}
        await store.delete(thread.id)
