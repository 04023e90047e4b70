"""What the reliability tests share: the scale of a run, child processes, and probes of a
store's connections (pool checked back in, no SQLite transaction left open)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import pwd
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from threadstore import ThreadStore
from threadstore.testing import backend_of

ROOT = Path(__file__).resolve().parents[2]

# `make stress` sets THREADSTORE_STRESS=1: the heavy variants, ten times the counts.
STRESS = os.environ.get("THREADSTORE_STRESS") == "1"


def scaled(count: int) -> int:
    """``count`` in `make test`, ten times it under `make stress`."""
    return count * 10 if STRESS else count


def run_workers(
    job: str, arguments: list[dict[str, Any]], timeout: float, preexec_fn: Callable[[], None] | None = None
) -> list[dict[str, Any]]:
    """Start one ``tests.reliability.workers`` process per argument set, let them all go at the
    same instant, and return what each reported."""
    processes = [
        subprocess.Popen(
            [sys.executable, "-m", "tests.reliability.workers", job, json.dumps(args)],
            cwd=ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            preexec_fn=preexec_fn,
        )
        for args in arguments
    ]
    try:
        for process in processes:  # every child connected (imports done, store open)
            assert process.stdout is not None
            ready = process.stdout.readline().strip()
            assert ready == "ready", f"a worker did not start: {ready!r}"
        for process in processes:
            assert process.stdin is not None
            process.stdin.write("go\n")
            process.stdin.flush()
        results = []
        for process in processes:
            out, _ = process.communicate(timeout=timeout)
            assert process.returncode == 0, f"a worker failed with exit code {process.returncode}"
            results.append(json.loads(out.strip().splitlines()[-1]))
        return results
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
                process.wait()


async def background_done(store: ThreadStore) -> None:
    """Wait (at most 10 s) for what the store runs in the background after writes: PostgreSQL's
    content indexer, which holds a pooled connection for a moment."""
    sync = getattr(store, "sync", None)  # tests/conftest.py's SyncAwaited: its loop is another thread's
    if sync is not None:
        indexer = getattr(getattr(backend_of(sync.async_store), "_indexer", None), "task", None)
        deadline = time.monotonic() + 10
        while indexer is not None and not indexer.done() and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        return
    indexer = getattr(getattr(backend_of(store), "_indexer", None), "task", None)
    if indexer is not None and not indexer.done():  # a done one: no await, no yield to the loop
        await asyncio.wait([indexer], timeout=10)


async def assert_connections_idle(store: ThreadStore) -> None:
    """Every pooled PostgreSQL connection is checked in (once the background content indexer,
    which takes one for a moment after writes, is done); the SQLite connection holds no
    transaction and no operation holds its lock."""
    backend: Any = backend_of(store)
    await background_done(store)
    if store.backend == "postgres":
        pool = backend.engine
        assert pool.get_idle_size() == pool.get_size(), (
            f"{pool.get_size() - pool.get_idle_size()} pooled connection(s) still checked out"
        )
    elif store.backend == "sqlite":
        assert not backend._db.lock.locked(), "an operation still holds the SQLite connection"
        assert not backend.engine.in_transaction, "a SQLite transaction was left open"


async def stored_message_count(store: ThreadStore, thread_id: str) -> int:
    """Rows in the messages table for ``thread_id``, counted by the database itself (so an orphan
    the store would never return is counted too); the in-memory store's own index otherwise."""
    backend: Any = backend_of(store)
    if store.backend == "postgres":
        async with backend.engine.acquire() as conn:
            count: int = await conn.fetchval("SELECT count(*) FROM messages WHERE thread_id = $1", thread_id)
        return count
    if store.backend == "sqlite":
        async with backend._db.lock:
            rows = await backend.engine.execute_fetchall(
                "SELECT count(*) FROM messages WHERE thread_id = ?", (thread_id,)
            )
        return int(next(iter(rows))[0])
    return sum(thread_id in owners for owners in backend._owners.values())


async def applied_versions(store: ThreadStore) -> list[int]:
    """The versions the database's migration ledger records, one row each."""
    backend: Any = backend_of(store)
    if store.backend == "postgres":
        async with backend.engine.acquire() as conn:
            rows = await conn.fetch("SELECT version FROM threadstore_migrations ORDER BY version")
    else:
        async with backend._db.lock:
            rows = await backend.engine.execute_fetchall(
                "SELECT version FROM threadstore_migrations ORDER BY version"
            )
    return [row[0] for row in rows]


def create_accepts(*names: str) -> bool:
    """Whether ``ThreadStore.create`` takes these keyword arguments (some arrive with issue 5)."""
    import inspect

    parameters = inspect.signature(ThreadStore.create).parameters
    return all(name in parameters for name in names) or any(
        p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values()
    )


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


def postgres_binaries() -> Path | None:
    """The newest directory holding initdb and pg_ctl (Debian keeps them off the PATH)."""
    candidates = sorted(Path("/usr/lib/postgresql").glob("*/bin"), key=lambda p: p.parent.name)
    on_path = shutil.which("initdb")
    if on_path:
        candidates.append(Path(on_path).resolve().parent)
    found = [d for d in candidates if (d / "initdb").exists() and (d / "pg_ctl").exists()]
    return found[-1] if found else None


def server_directory(prefix: str) -> tuple[Path, list[str], Path]:
    """For a PostgreSQL server of a test's own: (the server binaries, the command prefix that
    runs them as the ``postgres`` user when this is root, a new directory that user owns).
    Skips the test when initdb is missing, or when running as root with no unprivileged
    ``postgres`` user or no runuser (initdb refuses root)."""
    binaries = postgres_binaries()
    if binaries is None:
        pytest.skip("initdb/pg_ctl not found (under /usr/lib/postgresql/*/bin or on PATH)")
    as_user: list[str] = []
    account = None
    if os.geteuid() == 0:
        try:
            account = pwd.getpwnam("postgres")
        except KeyError:
            pytest.skip("running as root, and initdb refuses root: no 'postgres' user to run it as")
        if shutil.which("runuser") is None:
            pytest.skip("running as root, and initdb refuses root: runuser is missing")
        as_user = ["runuser", "-u", "postgres", "--"]
    root = Path(tempfile.mkdtemp(prefix=prefix))
    if account is not None:
        os.chown(root, account.pw_uid, account.pw_gid)
    return binaries, as_user, root


class StandbyPair:
    """A PostgreSQL primary and its streaming hot standby (``pg_basebackup -R``), servers of a
    test's own on free loopback ports under a temporary directory, started as the ``postgres``
    user when this is root; every step bounded by pg_ctl's own timeouts and ``timeout``.
    ``close()`` stops both by data directory (immediately) and removes the directory.
    ``synchronous=True``: the primary commits only once the standby has the WAL."""

    def __init__(self, prefix: str, *, synchronous: bool = False) -> None:
        self.binaries, self.as_user, self.root = server_directory(prefix)
        self.ports = {"primary": free_port(), "standby": free_port()}
        self.synchronous = synchronous
        try:
            self._pg("initdb", "-D", str(self.root / "primary"), "-A", "trust", "-U", "postgres",
                     "-E", "UTF8", "--no-sync", "--no-instructions")  # fmt: skip
            self.start("primary")
            self._pg("pg_basebackup", "-D", str(self.root / "standby"), "-h", "127.0.0.1",
                     "-p", str(self.ports["primary"]), "-U", "postgres", "-R", "-X", "stream")  # fmt: skip
            self.start("standby")
            if synchronous:  # after the base backup: the standby, once promoted, waits for none
                self.configure("primary", synchronous_standby_names="'*'")
                deadline = time.monotonic() + 30
                while (
                    self.sql("primary", "SELECT string_agg(sync_state, ',') FROM pg_stat_replication")
                    != "sync"
                ):
                    assert time.monotonic() < deadline, "the standby did not become synchronous"
                    time.sleep(0.1)
        except BaseException:
            self.close()
            raise

    def _pg(self, program: str, *args: str, check: bool = True) -> subprocess.CompletedProcess[bytes]:
        return subprocess.run(
            [*self.as_user, str(self.binaries / program), *args],
            check=check,
            capture_output=True,
            timeout=120,
        )

    def sql(self, name: str, query: str) -> str:
        """One query's result through psql, as text."""
        done = self._pg("psql", "-h", "127.0.0.1", "-p", str(self.ports[name]), "-U", "postgres",
                        "-d", "postgres", "-tAc", query)  # fmt: skip
        return done.stdout.decode().strip()

    def url(self, name: str) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.ports[name]}/postgres"

    def start(self, name: str) -> None:
        options = (
            f"-F -p {self.ports[name]} -k {self.root} -c listen_addresses=127.0.0.1 -c max_connections=40"
        )
        self._pg("pg_ctl", "-D", str(self.root / name), "-l", str(self.root / f"{name}.log"),
                 "-o", options, "-w", "-t", "60", "start")  # fmt: skip

    def configure(self, name: str, **settings: str) -> None:
        """Append settings to the server's postgresql.auto.conf and reload it (when running)."""
        conf = self.root / name / "postgresql.auto.conf"
        with conf.open("a") as file:
            file.writelines(f"{key} = {value}\n" for key, value in settings.items())
        self._pg("pg_ctl", "-D", str(self.root / name), "reload", check=False)

    def kill(self, name: str) -> None:
        """kill -9 of the server's postmaster (its backends end when they notice)."""
        pid = int((self.root / name / "postmaster.pid").read_text().split()[0])
        os.kill(pid, 9)

    def promote(self, name: str) -> None:
        self._pg("pg_ctl", "-D", str(self.root / name), "-w", "-t", "60", "promote")

    def close(self) -> None:
        for name in ("standby", "primary"):
            if (self.root / name / "postmaster.pid").exists():
                self._pg("pg_ctl", "-D", str(self.root / name), "-m", "immediate", "-w", "-t", "60", "stop",
                         check=False)  # fmt: skip
        shutil.rmtree(self.root, ignore_errors=True)


def citus_installed() -> bool:
    """Whether the Citus extension is in the server's directories (.ci/run installs it)."""
    binaries = postgres_binaries()
    return binaries is not None and (binaries.parent / "lib" / "citus.so").exists()


@contextlib.contextmanager
def citus_cluster(workers: int = 2) -> Iterator[str]:
    """The URL of a Citus coordinator with ``workers`` workers: servers of the caller's own on
    free loopback ports under a temporary directory, each step bounded by a timeout, stopped by
    data directory afterwards. Skipped where Citus is not installed, unless
    THREADSTORE_REQUIRE_PG=1 (CI), where that fails."""
    if not citus_installed():
        if os.environ.get("THREADSTORE_REQUIRE_PG") == "1":
            pytest.fail("Citus is not installed (.ci/run installs it from ../shared/citus/install.sh)")
        pytest.skip("Citus is not installed (see ../shared/citus/README.md)")
    binaries, as_user, root = server_directory("threadstore-citus-")
    names = [f"node{i}" for i in range(workers + 1)]
    ports = {name: free_port() for name in names}

    def run(*args: str) -> None:
        subprocess.run([*as_user, *args], check=True, capture_output=True, timeout=120)

    def sql(name: str, statement: str) -> None:
        run("psql", "-h", "127.0.0.1", "-p", str(ports[name]), "-U", "postgres", "-X", "-q",
            "-v", "ON_ERROR_STOP=1", "-c", statement)  # fmt: skip

    started = []
    try:
        for name in names:
            run(str(binaries / "initdb"), "-D", str(root / name), "-A", "trust", "-U", "postgres",
                "-E", "UTF8", "--no-sync", "--no-instructions")  # fmt: skip
            options = (
                f"-F -p {ports[name]} -k {root} -c listen_addresses=127.0.0.1 -c max_connections=60"
                " -c shared_preload_libraries=citus -c fsync=off"
                # two-phase commits stay in pg_dist_transaction, so a test can count them
                " -c citus.recover_2pc_interval=-1"
            )
            started.append(name)
            run(str(binaries / "pg_ctl"), "-D", str(root / name), "-l", str(root / f"{name}.log"),
                "-o", options, "-w", "-t", "60", "start")  # fmt: skip
        for name in names:
            sql(name, "CREATE EXTENSION citus")
        sql(names[0], f"SELECT citus_set_coordinator_host('127.0.0.1', {ports[names[0]]})")
        for name in names[1:]:
            sql(names[0], f"SELECT citus_add_node('127.0.0.1', {ports[name]})")
        yield f"postgresql://postgres@127.0.0.1:{ports[names[0]]}/postgres"
    finally:
        for name in started:
            subprocess.run(
                [*as_user, str(binaries / "pg_ctl"), "-D", str(root / name), "-m", "immediate", "-w", "stop"],
                capture_output=True,
                timeout=60,
            )
        shutil.rmtree(root, ignore_errors=True)
