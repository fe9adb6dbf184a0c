"""The PostgreSQL store: the same noun parts and SQL as SQLite's, over a pool.

Any number of daemons may share one database, so nothing here relies on the
one-writer serialization SQLite gives: rows a transaction changes are locked
(`SELECT ... FOR UPDATE`, in id order, so two claimers never take the same
post and never deadlock), and a claim locks the holds table against new
declarations until it commits. Nothing relies on session state either, so
the store works behind PgBouncer in transaction mode: no prepared statements,
no session advisory locks, settings only with `SET LOCAL` inside a
transaction. Every statement outside a transaction runs on its own (autocommit).

The noun parts write SQL with `?` placeholders; `translate` turns it into
PostgreSQL's (see `_REWRITES`).
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, NoReturn, Self

import psycopg
import structlog
from psycopg import errors
from psycopg.conninfo import conninfo_to_dict
from psycopg_pool import ConnectionPool

from switchboard.store.core import (
    BUSY_TIMEOUT_MS,
    Connection,
    Rows,
    StoreError,
    StoreUnavailable,
)
from switchboard.store.migrations import MIGRATIONS, for_backend, statements
from switchboard.store.pgdialect import Inserts, PostgresConnection
from switchboard.store.pglease import PostgresLeadership

log = structlog.get_logger("store")

# Any constant: migrations take it for their transaction (never a session lock).
_MIGRATION_LOCK = 0x73776264
# A daemon frozen (SIGSTOP, a stalled VM) inside a transaction must not hold its
# row locks, and the lease row, forever: the server ends such a transaction
# (idle between two statements for longer than any of ours ever is) and the
# pool replaces the connection. The daemons' leases pass meanwhile.
IDLE_IN_TRANSACTION = "5s"


def _begin(durable: bool, wait_ms: int) -> str:
    begin = (f"BEGIN; SET LOCAL lock_timeout = '{int(wait_ms)}ms'; "
             f"SET LOCAL idle_in_transaction_session_timeout = '{IDLE_IN_TRANSACTION}'")
    # Only for records whose loss on a crash of the server is safe (see StoreCore.transaction).
    return begin if durable else begin + "; SET LOCAL synchronous_commit = off"


class _Statements:
    """The store's `_db`: inside a transaction, its connection (this thread's);
    outside, each statement on a connection of the pool, on its own."""

    def __init__(self, store: PostgresStore) -> None:
        self._store = store

    def execute(self, sql: str, parameters: Sequence[Any] = (), /) -> Rows:
        current = self._store._current()
        if current is not None:
            return current.execute(sql, parameters)
        with self._store._reading() as conn:
            return conn.execute(sql, parameters)

    def executemany(self, sql: str, parameters: Iterable[Sequence[Any]], /) -> Rows:
        current = self._store._current()
        if current is not None:
            return current.executemany(sql, parameters)
        with self._store.transaction() as conn:
            return conn.executemany(sql, parameters)


class PostgresStore(PostgresLeadership):
    """All durable state of any number of daemons in one PostgreSQL database.

    Opened with a libpq connection string (`host=... dbname=...` or a URL);
    one transaction per call, on a connection of its pool."""

    _FOR_UPDATE = " FOR UPDATE"
    _FOR_SHARE = " FOR KEY SHARE"
    # Writes run side by side, each on a connection of the pool: the server's row
    # locks order them, as they order two daemons' (a declaration never queues
    # behind a runbook's holding statements).
    WRITERS = 4

    def __init__(self, pool: ConnectionPool[psycopg.Connection[tuple[Any, ...]]],
                 where: str) -> None:
        self._local = threading.local()  # before the core's counters, which live in it
        super().__init__()
        self._pool = pool
        self.where = where
        self._db = _Statements(self)
        self._inserts = Inserts({})  # until the schema is read, after the migrations

    @property
    def _delta(self) -> Counter[str]:
        """The moves of this thread's transaction: one per writer thread."""
        delta: Counter[str] | None = getattr(self._local, "delta", None)
        if delta is None:
            delta = self._local.delta = Counter()
        return delta

    @_delta.setter
    def _delta(self, value: Counter[str]) -> None:
        self._local.delta = value

    # -- lifecycle ---------------------------------------------------------

    @classmethod
    def open(cls, dsn: str, *, max_connections: int = WRITERS + 3,
             timeout: float = 5.0) -> Self:
        """Connect, migrate (one daemon at a time) and return the store; StoreError
        if the database cannot be reached or has a newer schema."""
        where = _where(dsn)
        pool: ConnectionPool[psycopg.Connection[tuple[Any, ...]]] = ConnectionPool(
            dsn, min_size=1, max_size=max_connections, timeout=timeout, open=False,
            check=ConnectionPool.check_connection, name="switchboard-store",
            kwargs={"autocommit": True, "prepare_threshold": None})
        try:
            pool.open(wait=True, timeout=timeout)
        except psycopg.Error as exc:
            pool.close()
            raise StoreError(f"cannot open store {where}: {exc}") from exc
        store = cls(pool, where)
        try:
            store._migrate()
            store._inserts = Inserts(store._column_types())
        except (psycopg.Error, StoreUnavailable) as exc:
            pool.close()
            raise StoreError(f"cannot open store {where}: {exc}") from exc
        except BaseException:
            pool.close()
            raise
        return store

    def close(self) -> None:
        self._pool.close()

    def start_checkpoints(self, every: float = 0.5) -> None:
        """Nothing to do: PostgreSQL checkpoints by itself."""

    def stop_checkpoints(self) -> None:
        """Nothing to do: PostgreSQL checkpoints by itself."""

    def integrity_ok(self) -> bool:
        """PostgreSQL checks its pages itself (amcheck is the operator's deeper look):
        the store is sound when its schema is the one this switchboard knows."""
        return self.schema_version() == len(MIGRATIONS)

    def schema_version(self) -> int:
        row = self._db.execute("SELECT version FROM schema_version").fetchone()
        return 0 if row is None else int(row[0])

    def _migrate(self) -> None:
        """One version per transaction, each under a transaction-level lock, so two
        daemons starting together apply each version once."""
        while True:
            with self.transaction() as db:
                db.execute("SELECT pg_advisory_xact_lock(?)", (_MIGRATION_LOCK,))
                # No DDL on a database already up to date: the daemons' role may have
                # been left without CREATE once an owner migrated it.
                if db.execute("SELECT to_regclass('schema_version')").fetchone()[0] is None:
                    db.execute("CREATE TABLE schema_version (version BIGINT NOT NULL)")
                row = db.execute("SELECT version FROM schema_version").fetchone()
                if row is None:
                    db.execute("INSERT INTO schema_version (version) VALUES (0)")
                version = 0 if row is None else int(row[0])
                if version > len(MIGRATIONS):
                    raise StoreError(f"{self.where} has schema version {version}, newer than "
                                     f"this switchboard knows ({len(MIGRATIONS)}): upgrade "
                                     "switchboard")
                if version == len(MIGRATIONS):
                    return
                conn = self._connection()
                for statement in statements(for_backend(MIGRATIONS[version], "postgresql")):
                    conn.execute(statement.encode())  # as written: no placeholders in DDL
                db.execute("UPDATE schema_version SET version = ?", (version + 1,))

    def _column_types(self) -> dict[tuple[str, str], str]:
        # The tables this connection's unqualified names find (the search path's).
        rows = self._db.execute(
            "SELECT c.relname, a.attname, format_type(a.atttypid, NULL) FROM pg_attribute a "
            "JOIN pg_class c ON c.oid = a.attrelid WHERE c.relkind = 'r' AND a.attnum > 0 "
            "AND NOT a.attisdropped AND pg_table_is_visible(c.oid)").fetchall()
        return {(table, column): kind for table, column, kind in rows}

    def probe(self) -> None:
        """A round trip to the server, and whether it takes writes (a standby promoted
        late, a failover in progress, leave it read-only)."""
        self.check_file()
        with self._reading() as db:
            row = db.execute("SHOW transaction_read_only").fetchone()
        if row is not None and row[0] == "on":
            raise StoreUnavailable("read_only", f"PostgreSQL {self.where} is read-only (a "
                                                "failover in progress?); nothing is recorded "
                                                "until it takes writes again")

    def check_file(self) -> None:
        """Nothing fails for good here: an unreachable or read-only server is
        reported by each call, and passes when the server is back."""
        if self.failure is not None:
            raise self.failure

    # -- transactions ------------------------------------------------------

    def _current(self) -> PostgresConnection | None:
        current: PostgresConnection | None = getattr(self._local, "conn", None)
        return current

    def _connection(self) -> psycopg.Connection[tuple[Any, ...]]:
        current = self._current()
        assert current is not None, "only inside a transaction"
        return current.conn

    @contextmanager
    def _borrowed(self) -> Iterator[psycopg.Connection[tuple[Any, ...]]]:
        try:
            conn = self._pool.getconn()
        except psycopg.Error as exc:
            self._raise_as_unavailable(exc)
        try:
            yield conn
        finally:
            self._pool.putconn(conn)

    @contextmanager
    def transaction(self, durable: bool = True,
                    wait_ms: int = BUSY_TIMEOUT_MS) -> Iterator[Connection]:
        """One atomic write (READ COMMITTED, with the row locks the noun parts take).

        Raises StoreUnavailable when nothing was recorded: locks held too long
        (busy), the server unreachable or read-only, its disk full. A connection
        lost during COMMIT is reported as unreachable with an unknown outcome."""
        self.check_file()
        if self._current() is not None:
            raise RuntimeError("a store transaction is already open on this thread")
        with self._borrowed() as conn:
            self._local.conn = PostgresConnection(conn, self._inserts)
            try:
                yield from self._atomically(conn, _begin(durable, wait_ms))
            finally:
                self._local.conn = None
        self._delta.clear()  # the posts are counted in the database (count_by_state)

    def _atomically(self, conn: psycopg.Connection[tuple[Any, ...]],
                    begin: str) -> Iterator[Connection]:
        try:
            conn.execute(begin)
            yield self._db
        except BaseException as exc:
            self._delta.clear()
            if not conn.closed:
                try:
                    conn.execute("ROLLBACK")
                except psycopg.Error:
                    conn.close()  # the pool replaces it
            if isinstance(exc, psycopg.Error):
                self._raise_as_unavailable(exc)
            raise
        try:
            conn.execute("COMMIT")
        except psycopg.Error as exc:
            self._delta.clear()
            self._raise_as_unavailable(exc, at_commit=True)

    @contextmanager
    def _reading(self) -> Iterator[Connection]:
        with self._borrowed() as conn:
            try:
                yield PostgresConnection(conn, self._inserts)
            except psycopg.Error as exc:
                self._raise_as_unavailable(exc)

    def _raise_as_unavailable(self, exc: psycopg.Error, at_commit: bool = False) -> NoReturn:
        """StoreUnavailable for what passes (the server, its locks, its disk); any
        other error (a broken uniqueness rule, say) as it is."""
        mapped = self._unavailable(exc, at_commit)
        if mapped is exc:
            raise exc
        raise mapped from exc

    def _unavailable(self, exc: psycopg.Error, at_commit: bool = False) -> Exception:
        if isinstance(exc, errors.LockNotAvailable | errors.SerializationFailure
                      | errors.DeadlockDetected | errors.QueryCanceled):
            return StoreUnavailable("busy", "the store is busy: another daemon holds the rows "
                                            "this write needs; nothing was recorded, try again")
        if isinstance(exc, errors.IdleInTransactionSessionTimeout):
            return StoreUnavailable("unreachable", f"PostgreSQL {self.where} ended a transaction "
                                                   "this daemon left idle (was it frozen?); "
                                                   "nothing of it was recorded")
        if isinstance(exc, errors.ReadOnlySqlTransaction):
            return StoreUnavailable("read_only", f"PostgreSQL {self.where} is read-only (a "
                                                 "failover in progress?); nothing was recorded")
        if isinstance(exc, errors.DiskFull):
            return StoreUnavailable("full", f"the disk of PostgreSQL {self.where} is full; "
                                            "nothing was recorded")
        if isinstance(exc, psycopg.OperationalError):
            outcome = ("the connection was lost during the commit: the write may or may not "
                       "be recorded, a repeat with the same Idempotency-Key is safe"
                       if at_commit else "nothing was recorded, try again")
            return StoreUnavailable("unreachable", f"PostgreSQL {self.where} cannot be "
                                                   f"reached ({_first_line(exc)}); {outcome}")
        return exc

    # -- the dialect's differences ------------------------------------------

    def _new_post_ids(self, count: int) -> list[int]:
        # From the column's own sequence: concurrent writers never share an id.
        rows = self._db.execute("SELECT nextval(pg_get_serial_sequence('posts', 'id')) "
                                "FROM generate_series(1, ?)", (count,)).fetchall()
        return sorted(int(r[0]) for r in rows)

    def _write_one(self, sql: str, parameters: Sequence[Any]) -> None:
        # Committed by itself, in one round trip instead of three: no lock is waited
        # for, so the transaction's lock and idle timeouts have nothing to guard.
        self.check_file()
        with self._borrowed() as conn:
            try:
                PostgresConnection(conn, self._inserts).execute(sql, parameters)
            except psycopg.Error as exc:
                self._raise_as_unavailable(exc, at_commit=True)

    def _duplicate(self, exc: Exception) -> bool:
        return isinstance(exc, errors.UniqueViolation)

    def _lock_holds(self) -> None:
        # SHARE: claims run side by side, but a declaration (or any other writer of
        # the holds) waits for them, and they for it: a hold committed before a
        # claim commits is one that claim has read.
        self._db.execute("LOCK TABLE channel_control IN SHARE MODE")

    def _lock_imports(self) -> None:
        # Two imports of one file at once: the second waits, then finds the keys.
        self._db.execute("LOCK TABLE post_keys IN SHARE ROW EXCLUSIVE MODE")

    def count_by_state(self) -> dict[str, int]:
        """Counted in the database: other daemons change the posts too."""
        return {state: int(n) for state, n in self._db.execute(
            "SELECT state, COUNT(*) FROM posts GROUP BY state") if n}


def _where(dsn: str) -> str:
    """The server and database a DSN names, for messages (never its password)."""
    try:
        parts = conninfo_to_dict(dsn)
    except psycopg.ProgrammingError as exc:
        raise StoreError(f"the PostgreSQL connection string is not valid: {exc}") from exc
    host = parts.get("host") or "localhost"
    return f"{host}:{parts.get('port') or 5432}/{parts.get('dbname') or parts.get('user') or ''}"


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
