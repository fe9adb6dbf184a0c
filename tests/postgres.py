"""A real PostgreSQL for tests: a cluster of its own, in a temporary directory.

Debian's `postgresql` package provides the binaries (and starts a cluster of
its own, on port 5432, which these tests never touch): each test session runs
`initdb` in a fresh directory, starts the server on a free port of 127.0.0.1
with its unix socket in that directory, and stops it at the end. `initdb`
refuses to run as root, so under root the cluster belongs to the `postgres`
user. Each test gets a database of its own, copied from a migrated template.

Durability is off (`fsync=off`): these tests are about behaviour, not power cuts.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

IN_CI = os.environ.get("CI", "").lower() == "true"
TEMPLATE = "switchboard_template"
_BINARIES = ("initdb", "pg_ctl", "postgres")


def find_bindir() -> Path | None:
    """The newest Debian PostgreSQL with initdb, pg_ctl and postgres, if any."""
    found = [Path(p) for p in Path("/usr/lib/postgresql").glob("*/bin")
             if all((Path(p) / name).is_file() for name in _BINARIES)]

    def version(path: Path) -> tuple[int, ...]:
        return tuple(int(n) for n in re.findall(r"\d+", path.parent.name))

    return max(found, key=version, default=None)


def require_bindir() -> Path:
    """PostgreSQL's binaries; a test without them is skipped, or fails in CI."""
    bindir = find_bindir()
    if bindir is None:
        message = "PostgreSQL is not installed (/usr/lib/postgresql/*/bin)"
        if IN_CI:
            pytest.fail(f"{message}: CI must install it (see .ci/run)")
        pytest.skip(message)
    return bindir


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class PostgresServer:
    """One throwaway cluster: started by `start`, gone after `stop`."""

    def __init__(self, bindir: Path, root: Path) -> None:
        self.bindir = bindir
        self.root = root
        self.data = root / "data"
        self.port = 0
        self._names = itertools.count(1)
        # initdb and the server refuse root: run them as `postgres`, who must own root.
        self._as: list[str] = []
        if os.geteuid() == 0:
            user = pwd.getpwnam("postgres")
            os.chown(root, user.pw_uid, user.pw_gid)
            self._as = ["runuser", "-u", "postgres", "--"]

    def _run(self, *args: str) -> None:
        done = subprocess.run([*self._as, *args], capture_output=True, text=True, check=False)
        if done.returncode != 0:
            log = self.root / "server.log"
            tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
            raise RuntimeError(f"{' '.join(args[:2])} failed ({done.returncode}): "
                               f"{done.stdout}{done.stderr}{tail}")

    def init(self) -> None:
        self._run(str(self.bindir / "initdb"), "-D", str(self.data), "-U", "postgres",
                  "-A", "trust", "-E", "UTF8", "--locale=C", "--no-sync")

    def start(self, same_port: bool = False) -> None:
        """Start on a free port (another free one if that one was taken meanwhile),
        or, for a restart, on the port it had."""
        for attempt in range(3):
            if not same_port:
                self.port = free_port()
            options = (f"-c listen_addresses=127.0.0.1 -p {self.port} "
                       f"-c unix_socket_directories={self.root} -c fsync=off "
                       "-c full_page_writes=off -c synchronous_commit=off "
                       "-c max_connections=200")
            try:
                self._run(str(self.bindir / "pg_ctl"), "-D", str(self.data), "-l",
                          str(self.root / "server.log"), "-w", "-t", "30", "-o", options,
                          "start")
                return
            except RuntimeError:
                if attempt == 2:
                    raise

    def stop(self, mode: str = "fast") -> None:
        if (self.data / "postmaster.pid").exists():
            self._run(str(self.bindir / "pg_ctl"), "-D", str(self.data), "-m", mode, "-w",
                      "stop")

    def dsn(self, dbname: str = "postgres") -> str:
        return f"host=127.0.0.1 port={self.port} user=postgres dbname={dbname}"

    def admin(self, sql: str) -> None:
        """One statement outside a transaction (CREATE/DROP DATABASE need that)."""
        with psycopg.connect(self.dsn(), autocommit=True) as conn:
            conn.execute(sql.encode())

    def create_database(self, template: str | None = None) -> str:
        name = f"test_{os.getpid()}_{next(self._names)}"
        self.admin(f"CREATE DATABASE {name}" + (f" TEMPLATE {template}" if template else ""))
        return name

    def drop_database(self, name: str) -> None:
        self.admin(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


class PgBouncer:
    """PgBouncer in transaction mode in front of a test cluster: each transaction
    may run on another server connection, so nothing may rely on a session."""

    def __init__(self, server: PostgresServer, pool_size: int = 3) -> None:
        self.server = server
        self.port = free_port()
        self._ini = server.root / "pgbouncer.ini"
        self._pidfile = server.root / "pgbouncer.pid"
        (server.root / "userlist.txt").write_text('"postgres" ""\n')
        self._ini.write_text(
            f"[databases]\n* = host=127.0.0.1 port={server.port}\n"
            f"[pgbouncer]\nlisten_addr = 127.0.0.1\nlisten_port = {self.port}\n"
            f"unix_socket_dir = {server.root}\nauth_type = trust\n"
            f"auth_file = {server.root / 'userlist.txt'}\npool_mode = transaction\n"
            f"default_pool_size = {pool_size}\nmax_client_conn = 200\n"
            f"logfile = {server.root / 'pgbouncer.log'}\npidfile = {self._pidfile}\n")

    def start(self, binary: str) -> None:
        self.server._run(binary, "-d", str(self._ini))

    def stop(self) -> None:
        if self._pidfile.exists():
            with contextlib.suppress(ProcessLookupError, ValueError):
                os.kill(int(self._pidfile.read_text().strip()), signal.SIGTERM)

    def dsn(self, dbname: str) -> str:
        return f"host=127.0.0.1 port={self.port} user=postgres dbname={dbname}"


@contextlib.contextmanager
def running_postgres() -> Iterator[PostgresServer]:
    bindir = require_bindir()
    if os.geteuid() == 0 and shutil.which("runuser") is None:
        pytest.fail("running as root needs runuser to start PostgreSQL as `postgres`")
    root = Path(tempfile.mkdtemp(prefix="switchboard-pg-"))
    server = PostgresServer(bindir, root)
    try:
        server.init()
        server.start()
        yield server
    finally:
        with contextlib.suppress(RuntimeError):
            server.stop("immediate")
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="module")
def own_postgres_server() -> Iterator[PostgresServer]:
    """A cluster for one module's tests that stop, restart or reconfigure it."""
    with running_postgres() as server:
        yield server


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """The session's cluster, with a template database the store has migrated."""
    from switchboard.store.postgres import PostgresStore

    with running_postgres() as server:
        server.admin(f"CREATE DATABASE {TEMPLATE}")
        PostgresStore.open(server.dsn(TEMPLATE)).close()
        yield server


@pytest.fixture(scope="session")
def pgbouncer(postgres_server: PostgresServer) -> Iterator[PgBouncer]:
    """PgBouncer (transaction pooling) in front of the session's cluster."""
    binary = shutil.which("pgbouncer") or "/usr/sbin/pgbouncer"
    if not Path(binary).is_file():
        if IN_CI:
            pytest.fail("pgbouncer is not installed: CI must install it (see .ci/run)")
        pytest.skip("pgbouncer is not installed")
    bouncer = PgBouncer(postgres_server)
    bouncer.start(binary)
    try:
        yield bouncer
    finally:
        bouncer.stop()


@pytest.fixture
def postgres_dsn(postgres_server: PostgresServer) -> Iterator[str]:
    """A migrated database of this test's own (a copy of the template: ~50 ms)."""
    name = postgres_server.create_database(TEMPLATE)
    yield postgres_server.dsn(name)
    postgres_server.drop_database(name)
