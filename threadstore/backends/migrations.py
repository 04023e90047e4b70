"""Schema migrations: which are pending, the status a database reports, and the one loop that
applies them (the backends' migrate() and threadstore.adopt both run it).

A migration is ``sql/<dialect>/migrations/NNNN_name.sql``; the ledger table records those applied.
"""

from __future__ import annotations

import shlex
import time
from collections.abc import Sequence
from typing import Protocol

from threadstore.backends.base import SchemaStatus
from threadstore.errors import SchemaVersionError
from threadstore.queries import Migration, log_statement


class Migrator(Protocol):
    """What applies migrations on one connection, inside the caller's transaction."""

    async def run_script(self, migration: Migration) -> None:
        """Run the migration's script; ThreadStoreError naming it when it fails."""

    async def record(self, migration: Migration) -> None:
        """Record it in the ledger."""


async def apply(migrator: Migrator, todo: Sequence[Migration], *, echo: bool = False) -> list[int]:
    """Apply ``todo`` in order, each recorded in the ledger (with an echo line when ``echo``):
    the one migration loop. Returns the versions applied."""
    for migration in todo:
        started = time.perf_counter()
        await migrator.run_script(migration)
        if echo:
            log_statement(
                f"migrations.{migration.version:04d}_{migration.name}", started, time.perf_counter()
            )
        await migrator.record(migration)
    return [m.version for m in todo]


def status(migrations: Sequence[Migration], applied: Sequence[int]) -> SchemaStatus:
    """The status of a database whose ledger lists ``applied`` (SchemaVersionError if newer)."""
    todo = pending(migrations, applied)
    return SchemaStatus(max(applied, default=0), [f"{m.version:04d}_{m.name}" for m in todo])


def pending(migrations: Sequence[Migration], applied: Sequence[int]) -> list[Migration]:
    """The migrations still to run; a database newer than this code is an error."""
    known = max((m.version for m in migrations), default=0)
    newest = max(applied, default=0)
    if newest > known:
        raise SchemaVersionError(
            f"the database schema is at version {newest}, but this threadstore knows versions "
            f"up to {known}; upgrade threadstore"
        )
    done = set(applied)
    return [m for m in migrations if m.version not in done]


def narrator_refusal(url: str) -> SchemaVersionError:
    """The error for a slide-narrator database not adopted yet (schema.narrator_database)."""
    return SchemaVersionError(
        f"{url} is a slide-narrator database (narrator's threads and messages tables, no threadstore "
        f"schema); nothing was changed. Convert it in place, keeping every thread, with: "
        f"threadstore adopt {shlex.quote(url)}"
    )


def other_tables_refusal(url: str) -> SchemaVersionError:
    """The error for a database holding tables named threads or messages that are neither
    threadstore's nor slide-narrator's (schema.other_tables)."""
    return SchemaVersionError(
        f"{url} holds tables named threads or messages that are neither threadstore's nor "
        "slide-narrator's; nothing was changed. Use another database, or on PostgreSQL a schema "
        "of threadstore's own (schema= or THREADSTORE_DB_SCHEMA)"
    )
