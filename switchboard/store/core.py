"""The store's core: what every backend shares (`StoreCore`: the connection the
noun parts write their SQL to, transactions, failures), SQLite's own core
(`SqliteCore`: one connection in WAL mode, its lifecycle) and the state_dir lock.

Every other module talks to a store, never to SQL. The noun parts (posts,
listings, incidents, people) write their SQL once, in the dialect both
backends accept: `?` placeholders, `ON CONFLICT DO NOTHING`, `RETURNING`; the
PostgreSQL backend's connection adapter (store/postgres.py) turns the few
SQLite-only hints left (`INDEXED BY`, `+column`) into PostgreSQL's. SQLite
commits are `synchronous=FULL`: a declaration acknowledged to a caller
survives a power cut, not only a crash of the process.

Times are stored as Unix seconds (REAL, UTC) so that the due-time index is a
plain number comparison; the API layer turns them into RFC 3339.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import secrets
import sqlite3
import threading
from abc import ABC, abstractmethod
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn, Protocol, Self

from switchboard.model import Incident
from switchboard.poststates import ALL_STATES
from switchboard.store.migrations import MIGRATIONS, for_backend, statements

# The states and their legal moves are poststates.py's; every change of
# state below goes through `check_move` (or its creation and outcome kin).
POST_STATES = ALL_STATES

# How long a feed's event ids are remembered (design §7.1: PagerDuty retries
# and replays fall well inside it).
FEED_EVENT_RETENTION = 7 * 86400.0

# Idempotency keys are kept a week: long enough for any caller's retries.
REQUEST_KEY_DAYS = 7
# The loop's connection waits this long for a write lock held by another
# process, then answers "busy": a declaration must never hang for seconds.
BUSY_TIMEOUT_MS = 200
LOCK_NAME = "switchboard.lock"
# The error of an immediate send that a restart caught before it started.
INTERRUPTED_SEND = ("the daemon stopped before this immediate send started; it was not "
                    "sent. Ask again with the same Idempotency-Key to send it")


class StoreError(Exception):
    """The store cannot be opened or used; the daemon must not go on blind."""


class StoreUnavailable(StoreError):
    """The store cannot take this write now; nothing was recorded.

    `reason` is one of busy, full, deleted, replaced, unwritable (SQLite: the
    last three are for good, the file the daemon writes is not the one on
    disk), unreachable and read_only (PostgreSQL: the server is down, cut off
    or in its own failover; these pass once it is back)."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


class StateLock:
    """One daemon per state_dir: an exclusive `flock` held for the process's life."""

    def __init__(self, fd: int, path: Path) -> None:
        self._fd = fd
        self.path = path

    @classmethod
    def take(cls, state_dir: Path, holder: str) -> StateLock:
        try:
            state_dir.mkdir(parents=True, exist_ok=True)
            path = state_dir / LOCK_NAME
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        except OSError as exc:
            raise StoreError(f"cannot lock {state_dir}: {exc.strerror}") from exc
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            other = os.pread(fd, 500, 0).decode("utf-8", "replace").strip()
            os.close(fd)
            raise StoreError(f"{state_dir} is in use by another switchboard "
                             f"({other or 'holder unknown'}): one daemon per state_dir; "
                             f"stop that one first") from exc
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{holder}\n".encode(), 0)
        return cls(fd, path)

    def release(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)  # closing the descriptor drops the lock
            self._fd = -1


@dataclass(frozen=True)
class RequestKey:
    """An `Idempotency-Key` as one caller sent it to one route, with its body's digest."""

    scope: str
    key: str
    fingerprint: str


@dataclass(frozen=True)
class KeyedRequest:
    """What a stored key stands for: the posts or incident the first request made."""

    fingerprint: str
    kind: str
    refs: list[int]
    status: int


@dataclass(frozen=True)
class Claim:
    """A claim for sending: the posts now `sending`, and those the store found held."""

    sending: list[int]
    suppressed: list[tuple[int, str]]  # (post id, channel)


_POST_COLUMNS = ("id, channel, kind, text, link, state, due_at, expires_at, incident_id, "
                 "remote_id, error, created_by, created_at, published_at, updated_at, origin")
# The due-time queries name the partial index: without statistics SQLite's
# planner prefers the equality on `state` in posts_state_channel, then walks
# every scheduled post (0.7-0.9 s per query at a million, on every tick).
_PENDING = "INDEXED BY posts_pending"
_INCIDENT_COLUMNS = ("id, title, runbook, severity, state, channels, suppress, reason, source, "
                     "signal_key, signal, declared_at, declared_by, resolved_at, resolved_by, "
                     "resolve_note, cooldown_until, held_done, last_operational_at, "
                     "auto_resolve_at")


class Rows(Protocol):
    """What a statement gives back, on either backend."""

    @property
    def rowcount(self) -> int: ...

    def fetchone(self) -> Any: ...

    def fetchall(self) -> list[Any]: ...

    def __iter__(self) -> Iterator[Any]: ...


class Connection(Protocol):
    """Where the noun parts run their SQL: `?` placeholders, one dialect."""

    def execute(self, sql: str, parameters: Sequence[Any] = ..., /) -> Rows: ...

    def executemany(self, sql: str, parameters: Iterable[Sequence[Any]], /) -> Rows: ...


class StoreCore(ABC):
    """What the noun parts need of a backend: a connection for their SQL, one
    transaction per use-case call, a reader for listings, and the dialect's
    few differences (row locks, the holds' lock, new post ids)."""

    _db: Connection
    # Appended to a SELECT whose rows the transaction then changes: SQLite's
    # BEGIN IMMEDIATE already serializes writers, PostgreSQL must lock them.
    _FOR_UPDATE = ""

    def __init__(self) -> None:
        # Posts per state, kept in step with every committed change: counting a
        # million rows for each /metrics scrape would stall the event loop.
        self._counts: Counter[str] = Counter()
        self._delta: Counter[str] = Counter()
        self._install_id: str | None = None
        self.failure: StoreUnavailable | None = None

    @abstractmethod
    def transaction(self, durable: bool = True) -> AbstractContextManager[Connection]:
        """One atomic write on `self._db`; raises StoreUnavailable if nothing was recorded."""

    @abstractmethod
    def _reading(self) -> AbstractContextManager[Connection]:
        """A connection for the listings, usable from any thread."""

    @abstractmethod
    def check_file(self) -> None:
        """Raise StoreUnavailable if the store has failed for good."""

    @abstractmethod
    def _new_post_ids(self, count: int) -> list[int]:
        """Inside a transaction: ids for `count` new posts, in ascending order."""

    @abstractmethod
    def _lock_holds(self) -> None:
        """Inside a transaction, before the holds are read: no declaration may commit
        between that read and this transaction's commit."""

    def install_id(self) -> str:
        """A random id made once per store (by its migration): with a post id it
        gives keys sent to platforms that another store (staging, a fresh
        state_dir) never repeats. Deleted (after a restore), a new one is made."""
        if self._install_id is None:
            with self.transaction() as db:
                db.execute("INSERT INTO meta (key, value) VALUES ('install_id', ?) "
                           "ON CONFLICT DO NOTHING", (secrets.token_hex(8),))
                row = db.execute("SELECT value FROM meta WHERE key = 'install_id'").fetchone()
            self._install_id = str(row[0])
        return self._install_id

    def _log(self, incident_id: int, now: float, event: str, actor: str,
             detail: dict[str, Any]) -> None:
        self._db.execute("INSERT INTO timeline (incident_id, at, event, actor, detail) "
                         "VALUES (?, ?, ?, ?, ?)",
                         (incident_id, now, event, actor, json.dumps(detail, default=str)))


class SqliteCore(StoreCore):
    """The SQLite connection and its lifecycle: open, migrate, transactions, failures."""

    def __init__(self, conn: sqlite3.Connection, path: Path) -> None:
        super().__init__()
        self._db: sqlite3.Connection = conn
        self.path = path
        self._checkpointer: threading.Thread | None = None
        self._checkpoint_stop = threading.Event()
        self._reader: sqlite3.Connection | None = None
        self._reader_lock = threading.Lock()
        # The file this connection writes: if the path stops naming it (deleted,
        # replaced), every write would go to a file nobody will ever read.
        self._identity = _identity(path)

    # -- lifecycle ---------------------------------------------------------

    @classmethod
    def open(cls, path: Path) -> Self:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=FULL")
            conn.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
            store = cls(conn, path)
            store._check_integrity()
            store._migrate()
            store._counts = Counter({state: int(n) for state, n in conn.execute(
                "SELECT state, COUNT(*) FROM posts GROUP BY state")})
        except (sqlite3.Error, OSError) as exc:
            raise StoreError(f"cannot open store {path}: {exc}") from exc
        return store

    def close(self) -> None:
        self.stop_checkpoints()
        with self._reader_lock:
            if self._reader is not None:
                self._reader.close()
                self._reader = None
        self._db.close()

    def start_checkpoints(self, every: float = 0.5) -> None:
        """Copy the WAL into the database from a thread of its own.

        SQLite would otherwise checkpoint inside whichever commit crosses the
        WAL's size limit: a burst of fsyncs on the event loop, in the middle
        of a dispatch. A passive checkpoint never blocks the loop's writes.
        """
        self._db.execute("PRAGMA wal_autocheckpoint=0")
        self._checkpoint_stop = threading.Event()
        self._checkpointer = threading.Thread(target=self._checkpoint_loop, args=(every,),
                                              name="store-checkpoint", daemon=True)
        self._checkpointer.start()

    def stop_checkpoints(self) -> None:
        if self._checkpointer is not None:
            self._checkpoint_stop.set()
            self._checkpointer.join()
            self._checkpointer = None
            # One last full copy, so the WAL left behind is empty.
            self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")

    def _checkpoint_loop(self, every: float) -> None:
        conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        try:
            conn.execute("PRAGMA synchronous=FULL")
            while not self._checkpoint_stop.wait(every):
                # Busy or locked: the next round catches up.
                with contextlib.suppress(sqlite3.Error):
                    conn.execute("PRAGMA wal_checkpoint(PASSIVE)")
        finally:
            conn.close()

    def _check_integrity(self) -> None:
        rows = self._db.execute("PRAGMA quick_check").fetchall()
        if rows != [("ok",)]:
            detail = "; ".join(r[0] for r in rows[:5])
            raise StoreError(f"integrity check failed for {self.path}: {detail}")

    def integrity_ok(self) -> bool:
        return self._db.execute("PRAGMA integrity_check").fetchall() == [("ok",)]

    def schema_version(self) -> int:
        return int(self._db.execute("PRAGMA user_version").fetchone()[0])

    def _migrate(self) -> None:
        version = self.schema_version()
        if version > len(MIGRATIONS):
            raise StoreError(f"{self.path} has schema version {version}, newer than this "
                             f"switchboard knows ({len(MIGRATIONS)}): upgrade switchboard")
        # The version stays in SQLite's own header field (user_version): every
        # store file made so far keeps it there, and it commits with the version.
        for number, version_sql in enumerate(MIGRATIONS[version:], start=version + 1):
            with self.transaction() as db:
                for statement in statements(for_backend(version_sql, "sqlite")):
                    db.execute(statement)
                db.execute(f"PRAGMA user_version = {number}")

    def check_file(self) -> None:
        """Fail closed, for good, once the path no longer names the open database
        file: raises StoreUnavailable. One stat(), cheap enough for every write."""
        if self.failure is not None:
            raise self.failure
        try:
            now = _identity(self.path)
        except FileNotFoundError:
            self._fail("deleted", f"{self.path} was deleted under the running daemon")
        except OSError as exc:
            self._fail("unwritable", f"{self.path} cannot be checked: {exc.strerror}")
        if now != self._identity:
            self._fail("replaced", f"{self.path} was replaced by another file under the "
                                   "running daemon")

    def _fail(self, reason: str, what: str) -> NoReturn:
        self.failure = StoreUnavailable(
            reason, f"{what}; switchboard stopped recording and sending: restore the "
                    "file and restart the daemon")
        raise self.failure

    @contextmanager
    def transaction(self, durable: bool = True) -> Iterator[sqlite3.Connection]:
        """One atomic write. `durable=False` skips the fsync: only for records whose
        loss on a power cut is safe (an outcome whose `sending` was already synced
        then reads as `unknown`, never as a post to send again).

        Raises StoreUnavailable (nothing recorded) when another process holds
        the write lock, the disk is full or the file is gone."""
        self.check_file()
        if not durable:
            self._db.execute("PRAGMA synchronous=NORMAL")
        try:
            self._begin()
            try:
                yield self._db
                self._db.execute("COMMIT")
            except BaseException as exc:
                with contextlib.suppress(sqlite3.Error):
                    self._db.execute("ROLLBACK")
                self._delta.clear()
                if isinstance(exc, sqlite3.OperationalError):
                    raise self._unavailable(exc) from exc
                raise
            self._counts.update(self._delta)
            self._delta.clear()
            # Committed, but into the file on disk? Only then is it acknowledged.
            self.check_file()
        finally:
            if not durable:
                self._db.execute("PRAGMA synchronous=FULL")

    def _new_post_ids(self, count: int) -> list[int]:
        # Safe: BEGIN IMMEDIATE keeps every other writer out until the commit.
        first = int(self._db.execute("SELECT COALESCE(MAX(id), 0) FROM posts").fetchone()[0]) + 1
        return list(range(first, first + count))

    def _lock_holds(self) -> None:
        """Nothing to do: BEGIN IMMEDIATE already keeps every other writer out."""

    def _begin(self) -> None:
        try:
            self._db.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as exc:
            raise self._unavailable(exc) from exc

    def _unavailable(self, exc: sqlite3.OperationalError) -> Exception:
        text = str(exc).lower()
        if "locked" in text or "busy" in text:
            return StoreUnavailable("busy", "the store is busy: another process holds its "
                                            "write lock; nothing was recorded, try again")
        if "full" in text:
            return StoreUnavailable("full", f"the disk of {self.path.parent} is full; "
                                            "nothing was recorded")
        if "readonly" in text or "disk i/o" in text:
            with contextlib.suppress(StoreUnavailable):
                self._fail("unwritable", f"{self.path} cannot be written ({exc})")
            assert self.failure is not None
            return self.failure
        return exc

    @contextmanager
    def _reading(self) -> Iterator[sqlite3.Connection]:
        """The listings' own read-only connection: a page built in a worker thread
        never shares the writer's connection or its open transaction."""
        with self._reader_lock:
            if self._reader is None:
                self._reader = sqlite3.connect(self.path, isolation_level=None,
                                               check_same_thread=False)
                self._reader.execute("PRAGMA query_only=1")
            yield self._reader


def _identity(path: Path) -> tuple[int, int]:
    st = os.stat(path)
    return st.st_dev, st.st_ino


def fingerprint(body: Any) -> str:
    """A request body's digest, independent of key order and spacing."""
    text = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


def row_key(channel: str, due_at: float, text: str) -> str:
    """An imported row's identity when the file gives no `key`: channel, time, text."""
    return "row:" + fingerprint([channel, round(due_at, 3), text])


def _incident(row: Sequence[Any]) -> Incident:
    values = list(row)
    values[5] = json.loads(values[5])
    values[6] = json.loads(values[6])
    values[10] = None if values[10] is None else json.loads(values[10])
    values[17] = bool(values[17])
    return Incident(*values)
