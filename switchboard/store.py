"""All durable state, behind one class (SQLite in WAL mode).

Every other module talks to `Store`, never to SQL, so that a shared-database
backend (PostgreSQL with a leader lease) can replace this one later. Commits
are `synchronous=FULL`: a declaration acknowledged to a caller survives a
power cut, not only a crash of the process.

Times are stored as Unix seconds (REAL, UTC) so that the due-time index is a
plain number comparison; the API layer turns them into RFC 3339.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import heapq
import json
import os
import secrets
import sqlite3
import threading
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

from switchboard.model import (
    AuditEntry,
    Hold,
    Incident,
    NewPost,
    Person,
    Post,
    SendOutcome,
    TimelineEntry,
)
from switchboard.poststates import ALL_STATES, PostState, check_initial, check_move, check_outcome

# The states and their legal moves are poststates.py's; every change of
# state below goes through `check_move` (or its creation and outcome kin).
POST_STATES = ALL_STATES

MIGRATIONS: tuple[str, ...] = (
    # 1: the initial schema
    """
    CREATE TABLE posts (
        id INTEGER PRIMARY KEY,
        channel TEXT NOT NULL,
        kind TEXT NOT NULL,
        text TEXT NOT NULL,
        link TEXT,
        state TEXT NOT NULL,
        due_at REAL NOT NULL,
        expires_at REAL,
        incident_id INTEGER,
        remote_id TEXT,
        error TEXT,
        created_by TEXT NOT NULL,
        created_at REAL NOT NULL,
        published_at REAL,
        updated_at REAL NOT NULL
    );
    -- Partial index: only pending posts, so a million published ones cost nothing here.
    CREATE INDEX posts_pending ON posts(due_at) WHERE state = 'scheduled';
    CREATE INDEX posts_state_channel ON posts(state, channel);
    CREATE INDEX posts_incident ON posts(incident_id) WHERE incident_id IS NOT NULL;
    CREATE INDEX posts_published ON posts(channel, published_at) WHERE state = 'published';
    CREATE TABLE post_events (
        id INTEGER PRIMARY KEY,
        post_id INTEGER NOT NULL,
        at REAL NOT NULL,
        from_state TEXT,
        to_state TEXT NOT NULL,
        actor TEXT NOT NULL,
        reason TEXT
    );
    CREATE INDEX post_events_post ON post_events(post_id);
    CREATE TABLE incidents (
        id INTEGER PRIMARY KEY,
        title TEXT NOT NULL,
        runbook TEXT NOT NULL,
        severity TEXT NOT NULL,
        state TEXT NOT NULL,
        channels TEXT NOT NULL,
        suppress TEXT NOT NULL,
        reason TEXT,
        source TEXT NOT NULL,
        signal_key TEXT,
        signal TEXT,
        declared_at REAL NOT NULL,
        declared_by TEXT NOT NULL,
        resolved_at REAL,
        resolved_by TEXT,
        resolve_note TEXT,
        cooldown_until REAL,
        held_done INTEGER NOT NULL DEFAULT 0,
        last_operational_at REAL,
        auto_resolve_at REAL
    );
    CREATE UNIQUE INDEX incidents_active_signal ON incidents(signal_key)
        WHERE state = 'active' AND signal_key IS NOT NULL;
    CREATE TABLE timeline (
        id INTEGER PRIMARY KEY,
        incident_id INTEGER NOT NULL,
        at REAL NOT NULL,
        event TEXT NOT NULL,
        actor TEXT NOT NULL,
        detail TEXT NOT NULL
    );
    CREATE INDEX timeline_incident ON timeline(incident_id);
    CREATE TABLE channel_control (
        channel TEXT NOT NULL,
        incident_id INTEGER NOT NULL,
        until REAL,
        PRIMARY KEY (channel, incident_id)
    );
    CREATE TABLE step_runs (
        incident_id INTEGER NOT NULL,
        step TEXT NOT NULL,
        occurrence INTEGER NOT NULL,
        at REAL NOT NULL,
        result TEXT NOT NULL,
        PRIMARY KEY (incident_id, step, occurrence)
    );
    """,
    # 2: feed events already taken (PagerDuty event ids), so a replay is recognised
    """
    CREATE TABLE feed_events (
        feed TEXT NOT NULL,
        event_id TEXT NOT NULL,
        seen_at REAL NOT NULL,
        PRIMARY KEY (feed, event_id)
    );
    CREATE INDEX feed_events_seen_at ON feed_events (seen_at);
    CREATE INDEX incidents_signal_key ON incidents (signal_key, resolved_at);
    """,
    # 3: facts about this store itself, such as its install id
    """
    CREATE TABLE meta (
        key TEXT PRIMARY KEY,
        value TEXT NOT NULL
    );
    INSERT INTO meta (key, value) VALUES ('install_id', lower(hex(randomblob(8))));
    """,
    # 4: keyset paging of the post listings (design §7.8): each state's posts in
    # due order, overall and per channel, so any page is one index range.
    """
    CREATE INDEX posts_listing ON posts(state, due_at);
    CREATE INDEX posts_channel_listing ON posts(channel, state, due_at)
    """,
    # 5: idempotency keys of API requests, immediate sends, import row keys
    """
    CREATE TABLE request_keys (
        scope TEXT NOT NULL,
        key TEXT NOT NULL,
        fingerprint TEXT NOT NULL,
        kind TEXT NOT NULL,
        refs TEXT NOT NULL,
        status INTEGER NOT NULL,
        created_at REAL NOT NULL,
        PRIMARY KEY (scope, key)
    );
    CREATE INDEX request_keys_age ON request_keys(created_at);
    CREATE TABLE immediate_sends (
        post_id INTEGER PRIMARY KEY
    );
    CREATE TABLE post_keys (
        key TEXT PRIMARY KEY,
        post_id INTEGER NOT NULL
    );
    """,
    # 6: people, their personal tokens and team roles, and the audit of writes
    """
    CREATE TABLE people (
        name TEXT PRIMARY KEY,
        role TEXT NOT NULL,
        disabled INTEGER NOT NULL DEFAULT 0,
        password_hash TEXT,
        created_at REAL NOT NULL,
        updated_at REAL NOT NULL
    );
    CREATE TABLE person_tokens (
        id INTEGER PRIMARY KEY,
        person TEXT NOT NULL,
        sha256 TEXT NOT NULL UNIQUE,
        created_at REAL NOT NULL,
        revoked_at REAL
    );
    CREATE INDEX person_tokens_person ON person_tokens(person);
    CREATE TABLE team_roles (
        person TEXT NOT NULL,
        team TEXT NOT NULL,
        role TEXT NOT NULL,
        PRIMARY KEY (person, team, role)
    );
    CREATE TABLE audit (
        id INTEGER PRIMARY KEY,
        at REAL NOT NULL,
        person TEXT,
        credential TEXT NOT NULL,
        action TEXT NOT NULL,
        target TEXT,
        teams TEXT NOT NULL,
        status INTEGER NOT NULL
    );
    CREATE INDEX audit_at ON audit(at);
    CREATE INDEX audit_person ON audit(person, at);
    """,
    # 7: how each post came in (a due time of its own, or sent at once); before,
    # a post due when it was created counted as sent at once
    """
    ALTER TABLE posts ADD COLUMN origin TEXT NOT NULL DEFAULT 'schedule';
    UPDATE posts SET origin = 'send_now' WHERE created_at >= due_at;
    """,
)

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

    `reason` is one of busy, full, deleted, replaced, unwritable; the last
    three are for good (the file the daemon writes is not the one on disk)."""

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


class Store:
    def __init__(self, conn: sqlite3.Connection, path: Path) -> None:
        self._db = conn
        self.path = path
        # Posts per state, kept in step with every committed change: counting a
        # million rows for each /metrics scrape would stall the event loop.
        self._counts: Counter[str] = Counter()
        self._delta: Counter[str] = Counter()
        self._checkpointer: threading.Thread | None = None
        self._checkpoint_stop = threading.Event()
        self._install_id: str | None = None
        self._reader: sqlite3.Connection | None = None
        self._reader_lock = threading.Lock()
        # The file this connection writes: if the path stops naming it (deleted,
        # replaced), every write would go to a file nobody will ever read.
        self._identity = _identity(path)
        self.failure: StoreUnavailable | None = None

    # -- lifecycle ---------------------------------------------------------

    @classmethod
    def open(cls, path: Path) -> Store:
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
        for number, script in enumerate(MIGRATIONS[version:], start=version + 1):
            with self.transaction() as db:
                for statement in script.split(";"):
                    if statement.strip():
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

    def install_id(self) -> str:
        """A random id made once per store (by its migration): with a post id it
        gives keys sent to platforms that another store (staging, a fresh
        state_dir) never repeats. Deleted (after a restore), a new one is made."""
        if self._install_id is None:
            with self.transaction() as db:
                db.execute("INSERT OR IGNORE INTO meta (key, value) VALUES ('install_id', ?)",
                           (secrets.token_hex(8),))
                row = db.execute("SELECT value FROM meta WHERE key = 'install_id'").fetchone()
            self._install_id = str(row[0])
        return self._install_id
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

    def recover(self, now: float) -> dict[str, int]:
        """Start-up repair: a crash leaves `queued` (never sent: back to scheduled)
        and `sending` (outcome unknown: never re-sent automatically).

        An immediate send still `queued` is not sent late behind its caller's
        back (the caller saw an error and may have sent it again): it fails,
        and a repeat of the request with its Idempotency-Key sends it."""
        with self.transaction():
            immediate = [r[0] for r in self._db.execute(
                "SELECT p.id FROM posts p JOIN immediate_sends s ON s.post_id = p.id "
                "WHERE p.state = 'queued'")]
            not_sent = self._transition(immediate, PostState.FAILED, (PostState.QUEUED,), now,
                                        "daemon", "restart before the immediate send started",
                                        error=INTERRUPTED_SEND)
            requeued = self._move(PostState.QUEUED, PostState.SCHEDULED, now, "daemon",
                                  "restart before send")
            unknown = self._move(PostState.SENDING, PostState.UNKNOWN, now, "daemon",
                                 "interrupted mid-send by a crash; check the platform")
            self._db.execute("DELETE FROM request_keys WHERE created_at < ?",
                             (now - REQUEST_KEY_DAYS * 86400,))
        return {"requeued": requeued, "unknown": unknown, "not_sent": len(not_sent)}

    def _move(self, old: PostState, new: PostState, now: float, actor: str, reason: str) -> int:
        ids = [r[0] for r in self._db.execute("SELECT id FROM posts WHERE state = ?", (old,))]
        self._transition(ids, new, (old,), now, actor, reason)
        return len(ids)

    # -- posts -------------------------------------------------------------

    def add_posts(self, posts: Sequence[NewPost], actor: str, now: float,
                  request: RequestKey | None = None, immediate: bool = False) -> list[int]:
        """Store new posts; with `request`, its key in the same transaction, so a
        repeat finds them (`immediate`: an API send, see `recover`)."""
        with self.transaction() as db:
            ids = self._insert_posts(posts, actor, now)
            if immediate:
                db.executemany("INSERT INTO immediate_sends (post_id) VALUES (?)",
                               [(i,) for i in ids])
            if request is not None:
                self._keep(request, "send" if immediate else "posts", ids, 201, now)
        return ids

    def _insert_posts(self, posts: Sequence[NewPost], actor: str, now: float) -> list[int]:
        db = self._db
        for post in posts:
            check_initial(post.state)
        first = int(db.execute("SELECT COALESCE(MAX(id), 0) FROM posts").fetchone()[0]) + 1
        ids = list(range(first, first + len(posts)))
        db.executemany(
            "INSERT INTO posts (id, channel, kind, text, link, state, due_at, expires_at, "
            "created_by, created_at, updated_at, origin) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
            [(i, p.channel, p.kind, p.text, p.link, p.state, p.due_at, p.expires_at, actor,
              now, now, p.origin) for i, p in zip(ids, posts, strict=True)])
        db.executemany(
            "INSERT INTO post_events (post_id, at, from_state, to_state, actor, reason) "
            "VALUES (?, ?, NULL, ?, ?, 'created')",
            [(i, now, p.state, actor) for i, p in zip(ids, posts, strict=True)])
        self._delta.update(p.state for p in posts)
        return ids

    def import_posts(self, rows: Sequence[tuple[str, NewPost]], actor: str,
                     now: float) -> tuple[list[int], list[int]]:
        """A calendar import, all rows or none. Each row carries its key: a row whose
        key is already stored (an earlier import of the same file) is not stored
        again. Returns (ids created, ids that already existed)."""
        with self.transaction() as db:
            existing: list[int] = []
            new: dict[str, NewPost] = {}
            for key, post in rows:
                found = db.execute("SELECT post_id FROM post_keys WHERE key = ?",
                                   (key,)).fetchone()
                if found is not None:
                    existing.append(int(found[0]))
                elif key not in new:
                    new[key] = post
            ids = self._insert_posts(list(new.values()), actor, now)
            db.executemany("INSERT INTO post_keys (key, post_id) VALUES (?, ?)",
                           list(zip(new, ids, strict=True)))
        return ids, existing

    # -- idempotency keys --------------------------------------------------

    def keyed(self, scope: str, key: str) -> KeyedRequest | None:
        row = self._db.execute("SELECT fingerprint, kind, refs, status FROM request_keys "
                               "WHERE scope = ? AND key = ?", (scope, key)).fetchone()
        if row is None:
            return None
        return KeyedRequest(row[0], row[1], [int(i) for i in json.loads(row[2])], int(row[3]))

    def _keep(self, request: RequestKey, kind: str, refs: Sequence[int], status: int,
              now: float) -> None:
        # A repeat racing its first request fails here (primary key): nothing is made twice.
        self._db.execute("INSERT INTO request_keys (scope, key, fingerprint, kind, refs, "
                         "status, created_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                         (request.scope, request.key, request.fingerprint, kind,
                          json.dumps(list(refs)), status, now))

    def is_immediate(self, post_id: int) -> bool:
        return self._db.execute("SELECT 1 FROM immediate_sends WHERE post_id = ?",
                                (post_id,)).fetchone() is not None

    def post(self, post_id: int) -> Post | None:
        row = self._db.execute(f"SELECT {_POST_COLUMNS} FROM posts WHERE id = ?",
                               (post_id,)).fetchone()
        return Post(*row) if row else None

    def posts(self, ids: Iterable[int]) -> list[Post]:
        id_list = list(ids)
        out: list[Post] = []
        for i in range(0, len(id_list), 500):
            chunk = id_list[i:i + 500]
            marks = ",".join("?" * len(chunk))
            out += [Post(*r) for r in self._db.execute(
                f"SELECT {_POST_COLUMNS} FROM posts WHERE id IN ({marks}) ORDER BY id", chunk)]
        return out

    def list_posts(self, states: Sequence[str] = (), channel: str | None = None,
                   incident_id: int | None = None, limit: int = 1000) -> list[Post]:
        where: list[str] = []
        args: list[Any] = []
        if states:
            where.append(f"state IN ({','.join('?' * len(states))})")
            args += list(states)
        if channel:
            where.append("channel = ?")
            args.append(channel)
        if incident_id is not None:
            where.append("incident_id = ?")
            args.append(incident_id)
        sql = f"SELECT {_POST_COLUMNS} FROM posts"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY due_at, id LIMIT ?"
        return [Post(*r) for r in self._db.execute(sql, [*args, limit])]

    # -- listings (callable from any thread: they read on a connection of their own)

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

    def page_posts(self, states: Sequence[str] = (), channel: str | None = None,
                   after: tuple[float, int] | None = None, limit: int = 100) -> list[Post]:
        """Up to `limit` posts in (due_at, id) order after the key `after`.

        Keyset paging: one index range per state, merged, so the page at the
        millionth post costs what the first one does (no sort, no offset).
        """
        where = "state = ?" + (" AND channel = ?" if channel else "")
        where += " AND (due_at, id) > (?, ?)" if after else ""
        index = "posts_channel_listing" if channel else "posts_listing"
        sql = (f"SELECT {_POST_COLUMNS} FROM posts INDEXED BY {index} WHERE {where} "
               "ORDER BY due_at, id LIMIT ?")
        runs: list[list[Post]] = []
        with self._reading() as db:
            for state in dict.fromkeys(states or POST_STATES):
                args: list[Any] = [state, *([channel] if channel else []),
                                   *(after or ()), limit]
                runs.append([Post(*r) for r in db.execute(sql, args)])
        merged = heapq.merge(*runs, key=lambda p: (p.due_at, p.id))
        return [post for _, post in zip(range(limit), merged, strict=False)]

    def count_posts(self, states: Sequence[str] = (), channel: str | None = None) -> int:
        chosen = list(dict.fromkeys(states or POST_STATES))
        if not channel:
            return sum(self._counts.get(state, 0) for state in chosen)
        with self._reading() as db:
            row = db.execute(
                "SELECT COUNT(*) FROM posts INDEXED BY posts_channel_listing WHERE channel = ? "
                f"AND state IN ({','.join('?' * len(chosen))})", [channel, *chosen]).fetchone()
        return int(row[0])

    def page_incidents(self, include_resolved: bool = False, before: int | None = None,
                       limit: int = 100) -> tuple[list[Incident], int]:
        """Up to `limit` incidents, newest first, older than id `before`; and how many
        there are in all."""
        # By default the active ones and those in cooldown (held posts not yet dealt with).
        where = [] if include_resolved else [
            "(state = 'active' OR (state = 'resolved' AND held_done = 0))"]
        count_sql = "SELECT COUNT(*) FROM incidents" + (f" WHERE {where[0]}" if where else "")
        if before is not None:
            where.append("id < ?")
        sql = f"SELECT {_INCIDENT_COLUMNS} FROM incidents"
        sql += (" WHERE " + " AND ".join(where)) if where else ""
        with self._reading() as db:
            rows = db.execute(sql + " ORDER BY id DESC LIMIT ?",
                              [*([before] if before is not None else []), limit]).fetchall()
            total = int(db.execute(count_sql).fetchone()[0])
        return [_incident(r) for r in rows], total

    def post_history(self, post_id: int) -> list[dict[str, Any]]:
        rows = self._db.execute(
            "SELECT at, from_state, to_state, actor, reason FROM post_events WHERE post_id = ? "
            "ORDER BY id", (post_id,))
        return [dict(zip(("at", "from", "to", "actor", "reason"), r, strict=True)) for r in rows]

    def next_due(self) -> float | None:
        row = self._db.execute(
            f"SELECT MIN(due_at) FROM posts {_PENDING} WHERE state = 'scheduled'").fetchone()
        return None if row[0] is None else float(row[0])

    def count_by_state(self) -> dict[str, int]:
        return {state: n for state, n in self._counts.items() if n}

    def mark_missed(self, before: float, now: float) -> list[int]:
        """Scheduled posts due before `before` are missed: old posts never go out in a burst."""
        ids = [r[0] for r in self._db.execute(
            f"SELECT id FROM posts {_PENDING} WHERE state = 'scheduled' AND due_at < ?",
            (before,))]
        if ids:
            with self.transaction():
                self._transition(ids, PostState.MISSED, (PostState.SCHEDULED,), now, "dispatcher",
                                 "due longer ago than max_lateness")
        return ids

    def claim_due(self, now: float, limit: int) -> list[Post]:
        return self.claim_due_held(now, limit)[0]

    def claim_due_held(self, now: float, limit: int) -> tuple[list[Post], list[tuple[int, str]]]:
        """Move due posts from `scheduled` to `queued` so that no later tick takes them
        again; those on a channel the store holds are suppressed instead (returned
        second, as (post id, channel))."""
        rows = [Post(*r) for r in self._db.execute(
            f"SELECT {_POST_COLUMNS} FROM posts {_PENDING} WHERE state = 'scheduled' "
            "AND due_at <= ? "
            "ORDER BY due_at, id LIMIT ?", (now, limit))]
        if not rows:
            return [], []
        # No fsync: a lost `queued` is `scheduled` again, which start-up makes
        # of every `queued` post anyway; the `sending` that follows is synced.
        with self.transaction(durable=False):
            free, held = self._suppress_held([(p.id, p.channel, p.kind) for p in rows],
                                          (PostState.SCHEDULED,), now)
            self._transition(free, PostState.QUEUED, (PostState.SCHEDULED,), now, "dispatcher",
                             "due")
        claimed = set(free)
        out = [p for p in rows if p.id in claimed]
        for p in out:
            p.state = PostState.QUEUED
        return out, held

    def claim_sending(self, ids: Sequence[int], now: float) -> Claim:
        """`queued -> sending`, deciding on the channel holds in the same transaction:
        whichever process wrote a hold, no post of a held kind starts on its channel."""
        if not ids:
            return Claim([], [])
        with self.transaction():
            rows = self._db.execute(
                f"SELECT id, channel, kind FROM posts WHERE id IN ({','.join('?' * len(ids))}) "
                "AND +state = 'queued'", list(ids)).fetchall()
            free, held = self._suppress_held(rows, (PostState.QUEUED,), now)
            sending = self._transition(free, PostState.SENDING, (PostState.QUEUED,), now,
                                       "dispatcher", "gate open")
        return Claim(sending, held)

    def _suppress_held(self, posts: Sequence[tuple[int, str, str]], expect: Sequence[PostState],
                       now: float) -> tuple[list[int], list[tuple[int, str]]]:
        """Inside a transaction: suppress the posts whose channel and kind a hold
        covers (the earliest incident names it, as the gate does); the rest are free."""
        holds = self._active_holds(now)
        free: list[int] = []
        by_incident: dict[int, list[tuple[int, str]]] = {}
        for post_id, channel, kind in posts:
            holder = next((i for i, kinds in holds.get(channel, []) if kind in kinds), None)
            if holder is None:
                free.append(post_id)
            else:
                by_incident.setdefault(holder, []).append((post_id, channel))
        held: list[tuple[int, str]] = []
        for incident_id, items in by_incident.items():
            channel_of = dict(items)
            moved = self._transition(list(channel_of), PostState.SUPPRESSED, expect, now, "gate",
                                     f"INC-{incident_id} holds the channel",
                                     incident_id=incident_id)
            if moved:
                self._log(incident_id, now, "posts_suppressed", "gate", {"posts": moved})
            held += [(i, channel_of[i]) for i in moved]
        return free, held

    def _active_holds(self, now: float) -> dict[str, list[tuple[int, set[str]]]]:
        holds: dict[str, list[tuple[int, set[str]]]] = {}
        for channel, incident_id, suppress in self._db.execute(
                "SELECT c.channel, c.incident_id, i.suppress FROM channel_control c "
                "LEFT JOIN incidents i ON i.id = c.incident_id "
                "WHERE c.until IS NULL OR c.until > ? ORDER BY c.incident_id", (now,)):
            kinds = set(json.loads(suppress)) if suppress else {"marketing"}
            holds.setdefault(channel, []).append((int(incident_id), kinds))
        return holds

    def transition(self, ids: Sequence[int], to_state: PostState, expect: Sequence[PostState],
                   now: float, actor: str, reason: str | None = None,
                   **fields: Any) -> list[int]:
        """Move posts that are in one of `expect` to `to_state`; returns the ids moved.
        A move the state machine does not allow raises IllegalMove (nothing changes)."""
        with self.transaction():
            return self._transition(ids, to_state, expect, now, actor, reason, **fields)

    def _transition(self, ids: Sequence[int], to_state: PostState, expect: Sequence[PostState],
                    now: float, actor: str, reason: str | None = None,
                    **fields: Any) -> list[int]:
        # Checked before anything is read: an illegal request fails even when no
        # post is in an `expect` state at the moment.
        to_state = check_move(expect, to_state)
        if not ids:
            return []
        sets = "".join(f", {k} = ?" for k in fields)
        moved: list[tuple[int, str]] = []
        for i in range(0, len(ids), 500):
            chunk = list(ids[i:i + 500])
            # `+state`: look the ids up by primary key; an index on state would walk
            # every post in that state (a million scheduled ones, say) per chunk.
            found = self._db.execute(
                f"SELECT id, state FROM posts WHERE id IN ({','.join('?' * len(chunk))}) "
                f"AND +state IN ({','.join('?' * len(expect))})", [*chunk, *expect]).fetchall()
            if not found:
                continue
            self._db.execute(
                f"UPDATE posts SET state = ?, updated_at = ?{sets} "
                f"WHERE id IN ({','.join('?' * len(found))})",
                [to_state, now, *fields.values(), *(f[0] for f in found)])
            moved += found
        for _, old in moved:
            self._delta[old] -= 1
        self._delta[to_state] += len(moved)
        self._db.executemany(
            "INSERT INTO post_events (post_id, at, from_state, to_state, actor, reason) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            [(post_id, now, old, to_state, actor, reason) for post_id, old in moved])
        return [post_id for post_id, _ in moved]

    def reschedule_held(self, moves: Sequence[tuple[int, float]], expired: Sequence[int],
                        now: float, actor: str, reason: str,
                        expired_reason: str) -> tuple[list[int], list[int]]:
        """A held-post train in one transaction (one fsync, not one per post): each
        suppressed post of `moves` back to `scheduled` at its own time, those of
        `expired` expired. Returns (rescheduled, expired) ids."""
        with self.transaction():
            gone = self._transition(expired, PostState.EXPIRED, (PostState.SUPPRESSED,), now, actor,
                                    expired_reason)
            due = dict(moves)
            moved: list[int] = []
            ids = list(due)
            for i in range(0, len(ids), 500):
                chunk = ids[i:i + 500]
                moved += [r[0] for r in self._db.execute(
                    f"SELECT id FROM posts WHERE id IN ({','.join('?' * len(chunk))}) "
                    "AND +state = 'suppressed'", chunk)]
            self._db.executemany(
                "UPDATE posts SET state = 'scheduled', updated_at = ?, due_at = ? WHERE id = ?",
                [(now, due[post_id], post_id) for post_id in moved])
            self._db.executemany(
                "INSERT INTO post_events (post_id, at, from_state, to_state, actor, reason) "
                "VALUES (?, ?, 'suppressed', 'scheduled', ?, ?)",
                [(post_id, now, actor, reason) for post_id in moved])
            self._delta[PostState.SUPPRESSED] -= len(moved)
            self._delta[PostState.SCHEDULED] += len(moved)
        return moved, gone

    def record_sends(self, outcomes: Sequence[SendOutcome], now: float) -> None:
        """The platform's answers for a run of sends, in one transaction."""
        if not outcomes:
            return
        for outcome in outcomes:
            check_outcome(outcome.state)
        with self.transaction(durable=False) as db:
            db.executemany(
                "UPDATE posts SET state = ?, remote_id = ?, published_at = ?, error = ?, "
                "updated_at = ? WHERE id = ? AND state = 'sending'",
                [(o.state, o.remote_id, o.published_at, o.error, now, o.post_id)
                 for o in outcomes])
            self._delta[PostState.SENDING] -= len(outcomes)
            self._delta.update(o.state for o in outcomes)
            db.executemany(
                "INSERT INTO post_events (post_id, at, from_state, to_state, actor, reason) "
                "VALUES (?, ?, 'sending', ?, 'dispatcher', ?)",
                [(o.post_id, now, o.state, o.reason) for o in outcomes])

    def published_since(self, channels: Sequence[str], since: float,
                        kinds: Sequence[str]) -> list[Post]:
        marks, kmarks = ",".join("?" * len(channels)), ",".join("?" * len(kinds))
        return [Post(*r) for r in self._db.execute(
            f"SELECT {_POST_COLUMNS} FROM posts WHERE state = 'published' "
            f"AND channel IN ({marks}) AND kind IN ({kmarks}) AND published_at >= ? "
            "ORDER BY published_at", [*channels, *kinds, since])]

    # -- incidents ---------------------------------------------------------

    def declare(self, *, title: str, runbook: str, severity: str, channels: Sequence[str],
                suppress: Sequence[str], reason: str | None, source: str,
                signal_key: str | None, signal: dict[str, Any] | None, actor: str,
                now: float, request: RequestKey | None = None) -> int:
        """Insert the incident and its channel holds in one durable transaction
        (with `request`, its Idempotency-Key too)."""
        with self.transaction() as db:
            cur = db.execute(
                "INSERT INTO incidents (title, runbook, severity, state, channels, suppress, "
                "reason, source, signal_key, signal, declared_at, declared_by) "
                "VALUES (?, ?, ?, 'active', ?, ?, ?, ?, ?, ?, ?, ?)",
                (title, runbook, severity, json.dumps(list(channels)), json.dumps(list(suppress)),
                 reason, source, signal_key, None if signal is None else json.dumps(signal),
                 now, actor))
            incident_id = int(cur.lastrowid or 0)
            db.executemany("INSERT INTO channel_control (channel, incident_id, until) "
                           "VALUES (?, ?, NULL)", [(c, incident_id) for c in channels])
            self._log(incident_id, now, "declared", actor,
                      {"title": title, "runbook": runbook, "channels": list(channels),
                       "reason": reason, "source": source, "signal_key": signal_key})
            if request is not None:
                self._keep(request, "incident", [incident_id], 201, now)
        return incident_id

    def resolve(self, incident_id: int, *, actor: str, note: str | None, now: float,
                cooldown_until: float) -> bool:
        with self.transaction() as db:
            cur = db.execute(
                "UPDATE incidents SET state = 'resolved', resolved_at = ?, resolved_by = ?, "
                "resolve_note = ?, cooldown_until = ? WHERE id = ? AND state = 'active'",
                (now, actor, note, cooldown_until, incident_id))
            if cur.rowcount == 0:
                return False
            db.execute("UPDATE channel_control SET until = ? WHERE incident_id = ?",
                       (cooldown_until, incident_id))
            self._log(incident_id, now, "resolved", actor,
                      {"note": note, "cooldown_until": cooldown_until})
        return True

    def void(self, incident_id: int, *, actor: str, reason: str, now: float,
             requeue: Sequence[tuple[int, float]], review: Sequence[int]) -> bool:
        """A false alarm, in one durable transaction: the incident ends without a
        cooldown, its holds go, and the posts it suppressed are re-queued (at the
        given times) or put up for review. False if it was not active. `held_done`
        stays 0 until its updates are retracted, so a restart finishes that."""
        with self.transaction() as db:
            cur = db.execute(
                "UPDATE incidents SET state = 'voided', resolved_at = ?, resolved_by = ?, "
                "resolve_note = ?, cooldown_until = ?, held_done = 0, auto_resolve_at = NULL "
                "WHERE id = ? AND state = 'active'", (now, actor, reason, now, incident_id))
            if cur.rowcount == 0:
                return False
            db.execute("DELETE FROM channel_control WHERE incident_id = ?", (incident_id,))
            why = f"INC-{incident_id} voided: {reason}"
            for post_id, due in requeue:
                self._transition([post_id], PostState.SCHEDULED, (PostState.SUPPRESSED,), now,
                                 actor, why, due_at=due)
            self._transition(review, PostState.HELD, (PostState.SUPPRESSED,), now, actor, why)
            self._log(incident_id, now, "voided", actor,
                      {"reason": reason, "rescheduled": [i for i, _ in requeue],
                       "held": list(review)})
        return True

    def release_holds(self, incident_id: int) -> None:
        with self.transaction() as db:
            db.execute("DELETE FROM channel_control WHERE incident_id = ?", (incident_id,))

    def holds(self) -> list[Hold]:
        return [Hold(c, i, u) for c, i, u in self._db.execute(
            "SELECT channel, incident_id, until FROM channel_control")]

    def incident(self, incident_id: int) -> Incident | None:
        row = self._db.execute(f"SELECT {_INCIDENT_COLUMNS} FROM incidents WHERE id = ?",
                               (incident_id,)).fetchone()
        return _incident(row) if row else None

    def incidents(self, include_resolved: bool = False,
                  limit: int | None = 500) -> list[Incident]:
        sql = f"SELECT {_INCIDENT_COLUMNS} FROM incidents"
        if not include_resolved:
            sql += " WHERE state = 'active'"
        sql += " ORDER BY id DESC LIMIT ?"
        return [_incident(r) for r in self._db.execute(sql, (-1 if limit is None else limit,))]

    def incidents_awaiting_release(self) -> list[Incident]:
        """Resolved incidents whose held posts have not been dealt with yet."""
        return [_incident(r) for r in self._db.execute(
            f"SELECT {_INCIDENT_COLUMNS} FROM incidents WHERE state = 'resolved' "
            "AND held_done = 0")]

    def set_incident_fields(self, incident_id: int, **fields: Any) -> None:
        sets = ", ".join(f"{k} = ?" for k in fields)
        with self.transaction() as db:
            db.execute(f"UPDATE incidents SET {sets} WHERE id = ?",
                       [*fields.values(), incident_id])

    def log(self, incident_id: int, now: float, event: str, actor: str,
            detail: dict[str, Any] | None = None) -> None:
        with self.transaction():
            self._log(incident_id, now, event, actor, detail or {})

    def _log(self, incident_id: int, now: float, event: str, actor: str,
             detail: dict[str, Any]) -> None:
        self._db.execute("INSERT INTO timeline (incident_id, at, event, actor, detail) "
                         "VALUES (?, ?, ?, ?, ?)",
                         (incident_id, now, event, actor, json.dumps(detail, default=str)))

    def timeline(self, incident_id: int) -> list[TimelineEntry]:
        return [TimelineEntry(at, event, actor, json.loads(detail)) for at, event, actor, detail
                in self._db.execute("SELECT at, event, actor, detail FROM timeline "
                                    "WHERE incident_id = ? ORDER BY id", (incident_id,))]

    def suppress_posts(self, ids: Sequence[int], incident_id: int, now: float,
                       expect: Sequence[PostState] = (PostState.QUEUED,)) -> list[int]:
        """Suppress posts for an incident and note it on the incident's timeline."""
        with self.transaction():
            moved = self._transition(ids, PostState.SUPPRESSED, expect, now, "gate",
                                     f"INC-{incident_id} holds the channel",
                                     incident_id=incident_id)
            if moved:
                self._log(incident_id, now, "posts_suppressed", "gate", {"posts": moved})
        return moved

    # -- runbook steps -----------------------------------------------------

    def claim_step(self, incident_id: int, step: str, occurrence: int, now: float) -> bool:
        """Record that a step occurrence runs; False if it already did (restart safety)."""
        with self.transaction() as db:
            cur = db.execute(
                "INSERT OR IGNORE INTO step_runs (incident_id, step, occurrence, at, result) "
                "VALUES (?, ?, ?, ?, 'started')", (incident_id, step, occurrence, now))
            return cur.rowcount == 1

    def finish_step(self, incident_id: int, step: str, occurrence: int, result: str) -> None:
        with self.transaction() as db:
            db.execute("UPDATE step_runs SET result = ? WHERE incident_id = ? AND step = ? "
                       "AND occurrence = ?", (result, incident_id, step, occurrence))

    def step_runs(self, incident_id: int) -> list[tuple[str, int, float, str]]:
        return [(s, int(o), float(a), r) for s, o, a, r in self._db.execute(
            "SELECT step, occurrence, at, result FROM step_runs WHERE incident_id = ? "
            "ORDER BY at, step", (incident_id,))]


    # -- feed events -------------------------------------------------------

    def event_seen(self, feed: str, event_id: str) -> bool:
        return self._db.execute("SELECT 1 FROM feed_events WHERE feed = ? AND event_id = ?",
                                (feed, event_id)).fetchone() is not None

    def remember_event(self, feed: str, event_id: str, now: float) -> None:
        """Keep the id for FEED_EVENT_RETENTION; older ones are forgotten here too."""
        with self.transaction() as db:
            db.execute("INSERT OR IGNORE INTO feed_events (feed, event_id, seen_at) "
                       "VALUES (?, ?, ?)", (feed, event_id, now))
            db.execute("DELETE FROM feed_events WHERE seen_at < ?",
                       (now - FEED_EVENT_RETENTION,))

    def last_resolved_at(self, signal_key: str) -> float | None:
        """When the latest incident declared by this signal key was resolved."""
        row = self._db.execute("SELECT MAX(resolved_at) FROM incidents WHERE signal_key = ?",
                               (signal_key,)).fetchone()
        return None if row is None or row[0] is None else float(row[0])

    # -- people, teams and audit --------------------------------------------

    def add_person(self, name: str, role: str, teams: Mapping[str, Iterable[str]],
                   now: float) -> bool:
        """A new person; False if the name is taken."""
        with self.transaction() as db:
            cur = db.execute("INSERT OR IGNORE INTO people (name, role, created_at, updated_at) "
                             "VALUES (?, ?, ?, ?)", (name, role, now, now))
            if cur.rowcount == 0:
                return False
            self._set_team_roles(name, teams)
        return True

    def _set_team_roles(self, name: str, teams: Mapping[str, Iterable[str]]) -> None:
        self._db.execute("DELETE FROM team_roles WHERE person = ?", (name,))
        self._db.executemany("INSERT OR IGNORE INTO team_roles (person, team, role) "
                             "VALUES (?, ?, ?)",
                             [(name, team, role) for team, roles in teams.items()
                              for role in roles])

    def update_person(self, name: str, now: float, *, role: str | None = None,
                      disabled: bool | None = None, password_hash: str | None = None,
                      teams: Mapping[str, Iterable[str]] | None = None) -> bool:
        """Change what is given; False if there is no such person."""
        fields: dict[str, Any] = {"updated_at": now}
        if role is not None:
            fields["role"] = role
        if disabled is not None:
            fields["disabled"] = int(disabled)
        if password_hash is not None:
            fields["password_hash"] = password_hash
        sets = ", ".join(f"{k} = ?" for k in fields)
        with self.transaction() as db:
            cur = db.execute(f"UPDATE people SET {sets} WHERE name = ?",
                             [*fields.values(), name])
            if cur.rowcount == 0:
                return False
            if teams is not None:
                self._set_team_roles(name, teams)
        return True

    def person(self, name: str) -> Person | None:
        row = self._db.execute(f"SELECT {_PERSON_COLUMNS} FROM people WHERE name = ?",
                               (name,)).fetchone()
        return self._person(row) if row else None

    def people(self) -> list[Person]:
        return [self._person(r) for r in self._db.execute(
            f"SELECT {_PERSON_COLUMNS} FROM people ORDER BY name")]

    def people_count(self) -> int:
        return int(self._db.execute("SELECT COUNT(*) FROM people").fetchone()[0])

    def _person(self, row: Sequence[Any]) -> Person:
        teams: dict[str, list[str]] = {}
        for team, role in self._db.execute(
                "SELECT team, role FROM team_roles WHERE person = ? ORDER BY team, role",
                (row[0],)):
            teams.setdefault(team, []).append(role)
        return Person(row[0], row[1], bool(row[2]), row[3], row[4], row[5],
                      {t: tuple(r) for t, r in teams.items()})

    def add_person_token(self, name: str, sha256: str, now: float) -> int:
        with self.transaction() as db:
            cur = db.execute("INSERT INTO person_tokens (person, sha256, created_at) "
                             "VALUES (?, ?, ?)", (name, sha256, now))
            return int(cur.lastrowid or 0)

    def revoke_person_tokens(self, name: str, now: float) -> int:
        with self.transaction() as db:
            cur = db.execute("UPDATE person_tokens SET revoked_at = ? WHERE person = ? "
                             "AND revoked_at IS NULL", (now, name))
            return cur.rowcount

    def person_token(self, sha256: str) -> tuple[int, str, str] | None:
        """(token id, person, stored digest) of a live token with this digest."""
        row = self._db.execute("SELECT id, person, sha256 FROM person_tokens "
                               "WHERE sha256 = ? AND revoked_at IS NULL", (sha256,)).fetchone()
        return (int(row[0]), str(row[1]), str(row[2])) if row else None

    def person_tokens(self, name: str) -> list[dict[str, Any]]:
        rows = self._db.execute("SELECT id, created_at, revoked_at FROM person_tokens "
                                "WHERE person = ? ORDER BY id", (name,))
        return [{"id": i, "created_at": c, "revoked_at": r} for i, c, r in rows]

    def record_audit(self, entry: AuditEntry) -> None:
        with self.transaction() as db:
            db.execute("INSERT INTO audit (at, person, credential, action, target, teams, "
                       "status) VALUES (?, ?, ?, ?, ?, ?, ?)",
                       (entry.at, entry.person, entry.credential, entry.action, entry.target,
                        json.dumps(list(entry.teams)), entry.status))

    def audit(self, *, person: str | None = None, teams: Sequence[str] | None = None,
              since: float | None = None, limit: int = 1000) -> list[AuditEntry]:
        """Audit entries, oldest first; `teams` keeps the entries touching any of them."""
        where: list[str] = ["1 = 1"]
        args: list[Any] = []
        if person is not None:
            where.append("person = ?")
            args.append(person)
        if since is not None:
            where.append("at >= ?")
            args.append(since)
        if teams is not None:
            # `teams` holds a JSON list of ids; ids are [a-z0-9_.-], so the quoted
            # id cannot match across two entries.
            where.append("(" + " OR ".join("teams LIKE ?" for _ in teams) + ")" if teams
                         else "0 = 1")
            args += [f'%"{t}"%' for t in teams]
        rows = self._db.execute(
            "SELECT at, person, credential, action, target, teams, status FROM audit "
            f"WHERE {' AND '.join(where)} ORDER BY id LIMIT ?", [*args, limit])
        return [AuditEntry(at, p, c, a, t, tuple(json.loads(ts)), s)
                for at, p, c, a, t, ts, s in rows]


_PERSON_COLUMNS = "name, role, disabled, password_hash, created_at, updated_at"


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
