"""fork(): what a process inherits from its parent that a store must not use.

A forked child (gunicorn ``--preload``, Celery prefork, multiprocessing's "fork") gets copies of
its parent's stores: their connections' sockets and files are shared with the parent, and the
threads serving them (a sync store's event loop, aiosqlite's worker) do not exist in the child.
A store notices the fork through ``generation`` (counted by ``os.register_at_fork``) and opens
its own connections in the child. The parent's objects are kept here, never closed nor
garbage-collected in the child: closing them would end the parent's sessions, and their
finalisers would write to the parent's event loop.
"""

from __future__ import annotations

import os
import threading
from typing import Any

generation = 0  # how many forks this process descends from (0 in the process that started)
lock = threading.Lock()  # new in each child: one held by another thread at fork time stays held
_left_behind: list[Any] = []


def _forked() -> None:
    global generation, lock
    generation += 1
    lock = threading.Lock()


def leave_behind(*objects: Any) -> None:
    """Keep the parent's ``objects`` alive and untouched in this (child) process."""
    _left_behind.extend(objects)


if hasattr(os, "register_at_fork"):  # not on Windows, which has no fork()
    os.register_at_fork(after_in_child=_forked)
