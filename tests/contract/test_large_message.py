"""Writing a 20 MB message costs at most 3x its size in peak memory, on every backend.

Each case runs in a fresh interpreter, so ru_maxrss (the process's peak) measures this write
alone: the baseline is taken after the message is built and a small write of the same kind
warmed the store up; the peak after the write may exceed it by at most 3x the message, plus
SLACK for buffers of a fixed size (SQLite's page cache, 2 MB by default, fills as the message's
pages are written: +40.1 MB instead of +42.0 MB with a 100 KB cache).
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

MESSAGE_MB = 20
SLACK_MB = 4
TIMEOUT = 120.0  # seconds; a hang fails the test, not the run

PROGRAM = """
import asyncio, gc, resource, sys
from threadstore import Message, Thread, ThreadStore

def peak_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

async def main(url, operation, size_mb):
    store = await ThreadStore.create(url)
    try:
        big = Message(role="user", content="threadstore " * (size_mb * 1024 * 1024 // 12))
        small = Thread(title="warm-up")
        small.add_message(Message(role="user", content="hello"))
        await store.save(small)
        target = Thread(title="large")
        if operation == "append":
            await store.append(small.id, Message(role="assistant", content="hi"))
        elif operation == "import":
            await store.import_threads([Thread(title="warm-up import", messages=[
                Message(role="user", content="imported")])])
            target.messages = [big]
        gc.collect()
        before = peak_mb()
        if operation == "save":
            target.add_message(big)
            await store.save(target)
        elif operation == "append":
            await store.append(small.id, big)
        else:
            await store.import_threads([target])
        print(f"{peak_mb() - before:.1f}")
    finally:
        await store.delete_many([t.id for t in await store.list_recent()])
        await store.close()

asyncio.run(main(sys.argv[1], sys.argv[2], int(sys.argv[3])))
"""


@pytest.mark.parametrize("operation", ["save", "append", "import"])
# Not SQLite :memory:, whose pages are where it stores the message.
@pytest.mark.parametrize("backend", ["memory", "sqlite_file", "postgres"])
def test_writing_a_20_mb_message_raises_peak_memory_by_at_most_3x_its_size(
    backend: str, request: pytest.FixtureRequest, tmp_path: Path, operation: str
) -> None:
    url = {"memory": "memory://", "sqlite_file": f"sqlite+aiosqlite:///{tmp_path}/large.db"}.get(backend)
    url = url or request.getfixturevalue("pg_url")
    script = tmp_path / "large.py"
    script.write_text(textwrap.dedent(PROGRAM))
    root = str(Path(__file__).resolve().parents[2])
    env = {k: v for k, v in os.environ.items() if not k.startswith("THREADSTORE_")}
    try:
        done = subprocess.run(
            [sys.executable, str(script), url, operation, str(MESSAGE_MB)],
            cwd=root,
            capture_output=True,
            text=True,
            timeout=TIMEOUT,
            env={**env, "PYTHONPATH": root},
        )
    except subprocess.TimeoutExpired:
        pytest.fail(f"writing a {MESSAGE_MB} MB message took over {TIMEOUT:g} s")
    assert done.returncode == 0, done.stderr
    grown = float(done.stdout.split()[-1])
    assert grown <= 3 * MESSAGE_MB + SLACK_MB, f"{operation}: peak memory grew by {grown:.0f} MB"
