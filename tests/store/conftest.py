"""The store contract's fixtures: every test runs once per backend.

`make_backend` opens one more backend on the test's database (a second
daemon sharing it). `make_store` gives what the tests call through the
store's public methods, `store` the first of those. Pointing the suite at
another kind of store (the async facade behind a blocking proxy, say) means
changing `make_store` only; the few tests that hold a transaction open in
"another daemon" keep using `make_backend` for it.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict

from switchboard.store import Store
from switchboard.store.postgres import PostgresStore
from tests.postgres import pgbouncer, postgres_dsn, postgres_server

__all__ = ["pgbouncer", "postgres_dsn", "postgres_server"]

Backend = Store | PostgresStore
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
            return Store.open(tmp_path / "state" / "switchboard.db")
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


@pytest.fixture
def make_store(make_backend: MakeStore) -> MakeStore:
    return make_backend


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
