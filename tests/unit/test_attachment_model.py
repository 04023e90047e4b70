"""Attachment and Message.add_attachment on their own (with a FileStore in a temporary directory)."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest

from threadstore import Attachment, FileStore, FileTooLargeError, Message

PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(40))


@pytest.fixture
async def fs(tmp_path: Path) -> FileStore:
    return await FileStore.create(tmp_path / "files")


def test_base64_content_is_decoded_at_construction() -> None:
    assert Attachment(filename="a", content=base64.b64encode(PNG).decode()).content == PNG  # type: ignore[arg-type]
    wrapped = base64.encodebytes(PNG * 10).decode()  # with line breaks
    assert Attachment(filename="a", content=wrapped).content == PNG * 10  # type: ignore[arg-type]
    urlsafe = base64.urlsafe_b64encode(b"\xfb\xff\xfe").decode().rstrip("=")
    assert Attachment(filename="a", content=urlsafe).content == b"\xfb\xff\xfe"  # type: ignore[arg-type]
    assert Attachment(filename="a", content=bytearray(b"ab")).content == b"ab"  # type: ignore[arg-type]


def test_a_data_url_gives_bytes_and_a_declared_type() -> None:
    url = "data:image/png;base64," + base64.b64encode(PNG).decode()
    attachment = Attachment(filename="p.png", content=url)  # type: ignore[arg-type]
    assert attachment.content == PNG and attachment.mime_type == "image/png"
    explicit = Attachment(filename="p.png", content=url, mime_type="image/x-mine")  # type: ignore[arg-type]
    assert explicit.mime_type == "image/x-mine"


@pytest.mark.parametrize("text", ["plain words, not base64", "data:text/plain,not-base64", "abc!"])
def test_text_that_is_not_base64_is_refused(text: str) -> None:
    with pytest.raises(ValueError, match="base64"):
        Attachment(filename="a.txt", content=text)  # type: ignore[arg-type]


def test_bad_fields_are_refused() -> None:
    with pytest.raises(ValueError, match=r"Attachment\.status"):
        Attachment(filename="a", status="uploaded")
    with pytest.raises(TypeError, match=r"Attachment\.filename"):
        Attachment(filename=None)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"Attachment\.content"):
        Attachment(filename="a", content=12)  # type: ignore[arg-type]


async def test_get_content_bytes_from_memory_or_from_the_file_store(fs: FileStore) -> None:
    attachment = Attachment(filename="a.txt", content=b"hello")
    assert await attachment.get_content_bytes() == b"hello"
    attachment.content = base64.b64encode(b"assigned later").decode()  # type: ignore[assignment]
    assert await attachment.get_content_bytes() == b"assigned later"

    meta = await fs.save(b"stored", "s.txt")
    loaded = Attachment(
        filename="s.txt", file_id=meta["id"], storage_path=meta["storage_path"], status="stored"
    )
    assert await loaded.get_content_bytes(fs) == b"stored"
    with pytest.raises(ValueError, match="pass the FileStore"):
        await loaded.get_content_bytes()
    with pytest.raises(ValueError, match="never given any"):
        await Attachment(filename="empty").get_content_bytes(fs)


async def test_process_and_store_records_where_and_what(fs: FileStore) -> None:
    text = Attachment(filename="notes.md", content=b"# Notes\n\nhello")
    image = Attachment(filename="photo.jpg", content=PNG, mime_type="image/jpeg", attributes={"k": 1})

    await text.process_and_store(fs)
    await image.process_and_store(fs)

    assert text.status == "stored" and text.storage_backend == "local"
    assert text.mime_type == "text/markdown" and text.processed_content == "# Notes\n\nhello"
    assert text.attributes == {"type": "text", "size": 14}
    assert await fs.get(text.file_id, text.storage_path) == b"# Notes\n\nhello"
    assert image.mime_type == "image/png" and image.processed_content is None
    assert image.attributes == {"k": 1, "type": "image", "size": len(PNG)}
    assert text.content == b"# Notes\n\nhello"  # the caller keeps the bytes


async def test_process_and_store_leaves_a_stored_attachment_unless_forced(fs: FileStore) -> None:
    attachment = Attachment(filename="a.txt", content=b"one")
    await attachment.process_and_store(fs)
    attachment.content = b"two"

    await attachment.process_and_store(fs)
    assert await attachment.get_content_bytes(None) == b"two"
    assert await fs.get(attachment.file_id, attachment.storage_path) == b"one"

    await attachment.process_and_store(fs, force=True)
    assert await fs.get(attachment.file_id, attachment.storage_path) == b"two"


async def test_a_failed_store_marks_the_attachment_failed(tmp_path: Path) -> None:
    fs = await FileStore.create(tmp_path / "files", max_file_size=3)
    attachment = Attachment(filename="big.txt", content=b"too big")

    with pytest.raises(FileTooLargeError, match="max_file_size"):
        await attachment.process_and_store(fs)

    assert attachment.status == "failed" and attachment.file_id is None


def test_add_attachment_takes_bytes_with_a_filename_or_an_attachment() -> None:
    message = Message(role="user", content="files")
    first = message.add_attachment(b"%PDF-1.4", filename="doc.pdf")
    given = Attachment(filename="old.txt", content=b"x")
    second = message.add_attachment(given, filename="renamed.txt")

    assert message.attachments == [first, second]
    assert first.filename == "doc.pdf" and first.content == b"%PDF-1.4" and first.status == "pending"
    assert second is given and given.filename == "renamed.txt"
    with pytest.raises(ValueError, match="filename"):
        message.add_attachment(b"no name")
    with pytest.raises(TypeError, match="bytes or an Attachment"):
        message.add_attachment(123)  # type: ignore[arg-type]
    assert len(message.attachments) == 2


def test_a_message_refuses_attachments_that_are_not_attachments() -> None:
    with pytest.raises(TypeError, match="not an Attachment"):
        Message(role="user", content="x", attachments=[{"filename": "a"}])  # type: ignore[list-item]
