"""MIME types of attachment bytes, and the text extracted from text-like files.

The bytes are read first (magic numbers; UTF-8 text; JSON), then the declared type, then the
filename, ignoring a declared or guessed type the bytes contradict. A table of the dozen formats
that matter here is short and exact, needs no C library (python-magic needs libmagic installed)
and answers alike on every machine; the filename table is a private copy of the stdlib's built-in
one (never the system's /etc/mime.types) for the same reason. Nothing is extracted from PDFs,
Office documents or images: no such libraries are used.
"""

from __future__ import annotations

import codecs
import io
import mimetypes
import re
import zipfile

import msgspec

TEXT_LIMIT = 100_000  # characters of processed_content kept for a text file
OCTET_STREAM = "application/octet-stream"

_MIME = re.compile(r"[a-z0-9][a-z0-9!#$&^_.+-]{0,126}/[a-z0-9][a-z0-9!#$&^_.+-]{0,126}")
_MIME_PATTERN = re.compile(r"[a-z0-9][a-z0-9!#$&^_.+-]{0,126}/(\*|[a-z0-9][a-z0-9!#$&^_.+-]{0,126})")
_MAGIC = (
    (b"%PDF-", "application/pdf"),
    (b"\x89PNG\r\n\x1a\n", "image/png"),
    (b"\xff\xd8\xff", "image/jpeg"),
    (b"GIF87a", "image/gif"),
    (b"GIF89a", "image/gif"),
)
_ZIP = "application/zip"
_OOXML = {  # an Office Open XML package is a ZIP with [Content_Types].xml and one of these folders
    "word/": "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
    "xl/": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
    "ppt/": "application/vnd.openxmlformats-officedocument.presentationml.presentation",
}
_ODF = "application/vnd.oasis.opendocument."
# Types the bytes would show if they were right: declared for bytes without their magic number,
# they are contradicted and ignored.
_SNIFFABLE = frozenset(
    {
        *(mime for _, mime in _MAGIC),
        "image/webp",
        _ZIP,
        *_OOXML.values(),
        "application/epub+zip",
        f"{_ODF}text",
        f"{_ODF}spreadsheet",
        f"{_ODF}presentation",
    }
)
_TEXTUAL = frozenset(
    {
        "application/json",
        "application/xml",
        "application/javascript",
        "application/x-javascript",
        "application/yaml",
        "application/x-yaml",
        "application/toml",
        "application/sql",
        "application/x-sh",
        "application/x-python",
        "application/ld+json",
    }
)
_DOCUMENTS = frozenset(
    {
        "application/pdf",
        "application/msword",
        "application/rtf",
        "application/vnd.ms-excel",
        "application/vnd.ms-powerpoint",
        "application/epub+zip",
        *_OOXML.values(),
    }
)
_ARCHIVES = frozenset(
    {
        _ZIP,
        "application/gzip",
        "application/x-tar",
        "application/x-7z-compressed",
        "application/x-bzip2",
        "application/x-xz",
        "application/vnd.rar",
    }
)
_SNIFF_BYTES = 8192
# Bytes plain text holds: printable ASCII and everything >= 0x80 (checked as UTF-8 separately),
# plus \a \b \t \n \v \f \r and ESC. Any other control byte (NUL above all) means binary.
_TEXT_BYTES = bytes(sorted({7, 8, 9, 10, 11, 12, 13, 27, *range(0x20, 0x7F), *range(0x80, 0x100)}))
_TEXT = "text"  # _sniff's answer for UTF-8 text of no more specific kind


def _filename_types() -> mimetypes.MimeTypes:
    # A private table: the stdlib's built-in map (an instance never reads /etc/mime.types), plus
    # the common types it lacks on Python 3.11.
    types = mimetypes.MimeTypes()
    for mime, extension in (
        ("text/markdown", ".md"),
        ("text/markdown", ".markdown"),
        ("application/yaml", ".yaml"),
        ("application/yaml", ".yml"),
        ("application/toml", ".toml"),
        ("image/webp", ".webp"),
        ("application/epub+zip", ".epub"),
        (f"{_ODF}text", ".odt"),
        (f"{_ODF}spreadsheet", ".ods"),
        (f"{_ODF}presentation", ".odp"),
        (_OOXML["word/"], ".docx"),
        (_OOXML["xl/"], ".xlsx"),
        (_OOXML["ppt/"], ".pptx"),
    ):
        types.add_type(mime, extension)
    return types


_FILENAME_TYPES = _filename_types()


def normalize_mime_type(value: object, what: str = "mime_type") -> str:
    """``value`` as a bare lower-case ``type/subtype`` (parameters dropped); ValueError if it is
    not one."""
    if not isinstance(value, str):
        raise TypeError(f"{what} must be a string, got {type(value).__name__}")
    mime = value.partition(";")[0].strip().lower()
    if not _MIME.fullmatch(mime):
        raise ValueError(f"{what} {value[:200]!r} is not a MIME type (type/subtype)")
    return mime


def normalize_mime_pattern(pattern: object) -> str:
    """An ``allowed_mime_types`` entry (``type/subtype`` or ``type/*``) in lower case; ValueError
    if it is neither."""
    if not isinstance(pattern, str):
        raise TypeError(f"allowed_mime_types holds a {type(pattern).__name__}, not a string")
    value = pattern.strip().lower()
    if not _MIME_PATTERN.fullmatch(value):
        raise ValueError(f"allowed_mime_types holds {pattern!r}, not a type/subtype or type/*")
    return value


def is_allowed(mime: str, patterns: frozenset[str]) -> bool:
    """Whether ``mime`` matches one of the (normalised) patterns."""
    return mime in patterns or f"{mime.partition('/')[0]}/*" in patterns


def is_textual(mime: str) -> bool:
    """Whether files of this MIME type are text (their processed_content is their text)."""
    return mime.startswith("text/") or mime in _TEXTUAL or mime.endswith(("+json", "+xml"))


def _guess(filename: str | None) -> str | None:
    if not filename:
        return None
    name = re.split(r"[\\/]", filename)[-1]
    stem, dot, extension = name.rpartition(".")
    if not dot or not stem or not extension or len(extension) > 16:
        return None
    return _FILENAME_TYPES.guess_type(f"file.{extension}")[0]


def _is_text(sample: bytes, complete: bool) -> bool:
    if sample.translate(None, _TEXT_BYTES):
        return False
    try:
        codecs.getincrementaldecoder("utf-8")().decode(sample, final=complete)
    except UnicodeDecodeError:
        return False
    return True


def _is_json(content: bytes) -> bool:
    body = content.removeprefix(codecs.BOM_UTF8).lstrip()
    if not body.startswith((b"{", b"[")):
        return False
    try:
        msgspec.json.decode(body)
    except msgspec.DecodeError:
        return False
    return True


def _zip_type(content: bytes) -> str:
    try:
        with zipfile.ZipFile(io.BytesIO(content)) as archive:
            names = archive.namelist()
            if "mimetype" in names:  # ODF and EPUB packages name their type in this entry
                with archive.open("mimetype") as entry:
                    named = entry.read(128).decode("ascii", "replace").strip()
                if _MIME.fullmatch(named) and (named.startswith(_ODF) or named.endswith("+zip")):
                    return named
            if "[Content_Types].xml" in names:
                for folder, mime in _OOXML.items():
                    if any(name.startswith(folder) for name in names):
                        return mime
    except Exception:  # a damaged or exotic archive is still a ZIP file to us
        pass
    return _ZIP


def _sniff(content: bytes) -> str | None:
    """The type the bytes show: a magic number's, _TEXT for UTF-8 text, None if they show none."""
    for magic, mime in _MAGIC:
        if content.startswith(magic):
            return mime
    if content[:4] == b"RIFF" and content[8:12] == b"WEBP":
        return "image/webp"
    if content[:4] in (b"PK\x03\x04", b"PK\x05\x06"):
        return _zip_type(content)
    if content and _is_text(content[:_SNIFF_BYTES], complete=len(content) <= _SNIFF_BYTES):
        return _TEXT
    return None


def detect_mime_type(content: bytes, filename: str | None = None, declared: str | None = None) -> str:
    """The MIME type of ``content``.

    What the bytes show wins: magic numbers for PDF, PNG, JPEG, GIF, WebP, ZIP and the Office
    formats (Office Open XML, OpenDocument, EPUB). UTF-8 text takes a more specific text type
    from the declared type or the filename (``text/markdown``, ``text/csv``, ...), else
    ``application/json`` if it parses as a JSON object or array, else ``text/plain``. Other bytes
    take the declared type, else the filename's, unless the bytes contradict it (a type from the
    list above, or a text type for binary bytes); else ``application/octet-stream``.
    """
    hints = [normalize_mime_type(declared)] if declared is not None else []
    guessed = _guess(filename)
    if guessed:
        hints.append(guessed)
    sniffed = _sniff(content)
    if sniffed is not None and sniffed != _TEXT:
        return sniffed
    if sniffed == _TEXT:
        for hint in hints:
            if (
                is_textual(hint)
                and hint != "text/plain"
                and (hint != "application/json" or _is_json(content))
            ):
                return hint
        return "application/json" if _is_json(content) else "text/plain"
    if not content:  # no bytes, no evidence against any type
        return hints[0] if hints else OCTET_STREAM
    return next((h for h in hints if h not in _SNIFFABLE and not is_textual(h)), OCTET_STREAM)


def kind_of(mime: str) -> str:
    """The coarse kind recorded as ``attributes["type"]``: text, json, image, audio, video,
    document, archive or binary."""
    if mime == "application/json" or mime.endswith("+json"):
        return "json"
    if is_textual(mime):
        return "text"
    major = mime.partition("/")[0]
    if major in ("image", "audio", "video"):
        return major
    if mime in _DOCUMENTS or mime.startswith(_ODF):
        return "document"
    return "archive" if mime in _ARCHIVES else "binary"


def extract_text(content: bytes, mime: str) -> tuple[str | None, bool]:
    """``(text, truncated)``: a text file's decoded text (UTF-8, invalid bytes replaced, NUL
    characters too, at most TEXT_LIMIT characters); ``(None, False)`` for other types."""
    if not is_textual(mime):
        return None, False
    head = content[: TEXT_LIMIT * 4]  # a character is at most 4 bytes of UTF-8
    text = head.decode("utf-8-sig", "replace").replace("\x00", "\ufffd")
    truncated = len(head) < len(content) or len(text) > TEXT_LIMIT
    return text[:TEXT_LIMIT], truncated


async def describe(content: bytes, mime: str) -> tuple[str, str | None, bool]:
    """(kind, processed_content, truncated) for stored bytes of type ``mime``."""
    import asyncio  # here: `import threadstore` does not import asyncio (bench: ~40 ms)

    if not is_textual(mime):
        return kind_of(mime), None, False
    text, truncated = await asyncio.to_thread(extract_text, content, mime)
    return kind_of(mime), text, truncated
