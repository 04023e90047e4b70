"""FileStore on its own: content-addressed writes, MIME detection, limits, path safety, crash
safety. Everything involving a ThreadStore is in tests/contract/test_attachments.py."""

from __future__ import annotations

import asyncio
import hashlib
import io
import os
import subprocess
import sys
import zipfile
from datetime import UTC
from pathlib import Path

import pytest

from threadstore import (
    FileStore,
    FileStoreError,
    FileTooLargeError,
    StorageFullError,
    ThreadStoreError,
    UnsupportedFileTypeError,
)
from threadstore.mime import TEXT_LIMIT, detect_mime_type, extract_text, kind_of

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00\x00\x00\rIHDR" + bytes(range(40))
JPEG = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00" + bytes(range(40))
PDF = b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj\n<<>>\nendobj\n"
HOSTILE_NAMES = [
    "../../etc/passwd",
    "/abs",
    "/etc/passwd",
    "a\x00b",
    "x" * 5000,
    "🧵📎 résumé.pdf",
    "..",
    ".",
    "",
    "C:\\Windows\\system32\\evil.dll",
    "a/../../b.txt",
    "~/x.txt",
    "\\\\server\\share\\f",
]


@pytest.fixture
async def fs(tmp_path: Path) -> FileStore:
    return await FileStore.create(tmp_path / "files")


def zip_bytes(entries: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, data in entries.items():
            archive.writestr(name, data)
    return buffer.getvalue()


def all_files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file() or p.is_symlink())


def stored_files(fs: FileStore) -> list[Path]:
    return [p for p in all_files(fs.base_path) if ".locks" not in p.parts]


# --- save and get --------------------------------------------------------------------------------


async def test_save_returns_metadata_and_get_gives_the_bytes_back(fs: FileStore) -> None:
    meta = await fs.save(PDF, "report.pdf")

    sha = hashlib.sha256(PDF).hexdigest()
    assert meta["id"] == meta["sha256"] == sha
    assert meta["storage_path"] == f"{sha[:2]}/{sha[2:4]}/{sha}"
    assert meta["filename"] == "report.pdf"
    assert meta["mime_type"] == "application/pdf"
    assert meta["size"] == len(PDF)
    assert meta["storage_backend"] == "local"
    assert meta["created_at"].tzinfo is UTC
    assert (fs.base_path / meta["storage_path"]).read_bytes() == PDF
    assert await fs.get(meta["id"]) == PDF
    assert await fs.get(meta["id"], meta["storage_path"]) == PDF
    assert await fs.get(storage_path=meta["storage_path"]) == PDF


async def test_the_same_bytes_are_stored_once_whatever_their_names(fs: FileStore) -> None:
    first = await fs.save(b"same bytes", "a.txt")
    second = await fs.save(b"same bytes", "b.md")
    other = await fs.save(b"other bytes", "a.txt")

    assert first["storage_path"] == second["storage_path"] != other["storage_path"]
    assert second["filename"] == "b.md"
    assert len(stored_files(fs)) == 2
    assert await fs.list_files() == sorted([first["id"], other["id"]])
    assert await fs.get_storage_size() == len(b"same bytes") + len(b"other bytes")


async def test_a_damaged_stored_file_is_replaced_by_the_next_save_of_its_bytes(fs: FileStore) -> None:
    meta = await fs.save(PDF, "a.pdf")
    (fs.base_path / meta["storage_path"]).write_bytes(PDF[:5])  # truncated by something else

    await fs.save(PDF, "again.pdf")

    assert await fs.get(meta["id"]) == PDF
    assert len(stored_files(fs)) == 1


async def test_bytearray_and_memoryview_are_accepted_other_types_are_not(fs: FileStore) -> None:
    assert await fs.get((await fs.save(bytearray(b"abc"), "a"))["id"]) == b"abc"  # type: ignore[arg-type]
    assert await fs.get((await fs.save(memoryview(b"xyz"), "a"))["id"]) == b"xyz"  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="bytes"):
        await fs.save("text", "a.txt")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="filename"):
        await fs.save(b"x", None)  # type: ignore[arg-type]


async def test_a_missing_file_is_file_not_found(fs: FileStore) -> None:
    with pytest.raises(FileNotFoundError, match="no file"):
        await fs.get("0" * 64)
    with pytest.raises(FileNotFoundError):
        await fs.get(storage_path="00/00/nothing")
    with pytest.raises(FileNotFoundError):
        await fs.delete("0" * 64)
    with pytest.raises(ValueError, match="file_id or a storage_path"):
        await fs.get()


async def test_twenty_concurrent_saves_of_one_file_store_it_once(fs: FileStore) -> None:
    content = os.urandom(200_000)

    results = await asyncio.gather(*(fs.save(content, f"copy{i}.bin") for i in range(20)))

    assert {r["storage_path"] for r in results} == {results[0]["storage_path"]}
    assert stored_files(fs) == [fs.base_path / results[0]["storage_path"]]  # no temporary files left
    assert await fs.get(results[0]["id"]) == content


async def test_delete_batch_delete_and_list(fs: FileStore) -> None:
    metas = await fs.batch_save([(b"one", "1.txt"), (b"two", "2.txt", "text/plain"), (PNG, "p.png")])
    assert [m["filename"] for m in metas] == ["1.txt", "2.txt", "p.png"]
    assert metas[2]["mime_type"] == "image/png"

    await fs.delete(metas[0]["id"])
    assert await fs.list_files() == sorted([metas[1]["id"], metas[2]["id"]])
    with pytest.raises(ValueError, match="file id"):
        await fs.batch_delete([metas[1]["id"], "../../etc/passwd"])
    assert len(await fs.list_files()) == 2  # a bad id: nothing deleted
    assert await fs.batch_delete([metas[1]["id"], metas[2]["id"], "f" * 64]) == 2
    assert await fs.list_files() == []
    with pytest.raises(TypeError):
        await fs.batch_delete(metas[0]["id"])


async def test_batch_save_checks_every_file_before_writing_any(tmp_path: Path) -> None:
    fs = await FileStore.create(tmp_path / "files", max_file_size=10)
    with pytest.raises(FileTooLargeError):
        await fs.batch_save([(b"small", "a.txt"), (b"far too large", "b.txt")])
    assert stored_files(fs) == []
    with pytest.raises(TypeError, match="tuples"):
        await fs.batch_save([b"not a tuple"])  # type: ignore[list-item]


# --- MIME types ----------------------------------------------------------------------------------

DOCX = zip_bytes({"[Content_Types].xml": b"<Types/>", "word/document.xml": b"<w:document/>"})
XLSX = zip_bytes({"[Content_Types].xml": b"<Types/>", "xl/workbook.xml": b"<workbook/>"})
PPTX = zip_bytes({"[Content_Types].xml": b"<Types/>", "ppt/presentation.xml": b"<p/>"})
ODT = zip_bytes({"mimetype": b"application/vnd.oasis.opendocument.text", "content.xml": b"<x/>"})
SNEAKY_ZIP = zip_bytes({"mimetype": b"text/html", "index.html": b"<script>"})


@pytest.mark.parametrize(
    ("content", "filename", "declared", "expected"),
    [
        (PDF, "x.bin", None, "application/pdf"),
        (PNG, "photo.jpg", "image/jpeg", "image/png"),  # the declared type is corrected
        (JPEG, "x", None, "image/jpeg"),
        (b"GIF89a" + bytes(20), "x", None, "image/gif"),
        (b"GIF87a" + bytes(20), "x", None, "image/gif"),
        (b"RIFF\x24\x00\x00\x00WEBPVP8 " + bytes(20), "x.png", None, "image/webp"),
        (zip_bytes({"a.txt": b"a"}), "x.docx", None, "application/zip"),
        (DOCX, "x.zip", None, "application/vnd.openxmlformats-officedocument.wordprocessingml.document"),
        (XLSX, "x", None, "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"),
        (PPTX, "x", None, "application/vnd.openxmlformats-officedocument.presentationml.presentation"),
        (ODT, "x", None, "application/vnd.oasis.opendocument.text"),
        (SNEAKY_ZIP, "x.html", "text/html", "application/zip"),
        (b"PK\x03\x04 damaged", "x", None, "application/zip"),
        (b"# Title\n\nSome *markdown*.", "notes.md", None, "text/markdown"),
        (b"a,b\n1,2\n", "data.csv", None, "text/csv"),
        (b"a,b\n1,2\n", "data", "text/csv", "text/csv"),
        (b'{"a": [1, 2]}', "x.bin", None, "application/json"),
        (b"\xef\xbb\xbf [1, 2]", None, None, "application/json"),
        (b'{"a": 1}', "x.txt", None, "application/json"),
        (b"just words", "x.json", "application/json", "text/plain"),  # not JSON: corrected
        (b"just words", "x.pdf", None, "text/plain"),
        (b"just words", "x", "image/png", "text/plain"),
        (b"<html><body>hi</body></html>", "page.html", None, "text/html"),
        ("a" + "é" * 5000, "x", None, "text/plain"),  # the sniffed prefix ends inside a character
        (b"\x00\x01\x02\x03", "song.mp3", None, "audio/mpeg"),
        (b"\x00\x01\x02\x03", "x", "video/mp4", "video/mp4"),
        (b"\x00\x01\x02\x03", "x", "text/plain", "application/octet-stream"),
        (b"\x00\x01\x02\x03", "x.png", None, "application/octet-stream"),
        (b"\x00\x01\x02\x03", None, None, "application/octet-stream"),
        (b"caf\xe9 latin-1", "x", None, "application/octet-stream"),
        (b"", "x.txt", None, "text/plain"),
        (b"", None, None, "application/octet-stream"),
    ],
)
def test_mime_type_detection(
    content: bytes | str, filename: str | None, declared: str | None, expected: str
) -> None:
    data = content.encode() if isinstance(content, str) else content
    assert detect_mime_type(data, filename, declared) == expected


async def test_a_declared_type_is_normalised_and_a_malformed_one_refused(fs: FileStore) -> None:
    meta = await fs.save(b"a,b\n", "data", "Text/CSV; charset=utf-8")
    assert meta["mime_type"] == "text/csv"
    for bad in ("not a mime type", "text/", "../x/y", "a/b\x00"):
        with pytest.raises(ValueError, match="not a MIME type"):
            await fs.save(b"x", "x.txt", bad)
    assert len(stored_files(fs)) == 1


def test_text_extraction_is_capped_and_refuses_no_character() -> None:
    assert extract_text(b"hello\x00world", "text/plain") == ("hello\ufffdworld", False)
    assert extract_text(b"\xef\xbb\xbfbom", "text/markdown") == ("bom", False)
    assert extract_text(b"bad \xff byte", "text/csv") == ("bad \ufffd byte", False)
    assert extract_text(PNG, "image/png") == (None, False)
    text, truncated = extract_text(("é" * (TEXT_LIMIT + 10)).encode(), "text/plain")
    assert text == "é" * TEXT_LIMIT and truncated
    text, truncated = extract_text(b"x" * (TEXT_LIMIT * 5), "application/json")
    assert text == "x" * TEXT_LIMIT and truncated


@pytest.mark.parametrize(
    ("mime", "kind"),
    [
        ("text/plain", "text"),
        ("text/markdown", "text"),
        ("application/json", "json"),
        ("image/png", "image"),
        ("audio/mpeg", "audio"),
        ("video/mp4", "video"),
        ("application/pdf", "document"),
        ("application/vnd.oasis.opendocument.text", "document"),
        ("application/zip", "archive"),
        ("application/octet-stream", "binary"),
    ],
)
def test_kind_of(mime: str, kind: str) -> None:
    assert kind_of(mime) == kind


# --- limits --------------------------------------------------------------------------------------


async def test_max_file_size_is_enforced_and_named(tmp_path: Path) -> None:
    fs = await FileStore.create(tmp_path / "files", max_file_size=10)
    await fs.save(b"x" * 10, "exactly.txt")
    with pytest.raises(
        FileTooLargeError, match=r"11 bytes, over this FileStore's max_file_size of 10"
    ) as info:
        await fs.save(b"x" * 11, "big.txt")
    assert isinstance(info.value, ValueError) and isinstance(info.value, ThreadStoreError)
    assert len(stored_files(fs)) == 1


async def test_the_default_max_file_size_is_50_mib(tmp_path: Path) -> None:
    assert FileStore(tmp_path).max_file_size == 50 * 1024 * 1024
    assert FileStore(tmp_path, max_file_size=None).max_file_size is None


async def test_allowed_mime_types_are_enforced_and_named(tmp_path: Path) -> None:
    fs = await FileStore.create(tmp_path / "files", allowed_mime_types={"image/*", "Application/PDF"})
    await fs.save(PNG, "p.png")
    await fs.save(PDF, "r.pdf")
    with pytest.raises(
        UnsupportedFileTypeError,
        match=r"text/plain, which is not in this FileStore's "
        r"allowed_mime_types \(application/pdf, image/\*\)",
    ):
        await fs.save(b"plain text", "disguised.png", "image/png")  # detection, not the claim, decides
    assert len(stored_files(fs)) == 2


async def test_max_storage_size_is_enforced_and_named(tmp_path: Path) -> None:
    fs = await FileStore.create(tmp_path / "files", max_storage_size=100)
    kept = await fs.save(b"a" * 60, "a.txt")
    with pytest.raises(StorageFullError, match="120 bytes, over its max_storage_size of 100 bytes"):
        await fs.save(b"b" * 60, "b.txt")
    await fs.save(b"a" * 60, "again.txt")  # stored already: takes no more room
    await fs.delete(kept["id"])
    await fs.save(b"b" * 60, "b.txt")
    assert await fs.get_storage_size() == 60


async def test_max_storage_size_counts_files_already_there_and_concurrent_saves(tmp_path: Path) -> None:
    await (await FileStore.create(tmp_path / "files")).save(b"x" * 40, "old.bin")
    fs = await FileStore.create(tmp_path / "files", max_storage_size=100)

    results = await asyncio.gather(
        *(fs.save(bytes([i]) * 25, f"{i}.bin") for i in range(5)), return_exceptions=True
    )

    assert sum(isinstance(r, dict) for r in results) == 2
    assert all(isinstance(r, (dict, StorageFullError)) for r in results)
    assert await fs.get_storage_size() == 90


@pytest.mark.parametrize(
    ("arguments", "error"),
    [
        ({"max_file_size": -1}, ValueError),
        ({"max_storage_size": True}, TypeError),
        ({"max_file_size": 1.5}, TypeError),
        ({"allowed_mime_types": "image/png"}, TypeError),
        ({"allowed_mime_types": ["images"]}, ValueError),
        ({"allowed_mime_types": [3]}, TypeError),
    ],
)
def test_bad_limits_are_refused(tmp_path: Path, arguments: dict[str, object], error: type[Exception]) -> None:
    with pytest.raises(error):
        FileStore(tmp_path, **arguments)  # type: ignore[arg-type]


# --- paths -----------------------------------------------------------------------------------


@pytest.mark.parametrize("name", HOSTILE_NAMES)
async def test_a_hostile_filename_is_metadata_only(tmp_path: Path, name: str) -> None:
    fs = await FileStore.create(tmp_path / "files")

    meta = await fs.save(b"payload", name)

    assert meta["filename"] == name
    sha = hashlib.sha256(b"payload").hexdigest()
    assert meta["storage_path"] == f"{sha[:2]}/{sha[2:4]}/{sha}"
    assert [p.relative_to(tmp_path).as_posix() for p in all_files(tmp_path)] == [
        f"files/.locks/{sha[:2]}",
        f"files/{meta['storage_path']}",
    ]
    assert await fs.get(meta["id"]) == b"payload"


async def test_get_and_delete_refuse_paths_outside_the_base_path(tmp_path: Path, fs: FileStore) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_bytes(b"secret")
    (fs.base_path / "aa").mkdir()
    (fs.base_path / "aa" / "link").symlink_to(secret)
    for path in [
        "../secret.txt",
        "aa/../../secret.txt",
        str(secret),
        "/etc/passwd",
        "aa/link",
        ".",
        "aa/..",
        "C:\\secret.txt",
        "\\\\server\\share\\secret.txt",
        "a\x00b",
        "",
    ]:
        with pytest.raises(ValueError):
            await fs.get(storage_path=path)
        with pytest.raises(ValueError):
            await fs.delete(storage_path=path)
    for file_id in ["../../secret.txt", "A" * 64, "0" * 63, ""]:
        with pytest.raises(ValueError):
            await fs.get(file_id)
    assert secret.read_bytes() == b"secret"


async def test_get_file_url(fs: FileStore) -> None:
    meta = await fs.save(b"x", "x.txt")
    url = fs.get_file_url(meta["storage_path"])
    assert url == (fs.base_path / meta["storage_path"]).as_uri() and url.startswith("file:///")
    for path in ["../x", "/etc/passwd", "a/../../x", "..", "a\x00b"]:
        with pytest.raises(ValueError):
            fs.get_file_url(path)


async def test_a_long_path_is_file_not_found(fs: FileStore) -> None:
    with pytest.raises(FileNotFoundError):
        await fs.get(storage_path="x" * 5000)


# --- crash safety ----------------------------------------------------------------------------


async def test_a_failed_write_leaves_no_file_under_the_final_name(
    fs: FileStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken_fsync(fd: int) -> None:
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(os, "fsync", broken_fsync)
    with pytest.raises(FileStoreError, match="cannot write"):
        await fs.save(b"half written", "a.txt")
    monkeypatch.undo()

    assert stored_files(fs) == []
    meta = await fs.save(b"half written", "a.txt")
    assert await fs.get(meta["id"]) == b"half written"


CRASH_SCRIPT = """
import asyncio, os, sys
from threadstore import FileStore

def crash(fd):
    os._exit(3)  # the process dies with the bytes in a temporary file, before the link

os.fsync = crash
asyncio.run(FileStore(sys.argv[1]).save(b"x" * 1_000_000, "big.bin"))
"""


def test_a_crash_during_a_write_leaves_no_file_under_the_final_name(tmp_path: Path) -> None:
    base = tmp_path / "files"
    result = subprocess.run([sys.executable, "-c", CRASH_SCRIPT, str(base)], capture_output=True, timeout=60)
    assert result.returncode == 3, result.stderr

    sha = hashlib.sha256(b"x" * 1_000_000).hexdigest()
    left = [p for p in all_files(base) if ".locks" not in p.parts]
    assert not (base / sha[:2] / sha[2:4] / sha).exists()
    assert len(left) == 1 and left[0].name.startswith(".tmp-")  # collect_garbage removes it later
    fs = FileStore(base)
    assert asyncio.run(fs.list_files()) == []
    asyncio.run(fs.save(b"x" * 1_000_000, "big.bin"))
    assert asyncio.run(fs.list_files()) == [sha]


# --- configuration and health --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("variables", "expected"),
    [
        ({"THREADSTORE_FILE_STORAGE_PATH": "ts", "NARRATOR_FILE_STORAGE_PATH": "n"}, "ts"),
        ({"NARRATOR_FILE_STORAGE_PATH": "n", "TYLER_FILE_STORAGE_PATH": "t"}, "n"),
        ({"THREADSTORE_FILE_STORAGE_PATH": "", "TYLER_FILE_STORAGE_PATH": "t"}, "t"),
        ({}, "home/.threadstore/files"),
    ],
)
async def test_the_base_path_comes_from_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, variables: dict[str, str], expected: str
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    for name in ("THREADSTORE", "NARRATOR", "TYLER"):
        monkeypatch.delenv(f"{name}_FILE_STORAGE_PATH", raising=False)
    for name, value in variables.items():
        monkeypatch.setenv(name, value)

    fs = await FileStore.create()

    assert fs.base_path == tmp_path / expected
    assert fs.base_path.is_dir()


async def test_create_fails_clearly_on_an_unusable_directory(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_bytes(b"")
    with pytest.raises(FileStoreError, match="cannot use"):
        await FileStore.create(blocker / "files")
    with pytest.raises(TypeError):
        FileStore("bad\x00path")


async def test_check_health(tmp_path: Path) -> None:
    fs = await FileStore.create(tmp_path / "files", max_storage_size=1000)
    await fs.save(b"x" * 250, "a.bin")

    report = await fs.check_health()

    assert report["status"] == "healthy" and report["error"] is None
    assert report["file_count"] == 1 and report["storage_size"] == 250
    assert report["usage_percent"] == 25.0 and report["available_space"] > 0
    blocker = tmp_path / "blocker"
    blocker.write_bytes(b"")
    broken = await FileStore(blocker / "files").check_health()
    assert broken["status"] == "unhealthy" and broken["error"]
