"""The storage backends: ``open_backend()`` picks one by configuration, importing its driver only
then. The Backend protocol and the plans and results that cross it are in ``base``.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from threadstore.backends.base import (
    AppendPlan,
    Backend,
    ByAttributes,
    ByContent,
    ByPlatform,
    ByPlatformReference,
    ByTitle,
    MessageSearch,
    ReplicaStatus,
    SavePlan,
    SchemaStatus,
    SearchRow,
    ThreadCopy,
    ThreadSearch,
    UsageCounts,
)

if TYPE_CHECKING:
    from threadstore.config import DatabaseConfig

__all__ = [
    "AppendPlan",
    "Backend",
    "ByAttributes",
    "ByContent",
    "ByPlatform",
    "ByPlatformReference",
    "ByTitle",
    "MessageSearch",
    "ReplicaStatus",
    "SavePlan",
    "SchemaStatus",
    "SearchRow",
    "ThreadCopy",
    "ThreadSearch",
    "UsageCounts",
    "open_backend",
]


def open_backend(config: DatabaseConfig) -> Backend:
    """A backend for ``config``, importing its driver only now (keeps ``import threadstore`` cheap).

    Each backend lives in the module named like it: threadstore.backends.<config.backend>.
    """
    module = importlib.import_module(f"threadstore.backends.{config.backend}")
    backend: Backend = module.create(config)
    return backend
