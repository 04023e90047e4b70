"""Attachments saved with their thread through a FileStore, on every backend: bytes stored once
and given back, nothing stored on a refused or failed save, and garbage collection."""

from __future__ import annotations

import asyncio
import hashlib
import os
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import stored, user
from threadstore import (
    Attachment,
    ConflictError,
    FileStore,
    FileTooLargeError,
    Message,
    Thread,
    ThreadStore,
    UnsupportedFileTypeError,
)
from threadstore.files import collect_garbage
from threadstore.testing import backend_of

PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(60))
PDF = b"%PDF-1.7\n" + bytes(range(60))
HOSTILE_NAMES = ["../../etc/passwd", "/abs", "x" * 5000, "🧵📎 résumé.pdf", "..", "C:\\evil.dll"]


@pytest.fixture
async def files(tmp_path: Path) -> FileStore:
    return await FileStore.create(tmp_path / "files")


def file_paths(fs: FileStore) -> list[str]:
    """Every file under the base path except the lock files, relative."""
    return sorted(
        p.relative_to(fs.base_path).as_posix()
        for p in fs.base_path.rglob("*")
        if p.is_file() and ".locks" not in p.parts
    )


def path_of(content: bytes) -> str:
    sha = hashlib.sha256(content).hexdigest()
    return f"{sha[:2]}/{sha[2:4]}/{sha}"


def with_files(*attachments: tuple[bytes, str], text: str = "see attached", **fields: Any) -> Thread:
    thread = Thread(**fields)
    message = user(text)
    for content, name in attachments:
        message.add_attachment(content, filename=name)
    thread.add_message(message)
    return thread


async def test_attach_save_get_gives_the_bytes_back(store: ThreadStore, files: FileStore) -> None:
    thread = with_files(
        (PDF, "report.pdf"), (b"# Notes\nhello", "notes.md"), (PNG, "p.png"), (b'{"a": 1}', "data.json")
    )

    await store.save(thread, file_store=files)

    loaded = await stored(store, thread.id)
    sent, got = thread.messages[0].attachments, loaded.messages[0].attachments
    assert [await a.get_content_bytes(files) for a in got] == [PDF, b"# Notes\nhello", PNG, b'{"a": 1}']
    assert [a.content for a in got] == [None] * 4  # the bytes are never in the database
    assert [a.status for a in got] == ["stored"] * 4
    assert [a.mime_type for a in got] == ["application/pdf", "text/markdown", "image/png", "application/json"]
    assert [a.processed_content for a in got] == [None, "# Notes\nhello", None, '{"a": 1}']
    assert [a.attributes["type"] for a in got] == ["document", "text", "image", "json"]
    assert [a.storage_path for a in got] == [path_of(c) for c in (PDF, b"# Notes\nhello", PNG, b'{"a": 1}')]
    # The caller's attachments carry what was stored, and keep their bytes.
    for mine, theirs in zip(sent, got, strict=True):
        assert mine.content is not None
        assert mine == Attachment(
            **{**{f: getattr(theirs, f) for f in theirs.__struct_fields__}, "content": mine.content}
        )


async def test_the_same_file_attached_twice_is_stored_once(store: ThreadStore, files: FileStore) -> None:
    first = with_files((PDF, "a.pdf"), (PDF, "same-again.pdf"))
    second = with_files((PDF, "b.pdf"), text="another thread")

    await store.save(first, file_store=files)
    await store.save(second, file_store=files)

    assert file_paths(files) == [path_of(PDF)]
    for thread in (first, second):
        for attachment in (await stored(store, thread.id)).messages[0].attachments:
            assert attachment.storage_path == path_of(PDF)
            assert await attachment.get_content_bytes(files) == PDF


async def test_pending_attachments_without_a_file_store_store_nothing(
    store: ThreadStore, files: FileStore
) -> None:
    thread = with_files((PDF, "a.pdf"))

    with pytest.raises(ValueError, match=r"1 attachment\(s\) \(the first: 'a.pdf'\).*pass file_store="):
        await store.save(thread)

    assert await store.get(thread.id) is None
    assert file_paths(files) == []
    assert thread.messages[0].attachments[0].status == "pending"
    await store.save(thread, file_store=files)  # the same object saves once given a FileStore
    assert file_paths(files) == [path_of(PDF)]


async def test_a_thread_without_pending_attachments_needs_no_file_store(
    store: ThreadStore, files: FileStore
) -> None:
    thread = with_files((PDF, "a.pdf"))
    await store.save(thread, file_store=files)
    loaded = await stored(store, thread.id)
    loaded.add_message(user("no files here"))
    loaded.messages[0].content = "edited, attachments unchanged"

    await store.save(loaded)

    again = await stored(store, thread.id)
    assert again.messages[0].content == "edited, attachments unchanged"
    assert again.messages[0].attachments == loaded.messages[0].attachments


async def test_an_attachment_added_to_a_stored_message_is_saved(store: ThreadStore, files: FileStore) -> None:
    thread = Thread()
    thread.add_message(user("first"))
    await store.save(thread)
    loaded = await stored(store, thread.id)

    loaded.messages[0].add_attachment(PNG, filename="later.png")
    await store.save(loaded, file_store=files)

    attachments = (await stored(store, thread.id)).messages[0].attachments
    assert [a.filename for a in attachments] == ["later.png"]
    assert await attachments[0].get_content_bytes(files) == PNG


async def test_append_stores_attachments_too(store: ThreadStore, files: FileStore) -> None:
    thread = Thread()
    await store.save(thread)
    message = user("appended")
    message.add_attachment(PDF, filename="a.pdf")

    with pytest.raises(ValueError, match="pass file_store="):
        await store.append(thread.id, message)
    assert (await stored(store, thread.id)).messages == [] and file_paths(files) == []

    await store.append(thread.id, message, file_store=files)
    attachment = (await stored(store, thread.id)).messages[0].attachments[0]
    assert message.attachments[0].status == "stored"
    assert await attachment.get_content_bytes(files) == PDF


@pytest.mark.parametrize("limits", [{"max_file_size": 100}, {"allowed_mime_types": {"image/png"}}])
async def test_a_file_over_a_limit_stores_nothing(
    store: ThreadStore, tmp_path: Path, limits: dict[str, Any]
) -> None:
    fs = await FileStore.create(tmp_path / "limited", **limits)
    thread = with_files((PNG, "ok.png"), (PDF + bytes(100), "refused.pdf"))

    with pytest.raises(
        (FileTooLargeError, UnsupportedFileTypeError), match=r"max_file_size|allowed_mime_types"
    ):
        await store.save(thread, file_store=fs)

    assert await store.get(thread.id) is None
    assert file_paths(fs) == []  # the first attachment's file, written already, is removed again
    assert [a.status for a in thread.messages[0].attachments] == ["pending", "pending"]


@pytest.mark.parametrize("name", HOSTILE_NAMES)
async def test_a_hostile_filename_never_becomes_a_path(
    store: ThreadStore, files: FileStore, tmp_path: Path, name: str
) -> None:
    thread = with_files((b"payload", name))

    await store.save(thread, file_store=files)

    attachment = (await stored(store, thread.id)).messages[0].attachments[0]
    assert attachment.filename == name and attachment.storage_path == path_of(b"payload")
    assert await attachment.get_content_bytes(files) == b"payload"
    outside = [
        p
        for p in tmp_path.rglob("*")
        if p.is_file()
        and files.base_path not in p.parents
        and p.name != "threads.db"
        and not p.name.startswith("threads.db-")
    ]
    assert outside == []


@pytest.mark.parametrize("name", ["a\x00b", ""])
async def test_a_filename_the_database_cannot_keep_is_refused_before_any_file_is_written(
    store: ThreadStore, files: FileStore, name: str
) -> None:
    thread = Thread()
    thread.add_message(user("x", attachments=[Attachment(filename=name, content=b"payload")]))

    with pytest.raises(ValueError, match="filename"):
        await store.save(thread, file_store=files)

    assert await store.get(thread.id) is None and file_paths(files) == []


async def test_inconsistent_attachments_are_refused(store: ThreadStore, files: FileStore) -> None:
    for attachment, match in [
        (Attachment(filename="a.txt"), "holds no content"),
        (Attachment(filename="a.txt", status="stored"), "no file_id or storage_path"),
    ]:
        thread = Thread()
        thread.add_message(user("x", attachments=[attachment]))
        with pytest.raises(ValueError, match=match):
            await store.save(thread, file_store=files)
        assert await store.get(thread.id) is None


async def test_a_failed_database_write_removes_the_files_it_wrote(
    store: ThreadStore, files: FileStore
) -> None:
    owner = Thread(id="owner")
    owner.add_message(user("taken", id="message-1"))
    owner.messages[0].add_attachment(PDF, filename="kept.pdf")
    await store.save(owner, file_store=files)
    again = user("taken", id="message-1")  # held by the thread already: the database refuses it
    for content, name in ((PDF, "shared.pdf"), (PNG, "new.png")):
        again.add_attachment(content, filename=name)

    with pytest.raises(ConflictError):
        await store.append("owner", again, file_store=files)

    assert len((await store.get("owner") or Thread()).messages) == 1
    assert file_paths(files) == [path_of(PDF)]  # the new file is gone; the referenced one stays
    assert [a.status for a in again.attachments] == ["pending", "pending"]
    again.id = "message-2"
    await store.append("owner", again, file_store=files)
    assert file_paths(files) == sorted([path_of(PDF), path_of(PNG)])


async def test_a_failed_save_keeps_a_file_another_save_referenced_meanwhile(
    store: ThreadStore, files: FileStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    backend: Any = backend_of(store)
    real_save = backend.save
    other_saved = asyncio.Event()

    async def save(plan: Any) -> Any:
        if plan.thread_id == "failing":
            await other_saved.wait()  # fails only after the other save has referenced the file
            raise ConflictError("simulated failure")
        return await real_save(plan)

    monkeypatch.setattr(backend, "save", save)
    failing = with_files((PNG, "a.png"), id="failing")
    failing_task = asyncio.create_task(store.save(failing, file_store=files))
    while not file_paths(files):  # the failing save has written the file
        await asyncio.sleep(0.001)
    succeeding = with_files((PNG, "b.png"), id="succeeding", text="other")
    await store.save(succeeding, file_store=files)
    other_saved.set()

    with pytest.raises(ConflictError):
        await failing_task

    assert file_paths(files) == [path_of(PNG)]
    attachment = (await stored(store, "succeeding")).messages[0].attachments[0]
    assert await attachment.get_content_bytes(files) == PNG


async def test_a_cancelled_save_removes_the_files_it_wrote(
    store: ThreadStore, files: FileStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    backend: Any = backend_of(store)
    started = asyncio.Event()

    async def hanging_save(plan: Any) -> Any:
        started.set()
        await asyncio.sleep(3600)

    monkeypatch.setattr(backend, "save", hanging_save)
    thread = with_files((PDF, "a.pdf"))
    task = asyncio.create_task(store.save(thread, file_store=files))
    await started.wait()
    assert file_paths(files) == [path_of(PDF)]

    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task

    assert file_paths(files) == []


async def test_twenty_concurrent_saves_of_the_same_file(store: ThreadStore, files: FileStore) -> None:
    content = os.urandom(300_000)
    threads = [with_files((content, f"copy-{i}.bin"), id=f"t{i:02}") for i in range(20)]

    await asyncio.gather(*(store.save(t, file_store=files) for t in threads))

    assert file_paths(files) == [path_of(content)]  # one file, no temporary files left
    for thread in threads:
        attachment = (await stored(store, thread.id)).messages[0].attachments[0]
        assert await attachment.get_content_bytes(files) == content


async def test_attachment_references(store: ThreadStore, files: FileStore) -> None:
    kept, dropped = with_files((PDF, "a.pdf"), (PNG, "b.png")), with_files((b"gone", "g.txt"), text="x")
    await store.save(kept, file_store=files)
    await store.save(dropped, file_store=files)
    await store.delete(dropped.id)
    sha = hashlib.sha256(PDF).hexdigest()

    everything = await store.attachment_references()
    png_id = hashlib.sha256(PNG).hexdigest()
    among = await store.attachment_references([path_of(PDF), path_of(b"gone"), png_id])

    assert everything == {path_of(PDF), sha, path_of(PNG), hashlib.sha256(PNG).hexdigest()}
    assert among == {path_of(PDF), hashlib.sha256(PNG).hexdigest()}
    assert await store.attachment_references([]) == set()
    with pytest.raises(TypeError):
        await store.attachment_references(path_of(PDF))


async def test_collect_garbage_removes_only_orphans(store: ThreadStore, files: FileStore) -> None:
    kept = with_files((PDF, "kept.pdf"))
    deleted = with_files((PNG, "orphan.png"), (PDF, "also-kept.pdf"), text="deleted")
    await store.save(kept, file_store=files)
    await store.save(deleted, file_store=files)
    await store.delete(deleted.id)
    await files.save(b"never referenced", "loose.txt")
    leftover = files.base_path / path_of(PDF).rpartition("/")[0] / ".tmp-0123456789abcdef"
    leftover.write_bytes(b"half")  # as an interrupted write leaves it
    foreign = files.base_path / "not-ours.txt"
    foreign.write_bytes(b"someone else's")

    assert await collect_garbage(store, files) == []  # everything is younger than min_age
    freed = await collect_garbage(store, files, min_age=0)

    assert sorted(freed, key=lambda f: f["storage_path"]) == sorted(
        [
            {"file_id": hashlib.sha256(PNG).hexdigest(), "storage_path": path_of(PNG), "size": len(PNG)},
            {
                "file_id": hashlib.sha256(b"never referenced").hexdigest(),
                "storage_path": path_of(b"never referenced"),
                "size": 16,
            },
            {"file_id": None, "storage_path": leftover.relative_to(files.base_path).as_posix(), "size": 4},
        ],
        key=lambda f: str(f["storage_path"]),  # type: ignore[index]
    )
    assert file_paths(files) == sorted([path_of(PDF), "not-ours.txt"])
    assert await collect_garbage(store, files, min_age=0) == []
    attachment = (await stored(store, kept.id)).messages[0].attachments[0]
    assert await attachment.get_content_bytes(files) == PDF


async def test_collect_garbage_keeps_files_referenced_by_file_id_only(
    store: ThreadStore, files: FileStore
) -> None:
    meta = await files.save(PDF, "a.pdf")
    thread = Thread()
    thread.add_message(
        user("x", attachments=[Attachment(filename="a.pdf", file_id=meta["id"], status="stored")])
    )
    await store.save(thread)

    assert await collect_garbage(store, files, min_age=0) == []
    assert await (await stored(store, thread.id)).messages[0].attachments[0].get_content_bytes(files) == PDF


async def test_collect_garbage_skips_a_file_being_saved(
    store: ThreadStore, files: FileStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    backend: Any = backend_of(store)
    real_save = backend.save
    in_write = asyncio.Event()
    release = asyncio.Event()

    async def slow_save(plan: Any) -> Any:
        in_write.set()
        await release.wait()
        return await real_save(plan)

    monkeypatch.setattr(backend, "save", slow_save)
    thread = with_files((PDF, "a.pdf"))
    task = asyncio.create_task(store.save(thread, file_store=files))
    await in_write.wait()

    assert await collect_garbage(store, files, min_age=0) == []  # written, not yet referenced
    release.set()
    await task
    assert file_paths(files) == [path_of(PDF)]


async def test_a_message_with_attachments_reads_back_as_saved(store: ThreadStore, files: FileStore) -> None:
    thread = with_files((b"a,b\n1,2\n", "table.csv"))
    await store.save(thread, file_store=files)

    loaded = await stored(store, thread.id)
    message = loaded.messages[0]
    assert message.attachments[0].processed_content == "a,b\n1,2\n"
    assert message.attachments[0].attributes == {"type": "text", "size": 8}
    assert [m.id for m in (await store.list())[0].messages] == [message.id]
    assert isinstance(message, Message)


async def test_the_reference_example_runs(
    store: ThreadStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # threadstore-api.md, "save", as written there (store given; pdf_bytes made up).
    monkeypatch.setenv("THREADSTORE_FILE_STORAGE_PATH", str(tmp_path / "env-files"))
    pdf_bytes = PDF

    thread = Thread()
    thread.add_message(Message(role="user", content="Hello"))
    saved_thread = await store.save(thread)

    # With file attachment
    message = Message(role="user", content="Here's a document")
    message.add_attachment(pdf_bytes, filename="document.pdf")
    thread.add_message(message)

    # FileStore needed when attachments are present
    file_store = await FileStore.create()
    saved_thread = await store.save(thread, file_store=file_store)

    assert saved_thread is thread and file_store.base_path == tmp_path / "env-files"
    attachment = (await stored(store, thread.id)).messages[1].attachments[0]
    assert await attachment.get_content_bytes(file_store) == pdf_bytes


async def test_attachment_files_and_directories_are_owner_only(store: ThreadStore, tmp_path: Path) -> None:
    """Files were created 0644 under umask 022: one user's attachments readable by every local
    user. They are 0600, the directories threadstore creates 0700."""
    import stat

    old = os.umask(0o022)
    try:
        files = await FileStore.create(tmp_path / "files")
        thread = Thread()
        thread.add_message(
            Message(
                role="user",
                content="see attached",
                attachments=[Attachment(filename="secret.txt", content=b"private", mime_type="text/plain")],
            )
        )
        await store.save(thread, file_store=files)
    finally:
        os.umask(old)
    root = tmp_path / "files"
    assert stat.S_IMODE(root.stat().st_mode) == 0o700
    written = [p for p in root.rglob("*") if p.is_file()]
    assert written, "no attachment file written"
    for path in written:
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
