"""The store contract's fixtures: every test runs once per backend.

`make_backend` opens one more backend on the test's database (a second
daemon sharing it). `make_store` gives what the tests call through the
store's public methods, `store` the first of those. Pointing the suite at
another kind of store (the async facade behind a blocking proxy, say) means
changing `make_store` only; the few tests that hold a transaction open in
"another daemon" keep using `make_backend` for it.
"""

from __future__ import annotations

import asyncio
import inspect
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict

from switchboard.store import SqliteStore, Store
from switchboard.store.postgres import PostgresStore
from tests.postgres import pgbouncer, postgres_dsn, postgres_server

__all__ = ["pgbouncer", "postgres_dsn", "postgres_server"]

Backend = SqliteStore | PostgresStore
MakeStore = Callable[[], Backend]
# What a write that breaks a uniqueness rule raises, on either backend.
DUPLICATE = (sqlite3.IntegrityError, psycopg.errors.UniqueViolation)


# PostgreSQL behind PgBouncer in transaction mode: no session state relied on.
@pytest.fixture(params=["sqlite", "postgresql", "postgresql+pgbouncer"])
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def make_backend(backend: str, request: pytest.FixtureRequest,
                 tmp_path: Path) -> Iterator[MakeStore]:
    opened: list[Backend] = []
    if backend == "sqlite":
        def open_one() -> Backend:
            return SqliteStore.open(tmp_path / "state" / "switchboard.db")
    else:
        dsn = request.getfixturevalue("postgres_dsn")
        if backend == "postgresql+pgbouncer":
            dsn = request.getfixturevalue("pgbouncer").dsn(conninfo_to_dict(dsn)["dbname"])

        def open_one() -> Backend:
            return PostgresStore.open(dsn)

    def make() -> Backend:
        opened.append(open_one())
        return opened[-1]

    yield make
    for store in opened:
        store.close()


class Blocking:
    """The async Store port as a plain caller sees it: each call runs on a loop of
    the test's own and is waited for; threads may call at the same time (two
    daemons' claims), exactly as two event loops would."""

    def __init__(self, store: Store, loop: asyncio.AbstractEventLoop) -> None:
        self._store, self._loop = store, loop

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._store, name)
        if not inspect.iscoroutinefunction(attr):
            return attr

        def call(*args: Any, **kwargs: Any) -> Any:
            return asyncio.run_coroutine_threadsafe(attr(*args, **kwargs), self._loop).result()
        return call

    def close(self) -> None:
        asyncio.run_coroutine_threadsafe(self._store.close(), self._loop).result()


@pytest.fixture
def loop() -> Iterator[asyncio.AbstractEventLoop]:
    running = asyncio.new_event_loop()
    thread = threading.Thread(target=running.run_forever, daemon=True)
    thread.start()
    yield running
    running.call_soon_threadsafe(running.stop)
    thread.join()
    running.close()


@pytest.fixture
def make_store(make_backend: MakeStore,
               loop: asyncio.AbstractEventLoop) -> Iterator[MakeStore]:
    """The store through its async port (what the daemon calls), over a backend."""
    ports: list[Blocking] = []

    def make() -> Any:
        backend = make_backend()
        ports.append(Blocking(asyncio.run_coroutine_threadsafe(Store.over(backend),
                                                               loop).result(), loop))
        return ports[-1]

    yield make
    for port in ports:  # its threads, and its backend (closed again below: harmless)
        port.close()


@pytest.fixture
def store(make_store: MakeStore) -> Backend:
    return make_store()


def wait_until_waiting_for_a_lock(store: Backend, deadline: float = 5.0) -> None:
    """Until some transaction waits for a lock another one holds. SQLite cannot
    say, so there a short pause stands in (the test holds either way; it only
    exercises less of the race if the waiter starts late)."""
    if not isinstance(store, PostgresStore):
        time.sleep(0.05)
        return
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        with store._reading() as db:
            if db.execute("SELECT COUNT(*) FROM pg_locks WHERE NOT granted").fetchone()[0]:
                return
        time.sleep(0.005)
    raise AssertionError("no transaction ever waited for the lock")
