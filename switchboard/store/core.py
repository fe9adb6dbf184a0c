"""What every backend of the store shares: `StoreCore` (the connection the noun
parts write their SQL to, transactions, failures), the records they return
and the state_dir lock. SQLite's core is in store/sqlite.py, PostgreSQL's in
store/postgres.py.

Every other module talks to a store, never to SQL. The noun parts (posts,
listings, incidents, people) write their SQL once, in the dialect both
backends accept: `?` placeholders, `ON CONFLICT DO NOTHING`, `RETURNING`; the
PostgreSQL backend's connection adapter turns the few SQLite-only hints left
(`INDEXED BY`, `+column`, `json_each`) into PostgreSQL's.

Times are stored as Unix seconds (REAL, UTC) so that the due-time index is a
plain number comparison; the API layer turns them into RFC 3339.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import secrets
from abc import ABC, abstractmethod
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from switchboard.model import Incident
from switchboard.poststates import ALL_STATES

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
# A declaration waits longer on PostgreSQL: the claims in flight there (several
# daemons' and writer threads' at once, each committing with an fsync) hold the
# holds' lock until they commit, and the declaration is the one write that must
# get through. Still well inside any feed sender's timeout.
DECLARATION_WAIT_MS = 1000
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


class KeyTaken(StoreError):
    """An Idempotency-Key stored meanwhile by a racing request (another daemon on the
    same database): nothing of this one was recorded; asking again gets the answer."""

    def __init__(self) -> None:
        self.message = ("a request with this Idempotency-Key was made at the same time; "
                        "nothing was made twice: ask again with the same key for its answer")
        super().__init__(self.message)


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
    # How many writes may run at once (the port's writer threads): SQLite has one
    # writer, and the order of the writes asked of it is the order they run in.
    WRITERS = 1

    def __init__(self) -> None:
        # Posts per state, kept in step with every committed change: counting a
        # million rows for each /metrics scrape would stall the event loop.
        self._counts: Counter[str] = Counter()
        self._delta: Counter[str] = Counter()
        self._install_id: str | None = None
        self.failure: StoreUnavailable | None = None

    @abstractmethod
    def transaction(self, durable: bool = True,
                    wait_ms: int = BUSY_TIMEOUT_MS) -> AbstractContextManager[Connection]:
        """One atomic write on `self._db`, waiting at most `wait_ms` for each lock another
        transaction holds; raises StoreUnavailable if nothing was recorded."""

    @abstractmethod
    def _reading(self) -> AbstractContextManager[Connection]:
        """A connection for the listings, usable from any thread."""

    @abstractmethod
    def close(self) -> None:
        """Release the connections (and stop any helper thread)."""

    @abstractmethod
    def start_checkpoints(self, every: float = 0.5) -> None:
        """Start whatever upkeep the backend does in the background."""

    @abstractmethod
    def integrity_ok(self) -> bool: ...

    @abstractmethod
    def schema_version(self) -> int: ...

    def probe(self) -> None:
        """Could the store take a write now? Raises StoreUnavailable if not, for good
        (`failure`) or for as long as the cause lasts (a database unreachable or
        read-only); nothing is written."""
        self.check_file()

    @abstractmethod
    def check_file(self) -> None:
        """Raise StoreUnavailable if the store has failed for good."""

    @abstractmethod
    def _new_post_ids(self, count: int) -> list[int]:
        """Inside a transaction: ids for `count` new posts, in ascending order."""

    @abstractmethod
    def _lock_imports(self) -> None:
        """Inside a transaction, before an import reads its rows' keys: no other
        import may store keys until this transaction commits."""

    def _write_one(self, sql: str, parameters: Sequence[Any]) -> None:
        """One statement that is a whole durable write on its own (an audit entry)."""
        with self.transaction() as db:
            db.execute(sql, parameters)

    @abstractmethod
    def _duplicate(self, exc: Exception) -> bool:
        """Whether `exc` is the database refusing a second row for a unique key."""

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
