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

import functools
import re
import threading
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, NoReturn, Self

import psycopg
import structlog
from psycopg import errors
from psycopg.conninfo import conninfo_to_dict
from psycopg_pool import ConnectionPool

from switchboard.store.channels import ChannelRecords
from switchboard.store.core import (
    BUSY_TIMEOUT_MS,
    Connection,
    Rows,
    StoreError,
    StoreUnavailable,
)
from switchboard.store.lease import Fence, Lease
from switchboard.store.migrations import MIGRATIONS, for_backend, statements

log = structlog.get_logger("store")

# The SQLite-only spellings the noun parts use, and PostgreSQL's for them.
_REWRITES = (
    # A JSON array's elements as rows (one declaration holds thousands of channels).
    (re.compile(r"json_each\(\?\)"), "json_array_elements_text(?::json)"),
    # Index hints: PostgreSQL's planner has statistics and needs none.
    (re.compile(r"\s*INDEXED BY \w+"), ""),
    # `+column` keeps SQLite off an index; PostgreSQL has no unary plus on text.
    (re.compile(r"(?<![\w)])\+(?=[A-Za-z_])"), ""),
    (re.compile(r"%"), "%%"),
    (re.compile(r"\?"), "%s"),
)
# Any constant: migrations take it for their transaction (never a session lock).
_MIGRATION_LOCK = 0x73776264
# A daemon frozen (SIGSTOP, a stalled VM) inside a transaction must not hold its
# row locks, and the lease row, forever: the server ends such a transaction
# (idle between two statements for longer than any of ours ever is) and the
# pool replaces the connection. The daemons' leases pass meanwhile.
IDLE_IN_TRANSACTION = "5s"
_BEGIN = (f"BEGIN; SET LOCAL lock_timeout = '{BUSY_TIMEOUT_MS}ms'; "
          f"SET LOCAL idle_in_transaction_session_timeout = '{IDLE_IN_TRANSACTION}'")
# Only for records whose loss on a crash of the server is safe (see StoreCore.transaction).
_BEGIN_NOT_DURABLE = _BEGIN + "; SET LOCAL synchronous_commit = off"


@functools.lru_cache(maxsize=1024)
def translate(sql: str) -> str:
    """The noun parts' SQL (SQLite's dialect, `?` placeholders) as PostgreSQL's."""
    for pattern, replacement in _REWRITES:
        sql = pattern.sub(replacement, sql)
    return sql


class _Rows:
    """A statement's rows, fetched at once: the connection goes back to the pool."""

    def __init__(self, rows: list[Any], rowcount: int) -> None:
        self._rows = rows
        self.rowcount = rowcount

    def fetchone(self) -> Any:
        return self._rows[0] if self._rows else None

    def fetchall(self) -> list[Any]:
        return list(self._rows)

    def __iter__(self) -> Iterator[Any]:
        return iter(self._rows)


def _params(values: Sequence[Any]) -> list[Any]:
    # SQLite keeps booleans as 0/1 in INTEGER columns; so do we.
    return [int(v) if isinstance(v, bool) else v for v in values]


class PostgresConnection:
    """One psycopg connection, spoken to in the noun parts' dialect."""

    def __init__(self, conn: psycopg.Connection[tuple[Any, ...]], inserts: Inserts) -> None:
        self.conn, self.inserts = conn, inserts

    def execute(self, sql: str, parameters: Sequence[Any] = (), /) -> _Rows:
        cur = self.conn.execute(translate(sql).encode(), _params(parameters))
        return _Rows(cur.fetchall() if cur.description else [], cur.rowcount)

    def executemany(self, sql: str, parameters: Iterable[Sequence[Any]], /) -> _Rows:
        batch = [_params(p) for p in parameters]
        if not batch:
            return _Rows([], 0)
        plan = self.inserts.plan(sql)
        if plan is not None:
            return _Rows([], self.conn.execute(plan.sql.encode(), plan.arrays(batch)).rowcount)
        # psycopg pipelines the rest (the UPDATEs of a run of sends or of a held-post
        # train, whose transactions lock only posts). Never a claim's: a daemon frozen
        # (SIGSTOP) inside a pipeline has not sent its Sync, so the server does not
        # count it idle in its transaction and never ends it, and the claim's locks
        # on the lease and the holds would keep every standby from taking over.
        with self.conn.cursor() as cur:
            cur.executemany(translate(sql).encode(), batch)
            return _Rows([], cur.rowcount)


# How a column's values are given to an array of its type.
_CASTS: dict[str, Callable[[Any], Any]] = {
    "bigint": int, "integer": int, "smallint": int, "double precision": float, "real": float,
    "text": str}
_INSERT = re.compile(r"\s*INSERT INTO (\w+) \(([^()]*)\)\s*VALUES\s*\(([^()]*)\)\s*",
                     re.DOTALL)
_LITERAL = re.compile(r"NULL|'[^'%]*'|-?\d+(\.\d+)?")


@dataclass(frozen=True)
class Unnest:
    """A many-row INSERT as ONE statement over an array per parameter: short, so
    psycopg parses it once and the server plans it once however many rows (a
    bulk schedule's 5,000 posts); and one statement, never a pipeline."""

    sql: str
    casts: tuple[Callable[[Any], Any], ...]  # one per `?` of the row, in order

    def arrays(self, batch: list[list[Any]]) -> list[list[Any]]:
        return [[None if row[k] is None else cast(row[k]) for row in batch]
                for k, cast in enumerate(self.casts)]


class Inserts:
    """The noun parts' many-row INSERTs as `Unnest` plans, from the columns' types."""

    def __init__(self, types: dict[tuple[str, str], str]) -> None:
        self._types = types
        self._plans: dict[str, Unnest | None] = {}

    def plan(self, sql: str) -> Unnest | None:
        if sql not in self._plans:
            self._plans[sql] = self._make(sql)
        return self._plans[sql]

    def _make(self, sql: str) -> Unnest | None:
        """None for any other statement (ON CONFLICT, RETURNING, an expression)."""
        match = _INSERT.fullmatch(sql)
        if match is None:
            return None
        table = match.group(1)
        columns = [c.strip() for c in match.group(2).split(",")]
        items = [i.strip() for i in match.group(3).split(",")]
        if len(columns) != len(items):
            return None
        selected: list[str] = []
        arrays: list[str] = []
        casts: list[Callable[[Any], Any]] = []
        for column, item in zip(columns, items, strict=True):
            if item != "?":
                if not _LITERAL.fullmatch(item):
                    return None
                selected.append(item)
                continue
            kind = self._types.get((table, column), "")
            if kind not in _CASTS:
                return None
            selected.append(f"u.v{len(casts)}")
            arrays.append(f"%s::{kind}[]")
            casts.append(_CASTS[kind])
        names = ", ".join(f"v{k}" for k in range(len(casts)))
        return Unnest(f"INSERT INTO {table} ({', '.join(columns)}) SELECT "
                      f"{', '.join(selected)} FROM unnest({', '.join(arrays)}) AS u({names})",
                      tuple(casts))


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


class PostgresStore(ChannelRecords):
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
                db.execute("CREATE TABLE IF NOT EXISTS schema_version (version BIGINT NOT NULL)")
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
        rows = self._db.execute("SELECT table_name, column_name, data_type FROM "
                                "information_schema.columns WHERE table_schema = "
                                "current_schema()").fetchall()
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
    def transaction(self, durable: bool = True) -> Iterator[Connection]:
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
                yield from self._atomically(conn, durable)
            finally:
                self._local.conn = None
        self._delta.clear()  # the posts are counted in the database (count_by_state)

    def _atomically(self, conn: psycopg.Connection[tuple[Any, ...]],
                    durable: bool) -> Iterator[Connection]:
        try:
            conn.execute(_BEGIN if durable else _BEGIN_NOT_DURABLE)
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

    def notify(self, channel: str, payload: str) -> float:
        """NOTIFY the daemons LISTENing on `channel` (delivered once this commits)."""
        row = self._db.execute("SELECT extract(epoch FROM clock_timestamp()) "
                               "FROM pg_notify(?, ?)", (channel, payload)).fetchone()
        return float(row[0])

    def take_lease(self, holder: str, seconds: float) -> Lease:
        try:
            return super().take_lease(holder, seconds)
        except StoreUnavailable as exc:
            if exc.reason != "busy" or not self._end_stale_lockers():
                raise
        return super().take_lease(holder, seconds)

    def _end_stale_lockers(self) -> list[int]:
        """A takeover waits for the transactions that locked the lease row (the
        claims of the leader that read it). One the server never ends, because it
        is not idle but stuck (its daemon frozen while the server writes it an
        answer, say), would keep every standby out for as long as it is frozen:
        once the lease has lapsed, end those that began before it lapsed. Their
        daemon fenced itself before then; nothing of theirs commits."""
        with self.transaction(durable=False) as db:
            lease = self._lease_row("")
            if lease.live:
                return []
            pids = [int(r[0]) for r in db.execute(
                "SELECT DISTINCT l.pid FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid "
                "WHERE l.relation = 'leader_lease'::regclass AND l.granted "
                "AND l.mode IN ('RowShareLock', 'RowExclusiveLock') "
                "AND l.pid <> pg_backend_pid() AND a.xact_start < to_timestamp(?)",
                (lease.expires_at,))]
            for pid in pids:
                db.execute("SELECT pg_terminate_backend(?)", (pid,))
        if pids:
            log.warning("stale_lease_lockers_ended", pids=pids, epoch=lease.epoch,
                        holder=lease.holder)
        return pids

    # The lease's reads and the leader's confirmation, each one statement in one
    # round trip (a standby's caller waits on both).

    def lease(self) -> Lease:
        row = self._db.execute(
            "SELECT holder, epoch, expires_at, renewed_at, holds_seen, "
            "extract(epoch FROM clock_timestamp()) FROM leader_lease "
            "WHERE name = 'leader'").fetchone()
        holder, epoch, expires_at, renewed_at, holds_seen, now = row
        return Lease(holder, int(epoch), float(expires_at), float(renewed_at),
                     float(holds_seen), float(now))

    def see_holds(self, fence: Fence, at: float, notice: tuple[str, str] | None = None) -> bool:
        if notice is None:
            return super().see_holds(fence, at)
        # Committed by itself, so no lock_timeout guards it: NOWAIT instead. The row
        # is locked against it only by a takeover (or a frozen renewal), when
        # confirming is moot; the next reading confirms, or the new leader's.
        return self._db.execute(
            "WITH mine AS (SELECT name FROM leader_lease WHERE name = 'leader' AND holder = ? "
            "AND epoch = ? AND holds_seen < ? FOR NO KEY UPDATE NOWAIT), "
            "seen AS (UPDATE leader_lease l SET holds_seen = ? FROM mine "
            "WHERE l.name = mine.name RETURNING 1) SELECT pg_notify(?, ?) FROM seen",
            (fence.holder, fence.epoch, at, at, *notice)).fetchone() is not None

    def holds_by_incident(self) -> tuple[float, dict[int, float | None]]:
        # One round trip: the statement's start comes before its snapshot, so every
        # hold committed before it is read.
        rows = self._db.execute(
            "SELECT extract(epoch FROM statement_timestamp()), h.incident_id, h.until "
            "FROM (SELECT 1) AS one LEFT JOIN (SELECT incident_id, MAX(until) AS until "
            "FROM channel_control GROUP BY incident_id) AS h ON true").fetchall()
        return float(rows[0][0]), {int(i): u for _, i, u in rows if i is not None}

    def _db_clock(self) -> float:
        # The server's clock, the one every daemon's lease is measured by.
        row = self._db.execute("SELECT extract(epoch FROM clock_timestamp())").fetchone()
        return float(row[0])

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
