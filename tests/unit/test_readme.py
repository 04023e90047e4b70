"""The README's quickstart is the code `make demo` runs, and it runs."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _first_python_block() -> str:
    readme = (ROOT / "README.md").read_text()
    match = re.search(r"```python\n(.*?)```", readme, re.DOTALL)
    assert match, "README.md has no python example"
    return match.group(1)


def test_readme_quickstart_is_the_demo_code() -> None:
    quickstart = (ROOT / "threadstore" / "quickstart.py").read_text()
    body = quickstart.split("# --- README quickstart ---\n")[1].split("# --- end of README quickstart ---")[0]
    assert _first_python_block() == body.rstrip() + "\n\n\nasyncio.run(main())\n"


def test_readme_quickstart_runs(tmp_path: Path) -> None:
    script = tmp_path / "quickstart.py"
    script.write_text(_first_python_block())
    result = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                            cwd=tmp_path, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "[memory] saved 3 messages, read back 2:" in result.stdout
    assert "2. assistant: I'll check on that order right away." in result.stdout


def test_readme_attachment_example_runs(tmp_path: Path) -> None:
    readme = (ROOT / "README.md").read_text()
    match = re.search(r"## Attachments\n\n```python\n(.*?)```", readme, re.DOTALL)
    assert match, "README.md has no attachment example"
    script = tmp_path / "attachments.py"
    script.write_text(match.group(1))
    env = {**os.environ, "THREADSTORE_FILE_STORAGE_PATH": str(tmp_path / "files")}
    result = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                            cwd=tmp_path, timeout=60, env=env)
    assert result.returncode == 0, result.stderr
    assert "invoice.pdf: application/pdf, 12 bytes, document, text: None" in result.stdout
    assert "notes.md: text/markdown, 22 bytes, text, text: '# Notes\\nCharged twice?'" in result.stdout


def test_readme_fulltext_example_runs(tmp_path: Path) -> None:
    readme = (ROOT / "README.md").read_text()
    match = re.search(r"### Full-text search\n\n```python\n(.*?)```", readme, re.DOTALL)
    assert match, "README.md has no full-text search example"
    script = tmp_path / "fulltext.py"
    script.write_text(match.group(1))
    result = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                            cwd=tmp_path, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        "refund delayed: [(1, 'My [refund] is [delayed], and the invoice is not paid')]",
        "\"refund went\": [(2, 'The [refund] [went] out today.')]",
        "invoice -paid: []",
        "delayed OR today: [(2, 'The refund went out [today].'), "  # the shorter one first
        "(1, 'My refund is [delayed], and the invoice is not paid')]",
    ]


def test_readme_sync_example_runs(tmp_path: Path) -> None:
    readme = (ROOT / "README.md").read_text()
    match = re.search(r"### Blocking calls: `threadstore.sync`\n\n```python\n(.*?)```", readme, re.DOTALL)
    assert match, "README.md has no sync example"
    script = tmp_path / "sync.py"
    script.write_text(match.group(1))
    result = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                            cwd=tmp_path, timeout=60)
    assert (result.returncode, result.stdout, result.stderr) == (0, "['No event loop here']\n", "")
