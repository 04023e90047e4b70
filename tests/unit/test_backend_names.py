"""One name per operation, from the API to the backend: every Backend operation is named as the
ThreadStore method it serves, except the few listed here, each serving another on purpose."""

from __future__ import annotations

from threadstore import ThreadStore
from threadstore.backends import memory
from threadstore.backends.base import Lifecycle, Operations
from threadstore.backends.postgres import PostgresBackend
from threadstore.backends.sqlite import SQLiteBackend

# Backend operations that serve API methods of other names.
SERVES = {
    "create_if_absent": "get_or_create",
    "existing_ids": "import_threads",
    # One query per ThreadSearch type (search.by_title, ...), for the six thread searches.
    "find_threads": "find_by_attributes",
}


def operations() -> list[str]:
    return [name for name in vars(Operations) if not name.startswith("_")]


def test_every_backend_operation_is_named_like_a_store_method() -> None:
    names = operations()
    assert "get_by_alias" in names and "save" in names
    for name in names:
        assert hasattr(ThreadStore, SERVES.get(name, name)), name


def test_every_backend_implements_exactly_the_protocol() -> None:
    wanted = set(operations()) | {n for n in vars(Lifecycle) if not n.startswith("_")} - {
        "name",
        "loop_bound",
    }
    for backend in (memory.MemoryBackend, PostgresBackend, SQLiteBackend):
        public = {name for name in vars(backend) if not name.startswith("_")}
        assert public - {"name", "loop_bound"} == wanted, backend.__name__
