"""pg_auto_failover (Debian's postgresql-15-auto-failover): a monitor, a primary and a
synchronous secondary of the test's own on loopback, the monitor's health checks tuned to
seconds; the primary's keeper and server are killed (-9) during a save loop through the
formation's multi-host URL, the monitor promotes the secondary, and the loop's saves resume
with no acknowledged save lost. About 20 s in all (8 of them setting up the formation)."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator

import pytest

from tests.reliability.support import free_port, server_directory
from threadstore import Message, Thread, ThreadStore, ThreadStoreError

pytestmark = pytest.mark.pg

# The monitor's health checks, in milliseconds (defaults: 5 s checks, unhealthy after 20 s).
_TUNING = {
    "pgautofailover.health_check_period": 1000,
    "pgautofailover.health_check_timeout": 1000,
    "pgautofailover.health_check_max_retries": 1,
    "pgautofailover.health_check_retry_delay": 500,
    "pgautofailover.node_considered_unhealthy_timeout": 2000,
    "pgautofailover.primary_demote_timeout": 2000,
}


class Formation:
    """A monitor and two nodes, each run by its ``pg_autoctl run`` keeper in a process group of
    its own, under a temporary directory (pg_autoctl's configuration and state included)."""

    def __init__(self) -> None:
        self.autoctl = shutil.which("pg_autoctl")
        if self.autoctl is None:
            pytest.skip("pg_autoctl is not installed (apt-get install postgresql-15-auto-failover)")
        self.binaries, self.as_user, self.root = server_directory("threadstore-autofailover-")
        root = str(self.root)
        self.env = [
            "env", f"PATH={self.binaries}:/usr/bin:/bin", f"XDG_CONFIG_HOME={root}/config",
            f"XDG_DATA_HOME={root}/data", f"XDG_RUNTIME_DIR={root}/run", f"PG_REGRESS_SOCK_DIR={root}",
            f"PGHOST={root}",
        ]  # fmt: skip
        self.ports = {name: free_port() for name in ("monitor", "node1", "node2")}
        self.keepers: dict[str, subprocess.Popen[bytes]] = {}
        self.monitor = f"postgres://autoctl_node@127.0.0.1:{self.ports['monitor']}/pg_auto_failover"

    def _command(self, *args: str) -> list[str]:
        return [*self.as_user, *self.env, str(self.autoctl), *args]

    def _keeper(self, name: str, *args: str) -> None:
        log = (self.root / f"{name}.log").open("wb")
        self.keepers[name] = subprocess.Popen(
            self._command(*args), stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )

    def sql(self, port: int, query: str, database: str = "postgres") -> str:
        done = subprocess.run(
            [*self.as_user, str(self.binaries / "psql"), "-h", "127.0.0.1", "-p", str(port), "-U", "postgres",
             "-d", database, "-tAc", query],
            capture_output=True, timeout=30, check=True,
        )  # fmt: skip
        return done.stdout.decode().strip()

    def state(self) -> dict[str, tuple[str, str]]:
        """name -> (reported state, assigned state), as the monitor shows them."""
        done = subprocess.run(
            self._command("show", "state", "--pgdata", str(self.root / "monitor")),
            capture_output=True,
            timeout=30,
        )
        cells = [[cell.strip() for cell in line.split("|")] for line in done.stdout.decode().splitlines()]
        return {row[0]: (row[-2], row[-1]) for row in cells if len(row) > 2 and row[0].startswith("node")}

    def start(self) -> None:
        common = ["--hostname", "127.0.0.1", "--listen", "127.0.0.1", "--auth", "trust", "--no-ssl"]
        subprocess.run(
            self._command("create", "monitor", "--pgdata", str(self.root / "monitor"),
                          "--pgport", str(self.ports["monitor"]), *common),
            capture_output=True, timeout=120, check=True,
        )  # fmt: skip
        self._keeper("monitor", "run", "--pgdata", str(self.root / "monitor"))
        deadline = time.monotonic() + 60
        while True:
            try:
                for key, value in _TUNING.items():
                    self.sql(self.ports["monitor"], f"ALTER SYSTEM SET {key} = {value}", "pg_auto_failover")
                self.sql(self.ports["monitor"], "SELECT pg_reload_conf()", "pg_auto_failover")
                break
            except subprocess.CalledProcessError:
                assert time.monotonic() < deadline, "the monitor did not start"
                time.sleep(0.5)
        for name, wanted in (
            ("node1", {"node1": "single"}),
            ("node2", {"node1": "primary", "node2": "secondary"}),
        ):
            self._keeper(
                name, "create", "postgres", "--pgdata", str(self.root / name),
                "--pgport", str(self.ports[name]), "--name", name, "--monitor", self.monitor,
                "--dbname", "postgres", "--run", *common,
            )  # fmt: skip
            deadline = time.monotonic() + 90
            while self.state() != {node: (state, state) for node, state in wanted.items()}:
                assert time.monotonic() < deadline, f"not {wanted}: {self.state()}"
                time.sleep(0.5)
        deadline = time.monotonic() + 60
        while "ANY 1" not in self.sql(self.ports["node1"], "SHOW synchronous_standby_names"):
            assert time.monotonic() < deadline, "the primary did not turn synchronous"
            time.sleep(0.5)

    def url(self) -> str:
        return (
            f"postgresql://postgres@127.0.0.1:{self.ports['node1']},127.0.0.1:{self.ports['node2']}"
            "/postgres?target_session_attrs=read-write"
        )

    def kill_node1(self) -> None:
        """kill -9 of node1's keeper (its process group) and of its postmaster."""
        os.killpg(self.keepers["node1"].pid, signal.SIGKILL)
        pid = int((self.root / "node1" / "postmaster.pid").read_text().split()[0])
        os.kill(pid, signal.SIGKILL)

    def close(self) -> None:
        for keeper in self.keepers.values():
            if keeper.poll() is None:
                os.killpg(keeper.pid, signal.SIGTERM)
        for keeper in self.keepers.values():
            try:
                keeper.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(keeper.pid, signal.SIGKILL)
                keeper.wait(timeout=10)
        for name in ("node2", "node1", "monitor"):
            if (self.root / name / "postmaster.pid").exists():
                subprocess.run(
                    [*self.as_user, str(self.binaries / "pg_ctl"), "-D", str(self.root / name),
                     "-m", "immediate", "-w", "-t", "60", "stop"],
                    capture_output=True, timeout=90,
                )  # fmt: skip
        shutil.rmtree(self.root, ignore_errors=True)


@pytest.fixture
def formation() -> Iterator[Formation]:
    servers = Formation()
    try:
        servers.start()
        yield servers
    finally:
        servers.close()


def conversation(thread_id: str) -> Thread:
    thread = Thread(id=thread_id)
    for index in range(2):
        thread.add_message(Message(role="user", content=f"message {index}", id=f"{thread_id}-{index}"))
    return thread


async def test_an_automatic_failover_loses_no_acknowledged_save(formation: Formation) -> None:
    acknowledged: list[str] = []
    failed = 0
    async with await ThreadStore.create(
        formation.url(), pool_size=2, connect_timeout=2, liveness_interval=1, pool_timeout=5
    ) as store:

        async def loop(count: int) -> None:
            nonlocal failed
            index = len(acknowledged)
            while len(acknowledged) < count:
                try:
                    await store.save(conversation(f"a{index}"))
                except ThreadStoreError:
                    failed += 1  # unavailable or in doubt: the same thread is saved again
                    await asyncio.sleep(0.1)
                    continue
                acknowledged.append(f"a{index}")
                index += 1

        async with asyncio.timeout(120):
            await loop(100)
            writing = asyncio.ensure_future(loop(300))
            await asyncio.sleep(0.2)
            formation.kill_node1()
            killed = time.monotonic()
            await writing
            # Saves past the kill, however fast the first 300 went (on a fast machine they could
            # all land before it): these reach the new primary only after the failover.
            await loop(len(acknowledged) + 100)
            resumed = time.monotonic() - killed
    assert (
        formation.sql(
            formation.ports["node2"], "SELECT CASE WHEN pg_is_in_recovery() THEN 'standby' ELSE 'primary' END"
        )
        == "primary"
    )
    async with await ThreadStore.create(
        f"postgresql://postgres@127.0.0.1:{formation.ports['node2']}/postgres"
    ) as new_primary:
        missing = [t for t in acknowledged if await new_primary.get(t) is None]
    assert missing == [], missing
    print(
        f"pg_auto_failover: saves resumed {resumed:.1f} s after kill -9, "
        f"{len(acknowledged)} acknowledged, {failed} failed saves retried"
    )
