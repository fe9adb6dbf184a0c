"""Benchmark-only slow-disk shim: every fsync of the daemon's store takes longer.

`bench/loopstall.py` puts this directory first on PYTHONPATH of the daemon it
starts, with SB_BENCH_FSYNC_DELAY_MS set; Python imports `sitecustomize` at
start-up. Nothing in `switchboard/` reads the variable or knows this exists.

Where a durable commit reaches the disk (COMMIT while `PRAGMA synchronous`
is FULL: SQLite fsyncs the WAL there) the connection then sleeps the delay,
in the calling thread and with the GIL released, as a slow fsync would. A
commit with synchronous=NORMAL (no fsync in WAL mode) is not slowed. The
checkpoint thread's own connection is left alone, and so is the listings'
reader connection (it only reads).

The delay is paid where the commit runs: on the store's writer thread (see
switchboard/store/port.py), never on the event loop, unless the store does
its SQL there.
"""

from __future__ import annotations

import os
import sqlite3
import sys
import time
from typing import Any

_DELAY = float(os.environ.get("SB_BENCH_FSYNC_DELAY_MS", "0")) / 1000
# Optional: a file that gets one line per slowed commit, naming the store
# operation that made it (to count the durable commits behind a request).
_TRACE = os.environ.get("SB_BENCH_FSYNC_TRACE")


def _operation() -> str:
    """The outermost store method on the calling thread's stack."""
    frame, found = sys._getframe(2), "?"
    while frame is not None:
        if "switchboard/store/" in frame.f_code.co_filename:
            found = frame.f_code.co_qualname
        frame = frame.f_back  # type: ignore[assignment]
    return found


class SlowCommits:
    """A sqlite3.Connection whose durable commits take `delay` seconds longer."""

    def __init__(self, conn: sqlite3.Connection, delay: float) -> None:
        self._conn, self._delay, self._full = conn, delay, True

    def execute(self, sql: str, *args: Any) -> sqlite3.Cursor:
        cursor = self._conn.execute(sql, *args)
        text = sql.strip().upper().replace(" ", "")
        if text.startswith("PRAGMASYNCHRONOUS="):
            self._full = text.endswith("FULL")
        elif text == "COMMIT" and self._full:
            time.sleep(self._delay)
            if _TRACE:
                with open(_TRACE, "a") as out:
                    out.write(f"{time.time():.3f} {_operation()}\n")
        return cursor

    def __getattr__(self, name: str) -> Any:
        return getattr(self._conn, name)


def _install(delay: float) -> None:
    # The synchronous backend owns the connection; the async port (`Store.open`)
    # opens it through `SqliteStore.open` on a thread of its own.
    from switchboard.store import SqliteStore

    opened = SqliteStore.open.__func__  # type: ignore[attr-defined]

    def open_slow(cls: type[SqliteStore], path: Any) -> SqliteStore:
        db = opened(cls, path)
        db._db = SlowCommits(db._db, delay)  # type: ignore[assignment]
        return db  # type: ignore[no-any-return]

    SqliteStore.open = classmethod(open_slow)  # type: ignore[method-assign,assignment]


if _DELAY > 0:
    _install(_DELAY)
