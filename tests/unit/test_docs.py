"""Every Python example of the README and docs/ runs, as a user would run it: a script in a fresh
interpreter (a block defining tests: pytest on it). The quickstart is the code `make demo` runs.
The README stays a door (~200 lines) and the docs' pages are all in the site's navigation."""

from __future__ import annotations

import importlib.metadata
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCUMENTS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def _examples() -> list[tuple[str, str]]:
    found = []
    for path in DOCUMENTS:
        blocks = re.findall(r"^```python\n(.*?)^```", path.read_text(), re.S | re.M)
        for number, block in enumerate(blocks, 1):
            found.append((f"{path.relative_to(ROOT)}#{number}", block))
    return found


EXAMPLES = _examples()

# What some examples print, by a line of their code: checked besides a clean exit.
OUTPUTS = {
    "def one_line(span: ReadableSpan) -> str:": [
        "threadstore save {'db.system.name': 'memory', 'db.operation.name': 'save'}",
        "threadstore get {'db.system.name': 'memory', 'db.operation.name': 'get'}",
        "handle request {}",
        "threadstore close {'db.system.name': 'memory', 'db.operation.name': 'close'}",
        "db.client.operation.duration save 1",
        "db.client.operation.duration get 1",
        "db.client.operation.duration close 1",
    ],
    "async def main(url: str | None = None) -> None:": [
        "[memory] saved 3 messages, read back 2:",
        "  1. user: My order hasn't arrived yet",
        "  2. assistant: I'll check on that order right away.",
    ],
    'message.add_attachment(b"%PDF-1.7 ...", filename="invoice.pdf")': [
        "invoice.pdf: application/pdf, 12 bytes, document, text: None",
        "notes.md: text/markdown, 22 bytes, text, text: '# Notes\\nCharged twice?'",
    ],
    "for query in ['refund delayed'": [
        "refund delayed: [(1, 'My [refund] is [delayed], and the invoice is not paid')]",
        "\"refund went\": [(2, 'The [refund] [went] out today.')]",
        "invoice -paid: []",
        "delayed OR today: [(2, 'The refund went out [today].'), "  # the shorter one first
        "(1, 'My refund is [delayed], and the invoice is not paid')]",
    ],
    'window = await store.get("chat-2", last=50)': [
        "window: message 71 ... message 120",
        "older: message 21 ... message 70",
        "sidebar: [('Chat 2', 121, 'Here you are.'), ('Chat 1', 120, 'message 120')]",
        "sidebar: [('Chat 0', 120, 'message 120')]",
        "pruned: 20",
        "deleted: 0",
    ],
    'session = ThreadStoreSession("user-42", store)': [
        "You're welcome!",
        "['user', 'function_call', 'function_call_output', 'assistant', 'user', 'assistant']",
        "[('user', \"What's the weather in Lisbon?\"), ('assistant', None), ('tool', 'Sunny in Lisbon')]",
        "['user-42']",
    ],
    'history = ThreadStoreChatMessageHistory("chat-7", store)': [
        "['SystemMessage', 'HumanMessage', 'AIMessage']",
        "{'total': 15, 'by_model': {'gpt-4o': "
        "{'prompt_tokens': 12, 'completion_tokens': 3, 'total_tokens': 15}}}",
        "[]",
    ],
    'history = await load_messages(store, "chat-1")': [
        "['user', 'assistant', 'tool', 'assistant', 'user', 'assistant']",
        "['test']",
    ],
    'added = await store.append(thread.id, Message(role="assistant", content="hello"))': [
        "[(2, 'hello')]",
        "None",
    ],
    'thread.add_message(Message(role="user", content="No event loop here"))': [
        "['No event loop here']",
    ],
}


def _run(code: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("THREADSTORE_", "TYLER_", "NARRATOR_"))}
    env["THREADSTORE_FILE_STORAGE_PATH"] = str(tmp_path / "files")
    if re.search(r"^(async )?def test_", code, re.M):
        (tmp_path / "test_example.py").write_text(code)
        installed = importlib.metadata.entry_points(group="pytest11", name="threadstore")
        plugin = [] if installed else ["-p", "threadstore.testing"]
        command = [sys.executable, "-m", "pytest", *plugin, "-q", "-p", "no:cacheprovider", "test_example.py"]
    else:
        (tmp_path / "example.py").write_text(code)
        command = [sys.executable, "example.py"]
    return subprocess.run(command, capture_output=True, text=True, cwd=tmp_path, env=env, timeout=120)


@pytest.mark.parametrize(("where", "code"), EXAMPLES, ids=[where for where, _ in EXAMPLES])
def test_every_python_example_runs(where: str, code: str, tmp_path: Path) -> None:
    result = _run(code, tmp_path)
    assert result.returncode == 0, f"{where}:\n{result.stdout}{result.stderr}"
    if "def test_" not in code:
        assert result.stderr == "", f"{where}: {result.stderr}"
    for marker, lines in OUTPUTS.items():
        if marker in code:
            printed = result.stdout.splitlines()
            assert all(line in printed for line in lines), f"{where} printed:\n{result.stdout}"


def test_every_expected_output_belongs_to_an_example() -> None:
    for marker in OUTPUTS:
        assert any(marker in code for _, code in EXAMPLES), f"no example has {marker!r} any more"


def test_the_readme_and_the_docs_quickstart_are_the_demo_code() -> None:
    quickstart = (ROOT / "threadstore" / "quickstart.py").read_text()
    body = quickstart.split("# --- README quickstart ---\n")[1].split("# --- end of README quickstart ---")[0]
    for path in (ROOT / "README.md", ROOT / "docs" / "index.md"):
        first = re.search(r"```python\n(.*?)```", path.read_text(), re.DOTALL)
        assert first, f"{path} has no python example"
        assert first.group(1) == body.rstrip() + "\n\n\nasyncio.run(main())\n", path


def test_no_example_leaves_files_in_the_default_file_store(tmp_path: Path) -> None:
    """Run as written, an example stores attachment files only where it cleans them up (the
    default folder stands in for ~/.threadstore/files)."""
    for where, code in EXAMPLES:
        if "FileStore" in code and "def test_" not in code:
            assert _run(code, tmp_path).returncode == 0, where
            left = [p for p in (tmp_path / "files").rglob("*") if p.is_file()]
            assert not left, f"{where} left {left}"


def test_usage_lists_the_store_as_the_readme_does() -> None:
    def glance(path: Path) -> str:
        text = path.read_text()
        return text[text.index("```text\nawait store.save(thread)") :].split("```\n", 1)[0]

    assert glance(ROOT / "docs" / "usage.md") == glance(ROOT / "README.md")


def test_the_readme_stays_a_door() -> None:
    assert len((ROOT / "README.md").read_text().splitlines()) <= 220


def test_every_docs_page_is_in_the_navigation_and_every_readme_link_resolves() -> None:
    nav = (ROOT / "mkdocs.yml").read_text()
    for page in (ROOT / "docs").glob("*.md"):
        assert f": {page.name}" in nav, f"docs/{page.name} is not in mkdocs.yml's nav"
    for target in re.findall(r"\]\(([^)#]+)(?:#[^)]*)?\)", (ROOT / "README.md").read_text()):
        if "://" not in target:
            assert (ROOT / target).exists(), f"README.md links to {target}, which does not exist"
