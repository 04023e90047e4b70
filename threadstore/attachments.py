"""Attachment bytes staged around one database write: the pending attachments of the messages
written go to a FileStore first, under a Lease held until the write has ended; the write stores
copies carrying where the bytes went, and the caller's attachments get the same once it succeeded.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING

import msgspec

from threadstore.models import Attachment, Message

if TYPE_CHECKING:
    from threadstore.files import FileStore, Lease


@asynccontextmanager
async def staged(
    pending: list[Attachment],
    file_store: FileStore | None,
    referenced: Callable[[list[str]], Awaitable[set[str]]],
) -> AsyncIterator[Mapping[int, Attachment]]:
    """Store the bytes of ``pending`` (pending_of's list) for one database write, which runs
    inside the block.

    Yields ``id(original) -> stored copy`` (the copy carries what the database keeps: file_id,
    storage_path, type, processed_content, status "stored"; no content); empty when nothing is
    pending. ValueError without a ``file_store`` when something is. If the block fails, files
    this write created are removed again unless some stored message references them
    (``referenced`` asks the database, see FileStore.lease); once it succeeded, the caller's
    attachments record what was stored (they keep their content).
    """
    if not pending:
        yield {}
        return
    if file_store is None:
        raise no_file_store(pending)
    stored: dict[int, Attachment] = {}
    async with file_store.lease(referenced) as lease:
        for attachment in pending:
            if id(attachment) not in stored:  # one copy per object
                stored[id(attachment)] = await stored_copy(attachment, file_store, lease)
        yield stored
    record(pending, stored)


async def stored_copy(attachment: Attachment, file_store: FileStore, lease: Lease) -> Attachment:
    """A copy of this pending attachment as the database keeps it once its bytes are stored."""
    # Imported here: threadstore.mime (zipfile, mimetypes) would take `import threadstore` from
    # ~70 to ~130 ms (make bench).
    from threadstore import mime

    content = await attachment.get_content_bytes()
    meta = await file_store.write(content, attachment.filename, attachment.mime_type, lease)
    copy = msgspec.structs.replace(attachment, content=None)
    copy.mark_stored(meta, await mime.describe(content, meta["mime_type"]))
    return copy


def pending_of(messages: Iterable[Message]) -> list[Attachment]:
    """The attachments of ``messages`` whose bytes must go to a FileStore before the messages are
    written (status other than "stored"), after checking every attachment's metadata."""
    pending = []
    for message in messages:
        if not isinstance(message.attachments, list):
            continue  # message.validate() names the field
        for attachment in message.attachments:
            what = f"attachment of message {message.id!r}"
            if not isinstance(attachment, Attachment):
                raise TypeError(f"an {what} is a {type(attachment).__name__}, not an Attachment")
            name = attachment.filename
            if not isinstance(name, str) or not name or "\x00" in name:
                raise ValueError(
                    f"an {what} has the filename {name!r}: it must be a non-empty string "
                    "without NUL characters"
                )
            if attachment.status == "stored":
                if not (attachment.storage_path or attachment.file_id):
                    raise ValueError(f"{what} {name!r} has status 'stored' but no file_id or storage_path")
                continue
            if attachment.content is None:
                raise ValueError(f"{what} {name!r} is {attachment.status!r} but holds no content to store")
            pending.append(attachment)
    return pending


def record(pending: list[Attachment], stored: Mapping[int, Attachment]) -> None:
    """Give the caller's attachments what was stored (they keep their content)."""
    for attachment in pending:
        copy = stored[id(attachment)]
        for field in Attachment.__struct_fields__:
            if field != "content":
                setattr(attachment, field, getattr(copy, field))


def no_file_store(pending: list[Attachment]) -> ValueError:
    return ValueError(
        f"{len(pending)} attachment(s) (the first: {pending[0].filename[:200]!r}) must be stored "
        "before the messages are saved: pass file_store=FileStore (await FileStore.create(...))"
    )
