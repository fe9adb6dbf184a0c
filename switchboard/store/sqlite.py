"""The SQLite store: its core (one connection in WAL mode, its lifecycle,
transactions and failures) and the store assembled from it and the noun parts.

Commits are `synchronous=FULL`: a declaration acknowledged to a caller
survives a power cut, not only a crash of the process.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import NoReturn, Self

from switchboard.store.channels import ChannelRecords
from switchboard.store.core import BUSY_TIMEOUT_MS, StoreCore, StoreError, StoreUnavailable
from switchboard.store.migrations import MIGRATIONS, for_backend, statements


class SqliteCore(StoreCore):
    """The SQLite connection and its lifecycle: open, migrate, transactions, failures."""

    def __init__(self, conn: sqlite3.Connection, path: Path) -> None:
        super().__init__()
        self._db: sqlite3.Connection = conn
        self.path = path
        self._checkpointer: threading.Thread | None = None
        self.upkeep_rounds = 0  # checkpoints tried, for a look from outside
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
                self.upkeep_rounds += 1
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
    def transaction(self, durable: bool = True,
                    wait_ms: int = BUSY_TIMEOUT_MS) -> Iterator[sqlite3.Connection]:
        """One atomic write. `durable=False` skips the fsync: only for records whose
        loss on a power cut is safe (an outcome whose `sending` was already synced
        then reads as `unknown`, never as a post to send again).

        Raises StoreUnavailable (nothing recorded) when another process holds
        the write lock, the disk is full or the file is gone. `wait_ms` is not
        used: this process's writes take turns on one thread and never wait for
        each other's locks, and another process holding the lock (someone's
        `sqlite3` shell) is not one a longer wait would see through."""
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

    def _duplicate(self, exc: Exception) -> bool:
        return isinstance(exc, sqlite3.IntegrityError)

    def _lock_holds(self) -> None:
        """Nothing to do: BEGIN IMMEDIATE already keeps every other writer out."""

    def _db_clock(self) -> float:
        # One process holds the file (its state_dir lock): its clock is the store's.
        return time.time()

    def _lock_imports(self) -> None:
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


class SqliteStore(SqliteCore, ChannelRecords):
    """All durable state of one daemon in one SQLite file (WAL, synchronous=FULL).

    Each part adds the queries of one noun over the connection of `SqliteCore`:
    posts (`PostRecords`), listings, incidents, people, channels."""
