"""Watching the store: could it take a write now? Checked each second and on
every health request (at most once a second), so a failure is seen (metric,
/readyz, log) even when nothing writes.

A database file deleted, replaced or unwritable fails for good; a PostgreSQL
unreachable or read-only fails until it is back, and the watch says so.
"""

from __future__ import annotations

import asyncio

import structlog

from switchboard.metrics import Metrics
from switchboard.store import Store, StoreUnavailable
from switchboard.timer import Timer

log = structlog.get_logger("store")
CHECK_EVERY = 1.0  # seconds between two checks
PROBE_TIMEOUT = 2.0  # seconds a check may take before the store counts as unreachable
# Those of SQLite's file are for good; PostgreSQL's pass once the server is back.
FAILURES = ("deleted", "replaced", "unwritable", "unreachable", "read_only")


class StoreWatch:
    def __init__(self, store: Store, metrics: Metrics, timer: Timer) -> None:
        self.store, self.metrics, self.timer = store, metrics, timer
        # When the store was last checked, and why it could not take a write then.
        self._checked: tuple[float, StoreUnavailable | None] | None = None

    def start(self) -> None:
        self.timer.call_at("store-check", self.timer.now() + CHECK_EVERY, self._watch)

    async def _watch(self) -> None:
        try:
            await self.check()
        finally:
            self.start()

    async def check(self) -> bool:
        """Could the store take a write now? A failure for good (a write already
        met it) is seen at once; otherwise the last answer serves for a second."""
        now = self.timer.now()
        if self._checked is not None and self.store.failure is None and \
                0 <= now - self._checked[0] < CHECK_EVERY:
            return self._checked[1] is None
        try:
            await asyncio.wait_for(self.store.probe(), PROBE_TIMEOUT)
            failure: StoreUnavailable | None = None
        except StoreUnavailable as exc:
            failure = exc
        except TimeoutError:
            failure = StoreUnavailable("unreachable", "the store did not answer within "
                                                      f"{PROBE_TIMEOUT:g} s")
        self._note(now, failure)
        return failure is None

    def failure(self) -> StoreUnavailable | None:
        """Why the store could not take a write at its last check, if it could not."""
        return None if self._checked is None else self._checked[1]

    def _note(self, now: float, failure: StoreUnavailable | None) -> None:
        previous = self.failure()
        if failure is not None and (previous is None or previous.reason != failure.reason):
            log.error("store_failed", reason=failure.reason, error=failure.message)
        elif failure is None and previous is not None:
            log.warning("store_back", was=previous.reason)
        self._checked = (now, failure)
        self.metrics.store_healthy.set(0 if failure else 1)
        for reason in FAILURES:
            self.metrics.store_failed.labels(reason=reason).set(
                1 if failure is not None and failure.reason == reason else 0)
